/*
 * fake_cublas.cpp - the cuBLAS calls of cuda/ with cuBLAS's column-major
 * semantics, computed by OpenBLAS: built as libcublas.so.<major> for the GPU
 * emulation (see run.sh), which the backend dlopen()s in place of the real one.
 */
#include <cblas.h>
#include <cublas_v2.h>

static CBLAS_TRANSPOSE op(cublasOperation_t t) { return t == CUBLAS_OP_N ? CblasNoTrans : CblasTrans; }

extern "C" {
cublasStatus_t cublasCreate_v2(cublasHandle_t *h)
{
	*h = (cublasHandle_t)0x3;
	return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream_v2(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetPointerMode_v2(cublasHandle_t, cublasPointerMode_t) { return CUBLAS_STATUS_SUCCESS; }
const char *cublasGetStatusString(cublasStatus_t) { return "emulated cuBLAS status"; }

cublasStatus_t cublasSgemm_v2(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
			      const float *alpha, const float *A, int lda, const float *B, int ldb, const float *beta,
			      float *C, int ldc)
{
	if (lda < (ta == CUBLAS_OP_N ? m : k) || ldb < (tb == CUBLAS_OP_N ? k : n) || ldc < m)
		return CUBLAS_STATUS_INVALID_VALUE;
	/* beta == 0: C is not read (cuBLAS and BLAS agree) */
	cblas_sgemm(CblasColMajor, op(ta), op(tb), m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc);
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
					 int k, const float *alpha, const float *A, int lda, long long sa,
					 const float *B, int ldb, long long sb, const float *beta, float *C, int ldc,
					 long long sc, int batch)
{
	for (int q = 0; q < batch; q++) {
		cublasStatus_t st = cublasSgemm_v2(h, ta, tb, m, n, k, alpha, A + q * sa, lda, B + q * sb, ldb, beta,
						   C + q * sc, ldc);
		if (st != CUBLAS_STATUS_SUCCESS)
			return st;
	}
	return CUBLAS_STATUS_SUCCESS;
}
}
