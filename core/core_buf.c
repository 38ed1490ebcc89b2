#include "core/core_buf.h"

#include "core/core_alloc.h"
#include "core/core_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

void core_buf_init(struct core_buf *b, size_t max)
{
  b->base = NULL;
  b->len = 0;
  b->cap = 0;
  b->max = max;
}

void core_buf_free(struct core_buf *b)
{
  core_free(b->base);
  b->base = NULL;
  b->len = b->cap = 0;
}

void core_buf_reset(struct core_buf *b)
{
  b->len = 0;
  if (b->base)
    b->base[0] = '\0';
}

int core_buf_reserve(struct core_buf *b, size_t len)
{
  if (len > b->max || b->len > b->max - len)
    return CORE_ETOOBIG;
  size_t need = b->len + len + 1;
  if (need <= b->cap)
    return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need)
    cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  if (cap > b->max + 1)
    cap = b->max + 1;
  char *p = core_try_realloc(b->base, cap);
  if (p == NULL)
    return UV_ENOMEM;
  b->base = p;
  b->cap = cap;
  return 0;
}

void core_buf_adopt(struct core_buf *b, char *mem, size_t cap)
{
  b->base = mem;
  b->base[0] = '\0';
  b->len = 0;
  b->cap = cap;
}

int core_buf_append(struct core_buf *b, const void *data, size_t len)
{
  int rc = core_buf_reserve(b, len);
  if (rc)
    return rc;
  if (len)
    memcpy(b->base + b->len, data, len);
  b->len += len;
  b->base[b->len] = '\0';
  return 0;
}

int core_buf_append_str(struct core_buf *b, const char *s)
{
  return core_buf_append(b, s, strlen(s));
}

int core_buf_vprintf(struct core_buf *b, const char *fmt, va_list ap)
{
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0)
    return CORE_EPARSE;
  int rc = core_buf_reserve(b, (size_t)n);
  if (rc)
    return rc;
  vsnprintf(b->base + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
  return 0;
}

int core_buf_printf(struct core_buf *b, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int rc = core_buf_vprintf(b, fmt, ap);
  va_end(ap);
  return rc;
}

char *core_buf_steal(struct core_buf *b, size_t *len)
{
  char *p = b->base;
  if (len)
    *len = b->len;
  if (p == NULL)
    p = core_strdup("");
  b->base = NULL;
  b->len = b->cap = 0;
  return p;
}
