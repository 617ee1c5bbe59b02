/*
 * test_config.c - the INI config parser and shape inference: the mnist_cnn
 * net, errors for unknown keys, bad values and impossible shapes, overrides,
 * and the canonical dump parsing back to the same network.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "contract.h"
#include "model.h"

static const char mnist_cnn[] =
	"[model]\ninput = 1x28x28\n"
	"[layer.conv1]\ntype = conv2d\nfilters = 32\nkernel = 3\nactivation = relu\n"
	"[layer.conv2]\ntype = conv2d\nfilters = 64\nkernel = 3\nactivation = relu\n"
	"[layer.pool1]\ntype = maxpool\npool = 2\n"
	"[layer.drop1]\ntype = dropout\nrate = 0.25\n"
	"[layer.flatten]\ntype = flatten\n"
	"[layer.fc1]\ntype = dense\nunits = 128\nactivation = relu\n"
	"[layer.drop2]\ntype = dropout\nrate = 0.5\n"
	"[layer.fc2]\ntype = dense\nunits = 10\n"
	"[layer.loss]\ntype = softmax_xent\n"
	"[train]\noptimizer = adadelta\nglobal_batch = 128\nepochs = 12\n";

static int parse(config *c, const char *text)
{
	config_defaults(c);
	int rc = config_load_string(c, text, "test.ini");
	return rc ? rc : config_validate(c);
}

static void test_mnist_cnn_shapes_and_parameter_count(void **state)
{
	(void)state;
	config c;
	model m;
	assert_int_equal(parse(&c, mnist_cnn), 0);
	assert_int_equal(model_build(&c, &m), 0);
	/* conv1 relu conv2 relu pool drop flatten fc1 relu drop fc2 loss */
	assert_int_equal(m.n_layers, 12);
	assert_int_equal(m.layers[0].out_c, 32);
	assert_int_equal(m.layers[0].out_h, 26);
	assert_int_equal(m.layers[2].out_h, 24);
	assert_int_equal(m.layers[4].out_h, 12);
	assert_int_equal(m.layers[6].out_c, 9216);
	assert_int_equal(m.classes, 10);
	size_t total = 0;
	for (int i = 0; i < m.n_tensors; i++)
		total += m.tensors[i].numel;
	assert_int_equal(total, 1199882); /* Keras model.summary() of mnist_cnn */
	int w = model_find_tensor(&m, "conv1.weight");
	assert_true(w >= 0);
	assert_int_equal(m.tensors[w].ndim, 4);
	assert_int_equal(m.tensors[w].dims[0], 32);
	assert_int_equal(m.tensors[w].dims[1], 1);
	int f = model_find_tensor(&m, "fc1.weight");
	assert_int_equal(m.tensors[f].dims[0], 128);
	assert_int_equal(m.tensors[f].dims[1], 9216);
	assert_true(m.tensors[f].offset % 16 == 0);
	assert_int_equal(c.optim.kind, OPT_ADADELTA);
	assert_true(c.optim.lr == 1.0f);
}

static void test_same_padding_and_strides(void **state)
{
	(void)state;
	config c;
	model m;
	const char *text = "[layer.c]\ntype = conv2d\nfilters = 4\nkernel = 3x5\nstride = 2\npadding = same\n"
			   "[layer.p]\ntype = maxpool\npool = 3\nstride = 2\n"
			   "[layer.f]\ntype = flatten\n[layer.d]\ntype = dense\nunits = 3\n"
			   "[layer.l]\ntype = softmax_xent\n";
	assert_int_equal(parse(&c, text), 0);
	assert_int_equal(model_build(&c, &m), 0);
	assert_int_equal(m.layers[0].out_h, 14);
	assert_int_equal(m.layers[0].out_w, 14);
	assert_int_equal(((const conv_desc *)m.layers[0].state.bytes)->pad_top, 0);  /* (13*2+3-28)/2 = 0 */
	assert_int_equal(((const conv_desc *)m.layers[0].state.bytes)->pad_left, 1); /* (13*2+5-28)/2 = 1 */
	assert_int_equal(m.layers[1].out_h, 6);         /* (14-3)/2+1 */
}

static void expect_error(const char *text, int code)
{
	config c;
	model m;
	int rc = parse(&c, text);
	if (rc == 0)
		rc = model_build(&c, &m);
	assert_int_equal(rc, code);
}

static void test_unknown_keys_sections_and_types_are_errors(void **state)
{
	(void)state;
	expect_error("[train]\nepochz = 3\n", EXIT_USAGE);
	expect_error("[trian]\nepochs = 3\n", EXIT_USAGE);
	expect_error("[layer.x]\ntype = avgpool\n", EXIT_USAGE);
	expect_error("[layer.x]\ntype = dense\nfilters = 3\n", EXIT_USAGE);
	expect_error("[layer.x]\nunits = 3\n", EXIT_USAGE); /* type must come first */
	expect_error("[model]\ncolour = blue\n", EXIT_USAGE);
	expect_error("not an ini line\n", EXIT_USAGE);
}

static void test_bad_values_are_errors(void **state)
{
	(void)state;
	expect_error("[train]\nepochs = three\n", EXIT_USAGE);
	expect_error("[train]\nglobal_batch = 0\n", EXIT_USAGE);
	expect_error("[train]\nglobal_batch = 1.5\n", EXIT_USAGE);
	expect_error("[train]\nlr = nan\n", EXIT_USAGE);
	expect_error("[train]\nlr = 1e400\n", EXIT_USAGE);
	expect_error("[train]\nnesterov = maybe\n", EXIT_USAGE);
	expect_error("[train]\noptimizer = rmsprop\n", EXIT_USAGE);
	expect_error("[layer.x]\ntype = dropout\nrate = 1.0\n", EXIT_USAGE);
	expect_error("[layer.x]\ntype = conv2d\nfilters = 4\nkernel = 0\n", EXIT_USAGE);
	expect_error("[layer.x]\ntype = conv2d\nfilters = 4\nkernel = 3x\n", EXIT_USAGE);
	expect_error("[layer.x]\ntype = conv2d\nfilters = 4\nkernel = 3\npadding = full\n", EXIT_USAGE);
	expect_error("[model]\ninput = 28x28\n", EXIT_USAGE);
	expect_error("[spot]\nprovider = oracle\n", EXIT_USAGE);
}

static void test_impossible_shapes_are_errors(void **state)
{
	(void)state;
	/* kernel larger than the input */
	expect_error("[layer.c]\ntype = conv2d\nfilters = 4\nkernel = 29\n[layer.f]\ntype = flatten\n"
		     "[layer.d]\ntype = dense\nunits = 3\n[layer.l]\ntype = softmax_xent\n",
		     EXIT_USAGE);
	/* dense without flatten */
	expect_error("[layer.c]\ntype = conv2d\nfilters = 4\nkernel = 3\n[layer.d]\ntype = dense\nunits = 3\n"
		     "[layer.l]\ntype = softmax_xent\n",
		     EXIT_USAGE);
	/* loss not last, or missing */
	expect_error("[layer.f]\ntype = flatten\n[layer.l]\ntype = softmax_xent\n[layer.d]\ntype = dense\n"
		     "units = 3\n",
		     EXIT_USAGE);
	expect_error("[layer.f]\ntype = flatten\n[layer.d]\ntype = dense\nunits = 3\n", EXIT_USAGE);
	/* pooling past the input */
	expect_error("[layer.p]\ntype = maxpool\npool = 30\n[layer.f]\ntype = flatten\n[layer.d]\ntype = dense\n"
		     "units = 3\n[layer.l]\ntype = softmax_xent\n",
		     EXIT_USAGE);
	/* no layers */
	expect_error("[train]\nepochs = 1\n", EXIT_USAGE);
	/* one class */
	expect_error("[layer.f]\ntype = flatten\n[layer.d]\ntype = dense\nunits = 1\n[layer.l]\ntype = softmax_xent\n",
		     EXIT_USAGE);
}

static void test_set_overrides(void **state)
{
	(void)state;
	config c;
	model m;
	assert_int_equal(parse(&c, mnist_cnn), 0);
	assert_int_equal(config_set(&c, "train.lr=0.5"), 0);
	assert_true(c.optim.lr == 0.5f);
	assert_int_equal(config_set(&c, "layer.conv1.filters=16"), 0);
	assert_int_equal(config_set(&c, "checkpoint.scope=node"), 0);
	assert_int_equal(c.ckpt_scope, CKPT_SCOPE_NODE);
	assert_int_equal(model_build(&c, &m), 0);
	assert_int_equal(m.layers[0].out_c, 16);
	assert_int_equal(config_set(&c, "train.lr"), EXIT_USAGE);
	assert_int_equal(config_set(&c, "lr=0.5"), EXIT_USAGE);
	assert_int_equal(config_set(&c, "train.nokey=1"), EXIT_USAGE);
	assert_int_equal(config_set(&c, ".lr=1"), EXIT_USAGE);
	/* choosing an optimizer keeps what the user set (test_config_keys.c), defaults the rest */
	assert_int_equal(config_set(&c, "train.optimizer=adam"), 0);
	assert_true(c.optim.lr == 0.5f);
	assert_true(c.optim.beta1 == 0.9f);
}

static void test_dump_parses_back_to_the_same_network(void **state)
{
	(void)state;
	config a, b;
	model ma, mb;
	assert_int_equal(parse(&a, mnist_cnn), 0);
	assert_int_equal(config_set(&a, "train.lr=0.25"), 0);
	assert_int_equal(config_set(&a, "spot.metadata_url=http://127.0.0.1:9/x"), 0);
	char *text = config_dump(&a);
	assert_non_null(text);
	assert_int_equal(parse(&b, text), 0);
	assert_int_equal(model_build(&a, &ma), 0);
	assert_int_equal(model_build(&b, &mb), 0);
	assert_true(ma.hash == mb.hash);
	assert_true(b.optim.lr == 0.25f);
	assert_string_equal(b.spot.metadata_url, "http://127.0.0.1:9/x");
	char *again = config_dump(&b);
	/* the first line names the source; everything after it is identical */
	assert_string_equal(strchr(text, '\n'), strchr(again, '\n'));
	free(text);
	free(again);
}

static void test_model_hash_tells_networks_apart(void **state)
{
	(void)state;
	config a;
	model ma, mb;
	assert_int_equal(parse(&a, mnist_cnn), 0);
	assert_int_equal(model_build(&a, &ma), 0);
	assert_int_equal(config_set(&a, "layer.fc1.units=64"), 0);
	assert_int_equal(model_build(&a, &mb), 0);
	assert_true(ma.hash != mb.hash);
	/* hyper-parameters are not part of the network */
	assert_int_equal(parse(&a, mnist_cnn), 0);
	assert_int_equal(config_set(&a, "train.lr=0.1"), 0);
	assert_int_equal(model_build(&a, &mb), 0);
	assert_true(ma.hash == mb.hash);
}

static void test_init_is_deterministic_and_glorot_bounded(void **state)
{
	(void)state;
	config c;
	model m;
	assert_int_equal(parse(&c, mnist_cnn), 0);
	assert_int_equal(model_build(&c, &m), 0);
	float *p = malloc(m.n_params * sizeof(float)), *q = malloc(m.n_params * sizeof(float));
	model_init_params(&m, 1, p);
	model_init_params(&m, 1, q);
	assert_memory_equal(p, q, m.n_params * sizeof(float));
	model_init_params(&m, 2, q);
	assert_memory_not_equal(p, q, m.n_params * sizeof(float));
	const tensor_view *w = &m.tensors[model_find_tensor(&m, "fc1.weight")];
	float limit = 0.025341f; /* sqrt(6 / (9216 + 128)) = 0.0253398 */
	double sum = 0;
	for (size_t i = 0; i < w->numel; i++) {
		assert_true(p[w->offset + i] <= limit && p[w->offset + i] >= -limit);
		sum += p[w->offset + i];
	}
	assert_true(sum / (double)w->numel < 1e-3 && sum / (double)w->numel > -1e-3);
	const tensor_view *b = &m.tensors[model_find_tensor(&m, "fc1.bias")];
	for (size_t i = 0; i < b->numel; i++)
		assert_true(p[b->offset + i] == 0.0f);
	free(p);
	free(q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mnist_cnn_shapes_and_parameter_count),
		cmocka_unit_test(test_same_padding_and_strides),
		cmocka_unit_test(test_unknown_keys_sections_and_types_are_errors),
		cmocka_unit_test(test_bad_values_are_errors),
		cmocka_unit_test(test_impossible_shapes_are_errors),
		cmocka_unit_test(test_set_overrides),
		cmocka_unit_test(test_dump_parses_back_to_the_same_network),
		cmocka_unit_test(test_model_hash_tells_networks_apart),
		cmocka_unit_test(test_init_is_deterministic_and_glorot_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
