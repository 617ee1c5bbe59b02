/*
 * train.h - the worker commands. main.c parses the command line into a
 * run_args (config.h) and calls one of these; each returns the process exit
 * code (0, 75, 64, 65, 66, 74 ...; contract.h).
 *
 *   train.c  `spottrain train`: the loop over epochs and steps
 *   eval.c   `spottrain eval --ckpt FILE`
 *   bench.c  `spottrain bench`: times the training step on synthetic data
 *
 * All three set up through run.h and train through step.h.
 */
#ifndef SPOTTRAIN_TRAIN_H
#define SPOTTRAIN_TRAIN_H

#include "config.h"

int train_main(int *argc, char ***argv, const run_args *a);
int eval_main(int *argc, char ***argv, const run_args *a);
int bench_main(int *argc, char ***argv, const run_args *a);

#endif
