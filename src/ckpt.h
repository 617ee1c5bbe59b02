/*
 * ckpt.h - HDF5 checkpoints on a persistent volume (DESIGN.md invariants 4
 * and 5, the checkpoint schema). ckpt*.c are the only files that include
 * hdf5.h. A checkpoint under its final name is always whole: it is written as
 * NAME.tmp, flushed, fsync'ed, renamed, and the directory fsync'ed.
 *
 * Schema:
 *   /                 attrs format="spottrain-ckpt", format_version, model_hash, step, epoch,
 *                     sample_in_epoch, global_batch, world_size, generation, seed, wall_time_s,
 *                     epoch_end, config (INI text), content_checksum
 *   /params/<tensor>  float32 with the tensor's shape ("conv1.weight" [32,1,3,3])
 *   /optim/<state>/<tensor>  each optimizer state buffer, same layout
 *   /optim            attrs optimizer, lr, step (optimizer step count)
 *   /buffers/<buffer> float32, only for networks with buffers (BatchNorm's
 *                     "bn1.running_mean" [C], "bn1.running_var" [C],
 *                     "bn1.num_batches_tracked" [1]); files of networks
 *                     without buffers have no /buffers group (unchanged format)
 */
#ifndef SPOTTRAIN_CKPT_H
#define SPOTTRAIN_CKPT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "model.h"

#define CKPT_FORMAT "spottrain-ckpt"
#define CKPT_FORMAT_VERSION 2 /* 2: fixed-length strings (1: variable-length, refused) */
#define CKPT_MAX_STATES 4

typedef struct ckpt_meta {
	long step;              /* global optimizer steps completed */
	long epoch;             /* epoch that the next sample belongs to (0-based) */
	long sample_in_epoch;   /* index of the next sample in that epoch's permutation */
	int global_batch;       /* B */
	int world_size;         /* W of the writing world */
	int generation;         /* launcher generation (0 without launcher) */
	uint32_t seed;
	double wall_time_s;     /* training wall time accumulated so far */
	bool epoch_end;         /* written at the end of an epoch (kept by retention) */
	uint64_t model_hash;
	char optimizer[16];     /* optim_kind_name() */
	float lr;               /* learning rate of the last step */
	long optim_step;        /* optimizer step counter (Adam bias correction) */
	char *config_text;      /* resolved INI; on read: malloc'ed, free with ckpt_meta_free */
} ckpt_meta;

/* What is saved besides the meta: the flat parameter buffer and each optimizer state buffer. */
typedef struct ckpt_buffers {
	float *params;                        /* m->n_params floats */
	int n_states;
	const char *state_names[CKPT_MAX_STATES];
	float *states[CKPT_MAX_STATES];       /* each m->n_params floats */
	float *buffers;                       /* m->n_buffers floats; required when the model has
					       * buffers (read: NULL only checksums them) */
} ckpt_buffers;

/* Path of the checkpoint of a step: DIR/ckpt-%08ld.h5 */
void ckpt_path(const char *dir, long step, char *out, size_t len);

/*
 * Write a checkpoint atomically to path (path.tmp first). Returns 0, or
 * EXIT_IOERR (74) with a message saying which operation failed; on failure the
 * .tmp is removed and nothing under a final name is touched.
 */
int ckpt_write(const char *path, const model *m, const ckpt_meta *meta, const ckpt_buffers *b);

/*
 * Read and validate a checkpoint against model m: format, version, model hash (unless
 * weights_only), every dataset's shape, content checksum. Fills meta (may be NULL) and the
 * buffers (states only if !weights_only; a state named in b but absent in the file is an
 * error). Returns 0, EXIT_NOINPUT (66) if missing, or EXIT_DATAERR (65) for a damaged or
 * foreign file, with a message naming the file and the problem.
 */
int ckpt_read(const char *path, const model *m, bool weights_only, ckpt_meta *meta, ckpt_buffers *b);

/* Read only the root attributes (no model needed; validates the format). */
int ckpt_read_meta(const char *path, ckpt_meta *meta);
void ckpt_meta_free(ckpt_meta *meta);

/*
 * Scan dir for ckpt-*.h5, newest step first, and return the newest one that validates
 * fully against m (damaged or foreign files are skipped with a warning naming them).
 * Returns 0 and fills path/step, or EXIT_NOINPUT if there is none; EXIT_DATAERR (said why)
 * when there is none but files of checkpoint format 1 were skipped (a run of an older build).
 */
int ckpt_find_newest(const char *dir, const model *m, const ckpt_buffers *layout, char *path,
		     size_t len, long *step);

/* Retention: keep the newest `keep` checkpoints plus (if keep_epoch_ends) every epoch-end one;
 * also removes stale *.tmp files. Never removes the newest valid checkpoint. */
int ckpt_prune(const char *dir, int keep, bool keep_epoch_ends);

/* `spottrain inspect`: print attributes and tensors (name, shape, min/max/mean), validate
 * (checksum) and return 0 or EXIT_DATAERR / EXIT_NOINPUT. */
int ckpt_inspect(const char *path, FILE *out);

/*
 * Asynchronous writer: submit() copies the buffers into a host snapshot and returns;
 * a background thread writes (and prunes). At most one write is in flight: submit()
 * waits for the previous one first. wait() returns the status of the last write.
 */
typedef struct ckpt_writer ckpt_writer;
int ckpt_writer_create(const model *m, int n_states, ckpt_writer **out);
int ckpt_writer_submit(ckpt_writer *w, const char *path, const ckpt_meta *meta, const ckpt_buffers *b,
		       int keep, bool keep_epoch_ends);
int ckpt_writer_wait(ckpt_writer *w);
/* Non-blocking: true once for each finished write, with its status and duration (the
 * time of the write itself, fsyncs and retention included, not of the waiting). */
bool ckpt_writer_poll(ckpt_writer *w, int *status, double *write_s);
/* Non-blocking: a write is in flight. */
bool ckpt_writer_busy(ckpt_writer *w);
/* Waits for the in-flight write, then frees. */
void ckpt_writer_destroy(ckpt_writer *w);

#endif
