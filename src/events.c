/*
 * events.c - every record a worker writes (events.h), built with cJSON so
 * strings are always escaped. Field order is kept for people reading files.
 */
#include "events.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "contract.h"
#include "log.h"
#include "runlog.h"

void emit_start(const ev_source *s, int nodes, long step)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "world_size", s->world);
	cJSON_AddNumberToObject(o, "nodes", nodes);
	cJSON_AddNumberToObject(o, "step", (double)step);
	cJSON_AddNumberToObject(o, "generation", s->generation);
	cJSON_AddNumberToObject(o, "pid", (double)getpid());
	runlog_event(s->run_dir, EV_START, o);
}

void emit_resume(const ev_source *s, const char *path, long step, int from_world, double load_s)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "path", path);
	cJSON_AddNumberToObject(o, "step", (double)step);
	cJSON_AddNumberToObject(o, "from_world_size", from_world);
	cJSON_AddNumberToObject(o, "world_size", s->world);
	cJSON_AddNumberToObject(o, "generation", s->generation);
	cJSON_AddNumberToObject(o, "load_s", load_s);
	runlog_event(s->run_dir, EV_RESUME, o);
}

void emit_checkpoint(const ev_source *s, const char *path, long step, double write_s, double blocked_s)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "path", path);
	cJSON_AddNumberToObject(o, "step", (double)step);
	cJSON_AddNumberToObject(o, "write_s", write_s);
	cJSON_AddNumberToObject(o, "blocked_s", blocked_s);
	cJSON_AddNumberToObject(o, "generation", s->generation);
	cJSON_AddNumberToObject(o, "world_size", s->world);
	cJSON_AddStringToObject(o, "node", s->node);
	runlog_event(s->run_dir, EV_CHECKPOINT, o);
}

void emit_notice(const ev_source *s, const spot_event *ev, long step)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "node", s->node);
	cJSON_AddStringToObject(o, "provider", ev->provider);
	cJSON_AddStringToObject(o, "action", ev->action);
	cJSON_AddStringToObject(o, "notice_time", ev->notice_time);
	cJSON_AddNumberToObject(o, "received", ev->received_wall);
	cJSON_AddNumberToObject(o, "step", (double)step);
	cJSON_AddNumberToObject(o, "generation", s->generation);
	cJSON_AddNumberToObject(o, "rank", s->rank);
	runlog_event(s->run_dir, ev->kind == SPOT_EVENT_STOP ? EV_NOTICE : EV_REBALANCE, o);
}

void emit_stop(const ev_source *s, long step, const char *reason, const char *path,
	       const double *notice_to_durable_s)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "step", (double)step);
	cJSON_AddStringToObject(o, "reason", reason);
	cJSON_AddStringToObject(o, "path", path);
	if (notice_to_durable_s)
		cJSON_AddNumberToObject(o, "notice_to_durable_s", *notice_to_durable_s);
	cJSON_AddNumberToObject(o, "generation", s->generation);
	cJSON_AddNumberToObject(o, "world_size", s->world);
	runlog_event(s->run_dir, EV_STOP, o);
}

void emit_exit(const ev_source *s, int code, long step)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "code", code);
	cJSON_AddNumberToObject(o, "step", (double)step);
	cJSON_AddNumberToObject(o, "rank", s->rank);
	cJSON_AddStringToObject(o, "node", s->node);
	cJSON_AddNumberToObject(o, "generation", s->generation);
	runlog_event(s->run_dir, EV_EXIT, o);
}

void emit_epoch(const ev_source *s, long step, long epoch, double test_accuracy, double test_loss)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "step", (double)step);
	cJSON_AddNumberToObject(o, "epoch", (double)epoch);
	cJSON_AddNumberToObject(o, "test_accuracy", test_accuracy);
	cJSON_AddNumberToObject(o, "test_loss", test_loss);
	cJSON_AddNumberToObject(o, "world_size", s->world);
	cJSON_AddNumberToObject(o, "generation", s->generation);
	cJSON_AddNumberToObject(o, "time", now_wall());
	runlog_event(s->run_dir, EV_EPOCH, cJSON_Duplicate(o, 1));
	runlog_metrics(s->run_dir, o);
}

void emit_metrics(const ev_source *s, const metrics_line *m)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "step", (double)m->step);
	cJSON_AddNumberToObject(o, "epoch", m->epoch);
	cJSON_AddNumberToObject(o, "loss", m->loss);
	cJSON_AddNumberToObject(o, "accuracy", m->accuracy);
	cJSON_AddNumberToObject(o, "images_per_s", m->images_per_s);
	cJSON_AddNumberToObject(o, "lr", m->lr);
	cJSON_AddNumberToObject(o, "world_size", s->world);
	cJSON_AddNumberToObject(o, "generation", s->generation);
	cJSON_AddNumberToObject(o, "time", now_wall());
	cJSON_AddNumberToObject(o, "wall_time_s", m->wall_time_s);
	runlog_metrics(s->run_dir, o);
}

/* Print o as one line on stdout, flushed, and free it. */
static void print_line(cJSON *o)
{
	char *s = cJSON_PrintUnformatted(o);
	if (s)
		printf("%s\n", s);
	fflush(stdout);
	free(s);
	cJSON_Delete(o);
}

void print_train_summary(const train_summary *t)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "status", t->status);
	cJSON_AddNumberToObject(o, "epochs", t->epochs);
	cJSON_AddNumberToObject(o, "steps", (double)t->steps);
	cJSON_AddNumberToObject(o, "world_size", t->world);
	cJSON_AddNumberToObject(o, "loss", t->loss);
	if (t->tested) {
		cJSON_AddNumberToObject(o, "test_accuracy", t->test_accuracy);
		cJSON_AddNumberToObject(o, "test_loss", t->test_loss);
	} else {
		cJSON_AddNullToObject(o, "test_accuracy");
	}
	cJSON_AddNumberToObject(o, "train_images_per_s", t->images_per_s);
	cJSON_AddStringToObject(o, "run_dir", t->run_dir);
	print_line(o);
}

void print_eval_summary(double test_accuracy, double loss, long images, const char *ckpt)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "test_accuracy", test_accuracy);
	cJSON_AddNumberToObject(o, "loss", loss);
	cJSON_AddNumberToObject(o, "images", (double)images);
	cJSON_AddStringToObject(o, "ckpt", ckpt);
	print_line(o);
}

void print_eval_detail(double test_accuracy, double top5_accuracy, double loss, long images, const char *ckpt,
		       int classes, const double *class_images, const double *class_correct)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "test_accuracy", test_accuracy);
	cJSON_AddNumberToObject(o, "top5_accuracy", top5_accuracy);
	cJSON_AddNumberToObject(o, "loss", loss);
	cJSON_AddNumberToObject(o, "images", (double)images);
	cJSON_AddStringToObject(o, "ckpt", ckpt);
	cJSON *pc = cJSON_AddArrayToObject(o, "per_class");
	for (int i = 0; pc && i < classes; i++) {
		cJSON *c = cJSON_CreateObject();
		cJSON_AddNumberToObject(c, "class", i);
		cJSON_AddNumberToObject(c, "images", class_images[i]);
		if (class_images[i] > 0)
			cJSON_AddNumberToObject(c, "accuracy", class_correct[i] / class_images[i]);
		else
			cJSON_AddNullToObject(c, "accuracy");
		cJSON_AddItemToArray(pc, c);
	}
	print_line(o);
}

void print_bench_summary(const bench_summary *b)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "config", b->config);
	cJSON_AddStringToObject(o, "backend", b->backend);
	cJSON_AddNumberToObject(o, "world_size", b->world);
	cJSON_AddNumberToObject(o, "threads", b->threads);
	cJSON_AddNumberToObject(o, "global_batch", b->global_batch);
	cJSON_AddNumberToObject(o, "steps", b->steps);
	cJSON_AddNumberToObject(o, "images_per_s", b->images_per_s);
	cJSON_AddNumberToObject(o, "data_ms", b->data_ms);
	cJSON_AddNumberToObject(o, "prefetch_ms", b->prefetch_ms);
	cJSON_AddNumberToObject(o, "images_per_s_per_rank", b->images_per_s / b->world);
	cJSON_AddNumberToObject(o, "step_ms", b->step_ms);
	cJSON_AddNumberToObject(o, "step_ms_p50", b->step_ms_p50);
	cJSON_AddNumberToObject(o, "step_ms_p90", b->step_ms_p90);
	cJSON_AddNumberToObject(o, "step_ms_p99", b->step_ms_p99);
	cJSON_AddNumberToObject(o, "forward_ms", b->forward_ms);
	cJSON_AddNumberToObject(o, "backward_ms", b->backward_ms);
	cJSON_AddNumberToObject(o, "allreduce_ms", b->allreduce_ms);
	cJSON_AddNumberToObject(o, "optimizer_ms", b->optimizer_ms);
	cJSON_AddNumberToObject(o, "fixed_point_ms", b->fixed_point_ms);
	cJSON_AddNumberToObject(o, "allreduce_bytes", b->allreduce_bytes);
	cJSON_AddNumberToObject(o, "allreduce_busbw_gbs", b->allreduce_busbw_gbs);
	cJSON_AddNumberToObject(o, "gflops", b->gflops);
	cJSON_AddNumberToObject(o, "sgemm_gflops", b->sgemm_gflops);
	cJSON_AddNumberToObject(o, "fraction_of_sgemm",
				b->sgemm_gflops > 0 ? b->gflops / (b->sgemm_gflops * b->world) : 0);
	if (b->cpu_isa) {
		cJSON_AddStringToObject(o, "cpu_isa", b->cpu_isa);
		cJSON_AddStringToObject(o, "kernels", b->kernels ? b->kernels : "");
	}
	if (b->peak_gflops > 0) {
		cJSON_AddNumberToObject(o, "peak_gflops", b->peak_gflops);
		cJSON_AddNumberToObject(o, "fraction_of_peak", b->gflops / (b->peak_gflops * b->world));
	}
	if (b->n_layers > 0) {
		cJSON *a = cJSON_AddArrayToObject(o, "layers");
		for (int i = 0; i < b->n_layers; i++) {
			const bench_layer *l = &b->layers[i];
			cJSON *e = cJSON_CreateObject();
			cJSON_AddStringToObject(e, "name", l->name);
			cJSON_AddNumberToObject(e, "shard_samples", b->shard_samples);
			cJSON_AddNumberToObject(e, "forward_ms", l->forward_ms);
			cJSON_AddNumberToObject(e, "backward_ms", l->backward_ms);
			cJSON_AddNumberToObject(e, "forward_gflops", l->forward_gflops);
			cJSON_AddNumberToObject(e, "backward_gflops", l->backward_gflops);
			cJSON_AddItemToArray(a, e);
		}
	}
	print_line(o);
}
