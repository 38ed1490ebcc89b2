/* s3_api.c: /api2/json/config/s3 and /api2/json/admin/s3/{id}/check. */
#include "s3/s3_api.h"
#include "access/access.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_job.h"
#include "core/core_json.h"
#include "core/core_log.h"
#include "http/http_cfgedit.h"
#include "s3/s3_config.h"
#include "s3/s3_sync.h"
#include "s3/s3_url.h"

#include <stdio.h>
#include <string.h>

#define CHECK_TIMEOUT_MS 5000
#define INVALID_ID "invalid S3 endpoint id (3..32 of [A-Za-z0-9_.-])"

/* ---- rendering --------------------------------------------------------- */

static void render_quirks(struct core_json *j, const char *v)
{
  char *copy = core_strdup(v);
  core_json_arr_open(j);
  for (char *save = NULL, *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save))
    core_json_str(j, t);
  core_json_arr_close(j);
  core_free(copy);
}

/* One endpoint as PBS's S3ClientConfig; a secret is never rendered, even if
 * a hand edit put one into s3.cfg. */
static void render_section(struct core_json *j, const struct core_config_section *sec)
{
  core_json_obj_open(j);
  core_json_kv_str(j, "id", sec->name);
  for (size_t i = 0; i < sec->nkv; i++) {
    const char *k = sec->kv[i].key, *v = sec->kv[i].value;
    if (!strcmp(k, "secret-key"))
      continue;
    core_json_key(j, k);
    if (!strcmp(k, "port") && v[0] >= '0' && v[0] <= '9' && strlen(v) <= 5)
      core_json_raw(j, v, strlen(v));
    else if ((!strcmp(k, "path-style") || !strcmp(k, "use-tls")) &&
             (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "false") || !strcmp(v, "0")))
      core_json_bool(j, !strcmp(v, "true") || !strcmp(v, "1"));
    else if (!strcmp(k, "provider-quirks"))
      render_quirks(j, v);
    else
      core_json_str(j, v);
  }
  core_json_obj_close(j);
}

/* ---- reads ------------------------------------------------------------- */

struct read_job {
  struct core_job job;
  struct http_request *req;
  struct s3_api *api;
  const char *id;               /* NULL: list */
  /* out */
  int rc;
  struct core_config cfg;
  char digest[CORE_CONFIG_DIGEST_LEN];
  char err[CORE_CONFIG_ERR_LEN];
};

static void read_run(struct core_job *j)
{
  struct read_job *r = (struct read_job *)j;
  r->rc = s3_config_load(r->api->config_dir, &r->cfg, r->digest, r->err, sizeof(r->err));
}

static void read_done(struct core_job *job, int status)
{
  struct read_job *r = (struct read_job *)job;
  int rc = status < 0 ? status : r->rc;
  if (rc < 0) {
    http_respond_error(r->req, 500, "cannot read %s: %s%s%s", S3_CONFIG_FILE,
                       core_strerror(rc), r->err[0] ? ": " : "", r->err);
    goto out;
  }
  struct core_json j;
  core_json_init(&j, 0);
  if (r->id == NULL) {
    core_json_arr_open(&j);
    for (size_t i = 0; i < r->cfg.nsections; i++)
      if (!strcmp(r->cfg.sections[i]->type, S3_SECTION_TYPE))
        render_section(&j, r->cfg.sections[i]);
    core_json_arr_close(&j);
  } else {
    const struct core_config_section *sec = core_config_find(&r->cfg, S3_SECTION_TYPE, r->id);
    if (sec == NULL) {
      core_json_free(&j);
      http_respond_error(r->req, 404, "no such S3 endpoint '%s'", r->id);
      goto out;
    }
    render_section(&j, sec);
  }
  size_t len;
  const char *text = core_json_text(&j, &len);
  http_respond_data_digest(r->req, text, len, r->digest);
  core_json_free(&j);
out:
  core_config_free(&r->cfg);
  core_free(r);
}

static void submit_read(struct http_request *req, struct s3_api *api, const char *id)
{
  struct read_job *r = core_new(struct read_job);
  r->req = req;
  r->api = api;
  r->id = id;
  core_config_init(&r->cfg);
  int rc = core_job_submit(api->loop, &r->job, read_run, read_done);
  if (rc < 0) {
    http_respond_errno(req, rc, "cannot queue the read");
    core_free(r);
  }
}

static int check_id_param(struct http_request *req, const char *id)
{
  if (id == NULL) {
    http_respond_error(req, 400, "parameter 'id' is required");
    return -1;
  }
  if (s3_config_check_id(id) < 0) {
    http_respond_error(req, 400, INVALID_ID);
    return -1;
  }
  return 0;
}

static void h_list(struct http_request *req, void *ctx)
{
  submit_read(req, ctx, NULL);
}

static void h_get(struct http_request *req, void *ctx)
{
  const char *id = http_req_param(req, "id");
  if (check_id_param(req, id) == 0)
    submit_read(req, ctx, id);
}

/* ---- writes ------------------------------------------------------------ */

static int s3_check_name(const char *id, char *err, size_t errlen)
{
  int rc = s3_config_check_id(id);
  if (rc < 0)
    snprintf(err, errlen, "%s", INVALID_ID);
  return rc;
}

/* Pool thread: s3_config locks s3.cfg, edits it and the secrets, and bumps
 * the generation. */
static int s3_apply(struct http_cfgedit *e)
{
  const struct s3_api *api = e->ctx;
  struct s3_config_req q = {
    .config_dir = api->config_dir,
    .shmem = api->shmem,
    .id = e->name,
    .set = e->props.set,
    .nset = e->props.nset,
    .del = e->props.del,
    .ndel = e->props.ndel,
    .digest = e->props.digest,
  };
  int rc = 0;
  switch (e->op) {
  case HTTP_CFGEDIT_CREATE: rc = s3_config_create(&q); break;
  case HTTP_CFGEDIT_UPDATE: rc = s3_config_update(&q); break;
  case HTTP_CFGEDIT_REMOVE: rc = s3_config_remove(&q); break;
  }
  snprintf(e->err, sizeof(e->err), "%s", q.err);
  return rc;
}

/* Who changed which endpoint: the audit log when cairnd has one, else the log. */
static void s3_audit(struct http_request *req, const struct http_cfgedit *e)
{
  const struct s3_api *api = e->ctx;
  char what[160];
  snprintf(what, sizeof(what), "%s S3 endpoint %s", http_cfgedit_verb(e->op), e->name);
  if (api->audit)
    api->audit(api->audit_ctx, req, what);
  else
    core_info("%s", what);
}

static const char *const s3_control[] = {"id", NULL};

static const struct http_cfgedit_ops s3_edit = {
  .name_param = "id",
  .control = s3_control,
  .check_name = s3_check_name,
  .check_prop = s3_config_check_prop,
  .apply = s3_apply,
  .done = s3_audit,
};

static void h_create(struct http_request *req, void *ctx)
{
  (void)ctx;
  http_cfgedit_submit(req, &s3_edit, HTTP_CFGEDIT_CREATE);
}

static void h_update(struct http_request *req, void *ctx)
{
  (void)ctx;
  http_cfgedit_submit(req, &s3_edit, HTTP_CFGEDIT_UPDATE);
}

static void h_remove(struct http_request *req, void *ctx)
{
  (void)ctx;
  http_cfgedit_submit(req, &s3_edit, HTTP_CFGEDIT_REMOVE);
}

/* ---- check ------------------------------------------------------------- */

struct check_job {
  struct core_job job;
  struct http_request *req;
  struct s3_api *api;
  const char *id;
  const char *bucket;
  /* out */
  int rc;                       /* setup errors (config, client) */
  char err[256];
  struct s3_check chk;
};

static void check_run(struct core_job *j)
{
  struct check_job *c = (struct check_job *)j;
  struct s3_endpoint ep;
  struct s3_client_config cfg;
  struct s3_sync s;
  c->rc = s3_config_load_endpoint(c->api->config_dir, c->id, &ep, c->err, sizeof(c->err));
  if (c->rc < 0)
    return;
  s3_endpoint_client_config(&ep, &cfg);
  /* Interactive: answer within seconds rather than retry for a minute. */
  cfg.max_attempts = 2;
  cfg.backoff_base_ms = 100;
  cfg.connect_timeout_ms = CHECK_TIMEOUT_MS;
  cfg.request_timeout_ms = CHECK_TIMEOUT_MS;
  c->rc = s3_sync_open(&s, &cfg, c->bucket);
  if (c->rc == 0)
    s3_sync_check(&s, &c->chk);
  else if (c->rc == CORE_ETLS || c->rc == CORE_ECERT || c->rc == CORE_ECONFIG)
    snprintf(c->err, sizeof(c->err), "cannot set up a client for endpoint '%s': %s", c->id,
             core_strerror(c->rc));
  s3_sync_close(&s);
  s3_endpoint_free(&ep);
}

static void check_done(struct core_job *job, int status)
{
  struct check_job *c = (struct check_job *)job;
  int rc = status < 0 ? status : c->rc;
  atomic_fetch_sub(&c->api->checks, 1);
  if (rc < 0) {
    int code = rc == CORE_ENOTFOUND ? 404 : rc == CORE_ECONFIG ? 400 : 500;
    http_respond_error(c->req, code, "%s", c->err[0] ? c->err : core_strerror(rc));
  } else if (c->chk.status != S3_CHECK_OK) {
    http_respond_error(c->req, 400, "%s: %s", c->chk.what, c->chk.message);
  } else {
    struct core_json j;
    core_json_init(&j, 0);
    core_json_obj_open(&j);
    core_json_kv_str(&j, "status", c->chk.what);
    core_json_kv_bool(&j, "ok", 1);
    core_json_kv_str(&j, "message", c->chk.message);
    core_json_kv_int(&j, "http-status", c->chk.http_status);
    core_json_obj_close(&j);
    http_respond_json(c->req, &j);
  }
  core_free(c);
}

static void h_check(struct http_request *req, void *ctx)
{
  struct s3_api *api = ctx;
  const char *id = http_req_param(req, "id");
  const char *bucket = http_req_param(req, "bucket");
  if (check_id_param(req, id) < 0)
    return;
  if (bucket == NULL || s3_url_check_bucket(bucket) < 0) {
    http_respond_error(req, 400, "parameter 'bucket' must be a bucket name (3..63 of "
                                 "a-z, 0-9, '.', '-')");
    return;
  }
  if (atomic_fetch_add(&api->checks, 1) >= S3_API_MAX_CHECKS) {
    atomic_fetch_sub(&api->checks, 1);
    http_respond_error(req, 503, "too many S3 checks running; try again");
    return;
  }
  struct check_job *c = core_new(struct check_job);
  c->req = req;
  c->api = api;
  c->id = id;
  c->bucket = bucket;
  int rc = core_job_submit(api->loop, &c->job, check_run, check_done);
  if (rc < 0) {
    atomic_fetch_sub(&api->checks, 1);
    http_respond_errno(req, rc, "cannot queue the check");
    core_free(c);
  }
}

void s3_api_register(struct http_server *s, struct s3_api *api)
{
  const struct http_route routes[] = {
    {HTTP_METHOD_GET, "/api2/json/config/s3", h_list, api, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_SYS_AUDIT, ACCESS_ON_SYSTEM)},
    {HTTP_METHOD_POST, "/api2/json/config/s3", h_create, api, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_SYS_MODIFY, ACCESS_ON_SYSTEM)},
    {HTTP_METHOD_GET, "/api2/json/config/s3/{id}", h_get, api, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_SYS_AUDIT, ACCESS_ON_SYSTEM)},
    {HTTP_METHOD_PUT, "/api2/json/config/s3/{id}", h_update, api, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_SYS_MODIFY, ACCESS_ON_SYSTEM)},
    {HTTP_METHOD_DELETE, "/api2/json/config/s3/{id}", h_remove, api, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_SYS_MODIFY, ACCESS_ON_SYSTEM)},
    {HTTP_METHOD_GET, "/api2/json/admin/s3/{id}/check", h_check, api, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_SYS_AUDIT, ACCESS_ON_SYSTEM)},
  };
  http_server_add_routes(s, routes, sizeof(routes) / sizeof(routes[0]));
}
