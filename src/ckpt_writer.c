/*
 * ckpt_writer.c - the asynchronous checkpoint writer: submit() copies the
 * buffers into a host snapshot allocated once, a background thread writes
 * it with ckpt_write() and prunes; training goes on meanwhile. At most one
 * write is in flight.
 *
 * HDF5 (serial build) is not thread-safe. The design keeps its use to one
 * thread at a time: while a write is in flight only the writer thread calls
 * HDF5, and the trainer calls ckpt_writer_wait() before any synchronous ckpt
 * call (read, find_newest, inspect, a synchronous write). ckpt.c also holds
 * a mutex around every HDF5 use, so a missed wait() costs time, not safety.
 */
#include "ckpt.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "contract.h"
#include "log.h"

struct ckpt_writer {
	const model *m;               /* layout; the caller keeps it alive until destroy */
	int n_states;                 /* state buffers in every submit */
	float *params;                /* snapshot, m->n_params floats */
	float *states[CKPT_MAX_STATES]; /* snapshots, m->n_params floats each */
	float *buffers;               /* snapshot, m->n_buffers floats (NULL if none) */
	char state_names[CKPT_MAX_STATES][64]; /* copies of the submitted names */
	ckpt_meta meta;               /* snapshot; config_text owned (malloc'ed) */
	char path[PATH_MAX];          /* where the pending write goes */
	int keep;                     /* retention after the write (0: no pruning) */
	bool keep_epoch_ends;
	pthread_mutex_t mu;           /* guards the fields below */
	pthread_cond_t cv;            /* signalled when pending or quit changes */
	bool pending;                 /* a snapshot is waiting or being written */
	bool quit;                    /* destroy() asks the thread to end */
	int status;                   /* of the last finished write */
	double write_s;               /* how long the last finished write took (write, fsync, prune) */
	bool unreported;              /* a write finished that ckpt_writer_poll has not reported */
	pthread_t thread;
};

/* Directory part of path ("." if none). */
static void dir_of(const char *path, char *out, size_t len)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		snprintf(out, len, ".");
	else if (slash == path)
		snprintf(out, len, "/");
	else
		snprintf(out, len, "%.*s", (int)(slash - path), path);
}

static void *writer_main(void *arg)
{
	ckpt_writer *w = arg;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->pending && !w->quit)
			pthread_cond_wait(&w->cv, &w->mu);
		if (!w->pending)
			break;
		pthread_mutex_unlock(&w->mu);

		/* the snapshot belongs to this thread while pending is set */
		ckpt_buffers b = { .params = w->params, .n_states = w->n_states, .buffers = w->buffers };
		for (int s = 0; s < w->n_states; s++) {
			b.state_names[s] = w->state_names[s];
			b.states[s] = w->states[s];
		}
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		int rc = ckpt_write(w->path, w->m, &w->meta, &b);
		if (rc == 0 && w->keep > 0) {
			char dir[PATH_MAX];
			dir_of(w->path, dir, sizeof dir);
			if (ckpt_prune(dir, w->keep, w->keep_epoch_ends) != 0)
				log_warn("retention after checkpoint %s failed; the checkpoint itself is whole", w->path);
		}
		ckpt_meta_free(&w->meta);
		clock_gettime(CLOCK_MONOTONIC, &t1);

		pthread_mutex_lock(&w->mu);
		w->status = rc;
		w->write_s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
		w->unreported = true;
		w->pending = false;
		pthread_cond_broadcast(&w->cv);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

int ckpt_writer_create(const model *m, int n_states, ckpt_writer **out)
{
	*out = NULL;
	if (!m || m->n_params == 0 || n_states < 0 || n_states > CKPT_MAX_STATES) {
		log_error("cannot create the checkpoint writer: no model or %d optimizer states", n_states);
		return EXIT_SOFTWARE;
	}
	ckpt_writer *w = calloc(1, sizeof *w);
	if (!w)
		goto no_memory;
	w->m = m;
	w->n_states = n_states;
	w->params = malloc(m->n_params * sizeof(float));
	if (!w->params)
		goto free_buffers;
	if (m->n_buffers && !(w->buffers = malloc(m->n_buffers * sizeof(float))))
		goto free_buffers;
	for (int s = 0; s < n_states; s++) {
		w->states[s] = malloc(m->n_params * sizeof(float));
		if (!w->states[s])
			goto free_buffers;
	}
	if (pthread_mutex_init(&w->mu, NULL) != 0)
		goto free_buffers;
	if (pthread_cond_init(&w->cv, NULL) != 0)
		goto destroy_mutex;
	int e = pthread_create(&w->thread, NULL, writer_main, w);
	if (e != 0) {
		log_error("cannot start the checkpoint writer thread: %s", strerror(e));
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->mu);
		for (int s = 0; s < n_states; s++)
			free(w->states[s]);
		free(w->buffers);
		free(w->params);
		free(w);
		return EXIT_OSERR;
	}
	*out = w;
	return 0;
destroy_mutex:
	pthread_mutex_destroy(&w->mu);
free_buffers:
	for (int s = 0; s < n_states; s++)
		free(w->states[s]);
	free(w->buffers);
	free(w->params);
	free(w);
no_memory:
	log_error("cannot create the checkpoint writer: out of memory for %zu-float snapshots", m->n_params);
	return EXIT_OSERR;
}

/* Wait until no write is in flight; w->mu held. */
static void wait_idle(ckpt_writer *w)
{
	while (w->pending)
		pthread_cond_wait(&w->cv, &w->mu);
}

int ckpt_writer_submit(ckpt_writer *w, const char *path, const ckpt_meta *meta, const ckpt_buffers *b, int keep,
		       bool keep_epoch_ends)
{
	if (!w || !path || !meta || !b || !b->params || b->n_states != w->n_states || (w->buffers && !b->buffers) ||
	    strlen(path) >= sizeof w->path) {
		log_error("checkpoint writer: bad submit (%d states, writer made for %d)", b ? b->n_states : -1,
			  w ? w->n_states : -1);
		return EXIT_SOFTWARE;
	}
	for (int s = 0; s < b->n_states; s++)
		if (!b->states[s] || !b->state_names[s] || strlen(b->state_names[s]) >= sizeof w->state_names[s]) {
			log_error("checkpoint writer: optimizer state %d has no usable name or buffer", s);
			return EXIT_SOFTWARE;
		}
	char *config = NULL;
	if (meta->config_text && !(config = strdup(meta->config_text))) {
		log_error("checkpoint writer: out of memory copying the config text");
		return EXIT_OSERR;
	}
	pthread_mutex_lock(&w->mu);
	wait_idle(w);
	size_t bytes = w->m->n_params * sizeof(float);
	memcpy(w->params, b->params, bytes);
	if (w->buffers)
		memcpy(w->buffers, b->buffers, w->m->n_buffers * sizeof(float));
	for (int s = 0; s < b->n_states; s++) {
		memcpy(w->states[s], b->states[s], bytes);
		strcpy(w->state_names[s], b->state_names[s]);
	}
	w->meta = *meta;
	w->meta.config_text = config;
	strcpy(w->path, path);
	w->keep = keep;
	w->keep_epoch_ends = keep_epoch_ends;
	w->pending = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	return 0;
}

int ckpt_writer_wait(ckpt_writer *w)
{
	if (!w)
		return EXIT_SOFTWARE;
	pthread_mutex_lock(&w->mu);
	wait_idle(w);
	int rc = w->status;
	pthread_mutex_unlock(&w->mu);
	return rc;
}

bool ckpt_writer_busy(ckpt_writer *w)
{
	if (!w)
		return false;
	pthread_mutex_lock(&w->mu);
	bool busy = w->pending;
	pthread_mutex_unlock(&w->mu);
	return busy;
}

bool ckpt_writer_poll(ckpt_writer *w, int *status, double *write_s)
{
	if (!w)
		return false;
	pthread_mutex_lock(&w->mu);
	bool done = w->unreported && !w->pending;
	if (done) {
		w->unreported = false;
		*status = w->status;
		*write_s = w->write_s;
	}
	pthread_mutex_unlock(&w->mu);
	return done;
}

void ckpt_writer_destroy(ckpt_writer *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	wait_idle(w);
	w->quit = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	for (int s = 0; s < w->n_states; s++)
		free(w->states[s]);
	free(w->buffers);
	free(w->params);
	free(w);
}
