/*
 * fake_cuda.cpp - the CUDA runtime calls of cuda/ on the host, for the GPU
 * emulation (see run.sh): one "device" whose memory is host memory (tracked,
 * so that copies in the wrong direction or outside an allocation abort),
 * streams and events that are always complete, and the launcher of emu.h.
 * Verification of the backend's logic only: no timing, no concurrency model.
 */
#include "emu.h"

#include <algorithm>
#include <barrier>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>
#include <vector>

thread_local uint3 threadIdx, blockIdx;
thread_local dim3 blockDim, gridDim;
static thread_local std::barrier<> *t_block, *t_warp;
static thread_local double *t_lanes;

[[noreturn]] static void die(const char *what)
{
	fprintf(stderr, "gpu emulation: %s\n", what);
	abort();
}

void __syncthreads()
{
	if (!t_block)
		die("__syncthreads in a kernel launched without concurrent threads");
	t_block->arrive_and_wait();
}

template <class T> static T shfl_xor(T v, int off)
{
	if (!t_warp)
		die("warp shuffle in a kernel launched without concurrent threads");
	int lane = (int)(threadIdx.x & 31);
	t_lanes[lane] = (double)v;
	t_warp->arrive_and_wait();
	T r = (T)t_lanes[lane ^ off];
	t_warp->arrive_and_wait();
	return r;
}
float __shfl_xor_sync(unsigned, float v, int off) { return shfl_xor(v, off); }
int __shfl_xor_sync(unsigned, int v, int off) { return shfl_xor(v, off); }
double __shfl_xor_sync(unsigned, double v, int off) { return shfl_xor(v, off); }

void emu_launch(dim3 grid, dim3 block, const std::function<void()> &f, bool concurrent)
{
	if (block.y != 1 || block.z != 1 || grid.z != 1)
		die("only 1-D blocks and 2-D grids are emulated");
	if (!concurrent) {
		for (unsigned by = 0; by < grid.y; by++)
			for (unsigned bx = 0; bx < grid.x; bx++)
				for (unsigned tx = 0; tx < block.x; tx++) {
					gridDim = grid;
					blockDim = block;
					blockIdx = {bx, by, 0};
					threadIdx = {tx, 0, 0};
					f();
				}
		return;
	}
	/* one team of block.x threads walks the blocks; per-warp barriers for the shuffles */
	std::barrier<> block_bar(block.x);
	unsigned nw = (block.x + 31) / 32;
	std::vector<std::barrier<> *> warp_bar(nw);
	std::vector<std::vector<double>> lanes(nw, std::vector<double>(32));
	for (unsigned w = 0; w < nw; w++)
		warp_bar[w] = new std::barrier<>(std::min(32u, block.x - 32 * w));
	std::vector<std::thread> team;
	for (unsigned tx = 0; tx < block.x; tx++)
		team.emplace_back([&, tx] {
			t_block = &block_bar;
			t_warp = warp_bar[tx / 32];
			t_lanes = lanes[tx / 32].data();
			for (unsigned by = 0; by < grid.y; by++)
				for (unsigned bx = 0; bx < grid.x; bx++) {
					gridDim = grid;
					blockDim = block;
					blockIdx = {bx, by, 0};
					threadIdx = {tx, 0, 0};
					f();
					block_bar.arrive_and_wait(); /* the block ends together */
				}
		});
	for (auto &t : team)
		t.join();
	for (auto *b : warp_bar)
		delete b;
}

/* device allocations: start -> bytes */
static std::map<uintptr_t, size_t> g_dev;

static bool is_dev(const void *p)
{
	auto it = g_dev.upper_bound((uintptr_t)p);
	if (it == g_dev.begin())
		return false;
	--it;
	return (uintptr_t)p < it->first + it->second;
}

static bool dev_range(const void *p, size_t bytes)
{
	return bytes == 0 || (is_dev(p) && is_dev((const char *)p + bytes - 1));
}

extern "C" {
cudaError_t cudaGetDeviceCount(int *n)
{
	*n = getenv("SPOTTRAIN_EMU_NO_GPU") ? 0 : 1;
	return cudaSuccess;
}
cudaError_t cudaSetDevice(int) { return cudaSuccess; }
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int)
{
	memset(p, 0, sizeof *p);
	strcpy(p->name, "host emulation");
	p->multiProcessorCount = 2;
	p->totalGlobalMem = (size_t)1 << 34;
	p->major = 9;
	return cudaSuccess;
}
cudaError_t cudaMalloc(void **p, size_t b)
{
	*p = malloc(b ? b : 1);
	memset(*p, 0xA5, b); /* garbage, as cudaMalloc gives */
	g_dev[(uintptr_t)*p] = b ? b : 1;
	return cudaSuccess;
}
cudaError_t cudaFree(void *p)
{
	if (p) {
		if (!g_dev.erase((uintptr_t)p))
			die("cudaFree of a pointer cudaMalloc did not return");
		free(p);
	}
	return cudaSuccess;
}
cudaError_t cudaMallocHost(void **p, size_t b)
{
	*p = malloc(b ? b : 1);
	return cudaSuccess;
}
cudaError_t cudaFreeHost(void *p)
{
	free(p);
	return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t b, cudaStream_t)
{
	if (!dev_range(p, b))
		die("cudaMemsetAsync outside device memory");
	memset(p, v, b);
	return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t b, enum cudaMemcpyKind k, cudaStream_t)
{
	bool dd = dev_range(d, b), sd = dev_range(s, b);
	if ((k == cudaMemcpyHostToDevice && (!dd || is_dev(s))) || (k == cudaMemcpyDeviceToHost && (!sd || is_dev(d))) ||
	    (k == cudaMemcpyDefault && !dd && !sd))
		die("cudaMemcpyAsync: the pointers do not match the direction (or run past an allocation)");
	memcpy(d, s, b);
	return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamQuery(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned)
{
	*s = (cudaStream_t)0x1;
	return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventCreate(cudaEvent_t *e)
{
	*e = (cudaEvent_t)0x2;
	return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned)
{
	*e = (cudaEvent_t)0x2;
	return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t, cudaEvent_t)
{
	*ms = 1.0f;
	return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
cudaError_t cudaPeekAtLastError(void) { return cudaSuccess; }
const char *cudaGetErrorString(cudaError_t) { return "emulated CUDA error"; }
cudaError_t cudaPointerGetAttributes(struct cudaPointerAttributes *a, const void *p)
{
	memset(a, 0, sizeof *a);
	a->type = is_dev(p) ? cudaMemoryTypeDevice : cudaMemoryTypeUnregistered;
	return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int *v)
{
	*v = CUDART_VERSION;
	return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int *v)
{
	*v = CUDART_VERSION;
	return cudaSuccess;
}
}
