/*
 * test_batchnorm.c - BatchNorm2d (src/layers/batchnorm.c) and the buffers it
 * brings: train and eval forward against hand-computed values, the running
 * statistics' update, its gradients against central finite differences (both
 * modes), its keys and hash, the exact combination of shard statistics in
 * the gradient engine (any thread count, same bits; the mean over shards),
 * and the buffers' round trip through a checkpoint.
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
#include <unistd.h>

#include "ckpt.h"
#include "config.h"
#include "contract.h"
#include "grad.h"
#include "model.h"
#include "ops.h"

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static double rng_uniform(void) /* [0, 1), xorshift64* */
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}

static const layer_kernels *cpu_bn(void)
{
	const backend *be = backend_cpu();
	const layer_kernels *k = be->layer_kernels(be, "batchnorm");
	assert_non_null(k);
	return k;
}

static int parse(config *c, const char *text)
{
	config_defaults(c);
	int rc = config_load_string(c, text, "test.ini");
	return rc ? rc : config_validate(c);
}

static void assert_close(double got, double want, double tol, const char *what)
{
	if (fabs(got - want) > tol * (1 + fabs(want)))
		fail_msg("%s: got %.9g, want %.9g", what, got, want);
}

/* n = 2 samples, C = 2 channels of 2 values: batch statistics by hand, then the running ones. */
static void test_train_and_eval_forward_against_hand_values(void **state)
{
	(void)state;
	/* sample 0: ch0 {1, 2}, ch1 {0, 0}; sample 1: ch0 {3, 6}, ch1 {0, 4} */
	const float x[8] = {1, 2, 0, 0, 3, 6, 0, 4};
	const float gamma[2] = {2.0f, 1.0f}, beta[2] = {0.5f, 0.0f};
	const float *w[2] = {gamma, beta};
	float y[8], saved[4], mean[2], var[2], count[1] = {0};
	float *stat[3] = {mean, var, count};
	const float eps = 1e-5f;
	layer_call c = {.n = 2, .in_numel = 4, .out_numel = 4, .attr = {eps, 1.0f, 2.0f}, .in = x, .y = y,
			.w = w, .saved = saved, .stat = stat, .training = 1};
	cpu_bn()->forward(backend_cpu(), &c);
	/* ch0: mean 3, biased var (4+1+0+9)/4 = 3.5, unbiased 14/3; ch1: mean 1, var 3, unbiased 4 */
	const double mu[2] = {3.0, 1.0}, v[2] = {3.5, 3.0}, vu[2] = {14.0 / 3.0, 4.0};
	for (int i = 0; i < 8; i++) {
		int ch = (i / 2) % 2;
		double want = (x[i] - mu[ch]) / sqrt(v[ch] + eps) * gamma[ch] + beta[ch];
		assert_close(y[i], want, 1e-6, "train y");
	}
	for (int ch = 0; ch < 2; ch++) {
		assert_close(mean[ch], mu[ch], 1e-7, "batch mean");
		assert_close(var[ch], vu[ch], 1e-6, "unbiased batch variance");
	}
	assert_true(count[0] == 1.0f);
	/* eval: the running statistics, not the batch's */
	const float rm[2] = {1.0f, -1.0f}, rv[2] = {4.0f, 0.25f}, nbt[1] = {7};
	const float *buf[3] = {rm, rv, nbt};
	c.training = 0;
	c.buf = buf;
	mean[0] = -99.0f;
	cpu_bn()->forward(backend_cpu(), &c);
	for (int i = 0; i < 8; i++) {
		int ch = (i / 2) % 2;
		double want = (x[i] - rm[ch]) / sqrt(rv[ch] + eps) * gamma[ch] + beta[ch];
		assert_close(y[i], want, 1e-6, "eval y");
	}
	assert_true(mean[0] == -99.0f); /* evaluation writes no statistics */
}

static const char bn_net[] = "[model]\ninput = 2x3x3\n"
			     "[layer.conv1]\ntype = conv2d\nfilters = 3\nkernel = 2\npadding = same\n"
			     "[layer.bn1]\ntype = batchnorm\nmomentum = 0.25\n"
			     "[layer.act]\ntype = leaky_relu\nslope = 0.2\n"
			     "[layer.flat]\ntype = flatten\n"
			     "[layer.fc]\ntype = dense\nunits = 4\n"
			     "[layer.loss]\ntype = softmax_xent\n";

/* Views, buffers, their initial values and one update with PyTorch's momentum rule. */
static void test_buffers_layout_init_and_update(void **state)
{
	(void)state;
	config c;
	model m;
	assert_int_equal(parse(&c, bn_net), 0);
	assert_int_equal(model_build(&c, &m), 0);
	assert_true(model_find_tensor(&m, "bn1.weight") >= 0 && model_find_tensor(&m, "bn1.bias") >= 0);
	assert_int_equal(m.n_buffer_views, 3);
	assert_string_equal(m.buffers[0].name, "bn1.running_mean");
	assert_string_equal(m.buffers[1].name, "bn1.running_var");
	assert_string_equal(m.buffers[2].name, "bn1.num_batches_tracked");
	float *p = calloc(m.n_params, sizeof(float)), *b = calloc(m.n_buffers, sizeof(float));
	float *s = calloc(m.n_buffers, sizeof(float));
	model_init_params(&m, 1, p);
	model_init_buffers(&m, b);
	const tensor_view *wv = &m.tensors[model_find_tensor(&m, "bn1.weight")];
	for (int ch = 0; ch < 3; ch++) {
		assert_true(p[wv->offset + (size_t)ch] == 1.0f);
		assert_true(b[m.buffers[0].offset + (size_t)ch] == 0.0f);
		assert_true(b[m.buffers[1].offset + (size_t)ch] == 1.0f);
		s[m.buffers[0].offset + (size_t)ch] = (float)ch;
		s[m.buffers[1].offset + (size_t)ch] = 2.0f;
	}
	assert_true(b[m.buffers[2].offset] == 0.0f);
	model_update_buffers(&m, b, s);
	model_update_buffers(&m, b, s);
	for (int ch = 0; ch < 3; ch++) {
		float rm = 0.75f * 0.0f + 0.25f * (float)ch, rv = 0.75f * 1.0f + 0.25f * 2.0f;
		rm = 0.75f * rm + 0.25f * (float)ch;
		rv = 0.75f * rv + 0.25f * 2.0f;
		assert_true(b[m.buffers[0].offset + (size_t)ch] == rm);
		assert_true(b[m.buffers[1].offset + (size_t)ch] == rv);
	}
	assert_true(b[m.buffers[2].offset] == 2.0f);
	free(p);
	free(b);
	free(s);
}

/* L = sum(y * r): d/dx, d/dgamma, d/dbeta from backward against central differences. */
static void check_kernel_gradients(int training)
{
	const int n = 3, C = 2, hw = 5;
	const size_t per = (size_t)C * hw, total = (size_t)n * per;
	float x[30], r[30], y[30], dx[30], saved[4];
	float gamma[2] = {1.5f, -0.7f}, beta[2] = {0.2f, -0.1f}, dg[2] = {0, 0}, db[2] = {0, 0};
	const float rm[2] = {0.3f, -0.2f}, rv[2] = {0.8f, 1.7f}, nbt[1] = {0};
	const float *buf[3] = {rm, rv, nbt};
	const float *w[2] = {gamma, beta};
	float *dw[2] = {dg, db};
	for (size_t i = 0; i < total; i++) {
		x[i] = (float)(rng_uniform() * 4 - 2);
		r[i] = (float)(rng_uniform() * 2 - 1);
	}
	layer_call c = {.n = n, .in_numel = per, .out_numel = per, .attr = {1e-5f, 1.0f, (float)C}, .in = x,
			.y = y, .out = y, .dout = r, .din = dx, .w = w, .dw = dw, .saved = saved, .buf = buf,
			.training = training};
	cpu_bn()->forward(backend_cpu(), &c);
	cpu_bn()->backward(backend_cpu(), &c);
	float *targets[3] = {x, gamma, beta};
	const float *grads[3] = {dx, dg, db};
	const size_t counts[3] = {total, 2, 2};
	for (int t = 0; t < 3; t++) {
		for (size_t i = 0; i < counts[t]; i++) {
			float *v = &targets[t][i], v0 = *v, h = 1e-2f;
			double L[2];
			float vs[2] = {v0 + h, v0 - h};
			for (int k = 0; k < 2; k++) {
				*v = vs[k];
				cpu_bn()->forward(backend_cpu(), &c);
				L[k] = 0;
				for (size_t j = 0; j < total; j++)
					L[k] += (double)y[j] * r[j];
			}
			*v = v0;
			double fd = (L[0] - L[1]) / ((double)vs[0] - vs[1]);
			if (fabs(fd - grads[t][i]) > 2e-3 * (1 + fabs(fd)))
				fail_msg("training %d, %s[%zu]: backward %.7g, finite difference %.7g", training,
					 t == 0 ? "x" : t == 1 ? "gamma" : "beta", i, (double)grads[t][i], fd);
		}
	}
}

static void test_kernel_gradients_match_finite_differences(void **state)
{
	(void)state;
	check_kernel_gradients(1);
	check_kernel_gradients(0);
}

static void test_keys_dump_hash_and_alias(void **state)
{
	(void)state;
	config c, d;
	model a, b;
	assert_int_equal(parse(&c, bn_net), 0);
	assert_int_equal(model_build(&c, &a), 0);
	/* dump parses back to the same network */
	char *text = config_dump(&c);
	assert_non_null(text);
	assert_non_null(strstr(text, "momentum = 0.25"));
	assert_int_equal(parse(&d, text), 0);
	assert_int_equal(model_build(&d, &b), 0);
	assert_true(a.hash == b.hash);
	free(text);
	/* every attribute is part of the architecture */
	const char *changes[] = {"layer.bn1.momentum=0.1", "layer.bn1.eps=1e-3", "layer.bn1.affine=false"};
	for (int i = 0; i < 3; i++) {
		assert_int_equal(parse(&d, bn_net), 0);
		assert_int_equal(config_set(&d, changes[i]), 0);
		assert_int_equal(model_build(&d, &b), 0);
		assert_true(a.hash != b.hash);
	}
	/* affine = false: no parameters, the buffers stay */
	assert_int_equal(model_find_tensor(&b, "bn1.weight"), -1);
	assert_int_equal(b.n_buffer_views, 3);
	/* bad values and unknown keys are errors */
	assert_int_equal(config_set(&c, "layer.bn1.eps=0"), EXIT_USAGE);
	assert_int_equal(config_set(&c, "layer.bn1.momentum=1.5"), EXIT_USAGE);
	assert_int_equal(config_set(&c, "layer.bn1.affine=maybe"), EXIT_USAGE);
	assert_int_equal(config_set(&c, "layer.bn1.units=3"), EXIT_USAGE);
	/* PyTorch's name works too */
	assert_int_equal(parse(&d, "[model]\ninput = 2x3x3\n[layer.bn]\ntype = batchnorm2d\n"
				   "[layer.flat]\ntype = flatten\n[layer.loss]\ntype = softmax_xent\n"), 0);
	assert_int_equal(model_build(&d, &b), 0);
	assert_string_equal(b.buffers[1].name, "bn.running_var");
	/* a network without BatchNorm has no buffers */
	assert_int_equal(parse(&d, "[model]\ninput = 2x3x3\n[layer.flat]\ntype = flatten\n"
				   "[layer.loss]\ntype = softmax_xent\n"), 0);
	assert_int_equal(model_build(&d, &b), 0);
	assert_int_equal(b.n_buffer_views, 0);
	assert_true(b.n_buffers == 0);
}

/* The engine's fill: sample k of the step is a fixed pseudo-random image. */
static void fill_images(void *ctx, long first, int n, float *input, uint32_t *samples, uint8_t *labels)
{
	const model *m = ctx;
	size_t per = (size_t)m->in_c * m->in_h * m->in_w;
	for (int i = 0; i < n; i++) {
		long k = first + i;
		samples[i] = (uint32_t)k;
		labels[i] = (uint8_t)(k % 4);
		for (size_t j = 0; j < per; j++)
			input[(size_t)i * per + j] = (float)sin((double)(k * 31 + (long)j) * 0.7) * 1.5f + 0.2f;
	}
}

/*
 * Shard statistics ride in the exact sum: 2 and 3 threads give the same integers, and their
 * mean over the step's shards is the mean of each shard's own statistics (computed here
 * shard by shard through net_forward).
 */
static void test_shard_statistics_are_summed_exactly(void **state)
{
	(void)state;
	config c;
	model m;
	assert_int_equal(parse(&c, bn_net), 0);
	assert_int_equal(model_build(&c, &m), 0);
	const int S = 4, bsz = 14; /* shards of 4, 4, 4, 2 */
	float *p = calloc(m.n_params, sizeof(float));
	model_init_params(&m, 3, p);
	size_t nacc = m.n_params + m.n_buffers + TAIL_N;
	int64_t *ref = malloc(nacc * sizeof(int64_t));
	/* (a team of one would let the kernels inside run on the backend's own threads) */
	for (int threads = 2; threads <= 3; threads++) {
		grad_engine e;
		assert_int_equal(grad_engine_init(&e, &m, backend_cpu(), S, threads), 0);
		grad_compute(&e, p, bsz, 0, 1, 1, 0, fill_images, &m);
		assert_true(grad_tail_offset(&e) == m.n_params + m.n_buffers);
		if (threads == 2)
			memcpy(ref, e.acc[0], nacc * sizeof(int64_t));
		else
			for (size_t i = 0; i < nacc; i++)
				if (ref[i] != e.acc[0][i])
					fail_msg("threads %d: sum %zu of %zu + %zu + tail differs: %lld, %lld", threads, i,
						 m.n_params, m.n_buffers, (long long)ref[i], (long long)e.acc[0][i]);
		float *mean = calloc(m.n_buffers, sizeof(float));
		grad_finish_stats(&e, bsz, mean);
		/* by hand: each shard's statistics through its own forward */
		net_workspace ws;
		assert_int_equal(net_workspace_alloc(&m, backend_cpu(), S, &ws), 0);
		double want[3] = {0, 0, 0};
		float *st = calloc(m.n_buffers, sizeof(float));
		uint32_t samples[4];
		uint8_t labels[4];
		for (int k = 0; k < 4; k++) {
			int n = k < 3 ? S : 2;
			fill_images(&m, (long)k * S, n, ws.input, samples, labels);
			batch_info b = {n, samples, labels, 1, 0, 1, NULL, st};
			double l;
			int cor;
			net_forward(&m, backend_cpu(), p, &ws, &b, &l, &cor);
			for (int ch = 0; ch < 3; ch++) {
				want[ch] += st[m.buffers[0].offset + (size_t)ch] / 4.0;
				if (ch == 0)
					assert_true(st[m.buffers[2].offset] == 1.0f);
			}
		}
		for (int ch = 0; ch < 3; ch++)
			assert_close(mean[m.buffers[0].offset + (size_t)ch], want[ch], 1e-6, "mean of shard means");
		assert_true(mean[m.buffers[2].offset] == 1.0f);
		net_workspace_free(&m, backend_cpu(), &ws);
		free(st);
		free(mean);
		grad_engine_free(&e);
	}
	free(ref);
	free(p);
}

/* Buffers are written under their names and read back; a file without them is refused. */
static void test_buffers_round_trip_through_a_checkpoint(void **state)
{
	(void)state;
	config c;
	model m, plain;
	assert_int_equal(parse(&c, bn_net), 0);
	assert_int_equal(model_build(&c, &m), 0);
	char dir[] = "/tmp/test_bn_XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256], path2[256];
	snprintf(path, sizeof path, "%s/ckpt-00000001.h5", dir);
	snprintf(path2, sizeof path2, "%s/ckpt-00000002.h5", dir);
	float *p = calloc(m.n_params, sizeof(float)), *bf = calloc(m.n_buffers, sizeof(float));
	float *p2 = calloc(m.n_params, sizeof(float)), *bf2 = calloc(m.n_buffers, sizeof(float));
	model_init_params(&m, 1, p);
	for (size_t i = 0; i < m.n_buffers; i++)
		bf[i] = (float)i * 0.5f - 1.0f;
	ckpt_meta mt = {.step = 1, .global_batch = 8, .world_size = 1, .model_hash = m.hash,
			.optimizer = "sgd", .lr = 0.1f, .config_text = (char *)"x"};
	ckpt_buffers b = {.params = p, .buffers = bf};
	ckpt_buffers nob = {.params = p};
	assert_int_equal(ckpt_write(path, &m, &mt, &nob), EXIT_SOFTWARE); /* buffers are required */
	assert_int_equal(ckpt_write(path, &m, &mt, &b), 0);
	ckpt_buffers r = {.params = p2, .buffers = bf2};
	assert_int_equal(ckpt_read(path, &m, false, NULL, &r), 0);
	assert_memory_equal(p, p2, m.n_params * sizeof(float));
	for (int v = 0; v < m.n_buffer_views; v++) /* the padding between views is not saved */
		assert_memory_equal(bf + m.buffers[v].offset, bf2 + m.buffers[v].offset,
				    m.buffers[v].numel * sizeof(float));
	FILE *devnull = fopen("/dev/null", "w");
	assert_int_equal(ckpt_inspect(path, devnull), 0);
	/* a network without buffers refuses the file (its /buffers would have no place) */
	plain = m;
	plain.n_buffer_views = 0;
	plain.n_buffers = 0;
	assert_int_equal(ckpt_read(path, &plain, true, NULL, &r), EXIT_DATAERR);
	/* a file without /buffers is refused by a network with them */
	mt.model_hash = plain.hash;
	mt.step = 2;
	assert_int_equal(ckpt_write(path2, &plain, &mt, &nob), 0);
	assert_int_equal(ckpt_inspect(path2, devnull), 0);
	assert_int_equal(ckpt_read(path2, &m, true, NULL, &r), EXIT_DATAERR);
	fclose(devnull);
	unlink(path);
	unlink(path2);
	rmdir(dir);
	free(p);
	free(p2);
	free(bf);
	free(bf2);
}

int main(void)
{
	backend_cpu_set_threads(2);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_train_and_eval_forward_against_hand_values),
		cmocka_unit_test(test_buffers_layout_init_and_update),
		cmocka_unit_test(test_kernel_gradients_match_finite_differences),
		cmocka_unit_test(test_keys_dump_hash_and_alias),
		cmocka_unit_test(test_shard_statistics_are_summed_exactly),
		cmocka_unit_test(test_buffers_round_trip_through_a_checkpoint),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
