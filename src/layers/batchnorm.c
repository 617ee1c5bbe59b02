/*
 * batchnorm.c - PyTorch's BatchNorm2d: [layer.NAME] type = batchnorm (alias
 * batchnorm2d), momentum = M (default 0.1, PyTorch's meaning: running =
 * (1 - M) * running + M * batch), eps = E (default 1e-5), affine = true|false
 * (default true). Views NAME.weight [C] (init 1) and NAME.bias [C] (init 0)
 * when affine; buffers NAME.running_mean [C] (0), NAME.running_var [C] (1),
 * NAME.num_batches_tracked [1] (0), as in a PyTorch state_dict.
 *
 * Training normalises with the statistics of the pass's own samples: in the
 * exact engine that is one gradient shard (grad.h), so a shard's forward and
 * backward do not depend on the rank that computes it ("ghost batch norm",
 * the shard as the ghost batch). The pass writes its batch mean and unbiased
 * variance into its statistics block; the step engine sums the shards'
 * statistics exactly (fixed point in the gradient all-reduce) and calls
 * update_buffers once per step with their mean over the shards, so every
 * rank holds the same running statistics. Evaluation (training = 0) uses the
 * running statistics.
 *
 * Kernels come through be->layer_kernels(be, "batchnorm") (LT_KERNELS): the
 * CPU ones below; a backend without them (the GPU today) refuses the network
 * at start, naming the layer. Kernel contract (layer_call): attr[0] = eps,
 * attr[1] = 1 if affine, attr[2] = channels C (in_numel / C values per plane);
 * w = {weight, bias} when affine; buf = {running_mean, running_var, ...};
 * saved holds 2*C floats (the mean and 1/sqrt(var + eps) used by forward);
 * stat = {mean, unbiased variance, count slot} (training forward, may be NULL).
 * Per channel, sums run in double over the samples and the plane in a fixed
 * order; channels may run on different threads (results do not depend on it).
 */
#include "layer.h"

#include "kernels/kernels.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "contract.h"
#include "log.h"

/* Loops over fewer values than this run on one thread. */
#define PAR_MIN_ELEMS ((size_t)1 << 15)

typedef struct batchnorm_params {
	float momentum;
	float eps;
	bool affine;
} batchnorm_params;

_Static_assert(sizeof(batchnorm_params) <= LAYER_PARAMS_BYTES, "batchnorm_params too large");

static void bn_defaults(layer_spec *s)
{
	batchnorm_params *p = LAYER_PARAMS(batchnorm_params, s);
	p->momentum = 0.1f;
	p->eps = 1e-5f;
	p->affine = true;
}

static bool bn_set(layer_spec *s, const char *key, const char *value, char *err, size_t errlen)
{
	batchnorm_params *p = LAYER_PARAMS(batchnorm_params, s);
	if (strcmp(key, "momentum") == 0)
		return layer_key_float(s, key, value, 0.0, 1.0, false, &p->momentum, err, errlen);
	if (strcmp(key, "eps") == 0) {
		if (!layer_key_float(s, key, value, 0.0, 1.0, false, &p->eps, err, errlen))
			return false;
		if (p->eps <= 0.0f) {
			snprintf(err, errlen, "[layer.%s] eps must be positive, not '%s'", s->name, value);
			return false;
		}
		return true;
	}
	if (strcmp(key, "affine") == 0) {
		if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0)
			p->affine = true;
		else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0)
			p->affine = false;
		else {
			snprintf(err, errlen, "[layer.%s] affine must be true or false, not '%s'", s->name, value);
			return false;
		}
		return true;
	}
	return layer_key_unknown(s, key, err, errlen);
}

static int bn_dump(const layer_spec *s, char *buf, size_t len)
{
	const batchnorm_params *p = LAYER_PARAMS(const batchnorm_params, s);
	return snprintf(buf, len, "momentum = %.9g\neps = %.9g\naffine = %s\n", (double)p->momentum,
			(double)p->eps, p->affine ? "true" : "false");
}

static void bn_hash_attrs(const layer *l, char *buf, size_t len)
{
	const batchnorm_params *p = LAYER_PARAMS(const batchnorm_params, &l->spec);
	snprintf(buf, len, "momentum %.9g eps %.9g affine %d", (double)p->momentum, (double)p->eps,
		 p->affine ? 1 : 0);
}

/* Views weight, bias (affine) and buffers running_mean, running_var, num_batches_tracked. */
static int bn_shape(model *m, layer *l)
{
	const batchnorm_params *p = LAYER_PARAMS(const batchnorm_params, &l->spec);
	int c[1] = {l->in_c}, one[1] = {1};
	if (p->affine && (model_add_view(m, l, "weight", 1, c) < 0 || model_add_view(m, l, "bias", 1, c) < 0)) {
		log_error("[layer.%s] too many parameter tensors", l->spec.name);
		return EXIT_USAGE;
	}
	if (model_add_buffer(m, l, "running_mean", 1, c) < 0 || model_add_buffer(m, l, "running_var", 1, c) < 0 ||
	    model_add_buffer(m, l, "num_batches_tracked", 1, one) < 0) {
		log_error("[layer.%s] too many buffers (at most %d)", l->spec.name, MODEL_MAX_BUFFERS);
		return EXIT_USAGE;
	}
	return 0;
}

static double bn_flops(const layer *l)
{
	return 2.0 * (double)l->in_numel;
}

static void bn_init(const model *m, const layer *l, uint32_t seed, float *params)
{
	(void)seed;
	if (l->n_views < 1)
		return;
	const tensor_view *w = &m->tensors[l->first_view];
	for (size_t i = 0; i < w->numel; i++)
		params[w->offset + i] = 1.0f;
}

static void bn_init_buffers(const model *m, const layer *l, float *buffers)
{
	const tensor_view *var = &m->buffers[l->first_buf + 1];
	for (size_t i = 0; i < var->numel; i++)
		buffers[var->offset + i] = 1.0f;
}

/* running = (1 - momentum) * running + momentum * (mean of the shards' statistic), as PyTorch. */
static void bn_update_buffers(const layer *l, float *const *buf, const float *const *stat)
{
	const float mom = LAYER_PARAMS(const batchnorm_params, &l->spec)->momentum;
	for (int c = 0; c < l->in_c; c++) {
		buf[0][c] = (1.0f - mom) * buf[0][c] + mom * stat[0][c];
		buf[1][c] = (1.0f - mom) * buf[1][c] + mom * stat[1][c];
	}
	buf[2][0] += 1.0f;
}

static size_t bn_saved(const layer *l)
{
	return 2 * (size_t)l->in_c * sizeof(float);
}

static layer_call bn_call(const layer_pass *p)
{
	const batchnorm_params *bp = LAYER_PARAMS(const batchnorm_params, &p->l->spec);
	layer_call c = {
		.n = p->b->n,
		.in_numel = p->l->in_numel,
		.out_numel = p->l->out_numel,
		.attr = {bp->eps, bp->affine ? 1.0f : 0.0f, (float)p->l->in_c},
		.in = p->in,
		.out = p->out,
		.y = p->out,
		.dout = p->dout,
		.din = p->din,
		.w = p->w,
		.dw = p->dw,
		.saved = p->saved,
		.scratch = p->scratch,
		.buf = p->buf,
		.stat = p->stat,
		.training = p->b->training,
		.relu = p->relu,
	};
	return c;
}

static void bn_forward(const layer_pass *p)
{
	layer_call c = bn_call(p);
	p->k->forward(p->be, &c);
}

static void bn_backward(const layer_pass *p)
{
	layer_call c = bn_call(p);
	p->k->backward(p->be, &c);
}

/* ---- CPU kernels ---- */

/*
 * The statistics' sums over a channel run in BN_LANES double accumulators, element j of a
 * plane into lane j % BN_LANES, each lane in order over the samples and the plane, then the
 * lanes added 0, 1, ..., BN_LANES - 1: one order written in the code (no -ffast-math, so no
 * compiler may change it), the same on every ISA, and independent chains that vectorise
 * instead of one chain with an add's latency per element.
 */
#define BN_LANES 8

/* The per-channel loops, once per instruction set (batchnorm_cpu.h): the same float and
 * double operations in the same order in every copy, so every ISA gives the same bits. */
typedef struct bn_loops {
	double (*sum)(const float *in, int n, size_t stride, size_t hw, double shift, int sq);
	void (*apply)(const float *in, float *y, int n, size_t stride, size_t hw, float mu, float is, float g,
		      float b, int relu);
	void (*grad_sums)(const float *in, const float *dy, int relu, float g, float b, int n, size_t stride,
			  size_t hw, float mu, float is, double *sdy, double *sdyx);
	void (*grad_apply)(const float *in, const float *dy, int relu, float g, float b, float *dx, int n,
			   size_t stride, size_t hw, float mu, float is, float k, float mdy, float mdyx, int training);
} bn_loops;

/* The template's helpers take and return vectors wider than the baseline's registers; they
 * are static and inlined, so the ABI GCC warns about is never used across a call. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
#define BN_FN(name) name##_base
#define BN_TARGET
#define BN_VW 2
#include "batchnorm_cpu.h"
static const bn_loops bn_loops_base = {bn_sum_base, bn_apply_base, bn_grad_sums_base, bn_grad_apply_base};
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BN_FN(name) name##_avx2
#define BN_TARGET __attribute__((target("avx2")))
#define BN_VW 4
#include "batchnorm_cpu.h"
#define BN_FN(name) name##_avx512
#define BN_TARGET __attribute__((target("avx512f")))
#define BN_VW 8
#include "batchnorm_cpu.h"
static const bn_loops bn_loops_avx2 = {bn_sum_avx2, bn_apply_avx2, bn_grad_sums_avx2, bn_grad_apply_avx2};
static const bn_loops bn_loops_avx512 = {bn_sum_avx512, bn_apply_avx512, bn_grad_sums_avx512, bn_grad_apply_avx512};
#endif

/* The loops of the kernels' ISA (kern_current: forced ISAs force these too). */
static const bn_loops *bn_loops_now(void)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
	switch (kern_current()) {
	case KERN_ISA_AVX512:
		return &bn_loops_avx512;
	case KERN_ISA_AVX2:
		return &bn_loops_avx2;
	default:
		break;
	}
#endif
	return &bn_loops_base;
}

/* Channel ch's mean and 1/sqrt(var + eps): the batch's (training, statistics written) or the
 * running ones (evaluation; without buffers the initial 0 and 1). */
static void cpu_bn_stats(const bn_loops *L, const layer_call *c, int ch, int C, size_t hw, float *mean_out,
			 float *invstd_out)
{
	const double eps = c->attr[0];
	if (!c->training) {
		double mu = c->buf && c->buf[0] ? c->buf[0][ch] : 0.0, var = c->buf && c->buf[1] ? c->buf[1][ch] : 1.0;
		*mean_out = (float)mu;
		*invstd_out = (float)(1.0 / sqrt(var + eps));
		return;
	}
	const double count = (double)c->n * (double)hw;
	const float *x0 = c->in + (size_t)ch * hw;
	const size_t stride = (size_t)C * hw;
	const double mu = L->sum(x0, c->n, stride, hw, 0.0, 0) / count;
	const double v = L->sum(x0, c->n, stride, hw, mu, 1); /* two passes: no cancellation */
	const double var = v / count;
	*mean_out = (float)mu;
	*invstd_out = (float)(1.0 / sqrt(var + eps));
	if (c->stat && c->stat[0]) {
		c->stat[0][ch] = (float)mu;
		c->stat[1][ch] = (float)(count > 1 ? v / (count - 1) : var);
		if (ch == 0)
			c->stat[2][0] = 1.0f;
	}
}

static void cpu_bn_forward(const backend *be, const layer_call *c)
{
	(void)be;
	if (c->n <= 0)
		return;
	const int C = (int)c->attr[2];
	const size_t hw = c->in_numel / (size_t)C;
	const bool affine = c->attr[1] != 0.0f;
	float *saved = c->saved;
	const size_t total = (size_t)c->n * c->in_numel, stride = (size_t)C * hw;
	const bn_loops *L = bn_loops_now();
#pragma omp parallel for schedule(static) num_threads(backend_cpu_threads()) if (total >= PAR_MIN_ELEMS)
	for (int ch = 0; ch < C; ch++) {
		float mu, is;
		cpu_bn_stats(L, c, ch, C, hw, &mu, &is);
		saved[ch] = mu;
		saved[C + ch] = is;
		const float g = affine ? c->w[0][ch] : 1.0f, b = affine ? c->w[1][ch] : 0.0f;
		L->apply(c->in + (size_t)ch * hw, c->y + (size_t)ch * hw, c->n, stride, hw, mu, is, g, b, c->relu);
	}
}

/* Training: the batch statistics depend on every input of the channel; evaluation: they are constants. */
static void cpu_bn_backward(const backend *be, const layer_call *c)
{
	(void)be;
	if (c->n <= 0)
		return;
	const int C = (int)c->attr[2];
	const size_t hw = c->in_numel / (size_t)C;
	const bool affine = c->attr[1] != 0.0f;
	const float *saved = c->saved;
	const size_t total = (size_t)c->n * c->in_numel;
	const double count = (double)c->n * (double)hw;
	const size_t stride = (size_t)C * hw;
	const bn_loops *L = bn_loops_now();
#pragma omp parallel for schedule(static) num_threads(backend_cpu_threads()) if (total >= PAR_MIN_ELEMS)
	for (int ch = 0; ch < C; ch++) {
		const float mu = saved[ch], is = saved[C + ch];
		const float *x = c->in + (size_t)ch * hw, *dy = c->dout + (size_t)ch * hw;
		/* a fused relu's mask: from x, g and b as the forward computed its output (batchnorm_cpu.h) */
		const float g = affine ? c->w[0][ch] : 1.0f, b = affine ? c->w[1][ch] : 0.0f;
		double sdy, sdyx;
		L->grad_sums(x, dy, c->relu, g, b, c->n, stride, hw, mu, is, &sdy, &sdyx);
		if (affine) {
			c->dw[0][ch] += (float)sdyx;
			c->dw[1][ch] += (float)sdy;
		}
		if (!c->din)
			continue;
		const float k = g * is, mdy = (float)(sdy / count), mdyx = (float)(sdyx / count);
		L->grad_apply(x, dy, c->relu, g, b, c->din + (size_t)ch * hw, c->n, stride, hw, mu, is, k, mdy, mdyx,
			      c->training);
	}
}

static const layer_kernels cpu_kernels = {cpu_bn_forward, cpu_bn_backward};

#define BATCHNORM_ROW(NAME)                          \
	{                                            \
		.name = NAME,                        \
		.flags = LT_KERNELS | LT_NORM | LT_RELU_OUT | LT_RELU_GRAD, \
		.defaults = bn_defaults,             \
		.set = bn_set,                       \
		.dump = bn_dump,                     \
		.shape = bn_shape,                   \
		.flops = bn_flops,                   \
		.init = bn_init,                     \
		.init_buffers = bn_init_buffers,     \
		.update_buffers = bn_update_buffers, \
		.hash_attrs = bn_hash_attrs,         \
		.saved_bytes = bn_saved,             \
		.forward = bn_forward,               \
		.backward = bn_backward,             \
		.cpu = &cpu_kernels,                 \
	}

const layer_type layer_batchnorm = BATCHNORM_ROW("batchnorm");
/* PyTorch's name; the same type (the hash names the type as written, so keep one per network) */
const layer_type layer_batchnorm2d = BATCHNORM_ROW("batchnorm2d");
