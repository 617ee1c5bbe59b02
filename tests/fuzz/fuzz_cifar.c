/*
 * fuzz_cifar.c - the CIFAR-10 and CIFAR-100 binary readers (data_cifar.c),
 * directly and through format detection (data_detect.c).
 * Input: one mode byte, then the file. Mode bit 0: CIFAR-100 (train.bin,
 * else CIFAR-10 test_batch.bin); bit 1: coarse labels; bit 2: through
 * data_load with format auto (detection, then the reader). Oracle beyond the
 * sanitizers: a load that succeeds holds whole records only, with every
 * label inside the variant's range.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = {"test_batch.bin", "train.bin"};
	char path[512];
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	int c100 = mode & 1;
	for (int i = 0; i < 2; i++) { /* only this input's file: detection must not see the last one */
		fuzz_path(path, sizeof path, names[i]);
		unlink(path);
	}
	fuzz_path(path, sizeof path, names[c100]);
	fuzz_write(path, data + 1, size - 1);
	data_label_kind label = mode & 2 ? DATA_LABEL_COARSE : DATA_LABEL_FINE;
	data_split split = c100 ? DATA_TRAIN : DATA_TEST;
	dataset d;
	memset(&d, 0, sizeof d);
	int rc = mode & 4 ? data_load(fuzz_dir(), DATA_AUTO, label, split, &d)
			  : cifar_load(fuzz_dir(), c100, label, split, &d);
	if (rc != 0)
		return 0;
	size_t rec = (size_t)(c100 ? 2 : 1) + 3 * 32 * 32;
	int classes = c100 ? (label == DATA_LABEL_COARSE ? 20 : 100) : 10;
	if (d.count * rec != size - 1 || d.channels != 3 || d.rows != 32 || d.cols != 32)
		abort();
	for (size_t i = 0; i < d.count; i++)
		if (d.labels[i] >= classes)
			abort();
	dataset_free(&d);
	return 0;
}
