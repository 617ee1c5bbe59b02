/*
 * test_graph.c - networks that are graphs: "inputs = a, b", the add and concat
 * layers (CPU kernels against their formulas), shape errors that name the
 * layer, a residual network's gradient as a whole against finite differences
 * (outputs read by several layers: their gradients added in one fixed order),
 * the same bits on every run, repeated blocks
 * ([block.T.NAME], [repeat.R]) and the unchanged hashes of sequential configs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "contract.h"
#include "model.h"
#include "ops.h"
#include "layers/layer.h"
#include "net_test_util.h"

/* add: y = a + b + c in that order; backward copies dout to each non-NULL din. */
static void test_add_kernels(void **state)
{
	(void)state;
	float a[6], b[6], c3[6], y[6], d0[6], d2[6], dout[6];
	for (int i = 0; i < 6; i++) {
		a[i] = (float)ntu_uniform() - 0.5f;
		b[i] = (float)ntu_uniform() * 1e-3f;
		c3[i] = 1e4f * (float)ntu_uniform();
		dout[i] = (float)i - 2.5f;
	}
	layer_call c = {.n = 2, .in_numel = 3, .out_numel = 3, .y = y, .dout = dout, .n_in = 3,
			.ins = {a, b, c3}, .dins = {d0, NULL, d2}, .ins_numel = {3, 3, 3}};
	ntu_cpu_kernels("add")->forward(backend_cpu(), &c);
	for (int i = 0; i < 6; i++)
		assert_true(y[i] == (a[i] + b[i]) + c3[i]);
	ntu_cpu_kernels("add")->backward(backend_cpu(), &c);
	assert_memory_equal(d0, dout, sizeof dout);
	assert_memory_equal(d2, dout, sizeof dout);
	/* in place, as the model adds shared gradients: y = ins[0] */
	memcpy(y, a, sizeof a);
	layer_call acc = {.n = 3, .in_numel = 2, .out_numel = 2, .y = y, .n_in = 2, .ins = {y, b}};
	ntu_cpu_kernels("add")->forward(backend_cpu(), &acc);
	for (int i = 0; i < 6; i++)
		assert_true(y[i] == a[i] + b[i]);
}

/* concat: per sample, the inputs' values one after the other; backward the slices back. */
static void test_concat_kernels(void **state)
{
	(void)state;
	const float a[4] = {1, 2, 3, 4}, b[6] = {10, 11, 12, 13, 14, 15};
	float y[10], da[4], db[6];
	const float dout[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
	layer_call c = {.n = 2, .out_numel = 5, .y = y, .dout = dout, .n_in = 2, .ins = {a, b},
			.dins = {da, db}, .ins_numel = {2, 3}};
	ntu_cpu_kernels("concat")->forward(backend_cpu(), &c);
	const float want[10] = {1, 2, 10, 11, 12, 3, 4, 13, 14, 15};
	assert_memory_equal(y, want, sizeof want);
	ntu_cpu_kernels("concat")->backward(backend_cpu(), &c);
	const float wa[4] = {0, 1, 5, 6}, wb[6] = {2, 3, 4, 7, 8, 9};
	assert_memory_equal(da, wa, sizeof wa);
	assert_memory_equal(db, wb, sizeof wb);
}

/*
 * A small residual network: the stem's output is read by three layers (the
 * block's first conv, a 1x1 projection and the concat), the block's add sums
 * two branches, and the concat joins the block's output with the stem's.
 */
static const char residual_net[] =
	"[model]\ninput = 2x5x5\n"
	"[layer.stem]\ntype = conv2d\nfilters = 3\nkernel = 3\npadding = same\n"
	"[layer.stem_act]\ntype = leaky_relu\nslope = 0.1\n"
	"[layer.b.conv1]\ntype = conv2d\nfilters = 4\nkernel = 3\npadding = same\nactivation = relu\n"
	"[layer.b.conv2]\ntype = conv2d\nfilters = 4\nkernel = 3\npadding = same\n"
	"[layer.b.proj]\ntype = conv2d\ninputs = stem_act\nfilters = 4\nkernel = 1\n"
	"[layer.b.add]\ntype = add\ninputs = b.conv2, b.proj\n"
	"[layer.b.act]\ntype = leaky_relu\nslope = 0.05\n"
	"[layer.cat]\ntype = concat\ninputs = b.act, stem_act\n"
	"[layer.pool]\ntype = maxpool\npool = 2\n"
	"[layer.flat]\ntype = flatten\n"
	"[layer.fc]\ntype = dense\nunits = 4\n"
	"[layer.loss]\ntype = softmax_xent\n";

static void test_inputs_shapes_dump_and_hash(void **state)
{
	(void)state;
	config c, d;
	model m, m2;
	assert_int_equal(ntu_build(&c, &m, residual_net), 0);
	assert_int_equal(m.n_layers, 13); /* b.conv1's activation adds b.conv1.relu */
	const layer *proj = &m.layers[5], *add = &m.layers[6], *cat = &m.layers[8];
	assert_string_equal(proj->spec.name, "b.proj");
	assert_int_equal(proj->n_in, 1);
	assert_int_equal(proj->in_idx[0], 1);
	assert_int_equal(add->n_in, 2);
	assert_int_equal(add->in_idx[0], 4);
	assert_int_equal(add->in_idx[1], 5);
	assert_int_equal(cat->out_c, 7);
	assert_int_equal(cat->out_h, 5);
	assert_int_equal(m.layers[3].in_idx[0], 2); /* default: the layer before (conv1's relu) */
	/* the dump keeps the inputs and parses back to the same network */
	char *text = config_dump(&c);
	assert_non_null(text);
	assert_non_null(strstr(text, "[layer.b.add]\ntype = add\ninputs = b.conv2, b.proj\n"));
	assert_int_equal(ntu_build(&d, &m2, text), 0);
	assert_true(m.hash == m2.hash);
	free(text);
	/* the inputs are part of the architecture: the same shapes from another layer differ */
	assert_int_equal(config_set(&c, "layer.b.add.inputs=b.proj, b.conv2"), 0);
	assert_int_equal(model_build(&c, &m2), 0);
	assert_true(m.hash != m2.hash);
	/* "input" is the network's input; a name with an activation means its relu */
	assert_int_equal(config_set(&c, "layer.b.proj.inputs=input"), 0);
	assert_int_equal(model_build(&c, &m2), 0);
	assert_int_equal(m2.layers[5].in_idx[0], -1);
	assert_int_equal(config_set(&c, "layer.b.proj.inputs=b.conv1"), 0);
	assert_int_equal(model_build(&c, &m2), 0);
	assert_int_equal(m2.layers[5].in_idx[0], 3);
	/* an output nobody reads (b.conv2 once the add skips it) */
	assert_int_equal(config_set(&c, "layer.b.add.inputs=b.conv1, b.proj"), 0);
	assert_int_equal(model_build(&c, &m2), EXIT_USAGE);
}

/* Wrong graphs are refused, each with EXIT_USAGE (the messages name the layer). */
static void test_graph_errors(void **state)
{
	(void)state;
	config c;
	model m;
	static const char head[] = "[model]\ninput = 2x4x4\n"
				   "[layer.a]\ntype = conv2d\nfilters = 2\nkernel = 1\n"
				   "[layer.b]\ntype = conv2d\nfilters = 3\nkernel = 1\n";
	static const char tail[] = "[layer.f]\ntype = flatten\n[layer.loss]\ntype = softmax_xent\n";
	static const char *const bad[] = {
		"[layer.x]\ntype = add\ninputs = a, nowhere\n",            /* unknown name */
		"[layer.x]\ntype = add\ninputs = a, x\n",                  /* itself */
		"[layer.x]\ntype = add\ninputs = a, a\n",                  /* twice */
		"[layer.x]\ntype = add\ninputs = a, b\n",                  /* 2 vs 3 channels */
		"[layer.x]\ntype = add\ninputs = b\n",                     /* one input */
		"[layer.x]\ntype = add\ninputs = \n",                      /* none */
		"[layer.x]\ntype = conv2d\nfilters = 2\nkernel = 1\ninputs = a, b\n", /* conv takes one */
		"[layer.p]\ntype = maxpool\npool = 2\n[layer.x]\ntype = concat\ninputs = a, p\n", /* 4x4 vs 2x2 */
		"[layer.x]\ntype = relu\ninputs = a\n",                    /* b is read by nobody */
	};
	char text[1024];
	snprintf(text, sizeof text, "%s[layer.x]\ntype = concat\ninputs = a, b, input\n%s", head, tail);
	assert_int_equal(ntu_build(&c, &m, text), 0);
	assert_int_equal(m.layers[2].out_c, 7);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(text, sizeof text, "%s%s%s", head, bad[i], tail);
		if (ntu_build(&c, &m, text) != EXIT_USAGE)
			fail_msg("accepted: %s", bad[i]);
	}
	/* a later layer cannot be an input, even with --set */
	snprintf(text, sizeof text, "%s%s", head, tail);
	assert_int_equal(ntu_parse(&c, text), 0);
	assert_int_equal(config_set(&c, "layer.a.inputs=b"), EXIT_USAGE);
	/* a layer named x.relu beside x's activation */
	assert_int_equal(ntu_build(&c, &m, "[model]\ninput = 5x1x1\n[layer.x]\ntype = dense\nunits = 3\nactivation = relu\n"
				       "[layer.x.relu]\ntype = relu\n[layer.loss]\ntype = softmax_xent\n"),
			 EXIT_USAGE);
}

/* Parameters near Glorot with nonzero biases, inputs in [-1, 1). */
static void fill(const model *m, net_workspace *ws, int n, float *p)
{
	model_init_params(m, 9, p);
	for (size_t i = 0; i < m->n_params; i++)
		p[i] += 0.05f * (float)(ntu_uniform() - 0.5);
	for (size_t i = 0; i < (size_t)n * m->in_c * m->in_h * m->in_w; i++)
		ws->input[i] = (float)(ntu_uniform() * 2 - 1);
}

/* Every parameter's gradient of the network in text against central finite differences;
 * returns how many values of tensors whose name starts with prefix were checked. */
static int check_gradients(const char *text, int n, const char *prefix)
{
	config c;
	model m;
	net_workspace ws;
	assert_int_equal(ntu_build(&c, &m, text), 0);
	assert_int_equal(net_workspace_alloc(&m, backend_cpu(), n, &ws), 0);
	assert_non_null(ws.tmp[0]); /* an output is read by several layers: later readers add */
	float *p = calloc(m.n_params, sizeof(float)), *g = calloc(m.n_params, sizeof(float));
	fill(&m, &ws, n, p);
	uint32_t samples[4] = {0, 1, 2, 3};
	uint8_t labels[4] = {0, 3, 1, 2};
	batch_info b = {n, samples, labels, 1, 0, 1, NULL, NULL};
	ntu_net_loss(&m, p, &ws, &b);
	net_backward(&m, backend_cpu(), p, g, &ws, &b);
	int checked = 0;
	for (int t = 0; t < m.n_tensors; t++) {
		const tensor_view *v = &m.tensors[t];
		for (size_t j = 0; j < v->numel; j++) {
			float *x = &p[v->offset + j], x0 = *x;
			/* a kink of relu or maxpool may lie within h: then a tenth of h must agree */
			double fd = 0;
			bool ok = false;
			for (float h = 1e-2f; h > 5e-4f && !ok; h /= 10) {
				*x = x0 + h;
				double lp = ntu_net_loss(&m, p, &ws, &b);
				*x = x0 - h;
				double lm = ntu_net_loss(&m, p, &ws, &b);
				*x = x0;
				fd = (lp - lm) / ((double)(x0 + h) - (double)(x0 - h));
				ok = fabs(fd - g[v->offset + j]) <= 2e-2 * (1 + fabs(fd));
			}
			if (!ok)
				fail_msg("%s[%zu]: backward %.6g, finite difference %.6g", v->name, j,
					 (double)g[v->offset + j], fd);
			checked += strncmp(v->name, prefix, strlen(prefix)) == 0;
		}
	}
	net_workspace_free(&m, backend_cpu(), &ws);
	free(p);
	free(g);
	return checked;
}

/* The residual network above: every parameter, the stem's (read three times) included. */
static void test_residual_gradient_matches_finite_differences(void **state)
{
	(void)state;
	assert_int_equal(check_gradients(residual_net, 3, "stem."), 3 * 2 * 9 + 3);
}

/* A ResNet basic block as configs/resnet20.ini writes it (conv-BN-relu-conv-BN, a 1x1
 * conv + BN projection of the block's input, add, relu) after a stem, as a whole. */
static void test_basic_block_gradient_matches_finite_differences(void **state)
{
	(void)state;
	static const char block[] =
		"[model]\ninput = 2x6x6\n"
		"[layer.conv1]\ntype = conv2d\nfilters = 3\nkernel = 3\npadding = 1\nbias = false\n"
		"[layer.bn1]\ntype = batchnorm\n[layer.relu]\ntype = relu\n"
		"[block.basic.conv1]\ntype = conv2d\nfilters = 4\nkernel = 3\nstride = 2\npadding = 1\nbias = false\n"
		"[block.basic.bn1]\ntype = batchnorm\n[block.basic.relu1]\ntype = relu\n"
		"[block.basic.conv2]\ntype = conv2d\nfilters = 4\nkernel = 3\npadding = 1\nbias = false\n"
		"[block.basic.bn2]\ntype = batchnorm\n"
		"[block.basic.downsample.0]\ntype = conv2d\ninputs = @in\nfilters = 4\nkernel = 1\nstride = 2\n"
		"bias = false\n"
		"[block.basic.downsample.1]\ntype = batchnorm\n"
		"[block.basic.add]\ntype = add\ninputs = bn2, downsample.1\n[block.basic.relu2]\ntype = relu\n"
		"[repeat.layer1]\nblock = basic\ncount = 1\n"
		"[layer.avgpool]\ntype = global_avgpool\n[layer.flatten]\ntype = flatten\n"
		"[layer.fc]\ntype = dense\nunits = 4\n[layer.loss]\ntype = softmax_xent\n";
	assert_int_equal(check_gradients(block, 4, "layer1.0."), 4 * 3 * 9 + 2 * 4 + 4 * 4 * 9 + 2 * 4 + 4 * 3 + 2 * 4);
}

/*
 * The residual network's gradients are the same bits on every run, whatever the
 * accumulation buffers held before (the shared sums are overwritten, then added
 * in one order).
 */
static void test_residual_gradient_same_bits_every_run(void **state)
{
	(void)state;
	config c;
	model m;
	net_workspace ws;
	const int n = 5;
	assert_int_equal(ntu_build(&c, &m, residual_net), 0);
	assert_int_equal(net_workspace_alloc(&m, backend_cpu(), n, &ws), 0);
	float *p = calloc(m.n_params, sizeof(float));
	float *g[2] = {calloc(m.n_params, sizeof(float)), calloc(m.n_params, sizeof(float))};
	fill(&m, &ws, n, p);
	uint32_t samples[5] = {0, 1, 2, 3, 4};
	uint8_t labels[5] = {0, 3, 1, 2, 2};
	batch_info b = {n, samples, labels, 1, 0, 1, NULL, NULL};
	for (int r = 0; r < 2; r++) {
		for (int i = 0; i < m.n_layers; i++) /* garbage in every gradient buffer */
			for (size_t e = 0; e < (size_t)n * m.layers[i].out_numel; e++)
				ws.grad[i][e] = (float)(r * 1e6 + (double)e);
		for (size_t e = 0; e < (size_t)n * m.layers[1].out_numel; e++)
			ws.tmp[0][e] = -3.0f * (float)r;
		ntu_net_loss(&m, p, &ws, &b);
		net_backward(&m, backend_cpu(), p, g[r], &ws, &b);
	}
	assert_memory_equal(g[0], g[1], m.n_params * sizeof(float));
	bool nonzero = false;
	for (size_t i = 0; i < m.n_params; i++)
		nonzero |= g[0][i] != 0.0f;
	assert_true(nonzero);
	net_workspace_free(&m, backend_cpu(), &ws);
	free(p);
	free(g[0]);
	free(g[1]);
}

/*
 * Fused relus (BACKEND_CAP_FUSED_RELU): a relu after conv2d, batchnorm or add whose output
 * only it reads is done by that layer's forward; the loss, every parameter's gradient and the
 * network's outputs are the bits of the two passes (a backend without the capability). A relu
 * whose producer is read twice is not fused.
 */
static void test_fused_relus_are_the_two_passes_bit_for_bit(void **state)
{
	(void)state;
	static const char net[] =
		"[model]\ninput = 2x6x6\n"
		"[layer.c1]\ntype = conv2d\nfilters = 3\nkernel = 3\npadding = 1\nactivation = relu\n"
		"[layer.c2]\ntype = conv2d\nfilters = 4\nkernel = 3\npadding = 1\nbias = false\n"
		"[layer.bn]\ntype = batchnorm\n[layer.r2]\ntype = relu\n"
		"[layer.c3]\ntype = conv2d\nfilters = 4\nkernel = 1\n"
		"[layer.r3]\ntype = relu\n"                           /* c3 is read twice: not fused */
		"[layer.add]\ntype = add\ninputs = r3, c3\n[layer.r4]\ntype = relu\n"
		"[layer.flat]\ntype = flatten\n[layer.fc]\ntype = dense\nunits = 3\n"
		"[layer.loss]\ntype = softmax_xent\n";
	config c;
	model m;
	net_workspace ws[2];
	const int n = 4;
	assert_int_equal(ntu_build(&c, &m, net), 0);
	backend plain = *backend_cpu();
	plain.caps &= ~BACKEND_CAP_FUSED_RELU;
	assert_true(backend_cpu()->caps & BACKEND_CAP_FUSED_RELU);
	assert_int_equal(net_workspace_alloc(&m, backend_cpu(), n, &ws[0]), 0);
	assert_int_equal(net_workspace_alloc(&m, &plain, n, &ws[1]), 0);
	assert_null(ws[1].relu_by);
	int fused = 0;
	for (int i = 0; i < m.n_layers; i++) {
		const char *name = m.layers[i].spec.name;
		fused += ws[0].relu_by[i] >= 0;
		if (!strcmp(name, "r3"))
			assert_int_equal(ws[0].relu_by[i], -1);
		if (!strcmp(name, "c1.relu") || !strcmp(name, "r2") || !strcmp(name, "r4"))
			assert_true(ws[0].relu_by[i] >= 0);
	}
	assert_int_equal(fused, 3);
	float *p = calloc(m.n_params, sizeof(float));
	float *g[2] = {calloc(m.n_params, sizeof(float)), calloc(m.n_params, sizeof(float))};
	fill(&m, &ws[0], n, p);
	memcpy(ws[1].input, ws[0].input, (size_t)n * m.in_c * m.in_h * m.in_w * sizeof(float));
	uint32_t samples[4] = {0, 1, 2, 3};
	uint8_t labels[4] = {0, 2, 1, 2};
	batch_info b = {n, samples, labels, 1, 0, 1, NULL, NULL};
	double loss[2];
	for (int r = 0; r < 2; r++) {
		loss[r] = ntu_net_loss(&m, p, &ws[r], &b);
		net_backward(&m, backend_cpu(), p, g[r], &ws[r], &b);
	}
	assert_memory_equal(&loss[0], &loss[1], sizeof(double));
	assert_memory_equal(g[0], g[1], m.n_params * sizeof(float));
	for (int i = 0; i < m.n_layers; i++) /* every layer's output too (a fused producer's is its relu's) */
		if (!(m.layers[i].spec.type->flags & LT_LOSS) && ws[0].relu_of[i] < 0)
			assert_memory_equal(ws[0].act[i], ws[1].act[i], (size_t)n * m.layers[i].out_numel * sizeof(float));
	net_workspace_free(&m, backend_cpu(), &ws[0]);
	net_workspace_free(&m, &plain, &ws[1]);
	free(p);
	free(g[0]);
	free(g[1]);
}

/* A backend without "add" kernels runs sequential networks and refuses shared outputs. */
static void test_backend_without_add_refuses_shared_outputs(void **state)
{
	(void)state;
	config c;
	model m;
	net_workspace ws;
	backend lacking = *backend_cpu();
	lacking.name = "lacking";
	lacking.layer_kernels = ntu_no_kernels;
	assert_int_equal(ntu_build(&c, &m, "[model]\ninput = 1x4x4\n"
				       "[layer.a]\ntype = conv2d\nfilters = 2\nkernel = 1\nactivation = relu\n"
				       "[layer.b]\ntype = conv2d\nfilters = 2\nkernel = 1\ninputs = a\n"
				       "[layer.c]\ntype = conv2d\nfilters = 2\nkernel = 1\ninputs = a\n"
				       "[layer.m]\ntype = maxpool\npool = 2\ninputs = b\n"
				       "[layer.f]\ntype = flatten\n[layer.loss]\ntype = softmax_xent\n"),
			 EXIT_USAGE); /* c is read by nobody */
	assert_int_equal(ntu_build(&c, &m, "[model]\ninput = 1x4x4\n"
				       "[layer.a]\ntype = conv2d\nfilters = 2\nkernel = 1\nactivation = relu\n"
				       "[layer.b]\ntype = conv2d\nfilters = 2\nkernel = 1\ninputs = a\n"
				       "[layer.f]\ntype = flatten\n[layer.loss]\ntype = softmax_xent\n"),
			 0);
	assert_int_equal(net_workspace_alloc(&m, &lacking, 2, &ws), 0); /* sequential after all */
	assert_null(ws.acc);
	net_workspace_free(&m, &lacking, &ws);
	assert_int_equal(ntu_build(&c, &m, "[model]\ninput = 1x4x4\n"
				       "[layer.a]\ntype = conv2d\nfilters = 2\nkernel = 1\nactivation = relu\n"
				       "[layer.b]\ntype = conv2d\nfilters = 2\nkernel = 1\ninputs = a\n"
				       "[layer.c]\ntype = conv2d\nfilters = 2\nkernel = 1\ninputs = a\n"
				       "[layer.m]\ntype = maxpool\npool = 2\ninputs = b\n"
				       "[layer.m2]\ntype = maxpool\npool = 2\ninputs = c\n"
				       "[layer.x]\ntype = concat\ninputs = m, m2\n"
				       "[layer.f]\ntype = flatten\n[layer.loss]\ntype = softmax_xent\n"),
			 0);
	assert_int_equal(net_workspace_alloc(&m, &lacking, 2, &ws), EXIT_USAGE); /* concat, add */
	assert_int_equal(net_workspace_alloc(&m, backend_cpu(), 2, &ws), 0);
	assert_non_null(ws.acc);
	net_workspace_free(&m, backend_cpu(), &ws);
}

/* A template written once, repeated with per-instance variables, dropped layers and @in. */
static const char repeated[] =
	"[model]\ninput = 2x8x8\n"
	"[layer.conv1]\ntype = conv2d\nfilters = 4\nkernel = 3\npadding = same\nactivation = relu\n"
	"[block.basic.conv1]\ntype = conv2d\nfilters = ${planes}\nkernel = 3\nstride = ${stride}\n"
	"padding = same\nactivation = relu\n"
	"[block.basic.conv2]\ntype = conv2d\nfilters = ${planes}\nkernel = 3\npadding = same\n"
	"[block.basic.downsample.0]\nwhen = ${project}\ntype = conv2d\ninputs = @in\nfilters = ${planes}\n"
	"kernel = 1\nstride = ${stride}\n"
	"[block.basic.add]\ntype = add\ninputs = conv2, ${shortcut}\n"
	"[block.basic.relu]\ntype = relu\n"
	"[repeat.layer1]\nblock = basic\ncount = 2\nplanes = 4\nstride = 1\nproject = false\n"
	"shortcut = @in\n"
	"[repeat.layer2]\nblock = basic\ncount = 2\nplanes = 6\nstride = 1\nstride.0 = 2\nproject = no\n"
	"project.0 = yes\nshortcut = @in\nshortcut.0 = downsample.0\n"
	"[layer.flat]\ntype = flatten\n[layer.fc]\ntype = dense\nunits = 3\n"
	"[layer.loss]\ntype = softmax_xent\n";

static void test_repeated_blocks(void **state)
{
	(void)state;
	config c, d;
	model m, m2;
	assert_int_equal(ntu_build(&c, &m, repeated), 0);
	static const char *const names[] = {
		"conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.0.add", "layer1.0.relu",
		"layer1.1.conv1", "layer1.1.conv2", "layer1.1.add", "layer1.1.relu",
		"layer2.0.conv1", "layer2.0.conv2", "layer2.0.downsample.0", "layer2.0.add", "layer2.0.relu",
		"layer2.1.conv1", "layer2.1.conv2", "layer2.1.add", "layer2.1.relu", "flat", "fc", "loss"};
	assert_int_equal(c.n_layers, 21);
	for (int i = 0; i < 21; i++)
		assert_string_equal(c.layers[i].name, names[i]);
	/* @in of layer1.0 is conv1; layer2.0's add reads its projection, layer2.1's the block's input */
	assert_int_equal(c.layers[3].inputs[1], 0);
	assert_int_equal(c.layers[12].inputs[0], 10);
	assert_int_equal(c.layers[12].inputs[1], 11);
	assert_int_equal(c.layers[11].inputs[0], 8);
	assert_int_equal(c.layers[16].inputs[1], 13);
	assert_true(model_find_tensor(&m, "layer2.0.downsample.0.weight") >= 0);
	assert_true(model_find_tensor(&m, "layer1.1.conv2.bias") >= 0);
	assert_string_equal(m.layers[m.n_layers - 2].spec.name, "fc");
	assert_int_equal(m.layers[m.n_layers - 2].in_c, 6 * 4 * 4);
	/* the resolved config lists the generated layers and parses back to the same network */
	char *text = config_dump(&c);
	assert_non_null(text);
	assert_null(strstr(text, "[repeat."));
	assert_int_equal(ntu_build(&d, &m2, text), 0);
	assert_true(m.hash == m2.hash);
	free(text);
	/* generated layers take --set; repeats do not (they were expanded when the file was read) */
	assert_int_equal(config_set(&c, "layer.layer2.1.conv1.filters=6"), 0);
	assert_int_equal(config_set(&c, "repeat.layer2.count=3"), EXIT_USAGE);
}

static void test_repeated_block_errors(void **state)
{
	(void)state;
	config c;
	static const char tmpl[] = "[block.t.c]\ntype = conv2d\nfilters = ${f}\nkernel = 1\n";
	static const char tail[] = "[layer.flat]\ntype = flatten\n[layer.loss]\ntype = softmax_xent\n";
	static const char *const bad[] = {
		"[repeat.r]\nblock = t\ncount = 2\n",                  /* ${f} not set */
		"[repeat.r]\nblock = u\ncount = 2\nf = 2\n",           /* no such template */
		"[repeat.r]\nblock = t\nf = 2\n",                      /* no count */
		"[repeat.r]\nblock = t\ncount = 0\nf = 2\n",
		"[repeat.r]\nblock = t\ncount = 2\nf = 2\nf.x = 3\n",  /* bad instance */
		"[layer.r.1.c]\ntype = relu\n[repeat.r]\nblock = t\ncount = 2\nf = 2\n", /* clash */
		("[repeat.r]\nblock = t\ncount = 2\nf = 2\n[block.t.d]\ntype = relu\nwhen = maybe\n"
		 "[repeat.s]\nblock = t\ncount = 1\nf = 1\n"),        /* when is not a boolean */
	};
	char text[1024];
	snprintf(text, sizeof text, "%s[repeat.r]\nblock = t\ncount = 3\nf = 2\nf.2 = 5\n%s", tmpl, tail);
	assert_int_equal(ntu_parse(&c, text), 0);
	assert_int_equal(c.n_layers, 5);
	assert_string_equal(c.layers[2].name, "r.2.c");
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(text, sizeof text, "%s%s%s", tmpl, bad[i], tail);
		model m;
		if (ntu_build(&c, &m, text) == 0)
			fail_msg("accepted: %s", bad[i]);
	}
	/* a template after the repeat that uses it is not known yet */
	snprintf(text, sizeof text, "[repeat.r]\nblock = t\ncount = 1\nf = 2\n%s%s", tmpl, tail);
	assert_int_equal(ntu_parse(&c, text), EXIT_USAGE);
}

/* The architecture hash of the shipped sequential configs is what it was before graphs. */
static void test_sequential_configs_keep_their_hash(void **state)
{
	(void)state;
	const char *dir = getenv("CONFIGS");
	assert_non_null(dir);
	static const struct {
		const char *file;
		uint64_t hash;
		size_t n_params;
	} want[] = {{"mnist_cnn.ini", 0x4bf746cbdd41215eull, 1199888}, {"tiny.ini", 0x240bb49f03ecdd0bull, 2992}};
	for (size_t i = 0; i < 2; i++) {
		char path[1024];
		config c;
		model m;
		snprintf(path, sizeof path, "%s/%s", dir, want[i].file);
		config_defaults(&c);
		assert_int_equal(config_load_file(&c, path), 0);
		assert_int_equal(model_build(&c, &m), 0);
		if (m.hash != want[i].hash || m.n_params != want[i].n_params)
			fail_msg("%s: hash %016llx, %zu parameters", want[i].file, (unsigned long long)m.hash,
				 m.n_params);
	}
}

int main(void)
{
	ntu_rng_seed(0x2545F4914F6CDD1Dull); /* this file's stream, as before the shared helper */
	backend_cpu_set_threads(2);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_kernels),
		cmocka_unit_test(test_concat_kernels),
		cmocka_unit_test(test_inputs_shapes_dump_and_hash),
		cmocka_unit_test(test_graph_errors),
		cmocka_unit_test(test_residual_gradient_matches_finite_differences),
		cmocka_unit_test(test_basic_block_gradient_matches_finite_differences),
		cmocka_unit_test(test_residual_gradient_same_bits_every_run),
		cmocka_unit_test(test_fused_relus_are_the_two_passes_bit_for_bit),
		cmocka_unit_test(test_backend_without_add_refuses_shared_outputs),
		cmocka_unit_test(test_repeated_blocks),
		cmocka_unit_test(test_repeated_block_errors),
		cmocka_unit_test(test_sequential_configs_keep_their_hash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
