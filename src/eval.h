/*
 * eval.h - test loss and accuracy: `spottrain eval --ckpt FILE` and the
 * evaluation at the end of each training epoch run the same function.
 */
#ifndef SPOTTRAIN_EVAL_H
#define SPOTTRAIN_EVAL_H

#include "run.h"

/* Collective: mean loss and accuracy of the run's weights over its test set, the set sharded
 * across ranks and reduced. Rank 0 beats the heartbeat of training runs while it works. */
void eval_test_set(run *r, double *loss, double *acc);

#endif
