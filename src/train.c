/*
 * train.c - `spottrain train`: the loop over epochs and steps.
 *
 * The set-up is run.h's, a step is step.h's, when to checkpoint is
 * ckpt_policy.h's and when to stop is stop.h's (invariant 3: the requests
 * ride at the end of the gradient buffer, so after the all-reduce every rank
 * takes the same decision). What is written goes through events.h.
 */
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ckpt_policy.h"
#include "contract.h"
#include "eval.h"
#include "events.h"
#include "log.h"
#include "optim.h"
#include "run.h"
#include "runlog.h"
#include "spot.h"
#include "step.h"
#include "stop.h"

typedef struct trainer {
	run r;
	ckpt_policy ckpt;
	spot_watcher *watcher;   /* this node's (local rank 0), NULL elsewhere or without a provider */
	stop_state stop;         /* what this rank has seen; agreed through the tail */
	double last_loss;        /* the last step's mean loss */
	double images_done;      /* images trained by this process (for images/s) */
	double train_time;       /* seconds spent in steps by this process */
	/* the metrics window since the last metrics line */
	double window_t0, window_loss, window_correct, window_n;
	bool tested;             /* a test evaluation ran: */
	double test_acc, test_loss;
} trainer;

/* ---------------------------------------------------------------- progress */

/* The progress line on stderr (rank 0): a bar on a terminal, a plain line otherwise. */
static void progress(const run *r, double loss, double acc, double ips)
{
	double remaining = (double)(r->total_steps - r->step) * r->cfg.global_batch / (ips > 0 ? ips : 1);
	int eta = (int)(remaining + 0.5);
	long in_epoch = r->pos == 0 ? r->steps_per_epoch : (r->pos + r->cfg.global_batch - 1) / r->cfg.global_batch;
	long epoch = r->epoch + (r->pos == 0 ? 0 : 1);
	if (isatty(STDERR_FILENO)) {
		int width = 24, done = (int)(width * in_epoch / r->steps_per_epoch);
		char bar[32];
		for (int i = 0; i < width; i++)
			bar[i] = i < done ? '=' : (i == done ? '>' : ' ');
		bar[width] = 0;
		fprintf(stderr, "\repoch %ld/%d [%s] step %ld loss %.4f acc %.3f %.0f img/s ETA %d:%02d:%02d ", epoch,
			r->cfg.epochs, bar, r->step, loss, acc, ips, eta / 3600, eta / 60 % 60, eta % 60);
	} else {
		fprintf(stderr, "step %ld epoch %ld (%ld/%ld) loss %.4f acc %.3f %.0f img/s ETA %d:%02d:%02d\n",
			r->step, epoch, in_epoch, r->steps_per_epoch, loss, acc, ips, eta / 3600, eta / 60 % 60,
			eta % 60);
	}
}

/* Close the metrics window: a metrics line and the progress line (rank 0). */
static void log_window(trainer *t)
{
	run *r = &t->r;
	double dt = now_mono() - t->window_t0;
	if (r->d.rank == 0) {
		metrics_line m = {
			.step = r->step,
			.epoch = (double)r->epoch + (double)r->pos / (double)r->train.count,
			.loss = t->window_loss / t->window_n,
			.accuracy = t->window_correct / t->window_n,
			.images_per_s = t->window_n / (dt > 0 ? dt : 1),
			.lr = r->last_lr,
			.wall_time_s = run_wall_time(r),
		};
		emit_metrics(&r->ev, &m);
		progress(r, m.loss, m.accuracy, m.images_per_s);
	}
	t->window_t0 = now_mono();
	t->window_loss = t->window_correct = t->window_n = 0;
}

/* ---------------------------------------------------------------- one step */

/* stop_report_fn: a watcher event is recorded and logged before it is noted. */
static void report_watcher_event(void *ctx, const spot_event *ev)
{
	trainer *t = ctx;
	const run *r = &t->r;
	emit_notice(&r->ev, ev, r->step);
	if (ev->kind == SPOT_EVENT_STOP)
		log_warn("interruption notice from %s on node %s: %s at %s", ev->provider, r->d.node, ev->action,
			 ev->notice_time[0] ? ev->notice_time : "(no time given)");
	else
		log_info("rebalance recommendation on node %s: checkpointing now", r->d.node);
}

/*
 * One global step over perm[pos, pos+bsz) with this rank's requests in the
 * tail; returns the summed tail and advances the position.
 */
static void train_step(trainer *t, int bsz, int64_t *tail)
{
	run *r = &t->r;
	int64_t req[TAIL_N] = {0};
	stop_poll(&t->stop, t->watcher, report_watcher_event, t);
	stop_requests(&t->stop, req);
	r->optim_step++;
	r->last_lr = optim_lr_at(&r->cfg.optim, r->optim_step, r->total_steps);
	step_input in = {bsz, r->cfg.seed, (uint32_t)r->epoch, run_fill_shard, r};
	step_run(&r->se, &in, &r->cfg.optim, r->last_lr, r->optim_step, req, tail, NULL);
	if (r->se.exact && tail[TAIL_OVERFLOW] > 0 && r->d.rank == 0)
		log_warn("step %ld: %lld gradient values beyond +-2^19 were clipped in the exact sum "
			 "(is training diverging?)", r->step + 1, (long long)tail[TAIL_OVERFLOW]);
	r->step++;
	r->pos += bsz;
}

/* The step's loss and accuracy into the window; pacing (run.min_step_ms) and the heartbeat. */
static void after_step(trainer *t, const int64_t *tail, int bsz, double t0)
{
	run *r = &t->r;
	t->train_time += now_mono() - t0;
	t->images_done += bsz;
	double step_loss = ldexp((double)tail[TAIL_LOSS], -GRAD_FIX_BITS);
	t->window_loss += step_loss;
	t->window_correct += (double)tail[TAIL_CORRECT];
	t->window_n += bsz;
	t->last_loss = step_loss / bsz;
	if (r->cfg.min_step_ms > 0) {
		/* every rank sleeps the same, the step stays agreed */
		double left = r->cfg.min_step_ms * 1e-3 - (now_mono() - t0);
		if (left > 0) {
			struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
			nanosleep(&ts, NULL);
		}
	}
	if (r->d.rank == 0)
		runlog_heartbeat(r->cfg.run_dir, r->step, r->generation);
}

/* ---------------------------------------------------------------- stop and end */

/* The agreed stop: a synchronous checkpoint, the stop event, the acknowledgement. */
static int agreed_stop(trainer *t, const stop_decision *dec)
{
	run *r = &t->r;
	double first = t->stop.first_wall > 0 ? t->stop.first_wall : 1e300;
	dist_allreduce_min_d(&r->d, &first, 1);
	char path[4096];
	int rc = ckpt_policy_save(&t->ckpt, r, true, r->pos == 0, path, sizeof path);
	rc = dist_agree(&r->d, rc);
	double durable = now_wall();
	if (rc == 0 && r->d.local_rank == 0)
		spot_watcher_ack(t->watcher);
	if (r->d.rank == 0) {
		double delay = durable - first;
		emit_stop(&r->ev, r->step, dec->reason, rc == 0 ? path : "", first < 1e300 ? &delay : NULL);
		if (rc == 0)
			log_info("stopped at step %ld (%s) with checkpoint %s, %.3f s after the notice", r->step,
				 dec->reason, path, first < 1e300 ? delay : 0.0);
	}
	return rc ? rc : dec->exit_code;
}

/* The test evaluation at an epoch end: logged and recorded. */
static void epoch_test(trainer *t)
{
	run *r = &t->r;
	eval_test_set(r, &t->test_loss, &t->test_acc);
	t->tested = true;
	if (r->d.rank == 0) {
		log_info("epoch %ld: test accuracy %.4f, test loss %.4f", r->epoch, t->test_acc, t->test_loss);
		emit_epoch(&r->ev, r->step, r->epoch, t->test_acc, t->test_loss);
	}
	t->window_t0 = now_mono();
}

/* Finished (all epochs or --max-steps): the last checkpoint, the final model, the summary. */
static int finish(trainer *t)
{
	run *r = &t->r;
	int rc = ckpt_policy_finish(&t->ckpt, r);
	if (rc)
		return rc;
	if (!t->tested && r->cfg.eval_each_epoch) {
		eval_test_set(r, &t->test_loss, &t->test_acc);
		t->tested = true;
	}
	if (r->d.rank != 0)
		return 0;
	if (isatty(STDERR_FILENO))
		fputc('\n', stderr);
	train_summary s = {
		.status = r->epoch >= r->cfg.epochs ? "finished" : "max_steps",
		.epochs = (double)r->epoch + (double)r->pos / (double)r->train.count,
		.steps = r->step,
		.world = r->d.world,
		.loss = t->last_loss,
		.tested = t->tested,
		.test_accuracy = t->test_acc,
		.test_loss = t->test_loss,
		.images_per_s = t->train_time > 0 ? t->images_done / t->train_time : 0,
		.run_dir = r->cfg.run_dir,
	};
	print_train_summary(&s);
	return 0;
}

/* ---------------------------------------------------------------- the loop */

/* The loop over epochs and steps. Returns the exit code. */
static int train_loop(trainer *t)
{
	run *r = &t->r;
	size_t N = r->train.count;
	size_t B = (size_t)r->cfg.global_batch;
	t->window_t0 = now_mono();
	while (r->epoch < r->cfg.epochs && (r->cfg.max_steps <= 0 || r->step < r->cfg.max_steps)) {
		run_order_epoch(r, r->epoch);
		int bsz = (int)(N - (size_t)r->pos < B ? N - (size_t)r->pos : B);
		int64_t tail[TAIL_N];
		double t0 = now_mono();
		train_step(t, bsz, tail);
		after_step(t, tail, bsz, t0);
		/* an asynchronous checkpoint became durable, or failed (agreed through the next tail) */
		stop_note_io_failure(&t->stop, ckpt_policy_poll(&t->ckpt, r, false));
		stop_decision dec = stop_decide(tail, &t->stop);
		if (dec.action == STOP_ACT_IOERR) {
			if (r->d.rank == 0)
				log_error("a checkpoint write failed (see the message above); stopping with the earlier "
					  "checkpoints intact");
			return dec.exit_code;
		}
		bool epoch_done = (size_t)r->pos >= N;
		if (epoch_done) {
			r->epoch++;
			r->pos = 0;
		}
		if (r->step % r->cfg.log_every == 0 || epoch_done)
			log_window(t);
		if (dec.action == STOP_ACT_STOP)
			return agreed_stop(t, &dec);
		int rc = 0;
		if (epoch_done) {
			if (r->cfg.eval_each_epoch)
				epoch_test(t);
			rc = ckpt_policy_save(&t->ckpt, r, false, true, NULL, 0);
		} else if (ckpt_policy_due(r) || dec.action == STOP_ACT_CHECKPOINT) {
			rc = ckpt_policy_save(&t->ckpt, r, false, false, NULL, 0);
		}
		stop_note_io_failure(&t->stop, rc);
	}
	return finish(t);
}

/* ---------------------------------------------------------------- entry */

/* This node's interruption watcher, on its first rank. */
static void start_watcher(trainer *t)
{
	run *r = &t->r;
	snprintf(r->cfg.spot.node, sizeof r->cfg.spot.node, "%s", r->d.node);
	if (r->d.local_rank != 0 || r->cfg.spot.provider == SPOT_PROVIDER_NONE)
		return;
	if (spot_watcher_start(&r->cfg.spot, &t->watcher) != 0) {
		log_warn("could not start the interruption watcher on node %s; SIGTERM still works", r->d.node);
		t->watcher = NULL;
	}
}

/* Rank 0: RUN/config.ini (once per run), the start line and the start event. */
static void announce(const run *r)
{
	char path[4096];
	struct stat st;
	snprintf(path, sizeof path, "%s/%s", r->cfg.run_dir, RUN_CONFIG_FILE);
	if (stat(path, &st) != 0) {
		char *text = config_dump(&r->cfg);
		if (text)
			write_file_atomic(path, text, strlen(text));
		free(text);
	}
	char desc[4096];
	model_describe(&r->m, desc, sizeof desc);
	log_info("training %s on %s: %zu train / %zu test images, world %d (%d nodes), backend %s, "
		 "global batch %d, %ld steps per epoch\n%s",
		 r->cfg.source, r->cfg.data_dir, r->train.count, r->test.count, r->d.world, r->d.n_nodes,
		 r->be->name, r->cfg.global_batch, r->steps_per_epoch, desc);
	emit_start(&r->ev, r->d.n_nodes, r->step);
}

int train_main(int *argc, char ***argv, const run_args *a)
{
	trainer *t = calloc(1, sizeof *t);
	if (!t) {
		log_error("out of memory");
		return EXIT_OSERR;
	}
	run *r = &t->r;
	int rc = run_open(r, RUN_TRAIN, argc, argv, a);
	if (!rc)
		rc = ckpt_policy_open(&t->ckpt, r);
	if (!rc) {
		if (r->d.rank == 0)
			announce(r);
		start_watcher(t);
		r->t_start = now_mono();
		rc = train_loop(t);
	}
	int prc = ckpt_policy_close(&t->ckpt, r);
	spot_watcher_stop(t->watcher);
	if (r->t_start > 0) /* every rank records its exit: the agreed stop is visible as W equal lines */
		emit_exit(&r->ev, rc ? rc : prc, r->step);
	runlog_close();
	run_close(r);
	free(t);
	return rc ? rc : prc;
}
