/*
 * softmax_xent.c - softmax and cross-entropy against the labels:
 * [layer.NAME] type = softmax_xent, the last layer; its flat input (at least
 * 2 wide) is the class count. Forward returns the summed loss and the correct
 * count and, when training, writes d(logits) = softmax - onehot into the
 * previous layer's gradient, so it has no backward of its own. Kernel: the
 * backend's softmax_xent.
 */
#include "layer.h"

#include "contract.h"
#include "log.h"

static int softmax_xent_shape(model *m, layer *l)
{
	(void)m;
	if (l->in_h != 1 || l->in_w != 1 || l->in_c < 2) {
		log_error("[layer.%s] softmax_xent needs a flat input of at least 2 classes, gets %dx%dx%d",
			  l->spec.name, l->in_c, l->in_h, l->in_w);
		return EXIT_USAGE;
	}
	return 0;
}

static bool softmax_xent_runs_on(const backend *be)
{
	return be->softmax_xent != NULL;
}

static void softmax_xent_forward(const layer_pass *p)
{
	p->be->softmax_xent(p->b->n, p->l->in_c, p->in, p->b->labels, p->b->training ? p->din : NULL,
			    p->loss_sum, p->correct);
}

const layer_type layer_softmax_xent = {
	.name = "softmax_xent",
	.flags = LT_LOSS,
	.shape = softmax_xent_shape,
	.runs_on = softmax_xent_runs_on,
	.forward = softmax_xent_forward,
};
