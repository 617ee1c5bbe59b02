/*
 * supervise.c - the launcher's loop.
 *
 * Policy (DESIGN.md, exit codes):
 * - Each generation takes the usable hosts discovered now (not quarantined,
 *   not named by an interruption notice), np = min(max-np, their slots), and
 *   needs at least min-np; below that it waits up to --wait-timeout for
 *   replacements, then exits 69.
 * - mpirun runs in its own process group with its output in
 *   RUN/launcher/gen-NNNN.log (a file, not a pipe: it outlives a killed
 *   launcher), copied to our stderr.
 * - Exit 0: done. 75: an agreed stop with a checkpoint: re-form at once, not a
 *   failure. 64/65/66: stop with the same code. Anything else (a crash, a
 *   lost node, 74, an abort after a collective timeout): re-form from the
 *   newest checkpoint after an exponential backoff, counted against
 *   --max-failures; hosts named in mpirun's failure messages (or all of the
 *   world when none is named) get a strike, and repeated strikes quarantine a
 *   host for a cooldown that doubles.
 * - Scale-up and graceful scale-down: when discovery offers more usable slots
 *   than the world has (np < max-np), or a host of the world leaves
 *   discovery, the launcher sends SIGUSR1 to mpirun, which forwards it to
 *   every rank; the workers stop at an agreed step with a checkpoint (75) and
 *   the next generation takes the hosts that exist then. SIGUSR1 is only sent
 *   once rank 0's heartbeat shows a step of this generation: before that the
 *   workers may not have installed their handler (SIGUSR1 would kill them).
 * - Bounded detection: no first step within --start-timeout of the launch,
 *   or no new step for --progress-timeout: the world is frozen or
 *   partitioned; SIGTERM to mpirun's group, SIGKILL after --kill-grace, and
 *   re-form (a failure).
 * - SIGTERM, SIGINT or SIGHUP to the launcher: the same SIGUSR1 agreed stop
 *   (mpirun forwards SIGUSR1 untouched, whereas its SIGTERM handling kills the
 *   ranks after odls_base_sigkill_timeout and exits 1), then the launcher
 *   exits 75 instead of re-forming. Before the first step there is nothing to
 *   save and mpirun is terminated. A second signal escalates to SIGTERM.
 * - Restart: state.json names the running mpirun (pid and start time, and a
 *   token in its environment written before it was spawned). A launcher started
 *   again adopts that mpirun when it still runs (supervising it by pid, its
 *   outcome read from the workers' exit event), so exactly one mpirun runs.
 *   When an adopted mpirun ends (or had ended unwatched), what is left of its
 *   session (an rsh agent hung on an unreachable host) is killed, as for a
 *   child.
 */
#include "supervise.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "account.h"
#include "contract.h"
#include "fsutil.h"
#include "discovery.h"
#include "events.h"
#include "probe.h"
#include "proc.h"
#include "util.h"

extern char **environ;

#define TICK_S 0.1
#define FIRST_STEP_TICK_S 0.01 /* until the first step: its time is part of the recovery figures */
#define LOG_TAIL_BYTES (256 * 1024)
/*
 * A change of discovery must hold this long before a rescale: an autoscaler
 * that rewrites its hostfile in place must not make a host look gone.
 */
#define RESCALE_SETTLE_S 1.0

void run_opts_defaults(run_opts *o)
{
	memset(o, 0, sizeof *o);
	o->discover_timeout_s = 10;
	o->discover_interval_s = 1;
	o->min_np = 1;
	o->max_np = 0;
	o->slots_per_host = 1;
	o->max_failures = 10;
	o->wait_timeout_s = 300;
	o->start_timeout_s = 600;
	o->progress_timeout_s = 600;
	o->stop_timeout_s = 300;
	o->kill_grace_s = 10;
	o->backoff_s = 1;
	o->backoff_max_s = 60;
	o->quarantine = (quarantine_policy){2, 30, 3600};
	o->probe_timeout_s = 15;
	o->mpirun = "mpirun";
}

/* The generation being supervised. */
typedef struct generation {
	bool active;
	bool child;                 /* our child (waitpid); false: adopted from an earlier launcher */
	pid_t pid;
	unsigned long long ticks;
	int number, np;
	host_list world;
	double t_launch;            /* monotonic */
	char log_path[4200];
	long long log_off;          /* bytes of the log copied to stderr */
	heartbeat stale;            /* the heartbeat file's content before this generation (stale.generation
				       -1: none); equal content is not progress */
	bool stepped;               /* the heartbeat showed a step of this generation */
	bool first_step_known;      /* its first_step event is written (by us or an earlier launcher) */
	long last_step;
	double last_progress;       /* monotonic time the step last changed */
	double last_progress_wall;  /* the heartbeat's wall time of that step */
	bool usr1_sent;             /* agreed stop requested (rescale or launcher stop) */
	double usr1_at;
	int kill_stage;             /* 0, 1: SIGTERM sent, 2: SIGKILL sent */
	double kill_at;
	double kill_wall;           /* wall time of the decision to kill */
	char kill_reason[256];      /* why we killed it (a failure unless a stop was requested) */
	int worker_exit;            /* the workers' exit event code; -1: none */
	char stop_reason[16];       /* the workers' stop event reason */
	double rescale_since;       /* monotonic time a reason to rescale appeared; 0: none now */
} generation;

typedef struct sup {
	const run_opts *o;
	char run_dir[PATH_MAX];
	char launcher_dir[PATH_MAX + 16];
	char state_path[PATH_MAX + 32];
	const char *add_run_dir;    /* appended to the worker argv; NULL when it names its own */
	int lock_fd;
	launcher_state st;
	discovery disc;
	event_tail events;
	sigset_t sigs;
	int stop_signal;            /* first SIGTERM/SIGINT/SIGHUP; 0: none */
	int signal_count;
	bool state_dirty;
	generation g;
} sup;

/* ------------------------------------------------------------ helpers */

static void save_state(sup *s)
{
	if (state_save(s->state_path, &s->st) == 0)
		s->state_dirty = false;
}

static cJSON *host_names_json(const host_list *l)
{
	cJSON *a = cJSON_CreateArray();
	for (int i = 0; a && i < l->n; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(l->v[i].name));
	return a;
}

static void launcher_exit_event(sup *s, int code, const char *reason)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "code", code);
	cJSON_AddStringToObject(o, "reason", reason);
	cJSON_AddNumberToObject(o, "generation", s->st.generation);
	cJSON_AddNumberToObject(o, "failures", s->st.failures);
	events_append(s->run_dir, EV_LAUNCHER_EXIT, o);
}

/*
 * Wait up to seconds for a signal; stop requests are recorded. SIGCHLD
 * only wakes us (children are reaped by pid).
 */
static void wait_tick(sup *s, double seconds)
{
	if (seconds <= 0)
		return;
	struct timespec ts = {(time_t)seconds, (long)((seconds - floor(seconds)) * 1e9)};
	siginfo_t si;
	int sig = sigtimedwait(&s->sigs, &si, &ts);
	if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP) {
		s->signal_count++;
		if (!s->stop_signal) {
			s->stop_signal = sig;
			say_info("%s received: asking the workers to stop at an agreed step with a checkpoint "
				 "(send it again to terminate them now)", strsignal(sig));
		}
	}
}

/* Sleep (interruptibly) until a deadline or a stop request. */
static void sleep_until(sup *s, double deadline)
{
	for (double now = now_mono(); now < deadline && !s->stop_signal; now = now_mono())
		wait_tick(s, deadline - now < 0.5 ? deadline - now : 0.5);
}

static void poll_discovery(sup *s, bool force)
{
	bool changed = false;
	discovery_poll(&s->disc, now_mono(), force, &changed);
	if (s->disc.have && world_forget_departed(&s->st, &s->disc.hosts))
		s->state_dirty = true;
	if (!changed)
		return;
	char names[1024];
	host_list_names(&s->disc.hosts, names, sizeof names);
	say_info("discovery: %d host(s): %s", s->disc.hosts.n, s->disc.hosts.n ? names : "(none)");
}

/* Copy new output of the generation's mpirun log to stderr. */
static void relay_log(sup *s)
{
	if (s->o->quiet || !s->g.log_path[0])
		return;
	int fd = open(s->g.log_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	char buf[16384];
	for (;;) {
		ssize_t r = pread(fd, buf, sizeof buf, (off_t)s->g.log_off);
		if (r <= 0)
			break;
		s->g.log_off += r;
		if (write(STDERR_FILENO, buf, (size_t)r) < 0)
			break;
	}
	close(fd);
}

/* Worker events of the current generation that matter to the launcher. */
static void on_event(const cJSON *ev, void *p)
{
	sup *s = p;
	const char *name = json_str(ev, "event", "");
	int gen = (int)json_num(ev, "generation", -1);
	if (!s->g.active || gen != s->g.number)
		return;
	if (strcmp(name, EV_NOTICE) == 0) {
		const char *node = json_str(ev, "node", "");
		host_record *h = host_name_valid(node) ? state_host(&s->st, node, true) : NULL;
		if (h && h->noticed == 0) {
			h->noticed = now_wall();
			s->state_dirty = true;
			say_info("interruption notice for %s (%s %s): it is left out of the next generation", node,
				 json_str(ev, "provider", "?"), json_str(ev, "action", "?"));
		}
	} else if (strcmp(name, EV_EXIT) == 0) {
		s->g.worker_exit = (int)json_num(ev, "code", -1);
	} else if (strcmp(name, EV_FIRST_STEP) == 0) {
		s->g.first_step_known = true;
	} else if (strcmp(name, EV_STOP) == 0) {
		snprintf(s->g.stop_reason, sizeof s->g.stop_reason, "%s", json_str(ev, "reason", "?"));
	}
}

static void send_usr1(sup *s, const char *why)
{
	say_info("generation %d: %s; asking the workers to stop at an agreed step (SIGUSR1 to mpirun %d)",
		 s->g.number, why, (int)s->g.pid);
	proc_signal_group(s->g.pid, SIGUSR1);
	s->g.usr1_sent = true;
	s->g.usr1_at = now_mono();
}

static void start_kill(sup *s, const char *why)
{
	if (s->g.kill_stage)
		return;
	say_warn("generation %d: %s; terminating mpirun %d (SIGTERM, SIGKILL after %.0f s)", s->g.number, why,
		 (int)s->g.pid, s->o->kill_grace_s);
	snprintf(s->g.kill_reason, sizeof s->g.kill_reason, "%s", why);
	proc_signal_group(s->g.pid, SIGCONT); /* a stopped mpirun cannot act on SIGTERM */
	proc_signal_group(s->g.pid, SIGTERM);
	s->g.kill_stage = 1;
	s->g.kill_at = now_mono();
	s->g.kill_wall = now_wall();
}

/* ------------------------------------------------------------ one tick of a running generation */

/* The session of an ended mpirun that is not our child: kill what is left of it, and say so. */
static void kill_orphan_session(pid_t pid, unsigned long long ticks)
{
	int n = proc_kill_orphan_session(pid, ticks);
	if (n > 0)
		say_info("killed %d process(es) left in the session of mpirun %d (rsh agents, daemons)", n, (int)pid);
}

/*
 * Returns true when mpirun has ended; *code is its exit code, 128+N for a
 * signal, -1 unknown (not our child); desc says which ("exit 205", "signal 9").
 */
static bool generation_ended(sup *s, int *code, char *desc, size_t desc_len)
{
	generation *g = &s->g;
	desc[0] = 0;
	if (g->child) {
		int st;
		if (!proc_reap_session(g->pid, &st)) /* ended: its stray rsh agents are killed too */
			return false;
		*code = st == -1 ? -1 : proc_status_code(st);
		if (st != -1)
			proc_describe_status(st, desc, desc_len);
		return true;
	}
	if (proc_alive(g->pid, g->ticks))
		return false;
	/* adopted: not ours to reap, but what is left of its session (a hung rsh agent) is ours to end */
	kill_orphan_session(g->pid, g->ticks);
	*code = -1;
	return true;
}

static void watch_heartbeat(sup *s, double now)
{
	generation *g = &s->g;
	heartbeat hb;
	if (!heartbeat_read(s->run_dir, &hb) || hb.generation != g->number)
		return;
	if (hb.generation == g->stale.generation && hb.step == g->stale.step && hb.wall == g->stale.wall)
		return; /* left by an earlier run that used this generation number */
	if (!g->stepped || hb.step != g->last_step) {
		g->last_step = hb.step;
		g->last_progress = now;
		g->last_progress_wall = hb.wall;
	}
	if (!g->stepped) {
		g->stepped = true;
		if (!g->first_step_known) {
			cJSON *o = cJSON_CreateObject();
			cJSON_AddNumberToObject(o, "generation", g->number);
			cJSON_AddNumberToObject(o, "step", (double)hb.step);
			cJSON_AddNumberToObject(o, "step_time", hb.wall);
			cJSON_AddNumberToObject(o, "since_launch_s", now - g->t_launch);
			events_append(s->run_dir, EV_FIRST_STEP, o);
			say_info("generation %d: first step %ld, %.2f s after the launch", g->number, hb.step,
				 now - g->t_launch);
		}
		g->first_step_known = true;
	}
}

/* Scale-up or graceful scale-down when discovery changed under a running world (and stayed changed). */
static void consider_rescale(sup *s, double now)
{
	generation *g = &s->g;
	const run_opts *o = s->o;
	if (!g->stepped || g->usr1_sent || g->kill_stage || s->stop_signal || !s->disc.have)
		return;
	world_plan p;
	world_plan_init(&p);
	if (world_plan_make(&s->disc.hosts, &s->st, now_wall(), o->slots_per_host, o->max_np, &p) == 0) {
		char why[512] = "";
		for (int i = 0; i < g->world.n && !why[0]; i++)
			if (host_list_find(&s->disc.hosts, g->world.v[i].name) < 0 && p.np >= o->min_np)
				snprintf(why, sizeof why, "host %s left discovery (%d usable slots remain)",
					 g->world.v[i].name, p.np);
		if (!why[0] && p.np > g->np)
			snprintf(why, sizeof why, "%d usable slots discovered, the world has %d (max-np %d): scaling up",
				 p.usable_slots, g->np, o->max_np);
		if (!why[0])
			g->rescale_since = 0;
		else if (g->rescale_since == 0)
			g->rescale_since = now;
		else if (now - g->rescale_since >= RESCALE_SETTLE_S)
			send_usr1(s, why);
	}
	world_plan_free(&p);
}

static void enforce_deadlines(sup *s, double now)
{
	generation *g = &s->g;
	const run_opts *o = s->o;
	char why[200];
	if (g->kill_stage == 1 && now - g->kill_at >= o->kill_grace_s) {
		say_warn("generation %d: mpirun %d still runs %.0f s after SIGTERM: SIGKILL", g->number, (int)g->pid,
			 o->kill_grace_s);
		proc_signal_group(g->pid, SIGKILL);
		g->kill_stage = 2;
		g->kill_at = now;
		return;
	}
	if (g->kill_stage)
		return;
	if (s->stop_signal && !g->usr1_sent) {
		if (g->stepped)
			send_usr1(s, "the launcher was asked to stop");
		else
			start_kill(s, "the launcher was asked to stop before the first step (nothing to save)");
		return;
	}
	if (s->signal_count > 1) {
		start_kill(s, "a second stop signal");
		return;
	}
	if (g->usr1_sent && o->stop_timeout_s > 0 && now - g->usr1_at > o->stop_timeout_s) {
		snprintf(why, sizeof why, "the agreed stop did not end within %.0f s (--stop-timeout)", o->stop_timeout_s);
		start_kill(s, why);
	} else if (!g->stepped && o->start_timeout_s > 0 && now - g->t_launch > o->start_timeout_s) {
		snprintf(why, sizeof why, "no first step within %.0f s of the launch (--start-timeout)",
			 o->start_timeout_s);
		start_kill(s, why);
	} else if (g->stepped && o->progress_timeout_s > 0 && now - g->last_progress > o->progress_timeout_s) {
		snprintf(why, sizeof why,
			 "no new step for %.0f s after step %ld (--progress-timeout): the world is frozen or partitioned",
			 o->progress_timeout_s, g->last_step);
		start_kill(s, why);
	}
}

/* Start supervising generation number (its world, its log) from a clean slate. */
static void generation_reset(generation *g, int number, int np, const host_list *world, const char *log_path)
{
	host_list keep = g->world; /* its allocation */
	memset(g, 0, sizeof *g);
	g->world = keep;
	host_list_copy(&g->world, world);
	snprintf(g->log_path, sizeof g->log_path, "%s", log_path);
	g->number = number;
	g->np = np;
	g->worker_exit = -1;
	g->stale.generation = -1;
	g->active = true;
}

/* ------------------------------------------------------------ launching */

static void make_token(char *buf, size_t len)
{
	unsigned char r[16];
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, r, sizeof r) : -1;
	if (fd >= 0)
		close(fd);
	if (n != (ssize_t)sizeof r) {
		snprintf(buf, len, "%d-%.0f", (int)getpid(), now_wall() * 1e6);
		return;
	}
	size_t k = 0;
	for (size_t i = 0; i < sizeof r && k + 3 <= len; i++)
		k += (size_t)snprintf(buf + k, len - k, "%02x", r[i]);
}

/*
 * environ without our variables, plus SPOTLAUNCH_GENERATION and
 * SPOTLAUNCH_TOKEN; and unless the environment sets it,
 * OMPI_MCA_odls_base_sigkill_timeout=0: when a rank exits non-zero (75 after
 * an agreed stop) mpirun otherwise waits 1 s before SIGTERM and 1 s more before
 * SIGKILL to ranks that have already exited (measured: 2.4 s instead of 0.4 s
 * per re-formation). Ranks of an agreed stop have passed MPI_Finalize's fence
 * by then, so nothing is cut short. A --mpirun-arg --mca setting overrides it.
 */
static char **mpirun_env(int generation, const char *token, char *gen_var, size_t gen_len, char *tok_var,
			 size_t tok_len)
{
	size_t n = 0;
	while (environ[n])
		n++;
	char **env = calloc(n + 4, sizeof *env);
	if (!env)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "SPOTLAUNCH_GENERATION=", 22) != 0 &&
		    strncmp(environ[i], "SPOTLAUNCH_TOKEN=", 17) != 0)
			env[k++] = environ[i];
	snprintf(gen_var, gen_len, "SPOTLAUNCH_GENERATION=%d", generation);
	snprintf(tok_var, tok_len, "SPOTLAUNCH_TOKEN=%s", token);
	env[k++] = gen_var;
	env[k++] = tok_var;
	if (!getenv("OMPI_MCA_odls_base_sigkill_timeout"))
		env[k++] = "OMPI_MCA_odls_base_sigkill_timeout=0";
	env[k] = NULL;
	return env;
}

/* Start the next generation on plan p. Returns 0 or a launcher exit code. */
static int launch(sup *s, const world_plan *p, const char *why)
{
	const run_opts *o = s->o;
	generation *g = &s->g;
	int number = s->st.generation + 1;
	char hostfile[PATH_MAX + 64];
	snprintf(hostfile, sizeof hostfile, "%s/gen-%04d.hosts", s->launcher_dir, number);
	if (world_write_hostfile(hostfile, p))
		return EXIT_IOERR;
	char log_path[sizeof g->log_path];
	snprintf(log_path, sizeof log_path, "%s/gen-%04d.log", s->launcher_dir, number);
	int log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (log_fd < 0) {
		say_error("cannot create %s: %s", log_path, strerror(errno));
		return EXIT_IOERR;
	}
	/* the token reaches state.json before mpirun exists, so a restart can always find it */
	s->st.generation = number;
	make_token(s->st.token, sizeof s->st.token);
	s->st.mpirun_pid = 0;
	s->st.mpirun_start_ticks = 0;
	s->st.mpirun_started = now_wall();
	s->st.np = p->np;
	host_list_copy(&s->st.world, &p->hosts);
	if (state_save(s->state_path, &s->st)) {
		close(log_fd);
		return EXIT_IOERR;
	}
	heartbeat stale = {.generation = -1};
	if (!heartbeat_read(s->run_dir, &stale))
		stale.generation = -1;
	char np_buf[16], gen_var[64], tok_var[STATE_TOKEN_LEN + 32];
	char **argv = world_mpirun_argv(o->mpirun, hostfile, np_buf, sizeof np_buf, p->np, o->mpirun_args,
					o->n_mpirun_args, o->worker, o->n_worker, s->add_run_dir);
	char **env = mpirun_env(number, s->st.token, gen_var, sizeof gen_var, tok_var, sizeof tok_var);
	if (!argv || !env) {
		free(argv);
		free(env);
		close(log_fd);
		say_error("out of memory");
		return EXIT_OSERR;
	}
	char names[1024];
	host_list_names(&p->hosts, names, sizeof names);
	say_info("generation %d (%s): %d rank(s) on %s", number, why, p->np, names);
	pid_t pid;
	spawn_opts so = {.argv = argv, .envp = env, .stdout_fd = log_fd, .stderr_fd = log_fd, .new_group = true};
	int e = proc_spawn(&so, &pid);
	free(argv);
	free(env);
	close(log_fd);
	if (e) {
		say_error("cannot start %s: %s%s", o->mpirun, strerror(e),
			  e == ENOENT ? " (give its path with --mpirun PATH)" : "");
		s->st.token[0] = 0;
		save_state(s);
		return EXIT_NOSTART;
	}
	generation_reset(g, number, p->np, &p->hosts, log_path);
	g->stale = stale;
	g->child = true;
	g->pid = pid;
	g->ticks = proc_start_ticks(pid);
	g->t_launch = now_mono();
	s->st.mpirun_pid = pid;
	s->st.mpirun_start_ticks = g->ticks;
	s->st.mpirun_started = now_wall();
	save_state(s);
	cJSON *ev = cJSON_CreateObject();
	cJSON_AddNumberToObject(ev, "generation", number);
	cJSON_AddNumberToObject(ev, "np", p->np);
	cJSON_AddItemToObject(ev, "hosts", host_names_json(&p->hosts));
	cJSON *slots = cJSON_CreateArray();
	for (int i = 0; slots && i < p->hosts.n; i++)
		cJSON_AddItemToArray(slots, cJSON_CreateNumber(p->hosts.v[i].slots));
	cJSON_AddItemToObject(ev, "slots", slots);
	cJSON_AddStringToObject(ev, "reason", why);
	cJSON_AddNumberToObject(ev, "pid", pid);
	cJSON_AddNumberToObject(ev, "failures", s->st.failures);
	events_append(s->run_dir, EV_GENERATION, ev);
	return 0;
}

/* ------------------------------------------------------------ the end of a generation */

/*
 * A failure mpirun's output does not explain (a hang, an abort after a
 * collective timeout): probe every host of the world; one that cannot even
 * run `true` within --probe-timeout is quarantined at once.
 */
static void probe_world(sup *s)
{
	const run_opts *o = s->o;
	const host_list *w = &s->g.world;
	bool *failed = calloc((size_t)w->n, sizeof *failed);
	if (!failed)
		return;
	say_info("probing the %d host(s) of generation %d (no host named in mpirun's output; up to %.0f s)", w->n,
		 s->g.number, o->probe_timeout_s);
	double t0 = now_mono();
	int bad = probe_hosts(o->mpirun, o->mpirun_args, o->n_mpirun_args, w, s->launcher_dir, o->probe_timeout_s,
			      failed);
	if (bad < 0) {
		say_warn("could not start the probes");
	} else if (bad == 0) {
		say_info("all hosts answered the probe in %.1f s: no host is to blame", now_mono() - t0);
	} else {
		for (int i = 0; i < w->n; i++)
			if (failed[i])
				world_quarantine(&s->st, w->v[i].name, now_wall(), &o->quarantine,
						 "failed or hung in a probe after an unexplained failure");
	}
	free(failed);
}

typedef enum { NEXT_REFORM, NEXT_EXIT } next_step;

/* Decide what follows a generation that ended with code. Sets *exit_code for NEXT_EXIT. */
static next_step generation_over(sup *s, int code, const char *status_desc, char *why, size_t why_len,
				 int *exit_code)
{
	generation *g = &s->g;
	const run_opts *o = s->o;
	double detected = now_wall();
	relay_log(s);
	event_tail_poll(&s->events, on_event, s); /* notices and exit codes written just before the end */
	char desc[160];
	if (code >= 0) {
		snprintf(desc, sizeof desc, "%s", status_desc);
	} else if (g->worker_exit >= 0) {
		code = g->worker_exit;
		snprintf(desc, sizeof desc, "exit %d (the workers' exit event; it was not our child)", code);
	} else {
		snprintf(desc, sizeof desc, "ended while no launcher watched it, without an exit event from its workers");
	}
	say_info("generation %d: mpirun %s", g->number, desc);

	bool failure = false;
	next_step next = NEXT_REFORM;
	if (code == EXIT_OK) {
		snprintf(why, why_len, "training finished");
		*exit_code = EXIT_OK;
		next = NEXT_EXIT;
	} else if (exit_code_reaction(code) == EXIT_REACT_STOP) {
		snprintf(why, why_len, "the workers exited %d (%s): not retrying; see %s/gen-%04d.log", code,
			 exit_code_find(code)->meaning, RUN_LAUNCHER_DIR, g->number);
		*exit_code = code;
		next = NEXT_EXIT;
	} else if (s->stop_signal) {
		snprintf(why, why_len, "stopped on %s (workers %s)", strsignal(s->stop_signal), desc);
		*exit_code = EXIT_TEMPFAIL;
		next = NEXT_EXIT;
	} else if (code == EXIT_TEMPFAIL && !g->kill_stage) {
		snprintf(why, why_len, "%s", g->stop_reason[0] ? g->stop_reason : (g->usr1_sent ? "rescale" : "stop"));
	} else {
		failure = true;
		if (g->kill_stage)
			snprintf(why, why_len, "%s", g->kill_reason);
		else
			snprintf(why, why_len, "%s", desc);
	}

	if (failure) {
		s->st.failures++;
		s->st.consecutive_failures++;
		host_list blamed;
		host_list_init(&blamed);
		char *log = NULL;
		size_t len = 0;
		if (read_file(g->log_path, 64L << 20, &log, &len) == 0) {
			const char *tail = len > LOG_TAIL_BYTES ? log + len - LOG_TAIL_BYTES : log;
			world_blame_from_log(tail, &g->world, &blamed);
		}
		free(log);
		char names[1024] = "";
		host_list_names(&blamed, names, sizeof names);
		say_warn("generation %d failed (%s); failure %d of at most %d%s%s", g->number, why, s->st.failures,
			 o->max_failures, blamed.n ? "; mpirun names " : "", names);
		world_record_failure(&s->st, &blamed, now_wall(), &o->quarantine);
		if (blamed.n == 0 && o->probe_timeout_s > 0 && g->world.n > 0)
			probe_world(s);
		if (s->st.failures > o->max_failures) {
			snprintf(why, why_len, "%d failed generations, more than --max-failures %d; the last: %s",
				 s->st.failures, o->max_failures, desc);
			*exit_code = EXIT_FAILURE_BUDGET;
			next = NEXT_EXIT;
		}
		host_list_free(&blamed);
	} else if (code == EXIT_TEMPFAIL || code == EXIT_OK) {
		s->st.consecutive_failures = 0;
		world_record_good(&s->st, &g->world);
	}
	if (next == NEXT_REFORM) {
		cJSON *ev = cJSON_CreateObject();
		cJSON_AddNumberToObject(ev, "generation", g->number);
		cJSON_AddNumberToObject(ev, "exit_code", code);
		cJSON_AddStringToObject(ev, "reason", why);
		cJSON_AddBoolToObject(ev, "failure", failure);
		cJSON_AddNumberToObject(ev, "detected", g->kill_stage ? g->kill_wall : detected);
		cJSON_AddNumberToObject(ev, "ended", detected);
		cJSON_AddNumberToObject(ev, "last_step", g->stepped ? (double)g->last_step : -1);
		cJSON_AddNumberToObject(ev, "last_progress", g->stepped ? g->last_progress_wall : 0);
		cJSON_AddNumberToObject(ev, "failures", s->st.failures);
		events_append(s->run_dir, EV_RELAUNCH, ev);
	}
	s->st.mpirun_pid = 0;
	s->st.mpirun_start_ticks = 0;
	s->st.token[0] = 0;
	save_state(s);
	g->active = false;
	return next;
}

/* Supervise the active generation until it ends. */
static next_step supervise_generation(sup *s, char *why, size_t why_len, int *exit_code)
{
	double last_disc = 0;
	for (;;) {
		wait_tick(s, s->g.stepped ? TICK_S : FIRST_STEP_TICK_S);
		double now = now_mono();
		int code;
		char desc[96];
		bool ended = generation_ended(s, &code, desc, sizeof desc);
		relay_log(s);
		watch_heartbeat(s, now);
		event_tail_poll(&s->events, on_event, s);
		if (ended)
			return generation_over(s, code, desc, why, why_len, exit_code);
		if (now - last_disc >= (s->disc.is_command ? s->o->discover_interval_s : TICK_S)) {
			poll_discovery(s, false);
			last_disc = now;
		}
		if (s->state_dirty)
			save_state(s);
		enforce_deadlines(s, now);
		consider_rescale(s, now);
	}
}

/* ------------------------------------------------------------ between generations */

/* Wait until at least min-np slots are usable. Returns 0 with *p filled, or a launcher exit code. */
static int wait_for_hosts(sup *s, world_plan *p, char *why, size_t why_len)
{
	const run_opts *o = s->o;
	double start = now_mono();
	bool said = false;
	for (;;) {
		poll_discovery(s, !s->disc.have);
		if (s->state_dirty)
			save_state(s);
		if (world_plan_make(&s->disc.hosts, &s->st, now_wall(), o->slots_per_host, o->max_np, p)) {
			snprintf(why, why_len, "out of memory");
			return EXIT_OSERR;
		}
		if (p->np >= o->min_np)
			return 0;
		if (s->stop_signal) {
			snprintf(why, why_len, "stopped on %s while waiting for hosts", strsignal(s->stop_signal));
			return EXIT_TEMPFAIL;
		}
		double waited = now_mono() - start;
		if (waited >= o->wait_timeout_s) {
			snprintf(why, why_len,
				 "only %d usable slot(s) (%d host(s) discovered) for %.0f s, fewer than --min-np %d: "
				 "giving up (--wait-timeout); the checkpoints are kept, run again when capacity returns",
				 p->usable_slots, s->disc.hosts.n, waited, o->min_np);
			return EXIT_UNAVAILABLE;
		}
		if (!said) {
			say_warn("only %d usable slot(s), fewer than --min-np %d: waiting up to %.0f s for more hosts",
				 p->usable_slots, o->min_np, o->wait_timeout_s);
			said = true;
		}
		wait_tick(s, s->disc.is_command ? o->discover_interval_s : 0.2);
	}
}

/* ------------------------------------------------------------ restart */

/* Find the mpirun an earlier launcher left running; adopt it. */
static void adopt_previous(sup *s)
{
	launcher_state *st = &s->st;
	if (st->generation == 0)
		return;
	pid_t pid = 0;
	unsigned long long ticks = 0;
	if (st->mpirun_pid > 0 && proc_alive((pid_t)st->mpirun_pid, st->mpirun_start_ticks)) {
		pid = (pid_t)st->mpirun_pid;
		ticks = st->mpirun_start_ticks;
	} else if (st->mpirun_pid == 0 && st->token[0]) {
		/*
		 * The earlier launcher died between saving the token and saving the pid:
		 * the mpirun is the root of the processes with the token in their
		 * environment whose argv names this generation's hostfile (its daemons
		 * and ranks carry the token too, but not that argv).
		 */
		char var[STATE_TOKEN_LEN + 32], hostfile[PATH_MAX + 64];
		snprintf(var, sizeof var, "SPOTLAUNCH_TOKEN=%s", st->token);
		snprintf(hostfile, sizeof hostfile, "%s/gen-%04d.hosts", s->launcher_dir, st->generation);
		pid_t roots[16];
		int n = proc_find_env_roots(var, roots, 16);
		for (int i = 0; i < n; i++) {
			if (!proc_cmdline_has_pair(roots[i], "--hostfile", hostfile))
				continue;
			say_warn("found the mpirun of generation %d (pid %d), not recorded in %s", st->generation,
				 (int)roots[i], s->state_path);
			if (!pid) {
				pid = roots[i];
				ticks = proc_start_ticks(pid);
			} else {
				proc_signal_group(roots[i], SIGKILL); /* never two */
			}
		}
	}
	generation *g = &s->g;
	char log_path[sizeof g->log_path];
	snprintf(log_path, sizeof log_path, "%s/gen-%04d.log", s->launcher_dir, st->generation);
	generation_reset(g, st->generation, st->np, &st->world, log_path);
	/* first_step_known is set by the events of the earlier launcher, read next */
	struct stat lst;
	g->log_off = stat(g->log_path, &lst) == 0 ? (long long)lst.st_size : 0;
	g->child = false;
	g->pid = pid;
	g->ticks = ticks;
	double age = st->mpirun_started > 0 ? now_wall() - st->mpirun_started : 0;
	g->t_launch = now_mono() - (age > 0 ? age : 0);
	g->last_progress = now_mono(); /* a fresh progress window: we do not know when it last stepped */
	if (pid) {
		say_info("adopting mpirun %d of generation %d, left running by an earlier launcher", (int)pid,
			 g->number);
		st->mpirun_pid = pid;
		st->mpirun_start_ticks = ticks;
		save_state(s);
	} else if (st->mpirun_pid > 0 || st->token[0]) {
		say_info("the mpirun of generation %d ended while no launcher watched it", g->number);
		kill_orphan_session((pid_t)st->mpirun_pid, st->mpirun_start_ticks);
		g->pid = 0;
	} else {
		g->active = false; /* it ended under the earlier launcher, which recorded it */
	}
}

/* ------------------------------------------------------------ setup */

static int take_lock(sup *s)
{
	char path[PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/lock", s->launcher_dir);
	s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (s->lock_fd < 0) {
		say_error("cannot open %s: %s", path, strerror(errno));
		return EXIT_IOERR;
	}
	if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		char other[32] = "?";
		ssize_t r = pread(s->lock_fd, other, sizeof other - 1, 0);
		other[r > 0 ? r : 1] = 0;
		other[strcspn(other, "\n")] = 0;
		say_error("another spotlaunch (pid %s) supervises %s; only one may", other, s->run_dir);
		return EXIT_BUSY;
	}
	char me[32];
	int n = snprintf(me, sizeof me, "%d\n", (int)getpid());
	if (ftruncate(s->lock_fd, 0) != 0 || pwrite(s->lock_fd, me, (size_t)n, 0) != n)
		say_warn("cannot write %s", path);
	return 0;
}

static int setup(sup *s, const run_opts *o)
{
	s->o = o;
	s->lock_fd = -1;
	state_init(&s->st);
	host_list_init(&s->g.world);
	const char *named = NULL;
	bool worker_has = worker_names_run_dir(o->worker, o->n_worker, &named);
	const char *dir = o->run_dir ? o->run_dir : named;
	if (!dir) {
		say_error("give --run-dir DIR (or --run-dir in the worker's arguments): the launcher keeps its state "
			  "there and reads the workers' events");
		return EXIT_USAGE;
	}
	char why[PATH_MAX + 256];
	if (fs_mkdir_p(dir, why, sizeof why)) {
		say_error("cannot create the run directory: %s", why);
		return EXIT_IOERR;
	}
	if (!realpath(dir, s->run_dir)) {
		say_error("cannot resolve %s: %s", dir, strerror(errno));
		return EXIT_IOERR;
	}
	if (worker_has && o->run_dir) {
		char other[PATH_MAX];
		if (!named || !realpath(named, other) || strcmp(other, s->run_dir) != 0) {
			say_error("--run-dir %s and the worker's --run-dir %s differ", o->run_dir, named ? named : "");
			return EXIT_USAGE;
		}
	}
	s->add_run_dir = worker_has ? NULL : s->run_dir;
	snprintf(s->launcher_dir, sizeof s->launcher_dir, "%s/%s", s->run_dir, RUN_LAUNCHER_DIR);
	snprintf(s->state_path, sizeof s->state_path, "%s/%s", s->run_dir, RUN_STATE_FILE);
	if (fs_mkdir_p(s->launcher_dir, why, sizeof why)) {
		say_error("%s", why);
		return EXIT_IOERR;
	}
	int rc = take_lock(s);
	if (rc)
		return rc;
	rc = state_load(s->state_path, &s->st);
	if (rc < 0)
		return rc == -2 ? EXIT_IOERR : EXIT_DATAERR;
	if (rc == 1) {
		s->st.run_started = now_wall();
		save_state(s);
	} else {
		say_info("continuing the run in %s: generation %d so far, %d failure(s)", s->run_dir,
			 s->st.generation, s->st.failures);
	}
	rc = o->hostfile ? discovery_init_hostfile(&s->disc, o->hostfile)
			 : discovery_init_command(&s->disc, o->discover_cmd, o->discover_timeout_s,
						  o->discover_interval_s);
	if (rc)
		return EXIT_USAGE;
	char events[PATH_MAX + 32];
	snprintf(events, sizeof events, "%s/%s", s->run_dir, RUN_EVENTS_FILE);
	event_tail_init(&s->events, events);
	sigemptyset(&s->sigs);
	sigaddset(&s->sigs, SIGCHLD);
	sigaddset(&s->sigs, SIGTERM);
	sigaddset(&s->sigs, SIGINT);
	sigaddset(&s->sigs, SIGHUP);
	sigprocmask(SIG_BLOCK, &s->sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

static void teardown(sup *s)
{
	event_tail_free(&s->events);
	discovery_free(&s->disc);
	host_list_free(&s->g.world);
	state_free(&s->st);
	if (s->lock_fd >= 0)
		close(s->lock_fd); /* releases the lock */
}

static void print_account(const sup *s)
{
	run_account a;
	if (account_load(s->run_dir, &a) == 0) {
		fflush(stderr);
		account_print_text(&a, s->run_dir, stdout);
		fflush(stdout);
	}
	account_free(&a);
}

int supervise_run(const run_opts *o)
{
	sup *s = calloc(1, sizeof *s);
	if (!s) {
		say_error("out of memory");
		return EXIT_OSERR;
	}
	char why[1024] = "";
	int code = setup(s, o);
	if (code) {
		teardown(s);
		free(s);
		return code;
	}
	adopt_previous(s);
	event_tail_poll(&s->events, on_event, s);
	const char *next_reason = "start";
	char reason_buf[128];
	for (;;) {
		if (s->g.active) {
			int exit_code = 0;
			next_step n = s->g.pid ? supervise_generation(s, why, sizeof why, &exit_code)
					       : generation_over(s, -1, "", why, sizeof why, &exit_code);
			if (n == NEXT_EXIT) {
				code = exit_code;
				break;
			}
			snprintf(reason_buf, sizeof reason_buf, "after %.100s", why);
			next_reason = reason_buf;
		}
		if (s->stop_signal) {
			snprintf(why, sizeof why, "stopped on %s", strsignal(s->stop_signal));
			code = EXIT_TEMPFAIL;
			break;
		}
		if (s->st.consecutive_failures > 0) {
			double delay = o->backoff_s * pow(2.0, s->st.consecutive_failures - 1);
			if (delay > o->backoff_max_s)
				delay = o->backoff_max_s;
			say_info("waiting %.1f s before the next generation (%d failure(s) in a row)", delay,
				 s->st.consecutive_failures);
			sleep_until(s, now_mono() + delay);
			if (s->stop_signal)
				continue;
		}
		world_plan p;
		world_plan_init(&p);
		code = wait_for_hosts(s, &p, why, sizeof why);
		if (!code)
			code = launch(s, &p, next_reason);
		world_plan_free(&p);
		if (code) {
			if (code == EXIT_NOSTART || code == EXIT_OSERR || code == EXIT_IOERR)
				snprintf(why, sizeof why, "could not start the next generation (see above)");
			break;
		}
	}
	if (code == EXIT_OK)
		say_info("%s", why);
	else
		say_error("exit %d: %s", code, why);
	launcher_exit_event(s, code, why);
	print_account(s);
	teardown(s);
	free(s);
	return code;
}
