/*
 * test_spot.c - interruption notices: provider names, DMI detection,
 * and the watchers of all three providers against tests/mock_imds (started as
 * a child process from $MOCK_IMDS; the tests that need it are skipped when
 * MOCK_IMDS is not set). Only 127.0.0.1 is ever contacted.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "contract.h"
#include "log.h"
#include "spot.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* the mock as a child process                                         */
/* ------------------------------------------------------------------ */

static struct {
	pid_t pid;
	int port;
	char dir[64];        /* mkdtemp dir holding the step file */
	char step_file[128];
} g_mock;

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int mock_start(void)
{
	const char *exe = getenv("MOCK_IMDS");
	if (!exe || !*exe)
		return 0;
	strcpy(g_mock.dir, "/tmp/test_spot.XXXXXX");
	if (!mkdtemp(g_mock.dir))
		return -1;
	snprintf(g_mock.step_file, sizeof g_mock.step_file, "%s/heartbeat", g_mock.dir);
	int pfd[2];
	if (pipe(pfd) != 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		dup2(pfd[1], STDOUT_FILENO);
		close(pfd[0]);
		close(pfd[1]);
		execl(exe, exe, "--port", "0", "--step-file", g_mock.step_file, "--vm-name", "vm0",
		      (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	g_mock.pid = pid;
	char line[64];
	size_t len = 0;
	while (len < sizeof line - 1) {
		struct pollfd p = {pfd[0], POLLIN, 0};
		if (poll(&p, 1, 10000) <= 0)
			break;
		ssize_t n = read(pfd[0], line + len, 1);
		if (n <= 0 || line[len] == '\n')
			break;
		len++;
	}
	line[len] = '\0';
	close(pfd[0]);
	if (sscanf(line, "PORT %d", &g_mock.port) != 1 || g_mock.port <= 0) {
		fprintf(stderr, "test_spot: mock_imds did not print its port (got \"%s\")\n", line);
		return -1;
	}
	return 0;
}

static void mock_stop(void)
{
	if (g_mock.pid > 0) {
		kill(g_mock.pid, SIGTERM);
		int st;
		for (int i = 0; i < 500; i++) {
			if (waitpid(g_mock.pid, &st, WNOHANG) == g_mock.pid) {
				g_mock.pid = 0;
				break;
			}
			sleep_ms(10);
		}
		if (g_mock.pid > 0) {
			kill(g_mock.pid, SIGKILL);
			waitpid(g_mock.pid, &st, 0);
		}
		g_mock.pid = 0;
	}
	if (g_mock.dir[0]) {
		unlink(g_mock.step_file);
		rmdir(g_mock.dir);
	}
}

static int group_setup(void **state)
{
	(void)state;
	signal(SIGPIPE, SIG_IGN);
	return mock_start();
}

static int group_teardown(void **state)
{
	(void)state;
	mock_stop();
	return 0;
}

#define NEED_MOCK()                                                   \
	do {                                                          \
		if (g_mock.port <= 0) {                               \
			fprintf(stderr, "MOCK_IMDS not set: skipped\n"); \
			skip();                                       \
		}                                                     \
	} while (0)

/*
 * One HTTP/1.0 request to the mock (raw socket; the tests use no curl).
 * Returns the status (or -1) and, if body is given, the body (NUL-terminated, truncated).
 */
static int http_raw(int port, const char *method, const char *target, char *body, size_t n)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct timeval tv = {5, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		close(fd);
		return -1;
	}
	char req[1024];
	int rl = snprintf(req, sizeof req,
			  "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n", method,
			  target);
	if (write(fd, req, (size_t)rl) != rl) {
		close(fd);
		return -1;
	}
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap + 1);
	ssize_t got;
	while (buf && (got = read(fd, buf + len, cap - len)) > 0) {
		len += (size_t)got;
		if (len == cap)
			break;
	}
	close(fd);
	if (!buf)
		return -1;
	buf[len] = '\0';
	int status = -1;
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
		status = -1;
	if (body && n) {
		const char *b = strstr(buf, "\r\n\r\n");
		snprintf(body, n, "%s", b ? b + 4 : "");
	}
	free(buf);
	return status;
}

static void ctl(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ctl(const char *fmt, ...)
{
	char target[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(target, sizeof target, fmt, ap);
	va_end(ap);
	char body[512];
	int st = http_raw(g_mock.port, "POST", target, body, sizeof body);
	if (st != 200)
		fprintf(stderr, "control %s -> %d %s\n", target, st, body);
	assert_int_equal(st, 200);
}

static cJSON *mock_state(void)
{
	static char body[1 << 16];
	int st = http_raw(g_mock.port, "GET", "/_control/state", body, sizeof body);
	assert_int_equal(st, 200);
	cJSON *j = cJSON_Parse(body);
	assert_non_null(j);
	return j;
}

/* A number at "section.key" (section may be NULL) of the mock's state, 0 if absent. */
static long state_num(const char *section, const char *key)
{
	cJSON *j = mock_state();
	const cJSON *obj = section ? cJSON_GetObjectItemCaseSensitive(j, section) : j;
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	long n = cJSON_IsNumber(v) ? (long)v->valuedouble : 0;
	cJSON_Delete(j);
	return n;
}

/* Wait until state_num(section, key) >= min; returns whether it got there. */
static bool wait_state(const char *section, const char *key, long min, int ms)
{
	for (int t = 0; t < ms; t += 20) {
		if (state_num(section, key) >= min)
			return true;
		sleep_ms(20);
	}
	return state_num(section, key) >= min;
}

static bool wait_event(spot_watcher *w, spot_event *ev, int ms)
{
	for (int t = 0; t < ms; t += 10) {
		if (spot_watcher_poll(w, ev))
			return true;
		sleep_ms(10);
	}
	return spot_watcher_poll(w, ev);
}

static spot_config mock_config(spot_provider p)
{
	spot_config c;
	spot_config_defaults(&c);
	c.provider = p;
	snprintf(c.metadata_url, sizeof c.metadata_url, "http://127.0.0.1:%d", g_mock.port);
	c.poll_ms = 50;
	c.connect_timeout_ms = 200;
	c.timeout_ms = 300;
	snprintf(c.vm_name, sizeof c.vm_name, "vm0");
	snprintf(c.node, sizeof c.node, "node-test");
	return c;
}

static spot_watcher *start(const spot_config *c)
{
	spot_watcher *w = NULL;
	assert_int_equal(spot_watcher_start(c, &w), 0);
	assert_non_null(w);
	return w;
}

/* Stop w and check it took less than max_ms. */
static void stop_within(spot_watcher *w, int max_ms)
{
	double t0 = now_mono();
	spot_watcher_stop(w);
	double ms = (now_mono() - t0) * 1000.0;
	if (ms > max_ms)
		fprintf(stderr, "spot_watcher_stop took %.0f ms (limit %d)\n", ms, max_ms);
	assert_true(ms <= max_ms);
}

static void write_step(long step)
{
	char tmp[160];
	snprintf(tmp, sizeof tmp, "%s.tmp", g_mock.step_file);
	FILE *f = fopen(tmp, "w");
	assert_non_null(f);
	fprintf(f, "%ld\n", step);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, g_mock.step_file), 0);
}

#define AWS_ACTION_KEY "GET /latest/meta-data/spot/instance-action"
#define GCP_KEY "GET /computeMetadata/v1/instance/preempted"
#define AZURE_KEY "GET /metadata/scheduledevents"

/* ------------------------------------------------------------------ */
/* configuration, names, DMI                                           */
/* ------------------------------------------------------------------ */

static void test_provider_names_round_trip(void **state)
{
	(void)state;
	const spot_provider all[] = {SPOT_PROVIDER_NONE, SPOT_PROVIDER_AUTO, SPOT_PROVIDER_AWS,
				     SPOT_PROVIDER_GCP, SPOT_PROVIDER_AZURE};
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		assert_int_equal(spot_provider_parse(spot_provider_name(all[i])), (int)all[i]);
	assert_int_equal(spot_provider_parse("AWS"), SPOT_PROVIDER_AWS);
	assert_int_equal(spot_provider_parse("ec2"), -1);
	assert_int_equal(spot_provider_parse(""), -1);
	assert_int_equal(spot_provider_parse(NULL), -1);
}

static void test_config_defaults_match_design(void **state)
{
	(void)state;
	spot_config c;
	spot_config_defaults(&c);
	assert_int_equal(c.provider, SPOT_PROVIDER_AUTO);
	assert_string_equal(c.metadata_url, "http://169.254.169.254");
	assert_int_equal(c.poll_ms, 1000);
	assert_int_equal(c.connect_timeout_ms, 500);
	assert_int_equal(c.timeout_ms, 2000);
	assert_int_equal(c.max_response, 65536);
	assert_string_equal(c.dmi_dir, "/sys/class/dmi/id");
	assert_true(c.node[0] != '\0');
}

/* Write name=value files into a fresh fixture dir under base; returns the dir. */
static void make_fixture(char *dir, size_t n, const char *base, const char *name, ...)
{
	snprintf(dir, n, "%s/%s", base, name);
	assert_int_equal(mkdir(dir, 0700), 0);
	va_list ap;
	va_start(ap, name);
	const char *file;
	while ((file = va_arg(ap, const char *)) != NULL) {
		const char *content = va_arg(ap, const char *);
		char path[512];
		snprintf(path, sizeof path, "%s/%s", dir, file);
		FILE *f = fopen(path, "w");
		assert_non_null(f);
		fputs(content, f);
		assert_int_equal(fclose(f), 0);
	}
	va_end(ap);
}

static void remove_fixture(const char *dir)
{
	static const char *const files[] = {"sys_vendor", "bios_vendor", "bios_version",
					    "board_vendor", "product_name", "chassis_asset_tag"};
	char path[512];
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
}

static void test_detect_provider_from_dmi_files(void **state)
{
	(void)state;
	char base[] = "/tmp/test_spot_dmi.XXXXXX";
	assert_non_null(mkdtemp(base));
	static const struct {
		const char *name;
		const char *files[6];
		spot_provider want;
	} cases[] = {
		{"aws_nitro", {"sys_vendor", "Amazon EC2\n", "product_name", "m5.large\n"}, SPOT_PROVIDER_AWS},
		{"aws_bios", {"bios_vendor", "Amazon EC2\n"}, SPOT_PROVIDER_AWS},
		{"aws_xen", {"sys_vendor", "Xen\n", "bios_version", "4.11.amazon\n"}, SPOT_PROVIDER_AWS},
		{"gcp", {"bios_vendor", "Google\n", "product_name", "Google Compute Engine\n"}, SPOT_PROVIDER_GCP},
		{"gcp_product", {"product_name", "Google Compute Engine\n"}, SPOT_PROVIDER_GCP},
		{"azure", {"sys_vendor", "Microsoft Corporation\n", "chassis_asset_tag",
			   "7783-7084-3265-9085-8269-3286-77\n"}, SPOT_PROVIDER_AZURE},
		{"azure_tag_unreadable", {"sys_vendor", "Microsoft Corporation\n"}, SPOT_PROVIDER_AZURE},
		{"hyperv_onprem", {"sys_vendor", "Microsoft Corporation\n", "chassis_asset_tag",
				   "0000-0000-0000\n"}, SPOT_PROVIDER_NONE},
		{"qemu", {"sys_vendor", "QEMU\n", "product_name", "Standard PC (Q35 + ICH9, 2009)\n"},
		 SPOT_PROVIDER_NONE},
		{"empty", {NULL}, SPOT_PROVIDER_NONE},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char dir[256];
		const char *const *f = cases[i].files;
		make_fixture(dir, sizeof dir, base, cases[i].name, f[0], f[1], f[2], f[3], f[4], f[5],
			     (const char *)NULL);
		spot_provider got = spot_detect_provider(dir);
		if (got != cases[i].want)
			fprintf(stderr, "DMI case %s: got %s, want %s\n", cases[i].name,
				spot_provider_name(got), spot_provider_name(cases[i].want));
		assert_int_equal(got, cases[i].want);
		remove_fixture(dir);
	}
	char missing[300];
	snprintf(missing, sizeof missing, "%s/does-not-exist", base);
	assert_int_equal(spot_detect_provider(missing), SPOT_PROVIDER_NONE);
	assert_int_equal(rmdir(base), 0);
}

static void test_start_auto_uses_dmi_and_none_starts_nothing(void **state)
{
	(void)state;
	char base[] = "/tmp/test_spot_auto.XXXXXX";
	assert_non_null(mkdtemp(base));
	char dir[256];
	make_fixture(dir, sizeof dir, base, "none", "sys_vendor", "QEMU\n", (const char *)NULL);
	spot_config c;
	spot_config_defaults(&c);
	c.provider = SPOT_PROVIDER_AUTO;
	snprintf(c.dmi_dir, sizeof c.dmi_dir, "%s", dir);
	spot_watcher *w = (spot_watcher *)&c; /* must be overwritten with NULL */
	assert_int_equal(spot_watcher_start(&c, &w), 0);
	assert_null(w);
	remove_fixture(dir);

	c.provider = SPOT_PROVIDER_NONE;
	w = (spot_watcher *)&c;
	assert_int_equal(spot_watcher_start(&c, &w), 0);
	assert_null(w);

	/* the NULL watcher is safe everywhere */
	spot_event ev;
	assert_false(spot_watcher_poll(NULL, &ev));
	assert_int_equal(spot_watcher_ack(NULL), 0);
	spot_watcher_stop(NULL);

	if (g_mock.port > 0) {
		ctl("/_control/reset");
		make_fixture(dir, sizeof dir, base, "aws", "sys_vendor", "Amazon EC2\n",
			     (const char *)NULL);
		c = mock_config(SPOT_PROVIDER_AUTO);
		snprintf(c.dmi_dir, sizeof c.dmi_dir, "%s", dir);
		w = start(&c);
		assert_true(wait_state("requests", "PUT /latest/api/token", 1, 2000));
		assert_true(wait_state("requests", AWS_ACTION_KEY, 1, 2000));
		stop_within(w, 2000);
		remove_fixture(dir);
	}
	assert_int_equal(rmdir(base), 0);
}

static void test_start_rejects_non_http_url(void **state)
{
	(void)state;
	spot_config c;
	spot_config_defaults(&c);
	c.provider = SPOT_PROVIDER_AWS;
	snprintf(c.metadata_url, sizeof c.metadata_url, "file:///etc/passwd");
	spot_watcher *w = NULL;
	assert_int_equal(spot_watcher_start(&c, &w), EXIT_USAGE);
	assert_null(w);
}

/* ------------------------------------------------------------------ */
/* AWS                                                                 */
/* ------------------------------------------------------------------ */

static void test_aws_no_notice_no_event(void **state)
{
	(void)state;
	NEED_MOCK();
	ctl("/_control/reset");
	spot_config c = mock_config(SPOT_PROVIDER_AWS);
	spot_watcher *w = start(&c);
	/* each poll asks for the action, then the rebalance: wait for the count it asserts on,
	 * not for the other one (the 5th rebalance request may follow the 5th action request late) */
	assert_true(wait_state("requests", AWS_ACTION_KEY, 5, 10000));
	assert_true(wait_state("requests", "GET /latest/meta-data/events/recommendations/rebalance", 5, 10000));
	spot_event ev;
	assert_false(spot_watcher_poll(w, &ev));
	stop_within(w, 2000);
	assert_int_equal(state_num(NULL, "tokens_issued"), 1); /* one token, reused */
	assert_int_equal(state_num("statuses", "401"), 0);
}

static void test_aws_notice_gives_exactly_one_stop(void **state)
{
	(void)state;
	NEED_MOCK();
	ctl("/_control/reset");
	spot_config c = mock_config(SPOT_PROVIDER_AWS);
	spot_watcher *w = start(&c);
	assert_true(wait_state("requests", AWS_ACTION_KEY, 2, 2000));
	double t0 = now_wall();
	ctl("/_control/notice?provider=aws&action=hibernate&after_ms=200&indent=1"
	    "&time=2017-09-18T08:22:00Z");
	spot_event ev;
	assert_false(spot_watcher_poll(w, &ev));
	assert_true(wait_event(w, &ev, 3000));
	assert_int_equal(ev.kind, SPOT_EVENT_STOP);
	assert_string_equal(ev.provider, "aws");
	assert_string_equal(ev.action, "hibernate");
	assert_string_equal(ev.notice_time, "2017-09-18T08:22:00Z");
	assert_true(ev.received_wall >= t0 + 0.15 && ev.received_wall <= now_wall());
	/* more polls, no second event */
	long seen = state_num("requests", AWS_ACTION_KEY);
	assert_true(wait_state("requests", AWS_ACTION_KEY, seen + 4, 2000));
	assert_false(spot_watcher_poll(w, &ev));
	stop_within(w, 2000);
}

static void test_aws_rebalance_then_stop(void **state)
{
	(void)state;
	NEED_MOCK();
	ctl("/_control/reset");
	spot_config c = mock_config(SPOT_PROVIDER_AWS);
	spot_watcher *w = start(&c);
	ctl("/_control/rebalance?time=2020-10-27T08:22:00Z");
	spot_event ev;
	assert_true(wait_event(w, &ev, 3000));
	assert_int_equal(ev.kind, SPOT_EVENT_REBALANCE);
	assert_string_equal(ev.action, "rebalance");
	assert_string_equal(ev.notice_time, "2020-10-27T08:22:00Z");
	long seen = state_num("requests", AWS_ACTION_KEY);
	assert_true(wait_state("requests", AWS_ACTION_KEY, seen + 3, 2000));
	assert_false(spot_watcher_poll(w, &ev)); /* rebalance reported once */
	ctl("/_control/notice?provider=aws&action=terminate");
	assert_true(wait_event(w, &ev, 3000));
	assert_int_equal(ev.kind, SPOT_EVENT_STOP);
	assert_string_equal(ev.action, "terminate");
	assert_true(ev.notice_time[0] != '\0'); /* the mock's default: now + 120 s */
	stop_within(w, 2000);
}

static void test_aws_expired_token_is_refreshed_after_401(void **state)
{
	(void)state;
	NEED_MOCK();
	ctl("/_control/reset");
	ctl("/_control/aws?imdsv1=0"); /* a request without a valid token cannot succeed */
	spot_config c = mock_config(SPOT_PROVIDER_AWS);
	spot_watcher *w = start(&c);
	assert_true(wait_state("requests", AWS_ACTION_KEY, 2, 2000));
	assert_int_equal(state_num(NULL, "tokens_issued"), 1);
	ctl("/_control/mode?m=expired_token");
	ctl("/_control/notice?provider=aws&action=stop&after_ms=100");
	spot_event ev;
	assert_true(wait_event(w, &ev, 3000));
	assert_int_equal(ev.kind, SPOT_EVENT_STOP);
	assert_string_equal(ev.action, "stop");
	stop_within(w, 2000);
	assert_true(state_num("statuses", "401") >= 1);
	assert_true(state_num(NULL, "tokens_issued") >= 2);
}

static void test_aws_falls_back_to_imdsv1_without_token_api(void **state)
{
	(void)state;
	NEED_MOCK();
	ctl("/_control/reset");
	ctl("/_control/aws?token_api=0");
	ctl("/_control/notice?provider=aws&action=terminate&time=2017-09-18T08:22:00Z");
	spot_config c = mock_config(SPOT_PROVIDER_AWS);
	spot_watcher *w = start(&c);
	spot_event ev;
	assert_true(wait_event(w, &ev, 3000));
	assert_int_equal(ev.kind, SPOT_EVENT_STOP);
	assert_string_equal(ev.notice_time, "2017-09-18T08:22:00Z");
	stop_within(w, 2000);
	assert_int_equal(state_num(NULL, "tokens_issued"), 0);
	assert_true(state_num("requests", "PUT /latest/api/token") >= 1);
}

static void test_aws_notice_at_step_from_step_file(void **state)
{
	(void)state;
	NEED_MOCK();
	ctl("/_control/reset");
	write_step(5);
	ctl("/_control/notice?provider=aws&at_step=10");
	spot_config c = mock_config(SPOT_PROVIDER_AWS);
	spot_watcher *w = start(&c);
	assert_true(wait_state(NULL, "step", 5, 2000));
	assert_true(wait_state("requests", AWS_ACTION_KEY, 4, 2000));
	spot_event ev;
	assert_false(spot_watcher_poll(w, &ev)); /* step 5 < 10: not yet */
	write_step(10);
	assert_true(wait_event(w, &ev, 3000));
	assert_int_equal(ev.kind, SPOT_EVENT_STOP);
	assert_int_equal(state_num(NULL, "step"), 10);
	stop_within(w, 2000);
	write_step(0);
}

/* ------------------------------------------------------------------ */
/* GCP                                                                 */
/* ------------------------------------------------------------------ */

static void test_gcp_waits_for_change_and_reports_once(void **state)
{
	(void)state;
	NEED_MOCK();
	ctl("/_control/reset");
	spot_config c = mock_config(SPOT_PROVIDER_GCP);
	spot_watcher *w = start(&c);
	/* first a plain GET for the ETag, then a hanging GET with last_etag */
	assert_true(wait_state(NULL, "gcp_waits", 1, 2000));
	sleep_ms(200);
	spot_event ev;
	assert_false(spot_watcher_poll(w, &ev));
	double t0 = now_mono();
	ctl("/_control/notice?provider=gcp");
	assert_true(wait_event(w, &ev, 3000));
	double latency = now_mono() - t0;
	assert_true(latency < 0.5); /* the hanging GET returned on the change */
	assert_int_equal(ev.kind, SPOT_EVENT_STOP);
	assert_string_equal(ev.provider, "gcp");
	assert_string_equal(ev.action, "preempt");
	long seen = state_num("requests", GCP_KEY);
	assert_true(wait_state("requests", GCP_KEY, seen + 3, 3000));
	assert_false(spot_watcher_poll(w, &ev));
	stop_within(w, 2000);
}

static void test_gcp_503_is_retried(void **state)
{
	(void)state;
	NEED_MOCK();
	ctl("/_control/reset");
	ctl("/_control/mode?m=503&count=3&provider=gcp");
	ctl("/_control/notice?provider=gcp");
	spot_config c = mock_config(SPOT_PROVIDER_GCP);
	spot_watcher *w = start(&c);
	spot_event ev;
	assert_true(wait_event(w, &ev, 4000));
	assert_int_equal(ev.kind, SPOT_EVENT_STOP);
	assert_int_equal(state_num("statuses", "503"), 3);
	stop_within(w, 2000);
}

static void test_gcp_stop_interrupts_hanging_get(void **state)
{
	(void)state;
	NEED_MOCK();
	ctl("/_control/reset");
	spot_config c = mock_config(SPOT_PROVIDER_GCP);
	c.poll_ms = 6000; /* timeout_sec = 30: the GET hangs for 30 s */
	spot_watcher *w = start(&c);
	assert_true(wait_state(NULL, "gcp_waits", 1, 3000));
	sleep_ms(100);
	stop_within(w, 500);
}

/* ------------------------------------------------------------------ */
/* Azure                                                               */
/* ------------------------------------------------------------------ */

static void test_azure_no_event_and_other_vm_ignored(void **state)
{
	(void)state;
	NEED_MOCK();
	ctl("/_control/reset");
	spot_config c = mock_config(SPOT_PROVIDER_AZURE);
	spot_watcher *w = start(&c);
	assert_true(wait_state("requests", AZURE_KEY, 3, 2000));
	ctl("/_control/notice?provider=azure&resources=othervm,thirdvm");
	assert_true(wait_state(NULL, "azure_incarnation", 2, 2000));
	long seen = state_num("requests", AZURE_KEY);
	assert_true(wait_state("requests", AZURE_KEY, seen + 4, 2000));
	spot_event ev;
	assert_false(spot_watcher_poll(w, &ev));
	assert_int_equal(spot_watcher_ack(w), 0); /* nothing to acknowledge */
	stop_within(w, 2000);
	cJSON *j = mock_state();
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "acks")), 0);
	cJSON_Delete(j);
}

static void test_azure_preempt_stop_and_ack_reaches_mock(void **state)
{
	(void)state;
	NEED_MOCK();
	ctl("/_control/reset");
	spot_config c = mock_config(SPOT_PROVIDER_AZURE);
	spot_watcher *w = start(&c);
	assert_true(wait_state("requests", AZURE_KEY, 2, 2000));
	ctl("/_control/notice?provider=azure&event_id=602d9444-d2cd-49c7-8624-8643e7171297"
	    "&resources=othervm,vm0&time=Mon%%2C%%2011%%20Apr%%202022%%2022%%3A26%%3A58%%20GMT");
	spot_event ev;
	assert_true(wait_event(w, &ev, 3000));
	assert_int_equal(ev.kind, SPOT_EVENT_STOP);
	assert_string_equal(ev.provider, "azure");
	assert_string_equal(ev.action, "Preempt");
	assert_string_equal(ev.notice_time, "Mon, 11 Apr 2022 22:26:58 GMT");
	assert_int_equal(spot_watcher_ack(w), 0);
	cJSON *j = mock_state();
	const cJSON *acks = cJSON_GetObjectItem(j, "acks");
	assert_int_equal(cJSON_GetArraySize(acks), 1);
	const cJSON *a = cJSON_GetArrayItem(acks, 0);
	assert_string_equal(cJSON_GetObjectItem(a, "EventId")->valuestring,
			    "602d9444-d2cd-49c7-8624-8643e7171297");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(a, "known")));
	const cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "azure_events"), 0);
	assert_string_equal(cJSON_GetObjectItem(e, "EventStatus")->valuestring, "Started");
	cJSON_Delete(j);
	/* the Started event does not produce a second STOP */
	long seen = state_num("requests", AZURE_KEY);
	assert_true(wait_state("requests", AZURE_KEY, seen + 3, 2000));
	assert_false(spot_watcher_poll(w, &ev));
	stop_within(w, 2000);
}

static void test_azure_matches_name_reported_by_imds(void **state)
{
	(void)state;
	NEED_MOCK();
	ctl("/_control/reset");
	spot_config c = mock_config(SPOT_PROVIDER_AZURE);
	snprintf(c.vm_name, sizeof c.vm_name, "vmss000003"); /* host name differs from VM name */
	spot_watcher *w = start(&c);
	ctl("/_control/notice?provider=azure&action=Terminate"); /* Resources: ["vm0"] */
	spot_event ev;
	assert_true(wait_event(w, &ev, 3000));
	assert_int_equal(ev.kind, SPOT_EVENT_STOP);
	assert_string_equal(ev.action, "Terminate");
	stop_within(w, 2000);
	assert_true(state_num("requests", "GET /metadata/instance/compute/name") >= 1);
}

/* ------------------------------------------------------------------ */
/* misbehaving services                                                */
/* ------------------------------------------------------------------ */

/*
 * For each bad mode: with a real notice behind it for all three providers,
 * the three watchers see only bad answers and must report nothing; when the
 * service turns normal again each reports exactly one STOP (so the watchers
 * survived), and every stop is prompt. A client that followed the redirect
 * would be counted in redirected_hits.
 */
static void test_malformed_answers_never_stop(void **state)
{
	(void)state;
	NEED_MOCK();
	static const char *const modes[] = {
		"garbage", "truncated", "partial", "huge", "500", "503", "redirect", "refuse",
		"slow&delay_ms=1500",
	};
	static const spot_provider provs[] = {SPOT_PROVIDER_AWS, SPOT_PROVIDER_GCP,
					      SPOT_PROVIDER_AZURE};
	static const char *const keys[] = {AWS_ACTION_KEY, GCP_KEY, AZURE_KEY};
	static const char *const actions[] = {"terminate", "preempt", "Preempt"};
	for (size_t mi = 0; mi < sizeof modes / sizeof modes[0]; mi++) {
		ctl("/_control/reset");
		ctl("/_control/mode?m=%s", modes[mi]);
		ctl("/_control/notice?provider=all");
		spot_watcher *w[3];
		for (int p = 0; p < 3; p++) {
			spot_config c = mock_config(provs[p]);
			w[p] = start(&c);
		}
		for (int p = 0; p < 3; p++) {
			if (!wait_state("requests", keys[p], 2, 4000))
				fail_msg("mode %s: provider %d made fewer than 2 requests", modes[mi], p);
		}
		spot_event ev;
		for (int p = 0; p < 3; p++) {
			if (spot_watcher_poll(w[p], &ev))
				fail_msg("mode %s: %s reported %s", modes[mi], ev.provider, ev.action);
		}
		ctl("/_control/mode?m=normal");
		for (int p = 0; p < 3; p++) {
			if (!wait_event(w[p], &ev, 4000))
				fail_msg("mode %s: provider %d did not recover", modes[mi], p);
			assert_int_equal(ev.kind, SPOT_EVENT_STOP);
			assert_string_equal(ev.action, actions[p]);
		}
		sleep_ms(150);
		for (int p = 0; p < 3; p++) {
			assert_false(spot_watcher_poll(w[p], &ev));
			stop_within(w[p], 2000);
		}
		assert_int_equal(state_num(NULL, "redirected_hits"), 0);
	}
}

/* A request hanging on a slow service with long timeouts is cut short by stop. */
static void test_stop_interrupts_slow_service(void **state)
{
	(void)state;
	NEED_MOCK();
	ctl("/_control/reset");
	ctl("/_control/mode?m=slow&delay_ms=20000");
	static const spot_provider provs[] = {SPOT_PROVIDER_AWS, SPOT_PROVIDER_GCP,
					      SPOT_PROVIDER_AZURE};
	for (int p = 0; p < 3; p++) {
		spot_config c = mock_config(provs[p]);
		c.timeout_ms = 15000;
		spot_watcher *w = start(&c);
		sleep_ms(200); /* the first request is now in flight */
		spot_event ev;
		assert_false(spot_watcher_poll(w, &ev));
		stop_within(w, 500);
	}
	ctl("/_control/reset");
}

/* Nothing listens: connection refused, no event, quick stop. */
static void test_refused_connection_no_event(void **state)
{
	(void)state;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t al = sizeof a;
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	int port = ntohs(a.sin_port);
	close(fd); /* the port is now closed: connections are refused */
	static const spot_provider provs[] = {SPOT_PROVIDER_AWS, SPOT_PROVIDER_GCP,
					      SPOT_PROVIDER_AZURE};
	spot_watcher *w[3];
	for (int p = 0; p < 3; p++) {
		spot_config c;
		spot_config_defaults(&c);
		c.provider = provs[p];
		snprintf(c.metadata_url, sizeof c.metadata_url, "http://127.0.0.1:%d/", port);
		c.poll_ms = 20;
		c.connect_timeout_ms = 200;
		c.timeout_ms = 300;
		w[p] = start(&c);
	}
	sleep_ms(600);
	spot_event ev;
	for (int p = 0; p < 3; p++) {
		assert_false(spot_watcher_poll(w[p], &ev));
		stop_within(w[p], 2000);
	}
}

/* A tiny max_response rejects even a well-formed notice: oversize is never a stop. */
static void test_response_cap_rejects_oversize_notice(void **state)
{
	(void)state;
	NEED_MOCK();
	ctl("/_control/reset");
	ctl("/_control/notice?provider=aws&indent=1");
	spot_config c = mock_config(SPOT_PROVIDER_AWS);
	c.max_response = 16;
	spot_watcher *w = start(&c);
	assert_true(wait_state("requests", AWS_ACTION_KEY, 3, 3000));
	spot_event ev;
	assert_false(spot_watcher_poll(w, &ev));
	stop_within(w, 2000);
}

/* Repeated failures of one kind are logged once per 30 s, not once per request. */
static void test_failures_logged_once_per_kind(void **state)
{
	(void)state;
	NEED_MOCK();
	ctl("/_control/reset");
	ctl("/_control/mode?m=500&provider=aws");
	char path[] = "/tmp/test_spot_log.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	dup2(fd, STDERR_FILENO);
	spot_config c = mock_config(SPOT_PROVIDER_AWS);
	spot_watcher *w = NULL;
	int rc = spot_watcher_start(&c, &w);
	long n = 0;
	for (int t = 0; rc == 0 && t < 4000 && n < 5; t += 20) {
		sleep_ms(20);
		n = state_num("requests", AWS_ACTION_KEY);
	}
	spot_watcher_stop(w);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	assert_int_equal(rc, 0);
	assert_true(n >= 5);

	char log[16384];
	ssize_t len = pread(fd, log, sizeof log - 1, 0);
	close(fd);
	unlink(path);
	assert_true(len > 0);
	log[len] = '\0';
	int token_lines = 0, action_lines = 0, lines = 0;
	for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
		if (!strstr(line, "warning:"))
			continue;
		lines++;
		token_lines += strstr(line, "PUT /latest/api/token") != NULL;
		action_lines += strstr(line, "GET /latest/meta-data/spot/instance-action") != NULL;
	}
	assert_int_equal(token_lines, 1);  /* kind: token */
	assert_int_equal(action_lines, 1); /* kind: HTTP status (the rebalance GET shares it) */
	assert_int_equal(lines, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_provider_names_round_trip),
		cmocka_unit_test(test_config_defaults_match_design),
		cmocka_unit_test(test_detect_provider_from_dmi_files),
		cmocka_unit_test(test_start_auto_uses_dmi_and_none_starts_nothing),
		cmocka_unit_test(test_start_rejects_non_http_url),
		cmocka_unit_test(test_aws_no_notice_no_event),
		cmocka_unit_test(test_aws_notice_gives_exactly_one_stop),
		cmocka_unit_test(test_aws_rebalance_then_stop),
		cmocka_unit_test(test_aws_expired_token_is_refreshed_after_401),
		cmocka_unit_test(test_aws_falls_back_to_imdsv1_without_token_api),
		cmocka_unit_test(test_aws_notice_at_step_from_step_file),
		cmocka_unit_test(test_gcp_waits_for_change_and_reports_once),
		cmocka_unit_test(test_gcp_503_is_retried),
		cmocka_unit_test(test_gcp_stop_interrupts_hanging_get),
		cmocka_unit_test(test_azure_no_event_and_other_vm_ignored),
		cmocka_unit_test(test_azure_preempt_stop_and_ack_reaches_mock),
		cmocka_unit_test(test_azure_matches_name_reported_by_imds),
		cmocka_unit_test(test_malformed_answers_never_stop),
		cmocka_unit_test(test_stop_interrupts_slow_service),
		cmocka_unit_test(test_refused_connection_no_event),
		cmocka_unit_test(test_response_cap_rejects_oversize_notice),
		cmocka_unit_test(test_failures_logged_once_per_kind),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
