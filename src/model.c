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
#include <stdbool.h>
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

void model_input_dims(const model *m, const layer *l, int k, int *c, int *h, int *w)
{
	const int src = l->in_idx[k];
	*c = src >= 0 ? m->layers[src].out_c : m->in_c;
	*h = src >= 0 ? m->layers[src].out_h : m->in_h;
	*w = src >= 0 ? m->layers[src].out_w : m->in_w;
}

/* A new layer at the end of m reading in_idx[0 .. n_in) (NULL: the previous layer or the model's input). */
static layer *push_layer(model *m, const layer_spec *spec, const int *in_idx, int n_in)
{
	if (m->n_layers >= CONFIG_MAX_LAYERS) {
		log_error("too many layers (activations count; at most %d)", CONFIG_MAX_LAYERS);
		return NULL;
	}
	layer *l = &m->layers[m->n_layers];
	memset(l, 0, sizeof *l);
	l->spec = *spec;
	l->index = m->n_layers++;
	l->first_view = -1;
	l->n_in = in_idx ? n_in : 1;
	for (int k = 0; k < l->n_in; k++)
		l->in_idx[k] = in_idx ? in_idx[k] : l->index - 1;
	model_input_dims(m, l, 0, &l->in_c, &l->in_h, &l->in_w);
	l->first_buf = -1;
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
	if (l->n_in > 1 && !(t->flags & LT_MULTI_IN)) {
		log_error("[layer.%s] a %s layer takes one input, not %d", l->spec.name, t->name, l->n_in);
		return EXIT_USAGE;
	}
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
	m->train_flops_per_sample += f * (l->in_idx[0] >= 0 ? 3 : 2);
	return 0;
}

/* " <a,b" when l's inputs are not just the layer before it (sequential text is kept as it was). */
static void inputs_text(const model *m, const layer *l, char *buf, size_t len)
{
	buf[0] = 0;
	if (l->n_in == 1 && l->in_idx[0] == l->index - 1)
		return;
	size_t used = 0;
	for (int k = 0; k < l->n_in && used < len; k++) {
		int src = l->in_idx[k];
		int n = snprintf(buf + used, len - used, "%s%s", k ? "," : " <",
				 src >= 0 ? m->layers[src].spec.name : "input");
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

/* Hash the architecture: types, names, shapes, attributes, inputs and the tensor layout. */
static uint64_t model_hash(const model *m)
{
	uint64_t h = 0xcbf29ce484222325ull;
	char line[640];
	for (int i = 0; i < m->n_layers; i++) {
		const layer *l = &m->layers[i];
		/* the attribute text of a layer without attributes, as hashed since version 1 */
		char attrs[192] = "k0x0 s0x0 p0,0 p0x0 r0";
		if (l->spec.type->hash_attrs)
			l->spec.type->hash_attrs(l, attrs, sizeof attrs);
		char from[256] = "";
		inputs_text(m, l, from, sizeof from);
		int n = snprintf(line, sizeof line, "%s %s %dx%dx%d>%dx%dx%d %s%s;", l->spec.type->name,
				 l->spec.name, l->in_c, l->in_h, l->in_w, l->out_c, l->out_h, l->out_w, attrs,
				 from);
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

/* Layers whose output no later layer reads (a dead branch) and names given twice are refused. */
static int check_graph(const model *m)
{
	bool read[CONFIG_MAX_LAYERS] = {false};
	for (int i = 0; i < m->n_layers; i++) {
		const layer *l = &m->layers[i];
		for (int k = 0; k < l->n_in; k++)
			if (l->in_idx[k] >= 0)
				read[l->in_idx[k]] = true;
		for (int j = 0; j < i; j++) {
			if (strcmp(m->layers[j].spec.name, l->spec.name) == 0) {
				log_error("[layer.%s] two layers have this name", l->spec.name);
				return EXIT_USAGE;
			}
		}
	}
	for (int i = 0; i < m->n_layers; i++) {
		if (!read[i] && !(m->layers[i].spec.type->flags & LT_LOSS)) {
			log_error("[layer.%s] no later layer reads its output (name it in an 'inputs')",
				  m->layers[i].spec.name);
			return EXIT_USAGE;
		}
	}
	return 0;
}

/* Config layer i and its relu (if any) onto m; last[] maps config layers to their last model layer. */
static int build_layer(const config *c, int i, model *m, int *last)
{
	const layer_spec *s = &c->layers[i];
	int in_idx[LAYER_MAX_IN];
	for (int k = 0; k < s->n_inputs; k++)
		in_idx[k] = s->inputs[k] >= 0 ? last[s->inputs[k]] : -1;
	layer *l = push_layer(m, s, s->n_inputs ? in_idx : NULL, s->n_inputs);
	if (!l)
		return EXIT_USAGE;
	int rc = shape_layer(m, l);
	if (rc)
		return rc;
	if (s->relu_after) {
		layer_spec r = {.type = layer_type_find("relu")};
		snprintf(r.name, sizeof r.name, "%.*s.relu", (int)sizeof r.name - 6, s->name);
		if (!push_layer(m, &r, NULL, 0))
			return EXIT_USAGE;
	}
	last[i] = m->n_layers - 1;
	return 0;
}

int model_build(const config *c, model *m)
{
	memset(m, 0, sizeof *m);
	m->in_c = c->in_c;
	m->in_h = c->in_h;
	m->in_w = c->in_w;
	int last[CONFIG_MAX_LAYERS];
	for (int i = 0; i < c->n_layers; i++) {
		if (!c->layers[i].type) {
			log_error("[layer.%s] has no type", c->layers[i].name);
			return EXIT_USAGE;
		}
		int rc = build_layer(c, i, m, last);
		if (rc)
			return rc;
	}
	if (m->classes == 0) {
		log_error("the network has no softmax_xent layer at the end");
		return EXIT_USAGE;
	}
	int rc = check_graph(m);
	if (rc)
		return rc;
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
		char from[256];
		inputs_text(m, l, from, sizeof from);
		int n = snprintf(buf + used, len - used, "  %-14s %-12s %4dx%dx%d -> %dx%dx%d%s\n", l->spec.name,
				 l->spec.type->name, l->in_c, l->in_h, l->in_w, l->out_c, l->out_h,
				 l->out_w, from);
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

/*
 * Relu layers whose forward their producer does (net_workspace.relu_by): a relu layer i whose
 * one input is layer j of an LT_RELU_OUT type, on a backend that fuses (BACKEND_CAP_FUSED_RELU),
 * when no other layer reads j's output. Relu is exact, so the bits are those of the two passes.
 */
static bool plan_fused_relus(const model *m, const backend *be, net_workspace *ws)
{
	if (!(be->caps & BACKEND_CAP_FUSED_RELU))
		return true;
	ws->relu_by = malloc((size_t)m->n_layers * sizeof *ws->relu_by);
	ws->relu_of = malloc((size_t)m->n_layers * sizeof *ws->relu_of);
	if (!ws->relu_by || !ws->relu_of)
		return false;
	for (int i = 0; i < m->n_layers; i++)
		ws->relu_by[i] = ws->relu_of[i] = -1;
	for (int i = 0; i < m->n_layers; i++) {
		const layer *l = &m->layers[i];
		const int j = l->in_idx[0];
		if (!(l->spec.type->flags & LT_RELU) || l->n_in != 1 || j < 0 || j >= i ||
		    !(m->layers[j].spec.type->flags & LT_RELU_OUT))
			continue;
		int readers = 0;
		for (int k = 0; k < m->n_layers; k++)
			for (int q = 0; q < m->layers[k].n_in; q++)
				readers += m->layers[k].in_idx[q] == j;
		if (readers == 1) {
			ws->relu_by[i] = j;
			ws->relu_of[j] = i;
		}
	}
	return true;
}

/* Buffers of layer i: output, its gradient, saved memory; an alias layer shares its input's, a
 * fused relu its producer's output. */
static bool alloc_layer(const model *m, const backend *be, int i, net_workspace *ws)
{
	const layer *l = &m->layers[i];
	const size_t bytes = (size_t)ws->max_n * l->out_numel * sizeof(float);
	if (ws->relu_by && ws->relu_by[i] >= 0) {
		ws->act[i] = ws->act[ws->relu_by[i]];
		ws->grad[i] = ws_alloc(be, bytes);
		return ws->grad[i] != NULL;
	}
	if (l->spec.type->flags & LT_ALIAS) {
		/* the output is the input's memory; on the network input it still needs a gradient */
		const int src = l->in_idx[0];
		ws->act[i] = src >= 0 ? ws->act[src] : ws->input;
		ws->grad[i] = src >= 0 ? ws->grad[src] : ws_alloc(be, bytes);
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

/* The layer whose gradient buffer layer i's is (through alias layers such as flatten). */
static int grad_owner(const model *m, int i)
{
	while ((m->layers[i].spec.type->flags & LT_ALIAS) && m->layers[i].in_idx[0] >= 0)
		i = m->layers[i].in_idx[0];
	return i;
}

/*
 * Who writes which input gradient in backward (net_workspace.din_tmp), and the
 * tmp buffers the later readers of a shared output need. Sequential networks get
 * no tmp and no "add" kernels. false when memory runs out or be cannot add (logged).
 */
static bool plan_input_grads(const model *m, const backend *be, net_workspace *ws, bool *no_add)
{
	bool written[CONFIG_MAX_LAYERS] = {false};
	int n_tmp = 0;
	size_t tmp_numel = 0;
	ws->din_tmp = malloc((size_t)m->n_layers * LAYER_MAX_IN);
	if (!ws->din_tmp)
		return false;
	memset(ws->din_tmp, -2, (size_t)m->n_layers * LAYER_MAX_IN);
	for (int i = m->n_layers - 1; i >= 0; i--) {
		const layer *l = &m->layers[i];
		if ((l->spec.type->flags & LT_ALIAS) || (!l->spec.type->backward && !(l->spec.type->flags & LT_LOSS)))
			continue;
		int used = 0;
		for (int k = 0; k < l->n_in; k++) {
			const int src = l->in_idx[k];
			if (src < 0)
				continue;
			const int owner = grad_owner(m, src);
			signed char mode = -1;
			if (written[owner]) {
				mode = (signed char)used++;
				if (m->layers[src].out_numel > tmp_numel)
					tmp_numel = m->layers[src].out_numel;
			}
			written[owner] = true;
			ws->din_tmp[i * LAYER_MAX_IN + k] = mode;
		}
		n_tmp = used > n_tmp ? used : n_tmp;
	}
	if (n_tmp == 0)
		return true;
	ws->acc = be->layer_kernels ? be->layer_kernels(be, "add") : NULL;
	if (!ws->acc || !ws->acc->forward) {
		log_error("the %s backend has no kernels for an add layer, which a network whose outputs "
			  "several layers read needs", be->name);
		*no_add = true;
		return false;
	}
	for (int t = 0; t < n_tmp; t++)
		if (!(ws->tmp[t] = ws_alloc(be, (size_t)ws->max_n * tmp_numel * sizeof(float))))
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
	bool no_add = false;
	if (!plan_input_grads(m, be, ws, &no_add)) {
		if (no_add) {
			net_workspace_free(m, be, ws);
			return EXIT_USAGE;
		}
		goto fail;
	}
	ws->input = ws_alloc(be, (size_t)max_n * m->in_c * m->in_h * m->in_w * sizeof(float));
	if (!ws->input || !plan_fused_relus(m, be, ws))
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
			if (m->layers[i].in_idx[0] < 0 && ws->grad[i])
				be->release(ws->grad[i]); /* its own; the output is ws->input */
			continue;
		}
		if (ws->act[i] && !(ws->relu_by && ws->relu_by[i] >= 0)) /* a fused relu's is its producer's */
			be->release(ws->act[i]);
		if (ws->grad[i])
			be->release(ws->grad[i]);
		if (ws->saved[i])
			be->release(ws->saved[i]);
	}
	for (int t = 0; t < LAYER_MAX_IN; t++)
		if (ws->tmp[t])
			be->release(ws->tmp[t]);
	if (ws->input)
		be->release(ws->input);
	if (ws->scratch)
		be->release(ws->scratch);
	free(ws->act);
	free(ws->grad);
	free(ws->saved);
	free(ws->kernels);
	free(ws->din_tmp);
	free(ws->relu_by);
	free(ws->relu_of);
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
		.n_in = l->n_in,
		.out = ws->act[i],
		.dout = ws->grad[i],
		.saved = ws->saved[i],
		.scratch = ws->scratch,
	};
	if (ws->relu_of && ws->relu_of[i] >= 0) { /* a relu layer after it is fused */
		p.relu = true;
		if (grads && (l->spec.type->flags & LT_RELU_GRAD))
			p.dout = ws->grad[ws->relu_of[i]]; /* the relu's output gradient, masked by the kernels */
	}
	for (int k = 0; k < l->n_in; k++) {
		const int src = l->in_idx[k], mode = ws->din_tmp[i * LAYER_MAX_IN + k];
		p.ins[k] = src >= 0 ? ws->act[src] : ws->input;
		p.dins[k] = mode == -1 ? ws->grad[src] : mode >= 0 ? ws->tmp[mode] : NULL;
	}
	p.in = p.ins[0];
	p.din = p.dins[0];
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

/* After layer i's backward: add the input gradients it wrote into tmp to their owners' (fixed order). */
static void add_shared_grads(const model *m, const backend *be, const net_workspace *ws, const layer_pass *p,
			     int i)
{
	const layer *l = &m->layers[i];
	for (int k = 0; k < l->n_in; k++) {
		const int mode = ws->din_tmp[i * LAYER_MAX_IN + k];
		if (mode < 0)
			continue;
		const int src = l->in_idx[k];
		const size_t numel = m->layers[src].out_numel;
		layer_call c = {
			.n = p->b->n,
			.in_numel = numel,
			.out_numel = numel,
			.in = ws->grad[src],
			.y = ws->grad[src],
			.n_in = 2,
			.ins = {ws->grad[src], ws->tmp[mode]},
			.ins_numel = {numel, numel},
		};
		ws->acc->forward(be, &c);
	}
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
		if (ws->relu_by && ws->relu_by[i] >= 0)
			continue; /* its producer wrote max(y, 0) */
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
		if (ws->relu_by && ws->relu_by[i] >= 0 && (m->layers[ws->relu_by[i]].spec.type->flags & LT_RELU_GRAD))
			continue; /* its producer's backward masks this relu's gradient itself */
		layer_pass p = pass_of(m, be, params, grads, ws, b, i);
		double t0 = ws->layer_bwd_s ? layer_clock(be) : 0;
		t->backward(&p);
		if (ws->acc)
			add_shared_grads(m, be, ws, &p, i);
		if (ws->layer_bwd_s)
			ws->layer_bwd_s[i] += layer_clock(be) - t0;
	}
}
