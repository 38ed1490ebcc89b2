/* http_bodypool.h: recycled memory for large request bodies.
 *
 * DESIGN
 * Chunk uploads arrive as bodies of 1-16 MiB, one after the other. A fresh
 * allocation for each costs a page fault and a zeroed page per 4 KiB, about
 * a third of cairnd's CPU time at full ingest speed on a VM where fresh pages
 * are expensive. Released bodies go back to per-size free lists instead
 * (size classes of 1 MiB; a body takes an idle buffer of its class or up to
 * three larger), up to `idle_max` bytes held idle;
 * beyond that they are freed. So memory is bounded by the body budget (bodies
 * in use) plus `idle_max`, and an idle server gives the memory back: the
 * server calls http_bodypool_trim() every few seconds, which frees the idle
 * buffers when nothing was taken since the previous call.
 *
 * Buffers are page-aligned (chunk files are written from them with O_DIRECT).
 * Response bodies use the pool too (chunk downloads read into it on a pool
 * thread, and their TLS ciphertext), as does the client's restore for the
 * chunks it downloads, so get and put take a mutex: any thread.
 */
#ifndef HTTP_BODYPOOL_H
#define HTTP_BODYPOOL_H

#include <pthread.h>
#include <stddef.h>

#define HTTP_BODYPOOL_MIN (64u * 1024)       /* smaller bodies use plain malloc */
#define HTTP_BODYPOOL_CLASS (1024u * 1024)   /* capacity granularity */
#define HTTP_BODYPOOL_CLASSES 24             /* up to 24 MiB; larger are not kept */
#define HTTP_BODYPOOL_REACH 3                /* a get may take a buffer this many classes larger */

struct http_bodypool {
  pthread_mutex_t mutex;              /* guards everything below */
  void *free[HTTP_BODYPOOL_CLASSES];  /* singly linked through the buffers */
  size_t idle;                        /* bytes on the free lists */
  size_t idle_max;
  unsigned long gets, gets_at_trim;   /* activity since the last trim */
};

void http_bodypool_init(struct http_bodypool *p, size_t idle_max);
/* Frees every idle buffer. */
void http_bodypool_free(struct http_bodypool *p);
/* A page-aligned buffer of at least `len` bytes (len >= HTTP_BODYPOOL_MIN);
 * its capacity goes to *cap. NULL when out of memory. */
void *http_bodypool_get(struct http_bodypool *p, size_t len, size_t *cap);
/* Takes back a buffer from http_bodypool_get with its capacity. */
void http_bodypool_put(struct http_bodypool *p, void *buf, size_t cap);
/* Frees the idle buffers if no buffer was taken since the previous call.
 * Returns the bytes freed. */
size_t http_bodypool_trim(struct http_bodypool *p);

#endif
