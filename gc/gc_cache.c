#include "gc/gc_cache.h"

#include "core/core_alloc.h"
#include "core/core_error.h"

#include <string.h>

/* Digest bytes as a hash. Bytes 0..1 are the chunk's prefix directory, which
 * GC walks in order, so take the set index from later bytes. */
static uint64_t dhash(const uint8_t d[32])
{
  uint64_t h;
  memcpy(&h, d + 8, sizeof(h));
  return h;
}

void gc_cache_init(struct gc_cache *c, size_t capacity)
{
  memset(c, 0, sizeof(*c));
  for (int i = 0; i < GC_CACHE_LOCKS; i++)
    pthread_mutex_init(&c->locks[i], NULL);
  if (capacity > GC_CACHE_MAX_CAPACITY)
    capacity = GC_CACHE_MAX_CAPACITY;
  size_t sets = capacity / GC_CACHE_WAYS;
  if (sets == 0)
    return;
  size_t p = 1;
  while (p * 2 <= sets)
    p *= 2;
  c->nsets = p;
  c->digests = core_calloc(p * GC_CACHE_WAYS, 32);
  c->kept = core_calloc(p * GC_CACHE_WAYS, sizeof(*c->kept));
  c->fill = core_calloc(p, 1);
  c->victim = core_calloc(p, 1);
}

void gc_cache_free(struct gc_cache *c)
{
  core_free(c->digests);
  core_free(c->kept);
  core_free(c->fill);
  core_free(c->victim);
  for (int i = 0; i < GC_CACHE_LOCKS; i++)
    pthread_mutex_destroy(&c->locks[i]);
  memset(c, 0, sizeof(*c));
}

static size_t set_of(const struct gc_cache *c, const uint8_t digest[32])
{
  return (size_t)(dhash(digest) & (c->nsets - 1));
}

/* The way of `digest` in `set`, or -1. Under the set's lock, or after the
 * last add. */
static int find_way(const struct gc_cache *c, size_t set, const uint8_t digest[32])
{
  const uint8_t(*ways)[32] = c->digests + set * GC_CACHE_WAYS;
  unsigned fill = c->fill[set];
  for (unsigned i = 0; i < fill; i++)
    if (memcmp(ways[i], digest, 32) == 0)
      return (int)i;
  return -1;
}

int gc_cache_test_and_add(struct gc_cache *c, const uint8_t digest[32])
{
  if (c->nsets == 0) {
    atomic_fetch_add_explicit(&c->misses, 1, memory_order_relaxed);
    return 0;
  }
  size_t set = set_of(c, digest);
  uint8_t (*ways)[32] = c->digests + set * GC_CACHE_WAYS;
  pthread_mutex_t *m = &c->locks[set % GC_CACHE_LOCKS];
  pthread_mutex_lock(m);
  if (find_way(c, set, digest) >= 0) {
    pthread_mutex_unlock(m);
    atomic_fetch_add_explicit(&c->hits, 1, memory_order_relaxed);
    return 1;
  }
  unsigned fill = c->fill[set], w;
  if (fill < GC_CACHE_WAYS) {
    w = fill;
    c->fill[set] = (uint8_t)(fill + 1);
  } else {
    w = c->victim[set];
    c->victim[set] = (uint8_t)((w + 1) % GC_CACHE_WAYS);
  }
  memcpy(ways[w], digest, 32);
  c->kept[set * GC_CACHE_WAYS + w] = 0;
  pthread_mutex_unlock(m);
  atomic_fetch_add_explicit(&c->misses, 1, memory_order_relaxed);
  return 0;
}

void gc_cache_set_kept(struct gc_cache *c, const uint8_t digest[32], uint64_t size)
{
  if (c->nsets == 0 || size >= UINT32_MAX)
    return; /* no cache, or a size no chunk has: the sweep stats it */
  size_t set = set_of(c, digest);
  pthread_mutex_t *m = &c->locks[set % GC_CACHE_LOCKS];
  pthread_mutex_lock(m);
  int w = find_way(c, set, digest);
  if (w >= 0)
    c->kept[set * GC_CACHE_WAYS + (size_t)w] = (uint32_t)size + 1;
  pthread_mutex_unlock(m);
}

int gc_cache_kept_size(const struct gc_cache *c, const uint8_t digest[32], uint64_t *size)
{
  if (c->nsets == 0)
    return 0;
  size_t set = set_of(c, digest);
  int w = find_way(c, set, digest);
  if (w < 0)
    return 0;
  uint32_t k = c->kept[set * GC_CACHE_WAYS + (size_t)w];
  if (k == 0)
    return 0;
  *size = k - 1;
  return 1;
}

/* ---- growing set -------------------------------------------------------- */

void gc_digest_set_init(struct gc_digest_set *s, size_t max)
{
  memset(s, 0, sizeof(*s));
  s->max = max;
}

void gc_digest_set_free(struct gc_digest_set *s)
{
  core_free(s->slots);
  core_free(s->used);
  memset(s, 0, sizeof(*s));
}

static size_t find_slot(const struct gc_digest_set *s, const uint8_t d[32], int *found)
{
  size_t mask = s->cap - 1;
  size_t i = (size_t)dhash(d) & mask;
  for (;;) {
    if (!s->used[i]) {
      *found = 0;
      return i;
    }
    if (memcmp(s->slots[i], d, 32) == 0) {
      *found = 1;
      return i;
    }
    i = (i + 1) & mask;
  }
}

int gc_digest_set_has(const struct gc_digest_set *s, const uint8_t digest[32])
{
  int found;
  if (s->cap == 0)
    return 0;
  find_slot(s, digest, &found);
  return found;
}

static void grow(struct gc_digest_set *s)
{
  size_t ncap = s->cap ? s->cap * 2 : 1024;
  struct gc_digest_set n = {0};
  n.slots = core_calloc(ncap, 32);
  n.used = core_calloc(ncap, 1);
  n.cap = ncap;
  for (size_t i = 0; i < s->cap; i++) {
    if (!s->used[i])
      continue;
    int found;
    size_t j = find_slot(&n, s->slots[i], &found);
    memcpy(n.slots[j], s->slots[i], 32);
    n.used[j] = 1;
  }
  core_free(s->slots);
  core_free(s->used);
  s->slots = n.slots;
  s->used = n.used;
  s->cap = ncap;
}

int gc_digest_set_add(struct gc_digest_set *s, const uint8_t digest[32])
{
  int found;
  if (s->cap && find_slot(s, digest, &found) < s->cap && found)
    return 0;
  if (s->count >= s->max)
    return CORE_ETOOBIG;
  if ((s->count + 1) * 4 > s->cap * 3) /* keep the load under 3/4 */
    grow(s);
  size_t i = find_slot(s, digest, &found);
  memcpy(s->slots[i], digest, 32);
  s->used[i] = 1;
  s->count++;
  return 1;
}
