/* gc_move.c: the move-group and move-namespace tasks and their routes
 * (PBS 4.2's shapes), on top of store_move.h.
 *
 * A request is checked in a pool job first (store_move_group_check /
 * store_move_ns_check, and the target-side privilege, which needs the
 * group's owner): every refusal is a 4xx before anything changes and before
 * a task exists. Then a task runs the move as a sequence of jobs on the gc
 * workers:
 *
 *   move-group      one job per attempt; an attempt that finds a lock busy
 *                   changed nothing, and is retried from a loop timer
 *                   (RETRIES attempts, growing delays), then reported.
 *   move-namespace  LOCK: on S3, interrupted moves are reconciled first;
 *                   the source namespace exclusively (retried like a
 *                   group), then the plan, on S3 the move's pending record,
 *                   and the target namespaces, parents first; GROUP: one job per group (the source is held, so
 *                   only the target group can be busy); the groups that were
 *                   busy get one more pass at the end; FINISH: with
 *                   delete-source, the emptied source namespaces go, deepest
 *                   first (on S3 then their markers, and the record goes);
 *                   then the namespace lock is released.
 * The task log names every group moved or failed, and why; a failed group
 * stays whole where it was (store_move.h).
 */
#include "gc/gc_api.h"
#include "access/access.h"
#include "store/store_access.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_job.h"
#include "core/core_testpoint.h"
#include "format/format_name.h"
#include "store/store_api.h"
#include "store/store_lock.h"
#include "store/store_move.h"
#include "store/store_path.h"
#include "store/store_s3.h"
#include "store/store_snapshot.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define GC_TASK_MOVE_GROUP "move-group"
#define GC_TASK_MOVE_NS "move-namespace"
#define RETRIES 6          /* attempts while a lock is busy */
#define RETRY_BASE_MS 100  /* first delay; doubles, capped */
#define RETRY_MAX_MS 1600

struct move_opts {
  int ns_move;
  char ns[FORMAT_NAME_NS_MAX_LEN + 1];
  char target[FORMAT_NAME_NS_MAX_LEN + 1];
  char type[8];
  char id[FORMAT_NAME_ID_MAX + 1];
  int merge;
  int max_depth;        /* -1: all */
  int delete_source;
  uint32_t target_privs; /* the caller's privileges on the target (or its parent) */
  int check_target;     /* 0 without access control */
};

enum move_step { STEP_CHECK, STEP_GROUP, STEP_NS_LOCK, STEP_NS_GROUP, STEP_NS_FINISH };

struct move_run {
  struct core_job job;
  uv_timer_t timer;
  struct gc_ctx *ctx;
  struct core_task *task;       /* NULL until the check passed */
  struct store_datastore *ds;   /* reference + STORE_OP_WRITE */
  char *store, *authid, *base;
  char lockdir[STORE_PATH_MAX];
  struct move_opts o;
  gc_start_cb cb;               /* the start answer (until the task exists) */
  void *cb_arg;
  enum move_step step;
  int attempt;
  /* namespace move */
  struct store_lock_guard ns_guard; /* the source namespace, exclusive */
  struct store_move_ns_plan plan;
  size_t cur;
  int *state;                   /* per group: 0 todo, 1 moved, 2 busy, <0 failed */
  char **why;                   /* per group: failure message (owned) */
  int second_pass;
  size_t moved, failed;
  /* job out */
  int rc;
  char msg[600];
  struct store_move_result res;
};

static void move_submit(struct move_run *r, enum move_step step);

static void on_closed(uv_handle_t *h)
{
  struct move_run *r = h->data;
  struct gc_ctx *ctx = r->ctx;
  for (size_t i = 0; r->why && i < r->plan.n_groups; i++)
    core_free(r->why[i]);
  core_free(r->why);
  core_free(r->state);
  store_move_ns_plan_free(&r->plan);
  core_free(r->store);
  core_free(r->authid);
  core_free(r->base);
  core_free(r);
  gc__run_end(ctx);
}

static void run_end(struct move_run *r, int err, const char *msg)
{
  store_lock_release(&r->ns_guard);
  if (r->task)
    core_task_finish(r->task, err, msg);
  else
    r->cb(r->cb_arg, err, msg, NULL);
  store_release(r->ds, STORE_OP_WRITE);
  uv_close((uv_handle_t *)&r->timer, on_closed);
}

static const char *show(const char *ns)
{
  return ns[0] ? ns : "/";
}

/* ---- jobs (gc workers) ---------------------------------------------------- */

static void job_check(struct move_run *r)
{
  if (!r->o.ns_move) {
    r->rc = store_move_group_check(r->base, r->o.ns, r->o.type, r->o.id, r->o.target,
                                   r->o.merge, &r->res);
    snprintf(r->msg, sizeof(r->msg), "%s", r->res.msg);
    if (r->rc == 0 && r->o.check_target && !(r->o.target_privs & ACCESS_PRIV_DATASTORE_MODIFY)) {
      /* Datastore.Backup and ownership suffice on the target. */
      char *owner = NULL;
      int rc = store_group_owner(r->base, r->o.ns, r->o.type, r->o.id, &owner);
      if (!(r->o.target_privs & ACCESS_PRIV_DATASTORE_BACKUP) || rc < 0 ||
          !store_access_owns(r->authid, owner)) {
        r->rc = CORE_EPROTECTED; /* mapped to 403 */
        snprintf(r->msg, sizeof(r->msg), "permission check failed: Datastore.Modify, or "
                 "Datastore.Backup and ownership, needed on /datastore/%s%s%s", r->store,
                 r->o.target[0] ? "/" : "", r->o.target);
      }
      core_free(owner);
    }
    return;
  }
  r->rc = store_move_ns_check(r->base, r->o.ns, r->o.target, r->o.max_depth, NULL, r->msg,
                              sizeof(r->msg));
}

/* S3 datastores: a private blocking client for the job (store_s3_move.c). */
static int s3_open(struct move_run *r, struct store_s3_fetcher **f, char *msg, size_t len)
{
  *f = NULL;
  if (!store_datastore_is_s3(r->ds))
    return 0;
  return store_s3_fetcher_open(r->ds, f, msg, len);
}

static void job_group(struct move_run *r)
{
  struct store_s3_fetcher *f;
  r->rc = s3_open(r, &f, r->res.msg, sizeof(r->res.msg));
  if (r->rc == 0 && f) {
    /* Leftovers of interrupted moves first (store_move.h). */
    char why[256];
    store_move_s3_reconcile(f, r->base, r->lockdir, why, sizeof(why));
  }
  if (r->rc == 0)
    r->rc = store_move_group(r->base, r->lockdir, r->o.ns, r->o.type, r->o.id, r->o.target,
                             r->o.merge, 0, f, &r->res);
  store_s3_fetcher_close(f);
}

static void job_ns_lock(struct move_run *r)
{
  struct store_s3_fetcher *f = NULL;
  if (r->attempt == 0 && s3_open(r, &f, r->msg, sizeof(r->msg)) == 0 && f) {
    /* Leftovers of interrupted moves first, before the namespace lock
     * (reconciling takes group and namespace locks itself). */
    char why[256];
    store_move_s3_reconcile(f, r->base, r->lockdir, why, sizeof(why));
  }
  store_s3_fetcher_close(f);
  f = NULL;
  r->msg[0] = '\0';
  r->rc = store_lock_namespace(r->lockdir, r->o.ns, STORE_LOCK_EXCLUSIVE, &r->ns_guard);
  if (r->rc == CORE_ELOCKED) {
    snprintf(r->msg, sizeof(r->msg), "namespace '%s' is busy (a backup, reader, verify or "
             "another operation below it holds a lock)", r->o.ns);
    return;
  }
  if (r->rc < 0) {
    snprintf(r->msg, sizeof(r->msg), "cannot lock namespace '%s': %s", r->o.ns,
             core_strerror(r->rc));
    return;
  }
  core_testpoint("move-ns-locked");
  /* Checked again under the lock: the tree cannot change below it now. */
  r->rc = store_move_ns_check(r->base, r->o.ns, r->o.target, r->o.max_depth, &r->plan, r->msg,
                              sizeof(r->msg));
  if (r->rc == 0 && store_datastore_is_s3(r->ds) &&
      (r->rc = store_move_s3_ns_pending_add(r->base, r->o.ns, r->o.target)) < 0)
    snprintf(r->msg, sizeof(r->msg), "cannot record the move: %s", core_strerror(r->rc));
  if (r->rc == 0)
    r->rc = store_move_ns_create_targets(r->base, &r->plan, r->msg, sizeof(r->msg));
  if (r->rc == 0 && (r->rc = s3_open(r, &f, r->msg, sizeof(r->msg))) == 0 && f)
    r->rc = store_move_s3_ns_markers(f, &r->plan, r->base, 0, r->msg, sizeof(r->msg));
  store_s3_fetcher_close(f);
}

static void job_ns_group(struct move_run *r)
{
  const struct store_move_group_ref *g = &r->plan.groups[r->cur];
  struct store_s3_fetcher *f;
  r->rc = s3_open(r, &f, r->res.msg, sizeof(r->res.msg));
  if (r->rc == 0)
    r->rc = store_move_group(r->base, r->lockdir, g->src_ns, g->type, g->id, g->dst_ns,
                             r->o.merge, STORE_MOVE_SRC_HELD, f, &r->res);
  store_s3_fetcher_close(f);
}

static void job_ns_finish(struct move_run *r)
{
  r->rc = 0;
  if (r->o.delete_source)
    r->rc = store_move_ns_remove_sources(r->base, &r->plan);
  core_testpoint("move-ns-removed");
  struct store_s3_fetcher *f = NULL;
  if (r->rc >= 0 && s3_open(r, &f, r->msg, sizeof(r->msg)) == 0 && f) {
    /* The record goes once the removed sources' markers are gone; if that
     * fails, the next move, GC or refresh deletes them (store_move.h). */
    if (r->o.delete_source &&
        store_move_s3_ns_markers(f, &r->plan, r->base, 1, r->msg, sizeof(r->msg)) < 0)
      r->rc = CORE_ES3;
    else
      store_move_s3_ns_pending_remove(r->base, r->o.ns, r->o.target);
  }
  store_s3_fetcher_close(f);
}

static void job_run(struct core_job *j)
{
  struct move_run *r = (struct move_run *)j;
  r->rc = 0;
  r->msg[0] = '\0';
  memset(&r->res, 0, sizeof(r->res));
  switch (r->step) {
  case STEP_CHECK: job_check(r); break;
  case STEP_GROUP: job_group(r); break;
  case STEP_NS_LOCK: job_ns_lock(r); break;
  case STEP_NS_GROUP: job_ns_group(r); break;
  case STEP_NS_FINISH: job_ns_finish(r); break;
  }
}

/* ---- loop side ------------------------------------------------------------ */

static void on_retry(uv_timer_t *t)
{
  struct move_run *r = t->data;
  if (core_task_aborted(r->task)) {
    run_end(r, CORE_EABORTED, "aborted");
    return;
  }
  move_submit(r, r->step);
}

/* An abort while waiting for a retry ends the task at once; a job in flight
 * notices the flag when it is done. */
static void on_abort(struct core_task *t, void *arg)
{
  struct move_run *r = arg;
  (void)t;
  if (uv_is_active((uv_handle_t *)&r->timer)) {
    uv_timer_stop(&r->timer);
    run_end(r, CORE_EABORTED, "aborted");
  }
}

/* A busy lock: try again later, or give up after RETRIES attempts. */
static int retry_later(struct move_run *r, const char *why)
{
  if (++r->attempt >= RETRIES || core_task_aborted(r->task))
    return 0;
  uint64_t ms = (uint64_t)RETRY_BASE_MS << (r->attempt - 1);
  if (ms > RETRY_MAX_MS)
    ms = RETRY_MAX_MS;
  core_task_log(r->task, "%s; retrying in %" PRIu64 " ms (attempt %d of %d)", why, ms,
                r->attempt + 1, RETRIES);
  uv_timer_start(&r->timer, on_retry, ms, 0);
  return 1;
}

static void log_group_done(struct move_run *r, const char *src_ns, const char *type,
                           const char *id, const char *dst_ns)
{
  core_task_log(r->task, "moved group %s/%s from '%s' to '%s' (%zu snapshots%s)", type, id,
                show(src_ns), show(dst_ns), r->res.snapshots,
                r->res.merged ? ", merged into the existing group" : "");
  if (r->res.msg[0])
    core_task_log(r->task, "%s/%s: %s", type, id, r->res.msg);
}

static void ns_next(struct move_run *r);

static void ns_finish_done(struct move_run *r)
{
  if (r->rc < 0)
    core_task_warn(r->task, "cannot remove the emptied source namespaces: %s",
                   r->msg[0] ? r->msg : core_strerror(r->rc));
  else if (r->o.delete_source && r->rc > 0)
    core_task_log(r->task, "kept %d source namespace(s) that still hold something", r->rc);
  else if (r->o.delete_source)
    core_task_log(r->task, "removed the source namespace '%s'", r->o.ns);
  core_task_log(r->task, "moved %zu of %zu groups, %zu failed", r->moved, r->plan.n_groups,
                r->failed);
  if (r->failed) {
    char msg[600];
    size_t n = (size_t)snprintf(msg, sizeof(msg), "%zu of %zu groups not moved:", r->failed,
                                r->plan.n_groups);
    for (size_t i = 0; i < r->plan.n_groups && n < sizeof(msg); i++)
      if (r->state[i] < 0)
        n += (size_t)snprintf(msg + n, sizeof(msg) - n, " %s%s%s/%s",
                              r->plan.groups[i].src_ns, ":", r->plan.groups[i].type,
                              r->plan.groups[i].id);
    run_end(r, CORE_EINVAL, msg);
    return;
  }
  run_end(r, 0, NULL);
}

static void ns_next(struct move_run *r)
{
  if (core_task_aborted(r->task)) {
    run_end(r, CORE_EABORTED, "aborted");
    return;
  }
  size_t n = r->plan.n_groups;
  while (r->cur < n && r->state[r->cur] != (r->second_pass ? 2 : 0))
    r->cur++;
  if (r->cur < n) {
    core_task_set_progress(r->task, n ? (double)r->moved / (double)n : 1.0);
    move_submit(r, STEP_NS_GROUP);
    return;
  }
  if (!r->second_pass) {
    int busy = 0;
    for (size_t i = 0; i < n; i++)
      busy |= r->state[i] == 2;
    r->second_pass = 1;
    r->cur = 0;
    if (busy) {
      core_task_log(r->task, "retrying the groups that were busy");
      ns_next(r);
      return;
    }
  }
  for (size_t i = 0; i < n; i++)
    if (r->state[i] == 2) {
      r->state[i] = CORE_ELOCKED;
      r->failed++;
      core_task_warn(r->task, "group %s/%s in '%s' not moved: %s", r->plan.groups[i].type,
                     r->plan.groups[i].id, show(r->plan.groups[i].src_ns), r->why[i]);
    }
  move_submit(r, STEP_NS_FINISH);
}

static void start_task(struct move_run *r)
{
  const struct move_opts *o = &r->o;
  char wid[FORMAT_NAME_NS_MAX_LEN * 2 + FORMAT_NAME_ID_MAX + 64];
  if (o->ns_move)
    snprintf(wid, sizeof(wid), "%s:%s", r->store, o->ns);
  else
    snprintf(wid, sizeof(wid), "%s:%s%s%s/%s", r->store, o->ns, o->ns[0] ? ":" : "", o->type,
             o->id);
  r->task = core_task_start(r->ctx->tasks, o->ns_move ? GC_TASK_MOVE_NS : GC_TASK_MOVE_GROUP,
                            wid, r->authid, r->store);
  if (r->task == NULL) {
    run_end(r, CORE_EINVAL, "authid too long for a UPID");
    return;
  }
  char depth[16];
  if (o->max_depth < 0)
    snprintf(depth, sizeof(depth), "unset");
  else
    snprintf(depth, sizeof(depth), "%d", o->max_depth);
  if (o->ns_move)
    core_task_log(r->task, "moving namespace '%s' to '%s' on datastore '%s' (max-depth %s, "
                  "delete-source %s, merge-groups %s)", o->ns, o->target, r->store, depth,
                  o->delete_source ? "true" : "false", o->merge ? "true" : "false");
  else
    core_task_log(r->task, "moving group %s/%s from namespace '%s' to '%s' on datastore '%s' "
                  "(merge-group %s)", o->type, o->id, show(o->ns), show(o->target), r->store,
                  o->merge ? "true" : "false");
  r->task->on_abort = on_abort;
  r->task->on_abort_arg = r;
  r->cb(r->cb_arg, 0, NULL, r->task);
  r->attempt = 0;
  move_submit(r, o->ns_move ? STEP_NS_LOCK : STEP_GROUP);
}

static void job_done(struct core_job *j, int status)
{
  struct move_run *r = (struct move_run *)j;
  if (status < 0 && r->rc == 0) {
    r->rc = status;
    snprintf(r->msg, sizeof(r->msg), "job failed: %s", core_strerror(status));
  }
  switch (r->step) {
  case STEP_CHECK:
    if (r->rc < 0) {
      run_end(r, r->rc, r->msg[0] ? r->msg : core_strerror(r->rc));
      return;
    }
    start_task(r);
    return;
  case STEP_GROUP:
    if (r->rc == CORE_ELOCKED && core_task_aborted(r->task)) {
      run_end(r, CORE_EABORTED, "aborted");
      return;
    }
    if (r->rc == CORE_ELOCKED && retry_later(r, r->res.msg))
      return;
    if (r->rc < 0) {
      run_end(r, r->rc, r->res.msg[0] ? r->res.msg : core_strerror(r->rc));
      return;
    }
    log_group_done(r, r->o.ns, r->o.type, r->o.id, r->o.target);
    run_end(r, 0, NULL);
    return;
  case STEP_NS_LOCK:
    if (r->rc == CORE_ELOCKED && core_task_aborted(r->task)) {
      run_end(r, CORE_EABORTED, "aborted");
      return;
    }
    if (r->rc == CORE_ELOCKED && retry_later(r, r->msg))
      return;
    if (r->rc < 0) {
      run_end(r, r->rc, r->msg);
      return;
    }
    core_task_log(r->task, "locked namespace '%s': %zu namespaces, %zu groups to move", r->o.ns,
                  r->plan.n, r->plan.n_groups);
    r->state = core_calloc(r->plan.n_groups ? r->plan.n_groups : 1, sizeof(int));
    r->why = core_calloc(r->plan.n_groups ? r->plan.n_groups : 1, sizeof(char *));
    r->cur = 0;
    ns_next(r);
    return;
  case STEP_NS_GROUP: {
    const struct store_move_group_ref *g = &r->plan.groups[r->cur];
    if (r->rc == 0) {
      r->state[r->cur] = 1;
      r->moved++;
      log_group_done(r, g->src_ns, g->type, g->id, g->dst_ns);
    } else if (r->rc == CORE_ELOCKED && !r->second_pass) {
      r->state[r->cur] = 2;
      core_free(r->why[r->cur]);
      r->why[r->cur] = core_strdup(r->res.msg);
      core_task_log(r->task, "group %s/%s is busy, will retry at the end: %s", g->type, g->id,
                    r->res.msg);
    } else {
      r->state[r->cur] = r->rc;
      r->failed++;
      core_task_warn(r->task, "group %s/%s in '%s' not moved: %s", g->type, g->id,
                     show(g->src_ns), r->res.msg[0] ? r->res.msg : core_strerror(r->rc));
    }
    r->cur++;
    ns_next(r);
    return;
  }
  case STEP_NS_FINISH:
    ns_finish_done(r);
    return;
  }
}

static void move_submit(struct move_run *r, enum move_step step)
{
  r->step = step;
  gc__submit(r->ctx, &r->job, job_run, job_done);
}

static void move_ready(struct gc_start *s, struct store_datastore *ds)
{
  struct move_run *r = core_new(struct move_run);
  r->ctx = s->ctx;
  r->ds = ds;
  r->store = core_strdup(s->store);
  r->authid = core_strdup(s->authid);
  r->base = core_strdup(ds->path);
  r->o = *(const struct move_opts *)s->opts;
  r->cb = s->cb;
  r->cb_arg = s->arg;
  r->ns_guard = (struct store_lock_guard)STORE_LOCK_GUARD_INIT;
  store_lock_dir(r->lockdir, sizeof(r->lockdir), s->ctx->run_dir, s->store);
  uv_timer_init(s->ctx->loop, &r->timer);
  r->timer.data = r;
  gc__run_begin(s->ctx);
  move_submit(r, STEP_CHECK);
}

/* ---- routes --------------------------------------------------------------- */

static void on_started(void *arg, int err, const char *msg, struct core_task *task)
{
  struct http_request *req = arg;
  if (err == 0) {
    struct core_json j;
    core_json_init(&j, 0);
    core_json_str(&j, task->upid);
    http_respond_json(req, &j);
  } else if (err == CORE_EMAINT) {
    http_respond_error(req, 409, "datastore '%s' is in a maintenance mode that forbids "
                       "writes", http_req_param(req, "store"));
  } else if (msg == NULL) {
    store_api_lookup_error(req, http_req_param(req, "store"), err, NULL);
  } else if (err == CORE_EPROTECTED) {
    http_respond_error(req, 403, "%s", msg);
  } else if (err == CORE_ENOTFOUND) {
    http_respond_error(req, 404, "%s", msg);
  } else if (err == CORE_EEXISTS || err == CORE_ELOCKED) {
    http_respond_error(req, 409, "%s", msg);
  } else if (err == CORE_EABORTED) {
    http_respond_error(req, 503, "%s", msg);
  } else if (err == CORE_EINVAL || err == CORE_ENAME || err == CORE_ETOOBIG) {
    http_respond_error(req, 400, "%s", msg);
  } else {
    http_respond_errno(req, err, msg);
  }
}

static void h_move_group(struct http_request *req, void *arg)
{
  struct gc_ctx *ctx = arg;
  struct move_opts o;
  memset(&o, 0, sizeof(o));
  const char *type = http_req_param(req, "backup-type");
  const char *id = http_req_param(req, "backup-id");
  if (gc__param_ns(req, "ns", o.ns, sizeof(o.ns)) < 0 ||
      gc__param_ns(req, "target-ns", o.target, sizeof(o.target)) < 0 ||
      http_req_param_bool(req, "merge-group", 1, &o.merge) < 0)
    return;
  if (type == NULL || format_name_backup_type(type) < 0) {
    http_respond_error(req, 400, "parameter backup-type: must be vm, ct or host");
    return;
  }
  if (id == NULL || format_name_backup_id(id) < 0) {
    http_respond_error(req, 400, "parameter backup-id: invalid backup id");
    return;
  }
  snprintf(o.type, sizeof(o.type), "%s", type);
  snprintf(o.id, sizeof(o.id), "%s", id);
  o.max_depth = -1;
  const char *store = http_req_param(req, "store");
  if (ctx->access) {
    o.check_target = 1;
    o.target_privs = store_access_privs(ctx->access, http_req_authid(req), store, o.target);
    store_access_audit(ctx->access, req, "move-group store=%s ns=%s group=%s/%s target-ns=%s",
                       store, show(o.ns), type, id, show(o.target));
  }
  gc__start(ctx, store, http_req_authid(req), STORE_OP_WRITE, &o, sizeof(o), move_ready,
            on_started, req);
}

static void h_move_namespace(struct http_request *req, void *arg)
{
  struct gc_ctx *ctx = arg;
  struct move_opts o;
  int64_t depth;
  memset(&o, 0, sizeof(o));
  o.ns_move = 1;
  if (http_req_param(req, "ns") == NULL) {
    http_respond_error(req, 400, "parameter ns: required (the namespace to move)");
    return;
  }
  if (http_req_param(req, "target-ns") == NULL) {
    http_respond_error(req, 400, "parameter target-ns: required");
    return;
  }
  if (gc__param_ns(req, "ns", o.ns, sizeof(o.ns)) < 0 ||
      gc__param_ns(req, "target-ns", o.target, sizeof(o.target)) < 0 ||
      http_req_param_int(req, "max-depth", 0, FORMAT_NAME_NS_MAX_DEPTH, -1, &depth) < 0 ||
      http_req_param_bool(req, "delete-source", 1, &o.delete_source) < 0 ||
      http_req_param_bool(req, "merge-groups", 1, &o.merge) < 0)
    return;
  o.max_depth = (int)depth;
  if (o.ns[0] == '\0') {
    http_respond_error(req, 400, "parameter ns: the root namespace cannot be moved");
    return;
  }
  const char *store = http_req_param(req, "store");
  if (ctx->access) {
    /* Datastore.Modify on the target's parent (the source's parent is the
     * route's own check). */
    char parent[FORMAT_NAME_NS_MAX_LEN + 1];
    snprintf(parent, sizeof(parent), "%s", o.target);
    char *slash = strrchr(parent, '/');
    if (slash)
      *slash = '\0';
    else
      parent[0] = '\0';
    uint32_t p = store_access_privs(ctx->access, http_req_authid(req), store, parent);
    if (!(p & ACCESS_PRIV_DATASTORE_MODIFY)) {
      http_respond_error(req, 403, "permission check failed: Datastore.Modify needed on "
                         "/datastore/%s%s%s", store, parent[0] ? "/" : "", parent);
      return;
    }
    store_access_audit(ctx->access, req, "move-namespace store=%s ns=%s target-ns=%s", store,
                       o.ns, o.target);
  }
  gc__start(ctx, store, http_req_authid(req), STORE_OP_WRITE, &o, sizeof(o), move_ready,
            on_started, req);
}

void gc__move_register(struct http_server *s, struct gc_ctx *ctx)
{
  const struct http_route routes[] = {
    {HTTP_METHOD_POST, "/api2/json/admin/datastore/{store}/move-group", h_move_group, ctx, 0, 0,
     ACCESS_NEEDS_OR(ACCESS_PRIV_DATASTORE_MODIFY, ACCESS_PRIV_DATASTORE_PRUNE, ACCESS_ON_NS,
                     ACCESS_IF_GROUP_OWNER)},
    {HTTP_METHOD_POST, "/api2/json/admin/datastore/{store}/move-namespace", h_move_namespace,
     ctx, 0, 0, ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_MODIFY, ACCESS_ON_NS_PARENT)},
  };
  http_server_add_routes(s, routes, sizeof(routes) / sizeof(routes[0]));
}
