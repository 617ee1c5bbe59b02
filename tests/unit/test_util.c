/*
 * test_util.c - src/common/fsutil.c, the file-system steps the worker and the
 * launcher share: fs_mkdir_p, fs_fsync_dir, fs_write_atomic, fs_end_torn_line, with their
 * failure paths (a path component that is a file, a directory that cannot be
 * written, a missing directory). A full volume (ENOSPC) is it.it_volume_full.
 * An unwritable directory: a chmod 0555 one, or, as root (who may write
 * anyway), /sys; skipped when neither refuses.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fsutil.h"

typedef struct fixture {
	char dir[64];
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/test_util.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	char cmd[300];
	snprintf(cmd, sizeof cmd, "chmod -R u+w %s; rm -rf %s", f->dir, f->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", f->dir);
	free(f);
	return 0;
}

static void in(const fixture *f, const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", f->dir, name);
}

static void put(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	assert_int_equal(fclose(fp), 0);
}

static char *get(const char *path)
{
	static char buf[256];
	FILE *fp = fopen(path, "r");
	if (!fp)
		return NULL;
	size_t n = fread(buf, 1, sizeof buf - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	return buf;
}

static bool is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A directory in which creating files fails, or NULL. */
static const char *unwritable_dir(const fixture *f, char *buf, size_t len)
{
	in(f, "ro", buf, len);
	if (mkdir(buf, 0755) != 0 || chmod(buf, 0555) != 0)
		return NULL;
	if (access(buf, W_OK) != 0)
		return buf;
	return is_dir("/sys") && access("/sys", W_OK) != 0 ? "/sys" : NULL;
}

static void test_mkdir_p_creates_every_level_and_is_idempotent(void **state)
{
	fixture *f = *state;
	char p[512], why[512];
	in(f, "a/b/c", p, sizeof p);
	assert_int_equal(fs_mkdir_p(p, why, sizeof why), 0);
	assert_true(is_dir(p));
	assert_int_equal(fs_mkdir_p(p, why, sizeof why), 0);
	in(f, "a/b/d/", p, sizeof p); /* a trailing slash */
	assert_int_equal(fs_mkdir_p(p, NULL, 0), 0);
	assert_true(is_dir(p));
	assert_int_equal(fs_mkdir_p("", why, sizeof why), EINVAL);
}

static void test_mkdir_p_through_a_file_is_enotdir(void **state)
{
	fixture *f = *state;
	char file[512], p[600], why[1024];
	in(f, "plain", file, sizeof file);
	put(file, "x");
	snprintf(p, sizeof p, "%s/sub/dir", file);
	assert_int_equal(fs_mkdir_p(p, why, sizeof why), ENOTDIR);
	assert_non_null(strstr(why, file)); /* names the component */
	assert_int_equal(fs_mkdir_p(file, why, sizeof why), ENOTDIR); /* the path itself is a file */
	assert_non_null(strstr(why, "not a directory"));
}

static void test_mkdir_p_in_an_unwritable_dir_fails(void **state)
{
	fixture *f = *state;
	char buf[512], p[600], why[1024];
	const char *ro = unwritable_dir(f, buf, sizeof buf);
	if (!ro)
		skip();
	snprintf(p, sizeof p, "%s/spottrain-test/x", ro);
	int e = fs_mkdir_p(p, why, sizeof why);
	assert_true(e == EACCES || e == EPERM || e == EROFS);
	assert_non_null(strstr(why, "create directory"));
}

static void test_fsync_dir_checks_its_result(void **state)
{
	fixture *f = *state;
	char p[512], why[1024];
	assert_int_equal(fs_fsync_dir(f->dir, why, sizeof why), 0);
	in(f, "missing", p, sizeof p);
	assert_int_equal(fs_fsync_dir(p, why, sizeof why), ENOENT);
	assert_non_null(strstr(why, p));
	in(f, "plain", p, sizeof p);
	put(p, "x");
	assert_int_equal(fs_fsync_dir(p, why, sizeof why), ENOTDIR);
	assert_int_equal(fs_fsync_parent(p, why, sizeof why), 0);
	in(f, "missing/file", p, sizeof p);
	assert_int_equal(fs_fsync_parent(p, why, sizeof why), ENOENT);
}

static void test_write_atomic_writes_and_replaces(void **state)
{
	fixture *f = *state;
	char p[512], tmp[600], why[1024];
	in(f, "state.json", p, sizeof p);
	snprintf(tmp, sizeof tmp, "%s.tmp", p);
	assert_int_equal(fs_write_atomic(p, "one", 3, why, sizeof why), 0);
	assert_string_equal(get(p), "one");
	assert_int_equal(fs_write_atomic(p, "second", 6, why, sizeof why), 0);
	assert_string_equal(get(p), "second");
	assert_int_equal(access(tmp, F_OK), -1);
	assert_int_equal(fs_write_atomic(p, "", 0, why, sizeof why), 0);
	assert_string_equal(get(p), "");
}

/* A line torn by a failed append is ended before the next record; whole lines and empty files are left alone. */
static void test_end_torn_line(void **state)
{
	fixture *f = *state;
	char p[512];
	in(f, "events.jsonl", p, sizeof p);
	int fd = open(p, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(fs_end_torn_line(fd), 0); /* empty */
	assert_int_equal(write(fd, "{\"a\":1}\n{\"b\":", 13), 13);
	assert_int_equal(fs_end_torn_line(fd), 0);
	assert_int_equal(write(fd, "{\"c\":3}\n", 8), 8);
	assert_int_equal(fs_end_torn_line(fd), 0); /* whole: nothing added */
	assert_int_equal(close(fd), 0);
	assert_string_equal(get(p), "{\"a\":1}\n{\"b\":\n{\"c\":3}\n");
	fd = open(p, O_WRONLY | O_APPEND | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(fs_end_torn_line(fd), EBADF); /* it must read the last byte */
	close(fd);
}

static void test_write_atomic_failures_leave_the_old_file(void **state)
{
	fixture *f = *state;
	char file[512], p[600], buf[700], why[1024];
	in(f, "plain", file, sizeof file);
	put(file, "old");
	snprintf(p, sizeof p, "%s/x", file); /* a component is a file */
	assert_int_equal(fs_write_atomic(p, "new", 3, why, sizeof why), ENOTDIR);
	assert_non_null(strstr(why, "create"));
	in(f, "adir", p, sizeof p); /* the target is a directory: the rename fails, the .tmp goes */
	assert_int_equal(mkdir(p, 0755), 0);
	assert_int_equal(fs_write_atomic(p, "new", 3, why, sizeof why), EISDIR);
	assert_non_null(strstr(why, "rename"));
	snprintf(buf, sizeof buf, "%s.tmp", p);
	assert_int_equal(access(buf, F_OK), -1);
	assert_true(is_dir(p));
	const char *ro = unwritable_dir(f, buf, sizeof buf);
	if (!ro)
		skip();
	snprintf(p, sizeof p, "%s/spottrain-test.json", ro);
	int e = fs_write_atomic(p, "new", 3, why, sizeof why);
	assert_true(e == EACCES || e == EPERM || e == EROFS);
	assert_int_equal(access(p, F_OK), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_mkdir_p_creates_every_level_and_is_idempotent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mkdir_p_through_a_file_is_enotdir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mkdir_p_in_an_unwritable_dir_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fsync_dir_checks_its_result, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_atomic_writes_and_replaces, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_atomic_failures_leave_the_old_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_end_torn_line, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
