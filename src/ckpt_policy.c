/*
 * ckpt_policy.c - training's checkpoint policy (ckpt_policy.h).
 */
#include "ckpt_policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "contract.h"
#include "log.h"
#include "optim.h"

static void ckpt_dir(const run *r, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", r->cfg.run_dir, RUN_CKPT_DIR);
}

/* The metadata of the current state; config_text is borrowed. */
static void fill_meta(const run *r, ckpt_meta *meta, bool epoch_end, char *config_text)
{
	memset(meta, 0, sizeof *meta);
	meta->step = r->step;
	meta->epoch = r->epoch;
	meta->sample_in_epoch = r->pos;
	meta->global_batch = r->cfg.global_batch;
	meta->world_size = r->d.world;
	meta->generation = r->generation;
	meta->seed = r->cfg.seed;
	meta->wall_time_s = run_wall_time(r);
	meta->epoch_end = epoch_end;
	meta->model_hash = r->m.hash;
	snprintf(meta->optimizer, sizeof meta->optimizer, "%s", optim_kind_name(r->cfg.optim.kind));
	meta->lr = r->last_lr;
	meta->optim_step = r->optim_step;
	meta->config_text = config_text;
}

/* Write the current state (host copies) to path synchronously. */
static int write_now(run *r, const char *path, bool epoch_end)
{
	run_state_to_host(r);
	char *text = config_dump(&r->cfg);
	ckpt_meta meta;
	fill_meta(r, &meta, epoch_end, text);
	ckpt_buffers b = run_ckpt_buffers(r);
	int rc = ckpt_write(path, &r->m, &meta, &b);
	free(text);
	return rc;
}

int ckpt_policy_open(ckpt_policy *p, run *r)
{
	memset(p, 0, sizeof *p);
	int rc = 0;
	if (r->ckpt_writer_rank && r->cfg.ckpt_async)
		rc = ckpt_writer_create(&r->m, r->se.n_states, &p->writer);
	return dist_agree(&r->d, rc);
}

int ckpt_policy_close(ckpt_policy *p, run *r)
{
	int rc = ckpt_policy_poll(p, r, true);
	if (p->writer)
		ckpt_writer_destroy(p->writer);
	p->writer = NULL;
	return rc;
}

int ckpt_policy_poll(ckpt_policy *p, run *r, bool wait)
{
	if (!p->writer || !p->pending[0])
		return 0;
	if (wait)
		ckpt_writer_wait(p->writer);
	int rc;
	double write_s;
	if (!ckpt_writer_poll(p->writer, &rc, &write_s))
		return 0; /* still writing */
	if (rc == 0)
		emit_checkpoint(&r->ev, p->pending, p->pending_step, write_s, p->pending_blocked);
	p->pending[0] = 0;
	return rc;
}

bool ckpt_policy_due(const run *r)
{
	return r->cfg.ckpt_every_steps > 0 && r->step % r->cfg.ckpt_every_steps == 0;
}

/* Hand the current state to the writer thread; training waits only for the copy. */
static int submit(ckpt_policy *p, run *r, const char *path, bool epoch_end, double t0)
{
	run_state_to_host(r);
	char *text = config_dump(&r->cfg);
	ckpt_meta meta;
	fill_meta(r, &meta, epoch_end, text);
	ckpt_buffers b = run_ckpt_buffers(r);
	int rc = ckpt_writer_submit(p->writer, path, &meta, &b, r->cfg.ckpt_keep, r->cfg.ckpt_keep_epoch_ends);
	if (!rc) {
		snprintf(p->pending, sizeof p->pending, "%s", path);
		p->pending_step = r->step;
		p->pending_blocked = now_mono() - t0;
	}
	free(text);
	return rc;
}

int ckpt_policy_save(ckpt_policy *p, run *r, bool sync, bool epoch_end, char *out_path, size_t len)
{
	char dir[4096], path[4096];
	ckpt_dir(r, dir, sizeof dir);
	ckpt_path(dir, r->step, path, sizeof path);
	if (out_path)
		snprintf(out_path, len, "%s", path);
	if (!r->ckpt_writer_rank)
		return 0;
	if (!sync && p->writer && ckpt_writer_busy(p->writer)) {
		/* Never stall training on a slow volume: a periodic checkpoint that comes due while
		 * the previous one is still being written is skipped (stops and the end wait). */
		log_warn("checkpoint of step %ld skipped: the write of step %ld is still in flight (the volume "
			 "is slower than checkpoint.every_steps)", r->step, p->pending_step);
		return 0;
	}
	double t0 = now_mono(); /* training is blocked from here */
	int rc = ckpt_policy_poll(p, r, true);
	if (rc)
		return rc;
	if (!sync && p->writer)
		return submit(p, r, path, epoch_end, t0);
	if ((rc = write_now(r, path, epoch_end)))
		return rc;
	double dt = now_mono() - t0;
	emit_checkpoint(&r->ev, path, r->step, dt, dt);
	ckpt_prune(dir, r->cfg.ckpt_keep, r->cfg.ckpt_keep_epoch_ends);
	return 0;
}

int ckpt_policy_finish(ckpt_policy *p, run *r)
{
	int rc = ckpt_policy_poll(p, r, true);
	char dir[4096], last[4096];
	ckpt_dir(r, dir, sizeof dir);
	ckpt_path(dir, r->step, last, sizeof last);
	struct stat st;
	if (!rc && r->ckpt_writer_rank && stat(last, &st) != 0)
		rc = ckpt_policy_save(p, r, true, r->pos == 0, NULL, 0);
	if (!rc && r->d.rank == 0) {
		char final[4096];
		snprintf(final, sizeof final, "%s/%s", r->cfg.run_dir, RUN_FINAL_FILE);
		rc = write_now(r, final, true);
	}
	return dist_agree(&r->d, rc);
}
