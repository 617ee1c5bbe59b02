/*
 * optim.c - SGD, Adam, AdamW and Adadelta over flat float buffers, and the
 * learning-rate schedules (see optim.h).
 *
 * The update rules follow the pseudocode of the torch.optim documentation
 * (PyTorch 1.13+) and the order of float operations of its CPU kernels, so
 * that a run can be compared with a PyTorch reference step by step:
 *
 *   SGD       g += wd*p;  b = mu*b + g (b = g at t = 1);
 *             d = nesterov ? g + mu*b : b;  p -= lr*d
 *   Adam      g += wd*p;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;
 *             p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps),  bcK = 1 - bK^t
 *   AdamW     p *= 1 - lr*wd, then Adam without the L2 term
 *   Adadelta  g += wd*p;  s = rho*s + (1-rho)*g*g;
 *             d = sqrt(a + eps) / sqrt(s + eps) * g;  a = rho*a + (1-rho)*d*d;  p -= lr*d
 *
 * Scalars that PyTorch computes in Python (bias corrections, step size, the
 * AdamW decay factor) are computed here in double and rounded to float once.
 *
 * Every loop is elementwise: element i is computed by the same float operations
 * whatever the thread count or vector width, so results do not depend on threads.
 * No -ffast-math: vector sqrt and division are correctly rounded like scalar ones.
 */
#include "optim.h"

#include "kernels/kernels.h"
#include "log.h"

#include <math.h>
#include <string.h>
#include <strings.h>

/* Below this many elements a step runs on the calling thread (a parallel region costs more). */
#define OPTIM_PAR_MIN ((size_t)1 << 15)

static const char *const optim_names[] = {
	[OPT_SGD] = "sgd",
	[OPT_ADAM] = "adam",
	[OPT_ADAMW] = "adamw",
	[OPT_ADADELTA] = "adadelta",
};

static const char *const sched_names[] = {
	[SCHED_CONSTANT] = "constant",
	[SCHED_STEP] = "step",
	[SCHED_COSINE] = "cosine",
	[SCHED_ONECYCLE] = "onecycle",
};

#define N_OPTIM_KINDS ((int)(sizeof optim_names / sizeof optim_names[0]))
#define N_SCHED_KINDS ((int)(sizeof sched_names / sizeof sched_names[0]))

/*
 * Fills every member: the kind's hyperparameters with PyTorch's defaults (Adadelta with
 * those of the Keras mnist_cnn example), members the kind does not use with 0, and a
 * constant schedule without warm-up (gamma 0.1 as StepLR's, to be used with step_every).
 */
void optim_config_defaults(optim_config *c, optim_kind kind)
{
	if (!c)
		return;
	memset(c, 0, sizeof *c);
	c->kind = kind;
	switch (kind) {
	case OPT_SGD:
		c->lr = 0.01f;
		break;
	case OPT_ADAM:
	case OPT_ADAMW:
		c->lr = 1e-3f;
		c->beta1 = 0.9f;
		c->beta2 = 0.999f;
		c->eps = 1e-8f;
		c->weight_decay = kind == OPT_ADAMW ? 0.01f : 0.0f;
		break;
	case OPT_ADADELTA:
		c->lr = 1.0f;
		c->rho = 0.95f;
		c->eps = 1e-7f;
		break;
	}
	c->schedule = SCHED_CONSTANT;
	c->gamma = 0.1f;
}

/* The kind's name, or "unknown" for a value outside the enum (never NULL). */
const char *optim_kind_name(optim_kind k)
{
	if ((int)k < 0 || (int)k >= N_OPTIM_KINDS)
		return "unknown";
	return optim_names[k];
}

/* The kind named s (case-insensitive), or -1 for NULL or an unknown name. */
int optim_kind_parse(const char *s)
{
	if (!s)
		return -1;
	for (int k = 0; k < N_OPTIM_KINDS; k++)
		if (strcasecmp(s, optim_names[k]) == 0)
			return k;
	return -1;
}

/* The schedule's name, or "unknown" for a value outside the enum (never NULL). */
const char *sched_kind_name(sched_kind k)
{
	if ((int)k < 0 || (int)k >= N_SCHED_KINDS)
		return "unknown";
	return sched_names[k];
}

/* The schedule named s (case-insensitive), or -1 for NULL or an unknown name. */
int sched_kind_parse(const char *s)
{
	if (!s)
		return -1;
	for (int k = 0; k < N_SCHED_KINDS; k++)
		if (strcasecmp(s, sched_names[k]) == 0)
			return k;
	return -1;
}

/* State buffers of c's optimizer; 0 for NULL or an unknown kind. */
int optim_n_states(const optim_config *c)
{
	if (!c)
		return 0;
	switch (c->kind) {
	case OPT_SGD:
		return c->momentum != 0.0f ? 1 : 0;
	case OPT_ADAM:
	case OPT_ADAMW:
	case OPT_ADADELTA:
		return 2;
	}
	return 0;
}

/* PyTorch's name of state buffer i, or NULL when i is not in [0, optim_n_states(c)). */
const char *optim_state_name(const optim_config *c, int i)
{
	if (!c || i < 0 || i >= optim_n_states(c))
		return NULL;
	switch (c->kind) {
	case OPT_SGD:
		return "momentum_buffer";
	case OPT_ADAM:
	case OPT_ADAMW:
		return i == 0 ? "exp_avg" : "exp_avg_sq";
	case OPT_ADADELTA:
		return i == 0 ? "square_avg" : "acc_delta";
	}
	return NULL;
}

void optim_apply_warmup_epochs(optim_config *c, long steps_per_epoch)
{
	if (!c || c->warmup_epochs <= 0.0f)
		return;
	long w = lround((double)c->warmup_epochs * (double)steps_per_epoch);
	c->warmup_steps = w < 1 ? 1 : w;
}

/* PyTorch's cosine annealing from a to b at fraction f of a phase. */
static double cos_anneal(double a, double b, double f)
{
	const double pi = 3.14159265358979323846;
	return b + (a - b) * 0.5 * (1.0 + kern_cos(pi * f));
}

/*
 * One-cycle (PyTorch's OneCycleLR, anneal_strategy 'cos', div_factor 25): with s = t - 1,
 * the rise ends at step r - 1 where r = warmup_steps (0: 30% of the run, pct_start 0.3),
 * from lr/25 up to lr; then down to min_lr (0: lr/25/1e4, final_div_factor) at step
 * total_steps - 1, and min_lr after it.
 */
static double onecycle_lr(const optim_config *c, long t, long total_steps)
{
	const double lr = c->lr, start = lr / 25.0;
	const double end = c->min_lr > 0.0f ? (double)c->min_lr : start / 1e4;
	const long total = total_steps > 1 ? total_steps : 2;
	long rise = c->warmup_steps > 0 ? c->warmup_steps : (long)(0.3 * (double)total);
	double up_end = (double)rise - 1.0, down_end = (double)total - 1.0, s = (double)(t - 1);
	if (up_end < 1.0)
		up_end = 1.0;
	if (down_end <= up_end)
		down_end = up_end + 1.0;
	if (s <= up_end)
		return cos_anneal(start, lr, s / up_end);
	if (s >= down_end)
		return end;
	return cos_anneal(lr, end, (s - up_end) / (down_end - up_end));
}

/*
 * Learning rate at 1-based step t (t < 1 counts as 1) of total_steps.
 * Warm-up: lr*t/warmup_steps for t <= warmup_steps. After it, with e = t - warmup_steps:
 *   constant  lr
 *   step      lr * gamma^floor(e/step_every)   (constant if step_every <= 0)
 *   cosine    min_lr + (lr-min_lr)/2 * (1 + cos(pi*e/(total_steps-warmup_steps))),
 *             e clamped to the span, so min_lr from total_steps on, and min_lr after the
 *             warm-up when total_steps <= warmup_steps.
 *   onecycle  onecycle_lr above (its rise is the warm-up; the linear one does not apply)
 * Computed in double, returned as float. NULL: 0.
 */
float optim_lr_at(const optim_config *c, long t, long total_steps)
{
	if (!c)
		return 0.0f;
	const double lr = c->lr;
	const long warmup = c->warmup_steps > 0 ? c->warmup_steps : 0;
	if (t < 1)
		t = 1;
	if (c->schedule == SCHED_ONECYCLE)
		return (float)onecycle_lr(c, t, total_steps);
	if (t <= warmup)
		return (float)(lr * (double)t / (double)warmup);
	const long e = t - warmup;
	switch (c->schedule) {
	case SCHED_CONSTANT:
		break;
	case SCHED_STEP:
		if (c->step_every > 0)
			return (float)(lr * kern_powi((double)c->gamma, e / c->step_every));
		break;
	case SCHED_ONECYCLE: /* above */
		break;
	case SCHED_COSINE: {
		const double min_lr = c->min_lr;
		const long span = total_steps - warmup;
		if (span <= 0 || e >= span)
			return (float)min_lr;
		const double pi = 3.14159265358979323846;
		return (float)(min_lr + (lr - min_lr) * 0.5 * (1.0 + kern_cos(pi * (double)e / (double)span)));
	}
	}
	return (float)lr;
}

/*
 * The step kernels. Parameters, gradients and each state must be distinct buffers
 * (restrict). Each variant (weight decay or not, plain/momentum/Nesterov) has its own
 * loop, and the element functions are called with constant flags, so that no loop body
 * branches: GCC vectorises branch-free bodies at -O2 as well as at -O3.
 * "if (parallel: ...)" keeps small steps on the calling thread without turning off simd.
 *
 * Vectorising sqrtf needs -fno-math-errno: otherwise GCC keeps a scalar call that may set
 * errno (nothing here reads errno, and the results are the same either way).
 */

#if defined(__clang__) && !defined(__NO_MATH_ERRNO__)
/* Without -fno-math-errno clang warns at each simd loop with sqrtf that it stays scalar. */
#pragma clang diagnostic ignored "-Wpass-failed"
#endif

enum sgd_mode { SGD_PLAIN, SGD_MOMENTUM, SGD_NESTEROV };

/* SGD for element i: torch's g += wd*p; b = mu*b + g; d = nesterov ? g + mu*b : b; p -= lr*d. */
static inline void sgd_elem(size_t i, float *restrict p, const float *restrict g, float *restrict b,
			    float wd, float mu, float neg_lr, bool decay, enum sgd_mode mode)
{
	const float gi = decay ? g[i] + wd * p[i] : g[i];
	float di = gi;
	if (mode != SGD_PLAIN) {
		/* Dampening 0: on the first step b is zero, so b = g as torch's first step. */
		const float bi = mu * b[i] + gi;
		b[i] = bi;
		di = mode == SGD_NESTEROV ? gi + mu * bi : bi;
	}
	p[i] = p[i] + neg_lr * di;
}

/* Scalars of one Adam(W) step, computed once (in double where torch computes them in Python). */
struct adam_k {
	float keep;      /* AdamW: 1 - lr*wd; Adam: 1 */
	float wd;        /* Adam: L2 coefficient */
	float b1, one_b1, b2, one_b2, eps;
	float neg_step;  /* -lr / (1 - b1^t) */
	float bc2_sqrt;  /* sqrt(1 - b2^t) */
};

/*
 * Adam for element i: g += wd*p (l2); m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
 * p += -step * m / (sqrt(v)/sqrt(bc2) + eps). AdamW (not l2) first scales p by keep.
 */
static inline void adam_elem(size_t i, float *restrict p, const float *restrict g, float *restrict m,
			     float *restrict v, struct adam_k k, bool l2)
{
	const float pd = l2 ? p[i] : p[i] * k.keep;
	const float gi = l2 ? g[i] + k.wd * pd : g[i];
	const float mi = k.b1 * m[i] + k.one_b1 * gi;
	const float vi = k.b2 * v[i] + k.one_b2 * gi * gi;
	m[i] = mi;
	v[i] = vi;
	const float denom = sqrtf(vi) / k.bc2_sqrt + k.eps;
	p[i] = pd + k.neg_step * mi / denom;
}

/*
 * Adadelta for element i: g += wd*p; s = rho*s + (1-rho)*g*g;
 * d = sqrt(a + eps) / sqrt(s + eps) * g; a = rho*a + (1-rho)*d*d; p -= lr*d.
 */
static inline void adadelta_elem(size_t i, float *restrict p, const float *restrict g,
				 float *restrict sq, float *restrict acc, float wd, float rho,
				 float one_rho, float eps, float neg_lr, bool decay)
{
	const float gi = decay ? g[i] + wd * p[i] : g[i];
	const float si = rho * sq[i] + one_rho * gi * gi;
	sq[i] = si;
	const float std = sqrtf(si + eps);
	const float di = sqrtf(acc[i] + eps) / std * gi;
	acc[i] = rho * acc[i] + one_rho * di * di;
	p[i] = p[i] + neg_lr * di;
}

/* The step loops, once per instruction set (optim_steps.h): the same float operations
 * per element whatever the vector width, so every ISA gives the same bits. */
#define OPT_FN(name) name##_base
#define OPT_TARGET
#include "optim_steps.h"
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define OPT_FN(name) name##_avx2
#define OPT_TARGET __attribute__((target("avx2")))
#include "optim_steps.h"
#define OPT_FN(name) name##_avx512
#define OPT_TARGET __attribute__((target("avx512f")))
#include "optim_steps.h"
#define OPT_HAVE_ISA_STEPS 1
#endif

/*
 * One step over n elements (see optim.h). t < 1 counts as 1. A NULL buffer, a missing
 * state buffer or an unknown kind is a caller bug: it is reported and nothing changes.
 */
void optim_step(const optim_config *c, float lr, long t, size_t n, float *params, const float *grads,
		float *const *states)
{
	if (n == 0)
		return;
	if (!c || !params || !grads) {
		log_error("optim_step: NULL %s (a bug in the caller); parameters left unchanged",
			  !c ? "config" : !params ? "parameters" : "gradients");
		return;
	}
	const int ns = optim_n_states(c);
	for (int i = 0; i < ns; i++) {
		if (!states || !states[i]) {
			log_error("optim_step: %s state buffer %d (%s) missing (a bug in the caller); "
				  "parameters left unchanged",
				  optim_kind_name(c->kind), i, optim_state_name(c, i));
			return;
		}
	}
	if (t < 1)
		t = 1;
#ifdef OPT_HAVE_ISA_STEPS
	const kern_isa isa = kern_current();
#define OPT_CALL(name, ...)                                                                        \
	(isa == KERN_ISA_AVX512 ? name##_avx512(__VA_ARGS__)                                       \
	 : isa == KERN_ISA_AVX2 ? name##_avx2(__VA_ARGS__)                                         \
				: name##_base(__VA_ARGS__))
#else
#define OPT_CALL(name, ...) name##_base(__VA_ARGS__)
#endif
	switch (c->kind) {
	case OPT_SGD:
		OPT_CALL(sgd_step, c, lr, n, params, grads, ns ? states[0] : NULL);
		return;
	case OPT_ADAM:
	case OPT_ADAMW:
		OPT_CALL(adam_step, c, lr, t, n, params, grads, states[0], states[1]);
		return;
	case OPT_ADADELTA:
		OPT_CALL(adadelta_step, c, lr, n, params, grads, states[0], states[1]);
		return;
	}
	log_error("optim_step: unknown optimizer kind %d (a bug in the caller); parameters left unchanged",
		  (int)c->kind);
}
