/* store_s3_claims.c: per-chunk upload and delete claims (the in-memory
 * locks that close PBS patch 2's race; see store_s3.h).
 *
 * A small chained hash table under one mutex. Entries exist only while
 * claimed: at most the uploads in flight plus one GC batch (<= 1000), so the
 * table stays small and every operation is a few dozen instructions under
 * the lock, cheap enough for the loop thread too.
 */
#include "store/store_s3.h"

#include "core/core_alloc.h"
#include "core/core_error.h"

#include <string.h>

#define NBUCKETS 4096u

struct store_s3_claim {
  struct store_s3_claim *next;
  uint8_t digest[32];
  int uploads;     /* upload / cache-fill claims held */
  int deleting;    /* GC holds the delete claim */
};

void store_s3_claims_init(struct store_s3_claims *c)
{
  memset(c, 0, sizeof(*c));
  pthread_mutex_init(&c->mu, NULL);
  c->nbuckets = NBUCKETS;
  c->buckets = core_calloc(NBUCKETS, sizeof(*c->buckets));
}

void store_s3_claims_free(struct store_s3_claims *c)
{
  for (size_t i = 0; c->buckets && i < c->nbuckets; i++) {
    struct store_s3_claim *e = c->buckets[i];
    while (e) {
      struct store_s3_claim *next = e->next;
      core_free(e);
      e = next;
    }
  }
  core_free(c->buckets);
  c->buckets = NULL;
  pthread_mutex_destroy(&c->mu);
}

/* SHA-256 output is uniform: its first bytes make a fine hash. */
static struct store_s3_claim **slot(struct store_s3_claims *c, const uint8_t digest[32])
{
  uint32_t h = (uint32_t)digest[0] << 16 | (uint32_t)digest[1] << 8 | digest[2];
  struct store_s3_claim **p = &c->buckets[h % c->nbuckets];
  while (*p && memcmp((*p)->digest, digest, 32) != 0)
    p = &(*p)->next;
  return p;
}

static struct store_s3_claim *get_or_add(struct store_s3_claims *c, const uint8_t digest[32])
{
  struct store_s3_claim **p = slot(c, digest);
  if (*p == NULL) {
    *p = core_new(struct store_s3_claim);
    memcpy((*p)->digest, digest, 32);
    c->n++;
  }
  return *p;
}

static void drop_if_unused(struct store_s3_claims *c, struct store_s3_claim **p)
{
  struct store_s3_claim *e = *p;
  if (e && e->uploads == 0 && !e->deleting) {
    *p = e->next;
    core_free(e);
    c->n--;
  }
}

int store_s3_claim_upload(struct store_s3_claims *c, const uint8_t digest[32])
{
  if (c->disabled)
    return 0;
  int rc = 0;
  pthread_mutex_lock(&c->mu);
  struct store_s3_claim *e = get_or_add(c, digest);
  if (e->deleting)
    rc = CORE_ELOCKED;
  else
    e->uploads++;
  pthread_mutex_unlock(&c->mu);
  return rc;
}

void store_s3_release_upload(struct store_s3_claims *c, const uint8_t digest[32])
{
  if (c->disabled)
    return;
  pthread_mutex_lock(&c->mu);
  struct store_s3_claim **p = slot(c, digest);
  if (*p && (*p)->uploads > 0) {
    (*p)->uploads--;
    drop_if_unused(c, p);
  }
  pthread_mutex_unlock(&c->mu);
}

int store_s3_claim_delete(struct store_s3_claims *c, const uint8_t digest[32])
{
  if (c->disabled)
    return 0;
  int rc = 0;
  pthread_mutex_lock(&c->mu);
  struct store_s3_claim *e = get_or_add(c, digest);
  if (e->uploads > 0 || e->deleting)
    rc = CORE_ELOCKED;
  else
    e->deleting = 1;
  pthread_mutex_unlock(&c->mu);
  return rc;
}

void store_s3_release_delete(struct store_s3_claims *c, const uint8_t digest[32])
{
  if (c->disabled)
    return;
  pthread_mutex_lock(&c->mu);
  struct store_s3_claim **p = slot(c, digest);
  if (*p) {
    (*p)->deleting = 0;
    drop_if_unused(c, p);
  }
  pthread_mutex_unlock(&c->mu);
}
