/*
 * iofault.c - an LD_PRELOAD shim for tests (never linked into a program):
 * it fails, or slows down, chosen file-system calls on files whose path
 * matches a pattern, so tests can prove what the programs do on EIO, ENOSPC
 * or EDQUOT at every call of a checkpoint, event or state write.
 *
 * Environment (read once, at the first intercepted call):
 *   IOFAULT_PATH   fnmatch(3) patterns separated by '|' (no FNM_PATHNAME: '*'
 *                  also matches '/'), e.g. "*\/checkpoints*|*\/final.h5*".
 *                  Unset: the shim does nothing.
 *   IOFAULT_OPS    the calls to count, a comma list of open, write, fsync,
 *                  rename, close (default: all five). open covers open, open64,
 *                  openat, creat; write covers write, pwrite, pwrite64; fsync
 *                  covers fsync and fdatasync; rename covers rename and renameat.
 *   IOFAULT_N      fail the N-th counted call of this process (1-based) ...
 *   IOFAULT_TIMES  ... and the TIMES-1 counted calls after it (default 1;
 *                  0: every counted call from the N-th on, a volume that stays full).
 *   IOFAULT_ERRNO  EIO (default), ENOSPC or EDQUOT.
 *   IOFAULT_RANK   only in the process whose OMPI_COMM_WORLD_RANK is this.
 *   IOFAULT_LOG    a file that gets one line "PID OP ERRNO PATH" per failed call.
 *   IOFAULT_DELAY_MS, IOFAULT_DELAY_FILE  a slow disk: every counted write and
 *                  fsync sleeps this long first, while DELAY_FILE exists (always
 *                  when it is not given). Without IOFAULT_N nothing fails.
 *
 * A failed call does nothing and returns -1 with errno set, as the kernel would
 * (a failed close still closes the descriptor, as Linux's close does).
 * Descriptors are followed from the open that matched to their close.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 65536
#define MAX_PATTERNS 8

enum { OP_OPEN = 1, OP_WRITE = 2, OP_FSYNC = 4, OP_RENAME = 8, OP_CLOSE = 16, OP_ALL = 31 };

/* The settings, read once; the counters; the followed descriptors (their paths, for the log). */
typedef struct iofault {
	bool on;
	char patterns[MAX_PATTERNS][512];
	int n_patterns;
	int ops;
	long n, times;
	int err;
	char log[1024];
	long delay_ms;
	char delay_file[1024];
	long counted;
	pthread_mutex_t lock;
	char *fd_path[MAX_FDS];
} iofault;

static iofault g = {.lock = PTHREAD_MUTEX_INITIALIZER};
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* The next definition of a libc function (the real one, or a sanitizer's interceptor). */
static void *real(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

static int parse_ops(const char *s)
{
	static const struct {
		const char *name;
		int op;
	} names[] = {{"open", OP_OPEN}, {"write", OP_WRITE}, {"fsync", OP_FSYNC},
		     {"rename", OP_RENAME}, {"close", OP_CLOSE}};
	if (!s || !*s)
		return OP_ALL;
	int ops = 0;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strstr(s, names[i].name))
			ops |= names[i].op;
	return ops;
}

static int parse_errno(const char *s)
{
	if (s && strcmp(s, "ENOSPC") == 0)
		return ENOSPC;
	if (s && strcmp(s, "EDQUOT") == 0)
		return EDQUOT;
	return EIO;
}

/* Read the environment into g (once). The shim stays off without IOFAULT_PATH or in another rank. */
static void load(void)
{
	const char *path = getenv("IOFAULT_PATH");
	const char *rank = getenv("IOFAULT_RANK");
	const char *mine = getenv("OMPI_COMM_WORLD_RANK");
	if (!path || !*path)
		return;
	if (rank && *rank && (!mine || strcmp(rank, mine) != 0))
		return;
	char buf[4096];
	snprintf(buf, sizeof buf, "%s", path);
	char *save = NULL;
	for (char *p = strtok_r(buf, "|", &save); p && g.n_patterns < MAX_PATTERNS; p = strtok_r(NULL, "|", &save))
		snprintf(g.patterns[g.n_patterns++], sizeof g.patterns[0], "%s", p);
	g.ops = parse_ops(getenv("IOFAULT_OPS"));
	const char *n = getenv("IOFAULT_N");
	g.n = n ? atol(n) : 0;
	const char *times = getenv("IOFAULT_TIMES");
	g.times = times ? atol(times) : 1;
	g.err = parse_errno(getenv("IOFAULT_ERRNO"));
	const char *log = getenv("IOFAULT_LOG");
	snprintf(g.log, sizeof g.log, "%s", log ? log : "");
	const char *d = getenv("IOFAULT_DELAY_MS");
	g.delay_ms = d ? atol(d) : 0;
	const char *df = getenv("IOFAULT_DELAY_FILE");
	snprintf(g.delay_file, sizeof g.delay_file, "%s", df ? df : "");
	g.on = g.n_patterns > 0;
}

static bool matches(const char *path)
{
	pthread_once(&g_once, load);
	if (!g.on || !path)
		return false;
	for (int i = 0; i < g.n_patterns; i++)
		if (fnmatch(g.patterns[i], path, 0) == 0)
			return true;
	return false;
}

static const char *op_name(int op)
{
	switch (op) {
	case OP_OPEN: return "open";
	case OP_WRITE: return "write";
	case OP_FSYNC: return "fsync";
	case OP_RENAME: return "rename";
	default: return "close";
	}
}

/* One line to IOFAULT_LOG, written with the real calls (never counted). */
static void note(int op, const char *path)
{
	if (!g.log[0])
		return;
	int (*r_open)(const char *, int, ...) = real("open");
	ssize_t (*r_write)(int, const void *, size_t) = real("write");
	int (*r_close)(int) = real("close");
	int fd = r_open(g.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	char line[1200];
	int len = snprintf(line, sizeof line, "%ld %s %s %s\n", (long)getpid(), op_name(op),
			   g.err == ENOSPC ? "ENOSPC" : g.err == EDQUOT ? "EDQUOT" : "EIO", path ? path : "?");
	if (len > 0)
		(void)!r_write(fd, line, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
	r_close(fd);
}

/* The slow disk: sleep while IOFAULT_DELAY_FILE exists (or always without one). */
static void slow(void)
{
	if (g.delay_ms <= 0)
		return;
	struct stat st;
	if (g.delay_file[0] && stat(g.delay_file, &st) != 0)
		return;
	struct timespec ts = {g.delay_ms / 1000, (g.delay_ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* A counted call of op on path: true when it must fail (errno is then set and the failure logged). */
static bool fault(int op, const char *path)
{
	if (!(g.ops & op))
		return false;
	if (op == OP_WRITE || op == OP_FSYNC)
		slow();
	if (g.n <= 0)
		return false;
	long k = __atomic_add_fetch(&g.counted, 1, __ATOMIC_SEQ_CST);
	if (k < g.n || (g.times > 0 && k >= g.n + g.times))
		return false;
	note(op, path);
	errno = g.err;
	return true;
}

/* The path a followed descriptor was opened with (a copy in buf), or NULL. */
static const char *fd_path(int fd, char *buf, size_t len)
{
	pthread_once(&g_once, load);
	if (!g.on || fd < 0 || fd >= MAX_FDS)
		return NULL;
	const char *out = NULL;
	pthread_mutex_lock(&g.lock);
	if (g.fd_path[fd]) {
		snprintf(buf, len, "%s", g.fd_path[fd]);
		out = buf;
	}
	pthread_mutex_unlock(&g.lock);
	return out;
}

static void follow(int fd, const char *path)
{
	if (fd < 0 || fd >= MAX_FDS)
		return;
	char *copy = strdup(path);
	pthread_mutex_lock(&g.lock);
	free(g.fd_path[fd]);
	g.fd_path[fd] = copy;
	pthread_mutex_unlock(&g.lock);
}

static void unfollow(int fd)
{
	if (fd < 0 || fd >= MAX_FDS)
		return;
	pthread_mutex_lock(&g.lock);
	free(g.fd_path[fd]);
	g.fd_path[fd] = NULL;
	pthread_mutex_unlock(&g.lock);
}

/* ---------------------------------------------------------------- the intercepted calls */

static int do_openat(const char *fn, int dirfd, const char *path, int flags, mode_t mode)
{
	bool m = matches(path);
	if (m && fault(OP_OPEN, path))
		return -1;
	int fd;
	if (dirfd == AT_FDCWD && strcmp(fn, "openat") != 0) {
		int (*r)(const char *, int, ...) = real(fn);
		fd = r(path, flags, mode);
	} else {
		int (*r)(int, const char *, int, ...) = real(fn);
		fd = r(dirfd, path, flags, mode);
	}
	if (m && fd >= 0)
		follow(fd, path);
	return fd;
}

static mode_t mode_arg(int flags, va_list ap)
{
	return (flags & (O_CREAT | __O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	return do_openat("open", AT_FDCWD, path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	return do_openat("open64", AT_FDCWD, path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	return do_openat("openat", dirfd, path, flags, mode);
}

int creat(const char *path, mode_t mode)
{
	return do_openat("open", AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

ssize_t write(int fd, const void *buf, size_t n)
{
	char p[4096];
	const char *path = fd_path(fd, p, sizeof p);
	if (path && fault(OP_WRITE, path))
		return -1;
	ssize_t (*r)(int, const void *, size_t) = real("write");
	return r(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	char p[4096];
	const char *path = fd_path(fd, p, sizeof p);
	if (path && fault(OP_WRITE, path))
		return -1;
	ssize_t (*r)(int, const void *, size_t, off_t) = real("pwrite");
	return r(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	char p[4096];
	const char *path = fd_path(fd, p, sizeof p);
	if (path && fault(OP_WRITE, path))
		return -1;
	ssize_t (*r)(int, const void *, size_t, off_t) = real("pwrite64");
	return r(fd, buf, n, off);
}

int fsync(int fd)
{
	char p[4096];
	const char *path = fd_path(fd, p, sizeof p);
	if (path && fault(OP_FSYNC, path))
		return -1;
	int (*r)(int) = real("fsync");
	return r(fd);
}

int fdatasync(int fd)
{
	char p[4096];
	const char *path = fd_path(fd, p, sizeof p);
	if (path && fault(OP_FSYNC, path))
		return -1;
	int (*r)(int) = real("fdatasync");
	return r(fd);
}

int close(int fd)
{
	char p[4096];
	const char *path = fd_path(fd, p, sizeof p);
	int (*r)(int) = real("close");
	if (path) {
		unfollow(fd);
		if (fault(OP_CLOSE, path)) {
			int e = errno;
			r(fd); /* Linux: the descriptor is gone even when close fails */
			errno = e;
			return -1;
		}
	}
	return r(fd);
}

int rename(const char *from, const char *to)
{
	if ((matches(from) || matches(to)) && fault(OP_RENAME, to))
		return -1;
	int (*r)(const char *, const char *) = real("rename");
	return r(from, to);
}

int renameat(int fromfd, const char *from, int tofd, const char *to)
{
	if ((matches(from) || matches(to)) && fault(OP_RENAME, to))
		return -1;
	int (*r)(int, const char *, int, const char *) = real("renameat");
	return r(fromfd, from, tofd, to);
}
