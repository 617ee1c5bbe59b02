/*
 * grad.h - the gradient of one global step, summed exactly.
 *
 * Float addition is not associative: summing the same per-sample gradients
 * in another grouping (another world size, another thread count) changes the
 * last bits, and ReLU/max-pool networks on data with exact zeros (MNIST's
 * background) amplify such differences into visibly different trajectories
 * within a few dozen steps. So spottrain fixes the grouping instead:
 *
 *   - a global batch is cut into shards of dist.shard_samples samples
 *     (positions [k*S, k*S+S) of the step), the same for every world size;
 *   - each shard's gradient is computed by one thread, alone, in float, in a
 *     fixed order: the same bits wherever and by whomever it is computed;
 *   - shard gradients are converted to 64-bit fixed point (2^-32 units,
 *     round to nearest) and summed as integers, within a rank (threads) and
 *     across ranks (MPI_Allreduce on int64): integer addition is exact, so
 *     the order no longer matters.
 *
 * Rank r of W takes the contiguous whole shards [K*r/W, K*(r+1)/W) of the
 * step's K shards.
 *
 * Buffers (BatchNorm's running statistics, model.n_buffers floats) follow the
 * same rule: each shard's training pass writes its own statistics (its batch
 * mean and variance: "ghost batch norm" with the shard as the ghost batch),
 * they are converted to the same fixed point and summed in the same integers,
 * riding between the gradients and the tail; after the all-reduce their mean
 * over the K shards updates the buffers once per step, on every rank alike. The result: a step's gradient, and so the whole training
 * trajectory, is bit-identical for every world size and thread count.
 */
#ifndef SPOTTRAIN_GRAD_H
#define SPOTTRAIN_GRAD_H

#include <stdbool.h>
#include <stdint.h>

#include "model.h"
#include "ops.h"
#include "stop.h"

/* Fixed-point scale: one unit is 2^-GRAD_FIX_BITS. Values beyond +-2^(51-GRAD_FIX_BITS) saturate. */
#define GRAD_FIX_BITS 32

/* The stop tail (stop.h) rides after the gradients in the same all-reduce: grad_compute
 * fills its counters TAIL_LOSS .. TAIL_NONFINITE. */

/* Fills a shard: the images of step positions [first, first+n) into input, their dataset
 * indices into samples and labels into labels. */
typedef void (*shard_fill_fn)(void *ctx, long first, int n, float *input, uint32_t *samples,
			      uint8_t *labels);

typedef struct grad_engine {
	const model *m;
	const backend *be;
	int shard;               /* S */
	int threads;             /* T: shards run in parallel, one per thread */
	net_workspace *ws;       /* per thread, S samples each */
	float **g;               /* per thread float gradient of one shard */
	float **st;              /* per thread statistics of one shard (model.n_buffers floats; NULL if none) */
	int64_t **acc;           /* per thread; acc[0] holds the rank's sum: n_params gradients, n_buffers
				  * statistics, then TAIL_N integers */
	uint32_t **samples;
	uint8_t **labels;
	/* timings of the last step (seconds) */
	double t_compute, t_fwd, t_bwd, t_fix;
} grad_engine;

int grad_engine_init(grad_engine *e, const model *m, const backend *be, int shard, int threads);
void grad_engine_free(grad_engine *e);

/* This rank's shards of a step of bsz samples in a world of W: [*k0, *k1). */
void grad_rank_shards(int bsz, int shard, int rank, int world, int *k0, int *k1);

/* Offset of the tail in acc: n_params + n_buffers. */
size_t grad_tail_offset(const grad_engine *e);

/*
 * Forward and backward over this rank's shards of a step of bsz samples; leaves
 * the rank's exact sum in e->acc[0][0..n_params), the shards' summed statistics
 * in e->acc[0][n_params..+n_buffers) and the loss/correct/overflow counters in
 * e->acc[0][grad_tail_offset + TAIL_*] (the request flags are left zero for
 * the caller). uint32 epoch and seed key the dropout masks.
 */
void grad_compute(grad_engine *e, const float *params, int bsz, int rank, int world, uint32_t seed,
		  uint32_t epoch, shard_fill_fn fill, void *ctx);

/* After the all-reduce: grads = acc * 2^-GRAD_FIX_BITS / bsz (NaN everywhere if any value was not finite). */
void grad_finish(grad_engine *e, int bsz, float *grads);
/* After the all-reduce: stats = the statistics' sum * 2^-GRAD_FIX_BITS / (the step's shards), n_buffers floats. */
void grad_finish_stats(grad_engine *e, int bsz, float *stats);

/*
 * The two conversions, on the current kernels' ISA (kern_current(): AVX-512, AVX2 or
 * scalar; every path gives the same integers and floats). grad_fix_add: acc += round(x *
 * 2^GRAD_FIX_BITS), saturated at +-(2^51 - 1) (counted in *overflow), NaN/inf add 0
 * (counted in *nonfinite). grad_fix_scale_out: out = acc * s. Exposed for tests.
 */
void grad_fix_add(size_t n, const float *x, int64_t *acc, int64_t *overflow, int64_t *nonfinite);
/* grad_fix_add that leaves x all +0.0, in the same pass: a shard's gradient buffer is converted
 * and made ready for the next shard's backward (which adds into it) without a zeroing pass. */
void grad_fix_take(size_t n, float *x, int64_t *acc, int64_t *overflow, int64_t *nonfinite);
void grad_fix_scale_out(size_t n, const int64_t *acc, double s, float *out);

#endif
