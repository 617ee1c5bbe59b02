/*
 * mock_imds.c - a mock of the cloud instance metadata services that spottrain
 * watches (AWS IMDSv2/v1, GCP metadata server, Azure IMDS Scheduled Events),
 * all three on one port of 127.0.0.1 (never any other address), plus a
 * control interface under /_control/ for tests. One mock stands for one node;
 * a fleet test runs one mock per fake node.
 *
 * Usage: mock_imds [--port N] [--port-file PATH] [--step-file PATH]
 *                  [--vm-name NAME] [--verbose]
 *   --port 0 (default) picks an ephemeral port. The first line on stdout is
 *   always "PORT <n>"; --port-file also writes <n> to PATH (atomically).
 *   SIGTERM or SIGINT ends the mock cleanly.
 *
 * Protocols (as in TESTING.md, "Cloud metadata services", and DESIGN.md's notice table):
 *   AWS   PUT /latest/api/token needs X-aws-ec2-metadata-token-ttl-seconds
 *         1..21600 (else 400) and echoes it; tokens expire after their TTL.
 *         GET /latest/meta-data/... with a wrong or expired
 *         X-aws-ec2-metadata-token: 401. Without a token: served (IMDSv1)
 *         unless /_control/aws?imdsv1=0. spot/instance-action and
 *         events/recommendations/rebalance: 404 with an HTML body until a
 *         notice, then 200 JSON. X-Forwarded-For on the token PUT: 403.
 *   GCP   GET /computeMetadata/v1/instance/preempted needs
 *         Metadata-Flavor: Google (else 403); the answer carries
 *         Metadata-Flavor: Google and an ETag; body TRUE or FALSE.
 *         ?wait_for_change=true[&last_etag=E][&timeout_sec=N] hangs until the
 *         value changes (returns at once when E is not the current ETag) or N
 *         seconds pass (then answers the current value).
 *   Azure GET /metadata/scheduledevents?api-version=... needs Metadata: true
 *         (else 400) and a known api-version (else 400);
 *         {"DocumentIncarnation": n, "Events": [...]}, n grows on each change.
 *         POST {"StartRequests":[{"EventId":"..."}]} acknowledges: recorded,
 *         the event becomes "Started". GET /metadata/instance/compute/name
 *         ?api-version=...&format=text answers the VM name (--vm-name, "vm0").
 *
 * Control (POST unless noted; query parameters; answers JSON):
 *   /_control/notice?provider=aws|gcp|azure|all&action=A&after_ms=T&at_step=N
 *         &time=S&resources=a,b&event_id=ID&duration_s=D&indent=0|1
 *       Schedules an interruption notice. provider defaults to all; action
 *       defaults to terminate (AWS) / Preempt (Azure); time defaults to now +
 *       120 s (AWS, RFC 3339) / now + 30 s (Azure NotBefore, RFC 1123);
 *       resources default to the VM name. It fires once after_ms have passed
 *       since this request AND (if at_step is given) the step read from
 *       --step-file has reached at_step. The step file (the trainer's
 *       heartbeat) is polled every 10 ms; its content is either a number or a
 *       JSON object with a numeric "step". /_control/step?n=N sets the step
 *       when no step file is given.
 *   /_control/rebalance?after_ms=T&at_step=N&time=S      AWS rebalance recommendation.
 *   /_control/mode?m=MODE[&delay_ms=D][&count=C][&provider=P][&size=BYTES]
 *       How metadata requests are answered (control requests never change):
 *       normal; slow (wait delay_ms, then answer normally); garbage (200, the
 *       notice "bait" followed by a NUL and binary junk); truncated (200, the
 *       first half of the bait with a matching Content-Length); partial
 *       (Content-Length of the whole bait, half sent, connection closed); huge
 *       (200, the bait padded to size bytes, default 8 MiB); refuse (the
 *       connection is closed without an answer); redirect (302 to
 *       http://localhost:<port>/_redirected<path>, which serves the bait and is
 *       counted as redirected_hits); a status code 400..599 such as 500 or 503
 *       (that status with the bait as body). The bait is what a notice would
 *       look like, so a client that ignores status, size or framing would stop.
 *       expired_token is an action, not a mode: every AWS token issued so far
 *       expires now. count limits the mode to the next C metadata requests;
 *       provider limits it to one protocol.
 *   /_control/aws?imdsv1=0|1&token_api=0|1   IMDSv1 allowed (default 1); token
 *       PUT available (default 1; 0 answers 404 as a service without IMDSv2).
 *   GET /_control/state   JSON: "requests" per "METHOD path" (metadata paths,
 *       counted on arrival, refused ones included), "by_provider", "statuses"
 *       sent on metadata paths, "tokens_issued", "gcp_waits" (hanging GETs
 *       that waited), "acks" [{EventId, known}], "azure_events", "step",
 *       "mode", "pending_notices", "redirected_hits", "refused", ...
 *   /_control/reset       back to the start state (counters, notices, modes).
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_TOKENS 128
#define MAX_PENDING 32
#define MAX_AZ_EVENTS 8
#define MAX_ACKS 32
#define MAX_COUNTERS 64
#define MAX_BODY (1u << 20)
#define HUGE_DEFAULT (8u << 20)
#define GCP_MAX_WAIT_S 300
#define AWS_TTL_HEADER "X-aws-ec2-metadata-token-ttl-seconds"
#define AWS_TOKEN_HEADER "X-aws-ec2-metadata-token"

enum { P_AWS = 1, P_GCP = 2, P_AZURE = 4, P_ALL = 7 };

typedef enum {
	MODE_NORMAL,
	MODE_SLOW,
	MODE_GARBAGE,
	MODE_TRUNCATED,
	MODE_PARTIAL,
	MODE_HUGE,
	MODE_REFUSE,
	MODE_STATUS,
	MODE_REDIRECT,
} mode_kind;

static const char *const mode_names[] = {
	"normal", "slow", "garbage", "truncated", "partial", "huge", "refuse", "status", "redirect",
};

typedef struct mode {
	mode_kind kind;
	int status;       /* MODE_STATUS: the status to answer */
	int delay_ms;     /* MODE_SLOW */
	long count;       /* requests left in this mode, -1 = unlimited */
	int providers;    /* P_* mask the mode applies to */
	size_t huge;      /* MODE_HUGE body size */
} mode;

typedef struct pending {
	bool used;
	int providers;      /* P_* mask */
	bool rebalance;     /* AWS rebalance recommendation instead of a notice */
	char action[32];
	char time[64];      /* "" = default */
	char resources[256];
	char event_id[64];  /* "" = random */
	int duration;
	bool indent;
	double fire_at;     /* monotonic seconds */
	long at_step;       /* -1 = no step condition */
} pending;

typedef struct az_event {
	char id[64];
	char type[32];
	char resources[256]; /* comma-separated */
	char status[16];     /* Scheduled, Started */
	char not_before[64];
	int duration;
} az_event;

typedef struct token {
	char value[64];
	double expires; /* monotonic seconds */
} token;

typedef struct counter {
	char key[128];
	long n;
} counter;

typedef struct mock {
	pthread_mutex_t mu;
	pthread_cond_t cv;   /* broadcast on every state change and on quit */
	bool quitting;
	int port;
	bool verbose;
	char vm_name[64];
	char step_file[512];
	long step;
	uint64_t rng;
	mode mode;
	/* AWS */
	bool imdsv1, token_api;
	token tokens[MAX_TOKENS];
	long tokens_issued;
	char aws_action[32], aws_time[64];
	bool aws_indent;
	char aws_rebalance[64]; /* noticeTime, "" = none */
	/* GCP */
	bool gcp_preempted;
	char gcp_etag[32];
	long gcp_waits;         /* hanging GETs that waited for a change */
	/* Azure */
	long az_incarnation;
	az_event az[MAX_AZ_EVENTS];
	int naz;
	struct {
		char id[64];
		bool known;
	} acks[MAX_ACKS];
	int nacks;
	/* scheduling and counters */
	pending pend[MAX_PENDING];
	counter counts[MAX_COUNTERS];
	long by_provider[3];
	long status_counts[600];
	long redirected_hits, refused, control_requests;
} mock;

typedef struct request {
	char *body;
	size_t len;
	bool too_big;
} request;

/* ------------------------------------------------------------------ */
/* small helpers                                                       */
/* ------------------------------------------------------------------ */

static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void copy_str(char *dst, size_t n, const char *src)
{
	size_t len = src ? strnlen(src, n - 1) : 0;
	memcpy(dst, src ? src : "", len);
	dst[len] = '\0';
}

static uint64_t rng_next(mock *m)
{
	uint64_t x = m->rng; /* xorshift64* */
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	m->rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static void fmt_rfc3339(char *buf, size_t n, double offset_s)
{
	time_t t = time(NULL) + (time_t)offset_s;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void fmt_rfc1123(char *buf, size_t n, double offset_s)
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const mons[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t t = time(NULL) + (time_t)offset_s;
	struct tm tm;
	gmtime_r(&t, &tm);
	snprintf(buf, n, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
		 mons[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Strict decimal integer within [lo, hi]. */
static bool parse_long(const char *s, long lo, long hi, long *out)
{
	if (!s || !*s)
		return false;
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

static int provider_of_path(const char *url)
{
	if (strncmp(url, "/latest/", 8) == 0)
		return P_AWS;
	if (strncmp(url, "/computeMetadata/", 17) == 0)
		return P_GCP;
	if (strncmp(url, "/metadata/", 10) == 0)
		return P_AZURE;
	return 0;
}

static int provider_mask(const char *s, int dflt)
{
	if (!s || !*s)
		return dflt;
	if (strcmp(s, "aws") == 0)
		return P_AWS;
	if (strcmp(s, "gcp") == 0)
		return P_GCP;
	if (strcmp(s, "azure") == 0)
		return P_AZURE;
	if (strcmp(s, "all") == 0)
		return P_ALL;
	return -1;
}

static const char *arg(struct MHD_Connection *c, const char *key)
{
	return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, key);
}

static const char *header(struct MHD_Connection *c, const char *key)
{
	return MHD_lookup_connection_value(c, MHD_HEADER_KIND, key);
}

/* Count one metadata request under "METHOD path" (m->mu held). */
static void count_request(mock *m, const char *method, const char *url)
{
	char key[128];
	snprintf(key, sizeof key, "%s %s", method, url);
	for (int i = 0; i < MAX_COUNTERS; i++) {
		if (m->counts[i].key[0] == '\0') {
			copy_str(m->counts[i].key, sizeof m->counts[i].key, key);
			m->counts[i].n = 1;
			return;
		}
		if (strcmp(m->counts[i].key, key) == 0) {
			m->counts[i].n++;
			return;
		}
	}
}

/* ------------------------------------------------------------------ */
/* responses                                                           */
/* ------------------------------------------------------------------ */

/* Queue a response with body (copied) and extra headers (name, value, ..., NULL).
 * Metadata answers (m != NULL) are counted in statuses; control answers pass NULL. */
static enum MHD_Result reply_hdrs(mock *m, struct MHD_Connection *c, int status,
				  const char *ctype, const char *body, size_t len,
				  const char *const *hdrs)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(len, (void *)(body ? body : ""), MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	if (ctype)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	for (size_t i = 0; hdrs && hdrs[i] && hdrs[i + 1]; i += 2)
		MHD_add_response_header(r, hdrs[i], hdrs[i + 1]);
	enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
	MHD_destroy_response(r);
	if (m) {
		pthread_mutex_lock(&m->mu);
		if (status >= 0 && status < 600)
			m->status_counts[status]++;
		pthread_mutex_unlock(&m->mu);
	}
	return ret;
}

static enum MHD_Result reply(mock *m, struct MHD_Connection *c, int status, const char *ctype,
			     const char *body)
{
	return reply_hdrs(m, c, status, ctype, body, strlen(body), NULL);
}

/* A control answer (not counted in statuses); takes ownership of j. */
static enum MHD_Result reply_json(mock *m, struct MHD_Connection *c, int status, cJSON *j)
{
	char *s = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	if (!s)
		return MHD_NO;
	(void)m;
	enum MHD_Result ret = reply(NULL, c, status, "application/json", s);
	free(s);
	return ret;
}

static enum MHD_Result control_error(mock *m, struct MHD_Connection *c, int status, const char *msg)
{
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "error", msg);
	return reply_json(m, c, status, j);
}

/* The HTML page the EC2 metadata service answers errors with. */
static enum MHD_Result aws_html(mock *m, struct MHD_Connection *c, int status, const char *text)
{
	char body[1024];
	snprintf(body, sizeof body,
		 "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n"
		 "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\"\n"
		 "\t\"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n"
		 "<html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n"
		 " <head>\n  <title>%d - %s</title>\n </head>\n"
		 " <body>\n  <h1>%d - %s</h1>\n </body>\n</html>\n",
		 status, text, status, text);
	return reply(m, c, status, "text/html", body);
}

static const char *const gcp_headers_base[] = {"Metadata-Flavor", "Google", "Server",
					       "Metadata Server for VM", NULL};

/* ------------------------------------------------------------------ */
/* bait: what a notice looks like, for the misbehaving modes            */
/* ------------------------------------------------------------------ */

static char *azure_doc(mock *m, bool with_bait); /* below */

/* A malloc'd bait body for provider p (m->mu not held). */
static char *make_bait(mock *m, int p)
{
	char t[64], buf[256];
	if (p == P_AWS) {
		fmt_rfc3339(t, sizeof t, 120);
		snprintf(buf, sizeof buf, "{\"action\": \"terminate\", \"time\": \"%s\"}", t);
		return strdup(buf);
	}
	if (p == P_GCP)
		return strdup("TRUE");
	if (p == P_AZURE) {
		pthread_mutex_lock(&m->mu);
		char *s = azure_doc(m, true);
		pthread_mutex_unlock(&m->mu);
		return s;
	}
	return strdup("bait");
}

/* Headers a provider's normal answer carries (so a careless client is fooled). */
static const char *const *bait_headers(int p)
{
	return p == P_GCP ? gcp_headers_base : NULL;
}

typedef struct partial_ctx {
	char *data;
	size_t send; /* bytes sent before the connection is broken */
} partial_ctx;

static ssize_t partial_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	partial_ctx *pc = cls;
	if (pos >= pc->send)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	size_t n = pc->send - (size_t)pos;
	if (n > max)
		n = max;
	memcpy(buf, pc->data + pos, n);
	return (ssize_t)n;
}

static void partial_free(void *cls)
{
	partial_ctx *pc = cls;
	free(pc->data);
	free(pc);
}

/* Answer a metadata request according to a misbehaving mode. */
static enum MHD_Result misbehave(mock *m, struct MHD_Connection *c, int p, const char *url,
				 const mode *md)
{
	char *bait = make_bait(m, p);
	if (!bait)
		return MHD_NO;
	size_t blen = strlen(bait);
	const char *ctype = p == P_AZURE ? "application/json; charset=utf-8" : "text/plain";
	enum MHD_Result ret = MHD_NO;
	switch (md->kind) {
	case MODE_GARBAGE: {
		static const char junk[] = "\0\xff\xfe garbage \x01\x02\x7f{{{\"action\":";
		size_t len = blen + sizeof junk - 1;
		char *b = malloc(len);
		if (b) {
			memcpy(b, bait, blen);
			memcpy(b + blen, junk, sizeof junk - 1);
			ret = reply_hdrs(m, c, 200, ctype, b, len, bait_headers(p));
			free(b);
		}
		break;
	}
	case MODE_TRUNCATED:
		ret = reply_hdrs(m, c, 200, ctype, bait, blen / 2, bait_headers(p));
		break;
	case MODE_PARTIAL: {
		partial_ctx *pc = malloc(sizeof *pc);
		if (!pc)
			break;
		pc->data = bait;
		pc->send = blen / 2;
		bait = NULL;
		struct MHD_Response *r =
			MHD_create_response_from_callback(blen, 1024, partial_reader, pc, partial_free);
		if (!r) {
			partial_free(pc);
			break;
		}
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
		const char *const *h = bait_headers(p);
		for (size_t i = 0; h && h[i] && h[i + 1]; i += 2)
			MHD_add_response_header(r, h[i], h[i + 1]);
		ret = MHD_queue_response(c, 200, r);
		MHD_destroy_response(r);
		pthread_mutex_lock(&m->mu);
		m->status_counts[200]++;
		pthread_mutex_unlock(&m->mu);
		break;
	}
	case MODE_HUGE: {
		size_t size = md->huge > blen + 64 ? md->huge : blen + 64;
		char *b = malloc(size);
		if (!b)
			break;
		if (p == P_GCP) {
			memcpy(b, bait, blen); /* "TRUE" and then whitespace */
			for (size_t i = blen; i < size; i++)
				b[i] = (i % 64 == 63) ? '\n' : ' ';
		} else {
			/* {"pad": "xxxx...", <the bait's members>} */
			const char *head = "{\"pad\": \"";
			size_t hl = strlen(head);
			size_t tail = blen - 1; /* bait without its '{' */
			size_t fill = size - hl - 3 - tail;
			memcpy(b, head, hl);
			memset(b + hl, 'x', fill);
			memcpy(b + hl + fill, "\", ", 3);
			memcpy(b + hl + fill + 3, bait + 1, tail);
		}
		struct MHD_Response *r =
			MHD_create_response_from_buffer(size, b, MHD_RESPMEM_MUST_FREE);
		if (!r) {
			free(b);
			break;
		}
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
		const char *const *h = bait_headers(p);
		for (size_t i = 0; h && h[i] && h[i + 1]; i += 2)
			MHD_add_response_header(r, h[i], h[i + 1]);
		ret = MHD_queue_response(c, 200, r);
		MHD_destroy_response(r);
		pthread_mutex_lock(&m->mu);
		m->status_counts[200]++;
		pthread_mutex_unlock(&m->mu);
		break;
	}
	case MODE_STATUS:
		ret = reply_hdrs(m, c, md->status, ctype, bait, blen, bait_headers(p));
		break;
	case MODE_REDIRECT: {
		char loc[600];
		snprintf(loc, sizeof loc, "http://localhost:%d/_redirected%s", m->port, url);
		const char *h[] = {"Location", loc, "Metadata-Flavor", "Google", NULL};
		ret = reply_hdrs(m, c, 302, ctype, bait, blen, h);
		break;
	}
	default:
		break;
	}
	free(bait);
	return ret;
}

/* Take the mode for one metadata request of provider p (counts it down; refuse is
 * taken by take_refuse when the request arrives). */
static mode take_mode(mock *m, int p)
{
	mode md = {.kind = MODE_NORMAL};
	pthread_mutex_lock(&m->mu);
	if (m->mode.kind != MODE_NORMAL && m->mode.kind != MODE_REFUSE && (m->mode.providers & p)) {
		md = m->mode;
		if (m->mode.count > 0 && --m->mode.count == 0)
			m->mode.kind = MODE_NORMAL;
	}
	pthread_mutex_unlock(&m->mu);
	return md;
}

/* True if a request of provider p is to be refused (counts the mode down). */
static bool take_refuse(mock *m, int p)
{
	bool refuse = false;
	pthread_mutex_lock(&m->mu);
	if (m->mode.kind == MODE_REFUSE && (m->mode.providers & p)) {
		refuse = true;
		m->refused++;
		if (m->mode.count > 0 && --m->mode.count == 0)
			m->mode.kind = MODE_NORMAL;
	}
	pthread_mutex_unlock(&m->mu);
	return refuse;
}

/* Sleep ms unless the mock is quitting. */
static void mock_sleep(mock *m, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&m->mu);
	while (!m->quitting && pthread_cond_timedwait(&m->cv, &m->mu, &ts) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&m->mu);
}

/* ------------------------------------------------------------------ */
/* AWS                                                                 */
/* ------------------------------------------------------------------ */

static enum MHD_Result aws_token(mock *m, struct MHD_Connection *c, const char *method)
{
	if (strcmp(method, "PUT") != 0)
		return aws_html(m, c, 405, "Method Not Allowed");
	if (header(c, "X-Forwarded-For"))
		return aws_html(m, c, 403, "Forbidden");
	pthread_mutex_lock(&m->mu);
	bool api = m->token_api;
	pthread_mutex_unlock(&m->mu);
	if (!api)
		return aws_html(m, c, 404, "Not Found");
	long ttl;
	if (!parse_long(header(c, AWS_TTL_HEADER), 1, 21600, &ttl))
		return aws_html(m, c, 400, "Bad Request");
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char tok[64] = "AQAEA";
	pthread_mutex_lock(&m->mu);
	for (size_t i = 5; i < 53; i++)
		tok[i] = alphabet[rng_next(m) % 64];
	tok[53] = '=';
	tok[54] = '=';
	tok[55] = '\0';
	token *slot = &m->tokens[m->tokens_issued % MAX_TOKENS];
	copy_str(slot->value, sizeof slot->value, tok);
	slot->expires = mono_now() + (double)ttl;
	m->tokens_issued++;
	pthread_mutex_unlock(&m->mu);
	char ttl_s[24];
	snprintf(ttl_s, sizeof ttl_s, "%ld", ttl);
	const char *h[] = {AWS_TTL_HEADER, ttl_s, NULL};
	return reply_hdrs(m, c, 200, "text/plain", tok, strlen(tok), h);
}

/* 0: allowed; 401 otherwise. */
static int aws_check_token(mock *m, struct MHD_Connection *c)
{
	const char *t = header(c, AWS_TOKEN_HEADER);
	int rc = 401;
	pthread_mutex_lock(&m->mu);
	if (!t) {
		rc = m->imdsv1 ? 0 : 401;
	} else {
		double now = mono_now();
		for (int i = 0; i < MAX_TOKENS; i++)
			if (m->tokens[i].value[0] && strcmp(m->tokens[i].value, t) == 0 &&
			    now < m->tokens[i].expires)
				rc = 0;
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

static enum MHD_Result aws_handle(mock *m, struct MHD_Connection *c, const char *url,
				  const char *method)
{
	if (strcmp(url, "/latest/api/token") == 0)
		return aws_token(m, c, method);
	if (strcmp(method, "GET") != 0)
		return aws_html(m, c, 405, "Method Not Allowed");
	if (aws_check_token(m, c) != 0)
		return aws_html(m, c, 401, "Unauthorized");
	char body[512];
	body[0] = '\0';
	pthread_mutex_lock(&m->mu);
	if (strcmp(url, "/latest/meta-data/spot/instance-action") == 0 && m->aws_action[0]) {
		if (m->aws_indent)
			snprintf(body, sizeof body, "{\n  \"action\" : \"%s\",\n  \"time\" : \"%s\"\n}",
				 m->aws_action, m->aws_time);
		else
			snprintf(body, sizeof body, "{\"action\": \"%s\", \"time\": \"%s\"}",
				 m->aws_action, m->aws_time);
	} else if (strcmp(url, "/latest/meta-data/events/recommendations/rebalance") == 0 &&
		   m->aws_rebalance[0]) {
		snprintf(body, sizeof body, "{\"noticeTime\": \"%s\"}", m->aws_rebalance);
	} else if (strcmp(url, "/latest/meta-data/instance-id") == 0) {
		copy_str(body, sizeof body, "i-0123456789abcdef0");
	}
	pthread_mutex_unlock(&m->mu);
	if (!body[0])
		return aws_html(m, c, 404, "Not Found");
	return reply(m, c, 200, "text/plain", body);
}

/* ------------------------------------------------------------------ */
/* GCP                                                                 */
/* ------------------------------------------------------------------ */

static void gcp_new_etag(mock *m)
{
	snprintf(m->gcp_etag, sizeof m->gcp_etag, "%016llx", (unsigned long long)rng_next(m));
}

static enum MHD_Result gcp_handle(mock *m, struct MHD_Connection *c, const char *url,
				  const char *method)
{
	const char *flavor = header(c, "Metadata-Flavor");
	if (header(c, "X-Forwarded-For") || !flavor || strcmp(flavor, "Google") != 0) {
		const char *msg =
			"<!DOCTYPE html>\n<html lang=en>\n<title>Error 403 (Forbidden)!!1</title>\n"
			"<p><b>403.</b> <ins>That's an error.</ins>\n<p>Your client does not have "
			"permission to get URL from this server. Missing Metadata-Flavor:Google header. "
			"<ins>That's all we know.</ins>\n";
		return reply_hdrs(m, c, 403, "text/html; charset=UTF-8", msg, strlen(msg),
				  gcp_headers_base);
	}
	if (strcmp(method, "GET") != 0)
		return reply_hdrs(m, c, 405, "text/html", "Method Not Allowed", 18, gcp_headers_base);
	if (strcmp(url, "/computeMetadata/v1/instance/preempted") != 0)
		return reply_hdrs(m, c, 404, "text/html", "Not Found", 9, gcp_headers_base);

	const char *wfc = arg(c, "wait_for_change");
	bool wait = wfc && strcasecmp(wfc, "true") == 0;
	long timeout_s = GCP_MAX_WAIT_S;
	const char *ts = arg(c, "timeout_sec");
	if (ts && !parse_long(ts, 1, 86400, &timeout_s))
		return reply_hdrs(m, c, 400, "text/plain", "Invalid timeout_sec", 19, gcp_headers_base);
	if (timeout_s > GCP_MAX_WAIT_S)
		timeout_s = GCP_MAX_WAIT_S;
	const char *last = arg(c, "last_etag");

	char etag[32];
	bool value;
	pthread_mutex_lock(&m->mu);
	if (wait && (!last || strcmp(last, m->gcp_etag) == 0)) {
		m->gcp_waits++;
		char start[32];
		copy_str(start, sizeof start, m->gcp_etag);
		struct timespec dl;
		clock_gettime(CLOCK_MONOTONIC, &dl);
		dl.tv_sec += timeout_s;
		while (!m->quitting && strcmp(start, m->gcp_etag) == 0)
			if (pthread_cond_timedwait(&m->cv, &m->mu, &dl) == ETIMEDOUT)
				break;
	}
	copy_str(etag, sizeof etag, m->gcp_etag);
	value = m->gcp_preempted;
	pthread_mutex_unlock(&m->mu);
	const char *h[] = {"Metadata-Flavor", "Google", "Server", "Metadata Server for VM",
			   "ETag", etag, NULL};
	const char *body = value ? "TRUE" : "FALSE";
	return reply_hdrs(m, c, 200, "application/text", body, strlen(body), h);
}

/* ------------------------------------------------------------------ */
/* Azure                                                               */
/* ------------------------------------------------------------------ */

static void add_resources(cJSON *ev, const char *list)
{
	cJSON *arr = cJSON_AddArrayToObject(ev, "Resources");
	char buf[256];
	copy_str(buf, sizeof buf, list);
	char *save = NULL;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		cJSON_AddItemToArray(arr, cJSON_CreateString(tok));
}

/* The scheduled-events document (m->mu held); with_bait adds a Preempt for this VM. */
static char *azure_doc(mock *m, bool with_bait)
{
	cJSON *doc = cJSON_CreateObject();
	cJSON_AddNumberToObject(doc, "DocumentIncarnation", (double)m->az_incarnation + with_bait);
	cJSON *arr = cJSON_AddArrayToObject(doc, "Events");
	for (int i = 0; i < m->naz + (with_bait ? 1 : 0); i++) {
		az_event bait;
		const az_event *e = &m->az[i];
		if (i == m->naz) {
			memset(&bait, 0, sizeof bait);
			copy_str(bait.id, sizeof bait.id, "00000000-BA17-4BA1-8BA1-0000000000BA");
			copy_str(bait.type, sizeof bait.type, "Preempt");
			copy_str(bait.resources, sizeof bait.resources, m->vm_name);
			copy_str(bait.status, sizeof bait.status, "Scheduled");
			fmt_rfc1123(bait.not_before, sizeof bait.not_before, 30);
			bait.duration = -1;
			e = &bait;
		}
		cJSON *ev = cJSON_CreateObject();
		cJSON_AddStringToObject(ev, "EventId", e->id);
		cJSON_AddStringToObject(ev, "EventType", e->type);
		cJSON_AddStringToObject(ev, "ResourceType", "VirtualMachine");
		add_resources(ev, e->resources);
		cJSON_AddStringToObject(ev, "EventStatus", e->status);
		cJSON_AddStringToObject(ev, "NotBefore", e->not_before);
		cJSON_AddStringToObject(ev, "Description", "Virtual machine is being preempted.");
		cJSON_AddStringToObject(ev, "EventSource", "Platform");
		cJSON_AddNumberToObject(ev, "DurationInSeconds", e->duration);
		cJSON_AddItemToArray(arr, ev);
	}
	char *s = cJSON_PrintUnformatted(doc);
	cJSON_Delete(doc);
	return s;
}

static bool azure_api_version_ok(const char *v)
{
	static const char *const known[] = {
		"2017-08-01", "2017-11-01", "2018-10-01", "2019-01-01", "2019-03-11", "2019-08-01",
		"2020-06-01", "2020-07-01", "2020-07-15", "2020-09-01", "2021-01-01", "2021-02-01",
		"2021-03-01", "2021-05-01", "2021-10-01", "2021-12-13", "2023-07-01",
	};
	for (size_t i = 0; v && i < sizeof known / sizeof known[0]; i++)
		if (strcmp(v, known[i]) == 0)
			return true;
	return false;
}

static enum MHD_Result azure_error(mock *m, struct MHD_Connection *c, int status, const char *msg)
{
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "error", msg);
	char *s = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	enum MHD_Result ret = reply(m, c, status, "application/json; charset=utf-8", s ? s : "{}");
	free(s);
	return ret;
}

/* POST StartRequests: record each EventId; known events become Started. */
static enum MHD_Result azure_ack(mock *m, struct MHD_Connection *c, const request *rq)
{
	if (rq->too_big || !rq->body)
		return azure_error(m, c, 400, "Bad request. The request body is not valid.");
	cJSON *j = cJSON_ParseWithLength(rq->body, rq->len);
	const cJSON *reqs = cJSON_GetObjectItemCaseSensitive(j, "StartRequests");
	if (!cJSON_IsObject(j) || !cJSON_IsArray(reqs)) {
		cJSON_Delete(j);
		return azure_error(m, c, 400, "Bad request. The request body is not valid.");
	}
	const cJSON *it;
	cJSON_ArrayForEach(it, reqs) {
		if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(it, "EventId"))) {
			cJSON_Delete(j);
			return azure_error(m, c, 400, "Bad request. EventId is missing.");
		}
	}
	pthread_mutex_lock(&m->mu);
	bool changed = false;
	cJSON_ArrayForEach(it, reqs) {
		const char *id = cJSON_GetObjectItemCaseSensitive(it, "EventId")->valuestring;
		bool known = false;
		for (int i = 0; i < m->naz; i++) {
			if (strcmp(m->az[i].id, id) == 0) {
				known = true;
				if (strcmp(m->az[i].status, "Started") != 0) {
					copy_str(m->az[i].status, sizeof m->az[i].status, "Started");
					changed = true;
				}
			}
		}
		if (m->nacks < MAX_ACKS) {
			copy_str(m->acks[m->nacks].id, sizeof m->acks[m->nacks].id, id);
			m->acks[m->nacks].known = known;
			m->nacks++;
		}
	}
	if (changed) {
		m->az_incarnation++;
		pthread_cond_broadcast(&m->cv);
	}
	pthread_mutex_unlock(&m->mu);
	cJSON_Delete(j);
	return reply(m, c, 200, "application/json; charset=utf-8", "");
}

static enum MHD_Result azure_handle(mock *m, struct MHD_Connection *c, const char *url,
				    const char *method, const request *rq)
{
	if (header(c, "X-Forwarded-For"))
		return azure_error(m, c, 400, "Bad request. Requests with X-Forwarded-For are not allowed.");
	const char *md = header(c, "Metadata");
	if (!md || strcasecmp(md, "true") != 0)
		return azure_error(m, c, 400, "Bad request. Required metadata header not specified");
	const char *ver = arg(c, "api-version");
	if (!ver)
		return azure_error(m, c, 400, "Bad request. api-version was not specified in the request. "
				   "For more information refer to aka.ms/azureimds");
	if (!azure_api_version_ok(ver))
		return azure_error(m, c, 400, "Bad request. api-version is invalid or was not specified "
				   "in the proper format. For more information refer to aka.ms/azureimds");
	if (strcmp(url, "/metadata/scheduledevents") == 0) {
		if (strcmp(method, "POST") == 0)
			return azure_ack(m, c, rq);
		if (strcmp(method, "GET") != 0)
			return azure_error(m, c, 405, "Method not allowed");
		pthread_mutex_lock(&m->mu);
		char *doc = azure_doc(m, false);
		pthread_mutex_unlock(&m->mu);
		if (!doc)
			return MHD_NO;
		enum MHD_Result ret = reply(m, c, 200, "application/json; charset=utf-8", doc);
		free(doc);
		return ret;
	}
	if (strcmp(url, "/metadata/instance/compute/name") == 0 && strcmp(method, "GET") == 0) {
		const char *fmt = arg(c, "format");
		if (!fmt || strcmp(fmt, "text") != 0)
			return azure_error(m, c, 400, "Bad request. Query parameter format=text is "
					   "required for leaf nodes");
		char name[64];
		pthread_mutex_lock(&m->mu);
		copy_str(name, sizeof name, m->vm_name);
		pthread_mutex_unlock(&m->mu);
		return reply(m, c, 200, "text/plain; charset=utf-8", name);
	}
	return azure_error(m, c, 404, "Not found");
}

/* ------------------------------------------------------------------ */
/* notices and the ticker                                              */
/* ------------------------------------------------------------------ */

/* Make a pending notice take effect (m->mu held). */
static void fire(mock *m, const pending *pd)
{
	if (pd->rebalance) {
		if (pd->time[0])
			copy_str(m->aws_rebalance, sizeof m->aws_rebalance, pd->time);
		else
			fmt_rfc3339(m->aws_rebalance, sizeof m->aws_rebalance, 0);
		return;
	}
	if (pd->providers & P_AWS) {
		bool valid = strcmp(pd->action, "terminate") == 0 || strcmp(pd->action, "stop") == 0 ||
			     strcmp(pd->action, "hibernate") == 0;
		copy_str(m->aws_action, sizeof m->aws_action, valid ? pd->action : "terminate");
		if (pd->time[0])
			copy_str(m->aws_time, sizeof m->aws_time, pd->time);
		else
			fmt_rfc3339(m->aws_time, sizeof m->aws_time, 120);
		m->aws_indent = pd->indent;
	}
	if ((pd->providers & P_GCP) && !m->gcp_preempted) {
		m->gcp_preempted = true;
		gcp_new_etag(m);
	}
	if ((pd->providers & P_AZURE) && m->naz < MAX_AZ_EVENTS) {
		az_event *e = &m->az[m->naz++];
		memset(e, 0, sizeof *e);
		if (pd->event_id[0]) {
			copy_str(e->id, sizeof e->id, pd->event_id);
		} else {
			uint64_t a = rng_next(m), b = rng_next(m);
			snprintf(e->id, sizeof e->id, "%08X-%04X-4%03X-8%03X-%012llX",
				 (unsigned)(a >> 32), (unsigned)(a >> 16) & 0xffff,
				 (unsigned)a & 0xfff, (unsigned)(b >> 48) & 0xfff,
				 (unsigned long long)(b & 0xffffffffffffULL));
		}
		copy_str(e->type, sizeof e->type, pd->action[0] && !(pd->providers & P_AWS)
			 ? pd->action : "Preempt");
		copy_str(e->resources, sizeof e->resources,
			 pd->resources[0] ? pd->resources : m->vm_name);
		copy_str(e->status, sizeof e->status, "Scheduled");
		if (pd->time[0] && !(pd->providers & P_AWS))
			copy_str(e->not_before, sizeof e->not_before, pd->time);
		else
			fmt_rfc1123(e->not_before, sizeof e->not_before, 30);
		e->duration = pd->duration;
		m->az_incarnation++;
	}
}

/* Read the step from the step file: a number, or JSON with a numeric "step". */
static bool read_step(const char *path, long *out)
{
	char buf[4096];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	const char *p = buf;
	while (isspace((unsigned char)*p))
		p++;
	if (*p == '{') {
		cJSON *j = cJSON_Parse(p);
		const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "step");
		bool ok = cJSON_IsNumber(s);
		if (ok)
			*out = (long)s->valuedouble;
		cJSON_Delete(j);
		return ok;
	}
	char *end;
	errno = 0;
	long v = strtol(p, &end, 10);
	if (errno || end == p)
		return false;
	*out = v;
	return true;
}

/* Every 10 ms: read the step file, fire due notices, wake waiters on change. */
static void *ticker_main(void *arg)
{
	mock *m = arg;
	for (;;) {
		long step = 0;
		bool have = m->step_file[0] && read_step(m->step_file, &step);
		pthread_mutex_lock(&m->mu);
		if (m->quitting) {
			pthread_mutex_unlock(&m->mu);
			break;
		}
		if (have)
			m->step = step;
		double now = mono_now();
		bool changed = false;
		for (int i = 0; i < MAX_PENDING; i++) {
			pending *pd = &m->pend[i];
			if (pd->used && now >= pd->fire_at && (pd->at_step < 0 || m->step >= pd->at_step)) {
				fire(m, pd);
				pd->used = false;
				changed = true;
				if (m->verbose)
					fprintf(stderr, "mock_imds: notice fired (step %ld)\n", m->step);
			}
		}
		if (changed)
			pthread_cond_broadcast(&m->cv);
		pthread_mutex_unlock(&m->mu);
		struct timespec ts = {0, 10 * 1000000L};
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* control interface                                                   */
/* ------------------------------------------------------------------ */

/* Reset to the start state (m->mu held). */
static void reset_state(mock *m)
{
	memset(&m->mode, 0, sizeof m->mode);
	m->mode.kind = MODE_NORMAL;
	m->imdsv1 = true;
	m->token_api = true;
	memset(m->tokens, 0, sizeof m->tokens);
	m->tokens_issued = 0;
	m->aws_action[0] = m->aws_time[0] = m->aws_rebalance[0] = '\0';
	m->aws_indent = false;
	m->gcp_preempted = false;
	gcp_new_etag(m);
	m->gcp_waits = 0;
	m->az_incarnation = 1;
	m->naz = 0;
	m->nacks = 0;
	memset(m->pend, 0, sizeof m->pend);
	memset(m->counts, 0, sizeof m->counts);
	memset(m->by_provider, 0, sizeof m->by_provider);
	memset(m->status_counts, 0, sizeof m->status_counts);
	m->redirected_hits = m->refused = m->control_requests = 0;
	if (!m->step_file[0])
		m->step = 0;
	pthread_cond_broadcast(&m->cv);
}

static cJSON *state_json(mock *m)
{
	cJSON *j = cJSON_CreateObject();
	pthread_mutex_lock(&m->mu);
	cJSON_AddNumberToObject(j, "port", m->port);
	cJSON_AddNumberToObject(j, "step", (double)m->step);
	cJSON_AddStringToObject(j, "mode", mode_names[m->mode.kind]);
	if (m->mode.kind == MODE_STATUS)
		cJSON_AddNumberToObject(j, "mode_status", m->mode.status);
	cJSON_AddNumberToObject(j, "mode_count", (double)m->mode.count);
	cJSON *req = cJSON_AddObjectToObject(j, "requests");
	for (int i = 0; i < MAX_COUNTERS && m->counts[i].key[0]; i++)
		cJSON_AddNumberToObject(req, m->counts[i].key, (double)m->counts[i].n);
	cJSON *bp = cJSON_AddObjectToObject(j, "by_provider");
	cJSON_AddNumberToObject(bp, "aws", (double)m->by_provider[0]);
	cJSON_AddNumberToObject(bp, "gcp", (double)m->by_provider[1]);
	cJSON_AddNumberToObject(bp, "azure", (double)m->by_provider[2]);
	cJSON *st = cJSON_AddObjectToObject(j, "statuses");
	for (int s = 0; s < 600; s++) {
		if (m->status_counts[s]) {
			char k[16];
			snprintf(k, sizeof k, "%d", s);
			cJSON_AddNumberToObject(st, k, (double)m->status_counts[s]);
		}
	}
	cJSON_AddNumberToObject(j, "tokens_issued", (double)m->tokens_issued);
	cJSON_AddNumberToObject(j, "gcp_waits", (double)m->gcp_waits);
	cJSON_AddStringToObject(j, "gcp_etag", m->gcp_etag);
	cJSON_AddBoolToObject(j, "gcp_preempted", m->gcp_preempted);
	cJSON_AddStringToObject(j, "aws_action", m->aws_action);
	cJSON_AddStringToObject(j, "aws_rebalance", m->aws_rebalance);
	cJSON_AddNumberToObject(j, "azure_incarnation", (double)m->az_incarnation);
	cJSON *evs = cJSON_AddArrayToObject(j, "azure_events");
	for (int i = 0; i < m->naz; i++) {
		cJSON *e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "EventId", m->az[i].id);
		cJSON_AddStringToObject(e, "EventType", m->az[i].type);
		cJSON_AddStringToObject(e, "EventStatus", m->az[i].status);
		cJSON_AddItemToArray(evs, e);
	}
	cJSON *acks = cJSON_AddArrayToObject(j, "acks");
	for (int i = 0; i < m->nacks; i++) {
		cJSON *a = cJSON_CreateObject();
		cJSON_AddStringToObject(a, "EventId", m->acks[i].id);
		cJSON_AddBoolToObject(a, "known", m->acks[i].known);
		cJSON_AddItemToArray(acks, a);
	}
	int npend = 0;
	for (int i = 0; i < MAX_PENDING; i++)
		npend += m->pend[i].used;
	cJSON_AddNumberToObject(j, "pending_notices", npend);
	cJSON_AddNumberToObject(j, "redirected_hits", (double)m->redirected_hits);
	cJSON_AddNumberToObject(j, "refused", (double)m->refused);
	cJSON_AddNumberToObject(j, "control_requests", (double)m->control_requests);
	pthread_mutex_unlock(&m->mu);
	return j;
}

static enum MHD_Result control_schedule(mock *m, struct MHD_Connection *c, bool rebalance)
{
	pending pd;
	memset(&pd, 0, sizeof pd);
	pd.used = true;
	pd.rebalance = rebalance;
	pd.providers = rebalance ? P_AWS : provider_mask(arg(c, "provider"), P_ALL);
	if (pd.providers < 0)
		return control_error(m, c, 400, "provider must be aws, gcp, azure or all");
	long after = 0, step = -1, dur = -1, indent = 0;
	if (arg(c, "after_ms") && !parse_long(arg(c, "after_ms"), 0, 86400000, &after))
		return control_error(m, c, 400, "after_ms must be 0..86400000");
	if (arg(c, "at_step") && !parse_long(arg(c, "at_step"), 0, 1L << 40, &step))
		return control_error(m, c, 400, "at_step must be a step number");
	if (arg(c, "duration_s") && !parse_long(arg(c, "duration_s"), -1, 86400, &dur))
		return control_error(m, c, 400, "duration_s must be -1..86400");
	if (arg(c, "indent") && !parse_long(arg(c, "indent"), 0, 1, &indent))
		return control_error(m, c, 400, "indent must be 0 or 1");
	const char *action = arg(c, "action");
	if (action && pd.providers == P_AWS && strcmp(action, "terminate") != 0 &&
	    strcmp(action, "stop") != 0 && strcmp(action, "hibernate") != 0)
		return control_error(m, c, 400, "AWS action must be terminate, stop or hibernate");
	copy_str(pd.action, sizeof pd.action, action);
	copy_str(pd.time, sizeof pd.time, arg(c, "time"));
	copy_str(pd.resources, sizeof pd.resources, arg(c, "resources"));
	copy_str(pd.event_id, sizeof pd.event_id, arg(c, "event_id"));
	pd.duration = (int)dur;
	pd.indent = indent != 0;
	pd.at_step = step;
	pd.fire_at = mono_now() + (double)after / 1000.0;
	pthread_mutex_lock(&m->mu);
	int slot = -1;
	for (int i = 0; i < MAX_PENDING && slot < 0; i++)
		if (!m->pend[i].used)
			slot = i;
	if (slot >= 0)
		m->pend[slot] = pd;
	pthread_mutex_unlock(&m->mu);
	if (slot < 0)
		return control_error(m, c, 409, "too many pending notices");
	cJSON *j = cJSON_CreateObject();
	cJSON_AddBoolToObject(j, "ok", 1);
	return reply_json(m, c, 200, j);
}

static enum MHD_Result control_mode(mock *m, struct MHD_Connection *c)
{
	const char *name = arg(c, "m");
	if (!name)
		return control_error(m, c, 400, "m is required");
	if (strcmp(name, "expired_token") == 0) {
		pthread_mutex_lock(&m->mu);
		double now = mono_now();
		for (int i = 0; i < MAX_TOKENS; i++)
			if (m->tokens[i].value[0])
				m->tokens[i].expires = now;
		pthread_mutex_unlock(&m->mu);
		cJSON *j = cJSON_CreateObject();
		cJSON_AddBoolToObject(j, "ok", 1);
		return reply_json(m, c, 200, j);
	}
	mode md = {.kind = MODE_NORMAL, .count = -1, .providers = P_ALL, .huge = HUGE_DEFAULT};
	long v;
	if (parse_long(name, 400, 599, &v)) {
		md.kind = MODE_STATUS;
		md.status = (int)v;
	} else {
		bool found = false;
		for (size_t i = 0; i < sizeof mode_names / sizeof mode_names[0]; i++) {
			if (i != MODE_STATUS && strcmp(name, mode_names[i]) == 0) {
				md.kind = (mode_kind)i;
				found = true;
			}
		}
		if (!found)
			return control_error(m, c, 400, "unknown mode");
	}
	if (arg(c, "delay_ms")) {
		if (!parse_long(arg(c, "delay_ms"), 0, 600000, &v))
			return control_error(m, c, 400, "delay_ms must be 0..600000");
		md.delay_ms = (int)v;
	} else if (md.kind == MODE_SLOW) {
		md.delay_ms = 5000;
	}
	if (arg(c, "count")) {
		if (!parse_long(arg(c, "count"), 1, 1L << 30, &v))
			return control_error(m, c, 400, "count must be positive");
		md.count = v;
	}
	if (arg(c, "size")) {
		if (!parse_long(arg(c, "size"), 1024, 256L << 20, &v))
			return control_error(m, c, 400, "size must be 1024..268435456");
		md.huge = (size_t)v;
	}
	md.providers = provider_mask(arg(c, "provider"), P_ALL);
	if (md.providers < 0)
		return control_error(m, c, 400, "provider must be aws, gcp, azure or all");
	pthread_mutex_lock(&m->mu);
	m->mode = md;
	pthread_mutex_unlock(&m->mu);
	cJSON *j = cJSON_CreateObject();
	cJSON_AddBoolToObject(j, "ok", 1);
	return reply_json(m, c, 200, j);
}

static enum MHD_Result control_handle(mock *m, struct MHD_Connection *c, const char *url,
				      const char *method)
{
	pthread_mutex_lock(&m->mu);
	m->control_requests++;
	pthread_mutex_unlock(&m->mu);
	const char *what = url + strlen("/_control/");
	if (strcmp(what, "state") == 0)
		return reply_json(m, c, 200, state_json(m));
	if (strcmp(method, "POST") != 0)
		return control_error(m, c, 405, "use POST for control requests other than state");
	if (strcmp(what, "notice") == 0)
		return control_schedule(m, c, false);
	if (strcmp(what, "rebalance") == 0)
		return control_schedule(m, c, true);
	if (strcmp(what, "mode") == 0)
		return control_mode(m, c);
	if (strcmp(what, "reset") == 0) {
		pthread_mutex_lock(&m->mu);
		reset_state(m);
		pthread_mutex_unlock(&m->mu);
		cJSON *j = cJSON_CreateObject();
		cJSON_AddBoolToObject(j, "ok", 1);
		return reply_json(m, c, 200, j);
	}
	if (strcmp(what, "aws") == 0) {
		long v1 = -1, api = -1;
		if (arg(c, "imdsv1") && !parse_long(arg(c, "imdsv1"), 0, 1, &v1))
			return control_error(m, c, 400, "imdsv1 must be 0 or 1");
		if (arg(c, "token_api") && !parse_long(arg(c, "token_api"), 0, 1, &api))
			return control_error(m, c, 400, "token_api must be 0 or 1");
		pthread_mutex_lock(&m->mu);
		if (v1 >= 0)
			m->imdsv1 = v1 != 0;
		if (api >= 0)
			m->token_api = api != 0;
		pthread_mutex_unlock(&m->mu);
		cJSON *j = cJSON_CreateObject();
		cJSON_AddBoolToObject(j, "ok", 1);
		return reply_json(m, c, 200, j);
	}
	if (strcmp(what, "step") == 0) {
		long n;
		if (!parse_long(arg(c, "n"), 0, 1L << 40, &n))
			return control_error(m, c, 400, "n must be a step number");
		pthread_mutex_lock(&m->mu);
		m->step = n; /* overwritten by --step-file when one is given */
		pthread_mutex_unlock(&m->mu);
		cJSON *j = cJSON_CreateObject();
		cJSON_AddBoolToObject(j, "ok", 1);
		return reply_json(m, c, 200, j);
	}
	return control_error(m, c, 404, "unknown control request");
}

/* ------------------------------------------------------------------ */
/* request dispatch                                                    */
/* ------------------------------------------------------------------ */

static bool is_control(const char *url)
{
	return strncmp(url, "/_control/", 10) == 0;
}

static enum MHD_Result metadata_handle(mock *m, struct MHD_Connection *c, const char *url,
				       const char *method, const request *rq)
{
	if (strncmp(url, "/_redirected/", 13) == 0) {
		/* only reached by a client that follows redirects: serve the bait */
		int p = provider_of_path(url + 12);
		pthread_mutex_lock(&m->mu);
		m->redirected_hits++;
		pthread_mutex_unlock(&m->mu);
		char *bait = make_bait(m, p);
		if (!bait)
			return MHD_NO;
		enum MHD_Result ret = reply_hdrs(m, c, 200, "text/plain", bait, strlen(bait),
						 bait_headers(p));
		free(bait);
		return ret;
	}
	int p = provider_of_path(url);
	if (p == 0)
		return reply(m, c, 404, "text/plain", "Not Found");
	mode md = take_mode(m, p);
	if (md.kind == MODE_SLOW) {
		mock_sleep(m, md.delay_ms);
	} else if (md.kind != MODE_NORMAL) {
		return misbehave(m, c, p, url, &md);
	}
	switch (p) {
	case P_AWS: return aws_handle(m, c, url, method);
	case P_GCP: return gcp_handle(m, c, url, method);
	default: return azure_handle(m, c, url, method, rq);
	}
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *c, const char *url,
				      const char *method, const char *version,
				      const char *upload_data, size_t *upload_data_size,
				      void **con_cls)
{
	(void)version;
	mock *m = cls;
	request *rq = *con_cls;
	if (!rq) {
		rq = calloc(1, sizeof *rq);
		if (!rq)
			return MHD_NO;
		*con_cls = rq;
		if (is_control(url))
			return MHD_YES;
		int p = provider_of_path(url);
		pthread_mutex_lock(&m->mu);
		count_request(m, method, url);
		if (p)
			m->by_provider[p == P_AWS ? 0 : p == P_GCP ? 1 : 2]++;
		pthread_mutex_unlock(&m->mu);
		if (m->verbose)
			fprintf(stderr, "mock_imds: %s %s\n", method, url);
		if (p && take_refuse(m, p))
			return MHD_NO; /* close the connection without an answer */
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		if (rq->len + n > MAX_BODY) {
			rq->too_big = true;
		} else {
			char *nb = realloc(rq->body, rq->len + n + 1);
			if (!nb)
				return MHD_NO;
			rq->body = nb;
			memcpy(rq->body + rq->len, upload_data, n);
			rq->len += n;
			rq->body[rq->len] = '\0';
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (is_control(url))
		return control_handle(m, c, url, method);
	return metadata_handle(m, c, url, method, rq);
}

static void request_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			      enum MHD_RequestTerminationCode toe)
{
	(void)cls, (void)c, (void)toe;
	request *rq = *con_cls;
	if (rq) {
		free(rq->body);
		free(rq);
		*con_cls = NULL;
	}
}

/* ------------------------------------------------------------------ */
/* main                                                                */
/* ------------------------------------------------------------------ */

/* libmicrohttpd's own messages (e.g. "closing connection" in refuse mode): only with --verbose. */
static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
	const mock *m = cls;
	if (!m->verbose)
		return;
	fputs("mock_imds: libmicrohttpd: ", stderr);
	vfprintf(stderr, fmt, ap);
}

static int write_port_file(const char *path, int port)
{
	char tmp[600];
	snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -1;
	fprintf(f, "%d\n", port);
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: mock_imds [--port N] [--port-file PATH] [--step-file PATH] "
		     "[--vm-name NAME] [--verbose]\n"
		     "Mock AWS/GCP/Azure metadata service on 127.0.0.1; prints \"PORT <n>\" first.\n");
}

int main(int argc, char **argv)
{
	static mock m;
	long port = 0;
	const char *port_file = NULL;
	copy_str(m.vm_name, sizeof m.vm_name, "vm0");
	static const struct option opts[] = {
		{"port", required_argument, NULL, 'p'},
		{"port-file", required_argument, NULL, 'f'},
		{"step-file", required_argument, NULL, 's'},
		{"vm-name", required_argument, NULL, 'n'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int o;
	while ((o = getopt_long(argc, argv, "p:f:s:n:vh", opts, NULL)) != -1) {
		switch (o) {
		case 'p':
			if (!parse_long(optarg, 0, 65535, &port)) {
				fprintf(stderr, "mock_imds: --port must be 0..65535\n");
				return 64;
			}
			break;
		case 'f': port_file = optarg; break;
		case 's': copy_str(m.step_file, sizeof m.step_file, optarg); break;
		case 'n': copy_str(m.vm_name, sizeof m.vm_name, optarg); break;
		case 'v': m.verbose = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 64;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 64;
	}

	pthread_mutex_init(&m.mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m.cv, &ca);
	pthread_condattr_destroy(&ca);
	m.rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	int ufd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (ufd >= 0) {
		uint64_t seed;
		if (read(ufd, &seed, sizeof seed) == (ssize_t)sizeof seed && seed)
			m.rng = seed;
		close(ufd);
	}
	reset_state(&m);

	/* Signals are taken by sigwait in main; every other thread inherits the block. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct sockaddr_in sin;
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* 127.0.0.1 only */
	struct MHD_Daemon *d = MHD_start_daemon(
		MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
		(uint16_t)port, NULL, NULL, access_handler, &m,
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sin,
		MHD_OPTION_NOTIFY_COMPLETED, request_completed, &m,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, &m,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(GCP_MAX_WAIT_S + 60),
		MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "mock_imds: cannot listen on 127.0.0.1:%ld\n", port);
		return 71;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	m.port = info ? (int)info->port : (int)port;
	printf("PORT %d\n", m.port);
	fflush(stdout);
	if (port_file && write_port_file(port_file, m.port) != 0) {
		fprintf(stderr, "mock_imds: cannot write --port-file %s: %s\n", port_file,
			strerror(errno));
		MHD_stop_daemon(d);
		return 73;
	}

	pthread_t ticker;
	if (pthread_create(&ticker, NULL, ticker_main, &m) != 0) {
		fprintf(stderr, "mock_imds: cannot start the ticker thread\n");
		MHD_stop_daemon(d);
		return 71;
	}
	int sig = 0;
	sigwait(&sigs, &sig);
	if (m.verbose)
		fprintf(stderr, "mock_imds: signal %d, stopping\n", sig);
	pthread_mutex_lock(&m.mu);
	m.quitting = true;
	pthread_cond_broadcast(&m.cv);
	pthread_mutex_unlock(&m.mu);
	pthread_join(ticker, NULL);
	MHD_stop_daemon(d);
	pthread_cond_destroy(&m.cv);
	pthread_mutex_destroy(&m.mu);
	return 0;
}
