/*
 * test_data.c - IDX loading: the real MNIST and Fashion-MNIST files (skipped
 * when absent), small valid files raw and gzip'ed, and malformed files of
 * every kind the loader must refuse with the exact exit code and a message
 * that names the file.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "contract.h"
#include "data.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define MAGIC_IMAGES 0x00000803u
#define MAGIC_LABELS 0x00000801u

/* Per-test state: a fresh temporary directory and a buffer for stderr. */
typedef struct fixture {
	char dir[512];      /* mkdtemp() directory, removed by teardown */
	char path[1024];    /* scratch path inside dir */
	char stderr_text[8192]; /* what the last captured call wrote to stderr */
	int saved_stderr;   /* fd 2 while a capture is running, else -1 */
} fixture;

/* ---- temporary directory ---------------------------------------------- */

/* Remove dir and everything under it (the tests nest at most one level). */
static void remove_tree(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char p[1024];
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		struct stat st;
		if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
			remove_tree(p);
		else
			unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static int setup_tmpdir(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	if (!f)
		return -1;
	const char *base = getenv("TMPDIR");
	snprintf(f->dir, sizeof f->dir, "%s/test_data.XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	f->saved_stderr = -1;
	*state = f;
	return 0;
}

static int teardown_tmpdir(void **state)
{
	fixture *f = *state;
	remove_tree(f->dir);
	free(f);
	return 0;
}

/* The path of name inside the fixture's directory (valid until the next call). */
static const char *in_dir(fixture *f, const char *name)
{
	snprintf(f->path, sizeof f->path, "%s/%s", f->dir, name);
	return f->path;
}

/* ---- building IDX files ----------------------------------------------- */

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* The payload byte at index i of a test file: labels 0..9, pixels varied. */
static uint8_t pattern(uint32_t magic, size_t i)
{
	return magic == MAGIC_LABELS ? (uint8_t)(i % 10) : (uint8_t)(i * 37 + 11);
}

/*
 * Write an IDX file: header magic and ndims dims, then payload_len pattern
 * bytes (which need not agree with the header), then nothing. gz: compress
 * it with gzopen("wb"). Returns the path (fixture scratch).
 */
static const char *write_idx(fixture *f, const char *name, bool gz, uint32_t magic,
			     int ndims, const uint32_t *dims, size_t payload_len)
{
	size_t header = 4 + 4 * (size_t)ndims;
	uint8_t *buf = malloc(header + payload_len + 1);
	assert_non_null(buf);
	put_be32(buf, magic);
	for (int i = 0; i < ndims; i++)
		put_be32(buf + 4 + 4 * i, dims[i]);
	for (size_t i = 0; i < payload_len; i++)
		buf[header + i] = pattern(magic, i);
	const char *path = in_dir(f, name);
	size_t n = header + payload_len;
	if (gz) {
		gzFile g = gzopen(path, "wb");
		assert_non_null(g);
		assert_int_equal(gzwrite(g, buf, (unsigned)n), (int)n);
		assert_int_equal(gzclose(g), Z_OK);
	} else {
		FILE *fp = fopen(path, "wb");
		assert_non_null(fp);
		assert_int_equal(fwrite(buf, 1, n, fp), n);
		assert_int_equal(fclose(fp), 0);
	}
	free(buf);
	return path;
}

/* Write exactly n given bytes to name, uncompressed. */
static const char *write_bytes(fixture *f, const char *name, const void *bytes, size_t n)
{
	const char *path = in_dir(f, name);
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(bytes, 1, n, fp), n);
	assert_int_equal(fclose(fp), 0);
	return path;
}

/* A well-formed images file of count images of 2x4 pixels. */
static const char *write_images(fixture *f, const char *name, bool gz, uint32_t count)
{
	uint32_t dims[3] = {count, 2, 4};
	return write_idx(f, name, gz, MAGIC_IMAGES, 3, dims, (size_t)count * 8);
}

/* A well-formed labels file of count labels. */
static const char *write_labels(fixture *f, const char *name, bool gz, uint32_t count)
{
	uint32_t dims[1] = {count};
	return write_idx(f, name, gz, MAGIC_LABELS, 1, dims, count);
}

/* ---- capturing stderr -------------------------------------------------- */

static void capture_begin(fixture *f)
{
	fflush(stderr);
	f->saved_stderr = dup(2);
	assert_true(f->saved_stderr >= 0);
	char p[1024];
	snprintf(p, sizeof p, "%s/stderr.log", f->dir);
	int fd = open(p, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	assert_true(fd >= 0);
	assert_true(dup2(fd, 2) == 2);
	close(fd);
}

/* Restore stderr, keep what was written in f->stderr_text and echo it. */
static void capture_end(fixture *f)
{
	fflush(stderr);
	dup2(f->saved_stderr, 2);
	close(f->saved_stderr);
	f->saved_stderr = -1;
	char p[1024];
	snprintf(p, sizeof p, "%s/stderr.log", f->dir);
	FILE *fp = fopen(p, "rb");
	assert_non_null(fp);
	size_t n = fread(f->stderr_text, 1, sizeof f->stderr_text - 1, fp);
	f->stderr_text[n] = '\0';
	fclose(fp);
	unlink(p);
	fprintf(stderr, "  (expected) %s", f->stderr_text);
}

/* The file name part of path. */
static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

/*
 * idx_load(path) must fail with code, leave dims zero and data NULL, and
 * say something containing the file name and what.
 */
static void expect_idx_fails(fixture *f, const char *path, uint32_t magic, int code,
			     const char *what)
{
	char p[1024];
	snprintf(p, sizeof p, "%s", path);
	uint32_t dims[3] = {7, 7, 7};
	uint8_t *data = (uint8_t *)&dims; /* any non-NULL value */
	capture_begin(f);
	int rc = idx_load(p, magic, dims, &data);
	capture_end(f);
	assert_int_equal(rc, code);
	assert_null(data);
	assert_int_equal(dims[0], 0);
	assert_int_equal(dims[1], 0);
	assert_int_equal(dims[2], 0);
	assert_non_null(strstr(f->stderr_text, base_name(p)));
	assert_non_null(strstr(f->stderr_text, what));
}

/* dataset_load(dir, "train") must fail with code, leave *out empty, and say what. */
static void expect_dataset_fails(fixture *f, const char *dir, int code, const char *what)
{
	dataset d;
	memset(&d, 0xab, sizeof d);
	capture_begin(f);
	int rc = dataset_load(dir, "train", &d);
	capture_end(f);
	assert_int_equal(rc, code);
	assert_int_equal(d.count, 0);
	assert_null(d.images);
	assert_null(d.labels);
	assert_non_null(strstr(f->stderr_text, what));
	dataset_free(&d);
}

/* ---- the real data sets ------------------------------------------------ */

/* Sum of all pixels, for comparing with figures computed independently. */
static uint64_t pixel_sum(const dataset *d)
{
	uint64_t s = 0;
	size_t n = d->count * (size_t)d->rows * (size_t)d->cols;
	for (size_t i = 0; i < n; i++)
		s += d->images[i];
	return s;
}

/* One split of a real 28x28, 10-class set; figures from Python's gzip module. */
static void check_real_split(const char *dir, const char *split, size_t count,
			     int first_label, uint64_t first_image_sum, uint64_t sum,
			     const size_t *class_counts)
{
	dataset d;
	assert_int_equal(dataset_load(dir, split, &d), 0);
	assert_int_equal(d.count, count);
	assert_int_equal(d.rows, 28);
	assert_int_equal(d.cols, 28);
	assert_int_equal(d.max_label, 9);
	assert_int_equal(d.labels[0], first_label);
	uint64_t s0 = 0;
	for (int i = 0; i < 28 * 28; i++)
		s0 += d.images[i];
	assert_int_equal(s0, first_image_sum);
	assert_int_equal(pixel_sum(&d), sum);
	size_t seen[10] = {0};
	for (size_t i = 0; i < d.count; i++) {
		assert_true(d.labels[i] <= 9);
		seen[d.labels[i]]++;
	}
	for (int k = 0; k < 10; k++)
		assert_int_equal(seen[k], class_counts[k]);
	dataset_free(&d);
	assert_null(d.images);
	assert_null(d.labels);
}

static bool dir_exists(const char *dir)
{
	struct stat st;
	return stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
}

static void test_real_mnist_loads_60000_and_10000_digits(void **state)
{
	(void)state;
	const char *dir = getenv("MNIST_DIR");
	if (!dir || !*dir)
		dir = "/work/shared/data/mnist";
	if (!dir_exists(dir)) {
		print_message("MNIST not found at %s; skipped\n", dir);
		skip();
	}
	static const size_t train[10] = {5923, 6742, 5958, 6131, 5842,
					 5421, 5918, 6265, 5851, 5949};
	static const size_t t10k[10] = {980, 1135, 1032, 1010, 982,
					892, 958, 1028, 974, 1009};
	/* the training mean 0.1306604762738429 of SOURCE.md, times 255 * 47040000 */
	check_real_split(dir, "train", 60000, 5, 27525, UINT64_C(1567298545), train);
	check_real_split(dir, "t10k", 10000, 7, 18454, UINT64_C(264923200), t10k);
}

static void test_real_fashion_mnist_loads_60000_and_10000_items(void **state)
{
	(void)state;
	const char *dir = "/usr/share/datasets/fashion-mnist";
	if (!dir_exists(dir)) {
		print_message("Fashion-MNIST not found at %s; skipped\n", dir);
		skip();
	}
	static const size_t train[10] = {6000, 6000, 6000, 6000, 6000,
					 6000, 6000, 6000, 6000, 6000};
	static const size_t t10k[10] = {1000, 1000, 1000, 1000, 1000,
					1000, 1000, 1000, 1000, 1000};
	check_real_split(dir, "train", 60000, 9, 76247, UINT64_C(3431114169), train);
	check_real_split(dir, "t10k", 10000, 9, 33456, UINT64_C(573469082), t10k);
}

/* ---- valid small files ------------------------------------------------- */

/* Load split "train" written with the given name forms and check every byte. */
static void check_small_dataset(fixture *f, const char *img_name, const char *lbl_name,
				bool gz)
{
	write_images(f, img_name, gz, 5);
	write_labels(f, lbl_name, gz, 5);
	dataset d;
	assert_int_equal(dataset_load(f->dir, "train", &d), 0);
	assert_int_equal(d.count, 5);
	assert_int_equal(d.rows, 2);
	assert_int_equal(d.cols, 4);
	for (size_t i = 0; i < 5 * 8; i++)
		assert_int_equal(d.images[i], pattern(MAGIC_IMAGES, i));
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(d.labels[i], i);
	assert_int_equal(d.max_label, 4);
	dataset_free(&d);
	dataset_free(&d); /* freeing twice is harmless */
	unlink(in_dir(f, img_name));
	unlink(in_dir(f, lbl_name));
}

static void test_small_files_load_under_all_four_names(void **state)
{
	fixture *f = *state;
	check_small_dataset(f, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", true);
	check_small_dataset(f, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", false);
	check_small_dataset(f, "train-images.idx3-ubyte.gz", "train-labels.idx1-ubyte.gz", true);
	check_small_dataset(f, "train-images.idx3-ubyte", "train-labels.idx1-ubyte", false);
	/* content decides, not the name: raw bytes under a .gz name load too */
	check_small_dataset(f, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte", false);
}

static void test_idx_load_returns_dims_and_bytes(void **state)
{
	fixture *f = *state;
	for (int gz = 0; gz <= 1; gz++) {
		uint32_t dims[3];
		uint8_t *data = NULL;
		const char *p = write_labels(f, "l", gz, 300);
		assert_int_equal(idx_load(p, MAGIC_LABELS, dims, &data), 0);
		assert_int_equal(dims[0], 300);
		assert_int_equal(dims[1], 0);
		assert_int_equal(dims[2], 0);
		for (size_t i = 0; i < 300; i++)
			assert_int_equal(data[i], i % 10);
		free(data);
	}
}

static void test_max_label_is_the_largest_label(void **state)
{
	fixture *f = *state;
	write_images(f, "train-images-idx3-ubyte", false, 3);
	uint8_t lbl[8 + 3] = {0, 0, 8, 1, 0, 0, 0, 3, 2, 200, 7};
	write_bytes(f, "train-labels-idx1-ubyte", lbl, sizeof lbl);
	dataset d;
	assert_int_equal(dataset_load(f->dir, "train", &d), 0);
	assert_int_equal(d.max_label, 200);
	dataset_free(&d);
}

/* A compressed payload larger than the loader's first buffer (1 MiB) grows it. */
static void test_gz_payload_larger_than_first_buffer_loads(void **state)
{
	fixture *f = *state;
	uint32_t dims[3] = {3000, 28, 28};
	const char *p = write_idx(f, "big.gz", true, MAGIC_IMAGES, 3, dims, 3000 * 784);
	uint32_t got[3];
	uint8_t *data = NULL;
	assert_int_equal(idx_load(p, MAGIC_IMAGES, got, &data), 0);
	assert_int_equal(got[0], 3000);
	for (size_t i = 0; i < 3000 * 784; i += 997)
		assert_int_equal(data[i], pattern(MAGIC_IMAGES, i));
	assert_int_equal(data[3000 * 784 - 1], pattern(MAGIC_IMAGES, 3000 * 784 - 1));
	free(data);
}

/* ---- malformed files --------------------------------------------------- */

static void test_truncated_header_is_dataerr(void **state)
{
	fixture *f = *state;
	for (int gz = 0; gz <= 1; gz++) {
		const char *name = gz ? "h.gz" : "h";
		uint32_t dims[2] = {10, 28};
		/* magic and two of the three dimensions */
		const char *p = write_idx(f, name, gz, MAGIC_IMAGES, 2, dims, 0);
		expect_idx_fails(f, p, MAGIC_IMAGES, EXIT_DATAERR, "inside the 16-byte IDX header");
		/* not even the whole magic */
		uint8_t two[2] = {0, 0};
		if (gz) {
			gzFile g = gzopen(in_dir(f, name), "wb");
			assert_non_null(g);
			assert_int_equal(gzwrite(g, two, 2), 2);
			assert_int_equal(gzclose(g), Z_OK);
		} else {
			write_bytes(f, name, two, 2);
		}
		expect_idx_fails(f, in_dir(f, name), MAGIC_LABELS, EXIT_DATAERR,
				 "ends after 2 bytes, inside the IDX header");
	}
}

static void test_truncated_payload_is_dataerr(void **state)
{
	fixture *f = *state;
	for (int gz = 0; gz <= 1; gz++) {
		uint32_t idims[3] = {3, 2, 4};
		const char *p = write_idx(f, gz ? "i.gz" : "i", gz, MAGIC_IMAGES, 3, idims, 16);
		expect_idx_fails(f, p, MAGIC_IMAGES, EXIT_DATAERR,
				 "declares 3 images but ends after 16 bytes of payload");
		uint32_t ldims[1] = {10000};
		p = write_idx(f, gz ? "l.gz" : "l", gz, MAGIC_LABELS, 1, ldims, 4000);
		expect_idx_fails(f, p, MAGIC_LABELS, EXIT_DATAERR,
				 "declares 10000 labels but ends after 4000 bytes of payload");
	}
}

/* Read a whole small file into a malloc'ed buffer. */
static uint8_t *slurp(const char *path, size_t *n)
{
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	uint8_t *buf = malloc(1 << 20);
	assert_non_null(buf);
	*n = fread(buf, 1, 1 << 20, fp);
	fclose(fp);
	return buf;
}

static void test_damaged_gzip_stream_is_dataerr(void **state)
{
	fixture *f = *state;
	write_labels(f, "ok.gz", true, 50000);
	size_t n;
	uint8_t *gzbytes = slurp(in_dir(f, "ok.gz"), &n);
	assert_true(n > 40);
	/* the compressed stream cut in the middle */
	const char *p = write_bytes(f, "cut.gz", gzbytes, n / 2);
	expect_idx_fails(f, p, MAGIC_LABELS, EXIT_DATAERR, "compressed stream cut short");
	/* only the 8-byte gzip trailer (CRC, length) missing: data all there */
	p = write_bytes(f, "notrailer.gz", gzbytes, n - 8);
	expect_idx_fails(f, p, MAGIC_LABELS, EXIT_DATAERR, "checksum not verified");
	/* a wrong CRC */
	gzbytes[n - 8] ^= 0xff;
	p = write_bytes(f, "badcrc.gz", gzbytes, n);
	expect_idx_fails(f, p, MAGIC_LABELS, EXIT_DATAERR, "damaged gzip stream");
	free(gzbytes);
}

static void test_wrong_magic_is_dataerr(void **state)
{
	fixture *f = *state;
	uint32_t dims[3] = {2, 2, 4};
	static const uint32_t bad[] = {0x00000d03u /* floats */, 0x12345678u, 0x03080000u};
	for (int gz = 0; gz <= 1; gz++) {
		for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
			const char *p = write_idx(f, gz ? "m.gz" : "m", gz, bad[i], 3, dims, 16);
			expect_idx_fails(f, p, MAGIC_IMAGES, EXIT_DATAERR,
					 "is not that of an IDX file of unsigned bytes");
		}
	}
}

static void test_wrong_number_of_dims_is_dataerr(void **state)
{
	fixture *f = *state;
	for (int gz = 0; gz <= 1; gz++) {
		uint32_t dims[4] = {2, 2, 4, 1};
		const char *p = write_idx(f, gz ? "d.gz" : "d", gz, 0x00000802u, 2, dims, 4);
		expect_idx_fails(f, p, MAGIC_IMAGES, EXIT_DATAERR,
				 "declares 2 dimensions, expected 3");
		p = write_idx(f, gz ? "d.gz" : "d", gz, 0x00000804u, 4, dims, 16);
		expect_idx_fails(f, p, MAGIC_IMAGES, EXIT_DATAERR,
				 "declares 4 dimensions, expected 3");
		/* a labels file where images belong, and the other way round */
		p = write_labels(f, gz ? "d.gz" : "d", gz, 8);
		expect_idx_fails(f, p, MAGIC_IMAGES, EXIT_DATAERR,
				 "declares 1 dimensions, expected 3 for a file of images");
		p = write_images(f, gz ? "d.gz" : "d", gz, 1);
		expect_idx_fails(f, p, MAGIC_LABELS, EXIT_DATAERR,
				 "declares 3 dimensions, expected 1 for a file of labels");
	}
}

static void test_zero_dimensions_are_dataerr(void **state)
{
	fixture *f = *state;
	for (int gz = 0; gz <= 1; gz++) {
		const char *name = gz ? "z.gz" : "z";
		uint32_t none[3] = {0, 28, 28};
		const char *p = write_idx(f, name, gz, MAGIC_IMAGES, 3, none, 0);
		expect_idx_fails(f, p, MAGIC_IMAGES, EXIT_DATAERR, "declares 0 images");
		uint32_t no_labels[1] = {0};
		p = write_idx(f, name, gz, MAGIC_LABELS, 1, no_labels, 0);
		expect_idx_fails(f, p, MAGIC_LABELS, EXIT_DATAERR, "declares 0 labels");
		uint32_t no_rows[3] = {5, 0, 28};
		p = write_idx(f, name, gz, MAGIC_IMAGES, 3, no_rows, 0);
		expect_idx_fails(f, p, MAGIC_IMAGES, EXIT_DATAERR, "dimension 1 is 0");
	}
}

/* Absurd headers fail on the header alone: no allocation of their size. */
static void test_huge_dimensions_fail_fast(void **state)
{
	fixture *f = *state;
	for (int gz = 0; gz <= 1; gz++) {
		const char *name = gz ? "x.gz" : "x";
		uint32_t tall[3] = {1, UINT32_C(1) << 31, 1};
		const char *p = write_idx(f, name, gz, MAGIC_IMAGES, 3, tall, 64);
		expect_idx_fails(f, p, MAGIC_IMAGES, EXIT_DATAERR,
				 "dimension 1 is 2147483648, outside 1..4096");
		uint32_t wide[3] = {1, 28, 4097};
		p = write_idx(f, name, gz, MAGIC_IMAGES, 3, wide, 64);
		expect_idx_fails(f, p, MAGIC_IMAGES, EXIT_DATAERR, "dimension 2 is 4097");
		uint32_t many[3] = {UINT32_MAX, 28, 28};
		p = write_idx(f, name, gz, MAGIC_IMAGES, 3, many, 64);
		expect_idx_fails(f, p, MAGIC_IMAGES, EXIT_DATAERR,
				 "more than the limit of 2147483648 bytes");
		uint32_t big[3] = {4096, 4096, 4096}; /* 2^36 bytes */
		p = write_idx(f, name, gz, MAGIC_IMAGES, 3, big, 64);
		expect_idx_fails(f, p, MAGIC_IMAGES, EXIT_DATAERR, "more than the limit");
		/* within the limit (1.5 GB) but the file holds 64 bytes: raw files
		 * fail on their size, compressed ones after the first buffer */
		uint32_t plausible[3] = {2000000, 28, 28};
		p = write_idx(f, name, gz, MAGIC_IMAGES, 3, plausible, 64);
		expect_idx_fails(f, p, MAGIC_IMAGES, EXIT_DATAERR,
				 "declares 2000000 images but ends after 64 bytes of payload");
	}
}

static void test_extra_data_after_payload_is_dataerr(void **state)
{
	fixture *f = *state;
	uint32_t dims[3] = {2, 2, 4};
	const char *p = write_idx(f, "t", false, MAGIC_IMAGES, 3, dims, 17);
	expect_idx_fails(f, p, MAGIC_IMAGES, EXIT_DATAERR, "has 1 bytes after the 2 images");
	p = write_idx(f, "t.gz", true, MAGIC_IMAGES, 3, dims, 24);
	expect_idx_fails(f, p, MAGIC_IMAGES, EXIT_DATAERR,
			 "holds more data after the 2 images it declares");
}

static void test_image_label_count_mismatch_is_dataerr(void **state)
{
	fixture *f = *state;
	write_images(f, "train-images-idx3-ubyte.gz", true, 6);
	write_labels(f, "train-labels-idx1-ubyte.gz", true, 5);
	expect_dataset_fails(f, f->dir, EXIT_DATAERR,
			     "declares 6 images but");
	assert_non_null(strstr(f->stderr_text, "declares 5 labels"));
}

/* The counts are compared before any payload is read: a small gz file that declares 2.7 M
 * images next to 5 labels is refused for the mismatch, not after inflating (or allocating)
 * 2 GB for a payload that is not there. */
static void test_counts_are_compared_before_any_payload(void **state)
{
	fixture *f = *state;
	uint32_t dims[3] = {2700000, 28, 28};
	write_idx(f, "train-images-idx3-ubyte.gz", true, MAGIC_IMAGES, 3, dims, 784);
	write_labels(f, "train-labels-idx1-ubyte.gz", true, 5);
	expect_dataset_fails(f, f->dir, EXIT_DATAERR, "declares 2700000 images but");
	assert_non_null(strstr(f->stderr_text, "they must match"));
	assert_null(strstr(f->stderr_text, "ends after")); /* the payload was never read */
}

static void test_missing_files_are_noinput(void **state)
{
	fixture *f = *state;
	expect_idx_fails(f, in_dir(f, "absent.gz"), MAGIC_IMAGES, EXIT_NOINPUT, "cannot open");
	/* nothing there: the message lists the four names and the folder */
	expect_dataset_fails(f, f->dir, EXIT_NOINPUT, "no train images file in");
	assert_non_null(strstr(f->stderr_text, f->dir));
	assert_non_null(strstr(f->stderr_text, "train-images-idx3-ubyte.gz, "
					       "train-images-idx3-ubyte, "
					       "train-images.idx3-ubyte.gz, "
					       "train-images.idx3-ubyte"));
	/* images there, labels absent */
	write_images(f, "train-images-idx3-ubyte", false, 2);
	expect_dataset_fails(f, f->dir, EXIT_NOINPUT, "no train labels file in");
	/* no such folder */
	expect_dataset_fails(f, in_dir(f, "no-such-dir"), EXIT_NOINPUT, "no train images file");
}

static void test_directory_in_place_of_file_is_dataerr(void **state)
{
	fixture *f = *state;
	assert_int_equal(mkdir(in_dir(f, "train-images-idx3-ubyte.gz"), 0700), 0);
	expect_idx_fails(f, in_dir(f, "train-images-idx3-ubyte.gz"), MAGIC_IMAGES,
			 EXIT_DATAERR, "is a directory");
	write_labels(f, "train-labels-idx1-ubyte.gz", true, 2);
	write_images(f, "train-images-idx3-ubyte", false, 2); /* shadowed by the dir */
	expect_dataset_fails(f, f->dir, EXIT_DATAERR, "is a directory");
}

static void test_empty_file_is_dataerr(void **state)
{
	fixture *f = *state;
	const char *p = write_bytes(f, "empty", "", 0);
	expect_idx_fails(f, p, MAGIC_IMAGES, EXIT_DATAERR, "is empty");
	/* a valid gzip stream of nothing */
	gzFile g = gzopen(in_dir(f, "empty.gz"), "wb");
	assert_non_null(g);
	assert_int_equal(gzclose(g), Z_OK);
	expect_idx_fails(f, in_dir(f, "empty.gz"), MAGIC_LABELS, EXIT_DATAERR,
			 "ends after 0 bytes, inside the IDX header");
	/* dataset_load over empty files */
	write_bytes(f, "train-images-idx3-ubyte", "", 0);
	write_bytes(f, "train-labels-idx1-ubyte", "", 0);
	expect_dataset_fails(f, f->dir, EXIT_DATAERR, "is empty");
}

static void test_bad_arguments_are_software_errors(void **state)
{
	fixture *f = *state;
	uint32_t dims[3];
	uint8_t *data;
	const char *p = write_labels(f, "l", false, 3);
	capture_begin(f);
	int rc = idx_load(p, 0x00000802u, dims, &data);
	capture_end(f);
	assert_int_equal(rc, EXIT_SOFTWARE);
	capture_begin(f);
	rc = dataset_load(NULL, "train", NULL);
	capture_end(f);
	assert_int_equal(rc, EXIT_SOFTWARE);
	dataset_free(NULL);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_tmpdir, teardown_tmpdir)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_real_mnist_loads_60000_and_10000_digits),
		T(test_real_fashion_mnist_loads_60000_and_10000_items),
		T(test_small_files_load_under_all_four_names),
		T(test_idx_load_returns_dims_and_bytes),
		T(test_max_label_is_the_largest_label),
		T(test_gz_payload_larger_than_first_buffer_loads),
		T(test_truncated_header_is_dataerr),
		T(test_truncated_payload_is_dataerr),
		T(test_damaged_gzip_stream_is_dataerr),
		T(test_wrong_magic_is_dataerr),
		T(test_wrong_number_of_dims_is_dataerr),
		T(test_zero_dimensions_are_dataerr),
		T(test_huge_dimensions_fail_fast),
		T(test_extra_data_after_payload_is_dataerr),
		T(test_image_label_count_mismatch_is_dataerr),
		T(test_counts_are_compared_before_any_payload),
		T(test_missing_files_are_noinput),
		T(test_directory_in_place_of_file_is_dataerr),
		T(test_empty_file_is_dataerr),
		T(test_bad_arguments_are_software_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
