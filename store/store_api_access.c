/* store_api_access.c: /api2/json/access/..., PBS's user, token, ACL,
 * permission and ticket API.
 *
 * Reads answer from the access snapshot the access check just made current;
 * writes run access_edit in the pool (lock, digest check, atomic save,
 * generation bump), as the datastore config API does with store_dsconfig.
 * Who may call what is declared in the route table at the bottom; the only
 * rule that needs the handler is that a user changing itself (not holding
 * Permissions.Modify) may change its password and its own tokens, nothing
 * else. Secrets appear in exactly two answers (a new token, a ticket) and in
 * no log line.
 */
#include "store/store_api.h"
#include "access/access.h"
#include "store/store_access.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_job.h"
#include "core/core_json.h"
#include "core/core_log.h"
#include "core/core_parse.h"
#include "http/http_props.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- reads ---- */

static void kv_json(struct core_json *j, const struct core_config_section *sec)
{
  for (size_t i = 0; i < sec->nkv; i++) {
    const char *k = sec->kv[i].key, *v = sec->kv[i].value;
    if (!strcmp(k, "enable")) {
      core_json_kv_bool(j, k, strcmp(v, "0") && strcmp(v, "false"));
    } else if (!strcmp(k, "expire")) {
      int64_t n;
      if (core_parse_i64(v, &n) == 0)
        core_json_kv_int(j, k, n);
    } else {
      core_json_kv_str(j, k, v);
    }
  }
}

static void token_json(struct core_json *j, const struct core_config_section *sec)
{
  core_json_obj_open(j);
  core_json_kv_str(j, "tokenid", sec->name);
  kv_json(j, sec);
  core_json_obj_close(j);
}

static void tokens_of(struct core_json *j, const struct access_info *info, const char *userid)
{
  size_t ulen = strlen(userid);
  core_json_arr_open(j);
  for (size_t i = 0; i < info->users.nsections; i++) {
    const struct core_config_section *s = info->users.sections[i];
    if (!strcmp(s->type, "token") && !strncmp(s->name, userid, ulen) && s->name[ulen] == '!')
      token_json(j, s);
  }
  core_json_arr_close(j);
}

static void user_json(struct core_json *j, const struct access_info *info, const char *userid,
                      const struct core_config_section *sec, int with_tokens)
{
  core_json_obj_open(j);
  core_json_kv_str(j, "userid", userid);
  if (sec)
    kv_json(j, sec);
  else
    core_json_kv_str(j, "comment", "Superuser");
  if (with_tokens) {
    core_json_key(j, "tokens");
    tokens_of(j, info, userid);
  }
  core_json_obj_close(j);
}

static struct access_info *info_of(struct http_request *req)
{
  struct store_api *api = http_req_route_ctx(req);
  return store_access_info_ref(api->access);
}

static void h_users_list(struct http_request *req, void *ctx)
{
  struct access_info *info = info_of(req);
  int all = (http_req_privs(req) & ACCESS_PRIV_SYS_AUDIT) != 0;
  int tokens = 0;
  core_parse_bool(http_req_param(req, "include_tokens"), &tokens);
  const char *me = http_req_authid(req);
  char self[ACCESS_AUTHID_MAX];
  snprintf(self, sizeof(self), "%.*s", (int)access_authid_user_len(me), me);
  struct core_json j;
  core_json_init(&j, 0);
  core_json_arr_open(&j);
  if (all || access_is_root(self))
    user_json(&j, info, ACCESS_ROOT, NULL, tokens);
  for (size_t i = 0; i < info->users.nsections; i++) {
    const struct core_config_section *s = info->users.sections[i];
    if (!strcmp(s->type, "user") && (all || !strcmp(s->name, self)))
      user_json(&j, info, s->name, s, tokens);
  }
  core_json_arr_close(&j);
  size_t len;
  const char *text = core_json_text(&j, &len);
  http_respond_data_digest(req, text, len, info->users_digest);
  core_json_free(&j);
  access_info_unref(info);
}

static void h_user_get(struct http_request *req, void *ctx)
{
  struct access_info *info = info_of(req);
  const char *userid = http_req_param(req, "userid");
  const struct core_config_section *sec = core_config_find(&info->users, "user", userid);
  if (sec == NULL && !access_is_root(userid)) {
    http_respond_error(req, 404, "no such user '%s'", userid);
  } else {
    struct core_json j;
    core_json_init(&j, 0);
    user_json(&j, info, userid, sec, 1);
    size_t len;
    const char *text = core_json_text(&j, &len);
    http_respond_data_digest(req, text, len, info->users_digest);
    core_json_free(&j);
  }
  access_info_unref(info);
}

static void h_tokens_list(struct http_request *req, void *ctx)
{
  struct access_info *info = info_of(req);
  struct core_json j;
  core_json_init(&j, 0);
  tokens_of(&j, info, http_req_param(req, "userid"));
  size_t len;
  const char *text = core_json_text(&j, &len);
  http_respond_data_digest(req, text, len, info->users_digest);
  core_json_free(&j);
  access_info_unref(info);
}

static int tokenid_of(struct http_request *req, char *buf, size_t len)
{
  int n = snprintf(buf, len, "%s!%s", http_req_param(req, "userid"),
                   http_req_param(req, "name"));
  if (n < 0 || (size_t)n >= len || !access_tokenid_valid(buf)) {
    http_respond_error(req, 400, "invalid token name");
    return -1;
  }
  return 0;
}

static void h_token_get(struct http_request *req, void *ctx)
{
  char tokenid[ACCESS_AUTHID_MAX];
  if (tokenid_of(req, tokenid, sizeof(tokenid)) < 0)
    return;
  struct access_info *info = info_of(req);
  const struct core_config_section *sec = core_config_find(&info->users, "token", tokenid);
  if (sec == NULL) {
    http_respond_error(req, 404, "no such token '%s'", tokenid);
  } else {
    struct core_json j;
    core_json_init(&j, 0);
    token_json(&j, sec);
    http_respond_json(req, &j);
  }
  access_info_unref(info);
}

struct acl_list {
  struct core_json *j;
  const char *path; /* NULL: all */
  int exact;
};

static void acl_entry(void *arg, const char *path, const char *authid, int role, int propagate)
{
  struct acl_list *l = arg;
  if (l->path) {
    size_t n = strlen(l->path);
    int under = strcmp(l->path, "/") == 0 ||
                (strncmp(path, l->path, n) == 0 && (path[n] == '\0' || path[n] == '/'));
    if (l->exact ? strcmp(path, l->path) != 0 : !under)
      return;
  }
  core_json_obj_open(l->j);
  core_json_kv_str(l->j, "path", path);
  core_json_kv_str(l->j, "ugid", authid);
  core_json_kv_str(l->j, "ugid_type", authid[0] == '@' ? "group" : "user");
  core_json_kv_int(l->j, "propagate", propagate);
  core_json_kv_str(l->j, "roleid", access_role_name(role));
  core_json_obj_close(l->j);
}

static void h_acl_get(struct http_request *req, void *ctx)
{
  int exact = 0;
  if (core_parse_bool(http_req_param(req, "exact"), &exact) < 0)
    exact = 0;
  struct access_info *info = info_of(req);
  struct core_json j;
  core_json_init(&j, 0);
  core_json_arr_open(&j);
  struct acl_list l = {&j, http_req_param(req, "path"), exact};
  access_acl_visit(&info->acl, acl_entry, &l);
  core_json_arr_close(&j);
  size_t len;
  const char *text = core_json_text(&j, &len);
  http_respond_data_digest(req, text, len, info->acl_digest);
  core_json_free(&j);
  access_info_unref(info);
}

static void perms_json(struct core_json *j, const struct access_info *info, const char *authid,
                       const char *path)
{
  uint32_t prop = 0;
  uint32_t privs = access_privs(info, authid, path, &prop);
  core_json_key(j, path);
  core_json_obj_open(j);
  for (int i = 0; i < ACCESS_PRIV_COUNT; i++)
    if (privs & (1u << i))
      core_json_kv_bool(j, access_priv_name(1u << i), (prop >> i) & 1);
  core_json_obj_close(j);
}

struct perm_paths {
  struct core_json *j;
  const struct access_info *info;
  const char *authid;
  size_t ulen;
  char last[ACCESS_PATH_MAX];
};

static void perm_path(void *arg, const char *path, const char *who, int role, int propagate)
{
  struct perm_paths *p = arg;
  static const char *const fixed[] = {"/", "/access", "/datastore", "/remote", "/system"};
  for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
    if (!strcmp(path, fixed[i]))
      return;
  /* The caller's own entries and its user's. */
  int mine = !strcmp(who, p->authid) ||
             (!strncmp(who, p->authid, p->ulen) && who[p->ulen] == '\0');
  if (!mine || !strcmp(path, p->last))
    return;
  snprintf(p->last, sizeof(p->last), "%s", path);
  perms_json(p->j, p->info, p->authid, path);
}

static void h_permissions(struct http_request *req, void *ctx)
{
  const char *authid = http_req_param(req, "auth-id");
  if (authid == NULL)
    authid = http_req_authid(req);
  if (!access_authid_valid(authid)) {
    http_respond_error(req, 400, "invalid auth-id");
    return;
  }
  const char *path = http_req_param(req, "path");
  if (path && access_path_valid(path) < 0) {
    http_respond_error(req, 400, "invalid path");
    return;
  }
  struct access_info *info = info_of(req);
  struct core_json j;
  core_json_init(&j, 0);
  core_json_obj_open(&j);
  if (path) {
    perms_json(&j, info, authid, path);
  } else {
    static const char *const fixed[] = {"/", "/access", "/datastore", "/remote", "/system"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
      perms_json(&j, info, authid, fixed[i]);
    struct perm_paths p = {&j, info, authid, access_authid_user_len(authid), ""};
    access_acl_visit(&info->acl, perm_path, &p);
  }
  core_json_obj_close(&j);
  http_respond_json(req, &j);
  access_info_unref(info);
}

/* ---- writes (pool) ---- */

enum access_op {
  OP_USER_CREATE,
  OP_USER_UPDATE,
  OP_USER_REMOVE,
  OP_TOKEN_CREATE,
  OP_TOKEN_UPDATE,
  OP_TOKEN_REMOVE,
  OP_ACL_UPDATE,
};

struct write_job {
  struct core_job job;
  struct http_request *req;
  struct store_api *api;
  enum access_op op;
  /* in: borrowed from the request, which lives until the answer */
  const char *id;            /* user or token id (tokens: id_buf) */
  char id_buf[ACCESS_AUTHID_MAX];
  const char *password;      /* NULL: unchanged */
  const char *acl_path, *acl_role;
  int propagate, del, regenerate;
  struct http_props props;
  /* out */
  struct access_edit e;
  char *secret;              /* a new token's secret, shown once */
  int rc;
};

static void write_run(struct core_job *j)
{
  struct write_job *w = (struct write_job *)j;
  const struct http_props *p = &w->props;
  switch (w->op) {
  case OP_USER_CREATE:
    w->rc = access_user_create(&w->e, w->id, p->set, p->nset, w->password);
    break;
  case OP_USER_UPDATE:
    w->rc = access_user_update(&w->e, w->id, p->set, p->nset, p->del, p->ndel, w->password);
    break;
  case OP_USER_REMOVE:
    w->rc = access_user_remove(&w->e, w->id);
    break;
  case OP_TOKEN_CREATE:
    w->rc = access_token_create(&w->e, w->id, p->set, p->nset, 0, &w->secret);
    break;
  case OP_TOKEN_UPDATE:
    if (w->regenerate)
      w->rc = access_token_create(&w->e, w->id, p->set, p->nset, 1, &w->secret);
    else
      w->rc = access_token_update(&w->e, w->id, p->set, p->nset, p->del, p->ndel);
    break;
  case OP_TOKEN_REMOVE:
    w->rc = access_token_remove(&w->e, w->id);
    break;
  case OP_ACL_UPDATE:
    w->rc = access_acl_update(&w->e, w->acl_path, w->id, w->acl_role, w->propagate, w->del);
    break;
  }
}

static const char *const op_verbs[] = {
  [OP_USER_CREATE] = "created user",   [OP_USER_UPDATE] = "updated user",
  [OP_USER_REMOVE] = "removed user",   [OP_TOKEN_CREATE] = "created token",
  [OP_TOKEN_UPDATE] = "updated token", [OP_TOKEN_REMOVE] = "removed token",
  [OP_ACL_UPDATE] = "changed ACL",
};

static void write_done(struct core_job *j, int status)
{
  struct write_job *w = (struct write_job *)j;
  int rc = status < 0 ? status : w->rc;
  if (rc == 0) {
    if (w->op == OP_ACL_UPDATE)
      store_access_audit(w->api->access, w->req, "%s: %s %s on %s for %s", op_verbs[w->op],
                         w->del ? "removed" : "granted", w->acl_role, w->acl_path, w->id);
    else
      store_access_audit(w->api->access, w->req, "%s %s%s%s", op_verbs[w->op], w->id,
                         w->password ? " (password changed)" : "",
                         w->secret ? " (new secret)" : "");
    if (w->secret) {
      struct core_json js;
      core_json_init(&js, 0);
      core_json_obj_open(&js);
      core_json_kv_str(&js, "tokenid", w->id);
      core_json_kv_str(&js, "value", w->secret);
      core_json_obj_close(&js);
      http_respond_json(w->req, &js);
    } else {
      http_respond_data(w->req, NULL, 0);
    }
  } else {
    int code = http_status_for(rc);
    if (rc == CORE_ECONFIG || rc == CORE_ENAME)
      code = 400;
    http_respond_error(w->req, code, "%s", w->e.err[0] ? w->e.err : core_strerror(rc));
  }
  if (w->secret) {
    explicit_bzero(w->secret, strlen(w->secret));
    core_free(w->secret);
  }
  http_props_free(&w->props);
  core_free(w);
}

static const char *const control[] = {"userid", "tokenid", "name", "password", "regenerate",
                                      "path", "role", "auth-id", "propagate", NULL};

static int check_token_prop(const char *k, const char *v, char *err, size_t errlen)
{
  if (strcmp(k, "comment") && strcmp(k, "enable") && strcmp(k, "expire")) {
    snprintf(err, errlen, "unknown property '%s'", k);
    return CORE_ECONFIG;
  }
  return access_user_check_prop(k, v, err, errlen);
}

static void submit(struct http_request *req, struct store_api *api, enum access_op op)
{
  struct write_job *w = core_new(struct write_job);
  w->req = req;
  w->api = api;
  w->op = op;
  w->e.config_dir = api->config_dir;
  w->e.shmem = api->shmem;
  char err[256] = "";
  int tok = op == OP_TOKEN_CREATE || op == OP_TOKEN_UPDATE || op == OP_TOKEN_REMOVE;
  int removal = op == OP_USER_REMOVE || op == OP_TOKEN_REMOVE || op == OP_ACL_UPDATE;
  if (http_props_collect(req, control, removal ? NULL : tok ? check_token_prop
                                                            : access_user_check_prop,
                         &w->props, err, sizeof(err)) < 0) {
    http_respond_error(req, 400, "%s", err[0] ? err : "invalid parameters");
    goto fail;
  }
  w->e.digest = w->props.digest;
  w->password = http_req_param(req, "password");
  if (tok) {
    if (tokenid_of(req, w->id_buf, sizeof(w->id_buf)) < 0)
      goto fail;
    w->id = w->id_buf;
    if (core_parse_bool(http_req_param(req, "regenerate"), &w->regenerate) < 0)
      w->regenerate = 0;
  } else if (op == OP_ACL_UPDATE) {
    w->id = http_req_param(req, "auth-id");
    w->acl_path = http_req_param(req, "path");
    w->acl_role = http_req_param(req, "role");
    w->propagate = 1;
    const char *prop = http_req_param(req, "propagate");
    const char *del = http_req_param(req, "delete");
    if (w->id == NULL || w->acl_path == NULL || w->acl_role == NULL ||
        (prop && core_parse_bool(prop, &w->propagate) < 0) ||
        (del && core_parse_bool(del, &w->del) < 0)) {
      http_respond_error(req, 400, "path, role and auth-id are required; propagate and "
                         "delete are booleans");
      goto fail;
    }
    /* For ACLs "delete" is a flag, not a property list. */
    w->props.ndel = 0;
  } else {
    w->id = http_req_param(req, "userid");
    if (w->id == NULL) {
      http_respond_error(req, 400, "parameter 'userid' is required");
      goto fail;
    }
  }
  if (op == OP_USER_UPDATE && !(http_req_privs(req) & ACCESS_PRIV_PERMISSIONS_MODIFY) &&
      (w->props.nset || w->props.ndel)) {
    /* Here only as the user itself: its password, nothing else. */
    http_respond_error(req, 403, "permission check failed: Permissions.Modify on "
                       "/access/users (a user may only change its own password)");
    goto fail;
  }
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

#define WRITER(fn, op)                                                         \
  static void fn(struct http_request *req, void *ctx) { submit(req, ctx, op); }

WRITER(h_user_create, OP_USER_CREATE)
WRITER(h_user_update, OP_USER_UPDATE)
WRITER(h_user_remove, OP_USER_REMOVE)
WRITER(h_token_create, OP_TOKEN_CREATE)
WRITER(h_token_update, OP_TOKEN_UPDATE)
WRITER(h_token_remove, OP_TOKEN_REMOVE)
WRITER(h_acl_update, OP_ACL_UPDATE)

/* ---- tickets (login) ---- */

struct login_job {
  struct core_job job;
  struct http_request *req;
  struct store_api *api;
  /* in */
  char userid[ACCESS_AUTHID_MAX];
  char *password;             /* owned copy, wiped */
  /* out */
  int ok;
  char *rehash;               /* a yescrypt hash to store instead of an old one */
};

static void login_run(struct core_job *j)
{
  struct login_job *l = (struct login_job *)j;
  char *hash = NULL;
  int rehash = 0;
  if (access_password_lookup(l->api->config_dir, l->userid, &hash) < 0)
    return;
  l->ok = access_password_verify(hash, l->password, &rehash) == 1;
  core_free(hash);
  if (l->ok && rehash) {
    /* An old crypt prefix (copied from PBS): upgrade it now that we know the
     * password. */
    char *fresh = NULL;
    if (access_password_hash(l->password, &fresh) == 0) {
      struct access_edit e;
      memset(&e, 0, sizeof(e));
      e.config_dir = l->api->config_dir;
      e.shmem = l->api->shmem;
      access_password_store(&e, l->userid, fresh);
      core_free(fresh);
    }
  }
}

static void respond_ticket(struct http_request *req, struct store_access *a,
                           const char *userid)
{
  char ticket[ACCESS_TICKET_MAX], csrf[128];
  int64_t now = (int64_t)time(NULL);
  if (access_ticket_sign(a->key, userid, now, ticket, sizeof(ticket)) < 0 ||
      access_csrf_sign(a->key, userid, now, csrf, sizeof(csrf)) < 0) {
    http_respond_error(req, 500, "cannot sign a ticket");
    return;
  }
  struct core_json j;
  core_json_init(&j, 0);
  core_json_obj_open(&j);
  core_json_kv_str(&j, "username", userid);
  core_json_kv_str(&j, "ticket", ticket);
  core_json_kv_str(&j, "CSRFPreventionToken", csrf);
  core_json_obj_close(&j);
  explicit_bzero(ticket, sizeof(ticket));
  http_respond_json(req, &j);
}

/* The password was right: is the user (still) enabled, by the files as they
 * are now? */
static void login_finish(struct store_access *a, void *arg, int err)
{
  struct login_job *l = arg;
  int active = 0;
  if (err == 0) {
    struct access_info *info = store_access_info_ref(a);
    active = access_active(info, l->userid, (int64_t)time(NULL));
    access_info_unref(info);
  }
  if (err) {
    http_respond_error(l->req, 503, "the user configuration cannot be read");
  } else if (active) {
    store_access_audit(a, l->req, "login of %s", l->userid);
    respond_ticket(l->req, a, l->userid);
  } else {
    store_access_failed(a, l->req);
    http_respond_error(l->req, 401, "authentication failure");
  }
  core_free(l);
}

static void login_done(struct core_job *j, int status)
{
  struct login_job *l = (struct login_job *)j;
  explicit_bzero(l->password, strlen(l->password));
  core_free(l->password);
  l->password = NULL;
  if (status == 0 && l->ok) {
    store_access_refresh(l->api->access, login_finish, l);
    return;
  }
  store_access_failed(l->api->access, l->req);
  http_respond_error(l->req, 401, "authentication failure");
  core_free(l);
}

static void h_ticket(struct http_request *req, void *ctx)
{
  struct store_api *api = ctx;
  struct store_access *a = api->access;
  if (store_access_locked(a, req)) {
    http_respond_error(req, 429, "too many failed authentication attempts");
    return;
  }
  const char *user = http_req_param(req, "username");
  const char *password = http_req_param(req, "password");
  if (user == NULL || password == NULL || !access_userid_valid(user) ||
      strlen(password) > 1024) {
    http_respond_error(req, 400, "username and password are required");
    return;
  }
  /* PBS renews a ticket when it is sent as the password. */
  char renewed[ACCESS_AUTHID_MAX];
  if (strncmp(password, "PBS:", 4) == 0) {
    if (access_ticket_verify(a->key, password, (int64_t)time(NULL), renewed,
                             sizeof(renewed)) == 0 &&
        strcmp(renewed, user) == 0) {
      struct login_job *l = core_new(struct login_job);
      l->req = req;
      l->api = api;
      snprintf(l->userid, sizeof(l->userid), "%s", user);
      store_access_refresh(a, login_finish, l); /* a disabled user renews nothing */
      return;
    }
    store_access_failed(a, req);
    http_respond_error(req, 401, "authentication failure");
    return;
  }
  const char *at = strrchr(user, '@');
  if (strcmp(at + 1, "pbs") != 0) {
    /* Cairn does not ask PAM: pam users authenticate with tokens. */
    store_access_failed(a, req);
    http_respond_error(req, 401, "authentication failure");
    return;
  }
  struct login_job *l = core_new(struct login_job);
  l->req = req;
  l->api = api;
  snprintf(l->userid, sizeof(l->userid), "%s", user);
  l->password = core_strdup(password);
  int rc = core_job_submit(api->loop, &l->job, login_run, login_done);
  if (rc < 0)
    login_done(&l->job, rc);
}

/* ---- routes ---- */

void store__api_access_register(struct http_server *s, struct store_api *api)
{
#define A "/api2/json/access/"
#define U A "users/{userid}"
#define P(x) ACCESS_PRIV_##x
  const struct http_route routes[] = {
    /* Everyone may list: without Sys.Audit the list holds the caller alone. */
    {HTTP_METHOD_GET, A "users", h_users_list, api, 0, 0, {0, 0, ACCESS_ON_USERS, ACCESS_IF_AUTHENTICATED}},
    {HTTP_METHOD_POST, A "users", h_user_create, api, 0, 0,
     ACCESS_NEEDS(P(PERMISSIONS_MODIFY), ACCESS_ON_USERS)},
    {HTTP_METHOD_GET, U, h_user_get, api, 0, 0,
     ACCESS_NEEDS_OR(P(SYS_AUDIT), 0, ACCESS_ON_USERS, ACCESS_IF_SELF)},
    {HTTP_METHOD_PUT, U, h_user_update, api, 0, 0,
     ACCESS_NEEDS_OR(P(PERMISSIONS_MODIFY), 0, ACCESS_ON_USERS, ACCESS_IF_SELF)},
    {HTTP_METHOD_DELETE, U, h_user_remove, api, 0, 0,
     ACCESS_NEEDS(P(PERMISSIONS_MODIFY), ACCESS_ON_USERS)},
    {HTTP_METHOD_GET, U "/token", h_tokens_list, api, 0, 0,
     ACCESS_NEEDS_OR(P(SYS_AUDIT), 0, ACCESS_ON_USERS, ACCESS_IF_SELF)},
    {HTTP_METHOD_GET, U "/token/{name}", h_token_get, api, 0, 0,
     ACCESS_NEEDS_OR(P(SYS_AUDIT), 0, ACCESS_ON_USERS, ACCESS_IF_SELF)},
    {HTTP_METHOD_POST, U "/token/{name}", h_token_create, api, 0, 0,
     ACCESS_NEEDS_OR(P(PERMISSIONS_MODIFY), 0, ACCESS_ON_USERS, ACCESS_IF_SELF)},
    {HTTP_METHOD_PUT, U "/token/{name}", h_token_update, api, 0, 0,
     ACCESS_NEEDS_OR(P(PERMISSIONS_MODIFY), 0, ACCESS_ON_USERS, ACCESS_IF_SELF)},
    {HTTP_METHOD_DELETE, U "/token/{name}", h_token_remove, api, 0, 0,
     ACCESS_NEEDS_OR(P(PERMISSIONS_MODIFY), 0, ACCESS_ON_USERS, ACCESS_IF_SELF)},
    {HTTP_METHOD_GET, A "acl", h_acl_get, api, 0, 0, ACCESS_NEEDS(P(SYS_AUDIT), ACCESS_ON_ACL)},
    {HTTP_METHOD_PUT, A "acl", h_acl_update, api, 0, 0,
     ACCESS_NEEDS(P(PERMISSIONS_MODIFY), ACCESS_ON_ACL)},
    /* One's own permissions, anyone's with Sys.Audit. */
    {HTTP_METHOD_GET, A "permissions", h_permissions, api, 0, 0,
     ACCESS_NEEDS_OR(P(SYS_AUDIT), 0, ACCESS_ON_ACCESS, ACCESS_IF_SELF)},
    /* Login: the credentials are the body. */
    {HTTP_METHOD_POST, A "ticket", h_ticket, api, 0, HTTP_ROUTE_NOAUTH, ACCESS_AUTHENTICATED},
  };
#undef P
#undef U
#undef A
  http_server_add_routes(s, routes, sizeof(routes) / sizeof(routes[0]));
}
