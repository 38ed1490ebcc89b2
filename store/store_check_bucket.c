/* store_check_bucket.c: the bucket side of `datastore check` for S3
 * datastores (see store_check.h). */
#include "store/store_check.h"

#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "s3/s3_sync.h"
#include "s3/s3_url.h"
#include "s3/s3_xml.h"
#include "store/store_digestset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds what one check holds in memory: 32 M chunk keys (40 bytes each in
 * the digest set) and 4 M metadata keys. A bucket past that is reported,
 * not half-checked. */
#define BUCKET_MAX_CHUNKS (32u * 1024 * 1024)
#define BUCKET_MAX_CNT (4u * 1024 * 1024)
/* A listing that returns more pages than this without ending is broken. */
#define BUCKET_MAX_PAGES (64u * 1024)

struct store_check_bucket {
  struct s3_sync *sync;          /* borrowed, for HEAD on a miss */
  char *store;                   /* owned: the key prefix */
  struct store_digestset chunks; /* digests under <store>/.chunks/ */
  char **cnt;                    /* owned, sorted: keys under <store>/.cnt/ */
  size_t ncnt, capcnt;
  uint64_t late;                 /* misses that HEAD found (written after the listing) */
};

static int cmp_str(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A chunk key is <store>/.chunks/<4 hex>/<64 hex>; anything else below
 * .chunks/ (GC's markers, foreign objects) is not a chunk. */
static int chunk_digest(const char *rest, uint8_t digest[32])
{
  if (strlen(rest) != 4 + 1 + 64 || rest[4] != '/' || strncmp(rest, rest + 5, 4) != 0 ||
      !core_is_digest_hex(rest + 5))
    return -1;
  return core_hex_decode(rest + 5, 32, digest) < 0 ? -1 : 0;
}

/* `rest`: the key after its prefix; `cnt`: a .cnt/ key (kept whole). */
static int add_key(struct store_check_bucket *b, const char *key, const char *rest, int cnt,
                   char *err, size_t errlen)
{
  uint8_t digest[32];
  if (!cnt) {
    if (chunk_digest(rest, digest) == 0 &&
        store_digestset_add(&b->chunks, digest, 0) < 0) {
      snprintf(err, errlen, "more than %u chunks in the bucket", BUCKET_MAX_CHUNKS);
      return CORE_ETOOBIG;
    }
    return 0;
  }
  if (b->ncnt == b->capcnt) {
    if (b->capcnt >= BUCKET_MAX_CNT) {
      snprintf(err, errlen, "more than %u metadata keys in the bucket", BUCKET_MAX_CNT);
      return CORE_ETOOBIG;
    }
    b->capcnt = b->capcnt ? b->capcnt * 2 : 256;
    b->cnt = core_realloc(b->cnt, b->capcnt * sizeof(*b->cnt));
  }
  b->cnt[b->ncnt++] = core_strdup(key);
  return 0;
}

/* Lists every key below `prefix`, page by page. `cnt` selects where keys go. */
static int list_prefix(struct store_check_bucket *b, const char *prefix, int cnt, char *err,
                       size_t errlen)
{
  char *token = NULL;
  int rc = 0;
  size_t plen = strlen(prefix);
  for (unsigned page = 0;; page++) {
    struct s3_list_result lr;
    struct s3_sync_result res;
    if (page >= BUCKET_MAX_PAGES) {
      snprintf(err, errlen, "listing %s does not end", prefix);
      rc = CORE_EPROTO;
      break;
    }
    rc = s3_sync_list(b->sync, prefix, token, &lr, &res);
    if (rc < 0) {
      snprintf(err, errlen, "cannot list %s: %s%s%s", prefix, core_strerror(rc),
               res.message[0] ? ": " : "", res.message);
      break;
    }
    for (size_t i = 0; i < lr.n && rc == 0; i++)
      if (strncmp(lr.objects[i].key, prefix, plen) == 0)
        rc = add_key(b, lr.objects[i].key, lr.objects[i].key + plen, cnt, err, errlen);
    core_free(token);
    token = lr.is_truncated && lr.next_token ? core_strdup(lr.next_token) : NULL;
    int more = lr.is_truncated;
    s3_list_result_free(&lr);
    if (rc < 0)
      break;
    if (!more)
      break;
    if (token == NULL) {
      snprintf(err, errlen, "listing %s is truncated without a continuation token", prefix);
      rc = CORE_EPROTO;
      break;
    }
  }
  core_free(token);
  return rc;
}

int store_check_bucket_list(struct s3_sync *sync, const char *store,
                            struct store_check_bucket **out, char *err, size_t errlen)
{
  struct store_check_bucket *b = core_new(struct store_check_bucket);
  char prefix[S3_KEY_MAX + 1];
  int rc;
  *out = NULL;
  b->sync = sync;
  b->store = core_strdup(store);
  store_digestset_init(&b->chunks, BUCKET_MAX_CHUNKS);
  snprintf(prefix, sizeof(prefix), "%s/.chunks/", store);
  rc = list_prefix(b, prefix, 0, err, errlen);
  if (rc == 0) {
    snprintf(prefix, sizeof(prefix), "%s/.cnt/", store);
    rc = list_prefix(b, prefix, 1, err, errlen);
  }
  if (rc < 0) {
    store_check_bucket_free(b);
    return rc;
  }
  if (b->ncnt > 1)
    qsort(b->cnt, b->ncnt, sizeof(*b->cnt), cmp_str);
  *out = b;
  return 0;
}

void store_check_bucket_free(struct store_check_bucket *b)
{
  if (b == NULL)
    return;
  for (size_t i = 0; i < b->ncnt; i++)
    core_free(b->cnt[i]);
  core_free(b->cnt);
  store_digestset_free(&b->chunks);
  core_free(b->store);
  core_free(b);
}

/* A key the listing lacks may have been written since: HEAD decides. */
static int head(struct store_check_bucket *b, const char *key)
{
  struct s3_sync_result res;
  int rc = s3_sync_head(b->sync, key, &res);
  if (rc == 0) {
    b->late++;
    return 1;
  }
  return res.not_found ? 0 : rc;
}

int store_check_bucket_has_chunk(struct store_check_bucket *b, const uint8_t digest[32])
{
  char key[S3_KEY_MAX + 1], hex[65];
  if (store_digestset_get(&b->chunks, digest, NULL))
    return 1;
  core_hex_encode(digest, 32, hex);
  if (snprintf(key, sizeof(key), "%s/.chunks/%.4s/%s", b->store, hex, hex) >= (int)sizeof(key))
    return CORE_ETOOBIG;
  return head(b, key);
}

int store_check_bucket_has_file(struct store_check_bucket *b, const char *rel)
{
  char key[S3_KEY_MAX + 1];
  const char *k = key;
  while (rel[0] == '.' && rel[1] == '/')
    rel += 2;
  if (snprintf(key, sizeof(key), "%s/.cnt/%s", b->store, rel) >= (int)sizeof(key))
    return CORE_ETOOBIG;
  if (b->ncnt > 0 && bsearch(&k, b->cnt, b->ncnt, sizeof(*b->cnt), cmp_str) != NULL)
    return 1;
  return head(b, key);
}

void store_check_bucket_stats(const struct store_check_bucket *b, uint64_t *chunks,
                              uint64_t *cnt, uint64_t *late)
{
  *chunks = b->chunks.count;
  *cnt = b->ncnt;
  *late = b->late;
}
