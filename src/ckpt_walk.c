/*
 * ckpt_walk.c - the walk over the tensors of a checkpoint: /params, then
 * each /optim/<state> group in creation order, each dataset validated
 * (float32, shape), read into the caller's buffer or a scratch, and added to
 * the content checksum (part 1, ckpt_format.h). The model-based read gives
 * the expected tensors; the model-free scan takes them from /params.
 */
#include "ckpt_h5.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"

static void fmt_shape(char *buf, size_t len, int ndim, const hsize_t *dims)
{
	size_t k = 0;
	buf[0] = '\0';
	for (int d = 0; d < ndim && k < len; d++)
		k += (size_t)snprintf(buf + k, len - k, "%s%llu", d ? "," : "[", (unsigned long long)dims[d]);
	if (k < len)
		snprintf(buf + k, len - k, "]");
}

static float *scratch_for(walker *w, size_t numel)
{
	if (numel > w->scratch_cap) {
		float *p = realloc(w->scratch, numel * sizeof(float));
		if (!p)
			return NULL;
		w->scratch = p;
		w->scratch_cap = numel;
	}
	return w->scratch;
}

/*
 * The writer stores every tensor contiguous, whole and inside the file. Anything else is not
 * ours, and HDF5 1.10.8 trusts a dataset's storage message when it reads: a compact layout
 * whose buffer is smaller than the dataspace, or storage past the end of the file, made it
 * read out of bounds (fuzz_ckpt, a sealed file). So storage is checked before any read.
 */
static int check_storage(walker *w, hid_t d, const char *label, const char *name, size_t numel)
{
	reader_ctx *c = w->c;
	hid_t dcpl = H5Dget_create_plist(d);
	H5D_layout_t lay = dcpl < 0 ? H5D_LAYOUT_ERROR : H5Pget_layout(dcpl);
	ckpt_h5_close(dcpl);
	haddr_t off = lay == H5D_CONTIGUOUS ? H5Dget_offset(d) : HADDR_UNDEF;
	hsize_t stored = lay == H5D_CONTIGUOUS ? H5Dget_storage_size(d) : 0;
	uint64_t bytes = (uint64_t)numel * sizeof(float);
	if (lay != H5D_CONTIGUOUS || off == HADDR_UNDEF || stored != bytes ||
	    (w->file_size && (off > w->file_size || bytes > w->file_size - off)))
		return ckpt_fail(c->why, c->len, EXIT_DATAERR,
				 "checkpoint %s: dataset %s/%s is not stored whole in the file (%s, %llu of %llu bytes)",
				 c->path, label, name, lay == H5D_CONTIGUOUS ? "contiguous" : "not contiguous",
				 (unsigned long long)stored, (unsigned long long)bytes);
	return 0;
}

/* Validate one dataset against ref r (or, defining, record its shape into r), read it into dst
 * (dst + offset) or scratch, add it to the checksum. */
static int walk_dataset(walker *w, hid_t g, const char *label, const char *name, tref *r, bool define, float *dst)
{
	reader_ctx *c = w->c;
	int rc = 0;
	hid_t t = -1, s = -1;
	hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
	if (d < 0)
		return ckpt_h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot open dataset %s/%s", c->path, label, name);
	t = H5Dget_type(d);
	s = H5Dget_space(d);
	if (t < 0 || s < 0) {
		rc = ckpt_h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot query dataset %s/%s", c->path, label, name);
		goto close_dataset;
	}
	if (H5Tget_class(t) != H5T_FLOAT || H5Tget_size(t) != 4) {
		rc = ckpt_fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: dataset %s/%s is not float32", c->path, label, name);
		goto close_dataset;
	}
	int nd = H5Sget_simple_extent_ndims(s);
	hsize_t dims[H5S_MAX_RANK];
	if (H5Sget_simple_extent_type(s) != H5S_SIMPLE || nd < 1 || nd > 4 || H5Sget_simple_extent_dims(s, dims, NULL) != nd) {
		rc = ckpt_fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: dataset %s/%s has %d dimensions", c->path, label, name, nd);
		goto close_dataset;
	}
	if (define) {
		size_t numel = 1;
		for (int i = 0; i < nd; i++) {
			if (dims[i] < 1 || dims[i] > CKPT_MAX_SCAN_NUMEL / numel) {
				rc = ckpt_fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: dataset %s/%s has an unusable shape",
					  c->path, label, name);
				goto close_dataset;
			}
			numel *= (size_t)dims[i];
			r->dims[i] = dims[i];
		}
		/* datasets are stored whole (contiguous, uncompressed): one larger than the file is not
		 * ours, and is refused before a buffer of its size is allocated */
		if (w->file_size && numel > w->file_size / sizeof(float)) {
			rc = ckpt_fail(c->why, c->len, EXIT_DATAERR,
				       "checkpoint %s: dataset %s/%s holds %zu values, more than the file's %llu bytes hold",
				       c->path, label, name, numel, (unsigned long long)w->file_size);
			goto close_dataset;
		}
		r->ndim = nd;
		r->numel = numel;
	} else if (nd != r->ndim || memcmp(dims, r->dims, (size_t)nd * sizeof dims[0]) != 0) {
		char got[64], want[64];
		fmt_shape(got, sizeof got, nd, dims);
		fmt_shape(want, sizeof want, r->ndim, r->dims);
		rc = ckpt_fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: dataset %s/%s has shape %s, expected %s%s", c->path,
			  label, name, got, want, w->model_free ? " (as in /params)" : " (a checkpoint of another network?)");
		goto close_dataset;
	}
	if ((rc = check_storage(w, d, label, name, r->numel)))
		goto close_dataset;
	float *buf = dst ? dst + r->offset : scratch_for(w, r->numel);
	if (!buf) {
		rc = ckpt_fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: no memory to read dataset %s/%s", c->path, label, name);
		goto close_dataset;
	}
	if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
		rc = ckpt_h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot read dataset %s/%s", c->path, label, name);
		goto close_dataset;
	}
	w->crc = ckpt_crc32(w->crc, buf, r->numel * sizeof(float));
	if (w->vis && w->vis->tensor) {
		int idims[4];
		for (int i = 0; i < nd; i++)
			idims[i] = (int)r->dims[i];
		w->vis->tensor(w->vis->ctx, label, name, nd, idims, buf, r->numel);
	}
close_dataset:
	ckpt_h5_close(s);
	ckpt_h5_close(t);
	H5Dclose(d);
	return rc;
}

/* Open group gname of parent, which must track creation order; *n = its number of links. */
static hid_t open_ordered_group(reader_ctx *c, hid_t parent, const char *gname, const char *label, hsize_t *n)
{
	htri_t ex = H5Lexists(parent, gname, H5P_DEFAULT);
	if (ex <= 0) {
		if (ex < 0)
			ckpt_h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot look up %s", c->path, label);
		else
			ckpt_fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: group %s is missing", c->path, label);
		return -1;
	}
	hid_t g = H5Gopen2(parent, gname, H5P_DEFAULT);
	if (g < 0) {
		ckpt_h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot open %s as a group", c->path, label);
		return -1;
	}
	unsigned flags = 0;
	H5G_info_t info;
	hid_t gcpl = H5Gget_create_plist(g);
	if (gcpl < 0 || H5Pget_link_creation_order(gcpl, &flags) < 0 || H5Gget_info(g, &info) < 0) {
		ckpt_h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot query group %s", c->path, label);
		goto fail_group;
	}
	if (!(flags & H5P_CRT_ORDER_TRACKED)) {
		ckpt_fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: group %s does not record creation order (not written by spottrain)",
		     c->path, label);
		goto fail_group;
	}
	H5Pclose(gcpl);
	*n = info.nlinks;
	return g;
fail_group:
	ckpt_h5_close(gcpl);
	H5Gclose(g);
	return -1;
}

/* Name of link i (creation order) of g into name[CKPT_NAME_LEN]. */
static int link_name(reader_ctx *c, hid_t g, const char *label, hsize_t i, char *name)
{
	ssize_t n = H5Lget_name_by_idx(g, ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, i, name, CKPT_NAME_LEN, H5P_DEFAULT);
	if (n < 0)
		return ckpt_h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot list group %s", c->path, label);
	if (n >= CKPT_NAME_LEN)
		return ckpt_fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: a name in %s is too long", c->path, label);
	return 0;
}

/* One group of tensors: exactly the refs (or, defining, whatever /params holds). */
int ckpt_walk_group(walker *w, hid_t parent, const char *gname, const char *label, float *dst, bool define)
{
	reader_ctx *c = w->c;
	int rc = 0;
	hsize_t n;
	bool seen[MODEL_MAX_TENSORS] = { false };
	hid_t g = open_ordered_group(c, parent, gname, label, &n);
	if (g < 0)
		return EXIT_DATAERR;
	if (define ? (n < 1 || n > MODEL_MAX_TENSORS) : n != (hsize_t)w->n_ref) {
		rc = ckpt_fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: group %s holds %llu tensors, expected %s%d%s", c->path,
			  label, (unsigned long long)n, define ? "1 to " : "", define ? MODEL_MAX_TENSORS : w->n_ref,
			  define || w->model_free ? "" : " (a checkpoint of another network?)");
		goto close_group;
	}
	if (w->vis && w->vis->group)
		w->vis->group(w->vis->ctx, label, (int)n);
	for (hsize_t i = 0; i < n; i++) {
		char name[CKPT_NAME_LEN];
		if ((rc = link_name(c, g, label, i, name)))
			goto close_group;
		int r = -1;
		if (define) {
			r = w->n_ref;
			snprintf(w->ref[r].name, CKPT_NAME_LEN, "%s", name);
		} else {
			for (int k = 0; k < w->n_ref && r < 0; k++)
				if (strcmp(w->ref[k].name, name) == 0)
					r = k;
			if (r < 0 || seen[r]) {
				rc = ckpt_fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: dataset %s/%s is not a tensor of %s", c->path,
					  label, name, w->model_free ? "/params" : "this network (a checkpoint of another network?)");
				goto close_group;
			}
			seen[r] = true;
		}
		if ((rc = walk_dataset(w, g, label, name, &w->ref[r], define, dst)))
			goto close_group;
		if (define)
			w->n_ref++;
	}
close_group:
	H5Gclose(g);
	return rc;
}

/* /optim/<state> groups in creation order; a state named in dst_names goes to its buffer, the
 * others are only checksummed. found[j] tells which named states were there. */
int ckpt_walk_states(walker *w, hid_t file, int n_dst, const char *const *dst_names, float *const *dst, bool *found)
{
	reader_ctx *c = w->c;
	int rc = 0;
	hsize_t n;
	hid_t og = open_ordered_group(c, file, CKPT_OPTIM_GROUP, CKPT_OPTIM_LABEL, &n);
	if (og < 0)
		return EXIT_DATAERR;
	if (n > CKPT_MAX_STATE_GROUPS) {
		rc = ckpt_fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: /optim holds %llu groups", c->path, (unsigned long long)n);
		goto close_optim;
	}
	for (hsize_t i = 0; i < n; i++) {
		char name[CKPT_NAME_LEN], label[CKPT_NAME_LEN + 8];
		if ((rc = link_name(c, og, "/optim", i, name)))
			goto close_optim;
		snprintf(label, sizeof label, CKPT_OPTIM_LABEL "/%s", name);
		float *d = NULL;
		for (int j = 0; j < n_dst; j++)
			if (strcmp(dst_names[j], name) == 0) {
				d = dst[j];
				found[j] = true;
			}
		if ((rc = ckpt_walk_group(w, og, name, label, d, false)))
			goto close_optim;
	}
close_optim:
	H5Gclose(og);
	return rc;
}
