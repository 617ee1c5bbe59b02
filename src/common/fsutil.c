/*
 * fsutil.c - fsync of a directory, mkdir -p and atomic whole-file writes
 * (see fsutil.h). Used by the worker (checkpoints, run directory, fetched
 * data) and the launcher (state, hostfiles, reports).
 */
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Put the message into why (when given) and return e. */
static int say(int e, char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int say(int e, char *why, size_t len, const char *fmt, ...)
{
	if (why && len > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, len, fmt, ap);
		va_end(ap);
	}
	return e;
}

int fs_fsync_dir(const char *dir, char *why, size_t len)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return say(errno, why, len, "open directory %s to fsync it: %s", dir, strerror(errno));
	int e = fsync(fd) != 0 ? errno : 0;
	if (e == EINVAL || e == ENOTSUP || e == EROFS)
		e = 0; /* this file system cannot fsync a directory */
	if (close(fd) != 0 && e == 0 && errno != EINTR)
		e = errno;
	if (e)
		return say(e, why, len, "fsync directory %s: %s", dir, strerror(e));
	return 0;
}

int fs_fsync_parent(const char *path, char *why, size_t len)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	if (!slash)
		snprintf(dir, sizeof dir, ".");
	else if (slash == path)
		snprintf(dir, sizeof dir, "/");
	else if ((size_t)(slash - path) >= sizeof dir)
		return say(ENAMETOOLONG, why, len, "fsync the directory of %s: path too long", path);
	else
		snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
	return fs_fsync_dir(dir, why, len);
}

int fs_mkdir_p(const char *path, char *why, size_t len)
{
	char buf[PATH_MAX];
	int n = snprintf(buf, sizeof buf, "%s", path);
	if (n <= 0 || (size_t)n >= sizeof buf)
		return say(n <= 0 ? EINVAL : ENAMETOOLONG, why, len, "create directory %s: %s", path,
			   n <= 0 ? "empty path" : "path too long");
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		struct stat st;
		if (mkdir(buf, 0755) != 0 && errno != EEXIST) /* never world-writable, whatever the umask */
			return say(errno, why, len, "create directory %s: %s", buf, strerror(errno));
		if (stat(buf, &st) != 0)
			return say(errno, why, len, "create directory %s: %s", buf, strerror(errno));
		if (!S_ISDIR(st.st_mode))
			return say(ENOTDIR, why, len, "create directory %s: %s exists and is not a directory", path, buf);
		*p = c;
		if (c == '\0' || p[1] == '\0')
			return 0;
	}
}

/* Write all n bytes of buf to fd (short writes and EINTR continue). 0 or errno. */
static int write_all(int fd, const unsigned char *buf, size_t n, const char *path, char *why, size_t len)
{
	size_t done = 0;
	while (done < n) {
		size_t chunk = n - done < ((size_t)1 << 30) ? n - done : ((size_t)1 << 30);
		ssize_t w = write(fd, buf + done, chunk);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = w < 0 ? errno : EIO;
			return say(e, why, len, "write %s at byte %zu of %zu: %s", path, done, n,
				   w < 0 ? strerror(e) : "no progress");
		}
		done += (size_t)w;
	}
	return 0;
}

int fs_write_atomic(const char *path, const void *data, size_t n, char *why, size_t len)
{
	char tmp[PATH_MAX];
	if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
		return say(ENAMETOOLONG, why, len, "write %s: path too long", path);
	/* a stale .tmp (or a link planted there) is removed, never followed or reused: the new file
	 * is ours alone (O_EXCL), and never world-writable */
	(void)unlink(tmp); /* (what cannot be removed makes the O_EXCL create fail, and say so) */
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0) /* not created by us: nothing to remove */
		return say(errno, why, len, "create %s: %s", tmp, strerror(errno));
	int e = write_all(fd, data, n, tmp, why, len);
	if (!e && fsync(fd) != 0)
		e = say(errno, why, len, "fsync %s: %s", tmp, strerror(errno));
	if (close(fd) != 0 && !e)
		e = say(errno, why, len, "close %s: %s", tmp, strerror(errno));
	if (!e && rename(tmp, path) != 0)
		e = say(errno, why, len, "rename %s to %s: %s", tmp, path, strerror(errno));
	if (e) {
		if (unlink(tmp) != 0 && errno != ENOENT && why) {
			size_t k = strlen(why);
			snprintf(why + k, len - k, "; also could not remove the .tmp: %s", strerror(errno));
		}
		return e;
	}
	return fs_fsync_parent(path, why, len);
}

int fs_end_torn_line(int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return errno;
	char last = '\n';
	if (st.st_size > 0 && pread(fd, &last, 1, st.st_size - 1) != 1)
		return errno ? errno : EIO;
	if (last == '\n')
		return 0;
	return write(fd, "\n", 1) == 1 ? 0 : (errno ? errno : EIO);
}
