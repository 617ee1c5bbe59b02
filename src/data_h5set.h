/*
 * data_h5set.h - what the two readers of an HDF5 image set share (internal):
 * data_hdf5.c loads a split whole, data_stream.c reads it on demand. Both
 * open and check a split the same way (signature, types, ranks, counts,
 * layout, limits) and take the library lock of ckpt_h5.h around HDF5 calls.
 */
#ifndef SPOTTRAIN_DATA_H5SET_H
#define SPOTTRAIN_DATA_H5SET_H

#include <hdf5.h>
#include <stdint.h>

#include "data.h"

#define H5SET_MAX_BYTES (UINT64_C(1) << 33)    /* largest pixel payload loaded into memory */
#define H5SET_MAX_STREAM (UINT64_C(1) << 42)   /* largest pixel payload streamed (data_stream.c) */

/* What one split's reading needs to know. */
typedef struct h5set {
	const char *path;
	char img_name[32], lbl_name[32]; /* "/train/images" */
	hid_t file, images, labels;
	hid_t images_dapl;               /* access list the images open with (H5P_DEFAULT: none) */
	hsize_t dims[4];                 /* as stored */
	int nchw;                        /* 1: stored N x C x H x W */
} h5set;

/* A regular file that starts with the HDF5 signature. 0, or an exit code with a message. */
int h5set_check_signature(const char *path);
/*
 * Lock held: open s->path and split's datasets, check them, the pixels at most
 * max_bytes (the message names the setting that raises it when stream_hint).
 * 0 or EXIT_DATAERR with a message; h5set_close afterwards in any case.
 */
int h5set_open(h5set *s, data_split split, uint64_t max_bytes, int stream_hint);
void h5set_close(h5set *s);
/* Lock held: all labels into out (dims[0] of them), each checked to be 0..255. */
int h5set_read_labels(const h5set *s, uint8_t *out);
/* n images in the stored layout at blk into out, NCHW. */
void h5set_to_nchw(const h5set *s, const uint8_t *blk, size_t n, uint8_t *out);
/* C, H, W of the images whatever the layout. */
void h5set_shape(const h5set *s, int *c, int *h, int *w);

#endif
