/* gc_routes.c: REST handlers for gc, prune-datastore and verify (prune of
 * one group is in gc_prune.c beside its job).
 *
 * Starting a task answers at once with its UPID ({"data": "UPID:..."}), as
 * PBS does; the work continues in the task.
 */
#include "gc/gc_api.h"
#include "access/access.h"
#include "store/store_access.h"
#include "gc/gc_status.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_job.h"
#include "store/store_api.h"
#include "format/format_name.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Answers a task start with its UPID. */
static void on_started(void *arg, int err, const char *msg, struct core_task *task)
{
  struct http_request *req = arg;
  if (err == 0) {
    struct core_json j;
    core_json_init(&j, 0);
    core_json_str(&j, task->upid);
    http_respond_json(req, &j);
  } else if (err == CORE_ELOCKED) {
    http_respond_error(req, 409, "%s", msg ? msg : "already running");
  } else if (err == CORE_ENOTFOUND || err == CORE_EMAINT) {
    store_api_lookup_error(req, http_req_param(req, "store"), err, NULL);
  } else if (msg) {
    http_respond_error(req, err == CORE_EABORTED ? 503 : 400, "%s", msg);
  } else {
    http_respond_errno(req, err, "cannot start the task");
  }
}

/* ---- gc ---------------------------------------------------------------- */

static void h_gc_start(struct http_request *req, void *arg)
{
  struct gc_ctx *ctx = arg;
  gc_start_gc(ctx, http_req_param(req, "store"), http_req_authid(req), on_started, req);
}

struct gc_get {
  struct core_job job;
  struct gc_ctx *ctx;
  struct http_request *req;
  struct store_datastore *ds;  /* reference + READ operation */
  char *base;                  /* in */
  struct gc_status st;         /* out */
  int rc;                      /* out */
};

static void gc_get_run(struct core_job *j)
{
  struct gc_get *g = (struct gc_get *)j;
  g->rc = gc_status_read(g->base, &g->st);
}

static void gc_get_done(struct core_job *j, int status)
{
  struct gc_get *g = (struct gc_get *)j;
  int rc = status < 0 ? status : g->rc;
  struct gc_store_state *state = gc__store_state(g->ctx, g->ds->name);
  if (state->unsaved) {
    /* The last run could not write .gc-status (full disk): the file is older. */
    g->st = *state->unsaved;
    rc = 0;
  }
  if (rc < 0 && rc != CORE_ENOTFOUND) {
    http_respond_errno(g->req, rc, "cannot read .gc-status");
  } else {
    struct core_json out;
    core_json_init(&out, 0);
    core_json_obj_open(&out);
    core_json_kv_str(&out, "store", g->ds->name);
    gc_status_json_fields(&g->st, &out);
    if (state->gc)
      core_json_kv_str(&out, "running-upid", state->gc->upid);
    /* The last run's outcome, when the task registry still knows it. */
    struct core_task *last = g->st.upid[0] ? core_tasks_find(g->ctx->tasks, g->st.upid) : NULL;
    if (last && !last->running) {
      core_json_kv_str(&out, "last-run-state", last->exitstatus ? last->exitstatus : "unknown");
      core_json_kv_int(&out, "last-run-endtime", last->endtime);
      core_json_kv_int(&out, "duration", last->endtime - last->starttime);
    }
    if (state->gc_expr) {
      core_json_kv_str(&out, "schedule", state->gc_expr);
      if (state->gc_cal_ok) {
        int64_t next = gc__sched_next(&state->gc_cal, (int64_t)time(NULL));
        if (next >= 0)
          core_json_kv_int(&out, "next-run", next);
      }
    }
    core_json_obj_close(&out);
    http_respond_json(g->req, &out);
  }
  store_release(g->ds, STORE_OP_READ);
  core_free(g->base);
  gc__run_end(g->ctx);
  core_free(g);
}

static void gc_get_lookup(void *arg, int err, struct store_datastore *ds)
{
  struct gc_get *g = arg;
  if (err < 0) {
    store_api_lookup_error(g->req, http_req_param(g->req, "store"), err, ds);
    gc__run_end(g->ctx);
    core_free(g);
    return;
  }
  g->ds = ds;
  g->base = core_strdup(ds->path);
  int rc = core_job_submit(g->ctx->loop, &g->job, gc_get_run, gc_get_done);
  if (rc < 0)
    gc_get_done(&g->job, rc);
}

static void h_gc_get(struct http_request *req, void *arg)
{
  struct gc_ctx *ctx = arg;
  struct gc_get *g = core_new(struct gc_get);
  g->ctx = ctx;
  g->req = req;
  gc__run_begin(ctx);
  store_lookup(ctx->reg, http_req_param(req, "store"), STORE_OP_READ, gc_get_lookup, g);
}

/* ---- prune-datastore ---------------------------------------------------- */

int gc__param_ns(struct http_request *req, const char *name, char *out, size_t len)
{
  const char *ns = http_req_param(req, name);
  if (ns == NULL)
    ns = "";
  if (format_name_ns(ns) < 0 || strlen(ns) >= len) {
    http_respond_error(req, 400, "parameter %s: invalid namespace", name);
    return CORE_EINVAL;
  }
  snprintf(out, len, "%s", ns);
  return 0;
}

static void h_prune_datastore(struct http_request *req, void *arg)
{
  struct gc_ctx *ctx = arg;
  struct gc_prune_opts o;
  int64_t depth;
  memset(&o, 0, sizeof(o));
  if (gc__param_ns(req, "ns", o.ns, sizeof(o.ns)) < 0 ||
      http_req_param_int(req, "max-depth", 0, FORMAT_NAME_NS_MAX_DEPTH, -1, &depth) < 0 ||
      http_req_param_bool(req, "dry-run", 0, &o.dry_run) < 0 || gc__parse_keep(req, &o.keep) < 0)
    return;
  o.max_depth = (int)depth;
  if (!o.dry_run && ctx->access)
    store_access_audit(ctx->access, req, "prune-datastore store=%s ns=%s",
                       http_req_param(req, "store"), o.ns[0] ? o.ns : "/");
  gc_start_prune(ctx, http_req_param(req, "store"), http_req_authid(req), &o, on_started, req);
}

/* ---- verify ---------------------------------------------------------------- */

static void h_verify(struct http_request *req, void *arg)
{
  struct gc_ctx *ctx = arg;
  struct gc_verify_opts o;
  int64_t depth, days;
  memset(&o, 0, sizeof(o));
  o.time = -1;
  if (gc__param_ns(req, "ns", o.ns, sizeof(o.ns)) < 0 ||
      http_req_param_int(req, "max-depth", 0, FORMAT_NAME_NS_MAX_DEPTH, -1, &depth) < 0 ||
      http_req_param_int(req, "outdated-after", 0, 365000, 0, &days) < 0 ||
      http_req_param_int(req, "backup-time", 0, FORMAT_NAME_TIME_MAX, -1, &o.time) < 0 ||
      http_req_param_bool(req, "ignore-verified", 1, &o.ignore_verified) < 0)
    return;
  o.max_depth = (int)depth;
  o.outdated_after_days = days;
  const char *type = http_req_param(req, "backup-type");
  const char *id = http_req_param(req, "backup-id");
  if (type && format_name_backup_type(type) < 0) {
    http_respond_error(req, 400, "parameter backup-type: must be vm, ct or host");
    return;
  }
  if (id && (type == NULL || format_name_backup_id(id) < 0)) {
    http_respond_error(req, 400, "parameter backup-id: invalid, or given without backup-type");
    return;
  }
  if (o.time >= 0 && id == NULL) {
    http_respond_error(req, 400, "parameter backup-time needs backup-type and backup-id");
    return;
  }
  if (type)
    snprintf(o.type, sizeof(o.type), "%s", type);
  if (id)
    snprintf(o.id, sizeof(o.id), "%s", id);
  gc_start_verify(ctx, http_req_param(req, "store"), http_req_authid(req), &o, on_started, req);
}

void gc__routes_register(struct http_server *s, struct gc_ctx *ctx)
{
  const struct http_route routes[] = {
    {HTTP_METHOD_GET, "/api2/json/admin/datastore/{store}/gc", h_gc_get, ctx, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_AUDIT, ACCESS_ON_STORE)},
    {HTTP_METHOD_POST, "/api2/json/admin/datastore/{store}/gc", h_gc_start, ctx, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_MODIFY, ACCESS_ON_STORE)},
    {HTTP_METHOD_POST, "/api2/json/admin/datastore/{store}/prune-datastore", h_prune_datastore,
     ctx, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_MODIFY | ACCESS_PRIV_DATASTORE_PRUNE, ACCESS_ON_NS)},
    {HTTP_METHOD_POST, "/api2/json/admin/datastore/{store}/verify", h_verify, ctx, 0, 0,
     ACCESS_NEEDS_OR(ACCESS_PRIV_DATASTORE_VERIFY, ACCESS_PRIV_DATASTORE_BACKUP, ACCESS_ON_NS, ACCESS_IF_GROUP_OWNER)},
  };
  http_server_add_routes(s, routes, sizeof(routes) / sizeof(routes[0]));
  gc__prune_register(s, ctx);
}
