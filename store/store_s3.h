/* store_s3.h: datastores whose data lives in an S3 bucket.
 *
 * DESIGN
 * A datastore configured with `backend type=s3,client=ID,bucket=NAME` keeps
 * its chunks and metadata in the bucket, under PBS's keys:
 *
 *     <store>/.chunks/<first 4 hex>/<64 hex>   one object per chunk
 *     <store>/.cnt/<path below the base>       indexes, blobs, manifests,
 *                                              owner, notes, .protected,
 *                                              <nspath>/.namespace markers
 *     <store>/.in-use                          {"hostname": "..."}: one server
 *
 * The datastore path stays a normal chunk store and serves as the cache: a
 * chunk file there is either the full chunk (kept in an LRU bounded by
 * `max-cache-size`) or a 0-byte marker (evicted, or uploaded with no-cache).
 * Both say "the bucket has this chunk", which is the invariant everything
 * rests on:
 *
 *   (I) a local chunk file (full or marker) exists only while the bucket
 *       holds the object, except for files GC is about to remove.
 *
 * Upload inserts into the cache only after S3 confirmed the object (200, or
 * 412 for "already there"); GC removes the local file before it deletes the
 * object; eviction truncates an existing file and never creates one.
 *
 * The race of PBS patch 2 (an upload finished in S3 but not yet in the cache
 * looks unreferenced to a GC listing the bucket) is closed with per-chunk
 * claims, an in-memory table: an upload (or a cache fill on read) holds an
 * "upload" claim from before its local check until after its cache insert;
 * GC takes a "delete" claim on every key it decides to delete, from the
 * decision until its DeleteObjects request ended. The two exclude each
 * other: GC keeps a key with an upload claim, an upload waits for a key with
 * a delete claim. Claims live in the process, which suffices because GC of
 * a datastore and backup writers of another process exclude each other
 * through the chunk store's OFD lock (store_chunk.h). docs/s3-datastores.md
 * has the full argument.
 *
 * Everything below that names a callback runs on the loop thread and never
 * blocks: file work goes to pool jobs, S3 requests to the datastore's
 * s3_client on the loop. Functions marked "pool" block and belong in pool
 * jobs (or cairn-admin).
 */
#ifndef STORE_S3_H
#define STORE_S3_H

#include "core/core_config.h"
#include "core/core_shmem.h"
#include "s3/s3_client.h"
#include "s3/s3_config.h"
#include "s3/s3_url.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct store_datastore;

enum store_backend_type {
  STORE_BACKEND_FS = 0, /* "filesystem" (default) */
  STORE_BACKEND_S3 = 1, /* "s3" */
};

struct store_backend_cfg {
  enum store_backend_type type;
  char client[S3_ID_MAX + 1];
  char bucket[S3_BUCKET_MAX + 1];
};

/* Parses a `backend` property string (`type=s3,client=ID,bucket=NAME`,
 * "type=" may be omitted). Returns 0 or CORE_ECONFIG with a message. Pure. */
int store_backend_parse(const char *value, struct store_backend_cfg *out, char *err,
                        size_t errlen);
/* Parses a `max-cache-size`: bytes, or a number with B, K/KB/KiB .. T/TB/TiB
 * (all binary). Returns 0 or CORE_ECONFIG. Pure. */
int store_backend_parse_size(const char *value, uint64_t *out);
/* Validates `backend` and `max-cache-size` of a datastore section. Returns 0
 * or CORE_ECONFIG with a message. Pure. */
int store_backend_check_section(const struct core_config_section *sec, char *err,
                                size_t errlen);

/* ---- claims (any thread; a short mutex, no I/O) ------------------------ */

struct store_s3_claim;

struct store_s3_claims {
  pthread_mutex_t mu;
  struct store_s3_claim **buckets;  /* private */
  size_t nbuckets;                  /* private */
  size_t n;                         /* entries held */
  int disabled;                     /* test hook: claims always granted, never seen */
};

void store_s3_claims_init(struct store_s3_claims *c);
void store_s3_claims_free(struct store_s3_claims *c);
/* An upload or cache fill starts: 0, or CORE_ELOCKED while GC deletes it. */
int store_s3_claim_upload(struct store_s3_claims *c, const uint8_t digest[32]);
void store_s3_release_upload(struct store_s3_claims *c, const uint8_t digest[32]);
/* GC decided to delete: 0, or CORE_ELOCKED while an upload holds it. */
int store_s3_claim_delete(struct store_s3_claims *c, const uint8_t digest[32]);
void store_s3_release_delete(struct store_s3_claims *c, const uint8_t digest[32]);

/* ---- the LRU of full chunks in the cache (any thread) ------------------ */

struct store_s3_lru_node;

struct store_s3_cache {
  pthread_mutex_t mu;
  struct store_s3_lru_node **buckets; /* private */
  size_t nbuckets;                    /* private */
  struct store_s3_lru_node *head;     /* private: most recent; circular list */
  size_t n;                           /* chunks held */
  uint64_t bytes;                     /* their sizes */
  uint64_t max;                       /* bound in bytes; 0: evict everything */
  uint64_t hits, misses, evictions;   /* statistics */
};

void store_s3_cache_init(struct store_s3_cache *c, uint64_t max);
void store_s3_cache_free(struct store_s3_cache *c);
void store_s3_cache_set_max(struct store_s3_cache *c, uint64_t max);
/* Records a full chunk as most recently used (or as least recently used
 * with `cold`, for the start-up scan). Digests that no longer fit are put
 * into victims[] (caller-owned array of `cap`), at most `cap`; returns how
 * many. Evict them with store_s3_evict(). */
size_t store_s3_cache_add(struct store_s3_cache *c, const uint8_t digest[32], uint64_t size,
                          int cold, uint8_t (*victims)[32], size_t cap);
/* Promotes a cached chunk; 1 if it was cached (a hit), else 0 (a miss). */
int store_s3_cache_use(struct store_s3_cache *c, const uint8_t digest[32]);
void store_s3_cache_remove(struct store_s3_cache *c, const uint8_t digest[32]);
/* Learns which full chunks a previous process left in the cache (a
 * background walk in pool jobs, once per backend; loop thread), so the
 * bound holds across restarts. */
void store_s3_cache_scan(struct store_datastore *ds);

/* ---- the backend -------------------------------------------------------- */

struct store_s3_conn;  /* a client and the requests using it (store_s3.c) */
struct store_s3_req;

struct store_backend {
  /* Immutable after creation. */
  uv_loop_t *loop;
  struct store_datastore *ds;      /* the owner (no reference: it owns us) */
  char *store;                     /* owned: datastore name, the key prefix */
  char *config_dir;                /* owned */
  struct core_shmem *shmem;        /* borrowed */
  struct store_backend_cfg cfg;
  struct store_s3_claims claims;
  struct store_s3_cache cache;
  int max_cache_set;               /* max-cache-size was configured */
  /* Test hooks, from the environment of cairnd (tests only):
   *   CAIRN_TEST_S3_PAUSE=PATH   an upload that got its S3 answer waits
   *                              while PATH exists (creating PATH.reached)
   *   CAIRN_TEST_S3_NO_CLAIMS=1  disables the claims (shows the race) */
  char *hook_pause;                /* owned or NULL */
  /* Loop thread only. */
  struct store_s3_conn *conn;      /* current client, or NULL */
  int loading;                     /* an endpoint load job is in flight */
  struct store_s3_req *waiting;    /* requests waiting for a client */
  int reqs;                        /* requests not yet freed */
  int closing;
  int scanned;                     /* the cache scan ran or runs */
  /* Statistics (any thread). */
  _Atomic uint64_t st_uploads, st_upload_bytes, st_upload_existing, st_fetches,
      st_fetch_bytes, st_cache_skips, st_claim_waits;
};

/* Creates or updates the backend of an instance from its datastore section:
 * called by the registry (loop thread) after every (re)load. A datastore
 * whose backend changed type or target keeps its old one (the config API
 * refuses such changes; a hand edit needs a restart) and a warning is
 * logged. */
void store_backend_configure(struct store_datastore *ds, const struct core_config_section *sec,
                             const char *config_dir, struct core_shmem *shmem);
/* Releases the backend of a datastore being freed (loop thread). The
 * client closes asynchronously; the struct is freed afterwards. */
void store_backend_release(struct store_datastore *ds);

/* Object keys. Return the length, or CORE_ETOOBIG past S3_KEY_MAX. */
int store_s3_chunk_key(const struct store_backend *be, const uint8_t digest[32],
                       char out[S3_KEY_MAX + 1]);
int store_s3_cnt_key(const struct store_backend *be, const char *rel, char out[S3_KEY_MAX + 1]);
/* The part of `abs` (a path below the datastore's base) after the base and
 * its '/': a pointer into `abs`. */
const char *store_s3_rel(const struct store_datastore *ds, const char *abs);

/* ---- S3 requests through the datastore's client (loop thread) ----------
 * The client is built on first use from s3.cfg and rebuilt when CORE_GEN_S3
 * moves; requests wait for it. `cb` runs exactly once, never inside the
 * call, with the s3_result of the operation (valid during the callback), or
 * a synthesized one (status < 0, message) if no client could be made.
 * Keys are copied; bodies and key arrays are borrowed until `cb`. */
typedef void (*store_s3_result_cb)(const struct s3_result *res, void *arg);
void store_s3_put(struct store_backend *be, const char *key, const void *body, size_t len,
                  int if_none_match, const char *sha256_hex, const char *md5_b64,
                  store_s3_result_cb cb, void *arg);
void store_s3_get(struct store_backend *be, const char *key, size_t max_body,
                  store_s3_result_cb cb, void *arg);
void store_s3_head(struct store_backend *be, const char *key, store_s3_result_cb cb, void *arg);
void store_s3_list(struct store_backend *be, const char *prefix, const char *token,
                   store_s3_result_cb cb, void *arg);
void store_s3_delete(struct store_backend *be, const char *const *keys, size_t n,
                     store_s3_result_cb cb, void *arg);
void store_s3_head_bucket(struct store_backend *be, store_s3_result_cb cb, void *arg);
/* The current client's counters (zeros before the first request). */
void store_s3_stats(const struct store_backend *be, struct s3_stats *out);

/* ---- chunks (loop thread) ---------------------------------------------- */

typedef void (*store_s3_chunk_cb)(void *arg, int err, int duplicate, const char *msg);

/* The backup path of a chunk: verifies it (CRC rewritten, SHA-256 and size
 * as format_blob_verify_chunk), then: cache file or marker present -> touch,
 * duplicate; else PUT with If-None-Match: * (412 = duplicate) and only then
 * the cache insert (a 0-byte marker with `no_cache`). `data` is borrowed
 * until `cb` (and its CRC field rewritten). Errors name the cause in `msg`. */
void store_s3_chunk_upload(struct store_datastore *ds, const uint8_t digest[32], uint64_t size,
                           void *data, size_t len, int no_cache, store_s3_chunk_cb cb,
                           void *arg);

/* Write-behind (a backup session acknowledges a chunk before the bucket has
 * it, and its finish waits for every upload): the same upload, and
 * `accepted` runs once on the loop when the chunk passed verification and
 * is not in the cache, before the rest of the upload (the PUT's payload
 * hash, the PUT, the cache insert). A duplicate or an error before that
 * point goes to `cb` without `accepted`; `cb` always runs, exactly once,
 * last. The upload's steps and claims are those above. */
typedef void (*store_s3_accept_cb)(void *arg);
void store_s3_chunk_upload_ack(struct store_datastore *ds, const uint8_t digest[32],
                               uint64_t size, void *data, size_t len, int no_cache,
                               store_s3_accept_cb accepted, store_s3_chunk_cb cb, void *arg);

struct store_chunk_alloc;

/* `data` belongs to the callback: from the caller's allocator with capacity
 * `cap`, or, when `cap` is 0 (not every byte fitted what the allocator
 * gave), to be freed with core_free. */
typedef void (*store_s3_read_cb)(void *arg, int err, uint8_t *data, size_t len, size_t cap);

/* The read path: the cached chunk, or GET from the bucket (then inserted
 * into the cache), into memory from `alloc` (borrowed until `cb`). The bytes
 * are checked for a valid DataBlob CRC, not decoded. */
void store_s3_chunk_read(struct store_datastore *ds, const uint8_t digest[32],
                         const struct store_chunk_alloc *alloc, store_s3_read_cb cb,
                         void *arg);

/* Evicts chunks from the cache: truncates existing files to 0 bytes (never
 * creates one). Pool. */
void store_s3_evict(struct store_datastore *ds, uint8_t (*digests)[32], size_t n);

/* ---- metadata mirror (loop thread) -------------------------------------- */

typedef void (*store_s3_done_cb)(void *arg, int err, const char *msg);

#define STORE_S3_OPTIONAL 1u   /* a missing local file is skipped, not an error */

/* Uploads local files (paths relative to the base) to <store>/.cnt/<rel>;
 * "<nspath>/.namespace" entries are uploaded empty without a local file. */
void store_s3_mirror(struct store_datastore *ds, const char *const *rels, size_t n,
                     unsigned flags, store_s3_done_cb cb, void *arg);
/* Uploads what makes a snapshot finished in the bucket, the manifest last:
 * namespace markers, the group's owner and notes, the snapshot's notes and
 * .protected (if present), then index.json.blob, read from the snapshot's
 * file `manifest_src` (NULL: index.json.blob) so that a backup's finish can
 * publish the manifest locally only after the bucket has it. */
void store_s3_mirror_snapshot(struct store_datastore *ds, const char *ns, const char *type,
                              const char *id, int64_t time, const char *manifest_src,
                              store_s3_done_cb cb, void *arg);
/* Deletes <store>/.cnt/<rel> and, with `recursive`, every key below
 * <store>/.cnt/<rel>/ (listing pages, DeleteObjects batches). */
void store_s3_unmirror(struct store_datastore *ds, const char *rel, int recursive,
                       store_s3_done_cb cb, void *arg);

/* After a snapshot was removed locally (prune): removes its .cnt/ copy from
 * the bucket in the background, logging a failure. No-op for local stores.
 * Loop thread. */
void store_s3_forget_snapshot(struct store_datastore *ds, const char *ns, const char *type,
                              const char *id, int64_t time);

/* ---- datastore creation (pool / cairn-admin) ------------------------------ */

/* For a new datastore `store` with backend `cfg`: checks the bucket is
 * reachable, refuses (CORE_EEXISTS) if <store>/.in-use exists unless
 * `overwrite_in_use`, then writes .in-use with this host's name. Returns 0,
 * CORE_ECONFIG (no such endpoint, or the bucket check failed), CORE_EEXISTS,
 * the other errors of s3_config_load_endpoint, s3_sync_open's errors, or
 * the code of a failed GET or PUT of .in-use; a message in err either way. */
int store_s3_create_check(const char *config_dir, const char *store,
                          const struct store_backend_cfg *cfg, int overwrite_in_use,
                          char *err, size_t errlen);

/* ---- blocking chunk fetches for pool jobs (verify) ------------------------ */

/* A task that checks chunks in pool jobs (verify) reads a 0-byte marker's
 * chunk from the bucket with this: a private loop and client (s3_sync.h),
 * one per task, used by one thread at a time. Nothing is cached. */
struct store_s3_fetcher;
/* Returns 0, CORE_EINVAL (`ds` is not S3-backed), the errors of
 * s3_config_load_endpoint, or s3_sync_open's (message in err). */
int store_s3_fetcher_open(struct store_datastore *ds, struct store_s3_fetcher **out,
                          char *err, size_t errlen);
/* GET <store>/.chunks/.../<hex> into `out` (reset first; out->max bounds it).
 * Returns 0, CORE_ENOTFOUND, or an S3/transport error. Pool. */
/* The same from a datastore's configuration, without a running registry
 * (cairn-admin): `store` is the datastore's name (its key prefix), `cfg` its
 * parsed `backend`, `config_dir` where s3.cfg lives. CORE_EINVAL if `cfg`
 * is not S3. */
int store_s3_fetcher_open_cfg(const char *config_dir, const char *store,
                              const struct store_backend_cfg *cfg,
                              struct store_s3_fetcher **out, char *err, size_t errlen);
int store_s3_fetch(struct store_s3_fetcher *f, const uint8_t digest[32], struct core_buf *out);
void store_s3_fetcher_close(struct store_s3_fetcher *f);
/* The fetcher's blocking client and "<store>" key prefix, for other pool
 * work on the bucket (moves, store_move.c). */
struct s3_sync *store_s3_fetcher_sync(struct store_s3_fetcher *f);
const char *store_s3_fetcher_prefix(const struct store_s3_fetcher *f);

#endif
