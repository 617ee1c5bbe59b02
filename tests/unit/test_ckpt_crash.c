/*
 * test_ckpt_crash.c - a checkpoint on disk is either whole or absent
 * (DESIGN.md invariant 4), wherever the writer dies.
 *
 * Each trial forks a child that writes checkpoints of a 2.2 MB model with one
 * optimizer state (a 4.3 MB file) in a loop, step 1, 2, 3 ..., pruning to the
 * newest two after each, and kills it with SIGKILL after a delay drawn from a
 * fixed seed (0 to 200 ms), so the kill lands before the first write, inside
 * HDF5's work, inside the file write, between fsync and rename, inside the
 * pruning. Whatever the moment, these must hold:
 *   - every file named ckpt-*.h5 reads back valid with the content of its step;
 *   - they are consecutive steps, at most three (two kept plus one written and
 *     not yet pruned);
 *   - ckpt_find_newest returns the highest of them (EXIT_NOINPUT if none);
 *   - ckpt_prune afterwards removes the dead .tmp and keeps the newest.
 * No assertion depends on where the kill landed; the counts printed at the end
 * only show how the kills were spread.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ckpt.h"
#include "contract.h"

#define TRIALS 24
#define MAX_DELAY_US 200000
#define MAX_STEPS 100000

static void add_tensor(model *m, const char *name, int ndim, const int *dims)
{
	tensor_view *t = &m->tensors[m->n_tensors++];
	snprintf(t->name, sizeof t->name, "%s", name);
	t->ndim = ndim;
	t->numel = 1;
	for (int d = 0; d < ndim; d++) {
		t->dims[d] = dims[d];
		t->numel *= (size_t)dims[d];
	}
	t->offset = m->n_params;
	m->n_params += t->numel;
}

static model *crash_model(void)
{
	model *m = calloc(1, sizeof *m);
	assert_non_null(m);
	add_tensor(m, "conv1.weight", 4, (const int[]){ 64, 32, 3, 3 });
	add_tensor(m, "conv1.bias", 1, (const int[]){ 64 });
	add_tensor(m, "fc1.weight", 2, (const int[]){ 256, 2048 });
	add_tensor(m, "fc1.bias", 1, (const int[]){ 256 });
	m->hash = 0xc4a5c4a5c4a5c4a5ull;
	return m;
}

/* The content of buffer k at a step: every value depends on both. */
static void fill(float *x, size_t n, int k, long step)
{
	uint32_t key = (uint32_t)step * 40503u + (uint32_t)k * 977u;
	for (size_t i = 0; i < n; i++)
		x[i] = (float)(((uint32_t)i * 2654435761u) ^ key) / 65536.0f;
}

static bool holds_step(const float *x, size_t n, int k, long step, float *scratch)
{
	fill(scratch, n, k, step);
	return memcmp(x, scratch, n * sizeof(float)) == 0;
}

static void meta_for(ckpt_meta *mt, const model *m, long step)
{
	*mt = (ckpt_meta){ .step = step, .epoch = step / 100, .sample_in_epoch = (step % 100) * 64, .global_batch = 64,
			   .world_size = 1, .model_hash = m->hash, .optimizer = "sgd", .lr = 0.01f, .optim_step = step,
			   .config_text = "[train]\noptimizer = sgd\n" };
}

/* The child: write and prune until killed. */
static void writer_loop(const char *dir, const model *m)
{
	float *p = malloc(m->n_params * sizeof(float)), *s = malloc(m->n_params * sizeof(float));
	if (!p || !s)
		_exit(4);
	ckpt_buffers b = { .params = p, .n_states = 1, .state_names = { "momentum_buffer" }, .states = { s } };
	for (long step = 1; step <= MAX_STEPS; step++) {
		char path[512];
		ckpt_meta mt;
		fill(p, m->n_params, 0, step);
		fill(s, m->n_params, 1, step);
		meta_for(&mt, m, step);
		ckpt_path(dir, step, path, sizeof path);
		if (ckpt_write(path, m, &mt, &b) != 0)
			_exit(2);
		if (ckpt_prune(dir, 2, false) != 0)
			_exit(3);
	}
	_exit(0);
}

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

typedef struct listing {
	int n_final, n_tmp, n_other;
	long steps[16]; /* of the final files */
} listing;

static void list_dir(const char *dir, listing *l)
{
	memset(l, 0, sizeof *l);
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		long step;
		int used = 0;
		size_t n = strlen(e->d_name);
		if (e->d_name[0] == '.')
			continue;
		if (sscanf(e->d_name, "ckpt-%ld.h5%n", &step, &used) == 1 && (size_t)used == n) {
			assert_true(l->n_final < 16);
			l->steps[l->n_final++] = step;
		} else if (n > 4 && strcmp(e->d_name + n - 4, ".tmp") == 0) {
			l->n_tmp++;
		} else {
			l->n_other++;
		}
	}
	closedir(d);
}

static void rm_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL) {
		char p[600];
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(dir);
}

static void test_killed_writer_leaves_only_whole_checkpoints(void **state)
{
	(void)state;
	model *m = crash_model();
	size_t n = m->n_params;
	float *p = malloc(n * sizeof(float)), *s = malloc(n * sizeof(float)), *scratch = malloc(n * sizeof(float));
	assert_true(p && s && scratch);
	ckpt_buffers b = { .params = p, .n_states = 1, .state_names = { "momentum_buffer" }, .states = { s } };
	uint64_t rng = 0x9e3779b97f4a7c15ull;
	int none = 0, mid_write = 0, unpruned = 0, max_files = 0;
	long total_steps = 0;

	for (int trial = 0; trial < TRIALS; trial++) {
		char dir[256];
		snprintf(dir, sizeof dir, "/tmp/test_ckpt_crash.XXXXXX");
		assert_non_null(mkdtemp(dir));
		useconds_t delay = (useconds_t)(rng_next(&rng) % (MAX_DELAY_US + 1));

		fflush(stdout);
		fflush(stderr);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0)
			writer_loop(dir, m);
		usleep(delay);
		assert_int_equal(kill(pid, SIGKILL), 0);
		int status;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
			fail_msg("trial %d: the writer ended by itself (status 0x%x): a write or prune failed", trial, status);

		listing l;
		list_dir(dir, &l);
		assert_int_equal(l.n_other, 0);
		assert_true(l.n_final <= 3);
		long lo = LONG_MAX, hi = -1;
		for (int i = 0; i < l.n_final; i++) {
			char path[512];
			ckpt_meta mt;
			long st = l.steps[i];
			ckpt_path(dir, st, path, sizeof path);
			memset(p, 0, n * sizeof(float));
			memset(s, 0, n * sizeof(float));
			if (ckpt_read(path, m, false, &mt, &b) != 0)
				fail_msg("trial %d (kill after %u us): %s does not read back", trial, (unsigned)delay, path);
			assert_int_equal(mt.step, st);
			assert_int_equal(mt.optim_step, st);
			ckpt_meta_free(&mt);
			assert_true(holds_step(p, n, 0, st, scratch));
			assert_true(holds_step(s, n, 1, st, scratch));
			lo = st < lo ? st : lo;
			hi = st > hi ? st : hi;
		}
		if (l.n_final > 0)
			assert_int_equal(hi - lo + 1, l.n_final); /* consecutive: pruning removes the oldest */

		char found[512];
		long step = -1;
		int rc = ckpt_find_newest(dir, m, &b, found, sizeof found, &step);
		if (l.n_final == 0) {
			assert_int_equal(rc, EXIT_NOINPUT);
		} else {
			assert_int_equal(rc, 0);
			assert_int_equal(step, hi);
			assert_true(holds_step(p, n, 0, hi, scratch));
		}

		assert_int_equal(ckpt_prune(dir, 2, false), 0);
		listing after;
		list_dir(dir, &after);
		assert_int_equal(after.n_tmp, 0);
		assert_int_equal(after.n_final, l.n_final < 2 ? l.n_final : 2);
		if (l.n_final > 0) {
			bool kept_newest = false;
			for (int i = 0; i < after.n_final; i++)
				kept_newest |= after.steps[i] == hi;
			assert_true(kept_newest);
		}

		none += l.n_final == 0;
		mid_write += l.n_tmp > 0;
		unpruned += l.n_final == 3;
		max_files = l.n_final > max_files ? l.n_final : max_files;
		total_steps += hi > 0 ? hi : 0;
		rm_dir(dir);
	}
	print_message("%d trials: %d before the first checkpoint, %d with a .tmp left (killed mid-write), %d killed "
		      "between rename and pruning; %ld checkpoints written in all\n",
		      TRIALS, none, mid_write, unpruned, total_steps);
	free(p);
	free(s);
	free(scratch);
	free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_killed_writer_leaves_only_whole_checkpoints),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
