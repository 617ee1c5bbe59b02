/*
 * relu.c - max(x, 0): [layer.NAME] type = relu (also what "activation = relu"
 * adds after conv2d and dense). No keys, no views. Kernels: the backend's
 * relu_*; backward reads the output (in place allowed).
 */
#include "layer.h"

static bool relu_runs_on(const backend *be)
{
	return be->relu_forward && be->relu_backward;
}

static void relu_forward(const layer_pass *p)
{
	p->be->relu_forward((size_t)p->b->n * p->l->out_numel, p->in, p->out);
}

static void relu_backward(const layer_pass *p)
{
	if (p->din)
		p->be->relu_backward((size_t)p->b->n * p->l->out_numel, p->out, p->dout, p->din);
}

const layer_type layer_relu = {
	.name = "relu",
	.flags = LT_RELU,
	.runs_on = relu_runs_on,
	.forward = relu_forward,
	.backward = relu_backward,
};
