/*
 * maxpool.c - max pooling: [layer.NAME] type = maxpool, pool = P or PHxPW,
 * stride = S or SHxSW (default: the pool size). No views. The chosen element
 * of each window (argmax) is kept for the backward pass. Kernels: the
 * backend's maxpool_*. Keys, shape and hash attributes: pool.c.
 */
#include "layer.h"

#include "pool.h"

/* argmax: one int32 per output element */
static size_t maxpool_saved(const layer *l)
{
	return l->out_numel * sizeof(int32_t);
}

static bool maxpool_runs_on(const backend *be)
{
	return be->maxpool_forward && be->maxpool_backward;
}

static void maxpool_forward(const layer_pass *p)
{
	p->be->maxpool_forward(LAYER_STATE(const pool_desc, p->l), p->b->n, p->in, p->out, p->saved);
}

static void maxpool_backward(const layer_pass *p)
{
	if (p->din)
		p->be->maxpool_backward(LAYER_STATE(const pool_desc, p->l), p->b->n, p->dout, p->saved, p->din);
}

const layer_type layer_maxpool = {
	.name = "maxpool",
	.set = pool_set,
	.check = pool_check,
	.dump = pool_dump,
	.shape = pool_shape,
	.hash_attrs = pool_hash_attrs,
	.saved_bytes = maxpool_saved,
	.runs_on = maxpool_runs_on,
	.forward = maxpool_forward,
	.backward = maxpool_backward,
};
