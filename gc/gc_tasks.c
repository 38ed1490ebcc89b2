/* gc_tasks.c: /api2/json/nodes/localhost/tasks (PBS's task API).
 *
 * Listing and status are answered from the registry in memory (no I/O);
 * reading a log is a pool job of the task's own queue (core_task_read_log).
 */
#include "gc/gc_api.h"
#include "access/access.h"
#include "store/store_access.h"

#include "core/core_alloc.h"
#include "core/core_error.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LIST_DEFAULT_LIMIT 50
#define LOG_DEFAULT_LIMIT 50

static void task_fields(struct core_json *j, const struct core_task *t)
{
  core_json_kv_str(j, "upid", t->upid);
  core_json_kv_str(j, "node", "localhost");
  core_json_kv_uint(j, "pid", t->pid);
  core_json_kv_uint(j, "pstart", t->pstart);
  core_json_kv_int(j, "starttime", t->starttime);
  core_json_kv_str(j, "type", t->type);
  core_json_kv_str(j, "worker_type", t->type);
  core_json_kv_str(j, "id", t->worker_id);
  core_json_kv_str(j, "worker_id", t->worker_id);
  core_json_kv_str(j, "user", t->authid);
  if (t->store)
    core_json_kv_str(j, "store", t->store);
}

/* The task named by the {upid} parameter, or NULL after responding 400/404. */
static struct core_task *find_task(struct http_request *req, struct gc_ctx *ctx)
{
  const char *upid = http_req_param(req, "upid");
  struct core_upid u;
  if (upid == NULL || core_upid_parse(upid, &u) < 0) {
    http_respond_error(req, 400, "parameter upid: not a valid UPID");
    return NULL;
  }
  struct core_task *t = core_tasks_find(ctx->tasks, upid);
  if (t == NULL)
    http_respond_error(req, 404, "task '%s' not found", upid);
  return t;
}

static void h_list(struct http_request *req, void *arg)
{
  struct gc_ctx *ctx = arg;
  int64_t start, limit, since, until;
  int running, errors;
  if (http_req_param_int(req, "start", 0, INT64_MAX, 0, &start) < 0 ||
      http_req_param_int(req, "limit", 0, INT64_MAX, LIST_DEFAULT_LIMIT, &limit) < 0 ||
      http_req_param_int(req, "since", 0, INT64_MAX, 0, &since) < 0 ||
      http_req_param_int(req, "until", 0, INT64_MAX, 0, &until) < 0 ||
      http_req_param_bool(req, "running", 0, &running) < 0 ||
      http_req_param_bool(req, "errors", 0, &errors) < 0)
    return;
  const char *type = http_req_param(req, "typefilter");
  if (type == NULL)
    type = http_req_param(req, "type");
  const char *store = http_req_param(req, "store");
  const char *user = http_req_param(req, "userfilter");
  /* Without Sys.Audit a caller sees only its own tasks. */
  const char *only = http_req_privs(req) & ACCESS_PRIV_SYS_AUDIT ? NULL : http_req_authid(req);
  struct core_json j;
  core_json_init(&j, 0);
  core_json_obj_open(&j);
  core_json_key(&j, "data");
  core_json_arr_open(&j);
  int64_t total = 0; /* tasks that passed the filters */
  struct core_task *t;
  for (size_t i = 0; (t = core_tasks_at(ctx->tasks, i)) != NULL; i++) {
    if (running && !t->running)
      continue;
    if (errors && !core_task_failed(t))
      continue;
    if (type && !strstr(t->type, type))
      continue;
    if (store && (t->store == NULL || strcmp(t->store, store) != 0))
      continue;
    if (user && !strstr(t->authid, user))
      continue;
    if (only && !store_access_owns(only, t->authid))
      continue;
    if (since && t->starttime < since)
      continue;
    if (until && t->starttime > until)
      continue;
    total++;
    if (total <= start || (limit && total - start > limit))
      continue;
    core_json_obj_open(&j);
    task_fields(&j, t);
    if (!t->running) {
      core_json_kv_int(&j, "endtime", t->endtime);
      core_json_kv_str(&j, "status", t->exitstatus ? t->exitstatus : "unknown");
    }
    core_json_obj_close(&j);
  }
  core_json_arr_close(&j);
  core_json_kv_int(&j, "total", total);
  core_json_obj_close(&j);
  size_t len;
  const char *text = core_json_text(&j, &len);
  http_respond_raw(req, 200, "application/json", text, len);
  core_json_free(&j);
}

static void h_task(struct http_request *req, void *arg)
{
  struct gc_ctx *ctx = arg;
  if (find_task(req, ctx) == NULL)
    return;
  static const char v[] = "[{\"subdir\":\"log\"},{\"subdir\":\"status\"}]";
  http_respond_data(req, v, sizeof(v) - 1);
}

static void h_status(struct http_request *req, void *arg)
{
  struct gc_ctx *ctx = arg;
  struct core_task *t = find_task(req, ctx);
  if (t == NULL)
    return;
  struct core_json j;
  core_json_init(&j, 0);
  core_json_obj_open(&j);
  task_fields(&j, t);
  core_json_kv_str(&j, "status", t->running ? "running" : "stopped");
  if (!t->running) {
    core_json_kv_str(&j, "exitstatus", t->exitstatus ? t->exitstatus : "unknown");
    core_json_kv_int(&j, "endtime", t->endtime);
  }
  core_json_key(&j, "progress");
  core_json_double(&j, t->progress);
  core_json_kv_uint(&j, "warnings", atomic_load(&t->warnings));
  core_json_obj_close(&j);
  http_respond_json(req, &j);
}

struct log_req {
  struct http_request *req;
  struct core_task *t;
};

static void on_log(void *arg, int err, const char *json, size_t len, uint64_t total)
{
  struct log_req *q = arg;
  if (err < 0) {
    http_respond_errno(q->req, err, "cannot read the task log");
  } else {
    /* {"data": [...], "total": N, "active": bool}: PBS's shape. */
    struct core_json j;
    core_json_init(&j, 0);
    core_json_obj_open(&j);
    core_json_key(&j, "data");
    core_json_raw(&j, json, len);
    core_json_kv_uint(&j, "total", total);
    core_json_kv_bool(&j, "active", q->t->running);
    core_json_obj_close(&j);
    size_t n;
    const char *text = core_json_text(&j, &n);
    http_respond_raw(q->req, 200, "application/json", text, n);
    core_json_free(&j);
  }
  core_free(q);
}

static void h_log(struct http_request *req, void *arg)
{
  struct gc_ctx *ctx = arg;
  int64_t start, limit;
  struct core_task *t = find_task(req, ctx);
  if (t == NULL)
    return;
  if (http_req_param_int(req, "start", 0, INT64_MAX, 0, &start) < 0 ||
      http_req_param_int(req, "limit", 0, INT64_MAX, LOG_DEFAULT_LIMIT, &limit) < 0)
    return;
  struct log_req *q = core_new(struct log_req);
  q->req = req;
  q->t = t;
  core_task_read_log(t, start, limit, on_log, q);
}

static void h_abort(struct http_request *req, void *arg)
{
  struct gc_ctx *ctx = arg;
  struct core_task *t = find_task(req, ctx);
  if (t == NULL)
    return;
  core_task_abort(t); /* a stopped task: nothing to do, like PBS */
  http_respond_data(req, NULL, 0);
}

void gc__tasks_register(struct http_server *s, struct gc_ctx *ctx)
{
  const struct http_route routes[] = {
    {HTTP_METHOD_GET, "/api2/json/nodes/localhost/tasks", h_list, ctx, 0, 0,
     ACCESS_NEEDS_OR(ACCESS_PRIV_SYS_AUDIT, 0, ACCESS_ON_SYSTEM, ACCESS_IF_TASK_OWNER)},
    {HTTP_METHOD_GET, "/api2/json/nodes/localhost/tasks/{upid}", h_task, ctx, 0, 0,
     ACCESS_NEEDS_OR(ACCESS_PRIV_SYS_AUDIT, 0, ACCESS_ON_SYSTEM, ACCESS_IF_TASK_OWNER)},
    {HTTP_METHOD_GET, "/api2/json/nodes/localhost/tasks/{upid}/status", h_status, ctx, 0, 0,
     ACCESS_NEEDS_OR(ACCESS_PRIV_SYS_AUDIT, 0, ACCESS_ON_SYSTEM, ACCESS_IF_TASK_OWNER)},
    {HTTP_METHOD_GET, "/api2/json/nodes/localhost/tasks/{upid}/log", h_log, ctx, 0, 0,
     ACCESS_NEEDS_OR(ACCESS_PRIV_SYS_AUDIT, 0, ACCESS_ON_SYSTEM, ACCESS_IF_TASK_OWNER)},
    {HTTP_METHOD_DELETE, "/api2/json/nodes/localhost/tasks/{upid}", h_abort, ctx, 0, 0,
     ACCESS_NEEDS_OR(ACCESS_PRIV_SYS_MODIFY, 0, ACCESS_ON_SYSTEM, ACCESS_IF_TASK_OWNER)},
  };
  http_server_add_routes(s, routes, sizeof(routes) / sizeof(routes[0]));
}
