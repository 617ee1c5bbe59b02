#include "hosts.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* An ASCII letter or digit, whatever the locale says. */
static bool ascii_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool host_name_valid(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n >= HOST_NAME_LEN || !ascii_alnum((unsigned char)name[0]))
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (!ascii_alnum(c) && c != '.' && c != '-' && c != '_')
			return false;
	}
	return true;
}

void host_list_init(host_list *l)
{
	memset(l, 0, sizeof *l);
}

void host_list_free(host_list *l)
{
	free(l->v);
	host_list_init(l);
}

void host_list_clear(host_list *l)
{
	l->n = 0;
}

int host_list_find(const host_list *l, const char *name)
{
	for (int i = 0; i < l->n; i++)
		if (strcmp(l->v[i].name, name) == 0)
			return i;
	return -1;
}

int host_list_add(host_list *l, const char *name, int slots)
{
	int i = host_list_find(l, name);
	if (i >= 0) {
		if (slots > 0) {
			int s = l->v[i].slots + slots;
			l->v[i].slots = s > HOST_MAX_SLOTS ? HOST_MAX_SLOTS : s;
		}
		return 0;
	}
	if (l->n == l->cap) {
		int cap = l->cap ? l->cap * 2 : 16;
		host_entry *v = realloc(l->v, (size_t)cap * sizeof *v);
		if (!v)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	host_entry *e = &l->v[l->n++];
	snprintf(e->name, sizeof e->name, "%s", name);
	e->slots = slots;
	return 0;
}

int host_list_copy(host_list *dst, const host_list *src)
{
	host_list_clear(dst);
	for (int i = 0; i < src->n; i++)
		if (host_list_add(dst, src->v[i].name, src->v[i].slots))
			return -1;
	return 0;
}

bool host_list_equal(const host_list *a, const host_list *b)
{
	if (a->n != b->n)
		return false;
	for (int i = 0; i < a->n; i++)
		if (strcmp(a->v[i].name, b->v[i].name) != 0 || a->v[i].slots != b->v[i].slots)
			return false;
	return true;
}

void host_list_names(const host_list *l, char *buf, size_t len)
{
	size_t used = 0;
	if (len == 0)
		return;
	buf[0] = 0;
	for (int i = 0; i < l->n; i++) {
		int w = snprintf(buf + used, len - used, "%s%s", i ? "," : "", l->v[i].name);
		if (w < 0 || (size_t)w >= len - used) {
			if (len > 4)
				snprintf(buf + len - 4, 4, "...");
			return;
		}
		used += (size_t)w;
	}
}

/* Collects warnings about bad lines: the first few in the buffer, all counted. */
typedef struct warn_sink {
	char *buf;
	size_t len, used;
	int count;
} warn_sink;

static void warn_line(warn_sink *w, int line_no, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void warn_line(warn_sink *w, int line_no, const char *fmt, ...)
{
	w->count++;
	if (!w->buf || w->count > 5 || w->used + 1 >= w->len)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	int n = snprintf(w->buf + w->used, w->len - w->used, "%sline %d: %s", w->used ? "\n" : "", line_no, msg);
	if (n > 0)
		w->used = (size_t)n >= w->len - w->used ? w->len - 1 : w->used + (size_t)n;
}

/* Split text into lines with comments removed and blanks trimmed; calls fn per non-empty line. */
typedef int (*line_fn)(char *line, int line_no, host_list *out, warn_sink *w);

static int for_each_line(const char *text, line_fn fn, host_list *out, char *warn, size_t warn_len)
{
	warn_sink w = {warn, warn_len, 0, 0};
	if (warn && warn_len)
		warn[0] = 0;
	host_list_clear(out);
	int line_no = 0;
	const char *p = text;
	while (*p) {
		const char *eol = strchr(p, '\n');
		size_t n = eol ? (size_t)(eol - p) : strlen(p);
		line_no++;
		char line[1024];
		if (n >= sizeof line) {
			warn_line(&w, line_no, "longer than %zu characters, skipped", sizeof line - 1);
		} else {
			memcpy(line, p, n);
			line[n] = 0;
			/* control and non-ASCII bytes can be in no host name: '?' keeps them out of
			 * the messages (a terminal would obey escape sequences) and the line is refused */
			for (size_t i = 0; i < n; i++)
				if (((unsigned char)line[i] < 0x20 && line[i] != '\t' && line[i] != '\r') ||
				    (unsigned char)line[i] >= 0x7f)
					line[i] = '?';
			char *hash = strchr(line, '#');
			if (hash)
				*hash = 0;
			char *s = line;
			while (isspace((unsigned char)*s))
				s++;
			char *e = s + strlen(s);
			while (e > s && isspace((unsigned char)e[-1]))
				*--e = 0;
			if (*s && fn(s, line_no, out, &w))
				return -1;
		}
		p += n;
		if (*p == '\n')
			p++;
	}
	return w.count;
}

/* host_list_add, but a list holds at most HOST_MAX_HOSTS names: a new one beyond is skipped
 * with a warning (so a hostile list costs bounded time and memory). 0 or -1 (memory). */
static int add_bounded(host_list *out, const char *name, int slots, int line_no, warn_sink *w)
{
	if (out->n >= HOST_MAX_HOSTS && host_list_find(out, name) < 0) {
		warn_line(w, line_no, "more than %d hosts; %.80s skipped", HOST_MAX_HOSTS, name);
		return 0;
	}
	return host_list_add(out, name, slots);
}

static bool parse_slots(const char *s, int *out)
{
	long v;
	if (!parse_long(s, 1, HOST_MAX_SLOTS, &v))
		return false;
	*out = (int)v;
	return true;
}

static int hostfile_line(char *line, int line_no, host_list *out, warn_sink *w)
{
	char *save = NULL;
	char *name = strtok_r(line, " \t\r", &save);
	if (!host_name_valid(name)) {
		warn_line(w, line_no, "'%.80s' is not a usable host name, skipped", name);
		return 0;
	}
	int slots = 0;
	for (char *tok = strtok_r(NULL, " \t\r", &save); tok; tok = strtok_r(NULL, " \t\r", &save)) {
		char *eq = strchr(tok, '=');
		if (!eq) {
			warn_line(w, line_no, "unexpected '%.80s' after the host name, line skipped", tok);
			return 0;
		}
		*eq = 0;
		const char *key = tok, *val = eq + 1;
		int v;
		if (!parse_slots(val, &v)) {
			warn_line(w, line_no, "%s needs a number from 1 to %d, not '%.40s'; line skipped", key,
				  HOST_MAX_SLOTS, val);
			return 0;
		}
		if (strcmp(key, "slots") == 0 || strcmp(key, "slot") == 0 || strcmp(key, "count") == 0 ||
		    strcmp(key, "cpu") == 0) {
			slots = v;
		} else if (strcmp(key, "max_slots") == 0 || strcmp(key, "max-slots") == 0) {
			/* an upper bound for oversubscription: the launcher never uses more than slots */
		} else {
			warn_line(w, line_no, "unknown key '%.40s', line skipped", key);
			return 0;
		}
	}
	return add_bounded(out, name, slots, line_no, w);
}

static int discovery_line(char *line, int line_no, host_list *out, warn_sink *w)
{
	int slots = 0;
	for (char *p = line; *p; p++)
		if (isspace((unsigned char)*p)) {
			warn_line(w, line_no, "'%.80s' is not 'host' or 'host:slots', skipped", line);
			return 0;
		}
	char *colon = strrchr(line, ':');
	if (colon) {
		*colon = 0;
		if (!parse_slots(colon + 1, &slots)) {
			warn_line(w, line_no, "slots of %.80s must be a number from 1 to %d, not '%.40s'; skipped",
				  line, HOST_MAX_SLOTS, colon + 1);
			return 0;
		}
	}
	if (!host_name_valid(line)) {
		warn_line(w, line_no, "'%.80s' is not a usable host name, skipped", line);
		return 0;
	}
	return add_bounded(out, line, slots, line_no, w);
}

int hosts_parse_hostfile(const char *text, host_list *out, char *warn, size_t warn_len)
{
	return for_each_line(text, hostfile_line, out, warn, warn_len);
}

int hosts_parse_discovery(const char *text, host_list *out, char *warn, size_t warn_len)
{
	return for_each_line(text, discovery_line, out, warn, warn_len);
}

bool hosts_find_nul(const char *text, size_t len, size_t *offset, int *line_no, size_t *col)
{
	const char *z = memchr(text, 0, len);
	if (!z)
		return false;
	*offset = (size_t)(z - text);
	*line_no = 1;
	const char *bol = text;
	for (const char *p = text; p < z; p++)
		if (*p == '\n') {
			(*line_no)++;
			bol = p + 1;
		}
	*col = (size_t)(z - bol) + 1;
	return true;
}
