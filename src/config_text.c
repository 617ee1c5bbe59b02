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
 *   - no key twice in one section (inih hands both over and the last would
 *     silently win; a config says each thing once);
 *   - no indented line (inih takes an indented line after a key as a
 *     continuation of that key's value: "seed = 7", then "  9", trained with
 *     seed 9), except blank and comment lines;
 *   - at most CONFIG_TEXT_MAX bytes, CONFIG_KEYS_PER_SECTION keys a section.
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

/* The section a line opens ("[name]" at its start: an indented one is refused below), copied
 * into out; false if none. */
static bool section_of(const char *line, size_t len, char *out, size_t out_len)
{
	size_t i = 0;
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

/* The keys of the current section: each name with its line. */
#define CONFIG_KEYS_PER_SECTION 256
typedef struct key_seen {
	char name[64];
	int line;
} key_seen;

/*
 * Check one line that is not a section header: not indented (blank and comment lines
 * aside), and its key (text before the first '=' or ':', trimmed) not seen before in this
 * section. Returns 0, or EXIT_USAGE after saying why with file and line.
 */
static int check_key_line(const char *line, size_t len, key_seen *keys, int *n_keys, const char *name, int at)
{
	size_t i = 0;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (i == len || line[i] == ';' || line[i] == '#' || line[i] == '\r')
		return 0;
	if (i > 0) {
		log_error("%s:%d: an indented line (the INI parser would take it as a continuation of "
			  "the previous value); write each [section] and key = value at the start of its line",
			  name, at);
		return EXIT_USAGE;
	}
	size_t end = i;
	while (end < len && line[end] != '=' && line[end] != ':')
		end++;
	if (end == len)
		return 0; /* not key = value: the parser reports the syntax error with its line */
	while (end > i && (line[end - 1] == ' ' || line[end - 1] == '\t'))
		end--;
	char key[64];
	snprintf(key, sizeof key, "%.*s", (int)(end - i), line + i);
	for (int k = 0; k < *n_keys; k++) {
		if (strcmp(keys[k].name, key) == 0) {
			log_error("%s:%d: key '%s' appears twice in its section (first at line %d): give "
				  "each key once", name, at, key, keys[k].line);
			return EXIT_USAGE;
		}
	}
	if (*n_keys == CONFIG_KEYS_PER_SECTION) {
		log_error("%s:%d: more than %d keys in one section", name, at, CONFIG_KEYS_PER_SECTION);
		return EXIT_USAGE;
	}
	snprintf(keys[*n_keys].name, sizeof keys[*n_keys].name, "%s", key);
	keys[(*n_keys)++].line = at;
	return 0;
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
	key_seen *keys = malloc(CONFIG_KEYS_PER_SECTION * sizeof *keys);
	int n_keys = 0;
	if (!names || !keys) {
		free(names);
		free(keys);
		log_error("%s: out of memory", name);
		return EXIT_OSERR;
	}
	/* a UTF-8 byte order mark, which inih skips on the first line */
	size_t start = len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
	for (size_t at = start; at < len; line++) {
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
			n_keys = 0;
		} else if ((rc = check_key_line(text + at, n_chars, keys, &n_keys, name, line))) {
			break;
		}
		at = end + 1;
	}
	free(names);
	free(keys);
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
