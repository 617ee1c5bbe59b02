/*
 * run.h - one set-up for `train`, `eval` and `bench`: config, model, world,
 * backend, data, the training state and (train) the resumed position. The
 * stages are the same for the three commands; only what feeds them differs:
 *
 *   stage      train                         eval                      bench
 *   config     --config + command line       the checkpoint's or --config  --config + command line
 *   world      dist_init, signals            dist_init                 dist_init
 *   backend    device_select + all-reduce    device_select             device_select + all-reduce
 *   data       train + test set (fetched)    test set                  synthetic pixels
 *   state      step engine + host mirrors    the same                  the same
 *   weights    resume, --init-from or seed   the checkpoint's          seed
 *
 * Whatever the command, a step reads its samples through run_fill_shard.
 */
#ifndef SPOTTRAIN_RUN_H
#define SPOTTRAIN_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "ckpt.h"
#include "config.h"
#include "data.h"
#include "data_augment.h"
#include "data_prefetch.h"
#include "dist.h"
#include "events.h"
#include "model.h"
#include "ops.h"
#include "step.h"

typedef enum { RUN_TRAIN, RUN_EVAL, RUN_BENCH } run_kind;

/*
 * Tests only (the chaos soak, tests/fleet/chaos.py): a directory where each
 * training process appends one line per gradient shard it computes,
 * "STEP EPOCH FIRST N SAMPLE...", to g<generation>-r<rank>-p<pid>.trace, so a
 * test can check that every sample of every epoch was seen exactly once.
 */
#define ENV_SAMPLE_TRACE "SPOTTRAIN_SAMPLE_TRACE"

typedef struct run {
	run_kind kind;
	const run_args *args;
	config cfg;
	model m;
	dist d;
	bool dist_up;                  /* dist_init succeeded: run_close finalizes */
	const backend *be;
	ev_source ev;                  /* who this process's events name */
	int generation;                /* the launcher's (SPOTLAUNCH_GENERATION), 0 outside it */
	bool ckpt_writer_rank;         /* this rank writes checkpoints */
	dataset train, test;           /* bench: train holds the synthetic step */
	uint8_t *train_images, *test_images; /* the pixels in backend memory */
	augment aug;                   /* the per-sample transform (data.crop_pad, data.mean ...) */
	prefetcher *pf;                /* data.prefetch: the next step's inputs (NULL: off) */
	_Atomic long long data_ns;     /* time the shard fills took, summed over threads */
	step_engine se;                /* parameters, gradients, moments, workspaces */
	float *h_params, *h_states[STEP_MAX_STATES]; /* host copies (the same pointers on host memory) */
	uint32_t *perm;                /* the order of epoch perm_epoch (bench: the identity) */
	long perm_epoch;
	/* position: the next sample is perm[pos] of epoch `epoch`; `step` steps are done */
	long step, epoch, pos, optim_step;
	long steps_per_epoch, total_steps;
	float last_lr;
	double wall_before;            /* training wall time of earlier processes (from the checkpoint) */
	double t_start;                /* when training started in this process (0: not yet) */
	int sample_trace_fd;           /* SPOTTRAIN_SAMPLE_TRACE (tests only): the samples each shard read; -1 off */
} run;

/*
 * Set up everything a command needs, in the shared stages above; collective:
 * every rank returns the same code (0 or an exit code). Whatever it returns,
 * call run_close(r) afterwards.
 */
int run_open(run *r, run_kind kind, int *argc, char ***argv, const run_args *a);
/* Free everything and finalize the world. */
void run_close(run *r);

/* run_data.c: the data of a run. */
/* Collective: fetch missing files (train), load and check the data sets of r->kind. */
int run_load_data(run *r, int rc);
/* Place the data sets in backend memory; bench: draw the synthetic step. */
int run_place_data(run *r);
/* Zero data_ns and the prefetch thread's time (bench, after its warm-up; waits for the thread). */
void run_reset_data_time(run *r);
/* Stop the prefetch thread and free its buffers (run_close). */
void run_free_data(run *r);
/* Make perm the order of epoch e (Philox keyed by (seed, e): the same on every rank and world). */
void run_order_epoch(run *r, long epoch);
/* grad.h shard_fill_fn (ctx: run): step positions [first, first+n) from perm[pos + first ...]. */
void run_fill_shard(void *ctx, long first, int n, float *input, uint32_t *samples, uint8_t *labels);
/* The network inputs of n samples of the train (augmented, epoch r->epoch) or test set into
 * input (backend memory): the plain gather when nothing but x/255 is asked for. */
void run_gather(run *r, bool train, const uint32_t *samples, int n, float *input);

/* run_state.c: the training state. */
/* Allocate the step engine, the host mirrors and perm. Returns 0 or an exit code. */
int run_alloc_state(run *r);
void run_free_state(run *r);
/* The host copies as checkpoint buffers (names from the optimizer). */
ckpt_buffers run_ckpt_buffers(run *r);
/* Backend state -> host copies (before a checkpoint) and back (after a read). */
void run_state_to_host(run *r);
void run_state_to_backend(run *r);
/* Collective: the newest checkpoint any node leader sees (invariant 5), else --init-from's
 * weights, else the seed's initial weights. */
int run_resume(run *r);
/* Collective: rank 0 reads the weights of the checkpoint at path, all ranks get them. */
int run_load_weights(run *r, const char *path);
/* Collective: the initial weights drawn from the seed (the same on every rank). */
int run_seed_weights(run *r);
/* Training wall time of the whole run so far. */
double run_wall_time(const run *r);

#endif
