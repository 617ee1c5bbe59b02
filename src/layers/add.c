/*
 * add.c - the element-wise sum of its inputs (a residual connection):
 * [layer.NAME] type = add, inputs = a, b (2 to 4 inputs of one shape). No
 * keys, no views. Kernels through be->layer_kernels(be, "add") (LT_KERNELS):
 * the CPU ones below, the GPU ones in cuda/ops.cu. Kernel contract
 * (layer_call of ops.h): forward y = ins[0] + ins[1] + ... added in that
 * order (y may be ins[0]: the model uses that to add gradients of shared
 * outputs); backward copies dout into every dins[k] that is not NULL.
 */
#include "layer.h"

#include <string.h>

#include "contract.h"
#include "log.h"

/* Element-wise loops below this size run on one thread (as in ops_cpu.c). */
#define PAR_MIN_ELEMS ((size_t)1 << 15)

/* Every input has the first one's shape, and there are at least two. */
static int add_shape(model *m, layer *l)
{
	if (l->n_in < 2) {
		log_error("[layer.%s] add needs at least 2 inputs (inputs = a, b)", l->spec.name);
		return EXIT_USAGE;
	}
	for (int k = 1; k < l->n_in; k++) {
		int c, h, w;
		model_input_dims(m, l, k, &c, &h, &w);
		if (c != l->in_c || h != l->in_h || w != l->in_w) {
			log_error("[layer.%s] add needs inputs of one shape: input 1 is %dx%dx%d, input %d is "
				  "%dx%dx%d", l->spec.name, l->in_c, l->in_h, l->in_w, k + 1, c, h, w);
			return EXIT_USAGE;
		}
	}
	return 0;
}

/* The call the kernels get: counts and buffers. */
static layer_call add_call(const layer_pass *p)
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
		.n_in = p->n_in,
		.relu = p->relu,
	};
	for (int k = 0; k < p->n_in; k++) {
		c.ins[k] = p->ins[k];
		c.dins[k] = p->dins[k];
		c.ins_numel[k] = p->l->in_numel;
	}
	return c;
}

static double add_flops(const layer *l)
{
	return (double)(l->n_in - 1) * (double)l->out_numel;
}

static void add_forward(const layer_pass *p)
{
	layer_call c = add_call(p);
	p->k->forward(p->be, &c);
}

static void add_backward(const layer_pass *p)
{
	layer_call c = add_call(p);
	p->k->backward(p->be, &c);
}

/* ---- CPU kernels ---- */

/* y = the inputs' sum, added in input order; with c->relu, max(sum, 0) in the pass of the last add. */
static void cpu_add_forward(const backend *be, const layer_call *c)
{
	(void)be;
	const size_t count = (size_t)(c->n > 0 ? c->n : 0) * c->out_numel;
	const float *a = c->ins[0], *b = c->ins[1];
	float *y = c->y;
	const bool relu = c->relu && c->n_in == 2;
#pragma omp parallel for simd schedule(static) num_threads(backend_cpu_threads()) if (count >= PAR_MIN_ELEMS)
	for (size_t i = 0; i < count; i++) {
		const float s = a[i] + b[i];
		y[i] = !relu || s > 0.0f ? s : 0.0f;
	}
	for (int k = 2; k < c->n_in; k++) {
		const float *x = c->ins[k];
		const bool last_relu = c->relu && k == c->n_in - 1;
#pragma omp parallel for simd schedule(static) num_threads(backend_cpu_threads()) if (count >= PAR_MIN_ELEMS)
		for (size_t i = 0; i < count; i++) {
			const float s = y[i] + x[i];
			y[i] = !last_relu || s > 0.0f ? s : 0.0f;
		}
	}
}

/* Each input's gradient is dout (c->relu: a fused relu's, where out > 0, else +0.0). */
static void cpu_add_backward(const backend *be, const layer_call *c)
{
	(void)be;
	const size_t count = (size_t)(c->n > 0 ? c->n : 0) * c->out_numel, bytes = count * sizeof(float);
	const float *g = c->dout, *out = c->out;
	/* the gradients to write: every input's but an absent one and (without relu) dout itself */
	float *to[LAYER_CALL_MAX_IN];
	int nt = 0;
	for (int k = 0; k < c->n_in; k++)
		if (c->dins[k] && (c->relu || c->dins[k] != c->dout))
			to[nt++] = c->dins[k];
	if (nt == 0)
		return;
	int done = 1; /* to[0, done) hold the gradient; the rest are copied from to[0] */
	if (c->relu && nt > 1) { /* two in the masking pass: not one copied from the other after it */
		float *d = to[0], *d2 = to[1];
#pragma omp parallel for simd schedule(static) num_threads(backend_cpu_threads()) if (count >= PAR_MIN_ELEMS)
		for (size_t i = 0; i < count; i++) {
			const float gv = g[i]; /* read unconditionally: a select, vectorised */
			const float v = out[i] > 0.0f ? gv : 0.0f;
			d[i] = v;
			d2[i] = v;
		}
		done = 2;
	} else if (c->relu) {
		float *d = to[0];
#pragma omp parallel for simd schedule(static) num_threads(backend_cpu_threads()) if (count >= PAR_MIN_ELEMS)
		for (size_t i = 0; i < count; i++) {
			const float v = g[i]; /* read unconditionally: a select, vectorised */
			d[i] = out[i] > 0.0f ? v : 0.0f;
		}
	} else {
		memcpy(to[0], g, bytes);
	}
	for (int t = done; t < nt; t++)
		memcpy(to[t], to[0], bytes);
}

static const layer_kernels cpu_kernels = {cpu_add_forward, cpu_add_backward};

const layer_type layer_add = {
	.name = "add",
	.flags = LT_KERNELS | LT_MULTI_IN | LT_RELU_OUT | LT_RELU_GRAD,
	.shape = add_shape,
	.flops = add_flops,
	.forward = add_forward,
	.backward = add_backward,
	.cpu = &cpu_kernels,
};
