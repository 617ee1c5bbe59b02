/*
 * dense.c - fully connected: [layer.NAME] type = dense, units = N,
 * activation = relu|none. Needs a flat input (a flatten layer before it).
 * Views NAME.weight [units, in] and NAME.bias [units] (PyTorch's Linear).
 * Kernels: the backend's dense_*.
 */
#include "layer.h"

#include <stdio.h>
#include <string.h>

#include "contract.h"
#include "log.h"

typedef struct dense_params {
	int units;
} dense_params;

_Static_assert(sizeof(dense_params) <= LAYER_PARAMS_BYTES, "dense_params too large");

static bool dense_set(layer_spec *s, const char *key, const char *value, char *err, size_t errlen)
{
	if (strcmp(key, "units") == 0)
		return layer_key_int(s, key, value, 1, 1 << 20, &LAYER_PARAMS(dense_params, s)->units, err, errlen);
	return layer_key_unknown(s, key, err, errlen);
}

static bool dense_check(const layer_spec *s, char *err, size_t errlen)
{
	if (LAYER_PARAMS(const dense_params, s)->units < 1) {
		snprintf(err, errlen, "[layer.%s] dense needs units", s->name);
		return false;
	}
	return true;
}

static int dense_dump(const layer_spec *s, char *buf, size_t len)
{
	return snprintf(buf, len, "units = %d\n", LAYER_PARAMS(const dense_params, s)->units);
}

static int dense_shape(model *m, layer *l)
{
	const int units = LAYER_PARAMS(const dense_params, &l->spec)->units;
	if (l->in_h != 1 || l->in_w != 1) {
		log_error("[layer.%s] dense needs a flat input, but gets %dx%dx%d: put a flatten layer before it",
			  l->spec.name, l->in_c, l->in_h, l->in_w);
		return EXIT_USAGE;
	}
	l->out_c = units;
	int wd[2] = {units, l->in_c}, bd[1] = {units};
	if (model_add_view(m, l, "weight", 2, wd) < 0 || model_add_view(m, l, "bias", 1, bd) < 0) {
		log_error("too many parameter tensors");
		return EXIT_USAGE;
	}
	return 0;
}

static double dense_flops(const layer *l)
{
	return 2 * ((double)l->out_c * l->in_c);
}

static void dense_init(const model *m, const layer *l, uint32_t seed, float *params)
{
	model_init_glorot(m, l->first_view, seed, l->in_c, l->out_c, params);
}

static bool dense_runs_on(const backend *be)
{
	return be->dense_forward && be->dense_backward;
}

static void dense_forward(const layer_pass *p)
{
	p->be->dense_forward(p->b->n, p->l->in_c, p->l->out_c, p->in, p->w[0], p->w[1], p->out);
}

static void dense_backward(const layer_pass *p)
{
	p->be->dense_backward(p->b->n, p->l->in_c, p->l->out_c, p->in, p->w[0], p->dout, p->din, p->dw[0],
			      p->dw[1]);
}

const layer_type layer_dense = {
	.name = "dense",
	.flags = LT_ACTIVATION,
	.set = dense_set,
	.check = dense_check,
	.dump = dense_dump,
	.shape = dense_shape,
	.flops = dense_flops,
	.init = dense_init,
	.runs_on = dense_runs_on,
	.forward = dense_forward,
	.backward = dense_backward,
};
