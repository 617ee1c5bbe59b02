/*
 * fetch_internal.h - shared by the files of the dataset download: fetch.c
 * (the per-dataset driver, the lock on each .part, the public API),
 * fetch_http.c (one file's transfer: libcurl, Range resume, redirects, the
 * size cap), fetch_response.c (the libcurl callbacks that write the .part),
 * fetch_url.c (what a URL may be and how it is logged) and
 * fetch_verify.c (SHA-256 and the checksum check). Not part of the public
 * face of the module (fetch.h): only fetch*.c include it.
 */
#ifndef SPOTTRAIN_FETCH_INTERNAL_H
#define SPOTTRAIN_FETCH_INTERNAL_H

#include "fetch.h"

#include <curl/curl.h>

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define FETCH_PATH_MAX 4096
#define FETCH_URL_MAX 4096

/* The state of one fetch_dataset call. */
typedef struct fetcher {
	fetch_options o;
	const char *dir;
	double deadline;                /* now_mono() time after which we give up */
	CURL *h;
	char errbuf[CURL_ERROR_SIZE];
} fetcher;

/* One of the four files. */
typedef struct job {
	int idx;                        /* into fetch_file_names; -1: a file of fetch_file */
	const char *name;
	const char *expect;             /* the checksum to match (hex digits) */
	const char *key;                /* the config key that holds it (for messages) */
	bool md5;                       /* expect is an MD5 (a published one), not a SHA-256 */
	char url[FETCH_URL_MAX];        /* base_url/NAME */
	char url_log[FETCH_URL_MAX];    /* the same, fit for a log message */
	char final[FETCH_PATH_MAX];     /* dir/NAME */
	char part[FETCH_PATH_MAX];      /* dir/NAME.part */
	int fd;                         /* the .part, locked; -1 when not open */
	bool spliced;                   /* the .part holds bytes of more than one response */
	char why[CURL_ERROR_SIZE + 128];/* what the last transient failure was */
} job;

/* What stopped a transfer from inside a callback. */
typedef enum {
	XF_GOING = 0,  /* nothing stopped the transfer */
	XF_OVERSIZE,   /* the file would be larger than max_bytes */
	XF_WRITE,      /* writing or cutting the .part failed (err) */
	XF_BAD_RANGE,  /* a 206 that does not start where we asked */
	XF_NOT_BODY,   /* a response other than 200/206 had a long body: not read */
} xfer_stop;

/* State of one request, seen by the header and write callbacks. */
typedef struct xfer {
	int fd;                       /* the .part, written with pwrite */
	curl_off_t max;               /* size cap of the whole file */
	curl_off_t asked;             /* the Range start sent (0: no Range) */
	curl_off_t off;               /* where the next body byte goes */
	long status;                  /* status code of the current response */
	bool in_headers;              /* after a status line, before its blank line */
	bool to_file;                 /* the current body goes into the .part */
	curl_off_t length;            /* Content-Length, -1 when absent */
	curl_off_t range_start;       /* Content-Range first byte, -1 when absent */
	curl_off_t range_total;       /* Content-Range total size, -1 when absent or '*' */
	bool restarted;               /* a 200 answered our Range: the .part was cut to 0 */
	bool appended;                /* a 206 is appending to earlier bytes */
	size_t dropped;               /* body bytes of other responses, read and dropped */
	xfer_stop stop;
	int err;                      /* errno for XF_WRITE */
} xfer;

/* ---- fetch.c: small helpers ---- */

/* Sleep ms milliseconds (nothing when ms <= 0), resuming after signals. */
void fetch_sleep_ms(long ms);
/* Size of the file behind fd, or -1 (errno set). */
off_t fetch_fd_size(int fd);

/* ---- fetch_url.c ---- */

/* The redirect rule: to https:// anywhere, or to the same scheme, host and port. */
bool fetch_redirect_allowed(const char *from, const char *to);
/* url for a log message: without a password, and with the query (signed URLs
 * carry credentials there) shown as "?...". */
void fetch_url_for_log(const char *url, char *out, size_t size);
/* Check base_url: http(s)://host[:port][/path], no query or fragment. 0 or EXIT_USAGE. */
int fetch_check_base_url(const char *base_url);

/* ---- fetch_response.c: libcurl's callbacks, userdata an xfer ---- */

/* CURLOPT_HEADERFUNCTION: track the status and sizes; decide at the blank line. */
size_t fetch_header_cb(char *data, size_t size, size_t nmemb, void *ud);
/* CURLOPT_WRITEFUNCTION: pwrite the body into the .part, or read and drop it. */
size_t fetch_write_cb(char *data, size_t size, size_t nmemb, void *ud);

/* ---- fetch_http.c ---- */

/* Create f->h with the options every request shares. 0 or EXIT_OSERR (logged). */
int fetch_setup_handle(fetcher *f);
/*
 * Bring the locked .part to the whole file (as the server sees it), retrying
 * transient failures with backoff; a failure that makes progress resets the
 * count. Returns 0 or an exit code (logged); EXIT_DATAERR when the file is
 * larger than max_bytes.
 */
int fetch_download(fetcher *f, job *j);

/* ---- fetch_verify.c ---- */

/* 64 hexadecimal digits and a NUL within the 65 bytes of s. */
bool fetch_is_sha256_hex(const char s[65]);
/*
 * Bring the locked .part to a file whose SHA-256 is j->expect: keep a whole
 * file left by an earlier run, else download it (resuming) and check it, once
 * more from byte 0 when resumed bytes do not match. Returns 0 (ready to
 * install), EXIT_DATAERR (mismatch or too large: the caller removes the
 * .part) or another exit code (logged).
 */
int fetch_verify_part(fetcher *f, job *j);

#endif
