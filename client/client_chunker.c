/* client_chunker.c: gear and buzhash content-defined chunkers. */
#include "client/client_chunker.h"

#include "core/core_error.h"

#include <string.h>

/* The table seed: fixed forever, since it decides every chunk boundary. */
#define CHUNKER_SEED UINT64_C(0x636169726e2d6364) /* "cairn-cd" */

static uint64_t splitmix64(uint64_t *state)
{
  uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static inline uint32_t rotl32(uint32_t v, unsigned n)
{
  return (v << n) | (v >> (32 - n));
}

int client_chunker_init(struct client_chunker *c, enum client_chunker_algo algo,
                        size_t min, size_t avg, size_t max)
{
  uint64_t state = CHUNKER_SEED;
  size_t i;

  if (min == 0 && avg == 0 && max == 0) {
    min = CLIENT_CHUNK_MIN;
    avg = CLIENT_CHUNK_AVG;
    max = CLIENT_CHUNK_MAX;
  }
  if (min <= CLIENT_CHUNKER_WINDOW || avg <= min || max <= avg)
    return CORE_EINVAL;
  if (algo != CLIENT_CHUNKER_GEAR && algo != CLIENT_CHUNKER_BUZHASH)
    return CORE_EINVAL;

  memset(c, 0, sizeof(*c));
  c->algo = algo;
  c->min = min;
  c->max = max;
  /* Past `min` every byte is a boundary with probability p, so the expected
   * size is min + 1/p (a little less once the `max` cut applies: 3.98 MiB for
   * the defaults). The gear hash compares all 64 bits (its top bits mix the
   * whole window); buzhash has 32. */
  if (algo == CLIENT_CHUNKER_GEAR)
    c->threshold = UINT64_MAX / (uint64_t)(avg - min);
  else
    c->threshold = (uint64_t)UINT32_MAX / (uint64_t)(avg - min);
  for (i = 0; i < 256; i++) {
    uint64_t v = splitmix64(&state);
    c->table[i] = algo == CLIENT_CHUNKER_GEAR ? v : (v >> 32);
  }
  return 0;
}

void client_chunker_reset(struct client_chunker *c)
{
  c->pos = 0;
  c->h = 0;
}

/* Keeps the last 64 bytes of everything consumed, for buzhash's out bytes. */
static void remember_tail(struct client_chunker *c, const uint8_t *p, size_t n)
{
  if (n >= CLIENT_CHUNKER_WINDOW) {
    memcpy(c->tail, p + n - CLIENT_CHUNKER_WINDOW, CLIENT_CHUNKER_WINDOW);
  } else if (n > 0) {
    memmove(c->tail, c->tail + n, CLIENT_CHUNKER_WINDOW - n);
    memcpy(c->tail + CLIENT_CHUNKER_WINDOW - n, p, n);
  }
}

/* Both scanners share the phases of a chunk, by its length n so far:
 *   n <  min - 64   skipped (cannot influence any allowed boundary);
 *   n <  min        hashed only (fills the window);
 *   n <  max        hashed and tested;
 *   n == max        forced boundary. */

static size_t gear_scan(struct client_chunker *c, const uint8_t *p, size_t len)
{
  const uint64_t *g = c->table;
  const uint64_t t = c->threshold;
  uint64_t h = c->h;
  size_t n = c->pos, i = 0;

  if (n < c->min - CLIENT_CHUNKER_WINDOW) {
    size_t skip = c->min - CLIENT_CHUNKER_WINDOW - n;
    if (skip >= len) {
      c->pos = n + len;
      return 0;
    }
    i = skip;
    n += skip;
    h = 0;
  }
  if (n < c->min) {
    size_t end = i + (c->min - n);
    if (end > len)
      end = len;
    for (; i < end; i++)
      h = (h << 1) + g[p[i]];
    n = c->pos + i; /* pos counted from the start of this buffer */
    if (n < c->min) {
      c->h = h;
      c->pos = n;
      return 0;
    }
    if (h < t) {
      client_chunker_reset(c);
      return i;
    }
  }
  {
    size_t start = i;
    size_t end = i + (c->max - n);
    if (end > len)
      end = len;
    /* Four bytes a step. The hash after byte k of a step is (h << k) plus a
     * sum of the step's table entries that does not depend on h, so the
     * chain from one step to the next is one shift and one add instead of
     * four of each: the same hashes, about 1.25x faster. */
    while (i + 4 <= end) {
      uint64_t s1 = g[p[i]];
      uint64_t s2 = (s1 << 1) + g[p[i + 1]];
      uint64_t s3 = (s2 << 1) + g[p[i + 2]];
      uint64_t s4 = (s3 << 1) + g[p[i + 3]];
      uint64_t h1 = (h << 1) + s1, h2 = (h << 2) + s2, h3 = (h << 3) + s3;
      uint64_t h4 = (h << 4) + s4;
      if ((h1 < t) | (h2 < t) | (h3 < t) | (h4 < t)) {
        client_chunker_reset(c);
        return i + (h1 < t ? 1 : h2 < t ? 2 : h3 < t ? 3 : 4);
      }
      h = h4;
      i += 4;
    }
    for (; i < end; i++) {
      h = (h << 1) + g[p[i]];
      if (h < t) {
        client_chunker_reset(c);
        return i + 1;
      }
    }
    n += i - start;
  }
  if (n == c->max) {
    client_chunker_reset(c);
    return i;
  }
  c->h = h;
  c->pos = n;
  return 0;
}

static size_t buzhash_scan(struct client_chunker *c, const uint8_t *p, size_t len)
{
  const uint64_t *tb = c->table;
  const uint32_t t = (uint32_t)c->threshold;
  uint32_t h = (uint32_t)c->h;
  size_t n = c->pos, i = 0, ret = 0;

  if (n < c->min - CLIENT_CHUNKER_WINDOW) {
    size_t skip = c->min - CLIENT_CHUNKER_WINDOW - n;
    if (skip >= len) {
      c->pos = n + len;
      remember_tail(c, p, len);
      return 0;
    }
    i = skip;
    n += skip;
    h = 0;
  }
  if (n < c->min) {
    /* Starting from 0, 64 roll-ins without roll-outs give the exact hash of
     * the first window. */
    size_t end = i + (c->min - n);
    if (end > len)
      end = len;
    for (; i < end; i++)
      h = rotl32(h, 1) ^ (uint32_t)tb[p[i]];
    n = c->pos + i;
    if (n < c->min)
      goto more;
    if (h < t) {
      ret = i;
      goto found;
    }
  }
  {
    size_t start = i;
    size_t end = i + (c->max - n);
    if (end > len)
      end = len;
    /* The byte leaving the window is in `tail` for the first 64 positions of
     * the buffer and in `p` after that. */
    for (; i < end && i < CLIENT_CHUNKER_WINDOW; i++) {
      h = rotl32(h, 1) ^ (uint32_t)tb[c->tail[i]] ^ (uint32_t)tb[p[i]];
      if (h < t) {
        ret = i + 1;
        goto found;
      }
    }
    for (; i < end; i++) {
      h = rotl32(h, 1) ^ (uint32_t)tb[p[i - CLIENT_CHUNKER_WINDOW]] ^ (uint32_t)tb[p[i]];
      if (h < t) {
        ret = i + 1;
        goto found;
      }
    }
    n += i - start;
  }
  if (n == c->max) {
    ret = i;
    goto found;
  }
more:
  c->h = h;
  c->pos = n;
  remember_tail(c, p, len);
  return 0;
found:
  client_chunker_reset(c);
  remember_tail(c, p, ret);
  return ret;
}

size_t client_chunker_scan(struct client_chunker *c, const void *data, size_t len)
{
  if (len == 0)
    return 0;
  if (c->algo == CLIENT_CHUNKER_BUZHASH)
    return buzhash_scan(c, data, len);
  return gear_scan(c, data, len);
}
