/*
 * test_stop.c - the stop protocol (stop.h): every flag source lands in its
 * tail slot, the decision table and its precedence, the agreement over summed
 * tails, and the process signals (signals.h) that feed it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "contract.h"
#include "log.h"
#include "signals.h"
#include "stop.h"

static spot_event event_of(spot_event_kind kind, double received)
{
	spot_event ev;
	memset(&ev, 0, sizeof ev);
	ev.kind = kind;
	ev.received_wall = received;
	return ev;
}

/* The requests of s as a tail, with counters that must be left alone. */
static void tail_of(stop_state *s, int64_t *tail)
{
	for (int i = 0; i < TAIL_N; i++)
		tail[i] = 100 + i;
	stop_requests(s, tail);
}

static void assert_only_flag(const int64_t *tail, int slot)
{
	for (int i = 0; i < TAIL_REQUESTS; i++)
		assert_int_equal(tail[i], i == slot ? 1 : 0);
	for (int i = TAIL_REQUESTS; i < TAIL_N; i++)
		assert_int_equal(tail[i], 100 + i); /* the step's counters are not the requests' */
}

/* ------------------------------------------------------------------ */
/* flag sources                                                        */
/* ------------------------------------------------------------------ */

static void test_nothing_seen_requests_nothing_and_continues(void **state)
{
	(void)state;
	stop_state s;
	stop_init(&s);
	int64_t tail[TAIL_N];
	tail_of(&s, tail);
	assert_only_flag(tail, -1);
	stop_decision d = stop_decide(tail, &s);
	assert_int_equal(d.action, STOP_ACT_CONTINUE);
	assert_int_equal(d.exit_code, 0);
	assert_null(d.reason);
}

static void test_sigterm_sets_signal_flag_and_time(void **state)
{
	(void)state;
	stop_state s;
	stop_init(&s);
	stop_note_signal(&s, SIG_REQ_TERM, 1234.5);
	int64_t tail[TAIL_N];
	tail_of(&s, tail);
	assert_only_flag(tail, TAIL_SIGNAL);
	assert_true(s.first_wall == 1234.5);
	assert_string_equal(s.reason, STOP_SIGTERM);
	tail_of(&s, tail); /* sticky: every later step asks again */
	assert_only_flag(tail, TAIL_SIGNAL);
}

static void test_sigint_sets_signal_flag_named_sigint(void **state)
{
	(void)state;
	stop_state s;
	stop_init(&s);
	stop_note_signal(&s, SIG_REQ_INT, 7.0);
	int64_t tail[TAIL_N];
	tail_of(&s, tail);
	assert_only_flag(tail, TAIL_SIGNAL);
	stop_decision d = stop_decide(tail, &s);
	assert_int_equal(d.action, STOP_ACT_STOP);
	assert_string_equal(d.reason, STOP_SIGINT);
	assert_int_equal(d.exit_code, EXIT_TEMPFAIL);
}

static void test_sigusr1_sets_rescale_flag(void **state)
{
	(void)state;
	stop_state s;
	stop_init(&s);
	stop_note_signal(&s, SIG_REQ_NONE, 5.0);
	assert_true(s.first_wall == 0);
	stop_note_signal(&s, SIG_REQ_RESCALE, 9.0);
	int64_t tail[TAIL_N];
	tail_of(&s, tail);
	assert_only_flag(tail, TAIL_RESCALE);
	assert_true(s.first_wall == 9.0);
	stop_decision d = stop_decide(tail, &s);
	assert_int_equal(d.action, STOP_ACT_STOP);
	assert_string_equal(d.reason, STOP_RESCALE);
}

static void test_notice_sets_notice_flag_and_beats_earlier_signal_reason(void **state)
{
	(void)state;
	stop_state s;
	stop_init(&s);
	stop_note_signal(&s, SIG_REQ_TERM, 50.0);
	spot_event ev = event_of(SPOT_EVENT_STOP, 40.0);
	stop_note_watcher(&s, &ev);
	assert_true(s.first_wall == 40.0); /* the earlier of the two */
	assert_string_equal(s.reason, STOP_NOTICE);
	ev.received_wall = 60.0;
	stop_note_watcher(&s, &ev);
	assert_true(s.first_wall == 40.0);
	int64_t tail[TAIL_N];
	tail_of(&s, tail);
	assert_int_equal(tail[TAIL_NOTICE], 1);
	assert_int_equal(tail[TAIL_SIGNAL], 1);
	assert_int_equal(tail[TAIL_CKPT_NOW], 0);
}

static void test_rebalance_asks_one_checkpoint_only(void **state)
{
	(void)state;
	stop_state s;
	stop_init(&s);
	spot_event ev = event_of(SPOT_EVENT_REBALANCE, 3.0);
	stop_note_watcher(&s, &ev);
	assert_true(s.first_wall == 0); /* not a stop */
	int64_t tail[TAIL_N];
	tail_of(&s, tail);
	assert_only_flag(tail, TAIL_CKPT_NOW);
	stop_decision d = stop_decide(tail, &s);
	assert_int_equal(d.action, STOP_ACT_CHECKPOINT);
	assert_int_equal(d.exit_code, 0);
	tail_of(&s, tail); /* consumed: the next step asks nothing */
	assert_only_flag(tail, -1);
}

static void test_io_failure_sets_ioerr_and_keeps_first_code(void **state)
{
	(void)state;
	stop_state s;
	stop_init(&s);
	stop_note_io_failure(&s, 0);
	int64_t tail[TAIL_N];
	tail_of(&s, tail);
	assert_only_flag(tail, -1);
	stop_note_io_failure(&s, EXIT_IOERR);
	stop_note_io_failure(&s, EXIT_OSERR);
	assert_int_equal(s.io_rc, EXIT_IOERR);
	tail_of(&s, tail);
	assert_only_flag(tail, TAIL_IOERR);
	tail_of(&s, tail); /* sticky */
	assert_only_flag(tail, TAIL_IOERR);
}

/* ------------------------------------------------------------------ */
/* decision table                                                      */
/* ------------------------------------------------------------------ */

static stop_decision decide_sums(int64_t notice, int64_t sig, int64_t rescale, int64_t ckpt, int64_t io,
				 const char *local_reason)
{
	int64_t tail[TAIL_N] = {0};
	tail[TAIL_NOTICE] = notice;
	tail[TAIL_SIGNAL] = sig;
	tail[TAIL_RESCALE] = rescale;
	tail[TAIL_CKPT_NOW] = ckpt;
	tail[TAIL_IOERR] = io;
	tail[TAIL_LOSS] = 123456; /* counters never decide anything */
	tail[TAIL_OVERFLOW] = 9;
	tail[TAIL_NONFINITE] = 2;
	stop_state local;
	stop_init(&local);
	local.reason = local_reason;
	return stop_decide(tail, &local);
}

static void test_decision_table_and_precedence(void **state)
{
	(void)state;
	static const struct {
		int64_t notice, sig, rescale, ckpt, io;
		const char *local;
		stop_action action;
		const char *reason;
		int code;
	} rows[] = {
		{0, 0, 0, 0, 0, NULL, STOP_ACT_CONTINUE, NULL, 0},
		{0, 0, 0, 2, 0, NULL, STOP_ACT_CHECKPOINT, NULL, 0},
		{1, 0, 0, 0, 0, NULL, STOP_ACT_STOP, STOP_NOTICE, EXIT_TEMPFAIL},
		{0, 3, 0, 0, 0, NULL, STOP_ACT_STOP, STOP_SIGTERM, EXIT_TEMPFAIL},
		{0, 1, 0, 0, 0, STOP_SIGTERM, STOP_ACT_STOP, STOP_SIGTERM, EXIT_TEMPFAIL},
		{0, 1, 0, 0, 0, STOP_SIGINT, STOP_ACT_STOP, STOP_SIGINT, EXIT_TEMPFAIL},
		{0, 0, 4, 0, 0, NULL, STOP_ACT_STOP, STOP_RESCALE, EXIT_TEMPFAIL},
		{1, 1, 1, 1, 0, STOP_SIGINT, STOP_ACT_STOP, STOP_NOTICE, EXIT_TEMPFAIL}, /* notice first */
		{0, 1, 1, 0, 0, NULL, STOP_ACT_STOP, STOP_SIGTERM, EXIT_TEMPFAIL},       /* signal before rescale */
		{0, 0, 1, 1, 0, NULL, STOP_ACT_STOP, STOP_RESCALE, EXIT_TEMPFAIL},       /* stop beats checkpoint */
		{1, 1, 1, 1, 1, NULL, STOP_ACT_IOERR, NULL, EXIT_IOERR},                 /* I/O failure beats all */
		{0, 0, 0, 0, 2, NULL, STOP_ACT_IOERR, NULL, EXIT_IOERR},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		stop_decision d = decide_sums(rows[i].notice, rows[i].sig, rows[i].rescale, rows[i].ckpt, rows[i].io,
					      rows[i].local);
		print_message("row %zu\n", i);
		assert_int_equal(d.action, rows[i].action);
		assert_int_equal(d.exit_code, rows[i].code);
		if (rows[i].reason)
			assert_string_equal(d.reason, rows[i].reason);
		else
			assert_null(d.reason);
	}
}

/* Three ranks, one saw SIGTERM, one a rebalance: the summed tail gives every rank the same stop. */
static void test_summed_tail_gives_every_rank_the_same_decision(void **state)
{
	(void)state;
	stop_state rank[3];
	for (int r = 0; r < 3; r++)
		stop_init(&rank[r]);
	stop_note_signal(&rank[1], SIG_REQ_TERM, 10.0);
	spot_event ev = event_of(SPOT_EVENT_REBALANCE, 11.0);
	stop_note_watcher(&rank[2], &ev);
	int64_t sum[TAIL_N] = {0};
	for (int r = 0; r < 3; r++) {
		int64_t t[TAIL_N] = {0};
		stop_requests(&rank[r], t);
		for (int i = 0; i < TAIL_N; i++)
			sum[i] += t[i];
	}
	assert_int_equal(sum[TAIL_SIGNAL], 1);
	assert_int_equal(sum[TAIL_CKPT_NOW], 1);
	for (int r = 0; r < 3; r++) {
		stop_decision d = stop_decide(sum, &rank[r]);
		assert_int_equal(d.action, STOP_ACT_STOP);
		assert_string_equal(d.reason, STOP_SIGTERM);
		assert_int_equal(d.exit_code, EXIT_TEMPFAIL);
	}
}

/* ------------------------------------------------------------------ */
/* signals and stop_poll                                               */
/* ------------------------------------------------------------------ */

static void test_sigterm_requests_term_with_time(void **state)
{
	(void)state;
	assert_int_equal(signals_install(), 0);
	double when = -1;
	assert_int_equal(signals_pending(&when), SIG_REQ_NONE);
	double t0 = now_wall();
	raise(SIGTERM);
	double t1 = now_wall();
	assert_int_equal(signals_pending(&when), SIG_REQ_TERM);
	assert_true(when >= t0 - 0.001 && when <= t1 + 0.001);
	/* the first request is kept */
	raise(SIGUSR1);
	assert_int_equal(signals_pending(NULL), SIG_REQ_TERM);
}

static void test_sigusr1_requests_rescale(void **state)
{
	(void)state;
	assert_int_equal(signals_install(), 0);
	raise(SIGUSR1);
	double when = 0;
	assert_int_equal(signals_pending(&when), SIG_REQ_RESCALE);
	assert_true(when > 0);
}

static void test_second_sigint_exits_130(void **state)
{
	(void)state;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (signals_install() != 0)
			_exit(1);
		raise(SIGINT);
		if (signals_pending(NULL) != SIG_REQ_INT)
			_exit(2);
		raise(SIGINT);
		_exit(3); /* not reached: the second SIGINT exits with 130 */
	}
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 130);
}

static void count_reports(void *ctx, const spot_event *ev)
{
	(void)ev;
	(*(int *)ctx)++;
}

static void test_poll_reads_a_raised_signal_into_the_tail(void **state)
{
	(void)state;
	assert_int_equal(signals_install(), 0);
	stop_state s;
	stop_init(&s);
	int reports = 0;
	stop_poll(&s, NULL, count_reports, &reports);
	int64_t tail[TAIL_N];
	tail_of(&s, tail);
	assert_only_flag(tail, -1);
	double t0 = now_wall();
	raise(SIGUSR1);
	stop_poll(&s, NULL, count_reports, &reports);
	tail_of(&s, tail);
	assert_only_flag(tail, TAIL_RESCALE);
	assert_true(s.first_wall >= t0 - 0.001);
	assert_int_equal(reports, 0); /* no watcher, no events */
	assert_int_equal(signals_install(), 0); /* leave the process clean */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nothing_seen_requests_nothing_and_continues),
		cmocka_unit_test(test_sigterm_sets_signal_flag_and_time),
		cmocka_unit_test(test_sigint_sets_signal_flag_named_sigint),
		cmocka_unit_test(test_sigusr1_sets_rescale_flag),
		cmocka_unit_test(test_notice_sets_notice_flag_and_beats_earlier_signal_reason),
		cmocka_unit_test(test_rebalance_asks_one_checkpoint_only),
		cmocka_unit_test(test_io_failure_sets_ioerr_and_keeps_first_code),
		cmocka_unit_test(test_decision_table_and_precedence),
		cmocka_unit_test(test_summed_tail_gives_every_rank_the_same_decision),
		cmocka_unit_test(test_sigterm_requests_term_with_time),
		cmocka_unit_test(test_sigusr1_requests_rescale),
		cmocka_unit_test(test_second_sigint_exits_130),
		cmocka_unit_test(test_poll_reads_a_raised_signal_into_the_tail),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
