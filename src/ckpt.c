/*
 * ckpt.c - the HDF5 checkpoint file: atomic write, validated read, and a
 * model-free walk for inspect and retention (DESIGN.md invariant 4). The
 * directory (newest valid, retention) is ckpt_dir.c.
 *
 * Content checksum (root attribute content_checksum, uint32): zlib crc32,
 * starting from 0, over
 *   1. the float32 values (little-endian bytes) of every dataset of /params,
 *      then of every /optim/<state> group, groups and datasets each in the
 *      order they were written (creation order is tracked and indexed; it is
 *      m->tensors order and ckpt_buffers state order at write time);
 *   2. a 92-byte little-endian record of the meta: int64 step, epoch,
 *      sample_in_epoch, global_batch, world_size, generation, seed,
 *      epoch_end (0/1), optim step; uint64 model_hash; float64 wall_time_s;
 *      float32 lr (Python: struct.pack('<9qQdf', ...));
 *   3. the optimizer name's bytes, one 0 byte, the config text's bytes.
 * format and format_version are not covered: they are checked by value.
 *
 * Seal: before HDF5 parses a file, ckpt_seal.c checks the crc of the whole
 * file stored at its end (HDF5 1.10.8 itself crashes on some damaged files).
 *
 * Writing: HDF5 builds the file in memory (the core driver; datasets are
 * copied there straight from the flat buffers at their offsets), then this
 * file writes the image, the seal, fsyncs, renames and fsyncs the directory.
 * HDF5 itself never writes to the volume: a failed write inside HDF5 1.10.8
 * leaves a file it cannot close (and a crash at exit). Cost: about twice the
 * file size in memory during a write (the image and its copy).
 *
 * Reading: the caller's buffers are filled as the datasets are read, before
 * the content checksum is known; after a failed read they hold garbage.
 *
 * Threads: the HDF5 packaged here is the serial build, which is not
 * thread-safe. The design uses HDF5 from one thread at a time: the trainer
 * calls ckpt_writer_wait() before any synchronous ckpt call, so the writer
 * thread and the training thread never overlap. h5_mutex below enforces the
 * same rule (it mirrors the library's own global state, like log.c's rank):
 * every public function holds it for the whole of its HDF5 use, so a
 * mistake costs a wait, not a corrupted library.
 *
 * File locking: HDF5 1.10.7+ locks files with flock(), which fails or hangs
 * on some NFS/EFS mounts; it is switched off here with H5Pset_file_locking.
 * On older libraries set HDF5_USE_FILE_LOCKING=FALSE in the environment.
 */
#include "ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "ckpt_internal.h"
#include "contract.h"
#include "log.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ckpt.c checksums the in-memory bytes of float32 values, which are little-endian only on little-endian hosts"
#endif

#if (H5_VERS_MAJOR == 1 && H5_VERS_MINOR == 10 && H5_VERS_RELEASE >= 7) || H5_VERSION_GE(1, 12, 1)
#define CKPT_HAVE_FILE_LOCKING 1
#endif

#define WHY_LEN 1024
#define NAME_LEN 64                        /* tensor_view.name */
#define MAX_STATE_GROUPS 64                /* more in /optim is not a checkpoint of ours */
#define MAX_SCAN_NUMEL ((size_t)1 << 30)   /* floats in one dataset, model-free walk */
#define MAX_STRING_ATTR ((size_t)1 << 24)  /* bytes of a fixed-length string attribute */

static pthread_mutex_t h5_mutex = PTHREAD_MUTEX_INITIALIZER;

/* ---------------------------------------------------------------- errors -- */

static int fail(char *why, size_t len, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(char *why, size_t len, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	return code;
}

typedef struct h5_reason_ctx {
	char *buf;  /* where the most specific description goes */
	size_t len;
	bool got;   /* one was found */
} h5_reason_ctx;

static herr_t h5_reason_cb(unsigned n, const H5E_error2_t *e, void *data)
{
	h5_reason_ctx *c = data;
	(void)n;
	if (!c->got && e->desc && e->desc[0]) {
		snprintf(c->buf, c->len, "%s", e->desc);
		c->got = true;
	}
	return 0;
}

/* The most specific message on HDF5's error stack (walking upward starts at the innermost
 * function), then clear the stack. */
static const char *h5_reason(char *buf, size_t len)
{
	h5_reason_ctx c = { buf, len, false };
	buf[0] = '\0';
	if (H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_reason_cb, &c) < 0 || !c.got)
		snprintf(buf, len, "no detail from HDF5");
	H5Eclear2(H5E_DEFAULT);
	return buf;
}

/* Like fail(), for a failed HDF5 call: appends ": " and HDF5's reason. Call it before any
 * other HDF5 call: every API call starts by clearing the error stack. */
static int h5fail(char *why, size_t len, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int h5fail(char *why, size_t len, int code, const char *fmt, ...)
{
	char reason[400];
	va_list ap;
	h5_reason(reason, sizeof reason);
	va_start(ap, fmt);
	int n = vsnprintf(why, len, fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < len)
		snprintf(why + n, len - (size_t)n, ": %s", reason);
	return code;
}

/* --------------------------------------------------------- HDF5 plumbing -- */

static void h5_enter(void)
{
	pthread_mutex_lock(&h5_mutex);
	/* Nothing of HDF5 is printed; failures are reported through h5_reason(). A
	 * failure here only means HDF5 might print as well, so it is not an error. */
	(void)H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void h5_leave(void)
{
	H5Eclear2(H5E_DEFAULT);
	pthread_mutex_unlock(&h5_mutex);
}

/* Close any HDF5 id (negative ids are ignored). Returns HDF5's status. Readers ignore it
 * where they clean up: a read-only object that fails to close changes nothing. */
static herr_t h5_close(hid_t id)
{
	if (id < 0)
		return 0;
	switch (H5Iget_type(id)) {
	case H5I_FILE: return H5Fclose(id);
	case H5I_GROUP: return H5Gclose(id);
	case H5I_DATASET: return H5Dclose(id);
	case H5I_DATASPACE: return H5Sclose(id);
	case H5I_DATATYPE: return H5Tclose(id);
	case H5I_ATTR: return H5Aclose(id);
	case H5I_GENPROP_LST: return H5Pclose(id);
	default: return -1;
	}
}

/* File access properties: close strongly, no file locking; writing: in memory (the core
 * driver, growing by image_hint bytes, no backing store). */
static hid_t make_fapl(bool for_write, size_t image_hint, const char *path, int code, char *why, size_t len, int *rc)
{
	hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
	if (fapl < 0) {
		*rc = h5fail(why, len, code, "create file access properties for %s", path);
		return -1;
	}
	if (H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
		*rc = h5fail(why, len, code, "set close degree for %s", path);
		goto close_fapl;
	}
#ifdef CKPT_HAVE_FILE_LOCKING
	if (H5Pset_file_locking(fapl, 0, 1) < 0) {
		*rc = h5fail(why, len, code, "switch off file locking for %s", path);
		goto close_fapl;
	}
#endif
	/* The earliest format that holds the file: H5Fget_file_image (1.10.8) clears the status
	 * flags of a version-2 superblock (1.8 format) without updating its checksum. The seal
	 * stands in for HDF5's metadata checksums. */
	if (for_write && (H5Pset_fapl_core(fapl, image_hint, 0) < 0 ||
			  H5Pset_libver_bounds(fapl, H5F_LIBVER_EARLIEST, H5F_LIBVER_LATEST) < 0)) {
		*rc = h5fail(why, len, code, "set file driver and format version for %s", path);
		goto close_fapl;
	}
	*rc = 0;
	return fapl;
close_fapl:
	H5Pclose(fapl);
	return -1;
}

/* Open an existing file read-only: EXIT_NOINPUT if it is not there, EXIT_DATAERR if it is
 * not a regular, non-empty, sealed HDF5 file. */
static int open_input(const char *path, hid_t *file, ckpt_seal_info *seal, char *why, size_t len)
{
	struct stat st;
	int rc;
	*file = -1;
	if (stat(path, &st) != 0)
		return fail(why, len, EXIT_NOINPUT, "checkpoint %s: cannot open: %s", path, strerror(errno));
	if (S_ISDIR(st.st_mode))
		return fail(why, len, EXIT_DATAERR, "checkpoint %s: is a directory, not a checkpoint file", path);
	if (!S_ISREG(st.st_mode))
		return fail(why, len, EXIT_DATAERR, "checkpoint %s: is not a regular file", path);
	if (st.st_size == 0)
		return fail(why, len, EXIT_DATAERR, "checkpoint %s: is empty (a write that never finished?)", path);
	if ((rc = ckpt_check_seal(path, (uint64_t)st.st_size, seal, why, len)))
		return rc;
	hid_t fapl = make_fapl(false, 0, path, EXIT_DATAERR, why, len, &rc);
	if (fapl < 0)
		return rc;
	*file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
	rc = 0;
	if (*file < 0) /* before any other HDF5 call, which would clear the error stack */
		rc = h5fail(why, len, EXIT_DATAERR, "checkpoint %s: not a readable HDF5 file (damaged or truncated?)", path);
	H5Pclose(fapl);
	return rc;
}

/* ------------------------------------------------------------- file system -- */

/* The directory part of path ("." if none). */
static void dir_of(const char *path, char *out, size_t len)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		snprintf(out, len, ".");
	else if (slash == path)
		snprintf(out, len, "/");
	else
		snprintf(out, len, "%.*s", (int)(slash - path), path);
}

/* -------------------------------------------------------------- checksum -- */

/* Append v to rec at *k, little-endian. */
static void put_u64(unsigned char *rec, size_t *k, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		rec[(*k)++] = (unsigned char)(v >> (8 * i));
}

/* Part 2 and 3 of the content checksum (see the head of this file). */
static uint32_t crc_meta(uint32_t crc, const ckpt_meta *mt)
{
	unsigned char rec[92];
	size_t k = 0;
	const int64_t ints[9] = { mt->step, mt->epoch, mt->sample_in_epoch, mt->global_batch, mt->world_size,
				  mt->generation, (int64_t)mt->seed, mt->epoch_end ? 1 : 0, mt->optim_step };
	for (int i = 0; i < 9; i++)
		put_u64(rec, &k, (uint64_t)ints[i]);
	put_u64(rec, &k, mt->model_hash);
	uint64_t wall;
	memcpy(&wall, &mt->wall_time_s, sizeof wall);
	put_u64(rec, &k, wall);
	uint32_t lr;
	memcpy(&lr, &mt->lr, sizeof lr);
	for (int i = 0; i < 4; i++)
		rec[k++] = (unsigned char)(lr >> (8 * i));
	crc = ckpt_crc32(crc, rec, k);
	crc = ckpt_crc32(crc, mt->optimizer, strnlen(mt->optimizer, sizeof mt->optimizer));
	crc = ckpt_crc32(crc, "", 1);
	if (mt->config_text)
		crc = ckpt_crc32(crc, mt->config_text, strlen(mt->config_text));
	return crc;
}

/* ------------------------------------------------------------- arguments -- */

/* A name usable as one HDF5 link name. */
static bool valid_name(const char *s)
{
	size_t n = strnlen(s, NAME_LEN);
	return n > 0 && n < NAME_LEN && !strchr(s, '/') && strcmp(s, ".") != 0;
}

/* The model's tensor table is usable: names, shapes, extents inside the buffer. */
static int check_model(const model *m, char *why, size_t len)
{
	if (!m)
		return fail(why, len, EXIT_SOFTWARE, "no model given");
	if (m->n_tensors < 1 || m->n_tensors > MODEL_MAX_TENSORS)
		return fail(why, len, EXIT_SOFTWARE, "model has %d tensors", m->n_tensors);
	for (int i = 0; i < m->n_tensors; i++) {
		const tensor_view *t = &m->tensors[i];
		if (!valid_name(t->name))
			return fail(why, len, EXIT_SOFTWARE, "tensor %d has an unusable name", i);
		if (t->ndim < 1 || t->ndim > 4)
			return fail(why, len, EXIT_SOFTWARE, "tensor %s has %d dimensions", t->name, t->ndim);
		size_t numel = 1;
		for (int d = 0; d < t->ndim; d++) {
			if (t->dims[d] < 1)
				return fail(why, len, EXIT_SOFTWARE, "tensor %s has dimension %d = %d", t->name, d, t->dims[d]);
			numel *= (size_t)t->dims[d];
		}
		if (numel != t->numel || t->offset > m->n_params || t->numel > m->n_params - t->offset)
			return fail(why, len, EXIT_SOFTWARE, "tensor %s does not fit its shape or the parameter buffer", t->name);
		for (int j = 0; j < i; j++)
			if (strcmp(m->tensors[j].name, t->name) == 0)
				return fail(why, len, EXIT_SOFTWARE, "tensor name %s appears twice", t->name);
	}
	return 0;
}

static int check_states(const ckpt_buffers *b, char *why, size_t len)
{
	if (b->n_states < 0 || b->n_states > CKPT_MAX_STATES)
		return fail(why, len, EXIT_SOFTWARE, "%d optimizer states (at most %d)", b->n_states, CKPT_MAX_STATES);
	for (int s = 0; s < b->n_states; s++) {
		if (!b->state_names[s] || !valid_name(b->state_names[s]) || !b->states[s])
			return fail(why, len, EXIT_SOFTWARE, "optimizer state %d has no usable name or buffer", s);
		for (int j = 0; j < s; j++)
			if (strcmp(b->state_names[j], b->state_names[s]) == 0)
				return fail(why, len, EXIT_SOFTWARE, "optimizer state %s appears twice", b->state_names[s]);
	}
	return 0;
}

static int check_meta(const ckpt_meta *mt, char *why, size_t len)
{
	if (mt->step < 0 || mt->epoch < 0 || mt->sample_in_epoch < 0 || mt->optim_step < 0 || mt->global_batch < 0 ||
	    mt->world_size < 0 || mt->generation < 0)
		return fail(why, len, EXIT_SOFTWARE, "negative counter in the checkpoint meta (step %ld)", mt->step);
	if (strnlen(mt->optimizer, sizeof mt->optimizer) == sizeof mt->optimizer)
		return fail(why, len, EXIT_SOFTWARE, "optimizer name is not terminated");
	return 0;
}

/* ----------------------------------------------------------------- write -- */

typedef struct writer_ctx {
	const char *path;  /* the .tmp being written, for messages */
	hid_t scalar;      /* scalar dataspace for attributes */
	hid_t str;         /* variable-length UTF-8 string type */
	char *why;
	size_t len;
} writer_ctx;

static int attr_write(writer_ctx *c, hid_t obj, const char *obj_label, const char *name, hid_t ftype, hid_t mtype,
		      const void *val)
{
	hid_t a = H5Acreate2(obj, name, ftype, c->scalar, H5P_DEFAULT, H5P_DEFAULT);
	if (a < 0)
		return h5fail(c->why, c->len, EXIT_IOERR, "create attribute %s of %s in %s", name, obj_label, c->path);
	if (H5Awrite(a, mtype, val) < 0) {
		int rc = h5fail(c->why, c->len, EXIT_IOERR, "write attribute %s of %s in %s", name, obj_label, c->path);
		H5Aclose(a);
		return rc;
	}
	if (H5Aclose(a) < 0)
		return h5fail(c->why, c->len, EXIT_IOERR, "close attribute %s of %s in %s", name, obj_label, c->path);
	return 0;
}

static int attr_write_i64(writer_ctx *c, hid_t obj, const char *label, const char *name, int64_t v)
{
	return attr_write(c, obj, label, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

static int attr_write_str(writer_ctx *c, hid_t obj, const char *label, const char *name, const char *s)
{
	const char *v = s ? s : "";
	return attr_write(c, obj, label, name, c->str, c->str, &v);
}

static int write_root_attrs(writer_ctx *c, hid_t file, const ckpt_meta *mt)
{
	const char *r = "/";
	uint64_t seed = mt->seed;
	int rc;
	if ((rc = attr_write_str(c, file, r, "format", CKPT_FORMAT)) ||
	    (rc = attr_write_i64(c, file, r, "format_version", CKPT_FORMAT_VERSION)) ||
	    (rc = attr_write(c, file, r, "model_hash", H5T_STD_U64LE, H5T_NATIVE_UINT64, &mt->model_hash)) ||
	    (rc = attr_write_i64(c, file, r, "step", mt->step)) || (rc = attr_write_i64(c, file, r, "epoch", mt->epoch)) ||
	    (rc = attr_write_i64(c, file, r, "sample_in_epoch", mt->sample_in_epoch)) ||
	    (rc = attr_write_i64(c, file, r, "global_batch", mt->global_batch)) ||
	    (rc = attr_write_i64(c, file, r, "world_size", mt->world_size)) ||
	    (rc = attr_write_i64(c, file, r, "generation", mt->generation)) ||
	    (rc = attr_write(c, file, r, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &seed)) ||
	    (rc = attr_write(c, file, r, "wall_time_s", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &mt->wall_time_s)) ||
	    (rc = attr_write_i64(c, file, r, "epoch_end", mt->epoch_end ? 1 : 0)) ||
	    (rc = attr_write_str(c, file, r, "config", mt->config_text)))
		return rc;
	return 0;
}

/* Group creation properties: creation order tracked and indexed (the checksum walks it),
 * no timestamps (identical content gives identical bytes). */
static hid_t make_gcpl(writer_ctx *c, int *rc)
{
	hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
	if (gcpl < 0) {
		*rc = h5fail(c->why, c->len, EXIT_IOERR, "create group properties for %s", c->path);
		return -1;
	}
	if (H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0 ||
	    H5Pset_attr_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0 ||
	    H5Pset_obj_track_times(gcpl, 0) < 0) {
		*rc = h5fail(c->why, c->len, EXIT_IOERR, "set group properties for %s", c->path);
		H5Pclose(gcpl);
		return -1;
	}
	*rc = 0;
	return gcpl;
}

/* One group of datasets, one per tensor, each written straight from buf at its offset. */
static int write_tensors(writer_ctx *c, hid_t parent, const char *gname, const char *label, hid_t gcpl, hid_t dcpl,
			 const model *m, const float *buf, uint32_t *crc)
{
	int rc = 0;
	hid_t g = H5Gcreate2(parent, gname, H5P_DEFAULT, gcpl, H5P_DEFAULT);
	if (g < 0)
		return h5fail(c->why, c->len, EXIT_IOERR, "create group %s in %s", label, c->path);
	for (int i = 0; i < m->n_tensors; i++) {
		const tensor_view *t = &m->tensors[i];
		hsize_t dims[4];
		for (int d = 0; d < t->ndim; d++)
			dims[d] = (hsize_t)t->dims[d];
		hid_t space = H5Screate_simple(t->ndim, dims, NULL);
		if (space < 0) {
			rc = h5fail(c->why, c->len, EXIT_IOERR, "create dataspace of %s/%s in %s", label, t->name, c->path);
			goto close_group;
		}
		hid_t d = H5Dcreate2(g, t->name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
		if (d < 0)
			rc = h5fail(c->why, c->len, EXIT_IOERR, "create dataset %s/%s in %s", label, t->name, c->path);
		H5Sclose(space);
		if (d < 0)
			goto close_group;
		const float *src = buf + t->offset;
		if (H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, src) < 0) {
			rc = h5fail(c->why, c->len, EXIT_IOERR, "write dataset %s/%s in %s", label, t->name, c->path);
			H5Dclose(d);
			goto close_group;
		}
		if (H5Dclose(d) < 0) {
			rc = h5fail(c->why, c->len, EXIT_IOERR, "close dataset %s/%s in %s", label, t->name, c->path);
			goto close_group;
		}
		*crc = ckpt_crc32(*crc, src, t->numel * sizeof(float));
	}
close_group:
	if (H5Gclose(g) < 0 && rc == 0)
		rc = h5fail(c->why, c->len, EXIT_IOERR, "close group %s in %s", label, c->path);
	return rc;
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
	writer_ctx c = { tmp, -1, -1, why, len };
	hid_t fapl = -1, fcpl = -1, file = -1, gcpl = -1, dcpl = -1, optim = -1;
	uint32_t crc = 0;
	size_t hint = (size_t)(1 + b->n_states) * m->n_params * sizeof(float) +
		      (size_t)(1 + b->n_states) * (size_t)m->n_tensors * 1024 + (1 << 16) +
		      (mt->config_text ? strlen(mt->config_text) : 0);

	*img = NULL;
	*img_len = 0;
	fapl = make_fapl(true, hint, tmp, EXIT_IOERR, why, len, &rc);
	if (fapl < 0)
		return rc;
	fcpl = H5Pcreate(H5P_FILE_CREATE);
	if (fcpl < 0 || H5Pset_attr_creation_order(fcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0 ||
	    H5Pset_obj_track_times(fcpl, 0) < 0) {
		rc = h5fail(why, len, EXIT_IOERR, "set file creation properties for %s", tmp);
		goto close_all;
	}
	file = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, fapl);
	if (file < 0) {
		rc = h5fail(why, len, EXIT_IOERR, "create HDF5 file %s", tmp);
		goto close_all;
	}
	c.scalar = H5Screate(H5S_SCALAR);
	if (c.scalar < 0) {
		rc = h5fail(why, len, EXIT_IOERR, "create scalar dataspace for %s", tmp);
		goto close_all;
	}
	c.str = H5Tcopy(H5T_C_S1);
	if (c.str < 0 || H5Tset_size(c.str, H5T_VARIABLE) < 0 || H5Tset_cset(c.str, H5T_CSET_UTF8) < 0) {
		rc = h5fail(why, len, EXIT_IOERR, "create string type for %s", tmp);
		goto close_all;
	}
	if ((rc = write_root_attrs(&c, file, mt)))
		goto close_all;
	gcpl = make_gcpl(&c, &rc);
	if (gcpl < 0)
		goto close_all;
	dcpl = H5Pcreate(H5P_DATASET_CREATE);
	if (dcpl < 0 || H5Pset_layout(dcpl, H5D_CONTIGUOUS) < 0 || H5Pset_obj_track_times(dcpl, 0) < 0) {
		rc = h5fail(why, len, EXIT_IOERR, "set dataset properties for %s", tmp);
		goto close_all;
	}
	if ((rc = write_tensors(&c, file, "params", "/params", gcpl, dcpl, m, b->params, &crc)))
		goto close_all;
	optim = H5Gcreate2(file, "optim", H5P_DEFAULT, gcpl, H5P_DEFAULT);
	if (optim < 0) {
		rc = h5fail(why, len, EXIT_IOERR, "create group /optim in %s", tmp);
		goto close_all;
	}
	if ((rc = attr_write_str(&c, optim, "/optim", "optimizer", mt->optimizer)) ||
	    (rc = attr_write(&c, optim, "/optim", "lr", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &mt->lr)) ||
	    (rc = attr_write_i64(&c, optim, "/optim", "step", mt->optim_step)))
		goto close_all;
	for (int s = 0; s < b->n_states; s++) {
		char label[NAME_LEN + 8];
		snprintf(label, sizeof label, "/optim/%s", b->state_names[s]);
		if ((rc = write_tensors(&c, optim, b->state_names[s], label, gcpl, dcpl, m, b->states[s], &crc)))
			goto close_all;
	}
	crc = crc_meta(crc, mt);
	if ((rc = attr_write(&c, file, "/", "content_checksum", H5T_STD_U32LE, H5T_NATIVE_UINT32, &crc)))
		goto close_all;
	if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) {
		rc = h5fail(why, len, EXIT_IOERR, "flush %s in memory", tmp);
		goto close_all;
	}
	ssize_t n = H5Fget_file_image(file, NULL, 0);
	if (n <= 0) {
		rc = h5fail(why, len, EXIT_IOERR, "get the size of the image of %s", tmp);
		goto close_all;
	}
	*img = malloc((size_t)n + CKPT_SEAL_SIZE); /* room for the seal */
	if (!*img) {
		rc = fail(why, len, EXIT_IOERR, "no memory for the %zd-byte image of %s", n, tmp);
		goto close_all;
	}
	if (H5Fget_file_image(file, *img, (size_t)n) != n) {
		rc = h5fail(why, len, EXIT_IOERR, "copy the image of %s", tmp);
		goto close_all;
	}
	*img_len = (size_t)n;
close_all:
	{
		const hid_t ids[] = { optim, dcpl, gcpl, c.str, c.scalar, file, fcpl, fapl };
		bool closed = true;
		for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
			if (h5_close(ids[i]) < 0)
				closed = false; /* every id is closed whatever happened to the others */
		if (!closed && rc == 0)
			rc = h5fail(why, len, EXIT_IOERR, "close %s in memory", tmp);
	}
	if (rc) {
		free(*img);
		*img = NULL;
		*img_len = 0;
	}
	return rc;
}

/* Write all n bytes of buf to fd. */
static int write_all(int fd, const unsigned char *buf, size_t n, const char *path, char *why, size_t len)
{
	size_t done = 0;
	while (done < n) {
		size_t chunk = n - done < ((size_t)1 << 30) ? n - done : ((size_t)1 << 30);
		ssize_t w = write(fd, buf + done, chunk);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return fail(why, len, EXIT_IOERR, "write %s at byte %zu of %zu: %s", path, done, n,
				    w < 0 ? strerror(errno) : "no progress");
		done += (size_t)w;
	}
	return 0;
}

/* Build, seal, write tmp and make it durable, rename it to path, make the rename durable. */
static int write_locked(const char *path, const char *tmp, const model *m, const ckpt_meta *mt, const ckpt_buffers *b,
			char *why, size_t len)
{
	unsigned char *img = NULL;
	size_t n = 0;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)  /* not created by us: nothing to remove */
		return fail(why, len, EXIT_IOERR, "create %s: %s", tmp, strerror(errno));
	int rc = build_image(tmp, m, mt, b, &img, &n, why, len);
	if (rc)
		goto remove_tmp;
	ckpt_seal_image(img, n, mt->step, mt->epoch_end);
	if ((rc = write_all(fd, img, n + CKPT_SEAL_SIZE, tmp, why, len)))
		goto remove_tmp;
	free(img);
	img = NULL;
	if (fsync(fd) != 0) {
		rc = fail(why, len, EXIT_IOERR, "fsync %s: %s", tmp, strerror(errno));
		goto remove_tmp;
	}
	int cr = close(fd);
	fd = -1;
	if (cr != 0) {
		rc = fail(why, len, EXIT_IOERR, "close %s: %s", tmp, strerror(errno));
		goto remove_tmp;
	}
	if (rename(tmp, path) != 0) {
		rc = fail(why, len, EXIT_IOERR, "rename %s to %s: %s", tmp, path, strerror(errno));
		goto remove_tmp;
	}
	char dir[PATH_MAX];
	dir_of(path, dir, sizeof dir);
	return ckpt_fsync_dir(dir, why, len); /* on failure the checkpoint is whole but maybe not yet durable */
remove_tmp:
	free(img);
	if (fd >= 0)
		close(fd);
	if (unlink(tmp) != 0 && errno != ENOENT) {
		size_t k = strlen(why);
		snprintf(why + k, len - k, "; also could not remove the .tmp: %s", strerror(errno));
	}
	return rc;
}

int ckpt_write(const char *path, const model *m, const ckpt_meta *meta, const ckpt_buffers *b)
{
	char why[WHY_LEN];
	char tmp[PATH_MAX];
	int rc = 0;
	if (!path || !meta || !b || !b->params)
		rc = fail(why, sizeof why, EXIT_SOFTWARE, "missing path, meta or parameter buffer");
	if (rc == 0)
		rc = check_model(m, why, sizeof why);
	if (rc == 0)
		rc = check_states(b, why, sizeof why);
	if (rc == 0)
		rc = check_meta(meta, why, sizeof why);
	if (rc == 0 && (size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
		rc = fail(why, sizeof why, EXIT_IOERR, "path is too long");
	if (rc) {
		log_error("cannot write checkpoint %s: %s", path ? path : "(null)", why);
		return rc;
	}
	h5_enter();
	rc = write_locked(path, tmp, m, meta, b, why, sizeof why);
	h5_leave();
	if (rc)
		log_error("cannot write checkpoint %s: %s; existing checkpoints are untouched "
			  "(check free space and permissions of the volume)", path, why);
	return rc;
}

/* ------------------------------------------------------------ attributes -- */

typedef struct reader_ctx {
	const char *path; /* for messages */
	char *why;
	size_t len;
} reader_ctx;

/* Open attribute name of obj, which must hold one value of type class cls. */
static hid_t attr_open_scalar(reader_ctx *c, hid_t obj, const char *label, const char *name, H5T_class_t cls,
			      const char *what, hid_t *ftype)
{
	hid_t a = -1, sp = -1;
	htri_t ex = H5Aexists(obj, name);
	*ftype = -1;
	if (ex < 0) {
		h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot look up attribute %s of %s", c->path, name, label);
		return -1;
	}
	if (ex == 0) {
		fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: attribute %s of %s is missing", c->path, name, label);
		return -1;
	}
	a = H5Aopen(obj, name, H5P_DEFAULT);
	if (a < 0) {
		h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot open attribute %s of %s", c->path, name, label);
		return -1;
	}
	*ftype = H5Aget_type(a);
	sp = H5Aget_space(a);
	if (*ftype < 0 || sp < 0) {
		h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot query attribute %s of %s", c->path, name, label);
		goto fail_attr;
	}
	if (H5Tget_class(*ftype) != cls) {
		fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: attribute %s of %s is not %s", c->path, name, label, what);
		goto fail_attr;
	}
	hssize_t npoints = H5Sget_simple_extent_npoints(sp);
	if (npoints != 1) {
		fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: attribute %s of %s holds %lld values, expected one",
		     c->path, name, label, (long long)npoints);
		goto fail_attr;
	}
	H5Sclose(sp);
	return a;
fail_attr:
	h5_close(sp);
	h5_close(*ftype);
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
		rc = h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot read attribute %s of %s", c->path, name, label);
	H5Tclose(ft);
	H5Aclose(a);
	return rc;
}

static int attr_read_i64(reader_ctx *c, hid_t obj, const char *label, const char *name, int64_t lo, int64_t hi,
			 int64_t *out)
{
	int rc = attr_read_num(c, obj, label, name, H5T_INTEGER, H5T_NATIVE_INT64, out);
	if (rc == 0 && (*out < lo || *out > hi))
		rc = fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: attribute %s of %s = %" PRId64 " is out of range",
			  c->path, name, label, *out);
	return rc;
}

/* Read a one-value string attribute (variable or fixed length) into a malloc'ed copy. */
static int attr_read_str(reader_ctx *c, hid_t obj, const char *label, const char *name, char **out)
{
	hid_t ft, mt = -1;
	int rc = 0;
	*out = NULL;
	hid_t a = attr_open_scalar(c, obj, label, name, H5T_STRING, "a string", &ft);
	if (a < 0)
		return EXIT_DATAERR;
	htri_t var = H5Tis_variable_str(ft);
	if (var < 0) {
		rc = h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot query attribute %s of %s", c->path, name, label);
		goto close_attr;
	}
	if (var) {
		H5T_cset_t cset = H5Tget_cset(ft);
		mt = H5Tcopy(H5T_C_S1);
		if (cset < 0 || mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Tset_cset(mt, cset) < 0) {
			rc = h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot make a type for attribute %s of %s",
				    c->path, name, label);
			goto close_attr;
		}
		char *s = NULL;
		if (H5Aread(a, mt, &s) < 0) {
			rc = h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot read attribute %s of %s", c->path, name, label);
			goto close_attr;
		}
		*out = strdup(s ? s : "");
		H5free_memory(s);
	} else {
		size_t n = H5Tget_size(ft);
		if (n == 0 || n > MAX_STRING_ATTR) {
			rc = fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: attribute %s of %s has size %zu", c->path, name, label, n);
			goto close_attr;
		}
		mt = H5Tcopy(ft);
		*out = calloc(n + 1, 1);
		if (mt < 0 || !*out) {
			rc = h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: no memory for attribute %s of %s", c->path, name, label);
			goto close_attr;
		}
		if (H5Aread(a, mt, *out) < 0) {
			rc = h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot read attribute %s of %s", c->path, name, label);
			goto close_attr;
		}
	}
	if (!*out)
		rc = fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: no memory for attribute %s of %s", c->path, name, label);
close_attr:
	if (rc) {
		free(*out);
		*out = NULL;
	}
	h5_close(mt);
	H5Tclose(ft);
	H5Aclose(a);
	return rc;
}

/* All meta attributes of / and /optim, validated (format, version, ranges). meta->config_text is
 * malloc'ed on success and NULL on failure. */
static int read_meta_attrs(reader_ctx *c, hid_t file, ckpt_meta *mt, uint32_t *checksum)
{
	int rc;
	char *s = NULL;
	hid_t optim = -1;
	int64_t v[10];
	uint64_t seed;
	memset(mt, 0, sizeof *mt);

	if ((rc = attr_read_str(c, file, "/", "format", &s)))
		return rc;
	if (strcmp(s, CKPT_FORMAT) != 0) {
		rc = fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: format is \"%.40s\", not \"%s\"", c->path, s, CKPT_FORMAT);
		free(s);
		return rc;
	}
	free(s);
	if ((rc = attr_read_i64(c, file, "/", "format_version", INT64_MIN, INT64_MAX, &v[0])))
		return rc;
	if (v[0] != CKPT_FORMAT_VERSION)
		return fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: format_version %" PRId64 ", this build reads %d%s",
			    c->path, v[0], CKPT_FORMAT_VERSION, v[0] > CKPT_FORMAT_VERSION ? " (written by a newer spottrain)" : "");
	if ((rc = attr_read_num(c, file, "/", "model_hash", H5T_INTEGER, H5T_NATIVE_UINT64, &mt->model_hash)) ||
	    (rc = attr_read_i64(c, file, "/", "step", 0, LONG_MAX, &v[1])) ||
	    (rc = attr_read_i64(c, file, "/", "epoch", 0, LONG_MAX, &v[2])) ||
	    (rc = attr_read_i64(c, file, "/", "sample_in_epoch", 0, LONG_MAX, &v[3])) ||
	    (rc = attr_read_i64(c, file, "/", "global_batch", 0, INT_MAX, &v[4])) ||
	    (rc = attr_read_i64(c, file, "/", "world_size", 0, INT_MAX, &v[5])) ||
	    (rc = attr_read_i64(c, file, "/", "generation", 0, INT_MAX, &v[6])) ||
	    (rc = attr_read_num(c, file, "/", "seed", H5T_INTEGER, H5T_NATIVE_UINT64, &seed)) ||
	    (rc = attr_read_num(c, file, "/", "wall_time_s", H5T_FLOAT, H5T_NATIVE_DOUBLE, &mt->wall_time_s)) ||
	    (rc = attr_read_i64(c, file, "/", "epoch_end", 0, 1, &v[7])) ||
	    (rc = attr_read_num(c, file, "/", "content_checksum", H5T_INTEGER, H5T_NATIVE_UINT32, checksum)))
		return rc;
	if (seed > UINT32_MAX)
		return fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: attribute seed of / is out of range", c->path);
	mt->step = (long)v[1];
	mt->epoch = (long)v[2];
	mt->sample_in_epoch = (long)v[3];
	mt->global_batch = (int)v[4];
	mt->world_size = (int)v[5];
	mt->generation = (int)v[6];
	mt->seed = (uint32_t)seed;
	mt->epoch_end = v[7] != 0;

	htri_t ex = H5Lexists(file, "optim", H5P_DEFAULT);
	if (ex <= 0)
		return ex < 0 ? h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot look up /optim", c->path)
			      : fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: group /optim is missing", c->path);
	optim = H5Gopen2(file, "optim", H5P_DEFAULT);
	if (optim < 0)
		return h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot open group /optim", c->path);
	if ((rc = attr_read_str(c, optim, "/optim", "optimizer", &s)))
		goto close_optim;
	if (strlen(s) >= sizeof mt->optimizer) {
		rc = fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: optimizer name \"%.40s\" is too long", c->path, s);
		free(s);
		goto close_optim;
	}
	strcpy(mt->optimizer, s);
	free(s);
	if ((rc = attr_read_num(c, optim, "/optim", "lr", H5T_FLOAT, H5T_NATIVE_FLOAT, &mt->lr)) ||
	    (rc = attr_read_i64(c, optim, "/optim", "step", 0, LONG_MAX, &v[8])))
		goto close_optim;
	mt->optim_step = (long)v[8];
	rc = attr_read_str(c, file, "/", "config", &mt->config_text);
close_optim:
	H5Gclose(optim);
	return rc;
}

/* ------------------------------------------------------------------ walk -- */

/* A tensor as the walk expects it: from the model, or (model-free) from /params. */
typedef struct tref {
	char name[NAME_LEN];
	int ndim;
	hsize_t dims[4];
	size_t numel;
	size_t offset;   /* into the destination buffers (model-based walk) */
} tref;

typedef struct walker {
	reader_ctx *c;
	const ckpt_scan_visitor *vis; /* may be NULL */
	bool model_free;              /* refs come from /params */
	int n_ref;
	tref ref[MODEL_MAX_TENSORS];
	float *scratch;               /* for datasets that are only checksummed */
	size_t scratch_cap;           /* floats */
	uint32_t crc;
} walker;

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

/* Validate one dataset against ref r (or, defining, record its shape into r), read it into dst
 * (dst + offset) or scratch, add it to the checksum. */
static int walk_dataset(walker *w, hid_t g, const char *label, const char *name, tref *r, bool define, float *dst)
{
	reader_ctx *c = w->c;
	int rc = 0;
	hid_t t = -1, s = -1;
	hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
	if (d < 0)
		return h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot open dataset %s/%s", c->path, label, name);
	t = H5Dget_type(d);
	s = H5Dget_space(d);
	if (t < 0 || s < 0) {
		rc = h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot query dataset %s/%s", c->path, label, name);
		goto close_dataset;
	}
	if (H5Tget_class(t) != H5T_FLOAT || H5Tget_size(t) != 4) {
		rc = fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: dataset %s/%s is not float32", c->path, label, name);
		goto close_dataset;
	}
	int nd = H5Sget_simple_extent_ndims(s);
	hsize_t dims[H5S_MAX_RANK];
	if (H5Sget_simple_extent_type(s) != H5S_SIMPLE || nd < 1 || nd > 4 || H5Sget_simple_extent_dims(s, dims, NULL) != nd) {
		rc = fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: dataset %s/%s has %d dimensions", c->path, label, name, nd);
		goto close_dataset;
	}
	if (define) {
		size_t numel = 1;
		for (int i = 0; i < nd; i++) {
			if (dims[i] < 1 || dims[i] > MAX_SCAN_NUMEL / numel) {
				rc = fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: dataset %s/%s has an unusable shape",
					  c->path, label, name);
				goto close_dataset;
			}
			numel *= (size_t)dims[i];
			r->dims[i] = dims[i];
		}
		r->ndim = nd;
		r->numel = numel;
	} else if (nd != r->ndim || memcmp(dims, r->dims, (size_t)nd * sizeof dims[0]) != 0) {
		char got[64], want[64];
		fmt_shape(got, sizeof got, nd, dims);
		fmt_shape(want, sizeof want, r->ndim, r->dims);
		rc = fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: dataset %s/%s has shape %s, expected %s%s", c->path,
			  label, name, got, want, w->model_free ? " (as in /params)" : " (a checkpoint of another network?)");
		goto close_dataset;
	}
	float *buf = dst ? dst + r->offset : scratch_for(w, r->numel);
	if (!buf) {
		rc = fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: no memory to read dataset %s/%s", c->path, label, name);
		goto close_dataset;
	}
	if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
		rc = h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot read dataset %s/%s", c->path, label, name);
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
	h5_close(s);
	h5_close(t);
	H5Dclose(d);
	return rc;
}

/* Open group gname of parent, which must track creation order; *n = its number of links. */
static hid_t open_ordered_group(reader_ctx *c, hid_t parent, const char *gname, const char *label, hsize_t *n)
{
	htri_t ex = H5Lexists(parent, gname, H5P_DEFAULT);
	if (ex <= 0) {
		if (ex < 0)
			h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot look up %s", c->path, label);
		else
			fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: group %s is missing", c->path, label);
		return -1;
	}
	hid_t g = H5Gopen2(parent, gname, H5P_DEFAULT);
	if (g < 0) {
		h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot open %s as a group", c->path, label);
		return -1;
	}
	unsigned flags = 0;
	H5G_info_t info;
	hid_t gcpl = H5Gget_create_plist(g);
	if (gcpl < 0 || H5Pget_link_creation_order(gcpl, &flags) < 0 || H5Gget_info(g, &info) < 0) {
		h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot query group %s", c->path, label);
		goto fail_group;
	}
	if (!(flags & H5P_CRT_ORDER_TRACKED)) {
		fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: group %s does not record creation order (not written by spottrain)",
		     c->path, label);
		goto fail_group;
	}
	H5Pclose(gcpl);
	*n = info.nlinks;
	return g;
fail_group:
	h5_close(gcpl);
	H5Gclose(g);
	return -1;
}

/* Name of link i (creation order) of g into name[NAME_LEN]. */
static int link_name(reader_ctx *c, hid_t g, const char *label, hsize_t i, char *name)
{
	ssize_t n = H5Lget_name_by_idx(g, ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, i, name, NAME_LEN, H5P_DEFAULT);
	if (n < 0)
		return h5fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: cannot list group %s", c->path, label);
	if (n >= NAME_LEN)
		return fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: a name in %s is too long", c->path, label);
	return 0;
}

/* One group of tensors: exactly the refs (or, defining, whatever /params holds). */
static int walk_group(walker *w, hid_t parent, const char *gname, const char *label, float *dst, bool define)
{
	reader_ctx *c = w->c;
	int rc = 0;
	hsize_t n;
	bool seen[MODEL_MAX_TENSORS] = { false };
	hid_t g = open_ordered_group(c, parent, gname, label, &n);
	if (g < 0)
		return EXIT_DATAERR;
	if (define ? (n < 1 || n > MODEL_MAX_TENSORS) : n != (hsize_t)w->n_ref) {
		rc = fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: group %s holds %llu tensors, expected %s%d%s", c->path,
			  label, (unsigned long long)n, define ? "1 to " : "", define ? MODEL_MAX_TENSORS : w->n_ref,
			  define || w->model_free ? "" : " (a checkpoint of another network?)");
		goto close_group;
	}
	if (w->vis && w->vis->group)
		w->vis->group(w->vis->ctx, label, (int)n);
	for (hsize_t i = 0; i < n; i++) {
		char name[NAME_LEN];
		if ((rc = link_name(c, g, label, i, name)))
			goto close_group;
		int r = -1;
		if (define) {
			r = w->n_ref;
			snprintf(w->ref[r].name, NAME_LEN, "%s", name);
		} else {
			for (int k = 0; k < w->n_ref && r < 0; k++)
				if (strcmp(w->ref[k].name, name) == 0)
					r = k;
			if (r < 0 || seen[r]) {
				rc = fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: dataset %s/%s is not a tensor of %s", c->path,
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
static int walk_states(walker *w, hid_t file, int n_dst, const char *const *dst_names, float *const *dst, bool *found)
{
	reader_ctx *c = w->c;
	int rc = 0;
	hsize_t n;
	hid_t og = open_ordered_group(c, file, "optim", "/optim", &n);
	if (og < 0)
		return EXIT_DATAERR;
	if (n > MAX_STATE_GROUPS) {
		rc = fail(c->why, c->len, EXIT_DATAERR, "checkpoint %s: /optim holds %llu groups", c->path, (unsigned long long)n);
		goto close_optim;
	}
	for (hsize_t i = 0; i < n; i++) {
		char name[NAME_LEN], label[NAME_LEN + 8];
		if ((rc = link_name(c, og, "/optim", i, name)))
			goto close_optim;
		snprintf(label, sizeof label, "/optim/%s", name);
		float *d = NULL;
		for (int j = 0; j < n_dst; j++)
			if (strcmp(dst_names[j], name) == 0) {
				d = dst[j];
				found[j] = true;
			}
		if ((rc = walk_group(w, og, name, label, d, false)))
			goto close_optim;
	}
close_optim:
	H5Gclose(og);
	return rc;
}

/* The seal's copy of step and epoch_end (what retention reads) agrees with the attributes. */
static int check_seal_agrees(reader_ctx *c, const ckpt_seal_info *seal, const ckpt_meta *mt)
{
	if (seal->step != mt->step || seal->epoch_end != mt->epoch_end)
		return fail(c->why, c->len, EXIT_DATAERR,
			    "checkpoint %s: its seal says step %" PRId64 "%s, its attributes step %ld%s", c->path, seal->step,
			    seal->epoch_end ? " (epoch end)" : "", mt->step, mt->epoch_end ? " (epoch end)" : "");
	return 0;
}

static int check_checksum(reader_ctx *c, uint32_t computed, uint32_t stored)
{
	if (computed != stored)
		return fail(c->why, c->len, EXIT_DATAERR,
			    "checkpoint %s: content checksum mismatch (stored %08" PRIx32 ", computed %08" PRIx32 "): the file is damaged",
			    c->path, stored, computed);
	return 0;
}

/* ------------------------------------------------------------------ read -- */

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
		return fail(why, len, EXIT_OSERR, "checkpoint %s: out of memory", path);
	int rc = open_input(path, &file, &seal, why, len);
	if (rc)
		goto free_walker;
	if ((rc = read_meta_attrs(&c, file, &mt, &stored)))
		goto close_file;
	if ((rc = check_seal_agrees(&c, &seal, &mt)))
		goto free_meta;
	if (!weights_only && mt.model_hash != m->hash) {
		rc = fail(why, len, EXIT_DATAERR,
			  "checkpoint %s: written by another network (model_hash %016" PRIx64 ", this network %016" PRIx64
			  "); use the config it was written with, or a new run directory",
			  path, mt.model_hash, m->hash);
		goto free_meta;
	}
	w->c = &c;
	w->n_ref = m->n_tensors;
	for (int i = 0; i < m->n_tensors; i++) {
		const tensor_view *t = &m->tensors[i];
		tref *r = &w->ref[i];
		snprintf(r->name, NAME_LEN, "%s", t->name);
		r->ndim = t->ndim;
		for (int d = 0; d < t->ndim; d++)
			r->dims[d] = (hsize_t)t->dims[d];
		r->numel = t->numel;
		r->offset = t->offset;
	}
	if ((rc = walk_group(w, file, "params", "/params", b->params, false)) ||
	    (rc = walk_states(w, file, n_dst, b->state_names, b->states, found)))
		goto free_meta;
	for (int j = 0; j < n_dst; j++)
		if (!found[j]) {
			rc = fail(why, len, EXIT_DATAERR, "checkpoint %s: optimizer state /optim/%s is missing (optimizer %s in the file)",
				  path, b->state_names[j], mt.optimizer);
			goto free_meta;
		}
	if ((rc = check_checksum(&c, crc_meta(w->crc, &mt), stored)))
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

int ckpt_read_quiet(const char *path, const model *m, bool weights_only, ckpt_meta *meta, ckpt_buffers *b,
		    char *why, size_t len)
{
	int rc = 0;
	if (!path || !b || !b->params)
		rc = fail(why, len, EXIT_SOFTWARE, "cannot read checkpoint %s: missing path or parameter buffer",
			  path ? path : "(null)");
	if (rc == 0 && (rc = check_model(m, why, len)) == 0 && !weights_only)
		rc = check_states(b, why, len);
	if (rc)
		return rc;
	h5_enter();
	rc = read_locked(path, m, weights_only, meta, b, why, len);
	h5_leave();
	return rc;
}

int ckpt_read(const char *path, const model *m, bool weights_only, ckpt_meta *meta, ckpt_buffers *b)
{
	char why[WHY_LEN];
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
	int rc = open_input(path, &file, &seal, why, len);
	if (rc)
		return rc;
	rc = read_meta_attrs(&c, file, &mt, &stored);
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

int ckpt_read_meta_quiet(const char *path, ckpt_meta *meta, char *why, size_t len)
{
	if (!path)
		return fail(why, len, EXIT_SOFTWARE, "cannot read checkpoint: no path given");
	h5_enter();
	int rc = read_meta_locked(path, meta, why, len);
	h5_leave();
	return rc;
}

int ckpt_read_meta(const char *path, ckpt_meta *meta)
{
	char why[WHY_LEN];
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
		char why[WHY_LEN];
		reader_ctx c = { av->c->path, why, sizeof why };
		if (attr_read_str(&c, loc, av->label, name, &s) == 0) {
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
	h5_close(sp);
	h5_close(t);
	h5_close(a);
	return 0;
}

/* Show every attribute of obj, in creation order where it was recorded. */
static void visit_attrs(reader_ctx *c, const ckpt_scan_visitor *vis, hid_t group, const char *label)
{
	unsigned flags = 0;
	hid_t gcpl = H5Gget_create_plist(group);
	if (gcpl < 0 || H5Pget_attr_creation_order(gcpl, &flags) < 0)
		flags = 0;
	h5_close(gcpl);
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
	char meta_why[WHY_LEN];
	reader_ctx mc = { path, meta_why, sizeof meta_why };
	walker *w = calloc(1, sizeof *w);
	if (!w)
		return fail(why, len, EXIT_OSERR, "checkpoint %s: out of memory", path);
	int rc = open_input(path, &file, &seal, why, len);
	if (rc)
		goto free_walker;
	if (vis && vis->attr) {
		hid_t g = H5Gopen2(file, "/", H5P_DEFAULT);
		if (g >= 0) {
			visit_attrs(&c, vis, g, "/");
			H5Gclose(g);
		}
		if (H5Lexists(file, "optim", H5P_DEFAULT) > 0 && (g = H5Gopen2(file, "optim", H5P_DEFAULT)) >= 0) {
			visit_attrs(&c, vis, g, "/optim");
			H5Gclose(g);
		}
		H5Eclear2(H5E_DEFAULT);
	}
	/* a meta problem is reported, but the tensors are still walked (inspect shows them) */
	int meta_rc = read_meta_attrs(&mc, file, &mt, &stored);
	if (meta_rc == 0 && (meta_rc = check_seal_agrees(&mc, &seal, &mt)))
		ckpt_meta_free(&mt);
	w->c = &c;
	w->vis = vis;
	w->model_free = true;
	rc = walk_group(w, file, "params", "/params", NULL, true);
	if (rc == 0)
		rc = walk_states(w, file, 0, NULL, NULL, NULL);
	if (meta_rc) {
		snprintf(why, len, "%s", meta_why);
		rc = meta_rc;
	}
	if (rc == 0)
		rc = check_checksum(&c, crc_meta(w->crc, &mt), stored);
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

int ckpt_scan(const char *path, const ckpt_scan_visitor *v, ckpt_meta *meta, char *why, size_t why_len)
{
	if (!path)
		return fail(why, why_len, EXIT_SOFTWARE, "cannot read checkpoint: no path given");
	h5_enter();
	int rc = scan_locked(path, v, meta, why, why_len);
	h5_leave();
	return rc;
}
