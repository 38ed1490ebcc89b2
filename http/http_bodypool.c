/* http_bodypool.c: recycled memory for large request bodies (see the header). */
#include "http/http_bodypool.h"

#include "core/core_alloc.h"

#include <stdlib.h>

#define PAGE 4096u

void http_bodypool_init(struct http_bodypool *p, size_t idle_max)
{
  pthread_mutex_init(&p->mutex, NULL);
  for (int i = 0; i < HTTP_BODYPOOL_CLASSES; i++)
    p->free[i] = NULL;
  p->idle = 0;
  p->idle_max = idle_max;
  p->gets = p->gets_at_trim = 0;
}

/* Caller holds the mutex (or is the only user). */
static size_t free_idle(struct http_bodypool *p)
{
  size_t freed = p->idle;
  for (int i = 0; i < HTTP_BODYPOOL_CLASSES; i++) {
    while (p->free[i]) {
      void *next = *(void **)p->free[i];
      free(p->free[i]);
      p->free[i] = next;
    }
  }
  p->idle = 0;
  return freed;
}

void http_bodypool_free(struct http_bodypool *p)
{
  free_idle(p);
  pthread_mutex_destroy(&p->mutex);
}

size_t http_bodypool_trim(struct http_bodypool *p)
{
  size_t freed = 0;
  pthread_mutex_lock(&p->mutex);
  if (p->gets == p->gets_at_trim)
    freed = free_idle(p);
  p->gets_at_trim = p->gets;
  pthread_mutex_unlock(&p->mutex);
  return freed;
}

/* Class k holds capacities of (k + 1) MiB. */
static size_t class_of(size_t len)
{
  return (len + HTTP_BODYPOOL_CLASS - 1) / HTTP_BODYPOOL_CLASS - 1;
}

void *http_bodypool_get(struct http_bodypool *p, size_t len, size_t *cap)
{
  size_t k = class_of(len);
  void *buf = NULL;
  /* Bodies of one kind vary in size (compressed chunks), so an idle buffer
   * up to HTTP_BODYPOOL_REACH classes larger is taken too. */
  if (k < HTTP_BODYPOOL_CLASSES) {
    pthread_mutex_lock(&p->mutex);
    p->gets++;
    for (size_t c = k; c < HTTP_BODYPOOL_CLASSES && c <= k + HTTP_BODYPOOL_REACH; c++) {
      if ((buf = p->free[c]) != NULL) {
        p->free[c] = *(void **)buf;
        *cap = (c + 1) * HTTP_BODYPOOL_CLASS;
        p->idle -= *cap;
        break;
      }
    }
    pthread_mutex_unlock(&p->mutex);
  }
  if (buf != NULL)
    return buf;
  *cap = k < HTTP_BODYPOOL_CLASSES ? (k + 1) * HTTP_BODYPOOL_CLASS : len;
  if (core_try_memalign(&buf, PAGE, *cap) < 0)
    return NULL;
  return buf;
}

void http_bodypool_put(struct http_bodypool *p, void *buf, size_t cap)
{
  size_t k = class_of(cap);
  if (k < HTTP_BODYPOOL_CLASSES && cap == (k + 1) * HTTP_BODYPOOL_CLASS) {
    pthread_mutex_lock(&p->mutex);
    int keep = p->idle + cap <= p->idle_max;
    if (keep) {
      *(void **)buf = p->free[k];
      p->free[k] = buf;
      p->idle += cap;
    }
    pthread_mutex_unlock(&p->mutex);
    if (keep)
      return;
  }
  free(buf);
}
