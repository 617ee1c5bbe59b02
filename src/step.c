/*
 * step.c - one global training step (step.h).
 */
#include "step.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"
#include "layers/layer.h"
#include "log.h"

/* Wait for the backend and return the time (only when timing phases). */
static double mark(const backend *be, step_times *tm)
{
	if (!tm)
		return 0;
	be->synchronize(be);
	return now_mono();
}

/* Whether tensor view v of layer l is skipped by weight decay under skip. */
static bool skips_decay(const model *m, const layer *l, int v, int skip)
{
	if ((l->spec.type->flags & LT_NORM) && (skip & OPTIM_WD_SKIP_BN))
		return true;
	const char *name = m->tensors[l->first_view + v].name;
	size_t n = strlen(name);
	return (skip & OPTIM_WD_SKIP_BIAS) && n >= 5 && strcmp(name + n - 5, ".bias") == 0;
}

int step_decay_segments(const model *m, int skip, step_segment *out, int max)
{
	int k = 0;
	for (int i = 0; i < m->n_layers; i++) {
		const layer *l = &m->layers[i];
		for (int v = 0; v < l->n_views; v++) {
			const tensor_view *t = &m->tensors[l->first_view + v];
			bool decay = !skips_decay(m, l, v, skip);
			if (k > 0 && out[k - 1].decay == decay) {
				out[k - 1].count = t->offset + t->numel - out[k - 1].offset;
				continue;
			}
			if (k == max)
				return k;
			if (k > 0) /* the previous run takes the padding up to this view */
				out[k - 1].count = t->offset - out[k - 1].offset;
			out[k] = (step_segment){k ? t->offset : 0, t->numel, decay};
			k++;
		}
	}
	if (k > 0)
		out[k - 1].count = m->n_params - out[k - 1].offset;
	return k;
}

int step_engine_init(step_engine *e, const model *m, const backend *be, dist *d, const optim_config *o,
		     int global_batch, int shard_samples)
{
	memset(e, 0, sizeof *e);
	e->m = m;
	e->be = be;
	e->d = d;
	e->exact = (be->caps & BACKEND_CAP_EXACT_SUM) != 0;
	e->max_n = (global_batch + d->world - 1) / d->world;
	size_t n = m->n_params;
	e->n_states = optim_n_states(o);
	if (e->n_states > STEP_MAX_STATES) {
		log_error("the optimizer needs %d state buffers, at most %d are supported", e->n_states,
			  STEP_MAX_STATES);
		return EXIT_SOFTWARE;
	}
	if (m->n_buffers && (!e->exact || !(be->caps & BACKEND_CAP_HOST_MEMORY))) {
		const layer *l = m->layers;
		while (l->n_bufs == 0)
			l++;
		log_error("[layer.%s] the %s backend cannot run a %s layer: its statistics are kept per exact "
			  "shard, on host memory; run on the CPU (--device cpu)", l->spec.name, be->name,
			  l->spec.type->name);
		return EXIT_USAGE;
	}
	if (m->n_buffers) {
		e->buffers = be->alloc(m->n_buffers * sizeof(float));
		e->stats = be->alloc(m->n_buffers * sizeof(float));
		if (!e->buffers || !e->stats)
			goto oom;
		model_init_buffers(m, e->buffers);
	}
	e->params = be->alloc(n * sizeof(float));
	e->grads = be->alloc((n + TAIL_N) * sizeof(float));
	e->samples = malloc((size_t)e->max_n * sizeof *e->samples);
	e->labels = malloc((size_t)e->max_n);
	if (!e->params || !e->grads || !e->samples || !e->labels)
		goto oom;
	for (int i = 0; i < e->n_states; i++) {
		if (!(e->states[i] = be->alloc(n * sizeof(float))))
			goto oom;
		be->zero(n, e->states[i]);
	}
	if (o->wd_skip && m->n_tensors > 0) {
		if (!(e->segments = calloc((size_t)m->n_tensors, sizeof *e->segments)))
			goto oom;
		e->n_segments = step_decay_segments(m, o->wd_skip, e->segments, m->n_tensors);
	}
	if (e->exact && grad_engine_init(&e->ge, m, be, shard_samples, be->threads(be)))
		return EXIT_OSERR;
	return net_workspace_alloc(m, be, e->max_n, &e->ws);
oom:
	log_error("out of memory for %zu parameters", n);
	return EXIT_OSERR;
}

void step_engine_free(step_engine *e)
{
	if (!e->be)
		return;
	if (e->ge.ws)
		grad_engine_free(&e->ge);
	if (e->ws.act)
		net_workspace_free(e->m, e->be, &e->ws);
	if (e->params)
		e->be->release(e->params);
	if (e->grads)
		e->be->release(e->grads);
	for (int i = 0; i < e->n_states; i++)
		if (e->states[i])
			e->be->release(e->states[i]);
	if (e->buffers)
		e->be->release(e->buffers);
	if (e->stats)
		e->be->release(e->stats);
	free(e->segments);
	free(e->samples);
	free(e->labels);
	memset(e, 0, sizeof *e);
}

/* The exact path: sharded integer sums (grad.h), the requests in the int64 tail. */
static void exact_sum(step_engine *e, const step_input *in, const int64_t *req, int64_t *tail, step_times *tm)
{
	size_t nt = grad_tail_offset(&e->ge); /* gradients, then the shards' statistics */
	grad_compute(&e->ge, e->params, in->bsz, e->d->rank, e->d->world, in->seed, in->epoch, in->fill,
		     in->fill_ctx);
	int64_t *acc = e->ge.acc[0];
	for (int i = 0; i < TAIL_REQUESTS; i++)
		acc[nt + i] = req[i];
	double t2 = now_mono();
	dist_allreduce_sum_i64(e->d, acc, nt + TAIL_N);
	memcpy(tail, acc + nt, TAIL_N * sizeof(int64_t));
	if (tm) {
		double busy = e->ge.t_fwd + e->ge.t_bwd + e->ge.t_fix;
		tm->fwd = busy > 0 ? e->ge.t_compute * e->ge.t_fwd / busy : 0;
		tm->bwd = e->ge.t_compute - tm->fwd;
		tm->fix = busy > 0 ? e->ge.t_compute * e->ge.t_fix / busy : 0;
		tm->allreduce = now_mono() - t2;
	}
	grad_finish(&e->ge, in->bsz, e->grads);
	if (e->m->n_buffers) {
		/* once per step, from the same summed integers on every rank */
		grad_finish_stats(&e->ge, in->bsz, e->stats);
		model_update_buffers(e->m, e->buffers, e->stats);
	}
}

/* The float path: one pass over this rank's contiguous part, float all-reduce with the tail as floats. */
static void float_sum(step_engine *e, const step_input *in, const int64_t *req, int64_t *tail, step_times *tm,
		      double t0)
{
	const backend *be = e->be;
	int W = e->d->world, r = e->d->rank;
	long lo = (long)in->bsz * r / W, hi = (long)in->bsz * (r + 1) / W;
	int n = (int)(hi - lo);
	size_t np = e->m->n_params;
	be->zero(np + TAIL_N, e->grads);
	in->fill(in->fill_ctx, lo, n, e->ws.input, e->samples, e->labels);
	batch_info b = {n, e->samples, e->labels, in->seed, in->epoch, 1, NULL, NULL};
	double loss = 0;
	int correct = 0;
	net_forward(e->m, be, e->params, &e->ws, &b, &loss, &correct);
	double t1 = mark(be, tm);
	net_backward(e->m, be, e->params, e->grads, &e->ws, &b);
	double t2 = mark(be, tm);
	float ft[TAIL_N] = {0};
	for (int i = 0; i < TAIL_REQUESTS; i++)
		ft[i] = (float)req[i];
	ft[TAIL_LOSS] = (float)loss;
	ft[TAIL_CORRECT] = (float)correct;
	be->upload(e->grads + np, ft, sizeof ft);
	dist_allreduce_sum_f(e->d, e->grads, np + TAIL_N, DIST_MEM_BACKEND);
	be->download(ft, e->grads + np, sizeof ft);
	for (int i = 0; i < TAIL_N; i++)
		tail[i] = i == TAIL_LOSS ? (int64_t)ldexp(ft[i], GRAD_FIX_BITS) : (int64_t)ft[i];
	if (tm) {
		tm->fwd = t1 - t0;
		tm->bwd = t2 - t1;
		tm->fix = 0;
		tm->allreduce = mark(be, tm) - t2;
	}
	be->scale(np, 1.0f / (float)in->bsz, e->grads);
}

/* The optimizer over the whole buffer, or per segment with weight decay off where skipped. */
static void optim_update(step_engine *e, const optim_config *o, float lr, long t)
{
	if (e->n_segments == 0 || o->weight_decay == 0.0f) {
		e->be->optim_step(o, lr, t, e->m->n_params, e->params, e->grads, e->states);
		return;
	}
	optim_config plain = *o;
	plain.weight_decay = 0.0f;
	for (int s = 0; s < e->n_segments; s++) {
		const step_segment *g = &e->segments[s];
		float *st[STEP_MAX_STATES] = {0};
		for (int i = 0; i < e->n_states; i++)
			st[i] = e->states[i] + g->offset;
		e->be->optim_step(g->decay ? o : &plain, lr, t, g->count, e->params + g->offset,
				  e->grads + g->offset, st);
	}
}

void step_run(step_engine *e, const step_input *in, const optim_config *o, float lr, long t,
	      const int64_t *req, int64_t *tail, step_times *tm)
{
	double t0 = mark(e->be, tm);
	if (e->exact)
		exact_sum(e, in, req, tail, tm);
	else
		float_sum(e, in, req, tail, tm, t0);
	double t3 = tm ? t0 + tm->fwd + tm->bwd + tm->allreduce : 0;
	optim_update(e, o, lr, t);
	if (tm) {
		double t4 = mark(e->be, tm);
		tm->optim = t4 - t3;
		tm->total = t4 - t0;
	}
}
