/*
 * train.c - `spottrain train`: data-parallel training with an agreed stop.
 *
 * Invariant 1 (DESIGN.md): epoch e visits the samples in the order of a
 * permutation drawn from (seed, e); global step s of an epoch takes the
 * samples perm[pos, pos+B) and rank r of W takes a contiguous part of that
 * range; the gradient is the sum over the B samples divided by B.
 * Invariant 3: the stop and rescale requests ride at the end of the gradient
 * buffer, so after the all-reduce every rank takes the same decision.
 */
#include "train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "contract.h"
#include "data.h"
#include "device.h"
#include "grad.h"
#include "dist.h"
#include "fetch.h"
#include "log.h"
#include "model.h"
#include "optim.h"
#include "philox.h"
#include "runlog.h"
#include "spot.h"
#include "stop.h"

/* The request flags and counters ride after the gradients in the all-reduce (grad.h TAIL_*). */


typedef struct trainer {
	config cfg;
	dist d;
	model m;
	const backend *be;
	dataset train, test;
	float *params, *grads;       /* grads has n_params + TAIL_N floats */
	float *states[CKPT_MAX_STATES];
	int n_states;
	/* host copies for checkpoint I/O: the same pointers on the CPU backend, mirrors elsewhere */
	float *h_params, *h_states[CKPT_MAX_STATES];
	net_workspace ws;            /* evaluation, and training on non-CPU backends */
	bool exact;                  /* CPU: exact sharded gradient sums (grad.h) */
	grad_engine ge;
	uint32_t *perm;              /* this epoch's permutation */
	long perm_epoch;
	uint32_t *samples;           /* this rank's sample indices of the step */
	uint8_t *labels;
	uint8_t *train_images, *test_images; /* the images in backend memory */
	/* position: the next sample is perm[pos] of epoch `epoch`; `step` steps are done */
	long step, epoch, pos, optim_step;
	long steps_per_epoch, total_steps;
	double wall_before;          /* training wall time of earlier processes (from the checkpoint) */
	double t_start;
	int generation;
	bool ckpt_writer_rank;       /* this rank writes checkpoints */
	ckpt_writer *writer;
	int ckpt_rc;                 /* first failed checkpoint write on this rank (carried in the tail) */
	char pending_ckpt[4096];     /* submitted asynchronously, not yet reported */
	long pending_step;
	double pending_blocked;      /* seconds training waited to hand that write over */
	spot_watcher *watcher;
	double notice_wall;          /* first notice or signal this rank saw (0: none) */
	bool watcher_stop_seen;      /* this node's watcher reported an interruption notice */
	const char *notice_reason;
	float last_lr;
	double last_loss;
	double last_acc;
	double images_done;          /* images trained by this process (for images/s) */
	double train_time;           /* seconds spent in steps by this process */
} trainer;

/* ---------------------------------------------------------------- config */

/* --set overrides, then the command-line flags, then validation (after the config is read). */
static int apply_command_line(const run_args *a, config *c)
{
	int rc;
	for (int i = 0; i < a->n_sets; i++)
		if ((rc = config_set(c, a->sets[i])))
			return rc;
	if (a->data_dir)
		snprintf(c->data_dir, sizeof c->data_dir, "%s", a->data_dir);
	if (a->run_dir)
		snprintf(c->run_dir, sizeof c->run_dir, "%s", a->run_dir);
	if (a->epochs > 0)
		c->epochs = (int)a->epochs;
	if (a->max_steps > 0)
		c->max_steps = a->max_steps;
	if (a->threads >= 0)
		c->threads = a->threads;
	if (a->seed >= 0)
		c->seed = (uint32_t)a->seed;
	if (a->device_given)
		c->device = a->device;
	return config_validate(c);
}

int load_run_config(const run_args *a, config *c)
{
	config_defaults(c);
	int rc;
	if (a->config_path && (rc = config_load_file(c, a->config_path)))
		return rc;
	return apply_command_line(a, c);
}

/* ---------------------------------------------------------------- data */

/* Fisher-Yates from Philox keyed by (seed, epoch): the same on every rank and world size. */
static void epoch_permutation(uint32_t seed, long epoch, uint32_t *perm, size_t n)
{
	philox_key k = {{seed, (uint32_t)epoch}};
	for (size_t i = 0; i < n; i++)
		perm[i] = (uint32_t)i;
	for (size_t i = n - 1; i > 0; i--) {
		philox_ctr c = {{(uint32_t)i, (uint32_t)(i >> 32), 0, PHILOX_PERMUTE}};
		philox_ctr r = philox4x32(c, k);
		uint64_t x = ((uint64_t)r.v[0] << 32) | r.v[1];
		size_t j = (size_t)(x % (uint64_t)(i + 1));
		uint32_t t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
}

/* Scale the pixels of the listed samples into the input buffer (on the backend). */
static void gather_input(trainer *t, const uint8_t *images, const uint32_t *idx, int n)
{
	t->be->gather_images(images, idx, n, (size_t)t->m.in_h * t->m.in_w, 1.0f / 255.0f, t->ws.input);
}

/* The images in backend memory: the dataset is uploaded once (the CPU backend uses it in place). */
static int upload_images(trainer *t, const dataset *ds, uint8_t **out)
{
	size_t bytes = ds->count * (size_t)ds->rows * (size_t)ds->cols;
	if ((t->be->caps & BACKEND_CAP_HOST_MEMORY) || bytes == 0) {
		*out = ds->images;
		return 0;
	}
	*out = t->be->alloc(bytes);
	if (!*out) {
		log_error("cannot place the %zu-byte data set in %s memory", bytes, t->be->name);
		return EXIT_OSERR;
	}
	t->be->upload(*out, ds->images, bytes);
	return 0;
}

/*
 * Download missing IDX files (data.url) on the first rank of each node, the
 * other ranks waiting in the agreement. Collective: every rank calls it with
 * its rc so far and gets the same code back. The download's deadline stays
 * inside dist.collective_timeout_s, so it fails with its own message (74)
 * before the waiting ranks abort the world.
 */
static int fetch_data(trainer *t, int rc)
{
	if (!rc && t->cfg.data_url[0] && t->d.local_rank == 0) {
		fetch_options o;
		fetch_options_default(&o);
		if (o.deadline_s > 0.8 * t->cfg.collective_timeout_s)
			o.deadline_s = 0.8 * t->cfg.collective_timeout_s;
		rc = fetch_dataset_opts(t->cfg.data_dir, t->cfg.data_url, t->cfg.data_sha256, &o);
	}
	return dist_agree(&t->d, rc);
}

static int load_data(trainer *t, bool with_train)
{
	int rc = with_train ? dataset_load(t->cfg.data_dir, "train", &t->train) : 0;
	if (!rc)
		rc = dataset_load(t->cfg.data_dir, "t10k", &t->test);
	if (rc)
		return rc;
	const dataset *sets[2] = {&t->test, &t->train};
	for (int i = 0; i < (with_train ? 2 : 1); i++) {
		const dataset *ds = sets[i];
		if (t->m.in_c != 1 || ds->rows != t->m.in_h || ds->cols != t->m.in_w) {
			log_error("%s: images are 1x%dx%d but the network's input is %dx%dx%d (model.input)",
				  t->cfg.data_dir, ds->rows, ds->cols, t->m.in_c, t->m.in_h, t->m.in_w);
			return EXIT_DATAERR;
		}
		if (ds->max_label >= t->m.classes) {
			log_error("%s: labels go up to %d but the network has %d classes", t->cfg.data_dir,
				  ds->max_label, t->m.classes);
			return EXIT_DATAERR;
		}
	}
	return 0;
}

/* ---------------------------------------------------------------- setup */

static int alloc_buffers(trainer *t)
{
	size_t n = t->m.n_params;
	int max_n = (t->cfg.global_batch + t->d.world - 1) / t->d.world;
	t->params = t->be->alloc(n * sizeof(float));
	t->grads = t->be->alloc((n + TAIL_N) * sizeof(float));
	t->n_states = optim_n_states(&t->cfg.optim);
	for (int i = 0; i < t->n_states; i++)
		t->states[i] = t->be->alloc(n * sizeof(float));
	t->perm = malloc((t->train.count ? t->train.count : 1) * sizeof *t->perm);
	t->samples = malloc((size_t)max_n * sizeof *t->samples);
	t->labels = malloc((size_t)max_n);
	if (!t->params || !t->grads || !t->perm || !t->samples || !t->labels)
		goto oom;
	for (int i = 0; i < t->n_states; i++) {
		if (!t->states[i])
			goto oom;
		t->be->zero(n, t->states[i]);
	}
	if (t->be->caps & BACKEND_CAP_HOST_MEMORY) {
		t->h_params = t->params;
		for (int i = 0; i < t->n_states; i++)
			t->h_states[i] = t->states[i];
	} else {
		if (!(t->h_params = calloc(n, sizeof(float))))
			goto oom;
		for (int i = 0; i < t->n_states; i++)
			if (!(t->h_states[i] = calloc(n, sizeof(float))))
				goto oom;
	}
	t->perm_epoch = -1;
	t->exact = (t->be->caps & BACKEND_CAP_EXACT_SUM) != 0;
	if (t->exact && grad_engine_init(&t->ge, &t->m, t->be, t->cfg.shard_samples, t->be->threads(t->be)))
		return EXIT_OSERR;
	return net_workspace_alloc(&t->m, t->be, max_n, &t->ws);
oom:
	log_error("out of memory for %zu parameters", n);
	return EXIT_OSERR;
}

static void free_buffers(trainer *t)
{
	if (t->ge.ws)
		grad_engine_free(&t->ge);
	if (t->ws.act)
		net_workspace_free(&t->m, t->be, &t->ws);
	if (t->be) {
		if (t->params)
			t->be->release(t->params);
		if (t->grads)
			t->be->release(t->grads);
		for (int i = 0; i < t->n_states; i++)
			if (t->states[i])
				t->be->release(t->states[i]);
	}
	if (t->h_params != t->params) {
		free(t->h_params);
		for (int i = 0; i < t->n_states; i++)
			free(t->h_states[i]);
	}
	free(t->perm);
	free(t->samples);
	free(t->labels);
	if (t->be && !(t->be->caps & BACKEND_CAP_HOST_MEMORY)) {
		if (t->train_images)
			t->be->release(t->train_images);
		if (t->test_images)
			t->be->release(t->test_images);
	}
	dataset_free(&t->train);
	dataset_free(&t->test);
}

static void ckpt_dir(const trainer *t, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", t->cfg.run_dir, RUN_CKPT_DIR);
}

static ckpt_buffers layout(trainer *t)
{
	ckpt_buffers b = {.params = t->h_params, .n_states = t->n_states};
	for (int i = 0; i < t->n_states; i++) {
		b.state_names[i] = optim_state_name(&t->cfg.optim, i);
		b.states[i] = t->h_states[i];
	}
	return b;
}

/* Backend state -> host mirrors (before a checkpoint) and back (after a resume). */
static void state_to_host(trainer *t)
{
	if (t->h_params == t->params)
		return;
	size_t bytes = t->m.n_params * sizeof(float);
	t->be->download(t->h_params, t->params, bytes);
	for (int i = 0; i < t->n_states; i++)
		t->be->download(t->h_states[i], t->states[i], bytes);
}

static void state_to_backend(trainer *t)
{
	if (t->h_params == t->params)
		return;
	size_t bytes = t->m.n_params * sizeof(float);
	t->be->upload(t->params, t->h_params, bytes);
	for (int i = 0; i < t->n_states; i++)
		t->be->upload(t->states[i], t->h_states[i], bytes);
}

/*
 * Invariant 5: every node leader reports the newest valid checkpoint it can
 * read; the maximum wins and its holder broadcasts the state.
 */
static int resume(trainer *t, const run_args *a, bool *fresh)
{
	char dir[4096], path[4096] = "";
	long step = -1;
	ckpt_buffers b = layout(t);
	ckpt_dir(t, dir, sizeof dir);
	int rc = 0;
	ckpt_meta meta = {0};
	double t_load = now_mono();
	if (t->d.local_rank == 0) {
		rc = ckpt_find_newest(dir, &t->m, &b, path, sizeof path, &step);
		if (rc == EXIT_NOINPUT) {
			step = -1;
			rc = 0;
		} else if (rc == 0) {
			rc = ckpt_read_meta(path, &meta);
		}
	}
	if ((rc = dist_agree(&t->d, rc)))
		return rc;
	long best = step;
	dist_allreduce_max_l(&t->d, &best, 1);
	long holder_neg = step == best && step >= 0 ? -(long)t->d.rank : -(long)t->d.world;
	dist_allreduce_max_l(&t->d, &holder_neg, 1);
	if (best < 0) {
		ckpt_meta_free(&meta);
		*fresh = true;
		if (a->init_from) {
			ckpt_buffers wb = {.params = t->h_params};
			rc = 0;
			if (t->d.rank == 0)
				rc = ckpt_read(a->init_from, &t->m, true, NULL, &wb);
			if ((rc = dist_agree(&t->d, rc)))
				return rc;
			dist_bcast(&t->d, t->h_params, t->m.n_params * sizeof(float), 0);
			t->be->upload(t->params, t->h_params, t->m.n_params * sizeof(float));
			*fresh = false;
			log_info("initialised the weights from %s (fine-tuning: optimizer state and position start fresh)",
				 a->init_from);
		}
		return 0;
	}
	*fresh = false;
	int holder = (int)-holder_neg;
	long pos[6] = {meta.step, meta.epoch, meta.sample_in_epoch, meta.optim_step, meta.global_batch, 0};
	double wall = meta.wall_time_s;
	dist_bcast(&t->d, pos, sizeof pos, holder);
	dist_bcast(&t->d, &wall, sizeof wall, holder);
	dist_bcast(&t->d, t->h_params, t->m.n_params * sizeof(float), holder);
	for (int i = 0; i < t->n_states; i++)
		dist_bcast(&t->d, t->h_states[i], t->m.n_params * sizeof(float), holder);
	state_to_backend(t);
	t->step = pos[0];
	t->epoch = pos[1];
	t->pos = pos[2];
	t->optim_step = pos[3];
	t->wall_before = wall;
	if (pos[4] != t->cfg.global_batch)
		log_warn("resuming a run made with global batch %ld using global batch %d: the sample order "
			 "stays, the step boundaries change", pos[4], t->cfg.global_batch);
	if (t->d.rank == holder) {
		log_info("resuming from %s: step %ld, epoch %ld, sample %ld of the epoch (written by a world of %d)",
			 path, t->step, t->epoch + 1, t->pos, meta.world_size);
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "path", path);
		cJSON_AddNumberToObject(o, "step", (double)t->step);
		cJSON_AddNumberToObject(o, "from_world_size", meta.world_size);
		cJSON_AddNumberToObject(o, "world_size", t->d.world);
		cJSON_AddNumberToObject(o, "generation", t->generation);
		cJSON_AddNumberToObject(o, "load_s", now_mono() - t_load);
		runlog_event(t->cfg.run_dir, EV_RESUME, o);
	}
	ckpt_meta_free(&meta);
	return 0;
}

/* ---------------------------------------------------------------- checkpoints */

static void fill_meta(trainer *t, ckpt_meta *meta, bool epoch_end, char *config_text)
{
	memset(meta, 0, sizeof *meta);
	meta->step = t->step;
	meta->epoch = t->epoch;
	meta->sample_in_epoch = t->pos;
	meta->global_batch = t->cfg.global_batch;
	meta->world_size = t->d.world;
	meta->generation = t->generation;
	meta->seed = t->cfg.seed;
	meta->wall_time_s = t->wall_before + (now_mono() - t->t_start);
	meta->epoch_end = epoch_end;
	meta->model_hash = t->m.hash;
	snprintf(meta->optimizer, sizeof meta->optimizer, "%s", optim_kind_name(t->cfg.optim.kind));
	meta->lr = t->last_lr;
	meta->optim_step = t->optim_step;
	meta->config_text = config_text;
}

/* write_s: the write itself; blocked_s: how long training waited for it (all of it when synchronous). */
static void report_checkpoint(trainer *t, const char *path, long step, double write_s, double blocked_s)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "path", path);
	cJSON_AddNumberToObject(o, "step", (double)step);
	cJSON_AddNumberToObject(o, "write_s", write_s);
	cJSON_AddNumberToObject(o, "blocked_s", blocked_s);
	cJSON_AddNumberToObject(o, "generation", t->generation);
	cJSON_AddNumberToObject(o, "world_size", t->d.world);
	cJSON_AddStringToObject(o, "node", t->d.node);
	runlog_event(t->cfg.run_dir, EV_CHECKPOINT, o);
}

/*
 * Report a finished asynchronous write as soon as it is durable (polled every
 * step), or, with wait, wait for the one in flight first. Returns its status.
 */
static int finish_pending(trainer *t, bool wait)
{
	if (!t->writer || !t->pending_ckpt[0])
		return 0;
	if (wait)
		ckpt_writer_wait(t->writer);
	int rc;
	double write_s;
	if (!ckpt_writer_poll(t->writer, &rc, &write_s))
		return 0; /* still writing */
	if (rc == 0)
		report_checkpoint(t, t->pending_ckpt, t->pending_step, write_s, t->pending_blocked);
	t->pending_ckpt[0] = 0;
	return rc;
}

/*
 * Write a checkpoint of the current state: asynchronously (periodic, epoch
 * end, rebalance) or synchronously (stop, final). Only the writer ranks write;
 * the return code is agreed by the caller where it matters.
 */
static int save_checkpoint(trainer *t, bool sync, bool epoch_end, char *out_path, size_t out_len)
{
	char dir[4096], path[4096];
	ckpt_dir(t, dir, sizeof dir);
	ckpt_path(dir, t->step, path, sizeof path);
	if (out_path)
		snprintf(out_path, out_len, "%s", path);
	if (!t->ckpt_writer_rank)
		return 0;
	if (!sync && t->writer && ckpt_writer_busy(t->writer)) {
		/* Never stall training on a slow volume: a periodic checkpoint that comes due while
		 * the previous one is still being written is skipped (stops and the end wait). */
		log_warn("checkpoint of step %ld skipped: the write of step %ld is still in flight (the volume "
			 "is slower than checkpoint.every_steps)", t->step, t->pending_step);
		return 0;
	}
	double t0 = now_mono(); /* training is blocked from here */
	int rc = finish_pending(t, true);
	if (rc)
		return rc;
	state_to_host(t);
	char *text = config_dump(&t->cfg);
	ckpt_meta meta;
	fill_meta(t, &meta, epoch_end, text);
	ckpt_buffers b = layout(t);
	if (sync || !t->writer) {
		rc = ckpt_write(path, &t->m, &meta, &b);
		if (!rc) {
			double dt = now_mono() - t0;
			report_checkpoint(t, path, t->step, dt, dt);
			ckpt_prune(dir, t->cfg.ckpt_keep, t->cfg.ckpt_keep_epoch_ends);
		}
	} else {
		rc = ckpt_writer_submit(t->writer, path, &meta, &b, t->cfg.ckpt_keep,
					t->cfg.ckpt_keep_epoch_ends);
		if (!rc) {
			snprintf(t->pending_ckpt, sizeof t->pending_ckpt, "%s", path);
			t->pending_step = t->step;
			t->pending_blocked = now_mono() - t0;
		}
	}
	free(text);
	return rc;
}

static int save_final(trainer *t)
{
	if (t->d.rank != 0)
		return 0;
	state_to_host(t);
	char path[4096], *text = config_dump(&t->cfg);
	snprintf(path, sizeof path, "%s/%s", t->cfg.run_dir, RUN_FINAL_FILE);
	ckpt_meta meta;
	fill_meta(t, &meta, true, text);
	ckpt_buffers b = layout(t);
	int rc = ckpt_write(path, &t->m, &meta, &b);
	free(text);
	return rc;
}

/* ---------------------------------------------------------------- evaluation */

/* Test loss and accuracy, the test set sharded across ranks and reduced. */
static void evaluate(trainer *t, double *loss, double *acc)
{
	size_t n = t->test.count;
	size_t lo = n * (size_t)t->d.rank / (size_t)t->d.world;
	size_t hi = n * (size_t)(t->d.rank + 1) / (size_t)t->d.world;
	double sums[2] = {0, 0};
	for (size_t i = lo; i < hi; i += (size_t)t->ws.max_n) {
		int cnt = (int)(hi - i < (size_t)t->ws.max_n ? hi - i : (size_t)t->ws.max_n);
		for (int j = 0; j < cnt; j++) {
			t->samples[j] = (uint32_t)(i + (size_t)j);
			t->labels[j] = t->test.labels[i + (size_t)j];
		}
		gather_input(t, t->test_images, t->samples, cnt);
		batch_info b = {cnt, t->samples, t->labels, t->cfg.seed, 0, 0};
		double l;
		int c;
		net_forward(&t->m, t->be, t->params, &t->ws, &b, &l, &c);
		sums[0] += l;
		sums[1] += c;
		if (t->d.rank == 0)
			runlog_heartbeat(t->cfg.run_dir, t->step, t->generation); /* alive, not stuck */
	}
	dist_allreduce_sum_d(&t->d, sums, 2);
	*loss = sums[0] / (double)n;
	*acc = sums[1] / (double)n;
}

/* ---------------------------------------------------------------- progress */

static void progress(trainer *t, double loss, double acc, double ips)
{
	if (t->d.rank != 0)
		return;
	double remaining = (double)(t->total_steps - t->step) * t->cfg.global_batch / (ips > 0 ? ips : 1);
	int eta = (int)(remaining + 0.5);
	long in_epoch = t->pos == 0 ? t->steps_per_epoch : (t->pos + t->cfg.global_batch - 1) / t->cfg.global_batch;
	if (isatty(STDERR_FILENO)) {
		int width = 24, done = (int)(width * in_epoch / t->steps_per_epoch);
		char bar[32];
		for (int i = 0; i < width; i++)
			bar[i] = i < done ? '=' : (i == done ? '>' : ' ');
		bar[width] = 0;
		fprintf(stderr, "\repoch %ld/%d [%s] step %ld loss %.4f acc %.3f %.0f img/s ETA %d:%02d:%02d ",
			t->epoch + (t->pos == 0 ? 0 : 1), t->cfg.epochs, bar, t->step, loss, acc, ips, eta / 3600,
			eta / 60 % 60, eta % 60);
	} else {
		fprintf(stderr, "step %ld epoch %ld (%ld/%ld) loss %.4f acc %.3f %.0f img/s ETA %d:%02d:%02d\n",
			t->step, t->epoch + (t->pos == 0 ? 0 : 1), in_epoch, t->steps_per_epoch, loss, acc, ips,
			eta / 3600, eta / 60 % 60, eta % 60);
	}
}

static void log_metrics(trainer *t, double loss, double acc, double ips)
{
	if (t->d.rank != 0)
		return;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "step", (double)t->step);
	cJSON_AddNumberToObject(o, "epoch", (double)t->epoch + (double)t->pos / (double)t->train.count);
	cJSON_AddNumberToObject(o, "loss", loss);
	cJSON_AddNumberToObject(o, "accuracy", acc);
	cJSON_AddNumberToObject(o, "images_per_s", ips);
	cJSON_AddNumberToObject(o, "lr", t->last_lr);
	cJSON_AddNumberToObject(o, "world_size", t->d.world);
	cJSON_AddNumberToObject(o, "generation", t->generation);
	cJSON_AddNumberToObject(o, "time", now_wall());
	cJSON_AddNumberToObject(o, "wall_time_s", t->wall_before + (now_mono() - t->t_start));
	runlog_metrics(t->cfg.run_dir, o);
	progress(t, loss, acc, ips);
}

/* ---------------------------------------------------------------- one step */

/* Local stop requests: signals on every rank, notices from this node's watcher. */
static void poll_requests(trainer *t, int64_t *tail)
{
	double when = 0;
	signal_request s = signals_pending(&when);
	if (s == SIG_REQ_TERM || s == SIG_REQ_INT) {
		tail[TAIL_SIGNAL] = 1;
		if (!t->notice_wall) {
			t->notice_wall = when;
			t->notice_reason = s == SIG_REQ_TERM ? STOP_SIGTERM : STOP_SIGINT;
		}
	} else if (s == SIG_REQ_RESCALE) {
		tail[TAIL_RESCALE] = 1;
		if (!t->notice_wall) {
			t->notice_wall = when;
			t->notice_reason = STOP_RESCALE;
		}
	}
	spot_event ev;
	while (spot_watcher_poll(t->watcher, &ev)) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "node", t->cfg.spot.node);
		cJSON_AddStringToObject(o, "provider", ev.provider);
		cJSON_AddStringToObject(o, "action", ev.action);
		cJSON_AddStringToObject(o, "notice_time", ev.notice_time);
		cJSON_AddNumberToObject(o, "received", ev.received_wall);
		cJSON_AddNumberToObject(o, "step", (double)t->step);
		cJSON_AddNumberToObject(o, "generation", t->generation);
		cJSON_AddNumberToObject(o, "rank", t->d.rank);
		if (ev.kind == SPOT_EVENT_STOP) {
			runlog_event(t->cfg.run_dir, EV_NOTICE, o);
			log_warn("interruption notice from %s on node %s: %s at %s", ev.provider, t->cfg.spot.node,
				 ev.action, ev.notice_time[0] ? ev.notice_time : "(no time given)");
			t->notice_wall = t->notice_wall && t->notice_wall < ev.received_wall ? t->notice_wall
											      : ev.received_wall;
			t->notice_reason = STOP_NOTICE;
			t->watcher_stop_seen = true;
		} else {
			runlog_event(t->cfg.run_dir, EV_REBALANCE, o);
			log_info("rebalance recommendation on node %s: checkpointing now", t->cfg.spot.node);
			tail[TAIL_CKPT_NOW] = 1;
		}
	}
	if (t->watcher_stop_seen)
		tail[TAIL_NOTICE] = 1;
}

/* grad.h shard_fill_fn: step positions [first, first+n) of the current step. */
static void fill_train_shard(void *ctx, long first, int n, float *input, uint32_t *samples, uint8_t *labels)
{
	trainer *t = ctx;
	for (int i = 0; i < n; i++) {
		samples[i] = t->perm[t->pos + first + i];
		labels[i] = t->train.labels[samples[i]];
	}
	t->be->gather_images(t->train_images, samples, n, (size_t)t->m.in_h * t->m.in_w, 1.0f / 255.0f, input);
}

/*
 * Non-CPU backends: one pass over this rank's contiguous part of the step
 * (sizes differ by at most one), float all-reduce (NCCL). The counters are
 * carried as floats and returned as integers.
 */
static void float_step(trainer *t, int bsz, const int64_t *req, int64_t *tail_out)
{
	int W = t->d.world, r = t->d.rank;
	long lo = (long)bsz * r / W, hi = (long)bsz * (r + 1) / W;
	int n = (int)(hi - lo);
	for (int i = 0; i < n; i++) {
		t->samples[i] = t->perm[t->pos + lo + i];
		t->labels[i] = t->train.labels[t->samples[i]];
	}
	size_t np = t->m.n_params;
	t->be->zero(np + TAIL_N, t->grads);
	gather_input(t, t->train_images, t->samples, n);
	batch_info b = {n, t->samples, t->labels, t->cfg.seed, (uint32_t)t->epoch, 1};
	double loss = 0;
	int correct = 0;
	net_forward(&t->m, t->be, t->params, &t->ws, &b, &loss, &correct);
	net_backward(&t->m, t->be, t->params, t->grads, &t->ws, &b);
	float tail[TAIL_N] = {0};
	for (int i = 0; i < TAIL_LOSS; i++)
		tail[i] = (float)req[i];
	tail[TAIL_LOSS] = (float)loss;
	tail[TAIL_CORRECT] = (float)correct;
	t->be->upload(t->grads + np, tail, sizeof tail);
	dist_allreduce_sum_f(&t->d, t->grads, np + TAIL_N, DIST_MEM_BACKEND);
	t->be->download(tail, t->grads + np, sizeof tail);
	for (int i = 0; i < TAIL_N; i++)
		tail_out[i] = i == TAIL_LOSS ? (int64_t)ldexp(tail[i], GRAD_FIX_BITS) : (int64_t)tail[i];
	t->be->scale(np, 1.0f / (float)bsz, t->grads);
}

/*
 * One global step over perm[pos, pos+bsz): forward, backward, the all-reduce
 * with the request tail, the update. Returns the reduced tail in tail_out.
 */
static void train_step(trainer *t, int bsz, int64_t *tail_out)
{
	size_t np = t->m.n_params;
	int64_t req[TAIL_N] = {0};
	poll_requests(t, req);
	req[TAIL_IOERR] = t->ckpt_rc != 0;
	if (t->exact) {
		grad_compute(&t->ge, t->params, bsz, t->d.rank, t->d.world, t->cfg.seed, (uint32_t)t->epoch,
			     fill_train_shard, t);
		int64_t *acc = t->ge.acc[0];
		for (int i = 0; i < TAIL_LOSS; i++)
			acc[np + i] = req[i];
		dist_allreduce_sum_i64(&t->d, acc, np + TAIL_N);
		memcpy(tail_out, acc + np, TAIL_N * sizeof(int64_t));
		grad_finish(&t->ge, bsz, t->grads);
		if (tail_out[TAIL_OVERFLOW] > 0 && t->d.rank == 0)
			log_warn("step %ld: %lld gradient values beyond +-2^19 were clipped in the exact sum "
				 "(is training diverging?)", t->step + 1, (long long)tail_out[TAIL_OVERFLOW]);
	} else {
		float_step(t, bsz, req, tail_out);
	}
	t->optim_step++;
	t->last_lr = optim_lr_at(&t->cfg.optim, t->optim_step, t->total_steps);
	t->be->optim_step(&t->cfg.optim, t->last_lr, t->optim_step, np, t->params, t->grads, t->states);
	t->step++;
	t->pos += bsz;
}

/* The agreed stop: checkpoint, events, acknowledgement. Returns the exit code. */
static int agreed_stop(trainer *t, const int64_t *tail)
{
	const char *reason = tail[TAIL_NOTICE] > 0   ? STOP_NOTICE
			     : tail[TAIL_SIGNAL] > 0 ? (t->notice_reason && strcmp(t->notice_reason, STOP_SIGINT) == 0
							? STOP_SIGINT : STOP_SIGTERM)
						     : STOP_RESCALE;
	double first = t->notice_wall > 0 ? t->notice_wall : 1e300;
	dist_allreduce_min_d(&t->d, &first, 1);
	char path[4096];
	int rc = save_checkpoint(t, true, t->pos == 0, path, sizeof path);
	rc = dist_agree(&t->d, rc);
	double durable = now_wall();
	if (rc == 0 && t->d.local_rank == 0)
		spot_watcher_ack(t->watcher);
	if (t->d.rank == 0) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "step", (double)t->step);
		cJSON_AddStringToObject(o, "reason", reason);
		cJSON_AddStringToObject(o, "path", rc == 0 ? path : "");
		if (first < 1e300)
			cJSON_AddNumberToObject(o, "notice_to_durable_s", durable - first);
		cJSON_AddNumberToObject(o, "generation", t->generation);
		cJSON_AddNumberToObject(o, "world_size", t->d.world);
		runlog_event(t->cfg.run_dir, EV_STOP, o);
		if (rc == 0)
			log_info("stopped at step %ld (%s) with checkpoint %s, %.3f s after the notice", t->step,
				 reason, path, first < 1e300 ? durable - first : 0.0);
	}
	return rc ? rc : EXIT_TEMPFAIL;
}

static void print_summary(trainer *t, const char *status, double test_acc, double test_loss)
{
	if (t->d.rank != 0)
		return;
	if (isatty(STDERR_FILENO))
		fputc('\n', stderr);
	double ips = t->train_time > 0 ? t->images_done / t->train_time : 0;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "status", status);
	cJSON_AddNumberToObject(o, "epochs", (double)t->epoch + (double)t->pos / (double)t->train.count);
	cJSON_AddNumberToObject(o, "steps", (double)t->step);
	cJSON_AddNumberToObject(o, "world_size", t->d.world);
	cJSON_AddNumberToObject(o, "loss", t->last_loss);
	if (test_acc >= 0) {
		cJSON_AddNumberToObject(o, "test_accuracy", test_acc);
		cJSON_AddNumberToObject(o, "test_loss", test_loss);
	} else {
		cJSON_AddNullToObject(o, "test_accuracy");
	}
	cJSON_AddNumberToObject(o, "train_images_per_s", ips);
	cJSON_AddStringToObject(o, "run_dir", t->cfg.run_dir);
	char *s = cJSON_PrintUnformatted(o);
	if (s)
		printf("%s\n", s);
	fflush(stdout);
	free(s);
	cJSON_Delete(o);
}

/* The loop over epochs and steps. Returns the exit code. */
static int train_loop(trainer *t)
{
	size_t N = t->train.count;
	int B = t->cfg.global_batch;
	double window_t0 = now_mono(), window_loss = 0, window_correct = 0, window_n = 0;
	double test_acc = -1, test_loss = 0;
	while (t->epoch < t->cfg.epochs && (t->cfg.max_steps <= 0 || t->step < t->cfg.max_steps)) {
		if (t->perm_epoch != t->epoch) {
			epoch_permutation(t->cfg.seed, t->epoch, t->perm, N);
			t->perm_epoch = t->epoch;
		}
		int bsz = (int)((N - (size_t)t->pos) < (size_t)B ? N - (size_t)t->pos : (size_t)B);
		int64_t tail[TAIL_N];
		double t0 = now_mono();
		train_step(t, bsz, tail);
		t->train_time += now_mono() - t0;
		t->images_done += bsz;
		double step_loss = ldexp((double)tail[TAIL_LOSS], -GRAD_FIX_BITS);
		window_loss += step_loss;
		window_correct += (double)tail[TAIL_CORRECT];
		window_n += bsz;
		t->last_loss = step_loss / bsz;
		if (t->cfg.min_step_ms > 0) {
			/* pacing (run.min_step_ms): every rank sleeps the same, the step stays agreed */
			double left = t->cfg.min_step_ms * 1e-3 - (now_mono() - t0);
			if (left > 0) {
				struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
				nanosleep(&ts, NULL);
			}
		}
		if (t->d.rank == 0)
			runlog_heartbeat(t->cfg.run_dir, t->step, t->generation);
		int wrc = finish_pending(t, false); /* an asynchronous checkpoint became durable? */
		if (wrc && !t->ckpt_rc)
			t->ckpt_rc = wrc;
		if (tail[TAIL_IOERR] > 0) {
			/* every rank learns it from the same all-reduce and exits the same way */
			if (t->d.rank == 0)
				log_error("a checkpoint write failed (see the message above); stopping with the earlier "
					  "checkpoints intact");
			return EXIT_IOERR;
		}
		bool epoch_done = (size_t)t->pos >= N;
		if (epoch_done) {
			t->epoch++;
			t->pos = 0;
		}
		if (t->step % t->cfg.log_every == 0 || epoch_done) {
			double dt = now_mono() - window_t0;
			log_metrics(t, window_loss / window_n, window_correct / window_n, window_n / (dt > 0 ? dt : 1));
			window_t0 = now_mono();
			window_loss = window_correct = window_n = 0;
		}
		if (tail[TAIL_NOTICE] > 0 || tail[TAIL_SIGNAL] > 0 || tail[TAIL_RESCALE] > 0)
			return agreed_stop(t, tail);
		int rc = 0;
		if (epoch_done) {
			if (t->cfg.eval_each_epoch) {
				evaluate(t, &test_loss, &test_acc);
				if (t->d.rank == 0) {
					log_info("epoch %ld: test accuracy %.4f, test loss %.4f", t->epoch, test_acc,
						 test_loss);
					cJSON *o = cJSON_CreateObject();
					cJSON_AddNumberToObject(o, "step", (double)t->step);
					cJSON_AddNumberToObject(o, "epoch", (double)t->epoch);
					cJSON_AddNumberToObject(o, "test_accuracy", test_acc);
					cJSON_AddNumberToObject(o, "test_loss", test_loss);
					cJSON_AddNumberToObject(o, "world_size", t->d.world);
					cJSON_AddNumberToObject(o, "generation", t->generation);
					cJSON_AddNumberToObject(o, "time", now_wall());
					runlog_event(t->cfg.run_dir, EV_EPOCH, cJSON_Duplicate(o, 1));
					runlog_metrics(t->cfg.run_dir, o);
				}
				window_t0 = now_mono();
			}
			rc = save_checkpoint(t, false, true, NULL, 0);
		} else if ((t->cfg.ckpt_every_steps > 0 && t->step % t->cfg.ckpt_every_steps == 0) ||
			   tail[TAIL_CKPT_NOW] > 0) {
			rc = save_checkpoint(t, false, false, NULL, 0);
		}
		if (rc && !t->ckpt_rc)
			t->ckpt_rc = rc; /* agreed through the next step's all-reduce */
	}
	/* finished (all epochs or --max-steps): a last checkpoint and the final model */
	int rc = finish_pending(t, true);
	char dir[4096], last[4096];
	ckpt_dir(t, dir, sizeof dir);
	ckpt_path(dir, t->step, last, sizeof last);
	struct stat st;
	if (!rc && t->ckpt_writer_rank && stat(last, &st) != 0)
		rc = save_checkpoint(t, true, t->pos == 0, NULL, 0);
	if (!rc)
		rc = save_final(t);
	if ((rc = dist_agree(&t->d, rc)))
		return rc;
	if (test_acc < 0 && t->cfg.eval_each_epoch)
		evaluate(t, &test_loss, &test_acc);
	print_summary(t, t->epoch >= t->cfg.epochs ? "finished" : "max_steps", test_acc, test_loss);
	return 0;
}

/* ---------------------------------------------------------------- entry */

static int select_device(trainer *t)
{
	return device_select(t->cfg.device, t->d.local_rank, t->cfg.threads, &t->be);
}

static void start_watcher(trainer *t)
{
	spot_config sc = t->cfg.spot;
	snprintf(sc.node, sizeof sc.node, "%s", t->d.node);
	t->cfg.spot = sc;
	if (t->d.local_rank != 0 || sc.provider == SPOT_PROVIDER_NONE)
		return;
	if (spot_watcher_start(&sc, &t->watcher) != 0) {
		log_warn("could not start the interruption watcher on node %s; SIGTERM still works", t->d.node);
		t->watcher = NULL;
	}
}

static void write_run_config(trainer *t)
{
	char path[4096];
	struct stat st;
	snprintf(path, sizeof path, "%s/%s", t->cfg.run_dir, RUN_CONFIG_FILE);
	if (stat(path, &st) == 0)
		return;
	char *text = config_dump(&t->cfg);
	if (text)
		write_file_atomic(path, text, strlen(text));
	free(text);
}

int train_main(int *argc, char ***argv, const run_args *a)
{
	trainer *t = calloc(1, sizeof *t);
	if (!t) {
		log_error("out of memory");
		return EXIT_OSERR;
	}
	int rc = load_run_config(a, &t->cfg);
	if (!rc)
		rc = model_build(&t->cfg, &t->m);
	if (rc) {
		free(t);
		return rc;
	}
	if ((rc = dist_init(argc, argv, t->cfg.collective_timeout_s, &t->d))) {
		free(t);
		return rc;
	}
	log_set_verbose(a->verbose);
	signals_install();
	const char *gen = getenv(ENV_GENERATION);
	const char *url = getenv(ENV_METADATA_URL);
	if (url && *url)
		snprintf(t->cfg.spot.metadata_url, sizeof t->cfg.spot.metadata_url, "%s", url);
	t->generation = gen ? atoi(gen) : 0;
	t->ckpt_writer_rank = t->cfg.ckpt_scope == CKPT_SCOPE_NODE ? t->d.local_rank == 0 : t->d.rank == 0;

	rc = select_device(t);
	rc = dist_agree(&t->d, rc);
	if (!rc) /* GPU gradients: NCCL (or host staging); every rank calls it */
		rc = dist_agree(&t->d, dist_enable_device_allreduce(&t->d, t->be, t->cfg.dist_backend));
	if (!rc && t->d.rank == 0)
		rc = runlog_prepare_dir(t->cfg.run_dir);
	rc = dist_agree(&t->d, rc);
	if (!rc && t->cfg.ckpt_scope == CKPT_SCOPE_NODE && t->d.local_rank == 0)
		rc = runlog_prepare_dir(t->cfg.run_dir);
	rc = fetch_data(t, rc); /* every rank: it contains the agreement */
	if (!rc)
		rc = load_data(t, true);
	rc = dist_agree(&t->d, rc);
	if (!rc)
		rc = alloc_buffers(t);
	rc = dist_agree(&t->d, rc);
	if (!rc)
		rc = upload_images(t, &t->train, &t->train_images);
	if (!rc)
		rc = upload_images(t, &t->test, &t->test_images);
	bool fresh = true;
	if (!rc)
		rc = resume(t, a, &fresh);
	if (!rc && fresh) {
		/* a new run: every rank draws the same initial weights from the seed */
		float *host = malloc(t->m.n_params * sizeof(float));
		if (host) {
			model_init_params(&t->m, t->cfg.seed, host);
			t->be->upload(t->params, host, t->m.n_params * sizeof(float));
			free(host);
		} else {
			rc = EXIT_OSERR;
		}
	}
	rc = dist_agree(&t->d, rc);
	if (!rc && t->ckpt_writer_rank && t->cfg.ckpt_async)
		rc = ckpt_writer_create(&t->m, t->n_states, &t->writer);
	rc = dist_agree(&t->d, rc);
	if (!rc) {
		t->steps_per_epoch = (long)((t->train.count + (size_t)t->cfg.global_batch - 1) /
					    (size_t)t->cfg.global_batch);
		t->total_steps = t->steps_per_epoch * t->cfg.epochs;
		if (t->cfg.max_steps > 0 && t->cfg.max_steps < t->total_steps)
			t->total_steps = t->cfg.max_steps;
		t->last_lr = optim_lr_at(&t->cfg.optim, t->optim_step > 0 ? t->optim_step : 1, t->total_steps);
		if (t->d.rank == 0) {
			write_run_config(t);
			char desc[4096];
			model_describe(&t->m, desc, sizeof desc);
			log_info("training %s on %s: %zu train / %zu test images, world %d (%d nodes), backend %s, "
				 "global batch %d, %ld steps per epoch\n%s",
				 t->cfg.source, t->cfg.data_dir, t->train.count, t->test.count, t->d.world,
				 t->d.n_nodes, t->be->name, t->cfg.global_batch, t->steps_per_epoch, desc);
			cJSON *o = cJSON_CreateObject();
			cJSON_AddNumberToObject(o, "world_size", t->d.world);
			cJSON_AddNumberToObject(o, "nodes", t->d.n_nodes);
			cJSON_AddNumberToObject(o, "step", (double)t->step);
			cJSON_AddNumberToObject(o, "generation", t->generation);
			cJSON_AddNumberToObject(o, "pid", (double)getpid());
			runlog_event(t->cfg.run_dir, EV_START, o);
		}
		start_watcher(t);
		t->t_start = now_mono();
		rc = train_loop(t);
	}
	int prc = finish_pending(t, true);
	if (t->writer)
		ckpt_writer_destroy(t->writer);
	spot_watcher_stop(t->watcher);
	if (t->t_start > 0) {
		/* every rank records its exit: the agreed stop is visible as W equal lines */
		cJSON *o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "code", rc ? rc : prc);
		cJSON_AddNumberToObject(o, "step", (double)t->step);
		cJSON_AddNumberToObject(o, "rank", t->d.rank);
		cJSON_AddStringToObject(o, "node", t->d.node);
		cJSON_AddNumberToObject(o, "generation", t->generation);
		runlog_event(t->cfg.run_dir, EV_EXIT, o);
	}
	runlog_close();
	free_buffers(t);
	dist_finalize(&t->d);
	free(t);
	return rc ? rc : prc;
}

/* `spottrain eval --ckpt FILE`: test loss and accuracy of a checkpoint's weights. */
int eval_main(int *argc, char ***argv, const run_args *a)
{
	trainer *t = calloc(1, sizeof *t);
	if (!t) {
		log_error("out of memory");
		return EXIT_OSERR;
	}
	int rc = 0;
	if (a->config_path) {
		rc = load_run_config(a, &t->cfg);
	} else {
		/* the network comes from the config stored in the checkpoint */
		ckpt_meta meta = {0};
		rc = ckpt_read_meta(a->ckpt, &meta);
		if (!rc) {
			config_defaults(&t->cfg);
			rc = config_load_string(&t->cfg, meta.config_text ? meta.config_text : "", a->ckpt);
			snprintf(t->cfg.source, sizeof t->cfg.source, "%s", a->ckpt);
			if (rc)
				rc = EXIT_DATAERR;
		}
		ckpt_meta_free(&meta);
		if (!rc)
			rc = apply_command_line(a, &t->cfg);
	}
	if (!rc)
		rc = model_build(&t->cfg, &t->m);
	if (rc) {
		free(t);
		return rc;
	}
	if ((rc = dist_init(argc, argv, t->cfg.collective_timeout_s, &t->d))) {
		free(t);
		return rc;
	}
	rc = select_device(t);
	if (!rc)
		rc = load_data(t, false);
	rc = dist_agree(&t->d, rc);
	if (!rc)
		rc = alloc_buffers(t);
	if (!rc)
		rc = upload_images(t, &t->test, &t->test_images);
	rc = dist_agree(&t->d, rc);
	if (!rc && t->d.rank == 0) {
		ckpt_buffers wb = {.params = t->h_params};
		rc = ckpt_read(a->ckpt, &t->m, true, NULL, &wb);
	}
	rc = dist_agree(&t->d, rc);
	if (!rc) {
		dist_bcast(&t->d, t->h_params, t->m.n_params * sizeof(float), 0);
		t->be->upload(t->params, t->h_params, t->m.n_params * sizeof(float));
		double loss, acc;
		evaluate(t, &loss, &acc);
		if (t->d.rank == 0) {
			log_info("%s: test accuracy %.4f, test loss %.4f on %zu images of %s", a->ckpt, acc, loss,
				 t->test.count, t->cfg.data_dir);
			cJSON *o = cJSON_CreateObject();
			cJSON_AddNumberToObject(o, "test_accuracy", acc);
			cJSON_AddNumberToObject(o, "loss", loss);
			cJSON_AddNumberToObject(o, "images", (double)t->test.count);
			cJSON_AddStringToObject(o, "ckpt", a->ckpt);
			char *line = cJSON_PrintUnformatted(o);
			if (line)
				printf("%s\n", line);
			fflush(stdout);
			free(line);
			cJSON_Delete(o);
		}
	}
	free_buffers(t);
	dist_finalize(&t->d);
	free(t);
	return rc;
}
