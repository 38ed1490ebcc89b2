/* test_s3ds_backend.c: the S3 backend's pure parts: backend property,
 * sizes, claims, the LRU, and eviction on a real chunk store. */
#include "unit.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "store/store_registry.h"
#include "store/store_s3.h"
#include "format/format_blob.h"
#include "store/store_chunk.h"
#include "core/core_digest.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static void digest_of(unsigned i, uint8_t d[32])
{
  memset(d, 0, 32);
  d[0] = (uint8_t)(i >> 8);
  d[1] = (uint8_t)i;
  d[8] = (uint8_t)(i * 7);
  d[9] = (uint8_t)(i >> 3);
}

UNIT_TEST(backend_property)
{
  struct store_backend_cfg c;
  char err[256];
  ASSERT_EQ(store_backend_parse("type=s3,client=rgw1,bucket=cairn-b", &c, err, sizeof(err)), 0);
  ASSERT_EQ(c.type, STORE_BACKEND_S3);
  ASSERT_STR_EQ(c.client, "rgw1");
  ASSERT_STR_EQ(c.bucket, "cairn-b");
  ASSERT_EQ(store_backend_parse("s3,client=rgw1,bucket=cairn-b", &c, err, sizeof(err)), 0);
  ASSERT_EQ(store_backend_parse("type=filesystem", &c, err, sizeof(err)), 0);
  ASSERT_EQ(c.type, STORE_BACKEND_FS);
  ASSERT_EQ(store_backend_parse("type=s3,client=rgw1", &c, err, sizeof(err)), CORE_ECONFIG);
  ASSERT_EQ(store_backend_parse("type=s3,client=rgw1,bucket=UPPER", &c, err, sizeof(err)),
            CORE_ECONFIG);
  ASSERT_EQ(store_backend_parse("type=s3,client=r,bucket=abc", &c, err, sizeof(err)),
            CORE_ECONFIG);
  ASSERT_EQ(store_backend_parse("type=nfs", &c, err, sizeof(err)), CORE_ECONFIG);
  ASSERT_EQ(store_backend_parse("type=s3,client=rgw1,bucket=abc,x=1", &c, err, sizeof(err)),
            CORE_ECONFIG);
  ASSERT_EQ(store_backend_parse("type=filesystem,bucket=abc", &c, err, sizeof(err)),
            CORE_ECONFIG);
  uint64_t n;
  ASSERT_EQ(store_backend_parse_size("1024", &n), 0);
  ASSERT_EQ(n, 1024);
  ASSERT_EQ(store_backend_parse_size("64GiB", &n), 0);
  ASSERT_EQ(n, 64ull << 30);
  ASSERT_EQ(store_backend_parse_size("1.5 MiB", &n), 0);
  ASSERT_EQ(n, 1572864);
  ASSERT_EQ(store_backend_parse_size("10 XB", &n), CORE_ECONFIG);
  ASSERT_EQ(store_backend_parse_size("-1", &n), CORE_ECONFIG);
  ASSERT_EQ(store_backend_parse_size("", &n), CORE_ECONFIG);
}

UNIT_TEST(claims_exclude)
{
  struct store_s3_claims c;
  uint8_t a[32], b[32];
  digest_of(1, a);
  digest_of(2, b);
  store_s3_claims_init(&c);
  ASSERT_EQ(store_s3_claim_upload(&c, a), 0);
  ASSERT_EQ(store_s3_claim_upload(&c, a), 0);          /* two uploads of one chunk */
  ASSERT_EQ(store_s3_claim_delete(&c, a), CORE_ELOCKED);
  store_s3_release_upload(&c, a);
  ASSERT_EQ(store_s3_claim_delete(&c, a), CORE_ELOCKED); /* the other still runs */
  store_s3_release_upload(&c, a);
  ASSERT_EQ(c.n, 0);
  ASSERT_EQ(store_s3_claim_delete(&c, a), 0);
  ASSERT_EQ(store_s3_claim_upload(&c, a), CORE_ELOCKED);
  ASSERT_EQ(store_s3_claim_delete(&c, a), CORE_ELOCKED);
  ASSERT_EQ(store_s3_claim_upload(&c, b), 0);
  store_s3_release_delete(&c, a);
  ASSERT_EQ(store_s3_claim_upload(&c, a), 0);
  store_s3_release_upload(&c, a);
  store_s3_release_upload(&c, b);
  ASSERT_EQ(c.n, 0);
  c.disabled = 1; /* the test hook: everything granted */
  ASSERT_EQ(store_s3_claim_upload(&c, a), 0);
  ASSERT_EQ(store_s3_claim_delete(&c, a), 0);
  store_s3_claims_free(&c);
}

struct race_arg {
  struct store_s3_claims *c;
  const uint8_t *d;
  int uploads_won, deletes_won;
  _Atomic int *both;
};

static void *uploader(void *p)
{
  struct race_arg *a = p;
  for (int i = 0; i < 20000; i++) {
    if (store_s3_claim_upload(a->c, a->d) == 0) {
      a->uploads_won++;
      store_s3_release_upload(a->c, a->d);
    }
  }
  return NULL;
}

static void *deleter(void *p)
{
  struct race_arg *a = p;
  for (int i = 0; i < 20000; i++) {
    if (store_s3_claim_delete(a->c, a->d) == 0) {
      a->deletes_won++;
      store_s3_release_delete(a->c, a->d);
    }
  }
  return NULL;
}

UNIT_TEST(claims_threads)
{
  struct store_s3_claims c;
  uint8_t d[32];
  digest_of(7, d);
  store_s3_claims_init(&c);
  struct race_arg u = {&c, d, 0, 0, NULL}, x = {&c, d, 0, 0, NULL};
  pthread_t t1, t2;
  pthread_create(&t1, NULL, uploader, &u);
  pthread_create(&t2, NULL, deleter, &x);
  pthread_join(t1, NULL);
  pthread_join(t2, NULL);
  /* Who wins is up to the scheduler; that both never hold a claim is the point. */
  ASSERT(u.uploads_won + x.deletes_won > 0);
  ASSERT_EQ(c.n, 0);
  store_s3_claims_free(&c);
}

UNIT_TEST(lru_bounds_bytes)
{
  struct store_s3_cache c;
  uint8_t v[8][32], d[32];
  store_s3_cache_init(&c, 3000);
  for (unsigned i = 0; i < 3; i++) {
    digest_of(i, d);
    ASSERT_EQ(store_s3_cache_add(&c, d, 1000, 0, v, 8), 0);
  }
  ASSERT_EQ(c.bytes, 3000);
  digest_of(0, d);
  ASSERT_EQ(store_s3_cache_use(&c, d), 1); /* 0 becomes most recent: 1 is oldest */
  digest_of(3, d);
  ASSERT_EQ(store_s3_cache_add(&c, d, 1000, 0, v, 8), 1);
  uint8_t want[32];
  digest_of(1, want);
  ASSERT(memcmp(v[0], want, 32) == 0);
  ASSERT_EQ(store_s3_cache_use(&c, want), 0);
  /* a cold entry (start-up scan) goes first */
  digest_of(4, d);
  ASSERT_EQ(store_s3_cache_add(&c, d, 500, 1, v, 8), 1);
  ASSERT(memcmp(v[0], d, 32) == 0);
  /* a bigger bound, then many entries: the table grows */
  store_s3_cache_set_max(&c, 1u << 30);
  for (unsigned i = 10; i < 5000; i++) {
    digest_of(i, d);
    store_s3_cache_add(&c, d, 100, 0, v, 8);
  }
  ASSERT_EQ(c.n, 3 + 4990);
  for (unsigned i = 10; i < 5000; i++) {
    digest_of(i, d);
    ASSERT_EQ(store_s3_cache_use(&c, d), 1);
  }
  digest_of(20, d);
  store_s3_cache_remove(&c, d);
  ASSERT_EQ(store_s3_cache_use(&c, d), 0);
  /* shrinking evicts in LRU order: 2 was last used before everything else */
  store_s3_cache_set_max(&c, c.bytes - 50);
  digest_of(5001, d);
  size_t k = store_s3_cache_add(&c, d, 100, 0, v, 8);
  ASSERT(k >= 1);
  digest_of(2, want);
  ASSERT(memcmp(v[0], want, 32) == 0);
  store_s3_cache_free(&c);
}

UNIT_TEST(chunk_keys)
{
  struct store_backend be;
  memset(&be, 0, sizeof(be));
  be.store = "store1";
  char key[S3_KEY_MAX + 1];
  uint8_t d[32];
  core_hex_decode("bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8", 32, d);
  ASSERT(store_s3_chunk_key(&be, d, key) > 0);
  ASSERT_STR_EQ(key, "store1/.chunks/bb9f/"
                     "bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8");
  ASSERT(store_s3_cnt_key(&be, "vm/100/2025-01-01T00:00:00Z/index.json.blob", key) > 0);
  ASSERT_STR_EQ(key, "store1/.cnt/vm/100/2025-01-01T00:00:00Z/index.json.blob");
  ASSERT(store_s3_cnt_key(&be, "./ns/a/.namespace", key) > 0);
  ASSERT_STR_EQ(key, "store1/.cnt/ns/a/.namespace");
}

UNIT_TEST(evict_never_creates)
{
  char base[600];
  snprintf(base, sizeof(base), "%s/ds", unit_tmpdir());
  ASSERT_EQ(store_chunk_create(base), 0);
  struct store_datastore ds;
  memset(&ds, 0, sizeof(ds));
  ds.name = "ds";
  ds.path = base;
  pthread_mutex_init(&ds.chunks_mutex, NULL);
  struct store_chunkstore *cs;
  ASSERT_EQ(store_datastore_chunks(&ds, &cs), 0);
  uint8_t payload[1000], d[32], *blob;
  size_t blen;
  memset(payload, 'x', sizeof(payload));
  core_sha256(payload, sizeof(payload), d);
  ASSERT_EQ(format_blob_encode_alloc(NULL, payload, sizeof(payload), 0, NULL, &blob, &blen), 0);
  struct store_chunk_insert_result res;
  ASSERT_EQ(store_chunk_insert(cs, d, blob, blen, &res), 0);
  uint8_t ds_[2][32];
  memcpy(ds_[0], d, 32);
  digest_of(99, ds_[1]); /* not in the store */
  store_s3_evict(&ds, ds_, 2);
  struct store_chunk_stat st;
  ASSERT_EQ(store_chunk_stat(cs, d, &st), 0);
  ASSERT_EQ(st.size, 0); /* a marker now */
  ASSERT_EQ(store_chunk_stat(cs, ds_[1], &st), CORE_ENOTFOUND);
  /* no temp file is left behind */
  char dir[700];
  snprintf(dir, sizeof(dir), "%s/.chunks/%02x%02x", base, d[0], d[1]);
  int n = 0;
  DIR *dh = opendir(dir);
  ASSERT(dh != NULL);
  for (struct dirent *e; (e = readdir(dh));)
    n += e->d_name[0] != '.';
  closedir(dh);
  ASSERT_EQ(n, 1);
  /* a marker is replaced by a real insert again (PBS's 0-byte rule) */
  ASSERT_EQ(store_chunk_insert(cs, d, blob, blen, &res), 0);
  ASSERT_EQ(res.duplicate, 0);
  ASSERT_EQ(store_chunk_stat(cs, d, &st), 0);
  ASSERT_EQ(st.size, blen);
  core_free(blob);
  store_chunkstore_close(cs);
}

UNIT_MAIN(UNIT_CASE(backend_property), UNIT_CASE(claims_exclude), UNIT_CASE(claims_threads),
          UNIT_CASE(lru_bounds_bytes), UNIT_CASE(chunk_keys), UNIT_CASE(evict_never_creates))
