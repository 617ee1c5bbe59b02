/*
 * dropout.c - inverted dropout: [layer.NAME] type = dropout, rate = R in
 * [0, 1). Each element is kept with probability 1 - R and scaled by 1/(1-R)
 * while training; the mask comes from Philox keyed by (seed, layer index,
 * epoch, sample), so it does not depend on the world size. The mask is kept
 * for the backward pass. Kernels: the backend's dropout_*.
 */
#include "layer.h"

#include <stdio.h>
#include <string.h>

typedef struct dropout_params {
	float rate;
} dropout_params;

_Static_assert(sizeof(dropout_params) <= LAYER_PARAMS_BYTES, "dropout_params too large");

static bool dropout_set(layer_spec *s, const char *key, const char *value, char *err, size_t errlen)
{
	if (strcmp(key, "rate") == 0)
		return layer_key_float(s, key, value, 0, 1, true, &LAYER_PARAMS(dropout_params, s)->rate, err,
				       errlen);
	return layer_key_unknown(s, key, err, errlen);
}

static int dropout_dump(const layer_spec *s, char *buf, size_t len)
{
	return snprintf(buf, len, "rate = %.9g\n", (double)LAYER_PARAMS(const dropout_params, s)->rate);
}

static void dropout_hash_attrs(const layer *l, char *buf, size_t len)
{
	snprintf(buf, len, "k0x0 s0x0 p0,0 p0x0 r%.6g", (double)LAYER_PARAMS(const dropout_params, &l->spec)->rate);
}

/* the mask: one float scale per output element */
static size_t dropout_saved(const layer *l)
{
	return l->out_numel * sizeof(float);
}

static bool dropout_runs_on(const backend *be)
{
	return be->dropout_forward && be->dropout_backward;
}

static void dropout_forward(const layer_pass *p)
{
	const batch_info *b = p->b;
	dropout_desc d = {b->training ? LAYER_PARAMS(const dropout_params, &p->l->spec)->rate : 0.0f, b->seed,
			  (uint32_t)p->l->index, b->epoch, p->l->out_numel};
	p->be->dropout_forward(&d, b->n, b->samples, p->in, p->out, p->saved);
}

static void dropout_backward(const layer_pass *p)
{
	if (p->din)
		p->be->dropout_backward((size_t)p->b->n * p->l->out_numel, p->saved, p->dout, p->din);
}

const layer_type layer_dropout = {
	.name = "dropout",
	.set = dropout_set,
	.dump = dropout_dump,
	.hash_attrs = dropout_hash_attrs,
	.saved_bytes = dropout_saved,
	.runs_on = dropout_runs_on,
	.forward = dropout_forward,
	.backward = dropout_backward,
};
