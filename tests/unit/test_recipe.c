/*
 * test_recipe.c - the training recipe of issue 14: the one-cycle schedule
 * against PyTorch's OneCycleLR (numbers printed by torch 2.x), warm-up in
 * epochs, the train.wd_skip keys and the runs of the parameter buffer that
 * weight decay skips (BatchNorm and bias parameters), and an update through
 * those runs that decays exactly the others.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "contract.h"
#include "model.h"
#include "optim.h"
#include "step.h"

static int parse(config *c, const char *text)
{
	config_defaults(c);
	int rc = config_load_string(c, text, "test.ini");
	return rc ? rc : config_validate(c);
}

/* OneCycleLR(max_lr = 0.1, total_steps, pct_start) lrs before each of its steps (torch 2.15). */
static void test_onecycle_is_pytorch_onecycle(void **state)
{
	(void)state;
	static const double ten[10] = {0.004, 0.052, 0.1, 0.0950484632, 0.0811745654, 0.0611262022,
				       0.0388741978, 0.0188258346, 0.0049519368, 4e-07};
	static const double twelve[12] = {0.004, 0.028, 0.076, 0.1, 0.0961939918, 0.0853553976, 0.0691342951,
					  0.0500002, 0.0308661049, 0.0146450024, 0.00380640815, 4e-07};
	optim_config c;
	optim_config_defaults(&c, OPT_SGD);
	c.lr = 0.1f;
	c.schedule = SCHED_ONECYCLE;
	for (long t = 1; t <= 10; t++) /* pct_start 0.3: the default rise */
		if (fabs(optim_lr_at(&c, t, 10) - ten[t - 1]) > 1e-6 * ten[t - 1] + 1e-9)
			fail_msg("step %ld: %.9g, torch %.9g", t, (double)optim_lr_at(&c, t, 10), ten[t - 1]);
	c.warmup_steps = 4; /* pct_start 4/12 */
	for (long t = 1; t <= 12; t++)
		if (fabs(optim_lr_at(&c, t, 12) - twelve[t - 1]) > 1e-6 * twelve[t - 1] + 1e-9)
			fail_msg("step %ld: %.9g, torch %.9g", t, (double)optim_lr_at(&c, t, 12), twelve[t - 1]);
	assert_true(fabsf(optim_lr_at(&c, 40, 12) - 4e-7f) < 1e-12f); /* after the run: the floor */
	c.min_lr = 1e-3f;
	assert_true(optim_lr_at(&c, 12, 12) == 1e-3f);
}

static void test_warmup_epochs_and_cosine(void **state)
{
	(void)state;
	config c;
	assert_int_equal(parse(&c, "[layer.f]\ntype = flatten\n[layer.l]\ntype = softmax_xent\n"
				   "[train]\noptimizer = sgd\nlr = 0.4\nschedule = cosine\nwarmup_epochs = 1.5\n"), 0);
	optim_apply_warmup_epochs(&c.optim, 10);
	assert_int_equal(c.optim.warmup_steps, 15);
	assert_true(optim_lr_at(&c.optim, 3, 100) == (float)(0.4 * 3 / 15));
	assert_true(optim_lr_at(&c.optim, 15, 100) == 0.4f);
	assert_true(optim_lr_at(&c.optim, 100, 100) == 0.0f);
	c.optim.warmup_epochs = 0.01f; /* at least one step */
	optim_apply_warmup_epochs(&c.optim, 10);
	assert_int_equal(c.optim.warmup_steps, 1);
}

static const char net[] = "[model]\ninput = 1x4x4\n"
			  "[layer.conv]\ntype = conv2d\nfilters = 2\nkernel = 3\n"
			  "[layer.bn]\ntype = batchnorm\n"
			  "[layer.flat]\ntype = flatten\n"
			  "[layer.fc]\ntype = dense\nunits = 3\n"
			  "[layer.loss]\ntype = softmax_xent\n";

static void test_wd_skip_keys_and_dump(void **state)
{
	(void)state;
	config c, d;
	assert_int_equal(parse(&c, net), 0);
	char *text = config_dump(&c);
	assert_null(strstr(text, "wd_skip")); /* older configs dump as they did */
	assert_null(strstr(text, "warmup_epochs"));
	free(text);
	assert_int_equal(config_set(&c, "train.wd_skip=bn,bias"), 0);
	assert_int_equal(c.optim.wd_skip, OPTIM_WD_SKIP_BN | OPTIM_WD_SKIP_BIAS);
	assert_int_equal(config_set(&c, "train.schedule=onecycle"), 0);
	text = config_dump(&c);
	assert_non_null(strstr(text, "wd_skip = bn,bias\n"));
	assert_non_null(strstr(text, "schedule = onecycle\n"));
	assert_int_equal(parse(&d, text), 0);
	assert_int_equal(d.optim.wd_skip, 3);
	assert_int_equal(d.optim.schedule, SCHED_ONECYCLE);
	free(text);
	assert_int_equal(config_set(&c, "train.wd_skip=everything"), EXIT_USAGE);
	/* the optimizer's defaults do not reset it */
	assert_int_equal(config_set(&c, "train.optimizer=adamw"), 0);
	assert_int_equal(c.optim.wd_skip, 3);
}

/* Runs: conv.weight decays; conv.bias, bn.weight, bn.bias skip; fc.weight decays; fc.bias skips. */
static void test_decay_segments_and_update(void **state)
{
	(void)state;
	config c;
	model m;
	assert_int_equal(parse(&c, net), 0);
	assert_int_equal(model_build(&c, &m), 0);
	step_segment seg[MODEL_MAX_TENSORS];
	int n = step_decay_segments(&m, OPTIM_WD_SKIP_BN | OPTIM_WD_SKIP_BIAS, seg, MODEL_MAX_TENSORS);
	assert_int_equal(n, 4);
	const int conv_b = model_find_tensor(&m, "conv.bias"), fc_w = model_find_tensor(&m, "fc.weight");
	const int fc_b = model_find_tensor(&m, "fc.bias");
	assert_true(seg[0].decay && seg[0].offset == 0 && seg[0].count == m.tensors[conv_b].offset);
	assert_true(!seg[1].decay && seg[1].offset == m.tensors[conv_b].offset);
	assert_true(seg[1].offset + seg[1].count == m.tensors[fc_w].offset);
	assert_true(seg[2].decay && seg[3].offset == m.tensors[fc_b].offset && !seg[3].decay);
	assert_true(seg[3].offset + seg[3].count == m.n_params);
	/* bias only: BatchNorm's weight decays, its bias does not */
	n = step_decay_segments(&m, OPTIM_WD_SKIP_BIAS, seg, MODEL_MAX_TENSORS);
	const int bn_w = model_find_tensor(&m, "bn.weight");
	assert_int_equal(n, 6);
	assert_true(seg[2].decay && seg[2].offset == m.tensors[bn_w].offset);
	/* bn only */
	n = step_decay_segments(&m, OPTIM_WD_SKIP_BN, seg, MODEL_MAX_TENSORS);
	assert_int_equal(n, 3);
	assert_true(!seg[1].decay && seg[1].offset == m.tensors[bn_w].offset);
	/* nothing skipped: one run */
	assert_int_equal(step_decay_segments(&m, 0, seg, MODEL_MAX_TENSORS), 1);
	assert_true(seg[0].count == m.n_params);

	/* an update per run: skipped parameters move by the gradient only, the others decay too,
	 * and decayed ones are the bits of one whole-buffer update */
	optim_config o;
	optim_config_defaults(&o, OPT_SGD);
	o.momentum = 0.9f;
	o.nesterov = true;
	o.weight_decay = 0.1f;
	n = step_decay_segments(&m, OPTIM_WD_SKIP_BN | OPTIM_WD_SKIP_BIAS, seg, MODEL_MAX_TENSORS);
	float *p = calloc(m.n_params, sizeof(float)), *q = calloc(m.n_params, sizeof(float));
	float *g = calloc(m.n_params, sizeof(float)), *b1 = calloc(m.n_params, sizeof(float));
	float *b2 = calloc(m.n_params, sizeof(float));
	for (size_t i = 0; i < m.n_params; i++) {
		p[i] = q[i] = 1.0f + 0.01f * (float)i;
		g[i] = 0.5f;
	}
	optim_config plain = o;
	plain.weight_decay = 0;
	for (int s = 0; s < n; s++) {
		float *st[1] = {b1 + seg[s].offset};
		optim_step(seg[s].decay ? &o : &plain, 0.1f, 1, seg[s].count, p + seg[s].offset, g + seg[s].offset, st);
	}
	float *st2[1] = {b2};
	optim_step(&o, 0.1f, 1, m.n_params, q, g, st2);
	const size_t cb = m.tensors[conv_b].offset, cw = m.tensors[0].offset;
	assert_true(p[cw] == q[cw]); /* decayed: the same bits */
	assert_true(p[cb] != q[cb]);
	assert_true(fabsf(p[cb] - ((1.0f + 0.01f * (float)cb) - 0.1f * (0.5f + 0.9f * 0.5f))) < 1e-6f);
	free(p);
	free(q);
	free(g);
	free(b1);
	free(b2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_onecycle_is_pytorch_onecycle),
		cmocka_unit_test(test_warmup_epochs_and_cosine),
		cmocka_unit_test(test_wd_skip_keys_and_dump),
		cmocka_unit_test(test_decay_segments_and_update),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
