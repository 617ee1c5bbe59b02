/*
 * data_cifar.c - the CIFAR-10 and CIFAR-100 binary versions (data.h).
 *
 * A CIFAR-10 file is a sequence of 3073-byte records: the label (0..9), then
 * 1024 red, 1024 green and 1024 blue bytes of a 32x32 image, rows in order:
 * NCHW already. A CIFAR-100 record has two label bytes, coarse (0..19) then
 * fine (0..99), before the same 3072 pixels. The training split of CIFAR-10 is
 * data_batch_1.bin .. data_batch_5.bin, its test split test_batch.bin;
 * CIFAR-100 has train.bin and test.bin. The files are looked for in the folder
 * given and in the folder the official archive unpacks to.
 *
 * Every file's size is checked to be a whole number of records before
 * anything is allocated, and every label against its range while reading.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "data.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "contract.h"
#include "log.h"

#define CIFAR_SIDE 32
#define CIFAR_PIXELS (3 * CIFAR_SIDE * CIFAR_SIDE)
#define CIFAR_MAX_FILES 5
#define CIFAR_MAX_BYTES (UINT64_C(1) << 31) /* largest pixel payload accepted */
#define CIFAR_PATH_MAX 4096

/* What one variant's files look like. */
typedef struct cifar_kind {
	const char *name;         /* "CIFAR-10" */
	const char *subdir;       /* the folder the official archive unpacks to */
	int label_bytes;          /* 1 or 2 */
	int label_at;             /* which label byte this run uses */
	int classes;              /* labels are 0..classes-1 */
	const char *files[CIFAR_MAX_FILES + 1]; /* NULL-terminated */
} cifar_kind;

/* One file of a split: where it is and how many records it holds. */
typedef struct cifar_file {
	char path[CIFAR_PATH_MAX];
	size_t records;
} cifar_file;

/* The variant and split asked for. */
static cifar_kind kind_of(int cifar100, data_label_kind label, data_split split)
{
	cifar_kind k;
	memset(&k, 0, sizeof k);
	if (cifar100) {
		k = (cifar_kind){"CIFAR-100", "cifar-100-binary", 2, label == DATA_LABEL_COARSE ? 0 : 1,
				 label == DATA_LABEL_COARSE ? 20 : 100, {NULL}};
		k.files[0] = split == DATA_TRAIN ? "train.bin" : "test.bin";
		return k;
	}
	k = (cifar_kind){"CIFAR-10", "cifar-10-batches-bin", 1, 0, 10, {NULL}};
	if (split == DATA_TEST) {
		k.files[0] = "test_batch.bin";
		return k;
	}
	static const char *const batches[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
					      "data_batch_4.bin", "data_batch_5.bin"};
	for (int i = 0; i < CIFAR_MAX_FILES; i++)
		k.files[i] = batches[i];
	return k;
}

/*
 * The folder of k's files: dir itself when it holds the first file, else
 * dir/<archive folder>. Returns 0 with out set, EXIT_NOINPUT naming both.
 */
static int find_folder(const char *dir, const cifar_kind *k, char *out, size_t size)
{
	char p[CIFAR_PATH_MAX + 64];
	struct stat st;
	snprintf(p, sizeof p, "%s/%s", dir, k->files[0]);
	if (stat(p, &st) == 0) {
		snprintf(out, size, "%s", dir);
		return 0;
	}
	int n = snprintf(out, size, "%s/%s", dir, k->subdir);
	snprintf(p, sizeof p, "%s/%s", out, k->files[0]);
	if (n > 0 && (size_t)n < size && stat(p, &st) == 0)
		return 0;
	log_error("no %s file %s in %s or %s/%s (set data.dir to the folder of the .bin files)", k->name,
		  k->files[0], dir, dir, k->subdir);
	return EXIT_NOINPUT;
}

/*
 * Check one file: present, a regular file, a whole number (at least one) of
 * records. Returns 0 with f filled, or an exit code with a message naming the
 * file and the byte offset where the cut record starts.
 */
static int check_file(const char *folder, const char *name, size_t rec, cifar_file *f)
{
	struct stat st;
	int n = snprintf(f->path, sizeof f->path, "%s/%s", folder, name);
	if (n < 0 || (size_t)n >= sizeof f->path) {
		log_error("%s: data path too long", folder);
		return EXIT_NOINPUT;
	}
	if (stat(f->path, &st) != 0) {
		log_error("%s: cannot open: %s", f->path, strerror(errno));
		return EXIT_NOINPUT;
	}
	if (!S_ISREG(st.st_mode)) {
		log_error("%s: is not a regular file", f->path);
		return EXIT_DATAERR;
	}
	uint64_t size = (uint64_t)st.st_size;
	if (size == 0 || size % rec) {
		uint64_t whole = size / rec;
		log_error("%s: %" PRIu64 " bytes are not a whole number of %zu-byte records: record %" PRIu64
			  " at byte offset %" PRIu64 " is cut short after %" PRIu64 " bytes (truncated or not a CIFAR file)",
			  f->path, size, rec, whole, whole * rec, size - whole * rec);
		return EXIT_DATAERR;
	}
	f->records = (size_t)(size / rec);
	return 0;
}

/*
 * Read f's records into images/labels (room for f->records each), checking
 * every label. Returns 0 or an exit code naming the file, record and offset.
 */
static int read_file(const cifar_file *f, const cifar_kind *k, uint8_t *images, uint8_t *labels)
{
	FILE *fp = fopen(f->path, "rb");
	if (!fp) {
		log_error("%s: cannot open: %s", f->path, strerror(errno));
		return EXIT_NOINPUT;
	}
	int rc = 0;
	uint8_t head[2];
	for (size_t i = 0; i < f->records && !rc; i++) {
		uint64_t off = (uint64_t)i * (uint64_t)(k->label_bytes + CIFAR_PIXELS);
		if (fread(head, 1, (size_t)k->label_bytes, fp) != (size_t)k->label_bytes ||
		    fread(images + i * CIFAR_PIXELS, 1, CIFAR_PIXELS, fp) != CIFAR_PIXELS) {
			log_error("%s: read failed in record %zu (byte offset %" PRIu64 ")%s%s", f->path, i, off,
				  ferror(fp) ? ": " : ": file shrank while being read",
				  ferror(fp) ? strerror(errno) : "");
			rc = ferror(fp) ? EXIT_IOERR : EXIT_DATAERR;
			break;
		}
		uint8_t l = head[k->label_at];
		if (l >= k->classes) {
			log_error("%s: record %zu (byte offset %" PRIu64 "): %s label %u is outside 0..%d", f->path, i,
				  off + (uint64_t)k->label_at, k->label_bytes == 2 ? (k->label_at ? "fine" : "coarse") : "the",
				  l, k->classes - 1);
			rc = EXIT_DATAERR;
		}
		labels[i] = l;
	}
	fclose(fp);
	return rc;
}

int cifar_load(const char *dir, int cifar100, data_label_kind label, data_split split, dataset *out)
{
	if (!dir || !out) {
		log_error("cifar_load: bad arguments");
		return EXIT_SOFTWARE;
	}
	memset(out, 0, sizeof *out);
	cifar_kind k = kind_of(cifar100, label, split);
	size_t rec = (size_t)k.label_bytes + CIFAR_PIXELS;
	char folder[CIFAR_PATH_MAX];
	cifar_file files[CIFAR_MAX_FILES];
	int nf = 0, rc = find_folder(dir, &k, folder, sizeof folder);
	uint64_t total = 0;
	for (; !rc && k.files[nf]; nf++) {
		rc = check_file(folder, k.files[nf], rec, &files[nf]);
		total += rc ? 0 : files[nf].records;
	}
	if (rc)
		return rc;
	if (total * CIFAR_PIXELS > CIFAR_MAX_BYTES) {
		log_error("%s: %" PRIu64 " images are more than the limit of %" PRIu64 " bytes", folder, total,
			  CIFAR_MAX_BYTES);
		return EXIT_DATAERR;
	}
	uint8_t *images = malloc((size_t)total * CIFAR_PIXELS), *labels = malloc((size_t)total);
	if (!images || !labels) {
		log_error("%s: out of memory for %" PRIu64 " images", folder, total);
		rc = EXIT_OSERR;
	}
	size_t at = 0;
	for (int i = 0; i < nf && !rc; i++) {
		rc = read_file(&files[i], &k, images + at * CIFAR_PIXELS, labels + at);
		at += files[i].records;
	}
	if (rc) {
		free(images);
		free(labels);
		return rc;
	}
	*out = (dataset){.count = (size_t)total, .channels = 3, .rows = CIFAR_SIDE, .cols = CIFAR_SIDE,
			 .images = images, .labels = labels, .max_label = data_max_label(labels, total)};
	return 0;
}
