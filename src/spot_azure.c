/*
 * spot_azure.c - Azure Instance Metadata Service, Scheduled Events.
 *
 * Each round: GET /metadata/scheduledevents?api-version=2020-07-01 with
 * "Metadata: true". The answer is {"DocumentIncarnation": n, "Events": [...]};
 * an event whose EventType is "Preempt" or "Terminate" and whose Resources
 * name this VM is SPOT_EVENT_STOP (once), with the EventType as the action and
 * NotBefore (RFC 1123) as the notice time. Its EventId is remembered, and
 * spot_watcher_ack POSTs {"StartRequests":[{"EventId":"..."}]} once the
 * emergency checkpoint is durable, telling Azure it may go ahead.
 *
 * "This VM" is spot.vm_name (default: the host name) or the name the service
 * itself reports at /metadata/instance/compute/name (asked once; the two
 * differ in scale sets, where Resources carry names like "myvmss_3").
 */
#include "spot_internal.h"

#include "log.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define AZURE_EVENTS_PATH "/metadata/scheduledevents?api-version=2020-07-01"
#define AZURE_NAME_PATH "/metadata/instance/compute/name?api-version=2021-02-01&format=text"
#define AZURE_NAME_TRIES 5

typedef struct azure_state {
	char imds_name[128];  /* compute/name as IMDS reports it, "" if not known */
	int name_tries;       /* requests spent on it so far */
	bool have_doc;        /* a valid document was seen */
	double incarnation;   /* its DocumentIncarnation */
} azure_state;

static int azure_init(spot_watcher *w)
{
	w->priv = calloc(1, sizeof(azure_state));
	return w->priv ? 0 : -1;
}

static void azure_fini(spot_watcher *w)
{
	free(w->priv);
	w->priv = NULL;
}

/* Ask IMDS for this VM's name (a few tries over the first rounds; failures are quiet). */
static void azure_fetch_name(spot_watcher *w, azure_state *s)
{
	const char *hdrs[] = {"Metadata: true", NULL};
	spot_http_resp r;
	s->name_tries++;
	spot_http(w, w->easy, "GET", AZURE_NAME_PATH, hdrs, NULL, w->cfg.timeout_ms, &r);
	if (r.result == SPOT_HTTP_OK && r.status == 200 && r.len > 0 && r.len < sizeof s->imds_name &&
	    !memchr(r.body, '\0', r.len)) {
		size_t n = r.len;
		while (n > 0 && (r.body[n - 1] == '\n' || r.body[n - 1] == '\r'))
			n--;
		bool printable = n > 0;
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)r.body[i] <= 0x20 || (unsigned char)r.body[i] >= 0x7f)
				printable = false;
		if (printable) {
			memcpy(s->imds_name, r.body, n);
			s->imds_name[n] = '\0';
		}
	}
	spot_http_resp_free(&r);
}

static bool names_this_vm(const spot_watcher *w, const azure_state *s, const cJSON *resources)
{
	const cJSON *res;
	cJSON_ArrayForEach(res, resources) {
		if (!cJSON_IsString(res))
			continue;
		if ((w->cfg.vm_name[0] && strcasecmp(res->valuestring, w->cfg.vm_name) == 0) ||
		    (s->imds_name[0] && strcasecmp(res->valuestring, s->imds_name) == 0))
			return true;
	}
	return false;
}

/* Handle one scheduledevents document. Returns false if it is not a valid one. */
static bool azure_handle_doc(spot_watcher *w, azure_state *s, const spot_http_resp *r)
{
	if (!r->body || r->len == 0 || memchr(r->body, '\0', r->len))
		return false;
	cJSON *j = cJSON_ParseWithOpts(r->body, NULL, 1);
	const cJSON *inc = cJSON_GetObjectItemCaseSensitive(j, "DocumentIncarnation");
	const cJSON *events = cJSON_GetObjectItemCaseSensitive(j, "Events");
	if (!cJSON_IsObject(j) || !cJSON_IsNumber(inc) || !cJSON_IsArray(events)) {
		cJSON_Delete(j);
		return false;
	}
	if (s->have_doc && inc->valuedouble == s->incarnation) {
		cJSON_Delete(j); /* nothing changed since the last document */
		return true;
	}
	const cJSON *ev;
	cJSON_ArrayForEach(ev, events) {
		const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "EventType");
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(ev, "EventId");
		const cJSON *res = cJSON_GetObjectItemCaseSensitive(ev, "Resources");
		const cJSON *nb = cJSON_GetObjectItemCaseSensitive(ev, "NotBefore");
		if (!cJSON_IsString(type) || !cJSON_IsString(id) || !cJSON_IsArray(res))
			continue;
		if (strcmp(type->valuestring, "Preempt") != 0 &&
		    strcmp(type->valuestring, "Terminate") != 0)
			continue;
		if (!names_this_vm(w, s, res))
			continue;
		if (strlen(id->valuestring) >= sizeof w->ack_event_id || id->valuestring[0] == '\0') {
			spot_warn(w, SPOT_WARN_BODY, "scheduled event with an unusable EventId ignored");
			continue;
		}
		pthread_mutex_lock(&w->mu);
		if (!w->ack_event_id[0])
			spot_strlcpy(w->ack_event_id, sizeof w->ack_event_id, id->valuestring);
		pthread_mutex_unlock(&w->mu);
		spot_emit(w, SPOT_EVENT_STOP, type->valuestring,
			  cJSON_IsString(nb) ? nb->valuestring : "");
		break;
	}
	s->have_doc = true;
	s->incarnation = inc->valuedouble;
	cJSON_Delete(j);
	return true;
}

static int azure_poll(spot_watcher *w)
{
	azure_state *s = w->priv;
	if (!s->imds_name[0] && s->name_tries < AZURE_NAME_TRIES) {
		azure_fetch_name(w, s);
		if (atomic_load(&w->abort))
			return 0;
	}
	const char *hdrs[] = {"Metadata: true", NULL};
	const char *what = "GET /metadata/scheduledevents";
	spot_http_resp r;
	spot_http(w, w->easy, "GET", AZURE_EVENTS_PATH, hdrs, NULL, w->cfg.timeout_ms, &r);
	bool ok = false;
	if (r.result != SPOT_HTTP_OK || r.status != 200) {
		spot_http_warn(w, what, &r);
	} else {
		ok = azure_handle_doc(w, s, &r);
		if (!ok)
			spot_warn(w, SPOT_WARN_BODY,
				  "%s on %s: answer is not a scheduled-events document (%zu bytes); ignored, "
				  "no interruption is assumed", what, w->cfg.metadata_url, r.len);
	}
	spot_http_resp_free(&r);
	return spot_round_done(w, ok);
}

/* Training thread: POST StartRequests for the remembered event, on a handle of its own. */
static int azure_ack(spot_watcher *w)
{
	char id[sizeof w->ack_event_id];
	pthread_mutex_lock(&w->mu);
	memcpy(id, w->ack_event_id, sizeof id);
	pthread_mutex_unlock(&w->mu);
	if (!id[0])
		return 0; /* nothing to acknowledge */

	cJSON *root = cJSON_CreateObject();
	cJSON *arr = cJSON_AddArrayToObject(root, "StartRequests");
	cJSON *item = cJSON_CreateObject();
	char *body = NULL;
	if (arr && item && cJSON_AddStringToObject(item, "EventId", id) &&
	    cJSON_AddItemToArray(arr, item)) {
		item = NULL; /* owned by arr now */
		body = cJSON_PrintUnformatted(root);
	}
	cJSON_Delete(item);
	cJSON_Delete(root);
	CURL *h = body ? curl_easy_init() : NULL;
	if (!h) {
		free(body);
		log_warn("spot (azure, node %s): cannot acknowledge scheduled event %s: out of memory",
			 w->cfg.node, id);
		return -1;
	}
	const char *hdrs[] = {"Metadata: true", "Content-Type: application/json", NULL};
	spot_http_resp r;
	spot_http(w, h, "POST", AZURE_EVENTS_PATH, hdrs, body, w->cfg.timeout_ms, &r);
	int rc = 0;
	if (r.result == SPOT_HTTP_OK && r.status >= 200 && r.status < 300) {
		log_info("spot (azure, node %s): acknowledged scheduled event %s (StartRequests)",
			 w->cfg.node, id);
	} else {
		rc = -1;
		log_warn("spot (azure, node %s): acknowledging scheduled event %s at %s failed (%s, "
			 "HTTP %ld); Azure proceeds at NotBefore anyway", w->cfg.node, id,
			 w->cfg.metadata_url, r.result == SPOT_HTTP_OK ? "answered" : r.error, r.status);
	}
	spot_http_resp_free(&r);
	curl_easy_cleanup(h);
	free(body);
	return rc;
}

const spot_provider_ops spot_azure_ops = {
	.name = "azure",
	.init = azure_init,
	.poll = azure_poll,
	.ack = azure_ack,
	.fini = azure_fini,
};
