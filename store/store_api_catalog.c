/* store_api_catalog.c: a snapshot's catalog for the catalog and
 * file-download endpoints, in either form: NAME.catalog.blob read and
 * decoded whole, or NAME.catalog.didx read by ranges, each chunk read from
 * the chunk store and verified (CRC, SHA-256 against the index) only when a
 * lookup or listing needs it, the last few kept.
 *
 * THREADING: the pool (the callers' jobs); every read is a file read.
 */
#include "store/store_api.h"

#include "core/core_alloc.h"
#include "core/core_buf.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "format/format_blob.h"
#include "format/format_catalog.h"
#include "format/format_index.h"
#include "format/format_manifest.h"
#include "format/format_name.h"
#include "store/store_chunk.h"
#include "store/store_path.h"
#include "store/store_registry.h"

#include <errno.h>
#include <string.h>

#define INDEX_MAX ((size_t)1 << 30)
#define CACHE_CHUNKS 4 /* at most 4 x 16 MiB held per request */

struct cached {
  uint64_t index;
  uint8_t *data; /* NULL when free */
  size_t len;
  uint64_t used;
};

struct cat_src {
  struct store_datastore *ds;
  struct store__api_catalog_miss *miss; /* S3: where a cache miss is said */
  uint8_t *idx_buf; /* owned: the index file; idx points into it */
  struct format_index idx;
  struct cached cache[CACHE_CHUNKS];
  uint64_t clock, fetched;
};

static void src_close(void *ctx)
{
  struct cat_src *s = ctx;
  for (unsigned i = 0; i < CACHE_CHUNKS; i++)
    core_free(s->cache[i].data);
  core_free(s->idx_buf);
  core_free(s);
}

static void src_chunks(void *ctx, uint64_t *fetched, uint64_t *total)
{
  struct cat_src *s = ctx;
  *fetched = s->fetched;
  *total = s->idx.count;
}

int store__api_index_chunk(struct store_datastore *ds, const struct format_index *idx,
                           uint64_t i, const struct core_slice *enc,
                           struct store__api_catalog_miss *miss, uint8_t **plain, size_t *plen)
{
  const uint8_t *digest = format_index_digest(idx, i);
  struct store_chunkstore *cs;
  struct core_buf b;
  uint64_t cs_off, ce_off;
  int rc = 0;
  *plain = NULL;
  *plen = 0;
  format_index_chunk_range(idx, i, &cs_off, &ce_off);
  core_buf_init(&b, STORE_CHUNK_MAX_ENCODED);
  if (enc == NULL) {
    rc = store_datastore_chunks(ds, &cs);
    if (rc >= 0)
      rc = store_chunk_read(cs, digest, &b);
  }
  if (rc >= 0)
    rc = format_blob_decode(NULL, enc ? enc->base : b.base, enc ? enc->len : b.len, NULL,
                            FORMAT_CHUNK_MAX_SIZE, digest, plain, plen);
  core_buf_free(&b);
  if (rc >= 0 && (*plain == NULL || *plen != ce_off - cs_off))
    rc = CORE_EFORMAT;
  if (rc < 0 && enc == NULL && miss && store_datastore_is_s3(ds)) {
    /* not in the cache (or an evicted, empty file): fetched by the caller */
    miss->have = 1;
    memcpy(miss->digest, digest, 32);
    rc = -EAGAIN;
  }
  if (rc < 0) {
    core_free(*plain);
    *plain = NULL;
  }
  return rc;
}

/* Chunk `i`, cached or read and verified. */
static int chunk(struct cat_src *s, uint64_t i, struct cached **out)
{
  struct cached *victim = &s->cache[0];
  uint8_t *plain;
  size_t plen;
  int rc;

  for (unsigned k = 0; k < CACHE_CHUNKS; k++) {
    if (s->cache[k].data && s->cache[k].index == i) {
      s->cache[k].used = ++s->clock;
      *out = &s->cache[k];
      return 0;
    }
    if (s->cache[k].data == NULL || (victim->data && s->cache[k].used < victim->used))
      victim = &s->cache[k];
  }
  if ((rc = store__api_index_chunk(s->ds, &s->idx, i, NULL, s->miss, &plain, &plen)) < 0)
    return rc;
  s->fetched++;
  core_free(victim->data);
  victim->data = plain;
  victim->len = plen;
  victim->index = i;
  victim->used = ++s->clock;
  *out = victim;
  return 0;
}

static int src_read(void *ctx, uint64_t off, void *dst, size_t len)
{
  struct cat_src *s = ctx;
  size_t done = 0;
  while (done < len) {
    uint64_t lo = format_index_chunk_at(&s->idx, off), cs_off, ce_off;
    struct cached *c;
    if (lo == s->idx.count)
      return CORE_EFORMAT;
    format_index_chunk_range(&s->idx, lo, &cs_off, &ce_off);
    int rc = chunk(s, lo, &c);
    if (rc < 0)
      return rc;
    size_t k = (size_t)(ce_off - off);
    if (k > len - done)
      k = len - done;
    memcpy((uint8_t *)dst + done, c->data + (off - cs_off), k);
    done += k;
    off += k;
  }
  return 0;
}

static int open_index(struct store_datastore *ds, const char *path,
                      const struct format_manifest_file *cf, struct format_catalog *cat,
                      struct store__api_catalog_miss *miss)
{
  struct cat_src *s = core_new(struct cat_src);
  struct format_catalog_source src = {0};
  size_t len = 0;
  int rc;

  s->ds = ds;
  s->miss = miss;
  if ((rc = core_file_read(path, INDEX_MAX, &s->idx_buf, &len)) < 0)
    goto fail;
  if (format_index_parse(s->idx_buf, len, 0, &s->idx) < 0 ||
      s->idx.kind != FORMAT_INDEX_DYNAMIC || memcmp(s->idx.csum, cf->csum, 32) != 0 ||
      s->idx.size != cf->size) {
    rc = CORE_EFORMAT;
    goto fail;
  }
  src.size = s->idx.size;
  src.read = src_read;
  src.close = src_close;
  src.chunks = src_chunks;
  src.ctx = s;
  return format_catalog_open_source(cat, &src); /* closes `s` on failure */
fail:
  src_close(s);
  return rc;
}

int store__api_catalog_open(struct store_datastore *ds, const char *base, const char *ns,
                            const char *type, const char *id, int64_t time,
                            const struct format_manifest *m, const char *archive,
                            struct format_catalog *cat, uint8_t **plain,
                            struct store__api_catalog_miss *miss)
{
  const struct format_manifest_file *cf;
  char cname[FORMAT_NAME_ARCHIVE_MAX + 16], path[STORE_PATH_MAX];
  uint8_t *raw = NULL;
  size_t len = 0, plen = 0;
  int rc, index = 0;

  memset(cat, 0, sizeof(*cat));
  *plain = NULL;
  if (format_catalog_name(archive, cname, sizeof(cname)) < 0)
    return CORE_ENOTFOUND;
  if ((cf = format_manifest_find_file(m, cname)) == NULL) {
    if (format_catalog_index_name(archive, cname, sizeof(cname)) < 0 ||
        (cf = format_manifest_find_file(m, cname)) == NULL)
      return CORE_ENOTFOUND;
    index = 1;
  }
  if (cf->crypt_mode == FORMAT_CRYPT_MODE_ENCRYPT)
    return CORE_ECRYPTO;
  if ((rc = store_path_file(path, sizeof(path), base, ns, type, id, time, cname)) < 0)
    return rc;
  if (index)
    return open_index(ds, path, cf, cat, miss);
  if ((rc = core_file_read(path, FORMAT_BLOB_MAX_SIZE + 4096, &raw, &len)) < 0)
    return rc;
  rc = format_catalog_from_blob(cat, raw, len, plain, &plen);
  core_free(raw);
  return rc;
}
