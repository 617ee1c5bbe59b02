/*
 * fetch.h - download of the four IDX files of a data set into data.dir (the
 * volume) from data.url, each verified against its SHA-256 (data.sha256_*),
 * or of one named file at a full URL (fetch_file_opts: the CIFAR-10 archive,
 * data_archive.h).
 *
 * The trainer calls fetch_dataset on the first rank of each node before
 * loading data; the other ranks wait for it. Several nodes may call it on the
 * same shared folder at once: a lock on each NAME.part file (fcntl, which NFS
 * honours) makes one of them download while the others wait, then find the
 * file in place. The lock belongs to the process: threads of one process must
 * not call it on the same folder at the same time.
 *
 * fetch*.c are, with spot*.c, the only files that include curl.h.
 */
#ifndef SPOTTRAIN_FETCH_H
#define SPOTTRAIN_FETCH_H

#include <stddef.h>

/* The files, in the order of the sha256 argument (and of config.data_sha256). */
#define FETCH_NFILES 4
extern const char *const fetch_file_names[FETCH_NFILES];  /* "train-images-idx3-ubyte.gz", ... */
extern const char *const fetch_sha256_keys[FETCH_NFILES]; /* "data.sha256_train_images", ... */

#define FETCH_DEFAULT_MAX_BYTES ((size_t)1 << 30) /* no IDX .gz file comes near 1 GiB */

/* Knobs of fetch_dataset_opts; fetch_options_default gives the values noted. */
typedef struct fetch_options {
	size_t max_bytes;         /* largest file accepted (0: FETCH_DEFAULT_MAX_BYTES) */
	long connect_timeout_ms;  /* per connection, 15000 */
	long low_speed_bytes;     /* an attempt slower than this many bytes/s ... */
	long low_speed_time_s;    /* ... for this many seconds is cut and resumed: 1024 B/s, 30 s */
	int max_retries;          /* failed attempts in a row without progress tolerated per file, 5 */
	long backoff_ms;          /* wait before the first retry, doubled each time, 1000 */
	long backoff_max_ms;      /* longest wait between retries, 30000 */
	double deadline_s;        /* the whole call (waits for other nodes included), 1800 */
	long lock_poll_ms;        /* how often a waiting process looks at another's download, 200 */
} fetch_options;

void fetch_options_default(fetch_options *o);

/*
 * Make sure dir holds the four files. For each of fetch_file_names: nothing
 * is done (no request, no file touched) when dir/NAME or another name the
 * loader accepts (NAME without .gz, the "-images.idx3-ubyte" spelling)
 * exists. Otherwise base_url "/" NAME is downloaded into dir/NAME.part
 * (resuming a .part left by an earlier attempt with a Range request), its
 * SHA-256 compared with sha256[i] (64 hex digits), then it is fsynced and
 * renamed to dir/NAME, and dir is fsynced. A partial or unverified file
 * never appears under the final name. dir is created when missing.
 *
 * Network: http and https only; redirects are followed by hand, at most 5,
 * and only to an https:// URL or to the same scheme, host and port; connect
 * timeout and low-speed limit so a dead server cannot hang the call;
 * transient failures (refused or reset connections, timeouts, 408, 429,
 * 5xx) are retried with exponential backoff, resuming from the .part.
 *
 * base_url NULL or "" means there is nowhere to download from: returns 0
 * without doing anything (the loader then reports a missing file).
 *
 * Returns 0 when all four are in place, or
 *   EXIT_USAGE (64)   base_url is not http(s)://host/... (or has ? or #),
 *                     dir or base_url is too long, or a file is missing and
 *                     its checksum is empty or not 64 hex digits (no
 *                     unverified download is ever made);
 *   EXIT_DATAERR (65) a downloaded file does not match its checksum, or is
 *                     larger than max_bytes (the .part is removed);
 *   EXIT_NOINPUT (66) the server says the file is not there (404 and other
 *                     4xx), redirects where we do not follow, or its TLS
 *                     certificate fails verification: retrying will not
 *                     help, data.url must be fixed;
 *   EXIT_OSERR (71)   libcurl or OpenSSL could not start (memory);
 *   EXIT_IOERR (74)   the network still failed after the retries or the
 *                     deadline passed (transient: a later run may succeed and
 *                     resumes from the .part kept), or the volume refused a
 *                     mkdir, write, fsync or rename.
 * Every failure is logged with the file, the URL and what to do.
 *
 * fetch_dataset uses fetch_options_default with max_bytes (0: the default);
 * fetch_dataset_opts takes every knob (tests, and callers that must finish
 * within a deadline of their own).
 */
int fetch_dataset(const char *dir, const char *base_url, const char sha256[4][65], size_t max_bytes);
int fetch_dataset_opts(const char *dir, const char *base_url, const char sha256[4][65],
		       const fetch_options *opts);

/*
 * One file: url (http(s)://host/path, no query) downloaded into dir/name as
 * fetch_dataset does each IDX file (lock on dir/name.part, Range resume,
 * retries, fsync and rename; nothing done when dir/name exists), verified by
 * digest: "sha256:" and 64 hex digits (or those alone), or "md5:" and 32 hex
 * digits for archives whose publisher gives only an MD5 (CIFAR). key names
 * the config key that holds digest, for messages. name must not contain '/'.
 * Returns 0 or the exit codes of fetch_dataset (EXIT_USAGE also for an empty
 * or malformed digest).
 */
int fetch_file_opts(const char *dir, const char *url, const char *name, const char *digest,
		    const char *key, const fetch_options *opts);

/*
 * SHA-256 of the file at path as 64 lowercase hex digits in out. Returns 0,
 * EXIT_NOINPUT when the file cannot be opened, EXIT_IOERR on a read error,
 * EXIT_OSERR when OpenSSL fails.
 */
int fetch_sha256_file(const char *path, char out[65]);

#endif
