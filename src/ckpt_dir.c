/*
 * ckpt_dir.c - the checkpoint directory: names, the newest valid checkpoint
 * (DESIGN.md invariant 5) and retention. Files are ckpt-<step>.h5, at least
 * eight digits; ckpt-<step>.h5.tmp is a write in progress or one that died,
 * and never counts as a checkpoint. No HDF5 here: reads go through ckpt.c.
 */
#include "ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt_internal.h"
#include "contract.h"
#include "fsutil.h"
#include "log.h"

#define WHY_LEN 1024

typedef struct dir_entry {
	long step;          /* from the name */
	bool tmp;           /* ckpt-<step>.h5.tmp */
	char name[NAME_MAX + 1]; /* file name inside the directory */
} dir_entry;

void ckpt_path(const char *dir, long step, char *out, size_t len)
{
	snprintf(out, len, "%s/ckpt-%08ld.h5", dir, step);
}

/* Parse "ckpt-<digits>.h5" (tmp = false) or "ckpt-<digits>.h5.tmp" (tmp = true). */
static bool parse_ckpt_name(const char *name, long *step, bool *tmp)
{
	if (strncmp(name, "ckpt-", 5) != 0)
		return false;
	const char *p = name + 5;
	long v = 0;
	int nd = 0;
	for (; *p >= '0' && *p <= '9'; p++, nd++) {
		if (nd >= 18)
			return false;
		v = v * 10 + (*p - '0');
	}
	if (nd == 0)
		return false;
	if (strcmp(p, ".h5") == 0)
		*tmp = false;
	else if (strcmp(p, ".h5.tmp") == 0)
		*tmp = true;
	else
		return false;
	*step = v;
	return true;
}

static int cmp_newest_first(const void *a, const void *b)
{
	const dir_entry *x = a, *y = b;
	if (x->step != y->step)
		return x->step > y->step ? -1 : 1;
	return strcmp(y->name, x->name);
}

/* The checkpoint files of dir, newest step first. On failure *err is the errno. */
static int list_ckpts(const char *dir, dir_entry **out, size_t *n_out, int *err, char *why, size_t len)
{
	DIR *d = opendir(dir);
	*out = NULL;
	*n_out = 0;
	*err = 0;
	if (!d) {
		*err = errno;
		snprintf(why, len, "cannot list checkpoint directory %s: %s", dir, strerror(*err));
		return EXIT_IOERR;
	}
	dir_entry *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	errno = 0;
	while ((e = readdir(d)) != NULL) {
		long step;
		bool tmp;
		if (strlen(e->d_name) > NAME_MAX || !parse_ckpt_name(e->d_name, &step, &tmp)) {
			errno = 0;
			continue;
		}
		if (n == cap) {
			size_t nc = cap ? 2 * cap : 16;
			dir_entry *p = realloc(v, nc * sizeof *v);
			if (!p) {
				free(v);
				closedir(d);
				*err = ENOMEM;
				snprintf(why, len, "out of memory listing %s", dir);
				return EXIT_OSERR;
			}
			v = p;
			cap = nc;
		}
		v[n].step = step;
		v[n].tmp = tmp;
		strcpy(v[n].name, e->d_name);
		n++;
		errno = 0;
	}
	*err = errno;
	closedir(d);
	if (*err) {
		free(v);
		snprintf(why, len, "cannot list checkpoint directory %s: %s", dir, strerror(*err));
		return EXIT_IOERR;
	}
	if (n > 1)
		qsort(v, n, sizeof *v, cmp_newest_first);
	*out = v;
	*n_out = n;
	return 0;
}

/* dir/name into out; false if it does not fit. */
static bool join(char *out, size_t len, const char *dir, const char *name)
{
	return (size_t)snprintf(out, len, "%s/%s", dir, name) < len;
}

int ckpt_find_newest(const char *dir, const model *m, const ckpt_buffers *layout, char *path, size_t len, long *step)
{
	char why[WHY_LEN], p[PATH_MAX];
	dir_entry *v;
	size_t n;
	int err;
	if (!dir || !layout || !path || !step) {
		log_error("cannot look for checkpoints: missing directory, buffers or output");
		return EXIT_SOFTWARE;
	}
	if (list_ckpts(dir, &v, &n, &err, why, sizeof why) != 0) {
		if (err != ENOENT)
			log_warn("%s", why);
		return EXIT_NOINPUT;
	}
	int rc = EXIT_NOINPUT;
	char old_format[PATH_MAX] = "";
	for (size_t i = 0; i < n && rc == EXIT_NOINPUT; i++) {
		if (v[i].tmp)
			continue;
		if (!join(p, sizeof p, dir, v[i].name)) {
			log_warn("skipping checkpoint %s/%s: path too long", dir, v[i].name);
			continue;
		}
		ckpt_buffers b = *layout; /* the caller's scratch buffers: overwritten by each try */
		ckpt_meta mt;
		int r = ckpt_read_quiet(p, m, false, &mt, &b, why, sizeof why);
		if (r == EXIT_SOFTWARE || r == EXIT_OSERR) { /* our fault, not the file's */
			log_error("%s", why);
			rc = r;
			break;
		}
		if (r != 0) {
			log_warn("skipping %s", why);
			if (!old_format[0] && strstr(why, CKPT_FORMAT1_NOTE))
				snprintf(old_format, sizeof old_format, "%s", p);
			continue;
		}
		if (mt.step != v[i].step) {
			log_warn("skipping checkpoint %s: its name says step %ld but it holds step %ld", p, v[i].step, mt.step);
		} else if ((size_t)snprintf(path, len, "%s", p) >= len) {
			log_error("checkpoint path %s does not fit in %zu bytes", p, len);
			rc = EXIT_SOFTWARE;
		} else {
			*step = mt.step;
			rc = 0;
		}
		ckpt_meta_free(&mt);
	}
	free(v);
	if (rc == EXIT_NOINPUT && old_format[0]) {
		/* a run of the old format: starting it again from step 0 would throw its work away */
		log_error("%s holds checkpoints of format 1 (such as %s) and none that this spottrain reads "
			  "(format %d): finish the run with the spottrain that started it, convert its checkpoints "
			  "with scripts/ckpt_upgrade.py, or start a new run directory", dir, old_format, CKPT_FORMAT_VERSION);
		rc = EXIT_DATAERR;
	}
	return rc;
}

/*
 * Which files to keep: the newest `keep`, the newest whose seal is intact (the crc of the whole
 * file: whatever happened to newer ones, the last whole checkpoint stays), and (keep_epoch_ends)
 * every one whose seal says epoch end. Only the seals are read (48 bytes, and one whole file), not
 * the HDF5 inside: retention runs after every write.
 */
static void choose_kept(const char *dir, const dir_entry *v, size_t n, int keep, bool keep_epoch_ends, bool *kept)
{
	char why[WHY_LEN], p[PATH_MAX];
	size_t seen = 0;
	bool have_whole = false;
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		ckpt_seal_info seal;
		if (v[i].tmp)
			continue;
		kept[i] = seen++ < (size_t)keep;
		if (!join(p, sizeof p, dir, v[i].name) || stat(p, &st) != 0) {
			kept[i] = true; /* cannot name or see it: leave it alone */
			continue;
		}
		if (!have_whole) {
			if (S_ISREG(st.st_mode) && ckpt_check_seal(p, (uint64_t)st.st_size, &seal, why, sizeof why) == 0) {
				have_whole = true;
				kept[i] = true;
			} else {
				log_warn("retention: %s", why);
			}
		}
		if (!kept[i] && keep_epoch_ends && ckpt_read_seal(p, &seal, why, sizeof why) == 0)
			kept[i] = seal.epoch_end;
	}
}

int ckpt_prune(const char *dir, int keep, bool keep_epoch_ends)
{
	char why[WHY_LEN], p[PATH_MAX];
	dir_entry *v;
	size_t n;
	int err, rc;
	if (!dir) {
		log_error("cannot prune checkpoints: no directory given");
		return EXIT_SOFTWARE;
	}
	if ((rc = list_ckpts(dir, &v, &n, &err, why, sizeof why)) != 0) {
		if (err == ENOENT)
			return 0;
		log_error("cannot prune checkpoints: %s", why);
		return rc;
	}
	bool *kept = calloc(n ? n : 1, sizeof *kept);
	if (!kept) {
		free(v);
		log_error("cannot prune checkpoints in %s: out of memory", dir);
		return EXIT_OSERR;
	}
	choose_kept(dir, v, n, keep < 1 ? 1 : keep, keep_epoch_ends, kept);
	int removed = 0;
	for (size_t i = 0; i < n; i++) {
		if (kept[i] || !join(p, sizeof p, dir, v[i].name))
			continue;
		if (unlink(p) != 0 && errno != ENOENT) {
			log_error("cannot remove old checkpoint %s: %s", p, strerror(errno));
			rc = EXIT_IOERR;
			continue;
		}
		removed++;
	}
	if (removed > 0 && fs_fsync_dir(dir, why, sizeof why) != 0) {
		log_error("retention in %s: %s", dir, why);
		rc = EXIT_IOERR;
	}
	free(kept);
	free(v);
	return rc;
}
