/*
 * layer.h - what one layer type is: a row of function pointers (its config
 * keys, shape inference, parameter views, workspace needs and passes) that
 * config.c and model.c walk without knowing any type by name. One file per
 * type in this folder fills one row; layers.c lists the rows. The recipe for
 * a new type: README.md here.
 */
#ifndef SPOTTRAIN_LAYER_H
#define SPOTTRAIN_LAYER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "model.h"
#include "ops.h"

_Static_assert(LAYER_MAX_IN == LAYER_CALL_MAX_IN, "a layer's inputs fit a layer_call");

/* At most this many parameter views (weight, bias, ...) per layer. */
#define LAYER_MAX_VIEWS 4

/* A type's parameters (spec->params) and derived state (layer->state) as its own struct. */
#define LAYER_PARAMS(T, spec) ((T *)(void *)(spec)->params.bytes)
#define LAYER_STATE(T, l) ((T *)(void *)(l)->state.bytes)

enum layer_flags {
	LT_LOSS = 1,       /* the loss: must be the last layer; its input width is the class count */
	LT_ALIAS = 2,      /* its output is its input's memory (flatten): no buffers, no pass */
	LT_ACTIVATION = 4, /* accepts "activation = relu|none"; relu adds a layer NAME.relu after it */
	LT_KERNELS = 8,    /* runs on be->layer_kernels(be, name): a backend without them refuses it */
	LT_NORM = 16,      /* a normalisation layer: train.wd_skip = bn leaves its views undecayed */
	LT_MULTI_IN = 32,  /* takes several inputs (ins/dins of layer_pass); others take one */
	LT_RELU_OUT = 64,  /* forward can write max(y, 0) itself (layer_pass.relu) and backward never
			    * reads its output: a relu layer that alone reads it is fused (model.c) */
	LT_RELU_GRAD = 128, /* LT_RELU_OUT whose backward also does the fused relu's: with
			     * layer_pass.relu, dout is the relu's output gradient, used where out > 0 */
	LT_RELU = 256,      /* max(x, 0) itself: an LT_RELU_OUT producer may do its passes */
};

/* What one forward or backward call of a layer gets. */
typedef struct layer_pass {
	const backend *be;
	const layer *l;
	const batch_info *b;
	const layer_kernels *k;      /* LT_KERNELS: this backend's kernels of the type */
	const float *in;             /* input [n, in_numel] */
	float *out;                  /* output [n, out_numel] (backward: what forward wrote) */
	const float *dout;           /* backward: d(output) */
	float *din;                  /* d(input); NULL for the first layer. Forward of a loss
				      * layer writes d(logits) here when training */
	const float *w[LAYER_MAX_VIEWS]; /* its parameter views */
	float *dw[LAYER_MAX_VIEWS];      /* backward: their gradients (added to) */
	int n_in;                    /* inputs: in = ins[0], din = dins[0] */
	const float *ins[LAYER_MAX_IN];
	float *dins[LAYER_MAX_IN];   /* d(inputs), overwritten (the model adds for shared ones);
				      * NULL: the network input, not needed */
	const float *buf[LAYER_MAX_VIEWS]; /* its buffer views (running statistics; NULL: none) */
	float *stat[LAYER_MAX_VIEWS];    /* training forward: where its statistics go, same layout
					  * as buf (NULL: not wanted) */
	void *saved;                 /* saved_bytes per sample, kept from forward to backward */
	float *scratch;              /* shared scratch, at least scratch_bytes */
	double *loss_sum;            /* loss layers: summed loss */
	int *correct;                /* loss layers: correct predictions */
	bool relu;                   /* LT_RELU_OUT: forward writes max(y, 0) (a fused relu layer);
				      * LT_RELU_GRAD backward: dout is the relu's, masked by out > 0 */
} layer_pass;

typedef struct layer_type {
	const char *name;            /* as written in "type = ..." */
	unsigned flags;              /* enum layer_flags */
	/* Parameters to their defaults (NULL: all zero). */
	void (*defaults)(layer_spec *s);
	/* One "key = value" of [layer.NAME]; false with a message naming the layer (NULL: no keys). */
	bool (*set)(layer_spec *s, const char *key, const char *value, char *err, size_t errlen);
	/* After parsing: are the required keys there? false with a message (NULL: nothing required). */
	bool (*check)(const layer_spec *s, char *err, size_t errlen);
	/* Its keys as "key = value\n" lines that set() parses back (NULL: none); snprintf's result. */
	int (*dump)(const layer_spec *s, char *buf, size_t len);
	/* Output shape, derived state and parameter views (model_add_view) from the input shape
	 * already in l; EXIT_USAGE with a message naming the layer (NULL: shape kept). */
	int (*shape)(model *m, layer *l);
	/* Forward flops per sample, 2 per multiply-add (NULL: 0). */
	double (*flops)(const layer *l);
	/* Initial values of its buffer views in buffers (NULL: zeros). */
	void (*init_buffers)(const model *m, const layer *l, float *buffers);
	/* Once per step: its buffers (buf[v], writable) from stat[v], the mean over the step's
	 * shards of what forward wrote to its statistics (NULL: buffers never change). */
	void (*update_buffers)(const layer *l, float *const *buf, const float *const *stat);
	/* Initial values of its views in params (NULL: zeros). */
	void (*init)(const model *m, const layer *l, uint32_t seed, float *params);
	/* Its attributes as text for the architecture hash (NULL: the text of a layer without any). */
	void (*hash_attrs)(const layer *l, char *buf, size_t len);
	/* Bytes per sample kept from forward to backward (NULL: none). */
	size_t (*saved_bytes)(const layer *l);
	/* Scratch bytes for n samples on be (NULL: none). */
	size_t (*scratch_bytes)(const layer *l, const backend *be, int n);
	/* Whether be has the fixed entries this type calls (NULL: yes; LT_KERNELS types are
	 * checked through be->layer_kernels instead). */
	bool (*runs_on)(const backend *be);
	void (*forward)(const layer_pass *p);
	/* NULL: nothing to do (the loss, whose forward wrote d(logits)). */
	void (*backward)(const layer_pass *p);
	/* LT_KERNELS: the CPU kernels (the CPU backend's answer for this type). */
	const layer_kernels *cpu;
} layer_type;

/* ---- the table (layers.c) ---- */

/* The type called name, NULL if none. */
const layer_type *layer_type_find(const char *name);

/* One key of [layer.NAME] (including "type" and "activation"); false with a message. */
bool layer_spec_set(layer_spec *s, const char *key, const char *value, char *err, size_t errlen);
/* Required keys present, the loss last and only last; false with a message naming the layer. */
bool layer_spec_check(const layer_spec *s, bool last, char *err, size_t errlen);
/* "type = ...\n" and its keys, parseable by layer_spec_set; snprintf's result. */
int layer_spec_dump(const layer_spec *s, char *buf, size_t len);

/* ---- helpers for the type files (layers.c) ---- */

/* Integer in [lo, hi]. */
bool layer_key_int(const layer_spec *s, const char *key, const char *value, int lo, int hi, int *out,
		   char *err, size_t errlen);
/* "N" (N x N) or "HxW", each in [1, 4096]. */
bool layer_key_pair(const layer_spec *s, const char *key, const char *value, int *h, int *w, char *err,
		    size_t errlen);
/* Finite number in [lo, hi] (hi excluded when hi_open). */
bool layer_key_float(const layer_spec *s, const char *key, const char *value, double lo, double hi,
		     bool hi_open, float *out, char *err, size_t errlen);
/* The message for a key this type does not take; always false. */
bool layer_key_unknown(const layer_spec *s, const char *key, char *err, size_t errlen);

/* ---- helpers for the type files (model.c) ---- */

/* A parameter view "NAME.what" of the layer, appended to the flat layout; -1 if too many. */
int model_add_view(model *m, layer *l, const char *what, int ndim, const int *dims);
/* The per-sample shape of input k of l (the network input or an earlier layer's output). */
void model_input_dims(const model *m, const layer *l, int k, int *c, int *h, int *w);
/* A buffer view "NAME.what" of the layer (non-trained state), appended to the buffer block; -1 if too many. */
int model_add_buffer(model *m, layer *l, const char *what, int ndim, const int *dims);
/* Glorot-uniform values for tensor t, drawn from Philox keyed by (seed, t). */
void model_init_glorot(const model *m, int t, uint32_t seed, double fan_in, double fan_out, float *params);

#endif
