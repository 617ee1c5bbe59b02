/*
 * data_detect.c - which format the data of a run is in (data.format = auto)
 * and the one entry point that loads a split of any format (data.h).
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "data.h"
#include "data_h5set.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "contract.h"
#include "log.h"

#define DETECT_PATH_MAX 4096

const char *data_format_name(data_format f)
{
	static const char *const names[] = {"auto", "idx", "cifar10", "cifar100", "hdf5"};
	return (unsigned)f < sizeof names / sizeof names[0] ? names[f] : "?";
}

/* True when dir/name (or dir/sub/name, sub not NULL) exists. */
static bool has(const char *dir, const char *sub, const char *name)
{
	char p[DETECT_PATH_MAX];
	struct stat st;
	int n = sub ? snprintf(p, sizeof p, "%s/%s/%s", dir, sub, name) : snprintf(p, sizeof p, "%s/%s", dir, name);
	return n > 0 && (size_t)n < sizeof p && stat(p, &st) == 0;
}

/* True when name ends in .h5 or .hdf5. */
static bool h5_name(const char *name)
{
	size_t n = strlen(name);
	return (n > 3 && !strcmp(name + n - 3, ".h5")) || (n > 5 && !strcmp(name + n - 5, ".hdf5"));
}

/*
 * The HDF5 file of path: path itself when it is not a folder, else the one
 * .h5/.hdf5 file in it. Returns 0 with out set; EXIT_NOINPUT when there is none,
 * EXIT_DATAERR when there are several (naming two), each with a message when log is set.
 */
static int h5_file_of(const char *path, char *out, size_t size, bool log)
{
	struct stat st;
	if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode)) {
		snprintf(out, size, "%s", path);
		return 0;
	}
	DIR *d = opendir(path);
	if (!d) {
		if (log)
			log_error("%s: cannot open: %s", path, strerror(errno));
		return EXIT_NOINPUT;
	}
	int found = 0;
	char first[256] = "";
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (!h5_name(e->d_name))
			continue;
		if (found++ == 0) {
			snprintf(first, sizeof first, "%s", e->d_name);
			snprintf(out, size, "%s/%s", path, e->d_name);
		} else if (log && found == 2) {
			log_error("%s: holds several HDF5 files (%s, %s): set data.dir to the one to use", path, first,
				  e->d_name);
		}
	}
	closedir(d);
	if (found == 0 && log)
		log_error("%s: no .h5 or .hdf5 file in this folder (data.format = hdf5)", path);
	return found == 1 ? 0 : found ? EXIT_DATAERR : EXIT_NOINPUT;
}

int data_detect(const char *path, data_format *out)
{
	struct stat st;
	char h5[DETECT_PATH_MAX];
	if (stat(path, &st) != 0) {
		log_error("%s: cannot open the data: %s (set data.dir or --data-dir)", path, strerror(errno));
		return EXIT_NOINPUT;
	}
	static const char *const idx_names[] = {"train-images-idx3-ubyte.gz", "train-images-idx3-ubyte",
						"t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte",
						"train-images.idx3-ubyte", "t10k-images.idx3-ubyte"};
	*out = DATA_AUTO;
	if (!S_ISDIR(st.st_mode)) {
		*out = DATA_HDF5;
		return 0;
	}
	for (size_t i = 0; i < sizeof idx_names / sizeof idx_names[0] && !*out; i++)
		if (has(path, NULL, idx_names[i]))
			*out = DATA_IDX;
	for (int i = 0; i < 2 && !*out; i++) {
		const char *sub10 = i ? "cifar-10-batches-bin" : NULL, *sub100 = i ? "cifar-100-binary" : NULL;
		if (has(path, sub10, "data_batch_1.bin") || has(path, sub10, "test_batch.bin"))
			*out = DATA_CIFAR10;
		else if (has(path, sub100, "train.bin") || has(path, sub100, "test.bin"))
			*out = DATA_CIFAR100;
	}
	if (!*out && h5_file_of(path, h5, sizeof h5, false) != EXIT_NOINPUT)
		*out = DATA_HDF5;
	if (*out)
		return 0;
	log_error("%s: cannot tell the data format: no IDX (train-images-idx3-ubyte.gz), CIFAR-10 "
		  "(data_batch_1.bin), CIFAR-100 (train.bin) or HDF5 (.h5) files here (set data.format)", path);
	return EXIT_DATAERR;
}

int data_load(const char *path, data_format fmt, data_label_kind label, data_split split, dataset *out)
{
	memset(out, 0, sizeof *out);
	int rc = fmt == DATA_AUTO ? data_detect(path, &fmt) : 0;
	if (rc)
		return rc;
	char h5[DETECT_PATH_MAX];
	switch (fmt) {
	case DATA_IDX:
		return dataset_load(path, split == DATA_TRAIN ? "train" : "t10k", out);
	case DATA_CIFAR10:
	case DATA_CIFAR100:
		return cifar_load(path, fmt == DATA_CIFAR100, label, split, out);
	case DATA_HDF5:
		rc = h5_file_of(path, h5, sizeof h5, true);
		return rc ? rc : h5set_load_guarded(h5, split, out); /* HDF5 is not safe on damaged files */
	default:
		log_error("%s: unknown data format %d", path, (int)fmt);
		return EXIT_SOFTWARE;
	}
}

int data_will_stream(const char *path, data_format fmt, data_split split, const data_stream_opts *o, int *yes)
{
	*yes = 0;
	if (!o || (!o->force && !o->cache_bytes))
		return 0;
	int rc = fmt == DATA_AUTO ? data_detect(path, &fmt) : 0;
	if (rc || fmt != DATA_HDF5)
		return rc; /* the other formats are small: loaded whole */
	char h5[DETECT_PATH_MAX];
	uint64_t bytes = 0;
	rc = h5_file_of(path, h5, sizeof h5, true);
	if (!rc)
		rc = h5set_probe_guarded(h5, split, &bytes); /* HDF5 is not safe on damaged files */
	*yes = !rc && (o->force || bytes > o->cache_bytes);
	return rc;
}

int data_open(const char *path, data_format fmt, data_label_kind label, data_split split,
	      const data_stream_opts *o, dataset *out, int *streamed)
{
	memset(out, 0, sizeof *out);
	int rc = data_will_stream(path, fmt, split, o, streamed);
	if (rc || !*streamed)
		return rc ? rc : data_load(path, fmt, label, split, out);
	char h5[DETECT_PATH_MAX];
	rc = h5_file_of(path, h5, sizeof h5, true);
	return rc ? rc : h5stream_open(h5, split, o->cache_bytes ? o->cache_bytes : DATA_STREAM_DEFAULT_CACHE, out);
}
