/*
 * data_prefetch.h - the next step's network inputs made by a background
 * thread while the current step computes (data.prefetch).
 *
 * Two slots: consumers read the slot made for the current step while the
 * worker fills the other for the next. A step's first shard fill calls
 * prefetch_begin_step (the others find it done), which waits for the worker's
 * job, makes that slot current when it was made for this step, and queues
 * the next job. A shard fill then takes its rows from the current slot when
 * the slot holds exactly those samples (same epoch and dataset indices), and
 * otherwise makes them itself: a wrong guess costs time, never a bit.
 * Memory: 2 slots of `cap` samples.
 */
#ifndef SPOTTRAIN_DATA_PREFETCH_H
#define SPOTTRAIN_DATA_PREFETCH_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Make the inputs of n samples (n * pixels floats at out), as the shard fill would: the
 * whole window of a step in one call, so a streamed set reads each chunk of it once. */
typedef void (*prefetch_make_fn)(void *ctx, const uint32_t *samples, int n, uint32_t epoch, float *out);

typedef struct prefetch_slot {
	long key;            /* the step it was made for (-1: none) */
	uint32_t epoch;
	long p0;             /* first step position it holds */
	int n;               /* samples held */
	uint32_t *samples;   /* their dataset indices */
	float *data;         /* n * pixels */
} prefetch_slot;

typedef struct prefetcher {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool started, stop, busy;  /* busy: slot[job] is queued or being made */
	int cap;                   /* samples per slot */
	size_t pixels;
	prefetch_slot slot[2];
	int cur, job;              /* slot for the current step (-1: none), slot of the worker */
	long cur_key;              /* the step prefetch_begin_step last saw */
	prefetch_make_fn make;
	void *ctx;
	double worker_s;           /* seconds the worker spent making inputs */
	_Atomic long hits, misses; /* shard fills served from a slot, and made by the filler */
} prefetcher;

/* Start the worker. Returns 0 or an exit code (memory, thread) with a message. */
int prefetch_init(prefetcher *p, int cap, size_t pixels, prefetch_make_fn make, void *ctx);
/* Stop and join the worker (waits for its job), free the slots. Safe on a zeroed prefetcher. */
void prefetch_free(prefetcher *p);

/*
 * Step `key` begins (idempotent per key, thread-safe): wait for the queued job,
 * make it current if it was for this step, then queue n samples (next_samples,
 * at positions p0.. of step next_key in epoch next_epoch; n = 0: queue nothing).
 */
void prefetch_begin_step(prefetcher *p, long key, long next_key, uint32_t next_epoch, long p0,
			 const uint32_t *next_samples, int n);

/* Copy the inputs of positions [first, first+n) into out when the current slot holds exactly
 * these samples of this epoch; false (nothing written) otherwise. */
bool prefetch_take(prefetcher *p, uint32_t epoch, long first, int n, const uint32_t *samples, float *out);

#endif
