/* store_api_config.c: /api2/json/config/datastore, PBS's datastore config API.
 *
 * Reads answer from the registry's parsed config (refreshed by generation);
 * writes run store_dsconfig in the pool, which locks, checks the digest,
 * saves and bumps the generation, so the next request sees the change.
 */
#include "store/store_api.h"
#include "access/access.h"
#include "store/store_access.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "core/core_parse.h"
#include "core/core_utf8.h"
#include "http/http_props.h"
#include "store/store_dsconfig.h"
#include "store/store_name.h"

#include <stdio.h>
#include <string.h>


static void section_json(struct core_json *j, const struct core_config_section *sec)
{
  core_json_obj_open(j);
  core_json_kv_str(j, "name", sec->name);
  for (size_t i = 0; i < sec->nkv; i++) {
    const char *k = sec->kv[i].key, *v = sec->kv[i].value;
    core_json_key(j, k);
    /* PBS's schema types keep-* as integers. */
    if (!strncmp(k, "keep-", 5) && v[0] >= '0' && v[0] <= '9' && strlen(v) < 12)
      core_json_raw(j, v, strlen(v));
    else
      core_json_str(j, v);
  }
  core_json_obj_close(j);
}

static void list_ready(void *arg, int err)
{
  struct http_request *req = arg;
  struct store_api *api = http_req_route_ctx(req);
  if (err) {
    http_respond_errno(req, err, "cannot read datastore.cfg");
    return;
  }
  struct core_json j;
  core_json_init(&j, 0);
  core_json_arr_open(&j);
  for (size_t i = 0; i < api->reg->cfg.nsections; i++) {
    const struct core_config_section *sec = api->reg->cfg.sections[i];
    if (!strcmp(sec->type, "datastore"))
      section_json(&j, sec);
  }
  core_json_arr_close(&j);
  size_t len;
  const char *text = core_json_text(&j, &len);
  http_respond_data_digest(req, text, len, api->reg->digest);
  core_json_free(&j);
}

static void h_list(struct http_request *req, void *ctx)
{
  struct store_api *api = ctx;
  store_registry_refresh(api->reg, list_ready, req);
}

static void get_ready(void *arg, int err)
{
  struct http_request *req = arg;
  struct store_api *api = http_req_route_ctx(req);
  if (err) {
    http_respond_errno(req, err, "cannot read datastore.cfg");
    return;
  }
  const char *name = http_req_param(req, "name");
  const struct core_config_section *sec = core_config_find(&api->reg->cfg, "datastore", name);
  if (sec == NULL) {
    http_respond_error(req, 404, "no such datastore '%s'", name);
    return;
  }
  struct core_json j;
  core_json_init(&j, 0);
  section_json(&j, sec);
  size_t len;
  const char *text = core_json_text(&j, &len);
  /* PBS puts the digest beside the data; clients that look inside get it too. */
  char *obj = core_asprintf("%.*s,\"digest\":\"%s\"}", (int)len - 1, text, api->reg->digest);
  http_respond_data_digest(req, obj, strlen(obj), api->reg->digest);
  core_free(obj);
  core_json_free(&j);
}

static void h_get(struct http_request *req, void *ctx)
{
  struct store_api *api = ctx;
  if (store_name_datastore(http_req_param(req, "name")) < 0) {
    http_respond_error(req, 400, "invalid datastore name");
    return;
  }
  store_registry_refresh(api->reg, get_ready, req);
}

/* ---- Writes ---- */

enum write_kind { W_CREATE, W_UPDATE, W_REMOVE };

struct write_job {
  struct core_job job;
  struct http_request *req;
  enum write_kind kind;
  struct store_dsconfig_req q;   /* in; q.err out */
  struct http_props props;       /* what q points into */
  int rc;                        /* out */
};

static void write_run(struct core_job *j)
{
  struct write_job *w = (struct write_job *)j;
  switch (w->kind) {
  case W_CREATE: w->rc = store_dsconfig_create(&w->q); break;
  case W_UPDATE: w->rc = store_dsconfig_update(&w->q); break;
  case W_REMOVE: w->rc = store_dsconfig_remove(&w->q); break;
  }
}

static void write_done(struct core_job *j, int status)
{
  struct write_job *w = (struct write_job *)j;
  int rc = status < 0 ? status : w->rc;
  if (rc == 0) {
    struct store_api *api = http_req_route_ctx(w->req);
    if (api->access)
      store_access_audit(api->access, w->req, "%s datastore %s",
                         w->kind == W_CREATE   ? "created"
                         : w->kind == W_UPDATE ? "updated"
                                               : "removed",
                         w->q.name);
    http_respond_data(w->req, NULL, 0);
  } else {
    int code = http_status_for(rc);
    if (rc == CORE_ECONFIG || rc == CORE_ENAME)
      code = 400;
    if (rc == CORE_ESTALE)
      http_respond_error(w->req, code, "detected modified configuration - file changed by "
                         "other user? Try again (digest mismatch)");
    else
      http_respond_error(w->req, code, "%s", w->q.err[0] ? w->q.err : core_strerror(rc));
  }
  http_props_free(&w->props);
  core_free(w);
}

static void submit_write(struct http_request *req, struct store_api *api, enum write_kind kind)
{
  static const char *const control[] = {"name", "reuse-datastore", NULL};
  struct write_job *w = core_new(struct write_job);
  char err[256] = "";
  w->req = req;
  w->kind = kind;
  w->q.config_dir = api->config_dir;
  w->q.run_dir = api->run_dir;
  w->q.shmem = api->shmem;
  const char *name = http_req_param(req, "name");
  if (name == NULL) {
    http_respond_error(req, 400, "parameter 'name' is required");
    goto fail;
  }
  if (store_name_datastore(name) < 0) {
    char q[80];
    http_respond_error(req, 400, "invalid datastore name '%s'",
                       core_utf8_quote(name, q, sizeof(q)));
    goto fail;
  }
  w->q.name = name;
  const char *reuse = http_req_param(req, "reuse-datastore");
  if (reuse && kind != W_CREATE) {
    http_respond_error(req, 400, "parameter 'reuse-datastore' only applies when creating");
    goto fail;
  }
  if (reuse && core_parse_bool(reuse, &w->q.reuse) < 0) {
    http_respond_error(req, 400, "parameter 'reuse-datastore' must be a boolean (1/0, "
                       "true/false, yes/no, on/off)");
    goto fail;
  }
  if (http_props_collect(req, control, kind == W_REMOVE ? NULL : store_dsconfig_check_prop,
                         &w->props, err, sizeof(err)) < 0) {
    http_respond_error(req, 400, "%s", err[0] ? err : "invalid parameters");
    goto fail;
  }
  w->q.set = w->props.set;
  w->q.nset = w->props.nset;
  w->q.del = w->props.del;
  w->q.ndel = w->props.ndel;
  w->q.digest = w->props.digest;
  int rc = core_job_submit(api->loop, &w->job, write_run, write_done);
  if (rc < 0) {
    http_respond_errno(req, rc, "cannot queue the change");
    goto fail;
  }
  return;
fail:
  http_props_free(&w->props);
  core_free(w);
}

static void h_create(struct http_request *req, void *ctx)
{
  submit_write(req, ctx, W_CREATE);
}

static void h_update(struct http_request *req, void *ctx)
{
  submit_write(req, ctx, W_UPDATE);
}

static void h_remove(struct http_request *req, void *ctx)
{
  submit_write(req, ctx, W_REMOVE);
}

void store__api_config_register(struct http_server *s, struct store_api *api)
{
  const struct http_route routes[] = {
    {HTTP_METHOD_GET, "/api2/json/config/datastore", h_list, api, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_AUDIT, ACCESS_ON_DATASTORES)},
    {HTTP_METHOD_POST, "/api2/json/config/datastore", h_create, api, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_ALLOCATE, ACCESS_ON_DATASTORES)},
    {HTTP_METHOD_GET, "/api2/json/config/datastore/{name}", h_get, api, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_AUDIT, ACCESS_ON_DATASTORES)},
    {HTTP_METHOD_PUT, "/api2/json/config/datastore/{name}", h_update, api, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_ALLOCATE, ACCESS_ON_DATASTORES)},
    {HTTP_METHOD_DELETE, "/api2/json/config/datastore/{name}", h_remove, api, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_ALLOCATE, ACCESS_ON_DATASTORES)},
  };
  http_server_add_routes(s, routes, sizeof(routes) / sizeof(routes[0]));
}
