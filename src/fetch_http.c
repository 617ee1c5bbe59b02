/*
 * fetch_http.c - one file's transfer for the dataset download: a GET of the
 * .part's missing bytes through libcurl, written with pwrite into the locked
 * .part, retried with backoff.
 *
 * Why the request is built this way:
 *  - The Range header is set with CURLOPT_RANGE, not CURLOPT_RESUME_FROM_LARGE:
 *    with RESUME_FROM libcurl itself turns a 200 that ignores the range into
 *    CURLE_RANGE_ERROR, and a 200 whose length equals the offset into a silent
 *    success with no body. Here the header callback decides at the end of the
 *    headers: 206 starting at our offset appends, 200 cuts the .part to 0 and
 *    takes the whole body, anything else writes nothing.
 *  - Redirects are followed by hand (CURLINFO_REDIRECT_URL), at most
 *    FETCH_MAX_REDIRECTS, and only where fetch_redirect_allowed says so
 *    (fetch_url.c).
 *  - The body of a response that is not 200/206 never reaches the file; up
 *    to FETCH_MAX_DROPPED bytes of it are read and dropped (libcurl only
 *    reports the Location of a transfer that completes), beyond that the
 *    transfer is cut.
 */
#include "fetch_internal.h"

#include "contract.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define FETCH_MAX_REDIRECTS 5
#define FETCH_MAX_DROPPED (64u << 10) /* longest body of a redirect or error read */

_Static_assert(sizeof(curl_off_t) == sizeof(int64_t), "curl_off_t is 64-bit");

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

typedef enum {
	R_DONE,       /* a whole body is in the .part */
	R_MORE,       /* a 206 brought part of the rest: ask again, no wait */
	R_TRANSIENT,  /* try again after a pause, resuming */
	R_RESTART,    /* cut the .part to 0 and try again after a pause */
	R_FAIL,       /* give up with *code */
} req_result;

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
/* ------------------------------------------------------------------ */
/* one attempt                                                         */
/* ------------------------------------------------------------------ */

/*
 * One request of url for the bytes from x->asked on, with at most left_s
 * seconds to go. Returns curl's result with *status the response's code; the
 * callbacks fill x, and j->spliced follows what the response did to the .part.
 */
static CURLcode request(fetcher *f, job *j, const char *url, xfer *x, double left_s, int hop,
			long *status)
{
	curl_off_t have = x->asked;
	char range[32];
	snprintf(range, sizeof range, "%lld-", (long long)have);
	curl_easy_setopt(f->h, CURLOPT_URL, url);
	curl_easy_setopt(f->h, CURLOPT_RANGE, have > 0 ? range : NULL);
	curl_easy_setopt(f->h, CURLOPT_TIMEOUT_MS, (long)(left_s * 1000.0));
	curl_easy_setopt(f->h, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(f->h, CURLOPT_WRITEDATA, x);
	f->errbuf[0] = '\0';
	if (have > 0 && hop == 0)
		log_info("%s: resuming at byte %lld", j->url_log, (long long)have);
	CURLcode rc = curl_easy_perform(f->h);
	*status = 0;
	curl_easy_getinfo(f->h, CURLINFO_RESPONSE_CODE, status);
	if (x->appended)
		j->spliced = true;
	if (x->restarted) {
		j->spliced = false;
		log_warn("%s: the server ignored the Range request (HTTP 200); downloading the whole file again",
			 j->url_log);
	}
	return rc;
}

/*
 * What a callback's stop means. Returns true with *r (and *code for R_FAIL,
 * logged) when the attempt ends here; false when the response decides.
 */
static bool stopped(fetcher *f, job *j, const xfer *x, req_result *r, int *code)
{
	switch (x->stop) {
	case XF_OVERSIZE:
		log_error("%s: %s is larger than the %zu-byte limit; download stopped and removed "
			  "(is data.url right?)",
			  j->final, j->url_log, f->o.max_bytes);
		*code = EXIT_DATAERR;
		*r = R_FAIL;
		return true;
	case XF_WRITE:
		log_error("%s: write failed: %s (is the volume full?)", j->part, strerror(x->err));
		*code = EXIT_IOERR;
		*r = R_FAIL;
		return true;
	case XF_BAD_RANGE:
		snprintf(j->why, sizeof j->why, "HTTP 206 does not start at byte %lld as asked",
			 (long long)x->asked);
		*r = R_RESTART;
		return true;
	case XF_NOT_BODY:
	case XF_GOING:
		break;
	}
	return false;
}

/*
 * A 3xx from url: put the Location in url when it may be followed (true),
 * else log why not and set *code (false).
 */
static bool follow_redirect(fetcher *f, job *j, char url[FETCH_URL_MAX], int hop, long status,
			    const xfer *x, int *code)
{
	char *loc = NULL;
	char from_log[FETCH_URL_MAX], to_log[FETCH_URL_MAX];
	curl_easy_getinfo(f->h, CURLINFO_REDIRECT_URL, &loc);
	fetch_url_for_log(url, from_log, sizeof from_log);
	if (!loc) {
		log_error("%s: HTTP %ld from %s %s; check data.url", j->final, status, from_log,
			  x->stop == XF_NOT_BODY ? "with a body too long to read" : "without a Location");
		*code = EXIT_NOINPUT;
		return false;
	}
	fetch_url_for_log(loc, to_log, sizeof to_log);
	if (hop >= FETCH_MAX_REDIRECTS) {
		log_error("%s: more than %d redirects starting at %s (last to %s); check data.url",
			  j->final, FETCH_MAX_REDIRECTS, j->url_log, to_log);
		*code = EXIT_NOINPUT;
		return false;
	}
	if (!fetch_redirect_allowed(url, loc) || strlen(loc) >= FETCH_URL_MAX) {
		log_error("%s: refusing the redirect from %s to %s: only https:// or the same "
			  "scheme, host and port are followed; set data.url to the final location",
			  j->final, from_log, to_log);
		*code = EXIT_NOINPUT;
		return false;
	}
	log_info("%s: redirected to %s", from_log, to_log);
	snprintf(url, FETCH_URL_MAX, "%s", loc);
	return true;
}

/* What a complete response other than a redirect means for the .part. */
static req_result judge_status(job *j, const char *url, long status, const xfer *x, int *code)
{
	curl_off_t have = x->asked;
	if (status == 200 || status == 206) {
		if (status == 206 && x->range_total >= 0 && x->off < x->range_total) {
			snprintf(j->why, sizeof j->why, "HTTP 206 ended at byte %lld of %lld",
				 (long long)x->off, (long long)x->range_total);
			return x->off > x->asked ? R_MORE : R_TRANSIENT;
		}
		return R_DONE;
	}
	if (status == 416 && have > 0 && x->range_total == have)
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
	fetch_url_for_log(url, url_log, sizeof url_log);
	log_error("%s: HTTP %ld for %s; check data.url", j->final, status, url_log);
	*code = EXIT_NOINPUT;
	return R_FAIL;
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
		off_t have = fetch_fd_size(j->fd);
		if (have < 0) {
			log_error("%s: fstat failed: %s", j->part, strerror(errno));
			*code = EXIT_IOERR;
			return R_FAIL;
		}
		xfer x = {.fd = j->fd, .max = (curl_off_t)f->o.max_bytes, .asked = (curl_off_t)have,
			  .off = (curl_off_t)have, .length = -1, .range_start = -1, .range_total = -1};
		long status;
		CURLcode rc = request(f, j, url, &x, left_s, hop, &status);
		req_result r;
		if (stopped(f, j, &x, &r, code))
			return r;
		if (rc != CURLE_OK && x.stop != XF_NOT_BODY)
			return classify_curl_error(f, j, rc, code);
		if (status < 300 || status >= 400)
			return judge_status(j, url, status, &x, code);
		if (!follow_redirect(f, j, url, hop, status, &x, code))
			return R_FAIL;
	}
}


/* ------------------------------------------------------------------ */
/* one file, the handle                                                */
/* ------------------------------------------------------------------ */

int fetch_download(fetcher *f, job *j)
{
	int failures = 0;
	long wait_ms = f->o.backoff_ms;
	for (;;) {
		off_t before = fetch_fd_size(j->fd);
		int code = 0;
		req_result r = attempt(f, j, &code);
		if (r == R_DONE)
			return 0;
		if (r == R_FAIL)
			return code;
		if (r == R_MORE)
			continue;
		off_t after = fetch_fd_size(j->fd);
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
		fetch_sleep_ms(ms);
		wait_ms = wait_ms > f->o.backoff_max_ms / 2 ? f->o.backoff_max_ms : wait_ms * 2;
	}
}

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init_rc = CURLE_FAILED_INIT; /* written once under g_curl_once */

static void curl_init_once(void)
{
	g_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int fetch_setup_handle(fetcher *f)
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
