/*
 * run_data.c - the data of a run (run.h): the IDX data sets (fetched when
 * missing), bench's synthetic step, their place in backend memory, the epoch
 * order and the shard fill that every training step reads through.
 *
 * Invariant 1 (DESIGN.md): epoch e visits the samples in the order of a
 * permutation drawn from (seed, e); global step s of an epoch takes the
 * samples perm[pos, pos+B).
 */
#include "run.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "contract.h"
#include "fetch.h"
#include "log.h"
#include "philox.h"

/*
 * Download missing IDX files (data.url) on the first rank of each node, the
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
		rc = fetch_dataset_opts(r->cfg.data_dir, r->cfg.data_url, r->cfg.data_sha256, &o);
	}
	return dist_agree(&r->d, rc);
}

/* The images must fit the network's input and the labels its classes. */
static int check_dataset(const run *r, const dataset *ds)
{
	const model *m = &r->m;
	if (m->in_c != 1 || ds->rows != m->in_h || ds->cols != m->in_w) {
		log_error("%s: images are 1x%dx%d but the network's input is %dx%dx%d (model.input)", r->cfg.data_dir,
			  ds->rows, ds->cols, m->in_c, m->in_h, m->in_w);
		return EXIT_DATAERR;
	}
	if (ds->max_label >= m->classes) {
		log_error("%s: labels go up to %d but the network has %d classes", r->cfg.data_dir, ds->max_label,
			  m->classes);
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
	ds->rows = m->in_h;
	ds->cols = m->in_w * m->in_c;
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

int run_load_data(run *r, int rc)
{
	if (r->kind == RUN_TRAIN)
		rc = fetch_data(r, rc); /* every rank: it contains the agreement */
	if (!rc && r->kind == RUN_BENCH)
		rc = synthesize(r);
	if (!rc && r->kind == RUN_TRAIN && !(rc = dataset_load(r->cfg.data_dir, "train", &r->train)))
		rc = check_dataset(r, &r->train);
	if (!rc && r->kind != RUN_BENCH && !(rc = dataset_load(r->cfg.data_dir, "t10k", &r->test)))
		rc = check_dataset(r, &r->test);
	return dist_agree(&r->d, rc);
}

/* The images of ds in backend memory: uploaded once (host-memory backends use them in place). */
static int place_images(run *r, const dataset *ds, uint8_t **out)
{
	size_t bytes = ds->count * (size_t)ds->rows * (size_t)ds->cols;
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

int run_place_data(run *r)
{
	int rc = place_images(r, &r->train, &r->train_images);
	if (!rc)
		rc = place_images(r, &r->test, &r->test_images);
	if (!rc && r->kind == RUN_BENCH)
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
	const uint32_t *order = r->perm + r->pos + first;
	for (int i = 0; i < n; i++) {
		samples[i] = order[i];
		labels[i] = r->train.labels[samples[i]];
	}
	if (r->sample_trace_fd >= 0)
		trace_shard(r, first, n, samples);
	size_t pixels = (size_t)r->m.in_c * r->m.in_h * r->m.in_w;
	r->be->gather_images(r->train_images, samples, n, pixels, 1.0f / 255.0f, input);
}
