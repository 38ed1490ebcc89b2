/* format_sparse.c: the GNU sparse 1.0 map of a pax entry (format_sparse.h). */
#include "format/format_sparse.h"

#include "core/core_alloc.h"
#include "core/core_error.h"

#include <string.h>

/* Offsets and lengths are file positions: below 2^63, like off_t. */
#define NUMBER_MAX_DIGITS 19

void format_sparse_init(struct format_sparse_map *m)
{
  memset(m, 0, sizeof(*m));
}

void format_sparse_free(struct format_sparse_map *m)
{
  core_free(m->b);
  memset(m, 0, sizeof(*m));
}

/* One complete number: the count, or half a block. */
static int take(struct format_sparse_map *m, uint64_t v)
{
  if (m->numbers == 0) {
    if (v > FORMAT_SPARSE_MAX_BLOCKS)
      return CORE_EFORMAT;
    m->count = v;
    /* the count is bounded: the array is allocated once */
    if (v > 0)
      m->b = core_calloc((size_t)v, sizeof(*m->b));
  } else {
    uint64_t k = (m->numbers - 1) / 2;
    if ((m->numbers - 1) % 2 == 0) {
      m->b[k].off = v;
    } else {
      m->b[k].len = v;
      m->n = (size_t)k + 1;
    }
  }
  m->numbers++;
  if (m->numbers == 1 + 2 * m->count)
    m->done = 1;
  return 0;
}

int format_sparse_feed(struct format_sparse_map *m, const uint8_t *p, size_t len)
{
  for (size_t i = 0; i < len && !m->done; i++) {
    uint8_t c = p[i];
    if (c == '\n') {
      if (m->digits == 0 || take(m, m->cur) < 0)
        return CORE_EFORMAT;
      m->cur = 0;
      m->digits = 0;
      m->used += 1;
      continue;
    }
    if (c < '0' || c > '9' || m->digits == NUMBER_MAX_DIGITS)
      return CORE_EFORMAT;
    m->cur = m->cur * 10 + (uint64_t)(c - '0');
    m->digits++;
    m->used += 1;
  }
  return m->done ? 1 : 0;
}

int format_sparse_check(const struct format_sparse_map *m, uint64_t size, uint64_t data_len,
                        uint64_t *map_bytes)
{
  uint64_t end = 0, sum = 0, padded;
  if (!m->done || m->n != m->count)
    return CORE_EFORMAT;
  for (size_t i = 0; i < m->n; i++) {
    const struct format_sparse_block *b = &m->b[i];
    /* file positions stay below 2^63; then no sum below overflows (the
     * blocks do not overlap, so their lengths add up to at most `size`) */
    if (b->off > INT64_MAX || b->len > INT64_MAX - b->off || b->off < end ||
        b->off + b->len > size)
      return CORE_EFORMAT;
    end = b->off + b->len;
    sum += b->len;
  }
  padded = (m->used + 511) / 512 * 512;
  if (padded > data_len || data_len - padded != sum)
    return CORE_EFORMAT;
  *map_bytes = padded;
  return 0;
}
