/*
 * fetch.c - download of the IDX files into data.dir, verified by SHA-256:
 * the per-dataset driver, the lock on each .part and the public API.
 *
 * One file at a time: dir/NAME.part is opened and locked (fcntl, which also
 * works on NFS, so the first ranks of several nodes on one shared volume
 * take turns), resumed or started with a GET carrying "Range: bytes=N-"
 * (fetch_http.c), hashed (fetch_verify.c), fsynced and renamed to dir/NAME;
 * then dir is fsynced.
 *
 * The lock is a POSIX record lock, which belongs to the process and is
 * dropped when *any* descriptor of the file is closed: the .part is only
 * ever read through the locked descriptor, never reopened.
 */
#include "fetch_internal.h"

#include "contract.h"
#include "fsutil.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

const char *const fetch_file_names[FETCH_NFILES] = {
	"train-images-idx3-ubyte.gz",
	"train-labels-idx1-ubyte.gz",
	"t10k-images-idx3-ubyte.gz",
	"t10k-labels-idx1-ubyte.gz",
};

const char *const fetch_sha256_keys[FETCH_NFILES] = {
	"data.sha256_train_images",
	"data.sha256_train_labels",
	"data.sha256_test_images",
	"data.sha256_test_labels",
};

/* The other names dataset_load accepts for the same file (see data.c). */
static const char *const fetch_alt_names[FETCH_NFILES][3] = {
	{"train-images-idx3-ubyte", "train-images.idx3-ubyte.gz", "train-images.idx3-ubyte"},
	{"train-labels-idx1-ubyte", "train-labels.idx1-ubyte.gz", "train-labels.idx1-ubyte"},
	{"t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte.gz", "t10k-images.idx3-ubyte"},
	{"t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte.gz", "t10k-labels.idx1-ubyte"},
};

void fetch_options_default(fetch_options *o)
{
	o->max_bytes = FETCH_DEFAULT_MAX_BYTES;
	o->connect_timeout_ms = 15000;
	o->low_speed_bytes = 1024;
	o->low_speed_time_s = 30;
	o->max_retries = 5;
	o->backoff_ms = 1000;
	o->backoff_max_ms = 30000;
	o->deadline_s = 1800;
	o->lock_poll_ms = 200;
}

/* ------------------------------------------------------------------ */
/* small helpers                                                       */
/* ------------------------------------------------------------------ */

void fetch_sleep_ms(long ms)
{
	if (ms <= 0)
		return;
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Size of the file behind fd, or -1 (errno set). */
off_t fetch_fd_size(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 ? st.st_size : -1;
}

/* mkdir -p of the data folder: 0 or EXIT_IOERR with a message. */
static int make_dirs(const char *dir)
{
	char why[FETCH_PATH_MAX + 128];
	if (fs_mkdir_p(dir, why, sizeof why)) {
		log_error("%s (check data.dir and the volume)", why);
		return EXIT_IOERR;
	}
	return 0;
}

/* fsync a folder so that a rename in it is durable. 0 or EXIT_IOERR. */
static int sync_dir(const char *dir)
{
	char why[FETCH_PATH_MAX + 128];
	if (fs_fsync_dir(dir, why, sizeof why)) {
		log_error("%s", why);
		return EXIT_IOERR;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* one file                                                            */
/* ------------------------------------------------------------------ */

/* True when dir holds the file under any name the loader accepts. */
static bool file_present(const fetcher *f, const job *j)
{
	char path[FETCH_PATH_MAX];
	struct stat st;
	if (stat(j->final, &st) == 0 || (errno != ENOENT && errno != ENOTDIR))
		return true;
	if (j->idx < 0)
		return false; /* fetch_file: one name only */
	for (int k = 0; k < 3; k++) {
		snprintf(path, sizeof path, "%s/%s", f->dir, fetch_alt_names[j->idx][k]);
		if (stat(path, &st) == 0 || (errno != ENOENT && errno != ENOTDIR))
			return true;
	}
	return false;
}
/*
 * Wait for the write lock on fd, the .part opened by lock_part. Returns 0
 * when it is ours (or cannot be taken at all: then we go on without it), 1
 * when the file appeared under its final name meanwhile, or EXIT_IOERR at
 * the deadline (logged). The caller closes fd on anything but 0.
 */
static int wait_for_lock(fetcher *f, job *j, int fd, bool *told)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	while (fcntl(fd, F_SETLK, &fl) != 0) {
		if (errno == EINTR)
			continue;
		if (errno != EACCES && errno != EAGAIN) {
			log_warn("%s: cannot lock it (%s); downloading without protection against "
				 "other nodes doing the same",
				 j->part, strerror(errno));
			break;
		}
		if (!*told) {
			struct flock who = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
			long pid = fcntl(fd, F_GETLK, &who) == 0 ? (long)who.l_pid : -1;
			log_info("%s: another process (pid %ld, maybe on another node) is downloading "
				 "it; waiting",
				 j->part, pid);
			*told = true;
		}
		if (now_mono() >= f->deadline) {
			log_error("%s: still locked by another download at the deadline; giving up",
				  j->part);
			return EXIT_IOERR;
		}
		fetch_sleep_ms(f->o.lock_poll_ms);
		if (file_present(f, j))
			return 1;
		fl = (struct flock){.l_type = F_WRLCK, .l_whence = SEEK_SET};
	}
	return 0;
}

/*
 * Open dir/NAME.part and take its write lock, waiting while another process
 * (another node on a shared volume) holds it. Returns 0 with j->fd locked, 1
 * when the file appeared under its final name meanwhile, or an exit code.
 */
static int lock_part(fetcher *f, job *j)
{
	bool told = false;
	for (;;) {
		if (file_present(f, j))
			return 1;
		int fd = open(j->part, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
		if (fd < 0) {
			log_error("%s: cannot create: %s (check data.dir and the volume)", j->part,
				  strerror(errno));
			return EXIT_IOERR;
		}
		int rc = wait_for_lock(f, j, fd, &told);
		if (rc) {
			close(fd);
			return rc;
		}
		/* Is the file we locked still dir/NAME.part? (the other process may
		 * have renamed it into place or removed it while we waited) */
		struct stat a, b;
		if (fstat(fd, &a) == 0 && stat(j->part, &b) == 0 && a.st_dev == b.st_dev &&
		    a.st_ino == b.st_ino) {
			if (file_present(f, j)) {
				if (a.st_size == 0)
					unlink(j->part); /* the empty one we just made */
				close(fd);
				return 1;
			}
			j->fd = fd;
			return 0;
		}
		close(fd);
	}
}

/* Remove dir/NAME.part if it still is the file we hold locked (once removed,
 * another process may already have made a new one). */
static void remove_part(job *j)
{
	struct stat a, b;
	if (fstat(j->fd, &a) != 0 || stat(j->part, &b) != 0 || a.st_dev != b.st_dev ||
	    a.st_ino != b.st_ino)
		return;
	if (unlink(j->part) != 0)
		log_warn("%s: cannot remove it: %s", j->part, strerror(errno));
}

/* fsync the .part, rename it to the final name, fsync dir. */
static int install(fetcher *f, job *j)
{
	if (fsync(j->fd) != 0) {
		log_error("%s: fsync failed: %s", j->part, strerror(errno));
		return EXIT_IOERR;
	}
	if (rename(j->part, j->final) != 0) {
		log_error("%s: cannot rename to %s: %s", j->part, j->final, strerror(errno));
		return EXIT_IOERR;
	}
	return sync_dir(f->dir);
}

/* Download, verify and install one missing file. */
static int fetch_one(fetcher *f, job *j)
{
	int rc = lock_part(f, j);
	if (rc == 1) {
		log_info("%s: put in place by another process", j->final);
		return 0;
	}
	if (rc)
		return rc;

	rc = fetch_verify_part(f, j);
	if (rc == 0)
		rc = install(f, j);
	else if (rc == EXIT_DATAERR)
		remove_part(j);
	if (rc && fetch_fd_size(j->fd) == 0)
		remove_part(j); /* nothing to resume from: leave no trace */
	close(j->fd); /* releases the lock */
	j->fd = -1;
	return rc;
}

/* ------------------------------------------------------------------ */
/* entry                                                               */
/* ------------------------------------------------------------------ */

/*
 * Fill js with the paths and URLs of the four files and count in *missing
 * those not in dir yet. Returns 0, or EXIT_USAGE (logged) when a path or URL
 * is too long or a missing file has no valid checksum to be verified with.
 */
static int plan_jobs(fetcher *f, job *js, const char *base_url, const char sha256[4][65],
		     int *missing)
{
	const char *dir = f->dir;
	int rc = 0;
	size_t base_len = strlen(base_url);
	while (base_len > 0 && base_url[base_len - 1] == '/')
		base_len--;
	for (int i = 0; i < FETCH_NFILES; i++) {
		job *j = &js[i];
		j->idx = i;
		j->name = fetch_file_names[i];
		j->expect = sha256[i];
		j->key = fetch_sha256_keys[i];
		j->fd = -1;
		int a = snprintf(j->final, sizeof j->final, "%s/%s", dir, j->name);
		int b = snprintf(j->part, sizeof j->part, "%s/%s.part", dir, j->name);
		int c = snprintf(j->url, sizeof j->url, "%.*s/%s", (int)base_len, base_url, j->name);
		if (a < 0 || b < 0 || c < 0 || (size_t)a >= sizeof j->final ||
		    (size_t)b >= sizeof j->part || (size_t)c >= sizeof j->url) {
			log_error("%s: data.dir or data.url too long", dir);
			return EXIT_USAGE;
		}
		if (file_present(f, j))
			continue;
		(*missing)++;
		fetch_url_for_log(j->url, j->url_log, sizeof j->url_log);
		if (!j->expect[0]) {
			log_error("%s is missing and %s is empty: refusing to download %s without a checksum; "
				  "set %s to its SHA-256 (sha256sum %s)",
				  j->final, fetch_sha256_keys[i], j->url_log, fetch_sha256_keys[i], j->name);
			rc = EXIT_USAGE;
		} else if (!fetch_is_sha256_hex(j->expect)) {
			log_error("%s must be 64 hexadecimal digits (a SHA-256), not \"%s\"",
				  fetch_sha256_keys[i], j->expect);
			rc = EXIT_USAGE;
		}
	}
	return rc;
}

int fetch_dataset_opts(const char *dir, const char *base_url, const char sha256[4][65],
		       const fetch_options *opts)
{
	if (!dir || !*dir || !sha256 || !opts) {
		log_error("fetch_dataset: bad arguments");
		return EXIT_USAGE;
	}
	if (!base_url || !*base_url)
		return 0;
	fetcher f = {.o = *opts, .dir = dir, .deadline = now_mono() + opts->deadline_s};
	if (f.o.max_bytes == 0)
		f.o.max_bytes = FETCH_DEFAULT_MAX_BYTES;
	if (f.o.lock_poll_ms <= 0)
		f.o.lock_poll_ms = 200;
	job *js = calloc(FETCH_NFILES, sizeof *js); /* big (paths, URLs): not on the stack */
	if (!js) {
		log_error("fetch_dataset: out of memory");
		return EXIT_OSERR;
	}

	/* Which files are missing, and can each be verified? */
	int missing = 0;
	int rc = plan_jobs(&f, js, base_url, sha256, &missing);
	if (rc || missing == 0)
		goto free_jobs;
	if ((rc = fetch_check_base_url(base_url)) || (rc = make_dirs(dir)) ||
	    (rc = fetch_setup_handle(&f)))
		goto free_jobs;

	for (int i = 0; i < FETCH_NFILES && !rc; i++)
		if (!file_present(&f, &js[i]))
			rc = fetch_one(&f, &js[i]);
	curl_easy_cleanup(f.h);
free_jobs:
	free(js);
	return rc;
}

int fetch_dataset(const char *dir, const char *base_url, const char sha256[4][65], size_t max_bytes)
{
	fetch_options o;
	fetch_options_default(&o);
	o.max_bytes = max_bytes;
	return fetch_dataset_opts(dir, base_url, sha256, &o);
}

/*
 * Parse digest ("sha256:HEX64", "md5:HEX32" or a bare HEX64) into j: 0 or
 * EXIT_USAGE (logged, naming key).
 */
static int parse_digest(job *j, const char *digest, const char *key)
{
	j->key = key;
	j->md5 = strncmp(digest, "md5:", 4) == 0;
	const char *hex = j->md5 ? digest + 4 : strncmp(digest, "sha256:", 7) == 0 ? digest + 7 : digest;
	size_t want = j->md5 ? 32 : 64, n = strlen(hex);
	bool ok = n == want;
	for (size_t i = 0; ok && i < n; i++)
		ok = (hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f') ||
		     (hex[i] >= 'A' && hex[i] <= 'F');
	if (!ok) {
		log_error("%s must be sha256:<64 hex digits> or md5:<32 hex digits>, not \"%s\"", key, digest);
		return EXIT_USAGE;
	}
	j->expect = hex;
	return 0;
}

int fetch_file_opts(const char *dir, const char *url, const char *name, const char *digest,
		    const char *key, const fetch_options *opts)
{
	if (!dir || !*dir || !url || !name || !*name || strchr(name, '/') || !digest || !key || !opts) {
		log_error("fetch_file: bad arguments");
		return EXIT_USAGE;
	}
	fetcher f = {.o = *opts, .dir = dir, .deadline = now_mono() + opts->deadline_s};
	if (f.o.max_bytes == 0)
		f.o.max_bytes = FETCH_DEFAULT_MAX_BYTES;
	if (f.o.lock_poll_ms <= 0)
		f.o.lock_poll_ms = 200;
	job *j = calloc(1, sizeof *j);
	if (!j) {
		log_error("fetch_file: out of memory");
		return EXIT_OSERR;
	}
	*j = (job){.idx = -1, .name = name, .fd = -1};
	int a = snprintf(j->final, sizeof j->final, "%s/%s", dir, name);
	int b = snprintf(j->part, sizeof j->part, "%s/%s.part", dir, name);
	int c = snprintf(j->url, sizeof j->url, "%s", url);
	int rc = 0;
	if (a < 0 || b < 0 || c < 0 || (size_t)a >= sizeof j->final || (size_t)b >= sizeof j->part ||
	    (size_t)c >= sizeof j->url) {
		log_error("%s: data.dir or data.url too long", dir);
		rc = EXIT_USAGE;
	}
	if (!rc && file_present(&f, j))
		goto free_job;
	fetch_url_for_log(j->url, j->url_log, sizeof j->url_log);
	if (!rc && !*digest) {
		log_error("%s is missing and %s is empty: refusing to download %s without a checksum",
			  j->final, key, j->url_log);
		rc = EXIT_USAGE;
	}
	if (rc || (rc = parse_digest(j, digest, key)) || (rc = fetch_check_base_url(url)) ||
	    (rc = make_dirs(dir)) || (rc = fetch_setup_handle(&f)))
		goto free_job;
	rc = fetch_one(&f, j);
	curl_easy_cleanup(f.h);
free_job:
	free(j);
	return rc;
}
