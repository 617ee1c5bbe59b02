/*
 * net_test_util.c - the helpers of net_test_util.h, linked into the network
 * tests (tests/CMakeLists.txt).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "net_test_util.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

void ntu_rng_seed(uint64_t seed)
{
	rng_state = seed;
}

double ntu_uniform(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}

int ntu_parse(config *c, const char *text)
{
	config_defaults(c);
	int rc = config_load_string(c, text, "test.ini");
	return rc ? rc : config_validate(c);
}

int ntu_build(config *c, model *m, const char *text)
{
	int rc = ntu_parse(c, text);
	return rc ? rc : model_build(c, m);
}

double ntu_net_loss(const model *m, const float *params, net_workspace *ws, const batch_info *b)
{
	double loss;
	int correct;
	net_forward(m, backend_cpu(), params, ws, b, &loss, &correct);
	return loss;
}

const layer_kernels *ntu_cpu_kernels(const char *kind)
{
	const backend *be = backend_cpu();
	assert_non_null(be->layer_kernels);
	const layer_kernels *k = be->layer_kernels(be, kind);
	assert_non_null(k);
	return k;
}

const layer_kernels *ntu_no_kernels(const backend *be, const char *kind)
{
	(void)be;
	(void)kind;
	return NULL;
}
