/* core_map.h: a string-keyed hash map (open addressing, linear probing).
 *
 * Used for lookups on the request path (datastores by name, sessions by id),
 * so a lookup is one hash of the key and, almost always, one string compare.
 * Keys are copied; values are borrowed pointers the caller owns. Not
 * thread-safe: each map belongs to one thread (the loop) or is guarded by its
 * owner.
 */
#ifndef CORE_MAP_H
#define CORE_MAP_H

#include <stddef.h>

struct core_map_slot {
  char *key;      /* owned; NULL: empty; CORE_MAP_TOMBSTONE: deleted */
  void *value;
  size_t hash;
};

struct core_map {
  struct core_map_slot *slots;
  size_t cap;     /* power of two, or 0 */
  size_t count;   /* live entries */
  size_t used;    /* live entries + tombstones */
};

void core_map_init(struct core_map *m);
/* Frees the keys and the table; values are the caller's. */
void core_map_free(struct core_map *m);
void *core_map_get(const struct core_map *m, const char *key);
/* Inserts or replaces; returns the previous value or NULL. */
void *core_map_put(struct core_map *m, const char *key, void *value);
/* Removes; returns the value or NULL. */
void *core_map_del(struct core_map *m, const char *key);

/* Iteration: for (size_t i = 0; core_map_next(m, &i, &k, &v);) ...
 * The map must not change during an iteration except through core_map_del of
 * the current key. */
int core_map_next(const struct core_map *m, size_t *iter, const char **key, void **value);

#endif
