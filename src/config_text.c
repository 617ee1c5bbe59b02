/*
 * config_text.c - what a config file's text must satisfy before inih parses
 * it, so that a file is parsed exactly as written or refused with its line:
 *
 *   - no NUL byte (C strings would silently end the value there);
 *   - no line longer than inih's line buffer (a longer line is cut, and the
 *     rest, starting with blanks, would be taken as a continuation of the
 *     value: "seed = 7", spaces, "9" trained with seed 9);
 *   - no section twice (inih would merge [layer.x] into the earlier one,
 *     even changing its type);
 *   - at most CONFIG_TEXT_MAX bytes.
 */
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"
#include "log.h"

/* The longest line inih keeps whole: its buffer holds INI_MAX_LINE bytes with the newline and NUL. */
#define LINE_MAX_CHARS CONFIG_LINE_MAX
_Static_assert(CONFIG_LINE_MAX <= INI_MAX_LINE - 2, "a config line must fit inih's buffer");

/* The section a line opens ("[name]" after blanks), copied into out; false if none. */
static bool section_of(const char *line, size_t len, char *out, size_t out_len)
{
	size_t i = 0;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (i >= len || line[i] != '[')
		return false;
	const char *end = memchr(line + i, ']', len - i);
	if (!end)
		return false;
	size_t n = (size_t)(end - (line + i + 1));
	if (n >= out_len)
		n = out_len - 1;
	memcpy(out, line + i + 1, n);
	out[n] = 0;
	return true;
}

/* Whether the section opened at line `at` was opened before; *first gets that line. */
static bool seen_before(char (*names)[128], const int *lines, int n, const char *name, int *first)
{
	for (int i = 0; i < n; i++) {
		if (strcmp(names[i], name) == 0) {
			*first = lines[i];
			return true;
		}
	}
	return false;
}

int config_check_text(const char *text, size_t len, const char *name)
{
	enum { MAX_SECTIONS = 4 * CONFIG_MAX_LAYERS };
	int lines_at[MAX_SECTIONS], n = 0, line = 1, first = 0, rc = 0;
	if (len > CONFIG_TEXT_MAX) {
		log_error("%s: %zu bytes; a config may have at most %d", name, len, CONFIG_TEXT_MAX);
		return EXIT_USAGE;
	}
	char (*names)[128] = malloc(MAX_SECTIONS * sizeof *names);
	if (!names) {
		log_error("%s: out of memory", name);
		return EXIT_OSERR;
	}
	for (size_t at = 0; at < len; line++) {
		const char *nl = memchr(text + at, '\n', len - at);
		size_t end = nl ? (size_t)(nl - text) : len, n_chars = end - at;
		const char *zero = memchr(text + at, 0, n_chars);
		if (zero) {
			log_error("%s:%d: a NUL byte at column %zu (a config is text)", name, line,
				  (size_t)(zero - (text + at)) + 1);
			rc = EXIT_USAGE;
			break;
		}
		if (n_chars > 0 && text[end - 1] == '\r')
			n_chars--;
		if (n_chars > LINE_MAX_CHARS) {
			log_error("%s:%d: the line is %zu characters long; config lines may have at most %d "
				  "(give a long value with --set)", name, line, n_chars, LINE_MAX_CHARS);
			rc = EXIT_USAGE;
			break;
		}
		char sec[128];
		if (section_of(text + at, n_chars, sec, sizeof sec)) {
			if (seen_before(names, lines_at, n, sec, &first)) {
				log_error("%s:%d: section [%s] appears twice (first at line %d): write each "
					  "section once", name, line, sec, first);
				rc = EXIT_USAGE;
				break;
			}
			if (n == MAX_SECTIONS) {
				log_error("%s:%d: more than %d sections", name, line, MAX_SECTIONS);
				rc = EXIT_USAGE;
				break;
			}
			snprintf(names[n], sizeof names[n], "%s", sec);
			lines_at[n++] = line;
		}
		at = end + 1;
	}
	free(names);
	return rc;
}

int config_read_text(const char *path, char **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	FILE *f = fopen(path, "rb");
	if (!f) {
		log_error("cannot open config %s: %s", path, strerror(errno));
		return errno == ENOENT ? EXIT_NOINPUT : EXIT_USAGE;
	}
	char *buf = malloc(CONFIG_TEXT_MAX + 2);
	size_t n = buf ? fread(buf, 1, CONFIG_TEXT_MAX + 1, f) : 0;
	int err = ferror(f);
	fclose(f);
	if (!buf || err) {
		log_error("cannot read config %s%s", path, buf ? "" : ": out of memory");
		free(buf);
		return buf ? EXIT_NOINPUT : EXIT_OSERR;
	}
	buf[n] = 0;
	*out = buf;
	*len = n;
	return 0;
}
