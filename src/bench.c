/*
 * bench.c - `spottrain bench`: times the training step (step.h, the one
 * `train` runs) on a synthetic batch (run.h: no data loading, no I/O), or with
 * --data on the training set in its epochs' orders (whole batches), after
 * a warm-up, per phase, and measures the backend's peak in the same run
 * (CPU: the peak-FMA loop of the chosen kernels' ISA, src/kernels/) so that
 * the achieved GFLOP/s reads as a fraction of what the hardware can do. Then
 * rank 0 times each layer's forward and backward on one shard on one thread
 * (the unit of work of training's exact path) next to the per-thread peak.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"
#include "events.h"
#include "kernels/kernels.h"
#include "layers/layer.h" /* a layer's flops, for the per-layer figures */
#include "log.h"
#include "optim.h"
#include "run.h"
#include "step.h"
#include "train.h"

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The q-quantile of n sorted values (nearest rank). */
static double percentile(const double *sorted, int n, double q)
{
	int i = (int)(q * n + 0.999999) - 1;
	return sorted[i < 0 ? 0 : (i >= n ? n - 1 : i)];
}

/* One training step on the synthetic batch, timed per phase. */
static void bench_step(run *r, step_times *tm)
{
	int64_t req[TAIL_N] = {0}, tail[TAIL_N];
	r->optim_step++;
	r->last_lr = optim_lr_at(&r->cfg.optim, r->optim_step, r->total_steps);
	step_input in = {r->cfg.global_batch, r->cfg.seed, (uint32_t)r->epoch, run_fill_shard, r};
	step_run(&r->se, &in, &r->cfg.optim, r->last_lr, r->optim_step, req, tail, tm);
	if (!r->args->bench_data)
		return;
	r->pos += r->cfg.global_batch; /* --data: whole batches through the epochs' orders */
	if (r->pos + r->cfg.global_batch > (long)r->train.count) {
		r->pos = 0;
		run_order_epoch(r, ++r->epoch);
	}
}

/* Collective: the slowest rank's p50/p90/p99 of the timed steps (sorts step_s), in seconds. */
static void step_percentiles(run *r, double *step_s, int n, double pct[3])
{
	qsort(step_s, (size_t)n, sizeof *step_s, cmp_double);
	static const double q[3] = {0.50, 0.90, 0.99};
	for (int i = 0; i < 3; i++)
		pct[i] = -percentile(step_s, n, q[i]);
	dist_allreduce_min_d(&r->d, pct, 3);
	for (int i = 0; i < 3; i++)
		pct[i] = -pct[i];
}

/* Timed passes per layer for the per-layer figures (after one untimed pass). */
#define LAYER_REPS 5

/*
 * Rank 0, no collective: each layer's forward and backward time on one shard of the
 * exact path's workspace (the last shard the steps filled), on one thread as in
 * training: the best of LAYER_REPS passes (the least disturbed by other work on the
 * machine). Backward GFLOP/s count twice the forward flops (weights and input), once
 * for the first layer. Returns the number of layers filled (0: not the exact path).
 */
static int layer_figures(run *r, bench_layer *out)
{
	if (!r->se.exact || r->se.ge.threads < 1)
		return 0;
	const model *m = r->se.m;
	const int L = m->n_layers, n = r->se.ge.shard;
	net_workspace *ws = &r->se.ge.ws[0];
	double *t = calloc((size_t)L * 4, sizeof *t); /* this pass fwd, bwd; best fwd, bwd */
	if (!t)
		return 0;
	batch_info b = {n, r->se.ge.samples[0], r->se.ge.labels[0], r->cfg.seed, 0, 1, NULL, NULL};
	const int levels = omp_get_max_active_levels();
	omp_set_max_active_levels(0); /* every op on this one thread, as in a shard's thread */
	for (int rep = 0; rep <= LAYER_REPS; rep++) {
		double loss;
		int correct;
		memset(t, 0, sizeof *t * 2 * (size_t)L);
		ws->layer_fwd_s = t;
		ws->layer_bwd_s = t + L;
		r->be->zero(m->n_params, r->se.ge.g[0]);
		net_forward(m, r->be, r->se.params, ws, &b, &loss, &correct);
		net_backward(m, r->be, r->se.params, r->se.ge.g[0], ws, &b);
		for (int i = 0; rep > 0 && i < 2 * L; i++) /* rep 0 warms up */
			if (rep == 1 || t[i] < t[2 * L + i])
				t[2 * L + i] = t[i];
	}
	omp_set_max_active_levels(levels);
	ws->layer_fwd_s = ws->layer_bwd_s = NULL;
	for (int i = 0; i < L; i++) {
		const layer *l = &m->layers[i];
		const double f = l->spec.type->flops ? l->spec.type->flops(l) * n : 0;
		const double tf = t[2 * L + i], tb = t[3 * L + i];
		out[i] = (bench_layer){l->spec.name, tf * 1e3, tb * 1e3, tf > 0 ? f / tf / 1e9 : 0,
				       tb > 0 ? f * (i > 0 ? 2 : 1) / tb / 1e9 : 0};
	}
	free(t);
	return L;
}

/* Rank 0: the human lines on stderr and the JSON line on stdout. */
static void report(const run *r, const bench_summary *b)
{
	fprintf(stderr,
		"bench: %s, backend %s, %d threads per rank, world %d, global batch %d, %d steps after %d warm-up\n"
		"  forward   %8.3f ms\n  backward  %8.3f ms (with the exact fixed-point accumulation on the CPU)\n  allreduce %8.3f ms (%.1f MB, busbw %.2f GB/s)\n"
		"  optimizer %8.3f ms\n  step      %8.3f ms  ->  %.0f images/s\n"
		"  (the exact fixed-point accumulation takes %.3f ms of the step on rank 0, %.1f%%)\n"
		"  achieved %.1f GFLOP/s (world), peak %.1f GFLOP/s per rank (%.0f%% of %d ranks' peak)\n"
		"  data      %8.3f ms of the step making inputs (per thread)%s, prefetch thread %.3f ms\n",
		b->config, b->backend, b->threads, b->world, b->global_batch, b->steps, r->args->warmup,
		b->forward_ms, b->backward_ms, b->allreduce_ms, b->allreduce_bytes / 1e6, b->allreduce_busbw_gbs,
		b->optimizer_ms, b->step_ms, b->images_per_s, b->fixed_point_ms,
		100.0 * b->fixed_point_ms / b->step_ms, b->gflops, b->sgemm_gflops,
		b->sgemm_gflops > 0 ? 100.0 * b->gflops / (b->sgemm_gflops * b->world) : 0, b->world, b->data_ms,
		r->pf ? " with data.prefetch" : "", b->prefetch_ms);
	if (b->kernels)
		fprintf(stderr, "  CPU kernels: %s\n", b->kernels);
	const double peak1 = b->threads > 0 ? b->peak_gflops / b->threads : 0;
	if (b->n_layers > 0)
		fprintf(stderr, "  per layer, one shard of %d on one thread (peak per thread %.1f GFLOP/s):\n",
			b->shard_samples, peak1);
	for (int i = 0; i < b->n_layers; i++) {
		const bench_layer *l = &b->layers[i];
		fprintf(stderr, "    %-12s fwd %8.3f ms %6.1f GFLOP/s (%3.0f%%)  bwd %8.3f ms %6.1f GFLOP/s (%3.0f%%)\n",
			l->name, l->forward_ms, l->forward_gflops, peak1 > 0 ? 100 * l->forward_gflops / peak1 : 0,
			l->backward_ms, l->backward_gflops, peak1 > 0 ? 100 * l->backward_gflops / peak1 : 0);
	}
	print_bench_summary(b);
}

/* Collective: the summary of the timed steps; acc holds this rank's phase sums. */
static void summarize(run *r, const step_times *acc, double *step_s, bench_summary *b)
{
	int steps = r->args->steps, W = r->d.world;
	double pct[3];
	step_percentiles(r, step_s, steps, pct);
	/* the slowest rank sets the pace: take the max of each phase over ranks */
	double mx[5] = {-acc->fwd, -acc->bwd, -acc->allreduce, -acc->optim, -acc->total};
	dist_allreduce_min_d(&r->d, mx, 5);
	for (int i = 0; i < 5; i++)
		mx[i] = -mx[i] / steps;
	size_t np = r->m.n_params;
	double bytes = (double)(np + TAIL_N) * (r->se.exact ? sizeof(int64_t) : sizeof(float));
	double algbw = mx[2] > 0 ? bytes / mx[2] / 1e9 : 0;
	*b = (bench_summary){
		.config = r->cfg.source,
		.backend = r->be->name,
		.world = W,
		.threads = r->be->threads(r->be),
		.global_batch = r->cfg.global_batch,
		.steps = steps,
		.images_per_s = r->cfg.global_batch / mx[4],
		.step_ms = mx[4] * 1e3,
		.step_ms_p50 = pct[0] * 1e3,
		.step_ms_p90 = pct[1] * 1e3,
		.step_ms_p99 = pct[2] * 1e3,
		.forward_ms = mx[0] * 1e3,
		.backward_ms = mx[1] * 1e3,
		.allreduce_ms = mx[2] * 1e3,
		.optimizer_ms = mx[3] * 1e3,
		.fixed_point_ms = acc->fix / steps * 1e3,
		.allreduce_bytes = bytes,
		.allreduce_busbw_gbs = W > 1 ? algbw * 2.0 * (W - 1) / W : 0,
		.sgemm_gflops = r->be->peak_gflops(r->be), /* the backend's reference rate, measured now */
	};
	b->peak_gflops = b->sgemm_gflops;
	b->gflops = b->images_per_s * r->m.train_flops_per_sample / 1e9;
	b->data_ms = (double)r->data_ns / 1e6 / steps / b->threads;
	b->prefetch_ms = r->pf ? r->pf->worker_s * 1e3 / steps : 0;
}

int bench_main(int *argc, char ***argv, const run_args *a)
{
	run *r = calloc(1, sizeof *r);
	double *step_s = calloc((size_t)a->steps, sizeof *step_s);
	if (!r || !step_s) {
		log_error("out of memory for the benchmark");
		free(r);
		free(step_s);
		return EXIT_OSERR;
	}
	int rc = run_open(r, RUN_BENCH, argc, argv, a);
	if (!rc) {
		r->total_steps = a->warmup + a->steps;
		step_times acc = {0};
		for (int s = 0; s < a->warmup + a->steps; s++) {
			if (s == a->warmup) {
				memset(&acc, 0, sizeof acc);
				run_reset_data_time(r);
				dist_barrier(&r->d);
			}
			step_times tm;
			bench_step(r, &tm);
			acc.fwd += tm.fwd;
			acc.bwd += tm.bwd;
			acc.fix += tm.fix;
			acc.allreduce += tm.allreduce;
			acc.optim += tm.optim;
			acc.total += tm.total;
			if (s >= a->warmup)
				step_s[s - a->warmup] = tm.total;
		}
		bench_summary b;
		summarize(r, &acc, step_s, &b);
		bench_layer *layers = calloc((size_t)r->m.n_layers, sizeof *layers);
		char kdesc[256];
		if (r->be->caps & BACKEND_CAP_HOST_MEMORY) { /* the CPU kernels ran */
			b.cpu_isa = kern_isa_name(kern_current());
			b.kernels = kern_describe(kdesc, sizeof kdesc);
		}
		if (r->d.rank == 0 && layers) {
			b.n_layers = layer_figures(r, layers);
			b.layers = layers;
			b.shard_samples = r->se.exact ? r->se.ge.shard : 0;
			report(r, &b);
		} else if (r->d.rank == 0) {
			report(r, &b);
		}
		free(layers);
	}
	run_close(r);
	free(r);
	free(step_s);
	return rc;
}
