#include "world.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void world_plan_init(world_plan *p)
{
	memset(p, 0, sizeof *p);
	host_list_init(&p->hosts);
}

void world_plan_free(world_plan *p)
{
	host_list_free(&p->hosts);
	memset(p, 0, sizeof *p);
}

bool world_host_usable(const launcher_state *s, const char *name, double now)
{
	for (int i = 0; i < s->n_hosts; i++) {
		const host_record *h = &s->hosts[i];
		if (strcmp(h->name, name) != 0)
			continue;
		if (h->quarantined_until > now)
			return false;
		if (h->noticed > 0 && now - h->noticed < NOTICE_HOLD_S)
			return false;
		return true;
	}
	return true;
}

int world_plan_make(const host_list *discovered, const launcher_state *s, double now, int default_slots,
		    int max_np, world_plan *out)
{
	host_list_clear(&out->hosts);
	out->np = 0;
	out->usable_slots = 0;
	for (int i = 0; i < discovered->n; i++) {
		const host_entry *e = &discovered->v[i];
		if (!world_host_usable(s, e->name, now))
			continue;
		int slots = e->slots > 0 ? e->slots : default_slots;
		out->usable_slots += slots;
		int take = max_np - out->np;
		if (take <= 0)
			continue;
		if (take > slots)
			take = slots;
		if (host_list_add(&out->hosts, e->name, take))
			return -1;
		out->np += take;
	}
	return 0;
}

int world_forget_departed(launcher_state *s, const host_list *discovered)
{
	int n = 0;
	for (int i = 0; i < s->n_hosts; i++) {
		host_record *h = &s->hosts[i];
		if (h->noticed > 0 && host_list_find(discovered, h->name) < 0) {
			h->noticed = 0;
			n++;
		}
	}
	return n;
}

void world_quarantine(launcher_state *s, const char *name, double now, const quarantine_policy *policy,
		      const char *why)
{
	host_record *h = state_host(s, name, true);
	if (!h)
		return;
	double cool = policy->base_s * pow(2.0, h->quarantines > 30 ? 30 : h->quarantines);
	if (cool > policy->max_s)
		cool = policy->max_s;
	h->quarantined_until = now + cool;
	h->quarantines++;
	h->strikes = 0;
	say_warn("host %s %s: quarantined for %.0f s", h->name, why, cool);
}

int world_record_failure(launcher_state *s, const host_list *blamed, double now, const quarantine_policy *policy)
{
	int quarantined = 0;
	for (int i = 0; i < blamed->n; i++) {
		host_record *h = state_host(s, blamed->v[i].name, true);
		if (!h || ++h->strikes < policy->strikes)
			continue;
		char why[96];
		snprintf(why, sizeof why, "was to blame in %d failed generations in a row", h->strikes);
		world_quarantine(s, h->name, now, policy, why);
		quarantined++;
	}
	return quarantined;
}

void world_record_good(launcher_state *s, const host_list *world)
{
	for (int i = 0; i < world->n; i++) {
		host_record *h = state_host(s, world->v[i].name, false);
		if (h)
			h->strikes = 0;
	}
}

/* Copy the host-name characters at p into name; returns its length. */
static size_t take_name(const char *p, char *name, size_t len)
{
	size_t n = 0;
	while (p[n] && (isalnum((unsigned char)p[n]) || p[n] == '.' || p[n] == '-' || p[n] == '_') && n + 1 < len) {
		name[n] = p[n];
		n++;
	}
	name[n] = 0;
	/* a sentence may end right after the name */
	while (n > 0 && name[n - 1] == '.')
		name[--n] = 0;
	return n;
}

static void blame_after(const char *line, size_t line_len, const char *marker, const host_list *world,
			host_list *blamed)
{
	size_t mlen = strlen(marker);
	for (size_t i = 0; i + mlen <= line_len; i++) {
		if (memcmp(line + i, marker, mlen) != 0)
			continue;
		char name[HOST_NAME_LEN];
		if (take_name(line + i + mlen, name, sizeof name) && host_list_find(world, name) >= 0 &&
		    host_list_find(blamed, name) < 0)
			host_list_add(blamed, name, 0);
	}
}

static bool line_has(const char *line, size_t len, const char *s)
{
	size_t n = strlen(s);
	for (size_t i = 0; i + n <= len; i++)
		if (memcmp(line + i, s, n) == 0)
			return true;
	return false;
}

int world_blame_from_log(const char *log, const host_list *world, host_list *blamed)
{
	host_list_clear(blamed);
	for (const char *p = log; p && *p;) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		if (line_has(p, len, "exited on signal") || line_has(p, len, "Remote daemon"))
			blame_after(p, len, "on node ", world, blamed);
		blame_after(p, len, "connect to host ", world, blamed);
		blame_after(p, len, "resolve hostname ", world, blamed);
		p += len;
		if (*p)
			p++;
	}
	return blamed->n;
}

int world_write_hostfile(const char *path, const world_plan *p)
{
	size_t cap = 64 + (size_t)p->hosts.n * (HOST_NAME_LEN + 24);
	char *text = malloc(cap);
	if (!text) {
		say_error("out of memory writing %s", path);
		return -1;
	}
	size_t used = (size_t)snprintf(text, cap, "# written by spotlaunch: %d ranks\n", p->np);
	for (int i = 0; i < p->hosts.n; i++)
		used += (size_t)snprintf(text + used, cap - used, "%s slots=%d\n", p->hosts.v[i].name,
					 p->hosts.v[i].slots);
	int rc = write_file_atomic(path, text, used);
	free(text);
	return rc;
}

bool worker_names_run_dir(char *const *worker, int n_worker, const char **value)
{
	for (int i = 0; i < n_worker; i++) {
		if (strcmp(worker[i], "--") == 0)
			break;
		if (strcmp(worker[i], "--run-dir") == 0) {
			if (value)
				*value = i + 1 < n_worker ? worker[i + 1] : NULL;
			return true;
		}
		if (strncmp(worker[i], "--run-dir=", 10) == 0) {
			if (value)
				*value = worker[i] + 10;
			return true;
		}
	}
	return false;
}

char **world_mpirun_argv(const char *mpirun, const char *hostfile, char *np_buf, size_t np_len, int np,
			 char *const *user_args, int n_user, char *const *worker, int n_worker,
			 const char *add_run_dir)
{
	size_t n = 7 + (size_t)n_user + (size_t)n_worker + 2 + 1;
	char **argv = calloc(n, sizeof *argv);
	if (!argv)
		return NULL;
	snprintf(np_buf, np_len, "%d", np);
	size_t k = 0;
	argv[k++] = (char *)mpirun;
	argv[k++] = "--hostfile";
	argv[k++] = (char *)hostfile;
	argv[k++] = "-np";
	argv[k++] = np_buf;
	for (int i = 0; i < n_user; i++)
		argv[k++] = user_args[i];
	argv[k++] = "-x";
	argv[k++] = "SPOTLAUNCH_GENERATION";
	for (int i = 0; i < n_worker; i++)
		argv[k++] = worker[i];
	if (add_run_dir) {
		argv[k++] = "--run-dir";
		argv[k++] = (char *)add_run_dir;
	}
	argv[k] = NULL;
	return argv;
}
