#include "core/core_alloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void *core_try_malloc(size_t size)
{
  return malloc(size ? size : 1);
}

void core_free(void *ptr)
{
  free(ptr);
}
