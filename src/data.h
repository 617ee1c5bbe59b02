/*
 * data.h - the image data sets a run trains and evaluates on.
 *
 * Whatever the file format, a loaded data set is the same thing: count images
 * of uint8 pixels, channels x rows x cols each (NCHW, channel-major within an
 * image), and one uint8 label per image. Formats (data.format):
 *
 *   idx       MNIST-format IDX files (images 0x00000803, labels 0x00000801),
 *             gzip-compressed (.gz, through zlib) or raw; one channel (data.c)
 *   cifar10   the CIFAR-10 binary version: data_batch_1..5.bin, test_batch.bin
 *             (data_cifar.c)
 *   cifar100  the CIFAR-100 binary version: train.bin, test.bin, with coarse
 *             and fine labels (data.label) (data_cifar.c)
 *   hdf5      an HDF5 image set: train/images, train/labels, test/images,
 *             test/labels (data_hdf5.c, the format in README's data section)
 *
 * A split of an HDF5 set may instead be streamed (data_stream.c): the labels
 * are in memory, the pixels read on demand through a bounded cache. Either
 * way every consumer (the gather, augmentation, prefetch, eval, the upload to
 * a device) reads pixels through one sample source, dataset_gather, and never
 * needs to know which kind of set it has.
 *
 * data_detect.c chooses the format when data.format is auto and dispatches.
 * Every reader checks every header and size before allocating, and refuses a
 * damaged file with EXIT_DATAERR (65) naming the file, the dataset and the
 * position (byte offset or record) of the first thing wrong.
 */
#ifndef SPOTTRAIN_DATA_H
#define SPOTTRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

typedef struct h5stream h5stream;

typedef struct dataset {
	size_t count;    /* number of samples */
	int channels;    /* C: 1 for IDX, 3 for CIFAR, what the HDF5 file says */
	int rows, cols;  /* H and W of every image */
	uint8_t *images; /* count * channels * rows * cols pixels, NCHW (NULL when streamed) */
	uint8_t *labels; /* count labels */
	int max_label;   /* largest label value present */
	void *map;       /* data_shared.c: images and labels live in this mapping (NULL: malloc'ed) */
	size_t map_bytes;
	h5stream *stream; /* data_stream.c: the pixels are read on demand (images is NULL) */
} dataset;

/* How a split may be streamed instead of loaded (data.cache_mb, data.stream). */
typedef struct data_stream_opts {
	size_t cache_bytes; /* > 0: stream an HDF5 split whose pixels exceed this, through a cache this size */
	int force;          /* stream an HDF5 split whatever its size (cache_bytes, or 256 MiB when 0) */
} data_stream_opts;

#define DATA_STREAM_DEFAULT_CACHE ((size_t)256 << 20)

/* What a stream did (h5stream_stats). */
typedef struct data_stream_stats {
	size_t cap_bytes;       /* the bound (data.cache_mb) */
	size_t block_images;    /* images per cached block (an HDF5 chunk row, or a fixed block) */
	size_t held_bytes;      /* cache memory now, and the most it ever held (<= cap_bytes) */
	size_t max_held_bytes;
	uint64_t gathers, hits, blocks_read, evictions;
	uint64_t bytes_read;    /* pixel bytes delivered by the reads (decompressed) */
	double read_s;          /* seconds spent in the reads */
} data_stream_stats;

/* data.format: the values of the config key, in its order. */
typedef enum { DATA_AUTO, DATA_IDX, DATA_CIFAR10, DATA_CIFAR100, DATA_HDF5 } data_format;
/* data.label: which CIFAR-100 label a sample carries. */
typedef enum { DATA_LABEL_FINE, DATA_LABEL_COARSE } data_label_kind;
/* The two splits a run uses. */
typedef enum { DATA_TRAIN, DATA_TEST } data_split;

/* The name of a format as the config spells it ("cifar10"). */
const char *data_format_name(data_format f);

/*
 * Which format the data at path (a folder, or for HDF5 a file or a folder with one
 * .h5/.hdf5 file) has: IDX when the IDX names are there, CIFAR-10 or -100 when their
 * .bin files are (in path or in the archive's folder cifar-10-batches-bin,
 * cifar-100-binary), HDF5 when path is or holds an HDF5 file. Returns 0 with *out set,
 * EXIT_NOINPUT when path does not exist, EXIT_DATAERR naming path when it cannot tell.
 */
int data_detect(const char *path, data_format *out);

/*
 * Load one split of the data at path in format fmt (DATA_AUTO: data_detect first);
 * label chooses CIFAR-100's label kind. Returns 0, EXIT_NOINPUT (66) when a file is
 * missing, EXIT_DATAERR (65) when one is malformed, with a message naming the file.
 */
int data_load(const char *path, data_format fmt, data_label_kind label, data_split split, dataset *out);

/*
 * Load one IDX split ("train" or "t10k") from dir: looks for
 * <split>-images-idx3-ubyte[.gz] and <split>-labels-idx1-ubyte[.gz]
 * (also the <split>-images.idx3-ubyte spelling). Validates magic, dimensions, item counts,
 * image/label agreement and (for raw files) file size before allocating; compressed
 * files are checked against the declared size while inflating. Never trusts a header
 * to size an allocation beyond 1<<31 bytes.
 * Returns 0, or EXIT_NOINPUT (66) when a file is missing, EXIT_DATAERR (65) when a
 * file is malformed, with a message naming the file and what is wrong.
 */
int dataset_load(const char *dir, const char *split, dataset *out);

/* Load one IDX file by path: expected_magic 0x803 or 0x801. For images dims = {count, rows, cols},
 * for labels dims = {count}. *data is malloc'ed. Same return codes as dataset_load. */
int idx_load(const char *path, uint32_t expected_magic, uint32_t dims[3], uint8_t **data);

/*
 * data_cifar.c: the CIFAR binary files of split in dir (cifar100: the label kind).
 * Records are checked whole (file size a multiple of the record) and every label
 * against its range before anything is kept.
 */
int cifar_load(const char *dir, int cifar100, data_label_kind label, data_split split, dataset *out);

/*
 * data_hdf5.c: group "train" or "test" of the HDF5 image set at path: images (uint8,
 * rank 4, layout attribute "NHWC" or "NCHW", default NHWC) read by hyperslabs into
 * NCHW, labels (integer, rank 1, the same count, 0..255).
 */
int h5set_load(const char *path, data_split split, dataset *out);
/*
 * h5set_load in a forked child (data_guard.c): HDF5 1.10.8 can crash or stall on a damaged
 * file, so a child killed by a signal, ended by a sanitizer, or not done within 120 s + 1 s
 * per 2 MB is EXIT_DATAERR naming the file; otherwise the child's result (the set mapped from
 * the memory file it wrote, or its reader's exit code).
 */
int h5set_load_guarded(const char *path, data_split split, dataset *out);
/* Open and check split of the set at path (no lock held) and give its pixel bytes (data_hdf5.c);
 * guarded: the same in a forked child, as h5set_load_guarded (data_guard.c). */
int h5set_probe(const char *path, data_split split, uint64_t *bytes);
int h5set_probe_guarded(const char *path, data_split split, uint64_t *bytes);

/*
 * data_shared.c: one copy per node. publish (the node's first rank) moves ds into the
 * POSIX shared-memory object `name` ("/spottrain-p<PID of the publisher>-...", so that
 * data_share_sweep can tell a crashed one; read-only from then on); attach (the others) maps it
 * into ds; unlink removes the name once all have it. publish and attach return 0, or -1
 * when the copy cannot be shared (logged; the caller keeps or loads its own copy).
 */
int data_share_publish(dataset *ds, const char *name);
int data_share_attach(dataset *ds, const char *name);
/* The same object through a file descriptor (publish and attach use them; data_guard.c's memory
 * file too): write ds into fd (sized here; 0, or an errno value), or map fd read-only into ds
 * (0; -1 when it cannot be mapped, -2 when its header is not a data set's). */
int data_share_write_fd(const dataset *ds, int fd);
int data_share_map_fd(int fd, dataset *ds);
void data_share_unlink(const char *name);
/*
 * Remove the objects "/spottrain-p<PID>-..." of this user in shm_dir (NULL: /dev/shm, where
 * Linux keeps POSIX shared memory) whose creator PID no longer exists: what a rank that died
 * between publish and unlink left. Returns how many it removed.
 */
int data_share_sweep(const char *shm_dir);

/*
 * The sample source: the pixels of n images idx[0..n) of ds, NCHW, into dst
 * (n * C*H*W bytes), from memory or from the stream. Thread-safe. Returns 0,
 * or an exit code with a message naming file, dataset and image (a damaged
 * chunk met mid-run: EXIT_DATAERR).
 */
int dataset_gather(const dataset *ds, const uint32_t *idx, int n, uint8_t *dst);
/* The bytes of one image. */
size_t dataset_image_bytes(const dataset *ds);
/*
 * Per-channel mean and (population) standard deviation of all pixels of ds, in units of
 * x/255, for data.mean = auto and data.std = auto: exact integer sums over the whole set
 * (through dataset_gather, in order), so the same bits on every rank and world size.
 * channels <= max. Returns 0 or the gather's exit code.
 */
int dataset_channel_stats(const dataset *ds, double *mean, double *std, int max);

/*
 * Like data_load, but an HDF5 split is streamed (h5stream_open) when o asks for it
 * (o->force, or its pixels exceed o->cache_bytes > 0); *streamed says which.
 */
int data_open(const char *path, data_format fmt, data_label_kind label, data_split split,
	      const data_stream_opts *o, dataset *out, int *streamed);
/* Whether data_open would stream this split (reads the HDF5 header only). Same return codes. */
int data_will_stream(const char *path, data_format fmt, data_split split, const data_stream_opts *o, int *yes);

/*
 * data_stream.c: group "train" or "test" of the HDF5 image set at path, checked as
 * h5set_load does, labels in memory, pixels read on demand through a cache of at
 * most cache_bytes (whole HDF5 chunk rows, or fixed blocks of a contiguous dataset;
 * LRU). EXIT_USAGE when cache_bytes cannot hold one block.
 */
int h5stream_open(const char *path, data_split split, size_t cache_bytes, dataset *out);
int h5stream_gather(h5stream *h, const uint32_t *idx, int n, uint8_t *dst);
void h5stream_stats(h5stream *h, data_stream_stats *out);
void h5stream_close(h5stream *h);

/* The largest of n labels (0 when n is 0). */
int data_max_label(const uint8_t *labels, size_t n);

void dataset_free(dataset *d);

#endif
