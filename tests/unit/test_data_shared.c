/*
 * test_data_shared.c - one copy per node (data_shared.c): a published set is
 * read back whole by an attach, read-only; an attach to a missing or foreign
 * object fails (the caller then loads privately); unlink removes the name;
 * the sweep removes the objects whose creator process is gone, and only those.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data.h"

/* A malloc'ed set of n images of 3x4x5 with known bytes. */
static dataset make_set(size_t n)
{
	dataset d = {.count = n, .channels = 3, .rows = 4, .cols = 5};
	d.images = malloc(n * 60);
	d.labels = malloc(n);
	assert_non_null(d.images);
	assert_non_null(d.labels);
	for (size_t i = 0; i < n * 60; i++)
		d.images[i] = (uint8_t)(i * 13 + 5);
	for (size_t i = 0; i < n; i++)
		d.labels[i] = (uint8_t)(i % 7);
	d.max_label = 6;
	return d;
}

static void unique_name(char *name, size_t size, const char *what)
{
	snprintf(name, size, "/spottrain-test-%ld-%s", (long)getpid(), what);
}

static void test_publish_attach(void **state)
{
	(void)state;
	char name[96];
	unique_name(name, sizeof name, "ok");
	dataset a = make_set(33), want = make_set(33), b;
	assert_int_equal(data_share_publish(&a, name), 0);
	assert_non_null(a.map);
	assert_int_equal(data_share_attach(&b, name), 0);
	data_share_unlink(name);
	assert_int_equal(b.count, 33);
	assert_int_equal(b.channels, 3);
	assert_int_equal(b.rows, 4);
	assert_int_equal(b.cols, 5);
	assert_int_equal(b.max_label, 6);
	assert_memory_equal(a.images, want.images, 33 * 60);
	assert_memory_equal(b.images, want.images, 33 * 60);
	assert_memory_equal(b.labels, want.labels, 33);
	dataset c;
	assert_int_equal(data_share_attach(&c, name), -1); /* unlinked: no new attach */
	dataset_free(&a);
	dataset_free(&b);
	dataset_free(&want);
}

static void test_foreign_object(void **state)
{
	(void)state;
	char name[96];
	unique_name(name, sizeof name, "foreign");
	int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4096), 0);
	close(fd);
	dataset d;
	assert_int_equal(data_share_attach(&d, name), -1);
	assert_null(d.images);
	data_share_unlink(name);
	/* publishing over an existing name fails and leaves the private copy */
	dataset a = make_set(2);
	fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(data_share_publish(&a, name), -1);
	assert_null(a.map);
	assert_int_equal(a.images[1], (uint8_t)18);
	data_share_unlink(name);
	dataset_free(&a);
}

/* Create an empty shared object of this name; true when it now exists. */
static int make_object(const char *name)
{
	int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd >= 0)
		close(fd);
	return fd >= 0;
}

static int exists(const char *name)
{
	int fd = shm_open(name, O_RDONLY, 0);
	if (fd >= 0)
		close(fd);
	return fd >= 0;
}

static void test_sweep_removes_only_dead_creators(void **state)
{
	(void)state;
	pid_t child = fork(); /* a pid that is surely gone once reaped */
	assert_true(child >= 0);
	if (child == 0)
		_exit(0);
	assert_int_equal(waitpid(child, NULL, 0), child);
	char dead[96], live[96], other[96];
	snprintf(dead, sizeof dead, "/spottrain-p%ld-test%ld-n0-train", (long)child, (long)getpid());
	snprintf(live, sizeof live, "/spottrain-p%ld-test-n0-train", (long)getpid());
	snprintf(other, sizeof other, "/spottrain-test-%ld-noprefix", (long)getpid()); /* no creator in it */
	assert_true(make_object(dead));
	assert_true(make_object(live));
	assert_true(make_object(other));
	/* removed by this sweep, or by a sweep of another process on this machine that ran first:
	 * the count is this sweep's only, so the test asserts what must hold either way */
	data_share_sweep(NULL);
	assert_false(exists(dead));
	assert_true(exists(live));
	assert_true(exists(other));
	assert_int_equal(data_share_sweep("/nonexistent-shm-dir"), 0);
	data_share_unlink(live);
	data_share_unlink(other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_publish_attach),
		cmocka_unit_test(test_foreign_object),
		cmocka_unit_test(test_sweep_removes_only_dead_creators),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
