/* gc_s3_refresh.c: S3 refresh, the rebuild of a datastore's local metadata
 * from its bucket (a new server, or a lost local disk).
 *
 *   PUT /api2/json/admin/datastore/{store}/s3-refresh   -> UPID
 *
 * The task sets maintenance mode `s3-refresh` in datastore.cfg (every other
 * operation on the datastore is then refused) and waits until the
 * operations that were running have ended. It lists <store>/.cnt/ and
 * downloads every object into <base>/.s3-refresh-tmp/ (8 GETs in flight,
 * one pool job per file; `.namespace` markers only make directories), syncs
 * the file system, then for each of vm, ct, host and ns replaces the local
 * tree by the downloaded one, and clears the maintenance mode. Chunks are not
 * downloaded: reads fetch them, and the next GC re-creates their markers.
 *
 * Keys come from the bucket, which is input like any other: a key is only
 * written below the temporary directory if every path component is a plain
 * name (no "", ".", "..") and the first one is vm, ct, host or ns.
 *
 * If the task fails, the temporary tree is removed and the maintenance mode
 * cleared, leaving the local metadata as it was; if the server dies, the
 * mode stays set (the datastore stays refused) until an admin clears it or
 * runs the refresh again, and the next refresh removes the leftover tree.
 */
#include "gc/gc_s3.h"
#include "access/access.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "store/store_api.h"
#include "store/store_s3.h"
#include "store/store_move.h"
#include "store/store_chunk.h"
#include "store/store_dsconfig.h"
#include "format/format_name.h"
#include "store/store_path.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TASK_TYPE "s3-refresh"
#define TMP_DIR ".s3-refresh-tmp"
#define OLD_DIR ".s3-refresh-old"
#define MAX_INFLIGHT 8
#define MAX_OBJECT (256u * 1024 * 1024)
#define DRAIN_POLL_MS 100
#define DRAIN_MAX_MS (3600u * 1000)

enum rstep {
  R_MAINT_SET,   /* pool: maintenance-mode=s3-refresh */
  R_DRAIN,       /* loop: wait for active operations */
  R_PREPARE,     /* pool: fresh temporary directory */
  R_LIST,        /* loop: pages and downloads */
  R_SWAP,        /* pool: sync, replace the trees */
  R_CLEANUP,     /* pool: remove the temporary tree after an error */
  R_MAINT_CLEAR, /* pool: maintenance mode off */
};

struct refresh {
  struct core_job job;
  uv_timer_t timer;
  struct gc_ctx *ctx;
  struct core_task *task;
  struct store_datastore *ds;   /* reference (lookup operation) */
  struct store_backend *be;
  char *store;                  /* owned */
  char *base;                   /* owned */
  char *prefix;                 /* owned: "<store>/.cnt/" */
  enum rstep step;
  uint64_t waited_ms;
  /* listing and downloads (loop) */
  struct s3_list_result page;
  size_t page_next;
  char *token;
  int more;
  int inflight;
  int listing;
  uint64_t objects, bytes, files, dirs, skipped, pages;
  uint64_t t_start;
  /* the end */
  int rc;                       /* first error */
  char msg[512];
  int mode_set;                 /* we set the maintenance mode */
  int final_rc;
};

struct obj {
  struct core_job job;
  struct refresh *r;
  char *rel;                    /* owned, validated */
  uint8_t *data;                /* owned */
  size_t len;
  int is_ns;
  int rc;
};

static void r_advance(struct refresh *r);
static void r_submit(struct refresh *r, enum rstep s);
static void pump(struct refresh *r);

/* ---- file work (pool) ----------------------------------------------------- */

/* rm -rf below an open directory; never follows symlinks. */
static int remove_tree_at(int dfd, const char *name)
{
  struct stat st;
  if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return errno == ENOENT ? 0 : -errno;
  if (!S_ISDIR(st.st_mode))
    return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
  int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  DIR *d = fdopendir(fd);
  if (d == NULL) {
    close(fd);
    return -errno;
  }
  int rc = 0;
  for (struct dirent *e; rc == 0 && (e = readdir(d));) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    rc = remove_tree_at(fd, e->d_name);
  }
  closedir(d);
  if (rc == 0 && unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
    rc = -errno;
  return rc;
}

static int remove_tree(const char *base, const char *name)
{
  int fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  int rc = remove_tree_at(fd, name);
  close(fd);
  return rc;
}

/* mkdir -p of `rel` (already validated) below `root`. */
static int mkdirs(const char *root, const char *rel)
{
  char path[STORE_PATH_MAX];
  int n = snprintf(path, sizeof(path), "%s/%s", root, rel);
  if (n < 0 || (size_t)n >= sizeof(path))
    return CORE_ETOOBIG;
  for (char *p = path + strlen(root) + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
      return -errno;
    *p = '/';
  }
  if (mkdir(path, 0755) < 0 && errno != EEXIST)
    return -errno;
  return 0;
}

static void obj_run(struct core_job *j)
{
  struct obj *o = (struct obj *)j;
  char tmp[STORE_PATH_MAX], path[STORE_PATH_MAX];
  snprintf(tmp, sizeof(tmp), "%s/%s", o->r->base, TMP_DIR);
  char *slash = strrchr(o->rel, '/');
  if (o->is_ns) {
    /* "<nspath>/.namespace": the directory is all there is. */
    if (slash) {
      *slash = '\0';
      o->rc = mkdirs(tmp, o->rel);
      *slash = '/';
    }
    return;
  }
  if (slash) {
    *slash = '\0';
    o->rc = mkdirs(tmp, o->rel);
    *slash = '/';
    if (o->rc < 0)
      return;
  }
  int n = snprintf(path, sizeof(path), "%s/%s", tmp, o->rel);
  if (n < 0 || (size_t)n >= sizeof(path)) {
    o->rc = CORE_ETOOBIG;
    return;
  }
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    o->rc = -errno;
    return;
  }
  o->rc = core_file_write_all(fd, o->data, o->len);
  close(fd);
}

static void run_step(struct core_job *j)
{
  struct refresh *r = (struct refresh *)j;
  struct store_dsconfig_req q;
  struct core_kv kv = {"maintenance-mode", "type=s3-refresh"};
  const char *del[] = {"maintenance-mode"};
  char tmp[STORE_PATH_MAX];
  memset(&q, 0, sizeof(q));
  q.config_dir = r->ctx->reg->config_dir;
  q.shmem = r->ctx->reg->shmem;
  q.name = r->store;
  snprintf(tmp, sizeof(tmp), "%s/%s", r->base, TMP_DIR);
  switch (r->step) {
  case R_MAINT_SET:
    q.set = &kv;
    q.nset = 1;
    r->rc = store_dsconfig_update(&q);
    if (r->rc < 0)
      snprintf(r->msg, sizeof(r->msg), "cannot set maintenance mode: %s", q.err);
    break;
  case R_MAINT_CLEAR:
    q.del = del;
    q.ndel = 1;
    r->final_rc = store_dsconfig_update(&q);
    if (r->final_rc < 0)
      snprintf(r->msg, sizeof(r->msg), "cannot clear maintenance mode: %s", q.err);
    break;
  case R_PREPARE: {
    /* Leftovers of interrupted moves go first, while the local tree still
     * says where each snapshot is (store_move.h). */
    char why[256];
    if (store_move_s3_reconcile_ds(r->ds, r->ctx->run_dir, why, sizeof(why)) < 0)
      core_task_warn(r->task, "leftovers of interrupted moves not cleaned up: %s", why);
    r->rc = remove_tree(r->base, TMP_DIR);
    if (r->rc == 0)
      r->rc = remove_tree(r->base, OLD_DIR);
    if (r->rc == 0 && mkdir(tmp, 0755) < 0)
      r->rc = -errno;
    if (r->rc < 0)
      snprintf(r->msg, sizeof(r->msg), "cannot prepare %.300s: %s", tmp, core_strerror(r->rc));
    break;
  }
  case R_SWAP: {
    static const char *const trees[] = {"vm", "ct", "host", "ns"};
    char old[STORE_PATH_MAX], from[STORE_PATH_MAX + 64], to[STORE_PATH_MAX + 64];
    snprintf(old, sizeof(old), "%s/%s", r->base, OLD_DIR);
    r->rc = store_syncfs(r->base);
    if (r->rc == 0 && mkdir(old, 0755) < 0)
      r->rc = -errno;
    for (size_t i = 0; r->rc == 0 && i < 4; i++) {
      snprintf(to, sizeof(to), "%s/%s", r->base, trees[i]);
      snprintf(from, sizeof(from), "%s/%s", old, trees[i]);
      if (rename(to, from) < 0 && errno != ENOENT)
        r->rc = -errno;
      snprintf(from, sizeof(from), "%s/%s", tmp, trees[i]);
      if (r->rc == 0 && rename(from, to) < 0 && errno != ENOENT)
        r->rc = -errno;
    }
    if (r->rc < 0) {
      snprintf(r->msg, sizeof(r->msg), "cannot move the refreshed metadata into place: %s",
               core_strerror(r->rc));
      break;
    }
    remove_tree(r->base, OLD_DIR);
    remove_tree(r->base, TMP_DIR);
    int fd = open(r->base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
      fsync(fd);
      close(fd);
    }
    break;
  }
  case R_CLEANUP:
    remove_tree(r->base, TMP_DIR);
    break;
  default:
    break;
  }
}

/* ---- downloads (loop) ------------------------------------------------------ */

/* A key below the prefix is written only if it is a tree path we know. */
static int rel_ok(const char *rel)
{
  if (strncmp(rel, "vm/", 3) && strncmp(rel, "ct/", 3) && strncmp(rel, "host/", 5) &&
      strncmp(rel, "ns/", 3))
    return 0;
  size_t n = strlen(rel);
  if (n == 0 || n > 2048 || rel[n - 1] == '/')
    return 0;
  const char *p = rel;
  unsigned depth = 0;
  while (*p) {
    const char *slash = strchr(p, '/');
    size_t len = slash ? (size_t)(slash - p) : strlen(p);
    if (len == 0 || len > 255 || (len == 1 && p[0] == '.') ||
        (len == 2 && p[0] == '.' && p[1] == '.') || ++depth > 32)
      return 0;
    for (size_t i = 0; i < len; i++)
      if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f || p[i] == '\\')
        return 0;
    p += len;
    if (*p == '/')
      p++;
  }
  return 1;
}

static void obj_done(struct core_job *j, int status)
{
  struct obj *o = (struct obj *)j;
  struct refresh *r = o->r;
  int rc = status < 0 ? status : o->rc;
  if (rc < 0 && r->rc == 0) {
    r->rc = rc;
    snprintf(r->msg, sizeof(r->msg), "cannot write %s: %s", o->rel, core_strerror(rc));
  } else if (rc == 0) {
    if (o->is_ns)
      r->dirs++;
    else
      r->files++;
  }
  core_free(o->rel);
  core_free(o->data);
  core_free(o);
  r->inflight--;
  pump(r);
}

static void on_obj_get(const struct s3_result *res, void *arg)
{
  struct obj *o = arg;
  struct refresh *r = o->r;
  if (res->status < 0) {
    if (r->rc == 0) {
      r->rc = res->status;
      snprintf(r->msg, sizeof(r->msg), "cannot download %s: %s %s", o->rel,
               core_strerror(res->status), res->message);
    }
    obj_done(&o->job, 0);
    return;
  }
  o->data = core_try_malloc(res->body.len ? res->body.len : 1);
  if (o->data == NULL) {
    o->rc = UV_ENOMEM;
    obj_done(&o->job, 0);
    return;
  }
  memcpy(o->data, res->body.base, res->body.len);
  o->len = res->body.len;
  r->bytes += o->len;
  int rc = core_job_submit(r->ctx->loop, &o->job, obj_run, obj_done);
  if (rc < 0)
    obj_done(&o->job, rc);
}

static void on_page(const struct s3_result *res, void *arg);

static void finish_listing(struct refresh *r)
{
  if (r->rc < 0) {
    r_submit(r, R_CLEANUP);
    return;
  }
  core_task_log(r->task, "downloaded %" PRIu64 " objects (%" PRIu64 " bytes): %" PRIu64
                " files, %" PRIu64 " namespaces; %" PRIu64 " keys skipped", r->objects, r->bytes,
                r->files, r->dirs, r->skipped);
  r_submit(r, R_SWAP);
}

static void pump(struct refresh *r)
{
  while (r->rc == 0 && !core_task_aborted(r->task) && r->page_next < r->page.n &&
         r->inflight < MAX_INFLIGHT) {
    const struct s3_object *ob = &r->page.objects[r->page_next++];
    const char *rel = ob->key + strlen(r->prefix);
    r->objects++;
    if (strncmp(ob->key, r->prefix, strlen(r->prefix)) != 0 || !rel_ok(rel)) {
      if (++r->skipped <= 10)
        core_task_warn(r->task, "skipping unexpected key %s", ob->key);
      continue;
    }
    struct obj *o = core_new(struct obj);
    o->r = r;
    o->rel = core_strdup(rel);
    const char *last = strrchr(rel, '/');
    o->is_ns = !strcmp(last ? last + 1 : rel, ".namespace");
    r->inflight++;
    if (o->is_ns) {
      int rc = core_job_submit(r->ctx->loop, &o->job, obj_run, obj_done);
      if (rc < 0)
        obj_done(&o->job, rc);
      continue;
    }
    store_s3_get(r->be, ob->key, MAX_OBJECT, on_obj_get, o);
  }
  if (r->inflight > 0 || r->listing)
    return;
  if (r->rc == 0 && core_task_aborted(r->task)) {
    r->rc = CORE_EABORTED;
    snprintf(r->msg, sizeof(r->msg), "aborted");
  }
  if (r->rc == 0 && r->page_next < r->page.n)
    return;
  if (r->rc == 0 && r->more) {
    s3_list_result_free(&r->page);
    r->page_next = 0;
    r->listing = 1;
    store_s3_list(r->be, r->prefix, r->token, on_page, r);
    return;
  }
  finish_listing(r);
}

static void on_page(const struct s3_result *res, void *arg)
{
  struct refresh *r = arg;
  r->listing = 0;
  if (res->status < 0 || res->list == NULL) {
    r->rc = res->status < 0 ? res->status : CORE_ES3;
    snprintf(r->msg, sizeof(r->msg), "listing %s failed: %s %s", r->prefix,
             core_strerror(r->rc), res->message);
    finish_listing(r);
    return;
  }
  r->pages++;
  r->page = *res->list;
  memset(res->list, 0, sizeof(*res->list));
  r->page_next = 0;
  core_free(r->token);
  r->token = NULL;
  r->more = r->page.is_truncated && r->page.next_token && r->page.next_token[0];
  if (r->more)
    r->token = core_strdup(r->page.next_token);
  pump(r);
}

/* ---- the task ------------------------------------------------------------- */

static void on_closed(uv_handle_t *h)
{
  struct refresh *r = h->data;
  struct gc_ctx *ctx = r->ctx;
  s3_list_result_free(&r->page);
  core_free(r->token);
  core_free(r->store);
  core_free(r->base);
  core_free(r->prefix);
  core_free(r);
  gc__run_end(ctx);
}

static void r_end(struct refresh *r)
{
  int rc = r->rc < 0 ? r->rc : r->final_rc;
  if (rc == 0)
    core_task_log(r->task, "refresh of %s done in %.1f s", r->store,
                  (double)(uv_hrtime() - r->t_start) / 1e9);
  core_task_finish(r->task, rc, rc < 0 && r->msg[0] ? r->msg : NULL);
  store_release(r->ds, STORE_OP_LOOKUP);
  uv_close((uv_handle_t *)&r->timer, on_closed);
}

static void on_drain(uv_timer_t *t)
{
  struct refresh *r = t->data;
  int active = atomic_load(&r->ds->active_read) + atomic_load(&r->ds->active_write);
  if (active == 0) {
    core_task_log(r->task, "no operation is running any more; downloading metadata");
    r_submit(r, R_PREPARE);
    return;
  }
  r->waited_ms += DRAIN_POLL_MS;
  if (core_task_aborted(r->task) || r->waited_ms > DRAIN_MAX_MS) {
    r->rc = CORE_EABORTED;
    snprintf(r->msg, sizeof(r->msg), "%s", core_task_aborted(r->task) ? "aborted" :
             "operations on the datastore did not end within an hour");
    r_submit(r, R_MAINT_CLEAR);
    return;
  }
  if (r->waited_ms % 10000 == 0)
    core_task_log(r->task, "waiting for %d running operations", active);
  uv_timer_start(&r->timer, on_drain, DRAIN_POLL_MS, 0);
}

static void on_registry(void *arg, int err)
{
  struct refresh *r = arg;
  if (r->step == R_MAINT_SET) {
    r->step = R_DRAIN;
    uv_timer_start(&r->timer, on_drain, 0, 0);
  } else {
    r_end(r);
  }
}

static void job_done(struct core_job *j, int status)
{
  struct refresh *r = (struct refresh *)j;
  if (status < 0 && r->rc == 0)
    r->rc = status;
  r_advance(r);
}

static void r_submit(struct refresh *r, enum rstep s)
{
  r->step = s;
  int rc = core_job_submit(r->ctx->loop, &r->job, run_step, job_done);
  if (rc < 0)
    job_done(&r->job, rc);
}

static void r_advance(struct refresh *r)
{
  switch (r->step) {
  case R_MAINT_SET:
    if (r->rc < 0) {
      r_end(r);
      return;
    }
    r->mode_set = 1;
    core_task_log(r->task, "maintenance mode s3-refresh set");
    store_registry_refresh(r->ctx->reg, on_registry, r);
    return;
  case R_PREPARE:
    if (r->rc < 0) {
      r_submit(r, R_CLEANUP);
      return;
    }
    r->step = R_LIST;
    r->listing = 1;
    core_task_log(r->task, "listing %s in bucket %s", r->prefix, r->be->cfg.bucket);
    store_s3_list(r->be, r->prefix, NULL, on_page, r);
    return;
  case R_SWAP:
    if (r->rc < 0) {
      r_submit(r, R_CLEANUP);
      return;
    }
    core_task_log(r->task, "local metadata replaced by the bucket's");
    r_submit(r, R_MAINT_CLEAR);
    return;
  case R_CLEANUP:
    r_submit(r, R_MAINT_CLEAR);
    return;
  case R_MAINT_CLEAR:
    if (r->final_rc == 0)
      core_task_log(r->task, "maintenance mode cleared");
    store_registry_refresh(r->ctx->reg, on_registry, r);
    return;
  default:
    return;
  }
}

struct starting {
  struct gc_ctx *ctx;
  struct http_request *req;
  char *store;
};

static void on_lookup(void *arg, int err, struct store_datastore *ds)
{
  struct starting *s = arg;
  struct gc_ctx *ctx = s->ctx;
  if (err < 0) {
    store_api_lookup_error(s->req, s->store, err, ds);
    goto out;
  }
  if (!store_datastore_is_s3(ds)) {
    http_respond_error(s->req, 400, "datastore '%s' has no S3 backend", s->store);
    store_release(ds, STORE_OP_LOOKUP);
    goto out;
  }
  if (ds->maint != STORE_MAINT_NONE) {
    http_respond_error(s->req, 409, "datastore '%s' is in maintenance mode %s", s->store,
                       store_maint_name(ds->maint));
    store_release(ds, STORE_OP_LOOKUP);
    goto out;
  }
  struct core_task *task = core_task_start(ctx->tasks, TASK_TYPE, s->store,
                                           http_req_authid(s->req), s->store);
  if (task == NULL) {
    http_respond_error(s->req, 400, "authid too long for a UPID");
    store_release(ds, STORE_OP_LOOKUP);
    goto out;
  }
  struct refresh *r = core_new(struct refresh);
  r->ctx = ctx;
  r->task = task;
  r->ds = ds;
  r->be = ds->backend;
  r->store = core_strdup(s->store);
  r->base = core_strdup(ds->path);
  r->prefix = core_asprintf("%s/.cnt/", s->store);
  r->t_start = uv_hrtime();
  uv_timer_init(ctx->loop, &r->timer);
  r->timer.data = r;
  gc__run_begin(ctx);
  core_task_log(task, "refreshing datastore %s from bucket %s (S3 endpoint %s)", s->store,
                r->be->cfg.bucket, r->be->cfg.client);
  struct core_json j;
  core_json_init(&j, 0);
  core_json_str(&j, task->upid);
  http_respond_json(s->req, &j);
  r_submit(r, R_MAINT_SET);
out:
  gc__run_end(ctx);
  core_free(s->store);
  core_free(s);
}

static void h_refresh(struct http_request *req, void *arg)
{
  struct gc_ctx *ctx = arg;
  const char *store = http_req_param(req, "store");
  if (store_api_check_store(req, store) < 0)
    return;
  if (ctx->closing) {
    http_respond_error(req, 503, "server is shutting down");
    return;
  }
  struct starting *s = core_new(struct starting);
  s->ctx = ctx;
  s->req = req;
  s->store = core_strdup(store);
  gc__run_begin(ctx);
  store_lookup(ctx->reg, store, STORE_OP_LOOKUP, on_lookup, s);
}

void gc_s3_register(struct http_server *s, struct gc_ctx *ctx)
{
  const struct http_route routes[] = {
    {HTTP_METHOD_PUT, "/api2/json/admin/datastore/{store}/s3-refresh", h_refresh, ctx, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_MODIFY, ACCESS_ON_STORE)},
    {HTTP_METHOD_POST, "/api2/json/admin/datastore/{store}/s3-refresh", h_refresh, ctx, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_MODIFY, ACCESS_ON_STORE)},
  };
  http_server_add_routes(s, routes, sizeof(routes) / sizeof(routes[0]));
}
