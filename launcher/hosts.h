/*
 * hosts.h - lists of hosts with slot counts, and the two discovery formats:
 * an Open MPI hostfile ("host slots=N" lines, # comments) and the output of
 * a discovery command ("host[:slots]" lines, the Horovod convention).
 * Host names are data, never code (invariant 7): a name must start with an
 * ASCII letter or digit and hold only those, '.', '-' and '_' (so never an
 * option like "-oProxyCommand=...", blanks, ';', "$( )" or non-ASCII). Slot
 * counts are 1..HOST_MAX_SLOTS, a list holds at most HOST_MAX_HOSTS names, and
 * control or non-ASCII bytes never reach a message.
 */
#ifndef SPOTLAUNCH_HOSTS_H
#define SPOTLAUNCH_HOSTS_H

#include <stdbool.h>
#include <stddef.h>

#define HOST_NAME_LEN 254   /* DNS names are at most 253 characters */
#define HOST_MAX_SLOTS 4096
#define HOST_MAX_HOSTS 4096 /* names in one hostfile or discovery output; more are skipped */

typedef struct host_entry {
	char name[HOST_NAME_LEN];
	int slots;                /* > 0 as given; 0: not given (use --slots-per-host) */
} host_entry;

typedef struct host_list {
	host_entry *v;
	int n, cap;
} host_list;

/* Names that may be handed to mpirun (see above). */
bool host_name_valid(const char *name);

void host_list_init(host_list *l);
void host_list_free(host_list *l);
void host_list_clear(host_list *l);
/* Append, or add the slots to an entry of the same name (as Open MPI does). Returns 0 or -1 (memory). */
int host_list_add(host_list *l, const char *name, int slots);
int host_list_find(const host_list *l, const char *name); /* index or -1 */
int host_list_copy(host_list *dst, const host_list *src);
bool host_list_equal(const host_list *a, const host_list *b);
/* "a,b,c" into buf (truncated with "..." when it does not fit). */
void host_list_names(const host_list *l, char *buf, size_t len);

/*
 * Parse an Open MPI hostfile: "host [slots=N] [max_slots=N]" per line,
 * '#' starts a comment. Bad lines are skipped; each is described in warn
 * (one line each, the first few) and counted in the return value.
 * Returns the number of skipped lines (0: all good) or -1 (memory).
 */
/*
 * Text read from a hostfile or a discovery command is refused when it holds a
 * NUL byte (the parsers would silently stop there): true if text[0..len) has
 * one; *offset is its byte offset, *line_no its 1-based line, *col its 1-based
 * byte in that line.
 */
bool hosts_find_nul(const char *text, size_t len, size_t *offset, int *line_no, size_t *col);

int hosts_parse_hostfile(const char *text, host_list *out, char *warn, size_t warn_len);
/* Parse discovery output: "host" or "host:slots" per line, '#' comments. Same returns. */
int hosts_parse_discovery(const char *text, host_list *out, char *warn, size_t warn_len);

#endif
