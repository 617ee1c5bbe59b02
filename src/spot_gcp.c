/*
 * spot_gcp.c - Google Compute Engine metadata server.
 *
 * GET /computeMetadata/v1/instance/preempted with "Metadata-Flavor: Google".
 * The first request reads the value and its ETag at once; later requests
 * hang on the server (?wait_for_change=true&timeout_sec=N&last_etag=E) until
 * the value changes or N seconds pass. Body "TRUE" means the instance is being
 * preempted: SPOT_EVENT_STOP (once). An answer without the response header
 * "Metadata-Flavor: Google" is not from the metadata server and is ignored;
 * 503 (maintenance) and every other failure are retried with backoff.
 *
 * N is derived from poll_ms (5 polls, 1..30 s): short enough that a lost
 * connection is noticed, long enough to save requests. spot_watcher_stop does
 * not wait for it: it wakes the transfer (curl_multi_wakeup) and it ends at once.
 */
#include "spot_internal.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GCP_PREEMPTED_PATH "/computeMetadata/v1/instance/preempted"

typedef struct gcp_state {
	char etag[SPOT_ETAG_MAX]; /* of the last good answer, "" before the first */
} gcp_state;

static int gcp_init(spot_watcher *w)
{
	w->priv = calloc(1, sizeof(gcp_state));
	return w->priv ? 0 : -1;
}

static void gcp_fini(spot_watcher *w)
{
	free(w->priv);
	w->priv = NULL;
}

/* An ETag we are willing to echo in a URL: 1..64 of [A-Za-z0-9_-]. */
static bool etag_ok(const char *e)
{
	size_t n = strlen(e);
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = e[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return false;
	}
	return true;
}

static int gcp_wait_sec(const spot_watcher *w)
{
	int s = (w->cfg.poll_ms * 5 + 999) / 1000;
	return s < 1 ? 1 : s > 30 ? 30 : s;
}

static int gcp_poll(spot_watcher *w)
{
	gcp_state *s = w->priv;
	char path[256];
	long total_ms = w->cfg.timeout_ms;
	bool hanging = s->etag[0] != '\0';
	if (hanging) {
		int wait = gcp_wait_sec(w);
		snprintf(path, sizeof path, "%s?wait_for_change=true&timeout_sec=%d&last_etag=%s",
			 GCP_PREEMPTED_PATH, wait, s->etag);
		total_ms += (long)wait * 1000;
	} else {
		spot_strlcpy(path, sizeof path, GCP_PREEMPTED_PATH);
	}
	const char *hdrs[] = {"Metadata-Flavor: Google", NULL};
	const char *what = "GET " GCP_PREEMPTED_PATH;
	double t0 = now_mono();
	spot_http_resp r;
	spot_http(w, w->easy, "GET", path, hdrs, NULL, total_ms, &r);
	bool ok = false;
	if (r.result != SPOT_HTTP_OK || r.status != 200) {
		spot_http_warn(w, what, &r);
	} else if (!r.flavor_google) {
		spot_warn(w, SPOT_WARN_BODY,
			  "%s on %s: answer lacks the header Metadata-Flavor: Google, so it is not from the "
			  "GCE metadata server; ignored, check spot.metadata_url", what,
			  w->cfg.metadata_url);
	} else if (spot_body_is(&r, "TRUE")) {
		ok = true;
		spot_emit(w, SPOT_EVENT_STOP, "preempt", "");
	} else if (spot_body_is(&r, "FALSE")) {
		ok = true;
	} else {
		spot_warn(w, SPOT_WARN_BODY,
			  "%s on %s: answer is neither TRUE nor FALSE (%zu bytes); ignored, no interruption "
			  "is assumed", what, w->cfg.metadata_url, r.len);
	}
	if (ok)
		spot_strlcpy(s->etag, sizeof s->etag, etag_ok(r.etag) ? r.etag : "");
	spot_http_resp_free(&r);

	int delay = spot_round_done(w, ok);
	if (ok && !hanging && s->etag[0]) {
		delay = 0; /* the value and ETag are known: start waiting on the server at once */
	} else if (ok) {
		/* the hanging GET did the waiting; still never more than one request per poll_ms */
		int spent = (int)((now_mono() - t0) * 1000.0);
		delay = spent >= delay ? 0 : delay - spent;
	}
	return delay;
}

const spot_provider_ops spot_gcp_ops = {
	.name = "gcp",
	.init = gcp_init,
	.poll = gcp_poll,
	.ack = NULL, /* GCP has no acknowledgement */
	.fini = gcp_fini,
};
