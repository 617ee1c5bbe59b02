/*
 * avgpool.c - average pooling, PyTorch's AvgPool2d without padding:
 * [layer.NAME] type = avgpool, pool = P or PHxPW, stride = S or SHxSW
 * (default: the pool size); out = floor((in - pool) / stride) + 1. And
 * type = global_avgpool (no keys): the mean of each channel's plane, output
 * C x 1 x 1 (AdaptiveAvgPool2d(1)). No views. Keys, shape and hash
 * attributes: pool.c (shared with maxpool).
 *
 * Kernels through be->layer_kernels (LT_KERNELS): the CPU ones below; a
 * backend without them (the GPU today) refuses the network at start, naming
 * the layer. Kernel contract: state = the layer's pool_desc; forward writes
 * y = the window means; backward overwrites din with each output gradient
 * spread evenly over its window. Loops run one channel plane per iteration,
 * each plane's sums in a fixed order, so results do not depend on threads.
 */
#include "layer.h"

#include <string.h>

#include "pool.h"

/* Loops over fewer values than this run on one thread. */
#define PAR_MIN_ELEMS ((size_t)1 << 15)

/* The whole plane is the window. */
static int global_avgpool_shape(model *m, layer *l)
{
	(void)m;
	l->out_h = 1;
	l->out_w = 1;
	*LAYER_STATE(pool_desc, l) = (pool_desc){l->in_c, l->in_h, l->in_w, 1, 1, l->in_h, l->in_w, l->in_h, l->in_w};
	return 0;
}

static double avgpool_flops(const layer *l)
{
	return (double)l->in_numel;
}

static void avgpool_pass(const layer_pass *p, bool forward)
{
	layer_call c = {
		.n = p->b->n,
		.in_numel = p->l->in_numel,
		.out_numel = p->l->out_numel,
		.in = p->in,
		.out = p->out,
		.y = p->out,
		.dout = p->dout,
		.din = p->din,
		.scratch = p->scratch,
		.training = p->b->training,
		.state = &p->l->state,
	};
	if (forward)
		p->k->forward(p->be, &c);
	else if (p->din)
		p->k->backward(p->be, &c);
}

static void avgpool_forward(const layer_pass *p)
{
	avgpool_pass(p, true);
}

static void avgpool_backward(const layer_pass *p)
{
	avgpool_pass(p, false);
}

/* ---- CPU kernels ---- */

static void cpu_avgpool_forward(const backend *be, const layer_call *c)
{
	(void)be;
	const pool_desc *d = c->state;
	const long planes = (long)(c->n > 0 ? c->n : 0) * d->c;
	const size_t in_plane = (size_t)d->in_h * d->in_w, out_plane = (size_t)d->out_h * d->out_w;
	const float inv = 1.0f / (float)(d->k_h * d->k_w);
#pragma omp parallel for schedule(static) num_threads(backend_cpu_threads()) if ((size_t)planes * in_plane >= PAR_MIN_ELEMS)
	for (long q = 0; q < planes; q++) {
		const float *x = c->in + (size_t)q * in_plane;
		float *y = c->y + (size_t)q * out_plane;
		for (int oh = 0; oh < d->out_h; oh++)
			for (int ow = 0; ow < d->out_w; ow++) {
				const float *w = x + (size_t)oh * d->stride_h * d->in_w + (size_t)ow * d->stride_w;
				float s = 0.0f;
				for (int i = 0; i < d->k_h; i++)
					for (int j = 0; j < d->k_w; j++)
						s += w[(size_t)i * d->in_w + j];
				y[(size_t)oh * d->out_w + ow] = s * inv;
			}
	}
}

static void cpu_avgpool_backward(const backend *be, const layer_call *c)
{
	(void)be;
	const pool_desc *d = c->state;
	const long planes = (long)(c->n > 0 ? c->n : 0) * d->c;
	const size_t in_plane = (size_t)d->in_h * d->in_w, out_plane = (size_t)d->out_h * d->out_w;
	const float inv = 1.0f / (float)(d->k_h * d->k_w);
#pragma omp parallel for schedule(static) num_threads(backend_cpu_threads()) if ((size_t)planes * in_plane >= PAR_MIN_ELEMS)
	for (long q = 0; q < planes; q++) {
		float *dx = c->din + (size_t)q * in_plane;
		const float *dy = c->dout + (size_t)q * out_plane;
		memset(dx, 0, in_plane * sizeof(float));
		for (int oh = 0; oh < d->out_h; oh++)
			for (int ow = 0; ow < d->out_w; ow++) {
				float *w = dx + (size_t)oh * d->stride_h * d->in_w + (size_t)ow * d->stride_w;
				const float g = dy[(size_t)oh * d->out_w + ow] * inv;
				for (int i = 0; i < d->k_h; i++)
					for (int j = 0; j < d->k_w; j++)
						w[(size_t)i * d->in_w + j] += g;
			}
	}
}

static const layer_kernels cpu_kernels = {cpu_avgpool_forward, cpu_avgpool_backward};

const layer_type layer_avgpool = {
	.name = "avgpool",
	.flags = LT_KERNELS,
	.set = pool_set,
	.check = pool_check,
	.dump = pool_dump,
	.shape = pool_shape,
	.flops = avgpool_flops,
	.hash_attrs = pool_hash_attrs,
	.forward = avgpool_forward,
	.backward = avgpool_backward,
	.cpu = &cpu_kernels,
};

const layer_type layer_global_avgpool = {
	.name = "global_avgpool",
	.flags = LT_KERNELS,
	.shape = global_avgpool_shape,
	.flops = avgpool_flops,
	.forward = avgpool_forward,
	.backward = avgpool_backward,
	.cpu = &cpu_kernels,
};
