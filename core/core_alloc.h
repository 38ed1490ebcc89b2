/* core_alloc.h: allocation wrappers.
 *
 * Fixed-size structures use core_malloc() and friends, which abort on
 * out-of-memory: there is nothing sensible to do when a 200-byte struct cannot
 * be had. Sizes that a client chooses go through core_try_malloc(), which
 * returns NULL so the caller can refuse the request instead.
 */
#ifndef CORE_ALLOC_H
#define CORE_ALLOC_H

#include <stddef.h>

void *core_malloc(size_t size);
void *core_calloc(size_t n, size_t size);
void *core_realloc(void *ptr, size_t size);
char *core_strdup(const char *s);
char *core_strndup(const char *s, size_t n);
/* Returns a malloc'ed printf-formatted string; aborts on OOM. */
char *core_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* May return NULL: for client-sized allocations. */
void *core_try_malloc(size_t size);
void core_free(void *ptr);

#define core_new(type) ((type *)core_calloc(1, sizeof(type)))

#endif
