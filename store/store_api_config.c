/* store_api_config.c: /api2/json/config/datastore, PBS's datastore config API.
 *
 * Reads answer from the registry's parsed config (refreshed by generation);
 * writes go through http_cfgedit, which runs store_dsconfig in the pool: it
 * locks, checks the digest, saves and bumps the generation, so the next
 * request sees the change.
 */
#include "store/store_api.h"
#include "access/access.h"
#include "store/store_access.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_log.h"
#include "core/core_parse.h"
#include "core/core_utf8.h"
#include "http/http_cfgedit.h"
#include "store/store_dsconfig.h"
#include "format/format_name.h"

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
  if (format_name_datastore(http_req_param(req, "name")) < 0) {
    http_respond_error(req, 400, "invalid datastore name");
    return;
  }
  store_registry_refresh(api->reg, get_ready, req);
}

/* ---- Writes ---- */

#define DS_REUSE 1u   /* http_cfgedit.opts: create adopts an existing chunk store */

static int ds_check_name(const char *name, char *err, size_t errlen)
{
  char q[80];
  if (format_name_datastore(name) < 0) {
    snprintf(err, errlen, "invalid datastore name '%s'", core_utf8_quote(name, q, sizeof(q)));
    return CORE_ENAME;
  }
  return 0;
}

static int ds_parse(struct http_request *req, struct http_cfgedit *e, char *err, size_t errlen)
{
  const char *reuse = http_req_param(req, "reuse-datastore");
  int on = 0;
  if (reuse == NULL)
    return 0;
  if (e->op != HTTP_CFGEDIT_CREATE) {
    snprintf(err, errlen, "parameter 'reuse-datastore' only applies when creating");
    return CORE_EINVAL;
  }
  if (core_parse_bool(reuse, &on) < 0) {
    snprintf(err, errlen, "parameter 'reuse-datastore' must be a boolean (1/0, true/false, "
             "yes/no, on/off)");
    return CORE_EINVAL;
  }
  e->opts = on ? DS_REUSE : 0;
  return 0;
}

/* Pool thread: store_dsconfig does the locked edit and the generation bump. */
static int ds_apply(struct http_cfgedit *e)
{
  const struct store_api *api = e->ctx;
  struct store_dsconfig_req q = {
    .config_dir = api->config_dir,
    .run_dir = api->run_dir,
    .shmem = api->shmem,
    .name = e->name,
    .set = e->props.set,
    .nset = e->props.nset,
    .del = e->props.del,
    .ndel = e->props.ndel,
    .digest = e->props.digest,
    .reuse = (e->opts & DS_REUSE) != 0,
  };
  int rc = 0;
  switch (e->op) {
  case HTTP_CFGEDIT_CREATE: rc = store_dsconfig_create(&q); break;
  case HTTP_CFGEDIT_UPDATE: rc = store_dsconfig_update(&q); break;
  case HTTP_CFGEDIT_REMOVE: rc = store_dsconfig_remove(&q); break;
  }
  snprintf(e->err, sizeof(e->err), "%s", q.err);
  return rc;
}

static const char *const ds_control[] = {"name", "reuse-datastore", NULL};

/* Who changed which datastore goes to the audit log. */
static void ds_audit(struct http_request *req, const struct http_cfgedit *e)
{
  const struct store_api *api = e->ctx;
  if (api->access)
    store_access_audit(api->access, req, "%s datastore %s", http_cfgedit_verb(e->op), e->name);
}

static const struct http_cfgedit_ops ds_edit = {
  .name_param = "name",
  .control = ds_control,
  .check_name = ds_check_name,
  .check_prop = store_dsconfig_check_prop,
  .parse = ds_parse,
  .apply = ds_apply,
  .done = ds_audit,
};

static void h_create(struct http_request *req, void *ctx)
{
  (void)ctx;
  http_cfgedit_submit(req, &ds_edit, HTTP_CFGEDIT_CREATE);
}

static void h_update(struct http_request *req, void *ctx)
{
  (void)ctx;
  http_cfgedit_submit(req, &ds_edit, HTTP_CFGEDIT_UPDATE);
}

static void h_remove(struct http_request *req, void *ctx)
{
  (void)ctx;
  http_cfgedit_submit(req, &ds_edit, HTTP_CFGEDIT_REMOVE);
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
