/*
 * test_data_augment.c - the per-sample transform (data_augment.h): without
 * transforms it is bit for bit the backend's plain gather; crops are shifted
 * copies with zero or reflected borders covering every offset; flips mirror;
 * cutout zeroes one bounded square; normalisation is (x/255 - mean) / std;
 * every draw depends on (seed, epoch, sample) alone; bad settings are 64.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "contract.h"
#include "data_augment.h"
#include "ops.h"

#define C 3
#define H 8
#define W 7
#define PX (C * H * W)

/* A source image with no zero pixel (so a zero in the output comes from padding or cutout). */
static void source(uint8_t *img)
{
	for (int i = 0; i < PX; i++)
		img[i] = (uint8_t)(1 + (i * 37) % 250);
}

static void setup_ok(augment *a, int pad, bool reflect, bool flip, int cutout, const char *mean, const char *std)
{
	assert_int_equal(augment_setup(a, pad, reflect, flip, cutout, mean, std, C, H, W), 0);
}

static void test_plain_equals_gather(void **state)
{
	(void)state;
	augment a;
	uint8_t img[PX];
	float got[PX], want[PX];
	uint32_t idx = 0;
	source(img);
	setup_ok(&a, 0, false, false, 0, "", "");
	assert_false(augment_active(&a));
	augment_image(&a, img, H, W, 1, 2, 3, true, got);
	backend_cpu()->gather_images(img, &idx, 1, PX, 1.0f / 255.0f, want);
	assert_memory_equal(got, want, sizeof got);
}

static void test_normalisation(void **state)
{
	(void)state;
	augment a;
	uint8_t img[PX];
	float out[PX];
	source(img);
	setup_ok(&a, 0, false, false, 0, "0.5,0.25,0.125", "0.5, 2, 4");
	assert_true(augment_active(&a));
	augment_image(&a, img, H, W, 1, 0, 0, false, out);
	const float m[C] = {0.5f, 0.25f, 0.125f}, s[C] = {0.5f, 2.0f, 4.0f};
	for (int i = 0; i < PX; i++) {
		float want = ((float)img[i] * (1.0f / 255.0f) - m[i / (H * W)]) / s[i / (H * W)];
		assert_float_equal(out[i], want, 1e-6);
	}
	setup_ok(&a, 0, false, false, 0, "0.5", "0.25"); /* one value for every channel */
	augment_image(&a, img, H, W, 1, 0, 0, false, out);
	assert_float_equal(out[PX - 1], ((float)img[PX - 1] / 255.0f - 0.5f) * 4.0f, 1e-6);
}

/*
 * The (dy, dx, flip) that explains out as a shifted copy of img (zero outside, or reflected),
 * or fail. Returns dy * 100 + dx + flip * 10000 offsets shifted to be non-negative.
 */
static int explain(const uint8_t *img, const float *out, int pad, bool reflect)
{
	for (int flip = 0; flip < 2; flip++)
		for (int dy = -pad; dy <= pad; dy++)
			for (int dx = -pad; dx <= pad; dx++) {
				int ok = 1;
				for (int c = 0; c < C && ok; c++)
					for (int y = 0; y < H && ok; y++)
						for (int x = 0; x < W && ok; x++) {
							int sx = (flip ? W - 1 - x : x) + dx, sy = y + dy;
							if (reflect) {
								sx = sx < 0 ? -sx : sx >= W ? 2 * W - 2 - sx : sx;
								sy = sy < 0 ? -sy : sy >= H ? 2 * H - 2 - sy : sy;
							}
							int v = sx < 0 || sx >= W || sy < 0 || sy >= H
									? 0 : img[(c * H + sy) * W + sx];
							ok = out[(c * H + y) * W + x] == (float)v * (1.0f / 255.0f);
						}
				if (ok)
					return flip * 10000 + (dy + pad) * 100 + (dx + pad);
			}
	fail_msg("the output is not a shifted copy of the image");
	return -1;
}

/* Over many samples every crop offset and both flips occur, each a valid shifted copy. */
static void crops_cover(bool reflect)
{
	augment a;
	uint8_t img[PX];
	float out[PX];
	int seen[2][5][5] = {{{0}}};
	source(img);
	setup_ok(&a, 2, reflect, true, 0, "", "");
	for (uint32_t s = 0; s < 600; s++) {
		augment_image(&a, img, H, W, 7, 1, s, true, out);
		if (reflect)
			for (int i = 0; i < PX; i++)
				assert_true(out[i] > 0); /* reflection never brings a zero in */
		int e = explain(img, out, 2, reflect);
		seen[e / 10000][e / 100 % 100][e % 100]++;
	}
	for (int f = 0; f < 2; f++)
		for (int y = 0; y < 5; y++)
			for (int x = 0; x < 5; x++)
				assert_true(seen[f][y][x] > 0);
}

static void test_zero_pad_crops(void **state)
{
	(void)state;
	crops_cover(false);
}

static void test_reflect_crops(void **state)
{
	(void)state;
	crops_cover(true);
}

static void test_cutout(void **state)
{
	(void)state;
	augment a;
	uint8_t img[PX];
	float out[PX];
	source(img);
	setup_ok(&a, 0, false, false, 3, "", "");
	int total = 0;
	for (uint32_t s = 0; s < 50; s++) {
		augment_image(&a, img, H, W, 3, 0, s, true, out);
		int zeros = 0;
		for (int i = 0; i < PX; i++)
			zeros += out[i] == 0.0f;
		assert_true(zeros <= 3 * 3 * C);
		assert_int_equal(zeros % C, 0); /* the same square in every channel */
		total += zeros;
	}
	assert_true(total > 0);
	augment_image(&a, img, H, W, 3, 0, 0, false, out); /* test images are never cut */
	for (int i = 0; i < PX; i++)
		assert_true(out[i] > 0);
}

/* The draws depend on (seed, epoch, sample) only: the same key, the same bits, in any order. */
static void test_keyed_per_sample(void **state)
{
	(void)state;
	augment a;
	uint8_t img[PX];
	static float fwd[64][PX], bwd[64][PX];
	float other[PX];
	source(img);
	setup_ok(&a, 2, false, true, 2, "0.4", "0.2");
	for (uint32_t s = 0; s < 64; s++)
		augment_image(&a, img, H, W, 11, 5, s, true, fwd[s]);
	for (int s = 63; s >= 0; s--)
		augment_image(&a, img, H, W, 11, 5, (uint32_t)s, true, bwd[s]);
	assert_memory_equal(fwd, bwd, sizeof fwd);
	int differ_epoch = 0, differ_seed = 0;
	for (uint32_t s = 0; s < 64; s++) {
		augment_image(&a, img, H, W, 11, 6, s, true, other);
		differ_epoch += memcmp(other, fwd[s], sizeof other) != 0;
		augment_image(&a, img, H, W, 12, 5, s, true, other);
		differ_seed += memcmp(other, fwd[s], sizeof other) != 0;
	}
	assert_true(differ_epoch > 32);
	assert_true(differ_seed > 32);
}

static void test_bad_settings(void **state)
{
	(void)state;
	augment a;
	assert_int_equal(augment_setup(&a, 0, false, false, 0, "0.5,0.5", "0.2", C, H, W), EXIT_USAGE);
	assert_int_equal(augment_setup(&a, 0, false, false, 0, "0.5", "0", C, H, W), EXIT_USAGE);
	assert_int_equal(augment_setup(&a, 0, false, false, 0, "0.5", "", C, H, W), EXIT_USAGE);
	assert_int_equal(augment_setup(&a, 0, false, false, 0, "x", "1", C, H, W), EXIT_USAGE);
	assert_int_equal(augment_setup(&a, 0, false, false, 0, "0.1,0.2,0.3,0.4", "1", C, H, W), EXIT_USAGE);
	assert_int_equal(augment_setup(&a, H, true, false, 0, "", "", C, H, W), EXIT_USAGE);
	assert_int_equal(augment_setup(&a, H, false, false, 0, "", "", C, H, W), 0); /* zero pad: any size */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_equals_gather),
		cmocka_unit_test(test_normalisation),
		cmocka_unit_test(test_zero_pad_crops),
		cmocka_unit_test(test_reflect_crops),
		cmocka_unit_test(test_cutout),
		cmocka_unit_test(test_keyed_per_sample),
		cmocka_unit_test(test_bad_settings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
