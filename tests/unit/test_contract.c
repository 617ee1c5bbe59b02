/*
 * test_contract.c - the exit-code table of contract.h (src/common/exit_codes.c):
 * each number means one thing, the worker's documented codes (DESIGN.md) keep
 * their numbers and reactions, and README.md's "Exit codes" table is the table
 * (exit_codes_markdown). README is found through the README environment variable
 * (tests/CMakeLists.txt sets it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "contract.h"

static void test_codes_are_unique_and_named(void **state)
{
	(void)state;
	assert_true(exit_codes_n >= 10);
	for (int i = 0; i < exit_codes_n; i++) {
		const exit_code_info *e = &exit_codes[i];
		assert_true(e->code >= 0 && e->code < 126); /* 126+ are the shell's and signals' */
		assert_non_null(e->name);
		assert_true(strncmp(e->name, "EXIT_", 5) == 0);
		assert_true(strlen(e->meaning) > 0 && !strchr(e->meaning, '|') && !strchr(e->meaning, '\n'));
		assert_true(strlen(e->returned_by) > 0);
		for (int j = 0; j < i; j++) {
			assert_int_not_equal(exit_codes[j].code, e->code);
			assert_string_not_equal(exit_codes[j].name, e->name);
		}
		assert_ptr_equal(exit_code_find(e->code), e);
	}
	assert_null(exit_code_find(1));
	assert_null(exit_code_find(137));
}

/* DESIGN.md "Exit codes (worker and launcher)": numbers and the launcher's reactions. */
static void test_worker_codes_keep_design_numbers_and_reactions(void **state)
{
	(void)state;
	static const struct {
		int code;
		exit_reaction r;
	} design[] = {
		{ 0, EXIT_REACT_DONE },  { 75, EXIT_REACT_RESUME }, { 64, EXIT_REACT_STOP },
		{ 65, EXIT_REACT_STOP }, { 66, EXIT_REACT_STOP },   { 74, EXIT_REACT_RETRY },
	};
	assert_int_equal(EXIT_OK, 0);
	assert_int_equal(EXIT_USAGE, 64);
	assert_int_equal(EXIT_DATAERR, 65);
	assert_int_equal(EXIT_NOINPUT, 66);
	assert_int_equal(EXIT_IOERR, 74);
	assert_int_equal(EXIT_TEMPFAIL, 75);
	for (size_t i = 0; i < sizeof design / sizeof design[0]; i++) {
		const exit_code_info *e = exit_code_find(design[i].code);
		assert_non_null(e);
		assert_non_null(strstr(e->returned_by, "worker"));
		assert_int_equal(e->reaction, design[i].r);
	}
	/* a crash or a signal is a failure that is retried */
	assert_int_equal(exit_code_reaction(1), EXIT_REACT_RETRY);
	assert_int_equal(exit_code_reaction(139), EXIT_REACT_RETRY);
}

/* The "## Exit codes" section of text: the lines from the first "| code" line up to the
 * first line that does not start with '|'. Returns a malloc'ed copy or NULL. */
static char *readme_table(const char *text)
{
	const char *sec = strstr(text, "\n## Exit codes\n");
	if (!sec)
		return NULL;
	const char *start = strstr(sec, "\n| code");
	if (!start)
		return NULL;
	start++;
	const char *end = start;
	while (*end == '|') {
		const char *nl = strchr(end, '\n');
		end = nl ? nl + 1 : end + strlen(end);
	}
	return strndup(start, (size_t)(end - start));
}

static void test_readme_table_is_the_table(void **state)
{
	(void)state;
	const char *path = getenv("README");
	if (!path)
		skip();
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	static char text[1 << 18];
	size_t n = fread(text, 1, sizeof text - 1, f);
	fclose(f);
	text[n] = '\0';
	char *got = readme_table(text);
	char want[8192];
	int k = exit_codes_markdown(want, sizeof want);
	assert_true(k > 0 && (size_t)k < sizeof want);
	if (!got || strcmp(got, want) != 0)
		fprintf(stderr, "README.md's exit-code table differs from contract.h's; it should read:\n%s", want);
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_codes_are_unique_and_named),
		cmocka_unit_test(test_worker_codes_keep_design_numbers_and_reactions),
		cmocka_unit_test(test_readme_table_is_the_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
