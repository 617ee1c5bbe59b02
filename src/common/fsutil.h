/*
 * fsutil.h - durable file-system steps shared by the worker and the launcher
 * (the only code they share besides the contract): fsync of a directory,
 * mkdir -p, and an atomic whole-file write. No logging here: every function
 * returns 0 or an errno value and, when why is not NULL, a message naming
 * the operation and the path; the caller reports it its own way.
 */
#ifndef SPOTTRAIN_FSUTIL_H
#define SPOTTRAIN_FSUTIL_H

#include <stddef.h>

/*
 * fsync directory dir, so that renames and unlinks in it are durable. The result is always
 * checked: 0, or the errno of the open or the fsync. File systems that cannot fsync a
 * directory at all (EINVAL, ENOTSUP, EROFS) count as done: nothing more can be done there.
 */
int fs_fsync_dir(const char *dir, char *why, size_t why_len);

/* fsync the directory that holds path ("." for a bare name). As fs_fsync_dir. */
int fs_fsync_parent(const char *path, char *why, size_t why_len);

/*
 * mkdir -p: create path and each missing parent (mode 0755 less the umask). 0 when path is a
 * directory afterwards; ENOTDIR when a component is not a directory; ENAMETOOLONG; or the errno
 * of the mkdir that failed.
 */
int fs_mkdir_p(const char *path, char *why, size_t why_len);

/*
 * Write n bytes as the whole content of path, atomically: path.tmp (a stale one, or a link
 * there, is removed first; the new one is created O_EXCL, mode 0644) is written (all of it),
 * fsync'ed, closed, renamed over path, and the directory fsync'ed. 0, or the errno of the
 * step that failed; on a failure before the rename the .tmp is removed and path is untouched;
 * after it (the directory fsync) path is whole but maybe not yet durable.
 */
int fs_write_atomic(const char *path, const void *data, size_t n, char *why, size_t why_len);

/*
 * Before an append to the line file open at fd (O_RDWR | O_APPEND): when the file is not
 * empty and its last byte is not a newline (a line torn by a failed write, a full
 * volume, a crash), end that line, so the next record starts a line of its own.
 * Returns 0, or an errno (the file is then left as it was).
 */
int fs_end_torn_line(int fd);

#endif
