/*
 * test_data_untar.c - the bounded ustar reader of data_archive.h against
 * archives built here with zlib: the members asked for land byte for byte,
 * others are skipped, and every hostile or damaged archive (absolute path,
 * "..", links, pax headers, oversize member, bad checksum, truncated stream,
 * missing or repeated member) is refused with 65 naming the member, leaving
 * nothing in the destination.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <zlib.h>

#include "contract.h"
#include "data_archive.h"
#include "data_test_util.h"

/* One member of a generated archive. */
typedef struct mem {
	const char *name;
	char type;          /* '0', '5', '1', '2', 'x', ... */
	size_t size;        /* bytes of content (pattern from the name's length) */
	int bad_sum;        /* write a wrong header checksum */
} mem;

/* Content byte i of a member of size n. */
static unsigned char content(size_t n, size_t i)
{
	return (unsigned char)(i * 13 + n * 7 + 1);
}

/* Append a ustar header and the content of m to gz. */
static void put_member(gzFile gz, const mem *m)
{
	unsigned char h[512] = {0};
	snprintf((char *)h, 100, "%s", m->name);
	snprintf((char *)h + 100, 8, "%07o", 0644);
	snprintf((char *)h + 108, 8, "%07o", 0);
	snprintf((char *)h + 116, 8, "%07o", 0);
	snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)m->size);
	snprintf((char *)h + 136, 12, "%011o", 0);
	h[156] = (unsigned char)m->type;
	if (m->type == '1' || m->type == '2')
		snprintf((char *)h + 157, 100, "%s", "/etc/passwd");
	memcpy(h + 257, "ustar\0" "00", 8);
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum + (m->bad_sum ? 1u : 0u));
	assert_int_equal(gzwrite(gz, h, 512), 512);
	size_t padded = (m->size + 511) / 512 * 512;
	for (size_t i = 0; i < padded; i++) {
		unsigned char b = i < m->size ? content(m->size, i) : 0;
		assert_int_equal(gzwrite(gz, &b, 1), 1);
	}
}

/* Write dir/a.tar.gz of the n members and the end blocks; cut: keep only that percentage of it. */
static const char *make_archive(dtu *f, const mem *ms, int n, long cut)
{
	static char path[1100];
	snprintf(path, sizeof path, "%s/a.tar.gz", f->dir);
	gzFile gz = gzopen(path, "wb");
	assert_non_null(gz);
	for (int i = 0; i < n; i++)
		put_member(gz, &ms[i]);
	static const unsigned char zero[1024];
	assert_int_equal(gzwrite(gz, zero, sizeof zero), (int)sizeof zero);
	assert_int_equal(gzclose(gz), Z_OK);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	if (cut > 0)
		assert_int_equal(truncate(path, st.st_size * cut / 100), 0);
	return path;
}

static const char *const want[2] = {"one.bin", "two.bin"};

/* dir/out, created empty. */
static const char *out_dir(dtu *f)
{
	static char out[1100];
	snprintf(out, sizeof out, "%s/out", f->dir);
	mkdir(out, 0755);
	return out;
}

/* Number of entries in dir (. and .. aside). */
static int entries(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

/* The file dir/name holds exactly the content of a member of size n. */
static void assert_content(const char *dir, const char *name, size_t n)
{
	char p[1200];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	FILE *fp = fopen(p, "rb");
	assert_non_null(fp);
	size_t i = 0;
	int c;
	while ((c = fgetc(fp)) != EOF) {
		assert_true(i < n);
		assert_int_equal(c, content(n, i));
		i++;
	}
	fclose(fp);
	assert_int_equal(i, n);
}

static void test_good_archive(void **state)
{
	dtu *f = *state;
	const mem ms[] = {
		{"./set/", '5', 0, 0},        {"set/readme.txt", '0', 77, 0}, {"set/one.bin", '0', 1500, 0},
		{"other/two.bin", '0', 9, 0}, {"set/two.bin", '0', 512, 0},
	};
	const char *out = out_dir(f);
	assert_int_equal(archive_untar(make_archive(f, ms, 5, 0), "set", want, 2, 4096, out), 0);
	assert_content(out, "one.bin", 1500);
	assert_content(out, "two.bin", 512);
	assert_int_equal(entries(out), 2); /* nothing else written */
}

/* archive_untar on ms is refused with code, the message holds needle, out is left empty. */
static void refused(dtu *f, const mem *ms, int n, long cut, size_t max, int code, const char *needle)
{
	const char *out = out_dir(f);
	const char *a = make_archive(f, ms, n, cut);
	dtu_capture_begin(f);
	int rc = archive_untar(a, "set", want, 2, max, out);
	dtu_capture_end(f);
	assert_int_equal(rc, code);
	assert_non_null(strstr(f->err, needle));
	assert_int_equal(entries(out), 0);
}

static void test_absolute_path(void **state)
{
	const mem ms[] = {{"set/one.bin", '0', 100, 0}, {"/set/two.bin", '0', 10, 0}};
	refused(*state, ms, 2, 0, 4096, EXIT_DATAERR, "absolute path");
}

static void test_dotdot(void **state)
{
	const mem ms[] = {{"set/one.bin", '0', 100, 0}, {"set/../../two.bin", '0', 10, 0}};
	refused(*state, ms, 2, 0, 4096, EXIT_DATAERR, "set/../../two.bin");
}

static void test_links_and_pax(void **state)
{
	const char types[] = {'1', '2', '3', '6', 'x', 'g', 'L'};
	for (size_t i = 0; i < sizeof types; i++) {
		const mem ms[] = {{"set/one.bin", '0', 100, 0}, {"set/two.bin", types[i], 0, 0}};
		char needle[32];
		snprintf(needle, sizeof needle, "type '%c'", types[i]);
		refused(*state, ms, 2, 0, 4096, EXIT_DATAERR, needle);
	}
}

static void test_oversize_member(void **state)
{
	const mem ms[] = {{"set/one.bin", '0', 100, 0}, {"set/big.bin", '0', 5000, 0}, {"set/two.bin", '0', 1, 0}};
	refused(*state, ms, 3, 0, 4096, EXIT_DATAERR, "above 4096 bytes");
}

static void test_bad_checksum(void **state)
{
	const mem ms[] = {{"set/one.bin", '0', 100, 0}, {"set/two.bin", '0', 10, 1}};
	refused(*state, ms, 2, 0, 4096, EXIT_DATAERR, "checksum");
}

static void test_truncated(void **state)
{
	const mem ms[] = {{"set/one.bin", '0', 100, 0}, {"set/two.bin", '0', 60000, 0}};
	refused(*state, ms, 2, 50, 100000, EXIT_DATAERR, "truncated");
}

static void test_missing_and_repeated(void **state)
{
	const mem missing[] = {{"set/one.bin", '0', 100, 0}};
	refused(*state, missing, 1, 0, 4096, EXIT_DATAERR, "no member set/two.bin");
	const mem twice[] = {{"set/one.bin", '0', 100, 0}, {"set/one.bin", '0', 100, 0}, {"set/two.bin", '0', 1, 0}};
	refused(*state, twice, 3, 0, 4096, EXIT_DATAERR, "twice");
}

static void test_no_archive(void **state)
{
	dtu *f = *state;
	dtu_capture_begin(f);
	int rc = archive_untar(dtu_path(f, "none.tar.gz"), "set", want, 2, 4096, out_dir(f));
	dtu_capture_end(f);
	assert_int_equal(rc, EXIT_NOINPUT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_good_archive, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_absolute_path, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_dotdot, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_links_and_pax, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_oversize_member, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_bad_checksum, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_truncated, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_missing_and_repeated, dtu_setup, dtu_teardown),
		cmocka_unit_test_setup_teardown(test_no_archive, dtu_setup, dtu_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
