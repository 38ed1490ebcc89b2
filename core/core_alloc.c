#include "core/core_alloc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static void *oom(size_t size)
{
  fprintf(stderr, "cairn: out of memory allocating %zu bytes\n", size);
  abort();
}

void *core_malloc(size_t size)
{
  void *p = malloc(size ? size : 1);
  return p ? p : oom(size);
}

void *core_calloc(size_t n, size_t size)
{
  void *p = calloc(n ? n : 1, size ? size : 1);
  return p ? p : oom(n * size);
}

void *core_realloc(void *ptr, size_t size)
{
  void *p = realloc(ptr, size ? size : 1);
  return p ? p : oom(size);
}

char *core_strdup(const char *s)
{
  return core_strndup(s, strlen(s));
}

char *core_strndup(const char *s, size_t n)
{
  char *p = core_malloc(n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

char *core_asprintf(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    abort();
  char *p = core_malloc((size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(p, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return p;
}

#ifdef CAIRN_FAULT_INJECTION
/* Process-wide on purpose, like uv_replace_allocator(): a test arms it, then
 * drives a request through the real code (loop thread and pool threads). */
static atomic_ulong fault_calls;
static atomic_ulong fault_nth;

int core_alloc_fault_arm(unsigned long n)
{
  atomic_store(&fault_nth, 0);
  atomic_store(&fault_calls, 0);
  atomic_store(&fault_nth, n);
  return 0;
}

unsigned long core_alloc_fault_calls(void)
{
  return atomic_load(&fault_calls);
}

static int fault_now(void)
{
  unsigned long call = atomic_fetch_add(&fault_calls, 1) + 1;
  return call == atomic_load(&fault_nth);
}
#else
int core_alloc_fault_arm(unsigned long n)
{
  (void)n;
  return -ENOTSUP;
}

unsigned long core_alloc_fault_calls(void)
{
  return 0;
}

static int fault_now(void)
{
  return 0;
}
#endif

void *core_try_malloc(size_t size)
{
  if (fault_now())
    return NULL;
  return malloc(size ? size : 1);
}

void *core_try_realloc(void *ptr, size_t size)
{
  if (fault_now())
    return NULL;
  return realloc(ptr, size ? size : 1);
}

int core_try_memalign(void **out, size_t align, size_t size)
{
  if (fault_now() || posix_memalign(out, align, size ? size : 1) != 0)
    return UV_ENOMEM;
  return 0;
}

void core_free(void *ptr)
{
  free(ptr);
}
