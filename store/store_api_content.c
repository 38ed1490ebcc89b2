/* store_api_content.c: namespaces, groups, snapshots and the protected flag,
 * under /api2/json/admin/datastore/{store}/ with PBS's paths and JSON shapes.
 *
 * Each request becomes one pool job that validates nothing new (the loop
 * already checked every name), takes the locks the change needs (never
 * waiting: a busy lock is a 409), does the file-system work and renders the
 * JSON answer, so the loop only hands the finished text to the client.
 */
#include "store/store_api.h"
#include "store/store_access.h"
#include "store/store_metrics.h"
#include "access/access.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_job.h"
#include "core/core_json.h"
#include "core/core_log.h"
#include "core/core_parse.h"
#include "store/store_s3.h"
#include "store/store_lock.h"
#include "format/format_name.h"
#include "store/store_path.h"
#include "store/store_snapshot.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum content_op {
  OP_NS_LIST,
  OP_NS_CREATE,
  OP_NS_DELETE,
  OP_GROUP_LIST,
  OP_GROUP_DELETE,
  OP_SNAP_LIST,
  OP_SNAP_DELETE,
  OP_PROT_GET,
  OP_PROT_SET,
  OP_CHANGE_OWNER,
};

struct content_job {
  struct core_job job;
  struct http_request *req;
  struct store_api *api;
  struct store_datastore *ds;
  enum content_op op;
  /* in: validated parameters (owned copies) */
  char *ns;
  char *type;
  char *id;
  int64_t time;
  int max_depth;
  int flag;            /* delete-groups, protected value */
  /* Filters for callers without Datastore.Audit (owned copies, or NULL). */
  char *only_owner;    /* lists: only groups this auth id owns */
  char *viewer;        /* namespace list: only those it has privileges on or below */
  char *new_owner;     /* change-owner */
  struct access_info *acl; /* a reference, with viewer */
  /* out */
  int rc;
  char err[256];
  struct core_buf out; /* JSON value for "data" */
};

static int is_write(enum content_op op)
{
  return op == OP_NS_CREATE || op == OP_NS_DELETE || op == OP_GROUP_DELETE ||
         op == OP_SNAP_DELETE || op == OP_PROT_SET || op == OP_CHANGE_OWNER;
}

static void json_take(struct content_job *c, struct core_json *j)
{
  size_t len;
  const char *text = core_json_text(j, &len);
  core_buf_append(&c->out, text, len);
  core_json_free(j);
}

static void render_snapshot(struct core_json *j, const char *type, const char *id,
                            const struct store_snapshot_info *s, const char *owner)
{
  uint64_t total = 0;
  core_json_obj_open(j);
  core_json_kv_str(j, "backup-type", type);
  core_json_kv_str(j, "backup-id", id);
  core_json_kv_int(j, "backup-time", s->time);
  core_json_key(j, "files");
  core_json_arr_open(j);
  for (size_t k = 0; k < s->n_files; k++) {
    core_json_obj_open(j);
    core_json_kv_str(j, "filename", s->files[k].name);
    core_json_kv_uint(j, "size", s->files[k].size);
    core_json_obj_close(j);
    total += s->files[k].size;
  }
  core_json_arr_close(j);
  core_json_kv_uint(j, "size", total);
  core_json_kv_bool(j, "protected", s->is_protected);
  if (!s->finished)
    core_json_kv_bool(j, "unfinished", 1);
  if (owner)
    core_json_kv_str(j, "owner", owner);
  core_json_obj_close(j);
}

/* Without Datastore.Audit a caller sees only the groups it owns. */
static int owner_visible(const struct content_job *c, const char *owner)
{
  return c->only_owner == NULL || (owner && store_access_owns(c->only_owner, owner));
}

static int ns_visible(const struct content_job *c, const char *ns)
{
  char path[ACCESS_PATH_MAX];
  return access_datastore_path(path, sizeof(path), c->ds->name, ns) == 0 &&
         access_acl_any_below(&c->acl->acl, c->viewer, path);
}

/* Snapshots of one group, or of every group in the namespace. */
static int list_snapshots(struct content_job *c, struct core_json *j)
{
  const char *base = c->ds->path;
  struct store_group_list groups = {0};
  int rc = 0;
  if (c->type && c->id) {
    struct store_group_info one = {{0}};
    snprintf(one.type, sizeof(one.type), "%s", c->type);
    one.id = c->id;
    groups.items = &one;
    groups.n = 1;
    core_json_arr_open(j);
    struct store_snapshot_list snaps;
    char *owner = NULL;
    rc = store_snapshot_list(base, c->ns, c->type, c->id, &snaps);
    if (rc == 0) {
      store_group_owner(base, c->ns, c->type, c->id, &owner);
      for (size_t i = 0; owner_visible(c, owner) && i < snaps.n; i++)
        render_snapshot(j, c->type, c->id, &snaps.items[i], owner);
      store_snapshot_list_free(&snaps);
    }
    core_free(owner);
    core_json_arr_close(j);
    return rc;
  }
  rc = store_group_list(base, c->ns, &groups);
  if (rc < 0)
    return rc;
  core_json_arr_open(j);
  for (size_t g = 0; g < groups.n && rc == 0; g++) {
    const struct store_group_info *gi = &groups.items[g];
    if (c->type && strcmp(c->type, gi->type) != 0)
      continue;
    if (c->id && strcmp(c->id, gi->id) != 0)
      continue;
    if (!owner_visible(c, gi->owner))
      continue;
    struct store_snapshot_list snaps;
    rc = store_snapshot_list(base, c->ns, gi->type, gi->id, &snaps);
    if (rc == CORE_ENOTFOUND) {
      rc = 0; /* the group vanished meanwhile */
      continue;
    }
    for (size_t i = 0; rc == 0 && i < snaps.n; i++)
      render_snapshot(j, gi->type, gi->id, &snaps.items[i], gi->owner);
    if (rc == 0)
      store_snapshot_list_free(&snaps);
  }
  core_json_arr_close(j);
  store_group_list_free(&groups);
  return rc;
}

static void content_run(struct core_job *job)
{
  struct content_job *c = (struct content_job *)job;
  const char *base = c->ds->path;
  struct store_lock_guard g = STORE_LOCK_GUARD_INIT;
  char lockdir[1024];
  struct core_json j;
  core_json_init(&j, 0);
  int rc = store_lock_dir(lockdir, sizeof(lockdir), c->api->run_dir, c->ds->name);
  if (rc < 0)
    goto out;
  rc = 0;
  switch (c->op) {
  case OP_NS_LIST: {
    struct store_ns_list list;
    rc = store_ns_list(base, c->ns, c->max_depth, &list);
    if (rc < 0)
      break;
    core_json_arr_open(&j);
    for (size_t i = 0; i < list.n; i++) {
      if (c->viewer && !ns_visible(c, list.items[i]))
        continue;
      core_json_obj_open(&j);
      core_json_kv_str(&j, "ns", list.items[i]);
      core_json_obj_close(&j);
    }
    core_json_arr_close(&j);
    store_ns_list_free(&list);
    break;
  }
  case OP_NS_CREATE:
    rc = store_lock_namespace(lockdir, c->ns, STORE_LOCK_SHARED, &g);
    if (rc == 0)
      rc = store_ns_create(base, c->ns);
    if (rc == 0)
      core_json_str(&j, c->ns);
    break;
  case OP_NS_DELETE:
    rc = store_lock_namespace(lockdir, c->ns, STORE_LOCK_EXCLUSIVE, &g);
    if (rc == 0)
      rc = store_ns_delete(base, c->ns, c->flag ? STORE_NS_DELETE_GROUPS : 0);
    if (rc == -ENOTEMPTY)
      snprintf(c->err, sizeof(c->err), "namespace '%s' is not empty (use delete-groups)",
               c->ns);
    if (rc == 0)
      core_json_null(&j);
    break;
  case OP_GROUP_LIST: {
    struct store_group_list list;
    rc = store_group_list(base, c->ns, &list);
    if (rc < 0)
      break;
    core_json_arr_open(&j);
    for (size_t i = 0; i < list.n; i++) {
      const struct store_group_info *gi = &list.items[i];
      if (!owner_visible(c, gi->owner))
        continue;
      core_json_obj_open(&j);
      core_json_kv_str(&j, "backup-type", gi->type);
      core_json_kv_str(&j, "backup-id", gi->id);
      core_json_kv_uint(&j, "backup-count", gi->n_snapshots);
      if (gi->last_backup >= 0)
        core_json_kv_int(&j, "last-backup", gi->last_backup);
      if (gi->owner)
        core_json_kv_str(&j, "owner", gi->owner);
      core_json_obj_close(&j);
    }
    core_json_arr_close(&j);
    store_group_list_free(&list);
    break;
  }
  case OP_GROUP_DELETE:
    rc = store_lock_group(lockdir, c->ns, c->type, c->id, STORE_LOCK_EXCLUSIVE, &g);
    if (rc == 0)
      rc = store_group_delete(base, c->ns, c->type, c->id);
    if (rc == 0)
      core_json_null(&j);
    break;
  case OP_SNAP_LIST:
    rc = list_snapshots(c, &j);
    break;
  case OP_SNAP_DELETE:
    rc = store_lock_snapshot(lockdir, c->ns, c->type, c->id, c->time, STORE_LOCK_EXCLUSIVE,
                             &g);
    if (rc == CORE_ELOCKED)
      snprintf(c->err, sizeof(c->err), "snapshot is in use (being read, or the base of a "
               "running backup)");
    if (rc == 0)
      rc = store_snapshot_delete(base, c->ns, c->type, c->id, c->time);
    if (rc == 0)
      core_json_null(&j);
    break;
  case OP_PROT_GET: {
    struct store_snapshot_info info;
    rc = store_snapshot_info(base, c->ns, c->type, c->id, c->time, &info);
    if (rc == 0) {
      core_json_bool(&j, info.is_protected);
      store_snapshot_info_free(&info);
    }
    break;
  }
  case OP_CHANGE_OWNER:
    rc = store_lock_group(lockdir, c->ns, c->type, c->id, STORE_LOCK_EXCLUSIVE, &g);
    if (rc == 0) {
      char *old = NULL;
      rc = store_group_owner(base, c->ns, c->type, c->id, &old);
      core_free(old);
    }
    if (rc == 0)
      rc = store_group_set_owner(base, c->ns, c->type, c->id, c->new_owner);
    if (rc == 0)
      core_json_null(&j);
    break;
  case OP_PROT_SET:
    rc = store_lock_snapshot(lockdir, c->ns, c->type, c->id, c->time, STORE_LOCK_SHARED, &g);
    if (rc == 0)
      rc = store_snapshot_set_protected(base, c->ns, c->type, c->id, c->time, c->flag);
    if (rc == 0)
      core_json_null(&j);
    break;
  }
out:
  store_lock_release(&g);
  if (rc == CORE_ELOCKED && c->err[0] == '\0')
    snprintf(c->err, sizeof(c->err), "busy: a backup or another operation holds the lock");
  if (rc >= 0)
    json_take(c, &j);
  else
    core_json_free(&j);
  c->rc = rc < 0 ? rc : 0;
}

static void content_free(struct content_job *c)
{
  core_free(c->only_owner);
  core_free(c->viewer);
  core_free(c->new_owner);
  if (c->acl)
    access_info_unref(c->acl);
  core_buf_free(&c->out);
  core_free(c->ns);
  core_free(c->type);
  core_free(c->id);
  core_free(c);
}

static const char *const op_names[] = {
  [OP_NS_CREATE] = "created namespace", [OP_NS_DELETE] = "deleted namespace",
  [OP_GROUP_DELETE] = "deleted group",  [OP_SNAP_DELETE] = "deleted snapshot",
  [OP_PROT_SET] = "changed the protection of snapshot",
  [OP_CHANGE_OWNER] = "changed the owner of",
};

static void audit(const struct content_job *c)
{
  if (c->api->access == NULL)
    return;
  char time_s[24] = "";
  if (c->op == OP_SNAP_DELETE || c->op == OP_PROT_SET)
    snprintf(time_s, sizeof(time_s), "/%" PRId64, c->time);
  store_access_audit(c->api->access, c->req, "%s store=%s ns=%s%s%s%s%s%s%s%s%s",
                     op_names[c->op], c->ds->name, c->ns[0] ? c->ns : "/",
                     c->type ? " group=" : "", c->type ? c->type : "", c->id ? "/" : "",
                     c->id ? c->id : "", time_s,
                     c->op == OP_PROT_SET ? (c->flag ? " (protected)" : " (unprotected)")
                                          : "",
                     c->new_owner ? " to " : "", c->new_owner ? c->new_owner : "");
}

static void content_finish(struct content_job *c, int rc)
{
  if (rc == 0 && is_write(c->op))
    audit(c);
  if (rc == 0 && (c->op == OP_NS_DELETE || c->op == OP_GROUP_DELETE || c->op == OP_SNAP_DELETE))
    store_metrics_store_changed(c->ds->reg->metrics, c->ds->name); /* last-backup cache */
  if (rc < 0) {
    int code = http_status_for(rc);
    if (rc == -ENOTEMPTY)
      code = 400;
    http_respond_error(c->req, code, "%s", c->err[0] ? c->err : core_strerror(rc));
  } else {
    http_respond_data(c->req, c->out.base, c->out.len);
  }
  store_release(c->ds, is_write(c->op) ? STORE_OP_WRITE : STORE_OP_READ);
  content_free(c);
}

static void mirror_done(void *arg, int err, const char *msg)
{
  struct content_job *c = arg;
  if (err < 0) {
    /* The local change stands; say plainly that the bucket lags behind. */
    snprintf(c->err, sizeof(c->err), "done locally, but the bucket copy was not updated: %s",
             msg ? msg : core_strerror(err));
    http_respond_error(c->req, 502, "%s", c->err);
    store_release(c->ds, STORE_OP_WRITE);
    content_free(c);
    return;
  }
  content_finish(c, 0);
}

/* On an S3 datastore the bucket's .cnt/ copy follows every change here, so an
 * S3 refresh never brings back what was deleted. Returns 1 when the answer
 * waits for the bucket. */
static int follow_in_bucket(struct content_job *c)
{
  char rel[4096];
  int rc = -1;
  if (!store_datastore_is_s3(c->ds))
    return 0;
  switch (c->op) {
  case OP_SNAP_DELETE:
    rc = store_path_snapshot(rel, sizeof(rel), NULL, c->ns, c->type, c->id, c->time);
    break;
  case OP_GROUP_DELETE:
    rc = store_path_group(rel, sizeof(rel), NULL, c->ns, c->type, c->id);
    break;
  case OP_NS_DELETE:
    rc = store_path_ns(rel, sizeof(rel), NULL, c->ns);
    break;
  case OP_CHANGE_OWNER: {
    char group[4096];
    rc = store_path_group(group, sizeof(group), NULL, c->ns, c->type, c->id);
    if (rc >= 0 && snprintf(rel, sizeof(rel), "%s/%s", group, STORE_OWNER_FILE) <
                       (int)sizeof(rel)) {
      const char *rels[1] = {rel};
      store_s3_mirror(c->ds, rels, 1, 0, mirror_done, c);
      return 1;
    }
    return 0;
  }
  case OP_PROT_SET:
    rc = store_path_file(rel, sizeof(rel), NULL, c->ns, c->type, c->id, c->time,
                         ".protected");
    if (rc >= 0 && c->flag) {
      const char *rels[1] = {rel};
      store_s3_mirror(c->ds, rels, 1, 0, mirror_done, c);
      return 1;
    }
    if (rc >= 0) {
      store_s3_unmirror(c->ds, rel, 0, mirror_done, c);
      return 1;
    }
    break;
  default:
    return 0;
  }
  if (rc < 0)
    return 0;
  store_s3_unmirror(c->ds, rel, 1, mirror_done, c);
  return 1;
}

static void content_done(struct core_job *job, int status)
{
  struct content_job *c = (struct content_job *)job;
  int rc = status < 0 ? status : c->rc;
  if (rc == 0 && follow_in_bucket(c))
    return;
  content_finish(c, rc);
}

static void content_lookup(void *arg, int err, struct store_datastore *ds)
{
  struct content_job *c = arg;
  if (err) {
    store_api_lookup_error(c->req, http_req_param(c->req, "store"), err, ds);
    content_free(c);
    return;
  }
  c->ds = ds;
  int rc = core_job_submit(c->api->loop, &c->job, content_run, content_done);
  if (rc < 0) {
    c->rc = rc;
    content_done(&c->job, rc);
  }
}

/* Validates the parameters an operation needs, then looks the store up. */
static void start(struct http_request *req, struct store_api *api, enum content_op op)
{
  if (store_api_check_store(req, http_req_param(req, "store")) < 0)
    return;
  struct content_job *c = core_new(struct content_job);
  c->req = req;
  c->api = api;
  c->op = op;
  c->max_depth = -1;
  core_buf_init(&c->out, 64u * 1024 * 1024);
  const char *ns = http_req_param(req, "ns");
  const char *type = http_req_param(req, "backup-type");
  const char *id = http_req_param(req, "backup-id");
  const char *time_s = http_req_param(req, "backup-time");
  const char *msg = NULL;

  if (op == OP_NS_LIST) {
    ns = http_req_param(req, "parent");
    const char *depth = http_req_param(req, "max-depth");
    if (depth) {
      char *end;
      long d = strtol(depth, &end, 10);
      if (*depth == '\0' || *end || d < 0 || d > FORMAT_NAME_NS_MAX_DEPTH)
        msg = "max-depth must be 0..7";
      c->max_depth = (int)d;
    }
  } else if (op == OP_NS_CREATE) {
    const char *parent = http_req_param(req, "parent");
    const char *name = http_req_param(req, "name");
    if (name == NULL || format_name_ns_component(name) < 0)
      msg = "invalid or missing namespace name";
    else if (parent && parent[0] && format_name_ns(parent) < 0)
      msg = "invalid parent namespace";
    else
      c->ns = parent && parent[0] ? core_asprintf("%s/%s", parent, name) : core_strdup(name);
    if (c->ns && format_name_ns(c->ns) < 0)
      msg = "namespace too deep or too long";
  }
  if (msg == NULL && ns && format_name_ns(ns) < 0)
    msg = "invalid namespace";
  if (c->ns == NULL)
    c->ns = core_strdup(ns ? ns : "");
  if (msg == NULL && op == OP_NS_DELETE && c->ns[0] == '\0')
    msg = "the root namespace cannot be deleted";

  int need_group = op == OP_GROUP_DELETE || op == OP_SNAP_DELETE || op == OP_PROT_GET ||
                   op == OP_PROT_SET || op == OP_CHANGE_OWNER;
  const char *new_owner = http_req_param(req, "new-owner");
  if (op == OP_CHANGE_OWNER && (new_owner == NULL || !access_authid_valid(new_owner)))
    msg = "invalid or missing new-owner (user@realm or user@realm!token)";
  int need_time = op == OP_SNAP_DELETE || op == OP_PROT_GET || op == OP_PROT_SET;
  if (msg == NULL && (type || need_group) && (type == NULL || format_name_backup_type(type) < 0))
    msg = "backup-type must be vm, ct or host";
  if (msg == NULL && (id || need_group) && (id == NULL || format_name_backup_id(id) < 0))
    msg = "invalid or missing backup-id";
  if (msg == NULL && need_time) {
    char *end;
    long long t = time_s ? strtoll(time_s, &end, 10) : -1;
    if (time_s == NULL || *time_s == '\0' || *end || t < 0)
      msg = "invalid or missing backup-time";
    c->time = t;
  }
  const char *flag = op == OP_NS_DELETE ? http_req_param(req, "delete-groups")
                     : op == OP_PROT_SET ? http_req_param(req, "protected") : NULL;
  if (msg == NULL && op == OP_PROT_SET && flag == NULL)
    msg = "parameter 'protected' is required";
  if (msg == NULL && flag && core_parse_bool(flag, &c->flag) < 0)
    msg = op == OP_NS_DELETE ? "parameter 'delete-groups' must be a boolean"
                             : "parameter 'protected' must be a boolean";
  if (msg) {
    http_respond_error(req, 400, "%s", msg);
    content_free(c);
    return;
  }
  c->type = type ? core_strdup(type) : NULL;
  c->id = id ? core_strdup(id) : NULL;
  if (op == OP_CHANGE_OWNER)
    c->new_owner = core_strdup(new_owner);
  const char *who = http_req_authid(req);
  if ((op == OP_GROUP_LIST || op == OP_SNAP_LIST) && who &&
      !(http_req_privs(req) & ACCESS_PRIV_DATASTORE_AUDIT))
    c->only_owner = core_strdup(who);
  if (op == OP_NS_LIST && who && api->access && !access_is_root(who)) {
    c->viewer = core_strdup(who);
    c->acl = store_access_info_ref(api->access);
  }
  store_lookup(api->reg, http_req_param(req, "store"), is_write(op) ? STORE_OP_WRITE
                                                                    : STORE_OP_READ,
               content_lookup, c);
}

#define HANDLER(fn, op)                                                            \
  static void fn(struct http_request *req, void *ctx) { start(req, ctx, op); }

HANDLER(h_ns_list, OP_NS_LIST)
HANDLER(h_ns_create, OP_NS_CREATE)
HANDLER(h_ns_delete, OP_NS_DELETE)
HANDLER(h_group_list, OP_GROUP_LIST)
HANDLER(h_group_delete, OP_GROUP_DELETE)
HANDLER(h_snap_list, OP_SNAP_LIST)
HANDLER(h_snap_delete, OP_SNAP_DELETE)
HANDLER(h_prot_get, OP_PROT_GET)
HANDLER(h_prot_set, OP_PROT_SET)
HANDLER(h_change_owner, OP_CHANGE_OWNER)

void store__api_content_register(struct http_server *s, struct store_api *api)
{
#define D "/api2/json/admin/datastore/{store}/"
  const struct http_route routes[] = {
    {HTTP_METHOD_GET, D "namespace", h_ns_list, api, 0, 0,
     ACCESS_NEEDS_OR(ACCESS_PRIV_DATASTORE_AUDIT | ACCESS_PRIV_DATASTORE_BACKUP, 0,
                     ACCESS_ON_NS_PARAM_PARENT, ACCESS_IF_ANY_BELOW)},
    {HTTP_METHOD_POST, D "namespace", h_ns_create, api, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_MODIFY, ACCESS_ON_NS_PARAM_PARENT)},
    {HTTP_METHOD_DELETE, D "namespace", h_ns_delete, api, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_MODIFY, ACCESS_ON_NS_PARENT)},
    {HTTP_METHOD_GET, D "groups", h_group_list, api, 0, 0,
     ACCESS_NEEDS_OR(ACCESS_PRIV_DATASTORE_AUDIT, ACCESS_PRIV_DATASTORE_BACKUP, ACCESS_ON_NS, ACCESS_IF_FILTERED)},
    {HTTP_METHOD_DELETE, D "groups", h_group_delete, api, 0, 0,
     ACCESS_NEEDS_OR(ACCESS_PRIV_DATASTORE_MODIFY, ACCESS_PRIV_DATASTORE_PRUNE, ACCESS_ON_NS, ACCESS_IF_GROUP_OWNER)},
    {HTTP_METHOD_GET, D "snapshots", h_snap_list, api, 0, 0,
     ACCESS_NEEDS_OR(ACCESS_PRIV_DATASTORE_AUDIT, ACCESS_PRIV_DATASTORE_BACKUP, ACCESS_ON_NS, ACCESS_IF_FILTERED)},
    {HTTP_METHOD_DELETE, D "snapshots", h_snap_delete, api, 0, 0,
     ACCESS_NEEDS_OR(ACCESS_PRIV_DATASTORE_MODIFY, ACCESS_PRIV_DATASTORE_PRUNE, ACCESS_ON_NS, ACCESS_IF_GROUP_OWNER)},
    {HTTP_METHOD_GET, D "protected", h_prot_get, api, 0, 0,
     ACCESS_NEEDS_OR(ACCESS_PRIV_DATASTORE_AUDIT, ACCESS_PRIV_DATASTORE_BACKUP, ACCESS_ON_NS, ACCESS_IF_GROUP_OWNER)},
    {HTTP_METHOD_PUT, D "protected", h_prot_set, api, 0, 0,
     ACCESS_NEEDS_OR(ACCESS_PRIV_DATASTORE_MODIFY, ACCESS_PRIV_DATASTORE_PRUNE, ACCESS_ON_NS, ACCESS_IF_GROUP_OWNER)},
    {HTTP_METHOD_POST, D "change-owner", h_change_owner, api, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_MODIFY, ACCESS_ON_NS)},
  };
#undef D
  http_server_add_routes(s, routes, sizeof(routes) / sizeof(routes[0]));
}
