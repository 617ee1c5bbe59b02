/*
 * data_guard.c - HDF5 image sets are read in a child process (data.h).
 *
 * A checkpoint is sealed before HDF5 reads it; an image set is the user's file, handed to
 * HDF5 as it is, and HDF5 1.10.8 is not safe on damaged files: fuzzing found NULL reads,
 * over-reads and stalls inside the library itself (tests/fuzz/findings/README.md), which no
 * check of ours can come before. So the load runs in a forked child: it reads the split
 * with h5set_load and writes the checked set into an anonymous memory file (the layout of
 * data_shared.c's node copy), then exits; the parent maps that file. A child killed by a
 * signal, ending with a code that is not one of ours (a sanitizer's report), or not done
 * within a bound, is exit 65 naming the file: the worker never crashes or hangs on it.
 * The child calls no MPI and leaves with _exit (no atexit handlers of MPI or HDF5 run).
 * The set is read once, by the child; the parent's memory holds it once. SPOTTRAIN_H5_GUARD=0
 * reads in the worker itself (the fuzz targets do, to fuzz HDF5 in-process; debuggers).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "contract.h"
#include "data.h"
#include "log.h"

/* Seconds a child may take: generous for a slow volume (2 MB/s) and a loaded machine. */
static double guard_bound_s(const char *path)
{
	struct stat st;
	double mb = stat(path, &st) == 0 ? (double)st.st_size / 1e6 : 0.0;
	return 120.0 + mb / 2.0;
}

static double mono_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int h5set_load_guarded(const char *path, data_split split, dataset *out)
{
	const char *what = split == DATA_TRAIN ? "train" : "test";
	memset(out, 0, sizeof *out);
	const char *off = getenv("SPOTTRAIN_H5_GUARD"); /* "0": in this process (fuzz targets, debuggers) */
	if (off && !strcmp(off, "0"))
		return h5set_load(path, split, out);
	int fd = memfd_create("spottrain-h5set", MFD_CLOEXEC);
	if (fd < 0) {
		log_warn("%s: no memory file for a guarded read (%s): reading it in this process", path,
			 strerror(errno));
		return h5set_load(path, split, out);
	}
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		log_warn("%s: cannot fork a guarded read (%s): reading it in this process", path, strerror(errno));
		close(fd);
		return h5set_load(path, split, out);
	}
	if (pid == 0) { /* the child: read, hand over, leave without atexit handlers */
		dataset d;
		int rc = h5set_load(path, split, &d);
		if (rc == 0 && data_share_write_fd(&d, fd) != 0)
			rc = EXIT_OSERR;
		fflush(stderr);
		_exit(rc);
	}
	const double bound = guard_bound_s(path), t0 = mono_s();
	int status = 0;
	pid_t got;
	while ((got = waitpid(pid, &status, WNOHANG)) == 0 && mono_s() - t0 < bound) {
		struct timespec ms = {0, 20 * 1000 * 1000};
		nanosleep(&ms, NULL);
	}
	if (got == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		close(fd);
		log_error("%s: reading the %s split did not finish within %.0f s: HDF5 stalls on this file "
			  "(damaged, or not an image set of README's layout)",
			  path, what, bound);
		return EXIT_DATAERR;
	}
	if (got < 0) {
		close(fd);
		log_error("%s: waiting for the guarded read failed (%s)", path, strerror(errno));
		return EXIT_OSERR;
	}
	if (WIFSIGNALED(status)) {
		close(fd);
		log_error("%s: HDF5 crashed reading the %s split (signal %d, %s): the file is damaged, or not an "
			  "image set of README's layout",
			  path, what, WTERMSIG(status), strsignal(WTERMSIG(status)));
		return EXIT_DATAERR;
	}
	const int rc = WIFEXITED(status) ? WEXITSTATUS(status) : EXIT_SOFTWARE;
	if (rc != 0) {
		close(fd);
		if (exit_code_find(rc))
			return rc; /* a documented code: the child said what and where */
		log_error("%s: reading the %s split failed inside HDF5 (the reader ended with %d): the file is "
			  "damaged, or not an image set of README's layout",
			  path, what, rc);
		return EXIT_DATAERR;
	}
	int m = data_share_map_fd(fd, out);
	close(fd);
	if (m != 0) {
		log_error("%s: the guarded read of the %s split handed over no valid set", path, what);
		return EXIT_SOFTWARE;
	}
	return 0;
}
