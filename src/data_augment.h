/*
 * data_augment.h - the per-sample transform from a dataset image (uint8, CxHxW)
 * to the network's input (float): random crop after zero or reflect padding,
 * horizontal flip, cutout, then per-channel normalisation.
 *
 * Every random choice of a sample is drawn from Philox keyed by (seed, epoch)
 * at counter (sample index, 0, 0, PHILOX_AUGMENT): one draw per sample gives
 * the crop offsets, the flip and the cutout centre. Nothing depends on the
 * rank, the thread, the step or the order samples are processed in, so
 * augmentation is the same for every world size and thread count and a
 * resumed run continues it exactly (DESIGN.md invariant 1).
 */
#ifndef SPOTTRAIN_DATA_AUGMENT_H
#define SPOTTRAIN_DATA_AUGMENT_H

#include <stdbool.h>
#include <stdint.h>

#define AUG_MAX_CHANNELS 64

typedef struct augment {
	int crop_pad;   /* pad by P pixels, then crop HxW at offsets drawn in [0, 2P] (0: off) */
	bool reflect;   /* pad by reflection (without repeating the edge) instead of zeros */
	bool flip;      /* mirror left-right with probability 1/2 */
	int cutout;     /* zero a square of this side centred at a drawn pixel (0: off) */
	int channels;   /* C of the images the normalisation below is for */
	bool normalize; /* mean/std were given */
	float mean[AUG_MAX_CHANNELS], inv_std[AUG_MAX_CHANNELS]; /* in units of 1/255 pixel scale */
} augment;

/*
 * Fill a from the config's values: crop_pad, reflect, flip, cutout, and mean and
 * std as comma-separated lists ("" = no normalisation; one value or one per channel,
 * std > 0) for images of c channels and hxw pixels. Returns 0, or EXIT_USAGE (64)
 * with a message naming the key.
 */
int augment_setup(augment *a, int crop_pad, bool reflect, bool flip, int cutout, const char *mean,
		  const char *std, int c, int h, int w);

/* True when training samples go through something other than x/255 (the plain gather). */
bool augment_active(const augment *a);

/*
 * One image src (CxHxW uint8) into out (CxHxW float): with train, the random
 * transforms of sample `sample` in epoch `epoch` under seed; always the
 * normalisation (x/255, then (x - mean) / std when given). Pure: the same
 * arguments give the same bits.
 */
void augment_image(const augment *a, const uint8_t *src, int h, int w, uint32_t seed, uint32_t epoch,
		   uint32_t sample, bool train, float *out);

#endif
