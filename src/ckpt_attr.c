/*
 * ckpt_attr.c - the meta attributes of a checkpoint, driven by the field
 * table (ckpt_format.c): one typed reader and one typed writer of an
 * attribute, and the loops over the table that read, validate and write
 * the meta.
 */
#include "ckpt_h5.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"

/* ---------------------------------------------------------------- reading -- */

/* Open attribute name of obj, which must hold one value of type class cls. */
static hid_t attr_open_scalar(reader_ctx *c, hid_t obj, const char *label, const char *name, H5T_class_t cls,
			      const char *what, hid_t *ftype)
{
	hid_t a = -1, sp = -1;
	htri_t ex = H5Aexists(obj, name);
	*ftype = -1;
	if (ex < 0) {
		ckpt_h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot look up attribute %s of %s", c->path, name, label);
		return -1;
	}
	if (ex == 0) {
		ckpt_fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: attribute %s of %s is missing", c->path, name, label);
		return -1;
	}
	a = H5Aopen(obj, name, H5P_DEFAULT);
	if (a < 0) {
		ckpt_h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot open attribute %s of %s", c->path, name, label);
		return -1;
	}
	*ftype = H5Aget_type(a);
	sp = H5Aget_space(a);
	if (*ftype < 0 || sp < 0) {
		ckpt_h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot query attribute %s of %s", c->path, name, label);
		goto fail_attr;
	}
	if (H5Tget_class(*ftype) != cls) {
		ckpt_fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: attribute %s of %s is not %s", c->path, name, label, what);
		goto fail_attr;
	}
	hssize_t npoints = H5Sget_simple_extent_npoints(sp);
	if (npoints != 1) {
		ckpt_fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: attribute %s of %s holds %lld values, expected one",
		     c->path, name, label, (long long)npoints);
		goto fail_attr;
	}
	H5Sclose(sp);
	return a;
fail_attr:
	ckpt_h5_close(sp);
	ckpt_h5_close(*ftype);
	*ftype = -1;
	H5Aclose(a);
	return -1;
}

/* Read a one-value numeric attribute as mtype (HDF5 converts). */
static int attr_read_num(reader_ctx *c, hid_t obj, const char *label, const char *name, H5T_class_t cls,
			 hid_t mtype, void *out)
{
	hid_t ft;
	hid_t a = attr_open_scalar(c, obj, label, name, cls, cls == H5T_INTEGER ? "an integer" : "a number", &ft);
	if (a < 0)
		return EXIT_DATAERR;
	int rc = 0;
	if (H5Aread(a, mtype, out) < 0)
		rc = ckpt_h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot read attribute %s of %s", c->path, name, label);
	H5Tclose(ft);
	H5Aclose(a);
	return rc;
}

/*
 * Read a one-value string attribute into a malloc'ed copy. Only fixed-length strings are read:
 * their bytes sit in the attribute itself, which HDF5 copies by its declared size. A
 * variable-length string (format version 1) keeps its bytes in HDF5's global heap, whose
 * reader trusts the sizes it finds there (a damaged heap behind a valid seal crashed
 * H5HG_read), so it is refused from its type alone, before HDF5 reads any of its value.
 */
int ckpt_attr_read_str(reader_ctx *c, hid_t obj, const char *label, const char *name, char **out)
{
	hid_t ft, mt = -1;
	int rc = 0;
	*out = NULL;
	hid_t a = attr_open_scalar(c, obj, label, name, H5T_STRING, "a string", &ft);
	if (a < 0)
		return EXIT_DATAERR;
	htri_t var = H5Tis_variable_str(ft);
	size_t n = var == 0 ? H5Tget_size(ft) : 0;
	if (var < 0) {
		rc = ckpt_h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot query attribute %s of %s", c->path, name, label);
	} else if (var > 0) {
		rc = ckpt_fail(c->why, c->len, EXIT_DATAERR,
			       "checkpoint %s: attribute %s of %s is a variable-length string " CKPT_FORMAT1_NOTE
			       "written before format %d): not read, as HDF5 would take it from its unchecked global heap",
			       c->path, name, label, CKPT_FORMAT_VERSION);
	} else if (n == 0 || n > CKPT_MAX_STRING_ATTR) {
		rc = ckpt_fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: attribute %s of %s has size %zu", c->path, name, label, n);
	} else if ((mt = H5Tcopy(ft)) < 0 || !(*out = calloc(n + 1, 1))) {
		rc = ckpt_h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: no memory for attribute %s of %s", c->path, name, label);
	} else if (H5Aread(a, mt, *out) < 0) {
		rc = ckpt_h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot read attribute %s of %s", c->path, name, label);
	} /* (0-padded: the text ends at its first 0, as C reads it) */
	if (rc) {
		free(*out);
		*out = NULL;
	}
	ckpt_h5_close(mt);
	H5Tclose(ft);
	H5Aclose(a);
	return rc;
}

/* All meta attributes of / and /optim, validated (format, version, ranges). meta->config_text is
 * malloc'ed on success and NULL on failure. */

/* The constants of the format (format, format_version): the file must hold this build's. */
static int check_fixed(reader_ctx *c, const ckpt_field *f, const ckpt_fval *v)
{
	if (f->fixed_s && strcmp(v->s, f->fixed_s) != 0)
		return ckpt_fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: %s is \"%.40s\", not \"%s\"", c->path, f->name,
				 v->s, f->fixed_s);
	if (!f->fixed_s && v->i != f->fixed_i)
		return ckpt_fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: %s %" PRId64 ", this build reads %" PRId64 "%s",
				 c->path, f->name, v->i, f->fixed_i, v->i > f->fixed_i ? " (written by a newer spottrain)" : "");
	return 0;
}

/* Read field f of object h into v (text: malloc'ed into *s, v->s points to it), checking
 * its type class, its constant and its range. */
static int read_field(reader_ctx *c, hid_t h, const ckpt_field *f, ckpt_fval *v, char **s)
{
	const char *label = ckpt_object_label(f->obj);
	int rc = 0;
	uint32_t u32 = 0;
	float f32 = 0;
	memset(v, 0, sizeof *v);
	*s = NULL;
	switch (f->ftype) {
	case CKPT_FT_INT64: rc = attr_read_num(c, h, label, f->name, H5T_INTEGER, H5T_NATIVE_INT64, &v->i); break;
	case CKPT_FT_UINT64: rc = attr_read_num(c, h, label, f->name, H5T_INTEGER, H5T_NATIVE_UINT64, &v->u); break;
	case CKPT_FT_UINT32: rc = attr_read_num(c, h, label, f->name, H5T_INTEGER, H5T_NATIVE_UINT32, &u32); break;
	case CKPT_FT_FLOAT64: rc = attr_read_num(c, h, label, f->name, H5T_FLOAT, H5T_NATIVE_DOUBLE, &v->f); break;
	case CKPT_FT_FLOAT32: rc = attr_read_num(c, h, label, f->name, H5T_FLOAT, H5T_NATIVE_FLOAT, &f32); break;
	case CKPT_FT_STRING: rc = ckpt_attr_read_str(c, h, label, f->name, s); break;
	}
	if (rc)
		return rc;
	if (f->ftype == CKPT_FT_UINT32)
		v->u = u32;
	v->f = f->ftype == CKPT_FT_FLOAT32 ? f32 : v->f;
	v->s = *s;
	if (ckpt_field_is_fixed(f))
		return check_fixed(c, f, v);
	if (!ckpt_field_in_range(f, v))
		return f->ftype == CKPT_FT_INT64
			       ? ckpt_fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: attribute %s of %s = %" PRId64 " is out of range",
					   c->path, f->name, label, v->i)
			       : ckpt_fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: attribute %s of %s = %" PRIu64 " is out of range",
					   c->path, f->name, label, v->u);
	return 0;
}

/* One field into mt (or, the checksum field, into *checksum). An optional field that is
 * absent keeps its zero. */
static int read_one(reader_ctx *c, hid_t h, const ckpt_field *f, ckpt_meta *mt, uint32_t *checksum)
{
	ckpt_fval v;
	char *s = NULL, msg[128];
	if (!f->required) {
		htri_t ex = H5Aexists(h, f->name);
		if (ex < 0)
			return ckpt_h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot look up attribute %s of %s", c->path,
					   f->name, ckpt_object_label(f->obj));
		if (ex == 0)
			return 0;
	}
	int rc = read_field(c, h, f, &v, &s);
	if (rc == 0 && (f->flags & CKPT_F_CHECKSUM))
		*checksum = (uint32_t)v.u;
	else if (rc == 0 && ckpt_field_set(f, mt, &v, msg, sizeof msg) != 0)
		rc = ckpt_fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: %s", c->path, msg);
	free(s);
	return rc;
}

/* Open /optim, which must be there. */
static int open_optim(reader_ctx *c, hid_t file, hid_t *optim)
{
	htri_t ex = H5Lexists(file, CKPT_OPTIM_GROUP, H5P_DEFAULT);
	if (ex <= 0)
		return ex < 0 ? ckpt_h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot look up /optim", c->path)
			      : ckpt_fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: group /optim is missing", c->path);
	*optim = H5Gopen2(file, CKPT_OPTIM_GROUP, H5P_DEFAULT);
	if (*optim < 0)
		return ckpt_h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot open group /optim", c->path);
	return 0;
}

int ckpt_read_meta_attrs(reader_ctx *c, hid_t file, ckpt_meta *mt, uint32_t *checksum)
{
	hid_t optim = -1;
	int rc = 0;
	memset(mt, 0, sizeof *mt);
	for (size_t i = 0; i < ckpt_n_fields && rc == 0; i++) {
		const ckpt_field *f = &ckpt_fields[i];
		if (f->obj == CKPT_OBJ_OPTIM && optim < 0 && (rc = open_optim(c, file, &optim)))
			break;
		rc = read_one(c, f->obj == CKPT_OBJ_ROOT ? file : optim, f, mt, checksum);
	}
	if (optim >= 0)
		H5Gclose(optim);
	if (rc)
		ckpt_meta_free(mt);
	return rc;
}

/* ---------------------------------------------------------------- writing -- */

static int attr_write(writer_ctx *c, hid_t obj, const char *obj_label, const char *name, hid_t ftype, hid_t mtype,
		      const void *val)
{
	hid_t a = H5Acreate2(obj, name, ftype, c->scalar, H5P_DEFAULT, H5P_DEFAULT);
	if (a < 0)
		return ckpt_h5fail(c->why, c->len, EXIT_IOERR, "create attribute %s of %s in %s", name, obj_label, c->path);
	if (H5Awrite(a, mtype, val) < 0) {
		int rc = ckpt_h5fail(c->why, c->len, EXIT_IOERR, "write attribute %s of %s in %s", name, obj_label, c->path);
		H5Aclose(a);
		return rc;
	}
	if (H5Aclose(a) < 0)
		return ckpt_h5fail(c->why, c->len, EXIT_IOERR, "close attribute %s of %s in %s", name, obj_label, c->path);
	return 0;
}

/* Write text s as a fixed-length UTF-8 string of its own length (at least 1 byte, 0-padded):
 * the bytes live in the attribute, never in the global heap (format version 2). */
static int attr_write_str(writer_ctx *c, hid_t obj, const char *obj_label, const char *name, const char *s)
{
	size_t n = strlen(s);
	if (n > CKPT_MAX_STRING_ATTR)
		return ckpt_fail(c->why, c->len, EXIT_SOFTWARE, "attribute %s of %s in %s: %zu bytes of text (at most %zu)",
				 name, obj_label, c->path, n, CKPT_MAX_STRING_ATTR);
	hid_t t = H5Tcopy(H5T_C_S1);
	if (t < 0 || H5Tset_size(t, n ? n : 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLPAD) < 0 ||
	    H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
		ckpt_h5_close(t);
		return ckpt_h5fail(c->why, c->len, EXIT_IOERR, "create a string type for attribute %s of %s in %s", name,
				   obj_label, c->path);
	}
	int rc = attr_write(c, obj, obj_label, name, t, t, n ? s : "");
	H5Tclose(t);
	return rc;
}

/* Write field f onto h with value v, in the field's file type. */
static int write_field(writer_ctx *c, hid_t h, const ckpt_field *f, const ckpt_fval *v)
{
	const char *label = ckpt_object_label(f->obj);
	uint32_t u32 = (uint32_t)v->u;
	float f32 = (float)v->f;
	switch (f->ftype) {
	case CKPT_FT_INT64: return attr_write(c, h, label, f->name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v->i);
	case CKPT_FT_UINT64: return attr_write(c, h, label, f->name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v->u);
	case CKPT_FT_UINT32: return attr_write(c, h, label, f->name, H5T_STD_U32LE, H5T_NATIVE_UINT32, &u32);
	case CKPT_FT_FLOAT64: return attr_write(c, h, label, f->name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v->f);
	case CKPT_FT_FLOAT32: return attr_write(c, h, label, f->name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &f32);
	case CKPT_FT_STRING: return attr_write_str(c, h, label, f->name, v->s);
	}
	return ckpt_fail(c->why, c->len, EXIT_SOFTWARE, "attribute %s has no file type", f->name);
}

int ckpt_write_fields(writer_ctx *c, hid_t h, ckpt_object obj, const ckpt_meta *mt, bool checksum, uint32_t crc)
{
	for (size_t i = 0; i < ckpt_n_fields; i++) {
		const ckpt_field *f = &ckpt_fields[i];
		ckpt_fval v;
		if (f->obj != obj || !(f->flags & CKPT_F_CHECKSUM) != !checksum)
			continue;
		ckpt_field_get(f, mt, &v);
		if (checksum)
			v.u = crc;
		int rc = write_field(c, h, f, &v);
		if (rc)
			return rc;
	}
	return 0;
}
