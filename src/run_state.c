/*
 * run_state.c - the training state of a run (run.h): the step engine's
 * buffers, their host copies for checkpoint I/O, and where the weights come
 * from (a resumed checkpoint, --init-from, eval's checkpoint, or the seed).
 */
#include "run.h"

#include <stdlib.h>
#include <string.h>

#include "contract.h"
#include "log.h"
#include "optim.h"

int run_alloc_state(run *r)
{
	int rc = step_engine_init(&r->se, &r->m, r->be, &r->d, &r->cfg.optim, r->cfg.global_batch,
				  r->cfg.shard_samples);
	if (rc)
		return rc;
	size_t n = r->m.n_params;
	r->perm = malloc((r->train.count ? r->train.count : 1) * sizeof *r->perm);
	if (!r->perm)
		goto oom;
	if (r->be->caps & BACKEND_CAP_HOST_MEMORY) {
		r->h_params = r->se.params;
		for (int i = 0; i < r->se.n_states; i++)
			r->h_states[i] = r->se.states[i];
		return 0;
	}
	if (!(r->h_params = calloc(n, sizeof(float))))
		goto oom;
	for (int i = 0; i < r->se.n_states; i++)
		if (!(r->h_states[i] = calloc(n, sizeof(float))))
			goto oom;
	return 0;
oom:
	log_error("out of memory for the host copies of %zu parameters", n);
	return EXIT_OSERR;
}

void run_free_state(run *r)
{
	if (r->h_params != r->se.params) {
		free(r->h_params);
		for (int i = 0; i < r->se.n_states; i++)
			free(r->h_states[i]);
	}
	r->h_params = NULL;
	step_engine_free(&r->se);
	free(r->perm);
	r->perm = NULL;
}

ckpt_buffers run_ckpt_buffers(run *r)
{
	ckpt_buffers b = {.params = r->h_params, .n_states = r->se.n_states, .buffers = r->se.buffers};
	for (int i = 0; i < r->se.n_states; i++) {
		b.state_names[i] = optim_state_name(&r->cfg.optim, i);
		b.states[i] = r->h_states[i];
	}
	return b;
}

void run_state_to_host(run *r)
{
	if (r->h_params == r->se.params)
		return;
	size_t bytes = r->m.n_params * sizeof(float);
	r->be->download(r->h_params, r->se.params, bytes);
	for (int i = 0; i < r->se.n_states; i++)
		r->be->download(r->h_states[i], r->se.states[i], bytes);
}

void run_state_to_backend(run *r)
{
	if (r->h_params == r->se.params)
		return;
	size_t bytes = r->m.n_params * sizeof(float);
	r->be->upload(r->se.params, r->h_params, bytes);
	for (int i = 0; i < r->se.n_states; i++)
		r->be->upload(r->se.states[i], r->h_states[i], bytes);
}

double run_wall_time(const run *r)
{
	return r->wall_before + (now_mono() - r->t_start);
}

int run_load_weights(run *r, const char *path)
{
	int rc = 0;
	if (r->d.rank == 0) {
		ckpt_buffers wb = {.params = r->h_params, .buffers = r->se.buffers};
		rc = ckpt_read(path, &r->m, true, NULL, &wb);
	}
	if ((rc = dist_agree(&r->d, rc)))
		return rc;
	dist_bcast(&r->d, r->h_params, r->m.n_params * sizeof(float), 0);
	if (r->m.n_buffers) /* BatchNorm's running statistics come with the weights */
		dist_bcast(&r->d, r->se.buffers, r->m.n_buffers * sizeof(float), 0);
	r->be->upload(r->se.params, r->h_params, r->m.n_params * sizeof(float));
	return 0;
}

/* Collective: the step of the newest checkpoint that any node leader can read (-1: none), its
 * path and metadata on that leader, and the rank that holds it. */
static int find_newest(run *r, char *path, size_t len, ckpt_meta *meta, long *best, int *holder)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s/%s", r->cfg.run_dir, RUN_CKPT_DIR);
	long step = -1;
	int rc = 0;
	if (r->d.local_rank == 0) {
		ckpt_buffers b = run_ckpt_buffers(r);
		rc = ckpt_find_newest(dir, &r->m, &b, path, len, &step);
		if (rc == EXIT_NOINPUT) {
			step = -1;
			rc = 0;
		} else if (rc == 0) {
			rc = ckpt_read_meta(path, meta);
		}
	}
	if ((rc = dist_agree(&r->d, rc)))
		return rc;
	*best = step;
	dist_allreduce_max_l(&r->d, best, 1);
	long holder_neg = step == *best && step >= 0 ? -(long)r->d.rank : -(long)r->d.world;
	dist_allreduce_max_l(&r->d, &holder_neg, 1);
	*holder = (int)-holder_neg;
	return 0;
}

/* Collective: the holder's position, wall time and state to every rank. */
static void adopt_checkpoint(run *r, const ckpt_meta *meta, int holder)
{
	long pos[6] = {meta->step, meta->epoch, meta->sample_in_epoch, meta->optim_step, meta->global_batch, 0};
	double wall = meta->wall_time_s;
	dist_bcast(&r->d, pos, sizeof pos, holder);
	dist_bcast(&r->d, &wall, sizeof wall, holder);
	dist_bcast(&r->d, r->h_params, r->m.n_params * sizeof(float), holder);
	for (int i = 0; i < r->se.n_states; i++)
		dist_bcast(&r->d, r->h_states[i], r->m.n_params * sizeof(float), holder);
	if (r->m.n_buffers)
		dist_bcast(&r->d, r->se.buffers, r->m.n_buffers * sizeof(float), holder);
	run_state_to_backend(r);
	r->step = pos[0];
	r->epoch = pos[1];
	r->pos = pos[2];
	r->optim_step = pos[3];
	r->wall_before = wall;
	if (pos[4] != r->cfg.global_batch)
		log_warn("resuming a run made with global batch %ld using global batch %d: the sample order "
			 "stays, the step boundaries change", pos[4], r->cfg.global_batch);
}

int run_seed_weights(run *r)
{
	float *host = malloc(r->m.n_params * sizeof(float));
	if (host) {
		model_init_params(&r->m, r->cfg.seed, host);
		r->be->upload(r->se.params, host, r->m.n_params * sizeof(float));
		free(host);
	}
	return dist_agree(&r->d, host ? 0 : EXIT_OSERR);
}

/* Collective: a new run's weights, --init-from's or the seed's. */
static int fresh_weights(run *r)
{
	const char *from = r->args->init_from;
	if (!from)
		return run_seed_weights(r);
	int rc = run_load_weights(r, from);
	if (!rc)
		log_info("initialised the weights from %s (fine-tuning: optimizer state and position start fresh)",
			 from);
	return rc;
}

/*
 * Invariant 5: every node leader reports the newest valid checkpoint it can
 * read; the maximum wins and its holder broadcasts the state.
 */
int run_resume(run *r)
{
	char path[4096] = "";
	ckpt_meta meta = {0};
	long best;
	int holder;
	double t_load = now_mono();
	int rc = find_newest(r, path, sizeof path, &meta, &best, &holder);
	if (rc || best < 0) {
		ckpt_meta_free(&meta);
		return rc ? rc : fresh_weights(r);
	}
	adopt_checkpoint(r, &meta, holder);
	if (r->d.rank == holder) {
		log_info("resuming from %s: step %ld, epoch %ld, sample %ld of the epoch (written by a world of %d)",
			 path, r->step, r->epoch + 1, r->pos, meta.world_size);
		emit_resume(&r->ev, path, r->step, meta.world_size, now_mono() - t_load);
	}
	ckpt_meta_free(&meta);
	return 0;
}
