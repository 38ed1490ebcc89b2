/* store_backup.c: the backup session (PBS's backup protocol over HTTP/1.1).
 *
 * POST /api2/json/backup opens a session: in one pool job the group is
 * created (owner file) and locked exclusively, the previous snapshot found
 * and locked shared, the new snapshot directory created and locked
 * exclusively, and a writer registered with the chunk store (GC's oldest
 * writer). Every later call names the session in its path.
 *
 * What the session stores (indexes, chunks, blobs, previous) is in
 * store_backup_data.c. `finish` requires the manifest, checks it against the
 * session, adds the upload statistics to it, syncs the file system at sync
 * level `filesystem`, and only then renames it to index.json.blob (the mark of
 * a finished snapshot; until then it waits under its upload name, see
 * store_backup.h) and drops the locks. An aborted session (DELETE, idle
 * timeout, shutdown) removes its snapshot directory; one a crash interrupted
 * (at any point before that rename) is removed at the next start
 * (store_recover.c).
 */
#include "store/store_backup.h"
#include "access/access.h"
#include "store/store_access.h"
#include "store/store_s3.h"

#include "core/core_alloc.h"
#include "core/core_config.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_testpoint.h"
#include "core/core_file.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "core/core_parse.h"
#include "format/format_blob.h"
#include "store/store_lock.h"
#include "store/store_metrics.h"
#include "format/format_manifest.h"
#include "format/format_name.h"
#include "store/store_path.h"
#include "store/store_snapshot.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int store__backup_has_file(const struct store_backup *b, const char *name)
{
  for (int i = 0; i < b->nfiles; i++)
    if (strcmp(b->files[i], name) == 0)
      return 1;
  return 0;
}

void store__backup_writer_free(struct writer *w)
{
  if (w->kind == WRITER_DYNAMIC)
    format_didx_writer_free(&w->didx);
  core_free(w->name);
  core_free(w->slots);
  format_fidx_writer_free(&w->fidx);
  memset(w, 0, sizeof(*w));
}

static void backup_free(struct store_session *s)
{
  struct store_backup *b = store__backup(s);
  if (b) {
    for (int i = 1; i <= MAX_WRITERS; i++)
      store__backup_writer_free(&b->writers[i]);
    for (int i = 0; i < b->nfiles; i++)
      core_free(b->files[i]);
    core_free(b->prev_dir);
    core_free(b);
    s->ext = NULL;
  }
  store_session_free(s);
}

/* ---- Opening ---------------------------------------------------------- */

struct open_job {
  struct store_open open;       /* first: see store_session_open */
  /* out */
  int64_t prev_time;
  char *prev_dir;
  uint64_t writer_token;
  struct store_chunkstore *cs;
  int no_cache;                 /* in: the no-cache parameter */
};

/* PBS's ownership rule (the owner, or a user for its tokens' groups; the
 * privilege was checked before the session opened); the root user and its
 * tokens may also write anywhere, as Cairn always allowed. */
static int may_write_group(const char *authid, const char *owner)
{
  if (store_access_owns(authid, owner))
    return 1;
  return strncmp(authid, "root@pam", 8) == 0 && (authid[8] == '\0' || authid[8] == '!');
}

static void open_run(struct core_job *j)
{
  struct open_job *o = (struct open_job *)j;
  struct store_session *s = o->open.s;
  const char *base = s->ds->path;
  char *owner = NULL;
  struct store_snapshot_list snaps = {0};
  char path[4096];

  int rc = store_ns_exists(base, s->ns);
  if (rc == 0)
    rc = CORE_ENOTFOUND;
  if (rc < 0) {
    snprintf(o->open.err, sizeof(o->open.err), "namespace '%s' does not exist", s->ns);
    goto out;
  }
  rc = store_group_create(base, s->ns, s->type, s->backup_id, s->authid, &owner);
  if (rc < 0) {
    snprintf(o->open.err, sizeof(o->open.err), "cannot create backup group: %s", core_strerror(rc));
    goto out;
  }
  if (!may_write_group(s->authid, owner)) {
    rc = UV_EPERM;
    snprintf(o->open.err, sizeof(o->open.err), "backup group %s/%s is owned by %s", s->type,
             s->backup_id, owner);
    goto out;
  }
  char lockdir[1024];
  rc = store_lock_dir(lockdir, sizeof(lockdir), s->table->api->run_dir, s->ds->name);
  if (rc >= 0)
    rc = store_lock_group(lockdir, s->ns, s->type, s->backup_id, STORE_LOCK_EXCLUSIVE,
                          &s->locks[s->nlocks]);
  if (rc >= 0)
    s->nlocks++;
  if (rc < 0) {
    snprintf(o->open.err, sizeof(o->open.err), "%s",
             rc == CORE_ELOCKED ? "another backup of this group is running"
                                : core_strerror(rc));
    goto out;
  }
  rc = store_snapshot_list(base, s->ns, s->type, s->backup_id, &snaps);
  if (rc < 0) {
    snprintf(o->open.err, sizeof(o->open.err), "cannot list snapshots: %s", core_strerror(rc));
    goto out;
  }
  o->prev_time = -1;
  for (size_t i = snaps.n; i-- > 0;) {
    if (snaps.items[i].finished) {
      o->prev_time = snaps.items[i].time;
      break;
    }
  }
  if (o->prev_time >= 0 && s->time <= o->prev_time) {
    rc = CORE_EINVAL;
    snprintf(o->open.err, sizeof(o->open.err),
             "backup-time %" PRId64 " is not newer than the last snapshot (%" PRId64 ")",
             s->time, o->prev_time);
    goto out;
  }
  if (o->prev_time >= 0) {
    rc = store_lock_snapshot(lockdir, s->ns, s->type, s->backup_id, o->prev_time,
                             STORE_LOCK_SHARED, &s->locks[s->nlocks]);
    if (rc == 0)
      s->nlocks++;
    if (rc < 0) {
      snprintf(o->open.err, sizeof(o->open.err), "previous snapshot is locked (being removed?)");
      goto out;
    }
    rc = store_path_snapshot(path, sizeof(path), base, s->ns, s->type, s->backup_id,
                             o->prev_time);
    if (rc < 0)
      goto out;
    rc = 0;
    o->prev_dir = core_strdup(path);
  }
  rc = store_snapshot_create(base, s->ns, s->type, s->backup_id, s->time);
  if (rc < 0) {
    snprintf(o->open.err, sizeof(o->open.err), "%s", rc == CORE_EEXISTS ? "snapshot already exists"
                                                              : core_strerror(rc));
    goto out;
  }
  rc = store_lock_snapshot(lockdir, s->ns, s->type, s->backup_id, s->time,
                           STORE_LOCK_EXCLUSIVE, &s->locks[s->nlocks]);
  if (rc == 0) {
    s->nlocks++;
    rc = store_datastore_chunks(s->ds, &o->cs);
  }
  if (rc == 0)
    rc = store_chunkstore_writer_begin(o->cs, (int64_t)time(NULL), &o->writer_token);
  if (rc < 0) {
    snprintf(o->open.err, sizeof(o->open.err), "cannot start writing: %s", core_strerror(rc));
    store_snapshot_delete(base, s->ns, s->type, s->backup_id, s->time);
    goto out;
  }
  rc = store_path_snapshot(path, sizeof(path), base, s->ns, s->type, s->backup_id, s->time);
  if (rc >= 0) {
    s->dir = core_strdup(path);
    rc = 0;
  }
out:
  if (rc < 0)
    store_session_unlock(s);
  store_snapshot_list_free(&snaps);
  core_free(owner);
  o->open.rc = rc;
}

static void open_done(struct core_job *j, int status)
{
  struct open_job *o = (struct open_job *)j;
  struct store_session *s = o->open.s;
  int rc = status < 0 ? status : o->open.rc;
  if (rc < 0) {
    int code = http_status_for(rc);
    if (rc == CORE_ELOCKED || rc == CORE_EEXISTS)
      code = 409;
    http_respond_error(o->open.req, code, "%s", o->open.err[0] ? o->open.err : core_strerror(rc));
    core_free(o->prev_dir);
    store_session_free(s);
    core_free(o);
    return;
  }
  struct store_backup *b = core_new(struct store_backup);
  b->s = s;
  b->prev_time = o->prev_time;
  b->prev_dir = o->prev_dir;
  b->writer_token = o->writer_token;
  b->cs = o->cs;
  b->no_cache = o->no_cache;
  s->ext = b;
  store_session_publish(s);
  core_info("backup %s: store %s, ns '%s', %s/%s/%" PRId64 " started by %s", s->id,
            s->ds->name, s->ns, s->type, s->backup_id, s->time, s->authid);
  char body[64];
  int n = snprintf(body, sizeof(body), "\"%s\"", s->id);
  http_respond_data(o->open.req, body, (size_t)n);
  core_free(o);
}

/* A client that stamps snapshots in the future could make keep-last prune
 * delete real ones later: beyond the tolerated clock skew, refuse. */
#define BACKUP_TIME_MAX_AHEAD_S 300

static int backup_time_ok(struct http_request *req)
{
  int64_t t;
  if (core_parse_i64(http_req_param(req, "backup-time"), &t) < 0)
    return 1; /* store_session_params answers the malformed case */
  if (t <= (int64_t)time(NULL) + BACKUP_TIME_MAX_AHEAD_S)
    return 1;
  http_respond_error(req, 400, "backup-time %" PRId64 " is more than %d seconds in the "
                     "server's future", t, BACKUP_TIME_MAX_AHEAD_S);
  return 0;
}

static void h_open(struct http_request *req, void *ctx)
{
  if (!backup_time_ok(req))
    return;
  const char *no_cache = http_req_param(req, "no-cache");
  int nc = 0;
  if (no_cache && core_parse_bool(no_cache, &nc) < 0) {
    http_respond_error(req, 400, "parameter 'no-cache' must be a boolean");
    return;
  }
  struct open_job *o = core_new(struct open_job);
  o->no_cache = nc;
  store_session_open(ctx, req, STORE_SESSION_BACKUP, STORE_OP_WRITE, &o->open, open_run,
                     open_done);
}

/* ---- Ending ----------------------------------------------------------- */

struct end_job {
  struct core_job job;
  struct store_session *s;
  struct http_request *req;  /* finish: the request to answer; abort: NULL */
  int finish;                /* 1: finish, 0: abort */
  char *why;                 /* abort reason, owned */
  /* out */
  int rc;
  char err[256];
};

static void release_writer(struct store_session *s)
{
  struct store_backup *b = store__backup(s);
  if (b && b->cs && b->writer_token) {
    store_chunkstore_writer_end(b->cs, b->writer_token);
    b->writer_token = 0;
  }
  store_session_unlock(s);
}

static void abort_run(struct core_job *j)
{
  struct end_job *e = (struct end_job *)j;
  struct store_session *s = e->s;
  /* The snapshot never got a manifest; remove whatever was written. */
  e->rc = store_snapshot_delete(s->ds->path, s->ns, s->type, s->backup_id, s->time);
  if (e->rc == CORE_ENOTFOUND)
    e->rc = 0;
  release_writer(s);
}

static void unmirrored(void *arg, int err, const char *msg)
{
  struct store_datastore *ds = arg;
  if (err < 0)
    core_warn("datastore %s: cannot remove an aborted snapshot from the bucket: %s "
              "(a later GC keeps only what indexes reference)", ds->name, msg);
  store_datastore_unref(ds);
}

static void abort_done(struct core_job *j, int status)
{
  struct end_job *e = (struct end_job *)j;
  struct store_session *s = e->s;
  if (e->rc < 0)
    core_warn("backup %s: cleanup failed: %s", s->id, core_strerror(e->rc));
  if (store_datastore_is_s3(s->ds) && s->dir) {
    /* What was mirrored of the snapshot goes from the bucket too. */
    store_datastore_ref(s->ds);
    store_s3_unmirror(s->ds, store_s3_rel(s->ds, s->dir), 1, unmirrored, s->ds);
  }
  core_info("backup %s aborted (%s)", s->id, e->why);
  core_free(e->why);
  core_free(e);
  backup_free(s);
}

static void abort_drained(struct store_session *s)
{
  struct end_job *e = core_new(struct end_job);
  e->s = s;
  e->why = core_strdup(s->ext ? "aborted" : "");
  int rc = core_job_submit(s->table->loop, &e->job, abort_run, abort_done);
  if (rc < 0)
    abort_done(&e->job, rc);
}

void store__backup_abort(struct store_session *s, const char *why)
{
  if (s->state == STORE_SESSION_ENDING)
    return;
  core_info("backup %s: aborting: %s", s->id, why);
  store_session_end(s, abort_drained);
}

static void h_abort(struct http_request *req, void *ctx)
{
  struct store_session *s = store_session_enter(ctx, req, STORE_SESSION_BACKUP);
  if (s == NULL)
    return;
  http_respond_data(req, NULL, 0);
  store__backup_abort(s, "aborted by the client");
  store_session_leave(s);
}

static void h_previous_time(struct http_request *req, void *ctx)
{
  struct store_session *s = store_session_enter(ctx, req, STORE_SESSION_BACKUP);
  if (s == NULL)
    return;
  struct store_backup *b = store__backup(s);
  char body[32];
  int n = b->prev_time >= 0 ? snprintf(body, sizeof(body), "%" PRId64, b->prev_time) : 0;
  http_respond_data(req, n ? body : NULL, (size_t)n);
  store_session_leave(s);
}


/* ---- finish ----------------------------------------------------------- */

struct finish_job {
  struct core_job job;
  struct http_request *req;
  struct store_session *s;
  /* in */
  char *upload_path;            /* owned: the manifest as uploaded */
  char *manifest_path;          /* owned: where finish publishes it */
  char **files;                 /* borrowed names uploaded in the session */
  int nfiles;
  uint64_t stats[4];            /* count, size, compressed, duplicates */
  /* out */
  int rc;
  char err[256];
};

/* Checks the uploaded manifest against the session and returns it encoded
 * again with the upload statistics added, in *blob (core_free). */
static int finish_build(struct finish_job *f, uint8_t **blob, size_t *blob_len)
{
  struct store_session *s = f->s;
  uint8_t *raw = NULL;
  size_t raw_len = 0;
  struct format_manifest m;
  char stats[256];
  int rc = core_file_read(f->upload_path, 16u * 1024 * 1024, &raw, &raw_len);
  if (rc < 0) {
    snprintf(f->err, sizeof(f->err), "cannot read the manifest: %s", core_strerror(rc));
    return rc;
  }
  /* The decoder may have allocated parts even when it fails: free always. */
  memset(&m, 0, sizeof(m));
  rc = format_manifest_decode_blob(NULL, raw, raw_len, &m);
  if (rc < 0) {
    snprintf(f->err, sizeof(f->err), "invalid manifest: %s", core_strerror(rc));
    goto out;
  }
  if (strcmp(m.backup_type, s->type) != 0 || strcmp(m.backup_id, s->backup_id) != 0 ||
      m.backup_time != s->time) {
    rc = CORE_EINVAL;
    snprintf(f->err, sizeof(f->err), "manifest names another snapshot");
    goto out;
  }
  for (size_t i = 0; i < m.nfiles; i++) {
    int found = 0;
    for (int k = 0; k < f->nfiles && !found; k++)
      found = strcmp(f->files[k], m.files[i].filename) == 0;
    if (!found) {
      rc = CORE_EINVAL;
      snprintf(f->err, sizeof(f->err), "manifest lists '%s', which was not uploaded",
               m.files[i].filename);
      goto out;
    }
  }
  snprintf(stats, sizeof(stats),
           "{\"count\":%" PRIu64 ",\"size\":%" PRIu64 ",\"compressed_size\":%" PRIu64
           ",\"duplicates\":%" PRIu64 "}",
           f->stats[0], f->stats[1], f->stats[2], f->stats[3]);
  rc = format_manifest_unprotected_set(&m, "chunk_upload_stats", stats, strlen(stats));
  if (rc == 0)
    rc = format_manifest_encode_blob(&m, NULL, blob, blob_len);
  if (rc < 0)
    snprintf(f->err, sizeof(f->err), "cannot update the manifest: %s", core_strerror(rc));
out:
  format_manifest_free(&m);
  core_free(raw);
  return rc;
}

/* Makes the snapshot finished: the final manifest replaces the upload (synced)
 * and is renamed to index.json.blob, whose directory entry is synced too. */
static int finish_publish(struct finish_job *f, const uint8_t *blob, size_t blob_len)
{
  int rc = core_file_replace(f->upload_path, blob, blob_len, 0644, 1);
  if (rc < 0)
    return rc;
  if (rename(f->upload_path, f->manifest_path) < 0)
    return -errno;
  rc = core_file_fsync_parent(f->manifest_path);
  if (rc < 0)
    rename(f->manifest_path, f->upload_path); /* unfinished again, as reported */
  return rc;
}

static void finish_run(struct core_job *j)
{
  struct finish_job *f = (struct finish_job *)j;
  struct store_backup *b = store__backup(f->s);
  uint8_t *blob = NULL;
  size_t blob_len = 0;
  int rc = finish_build(f, &blob, &blob_len);
  if (rc < 0)
    goto out;
  /* Everything the manifest names must be durable before the manifest is.
   * An S3 datastore's durable copy is the bucket (every chunk and file was
   * acknowledged there; the manifest follows in finish_done): its local
   * files are a cache that a crash may lose or cut short without harm, so
   * they need no syncfs here (docs/s3-datastores.md). */
  if (!store_datastore_is_s3(f->s->ds)) {
    rc = store_chunkstore_sync(b->cs);
    if (rc < 0) {
      snprintf(f->err, sizeof(f->err), "syncfs failed: %s", core_strerror(rc));
      goto out;
    }
  }
  /* S3: the final manifest stays under its upload name until the bucket has
   * it (finish_mirrored publishes it then); published first, a crash before
   * the bucket's copy would leave a snapshot finished in the cache alone. */
  if (store_datastore_is_s3(f->s->ds))
    rc = core_file_replace(f->upload_path, blob, blob_len, 0644, 0);
  else
    rc = finish_publish(f, blob, blob_len);
  if (rc < 0)
    snprintf(f->err, sizeof(f->err), "cannot store the manifest: %s", core_strerror(rc));
out:
  /* On failure the upload stays where it was: the client may fix what was
   * wrong (close a writer, upload another manifest) and finish again. */
  core_free(blob);
  f->rc = rc;
}

static void finish_release_run(struct core_job *j)
{
  release_writer(((struct end_job *)j)->s);
}

static void finish_release_done(struct core_job *j, int status)
{
  struct end_job *e = (struct end_job *)j;
  struct store_backup *b = store__backup(e->s);
  /* Answer only now: a client that starts the next backup of this group (or
   * reads this snapshot) the moment finish returns must find it unlocked. */
  if (b && b->finish_req)
    http_respond_data(b->finish_req, NULL, 0);
  backup_free(e->s);
  core_free(e);
}

static void finish_drained(struct store_session *s)
{
  struct end_job *e = core_new(struct end_job);
  e->s = s;
  if (core_job_submit(s->table->loop, &e->job, finish_release_run, finish_release_done) < 0)
    finish_release_done(&e->job, 0);
}

static void finish_reply(struct finish_job *f, int rc)
{
  struct store_session *s = f->s;
  if (rc < 0) {
    http_respond_error(f->req, http_status_for(rc), "%s", f->err[0] ? f->err :
                       core_strerror(rc));
    s->state = STORE_SESSION_OPEN; /* the client may fix and retry, or abort */
    store_session_leave(s);
  } else {
    core_info("backup %s finished (%" PRIu64 " chunks uploaded, %" PRIu64 " duplicates)",
              s->id, f->stats[0], f->stats[3]);
    struct store_backup *b = store__backup(s);
    if (b->s3_detached || b->s3_full)
      core_info("backup %s: %" PRIu64 " chunks answered while their upload ran, %" PRIu64
                " after it (write-behind full)", s->id, b->s3_detached, b->s3_full);
    core_counter_add(&s->ds->stats.snapshots, 1);
    store_metrics_backup_finished(s->ds->reg->metrics, s->ds->name, s->ns, s->type,
                                  s->backup_id, s->time);
    store__backup(s)->finish_req = f->req;
    store_session_end(s, finish_drained);
    store_session_leave(s);
  }
  core_free(f->upload_path);
  core_free(f->manifest_path);
  core_free(f);
}

/* S3: the bucket has the manifest; now the cache's copy becomes finished.
 * A crash before this rename leaves the snapshot unfinished here, and the
 * recovery walk then removes it from the cache and the bucket alike. */
static void publish_run(struct core_job *j)
{
  struct finish_job *f = (struct finish_job *)j;
  core_testpoint("finish-mirrored");
  f->rc = rename(f->upload_path, f->manifest_path) < 0 ? -errno : 0;
  if (f->rc < 0)
    snprintf(f->err, sizeof(f->err), "cannot store the manifest: %s", core_strerror(f->rc));
}

static void publish_done(struct core_job *j, int status)
{
  struct finish_job *f = (struct finish_job *)j;
  finish_reply(f, status < 0 ? status : f->rc);
}

/* S3 datastores: finished in the bucket (manifest last) and then in the
 * cache, or not at all. */
static void finish_mirrored(void *arg, int err, const char *msg)
{
  struct finish_job *f = arg;
  if (err < 0) {
    /* Still unfinished everywhere: the client may retry or abort. */
    snprintf(f->err, sizeof(f->err), "cannot store the snapshot in the bucket: %s", msg);
    finish_reply(f, err);
    return;
  }
  int rc = core_job_submit(f->s->table->loop, &f->job, publish_run, publish_done);
  if (rc < 0)
    finish_reply(f, rc);
}

static void finish_done(struct core_job *j, int status)
{
  struct finish_job *f = (struct finish_job *)j;
  struct store_session *s = f->s;
  int rc = status < 0 ? status : f->rc;
  if (rc == 0 && store_datastore_is_s3(s->ds)) {
    store_s3_mirror_snapshot(s->ds, s->ns, s->type, s->backup_id, s->time,
                             MANIFEST_UPLOAD_NAME, finish_mirrored, f);
    return;
  }
  finish_reply(f, rc);
}

static void finish_start(struct store_session *s, struct http_request *req);

/* A chunk acknowledged early never reached the bucket: the snapshot cannot
 * be finished (nothing was published; the client aborts). */
static void finish_upload_failed(struct store_session *s, struct http_request *req)
{
  struct store_backup *b = store__backup(s);
  http_respond_error(req, http_status_for(b->s3_failed), "cannot finish: %s", b->s3_err);
  store_session_leave(s);
}

static void h_finish(struct http_request *req, void *ctx)
{
  struct store_session *s = store_session_enter(ctx, req, STORE_SESSION_BACKUP);
  if (s == NULL)
    return;
  struct store_backup *b = store__backup(s);
  for (int i = 1; i <= MAX_WRITERS; i++) {
    if (b->writers[i].kind) {
      http_respond_error(req, 400, "writer %d (%s) is still open", i, b->writers[i].name);
      store_session_leave(s);
      return;
    }
  }
  if (!store__backup_has_file(b, MANIFEST_NAME)) {
    http_respond_error(req, 400, "the manifest (%s) must be uploaded before finish",
                       MANIFEST_NAME);
    store_session_leave(s);
    return;
  }
  /* Detached S3 uploads hold operations but are not requests: finish waits
   * for them (store__backup_finish_resume). */
  if (s->ops - (int)b->s3_pending > 1) {
    http_respond_error(req, 409, "requests are still running in this session");
    store_session_leave(s);
    return;
  }
  if (b->s3_failed) {
    finish_upload_failed(s, req);
    return;
  }
  s->state = STORE_SESSION_FINISHING;
  if (b->s3_pending > 0) {
    core_info("backup %s: finish waits for %u chunk uploads (%zu bytes; %" PRIu64
              " chunks answered before their upload ended, %" PRIu64 " after)", s->id,
              b->s3_pending, b->s3_pending_bytes, b->s3_detached, b->s3_full);
    b->finish_wait = req;
    return;
  }
  finish_start(s, req);
}

void store__backup_finish_resume(struct store_session *s)
{
  struct store_backup *b = store__backup(s);
  struct http_request *req = b->finish_wait;
  b->finish_wait = NULL;
  core_info("backup %s: chunk uploads done, finish goes on", s->id);
  if (s->state != STORE_SESSION_FINISHING) {
    http_respond_error(req, 409, "the session was aborted while finishing");
    store_session_leave(s);
    return;
  }
  if (b->s3_failed) {
    s->state = STORE_SESSION_OPEN; /* the client can only abort now */
    finish_upload_failed(s, req);
    return;
  }
  finish_start(s, req);
}

static void finish_start(struct store_session *s, struct http_request *req)
{
  struct store_backup *b = store__backup(s);
  struct finish_job *f = core_new(struct finish_job);
  f->req = req;
  f->s = s;
  f->upload_path = core_asprintf("%s/%s", s->dir, MANIFEST_UPLOAD_NAME);
  f->manifest_path = core_asprintf("%s/%s", s->dir, MANIFEST_NAME);
  f->files = b->files;
  f->nfiles = b->nfiles;
  f->stats[0] = b->up_count;
  f->stats[1] = b->up_size;
  f->stats[2] = b->up_compressed;
  f->stats[3] = b->up_duplicates;
  int rc = core_job_submit(s->table->loop, &f->job, finish_run, finish_done);
  if (rc < 0) {
    f->rc = rc;
    finish_done(&f->job, rc);
  }
}

/* ---- Routes ----------------------------------------------------------- */

void store__backup_register(struct http_server *srv, struct store_sessions *t)
{
  const struct http_route routes[] = {
    /* Backup into a group the caller owns (or creates): may_write_group. */
    {HTTP_METHOD_POST, "/api2/json/backup", h_open, t, 0, 0,
     ACCESS_NEEDS_OR(0, ACCESS_PRIV_DATASTORE_BACKUP, ACCESS_ON_NS, ACCESS_IF_NEW_GROUP)},
    /* Session calls: the session checks that its creator makes them. */
    {HTTP_METHOD_DELETE, "/api2/json/backup/{session}", h_abort, t, 0, 0, ACCESS_AUTHENTICATED},
    {HTTP_METHOD_GET, "/api2/json/backup/{session}/previous_backup_time", h_previous_time, t,
     0, 0,
     ACCESS_AUTHENTICATED},
    {HTTP_METHOD_POST, "/api2/json/backup/{session}/finish", h_finish, t, 0, 0,
     ACCESS_AUTHENTICATED},
  };
  http_server_add_routes(srv, routes, sizeof(routes) / sizeof(routes[0]));
  store__backup_data_register(srv, t);
}
