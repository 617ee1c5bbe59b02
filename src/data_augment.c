/*
 * data_augment.c - the per-sample transform of a training or test image
 * (data_augment.h): crop, flip, cutout drawn per (seed, epoch, sample), and
 * per-channel normalisation.
 */
#include "data_augment.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "contract.h"
#include "log.h"
#include "philox.h"

#define AUG_MAX_SIDE 4096

/*
 * Parse "v0,v1,..." into out: one value (used for every channel) or exactly c.
 * Returns 0 with out filled, or EXIT_USAGE naming key. positive: each value > 0.
 */
static int parse_list(const char *text, const char *key, int c, bool positive, float *out)
{
	double v[AUG_MAX_CHANNELS];
	int n = 0;
	const char *p = text;
	while (*p && n < AUG_MAX_CHANNELS) {
		char item[64];
		size_t len = strcspn(p, ",");
		if (len >= sizeof item)
			len = sizeof item - 1;
		memcpy(item, p, len);
		item[len] = '\0';
		if (!config_parse_number(item, &v[n]) || (positive && v[n] <= 0)) {
			log_error("data.%s: '%s' is not a %snumber (a comma-separated list, one per channel)", key,
				  item, positive ? "positive " : "");
			return EXIT_USAGE;
		}
		n++;
		p += strcspn(p, ",");
		if (*p == ',')
			p++;
	}
	if (n != 1 && n != c) {
		log_error("data.%s: %d values for images of %d channels (give 1 or %d)", key, n, c, c);
		return EXIT_USAGE;
	}
	for (int i = 0; i < c; i++)
		out[i] = (float)v[n == 1 ? 0 : i];
	return 0;
}

int augment_setup(augment *a, int crop_pad, bool reflect, bool flip, int cutout, const char *mean,
		  const char *std, int c, int h, int w)
{
	memset(a, 0, sizeof *a);
	if (c < 1 || c > AUG_MAX_CHANNELS || h < 1 || h > AUG_MAX_SIDE || w < 1 || w > AUG_MAX_SIDE) {
		log_error("data augmentation: images of %dx%dx%d are outside the limits (C <= %d, H, W <= %d)", c, h,
			  w, AUG_MAX_CHANNELS, AUG_MAX_SIDE);
		return EXIT_USAGE;
	}
	if (reflect && crop_pad > 0 && (crop_pad >= h || crop_pad >= w)) {
		log_error("data.crop_pad = %d with pad_mode = reflect needs images larger than the pad (%dx%d)",
			  crop_pad, h, w);
		return EXIT_USAGE;
	}
	if (!mean[0] != !std[0]) {
		log_error("data.mean and data.std go together: set both or neither");
		return EXIT_USAGE;
	}
	*a = (augment){crop_pad, reflect, flip, cutout, c, mean[0] != '\0', {0}, {0}};
	float sd[AUG_MAX_CHANNELS];
	if (a->normalize && (parse_list(mean, "mean", c, false, a->mean) || parse_list(std, "std", c, true, sd)))
		return EXIT_USAGE;
	for (int i = 0; a->normalize && i < c; i++)
		a->inv_std[i] = 1.0f / sd[i];
	return 0;
}

bool augment_active(const augment *a)
{
	return a->crop_pad > 0 || a->flip || a->cutout > 0 || a->normalize;
}

/* Where output index i reads from after shifting by d in a side of n: -1 for the zero pad. */
static int source_index(int i, int d, int n, bool reflect)
{
	int s = i + d;
	if (s >= 0 && s < n)
		return s;
	if (!reflect)
		return -1;
	s = s < 0 ? -s : 2 * n - 2 - s;
	return s >= 0 && s < n ? s : -1;
}

/* True when (y, x) lies in the cutout square of side `side` centred at (cy, cx). */
static bool in_cutout(int y, int x, int cy, int cx, int side)
{
	int lo_y = cy - side / 2, lo_x = cx - side / 2;
	return side > 0 && y >= lo_y && y < lo_y + side && x >= lo_x && x < lo_x + side;
}

void augment_image(const augment *a, const uint8_t *src, int h, int w, uint32_t seed, uint32_t epoch,
		   uint32_t sample, bool train, float *out)
{
	int dx = 0, dy = 0, cy = 0, cx = 0, cut = 0;
	bool flip = false;
	if (train && (a->crop_pad > 0 || a->flip || a->cutout > 0)) {
		philox_key k = {{seed, epoch}};
		philox_ctr c = {{sample, 0, 0, PHILOX_AUGMENT}};
		philox_ctr r = philox4x32(c, k);
		uint32_t span = 2u * (uint32_t)a->crop_pad + 1u;
		dx = a->crop_pad > 0 ? (int)(r.v[0] % span) - a->crop_pad : 0;
		dy = a->crop_pad > 0 ? (int)(r.v[1] % span) - a->crop_pad : 0;
		flip = a->flip && (r.v[2] >> 31);
		cut = a->cutout;
		cy = (int)((r.v[3] >> 16) % (uint32_t)h);
		cx = (int)((r.v[3] & 0xffffu) % (uint32_t)w);
	}
	int sx[AUG_MAX_SIDE], sy[AUG_MAX_SIDE];
	for (int x = 0; x < w; x++)
		sx[x] = source_index(flip ? w - 1 - x : x, dx, w, a->reflect);
	for (int y = 0; y < h; y++)
		sy[y] = source_index(y, dy, h, a->reflect);
	const float scale = 1.0f / 255.0f;
	for (int ch = 0; ch < a->channels; ch++) {
		const uint8_t *plane = src + (size_t)ch * (size_t)h * (size_t)w;
		float *o = out + (size_t)ch * (size_t)h * (size_t)w;
		for (int y = 0; y < h; y++) {
			for (int x = 0; x < w; x++) {
				int v = sy[y] < 0 || sx[x] < 0 ? 0 : plane[(size_t)sy[y] * (size_t)w + (size_t)sx[x]];
				float f = (float)v * scale;
				if (a->normalize)
					f = (f - a->mean[ch]) * a->inv_std[ch];
				o[(size_t)y * (size_t)w + (size_t)x] = in_cutout(y, x, cy, cx, cut) ? 0.0f : f;
			}
		}
	}
}
