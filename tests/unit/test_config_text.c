/*
 * test_config_text.c - a config file is parsed exactly as written or refused
 * with its line: lines up to CONFIG_LINE_MAX characters keep their whole value,
 * longer ones (which the INI parser would cut, taking the rest as a
 * continuation: "seed = 7", spaces, "9" trained with seed 9) are errors, and
 * so are NUL bytes, a section written twice (which would be merged), a key written
 * twice in a section (the last would win) and an indented line (a continuation).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "contract.h"

static const char layers[] = "[model]\ninput = 1x28x28\n"
			     "[layer.flat]\ntype = flatten\n"
			     "[layer.fc]\ntype = dense\nunits = 10\n"
			     "[layer.loss]\ntype = softmax_xent\n";

/* Writes len bytes of text to a temporary file; returns its path (static buffer). */
static const char *write_tmp(const char *text, size_t len)
{
	static char path[64];
	snprintf(path, sizeof path, "/tmp/spottrain-cfgtext-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
	return path;
}

static int load_file(config *c, const char *text, size_t len)
{
	const char *path = write_tmp(text, len);
	config_defaults(c);
	int rc = config_load_file(c, path);
	unlink(path);
	return rc;
}

/* "[train]\nseed = 7" padded with blanks to `width` characters, then "9". */
static int seed_line(config *c, int width)
{
	char text[1024];
	int n = snprintf(text, sizeof text, "%s[train]\nseed = 7", layers);
	int pad = width - (int)strlen("seed = 7") - 1;
	for (int i = 0; i < pad; i++)
		text[n++] = ' ';
	n += snprintf(text + n, sizeof text - (size_t)n, "9\nepochs = 1\n");
	return load_file(c, text, (size_t)n);
}

static void test_longest_line_parses_whole(void **state)
{
	(void)state;
	config c;
	/* a value with blanks inside is refused as a number: the whole line reached the parser */
	assert_int_equal(seed_line(&c, CONFIG_LINE_MAX), EXIT_USAGE);
	char text[512], dir[256];
	memset(dir, 'd', sizeof dir);
	size_t dn = CONFIG_LINE_MAX - strlen("dir = /");
	dir[0] = '/';
	dir[dn + 1] = 0;
	snprintf(text, sizeof text, "%s[data]\ndir = %s\n", layers, dir);
	assert_int_equal(strlen(strstr(text, "dir = ")) - 1, CONFIG_LINE_MAX); /* the line, less its newline */
	assert_int_equal(load_file(&c, text, strlen(text)), 0);
	assert_string_equal(c.data_dir, dir);
}

static void test_longer_line_is_refused_not_split(void **state)
{
	(void)state;
	config c;
	/* the trap: before, this trained with seed 9 */
	assert_int_equal(seed_line(&c, CONFIG_LINE_MAX + 1), EXIT_USAGE);
	assert_int_equal(seed_line(&c, 400), EXIT_USAGE);
	assert_int_equal(c.seed, 1); /* untouched default */
}

static void test_nul_byte_is_refused(void **state)
{
	(void)state;
	config c;
	char text[512];
	int n = snprintf(text, sizeof text, "%s[train]\nseed = 7", layers);
	text[n++] = 0;
	n += snprintf(text + n, sizeof text - (size_t)n, "9\n");
	assert_int_equal(load_file(&c, text, (size_t)n), EXIT_USAGE); /* before: seed 7, silently */
	assert_int_equal(c.seed, 1);
	/* the same file without the NUL parses */
	memmove(text + n - 3, text + n - 2, 2);
	assert_int_equal(load_file(&c, text, (size_t)n - 1), 0);
	assert_int_equal(c.seed, 79);
}

static void test_repeated_section_is_refused(void **state)
{
	(void)state;
	config c;
	char text[1024];
	snprintf(text, sizeof text, "%s[layer.fc]\ntype = conv2d\n", layers);
	assert_int_equal(load_file(&c, text, strlen(text)), EXIT_USAGE);
	snprintf(text, sizeof text, "%s[train]\nseed = 2\n[data]\ndir = /x\n  [train]  \nseed = 3\n", layers);
	assert_int_equal(load_file(&c, text, strlen(text)), EXIT_USAGE);
	config_defaults(&c);
	assert_int_equal(config_load_string(&c, text, "text"), EXIT_USAGE);
	/* each section once: fine */
	snprintf(text, sizeof text, "%s[train]\nseed = 2\n", layers);
	assert_int_equal(load_file(&c, text, strlen(text)), 0);
	assert_int_equal(c.seed, 2);
}

/* A key given twice in one section is an error (before, the last silently won); the same key in
 * two sections, and the ':' separator, are handled as inih reads them. */
static void test_repeated_key_is_refused(void **state)
{
	(void)state;
	config c;
	char text[1024];
	snprintf(text, sizeof text, "%s[train]\nseed = 2\nepochs = 1\nseed = 3\n", layers);
	assert_int_equal(load_file(&c, text, strlen(text)), EXIT_USAGE);
	assert_int_equal(c.seed, 1);
	snprintf(text, sizeof text, "%s[train]\nseed = 2\nseed: 3\n", layers);
	assert_int_equal(load_file(&c, text, strlen(text)), EXIT_USAGE);
	snprintf(text, sizeof text, "[layer.fc]\ntype = dense\nunits = 10\nunits=12\n[layer.loss]\ntype = softmax_xent\n");
	config_defaults(&c);
	assert_int_equal(config_load_string(&c, text, "text"), EXIT_USAGE);
	/* once per section is fine, also in a section that comes back after another's keys */
	snprintf(text, sizeof text, "%s[train]\nseed = 2\n[data]\ndir = /x\n", layers);
	assert_int_equal(load_file(&c, text, strlen(text)), 0);
	assert_int_equal(c.seed, 2);
}

/* An indented line is refused: inih would take it as a continuation of the previous value
 * ("seed = 7", then "  9": seed 9). Indented comments and blank lines stay allowed; so does a
 * byte order mark before the first line. */
static void test_indented_line_is_refused(void **state)
{
	(void)state;
	config c;
	char text[1024];
	snprintf(text, sizeof text, "%s[train]\nseed = 7\n  9\n", layers);
	assert_int_equal(load_file(&c, text, strlen(text)), EXIT_USAGE);
	assert_int_equal(c.seed, 1);
	snprintf(text, sizeof text, "%s[train]\nseed = 7\n\tepochs = 2\n", layers);
	assert_int_equal(load_file(&c, text, strlen(text)), EXIT_USAGE);
	snprintf(text, sizeof text, "\xef\xbb\xbf%s[train]\nseed = 7\n   ; a note\n \t \n\t# another\n", layers);
	assert_int_equal(load_file(&c, text, strlen(text)), 0);
	assert_int_equal(c.seed, 7);
}

/* A --set text value that a config file could not hold as given is refused: a newline (it would
 * inject lines, even a section, into the dump that a checkpoint keeps), blanks at either end, " ;"
 * (the rest would be read as a comment). Found by fuzz_config's round trip. */
static void test_set_value_that_a_file_cannot_hold_is_refused(void **state)
{
	(void)state;
	config c;
	config_defaults(&c);
	assert_int_equal(config_load_string(&c, layers, "layers"), 0);
	assert_int_equal(config_set(&c, "data.dir=/x\n[data]\nurl=http://elsewhere/"), EXIT_USAGE);
	assert_int_equal(config_set(&c, "data.dir=/x ;note"), EXIT_USAGE);
	assert_int_equal(config_set(&c, "data.dir= /x"), EXIT_USAGE);
	assert_int_equal(config_set(&c, "data.dir=/x\t"), EXIT_USAGE);
	assert_int_equal(config_set(&c, "data.dir=/x;y z"), 0); /* ';' without a blank before is text */
	char *text = config_dump(&c);
	config d;
	config_defaults(&d);
	assert_int_equal(config_load_string(&d, text, "dump"), 0);
	assert_string_equal(d.data_dir, "/x;y z");
	free(text);
}

/* A value too long for a file line is left out of the dump (with a comment), so the dump
 * still parses; the rest of the config comes back. */
static void test_dump_with_a_long_value_parses_back(void **state)
{
	(void)state;
	config c, d;
	config_defaults(&c);
	assert_int_equal(config_load_string(&c, layers, "layers"), 0);
	char set[CONFIG_PATH_MAX];
	memset(set, 0, sizeof set);
	strcpy(set, "data.dir=/");
	memset(set + strlen(set), 'x', 400);
	assert_int_equal(config_set(&c, set), 0);
	assert_int_equal(strlen(c.data_dir), 401);
	assert_int_equal(config_set(&c, "train.seed=5"), 0);
	char *text = config_dump(&c);
	assert_non_null(text);
	config_defaults(&d);
	assert_int_equal(config_load_string(&d, text, "dump"), 0);
	free(text);
	assert_int_equal(d.seed, 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_longest_line_parses_whole),
		cmocka_unit_test(test_longer_line_is_refused_not_split),
		cmocka_unit_test(test_nul_byte_is_refused),
		cmocka_unit_test(test_repeated_section_is_refused),
		cmocka_unit_test(test_repeated_key_is_refused),
		cmocka_unit_test(test_indented_line_is_refused),
		cmocka_unit_test(test_set_value_that_a_file_cannot_hold_is_refused),
		cmocka_unit_test(test_dump_with_a_long_value_parses_back),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
