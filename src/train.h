/*
 * train.h - the training loop and the other worker commands. main.c parses
 * the command line into these structs and calls them; they know model,
 * optim, data, dist, ckpt, spot and log.
 */
#ifndef SPOTTRAIN_TRAIN_H
#define SPOTTRAIN_TRAIN_H

#include <stdbool.h>

#include "config.h"

#define MAX_SETS 64

typedef struct run_args {
	const char *config_path;
	const char *sets[MAX_SETS];  /* --set section.key=value, in order */
	int n_sets;
	const char *data_dir;        /* --data-dir */
	const char *run_dir;         /* --run-dir */
	const char *init_from;       /* --init-from FILE (weights only) */
	const char *ckpt;            /* eval --ckpt FILE */
	long epochs;                 /* --epochs (0: config) */
	long max_steps;              /* --max-steps (0: config) */
	int threads;                 /* --threads (-1: config) */
	long seed;                   /* --seed (-1: config) */
	int steps;                   /* bench --steps */
	int warmup;                  /* bench --warmup */
	device_kind device;          /* --device */
	bool device_given;
	bool verbose;
} run_args;

/* Load the config, apply overrides and command-line flags, validate. Returns 0 or an exit code. */
int load_run_config(const run_args *a, config *c);

/* `spottrain train`. Returns the process exit code (0, 75, 64, 65, 66, 74 ...). */
int train_main(int *argc, char ***argv, const run_args *a);
/* `spottrain eval --ckpt FILE`. */
int eval_main(int *argc, char ***argv, const run_args *a);
/* `spottrain bench`. */
int bench_main(int *argc, char ***argv, const run_args *a);

#endif
