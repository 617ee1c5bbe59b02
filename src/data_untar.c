/*
 * data_untar.c - a minimal, bounded reader of gzip-compressed tar archives
 * (data_archive.h): enough for a published data set archive, and nothing a
 * hostile archive could use to write outside the folder it is given. Names
 * are only ever compared with the names asked for; no path from the archive
 * is opened.
 */
#include "data_archive.h"

#include "contract.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define TAR_BLOCK 512
#define TAR_MAX_HEADERS 100000
#define TAR_CHUNK (1u << 16)

/* The state of one archive_untar call. */
typedef struct untar {
	const char *archive;
	gzFile gz;
	unsigned long long off;   /* bytes of the uncompressed stream consumed */
	char member[260];         /* the path of the header being handled */
	unsigned char *buf;       /* TAR_CHUNK bytes */
} untar;

/* Read exactly n bytes. 0, or EXIT_DATAERR (logged) on a short or corrupt stream. */
static int read_exact(untar *u, void *p, size_t n)
{
	int got = gzread(u->gz, p, (unsigned)n);
	if (got == (int)n) {
		u->off += n;
		return 0;
	}
	int zerr = 0;
	const char *msg = gzerror(u->gz, &zerr);
	log_error("%s: truncated or corrupt archive at byte %llu (in %s): %s", u->archive, u->off,
		  u->member[0] ? u->member : "a header", zerr ? msg : "unexpected end of data");
	return EXIT_DATAERR;
}

/* An octal field (digits, then spaces or NULs) into *v. false: malformed. */
static bool octal_field(const unsigned char *f, size_t len, unsigned long long *v)
{
	size_t i = 0;
	*v = 0;
	while (i < len && f[i] == ' ')
		i++;
	size_t start = i;
	for (; i < len && f[i] >= '0' && f[i] <= '7'; i++) {
		if (*v >> 60)
			return false;
		*v = *v * 8 + (unsigned)(f[i] - '0');
	}
	if (i == start)
		return false;
	for (; i < len; i++)
		if (f[i] != ' ' && f[i] != '\0')
			return false;
	return true;
}

/* The header's checksum (field 148..155, counted as spaces) matches. */
static bool checksum_ok(const unsigned char *h)
{
	unsigned long long want;
	if (!octal_field(h + 148, 8, &want))
		return false;
	unsigned long long sum = 0;
	for (int i = 0; i < TAR_BLOCK; i++)
		sum += (i >= 148 && i < 156) ? ' ' : h[i];
	return sum == want;
}

/* Copy a field of at most len bytes, NUL-terminated or full, to out. */
static size_t field(const unsigned char *f, size_t len, char *out)
{
	size_t n = 0;
	while (n < len && f[n])
		n++;
	memcpy(out, f, n);
	out[n] = '\0';
	return n;
}

/* The member's path (ustar prefix "/" name) into u->member; a leading "./" dropped. */
static void member_path(untar *u, const unsigned char *h)
{
	char name[101], prefix[156];
	field(h, 100, name);
	bool ustar = memcmp(h + 257, "ustar\0", 6) == 0;
	if (ustar && field(h + 345, 155, prefix))
		snprintf(u->member, sizeof u->member, "%s/%s", prefix, name);
	else
		snprintf(u->member, sizeof u->member, "%s", name);
	while (u->member[0] == '.' && u->member[1] == '/')
		memmove(u->member, u->member + 2, strlen(u->member + 2) + 1);
}

/* A relative path without a ".." component. */
static bool path_safe(const char *p)
{
	if (p[0] == '/' || p[0] == '\0')
		return false;
	for (const char *c = p; *c;) {
		size_t n = strcspn(c, "/");
		if (n == 2 && c[0] == '.' && c[1] == '.')
			return false;
		c += n;
		while (*c == '/')
			c++;
	}
	return true;
}

/*
 * Check the header block h (at u->off - 512) and return its type ('0' for a
 * regular file, '5' a folder) and *size, or 0 with the refusal logged.
 */
static char check_header(untar *u, const unsigned char *h, size_t max_member, unsigned long long *size)
{
	unsigned long long at = u->off - TAR_BLOCK;
	member_path(u, h);
	if (memcmp(h + 257, "ustar\0" "00", 8) != 0 && memcmp(h + 257, "ustar  \0", 8) != 0) {
		log_error("%s: byte %llu: not a ustar header (foreign or corrupt archive)", u->archive, at);
		return 0;
	}
	if (!checksum_ok(h)) {
		log_error("%s: byte %llu: header checksum mismatch (corrupt archive)", u->archive, at);
		return 0;
	}
	char type = h[156] == '\0' || h[156] == '7' ? '0' : (char)h[156];
	if (type != '0' && type != '5') {
		log_error("%s: byte %llu: member %s is of tar type '%c' (a link, device, long name or pax "
			  "header): only regular files and folders are accepted", u->archive, at, u->member,
			  h[156] >= 32 && h[156] < 127 ? h[156] : '?');
		return 0;
	}
	if (!path_safe(u->member)) {
		log_error("%s: byte %llu: member \"%s\" has an absolute path or a \"..\" component: refused",
			  u->archive, at, u->member);
		return 0;
	}
	if (!octal_field(h + 124, 12, size) || *size > max_member) {
		log_error("%s: byte %llu: member %s has a malformed size or one above %zu bytes: refused",
			  u->archive, at, u->member, max_member);
		return 0;
	}
	return type;
}

/* Copy size bytes of the stream (and the padding after them) to fd, or drop them when fd < 0. */
static int copy_member(untar *u, unsigned long long size, int fd, const char *out)
{
	unsigned long long left = (size + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK;
	while (left > 0) {
		size_t n = left < TAR_CHUNK ? (size_t)left : TAR_CHUNK;
		int rc = read_exact(u, u->buf, n);
		if (rc)
			return rc;
		size_t data = size < n ? (size_t)size : n;
		for (size_t w = 0; fd >= 0 && w < data;) {
			ssize_t k = write(fd, u->buf + w, data - w);
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0) {
				log_error("%s: write failed: %s (check the volume)", out, strerror(errno));
				return EXIT_IOERR;
			}
			w += (size_t)k;
		}
		size -= data;
		left -= n;
	}
	return 0;
}

/* Write the member now at u's position to dest/name (created here: *made set). */
static int extract(untar *u, unsigned long long size, const char *dest, const char *name, int *made)
{
	char out[4200];
	snprintf(out, sizeof out, "%s/%s", dest, name);
	int fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0) {
		int e = errno;
		log_error("%s: cannot create: %s", out, strerror(e));
		return e == EEXIST ? EXIT_DATAERR : EXIT_IOERR;
	}
	*made = 1;
	int rc = copy_member(u, size, fd, out);
	if (!rc && fsync(fd) != 0) {
		log_error("%s: fsync failed: %s", out, strerror(errno));
		rc = EXIT_IOERR;
	}
	if (close(fd) != 0 && !rc) {
		log_error("%s: close failed: %s", out, strerror(errno));
		rc = EXIT_IOERR;
	}
	return rc;
}

/* Which of names is u->member (prefix "/" name)? -1: none. */
static int wanted(const untar *u, const char *prefix, const char *const *names, int n)
{
	size_t pl = strlen(prefix);
	const char *m = u->member;
	if (pl) {
		if (strncmp(m, prefix, pl) != 0 || m[pl] != '/')
			return -1;
		m += pl + 1;
	}
	for (int k = 0; k < n; k++)
		if (strcmp(m, names[k]) == 0)
			return k;
	return -1;
}

/* The loop over headers until the end blocks; found[k] counts names[k]. */
static int walk(untar *u, const char *prefix, const char *const *names, int n, size_t max_member,
		const char *dest, int *found)
{
	unsigned char h[TAR_BLOCK];
	static const unsigned char zero[TAR_BLOCK];
	for (int count = 0;; count++) {
		u->member[0] = '\0';
		int rc = read_exact(u, h, TAR_BLOCK);
		if (rc)
			return rc;
		if (memcmp(h, zero, TAR_BLOCK) == 0)
			return 0; /* the end (what follows is padding) */
		if (count >= TAR_MAX_HEADERS) {
			log_error("%s: more than %d members: not a data set archive", u->archive, TAR_MAX_HEADERS);
			return EXIT_DATAERR;
		}
		unsigned long long size;
		char type = check_header(u, h, max_member, &size);
		if (!type)
			return EXIT_DATAERR;
		int k = type == '0' ? wanted(u, prefix, names, n) : -1;
		if (k >= 0 && found[k]) {
			log_error("%s: byte %llu: member %s appears twice", u->archive, u->off - TAR_BLOCK, u->member);
			return EXIT_DATAERR;
		}
		rc = k >= 0 ? extract(u, size, dest, names[k], &found[k]) : copy_member(u, size, -1, NULL);
		if (rc)
			return rc;
	}
}

int archive_untar(const char *archive, const char *prefix, const char *const *names, int n,
		  size_t max_member, const char *dest)
{
	untar u = {.archive = archive};
	int fd = open(archive, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		log_error("%s: cannot open: %s", archive, strerror(errno));
		return EXIT_NOINPUT;
	}
	u.gz = gzdopen(fd, "rb");
	u.buf = malloc(TAR_CHUNK);
	int *found = calloc((size_t)(n > 0 ? n : 1), sizeof *found);
	int rc = 0;
	if (!u.gz || !u.buf || !found) {
		log_error("%s: out of memory opening the archive", archive);
		rc = EXIT_OSERR;
	}
	if (!rc)
		rc = walk(&u, prefix, names, n, max_member, dest, found);
	for (int k = 0; k < n && !rc; k++)
		if (!found[k]) {
			log_error("%s: the archive has no member %s/%s", archive, prefix, names[k]);
			rc = EXIT_DATAERR;
		}
	if (u.gz)
		gzclose(u.gz); /* closes fd */
	else
		close(fd);
	for (int k = 0; k < n && rc && found; k++) {
		char out[4200];
		snprintf(out, sizeof out, "%s/%s", dest, names[k]);
		if (found[k])
			unlink(out); /* the partial or complete files we made: never a half data set */
	}
	free(found);
	free(u.buf);
	return rc;
}
