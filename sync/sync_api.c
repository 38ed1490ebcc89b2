/* sync_api.c: /api2/json/config/remote, /config/sync, /admin/sync, /pull,
 * /push (PBS's paths and shapes).
 *
 * Config reads load the small file in a pool job; writes go through
 * http_cfgedit (locked edit in the pool, generation bump). The remote's
 * password is never part of an answer. Runs answer with the task's UPID.
 *
 * Privileges: the route tables declare the first check; pull and push add
 * the second one PBS makes on the other side of the transfer
 * (Remote.Read, or Datastore.Read for a local source, on the source path;
 * Remote.DatastoreBackup on the push target; Datastore.Prune for
 * remove-vanished) in the handler, from the same ACL snapshot.
 */
#include "sync/sync.h"
#include "sync/sync_source.h"

#include "access/access.h"
#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_job.h"
#include "core/core_json.h"
#include "core/core_log.h"
#include "core/core_parse.h"
#include "core/core_utf8.h"
#include "http/http_cfgedit.h"
#include "store/store_access.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

struct core_task *sync__job_last_task(struct sync_ctx *ctx, const char *id);

/* ---- reading a file ---- */

struct cfg_read {
  struct core_job job;
  struct sync_ctx *ctx;
  struct http_request *req;
  int remote;                       /* in */
  struct core_config cfg;           /* out */
  char digest[CORE_CONFIG_DIGEST_LEN];
  char err[128];
  int rc;
  void (*render)(struct cfg_read *r);
};

static void cfg_read_run(struct core_job *j)
{
  struct cfg_read *r = (struct cfg_read *)j;
  r->rc = sync_cfg_load(r->ctx->config_dir, r->remote, &r->cfg, r->digest, r->err,
                        sizeof(r->err));
}

static void cfg_read_done(struct core_job *j, int status)
{
  struct cfg_read *r = (struct cfg_read *)j;
  int rc = status < 0 ? status : r->rc;
  if (rc < 0)
    http_respond_error(r->req, 500, "cannot read %s: %s",
                       r->remote ? SYNC_REMOTE_CFG : SYNC_JOB_CFG,
                       r->err[0] ? r->err : core_strerror(rc));
  else
    r->render(r);
  core_config_free(&r->cfg);
  core_free(r);
}

static void cfg_read(struct http_request *req, struct sync_ctx *ctx, int remote,
                     void (*render)(struct cfg_read *r))
{
  struct cfg_read *r = core_new(struct cfg_read);
  r->ctx = ctx;
  r->req = req;
  r->remote = remote;
  r->render = render;
  core_config_init(&r->cfg);
  if (core_job_submit(ctx->loop, &r->job, cfg_read_run, cfg_read_done) < 0) {
    r->rc = CORE_EINVAL;
    cfg_read_done(&r->job, CORE_EINVAL);
  }
}

static int is_bool_key(const char *k)
{
  return !strcmp(k, "remove-vanished") || !strcmp(k, "encrypted-only") ||
         !strcmp(k, "verified-only") || !strcmp(k, "resync-corrupt");
}

static int is_int_key(const char *k)
{
  return !strcmp(k, "port") || !strcmp(k, "max-depth") || !strcmp(k, "transfer-last") ||
         !strcmp(k, "worker-threads");
}

static void section_fields(struct core_json *j, const struct core_config_section *sec,
                           const char *idkey)
{
  core_json_kv_str(j, idkey, sec->name);
  int filters = 0;
  for (size_t i = 0; i < sec->nkv; i++) {
    const char *k = sec->kv[i].key, *v = sec->kv[i].value;
    if (!strcmp(k, "password"))
      continue; /* never leaves the server */
    if (!strcmp(k, "group-filter")) {
      if (filters++)
        continue;
      core_json_key(j, k);
      core_json_arr_open(j);
      for (size_t x = i; x < sec->nkv; x++)
        if (!strcmp(sec->kv[x].key, "group-filter"))
          core_json_str(j, sec->kv[x].value);
      core_json_arr_close(j);
      continue;
    }
    int b;
    uint64_t n;
    core_json_key(j, k);
    if (is_bool_key(k) && core_parse_bool(v, &b) == 0)
      core_json_bool(j, b);
    else if (is_int_key(k) && core_parse_u64(v, &n) == 0)
      core_json_uint(j, n);
    else
      core_json_str(j, v);
  }
}

static void section_json(struct core_json *j, const struct core_config_section *sec,
                         const char *idkey)
{
  core_json_obj_open(j);
  section_fields(j, sec, idkey);
  core_json_obj_close(j);
}

static void respond_list(struct cfg_read *r, const char *type, const char *idkey,
                         const char *dir)
{
  struct core_json j;
  core_json_init(&j, 0);
  core_json_arr_open(&j);
  for (size_t i = 0; i < r->cfg.nsections; i++) {
    const struct core_config_section *sec = r->cfg.sections[i];
    if (strcmp(sec->type, type) != 0)
      continue;
    if (dir && strcmp(dir, "all") != 0) {
      const char *d = core_config_get(sec, "sync-direction");
      if (strcmp(d ? d : "pull", dir) != 0)
        continue;
    }
    section_json(&j, sec, idkey);
  }
  core_json_arr_close(&j);
  size_t len;
  const char *text = core_json_text(&j, &len);
  http_respond_data_digest(r->req, text, len, r->digest);
  core_json_free(&j);
}

static void respond_one(struct cfg_read *r, const char *type, const char *param,
                        const char *idkey)
{
  const char *name = http_req_param(r->req, param);
  const struct core_config_section *sec = core_config_find(&r->cfg, type, name);
  if (sec == NULL) {
    http_respond_error(r->req, 404, "no such %s '%s'", !strcmp(type, "sync") ? "sync job"
                                                                              : "remote",
                       name);
    return;
  }
  struct core_json j;
  core_json_init(&j, 0);
  section_json(&j, sec, idkey);
  size_t len;
  const char *text = core_json_text(&j, &len);
  char *obj = core_asprintf("%.*s,\"digest\":\"%s\"}", (int)len - 1, text, r->digest);
  http_respond_data_digest(r->req, obj, strlen(obj), r->digest);
  core_free(obj);
  core_json_free(&j);
}

/* ---- remotes ---- */

static void render_remotes(struct cfg_read *r)
{
  respond_list(r, "remote", "name", NULL);
}

static void render_remote(struct cfg_read *r)
{
  respond_one(r, "remote", "name", "name");
}

static void h_remote_list(struct http_request *req, void *ctx)
{
  cfg_read(req, ctx, 1, render_remotes);
}

static int check_id(const char *name, char *err, size_t errlen)
{
  char q[80];
  if (!sync_id_valid(name)) {
    snprintf(err, errlen, "invalid name '%s'", core_utf8_quote(name, q, sizeof(q)));
    return CORE_ENAME;
  }
  return 0;
}

static void h_remote_get(struct http_request *req, void *ctx)
{
  if (!sync_id_valid(http_req_param(req, "name"))) {
    http_respond_error(req, 400, "invalid remote name");
    return;
  }
  cfg_read(req, ctx, 1, render_remote);
}

static int edit_apply(struct http_cfgedit *e, int remote)
{
  const struct sync_ctx *ctx = e->ctx;
  struct sync_edit se = {
    .config_dir = ctx->config_dir,
    .shmem = ctx->shmem,
    .remote = remote,
    .op = e->op == HTTP_CFGEDIT_CREATE   ? SYNC_EDIT_CREATE
          : e->op == HTTP_CFGEDIT_UPDATE ? SYNC_EDIT_UPDATE
                                         : SYNC_EDIT_REMOVE,
    .name = e->name,
    .set = e->props.set,
    .nset = e->props.nset,
    .del = e->props.del,
    .ndel = e->props.ndel,
    .digest = e->props.digest,
  };
  int rc = sync_edit_apply(&se);
  snprintf(e->err, sizeof(e->err), "%s", se.err);
  return rc;
}

static int remote_apply(struct http_cfgedit *e)
{
  return edit_apply(e, 1);
}

static int job_apply(struct http_cfgedit *e)
{
  return edit_apply(e, 0);
}

static void audit(struct http_request *req, const struct http_cfgedit *e, const char *what)
{
  const struct sync_ctx *ctx = e->ctx;
  if (ctx->access)
    store_access_audit(ctx->access, req, "%s %s %s", http_cfgedit_verb(e->op), what, e->name);
}

static void remote_audit(struct http_request *req, const struct http_cfgedit *e)
{
  audit(req, e, "remote");
}

static void job_audit(struct http_request *req, const struct http_cfgedit *e)
{
  audit(req, e, "sync job");
}

static const char *const remote_control[] = {"name", NULL};
static const char *const job_control[] = {"id", NULL};

static const struct http_cfgedit_ops remote_edit = {
  .name_param = "name",
  .control = remote_control,
  .check_name = check_id,
  .check_prop = sync_remote_check_prop,
  .apply = remote_apply,
  .done = remote_audit,
};

static const struct http_cfgedit_ops job_edit = {
  .name_param = "id",
  .control = job_control,
  .check_name = check_id,
  .check_prop = sync_job_check_prop,
  .apply = job_apply,
  .done = job_audit,
};

static void h_remote_create(struct http_request *req, void *ctx)
{
  (void)ctx;
  http_cfgedit_submit(req, &remote_edit, HTTP_CFGEDIT_CREATE);
}

static void h_remote_update(struct http_request *req, void *ctx)
{
  (void)ctx;
  http_cfgedit_submit(req, &remote_edit, HTTP_CFGEDIT_UPDATE);
}

static void h_remote_remove(struct http_request *req, void *ctx)
{
  (void)ctx;
  http_cfgedit_submit(req, &remote_edit, HTTP_CFGEDIT_REMOVE);
}

/* ---- scans: what the remote offers ---- */

/* A scan waits on the network: it runs on a thread of its own (as sync
 * engines do), not on the request pool, and comes back through a core_wake. */
struct scan {
  struct core_job job;          /* only for the shared run signature */
  struct core_wake done_wake;
  pthread_t thread;
  struct sync_ctx *ctx;
  struct http_request *req;
  char *name, *store;           /* in */
  int groups;                   /* in: groups (ns param) or namespaces */
  char *ns;                     /* in */
  char *json;                   /* out */
  int rc;
  char err[512];
};

static void scan_run(struct core_job *job)
{
  struct scan *s = (struct scan *)job;
  struct core_config remotes;
  char lerr[128];
  s->rc = sync_cfg_load(s->ctx->config_dir, 1, &remotes, NULL, lerr, sizeof(lerr));
  if (s->rc < 0) {
    snprintf(s->err, sizeof(s->err), "cannot read %s: %s", SYNC_REMOTE_CFG, lerr);
    core_config_free(&remotes);
    return;
  }
  const struct core_config_section *sec = core_config_find(&remotes, "remote", s->name);
  struct sync_params *p = core_new(struct sync_params);
  struct sync_engine e;
  memset(&e, 0, sizeof(e));
  struct sync_source *src = NULL;
  if (sec == NULL) {
    snprintf(s->err, sizeof(s->err), "no such remote '%s'", s->name);
    s->rc = CORE_ENOTFOUND;
    goto out;
  }
  s->rc = sync_params_set_remote(p, sec, s->err, sizeof(s->err));
  if (s->rc < 0)
    goto out;
  p->remote_store = core_strdup(s->store);
  p->worker_threads = 1;
  e.p = p;
  s->rc = sync_source_open(&e, &src, s->err, sizeof(s->err));
  if (s->rc < 0) {
    s->rc = CORE_EPROTO;
    goto out;
  }
  struct core_json j;
  core_json_init(&j, 0);
  core_json_arr_open(&j);
  if (s->groups) {
    struct store_group_list gl;
    s->rc = sync_source_list_groups(src, s->ns, &gl, s->err, sizeof(s->err));
    for (size_t i = 0; s->rc == 0 && i < gl.n; i++) {
      core_json_obj_open(&j);
      core_json_kv_str(&j, "backup-type", gl.items[i].type);
      core_json_kv_str(&j, "backup-id", gl.items[i].id);
      core_json_obj_close(&j);
    }
    if (s->rc == 0)
      store_group_list_free(&gl);
  } else {
    struct store_ns_list nl;
    s->rc = sync_source_list_ns(src, "", -1, &nl, s->err, sizeof(s->err));
    for (size_t i = 0; s->rc == 0 && i < nl.n; i++) {
      core_json_obj_open(&j);
      core_json_kv_str(&j, "ns", nl.items[i]);
      core_json_obj_close(&j);
    }
    if (s->rc == 0)
      store_ns_list_free(&nl);
  }
  core_json_arr_close(&j);
  size_t len;
  const char *text = core_json_text(&j, &len);
  if (s->rc == 0)
    s->json = core_strndup(text, len);
  else
    s->rc = CORE_EPROTO;
  core_json_free(&j);
out:
  sync_source_close(src);
  sync_params_free(p);
  core_config_free(&remotes);
}

static void scan_closed(uv_handle_t *h)
{
  struct scan *s = ((struct core_wake *)h)->data;
  core_free(s->name);
  core_free(s->store);
  core_free(s->ns);
  core_free(s->json);
  core_free(s);
}

static void scan_respond(struct scan *s, int status)
{
  int rc = status < 0 ? status : s->rc;
  if (rc == 0)
    http_respond_data(s->req, s->json, strlen(s->json));
  else if (rc == CORE_ENOTFOUND)
    http_respond_error(s->req, 404, "%s", s->err);
  else
    http_respond_error(s->req, 502, "remote '%s': %s", s->name, s->err);
}

static void scan_done(struct core_wake *w)
{
  struct scan *s = w->data;
  pthread_join(s->thread, NULL);
  s->ctx->pending--;
  scan_respond(s, 0);
  core_wake_close(&s->done_wake, scan_closed);
}

static void *scan_main(void *arg)
{
  struct scan *s = arg;
  scan_run(&s->job);
  core_wake_send(&s->done_wake);
  return NULL;
}

static void scan_start(struct http_request *req, struct sync_ctx *ctx, int groups)
{
  const char *name = http_req_param(req, "name"), *store = http_req_param(req, "store");
  const char *ns = http_req_param(req, "ns");
  if (!sync_id_valid(name) || store == NULL || format_name_datastore(store) < 0 ||
      (ns && ns[0] && format_name_ns(ns) < 0)) {
    http_respond_error(req, 400, "invalid remote, datastore or namespace name");
    return;
  }
  struct scan *s = core_new(struct scan);
  s->ctx = ctx;
  s->req = req;
  s->name = core_strdup(name);
  s->store = core_strdup(store);
  s->ns = core_strdup(ns ? ns : "");
  s->groups = groups;
  s->done_wake.data = s;
  int rc = core_wake_init(ctx->loop, &s->done_wake, scan_done);
  if (rc < 0) {
    http_respond_errno(req, rc, "cannot start the scan");
    scan_closed((uv_handle_t *)&s->done_wake); /* frees `s`; no handle was made */
    return;
  }
  ctx->pending++;
  if (ctx->closing || pthread_create(&s->thread, NULL, scan_main, s) != 0) {
    ctx->pending--;
    s->rc = CORE_EINVAL;
    snprintf(s->err, sizeof(s->err), "cannot start the scan");
    scan_respond(s, CORE_EINVAL);
    core_wake_close(&s->done_wake, scan_closed);
  }
}

static void h_scan_ns(struct http_request *req, void *ctx)
{
  scan_start(req, ctx, 0);
}

static void h_scan_groups(struct http_request *req, void *ctx)
{
  scan_start(req, ctx, 1);
}

/* ---- sync jobs ---- */

static void render_jobs(struct cfg_read *r)
{
  const char *dir = http_req_param(r->req, "sync-direction");
  respond_list(r, "sync", "id", dir ? dir : "pull");
}

static void render_job(struct cfg_read *r)
{
  respond_one(r, "sync", "id", "id");
}

static void h_job_list(struct http_request *req, void *ctx)
{
  const char *dir = http_req_param(req, "sync-direction");
  if (dir && strcmp(dir, "pull") && strcmp(dir, "push") && strcmp(dir, "all")) {
    http_respond_error(req, 400, "sync-direction must be pull, push or all");
    return;
  }
  cfg_read(req, ctx, 0, render_jobs);
}

static void h_job_get(struct http_request *req, void *ctx)
{
  if (!sync_id_valid(http_req_param(req, "id"))) {
    http_respond_error(req, 400, "invalid sync job id");
    return;
  }
  cfg_read(req, ctx, 0, render_job);
}

static void h_job_create(struct http_request *req, void *ctx)
{
  (void)ctx;
  http_cfgedit_submit(req, &job_edit, HTTP_CFGEDIT_CREATE);
}

static void h_job_update(struct http_request *req, void *ctx)
{
  (void)ctx;
  http_cfgedit_submit(req, &job_edit, HTTP_CFGEDIT_UPDATE);
}

static void h_job_remove(struct http_request *req, void *ctx)
{
  (void)ctx;
  http_cfgedit_submit(req, &job_edit, HTTP_CFGEDIT_REMOVE);
}

/* admin/sync: the jobs with their state. */
static void render_admin(struct cfg_read *r)
{
  struct sync_ctx *ctx = r->ctx;
  const char *dir = http_req_param(r->req, "sync-direction");
  struct core_json j;
  core_json_init(&j, 0);
  core_json_arr_open(&j);
  for (size_t i = 0; i < r->cfg.nsections; i++) {
    const struct core_config_section *sec = r->cfg.sections[i];
    if (strcmp(sec->type, "sync") != 0)
      continue;
    const char *d = core_config_get(sec, "sync-direction");
    if (dir && strcmp(dir, "all") && strcmp(d ? d : "pull", dir))
      continue;
    core_json_obj_open(&j);
    section_fields(&j, sec, "id");
    struct core_task *t = sync__job_last_task(ctx, sec->name);
    int64_t next = -1;
    struct core_calendar cal;
    const char *sched = core_config_get(sec, "schedule");
    if (sched && core_calendar_parse(sched, &cal, NULL, 0) == 0 &&
        core_calendar_next(&cal, (int64_t)time(NULL), &next) < 0)
      next = -1;
    if (next >= 0)
      core_json_kv_int(&j, "next-run", next);
    if (t) {
      core_json_kv_str(&j, "last-run-upid", t->upid);
      if (!t->running) {
        core_json_kv_str(&j, "last-run-state", t->exitstatus ? t->exitstatus : "unknown");
        core_json_kv_int(&j, "last-run-endtime", t->endtime);
      }
    }
    core_json_obj_close(&j);
  }
  core_json_arr_close(&j);
  http_respond_json(r->req, &j);
}

static void h_admin_list(struct http_request *req, void *ctx)
{
  cfg_read(req, ctx, 0, render_admin);
}

static void on_started(void *arg, int err, const char *msg, struct core_task *task)
{
  struct http_request *req = arg;
  if (err < 0) {
    http_respond_error(req, http_status_for(err), "%s", msg ? msg : core_strerror(err));
    return;
  }
  struct core_json j;
  core_json_init(&j, 0);
  core_json_str(&j, task->upid);
  http_respond_json(req, &j);
}

static void h_admin_run(struct http_request *req, void *ctx)
{
  const char *id = http_req_param(req, "id");
  if (!sync_id_valid(id)) {
    http_respond_error(req, 400, "invalid sync job id");
    return;
  }
  sync_start_job(ctx, id, http_req_authid(req), on_started, req);
}

/* ---- one-off pull and push ---- */

static int denied(struct http_request *req, struct sync_ctx *ctx, uint32_t need,
                  const char *path)
{
  if (ctx->access == NULL)
    return 0;
  struct access_info *info = store_access_info_ref(ctx->access);
  uint32_t have = access_privs(info, http_req_authid(req), path, NULL);
  access_info_unref(info);
  if (have & need)
    return 0;
  char names[128];
  access_priv_names(need, " or ", names, sizeof(names));
  http_respond_error(req, 403, "permission check failed: %s on %s", names, path);
  return 1;
}

/* Reads a one-off's parameters; 0, or < 0 after an answer. */
static int oneoff_params(struct http_request *req, struct sync_params *p)
{
  static const char *const params[] = {"store", "remote-store", "ns", "remote-ns", "owner",
                                       "remove-vanished", "max-depth", "rate-in", "burst-in",
                                       "rate-out", "burst-out", "transfer-last",
                                       "encrypted-only", "verified-only", "resync-corrupt",
                                       "worker-threads", "remote", NULL};
  char err[256];
  /* Build a transient job section and reuse the job checks. */
  struct core_config cfg;
  core_config_init(&cfg);
  struct core_config_section *sec;
  core_config_add(&cfg, "sync", "oneoff", &sec);
  for (size_t i = 0; params[i]; i++) {
    const char *v = http_req_param(req, params[i]);
    if (v == NULL)
      continue;
    if (sync_job_check_prop(params[i], v, err, sizeof(err)) < 0 ||
        core_config_set(sec, params[i], v) < 0) {
      http_respond_error(req, 400, "%s", err);
      core_config_free(&cfg);
      return CORE_EINVAL;
    }
  }
  const char *name, *value;
  for (int i = 0; http_req_param_at(req, i, &name, &value); i++) {
    if (strcmp(name, "group-filter") != 0)
      continue;
    if (sync_job_check_prop(name, value, err, sizeof(err)) < 0) {
      http_respond_error(req, 400, "%s", err);
      core_config_free(&cfg);
      return CORE_EINVAL;
    }
    core_config_append(sec, name, value);
  }
  if (core_config_get(sec, "remote-store") == NULL) {
    http_respond_error(req, 400, "parameter 'remote-store' is required");
    core_config_free(&cfg);
    return CORE_EINVAL;
  }
  /* The remote's connection is read from remote.cfg later (pool). */
  char *remote = core_config_get(sec, "remote") ? core_strdup(core_config_get(sec, "remote"))
                                                 : NULL;
  core_config_delete(sec, "remote");
  int rc = sync_params_from_job(p, sec, NULL, err, sizeof(err));
  if (rc < 0) {
    http_respond_error(req, 400, "%s", err);
    core_free(remote);
    core_config_free(&cfg);
    return rc;
  }
  core_free(p->job_id);
  p->job_id = NULL;
  p->remote = remote;
  core_config_free(&cfg);
  return 0;
}

struct oneoff {
  struct core_job job;
  struct sync_ctx *ctx;
  struct http_request *req;
  struct sync_params *p;
  int rc;
  char err[256];
};

static void oneoff_run(struct core_job *j)
{
  struct oneoff *o = (struct oneoff *)j;
  struct core_config remotes;
  char lerr[128];
  o->rc = sync_cfg_load(o->ctx->config_dir, 1, &remotes, NULL, lerr, sizeof(lerr));
  if (o->rc < 0) {
    snprintf(o->err, sizeof(o->err), "cannot read %s: %s", SYNC_REMOTE_CFG, lerr);
  } else {
    const struct core_config_section *sec = core_config_find(&remotes, "remote", o->p->remote);
    if (sec == NULL) {
      snprintf(o->err, sizeof(o->err), "no such remote '%s'", o->p->remote);
      o->rc = CORE_ENOTFOUND;
    } else {
      o->rc = sync_params_set_remote(o->p, sec, o->err, sizeof(o->err));
    }
  }
  core_config_free(&remotes);
}

static void oneoff_done(struct core_job *j, int status)
{
  struct oneoff *o = (struct oneoff *)j;
  int rc = status < 0 ? status : o->rc;
  if (rc < 0) {
    http_respond_error(o->req, rc == CORE_ENOTFOUND ? 404 : 400, "%s", o->err);
    sync_params_free(o->p);
  } else {
    sync_start(o->ctx, o->p, http_req_authid(o->req), on_started, o->req);
  }
  core_free(o);
}

static void oneoff(struct http_request *req, struct sync_ctx *ctx, enum sync_dir dir)
{
  struct sync_params *p = core_new(struct sync_params);
  if (oneoff_params(req, p) < 0) {
    sync_params_free(p);
    return;
  }
  p->dir = dir;
  char path[ACCESS_PATH_MAX];
  if (dir == SYNC_PUSH && p->remote == NULL) {
    http_respond_error(req, 400, "parameter 'remote' is required for a push");
    sync_params_free(p);
    return;
  }
  if (p->remote) {
    if (p->remote_ns[0])
      snprintf(path, sizeof(path), "/remote/%s/%s/%s", p->remote, p->remote_store, p->remote_ns);
    else
      snprintf(path, sizeof(path), "/remote/%s/%s", p->remote, p->remote_store);
    uint32_t need = dir == SYNC_PUSH ? ACCESS_PRIV_REMOTE_DATASTORE_BACKUP
                                     : ACCESS_PRIV_REMOTE_READ;
    if (dir == SYNC_PULL)
      snprintf(path, sizeof(path), "/remote/%s/%s", p->remote, p->remote_store);
    if (denied(req, ctx, need, path)) {
      sync_params_free(p);
      return;
    }
  } else {
    access_datastore_path(path, sizeof(path), p->remote_store, p->remote_ns);
    if (denied(req, ctx, ACCESS_PRIV_DATASTORE_READ | ACCESS_PRIV_DATASTORE_BACKUP, path)) {
      sync_params_free(p);
      return;
    }
  }
  /* A one-off pull's groups belong to the caller unless it names another
   * owner, which needs Datastore.Modify there (as in PBS). */
  const char *authid = http_req_authid(req);
  if (http_req_param(req, "owner") == NULL) {
    core_free(p->owner);
    p->owner = core_strdup(authid);
  } else if (dir == SYNC_PULL && strcmp(p->owner, authid) != 0) {
    access_datastore_path(path, sizeof(path), p->store, p->ns);
    if (denied(req, ctx, ACCESS_PRIV_DATASTORE_MODIFY, path)) {
      sync_params_free(p);
      return;
    }
  }
  if (p->remove_vanished) {
    access_datastore_path(path, sizeof(path), p->store, p->ns);
    if (denied(req, ctx, ACCESS_PRIV_DATASTORE_PRUNE, path)) {
      sync_params_free(p);
      return;
    }
  }
  if (p->remote == NULL) {
    sync_start(ctx, p, http_req_authid(req), on_started, req);
    return;
  }
  struct oneoff *o = core_new(struct oneoff);
  o->ctx = ctx;
  o->req = req;
  o->p = p;
  if (core_job_submit(ctx->loop, &o->job, oneoff_run, oneoff_done) < 0) {
    o->rc = CORE_EINVAL;
    snprintf(o->err, sizeof(o->err), "cannot queue the request");
    oneoff_done(&o->job, CORE_EINVAL);
  }
}

static void h_pull(struct http_request *req, void *ctx)
{
  oneoff(req, ctx, SYNC_PULL);
}

static void h_push(struct http_request *req, void *ctx)
{
  oneoff(req, ctx, SYNC_PUSH);
}

void sync_api_register(struct http_server *s, struct sync_ctx *ctx)
{
  const struct http_route routes[] = {
    {HTTP_METHOD_GET, "/api2/json/config/remote", h_remote_list, ctx, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_REMOTE_AUDIT, ACCESS_ON_REMOTES)},
    {HTTP_METHOD_POST, "/api2/json/config/remote", h_remote_create, ctx, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_REMOTE_MODIFY, ACCESS_ON_REMOTES)},
    {HTTP_METHOD_GET, "/api2/json/config/remote/{name}", h_remote_get, ctx, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_REMOTE_AUDIT, ACCESS_ON_REMOTE)},
    {HTTP_METHOD_PUT, "/api2/json/config/remote/{name}", h_remote_update, ctx, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_REMOTE_MODIFY, ACCESS_ON_REMOTE)},
    {HTTP_METHOD_DELETE, "/api2/json/config/remote/{name}", h_remote_remove, ctx, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_REMOTE_MODIFY, ACCESS_ON_REMOTE)},
    {HTTP_METHOD_GET, "/api2/json/config/remote/{name}/scan/{store}/namespaces", h_scan_ns, ctx,
     0, 0, ACCESS_NEEDS(ACCESS_PRIV_REMOTE_AUDIT, ACCESS_ON_REMOTE)},
    {HTTP_METHOD_GET, "/api2/json/config/remote/{name}/scan/{store}/groups", h_scan_groups,
     ctx, 0, 0, ACCESS_NEEDS(ACCESS_PRIV_REMOTE_AUDIT, ACCESS_ON_REMOTE)},
    {HTTP_METHOD_GET, "/api2/json/config/sync", h_job_list, ctx, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_AUDIT, ACCESS_ON_DATASTORES)},
    {HTTP_METHOD_POST, "/api2/json/config/sync", h_job_create, ctx, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_MODIFY, ACCESS_ON_DATASTORES)},
    {HTTP_METHOD_GET, "/api2/json/config/sync/{id}", h_job_get, ctx, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_AUDIT, ACCESS_ON_DATASTORES)},
    {HTTP_METHOD_PUT, "/api2/json/config/sync/{id}", h_job_update, ctx, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_MODIFY, ACCESS_ON_DATASTORES)},
    {HTTP_METHOD_DELETE, "/api2/json/config/sync/{id}", h_job_remove, ctx, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_MODIFY, ACCESS_ON_DATASTORES)},
    {HTTP_METHOD_GET, "/api2/json/admin/sync", h_admin_list, ctx, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_AUDIT, ACCESS_ON_DATASTORES)},
    {HTTP_METHOD_POST, "/api2/json/admin/sync/{id}/run", h_admin_run, ctx, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_MODIFY, ACCESS_ON_DATASTORES)},
    {HTTP_METHOD_POST, "/api2/json/pull", h_pull, ctx, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_BACKUP, ACCESS_ON_NS)},
    {HTTP_METHOD_POST, "/api2/json/push", h_push, ctx, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_READ | ACCESS_PRIV_DATASTORE_BACKUP, ACCESS_ON_NS)},
  };
  http_server_add_routes(s, routes, sizeof(routes) / sizeof(routes[0]));
}
