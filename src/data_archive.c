/*
 * data_archive.c - data.url naming a CIFAR-10 archive (data_archive.h): the
 * download through fetch.h and the unpacking into a folder that appears
 * whole or not at all.
 */
#include "data_archive.h"

#include "contract.h"
#include "fsutil.h"
#include "log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CIFAR10_DIR "cifar-10-batches-bin"
#define CIFAR10_NFILES 6
static const char *const cifar10_files[CIFAR10_NFILES] = {
	"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
	"data_batch_4.bin", "data_batch_5.bin", "test_batch.bin",
};

int archive_url(const char *url)
{
	size_t n = url ? strlen(url) : 0;
	return (n > 7 && strcmp(url + n - 7, ".tar.gz") == 0) || (n > 4 && strcmp(url + n - 4, ".tgz") == 0);
}

/* True when dir/sub (sub NULL: dir itself) holds the six CIFAR-10 files. */
static bool cifar10_complete(const char *dir, const char *sub)
{
	char path[4200];
	struct stat st;
	for (int k = 0; k < CIFAR10_NFILES; k++) {
		snprintf(path, sizeof path, "%s%s%s/%s", dir, sub ? "/" : "", sub ? sub : "", cifar10_files[k]);
		if (stat(path, &st) != 0)
			return false;
	}
	return true;
}

/* Remove the files of a temporary unpack folder and the folder. */
static void remove_tmp(const char *tmp)
{
	char path[4400];
	for (int k = 0; k < CIFAR10_NFILES; k++) {
		snprintf(path, sizeof path, "%s/%s", tmp, cifar10_files[k]);
		unlink(path);
	}
	if (rmdir(tmp) != 0 && errno != ENOENT)
		log_warn("%s: cannot remove: %s", tmp, strerror(errno));
}

/* Unpack archive into a fresh dir/.unpack.* and rename it to dir/CIFAR10_DIR. */
static int unpack(const char *dir, const char *archive)
{
	char tmp[4200], final[4200], why[4400];
	snprintf(tmp, sizeof tmp, "%s/.unpack.XXXXXX", dir);
	snprintf(final, sizeof final, "%s/%s", dir, CIFAR10_DIR);
	if (!mkdtemp(tmp)) {
		log_error("%s: cannot create a folder to unpack into: %s", dir, strerror(errno));
		return EXIT_IOERR;
	}
	int rc = archive_untar(archive, CIFAR10_DIR, cifar10_files, CIFAR10_NFILES, ARCHIVE_MAX_MEMBER, tmp);
	if (!rc && fs_fsync_dir(tmp, why, sizeof why)) {
		log_error("%s", why);
		rc = EXIT_IOERR;
	}
	if (!rc && rename(tmp, final) != 0) {
		int e = errno;
		if ((e == EEXIST || e == ENOTEMPTY) && cifar10_complete(dir, CIFAR10_DIR)) {
			log_info("%s: put in place by another process", final);
			remove_tmp(tmp);
			return 0;
		}
		log_error("%s: cannot rename to %s: %s (remove an incomplete %s)", tmp, final, strerror(e), final);
		rc = EXIT_IOERR;
	}
	if (rc) {
		remove_tmp(tmp);
		return rc;
	}
	if (fs_fsync_dir(dir, why, sizeof why)) {
		log_error("%s", why);
		return EXIT_IOERR;
	}
	log_info("%s: unpacked from %s", final, archive);
	return 0;
}

int archive_fetch_cifar10(const char *dir, const char *url, const char *digest, const fetch_options *o)
{
	if (strlen(dir) > 4000 || strlen(url) > 4000) {
		log_error("%s: data.dir or data.url too long", dir);
		return EXIT_USAGE;
	}
	if (cifar10_complete(dir, CIFAR10_DIR) || cifar10_complete(dir, NULL))
		return 0;
	const char *name = strrchr(url, '/');
	name = name ? name + 1 : url;
	if (!*name || !archive_url(name)) {
		log_error("data.url %s does not name a .tar.gz archive", url);
		return EXIT_USAGE;
	}
	if (!*digest && strcmp(name, "cifar-10-binary.tar.gz") == 0)
		digest = CIFAR10_ARCHIVE_MD5; /* the checksum its publisher gives */
	int rc = fetch_file_opts(dir, url, name, digest, "data.archive_digest", o);
	if (rc)
		return rc;
	char archive[4200];
	snprintf(archive, sizeof archive, "%s/%s", dir, name);
	rc = unpack(dir, archive);
	if (rc == EXIT_DATAERR)
		log_error("%s passed its checksum but cannot be unpacked as CIFAR-10; remove it and check "
			  "data.url and data.archive_digest", archive);
	return rc;
}
