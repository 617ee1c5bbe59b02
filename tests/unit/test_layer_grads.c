/*
 * test_layer_grads.c - every layer type's gradient against central finite
 * differences, through whole networks that together use every type of the
 * table (conv2d with stride, padding and without bias, batchnorm in its
 * train and affine = false forms, relu, leaky_relu, maxpool, avgpool,
 * global_avgpool, dropout, flatten, dense, softmax_xent with and without
 * label smoothing); conv2d's stride and padding against a direct
 * convolution on odd sizes; avgpool and label smoothing against their
 * formulas; the new keys' dump and hash; a backend without the new kinds'
 * kernels refusing them.
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
#include "layers/layer.h"
#include "model.h"
#include "ops.h"
#include "net_test_util.h"

/* Every parameter of the network's gradient (training pass over n samples) against central differences. */
static void check_network(const char *text, int n)
{
	config c;
	model m;
	net_workspace ws;
	assert_int_equal(ntu_parse(&c, text), 0);
	assert_int_equal(model_build(&c, &m), 0);
	assert_int_equal(net_workspace_alloc(&m, backend_cpu(), n, &ws), 0);
	float *p = calloc(m.n_params, sizeof(float)), *g = calloc(m.n_params, sizeof(float));
	model_init_params(&m, 11, p);
	for (size_t i = 0; i < m.n_params; i++)
		p[i] += 0.1f * (float)(ntu_uniform() - 0.5); /* biases and BatchNorm's scale away from 0 and 1 */
	size_t in = (size_t)n * m.in_c * m.in_h * m.in_w;
	float *x = malloc(in * sizeof(float));
	for (size_t i = 0; i < in; i++)
		x[i] = (float)(ntu_uniform() * 2 - 1);
	uint32_t samples[8];
	uint8_t labels[8];
	for (int i = 0; i < n; i++) {
		samples[i] = (uint32_t)(i * 7 + 1);
		labels[i] = (uint8_t)(i % m.classes);
	}
	batch_info b = {n, samples, labels, 3, 0, 1, NULL, NULL};
	memcpy(ws.input, x, in * sizeof(float));
	ntu_net_loss(&m, p, &ws, &b);
	net_backward(&m, backend_cpu(), p, g, &ws, &b);
	int checked = 0, bad = 0;
	for (int t = 0; t < m.n_tensors; t++) {
		const tensor_view *v = &m.tensors[t];
		for (size_t j = 0; j < v->numel; j++) {
			float *w = &p[v->offset + j], w0 = *w;
			const float h = 2e-4f;
			*w = w0 + h;
			double lp = ntu_net_loss(&m, p, &ws, &b);
			*w = w0 - h;
			double lm = ntu_net_loss(&m, p, &ws, &b);
			*w = w0;
			double fd = (lp - lm) / ((double)(w0 + h) - (double)(w0 - h));
			/* relu/maxpool kinks may lie within h (BatchNorm moves a whole channel at once):
			 * rare misses are allowed, a systematic one is not */
			if (fabs(fd - g[v->offset + j]) > 1e-2 * (1 + fabs(fd))) {
				print_message("  (%s[%zu]: backward %.6g, finite difference %.6g)\n", v->name, j,
					      (double)g[v->offset + j], fd);
				bad++;
			}
			checked++;
		}
	}
	assert_true(checked > 50);
	if (bad > 2)
		fail_msg("%d of %d gradients differ from their finite differences", bad, checked);
	net_workspace_free(&m, backend_cpu(), &ws);
	free(p);
	free(g);
	free(x);
}

static void test_gradients_conv_stride_pad_nobias_batchnorm_avgpool_smoothing(void **state)
{
	(void)state;
	check_network("[model]\ninput = 2x7x6\n"
		      "[layer.conv1]\ntype = conv2d\nfilters = 3\nkernel = 3\nstride = 2\npadding = 1\nbias = false\n"
		      "[layer.bn1]\ntype = batchnorm\n"
		      "[layer.relu1]\ntype = relu\n"
		      "[layer.pool]\ntype = avgpool\npool = 2\nstride = 1\n"
		      "[layer.flat]\ntype = flatten\n"
		      "[layer.fc]\ntype = dense\nunits = 4\n"
		      "[layer.loss]\ntype = softmax_xent\nlabel_smoothing = 0.1\n",
		      4);
}

static void test_gradients_same_leaky_maxpool_bn_global_dropout_dense(void **state)
{
	(void)state;
	check_network("[model]\ninput = 1x6x5\n"
		      "[layer.conv1]\ntype = conv2d\nfilters = 2\nkernel = 2x3\npadding = same\n"
		      "[layer.act]\ntype = leaky_relu\nslope = 0.1\n"
		      "[layer.pool]\ntype = maxpool\npool = 2\nstride = 1\n"
		      "[layer.bn]\ntype = batchnorm2d\nmomentum = 0.5\n"
		      "[layer.gap]\ntype = global_avgpool\n"
		      "[layer.fc1]\ntype = dense\nunits = 5\nactivation = relu\n"
		      "[layer.drop]\ntype = dropout\nrate = 0.2\n"
		      "[layer.fc2]\ntype = dense\nunits = 3\n"
		      "[layer.loss]\ntype = softmax_xent\n",
		      5);
}

static void test_gradients_pointwise_stride_bn_without_affine(void **state)
{
	(void)state;
	check_network("[model]\ninput = 3x5x5\n"
		      "[layer.down]\ntype = conv2d\nfilters = 4\nkernel = 1\nstride = 2\nbias = false\n"
		      "[layer.bn]\ntype = batchnorm\naffine = false\n"
		      "[layer.conv2]\ntype = conv2d\nfilters = 2\nkernel = 3\npadding = 1x2\nstride = 1x2\n"
		      "[layer.gap]\ntype = global_avgpool\n"
		      "[layer.flat]\ntype = flatten\n"
		      "[layer.fc]\ntype = dense\nunits = 3\n"
		      "[layer.loss]\ntype = softmax_xent\n",
		      3);
}

/* y[o, oh, ow] = b[o] + sum w[o, c, i, j] x[c, oh*sh - pt + i, ow*sw - pl + j] (zeros outside). */
static void direct_conv(const conv_desc *d, const float *x, const float *w, const float *b, float *y)
{
	for (int o = 0; o < d->out_c; o++)
		for (int oh = 0; oh < d->out_h; oh++)
			for (int ow = 0; ow < d->out_w; ow++) {
				double s = b ? b[o] : 0.0;
				for (int c = 0; c < d->in_c; c++)
					for (int i = 0; i < d->k_h; i++)
						for (int j = 0; j < d->k_w; j++) {
							int r = oh * d->stride_h - d->pad_top + i, q = ow * d->stride_w - d->pad_left + j;
							if (r < 0 || r >= d->in_h || q < 0 || q >= d->in_w)
								continue;
							s += (double)w[((o * d->in_c + c) * d->k_h + i) * d->k_w + j] *
							     x[(c * d->in_h + r) * d->in_w + q];
						}
				y[(o * d->out_h + oh) * d->out_w + ow] = (float)s;
			}
}

/* conv2d's output size is PyTorch's, and its values a direct convolution's, on odd sizes. */
static void test_conv_stride_padding_against_direct_convolution(void **state)
{
	(void)state;
	static const struct {
		const char *keys;
		int in_c, h, w, oh, ow;
	} cases[] = {
		{"filters = 3\nkernel = 3\nstride = 2\npadding = 1\n", 3, 7, 5, 4, 3},
		{"filters = 2\nkernel = 1\nstride = 2\nbias = false\n", 2, 7, 6, 4, 3},
		{"filters = 2\nkernel = 3x2\nstride = 1x2\npadding = 2x1\n", 2, 5, 4, 7, 3},
		{"filters = 4\nkernel = 3\nstride = 3\npadding = same\n", 1, 8, 7, 3, 3},
		{"filters = 2\nkernel = 5\nstride = 2\npadding = 2\nbias = false\n", 3, 9, 9, 5, 5},
	};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		char text[512];
		snprintf(text, sizeof text,
			 "[model]\ninput = %dx%dx%d\n[layer.c]\ntype = conv2d\n%s[layer.f]\ntype = flatten\n"
			 "[layer.l]\ntype = softmax_xent\n",
			 cases[k].in_c, cases[k].h, cases[k].w, cases[k].keys);
		config c;
		model m;
		assert_int_equal(ntu_parse(&c, text), 0);
		assert_int_equal(model_build(&c, &m), 0);
		const layer *l = &m.layers[0];
		if (l->out_h != cases[k].oh || l->out_w != cases[k].ow)
			fail_msg("case %zu: output %dx%d, PyTorch's %dx%d", k, l->out_h, l->out_w, cases[k].oh, cases[k].ow);
		const conv_desc *d = LAYER_STATE(const conv_desc, l);
		const bool bias = !strstr(cases[k].keys, "bias = false");
		assert_int_equal(l->n_views, bias ? 2 : 1);
		const int n = 3;
		size_t in_sz = l->in_numel, out_sz = l->out_numel;
		float *x = malloc(n * in_sz * sizeof(float)), *y = malloc(n * out_sz * sizeof(float));
		float *want = malloc(out_sz * sizeof(float)), *p = calloc(m.n_params, sizeof(float));
		for (size_t i = 0; i < n * in_sz; i++)
			x[i] = (float)(ntu_uniform() * 2 - 1);
		for (size_t i = 0; i < m.n_params; i++)
			p[i] = (float)(ntu_uniform() - 0.5);
		const float *w = p + m.tensors[l->first_view].offset;
		const float *b = bias ? p + m.tensors[l->first_view + 1].offset : NULL;
		const backend *be = backend_cpu();
		float *ws = be->alloc(be->conv2d_workspace(d, n));
		be->conv2d_forward(d, n, x, w, b, y, ws);
		for (int s = 0; s < n; s++) {
			direct_conv(d, x + s * in_sz, w, b, want);
			for (size_t i = 0; i < out_sz; i++)
				if (fabsf(y[s * out_sz + i] - want[i]) > 1e-5f * (1 + fabsf(want[i])))
					fail_msg("case %zu, sample %d, output %zu: %.7g, direct %.7g", k, s, i,
						 (double)y[s * out_sz + i], (double)want[i]);
		}
		be->release(ws);
		free(x);
		free(y);
		free(want);
		free(p);
	}
}

static void test_conv_padding_and_bias_keys(void **state)
{
	(void)state;
	config c, d;
	model a, b;
	const char *net = "[model]\ninput = 1x6x6\n[layer.c]\ntype = conv2d\nfilters = 2\nkernel = 3\npadding = 1\n"
			  "bias = false\n[layer.f]\ntype = flatten\n[layer.l]\ntype = softmax_xent\nlabel_smoothing = 0.2\n";
	assert_int_equal(ntu_parse(&c, net), 0);
	assert_int_equal(model_build(&c, &a), 0);
	char *text = config_dump(&c);
	assert_non_null(strstr(text, "padding = 1x1\nbias = false\n"));
	assert_non_null(strstr(text, "label_smoothing = 0.2"));
	assert_int_equal(ntu_parse(&d, text), 0);
	assert_int_equal(model_build(&d, &b), 0);
	assert_true(a.hash == b.hash);
	free(text);
	/* padding, bias and smoothing are part of the architecture */
	const char *changes[] = {"layer.c.padding=valid", "layer.c.bias=true", "layer.l.label_smoothing=0"};
	for (int i = 0; i < 3; i++) {
		assert_int_equal(ntu_parse(&d, net), 0);
		assert_int_equal(config_set(&d, changes[i]), 0);
		assert_int_equal(model_build(&d, &b), 0);
		assert_true(a.hash != b.hash);
	}
	/* without the new keys nothing new is dumped */
	assert_int_equal(ntu_parse(&d, "[model]\ninput = 1x6x6\n[layer.c]\ntype = conv2d\nfilters = 2\nkernel = 3\n"
				   "[layer.f]\ntype = flatten\n[layer.l]\ntype = softmax_xent\n"), 0);
	text = config_dump(&d);
	assert_null(strstr(text, "bias"));
	assert_null(strstr(text, "label_smoothing"));
	assert_non_null(strstr(text, "padding = valid\n"));
	free(text);
	/* bad values */
	assert_int_equal(config_set(&c, "layer.c.padding=-1"), EXIT_USAGE);
	assert_int_equal(config_set(&c, "layer.c.padding=wide"), EXIT_USAGE);
	assert_int_equal(config_set(&c, "layer.c.padding=1x"), EXIT_USAGE);
	assert_int_equal(config_set(&c, "layer.c.padding=1x2x3"), EXIT_USAGE);
	assert_int_equal(config_set(&c, "layer.c.padding=0x1"), 0); /* PyTorch's (0, 1) */
	assert_true(model_build(&c, &a) == 0 && a.layers[0].out_h == 4 && a.layers[0].out_w == 6);
	assert_int_equal(config_set(&c, "layer.c.bias=maybe"), EXIT_USAGE);
	assert_int_equal(config_set(&c, "layer.l.label_smoothing=1.5"), EXIT_USAGE);
	/* a padding as large as the kernel is refused at build, naming the layer */
	assert_int_equal(config_set(&c, "layer.c.padding=3"), 0);
	assert_int_equal(model_build(&c, &a), EXIT_USAGE);
}

/* avgpool and global_avgpool: window means and an evenly spread gradient. */
static void test_avgpool_against_hand_values(void **state)
{
	(void)state;
	config c;
	model m;
	assert_int_equal(ntu_parse(&c, "[model]\ninput = 2x3x5\n[layer.p]\ntype = avgpool\npool = 2\nstride = 1x2\n"
				   "[layer.g]\ntype = global_avgpool\n[layer.l]\ntype = softmax_xent\n"), 0);
	assert_int_equal(model_build(&c, &m), 0);
	assert_true(m.layers[0].out_h == 2 && m.layers[0].out_w == 2 && m.layers[1].out_c == 2 &&
		    m.layers[1].out_h == 1);
	net_workspace ws;
	assert_int_equal(net_workspace_alloc(&m, backend_cpu(), 1, &ws), 0);
	for (int i = 0; i < 30; i++)
		ws.input[i] = (float)i;
	uint32_t s = 0;
	uint8_t y = 1;
	batch_info b = {1, &s, &y, 1, 0, 1, NULL, NULL};
	double loss;
	int correct;
	net_forward(&m, backend_cpu(), NULL, &ws, &b, &loss, &correct);
	/* channel 0 rows {0..4}, {5..9}, {10..14}: windows at columns 0 and 2 */
	const float want[8] = {3, 5, 8, 10, 18, 20, 23, 25};
	for (int i = 0; i < 8; i++)
		assert_true(ws.act[0][i] == want[i]);
	assert_true(ws.act[1][0] == 6.5f && ws.act[1][1] == 21.5f);
	/* backward: d(loss)/d(logits) spread evenly, the uncovered last column gets nothing */
	net_backward(&m, backend_cpu(), NULL, NULL, &ws, &b);
	const float g0 = ws.grad[1][0];
	assert_true(ws.grad[0][0] == g0 / 4.0f);
	float *dx = malloc(30 * sizeof(float));
	layer_call call = {.n = 1, .in_numel = 15 * 2, .out_numel = 8, .dout = ws.grad[0], .din = dx,
			   .state = &m.layers[0].state};
	ws.kernels[0]->backward(backend_cpu(), &call);
	assert_true(dx[0] == ws.grad[0][0] / 4.0f && dx[4] == 0.0f && dx[9] == 0.0f);
	assert_true(dx[6] == (ws.grad[0][0] + ws.grad[0][2]) / 4.0f || dx[6] == ws.grad[0][0] / 4.0f + ws.grad[0][2] / 4.0f);
	free(dx);
	net_workspace_free(&m, backend_cpu(), &ws);
}

/* maxpool and avgpool share pool.c: each its own name in the check's message, the same keys and dump. */
static void test_pool_keys_shared_by_both_types(void **state)
{
	(void)state;
	const char *types[] = {"maxpool", "avgpool"};
	for (int i = 0; i < 2; i++) {
		layer_spec s;
		memset(&s, 0, sizeof s);
		snprintf(s.name, sizeof s.name, "p%d", i);
		s.type = layer_type_find(types[i]);
		assert_non_null(s.type);
		char err[256] = "", want[64], dump[128];
		assert_false(s.type->check(&s, err, sizeof err));
		snprintf(want, sizeof want, "[layer.p%d] %s needs pool", i, types[i]);
		assert_string_equal(err, want);
		assert_true(s.type->set(&s, "pool", "3", err, sizeof err));
		s.type->dump(&s, dump, sizeof dump);
		assert_string_equal(dump, "pool = 3x3\nstride = 3x3\n");
		assert_true(s.type->set(&s, "stride", "1x2", err, sizeof err));
		assert_true(s.type->check(&s, err, sizeof err));
		s.type->dump(&s, dump, sizeof dump);
		assert_string_equal(dump, "pool = 3x3\nstride = 1x2\n");
		assert_false(s.type->set(&s, "kernel", "3", err, sizeof err));
		assert_false(s.type->set(&s, "pool", "0", err, sizeof err));
	}
}

/* PyTorch's CrossEntropyLoss(label_smoothing = e): target (1 - e) onehot + e / K. */
static void test_label_smoothing_against_the_formula(void **state)
{
	(void)state;
	config c;
	model m;
	assert_int_equal(ntu_parse(&c, "[model]\ninput = 4x1x1\n[layer.l]\ntype = softmax_xent\nlabel_smoothing = 0.3\n"), 0);
	assert_int_equal(model_build(&c, &m), 0);
	net_workspace ws;
	assert_int_equal(net_workspace_alloc(&m, backend_cpu(), 2, &ws), 0);
	const float z[8] = {0.5f, -1.0f, 2.0f, 0.1f, 3.0f, 0.0f, -0.5f, 1.0f};
	memcpy(ws.input, z, sizeof z);
	uint32_t s[2] = {0, 1};
	uint8_t y[2] = {2, 1};
	batch_info b = {2, s, y, 1, 0, 1, NULL, NULL};
	double loss;
	int correct;
	float dz[8] = {0};
	net_forward(&m, backend_cpu(), NULL, &ws, &b, &loss, &correct);
	double want = 0;
	for (int i = 0; i < 2; i++) {
		double mx = -1e9, sum = 0;
		for (int j = 0; j < 4; j++)
			mx = fmax(mx, z[i * 4 + j]);
		for (int j = 0; j < 4; j++)
			sum += exp(z[i * 4 + j] - mx);
		for (int j = 0; j < 4; j++) {
			double logp = z[i * 4 + j] - mx - log(sum), t = (j == y[i] ? 0.7 : 0.0) + 0.3 / 4;
			want -= t * logp;
			dz[i * 4 + j] = (float)(exp(logp) - t);
		}
	}
	assert_true(fabs(loss - want) < 1e-6 * (1 + want));
	assert_int_equal(correct, 1);
	net_workspace_free(&m, backend_cpu(), &ws);
	/* the gradient, through a dense layer in front (the loss writes it into that layer's gradient) */
	assert_int_equal(ntu_parse(&c, "[model]\ninput = 4x1x1\n[layer.fc]\ntype = dense\nunits = 4\n"
				   "[layer.l]\ntype = softmax_xent\nlabel_smoothing = 0.3\n"), 0);
	assert_int_equal(model_build(&c, &m), 0);
	assert_int_equal(net_workspace_alloc(&m, backend_cpu(), 2, &ws), 0);
	float *p = calloc(m.n_params, sizeof(float));
	for (int i = 0; i < 4; i++)
		p[m.tensors[0].offset + (size_t)i * 5] = 1.0f; /* identity */
	memcpy(ws.input, z, sizeof z);
	net_forward(&m, backend_cpu(), p, &ws, &b, &loss, &correct);
	for (int i = 0; i < 8; i++)
		if (fabsf(ws.grad[0][i] - dz[i]) > 1e-6f)
			fail_msg("d(logits)[%d] = %.7g, formula %.7g", i, (double)ws.grad[0][i], (double)dz[i]);
	free(p);
	net_workspace_free(&m, backend_cpu(), &ws);
}

/* A backend without the new kinds' kernels (the GPU today) refuses each of them at start. */
static void test_backend_without_kernels_refuses_the_new_layers(void **state)
{
	(void)state;
	const char *nets[] = {
		"[model]\ninput = 2x4x4\n[layer.bn]\ntype = batchnorm\n[layer.f]\ntype = flatten\n[layer.l]\ntype = softmax_xent\n",
		"[model]\ninput = 2x4x4\n[layer.p]\ntype = avgpool\npool = 2\n[layer.f]\ntype = flatten\n[layer.l]\ntype = softmax_xent\n",
		"[model]\ninput = 2x4x4\n[layer.g]\ntype = global_avgpool\n[layer.l]\ntype = softmax_xent\n",
	};
	backend lacking = *backend_cpu();
	lacking.name = "lacking";
	lacking.layer_kernels = ntu_no_kernels;
	for (int i = 0; i < 3; i++) {
		config c;
		model m;
		net_workspace ws;
		assert_int_equal(ntu_parse(&c, nets[i]), 0);
		assert_int_equal(model_build(&c, &m), 0);
		assert_int_equal(net_workspace_alloc(&m, &lacking, 2, &ws), EXIT_USAGE);
		assert_int_equal(net_workspace_alloc(&m, backend_cpu(), 2, &ws), 0);
		net_workspace_free(&m, backend_cpu(), &ws);
	}
}

int main(void)
{
	backend_cpu_set_threads(2);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gradients_conv_stride_pad_nobias_batchnorm_avgpool_smoothing),
		cmocka_unit_test(test_gradients_same_leaky_maxpool_bn_global_dropout_dense),
		cmocka_unit_test(test_gradients_pointwise_stride_bn_without_affine),
		cmocka_unit_test(test_conv_stride_padding_against_direct_convolution),
		cmocka_unit_test(test_conv_padding_and_bias_keys),
		cmocka_unit_test(test_avgpool_against_hand_values),
		cmocka_unit_test(test_pool_keys_shared_by_both_types),
		cmocka_unit_test(test_label_smoothing_against_the_formula),
		cmocka_unit_test(test_backend_without_kernels_refuses_the_new_layers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
