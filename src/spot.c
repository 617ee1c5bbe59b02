/*
 * spot.c - interruption notices: the watcher thread, the events it queues
 * and the public API. The configuration defaults and the provider detection
 * live in spot_detect.c, the HTTP helper and the warnings in spot_http.c, the
 * provider protocols in spot_aws.c, spot_gcp.c and spot_azure.c; the process
 * signals live in signals.c.
 *
 * The watcher thread owns one curl easy handle driven through a curl multi
 * handle, so that spot_watcher_stop can wake it (curl_multi_wakeup) in the
 * middle of a hanging request; the training thread only takes a mutex to copy
 * a queued event.
 */
#include "spot_internal.h"

#include "contract.h"
#include "log.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ */
/* events, backoff                                                     */
/* ------------------------------------------------------------------ */

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
/*
 * The protocol of c->provider, detecting it from DMI for "auto" (into *p).
 * Returns NULL with *rc 0 when there is none to watch, or with *rc EXIT_USAGE
 * (logged) for an unknown value.
 */
static const spot_provider_ops *resolve_provider(const spot_config *c, spot_provider *p, int *rc)
{
	*rc = 0;
	*p = c->provider;
	if (*p == SPOT_PROVIDER_AUTO) {
		*p = spot_detect_provider(c->dmi_dir);
		log_info("spot: provider auto-detected from %s: %s",
			 c->dmi_dir[0] ? c->dmi_dir : SPOT_DEFAULT_DMI_DIR, spot_provider_name(*p));
	}
	switch (*p) {
	case SPOT_PROVIDER_NONE: return NULL;
	case SPOT_PROVIDER_AWS: return &spot_aws_ops;
	case SPOT_PROVIDER_GCP: return &spot_gcp_ops;
	case SPOT_PROVIDER_AZURE: return &spot_azure_ops;
	default:
		log_error("spot.provider has an unknown value %d; use auto, aws, gcp, azure or none",
			  (int)*p);
		*rc = EXIT_USAGE;
		return NULL;
	}
}

/* Initialise w->mu and w->cv (CLOCK_MONOTONIC). 0, or EXIT_OSERR (logged) with neither left. */
static int sync_init(spot_watcher *w)
{
	pthread_condattr_t ca;
	if (pthread_mutex_init(&w->mu, NULL) != 0) {
		log_error("spot: pthread_mutex_init failed");
		return EXIT_OSERR;
	}
	if (pthread_condattr_init(&ca) != 0 ||
	    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&w->cv, &ca) != 0) {
		pthread_mutex_destroy(&w->mu);
		log_error("spot: pthread_cond_init failed");
		return EXIT_OSERR;
	}
	pthread_condattr_destroy(&ca);
	return 0;
}

/* libcurl and the provider's state for w. 0, or EXIT_OSERR (logged); watcher_free undoes it. */
static int handles_init(spot_watcher *w)
{
	CURLcode init_rc = spot_curl_global_init();
	if (init_rc != CURLE_OK) {
		log_error("spot: curl_global_init failed: %s", curl_easy_strerror(init_rc));
		return EXIT_OSERR;
	}
	w->multi = curl_multi_init();
	w->easy = curl_easy_init();
	if (!w->multi || !w->easy) {
		log_error("spot: cannot create curl handles for the %s watcher", w->ops->name);
		return EXIT_OSERR;
	}
	if (w->ops->init(w) != 0) {
		log_error("spot: cannot set up the %s watcher (out of memory)", w->ops->name);
		return EXIT_OSERR;
	}
	return 0;
}

/* Start the watcher thread with the process signals blocked in it. 0 or EXIT_OSERR (logged). */
static int thread_start(spot_watcher *w)
{
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
		log_error("spot: cannot start the %s watcher thread: %s", w->ops->name, strerror(prc));
		return EXIT_OSERR;
	}
	w->thread_started = true;
	return 0;
}

int spot_watcher_start(const spot_config *c, spot_watcher **out)
{
	if (!out)
		return EXIT_SOFTWARE;
	*out = NULL;
	if (!c)
		return EXIT_SOFTWARE;
	spot_provider p;
	int rc;
	const spot_provider_ops *ops = resolve_provider(c, &p, &rc);
	if (!ops)
		return rc;

	spot_watcher *w = calloc(1, sizeof *w);
	if (!w) {
		log_error("spot: out of memory starting the %s watcher", ops->name);
		return EXIT_OSERR;
	}
	w->cfg = *c;
	w->provider = p;
	w->ops = ops;
	atomic_init(&w->abort, false);
	rc = config_check(&w->cfg);
	if (rc == 0)
		rc = sync_init(w);
	if (rc != 0) {
		free(w);
		return rc;
	}
	if ((rc = handles_init(w)) != 0 || (rc = thread_start(w)) != 0) {
		watcher_free(w);
		return rc;
	}
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
