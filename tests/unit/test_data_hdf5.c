/*
 * test_data_hdf5.c - the HDF5 image-set reader against files written here
 * with the HDF5 library: NHWC and NCHW layouts (fixed-length layout strings,
 * null-terminated or null-padded as h5py writes np.bytes_, ASCII or UTF-8),
 * chunked and compressed storage, any integer label type, all read into NCHW;
 * and every malformed file (missing or mistyped dataset, counts that differ,
 * labels out of range, bad layout, a layout of several values, a
 * variable-length layout even over a damaged global heap, truncated file)
 * refused with 65 naming file, dataset and position.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <hdf5.h>

#include "contract.h"
#include "data.h"
#include "data_test_util.h"

/* How to write a generated set. */
typedef struct spec {
	int n_train, n_test, c, h, w;
	const char *layout;  /* attribute value; NULL: none (NHWC) */
	int vlen;            /* write the attribute as a variable-length string (2: UTF-8, as h5py does) */
	int utf8;            /* fixed-length: UTF-8 character set */
	int nullpad;         /* fixed-length: null-padded (h5py's np.bytes_) instead of null-terminated */
	int attr_n;          /* > 0: the attribute holds that many values (else one, scalar) */
	int chunked;         /* chunks of 3 images, deflate */
	hid_t label_type;    /* file type of the labels */
	int float_images;    /* images stored as float (mistyped) */
	int bad_label_at;    /* >= 0: that training label is 300 */
	int label_delta;     /* training labels count n_train + label_delta */
	int skip_test_labels;
	int skip_test;       /* no /test group at all */
} spec;

/* The pixel of image n, channel c, row y, column x. */
static uint8_t pixel(int n, int c, int y, int x)
{
	return (uint8_t)(n * 17 + c * 59 + y * 5 + x * 3 + 1);
}

/* Write the layout attribute of dataset d. */
static void put_layout(hid_t d, const spec *s)
{
	hsize_t n = (hsize_t)s->attr_n;
	hid_t t = H5Tcopy(H5T_C_S1), sp = n ? H5Screate_simple(1, &n, NULL) : H5Screate(H5S_SCALAR);
	H5Tset_size(t, s->vlen ? H5T_VARIABLE : strlen(s->layout));
	if (s->vlen == 2 || s->utf8)
		H5Tset_cset(t, H5T_CSET_UTF8);
	if (s->nullpad)
		H5Tset_strpad(t, H5T_STR_NULLPAD);
	hid_t a = H5Acreate2(d, "layout", t, sp, H5P_DEFAULT, H5P_DEFAULT);
	assert_true(a >= 0);
	const char *many[8] = {s->layout, s->layout, s->layout, s->layout, s->layout, s->layout, s->layout, s->layout};
	char fixed[64] = "";
	for (size_t i = 0; i < (n ? n : 1) && !s->vlen; i++)
		memcpy(fixed + i * strlen(s->layout), s->layout, strlen(s->layout));
	assert_true(n <= 8 && (n ? n : 1) * strlen(s->layout) < sizeof fixed);
	assert_true(H5Awrite(a, t, s->vlen ? (const void *)many : (const void *)fixed) >= 0);
	H5Aclose(a);
	H5Sclose(sp);
	H5Tclose(t);
}

/* One group's images (in the spec's layout) and labels (value i % 7 unless bad). */
static void put_split(hid_t file, const char *g, int n, const spec *s, int train)
{
	int nchw = s->layout && !strcmp(s->layout, "NCHW");
	hsize_t dims[4] = {(hsize_t)n, (hsize_t)(nchw ? s->c : s->h), (hsize_t)(nchw ? s->h : s->w),
			   (hsize_t)(nchw ? s->w : s->c)};
	size_t px = (size_t)s->c * (size_t)s->h * (size_t)s->w;
	float *fimg = malloc((size_t)n * px * sizeof *fimg);
	uint8_t *img = malloc((size_t)n * px);
	assert_non_null(img);
	assert_non_null(fimg);
	for (int i = 0; i < n; i++)
		for (int c = 0; c < s->c; c++)
			for (int y = 0; y < s->h; y++)
				for (int x = 0; x < s->w; x++) {
					size_t at = nchw ? (((size_t)i * s->c + c) * s->h + y) * s->w + x
							 : (((size_t)i * s->h + y) * s->w + x) * s->c + c;
					img[at] = pixel(i, c, y, x);
					fimg[at] = img[at];
				}
	hid_t grp = H5Gcreate2(file, g, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	hid_t sp = H5Screate_simple(4, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
	if (s->chunked) {
		hsize_t ch[4] = {3, dims[1], dims[2], dims[3]};
		H5Pset_chunk(dcpl, 4, ch);
		H5Pset_deflate(dcpl, 4);
	}
	hid_t d = H5Dcreate2(grp, "images", s->float_images ? H5T_IEEE_F32LE : H5T_STD_U8LE, sp, H5P_DEFAULT, dcpl,
			     H5P_DEFAULT);
	assert_true(d >= 0);
	assert_true(H5Dwrite(d, s->float_images ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL,
			     H5P_DEFAULT, s->float_images ? (void *)fimg : (void *)img) >= 0);
	if (s->layout)
		put_layout(d, s);
	H5Dclose(d);
	H5Pclose(dcpl);
	H5Sclose(sp);
	int nl = n + (train ? s->label_delta : 0);
	if (train || !s->skip_test_labels) {
		int64_t *lab = malloc((size_t)nl * sizeof *lab);
		for (int i = 0; i < nl; i++)
			lab[i] = train && i == s->bad_label_at ? 300 : i % 7;
		hsize_t ld[1] = {(hsize_t)nl};
		sp = H5Screate_simple(1, ld, NULL);
		d = H5Dcreate2(grp, "labels", s->label_type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
		assert_true(H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, lab) >= 0);
		H5Dclose(d);
		H5Sclose(sp);
		free(lab);
	}
	H5Gclose(grp);
	free(img);
	free(fimg);
}

/* Write the set of s to dir/name; returns its path (scratch). */
static const char *write_set(dtu *f, const char *name, const spec *s)
{
	const char *path = dtu_path(f, name);
	hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	assert_true(file >= 0);
	put_split(file, "train", s->n_train, s, 1);
	if (!s->skip_test)
		put_split(file, "test", s->n_test, s, 0);
	H5Fclose(file);
	return path;
}

static spec base_spec(void)
{
	return (spec){.n_train = 5, .n_test = 4, .c = 3, .h = 6, .w = 5, .label_type = H5T_STD_U8LE, .bad_label_at = -1};
}

/* d holds n images of s's shape with the generated pixels in NCHW and labels i % 7. */
static void check_set(const dataset *d, const spec *s, int n)
{
	assert_int_equal(d->count, n);
	assert_int_equal(d->channels, s->c);
	assert_int_equal(d->rows, s->h);
	assert_int_equal(d->cols, s->w);
	for (int i = 0; i < n; i++) {
		assert_int_equal(d->labels[i], i % 7);
		for (int c = 0; c < s->c; c++)
			for (int y = 0; y < s->h; y++)
				for (int x = 0; x < s->w; x++)
					assert_int_equal(d->images[(((size_t)i * s->c + c) * s->h + y) * s->w + x],
							 pixel(i, c, y, x));
	}
}

/* Write s, load both splits through data_load (auto-detected) and compare. */
static void round_trip(dtu *f, const spec *s)
{
	write_set(f, "set.h5", s);
	dataset d;
	assert_int_equal(data_load(f->dir, DATA_AUTO, DATA_LABEL_FINE, DATA_TRAIN, &d), 0);
	check_set(&d, s, s->n_train);
	dataset_free(&d);
	assert_int_equal(data_load(dtu_path(f, "set.h5"), DATA_HDF5, DATA_LABEL_FINE, DATA_TEST, &d), 0);
	check_set(&d, s, s->n_test);
	dataset_free(&d);
}

static void test_nhwc_default(void **state)
{
	spec s = base_spec();
	round_trip(*state, &s);
}

static void test_nchw_chunked_int64_labels(void **state)
{
	spec s = base_spec();
	s.layout = "NCHW";
	s.chunked = 1;
	s.label_type = H5T_STD_I64LE;
	s.n_train = 2000; /* more than one hyperslab block */
	round_trip(*state, &s);
}

static void test_nhwc_nullpad_attribute_one_channel(void **state)
{
	spec s = base_spec();
	s.layout = "NHWC";
	s.nullpad = 1; /* h5py: attrs.create('layout', np.bytes_('NHWC')) */
	s.c = 1;
	s.chunked = 1;
	s.label_type = H5T_STD_U16BE;
	round_trip(*state, &s);
}

/* Writing s must make the load of split fail with rc, naming every needle. */
static void expect_refusal(dtu *f, const spec *s, data_split split, int rc, ...)
{
	write_set(f, "set.h5", s);
	dataset d;
	dtu_capture_begin(f);
	int got = data_load(f->dir, DATA_HDF5, DATA_LABEL_FINE, split, &d);
	dtu_capture_end(f);
	assert_int_equal(got, rc);
	assert_null(d.images);
	assert_null(d.labels);
	va_list ap;
	va_start(ap, rc);
	for (const char *n = va_arg(ap, const char *); n; n = va_arg(ap, const char *))
		if (!strstr(f->err, n))
			fail_msg("message lacks \"%s\": %s", n, f->err);
	va_end(ap);
}

static void test_nchw_utf8_attribute(void **state)
{
	spec s = base_spec();
	s.layout = "NCHW";
	s.utf8 = 1;
	s.nullpad = 1;
	round_trip(*state, &s);
}

/* Damage the first global heap collection of the file at path (its signature and size). */
static void damage_global_heap(const char *path)
{
	FILE *f = fopen(path, "r+b");
	assert_non_null(f);
	static char buf[1 << 16];
	size_t n = fread(buf, 1, sizeof buf, f);
	char *at = NULL;
	for (size_t i = 0; !at && i + 16 <= n; i++)
		if (!memcmp(buf + i, "GCOL", 4))
			at = buf + i;
	if (!at) { /* (a return the compiler sees: at is not NULL below) */
		fclose(f);
		fail_msg("%s: no global heap collection (GCOL) in the first 64 KiB", path);
		return;
	}
	memset(at + 4, 0xff, 12); /* version, reserved, collection size */
	assert_int_equal(fseek(f, at - buf, SEEK_SET), 0);
	assert_int_equal(fwrite(at, 1, 16, f), 16);
	assert_int_equal(fclose(f), 0);
}

/* A variable-length layout (h5py's default for a str) is refused from its type, before HDF5
 * reads its value from the global heap: the same answer over a damaged heap (issue 18). */
static void test_vlen_layout_refused_unread(void **state)
{
	dtu *f = *state;
	for (int v = 1; v <= 3; v++) {
		spec s = base_spec();
		s.layout = "NCHW";
		s.vlen = v == 1 ? 1 : 2;
		write_set(f, "set.h5", &s);
		if (v == 3)
			damage_global_heap(dtu_path(f, "set.h5"));
		dataset d;
		dtu_capture_begin(f);
		int got = data_load(f->dir, DATA_HDF5, DATA_LABEL_FINE, DATA_TRAIN, &d);
		dtu_capture_end(f);
		assert_int_equal(got, EXIT_DATAERR);
		const char *needles[] = {"set.h5", "/train/images", "attribute layout is a variable-length string",
					 "attrs.create('layout', np.bytes_('NCHW'))"};
		for (int i = 0; i < 4; i++)
			if (!strstr(f->err, needles[i]))
				fail_msg("message lacks \"%s\": %s", needles[i], f->err);
	}
}

/* A layout of several values is refused (read as one, it would overrun the reader's buffer). */
static void test_layout_of_several_values(void **state)
{
	spec s = base_spec();
	s.layout = "NCHW";
	s.attr_n = 4;
	expect_refusal(*state, &s, DATA_TRAIN, EXIT_DATAERR, "set.h5", "/train/images", "layout", NULL);
}

static void test_missing_datasets(void **state)
{
	spec s = base_spec();
	s.skip_test_labels = 1;
	expect_refusal(*state, &s, DATA_TEST, EXIT_DATAERR, "set.h5", "/test/labels", "missing", NULL);
	s = base_spec();
	s.skip_test = 1;
	expect_refusal(*state, &s, DATA_TEST, EXIT_DATAERR, "set.h5", "/test", "missing", NULL);
}

static void test_mistyped_images(void **state)
{
	spec s = base_spec();
	s.float_images = 1;
	expect_refusal(*state, &s, DATA_TRAIN, EXIT_DATAERR, "set.h5", "/train/images", "uint8", NULL);
	s = base_spec();
	s.label_type = H5T_IEEE_F32LE;
	expect_refusal(*state, &s, DATA_TRAIN, EXIT_DATAERR, "set.h5", "/train/labels", "integer", NULL);
}

static void test_label_out_of_range_and_counts(void **state)
{
	spec s = base_spec();
	s.label_type = H5T_STD_I16LE;
	s.bad_label_at = 3;
	expect_refusal(*state, &s, DATA_TRAIN, EXIT_DATAERR, "set.h5", "/train/labels", "index 3", "300", NULL);
	s = base_spec();
	s.label_delta = -1;
	expect_refusal(*state, &s, DATA_TRAIN, EXIT_DATAERR, "set.h5", "/train/images", "5 images", "4 labels",
		       NULL);
}

static void test_bad_layout(void **state)
{
	spec s = base_spec();
	s.layout = "HWC";
	expect_refusal(*state, &s, DATA_TRAIN, EXIT_DATAERR, "set.h5", "/train/images", "layout", "HWC", NULL);
}

static void test_truncated_file(void **state)
{
	dtu *f = *state;
	spec s = base_spec();
	s.n_train = 300;
	const char *path = write_set(f, "set.h5", &s);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(truncate(path, st.st_size / 2), 0);
	dataset d;
	dtu_capture_begin(f);
	int got = data_load(f->dir, DATA_HDF5, DATA_LABEL_FINE, DATA_TEST, &d);
	dtu_capture_end(f);
	assert_int_equal(got, EXIT_DATAERR);
	assert_non_null(strstr(f->err, "set.h5"));
	assert_int_equal(truncate(path, 4), 0);
	dtu_capture_begin(f);
	got = data_load(f->dir, DATA_HDF5, DATA_LABEL_FINE, DATA_TRAIN, &d);
	dtu_capture_end(f);
	assert_int_equal(got, EXIT_DATAERR);
	assert_non_null(strstr(f->err, "byte offset 0"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_nhwc_default, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_nchw_chunked_int64_labels, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_nhwc_nullpad_attribute_one_channel, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_nchw_utf8_attribute, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_vlen_layout_refused_unread, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_layout_of_several_values, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_missing_datasets, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_mistyped_images, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_label_out_of_range_and_counts, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_bad_layout, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_truncated_file, dtu_setup, dtu_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
