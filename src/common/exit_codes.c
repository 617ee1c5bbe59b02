/*
 * exit_codes.c - the one exit-code table of the worker and the launcher
 * (contract.h). README.md's "Exit codes" table is this table printed by
 * exit_codes_markdown(); unit.test_contract fails when the two differ.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "contract.h"

#define ALL "worker, launcher, sweep, report"

const exit_code_info exit_codes[] = {
	{ EXIT_OK, "EXIT_OK", "finished", ALL, EXIT_REACT_DONE },
	{ EXIT_USAGE, "EXIT_USAGE", "bad command line or config (the launcher passes on the workers' 64)", ALL,
	  EXIT_REACT_STOP },
	{ EXIT_DATAERR, "EXIT_DATAERR", "bad data, or a checkpoint that cannot be used", "worker, launcher",
	  EXIT_REACT_STOP },
	{ EXIT_NOINPUT, "EXIT_NOINPUT", "missing input file (sweep: the hostfile; report: no `RUN/events.jsonl`)", ALL,
	  EXIT_REACT_STOP },
	{ EXIT_UNAVAILABLE, "EXIT_UNAVAILABLE", "fewer than `--min-np` usable slots for `--wait-timeout`", "launcher",
	  EXIT_REACT_RETRY },
	{ EXIT_SOFTWARE, "EXIT_SOFTWARE", "internal error, or a collective waited longer than `dist.collective_timeout_s`",
	  "worker", EXIT_REACT_RETRY },
	{ EXIT_OSERR, "EXIT_OSERR", "the OS refused something (memory, threads)", ALL, EXIT_REACT_RETRY },
	{ EXIT_BUSY, "EXIT_BUSY", "another launcher supervises the run directory", "launcher", EXIT_REACT_RETRY },
	{ EXIT_IOERR, "EXIT_IOERR", "I/O error: volume full, write failed (earlier checkpoints intact)", ALL,
	  EXIT_REACT_RETRY },
	{ EXIT_TEMPFAIL, "EXIT_TEMPFAIL",
	  "stopped at an agreed step after a checkpoint (notice, SIGTERM, rescale), or on a signal: run again to resume",
	  "worker, launcher, sweep", EXIT_REACT_RESUME },
	{ EXIT_FAILURE_BUDGET, "EXIT_FAILURE_BUDGET", "more failed generations than `--max-failures`", "launcher",
	  EXIT_REACT_RETRY },
	{ EXIT_NOSTART, "EXIT_NOSTART", "mpirun could not be started (not found, fork failed)", "launcher, sweep",
	  EXIT_REACT_RETRY },
	{ EXIT_BENCH_FAILED, "EXIT_BENCH_FAILED",
	  "a benchmark run failed, timed out or printed no JSON line; the other sizes are in the files", "sweep",
	  EXIT_REACT_RETRY },
	{ EXIT_NO_PICTURE, "EXIT_NO_PICTURE", "gnuplot missing or failed: the data and the .gp script are written",
	  "sweep, report", EXIT_REACT_RETRY },
};
const int exit_codes_n = (int)(sizeof exit_codes / sizeof exit_codes[0]);

const exit_code_info *exit_code_find(int code)
{
	for (int i = 0; i < exit_codes_n; i++)
		if (exit_codes[i].code == code)
			return &exit_codes[i];
	return NULL;
}

exit_reaction exit_code_reaction(int code)
{
	const exit_code_info *e = exit_code_find(code);
	return e ? e->reaction : EXIT_REACT_RETRY;
}

const char *exit_reaction_text(exit_reaction r)
{
	switch (r) {
	case EXIT_REACT_DONE: return "is done: exits 0";
	case EXIT_REACT_RESUME: return "re-forms at once and resumes; not a failure";
	case EXIT_REACT_STOP: return "stops and exits with the same code (not retried)";
	case EXIT_REACT_RETRY: break;
	}
	return "re-forms from the newest checkpoint after a backoff; counts against `--max-failures`";
}

int exit_codes_markdown(char *buf, size_t len)
{
	int k = snprintf(buf, len, "| code | name | meaning | returned by | when the workers exit with it, the launcher |\n"
				   "| --- | --- | --- | --- | --- |\n");
	for (int i = 0; i < exit_codes_n && k >= 0; i++) {
		const exit_code_info *e = &exit_codes[i];
		bool worker = strstr(e->returned_by, "worker") != NULL;
		size_t at = (size_t)k < len ? (size_t)k : len;
		int n = snprintf(buf + at, len - at, "| %d | `%s` | %s | %s | %s |\n", e->code, e->name, e->meaning,
				 e->returned_by, worker ? exit_reaction_text(e->reaction) : "-");
		k = n < 0 ? n : k + n;
	}
	return k;
}
