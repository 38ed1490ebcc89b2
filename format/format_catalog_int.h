/* format_catalog_int.h: what the catalog's writer (format_catalog_write.c) and
 * reader (format_catalog_read.c) share: the magic, little-endian and varint
 * coding, and the bounded cursor over untrusted bytes. Not installed; the
 * public interface is format_catalog.h. */
#ifndef FORMAT_CATALOG_INT_H
#define FORMAT_CATALOG_INT_H

#include "core/core_buf.h"

#include <stddef.h>
#include <stdint.h>

#define FCAT_MAGIC "CAIRNCT1" /* 8 bytes, no NUL on disk */

#define MAX_ENTRIES ((uint64_t)1 << 32)

static inline void put_le32(uint8_t *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t get_le32(const uint8_t *p)
{
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static inline uint64_t get_le64(const uint8_t *p)
{
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static inline int put_var(struct core_buf *b, uint64_t v)
{
  uint8_t tmp[10];
  size_t n = 0;
  do {
    uint8_t byte = (uint8_t)(v & 0x7f);
    v >>= 7;
    tmp[n++] = (uint8_t)(byte | (v ? 0x80 : 0));
  } while (v);
  return core_buf_append(b, tmp, n);
}

static inline uint64_t zigzag(int64_t v)
{
  return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int64_t unzigzag(uint64_t v)
{
  return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* A cursor over untrusted bytes: every read is bounded. */
struct rd {
  const uint8_t *p, *end;
  int bad;
};

static inline uint64_t get_var(struct rd *r)
{
  uint64_t v = 0;
  for (unsigned shift = 0; shift < 64; shift += 7) {
    if (r->p >= r->end) {
      r->bad = 1;
      return 0;
    }
    uint8_t byte = *r->p++;
    if (shift == 63 && byte > 1) {
      r->bad = 1;
      return 0;
    }
    v |= (uint64_t)(byte & 0x7f) << shift;
    if (!(byte & 0x80))
      return v;
  }
  r->bad = 1;
  return 0;
}

static inline uint32_t get_var32(struct rd *r)
{
  uint64_t v = get_var(r);
  if (v > UINT32_MAX)
    r->bad = 1;
  return (uint32_t)v;
}

#endif
