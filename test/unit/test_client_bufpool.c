/* test_client_bufpool.c: chunk buffers come back for reuse with the pages
 * of their last chunk and no more, and idle memory stays under its bound. */
#include "unit.h"

#include "client/client_bufpool.h"

#include <sys/mman.h>
#include <unistd.h>

#define MiB ((size_t)1 << 20)

/* Page counts below assume 4 KiB pages: keep transparent huge pages (when
 * the system makes them for every mapping) out of the fresh buffers. */
static uint8_t *get_small_pages(struct client_bufpool *bp, size_t size, size_t *resident)
{
  uint8_t *buf = client_bufpool_get(bp, resident);
  ASSERT(buf != NULL);
  if (*resident == 0)
    madvise(buf, size, MADV_NOHUGEPAGE);
  return buf;
}

/* How many of the first `len` bytes of buf have pages. */
static size_t resident_bytes(uint8_t *buf, size_t len)
{
  size_t page = (size_t)sysconf(_SC_PAGESIZE), n = (len + page - 1) / page, count = 0;
  unsigned char *vec = malloc(n);
  ASSERT(vec != NULL);
  ASSERT_EQ(mincore(buf, len, vec), 0);
  for (size_t i = 0; i < n; i++)
    count += vec[i] & 1;
  free(vec);
  return count * page;
}

UNIT_TEST(reuse_keeps_the_last_chunk)
{
  struct client_bufpool *bp = client_bufpool_new(16 * MiB, 32 * MiB);
  size_t resident;
  uint8_t *a, *b;

  ASSERT(bp != NULL);
  a = get_small_pages(bp, 16 * MiB, &resident);
  ASSERT_EQ(resident, 0);
  ASSERT_EQ(resident_bytes(a, 16 * MiB), 0);
  memset(a, 'a', 3 * MiB);
  client_bufpool_trim(bp, a, resident, 3 * MiB);
  ASSERT_EQ(resident_bytes(a, 16 * MiB), 3 * MiB);
  client_bufpool_put(bp, a, 3 * MiB);

  /* the same buffer, its pages still there */
  b = client_bufpool_get(bp, &resident);
  ASSERT(b == a);
  ASSERT_EQ(resident, 3 * MiB);
  ASSERT_EQ(resident_bytes(b, 16 * MiB), 3 * MiB);

  /* a shorter chunk: the pages past it go at trim */
  memset(b, 'b', MiB + 1);
  client_bufpool_trim(bp, b, resident, MiB + 1);
  ASSERT_EQ(resident_bytes(b, 16 * MiB), MiB + (size_t)sysconf(_SC_PAGESIZE));
  client_bufpool_put(bp, b, MiB + 1);
  client_bufpool_free(bp);
}

/* A buffer put back untrimmed (a failed read) still leaves only the pages
 * of what it held. */
UNIT_TEST(put_trims_too)
{
  struct client_bufpool *bp = client_bufpool_new(8 * MiB, 32 * MiB);
  size_t resident;
  uint8_t *a = get_small_pages(bp, 8 * MiB, &resident);
  memset(a, 'x', 8 * MiB);
  client_bufpool_put(bp, a, 2 * MiB);
  ASSERT(client_bufpool_get(bp, &resident) == a);
  ASSERT_EQ(resident, 2 * MiB);
  ASSERT_EQ(resident_bytes(a, 8 * MiB), 2 * MiB);
  client_bufpool_put(bp, a, 2 * MiB);
  client_bufpool_free(bp);
}

/* Idle buffers hold at most max_idle bytes; the rest are unmapped. */
UNIT_TEST(idle_memory_is_bounded)
{
  struct client_bufpool *bp = client_bufpool_new(4 * MiB, 5 * MiB);
  uint8_t *buf[3];
  size_t resident, fresh = 0;

  for (int i = 0; i < 3; i++) {
    buf[i] = client_bufpool_get(bp, &resident);
    ASSERT(buf[i] != NULL);
    memset(buf[i], i, 2 * MiB);
  }
  for (int i = 0; i < 3; i++)
    client_bufpool_put(bp, buf[i], 2 * MiB); /* the third does not fit */
  for (int i = 0; i < 3; i++) {
    buf[i] = client_bufpool_get(bp, &resident);
    fresh += resident == 0;
  }
  ASSERT_EQ(fresh, 1);
  for (int i = 0; i < 3; i++)
    client_bufpool_put(bp, buf[i], 0);
  client_bufpool_free(bp);
}

UNIT_MAIN(UNIT_CASE(reuse_keeps_the_last_chunk), UNIT_CASE(put_trims_too),
          UNIT_CASE(idle_memory_is_bounded))
