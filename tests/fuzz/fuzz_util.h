/*
 * fuzz_util.h - what the fuzz targets share: a private scratch directory
 * (under /dev/shm when there is one; emptied and removed at exit) and
 * writing an input into a file there, for the readers that take a path.
 * Header-only: each fuzz_<name>.c is one program.
 */
#ifndef SPOTTRAIN_FUZZ_UTIL_H
#define SPOTTRAIN_FUZZ_UTIL_H

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_dir_path[256];

/* Remove every file of the scratch directory, then the directory (atexit). */
static inline void fuzz_dir_remove(void)
{
	DIR *d = opendir(fuzz_dir_path);
	struct dirent *e;
	char p[512];
	while (d && (e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof p, "%s/%s", fuzz_dir_path, e->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(fuzz_dir_path);
}

/* The scratch directory of this process, created on first use; aborts if it cannot be. */
static inline const char *fuzz_dir(void)
{
	if (fuzz_dir_path[0])
		return fuzz_dir_path;
	struct stat st;
	const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
	snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/spottrain-fuzz.XXXXXX", base);
	if (!mkdtemp(fuzz_dir_path)) {
		perror("fuzz: mkdtemp");
		abort();
	}
	atexit(fuzz_dir_remove);
	return fuzz_dir_path;
}

/* The path of name in the scratch directory, into out. */
static inline void fuzz_path(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", fuzz_dir(), name);
}

/* Replace file path with the n bytes at d; aborts when it cannot (the harness is broken then). */
static inline void fuzz_write(const char *path, const void *d, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || (n && write(fd, d, n) != (ssize_t)n) || close(fd) != 0) {
		perror(path);
		abort();
	}
}

/* A copy of d[0..n) with a 0 after it. */
static inline char *fuzz_strndup(const uint8_t *d, size_t n)
{
	char *s = malloc(n + 1);
	if (!s)
		abort();
	memcpy(s, d, n);
	s[n] = 0;
	return s;
}

#endif
