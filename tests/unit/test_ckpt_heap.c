/*
 * test_ckpt_heap.c - checkpoint strings never reach HDF5's global heap
 * (issue 18): format 2 writes fixed-length strings, and a variable-length
 * string (format 1, or a hostile file) is refused before HDF5 reads its
 * value, even behind a valid seal over a damaged heap, which crashed every
 * reader (resume, eval --ckpt, --init-from, inspect) before.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <hdf5.h>

#include "ckpt.h"
#include "ckpt_internal.h"
#include "contract.h"

#define CONFIG_TEXT "[train]\nepochs = 3\noptimizer = adam\n"

typedef struct fixture {
	char dir[64];
	model m;
	float *buf[3];
	ckpt_buffers b;
	ckpt_meta meta;
} fixture;

static void add_tensor(model *m, const char *name, int ndim, const int *dims)
{
	tensor_view *t = &m->tensors[m->n_tensors++];
	snprintf(t->name, sizeof t->name, "%s", name);
	t->ndim = ndim;
	t->numel = 1;
	for (int d = 0; d < ndim; d++)
		t->numel *= (size_t)(t->dims[d] = dims[d]);
	t->offset = m->n_params;
	m->n_params += t->numel;
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/test_ckpt_heap.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	add_tensor(&f->m, "fc.weight", 2, (const int[]){ 10, 8 });
	add_tensor(&f->m, "fc.bias", 1, (const int[]){ 10 });
	f->m.hash = 0x1234abcd5678ef00ull;
	for (int k = 0; k < 3; k++) {
		f->buf[k] = calloc(f->m.n_params, sizeof(float));
		for (size_t i = 0; i < f->m.n_params; i++)
			f->buf[k][i] = (float)(i % 7) + (float)k / 4.0f;
	}
	f->b = (ckpt_buffers){ .params = f->buf[0], .n_states = 2, .state_names = { "exp_avg", "exp_avg_sq" },
			       .states = { f->buf[1], f->buf[2] } };
	f->meta = (ckpt_meta){ .step = 1200, .epoch = 1, .sample_in_epoch = 64, .global_batch = 32, .world_size = 2,
			       .seed = 7, .wall_time_s = 3.5, .model_hash = f->m.hash, .optimizer = "adam",
			       .lr = 0.001f, .optim_step = 1200, .config_text = CONFIG_TEXT };
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	for (int k = 0; k < 3; k++)
		free(f->buf[k]);
	free(f);
	return 0;
}

/* Write the fixture's checkpoint of step to DIR/ckpt-<step>.h5, path into out. */
static void write_ckpt(fixture *f, long step, char *out, size_t len)
{
	ckpt_path(f->dir, step, out, len);
	f->meta.step = f->meta.optim_step = step;
	assert_int_equal(ckpt_write(out, &f->m, &f->meta, &f->b), 0);
}

/* The whole file in memory (malloc'ed), its size in *n. */
static unsigned char *slurp(const char *path, size_t *n)
{
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	*n = (size_t)ftell(fp);
	rewind(fp);
	unsigned char *d = malloc(*n);
	assert_int_equal(fread(d, 1, *n, fp), *n);
	fclose(fp);
	return d;
}

/* Offset of "GCOL" (a global heap collection) in the file, or -1. */
static long heap_offset(const char *path)
{
	size_t n;
	unsigned char *d = slurp(path, &n);
	long at = -1;
	for (size_t i = 0; i + 4 <= n && at < 0; i++)
		if (memcmp(d + i, "GCOL", 4) == 0)
			at = (long)i;
	free(d);
	return at;
}

/* Is attribute name of / a variable-length string? */
static int root_attr_is_vlen(const char *path, const char *name)
{
	hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
	assert_true(file >= 0);
	hid_t a = H5Aopen(file, name, H5P_DEFAULT), t = H5Aget_type(a);
	int v = H5Tis_variable_str(t);
	H5Tclose(t);
	H5Aclose(a);
	H5Fclose(file);
	return v;
}

/* Rewrite root attribute config as a variable-length string (what format 1 wrote), then,
 * when damage is set, make the first heap object's size huge; seal the file again. */
static void make_vlen_config(const char *path, long step, bool damage)
{
	char why[512];
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
	hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
	assert_true(file >= 0);
	assert_true(H5Adelete(file, "config") >= 0);
	hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
	assert_true(H5Tset_size(t, H5T_VARIABLE) >= 0);
	hid_t a = H5Acreate2(file, "config", t, sp, H5P_DEFAULT, H5P_DEFAULT);
	const char *text = CONFIG_TEXT;
	assert_true(a >= 0 && H5Awrite(a, t, &text) >= 0);
	H5Aclose(a);
	H5Sclose(sp);
	H5Tclose(t);
	assert_true(H5Fclose(file) >= 0);
	long at = heap_offset(path);
	assert_true(at > 0);
	if (damage) {
		/* collection header (16 bytes), then object 1: index, references, reserved, size */
		FILE *fp = fopen(path, "r+b");
		unsigned char huge[8] = { 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f };
		assert_int_equal(fseek(fp, at + 16 + 8, SEEK_SET), 0);
		assert_int_equal(fwrite(huge, 1, 8, fp), 8);
		fclose(fp);
	}
	if (ckpt_seal(path, step, false, why, sizeof why) != 0)
		fail_msg("%s", why);
}

/* Format 2: every string attribute is fixed-length, and the file holds no global heap. */
static void test_strings_are_fixed_length(void **state)
{
	fixture *f = *state;
	char p[256], why[512];
	write_ckpt(f, 1200, p, sizeof p);
	assert_int_equal(root_attr_is_vlen(p, "format"), 0);
	assert_int_equal(root_attr_is_vlen(p, "config"), 0);
	assert_int_equal(heap_offset(p), -1);
	ckpt_meta mt;
	assert_int_equal(ckpt_read_meta_quiet(p, &mt, why, sizeof why), 0);
	assert_string_equal(mt.config_text, CONFIG_TEXT);
	assert_string_equal(mt.optimizer, "adam");
	ckpt_meta_free(&mt);
}

/* Texts of any length the config allows, and the empty one, come back exactly. */
static void test_long_and_empty_texts_round_trip(void **state)
{
	fixture *f = *state;
	char p[256], why[512];
	size_t n = 300000;
	char *big = malloc(n + 1);
	for (size_t i = 0; i < n; i++)
		big[i] = i % 61 == 60 ? '\n' : (char)('a' + i % 26);
	big[n] = 0;
	const char *texts[] = { big, "" };
	for (int k = 0; k < 2; k++) {
		f->meta.config_text = (char *)texts[k];
		write_ckpt(f, 100 + k, p, sizeof p);
		ckpt_meta mt;
		ckpt_buffers b = f->b;
		assert_int_equal(ckpt_read_quiet(p, &f->m, false, &mt, &b, why, sizeof why), 0);
		assert_string_equal(mt.config_text, texts[k]);
		ckpt_meta_free(&mt);
	}
	free(big);
}

/* The crash of issue 18: a valid seal over a damaged global heap. Every reader refuses the file
 * (65, naming the attribute) without HDF5 reading the heap; resume takes the older checkpoint. */
static void test_damaged_heap_behind_a_valid_seal_is_refused(void **state)
{
	fixture *f = *state;
	char older[256], p[256], found[256], why[1024];
	write_ckpt(f, 1100, older, sizeof older);
	write_ckpt(f, 1200, p, sizeof p);
	make_vlen_config(p, 1200, true);
	ckpt_meta mt;
	ckpt_buffers b = f->b;
	assert_int_equal(ckpt_read_quiet(p, &f->m, false, &mt, &b, why, sizeof why), EXIT_DATAERR);
	assert_non_null(strstr(why, "variable-length string"));
	assert_non_null(strstr(why, "config"));
	assert_int_equal(ckpt_read_quiet(p, &f->m, true, &mt, &b, why, sizeof why), EXIT_DATAERR);
	assert_int_equal(ckpt_read_meta_quiet(p, &mt, why, sizeof why), EXIT_DATAERR);
	FILE *null = fopen("/dev/null", "w");
	assert_int_equal(ckpt_inspect(p, null), EXIT_DATAERR);
	fclose(null);
	long step = -1;
	assert_int_equal(ckpt_find_newest(f->dir, &f->m, &b, found, sizeof found, &step), 0);
	assert_int_equal(step, 1100);
	assert_string_equal(found, older);
}

/* A whole format-1 style file (variable-length string, heap intact) is refused just the same:
 * whether a heap is damaged is not something the reader can know before HDF5 reads it. */
static void test_intact_variable_length_string_is_refused(void **state)
{
	fixture *f = *state;
	char p[256], why[1024];
	write_ckpt(f, 1200, p, sizeof p);
	make_vlen_config(p, 1200, false);
	ckpt_meta mt;
	assert_int_equal(ckpt_read_meta_quiet(p, &mt, why, sizeof why), EXIT_DATAERR);
	assert_non_null(strstr(why, "format 1"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_strings_are_fixed_length, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_and_empty_texts_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_heap_behind_a_valid_seal_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_intact_variable_length_string_is_refused, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
