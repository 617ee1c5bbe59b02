/*
 * spot_http.c - the HTTP helper every provider protocol uses (libcurl), and
 * the rate-limited warnings about what the metadata service answered.
 *
 * On the watcher thread a request runs through the watcher's curl multi
 * handle, so that spot_watcher_stop can wake it (curl_multi_wakeup) in the
 * middle of a hanging request. No failure of the metadata service (refused
 * connections, timeouts, 5xx, redirects, garbage, oversize bodies) ever
 * produces an event: only a well-formed notice does. Failures are logged at
 * most once per SPOT_WARN_INTERVAL_S per kind.
 *
 * curl_global_init is not thread-safe unless libcurl reports
 * CURL_VERSION_THREADSAFE (7.84 and later built with it). It is called once,
 * from spot_watcher_start through pthread_once; that protects callers inside
 * this module only. Call spot_watcher_start from the main thread before any
 * other thread may use libcurl (the dataset fetch, which must also call
 * curl_global_init, does so before training starts). curl_global_cleanup is
 * never called: the process exit reclaims everything.
 */
#include "spot_internal.h"

#include "contract.h"
#include "log.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ */
/* libcurl: global init, the HTTP helper                               */
/* ------------------------------------------------------------------ */

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init_rc = CURLE_FAILED_INIT; /* written once under g_curl_once */

static void curl_init_once(void)
{
	g_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

CURLcode spot_curl_global_init(void)
{
	pthread_once(&g_curl_once, curl_init_once);
	return g_curl_init_rc;
}

static size_t http_write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
	spot_http_resp *r = ud;
	size_t add = size * nmemb;
	if (add > r->max - r->len) {
		r->oversize = true;
		return 0; /* anything but `add` aborts the transfer */
	}
	if (r->len + add + 1 > r->cap) {
		size_t cap = r->cap ? r->cap : 1024;
		while (cap < r->len + add + 1)
			cap *= 2;
		if (cap > r->max + 1)
			cap = r->max + 1;
		char *nb = realloc(r->body, cap);
		if (!nb)
			return 0;
		r->body = nb;
		r->cap = cap;
	}
	memcpy(r->body + r->len, data, add);
	r->len += add;
	r->body[r->len] = '\0';
	return add;
}

/* Header value of `line` if its name is `name` (case-insensitive), trimmed into out. */
static bool header_value(const char *line, size_t len, const char *name, char *out, size_t n)
{
	size_t nl = strlen(name);
	if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return false;
	const char *v = line + nl + 1;
	const char *end = line + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && isspace((unsigned char)end[-1]))
		end--;
	size_t vl = (size_t)(end - v);
	if (vl >= n) {
		out[0] = '\0'; /* too long to be what we expect: treat as absent */
		return true;
	}
	memcpy(out, v, vl);
	out[vl] = '\0';
	return true;
}

static size_t http_header_cb(char *data, size_t size, size_t nmemb, void *ud)
{
	spot_http_resp *r = ud;
	size_t len = size * nmemb;
	char val[SPOT_ETAG_MAX];
	if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
		/* a new response (e.g. after 100 Continue): forget earlier headers */
		r->etag[0] = '\0';
		r->flavor_google = false;
	} else if (header_value(data, len, "ETag", val, sizeof val)) {
		spot_strlcpy(r->etag, sizeof r->etag, val);
	} else if (header_value(data, len, "Metadata-Flavor", val, sizeof val)) {
		r->flavor_google = strcmp(val, "Google") == 0;
	}
	return len;
}

static int http_xferinfo_cb(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	(void)dt, (void)dn, (void)ut, (void)un;
	spot_watcher *w = ud;
	return atomic_load(&w->abort) ? 1 : 0;
}

static spot_http_result classify(CURLcode cc, const spot_http_resp *r, bool aborted)
{
	if (aborted || cc == CURLE_ABORTED_BY_CALLBACK)
		return SPOT_HTTP_ABORTED;
	if (r->oversize || cc == CURLE_FILESIZE_EXCEEDED)
		return SPOT_HTTP_OVERSIZE;
	switch (cc) {
	case CURLE_OK: return SPOT_HTTP_OK;
	case CURLE_COULDNT_CONNECT:
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR: return SPOT_HTTP_CONNECT;
	case CURLE_OPERATION_TIMEDOUT: return SPOT_HTTP_TIMEOUT;
	default: return SPOT_HTTP_ERROR;
	}
}

/* Drive h through w->multi until done or w->abort. Returns curl's result. */
static CURLcode perform_multi(spot_watcher *w, CURL *h, bool *aborted, char *err, size_t errn)
{
	CURLcode cc = CURLE_OK;
	bool done = false;
	CURLMcode mc = curl_multi_add_handle(w->multi, h);
	if (mc != CURLM_OK) {
		snprintf(err, errn, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
		return CURLE_FAILED_INIT;
	}
	while (!done) {
		if (atomic_load(&w->abort)) {
			*aborted = true;
			break;
		}
		int running = 0;
		mc = curl_multi_perform(w->multi, &running);
		if (mc != CURLM_OK) {
			snprintf(err, errn, "curl_multi_perform: %s", curl_multi_strerror(mc));
			cc = CURLE_FAILED_INIT;
			break;
		}
		CURLMsg *m;
		int left;
		while ((m = curl_multi_info_read(w->multi, &left)) != NULL) {
			if (m->msg == CURLMSG_DONE && m->easy_handle == h) {
				cc = m->data.result;
				done = true;
			}
		}
		if (done)
			break;
		if (running == 0) {
			snprintf(err, errn, "transfer ended without a result");
			cc = CURLE_FAILED_INIT;
			break;
		}
		mc = curl_multi_poll(w->multi, NULL, 0, 1000, NULL);
		if (mc != CURLM_OK) {
			snprintf(err, errn, "curl_multi_poll: %s", curl_multi_strerror(mc));
			cc = CURLE_FAILED_INIT;
			break;
		}
	}
	curl_multi_remove_handle(w->multi, h);
	return cc;
}
/*
 * The request headers plus "Expect:" (never wait for a 100 Continue) as a curl
 * list in *out. Returns false with r->error set when out of memory.
 */
static bool header_list(const char *const *headers, struct curl_slist **out, spot_http_resp *r)
{
	struct curl_slist *list = NULL;
	for (size_t i = 0; headers && headers[i]; i++) {
		struct curl_slist *nl = curl_slist_append(list, headers[i]);
		if (!nl) {
			curl_slist_free_all(list);
			snprintf(r->error, sizeof r->error, "out of memory");
			return false;
		}
		list = nl;
	}
	struct curl_slist *nl = curl_slist_append(list, "Expect:");
	if (nl)
		list = nl;
	*out = list;
	return true;
}

/*
 * Reset h (keeping its live connection) and set every option of one request:
 * no redirects, no proxy, the body capped at max_response, w->abort honoured.
 */
static void set_options(spot_watcher *w, CURL *h, const char *url, const char *method,
			const char *body, long total_ms, struct curl_slist *list, spot_http_resp *r)
{
	curl_easy_reset(h); /* keeps the live connection */
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)w->cfg.connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, total_ms);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_MAXREDIRS, 0L);
	curl_easy_setopt(h, CURLOPT_PROXY, "");
	curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_USERAGENT, "spottrain/" SPOTTRAIN_VERSION);
	curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)w->cfg.max_response);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, http_write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, http_header_cb);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, http_xferinfo_cb);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, w);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->error);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
	if (strcmp(method, "POST") == 0) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)(body ? strlen(body) : 0));
	} else if (strcmp(method, "GET") != 0) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	}
}

/* After the transfer: r->result and r->status set, r->body a string ("" when none). */
static void finish(CURL *h, CURLcode cc, bool aborted, spot_http_resp *r)
{
	if (!r->error[0] && cc != CURLE_OK)
		spot_strlcpy(r->error, sizeof r->error, curl_easy_strerror(cc));
	r->result = classify(cc, r, aborted);
	if (r->result == SPOT_HTTP_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
	if (!r->body) {
		r->body = calloc(1, 1);
		if (!r->body && r->result == SPOT_HTTP_OK) {
			snprintf(r->error, sizeof r->error, "out of memory");
			r->result = SPOT_HTTP_ERROR;
		}
		r->len = 0;
	}
}

spot_http_result spot_http(spot_watcher *w, CURL *h, const char *method, const char *path,
			   const char *const *headers, const char *body, long total_ms,
			   spot_http_resp *r)
{
	memset(r, 0, sizeof *r);
	r->max = w->cfg.max_response;
	char url[SPOT_URL_MAX];
	if (snprintf(url, sizeof url, "%s%s", w->cfg.metadata_url, path) >= (int)sizeof url) {
		snprintf(r->error, sizeof r->error, "URL longer than %d bytes", SPOT_URL_MAX - 1);
		return r->result = SPOT_HTTP_ERROR;
	}
	struct curl_slist *list;
	if (!header_list(headers, &list, r))
		return r->result = SPOT_HTTP_ERROR;
	set_options(w, h, url, method, body, total_ms, list, r);

	bool aborted = false;
	CURLcode cc;
	if (h == w->easy)
		cc = perform_multi(w, h, &aborted, r->error, sizeof r->error);
	else
		cc = curl_easy_perform(h);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(list);
	finish(h, cc, aborted, r);
	return r->result;
}

void spot_http_resp_free(spot_http_resp *r)
{
	free(r->body);
	r->body = NULL;
	r->len = r->cap = 0;
}

bool spot_body_is(const spot_http_resp *r, const char *word)
{
	if (!r->body || memchr(r->body, '\0', r->len))
		return false;
	const char *b = r->body, *e = r->body + r->len;
	while (b < e && isspace((unsigned char)*b))
		b++;
	while (e > b && isspace((unsigned char)e[-1]))
		e--;
	size_t wl = strlen(word);
	return (size_t)(e - b) == wl && memcmp(b, word, wl) == 0;
}

/* ------------------------------------------------------------------ */
/* warnings                                                            */
/* ------------------------------------------------------------------ */

void spot_warn(spot_watcher *w, spot_warn_kind kind, const char *fmt, ...)
{
	if ((int)kind < 0 || kind >= SPOT_WARN_KINDS)
		kind = SPOT_WARN_OTHER;
	double now = now_mono();
	if (w->warn_last[kind] != 0.0 && now - w->warn_last[kind] < SPOT_WARN_INTERVAL_S) {
		w->warn_dropped[kind]++;
		return;
	}
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (w->warn_dropped[kind])
		log_warn("spot watcher (%s, node %s): %s (%u similar warnings suppressed; "
			 "next in %.0f s at the earliest)", w->ops->name, w->cfg.node, msg,
			 w->warn_dropped[kind], SPOT_WARN_INTERVAL_S);
	else
		log_warn("spot watcher (%s, node %s): %s (similar warnings suppressed for %.0f s)",
			 w->ops->name, w->cfg.node, msg, SPOT_WARN_INTERVAL_S);
	w->warn_last[kind] = now;
	w->warn_dropped[kind] = 0;
}

spot_warn_kind spot_http_describe(const spot_watcher *w, const spot_http_resp *r, char *buf,
				  size_t n)
{
	switch (r->result) {
	case SPOT_HTTP_ABORTED:
		snprintf(buf, n, "interrupted by the watcher's stop");
		return SPOT_WARN_OTHER;
	case SPOT_HTTP_CONNECT:
		snprintf(buf, n, "no answer from the metadata service (%s)", r->error);
		return SPOT_WARN_CONNECT;
	case SPOT_HTTP_TIMEOUT:
		snprintf(buf, n, "timed out (%s)", r->error);
		return SPOT_WARN_TIMEOUT;
	case SPOT_HTTP_OVERSIZE:
		snprintf(buf, n, "response larger than spot max_response (%zu bytes), rejected",
			 w->cfg.max_response);
		return SPOT_WARN_OVERSIZE;
	case SPOT_HTTP_ERROR:
		snprintf(buf, n, "transfer failed (%s)", r->error);
		return SPOT_WARN_OTHER;
	case SPOT_HTTP_OK:
		break;
	}
	if (r->status >= 300 && r->status < 400) {
		snprintf(buf, n, "answered HTTP %ld (redirect), not followed", r->status);
		return SPOT_WARN_REDIRECT;
	}
	snprintf(buf, n, "unexpected HTTP status %ld", r->status);
	return SPOT_WARN_STATUS;
}

void spot_http_warn(spot_watcher *w, const char *what, const spot_http_resp *r)
{
	if (r->result == SPOT_HTTP_ABORTED)
		return;
	char why[CURL_ERROR_SIZE + 128];
	spot_warn_kind kind = spot_http_describe(w, r, why, sizeof why);
	spot_warn(w, kind, "%s on %s: %s; no interruption is assumed, the watcher keeps polling",
		  what, w->cfg.metadata_url, why);
}
