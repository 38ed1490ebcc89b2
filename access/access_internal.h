/* access_internal.h: helpers shared by the access module's files. */
#ifndef ACCESS_INTERNAL_H
#define ACCESS_INTERNAL_H

#include "core/core_map.h"

#include <stddef.h>

/* A JSON object of strings (token.shadow, shadow.json) as a map of owned
 * strings. A missing file is an empty map. `digest` may be NULL. */
int access__json_map_load(const char *path, struct core_map *m, char *digest, char *err,
                          size_t errlen);
/* Writes the map (keys sorted) atomically with mode 0600. */
int access__json_map_save(const char *path, const struct core_map *m);
/* Frees the values and the map. */
void access__json_map_free(struct core_map *m);

#endif
