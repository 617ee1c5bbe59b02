/*
 * report_plot.c - the picture of `spotlaunch report`: the data files it plots
 * and the gnuplot script (four panels against wall time: loss and test
 * accuracy, global step, ranks and nodes, events; a band per incident).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"
#include "plot.h"
#include "report_internal.h"
#include "util.h"

typedef struct tunit {
	double div;
	const char *name;
} tunit;

static tunit time_unit(double wall_s)
{
	if (wall_s <= 600)
		return (tunit){1, "s"};
	if (wall_s <= 36000)
		return (tunit){60, "min"};
	return (tunit){3600, "h"};
}

/* Write one data file from a memory stream's text. */
static int write_text(const char *path, char *buf, size_t len)
{
	int rc = buf && write_file_atomic(path, buf, len) == 0 ? 0 : EXIT_IOERR;
	free(buf);
	return rc;
}

/* Close a data file's memory stream and write it to PREFIX SUFFIX (the buffer is freed). */
static int put_data(const char *prefix, const char *suffix, FILE *f, char **buf, size_t *len)
{
	char path[4200];
	fclose(f);
	if (!fmt_path(path, sizeof path, "%s%s", prefix, suffix)) {
		free(*buf);
		say_error("path too long: %s%s", prefix, suffix);
		return EXIT_IOERR;
	}
	return write_text(path, *buf, *len);
}

int report_write_data(const report *r, const char *prefix)
{
	const run_account *a = &r->a;
	double t0 = a->t_begin;
	char *buf;
	size_t len;
	FILE *f;
	int rc;

	/* loss: a break (blank line) between worlds and where the step goes back */
	if (!(f = open_memstream(&buf, &len)))
		return EXIT_OSERR;
	fprintf(f, "# seconds_since_first_launch step training_loss generation\n");
	for (int i = 0; i < r->loss.n; i++) {
		const point *p = &r->loss.p[i];
		if (i && (p->gen != r->loss.p[i - 1].gen || p->step <= r->loss.p[i - 1].step))
			fprintf(f, "\n");
		fprintf(f, "%.4f %ld %.6g %d\n", p->t - t0, p->step, p->v, p->gen);
	}
	if ((rc = put_data(prefix, "-loss.dat", f, &buf, &len)))
		return rc;

	if (!(f = open_memstream(&buf, &len)))
		return EXIT_OSERR;
	fprintf(f, "# seconds_since_first_launch step test_accuracy generation\n");
	for (int i = 0; i < r->acc.n; i++) {
		const point *p = &r->acc.p[i];
		fprintf(f, "%.4f %ld %.6g %d\n", p->t - t0, p->step, p->v, p->gen);
	}
	if ((rc = put_data(prefix, "-acc.dat", f, &buf, &len)))
		return rc;

	/* progress: each world from its start step to the furthest step, through its metrics lines */
	if (!(f = open_memstream(&buf, &len)))
		return EXIT_OSERR;
	fprintf(f, "# seconds_since_first_launch global_step generation (one block per world)\n");
	int gi = 0;
	for (int i = 0; i < a->n; i++) {
		const session *s = &a->s[i];
		if (!s->started)
			continue;
		double ts = s->resumed ? s->t_resume : s->t_start;
		if (s->t_first > 0 && s->t_first < ts)
			ts = s->t_first;
		if (gi++)
			fprintf(f, "\n");
		fprintf(f, "%.4f %ld %d\n", ts - t0, report_begin_step(s), gi);
		for (int k = 0; k < r->loss.n; k++) {
			const point *p = &r->loss.p[k];
			if (p->gen == s->generation && p->t >= s->t_start - 1e-6 && p->t <= s->t_last + 1e-6)
				fprintf(f, "%.4f %ld %d\n", p->t - t0, p->step, gi);
		}
		fprintf(f, "%.4f %ld %d\n", s->t_last - t0, report_end_step(s), gi);
	}
	if ((rc = put_data(prefix, "-progress.dat", f, &buf, &len)))
		return rc;

	/* world: index 0 ranks training (first step -> last step), index 1 nodes held (launch -> next launch) */
	if (!(f = open_memstream(&buf, &len)))
		return EXIT_OSERR;
	fprintf(f, "# index 0: seconds_since_first_launch ranks_training\n");
	fprintf(f, "%.4f 0\n", 0.0);
	for (int i = 0; i < a->n; i++) {
		const session *s = &a->s[i];
		if (!s->started)
			continue;
		double ts = s->t_first > 0 ? s->t_first : s->t_start;
		fprintf(f, "%.4f 0\n%.4f %d\n%.4f %d\n%.4f 0\n", ts - t0, ts - t0, s->np, s->t_last - t0, s->np,
			s->t_last - t0);
	}
	fprintf(f, "%.4f 0\n", a->t_end - t0);
	fprintf(f, "\n\n# index 1: seconds_since_first_launch nodes_held\n");
	for (int i = 0; i < a->n; i++) {
		if (r->t0[i] <= 0)
			continue;
		fprintf(f, "%.4f %g\n%.4f %g\n", r->t0[i] - t0, r->nodes[i], r->t0[i] + r->billed[i] - t0, r->nodes[i]);
	}
	if ((rc = put_data(prefix, "-world.dat", f, &buf, &len)))
		return rc;

	/* marks: one index per kind (row on the event strip): 0 checkpoint, 1 first step, 2 launch, 3 failure,
	 * 4 agreed stop, 5 notice */
	if (!(f = open_memstream(&buf, &len)))
		return EXIT_OSERR;
	fprintf(f, "# index 0: checkpoints (seconds_since_first_launch row step)\n");
	for (int i = 0; i < r->n_ck; i++)
		fprintf(f, "%.4f 1 %ld\n", r->ck[i].t - t0, r->ck[i].step);
	fprintf(f, "\n\n# index 1: first steps (seconds row step)\n");
	for (int i = 0; i < a->n; i++)
		if (a->s[i].t_first > 0)
			fprintf(f, "%.4f 2 %ld\n", a->s[i].t_first - t0, a->s[i].first_step);
	fprintf(f, "\n\n# index 2: mpirun launches (seconds row generation np)\n");
	for (int i = 0; i < a->n; i++)
		if (a->s[i].launched)
			fprintf(f, "%.4f 3 %d %d\n", a->s[i].t_launch - t0, a->s[i].generation, a->s[i].np);
	fprintf(f, "\n\n# index 3: failures, at the last progress (seconds row last_step)\n");
	for (int k = 0; k < a->n_inc; k++)
		if (strcmp(a->inc[k].kind, "failure") == 0)
			fprintf(f, "%.4f 4 %ld\n", a->inc[k].t_fault - t0, a->inc[k].last_step);
	fprintf(f, "\n\n# index 4: agreed stops, checkpoint durable (seconds row step)\n");
	for (int i = 0; i < a->n; i++)
		if (a->s[i].stopped)
			fprintf(f, "%.4f 5 %ld\n", a->s[i].t_stop - t0, a->s[i].stop_step);
	fprintf(f, "\n\n# index 5: interruption notices (seconds row)\n");
	for (int i = 0; i < a->n; i++)
		if (a->s[i].notices)
			fprintf(f, "%.4f 6\n", a->s[i].t_notice - t0);
	if ((rc = put_data(prefix, "-marks.dat", f, &buf, &len)))
		return rc;
	return 0;
}

/* A double-quoted gnuplot string (for titles with a line break "\n"). */
static void gp_dquote(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '\n')
			fputs("\\n", f);
		else if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s >= 0x20)
			fputc(*s, f);
	}
	fputc('"', f);
}

static void gp_file_var(FILE *f, const char *var, const char *prefix, const char *suffix)
{
	char path[4200];
	snprintf(path, sizeof path, "%s%s", prefix, suffix);
	fprintf(f, "%s = ", var);
	gp_quote(f, path);
	fprintf(f, "\n");
}

/* The last component of a path (trailing slashes ignored) into buf. */
static const char *base_name(const char *p, char *buf, size_t len)
{
	size_t n = strlen(p);
	while (n > 1 && p[n - 1] == '/')
		n--;
	size_t i = n;
	while (i > 0 && p[i - 1] != '/')
		i--;
	snprintf(buf, len, "%.*s", (int)(n - i), p + i);
	return buf;
}

int report_write_gp(const report *r, const report_opts *o, const char *prefix, const char *png, const char *gp_path)
{
	const run_account *a = &r->a;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return EXIT_OSERR;
	double wall = a->wall_s > 0 ? a->wall_s : 1;
	tunit u = time_unit(wall);
	char name[256];
	base_name(prefix, name, sizeof name);
	fprintf(f, "# %s.gp - written by spotlaunch report; draw again with: gnuplot %s.gp\n", name, name);
	gp_terminal(f, png, REPORT_PNG_W, REPORT_PNG_H);
	gp_file_var(f, "loss", prefix, "-loss.dat");
	gp_file_var(f, "acc", prefix, "-acc.dat");
	gp_file_var(f, "progress", prefix, "-progress.dat");
	gp_file_var(f, "world", prefix, "-world.dat");
	gp_file_var(f, "marks", prefix, "-marks.dat");
	fprintf(f, "u = %g  # seconds per unit of the time axis (%s)\n", u.div, u.name);
	fprintf(f, "set xrange [0:%g]\n", wall * 1.01 / u.div);
	fprintf(f, "set lmargin at screen 0.11\nset rmargin at screen 0.90\n");
	fprintf(f, "set grid xtics ytics lc rgb '#e0e0e0'\nset style textbox opaque noborder\n");
	/* the loss starts high on the left and the accuracy begins after an epoch: the bottom left is free */
	fprintf(f, "set key bottom left box opaque font 'sans,9'\n");

	/* incidents: a band from the notice (or the fault) to the next first step, on every panel */
	for (int k = 0; k < a->n_inc; k++) {
		const incident *x = &a->inc[k];
		const session *p = &a->s[r->prev[k]], *n = &a->s[r->next[k]];
		double x1 = p->notices && p->t_notice < x->t_fault ? p->t_notice : x->t_fault;
		double x2 = n->t_first > 0 ? n->t_first : n->t_start;
		x1 -= a->t_begin;
		x2 -= a->t_begin;
		if (x2 - x1 < wall * 0.004)
			x2 = x1 + wall * 0.004;
		bool fail = strcmp(x->kind, "failure") == 0;
		fprintf(f, "set object %d rect from first %g, graph 0 to first %g, graph 1 behind fc rgb '%s' "
			   "fs solid 0.6 noborder\n",
			k + 1, x1 / u.div, x2 / u.div, fail ? "#f6c6c6" : "#fde3b5");
	}

	/* title */
	char title[2048], line2[1024] = "";
	int pos = snprintf(title, sizeof title, "spottrain run %s: %s", base_name(o->run_dir, name, sizeof name),
			   a->finished ? "finished" : "not finished");
	if (a->finished)
		pos += snprintf(title + pos, sizeof title - (size_t)pos, " at step %ld", a->final_step);
	snprintf(title + pos, sizeof title - (size_t)pos,
		 ", %d generation(s), %d interruption(s) (%d planned, %d failure(s)), %ld step(s) lost", a->generations,
		 a->n_inc, a->planned, a->failures, a->steps_lost);
	pos = snprintf(line2, sizeof line2, "goodput %.1f%% (%.1f s of training kept in %.1f s wall); %.1f s lost to "
					    "interruptions",
		       100 * a->goodput, a->useful_s, a->wall_s, r->lost_s);
	if (r->spot >= 0 && r->ondemand >= 0)
		snprintf(line2 + pos, sizeof line2 - (size_t)pos, "; cost %.4g %s on spot vs %.4g %s on demand",
			 r->node_s / 3600 * r->spot, r->currency, r->useful_node_s / 3600 * r->ondemand, r->currency);
	char full[3100];
	snprintf(full, sizeof full, "%s\n%s", title, line2);
	fprintf(f, "set multiplot title ");
	gp_dquote(f, full);
	fprintf(f, " font 'sans,12'\n");

	/* panel 1: loss and test accuracy, with the incident labels */
	double lmax = 0;
	for (int i = 0; i < r->loss.n; i++)
		lmax = r->loss.p[i].v > lmax && isfinite(r->loss.p[i].v) ? r->loss.p[i].v : lmax;
	double amin = 1, amax = 0;
	for (int i = 0; i < r->acc.n; i++) {
		amin = r->acc.p[i].v < amin ? r->acc.p[i].v : amin;
		amax = r->acc.p[i].v > amax ? r->acc.p[i].v : amax;
	}
	fprintf(f, "\nset tmargin at screen 0.925\nset bmargin at screen 0.71\nset format x ''\nunset xlabel\n");
	fprintf(f, "set title 'Training loss and test accuracy (bands: interruption -> first step again)' font 'sans,11'\n");
	fprintf(f, "set ylabel 'training loss'\nset yrange [0:%g]\nset ytics nomirror\n", lmax > 0 ? lmax * 1.45 : 1);
	if (r->acc.n) {
		double lo = floor((amin * 100 - 5) / 5) * 5, hi = ceil((amax * 100 + 5) / 5) * 5;
		fprintf(f, "set y2label 'test accuracy (%%)'\nset y2tics\nset y2range [%g:%g]\n", lo < 0 ? 0 : lo,
			hi > 100 ? 100 : hi);
	}
	for (int k = 0; k < a->n_inc; k++) {
		const incident *x = &a->inc[k];
		const session *p = &a->s[r->prev[k]];
		double x1 = (p->notices && p->t_notice < x->t_fault ? p->t_notice : x->t_fault) - a->t_begin;
		char lab[512], b1[32], b2[32];
		if (strcmp(x->kind, "failure") == 0)
			snprintf(lab, sizeof lab, "#%d failure (gen %d)\ndown %s s, %ld steps lost (rework %s s)", k + 1,
				 x->generation, report_fmt_s(r->down[k], b1, sizeof b1), x->steps_lost,
				 report_fmt_s(r->rework[k], b2, sizeof b2));
		else
			snprintf(lab, sizeof lab, "#%d %s%s%s (gen %d)\ndown %s s, %ld steps lost", k + 1, x->kind,
				 p->notices ? " " : "", p->notices ? p->notice_node : "", x->generation,
				 report_fmt_s(r->down[k], b1, sizeof b1), x->steps_lost);
		/* two lines right of the band's start; near the right edge, ending at the band's end */
		const session *n = &a->s[r->next[k]];
		double x2 = (n->t_first > 0 ? n->t_first : n->t_start) - a->t_begin;
		bool right = x1 > 0.72 * wall;
		fprintf(f, "set label %d ", k + 1);
		gp_dquote(f, lab);
		fprintf(f, " at first %g, graph %g %s front boxed font 'sans,9'\n", (right ? x2 : x1) / u.div,
			0.92 - 0.17 * (k % 3), right ? "right" : "left");
	}
	if (r->loss.n || r->acc.n) {
		fprintf(f, "plot ");
		if (r->loss.n)
			fprintf(f, "loss using ($1/u):3 with lines lw 1.5 lc rgb '#1f77b4' title 'training loss (per logged step)'");
		if (r->acc.n)
			fprintf(f, "%sacc using ($1/u):($3*100) axes x1y2 with linespoints pt 7 ps 1.3 lw 2 lc rgb '#2ca02c' "
				   "title 'test accuracy (epoch ends)'",
				r->loss.n ? ", \\\n     " : "");
		fprintf(f, "\n");
	} else {
		fprintf(f, "plot NaN title 'no metrics.jsonl'\n");
	}
	fprintf(f, "unset label\nunset y2label\nunset y2tics\n");

	/* panel 2: global step */
	long smax = 0;
	for (int i = 0; i < a->n; i++)
		if (a->s[i].started && report_end_step(&a->s[i]) > smax)
			smax = report_end_step(&a->s[i]);
	fprintf(f, "\nset tmargin at screen 0.665\nset bmargin at screen 0.49\n");
	fprintf(f, "set title 'Training progress: global step, one colour per world (after a failure it goes back to the checkpoint resumed from)' "
		   "font 'sans,11'\n");
	fprintf(f, "set ylabel 'global step'\nset yrange [0:%ld]\nunset key\n", smax > 0 ? (long)(smax * 1.1) + 1 : 10);
	if (a->generations)
		fprintf(f, "plot progress using ($1/u):2:3 with lines lw 2 lc variable notitle\n");
	else
		fprintf(f, "plot NaN notitle\n");

	/* panel 3: world size */
	int wmax = 1;
	for (int i = 0; i < a->n; i++) {
		wmax = a->s[i].np > wmax ? a->s[i].np : wmax;
		wmax = r->nodes[i] > wmax ? (int)r->nodes[i] : wmax;
	}
	fprintf(f, "\nset tmargin at screen 0.445\nset bmargin at screen 0.27\n");
	fprintf(f, "set title 'World size: ranks training, and nodes held (paid from a launch to the next)' font 'sans,11'\n");
	fprintf(f, "set ylabel 'ranks / nodes'\nset yrange [0:%d]\nset ytics 1\nset key top right box opaque\n", wmax + 1);
	fprintf(f, "plot world index 1 using ($1/u):2 with lines lw 5 lc rgb '#bbbbbb' title 'nodes held', \\\n"
		   "     world index 0 using ($1/u):2 with lines lw 2 lc rgb '#9467bd' title 'ranks training'\n");
	fprintf(f, "set ytics autofreq\n");

	/* panel 4: event strip */
	fprintf(f, "\nset tmargin at screen 0.225\nset bmargin at screen 0.05\n");
	fprintf(f, "set title 'Events' font 'sans,11'\nset format x '%%g'\n");
	fprintf(f, "set xlabel 'wall time since the first launch (%s)'\nunset ylabel\n", u.name);
	fprintf(f, "set yrange [0.4:6.6]\nset ytics ('checkpoint' 1, 'first step' 2, 'launch' 3, "
		   "'failure' 4, 'agreed stop' 5, 'notice' 6)\nunset key\nset grid noytics\n");
	fprintf(f, "plot marks index 0 using ($1/u):2 with points pt 2 ps 0.8 lc rgb '#7f7f7f', \\\n"
		   "     marks index 1 using ($1/u):2 with points pt 9 ps 1.8 lc rgb '#2ca02c', \\\n"
		   "     marks index 2 using ($1/u):2 with points pt 5 ps 1.4 lc rgb '#1f77b4', \\\n"
		   "     marks index 2 using ($1/u):2:(sprintf('gen %%d: %%d ranks', $3, $4)) with labels left offset 1,0 "
		   "font 'sans,8', \\\n"
		   "     marks index 3 using ($1/u):2 with points pt 3 ps 2 lw 2 lc rgb '#d62728', \\\n"
		   "     marks index 4 using ($1/u):2 with points pt 13 ps 1.8 lc rgb '#ff7f0e', \\\n"
		   "     marks index 5 using ($1/u):2 with points pt 11 ps 1.8 lc rgb '#e377c2'\n");
	fprintf(f, "\nunset multiplot\n");
	fclose(f);
	return write_text(gp_path, buf, len);
}
