/*
 * spot.c - interruption notices: configuration, provider detection from DMI,
 * the watcher thread and the shared HTTP helper (libcurl). The process signals
 * live in signals.c.
 * The provider protocols live in spot_aws.c, spot_gcp.c and spot_azure.c.
 *
 * The watcher thread owns one curl easy handle driven through a curl multi
 * handle, so that spot_watcher_stop can wake it (curl_multi_wakeup) in the
 * middle of a hanging request; the training thread only takes a mutex to copy
 * a queued event. No failure of the metadata service (refused connections,
 * timeouts, 5xx, redirects, garbage, oversize bodies) ever produces an event:
 * only a well-formed notice does. Failures are logged at most once per
 * SPOT_WARN_INTERVAL_S per kind.
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
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_METADATA_URL "http://169.254.169.254"
#define DEFAULT_DMI_DIR "/sys/class/dmi/id"
#define AZURE_CHASSIS_ASSET_TAG "7783-7084-3265-9085-8269-3286-77"

/* ------------------------------------------------------------------ */
/* configuration and provider names                                    */
/* ------------------------------------------------------------------ */

void spot_strlcpy(char *dst, size_t n, const char *src)
{
	size_t len = src ? strnlen(src, n - 1) : 0;
	if (len)
		memcpy(dst, src, len);
	dst[len] = '\0';
}

/* Host name up to the first '.', or "" when it cannot be read. */
static void short_hostname(char *buf, size_t n)
{
	char host[256];
	if (gethostname(host, sizeof host) != 0) {
		buf[0] = '\0';
		return;
	}
	host[sizeof host - 1] = '\0';
	host[strcspn(host, ".")] = '\0';
	spot_strlcpy(buf, n, host);
}

void spot_config_defaults(spot_config *c)
{
	memset(c, 0, sizeof *c);
	c->provider = SPOT_PROVIDER_AUTO;
	spot_strlcpy(c->metadata_url, sizeof c->metadata_url, DEFAULT_METADATA_URL);
	c->poll_ms = 1000;
	c->connect_timeout_ms = 500;
	c->timeout_ms = 2000;
	c->max_response = 65536;
	spot_strlcpy(c->dmi_dir, sizeof c->dmi_dir, DEFAULT_DMI_DIR);
	short_hostname(c->vm_name, sizeof c->vm_name);
	const char *sim = getenv("SIM_NODE");
	if (sim && sim[0])
		spot_strlcpy(c->node, sizeof c->node, sim);
	else
		spot_strlcpy(c->node, sizeof c->node, c->vm_name);
}

const char *spot_provider_name(spot_provider p)
{
	switch (p) {
	case SPOT_PROVIDER_NONE: return "none";
	case SPOT_PROVIDER_AUTO: return "auto";
	case SPOT_PROVIDER_AWS: return "aws";
	case SPOT_PROVIDER_GCP: return "gcp";
	case SPOT_PROVIDER_AZURE: return "azure";
	}
	return "unknown";
}

int spot_provider_parse(const char *s)
{
	static const struct {
		const char *name;
		spot_provider p;
	} names[] = {
		{"none", SPOT_PROVIDER_NONE}, {"auto", SPOT_PROVIDER_AUTO},
		{"aws", SPOT_PROVIDER_AWS},   {"gcp", SPOT_PROVIDER_GCP},
		{"azure", SPOT_PROVIDER_AZURE},
	};
	if (!s)
		return -1;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strcasecmp(s, names[i].name) == 0)
			return (int)names[i].p;
	return -1;
}

/* ------------------------------------------------------------------ */
/* DMI detection                                                       */
/* ------------------------------------------------------------------ */

/*
 * Read dir/name into buf, trimmed of surrounding whitespace. Returns 0, or
 * the errno of the failure (ENOENT, EACCES, ...), buf then "".
 */
static int dmi_read(const char *dir, const char *name, char *buf, size_t n)
{
	char path[512];
	buf[0] = '\0';
	if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
		return ENAMETOOLONG;
	FILE *f = fopen(path, "r");
	if (!f)
		return errno ? errno : EIO;
	size_t got = fread(buf, 1, n - 1, f);
	int err = ferror(f) ? EIO : 0;
	fclose(f);
	buf[got] = '\0';
	size_t len = strlen(buf); /* stops at an embedded NUL */
	while (len > 0 && isspace((unsigned char)buf[len - 1]))
		buf[--len] = '\0';
	size_t lead = 0;
	while (isspace((unsigned char)buf[lead]))
		lead++;
	memmove(buf, buf + lead, len - lead + 1);
	return err;
}

/*
 * AWS: "Amazon EC2" as sys_vendor, bios_vendor or board_vendor (Nitro), or
 * "amazon" in bios_version (older Xen instances). GCP: bios_vendor or
 * sys_vendor "Google", or product_name "Google Compute Engine". Azure: the
 * Azure chassis asset tag; or sys_vendor "Microsoft Corporation" when the tag
 * cannot be read (a readable different tag means Hyper-V outside Azure).
 */
spot_provider spot_detect_provider(const char *dmi_dir)
{
	const char *dir = (dmi_dir && dmi_dir[0]) ? dmi_dir : DEFAULT_DMI_DIR;
	char sys_vendor[256], bios_vendor[256], board_vendor[256], bios_version[256];
	char product[256], tag[256];
	dmi_read(dir, "sys_vendor", sys_vendor, sizeof sys_vendor);
	dmi_read(dir, "bios_vendor", bios_vendor, sizeof bios_vendor);
	dmi_read(dir, "board_vendor", board_vendor, sizeof board_vendor);
	dmi_read(dir, "bios_version", bios_version, sizeof bios_version);
	dmi_read(dir, "product_name", product, sizeof product);
	int tag_err = dmi_read(dir, "chassis_asset_tag", tag, sizeof tag);

	if (strcmp(sys_vendor, "Amazon EC2") == 0 || strcmp(bios_vendor, "Amazon EC2") == 0 ||
	    strcmp(board_vendor, "Amazon EC2") == 0)
		return SPOT_PROVIDER_AWS;
	for (char *p = bios_version; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (strstr(bios_version, "amazon"))
		return SPOT_PROVIDER_AWS;
	if (strcmp(bios_vendor, "Google") == 0 || strcmp(sys_vendor, "Google") == 0 ||
	    strcmp(product, "Google Compute Engine") == 0)
		return SPOT_PROVIDER_GCP;
	if (strcmp(tag, AZURE_CHASSIS_ASSET_TAG) == 0)
		return SPOT_PROVIDER_AZURE;
	if (strcmp(sys_vendor, "Microsoft Corporation") == 0 && tag_err != 0)
		return SPOT_PROVIDER_AZURE;
	return SPOT_PROVIDER_NONE;
}

/* ------------------------------------------------------------------ */
/* libcurl: global init, the HTTP helper                               */
/* ------------------------------------------------------------------ */

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init_rc = CURLE_FAILED_INIT; /* written once under g_curl_once */

static void curl_init_once(void)
{
	g_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
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
	struct curl_slist *list = NULL;
	for (size_t i = 0; headers && headers[i]; i++) {
		struct curl_slist *nl = curl_slist_append(list, headers[i]);
		if (!nl) {
			curl_slist_free_all(list);
			snprintf(r->error, sizeof r->error, "out of memory");
			return r->result = SPOT_HTTP_ERROR;
		}
		list = nl;
	}
	struct curl_slist *nl = curl_slist_append(list, "Expect:");
	if (nl)
		list = nl;

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

	bool aborted = false;
	CURLcode cc;
	if (h == w->easy)
		cc = perform_multi(w, h, &aborted, r->error, sizeof r->error);
	else
		cc = curl_easy_perform(h);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(list);

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
/* warnings, events, backoff                                           */
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

/* Copy src into dst (size n), replacing bytes outside printable ASCII with '?'. */
static void copy_printable(char *dst, size_t n, const char *src)
{
	size_t i = 0;
	for (; src && src[i] && i + 1 < n; i++) {
		unsigned char ch = (unsigned char)src[i];
		dst[i] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
	}
	dst[i] = '\0';
}

bool spot_emit(spot_watcher *w, spot_event_kind kind, const char *action, const char *notice_time)
{
	spot_event ev;
	memset(&ev, 0, sizeof ev);
	ev.kind = kind;
	copy_printable(ev.provider, sizeof ev.provider, w->ops->name);
	copy_printable(ev.action, sizeof ev.action, action);
	copy_printable(ev.notice_time, sizeof ev.notice_time, notice_time);
	ev.received_wall = now_wall();

	bool queued = false;
	pthread_mutex_lock(&w->mu);
	bool *once = kind == SPOT_EVENT_STOP ? &w->stop_emitted
		   : kind == SPOT_EVENT_REBALANCE ? &w->rebalance_emitted : NULL;
	if (once && !*once && w->q_len < SPOT_QUEUE_LEN) {
		w->queue[(w->q_head + w->q_len) % SPOT_QUEUE_LEN] = ev;
		w->q_len++;
		*once = true;
		queued = true;
	}
	pthread_mutex_unlock(&w->mu);
	return queued;
}

int spot_round_done(spot_watcher *w, bool ok)
{
	long long poll = w->cfg.poll_ms;
	if (ok) {
		w->fail_streak = 0;
		return (int)poll;
	}
	if (w->fail_streak < 16)
		w->fail_streak++;
	long long cap = poll * 16;
	if (cap > SPOT_BACKOFF_MAX_MS)
		cap = SPOT_BACKOFF_MAX_MS;
	if (cap < poll)
		cap = poll;
	long long d = poll << w->fail_streak;
	return (int)(d < cap ? d : cap);
}

/* ------------------------------------------------------------------ */
/* the watcher thread                                                  */
/* ------------------------------------------------------------------ */

/* Wait ms or until stop is requested. Returns false when stopping. */
static bool wait_or_stop(spot_watcher *w, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (ms < 0)
		ms = 0;
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&w->mu);
	while (!w->stopping) {
		if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT)
			break;
	}
	bool go_on = !w->stopping;
	pthread_mutex_unlock(&w->mu);
	return go_on;
}

static void *watcher_main(void *arg)
{
	spot_watcher *w = arg;
	for (;;) {
		pthread_mutex_lock(&w->mu);
		bool stop = w->stopping;
		pthread_mutex_unlock(&w->mu);
		if (stop)
			break;
		int delay = w->ops->poll(w);
		if (!wait_or_stop(w, delay))
			break;
	}
	return NULL;
}

/* Normalise a copied config; returns 0 or EXIT_USAGE with a message. */
static int config_check(spot_config *c)
{
	c->metadata_url[sizeof c->metadata_url - 1] = '\0';
	size_t len = strlen(c->metadata_url);
	while (len > 0 && c->metadata_url[len - 1] == '/')
		c->metadata_url[--len] = '\0';
	if (strncmp(c->metadata_url, "http://", 7) != 0 &&
	    strncmp(c->metadata_url, "https://", 8) != 0) {
		log_error("spot.metadata_url \"%s\" is not an http:// or https:// URL; "
			  "set it to the metadata service, e.g. http://169.254.169.254",
			  c->metadata_url);
		return EXIT_USAGE;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)c->metadata_url[i];
		if (ch <= 0x20 || ch >= 0x7f) {
			log_error("spot.metadata_url contains a space or control character; "
				  "give a plain URL such as http://169.254.169.254");
			return EXIT_USAGE;
		}
	}
	if (c->poll_ms < 10)
		c->poll_ms = c->poll_ms <= 0 ? 1000 : 10;
	if (c->poll_ms > 60000)
		c->poll_ms = 60000;
	if (c->connect_timeout_ms <= 0)
		c->connect_timeout_ms = 500;
	if (c->timeout_ms <= 0)
		c->timeout_ms = 2000;
	if (c->max_response == 0)
		c->max_response = 65536;
	if (c->max_response > 64u * 1024 * 1024)
		c->max_response = 64u * 1024 * 1024;
	c->vm_name[sizeof c->vm_name - 1] = '\0';
	c->node[sizeof c->node - 1] = '\0';
	return 0;
}

static void watcher_free(spot_watcher *w)
{
	if (w->ops && w->priv)
		w->ops->fini(w);
	if (w->easy)
		curl_easy_cleanup(w->easy);
	if (w->multi)
		curl_multi_cleanup(w->multi);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
}

int spot_watcher_start(const spot_config *c, spot_watcher **out)
{
	if (!out)
		return EXIT_SOFTWARE;
	*out = NULL;
	if (!c)
		return EXIT_SOFTWARE;
	spot_provider p = c->provider;
	if (p == SPOT_PROVIDER_AUTO) {
		p = spot_detect_provider(c->dmi_dir);
		log_info("spot: provider auto-detected from %s: %s",
			 c->dmi_dir[0] ? c->dmi_dir : DEFAULT_DMI_DIR, spot_provider_name(p));
	}
	const spot_provider_ops *ops;
	switch (p) {
	case SPOT_PROVIDER_NONE: return 0;
	case SPOT_PROVIDER_AWS: ops = &spot_aws_ops; break;
	case SPOT_PROVIDER_GCP: ops = &spot_gcp_ops; break;
	case SPOT_PROVIDER_AZURE: ops = &spot_azure_ops; break;
	default:
		log_error("spot.provider has an unknown value %d; use auto, aws, gcp, azure or none",
			  (int)p);
		return EXIT_USAGE;
	}

	spot_watcher *w = calloc(1, sizeof *w);
	if (!w) {
		log_error("spot: out of memory starting the %s watcher", ops->name);
		return EXIT_OSERR;
	}
	w->cfg = *c;
	w->provider = p;
	w->ops = ops;
	atomic_init(&w->abort, false);
	int rc = config_check(&w->cfg);
	if (rc != 0) {
		free(w);
		return rc;
	}

	pthread_condattr_t ca;
	if (pthread_mutex_init(&w->mu, NULL) != 0) {
		free(w);
		log_error("spot: pthread_mutex_init failed");
		return EXIT_OSERR;
	}
	if (pthread_condattr_init(&ca) != 0 ||
	    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&w->cv, &ca) != 0) {
		pthread_mutex_destroy(&w->mu);
		free(w);
		log_error("spot: pthread_cond_init failed");
		return EXIT_OSERR;
	}
	pthread_condattr_destroy(&ca);

	pthread_once(&g_curl_once, curl_init_once);
	if (g_curl_init_rc != CURLE_OK) {
		log_error("spot: curl_global_init failed: %s", curl_easy_strerror(g_curl_init_rc));
		watcher_free(w);
		return EXIT_OSERR;
	}
	w->multi = curl_multi_init();
	w->easy = curl_easy_init();
	if (!w->multi || !w->easy) {
		log_error("spot: cannot create curl handles for the %s watcher", ops->name);
		watcher_free(w);
		return EXIT_OSERR;
	}
	rc = ops->init(w);
	if (rc != 0) {
		log_error("spot: cannot set up the %s watcher (out of memory)", ops->name);
		watcher_free(w);
		return EXIT_OSERR;
	}

	/* The watcher thread never takes the process signals: block them while it is created. */
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGUSR2);
	sigaddset(&block, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	int prc = pthread_create(&w->thread, NULL, watcher_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (prc != 0) {
		log_error("spot: cannot start the %s watcher thread: %s", ops->name, strerror(prc));
		watcher_free(w);
		return EXIT_OSERR;
	}
	w->thread_started = true;
	log_info("spot: watching %s interruption notices at %s every %d ms (node %s)", ops->name,
		 w->cfg.metadata_url, w->cfg.poll_ms, w->cfg.node);
	*out = w;
	return 0;
}

bool spot_watcher_poll(spot_watcher *w, spot_event *ev)
{
	if (!w)
		return false;
	bool got = false;
	pthread_mutex_lock(&w->mu);
	if (w->q_len > 0) {
		if (ev)
			*ev = w->queue[w->q_head];
		w->q_head = (w->q_head + 1) % SPOT_QUEUE_LEN;
		w->q_len--;
		got = true;
	}
	pthread_mutex_unlock(&w->mu);
	return got;
}

int spot_watcher_ack(spot_watcher *w)
{
	if (!w || !w->ops->ack)
		return 0;
	return w->ops->ack(w);
}

void spot_watcher_stop(spot_watcher *w)
{
	if (!w)
		return;
	atomic_store(&w->abort, true);
	pthread_mutex_lock(&w->mu);
	w->stopping = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	if (w->thread_started) {
		curl_multi_wakeup(w->multi); /* thread-safe: ends a curl_multi_poll at once */
		pthread_join(w->thread, NULL);
	}
	watcher_free(w);
}
