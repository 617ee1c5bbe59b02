/*
 * concat.c - channel concatenation: [layer.NAME] type = concat, inputs = a, b
 * (2 to 4 inputs of one HxW; dense inputs are 1x1, so their features are
 * joined). The output's channels are the inputs' in the order named. No keys,
 * no views. Kernels through be->layer_kernels(be, "concat") (LT_KERNELS): the
 * CPU ones below, the GPU ones in cuda/ops.cu. Kernel contract (layer_call
 * of ops.h): per sample, forward copies ins[k] (ins_numel[k] floats) into y
 * one after the other; backward copies those slices of dout into every
 * dins[k] that is not NULL.
 */
#include "layer.h"

#include <string.h>

#include "contract.h"
#include "log.h"

/* What shape inference keeps for the passes: each input's channels. */
typedef struct concat_state {
	int channels[LAYER_MAX_IN];
} concat_state;

_Static_assert(sizeof(concat_state) <= LAYER_STATE_BYTES, "concat_state too large");

/* Inputs of one HxW; the output has the sum of their channels. */
static int concat_shape(model *m, layer *l)
{
	if (l->n_in < 2) {
		log_error("[layer.%s] concat needs at least 2 inputs (inputs = a, b)", l->spec.name);
		return EXIT_USAGE;
	}
	long channels = l->in_c;
	LAYER_STATE(concat_state, l)->channels[0] = l->in_c;
	for (int k = 1; k < l->n_in; k++) {
		int c, h, w;
		model_input_dims(m, l, k, &c, &h, &w);
		if (h != l->in_h || w != l->in_w) {
			log_error("[layer.%s] concat needs inputs of one height and width: input 1 is %dx%dx%d, "
				  "input %d is %dx%dx%d", l->spec.name, l->in_c, l->in_h, l->in_w, k + 1, c, h, w);
			return EXIT_USAGE;
		}
		channels += c;
		LAYER_STATE(concat_state, l)->channels[k] = c;
	}
	if (channels > 1 << 20) {
		log_error("[layer.%s] concat of %ld channels is too many", l->spec.name, channels);
		return EXIT_USAGE;
	}
	l->out_c = (int)channels;
	return 0;
}

/* The call the kernels get: counts, per-input sizes and buffers. */
static layer_call concat_call(const layer_pass *p)
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
	};
	const size_t plane = (size_t)p->l->in_h * p->l->in_w;
	const concat_state *st = LAYER_STATE(const concat_state, p->l);
	for (int k = 0; k < p->n_in; k++) {
		c.ins[k] = p->ins[k];
		c.dins[k] = p->dins[k];
		c.ins_numel[k] = (size_t)st->channels[k] * plane;
	}
	return c;
}

static void concat_forward(const layer_pass *p)
{
	layer_call c = concat_call(p);
	p->k->forward(p->be, &c);
}

static void concat_backward(const layer_pass *p)
{
	layer_call c = concat_call(p);
	p->k->backward(p->be, &c);
}

/* ---- CPU kernels ---- */

static void cpu_concat_forward(const backend *be, const layer_call *c)
{
	(void)be;
	for (int s = 0; s < c->n; s++) {
		float *y = c->y + (size_t)s * c->out_numel;
		for (int k = 0; k < c->n_in; k++) {
			memcpy(y, c->ins[k] + (size_t)s * c->ins_numel[k], c->ins_numel[k] * sizeof(float));
			y += c->ins_numel[k];
		}
	}
}

static void cpu_concat_backward(const backend *be, const layer_call *c)
{
	(void)be;
	for (int s = 0; s < c->n; s++) {
		const float *d = c->dout + (size_t)s * c->out_numel;
		for (int k = 0; k < c->n_in; k++) {
			if (c->dins[k])
				memcpy(c->dins[k] + (size_t)s * c->ins_numel[k], d, c->ins_numel[k] * sizeof(float));
			d += c->ins_numel[k];
		}
	}
}

static const layer_kernels cpu_kernels = {cpu_concat_forward, cpu_concat_backward};

const layer_type layer_concat = {
	.name = "concat",
	.flags = LT_KERNELS | LT_MULTI_IN,
	.shape = concat_shape,
	.forward = concat_forward,
	.backward = concat_backward,
	.cpu = &cpu_kernels,
};
