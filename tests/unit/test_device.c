/*
 * test_device.c - the backend registry (src/device.c): what device_select()
 * hands out. The CPU table carries the CPU capabilities, no context and no
 * collective of its own, and its hooks work (threads as asked, synchronize,
 * memory and copies); DEVICE_CUDA on a machine without a usable GPU (or a
 * build without CUDA) is a usage error, 64; DEVICE_AUTO falls back to the CPU
 * there. On a machine with a GPU the last two check the GPU's table instead.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "contract.h"
#include "device.h"
#include "ops.h"

/* The table of a host-memory backend with the exact sum: CPU capabilities, working hooks. */
static void check_cpu_table(const backend *be, int threads)
{
	assert_non_null(be);
	assert_int_equal(be->caps, BACKEND_CAP_HOST_MEMORY | BACKEND_CAP_EXACT_SUM | BACKEND_CAP_FUSED_RELU);
	assert_null(be->ctx);
	assert_null(be->comm); /* MPI on host memory: dist needs nothing of it */
	assert_non_null(be->synchronize);
	assert_non_null(be->peak_gflops);
	assert_int_equal(be->threads(be), threads);
	be->synchronize(be);
	float host[3] = {1.5f, -2.0f, 0.125f}, back[3] = {0};
	float *mem = be->alloc(sizeof host);
	assert_non_null(mem);
	be->upload(mem, host, sizeof host);
	be->synchronize(be);
	be->download(back, mem, sizeof back);
	assert_memory_equal(back, host, sizeof host);
	be->release(mem);
}

/* The GPU table (only on a machine with one): device memory, float sums, a context and a collective. */
static void check_gpu_table(const backend *be)
{
	assert_non_null(be);
	assert_false(be->caps & BACKEND_CAP_HOST_MEMORY);
	assert_non_null(be->ctx);
	assert_non_null(be->comm);
	assert_int_equal(be->threads(be), 1);
}

static void test_cpu_gives_the_cpu_table_with_its_threads(void **state)
{
	(void)state;
	const backend *be = NULL;
	assert_int_equal(device_select(DEVICE_CPU, 0, 3, &be), 0);
	check_cpu_table(be, 3);
	/* chosen again with another thread count: the hook follows */
	assert_int_equal(device_select(DEVICE_CPU, 1, 2, &be), 0);
	check_cpu_table(be, 2);
}

static void test_cuda_without_a_gpu_is_a_usage_error(void **state)
{
	(void)state;
	const backend *be = NULL;
	int rc = device_select(DEVICE_CUDA, 0, 2, &be);
	if (device_gpu_count() > 0) {
		assert_int_equal(rc, 0);
		check_gpu_table(be);
		return;
	}
	assert_int_equal(rc, EXIT_USAGE);
	assert_int_equal(EXIT_USAGE, 64);
}

static void test_auto_falls_back_to_the_cpu(void **state)
{
	(void)state;
	const backend *be = NULL;
	assert_int_equal(device_select(DEVICE_AUTO, 0, 2, &be), 0);
	if (device_gpu_count() > 0)
		check_gpu_table(be);
	else
		check_cpu_table(be, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cpu_gives_the_cpu_table_with_its_threads),
		cmocka_unit_test(test_cuda_without_a_gpu_is_a_usage_error),
		cmocka_unit_test(test_auto_falls_back_to_the_cpu),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
