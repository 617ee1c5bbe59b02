/*
 * test_data_cifar.c - the CIFAR-10 and CIFAR-100 binary readers and format
 * detection against files generated here (nothing is downloaded): pixels land
 * in NCHW order, both CIFAR-100 label kinds, the archive's folder, and every
 * damaged file refused with 65 (66 when missing) naming file and offset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "contract.h"
#include "data.h"
#include "data_test_util.h"

#define PIX 3072

/* The pixel of record r, channel c, position p (row-major 32x32) in generated files. */
static uint8_t px(size_t r, int c, int p)
{
	return (uint8_t)(r * 31 + (size_t)c * 101 + (size_t)p * 7 + 3);
}

/* One record: label bytes then the R, G, B planes. */
static void put_record(uint8_t *rec, size_t r, const uint8_t *labels, int nlab)
{
	memcpy(rec, labels, (size_t)nlab);
	for (int c = 0; c < 3; c++)
		for (int p = 0; p < 1024; p++)
			rec[nlab + c * 1024 + p] = px(r, c, p);
}

/* A CIFAR-10 file of n records numbered from first; label of record r is r % 10 (bad_at: 10). */
static void write_c10(dtu *f, const char *name, size_t first, size_t n, long bad_at, size_t cut)
{
	size_t rec = 1 + PIX;
	uint8_t *buf = malloc(n * rec);
	assert_non_null(buf);
	for (size_t i = 0; i < n; i++) {
		uint8_t l = (long)i == bad_at ? 10 : (uint8_t)((first + i) % 10);
		put_record(buf + i * rec, first + i, &l, 1);
	}
	assert_int_equal(dtu_write(f, name, buf, n * rec - cut), 0);
	free(buf);
}

/* The five training batches (n records each) and the test batch (m records) in dir/sub. */
static void write_cifar10(dtu *f, const char *sub, size_t n, size_t m)
{
	char name[128];
	if (sub)
		mkdir(dtu_path(f, sub), 0700);
	for (int b = 1; b <= 5; b++) {
		snprintf(name, sizeof name, "%s%sdata_batch_%d.bin", sub ? sub : "", sub ? "/" : "", b);
		write_c10(f, name, (size_t)(b - 1) * n, n, -1, 0);
	}
	snprintf(name, sizeof name, "%s%stest_batch.bin", sub ? sub : "", sub ? "/" : "");
	write_c10(f, name, 1000, m, -1, 0);
}

/* A CIFAR-100 file: coarse r % 20, fine (r * 7) % 100 (bad_fine/bad_coarse at record bad_at). */
static void write_c100(dtu *f, const char *name, size_t n, long bad_at, int bad_fine, int bad_coarse)
{
	size_t rec = 2 + PIX;
	uint8_t *buf = malloc(n * rec);
	assert_non_null(buf);
	for (size_t i = 0; i < n; i++) {
		uint8_t l[2] = {(uint8_t)(i % 20), (uint8_t)(i * 7 % 100)};
		if ((long)i == bad_at) {
			l[0] = bad_coarse ? (uint8_t)bad_coarse : l[0];
			l[1] = bad_fine ? (uint8_t)bad_fine : l[1];
		}
		put_record(buf + i * rec, i, l, 2);
	}
	assert_int_equal(dtu_write(f, name, buf, n * rec), 0);
	free(buf);
}

/* Every image of d is the generated record first + i, in NCHW, with the expected label. */
static void check_pixels(const dataset *d, size_t first)
{
	assert_int_equal(d->channels, 3);
	assert_int_equal(d->rows, 32);
	assert_int_equal(d->cols, 32);
	for (size_t i = 0; i < d->count; i++)
		for (int c = 0; c < 3; c++)
			for (int p = 0; p < 1024; p += 97)
				assert_int_equal(d->images[i * PIX + (size_t)c * 1024 + (size_t)p], px(first + i, c, p));
}

static void test_cifar10_train_and_test(void **state)
{
	dtu *f = *state;
	write_cifar10(f, NULL, 4, 3);
	dataset d;
	data_format fmt;
	assert_int_equal(data_detect(f->dir, &fmt), 0);
	assert_int_equal(fmt, DATA_CIFAR10);
	assert_int_equal(data_load(f->dir, DATA_AUTO, DATA_LABEL_FINE, DATA_TRAIN, &d), 0);
	assert_int_equal(d.count, 20);
	check_pixels(&d, 0);
	for (size_t i = 0; i < d.count; i++)
		assert_int_equal(d.labels[i], i % 10);
	assert_int_equal(d.max_label, 9);
	dataset_free(&d);
	assert_int_equal(data_load(f->dir, DATA_CIFAR10, DATA_LABEL_FINE, DATA_TEST, &d), 0);
	assert_int_equal(d.count, 3);
	check_pixels(&d, 1000);
	assert_int_equal(d.labels[2], 1002 % 10);
	dataset_free(&d);
}

static void test_cifar10_archive_folder(void **state)
{
	dtu *f = *state;
	write_cifar10(f, "cifar-10-batches-bin", 2, 2);
	dataset d;
	assert_int_equal(data_load(f->dir, DATA_AUTO, DATA_LABEL_FINE, DATA_TRAIN, &d), 0);
	assert_int_equal(d.count, 10);
	check_pixels(&d, 0);
	dataset_free(&d);
}

static void test_cifar100_fine_and_coarse(void **state)
{
	dtu *f = *state;
	write_c100(f, "train.bin", 50, -1, 0, 0);
	write_c100(f, "test.bin", 5, -1, 0, 0);
	data_format fmt;
	assert_int_equal(data_detect(f->dir, &fmt), 0);
	assert_int_equal(fmt, DATA_CIFAR100);
	dataset d;
	assert_int_equal(data_load(f->dir, DATA_AUTO, DATA_LABEL_FINE, DATA_TRAIN, &d), 0);
	assert_int_equal(d.count, 50);
	check_pixels(&d, 0);
	for (size_t i = 0; i < d.count; i++)
		assert_int_equal(d.labels[i], i * 7 % 100);
	dataset_free(&d);
	assert_int_equal(data_load(f->dir, DATA_CIFAR100, DATA_LABEL_COARSE, DATA_TRAIN, &d), 0);
	for (size_t i = 0; i < d.count; i++)
		assert_int_equal(d.labels[i], i % 20);
	assert_int_equal(d.max_label, 19);
	dataset_free(&d);
}

/* load must fail with rc and a message holding every one of the NULL-terminated needles. */
static void expect_refusal(dtu *f, data_format fmt, data_label_kind lk, data_split split, int rc, ...)
{
	dataset d;
	dtu_capture_begin(f);
	int got = data_load(f->dir, fmt, lk, split, &d);
	dtu_capture_end(f);
	assert_int_equal(got, rc);
	assert_null(d.images);
	va_list ap;
	va_start(ap, rc);
	for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *)) {
		if (!strstr(f->err, s))
			fail_msg("message lacks \"%s\": %s", s, f->err);
	}
	va_end(ap);
}

static void test_cifar10_truncated(void **state)
{
	dtu *f = *state;
	write_cifar10(f, NULL, 3, 2);
	write_c10(f, "data_batch_4.bin", 9, 3, -1, 100); /* the third record is 100 bytes short */
	expect_refusal(f, DATA_CIFAR10, DATA_LABEL_FINE, DATA_TRAIN, EXIT_DATAERR, "data_batch_4.bin",
		       "byte offset 6146", "record 2", NULL);
}

static void test_cifar10_label_out_of_range(void **state)
{
	dtu *f = *state;
	write_cifar10(f, NULL, 3, 2);
	write_c10(f, "test_batch.bin", 0, 3, 1, 0);
	expect_refusal(f, DATA_CIFAR10, DATA_LABEL_FINE, DATA_TEST, EXIT_DATAERR, "test_batch.bin", "record 1",
		       "byte offset 3073", "label 10", NULL);
}

static void test_cifar100_labels_out_of_range(void **state)
{
	dtu *f = *state;
	write_c100(f, "train.bin", 4, 2, 100, 0);
	expect_refusal(f, DATA_CIFAR100, DATA_LABEL_FINE, DATA_TRAIN, EXIT_DATAERR, "train.bin", "record 2",
		       "fine label 100", NULL);
	write_c100(f, "train.bin", 4, 3, 0, 20);
	expect_refusal(f, DATA_CIFAR100, DATA_LABEL_COARSE, DATA_TRAIN, EXIT_DATAERR, "train.bin", "record 3",
		       "coarse label 20", NULL);
	/* the fine labels of that file are fine */
	dataset d;
	assert_int_equal(data_load(f->dir, DATA_CIFAR100, DATA_LABEL_FINE, DATA_TRAIN, &d), 0);
	dataset_free(&d);
}

static void test_missing_and_foreign(void **state)
{
	dtu *f = *state;
	write_cifar10(f, NULL, 2, 2);
	unlink(dtu_path(f, "data_batch_3.bin"));
	expect_refusal(f, DATA_CIFAR10, DATA_LABEL_FINE, DATA_TRAIN, EXIT_NOINPUT, "data_batch_3.bin", NULL);
	assert_int_equal(dtu_write(f, "data_batch_3.bin", "", 0), 0);
	expect_refusal(f, DATA_CIFAR10, DATA_LABEL_FINE, DATA_TRAIN, EXIT_DATAERR, "data_batch_3.bin",
		       "byte offset 0", NULL);
	/* a CIFAR-10 file read as CIFAR-100: 3073-byte records are not 3074-byte ones */
	write_c10(f, "train.bin", 0, 5, -1, 0);
	expect_refusal(f, DATA_CIFAR100, DATA_LABEL_FINE, DATA_TRAIN, EXIT_DATAERR, "train.bin", "3074-byte", NULL);
}

static void test_detection_refusals(void **state)
{
	dtu *f = *state;
	data_format fmt;
	dtu_capture_begin(f);
	int rc = data_detect(f->dir, &fmt);
	dtu_capture_end(f);
	assert_int_equal(rc, EXIT_DATAERR);
	assert_non_null(strstr(f->err, f->dir));
	assert_non_null(strstr(f->err, "cannot tell"));
	dtu_capture_begin(f);
	rc = data_detect(dtu_path(f, "nowhere"), &fmt);
	dtu_capture_end(f);
	assert_int_equal(rc, EXIT_NOINPUT);
	assert_int_equal(dtu_write(f, "set.h5", "not hdf5", 8), 0);
	assert_int_equal(data_detect(f->dir, &fmt), 0);
	assert_int_equal(fmt, DATA_HDF5);
	expect_refusal(f, DATA_AUTO, DATA_LABEL_FINE, DATA_TRAIN, EXIT_DATAERR, "set.h5", "HDF5 signature", NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cifar10_train_and_test, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_cifar10_archive_folder, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_cifar100_fine_and_coarse, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_cifar10_truncated, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_cifar10_label_out_of_range, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_cifar100_labels_out_of_range, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_missing_and_foreign, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_detection_refusals, dtu_setup, dtu_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
