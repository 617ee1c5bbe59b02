/*
 * fuzz_hdf5.h - what the targets that go through HDF5 (fuzz_ckpt,
 * fuzz_h5images) set up once: HDF5's free lists without limits.
 *
 * Why (measured, issue 18): with its default limits HDF5 hands some freed
 * blocks back to malloc and keeps others, so after most inputs more blocks
 * were allocated than freed; libFuzzer then runs the input again and a full
 * LeakSanitizer scan, which took most of the time. And every H5Fopen callocs
 * the metadata cache (over 128 KiB: a fresh mmap under ASan, page faults and
 * all) and freed it again. Kept on HDF5's own lists, blocks are reused: an
 * input allocates about what it frees, and the cache's memory stays mapped.
 * HDF5 is not instrumented, so nothing is lost for the sanitizers; spottrain's
 * own allocations are unaffected. What the readers validate is unchanged.
 */
#ifndef SPOTTRAIN_FUZZ_HDF5_H
#define SPOTTRAIN_FUZZ_HDF5_H

#include <hdf5.h>
#include <stdlib.h>

static inline void fuzz_hdf5_setup(void)
{
	if (H5set_free_list_limits(-1, -1, -1, -1, -1, -1) < 0)
		abort();
}

#endif
