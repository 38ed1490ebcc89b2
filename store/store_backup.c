/* store_backup.c: the backup session (PBS's backup protocol over HTTP/1.1).
 *
 * POST /api2/json/backup opens a session: in one pool job the group is
 * created (owner file) and locked exclusively, the previous snapshot found
 * and locked shared, the new snapshot directory created and locked
 * exclusively, and a writer registered with the chunk store (GC's oldest
 * writer). Every later call names the session in its path.
 *
 * Chunks are verified (CRC rewritten, SHA-256 of the plaintext equal to the
 * digest, length equal to the announced size) and inserted in the pool; the
 * digest then becomes "known" to the session with its size. Index appends
 * may only reference known digests: uploaded in this session or registered
 * through `previous`. Indexes are built in memory and written with temp file
 * + rename at close, after count, size and checksum agree with the client's.
 * `finish` requires the manifest, adds the upload statistics to it, syncs the
 * file system at sync level `filesystem`, and only then drops the locks. An
 * aborted session (DELETE, idle timeout, shutdown) removes its snapshot
 * directory; a crash leaves it without a manifest: listed as unfinished.
 */
#include "store/store_session.h"

#include "core/core_alloc.h"
#include "core/core_config.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "store/store_blob.h"
#include "store/store_chunk.h"
#include "store/store_index.h"
#include "store/store_lock.h"
#include "store/store_manifest.h"
#include "store/store_name.h"
#include "store/store_path.h"
#include "store/store_snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_WRITERS 256
#define MAX_FILES 1024
#define CHUNK_MAX_BODY (16u * 1024 * 1024 + 48)
#define BLOB_MAX_BODY (16u * 1024 * 1024 + 48)
#define INDEX_APPEND_MAX_BODY (4u * 1024 * 1024)
#define PREVIOUS_MAX_FILE (256u * 1024 * 1024)
#define MANIFEST_NAME "index.json.blob"
#define MAX_FIXED_CHUNKS (64u * 1024 * 1024) /* 256 TiB at 4 MiB */

enum writer_kind { WRITER_FIXED = 1, WRITER_DYNAMIC = 2 };

struct writer {
  enum writer_kind kind;    /* 0: slot unused */
  int closing;
  char *name;               /* owned archive name */
  /* dynamic */
  struct store_didx_writer didx;
  /* fixed: digests by position, size fixed at close */
  uint8_t *digests;         /* owned, cap entries of 32 bytes */
  uint8_t *present;         /* owned, 1 per position set */
  uint64_t cap, count;
  uint64_t chunk_size;
  uint64_t size_hint;       /* size given at open, 0 if unknown */
  uint64_t last_len;        /* size of the chunk at position count-1 */
};

struct store_backup {
  struct store_session *s;
  int64_t prev_time;            /* -1: no previous snapshot */
  char *prev_dir;               /* owned or NULL */
  uint64_t writer_token;        /* store_chunkstore_writer_begin */
  struct store_chunkstore *cs;  /* borrowed from the datastore */
  struct writer writers[MAX_WRITERS + 1]; /* wid 1..MAX_WRITERS */
  char *files[MAX_FILES];       /* owned names of closed indexes and blobs */
  int nfiles;
  /* chunk_upload_stats, as PBS records them */
  uint64_t up_count, up_size, up_compressed, up_duplicates;
};

static struct store_backup *backup_of(struct store_session *s)
{
  return s->ext;
}

static int64_t now_epoch(void)
{
  return (int64_t)time(NULL);
}

static int has_file(const struct store_backup *b, const char *name)
{
  for (int i = 0; i < b->nfiles; i++)
    if (strcmp(b->files[i], name) == 0)
      return 1;
  return 0;
}

static int writer_name_taken(const struct store_backup *b, const char *name)
{
  for (int i = 1; i <= MAX_WRITERS; i++)
    if (b->writers[i].kind && strcmp(b->writers[i].name, name) == 0)
      return 1;
  return has_file(b, name);
}

static void writer_free(struct writer *w)
{
  if (w->kind == WRITER_DYNAMIC)
    store_didx_writer_free(&w->didx);
  core_free(w->name);
  core_free(w->digests);
  core_free(w->present);
  memset(w, 0, sizeof(*w));
}

static void backup_free(struct store_session *s)
{
  struct store_backup *b = backup_of(s);
  if (b) {
    for (int i = 1; i <= MAX_WRITERS; i++)
      writer_free(&b->writers[i]);
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
  struct core_job job;
  struct http_request *req;
  struct store_session *s;      /* not yet published */
  struct store_sessions *t;
  /* out */
  int rc;
  char err[256];
  int64_t prev_time;
  char *prev_dir;
  uint64_t writer_token;
  struct store_chunkstore *cs;
};

/* A token may write into groups it owns; the root user (and its tokens) may
 * write anywhere. Full users and ACLs come later. */
static int may_write_group(const char *authid, const char *owner)
{
  if (strcmp(authid, owner) == 0)
    return 1;
  return strncmp(authid, "root@pam", 8) == 0 && (authid[8] == '\0' || authid[8] == '!');
}

static void open_run(struct core_job *j)
{
  struct open_job *o = (struct open_job *)j;
  struct store_session *s = o->s;
  const char *base = s->ds->path;
  char *owner = NULL;
  struct store_snapshot_list snaps = {0};
  char path[4096];

  int rc = store_ns_exists(base, s->ns);
  if (rc == 0)
    rc = CORE_ENOTFOUND;
  if (rc < 0) {
    snprintf(o->err, sizeof(o->err), "namespace '%s' does not exist", s->ns);
    goto out;
  }
  rc = store_group_create(base, s->ns, s->type, s->backup_id, s->authid, &owner);
  if (rc < 0) {
    snprintf(o->err, sizeof(o->err), "cannot create backup group: %s", core_strerror(rc));
    goto out;
  }
  if (!may_write_group(s->authid, owner)) {
    rc = UV_EPERM;
    snprintf(o->err, sizeof(o->err), "backup group %s/%s is owned by %s", s->type,
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
    snprintf(o->err, sizeof(o->err), "%s",
             rc == CORE_ELOCKED ? "another backup of this group is running"
                                : core_strerror(rc));
    goto out;
  }
  rc = store_snapshot_list(base, s->ns, s->type, s->backup_id, &snaps);
  if (rc < 0) {
    snprintf(o->err, sizeof(o->err), "cannot list snapshots: %s", core_strerror(rc));
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
    snprintf(o->err, sizeof(o->err),
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
      snprintf(o->err, sizeof(o->err), "previous snapshot is locked (being removed?)");
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
    snprintf(o->err, sizeof(o->err), "%s", rc == CORE_EEXISTS ? "snapshot already exists"
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
    rc = store_chunkstore_writer_begin(o->cs, now_epoch(), &o->writer_token);
  if (rc < 0) {
    snprintf(o->err, sizeof(o->err), "cannot start writing: %s", core_strerror(rc));
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
  o->rc = rc;
}

static void open_done(struct core_job *j, int status)
{
  struct open_job *o = (struct open_job *)j;
  struct store_session *s = o->s;
  int rc = status < 0 ? status : o->rc;
  if (rc < 0) {
    int code = http_status_for(rc);
    if (rc == CORE_ELOCKED || rc == CORE_EEXISTS)
      code = 409;
    http_respond_error(o->req, code, "%s", o->err[0] ? o->err : core_strerror(rc));
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
  s->ext = b;
  store_session_publish(s);
  core_info("backup %s: store %s, ns '%s', %s/%s/%" PRId64 " started by %s", s->id,
            s->ds->name, s->ns, s->type, s->backup_id, s->time, s->authid);
  char body[64];
  int n = snprintf(body, sizeof(body), "\"%s\"", s->id);
  http_respond_data(o->req, body, (size_t)n);
  core_free(o);
}

struct open_ctx {
  struct http_request *req;
  struct store_sessions *t;
};

static int parse_i64(const char *s, int64_t *out)
{
  if (s == NULL || *s == '\0')
    return CORE_EINVAL;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (*end || errno)
    return CORE_EINVAL;
  *out = v;
  return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
  if (s == NULL || *s < '0' || *s > '9')
    return CORE_EINVAL;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end || errno)
    return CORE_EINVAL;
  *out = v;
  return 0;
}

/* Checks the snapshot parameters shared by backup and reader sessions and
 * fills the session; responds and returns -1 on error. */
int store__session_params(struct http_request *req, struct store_session *s);

int store__session_params(struct http_request *req, struct store_session *s)
{
  const char *ns = http_req_param(req, "ns");
  const char *type = http_req_param(req, "backup-type");
  const char *id = http_req_param(req, "backup-id");
  const char *time_s = http_req_param(req, "backup-time");
  int64_t t;
  if (ns && store_name_ns(ns) < 0) {
    http_respond_error(req, 400, "invalid namespace");
    return -1;
  }
  if (type == NULL || store_name_backup_type(type) < 0) {
    http_respond_error(req, 400, "backup-type must be vm, ct or host");
    return -1;
  }
  if (id == NULL || store_name_backup_id(id) < 0) {
    http_respond_error(req, 400, "invalid or missing backup-id");
    return -1;
  }
  if (parse_i64(time_s, &t) < 0 || t < 0 || t > 253402300799LL) {
    http_respond_error(req, 400, "invalid or missing backup-time (epoch seconds)");
    return -1;
  }
  core_free(s->ns);
  s->ns = core_strdup(ns ? ns : "");
  snprintf(s->type, sizeof(s->type), "%s", type);
  s->backup_id = core_strdup(id);
  s->time = t;
  s->authid = core_strdup(http_req_authid(req));
  return 0;
}

static void open_lookup(void *arg, int err, struct store_datastore *ds)
{
  struct open_job *o = arg;
  if (err) {
    store_api_lookup_error(o->req, http_req_param(o->req, "store"), err, ds);
    store_session_free(o->s);
    core_free(o);
    return;
  }
  o->s->ds = ds;
  o->s->op = STORE_OP_WRITE;
  int rc = core_job_submit(o->t->loop, &o->job, open_run, open_done);
  if (rc < 0) {
    o->rc = rc;
    open_done(&o->job, rc);
  }
}

static void h_open(struct http_request *req, void *ctx)
{
  struct store_sessions *t = ctx;
  const char *store = http_req_param(req, "store");
  if (store == NULL || store_name_datastore(store) < 0) {
    http_respond_error(req, 400, "invalid or missing parameter 'store'");
    return;
  }
  struct store_session *s = store_session_new(t, STORE_SESSION_BACKUP);
  if (store__session_params(req, s) < 0) {
    store_session_free(s);
    return;
  }
  struct open_job *o = core_new(struct open_job);
  o->req = req;
  o->s = s;
  o->t = t;
  store_lookup(t->api->reg, store, STORE_OP_WRITE, open_lookup, o);
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
  struct store_backup *b = backup_of(s);
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

static void abort_done(struct core_job *j, int status)
{
  struct end_job *e = (struct end_job *)j;
  struct store_session *s = e->s;
  if (e->rc < 0)
    core_warn("backup %s: cleanup failed: %s", s->id, core_strerror(e->rc));
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

/* ---- Writers ---------------------------------------------------------- */

static struct writer *get_writer(struct http_request *req, struct store_backup *b,
                                 enum writer_kind kind)
{
  uint64_t wid;
  if (parse_u64(http_req_param(req, "wid"), &wid) < 0 || wid < 1 || wid > MAX_WRITERS ||
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
  struct store_backup *b = backup_of(s);
  const char *name = http_req_param(req, "archive-name");
  const char *ext = kind == WRITER_FIXED ? ".fidx" : ".didx";
  size_t nlen = name ? strlen(name) : 0;
  if (name == NULL || store_name_archive(name) < 0 || nlen < 6 ||
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
    if (size && parse_u64(size, &w->size_hint) < 0) {
      http_respond_error(req, 400, "invalid size");
      goto out;
    }
    w->chunk_size = 4u * 1024 * 1024; /* PBS's server always uses 4 MiB */
    if (http_req_param(req, "reuse-csum")) {
      http_respond_error(req, 400, "reuse-csum is not supported; upload with "
                                   "'previous' registration instead");
      goto out;
    }
  } else {
    store_didx_writer_init(&w->didx, now_epoch(), 0);
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

static int fixed_set(struct writer *w, uint64_t pos, const uint8_t digest[32], uint32_t len)
{
  if (pos >= MAX_FIXED_CHUNKS)
    return CORE_ETOOBIG;
  if (pos >= w->cap) {
    uint64_t ncap = w->cap ? w->cap : 64;
    while (ncap <= pos)
      ncap *= 2;
    w->digests = core_realloc(w->digests, ncap * 32);
    w->present = core_realloc(w->present, ncap);
    memset(w->present + w->cap, 0, ncap - w->cap);
    w->cap = ncap;
  }
  memcpy(w->digests + pos * 32, digest, 32);
  w->present[pos] = 1;
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
  struct store_backup *b = backup_of(s);
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
      rc = store_didx_writer_append(&w->didx, off + len, digest);
    } else {
      if (off % w->chunk_size != 0 || len > w->chunk_size || len == 0) {
        http_respond_error(req, 400, "entry %zu: offset %" PRIu64 " is not aligned to the "
                           "chunk size", i, off);
        goto out;
      }
      rc = fixed_set(w, off / w->chunk_size, digest, len);
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
  /* out */
  int rc;
  int duplicate;
};

static void chunk_run(struct core_job *j)
{
  struct chunk_job *c = (struct chunk_job *)j;
  int rc = store_blob_verify_chunk(NULL, c->data, c->len, c->digest, c->size);
  if (rc >= 0)
    rc = store_blob_set_crc(c->data, c->len);
  struct store_chunk_insert_result res;
  if (rc >= 0)
    rc = store_chunk_insert(c->cs, c->digest, c->data, c->len, &res);
  if (rc >= 0)
    c->duplicate = res.duplicate;
  c->rc = rc < 0 ? rc : 0;
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
    http_respond_error(c->req, code, "chunk %s rejected: %s", hex, core_strerror(rc));
  } else if (s->state != STORE_SESSION_OPEN) {
    http_respond_error(c->req, 409, "session ended while the chunk was stored");
  } else if ((rc = store_digestset_add(&s->known, c->digest, (uint32_t)c->size)) < 0) {
    http_respond_errno(c->req, rc, "too many chunks in one session");
  } else {
    struct store_backup *b = backup_of(s);
    b->up_count++;
    b->up_size += c->size;
    b->up_compressed += c->len;
    b->up_duplicates += c->duplicate;
    char body[80];
    int n = snprintf(body, sizeof(body), "\"%s\"", hex);
    http_respond_data(c->req, body, (size_t)n);
  }
  store_session_leave(s);
  core_free(c);
}

static void upload_chunk(struct http_request *req, void *ctx, enum writer_kind kind)
{
  struct store_session *s = store_session_enter(ctx, req, STORE_SESSION_BACKUP);
  if (s == NULL)
    return;
  struct store_backup *b = backup_of(s);
  const char *digest = http_req_param(req, "digest");
  uint64_t size, esize;
  struct core_slice body = http_req_body(req);
  if (get_writer(req, b, kind) == NULL)
    goto fail;
  if (digest == NULL || !core_is_digest_hex(digest)) {
    http_respond_error(req, 400, "digest must be 64 lowercase hex characters");
    goto fail;
  }
  if (parse_u64(http_req_param(req, "size"), &size) < 0 || size < 1 ||
      size > 16u * 1024 * 1024) {
    http_respond_error(req, 400, "size must be 1..16777216");
    goto fail;
  }
  if (parse_u64(http_req_param(req, "encoded-size"), &esize) < 0 || esize < 13 ||
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
  int rc = core_job_submit(s->table->loop, &c->job, chunk_run, chunk_done);
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
  char *path;                    /* owned: destination */
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
    f->rc = store_blob_verify_crc(f->data, f->len);
    if (f->rc == 0)
      f->rc = core_config_replace_file(f->path, f->data, f->len, 0644);
    return;
  }
  struct core_slice parts[2] = {{f->data, f->len}, {f->data2, f->len2}};
  f->rc = store_index_write_file(f->path, parts, f->len2 ? 2 : 1, f->do_fsync);
}

static void file_done(struct core_job *j, int status)
{
  struct file_job *f = (struct file_job *)j;
  struct store_session *s = f->s;
  struct store_backup *b = backup_of(s);
  int rc = status < 0 ? status : f->rc;
  const char *name = strrchr(f->path, '/') + 1;
  if (rc < 0) {
    http_respond_error(f->req, http_status_for(rc), "cannot write %s: %s", name,
                       core_strerror(rc));
    if (f->wid)
      b->writers[f->wid].closing = 0;
  } else if (b->nfiles == MAX_FILES) {
    http_respond_error(f->req, 400, "too many files in one snapshot");
  } else {
    if (!has_file(b, name))
      b->files[b->nfiles++] = core_strdup(name);
    if (f->wid)
      writer_free(&b->writers[f->wid]);
    http_respond_data(f->req, NULL, 0);
  }
  core_free(f->path);
  core_free(f);
  store_session_leave(s);
}

static void submit_file(struct store_session *s, struct http_request *req, int wid,
                        const char *name, const void *data, size_t len, const void *data2,
                        size_t len2, int is_blob)
{
  struct file_job *f = core_new(struct file_job);
  f->req = req;
  f->s = s;
  f->wid = wid;
  f->path = core_asprintf("%s/%s", s->dir, name);
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
  struct store_backup *b = backup_of(s);
  struct writer *w = get_writer(req, b, kind);
  uint64_t count, size;
  const char *csum_hex = http_req_param(req, "csum");
  uint8_t csum[32], mine[32];
  if (w == NULL)
    goto fail;
  if (parse_u64(http_req_param(req, "chunk-count"), &count) < 0 ||
      parse_u64(http_req_param(req, "size"), &size) < 0 || csum_hex == NULL ||
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
     * a refused close leaves the writer open for a corrected retry. */
    struct core_sha256 probe;
    core_sha256_clone(&w->didx.csum, &probe);
    core_sha256_final(&probe, mine);
    if (memcmp(mine, csum, 32) != 0) {
      http_respond_error(req, 400, "index checksum mismatch");
      goto fail;
    }
    store_didx_writer_finish(&w->didx, mine, &my_count, &my_size);
    size_t len;
    const uint8_t *img = store_didx_writer_image(&w->didx, &len);
    w->closing = 1;
    submit_file(s, req, (int)(w - b->writers), w->name, img, len, NULL, 0, 0);
    return;
  }
  /* Fixed: every position up to ceil(size / chunk_size) must be set, and
   * only the last chunk may be short. */
  uint64_t want = (size + w->chunk_size - 1) / w->chunk_size;
  int ok = count == want && w->count == want && (w->size_hint == 0 || w->size_hint == size);
  for (uint64_t i = 0; ok && i < want; i++)
    ok = w->present[i];
  if (ok && want > 0)
    ok = w->last_len == size - (want - 1) * w->chunk_size;
  if (!ok) {
    http_respond_error(req, 400, "fixed index does not match chunk-count %" PRIu64
                       " and size %" PRIu64, count, size);
    goto fail;
  }
  struct store_fidx_writer fw;
  int rc = store_fidx_writer_init(&fw, size, w->chunk_size, now_epoch());
  for (uint64_t i = 0; rc == 0 && i < want; i++)
    rc = store_fidx_writer_set(&fw, i, w->digests + i * 32);
  if (rc == 0)
    rc = store_fidx_writer_finish(&fw, mine, &my_count, &my_size);
  if (rc < 0) {
    http_respond_errno(req, rc, "cannot build the fixed index");
    if (fw.image)
      store_fidx_writer_free(&fw);
    goto fail;
  }
  if (memcmp(mine, csum, 32) != 0) {
    store_fidx_writer_free(&fw);
    http_respond_error(req, 400, "index checksum mismatch");
    goto fail;
  }
  /* Keep the image in the writer until the file is written. */
  size_t len;
  const uint8_t *img = store_fidx_writer_image(&fw, &len);
  core_free(w->digests);
  w->digests = core_malloc(len);
  memcpy(w->digests, img, len);
  store_fidx_writer_free(&fw);
  w->closing = 1;
  submit_file(s, req, (int)(w - b->writers), w->name, w->digests, len, NULL, 0, 0);
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
  struct store_backup *b = backup_of(s);
  const char *name = http_req_param(req, "file-name");
  struct core_slice body = http_req_body(req);
  uint64_t esize;
  size_t nlen = name ? strlen(name) : 0;
  if (name == NULL || store_name_archive(name) < 0 || nlen < 6 ||
      strcmp(name + nlen - 5, ".blob") != 0) {
    http_respond_error(req, 400, "file-name must be a valid *.blob file name");
    goto fail;
  }
  if (parse_u64(http_req_param(req, "encoded-size"), &esize) < 0 || esize < 12 ||
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

struct prev_job {
  struct core_job job;
  struct http_request *req;
  struct store_session *s;
  char *path;            /* in, owned */
  /* out */
  int rc;
  uint8_t *data;         /* owned file bytes */
  size_t len;
  uint8_t *digests;      /* owned: n * 32 */
  uint32_t *sizes;       /* owned: n */
  uint64_t n;
};

static int read_whole(const char *path, size_t max, uint8_t **out, size_t *len)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT ? CORE_ENOTFOUND : -errno;
  struct stat st;
  int rc = 0;
  if (fstat(fd, &st) < 0) {
    rc = -errno;
    goto out;
  }
  if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
    rc = CORE_ETOOBIG;
    goto out;
  }
  uint8_t *buf = core_try_malloc((size_t)st.st_size);
  if (buf == NULL) {
    rc = UV_ENOMEM;
    goto out;
  }
  size_t got = 0;
  while (got < (size_t)st.st_size) {
    ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      rc = n < 0 ? -errno : CORE_EFORMAT;
      core_free(buf);
      goto out;
    }
    got += (size_t)n;
  }
  *out = buf;
  *len = got;
out:
  close(fd);
  return rc;
}

/* Reads a snapshot file; for indexes also the digests and sizes it holds.
 * Shared with the reader session. */
int store__read_snapshot_file(const char *path, uint8_t **data, size_t *len,
                              uint8_t **digests, uint32_t **sizes, uint64_t *n);

int store__read_snapshot_file(const char *path, uint8_t **data, size_t *len,
                              uint8_t **digests, uint32_t **sizes, uint64_t *n)
{
  int rc = read_whole(path, PREVIOUS_MAX_FILE, data, len);
  *digests = NULL;
  *sizes = NULL;
  *n = 0;
  if (rc < 0 || store_index_kind_from_name(path) <= 0)
    return rc;
  struct store_index idx;
  rc = store_index_parse(*data, *len, 0, &idx);
  if (rc < 0) {
    core_free(*data);
    *data = NULL;
    return rc;
  }
  *digests = core_malloc(idx.count * 32 + 1);
  *sizes = core_malloc(idx.count * sizeof(uint32_t) + 1);
  for (uint64_t i = 0; i < idx.count; i++) {
    uint64_t start, end;
    memcpy(*digests + i * 32, store_index_digest(&idx, i), 32);
    store_index_chunk_range(&idx, i, &start, &end);
    (*sizes)[i] = (uint32_t)(end - start);
  }
  *n = idx.count;
  return 0;
}

static void prev_run(struct core_job *j)
{
  struct prev_job *p = (struct prev_job *)j;
  p->rc = store__read_snapshot_file(p->path, &p->data, &p->len, &p->digests, &p->sizes, &p->n);
}

static void prev_done(struct core_job *j, int status)
{
  struct prev_job *p = (struct prev_job *)j;
  struct store_session *s = p->s;
  int rc = status < 0 ? status : p->rc;
  if (rc == 0) {
    for (uint64_t i = 0; rc == 0 && i < p->n; i++)
      rc = store_digestset_add(&s->known, p->digests + i * 32, p->sizes[i]);
  }
  if (rc < 0) {
    http_respond_error(p->req, http_status_for(rc), "cannot read the previous %s: %s",
                       strrchr(p->path, '/') + 1, core_strerror(rc));
    core_free(p->data);
  } else {
    http_respond_owned(p->req, 200, "application/octet-stream", p->data, p->len);
  }
  core_free(p->digests);
  core_free(p->sizes);
  core_free(p->path);
  core_free(p);
  store_session_leave(s);
}

static void h_previous(struct http_request *req, void *ctx)
{
  struct store_session *s = store_session_enter(ctx, req, STORE_SESSION_BACKUP);
  if (s == NULL)
    return;
  struct store_backup *b = backup_of(s);
  const char *name = http_req_param(req, "archive-name");
  if (name == NULL || store_name_archive(name) < 0) {
    http_respond_error(req, 400, "invalid archive-name");
    store_session_leave(s);
    return;
  }
  if (b->prev_dir == NULL) {
    http_respond_error(req, 404, "no previous snapshot");
    store_session_leave(s);
    return;
  }
  struct prev_job *p = core_new(struct prev_job);
  p->req = req;
  p->s = s;
  p->path = core_asprintf("%s/%s", b->prev_dir, name);
  int rc = core_job_submit(s->table->loop, &p->job, prev_run, prev_done);
  if (rc < 0) {
    p->rc = rc;
    prev_done(&p->job, rc);
  }
}

static void h_previous_time(struct http_request *req, void *ctx)
{
  struct store_session *s = store_session_enter(ctx, req, STORE_SESSION_BACKUP);
  if (s == NULL)
    return;
  struct store_backup *b = backup_of(s);
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
  char *manifest_path;          /* owned */
  char **files;                 /* borrowed names uploaded in the session */
  int nfiles;
  uint64_t stats[4];            /* count, size, compressed, duplicates */
  /* out */
  int rc;
  char err[256];
};

static void finish_run(struct core_job *j)
{
  struct finish_job *f = (struct finish_job *)j;
  struct store_session *s = f->s;
  struct store_backup *b = backup_of(s);
  uint8_t *raw = NULL, *blob = NULL;
  size_t raw_len = 0, blob_len = 0;
  struct store_manifest m;
  int have_m = 0;
  char stats[256];
  int rc = read_whole(f->manifest_path, 16u * 1024 * 1024, &raw, &raw_len);
  if (rc < 0) {
    snprintf(f->err, sizeof(f->err), "cannot read the manifest: %s", core_strerror(rc));
    goto out;
  }
  /* The decoder may have allocated parts even when it fails: free always. */
  memset(&m, 0, sizeof(m));
  have_m = 1;
  rc = store_manifest_decode_blob(NULL, raw, raw_len, &m);
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
  rc = store_manifest_unprotected_set(&m, "chunk_upload_stats", stats, strlen(stats));
  if (rc == 0)
    rc = store_manifest_encode_blob(&m, NULL, &blob, &blob_len);
  if (rc == 0)
    rc = core_config_replace_file(f->manifest_path, blob, blob_len, 0644);
  if (rc < 0) {
    snprintf(f->err, sizeof(f->err), "cannot update the manifest: %s", core_strerror(rc));
    goto out;
  }
  rc = store_chunkstore_sync(b->cs);
  if (rc < 0)
    snprintf(f->err, sizeof(f->err), "syncfs failed: %s", core_strerror(rc));
out:
  if (rc < 0) {
    /* A snapshot is finished exactly when its manifest exists: make sure a
     * failed finish does not leave one behind. */
    unlink(f->manifest_path);
  }
  if (have_m)
    store_manifest_free(&m);
  core_free(raw);
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

static void finish_done(struct core_job *j, int status)
{
  struct finish_job *f = (struct finish_job *)j;
  struct store_session *s = f->s;
  int rc = status < 0 ? status : f->rc;
  if (rc < 0) {
    http_respond_error(f->req, http_status_for(rc), "%s", f->err[0] ? f->err :
                       core_strerror(rc));
    s->state = STORE_SESSION_OPEN; /* the client may fix and retry, or abort */
    store_session_leave(s);
  } else {
    core_info("backup %s finished (%" PRIu64 " chunks uploaded, %" PRIu64 " duplicates)",
              s->id, f->stats[0], f->stats[3]);
    http_respond_data(f->req, NULL, 0);
    store_session_end(s, finish_drained);
    store_session_leave(s);
  }
  core_free(f->manifest_path);
  core_free(f);
}

static void h_finish(struct http_request *req, void *ctx)
{
  struct store_session *s = store_session_enter(ctx, req, STORE_SESSION_BACKUP);
  if (s == NULL)
    return;
  struct store_backup *b = backup_of(s);
  for (int i = 1; i <= MAX_WRITERS; i++) {
    if (b->writers[i].kind) {
      http_respond_error(req, 400, "writer %d (%s) is still open", i, b->writers[i].name);
      store_session_leave(s);
      return;
    }
  }
  if (!has_file(b, MANIFEST_NAME)) {
    http_respond_error(req, 400, "the manifest (%s) must be uploaded before finish",
                       MANIFEST_NAME);
    store_session_leave(s);
    return;
  }
  if (s->ops > 1) {
    http_respond_error(req, 409, "requests are still running in this session");
    store_session_leave(s);
    return;
  }
  s->state = STORE_SESSION_FINISHING;
  struct finish_job *f = core_new(struct finish_job);
  f->req = req;
  f->s = s;
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
#define B "/api2/json/backup/{session}/"
  const struct http_route routes[] = {
    {HTTP_METHOD_POST, "/api2/json/backup", h_open, t, 0, 0},
    {HTTP_METHOD_DELETE, "/api2/json/backup/{session}", h_abort, t, 0, 0},
    {HTTP_METHOD_POST, B "fixed_index", h_fixed_index, t, 0, 0},
    {HTTP_METHOD_POST, B "dynamic_index", h_dynamic_index, t, 0, 0},
    {HTTP_METHOD_PUT, B "fixed_index", h_fixed_append, t, INDEX_APPEND_MAX_BODY, 0},
    {HTTP_METHOD_PUT, B "dynamic_index", h_dynamic_append, t, INDEX_APPEND_MAX_BODY, 0},
    {HTTP_METHOD_POST, B "fixed_chunk", h_fixed_chunk, t, CHUNK_MAX_BODY, HTTP_ROUTE_RAW_BODY},
    {HTTP_METHOD_POST, B "dynamic_chunk", h_dynamic_chunk, t, CHUNK_MAX_BODY,
     HTTP_ROUTE_RAW_BODY},
    {HTTP_METHOD_POST, B "fixed_close", h_fixed_close, t, 0, 0},
    {HTTP_METHOD_POST, B "dynamic_close", h_dynamic_close, t, 0, 0},
    {HTTP_METHOD_POST, B "blob", h_blob, t, BLOB_MAX_BODY, HTTP_ROUTE_RAW_BODY},
    {HTTP_METHOD_GET, B "previous", h_previous, t, 0, 0},
    {HTTP_METHOD_GET, B "previous_backup_time", h_previous_time, t, 0, 0},
    {HTTP_METHOD_POST, B "finish", h_finish, t, 0, 0},
  };
#undef B
  http_server_add_routes(srv, routes, sizeof(routes) / sizeof(routes[0]));
}
