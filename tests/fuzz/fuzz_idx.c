/*
 * fuzz_idx.c - IDX files (raw or gzip) through the dataset loader.
 * Input: one mode byte, then
 *   mode even: a 4-byte little-endian length L, then the images file (its
 *              first L mod rest bytes) and the labels file (the rest): the
 *              pair goes through dataset_load (headers cross-checked first);
 *   mode odd:  one file through idx_load, as images (mode & 2) or labels.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char images[512], labels[512];
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	data++;
	size--;
	fuzz_path(images, sizeof images, "train-images-idx3-ubyte");
	fuzz_path(labels, sizeof labels, "train-labels-idx1-ubyte");
	if (mode & 1) {
		uint32_t dims[3];
		uint8_t *out = NULL;
		fuzz_write(images, data, size);
		if (idx_load(images, mode & 2 ? 0x803 : 0x801, dims, &out) == 0)
			free(out);
		return 0;
	}
	if (size < 4)
		return 0;
	uint32_t l = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 | (uint32_t)data[3] << 24;
	data += 4;
	size -= 4;
	size_t n_images = size ? l % (size + 1) : 0;
	fuzz_write(images, data, n_images);
	fuzz_write(labels, data + n_images, size - n_images);
	dataset d;
	memset(&d, 0, sizeof d);
	if (dataset_load(fuzz_dir(), "train", &d) == 0)
		dataset_free(&d);
	return 0;
}
