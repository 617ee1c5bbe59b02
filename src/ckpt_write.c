/*
 * ckpt_write.c - writing a checkpoint atomically (DESIGN.md invariant 4).
 *
 * HDF5 builds the file in memory (the core driver; datasets are copied there
 * straight from the flat buffers at their offsets), then this file writes the
 * image and its seal (ckpt_seal.c) with fs_write_atomic (src/common/fsutil.c:
 * NAME.tmp, fsync, rename, fsync of the directory).
 * HDF5 itself never writes to the volume: a failed write inside HDF5 1.10.8
 * leaves a file it cannot close (and a crash at exit). Cost: about twice the
 * file size in memory during a write (the image and its copy). The meta
 * attributes come from the field table (ckpt_attr.c, ckpt_format.c).
 */
#include "ckpt_h5.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"
#include "fsutil.h"
#include "log.h"

/* Group creation properties: creation order tracked and indexed (the checksum walks it),
 * no timestamps (identical content gives identical bytes). */
static hid_t make_gcpl(writer_ctx *c, int *rc)
{
	hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
	if (gcpl < 0) {
		*rc = ckpt_h5fail(c->why, c->len, EXIT_IOERR, "create group properties for %s", c->path);
		return -1;
	}
	if (H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0 ||
	    H5Pset_attr_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0 ||
	    H5Pset_obj_track_times(gcpl, 0) < 0) {
		*rc = ckpt_h5fail(c->why, c->len, EXIT_IOERR, "set group properties for %s", c->path);
		H5Pclose(gcpl);
		return -1;
	}
	*rc = 0;
	return gcpl;
}

/* One group of datasets, one per tensor, each written straight from buf at its offset. */
static int write_views(writer_ctx *c, hid_t parent, const char *gname, const char *label, hid_t gcpl, hid_t dcpl,
		       const tensor_view *views, int n_views, const float *buf, uint32_t *crc)
{
	int rc = 0;
	hid_t g = H5Gcreate2(parent, gname, H5P_DEFAULT, gcpl, H5P_DEFAULT);
	if (g < 0)
		return ckpt_h5fail(c->why, c->len, EXIT_IOERR, "create group %s in %s", label, c->path);
	for (int i = 0; i < n_views; i++) {
		const tensor_view *t = &views[i];
		hsize_t dims[4];
		for (int d = 0; d < t->ndim; d++)
			dims[d] = (hsize_t)t->dims[d];
		hid_t space = H5Screate_simple(t->ndim, dims, NULL);
		if (space < 0) {
			rc = ckpt_h5fail(c->why, c->len, EXIT_IOERR, "create dataspace of %s/%s in %s", label, t->name, c->path);
			goto close_group;
		}
		hid_t d = H5Dcreate2(g, t->name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
		if (d < 0)
			rc = ckpt_h5fail(c->why, c->len, EXIT_IOERR, "create dataset %s/%s in %s", label, t->name, c->path);
		H5Sclose(space);
		if (d < 0)
			goto close_group;
		const float *src = buf + t->offset;
		if (H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, src) < 0) {
			rc = ckpt_h5fail(c->why, c->len, EXIT_IOERR, "write dataset %s/%s in %s", label, t->name, c->path);
			H5Dclose(d);
			goto close_group;
		}
		if (H5Dclose(d) < 0) {
			rc = ckpt_h5fail(c->why, c->len, EXIT_IOERR, "close dataset %s/%s in %s", label, t->name, c->path);
			goto close_group;
		}
		*crc = ckpt_crc32(*crc, src, t->numel * sizeof(float));
	}
close_group:
	if (H5Gclose(g) < 0 && rc == 0)
		rc = ckpt_h5fail(c->why, c->len, EXIT_IOERR, "close group %s in %s", label, c->path);
	return rc;
}

static int write_tensors(writer_ctx *c, hid_t parent, const char *gname, const char *label, hid_t gcpl, hid_t dcpl,
			 const model *m, const float *buf, uint32_t *crc)
{
	return write_views(c, parent, gname, label, gcpl, dcpl, m->tensors, m->n_tensors, buf, crc);
}

/*
 * Everything HDF5 of a write, in memory: build the file with the core driver and hand back a
 * copy of its image (malloc'ed: *img_len bytes and CKPT_SEAL_SIZE more for the seal). HDF5 does no file I/O
 * here: when a write fails part-way (ENOSPC), HDF5 1.10.8 cannot close the file it was writing
 * (H5Fclose fails and leaves the library in a state that crashes at exit), so all file I/O is
 * ours, after HDF5 is done.
 */
static int build_image(const char *tmp, const model *m, const ckpt_meta *mt, const ckpt_buffers *b,
		       unsigned char **img, size_t *img_len, char *why, size_t len)
{
	int rc = 0;
	writer_ctx c = { tmp, -1, why, len };
	hid_t fapl = -1, fcpl = -1, file = -1, gcpl = -1, dcpl = -1, optim = -1;
	uint32_t crc = 0;
	size_t hint = (size_t)(1 + b->n_states) * m->n_params * sizeof(float) + m->n_buffers * sizeof(float) +
		      (size_t)(1 + b->n_states) * (size_t)m->n_tensors * 1024 + (1 << 16) +
		      (mt->config_text ? strlen(mt->config_text) : 0);

	*img = NULL;
	*img_len = 0;
	fapl = ckpt_make_fapl(true, hint, tmp, EXIT_IOERR, why, len, &rc);
	if (fapl < 0)
		return rc;
	fcpl = H5Pcreate(H5P_FILE_CREATE);
	if (fcpl < 0 || H5Pset_attr_creation_order(fcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0 ||
	    H5Pset_obj_track_times(fcpl, 0) < 0) {
		rc = ckpt_h5fail(why, len, EXIT_IOERR, "set file creation properties for %s", tmp);
		goto close_all;
	}
	file = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, fapl);
	if (file < 0) {
		rc = ckpt_h5fail(why, len, EXIT_IOERR, "create HDF5 file %s", tmp);
		goto close_all;
	}
	c.scalar = H5Screate(H5S_SCALAR);
	if (c.scalar < 0) {
		rc = ckpt_h5fail(why, len, EXIT_IOERR, "create scalar dataspace for %s", tmp);
		goto close_all;
	}
	if ((rc = ckpt_write_fields(&c, file, CKPT_OBJ_ROOT, mt, false, 0)))
		goto close_all;
	gcpl = make_gcpl(&c, &rc);
	if (gcpl < 0)
		goto close_all;
	dcpl = H5Pcreate(H5P_DATASET_CREATE);
	if (dcpl < 0 || H5Pset_layout(dcpl, H5D_CONTIGUOUS) < 0 || H5Pset_obj_track_times(dcpl, 0) < 0) {
		rc = ckpt_h5fail(why, len, EXIT_IOERR, "set dataset properties for %s", tmp);
		goto close_all;
	}
	if ((rc = write_tensors(&c, file, CKPT_PARAMS_GROUP, CKPT_PARAMS_LABEL, gcpl, dcpl, m, b->params, &crc)))
		goto close_all;
	optim = H5Gcreate2(file, CKPT_OPTIM_GROUP, H5P_DEFAULT, gcpl, H5P_DEFAULT);
	if (optim < 0) {
		rc = ckpt_h5fail(why, len, EXIT_IOERR, "create group /optim in %s", tmp);
		goto close_all;
	}
	if ((rc = ckpt_write_fields(&c, optim, CKPT_OBJ_OPTIM, mt, false, 0)))
		goto close_all;
	for (int s = 0; s < b->n_states; s++) {
		char label[CKPT_NAME_LEN + 8];
		snprintf(label, sizeof label, "/optim/%s", b->state_names[s]);
		if ((rc = write_tensors(&c, optim, b->state_names[s], label, gcpl, dcpl, m, b->states[s], &crc)))
			goto close_all;
	}
	if (m->n_buffer_views > 0 &&
	    (rc = write_views(&c, file, CKPT_BUFFERS_GROUP, CKPT_BUFFERS_LABEL, gcpl, dcpl, m->buffers,
			      m->n_buffer_views, b->buffers, &crc)))
		goto close_all;
	crc = ckpt_crc_meta(crc, mt);
	if ((rc = ckpt_write_fields(&c, file, CKPT_OBJ_ROOT, mt, true, crc)))
		goto close_all;
	if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) {
		rc = ckpt_h5fail(why, len, EXIT_IOERR, "flush %s in memory", tmp);
		goto close_all;
	}
	ssize_t n = H5Fget_file_image(file, NULL, 0);
	if (n <= 0) {
		rc = ckpt_h5fail(why, len, EXIT_IOERR, "get the size of the image of %s", tmp);
		goto close_all;
	}
	*img = malloc((size_t)n + CKPT_SEAL_SIZE); /* room for the seal */
	if (!*img) {
		rc = ckpt_fail(why, len, EXIT_IOERR, "no memory for the %zd-byte image of %s", n, tmp);
		goto close_all;
	}
	if (H5Fget_file_image(file, *img, (size_t)n) != n) {
		rc = ckpt_h5fail(why, len, EXIT_IOERR, "copy the image of %s", tmp);
		goto close_all;
	}
	*img_len = (size_t)n;
close_all:
	{
		const hid_t ids[] = { optim, dcpl, gcpl, c.scalar, file, fcpl, fapl };
		bool closed = true;
		for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
			if (ckpt_h5_close(ids[i]) < 0)
				closed = false; /* every id is closed whatever happened to the others */
		if (!closed && rc == 0)
			rc = ckpt_h5fail(why, len, EXIT_IOERR, "close %s in memory", tmp);
	}
	if (rc) {
		free(*img);
		*img = NULL;
		*img_len = 0;
	}
	return rc;
}

/* Build and seal the image, then write it atomically (fsutil: tmp, fsync, rename, fsync dir). */
static int write_locked(const char *path, const char *tmp, const model *m, const ckpt_meta *mt, const ckpt_buffers *b,
			char *why, size_t len)
{
	unsigned char *img = NULL;
	size_t n = 0;
	int rc = build_image(tmp, m, mt, b, &img, &n, why, len);
	if (rc)
		return rc;
	ckpt_seal_image(img, n, mt->step, mt->epoch_end);
	/* a failed directory fsync leaves the checkpoint whole but maybe not yet durable */
	if (fs_write_atomic(path, img, n + CKPT_SEAL_SIZE, why, len) != 0)
		rc = EXIT_IOERR;
	free(img);
	return rc;
}

int ckpt_write(const char *path, const model *m, const ckpt_meta *meta, const ckpt_buffers *b)
{
	char why[CKPT_WHY_LEN];
	char tmp[PATH_MAX];
	int rc = 0;
	if (!path || !meta || !b || !b->params)
		rc = ckpt_fail(why, sizeof why, EXIT_SOFTWARE, "missing path, meta or parameter buffer");
	if (rc == 0)
		rc = ckpt_check_model(m, why, sizeof why);
	if (rc == 0)
		rc = ckpt_check_states(b, why, sizeof why);
	if (rc == 0 && m->n_buffer_views > 0 && !b->buffers)
		rc = ckpt_fail(why, sizeof why, EXIT_SOFTWARE, "the network has buffers but none were given");
	if (rc == 0)
		rc = ckpt_check_meta(meta, why, sizeof why);
	if (rc == 0 && (size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
		rc = ckpt_fail(why, sizeof why, EXIT_IOERR, "path is too long");
	if (rc) {
		log_error("cannot write checkpoint %s: %s", path ? path : "(null)", why);
		return rc;
	}
	ckpt_h5_enter();
	rc = write_locked(path, tmp, m, meta, b, why, sizeof why);
	ckpt_h5_leave();
	if (rc)
		log_error("cannot write checkpoint %s: %s; existing checkpoints are untouched "
			  "(check free space and permissions of the volume)", path, why);
	return rc;
}

