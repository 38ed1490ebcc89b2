#include "core/core_map.h"

#include "core/core_alloc.h"

#include <stdint.h>
#include <string.h>

static char tombstone;
#define TOMBSTONE (&tombstone)

/* FNV-1a: short keys, good enough spread, no allocation. */
static size_t hash_str(const char *s)
{
  uint64_t h = 1469598103934665603ULL;
  while (*s) {
    h ^= (unsigned char)*s++;
    h *= 1099511628211ULL;
  }
  return (size_t)h;
}

void core_map_init(struct core_map *m)
{
  memset(m, 0, sizeof(*m));
}

void core_map_free(struct core_map *m)
{
  for (size_t i = 0; i < m->cap; i++) {
    if (m->slots[i].key && m->slots[i].key != TOMBSTONE)
      core_free(m->slots[i].key);
  }
  core_free(m->slots);
  memset(m, 0, sizeof(*m));
}

static struct core_map_slot *find(const struct core_map *m, const char *key, size_t h)
{
  if (m->cap == 0)
    return NULL;
  size_t mask = m->cap - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    struct core_map_slot *s = &m->slots[i];
    if (s->key == NULL)
      return NULL;
    if (s->key != TOMBSTONE && s->hash == h && strcmp(s->key, key) == 0)
      return s;
  }
}

void *core_map_get(const struct core_map *m, const char *key)
{
  struct core_map_slot *s = find(m, key, hash_str(key));
  return s ? s->value : NULL;
}

static void grow(struct core_map *m)
{
  size_t ncap = m->cap ? m->cap * 2 : 16;
  while (m->count * 2 >= ncap)
    ncap *= 2;
  struct core_map_slot *old = m->slots;
  size_t ocap = m->cap;
  m->slots = core_calloc(ncap, sizeof(*m->slots));
  m->cap = ncap;
  m->used = m->count;
  for (size_t i = 0; i < ocap; i++) {
    if (old[i].key == NULL || old[i].key == TOMBSTONE)
      continue;
    size_t j = old[i].hash & (ncap - 1);
    while (m->slots[j].key)
      j = (j + 1) & (ncap - 1);
    m->slots[j] = old[i];
  }
  core_free(old);
}

void *core_map_put(struct core_map *m, const char *key, void *value)
{
  size_t h = hash_str(key);
  struct core_map_slot *s = find(m, key, h);
  if (s) {
    void *prev = s->value;
    s->value = value;
    return prev;
  }
  if ((m->used + 1) * 4 >= m->cap * 3)
    grow(m);
  size_t mask = m->cap - 1;
  size_t i = h & mask;
  while (m->slots[i].key && m->slots[i].key != TOMBSTONE)
    i = (i + 1) & mask;
  if (m->slots[i].key == NULL)
    m->used++;
  m->slots[i].key = core_strdup(key);
  m->slots[i].value = value;
  m->slots[i].hash = h;
  m->count++;
  return NULL;
}

void *core_map_del(struct core_map *m, const char *key)
{
  struct core_map_slot *s = find(m, key, hash_str(key));
  if (s == NULL)
    return NULL;
  void *v = s->value;
  core_free(s->key);
  s->key = TOMBSTONE;
  s->value = NULL;
  m->count--;
  return v;
}

int core_map_next(const struct core_map *m, size_t *iter, const char **key, void **value)
{
  while (*iter < m->cap) {
    struct core_map_slot *s = &m->slots[(*iter)++];
    if (s->key && s->key != TOMBSTONE) {
      if (key)
        *key = s->key;
      if (value)
        *value = s->value;
      return 1;
    }
  }
  return 0;
}
