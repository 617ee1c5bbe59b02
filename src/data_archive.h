/*
 * data_archive.h - a data set that is published as one compressed archive
 * (CIFAR-10's cifar-10-binary.tar.gz): downloaded through fetch.h, verified
 * by its published checksum, and unpacked by a small, bounded ustar reader
 * over zlib (no libarchive, no tar process).
 */
#ifndef SPOTTRAIN_DATA_ARCHIVE_H
#define SPOTTRAIN_DATA_ARCHIVE_H

#include <stddef.h>

#include "fetch.h"

/* The published MD5 of https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz. */
#define CIFAR10_ARCHIVE_MD5 "md5:c32a1d4ab5d03f1284b67883e8d87530"
#define ARCHIVE_MAX_MEMBER ((size_t)64 << 20) /* a CIFAR batch is 30730000 bytes */

/*
 * Read the gzip-compressed tar archive at archive and write each regular
 * member named prefix "/" names[k] (a leading "./" ignored) to dest/names[k]
 * (dest exists; files are created O_EXCL, fsynced). Every header is checked
 * before it is used: its checksum and magic (POSIX ustar or GNU), a size in
 * octal of at most max_member bytes, a path that is relative and has no ".."
 * component, and a type that is a regular file or a folder: a link, a device,
 * a FIFO, a GNU long name or a pax header is refused. Members not asked for
 * are read and dropped. Returns 0 when every name was found exactly once, or
 *   EXIT_NOINPUT (66) archive cannot be opened;
 *   EXIT_DATAERR (65) anything of the above, a truncated or corrupt stream,
 *                     a missing or repeated member (message: archive, member,
 *                     byte offset in the uncompressed stream);
 *   EXIT_IOERR (74)   writing into dest failed.
 * On failure the files it made in dest are removed.
 */
int archive_untar(const char *archive, const char *prefix, const char *const *names, int n,
		  size_t max_member, const char *dest);

/*
 * data.url pointing at a CIFAR-10 archive (a name ending in .tar.gz or .tgz):
 * when dir (or dir/cifar-10-batches-bin) does not hold the six batch files,
 * download the archive into dir with fetch_file_opts, verified by digest
 * (fetch_file_opts' syntax; "" means CIFAR10_ARCHIVE_MD5 when the archive is
 * cifar-10-binary.tar.gz), unpack the six files into a fresh dir/.unpack.*
 * folder and rename it to dir/cifar-10-batches-bin, so the folder appears
 * whole or not at all. The archive is kept (a later run does not download
 * it again). Returns 0 or an exit code (logged).
 */
int archive_fetch_cifar10(const char *dir, const char *url, const char *digest, const fetch_options *o);

/* True when url names an archive (ends in .tar.gz or .tgz). */
int archive_url(const char *url);

#endif
