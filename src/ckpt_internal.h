/*
 * ckpt_internal.h - what the files of the ckpt module share: a walk over a
 * checkpoint that needs no model, quiet reads, the seal.
 * Not part of the module's public face (that is ckpt.h) and free of HDF5
 * types. The module's files: ckpt_format.c the format (field table, names,
 * checks of arguments), ckpt_h5.c the HDF5 plumbing, ckpt_attr.c the meta
 * attributes, ckpt_write.c writing, ckpt_walk.c and ckpt_read.c reading and
 * validation, ckpt_seal.c the whole-file crc around the HDF5 file,
 * ckpt_dir.c the checkpoint directory, ckpt_inspect.c the printout,
 * ckpt_writer.c the background writer. Only the HDF5 ones (ckpt_h5.h)
 * include hdf5.h.
 */
#ifndef SPOTTRAIN_CKPT_INTERNAL_H
#define SPOTTRAIN_CKPT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"

typedef enum {
	CKPT_ATTR_INT,    /* signed integer: i */
	CKPT_ATTR_UINT,   /* unsigned integer: u */
	CKPT_ATTR_FLOAT,  /* floating point: f */
	CKPT_ATTR_STRING, /* text: s (valid during the callback only) */
	CKPT_ATTR_OTHER,  /* an array (n values) or a type this walk does not show */
} ckpt_attr_kind;

typedef struct ckpt_attr_value {
	ckpt_attr_kind kind; /* which member below holds the value */
	int64_t i;           /* CKPT_ATTR_INT */
	uint64_t u;          /* CKPT_ATTR_UINT */
	double f;            /* CKPT_ATTR_FLOAT */
	const char *s;       /* CKPT_ATTR_STRING */
	uint64_t n;          /* CKPT_ATTR_OTHER: number of values (1 for an unreadable scalar) */
} ckpt_attr_value;

/* Callbacks of ckpt_scan; any of them may be NULL. */
typedef struct ckpt_scan_visitor {
	void *ctx; /* handed to every callback */
	/* each attribute of "/" and of "/optim", in the order they were written */
	void (*attr)(void *ctx, const char *object, const char *name, const ckpt_attr_value *v);
	/* start of a group of tensors: "/params", then "/optim/<state>" in the order written */
	void (*group)(void *ctx, const char *group, int n_tensors);
	/* each tensor of the current group with its values (valid during the callback only) */
	void (*tensor)(void *ctx, const char *group, const char *name, int ndim, const int *dims,
		       const float *data, size_t numel);
} ckpt_scan_visitor;

/*
 * Walk and validate a checkpoint without a model: format, version, every meta attribute,
 * every /optim/<state> group holding exactly the tensors of /params with the same shapes,
 * all float32, and the content checksum. Fills meta (may be NULL; config_text malloc'ed)
 * on success. Returns 0, EXIT_NOINPUT or EXIT_DATAERR with the reason (naming the file) in
 * why. On a damaged file the walk goes on as far as it can, so inspect shows what is there.
 */
int ckpt_scan(const char *path, const ckpt_scan_visitor *v, ckpt_meta *meta, char *why, size_t why_len);

/* ckpt_read and ckpt_read_meta without logging: the reason (naming the file) goes to why. */
int ckpt_read_quiet(const char *path, const model *m, bool weights_only, ckpt_meta *meta, ckpt_buffers *b,
		    char *why, size_t why_len);
int ckpt_read_meta_quiet(const char *path, ckpt_meta *meta, char *why, size_t why_len);

/* Part of the reason a reader gives for a file of checkpoint format 1 (variable-length strings,
 * refused: ckpt_attr.c); ckpt_find_newest looks for it to refuse a silent restart from step 0. */
#define CKPT_FORMAT1_NOTE "(checkpoint format 1, "

/* The seal (ckpt_seal.c): CKPT_SEAL_SIZE bytes at the end of a checkpoint file. */
#define CKPT_SEAL_SIZE 48

/* What a seal says about its file. */
typedef struct ckpt_seal_info {
	uint64_t size;     /* of the whole file */
	int64_t step;      /* as the root attribute step */
	bool epoch_end;    /* as the root attribute epoch_end */
	uint32_t data_crc; /* of the HDF5 part */
} ckpt_seal_info;

/* zlib's crc32, continuing from crc (0 to start), over any length. */
uint32_t ckpt_crc32(uint32_t crc, const void *p, size_t n);
/* Write the seal of the n-byte image img at img + n (the caller leaves room for it). */
void ckpt_seal_image(unsigned char *img, size_t n, long step, bool epoch_end);
/* Check the seal of the file path of size bytes, reading all of it: 0 (info filled),
 * EXIT_NOINPUT or EXIT_DATAERR (reason in why). */
int ckpt_check_seal(const char *path, uint64_t size, ckpt_seal_info *info, char *why, size_t why_len);
/* Read only the seal (48 bytes; intact, and for the file's size): retention uses it. */
int ckpt_read_seal(const char *path, ckpt_seal_info *info, char *why, size_t why_len);
/* (Re)stamp the seal of a file in place: tests use it to make a file they changed with HDF5 look
 * whole again, to reach the checks behind the seal. EXIT_IOERR with the reason in why. */
int ckpt_seal(const char *path, long step, bool epoch_end, char *why, size_t why_len);

#endif
