/*
 * conv2d.c - 2-D convolution: [layer.NAME] type = conv2d, filters = N,
 * kernel = K or KHxKW, stride = S or SHxSW (default 1), padding = valid|same|N|
 * PHxPW (N: N zeros on every side, as PyTorch's padding = N; default valid),
 * bias = true|false (default true), activation = relu|none. Views NAME.weight
 * [filters, in_c, kh, kw] and NAME.bias [filters] unless bias = false
 * (PyTorch's Conv2d). Kernels: the backend's conv2d_* (a NULL bias skips it).
 */
#include "layer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"
#include "log.h"

typedef struct conv2d_params {
	int filters;
	int kernel_h, kernel_w;
	int stride_h, stride_w; /* 0: 1 */
	bool same;              /* padding = same (else valid, or explicit) */
	bool pad_explicit;      /* padding = N or PHxPW: pad_h, pad_w zeros on each side */
	int pad_h, pad_w;
	bool no_bias;           /* bias = false */
} conv2d_params;

_Static_assert(sizeof(conv2d_params) <= LAYER_PARAMS_BYTES, "conv2d_params too large");
_Static_assert(sizeof(conv_desc) <= LAYER_STATE_BYTES, "conv_desc too large");

/* "valid", "same", "N" or "PHxPW" (zeros on each side, in [0, 1024]). */
static bool conv2d_set_padding(layer_spec *s, conv2d_params *p, const char *value, char *err, size_t errlen)
{
	p->same = strcmp(value, "same") == 0;
	p->pad_explicit = false;
	p->pad_h = p->pad_w = 0;
	if (p->same || strcmp(value, "valid") == 0)
		return true;
	char *end, *end2 = NULL;
	long h = strtol(value, &end, 10), w = h;
	if (end != value && (*end == 'x' || *end == 'X'))
		w = strtol(end + 1, &end2, 10);
	bool ok = end != value && h >= 0 && h <= 1024 && w >= 0 && w <= 1024 &&
		  (*end == 0 || (end2 && end2 != end + 1 && *end2 == 0));
	if (!ok || value[0] == '-' || value[0] == '+' || value[0] == ' ') {
		snprintf(err, errlen, "[layer.%s] padding must be valid, same, N or HxW (each in [0, 1024]), not '%s'",
			 s->name, value);
		return false;
	}
	p->pad_explicit = h > 0 || w > 0;
	p->pad_h = (int)h;
	p->pad_w = (int)w;
	return true;
}

static bool conv2d_set(layer_spec *s, const char *key, const char *value, char *err, size_t errlen)
{
	conv2d_params *p = LAYER_PARAMS(conv2d_params, s);
	if (strcmp(key, "filters") == 0)
		return layer_key_int(s, key, value, 1, 1 << 20, &p->filters, err, errlen);
	if (strcmp(key, "kernel") == 0)
		return layer_key_pair(s, key, value, &p->kernel_h, &p->kernel_w, err, errlen);
	if (strcmp(key, "stride") == 0)
		return layer_key_pair(s, key, value, &p->stride_h, &p->stride_w, err, errlen);
	if (strcmp(key, "padding") == 0)
		return conv2d_set_padding(s, p, value, err, errlen);
	if (strcmp(key, "bias") == 0) {
		if (strcmp(value, "true") != 0 && strcmp(value, "false") != 0) {
			snprintf(err, errlen, "[layer.%s] bias must be true or false, not '%s'", s->name, value);
			return false;
		}
		p->no_bias = value[0] == 'f';
		return true;
	}
	return layer_key_unknown(s, key, err, errlen);
}

static bool conv2d_check(const layer_spec *s, char *err, size_t errlen)
{
	const conv2d_params *p = LAYER_PARAMS(const conv2d_params, s);
	if (p->filters < 1 || p->kernel_h < 1) {
		snprintf(err, errlen, "[layer.%s] conv2d needs filters and kernel", s->name);
		return false;
	}
	return true;
}

static int conv2d_dump(const layer_spec *s, char *buf, size_t len)
{
	const conv2d_params *p = LAYER_PARAMS(const conv2d_params, s);
	char pad[32];
	if (p->pad_explicit)
		snprintf(pad, sizeof pad, "%dx%d", p->pad_h, p->pad_w);
	else
		snprintf(pad, sizeof pad, "%s", p->same ? "same" : "valid");
	/* bias only when off: the dump of configs without the key stays as it was */
	return snprintf(buf, len, "filters = %d\nkernel = %dx%d\nstride = %dx%d\npadding = %s\n%s", p->filters,
			p->kernel_h, p->kernel_w, p->stride_h ? p->stride_h : 1, p->stride_w ? p->stride_w : 1, pad,
			p->no_bias ? "bias = false\n" : "");
}

/* Output size and padding: "same" pads (split low side first) so that out = ceil(in / stride). */
static int conv2d_shape(model *m, layer *l)
{
	const conv2d_params *p = LAYER_PARAMS(const conv2d_params, &l->spec);
	int sh = p->stride_h ? p->stride_h : 1, sw = p->stride_w ? p->stride_w : 1;
	int oh, ow, pt = 0, pl = 0;
	if (l->in_h * l->in_w == 1 && l->in_c > 1 && l->index > 0) {
		log_error("[layer.%s] conv2d after a flatten/dense layer: its input has no spatial shape",
			  l->spec.name);
		return EXIT_USAGE;
	}
	if (p->same) {
		oh = (l->in_h + sh - 1) / sh;
		ow = (l->in_w + sw - 1) / sw;
		int ph = (oh - 1) * sh + p->kernel_h - l->in_h, pw = (ow - 1) * sw + p->kernel_w - l->in_w;
		pt = ph > 0 ? ph / 2 : 0;
		pl = pw > 0 ? pw / 2 : 0;
	} else {
		/* PyTorch's rule: out = floor((in + 2 pad - k) / stride) + 1 (rows left over are unused) */
		int ph = p->pad_explicit ? p->pad_h : 0, pw = p->pad_explicit ? p->pad_w : 0;
		if (p->kernel_h > l->in_h + 2 * ph || p->kernel_w > l->in_w + 2 * pw) {
			log_error("[layer.%s] kernel %dx%d is larger than its %dx%d input padded by %dx%d",
				  l->spec.name, p->kernel_h, p->kernel_w, l->in_h, l->in_w, ph, pw);
			return EXIT_USAGE;
		}
		if (ph >= p->kernel_h || pw >= p->kernel_w) {
			log_error("[layer.%s] padding %dx%d must be smaller than the kernel %dx%d", l->spec.name, ph, pw,
				  p->kernel_h, p->kernel_w);
			return EXIT_USAGE;
		}
		oh = (l->in_h + 2 * ph - p->kernel_h) / sh + 1;
		ow = (l->in_w + 2 * pw - p->kernel_w) / sw + 1;
		pt = ph;
		pl = pw;
	}
	l->out_c = p->filters;
	l->out_h = oh;
	l->out_w = ow;
	*LAYER_STATE(conv_desc, l) = (conv_desc){l->in_c, l->in_h, l->in_w, l->out_c, oh, ow, p->kernel_h,
						 p->kernel_w, sh, sw, pt, pl, 0};
	int wd[4] = {p->filters, l->in_c, p->kernel_h, p->kernel_w}, bd[1] = {p->filters};
	if (model_add_view(m, l, "weight", 4, wd) < 0 || (!p->no_bias && model_add_view(m, l, "bias", 1, bd) < 0)) {
		log_error("too many parameter tensors");
		return EXIT_USAGE;
	}
	return 0;
}

static double conv2d_flops(const layer *l)
{
	const conv_desc *d = LAYER_STATE(const conv_desc, l);
	return 2.0 * ((double)d->out_h * d->out_w * d->out_c * d->in_c * d->k_h * d->k_w);
}

static void conv2d_init(const model *m, const layer *l, uint32_t seed, float *params)
{
	const conv_desc *d = LAYER_STATE(const conv_desc, l);
	model_init_glorot(m, l->first_view, seed, (double)d->in_c * d->k_h * d->k_w,
			  (double)d->out_c * d->k_h * d->k_w, params);
}

static void conv2d_hash_attrs(const layer *l, char *buf, size_t len)
{
	const conv_desc *d = LAYER_STATE(const conv_desc, l);
	snprintf(buf, len, "k%dx%d s%dx%d p%d,%d p0x0 r0", d->k_h, d->k_w, d->stride_h, d->stride_w, d->pad_top,
		 d->pad_left);
}

static size_t conv2d_scratch(const layer *l, const backend *be, int n)
{
	return be->conv2d_workspace(LAYER_STATE(const conv_desc, l), n);
}

static bool conv2d_runs_on(const backend *be)
{
	return be->conv2d_workspace && be->conv2d_forward && be->conv2d_backward;
}

static void conv2d_forward(const layer_pass *p)
{
	conv_desc d = *LAYER_STATE(const conv_desc, p->l);
	d.relu = p->relu;
	p->be->conv2d_forward(&d, p->b->n, p->in, p->w[0], p->w[1], p->out, p->scratch);
}

static void conv2d_backward(const layer_pass *p)
{
	p->be->conv2d_backward(LAYER_STATE(const conv_desc, p->l), p->b->n, p->in, p->w[0], p->dout, p->din,
			       p->dw[0], p->dw[1], p->scratch);
}

const layer_type layer_conv2d = {
	.name = "conv2d",
	.flags = LT_ACTIVATION | LT_RELU_OUT,
	.set = conv2d_set,
	.check = conv2d_check,
	.dump = conv2d_dump,
	.shape = conv2d_shape,
	.flops = conv2d_flops,
	.init = conv2d_init,
	.hash_attrs = conv2d_hash_attrs,
	.scratch_bytes = conv2d_scratch,
	.runs_on = conv2d_runs_on,
	.forward = conv2d_forward,
	.backward = conv2d_backward,
};
