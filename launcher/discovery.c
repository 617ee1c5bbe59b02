#include "discovery.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "proc.h"
#include "util.h"

#define DISCOVERY_MAX_OUTPUT (1 << 20)

static void common_init(discovery *d)
{
	memset(d, 0, sizeof *d);
	host_list_init(&d->hosts);
}

int discovery_init_hostfile(discovery *d, const char *path)
{
	common_init(d);
	if (!fmt_path(d->path, sizeof d->path, "%s", path)) {
		say_error("--hostfile path is too long");
		return -1;
	}
	return 0;
}

int discovery_init_command(discovery *d, const char *cmd, double timeout_s, double interval_s)
{
	common_init(d);
	d->is_command = true;
	d->timeout_s = timeout_s;
	d->interval_s = interval_s;
	size_t len = strlen(cmd);
	d->argv_buf = malloc(len + 1);
	d->argv = calloc(len / 2 + 2, sizeof *d->argv);
	if (!d->argv_buf || !d->argv) {
		say_error("out of memory");
		return -1;
	}
	memcpy(d->argv_buf, cmd, len + 1);
	int n = 0;
	char *save = NULL;
	for (char *t = strtok_r(d->argv_buf, " \t\n", &save); t; t = strtok_r(NULL, " \t\n", &save))
		d->argv[n++] = t;
	d->argv[n] = NULL;
	if (n == 0) {
		say_error("--discover needs a command (it is split at blanks and run without a shell)");
		return -1;
	}
	return 0;
}

void discovery_free(discovery *d)
{
	free(d->argv);
	free(d->argv_buf);
	free(d->last_text);
	host_list_free(&d->hosts);
	memset(d, 0, sizeof *d);
}

void discovery_describe(const discovery *d, char *buf, size_t len)
{
	if (d->is_command)
		snprintf(buf, len, "discovery command %s", d->argv[0]);
	else
		snprintf(buf, len, "hostfile %s", d->path);
}

static void read_failed(discovery *d, const char *fmt, const char *detail);

/*
 * Parse new text of len bytes; warnings are said only when the text differs
 * from the last one. Text with a NUL byte is refused as a whole (the last list
 * is kept), naming where the byte is.
 */
static int take_text(discovery *d, char *text, size_t len, bool *changed)
{
	size_t off, col;
	int line_no;
	if (hosts_find_nul(text, len, &off, &line_no, &col)) {
		char where[128];
		snprintf(where, sizeof where, "line %d, byte %zu (offset %zu of %zu)", line_no, col, off, len);
		read_failed(d, "a NUL byte at %s: not a text, refused", where);
		free(text);
		return -1;
	}
	d->failing = false;
	bool same_text = d->last_text && strcmp(d->last_text, text) == 0;
	if (same_text && d->have) {
		free(text);
		return 0;
	}
	host_list fresh;
	host_list_init(&fresh);
	char warn[1024];
	int bad = d->is_command ? hosts_parse_discovery(text, &fresh, warn, sizeof warn)
				: hosts_parse_hostfile(text, &fresh, warn, sizeof warn);
	char what[4200];
	discovery_describe(d, what, sizeof what);
	if (bad < 0) {
		say_error("out of memory reading the %s", what);
		host_list_free(&fresh);
		free(text);
		return -1;
	}
	if (bad > 0 && !same_text)
		say_warn("%s: %d line(s) skipped:\n%s", what, bad, warn);
	if (!d->have || !host_list_equal(&fresh, &d->hosts)) {
		*changed = true;
		host_list_free(&d->hosts);
		d->hosts = fresh;
	} else {
		host_list_free(&fresh);
	}
	d->have = true;
	free(d->last_text);
	d->last_text = text;
	return 0;
}

static void read_failed(discovery *d, const char *fmt, const char *detail)
{
	if (!d->failing) {
		char what[4200];
		discovery_describe(d, what, sizeof what);
		char msg[512];
		snprintf(msg, sizeof msg, fmt, detail);
		say_warn("%s: %s; keeping the last list of %d host(s)", what, msg, d->hosts.n);
	}
	d->failing = true;
}

static int poll_hostfile(discovery *d, bool force, bool *changed)
{
	struct stat st;
	if (stat(d->path, &st) != 0) {
		read_failed(d, "cannot read it (%s)", strerror(errno));
		d->have_stat = false;
		return -1;
	}
	if (!force && d->have_stat && st.st_dev == d->dev && st.st_ino == d->ino && st.st_size == d->size &&
	    st.st_mtim.tv_sec == d->mtime.tv_sec && st.st_mtim.tv_nsec == d->mtime.tv_nsec)
		return 0;
	char *text = NULL;
	size_t len = 0;
	int e = read_file(d->path, DISCOVERY_MAX_OUTPUT, &text, &len);
	if (e) {
		read_failed(d, "cannot read it (%s)", strerror(e));
		return -1;
	}
	d->dev = st.st_dev;
	d->ino = st.st_ino;
	d->size = st.st_size;
	d->mtime = st.st_mtim;
	d->have_stat = true;
	return take_text(d, text, len, changed);
}

static int poll_command(discovery *d, double now, bool force, bool *changed)
{
	if (!force && d->last_run > 0 && now - d->last_run < d->interval_s)
		return 0;
	d->last_run = now;
	char *out = NULL;
	size_t len = 0;
	int status;
	int e = proc_run_capture_n(d->argv, d->timeout_s, DISCOVERY_MAX_OUTPUT, &out, &len, &status);
	if (e == EFBIG) {
		char limit[32];
		snprintf(limit, sizeof limit, "%d", DISCOVERY_MAX_OUTPUT);
		read_failed(d, "its output passed %s bytes, so it was stopped", limit);
		return -1;
	}
	if (e) {
		read_failed(d, "cannot run it (%s)", strerror(e));
		free(out);
		return -1;
	}
	if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char desc[64];
		if (status == -1)
			snprintf(desc, sizeof desc, "no answer within %.0f s", d->timeout_s);
		else
			proc_describe_status(status, desc, sizeof desc);
		read_failed(d, "it failed (%s)", desc);
		free(out);
		return -1;
	}
	return take_text(d, out, len, changed);
}

int discovery_poll(discovery *d, double now_mono, bool force, bool *changed)
{
	*changed = false;
	return d->is_command ? poll_command(d, now_mono, force, changed) : poll_hostfile(d, force, changed);
}
