/*
 * model.h - a network: a list of layers with shapes inferred from the
 * previous layer, and a table of named tensor views into ONE flat parameter
 * buffer (DESIGN.md invariant 2). Gradients and every optimizer moment use the
 * same layout, so zeroing, all-reduce and checkpoints each touch one block.
 */
#ifndef SPOTTRAIN_MODEL_H
#define SPOTTRAIN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "ops.h"

#define MODEL_MAX_TENSORS (2 * CONFIG_MAX_LAYERS)
/* Buffers: non-trained state (BatchNorm's running statistics), named like tensors. */
#define MODEL_MAX_BUFFERS MODEL_MAX_TENSORS /* the checkpoint walk holds as many of either */

typedef struct tensor_view {
	char name[64];   /* e.g. "conv1.weight", "fc1.bias" (PyTorch state_dict style) */
	int ndim;
	int dims[4];     /* conv weight [oc, ic, kh, kw]; dense weight [out, in]; bias [n] */
	size_t offset;   /* in floats, into the flat buffer */
	size_t numel;
} tensor_view;

/* Room for what one layer type derives from its input shape (e.g. conv2d's conv_desc). */
#define LAYER_STATE_BYTES 64

typedef struct layer {
	layer_spec spec;         /* spec.type: its row in the layer table (src/layers/) */
	int index;               /* position in the network */
	int n_in;                /* its inputs (1 unless "inputs = a, b" names more) */
	int in_idx[LAYER_MAX_IN]; /* their layer indices, all smaller than index; -1 = the network input */
	int in_c, in_h, in_w;    /* per-sample shape of its first input (dense: in_c = features, h = w = 1) */
	int out_c, out_h, out_w; /* per-sample output shape */
	size_t in_numel, out_numel;
	int first_view, n_views; /* its parameter views: model.tensors[first_view .. + n_views) */
	int first_buf, n_bufs;   /* its buffer views: model.buffers[first_buf .. + n_bufs) */
	union {
		double align;
		unsigned char bytes[LAYER_STATE_BYTES];
	} state;                 /* the type's derived descriptors, as its file lays them out */
} layer;

typedef struct model {
	int n_layers;
	layer layers[CONFIG_MAX_LAYERS];
	int n_tensors;
	tensor_view tensors[MODEL_MAX_TENSORS];
	size_t n_params;         /* floats in the flat parameter buffer */
	int n_buffer_views;
	tensor_view buffers[MODEL_MAX_BUFFERS]; /* views into the flat buffer block (offsets in it) */
	size_t n_buffers;        /* floats in the flat buffer block (0: the network has no buffers) */
	int in_c, in_h, in_w;
	int classes;
	uint64_t hash;           /* of the architecture: layer types, shapes, attributes, tensor names and dims */
	double flops_per_sample;       /* forward pass, 2 per multiply-add */
	double train_flops_per_sample; /* forward + backward (weight and input gradients) */
} model;

/*
 * Infer shapes and lay out tensors for the config's layers, in file order (a
 * layer's inputs come before it: the order is topological). Impossible shapes
 * (kernel larger than input, zero-size outputs, no loss layer at the end,
 * dense after conv without flatten, inputs of an add that differ, an output
 * nobody reads ...) return EXIT_USAGE with a message naming the layer.
 */
int model_build(const config *c, model *m);

/* Deterministic initialisation from the seed (Glorot uniform weights, zero biases, as Keras). */
void model_init_params(const model *m, uint32_t seed, float *params);

/*
 * Initial values of the buffer block (n_buffers floats): each type's own
 * (BatchNorm: running_var 1, the rest 0). Nothing to do when n_buffers is 0.
 */
void model_init_buffers(const model *m, float *buffers);

/*
 * The once-per-step update of the buffers from stats, the mean over the
 * step's shards of what each shard's training pass wrote into its statistics
 * block (same layout as the buffers). Every rank calls it with the same bits.
 */
void model_update_buffers(const model *m, float *buffers, const float *stats);

/* Find a tensor by name, -1 if absent. */
int model_find_tensor(const model *m, const char *name);

/* A one-line description per layer (for --help and logs) into buf. */
void model_describe(const model *m, char *buf, size_t len);

/*
 * Per-rank activation and scratch memory for up to max_n samples, and the
 * forward/backward passes through a backend.
 */
typedef struct net_workspace {
	int max_n;
	float *input;            /* max_n * in_c*in_h*in_w */
	float **act;             /* per layer output, max_n * out_numel */
	float **grad;            /* per layer d(output), same sizes */
	void **saved;            /* per layer: memory kept from forward to backward (maxpool argmax, dropout mask) */
	const layer_kernels **kernels; /* per layer: the backend's kernels for kinds found by name */
	float *scratch;          /* shared scratch (the largest any layer asks for) */
	size_t scratch_bytes;
	float *dlogits;
	/* NULL, or per-layer seconds that each net_forward / net_backward adds to (bench's per-layer
	 * figures; the backend is synchronised around each timed layer). Owned by whoever sets them. */
	double *layer_fwd_s, *layer_bwd_s;
	/* Gradients of outputs that several layers read (DESIGN.md, "graphs"): in backward (reverse
	 * file order) the first reader overwrites the output's gradient, each later one writes into
	 * tmp[din_tmp[...]] and the backend's "add" kernels add that in, so the sum runs in one
	 * fixed order. din_tmp[i * LAYER_MAX_IN + k]: -2 no gradient (the network input), -1 the
	 * output's own gradient, t >= 0 tmp[t]. */
	signed char *din_tmp;
	float *tmp[LAYER_MAX_IN];
	const layer_kernels *acc;  /* the "add" kernels when tmp is used */
	/* Fused relu layers (BACKEND_CAP_FUSED_RELU): relu_by[i] = j and relu_of[j] = i when relu
	 * layer i's forward is done by layer j (LT_RELU_OUT, whose output only i reads): act[i] is
	 * act[j] and layer j writes max(y, 0) there. Its backward is j's too when j's type is
	 * LT_RELU_GRAD (j takes grad[i] and masks it by its output), else layer i's runs. -1: not
	 * fused. NULL: none fused. */
	int *relu_by, *relu_of;
} net_workspace;

/*
 * Allocate the workspace on backend be. Refuses (EXIT_USAGE, naming the layer)
 * a network with a layer kind be cannot run (or, for a graph whose outputs are read by several
 * layers, without "add" kernels); EXIT_OSERR when memory runs out.
 */
int net_workspace_alloc(const model *m, const backend *be, int max_n, net_workspace *ws);
void net_workspace_free(const model *m, const backend *be, net_workspace *ws);

/* Everything a pass needs to know about its samples. */
typedef struct batch_info {
	int n;                   /* samples in this rank's part (may be 0) */
	const uint32_t *samples; /* dataset indices, keys dropout masks */
	const uint8_t *labels;   /* n labels */
	uint32_t seed, epoch;
	int training;            /* dropout active; BatchNorm uses batch statistics */
	const float *buffers;    /* the buffer block (n_buffers floats; NULL if none): BatchNorm's
				  * running statistics, read by passes with training = 0 */
	float *stats;            /* training: this pass's statistics (n_buffers floats, same layout
				  * as buffers), written by forward; NULL: not wanted */
} batch_info;

/* Forward pass over ws->input; returns summed loss and correct count. */
void net_forward(const model *m, const backend *be, const float *params, net_workspace *ws,
		 const batch_info *b, double *loss_sum, int *correct);
/* Backward pass after net_forward (training); adds per-sample-summed gradients into grads. */
void net_backward(const model *m, const backend *be, const float *params, float *grads,
		  net_workspace *ws, const batch_info *b);

#endif
