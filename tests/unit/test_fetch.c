/*
 * test_fetch.c - dataset download (src/fetch.c) against a local server,
 * tests/integration/serve_files.py run with /usr/bin/python3 as a child
 * process on 127.0.0.1 and 127.0.0.2 (a fresh one per test, with its own
 * request log). It serves the real MNIST .gz files of $MNIST_DIR (default
 * /work/shared/data/mnist), whose SHA-256 sums are in $MNIST_DIR/SHA256SUMS
 * (sums of the .gz files as served). Only 127.0.0.0/8 is ever contacted.
 * The server script is $SERVE_FILES, else found next to this source file.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "contract.h"
#include "fetch.h"
#include "log.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
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

#define PATH_LEN 4096 /* any path built here; the folders below are shorter */
#define DIR_LEN 1024

/* ------------------------------------------------------------------ */
/* fixtures: the data, the server, the work folder                     */
/* ------------------------------------------------------------------ */

static char g_mnist[DIR_LEN];         /* $MNIST_DIR */
static char g_script[PATH_LEN];      /* serve_files.py */
static char g_sha[4][65];            /* SHA-256 of the four .gz files */

/* Per test. */
typedef struct fixture {
	pid_t server;
	int port;
	char work[DIR_LEN];      /* mkdtemp folder */
	char data[2 * DIR_LEN];     /* work/vol/data: not created, fetch_dataset makes it */
	char log[PATH_LEN];      /* the server's request log */
	char err[PATH_LEN];      /* captured stderr */
	int saved_stderr;
	fetch_options o;
} fixture;

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* malloc'ed contents of a file (NUL-terminated), *len its size; NULL if unreadable. */
static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap + 1);
	for (size_t r; buf && (r = fread(buf + n, 1, cap - n, f)) > 0;) {
		n += r;
		if (n == cap) {
			char *nb = realloc(buf, 2 * cap + 1);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
	}
	fclose(f);
	if (buf)
		buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static void remove_tree(const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return;
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(path);
		struct dirent *e;
		while (d && (e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			char sub[PATH_LEN];
			snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
			remove_tree(sub);
		}
		if (d)
			closedir(d);
		rmdir(path);
	} else {
		unlink(path);
	}
}

static void fast_options(fetch_options *o)
{
	fetch_options_default(o);
	/* Generous limits: a test machine starved of CPU must not see a spurious stall (a
	 * retry would change the request counts the tests assert); the stall test sets its own. */
	o->connect_timeout_ms = 30000;
	o->low_speed_bytes = 1024;
	o->low_speed_time_s = 20;
	o->max_retries = 3;
	o->backoff_ms = 10;
	o->backoff_max_ms = 50;
	o->deadline_s = 60;
	o->lock_poll_ms = 10;
}

static int server_start(fixture *fx)
{
	int pfd[2];
	if (pipe(pfd) != 0)
		return -1;
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		dup2(pfd[1], STDOUT_FILENO);
		close(pfd[0]);
		close(pfd[1]);
		execl("/usr/bin/python3", "python3", g_script, "--root", g_mnist, "--log", fx->log,
		      (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	fx->server = pid;
	char line[32] = "";
	size_t n = 0;
	double t_end = mono() + 120.0; /* python's start on a loaded machine */
	while (n < sizeof line - 1 && !strchr(line, '\n') && mono() < t_end) {
		struct pollfd p = {.fd = pfd[0], .events = POLLIN};
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t r = read(pfd[0], line + n, sizeof line - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
		line[n] = '\0';
	}
	close(pfd[0]);
	fx->port = atoi(line);
	return fx->port > 0 ? 0 : -1;
}

static void server_stop(fixture *fx)
{
	if (fx->server > 0) {
		kill(fx->server, SIGTERM);
		waitpid(fx->server, NULL, 0);
		fx->server = 0;
	}
}

static int setup(void **state)
{
	fixture *fx = calloc(1, sizeof *fx);
	if (!fx)
		return -1;
	fx->saved_stderr = -1;
	snprintf(fx->work, sizeof fx->work, "%s/test_fetch.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(fx->work))
		return -1;
	snprintf(fx->data, sizeof fx->data, "%s/vol/data", fx->work);
	snprintf(fx->log, sizeof fx->log, "%s/requests.log", fx->work);
	snprintf(fx->err, sizeof fx->err, "%s/stderr.txt", fx->work);
	fast_options(&fx->o);
	*state = fx;
	return server_start(fx);
}

static int teardown(void **state)
{
	fixture *fx = *state;
	if (fx->saved_stderr >= 0) {
		dup2(fx->saved_stderr, STDERR_FILENO);
		close(fx->saved_stderr);
	}
	server_stop(fx);
	remove_tree(fx->work);
	free(fx);
	return 0;
}

/* Send stderr to fx->err until stderr_end; stderr_end returns what was written (free it). */
static void stderr_begin(fixture *fx)
{
	fflush(stderr);
	fx->saved_stderr = dup(STDERR_FILENO);
	int fd = open(fx->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fx->saved_stderr >= 0 && fd >= 0);
	dup2(fd, STDERR_FILENO);
	close(fd);
}

static char *stderr_end(fixture *fx)
{
	fflush(stderr);
	dup2(fx->saved_stderr, STDERR_FILENO);
	close(fx->saved_stderr);
	fx->saved_stderr = -1;
	char *text = slurp(fx->err, NULL);
	assert_non_null(text);
	fputs(text, stderr); /* still shown, for whoever reads the test output */
	return text;
}

static void base_url(const fixture *fx, const char *mode, char *out, size_t size)
{
	snprintf(out, size, "http://127.0.0.1:%d/%s/", fx->port, mode);
}

static void path_in(const char *dir, const char *name, char *out, size_t size)
{
	snprintf(out, size, "%s/%s", dir, name);
}

/* Make every file but idx present (empty files under the raw, uncompressed name). */
static void only_missing(fixture *fx, int idx)
{
	char dir[PATH_LEN], path[PATH_LEN];
	snprintf(dir, sizeof dir, "%s/vol", fx->work);
	mkdir(dir, 0755);
	mkdir(fx->data, 0755);
	for (int i = 0; i < FETCH_NFILES; i++) {
		if (i == idx)
			continue;
		char raw[64];
		snprintf(raw, sizeof raw, "%s", fetch_file_names[i]);
		raw[strlen(raw) - 3] = '\0'; /* without .gz */
		snprintf(path, sizeof path, "%s/%s", fx->data, raw);
		write_bytes(path, "", 0);
	}
}

/* dir/NAME has the same bytes as MNIST_DIR/NAME. */
static void assert_same_as_original(const char *dir, const char *name)
{
	char a[PATH_LEN], b[PATH_LEN];
	path_in(dir, name, a, sizeof a);
	path_in(g_mnist, name, b, sizeof b);
	size_t la = 0, lb = 0;
	char *x = slurp(a, &la), *y = slurp(b, &lb);
	assert_non_null(x);
	assert_non_null(y);
	assert_int_equal(la, lb);
	assert_memory_equal(x, y, la);
	free(x);
	free(y);
}

/* Neither dir/NAME nor dir/NAME.part exists. */
static void assert_absent(const char *dir, const char *name)
{
	char a[PATH_LEN], b[PATH_LEN];
	path_in(dir, name, a, sizeof a);
	snprintf(b, sizeof b, "%s/%s.part", dir, name);
	assert_false(exists(a));
	assert_false(exists(b));
}

/* One line of the server's request log. */
typedef struct req {
	char host[32];
	char path[256];
	char range[64]; /* "" when the request had none */
	int status;
} req;

static void json_str(const char *line, const char *key, char *out, size_t size)
{
	char pat[64];
	snprintf(pat, sizeof pat, "\"%s\": \"", key);
	out[0] = '\0';
	const char *p = strstr(line, pat);
	if (!p)
		return;
	p += strlen(pat);
	size_t n = 0;
	while (p[n] && p[n] != '"' && n < size - 1)
		n++;
	memcpy(out, p, n);
	out[n] = '\0';
}

/* Requests the server logged (at most max); returns how many. */
static int read_requests(const fixture *fx, req *out, int max)
{
	char *text = slurp(fx->log, NULL);
	if (!text)
		return 0;
	int n = 0;
	for (char *line = strtok(text, "\n"); line && n < max; line = strtok(NULL, "\n")) {
		req *r = &out[n++];
		json_str(line, "host", r->host, sizeof r->host);
		json_str(line, "path", r->path, sizeof r->path);
		json_str(line, "range", r->range, sizeof r->range);
		const char *s = strstr(line, "\"status\": ");
		r->status = s ? atoi(s + 10) : -1;
	}
	free(text);
	return n;
}

static int count_requests(const fixture *fx)
{
	req r[64];
	return read_requests(fx, r, 64);
}

static off_t original_size(int idx)
{
	char p[PATH_LEN];
	struct stat st;
	path_in(g_mnist, fetch_file_names[idx], p, sizeof p);
	return stat(p, &st) == 0 ? st.st_size : -1;
}

/* ------------------------------------------------------------------ */
/* the tests                                                           */
/* ------------------------------------------------------------------ */

static void test_sha256_file_matches_sha256sums_and_known_digests(void **state)
{
	fixture *fx = *state;
	char got[65], path[PATH_LEN];
	for (int i = 0; i < FETCH_NFILES; i++) {
		path_in(g_mnist, fetch_file_names[i], path, sizeof path);
		assert_int_equal(fetch_sha256_file(path, got), 0);
		assert_string_equal(got, g_sha[i]);
	}
	path_in(fx->work, "empty", path, sizeof path);
	write_bytes(path, "", 0);
	assert_int_equal(fetch_sha256_file(path, got), 0);
	assert_string_equal(got, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	path_in(fx->work, "abc", path, sizeof path);
	write_bytes(path, "abc", 3);
	assert_int_equal(fetch_sha256_file(path, got), 0);
	assert_string_equal(got, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	path_in(fx->work, "nonexistent", path, sizeof path);
	assert_int_equal(fetch_sha256_file(path, got), EXIT_NOINPUT);
}

static void test_fresh_download_of_all_four_is_byte_identical(void **state)
{
	fixture *fx = *state;
	char url[256];
	base_url(fx, "files", url, sizeof url);
	assert_int_equal(fetch_dataset_opts(fx->data, url, g_sha, &fx->o), 0);
	for (int i = 0; i < FETCH_NFILES; i++) {
		assert_same_as_original(fx->data, fetch_file_names[i]);
		char part[PATH_LEN];
		snprintf(part, sizeof part, "%s/%s.part", fx->data, fetch_file_names[i]);
		assert_false(exists(part));
	}
	req r[16];
	assert_int_equal(read_requests(fx, r, 16), 4);
	for (int i = 0; i < 4; i++) {
		char want[256];
		snprintf(want, sizeof want, "/files/%s", fetch_file_names[i]);
		assert_string_equal(r[i].path, want);
		assert_int_equal(r[i].status, 200);
		assert_string_equal(r[i].range, "");
	}
}

static void test_public_entry_point_downloads_with_default_options(void **state)
{
	fixture *fx = *state;
	char url[256];
	only_missing(fx, 3);
	base_url(fx, "files", url, sizeof url);
	assert_int_equal(fetch_dataset(fx->data, url, g_sha, 0), 0);
	assert_same_as_original(fx->data, fetch_file_names[3]);
}

static void test_resume_after_dropped_connection_sends_range(void **state)
{
	fixture *fx = *state;
	char url[256];
	only_missing(fx, 0); /* train-images, about 9.9 MB */
	base_url(fx, "drop-once", url, sizeof url);
	assert_int_equal(fetch_dataset_opts(fx->data, url, g_sha, &fx->o), 0);
	assert_same_as_original(fx->data, fetch_file_names[0]);
	req r[16];
	assert_int_equal(read_requests(fx, r, 16), 2);
	assert_string_equal(r[0].range, "");
	assert_int_equal(r[0].status, 200);
	char want[64];
	snprintf(want, sizeof want, "bytes=%lld-", (long long)(original_size(0) / 2));
	assert_string_equal(r[1].range, want); /* resumed exactly where the drop left it */
	assert_int_equal(r[1].status, 206);
}

static void test_stalled_server_is_cut_by_low_speed_limit_and_resumed(void **state)
{
	fixture *fx = *state;
	char url[256];
	only_missing(fx, 2); /* t10k-images, 1.6 MB */
	base_url(fx, "stall-once", url, sizeof url);
	/* The server stays silent until the client leaves, and the deadline (60 s) would end the
	 * fetch with an error: success proves the low-speed limit cut the stall and the retry
	 * resumed, whatever the machine's speed. */
	fx->o.low_speed_time_s = 2;
	assert_int_equal(fetch_dataset_opts(fx->data, url, g_sha, &fx->o), 0);
	assert_same_as_original(fx->data, fetch_file_names[2]);
	req r[16];
	assert_int_equal(read_requests(fx, r, 16), 2);
	assert_int_equal(r[1].status, 206);
	assert_string_equal(r[1].range, "bytes=1000-"); /* what came before the stall is kept */
}

static void test_checksum_mismatch_exits_65_and_leaves_no_file(void **state)
{
	fixture *fx = *state;
	char url[256];
	only_missing(fx, 3);
	base_url(fx, "wrong", url, sizeof url);
	stderr_begin(fx);
	int rc = fetch_dataset_opts(fx->data, url, g_sha, &fx->o);
	char *err = stderr_end(fx);
	assert_int_equal(rc, EXIT_DATAERR);
	assert_absent(fx->data, fetch_file_names[3]);
	assert_int_equal(count_requests(fx), 1); /* a fresh download that fails is not retried */
	assert_non_null(strstr(err, "SHA-256 mismatch"));
	assert_non_null(strstr(err, fetch_file_names[3]));
	assert_non_null(strstr(err, g_sha[3]));                   /* expected */
	assert_non_null(strstr(err, "data.sha256_test_labels")); /* what to fix */
	free(err);
}

static void test_resumed_download_that_mismatches_is_fetched_again_from_zero(void **state)
{
	fixture *fx = *state;
	char url[256], part[PATH_LEN];
	only_missing(fx, 3);
	snprintf(part, sizeof part, "%s/%s.part", fx->data, fetch_file_names[3]);
	write_bytes(part, "garbage from another version of the file", 41);
	base_url(fx, "files", url, sizeof url);
	assert_int_equal(fetch_dataset_opts(fx->data, url, g_sha, &fx->o), 0);
	assert_same_as_original(fx->data, fetch_file_names[3]);
	req r[16];
	assert_int_equal(read_requests(fx, r, 16), 2);
	assert_string_equal(r[0].range, "bytes=41-");
	assert_int_equal(r[0].status, 206);
	assert_string_equal(r[1].range, "");
	assert_int_equal(r[1].status, 200);
}

static void test_server_ignoring_range_restarts_from_zero(void **state)
{
	fixture *fx = *state;
	char url[256], part[PATH_LEN];
	only_missing(fx, 2);
	snprintf(part, sizeof part, "%s/%s.part", fx->data, fetch_file_names[2]);
	write_bytes(part, "xxxxxxxxxxxxxxxx", 16); /* would corrupt the file if appended to */
	base_url(fx, "norange", url, sizeof url);
	assert_int_equal(fetch_dataset_opts(fx->data, url, g_sha, &fx->o), 0);
	assert_same_as_original(fx->data, fetch_file_names[2]);
	req r[16];
	assert_int_equal(read_requests(fx, r, 16), 1); /* the same response is used, from byte 0 */
	assert_string_equal(r[0].range, "bytes=16-");
	assert_int_equal(r[0].status, 200);
}

static void test_part_longer_than_file_gets_416_and_restarts(void **state)
{
	fixture *fx = *state;
	char url[256], part[PATH_LEN];
	only_missing(fx, 3);
	size_t len = (size_t)original_size(3) + 100;
	char *junk = calloc(1, len);
	assert_non_null(junk);
	snprintf(part, sizeof part, "%s/%s.part", fx->data, fetch_file_names[3]);
	write_bytes(part, junk, len);
	free(junk);
	base_url(fx, "files", url, sizeof url);
	assert_int_equal(fetch_dataset_opts(fx->data, url, g_sha, &fx->o), 0);
	assert_same_as_original(fx->data, fetch_file_names[3]);
	req r[16];
	assert_int_equal(read_requests(fx, r, 16), 2);
	assert_int_equal(r[0].status, 416);
	assert_int_equal(r[1].status, 200);
	assert_string_equal(r[1].range, "");
}

static void test_full_length_part_with_wrong_bytes_is_fetched_again(void **state)
{
	fixture *fx = *state;
	char url[256], part[PATH_LEN];
	only_missing(fx, 3);
	size_t len = (size_t)original_size(3);
	char *junk = malloc(len);
	assert_non_null(junk);
	memset(junk, 'j', len);
	snprintf(part, sizeof part, "%s/%s.part", fx->data, fetch_file_names[3]);
	write_bytes(part, junk, len);
	free(junk);
	base_url(fx, "files", url, sizeof url);
	assert_int_equal(fetch_dataset_opts(fx->data, url, g_sha, &fx->o), 0);
	assert_same_as_original(fx->data, fetch_file_names[3]);
	req r[16];
	assert_int_equal(read_requests(fx, r, 16), 2); /* 416: nothing more to get; mismatch: again */
	assert_int_equal(r[0].status, 416);
	assert_int_equal(r[1].status, 200);
	assert_string_equal(r[1].range, "");
}

static void test_complete_part_is_verified_and_installed_without_a_request(void **state)
{
	fixture *fx = *state;
	char url[256], src[PATH_LEN], part[PATH_LEN];
	only_missing(fx, 1);
	path_in(g_mnist, fetch_file_names[1], src, sizeof src);
	size_t len;
	char *bytes = slurp(src, &len);
	assert_non_null(bytes);
	snprintf(part, sizeof part, "%s/%s.part", fx->data, fetch_file_names[1]);
	write_bytes(part, bytes, len);
	free(bytes);
	base_url(fx, "files", url, sizeof url);
	assert_int_equal(fetch_dataset_opts(fx->data, url, g_sha, &fx->o), 0);
	assert_same_as_original(fx->data, fetch_file_names[1]);
	assert_false(exists(part));
	assert_int_equal(count_requests(fx), 0);
}

static void test_redirect_to_another_host_is_refused(void **state)
{
	fixture *fx = *state;
	char url[256];
	only_missing(fx, 3);
	base_url(fx, "redirect-other", url, sizeof url);
	stderr_begin(fx);
	int rc = fetch_dataset_opts(fx->data, url, g_sha, &fx->o);
	char *err = stderr_end(fx);
	assert_int_equal(rc, EXIT_NOINPUT);
	assert_absent(fx->data, fetch_file_names[3]);
	assert_non_null(strstr(err, "refusing the redirect"));
	assert_non_null(strstr(err, "127.0.0.2"));
	free(err);
	req r[16];
	int n = read_requests(fx, r, 16);
	assert_int_equal(n, 1);
	assert_string_equal(r[0].host, "127.0.0.1");

	/* The other host was reachable: the refusal is the policy's, not the network's. */
	snprintf(url, sizeof url, "http://127.0.0.2:%d/files", fx->port);
	assert_int_equal(fetch_dataset_opts(fx->data, url, g_sha, &fx->o), 0);
	n = read_requests(fx, r, 16);
	assert_int_equal(n, 2);
	assert_string_equal(r[1].host, "127.0.0.2");
	assert_same_as_original(fx->data, fetch_file_names[3]);
}

static void test_same_host_redirects_are_followed_up_to_five(void **state)
{
	fixture *fx = *state;
	char url[256];
	only_missing(fx, 3);
	base_url(fx, "redirect-abs", url, sizeof url); /* absolute Location, same origin */
	assert_int_equal(fetch_dataset_opts(fx->data, url, g_sha, &fx->o), 0);
	assert_same_as_original(fx->data, fetch_file_names[3]);
	char final[PATH_LEN];
	path_in(fx->data, fetch_file_names[3], final, sizeof final);
	assert_int_equal(unlink(final), 0);

	snprintf(url, sizeof url, "http://127.0.0.1:%d/hops/4", fx->port); /* 5 relative Locations */
	assert_int_equal(fetch_dataset_opts(fx->data, url, g_sha, &fx->o), 0);
	assert_same_as_original(fx->data, fetch_file_names[3]);
	assert_int_equal(count_requests(fx), 2 + 6);
}

static void test_redirect_loop_gives_up_after_five_hops(void **state)
{
	fixture *fx = *state;
	char url[256];
	only_missing(fx, 3);
	base_url(fx, "redirect-loop", url, sizeof url);
	assert_int_equal(fetch_dataset_opts(fx->data, url, g_sha, &fx->o), EXIT_NOINPUT);
	assert_int_equal(count_requests(fx), 6); /* the request and 5 redirects followed */
	snprintf(url, sizeof url, "http://127.0.0.1:%d/hops/5", fx->port); /* 6 redirects */
	assert_int_equal(fetch_dataset_opts(fx->data, url, g_sha, &fx->o), EXIT_NOINPUT);
	assert_absent(fx->data, fetch_file_names[3]);
}

static void test_size_cap_stops_a_huge_declared_body(void **state)
{
	fixture *fx = *state;
	char url[256];
	only_missing(fx, 3);
	base_url(fx, "huge", url, sizeof url);
	fx->o.max_bytes = 1 << 20; /* the server sends zeros until the client leaves */
	assert_int_equal(fetch_dataset_opts(fx->data, url, g_sha, &fx->o), EXIT_DATAERR);
	assert_absent(fx->data, fetch_file_names[3]);
	assert_int_equal(count_requests(fx), 1);
}

static void test_size_cap_stops_an_endless_body(void **state)
{
	fixture *fx = *state;
	char url[256];
	only_missing(fx, 3);
	base_url(fx, "endless", url, sizeof url);
	fx->o.max_bytes = 1 << 20; /* the server sends zeros until the client leaves */
	stderr_begin(fx);
	int rc = fetch_dataset_opts(fx->data, url, g_sha, &fx->o);
	char *err = stderr_end(fx);
	assert_int_equal(rc, EXIT_DATAERR);
	assert_absent(fx->data, fetch_file_names[3]);
	assert_non_null(strstr(err, "larger than the 1048576-byte limit"));
	free(err);
}

static void test_real_file_over_the_cap_is_refused(void **state)
{
	fixture *fx = *state;
	char url[256];
	only_missing(fx, 0);
	base_url(fx, "files", url, sizeof url);
	assert_int_equal(fetch_dataset(fx->data, url, g_sha, 1000000), EXIT_DATAERR);
	assert_absent(fx->data, fetch_file_names[0]);
}

static void test_server_down_fails_fast_with_ioerr(void **state)
{
	fixture *fx = *state;
	/* a port nobody listens on: bind one, close it */
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&a, &al), 0);
	close(s);
	char url[256];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/files/", ntohs(a.sin_port));
	only_missing(fx, 3);
	double t0 = mono();
	stderr_begin(fx);
	int rc = fetch_dataset_opts(fx->data, url, g_sha, &fx->o);
	char *err = stderr_end(fx);
	assert_int_equal(rc, EXIT_IOERR);
	/* refused connections, backoff <= 50 ms: far below the 60 s deadline even on a starved
	 * machine (a fetch that waited out timeouts instead would take minutes) */
	assert_true(mono() - t0 < 30.0);
	assert_non_null(strstr(err, "cannot download"));
	assert_non_null(strstr(err, url));
	assert_non_null(strstr(err, "gave up after 4 attempts"));
	free(err);
	char final[PATH_LEN];
	path_in(fx->data, fetch_file_names[3], final, sizeof final);
	assert_false(exists(final));
}

static void test_existing_files_are_untouched_and_no_request_is_made(void **state)
{
	fixture *fx = *state;
	char dir[PATH_LEN], path[PATH_LEN], url[256];
	snprintf(dir, sizeof dir, "%s/vol", fx->work);
	mkdir(dir, 0755);
	mkdir(fx->data, 0755);
	/* two under the .gz name (with content the checksum would reject), one raw, one dotted */
	path_in(fx->data, fetch_file_names[0], path, sizeof path);
	write_bytes(path, "not checked", 11);
	path_in(fx->data, fetch_file_names[1], path, sizeof path);
	write_bytes(path, "not checked", 11);
	path_in(fx->data, "t10k-images-idx3-ubyte", path, sizeof path);
	write_bytes(path, "raw", 3);
	path_in(fx->data, "t10k-labels.idx1-ubyte", path, sizeof path);
	write_bytes(path, "dotted", 6);
	struct stat before, after;
	path_in(fx->data, fetch_file_names[0], path, sizeof path);
	assert_int_equal(stat(path, &before), 0);

	base_url(fx, "files", url, sizeof url);
	assert_int_equal(fetch_dataset_opts(fx->data, url, g_sha, &fx->o), 0);
	const char empty[4][65] = {"", "", "", ""}; /* no checksum needed for what is there */
	assert_int_equal(fetch_dataset_opts(fx->data, url, empty, &fx->o), 0);
	assert_int_equal(fetch_dataset_opts(fx->data, "ftp://nowhere/", empty, &fx->o), 0);

	assert_int_equal(count_requests(fx), 0);
	assert_int_equal(stat(path, &after), 0);
	assert_int_equal(after.st_size, 11);
	assert_int_equal(after.st_ino, before.st_ino);
	assert_int_equal(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
	assert_int_equal(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
	for (int i = 0; i < FETCH_NFILES; i++) {
		char part[PATH_LEN];
		snprintf(part, sizeof part, "%s/%s.part", fx->data, fetch_file_names[i]);
		assert_false(exists(part));
	}
	path_in(fx->data, fetch_file_names[2], path, sizeof path);
	assert_false(exists(path)); /* the raw file counts; the .gz is not fetched beside it */
}

static void test_missing_checksum_refuses_to_download_with_64(void **state)
{
	fixture *fx = *state;
	char url[256];
	char sha[4][65];
	memcpy(sha, g_sha, sizeof sha);
	sha[1][0] = '\0';
	only_missing(fx, 1);
	base_url(fx, "files", url, sizeof url);
	stderr_begin(fx);
	int rc = fetch_dataset_opts(fx->data, url, sha, &fx->o);
	char *err = stderr_end(fx);
	assert_int_equal(rc, EXIT_USAGE);
	assert_non_null(strstr(err, "data.sha256_train_labels"));
	assert_non_null(strstr(err, "without a checksum"));
	free(err);
	assert_int_equal(count_requests(fx), 0);
	assert_absent(fx->data, fetch_file_names[1]);
}

static void test_malformed_checksum_is_a_usage_error(void **state)
{
	fixture *fx = *state;
	char url[256];
	char sha[4][65];
	memcpy(sha, g_sha, sizeof sha);
	snprintf(sha[2], sizeof sha[2], "%s", "abc123");
	only_missing(fx, 2);
	base_url(fx, "files", url, sizeof url);
	assert_int_equal(fetch_dataset_opts(fx->data, url, sha, &fx->o), EXIT_USAGE);
	memcpy(sha[2], g_sha[2], sizeof sha[2]);
	sha[2][10] = 'g'; /* 64 characters, one not hexadecimal */
	assert_int_equal(fetch_dataset_opts(fx->data, url, sha, &fx->o), EXIT_USAGE);
	assert_int_equal(count_requests(fx), 0);
	/* upper-case hexadecimal is fine */
	memcpy(sha[2], g_sha[2], sizeof sha[2]);
	for (char *p = sha[2]; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	assert_int_equal(fetch_dataset_opts(fx->data, url, sha, &fx->o), 0);
}

static void test_bad_base_urls_are_usage_errors_without_a_request(void **state)
{
	fixture *fx = *state;
	char url[256];
	only_missing(fx, 3);
	const char *bad[] = {"ftp://127.0.0.1/data/", "file:///tmp/", "127.0.0.1/data", "not a url"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(fetch_dataset_opts(fx->data, bad[i], g_sha, &fx->o), EXIT_USAGE);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/files/?token=x", fx->port);
	assert_int_equal(fetch_dataset_opts(fx->data, url, g_sha, &fx->o), EXIT_USAGE);
	assert_int_equal(count_requests(fx), 0);
	assert_absent(fx->data, fetch_file_names[3]);
}

static void test_empty_base_url_does_nothing(void **state)
{
	fixture *fx = *state;
	assert_int_equal(fetch_dataset_opts(fx->data, "", g_sha, &fx->o), 0);
	assert_int_equal(fetch_dataset_opts(fx->data, NULL, g_sha, &fx->o), 0);
	assert_false(exists(fx->data));
}

static void test_http_404_is_noinput_without_retries(void **state)
{
	fixture *fx = *state;
	char url[256];
	only_missing(fx, 3);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/status/404", fx->port);
	assert_int_equal(fetch_dataset_opts(fx->data, url, g_sha, &fx->o), EXIT_NOINPUT);
	assert_int_equal(count_requests(fx), 1);
	assert_absent(fx->data, fetch_file_names[3]);
}

static void test_transient_503_is_retried_then_given_up(void **state)
{
	fixture *fx = *state;
	char url[256];
	only_missing(fx, 3);
	base_url(fx, "flaky-once", url, sizeof url);
	assert_int_equal(fetch_dataset_opts(fx->data, url, g_sha, &fx->o), 0);
	assert_same_as_original(fx->data, fetch_file_names[3]);
	assert_int_equal(count_requests(fx), 2);

	char raw[PATH_LEN]; /* now t10k-images is the one missing */
	path_in(fx->data, "t10k-images-idx3-ubyte", raw, sizeof raw);
	assert_int_equal(unlink(raw), 0);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/status/503", fx->port);
	assert_int_equal(fetch_dataset_opts(fx->data, url, g_sha, &fx->o), EXIT_IOERR);
	assert_int_equal(count_requests(fx), 2 + 1 + fx->o.max_retries);
}

static void test_base_url_trailing_slashes_are_joined(void **state)
{
	fixture *fx = *state;
	char url[256];
	only_missing(fx, 3);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/files//", fx->port);
	assert_int_equal(fetch_dataset_opts(fx->data, url, g_sha, &fx->o), 0);
	req r[4];
	assert_int_equal(read_requests(fx, r, 4), 1);
	assert_string_equal(r[0].path, "/files/t10k-labels-idx1-ubyte.gz");
}

static void test_data_dir_that_cannot_be_created_is_ioerr(void **state)
{
	fixture *fx = *state;
	char blocker[2 * DIR_LEN], dir[PATH_LEN], url[256];
	path_in(fx->work, "file", blocker, sizeof blocker);
	write_bytes(blocker, "x", 1);
	snprintf(dir, sizeof dir, "%s/data", blocker);
	base_url(fx, "files", url, sizeof url);
	assert_int_equal(fetch_dataset_opts(dir, url, g_sha, &fx->o), EXIT_IOERR);
	assert_int_equal(count_requests(fx), 0);
}

static void test_concurrent_fetchers_download_each_file_once(void **state)
{
	fixture *fx = *state;
	char url[256];
	base_url(fx, "files", url, sizeof url);
	enum { N = 3 };
	pid_t kids[N];
	fflush(stdout);
	fflush(stderr);
	for (int k = 0; k < N; k++) {
		kids[k] = fork();
		assert_true(kids[k] >= 0);
		if (kids[k] == 0)
			_exit(fetch_dataset_opts(fx->data, url, g_sha, &fx->o));
	}
	for (int k = 0; k < N; k++) {
		int st = 0;
		assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 0);
	}
	for (int i = 0; i < FETCH_NFILES; i++)
		assert_same_as_original(fx->data, fetch_file_names[i]);
	req r[64];
	int n = read_requests(fx, r, 64);
	assert_int_equal(n, 4); /* each file once, whoever fetched it */
	for (int i = 0; i < n; i++)
		assert_int_equal(r[i].status, 200);
	DIR *d = opendir(fx->data);
	assert_non_null(d);
	int entries = 0;
	for (struct dirent *e; (e = readdir(d));)
		if (e->d_name[0] != '.')
			entries++;
	closedir(d);
	assert_int_equal(entries, 4); /* no .part left behind */
}

/* ------------------------------------------------------------------ */

/* The SHA256SUMS of MNIST_DIR (sums of the .gz files), in fetch order. */
static int load_sums(void)
{
	char path[PATH_LEN];
	snprintf(path, sizeof path, "%s/SHA256SUMS", g_mnist);
	char *text = slurp(path, NULL);
	if (!text)
		return -1;
	int found = 0;
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		char hex[65], name[256];
		if (sscanf(line, "%64s %255s", hex, name) != 2)
			continue;
		const char *n = name[0] == '*' ? name + 1 : name;
		for (int i = 0; i < FETCH_NFILES; i++)
			if (strcmp(n, fetch_file_names[i]) == 0) {
				memcpy(g_sha[i], hex, sizeof g_sha[i]);
				found++;
			}
	}
	free(text);
	return found == FETCH_NFILES ? 0 : -1;
}

int main(void)
{
	const char *m = getenv("MNIST_DIR");
	snprintf(g_mnist, sizeof g_mnist, "%s", m && *m ? m : "/work/shared/data/mnist");
	const char *s = getenv("SERVE_FILES");
	if (s && *s) {
		snprintf(g_script, sizeof g_script, "%s", s);
	} else { /* tests/unit/test_fetch.c -> tests/integration/serve_files.py */
		const char *slash = strrchr(__FILE__, '/');
		int dirlen = slash ? (int)(slash - __FILE__) : 1;
		snprintf(g_script, sizeof g_script, "%.*s/../integration/serve_files.py", dirlen,
			 slash ? __FILE__ : ".");
	}
	/* nothing here may go through a proxy */
	setenv("no_proxy", "*", 1);
	setenv("NO_PROXY", "*", 1);
	signal(SIGPIPE, SIG_IGN);
	if (access("/usr/bin/python3", X_OK) != 0 || access(g_script, R_OK) != 0) {
		fprintf(stderr, "test_fetch: needs /usr/bin/python3 and %s\n", g_script);
		return 1;
	}
	if (load_sums() != 0) {
		fprintf(stderr, "test_fetch: %s/SHA256SUMS lacks the four MNIST .gz files\n", g_mnist);
		return 1;
	}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_sha256_file_matches_sha256sums_and_known_digests),
		T(test_fresh_download_of_all_four_is_byte_identical),
		T(test_public_entry_point_downloads_with_default_options),
		T(test_resume_after_dropped_connection_sends_range),
		T(test_stalled_server_is_cut_by_low_speed_limit_and_resumed),
		T(test_checksum_mismatch_exits_65_and_leaves_no_file),
		T(test_resumed_download_that_mismatches_is_fetched_again_from_zero),
		T(test_server_ignoring_range_restarts_from_zero),
		T(test_part_longer_than_file_gets_416_and_restarts),
		T(test_full_length_part_with_wrong_bytes_is_fetched_again),
		T(test_complete_part_is_verified_and_installed_without_a_request),
		T(test_redirect_to_another_host_is_refused),
		T(test_same_host_redirects_are_followed_up_to_five),
		T(test_redirect_loop_gives_up_after_five_hops),
		T(test_size_cap_stops_a_huge_declared_body),
		T(test_size_cap_stops_an_endless_body),
		T(test_real_file_over_the_cap_is_refused),
		T(test_server_down_fails_fast_with_ioerr),
		T(test_existing_files_are_untouched_and_no_request_is_made),
		T(test_missing_checksum_refuses_to_download_with_64),
		T(test_malformed_checksum_is_a_usage_error),
		T(test_bad_base_urls_are_usage_errors_without_a_request),
		T(test_empty_base_url_does_nothing),
		T(test_http_404_is_noinput_without_retries),
		T(test_transient_503_is_retried_then_given_up),
		T(test_base_url_trailing_slashes_are_joined),
		T(test_data_dir_that_cannot_be_created_is_ioerr),
		T(test_concurrent_fetchers_download_each_file_once),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
