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
/* realloc() that may fail (NULL, `ptr` untouched): for growing buffers. */
void *core_try_realloc(void *ptr, size_t size);
/* posix_memalign() that may fail: 0 or UV_ENOMEM. */
int core_try_memalign(void **out, size_t align, size_t size);
void core_free(void *ptr);

/* Allocation-failure injection for the failmalloc tests (test builds only:
 * core_alloc.c is compiled with CAIRN_FAULT_INJECTION when CAIRN_SANITIZE is
 * on). Only core_try_malloc() can fail: the core_malloc() family aborts by
 * design, so these are the allocations whose failure a request must survive.
 *
 * core_alloc_fault_arm(n): the n-th core_try_*() call from now on (any
 * thread; 1-based) returns NULL, and so does nothing else; n == 0 disarms.
 * Also resets the call counter. Returns 0, or -ENOTSUP outside test builds.
 * core_alloc_fault_calls(): core_try_*() calls since the last arm. */
int core_alloc_fault_arm(unsigned long n);
unsigned long core_alloc_fault_calls(void);

#define core_new(type) ((type *)core_calloc(1, sizeof(type)))

#endif
