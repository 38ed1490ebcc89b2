/* store_reader.c: the reader (restore) session.
 *
 * POST /api2/json/reader opens a session on a finished snapshot and holds a
 * shared snapshot lock, so the snapshot cannot be pruned while it is read.
 * `download` hands out the snapshot's files; downloading an index registers
 * its chunks, and `chunk` serves registered chunks only, so a session can
 * read exactly what its snapshot references. File and chunk reads run in the
 * pool; each response is one bounded buffer (a chunk is at most 16 MiB), and
 * a connection carries one request at a time, which bounds memory per
 * connection.
 */
#include "store/store_session.h"
#include "access/access.h"

#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "store/store_s3.h"
#include "store/store_chunk.h"
#include "format/format_name.h"
#include "store/store_path.h"
#include "store/store_snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK_MAX_READ (16u * 1024 * 1024 + 48)


/* ---- Opening ---------------------------------------------------------- */

static void open_run(struct core_job *j)
{
  struct store_open *o = (struct store_open *)j;
  struct store_session *s = o->s;
  char path[4096], lockdir[1024];
  struct store_snapshot_info info;
  int rc = store_snapshot_info(s->ds->path, s->ns, s->type, s->backup_id, s->time, &info);
  if (rc < 0) {
    snprintf(o->err, sizeof(o->err), "snapshot not found");
    goto out;
  }
  int finished = info.finished;
  store_snapshot_info_free(&info);
  if (!finished) {
    rc = CORE_ENOTFOUND;
    snprintf(o->err, sizeof(o->err), "snapshot is not finished (a backup is writing it, "
                                     "or was interrupted)");
    goto out;
  }
  rc = store_lock_dir(lockdir, sizeof(lockdir), s->table->api->run_dir, s->ds->name);
  if (rc >= 0)
    rc = store_lock_snapshot(lockdir, s->ns, s->type, s->backup_id, s->time,
                             STORE_LOCK_SHARED, &s->locks[0]);
  if (rc < 0) {
    /* Finished, yet locked exclusively: by the backup that is finishing it
     * (it keeps the lock until its reply) or by a delete. Which one is not
     * known here, so the message names both. */
    snprintf(o->err, sizeof(o->err), "%s",
             rc == CORE_ELOCKED ? "snapshot is locked: a backup is finishing it or it is "
                                  "being removed; retry"
                                : core_strerror(rc));
    goto out;
  }
  s->nlocks = 1;
  rc = store_path_snapshot(path, sizeof(path), s->ds->path, s->ns, s->type, s->backup_id,
                           s->time);
  if (rc >= 0) {
    s->dir = core_strdup(path);
    rc = 0;
  }
out:
  o->rc = rc;
}

static void open_done(struct core_job *j, int status)
{
  struct store_open *o = (struct store_open *)j;
  struct store_session *s = o->s;
  int rc = status < 0 ? status : o->rc;
  if (rc < 0) {
    http_respond_error(o->req, rc == CORE_ELOCKED ? 409 : http_status_for(rc), "%s",
                       o->err[0] ? o->err : core_strerror(rc));
    store_session_free(s);
  } else {
    store_session_publish(s);
    char body[48];
    int n = snprintf(body, sizeof(body), "\"%s\"", s->id);
    http_respond_data(o->req, body, (size_t)n);
  }
  core_free(o);
}

static void h_open(struct http_request *req, void *ctx)
{
  struct store_open *o = core_new(struct store_open);
  store_session_open(ctx, req, STORE_SESSION_READER, STORE_OP_READ, o, open_run,
                     open_done);
}

static void close_drained(struct store_session *s)
{
  /* One line per session: what a sync or restore read (tests count it). */
  core_info("reader session %s/%s closed: %llu chunks served", s->type, s->backup_id,
            (unsigned long long)s->chunks_served);
  /* Unlocking is a close() on a tmpfs file: no need for the pool. */
  store_session_free(s);
}

void store__reader_close(struct store_session *s)
{
  if (s->state != STORE_SESSION_ENDING)
    store_session_end(s, close_drained);
}

static void h_close(struct http_request *req, void *ctx)
{
  struct store_session *s = store_session_enter(ctx, req, STORE_SESSION_READER);
  if (s == NULL)
    return;
  http_respond_data(req, NULL, 0);
  store__reader_close(s);
  store_session_leave(s);
}

static void h_download(struct http_request *req, void *ctx)
{
  struct store_session *s = store_session_enter(ctx, req, STORE_SESSION_READER);
  if (s == NULL)
    return;
  const char *name = http_req_param(req, "file-name");
  if (name == NULL || format_name_archive(name) < 0) {
    http_respond_error(req, 400, "invalid file-name");
    store_session_leave(s);
    return;
  }
  store_session_send_file(s, req, core_asprintf("%s/%s", s->dir, name));
}

/* ---- chunk ------------------------------------------------------------ */

struct read_job {
  struct core_job job;
  struct http_request *req;
  struct store_session *s;
  uint8_t digest[32];             /* in */
  struct store_chunkstore *cs;    /* resolved in the pool */
  int rc;                         /* out */
  uint8_t *data;                  /* out, owned until responded */
  size_t len;
  size_t cap;                     /* out: data is from the body pool (capacity), or 0 */
};

/* The chunk is read into recycled memory from the HTTP server's body pool:
 * a fresh buffer per chunk cost a page fault and a zeroed page per 4 KiB,
 * over a third of cairnd's CPU time in a restore. */
static void *pool_get(void *req, size_t len, size_t *cap)
{
  return http_req_pool_get(req, len, cap);
}

static void pool_put(void *req, void *buf, size_t cap)
{
  http_req_pool_put(req, buf, cap);
}

static void chunk_run(struct core_job *j)
{
  struct read_job *r = (struct read_job *)j;
  struct store_chunk_alloc alloc = {pool_get, pool_put, r->req};
  struct core_buf b;
  core_buf_init(&b, CHUNK_MAX_READ);
  int rc = store_datastore_chunks(r->s->ds, &r->cs);
  if (rc == 0)
    rc = store_chunk_read_into(r->cs, r->digest, &alloc, &b);
  if (rc < 0) {
    if (b.base)
      pool_put(r->req, b.base, b.cap);
    r->rc = rc;
    return;
  }
  r->cap = b.cap;
  r->len = b.len;
  r->data = (uint8_t *)b.base;
  r->rc = 0;
}

static void chunk_done(struct core_job *j, int status)
{
  struct read_job *r = (struct read_job *)j;
  int rc = status < 0 ? status : r->rc;
  if (rc < 0) {
    char hex[65];
    core_hex_encode(r->digest, 32, hex);
    http_respond_error(r->req, http_status_for(rc), "cannot read chunk %s: %s", hex,
                       core_strerror(rc));
  } else {
    r->s->chunks_served++;
    /* pooled memory, or (cap 0) an S3 fetch that did not fit it: freed */
    http_respond_pooled(r->req, 200, "application/octet-stream", r->data, r->len, r->cap);
  }
  store_session_leave(r->s);
  core_free(r);
}

/* S3 datastores: from the cache, or fetched from the bucket. */
static void chunk_s3_done(void *arg, int err, uint8_t *data, size_t len, size_t cap)
{
  struct read_job *r = arg;
  r->rc = err;
  r->data = data;
  r->len = len;
  r->cap = cap;
  chunk_done(&r->job, 0);
}

static void h_chunk(struct http_request *req, void *ctx)
{
  struct store_session *s = store_session_enter(ctx, req, STORE_SESSION_READER);
  if (s == NULL)
    return;
  const char *digest = http_req_param(req, "digest");
  uint8_t d[32];
  if (digest == NULL || !core_is_digest_hex(digest)) {
    http_respond_error(req, 400, "digest must be 64 lowercase hex characters");
    store_session_leave(s);
    return;
  }
  core_hex_decode(digest, 32, d);
  if (!store_digestset_get(&s->known, d, NULL)) {
    http_respond_error(req, 403, "chunk %s is not referenced by a downloaded index", digest);
    store_session_leave(s);
    return;
  }
  struct read_job *r = core_new(struct read_job);
  r->req = req;
  r->s = s;
  memcpy(r->digest, d, 32);
  if (store_datastore_is_s3(s->ds)) {
    struct store_chunk_alloc alloc = {pool_get, pool_put, req};
    store_s3_chunk_read(s->ds, d, &alloc, chunk_s3_done, r);
    return;
  }
  int rc = core_job_submit_bulk(s->table->loop, &r->job, chunk_run, chunk_done);
  if (rc < 0) {
    r->rc = rc;
    chunk_done(&r->job, rc);
  }
}

void store__reader_register(struct http_server *srv, struct store_sessions *t)
{
  const struct http_route routes[] = {
    {HTTP_METHOD_POST, "/api2/json/reader", h_open, t, 0, 0,
     ACCESS_NEEDS_OR(ACCESS_PRIV_DATASTORE_READ, ACCESS_PRIV_DATASTORE_BACKUP, ACCESS_ON_NS, ACCESS_IF_GROUP_OWNER)},
    {HTTP_METHOD_DELETE, "/api2/json/reader/{session}", h_close, t, 0, 0,
     ACCESS_AUTHENTICATED},
    {HTTP_METHOD_GET, "/api2/json/reader/{session}/download", h_download, t, 0, 0,
     ACCESS_AUTHENTICATED},
    {HTTP_METHOD_GET, "/api2/json/reader/{session}/chunk", h_chunk, t, 0, 0,
     ACCESS_AUTHENTICATED},
  };
  http_server_add_routes(srv, routes, sizeof(routes) / sizeof(routes[0]));
}
