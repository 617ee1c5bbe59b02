/*
 * data_prefetch.c - the background maker of the next step's inputs
 * (data_prefetch.h).
 */
#include "data_prefetch.h"

#include <stdlib.h>
#include <string.h>

#include "contract.h"
#include "log.h"

/* The worker: make each queued job's samples into its slot, then clear busy. */
static void *worker(void *arg)
{
	prefetcher *p = arg;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->busy && !p->stop)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->stop)
			break;
		prefetch_slot *s = &p->slot[p->job];
		pthread_mutex_unlock(&p->mu);
		double t0 = now_mono();
		p->make(p->ctx, s->samples, s->n, s->epoch, s->data);
		double dt = now_mono() - t0;
		pthread_mutex_lock(&p->mu);
		p->worker_s += dt;
		p->busy = false;
		pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

int prefetch_init(prefetcher *p, int cap, size_t pixels, prefetch_make_fn make, void *ctx)
{
	memset(p, 0, sizeof *p);
	p->cap = cap;
	p->pixels = pixels;
	p->make = make;
	p->ctx = ctx;
	p->cur = -1;
	p->cur_key = -1;
	for (int i = 0; i < 2; i++) {
		p->slot[i].key = -1;
		p->slot[i].samples = malloc((size_t)cap * sizeof(uint32_t));
		p->slot[i].data = malloc((size_t)cap * pixels * sizeof(float));
		if (!p->slot[i].samples || !p->slot[i].data) {
			log_error("out of memory for the prefetch buffers (2 x %d samples of %zu floats)", cap, pixels);
			prefetch_free(p);
			return EXIT_OSERR;
		}
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	if (pthread_create(&p->thread, NULL, worker, p) != 0) {
		log_error("cannot start the prefetch thread");
		pthread_mutex_destroy(&p->mu);
		pthread_cond_destroy(&p->cv);
		prefetch_free(p);
		return EXIT_OSERR;
	}
	p->started = true;
	return 0;
}

void prefetch_free(prefetcher *p)
{
	if (p->started) {
		pthread_mutex_lock(&p->mu);
		p->stop = true;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->thread, NULL);
		pthread_mutex_destroy(&p->mu);
		pthread_cond_destroy(&p->cv);
		p->started = false;
	}
	for (int i = 0; i < 2; i++) {
		free(p->slot[i].samples);
		free(p->slot[i].data);
		p->slot[i].samples = NULL;
		p->slot[i].data = NULL;
	}
}

void prefetch_begin_step(prefetcher *p, long key, long next_key, uint32_t next_epoch, long p0,
			 const uint32_t *next_samples, int n)
{
	pthread_mutex_lock(&p->mu);
	if (p->cur_key == key) {
		pthread_mutex_unlock(&p->mu);
		return;
	}
	while (p->busy)
		pthread_cond_wait(&p->cv, &p->mu);
	p->cur_key = key;
	p->cur = p->slot[p->job].key == key ? p->job : -1;
	if (n > 0 && n <= p->cap) {
		int j = p->cur == 0 ? 1 : 0;
		prefetch_slot *s = &p->slot[j];
		s->key = next_key;
		s->epoch = next_epoch;
		s->p0 = p0;
		s->n = n;
		memcpy(s->samples, next_samples, (size_t)n * sizeof *next_samples);
		p->job = j;
		p->busy = true;
		pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
}

bool prefetch_take(prefetcher *p, uint32_t epoch, long first, int n, const uint32_t *samples, float *out)
{
	const prefetch_slot *s = p->cur < 0 ? NULL : &p->slot[p->cur];
	if (!s || s->epoch != epoch || first < s->p0 || first + n > s->p0 + s->n ||
	    memcmp(s->samples + (first - s->p0), samples, (size_t)n * sizeof *samples) != 0) {
		p->misses++;
		return false;
	}
	p->hits++;
	memcpy(out, s->data + (size_t)(first - s->p0) * p->pixels, (size_t)n * p->pixels * sizeof(float));
	return true;
}
