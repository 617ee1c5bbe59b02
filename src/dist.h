/*
 * dist.h - the only module that drives collectives (DESIGN.md): MPI's, and the
 * one a backend brings for its own memory (backend.comm in ops.h; NCCL for the
 * CUDA backend), which dist calls through the backend's table without knowing
 * which backend it is. Every collective wait is bounded (invariant 6):
 * nonblocking MPI calls polled with MPI_Test against
 * dist.collective_timeout_s, and the backend's collective polls against the
 * same timeout; past it the world is aborted so that the launcher can re-form
 * it.
 *
 * Memory is explicit: the caller of dist_allreduce_sum_f says whether a buffer
 * is host memory or the backend's memory (dist_mem); dist never guesses from
 * a pointer. Backend memory goes through the backend's collective when every
 * rank has one (dist_enable_device_allreduce), else it is staged through host
 * memory with the backend's download/upload and summed by MPI.
 */
#ifndef SPOTTRAIN_DIST_H
#define SPOTTRAIN_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

struct backend;
struct backend_comm;

typedef struct dist {
	int rank, world;
	int local_rank, local_size;  /* within this node */
	int node_index, n_nodes;     /* nodes ordered by their first rank */
	char node[128];              /* SIM_NODE (fleet simulation) or the host name */
	MPI_Comm comm;               /* a duplicate of MPI_COMM_WORLD */
	MPI_Comm node_comm;          /* ranks of this node */
	MPI_Comm leaders_comm;       /* local rank 0 of every node (MPI_COMM_NULL elsewhere) */
	double timeout_s;            /* collective_timeout_s */
	double wait_s;               /* seconds spent waiting in collectives (all-reduce time) */
	/* Backend memory (set by dist_enable_device_allreduce()): the backend's collective
	 * when it started, else device buffers are staged through host memory and MPI */
	const struct backend *be;    /* the backend whose memory DIST_MEM_BACKEND means */
	bool device_mem;             /* the backend's memory is not host memory */
	struct backend_comm *dev_comm; /* the backend's communicator (be->comm), or NULL */
	float *dev_stage;            /* host staging buffer for device buffers without it */
	size_t dev_stage_n;          /* its size in floats */
} dist;

/* MPI_Init (thread level FUNNELED) and the communicators. Returns 0 or EXIT_OSERR. */
int dist_init(int *argc, char ***argv, double timeout_s, dist *d);
void dist_finalize(dist *d);
/* MPI_Abort the world with code after logging why. Does not return. */
void dist_abort(dist *d, int code) __attribute__((noreturn));

/*
 * Collective (every rank calls it, after choosing its compute backend be): how
 * dist_allreduce_sum_f() reduces buffers of be's memory. backend_kind is the
 * config's dist.backend (a dist_backend_kind: DIST_AUTO, DIST_MPI or
 * DIST_NCCL). With auto or nccl and, on every rank of a world larger than one,
 * a backend with device memory and its own collective (be->comm: a GPU and
 * NCCL), its communicator is made (unique id from rank 0 by broadcast,
 * non-blocking init bounded by timeout_s); with mpi, or when some rank has no
 * GPU, device buffers are copied to host memory (be->download, be->upload) for
 * MPI_Allreduce. Host-memory backends (BACKEND_CAP_HOST_MEMORY) need nothing. Returns 0, EXIT_USAGE
 * when dist.backend = nccl cannot be honoured (a rank without a GPU, or a
 * build without CUDA), or EXIT_SOFTWARE when NCCL fails to start under
 * dist.backend = nccl (auto falls back to MPI with a warning). The same
 * return on every rank.
 */
int dist_enable_device_allreduce(dist *d, const struct backend *be, int backend_kind);

/* Where a buffer handed to dist_allreduce_sum_f lives: said by the caller, never guessed. */
typedef enum {
	DIST_MEM_HOST = 0, /* host memory */
	DIST_MEM_BACKEND,  /* memory of the backend given to dist_enable_device_allreduce()
			      (host memory when that backend has BACKEND_CAP_HOST_MEMORY) */
} dist_mem;

/*
 * In-place sums; bounded waits. On timeout the world is aborted. The float sum
 * also takes backend memory (the gradient buffer, mem = DIST_MEM_BACKEND): on a
 * GPU backend through NCCL on the backend's stream when enabled, else staged
 * through host memory.
 */
void dist_allreduce_sum_f(dist *d, float *buf, size_t n, dist_mem mem);
void dist_allreduce_sum_d(dist *d, double *buf, int n);
void dist_allreduce_sum_i64(dist *d, int64_t *buf, size_t n);
void dist_allreduce_max_l(dist *d, long *buf, int n);
void dist_allreduce_min_d(dist *d, double *buf, int n);
void dist_bcast(dist *d, void *buf, size_t bytes, int root);
void dist_barrier(dist *d);
/* Collective over the ranks of this node: the node's first rank's bytes to the others (small). */
void dist_node_bcast(dist *d, void *buf, int bytes);
/* Agree on a status: every rank returns the largest rc any rank passed (0 if all 0). */
int dist_agree(dist *d, int rc);

#endif
