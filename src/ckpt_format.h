/*
 * ckpt_format.h - the checkpoint format in one place (DESIGN.md "HDF5
 * checkpoint schema"): the schema version, the names of the groups, and the
 * field table of the meta attributes of "/" and "/optim". Writing, reading,
 * validation, the content checksum and `spottrain inspect` all walk the
 * table; adding an attribute is one row. Free of HDF5 types.
 *
 * Content checksum (root attribute content_checksum, uint32): zlib crc32,
 * starting from 0, over
 *   1. the float32 values (little-endian bytes) of every dataset of /params,
 *      then of every /optim/<state> group, then (networks with buffers only)
 *      of /buffers, groups and datasets each in the
 *      order they were written (creation order is tracked and indexed; it is
 *      m->tensors order, ckpt_buffers state order, m->buffers order at write time);
 *   2. the fields with a checksum place (ckpt_field.crc), in that order:
 *      integers as int64 (uint64 for model_hash) little-endian, wall_time_s
 *      as float64, lr as float32, text as its bytes, two texts in a row
 *      joined by one 0 byte. Today that is a 92-byte record (Python:
 *      struct.pack('<9qQdf', step, epoch, sample_in_epoch, global_batch,
 *      world_size, generation, seed, epoch_end, optim step, model_hash,
 *      wall_time_s, lr)), then the optimizer name, 0, the config text.
 * format and format_version are not covered: they are checked by value.
 */
#ifndef SPOTTRAIN_CKPT_FORMAT_H
#define SPOTTRAIN_CKPT_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"

/* Groups of the file: /params/<tensor> and /optim/<state>/<tensor>. */
#define CKPT_PARAMS_GROUP "params"
#define CKPT_PARAMS_LABEL "/params"
#define CKPT_OPTIM_GROUP "optim"
#define CKPT_OPTIM_LABEL "/optim"
#define CKPT_BUFFERS_GROUP "buffers"
#define CKPT_BUFFERS_LABEL "/buffers"
#define CKPT_NAME_LEN 64 /* a tensor or state name, with its 0 (tensor_view.name) */

/* The object an attribute belongs to. */
typedef enum { CKPT_OBJ_ROOT, CKPT_OBJ_OPTIM } ckpt_object;

/* The type of an attribute in the file. */
typedef enum {
	CKPT_FT_INT64,   /* H5T_STD_I64LE */
	CKPT_FT_UINT64,  /* H5T_STD_U64LE */
	CKPT_FT_UINT32,  /* H5T_STD_U32LE */
	CKPT_FT_FLOAT64, /* H5T_IEEE_F64LE */
	CKPT_FT_FLOAT32, /* H5T_IEEE_F32LE */
	CKPT_FT_STRING,  /* fixed-length UTF-8, 0-padded (format 2; variable-length ones are refused) */
} ckpt_ftype;

/* The type of the ckpt_meta member that holds it. */
typedef enum {
	CKPT_CT_NONE,   /* not in ckpt_meta: a constant (format, format_version) or the checksum */
	CKPT_CT_LONG,
	CKPT_CT_INT,
	CKPT_CT_U32,
	CKPT_CT_U64,
	CKPT_CT_BOOL,   /* 0 or 1 in the file */
	CKPT_CT_DOUBLE,
	CKPT_CT_FLOAT,
	CKPT_CT_CHARS,  /* char[size], 0-terminated */
	CKPT_CT_STRPTR, /* char *, malloc'ed on read */
} ckpt_ctype;

/* Flags of a field. */
enum {
	CKPT_F_HEX = 1,      /* inspect shows it in hex */
	CKPT_F_CHECKSUM = 2, /* the content checksum itself: written last, compared after the walk */
};

/* One attribute of the schema. */
typedef struct ckpt_field {
	const char *name;
	ckpt_object obj;
	ckpt_ftype ftype;
	ckpt_ctype ctype;
	size_t offset;       /* offsetof(ckpt_meta, member); 0 for CKPT_CT_NONE */
	size_t size;         /* sizeof the member */
	int64_t lo, hi;      /* valid integer values (lo > hi: any); checked on write and read */
	bool required;       /* a file without it is refused; an optional one reads as 0 / "" */
	int crc;             /* place in the content checksum (1, 2, ...), 0 if not covered */
	unsigned flags;      /* CKPT_F_* */
	/* a constant of the format (ctype NONE, not the checksum): the file must hold it */
	const char *fixed_s; /* text (format) */
	int64_t fixed_i;     /* integer (format_version) */
} ckpt_field;

/* The table, in the order the attributes are written (creation order, which inspect shows). */
extern const ckpt_field ckpt_fields[];
extern const size_t ckpt_n_fields;

/* The value of a field, by kind: i (signed integers, bool), u (unsigned), f (floats), s (text). */
typedef struct ckpt_fval {
	int64_t i;
	uint64_t u;
	double f;
	const char *s; /* borrowed */
} ckpt_fval;

/* "/" or "/optim". */
const char *ckpt_object_label(ckpt_object obj);
/* The field named name of the object labelled object ("/", "/optim"), or NULL. */
const ckpt_field *ckpt_field_find(const char *object, const char *name);
/* A field that is a constant of the format (format, format_version). */
bool ckpt_field_is_fixed(const ckpt_field *f);
/* The value of f in mt (for a constant: the constant). The checksum field reads as 0. */
void ckpt_field_get(const ckpt_field *f, const ckpt_meta *mt, ckpt_fval *v);
/* Store v into mt; text is copied (CKPT_CT_STRPTR: malloc'ed). Returns 0, or -1 when the
 * text does not fit (msg says so) or there is no memory. Constants store nothing. */
int ckpt_field_set(const ckpt_field *f, ckpt_meta *mt, const ckpt_fval *v, char *msg, size_t len);
/* Is v inside the field's range? (Integers only; others always are.) */
bool ckpt_field_in_range(const ckpt_field *f, const ckpt_fval *v);

/* Part 2 of the content checksum (see above), continuing from crc. */
uint32_t ckpt_crc_meta(uint32_t crc, const ckpt_meta *mt);

/* Validation of the caller's arguments (ckpt_write, ckpt_read): EXIT_SOFTWARE with the reason. */
int ckpt_check_model(const model *m, char *why, size_t len);
int ckpt_check_states(const ckpt_buffers *b, char *why, size_t len);
int ckpt_check_meta(const ckpt_meta *mt, char *why, size_t len);
/* A name usable as one HDF5 link name (a tensor or a state). */
bool ckpt_valid_name(const char *s);

#endif
