/*
 * fuzz_h5images.c - HDF5 image sets (data_hdf5.c), directly and through
 * format detection (data_detect.c): the file a user names as data.dir.
 * Input: one mode byte, then the file. Mode bit 0: the test split (else
 * train); bit 1: through data_load with format auto. Oracle beyond the
 * sanitizers: a load that succeeds has a positive count and shape, and no
 * label above max_label.
 * Note: unlike a checkpoint (sealed before HDF5 reads it), an image set is
 * handed to HDF5 as it is, so this target also fuzzes the HDF5 library.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "fuzz_hdf5.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_hdf5_setup();
	setenv("SPOTTRAIN_H5_GUARD", "0", 1); /* data_load's guarded read would fork per input */
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[512];
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	fuzz_path(path, sizeof path, "set.h5");
	fuzz_write(path, data + 1, size - 1);
	data_split split = mode & 1 ? DATA_TEST : DATA_TRAIN;
	dataset d;
	memset(&d, 0, sizeof d);
	int rc = mode & 2 ? data_load(path, DATA_AUTO, DATA_LABEL_FINE, split, &d) : h5set_load(path, split, &d);
	if (rc != 0)
		return 0;
	if (d.count == 0 || d.channels <= 0 || d.rows <= 0 || d.cols <= 0)
		abort();
	for (size_t i = 0; i < d.count; i++)
		if (d.labels[i] > d.max_label)
			abort();
	dataset_free(&d);
	return 0;
}
