/*
 * softmax_xent.c - softmax and cross-entropy against the labels:
 * [layer.NAME] type = softmax_xent, label_smoothing = E (default 0, PyTorch's
 * CrossEntropyLoss(label_smoothing = E): the target is (1 - E) onehot + E/K),
 * the last layer; its flat input (at least 2 wide) is the class count K.
 * Forward returns the summed loss and the correct count and, when training,
 * writes d(logits) into the previous layer's gradient, so it has no backward
 * of its own. Kernel: the backend's softmax_xent (plain targets); smoothing
 * is exact arithmetic on its results, no second exp/log:
 *   loss_E = loss_0 + E * (z_y - mean_j z_j)      (per sample)
 *   grad_E = grad_0 + E * (onehot - 1/K)
 * done in place on host memory, staged through the host elsewhere.
 */
#include "layer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"
#include "log.h"

typedef struct softmax_xent_params {
	float smoothing;
} softmax_xent_params;

_Static_assert(sizeof(softmax_xent_params) <= LAYER_PARAMS_BYTES, "softmax_xent_params too large");

static bool softmax_xent_set(layer_spec *s, const char *key, const char *value, char *err, size_t errlen)
{
	if (strcmp(key, "label_smoothing") == 0)
		return layer_key_float(s, key, value, 0.0, 1.0, false,
				       &LAYER_PARAMS(softmax_xent_params, s)->smoothing, err, errlen);
	return layer_key_unknown(s, key, err, errlen);
}

/* Only a smoothing other than 0: the dump of configs without the key stays as it was. */
static int softmax_xent_dump(const layer_spec *s, char *buf, size_t len)
{
	float e = LAYER_PARAMS(const softmax_xent_params, s)->smoothing;
	if (e == 0.0f) {
		if (len)
			buf[0] = 0;
		return 0;
	}
	return snprintf(buf, len, "label_smoothing = %.9g\n", (double)e);
}

/* The text of a layer without attributes when there is no smoothing (hashes stay as they were). */
static void softmax_xent_hash_attrs(const layer *l, char *buf, size_t len)
{
	float e = LAYER_PARAMS(const softmax_xent_params, &l->spec)->smoothing;
	if (e == 0.0f)
		snprintf(buf, len, "k0x0 s0x0 p0,0 p0x0 r0");
	else
		snprintf(buf, len, "k0x0 s0x0 p0,0 p0x0 r0 smoothing %.9g", (double)e);
}

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

/* The smoothing terms on host copies of the logits and d(logits) (g may be NULL). */
static double smooth_host(int n, int K, float e, const float *z, const uint8_t *labels, float *g)
{
	double extra = 0;
	const float off = e / (float)K;
	for (int i = 0; i < n; i++) {
		const float *zi = z + (size_t)i * K;
		double mean = 0;
		for (int j = 0; j < K; j++)
			mean += zi[j];
		extra += (double)e * ((double)zi[labels[i]] - mean / K);
		if (!g)
			continue;
		float *gi = g + (size_t)i * K;
		for (int j = 0; j < K; j++)
			gi[j] -= off;
		gi[labels[i]] += e;
	}
	return extra;
}

/* Apply label smoothing E to the kernel's results: in place, or staged through host memory. */
static void smooth(const layer_pass *p, float e, float *dlogits)
{
	const int n = p->b->n, K = p->l->in_c;
	const size_t bytes = (size_t)n * K * sizeof(float);
	if (p->be->caps & BACKEND_CAP_HOST_MEMORY) {
		*p->loss_sum += smooth_host(n, K, e, p->in, p->b->labels, dlogits);
		return;
	}
	float *z = malloc(bytes), *g = dlogits ? malloc(bytes) : NULL;
	if (!z || (dlogits && !g)) {
		log_error("[layer.%s] out of memory for label smoothing", p->l->spec.name);
		abort(); /* never a wrong result */
	}
	p->be->synchronize(p->be);
	p->be->download(z, p->in, bytes);
	if (g)
		p->be->download(g, dlogits, bytes);
	*p->loss_sum += smooth_host(n, K, e, z, p->b->labels, g);
	if (g)
		p->be->upload(dlogits, g, bytes);
	free(z);
	free(g);
}

static void softmax_xent_forward(const layer_pass *p)
{
	float *dlogits = p->b->training ? p->din : NULL;
	p->be->softmax_xent(p->b->n, p->l->in_c, p->in, p->b->labels, dlogits, p->loss_sum, p->correct);
	float e = LAYER_PARAMS(const softmax_xent_params, &p->l->spec)->smoothing;
	if (e != 0.0f && p->b->n > 0)
		smooth(p, e, dlogits);
}

const layer_type layer_softmax_xent = {
	.name = "softmax_xent",
	.flags = LT_LOSS,
	.set = softmax_xent_set,
	.dump = softmax_xent_dump,
	.hash_attrs = softmax_xent_hash_attrs,
	.shape = softmax_xent_shape,
	.runs_on = softmax_xent_runs_on,
	.forward = softmax_xent_forward,
};
