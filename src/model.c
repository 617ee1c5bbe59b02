/*
 * model.c - a network as a list of layers, each driven through its row of
 * the layer table (src/layers/): shape inference, the flat parameter layout,
 * initialisation, the architecture hash, the workspace and the
 * forward/backward passes. No layer type is known here by name, except the
 * relu that "activation = relu" adds.
 */
#include "model.h"
#include "layers/layer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

int model_add_view(model *m, layer *l, const char *what, int ndim, const int *dims)
{
	if (l->n_views >= LAYER_MAX_VIEWS)
		return -1;
	int t = add_tensor(m, l->spec.name, what, ndim, dims);
	if (t < 0)
		return -1;
	if (l->n_views == 0)
		l->first_view = t;
	l->n_views++;
	return t;
}

int model_add_buffer(model *m, layer *l, const char *what, int ndim, const int *dims)
{
	if (l->n_bufs >= LAYER_MAX_VIEWS || m->n_buffer_views >= MODEL_MAX_BUFFERS)
		return -1;
	tensor_view *t = &m->buffers[m->n_buffer_views];
	snprintf(t->name, sizeof t->name, "%s.%s", l->spec.name, what);
	t->ndim = ndim;
	t->numel = 1;
	for (int i = 0; i < ndim; i++) {
		t->dims[i] = dims[i];
		t->numel *= (size_t)dims[i];
	}
	t->offset = m->n_buffers;
	m->n_buffers += (t->numel + 15) & ~(size_t)15;
	if (l->n_bufs == 0)
		l->first_buf = m->n_buffer_views;
	l->n_bufs++;
	return m->n_buffer_views++;
}

void model_init_glorot(const model *m, int ti, uint32_t seed, double fan_in, double fan_out, float *params)
{
	const tensor_view *t = &m->tensors[ti];
	float limit = (float)sqrt(6.0 / (fan_in + fan_out));
	philox_key k = {{seed, (uint32_t)ti}};
	float *w = params + t->offset;
	for (size_t j = 0; j < t->numel; j += 4) {
		philox_ctr c = {{(uint32_t)(j >> 2), (uint32_t)(j >> 34), 0, PHILOX_INIT}};
		philox_ctr r = philox4x32(c, k);
		for (size_t q = 0; q < 4 && j + q < t->numel; q++)
			w[j + q] = (2.0f * philox_uniform(r.v[q]) - 1.0f) * limit;
	}
}

/* A new layer at the end of m, its input the previous layer's output (or the model's input). */
static layer *push_layer(model *m, const layer_spec *spec)
{
	if (m->n_layers >= CONFIG_MAX_LAYERS) {
		log_error("too many layers (activations count; at most %d)", CONFIG_MAX_LAYERS);
		return NULL;
	}
	const layer *prev = m->n_layers ? &m->layers[m->n_layers - 1] : NULL;
	layer *l = &m->layers[m->n_layers];
	memset(l, 0, sizeof *l);
	l->spec = *spec;
	l->index = m->n_layers++;
	l->first_view = -1;
	l->first_buf = -1;
	l->in_c = prev ? prev->out_c : m->in_c;
	l->in_h = prev ? prev->out_h : m->in_h;
	l->in_w = prev ? prev->out_w : m->in_w;
	l->out_c = l->in_c;
	l->out_h = l->in_h;
	l->out_w = l->in_w;
	l->in_numel = (size_t)l->in_c * l->in_h * l->in_w;
	l->out_numel = l->in_numel;
	return l;
}

/* Shape inference for the layer just pushed: its type's shape, then the checks every layer shares. */
static int shape_layer(model *m, layer *l)
{
	const layer_type *t = l->spec.type;
	int rc = t->shape ? t->shape(m, l) : 0;
	if (rc)
		return rc;
	if (l->out_h < 1 || l->out_w < 1) {
		log_error("[layer.%s] output shape would be empty", l->spec.name);
		return EXIT_USAGE;
	}
	l->out_numel = (size_t)l->out_c * l->out_h * l->out_w;
	if (l->out_numel > (1u << 26)) {
		log_error("[layer.%s] output of %zu values per sample is too large", l->spec.name, l->out_numel);
		return EXIT_USAGE;
	}
	if (t->flags & LT_LOSS)
		m->classes = l->in_c;
	double f = t->flops ? t->flops(l) : 0.0;
	m->flops_per_sample += f;
	m->train_flops_per_sample += f * (l->index > 0 ? 3 : 2);
	return 0;
}

/* Hash the architecture: types, names, shapes, attributes and the tensor layout. */
static uint64_t model_hash(const model *m)
{
	uint64_t h = 0xcbf29ce484222325ull;
	char line[384];
	for (int i = 0; i < m->n_layers; i++) {
		const layer *l = &m->layers[i];
		/* the attribute text of a layer without attributes, as hashed since version 1 */
		char attrs[192] = "k0x0 s0x0 p0,0 p0x0 r0";
		if (l->spec.type->hash_attrs)
			l->spec.type->hash_attrs(l, attrs, sizeof attrs);
		int n = snprintf(line, sizeof line, "%s %s %dx%dx%d>%dx%dx%d %s;", l->spec.type->name,
				 l->spec.name, l->in_c, l->in_h, l->in_w, l->out_c, l->out_h, l->out_w, attrs);
		h = fnv1a(h, line, (size_t)(n < (int)sizeof line ? n : (int)sizeof line - 1));
	}
	for (int i = 0; i < m->n_tensors; i++) {
		const tensor_view *t = &m->tensors[i];
		h = fnv1a(h, t->name, strlen(t->name));
		h = fnv1a(h, t->dims, sizeof(int) * (size_t)t->ndim);
	}
	/* buffer views (none in networks without BatchNorm: their hash is unchanged) */
	for (int i = 0; i < m->n_buffer_views; i++) {
		const tensor_view *t = &m->buffers[i];
		h = fnv1a(h, "buffer ", 7);
		h = fnv1a(h, t->name, strlen(t->name));
		h = fnv1a(h, t->dims, sizeof(int) * (size_t)t->ndim);
	}
	return h;
}

int model_build(const config *c, model *m)
{
	memset(m, 0, sizeof *m);
	m->in_c = c->in_c;
	m->in_h = c->in_h;
	m->in_w = c->in_w;
	for (int i = 0; i < c->n_layers; i++) {
		if (!c->layers[i].type) {
			log_error("[layer.%s] has no type", c->layers[i].name);
			return EXIT_USAGE;
		}
		layer *l = push_layer(m, &c->layers[i]);
		if (!l)
			return EXIT_USAGE;
		int rc = shape_layer(m, l);
		if (rc)
			return rc;
		if (l->spec.relu_after) {
			layer_spec r = {.type = layer_type_find("relu")};
			snprintf(r.name, sizeof r.name, "%.*s.relu", (int)sizeof r.name - 6, c->layers[i].name);
			if (!push_layer(m, &r))
				return EXIT_USAGE;
		}
	}
	if (m->classes == 0) {
		log_error("the network has no softmax_xent layer at the end");
		return EXIT_USAGE;
	}
	m->hash = model_hash(m);
	return 0;
}

void model_init_params(const model *m, uint32_t seed, float *params)
{
	memset(params, 0, m->n_params * sizeof(float));
	for (int i = 0; i < m->n_layers; i++) {
		const layer *l = &m->layers[i];
		if (l->spec.type->init)
			l->spec.type->init(m, l, seed, params);
	}
}

void model_init_buffers(const model *m, float *buffers)
{
	if (m->n_buffers == 0)
		return;
	memset(buffers, 0, m->n_buffers * sizeof(float));
	for (int i = 0; i < m->n_layers; i++) {
		const layer *l = &m->layers[i];
		if (l->n_bufs && l->spec.type->init_buffers)
			l->spec.type->init_buffers(m, l, buffers);
	}
}

void model_update_buffers(const model *m, float *buffers, const float *stats)
{
	for (int i = 0; i < m->n_layers; i++) {
		const layer *l = &m->layers[i];
		if (!l->n_bufs || !l->spec.type->update_buffers)
			continue;
		float *buf[LAYER_MAX_VIEWS] = {0};
		const float *st[LAYER_MAX_VIEWS] = {0};
		for (int v = 0; v < l->n_bufs; v++) {
			size_t off = m->buffers[l->first_buf + v].offset;
			buf[v] = buffers + off;
			st[v] = stats + off;
		}
		l->spec.type->update_buffers(l, buf, st);
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
				 l->spec.type->name, l->in_c, l->in_h, l->in_w, l->out_c, l->out_h,
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

/* Whether be can run layer l; resolves its kernels into *k. Logs and returns false when not. */
static bool layer_runs_on(const layer *l, const backend *be, const layer_kernels **k)
{
	const layer_type *t = l->spec.type;
	*k = NULL;
	bool ok = !t->runs_on || t->runs_on(be);
	if (ok && (t->flags & LT_KERNELS)) {
		*k = be->layer_kernels ? be->layer_kernels(be, t->name) : NULL;
		ok = *k && (*k)->forward && (*k)->backward;
	}
	if (!ok)
		log_error("[layer.%s] the %s backend has no kernels for a %s layer: run on another device "
			  "or use a network without it", l->spec.name, be->name, t->name);
	return ok;
}

/* Buffers of layer i: output, its gradient, saved memory; an alias layer shares its input's. */
static bool alloc_layer(const model *m, const backend *be, int i, net_workspace *ws)
{
	const layer *l = &m->layers[i];
	const size_t bytes = (size_t)ws->max_n * l->out_numel * sizeof(float);
	if (l->spec.type->flags & LT_ALIAS) {
		/* the output is the input's memory; the first layer still needs a gradient for layer 1 */
		ws->act[i] = i > 0 ? ws->act[i - 1] : ws->input;
		ws->grad[i] = i > 0 ? ws->grad[i - 1] : ws_alloc(be, bytes);
		return ws->grad[i] != NULL;
	}
	ws->act[i] = ws_alloc(be, bytes);
	ws->grad[i] = ws_alloc(be, bytes);
	if (!ws->act[i] || !ws->grad[i])
		return false;
	size_t saved = l->spec.type->saved_bytes ? l->spec.type->saved_bytes(l) : 0;
	if (saved && !(ws->saved[i] = ws_alloc(be, (size_t)ws->max_n * saved)))
		return false;
	return true;
}

int net_workspace_alloc(const model *m, const backend *be, int max_n, net_workspace *ws)
{
	memset(ws, 0, sizeof *ws);
	ws->max_n = max_n;
	size_t L = (size_t)m->n_layers;
	ws->act = calloc(L, sizeof *ws->act);
	ws->grad = calloc(L, sizeof *ws->grad);
	ws->saved = calloc(L, sizeof *ws->saved);
	ws->kernels = calloc(L, sizeof *ws->kernels);
	if (!ws->act || !ws->grad || !ws->saved || !ws->kernels)
		goto fail;
	for (int i = 0; i < m->n_layers; i++) {
		if (!layer_runs_on(&m->layers[i], be, &ws->kernels[i])) {
			net_workspace_free(m, be, ws);
			return EXIT_USAGE;
		}
	}
	ws->input = ws_alloc(be, (size_t)max_n * m->in_c * m->in_h * m->in_w * sizeof(float));
	if (!ws->input)
		goto fail;
	size_t scratch = 0;
	for (int i = 0; i < m->n_layers; i++) {
		const layer *l = &m->layers[i];
		if (!alloc_layer(m, be, i, ws))
			goto fail;
		size_t s = l->spec.type->scratch_bytes ? l->spec.type->scratch_bytes(l, be, max_n) : 0;
		scratch = s > scratch ? s : scratch;
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
		if (m->layers[i].spec.type->flags & LT_ALIAS) {
			if (i == 0 && ws->grad[0])
				be->release(ws->grad[0]); /* its own; the output is ws->input */
			continue;
		}
		if (ws->act[i])
			be->release(ws->act[i]);
		if (ws->grad[i])
			be->release(ws->grad[i]);
		if (ws->saved[i])
			be->release(ws->saved[i]);
	}
	if (ws->input)
		be->release(ws->input);
	if (ws->scratch)
		be->release(ws->scratch);
	free(ws->act);
	free(ws->grad);
	free(ws->saved);
	free(ws->kernels);
	memset(ws, 0, sizeof *ws);
}

/* ---- passes ---- */

/* What layer i's pass gets; grads NULL in forward. */
static layer_pass pass_of(const model *m, const backend *be, const float *params, float *grads,
			  const net_workspace *ws, const batch_info *b, int i)
{
	const layer *l = &m->layers[i];
	layer_pass p = {
		.be = be,
		.l = l,
		.b = b,
		.k = ws->kernels[i],
		.in = i > 0 ? ws->act[i - 1] : ws->input,
		.out = ws->act[i],
		.dout = ws->grad[i],
		.din = i > 0 ? ws->grad[i - 1] : NULL,
		.saved = ws->saved[i],
		.scratch = ws->scratch,
	};
	for (int v = 0; v < l->n_views; v++) {
		size_t off = m->tensors[l->first_view + v].offset;
		p.w[v] = params + off;
		p.dw[v] = grads ? grads + off : NULL;
	}
	for (int v = 0; v < l->n_bufs; v++) {
		size_t off = m->buffers[l->first_buf + v].offset;
		p.buf[v] = b->buffers ? b->buffers + off : NULL;
		p.stat[v] = b->stats ? b->stats + off : NULL;
	}
	return p;
}

/* Seconds on the monotonic clock after the backend's queued work (per-layer timing only). */
static double layer_clock(const backend *be)
{
	struct timespec ts;
	be->synchronize(be);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void net_forward(const model *m, const backend *be, const float *params, net_workspace *ws,
		 const batch_info *b, double *loss_sum, int *correct)
{
	*loss_sum = 0;
	*correct = 0;
	if (b->n == 0)
		return;
	for (int i = 0; i < m->n_layers; i++) {
		const layer_type *t = m->layers[i].spec.type;
		if (t->flags & LT_ALIAS)
			continue; /* same memory */
		layer_pass p = pass_of(m, be, params, NULL, ws, b, i);
		p.loss_sum = loss_sum;
		p.correct = correct;
		double t0 = ws->layer_fwd_s ? layer_clock(be) : 0;
		t->forward(&p);
		if (ws->layer_fwd_s)
			ws->layer_fwd_s[i] += layer_clock(be) - t0;
	}
}

void net_backward(const model *m, const backend *be, const float *params, float *grads,
		  net_workspace *ws, const batch_info *b)
{
	if (b->n == 0)
		return;
	/* the loss layer's forward wrote d(logits); walk back from the last layer */
	for (int i = m->n_layers - 1; i >= 0; i--) {
		const layer_type *t = m->layers[i].spec.type;
		if ((t->flags & LT_ALIAS) || !t->backward)
			continue;
		layer_pass p = pass_of(m, be, params, grads, ws, b, i);
		double t0 = ws->layer_bwd_s ? layer_clock(be) : 0;
		t->backward(&p);
		if (ws->layer_bwd_s)
			ws->layer_bwd_s[i] += layer_clock(be) - t0;
	}
}
