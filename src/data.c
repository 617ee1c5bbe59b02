/*
 * data.c - MNIST-format IDX datasets, gzip-compressed or raw (data.h).
 *
 * An IDX file is a big-endian header (magic 0x000008NN with NN the number of
 * dimensions, then one uint32 per dimension) followed by the unsigned-byte
 * payload. Everything the header says is checked before memory is allocated
 * for it: raw files must be exactly header + payload bytes long; compressed
 * files are inflated into a buffer that grows with the data actually found
 * (up to the declared size), so a tiny file that declares 2 GiB costs little.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "data.h"

#include "contract.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define IDX_TYPE_UBYTE 0x08u
#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u
#define IDX_MAX_SIDE 4096u                 /* largest rows or cols accepted */
#define IDX_MAX_PAYLOAD (UINT64_C(1) << 31) /* largest payload accepted, bytes */
#define IDX_READ_CHUNK (1u << 30)          /* gzread takes an unsigned, returns an int */
#define IDX_FIRST_ALLOC (UINT64_C(1) << 20) /* first buffer for a compressed payload */
#define IDX_PATH_MAX 4096

/* One open IDX file and what its header says. */
typedef struct idx_file {
	const char *path;   /* as given, for messages */
	gzFile gz;          /* reads gzip and raw files alike */
	bool compressed;    /* false: raw file, read through gz transparently */
	uint64_t file_size; /* bytes on disk */
	uint32_t ndims;     /* dimensions declared by the magic */
	uint32_t dims[3];   /* count, then rows and cols for images */
	uint32_t header;    /* header length in bytes: 4 + 4 * ndims */
	uint64_t payload;   /* payload length in bytes: product of dims */
} idx_file;

/* What one item of a file with this many dimensions is called in messages. */
static const char *item_noun(uint32_t ndims)
{
	return ndims == 3 ? "images" : ndims == 1 ? "labels" : "items";
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * Report why the gz stream of f failed and return the exit code for it:
 * EXIT_IOERR when the OS refused a read, EXIT_DATAERR for a damaged stream.
 */
static int gz_failure(const idx_file *f)
{
	int errnum = Z_OK;
	const char *msg = gzerror(f->gz, &errnum);
	if (errnum == Z_ERRNO) {
		log_error("%s: read failed: %s", f->path, strerror(errno));
		return EXIT_IOERR;
	}
	if (errnum == Z_MEM_ERROR) {
		log_error("%s: out of memory while inflating", f->path);
		return EXIT_OSERR;
	}
	/* gzerror() prefixes "<fd:N>: " for a gzdopen()ed file; the path says more */
	if (strncmp(msg, "<fd:", 4) == 0 && strstr(msg, ": "))
		msg = strstr(msg, ": ") + 2;
	log_error("%s: damaged gzip stream: %s", f->path, msg);
	return EXIT_DATAERR;
}

/* True when the compressed stream of f ended before its gzip trailer. */
static bool gz_cut_short(const idx_file *f)
{
	int errnum = Z_OK;
	gzerror(f->gz, &errnum);
	return f->compressed && errnum == Z_BUF_ERROR;
}

/*
 * Read up to n bytes into buf, stopping only at end of file. *got says how
 * many arrived. Returns 0 (also at an early end of file) or an exit code
 * after a read error, with the message logged.
 */
static int read_upto(idx_file *f, uint8_t *buf, uint64_t n, uint64_t *got)
{
	*got = 0;
	while (*got < n) {
		uint64_t want = n - *got;
		unsigned len = want > IDX_READ_CHUNK ? IDX_READ_CHUNK : (unsigned)want;
		int r = gzread(f->gz, buf + *got, len);
		if (r < 0)
			return gz_failure(f);
		if (r == 0)
			break;
		*got += (uint64_t)r;
	}
	return 0;
}

/*
 * Open path for reading as an IDX file: it must exist and be a regular
 * file. Returns 0 with f->gz open, EXIT_NOINPUT when the file is absent or
 * unreadable, EXIT_DATAERR when something else (a directory) is there.
 */
static int idx_open(idx_file *f, const char *path)
{
	memset(f, 0, sizeof *f);
	f->path = path;
	/* O_NONBLOCK: a FIFO in place of the file must not hang the open;
	 * it has no effect on regular files. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		log_error("%s: cannot open: %s", path, strerror(errno));
		return EXIT_NOINPUT;
	}
	struct stat st;
	int rc = EXIT_DATAERR;
	if (fstat(fd, &st) != 0) {
		log_error("%s: cannot stat: %s", path, strerror(errno));
		rc = EXIT_IOERR;
		goto close_fd;
	}
	if (!S_ISREG(st.st_mode)) {
		log_error("%s: is %s, not an IDX file", path,
			  S_ISDIR(st.st_mode) ? "a directory" : "not a regular file");
		goto close_fd;
	}
	f->file_size = (uint64_t)st.st_size;
	f->gz = gzdopen(fd, "rb"); /* on success gzclose() closes fd */
	if (!f->gz) {
		log_error("%s: out of memory opening the file", path);
		rc = EXIT_OSERR;
		goto close_fd;
	}
	gzbuffer(f->gz, 1u << 17);
	f->compressed = !gzdirect(f->gz);
	return 0;

close_fd:
	close(fd);
	return rc;
}

/*
 * Check the dimensions in f against the limits and compute f->payload.
 * Returns 0 or EXIT_DATAERR with a message.
 */
static int idx_check_dims(idx_file *f)
{
	const char *noun = item_noun(f->ndims);
	if (f->dims[0] == 0) {
		log_error("%s: declares 0 %s", f->path, noun);
		return EXIT_DATAERR;
	}
	uint64_t per_item = 1;
	for (uint32_t i = 1; i < f->ndims; i++) {
		if (f->dims[i] == 0 || f->dims[i] > IDX_MAX_SIDE) {
			log_error("%s: dimension %" PRIu32 " is %" PRIu32
				  ", outside 1..%u (damaged header?)",
				  f->path, i, f->dims[i], IDX_MAX_SIDE);
			return EXIT_DATAERR;
		}
		per_item *= f->dims[i];
	}
	/* count < 2^32 and per_item <= 2^24: the product fits in 64 bits */
	f->payload = (uint64_t)f->dims[0] * per_item;
	if (f->payload > IDX_MAX_PAYLOAD) {
		log_error("%s: declares %" PRIu32 " %s, %" PRIu64
			  " bytes, more than the limit of %" PRIu64 " bytes",
			  f->path, f->dims[0], noun, f->payload, IDX_MAX_PAYLOAD);
		return EXIT_DATAERR;
	}
	return 0;
}

/*
 * Check that a raw file is exactly header + payload bytes long.
 * Returns 0 or EXIT_DATAERR with a message.
 */
static int idx_check_raw_size(const idx_file *f)
{
	uint64_t want = f->header + f->payload;
	if (f->compressed || f->file_size == want)
		return 0;
	if (f->file_size < want)
		log_error("%s: declares %" PRIu32 " %s but ends after %" PRIu64
			  " bytes of payload (%" PRIu64 " expected)",
			  f->path, f->dims[0], item_noun(f->ndims),
			  f->file_size - f->header, f->payload);
	else
		log_error("%s: has %" PRIu64 " bytes after the %" PRIu32
			  " %s it declares (file is %" PRIu64 " bytes, expected %" PRIu64 ")",
			  f->path, f->file_size - want, f->dims[0],
			  item_noun(f->ndims), f->file_size, want);
	return EXIT_DATAERR;
}

/*
 * Read and validate the header of f: magic, number of dimensions, each
 * dimension, total size and, for raw files, the file size. Fills f->dims,
 * f->header and f->payload. Returns 0 or an exit code with a message.
 */
static int idx_read_header(idx_file *f, uint32_t expected_magic)
{
	uint8_t buf[4 + 4 * 3];
	uint64_t got = 0;
	uint32_t want_dims = expected_magic & 0xffu;
	int rc = read_upto(f, buf, 4, &got);
	if (rc)
		return rc;
	if (got < 4) {
		if (got == 0 && f->file_size == 0)
			log_error("%s: is empty, not an IDX file", f->path);
		else
			log_error("%s: ends after %" PRIu64 " bytes, inside the IDX header%s",
				  f->path, got,
				  gz_cut_short(f) ? " (compressed stream cut short)" : "");
		return EXIT_DATAERR;
	}
	uint32_t magic = be32(buf);
	if ((magic & 0xffffff00u) != (IDX_TYPE_UBYTE << 8)) {
		log_error("%s: magic 0x%08" PRIx32 " is not that of an IDX file of "
			  "unsigned bytes (expected 0x%08" PRIx32 ")",
			  f->path, magic, expected_magic);
		return EXIT_DATAERR;
	}
	f->ndims = magic & 0xffu;
	if (f->ndims != want_dims) {
		log_error("%s: magic 0x%08" PRIx32 " declares %" PRIu32
			  " dimensions, expected %" PRIu32 " for a file of %s",
			  f->path, magic, f->ndims, want_dims, item_noun(want_dims));
		return EXIT_DATAERR;
	}
	f->header = 4 + 4 * f->ndims;
	rc = read_upto(f, buf + 4, f->header - 4, &got);
	if (rc)
		return rc;
	if (got < f->header - 4) {
		log_error("%s: ends after %" PRIu64 " bytes, inside the %" PRIu32
			  "-byte IDX header%s", f->path, 4 + got, f->header,
			  gz_cut_short(f) ? " (compressed stream cut short)" : "");
		return EXIT_DATAERR;
	}
	for (uint32_t i = 0; i < f->ndims; i++)
		f->dims[i] = be32(buf + 4 + 4 * i);
	rc = idx_check_dims(f);
	if (rc)
		return rc;
	return idx_check_raw_size(f);
}

/*
 * Check that f holds nothing after its payload and, when compressed, that
 * its gzip stream ended properly (so its checksum was verified).
 * Returns 0 or an exit code with a message.
 */
static int idx_check_end(idx_file *f)
{
	uint8_t extra;
	int r = gzread(f->gz, &extra, 1);
	if (r < 0)
		return gz_failure(f);
	if (r > 0) {
		log_error("%s: holds more data after the %" PRIu32 " %s it declares",
			  f->path, f->dims[0], item_noun(f->ndims));
		return EXIT_DATAERR;
	}
	if (gz_cut_short(f)) {
		log_error("%s: compressed stream cut short after the payload "
			  "(gzip trailer missing, checksum not verified)", f->path);
		return EXIT_DATAERR;
	}
	return 0;
}

/*
 * Read the whole payload of f into a new buffer, growing it with the data
 * that actually arrives, then check that nothing follows. Returns 0 with
 * *data malloc'ed (f->payload bytes), or an exit code with *data NULL.
 */
static int idx_read_payload(idx_file *f, uint8_t **data)
{
	uint8_t *buf = NULL;
	uint64_t have = 0, cap = 0;
	int rc = 0;
	*data = NULL;
	while (have < f->payload) {
		uint64_t next = f->compressed && cap < f->payload / 2
				? (cap ? cap * 2 : IDX_FIRST_ALLOC) : f->payload;
		if (next > f->payload)
			next = f->payload;
		uint8_t *grown = realloc(buf, (size_t)next);
		if (!grown) {
			log_error("%s: out of memory for %" PRIu64 " bytes of %s",
				  f->path, next, item_noun(f->ndims));
			rc = EXIT_OSERR;
			goto free_buf;
		}
		buf = grown;
		cap = next;
		uint64_t got = 0;
		rc = read_upto(f, buf + have, cap - have, &got);
		if (rc)
			goto free_buf;
		have += got;
		if (have < cap) {
			log_error("%s: declares %" PRIu32 " %s but ends after %" PRIu64
				  " bytes of payload (%" PRIu64 " expected)%s",
				  f->path, f->dims[0], item_noun(f->ndims), have, f->payload,
				  gz_cut_short(f) ? "; compressed stream cut short" : "");
			rc = EXIT_DATAERR;
			goto free_buf;
		}
	}
	rc = idx_check_end(f);
	if (rc)
		goto free_buf;
	*data = buf;
	return 0;

free_buf:
	free(buf);
	return rc;
}

int idx_load(const char *path, uint32_t expected_magic, uint32_t dims[3], uint8_t **data)
{
	if (!path || !dims || !data ||
	    (expected_magic != IDX_MAGIC_IMAGES && expected_magic != IDX_MAGIC_LABELS)) {
		log_error("idx_load: bad arguments (magic 0x%08" PRIx32 ")", expected_magic);
		return EXIT_SOFTWARE;
	}
	memset(dims, 0, 3 * sizeof dims[0]);
	*data = NULL;
	idx_file f;
	int rc = idx_open(&f, path);
	if (rc)
		return rc;
	rc = idx_read_header(&f, expected_magic);
	if (rc)
		goto close_file;
	rc = idx_read_payload(&f, data);
	if (rc)
		goto close_file;
	memcpy(dims, f.dims, 3 * sizeof dims[0]);
close_file:
	gzclose(f.gz);
	return rc;
}

/*
 * Find the file of one kind ("images", idx 3, or "labels", idx 1) of split in
 * dir: the first of the four accepted names that exists (whatever it is;
 * idx_load judges it) goes into path. Returns 0, or EXIT_NOINPUT naming the
 * names tried.
 */
static int find_split_file(const char *dir, const char *split, const char *kind,
			   int idx, char *path, size_t size)
{
	static const char *const forms[] = {
		"%s-%s-idx%d-ubyte.gz", "%s-%s-idx%d-ubyte",
		"%s-%s.idx%d-ubyte.gz", "%s-%s.idx%d-ubyte",
	};
	char names[4][256];
	for (int i = 0; i < 4; i++) {
		int n = snprintf(names[i], sizeof names[i], forms[i], split, kind, idx);
		int m = snprintf(path, size, "%s/%s", dir, names[i]);
		if (n < 0 || (size_t)n >= sizeof names[i] || m < 0 || (size_t)m >= size) {
			log_error("%s: data path too long for split \"%s\"", dir, split);
			return EXIT_NOINPUT;
		}
		struct stat st;
		if (stat(path, &st) == 0 || (errno != ENOENT && errno != ENOTDIR))
			return 0;
	}
	log_error("no %s %s file in %s: tried %s, %s, %s, %s "
		  "(set data.dir or --data-dir to the folder of the IDX files)",
		  split, kind, dir, names[0], names[1], names[2], names[3]);
	return EXIT_NOINPUT;
}

int data_max_label(const uint8_t *labels, size_t n)
{
	int max = 0;
	for (size_t i = 0; i < n; i++)
		if (labels[i] > max)
			max = labels[i];
	return max;
}

/* Open path and read its header (magic, dims, raw size); the payload is left unread. */
static int idx_open_header(idx_file *f, const char *path, uint32_t magic)
{
	int rc = idx_open(f, path);
	if (rc)
		return rc;
	if ((rc = idx_read_header(f, magic)))
		gzclose(f->gz);
	return rc;
}

/*
 * Both headers first, then the counts compared, then the payloads: a file that
 * declares millions of images next to a short label file is refused before
 * anything is inflated or allocated for it.
 */
int dataset_load(const char *dir, const char *split, dataset *out)
{
	if (!dir || !split || !out) {
		log_error("dataset_load: bad arguments");
		return EXIT_SOFTWARE;
	}
	memset(out, 0, sizeof *out);
	char img_path[IDX_PATH_MAX], lbl_path[IDX_PATH_MAX];
	idx_file fi, fl;
	uint8_t *images = NULL, *labels = NULL;
	int rc = find_split_file(dir, split, "images", 3, img_path, sizeof img_path);
	if (!rc)
		rc = find_split_file(dir, split, "labels", 1, lbl_path, sizeof lbl_path);
	if (!rc)
		rc = idx_open_header(&fi, img_path, IDX_MAGIC_IMAGES);
	if (rc)
		return rc;
	if ((rc = idx_open_header(&fl, lbl_path, IDX_MAGIC_LABELS)))
		goto close_images;
	if (fi.dims[0] != fl.dims[0]) {
		log_error("%s declares %" PRIu32 " images but %s declares %" PRIu32
			  " labels; they must match", img_path, fi.dims[0], lbl_path, fl.dims[0]);
		rc = EXIT_DATAERR;
		goto close_labels;
	}
	if ((rc = idx_read_payload(&fl, &labels)) || (rc = idx_read_payload(&fi, &images)))
		goto close_labels;
	out->count = fi.dims[0];
	out->channels = 1;
	out->rows = (int)fi.dims[1];
	out->cols = (int)fi.dims[2];
	out->images = images;
	out->labels = labels;
	out->max_label = data_max_label(labels, out->count);
	images = labels = NULL;
close_labels:
	gzclose(fl.gz);
	free(labels);
close_images:
	gzclose(fi.gz);
	free(images);
	return rc;
}

size_t dataset_image_bytes(const dataset *ds)
{
	return (size_t)ds->channels * (size_t)ds->rows * (size_t)ds->cols;
}

int dataset_gather(const dataset *ds, const uint32_t *idx, int n, uint8_t *dst)
{
	if (ds->stream)
		return h5stream_gather(ds->stream, idx, n, dst);
	size_t px = dataset_image_bytes(ds);
	for (int i = 0; i < n; i++) {
		if (idx[i] >= ds->count) {
			log_error("image %u asked for, the set has %zu", idx[i], ds->count);
			return EXIT_SOFTWARE;
		}
		memcpy(dst + (size_t)i * px, ds->images + (size_t)idx[i] * px, px);
	}
	return 0;
}

int dataset_channel_stats(const dataset *ds, double *mean, double *std, int max)
{
	enum { STATS_BLOCK = 256 };
	size_t px = dataset_image_bytes(ds), hw = (size_t)ds->rows * (size_t)ds->cols;
	int C = ds->channels < max ? ds->channels : max;
	uint64_t sum[64] = {0}, sq[64] = {0};
	uint8_t *buf = malloc(STATS_BLOCK * px);
	uint32_t idx[STATS_BLOCK];
	if (!buf || C > 64) {
		free(buf);
		log_error("out of memory for the data statistics");
		return EXIT_OSERR;
	}
	for (size_t i = 0; i < ds->count; i += STATS_BLOCK) {
		int n = (int)(ds->count - i < STATS_BLOCK ? ds->count - i : STATS_BLOCK);
		for (int k = 0; k < n; k++)
			idx[k] = (uint32_t)(i + (size_t)k);
		int rc = dataset_gather(ds, idx, n, buf);
		if (rc) {
			free(buf);
			return rc;
		}
		for (int k = 0; k < n; k++)
			for (int c = 0; c < C; c++) {
				const uint8_t *p = buf + (size_t)k * px + (size_t)c * hw;
				uint64_t s = 0, q = 0;
				for (size_t j = 0; j < hw; j++) {
					s += p[j];
					q += (uint64_t)p[j] * p[j];
				}
				sum[c] += s;
				sq[c] += q;
			}
	}
	free(buf);
	double n = (double)ds->count * (double)hw;
	for (int c = 0; c < C; c++) {
		double m = (double)sum[c] / n, var = (double)sq[c] / n - m * m;
		mean[c] = m / 255.0;
		std[c] = sqrt(var > 0 ? var : 0) / 255.0;
	}
	return 0;
}

void dataset_free(dataset *d)
{
	if (!d)
		return;
	if (d->stream) {
		h5stream_close(d->stream);
		free(d->labels);
	} else if (d->map) {
		munmap(d->map, d->map_bytes);
	} else {
		free(d->images);
		free(d->labels);
	}
	memset(d, 0, sizeof *d);
}
