/*
 * test_data_stream.c - the streamed HDF5 image set (data.h h5stream_*,
 * data_open): sets written here with the HDF5 library in NCHW and NHWC, with
 * gzip chunks of 7 images (a last partial chunk), chunks that also split the
 * rows, and contiguous storage, read through caches smaller than the set:
 * every image equals what the in-memory reader gives, the cache never holds
 * more than its bound, blocks leave least recently used first, one gather
 * reads each block once whatever its order, a damaged chunk fails the gather
 * with 65 naming file, dataset and image, data_open streams exactly when
 * the settings say so, and data.mean/std = auto's figures are the same bits
 * streamed and in memory. The reader child that owns the HDF5 handles: killed
 * or stopped mid-run, or crashing on a fuzz finding, fails the gather with 65
 * naming file and dataset (never a crash or hang), and no child is left.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <hdf5.h>
#include <math.h>
#include <signal.h>

#include "contract.h"
#include "data.h"
#include "data_test_util.h"

#define C 3
#define H 6
#define W 5
#define PX (C * H * W)

/* How to write a set. */
typedef struct spec {
	int n;          /* images in train (test has 4) */
	int nchw;       /* stored layout */
	int chunk;      /* images per chunk (0: contiguous) */
	int split_rows; /* chunks also cut H in two */
	int gzip;
} spec;

static uint8_t pixel(int n, int c, int y, int x)
{
	return (uint8_t)(n * 17 + c * 59 + y * 5 + x * 3 + 1);
}

/* One group's images in the spec's layout and labels i % 7. */
static void put_split(hid_t file, const char *g, int n, const spec *s)
{
	hsize_t dims[4] = {(hsize_t)n, s->nchw ? C : H, s->nchw ? H : W, s->nchw ? W : C};
	uint8_t *img = malloc((size_t)n * PX);
	assert_non_null(img);
	for (int i = 0; i < n; i++)
		for (int c = 0; c < C; c++)
			for (int y = 0; y < H; y++)
				for (int x = 0; x < W; x++) {
					size_t at = s->nchw ? (((size_t)i * C + c) * H + y) * W + x
							    : (((size_t)i * H + y) * W + x) * C + c;
					img[at] = pixel(i, c, y, x);
				}
	hid_t grp = H5Gcreate2(file, g, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	hid_t sp = H5Screate_simple(4, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
	if (s->chunk) {
		hsize_t ch[4] = {(hsize_t)(s->chunk < n ? s->chunk : n), dims[1], dims[2], dims[3]};
		if (s->split_rows)
			ch[s->nchw ? 2 : 1] = H / 2;
		H5Pset_chunk(dcpl, 4, ch);
		if (s->gzip)
			H5Pset_deflate(dcpl, 4);
	}
	hid_t d = H5Dcreate2(grp, "images", H5T_STD_U8LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	assert_true(d >= 0);
	assert_true(H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, img) >= 0);
	if (s->nchw) {
		hid_t t = H5Tcopy(H5T_C_S1), as = H5Screate(H5S_SCALAR);
		H5Tset_size(t, 4);
		hid_t a = H5Acreate2(d, "layout", t, as, H5P_DEFAULT, H5P_DEFAULT);
		assert_true(H5Awrite(a, t, "NCHW") >= 0);
		H5Aclose(a);
		H5Sclose(as);
		H5Tclose(t);
	}
	H5Dclose(d);
	H5Pclose(dcpl);
	H5Sclose(sp);
	uint8_t *lab = malloc((size_t)n);
	for (int i = 0; i < n; i++)
		lab[i] = (uint8_t)(i % 7);
	hsize_t ld[1] = {(hsize_t)n};
	sp = H5Screate_simple(1, ld, NULL);
	d = H5Dcreate2(grp, "labels", H5T_STD_U8LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	assert_true(H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, lab) >= 0);
	H5Dclose(d);
	H5Sclose(sp);
	H5Gclose(grp);
	free(lab);
	free(img);
}

/* Write s to dir/set.h5; returns the path (a copy). */
static char *write_set(dtu *f, const spec *s)
{
	char *path = strdup(dtu_path(f, "set.h5"));
	hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	assert_true(file >= 0);
	put_split(file, "train", s->n, s);
	put_split(file, "test", 4, s);
	H5Fclose(file);
	return path;
}

/* The images idx[0..n) gathered from d equal the generated pixels, NCHW. */
static void check_gather(const dataset *d, const uint32_t *idx, int n)
{
	uint8_t *got = malloc((size_t)n * PX);
	assert_non_null(got);
	assert_int_equal(dataset_gather(d, idx, n, got), 0);
	for (int i = 0; i < n; i++)
		for (int c = 0; c < C; c++)
			for (int y = 0; y < H; y++)
				for (int x = 0; x < W; x++)
					assert_int_equal(got[(((size_t)i * C + c) * H + y) * W + x],
							 pixel((int)idx[i], c, y, x));
	free(got);
}

static data_stream_stats stats(const dataset *d)
{
	data_stream_stats st;
	h5stream_stats(d->stream, &st);
	return st;
}

/*
 * Many random gathers through a cache of `blocks` blocks: every image right, the
 * same as the in-memory reader, the bound held, blocks evicted and read again.
 */
static void stream_whole_set(dtu *f, const spec *s, int blocks, size_t block_images)
{
	char *path = write_set(f, s);
	dataset d, mem;
	size_t cap = (size_t)blocks * block_images * PX;
	assert_int_equal(h5stream_open(path, DATA_TRAIN, cap, &d), 0);
	assert_int_equal(h5set_load(path, DATA_TRAIN, &mem), 0);
	assert_null(d.images);
	assert_int_equal(d.count, s->n);
	assert_int_equal(d.channels, C);
	assert_int_equal(d.rows, H);
	assert_int_equal(d.cols, W);
	assert_memory_equal(d.labels, mem.labels, (size_t)s->n);
	assert_int_equal(stats(&d).block_images, block_images);
	uint32_t idx[16];
	uint8_t a[16 * PX], b[16 * PX];
	uint64_t seed = 12345;
	for (int round = 0; round < 40; round++) {
		for (int i = 0; i < 16; i++) {
			seed = seed * 6364136223846793005u + 1442695040888963407u;
			idx[i] = (uint32_t)((seed >> 33) % (uint64_t)s->n);
		}
		check_gather(&d, idx, 16);
		assert_int_equal(dataset_gather(&d, idx, 16, a), 0);
		assert_int_equal(dataset_gather(&mem, idx, 16, b), 0);
		assert_memory_equal(a, b, sizeof a);
		data_stream_stats st = stats(&d);
		assert_true(st.max_held_bytes <= st.cap_bytes);
		assert_true(st.held_bytes <= cap);
	}
	uint32_t last = (uint32_t)s->n - 1; /* the last, partial block */
	check_gather(&d, &last, 1);
	data_stream_stats st = stats(&d);
	size_t n_blocks = ((size_t)s->n + block_images - 1) / block_images;
	assert_true(st.evictions > 0);
	assert_true(st.blocks_read > n_blocks); /* the set is bigger than the cache: read again */
	assert_true(st.max_held_bytes <= cap);
	assert_int_equal(st.max_held_bytes, (size_t)blocks * block_images * PX); /* it did fill up */
	dataset_free(&d);
	dataset_free(&mem);
	free(path);
}

static void test_nchw_gzip_chunks_of_7(void **state)
{
	spec s = {50, 1, 7, 0, 1}; /* 8 blocks, the last of 1 image */
	stream_whole_set(*state, &s, 3, 7);
}

static void test_nhwc_gzip_chunks_of_7(void **state)
{
	spec s = {50, 0, 7, 0, 1};
	stream_whole_set(*state, &s, 2, 7);
}

static void test_chunks_split_rows(void **state)
{
	spec s = {45, 0, 7, 1, 1}; /* a block is a row of two chunks */
	stream_whole_set(*state, &s, 3, 7);
	spec t = {45, 1, 7, 1, 0};
	stream_whole_set(*state, &t, 3, 7);
}

static void test_contiguous_blocks(void **state)
{
	spec s = {60, 0, 0, 0, 0};
	/* a contiguous set is cut into blocks of a quarter of the cache: 40 images of cache -> 10 */
	stream_whole_set(*state, &s, 4, 10);
	spec t = {60, 1, 0, 0, 0};
	stream_whole_set(*state, &t, 4, 10);
}

/* Gather images of the given blocks (first image of each); returns blocks read so far. */
static uint64_t touch(const dataset *d, const uint32_t *blocks, int n)
{
	uint32_t idx[8];
	for (int i = 0; i < n; i++)
		idx[i] = blocks[i] * 7 + 3;
	check_gather(d, idx, n);
	return stats(d).blocks_read;
}

static void test_lru_order(void **state)
{
	dtu *f = *state;
	spec s = {50, 1, 7, 0, 1};
	char *path = write_set(f, &s);
	dataset d;
	assert_int_equal(h5stream_open(path, DATA_TRAIN, 2 * 7 * PX + 100, &d), 0); /* two blocks */
	assert_int_equal(touch(&d, (uint32_t[]){0}, 1), 1);
	assert_int_equal(touch(&d, (uint32_t[]){1}, 1), 2);
	assert_int_equal(touch(&d, (uint32_t[]){0}, 1), 2); /* hit: 0 is now the most recent */
	assert_int_equal(touch(&d, (uint32_t[]){2}, 1), 3); /* evicts 1, the least recently used */
	assert_int_equal(touch(&d, (uint32_t[]){0}, 1), 3); /* 0 stayed */
	assert_int_equal(touch(&d, (uint32_t[]){1}, 1), 4); /* 1 was the one evicted */
	data_stream_stats st = stats(&d);
	assert_int_equal(st.hits, 2);
	assert_int_equal(st.evictions, 2);
	assert_true(st.max_held_bytes <= st.cap_bytes);
	dataset_free(&d);
	free(path);
}

static void test_gather_reads_each_block_once(void **state)
{
	dtu *f = *state;
	spec s = {50, 1, 7, 0, 1};
	char *path = write_set(f, &s);
	dataset d;
	assert_int_equal(h5stream_open(path, DATA_TRAIN, 7 * PX, &d), 0); /* one block only */
	/* samples of blocks 0, 3, 5 interleaved: read one at a time this would be 12 reads */
	uint32_t idx[12] = {0, 21, 35, 6, 22, 36, 1, 27, 40, 2, 23, 41};
	check_gather(&d, idx, 12);
	data_stream_stats st = stats(&d);
	assert_int_equal(st.blocks_read, 3);
	assert_int_equal(st.max_held_bytes, 7 * PX);
	dataset_free(&d);
	free(path);
}

static void test_cache_too_small(void **state)
{
	dtu *f = *state;
	spec s = {50, 1, 7, 0, 1};
	char *path = write_set(f, &s);
	dataset d;
	dtu_capture_begin(f);
	int rc = h5stream_open(path, DATA_TRAIN, 7 * PX - 1, &d);
	dtu_capture_end(f);
	assert_int_equal(rc, EXIT_USAGE);
	assert_non_null(strstr(f->err, "data.cache_mb"));
	assert_non_null(strstr(f->err, "/train/images"));
	free(path);
}

/* Overwrite the stored bytes of the chunk that starts at image `first` of /train/images with junk. */
static void damage_chunk(const char *path, int first)
{
	hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(file, "/train/images", H5P_DEFAULT);
	hsize_t off[4] = {(hsize_t)first, 0, 0, 0};
	unsigned mask;
	haddr_t addr;
	hsize_t size;
	assert_true(H5Dget_chunk_info_by_coord(d, off, &mask, &addr, &size) >= 0);
	assert_true(size > 0);
	H5Dclose(d);
	H5Fclose(file);
	FILE *fp = fopen(path, "r+b");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, (long)addr, SEEK_SET), 0);
	for (hsize_t i = 0; i < size; i++)
		fputc(0xA5, fp);
	fclose(fp);
}

static void test_damaged_chunk(void **state)
{
	dtu *f = *state;
	spec s = {50, 1, 7, 0, 1};
	char *path = write_set(f, &s);
	damage_chunk(path, 28); /* the chunk of images 28..34 */
	dataset d;
	assert_int_equal(h5stream_open(path, DATA_TRAIN, 3 * 7 * PX, &d), 0); /* the checks at open pass */
	uint32_t ok[2] = {3, 40};
	check_gather(&d, ok, 2);
	uint32_t bad[3] = {1, 30, 45};
	uint8_t out[3 * PX];
	dtu_capture_begin(f);
	int rc = dataset_gather(&d, bad, 3, out);
	dtu_capture_end(f);
	assert_int_equal(rc, EXIT_DATAERR);
	assert_non_null(strstr(f->err, "set.h5"));
	assert_non_null(strstr(f->err, "/train/images"));
	assert_non_null(strstr(f->err, "images 28..34"));
	assert_non_null(strstr(f->err, "image 30"));
	check_gather(&d, ok, 2); /* the rest of the set still reads */
	dataset_free(&d);
	free(path);
}

/* The reader child of a stream (the one child of this process that is alive), or -1. */
static pid_t reader_pid(void)
{
	pid_t found = -1;
	DIR *d = opendir("/proc");
	assert_non_null(d);
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		char p[300], buf[512];
		int pid = atoi(e->d_name), ppid = -1;
		if (pid <= 0)
			continue;
		snprintf(p, sizeof p, "/proc/%d/stat", pid);
		FILE *fp = fopen(p, "r");
		if (!fp)
			continue;
		size_t n = fread(buf, 1, sizeof buf - 1, fp);
		fclose(fp);
		buf[n] = '\0';
		char *q = strrchr(buf, ')'); /* pid (comm) state ppid ... */
		char st;
		if (q && sscanf(q + 1, " %c %d", &st, &ppid) == 2 && ppid == getpid() && st != 'Z')
			found = pid;
	}
	closedir(d);
	return found;
}

/* HDF5 reads a streamed set in a reader child (data_stream.c): when it dies mid-run (as HDF5
 * crashing on a damaged file would), the gather that needs it is 65 naming file and dataset,
 * not a crash or a hang, and closing the stream leaves no child behind. */
static void test_reader_lost_mid_run(void **state)
{
	dtu *f = *state;
	spec s = {50, 1, 7, 0, 1};
	char *path = write_set(f, &s);
	dataset d;
	assert_int_equal(h5stream_open(path, DATA_TRAIN, 7 * PX, &d), 0);
	uint32_t ok[2] = {3, 4};
	check_gather(&d, ok, 2);
	pid_t child = reader_pid();
	assert_true(child > 0);
	assert_int_equal(kill(child, SIGSEGV), 0);
	uint32_t other[1] = {30};
	uint8_t out[PX];
	dtu_capture_begin(f);
	int rc = dataset_gather(&d, other, 1, out);
	dtu_capture_end(f);
	assert_int_equal(rc, EXIT_DATAERR);
	assert_non_null(strstr(f->err, "set.h5"));
	assert_non_null(strstr(f->err, "/train/images"));
	assert_non_null(strstr(f->err, "HDF5 reader crashed (signal 11"));
	dataset_free(&d);
	assert_int_equal(reader_pid(), -1);
	/* a stream that closes normally leaves none either */
	assert_int_equal(h5stream_open(path, DATA_TRAIN, 7 * PX, &d), 0);
	check_gather(&d, ok, 2);
	assert_true(reader_pid() > 0);
	dataset_free(&d);
	assert_int_equal(reader_pid(), -1);
	free(path);
}

/* A reader that stalls (stopped: as HDF5 looping on a damaged file would) fails the gather
 * that waits for it with 65 once the bound passes (SPOTTRAIN_GUARD_BOUND_S, 1 s here), and is
 * killed and reaped: no hang, no child left. */
static void test_reader_stall_is_bounded(void **state)
{
	dtu *f = *state;
	spec s = {50, 1, 7, 0, 1};
	char *path = write_set(f, &s);
	dataset d;
	assert_int_equal(setenv("SPOTTRAIN_GUARD_BOUND_S", "1", 1), 0);
	assert_int_equal(h5stream_open(path, DATA_TRAIN, 7 * PX, &d), 0);
	uint32_t ok[2] = {3, 4};
	check_gather(&d, ok, 2);
	pid_t child = reader_pid();
	assert_true(child > 0);
	assert_int_equal(kill(child, SIGSTOP), 0);
	uint32_t other[1] = {30};
	uint8_t out[PX];
	dtu_capture_begin(f);
	int rc = dataset_gather(&d, other, 1, out);
	dtu_capture_end(f);
	unsetenv("SPOTTRAIN_GUARD_BOUND_S");
	assert_int_equal(rc, EXIT_DATAERR);
	assert_non_null(strstr(f->err, "set.h5: dataset /train/images: the HDF5 reader did not answer within 1 s"));
	assert_int_equal(reader_pid(), -1); /* killed and reaped at once */
	assert_int_equal(dataset_gather(&d, other, 1, out), EXIT_DATAERR); /* and stays failed */
	dataset_free(&d);
	free(path);
}

/* tests/fuzz/findings/h5images/hdf5_select_read_overflow (its mode byte off): it opens, and
 * HDF5 1.10.8 reads out of bounds in H5Dread of its images, which crashed the worker that
 * streamed it. Now the reader child crashes (or ASan ends it) and the gather is 65. */
static void test_reader_crash_on_finding(void **state)
{
	dtu *f = *state;
	const char *tests = getenv("TESTS_DIR");
	char src[1024];
	assert_non_null(tests);
	snprintf(src, sizeof src, "%s/fuzz/findings/h5images/hdf5_select_read_overflow", tests);
	FILE *fp = fopen(src, "rb");
	assert_non_null(fp);
	static uint8_t buf[1 << 20];
	size_t n = fread(buf, 1, sizeof buf, fp);
	fclose(fp);
	assert_true(n > 1);
	assert_int_equal(dtu_write(f, "set.h5", buf + 1, n - 1), 0);
	char path[1100];
	snprintf(path, sizeof path, "%s", dtu_path(f, "set.h5"));
	dataset d;
	assert_int_equal(h5stream_open(path, DATA_TRAIN, 1 << 20, &d), 0);
	uint32_t idx[64];
	int m = d.count < 64 ? (int)d.count : 64;
	for (int i = 0; i < m; i++)
		idx[i] = (uint32_t)i;
	uint8_t *out = malloc((size_t)m * dataset_image_bytes(&d));
	assert_non_null(out);
	dtu_capture_begin(f);
	int rc = dataset_gather(&d, idx, m, out);
	dtu_capture_end(f);
	assert_int_equal(rc, EXIT_DATAERR);
	assert_non_null(strstr(f->err, "set.h5: dataset /train/images: the HDF5 reader "));
	free(out);
	dataset_free(&d);
	assert_int_equal(reader_pid(), -1);
}

static void test_data_open_decides(void **state)
{
	dtu *f = *state;
	spec s = {50, 0, 7, 0, 1};
	free(write_set(f, &s));
	dataset d;
	int streamed = -1;
	data_stream_opts big = {50 * PX, 0}, small = {50 * PX - 1, 0}, force = {0, 1}, off = {0, 0};
	assert_int_equal(data_open(f->dir, DATA_AUTO, DATA_LABEL_FINE, DATA_TRAIN, &big, &d, &streamed), 0);
	assert_int_equal(streamed, 0); /* fits: loaded whole */
	assert_non_null(d.images);
	assert_null(d.stream);
	dataset_free(&d);
	assert_int_equal(data_open(f->dir, DATA_AUTO, DATA_LABEL_FINE, DATA_TRAIN, &small, &d, &streamed), 0);
	assert_int_equal(streamed, 1);
	assert_null(d.images);
	assert_non_null(d.stream);
	assert_int_equal(stats(&d).cap_bytes, 50 * PX - 1);
	uint32_t idx[3] = {49, 0, 25};
	check_gather(&d, idx, 3);
	dataset_free(&d);
	assert_int_equal(data_open(f->dir, DATA_HDF5, DATA_LABEL_FINE, DATA_TEST, &force, &d, &streamed), 0);
	assert_int_equal(streamed, 1);
	assert_int_equal(d.count, 4);
	assert_int_equal(stats(&d).cap_bytes, DATA_STREAM_DEFAULT_CACHE);
	dataset_free(&d);
	assert_int_equal(data_open(f->dir, DATA_HDF5, DATA_LABEL_FINE, DATA_TEST, &off, &d, &streamed), 0);
	assert_int_equal(streamed, 0);
	dataset_free(&d);
}

/* data.mean/std = auto's figures: the same bits streamed and in memory, and the textbook values. */
static void test_channel_stats(void **state)
{
	dtu *f = *state;
	spec s = {50, 0, 7, 0, 1};
	char *path = write_set(f, &s);
	dataset d, mem;
	assert_int_equal(h5stream_open(path, DATA_TRAIN, 2 * 7 * PX, &d), 0);
	assert_int_equal(h5set_load(path, DATA_TRAIN, &mem), 0);
	double m1[C], s1[C], m2[C], s2[C];
	assert_int_equal(dataset_channel_stats(&d, m1, s1, C), 0);
	assert_int_equal(dataset_channel_stats(&mem, m2, s2, C), 0);
	assert_memory_equal(m1, m2, sizeof m1);
	assert_memory_equal(s1, s2, sizeof s1);
	for (int c = 0; c < C; c++) {
		double sum = 0, sq = 0, n = (double)s.n * H * W;
		for (int i = 0; i < s.n; i++)
			for (int y = 0; y < H; y++)
				for (int x = 0; x < W; x++) {
					double v = pixel(i, c, y, x) / 255.0;
					sum += v;
					sq += v * v;
				}
		double mean = sum / n, sd = sqrt(sq / n - mean * mean);
		assert_true(fabs(m1[c] - mean) < 1e-12);
		assert_true(fabs(s1[c] - sd) < 1e-9);
		assert_true(sd > 0.1);
	}
	dataset_free(&d);
	dataset_free(&mem);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_nchw_gzip_chunks_of_7, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_nhwc_gzip_chunks_of_7, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_chunks_split_rows, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_contiguous_blocks, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_lru_order, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_gather_reads_each_block_once, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_cache_too_small, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_damaged_chunk, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_reader_lost_mid_run, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_reader_stall_is_bounded, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_reader_crash_on_finding, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_data_open_decides, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_channel_stats, dtu_setup, dtu_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
