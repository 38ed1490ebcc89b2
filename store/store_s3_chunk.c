/* store_s3_chunk.c: chunk upload and read for S3 datastores, and cache
 * eviction.
 *
 * Upload, one chunk (U = upload claim, see store_s3.h):
 *
 *   pool  verify, rewrite CRC; take U; touch the local file or marker
 *         -> present: drop U, duplicate, done
 *   loop  -> absent: `accepted` (write-behind callers answer the chunk now)
 *   pool  SHA-256 of the body for the PUT's signature
 *   loop  PUT <store>/.chunks/XXXX/<hex> with If-None-Match: *
 *         (200 uploaded, 412 already there; an error drops U and fails)
 *   pool  insert into the cache (or a 0-byte marker with no-cache), evict
 *         what no longer fits, drop U
 *   loop  report
 *
 * If GC holds the delete claim, the upload waits (a timer, then the first
 * step again): GC has decided the object goes and its DeleteObjects may
 * still be in flight, so neither a 412 nor an upload now would be safe.
 *
 * Read: the cached file if it is a full blob with a good CRC (promoted in
 * the LRU); otherwise (marker, missing, or a file cut short) take U, GET,
 * check the CRC, insert, drop U. Without U (GC is deleting it, so no index
 * references it) the bytes are served but not cached.
 */
#include "store/store_s3.h"

#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "s3/s3_hash.h"
#include "format/format_blob.h"
#include "store/store_chunk.h"
#include "store/store_path.h"
#include "store/store_registry.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CLAIM_RETRY_MS 50
#define CLAIM_MAX_WAITS 6000         /* 5 minutes: GC batches end long before */
#define HOOK_POLL_MS 20
#define MAX_VICTIMS 64
#define PREFIX_DIR_MODE 0750

/* ---- cache files (pool) ------------------------------------------------ */

/* A 0-byte marker for a chunk the bucket holds (no-cache upload): created
 * if missing, its atime set to now if present (full or marker alike). */
static int make_marker(struct store_chunkstore *cs, const uint8_t digest[32])
{
  char rel[STORE_CHUNK_REL_LEN + 1];
  store_path_chunk_rel(rel, digest);
  rel[4] = '\0';
  if (mkdirat(cs->chunks_fd, rel, PREFIX_DIR_MODE) < 0 && errno != EEXIST)
    return -errno;
  rel[4] = '/';
  int fd = openat(cs->chunks_fd, rel, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0)
    return -errno;
  struct timespec ts[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
  int rc = futimens(fd, ts) < 0 ? -errno : 0;
  close(fd);
  return rc;
}

/* Replaces a full chunk file by a 0-byte marker without ever creating a
 * file where there is none (invariant I): an empty temp file is swapped
 * with the chunk by renameat2(RENAME_EXCHANGE), which fails if the chunk is
 * gone, and the old inode (now under the temp name) is unlinked. Readers
 * holding it open keep reading complete bytes. The marker's atime is the
 * time of the swap, never older than the chunk's, so GC stays on the safe
 * side. */
static int evict_one(struct store_chunkstore *cs, const uint8_t digest[32])
{
  char rel[STORE_CHUNK_REL_LEN + 1], tmp[STORE_CHUNK_REL_LEN + 32];
  uint32_t rnd = 0;
  store_path_chunk_rel(rel, digest);
  core_random(&rnd, sizeof(rnd));
  snprintf(tmp, sizeof(tmp), "%s.tmp_evict_%08x", rel, rnd);
  int fd = openat(cs->chunks_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                  0644);
  if (fd < 0)
    return errno == ENOENT ? CORE_ENOTFOUND : -errno; /* no prefix directory: no chunk */
  close(fd);
  int rc = 0;
  if (renameat2(cs->chunks_fd, tmp, cs->chunks_fd, rel, RENAME_EXCHANGE) < 0)
    rc = errno == ENOENT ? CORE_ENOTFOUND : -errno;
  unlinkat(cs->chunks_fd, tmp, 0);
  return rc;
}

void store_s3_evict(struct store_datastore *ds, uint8_t (*digests)[32], size_t n)
{
  struct store_chunkstore *cs;
  if (n == 0 || store_datastore_chunks(ds, &cs) < 0)
    return;
  for (size_t i = 0; i < n; i++) {
    int rc = evict_one(cs, digests[i]);
    if (rc < 0 && rc != CORE_ENOTFOUND) {
      char hex[65];
      core_hex_encode(digests[i], 32, hex);
      core_warn("datastore %s: cannot evict chunk %s from the cache: %s", ds->name, hex,
                core_strerror(rc));
    }
  }
}

/* Inserts a verified blob into the cache and evicts what no longer fits. */
static int cache_insert(struct store_datastore *ds, struct store_chunkstore *cs,
                        const uint8_t digest[32], const void *data, size_t len, int *duplicate)
{
  struct store_backend *be = ds->backend;
  struct store_chunk_insert_result res;
  int rc = store_chunk_insert(cs, digest, data, len, &res);
  if (rc < 0)
    return rc;
  if (duplicate)
    *duplicate = res.duplicate;
  uint8_t victims[MAX_VICTIMS][32];
  size_t nv = store_s3_cache_add(&be->cache, digest, res.size, 0, victims, MAX_VICTIMS);
  store_s3_evict(ds, victims, nv);
  return 0;
}

/* ---- upload --------------------------------------------------------------- */

enum up_step { UP_CHECK, UP_HASH, UP_HOOK, UP_STORE };

struct up {
  struct core_job job;
  struct store_datastore *ds;     /* borrowed: the caller's session holds it */
  struct store_backend *be;
  enum up_step step;
  uint8_t digest[32];
  uint64_t size;
  void *data;
  size_t len;
  int no_cache;
  store_s3_chunk_cb cb;
  store_s3_accept_cb accepted;    /* or NULL */
  void *arg;
  uv_timer_t timer;
  unsigned waits;
  /* job-owned */
  struct store_chunkstore *cs;
  int verified;
  int claimed;
  int present;                    /* UP_CHECK: the cache already has it */
  int paused;                     /* UP_HOOK: the pause file exists */
  int already;                    /* the PUT said 412 */
  int rc;
  char msg[384];
  struct s3_hash h;
};

static void up_next(struct up *u);

static void up_closed(uv_handle_t *h)
{
  core_free(h->data);
}

static void up_end(struct up *u, int rc, int duplicate)
{
  if (u->claimed) {
    store_s3_release_upload(&u->be->claims, u->digest);
    u->claimed = 0;
  }
  u->cb(u->arg, rc, duplicate, rc < 0 ? (u->msg[0] ? u->msg : core_strerror(rc)) : NULL);
  uv_close((uv_handle_t *)&u->timer, up_closed);
}

static void up_run(struct core_job *j)
{
  struct up *u = (struct up *)j;
  char hex[65];
  int rc = 0;
  switch (u->step) {
  case UP_CHECK:
    if (!u->verified) {
      rc = format_blob_accept_chunk(NULL, u->data, u->len, u->digest, u->size);
      if (rc < 0) {
        u->rc = rc;
        return;
      }
      u->verified = 1;
      rc = store_datastore_chunks(u->ds, &u->cs);
      if (rc < 0) {
        u->rc = rc;
        snprintf(u->msg, sizeof(u->msg), "cannot open the cache: %s", core_strerror(rc));
        return;
      }
    }
    rc = store_s3_claim_upload(&u->be->claims, u->digest);
    if (rc < 0) {
      u->rc = rc; /* CORE_ELOCKED: GC is deleting it; the loop retries */
      return;
    }
    u->claimed = 1;
    rc = store_chunk_touch(u->cs, u->digest);
    if (rc == 0) {
      u->present = 1;
      store_s3_cache_use(&u->be->cache, u->digest);
      u->rc = 0;
      return;
    }
    if (rc != CORE_ENOTFOUND) {
      u->rc = rc;
      core_hex_encode(u->digest, 32, hex);
      snprintf(u->msg, sizeof(u->msg), "cannot touch cached chunk %s: %s", hex,
               core_strerror(rc));
      return;
    }
    u->rc = 0;
    return;
  case UP_HASH:
    /* A step of its own, after `accepted`: a write-behind caller answers
     * the chunk without waiting for this second pass over the body.
     * SHA-256 only: SigV4 signs it and the server checks the body against
     * it, which makes Content-MD5 redundant for chunks (and MD5 would cost
     * as much CPU again). */
    s3_hash_compute(u->data, u->len, 0, &u->h);
    return;
  case UP_HOOK: {
    char reached[1100];
    u->paused = access(u->be->hook_pause, F_OK) == 0;
    snprintf(reached, sizeof(reached), "%s.reached", u->be->hook_pause);
    if (u->paused) {
      int fd = open(reached, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
      if (fd >= 0)
        close(fd);
    }
    return;
  }
  case UP_STORE:
    if (u->no_cache)
      rc = make_marker(u->cs, u->digest);
    else
      rc = cache_insert(u->ds, u->cs, u->digest, u->data, u->len, NULL);
    if (rc < 0) {
      core_hex_encode(u->digest, 32, hex);
      snprintf(u->msg, sizeof(u->msg), "chunk %s uploaded, but the cache insert failed: %s",
               hex, core_strerror(rc));
    }
    store_s3_release_upload(&u->be->claims, u->digest);
    u->claimed = 0;
    u->rc = rc;
    return;
  }
}

static void up_submit(struct up *u, enum up_step step);

static void up_retry(uv_timer_t *t)
{
  up_submit(t->data, UP_CHECK);
}

static void up_hook_poll(uv_timer_t *t)
{
  up_submit(t->data, UP_HOOK);
}

static void on_put(const struct s3_result *res, void *arg)
{
  struct up *u = arg;
  char hex[65];
  if (res->status < 0) {
    core_hex_encode(u->digest, 32, hex);
    snprintf(u->msg, sizeof(u->msg), "S3 upload of chunk %s failed: %s%s%s", hex,
             core_strerror(res->status), res->message[0] ? ": " : "", res->message);
    up_end(u, res->status, 0);
    return;
  }
  u->already = res->already_exists;
  atomic_fetch_add(&u->be->st_uploads, 1);
  if (u->already)
    atomic_fetch_add(&u->be->st_upload_existing, 1);
  else
    atomic_fetch_add(&u->be->st_upload_bytes, u->len);
  up_submit(u, u->be->hook_pause ? UP_HOOK : UP_STORE);
}

static void up_done(struct core_job *j, int status)
{
  struct up *u = (struct up *)j;
  if (status < 0 && u->rc == 0)
    u->rc = status;
  switch (u->step) {
  case UP_CHECK:
    if (u->rc == CORE_ELOCKED) {
      if (++u->waits > CLAIM_MAX_WAITS) {
        snprintf(u->msg, sizeof(u->msg), "chunk is being removed by garbage collection for "
                                         "too long");
        up_end(u, CORE_ETIMEOUT, 0);
        return;
      }
      if (u->waits == 1)
        atomic_fetch_add(&u->be->st_claim_waits, 1);
      u->rc = 0;
      uv_timer_start(&u->timer, up_retry, CLAIM_RETRY_MS, 0);
      return;
    }
    if (u->rc < 0) {
      up_end(u, u->rc, 0);
      return;
    }
    if (u->present) {
      up_end(u, 0, 1);
      return;
    }
    if (u->accepted) {
      store_s3_accept_cb fn = u->accepted;
      u->accepted = NULL; /* once, also if the claim wait repeats this step */
      fn(u->arg);
    }
    up_submit(u, UP_HASH);
    return;
  case UP_HASH:
    if (u->rc < 0) {
      up_end(u, u->rc, 0);
      return;
    }
    up_next(u);
    return;
  case UP_HOOK:
    if (u->paused) {
      uv_timer_start(&u->timer, up_hook_poll, HOOK_POLL_MS, 0);
      return;
    }
    up_submit(u, UP_STORE);
    return;
  case UP_STORE:
    up_end(u, u->rc, u->rc == 0 && u->already);
    return;
  }
}

static void up_submit(struct up *u, enum up_step step)
{
  u->step = step;
  int rc = core_job_submit_bulk(u->be->loop, &u->job, up_run, up_done);
  if (rc < 0) {
    u->rc = rc;
    up_end(u, rc, 0);
  }
}

/* The PUT: the object may exist (412), which is as good as uploading it. */
static void up_next(struct up *u)
{
  char key[S3_KEY_MAX + 1];
  store_s3_chunk_key(u->be, u->digest, key);
  store_s3_put(u->be, key, u->data, u->len, 1, u->h.sha256_hex, NULL, on_put, u);
}

void store_s3_chunk_upload(struct store_datastore *ds, const uint8_t digest[32], uint64_t size,
                           void *data, size_t len, int no_cache, store_s3_chunk_cb cb,
                           void *arg)
{
  store_s3_chunk_upload_ack(ds, digest, size, data, len, no_cache, NULL, cb, arg);
}

void store_s3_chunk_upload_ack(struct store_datastore *ds, const uint8_t digest[32],
                               uint64_t size, void *data, size_t len, int no_cache,
                               store_s3_accept_cb accepted, store_s3_chunk_cb cb, void *arg)
{
  struct up *u = core_new(struct up);
  u->ds = ds;
  u->be = ds->backend;
  memcpy(u->digest, digest, 32);
  u->size = size;
  u->data = data;
  u->len = len;
  u->no_cache = no_cache;
  u->cb = cb;
  u->accepted = accepted;
  u->arg = arg;
  uv_timer_init(u->be->loop, &u->timer);
  u->timer.data = u;
  up_submit(u, UP_CHECK);
}

/* ---- read ------------------------------------------------------------------ */

enum rd_step { RD_LOCAL, RD_STORE };

struct rd {
  struct core_job job;
  struct store_datastore *ds;
  struct store_backend *be;
  enum rd_step step;
  uint8_t digest[32];
  store_s3_read_cb cb;
  void *arg;
  struct store_chunk_alloc alloc;
  /* job-owned */
  struct store_chunkstore *cs;
  int claimed;
  int hit;
  int rc;
  uint8_t *data;  /* from alloc */
  size_t len;
  size_t cap;
};

static void rd_end(struct rd *r, int rc)
{
  if (r->claimed)
    store_s3_release_upload(&r->be->claims, r->digest);
  if (rc < 0) {
    if (r->data)
      r->alloc.put(r->alloc.ctx, r->data, r->cap);
    r->cb(r->arg, rc, NULL, 0, 0);
  } else {
    r->cb(r->arg, 0, r->data, r->len, r->cap);
  }
  core_free(r);
}

static void rd_run(struct core_job *j)
{
  struct rd *r = (struct rd *)j;
  if (r->step == RD_LOCAL) {
    int rc = store_datastore_chunks(r->ds, &r->cs);
    if (rc < 0) {
      r->rc = rc;
      return;
    }
    struct core_buf b;
    core_buf_init(&b, STORE_CHUNK_MAX_ENCODED);
    rc = store_chunk_read_into(r->cs, r->digest, &r->alloc, &b);
    if (rc > 0 && format_blob_verify_crc(b.base, b.len) == 0) {
      r->data = (uint8_t *)b.base;
      r->len = b.len;
      r->cap = b.cap;
      r->hit = 1;
      store_s3_cache_use(&r->be->cache, r->digest);
      r->rc = 0;
      return;
    }
    if (b.base)
      r->alloc.put(r->alloc.ctx, b.base, b.cap);
    if (rc < 0 && rc != CORE_ENOTFOUND) {
      r->rc = rc;
      return;
    }
    /* A marker, no file, or bytes cut short: fetch it. */
    r->claimed = store_s3_claim_upload(&r->be->claims, r->digest) == 0;
    r->rc = 0;
    return;
  }
  /* RD_STORE: bytes from the bucket. */
  r->rc = format_blob_verify_crc(r->data, r->len);
  if (r->rc == 0 && r->claimed) {
    int rc = cache_insert(r->ds, r->cs, r->digest, r->data, r->len, NULL);
    if (rc < 0) {
      char hex[65];
      core_hex_encode(r->digest, 32, hex);
      core_warn("datastore %s: cannot cache chunk %s: %s", r->ds->name, hex, core_strerror(rc));
    }
  }
  if (r->claimed) {
    store_s3_release_upload(&r->be->claims, r->digest);
    r->claimed = 0;
  }
}

static void rd_done(struct core_job *j, int status);

static void on_get(const struct s3_result *res, void *arg)
{
  struct rd *r = arg;
  int rc = res->status;
  if (rc == 0 && res->body.len > STORE_CHUNK_MAX_ENCODED)
    rc = CORE_ETOOBIG;
  if (rc < 0) {
    char hex[65];
    core_hex_encode(r->digest, 32, hex);
    if (rc == CORE_ENOTFOUND)
      core_warn("datastore %s: chunk %s is missing in bucket %s", r->ds->name, hex,
                r->be->cfg.bucket);
    else
      core_warn("datastore %s: fetching chunk %s from S3 failed: %s %s", r->ds->name, hex,
                core_strerror(rc), res->message);
    rd_end(r, rc);
    return;
  }
  r->data = r->alloc.get(r->alloc.ctx, res->body.len ? res->body.len : 1, &r->cap);
  if (r->data == NULL) {
    rd_end(r, UV_ENOMEM);
    return;
  }
  memcpy(r->data, res->body.base, res->body.len);
  r->len = res->body.len;
  atomic_fetch_add(&r->be->st_fetches, 1);
  atomic_fetch_add(&r->be->st_fetch_bytes, r->len);
  r->step = RD_STORE;
  int sr = core_job_submit_bulk(r->be->loop, &r->job, rd_run, rd_done);
  if (sr < 0)
    rd_end(r, sr);
}

static void rd_done(struct core_job *j, int status)
{
  struct rd *r = (struct rd *)j;
  int rc = status < 0 ? status : r->rc;
  if (rc < 0 || r->step == RD_STORE || r->hit) {
    rd_end(r, rc);
    return;
  }
  char key[S3_KEY_MAX + 1];
  store_s3_chunk_key(r->be, r->digest, key);
  store_s3_get(r->be, key, STORE_CHUNK_MAX_ENCODED + 1, on_get, r);
}

void store_s3_chunk_read(struct store_datastore *ds, const uint8_t digest[32],
                         const struct store_chunk_alloc *alloc, store_s3_read_cb cb,
                         void *arg)
{
  struct rd *r = core_new(struct rd);
  r->alloc = *alloc;
  r->ds = ds;
  r->be = ds->backend;
  memcpy(r->digest, digest, 32);
  r->cb = cb;
  r->arg = arg;
  r->step = RD_LOCAL;
  int rc = core_job_submit_bulk(r->be->loop, &r->job, rd_run, rd_done);
  if (rc < 0)
    rd_end(r, rc);
}
