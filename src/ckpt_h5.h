/*
 * ckpt_h5.h - what the HDF5 files of the ckpt module share: error messages
 * with HDF5's reason, the library lock, opening a file, the attributes of
 * the field table (ckpt_attr.c) and the walk over the tensors (ckpt_walk.c).
 * Only ckpt*.c include it (and so hdf5.h).
 *
 * Threads: the HDF5 packaged here is the serial build, which is not
 * thread-safe. The design uses HDF5 from one thread at a time: the trainer
 * calls ckpt_writer_wait() before any synchronous ckpt call, so the writer
 * thread and the training thread never overlap. ckpt_h5_enter() enforces the
 * same rule with a mutex (it mirrors the library's own global state): every
 * public function holds it for the whole of its HDF5 use, so a mistake costs
 * a wait, not a corrupted library.
 */
#ifndef SPOTTRAIN_CKPT_H5_H
#define SPOTTRAIN_CKPT_H5_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hdf5.h>

#include "ckpt.h"
#include "ckpt_format.h"
#include "ckpt_internal.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the ckpt module checksums the in-memory bytes of float32 values, which are little-endian only on little-endian hosts"
#endif

#define CKPT_WHY_LEN 1024
#define CKPT_MAX_STATE_GROUPS 64               /* more in /optim is not a checkpoint of ours */
#define CKPT_MAX_SCAN_NUMEL ((size_t)1 << 30)  /* floats in one dataset, model-free walk */
#define CKPT_MAX_STRING_ATTR ((size_t)1 << 24) /* bytes of a fixed-length string attribute */

/* ---------------------------------------------------------------- errors -- */

/* Format the reason into why; returns code. */
int ckpt_fail(char *why, size_t len, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Like ckpt_fail(), for a failed HDF5 call: appends ": " and HDF5's reason. Call it before any
 * other HDF5 call: every API call starts by clearing the error stack. */
int ckpt_h5fail(char *why, size_t len, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* --------------------------------------------------------- HDF5 plumbing -- */

/* Take the library lock and silence HDF5's printing; ckpt_h5_leave() clears and releases. */
void ckpt_h5_enter(void);
void ckpt_h5_leave(void);
/* Close any HDF5 id (negative ids are ignored). Returns HDF5's status. */
herr_t ckpt_h5_close(hid_t id);
/* File access properties: close strongly, no file locking; writing: in memory (the core
 * driver, growing by image_hint bytes, no backing store). -1 with *rc and why on failure. */
hid_t ckpt_make_fapl(bool for_write, size_t image_hint, const char *path, int code, char *why, size_t len, int *rc);
/* What ckpt_open_input checks before HDF5 sees the file (no HDF5 here): there, a regular
 * non-empty file, its seal intact and its crc right. 0 with seal filled, or the code. */
int ckpt_check_input(const char *path, ckpt_seal_info *seal, char *why, size_t len);
/* Open an existing file read-only: EXIT_NOINPUT if it is not there, EXIT_DATAERR if it is
 * not a regular, non-empty, sealed HDF5 file. The seal's content goes to seal. */
int ckpt_open_input(const char *path, hid_t *file, ckpt_seal_info *seal, char *why, size_t len);

/*
 * Lock held: read(ctx, child, why, len) in a forked child first (ckpt_guard.c), then, when the
 * child ended with a documented code (0 or a refusal), in this process (child false), whose
 * result is returned. A child that crashed or stalled is EXIT_DATAERR naming path. In the
 * child, read must make the same HDF5 calls and print nothing.
 */
int ckpt_guarded(const char *path, int (*read)(void *ctx, bool child, char *why, size_t len), void *ctx, char *why,
		 size_t len);

/* ------------------------------------------------------------ attributes -- */

/* Where a reader's messages go. */
typedef struct reader_ctx {
	const char *path; /* for messages */
	char *why;
	size_t len;
} reader_ctx;

/* What a writer of one file shares. */
typedef struct writer_ctx {
	const char *path; /* the .tmp being written, for messages */
	hid_t scalar;     /* scalar dataspace for attributes */
	char *why;
	size_t len;
} writer_ctx;

/* Read a one-value fixed-length string attribute into a malloc'ed copy. A variable-length
 * string is refused before HDF5 reads its value (see ckpt_attr.c). */
int ckpt_attr_read_str(reader_ctx *c, hid_t obj, const char *label, const char *name, char **out);
/* All meta attributes of / and /optim by the field table, validated (constants, ranges).
 * mt->config_text is malloc'ed on success and NULL on failure. */
int ckpt_read_meta_attrs(reader_ctx *c, hid_t file, ckpt_meta *mt, uint32_t *checksum);
/* Write the fields of object obj (the checksum field only when checksum is true, and then
 * only it, with the value crc) onto the HDF5 object h. EXIT_IOERR with the reason. */
int ckpt_write_fields(writer_ctx *c, hid_t h, ckpt_object obj, const ckpt_meta *mt, bool checksum, uint32_t crc);

/* ------------------------------------------------------------------ walk -- */

/* A tensor as the walk expects it: from the model, or (model-free) from /params. */
typedef struct tref {
	char name[CKPT_NAME_LEN];
	int ndim;
	hsize_t dims[4];
	size_t numel;
	size_t offset; /* into the destination buffers (model-based walk) */
} tref;

/* The state of one walk over the tensors of a file. */
typedef struct walker {
	reader_ctx *c;
	const ckpt_scan_visitor *vis; /* may be NULL */
	bool model_free;              /* refs come from /params */
	int n_ref;
	tref ref[MODEL_MAX_TENSORS];
	float *scratch;               /* for datasets that are only checksummed */
	size_t scratch_cap;           /* floats */
	uint64_t file_size;           /* every dataset's storage must lie inside it (0: unchecked) */
	uint32_t crc;
} walker;

/* One group of tensors: exactly the refs (or, defining, whatever /params holds), read into
 * dst at each ref's offset (NULL: only checksummed). */
int ckpt_walk_group(walker *w, hid_t parent, const char *gname, const char *label, float *dst, bool define);
/* /optim/<state> groups in creation order; a state named in dst_names goes to its buffer, the
 * others are only checksummed. found[j] tells which named states were there. */
int ckpt_walk_states(walker *w, hid_t file, int n_dst, const char *const *dst_names, float *const *dst, bool *found);

#endif
