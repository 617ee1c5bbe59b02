/*
 * data_test_util.h - what the data reader tests share: a fresh temporary
 * folder per test and a capture of stderr, so a test can check that a refusal
 * names the file, dataset and position. Header-only (static functions) because
 * every tests/unit/test_*.c is its own program.
 */
#ifndef SPOTTRAIN_DATA_TEST_UTIL_H
#define SPOTTRAIN_DATA_TEST_UTIL_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct dtu {
	char dir[512];      /* mkdtemp() folder, removed by dtu_teardown */
	char path[1024];    /* scratch path inside dir */
	char err[8192];     /* what the last capture saw on stderr */
	int saved_fd;       /* fd 2 while capturing, else -1 */
} dtu;

/* Remove dir and everything below it. */
static inline void dtu_remove_tree(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char p[4096];
		struct stat st;
		int n = snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		if (n < 0 || (size_t)n >= sizeof p)
			continue;
		if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
			dtu_remove_tree(p);
		else
			unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static inline int dtu_setup(void **state)
{
	dtu *f = calloc(1, sizeof *f);
	const char *base = getenv("TMPDIR");
	if (!f)
		return -1;
	snprintf(f->dir, sizeof f->dir, "%s/test_data_x.XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	f->saved_fd = -1;
	*state = f;
	return 0;
}

static inline int dtu_teardown(void **state)
{
	dtu *f = *state;
	dtu_remove_tree(f->dir);
	free(f);
	return 0;
}

/* dir/name in the scratch path (valid until the next call). */
static inline const char *dtu_path(dtu *f, const char *name)
{
	snprintf(f->path, sizeof f->path, "%s/%s", f->dir, name);
	return f->path;
}

/* Write n bytes to dir/name. Returns 0 on success. */
static inline int dtu_write(dtu *f, const char *name, const void *bytes, size_t n)
{
	FILE *fp = fopen(dtu_path(f, name), "wb");
	if (!fp)
		return -1;
	size_t w = fwrite(bytes, 1, n, fp);
	return fclose(fp) == 0 && w == n ? 0 : -1;
}

/* Send stderr to a file until dtu_capture_end. */
static inline void dtu_capture_begin(dtu *f)
{
	char p[1100];
	fflush(stderr);
	f->saved_fd = dup(2);
	snprintf(p, sizeof p, "%s/.stderr", f->dir);
	int fd = open(p, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	if (fd >= 0) {
		dup2(fd, 2);
		close(fd);
	}
}

/* Restore stderr; f->err holds what was written (echoed, marked as expected). */
static inline void dtu_capture_end(dtu *f)
{
	char p[1100];
	fflush(stderr);
	dup2(f->saved_fd, 2);
	close(f->saved_fd);
	f->saved_fd = -1;
	snprintf(p, sizeof p, "%s/.stderr", f->dir);
	FILE *fp = fopen(p, "rb");
	size_t n = fp ? fread(f->err, 1, sizeof f->err - 1, fp) : 0;
	f->err[n] = '\0';
	if (fp)
		fclose(fp);
	unlink(p);
	fprintf(stderr, "  (expected) %s", f->err);
}

#endif
