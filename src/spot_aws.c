/*
 * spot_aws.c - AWS EC2 instance metadata (IMDSv2, falling back to IMDSv1).
 *
 * Each round: make sure a session token is held (PUT /latest/api/token with
 * X-aws-ec2-metadata-token-ttl-seconds; refreshed before it expires and after
 * any 401), then
 *   GET /latest/meta-data/spot/instance-action
 *       404: nothing scheduled; 200 {"action": terminate|stop|hibernate,
 *       "time": "..."}: SPOT_EVENT_STOP (once)
 *   GET /latest/meta-data/events/recommendations/rebalance
 *       404: nothing; 200 {"noticeTime": "..."}: SPOT_EVENT_REBALANCE (once)
 * If the token PUT does not answer 200 the requests go without a token
 * (IMDSv1); the PUT is tried again every round, so the watcher returns to
 * IMDSv2 as soon as the service offers it.
 */
#include "spot_internal.h"

#include "log.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AWS_TOKEN_TTL_S 21600 /* the longest IMDS allows */
#define AWS_TOKEN_MAX 1024

#define AWS_TOKEN_PATH "/latest/api/token"
#define AWS_ACTION_PATH "/latest/meta-data/spot/instance-action"
#define AWS_REBALANCE_PATH "/latest/meta-data/events/recommendations/rebalance"

typedef struct aws_state {
	char token[AWS_TOKEN_MAX]; /* "" when none (IMDSv1 or not fetched yet) */
	double token_refresh;      /* now_mono at which to fetch a new token */
	bool rebalance_seen;       /* stop polling the rebalance path once reported */
	bool stop_seen;            /* likewise once a STOP was reported */
} aws_state;

static int aws_init(spot_watcher *w)
{
	w->priv = calloc(1, sizeof(aws_state));
	return w->priv ? 0 : -1;
}

static void aws_fini(spot_watcher *w)
{
	free(w->priv);
	w->priv = NULL;
}

/* Copy the token of a PUT answer if it is one line of printable ASCII. */
static bool take_token(aws_state *s, const spot_http_resp *r)
{
	const char *b = r->body;
	size_t len = r->len;
	while (len > 0 && (b[len - 1] == '\n' || b[len - 1] == '\r' || b[len - 1] == ' '))
		len--;
	if (len == 0 || len >= sizeof s->token)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)b[i] <= 0x20 || (unsigned char)b[i] >= 0x7f)
			return false;
	memcpy(s->token, b, len);
	s->token[len] = '\0';
	return true;
}

/* Fetch a new session token. Returns true with s->token set; false leaves it "" (IMDSv1). */
static bool aws_fetch_token(spot_watcher *w, aws_state *s)
{
	char ttl_hdr[80];
	snprintf(ttl_hdr, sizeof ttl_hdr, "X-aws-ec2-metadata-token-ttl-seconds: %d", AWS_TOKEN_TTL_S);
	const char *hdrs[] = {ttl_hdr, NULL};
	spot_http_resp r;
	s->token[0] = '\0';
	spot_http(w, w->easy, "PUT", AWS_TOKEN_PATH, hdrs, NULL, w->cfg.timeout_ms, &r);
	bool ok = false;
	if (r.result == SPOT_HTTP_OK && r.status == 200) {
		ok = take_token(s, &r);
		if (!ok)
			spot_warn(w, SPOT_WARN_TOKEN,
				  "PUT %s on %s answered 200 without a usable token; continuing with "
				  "IMDSv1 (no token)", AWS_TOKEN_PATH, w->cfg.metadata_url);
	} else if (r.result != SPOT_HTTP_ABORTED) {
		char why[CURL_ERROR_SIZE + 128];
		spot_http_describe(w, &r, why, sizeof why);
		spot_warn(w, SPOT_WARN_TOKEN,
			  "PUT %s on %s (IMDSv2 session token): %s; continuing with IMDSv1 (no token)",
			  AWS_TOKEN_PATH, w->cfg.metadata_url, why);
	}
	if (ok) {
		/* refresh a tenth of the TTL (at most 5 min) before the token expires */
		double margin = AWS_TOKEN_TTL_S / 10.0 < 300.0 ? AWS_TOKEN_TTL_S / 10.0 : 300.0;
		s->token_refresh = now_mono() + AWS_TOKEN_TTL_S - margin;
	}
	spot_http_resp_free(&r);
	return ok;
}

static void aws_get_once(spot_watcher *w, aws_state *s, const char *path, spot_http_resp *r)
{
	char hdr[AWS_TOKEN_MAX + 64];
	const char *hdrs[] = {NULL, NULL};
	if (s->token[0]) {
		snprintf(hdr, sizeof hdr, "X-aws-ec2-metadata-token: %s", s->token);
		hdrs[0] = hdr;
	}
	spot_http(w, w->easy, "GET", path, hdrs, NULL, w->cfg.timeout_ms, r);
}

/* GET path with the current token; on 401 fetch a new token and try once more. */
static void aws_get(spot_watcher *w, aws_state *s, const char *path, spot_http_resp *r)
{
	aws_get_once(w, s, path, r);
	if (r->result == SPOT_HTTP_OK && r->status == 401) {
		if (aws_fetch_token(w, s)) {
			spot_http_resp_free(r);
			aws_get_once(w, s, path, r);
		}
	}
}

/* Parse a whole body as JSON (no NULs, nothing after the value). NULL if it is not. */
static cJSON *parse_json_body(const spot_http_resp *r)
{
	if (!r->body || r->len == 0 || memchr(r->body, '\0', r->len))
		return NULL;
	return cJSON_ParseWithOpts(r->body, NULL, 1);
}

/* One instance-action answer: returns true when it was understood (404 or a valid 200). */
static bool aws_handle_action(spot_watcher *w, aws_state *s, const spot_http_resp *r)
{
	const char *what = "GET " AWS_ACTION_PATH;
	if (r->result != SPOT_HTTP_OK || (r->status != 200 && r->status != 404)) {
		spot_http_warn(w, what, r);
		return false;
	}
	if (r->status == 404)
		return true;
	cJSON *j = parse_json_body(r);
	const cJSON *action = cJSON_GetObjectItemCaseSensitive(j, "action");
	const cJSON *time = cJSON_GetObjectItemCaseSensitive(j, "time");
	bool ok = cJSON_IsObject(j) && cJSON_IsString(action) &&
		  (strcmp(action->valuestring, "terminate") == 0 ||
		   strcmp(action->valuestring, "stop") == 0 ||
		   strcmp(action->valuestring, "hibernate") == 0) &&
		  (!time || cJSON_IsString(time));
	if (ok) {
		spot_emit(w, SPOT_EVENT_STOP, action->valuestring, time ? time->valuestring : "");
		s->stop_seen = true;
	} else {
		spot_warn(w, SPOT_WARN_BODY,
			  "%s on %s: answer 200 is not {\"action\": terminate|stop|hibernate, \"time\": "
			  "...} (%zu bytes); ignored, no interruption is assumed", what,
			  w->cfg.metadata_url, r->len);
	}
	cJSON_Delete(j);
	return ok;
}

static bool aws_handle_rebalance(spot_watcher *w, aws_state *s, const spot_http_resp *r)
{
	const char *what = "GET " AWS_REBALANCE_PATH;
	if (r->result != SPOT_HTTP_OK || (r->status != 200 && r->status != 404)) {
		spot_http_warn(w, what, r);
		return false;
	}
	if (r->status == 404)
		return true;
	cJSON *j = parse_json_body(r);
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "noticeTime");
	bool ok = cJSON_IsObject(j) && cJSON_IsString(t);
	if (ok) {
		spot_emit(w, SPOT_EVENT_REBALANCE, "rebalance", t->valuestring);
		s->rebalance_seen = true;
	} else {
		spot_warn(w, SPOT_WARN_BODY,
			  "%s on %s: answer 200 is not {\"noticeTime\": ...} (%zu bytes); ignored", what,
			  w->cfg.metadata_url, r->len);
	}
	cJSON_Delete(j);
	return ok;
}

static int aws_poll(spot_watcher *w)
{
	aws_state *s = w->priv;
	if (!s->token[0] || now_mono() >= s->token_refresh) {
		aws_fetch_token(w, s);
		if (atomic_load(&w->abort))
			return 0;
	}
	spot_http_resp r;
	aws_get(w, s, AWS_ACTION_PATH, &r);
	bool ok = aws_handle_action(w, s, &r);
	bool reachable = r.result == SPOT_HTTP_OK;
	spot_http_resp_free(&r);
	if (reachable && !s->rebalance_seen && !s->stop_seen && !atomic_load(&w->abort)) {
		aws_get(w, s, AWS_REBALANCE_PATH, &r);
		ok = aws_handle_rebalance(w, s, &r) && ok;
		spot_http_resp_free(&r);
	}
	return spot_round_done(w, ok);
}

const spot_provider_ops spot_aws_ops = {
	.name = "aws",
	.init = aws_init,
	.poll = aws_poll,
	.ack = NULL, /* AWS has no acknowledgement */
	.fini = aws_fini,
};
