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
 *    takes the whole body, anything else writes nothing (fetch_response.c).
 *  - Redirects are followed by hand (CURLINFO_REDIRECT_URL), at most
 *    FETCH_MAX_REDIRECTS, and only where fetch_redirect_allowed says so
 *    (fetch_url.c).
 *  - The body of a response that is not 200/206 never reaches the file
 *    (fetch_response.c reads a little of it and drops it).
 */
#include "fetch_internal.h"

#include "contract.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define FETCH_MAX_REDIRECTS 5

/* What one attempt asks of the caller. */
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
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, fetch_header_cb);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, fetch_write_cb);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, f->errbuf);
	return 0;
}
