/* client_bufpool.c: recycled chunk buffers (see client_bufpool.h). */
#include "client/client_bufpool.h"

#include "core/core_alloc.h"

#include <sys/mman.h>
#include <unistd.h>
#include <uv.h>

/* An idle buffer keeps this at its start. */
struct idle {
  struct idle *next;
  size_t resident; /* bytes from the start that may be backed */
};

struct client_bufpool {
  size_t size;     /* of every buffer, a multiple of the page size */
  size_t max_idle; /* bound on the idle buffers' resident bytes */
  size_t page;
  uv_mutex_t mu;
  struct idle *idle; /* most recently returned first: its pages are warmest */
  size_t idle_bytes;
};

struct client_bufpool *client_bufpool_new(size_t size, size_t max_idle)
{
  struct client_bufpool *bp = core_calloc(1, sizeof(*bp));
  bp->page = (size_t)sysconf(_SC_PAGESIZE);
  bp->size = (size + bp->page - 1) & ~(bp->page - 1);
  bp->max_idle = max_idle;
  if (uv_mutex_init(&bp->mu) != 0) {
    core_free(bp);
    return NULL;
  }
  return bp;
}

void client_bufpool_free(struct client_bufpool *bp)
{
  if (bp == NULL)
    return;
  while (bp->idle) {
    struct idle *i = bp->idle;
    bp->idle = i->next;
    munmap(i, bp->size);
  }
  uv_mutex_destroy(&bp->mu);
  core_free(bp);
}

static size_t page_round(const struct client_bufpool *bp, size_t n)
{
  n = (n + bp->page - 1) & ~(bp->page - 1);
  return n > bp->size ? bp->size : n;
}

uint8_t *client_bufpool_get(struct client_bufpool *bp, size_t *resident)
{
  struct idle *i;
  void *p;

  uv_mutex_lock(&bp->mu);
  i = bp->idle;
  if (i) {
    bp->idle = i->next;
    bp->idle_bytes -= i->resident;
  }
  uv_mutex_unlock(&bp->mu);
  if (i) {
    *resident = i->resident;
    return (uint8_t *)i;
  }
  *resident = 0;
  p = mmap(NULL, bp->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

void client_bufpool_trim(struct client_bufpool *bp, uint8_t *buf, size_t resident,
                         size_t used)
{
  size_t keep = page_round(bp, used);
  if (resident > keep)
    madvise(buf + keep, page_round(bp, resident) - keep, MADV_DONTNEED);
}

void client_bufpool_put(struct client_bufpool *bp, uint8_t *buf, size_t used)
{
  struct idle *i = (struct idle *)buf;
  size_t keep;

  if (buf == NULL)
    return;
  keep = page_round(bp, used < sizeof(*i) ? sizeof(*i) : used);
  /* Callers trim complete chunks; this covers the others (a failed read)
   * and otherwise costs a walk of empty page tables. The buffer is ours
   * alone until it is on the list. */
  if (keep < bp->size)
    madvise(buf + keep, bp->size - keep, MADV_DONTNEED);
  i->resident = keep;
  uv_mutex_lock(&bp->mu);
  if (bp->idle_bytes + keep <= bp->max_idle) {
    i->next = bp->idle;
    bp->idle = i;
    bp->idle_bytes += keep;
    i = NULL;
  }
  uv_mutex_unlock(&bp->mu);
  if (i)
    munmap(buf, bp->size);
}
