/*
 * eval.c - test loss and accuracy (eval.h) and `spottrain eval`.
 */
#include "eval.h"

#include <stdio.h>

#include "log.h"
#include "runlog.h"
#include "train.h"

void eval_test_set(run *r, double *loss, double *acc)
{
	step_engine *e = &r->se;
	size_t n = r->test.count, max_n = (size_t)e->ws.max_n;
	size_t lo = n * (size_t)r->d.rank / (size_t)r->d.world;
	size_t hi = n * (size_t)(r->d.rank + 1) / (size_t)r->d.world;
	double sums[2] = {0, 0};
	for (size_t i = lo; i < hi; i += max_n) {
		int cnt = (int)(hi - i < max_n ? hi - i : max_n);
		for (int j = 0; j < cnt; j++) {
			e->samples[j] = (uint32_t)(i + (size_t)j);
			e->labels[j] = r->test.labels[i + (size_t)j];
		}
		run_gather(r, false, e->samples, cnt, e->ws.input);
		batch_info b = {cnt, e->samples, e->labels, r->cfg.seed, 0, 0};
		double l;
		int c;
		net_forward(&r->m, r->be, e->params, &e->ws, &b, &l, &c);
		sums[0] += l;
		sums[1] += c;
		if (r->kind == RUN_TRAIN && r->d.rank == 0)
			runlog_heartbeat(r->cfg.run_dir, r->step, r->generation); /* alive, not stuck */
	}
	dist_allreduce_sum_d(&r->d, sums, 2);
	*loss = sums[0] / (double)n;
	*acc = sums[1] / (double)n;
}

/* `spottrain eval --ckpt FILE`: test loss and accuracy of a checkpoint's weights. */
int eval_main(int *argc, char ***argv, const run_args *a)
{
	run r;
	int rc = run_open(&r, RUN_EVAL, argc, argv, a);
	if (!rc) {
		double loss, acc;
		eval_test_set(&r, &loss, &acc);
		if (r.d.rank == 0) {
			log_info("%s: test accuracy %.4f, test loss %.4f on %zu images of %s", a->ckpt, acc, loss,
				 r.test.count, r.cfg.data_dir);
			print_eval_summary(acc, loss, (long)r.test.count, a->ckpt);
		}
	}
	run_close(&r);
	return rc;
}
