/* gc_prune.c: prune one group (an HTTP request with one pool job) and
 * prune-datastore (a task: one job lists the groups, then one job per group).
 *
 * Selection is store_prune() (PBS's algorithm). Removal takes the snapshot's
 * lock exclusively without waiting: a snapshot that a running backup uses as
 * its base (shared lock), one being read, or the unfinished snapshot a backup
 * is writing (exclusive lock) fails with CORE_ELOCKED and stays; the result
 * says so. A protected snapshot is never removed (store_prune marks it, and
 * store_snapshot_delete re-checks under the lock).
 */
#include "gc/gc_api.h"
#include "access/access.h"
#include "store/store_access.h"
#include "store/store_metrics.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "store/store_api.h"
#include "store/store_s3.h"
#include "store/store_lock.h"
#include "format/format_name.h"
#include "store/store_path.h"
#include "store/store_snapshot.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

struct prune_entry {
  int64_t time;
  enum store_prune_mark mark;
  enum store_prune_reason reason;
  enum store_prune_reason rule;
  int is_protected;
  int removed;       /* 1 once deleted */
  int err;           /* removal error (CORE_ELOCKED: in use), 0 if none */
};

struct prune_result {
  struct prune_entry *e; /* owned, newest first */
  size_t n;
  int rc;                /* listing error */
};

static void prune_result_free(struct prune_result *r)
{
  core_free(r->e);
  memset(r, 0, sizeof(*r));
}

/* Pool: lists one group, selects, removes. */
static void prune_group(const char *base, const char *lockdir, const char *ns, const char *type,
                        const char *id, const struct store_prune_keep *keep, int dry_run,
                        struct prune_result *out)
{
  struct store_snapshot_list list;
  memset(out, 0, sizeof(*out));
  int rc = store_snapshot_list(base, ns, type, id, &list);
  if (rc < 0) {
    out->rc = rc;
    return;
  }
  struct store_prune_item *items = core_calloc(list.n ? list.n : 1, sizeof(*items));
  for (size_t i = 0; i < list.n; i++) {
    items[i].backup_time = list.items[i].time;
    items[i].finished = list.items[i].finished;
    items[i].protected = list.items[i].is_protected;
  }
  rc = store_prune(items, list.n, keep, 0);
  if (rc < 0) {
    out->rc = rc;
    goto out;
  }
  out->e = core_calloc(list.n ? list.n : 1, sizeof(*out->e));
  out->n = list.n;
  for (size_t i = 0; i < list.n; i++) {
    struct prune_entry *e = &out->e[i];
    e->time = items[i].backup_time;
    e->mark = items[i].mark;
    e->reason = items[i].reason;
    e->rule = items[i].rule;
    e->is_protected = items[i].protected;
    if (dry_run || e->mark != STORE_PRUNE_REMOVE)
      continue;
    struct store_lock_guard g = STORE_LOCK_GUARD_INIT;
    rc = store_lock_snapshot(lockdir, ns, type, id, e->time, STORE_LOCK_EXCLUSIVE, &g);
    if (rc == 0) {
      rc = store_snapshot_delete(base, ns, type, id, e->time);
      store_lock_release(&g);
    }
    if (rc == 0 || rc == CORE_ENOTFOUND)
      e->removed = 1;
    else
      e->err = rc;
  }
out:
  core_free(items);
  store_snapshot_list_free(&list);
}

static const char *removal_error(int err)
{
  return err == CORE_ELOCKED ? "snapshot is in use (locked), not removed" : core_strerror(err);
}

static void entry_json(struct core_json *j, const char *type, const char *id,
                       const struct prune_entry *e, int dry_run)
{
  core_json_obj_open(j);
  core_json_kv_str(j, "backup-type", type);
  core_json_kv_str(j, "backup-id", id);
  core_json_kv_int(j, "backup-time", e->time);
  core_json_kv_bool(j, "keep", store_prune_mark_keeps(e->mark) || e->err);
  core_json_kv_bool(j, "protected", e->is_protected);
  core_json_kv_str(j, "mark", store_prune_mark_name(e->mark));
  core_json_kv_str(j, "reason", store_prune_reason_name(e->reason));
  if (e->reason == STORE_PRUNE_R_SUPERSEDED)
    core_json_kv_str(j, "rule", store_prune_reason_name(e->rule));
  if (!dry_run && e->mark == STORE_PRUNE_REMOVE) {
    core_json_kv_bool(j, "removed", e->removed);
    if (e->err)
      core_json_kv_str(j, "error", removal_error(e->err));
  }
  core_json_obj_close(j);
}

/* S3 datastores: the bucket's copy of each removed snapshot goes too. */
static void forget_removed(struct store_datastore *ds, const char *ns, const char *type,
                           const char *id, const struct prune_result *res)
{
  int any = 0;
  for (size_t i = 0; i < res->n; i++) {
    if (res->e[i].removed) {
      store_s3_forget_snapshot(ds, ns, type, id, res->e[i].time);
      any = 1;
    }
  }
  if (any) /* the group's newest snapshot may be gone: the last-backup cache rescans */
    store_metrics_store_changed(ds->reg->metrics, ds->name);
}

/* ---- POST .../prune: one group ----------------------------------------- */

struct prune_req {
  struct core_job job;
  struct gc_ctx *ctx;
  struct http_request *req;
  struct store_datastore *ds;   /* reference + operation `op` */
  enum store_op op;
  /* in */
  char *base;
  char lockdir[STORE_PATH_MAX];
  char ns[FORMAT_NAME_NS_MAX_LEN + 1];
  char type[8];
  char id[FORMAT_NAME_ID_MAX + 1];
  struct store_prune_keep keep;
  int dry_run;
  /* out */
  struct prune_result res;
};

static void prune_req_run(struct core_job *j)
{
  struct prune_req *p = (struct prune_req *)j;
  prune_group(p->base, p->lockdir, p->ns, p->type, p->id, &p->keep, p->dry_run, &p->res);
}

static void prune_req_done(struct core_job *j, int status)
{
  struct prune_req *p = (struct prune_req *)j;
  int rc = status < 0 ? status : p->res.rc;
  if (rc == CORE_ENOTFOUND) {
    http_respond_error(p->req, 404, "group %s/%s does not exist%s%s", p->type, p->id,
                       p->ns[0] ? " in namespace " : "", p->ns);
  } else if (rc < 0) {
    http_respond_errno(p->req, rc, "prune failed");
  } else {
    forget_removed(p->ds, p->ns, p->type, p->id, &p->res);
    struct core_json out;
    core_json_init(&out, 0);
    core_json_arr_open(&out);
    for (size_t i = 0; i < p->res.n; i++)
      entry_json(&out, p->type, p->id, &p->res.e[i], p->dry_run);
    core_json_arr_close(&out);
    http_respond_json(p->req, &out);
  }
  store_release(p->ds, p->op);
  prune_result_free(&p->res);
  core_free(p->base);
  gc__run_end(p->ctx);
  core_free(p);
}

static void prune_req_lookup(void *arg, int err, struct store_datastore *ds)
{
  struct prune_req *p = arg;
  if (err < 0) {
    store_api_lookup_error(p->req, http_req_param(p->req, "store"), err, ds);
    gc__run_end(p->ctx);
    core_free(p);
    return;
  }
  p->ds = ds;
  p->base = core_strdup(ds->path);
  int rc = core_job_submit(p->ctx->loop, &p->job, prune_req_run, prune_req_done);
  if (rc < 0)
    prune_req_done(&p->job, rc);
}

/* Reads keep-* parameters. Returns 0 or responds 400 and returns <0. */
int gc__parse_keep(struct http_request *req, struct store_prune_keep *keep)
{
  static const char *const keys[] = {"keep-last", "keep-hourly", "keep-daily",
                                     "keep-weekly", "keep-monthly", "keep-yearly"};
  memset(keep, 0, sizeof(*keep));
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    const char *v = http_req_param(req, keys[i]);
    if (v && store_prune_keep_set(keep, keys[i], v) < 0) {
      http_respond_error(req, 400, "parameter %s: must be an integer >= 1", keys[i]);
      return CORE_EINVAL;
    }
  }
  return 0;
}

static void h_prune(struct http_request *req, void *arg)
{
  struct gc_ctx *ctx = arg;
  const char *store = http_req_param(req, "store");
  const char *ns = http_req_param(req, "ns");
  const char *type = http_req_param(req, "backup-type");
  const char *id = http_req_param(req, "backup-id");
  if (ns == NULL)
    ns = "";
  if (format_name_ns(ns) < 0) {
    http_respond_error(req, 400, "parameter ns: invalid namespace");
    return;
  }
  if (format_name_backup_type(type) < 0) {
    http_respond_error(req, 400, "parameter backup-type: must be vm, ct or host");
    return;
  }
  if (format_name_backup_id(id) < 0) {
    http_respond_error(req, 400, "parameter backup-id: invalid backup id");
    return;
  }
  int dry_run;
  if (http_req_param_bool(req, "dry-run", 0, &dry_run) < 0)
    return;
  struct prune_req *p = core_new(struct prune_req);
  if (gc__parse_keep(req, &p->keep) < 0) {
    core_free(p);
    return;
  }
  if (store_lock_dir(p->lockdir, sizeof(p->lockdir), ctx->run_dir, store) < 0) {
    core_free(p);
    http_respond_error(req, 400, "invalid datastore name");
    return;
  }
  p->ctx = ctx;
  p->req = req;
  p->dry_run = dry_run;
  p->op = dry_run ? STORE_OP_READ : STORE_OP_WRITE;
  snprintf(p->ns, sizeof(p->ns), "%s", ns);
  snprintf(p->type, sizeof(p->type), "%s", type);
  snprintf(p->id, sizeof(p->id), "%s", id);
  if (!dry_run && ctx->access)
    store_access_audit(ctx->access, req, "prune store=%s ns=%s group=%s/%s", store,
                       ns[0] ? ns : "/", type, id);
  gc__run_begin(ctx);
  store_lookup(ctx->reg, store, p->op, prune_req_lookup, p);
}

/* ---- prune-datastore: a task over a namespace subtree -------------------- */

struct group_ref {
  char *ns;
  char type[8];
  char *id;
};

struct prune_run {
  struct core_job job;
  struct gc_ctx *ctx;
  struct gc_store_state *state;
  struct core_task *task;
  struct store_datastore *ds;   /* reference + operation `op` */
  enum store_op op;
  struct gc_prune_opts opts;
  char *base;
  char lockdir[STORE_PATH_MAX];
  int listing;                  /* the job in flight lists groups */
  /* job-owned */
  struct group_ref *groups;
  size_t n_groups, cur;
  int rc;
  char msg[512];
  struct prune_result res;
  /* totals */
  uint64_t kept, removed, failed, group_errors;
};

static void list_groups(struct prune_run *r)
{
  struct store_ns_list nsl;
  int rc = store_ns_list(r->base, r->opts.ns, r->opts.max_depth, &nsl);
  if (rc < 0) {
    r->rc = rc;
    snprintf(r->msg, sizeof(r->msg), "cannot list namespace '%s': %s", r->opts.ns,
             core_strerror(rc));
    return;
  }
  size_t cap = 0;
  for (size_t i = 0; i < nsl.n && rc == 0; i++) {
    struct store_group_list gl;
    rc = store_group_list(r->base, nsl.items[i], &gl);
    if (rc == CORE_ENOTFOUND) { /* removed meanwhile */
      rc = 0;
      continue;
    }
    if (rc < 0) {
      snprintf(r->msg, sizeof(r->msg), "cannot list groups of namespace '%s': %s",
               nsl.items[i], core_strerror(rc));
      r->rc = rc;
      break;
    }
    for (size_t k = 0; k < gl.n; k++) {
      if (r->n_groups == cap) {
        cap = cap ? cap * 2 : 32;
        r->groups = core_realloc(r->groups, cap * sizeof(*r->groups));
      }
      struct group_ref *g = &r->groups[r->n_groups++];
      g->ns = core_strdup(nsl.items[i]);
      snprintf(g->type, sizeof(g->type), "%s", gl.items[k].type);
      g->id = core_strdup(gl.items[k].id);
    }
    store_group_list_free(&gl);
  }
  store_ns_list_free(&nsl);
}

static void prune_run_job(struct core_job *j)
{
  struct prune_run *r = (struct prune_run *)j;
  if (r->listing) {
    list_groups(r);
    return;
  }
  struct group_ref *g = &r->groups[r->cur];
  prune_group(r->base, r->lockdir, g->ns, g->type, g->id, &r->opts.keep, r->opts.dry_run,
              &r->res);
}

static void prune_run_free(struct prune_run *r)
{
  for (size_t i = 0; i < r->n_groups; i++) {
    core_free(r->groups[i].ns);
    core_free(r->groups[i].id);
  }
  core_free(r->groups);
  prune_result_free(&r->res);
  core_free(r->base);
  struct gc_ctx *ctx = r->ctx;
  core_free(r);
  gc__run_end(ctx);
}

static void prune_run_end(struct prune_run *r, int err, const char *msg)
{
  if (err == 0)
    core_task_log(r->task, "prune finished: %" PRIu64 " kept, %" PRIu64 " %s, %" PRIu64
                  " could not be removed", r->kept, r->removed,
                  r->opts.dry_run ? "would be removed" : "removed", r->failed);
  if (r->state->prune == r->task)
    r->state->prune = NULL;
  core_task_finish(r->task, err, msg);
  store_release(r->ds, r->op);
  prune_run_free(r);
}

static void prune_run_done(struct core_job *j, int status);

static void prune_next(struct prune_run *r)
{
  if (core_task_aborted(r->task)) {
    prune_run_end(r, CORE_EABORTED, "aborted");
    return;
  }
  if (r->cur >= r->n_groups) {
    prune_run_end(r, 0, NULL);
    return;
  }
  core_task_set_progress(r->task, (double)r->cur / (double)r->n_groups);
  gc__submit(r->ctx, &r->job, prune_run_job, prune_run_done);
}

static void log_group(struct prune_run *r, const struct group_ref *g)
{
  char when[FORMAT_NAME_TIME_LEN + 1];
  const char *nsp = g->ns[0] ? g->ns : NULL;
  core_task_log(r->task, "Pruning group %s%s%s/%s", nsp ? nsp : "", nsp ? ":" : "", g->type,
                g->id);
  for (size_t i = 0; i < r->res.n; i++) {
    const struct prune_entry *e = &r->res.e[i];
    if (format_name_time_format(e->time, when) < 0)
      snprintf(when, sizeof(when), "%" PRId64, e->time);
    const char *reason = store_prune_reason_name(e->reason);
    if (e->mark != STORE_PRUNE_REMOVE) {
      r->kept++;
      core_task_log(r->task, "%s %s/%s/%s (%s)", store_prune_mark_name(e->mark), g->type, g->id,
                    when, reason);
    } else if (r->opts.dry_run) {
      r->removed++;
      core_task_log(r->task, "would remove %s/%s/%s (%s)", g->type, g->id, when, reason);
    } else if (e->removed) {
      r->removed++;
      core_task_log(r->task, "removed %s/%s/%s (%s)", g->type, g->id, when, reason);
    } else {
      r->failed++;
      core_task_warn(r->task, "not removed %s/%s/%s: %s", g->type, g->id, when,
                     removal_error(e->err));
    }
  }
}

static void prune_run_done(struct core_job *j, int status)
{
  struct prune_run *r = (struct prune_run *)j;
  if (status < 0) {
    prune_run_end(r, status, NULL);
    return;
  }
  if (r->listing) {
    r->listing = 0;
    if (r->rc < 0) {
      prune_run_end(r, r->rc, r->msg);
      return;
    }
    core_task_log(r->task, "found %zu groups", r->n_groups);
    prune_next(r);
    return;
  }
  struct group_ref *g = &r->groups[r->cur];
  if (r->res.rc == CORE_ENOTFOUND) {
    /* deleted meanwhile */
  } else if (r->res.rc < 0) {
    r->group_errors++;
    core_task_warn(r->task, "group %s%s%s/%s: %s", g->ns, g->ns[0] ? ":" : "", g->type, g->id,
                   core_strerror(r->res.rc));
  } else {
    forget_removed(r->ds, g->ns, g->type, g->id, &r->res);
    log_group(r, g);
  }
  prune_result_free(&r->res);
  r->cur++;
  prune_next(r);
}

static void log_options(struct core_task *t, const struct gc_prune_opts *o)
{
  char buf[256];
  size_t n = 0;
  const struct { const char *name; uint64_t v; } k[] = {
    {"keep-last", o->keep.last},       {"keep-hourly", o->keep.hourly},
    {"keep-daily", o->keep.daily},     {"keep-weekly", o->keep.weekly},
    {"keep-monthly", o->keep.monthly}, {"keep-yearly", o->keep.yearly},
  };
  buf[0] = '\0';
  for (size_t i = 0; i < sizeof(k) / sizeof(k[0]) && n < sizeof(buf); i++)
    if (k[i].v)
      n += (size_t)snprintf(buf + n, sizeof(buf) - n, " --%s %" PRIu64, k[i].name, k[i].v);
  core_task_log(t, "retention options:%s", buf[0] ? buf : " (none: keep all)");
}

static void prune_ready(struct gc_start *s, struct store_datastore *ds)
{
  struct gc_ctx *ctx = s->ctx;
  const struct gc_prune_opts *o = s->opts;
  char msg[CORE_TASK_UPID_MAX + 128];
  enum store_op op = o->dry_run ? STORE_OP_READ : STORE_OP_WRITE;
  struct gc_store_state *state = gc__store_state(ctx, s->store);
  if (state->prune) {
    snprintf(msg, sizeof(msg), "prune already running on datastore '%s' (%s)", s->store,
             state->prune->upid);
    store_release(ds, op);
    s->cb(s->arg, CORE_ELOCKED, msg, NULL);
    return;
  }
  struct core_task *task = core_task_start(ctx->tasks, GC_TASK_PRUNE, s->store, s->authid,
                                           s->store);
  if (task == NULL) {
    store_release(ds, op);
    s->cb(s->arg, CORE_EINVAL, "authid too long for a UPID", NULL);
    return;
  }
  struct prune_run *r = core_new(struct prune_run);
  r->ctx = ctx;
  r->state = state;
  r->task = task;
  r->ds = ds;
  r->op = op;
  r->opts = *o;
  r->base = core_strdup(ds->path);
  store_lock_dir(r->lockdir, sizeof(r->lockdir), ctx->run_dir, s->store);
  r->listing = 1;
  state->prune = task;
  gc__run_begin(ctx);
  core_task_log(task, "Starting datastore prune on datastore '%s', %s%s%s%s", s->store,
                o->ns[0] ? "namespace '" : "root namespace", o->ns,
                o->ns[0] ? "'" : "", o->dry_run ? " (dry-run)" : "");
  log_options(task, o);
  s->cb(s->arg, 0, NULL, task);
  gc__submit(ctx, &r->job, prune_run_job, prune_run_done);
}

void gc_start_prune(struct gc_ctx *ctx, const char *store, const char *authid,
                    const struct gc_prune_opts *opts, gc_start_cb cb, void *arg)
{
  gc__start(ctx, store, authid, opts->dry_run ? STORE_OP_READ : STORE_OP_WRITE, opts,
            sizeof(*opts), prune_ready, cb, arg);
}

void gc__prune_register(struct http_server *s, struct gc_ctx *ctx)
{
  const struct http_route routes[] = {
    {HTTP_METHOD_POST, "/api2/json/admin/datastore/{store}/prune", h_prune, ctx, 0, 0,
     ACCESS_NEEDS_OR(ACCESS_PRIV_DATASTORE_MODIFY, ACCESS_PRIV_DATASTORE_PRUNE, ACCESS_ON_NS, ACCESS_IF_GROUP_OWNER)},
  };
  http_server_add_routes(s, routes, sizeof(routes) / sizeof(routes[0]));
}
