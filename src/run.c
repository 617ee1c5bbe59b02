/*
 * run.c - the set-up shared by train, eval and bench (run.h): the config,
 * world and backend stages, and run_open/run_close that chain all stages.
 */
#include "run.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "contract.h"
#include "device.h"
#include "kernels/kernels.h"
#include "log.h"
#include "optim.h"
#include "runlog.h"
#include "signals.h"

/* eval without --config: the network comes from the config stored in the checkpoint. */
static int config_from_checkpoint(const run_args *a, config *c)
{
	ckpt_meta meta = {0};
	int rc = ckpt_read_meta(a->ckpt, &meta);
	if (!rc) {
		config_defaults(c);
		rc = config_load_string(c, meta.config_text ? meta.config_text : "", a->ckpt);
		snprintf(c->source, sizeof c->source, "%s", a->ckpt);
		if (rc)
			rc = EXIT_DATAERR;
	}
	ckpt_meta_free(&meta);
	return rc ? rc : config_apply_args(a, c);
}

/* Config and model, before the world exists (usage errors exit without MPI). */
static int open_config(run *r, const run_args *a)
{
	int rc;
	if (r->kind == RUN_EVAL && !a->config_path)
		rc = config_from_checkpoint(a, &r->cfg);
	else
		rc = config_load_run(a, &r->cfg);
	return rc ? rc : model_build(&r->cfg, &r->m);
}

/* Train with SPOTTRAIN_SAMPLE_TRACE set: this process's trace file (run.h); -1 without. */
static int open_sample_trace(const run *r)
{
	const char *dir = getenv(ENV_SAMPLE_TRACE);
	if (!dir || !*dir)
		return -1;
	char path[4096];
	snprintf(path, sizeof path, "%s/g%d-r%d-p%ld.trace", dir, r->generation, r->d.rank, (long)getpid());
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		log_warn("%s: cannot open the sample trace %s: %s", ENV_SAMPLE_TRACE, path,
			 strerror(errno));
	return fd;
}

/* The world; train also takes the signals, the launcher's generation and metadata URL. */
static int open_world(run *r, int *argc, char ***argv, const run_args *a)
{
	int rc = dist_init(argc, argv, r->cfg.collective_timeout_s, &r->d);
	if (rc)
		return rc;
	r->dist_up = true;
	log_set_verbose(a->verbose);
	if (r->kind == RUN_TRAIN) {
		signals_install();
		const char *gen = getenv(ENV_GENERATION);
		const char *url = getenv(ENV_METADATA_URL);
		if (url && *url)
			snprintf(r->cfg.spot.metadata_url, sizeof r->cfg.spot.metadata_url, "%s", url);
		r->generation = gen ? atoi(gen) : 0;
		r->sample_trace_fd = open_sample_trace(r);
		r->ckpt_writer_rank = r->cfg.ckpt_scope == CKPT_SCOPE_NODE ? r->d.local_rank == 0 : r->d.rank == 0;
	}
	r->ev = (ev_source){r->cfg.run_dir, r->d.node, r->d.rank, r->d.world, r->generation};
	return 0;
}

/*
 * The CPU kernels of this rank (src/kernels/: run.cpu_isa, SPOTTRAIN_CPU_ISA wins), named
 * in the run's first log line. Every ISA gives the same bits, so ranks may differ.
 */
static int open_kernels(run *r)
{
	int rc = kern_select(r->cfg.cpu_isa == CPU_ISA_AUTO ? NULL : kern_isa_name((kern_isa)(r->cfg.cpu_isa - 1)));
	if (!rc) {
		char desc[256];
		log_info("CPU kernels: %s", kern_describe(desc, sizeof desc));
	}
	return rc;
}

/* Collective: the backend, and for training steps the all-reduce on its memory (NCCL). */
static int open_backend(run *r)
{
	int rc = dist_agree(&r->d, open_kernels(r));
	if (!rc)
		rc = dist_agree(&r->d, device_select(r->cfg.device, r->d.local_rank, r->cfg.threads, &r->be));
	if (!rc && r->kind != RUN_EVAL)
		rc = dist_agree(&r->d, dist_enable_device_allreduce(&r->d, r->be, r->cfg.dist_backend));
	return rc;
}

/* Collective (train): the run directory on the writer ranks. */
static int open_run_dir(run *r)
{
	int rc = 0;
	if (r->d.rank == 0)
		rc = runlog_prepare_dir(r->cfg.run_dir);
	rc = dist_agree(&r->d, rc);
	if (!rc && r->cfg.ckpt_scope == CKPT_SCOPE_NODE && r->d.local_rank == 0)
		rc = runlog_prepare_dir(r->cfg.run_dir);
	return rc;
}

/* The length of the run in steps, and the learning rate a resumed run starts with. */
static void plan_steps(run *r)
{
	size_t B = (size_t)r->cfg.global_batch;
	r->steps_per_epoch = (long)((r->train.count + B - 1) / B);
	r->total_steps = r->steps_per_epoch * r->cfg.epochs;
	optim_apply_warmup_epochs(&r->cfg.optim, r->steps_per_epoch);
	if (r->cfg.max_steps > 0 && r->cfg.max_steps < r->total_steps)
		r->total_steps = r->cfg.max_steps;
	r->last_lr = optim_lr_at(&r->cfg.optim, r->optim_step > 0 ? r->optim_step : 1, r->total_steps);
}

/* Collective: the weights each command starts from. */
static int open_weights(run *r)
{
	if (r->kind == RUN_TRAIN)
		return run_resume(r);
	if (r->kind == RUN_EVAL)
		return run_load_weights(r, r->args->ckpt);
	return run_seed_weights(r);
}

int run_open(run *r, run_kind kind, int *argc, char ***argv, const run_args *a)
{
	memset(r, 0, sizeof *r);
	r->kind = kind;
	r->args = a;
	r->perm_epoch = -1;
	r->sample_trace_fd = -1;
	int rc = open_config(r, a);
	if (!rc)
		rc = open_world(r, argc, argv, a);
	if (rc)
		return rc;
	rc = open_backend(r);
	if (!rc && kind == RUN_TRAIN)
		rc = open_run_dir(r);
	rc = run_load_data(r, rc); /* every rank: it contains the agreement */
	if (!rc)
		rc = dist_agree(&r->d, run_alloc_state(r));
	if (!rc)
		rc = dist_agree(&r->d, run_place_data(r));
	if (!rc)
		rc = open_weights(r);
	if (!rc)
		plan_steps(r);
	return rc;
}

void run_close(run *r)
{
	if (r->sample_trace_fd >= 0)
		close(r->sample_trace_fd);
	run_free_data(r);
	run_free_state(r);
	if (r->be && !(r->be->caps & BACKEND_CAP_HOST_MEMORY)) {
		if (r->train_images)
			r->be->release(r->train_images);
		if (r->test_images)
			r->be->release(r->test_images);
	}
	dataset_free(&r->train);
	dataset_free(&r->test);
	if (r->dist_up)
		dist_finalize(&r->d);
	r->dist_up = false;
}
