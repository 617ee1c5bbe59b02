/*
 * events.h - the records a worker writes, one typed function each: the lines
 * of RUN/events.jsonl and RUN/metrics.jsonl (through runlog.h) and the JSON
 * summary line that train, eval and bench print last on stdout. Field names
 * and values are the contract with the launcher and the report (DESIGN.md,
 * contract.h); this is the only worker file that builds them.
 */
#ifndef SPOTTRAIN_EVENTS_H
#define SPOTTRAIN_EVENTS_H

#include <stdbool.h>

#include "spot.h"

/* Who writes: the fields that every event of this process carries. */
typedef struct ev_source {
	const char *run_dir;
	const char *node;
	int rank;
	int world;
	int generation;
} ev_source;

/* The worker world started (rank 0). */
void emit_start(const ev_source *s, int nodes, long step);
/* Resumed from the checkpoint at path, written by a world of from_world (its broadcaster). */
void emit_resume(const ev_source *s, const char *path, long step, int from_world, double load_s);
/* A checkpoint is durable: write_s the write itself, blocked_s how long training waited for it. */
void emit_checkpoint(const ev_source *s, const char *path, long step, double write_s, double blocked_s);
/* A spot watcher event at step: "notice" (SPOT_EVENT_STOP) or "rebalance". */
void emit_notice(const ev_source *s, const spot_event *ev, long step);
/* The agreed stop; path "" when its checkpoint failed; notice_to_durable_s NULL: no notice time. */
void emit_stop(const ev_source *s, long step, const char *reason, const char *path,
	       const double *notice_to_durable_s);
/* This rank exits with code. */
void emit_exit(const ev_source *s, int code, long step);
/* The test evaluation at an epoch end: an "epoch" event and a metrics line with the same fields. */
void emit_epoch(const ev_source *s, long step, long epoch, double test_accuracy, double test_loss);

/* One training metrics line (a window of steps). */
typedef struct metrics_line {
	long step;
	double epoch;        /* epochs done, fractional */
	double loss;         /* mean over the window's samples */
	double accuracy;
	double images_per_s;
	double lr;
	double wall_time_s;  /* training wall time of the whole run (all processes) */
} metrics_line;
void emit_metrics(const ev_source *s, const metrics_line *m);

/* The last line of `spottrain train`. */
typedef struct train_summary {
	const char *status;     /* "finished" | "max_steps" */
	double epochs;
	long steps;
	int world;
	double loss;            /* the last step's mean loss */
	bool tested;            /* false: test_accuracy is null and test_loss absent */
	double test_accuracy;
	double test_loss;
	double images_per_s;
	const char *run_dir;
} train_summary;
void print_train_summary(const train_summary *t);

/* The last line of `spottrain eval`. */
void print_eval_summary(double test_accuracy, double loss, long images, const char *ckpt);
/* The same line with top-5 accuracy and per_class: [{"class", "images", "accuracy"}, ...]
 * (class_images[i] test images of class i, class_correct[i] of them right at top-1). */
void print_eval_detail(double test_accuracy, double top5_accuracy, double loss, long images, const char *ckpt,
		       int classes, const double *class_images, const double *class_correct);

/* The last line of `spottrain bench` (launcher/sweep.c reads it). */
/* One layer's figures in bench: one shard on one thread, per pass. */
typedef struct bench_layer {
	const char *name;
	double forward_ms, backward_ms, forward_gflops, backward_gflops;
} bench_layer;

typedef struct bench_summary {
	const char *config, *backend;
	int world, threads, global_batch, steps;
	double images_per_s, step_ms, step_ms_p50, step_ms_p90, step_ms_p99;
	double forward_ms, backward_ms, allreduce_ms, optimizer_ms, fixed_point_ms;
	double data_ms;          /* shard fills per step (summed over threads / threads): inside the step */
	double prefetch_ms;      /* the prefetch thread's work per step (hidden), 0 without data.prefetch */
	double allreduce_bytes, allreduce_busbw_gbs, gflops, sgemm_gflops;
	/* The CPU kernels (NULL: not printed), the measured peak per rank (peak-FMA loop on the
	 * CPU: the backend's peak_gflops) and the per-layer figures (n_layers 0: none). */
	const char *cpu_isa, *kernels;
	double peak_gflops;
	int shard_samples, n_layers;
	const bench_layer *layers;
} bench_summary;
void print_bench_summary(const bench_summary *b);

#endif
