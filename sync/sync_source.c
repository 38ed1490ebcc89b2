/* sync_source.c: the remote and the local source of a pull (sync_source.h).
 *
 * Remote: every request goes through client_api (keep-alive pool, TLS with
 * the remote's fingerprint pinned). Transport errors and 5xx answers are
 * retried with back-off (0.5 s, 1 s, 2 s, 4 s); 4xx are final.
 * Local: the other datastore's directories and chunk store, with a shared
 * snapshot lock while a snapshot is read, as a reader session would hold.
 */
#include "sync/sync_source.h"

#include "client/client_api.h"
#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_json.h"
#include "http/http_bodypool.h"
#include "store/store_chunk.h"
#include "store/store_lock.h"
#include "store/store_path.h"
#include "store/store_registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define API "/api2/json"
#define RETRIES 4
#define MAX_FILE (256u * 1024 * 1024) /* an index of a 16 TiB image is 128 MiB */

struct sync_source {
  struct sync_engine *e;
  struct client_api *api;       /* remote */
  const char *store;            /* the source datastore's name */
  const char *base;             /* local: its path */
  struct store_chunkstore *cs;  /* local */
  char lockdir[STORE_PATH_MAX];
  /* Chunk buffers, recycled (any thread): page-aligned, so the chunk store
   * writes them with O_DIRECT, and no fresh pages are faulted in per chunk. */
  struct http_bodypool pool;
};

/* Buffers kept idle between chunks: enough for the fetchers of a few group
 * workers at typical chunk sizes; the rest is freed when it comes back. */
#define POOL_IDLE_MAX (96u * 1024 * 1024)

struct sync_reader {
  struct sync_source *s;
  char session[80];             /* remote */
  char snapdir[STORE_PATH_MAX]; /* local */
  struct store_lock_guard lock; /* local */
};

/* ---- remote ---- */

static void backoff(int attempt)
{
  struct timespec ts = {0, 500000000L};
  for (int i = 0; i < attempt; i++) {
    ts.tv_sec *= 2;
    ts.tv_nsec *= 2;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec += ts.tv_nsec / 1000000000L;
      ts.tv_nsec %= 1000000000L;
    }
  }
  while (nanosleep(&ts, &ts) < 0)
    ;
}

/* sync_remote_request, with bodies of known length received into a buffer
 * of `pool` when it is not NULL (GET only). */
static int request_run(struct sync_source *s, const char *method, const char *target,
                       const void *body, size_t len, const char *ctype, int retry,
                       size_t max_body, struct http_bodypool *pool, struct client_resp *resp,
                       char *err, size_t errlen)
{
  int rc = 0;
  /* A scan answers a user waiting for it: no retries there. */
  int retries = s->e->task && retry ? RETRIES : 0;
  for (int attempt = 0; attempt <= retries; attempt++) {
    if (attempt) {
      if (s->e->task && core_task_aborted(s->e->task))
        return CORE_EABORTED;
      backoff(attempt - 1);
    }
    memset(resp, 0, sizeof(*resp));
    if (pool)
      rc = client_api_get_pooled(s->api, target, max_body, pool, resp);
    else
      rc = client_api_call(s->api, method, target, body, len, ctype, max_body, resp);
    if (rc < 0) {
      snprintf(err, errlen, "%s %s: %s", method, target, core_strerror(rc));
      continue;
    }
    if (resp->status >= 200 && resp->status < 300)
      return 0;
    rc = client_api_status_error(method, target, resp, err, errlen);
    int again = resp->status >= 500;
    client_resp_free(resp);
    if (!again)
      return rc < 0 ? rc : CORE_EPROTO;
  }
  return rc < 0 ? rc : CORE_EPROTO;
}

int sync_remote_request(struct sync_source *s, const char *method, const char *target,
                        const void *body, size_t len, const char *ctype, int retry,
                        size_t max_body, struct client_resp *resp, char *err, size_t errlen)
{
  return request_run(s, method, target, body, len, ctype, retry, max_body, NULL, resp, err,
                     errlen);
}

static int call(struct sync_source *s, const char *method, const char *target, size_t max_body,
                struct client_resp *resp, char *err, size_t errlen)
{
  return sync_remote_request(s, method, target, NULL, 0, NULL, 1, max_body, resp, err, errlen);
}

int sync_remote_json(struct sync_source *s, const char *method, const char *target,
                     const void *body, size_t len, const char *ctype, int retry, yajl_val *tree,
                     yajl_val *data, char *err, size_t errlen)
{
  struct client_resp resp;
  int rc = sync_remote_request(s, method, target, body, len, ctype, retry, 4u * 1024 * 1024,
                               &resp, err, errlen);
  if (rc < 0)
    return rc;
  char perr[128];
  rc = core_json_parse(resp.body, resp.len, tree, perr, sizeof(perr));
  client_resp_free(&resp);
  if (rc < 0) {
    snprintf(err, errlen, "%s %s: bad JSON: %s", method, target, perr);
    return CORE_EPROTO;
  }
  *data = core_json_get(*tree, "data");
  if (*data == NULL && !YAJL_IS_OBJECT(*tree)) {
    yajl_tree_free(*tree);
    snprintf(err, errlen, "%s %s: no data in the answer", method, target);
    return CORE_EPROTO;
  }
  return 0;
}

static int call_json(struct sync_source *s, const char *method, const char *target,
                     yajl_val *tree, yajl_val *data, char *err, size_t errlen)
{
  return sync_remote_json(s, method, target, NULL, 0, NULL, 1, tree, data, err, errlen);
}

static void target_store(struct core_buf *b, struct sync_source *s, const char *what)
{
  core_buf_printf(b, API "/admin/datastore/%s/%s", s->store, what);
}

/* The remote listings (namespaces, groups, snapshots) share this: GET the
 * target in `b` (freed here) and insist on an array as the data. On success
 * the caller frees *tree. */
static int get_list(struct sync_source *s, struct core_buf *b, const char *what, yajl_val *tree,
                    yajl_val *data, char *err, size_t errlen)
{
  int rc = call_json(s, "GET", b->base, tree, data, err, errlen);
  core_buf_free(b);
  if (rc < 0)
    return rc;
  if (!YAJL_IS_ARRAY(*data)) {
    yajl_tree_free(*tree);
    snprintf(err, errlen, "%s list is not an array", what);
    return CORE_EPROTO;
  }
  return 0;
}

static int remote_open(struct sync_source *s, char *err, size_t errlen)
{
  const struct sync_params *p = s->e->p;
  struct client_repo repo = {
    .authid = p->auth_id, .host = p->host, .port = p->port, .store = (char *)p->remote_store};
  unsigned conns = (unsigned)p->worker_threads * 8;
  struct client_api_config cfg = {
    .repo = &repo,
    .secret = strchr(p->auth_id, '!') ? p->secret : NULL,
    .password = strchr(p->auth_id, '!') ? NULL : p->secret,
    .fingerprint = p->fingerprint,
    .plain_http = p->plain_http,
    .max_conns = conns > 32 ? 32 : conns,
  };
  return client_api_new(&cfg, &s->api, err, errlen);
}

/* ---- open/close ---- */

int sync_source_open(struct sync_engine *e, struct sync_source **out, char *err, size_t errlen)
{
  struct sync_source *s = core_new(struct sync_source);
  http_bodypool_init(&s->pool, POOL_IDLE_MAX);
  s->e = e;
  s->store = e->p->remote_store;
  int rc;
  if (e->p->remote) {
    rc = remote_open(s, err, errlen);
  } else {
    s->base = e->src_ds->path;
    rc = store_datastore_chunks(e->src_ds, &s->cs);
    if (rc < 0)
      snprintf(err, errlen, "cannot open the chunk store of %s: %s", s->store,
               core_strerror(rc));
    if (rc == 0 && store_lock_dir(s->lockdir, sizeof(s->lockdir), e->run_dir, s->store) < 0)
      rc = CORE_ENAME;
  }
  if (rc < 0) {
    sync_source_close(s);
    return rc;
  }
  *out = s;
  return 0;
}

void sync_source_close(struct sync_source *s)
{
  if (s == NULL)
    return;
  if (s->api)
    client_api_free(s->api);
  http_bodypool_free(&s->pool);
  core_free(s);
}

void sync_source_conn_stats(struct sync_source *s, uint64_t *opened, uint64_t *reused)
{
  *opened = *reused = 0;
  if (s && s->api)
    client_api_conn_stats(s->api, opened, reused);
}

/* ---- listings ---- */

int sync_source_list_ns(struct sync_source *s, const char *ns, int max_depth,
                        struct store_ns_list *out, char *err, size_t errlen)
{
  memset(out, 0, sizeof(*out));
  if (s->api == NULL) {
    int rc = store_ns_list(s->base, ns, max_depth, out);
    if (rc < 0)
      snprintf(err, errlen, "cannot list namespaces of %s: %s", s->store, core_strerror(rc));
    return rc;
  }
  struct core_buf b;
  core_buf_init(&b, 4096);
  target_store(&b, s, "namespace");
  if (ns[0])
    client_query_add(&b, "parent", ns);
  if (max_depth >= 0)
    client_query_add_u64(&b, "max-depth", (uint64_t)max_depth);
  yajl_val tree, data;
  int rc = get_list(s, &b, "namespace", &tree, &data, err, errlen);
  if (rc < 0)
    return rc;
  size_t n = data->u.array.len;
  out->items = core_calloc(n ? n : 1, sizeof(char *));
  for (size_t i = 0; i < n; i++) {
    const char *name = core_json_get_str(data->u.array.values[i], "ns");
    if (name == NULL || (name[0] && format_name_ns(name) < 0))
      continue;
    out->items[out->n++] = core_strdup(name);
  }
  yajl_tree_free(tree);
  return 0;
}

int sync_source_list_groups(struct sync_source *s, const char *ns, struct store_group_list *out,
                            char *err, size_t errlen)
{
  memset(out, 0, sizeof(*out));
  if (s->api == NULL) {
    int rc = store_group_list(s->base, ns, out);
    if (rc < 0)
      snprintf(err, errlen, "cannot list groups of %s: %s", s->store, core_strerror(rc));
    return rc;
  }
  struct core_buf b;
  core_buf_init(&b, 4096);
  target_store(&b, s, "groups");
  if (ns[0])
    client_query_add(&b, "ns", ns);
  yajl_val tree, data;
  int rc = get_list(s, &b, "group", &tree, &data, err, errlen);
  if (rc < 0)
    return rc;
  size_t n = data->u.array.len;
  out->items = core_calloc(n ? n : 1, sizeof(*out->items));
  for (size_t i = 0; i < n; i++) {
    yajl_val g = data->u.array.values[i];
    const char *type = core_json_get_str(g, "backup-type");
    const char *id = core_json_get_str(g, "backup-id");
    if (type == NULL || id == NULL || format_name_backup_type(type) < 0 ||
        format_name_backup_id(id) < 0)
      continue;
    struct store_group_info *gi = &out->items[out->n++];
    snprintf(gi->type, sizeof(gi->type), "%s", type);
    gi->id = core_strdup(id);
    const char *owner = core_json_get_str(g, "owner");
    gi->owner = owner ? core_strdup(owner) : NULL;
    gi->last_backup = -1;
  }
  yajl_tree_free(tree);
  return 0;
}

static int cmp_time(const void *a, const void *b)
{
  const struct store_snapshot_info *x = a, *y = b;
  return x->time < y->time ? -1 : x->time > y->time;
}

int sync_source_list_snapshots(struct sync_source *s, const char *ns, const char *type,
                               const char *id, struct store_snapshot_list *out, char *err,
                               size_t errlen)
{
  memset(out, 0, sizeof(*out));
  if (s->api == NULL) {
    int rc = store_snapshot_list(s->base, ns, type, id, out);
    if (rc < 0)
      snprintf(err, errlen, "cannot list snapshots of %s/%s: %s", type, id, core_strerror(rc));
    return rc;
  }
  struct core_buf b;
  core_buf_init(&b, 4096);
  target_store(&b, s, "snapshots");
  client_query_add(&b, "backup-type", type);
  client_query_add(&b, "backup-id", id);
  if (ns[0])
    client_query_add(&b, "ns", ns);
  yajl_val tree, data;
  int rc = get_list(s, &b, "snapshot", &tree, &data, err, errlen);
  if (rc < 0)
    return rc;
  size_t n = data->u.array.len;
  out->items = core_calloc(n ? n : 1, sizeof(*out->items));
  for (size_t i = 0; i < n; i++) {
    yajl_val v = data->u.array.values[i];
    int64_t t;
    int flag = 0;
    if (core_json_get_int(v, "backup-time", &t) < 0 || t < 0)
      continue;
    struct store_snapshot_info *si = &out->items[out->n++];
    si->time = t;
    si->finished = !(core_json_get_bool(v, "unfinished", &flag) == 0 && flag);
    flag = 0;
    si->is_protected = core_json_get_bool(v, "protected", &flag) == 0 && flag;
  }
  yajl_tree_free(tree);
  qsort(out->items, out->n, sizeof(*out->items), cmp_time);
  return 0;
}

/* ---- sessions ---- */

/* A reader (pull) and a backup session (push) open the same way: one POST
 * naming the snapshot, answered with the session's hex id. */
int sync_remote_session(struct sync_source *s, const char *kind, const char *store,
                        const char *ns, const char *type, const char *id, int64_t time,
                        int retry, char *session, size_t cap, char *err, size_t errlen)
{
  struct core_buf b;
  core_buf_init(&b, 4096);
  core_buf_printf(&b, API "/%s", kind);
  client_query_add(&b, "store", store);
  if (ns[0])
    client_query_add(&b, "ns", ns);
  client_query_add(&b, "backup-type", type);
  client_query_add(&b, "backup-id", id);
  client_query_add_u64(&b, "backup-time", (uint64_t)time);
  yajl_val tree, data;
  session[0] = '\0';
  int rc = sync_remote_json(s, "POST", b.base, NULL, 0, NULL, retry, &tree, &data, err, errlen);
  core_buf_free(&b);
  if (rc < 0)
    return rc;
  if (YAJL_IS_STRING(data) && strlen(data->u.string) < cap &&
      strspn(data->u.string, "0123456789abcdef") == strlen(data->u.string))
    snprintf(session, cap, "%s", data->u.string);
  yajl_tree_free(tree);
  if (!session[0]) {
    snprintf(err, errlen, "the %s session id is not hex", kind);
    return CORE_EPROTO;
  }
  return 0;
}

/* ---- readers ---- */

int sync_reader_open(struct sync_source *s, const char *ns, const char *type, const char *id,
                     int64_t time, struct sync_reader **out, char *err, size_t errlen)
{
  struct sync_reader *r = core_new(struct sync_reader);
  struct store_lock_guard g0 = STORE_LOCK_GUARD_INIT;
  r->s = s;
  r->lock = g0;
  int rc;
  if (s->api == NULL) {
    rc = store_lock_snapshot(s->lockdir, ns, type, id, time, STORE_LOCK_SHARED, &r->lock);
    if (rc == 0) {
      rc = store_path_snapshot(r->snapdir, sizeof(r->snapdir), s->base, ns, type, id, time);
      rc = rc < 0 ? rc : 0;
    }
    if (rc < 0)
      snprintf(err, errlen, "cannot open snapshot %s/%s/%lld: %s", type, id, (long long)time,
               core_strerror(rc));
  } else {
    rc = sync_remote_session(s, "reader", s->store, ns, type, id, time, 1, r->session,
                             sizeof(r->session), err, errlen);
  }
  if (rc < 0) {
    store_lock_release(&r->lock);
    core_free(r);
    return rc;
  }
  *out = r;
  return 0;
}

int sync_reader_file(struct sync_reader *r, const char *name, uint8_t **data, size_t *len,
                     char *err, size_t errlen)
{
  if (r->s->api == NULL) {
    char path[STORE_PATH_MAX + 160];
    snprintf(path, sizeof(path), "%s/%s", r->snapdir, name);
    int rc = core_file_read(path, MAX_FILE, data, len);
    if (rc < 0)
      snprintf(err, errlen, "cannot read %s: %s", name, core_strerror(rc));
    return rc;
  }
  struct core_buf b;
  core_buf_init(&b, 4096);
  core_buf_printf(&b, API "/reader/%s/download", r->session);
  client_query_add(&b, "file-name", name);
  struct client_resp resp;
  int rc = call(r->s, "GET", b.base, MAX_FILE, &resp, err, errlen);
  core_buf_free(&b);
  if (rc < 0)
    return rc;
  *len = resp.len;
  if (resp.pool == NULL && resp.body) {
    /* The response's own buffer (an index can be 128 MiB): no copy. */
    *data = (uint8_t *)resp.body;
    resp.body = NULL;
  } else {
    *data = core_malloc(resp.len ? resp.len : 1);
    memcpy(*data, resp.body, resp.len);
  }
  client_resp_free(&resp);
  return 0;
}

/* store_chunk_alloc on the source's pool, remembering the capacity. */
struct chunk_alloc {
  struct http_bodypool *pool;
  size_t cap;
};

static void *chunk_alloc_get(void *ctx, size_t len, size_t *cap)
{
  struct chunk_alloc *a = ctx;
  if (len < HTTP_BODYPOOL_MIN) {
    /* Small chunks: plain memory (not a pool buffer of a whole class). */
    a->cap = 0;
    *cap = len;
    return core_try_malloc(len);
  }
  void *mem = http_bodypool_get(a->pool, len, cap);
  a->cap = mem ? *cap : 0;
  return mem;
}

static void chunk_alloc_put(void *ctx, void *buf, size_t cap)
{
  struct chunk_alloc *a = ctx;
  if (a->cap)
    http_bodypool_put(a->pool, buf, cap);
  else
    core_free(buf);
  a->cap = 0;
}

int sync_reader_chunk(struct sync_reader *r, const uint8_t digest[32], struct sync_chunk *out,
                      char *err, size_t errlen)
{
  char hex[CORE_SHA256_HEX_LEN + 1];
  struct sync_source *s = r->s;
  memset(out, 0, sizeof(*out));
  core_hex_encode(digest, 32, hex);
  if (s->api == NULL) {
    struct core_buf b;
    struct chunk_alloc a = {&s->pool, 0};
    struct store_chunk_alloc alloc = {chunk_alloc_get, chunk_alloc_put, &a};
    core_buf_init(&b, STORE_CHUNK_MAX_ENCODED);
    int rc = store_chunk_read_into(s->cs, digest, &alloc, &b);
    if (rc < 0) {
      snprintf(err, errlen, "chunk %s: %s", hex, core_strerror(rc));
      if (a.cap)
        http_bodypool_put(&s->pool, core_buf_steal(&b, NULL), a.cap);
      else
        core_buf_free(&b);
      return rc;
    }
    out->data = (uint8_t *)core_buf_steal(&b, &out->len);
    out->pool = a.cap ? &s->pool : NULL;
    out->cap = a.cap;
    return 0;
  }
  char target[256];
  snprintf(target, sizeof(target), API "/reader/%s/chunk?digest=%s", r->session, hex);
  struct client_resp resp;
  int rc = request_run(s, "GET", target, NULL, 0, NULL, 1, STORE_CHUNK_MAX_ENCODED, &s->pool,
                       &resp, err, errlen);
  if (rc < 0)
    return rc;
  /* The response's own buffer: no copy of a chunk that can be 16 MiB. */
  out->data = (uint8_t *)resp.body;
  out->len = resp.len;
  out->pool = resp.pool;
  out->cap = resp.cap;
  return 0;
}

void sync_chunk_free(struct sync_chunk *c)
{
  if (c->pool)
    http_bodypool_put(c->pool, c->data, c->cap);
  else
    core_free(c->data);
  memset(c, 0, sizeof(*c));
}

void sync_reader_close(struct sync_reader *r)
{
  if (r == NULL)
    return;
  if (r->s->api && r->session[0]) {
    char target[160];
    snprintf(target, sizeof(target), API "/reader/%s", r->session);
    struct client_resp resp;
    memset(&resp, 0, sizeof(resp));
    if (client_api_call(r->s->api, "DELETE", target, NULL, 0, NULL, 0, &resp) == 0)
      client_resp_free(&resp);
  }
  store_lock_release(&r->lock);
  core_free(r);
}
