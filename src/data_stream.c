/*
 * data_stream.c - an HDF5 image set read on demand (data.h: h5stream_*), for
 * splits larger than memory (data.cache_mb, data.stream).
 *
 * The split is opened and checked as data_hdf5.c does (types, shapes, layout,
 * every label: labels are small and stay in memory); its pixels are read
 * when asked for, through a cache of whole blocks of images:
 *
 *   block   the images of one row of HDF5 chunks (the chunk's first
 *           dimension, K images; a chunk that also splits H, W or C reads
 *           the chunks of the row together) or, for a contiguous dataset, a
 *           fixed number of images (at most 4 KiB and a quarter of the cache,
 *           at least one image: reading any part of a contiguous dataset
 *           costs the same, so a small block wastes nothing on a random
 *           batch); the last block may be partial. A block is kept in the
 *           stored layout (NHWC transposes on the way out, per image).
 *   cache   at most cache_bytes / block_bytes blocks (whole blocks: the
 *           bound is never exceeded), least recently used evicted first:
 *           a list in order of use and an index block -> entry (4 bytes per
 *           block of the set, outside the bound) make a lookup and an
 *           eviction O(1) whatever the cache's size.
 *           HDF5's own chunk cache is off for the dataset, so a block is
 *           decompressed once per read and held only here.
 *
 * One gather (a shard, or the prefetch thread's whole window of a step)
 * sorts its samples by block and reads each missing block once, then copies
 * the samples out in the order asked for. A block that cannot be read (a
 * damaged chunk) fails the gather with 65 naming the file, the dataset and
 * the image. One mutex serialises gathers (the shard threads and the
 * prefetch thread share a stream); the HDF5 lock is taken inside it.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "data.h"

#include <hdf5.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt_h5.h"
#include "contract.h"
#include "data_h5set.h"
#include "log.h"

#define STREAM_CONTIG_BLOCK_BYTES 4096u /* largest block of a contiguous dataset (a random read costs one image) */

/* One cached block. */
typedef struct stream_entry {
	long long block; /* block index (-1: empty) */
	int prev, next;  /* the list in order of use: head most recent, tail least (-1: none) */
	uint8_t *data;   /* block_images * px bytes, stored layout */
} stream_entry;

struct h5stream {
	char path[4096];
	h5set s;
	size_t px;                /* bytes per image */
	size_t block_images;      /* images per block */
	size_t n_blocks;
	int chunked;
	int n_entries;            /* capacity in blocks */
	stream_entry *entries;
	int head, tail;           /* most and least recently used entry */
	int32_t *slot;            /* n_blocks: the entry holding each block, -1 none */
	pthread_mutex_t mu;
	data_stream_stats st;
};

/* The images per block: the chunk's first dimension, or a fixed block when contiguous. */
static int choose_block(h5stream *h, size_t cache_bytes)
{
	hid_t dcpl = H5Dget_create_plist(h->s.images);
	h->chunked = dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED;
	if (h->chunked) {
		hsize_t ch[4] = {0};
		H5Pget_chunk(dcpl, 4, ch);
		h->block_images = ch[0] ? (size_t)ch[0] : 1;
	} else {
		size_t target = cache_bytes / 4 < STREAM_CONTIG_BLOCK_BYTES ? cache_bytes / 4 : STREAM_CONTIG_BLOCK_BYTES;
		h->block_images = target / h->px ? target / h->px : 1;
	}
	if (dcpl >= 0)
		H5Pclose(dcpl);
	if (h->block_images > (size_t)h->s.dims[0])
		h->block_images = (size_t)h->s.dims[0];
	size_t bb = h->block_images * h->px;
	if (bb > cache_bytes) {
		log_error("%s: dataset %s: data.cache_mb = %.3f cannot hold one %s of %zu images (%.3f MB); raise it",
			  h->path, h->s.img_name, cache_bytes / 1048576.0, h->chunked ? "chunk row" : "image",
			  h->block_images, bb / 1048576.0);
		return EXIT_USAGE;
	}
	h->n_blocks = ((size_t)h->s.dims[0] + h->block_images - 1) / h->block_images;
	size_t n = cache_bytes / bb;
	h->n_entries = n > (size_t)1 << 30 ? 1 << 30 : (int)n;
	if ((size_t)h->n_entries > h->n_blocks)
		h->n_entries = (int)h->n_blocks;
	h->st.cap_bytes = cache_bytes;
	h->st.block_images = h->block_images;
	return 0;
}

/* Lock held: open, check, read the labels into out, size the cache. */
static int open_locked(h5stream *h, data_split split, size_t cache_bytes, dataset *out)
{
	hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
	if (dapl >= 0)
		H5Pset_chunk_cache(dapl, 0, 0, H5D_CHUNK_CACHE_W0_DEFAULT); /* our cache is the only one */
	h->s.images_dapl = dapl >= 0 ? dapl : H5P_DEFAULT;
	int rc = h5set_open(&h->s, split, H5SET_MAX_STREAM, 0);
	if (dapl >= 0)
		H5Pclose(dapl);
	h->s.images_dapl = H5P_DEFAULT;
	if (rc)
		return rc;
	h->px = (size_t)(h->s.dims[1] * h->s.dims[2] * h->s.dims[3]);
	if ((rc = choose_block(h, cache_bytes)))
		return rc;
	size_t n = (size_t)h->s.dims[0];
	out->labels = malloc(n);
	h->entries = calloc((size_t)h->n_entries, sizeof *h->entries);
	h->slot = malloc(h->n_blocks * sizeof *h->slot);
	if (!out->labels || !h->entries || !h->slot) {
		log_error("%s: out of memory for %zu labels and the index of %zu blocks", h->path, n, h->n_blocks);
		return EXIT_OSERR;
	}
	for (size_t b = 0; b < h->n_blocks; b++)
		h->slot[b] = -1;
	for (int i = 0; i < h->n_entries; i++) /* the list: empty entries, in order */
		h->entries[i] = (stream_entry){-1, i - 1, i + 1 < h->n_entries ? i + 1 : -1, NULL};
	h->head = 0;
	h->tail = h->n_entries - 1;
	if ((rc = h5set_read_labels(&h->s, out->labels)))
		return rc;
	out->count = n;
	h5set_shape(&h->s, &out->channels, &out->rows, &out->cols);
	out->max_label = data_max_label(out->labels, n);
	return 0;
}

int h5stream_open(const char *path, data_split split, size_t cache_bytes, dataset *out)
{
	memset(out, 0, sizeof *out);
	int rc = h5set_check_signature(path);
	if (rc)
		return rc;
	h5stream *h = calloc(1, sizeof *h);
	if (!h) {
		log_error("%s: out of memory for the stream", path);
		return EXIT_OSERR;
	}
	snprintf(h->path, sizeof h->path, "%s", path);
	h->s = (h5set){.path = h->path, .file = -1, .images = -1, .labels = -1, .images_dapl = H5P_DEFAULT};
	pthread_mutex_init(&h->mu, NULL);
	ckpt_h5_enter();
	rc = open_locked(h, split, cache_bytes, out);
	ckpt_h5_leave();
	out->stream = h;
	if (rc)
		dataset_free(out);
	return rc;
}

void h5stream_close(h5stream *h)
{
	if (!h)
		return;
	ckpt_h5_enter();
	h5set_close(&h->s);
	ckpt_h5_leave();
	for (int i = 0; h->entries && i < h->n_entries; i++)
		free(h->entries[i].data);
	free(h->entries);
	free(h->slot);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

/* The images [first, first + n) of block b. */
static void block_span(const h5stream *h, size_t b, size_t *first, size_t *n)
{
	*first = b * h->block_images;
	*n = (size_t)h->s.dims[0] - *first < h->block_images ? (size_t)h->s.dims[0] - *first : h->block_images;
}

/* Read block b into e (mu held). 0, or 65 naming file, dataset, images and `image` (the one asked for). */
static int read_block(h5stream *h, stream_entry *e, size_t b, uint32_t image)
{
	size_t first, n;
	block_span(h, b, &first, &n);
	if (!e->data) {
		e->data = malloc(h->block_images * h->px);
		if (!e->data) {
			log_error("%s: out of memory for a cache block of %zu bytes", h->path, h->block_images * h->px);
			return EXIT_OSERR;
		}
		h->st.held_bytes += h->block_images * h->px;
		if (h->st.held_bytes > h->st.max_held_bytes)
			h->st.max_held_bytes = h->st.held_bytes;
	}
	if (e->block >= 0)
		h->slot[e->block] = -1;
	e->block = -1;
	double t0 = now_mono();
	hsize_t start[4] = {first, 0, 0, 0}, count[4] = {n, h->s.dims[1], h->s.dims[2], h->s.dims[3]};
	ckpt_h5_enter();
	hid_t fsp = H5Dget_space(h->s.images), msp = H5Screate_simple(4, count, NULL);
	int ok = fsp >= 0 && msp >= 0 && H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
		 H5Dread(h->s.images, H5T_NATIVE_UINT8, msp, fsp, H5P_DEFAULT, e->data) >= 0;
	if (msp >= 0)
		H5Sclose(msp);
	if (fsp >= 0)
		H5Sclose(fsp);
	ckpt_h5_leave();
	if (!ok) {
		log_error("%s: dataset %s: cannot read images %zu..%zu (%s %zu; damaged or truncated file?), "
			  "needed for image %u", h->path, h->s.img_name, first, first + n - 1,
			  h->chunked ? "chunk row" : "block", b, image);
		return EXIT_DATAERR;
	}
	e->block = (long long)b;
	h->slot[b] = (int32_t)(e - h->entries);
	h->st.blocks_read++;
	h->st.bytes_read += n * h->px;
	h->st.read_s += now_mono() - t0;
	return 0;
}

/* Entry i becomes the most recently used (mu held). */
static void touch(h5stream *h, int i)
{
	stream_entry *e = &h->entries[i];
	if (h->head == i)
		return;
	h->entries[e->prev].next = e->next; /* i is not the head: it has a prev */
	if (e->next >= 0)
		h->entries[e->next].prev = e->prev;
	else
		h->tail = e->prev;
	e->prev = -1;
	e->next = h->head;
	h->entries[h->head].prev = i;
	h->head = i;
}

/* The entry holding block b, read into the least recently used one when absent (mu held). */
static int find_block(h5stream *h, size_t b, uint32_t image, stream_entry **out)
{
	int i = h->slot[b];
	if (i >= 0) {
		h->st.hits++;
	} else {
		i = h->tail;
		if (h->entries[i].block >= 0)
			h->st.evictions++;
	}
	touch(h, i);
	*out = &h->entries[i];
	return h->entries[i].block == (long long)b ? 0 : read_block(h, *out, b, image);
}

/* A sample's place in a gather: its block and where it goes. */
typedef struct gather_item {
	uint64_t block;
	int pos;
} gather_item;

static int cmp_item(const void *a, const void *b)
{
	const gather_item *x = a, *y = b;
	if (x->block != y->block)
		return x->block < y->block ? -1 : 1;
	return (x->pos > y->pos) - (x->pos < y->pos);
}

int h5stream_gather(h5stream *h, const uint32_t *idx, int n, uint8_t *dst)
{
	gather_item *it = malloc((size_t)(n > 0 ? n : 1) * sizeof *it);
	if (!it) {
		log_error("%s: out of memory for a gather of %d images", h->path, n);
		return EXIT_OSERR;
	}
	for (int i = 0; i < n; i++) {
		if (idx[i] >= h->s.dims[0]) {
			log_error("%s: dataset %s: image %u asked for, the set has %llu", h->path, h->s.img_name,
				  idx[i], (unsigned long long)h->s.dims[0]);
			free(it);
			return EXIT_SOFTWARE;
		}
		it[i] = (gather_item){idx[i] / h->block_images, i};
	}
	qsort(it, (size_t)n, sizeof *it, cmp_item);
	int rc = 0;
	pthread_mutex_lock(&h->mu);
	h->st.gathers++;
	for (int i = 0; i < n && !rc;) {
		stream_entry *e;
		rc = find_block(h, (size_t)it[i].block, idx[it[i].pos], &e);
		if (rc)
			break;
		size_t first = (size_t)it[i].block * h->block_images;
		for (; i < n && it[i].block == (uint64_t)e->block; i++) {
			const uint8_t *src = e->data + (idx[it[i].pos] - first) * h->px;
			h5set_to_nchw(&h->s, src, 1, dst + (size_t)it[i].pos * h->px);
		}
	}
	pthread_mutex_unlock(&h->mu);
	free(it);
	return rc;
}

void h5stream_stats(h5stream *h, data_stream_stats *out)
{
	pthread_mutex_lock(&h->mu);
	*out = h->st;
	pthread_mutex_unlock(&h->mu);
}
