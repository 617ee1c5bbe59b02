/*
 * step.h - one global training step, the one `train` runs and `bench` times:
 * forward and backward over this rank's part of the step, the sum over ranks
 * with the stop tail (stop.h) riding after the gradients, and the optimizer
 * update.
 *
 * Backends with BACKEND_CAP_EXACT_SUM take grad.h's exact sharded path
 * (bit-identical for every world size and thread count); the others make one
 * pass over this rank's contiguous part of the step and sum floats
 * (dist_allreduce_sum_f on backend memory, NCCL where enabled).
 */
#ifndef SPOTTRAIN_STEP_H
#define SPOTTRAIN_STEP_H

#include <stdbool.h>
#include <stdint.h>

#include "dist.h"
#include "grad.h"
#include "model.h"
#include "ops.h"
#include "optim.h"
#include "stop.h"

#define STEP_MAX_STATES 4

/* A run of the flat parameter buffer that weight decay does or does not apply to (train.wd_skip). */
typedef struct step_segment {
	size_t offset, count;
	bool decay;
} step_segment;

/* The training state on the backend and what a step needs to update it. */
typedef struct step_engine {
	const model *m;
	const backend *be;
	dist *d;
	bool exact;                       /* BACKEND_CAP_EXACT_SUM: grad.h's exact sums */
	grad_engine ge;                   /* exact path */
	net_workspace ws;                 /* max_n samples: the float path's pass and evaluation */
	int max_n;                        /* samples of one rank's part of a step, at most */
	uint32_t *samples;                /* max_n: sample indices of a pass */
	uint8_t *labels;                  /* max_n */
	float *params;                    /* n_params, backend memory */
	float *grads;                     /* n_params + TAIL_N, backend memory */
	float *states[STEP_MAX_STATES];   /* optimizer moments, n_params each, zeroed at init */
	int n_states;
	float *buffers;                   /* n_buffers (NULL if none): running statistics, host memory,
					   * initialised by step_engine_init, updated once per step */
	float *stats;                     /* n_buffers: the step's mean shard statistics */
	int n_segments;                   /* > 0: the update runs per segment (train.wd_skip set) */
	step_segment *segments;
} step_engine;

/* What one step trains on. */
typedef struct step_input {
	int bsz;            /* samples in the global step */
	uint32_t seed;      /* with epoch, keys the dropout masks */
	uint32_t epoch;
	shard_fill_fn fill; /* fills step positions [first, first+n) into backend memory */
	void *fill_ctx;
} step_input;

/* Seconds per phase of one step (the exact path splits its parallel compute time in the
 * proportions thread 0 measured). */
typedef struct step_times {
	double fwd, bwd;  /* forward, backward (the exact path's include the fixed-point share) */
	double fix;       /* the exact fixed-point accumulation's share (0 on the float path) */
	double allreduce; /* the sum over ranks with the tail */
	double optim;     /* scaling the sum and the optimizer update */
	double total;
} step_times;

/* Allocate the state and workspaces for steps of global batch B in d's world, with
 * shard_samples per exact shard and optim_n_states(o) moments. Returns 0, EXIT_OSERR, or
 * EXIT_USAGE for a network with buffers (BatchNorm) on a backend without the exact
 * sums on host memory (the float path would need per-shard statistics). */
int step_engine_init(step_engine *e, const model *m, const backend *be, dist *d, const optim_config *o,
		     int global_batch, int shard_samples);
void step_engine_free(step_engine *e);

/*
 * The parameter buffer cut into runs that weight decay applies to or skips: views of
 * LT_NORM layers (skip & OPTIM_WD_SKIP_BN) and views named "bias" of any layer (skip &
 * OPTIM_WD_SKIP_BIAS) are skipped; the padding after a view goes with it. Adjacent runs of
 * the same kind are merged; they cover [0, n_params) in order. Returns the count written
 * to out (at most max; MODEL_MAX_TENSORS is always enough).
 */
int step_decay_segments(const model *m, int skip, step_segment *out, int max);

/*
 * One global step: gradients of in->bsz samples summed over all ranks with the
 * tail, then params updated with learning rate lr at optimizer step t (1-based).
 * req holds this rank's requests in [0, TAIL_REQUESTS); tail gets the summed
 * tail (TAIL_N integers, the loss in 2^-GRAD_FIX_BITS units). tm: NULL, or the
 * phase times (then the backend is synchronized between phases).
 */
void step_run(step_engine *e, const step_input *in, const optim_config *o, float lr, long t,
	      const int64_t *req, int64_t *tail, step_times *tm);

#endif
