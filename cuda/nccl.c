/*
 * nccl.c - the NCCL communicator of the GPU ranks and the bounded gradient
 * all-reduce (DESIGN.md invariant 6: "poll ncclCommGetAsyncError and the
 * stream, then ncclCommAbort"): the CUDA backend's backend_comm_ops (ops.h),
 * which backend.c puts in its table. Only dist.c calls them, through the table:
 * dist owns the collectives and the MPI side (the unique id travels by
 * MPI_Bcast). Each hook works on the backend instance it is given (be->ctx).
 *
 * The communicator is non-blocking (ncclConfig_t.blocking = 0), so neither its
 * initialisation nor an enqueue can hang this thread: every wait is a poll
 * against the caller's timeout.
 */
#include "cuda_internal.h"

#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(NCCL_VERSION_CODE) && NCCL_VERSION_CODE >= NCCL_VERSION(2, 14, 0)
#define HAVE_NCCL_CONFIG 1
#else
#define HAVE_NCCL_CONFIG 0
#endif

/* ops.h's opaque communicator; comm is NULL once aborted. */
struct backend_comm {
	ncclComm_t comm;
	int world, rank;
};

/*
 * NCCL, loaded with dlopen() on first use (as cuBLAS is, backend.c): a CUDA
 * build runs on machines without NCCL, and dist falls back to MPI there.
 */
static struct {
	__typeof__(&ncclGetVersion) get_version;
	__typeof__(&ncclGetUniqueId) get_unique_id;
#if HAVE_NCCL_CONFIG
	__typeof__(&ncclCommInitRankConfig) init_rank_config;
	__typeof__(&ncclCommFinalize) finalize;
#else
	__typeof__(&ncclCommInitRank) init_rank;
#endif
	__typeof__(&ncclCommGetAsyncError) async_error;
	__typeof__(&ncclCommAbort) abort;
	__typeof__(&ncclCommDestroy) destroy;
	__typeof__(&ncclGetErrorString) error_string;
	__typeof__(&ncclGetLastError) last_error;
	__typeof__(&ncclAllReduce) all_reduce;
} N;

static int load_nccl(char *msg, size_t msg_len)
{
	static void *handle;
	if (handle)
		return 0;
	static const char *const names[] = {"libnccl.so.2", SPOTTRAIN_NCCL_DIR "/libnccl.so.2", SPOTTRAIN_NCCL_LIB,
					    "libnccl.so", NULL};
	static const char *const syms[] = {"ncclGetVersion", "ncclGetUniqueId",
#if HAVE_NCCL_CONFIG
					   "ncclCommInitRankConfig", "ncclCommFinalize",
#else
					   "ncclCommInitRank",
#endif
					   "ncclCommGetAsyncError", "ncclCommAbort", "ncclCommDestroy",
					   "ncclGetErrorString", "ncclGetLastError", "ncclAllReduce"};
	void *slots[sizeof syms / sizeof *syms];
	char why[768];
	if (cuda_dlopen(names, syms, slots, (int)(sizeof syms / sizeof *syms), &handle, why, sizeof why)) {
		snprintf(msg, msg_len, "cannot load NCCL: %s", why);
		return -1;
	}
	_Static_assert(sizeof N == sizeof slots, "one slot per NCCL function");
	memcpy(&N, slots, sizeof N);
	return 0;
}

static void pause_us(long us)
{
	struct timespec ts = {0, us * 1000};
	nanosleep(&ts, NULL);
}

/* "NCCL x.y.z", or why there is none. */
static const char *nccl_version(const backend *be)
{
	static char buf[32];
	char msg[8];
	int v = 0;
	(void)be;
	if (load_nccl(msg, sizeof msg))
		return "NCCL (not loadable)";
	if (N.get_version(&v) != ncclSuccess)
		return "NCCL (version unknown)";
	/* 2.9 and later: X*10000 + Y*100 + Z; earlier: X*1000 + Y*100 + Z */
	int x = v >= 10000 ? v / 10000 : v / 1000, y = v >= 10000 ? v / 100 % 100 : v / 100 % 10, z = v % 100;
	snprintf(buf, sizeof buf, "NCCL %d.%d.%d", x, y, z);
	return buf;
}

/* A new NCCL unique id (loads NCCL first). 0 or -1 with msg filled. */
static int nccl_unique_id(const backend *be, unsigned char id[BACKEND_COMM_ID_BYTES], char *msg, size_t msg_len)
{
	ncclUniqueId uid;
	_Static_assert(sizeof uid.internal == BACKEND_COMM_ID_BYTES, "NCCL unique id size");
	(void)be;
	if (load_nccl(msg, msg_len))
		return -1;
	ncclResult_t r = N.get_unique_id(&uid);
	if (r != ncclSuccess) {
		snprintf(msg, msg_len, "ncclGetUniqueId: %s", N.error_string(r));
		return -1;
	}
	memcpy(id, uid.internal, BACKEND_COMM_ID_BYTES);
	return 0;
}

/* Poll the communicator until no operation is in progress. 0, -1 (error) or -2 (timeout: aborted). */
static int wait_idle(ncclComm_t comm, double t0, double timeout_s, const char *what, char *msg, size_t msg_len)
{
	for (;;) {
		ncclResult_t st = ncclInProgress;
		ncclResult_t r = N.async_error(comm, &st);
		if (r != ncclSuccess)
			st = r;
		if (st == ncclSuccess)
			return 0;
		if (st != ncclInProgress) {
			snprintf(msg, msg_len, "%s: %s (%s)", what, N.error_string(st), N.last_error(comm));
			N.abort(comm);
			return -1;
		}
		double el = now_mono() - t0;
		if (el > timeout_s) {
			snprintf(msg, msg_len, "%s still in progress after %.0f s", what, el);
			N.abort(comm);
			return -2;
		}
		pause_us(el > 1e-3 ? 100 : 5);
	}
}

/*
 * Join the communicator on be's device: non-blocking initialisation polled
 * against timeout_s (-2 past it, the communicator aborted); -1 on an NCCL
 * error; 0 with *out set and msg naming NCCL and the time it took.
 */
static int nccl_init(const backend *be, const unsigned char id[BACKEND_COMM_ID_BYTES], int world, int rank,
		     double timeout_s, backend_comm **out, char *msg, size_t msg_len)
{
	const cuda_ctx *cx = be->ctx;
	*out = NULL;
	if (!cx || !cx->open) {
		snprintf(msg, msg_len, "no GPU backend is open");
		return -1;
	}
	if (load_nccl(msg, msg_len))
		return -1;
	ncclUniqueId uid;
	memcpy(uid.internal, id, BACKEND_COMM_ID_BYTES);
	backend_comm *c = calloc(1, sizeof *c);
	if (!c) {
		snprintf(msg, msg_len, "out of memory");
		return -1;
	}
	c->world = world;
	c->rank = rank;
	CUDA_CHECK(cudaSetDevice(cx->device));
	double t0 = now_mono();
#if HAVE_NCCL_CONFIG
	ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
	cfg.blocking = 0;
	ncclResult_t r = N.init_rank_config(&c->comm, world, uid, rank, &cfg);
	if (r != ncclSuccess && r != ncclInProgress) {
		snprintf(msg, msg_len, "ncclCommInitRankConfig: %s (%s)", N.error_string(r),
			 N.last_error(c->comm));
		if (c->comm)
			N.abort(c->comm);
		free(c);
		return -1;
	}
	int w = wait_idle(c->comm, t0, timeout_s, "ncclCommInitRankConfig", msg, msg_len);
	if (w) {
		free(c);
		return w;
	}
#else
	/* An NCCL older than 2.14 has no non-blocking init: this wait is bounded only by NCCL itself. */
	(void)timeout_s;
	ncclResult_t r = N.init_rank(&c->comm, world, uid, rank);
	if (r != ncclSuccess) {
		snprintf(msg, msg_len, "ncclCommInitRank: %s", N.error_string(r));
		free(c);
		return -1;
	}
#endif
	snprintf(msg, msg_len, "%s communicator of %d ranks in %.2f s", nccl_version(be), world, now_mono() - t0);
	*out = c;
	return 0;
}

/*
 * In-place sum of n floats of device memory on be's stream, after the work
 * queued there (the backward pass); waits for both, polling the stream and
 * ncclCommGetAsyncError. -2 past timeout_s, -1 on an NCCL error (the
 * communicator aborted either way), 0 when done.
 */
static int nccl_allreduce_sum_f(const backend *be, backend_comm *c, float *buf, size_t n, double timeout_s,
				char *msg, size_t msg_len)
{
	if (!c || n == 0)
		return 0;
	if (!c->comm) {
		snprintf(msg, msg_len, "the NCCL communicator was aborted");
		return -1;
	}
	const cuda_ctx *cx = be->ctx;
	const double t0 = now_mono();
	ncclResult_t r = N.all_reduce(buf, buf, n, ncclFloat, ncclSum, c->comm, cx->stream);
	if (r == ncclInProgress) {
		/* a non-blocking communicator may still be enqueueing */
		int w = wait_idle(c->comm, t0, timeout_s, "ncclAllReduce (enqueue)", msg, msg_len);
		if (w) {
			c->comm = NULL; /* aborted */
			return w;
		}
	} else if (r != ncclSuccess) {
		snprintf(msg, msg_len, "ncclAllReduce: %s (%s)", N.error_string(r), N.last_error(c->comm));
		N.abort(c->comm);
		c->comm = NULL;
		return -1;
	}
	/* the stream holds the backward pass, then the all-reduce: wait for both, bounded */
	for (;;) {
		cudaError_t q = cudaStreamQuery(cx->stream);
		if (q == cudaSuccess)
			return 0;
		if (q != cudaErrorNotReady)
			cuda_fail(__FILE__, __LINE__, "cudaStreamQuery (gradient all-reduce)", cudaGetErrorString(q));
		ncclResult_t st = ncclSuccess;
		ncclResult_t e = N.async_error(c->comm, &st);
		if (e != ncclSuccess)
			st = e;
		if (st != ncclSuccess && st != ncclInProgress) {
			snprintf(msg, msg_len, "NCCL reports %s during the all-reduce (%s)", N.error_string(st),
				 N.last_error(c->comm));
			N.abort(c->comm);
			c->comm = NULL;
			return -1;
		}
		double el = now_mono() - t0;
		if (el > timeout_s) {
			snprintf(msg, msg_len, "the NCCL all-reduce of %zu floats has not finished after %.0f s", n, el);
			N.abort(c->comm);
			c->comm = NULL;
			return -2;
		}
		/* spin for the first millisecond (the common case), then leave the core to others */
		if (el > 1e-3)
			pause_us(50);
	}
}

/* Finalise (bounded, 30 s) and destroy c's communicator, or only free c when it was aborted. */
static void nccl_destroy(const backend *be, backend_comm *c)
{
	const cuda_ctx *cx = be->ctx;
	if (!c)
		return;
	if (c->comm) {
		char msg[256];
		if (cx && cx->open)
			(void)cudaStreamSynchronize(cx->stream);
#if HAVE_NCCL_CONFIG
		ncclResult_t r = N.finalize(c->comm);
		if ((r == ncclSuccess || r == ncclInProgress) &&
		    wait_idle(c->comm, now_mono(), 30.0, "ncclCommFinalize", msg, sizeof msg) == 0)
			N.destroy(c->comm);
		else if (r != ncclSuccess && r != ncclInProgress)
			N.abort(c->comm);
		/* wait_idle aborted the communicator on error or timeout */
#else
		(void)msg;
		N.destroy(c->comm);
#endif
	}
	free(c);
}

const backend_comm_ops cuda_nccl_ops = {
	.name = "NCCL",
	.unique_id = nccl_unique_id,
	.init = nccl_init,
	.allreduce_sum_f = nccl_allreduce_sum_f,
	.destroy = nccl_destroy,
	.version = nccl_version,
};
