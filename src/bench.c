/*
 * bench.c - `spottrain bench`: times training steps on synthetic data (no
 * data loading, no I/O) after a warm-up, per phase, and measures this
 * machine's sgemm rate in the same run so that the achieved GFLOP/s can be
 * read as a fraction of what the hardware does on a large matrix product.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "contract.h"
#include "device.h"
#include "grad.h"
#include "dist.h"
#include "log.h"
#include "model.h"
#include "optim.h"
#include "philox.h"
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

typedef struct phase_times {
	double fwd, bwd, allreduce, optim, total;
	double fix; /* the exact fixed-point accumulation (thread 0's share) */
} phase_times;

/* Synthetic shard: fixed pseudo-random pixels, labels cycling through the classes. */
typedef struct synth {
	const float *pixels; /* max_n images, host memory */
	size_t in_numel;
	int classes;
} synth;

static void fill_synthetic(void *ctx, long first, int n, float *input, uint32_t *samples, uint8_t *labels)
{
	const synth *s = ctx;
	memcpy(input, s->pixels, (size_t)n * s->in_numel * sizeof(float));
	for (int i = 0; i < n; i++) {
		samples[i] = (uint32_t)(first + i);
		labels[i] = (uint8_t)((first + i) % s->classes);
	}
}

int bench_main(int *argc, char ***argv, const run_args *a)
{
	config cfg;
	model m;
	int rc = load_run_config(a, &cfg);
	if (!rc)
		rc = model_build(&cfg, &m);
	if (rc)
		return rc;
	dist d;
	if ((rc = dist_init(argc, argv, cfg.collective_timeout_s, &d)))
		return rc;
	const backend *be = NULL;
	rc = dist_agree(&d, device_select(cfg.device, d.local_rank, cfg.threads, &be));
	if (!rc) /* GPU buffers: NCCL all-reduce (or host staging); every rank calls it */
		rc = dist_agree(&d, dist_enable_device_allreduce(&d, be, cfg.dist_backend));
	if (rc) {
		dist_finalize(&d);
		return rc;
	}
	int B = cfg.global_batch, W = d.world;
	int lo = B * d.rank / W, hi = B * (d.rank + 1) / W, n = hi - lo, max_n = (B + W - 1) / W;
	size_t np = m.n_params, in_numel = (size_t)m.in_c * m.in_h * m.in_w;
	int n_states = optim_n_states(&cfg.optim);
	float *params = be->alloc(np * sizeof(float)), *grads = be->alloc((np + 8) * sizeof(float));
	float *states[4] = {0};
	float *host = malloc((np > (size_t)max_n * in_numel ? np : (size_t)max_n * in_numel) * sizeof(float));
	uint32_t *samples = malloc((size_t)max_n * sizeof *samples);
	uint8_t *labels = malloc((size_t)max_n);
	net_workspace ws;
	grad_engine ge = {0};
	bool exact = (be->caps & BACKEND_CAP_EXACT_SUM) != 0;
	rc = params && grads && host && samples && labels ? 0 : EXIT_OSERR;
	for (int i = 0; !rc && i < n_states; i++)
		if (!(states[i] = be->alloc(np * sizeof(float))))
			rc = EXIT_OSERR;
	if (!rc)
		rc = net_workspace_alloc(&m, be, max_n, &ws);
	if (!rc && exact)
		rc = grad_engine_init(&ge, &m, be, cfg.shard_samples, be->threads(be));
	rc = dist_agree(&d, rc);
	if (rc) {
		log_error("out of memory for the benchmark");
		dist_finalize(&d);
		return rc;
	}
	/* synthetic data: fixed pseudo-random pixels and labels */
	philox_key key = {{cfg.seed, 77}};
	for (size_t i = 0; i < (size_t)max_n * in_numel; i++) {
		philox_ctr c = {{(uint32_t)i, 0, 0, 9}};
		host[i] = philox_uniform(philox4x32(c, key).v[0]);
	}
	be->upload(ws.input, host, (size_t)max_n * in_numel * sizeof(float));
	(void)n;
	for (int i = 0; i < max_n; i++) {
		samples[i] = (uint32_t)(lo + i);
		labels[i] = (uint8_t)(i % m.classes);
	}
	model_init_params(&m, cfg.seed, host);
	be->upload(params, host, np * sizeof(float));
	for (int i = 0; i < n_states; i++)
		be->zero(np, states[i]);

	phase_times acc = {0};
	int total = a->warmup + a->steps;
	double *step_s = calloc((size_t)a->steps, sizeof *step_s);
	if (!step_s) {
		log_error("out of memory");
		dist_finalize(&d);
		return EXIT_OSERR;
	}
	double wait0 = 0;
	for (int s = 0; s < total; s++) {
		if (s == a->warmup) {
			memset(&acc, 0, sizeof acc);
			dist_barrier(&d);
			wait0 = d.wait_s;
		}
		double t0 = now_mono(), t1, t2, t3;
		if (exact) {
			/* what training does on the CPU: exact sharded sums (grad.h) */
			synth sy = {host, in_numel, m.classes};
			grad_compute(&ge, params, B, d.rank, W, cfg.seed, 0, fill_synthetic, &sy);
			/* split the parallel compute time in the proportions thread 0 measured */
			double busy = ge.t_fwd + ge.t_bwd + ge.t_fix;
			t1 = t0 + (busy > 0 ? ge.t_compute * ge.t_fwd / busy : 0);
			t2 = t0 + ge.t_compute;
			if (s >= a->warmup)
				acc.fix += busy > 0 ? ge.t_compute * ge.t_fix / busy : 0;
			dist_allreduce_sum_i64(&d, ge.acc[0], np + TAIL_N);
			t3 = now_mono();
			grad_finish(&ge, B, grads);
		} else {
			batch_info b = {n, samples, labels, cfg.seed, 0, 1};
			double loss;
			int correct;
			be->synchronize(be);
			t0 = now_mono();
			be->zero(np + 8, grads);
			net_forward(&m, be, params, &ws, &b, &loss, &correct);
			be->synchronize(be);
			t1 = now_mono();
			net_backward(&m, be, params, grads, &ws, &b);
			be->synchronize(be);
			t2 = now_mono();
			dist_allreduce_sum_f(&d, grads, np + 6, DIST_MEM_BACKEND);
			be->synchronize(be);
			t3 = now_mono();
			be->scale(np, 1.0f / (float)B, grads);
		}
		be->optim_step(&cfg.optim, cfg.optim.lr, s + 1, np, params, grads, states);
		be->synchronize(be);
		double t4 = now_mono();
		acc.fwd += t1 - t0;
		acc.bwd += t2 - t1;
		acc.allreduce += t3 - t2;
		acc.optim += t4 - t3;
		acc.total += t4 - t0;
		if (s >= a->warmup)
			step_s[s - a->warmup] = t4 - t0;
	}
	/* step time percentiles (the slowest rank's) */
	qsort(step_s, (size_t)a->steps, sizeof *step_s, cmp_double);
	double pct[3] = {-percentile(step_s, a->steps, 0.50), -percentile(step_s, a->steps, 0.90),
			 -percentile(step_s, a->steps, 0.99)};
	dist_allreduce_min_d(&d, pct, 3);
	free(step_s);
	(void)wait0;
	/* the slowest rank sets the pace: take the max of each phase over ranks */
	double mx[5] = {acc.fwd, acc.bwd, acc.allreduce, acc.optim, acc.total};
	for (int i = 0; i < 5; i++)
		mx[i] = -mx[i];
	dist_allreduce_min_d(&d, mx, 5);
	for (int i = 0; i < 5; i++)
		mx[i] = -mx[i] / a->steps;
	double fix_ms = acc.fix / a->steps * 1e3;
	double sgemm = be->peak_gflops(be); /* the backend's reference rate, measured now */
	double ips = B / mx[4];
	double gflops = ips * m.train_flops_per_sample / 1e9;
	double bytes = exact ? (double)(np + TAIL_N) * sizeof(int64_t) : (double)(np + 6) * sizeof(float);
	double algbw = mx[2] > 0 ? bytes / mx[2] / 1e9 : 0;
	double busbw = W > 1 ? algbw * 2.0 * (W - 1) / W : 0;
	if (d.rank == 0) {
		fprintf(stderr,
			"bench: %s, backend %s, %d threads per rank, world %d, global batch %d, %d steps after %d warm-up\n"
			"  forward   %8.3f ms\n  backward  %8.3f ms (with the exact fixed-point accumulation on the CPU)\n  allreduce %8.3f ms (%.1f MB, busbw %.2f GB/s)\n"
			"  optimizer %8.3f ms\n  step      %8.3f ms  ->  %.0f images/s\n"
			"  (the exact fixed-point accumulation takes %.3f ms of the step on rank 0, %.1f%%)\n"
			"  achieved %.1f GFLOP/s (world), sgemm %.1f GFLOP/s per rank (%.0f%% of %d ranks' sgemm)\n",
			cfg.source, be->name, be->threads(be), W, B, a->steps, a->warmup, mx[0] * 1e3,
			mx[1] * 1e3, mx[2] * 1e3, bytes / 1e6, busbw, mx[3] * 1e3, mx[4] * 1e3, ips, fix_ms,
			100.0 * fix_ms / (mx[4] * 1e3), gflops, sgemm,
			sgemm > 0 ? 100.0 * gflops / (sgemm * W) : 0, W);
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "config", cfg.source);
		cJSON_AddStringToObject(o, "backend", be->name);
		cJSON_AddNumberToObject(o, "world_size", W);
		cJSON_AddNumberToObject(o, "threads", be->threads(be));
		cJSON_AddNumberToObject(o, "global_batch", B);
		cJSON_AddNumberToObject(o, "steps", a->steps);
		cJSON_AddNumberToObject(o, "images_per_s", ips);
		cJSON_AddNumberToObject(o, "images_per_s_per_rank", ips / W);
		cJSON_AddNumberToObject(o, "step_ms", mx[4] * 1e3);
		cJSON_AddNumberToObject(o, "step_ms_p50", -pct[0] * 1e3);
		cJSON_AddNumberToObject(o, "step_ms_p90", -pct[1] * 1e3);
		cJSON_AddNumberToObject(o, "step_ms_p99", -pct[2] * 1e3);
		cJSON_AddNumberToObject(o, "forward_ms", mx[0] * 1e3);
		cJSON_AddNumberToObject(o, "backward_ms", mx[1] * 1e3);
		cJSON_AddNumberToObject(o, "allreduce_ms", mx[2] * 1e3);
		cJSON_AddNumberToObject(o, "optimizer_ms", mx[3] * 1e3);
		cJSON_AddNumberToObject(o, "fixed_point_ms", fix_ms);
		cJSON_AddNumberToObject(o, "allreduce_bytes", bytes);
		cJSON_AddNumberToObject(o, "allreduce_busbw_gbs", busbw);
		cJSON_AddNumberToObject(o, "gflops", gflops);
		cJSON_AddNumberToObject(o, "sgemm_gflops", sgemm);
		cJSON_AddNumberToObject(o, "fraction_of_sgemm", sgemm > 0 ? gflops / (sgemm * W) : 0);
		char *s = cJSON_PrintUnformatted(o);
		if (s)
			printf("%s\n", s);
		fflush(stdout);
		free(s);
		cJSON_Delete(o);
	}
	if (exact)
		grad_engine_free(&ge);
	net_workspace_free(&m, be, &ws);
	be->release(params);
	be->release(grads);
	for (int i = 0; i < n_states; i++)
		be->release(states[i]);
	free(host);
	free(samples);
	free(labels);
	dist_finalize(&d);
	return 0;
}
