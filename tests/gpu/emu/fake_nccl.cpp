/*
 * fake_nccl.cpp - an NCCL that refuses to start, as real NCCL does for two
 * ranks sharing one GPU: built as libnccl.so.2 for the GPU emulation (see
 * run.sh), so that dist's fallback to host staging + MPI is exercised.
 */
#include <cstring>
#include <nccl.h>

extern "C" {
ncclResult_t ncclGetVersion(int *v)
{
	*v = NCCL_VERSION_CODE;
	return ncclSuccess;
}
ncclResult_t ncclGetUniqueId(ncclUniqueId *id)
{
	memset(id, 7, sizeof *id);
	return ncclSuccess;
}
ncclResult_t ncclCommInitRankConfig(ncclComm_t *c, int, ncclUniqueId, int, ncclConfig_t *)
{
	*c = (ncclComm_t)0x9;
	return ncclInProgress; /* the refusal comes asynchronously, as with a non-blocking communicator */
}
ncclResult_t ncclCommInitRank(ncclComm_t *, int, ncclUniqueId, int) { return ncclInvalidUsage; }
ncclResult_t ncclCommGetAsyncError(ncclComm_t, ncclResult_t *e)
{
	*e = ncclInvalidUsage;
	return ncclSuccess;
}
ncclResult_t ncclCommAbort(ncclComm_t) { return ncclSuccess; }
ncclResult_t ncclCommFinalize(ncclComm_t) { return ncclSuccess; }
ncclResult_t ncclCommDestroy(ncclComm_t) { return ncclSuccess; }
const char *ncclGetErrorString(ncclResult_t) { return "invalid usage (emulated)"; }
const char *ncclGetLastError(ncclComm_t) { return "emulated NCCL: duplicate GPU detected"; }
ncclResult_t ncclAllReduce(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t)
{
	return ncclInvalidUsage;
}
}
