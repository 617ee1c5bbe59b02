/*
 * spot_internal.h - shared between spot.c (watcher thread, events),
 * spot_detect.c (config defaults, provider detection), spot_http.c (HTTP
 * helper, warnings) and the provider protocol files spot_aws.c, spot_gcp.c
 * and spot_azure.c. Not part of the public face of the module: only spot*.c
 * include it, and these are the only worker files that include curl.h.
 *
 * Threading: everything a provider's poll() touches belongs to the watcher
 * thread, except what is marked "under mu". The training thread only calls
 * spot_watcher_poll (takes mu, copies one queued event), spot_watcher_ack
 * (its own curl handle) and spot_watcher_stop.
 */
#ifndef SPOTTRAIN_SPOT_INTERNAL_H
#define SPOTTRAIN_SPOT_INTERNAL_H

#include "spot.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#define SPOT_QUEUE_LEN 8         /* events waiting for spot_watcher_poll */
#define SPOT_WARN_INTERVAL_S 30.0 /* at most one warning per kind per interval */
#define SPOT_URL_MAX 1024
#define SPOT_ETAG_MAX 128
#define SPOT_BACKOFF_MAX_MS 5000 /* AWS asks for a poll at least every 5 s */
#define SPOT_DEFAULT_DMI_DIR "/sys/class/dmi/id" /* spot.dmi_dir when empty */

/* Kinds of trouble, each rate-limited on its own. */
typedef enum {
	SPOT_WARN_CONNECT = 0, /* refused, reset, closed without a reply */
	SPOT_WARN_TIMEOUT,     /* connect or total timeout */
	SPOT_WARN_STATUS,      /* unexpected HTTP status (5xx, 4xx) */
	SPOT_WARN_REDIRECT,    /* 3xx: never followed */
	SPOT_WARN_OVERSIZE,    /* body larger than max_response */
	SPOT_WARN_BODY,        /* garbage, truncated or unexpected content */
	SPOT_WARN_TOKEN,       /* AWS IMDSv2 token trouble */
	SPOT_WARN_OTHER,       /* any other transfer error */
	SPOT_WARN_KINDS
} spot_warn_kind;

/* Outcome of one transfer (not of the HTTP status: see spot_http_resp.status). */
typedef enum {
	SPOT_HTTP_OK = 0,   /* a complete response arrived, any status */
	SPOT_HTTP_CONNECT,  /* could not connect, or the server closed without a reply */
	SPOT_HTTP_TIMEOUT,  /* connect or total timeout */
	SPOT_HTTP_OVERSIZE, /* body beyond max_response: transfer aborted */
	SPOT_HTTP_ABORTED,  /* spot_watcher_stop interrupted it */
	SPOT_HTTP_ERROR,    /* anything else (partial body, protocol error, ...) */
} spot_http_result;

typedef struct spot_http_resp {
	spot_http_result result;
	long status;                  /* HTTP status, 0 if none */
	char *body;                   /* malloc'd, NUL-terminated; may contain NULs before len */
	size_t len;                   /* body bytes */
	size_t cap;                   /* allocated bytes of body */
	size_t max;                   /* the limit (cfg.max_response) */
	bool oversize;                /* write callback refused more bytes */
	char etag[SPOT_ETAG_MAX];     /* ETag response header, "" if none or too long */
	bool flavor_google;           /* "Metadata-Flavor: Google" response header seen */
	char error[CURL_ERROR_SIZE];  /* curl's message when result != OK */
} spot_http_resp;

typedef struct spot_provider_ops spot_provider_ops;

struct spot_watcher {
	spot_config cfg;              /* copy, metadata_url without trailing '/' */
	spot_provider provider;       /* resolved: AWS, GCP or AZURE */
	const spot_provider_ops *ops; /* protocol of that provider */
	void *priv;                   /* provider state (watcher thread only) */

	pthread_t thread;
	bool thread_started;
	pthread_mutex_t mu;           /* guards everything "under mu" */
	pthread_cond_t cv;            /* signalled when stopping is set (CLOCK_MONOTONIC) */
	bool stopping;                /* under mu */
	atomic_bool abort;            /* read by curl callbacks and the transfer loop */

	spot_event queue[SPOT_QUEUE_LEN]; /* under mu: FIFO of events not yet polled */
	size_t q_head, q_len;             /* under mu */
	bool stop_emitted;                /* under mu: a STOP is reported once per watcher */
	bool rebalance_emitted;           /* under mu: a REBALANCE likewise */
	char ack_event_id[128];           /* under mu: Azure EventId to acknowledge, "" if none */

	CURLM *multi;                 /* watcher thread's transfers; woken by stop */
	CURL *easy;                   /* watcher thread's handle (keeps the connection) */
	int fail_streak;              /* consecutive failed rounds, for the backoff */
	double warn_last[SPOT_WARN_KINDS];  /* now_mono of the last warning per kind */
	unsigned warn_dropped[SPOT_WARN_KINDS]; /* suppressed since then */
};

struct spot_provider_ops {
	const char *name;
	/* Allocate w->priv. Returns 0 or EXIT_OSERR. */
	int (*init)(spot_watcher *w);
	/* One round of requests; may emit events. Returns ms to wait before the next round. */
	int (*poll)(spot_watcher *w);
	/* Acknowledge the notice (training thread, own curl handle). 0 or -1. */
	int (*ack)(spot_watcher *w);
	/* Free w->priv. */
	void (*fini)(spot_watcher *w);
};

extern const spot_provider_ops spot_aws_ops;
extern const spot_provider_ops spot_gcp_ops;
extern const spot_provider_ops spot_azure_ops;

/* ---- helpers in spot_http.c ---- */

/* curl_global_init, once per process for this module (pthread_once); its result. */
CURLcode spot_curl_global_init(void);

/*
 * One HTTP request to cfg.metadata_url + path (path starts with '/').
 * method "GET", "PUT" or "POST"; headers NULL-terminated (may be NULL); body
 * NULL for none; total_ms the whole-transfer limit. On the watcher thread
 * (h == w->easy) the transfer runs through w->multi so spot_watcher_stop can
 * interrupt it; elsewhere it runs with curl_easy_perform and still checks
 * w->abort. Fills *r (free with spot_http_resp_free) and returns r->result.
 * Never follows redirects, never uses a proxy, caps the body at max_response.
 */
spot_http_result spot_http(spot_watcher *w, CURL *h, const char *method, const char *path,
			   const char *const *headers, const char *body, long total_ms,
			   spot_http_resp *r);
void spot_http_resp_free(spot_http_resp *r);

/* True if body[0..len) is exactly `word` after trimming ASCII whitespace (no NULs). */
bool spot_body_is(const spot_http_resp *r, const char *word);

/* Say in buf what went wrong with a response that is not the expected one; returns its kind. */
spot_warn_kind spot_http_describe(const spot_watcher *w, const spot_http_resp *r, char *buf,
				  size_t n);
/* Log a failed or unexpected response of `what` (e.g. "GET .../instance-action"), rate-limited. */
void spot_http_warn(spot_watcher *w, const char *what, const spot_http_resp *r);
/* Rate-limited warning of one kind (watcher thread only). */
void spot_warn(spot_watcher *w, spot_warn_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- helpers in spot.c ---- */

/*
 * Queue an event for spot_watcher_poll. A STOP and a REBALANCE are each queued
 * at most once per watcher; later calls are ignored. Strings may be NULL and are
 * copied with non-printable bytes replaced. Returns true if queued.
 */
bool spot_emit(spot_watcher *w, spot_event_kind kind, const char *action, const char *notice_time);

/* Delay for the next round: poll_ms after a good round, doubling after failures. */
int spot_round_done(spot_watcher *w, bool ok);

/* ---- helpers in spot_detect.c ---- */

/* Copy src (NULL: "") into dst of size n (> 0), truncating; always NUL-terminates. */
void spot_strlcpy(char *dst, size_t n, const char *src);

#endif
