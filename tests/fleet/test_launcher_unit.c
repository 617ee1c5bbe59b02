/*
 * test_launcher_unit.c - spotlaunch's pieces without a fleet: host names as
 * data, hostfile and discovery parsing, state.json round trip, world planning,
 * blame and quarantine, the mpirun argv, accounting from recorded events,
 * following a growing events file, and running a discovery command with a
 * timeout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "account.h"
#include "discovery.h"
#include "events.h"
#include "hosts.h"
#include "proc.h"
#include "state.h"
#include "util.h"
#include "world.h"

/* A fresh temporary directory per test that needs files. */
static char *make_tmpdir(void)
{
	char tmpl[] = "/tmp/spotlaunch-unit-XXXXXX";
	char *d = mkdtemp(tmpl);
	assert_non_null(d);
	return strdup(d);
}

static void remove_tree(const char *dir)
{
	char *argv[] = {"rm", "-rf", (char *)dir, NULL};
	char *out = NULL;
	int st;
	assert_int_equal(proc_run_capture(argv, 10, 1024, &out, &st), 0);
	free(out);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/* ------------------------------------------------------------ host names and parsing */

static void host_names_are_data_not_options_or_shell(void **unused)
{
	(void)unused;
	assert_true(host_name_valid("node0"));
	assert_true(host_name_valid("ip-10-0-0-12.ec2.internal"));
	assert_true(host_name_valid("10.1.2.3"));
	assert_true(host_name_valid("gpu_node-7"));
	assert_false(host_name_valid(""));
	assert_false(host_name_valid("-oProxyCommand=touch /tmp/x"));
	assert_false(host_name_valid(".hidden"));
	assert_false(host_name_valid("a;rm -rf /"));
	assert_false(host_name_valid("$(reboot)"));
	assert_false(host_name_valid("a b"));
	assert_false(host_name_valid("host:4"));
	char longname[300];
	memset(longname, 'a', sizeof longname - 1);
	longname[sizeof longname - 1] = 0;
	assert_false(host_name_valid(longname));
}

static void hostfile_parses_slots_comments_and_skips_bad_lines(void **unused)
{
	(void)unused;
	host_list l;
	host_list_init(&l);
	char warn[1024];
	const char *text = "# fleet\n"
			   "node0 slots=2\n"
			   "\n"
			   "node1   slots=4 max_slots=8   # a comment\r\n"
			   "node2\n"
			   "-evil slots=1\n"
			   "node3 slots=zero\n"
			   "node4 colour=blue\n"
			   "node0 slots=1\n"
			   "node5 slots=1"; /* no newline at the end */
	int bad = hosts_parse_hostfile(text, &l, warn, sizeof warn);
	assert_int_equal(bad, 3);
	assert_non_null(strstr(warn, "line 6"));
	assert_non_null(strstr(warn, "line 7"));
	assert_non_null(strstr(warn, "line 8"));
	assert_int_equal(l.n, 4);
	assert_string_equal(l.v[0].name, "node0");
	assert_int_equal(l.v[0].slots, 3); /* duplicates add up, as in Open MPI */
	assert_string_equal(l.v[1].name, "node1");
	assert_int_equal(l.v[1].slots, 4);
	assert_string_equal(l.v[2].name, "node2");
	assert_int_equal(l.v[2].slots, 0); /* not given: --slots-per-host */
	assert_string_equal(l.v[3].name, "node5");
	host_list_free(&l);
}

static void discovery_output_parses_host_colon_slots(void **unused)
{
	(void)unused;
	host_list l;
	host_list_init(&l);
	char warn[1024];
	int bad = hosts_parse_discovery("a:2\nb\n  c:1  \nd:0\ne:x\nf g\n`id`:1\n# only a comment\n", &l, warn,
					sizeof warn);
	assert_int_equal(bad, 4);
	assert_int_equal(l.n, 3);
	assert_string_equal(l.v[0].name, "a");
	assert_int_equal(l.v[0].slots, 2);
	assert_string_equal(l.v[1].name, "b");
	assert_int_equal(l.v[1].slots, 0);
	assert_string_equal(l.v[2].name, "c");
	assert_int_equal(l.v[2].slots, 1);
	assert_int_equal(hosts_parse_discovery("", &l, warn, sizeof warn), 0);
	assert_int_equal(l.n, 0);
	host_list_free(&l);
}

/* ------------------------------------------------------------ state.json */

static void state_round_trips_through_json_and_disk(void **unused)
{
	(void)unused;
	launcher_state a, b;
	state_init(&a);
	state_init(&b);
	a.generation = 7;
	a.failures = 3;
	a.consecutive_failures = 1;
	a.run_started = 1700000000.25;
	a.mpirun_pid = 4242;
	a.mpirun_start_ticks = 18446744073709551557ULL; /* does not fit a double */
	a.mpirun_started = 1700000100.5;
	snprintf(a.token, sizeof a.token, "%s", "0123456789abcdef");
	a.np = 3;
	host_list_add(&a.world, "node0", 1);
	host_list_add(&a.world, "node2", 2);
	host_record *h = state_host(&a, "node1", true);
	h->strikes = 1;
	h->quarantines = 2;
	h->quarantined_until = 1700000200;
	h->noticed = 1700000150;

	char *dir = make_tmpdir();
	char path[4200];
	snprintf(path, sizeof path, "%s/state.json", dir);
	assert_int_equal(state_load(path, &b), 1); /* no file: a fresh run */
	assert_int_equal(state_save(path, &a), 0);
	assert_int_equal(state_load(path, &b), 0);
	assert_int_equal(b.generation, 7);
	assert_int_equal(b.failures, 3);
	assert_int_equal(b.consecutive_failures, 1);
	assert_true(b.run_started == a.run_started);
	assert_int_equal(b.mpirun_pid, 4242);
	assert_true(b.mpirun_start_ticks == a.mpirun_start_ticks);
	assert_string_equal(b.token, a.token);
	assert_int_equal(b.np, 3);
	assert_true(host_list_equal(&a.world, &b.world));
	host_record *hb = state_host(&b, "node1", false);
	assert_non_null(hb);
	assert_int_equal(hb->strikes, 1);
	assert_int_equal(hb->quarantines, 2);
	assert_true(hb->quarantined_until == 1700000200);
	assert_true(hb->noticed == 1700000150);

	/* a damaged file is refused, not half-read */
	write_text(path, "{\"version\": 1, \"generation\": \"seven\"}");
	assert_int_equal(state_load(path, &b), -1);
	write_text(path, "{\"version\": 1, \"gener");
	assert_int_equal(state_load(path, &b), -1);
	char err[256];
	assert_int_equal(state_from_json("{\"version\": 99, \"generation\": 1, \"failures\": 0, "
					 "\"consecutive_failures\": 0}",
					 &b, err, sizeof err),
			 -1);
	assert_non_null(strstr(err, "version"));
	/* host names from the file are data too */
	assert_int_equal(state_from_json("{\"version\": 1, \"generation\": 1, \"failures\": 0, "
					 "\"consecutive_failures\": 0, \"hosts\": {\"-x\": {\"strikes\": 9}}}",
					 &b, err, sizeof err),
			 0);
	assert_int_equal(b.n_hosts, 0);
	state_free(&a);
	state_free(&b);
	remove_tree(dir);
	free(dir);
}

/* ------------------------------------------------------------ world planning, blame, quarantine */

static void plan_skips_quarantined_and_noticed_hosts_and_caps_np(void **unused)
{
	(void)unused;
	launcher_state s;
	state_init(&s);
	host_list d;
	host_list_init(&d);
	host_list_add(&d, "a", 2);
	host_list_add(&d, "b", 0);
	host_list_add(&d, "c", 4);
	host_list_add(&d, "e", 1);
	double now = 1000;
	state_host(&s, "b", true)->quarantined_until = now + 10;
	world_plan p;
	world_plan_init(&p);
	assert_int_equal(world_plan_make(&d, &s, now, 1, 5, &p), 0);
	assert_int_equal(p.usable_slots, 7);
	assert_int_equal(p.np, 5);
	assert_int_equal(p.hosts.n, 2);
	assert_string_equal(p.hosts.v[0].name, "a");
	assert_int_equal(p.hosts.v[0].slots, 2);
	assert_string_equal(p.hosts.v[1].name, "c");
	assert_int_equal(p.hosts.v[1].slots, 3); /* the last host gets fewer slots */

	/* the quarantine expires; a notice takes the host out instead */
	state_host(&s, "c", true)->noticed = now - 1;
	assert_int_equal(world_plan_make(&d, &s, now + 11, 1, 100, &p), 0);
	assert_int_equal(p.np, 4); /* a:2 + b:1 (default) + e:1 */
	assert_int_equal(host_list_find(&p.hosts, "c"), -1);
	/* a notice is forgotten once the host leaves discovery (a later one of that name is new) */
	host_list_clear(&d);
	host_list_add(&d, "a", 2);
	assert_int_equal(world_forget_departed(&s, &d), 1);
	assert_true(state_host(&s, "c", false)->noticed == 0);
	world_plan_free(&p);
	host_list_free(&d);
	state_free(&s);
}

static void blame_reads_open_mpi_failure_messages(void **unused)
{
	(void)unused;
	host_list world, blamed;
	host_list_init(&world);
	host_list_init(&blamed);
	host_list_add(&world, "node0", 1);
	host_list_add(&world, "node1", 1);
	host_list_add(&world, "node2", 1);
	host_list_add(&world, "vm", 1);
	/* messages as Open MPI 4.1.4 prints them (measured on the fake fleet) */
	const char *rank_killed =
		"--------------------------------------------------------------------------\n"
		"mpirun noticed that process rank 0 with PID 13663 on node node0 exited on signal 9 (Killed).\n";
	assert_int_equal(world_blame_from_log(rank_killed, &world, &blamed), 1);
	assert_string_equal(blamed.v[0].name, "node0");
	const char *daemon_lost = "ORTE has lost communication with a remote daemon.\n\n"
				  "  HNP daemon   : [[23266,0],0] on node vm\n"
				  "  Remote daemon: [[23266,0],2] on node node1\n";
	assert_int_equal(world_blame_from_log(daemon_lost, &world, &blamed), 1);
	assert_string_equal(blamed.v[0].name, "node1");
	const char *ssh = "ssh: connect to host node2 port 22: No route to host\n"
			  "ssh: Could not resolve hostname node0: Name or service not known\n"
			  "ssh: connect to host stranger port 22: No route to host\n";
	assert_int_equal(world_blame_from_log(ssh, &world, &blamed), 2);
	assert_int_not_equal(host_list_find(&blamed, "node2"), -1);
	assert_int_not_equal(host_list_find(&blamed, "node0"), -1);
	const char *clean = "mpirun detected that one or more processes exited with non-zero status\n"
			    "  Process name: [[23527,1],0]\n  Exit code:    75\n";
	assert_int_equal(world_blame_from_log(clean, &world, &blamed), 0);
	host_list_free(&world);
	host_list_free(&blamed);
}

static void quarantine_needs_repeated_strikes_and_doubles(void **unused)
{
	(void)unused;
	launcher_state s;
	state_init(&s);
	quarantine_policy q = {2, 30, 100};
	host_list blamed;
	host_list_init(&blamed);
	host_list_add(&blamed, "x", 0);
	assert_int_equal(world_record_failure(&s, &blamed, 0, &q), 0);
	assert_true(world_host_usable(&s, "x", 0));
	assert_int_equal(world_record_failure(&s, &blamed, 0, &q), 1);
	assert_false(world_host_usable(&s, "x", 29));
	assert_true(world_host_usable(&s, "x", 31));
	/* a good generation clears strikes */
	world_record_failure(&s, &blamed, 100, &q);
	world_record_good(&s, &blamed);
	assert_int_equal(world_record_failure(&s, &blamed, 100, &q), 0);
	/* the second quarantine lasts twice as long, the third is capped */
	assert_int_equal(world_record_failure(&s, &blamed, 100, &q), 1);
	assert_false(world_host_usable(&s, "x", 159));
	assert_true(world_host_usable(&s, "x", 161));
	world_quarantine(&s, "x", 200, &q, "test");
	assert_false(world_host_usable(&s, "x", 299));
	assert_true(world_host_usable(&s, "x", 301));
	/* nobody to blame: no strikes */
	host_list none;
	host_list_init(&none);
	assert_int_equal(world_record_failure(&s, &none, 400, &q), 0);
	host_list_free(&blamed);
	state_free(&s);
}

static void mpirun_argv_is_a_vector_with_run_dir_added_once(void **unused)
{
	(void)unused;
	char *user[] = {"--mca", "btl", "self,tcp"};
	char *worker[] = {"spottrain", "train", "--config", "a b.ini", "--set", "x=$(id)"};
	char np[16];
	char **argv = world_mpirun_argv("mpirun", "/r/launcher/gen-0002.hosts", np, sizeof np, 3, user, 3, worker, 6,
					"/r");
	const char *want[] = {"mpirun", "--hostfile", "/r/launcher/gen-0002.hosts", "-np", "3", "--mca", "btl",
			      "self,tcp", "-x", "SPOTLAUNCH_GENERATION", "spottrain", "train", "--config", "a b.ini",
			      "--set", "x=$(id)", "--run-dir", "/r", NULL};
	for (int i = 0; want[i]; i++)
		assert_string_equal(argv[i], want[i]);
	assert_null(argv[18]);
	free(argv);
	const char *v = NULL;
	assert_false(worker_names_run_dir(worker, 6, &v));
	char *w2[] = {"spottrain", "train", "--run-dir=/x"};
	assert_true(worker_names_run_dir(w2, 3, &v));
	assert_string_equal(v, "/x");
	char *w3[] = {"spottrain", "train", "--run-dir", "/y"};
	assert_true(worker_names_run_dir(w3, 4, &v));
	assert_string_equal(v, "/y");
}

/* ------------------------------------------------------------ accounting */

/*
 * A recorded run (times shortened): generation 1 on 4 nodes gets a notice on
 * node1 and stops at step 152 with a checkpoint; generation 2 on 3 nodes
 * resumes at 152, is killed after step 230 (newest checkpoint 200);
 * generation 3 fails to launch; generation 4 resumes at 200 and finishes at 300.
 */
static const char recorded_events[] =
	"{\"event\":\"generation\",\"time\":100.0,\"source\":\"launcher\",\"generation\":1,\"np\":4,"
	"\"hosts\":[\"node0\",\"node1\",\"node2\",\"node3\"]}\n"
	"{\"event\":\"start\",\"time\":102.0,\"world_size\":4,\"step\":0,\"generation\":1}\n"
	"{\"event\":\"first_step\",\"time\":102.2,\"source\":\"launcher\",\"generation\":1,\"step\":1,\"step_time\":102.1}\n"
	"{\"event\":\"checkpoint\",\"time\":104.0,\"path\":\"c/ckpt-00000100.h5\",\"step\":100,\"generation\":1}\n"
	"{\"event\":\"notice\",\"time\":105.0,\"node\":\"node1\",\"provider\":\"aws\",\"received\":105.0,\"step\":150,"
	"\"generation\":1}\n"
	"{\"event\":\"checkpoint\",\"time\":105.1,\"path\":\"c/ckpt-00000152.h5\",\"step\":152,\"generation\":1}\n"
	"{\"event\":\"stop\",\"time\":105.1,\"step\":152,\"reason\":\"notice\",\"path\":\"c/ckpt-00000152.h5\","
	"\"notice_to_durable_s\":0.1,\"generation\":1}\n"
	"{\"event\":\"exit\",\"time\":105.2,\"code\":75,\"step\":152,\"generation\":1}\n"
	"{\"event\":\"relaunch\",\"time\":105.6,\"source\":\"launcher\",\"generation\":1,\"exit_code\":75,"
	"\"reason\":\"notice\",\"failure\":false,\"detected\":105.5,\"ended\":105.5,\"last_step\":152,"
	"\"last_progress\":105.0}\n"
	"{\"event\":\"generation\",\"time\":105.7,\"source\":\"launcher\",\"generation\":2,\"np\":3,"
	"\"hosts\":[\"node0\",\"node2\",\"node3\"]}\n"
	"{\"event\":\"resume\",\"time\":107.0,\"path\":\"c/ckpt-00000152.h5\",\"step\":152,\"from_world_size\":4,"
	"\"generation\":2,\"load_s\":0.25}\n"
	"{\"event\":\"start\",\"time\":107.1,\"world_size\":3,\"step\":152,\"generation\":2}\n"
	"{\"event\":\"first_step\",\"time\":107.3,\"source\":\"launcher\",\"generation\":2,\"step\":153,\"step_time\":107.2}\n"
	"{\"event\":\"checkpoint\",\"time\":109.0,\"path\":\"c/ckpt-00000200.h5\",\"step\":200,\"generation\":2}\n"
	"{\"event\":\"relaunch\",\"time\":111.2,\"source\":\"launcher\",\"generation\":2,\"exit_code\":137,"
	"\"reason\":\"exit 137\",\"failure\":true,\"detected\":111.0,\"ended\":111.0,\"last_step\":230,"
	"\"last_progress\":110.0}\n"
	"{\"event\":\"generation\",\"time\":111.5,\"source\":\"launcher\",\"generation\":3,\"np\":3,"
	"\"hosts\":[\"node0\",\"node2\",\"node3\"]}\n"
	"{\"event\":\"relaunch\",\"time\":111.6,\"source\":\"launcher\",\"generation\":3,\"exit_code\":255,"
	"\"reason\":\"exit 255\",\"failure\":true,\"detected\":111.6,\"ended\":111.6,\"last_step\":-1,"
	"\"last_progress\":0}\n"
	"{\"event\":\"generation\",\"time\":112.6,\"source\":\"launcher\",\"generation\":4,\"np\":2,"
	"\"hosts\":[\"node0\",\"node3\"]}\n"
	"{\"event\":\"resume\",\"time\":114.0,\"path\":\"c/ckpt-00000200.h5\",\"step\":200,\"from_world_size\":3,"
	"\"generation\":4}\n"
	"{\"event\":\"start\",\"time\":114.1,\"world_size\":2,\"step\":200,\"generation\":4}\n"
	"{\"event\":\"first_step\",\"time\":114.5,\"source\":\"launcher\",\"generation\":4,\"step\":201,\"step_time\":114.3}\n"
	"{\"event\":\"checkpoint\",\"time\":117.0,\"path\":\"c/ckpt-00000300.h5\",\"step\":300,\"generation\":4}\n"
	"{\"event\":\"exit\",\"time\":117.1,\"code\":0,\"step\":300,\"generation\":4}\n"
	"{\"event\":\"launcher_exit\",\"time\":117.5,\"source\":\"launcher\",\"code\":0,\"reason\":\"training finished\"}\n"
	"{\"event\":\"torn line\n";

static const char recorded_metrics[] =
	"{\"step\":10,\"loss\":2.0,\"world_size\":4,\"generation\":1,\"time\":102.3}\n"
	"{\"step\":150,\"loss\":1.0,\"world_size\":4,\"generation\":1,\"time\":105.0}\n"
	"{\"step\":230,\"loss\":0.9,\"world_size\":3,\"generation\":2,\"time\":110.0}\n"
	"{\"step\":300,\"epoch\":1,\"test_accuracy\":0.8,\"generation\":4,\"time\":117.0}\n";

static void account_from_recorded_events(void **unused)
{
	(void)unused;
	run_account a;
	assert_int_equal(account_from_text(recorded_events, recorded_metrics, &a), 0);
	assert_true(a.finished);
	assert_int_equal(a.final_step, 300);
	assert_int_equal(a.generations, 4);
	assert_int_equal(a.n_inc, 2);
	assert_int_equal(a.planned, 1);
	assert_int_equal(a.failures, 1);
	assert_int_equal(a.failed_launches, 1);

	const incident *n = &a.inc[0];
	assert_string_equal(n->kind, "notice");
	assert_int_equal(n->last_step, 152);
	assert_int_equal(n->resumed_step, 152);
	assert_int_equal(n->steps_lost, 0);
	assert_true(fabs(n->detect_s - 0.4) < 1e-9);     /* stop 105.1 -> detected 105.5 */
	assert_true(fabs(n->relaunch_s - 0.2) < 1e-9);   /* ended 105.5 -> launch 105.7 */
	assert_true(fabs(n->start_s - 1.3) < 1e-9);      /* launch 105.7 -> resumed 107.0 */
	assert_true(fabs(n->load_s - 0.25) < 1e-9);
	assert_true(fabs(n->first_step_s - 0.2) < 1e-9); /* resumed 107.0 -> first step 107.2 */
	assert_true(fabs(n->total_s - 2.1) < 1e-9);
	assert_true(fabs(n->notice_to_durable_s - 0.1) < 1e-9);

	const incident *f = &a.inc[1];
	assert_string_equal(f->kind, "failure");
	assert_int_equal(f->generation, 2);
	assert_int_equal(f->next_generation, 4);
	assert_int_equal(f->failed_launches, 1);
	assert_int_equal(f->last_step, 230);
	assert_int_equal(f->resumed_step, 200);
	assert_int_equal(f->steps_lost, 30);
	assert_true(fabs(f->detect_s - 1.0) < 1e-9);     /* last progress 110.0 -> 111.0 */
	assert_true(fabs(f->relaunch_s - 1.6) < 1e-9);
	assert_true(f->load_s < 0);
	assert_int_equal(a.steps_lost, 30);

	/* goodput: kept training time / wall time, below 1 and above 0 */
	assert_true(a.wall_s > 17.4 && a.wall_s < 17.6);
	assert_true(a.useful_s > 0 && a.useful_s < a.wall_s);
	assert_true(fabs(a.goodput - a.useful_s / a.wall_s) < 1e-12);
	/* generation 2's steps 153..200 are kept, 201..230 rolled back */
	/* the time a step was reached is its earliest record (heartbeat 105.0 for step 152) */
	double g1 = (105.0 - 102.0) / 152 * 152, g2 = (110.0 - 107.1) / (230 - 152) * (200 - 152),
	       g4 = (117.0 - 114.1) / 100 * 100;
	assert_true(fabs(a.useful_s - (g1 + g2 + g4)) < 1e-6);

	cJSON *j = account_to_json(&a, "/run");
	assert_non_null(j);
	assert_int_equal((int)json_num(j, "interruptions", -1), 2);
	assert_int_equal((int)json_num(j, "steps_lost", -1), 30);
	cJSON *inc = cJSON_GetObjectItemCaseSensitive(j, "incidents");
	assert_int_equal(cJSON_GetArraySize(inc), 2);
	cJSON_Delete(j);
	account_free(&a);
}

static void account_of_plain_worker_runs_without_launcher(void **unused)
{
	(void)unused;
	/* two processes of generation 0 (no launcher): the second resumes from the first's stop */
	const char *ev = "{\"event\":\"start\",\"time\":10,\"world_size\":1,\"step\":0,\"generation\":0}\n"
			 "{\"event\":\"stop\",\"time\":12,\"step\":40,\"reason\":\"sigterm\",\"generation\":0}\n"
			 "{\"event\":\"exit\",\"time\":12.1,\"code\":75,\"step\":40,\"generation\":0}\n"
			 "{\"event\":\"resume\",\"time\":20,\"step\":40,\"generation\":0}\n"
			 "{\"event\":\"start\",\"time\":20.1,\"world_size\":2,\"step\":40,\"generation\":0}\n"
			 "{\"event\":\"exit\",\"time\":22,\"code\":0,\"step\":90,\"generation\":0}\n";
	run_account a;
	assert_int_equal(account_from_text(ev, NULL, &a), 0);
	assert_int_equal(a.generations, 2);
	assert_true(a.finished);
	assert_int_equal(a.final_step, 90);
	assert_int_equal(a.n_inc, 1);
	assert_string_equal(a.inc[0].kind, "sigterm");
	assert_int_equal(a.inc[0].steps_lost, 0);
	assert_true(isnan(a.inc[0].relaunch_s)); /* no launcher: unknown */
	account_free(&a);
}

/* ------------------------------------------------------------ files and processes */

static void count_cb(const cJSON *obj, void *ctx)
{
	(void)obj;
	(*(int *)ctx)++;
}

static void event_tail_hands_over_whole_lines_only(void **unused)
{
	(void)unused;
	char *dir = make_tmpdir();
	char path[4200];
	snprintf(path, sizeof path, "%s/events.jsonl", dir);
	event_tail t;
	event_tail_init(&t, path);
	int n = 0;
	assert_int_equal(event_tail_poll(&t, count_cb, &n), 0); /* no file yet */
	FILE *f = fopen(path, "w");
	fputs("{\"event\":\"a\"}\n{\"event\":", f);
	fflush(f);
	assert_int_equal(event_tail_poll(&t, count_cb, &n), 1);
	fputs("\"b\"}\nnot json\n{\"event\":\"c\"}\n", f);
	fclose(f);
	assert_int_equal(event_tail_poll(&t, count_cb, &n), 2);
	assert_int_equal(n, 3);
	assert_int_equal(event_tail_poll(&t, count_cb, &n), 0);
	/* our own lines go through the same file */
	assert_int_equal(events_append(dir, "generation", NULL), 0);
	assert_int_equal(event_tail_poll(&t, count_cb, &n), 1);
	event_tail_free(&t);
	remove_tree(dir);
	free(dir);
}

static void command_runs_without_shell_and_is_killed_at_timeout(void **unused)
{
	(void)unused;
	char *out = NULL;
	int st;
	char *echo[] = {"echo", "node1:2", "$(id)", NULL};
	assert_int_equal(proc_run_capture(echo, 5, 4096, &out, &st), 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_string_equal(out, "node1:2 $(id)\n"); /* the argument reached echo untouched */
	free(out);
	char *slow[] = {"sleep", "10", NULL};
	double t0 = now_mono();
	assert_int_equal(proc_run_capture(slow, 0.3, 4096, &out, &st), 0);
	assert_int_equal(st, -1);
	assert_true(now_mono() - t0 < 3);
	free(out);
	char *missing[] = {"/nonexistent/discover", NULL};
	assert_int_not_equal(proc_run_capture(missing, 1, 4096, &out, &st), 0);
	free(out);
}

static void discovery_rereads_a_changed_hostfile_and_runs_commands(void **unused)
{
	(void)unused;
	char *dir = make_tmpdir();
	char path[4200], cmd[8500];
	snprintf(path, sizeof path, "%s/hosts", dir);
	write_text(path, "a slots=1\nb slots=1\n");
	discovery d;
	assert_int_equal(discovery_init_hostfile(&d, path), 0);
	bool changed;
	assert_int_equal(discovery_poll(&d, now_mono(), false, &changed), 0);
	assert_true(changed);
	assert_int_equal(d.hosts.n, 2);
	assert_int_equal(discovery_poll(&d, now_mono(), false, &changed), 0);
	assert_false(changed);
	/* an autoscaler replaces the file */
	char tmp[4300];
	snprintf(tmp, sizeof tmp, "%s.new", path);
	write_text(tmp, "a slots=1\nb slots=1\nc slots=2\n");
	assert_int_equal(rename(tmp, path), 0);
	assert_int_equal(discovery_poll(&d, now_mono(), false, &changed), 0);
	assert_true(changed);
	assert_int_equal(d.hosts.n, 3);
	/* the file vanishes: the last list stays */
	unlink(path);
	assert_int_equal(discovery_poll(&d, now_mono(), false, &changed), -1);
	assert_int_equal(d.hosts.n, 3);
	discovery_free(&d);

	/* a command, split at blanks, never a shell */
	write_text(path, "x:2\ny\n");
	snprintf(cmd, sizeof cmd, "cat  %s", path);
	assert_int_equal(discovery_init_command(&d, cmd, 5, 1), 0);
	double now = now_mono();
	assert_int_equal(discovery_poll(&d, now, false, &changed), 0);
	assert_true(changed);
	assert_int_equal(d.hosts.n, 2);
	assert_int_equal(d.hosts.v[0].slots, 2);
	write_text(path, "x:2\n");
	assert_int_equal(discovery_poll(&d, now + 0.1, false, &changed), 0); /* not due yet */
	assert_false(changed);
	assert_int_equal(discovery_poll(&d, now + 1.1, false, &changed), 0);
	assert_true(changed);
	assert_int_equal(d.hosts.n, 1);
	discovery_free(&d);
	snprintf(cmd, sizeof cmd, "false");
	assert_int_equal(discovery_init_command(&d, cmd, 5, 1), 0);
	assert_int_equal(discovery_poll(&d, now_mono(), true, &changed), -1);
	discovery_free(&d);
	assert_int_equal(discovery_init_command(&d, "   ", 5, 1), -1);
	discovery_free(&d);
	remove_tree(dir);
	free(dir);
}

static void process_identity_uses_start_time(void **unused)
{
	(void)unused;
	unsigned long long me = proc_start_ticks(getpid());
	assert_true(me > 0);
	assert_true(proc_alive(getpid(), me));
	assert_false(proc_alive(getpid(), me + 1)); /* a reused pid has another start time */
	pid_t child = fork();
	if (child == 0)
		_exit(0);
	int st;
	waitpid(child, &st, 0);
	assert_int_equal(proc_start_ticks(child), 0);
	assert_int_equal(proc_ppid(getpid()), getppid());
}

/*
 * What is left of the session of a process that is not the caller's child
 * (an adopted mpirun) is killed once it ended, and only when the pid still
 * names that process (its start time): never a reused pid's session.
 */
static void orphan_session_is_killed_only_for_its_leader(void **unused)
{
	(void)unused;
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t leader = fork();
	if (leader == 0) {
		setsid();
		pid_t member = fork(); /* in the leader's session, as an rsh agent in mpirun's */
		if (member == 0) {
			alarm(120); /* never outlives a failed test for long */
			for (;;)
				pause();
		}
		if (write(p[1], &member, sizeof member) != (ssize_t)sizeof member)
			_exit(1);
		alarm(120);
		for (;;)
			pause();
	}
	pid_t member = 0;
	assert_int_equal(read(p[0], &member, sizeof member), (ssize_t)sizeof member);
	close(p[0]);
	close(p[1]);
	unsigned long long ticks = proc_start_ticks(leader), mticks = proc_start_ticks(member);
	assert_true(ticks > 0 && mticks > 0);
	assert_int_equal(proc_session(member), leader);
	/*
	 * The pid names another process than the one recorded (an older one, whose
	 * number was reused): its session is not ours to touch.
	 */
	assert_int_equal(proc_kill_orphan_session(leader, ticks - 1), 0);
	assert_true(proc_alive(member, mticks));
	/* the leader ends and is reaped: its member is killed, nothing else */
	kill(leader, SIGKILL);
	int st;
	assert_int_equal(waitpid(leader, &st, 0), leader);
	assert_true(proc_alive(member, mticks));
	assert_int_equal(proc_kill_orphan_session(leader, ticks), 1);
	double t0 = now_mono();
	while (proc_alive(member, mticks) && now_mono() - t0 < 30)
		usleep(10000);
	assert_false(proc_alive(member, mticks));
	assert_true(proc_alive(getpid(), proc_start_ticks(getpid())));
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(host_names_are_data_not_options_or_shell),
		cmocka_unit_test(hostfile_parses_slots_comments_and_skips_bad_lines),
		cmocka_unit_test(discovery_output_parses_host_colon_slots),
		cmocka_unit_test(state_round_trips_through_json_and_disk),
		cmocka_unit_test(plan_skips_quarantined_and_noticed_hosts_and_caps_np),
		cmocka_unit_test(blame_reads_open_mpi_failure_messages),
		cmocka_unit_test(quarantine_needs_repeated_strikes_and_doubles),
		cmocka_unit_test(mpirun_argv_is_a_vector_with_run_dir_added_once),
		cmocka_unit_test(account_from_recorded_events),
		cmocka_unit_test(account_of_plain_worker_runs_without_launcher),
		cmocka_unit_test(event_tail_hands_over_whole_lines_only),
		cmocka_unit_test(command_runs_without_shell_and_is_killed_at_timeout),
		cmocka_unit_test(discovery_rereads_a_changed_hostfile_and_runs_commands),
		cmocka_unit_test(process_identity_uses_start_time),
		cmocka_unit_test(orphan_session_is_killed_only_for_its_leader),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
