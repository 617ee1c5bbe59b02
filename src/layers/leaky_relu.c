/*
 * leaky_relu.c - PyTorch's LeakyReLU: y = x for x > 0, slope * x otherwise;
 * [layer.NAME] type = leaky_relu, slope = S (default 0.01). No views. Its
 * kernels come through be->layer_kernels(be, "leaky_relu") (LT_KERNELS):
 * the CPU ones below, the GPU ones in cuda/ops.cu. Kernel contract
 * (layer_call of ops.h): attr[0] = slope; forward reads in, writes y;
 * backward reads in and dout, writes din = dout where in > 0, else
 * slope * dout (in place allowed: din == dout).
 */
#include "layer.h"

#include <stdio.h>
#include <string.h>

/* Element-wise loops below this size run on one thread (as in ops_cpu.c). */
#define PAR_MIN_ELEMS ((size_t)1 << 15)

typedef struct leaky_relu_params {
	float slope;
} leaky_relu_params;

_Static_assert(sizeof(leaky_relu_params) <= LAYER_PARAMS_BYTES, "leaky_relu_params too large");

static void leaky_relu_defaults(layer_spec *s)
{
	LAYER_PARAMS(leaky_relu_params, s)->slope = 0.01f;
}

static bool leaky_relu_set(layer_spec *s, const char *key, const char *value, char *err, size_t errlen)
{
	if (strcmp(key, "slope") == 0)
		return layer_key_float(s, key, value, -1e6, 1e6, false, &LAYER_PARAMS(leaky_relu_params, s)->slope,
				       err, errlen);
	return layer_key_unknown(s, key, err, errlen);
}

static int leaky_relu_dump(const layer_spec *s, char *buf, size_t len)
{
	return snprintf(buf, len, "slope = %.9g\n", (double)LAYER_PARAMS(const leaky_relu_params, s)->slope);
}

static void leaky_relu_hash_attrs(const layer *l, char *buf, size_t len)
{
	snprintf(buf, len, "slope %.9g", (double)LAYER_PARAMS(const leaky_relu_params, &l->spec)->slope);
}

/* The call the kernels get: counts, slope, buffers. */
static layer_call leaky_relu_call(const layer_pass *p)
{
	layer_call c = {
		.n = p->b->n,
		.in_numel = p->l->in_numel,
		.out_numel = p->l->out_numel,
		.attr = {LAYER_PARAMS(const leaky_relu_params, &p->l->spec)->slope},
		.in = p->in,
		.out = p->out,
		.y = p->out,
		.dout = p->dout,
		.din = p->din,
		.saved = p->saved,
		.scratch = p->scratch,
	};
	return c;
}

static void leaky_relu_forward(const layer_pass *p)
{
	layer_call c = leaky_relu_call(p);
	p->k->forward(p->be, &c);
}

static void leaky_relu_backward(const layer_pass *p)
{
	if (!p->din)
		return;
	layer_call c = leaky_relu_call(p);
	p->k->backward(p->be, &c);
}

/* ---- CPU kernels ---- */

static void cpu_leaky_relu_forward(const backend *be, const layer_call *c)
{
	(void)be;
	const size_t count = (size_t)(c->n > 0 ? c->n : 0) * c->out_numel;
	const float slope = c->attr[0], *in = c->in;
	float *y = c->y;
#pragma omp parallel for simd schedule(static) num_threads(backend_cpu_threads()) if (count >= PAR_MIN_ELEMS)
	for (size_t i = 0; i < count; i++)
		y[i] = in[i] > 0.0f ? in[i] : in[i] * slope;
}

static void cpu_leaky_relu_backward(const backend *be, const layer_call *c)
{
	(void)be;
	const size_t count = (size_t)(c->n > 0 ? c->n : 0) * c->out_numel;
	const float slope = c->attr[0], *in = c->in, *dout = c->dout;
	float *din = c->din;
#pragma omp parallel for simd schedule(static) num_threads(backend_cpu_threads()) if (count >= PAR_MIN_ELEMS)
	for (size_t i = 0; i < count; i++)
		din[i] = in[i] > 0.0f ? dout[i] : dout[i] * slope;
}

static const layer_kernels cpu_kernels = {cpu_leaky_relu_forward, cpu_leaky_relu_backward};

const layer_type layer_leaky_relu = {
	.name = "leaky_relu",
	.flags = LT_KERNELS,
	.defaults = leaky_relu_defaults,
	.set = leaky_relu_set,
	.dump = leaky_relu_dump,
	.hash_attrs = leaky_relu_hash_attrs,
	.forward = leaky_relu_forward,
	.backward = leaky_relu_backward,
	.cpu = &cpu_kernels,
};
