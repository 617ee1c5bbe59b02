/*
 * emu.h - the subset of the CUDA kernel language that cuda/ops.cu uses, on the
 * host, for the GPU emulation (see run.sh). Included before the transformed
 * ops.cu; never part of the product.
 */
#pragma once
#include <cuda_runtime_api.h>
#include <functional>

/* host functions now (the real headers define these for nvcc) */
#undef __global__
#undef __device__
#undef __host__
#define __global__
#define __device__
#define __host__
/* one block runs at a time, so a static is the block's shared memory */
#define __shared__ static

extern thread_local uint3 threadIdx, blockIdx;
extern thread_local dim3 blockDim, gridDim;
void __syncthreads();
float __shfl_xor_sync(unsigned mask, float v, int off);
int __shfl_xor_sync(unsigned mask, int v, int off);
double __shfl_xor_sync(unsigned mask, double v, int off);

/*
 * Run f once per thread of the grid with blockIdx/threadIdx set. concurrent:
 * the threads of a block run as real threads (kernels with __syncthreads or
 * warp shuffles); otherwise one after the other.
 */
void emu_launch(dim3 grid, dim3 block, const std::function<void()> &f, bool concurrent);
