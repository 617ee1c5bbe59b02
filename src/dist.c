/*
 * dist.c - MPI communicators and bounded collectives, and the gradient
 * all-reduce over backend memory: through the backend's own collective
 * (backend.comm, e.g. NCCL) or staged through host memory with the backend's
 * copies. Nothing here knows which backend it is.
 */
#include "dist.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "contract.h"
#include "log.h"
#include "ops.h"

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
	if (d->dev_comm)
		d->be->comm->destroy(d->be, d->dev_comm);
	d->dev_comm = NULL;
	free(d->dev_stage);
	d->dev_stage = NULL;
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

/* In-place sum of n elements of elem bytes, in pieces MPI's int counts can hold; bounded waits. */
static void allreduce_sum_chunked(dist *d, void *buf, size_t n, size_t elem, MPI_Datatype type)
{
	const size_t piece = INT_MAX / 2;
	for (size_t off = 0; off < n; off += piece) {
		int cnt = (int)(n - off < piece ? n - off : piece);
		MPI_Request req;
		MPI_Iallreduce(MPI_IN_PLACE, (char *)buf + off * elem, cnt, type, MPI_SUM, d->comm, &req);
		wait_bounded(d, &req, "gradient all-reduce");
	}
}

static void allreduce_host_f(dist *d, float *buf, size_t n)
{
	allreduce_sum_chunked(d, buf, n, sizeof *buf, MPI_FLOAT);
}

/* ---- backend memory: the backend's own collective, or a copy through host memory for MPI ---- */

/* Sum n floats of backend memory through MPI: download, host all-reduce, upload (bounded). */
static void allreduce_staged_f(dist *d, float *buf, size_t n)
{
	if (d->dev_stage_n < n) {
		free(d->dev_stage);
		d->dev_stage = malloc(n * sizeof(float));
		d->dev_stage_n = d->dev_stage ? n : 0;
		if (!d->dev_stage) {
			log_error("out of memory staging %zu gradient floats for MPI", n);
			dist_abort(d, EXIT_OSERR);
		}
	}
	d->be->download(d->dev_stage, buf, n * sizeof(float));
	allreduce_host_f(d, d->dev_stage, n);
	d->be->upload(buf, d->dev_stage, n * sizeof(float));
}

/* Sum n floats of backend memory through the backend's collective; on timeout or error abort the world. */
static void allreduce_comm_f(dist *d, float *buf, size_t n)
{
	const backend_comm_ops *c = d->be->comm;
	char msg[512] = "";
	double t0 = now_mono();
	int r = c->allreduce_sum_f(d->be, d->dev_comm, buf, n, d->timeout_s, msg, sizeof msg);
	if (r == -2) {
		log_error("gradient all-reduce (%s): %s (dist.collective_timeout_s = %g): a rank or node is "
			  "lost or frozen; aborting so the world can be re-formed",
			  c->name, msg, d->timeout_s);
		d->dev_comm = NULL; /* aborted by the hook */
		dist_abort(d, EXIT_SOFTWARE);
	}
	if (r) {
		log_error("gradient all-reduce (%s) failed: %s; aborting so the world can be re-formed", c->name, msg);
		d->dev_comm = NULL;
		dist_abort(d, EXIT_SOFTWARE);
	}
	d->wait_s += now_mono() - t0;
}

void dist_allreduce_sum_f(dist *d, float *buf, size_t n, dist_mem mem)
{
	if (n > 0 && mem == DIST_MEM_BACKEND && d->device_mem) {
		if (d->world == 1)
			return; /* the sum over one rank: nothing to move */
		if (d->dev_comm)
			allreduce_comm_f(d, buf, n);
		else
			allreduce_staged_f(d, buf, n);
		return;
	}
	allreduce_host_f(d, buf, n);
}

/*
 * Collective: start the backend's collective on every rank (each has one):
 * rank 0 makes the id, dist broadcasts it, every rank joins with a bounded
 * wait (a timeout aborts the world). 0 with d->dev_comm set and msg filled for
 * the log, or the same nonzero code on every rank with d->dev_comm NULL.
 */
static int comm_start(dist *d, int backend_kind, char *msg, size_t msg_len)
{
	const backend_comm_ops *c = d->be->comm;
	unsigned char id[BACKEND_COMM_ID_BYTES];
	int rc = 0;
	memset(id, 0, sizeof id);
	if (d->rank == 0 && c->unique_id(d->be, id, msg, msg_len)) {
		log_error("%s: %s", c->name, msg);
		rc = EXIT_SOFTWARE;
	}
	if (!(rc = dist_agree(d, rc))) {
		dist_bcast(d, id, sizeof id, 0);
		int r = c->init(d->be, id, d->world, d->rank, d->timeout_s, &d->dev_comm, msg, msg_len);
		if (r == -2) {
			log_error("%s: %s (dist.collective_timeout_s = %g): a rank or node is lost or frozen; "
				  "aborting so the world can be re-formed",
				  c->name, msg, d->timeout_s);
			dist_abort(d, EXIT_SOFTWARE);
		}
		if (r) {
			if (backend_kind == DIST_NCCL)
				log_error("%s on rank %d (%s): %s", c->name, d->rank, d->node, msg);
			else
				log_warn("%s on rank %d (%s): %s", c->name, d->rank, d->node, msg);
			rc = EXIT_SOFTWARE;
		}
		rc = dist_agree(d, rc);
	}
	if (rc) {
		c->destroy(d->be, d->dev_comm);
		d->dev_comm = NULL;
	}
	return rc;
}

int dist_enable_device_allreduce(dist *d, const backend *be, int backend_kind)
{
	d->be = be;
	d->device_mem = !(be->caps & BACKEND_CAP_HOST_MEMORY);
	/* which ranks' backends bring their own collective (a GPU): any = max, all = -max(-has) */
	const bool mine = d->device_mem && be->comm;
	long has[2] = {mine, -(long)mine};
	dist_allreduce_max_l(d, has, 2);
	const bool any = has[0] > 0, all = -has[1] > 0;
	if (!all) {
		if (backend_kind == DIST_NCCL) {
			if (d->rank == 0)
				log_error("dist.backend = nccl needs a GPU on every rank, but %s the CPU backend "
					  "(use dist.backend = auto or mpi)",
					  any ? "some ranks use" : "every rank uses");
			return EXIT_USAGE;
		}
		if (any && d->rank == 0)
			log_warn("some ranks have no GPU: GPU gradients are copied to host memory for MPI_Allreduce");
		return 0;
	}
	if (backend_kind == DIST_MPI) {
		if (d->rank == 0 && d->world > 1)
			log_info("dist.backend = mpi: GPU gradients are copied to host memory for MPI_Allreduce");
		return 0;
	}
	if (d->world == 1 || d->dev_comm)
		return 0;
	char msg[512] = "";
	int rc = comm_start(d, backend_kind, msg, sizeof msg);
	if (rc) {
		if (backend_kind == DIST_NCCL)
			return rc;
		if (d->rank == 0)
			log_warn("%s could not start: GPU gradients are copied to host memory for MPI_Allreduce",
				 be->comm->name);
		return 0;
	}
	if (d->rank == 0)
		log_info("gradient all-reduce on the GPUs: %s", msg);
	return 0;
}

void dist_allreduce_sum_i64(dist *d, int64_t *buf, size_t n)
{
	allreduce_sum_chunked(d, buf, n, sizeof *buf, MPI_INT64_T);
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

void dist_node_bcast(dist *d, void *buf, int bytes)
{
	MPI_Request req;
	MPI_Ibcast(buf, bytes, MPI_BYTE, 0, d->node_comm, &req);
	wait_bounded(d, &req, "node broadcast");
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
