/*
 * fetch.c - download of the IDX files into data.dir, verified by SHA-256.
 *
 * One file at a time: dir/NAME.part is opened and locked (fcntl, which also
 * works on NFS, so the first ranks of several nodes on one shared volume
 * take turns), resumed or started with a GET carrying "Range: bytes=N-",
 * hashed, fsynced and renamed to dir/NAME; then dir is fsynced.
 *
 * Why the request is built this way:
 *  - The Range header is set with CURLOPT_RANGE, not CURLOPT_RESUME_FROM_LARGE:
 *    with RESUME_FROM libcurl itself turns a 200 that ignores the range into
 *    CURLE_RANGE_ERROR, and a 200 whose length equals the offset into a silent
 *    success with no body. Here the header callback decides at the end of the
 *    headers: 206 starting at our offset appends, 200 cuts the .part to 0 and
 *    takes the whole body, anything else writes nothing.
 *  - Redirects are followed by hand (CURLINFO_REDIRECT_URL), at most
 *    FETCH_MAX_REDIRECTS, and only to https:// or to the same scheme, host and
 *    port as the URL that redirected, so an http mirror cannot send us to
 *    another plain-http host (the checksum would catch bad data, but not a
 *    request to an internal address).
 *  - The body of a response that is not 200/206 never reaches the file; up
 *    to FETCH_MAX_DROPPED bytes of it are read and dropped (libcurl only
 *    reports the Location of a transfer that completes), beyond that the
 *    transfer is cut.
 *  - The lock is a POSIX record lock, which belongs to the process and is
 *    dropped when *any* descriptor of the file is closed: the .part is only
 *    ever read through the locked descriptor (sha256_fd), never reopened.
 *
 * SHA-256 comes from OpenSSL's libcrypto (EVP), which libcurl (OpenSSL
 * flavour) already loads.
 */
#include "fetch.h"

#include "contract.h"
#include "fsutil.h"
#include "log.h"

#include <curl/curl.h>
#include <openssl/evp.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define FETCH_MAX_REDIRECTS 5
#define FETCH_PATH_MAX 4096
#define FETCH_URL_MAX 4096
#define FETCH_HASH_CHUNK (1u << 18)
#define FETCH_MAX_DROPPED (64u << 10) /* longest body of a redirect or error read */

_Static_assert(sizeof(curl_off_t) == sizeof(int64_t), "curl_off_t is 64-bit");

const char *const fetch_file_names[FETCH_NFILES] = {
	"train-images-idx3-ubyte.gz",
	"train-labels-idx1-ubyte.gz",
	"t10k-images-idx3-ubyte.gz",
	"t10k-labels-idx1-ubyte.gz",
};

const char *const fetch_sha256_keys[FETCH_NFILES] = {
	"data.sha256_train_images",
	"data.sha256_train_labels",
	"data.sha256_test_images",
	"data.sha256_test_labels",
};

/* The other names dataset_load accepts for the same file (see data.c). */
static const char *const fetch_alt_names[FETCH_NFILES][3] = {
	{"train-images-idx3-ubyte", "train-images.idx3-ubyte.gz", "train-images.idx3-ubyte"},
	{"train-labels-idx1-ubyte", "train-labels.idx1-ubyte.gz", "train-labels.idx1-ubyte"},
	{"t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte.gz", "t10k-images.idx3-ubyte"},
	{"t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte.gz", "t10k-labels.idx1-ubyte"},
};

void fetch_options_default(fetch_options *o)
{
	o->max_bytes = FETCH_DEFAULT_MAX_BYTES;
	o->connect_timeout_ms = 15000;
	o->low_speed_bytes = 1024;
	o->low_speed_time_s = 30;
	o->max_retries = 5;
	o->backoff_ms = 1000;
	o->backoff_max_ms = 30000;
	o->deadline_s = 1800;
	o->lock_poll_ms = 200;
}

/* ------------------------------------------------------------------ */
/* small helpers                                                       */
/* ------------------------------------------------------------------ */

static void sleep_ms(long ms)
{
	if (ms <= 0)
		return;
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* 64 hexadecimal digits and a NUL within the 65 bytes of s. */
static bool is_sha256_hex(const char s[65])
{
	for (size_t n = 0; n < 64; n++)
		if (!isxdigit((unsigned char)s[n]))
			return false;
	return s[64] == '\0';
}

/* Size of the file behind fd, or -1 (errno set). */
static off_t fd_size(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 ? st.st_size : -1;
}

/* mkdir -p of the data folder: 0 or EXIT_IOERR with a message. */
static int make_dirs(const char *dir)
{
	char why[FETCH_PATH_MAX + 128];
	if (fs_mkdir_p(dir, why, sizeof why)) {
		log_error("%s (check data.dir and the volume)", why);
		return EXIT_IOERR;
	}
	return 0;
}

/* fsync a folder so that a rename in it is durable. 0 or EXIT_IOERR. */
static int sync_dir(const char *dir)
{
	char why[FETCH_PATH_MAX + 128];
	if (fs_fsync_dir(dir, why, sizeof why)) {
		log_error("%s", why);
		return EXIT_IOERR;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* SHA-256                                                             */
/* ------------------------------------------------------------------ */

/* SHA-256 of everything in fd (read with pread from 0) into out. */
static int sha256_fd(int fd, const char *path, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	int rc = 0;
	unsigned char *buf = malloc(FETCH_HASH_CHUNK);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!buf || !ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		log_error("%s: cannot start SHA-256 (OpenSSL): out of memory?", path);
		rc = EXIT_OSERR;
		goto free_all;
	}
	for (off_t pos = 0;;) {
		ssize_t n = pread(fd, buf, FETCH_HASH_CHUNK, pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_error("%s: read failed while computing SHA-256: %s", path, strerror(errno));
			rc = EXIT_IOERR;
			goto free_all;
		}
		if (n == 0)
			break;
		if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1) {
			log_error("%s: SHA-256 (OpenSSL) failed", path);
			rc = EXIT_OSERR;
			goto free_all;
		}
		pos += n;
	}
	if (EVP_DigestFinal_ex(ctx, md, &md_len) != 1 || md_len != 32) {
		log_error("%s: SHA-256 (OpenSSL) failed", path);
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
	int rc = sha256_fd(fd, path, out);
	close(fd);
	return rc;
}

/* ------------------------------------------------------------------ */
/* URLs                                                                */
/* ------------------------------------------------------------------ */

/* Scheme (lowercase), host and port (default port filled in) of a URL. */
typedef struct url_origin {
	char scheme[16];
	char host[256];
	char port[8];
} url_origin;

static bool parse_origin(const char *url, url_origin *o)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL;
	bool ok = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
		  curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
		  curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
		  curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK &&
		  strlen(scheme) < sizeof o->scheme && strlen(host) < sizeof o->host &&
		  strlen(port) < sizeof o->port && host[0];
	if (ok) {
		size_t i = 0;
		for (; scheme[i]; i++)
			o->scheme[i] = (char)tolower((unsigned char)scheme[i]);
		o->scheme[i] = '\0';
		snprintf(o->host, sizeof o->host, "%s", host);
		snprintf(o->port, sizeof o->port, "%s", port);
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return ok;
}

/* The redirect rule: to https:// anywhere, or to the same scheme, host and port. */
static bool redirect_allowed(const char *from, const char *to)
{
	url_origin a, b;
	if (!parse_origin(from, &a) || !parse_origin(to, &b))
		return false;
	if (strcmp(b.scheme, "https") == 0)
		return true;
	return strcmp(a.scheme, b.scheme) == 0 && strcasecmp(a.host, b.host) == 0 &&
	       strcmp(a.port, b.port) == 0;
}

/* url for a log message: without a password, and with the query (signed URLs
 * carry credentials there) shown as "?...". */
static void url_for_log(const char *url, char *out, size_t size)
{
	CURLU *u = curl_url();
	char *s = NULL, *q = NULL;
	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
		curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
		bool has_query = curl_url_get(u, CURLUPART_QUERY, &q, 0) == CURLUE_OK;
		curl_url_set(u, CURLUPART_QUERY, NULL, 0);
		if (curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK)
			snprintf(out, size, "%s%s", s, has_query ? "?..." : "");
		else
			snprintf(out, size, "(unprintable URL)");
	} else {
		snprintf(out, size, "(unparsable URL)");
	}
	curl_free(q);
	curl_free(s);
	curl_url_cleanup(u);
}

/* ------------------------------------------------------------------ */
/* one HTTP request                                                    */
/* ------------------------------------------------------------------ */

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

/* Parse a non-negative decimal at *s (leading blanks skipped); advances *s. */
static bool parse_off(const char **s, curl_off_t *v)
{
	const char *p = *s;
	while (*p == ' ' || *p == '\t')
		p++;
	if (!isdigit((unsigned char)*p))
		return false;
	curl_off_t x = 0;
	for (; isdigit((unsigned char)*p); p++) {
		int d = *p - '0';
		if (x > (INT64_MAX - d) / 10)
			return false;
		x = x * 10 + d;
	}
	*v = x;
	*s = p;
	return true;
}

/* Content-Range: "bytes START-END/TOTAL" or "bytes * /TOTAL" (no blank) */
static void parse_content_range(const char *s, xfer *x)
{
	curl_off_t start, end, total;
	while (*s == ' ' || *s == '\t')
		s++;
	if (strncasecmp(s, "bytes", 5) != 0)
		return;
	s += 5;
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '*') {
		s++;
	} else {
		if (!parse_off(&s, &start) || *s++ != '-' || !parse_off(&s, &end) || end < start)
			return;
		x->range_start = start;
	}
	if (*s++ != '/')
		return;
	if (parse_off(&s, &total))
		x->range_total = total;
}

/* At the end of a response's headers: decide where its body goes. */
static bool begin_body(xfer *x)
{
	x->to_file = false;
	if (x->status == 200) {
		if (x->length > x->max) {
			x->stop = XF_OVERSIZE;
			return false;
		}
		if (x->off != 0) {
			/* the server ignored the Range (or sent the whole file again) */
			if (ftruncate(x->fd, 0) != 0) {
				x->err = errno;
				x->stop = XF_WRITE;
				return false;
			}
			x->off = 0;
			x->restarted = true;
		}
		x->to_file = true;
	} else if (x->status == 206) {
		if (x->range_start != x->asked) {
			x->stop = XF_BAD_RANGE;
			return false;
		}
		if (x->range_total > x->max) {
			x->stop = XF_OVERSIZE;
			return false;
		}
		x->appended = x->asked > 0;
		x->to_file = true;
	}
	return true;
}

static size_t header_cb(char *data, size_t size, size_t nmemb, void *ud)
{
	xfer *x = ud;
	size_t len = size * nmemb;
	char line[512]; /* the headers read here are short; longer lines are cut */
	size_t n = len < sizeof line - 1 ? len : sizeof line - 1;
	memcpy(line, data, n);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	line[n] = '\0';

	if (strncmp(line, "HTTP/", 5) == 0) { /* a new response (redirect, 1xx, final) */
		const char *sp = strchr(line, ' ');
		x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		x->in_headers = true;
		x->to_file = false;
		x->length = x->range_start = x->range_total = -1;
		return len;
	}
	if (!x->in_headers) /* trailers after a chunked body */
		return len;
	if (line[0] == '\0') {
		x->in_headers = false;
		return begin_body(x) ? len : 0;
	}
	if (strncasecmp(line, "content-length:", 15) == 0) {
		const char *p = line + 15;
		curl_off_t v;
		if (parse_off(&p, &v))
			x->length = v;
	} else if (strncasecmp(line, "content-range:", 14) == 0) {
		parse_content_range(line + 14, x);
	}
	return len;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
	xfer *x = ud;
	size_t len = size * nmemb;
	if (!x->to_file) {
		/* read and drop: libcurl only reports the Location of a transfer that
		 * completes; a long body of a redirect or error is cut */
		x->dropped += len;
		if (x->dropped > FETCH_MAX_DROPPED) {
			x->stop = XF_NOT_BODY;
			return 0; /* anything but len stops the transfer */
		}
		return len;
	}
	if ((curl_off_t)len > x->max - x->off) {
		x->stop = XF_OVERSIZE;
		return 0;
	}
	for (size_t done = 0; done < len;) {
		ssize_t w = pwrite(x->fd, data + done, len - done, (off_t)(x->off + (curl_off_t)done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			x->err = w < 0 ? errno : EIO;
			x->stop = XF_WRITE;
			return 0;
		}
		done += (size_t)w;
	}
	x->off += (curl_off_t)len;
	return len;
}

/* ------------------------------------------------------------------ */
/* one file                                                            */
/* ------------------------------------------------------------------ */

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
	int idx;                        /* into fetch_file_names */
	const char *name;
	const char *expect;             /* the checksum to match */
	char url[FETCH_URL_MAX];        /* base_url/NAME */
	char url_log[FETCH_URL_MAX];    /* the same, fit for a log message */
	char final[FETCH_PATH_MAX];     /* dir/NAME */
	char part[FETCH_PATH_MAX];      /* dir/NAME.part */
	int fd;                         /* the .part, locked; -1 when not open */
	bool spliced;                   /* the .part holds bytes of more than one response */
	char why[CURL_ERROR_SIZE + 128];/* what the last transient failure was */
} job;

typedef enum {
	R_DONE,       /* a whole body is in the .part */
	R_MORE,       /* a 206 brought part of the rest: ask again, no wait */
	R_TRANSIENT,  /* try again after a pause, resuming */
	R_RESTART,    /* cut the .part to 0 and try again after a pause */
	R_FAIL,       /* give up with *code */
} req_result;

/* True when dir holds the file under any name the loader accepts. */
static bool file_present(const fetcher *f, const job *j)
{
	char path[FETCH_PATH_MAX];
	struct stat st;
	if (stat(j->final, &st) == 0 || (errno != ENOENT && errno != ENOTDIR))
		return true;
	for (int k = 0; k < 3; k++) {
		snprintf(path, sizeof path, "%s/%s", f->dir, fetch_alt_names[j->idx][k]);
		if (stat(path, &st) == 0 || (errno != ENOENT && errno != ENOTDIR))
			return true;
	}
	return false;
}

/* Why a curl call failed, for j->why and the logs. */
static void note_curl_error(fetcher *f, job *j, CURLcode rc)
{
	snprintf(j->why, sizeof j->why, "%s%s%s", curl_easy_strerror(rc), f->errbuf[0] ? ": " : "",
		 f->errbuf);
}

/* A curl error that is not ours: retry, or give up for good. */
static req_result classify_curl_error(fetcher *f, job *j, CURLcode rc, int *code)
{
	note_curl_error(f, j, rc);
	switch (rc) {
	case CURLE_OUT_OF_MEMORY:
		log_error("%s: out of memory downloading %s", j->final, j->url_log);
		*code = EXIT_OSERR;
		return R_FAIL;
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
		log_error("%s: cannot download %s: %s (check data.url)", j->final, j->url_log, j->why);
		*code = EXIT_USAGE;
		return R_FAIL;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		log_error("%s: the TLS certificate of %s cannot be trusted: %s (fix the server or data.url)",
			  j->final, j->url_log, j->why);
		*code = EXIT_NOINPUT;
		return R_FAIL;
	default: /* refused, reset, timed out, cut short, DNS, TLS handshake: may pass */
		return R_TRANSIENT;
	}
}

/*
 * One attempt: GET j->url with a Range from the current size of the .part,
 * following allowed redirects. Returns what the caller should do next; on
 * R_FAIL *code is the exit code and the reason has been logged.
 */
static req_result attempt(fetcher *f, job *j, int *code)
{
	char url[FETCH_URL_MAX];
	snprintf(url, sizeof url, "%s", j->url);
	for (int hop = 0;; hop++) {
		double left_s = f->deadline - now_mono();
		if (left_s <= 0.001) {
			snprintf(j->why, sizeof j->why, "no time left (deadline)");
			return R_TRANSIENT;
		}
		off_t have = fd_size(j->fd);
		if (have < 0) {
			log_error("%s: fstat failed: %s", j->part, strerror(errno));
			*code = EXIT_IOERR;
			return R_FAIL;
		}
		xfer x = {.fd = j->fd, .max = (curl_off_t)f->o.max_bytes, .asked = (curl_off_t)have,
			  .off = (curl_off_t)have, .length = -1, .range_start = -1, .range_total = -1};
		char range[32];
		snprintf(range, sizeof range, "%lld-", (long long)have);
		curl_easy_setopt(f->h, CURLOPT_URL, url);
		curl_easy_setopt(f->h, CURLOPT_RANGE, have > 0 ? range : NULL);
		curl_easy_setopt(f->h, CURLOPT_TIMEOUT_MS, (long)(left_s * 1000.0));
		curl_easy_setopt(f->h, CURLOPT_HEADERDATA, &x);
		curl_easy_setopt(f->h, CURLOPT_WRITEDATA, &x);
		f->errbuf[0] = '\0';
		if (have > 0 && hop == 0)
			log_info("%s: resuming at byte %lld", j->url_log, (long long)have);
		CURLcode rc = curl_easy_perform(f->h);
		long status = 0;
		curl_easy_getinfo(f->h, CURLINFO_RESPONSE_CODE, &status);
		if (x.appended)
			j->spliced = true;
		if (x.restarted) {
			j->spliced = false;
			log_warn("%s: the server ignored the Range request (HTTP 200); downloading the whole file again",
				 j->url_log);
		}

		switch (x.stop) {
		case XF_OVERSIZE:
			log_error("%s: %s is larger than the %zu-byte limit; download stopped and removed "
				  "(is data.url right?)",
				  j->final, j->url_log, f->o.max_bytes);
			*code = EXIT_DATAERR;
			return R_FAIL;
		case XF_WRITE:
			log_error("%s: write failed: %s (is the volume full?)", j->part, strerror(x.err));
			*code = EXIT_IOERR;
			return R_FAIL;
		case XF_BAD_RANGE:
			snprintf(j->why, sizeof j->why, "HTTP 206 does not start at byte %lld as asked",
				 (long long)have);
			return R_RESTART;
		case XF_NOT_BODY:
		case XF_GOING:
			break;
		}
		if (rc != CURLE_OK && x.stop != XF_NOT_BODY)
			return classify_curl_error(f, j, rc, code);

		if (status == 200 || status == 206) {
			if (status == 206 && x.range_total >= 0 && x.off < x.range_total) {
				snprintf(j->why, sizeof j->why, "HTTP 206 ended at byte %lld of %lld",
					 (long long)x.off, (long long)x.range_total);
				return x.off > x.asked ? R_MORE : R_TRANSIENT;
			}
			return R_DONE;
		}
		if (status >= 300 && status < 400) {
			char *loc = NULL;
			char from_log[FETCH_URL_MAX], to_log[FETCH_URL_MAX];
			curl_easy_getinfo(f->h, CURLINFO_REDIRECT_URL, &loc);
			url_for_log(url, from_log, sizeof from_log);
			if (!loc) {
				log_error("%s: HTTP %ld from %s %s; check data.url", j->final, status, from_log,
					  x.stop == XF_NOT_BODY ? "with a body too long to read" : "without a Location");
				*code = EXIT_NOINPUT;
				return R_FAIL;
			}
			url_for_log(loc, to_log, sizeof to_log);
			if (hop >= FETCH_MAX_REDIRECTS) {
				log_error("%s: more than %d redirects starting at %s (last to %s); check data.url",
					  j->final, FETCH_MAX_REDIRECTS, j->url_log, to_log);
				*code = EXIT_NOINPUT;
				return R_FAIL;
			}
			if (!redirect_allowed(url, loc) || strlen(loc) >= sizeof url) {
				log_error("%s: refusing the redirect from %s to %s: only https:// or the same "
					  "scheme, host and port are followed; set data.url to the final location",
					  j->final, from_log, to_log);
				*code = EXIT_NOINPUT;
				return R_FAIL;
			}
			log_info("%s: redirected to %s", from_log, to_log);
			snprintf(url, sizeof url, "%s", loc);
			continue;
		}
		if (status == 416 && have > 0 && x.range_total == (curl_off_t)have)
			return R_DONE; /* the .part already has every byte: the checksum decides */
		if (status == 416) {
			snprintf(j->why, sizeof j->why, "HTTP 416 for a range from byte %lld", (long long)have);
			return R_RESTART;
		}
		if (status == 408 || status == 429 || status >= 500) {
			snprintf(j->why, sizeof j->why, "HTTP %ld", status);
			return R_TRANSIENT;
		}
		char url_log[FETCH_URL_MAX];
		url_for_log(url, url_log, sizeof url_log);
		log_error("%s: HTTP %ld for %s; check data.url", j->final, status, url_log);
		*code = EXIT_NOINPUT;
		return R_FAIL;
	}
}

/*
 * Bring the locked .part to the whole file (as the server sees it), retrying
 * transient failures with backoff; a failure that makes progress resets the
 * count. Returns 0 or an exit code (logged).
 */
static int download(fetcher *f, job *j)
{
	int failures = 0;
	long wait_ms = f->o.backoff_ms;
	for (;;) {
		off_t before = fd_size(j->fd);
		int code = 0;
		req_result r = attempt(f, j, &code);
		if (r == R_DONE)
			return 0;
		if (r == R_FAIL)
			return code;
		if (r == R_MORE)
			continue;
		off_t after = fd_size(j->fd);
		if (r == R_RESTART) {
			if (ftruncate(j->fd, 0) != 0) {
				log_error("%s: cannot truncate: %s", j->part, strerror(errno));
				return EXIT_IOERR;
			}
			j->spliced = false;
		} else if (after > before) {
			failures = 0;
			wait_ms = f->o.backoff_ms;
		}
		double left_s = f->deadline - now_mono();
		if (++failures > f->o.max_retries || left_s <= 0.001) {
			log_error("%s: cannot download %s: %s; gave up after %d attempts%s (%lld bytes kept in "
				  "%s; a later run resumes from there)",
				  j->final, j->url_log, j->why, failures,
				  left_s <= 0.001 ? " at the deadline" : "", (long long)(after > 0 ? after : 0),
				  j->part);
			return EXIT_IOERR;
		}
		long ms = wait_ms < (long)(left_s * 1000.0) ? wait_ms : (long)(left_s * 1000.0);
		log_warn("%s: %s; retry %d of %d in %.1f s%s", j->url_log, j->why, failures,
			 f->o.max_retries, (double)ms / 1000.0,
			 r == R_RESTART ? ", from the start" : (after > 0 ? ", resuming" : ""));
		sleep_ms(ms);
		wait_ms = wait_ms > f->o.backoff_max_ms / 2 ? f->o.backoff_max_ms : wait_ms * 2;
	}
}

/*
 * Open dir/NAME.part and take its write lock, waiting while another process
 * (another node on a shared volume) holds it. Returns 0 with j->fd locked, 1
 * when the file appeared under its final name meanwhile, or an exit code.
 */
static int lock_part(fetcher *f, job *j)
{
	bool told = false;
	for (;;) {
		if (file_present(f, j))
			return 1;
		int fd = open(j->part, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
		if (fd < 0) {
			log_error("%s: cannot create: %s (check data.dir and the volume)", j->part,
				  strerror(errno));
			return EXIT_IOERR;
		}
		struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
		while (fcntl(fd, F_SETLK, &fl) != 0) {
			if (errno == EINTR)
				continue;
			if (errno != EACCES && errno != EAGAIN) {
				log_warn("%s: cannot lock it (%s); downloading without protection against "
					 "other nodes doing the same",
					 j->part, strerror(errno));
				break;
			}
			if (!told) {
				struct flock who = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
				long pid = fcntl(fd, F_GETLK, &who) == 0 ? (long)who.l_pid : -1;
				log_info("%s: another process (pid %ld, maybe on another node) is downloading "
					 "it; waiting",
					 j->part, pid);
				told = true;
			}
			if (now_mono() >= f->deadline) {
				log_error("%s: still locked by another download at the deadline; giving up",
					  j->part);
				close(fd);
				return EXIT_IOERR;
			}
			sleep_ms(f->o.lock_poll_ms);
			if (file_present(f, j)) {
				close(fd);
				return 1;
			}
			fl = (struct flock){.l_type = F_WRLCK, .l_whence = SEEK_SET};
		}
		/* Is the file we locked still dir/NAME.part? (the other process may
		 * have renamed it into place or removed it while we waited) */
		struct stat a, b;
		if (fstat(fd, &a) == 0 && stat(j->part, &b) == 0 && a.st_dev == b.st_dev &&
		    a.st_ino == b.st_ino) {
			if (file_present(f, j)) {
				if (a.st_size == 0)
					unlink(j->part); /* the empty one we just made */
				close(fd);
				return 1;
			}
			j->fd = fd;
			return 0;
		}
		close(fd);
	}
}

/* Remove dir/NAME.part if it still is the file we hold locked (once removed,
 * another process may already have made a new one). */
static void remove_part(job *j)
{
	struct stat a, b;
	if (fstat(j->fd, &a) != 0 || stat(j->part, &b) != 0 || a.st_dev != b.st_dev ||
	    a.st_ino != b.st_ino)
		return;
	if (unlink(j->part) != 0)
		log_warn("%s: cannot remove it: %s", j->part, strerror(errno));
}

/* fsync the .part, rename it to the final name, fsync dir. */
static int install(fetcher *f, job *j)
{
	if (fsync(j->fd) != 0) {
		log_error("%s: fsync failed: %s", j->part, strerror(errno));
		return EXIT_IOERR;
	}
	if (rename(j->part, j->final) != 0) {
		log_error("%s: cannot rename to %s: %s", j->part, j->final, strerror(errno));
		return EXIT_IOERR;
	}
	return sync_dir(f->dir);
}

/* Download, verify and install one missing file. */
static int fetch_one(fetcher *f, job *j)
{
	int rc = lock_part(f, j);
	if (rc == 1) {
		log_info("%s: put in place by another process", j->final);
		return 0;
	}
	if (rc)
		return rc;

	char got[65] = "";
	double t0 = now_mono();
	bool fresh_retry = false;
	off_t have = fd_size(j->fd);
	/* A whole file left by a run stopped between download and rename. */
	if (have > 0 && (size_t)have <= f->o.max_bytes) {
		rc = sha256_fd(j->fd, j->part, got);
		if (rc)
			goto close_part;
		if (strcasecmp(got, j->expect) == 0) {
			log_info("%s: complete and verified; putting it in place", j->part);
			goto install_part;
		}
		j->spliced = true; /* whatever we add will follow older bytes */
	}
	log_info("downloading %s to %s", j->url_log, j->part);
	for (;;) {
		rc = download(f, j);
		if (rc == EXIT_DATAERR)
			goto remove_part;
		if (rc)
			goto close_part;
		rc = sha256_fd(j->fd, j->part, got);
		if (rc)
			goto close_part;
		if (strcasecmp(got, j->expect) == 0)
			break;
		if (j->spliced && !fresh_retry) {
			/* resumed bytes may come from another version of the file: once more from 0 */
			log_warn("%s: SHA-256 of the resumed download does not match; downloading it again "
				 "from the start",
				 j->part);
			if (ftruncate(j->fd, 0) != 0) {
				log_error("%s: cannot truncate: %s", j->part, strerror(errno));
				rc = EXIT_IOERR;
				goto close_part;
			}
			j->spliced = false;
			fresh_retry = true;
			continue;
		}
		log_error("%s: SHA-256 mismatch for %s from %s: expected %s (%s), got %s; the download "
			  "was removed (check data.url and %s)",
			  j->final, j->name, j->url_log, j->expect, fetch_sha256_keys[j->idx], got,
			  fetch_sha256_keys[j->idx]);
		rc = EXIT_DATAERR;
		goto remove_part;
	}
	double dt = now_mono() - t0;
	have = fd_size(j->fd);
	log_info("%s: %lld bytes in %.1f s (%.3g MB/s), SHA-256 verified", j->final, (long long)have,
		 dt, dt > 0 ? (double)have / dt / 1e6 : 0.0);
install_part:
	rc = install(f, j);
	goto close_part;
remove_part:
	remove_part(j);
close_part:
	if (rc && fd_size(j->fd) == 0)
		remove_part(j); /* nothing to resume from: leave no trace */
	close(j->fd); /* releases the lock */
	j->fd = -1;
	return rc;
}

/* ------------------------------------------------------------------ */
/* entry                                                               */
/* ------------------------------------------------------------------ */

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init_rc = CURLE_FAILED_INIT; /* written once under g_curl_once */

static void curl_init_once(void)
{
	g_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Check base_url: http(s)://host[:port][/path], no query or fragment. */
static int check_base_url(const char *base_url)
{
	url_origin o;
	if (strpbrk(base_url, "?# \t\r\n") || !parse_origin(base_url, &o) ||
	    (strcmp(o.scheme, "http") != 0 && strcmp(o.scheme, "https") != 0)) {
		char shown[FETCH_URL_MAX];
		url_for_log(base_url, shown, sizeof shown);
		log_error("data.url must be an http:// or https:// URL of the folder holding the IDX "
			  "files, without ? or #: %s",
			  shown);
		return EXIT_USAGE;
	}
	return 0;
}

static int setup_handle(fetcher *f)
{
	pthread_once(&g_curl_once, curl_init_once);
	if (g_curl_init_rc != CURLE_OK) {
		log_error("fetch: curl_global_init failed: %s", curl_easy_strerror(g_curl_init_rc));
		return EXIT_OSERR;
	}
	f->h = curl_easy_init();
	if (!f->h) {
		log_error("fetch: cannot create a curl handle (out of memory?)");
		return EXIT_OSERR;
	}
	CURL *h = f->h;
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, f->o.connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, f->o.low_speed_bytes);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, f->o.low_speed_time_s);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	/* a proxy's "200 Connection established" must not look like our 200 */
	curl_easy_setopt(h, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "spottrain/" SPOTTRAIN_VERSION);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, f->errbuf);
	return 0;
}

int fetch_dataset_opts(const char *dir, const char *base_url, const char sha256[4][65],
		       const fetch_options *opts)
{
	if (!dir || !*dir || !sha256 || !opts) {
		log_error("fetch_dataset: bad arguments");
		return EXIT_USAGE;
	}
	if (!base_url || !*base_url)
		return 0;
	fetcher f = {.o = *opts, .dir = dir, .deadline = now_mono() + opts->deadline_s};
	if (f.o.max_bytes == 0)
		f.o.max_bytes = FETCH_DEFAULT_MAX_BYTES;
	if (f.o.lock_poll_ms <= 0)
		f.o.lock_poll_ms = 200;
	job *js = calloc(FETCH_NFILES, sizeof *js); /* big (paths, URLs): not on the stack */
	if (!js) {
		log_error("fetch_dataset: out of memory");
		return EXIT_OSERR;
	}

	/* Which files are missing, and can each be verified? */
	int rc = 0, missing = 0;
	size_t base_len = strlen(base_url);
	while (base_len > 0 && base_url[base_len - 1] == '/')
		base_len--;
	for (int i = 0; i < FETCH_NFILES; i++) {
		job *j = &js[i];
		j->idx = i;
		j->name = fetch_file_names[i];
		j->expect = sha256[i];
		j->fd = -1;
		int a = snprintf(j->final, sizeof j->final, "%s/%s", dir, j->name);
		int b = snprintf(j->part, sizeof j->part, "%s/%s.part", dir, j->name);
		int c = snprintf(j->url, sizeof j->url, "%.*s/%s", (int)base_len, base_url, j->name);
		if (a < 0 || b < 0 || c < 0 || (size_t)a >= sizeof j->final ||
		    (size_t)b >= sizeof j->part || (size_t)c >= sizeof j->url) {
			log_error("%s: data.dir or data.url too long", dir);
			rc = EXIT_USAGE;
			goto free_jobs;
		}
		if (file_present(&f, j))
			continue;
		missing++;
		url_for_log(j->url, j->url_log, sizeof j->url_log);
		if (!j->expect[0]) {
			log_error("%s is missing and %s is empty: refusing to download %s without a checksum; "
				  "set %s to its SHA-256 (sha256sum %s)",
				  j->final, fetch_sha256_keys[i], j->url_log, fetch_sha256_keys[i], j->name);
			rc = EXIT_USAGE;
		} else if (!is_sha256_hex(j->expect)) {
			log_error("%s must be 64 hexadecimal digits (a SHA-256), not \"%s\"",
				  fetch_sha256_keys[i], j->expect);
			rc = EXIT_USAGE;
		}
	}
	if (rc || missing == 0)
		goto free_jobs;
	if ((rc = check_base_url(base_url)) || (rc = make_dirs(dir)) || (rc = setup_handle(&f)))
		goto free_jobs;

	for (int i = 0; i < FETCH_NFILES && !rc; i++)
		if (!file_present(&f, &js[i]))
			rc = fetch_one(&f, &js[i]);
	curl_easy_cleanup(f.h);
free_jobs:
	free(js);
	return rc;
}

int fetch_dataset(const char *dir, const char *base_url, const char sha256[4][65], size_t max_bytes)
{
	fetch_options o;
	fetch_options_default(&o);
	o.max_bytes = max_bytes;
	return fetch_dataset_opts(dir, base_url, sha256, &o);
}
