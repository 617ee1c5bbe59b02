/*
 * fuzz_ckpt.c - checkpoint files: the seal, then HDF5 and the validating
 * reader, as resume, eval --ckpt, --init-from and inspect use them.
 * Input: one flag byte, then the file. Flag bit 0: re-stamp the seal over the
 * (mutated) file first, as a hostile or careless tool could, so that the
 * inputs reach HDF5 and the checks behind the seal; without it the seal
 * itself is what is fuzzed. The reads use a small fixed model (the one of
 * unit.test_ckpt) with Adam's two states.
 *
 * FUZZ_CKPT_SEED=PATH: instead of fuzzing, write a seed input (flag 1, a whole
 * sealed checkpoint of that model) to PATH and exit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "ckpt_internal.h"
#include "fuzz_hdf5.h"
#include "fuzz_util.h"

#define CONFIG_TEXT "[train]\nepochs = 12\noptimizer = adam\n\n[layer.conv1]\ntype = conv2d\n"

static model fz_model;
static float *fz_buf[3];
static FILE *fz_null;

static void add_tensor(model *m, const char *name, int ndim, const int *dims)
{
	tensor_view *t = &m->tensors[m->n_tensors++];
	snprintf(t->name, sizeof t->name, "%s", name);
	t->ndim = ndim;
	t->numel = 1;
	for (int d = 0; d < ndim; d++) {
		t->dims[d] = dims[d];
		t->numel *= (size_t)dims[d];
	}
	t->offset = m->n_params;
	m->n_params += t->numel;
}

static ckpt_buffers buffers(void)
{
	return (ckpt_buffers){ .params = fz_buf[0], .n_states = 2, .state_names = { "exp_avg", "exp_avg_sq" },
			       .states = { fz_buf[1], fz_buf[2] } };
}

/* Write a seed input (flag byte 1 + a sealed checkpoint) to path. */
static int write_seed(const char *path)
{
	char tmp[512], why[512];
	ckpt_meta mt = { .step = 1200, .epoch = 3, .sample_in_epoch = 512, .global_batch = 128, .world_size = 4,
			 .generation = 2, .seed = 42, .wall_time_s = 123.5, .model_hash = fz_model.hash,
			 .optimizer = "adam", .lr = 0.001f, .optim_step = 1200, .config_text = CONFIG_TEXT };
	ckpt_buffers b = buffers();
	for (size_t i = 0; i < fz_model.n_params; i++)
		for (int k = 0; k < 3; k++)
			fz_buf[k][i] = (float)((i * 7 + (size_t)k) % 13) / 8.0f;
	fuzz_path(tmp, sizeof tmp, "seed.h5");
	if (ckpt_write(tmp, &fz_model, &mt, &b) != 0)
		return 1;
	FILE *in = fopen(tmp, "rb"), *out = fopen(path, "wb");
	if (!in || !out)
		return 1;
	fputc(1, out);
	for (int ch; (ch = fgetc(in)) != EOF;)
		fputc(ch, out);
	fclose(in);
	(void)why;
	return fclose(out) != 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	add_tensor(&fz_model, "conv1.weight", 4, (const int[]){ 4, 1, 3, 3 });
	add_tensor(&fz_model, "conv1.bias", 1, (const int[]){ 4 });
	add_tensor(&fz_model, "fc1.weight", 2, (const int[]){ 10, 16 });
	add_tensor(&fz_model, "fc1.bias", 1, (const int[]){ 10 });
	fz_model.hash = 0x5eed5eed12345678ull;
	for (int k = 0; k < 3; k++)
		if (!(fz_buf[k] = calloc(fz_model.n_params, sizeof(float))))
			abort();
	fz_null = fopen("/dev/null", "w");
	fuzz_hdf5_setup();
	setenv("SPOTTRAIN_H5_GUARD", "0", 1); /* the reads would fork per input: fuzz HDF5 in-process */
	const char *seed = getenv("FUZZ_CKPT_SEED");
	if (seed)
		exit(write_seed(seed));
	return 0;
}

/* Little-endian integers of the seal. */
static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[512], why[1024];
	if (size < 1)
		return 0;
	uint8_t flag = data[0];
	size_t n = size - 1;
	uint8_t *img = malloc(n ? n : 1);
	if (!img)
		abort();
	memcpy(img, data + 1, n);
	if ((flag & 1) && n >= CKPT_SEAL_SIZE) {
		const uint8_t *seal = img + n - CKPT_SEAL_SIZE;
		ckpt_seal_image(img, n - CKPT_SEAL_SIZE, (long)le64(seal + 24), seal[32] & 1);
	}
	fuzz_path(path, sizeof path, "ckpt-00001200.h5");
	fuzz_write(path, img, n);
	free(img);

	ckpt_meta mt;
	if (ckpt_read_meta_quiet(path, &mt, why, sizeof why) == 0)
		ckpt_meta_free(&mt);
	ckpt_buffers b = buffers();
	if (ckpt_read_quiet(path, &fz_model, false, &mt, &b, why, sizeof why) == 0)
		ckpt_meta_free(&mt);
	if (ckpt_read_quiet(path, &fz_model, true, &mt, &b, why, sizeof why) == 0)
		ckpt_meta_free(&mt);
	ckpt_inspect(path, fz_null);
	return 0;
}
