/*
 * flatten.c - CxHxW to C*H*W features: [layer.NAME] type = flatten. No keys,
 * no views, no kernels: its output is its input's memory (LT_ALIAS).
 */
#include "layer.h"

static int flatten_shape(model *m, layer *l)
{
	(void)m;
	l->out_c = l->in_c * l->in_h * l->in_w;
	l->out_h = l->out_w = 1;
	return 0;
}

const layer_type layer_flatten = {
	.name = "flatten",
	.flags = LT_ALIAS,
	.shape = flatten_shape,
};
