/*
 * fuzz_hosts.c - the fleet's host lists: an Open MPI hostfile and the output
 * of a discovery command (selector byte, then the text). Oracle beyond the
 * sanitizers: whatever comes out may be handed to mpirun and ssh, so every
 * name must pass host_name_valid (no leading '-', only a host name's
 * alphabet) and every slot count must be within [0, HOST_MAX_SLOTS]; the
 * NUL check (which refuses such text before parsing) finds the first NUL at
 * the line and byte counted here.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_util.h"
#include "hosts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t off = 0, col = 0, want = 0, bol = 0;
	int line_no = 0, want_line = 1;
	bool nul = hosts_find_nul((const char *)data + 1, size - 1, &off, &line_no, &col);
	while (want < size - 1 && data[1 + want]) {
		if (data[1 + want] == '\n') {
			want_line++;
			bol = want + 1;
		}
		want++;
	}
	if (nul != (want < size - 1) || (nul && (off != want || line_no != want_line || col != want - bol + 1))) {
		fprintf(stderr, "fuzz_hosts: NUL check says %d at %zu line %d byte %zu\n", nul, off, line_no, col);
		abort();
	}
	char *text = fuzz_strndup(data + 1, size - 1);
	char warn[1024];
	host_list l;
	host_list_init(&l);
	int bad = data[0] & 1 ? hosts_parse_discovery(text, &l, warn, sizeof warn)
			      : hosts_parse_hostfile(text, &l, warn, sizeof warn);
	for (int i = 0; bad >= 0 && i < l.n; i++) {
		const host_entry *e = &l.v[i];
		if (!host_name_valid(e->name) || e->name[0] == '-' || e->slots < 0 || e->slots > HOST_MAX_SLOTS) {
			fprintf(stderr, "fuzz_hosts: host '%s' slots %d came out of the parser\n", e->name, e->slots);
			abort();
		}
	}
	char names[256];
	host_list_names(&l, names, sizeof names);
	host_list_free(&l);
	free(text);
	return 0;
}
