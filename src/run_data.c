/*
 * run_data.c - the data of a run (run.h): the data sets in any format of
 * data.h (IDX fetched when missing; one copy per node), bench's synthetic
 * step, their place in backend memory, the epoch order, and the shard fill
 * that every training step reads through: the plain gather, or the
 * per-sample augmentation on the host (data_augment.h), taken from the
 * prefetch thread when data.prefetch is on (data_prefetch.h). Pixels come
 * from the one sample source of data.h (dataset_gather): a set in memory or
 * an HDF5 set streamed through its cache (data.cache_mb, data.stream); only
 * the placement below looks at which, to keep an in-memory set in backend
 * memory for the backend's own gather.
 *
 * Invariant 1 (DESIGN.md): epoch e visits the samples in the order of a
 * permutation drawn from (seed, e); global step s of an epoch takes the
 * samples perm[pos, pos+B).
 */
#include "run.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "contract.h"
#include "data_archive.h"
#include "fetch.h"
#include "log.h"
#include "philox.h"

/*
 * Download missing IDX files (data.url), or the CIFAR-10 archive when data.url
 * names a .tar.gz (data_archive.h), on the first rank of each node, the
 * other ranks waiting in the agreement. Collective: every rank calls it with
 * its rc so far and gets the same code back. The download's deadline stays
 * inside dist.collective_timeout_s, so it fails with its own message (74)
 * before the waiting ranks abort the world.
 */
static int fetch_data(run *r, int rc)
{
	if (!rc && r->cfg.data_url[0] && r->d.local_rank == 0) {
		fetch_options o;
		fetch_options_default(&o);
		if (o.deadline_s > 0.8 * r->cfg.collective_timeout_s)
			o.deadline_s = 0.8 * r->cfg.collective_timeout_s;
		int fmt = r->cfg.data_format;
		if (archive_url(r->cfg.data_url) && fmt != DATA_AUTO && fmt != DATA_CIFAR10) {
			log_error("data.url %s names an archive, which spottrain unpacks for data.format = cifar10 "
				  "only, not %s", r->cfg.data_url, data_format_name((data_format)fmt));
			rc = EXIT_USAGE;
		} else if (archive_url(r->cfg.data_url))
			rc = archive_fetch_cifar10(r->cfg.data_dir, r->cfg.data_url, r->cfg.data_archive_digest, &o);
		else
			rc = fetch_dataset_opts(r->cfg.data_dir, r->cfg.data_url, r->cfg.data_sha256, &o);
	}
	return dist_agree(&r->d, rc);
}

/* The images of split must fit the network's input and the labels its classes. */
static int check_dataset(const run *r, const dataset *ds, const char *split)
{
	const model *m = &r->m;
	if (ds->channels != m->in_c || ds->rows != m->in_h || ds->cols != m->in_w) {
		log_error("%s (%s, %s set): images are %dx%dx%d (CxHxW) but the network's input is %dx%dx%d "
			  "(model.input)", r->cfg.data_dir, data_format_name((data_format)r->cfg.data_format), split,
			  ds->channels, ds->rows, ds->cols, m->in_c, m->in_h, m->in_w);
		return EXIT_DATAERR;
	}
	if (ds->max_label >= m->classes) {
		log_error("%s (%s set): labels go up to %d but the network has %d classes", r->cfg.data_dir, split,
			  ds->max_label, m->classes);
		return EXIT_DATAERR;
	}
	return 0;
}

/* bench: one global batch of fixed pseudo-random pixels, labels cycling through the classes. */
static int synthesize(run *r)
{
	const model *m = &r->m;
	size_t count = (size_t)r->cfg.global_batch, pixels = (size_t)m->in_c * m->in_h * m->in_w;
	dataset *ds = &r->train;
	ds->images = malloc(count * pixels);
	ds->labels = malloc(count);
	if (!ds->images || !ds->labels) {
		log_error("out of memory for %zu synthetic images", count);
		return EXIT_OSERR;
	}
	ds->count = count;
	ds->channels = m->in_c;
	ds->rows = m->in_h;
	ds->cols = m->in_w;
	philox_key key = {{r->cfg.seed, 77}};
	for (size_t i = 0; i < count * pixels; i++) {
		philox_ctr c = {{(uint32_t)i, 0, 0, 9}};
		ds->images[i] = (uint8_t)(philox4x32(c, key).v[0] >> 24);
	}
	for (size_t i = 0; i < count; i++)
		ds->labels[i] = (uint8_t)(i % (size_t)m->classes);
	ds->max_label = m->classes - 1;
	return 0;
}

/*
 * The name of split's node-shared copy: the pid of the node's first rank (its creator, so a
 * crashed one can be told: data_share_sweep), a token of rank 0 (the same on every rank), the
 * node, the split.
 */
static void share_name(run *r, data_split split, char *name, size_t size)
{
	unsigned long long tok = ((unsigned long long)getpid() << 32) ^ (unsigned long long)(now_wall() * 1e6);
	long creator = (long)getpid();
	dist_bcast(&r->d, &tok, sizeof tok, 0);
	dist_node_bcast(&r->d, &creator, (int)sizeof creator);
	snprintf(name, size, "/spottrain-p%ld-%llx-n%d-%s", creator, tok, r->d.node_index,
		 split == DATA_TRAIN ? "train" : "test");
}

/*
 * Collective: one split in the configured format, checked against the network. With
 * several ranks on a node, the node's first rank reads the files and shares the set
 * (data_shared.c); the others map it, or read the files themselves when that failed.
 */
/*
 * Collective: a split that data.cache_mb or data.stream has streamed (every rank
 * reads the file through its own cache; nothing is shared).
 */
static int stream_split(run *r, data_split split, const data_stream_opts *so, dataset *ds)
{
	const config *c = &r->cfg;
	data_stream_opts force = *so;
	force.force = 1; /* every rank streams when one would (the same files give the same answer) */
	int streamed = 0;
	int rc = data_open(c->data_dir, (data_format)c->data_format, (data_label_kind)c->data_label, split, &force,
			   ds, &streamed);
	rc = dist_agree(&r->d, rc);
	if (!rc && ds->stream && r->d.rank == 0) {
		data_stream_stats st;
		h5stream_stats(ds->stream, &st);
		log_info("%s: the %s set (%zu images, %.1f MB of pixels) streams from the file through a cache of "
			 "%.2f MB (blocks of %zu images)", c->data_dir, split == DATA_TRAIN ? "training" : "test",
			 ds->count, ds->count * (double)dataset_image_bytes(ds) / 1e6, st.cap_bytes / 1e6,
			 st.block_images);
	}
	return rc ? rc : check_dataset(r, ds, split == DATA_TRAIN ? "training" : "test");
}

static int load_split(run *r, data_split split, dataset *ds, int rc)
{
	const config *c = &r->cfg;
	data_format fmt = (data_format)c->data_format;
	data_label_kind lk = (data_label_kind)c->data_label;
	bool share = r->d.local_size > 1, leader = r->d.local_rank == 0;
	char name[128] = "";
	data_stream_opts so = {(size_t)(c->data_cache_mb * 1048576.0), c->data_stream};
	int stream = 0;
	if (!rc)
		rc = data_will_stream(c->data_dir, fmt, split, &so, &stream);
	rc = dist_agree(&r->d, rc);
	if (!rc)
		stream = dist_agree(&r->d, stream); /* one decision for all (the collectives below differ) */
	if (!rc && stream)
		return stream_split(r, split, &so, ds);
	if (!rc && c->data_stream && r->d.rank == 0)
		log_info("%s: data.stream applies to HDF5 sets; the %s set is loaded whole", c->data_dir,
			 split == DATA_TRAIN ? "training" : "test");
	if (share)
		share_name(r, split, name, sizeof name);
	if (!rc && share && leader)
		data_share_sweep(NULL); /* what a crashed start-up on this node left in /dev/shm */
	if (!rc && (!share || leader)) {
		rc = data_load(c->data_dir, fmt, lk, split, ds);
		if (!rc && share)
			data_share_publish(ds, name); /* on failure the rank keeps its own copy */
	}
	rc = dist_agree(&r->d, rc);
	if (!rc && share && !leader && data_share_attach(ds, name) != 0)
		rc = data_load(c->data_dir, fmt, lk, split, ds);
	rc = dist_agree(&r->d, rc);
	if (share && leader) {
		data_share_unlink(name);
		if (!rc && ds->map && r->d.rank == 0)
			log_info("%s: the %s set (%zu images, %.1f MB) is held once per node in shared memory",
				 c->data_dir, split == DATA_TRAIN ? "training" : "test", ds->count, ds->map_bytes / 1e6);
	}
	return rc ? rc : check_dataset(r, ds, split == DATA_TRAIN ? "training" : "test");
}

static bool is_auto(const char *v)
{
	return strcmp(v, "auto") == 0;
}

/* eval --config with data.mean/std = auto: the values the checkpoint's training resolved. */
static int norm_from_checkpoint(run *r)
{
	ckpt_meta meta = {0};
	config *stored = malloc(sizeof *stored);
	int rc = stored ? ckpt_read_meta(r->args->ckpt, &meta) : EXIT_OSERR;
	if (!rc) {
		config_defaults(stored);
		rc = config_load_string(stored, meta.config_text ? meta.config_text : "", r->args->ckpt) ? EXIT_DATAERR : 0;
	}
	if (!rc && (is_auto(stored->data_mean) || !stored->data_mean[0] || !stored->data_std[0])) {
		log_error("%s: data.mean/std = auto, but the checkpoint's config has no values for them: give numbers",
			  r->args->ckpt);
		rc = EXIT_USAGE;
	}
	if (!rc) {
		if (is_auto(r->cfg.data_mean))
			snprintf(r->cfg.data_mean, sizeof r->cfg.data_mean, "%s", stored->data_mean);
		if (is_auto(r->cfg.data_std))
			snprintf(r->cfg.data_std, sizeof r->cfg.data_std, "%s", stored->data_std);
	}
	ckpt_meta_free(&meta);
	free(stored);
	return rc;
}

/* "v0,v1,..." of C values into out (size); false when it does not fit. */
static bool format_list(char *out, size_t size, const double *v, int C)
{
	size_t len = 0;
	for (int c = 0; c < C; c++) {
		int n = snprintf(out + len, size - len, "%s%.9g", c ? "," : "", v[c]);
		if (n < 0 || (size_t)n >= size - len)
			return false;
		len += (size_t)n;
	}
	return true;
}

/*
 * data.mean = auto, data.std = auto: the training split's per-channel figures
 * (dataset_channel_stats: exact sums, the same bits on every rank), written into the
 * config as text, so the checkpoints' config (and eval) carry them and training uses
 * exactly the logged values. Every rank computes them from its own copy.
 */
static int resolve_norm(run *r)
{
	config *c = &r->cfg;
	if (r->kind == RUN_EVAL)
		return norm_from_checkpoint(r);
	double mean[AUG_MAX_CHANNELS], sd[AUG_MAX_CHANNELS];
	int C = r->train.channels;
	double t0 = now_mono();
	int rc = C > AUG_MAX_CHANNELS ? EXIT_DATAERR : dataset_channel_stats(&r->train, mean, sd, AUG_MAX_CHANNELS);
	for (int k = 0; !rc && k < C && is_auto(c->data_std); k++)
		if (!(sd[k] > 0)) {
			log_error("data.std = auto: channel %d of the training set of %s is constant; give data.std", k,
				  c->data_dir);
			rc = EXIT_DATAERR;
		}
	char m[sizeof c->data_mean], s[sizeof c->data_std];
	if (!rc && (!format_list(m, sizeof m, mean, C) || !format_list(s, sizeof s, sd, C))) {
		log_error("data.mean/std = auto: %d channels do not fit the config's value; give them", C);
		rc = EXIT_USAGE;
	}
	if (rc)
		return rc;
	if (is_auto(c->data_mean))
		snprintf(c->data_mean, sizeof c->data_mean, "%s", m);
	if (is_auto(c->data_std))
		snprintf(c->data_std, sizeof c->data_std, "%s", s);
	if (r->d.rank == 0)
		log_info("data.mean = %s, data.std = %s (auto: the %zu training images of %s, %.1f s)", c->data_mean,
			 c->data_std, r->train.count, c->data_dir, now_mono() - t0);
	return 0;
}

static int setup_augment(run *r)
{
	const config *c = &r->cfg;
	return augment_setup(&r->aug, c->aug_crop_pad, c->aug_pad_mode == 1, c->aug_flip, c->aug_cutout, c->data_mean,
			     c->data_std, r->m.in_c, r->m.in_h, r->m.in_w);
}

int run_load_data(run *r, int rc)
{
	const config *c = &r->cfg;
	bool autonorm = is_auto(c->data_mean) || is_auto(c->data_std);
	if (!rc && !autonorm)
		rc = setup_augment(r);
	if (r->kind == RUN_TRAIN)
		rc = fetch_data(r, rc); /* every rank: it contains the agreement */
	bool bench_data = r->kind == RUN_BENCH && r->args->bench_data;
	if (!rc && r->kind == RUN_BENCH && !bench_data)
		rc = synthesize(r);
	if (r->kind == RUN_TRAIN || bench_data)
		rc = load_split(r, DATA_TRAIN, &r->train, rc);
	if (!rc && bench_data && r->train.count < (size_t)c->global_batch) {
		log_error("bench --data: the training set of %s has %zu images, fewer than one global batch (%d)",
			  c->data_dir, r->train.count, c->global_batch);
		rc = EXIT_USAGE;
	}
	if (r->kind != RUN_BENCH)
		rc = load_split(r, DATA_TEST, &r->test, rc);
	if (!rc && autonorm)
		rc = resolve_norm(r);
	if (!rc && autonorm)
		rc = setup_augment(r);
	return dist_agree(&r->d, rc);
}

/* The images of ds in backend memory: uploaded once (host-memory backends use them in place). */
static int place_images(run *r, const dataset *ds, uint8_t **out)
{
	size_t bytes = ds->count * (size_t)ds->channels * (size_t)ds->rows * (size_t)ds->cols;
	if (!ds->images) { /* streamed: batches are gathered on the host and uploaded (run_gather) */
		*out = NULL;
		return 0;
	}
	if ((r->be->caps & BACKEND_CAP_HOST_MEMORY) || bytes == 0) {
		*out = ds->images;
		return 0;
	}
	*out = r->be->alloc(bytes);
	if (!*out) {
		log_error("cannot place the %zu-byte data set in %s memory", bytes, r->be->name);
		return EXIT_OSERR;
	}
	r->be->upload(*out, ds->images, bytes);
	return 0;
}

/*
 * The pixels of n samples of ds (the sample source) into a new host buffer; a
 * sample that cannot be read (a damaged chunk of a streamed set: 65, named)
 * ends the world: this runs inside a step, with nothing to return to.
 */
static uint8_t *gather_pixels(run *r, const dataset *ds, const uint32_t *samples, int n)
{
	static atomic_flag aborting = ATOMIC_FLAG_INIT;
	uint8_t *px = malloc((size_t)(n > 0 ? n : 1) * dataset_image_bytes(ds));
	int rc = px ? dataset_gather(ds, samples, n, px) : EXIT_OSERR;
	if (rc) {
		if (!px)
			log_error("out of memory staging %d images", n);
		while (atomic_flag_test_and_set(&aborting)) /* a shard thread and the prefetch thread: one aborts */
			pause();
		dist_abort(&r->d, rc);
	}
	return px;
}

/* The inputs of n samples (augmented for training, epoch `epoch`) on the host at out. */
static void augment_samples(run *r, const dataset *ds, bool train, uint32_t epoch, const uint32_t *samples, int n,
			    float *out)
{
	size_t pixels = dataset_image_bytes(ds);
	uint8_t *px = gather_pixels(r, ds, samples, n);
	for (int i = 0; i < n; i++)
		augment_image(&r->aug, px + (size_t)i * pixels, ds->rows, ds->cols, r->cfg.seed, epoch, samples[i],
			      train, out + (size_t)i * pixels);
	free(px);
}

/* prefetch_make_fn: the window's training inputs, as gather_augmented makes them. */
static void make_samples(void *ctx, const uint32_t *samples, int n, uint32_t epoch, float *out)
{
	run *r = ctx;
	augment_samples(r, &r->train, true, epoch, samples, n, out);
}

/*
 * data.prefetch on a training or bench run: the worker makes host inputs, so it is
 * used where inputs are made on the host anyway (augmentation on, or a host-memory
 * backend, where x/255 made here has the gather's bits). Otherwise it stays off, with a line.
 */
static int start_prefetch(run *r)
{
	if (!r->cfg.data_prefetch || r->kind == RUN_EVAL)
		return 0;
	if (!augment_active(&r->aug) && !(r->be->caps & BACKEND_CAP_HOST_MEMORY)) {
		if (r->d.rank == 0)
			log_info("data.prefetch: off on %s without augmentation (the gather runs on the device)",
				 r->be->name);
		return 0;
	}
	r->pf = calloc(1, sizeof *r->pf);
	if (!r->pf) {
		log_error("out of memory for the prefetcher");
		return EXIT_OSERR;
	}
	size_t pixels = (size_t)r->m.in_c * r->m.in_h * r->m.in_w;
	int rc = prefetch_init(r->pf, r->cfg.global_batch, pixels, make_samples, r);
	if (rc) {
		free(r->pf);
		r->pf = NULL;
	}
	return rc;
}

void run_reset_data_time(run *r)
{
	r->data_ns = 0;
	if (r->pf) {
		pthread_mutex_lock(&r->pf->mu);
		while (r->pf->busy)
			pthread_cond_wait(&r->pf->cv, &r->pf->mu);
		r->pf->worker_s = 0;
		pthread_mutex_unlock(&r->pf->mu);
	}
}

/* Rank 0: what a streamed split's cache did. */
static void log_stream(const run *r, const dataset *ds, const char *split)
{
	if (!ds->stream || r->d.rank != 0)
		return;
	data_stream_stats st;
	h5stream_stats(ds->stream, &st);
	log_info("data stream (%s set): %llu blocks read (%.1f MB, %.1f MB/s while reading), %llu block hits, "
		 "%llu evictions in %llu gathers; cache at most %.2f of %.2f MB", split,
		 (unsigned long long)st.blocks_read, st.bytes_read / 1e6,
		 st.read_s > 0 ? st.bytes_read / 1e6 / st.read_s : 0.0, (unsigned long long)st.hits,
		 (unsigned long long)st.evictions, (unsigned long long)st.gathers, st.max_held_bytes / 1e6,
		 st.cap_bytes / 1e6);
}

void run_free_data(run *r)
{
	log_stream(r, &r->train, "training");
	log_stream(r, &r->test, "test");
	if (r->pf) {
		if (r->d.rank == 0)
			log_info("data.prefetch: %ld shard fills served from the prefetch, %ld made in the step",
				 (long)r->pf->hits, (long)r->pf->misses);
		prefetch_free(r->pf);
		free(r->pf);
		r->pf = NULL;
	}
}

int run_place_data(run *r)
{
	int rc = place_images(r, &r->train, &r->train_images);
	if (!rc)
		rc = place_images(r, &r->test, &r->test_images);
	if (!rc)
		rc = start_prefetch(r);
	if (!rc && r->kind == RUN_BENCH && r->args->bench_data)
		run_order_epoch(r, 0); /* bench --data: the steps walk the epochs' orders */
	else if (!rc && r->kind == RUN_BENCH)
		for (size_t i = 0; i < r->train.count; i++)
			r->perm[i] = (uint32_t)i; /* every step takes the same synthetic batch */
	return rc;
}

/* Fisher-Yates from Philox keyed by (seed, epoch): the same on every rank and world size. */
void run_order_epoch(run *r, long epoch)
{
	if (r->perm_epoch == epoch)
		return;
	uint32_t *perm = r->perm;
	size_t n = r->train.count;
	philox_key k = {{r->cfg.seed, (uint32_t)epoch}};
	for (size_t i = 0; i < n; i++)
		perm[i] = (uint32_t)i;
	for (size_t i = n - 1; i > 0; i--) {
		philox_ctr c = {{(uint32_t)i, (uint32_t)(i >> 32), 0, PHILOX_PERMUTE}};
		philox_ctr x = philox4x32(c, k);
		uint64_t v = ((uint64_t)x.v[0] << 32) | x.v[1];
		size_t j = (size_t)(v % (uint64_t)(i + 1));
		uint32_t t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	r->perm_epoch = epoch;
}

/*
 * The augmented inputs of n samples of ds on the host: written in place on
 * host-memory backends, staged and uploaded otherwise.
 */
static void gather_augmented(run *r, const dataset *ds, bool train, const uint32_t *samples, int n, float *input)
{
	size_t pixels = dataset_image_bytes(ds);
	bool host = r->be->caps & BACKEND_CAP_HOST_MEMORY;
	float *out = host ? input : malloc((size_t)n * pixels * sizeof *out);
	if (!out) {
		log_error("out of memory staging %d augmented images", n);
		exit(EXIT_OSERR); /* inside a step: nothing to return to */
	}
	augment_samples(r, ds, train, (uint32_t)r->epoch, samples, n, out);
	if (!host) {
		r->be->upload(input, out, (size_t)n * pixels * sizeof *out);
		free(out);
	}
}

/*
 * The plain gather of a set not in backend memory (streamed): its pixels on the
 * host, uploaded as they are (device backends), then the backend's own gather over
 * them in order, so x/255 has the bits of the in-memory gather.
 */
static void gather_staged(run *r, const dataset *ds, const uint32_t *samples, int n, float *input)
{
	size_t bytes = (size_t)n * dataset_image_bytes(ds);
	uint8_t *px = gather_pixels(r, ds, samples, n), *dev = px;
	uint32_t *order = malloc((size_t)(n > 0 ? n : 1) * sizeof *order);
	bool host = r->be->caps & BACKEND_CAP_HOST_MEMORY;
	if (!host && bytes)
		dev = r->be->alloc(bytes);
	if (!order || !dev) {
		log_error("out of memory staging %d images for %s", n, r->be->name);
		exit(EXIT_OSERR); /* inside a step: nothing to return to */
	}
	for (int i = 0; i < n; i++)
		order[i] = (uint32_t)i;
	if (!host && bytes)
		r->be->upload(dev, px, bytes);
	r->be->gather_images(dev, order, n, dataset_image_bytes(ds), 1.0f / 255.0f, input);
	if (!host && bytes)
		r->be->release(dev);
	free(order);
	free(px);
}

void run_gather(run *r, bool train, const uint32_t *samples, int n, float *input)
{
	const dataset *ds = train ? &r->train : &r->test;
	if (augment_active(&r->aug)) {
		gather_augmented(r, ds, train, samples, n, input);
		return;
	}
	size_t pixels = (size_t)r->m.in_c * r->m.in_h * r->m.in_w;
	const uint8_t *placed = train ? r->train_images : r->test_images;
	if (placed) {
		r->be->gather_images(placed, samples, n, pixels, 1.0f / 255.0f, input);
		return;
	}
	gather_staged(r, ds, samples, n, input);
}

/* This rank's step positions [*p0, *p1) of a step of bsz samples (grad.h's shards, or the float path's part). */
static void rank_positions(const run *r, int bsz, long *p0, long *p1)
{
	int W = r->d.world, rank = r->d.rank, S = r->cfg.shard_samples;
	if (!r->se.exact) {
		*p0 = (long)bsz * rank / W;
		*p1 = (long)bsz * (rank + 1) / W;
		return;
	}
	int k0, k1;
	grad_rank_shards(bsz, S, rank, W, &k0, &k1);
	*p0 = (long)k0 * S;
	*p1 = (long)k1 * S < bsz ? (long)k1 * S : bsz;
}

/*
 * The step that is running (optim_step) begins: queue the next one's samples of this
 * rank. Train: the next step of the same epoch (none across an epoch end, whose order
 * is not drawn yet); bench: the same synthetic step again.
 */
static void prefetch_next(run *r)
{
	long N = (long)r->train.count, B = r->cfg.global_batch;
	long bsz = N - r->pos < B ? N - r->pos : B;
	bool synthetic = r->kind == RUN_BENCH && !r->args->bench_data;
	long next = synthetic ? r->pos : r->pos + bsz;
	if (r->kind == RUN_BENCH && !synthetic && next + B > N)
		next = N; /* bench --data starts a new epoch there: its order is not drawn yet */
	long p0 = 0, p1 = 0;
	if (next < N) {
		int nb = (int)(N - next < B ? N - next : B);
		rank_positions(r, nb, &p0, &p1);
	}
	prefetch_begin_step(r->pf, r->optim_step, r->optim_step + 1, (uint32_t)r->epoch, p0, r->perm + next + p0,
			    (int)(p1 - p0));
}

/* The inputs of [first, first+n) from the prefetcher into input (backend memory); false: not there. */
static bool take_prefetched(run *r, long first, int n, const uint32_t *samples, float *input)
{
	if (!r->pf)
		return false;
	if (r->be->caps & BACKEND_CAP_HOST_MEMORY)
		return prefetch_take(r->pf, (uint32_t)r->epoch, first, n, samples, input);
	size_t bytes = (size_t)n * r->pf->pixels * sizeof(float);
	float *stage = malloc(bytes);
	bool ok = stage && prefetch_take(r->pf, (uint32_t)r->epoch, first, n, samples, stage);
	if (ok)
		r->be->upload(input, stage, bytes);
	free(stage);
	return ok;
}

/*
 * SPOTTRAIN_SAMPLE_TRACE (run.h): one line "STEP EPOCH FIRST N SAMPLE..." for
 * the shard, in one write() to the O_APPEND file so the shard threads' lines
 * never interleave. A failed write is not an error of training: ignored.
 */
static void trace_shard(const run *r, long first, int n, const uint32_t *samples)
{
	char line[8192];
	int len = snprintf(line, sizeof line, "%ld %ld %ld %d", r->step + 1, r->epoch, r->pos + first, n);
	for (int i = 0; i < n && len > 0 && (size_t)len < sizeof line - 16; i++)
		len += snprintf(line + len, sizeof line - (size_t)len, " %u", samples[i]);
	if (len <= 0 || (size_t)len >= sizeof line - 16)
		return;
	line[len++] = '\n';
	ssize_t w = write(r->sample_trace_fd, line, (size_t)len);
	(void)w;
}

void run_fill_shard(void *ctx, long first, int n, float *input, uint32_t *samples, uint8_t *labels)
{
	run *r = ctx;
	double t0 = now_mono();
	const uint32_t *order = r->perm + r->pos + first;
	for (int i = 0; i < n; i++) {
		samples[i] = order[i];
		labels[i] = r->train.labels[samples[i]];
	}
	if (r->sample_trace_fd >= 0)
		trace_shard(r, first, n, samples);
	if (r->pf)
		prefetch_next(r);
	if (!take_prefetched(r, first, n, samples, input))
		run_gather(r, true, samples, n, input);
	r->data_ns += (long long)((now_mono() - t0) * 1e9);
}
