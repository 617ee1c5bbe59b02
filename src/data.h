/*
 * data.h - MNIST-format IDX datasets (images 0x00000803, labels 0x00000801),
 * gzip-compressed (.gz, through zlib) or raw.
 */
#ifndef SPOTTRAIN_DATA_H
#define SPOTTRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

typedef struct dataset {
	size_t count;    /* number of samples */
	int rows, cols;  /* image size; channels are 1 */
	uint8_t *images; /* count * rows * cols pixels, sample after sample */
	uint8_t *labels; /* count labels */
	int max_label;   /* largest label value present */
} dataset;

/*
 * Load one split ("train" or "t10k") from dir: looks for
 * <split>-images-idx3-ubyte[.gz] and <split>-labels-idx1-ubyte[.gz]
 * (also the <split>-images.idx3-ubyte spelling). Validates magic, dimensions, item counts,
 * image/label agreement and (for raw files) file size before allocating; compressed
 * files are checked against the declared size while inflating. Never trusts a header
 * to size an allocation beyond 1<<31 bytes.
 * Returns 0, or EXIT_NOINPUT (66) when a file is missing, EXIT_DATAERR (65) when a
 * file is malformed, with a message naming the file and what is wrong.
 */
int dataset_load(const char *dir, const char *split, dataset *out);

/* Load one IDX file by path: expected_magic 0x803 or 0x801. For images dims = {count, rows, cols},
 * for labels dims = {count}. *data is malloc'ed. Same return codes as dataset_load. */
int idx_load(const char *path, uint32_t expected_magic, uint32_t dims[3], uint8_t **data);

void dataset_free(dataset *d);

#endif
