/* client_dwrite.c: restored file data written around the page cache (see
 * client_dwrite.h). */
#include "client/client_dwrite.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* O_DIRECT wants buffer addresses, offsets and lengths in multiples of the
 * logical block size: 4096 covers 512-byte and 4Kn devices alike. */
#define ALIGN ((size_t)4096)

/* Holes at least this long are skipped (left unallocated); shorter ones are
 * written as zeros, which keeps the writes large. */
#define HOLE_SKIP ((uint64_t)1 << 20)

int client_dwrite_init(struct client_dwrite *w)
{
  void *p;
  memset(w, 0, sizeof(*w));
  w->fd = -1;
  if (posix_memalign(&p, ALIGN, CLIENT_DWRITE_BUF) != 0)
    return -ENOMEM;
  w->buf = p;
  return 0;
}

void client_dwrite_free(struct client_dwrite *w)
{
  free(w->buf);
  w->buf = NULL;
}

static int set_direct(int fd, int on)
{
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0)
    return -errno;
  fl = on ? fl | O_DIRECT : fl & ~O_DIRECT;
  return fcntl(fd, F_SETFL, fl) == 0 ? 0 : -errno;
}

void client_dwrite_begin(struct client_dwrite *w, int fd)
{
  struct stat sb;
  w->fd = fd;
  w->start = 0;
  w->fill = 0;
  /* Anything else (a pipe, a terminal) is a stream: written in order, and
   * never with O_DIRECT, which means packet mode on a pipe. */
  w->seekable = fstat(fd, &sb) == 0 && (S_ISREG(sb.st_mode) || S_ISBLK(sb.st_mode));
  /* refused (EINVAL) where the file system has no direct I/O */
  w->direct = w->seekable && set_direct(fd, 1) == 0;
}

/* Writes n bytes at off. A file system may accept O_DIRECT at fcntl and still
 * refuse the write itself (EINVAL): the file goes on buffered. */
static int put(struct client_dwrite *w, const uint8_t *p, size_t n, uint64_t off)
{
  while (n > 0) {
    ssize_t k = w->seekable ? pwrite(w->fd, p, n, (off_t)off) : write(w->fd, p, n);
    if (k < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EINVAL && w->direct && set_direct(w->fd, 0) == 0) {
        w->direct = 0;
        continue;
      }
      return -errno;
    }
    p += k;
    n -= (size_t)k;
    off += (uint64_t)k;
  }
  return 0;
}

/* Writes everything staged: the aligned part directly, the rest (the end of
 * a file or of a range before a hole) buffered. */
static int flush(struct client_dwrite *w)
{
  size_t head = w->direct ? w->fill & ~(ALIGN - 1) : w->fill;
  size_t rest = w->fill - head;
  int rc;

  if (head > 0 && (rc = put(w, w->buf, head, w->start)) < 0)
    return rc;
  if (rest > 0) {
    int direct = w->direct;
    if (direct && (rc = set_direct(w->fd, 0)) < 0)
      return rc;
    rc = put(w, w->buf + head, rest, w->start + head);
    if (rc == 0 && direct)
      rc = set_direct(w->fd, 1);
    if (rc < 0)
      return rc;
  }
  w->start += w->fill;
  w->fill = 0;
  return 0;
}

/* Appends n bytes (zeros when p is NULL), writing each full buffer. */
static int stage(struct client_dwrite *w, const uint8_t *p, size_t n)
{
  while (n > 0) {
    size_t k = CLIENT_DWRITE_BUF - w->fill;
    if (k > n)
      k = n;
    if (p) {
      memcpy(w->buf + w->fill, p, k);
      p += k;
    } else {
      memset(w->buf + w->fill, 0, k);
    }
    w->fill += k;
    n -= k;
    if (w->fill == CLIENT_DWRITE_BUF) {
      /* a full buffer is aligned: written directly, nothing left over */
      int rc = put(w, w->buf, w->fill, w->start);
      if (rc < 0)
        return rc;
      w->start += w->fill;
      w->fill = 0;
    }
  }
  return 0;
}

int client_dwrite_write(struct client_dwrite *w, uint64_t off, const void *data, size_t len)
{
  uint64_t end = w->start + w->fill;
  int rc;

  if (off < end)
    return -EINVAL;
  if (w->seekable && off - end >= HOLE_SKIP) {
    /* a long hole: write out what is staged and go on from the page that
     * holds off; the bytes before off in that page lie in the hole */
    if ((rc = flush(w)) < 0)
      return rc;
    w->start = w->direct ? off & ~(uint64_t)(ALIGN - 1) : off;
    w->fill = (size_t)(off - w->start);
    memset(w->buf, 0, w->fill);
  } else if (off > end && (rc = stage(w, NULL, (size_t)(off - end))) < 0) {
    return rc;
  }
  return stage(w, data, len);
}

int client_dwrite_end(struct client_dwrite *w)
{
  int rc = flush(w);
  if (w->direct) {
    int rc2 = set_direct(w->fd, 0);
    if (rc == 0)
      rc = rc2;
  }
  w->fd = -1;
  w->direct = 0;
  return rc;
}
