/*
 * ckpt_h5.c - HDF5 plumbing of the ckpt module: error messages that carry
 * HDF5's reason, the library lock (see ckpt_h5.h), file access properties,
 * and opening a sealed checkpoint for reading.
 *
 * File locking: HDF5 1.10.7+ locks files with flock(), which fails or hangs
 * on some NFS/EFS mounts; it is switched off here with H5Pset_file_locking.
 * On older libraries set HDF5_USE_FILE_LOCKING=FALSE in the environment.
 */
#include "ckpt_h5.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "contract.h"

#if (H5_VERS_MAJOR == 1 && H5_VERS_MINOR == 10 && H5_VERS_RELEASE >= 7) || H5_VERSION_GE(1, 12, 1)
#define CKPT_HAVE_FILE_LOCKING 1
#endif

static pthread_mutex_t h5_mutex = PTHREAD_MUTEX_INITIALIZER;

/* ---------------------------------------------------------------- errors -- */

int ckpt_fail(char *why, size_t len, int code, const char *fmt, ...)
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

/* Like ckpt_fail(), for a failed HDF5 call: appends ": " and HDF5's reason. Call it before any
 * other HDF5 call: every API call starts by clearing the error stack. */
int ckpt_h5fail(char *why, size_t len, int code, const char *fmt, ...)
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

void ckpt_h5_enter(void)
{
	pthread_mutex_lock(&h5_mutex);
	/* Nothing of HDF5 is printed; failures are reported through h5_reason(). A
	 * failure here only means HDF5 might print as well, so it is not an error. */
	(void)H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void ckpt_h5_leave(void)
{
	H5Eclear2(H5E_DEFAULT);
	pthread_mutex_unlock(&h5_mutex);
}

/* Close any HDF5 id (negative ids are ignored). Returns HDF5's status. Readers ignore it
 * where they clean up: a read-only object that fails to close changes nothing. */
herr_t ckpt_h5_close(hid_t id)
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
hid_t ckpt_make_fapl(bool for_write, size_t image_hint, const char *path, int code, char *why, size_t len, int *rc)
{
	hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
	if (fapl < 0) {
		*rc = ckpt_h5fail(why, len, code, "create file access properties for %s", path);
		return -1;
	}
	if (H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
		*rc = ckpt_h5fail(why, len, code, "set close degree for %s", path);
		goto close_fapl;
	}
#ifdef CKPT_HAVE_FILE_LOCKING
	if (H5Pset_file_locking(fapl, 0, 1) < 0) {
		*rc = ckpt_h5fail(why, len, code, "switch off file locking for %s", path);
		goto close_fapl;
	}
#endif
	/* The earliest format that holds the file: H5Fget_file_image (1.10.8) clears the status
	 * flags of a version-2 superblock (1.8 format) without updating its checksum. The seal
	 * stands in for HDF5's metadata checksums. */
	if (for_write && (H5Pset_fapl_core(fapl, image_hint, 0) < 0 ||
			  H5Pset_libver_bounds(fapl, H5F_LIBVER_EARLIEST, H5F_LIBVER_LATEST) < 0)) {
		*rc = ckpt_h5fail(why, len, code, "set file driver and format version for %s", path);
		goto close_fapl;
	}
	*rc = 0;
	return fapl;
close_fapl:
	H5Pclose(fapl);
	return -1;
}

int ckpt_check_input(const char *path, ckpt_seal_info *seal, char *why, size_t len)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return ckpt_fail(why, len, EXIT_NOINPUT, "checkpoint %s: cannot open: %s", path, strerror(errno));
	if (S_ISDIR(st.st_mode))
		return ckpt_fail(why, len, EXIT_DATAERR, "checkpoint %s: is a directory, not a checkpoint file", path);
	if (!S_ISREG(st.st_mode))
		return ckpt_fail(why, len, EXIT_DATAERR, "checkpoint %s: is not a regular file", path);
	if (st.st_size == 0)
		return ckpt_fail(why, len, EXIT_DATAERR, "checkpoint %s: is empty (a write that never finished?)", path);
	return ckpt_check_seal(path, (uint64_t)st.st_size, seal, why, len);
}

/* Open an existing file read-only: EXIT_NOINPUT if it is not there, EXIT_DATAERR if it is
 * not a regular, non-empty, sealed HDF5 file. */
int ckpt_open_input(const char *path, hid_t *file, ckpt_seal_info *seal, char *why, size_t len)
{
	int rc;
	*file = -1;
	if ((rc = ckpt_check_input(path, seal, why, len)))
		return rc;
	hid_t fapl = ckpt_make_fapl(false, 0, path, EXIT_DATAERR, why, len, &rc);
	if (fapl < 0)
		return rc;
	*file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
	rc = 0;
	if (*file < 0) /* before any other HDF5 call, which would clear the error stack */
		rc = ckpt_h5fail(why, len, EXIT_DATAERR, "checkpoint %s: not a readable HDF5 file (damaged or truncated?)", path);
	H5Pclose(fapl);
	return rc;
}

