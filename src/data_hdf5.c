/*
 * data_hdf5.c - the HDF5 image set (data.h; README "Data").
 *
 *   /train/images  uint8, rank 4: N x H x W x C, or N x C x H x W when its
 *                  attribute "layout" says "NCHW" (default "NHWC"); a fixed-length
 *                  string: a variable-length one is refused unread (read_layout)
 *   /train/labels  integer, rank 1, N values in 0..255
 *   /test/images, /test/labels   the same for the test split
 *   /classes       optional: the class names (not read here)
 *
 * Chunked and compressed files are fine: images are read by hyperslabs of
 * H5SET_BLOCK images (a bounded staging buffer), transposed to NCHW on the
 * way. Type, rank, sizes and every label are checked before the data is
 * kept; errors name the file, the dataset and the position. The opening and
 * checks are shared with data_stream.c (data_h5set.h), which reads a split on
 * demand instead. These and ckpt_h5.c are the data and checkpoint sides of
 * HDF5; the library lock of ckpt_h5.h is held around every HDF5 call.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "data.h"

#include <hdf5.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt_h5.h"
#include "data_h5set.h"
#include "contract.h"
#include "log.h"

#define H5SET_BLOCK 1024                   /* images per hyperslab read */
#define H5SET_MAX_SIDE 4096                /* largest H or W */
#define H5SET_MAX_CHANNELS 64

int h5set_check_signature(const char *path)
{
	static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
	struct stat st;
	if (stat(path, &st) != 0) {
		log_error("%s: cannot open: %s", path, strerror(errno));
		return EXIT_NOINPUT;
	}
	if (!S_ISREG(st.st_mode)) {
		log_error("%s: is not a regular file", path);
		return EXIT_DATAERR;
	}
	unsigned char head[8] = {0};
	FILE *f = fopen(path, "rb");
	size_t got = f ? fread(head, 1, 8, f) : 0;
	if (f)
		fclose(f);
	if (got != 8 || memcmp(head, sig, 8) != 0) {
		log_error("%s: byte offset 0: no HDF5 signature (not an HDF5 file, or truncated)", path);
		return EXIT_DATAERR;
	}
	return 0;
}

/*
 * The "layout" attribute of the images: 0 NHWC (also when absent), 1 NCHW, -1 bad (logged).
 * Only a fixed-length string is read: its bytes sit in the attribute itself. A variable-length
 * string (h5py's default for a str) keeps them in HDF5's global heap, whose reader trusts the
 * sizes it finds there (a damaged heap made H5Aread loop for good in HDF5 1.10.8), so it is
 * refused from its type alone, before any read of its value (issue 18; checkpoints: ckpt_attr.c).
 */
static int read_layout(const h5set *s)
{
	if (H5Aexists(s->images, "layout") <= 0)
		return 0;
	hid_t a = H5Aopen(s->images, "layout", H5P_DEFAULT), ft = a < 0 ? -1 : H5Aget_type(a);
	hid_t sp = a < 0 ? -1 : H5Aget_space(a);
	char text[16] = "";
	int ok = ft >= 0 && sp >= 0 && H5Tget_class(ft) == H5T_STRING && H5Sget_simple_extent_npoints(sp) == 1;
	htri_t var = ok ? H5Tis_variable_str(ft) : -1;
	if (var > 0) {
		log_error("%s: dataset %s: attribute layout is a variable-length string, which is not read (HDF5 "
			  "would take it from the file's unchecked global heap); write it as a fixed-length string, "
			  "with h5py: images.attrs.create('layout', np.bytes_('NCHW'))", s->path, s->img_name);
		ok = 0;
	} else if (var == 0) {
		size_t n = H5Tget_size(ft);
		hid_t mt = H5Tcopy(H5T_C_S1);
		H5Tset_size(mt, sizeof text - 1);
		H5Tset_cset(mt, H5Tget_cset(ft)); /* HDF5 converts no character sets */
		ok = n >= 1 && n < sizeof text && H5Aread(a, mt, text) >= 0;
		H5Tclose(mt);
	} else {
		ok = 0;
	}
	if (sp >= 0)
		H5Sclose(sp);
	if (ft >= 0)
		H5Tclose(ft);
	if (a >= 0)
		H5Aclose(a);
	if (var > 0)
		return -1;
	if (ok && (!strcmp(text, "NHWC") || !strcmp(text, "NCHW")))
		return text[1] == 'C';
	log_error("%s: dataset %s: attribute layout must be the fixed-length string \"NHWC\" or \"NCHW\"%s%s%s",
		  s->path, s->img_name, ok ? ", not \"" : "", ok ? text : "", ok ? "\"" : "");
	return -1;
}

/* Open name as a dataset of the given rank and type class; logs and returns -1 when it is not. */
static hid_t open_checked(const h5set *s, const char *name, int rank, H5T_class_t cls, const char *what)
{
	if (H5Lexists(s->file, name, H5P_DEFAULT) <= 0) {
		log_error("%s: dataset %s is missing", s->path, name);
		return -1;
	}
	hid_t d = H5Dopen2(s->file, name, rank == 4 ? s->images_dapl : H5P_DEFAULT);
	if (d < 0) {
		log_error("%s: %s is not a dataset", s->path, name);
		return -1;
	}
	hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
	int r = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
	int ok = t >= 0 && H5Tget_class(t) == cls && r == rank;
	if (ok && rank == 4) /* images: unsigned bytes exactly */
		ok = H5Tget_size(t) == 1 && H5Tget_sign(t) == H5T_SGN_NONE;
	if (!ok)
		log_error("%s: dataset %s must be %s (rank %d), found rank %d of another type", s->path, name, what,
			  rank, r);
	if (t >= 0)
		H5Tclose(t);
	if (sp >= 0)
		H5Sclose(sp);
	if (!ok) {
		H5Dclose(d);
		return -1;
	}
	return d;
}

/* Open both datasets and check their shapes. 0 or EXIT_DATAERR with a message. */
static int open_split(h5set *s, data_split split, uint64_t max_bytes, int stream_hint)
{
	const char *g = split == DATA_TRAIN ? "train" : "test";
	snprintf(s->img_name, sizeof s->img_name, "/%s/images", g);
	snprintf(s->lbl_name, sizeof s->lbl_name, "/%s/labels", g);
	if (H5Lexists(s->file, g, H5P_DEFAULT) <= 0) {
		log_error("%s: group /%s is missing (an image set has /train and /test)", s->path, g);
		return EXIT_DATAERR;
	}
	s->images = open_checked(s, s->img_name, 4, H5T_INTEGER, "uint8 images");
	s->labels = s->images < 0 ? -1 : open_checked(s, s->lbl_name, 1, H5T_INTEGER, "integer labels");
	if (s->labels < 0 || (s->nchw = read_layout(s)) < 0)
		return EXIT_DATAERR;
	hsize_t ld[1];
	hid_t sp = H5Dget_space(s->images), lp = H5Dget_space(s->labels);
	H5Sget_simple_extent_dims(sp, s->dims, NULL);
	H5Sget_simple_extent_dims(lp, ld, NULL);
	H5Sclose(sp);
	H5Sclose(lp);
	hsize_t c = s->nchw ? s->dims[1] : s->dims[3], h = s->nchw ? s->dims[2] : s->dims[1];
	hsize_t w = s->nchw ? s->dims[3] : s->dims[2];
	if (s->dims[0] == 0 || ld[0] != s->dims[0]) {
		log_error("%s: dataset %s holds %llu images but %s holds %llu labels; they must match and not be 0",
			  s->path, s->img_name, (unsigned long long)s->dims[0], s->lbl_name, (unsigned long long)ld[0]);
		return EXIT_DATAERR;
	}
	if (c < 1 || c > H5SET_MAX_CHANNELS || h < 1 || h > H5SET_MAX_SIDE || w < 1 || w > H5SET_MAX_SIDE ||
	    s->dims[0] > UINT32_MAX || (uint64_t)s->dims[0] * c * h * w > max_bytes) {
		log_error("%s: dataset %s: %llu images of %llux%llux%llu (CxHxW) are outside the limits "
			  "(C <= %d, H, W <= %d, %" PRIu64 " bytes in all%s)", s->path, s->img_name,
			  (unsigned long long)s->dims[0], (unsigned long long)c, (unsigned long long)h,
			  (unsigned long long)w, H5SET_MAX_CHANNELS, H5SET_MAX_SIDE, max_bytes,
			  stream_hint ? "; set data.cache_mb to stream a larger set" : "");
		return EXIT_DATAERR;
	}
	return 0;
}

void h5set_shape(const h5set *s, int *c, int *h, int *w)
{
	*c = (int)(s->nchw ? s->dims[1] : s->dims[3]);
	*h = (int)(s->nchw ? s->dims[2] : s->dims[1]);
	*w = (int)(s->nchw ? s->dims[3] : s->dims[2]);
}

void h5set_to_nchw(const h5set *s, const uint8_t *blk, size_t n, uint8_t *out)
{
	size_t px = (size_t)(s->dims[1] * s->dims[2] * s->dims[3]);
	if (s->nchw) {
		memcpy(out, blk, n * px);
		return;
	}
	size_t hw = (size_t)s->dims[1] * (size_t)s->dims[2], c = (size_t)s->dims[3];
	for (size_t i = 0; i < n; i++) {
		const uint8_t *src = blk + i * px;
		uint8_t *dst = out + i * px;
		for (size_t k = 0; k < c; k++)
			for (size_t p = 0; p < hw; p++)
				dst[k * hw + p] = src[p * c + k];
	}
}

/* All images into out (NCHW), H5SET_BLOCK at a time. 0 or an exit code naming the block. */
static int read_images(const h5set *s, uint8_t *out)
{
	size_t px = (size_t)(s->dims[1] * s->dims[2] * s->dims[3]);
	uint8_t *blk = malloc(H5SET_BLOCK * px);
	hid_t fsp = H5Dget_space(s->images);
	int rc = blk && fsp >= 0 ? 0 : EXIT_OSERR;
	for (hsize_t i = 0; !rc && i < s->dims[0]; i += H5SET_BLOCK) {
		hsize_t n = s->dims[0] - i < H5SET_BLOCK ? s->dims[0] - i : H5SET_BLOCK;
		hsize_t start[4] = {i, 0, 0, 0}, count[4] = {n, s->dims[1], s->dims[2], s->dims[3]};
		hid_t msp = H5Screate_simple(4, count, NULL);
		if (msp < 0 || H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
		    H5Dread(s->images, H5T_NATIVE_UINT8, msp, fsp, H5P_DEFAULT, blk) < 0) {
			log_error("%s: dataset %s: cannot read images %llu..%llu (damaged or truncated file?)",
				  s->path, s->img_name, (unsigned long long)i, (unsigned long long)(i + n - 1));
			rc = EXIT_DATAERR;
		} else {
			h5set_to_nchw(s, blk, (size_t)n, out + (size_t)i * px);
		}
		if (msp >= 0)
			H5Sclose(msp);
	}
	if (rc == EXIT_OSERR)
		log_error("%s: out of memory for a block of %d images", s->path, H5SET_BLOCK);
	if (fsp >= 0)
		H5Sclose(fsp);
	free(blk);
	return rc;
}

int h5set_read_labels(const h5set *s, uint8_t *out)
{
	size_t n = (size_t)s->dims[0];
	int64_t *v = malloc(n * sizeof *v);
	if (!v) {
		log_error("%s: out of memory for %zu labels", s->path, n);
		return EXIT_OSERR;
	}
	int rc = 0;
	if (H5Dread(s->labels, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
		log_error("%s: dataset %s: cannot read the labels (damaged or truncated file?)", s->path, s->lbl_name);
		rc = EXIT_DATAERR;
	}
	for (size_t i = 0; i < n && !rc; i++) {
		if (v[i] < 0 || v[i] > 255) {
			log_error("%s: dataset %s: label at index %zu is %" PRId64 ", outside 0..255", s->path,
				  s->lbl_name, i, v[i]);
			rc = EXIT_DATAERR;
		}
		out[i] = (uint8_t)v[i];
	}
	free(v);
	return rc;
}

int h5set_open(h5set *s, data_split split, uint64_t max_bytes, int stream_hint)
{
	hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
	if (fapl >= 0)
		H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
	s->file = H5Fopen(s->path, H5F_ACC_RDONLY, fapl >= 0 ? fapl : H5P_DEFAULT);
	if (fapl >= 0)
		H5Pclose(fapl);
	if (s->file < 0) {
		log_error("%s: not a readable HDF5 file (damaged or truncated?)", s->path);
		return EXIT_DATAERR;
	}
	return open_split(s, split, max_bytes, stream_hint);
}

void h5set_close(h5set *s)
{
	if (s->labels >= 0)
		H5Dclose(s->labels);
	if (s->images >= 0)
		H5Dclose(s->images);
	if (s->file >= 0)
		H5Fclose(s->file);
	s->labels = s->images = s->file = -1;
}

/* Open, check and read one split; the lock is held by the caller. */
static int load_locked(h5set *s, data_split split, dataset *out)
{
	int rc = h5set_open(s, split, H5SET_MAX_BYTES, 1);
	if (rc)
		return rc;
	size_t n = (size_t)s->dims[0], px = (size_t)(s->dims[1] * s->dims[2] * s->dims[3]);
	uint8_t *images = malloc(n * px), *labels = malloc(n);
	if (!images || !labels) {
		log_error("%s: out of memory for %zu images of %zu bytes", s->path, n, px);
		rc = EXIT_OSERR;
	}
	if (!rc)
		rc = h5set_read_labels(s, labels);
	if (!rc)
		rc = read_images(s, images);
	if (rc) {
		free(images);
		free(labels);
		return rc;
	}
	out->count = n;
	h5set_shape(s, &out->channels, &out->rows, &out->cols);
	out->images = images;
	out->labels = labels;
	out->max_label = data_max_label(labels, n);
	return 0;
}

int h5set_load(const char *path, data_split split, dataset *out)
{
	if (!path || !out) {
		log_error("h5set_load: bad arguments");
		return EXIT_SOFTWARE;
	}
	memset(out, 0, sizeof *out);
	int rc = h5set_check_signature(path);
	if (rc)
		return rc;
	h5set s = {.path = path, .file = -1, .images = -1, .labels = -1, .images_dapl = H5P_DEFAULT};
	ckpt_h5_enter();
	rc = load_locked(&s, split, out);
	h5set_close(&s);
	ckpt_h5_leave();
	return rc;
}

int h5set_probe(const char *path, data_split split, uint64_t *bytes)
{
	*bytes = 0;
	int rc = h5set_check_signature(path);
	if (rc)
		return rc;
	h5set s = {.path = path, .file = -1, .images = -1, .labels = -1, .images_dapl = H5P_DEFAULT};
	ckpt_h5_enter();
	rc = h5set_open(&s, split, H5SET_MAX_STREAM, 0);
	if (!rc)
		*bytes = (uint64_t)s.dims[0] * s.dims[1] * s.dims[2] * s.dims[3];
	h5set_close(&s);
	ckpt_h5_leave();
	return rc;
}
