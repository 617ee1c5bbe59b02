/*
 * dist.c - MPI communicators and bounded collectives.
 */
#include "dist.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "contract.h"
#include "log.h"

static void node_name(char *out, size_t len)
{
	const char *sim = getenv("SIM_NODE");
	if (sim && *sim) {
		snprintf(out, len, "%s", sim);
		return;
	}
	char host[MPI_MAX_PROCESSOR_NAME];
	int n = 0;
	if (MPI_Get_processor_name(host, &n) != MPI_SUCCESS || n <= 0)
		snprintf(host, sizeof host, "localhost");
	size_t l = strnlen(host, sizeof host);
	if (l >= len)
		l = len - 1;
	memcpy(out, host, l);
	out[l] = 0;
}

int dist_init(int *argc, char ***argv, double timeout_s, dist *d)
{
	memset(d, 0, sizeof *d);
	int provided = 0;
	if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
		log_error("MPI_Init_thread failed");
		return EXIT_OSERR;
	}
	MPI_Comm_dup(MPI_COMM_WORLD, &d->comm);
	MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_ARE_FATAL);
	MPI_Comm_rank(d->comm, &d->rank);
	MPI_Comm_size(d->comm, &d->world);
	log_set_rank(d->rank);
	d->timeout_s = timeout_s;
	node_name(d->node, sizeof d->node);

	/* Nodes by name (SIM_NODE lets fake nodes on one machine count as separate nodes). */
	char *names = calloc((size_t)d->world, sizeof d->node);
	if (!names) {
		log_error("out of memory");
		return EXIT_OSERR;
	}
	MPI_Allgather(d->node, sizeof d->node, MPI_CHAR, names, sizeof d->node, MPI_CHAR, d->comm);
	int color = -1, n_nodes = 0;
	for (int r = 0; r < d->world; r++) {
		bool first = true;
		for (int q = 0; q < r; q++)
			if (strcmp(names + q * sizeof d->node, names + r * sizeof d->node) == 0)
				first = false;
		if (first) {
			if (strcmp(names + r * sizeof d->node, d->node) == 0)
				color = n_nodes;
			n_nodes++;
		}
	}
	free(names);
	d->node_index = color;
	d->n_nodes = n_nodes;
	MPI_Comm_split(d->comm, color, d->rank, &d->node_comm);
	MPI_Comm_rank(d->node_comm, &d->local_rank);
	MPI_Comm_size(d->node_comm, &d->local_size);
	MPI_Comm_split(d->comm, d->local_rank == 0 ? 0 : MPI_UNDEFINED, d->rank, &d->leaders_comm);
	return 0;
}

void dist_finalize(dist *d)
{
	if (d->leaders_comm != MPI_COMM_NULL && d->leaders_comm)
		MPI_Comm_free(&d->leaders_comm);
	if (d->node_comm)
		MPI_Comm_free(&d->node_comm);
	if (d->comm)
		MPI_Comm_free(&d->comm);
	MPI_Finalize();
}

void dist_abort(dist *d, int code)
{
	log_error("aborting the MPI world (exit %d)", code);
	fflush(stderr);
	MPI_Abort(d->comm ? d->comm : MPI_COMM_WORLD, code);
	_exit(code); /* not reached */
}

/*
 * Wait for req, polling. Spins for the first millisecond (the common case on
 * shared memory), then sleeps 100 us between tests so that oversubscribed
 * ranks leave the cores to the others. Past the deadline: abort the world.
 */
static void wait_bounded(dist *d, MPI_Request *req, const char *what)
{
	double t0 = now_mono();
	int done = 0;
	for (long i = 0;; i++) {
		MPI_Test(req, &done, MPI_STATUS_IGNORE);
		if (done)
			break;
		double el = now_mono() - t0;
		if (el > d->timeout_s) {
			log_error("%s has waited %.0f s for the other ranks (dist.collective_timeout_s = %g): "
				  "a rank or node is lost or frozen; aborting so the world can be re-formed",
				  what, el, d->timeout_s);
			dist_abort(d, EXIT_SOFTWARE);
		}
		if (el > 1e-3) {
			struct timespec ts = {0, 100000};
			nanosleep(&ts, NULL);
		}
	}
	d->wait_s += now_mono() - t0;
}

void dist_allreduce_sum_f(dist *d, float *buf, size_t n)
{
	for (size_t off = 0; off < n; off += INT_MAX / 2) {
		int cnt = (int)(n - off < (size_t)INT_MAX / 2 ? n - off : (size_t)INT_MAX / 2);
		MPI_Request req;
		MPI_Iallreduce(MPI_IN_PLACE, buf + off, cnt, MPI_FLOAT, MPI_SUM, d->comm, &req);
		wait_bounded(d, &req, "gradient all-reduce");
	}
}

void dist_allreduce_sum_d(dist *d, double *buf, int n)
{
	MPI_Request req;
	MPI_Iallreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, d->comm, &req);
	wait_bounded(d, &req, "all-reduce");
}

void dist_allreduce_max_l(dist *d, long *buf, int n)
{
	MPI_Request req;
	MPI_Iallreduce(MPI_IN_PLACE, buf, n, MPI_LONG, MPI_MAX, d->comm, &req);
	wait_bounded(d, &req, "all-reduce");
}

void dist_allreduce_min_d(dist *d, double *buf, int n)
{
	MPI_Request req;
	MPI_Iallreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_MIN, d->comm, &req);
	wait_bounded(d, &req, "all-reduce");
}

void dist_bcast(dist *d, void *buf, size_t bytes, int root)
{
	for (size_t off = 0; off < bytes; off += INT_MAX / 2) {
		int cnt = (int)(bytes - off < (size_t)INT_MAX / 2 ? bytes - off : (size_t)INT_MAX / 2);
		MPI_Request req;
		MPI_Ibcast((char *)buf + off, cnt, MPI_BYTE, root, d->comm, &req);
		wait_bounded(d, &req, "broadcast");
	}
}

void dist_barrier(dist *d)
{
	MPI_Request req;
	MPI_Ibarrier(d->comm, &req);
	wait_bounded(d, &req, "barrier");
}

int dist_agree(dist *d, int rc)
{
	long v = rc;
	dist_allreduce_max_l(d, &v, 1);
	return (int)v;
}
