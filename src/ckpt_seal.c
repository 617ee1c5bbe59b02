/*
 * ckpt_seal.c - the seal of a checkpoint file: a crc of the whole file,
 * checked before HDF5 parses a byte of it. No HDF5 here.
 *
 * The file ends with 48 bytes after the HDF5 part (HDF5, h5py and h5dump
 * ignore bytes past the HDF5 end-of-file address), all little-endian:
 *   0  "spottrain-seal1\n"   magic (16 bytes)
 *   16 uint64                size of the whole file, seal included
 *   24 int64                 step (as the root attribute)
 *   32 uint32                flags: bit 0 = epoch_end (as the root attribute)
 *   36 uint32                0
 *   40 uint32                crc32 of the HDF5 part (bytes 0 .. size-48)
 *   44 uint32                crc32 of the seal's bytes 0..43
 * Why: HDF5 does not survive every damaged file. A flipped byte in the global
 * heap (where variable-length strings live, without a checksum) makes 1.10.8
 * crash or spin, and HDF5's own metadata checksums need the 1.8 format, which
 * H5Fget_file_image of 1.10.8 mangles. With the seal, truncation and any
 * flipped byte are refused before HDF5 sees the file; the content checksum
 * (ckpt.c) then checks what HDF5 decoded. A file changed by another tool (even
 * h5py in r+ mode, which also cuts the seal off at close) is refused.
 * The step and epoch_end flag let retention sort files by reading 48 bytes
 * of each rather than parsing them; a reader checks they agree with the
 * attributes.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "ckpt_internal.h"
#include "contract.h"

#define SEAL_MAGIC "spottrain-seal1\n" /* 16 bytes */

uint32_t ckpt_crc32(uint32_t crc, const void *p, size_t n)
{
	const unsigned char *b = p;
	while (n > 0) {
		uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
		crc = (uint32_t)crc32(crc, b, chunk);
		b += chunk;
		n -= chunk;
	}
	return crc;
}

static void put_u32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
	put_u32(p, (uint32_t)v);
	put_u32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const unsigned char *p)
{
	return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* The seal of a file whose first n bytes (the HDF5 part) have crc data_crc. */
static void make_seal(unsigned char *seal, uint64_t n, long step, bool epoch_end, uint32_t data_crc)
{
	memset(seal, 0, CKPT_SEAL_SIZE);
	memcpy(seal, SEAL_MAGIC, 16);
	put_u64(seal + 16, n + CKPT_SEAL_SIZE);
	put_u64(seal + 24, (uint64_t)step);
	put_u32(seal + 32, epoch_end ? 1u : 0u);
	put_u32(seal + 40, data_crc);
	put_u32(seal + 44, ckpt_crc32(0, seal, 44));
}

/* Is seal (the last CKPT_SEAL_SIZE bytes of a file of size bytes) whole, and for that size? */
static bool seal_intact(const unsigned char *seal, uint64_t size)
{
	return memcmp(seal, SEAL_MAGIC, 16) == 0 && get_u64(seal + 16) == size &&
	       get_u32(seal + 44) == ckpt_crc32(0, seal, 44);
}

static void seal_info(const unsigned char *seal, ckpt_seal_info *info)
{
	info->size = get_u64(seal + 16);
	info->step = (int64_t)get_u64(seal + 24);
	info->epoch_end = (get_u32(seal + 32) & 1u) != 0;
	info->data_crc = get_u32(seal + 40);
}

/* crc32 of fd's bytes [0, n); EXIT_IOERR if they cannot be read. */
static int crc_of_fd(int fd, uint64_t n, uint32_t *crc, const char *path, char *why, size_t len)
{
	unsigned char buf[1 << 16];
	uint32_t c = 0;
	uint64_t off = 0;
	while (off < n) {
		size_t want = n - off < sizeof buf ? (size_t)(n - off) : sizeof buf;
		ssize_t got = pread(fd, buf, want, (off_t)off);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			snprintf(why, len, "read %s at byte %llu: %s", path, (unsigned long long)off,
				 got < 0 ? strerror(errno) : "unexpected end of file");
			return EXIT_IOERR;
		}
		c = ckpt_crc32(c, buf, (size_t)got);
		off += (uint64_t)got;
	}
	*crc = c;
	return 0;
}

void ckpt_seal_image(unsigned char *img, size_t n, long step, bool epoch_end)
{
	make_seal(img + n, n, step, epoch_end, ckpt_crc32(0, img, n));
}

int ckpt_seal(const char *path, long step, bool epoch_end, char *why, size_t len)
{
	struct stat st;
	unsigned char seal[CKPT_SEAL_SIZE];
	uint32_t crc;
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, len, "open %s: %s", path, strerror(errno));
		return EXIT_IOERR;
	}
	int rc = 0;
	if (fstat(fd, &st) != 0 || st.st_size < CKPT_SEAL_SIZE) {
		snprintf(why, len, "%s: cannot stat it, or too short to seal", path);
		rc = EXIT_IOERR;
		goto close_fd;
	}
	/* replace a seal that is there, else append one */
	uint64_t n = (uint64_t)st.st_size;
	if (pread(fd, seal, CKPT_SEAL_SIZE, (off_t)(n - CKPT_SEAL_SIZE)) == CKPT_SEAL_SIZE && seal_intact(seal, n))
		n -= CKPT_SEAL_SIZE;
	if ((rc = crc_of_fd(fd, n, &crc, path, why, len)))
		goto close_fd;
	make_seal(seal, n, step, epoch_end, crc);
	if (pwrite(fd, seal, CKPT_SEAL_SIZE, (off_t)n) != CKPT_SEAL_SIZE || ftruncate(fd, (off_t)(n + CKPT_SEAL_SIZE)) != 0 ||
	    fsync(fd) != 0) {
		snprintf(why, len, "write the seal of %s: %s", path, strerror(errno));
		rc = EXIT_IOERR;
	}
close_fd:
	close(fd);
	return rc;
}

/* Open path and read its seal (the file is size bytes): 0 with fd open, or an error with fd closed. */
static int open_sealed(const char *path, uint64_t size, int *fd, unsigned char *seal, char *why, size_t len)
{
	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0) {
		snprintf(why, len, "checkpoint %s: cannot open: %s", path, strerror(errno));
		return EXIT_NOINPUT;
	}
	if (size < 2 * CKPT_SEAL_SIZE || pread(*fd, seal, CKPT_SEAL_SIZE, (off_t)(size - CKPT_SEAL_SIZE)) != CKPT_SEAL_SIZE ||
	    !seal_intact(seal, size)) {
		snprintf(why, len, "checkpoint %s: no intact spottrain seal at its end (cut short, damaged, not a checkpoint, "
			 "or changed by another tool)", path);
		close(*fd);
		*fd = -1;
		return EXIT_DATAERR;
	}
	return 0;
}

int ckpt_read_seal(const char *path, ckpt_seal_info *info, char *why, size_t len)
{
	struct stat st;
	unsigned char seal[CKPT_SEAL_SIZE];
	int fd;
	if (stat(path, &st) != 0) {
		snprintf(why, len, "checkpoint %s: cannot open: %s", path, strerror(errno));
		return EXIT_NOINPUT;
	}
	int rc = open_sealed(path, (uint64_t)st.st_size, &fd, seal, why, len);
	if (rc)
		return rc;
	close(fd);
	seal_info(seal, info);
	return 0;
}

int ckpt_check_seal(const char *path, uint64_t size, ckpt_seal_info *info, char *why, size_t len)
{
	unsigned char seal[CKPT_SEAL_SIZE];
	uint32_t crc;
	int fd;
	int rc = open_sealed(path, size, &fd, seal, why, len);
	if (rc)
		return rc;
	rc = EXIT_DATAERR;
	if (crc_of_fd(fd, size - CKPT_SEAL_SIZE, &crc, path, why, len) != 0)
		goto close_fd; /* a file that cannot be read back is as good as damaged */
	if (crc != get_u32(seal + 40)) {
		snprintf(why, len, "checkpoint %s: file checksum mismatch (sealed %08" PRIx32 ", now %08" PRIx32 "): the file is damaged",
			 path, get_u32(seal + 40), crc);
		goto close_fd;
	}
	seal_info(seal, info);
	rc = 0;
close_fd:
	close(fd);
	return rc;
}
