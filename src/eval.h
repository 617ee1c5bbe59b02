/*
 * eval.h - test loss and accuracy: `spottrain eval --ckpt FILE` and the
 * evaluation at the end of each training epoch run the same function.
 */
#ifndef SPOTTRAIN_EVAL_H
#define SPOTTRAIN_EVAL_H

#include <stddef.h>

#include "run.h"

#define EVAL_MAX_CLASSES 256 /* labels are uint8 */

/* Sums over the test set (every rank gets the same after the reduction). The first
 * 4 + 2 * EVAL_MAX_CLASSES doubles are reduced in one call: keep them together. */
typedef struct eval_stats {
	double loss, correct, top1, top5;
	double class_images[EVAL_MAX_CLASSES], class_correct[EVAL_MAX_CLASSES];
	double images;
} eval_stats;
_Static_assert(offsetof(eval_stats, images) == (4 + 2 * EVAL_MAX_CLASSES) * sizeof(double),
	       "eval_stats: the reduced sums are contiguous");

/* Collective: the sums of eval_stats over the test set with the run's weights. */
void eval_test_set_stats(run *r, eval_stats *st);

/* Collective: mean loss and accuracy of the run's weights over its test set, the set sharded
 * across ranks and reduced. Rank 0 beats the heartbeat of training runs while it works. */
void eval_test_set(run *r, double *loss, double *acc);

#endif
