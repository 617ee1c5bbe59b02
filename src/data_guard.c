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
 * within a bound, is exit 65 naming the file: the worker never crashes or hangs on it
 * (guard.c: the fork, the bound and the classification, shared with the checkpoint reads and
 * the streamed sets' reader).
 * The set is read once, by the child; the parent's memory holds it once. SPOTTRAIN_H5_GUARD=0
 * reads in the worker itself (the fuzz targets do, to fuzz HDF5 in-process; debuggers).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "contract.h"
#include "data.h"
#include "guard.h"
#include "log.h"

typedef struct load_job {
	const char *path;
	data_split split;
	int fd; /* the memory file the set goes into */
} load_job;

/* The child: read, hand over. */
static int load_child(void *arg)
{
	load_job *j = arg;
	dataset d;
	int rc = h5set_load(j->path, j->split, &d);
	if (rc == 0 && data_share_write_fd(&d, j->fd) != 0)
		rc = EXIT_OSERR;
	return rc;
}

int h5set_load_guarded(const char *path, data_split split, dataset *out)
{
	const char *what = split == DATA_TRAIN ? "train" : "test";
	memset(out, 0, sizeof *out);
	if (!guard_enabled())
		return h5set_load(path, split, out);
	load_job j = {path, split, memfd_create("spottrain-h5set", MFD_CLOEXEC)};
	if (j.fd < 0) {
		log_warn("%s: no memory file for a guarded read (%s): reading it in this process", path,
			 strerror(errno));
		return h5set_load(path, split, out);
	}
	struct stat st;
	guard_end end;
	int rc = guard_run(load_child, &j, guard_bound_s(stat(path, &st) == 0 ? (uint64_t)st.st_size : 0), &end);
	if (rc < 0) {
		log_warn("%s: cannot fork a guarded read (%s): reading it in this process", path, strerror(errno));
		close(j.fd);
		return h5set_load(path, split, out);
	}
	if (end.broken)
		log_error("%s: reading the %s split %s inside HDF5: the file is damaged, or not an image set of "
			  "README's layout", path, what, end.how);
	if (rc != 0) {
		close(j.fd);
		return rc; /* broken: 65; else a documented code, and the child said what and where */
	}
	int m = data_share_map_fd(j.fd, out);
	close(j.fd);
	if (m != 0) {
		log_error("%s: the guarded read of the %s split handed over no valid set", path, what);
		return EXIT_SOFTWARE;
	}
	return 0;
}

typedef struct probe_job {
	const char *path;
	data_split split;
	uint64_t *bytes; /* shared with the parent */
} probe_job;

static int probe_child(void *arg)
{
	probe_job *j = arg;
	return h5set_probe(j->path, j->split, j->bytes);
}

/* The header read that decides whether a split streams opens the split with HDF5 as a load
 * does, and crashes on the same files: it is guarded the same way. */
int h5set_probe_guarded(const char *path, data_split split, uint64_t *bytes)
{
	*bytes = 0;
	uint64_t *shared = guard_enabled() ? guard_shared(sizeof *shared) : NULL;
	if (!shared)
		return h5set_probe(path, split, bytes);
	struct stat st;
	guard_end end;
	probe_job j = {path, split, shared};
	int rc = guard_run(probe_child, &j, guard_bound_s(stat(path, &st) == 0 ? (uint64_t)st.st_size : 0), &end);
	if (rc < 0) {
		log_warn("%s: cannot fork a guarded read (%s): reading it in this process", path, strerror(errno));
		guard_shared_free(shared, sizeof *shared);
		return h5set_probe(path, split, bytes);
	}
	if (end.broken)
		log_error("%s: opening the %s split %s inside HDF5: the file is damaged, or not an image set of "
			  "README's layout", path, split == DATA_TRAIN ? "train" : "test", end.how);
	if (rc == 0)
		*bytes = *shared;
	guard_shared_free(shared, sizeof *shared);
	return rc;
}
