/*
 * report.h - `spotlaunch report RUN_DIR`: what a run did and what it cost.
 *
 * From RUN/events.jsonl and RUN/metrics.jsonl only (through account.h, so the
 * generations, incidents, steps lost and goodput are those of `spotlaunch
 * status`), it writes a picture and prints a summary:
 *
 * - report.png: training loss and test accuracy, the global step (a rollback
 *   after a failure shows as a step back), ranks training and nodes held, and
 *   an event strip (mpirun launches, first steps, checkpoints, notices, agreed
 *   stops, failures) against wall time; each incident is a shaded band from
 *   its notice or fault to the next generation's first step, labelled with
 *   its kind, node, time down and steps lost;
 * - time lost per incident: down (fault or agreed stop -> first step of the
 *   next generation, account.h's total) + rework (training redone: from the
 *   durable checkpoint the next generation resumed from to the last step
 *   reached, or steps lost x the generation's median step time);
 * - cost at spot prices per node-hour: each generation's nodes are paid from
 *   its launch to the next launch (or the run's last record), against the
 *   same useful work on on-demand nodes: useful training time (account.h's,
 *   per generation) x its nodes x the on-demand price, without interruptions;
 * - checkpoint interval advice (advice.h) from the run: D = mean write_s of
 *   the checkpoint events, M = wall time per interruption (the run's rate
 *   per node-hour x its mean nodes), R = mean time down, the step time from
 *   metrics.jsonl and the interval from the checkpoint steps; each can be
 *   given on the command line instead.
 *
 * Files: PREFIX.png, PREFIX.json, PREFIX.gp, PREFIX-{loss,acc,progress,world,marks}.dat
 * and PREFIX-gnuplot.log, PREFIX = RUN/report unless --out names the PNG.
 * Prices: --spot-price / --ondemand-price, else RUN/launcher/prices.json
 * {"spot_per_node_hour": P, "ondemand_per_node_hour": P, "currency": "USD"}.
 */
#ifndef SPOTLAUNCH_REPORT_H
#define SPOTLAUNCH_REPORT_H

/* The command (argv[0] is "report"). Returns the exit code. */
int report_main(int argc, char **argv);

#endif
