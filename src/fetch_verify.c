/*
 * fetch_verify.c - the checksum side of the dataset download: SHA-256 (or a
 * published MD5, fetch_file) of a
 * file (OpenSSL's libcrypto, EVP, which libcurl of the OpenSSL flavour
 * already loads) and the loop that downloads a .part until it matches.
 *
 * The .part is only ever read through the locked descriptor (digest_fd),
 * never reopened: closing any descriptor of the file would drop the lock
 * (see fetch.c).
 */
#include "fetch_internal.h"

#include "contract.h"
#include "log.h"

#include <openssl/evp.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define FETCH_HASH_CHUNK (1u << 18)

/* 64 hexadecimal digits and a NUL within the 65 bytes of s. */
bool fetch_is_sha256_hex(const char s[65])
{
	for (size_t n = 0; n < 64; n++)
		if (!isxdigit((unsigned char)s[n]))
			return false;
	return s[64] == '\0';
}

/* SHA-256 (or MD5 when md5) of everything in fd (read with pread from 0) into out, as hex. */
static int digest_fd(int fd, const char *path, bool md5, char out[65])
{
	const char *algo = md5 ? "MD5" : "SHA-256";
	unsigned int want = md5 ? 16 : 32;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	int rc = 0;
	unsigned char *buf = malloc(FETCH_HASH_CHUNK);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!buf || !ctx || EVP_DigestInit_ex(ctx, md5 ? EVP_md5() : EVP_sha256(), NULL) != 1) {
		log_error("%s: cannot start %s (OpenSSL): out of memory?", path, algo);
		rc = EXIT_OSERR;
		goto free_all;
	}
	for (off_t pos = 0;;) {
		ssize_t n = pread(fd, buf, FETCH_HASH_CHUNK, pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_error("%s: read failed while computing %s: %s", path, algo, strerror(errno));
			rc = EXIT_IOERR;
			goto free_all;
		}
		if (n == 0)
			break;
		if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1) {
			log_error("%s: %s (OpenSSL) failed", path, algo);
			rc = EXIT_OSERR;
			goto free_all;
		}
		pos += n;
	}
	if (EVP_DigestFinal_ex(ctx, md, &md_len) != 1 || md_len != want) {
		log_error("%s: %s (OpenSSL) failed", path, algo);
		rc = EXIT_OSERR;
		goto free_all;
	}
	for (unsigned int i = 0; i < md_len; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
free_all:
	EVP_MD_CTX_free(ctx);
	free(buf);
	return rc;
}

int fetch_sha256_file(const char *path, char out[65])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		log_error("%s: cannot open: %s", path, strerror(errno));
		return EXIT_NOINPUT;
	}
	int rc = digest_fd(fd, path, false, out);
	close(fd);
	return rc;
}

/*
 * A whole file left by a run stopped between download and rename? Returns 1
 * when the .part is within max_bytes and matches j->expect, 0 when not (with
 * j->spliced set when it holds bytes), or an exit code (logged).
 */
static int left_part_verified(fetcher *f, job *j, char got[65])
{
	off_t have = fetch_fd_size(j->fd);
	if (have <= 0 || (size_t)have > f->o.max_bytes)
		return 0;
	int rc = digest_fd(j->fd, j->part, j->md5, got);
	if (rc)
		return rc;
	if (strcasecmp(got, j->expect) == 0) {
		log_info("%s: complete and verified; putting it in place", j->part);
		return 1;
	}
	j->spliced = true; /* whatever we add will follow older bytes */
	return 0;
}

/*
 * Download the .part until its SHA-256 is j->expect; when resumed bytes do
 * not match, once more from byte 0. Returns 0, EXIT_DATAERR (mismatch or too
 * large, logged) or another exit code (logged).
 */
static int download_until_verified(fetcher *f, job *j, char got[65])
{
	bool fresh_retry = false;
	for (;;) {
		int rc = fetch_download(f, j);
		if (rc)
			return rc;
		rc = digest_fd(j->fd, j->part, j->md5, got);
		if (rc)
			return rc;
		if (strcasecmp(got, j->expect) == 0)
			return 0;
		if (j->spliced && !fresh_retry) {
			/* resumed bytes may come from another version of the file: once more from 0 */
			log_warn("%s: %s of the resumed download does not match; downloading it again "
				 "from the start",
				 j->part, j->md5 ? "MD5" : "SHA-256");
			if (ftruncate(j->fd, 0) != 0) {
				log_error("%s: cannot truncate: %s", j->part, strerror(errno));
				return EXIT_IOERR;
			}
			j->spliced = false;
			fresh_retry = true;
			continue;
		}
		log_error("%s: %s mismatch for %s from %s: expected %s (%s), got %s; the download "
			  "was removed (check data.url and %s)",
			  j->final, j->md5 ? "MD5" : "SHA-256", j->name, j->url_log, j->expect, j->key, got,
			  j->key);
		return EXIT_DATAERR;
	}
}

int fetch_verify_part(fetcher *f, job *j)
{
	char got[65] = "";
	double t0 = now_mono();
	int rc = left_part_verified(f, j, got);
	if (rc == 1)
		return 0;
	if (rc)
		return rc;
	log_info("downloading %s to %s", j->url_log, j->part);
	rc = download_until_verified(f, j, got);
	if (rc)
		return rc;
	double dt = now_mono() - t0;
	off_t have = fetch_fd_size(j->fd);
	log_info("%s: %lld bytes in %.1f s (%.3g MB/s), %s verified", j->final, (long long)have,
		 dt, dt > 0 ? (double)have / dt / 1e6 : 0.0, j->md5 ? "MD5" : "SHA-256");
	return 0;
}
