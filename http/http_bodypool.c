/* http_bodypool.c: recycled memory for large request bodies (see the header). */
#include "http/http_bodypool.h"

#include <stdlib.h>

#define PAGE 4096u

void http_bodypool_init(struct http_bodypool *p, size_t idle_max)
{
  for (int i = 0; i < HTTP_BODYPOOL_CLASSES; i++)
    p->free[i] = NULL;
  p->idle = 0;
  p->idle_max = idle_max;
}

void http_bodypool_free(struct http_bodypool *p)
{
  for (int i = 0; i < HTTP_BODYPOOL_CLASSES; i++) {
    while (p->free[i]) {
      void *next = *(void **)p->free[i];
      free(p->free[i]);
      p->free[i] = next;
    }
  }
  p->idle = 0;
}

/* Class k holds capacities of (k + 1) MiB. */
static size_t class_of(size_t len)
{
  return (len + HTTP_BODYPOOL_CLASS - 1) / HTTP_BODYPOOL_CLASS - 1;
}

void *http_bodypool_get(struct http_bodypool *p, size_t len, size_t *cap)
{
  size_t k = class_of(len);
  void *buf;
  if (k < HTTP_BODYPOOL_CLASSES && p->free[k] != NULL) {
    buf = p->free[k];
    p->free[k] = *(void **)buf;
    *cap = (k + 1) * HTTP_BODYPOOL_CLASS;
    p->idle -= *cap;
    return buf;
  }
  *cap = k < HTTP_BODYPOOL_CLASSES ? (k + 1) * HTTP_BODYPOOL_CLASS : len;
  if (posix_memalign(&buf, PAGE, *cap) != 0)
    return NULL;
  return buf;
}

void http_bodypool_put(struct http_bodypool *p, void *buf, size_t cap)
{
  size_t k = class_of(cap);
  if (k >= HTTP_BODYPOOL_CLASSES || cap != (k + 1) * HTTP_BODYPOOL_CLASS ||
      p->idle + cap > p->idle_max) {
    free(buf);
    return;
  }
  *(void **)buf = p->free[k];
  p->free[k] = buf;
  p->idle += cap;
}
