/*
 * data_shared.c - one copy of a loaded data set per node (data.h): the first
 * rank of a node copies it into a POSIX shared-memory object, the others map
 * that object read-only instead of reading the files again, and the object's
 * name is unlinked as soon as every rank has it mapped (the memory lives as
 * long as a mapping does). Space is reserved with posix_fallocate before any
 * byte is written, so a full /dev/shm is an error here, never a SIGBUS later.
 *
 * Names carry the creating process's pid, "/spottrain-p<PID>-...": an object
 * left by a crash between publish and unlink (a rank died in start-up) is
 * found by the next publisher on the node, whose sweep removes every
 * spottrain object of this user whose creator is gone. A pid reused since
 * keeps its object (never a live one removed; at worst one left over).
 *
 * Object layout: a 64-byte header (magic, count, channels, rows, cols,
 * max_label, total size), the labels, then the images at offset 64 + count
 * rounded up to 64 bytes.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "data.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define SHARE_MAGIC UINT64_C(0x31415053544f4453) /* "SDOTSPA1" */
#define SHARE_HEADER 64

typedef struct share_header {
	uint64_t magic, count, channels, rows, cols, max_label, bytes;
} share_header;

/* Offset of the images and total size of a data set's object. */
static size_t images_at(const dataset *ds)
{
	return (SHARE_HEADER + ds->count + 63) / 64 * 64;
}

static size_t object_bytes(const dataset *ds)
{
	return images_at(ds) + ds->count * (size_t)ds->channels * (size_t)ds->rows * (size_t)ds->cols;
}

int data_share_write_fd(const dataset *ds, int fd)
{
	const size_t bytes = object_bytes(ds);
	int err = posix_fallocate(fd, 0, (off_t)bytes);
	uint8_t *map = err ? MAP_FAILED : mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return err ? err : errno;
	share_header h = {SHARE_MAGIC, ds->count, (uint64_t)ds->channels, (uint64_t)ds->rows, (uint64_t)ds->cols,
			  (uint64_t)ds->max_label, bytes};
	memcpy(map, &h, sizeof h);
	memcpy(map + SHARE_HEADER, ds->labels, ds->count);
	memcpy(map + images_at(ds), ds->images, bytes - images_at(ds));
	munmap(map, bytes);
	return 0;
}

int data_share_map_fd(int fd, dataset *ds)
{
	memset(ds, 0, sizeof *ds);
	struct stat st;
	share_header h;
	uint8_t *map = MAP_FAILED;
	if (fstat(fd, &st) == 0 && (size_t)st.st_size >= SHARE_HEADER)
		map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return -1;
	memcpy(&h, map, sizeof h);
	dataset d = {.count = (size_t)h.count, .channels = (int)h.channels, .rows = (int)h.rows, .cols = (int)h.cols,
		     .max_label = (int)h.max_label, .map = map, .map_bytes = (size_t)st.st_size};
	if (h.magic != SHARE_MAGIC || h.bytes != (uint64_t)st.st_size || h.channels > 4096 || h.rows > 65536 ||
	    h.cols > 65536 || object_bytes(&d) != (size_t)st.st_size) {
		munmap(map, (size_t)st.st_size);
		return -2;
	}
	d.labels = map + SHARE_HEADER;
	d.images = map + images_at(&d);
	*ds = d;
	return 0;
}

int data_share_publish(dataset *ds, const char *name)
{
	int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0) {
		log_warn("%s: cannot create the node's shared copy of the data (%s): each rank keeps its own", name,
			 strerror(errno));
		return -1;
	}
	dataset shared;
	int err = data_share_write_fd(ds, fd);
	if (err || data_share_map_fd(fd, &shared) != 0) {
		close(fd);
		log_warn("%s: cannot hold %zu bytes in shared memory (%s): each rank keeps its own copy", name,
			 object_bytes(ds), strerror(err ? err : errno));
		shm_unlink(name);
		return -1;
	}
	close(fd);
	dataset_free(ds); /* malloc'ed, or a guarded read's mapping (data_guard.c) */
	*ds = shared;
	return 0;
}

int data_share_attach(dataset *ds, const char *name)
{
	memset(ds, 0, sizeof *ds);
	int fd = shm_open(name, O_RDONLY, 0);
	if (fd < 0)
		return -1; /* the node's first rank did not publish: load privately */
	int rc = data_share_map_fd(fd, ds);
	close(fd);
	if (rc == -2)
		log_warn("%s: the node's shared copy of the data is not what it should be; loading privately", name);
	return rc ? -1 : 0;
}

void data_share_unlink(const char *name)
{
	shm_unlink(name);
}

/* The creator's pid in a name "spottrain-p<PID>-..." (no leading slash); 0 when it is not one. */
static long creator_of(const char *name)
{
	static const char prefix[] = "spottrain-p";
	if (strncmp(name, prefix, sizeof prefix - 1) != 0)
		return 0;
	char *end;
	errno = 0;
	long pid = strtol(name + sizeof prefix - 1, &end, 10);
	return errno == 0 && end != name + sizeof prefix - 1 && *end == '-' && pid > 0 ? pid : 0;
}

int data_share_sweep(const char *shm_dir)
{
	DIR *d = opendir(shm_dir ? shm_dir : "/dev/shm");
	if (!d)
		return 0;
	int removed = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		long pid = creator_of(e->d_name);
		struct stat st;
		char name[300];
		if (!pid || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue; /* not ours, or its creator lives (or cannot be asked: EPERM) */
		snprintf(name, sizeof name, "/%s", e->d_name);
		int fd = shm_open(name, O_RDONLY, 0);
		int mine = fd >= 0 && fstat(fd, &st) == 0 && st.st_uid == getuid();
		if (fd >= 0)
			close(fd);
		if (mine && shm_unlink(name) == 0) {
			log_info("%s: removed the shared data copy left by process %ld, which is gone", name, pid);
			removed++;
		}
	}
	closedir(d);
	return removed;
}
