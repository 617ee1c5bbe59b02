/*
 * device.c - the backend registry: the one file of src/ that knows which
 * backends exist (the CPU reference of ops_cpu.c and, in a build with
 * SPOTTRAIN_HAVE_CUDA, the GPU backend of cuda/) and the only one that
 * includes cuda/cuda_backend.h. Everything else receives the chosen table and
 * asks its capabilities (backend.caps), hooks and context, never which
 * backend it is (DESIGN.md "Who may know whom").
 */
#include "device.h"

#include "contract.h"
#include "log.h"

#ifdef SPOTTRAIN_HAVE_CUDA
#include "../cuda/cuda_backend.h"
#endif

int device_gpu_count(void)
{
#ifdef SPOTTRAIN_HAVE_CUDA
	return cuda_device_count();
#else
	return 0;
#endif
}

/*
 * The table for want: the CPU's, or the GPU of this local rank (GPU
 * local_rank % count). DEVICE_CUDA without a usable GPU: EXIT_USAGE with a
 * message; DEVICE_AUTO: the CPU with one line saying why. No CUDA call past
 * the probe when the probe finds no GPU.
 */
static int select_backend(device_kind want, int local_rank, const backend **out)
{
	*out = backend_cpu();
	if (want == DEVICE_CPU)
		return 0;
#ifdef SPOTTRAIN_HAVE_CUDA
	int n = cuda_device_count();
	if (n > 0) {
		const backend *be = cuda_backend_open(local_rank % n);
		if (be) {
			*out = be;
			return 0;
		}
		if (want == DEVICE_CUDA) {
			log_error("--device cuda: GPU %d could not be initialised", local_rank % n);
			return EXIT_USAGE;
		}
		log_info("GPU %d could not be initialised: using the CPU backend", local_rank % n);
		return 0;
	}
	if (want == DEVICE_CUDA) {
		log_error("--device cuda: no CUDA GPU is usable on this machine (%s)", cuda_probe_error());
		return EXIT_USAGE;
	}
	log_info("no GPU found (%s): using the CPU backend", cuda_probe_error());
#else
	(void)local_rank;
	if (want == DEVICE_CUDA) {
		log_error("--device cuda: this spottrain was built without CUDA (configure with -DSPOTTRAIN_CUDA=ON)");
		return EXIT_USAGE;
	}
	log_info("no GPU support in this build: using the CPU backend");
#endif
	return 0;
}

/* The CPU backend's thread count is registry business: set it when the CPU is chosen. */
int device_select(device_kind want, int local_rank, int cpu_threads, const backend **out)
{
	int rc = select_backend(want, local_rank, out);
	if (!rc && *out == backend_cpu())
		backend_cpu_set_threads(cpu_threads);
	return rc;
}
