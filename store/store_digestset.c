#include "store/store_digestset.h"

#include "core/core_alloc.h"
#include "core/core_error.h"

#include <string.h>

void store_digestset_init(struct store_digestset *s, size_t max)
{
  memset(s, 0, sizeof(*s));
  s->max = max;
}

void store_digestset_free(struct store_digestset *s)
{
  core_free(s->slots);
  memset(s, 0, sizeof(*s));
}

static size_t slot_of(const uint8_t d[32], size_t cap)
{
  uint64_t h;
  memcpy(&h, d, sizeof(h));
  return (size_t)h & (cap - 1);
}

static struct store_digest_entry *find(const struct store_digestset *s, const uint8_t d[32])
{
  if (s->cap == 0)
    return NULL;
  for (size_t i = slot_of(d, s->cap);; i = (i + 1) & (s->cap - 1)) {
    struct store_digest_entry *e = &s->slots[i];
    if (!e->used)
      return NULL;
    if (memcmp(e->digest, d, 32) == 0)
      return e;
  }
}

static void grow(struct store_digestset *s)
{
  size_t ncap = s->cap ? s->cap * 2 : 1024;
  struct store_digest_entry *old = s->slots;
  size_t ocap = s->cap;
  s->slots = core_calloc(ncap, sizeof(*s->slots));
  s->cap = ncap;
  for (size_t i = 0; i < ocap; i++) {
    if (!old[i].used)
      continue;
    size_t j = slot_of(old[i].digest, ncap);
    while (s->slots[j].used)
      j = (j + 1) & (ncap - 1);
    s->slots[j] = old[i];
  }
  core_free(old);
}

int store_digestset_add(struct store_digestset *s, const uint8_t digest[32], uint32_t size)
{
  struct store_digest_entry *e = find(s, digest);
  if (e) {
    e->size = size;
    return 0;
  }
  if (s->count >= s->max)
    return CORE_ETOOBIG;
  if ((s->count + 1) * 4 >= s->cap * 3)
    grow(s);
  size_t i = slot_of(digest, s->cap);
  while (s->slots[i].used)
    i = (i + 1) & (s->cap - 1);
  memcpy(s->slots[i].digest, digest, 32);
  s->slots[i].size = size;
  s->slots[i].used = 1;
  s->count++;
  return 0;
}

int store_digestset_get(const struct store_digestset *s, const uint8_t digest[32],
                        uint32_t *size)
{
  const struct store_digest_entry *e = find(s, digest);
  if (e == NULL)
    return 0;
  if (size)
    *size = e->size;
  return 1;
}
