/*
 * eval.c - test loss and accuracy (eval.h) and `spottrain eval`: top-1 and
 * top-5 accuracy, and the accuracy of each class, in its JSON line.
 */
#include "eval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"
#include "log.h"
#include "runlog.h"
#include "train.h"

/*
 * Rank of the true class among n samples' logits (n x classes, host memory):
 * top-1 and top-5 hits (a class ranks k when k others score strictly higher)
 * and per-class counts, added into st.
 */
static void count_hits(const float *logits, const uint8_t *labels, int n, int classes, eval_stats *st)
{
	for (int i = 0; i < n; i++) {
		const float *z = logits + (size_t)i * (size_t)classes;
		int y = labels[i], above = 0;
		for (int k = 0; k < classes; k++)
			above += z[k] > z[y];
		st->top1 += above == 0;
		st->top5 += above < 5;
		st->class_images[y] += 1;
		st->class_correct[y] += above == 0;
	}
}

/* The logits of the last forward pass in host memory (a copy on other backends), or NULL. */
static const float *host_logits(const run *r, const step_engine *e, int n, float **copy)
{
	const model *m = &r->m;
	const float *z = m->n_layers > 1 ? e->ws.act[m->n_layers - 2] : e->ws.input;
	*copy = NULL;
	if (r->be->caps & BACKEND_CAP_HOST_MEMORY)
		return z;
	size_t bytes = (size_t)n * (size_t)m->classes * sizeof(float);
	*copy = malloc(bytes);
	if (*copy)
		r->be->download(*copy, z, bytes);
	return *copy;
}

void eval_test_set_stats(run *r, eval_stats *st)
{
	step_engine *e = &r->se;
	int classes = r->m.classes;
	size_t n = r->test.count, max_n = (size_t)e->ws.max_n;
	size_t lo = n * (size_t)r->d.rank / (size_t)r->d.world;
	size_t hi = n * (size_t)(r->d.rank + 1) / (size_t)r->d.world;
	memset(st, 0, sizeof *st);
	for (size_t i = lo; i < hi; i += max_n) {
		int cnt = (int)(hi - i < max_n ? hi - i : max_n);
		for (int j = 0; j < cnt; j++) {
			e->samples[j] = (uint32_t)(i + (size_t)j);
			e->labels[j] = r->test.labels[i + (size_t)j];
		}
		run_gather(r, false, e->samples, cnt, e->ws.input);
		batch_info b = {cnt, e->samples, e->labels, r->cfg.seed, 0, 0, e->buffers, NULL};
		double l;
		int c;
		net_forward(&r->m, r->be, e->params, &e->ws, &b, &l, &c);
		st->loss += l;
		st->correct += c;
		float *copy;
		const float *z = host_logits(r, e, cnt, &copy);
		if (z)
			count_hits(z, e->labels, cnt, classes, st);
		free(copy);
		if (r->kind == RUN_TRAIN && r->d.rank == 0)
			runlog_heartbeat(r->cfg.run_dir, r->step, r->generation); /* alive, not stuck */
	}
	/* one reduction: loss, correct, top1, top5, then the class counts */
	dist_allreduce_sum_d(&r->d, &st->loss, 4 + 2 * EVAL_MAX_CLASSES);
	st->images = (double)n;
}

void eval_test_set(run *r, double *loss, double *acc)
{
	eval_stats *st = malloc(sizeof *st);
	if (!st) {
		log_error("out of memory for the test statistics");
		exit(EXIT_OSERR);
	}
	eval_test_set_stats(r, st);
	*loss = st->loss / st->images;
	*acc = st->correct / st->images;
	free(st);
}

/* `spottrain eval --ckpt FILE`: test loss, top-1/top-5 and per-class accuracy of a checkpoint. */
int eval_main(int *argc, char ***argv, const run_args *a)
{
	run r;
	eval_stats *st = malloc(sizeof *st);
	if (!st) {
		log_error("out of memory for the test statistics");
		return EXIT_OSERR;
	}
	int rc = run_open(&r, RUN_EVAL, argc, argv, a);
	if (!rc) {
		eval_test_set_stats(&r, st);
		double n = st->images, acc = st->correct / n, top5 = st->top5 / n, loss = st->loss / n;
		if (r.d.rank == 0) {
			log_info("%s: test accuracy %.4f (top-5 %.4f), test loss %.4f on %zu images of %s", a->ckpt, acc,
				 top5, loss, r.test.count, r.cfg.data_dir);
			print_eval_detail(acc, top5, loss, (long)r.test.count, a->ckpt, r.m.classes, st->class_images,
					  st->class_correct);
		}
	}
	run_close(&r);
	free(st);
	return rc;
}
