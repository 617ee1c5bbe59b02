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
 * the samples out in the order asked for. The reads of one gather go to the
 * reader back to back (it decompresses while the next are decided) and the
 * answers are taken when the gather ends, or sooner when the entry a block
 * needs still waits for one: the cache does exactly what one read at a time
 * would. A block that cannot be read (a
 * damaged chunk) fails the gather with 65 naming the file, the dataset and
 * the image. One mutex serialises gathers (the shard threads and the
 * prefetch thread share a stream).
 *
 * reader  HDF5 1.10.8 crashes or stalls on some damaged files
 *         (tests/fuzz/findings/README.md), so the worker never reads the set
 *         with HDF5 itself: a reader child (guard.h), forked when the stream
 *         opens (under the HDF5 lock, from the thread that opens it), owns the
 *         file and its datasets. It sends the split's shape and labels over a
 *         socket pair, then answers one request at a time (images
 *         [first, first + n) into an offset of a memory file that both map: the
 *         cache's entries live in it, so a block is decompressed straight into
 *         its entry) with a status; the cache's bookkeeping and everything else
 *         stay here. Each answer is awaited at most guard_bound_s: a
 *         reader that died (a crash inside HDF5) or stalls fails the gather
 *         with 65 naming the file and the dataset, like a damaged chunk, so the
 *         world ends (MPI_Abort) instead of crashing or hanging. The reader is
 *         killed and reaped at close, and dies with the worker
 *         (PR_SET_PDEATHSIG). SPOTTRAIN_H5_GUARD=0 reads in this process.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* close_range */
#endif

#include "data.h"

#include <errno.h>
#include <hdf5.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt_h5.h"
#include "contract.h"
#include "data_h5set.h"
#include "guard.h"
#include "log.h"

#define STREAM_CONTIG_BLOCK_BYTES 4096u /* largest block of a contiguous dataset (a random read costs one image) */

/* One cached block. */
typedef struct stream_entry {
	long long block; /* block index (-1: empty) */
	int prev, next;  /* the list in order of use: head most recent, tail least (-1: none) */
	uint8_t *data;   /* block_images * px bytes, stored layout */
	int pending;     /* asked for in this gather, its answer not yet taken (out of the cache) */
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
	const char *split;        /* "train" or "test", for messages */
	pid_t reader;             /* the reader child (-1: HDF5 in this process, h->s open here) */
	int sock;                 /* our end of the socket pair to it */
	int pool_fd;              /* memory file the reader writes blocks into (-1: none) */
	uint8_t *pool;            /* it mapped: the cache's entries, n_entries blocks */
	size_t pool_bytes;
	double bound_s;           /* longest wait for one answer */
};

/* What the reader says first: the split's shape and chunking, or why it cannot be read. */
typedef struct reader_hello {
	int32_t rc;               /* 0, or the exit code (the reader logged why) */
	int32_t nchw, chunked;
	uint64_t chunk0;          /* images per chunk row when chunked */
	uint64_t dims[4];
	char img_name[32], lbl_name[32];
} reader_hello;

/* A request: images [first, first + n) into the memory file at offset; the answer is an
 * int32 status once they are there. */
typedef struct reader_request {
	uint64_t first, n, offset;
} reader_request;

/* ------------------------------------------------------------ the HDF5 side -- */

/* Lock held (or in the reader): open and check the split, its chunking, its labels (malloc'ed). */
static int h5side_open(h5set *s, data_split split, reader_hello *hi, uint8_t **labels)
{
	*labels = NULL;
	hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
	if (dapl >= 0)
		H5Pset_chunk_cache(dapl, 0, 0, H5D_CHUNK_CACHE_W0_DEFAULT); /* our cache is the only one */
	s->images_dapl = dapl >= 0 ? dapl : H5P_DEFAULT;
	int rc = h5set_open(s, split, H5SET_MAX_STREAM, 0);
	if (dapl >= 0)
		H5Pclose(dapl);
	s->images_dapl = H5P_DEFAULT;
	if (rc)
		return rc;
	hid_t dcpl = H5Dget_create_plist(s->images);
	hi->chunked = dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED;
	if (hi->chunked) {
		hsize_t ch[4] = {0};
		H5Pget_chunk(dcpl, 4, ch);
		hi->chunk0 = ch[0];
	}
	if (dcpl >= 0)
		H5Pclose(dcpl);
	hi->nchw = s->nchw;
	for (int d = 0; d < 4; d++)
		hi->dims[d] = s->dims[d];
	snprintf(hi->img_name, sizeof hi->img_name, "%s", s->img_name);
	snprintf(hi->lbl_name, sizeof hi->lbl_name, "%s", s->lbl_name);
	*labels = malloc((size_t)s->dims[0] ? (size_t)s->dims[0] : 1);
	if (!*labels) {
		log_error("%s: out of memory for %llu labels", s->path, (unsigned long long)s->dims[0]);
		return EXIT_OSERR;
	}
	return h5set_read_labels(s, *labels);
}

/* Lock held (or in the reader): images [first, first + n) in the stored layout into dst. */
static int h5side_read(const h5set *s, size_t first, size_t n, uint8_t *dst)
{
	hsize_t start[4] = {first, 0, 0, 0}, count[4] = {n, s->dims[1], s->dims[2], s->dims[3]};
	hid_t fsp = H5Dget_space(s->images), msp = H5Screate_simple(4, count, NULL);
	int ok = fsp >= 0 && msp >= 0 && H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
		 H5Dread(s->images, H5T_NATIVE_UINT8, msp, fsp, H5P_DEFAULT, dst) >= 0;
	if (msp >= 0)
		H5Sclose(msp);
	if (fsp >= 0)
		H5Sclose(fsp);
	H5Eclear2(H5E_DEFAULT);
	return ok ? 0 : EXIT_DATAERR;
}

/* ------------------------------------------------------------------ transport -- */

/* All n bytes to fd; false when the peer is gone. */
static bool send_all(int fd, const void *p, size_t n)
{
	const char *b = p;
	while (n > 0) {
		ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return false;
		b += k;
		n -= (size_t)k;
	}
	return true;
}

/* All n bytes from fd, waiting at most until deadline (now_mono; < 0: for good). 0, or -1
 * when the peer is gone (or the socket failed), -2 past the deadline. */
static int recv_all(int fd, void *p, size_t n, double deadline)
{
	char *b = p;
	while (n > 0) {
		if (deadline >= 0) {
			double left = deadline - now_mono();
			if (left <= 0)
				return -2;
			struct pollfd pf = {fd, POLLIN, 0};
			int r = poll(&pf, 1, left > 1000.0 ? 1000000 : (int)(left * 1000.0) + 1);
			if (r < 0 && errno != EINTR)
				return -1;
			if (r <= 0)
				continue;
		}
		ssize_t k = recv(fd, b, n, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		b += k;
		n -= (size_t)k;
	}
	return 0;
}

/* The reader child: the split's hello and labels, then one answer per request, until the
 * worker closes its end. Never returns. */
static void reader_main(h5stream *h, data_split split, int sock, int pool_fd)
{
	/* nothing of the worker's is used here: its files, sockets and MPI's stay with it */
	unsigned lo = (unsigned)(sock < pool_fd ? sock : pool_fd), top = (unsigned)(sock < pool_fd ? pool_fd : sock);
	if ((lo > 3 && close_range(3, lo - 1, 0) != 0) || (top > lo + 1 && close_range(lo + 1, top - 1, 0) != 0) ||
	    close_range(top + 1, ~0u, 0) != 0)
		for (int fd = 3; fd < 4096; fd++)
			if (fd != sock && fd != pool_fd)
				close(fd);
	(void)H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* failures are answered, not printed */
	reader_hello hi = {0};
	uint8_t *labels = NULL, *pool = NULL;
	size_t mapped = 0;
	hi.rc = h5side_open(&h->s, split, &hi, &labels);
	if (!send_all(sock, &hi, sizeof hi) || hi.rc || !send_all(sock, labels, (size_t)hi.dims[0]))
		_exit(0);
	free(labels);
	size_t px = (size_t)(hi.dims[1] * hi.dims[2] * hi.dims[3]);
	for (reader_request rq; recv_all(sock, &rq, sizeof rq, -1) == 0;) {
		int32_t rc = 0;
		struct stat st;
		if (rq.n == 0 || rq.first >= hi.dims[0] || rq.n > hi.dims[0] - rq.first)
			rc = EXIT_SOFTWARE;
		if (!rc && rq.offset + rq.n * px > mapped) { /* the worker sized the file after the hello */
			if (pool)
				munmap(pool, mapped);
			pool = NULL;
			mapped = 0;
			void *p = fstat(pool_fd, &st) == 0 && st.st_size > 0
					  ? mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, pool_fd, 0)
					  : MAP_FAILED;
			if (p != MAP_FAILED) {
				pool = p;
				mapped = (size_t)st.st_size;
			}
			if (rq.offset + rq.n * px > mapped)
				rc = EXIT_OSERR;
		}
		if (!rc)
			rc = h5side_read(&h->s, (size_t)rq.first, (size_t)rq.n, pool + rq.offset);
		if (!send_all(sock, &rc, sizeof rc))
			break;
	}
	_exit(0);
}

/* Why the reader is gone or silent, as exit 65 naming the file and the dataset (the reader is
 * reaped, killed first when it stalled). */
static int reader_lost(h5stream *h, int got, const char *doing)
{
	guard_end end;
	if (got == -2) {
		guard_stop(h->reader);
		snprintf(end.how, sizeof end.how, "did not answer within %.0f s (stalled)", h->bound_s);
	} else if (guard_wait(h->reader, 10.0, &end) == 0 || !end.broken) {
		snprintf(end.how, sizeof end.how, "is gone (it ended with %d)", end.code);
	}
	h->reader = -1;
	log_error("%s: dataset %s: the HDF5 reader %s %s: the file is damaged, or not an image set of README's layout",
		  h->path, h->s.img_name[0] ? h->s.img_name : h->split, end.how, doing);
	return EXIT_DATAERR;
}

/* The images per block: the chunk's first dimension, or a fixed block when contiguous. */
static int choose_block(h5stream *h, const reader_hello *hi, size_t cache_bytes)
{
	h->chunked = hi->chunked;
	if (h->chunked) {
		h->block_images = hi->chunk0 ? (size_t)hi->chunk0 : 1;
	} else {
		size_t target = cache_bytes / 4 < STREAM_CONTIG_BLOCK_BYTES ? cache_bytes / 4 : STREAM_CONTIG_BLOCK_BYTES;
		h->block_images = target / h->px ? target / h->px : 1;
	}
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

/* The split's hello and labels: from the reader child (forked here, under the HDF5 lock), or
 * from HDF5 in this process when guarding is off. */
static int open_reader(h5stream *h, data_split split, reader_hello *hi, uint8_t **labels)
{
	int sv[2];
	*labels = NULL;
	if (!guard_enabled()) {
		ckpt_h5_enter();
		int rc = h5side_open(&h->s, split, hi, labels);
		ckpt_h5_leave();
		return rc;
	}
	h->pool_fd = memfd_create("spottrain-stream", MFD_CLOEXEC);
	if (h->pool_fd < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		log_error("%s: no memory file or socket pair for the HDF5 reader: %s", h->path, strerror(errno));
		return EXIT_OSERR;
	}
	ckpt_h5_enter(); /* no other thread is inside HDF5: the reader inherits a library at rest */
	h->reader = guard_fork();
	if (h->reader == 0) {
		close(sv[0]);
		reader_main(h, split, sv[1], h->pool_fd);
	}
	ckpt_h5_leave();
	close(sv[1]);
	if (h->reader < 0) {
		log_error("%s: cannot fork the HDF5 reader: %s", h->path, strerror(errno));
		close(sv[0]);
		return EXIT_OSERR;
	}
	h->sock = sv[0];
	double deadline = now_mono() + h->bound_s;
	int got = recv_all(h->sock, hi, sizeof *hi, deadline);
	if (got)
		return reader_lost(h, got, "while opening the split");
	if (hi->rc)
		return hi->rc; /* the reader said what and where */
	if (!(*labels = malloc((size_t)hi->dims[0] ? (size_t)hi->dims[0] : 1))) {
		log_error("%s: out of memory for %llu labels", h->path, (unsigned long long)hi->dims[0]);
		return EXIT_OSERR;
	}
	if ((got = recv_all(h->sock, *labels, (size_t)hi->dims[0], deadline)))
		return reader_lost(h, got, "while sending the labels");
	return 0;
}

/* Open, check, read the labels into out, size the cache. */
static int open_split(h5stream *h, data_split split, size_t cache_bytes, dataset *out)
{
	reader_hello hi = {0};
	int rc = open_reader(h, split, &hi, &out->labels);
	if (rc)
		return rc;
	for (int d = 0; d < 4; d++)
		h->s.dims[d] = (hsize_t)hi.dims[d];
	h->s.nchw = hi.nchw;
	snprintf(h->s.img_name, sizeof h->s.img_name, "%s", hi.img_name);
	snprintf(h->s.lbl_name, sizeof h->s.lbl_name, "%s", hi.lbl_name);
	h->px = (size_t)(h->s.dims[1] * h->s.dims[2] * h->s.dims[3]);
	if ((rc = choose_block(h, &hi, cache_bytes)))
		return rc;
	if (h->pool_fd >= 0) { /* the entries live in the memory file the reader writes into */
		h->pool_bytes = (size_t)h->n_entries * h->block_images * h->px;
		void *p = ftruncate(h->pool_fd, (off_t)h->pool_bytes) == 0
				  ? mmap(NULL, h->pool_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, h->pool_fd, 0)
				  : MAP_FAILED;
		if (p == MAP_FAILED) {
			log_error("%s: cannot map a cache of %zu bytes shared with the HDF5 reader: %s", h->path,
				  h->pool_bytes, strerror(errno));
			return EXIT_OSERR;
		}
		h->pool = p;
	}
	size_t n = (size_t)h->s.dims[0];
	h->entries = calloc((size_t)h->n_entries, sizeof *h->entries);
	h->slot = malloc(h->n_blocks * sizeof *h->slot);
	if (!h->entries || !h->slot) {
		log_error("%s: out of memory for the index of %zu blocks", h->path, h->n_blocks);
		return EXIT_OSERR;
	}
	for (size_t b = 0; b < h->n_blocks; b++)
		h->slot[b] = -1;
	for (int i = 0; i < h->n_entries; i++) /* the list: empty entries, in order */
		h->entries[i] = (stream_entry){-1, i - 1, i + 1 < h->n_entries ? i + 1 : -1, NULL, 0};
	h->head = 0;
	h->tail = h->n_entries - 1;
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
	struct stat st;
	snprintf(h->path, sizeof h->path, "%s", path);
	h->s = (h5set){.path = h->path, .file = -1, .images = -1, .labels = -1, .images_dapl = H5P_DEFAULT};
	h->split = split == DATA_TRAIN ? "train" : "test";
	h->reader = -1;
	h->sock = -1;
	h->pool_fd = -1;
	h->bound_s = guard_bound_s(stat(path, &st) == 0 ? (uint64_t)st.st_size : 0);
	pthread_mutex_init(&h->mu, NULL);
	rc = open_split(h, split, cache_bytes, out);
	out->stream = h;
	if (rc)
		dataset_free(out);
	return rc;
}

void h5stream_close(h5stream *h)
{
	if (!h)
		return;
	if (h->sock >= 0)
		close(h->sock);
	guard_stop(h->reader); /* the reader holds nothing that needs an orderly end */
	ckpt_h5_enter();
	h5set_close(&h->s); /* open here only when guarding is off */
	ckpt_h5_leave();
	for (int i = 0; h->entries && !h->pool && i < h->n_entries; i++)
		free(h->entries[i].data);
	if (h->pool)
		munmap(h->pool, h->pool_bytes);
	if (h->pool_fd >= 0)
		close(h->pool_fd);
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

/* One gather: its samples sorted by block, and the blocks asked for and not yet answered. */
typedef struct gather {
	const uint32_t *idx;
	uint8_t *dst;
	gather_item *it;
	struct pending {
		stream_entry *e;
		size_t b;
		int from, to; /* its samples: it[from, to) */
		int32_t rc;   /* guarding off: the read's result */
	} *pend;
	int n_pend;
	double t0;        /* when the first of them was asked for */
} gather;

/* The samples it[from, to) of the block in e, out to their places. */
static void copy_out(h5stream *h, gather *g, const stream_entry *e, int from, int to)
{
	size_t first = (size_t)e->block * h->block_images;
	for (int i = from; i < to; i++) {
		const uint8_t *src = e->data + (g->idx[g->it[i].pos] - first) * h->px;
		h5set_to_nchw(&h->s, src, 1, g->dst + (size_t)g->it[i].pos * h->px);
	}
}

/* Ask for block b into entry e, which leaves the cache until the answer (mu held): the request
 * goes to the reader at once (it reads while the next ones are decided), or, guarding off, the
 * block is read here. 0, or EXIT_OSERR (no memory for the entry). */
static int ask_block(h5stream *h, gather *g, stream_entry *e, size_t b, int from, int to)
{
	size_t first, n;
	if (!e->data) {
		e->data = h->pool ? h->pool + (size_t)(e - h->entries) * h->block_images * h->px
				  : malloc(h->block_images * h->px);
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
	e->pending = 1;
	if (g->n_pend == 0)
		g->t0 = now_mono();
	struct pending *p = &g->pend[g->n_pend++];
	*p = (struct pending){e, b, from, to, 0};
	block_span(h, b, &first, &n);
	if (h->reader < 0 && h->sock < 0) { /* guarding off */
		ckpt_h5_enter();
		p->rc = h5side_read(&h->s, first, n, e->data);
		ckpt_h5_leave();
	} else if (h->reader >= 0) {
		reader_request rq = {first, n, (uint64_t)(e->data - h->pool)};
		(void)send_all(h->sock, &rq, sizeof rq); /* a reader gone shows in its answer */
	}
	return 0;
}

/* The answers to the blocks asked for, in order (mu held): each block read goes into the cache
 * and its samples out. 0, or the first failure: 65 naming file, dataset, the block's images
 * and the image asked for (a damaged chunk), or the lost reader (said in reader_lost). The
 * answers after a failure are still taken (the exchange stays in step), their samples not
 * copied (the gather failed). */
static int take_answers(h5stream *h, gather *g)
{
	int rc = 0;
	for (int k = 0; k < g->n_pend; k++) {
		struct pending *p = &g->pend[k];
		size_t first, n;
		int32_t r = p->rc;
		block_span(h, p->b, &first, &n);
		if (h->reader < 0 && h->sock >= 0) { /* lost */
			if (!rc)
				log_error("%s: dataset %s: the HDF5 reader is gone (it failed before)", h->path, h->s.img_name);
			r = -1;
		} else if (h->reader >= 0) {
			int got = recv_all(h->sock, &r, sizeof r, now_mono() + h->bound_s);
			if (got) {
				char doing[96];
				snprintf(doing, sizeof doing, "reading images %zu..%zu", first, first + n - 1);
				reader_lost(h, got, doing);
				r = -1;
			}
		}
		p->e->pending = 0;
		if (r == 0) {
			p->e->block = (long long)p->b;
			h->slot[p->b] = (int32_t)(p->e - h->entries);
			h->st.blocks_read++;
			h->st.bytes_read += n * h->px;
			if (!rc)
				copy_out(h, g, p->e, p->from, p->to);
		} else if (!rc) {
			if (r == EXIT_DATAERR)
				log_error("%s: dataset %s: cannot read images %zu..%zu (%s %zu; damaged or truncated file?), "
					  "needed for image %u", h->path, h->s.img_name, first, first + n - 1,
					  h->chunked ? "chunk row" : "block", p->b, g->idx[g->it[p->from].pos]);
			rc = r < 0 ? EXIT_DATAERR : r;
		}
	}
	if (g->n_pend)
		h->st.read_s += now_mono() - g->t0;
	g->n_pend = 0;
	return rc;
}

int h5stream_gather(h5stream *h, const uint32_t *idx, int n, uint8_t *dst)
{
	gather g = {idx, dst, malloc((size_t)(n > 0 ? n : 1) * sizeof *g.it),
		    malloc((size_t)(n > 0 ? n : 1) * sizeof *g.pend), 0, 0.0};
	if (!g.it || !g.pend) {
		log_error("%s: out of memory for a gather of %d images", h->path, n);
		free(g.it);
		free(g.pend);
		return EXIT_OSERR;
	}
	int rc = 0;
	for (int i = 0; i < n && !rc; i++) {
		if (idx[i] >= h->s.dims[0]) {
			log_error("%s: dataset %s: image %u asked for, the set has %llu", h->path, h->s.img_name,
				  idx[i], (unsigned long long)h->s.dims[0]);
			rc = EXIT_SOFTWARE;
		}
		g.it[i] = (gather_item){idx[i] / h->block_images, i};
	}
	if (!rc)
		qsort(g.it, (size_t)n, sizeof *g.it, cmp_item);
	pthread_mutex_lock(&h->mu);
	if (!rc)
		h->st.gathers++;
	/* each block in turn, as one at a time would: a hit is copied out, a miss takes the least
	 * recently used entry; only when that entry still waits for its answer are the answers
	 * taken first, so the cache does exactly what reading one block at a time does */
	for (int i = 0; i < n && !rc;) {
		size_t b = (size_t)g.it[i].block;
		int to = i;
		while (to < n && g.it[to].block == (uint64_t)b)
			to++;
		int e = h->slot[b];
		if (e >= 0) {
			h->st.hits++;
			touch(h, e);
			copy_out(h, &g, &h->entries[e], i, to);
		} else if (h->entries[h->tail].pending) {
			rc = take_answers(h, &g);
			continue; /* the same block again, its entry now free to take */
		} else {
			e = h->tail;
			if (h->entries[e].block >= 0)
				h->st.evictions++;
			touch(h, e);
			rc = ask_block(h, &g, &h->entries[e], b, i, to);
		}
		i = to;
	}
	int r = take_answers(h, &g);
	pthread_mutex_unlock(&h->mu);
	free(g.it);
	free(g.pend);
	return rc ? rc : r;
}

void h5stream_stats(h5stream *h, data_stream_stats *out)
{
	pthread_mutex_lock(&h->mu);
	*out = h->st;
	pthread_mutex_unlock(&h->mu);
}
