/*
 * model.c - shape inference, the flat parameter layout, initialisation and
 * the forward/backward passes through a backend table.
 */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"
#include "log.h"
#include "philox.h"

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static int add_tensor(model *m, const char *layer, const char *what, int ndim, const int *dims)
{
	if (m->n_tensors >= MODEL_MAX_TENSORS)
		return -1;
	tensor_view *t = &m->tensors[m->n_tensors];
	snprintf(t->name, sizeof t->name, "%s.%s", layer, what);
	t->ndim = ndim;
	t->numel = 1;
	for (int i = 0; i < ndim; i++) {
		t->dims[i] = dims[i];
		t->numel *= (size_t)dims[i];
	}
	/* keep every tensor 16-float aligned so that vector loads never straddle tensors */
	t->offset = m->n_params;
	m->n_params += (t->numel + 15) & ~(size_t)15;
	return m->n_tensors++;
}

static layer *push_layer(model *m, const layer_spec *spec, const layer *prev)
{
	if (m->n_layers >= CONFIG_MAX_LAYERS)
		return NULL;
	layer *l = &m->layers[m->n_layers++];
	memset(l, 0, sizeof *l);
	l->spec = *spec;
	l->w_tensor = l->b_tensor = -1;
	if (prev) {
		l->in_c = prev->out_c;
		l->in_h = prev->out_h;
		l->in_w = prev->out_w;
	} else {
		l->in_c = m->in_c;
		l->in_h = m->in_h;
		l->in_w = m->in_w;
	}
	l->out_c = l->in_c;
	l->out_h = l->in_h;
	l->out_w = l->in_w;
	return l;
}

static int shape_conv(model *m, layer *l)
{
	const layer_spec *s = &l->spec;
	int sh = s->stride_h ? s->stride_h : 1, sw = s->stride_w ? s->stride_w : 1;
	int oh, ow, pt = 0, pl = 0;
	if (l->in_h * l->in_w == 1 && l->in_c > 1 && m->n_layers > 1) {
		log_error("[layer.%s] conv2d after a flatten/dense layer: its input has no spatial shape",
			  s->name);
		return EXIT_USAGE;
	}
	if (s->padding == PAD_SAME) {
		oh = (l->in_h + sh - 1) / sh;
		ow = (l->in_w + sw - 1) / sw;
		int ph = (oh - 1) * sh + s->kernel_h - l->in_h, pw = (ow - 1) * sw + s->kernel_w - l->in_w;
		pt = ph > 0 ? ph / 2 : 0;
		pl = pw > 0 ? pw / 2 : 0;
	} else {
		if (s->kernel_h > l->in_h || s->kernel_w > l->in_w) {
			log_error("[layer.%s] kernel %dx%d is larger than its %dx%d input (padding = valid)",
				  s->name, s->kernel_h, s->kernel_w, l->in_h, l->in_w);
			return EXIT_USAGE;
		}
		oh = (l->in_h - s->kernel_h) / sh + 1;
		ow = (l->in_w - s->kernel_w) / sw + 1;
	}
	l->out_c = s->filters;
	l->out_h = oh;
	l->out_w = ow;
	l->conv = (conv_desc){l->in_c, l->in_h, l->in_w, l->out_c, oh, ow, s->kernel_h, s->kernel_w,
			      sh, sw, pt, pl};
	int wd[4] = {s->filters, l->in_c, s->kernel_h, s->kernel_w}, bd[1] = {s->filters};
	l->w_tensor = add_tensor(m, s->name, "weight", 4, wd);
	l->b_tensor = add_tensor(m, s->name, "bias", 1, bd);
	double macs = (double)oh * ow * s->filters * l->in_c * s->kernel_h * s->kernel_w;
	m->flops_per_sample += 2 * macs;
	m->train_flops_per_sample += 2 * macs * (m->n_layers > 1 ? 3 : 2);
	return 0;
}

static int shape_pool(layer *l)
{
	const layer_spec *s = &l->spec;
	int sh = s->stride_h ? s->stride_h : s->pool_h, sw = s->stride_w ? s->stride_w : s->pool_w;
	if (s->pool_h > l->in_h || s->pool_w > l->in_w) {
		log_error("[layer.%s] pool %dx%d is larger than its %dx%d input", s->name, s->pool_h,
			  s->pool_w, l->in_h, l->in_w);
		return EXIT_USAGE;
	}
	l->out_h = (l->in_h - s->pool_h) / sh + 1;
	l->out_w = (l->in_w - s->pool_w) / sw + 1;
	l->pool = (pool_desc){l->in_c, l->in_h, l->in_w, l->out_h, l->out_w, s->pool_h, s->pool_w, sh, sw};
	return 0;
}

static int shape_dense(model *m, layer *l)
{
	const layer_spec *s = &l->spec;
	if (l->in_h != 1 || l->in_w != 1) {
		log_error("[layer.%s] dense needs a flat input, but gets %dx%dx%d: put a flatten layer before it",
			  s->name, l->in_c, l->in_h, l->in_w);
		return EXIT_USAGE;
	}
	l->out_c = s->units;
	int wd[2] = {s->units, l->in_c}, bd[1] = {s->units};
	l->w_tensor = add_tensor(m, s->name, "weight", 2, wd);
	l->b_tensor = add_tensor(m, s->name, "bias", 1, bd);
	double macs = (double)s->units * l->in_c;
	m->flops_per_sample += 2 * macs;
	m->train_flops_per_sample += 2 * macs * (m->n_layers > 1 ? 3 : 2);
	return 0;
}

int model_build(const config *c, model *m)
{
	memset(m, 0, sizeof *m);
	m->in_c = c->in_c;
	m->in_h = c->in_h;
	m->in_w = c->in_w;
	const layer *prev = NULL;
	for (int i = 0; i < c->n_layers; i++) {
		layer *l = push_layer(m, &c->layers[i], prev);
		if (!l) {
			log_error("too many layers (activations count; at most %d)", CONFIG_MAX_LAYERS);
			return EXIT_USAGE;
		}
		int rc = 0;
		switch (l->spec.kind) {
		case LAYER_CONV2D: rc = shape_conv(m, l); break;
		case LAYER_MAXPOOL: rc = shape_pool(l); break;
		case LAYER_FLATTEN:
			l->out_c = l->in_c * l->in_h * l->in_w;
			l->out_h = l->out_w = 1;
			break;
		case LAYER_DENSE: rc = shape_dense(m, l); break;
		case LAYER_SOFTMAX_XENT:
			if (l->in_h != 1 || l->in_w != 1 || l->in_c < 2) {
				log_error("[layer.%s] softmax_xent needs a flat input of at least 2 classes, gets %dx%dx%d",
					  l->spec.name, l->in_c, l->in_h, l->in_w);
				return EXIT_USAGE;
			}
			m->classes = l->in_c;
			break;
		default: break; /* relu, dropout keep the shape */
		}
		if (rc)
			return rc;
		if (l->w_tensor < 0 && (l->spec.kind == LAYER_CONV2D || l->spec.kind == LAYER_DENSE)) {
			log_error("too many parameter tensors");
			return EXIT_USAGE;
		}
		if (l->out_h < 1 || l->out_w < 1) {
			log_error("[layer.%s] output shape would be empty", l->spec.name);
			return EXIT_USAGE;
		}
		l->in_numel = (size_t)l->in_c * l->in_h * l->in_w;
		l->out_numel = (size_t)l->out_c * l->out_h * l->out_w;
		if (l->out_numel > (1u << 26)) {
			log_error("[layer.%s] output of %zu values per sample is too large", l->spec.name,
				  l->out_numel);
			return EXIT_USAGE;
		}
		prev = l;
		if (l->spec.relu_after) {
			layer_spec r = {.kind = LAYER_RELU};
			snprintf(r.name, sizeof r.name, "%.*s.relu", (int)sizeof r.name - 6, c->layers[i].name);
			layer *a = push_layer(m, &r, prev);
			if (!a) {
				log_error("too many layers (activations count; at most %d)", CONFIG_MAX_LAYERS);
				return EXIT_USAGE;
			}
			a->in_numel = a->out_numel = prev->out_numel;
			prev = a;
		}
	}
	if (m->classes == 0) {
		log_error("the network has no softmax_xent layer at the end");
		return EXIT_USAGE;
	}
	/* hash the architecture: kinds, shapes and tensor layout */
	uint64_t h = 0xcbf29ce484222325ull;
	char line[256];
	for (int i = 0; i < m->n_layers; i++) {
		const layer *l = &m->layers[i];
		int n = snprintf(line, sizeof line, "%s %s %dx%dx%d>%dx%dx%d k%dx%d s%dx%d p%d,%d p%dx%d r%.6g;",
				 layer_kind_name(l->spec.kind), l->spec.name, l->in_c, l->in_h, l->in_w, l->out_c,
				 l->out_h, l->out_w, l->conv.k_h, l->conv.k_w, l->conv.stride_h | l->pool.stride_h,
				 l->conv.stride_w | l->pool.stride_w, l->conv.pad_top, l->conv.pad_left,
				 l->pool.k_h, l->pool.k_w, (double)l->spec.rate);
		h = fnv1a(h, line, (size_t)n);
	}
	for (int i = 0; i < m->n_tensors; i++) {
		const tensor_view *t = &m->tensors[i];
		h = fnv1a(h, t->name, strlen(t->name));
		h = fnv1a(h, t->dims, sizeof(int) * (size_t)t->ndim);
	}
	m->hash = h;
	return 0;
}

void model_init_params(const model *m, uint32_t seed, float *params)
{
	memset(params, 0, m->n_params * sizeof(float));
	for (int i = 0; i < m->n_layers; i++) {
		const layer *l = &m->layers[i];
		if (l->w_tensor < 0)
			continue;
		const tensor_view *t = &m->tensors[l->w_tensor];
		double fan_in, fan_out;
		if (l->spec.kind == LAYER_CONV2D) {
			fan_in = (double)l->in_c * l->conv.k_h * l->conv.k_w;
			fan_out = (double)l->out_c * l->conv.k_h * l->conv.k_w;
		} else {
			fan_in = l->in_c;
			fan_out = l->out_c;
		}
		float limit = (float)sqrt(6.0 / (fan_in + fan_out));
		philox_key k = {{seed, (uint32_t)l->w_tensor}};
		float *w = params + t->offset;
		for (size_t j = 0; j < t->numel; j += 4) {
			philox_ctr c = {{(uint32_t)(j >> 2), (uint32_t)(j >> 34), 0, PHILOX_INIT}};
			philox_ctr r = philox4x32(c, k);
			for (size_t q = 0; q < 4 && j + q < t->numel; q++)
				w[j + q] = (2.0f * philox_uniform(r.v[q]) - 1.0f) * limit;
		}
	}
}

int model_find_tensor(const model *m, const char *name)
{
	for (int i = 0; i < m->n_tensors; i++)
		if (strcmp(m->tensors[i].name, name) == 0)
			return i;
	return -1;
}

void model_describe(const model *m, char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = 0;
	for (int i = 0; i < m->n_layers && used < len; i++) {
		const layer *l = &m->layers[i];
		int n = snprintf(buf + used, len - used, "  %-14s %-12s %4dx%dx%d -> %dx%dx%d\n", l->spec.name,
				 layer_kind_name(l->spec.kind), l->in_c, l->in_h, l->in_w, l->out_c, l->out_h,
				 l->out_w);
		if (n < 0)
			break;
		used += (size_t)n;
	}
	if (used < len)
		snprintf(buf + used, len - used, "  %zu parameters, %.1f MFLOP per sample (forward)\n",
			 m->n_params, m->flops_per_sample / 1e6);
}

/* ---- workspace ---- */

static void *ws_alloc(const backend *be, size_t bytes)
{
	if (bytes == 0)
		bytes = 64;
	return be->alloc(bytes);
}

int net_workspace_alloc(const model *m, const backend *be, int max_n, net_workspace *ws)
{
	memset(ws, 0, sizeof *ws);
	ws->max_n = max_n;
	size_t L = (size_t)m->n_layers;
	ws->act = calloc(L, sizeof *ws->act);
	ws->grad = calloc(L, sizeof *ws->grad);
	ws->argmax = calloc(L, sizeof *ws->argmax);
	ws->mask = calloc(L, sizeof *ws->mask);
	if (!ws->act || !ws->grad || !ws->argmax || !ws->mask)
		goto fail;
	ws->input = ws_alloc(be, (size_t)max_n * m->in_c * m->in_h * m->in_w * sizeof(float));
	if (!ws->input)
		goto fail;
	size_t scratch = 0;
	for (int i = 0; i < m->n_layers; i++) {
		const layer *l = &m->layers[i];
		size_t bytes = (size_t)max_n * l->out_numel * sizeof(float);
		if (l->spec.kind == LAYER_FLATTEN && i > 0)
			continue; /* aliases the previous layer's buffers, set below */
		ws->act[i] = ws_alloc(be, bytes);
		ws->grad[i] = ws_alloc(be, bytes);
		if (!ws->act[i] || !ws->grad[i])
			goto fail;
		if (l->spec.kind == LAYER_MAXPOOL &&
		    !(ws->argmax[i] = ws_alloc(be, (size_t)max_n * l->out_numel * sizeof(int32_t))))
			goto fail;
		if (l->spec.kind == LAYER_DROPOUT && !(ws->mask[i] = ws_alloc(be, bytes)))
			goto fail;
		if (l->spec.kind == LAYER_CONV2D) {
			size_t s = be->conv2d_workspace(&l->conv, max_n);
			scratch = s > scratch ? s : scratch;
		}
	}
	for (int i = 1; i < m->n_layers; i++) {
		if (m->layers[i].spec.kind == LAYER_FLATTEN) {
			ws->act[i] = ws->act[i - 1];
			ws->grad[i] = ws->grad[i - 1];
		}
	}
	ws->scratch_bytes = scratch;
	ws->scratch = ws_alloc(be, scratch);
	if (!ws->scratch)
		goto fail;
	return 0;
fail:
	log_error("out of memory allocating activations for %d samples per rank", max_n);
	net_workspace_free(m, be, ws);
	return EXIT_OSERR;
}

void net_workspace_free(const model *m, const backend *be, net_workspace *ws)
{
	for (int i = 0; ws->act && i < m->n_layers; i++) {
		if (i > 0 && m->layers[i].spec.kind == LAYER_FLATTEN)
			continue; /* aliases layer i-1 */
		if (ws->act[i])
			be->release(ws->act[i]);
		if (ws->grad[i])
			be->release(ws->grad[i]);
		if (ws->argmax[i])
			be->release(ws->argmax[i]);
		if (ws->mask[i])
			be->release(ws->mask[i]);
	}
	if (ws->input)
		be->release(ws->input);
	if (ws->scratch)
		be->release(ws->scratch);
	free(ws->act);
	free(ws->grad);
	free(ws->argmax);
	free(ws->mask);
	memset(ws, 0, sizeof *ws);
}

/* ---- passes ---- */

void net_forward(const model *m, const backend *be, const float *params, net_workspace *ws,
		 const batch_info *b, double *loss_sum, int *correct)
{
	*loss_sum = 0;
	*correct = 0;
	if (b->n == 0)
		return;
	const float *in = ws->input;
	for (int i = 0; i < m->n_layers; i++) {
		const layer *l = &m->layers[i];
		float *out = ws->act[i];
		size_t count = (size_t)b->n * l->out_numel;
		const float *w = l->w_tensor >= 0 ? params + m->tensors[l->w_tensor].offset : NULL;
		const float *bias = l->b_tensor >= 0 ? params + m->tensors[l->b_tensor].offset : NULL;
		switch (l->spec.kind) {
		case LAYER_CONV2D:
			be->conv2d_forward(&l->conv, b->n, in, w, bias, out, ws->scratch);
			break;
		case LAYER_MAXPOOL:
			be->maxpool_forward(&l->pool, b->n, in, out, ws->argmax[i]);
			break;
		case LAYER_RELU:
			be->relu_forward(count, in, out);
			break;
		case LAYER_DROPOUT: {
			dropout_desc d = {b->training ? l->spec.rate : 0.0f, b->seed, (uint32_t)i, b->epoch,
					  l->out_numel};
			be->dropout_forward(&d, b->n, b->samples, in, out, ws->mask[i]);
			break;
		}
		case LAYER_FLATTEN:
			break; /* same memory */
		case LAYER_DENSE:
			be->dense_forward(b->n, l->in_c, l->out_c, in, w, bias, out);
			break;
		case LAYER_SOFTMAX_XENT:
			be->softmax_xent(b->n, m->classes, in, b->labels,
					 b->training ? ws->grad[i - 1] : NULL, loss_sum, correct);
			break;
		}
		in = out;
	}
}

void net_backward(const model *m, const backend *be, const float *params, float *grads,
		  net_workspace *ws, const batch_info *b)
{
	if (b->n == 0)
		return;
	/* the loss layer wrote d(logits) into grad[L-2]; walk back from there */
	for (int i = m->n_layers - 2; i >= 0; i--) {
		const layer *l = &m->layers[i];
		const float *in = i > 0 ? ws->act[i - 1] : ws->input;
		const float *dout = ws->grad[i];
		float *din = i > 0 ? ws->grad[i - 1] : NULL;
		size_t count = (size_t)b->n * l->out_numel;
		const float *w = l->w_tensor >= 0 ? params + m->tensors[l->w_tensor].offset : NULL;
		float *dw = l->w_tensor >= 0 ? grads + m->tensors[l->w_tensor].offset : NULL;
		float *db = l->b_tensor >= 0 ? grads + m->tensors[l->b_tensor].offset : NULL;
		switch (l->spec.kind) {
		case LAYER_CONV2D:
			be->conv2d_backward(&l->conv, b->n, in, w, dout, din, dw, db, ws->scratch);
			break;
		case LAYER_MAXPOOL:
			if (din)
				be->maxpool_backward(&l->pool, b->n, dout, ws->argmax[i], din);
			break;
		case LAYER_RELU:
			if (din)
				be->relu_backward(count, ws->act[i], dout, din);
			break;
		case LAYER_DROPOUT:
			if (din)
				be->dropout_backward(count, ws->mask[i], dout, din);
			break;
		case LAYER_FLATTEN:
			break; /* grad[i] is grad[i-1] */
		case LAYER_DENSE:
			be->dense_backward(b->n, l->in_c, l->out_c, in, w, dout, din, dw, db);
			break;
		case LAYER_SOFTMAX_XENT:
			break;
		}
	}
}
