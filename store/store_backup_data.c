/* store_backup_data.c: what a backup session stores: index writers (open,
 * append, close), chunks, blobs, and the previous snapshot's files.
 *
 * Chunks are verified (CRC rewritten, SHA-256 of the plaintext equal to the
 * digest, length equal to the announced size) and inserted in the pool; the
 * digest then becomes "known" to the session with its size. Index appends
 * may only reference known digests: uploaded in this session or registered
 * through `previous`. Indexes are built in memory and written with temp file
 * + rename at close, after count, size and checksum agree with the client's.
 * Blobs are written when uploaded, except that the manifest is stored under
 * its upload name until finish (store_backup.h, MANIFEST_UPLOAD_NAME).
 */
#include "store/store_backup.h"
#include "access/access.h"
#include "store/store_s3.h"

#include "core/core_alloc.h"
#include "core/core_config.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "core/core_parse.h"
#include "format/format_blob.h"
#include "format/format_name.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int writer_name_taken(const struct store_backup *b, const char *name)
{
  for (int i = 1; i <= MAX_WRITERS; i++)
    if (b->writers[i].kind && strcmp(b->writers[i].name, name) == 0)
      return 1;
  return store__backup_has_file(b, name);
}

/* ---- Writers ---------------------------------------------------------- */

static struct writer *get_writer(struct http_request *req, struct store_backup *b,
                                 enum writer_kind kind)
{
  uint64_t wid;
  if (core_parse_u64(http_req_param(req, "wid"), &wid) < 0 || wid < 1 || wid > MAX_WRITERS ||
      b->writers[wid].kind != kind || b->writers[wid].closing) {
    http_respond_error(req, 400, "invalid or unknown writer id 'wid'");
    return NULL;
  }
  return &b->writers[wid];
}

static void open_writer(struct http_request *req, void *ctx, enum writer_kind kind)
{
  struct store_session *s = store_session_enter(ctx, req, STORE_SESSION_BACKUP);
  if (s == NULL)
    return;
  struct store_backup *b = store__backup(s);
  const char *name = http_req_param(req, "archive-name");
  const char *ext = kind == WRITER_FIXED ? ".fidx" : ".didx";
  size_t nlen = name ? strlen(name) : 0;
  if (name == NULL || format_name_archive(name) < 0 || nlen < 6 ||
      strcmp(name + nlen - 5, ext) != 0) {
    http_respond_error(req, 400, "archive-name must be a valid *%s file name", ext);
    goto out;
  }
  if (writer_name_taken(b, name)) {
    http_respond_error(req, 409, "archive '%s' is already being written", name);
    goto out;
  }
  int wid = 0;
  for (int i = 1; i <= MAX_WRITERS && !wid; i++)
    if (!b->writers[i].kind)
      wid = i;
  if (!wid) {
    http_respond_error(req, 409, "too many open writers");
    goto out;
  }
  struct writer *w = &b->writers[wid];
  memset(w, 0, sizeof(*w));
  if (kind == WRITER_FIXED) {
    const char *size = http_req_param(req, "size");
    w->limit = FIXED_MAX_SIZE;
    w->size_given = size != NULL;
    if (size && (core_parse_u64(size, &w->limit) < 0 || w->limit > FIXED_MAX_SIZE)) {
      http_respond_error(req, 400, "size must be 0..%llu (16 TiB)",
                         (unsigned long long)FIXED_MAX_SIZE);
      goto out;
    }
    if (http_req_param(req, "reuse-csum")) {
      http_respond_error(req, 400, "reuse-csum is not supported; upload with "
                                   "'previous' registration instead");
      goto out;
    }
  } else {
    format_didx_writer_init(&w->didx, (int64_t)time(NULL), 0);
  }
  w->kind = kind;
  w->name = core_strdup(name);
  char body[16];
  int n = snprintf(body, sizeof(body), "%d", wid);
  http_respond_data(req, body, (size_t)n);
out:
  store_session_leave(s);
}

static void h_fixed_index(struct http_request *req, void *ctx)
{
  open_writer(req, ctx, WRITER_FIXED);
}

static void h_dynamic_index(struct http_request *req, void *ctx)
{
  open_writer(req, ctx, WRITER_DYNAMIC);
}

/* ---- Fixed positions ----
 * A fixed index's digests are kept in an open-addressing hash table keyed by
 * position (linear probing, at most 3/4 full), not in an array indexed by
 * position: a client may name any position below the image size in any order
 * (QEMU writes where the guest wrote), and an array would commit memory for
 * the largest position it names. The table holds 36 bytes per distinct
 * position appended, at most 96 with the slack of the table, and is bounded
 * by the image size because positions beyond it are refused. Positions are
 * below 2^22 (FIXED_MAX_SIZE), so a multiplicative hash spreads them well
 * enough; a client that picks colliding positions only slows its own appends
 * down, boundedly. */

static uint64_t fixed_hash(uint32_t key, uint64_t nslots)
{
  return ((key * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & (nslots - 1);
}

/* The slot of `key`, or the empty slot where it would go. */
static struct fixed_slot *fixed_slot(struct fixed_slot *slots, uint64_t nslots, uint32_t key)
{
  uint64_t i = fixed_hash(key, nslots);
  while (slots[i].key != 0 && slots[i].key != key)
    i = (i + 1) & (nslots - 1);
  return &slots[i];
}

static int fixed_grow(struct writer *w)
{
  uint64_t n = w->nslots ? w->nslots * 2 : 64;
  struct fixed_slot *slots = core_try_malloc(n * sizeof(*slots));
  if (slots == NULL)
    return UV_ENOMEM;
  memset(slots, 0, n * sizeof(*slots));
  for (uint64_t i = 0; i < w->nslots; i++)
    if (w->slots[i].key)
      *fixed_slot(slots, n, w->slots[i].key) = w->slots[i];
  core_free(w->slots);
  w->slots = slots;
  w->nslots = n;
  return 0;
}

static const uint8_t *fixed_get(const struct writer *w, uint64_t pos)
{
  if (w->nslots == 0)
    return NULL;
  struct fixed_slot *e = fixed_slot(w->slots, w->nslots, (uint32_t)(pos + 1));
  return e->key ? e->digest : NULL;
}

/* Sets position `pos` (< limit / chunk size, checked by the caller). */
static int fixed_set(struct writer *w, uint64_t pos, const uint8_t digest[32], uint32_t len)
{
  if ((w->used + 1) * 4 > w->nslots * 3) {
    int rc = fixed_grow(w);
    if (rc < 0)
      return rc;
  }
  struct fixed_slot *e = fixed_slot(w->slots, w->nslots, (uint32_t)(pos + 1));
  if (e->key == 0) {
    e->key = (uint32_t)(pos + 1);
    w->used++;
  }
  memcpy(e->digest, digest, 32);
  if (pos + 1 > w->count) {
    w->count = pos + 1;
    w->last_len = len;
  } else if (pos + 1 == w->count) {
    w->last_len = len;
  }
  return 0;
}

/* PUT fixed_index / dynamic_index: {wid, digest-list, offset-list}. The
 * offsets are start offsets; each digest must be known to the session. */
static void append_index(struct http_request *req, void *ctx, enum writer_kind kind)
{
  struct store_session *s = store_session_enter(ctx, req, STORE_SESSION_BACKUP);
  if (s == NULL)
    return;
  struct store_backup *b = store__backup(s);
  struct writer *w = get_writer(req, b, kind);
  if (w == NULL)
    goto out;
  yajl_val json = http_req_json(req);
  yajl_val dl = core_json_get(json, "digest-list");
  yajl_val ol = core_json_get(json, "offset-list");
  if (dl == NULL || ol == NULL || !YAJL_IS_ARRAY(dl) || !YAJL_IS_ARRAY(ol) ||
      dl->u.array.len != ol->u.array.len) {
    http_respond_error(req, 400, "digest-list and offset-list must be arrays of equal length");
    goto out;
  }
  for (size_t i = 0; i < dl->u.array.len; i++) {
    yajl_val d = dl->u.array.values[i], o = ol->u.array.values[i];
    uint8_t digest[32];
    uint32_t len;
    if (!YAJL_IS_STRING(d) || !core_is_digest_hex(d->u.string) || !YAJL_IS_INTEGER(o) ||
        YAJL_GET_INTEGER(o) < 0) {
      http_respond_error(req, 400, "entry %zu: malformed digest or offset", i);
      goto out;
    }
    core_hex_decode(d->u.string, 32, digest);
    if (!store_digestset_get(&s->known, digest, &len)) {
      http_respond_error(req, 400, "entry %zu: unknown chunk %s (upload it first)", i,
                         d->u.string);
      goto out;
    }
    uint64_t off = (uint64_t)YAJL_GET_INTEGER(o);
    int rc;
    if (kind == WRITER_DYNAMIC) {
      if (off != w->didx.end) {
        http_respond_error(req, 400, "entry %zu: offset %" PRIu64 " is not contiguous "
                           "(expected %" PRIu64 ")", i, off, w->didx.end);
        goto out;
      }
      rc = format_didx_writer_append(&w->didx, off + len, digest);
    } else {
      if (off % FIXED_CHUNK_SIZE != 0 || len > FIXED_CHUNK_SIZE || len == 0) {
        http_respond_error(req, 400, "entry %zu: offset %" PRIu64 " is not aligned to the "
                           "chunk size", i, off);
        goto out;
      }
      /* The chunk must lie within the image: the size given at open, else
       * the largest image allowed. */
      if (off >= w->limit || len > w->limit - off) {
        http_respond_error(req, 400, "entry %zu: chunk at offset %" PRIu64 " ends beyond "
                           "the image size %" PRIu64, i, off, w->limit);
        goto out;
      }
      rc = fixed_set(w, off / FIXED_CHUNK_SIZE, digest, len);
    }
    if (rc < 0) {
      http_respond_errno(req, rc, "cannot append to the index");
      goto out;
    }
  }
  http_respond_data(req, NULL, 0);
out:
  store_session_leave(s);
}

static void h_fixed_append(struct http_request *req, void *ctx)
{
  append_index(req, ctx, WRITER_FIXED);
}

static void h_dynamic_append(struct http_request *req, void *ctx)
{
  append_index(req, ctx, WRITER_DYNAMIC);
}

/* ---- Chunks ----------------------------------------------------------- */

struct chunk_job {
  struct core_job job;
  struct http_request *req;
  struct store_session *s;
  /* in */
  struct store_chunkstore *cs;
  uint8_t digest[32];
  uint64_t size;
  void *data;            /* the request body, borrowed until the response */
  size_t len;
  /* S3 write-behind: acknowledged while the upload runs (store_backup.h) */
  int detached;
  struct http_body body; /* taken from the request when detached */
  /* out */
  int rc;
  int duplicate;
  char err[384];         /* S3 datastores: why the upload failed */
};

static void chunk_run(struct core_job *j)
{
  struct chunk_job *c = (struct chunk_job *)j;
  int rc = format_blob_accept_chunk(NULL, c->data, c->len, c->digest, c->size);
  struct store_chunk_insert_result res;
  if (rc >= 0)
    rc = store_chunk_insert(c->cs, c->digest, c->data, c->len, &res);
  if (rc >= 0)
    c->duplicate = res.duplicate;
  c->rc = rc < 0 ? rc : 0;
}

/* chunk_upload_stats and the datastore's counters, for a stored chunk. */
static void chunk_account(struct chunk_job *c)
{
  struct store_session *s = c->s;
  struct store_backup *b = store__backup(s);
  b->up_count++;
  b->up_size += c->size;
  b->up_compressed += c->len;
  b->up_duplicates += c->duplicate;
  struct store_ds_stats *st = &s->ds->stats;
  core_counter_add(c->duplicate ? &st->chunks_present : &st->chunks_new, 1);
  core_counter_add(&st->bytes_received, c->len);
  core_counter_add(&st->raw_received, c->size);
  if (!c->duplicate) {
    core_counter_add(&st->bytes_stored, c->len);
    core_counter_add(&st->raw_stored, c->size);
  }
}

/* The answer for a chunk that is stored (or, detached, being uploaded):
 * known to the session from now on. Returns 0 or the error answered. */
static int chunk_respond_ok(struct chunk_job *c)
{
  struct store_session *s = c->s;
  char hex[65];
  int rc;
  core_hex_encode(c->digest, 32, hex);
  if (s->state != STORE_SESSION_OPEN) {
    http_respond_error(c->req, 409, "session ended while the chunk was stored");
    return CORE_EABORTED;
  }
  if ((rc = store_digestset_add(&s->known, c->digest, (uint32_t)c->size)) < 0) {
    http_respond_errno(c->req, rc, "too many chunks in one session");
    return rc;
  }
  char body[80];
  int n = snprintf(body, sizeof(body), "\"%s\"", hex);
  http_respond_data(c->req, body, (size_t)n);
  return 0;
}

static void chunk_done(struct core_job *j, int status)
{
  struct chunk_job *c = (struct chunk_job *)j;
  struct store_session *s = c->s;
  int rc = status < 0 ? status : c->rc;
  char hex[65];
  core_hex_encode(c->digest, 32, hex);
  if (rc < 0) {
    int code = http_status_for(rc);
    http_respond_error(c->req, code, "chunk %s rejected: %s", hex,
                       c->err[0] ? c->err : core_strerror(rc));
  } else if (chunk_respond_ok(c) == 0) {
    chunk_account(c);
  }
  store_session_leave(s);
  core_free(c);
}

/* S3 datastores: the bucket first, then the cache (store_s3.h). With room
 * in the session's write-behind the chunk is answered when its PUT starts
 * (chunk_s3_accepted) and the upload ends detached: its result goes to the
 * session, whose finish waits for it (store_backup.h). */
static void chunk_s3_done(void *arg, int err, int duplicate, const char *msg)
{
  struct chunk_job *c = arg;
  c->rc = err;
  c->duplicate = duplicate;
  if (err < 0 && msg)
    snprintf(c->err, sizeof(c->err), "%s", msg);
  if (!c->detached) {
    chunk_done(&c->job, 0);
    return;
  }
  struct store_session *s = c->s;
  struct store_backup *b = store__backup(s);
  if (err < 0) {
    if (b->s3_failed == 0) {
      char hex[65];
      core_hex_encode(c->digest, 32, hex);
      b->s3_failed = err;
      if (msg)
        snprintf(b->s3_err, sizeof(b->s3_err), "%s", msg); /* names the chunk */
      else
        snprintf(b->s3_err, sizeof(b->s3_err), "S3 upload of chunk %s failed: %s", hex,
                 core_strerror(err));
      core_warn("backup %s: %s", s->id, b->s3_err);
    }
  } else {
    chunk_account(c);
  }
  http_body_release(&c->body);
  b->s3_pending--;
  b->s3_pending_bytes -= c->len;
  core_free(c);
  if (b->s3_pending == 0 && b->finish_wait)
    store__backup_finish_resume(s);
  store_session_leave(s); /* the chunk request's operation, kept until now */
}

static void chunk_s3_accepted(void *arg)
{
  struct chunk_job *c = arg;
  struct store_backup *b = store__backup(c->s);
  /* Past the session's share, or when the server's taken bodies hold half
   * its body budget, the chunk is answered when its upload ends, as without
   * write-behind. */
  if (b->s3_pending_bytes + c->len > STORE_S3_WRITE_BEHIND ||
      http_req_take_body(c->req, &c->body) < 0) {
    b->s3_full++;
    return;
  }
  b->s3_detached++;
  c->detached = 1;
  b->s3_pending++;
  b->s3_pending_bytes += c->len;
  /* The PUT reads the body after the request is answered and freed. */
  chunk_respond_ok(c);
  c->req = NULL;
}

static void upload_chunk(struct http_request *req, void *ctx, enum writer_kind kind)
{
  struct store_session *s = store_session_enter(ctx, req, STORE_SESSION_BACKUP);
  if (s == NULL)
    return;
  struct store_backup *b = store__backup(s);
  const char *digest = http_req_param(req, "digest");
  uint64_t size, esize;
  struct core_slice body = http_req_body(req);
  if (get_writer(req, b, kind) == NULL)
    goto fail;
  if (digest == NULL || !core_is_digest_hex(digest)) {
    http_respond_error(req, 400, "digest must be 64 lowercase hex characters");
    goto fail;
  }
  if (core_parse_u64(http_req_param(req, "size"), &size) < 0 || size < 1 ||
      size > 16u * 1024 * 1024) {
    http_respond_error(req, 400, "size must be 1..16777216");
    goto fail;
  }
  if (core_parse_u64(http_req_param(req, "encoded-size"), &esize) < 0 || esize < 13 ||
      esize > CHUNK_MAX_BODY || esize != body.len) {
    http_respond_error(req, 400, "encoded-size must equal the body length (13..%u)",
                       CHUNK_MAX_BODY);
    goto fail;
  }
  struct chunk_job *c = core_new(struct chunk_job);
  c->req = req;
  c->s = s;
  c->cs = b->cs;
  core_hex_decode(digest, 32, c->digest);
  c->size = size;
  c->data = (void *)body.base;
  c->len = body.len;
  if (store_datastore_is_s3(s->ds)) {
    if (b->s3_failed) {
      http_respond_error(req, http_status_for(b->s3_failed),
                         "chunk %s rejected after an earlier failure: %s", digest, b->s3_err);
      core_free(c);
      goto fail;
    }
    store_s3_chunk_upload_ack(s->ds, c->digest, c->size, c->data, c->len, b->no_cache,
                              chunk_s3_accepted, chunk_s3_done, c);
    return;
  }
  int rc = core_job_submit_bulk(s->table->loop, &c->job, chunk_run, chunk_done);
  if (rc < 0) {
    c->rc = rc;
    chunk_done(&c->job, rc);
  }
  return;
fail:
  store_session_leave(s);
}

static void h_fixed_chunk(struct http_request *req, void *ctx)
{
  upload_chunk(req, ctx, WRITER_FIXED);
}

static void h_dynamic_chunk(struct http_request *req, void *ctx)
{
  upload_chunk(req, ctx, WRITER_DYNAMIC);
}

/* ---- Files: closing indexes, blobs ------------------------------------ */

struct file_job {
  struct core_job job;
  struct http_request *req;
  struct store_session *s;
  int wid;                       /* closing writer, or 0 for a blob */
  /* in */
  char *name;                    /* owned: the archive name */
  char *path;                    /* owned: destination (the manifest: its upload name) */
  const void *data;              /* borrowed (writer image or request body) */
  size_t len;
  const void *data2;             /* second part (fixed index entries) */
  size_t len2;
  int is_blob;
  int do_fsync;
  /* out */
  int rc;
};

static void file_run(struct core_job *j)
{
  struct file_job *f = (struct file_job *)j;
  if (f->is_blob) {
    f->rc = format_blob_verify_crc(f->data, f->len);
    if (f->rc == 0)
      f->rc = core_file_replace(f->path, f->data, f->len, 0644, 1);
    return;
  }
  struct core_slice parts[2] = {{f->data, f->len}, {f->data2, f->len2}};
  f->rc = format_index_write_file(f->path, parts, f->len2 ? 2 : 1, f->do_fsync);
}

static void file_finish(struct file_job *f, int rc, const char *msg)
{
  struct store_session *s = f->s;
  struct store_backup *b = store__backup(s);
  const char *name = f->name;
  if (rc < 0) {
    http_respond_error(f->req, http_status_for(rc), "cannot write %s: %s", name,
                       msg ? msg : core_strerror(rc));
    if (f->wid) {
      b->writers[f->wid].closing = 0;
      format_fidx_writer_free(&b->writers[f->wid].fidx);
    }
  } else if (b->nfiles == MAX_FILES) {
    http_respond_error(f->req, 400, "too many files in one snapshot");
  } else {
    if (!store__backup_has_file(b, name))
      b->files[b->nfiles++] = core_strdup(name);
    if (f->wid)
      store__backup_writer_free(&b->writers[f->wid]);
    http_respond_data(f->req, NULL, 0);
  }
  core_free(f->name);
  core_free(f->path);
  core_free(f);
  store_session_leave(s);
}

static void file_mirrored(void *arg, int err, const char *msg)
{
  file_finish(arg, err, msg);
}

/* S3 datastores: a file counts as written once the bucket has it too. */
static void file_done(struct core_job *j, int status)
{
  struct file_job *f = (struct file_job *)j;
  int rc = status < 0 ? status : f->rc;
  /* The manifest goes to the bucket at finish, last (store_backup.c). */
  if (rc == 0 && store_datastore_is_s3(f->s->ds) && strcmp(f->name, MANIFEST_NAME) != 0) {
    const char *rel = store_s3_rel(f->s->ds, f->path);
    store_s3_mirror(f->s->ds, &rel, 1, 0, file_mirrored, f);
    return;
  }
  file_finish(f, rc, NULL);
}

static void submit_file(struct store_session *s, struct http_request *req, int wid,
                        const char *name, const void *data, size_t len, const void *data2,
                        size_t len2, int is_blob)
{
  struct file_job *f = core_new(struct file_job);
  f->req = req;
  f->s = s;
  f->wid = wid;
  f->name = core_strdup(name);
  /* The manifest only becomes index.json.blob at finish (store_backup.h). */
  f->path = core_asprintf("%s/%s", s->dir,
                          strcmp(name, MANIFEST_NAME) == 0 ? MANIFEST_UPLOAD_NAME : name);
  f->data = data;
  f->len = len;
  f->data2 = data2;
  f->len2 = len2;
  f->is_blob = is_blob;
  f->do_fsync = atomic_load(&s->ds->sync_level) == STORE_SYNC_FILE;
  int rc = core_job_submit(s->table->loop, &f->job, file_run, file_done);
  if (rc < 0) {
    f->rc = rc;
    file_done(&f->job, rc);
  }
}

static void close_writer(struct http_request *req, void *ctx, enum writer_kind kind)
{
  struct store_session *s = store_session_enter(ctx, req, STORE_SESSION_BACKUP);
  if (s == NULL)
    return;
  struct store_backup *b = store__backup(s);
  struct writer *w = get_writer(req, b, kind);
  uint64_t count, size;
  const char *csum_hex = http_req_param(req, "csum");
  uint8_t csum[32], mine[32];
  if (w == NULL)
    goto fail;
  if (core_parse_u64(http_req_param(req, "chunk-count"), &count) < 0 ||
      core_parse_u64(http_req_param(req, "size"), &size) < 0 || csum_hex == NULL ||
      !core_is_digest_hex(csum_hex)) {
    http_respond_error(req, 400, "chunk-count, size and csum are required");
    goto fail;
  }
  core_hex_decode(csum_hex, 32, csum);
  uint64_t my_count, my_size;
  if (kind == WRITER_DYNAMIC) {
    if (w->didx.count != count || w->didx.end != size) {
      http_respond_error(req, 400, "index has %" PRIu64 " chunks and %" PRIu64 " bytes, "
                         "client says %" PRIu64 " and %" PRIu64, w->didx.count,
                         w->didx.end, count, size);
      goto fail;
    }
    /* Finishing is one-shot: compare a copy of the running checksum first, so
     * a refused close leaves the writer open for a corrected retry. A close
     * whose file could not be written (a full disk) finished the writer:
     * its retry compares with the checksum that finish recorded. */
    if (w->didx.finished) {
      format_didx_writer_finish(&w->didx, mine, NULL, NULL);
    } else {
      struct core_sha256 probe;
      core_sha256_clone(&w->didx.csum, &probe);
      core_sha256_final(&probe, mine);
    }
    if (memcmp(mine, csum, 32) != 0) {
      http_respond_error(req, 400, "index checksum mismatch");
      goto fail;
    }
    format_didx_writer_finish(&w->didx, mine, &my_count, &my_size);
    size_t len;
    const uint8_t *img = format_didx_writer_image(&w->didx, &len);
    w->closing = 1;
    submit_file(s, req, (int)(w - b->writers), w->name, img, len, NULL, 0, 0);
    return;
  }
  /* Fixed: every position up to ceil(size / chunk size) must be set (no
   * position at or beyond it can be, so `used` counts exactly those), and
   * only the last chunk may be short. */
  uint64_t want = size / FIXED_CHUNK_SIZE + (size % FIXED_CHUNK_SIZE != 0);
  int ok = count == want && w->count == want && w->used == want && size <= w->limit &&
           (!w->size_given || w->limit == size);
  if (ok && want > 0)
    ok = w->last_len == size - (want - 1) * FIXED_CHUNK_SIZE;
  if (!ok) {
    http_respond_error(req, 400, "fixed index does not match chunk-count %" PRIu64
                       " and size %" PRIu64, count, size);
    goto fail;
  }
  struct format_fidx_writer *fw = &w->fidx;
  int rc = format_fidx_writer_init(fw, size, FIXED_CHUNK_SIZE, (int64_t)time(NULL));
  for (uint64_t i = 0; rc == 0 && i < want; i++) {
    const uint8_t *digest = fixed_get(w, i); /* set: `used` says so */
    rc = digest ? format_fidx_writer_set(fw, i, digest) : CORE_EINVAL;
  }
  if (rc == 0)
    rc = format_fidx_writer_finish(fw, mine, &my_count, &my_size);
  if (rc == 0 && memcmp(mine, csum, 32) != 0) {
    format_fidx_writer_free(fw);
    http_respond_error(req, 400, "index checksum mismatch");
    goto fail;
  }
  if (rc < 0) {
    format_fidx_writer_free(fw);
    http_respond_errno(req, rc, "cannot build the fixed index");
    goto fail;
  }
  /* The image stays in the writer until the file is written (a failed
   * write leaves the writer open, positions and all, for a retry). */
  size_t len;
  const uint8_t *img = format_fidx_writer_image(fw, &len);
  w->closing = 1;
  submit_file(s, req, (int)(w - b->writers), w->name, img, len, NULL, 0, 0);
  return;
fail:
  store_session_leave(s);
}

static void h_fixed_close(struct http_request *req, void *ctx)
{
  close_writer(req, ctx, WRITER_FIXED);
}

static void h_dynamic_close(struct http_request *req, void *ctx)
{
  close_writer(req, ctx, WRITER_DYNAMIC);
}

static void h_blob(struct http_request *req, void *ctx)
{
  struct store_session *s = store_session_enter(ctx, req, STORE_SESSION_BACKUP);
  if (s == NULL)
    return;
  struct store_backup *b = store__backup(s);
  const char *name = http_req_param(req, "file-name");
  struct core_slice body = http_req_body(req);
  uint64_t esize;
  size_t nlen = name ? strlen(name) : 0;
  if (name == NULL || format_name_archive(name) < 0 || nlen < 6 ||
      strcmp(name + nlen - 5, ".blob") != 0) {
    http_respond_error(req, 400, "file-name must be a valid *.blob file name");
    goto fail;
  }
  if (core_parse_u64(http_req_param(req, "encoded-size"), &esize) < 0 || esize < 12 ||
      esize != body.len) {
    http_respond_error(req, 400, "encoded-size must equal the body length");
    goto fail;
  }
  if (writer_name_taken(b, name) && strcmp(name, MANIFEST_NAME) != 0) {
    http_respond_error(req, 409, "file '%s' was already uploaded", name);
    goto fail;
  }
  submit_file(s, req, 0, name, body.base, body.len, NULL, 0, 1);
  return;
fail:
  store_session_leave(s);
}

/* ---- previous --------------------------------------------------------- */

static void h_previous(struct http_request *req, void *ctx)
{
  struct store_session *s = store_session_enter(ctx, req, STORE_SESSION_BACKUP);
  if (s == NULL)
    return;
  struct store_backup *b = store__backup(s);
  const char *name = http_req_param(req, "archive-name");
  if (name == NULL || format_name_archive(name) < 0) {
    http_respond_error(req, 400, "invalid archive-name");
    store_session_leave(s);
    return;
  }
  if (b->prev_dir == NULL) {
    http_respond_error(req, 404, "no previous snapshot");
    store_session_leave(s);
    return;
  }
  /* Streaming it registers the previous index's chunks as known. */
  store_session_send_file(s, req, core_asprintf("%s/%s", b->prev_dir, name));
}

/* ---- Routes ----------------------------------------------------------- */

void store__backup_data_register(struct http_server *srv, struct store_sessions *t)
{
#define B "/api2/json/backup/{session}/"
  const struct http_route routes[] = {
    {HTTP_METHOD_POST, B "fixed_index", h_fixed_index, t, 0, 0,
     ACCESS_AUTHENTICATED},
    {HTTP_METHOD_POST, B "dynamic_index", h_dynamic_index, t, 0, 0,
     ACCESS_AUTHENTICATED},
    {HTTP_METHOD_PUT, B "fixed_index", h_fixed_append, t, INDEX_APPEND_MAX_BODY, 0,
     ACCESS_AUTHENTICATED},
    {HTTP_METHOD_PUT, B "dynamic_index", h_dynamic_append, t, INDEX_APPEND_MAX_BODY, 0,
     ACCESS_AUTHENTICATED},
    {HTTP_METHOD_POST, B "fixed_chunk", h_fixed_chunk, t, CHUNK_MAX_BODY, HTTP_ROUTE_RAW_BODY,
     ACCESS_AUTHENTICATED},
    {HTTP_METHOD_POST, B "dynamic_chunk", h_dynamic_chunk, t, CHUNK_MAX_BODY,
     HTTP_ROUTE_RAW_BODY,
     ACCESS_AUTHENTICATED},
    {HTTP_METHOD_POST, B "fixed_close", h_fixed_close, t, 0, 0,
     ACCESS_AUTHENTICATED},
    {HTTP_METHOD_POST, B "dynamic_close", h_dynamic_close, t, 0, 0,
     ACCESS_AUTHENTICATED},
    {HTTP_METHOD_POST, B "blob", h_blob, t, BLOB_MAX_BODY, HTTP_ROUTE_RAW_BODY,
     ACCESS_AUTHENTICATED},
    {HTTP_METHOD_GET, B "previous", h_previous, t, 0, 0,
     ACCESS_AUTHENTICATED},
  };
#undef B
  http_server_add_routes(srv, routes, sizeof(routes) / sizeof(routes[0]));
}
