/*
 * ckpt_read.c - reading and validating a checkpoint: against a model
 * (ckpt_read: resume and eval), its meta alone (ckpt_read_meta: the
 * directory scan), or without a model (ckpt_scan: inspect). Every read
 * checks the seal first (ckpt_seal.c), then the meta by the field table
 * (ckpt_attr.c), then walks the tensors (ckpt_walk.c) and compares the
 * content checksum.
 *
 * Reading: the caller's buffers are filled as the datasets are read, before
 * the content checksum is known; after a failed read they hold garbage.
 */
#include "ckpt_h5.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"
#include "log.h"

/* ------------------------------------------------------------ checks -- */

/* The seal's copy of step and epoch_end (what retention reads) agrees with the attributes. */
static int check_seal_agrees(reader_ctx *c, const ckpt_seal_info *seal, const ckpt_meta *mt)
{
	if (seal->step != mt->step || seal->epoch_end != mt->epoch_end)
		return ckpt_fail(c->why, c->len, EXIT_DATAERR,
			    "checkpoint %s: its seal says step %" PRId64 "%s, its attributes step %ld%s", c->path, seal->step,
			    seal->epoch_end ? " (epoch end)" : "", mt->step, mt->epoch_end ? " (epoch end)" : "");
	return 0;
}

static int check_checksum(reader_ctx *c, uint32_t computed, uint32_t stored)
{
	if (computed != stored)
		return ckpt_fail(c->why, c->len, EXIT_DATAERR,
			    "checkpoint %s: content checksum mismatch (stored %08" PRIx32 ", computed %08" PRIx32 "): the file is damaged",
			    c->path, stored, computed);
	return 0;
}


/* ------------------------------------------------------------------ read -- */

/* The walker's expected datasets: the n views, by name, shape and place in their flat block. */
static void set_refs(walker *w, const tensor_view *views, int n)
{
	w->n_ref = n;
	for (int i = 0; i < n; i++) {
		const tensor_view *t = &views[i];
		tref *r = &w->ref[i];
		snprintf(r->name, CKPT_NAME_LEN, "%.*s", CKPT_NAME_LEN - 1, t->name);
		r->ndim = t->ndim;
		for (int d = 0; d < t->ndim; d++)
			r->dims[d] = (hsize_t)t->dims[d];
		r->numel = t->numel;
		r->offset = t->offset;
	}
}

/*
 * /buffers: exactly the model's buffer views, read into dst (NULL: only checksummed). A
 * network without buffers takes a file without the group (the format of such networks is
 * unchanged); a file with buffers for it is refused.
 */
static int walk_buffers(walker *w, hid_t file, const model *m, float *dst)
{
	reader_ctx *c = w->c;
	if (m->n_buffer_views == 0) {
		htri_t ex = H5Lexists(file, CKPT_BUFFERS_GROUP, H5P_DEFAULT);
		if (ex < 0)
			return ckpt_h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot look up %s", c->path,
					   CKPT_BUFFERS_LABEL);
		if (ex > 0)
			return ckpt_fail(c->why, c->len, EXIT_DATAERR,
					 "checkpoint %s: it holds %s (BatchNorm statistics) that this network has no place for",
					 c->path, CKPT_BUFFERS_LABEL);
		return 0;
	}
	set_refs(w, m->buffers, m->n_buffer_views);
	return ckpt_walk_group(w, file, CKPT_BUFFERS_GROUP, CKPT_BUFFERS_LABEL, dst, false);
}


static int read_locked(const char *path, const model *m, bool weights_only, ckpt_meta *meta, ckpt_buffers *b,
		       char *why, size_t len)
{
	reader_ctx c = { path, why, len };
	ckpt_meta mt;
	ckpt_seal_info seal;
	uint32_t stored;
	hid_t file;
	bool found[CKPT_MAX_STATES] = { false };
	int n_dst = weights_only ? 0 : b->n_states;
	walker *w = calloc(1, sizeof *w);
	if (!w)
		return ckpt_fail(why, len, EXIT_OSERR, "checkpoint %s: out of memory", path);
	int rc = ckpt_open_input(path, &file, &seal, why, len);
	if (rc)
		goto free_walker;
	if ((rc = ckpt_read_meta_attrs(&c, file, &mt, &stored)))
		goto close_file;
	if ((rc = check_seal_agrees(&c, &seal, &mt)))
		goto free_meta;
	if (!weights_only && mt.model_hash != m->hash) {
		rc = ckpt_fail(why, len, EXIT_DATAERR,
			  "checkpoint %s: written by another network (model_hash %016" PRIx64 ", this network %016" PRIx64
			  "); use the config it was written with, or a new run directory",
			  path, mt.model_hash, m->hash);
		goto free_meta;
	}
	w->c = &c;
	w->file_size = seal.size;
	set_refs(w, m->tensors, m->n_tensors);
	if ((rc = ckpt_walk_group(w, file, CKPT_PARAMS_GROUP, CKPT_PARAMS_LABEL, b->params, false)) ||
	    (rc = ckpt_walk_states(w, file, n_dst, b->state_names, b->states, found)))
		goto free_meta;
	for (int j = 0; j < n_dst; j++)
		if (!found[j]) {
			rc = ckpt_fail(why, len, EXIT_DATAERR, "checkpoint %s: optimizer state /optim/%s is missing (optimizer %s in the file)",
				  path, b->state_names[j], mt.optimizer);
			goto free_meta;
		}
	if ((rc = walk_buffers(w, file, m, b->buffers)))
		goto free_meta;
	if ((rc = check_checksum(&c, ckpt_crc_meta(w->crc, &mt), stored)))
		goto free_meta;
	if (meta)
		*meta = mt;
	else
		ckpt_meta_free(&mt);
	goto close_file;
free_meta:
	ckpt_meta_free(&mt);
close_file:
	if (H5Fclose(file) < 0)
		H5Eclear2(H5E_DEFAULT); /* read-only: nothing was lost */
free_walker:
	free(w->scratch);
	free(w);
	return rc;
}

/* A model-based read, as ckpt_guarded runs it (the child fills no meta: the same calls). */
typedef struct read_job {
	const char *path;
	const model *m;
	bool weights_only;
	ckpt_meta *meta;
	ckpt_buffers *b;
} read_job;

static int read_job_run(void *ctx, bool child, char *why, size_t len)
{
	read_job *j = ctx;
	return read_locked(j->path, j->m, j->weights_only, child ? NULL : j->meta, j->b, why, len);
}

int ckpt_read_quiet(const char *path, const model *m, bool weights_only, ckpt_meta *meta, ckpt_buffers *b,
		    char *why, size_t len)
{
	int rc = 0;
	if (!path || !b || !b->params)
		rc = ckpt_fail(why, len, EXIT_SOFTWARE, "cannot read checkpoint %s: missing path or parameter buffer",
			  path ? path : "(null)");
	if (rc == 0 && (rc = ckpt_check_model(m, why, len)) == 0 && !weights_only)
		rc = ckpt_check_states(b, why, len);
	if (rc)
		return rc;
	read_job j = {path, m, weights_only, meta, b};
	ckpt_h5_enter();
	rc = ckpt_guarded(path, read_job_run, &j, why, len);
	ckpt_h5_leave();
	return rc;
}

int ckpt_read(const char *path, const model *m, bool weights_only, ckpt_meta *meta, ckpt_buffers *b)
{
	char why[CKPT_WHY_LEN];
	int rc = ckpt_read_quiet(path, m, weights_only, meta, b, why, sizeof why);
	if (rc)
		log_error("%s", why);
	return rc;
}

static int read_meta_locked(const char *path, ckpt_meta *meta, char *why, size_t len)
{
	reader_ctx c = { path, why, len };
	ckpt_meta mt;
	ckpt_seal_info seal;
	uint32_t stored;
	hid_t file;
	int rc = ckpt_open_input(path, &file, &seal, why, len);
	if (rc)
		return rc;
	rc = ckpt_read_meta_attrs(&c, file, &mt, &stored);
	if (rc == 0 && (rc = check_seal_agrees(&c, &seal, &mt)))
		ckpt_meta_free(&mt);
	else if (rc == 0 && meta)
		*meta = mt;
	else if (rc == 0)
		ckpt_meta_free(&mt);
	if (H5Fclose(file) < 0)
		H5Eclear2(H5E_DEFAULT);
	return rc;
}

typedef struct meta_job {
	const char *path;
	ckpt_meta *meta;
} meta_job;

static int meta_job_run(void *ctx, bool child, char *why, size_t len)
{
	meta_job *j = ctx;
	return read_meta_locked(j->path, child ? NULL : j->meta, why, len);
}

int ckpt_read_meta_quiet(const char *path, ckpt_meta *meta, char *why, size_t len)
{
	if (!path)
		return ckpt_fail(why, len, EXIT_SOFTWARE, "cannot read checkpoint: no path given");
	meta_job j = {path, meta};
	ckpt_h5_enter();
	int rc = ckpt_guarded(path, meta_job_run, &j, why, len);
	ckpt_h5_leave();
	return rc;
}

int ckpt_read_meta(const char *path, ckpt_meta *meta)
{
	char why[CKPT_WHY_LEN];
	int rc = ckpt_read_meta_quiet(path, meta, why, sizeof why);
	if (rc)
		log_error("%s", why);
	return rc;
}

void ckpt_meta_free(ckpt_meta *meta)
{
	if (!meta)
		return;
	free(meta->config_text);
	meta->config_text = NULL;
}

/* ------------------------------------------------------- model-free scan -- */

typedef struct attr_visit {
	reader_ctx *c;
	const ckpt_scan_visitor *vis;
	const char *label;
} attr_visit;

static herr_t attr_visit_cb(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
	attr_visit *av = data;
	ckpt_attr_value v = { .kind = CKPT_ATTR_OTHER, .n = 1 };
	char *s = NULL;
	hid_t a = -1, t = -1, sp = -1;
	(void)info;
	a = H5Aopen(loc, name, H5P_DEFAULT);
	if (a < 0)
		goto show;
	t = H5Aget_type(a);
	sp = H5Aget_space(a);
	hssize_t np = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
	if (t < 0 || np != 1) {
		v.n = np < 0 ? 1 : (uint64_t)np;
		goto show;
	}
	switch (H5Tget_class(t)) {
	case H5T_INTEGER:
		if (H5Tget_sign(t) == H5T_SGN_NONE) {
			if (H5Aread(a, H5T_NATIVE_UINT64, &v.u) >= 0)
				v.kind = CKPT_ATTR_UINT;
		} else if (H5Aread(a, H5T_NATIVE_INT64, &v.i) >= 0) {
			v.kind = CKPT_ATTR_INT;
		}
		break;
	case H5T_FLOAT:
		if (H5Aread(a, H5T_NATIVE_DOUBLE, &v.f) >= 0)
			v.kind = CKPT_ATTR_FLOAT;
		break;
	case H5T_STRING: {
		char why[CKPT_WHY_LEN];
		reader_ctx c = { av->c->path, why, sizeof why };
		if (ckpt_attr_read_str(&c, loc, av->label, name, &s) == 0) {
			v.kind = CKPT_ATTR_STRING;
			v.s = s;
		}
		break;
	}
	default:
		break;
	}
show:
	H5Eclear2(H5E_DEFAULT);
	av->vis->attr(av->vis->ctx, av->label, name, &v);
	free(s);
	ckpt_h5_close(sp);
	ckpt_h5_close(t);
	ckpt_h5_close(a);
	return 0;
}

/* Show every attribute of obj, in creation order where it was recorded. */
static void visit_attrs(reader_ctx *c, const ckpt_scan_visitor *vis, hid_t group, const char *label)
{
	unsigned flags = 0;
	hid_t gcpl = H5Gget_create_plist(group);
	if (gcpl < 0 || H5Pget_attr_creation_order(gcpl, &flags) < 0)
		flags = 0;
	ckpt_h5_close(gcpl);
	H5Eclear2(H5E_DEFAULT);
	attr_visit av = { c, vis, label };
	H5_index_t idx = (flags & H5P_CRT_ORDER_INDEXED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
	if (H5Aiterate2(group, idx, H5_ITER_INC, NULL, attr_visit_cb, &av) < 0)
		H5Eclear2(H5E_DEFAULT); /* what could be shown was shown; validation reports the problem */
}

static int scan_locked(const char *path, const ckpt_scan_visitor *vis, ckpt_meta *meta, char *why, size_t len)
{
	reader_ctx c = { path, why, len };
	ckpt_meta mt;
	ckpt_seal_info seal;
	uint32_t stored = 0;
	hid_t file;
	char meta_why[CKPT_WHY_LEN];
	reader_ctx mc = { path, meta_why, sizeof meta_why };
	walker *w = calloc(1, sizeof *w);
	if (!w)
		return ckpt_fail(why, len, EXIT_OSERR, "checkpoint %s: out of memory", path);
	int rc = ckpt_open_input(path, &file, &seal, why, len);
	if (rc)
		goto free_walker;
	if (vis && vis->attr) {
		hid_t g = H5Gopen2(file, "/", H5P_DEFAULT);
		if (g >= 0) {
			visit_attrs(&c, vis, g, "/");
			H5Gclose(g);
		}
		if (H5Lexists(file, CKPT_OPTIM_GROUP, H5P_DEFAULT) > 0 && (g = H5Gopen2(file, CKPT_OPTIM_GROUP, H5P_DEFAULT)) >= 0) {
			visit_attrs(&c, vis, g, CKPT_OPTIM_LABEL);
			H5Gclose(g);
		}
		H5Eclear2(H5E_DEFAULT);
	}
	/* a meta problem is reported, but the tensors are still walked (inspect shows them) */
	int meta_rc = ckpt_read_meta_attrs(&mc, file, &mt, &stored);
	if (meta_rc == 0 && (meta_rc = check_seal_agrees(&mc, &seal, &mt)))
		ckpt_meta_free(&mt);
	w->c = &c;
	w->vis = vis;
	w->model_free = true;
	w->file_size = seal.size;
	rc = ckpt_walk_group(w, file, CKPT_PARAMS_GROUP, CKPT_PARAMS_LABEL, NULL, true);
	if (rc == 0)
		rc = ckpt_walk_states(w, file, 0, NULL, NULL, NULL);
	if (rc == 0 && H5Lexists(file, CKPT_BUFFERS_GROUP, H5P_DEFAULT) > 0) {
		w->n_ref = 0; /* the buffers define their own shapes */
		rc = ckpt_walk_group(w, file, CKPT_BUFFERS_GROUP, CKPT_BUFFERS_LABEL, NULL, true);
	}
	H5Eclear2(H5E_DEFAULT);
	if (meta_rc) {
		snprintf(why, len, "%s", meta_why);
		rc = meta_rc;
	}
	if (rc == 0)
		rc = check_checksum(&c, ckpt_crc_meta(w->crc, &mt), stored);
	if (meta_rc == 0) {
		if (rc == 0 && meta)
			*meta = mt;
		else
			ckpt_meta_free(&mt);
	}
	if (H5Fclose(file) < 0)
		H5Eclear2(H5E_DEFAULT);
free_walker:
	free(w->scratch);
	free(w);
	return rc;
}

typedef struct scan_job {
	const char *path;
	const ckpt_scan_visitor *vis;
	ckpt_meta *meta;
} scan_job;

static void quiet_attr(void *ctx, const char *object, const char *name, const ckpt_attr_value *v)
{
	(void)ctx, (void)object, (void)name, (void)v;
}

static void quiet_group(void *ctx, const char *group, int n_tensors)
{
	(void)ctx, (void)group, (void)n_tensors;
}

static void quiet_tensor(void *ctx, const char *group, const char *name, int ndim, const int *dims,
			 const float *data, size_t numel)
{
	(void)ctx, (void)group, (void)name, (void)ndim, (void)dims, (void)data, (void)numel;
}

/* In the child the visitor shows nothing (its output would be lost or doubled), but the same
 * callbacks are there, so the walk makes the same HDF5 calls. */
static int scan_job_run(void *ctx, bool child, char *why, size_t len)
{
	scan_job *j = ctx;
	if (!child || !j->vis)
		return scan_locked(j->path, j->vis, j->meta, why, len);
	ckpt_scan_visitor quiet = {NULL, j->vis->attr ? quiet_attr : NULL, j->vis->group ? quiet_group : NULL,
				   j->vis->tensor ? quiet_tensor : NULL};
	return scan_locked(j->path, &quiet, NULL, why, len);
}

int ckpt_scan(const char *path, const ckpt_scan_visitor *v, ckpt_meta *meta, char *why, size_t why_len)
{
	if (!path)
		return ckpt_fail(why, why_len, EXIT_SOFTWARE, "cannot read checkpoint: no path given");
	scan_job j = {path, v, meta};
	ckpt_h5_enter();
	int rc = ckpt_guarded(path, scan_job_run, &j, why, why_len);
	ckpt_h5_leave();
	return rc;
}
