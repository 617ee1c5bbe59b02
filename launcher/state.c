#include "state.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "events.h"
#include "util.h"

void state_init(launcher_state *s)
{
	memset(s, 0, sizeof *s);
	host_list_init(&s->world);
}

void state_free(launcher_state *s)
{
	host_list_free(&s->world);
	free(s->hosts);
	memset(s, 0, sizeof *s);
}

host_record *state_host(launcher_state *s, const char *name, bool create)
{
	for (int i = 0; i < s->n_hosts; i++)
		if (strcmp(s->hosts[i].name, name) == 0)
			return &s->hosts[i];
	if (!create || !host_name_valid(name))
		return NULL;
	if (s->n_hosts == s->cap_hosts) {
		int cap = s->cap_hosts ? s->cap_hosts * 2 : 16;
		host_record *v = realloc(s->hosts, (size_t)cap * sizeof *v);
		if (!v)
			return NULL;
		s->hosts = v;
		s->cap_hosts = cap;
	}
	host_record *h = &s->hosts[s->n_hosts++];
	memset(h, 0, sizeof *h);
	snprintf(h->name, sizeof h->name, "%s", name);
	return h;
}

char *state_to_json(const launcher_state *s)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	cJSON_AddNumberToObject(o, "version", STATE_VERSION);
	cJSON_AddNumberToObject(o, "generation", s->generation);
	cJSON_AddNumberToObject(o, "failures", s->failures);
	cJSON_AddNumberToObject(o, "consecutive_failures", s->consecutive_failures);
	cJSON_AddNumberToObject(o, "run_started", s->run_started);
	cJSON *m = cJSON_AddObjectToObject(o, "mpirun");
	if (m) {
		cJSON_AddNumberToObject(m, "pid", (double)s->mpirun_pid);
		/* start ticks as a string: a double cannot hold every 64-bit value */
		char ticks[32];
		snprintf(ticks, sizeof ticks, "%llu", s->mpirun_start_ticks);
		cJSON_AddStringToObject(m, "start_ticks", ticks);
		cJSON_AddNumberToObject(m, "started", s->mpirun_started);
		cJSON_AddStringToObject(m, "token", s->token);
		cJSON_AddNumberToObject(m, "np", s->np);
		cJSON *w = cJSON_AddObjectToObject(m, "hosts");
		for (int i = 0; w && i < s->world.n; i++)
			cJSON_AddNumberToObject(w, s->world.v[i].name, s->world.v[i].slots);
	}
	cJSON *hosts = cJSON_AddObjectToObject(o, "hosts");
	for (int i = 0; hosts && i < s->n_hosts; i++) {
		const host_record *h = &s->hosts[i];
		cJSON *r = cJSON_AddObjectToObject(hosts, h->name);
		if (!r)
			continue;
		cJSON_AddNumberToObject(r, "strikes", h->strikes);
		cJSON_AddNumberToObject(r, "quarantines", h->quarantines);
		cJSON_AddNumberToObject(r, "quarantined_until", h->quarantined_until);
		cJSON_AddNumberToObject(r, "noticed", h->noticed);
	}
	char *text = cJSON_Print(o);
	cJSON_Delete(o);
	return text;
}

static int get_int(const cJSON *o, const char *key, int lo, int hi, int *out, char *err, size_t err_len)
{
	double v = json_num(o, key, -1e300);
	if (v < lo || v > hi || v != (double)(long)v) {
		snprintf(err, err_len, "\"%s\" is missing or not a whole number from %d to %d", key, lo, hi);
		return -1;
	}
	*out = (int)v;
	return 0;
}

/* A number of o that state.json may hold as a time: a missing or non-finite one reads as 0. */
static double get_time(const cJSON *o, const char *key)
{
	double v = json_num(o, key, 0);
	return isfinite(v) ? v : 0;
}

/* A whole number of o within [lo, hi]; missing, fractional or out of range: dflt (never a
 * conversion of an out-of-range double, which C leaves undefined). */
static long get_long_or(const cJSON *o, const char *key, long lo, long hi, long dflt)
{
	double v = json_num(o, key, NAN);
	if (!(v >= (double)lo && v <= (double)hi) || v != floor(v))
		return dflt;
	return (long)v;
}

int state_from_json(const char *text, launcher_state *s, char *err, size_t err_len)
{
	state_free(s);
	state_init(s);
	cJSON *o = cJSON_Parse(text);
	int rc = -1;
	if (!cJSON_IsObject(o)) {
		snprintf(err, err_len, "not a JSON object");
		goto out;
	}
	int version;
	if (get_int(o, "version", 1, 1000, &version, err, err_len))
		goto out;
	if (version != STATE_VERSION) {
		snprintf(err, err_len, "state version %d, this launcher knows %d", version, STATE_VERSION);
		goto out;
	}
	if (get_int(o, "generation", 0, 1 << 30, &s->generation, err, err_len) ||
	    get_int(o, "failures", 0, 1 << 30, &s->failures, err, err_len) ||
	    get_int(o, "consecutive_failures", 0, 1 << 30, &s->consecutive_failures, err, err_len))
		goto out;
	s->run_started = get_time(o, "run_started");
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "mpirun");
	if (cJSON_IsObject(m)) {
		s->mpirun_pid = get_long_or(m, "pid", 0, 1L << 30, 0);
		s->mpirun_start_ticks = strtoull(json_str(m, "start_ticks", "0"), NULL, 10);
		s->mpirun_started = get_time(m, "started");
		snprintf(s->token, sizeof s->token, "%s", json_str(m, "token", ""));
		s->np = (int)get_long_or(m, "np", 0, 1 << 30, 0);
		const cJSON *w = cJSON_GetObjectItemCaseSensitive(m, "hosts");
		const cJSON *it;
		cJSON_ArrayForEach(it, w)
		{
			double slots = cJSON_IsNumber(it) ? it->valuedouble : 0;
			if (!it->string || !host_name_valid(it->string) || !(slots >= 1 && slots <= HOST_MAX_SLOTS))
				continue; /* (a damaged entry: the world is checked against mpirun anyway) */
			if (host_list_add(&s->world, it->string, (int)slots)) {
				snprintf(err, err_len, "out of memory");
				goto out;
			}
		}
	}
	const cJSON *hosts = cJSON_GetObjectItemCaseSensitive(o, "hosts");
	const cJSON *it;
	cJSON_ArrayForEach(it, hosts)
	{
		if (!it->string || !host_name_valid(it->string) || !cJSON_IsObject(it))
			continue;
		host_record *h = state_host(s, it->string, true);
		if (!h) {
			snprintf(err, err_len, "out of memory");
			goto out;
		}
		h->strikes = (int)get_long_or(it, "strikes", 0, 1 << 30, 0);
		h->quarantines = (int)get_long_or(it, "quarantines", 0, 1 << 30, 0);
		h->quarantined_until = get_time(it, "quarantined_until");
		h->noticed = get_time(it, "noticed");
	}
	rc = 0;
out:
	cJSON_Delete(o);
	return rc;
}

int state_load(const char *path, launcher_state *s)
{
	char *text = NULL;
	int e = read_file(path, 16 << 20, &text, NULL);
	if (e == ENOENT)
		return 1;
	if (e) {
		say_error("cannot read %s: %s", path, strerror(e));
		return -2;
	}
	char err[256];
	int rc = state_from_json(text, s, err, sizeof err);
	free(text);
	if (rc)
		say_error("%s is damaged (%s); move it away to let the launcher start afresh "
			  "(the checkpoints are not affected)", path, err);
	return rc;
}

int state_save(const char *path, const launcher_state *s)
{
	char *text = state_to_json(s);
	if (!text) {
		say_error("out of memory writing %s", path);
		return -1;
	}
	int rc = write_file_atomic(path, text, strlen(text));
	free(text);
	return rc;
}
