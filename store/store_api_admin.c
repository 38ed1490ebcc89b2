/* store_api_admin.c: /api2/json/admin/datastore (list) and .../{store}/status.
 *
 * Status comes from statfs(2), a blocking call, so it runs in the pool; the
 * result is reused for up to one second per datastore, and concurrent
 * requests for the same store wait for one call instead of each making its
 * own. Under load this turns the endpoint into a hash lookup and a printf.
 */
#include "store/store_api.h"
#include "store/store_access.h"
#include "access/access.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "format/format_name.h"
#include "store/store_session.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

/* A status answer uses a statfs at most this old; up to STATFS_STALE_MS
 * old, it answers at once and refreshes in the background, so a status
 * request never waits for a pool thread (which may be behind chunk writes
 * on a busy server) while the figure is recent. */
#define STATFS_TTL_MS 1000
#define STATFS_STALE_MS 10000

int store_api_check_store(struct http_request *req, const char *name)
{
  if (name == NULL || format_name_datastore(name) < 0) {
    http_respond_error(req, 400, "invalid or missing datastore name");
    return -1;
  }
  return 0;
}

void store_api_lookup_error(struct http_request *req, const char *store, int err,
                            struct store_datastore *ds)
{
  if (err == CORE_ENOTFOUND)
    http_respond_error(req, 404, "datastore '%s' does not exist", store);
  else if (err == CORE_EMAINT && ds)
    http_respond_error(req, 503, "datastore '%s' is in maintenance mode '%s'%s%s", store,
                       store_maint_name(ds->maint), ds->maint_msg ? ": " : "",
                       ds->maint_msg ? ds->maint_msg : "");
  else
    http_respond_errno(req, err, "datastore lookup failed");
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
    if (strcmp(sec->type, "datastore") != 0)
      continue;
    /* A caller sees the datastores it has some privilege on (or below). */
    if (api->access && !store_access_visible(api->access, http_req_authid(req), sec->name, NULL))
      continue;
    core_json_obj_open(&j);
    core_json_kv_str(&j, "store", sec->name);
    const char *comment = core_config_get(sec, "comment");
    if (comment)
      core_json_kv_str(&j, "comment", comment);
    struct store_datastore *ds = core_map_get(&api->reg->instances, sec->name);
    if (ds && ds->maint != STORE_MAINT_NONE)
      core_json_kv_str(&j, "maintenance", store_maint_name(ds->maint));
    core_json_obj_close(&j);
  }
  core_json_arr_close(&j);
  http_respond_json(req, &j);
}

static void h_list(struct http_request *req, void *ctx)
{
  struct store_api *api = ctx;
  store_registry_refresh(api->reg, list_ready, req);
}

/* ---- statfs, cached ---- */

struct statfs_job {
  struct core_job job;
  struct store_datastore *ds; /* reference held */
  char *path;                 /* in, owned */
  uint64_t total, used, avail; /* out */
  int rc;                     /* out */
};

struct store_status_wait {
  struct store_status_wait *next;
  struct http_request *req;
};

static void respond_status(struct http_request *req, struct store_datastore *ds)
{
  if (ds->st_err) {
    http_respond_errno(req, ds->st_err, "statfs failed");
    return;
  }
  char body[160];
  int n = snprintf(body, sizeof(body),
                   "{\"total\":%" PRIu64 ",\"used\":%" PRIu64 ",\"avail\":%" PRIu64 "}",
                   ds->st_total, ds->st_used, ds->st_avail);
  http_respond_data(req, body, (size_t)n);
}

static void statfs_run(struct core_job *j)
{
  struct statfs_job *job = (struct statfs_job *)j;
  struct statvfs st;
  if (statvfs(job->path, &st) < 0) {
    job->rc = -errno;
    return;
  }
  uint64_t frsize = st.f_frsize ? st.f_frsize : st.f_bsize;
  job->total = (uint64_t)st.f_blocks * frsize;
  job->avail = (uint64_t)st.f_bavail * frsize;
  job->used = job->total - (uint64_t)st.f_bfree * frsize;
}

static void statfs_done(struct core_job *j, int status)
{
  struct statfs_job *job = (struct statfs_job *)j;
  struct store_datastore *ds = job->ds;
  ds->st_err = status < 0 ? status : job->rc;
  ds->st_total = job->total;
  ds->st_used = job->used;
  ds->st_avail = job->avail;
  ds->st_stamp_ms = uv_now(ds->reg->loop);
  if (ds->st_stamp_ms == 0)
    ds->st_stamp_ms = 1;
  ds->st_busy = 0;
  struct store_status_wait *w = ds->st_waiters;
  ds->st_waiters = NULL;
  while (w) {
    struct store_status_wait *next = w->next;
    respond_status(w->req, ds);
    store_release(ds, STORE_OP_READ);
    core_free(w);
    w = next;
  }
  core_free(job->path);
  store_datastore_unref(ds);
  core_free(job);
}

/* Starts a statfs job unless one is running; its end answers the waiters. */
static void statfs_start(struct store_datastore *ds)
{
  if (ds->st_busy)
    return;
  ds->st_busy = 1;
  struct statfs_job *job = core_new(struct statfs_job);
  job->ds = ds;
  store_datastore_ref(ds);
  job->path = core_strdup(ds->path);
  int rc = core_job_submit(ds->reg->loop, &job->job, statfs_run, statfs_done);
  if (rc < 0)
    statfs_done(&job->job, rc);
}

static void status_lookup(void *arg, int err, struct store_datastore *ds)
{
  struct http_request *req = arg;
  if (err) {
    store_api_lookup_error(req, http_req_param(req, "store"), err, ds);
    return;
  }
  uint64_t now = uv_now(ds->reg->loop), age = now - ds->st_stamp_ms;
  if (ds->st_stamp_ms && (age < STATFS_TTL_MS || (age < STATFS_STALE_MS && !ds->st_err))) {
    respond_status(req, ds);
    if (age >= STATFS_TTL_MS)
      statfs_start(ds);
    store_release(ds, STORE_OP_READ);
    return;
  }
  struct store_status_wait *w = core_new(struct store_status_wait);
  w->req = req;
  w->next = ds->st_waiters;
  ds->st_waiters = w;
  statfs_start(ds);
}

static void h_status(struct http_request *req, void *ctx)
{
  struct store_api *api = ctx;
  const char *store = http_req_param(req, "store");
  if (store_api_check_store(req, store) < 0)
    return;
  store_lookup(api->reg, store, STORE_OP_READ, status_lookup, req);
}

void store__api_admin_register(struct http_server *s, struct store_api *api)
{
  const struct http_route routes[] = {
    {HTTP_METHOD_GET, "/api2/json/admin/datastore", h_list, api, 0, 0,
     ACCESS_AUTHENTICATED},
    {HTTP_METHOD_GET, "/api2/json/admin/datastore/{store}/status", h_status, api, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_AUDIT | ACCESS_PRIV_DATASTORE_BACKUP, ACCESS_ON_STORE)},
  };
  http_server_add_routes(s, routes, sizeof(routes) / sizeof(routes[0]));
}

void store_api_register(struct http_server *s, struct store_api *api)
{
  store__api_config_register(s, api);
  store__api_admin_register(s, api);
  store__api_content_register(s, api);
  store__api_files_register(s, api);
  store__api_download_register(s, api);
  store__api_access_register(s, api);
  store__backup_register(s, api->sessions);
  store__reader_register(s, api->sessions);
}
