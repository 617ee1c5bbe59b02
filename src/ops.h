/*
 * ops.h - the compute kernels of one backend behind a table of function
 * pointers (DESIGN.md: ops_cpu.c and cuda/ops.cu side by side). Ops know
 * nothing of MPI, files or configs: pointers and sizes only.
 *
 * Layout: activations are NCHW float32, one sample after the other; dense
 * activations are [n, features]. Weights follow PyTorch: conv [oc, ic, kh, kw],
 * dense [out, in]; biases [oc] / [out].
 *
 * Conventions for backward ops: weight and bias gradients are ADDED to dw/db
 * (the caller zeroes the gradient buffer once per step); input gradients are
 * overwritten; a NULL din means "not needed" (first layer) and is skipped.
 * Losses and their gradients are per-sample SUMS, not means: the trainer
 * divides by the global batch after the all-reduce (invariant 1).
 */
#ifndef SPOTTRAIN_OPS_H
#define SPOTTRAIN_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct optim_config;

typedef struct conv_desc {
	int in_c, in_h, in_w;    /* input per sample */
	int out_c, out_h, out_w; /* output per sample */
	int k_h, k_w;            /* kernel */
	int stride_h, stride_w;
	int pad_top, pad_left;   /* zero padding before the first row/column */
	int relu;                /* forward: the output is max(y, 0) (BACKEND_CAP_FUSED_RELU) */
} conv_desc;

typedef struct pool_desc {
	int c, in_h, in_w, out_h, out_w;
	int k_h, k_w, stride_h, stride_w;
} pool_desc;

typedef struct dropout_desc {
	float rate;          /* probability of dropping; kept values are scaled by 1/(1-rate) */
	uint32_t seed;       /* run seed */
	uint32_t layer;      /* layer index in the network */
	uint32_t epoch;      /* epoch of the step */
	size_t per_sample;   /* elements per sample */
} dropout_desc;

/* What a backend can do (backend.caps); callers ask these, never which backend it is. */
#define BACKEND_CAP_HOST_MEMORY (1u << 0) /* alloc() gives host memory: the host reads parameters and
					     states in place (no mirrors) and data sets are used in place */
#define BACKEND_CAP_EXACT_SUM (1u << 1)   /* gradients through the exact sharded fixed-point engine
					     (grad.h) and an int64 all-reduce; else one float pass */
#define BACKEND_CAP_FUSED_RELU (1u << 2)  /* conv2d_forward (conv_desc.relu) and the batchnorm and add
					     kernels (layer_call.relu) write max(y, 0) when asked, in the
					     pass that computes y: a relu layer after them runs no pass */

/*
 * One call of a layer kernel that the fixed entries of the backend table lack
 * (src/layers/README.md): a layer kind found by name through
 * backend.layer_kernels. Pointers are backend memory; sizes per sample.
 */
#define LAYER_CALL_MAX_IN 4

typedef struct layer_call {
	int n;                      /* samples */
	size_t in_numel, out_numel; /* floats per sample of the input and the output */
	float attr[4];              /* the layer's numeric attributes (its file says which) */
	const float *in;            /* forward input [n, in_numel] (backward: the same input) */
	const float *out;           /* backward: the forward output [n, out_numel] */
	float *y;                   /* forward: the output [n, out_numel] */
	const float *dout;          /* backward: d(output) */
	float *din;                 /* backward: d(input), overwritten; NULL: not needed */
	const float *const *w;      /* parameter tensors in view order (NULL: none) */
	float *const *dw;           /* their gradients, ADDED to */
	void *saved;                /* per-layer memory kept from forward to backward */
	void *scratch;              /* shared scratch memory */
	/* Kinds with several inputs (add, concat): in and din are ins[0] and dins[0]. */
	int n_in;
	const float *ins[LAYER_CALL_MAX_IN];  /* forward inputs [n, ins_numel[k]] */
	float *dins[LAYER_CALL_MAX_IN];       /* backward: their gradients, overwritten; NULL: not needed */
	size_t ins_numel[LAYER_CALL_MAX_IN];  /* floats per sample of each input */
	const float *const *buf;    /* the layer's buffer views in view order (NULL: none) */
	float *const *stat;         /* training forward: its statistics, same layout as buf (NULL: not wanted) */
	int training;               /* batch_info.training */
	const void *state;          /* the layer's derived descriptor (layer.state, e.g. a pool_desc) */
	int relu;                   /* forward: write max(y, 0); backward: dout is a relu's output gradient,
				     * taken where out > 0, else 0 (BACKEND_CAP_FUSED_RELU; kinds that say so) */
} layer_call;

struct backend;
typedef void (*layer_kernel_fn)(const struct backend *be, const layer_call *c);

/* The kernels of one layer kind on one backend. */
typedef struct layer_kernels {
	layer_kernel_fn forward;
	layer_kernel_fn backward;
} layer_kernels;

/*
 * A collective over backend memory that the backend brings with it (CUDA: NCCL),
 * for buffers that would otherwise be staged through host memory for MPI. Only
 * dist calls these (DESIGN.md: dist drives every collective; the MPI side, such
 * as broadcasting the id, stays there). Every wait inside is bounded by
 * timeout_s: past it the communicator is aborted and -2 is returned, so that
 * dist can abort the world. Returns are 0, -1 (an error of the library) or -2;
 * msg says what happened.
 */
#define BACKEND_COMM_ID_BYTES 128
typedef struct backend_comm backend_comm; /* one communicator, the backend's own type */
typedef struct backend_comm_ops {
	const char *name; /* "NCCL", for messages */
	/* A new unique id for a communicator (one rank makes it; dist broadcasts it). */
	int (*unique_id)(const struct backend *be, unsigned char id[BACKEND_COMM_ID_BYTES], char *msg,
			 size_t msg_len);
	/* Join the communicator of world ranks with id; 0 fills *out (and msg with a line for the log). */
	int (*init)(const struct backend *be, const unsigned char id[BACKEND_COMM_ID_BYTES], int world,
		    int rank, double timeout_s, backend_comm **out, char *msg, size_t msg_len);
	/* In-place sum of n floats of backend memory after the work already queued; returns when
	 * done. On -1 or -2 the communicator is aborted: only destroy() may follow. */
	int (*allreduce_sum_f)(const struct backend *be, backend_comm *c, float *buf, size_t n,
			       double timeout_s, char *msg, size_t msg_len);
	/* Tear a communicator down (NULL is fine; an aborted one is only freed). */
	void (*destroy)(const struct backend *be, backend_comm *c);
	/* The library and its version, for logs ("NCCL 2.28.9"). */
	const char *(*version)(const struct backend *be);
} backend_comm_ops;

typedef struct backend {
	const char *name;
	unsigned caps;           /* BACKEND_CAP_* */
	void *ctx;               /* the backend instance's own state (NULL for the CPU backend) */
	const backend_comm_ops *comm; /* its own collective over its memory, or NULL (CPU: MPI on host memory) */
	/* Lifecycle hooks; each takes the backend itself, so that it can reach ctx. */
	/* Wait until all queued work is done (before reading a clock or host memory). */
	void (*synchronize)(const struct backend *be);
	/* Threads the backend computes with on this rank (CPU: OpenMP threads; GPU: 1). */
	int (*threads)(const struct backend *be);
	/* The backend's reference rate in GFLOP/s, measured now with the backend's threads
	 * (CPU: the peak-FMA loop of the chosen kernels' ISA, src/kernels/; CUDA: cuBLAS 8192^3). */
	double (*peak_gflops)(const struct backend *be);
	/* Memory the ops work on (CPU: 64-byte aligned host memory; CUDA: device memory). */
	void *(*alloc)(size_t bytes);
	void (*release)(void *p);
	/* Copies between host memory and backend memory (CPU: memcpy). */
	void (*upload)(void *dst, const void *src, size_t bytes);
	void (*download)(void *dst, const void *src, size_t bytes);
	/* Bytes of scratch memory conv needs for n samples (im2col buffers etc.). */
	size_t (*conv2d_workspace)(const conv_desc *d, int n);
	void (*conv2d_forward)(const conv_desc *d, int n, const float *in, const float *w,
			       const float *b, float *out, float *ws);
	void (*conv2d_backward)(const conv_desc *d, int n, const float *in, const float *w,
				const float *dout, float *din, float *dw, float *db, float *ws);
	/* argmax holds, per output element, the index of the chosen input element within its channel plane. */
	void (*maxpool_forward)(const pool_desc *d, int n, const float *in, float *out, int32_t *argmax);
	void (*maxpool_backward)(const pool_desc *d, int n, const float *dout, const int32_t *argmax,
				 float *din);
	void (*relu_forward)(size_t count, const float *in, float *out);
	/* din = dout where out > 0, else 0. May run in place (din == dout). */
	void (*relu_backward)(size_t count, const float *out, const float *dout, float *din);
	/* samples[i] is the dataset index of sample i (keys the Philox mask).
	 * mask receives the per-element scale (0 or 1/(1-rate)) for the backward pass. */
	void (*dropout_forward)(const dropout_desc *d, int n, const uint32_t *samples, const float *in,
				float *out, float *mask);
	void (*dropout_backward)(size_t count, const float *mask, const float *dout, float *din);
	/* out[n, o] = in[n, i] . w[o, i] + b[o] */
	void (*dense_forward)(int n, int in_f, int out_f, const float *in, const float *w, const float *b,
			      float *out);
	void (*dense_backward)(int n, int in_f, int out_f, const float *in, const float *w,
			       const float *dout, float *din, float *dw, float *db);
	/* Softmax + cross-entropy on logits [n, classes]. Writes dlogits = softmax - onehot
	 * (NULL: skip), returns the summed loss in *loss_sum and the number of correct argmax
	 * predictions in *correct. Labels are validated by the caller (< classes). */
	void (*softmax_xent)(int n, int classes, const float *logits, const uint8_t *labels,
			     float *dlogits, double *loss_sum, int *correct);
	/* out[i, :] = images[idx[i], :] * scale for i < n, pixels per image; images is backend
	 * memory (the dataset uploaded once), idx is host memory. */
	void (*gather_images)(const uint8_t *images, const uint32_t *idx, int n, size_t pixels, float scale,
			      float *out);
	/* One optimizer step over the flat buffers (optim.h semantics; CPU: optim_step). */
	void (*optim_step)(const struct optim_config *c, float lr, long t, size_t n, float *params,
			   const float *grads, float *const *states);
	/* The kernels of a layer kind outside the fixed entries above, by the kind's name
	 * ("leaky_relu"); NULL when this backend cannot run that kind. */
	const layer_kernels *(*layer_kernels)(const struct backend *be, const char *kind);
	/* x[i] *= a */
	void (*scale)(size_t count, float a, float *x);
	void (*zero)(size_t count, float *x);
} backend;

/* The CPU reference backend. threads <= 0 means all cores available to the process. */
const backend *backend_cpu(void);
void backend_cpu_set_threads(int threads);
int backend_cpu_threads(void);
/* Whether the CPU backend computes this conv's input gradient as a correlation of dy with the
 * flipped kernel (ops_cpu.c conv_dx_by_correlation), which fixes its chains' order: tests. */
bool cpu_conv2d_dx_by_correlation(const conv_desc *d);
/* The CPU kernels of the layer kinds outside the fixed entries: the layer files define them
 * and the layer table (src/layers/layers.c) finds them; NULL for an unknown kind. */
const layer_kernels *layer_cpu_kernels(const backend *be, const char *kind);

#endif
