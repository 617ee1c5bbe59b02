/*
 * maxpool.c - max pooling: [layer.NAME] type = maxpool, pool = P or PHxPW,
 * stride = S or SHxSW (default: the pool size). No views. The chosen element
 * of each window (argmax) is kept for the backward pass. Kernels: the
 * backend's maxpool_*.
 */
#include "layer.h"

#include <stdio.h>
#include <string.h>

#include "contract.h"
#include "log.h"

typedef struct maxpool_params {
	int pool_h, pool_w;
	int stride_h, stride_w; /* 0: the pool size */
} maxpool_params;

_Static_assert(sizeof(maxpool_params) <= LAYER_PARAMS_BYTES, "maxpool_params too large");
_Static_assert(sizeof(pool_desc) <= LAYER_STATE_BYTES, "pool_desc too large");

static bool maxpool_set(layer_spec *s, const char *key, const char *value, char *err, size_t errlen)
{
	maxpool_params *p = LAYER_PARAMS(maxpool_params, s);
	if (strcmp(key, "pool") == 0)
		return layer_key_pair(s, key, value, &p->pool_h, &p->pool_w, err, errlen);
	if (strcmp(key, "stride") == 0)
		return layer_key_pair(s, key, value, &p->stride_h, &p->stride_w, err, errlen);
	return layer_key_unknown(s, key, err, errlen);
}

static bool maxpool_check(const layer_spec *s, char *err, size_t errlen)
{
	if (LAYER_PARAMS(const maxpool_params, s)->pool_h < 1) {
		snprintf(err, errlen, "[layer.%s] maxpool needs pool", s->name);
		return false;
	}
	return true;
}

static int maxpool_dump(const layer_spec *s, char *buf, size_t len)
{
	const maxpool_params *p = LAYER_PARAMS(const maxpool_params, s);
	return snprintf(buf, len, "pool = %dx%d\nstride = %dx%d\n", p->pool_h, p->pool_w,
			p->stride_h ? p->stride_h : p->pool_h, p->stride_w ? p->stride_w : p->pool_w);
}

static int maxpool_shape(model *m, layer *l)
{
	(void)m;
	const maxpool_params *p = LAYER_PARAMS(const maxpool_params, &l->spec);
	int sh = p->stride_h ? p->stride_h : p->pool_h, sw = p->stride_w ? p->stride_w : p->pool_w;
	if (p->pool_h > l->in_h || p->pool_w > l->in_w) {
		log_error("[layer.%s] pool %dx%d is larger than its %dx%d input", l->spec.name, p->pool_h,
			  p->pool_w, l->in_h, l->in_w);
		return EXIT_USAGE;
	}
	l->out_h = (l->in_h - p->pool_h) / sh + 1;
	l->out_w = (l->in_w - p->pool_w) / sw + 1;
	*LAYER_STATE(pool_desc, l) = (pool_desc){l->in_c, l->in_h, l->in_w, l->out_h, l->out_w, p->pool_h,
						 p->pool_w, sh, sw};
	return 0;
}

static void maxpool_hash_attrs(const layer *l, char *buf, size_t len)
{
	const pool_desc *d = LAYER_STATE(const pool_desc, l);
	snprintf(buf, len, "k0x0 s%dx%d p0,0 p%dx%d r0", d->stride_h, d->stride_w, d->k_h, d->k_w);
}

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
	.set = maxpool_set,
	.check = maxpool_check,
	.dump = maxpool_dump,
	.shape = maxpool_shape,
	.hash_attrs = maxpool_hash_attrs,
	.saved_bytes = maxpool_saved,
	.runs_on = maxpool_runs_on,
	.forward = maxpool_forward,
	.backward = maxpool_backward,
};
