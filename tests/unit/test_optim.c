/*
 * test_optim.c - optimizers and learning-rate schedules (src/optim.c).
 *
 * Expected values follow the torch.optim pseudocode and were computed in double
 * (the comments show the arithmetic). Most cases use hyperparameters that floats hold
 * exactly (powers of two), so the C code and the double arithmetic see the same
 * inputs; the "defaults" cases use PyTorch's own values (0.9, 0.999, 1e-8, ...) and
 * compare parameters only, since the float rounding of 1 - 0.999 shows in the
 * moments but not in the step. Tolerance: 1e-6 relative.
 *
 * Common inputs: 3 elements, parameters p0 = {1, -2, 0.5}, gradients
 *   g1 = {0.5, 1, -0.25},  g2 = {1, -1, 0.5},  g3 = {-0.5, 0.25, 2}.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "optim.h"

#define N 3
#define REL_TOL 1e-6

static const float P0[N] = { 1.0f, -2.0f, 0.5f };
static const float GRADS[3][N] = {
	{ 0.5f, 1.0f, -0.25f },
	{ 1.0f, -1.0f, 0.5f },
	{ -0.5f, 0.25f, 2.0f },
};

static bool close_enough(double got, double want)
{
	return fabs(got - want) <= REL_TOL * fabs(want) + 1e-12;
}

/* Fails (naming the buffer, step and element) unless got[i] is within REL_TOL of want[i]. */
static void check_buf(const char *what, long t, const float *got, const double *want, size_t n)
{
	int bad = 0;
	for (size_t i = 0; i < n; i++) {
		if (!close_enough(got[i], want[i])) {
			print_error("%s at step %ld, element %zu: got %.9g, want %.9g\n", what, t, i,
				    (double)got[i], want[i]);
			bad++;
		}
	}
	if (bad)
		fail_msg("%d element(s) of %s differ at step %ld", bad, what, t);
}

/*
 * Runs `steps` steps of c (at lr c->lr) from P0 with GRADS and checks the parameters
 * after step t against want_p[t-1] and, where want_s[k] is not NULL, state k against
 * want_s[k][t-1].
 */
static void run_and_check(const optim_config *c, int steps, const double (*want_p)[N],
			  const double (*want_s0)[N], const double (*want_s1)[N])
{
	float p[N], s0[N] = { 0 }, s1[N] = { 0 };
	float *states[2] = { s0, s1 };
	memcpy(p, P0, sizeof p);
	for (long t = 1; t <= steps; t++) {
		optim_step(c, c->lr, t, N, p, GRADS[t - 1], states);
		check_buf("params", t, p, want_p[t - 1], N);
		if (want_s0)
			check_buf(optim_state_name(c, 0), t, s0, want_s0[t - 1], N);
		if (want_s1)
			check_buf(optim_state_name(c, 1), t, s1, want_s1[t - 1], N);
	}
}

/* ---- SGD -------------------------------------------------------------------------- */

/* p -= lr*g with lr 0.5; every value is exact in float. */
static void test_sgd_plain_matches_hand_values(void **state)
{
	(void)state;
	optim_config c;
	optim_config_defaults(&c, OPT_SGD);
	c.lr = 0.5f;
	static const double want_p[3][N] = {
		{ 0.75, -2.5, 0.625 },    /* p0 - 0.5*g1 = {1-0.25, -2-0.5, 0.5+0.125} */
		{ 0.25, -2.0, 0.375 },    /* - 0.5*g2 = {0.75-0.5, -2.5+0.5, 0.625-0.25} */
		{ 0.5, -2.125, -0.625 },  /* - 0.5*g3 = {0.25+0.25, -2-0.125, 0.375-1} */
	};
	assert_int_equal(optim_n_states(&c), 0);
	run_and_check(&c, 3, want_p, NULL, NULL);
}

/*
 * Momentum 0.5, lr 0.5, dampening 0: b = g on the first step, then b = 0.5*b + g;
 * p -= 0.5*b.
 */
static const double SGD_MOM_B[3][N] = {
	{ 0.5, 1.0, -0.25 },      /* b1 = g1 */
	{ 1.25, -0.5, 0.375 },    /* 0.5*b1 + g2 = {0.25+1, 0.5-1, -0.125+0.5} */
	{ 0.125, 0.0, 2.1875 },   /* 0.5*b2 + g3 = {0.625-0.5, -0.25+0.25, 0.1875+2} */
};

static void test_sgd_momentum_first_buffer_is_grad(void **state)
{
	(void)state;
	optim_config c;
	optim_config_defaults(&c, OPT_SGD);
	c.lr = 0.5f;
	c.momentum = 0.5f;
	static const double want_p[3][N] = {
		{ 0.75, -2.5, 0.625 },        /* p0 - 0.5*b1 */
		{ 0.125, -2.25, 0.4375 },     /* {0.75-0.625, -2.5+0.25, 0.625-0.1875} */
		{ 0.0625, -2.25, -0.65625 },  /* {0.125-0.0625, -2.25-0, 0.4375-1.09375} */
	};
	assert_int_equal(optim_n_states(&c), 1);
	run_and_check(&c, 3, want_p, SGD_MOM_B, NULL);
}

/*
 * Nesterov: same buffer, but the step uses d = g + mu*b.
 *   t1: d = g1 + 0.5*b1 = 1.5*g1 = {0.75, 1.5, -0.375};   p = p0 - 0.5*d
 *   t2: d = g2 + 0.5*b2 = {1.625, -1.25, 0.6875}
 *   t3: d = g3 + 0.5*b3 = {-0.4375, 0.25, 3.09375}
 */
static void test_sgd_nesterov_matches_hand_values(void **state)
{
	(void)state;
	optim_config c;
	optim_config_defaults(&c, OPT_SGD);
	c.lr = 0.5f;
	c.momentum = 0.5f;
	c.nesterov = true;
	static const double want_p[3][N] = {
		{ 0.625, -2.75, 0.6875 },        /* {1-0.375, -2-0.75, 0.5+0.1875} */
		{ -0.1875, -2.125, 0.34375 },    /* {0.625-0.8125, -2.75+0.625, 0.6875-0.34375} */
		{ 0.03125, -2.25, -1.203125 },   /* {-0.1875+0.21875, -2.125-0.125, 0.34375-1.546875} */
	};
	run_and_check(&c, 3, want_p, SGD_MOM_B, NULL);
}

/* Nesterov and plain momentum keep the same buffer; their first steps differ by lr*mu*g. */
static void test_sgd_nesterov_differs_from_plain_momentum_by_lr_mu_g(void **state)
{
	(void)state;
	optim_config plain, nest;
	optim_config_defaults(&plain, OPT_SGD);
	plain.lr = 0.1f;
	plain.momentum = 0.9f;
	nest = plain;
	nest.nesterov = true;

	float pp[N], pn[N], bp[N] = { 0 }, bn[N] = { 0 };
	float *sp[1] = { bp }, *sn[1] = { bn };
	memcpy(pp, P0, sizeof pp);
	memcpy(pn, P0, sizeof pn);
	optim_step(&plain, plain.lr, 1, N, pp, GRADS[0], sp);
	optim_step(&nest, nest.lr, 1, N, pn, GRADS[0], sn);
	for (int i = 0; i < N; i++) {
		/* plain: p0 - lr*g; Nesterov: p0 - lr*(1+mu)*g, so plain - nesterov = lr*mu*g */
		const double diff = (double)pp[i] - (double)pn[i];
		const double want = 0.1 * 0.9 * (double)GRADS[0][i];
		/* a difference of two floats near |p|: tolerance relative to p, not to the difference */
		if (fabs(diff - want) > REL_TOL * (1.0 + fabs((double)pp[i])))
			fail_msg("element %d: plain - nesterov = %.9g, want lr*mu*g = %.9g", i, diff, want);
	}
	for (long t = 2; t <= 3; t++) {
		optim_step(&plain, plain.lr, t, N, pp, GRADS[t - 1], sp);
		optim_step(&nest, nest.lr, t, N, pn, GRADS[t - 1], sn);
	}
	assert_memory_equal(bp, bn, sizeof bp);
	assert_memory_not_equal(pp, pn, sizeof pp);
}

/*
 * Weight decay 0.25 as L2 on the gradient, then momentum 0.5, lr 0.5:
 *   t1: g' = g1 + 0.25*p0 = {0.75, 0.5, -0.125} = b1;  p1 = p0 - 0.5*b1 = {0.625, -2.25, 0.5625}
 *   t2: g' = g2 + 0.25*p1 = {1.15625, -1.5625, 0.640625};
 *       b2 = 0.5*b1 + g' = {1.53125, -1.3125, 0.578125};  p2 = p1 - 0.5*b2
 *   t3: g' = g3 + 0.25*p2 = {-0.53515625, -0.1484375, 2.068359375};
 *       b3 = 0.5*b2 + g' = {0.23046875, -0.8046875, 2.357421875};  p3 = p2 - 0.5*b3
 */
static void test_sgd_weight_decay_is_l2_on_gradient(void **state)
{
	(void)state;
	optim_config c;
	optim_config_defaults(&c, OPT_SGD);
	c.lr = 0.5f;
	c.momentum = 0.5f;
	c.weight_decay = 0.25f;
	static const double want_p[3][N] = {
		{ 0.625, -2.25, 0.5625 },
		{ -0.140625, -1.59375, 0.2734375 },
		{ -0.255859375, -1.19140625, -0.9052734375 },
	};
	static const double want_b[3][N] = {
		{ 0.75, 0.5, -0.125 },
		{ 1.53125, -1.3125, 0.578125 },
		{ 0.23046875, -0.8046875, 2.357421875 },
	};
	run_and_check(&c, 3, want_p, want_b, NULL);
}

/* ---- Adam / AdamW ------------------------------------------------------------------ */

/*
 * Adam with lr 0.25, beta1 0.5, beta2 0.75, eps 2^-10 = 0.0009765625:
 *   m = 0.5*m + 0.5*g;  v = 0.75*v + 0.25*g^2;  bc1 = 1 - 0.5^t;  bc2 = 1 - 0.75^t
 *   p -= (0.25/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)
 * t1: m = 0.5*g1, v = 0.25*g1^2, bc1 = 0.5, bc2 = 0.25, so p = p0 - 0.25*g/(|g| + eps);
 *     element 0: 1 - 0.125/0.5009765625 = 0.750487329435
 * t2: bc1 = 0.75, bc2 = 0.4375; element 0: m = 0.125 + 0.5 = 0.625,
 *     v = 0.046875 + 0.25 = 0.296875, denom = sqrt(0.296875/0.4375) + eps = 0.824732...,
 *     p = 0.750487329435 - (1/3)*0.625/0.824732... = 0.497879721792
 * t3: bc1 = 0.875, bc2 = 0.578125; element 1: m = -0.125 + 0.125 = 0, so p stays.
 */
static void test_adam_matches_hand_values(void **state)
{
	(void)state;
	optim_config c;
	optim_config_defaults(&c, OPT_ADAM);
	c.lr = 0.25f;
	c.beta1 = 0.5f;
	c.beta2 = 0.75f;
	c.eps = 0.0009765625f;
	static const double want_p[3][N] = {
		{ 0.750487329435, -2.24975609756, 0.749027237354 },
		{ 0.497879721792, -2.16650406504, 0.597641927835 },
		{ 0.472488831106, -2.16650406504, 0.366550261572 },
	};
	static const double want_m[3][N] = {
		{ 0.25, 0.5, -0.125 },     /* 0.5*g1 */
		{ 0.625, -0.25, 0.1875 },  /* 0.5*m1 + 0.5*g2 */
		{ 0.0625, 0.0, 1.09375 },  /* 0.5*m2 + 0.5*g3 */
	};
	static const double want_v[3][N] = {
		{ 0.0625, 0.25, 0.015625 },               /* 0.25*g1^2 */
		{ 0.296875, 0.4375, 0.07421875 },         /* 0.75*v1 + 0.25*g2^2 */
		{ 0.28515625, 0.34375, 1.0556640625 },    /* 0.75*v2 + 0.25*g3^2 */
	};
	assert_int_equal(optim_n_states(&c), 2);
	run_and_check(&c, 3, want_p, want_m, want_v);
}

/*
 * PyTorch's defaults (lr 1e-3, betas 0.9/0.999, eps 1e-8): the first step moves each
 * parameter by lr*g/(|g| + eps), about lr against the sign of g:
 *   element 0: 1 - 1e-3*0.5/0.50000001 = 0.99900000002. Steps 2-3 in double.
 */
static void test_adam_defaults_first_step_is_lr_times_sign(void **state)
{
	(void)state;
	optim_config c;
	optim_config_defaults(&c, OPT_ADAM);
	static const double want_p[3][N] = {
		{ 0.99900000002, -2.00099999999, 0.50099999996 },
		{ 0.998034818006, -2.00094736841, 0.500633896442 },
		{ 0.997614728709, -2.00101859024, 0.499942498352 },
	};
	run_and_check(&c, 3, want_p, NULL, NULL);
}

/*
 * Adam's weight decay 0.5 is L2 on the gradient (same lr/betas/eps as above):
 * t1: g' = g1 + 0.5*p0 = {1, 0, 0}: elements 1 and 2 get a zero gradient and do not move
 *     (m = v = 0, step 0/eps); element 0: 1 - 0.25*1/(1 + eps) = 0.750243902439.
 * t2: g' = g2 + 0.5*p1 = {1.37512195122, -2, 0.75}; m2 = 0.5*m1 + 0.5*g', v2 likewise.
 */
static void test_adam_weight_decay_is_l2_on_gradient(void **state)
{
	(void)state;
	optim_config c;
	optim_config_defaults(&c, OPT_ADAM);
	c.lr = 0.25f;
	c.beta1 = 0.5f;
	c.beta2 = 0.75f;
	c.eps = 0.0009765625f;
	c.weight_decay = 0.5f;
	static const double want_p[2][N] = {
		{ 0.750243902439, -2.0, 0.5 },
		{ 0.496046420017, -1.77966304751, 0.279899845349 },
	};
	static const double want_m[2][N] = {
		{ 0.5, 0.0, 0.0 },
		{ 0.93756097561, -1.0, 0.375 },
	};
	static const double want_v[2][N] = {
		{ 0.25, 0.0, 0.0 },
		{ 0.660240095181, 1.0, 0.140625 },
	};
	run_and_check(&c, 2, want_p, want_m, want_v);
}

/*
 * AdamW's weight decay 0.5 is decoupled: p *= 1 - lr*wd = 0.875 before the plain Adam
 * step, and the moments are those of plain Adam (test_adam_matches_hand_values).
 * t1: element 0: 0.875*1 - 0.25*0.5/0.5009765625 = 0.625487329435
 * t2: element 0: 0.875*0.625487329435 - (1/3)*0.625/0.824732... = 0.294693805613
 */
static void test_adamw_weight_decay_is_decoupled(void **state)
{
	(void)state;
	optim_config c;
	optim_config_defaults(&c, OPT_ADAMW);
	c.lr = 0.25f;
	c.beta1 = 0.5f;
	c.beta2 = 0.75f;
	c.eps = 0.0009765625f;
	c.weight_decay = 0.5f;
	static const double want_p[2][N] = {
		{ 0.625487329435, -1.99975609756, 0.686527237354 },
		{ 0.294693805613, -1.66653455285, 0.449326023166 },
	};
	static const double want_m[2][N] = { { 0.25, 0.5, -0.125 }, { 0.625, -0.25, 0.1875 } };
	static const double want_v[2][N] = { { 0.0625, 0.25, 0.015625 }, { 0.296875, 0.4375, 0.07421875 } };
	assert_int_equal(optim_n_states(&c), 2);
	run_and_check(&c, 2, want_p, want_m, want_v);
}

/*
 * AdamW with its defaults (lr 1e-3, wd 0.01): t1 element 0:
 * (1 - 1e-5)*1 - 1e-3*0.5/0.50000001 = 0.99899000002. Steps 2-3 in double.
 */
static void test_adamw_defaults_match_double(void **state)
{
	(void)state;
	optim_config c;
	optim_config_defaults(&c, OPT_ADAMW);
	static const double want_p[3][N] = {
		{ 0.99899000002, -2.00097999999, 0.50099499996 },
		{ 0.998014828106, -2.00090735861, 0.500623886492 },
		{ 0.99758475866, -2.00095857137, 0.499927482163 },
	};
	run_and_check(&c, 3, want_p, NULL, NULL);
}

/* Step numbers below 1 count as 1 (no division by a zero bias correction). */
static void test_adam_step_zero_counts_as_step_one(void **state)
{
	(void)state;
	optim_config c;
	optim_config_defaults(&c, OPT_ADAM);
	float p0[N], p1[N], m0[N] = { 0 }, v0[N] = { 0 }, m1[N] = { 0 }, v1[N] = { 0 };
	float *s0[2] = { m0, v0 }, *s1[2] = { m1, v1 };
	memcpy(p0, P0, sizeof p0);
	memcpy(p1, P0, sizeof p1);
	optim_step(&c, c.lr, 0, N, p0, GRADS[0], s0);
	optim_step(&c, c.lr, 1, N, p1, GRADS[0], s1);
	for (int i = 0; i < N; i++)
		assert_true(isfinite(p0[i]));
	assert_memory_equal(p0, p1, sizeof p0);
}

/* ---- Adadelta ---------------------------------------------------------------------- */

/*
 * Adadelta with lr 1, rho 0.5, eps 2^-10:
 *   s = 0.5*s + 0.5*g^2;  d = sqrt(a + eps)/sqrt(s + eps) * g;  a = 0.5*a + 0.5*d^2;  p -= d
 * t1 element 0: s = 0.125, d = 0.03125*0.5/sqrt(0.1259765625) = 0.044022545316,
 *     p = 0.955977454684, a = 0.5*d^2 = 0.000968992248
 */
static void test_adadelta_matches_hand_values(void **state)
{
	(void)state;
	optim_config c;
	optim_config_defaults(&c, OPT_ADADELTA);
	c.lr = 1.0f;
	c.rho = 0.5f;
	c.eps = 0.0009765625f;
	static const double want_p[3][N] = {
		{ 0.955977454684, -2.04415107857, 0.543519413989 },
		{ 0.897217182349, -1.99317809199, 0.485243953818 },
		{ 0.941452912267, -2.01377080422, 0.407273281918 },
	};
	static const double want_s[3][N] = {
		{ 0.125, 0.5, 0.03125 },          /* 0.5*g1^2 */
		{ 0.5625, 0.75, 0.140625 },       /* 0.5*s1 + 0.5*g2^2 */
		{ 0.40625, 0.40625, 2.0703125 },  /* 0.5*s2 + 0.5*g3^2 */
	};
	static const double want_a[3][N] = {
		{ 0.000968992248062, 0.000974658869396, 0.00094696969697 },
		{ 0.00221088092647, 0.00178645211497, 0.00217149947753 },
		{ 0.00208384036393, 0.001105255956, 0.00412546257705 },
	};
	assert_int_equal(optim_n_states(&c), 2);
	run_and_check(&c, 3, want_p, want_s, want_a);
}

/*
 * Adadelta with weight decay 0.25 (L2): t1 g' = g1 + 0.25*p0 = {0.75, 0.5, -0.125},
 * s1 = 0.5*g'^2 = {0.28125, 0.125, 0.0078125}; element 0:
 * d = 0.03125*0.75/sqrt(0.2822265625) = 0.044117647059, p = 0.955882352941.
 */
static void test_adadelta_weight_decay_is_l2_on_gradient(void **state)
{
	(void)state;
	optim_config c;
	optim_config_defaults(&c, OPT_ADADELTA);
	c.lr = 1.0f;
	c.rho = 0.5f;
	c.eps = 0.0009765625f;
	c.weight_decay = 0.25f;
	static const double want_p[2][N] = {
		{ 0.955882352941, -2.04402254532, 0.541666666667 },
		{ 0.898505324162, -1.98330893265, 0.481649072007 },
	};
	static const double want_s[2][N] = {
		{ 0.28125, 0.125, 0.0078125 },
		{ 0.908149059256, 1.20406901651, 0.205783420139 },
	};
	static const double want_a[2][N] = {
		{ 0.000973183391003, 0.000968992248062, 0.000868055555556 },
		{ 0.00213265341125, 0.00232756750573, 0.00223508361213 },
	};
	run_and_check(&c, 2, want_p, want_s, want_a);
}

/*
 * The Keras mnist_cnn values (lr 1, rho 0.95, eps 1e-7): the first step is about
 * sqrt(eps/(1-rho)) = 1.414e-3 against the sign of g; element 0:
 * 1 - sqrt(1e-7)/sqrt(0.0125 + 1e-7)*0.5 = 0.998585792094. Steps 2-3 in double.
 */
static void test_adadelta_keras_defaults_match_double(void **state)
{
	(void)state;
	optim_config c;
	optim_config_defaults(&c, OPT_ADADELTA);
	static const double want_p[3][N] = {
		{ 0.998585792094, -2.00141421215, 0.501414190935 },
		{ 0.996787930843, -1.99998198385, 0.499616344829 },
		{ 0.997906290627, -2.00042270143, 0.497038747565 },
	};
	run_and_check(&c, 3, want_p, NULL, NULL);
}

/* ---- configuration, names and states ----------------------------------------------- */

static void test_defaults_per_kind(void **state)
{
	(void)state;
	optim_config c;
	optim_config_defaults(&c, OPT_SGD);
	assert_int_equal(c.kind, OPT_SGD);
	assert_true(c.lr == 0.01f && c.momentum == 0.0f && !c.nesterov && c.weight_decay == 0.0f);
	assert_int_equal(c.schedule, SCHED_CONSTANT);
	assert_int_equal(c.warmup_steps, 0);

	optim_config_defaults(&c, OPT_ADAM);
	assert_true(c.lr == 1e-3f && c.beta1 == 0.9f && c.beta2 == 0.999f && c.eps == 1e-8f);
	assert_true(c.weight_decay == 0.0f);

	optim_config_defaults(&c, OPT_ADAMW);
	assert_int_equal(c.kind, OPT_ADAMW);
	assert_true(c.lr == 1e-3f && c.beta1 == 0.9f && c.beta2 == 0.999f && c.eps == 1e-8f);
	assert_true(c.weight_decay == 0.01f);

	optim_config_defaults(&c, OPT_ADADELTA);
	assert_true(c.lr == 1.0f && c.rho == 0.95f && c.eps == 1e-7f && c.weight_decay == 0.0f);

	optim_config_defaults(NULL, OPT_ADAM); /* must not crash */
}

static void test_optim_kind_names_round_trip(void **state)
{
	(void)state;
	static const struct { optim_kind k; const char *name; } kinds[] = {
		{ OPT_SGD, "sgd" }, { OPT_ADAM, "adam" }, { OPT_ADAMW, "adamw" }, { OPT_ADADELTA, "adadelta" },
	};
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		assert_string_equal(optim_kind_name(kinds[i].k), kinds[i].name);
		assert_int_equal(optim_kind_parse(kinds[i].name), kinds[i].k);
	}
	assert_int_equal(optim_kind_parse("AdamW"), OPT_ADAMW);
	assert_int_equal(optim_kind_parse("rmsprop"), -1);
	assert_int_equal(optim_kind_parse("adam "), -1);
	assert_int_equal(optim_kind_parse(""), -1);
	assert_int_equal(optim_kind_parse(NULL), -1);
	assert_string_equal(optim_kind_name((optim_kind)42), "unknown");
	assert_string_equal(optim_kind_name((optim_kind)-1), "unknown");
}

static void test_sched_kind_names_round_trip(void **state)
{
	(void)state;
	static const struct { sched_kind k; const char *name; } kinds[] = {
		{ SCHED_CONSTANT, "constant" }, { SCHED_STEP, "step" }, { SCHED_COSINE, "cosine" },
	};
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		assert_string_equal(sched_kind_name(kinds[i].k), kinds[i].name);
		assert_int_equal(sched_kind_parse(kinds[i].name), kinds[i].k);
	}
	assert_int_equal(sched_kind_parse("Cosine"), SCHED_COSINE);
	assert_int_equal(sched_kind_parse("linear"), -1);
	assert_int_equal(sched_kind_parse(""), -1);
	assert_int_equal(sched_kind_parse(NULL), -1);
	assert_string_equal(sched_kind_name((sched_kind)7), "unknown");
}

static void test_n_states_and_state_names_per_kind(void **state)
{
	(void)state;
	optim_config c;
	optim_config_defaults(&c, OPT_SGD);
	assert_int_equal(optim_n_states(&c), 0);
	assert_null(optim_state_name(&c, 0));
	c.nesterov = true; /* Nesterov without momentum keeps no buffer either */
	assert_int_equal(optim_n_states(&c), 0);
	c.momentum = 0.9f;
	assert_int_equal(optim_n_states(&c), 1);
	assert_string_equal(optim_state_name(&c, 0), "momentum_buffer");
	assert_null(optim_state_name(&c, 1));
	assert_null(optim_state_name(&c, -1));

	const optim_kind adams[] = { OPT_ADAM, OPT_ADAMW };
	for (int i = 0; i < 2; i++) {
		optim_config_defaults(&c, adams[i]);
		assert_int_equal(optim_n_states(&c), 2);
		assert_string_equal(optim_state_name(&c, 0), "exp_avg");
		assert_string_equal(optim_state_name(&c, 1), "exp_avg_sq");
		assert_null(optim_state_name(&c, 2));
	}

	optim_config_defaults(&c, OPT_ADADELTA);
	assert_int_equal(optim_n_states(&c), 2);
	assert_string_equal(optim_state_name(&c, 0), "square_avg");
	assert_string_equal(optim_state_name(&c, 1), "acc_delta");
	assert_null(optim_state_name(&c, 2));

	c.kind = (optim_kind)42;
	assert_int_equal(optim_n_states(&c), 0);
	assert_null(optim_state_name(&c, 0));
	assert_int_equal(optim_n_states(NULL), 0);
	assert_null(optim_state_name(NULL, 0));
}

/* Missing buffers and unknown kinds are reported and leave the parameters alone. */
static void test_step_with_missing_state_or_unknown_kind_changes_nothing(void **state)
{
	(void)state;
	optim_config c;
	optim_config_defaults(&c, OPT_ADAM);
	float p[N], m[N] = { 0 };
	float *one_missing[2] = { m, NULL };
	memcpy(p, P0, sizeof p);

	optim_step(&c, c.lr, 1, N, p, GRADS[0], NULL);
	assert_memory_equal(p, P0, sizeof p);
	optim_step(&c, c.lr, 1, N, p, GRADS[0], one_missing);
	assert_memory_equal(p, P0, sizeof p);
	optim_step(&c, c.lr, 1, N, NULL, GRADS[0], one_missing);
	optim_step(NULL, 0.1f, 1, N, p, GRADS[0], NULL);
	assert_memory_equal(p, P0, sizeof p);
	c.kind = (optim_kind)42;
	optim_step(&c, c.lr, 1, N, p, GRADS[0], NULL);
	assert_memory_equal(p, P0, sizeof p);
	optim_step(&c, c.lr, 1, 0, NULL, NULL, NULL); /* nothing to do */
}

/* ---- schedules ------------------------------------------------------------------- */

static void assert_lr(const optim_config *c, long t, long total, double want)
{
	const float got = optim_lr_at(c, t, total);
	if (!close_enough(got, want))
		fail_msg("%s schedule, step %ld of %ld: lr %.9g, want %.9g", sched_kind_name(c->schedule), t,
			 total, (double)got, want);
}

static void test_constant_schedule_with_linear_warmup(void **state)
{
	(void)state;
	optim_config c;
	optim_config_defaults(&c, OPT_SGD);
	c.lr = 0.1f;
	assert_lr(&c, 1, 100, 0.1);     /* no warm-up: lr from the first step */
	assert_lr(&c, 1000, 100, 0.1);  /* and after the end */

	c.warmup_steps = 10;
	assert_lr(&c, 1, 100, 0.01);    /* lr * 1/10 */
	assert_lr(&c, 5, 100, 0.05);    /* lr * 5/10 */
	assert_lr(&c, 10, 100, 0.1);    /* end of warm-up: lr */
	assert_lr(&c, 11, 100, 0.1);
	assert_lr(&c, 0, 100, 0.01);    /* steps are 1-based: t < 1 counts as 1 */
	assert_lr(&c, -5, 100, 0.01);
	assert_lr(&c, 5, 3, 0.05);      /* warm-up longer than the run still ramps */
	assert_true(optim_lr_at(NULL, 1, 10) == 0.0f);
}

static void test_step_schedule_boundaries(void **state)
{
	(void)state;
	optim_config c;
	optim_config_defaults(&c, OPT_SGD);
	c.lr = 1.0f;
	c.schedule = SCHED_STEP;
	c.gamma = 0.5f;
	c.step_every = 10;
	/* lr * 0.5^floor(t/10) */
	assert_lr(&c, 1, 100, 1.0);
	assert_lr(&c, 9, 100, 1.0);
	assert_lr(&c, 10, 100, 0.5);
	assert_lr(&c, 19, 100, 0.5);
	assert_lr(&c, 20, 100, 0.25);
	assert_lr(&c, 95, 100, 0.001953125); /* 0.5^9 */

	c.warmup_steps = 4;  /* lr * 0.5^floor((t-4)/10) after the warm-up */
	assert_lr(&c, 2, 100, 0.5);  /* warm-up: 2/4 */
	assert_lr(&c, 4, 100, 1.0);
	assert_lr(&c, 13, 100, 1.0);
	assert_lr(&c, 14, 100, 0.5);
	assert_lr(&c, 24, 100, 0.25);

	c.step_every = 0;    /* no step size: constant after the warm-up */
	assert_lr(&c, 50, 100, 1.0);
}

static void test_cosine_schedule_start_middle_end_and_floor(void **state)
{
	(void)state;
	optim_config c;
	optim_config_defaults(&c, OPT_ADAM);
	c.lr = 1.0f;
	c.schedule = SCHED_COSINE;
	c.min_lr = 0.1f;
	c.warmup_steps = 10;
	/* min + (lr-min)*0.5*(1 + cos(pi*(t-10)/100)) over steps 10..110 */
	assert_lr(&c, 5, 110, 0.5);   /* warm-up: 5/10 */
	assert_lr(&c, 10, 110, 1.0);  /* start: cos 0 = 1 */
	assert_lr(&c, 11, 110, 0.1 + 0.9 * 0.5 * (1.0 + cos(acos(-1.0) / 100.0))); /* 0.99977793 */
	assert_lr(&c, 35, 110, 0.1 + 0.9 * 0.5 * (1.0 + sqrt(0.5)));       /* quarter: cos(pi/4) */
	assert_lr(&c, 60, 110, 0.55); /* middle: cos(pi/2) = 0, (1 + 0.1)/2 */
	assert_lr(&c, 110, 110, 0.1); /* end: cos(pi) = -1, min_lr */
	assert_lr(&c, 500, 110, 0.1); /* after the end: min_lr */
	assert_lr(&c, 11, 10, 0.1);   /* total <= warm-up: min_lr once the warm-up is over */
	assert_lr(&c, 10, 10, 1.0);

	c.warmup_steps = 0;
	c.min_lr = 0.0f;
	assert_lr(&c, 1, 4, 0.5 * (1.0 + sqrt(0.5)));   /* cos(pi/4): 0.853553390593 */
	assert_lr(&c, 2, 4, 0.5);
	assert_lr(&c, 3, 4, 0.5 * (1.0 - sqrt(0.5)));   /* 0.146446609407 */
	assert_true(optim_lr_at(&c, 4, 4) == 0.0f);
}

/* ---- threads --------------------------------------------------------------------- */

#ifdef _OPENMP
#define BIG_N (((size_t)1 << 20) + 3) /* above the parallel threshold, odd for tails */
#define SMALL_N ((size_t)1003)         /* below it: the serial path */

/* Deterministic values in [-1, 1) (xorshift32). */
static void fill(float *x, size_t n, uint32_t seed)
{
	uint32_t s = seed ? seed : 1;
	for (size_t i = 0; i < n; i++) {
		s ^= s << 13;
		s ^= s >> 17;
		s ^= s << 5;
		x[i] = (float)((double)s / 2147483648.0 - 1.0);
	}
}

struct big_run {
	float *p, *s[2];
};

/* Three steps of c over n elements from the same start (p from seed 1, grads seeds 2-4). */
static void big_steps(const optim_config *c, size_t n, const float *const *grads, struct big_run *r)
{
	r->p = malloc(n * sizeof(float));
	r->s[0] = calloc(n, sizeof(float));
	r->s[1] = calloc(n, sizeof(float));
	assert_non_null(r->p);
	assert_non_null(r->s[0]);
	assert_non_null(r->s[1]);
	fill(r->p, n, 1);
	for (long t = 1; t <= 3; t++)
		optim_step(c, optim_lr_at(c, t, 3), t, n, r->p, grads[t - 1], r->s);
}

static void big_free(struct big_run *r)
{
	free(r->p);
	free(r->s[0]);
	free(r->s[1]);
}

/* Threads in a parallel region as omp_set_num_threads left them. */
static int team_size(void)
{
	int n = 1;
#pragma omp parallel
	{
#pragma omp single
		n = omp_get_num_threads();
	}
	return n;
}

#endif /* _OPENMP */

/*
 * Each kind (with weight decay and Nesterov where it has them) over 2^20+3 elements gives
 * bit-identical parameters and states on 1 and 2 threads, and the serial path (n below the
 * threshold) gives the same bits as the parallel one on the same leading elements.
 */
static void test_step_results_do_not_depend_on_threads(void **state)
{
	(void)state;
#ifndef _OPENMP
	skip();
#else
	const int saved = omp_get_max_threads();
	omp_set_num_threads(2);
	if (team_size() < 2) {
		omp_set_num_threads(saved);
		print_message("OpenMP gives fewer than 2 threads here; thread check skipped\n");
		skip();
	}
	float *grads[3];
	for (int t = 0; t < 3; t++) {
		grads[t] = malloc(BIG_N * sizeof(float));
		assert_non_null(grads[t]);
		fill(grads[t], BIG_N, (uint32_t)(2 + t));
	}
	optim_config cs[4];
	optim_config_defaults(&cs[0], OPT_SGD);
	cs[0].momentum = 0.9f;
	cs[0].nesterov = true;
	cs[0].weight_decay = 5e-4f;
	optim_config_defaults(&cs[1], OPT_ADAM);
	cs[1].weight_decay = 1e-2f;
	optim_config_defaults(&cs[2], OPT_ADAMW);
	cs[2].schedule = SCHED_COSINE;
	cs[2].warmup_steps = 1;
	cs[2].min_lr = 1e-5f;
	optim_config_defaults(&cs[3], OPT_ADADELTA);
	cs[3].weight_decay = 1e-3f;

	for (int k = 0; k < 4; k++) {
		const optim_config *c = &cs[k];
		struct big_run one, two, small;
		omp_set_num_threads(1);
		big_steps(c, BIG_N, (const float *const *)grads, &one);
		omp_set_num_threads(2);
		big_steps(c, BIG_N, (const float *const *)grads, &two);
		big_steps(c, SMALL_N, (const float *const *)grads, &small);

		if (memcmp(one.p, two.p, BIG_N * sizeof(float)) != 0)
			fail_msg("%s: parameters differ between 1 and 2 threads", optim_kind_name(c->kind));
		if (memcmp(small.p, two.p, SMALL_N * sizeof(float)) != 0)
			fail_msg("%s: serial and parallel paths give different parameters",
				 optim_kind_name(c->kind));
		for (int s = 0; s < optim_n_states(c); s++) {
			if (memcmp(one.s[s], two.s[s], BIG_N * sizeof(float)) != 0)
				fail_msg("%s: %s differs between 1 and 2 threads", optim_kind_name(c->kind),
					 optim_state_name(c, s));
			if (memcmp(small.s[s], two.s[s], SMALL_N * sizeof(float)) != 0)
				fail_msg("%s: serial and parallel paths give different %s",
					 optim_kind_name(c->kind), optim_state_name(c, s));
		}
		/* the step did something: the run is not trivially equal */
		float start[4];
		fill(start, 4, 1);
		assert_memory_not_equal(start, one.p, sizeof start);
		big_free(&one);
		big_free(&two);
		big_free(&small);
	}
	for (int t = 0; t < 3; t++)
		free(grads[t]);
	omp_set_num_threads(saved);
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sgd_plain_matches_hand_values),
		cmocka_unit_test(test_sgd_momentum_first_buffer_is_grad),
		cmocka_unit_test(test_sgd_nesterov_matches_hand_values),
		cmocka_unit_test(test_sgd_nesterov_differs_from_plain_momentum_by_lr_mu_g),
		cmocka_unit_test(test_sgd_weight_decay_is_l2_on_gradient),
		cmocka_unit_test(test_adam_matches_hand_values),
		cmocka_unit_test(test_adam_defaults_first_step_is_lr_times_sign),
		cmocka_unit_test(test_adam_weight_decay_is_l2_on_gradient),
		cmocka_unit_test(test_adamw_weight_decay_is_decoupled),
		cmocka_unit_test(test_adamw_defaults_match_double),
		cmocka_unit_test(test_adam_step_zero_counts_as_step_one),
		cmocka_unit_test(test_adadelta_matches_hand_values),
		cmocka_unit_test(test_adadelta_weight_decay_is_l2_on_gradient),
		cmocka_unit_test(test_adadelta_keras_defaults_match_double),
		cmocka_unit_test(test_defaults_per_kind),
		cmocka_unit_test(test_optim_kind_names_round_trip),
		cmocka_unit_test(test_sched_kind_names_round_trip),
		cmocka_unit_test(test_n_states_and_state_names_per_kind),
		cmocka_unit_test(test_step_with_missing_state_or_unknown_kind_changes_nothing),
		cmocka_unit_test(test_constant_schedule_with_linear_warmup),
		cmocka_unit_test(test_step_schedule_boundaries),
		cmocka_unit_test(test_cosine_schedule_start_middle_end_and_floor),
		cmocka_unit_test(test_step_results_do_not_depend_on_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
