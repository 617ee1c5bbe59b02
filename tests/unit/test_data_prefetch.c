/*
 * test_data_prefetch.c - the prefetcher (data_prefetch.h): a queued step is
 * served exactly (same bits as making the samples directly), only to the
 * step, epoch and samples it was made for; a wrong guess is a miss, never
 * wrong data; many steps in a row with a slow maker stay exact.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data_prefetch.h"

#define PIX 5

/* A maker whose output names the sample and epoch; sleeps a little when ctx says so. */
static void make1(void *ctx, uint32_t sample, uint32_t epoch, float *out)
{
	if (ctx) {
		struct timespec ts = {0, 200000};
		nanosleep(&ts, NULL);
	}
	for (int i = 0; i < PIX; i++)
		out[i] = (float)sample * 10.0f + (float)epoch * 0.5f + (float)i * 0.01f;
}

/* prefetch_make_fn: the whole window at once, as the run's maker gets it. */
static void make(void *ctx, const uint32_t *samples, int n, uint32_t epoch, float *out)
{
	for (int i = 0; i < n; i++)
		make1(ctx, samples[i], epoch, out + (size_t)i * PIX);
}

static void test_serves_the_queued_step(void **state)
{
	(void)state;
	prefetcher p;
	uint32_t next[4] = {7, 3, 9, 1};
	float got[3 * PIX], want[3 * PIX];
	assert_int_equal(prefetch_init(&p, 8, PIX, make, NULL), 0);
	prefetch_begin_step(&p, 1, 2, 0, 4, next, 4); /* step 1 begins: queue step 2, positions 4..7 */
	assert_false(prefetch_take(&p, 0, 4, 1, next, got)); /* nothing made for step 1 */
	prefetch_begin_step(&p, 2, 3, 0, 0, NULL, 0);
	prefetch_begin_step(&p, 2, 3, 0, 0, NULL, 0); /* idempotent: other threads of the step */
	assert_true(prefetch_take(&p, 0, 5, 3, next + 1, got));
	for (int i = 0; i < 3; i++)
		make1(NULL, next[1 + i], 0, want + i * PIX);
	assert_memory_equal(got, want, sizeof got);
	uint32_t other[2] = {3, 8};
	assert_false(prefetch_take(&p, 0, 5, 2, other, got)); /* other samples */
	assert_false(prefetch_take(&p, 1, 5, 2, next + 1, got)); /* other epoch */
	assert_false(prefetch_take(&p, 0, 6, 3, next + 2, got)); /* beyond the slot */
	assert_false(prefetch_take(&p, 0, 3, 1, next, got)); /* before the slot */
	prefetch_begin_step(&p, 3, 4, 0, 0, NULL, 0); /* step 3: nothing was queued for it */
	assert_false(prefetch_take(&p, 0, 4, 1, next, got));
	assert_true(p.hits == 1);
	prefetch_free(&p);
}

/* Steps in a row, each queuing the next, with a slow maker: every take is a hit and exact. */
static void test_many_steps(void **state)
{
	(void)state;
	prefetcher p;
	int slow = 1;
	uint32_t s[6];
	float got[6 * PIX], want[6 * PIX];
	assert_int_equal(prefetch_init(&p, 6, PIX, make, &slow), 0);
	for (long step = 1; step <= 40; step++) {
		uint32_t nx[6];
		for (int i = 0; i < 6; i++) {
			s[i] = (uint32_t)(step * 6 + i);
			nx[i] = (uint32_t)((step + 1) * 6 + i);
		}
		prefetch_begin_step(&p, step, step + 1, (uint32_t)((step + 1) / 10), 0, nx, 6);
		if (step == 1)
			continue;
		assert_true(prefetch_take(&p, (uint32_t)(step / 10), 0, 6, s, got));
		for (int i = 0; i < 6; i++)
			make1(NULL, s[i], (uint32_t)(step / 10), want + i * PIX);
		assert_memory_equal(got, want, sizeof got);
	}
	assert_true(p.hits == 39);
	prefetch_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_serves_the_queued_step),
		cmocka_unit_test(test_many_steps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
