/* client_dwrite.h: restored file data written around the page cache.
 *
 * WHY. A restore writes gigabytes the machine will not read back soon.
 * Through the page cache, each new page is allocated, zeroed, charged, copied
 * into and later written back; on a VM whose balloon reports free pages to the
 * host that cost 2.25 CPU-seconds per GiB and held a single writer at
 * 0.45 GB/s, against 1.8 GB/s with O_DIRECT (docs/performance.md). It also
 * pushes everything else out of the cache.
 *
 * HOW. A writer stages data in one page-aligned buffer and writes it with
 * O_DIRECT in whole buffers at aligned file offsets. The unaligned tail of a
 * file (and of a range before a long hole) is written buffered: O_DIRECT is
 * switched off with fcntl for that one write. Short holes are written as
 * zeros; long ones are skipped, so sparse files stay sparse. Where the file
 * system refuses O_DIRECT (tmpfs on older kernels, some FUSE file systems)
 * every write is buffered, through the same staging.
 *
 * Writes must come in increasing offsets, as a tar stream gives them. A pipe
 * (restore into a FIFO) is written as a stream, holes as zeros.
 * THREADING: blocking I/O, on one thread at a time.
 */
#ifndef CLIENT_DWRITE_H
#define CLIENT_DWRITE_H

#include <stddef.h>
#include <stdint.h>

/* Staging buffer size: one write system call per 4 MiB. */
#define CLIENT_DWRITE_BUF (4u << 20)

struct client_dwrite {
  int fd;           /* the open file, or -1; not owned */
  int seekable;     /* a regular file or block device: written with pwrite */
  int direct;       /* O_DIRECT is on for fd */
  uint8_t *buf;     /* page-aligned staging, CLIENT_DWRITE_BUF bytes; owned */
  uint64_t start;   /* file offset of buf[0], page-aligned while direct */
  size_t fill;      /* staged bytes */
};

/* Allocates the staging buffer. Returns 0 or -ENOMEM. */
int client_dwrite_init(struct client_dwrite *w);
void client_dwrite_free(struct client_dwrite *w);

/* Starts writing `fd` (open for writing) from offset 0: with O_DIRECT when
 * it is a regular file or block device whose file system allows it, else
 * with plain pwrite. */
void client_dwrite_begin(struct client_dwrite *w, int fd);

/* Writes `len` bytes at file offset `off` (not below the end of the previous
 * write). Returns 0 or a negative errno. */
int client_dwrite_write(struct client_dwrite *w, uint64_t off, const void *data, size_t len);

/* Writes what is staged and leaves `fd` as it found it (without O_DIRECT).
 * Does not set the size: after a trailing hole, the caller truncates. Returns
 * 0 or a negative errno. */
int client_dwrite_end(struct client_dwrite *w);

#endif
