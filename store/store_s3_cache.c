/* store_s3_cache.c: which full chunks the local cache holds, least recently
 * used first out.
 *
 * A hash table of nodes on a circular doubly linked list (head = most
 * recent), under one mutex, bounded in bytes. The table only decides; the
 * file work of an eviction (truncating to a 0-byte marker) is the caller's,
 * in a pool job (store_s3_evict). Forgetting a chunk is always safe: an
 * untracked full file is served like any other and just never evicted, and
 * the start-up scan re-learns what a previous process cached.
 */
#include "store/store_s3.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "store/store_chunk.h"
#include "store/store_registry.h"

#include <string.h>

struct store_s3_lru_node {
  struct store_s3_lru_node *prev, *next; /* list, head = most recent */
  struct store_s3_lru_node *hnext;       /* hash chain */
  uint8_t digest[32];
  uint64_t size;
};

#define MIN_BUCKETS 1024u

void store_s3_cache_init(struct store_s3_cache *c, uint64_t max)
{
  memset(c, 0, sizeof(*c));
  pthread_mutex_init(&c->mu, NULL);
  c->max = max;
  c->nbuckets = MIN_BUCKETS;
  c->buckets = core_calloc(c->nbuckets, sizeof(*c->buckets));
}

void store_s3_cache_free(struct store_s3_cache *c)
{
  struct store_s3_lru_node *n = c->head;
  for (size_t i = 0; i < c->n; i++) {
    struct store_s3_lru_node *next = n->next;
    core_free(n);
    n = next;
  }
  core_free(c->buckets);
  c->buckets = NULL;
  c->head = NULL;
  c->n = 0;
  pthread_mutex_destroy(&c->mu);
}

static size_t hash(const struct store_s3_cache *c, const uint8_t d[32])
{
  uint64_t h;
  memcpy(&h, d + 8, sizeof(h));
  return (size_t)(h & (c->nbuckets - 1));
}

static struct store_s3_lru_node **find(struct store_s3_cache *c, const uint8_t d[32])
{
  struct store_s3_lru_node **p = &c->buckets[hash(c, d)];
  while (*p && memcmp((*p)->digest, d, 32) != 0)
    p = &(*p)->hnext;
  return p;
}

static void grow(struct store_s3_cache *c)
{
  size_t nb = c->nbuckets * 2;
  struct store_s3_lru_node **b = core_calloc(nb, sizeof(*b));
  struct store_s3_lru_node *n = c->head;
  core_free(c->buckets);
  c->buckets = b;
  c->nbuckets = nb;
  for (size_t i = 0; i < c->n; i++, n = n->next) {
    size_t h = hash(c, n->digest);
    n->hnext = b[h];
    b[h] = n;
  }
}

static void list_unlink(struct store_s3_cache *c, struct store_s3_lru_node *n)
{
  if (n->next == n) {
    c->head = NULL;
  } else {
    n->prev->next = n->next;
    n->next->prev = n->prev;
    if (c->head == n)
      c->head = n->next;
  }
}

/* Inserts before the head; `front` makes it the new head (most recent),
 * otherwise it becomes the tail (least recent). */
static void list_insert(struct store_s3_cache *c, struct store_s3_lru_node *n, int front)
{
  if (c->head == NULL) {
    n->prev = n->next = n;
    c->head = n;
    return;
  }
  struct store_s3_lru_node *h = c->head;
  n->next = h;
  n->prev = h->prev;
  h->prev->next = n;
  h->prev = n;
  if (front)
    c->head = n;
}

static void remove_node(struct store_s3_cache *c, struct store_s3_lru_node **p)
{
  struct store_s3_lru_node *n = *p;
  *p = n->hnext;
  list_unlink(c, n);
  c->n--;
  c->bytes -= n->size;
  core_free(n);
}

static size_t evict_over(struct store_s3_cache *c, uint8_t (*victims)[32], size_t cap)
{
  size_t k = 0;
  while (c->head && c->bytes > c->max && k < cap) {
    struct store_s3_lru_node *tail = c->head->prev;
    memcpy(victims[k++], tail->digest, 32);
    remove_node(c, find(c, tail->digest));
    c->evictions++;
  }
  return k;
}

void store_s3_cache_set_max(struct store_s3_cache *c, uint64_t max)
{
  pthread_mutex_lock(&c->mu);
  c->max = max;
  pthread_mutex_unlock(&c->mu);
}

size_t store_s3_cache_add(struct store_s3_cache *c, const uint8_t digest[32], uint64_t size,
                          int cold, uint8_t (*victims)[32], size_t cap)
{
  pthread_mutex_lock(&c->mu);
  struct store_s3_lru_node **p = find(c, digest);
  if (*p) {
    struct store_s3_lru_node *n = *p;
    c->bytes = c->bytes - n->size + size;
    n->size = size;
    if (!cold) {
      list_unlink(c, n);
      list_insert(c, n, 1);
    }
  } else {
    if (c->n >= c->nbuckets * 2) {
      grow(c);
      p = find(c, digest);
    }
    struct store_s3_lru_node *n = core_new(struct store_s3_lru_node);
    memcpy(n->digest, digest, 32);
    n->size = size;
    n->hnext = NULL;
    *p = n;
    list_insert(c, n, !cold);
    c->n++;
    c->bytes += size;
  }
  size_t k = evict_over(c, victims, cap);
  pthread_mutex_unlock(&c->mu);
  return k;
}

int store_s3_cache_use(struct store_s3_cache *c, const uint8_t digest[32])
{
  pthread_mutex_lock(&c->mu);
  struct store_s3_lru_node **p = find(c, digest);
  int hit = *p != NULL;
  if (hit) {
    list_unlink(c, *p);
    list_insert(c, *p, 1);
    c->hits++;
  } else {
    c->misses++;
  }
  pthread_mutex_unlock(&c->mu);
  return hit;
}

void store_s3_cache_remove(struct store_s3_cache *c, const uint8_t digest[32])
{
  pthread_mutex_lock(&c->mu);
  struct store_s3_lru_node **p = find(c, digest);
  if (*p)
    remove_node(c, p);
  pthread_mutex_unlock(&c->mu);
}

/* ---- start-up scan -------------------------------------------------------- */

#define SCAN_PREFIXES 2048u   /* prefix directories per pool job */
#define SCAN_VICTIMS 256u

struct scan {
  struct core_job job;
  struct store_datastore *ds;   /* reference held for the scan */
  unsigned next;                /* first prefix of the next job */
  uint64_t files, bytes, evicted;
  int rc;
};

static void scan_run(struct core_job *j)
{
  struct scan *sc = (struct scan *)j;
  struct store_backend *be = sc->ds->backend;
  struct store_chunkstore *cs;
  struct store_chunk_iter it;
  struct store_chunk_entry e;
  uint8_t victims[SCAN_VICTIMS][32];
  unsigned end = sc->next + SCAN_PREFIXES;
  int rc = store_datastore_chunks(sc->ds, &cs);
  if (rc == 0)
    rc = store_chunk_iter_open(&it, cs, sc->next, end, 0);
  if (rc < 0) {
    sc->rc = rc;
    return;
  }
  while ((rc = store_chunk_iter_next(&it, &e)) != 0) {
    if (rc < 0 || e.kind != STORE_CHUNK_KIND_CHUNK || e.size == 0)
      continue;
    sc->files++;
    sc->bytes += e.size;
    /* Cold: whatever was used since the start stays ahead of it. */
    size_t nv = store_s3_cache_add(&be->cache, e.digest, e.size, 1, victims, SCAN_VICTIMS);
    store_s3_evict(sc->ds, victims, nv);
    sc->evicted += nv;
  }
  store_chunk_iter_close(&it);
  sc->next = end;
}

static void scan_done(struct core_job *j, int status)
{
  struct scan *sc = (struct scan *)j;
  struct store_backend *be = sc->ds->backend;
  if (status == 0 && sc->rc == 0 && be && !be->closing && sc->next < STORE_CHUNK_PREFIXES) {
    if (core_job_submit(be->loop, &sc->job, scan_run, scan_done) == 0)
      return;
  }
  if (sc->rc < 0)
    core_warn("datastore %s: cache scan failed: %s", sc->ds->name, core_strerror(sc->rc));
  else if (sc->files)
    core_info("datastore %s: cache holds %llu chunks (%llu MiB); %llu evicted to fit",
              sc->ds->name, (unsigned long long)sc->files,
              (unsigned long long)(sc->bytes >> 20), (unsigned long long)sc->evicted);
  store_datastore_unref(sc->ds);
  core_free(sc);
}

void store_s3_cache_scan(struct store_datastore *ds)
{
  struct store_backend *be = ds->backend;
  if (be == NULL || be->scanned)
    return;
  be->scanned = 1;
  struct scan *sc = core_new(struct scan);
  sc->ds = ds;
  store_datastore_ref(ds);
  if (core_job_submit(be->loop, &sc->job, scan_run, scan_done) < 0) {
    store_datastore_unref(ds);
    core_free(sc);
  }
}
