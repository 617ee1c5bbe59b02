/*
 * ckpt_format.c - the field table of the checkpoint meta, the value
 * accessors that move a field between ckpt_meta and a typed value, the
 * checksum of the meta, and the checks of the caller's arguments. See
 * ckpt_format.h for the format itself.
 */
#include "ckpt_format.h"

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt_internal.h"
#include "contract.h"

#define ANY 1, 0 /* lo > hi: no range */

/* A member of ckpt_meta with its C type, offset and size. */
#define LONG_(member) CKPT_CT_LONG, offsetof(ckpt_meta, member), sizeof(long)
#define INT_(member) CKPT_CT_INT, offsetof(ckpt_meta, member), sizeof(int)
#define U32_(member) CKPT_CT_U32, offsetof(ckpt_meta, member), sizeof(uint32_t)
#define U64_(member) CKPT_CT_U64, offsetof(ckpt_meta, member), sizeof(uint64_t)
#define BOOL_(member) CKPT_CT_BOOL, offsetof(ckpt_meta, member), sizeof(bool)
#define DOUBLE_(member) CKPT_CT_DOUBLE, offsetof(ckpt_meta, member), sizeof(double)
#define FLOAT_(member) CKPT_CT_FLOAT, offsetof(ckpt_meta, member), sizeof(float)
#define CHARS_(member) CKPT_CT_CHARS, offsetof(ckpt_meta, member), sizeof(((ckpt_meta *)0)->member)
#define STRPTR_(member) CKPT_CT_STRPTR, offsetof(ckpt_meta, member), sizeof(char *)
#define NONE_ CKPT_CT_NONE, 0, 0

#define ROOT CKPT_OBJ_ROOT
#define OPTIM CKPT_OBJ_OPTIM

/* name, object, file type, member, range, required, checksum place, flags, constant */
const ckpt_field ckpt_fields[] = {
	{ "format", ROOT, CKPT_FT_STRING, NONE_, ANY, true, 0, 0, CKPT_FORMAT, 0 },
	{ "format_version", ROOT, CKPT_FT_INT64, NONE_, ANY, true, 0, 0, NULL, CKPT_FORMAT_VERSION },
	{ "model_hash", ROOT, CKPT_FT_UINT64, U64_(model_hash), ANY, true, 10, CKPT_F_HEX, NULL, 0 },
	{ "step", ROOT, CKPT_FT_INT64, LONG_(step), 0, LONG_MAX, true, 1, 0, NULL, 0 },
	{ "epoch", ROOT, CKPT_FT_INT64, LONG_(epoch), 0, LONG_MAX, true, 2, 0, NULL, 0 },
	{ "sample_in_epoch", ROOT, CKPT_FT_INT64, LONG_(sample_in_epoch), 0, LONG_MAX, true, 3, 0, NULL, 0 },
	{ "global_batch", ROOT, CKPT_FT_INT64, INT_(global_batch), 0, INT_MAX, true, 4, 0, NULL, 0 },
	{ "world_size", ROOT, CKPT_FT_INT64, INT_(world_size), 0, INT_MAX, true, 5, 0, NULL, 0 },
	{ "generation", ROOT, CKPT_FT_INT64, INT_(generation), 0, INT_MAX, true, 6, 0, NULL, 0 },
	{ "seed", ROOT, CKPT_FT_UINT64, U32_(seed), 0, UINT32_MAX, true, 7, 0, NULL, 0 },
	{ "wall_time_s", ROOT, CKPT_FT_FLOAT64, DOUBLE_(wall_time_s), ANY, true, 11, 0, NULL, 0 },
	{ "epoch_end", ROOT, CKPT_FT_INT64, BOOL_(epoch_end), 0, 1, true, 8, 0, NULL, 0 },
	{ "config", ROOT, CKPT_FT_STRING, STRPTR_(config_text), ANY, true, 14, 0, NULL, 0 },
	{ "optimizer", OPTIM, CKPT_FT_STRING, CHARS_(optimizer), ANY, true, 13, 0, NULL, 0 },
	{ "lr", OPTIM, CKPT_FT_FLOAT32, FLOAT_(lr), ANY, true, 12, 0, NULL, 0 },
	{ "step", OPTIM, CKPT_FT_INT64, LONG_(optim_step), 0, LONG_MAX, true, 9, 0, NULL, 0 },
	{ "content_checksum", ROOT, CKPT_FT_UINT32, NONE_, ANY, true, 0, CKPT_F_HEX | CKPT_F_CHECKSUM, NULL, 0 },
};
const size_t ckpt_n_fields = sizeof ckpt_fields / sizeof ckpt_fields[0];

const char *ckpt_object_label(ckpt_object obj)
{
	return obj == CKPT_OBJ_ROOT ? "/" : CKPT_OPTIM_LABEL;
}

const ckpt_field *ckpt_field_find(const char *object, const char *name)
{
	for (size_t i = 0; i < ckpt_n_fields; i++) {
		const ckpt_field *f = &ckpt_fields[i];
		if (strcmp(ckpt_object_label(f->obj), object) == 0 && strcmp(f->name, name) == 0)
			return f;
	}
	return NULL;
}

bool ckpt_field_is_fixed(const ckpt_field *f)
{
	return f->ctype == CKPT_CT_NONE && !(f->flags & CKPT_F_CHECKSUM);
}

void ckpt_field_get(const ckpt_field *f, const ckpt_meta *mt, ckpt_fval *v)
{
	const char *p = (const char *)mt + f->offset;
	memset(v, 0, sizeof *v);
	switch (f->ctype) {
	case CKPT_CT_NONE:
		v->s = f->fixed_s;
		v->i = f->fixed_i;
		break;
	case CKPT_CT_LONG: v->i = *(const long *)p; break;
	case CKPT_CT_INT: v->i = *(const int *)p; break;
	case CKPT_CT_BOOL: v->i = *(const bool *)p ? 1 : 0; break;
	case CKPT_CT_U32: v->u = *(const uint32_t *)p; v->i = (int64_t)v->u; break;
	case CKPT_CT_U64: v->u = *(const uint64_t *)p; break;
	case CKPT_CT_DOUBLE: v->f = *(const double *)p; break;
	case CKPT_CT_FLOAT: v->f = *(const float *)p; break;
	case CKPT_CT_CHARS: v->s = p; break;
	case CKPT_CT_STRPTR: v->s = *(char *const *)p; break;
	}
	if (f->ftype == CKPT_FT_STRING && !v->s)
		v->s = "";
}

int ckpt_field_set(const ckpt_field *f, ckpt_meta *mt, const ckpt_fval *v, char *msg, size_t len)
{
	char *p = (char *)mt + f->offset;
	const char *s = v->s ? v->s : "";
	switch (f->ctype) {
	case CKPT_CT_NONE: break;
	case CKPT_CT_LONG: *(long *)p = (long)v->i; break;
	case CKPT_CT_INT: *(int *)p = (int)v->i; break;
	case CKPT_CT_BOOL: *(bool *)p = v->i != 0; break;
	case CKPT_CT_U32: *(uint32_t *)p = (uint32_t)v->u; break;
	case CKPT_CT_U64: *(uint64_t *)p = v->u; break;
	case CKPT_CT_DOUBLE: *(double *)p = v->f; break;
	case CKPT_CT_FLOAT: *(float *)p = (float)v->f; break;
	case CKPT_CT_CHARS:
		if (strlen(s) >= f->size) {
			snprintf(msg, len, "%s \"%.40s\" is too long", f->name, s);
			return -1;
		}
		strcpy(p, s);
		break;
	case CKPT_CT_STRPTR:
		if (!(*(char **)p = strdup(s))) {
			snprintf(msg, len, "no memory for %s", f->name);
			return -1;
		}
		break;
	}
	return 0;
}

bool ckpt_field_in_range(const ckpt_field *f, const ckpt_fval *v)
{
	if (f->lo > f->hi)
		return true;
	switch (f->ftype) {
	case CKPT_FT_INT64: return v->i >= f->lo && v->i <= f->hi;
	case CKPT_FT_UINT64:
	case CKPT_FT_UINT32: return v->u <= (uint64_t)f->hi && (f->lo <= 0 || v->u >= (uint64_t)f->lo);
	default: return true;
	}
}

/* Add one field to the checksum (encodings: see ckpt_format.h). *text: the previous field was text. */
static uint32_t crc_field(uint32_t crc, const ckpt_field *f, const ckpt_meta *mt, bool *text)
{
	ckpt_fval v;
	unsigned char rec[8];
	uint64_t bits = 0;
	size_t n = 8;
	ckpt_field_get(f, mt, &v);
	switch (f->ctype) {
	case CKPT_CT_CHARS:
	case CKPT_CT_STRPTR:
		if (*text)
			crc = ckpt_crc32(crc, "", 1);
		*text = true;
		return ckpt_crc32(crc, v.s, f->ctype == CKPT_CT_CHARS ? strnlen(v.s, f->size) : strlen(v.s));
	case CKPT_CT_U64: bits = v.u; break;
	case CKPT_CT_DOUBLE: memcpy(&bits, &v.f, sizeof bits); break;
	case CKPT_CT_FLOAT: {
		float x = (float)v.f;
		uint32_t b;
		memcpy(&b, &x, sizeof b);
		bits = b;
		n = 4;
		break;
	}
	default: bits = (uint64_t)v.i; break;
	}
	*text = false;
	for (size_t i = 0; i < n; i++)
		rec[i] = (unsigned char)(bits >> (8 * i));
	return ckpt_crc32(crc, rec, n);
}

uint32_t ckpt_crc_meta(uint32_t crc, const ckpt_meta *mt)
{
	bool text = false;
	for (int place = 1;; place++) {
		const ckpt_field *f = NULL;
		for (size_t i = 0; i < ckpt_n_fields && !f; i++)
			if (ckpt_fields[i].crc == place)
				f = &ckpt_fields[i];
		if (!f)
			return crc;
		crc = crc_field(crc, f, mt, &text);
	}
}

/* ------------------------------------------------------------- arguments -- */

static int fail(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	return EXIT_SOFTWARE;
}

bool ckpt_valid_name(const char *s)
{
	size_t n = strnlen(s, CKPT_NAME_LEN);
	return n > 0 && n < CKPT_NAME_LEN && !strchr(s, '/') && strcmp(s, ".") != 0;
}

/* One tensor of the model's table: name, shape, extent inside the buffer. */
static int check_tensor(const model *m, int i, char *why, size_t len)
{
	const tensor_view *t = &m->tensors[i];
	if (!ckpt_valid_name(t->name))
		return fail(why, len, "tensor %d has an unusable name", i);
	if (t->ndim < 1 || t->ndim > 4)
		return fail(why, len, "tensor %s has %d dimensions", t->name, t->ndim);
	size_t numel = 1;
	for (int d = 0; d < t->ndim; d++) {
		if (t->dims[d] < 1)
			return fail(why, len, "tensor %s has dimension %d = %d", t->name, d, t->dims[d]);
		numel *= (size_t)t->dims[d];
	}
	if (numel != t->numel || t->offset > m->n_params || t->numel > m->n_params - t->offset)
		return fail(why, len, "tensor %s does not fit its shape or the parameter buffer", t->name);
	for (int j = 0; j < i; j++)
		if (strcmp(m->tensors[j].name, t->name) == 0)
			return fail(why, len, "tensor name %s appears twice", t->name);
	return 0;
}

/* One buffer view: name (unique among tensors and buffers), shape, extent inside the block. */
static int check_buffer(const model *m, int i, char *why, size_t len)
{
	const tensor_view *t = &m->buffers[i];
	size_t numel = 1;
	if (!ckpt_valid_name(t->name) || t->ndim < 1 || t->ndim > 4)
		return fail(why, len, "buffer %d has an unusable name or shape", i);
	for (int d = 0; d < t->ndim; d++) {
		if (t->dims[d] < 1)
			return fail(why, len, "buffer %s has dimension %d = %d", t->name, d, t->dims[d]);
		numel *= (size_t)t->dims[d];
	}
	if (numel != t->numel || t->offset > m->n_buffers || t->numel > m->n_buffers - t->offset)
		return fail(why, len, "buffer %s does not fit its shape or the buffer block", t->name);
	for (int j = 0; j < i; j++)
		if (strcmp(m->buffers[j].name, t->name) == 0)
			return fail(why, len, "buffer name %s appears twice", t->name);
	return 0;
}

int ckpt_check_model(const model *m, char *why, size_t len)
{
	if (!m)
		return fail(why, len, "no model given");
	if (m->n_tensors < 1 || m->n_tensors > MODEL_MAX_TENSORS)
		return fail(why, len, "model has %d tensors", m->n_tensors);
	for (int i = 0; i < m->n_tensors; i++) {
		int rc = check_tensor(m, i, why, len);
		if (rc)
			return rc;
	}
	if (m->n_buffer_views < 0 || m->n_buffer_views > MODEL_MAX_BUFFERS)
		return fail(why, len, "model has %d buffers", m->n_buffer_views);
	for (int i = 0; i < m->n_buffer_views; i++) {
		int rc = check_buffer(m, i, why, len);
		if (rc)
			return rc;
	}
	return 0;
}

int ckpt_check_states(const ckpt_buffers *b, char *why, size_t len)
{
	if (b->n_states < 0 || b->n_states > CKPT_MAX_STATES)
		return fail(why, len, "%d optimizer states (at most %d)", b->n_states, CKPT_MAX_STATES);
	for (int s = 0; s < b->n_states; s++) {
		if (!b->state_names[s] || !ckpt_valid_name(b->state_names[s]) || !b->states[s])
			return fail(why, len, "optimizer state %d has no usable name or buffer", s);
		for (int j = 0; j < s; j++)
			if (strcmp(b->state_names[j], b->state_names[s]) == 0)
				return fail(why, len, "optimizer state %s appears twice", b->state_names[s]);
	}
	return 0;
}

int ckpt_check_meta(const ckpt_meta *mt, char *why, size_t len)
{
	for (size_t i = 0; i < ckpt_n_fields; i++) {
		const ckpt_field *f = &ckpt_fields[i];
		ckpt_fval v;
		if (f->ctype == CKPT_CT_NONE)
			continue;
		if (f->ctype == CKPT_CT_CHARS && strnlen((const char *)mt + f->offset, f->size) == f->size)
			return fail(why, len, "%s is not terminated", f->name);
		ckpt_field_get(f, mt, &v);
		if (!ckpt_field_in_range(f, &v))
			return fail(why, len, "%s%s%s = %" PRId64 " is out of range in the checkpoint meta",
				    f->obj == CKPT_OBJ_ROOT ? "" : ckpt_object_label(f->obj),
				    f->obj == CKPT_OBJ_ROOT ? "" : ":", f->name, v.i);
	}
	return 0;
}
