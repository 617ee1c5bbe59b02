/*
 * test_layers.c - the layer table (src/layers/): the leaky_relu layer added
 * by the recipe (its CPU kernels against the formula and central finite
 * differences, its config keys, dump and hash), a whole network's gradient
 * through the generic model against finite differences, and the refusal of a
 * network whose layer a backend cannot run.
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
#include "ops.h"
#include "net_test_util.h"

#define FD_STEP 1e-2f

/* Values in [-1, -0.05] or [0.05, 1]: more than 2*FD_STEP away from 0 (leaky_relu's kink). */
static float *away_from_zero(size_t n)
{
	float *p = malloc(sizeof(float) * n);
	assert_non_null(p);
	for (size_t i = 0; i < n; i++) {
		float v = (float)(0.05 + 0.95 * ntu_uniform());
		p[i] = ntu_uniform() < 0.5 ? -v : v;
	}
	return p;
}

static void test_leaky_relu_forward_is_pytorch_leaky_relu(void **state)
{
	(void)state;
	const float x[6] = {-2.0f, -0.5f, 0.0f, 0.25f, 3.0f, -1e-3f};
	float y[6];
	layer_call c = {.n = 2, .in_numel = 3, .out_numel = 3, .attr = {0.1f}, .in = x, .y = y};
	ntu_cpu_kernels("leaky_relu")->forward(backend_cpu(), &c);
	for (int i = 0; i < 6; i++)
		assert_true(y[i] == (x[i] > 0.0f ? x[i] : x[i] * 0.1f));
	assert_true(y[0] == -0.2f && y[2] == 0.0f && y[4] == 3.0f);
}

/* L = sum(y * r); dL/dx from backward against (L(x+h) - L(x-h)) / 2h, per element. */
static void test_leaky_relu_backward_matches_finite_differences(void **state)
{
	(void)state;
	const int n = 3;
	const size_t per = 37, total = n * per;
	const float slopes[3] = {0.01f, 0.2f, -0.3f};
	for (int s = 0; s < 3; s++) {
		float *x = away_from_zero(total), *r = away_from_zero(total);
		float *y = malloc(sizeof(float) * total), *dx = malloc(sizeof(float) * total);
		layer_call c = {.n = n, .in_numel = per, .out_numel = per, .attr = {slopes[s]}, .in = x, .y = y,
				.out = y, .dout = r, .din = dx};
		ntu_cpu_kernels("leaky_relu")->forward(backend_cpu(), &c);
		ntu_cpu_kernels("leaky_relu")->backward(backend_cpu(), &c);
		for (size_t i = 0; i < total; i++) {
			const float x0 = x[i];
			double L[2];
			float xs[2] = {x0 + FD_STEP, x0 - FD_STEP};
			for (int k = 0; k < 2; k++) {
				x[i] = xs[k];
				ntu_cpu_kernels("leaky_relu")->forward(backend_cpu(), &c);
				L[k] = 0;
				for (size_t j = 0; j < total; j++)
					L[k] += (double)y[j] * r[j];
			}
			x[i] = x0;
			double fd = (L[0] - L[1]) / ((double)xs[0] - xs[1]);
			if (fabs(fd - dx[i]) > 1e-4 * (1 + fabs(fd)))
				fail_msg("slope %g, element %zu: backward %.9g, finite difference %.9g", (double)slopes[s],
					 i, (double)dx[i], fd);
		}
		/* in place, as the model may call it */
		memcpy(dx, r, sizeof(float) * total);
		float *g = malloc(sizeof(float) * total);
		c.din = g;
		ntu_cpu_kernels("leaky_relu")->backward(backend_cpu(), &c);
		c.dout = dx;
		c.din = dx;
		ntu_cpu_kernels("leaky_relu")->backward(backend_cpu(), &c);
		assert_memory_equal(dx, g, sizeof(float) * total);
		free(g);
		free(x);
		free(r);
		free(y);
		free(dx);
	}
}

static const char small_net[] =
	"[model]\ninput = 2x3x3\n"
	"[layer.conv1]\ntype = conv2d\nfilters = 3\nkernel = 2\npadding = same\n"
	"[layer.act1]\ntype = leaky_relu\nslope = 0.2\n"
	"[layer.flat]\ntype = flatten\n"
	"[layer.fc1]\ntype = dense\nunits = 5\nactivation = relu\n"
	"[layer.act2]\ntype = leaky_relu\n"
	"[layer.fc2]\ntype = dense\nunits = 4\n"
	"[layer.loss]\ntype = softmax_xent\n";

static void test_leaky_relu_config_keys_dump_and_hash(void **state)
{
	(void)state;
	config c, d;
	model a, b;
	assert_int_equal(ntu_parse(&c, small_net), 0);
	assert_int_equal(model_build(&c, &a), 0);
	assert_int_equal(a.n_layers, 8); /* fc1's activation adds fc1.relu */
	assert_string_equal(a.layers[4].spec.name, "fc1.relu");
	/* the dump holds both slopes (the default one too) and parses back to the same network */
	char *text = config_dump(&c);
	assert_non_null(text);
	assert_non_null(strstr(text, "[layer.act1]\ntype = leaky_relu\nslope = 0.200000003\n"));
	assert_non_null(strstr(text, "[layer.act2]\ntype = leaky_relu\nslope = 0.00999999978\n"));
	assert_int_equal(ntu_parse(&d, text), 0);
	assert_int_equal(model_build(&d, &b), 0);
	assert_true(a.hash == b.hash);
	free(text);
	/* the slope is part of the architecture */
	assert_int_equal(config_set(&c, "layer.act2.slope=0.02"), 0);
	assert_int_equal(model_build(&c, &b), 0);
	assert_true(a.hash != b.hash);
	/* bad values and unknown keys are errors */
	assert_int_equal(config_set(&c, "layer.act2.slope=steep"), EXIT_USAGE);
	assert_int_equal(config_set(&c, "layer.act2.units=3"), EXIT_USAGE);
	assert_int_equal(config_set(&c, "layer.act2.activation=relu"), EXIT_USAGE);
	config_defaults(&d);
	assert_int_equal(config_load_string(&d, "[layer.a]\ntype = leaky_relu\nslope = inf\n", "t.ini"),
			 EXIT_USAGE);
}

/* Every parameter's gradient through conv, leaky_relu, flatten, dense, relu against finite differences. */
static void test_network_gradient_matches_finite_differences(void **state)
{
	(void)state;
	config c;
	model m;
	net_workspace ws;
	const int n = 4;
	assert_int_equal(ntu_parse(&c, small_net), 0);
	assert_int_equal(model_build(&c, &m), 0);
	assert_int_equal(net_workspace_alloc(&m, backend_cpu(), n, &ws), 0);
	float *p = calloc(m.n_params, sizeof(float)), *g = calloc(m.n_params, sizeof(float));
	model_init_params(&m, 5, p);
	for (size_t i = 0; i < m.n_params; i++)
		p[i] += 0.05f * (float)(ntu_uniform() - 0.5); /* nonzero biases too */
	for (size_t i = 0; i < (size_t)n * 18; i++)
		ws.input[i] = (float)(ntu_uniform() * 2 - 1);
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
			const float h = 1e-2f;
			*x = x0 + h;
			double lp = ntu_net_loss(&m, p, &ws, &b);
			*x = x0 - h;
			double lm = ntu_net_loss(&m, p, &ws, &b);
			*x = x0;
			double fd = (lp - lm) / ((double)(x0 + h) - (double)(x0 - h));
			/* kinks of relu/leaky_relu may lie within h: allow a small absolute error */
			if (fabs(fd - g[v->offset + j]) > 2e-2 * (1 + fabs(fd)))
				fail_msg("%s[%zu]: backward %.6g, finite difference %.6g", v->name, j,
					 (double)g[v->offset + j], fd);
			checked++;
		}
	}
	assert_true(checked > 100);
	net_workspace_free(&m, backend_cpu(), &ws);
	free(p);
	free(g);
}

/* A backend without leaky_relu kernels refuses the network before it allocates anything. */
static void test_backend_without_the_kernels_refuses_the_layer(void **state)
{
	(void)state;
	config c;
	model m;
	net_workspace ws;
	assert_int_equal(ntu_parse(&c, small_net), 0);
	assert_int_equal(model_build(&c, &m), 0);
	backend lacking = *backend_cpu();
	lacking.name = "lacking";
	lacking.layer_kernels = ntu_no_kernels;
	assert_int_equal(net_workspace_alloc(&m, &lacking, 2, &ws), EXIT_USAGE);
	assert_null(ws.act);
	lacking.layer_kernels = NULL;
	assert_int_equal(net_workspace_alloc(&m, &lacking, 2, &ws), EXIT_USAGE);
	/* a fixed entry missing refuses its layer too */
	lacking = *backend_cpu();
	lacking.maxpool_forward = NULL;
	assert_int_equal(ntu_parse(&c, "[layer.p]\ntype = maxpool\npool = 2\n[layer.f]\ntype = flatten\n"
				   "[layer.l]\ntype = softmax_xent\n"), 0);
	assert_int_equal(model_build(&c, &m), 0);
	assert_int_equal(net_workspace_alloc(&m, &lacking, 2, &ws), EXIT_USAGE);
	/* the CPU backend runs it */
	assert_int_equal(net_workspace_alloc(&m, backend_cpu(), 2, &ws), 0);
	net_workspace_free(&m, backend_cpu(), &ws);
}

int main(void)
{
	backend_cpu_set_threads(2);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_leaky_relu_forward_is_pytorch_leaky_relu),
		cmocka_unit_test(test_leaky_relu_backward_matches_finite_differences),
		cmocka_unit_test(test_leaky_relu_config_keys_dump_and_hash),
		cmocka_unit_test(test_network_gradient_matches_finite_differences),
		cmocka_unit_test(test_backend_without_the_kernels_refuses_the_layer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
