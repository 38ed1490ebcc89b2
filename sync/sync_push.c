/* sync_push.c: the push engine (engine threads; see sync.h).
 *
 * The mirror image of a pull, through the remote's backup protocol and
 * nothing else, so the remote's own ACLs decide what the configured
 * auth-id may do there (a push target can be a token that may only add).
 * Per local namespace below ns (to max-depth) the remote namespace below
 * remote-ns is created when missing; per group that passes the filters,
 * the local finished snapshots newer than the remote's newest one are sent
 * (transfer-last keeps the newest N; encrypted-only and verified-only as
 * for a pull), oldest first, each as one backup session:
 *   - `previous` for every index of the snapshot registers the chunks of
 *     the remote's previous snapshot as known, and gives their digests;
 *   - chunks neither known nor already sent in the session are read from
 *     the local chunk store and uploaded by up to PUSHERS threads;
 *   - indexes are appended in batches and closed with their checksum,
 *     blobs uploaded as they are, the local manifest last, then `finish`.
 * Any failure aborts the session (DELETE), so the remote never shows a
 * half-pushed snapshot as finished.
 */
#include "sync/sync_source.h"

#include "client/client_api.h"
#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_json.h"
#include "format/format_blob.h"
#include "format/format_index.h"
#include "format/format_manifest.h"
#include "store/store_chunk.h"
#include "store/store_digestset.h"
#include "store/store_lock.h"
#include "store/store_path.h"
#include "store/store_registry.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define API "/api2/json"
#define PUSHERS 8
#define APPEND_BATCH 4096
#define MAX_FILE (256u * 1024 * 1024)

struct push {
  struct sync_engine *e;
  const struct sync_params *p;
  struct sync_source *dst;     /* the remote */
  struct store_chunkstore *cs;
  const char *base;
  char lockdir[STORE_PATH_MAX];
};

/* A request whose answer does not matter beyond success. */
static int simple(struct push *ps, const char *method, const char *target, const void *body,
                  size_t len, const char *ctype, int retry, char *err, size_t errlen)
{
  struct client_resp resp;
  int rc = sync_remote_request(ps->dst, method, target, body, len, ctype, retry, 0, &resp, err,
                               errlen);
  if (rc == 0)
    client_resp_free(&resp);
  return rc;
}

/* ---- chunk uploads ---- */

struct upload {
  struct push *ps;
  const char *session;
  int wid;
  int fixed;
  struct { uint8_t digest[32]; uint32_t size; } *list;
  size_t n;
  _Atomic size_t next;
  _Atomic int failed;
  pthread_mutex_t mutex;
  char err[600];
};

static void *upload_main(void *arg)
{
  struct upload *u = arg;
  struct sync_engine *e = u->ps->e;
  struct core_buf b;
  core_buf_init(&b, STORE_CHUNK_MAX_ENCODED);
  for (;;) {
    size_t i = atomic_fetch_add(&u->next, 1);
    if (i >= u->n || atomic_load(&u->failed))
      break;
    char err[600], hex[65], target[400];
    core_hex_encode(u->list[i].digest, 32, hex);
    int rc = core_task_aborted(e->task) ? CORE_EABORTED : 0;
    if (rc == 0) {
      core_buf_reset(&b);
      rc = store_chunk_read(u->ps->cs, u->list[i].digest, &b);
      if (rc < 0)
        snprintf(err, sizeof(err), "cannot read local chunk %s: %s", hex, core_strerror(rc));
    } else {
      snprintf(err, sizeof(err), "aborted");
    }
    if (rc >= 0) {
      sync_rate_reserve(&e->rate, b.len);
      snprintf(target, sizeof(target),
               API "/backup/%s/%s?wid=%d&digest=%s&size=%" PRIu32 "&encoded-size=%zu",
               u->session, u->fixed ? "fixed_chunk" : "dynamic_chunk", u->wid, hex,
               u->list[i].size, b.len);
      rc = simple(u->ps, "POST", target, b.base, b.len, "application/octet-stream", 1, err,
                  sizeof(err));
      sync_rate_settle(&e->rate, b.len, rc == 0 ? b.len : 0);
      if (rc == 0) {
        atomic_fetch_add(&e->chunks_fetched, 1);
        atomic_fetch_add(&e->bytes_fetched, b.len);
      }
    }
    if (rc < 0) {
      pthread_mutex_lock(&u->mutex);
      if (!atomic_load(&u->failed))
        snprintf(u->err, sizeof(u->err), "%s", err);
      atomic_store(&u->failed, 1);
      pthread_mutex_unlock(&u->mutex);
      break;
    }
  }
  core_buf_free(&b);
  return NULL;
}

/* Registers the remote's previous index of `name` (404: none). */
static void register_previous(struct push *ps, const char *session, const char *name,
                              struct store_digestset *known)
{
  struct core_buf t;
  core_buf_init(&t, 4096);
  core_buf_printf(&t, API "/backup/%s/previous", session);
  client_query_add(&t, "archive-name", name);
  struct client_resp resp;
  char err[256];
  if (sync_remote_request(ps->dst, "GET", t.base, NULL, 0, NULL, 1, MAX_FILE, &resp, err,
                          sizeof(err)) == 0) {
    struct format_index idx;
    if (format_index_parse(resp.body, resp.len, 0, &idx) == 0)
      for (uint64_t i = 0; i < idx.count; i++)
        store_digestset_add(known, format_index_digest(&idx, i), 1);
    client_resp_free(&resp);
  }
  core_buf_free(&t);
}

static int push_index(struct push *ps, const char *session, const char *name,
                      const uint8_t *data, size_t len, struct store_digestset *known,
                      char *err, size_t errlen)
{
  struct format_index idx;
  int rc = format_index_parse(data, len, 0, &idx);
  if (rc < 0) {
    snprintf(err, errlen, "local %s is invalid: %s", name, core_strerror(rc));
    return rc;
  }
  int fixed = idx.kind == FORMAT_INDEX_FIXED;
  struct core_buf t;
  core_buf_init(&t, 4096);
  core_buf_printf(&t, API "/backup/%s/%s", session, fixed ? "fixed_index" : "dynamic_index");
  client_query_add(&t, "archive-name", name);
  if (fixed)
    client_query_add_u64(&t, "size", idx.size);
  yajl_val tree, v;
  rc = sync_remote_json(ps->dst, "POST", t.base, NULL, 0, NULL, 0, &tree, &v, err, errlen);
  core_buf_free(&t);
  if (rc < 0)
    return rc;
  int wid = YAJL_IS_INTEGER(v) ? (int)YAJL_GET_INTEGER(v) : -1;
  yajl_tree_free(tree);
  if (wid < 0) {
    snprintf(err, errlen, "%s: the remote gave no writer id", name);
    return CORE_EPROTO;
  }
  /* Chunks to send: not known to the session yet. */
  struct upload u;
  memset(&u, 0, sizeof(u));
  u.ps = ps;
  u.session = session;
  u.wid = wid;
  u.fixed = fixed;
  pthread_mutex_init(&u.mutex, NULL);
  u.list = core_calloc(idx.count ? idx.count : 1, sizeof(*u.list));
  for (uint64_t i = 0; i < idx.count; i++) {
    const uint8_t *d = format_index_digest(&idx, i);
    if (store_digestset_get(known, d, NULL)) {
      atomic_fetch_add(&ps->e->chunks_known, 1);
      continue;
    }
    uint64_t start, end;
    format_index_chunk_range(&idx, i, &start, &end);
    store_digestset_add(known, d, (uint32_t)(end - start));
    memcpy(u.list[u.n].digest, d, 32);
    u.list[u.n++].size = (uint32_t)(end - start);
  }
  if (u.n) {
    size_t nt = u.n < PUSHERS ? u.n : PUSHERS;
    pthread_t th[PUSHERS];
    size_t started = 0;
    for (; started < nt; started++)
      if (pthread_create(&th[started], NULL, upload_main, &u) != 0)
        break;
    if (started == 0)
      upload_main(&u);
    for (size_t i = 0; i < started; i++)
      pthread_join(th[i], NULL);
  }
  rc = 0;
  if (atomic_load(&u.failed)) {
    snprintf(err, errlen, "%s", u.err);
    rc = CORE_EPROTO;
  }
  core_free(u.list);
  pthread_mutex_destroy(&u.mutex);
  /* Append in batches, then close with the checksum. */
  char target[400];
  snprintf(target, sizeof(target), API "/backup/%s/%s", session,
           fixed ? "fixed_index" : "dynamic_index");
  for (uint64_t first = 0; rc == 0 && first < idx.count; first += APPEND_BATCH) {
    uint64_t last = first + APPEND_BATCH < idx.count ? first + APPEND_BATCH : idx.count;
    struct core_json j;
    core_json_init(&j, 0);
    core_json_obj_open(&j);
    core_json_kv_int(&j, "wid", wid);
    core_json_key(&j, "digest-list");
    core_json_arr_open(&j);
    for (uint64_t i = first; i < last; i++) {
      char hex[65];
      core_hex_encode(format_index_digest(&idx, i), 32, hex);
      core_json_str(&j, hex);
    }
    core_json_arr_close(&j);
    core_json_key(&j, "offset-list");
    core_json_arr_open(&j);
    for (uint64_t i = first; i < last; i++) {
      uint64_t start, end;
      format_index_chunk_range(&idx, i, &start, &end);
      core_json_uint(&j, start);
    }
    core_json_arr_close(&j);
    core_json_obj_close(&j);
    size_t jl;
    const char *text = core_json_text(&j, &jl);
    rc = simple(ps, "PUT", target, text, jl, "application/json", 0, err, errlen);
    core_json_free(&j);
  }
  if (rc == 0) {
    char csum[65];
    core_hex_encode(idx.csum, 32, csum);
    snprintf(target, sizeof(target),
             API "/backup/%s/%s?wid=%d&chunk-count=%" PRIu64 "&size=%" PRIu64 "&csum=%s",
             session, fixed ? "fixed_close" : "dynamic_close", wid, idx.count, idx.size, csum);
    rc = simple(ps, "POST", target, NULL, 0, NULL, 0, err, errlen);
  }
  return rc;
}

static int push_blob(struct push *ps, const char *session, const char *name,
                     const uint8_t *data, size_t len, char *err, size_t errlen)
{
  struct core_buf t;
  core_buf_init(&t, 4096);
  core_buf_printf(&t, API "/backup/%s/blob", session);
  client_query_add(&t, "file-name", name);
  client_query_add_u64(&t, "encoded-size", len);
  int rc = simple(ps, "POST", t.base, data, len, "application/octet-stream", 0, err, errlen);
  core_buf_free(&t);
  if (rc == 0)
    sync_rate_take(&ps->e->rate, len);
  return rc;
}

static int verify_ok(const struct format_manifest *m)
{
  char *vs = format_manifest_unprotected_get(m, "verify_state");
  int ok = vs && strstr(vs, "\"state\":\"ok\"") != NULL;
  core_free(vs);
  return ok;
}

static int push_snapshot(struct push *ps, const char *lns, const char *rns, const char *type,
                         const char *id, int64_t t, char *err, size_t errlen)
{
  struct sync_engine *e = ps->e;
  char snapdir[STORE_PATH_MAX], path[STORE_PATH_MAX + 200], tname[FORMAT_NAME_TIME_LEN + 1];
  format_name_time_format(t, tname);
  struct store_lock_guard lk = STORE_LOCK_GUARD_INIT;
  uint8_t *mdata = NULL;
  size_t mlen = 0;
  struct format_blob_ctx bctx;
  format_blob_ctx_init(&bctx);
  struct format_manifest m;
  int have_m = 0;
  char session[80] = "";
  struct store_digestset known;
  store_digestset_init(&known, 16u * 1024 * 1024);
  int rc = store_lock_snapshot(ps->lockdir, lns, type, id, t, STORE_LOCK_SHARED, &lk);
  if (rc == 0)
    rc = store_path_snapshot(snapdir, sizeof(snapdir), ps->base, lns, type, id, t);
  if (rc < 0) {
    snprintf(err, errlen, "%s/%s/%s: cannot open: %s", type, id, tname, core_strerror(rc));
    goto out;
  }
  rc = 0;
  snprintf(path, sizeof(path), "%s/%s", snapdir, FORMAT_MANIFEST_NAME);
  rc = core_file_read(path, FORMAT_MANIFEST_MAX_LEN, &mdata, &mlen);
  if (rc == 0) {
    rc = format_manifest_decode_blob(&bctx, mdata, mlen, &m);
    have_m = 1;
  }
  if (rc < 0) {
    snprintf(err, errlen, "%s/%s/%s: cannot read the manifest: %s", type, id, tname,
             core_strerror(rc));
    goto out;
  }
  if (e->p->encrypted_only) {
    int all = m.nfiles > 0;
    for (size_t i = 0; i < m.nfiles; i++)
      all &= m.files[i].crypt_mode == FORMAT_CRYPT_MODE_ENCRYPT;
    if (!all) {
      core_task_log(e->task, "%s/%s/%s: skipped, not encrypted", type, id, tname);
      goto out;
    }
  }
  if (e->p->verified_only && !verify_ok(&m)) {
    core_task_log(e->task, "%s/%s/%s: skipped, not verified", type, id, tname);
    goto out;
  }
  rc = sync_remote_session(ps->dst, "backup", e->p->remote_store, rns, type, id, t, 0, session,
                           sizeof(session), err, errlen);
  if (rc < 0)
    goto out;
  for (size_t i = 0; i < m.nfiles; i++)
    if (format_index_kind_from_name(m.files[i].filename) > 0)
      register_previous(ps, session, m.files[i].filename, &known);
  for (size_t i = 0; rc == 0 && i < m.nfiles; i++) {
    const char *name = m.files[i].filename;
    uint8_t *data = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/%s", snapdir, name);
    rc = core_file_read(path, MAX_FILE, &data, &len);
    if (rc < 0) {
      snprintf(err, errlen, "cannot read %s: %s", name, core_strerror(rc));
      break;
    }
    if (format_index_kind_from_name(name) > 0)
      rc = push_index(ps, session, name, data, len, &known, err, errlen);
    else
      rc = push_blob(ps, session, name, data, len, err, errlen);
    core_free(data);
    if (rc == 0 && core_task_aborted(e->task)) {
      rc = CORE_EABORTED;
      snprintf(err, errlen, "aborted");
    }
  }
  if (rc == 0)
    rc = push_blob(ps, session, FORMAT_MANIFEST_NAME, mdata, mlen, err, errlen);
  if (rc == 0) {
    char target[200];
    snprintf(target, sizeof(target), API "/backup/%s/finish", session);
    rc = simple(ps, "POST", target, NULL, 0, NULL, 0, err, errlen);
  }
  if (rc == 0) {
    session[0] = '\0';
    atomic_fetch_add(&e->snapshots_synced, 1);
    core_task_log(e->task, "%s/%s/%s: pushed", type, id, tname);
  }
out:
  if (session[0]) {
    char target[200], ignored[256];
    snprintf(target, sizeof(target), API "/backup/%s", session);
    simple(ps, "DELETE", target, NULL, 0, NULL, 0, ignored, sizeof(ignored));
  }
  store_lock_release(&lk);
  store_digestset_free(&known);
  if (have_m)
    format_manifest_free(&m);
  format_blob_ctx_free(&bctx);
  core_free(mdata);
  return rc;
}

static void push_group(struct push *ps, const char *lns, const char *rns, const char *type,
                       const char *id)
{
  struct sync_engine *e = ps->e;
  const struct sync_params *p = ps->p;
  char err[600];
  struct store_snapshot_list local, remote;
  if (store_snapshot_list(ps->base, lns, type, id, &local) < 0)
    return;
  int rc = sync_source_list_snapshots(ps->dst, rns, type, id, &remote, err, sizeof(err));
  if (rc == CORE_ENOTFOUND) {
    memset(&remote, 0, sizeof(remote));
    rc = 0;
  }
  if (rc < 0) {
    sync__fail(e, "group %s/%s: %s", type, id, err);
    store_snapshot_list_free(&local);
    return;
  }
  int64_t newest = -1;
  for (size_t i = 0; i < remote.n; i++)
    if (remote.items[i].finished && remote.items[i].time > newest)
      newest = remote.items[i].time;
  size_t nfin = 0;
  for (size_t i = 0; i < local.n; i++)
    nfin += local.items[i].finished != 0;
  size_t skip_before = p->transfer_last && nfin > p->transfer_last ? nfin - p->transfer_last : 0;
  size_t k = 0;
  for (size_t i = 0; i < local.n && !core_task_aborted(e->task); i++) {
    if (!local.items[i].finished)
      continue;
    size_t pos = k++;
    if (local.items[i].time <= newest || pos < skip_before)
      continue;
    rc = push_snapshot(ps, lns, rns, type, id, local.items[i].time, err, sizeof(err));
    if (rc < 0) {
      sync__fail(e, "group %s/%s: %s", type, id, err);
      break; /* later snapshots would go on top of a gap */
    }
  }
  store_snapshot_list_free(&local);
  store_snapshot_list_free(&remote);
}

int sync__push(struct sync_engine *e)
{
  const struct sync_params *p = e->p;
  struct push ps;
  memset(&ps, 0, sizeof(ps));
  ps.e = e;
  ps.p = p;
  ps.base = e->ds->path;
  char err[512];
  struct store_ns_list lns = {NULL, 0}, rns = {NULL, 0};
  int rc = sync__open_local(e, ps.lockdir, sizeof(ps.lockdir), &ps.cs);
  if (rc < 0)
    return rc;
  rc = sync_source_open(e, &ps.dst, err, sizeof(err));
  if (rc < 0) {
    snprintf(e->err, sizeof(e->err), "cannot reach the remote: %s", err);
    return rc;
  }
  core_task_log(e->task, "pushing %s namespace '%s' to remote %s store %s namespace '%s'",
                p->store, p->ns, p->remote, p->remote_store, p->remote_ns);
  rc = store_ns_list(ps.base, p->ns, p->max_depth, &lns);
  if (rc < 0) {
    snprintf(e->err, sizeof(e->err), "cannot list local namespaces: %s", core_strerror(rc));
    goto out;
  }
  rc = sync_source_list_ns(ps.dst, "", -1, &rns, err, sizeof(err));
  if (rc < 0) {
    snprintf(e->err, sizeof(e->err), "%s", err);
    goto out;
  }
  for (size_t i = 0; i < lns.n && !core_task_aborted(e->task); i++) {
    char target_ns[FORMAT_NAME_NS_MAX_LEN + 1];
    if (sync__map_ns(p->ns, p->remote_ns, lns.items[i], target_ns, sizeof(target_ns)) < 0) {
      sync__fail(e, "namespace '%s' is too deep to map below '%s'", lns.items[i], p->remote_ns);
      continue;
    }
    int exists = target_ns[0] == '\0';
    for (size_t k = 0; k < rns.n && !exists; k++)
      exists = !strcmp(rns.items[k], target_ns);
    if (!exists) {
      char parent[FORMAT_NAME_NS_MAX_LEN + 1];
      snprintf(parent, sizeof(parent), "%s", target_ns);
      char *slash = strrchr(parent, '/');
      const char *name = slash ? slash + 1 : target_ns;
      if (slash)
        *slash = '\0';
      else
        parent[0] = '\0';
      struct core_buf t;
      core_buf_init(&t, 4096);
      core_buf_printf(&t, API "/admin/datastore/%s/namespace", p->remote_store);
      client_query_add(&t, "name", name);
      if (parent[0])
        client_query_add(&t, "parent", parent);
      rc = simple(&ps, "POST", t.base, NULL, 0, NULL, 0, err, sizeof(err));
      core_buf_free(&t);
      if (rc < 0) {
        sync__fail(e, "cannot create remote namespace '%s': %s", target_ns, err);
        continue;
      }
      core_task_log(e->task, "created remote namespace '%s'", target_ns);
    }
    struct store_group_list gl;
    if (store_group_list(ps.base, lns.items[i], &gl) < 0)
      continue;
    for (size_t j = 0; j < gl.n && !core_task_aborted(e->task); j++)
      if (sync_filters_match(&p->filters, gl.items[j].type, gl.items[j].id))
        push_group(&ps, lns.items[i], target_ns, gl.items[j].type, gl.items[j].id);
    store_group_list_free(&gl);
  }
  rc = 0;
  if (core_task_aborted(e->task)) {
    rc = CORE_EABORTED;
    snprintf(e->err, sizeof(e->err), "aborted");
  }
out:
  core_task_log(e->task,
                "summary: %" PRIu64 " snapshots pushed, %" PRIu64 " chunks uploaded (%" PRIu64
                " bytes), %" PRIu64 " chunks already on the remote",
                atomic_load(&e->snapshots_synced), atomic_load(&e->chunks_fetched),
                atomic_load(&e->bytes_fetched), atomic_load(&e->chunks_known));
  core_task_log(e->task, "transfer: %" PRIu64 " bytes in %.3f s", atomic_load(&e->rate.bytes),
                sync_rate_window(&e->rate));
  store_ns_list_free(&lns);
  store_ns_list_free(&rns);
  sync_source_close(ps.dst);
  return sync__finish(e, rc, "push");
}
