/* store_access.c: authentication, the per-route privilege check, the lockout
 * and the audit log (see store_access.h for the design). */
#include "store/store_access.h"

#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "core/core_task.h"
#include "format/format_name.h"
#include "store/store_snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TTL_MS 10000 /* re-check of the files when the watch missed an edit */

struct store_access_fail {
  int64_t window_start; /* seconds */
  unsigned count;
};


struct store_access_wait {
  struct store_access_wait *next;
  store_access_ready_cb cb;
  void *arg;
};

static int64_t now_s(void)
{
  return (int64_t)time(NULL);
}

/* ---- the snapshot ---- */

static int fresh(const struct store_access *a)
{
  const struct access_info *i = a->info;
  return i && core_shmem_gen_load(a->shmem, CORE_GEN_USER) == i->gen_user &&
         core_shmem_gen_load(a->shmem, CORE_GEN_TOKEN) == i->gen_token &&
         core_shmem_gen_load(a->shmem, CORE_GEN_ACL) == i->gen_acl;
}

struct access_info *store_access_info_ref(struct store_access *a)
{
  return access_info_ref(a->info);
}

struct reload_job {
  struct core_job job;
  struct store_access *a;
  /* in */
  char *dir;
  struct core_shmem *shmem;
  /* out */
  struct access_info *info;
  char err[256];
  int rc;
};

static void reload_run(struct core_job *j)
{
  struct reload_job *job = (struct reload_job *)j;
  job->rc = access_info_load(job->dir, job->shmem, &job->info, job->err, sizeof(job->err));
}

static void set_info(struct store_access *a, struct access_info *info)
{
  if (a->info && info->gen_token != a->info->gen_token) {
    /* Secrets may have changed: forget what crypt checks proved. */
    size_t it = 0;
    void *v;
    while (core_map_next(&a->crypt_ok, &it, NULL, &v))
      core_free(v);
    core_map_free(&a->crypt_ok);
    core_map_init(&a->crypt_ok);
  }
  access_info_unref(a->info);
  a->info = info;
}

static void reload_done(struct core_job *j, int status)
{
  struct reload_job *job = (struct reload_job *)j;
  struct store_access *a = job->a;
  int rc = status < 0 ? status : job->rc;
  if (rc == 0 && !a->closing)
    set_info(a, job->info);
  else if (rc == 0)
    access_info_unref(job->info);
  else
    /* Fail closed: the old snapshot stays but is not current, so every
     * request waits for the next reload and is refused meanwhile. */
    core_error("access: cannot load the user and ACL files: %s",
               job->err[0] ? job->err : core_strerror(rc));
  a->reloading = 0;
  if (a->closing)
    rc = CORE_EABORTED; /* no snapshot to decide on any more */
  struct store_access_wait *w = a->waiters;
  a->waiters = NULL;
  a->waiters_tail = &a->waiters;
  while (w) {
    struct store_access_wait *next = w->next;
    w->cb(a, w->arg, rc);
    core_free(w);
    w = next;
  }
  core_free(job->dir);
  core_free(job);
}

static void start_reload(struct store_access *a)
{
  if (a->reloading)
    return;
  struct reload_job *job = core_new(struct reload_job);
  job->a = a;
  job->dir = core_strdup(a->config_dir);
  job->shmem = a->shmem;
  a->reloading = 1;
  int rc = core_job_submit(a->loop, &job->job, reload_run, reload_done);
  if (rc < 0) {
    job->rc = rc;
    reload_done(&job->job, rc);
  }
}

/* Calls cb at once when the snapshot is current, else after the reload. */
static void when_fresh(struct store_access *a, store_access_ready_cb cb, void *arg)
{
  if (fresh(a)) {
    cb(a, arg, 0);
    return;
  }
  struct store_access_wait *w = core_new(struct store_access_wait);
  w->cb = cb;
  w->arg = arg;
  *a->waiters_tail = w;
  a->waiters_tail = &w->next;
  start_reload(a);
}

void store_access_refresh(struct store_access *a, store_access_ready_cb cb, void *arg)
{
  when_fresh(a, cb, arg);
}

/* ---- hand edits ---- */

static const struct {
  const char *file;
  enum core_gen_slot slot;
} watched[] = {
  {"user.cfg", CORE_GEN_USER},
  {"token.shadow", CORE_GEN_TOKEN},
  {"acl.cfg", CORE_GEN_ACL},
};

struct check_job {
  struct core_job job;
  struct store_access *a;
  /* in */
  char *dir;
  struct core_shmem *shmem;
  char digest[3][CORE_CONFIG_DIGEST_LEN];
  uint64_t gen[3];
  /* out */
  int bumped;
};

static void check_run(struct core_job *j)
{
  struct check_job *job = (struct check_job *)j;
  for (int i = 0; i < 3; i++) {
    char *path = core_asprintf("%s/%s", job->dir, watched[i].file);
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = core_file_read(path, CORE_CONFIG_MAX_SIZE, &data, &len);
    core_free(path);
    char digest[CORE_CONFIG_DIGEST_LEN];
    if (rc == CORE_ENOTFOUND || rc == UV_ENOENT)
      core_config_digest("", 0, digest);
    else if (rc == 0)
      core_config_digest(data, len, digest);
    else
      continue;
    core_free(data);
    if (strcmp(digest, job->digest[i]) != 0) {
      core_shmem_gen_bump_from(job->shmem, watched[i].slot, job->gen[i]);
      job->bumped = 1;
    }
  }
}

static void check_done(struct core_job *j, int status)
{
  struct check_job *job = (struct check_job *)j;
  job->a->checking = 0;
  if (job->bumped)
    core_debug("access: user or ACL files changed on disk; reloading");
  core_free(job->dir);
  core_free(job);
}

static void start_check(struct store_access *a)
{
  if (a->checking || a->closing || !fresh(a))
    return; /* a pending reload reads the files anyway */
  struct check_job *job = core_new(struct check_job);
  job->a = a;
  job->dir = core_strdup(a->config_dir);
  job->shmem = a->shmem;
  memcpy(job->digest[0], a->info->users_digest, CORE_CONFIG_DIGEST_LEN);
  memcpy(job->digest[1], a->info->token_digest, CORE_CONFIG_DIGEST_LEN);
  memcpy(job->digest[2], a->info->acl_digest, CORE_CONFIG_DIGEST_LEN);
  job->gen[0] = a->info->gen_user;
  job->gen[1] = a->info->gen_token;
  job->gen[2] = a->info->gen_acl;
  a->checking = 1;
  if (core_job_submit(a->loop, &job->job, check_run, check_done) < 0) {
    a->checking = 0;
    core_free(job->dir);
    core_free(job);
  }
}

static void on_watch(uv_fs_event_t *h, const char *filename, int events, int status)
{
  struct store_access *a = h->data;
  if (status == 0 && filename) {
    int ours = 0;
    for (size_t i = 0; i < sizeof(watched) / sizeof(watched[0]); i++)
      ours |= strcmp(filename, watched[i].file) == 0;
    if (!ours)
      return;
  }
  start_check(a);
}

static void prune_fails(struct store_access *a, int64_t now);

static void on_ttl(uv_timer_t *t)
{
  struct store_access *a = t->data;
  start_check(a);
  /* Forgotten failures keep the lockout check at "map empty": no peer
   * address lookup per request once the attacks stop. */
  if (a->fails.count)
    prune_fails(a, now_s());
}

/* ---- lifecycle ---- */

int store_access_init(struct store_access *a, uv_loop_t *loop, const char *config_dir,
                      const char *run_dir, struct core_shmem *shmem,
                      struct store_registry *reg)
{
  memset(a, 0, sizeof(*a));
  a->loop = loop;
  a->config_dir = core_strdup(config_dir);
  a->audit_path = core_asprintf("%s/audit.log", run_dir);
  a->shmem = shmem;
  a->reg = reg;
  a->waiters_tail = &a->waiters;
  a->fail_limit = STORE_ACCESS_MAX_FAILS;
  core_map_init(&a->fails);
  core_map_init(&a->crypt_ok);
  char err[256] = "";
  int rc = access_info_load(config_dir, shmem, &a->info, err, sizeof(err));
  if (rc < 0) {
    core_error("access: %s", err[0] ? err : core_strerror(rc));
    return rc;
  }
  rc = access_key_load(config_dir, a->key);
  if (rc < 0) {
    core_error("access: cannot load or create %s/ticket.key: %s", config_dir,
               core_strerror(rc));
    return rc;
  }
  uv_fs_event_init(loop, &a->watch);
  a->watch.data = a;
  rc = uv_fs_event_start(&a->watch, on_watch, config_dir, 0);
  if (rc < 0)
    core_warn("access: cannot watch %s (%s); relying on the periodic re-check", config_dir,
              uv_strerror(rc));
  uv_timer_init(loop, &a->ttl);
  a->ttl.data = a;
  uv_timer_start(&a->ttl, on_ttl, TTL_MS, TTL_MS);
  uv_unref((uv_handle_t *)&a->ttl);
  return 0;
}

static void free_map_values(struct core_map *m)
{
  size_t it = 0;
  void *v;
  while (core_map_next(m, &it, NULL, &v))
    core_free(v);
  core_map_free(m);
}

void store_access_close(struct store_access *a)
{
  a->closing = 1;
  if (a->watch.type == UV_FS_EVENT) {
    uv_fs_event_stop(&a->watch);
    uv_close((uv_handle_t *)&a->watch, NULL);
    uv_timer_stop(&a->ttl);
    uv_close((uv_handle_t *)&a->ttl, NULL);
  }
  access_info_unref(a->info);
  a->info = NULL;
  free_map_values(&a->fails);
  free_map_values(&a->crypt_ok);
  explicit_bzero(a->key, sizeof(a->key));
  core_free(a->config_dir);
  core_free(a->audit_path);
  a->config_dir = a->audit_path = NULL;
}

/* ---- lockout ---- */

static void prune_fails(struct store_access *a, int64_t now)
{
  char **doomed = NULL;
  size_t nd = 0, it = 0;
  const char *k;
  void *v;
  while (core_map_next(&a->fails, &it, &k, &v)) {
    const struct store_access_fail *f = v;
    if (now - f->window_start >= STORE_ACCESS_WINDOW_S) {
      doomed = core_realloc(doomed, (nd + 1) * sizeof(*doomed));
      doomed[nd++] = core_strdup(k);
    }
  }
  for (size_t i = 0; i < nd; i++) {
    core_free(core_map_del(&a->fails, doomed[i]));
    core_free(doomed[i]);
  }
  core_free(doomed);
  if (a->fails.count >= STORE_ACCESS_MAX_ADDRS) {
    /* Under a flood from many addresses, forgetting is the bounded choice. */
    free_map_values(&a->fails);
    core_map_init(&a->fails);
  }
}

int store_access_locked(struct store_access *a, struct http_request *req)
{
  if (a->fails.count == 0)
    return 0;
  struct store_access_fail *f = core_map_get(&a->fails, http_req_peer(req));
  if (f == NULL || a->fail_limit == 0 || f->count < a->fail_limit)
    return 0;
  int64_t elapsed = now_s() - f->window_start;
  if (elapsed >= STORE_ACCESS_WINDOW_S)
    return 0;
  http_req_set_retry_after(req, (unsigned)(STORE_ACCESS_WINDOW_S - elapsed));
  return 1;
}

void store_access_failed(struct store_access *a, struct http_request *req)
{
  if (a->fail_limit == 0)
    return;
  int64_t now = now_s();
  const char *peer = http_req_peer(req);
  struct store_access_fail *f = core_map_get(&a->fails, peer);
  if (f == NULL) {
    if (a->fails.count >= STORE_ACCESS_MAX_ADDRS)
      prune_fails(a, now);
    f = core_new(struct store_access_fail);
    f->window_start = now;
    core_map_put(&a->fails, peer, f);
  } else if (now - f->window_start >= STORE_ACCESS_WINDOW_S) {
    f->window_start = now;
    f->count = 0;
  }
  f->count++;
  if (f->count == a->fail_limit)
    core_warn("access: %s failed to authenticate %u times; refusing it for a minute", peer,
              f->count);
}

/* ---- authentication ---- */

enum auth_outcome {
  AUTH_OK,
  AUTH_NONE,     /* no credentials at all (not counted as a failure) */
  AUTH_BAD,      /* wrong credentials */
  AUTH_CRYPT,    /* a PBS crypt token hash: verify in the pool */
};

/* The secret is after the last ':' (token ids contain none). Points into
 * `header`. */
static int split_token(const char *header, char *id, size_t len, const char **secret)
{
  const char *p;
  if (strncmp(header, "PBSAPIToken=", 12) == 0 || strncmp(header, "PBSAPIToken ", 12) == 0)
    p = header + 12;
  else
    return -1;
  const char *colon = strrchr(p, ':');
  if (colon == NULL || colon == p || (size_t)(colon - p) >= len)
    return -1;
  memcpy(id, p, (size_t)(colon - p));
  id[colon - p] = '\0';
  *secret = colon + 1;
  return 0;
}

static void secret_digest(const char *secret, char hex[65])
{
  struct core_sha256 h;
  uint8_t d[CORE_SHA256_LEN];
  core_sha256_init(&h);
  core_sha256_update(&h, "cairn-crypt-ok", 14);
  core_sha256_update(&h, secret, strlen(secret));
  core_sha256_final(&h, d);
  core_hex_encode(d, sizeof(d), hex);
}

static enum auth_outcome auth_token(struct store_access *a, const char *header, char *authid,
                                    size_t len)
{
  const char *secret;
  if (split_token(header, authid, len, &secret) < 0)
    return AUTH_BAD;
  const char *stored = core_map_get(&a->info->tokens, authid);
  if (stored == NULL)
    return AUTH_BAD;
  int ok;
  if (strncmp(stored, "sha256$", 7) == 0) {
    ok = access_token_verify(stored, secret, 0) == 1;
  } else {
    const char *proven = core_map_get(&a->crypt_ok, authid);
    if (proven == NULL)
      return AUTH_CRYPT;
    char hex[65];
    secret_digest(secret, hex);
    ok = core_ct_equal(hex, proven, 64);
  }
  return ok && access_active(a->info, authid, now_s()) ? AUTH_OK : AUTH_BAD;
}

/* The PBSAuthCookie value (percent-decoded) into buf, or -1. */
static int cookie_ticket(const char *cookies, char *buf, size_t len)
{
  const char *p = cookies;
  while (p && *p) {
    while (*p == ' ' || *p == ';')
      p++;
    const char *end = strchr(p, ';');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n > 14 && strncmp(p, "PBSAuthCookie=", 14) == 0) {
      size_t vlen = n - 14;
      if (vlen >= len)
        return -1;
      int d = http_url_decode(p + 14, vlen, buf, 0);
      if (d < 0)
        return -1;
      buf[d] = '\0';
      return 0;
    }
    p = end;
  }
  return -1;
}

static enum auth_outcome auth_ticket(struct store_access *a, struct http_request *req,
                                     const char *cookies, char *authid, size_t len)
{
  char ticket[ACCESS_TICKET_MAX];
  if (cookie_ticket(cookies, ticket, sizeof(ticket)) < 0)
    return AUTH_NONE;
  int64_t now = now_s();
  if (access_ticket_verify(a->key, ticket, now, authid, len) < 0 ||
      !access_active(a->info, authid, now))
    return AUTH_BAD;
  enum http_method m = http_req_method(req);
  if (m != HTTP_METHOD_GET && m != HTTP_METHOD_HEAD) {
    /* A cookie comes along with any cross-site request; the CSRF token
     * only with ours. */
    const char *csrf = http_req_header(req, "csrfpreventiontoken");
    if (csrf == NULL || access_csrf_verify(a->key, authid, csrf, now) < 0)
      return AUTH_BAD;
  }
  return AUTH_OK;
}

static enum auth_outcome authenticate(struct store_access *a, struct http_request *req,
                                      char *authid, size_t len)
{
  const char *h = http_req_header(req, "authorization");
  if (h)
    return auth_token(a, h, authid, len);
  const char *cookies = http_req_header(req, "cookie");
  if (cookies)
    return auth_ticket(a, req, cookies, authid, len);
  return AUTH_NONE;
}

int store_access_auth(void *ctx, struct http_request *req, char *authid, size_t len)
{
  struct store_access *a = ctx;
  if (store_access_locked(a, req))
    return HTTP_AUTH_LOCKED;
  /* No credentials at all is a 401 whatever the files say, and before any
   * body is read. */
  if (http_req_header(req, "authorization") == NULL && http_req_header(req, "cookie") == NULL)
    return HTTP_AUTH_FAIL;
  if (!fresh(a)) {
    start_reload(a);
    return HTTP_AUTH_DEFER;
  }
  switch (authenticate(a, req, authid, len)) {
  case AUTH_OK:
    return HTTP_AUTH_OK;
  case AUTH_CRYPT:
    return HTTP_AUTH_DEFER;
  case AUTH_BAD:
    store_access_failed(a, req);
    return HTTP_AUTH_FAIL;
  case AUTH_NONE:
    break;
  }
  return HTTP_AUTH_FAIL;
}

/* ---- the check ---- */

/* Builds the route's ACL path into `path`. Returns 0, or -1 after a 400. */
static int build_path(struct http_request *req, const struct http_perm *perm, char *path,
                      size_t len)
{
  const char *fixed = NULL;
  switch ((enum access_on)perm->on) {
  case ACCESS_ON_NONE: fixed = ""; break;
  case ACCESS_ON_ROOT: fixed = "/"; break;
  case ACCESS_ON_SYSTEM: fixed = "/system"; break;
  case ACCESS_ON_ACCESS: fixed = "/access"; break;
  case ACCESS_ON_ACL: fixed = "/access/acl"; break;
  case ACCESS_ON_USERS: fixed = "/access/users"; break;
  case ACCESS_ON_DATASTORES: fixed = "/datastore"; break;
  case ACCESS_ON_REMOTES: fixed = "/remote"; break;
  case ACCESS_ON_REMOTE: {
    const char *name = http_req_param(req, "name");
    if (name == NULL || format_name_datastore(name) < 0) {
      http_respond_error(req, 400, "invalid or missing remote name");
      return -1;
    }
    snprintf(path, len, "/remote/%s", name);
    return 0;
  }
  case ACCESS_ON_STORE:
  case ACCESS_ON_NS:
  case ACCESS_ON_NS_PARENT:
  case ACCESS_ON_NS_PARAM_PARENT:
    break;
  }
  if (fixed) {
    snprintf(path, len, "%s", fixed);
    return 0;
  }
  const char *store = http_req_param(req, "store");
  if (store == NULL || format_name_datastore(store) < 0) {
    http_respond_error(req, 400, "invalid or missing datastore name");
    return -1;
  }
  const char *ns = NULL;
  char parent[ACCESS_PATH_MAX] = "";
  if (perm->on == ACCESS_ON_NS || perm->on == ACCESS_ON_NS_PARENT)
    ns = http_req_param(req, "ns");
  else if (perm->on == ACCESS_ON_NS_PARAM_PARENT)
    ns = http_req_param(req, "parent");
  if (ns && ns[0] && format_name_ns(ns) < 0) {
    http_respond_error(req, 400, "invalid namespace");
    return -1;
  }
  if (ns && perm->on == ACCESS_ON_NS_PARENT) {
    snprintf(parent, sizeof(parent), "%s", ns);
    char *slash = strrchr(parent, '/');
    if (slash)
      *slash = '\0';
    else
      parent[0] = '\0';
    ns = parent;
  }
  if (access_datastore_path(path, len, store, ns) < 0) {
    http_respond_error(req, 400, "namespace too long");
    return -1;
  }
  return 0;
}

static void respond_denied(struct http_request *req, const struct http_perm *perm,
                           const char *path)
{
  char names[256], onames[256] = "";
  access_priv_names(perm->privs, " or ", names, sizeof(names));
  if (perm->owner_privs)
    access_priv_names(perm->owner_privs, " or ", onames, sizeof(onames));
  http_respond_error(req, 403, "permission check failed: %s%s%s%s on %s", names,
                     names[0] && onames[0] ? ", or " : "", onames,
                     onames[0] ? " as the owner" : "", path[0] ? path : "/");
}

/* PBS's "the user itself" rule: a {userid} parameter matches a user (not
 * its tokens); an {auth-id} parameter matches the caller exactly, and its
 * absence means the caller. */
static int is_self(struct http_request *req, const char *authid)
{
  const char *userid = http_req_param(req, "userid");
  if (userid)
    return strchr(authid, '!') == NULL && strcmp(authid, userid) == 0;
  const char *who = http_req_param(req, "auth-id");
  return who == NULL || strcmp(who, authid) == 0;
}

int store_access_owns(const char *authid, const char *owner)
{
  if (strcmp(authid, owner) == 0)
    return 1;
  /* A user owns what its tokens own (PBS's rule); a token only its own. */
  size_t ulen = strlen(authid);
  return strchr(authid, '!') == NULL && strncmp(owner, authid, ulen) == 0 &&
         owner[ulen] == '!';
}

static int task_owned(struct http_request *req)
{
  const char *upid = http_req_param(req, "upid");
  if (upid == NULL)
    return 1; /* the list: the handler shows only the caller's tasks */
  struct core_upid u;
  return core_upid_parse(upid, &u) == 0 && store_access_owns(http_req_authid(req), u.authid);
}

enum verdict {
  ALLOW,
  DENY,
  ASK_OWNER, /* the group's owner decides (pool) */
};

/* The route's rule against the caller's privileges on the built path. */
static enum verdict judge(struct store_access *a, struct http_request *req,
                          const struct http_perm *p, const char *path, uint32_t privs)
{
  const char *authid = http_req_authid(req);
  if ((p->flags & ACCESS_IF_AUTHENTICATED) || (privs & p->privs))
    return ALLOW;
  if ((p->flags & ACCESS_IF_SELF) && is_self(req, authid))
    return ALLOW;
  if ((p->flags & ACCESS_IF_ANY_BELOW) &&
      (access_is_root(authid) || access_acl_any_below(&a->info->acl, authid, path)))
    return ALLOW;
  /* Task owners need no privilege at all for their own tasks. */
  int owner_ok = p->owner_privs == 0 || (privs & p->owner_privs);
  if ((p->flags & ACCESS_IF_TASK_OWNER) && owner_ok && task_owned(req))
    return ALLOW;
  if (p->owner_privs == 0 || !(privs & p->owner_privs))
    return DENY;
  if (p->flags & (ACCESS_IF_FILTERED | ACCESS_IF_NEW_GROUP))
    return ALLOW;
  if (p->flags & ACCESS_IF_GROUP_OWNER)
    return ASK_OWNER;
  return DENY;
}

/* A request whose check waits: for a reload, a crypt token check or the
 * group's owner file. */
struct check {
  struct core_job job;
  struct store_access *a;
  struct http_request *req;
  const struct http_perm *perm;
  /* crypt token check (pool) */
  char *stored, *secret;     /* owned copies; the secret is wiped after */
  int crypt_ok;
  /* group owner (pool) */
  char path[ACCESS_PATH_MAX];
  struct store_datastore *ds;
  char *ns, *type, *id;
  char *owner;
  int rc;
};

static struct check *check_new(struct store_access *a, struct http_request *req,
                               const struct http_perm *perm)
{
  struct check *c = core_new(struct check);
  c->a = a;
  c->req = req;
  c->perm = perm;
  return c;
}

static void check_free(struct check *c)
{
  if (c->secret) {
    explicit_bzero(c->secret, strlen(c->secret));
    core_free(c->secret);
  }
  core_free(c->stored);
  core_free(c->ns);
  core_free(c->type);
  core_free(c->id);
  core_free(c->owner);
  core_free(c);
}

static void owner_run(struct core_job *j)
{
  struct check *c = (struct check *)j;
  c->rc = store_group_owner(c->ds->path, c->ns, c->type, c->id, &c->owner);
}

static void owner_done(struct core_job *j, int status)
{
  struct check *c = (struct check *)j;
  store_release(c->ds, STORE_OP_LOOKUP);
  c->ds = NULL;
  int rc = status < 0 ? status : c->rc;
  struct http_request *req = c->req;
  if (rc == 0 && c->owner && store_access_owns(http_req_authid(req), c->owner)) {
    check_free(c);
    http_req_proceed(req);
    return;
  }
  respond_denied(req, c->perm, c->path);
  check_free(c);
}

static void owner_lookup(void *arg, int err, struct store_datastore *ds)
{
  struct check *c = arg;
  if (err || ds == NULL) {
    /* No datastore, nothing owned; and 403, not 404, tells a prober nothing. */
    respond_denied(c->req, c->perm, c->path);
    check_free(c);
    return;
  }
  c->ds = ds;
  int rc = core_job_submit(c->a->loop, &c->job, owner_run, owner_done);
  if (rc < 0) {
    c->rc = rc;
    owner_done(&c->job, rc);
  }
}

static void ask_owner(struct store_access *a, struct http_request *req,
                      const struct http_perm *perm, const char *path)
{
  const char *type = http_req_param(req, "backup-type");
  const char *id = http_req_param(req, "backup-id");
  if (type == NULL || id == NULL || format_name_backup_type(type) < 0 ||
      format_name_backup_id(id) < 0) {
    /* Without a group there is nothing to own. */
    respond_denied(req, perm, path);
    return;
  }
  struct check *c = check_new(a, req, perm);
  snprintf(c->path, sizeof(c->path), "%s", path);
  const char *ns = http_req_param(req, "ns");
  c->ns = core_strdup(ns ? ns : "");
  c->type = core_strdup(type);
  c->id = core_strdup(id);
  store_lookup(a->reg, http_req_param(req, "store"), STORE_OP_LOOKUP, owner_lookup, c);
}

/* The check proper, on a current snapshot and an authenticated request. The
 * common case runs on the stack, with no allocation. */
static void decide(struct store_access *a, struct http_request *req,
                   const struct http_perm *perm)
{
  static const struct http_perm undeclared = ACCESS_UNDECLARED;
  if (perm->privs == 0 && perm->owner_privs == 0 && perm->on == 0 && perm->flags == 0)
    perm = &undeclared; /* a route without a rule: administrators only */
  char path[ACCESS_PATH_MAX];
  if (build_path(req, perm, path, sizeof(path)) < 0)
    return;
  uint32_t privs = path[0] ? access_privs(a->info, http_req_authid(req), path, NULL) : 0;
  http_req_set_privs(req, privs);
  switch (judge(a, req, perm, path, privs)) {
  case ALLOW:
    http_req_proceed(req);
    break;
  case ASK_OWNER:
    ask_owner(a, req, perm, path);
    break;
  case DENY:
    respond_denied(req, perm, path);
    break;
  }
}

static void crypt_run(struct core_job *j)
{
  struct check *c = (struct check *)j;
  c->crypt_ok = access_token_verify(c->stored, c->secret, 1) == 1;
}

static void crypt_done(struct core_job *j, int status)
{
  struct check *c = (struct check *)j;
  struct store_access *a = c->a;
  struct http_request *req = c->req;
  const struct http_perm *perm = c->perm;
  char authid[ACCESS_AUTHID_MAX];
  const char *secret = NULL;
  if (a->closing) {
    check_free(c);
    http_respond_error(req, 503, "shutting down");
    return;
  }
  int ok = status == 0 && c->crypt_ok &&
           split_token(http_req_header(req, "authorization"), authid, sizeof(authid),
                       &secret) == 0 &&
           access_active(a->info, authid, now_s());
  check_free(c);
  if (!ok) {
    store_access_failed(a, req);
    http_respond_error(req, 401, "authentication failed");
    return;
  }
  char hex[65];
  secret_digest(secret, hex);
  core_free(core_map_put(&a->crypt_ok, authid, core_strdup(hex)));
  http_req_set_authid(req, authid);
  decide(a, req, perm);
}

static void start_crypt(struct store_access *a, struct http_request *req,
                        const struct http_perm *perm)
{
  char authid[ACCESS_AUTHID_MAX];
  const char *secret = NULL, *stored = NULL;
  /* authenticate() just found both on this snapshot; checked all the same. */
  if (split_token(http_req_header(req, "authorization"), authid, sizeof(authid), &secret) < 0 ||
      (stored = core_map_get(&a->info->tokens, authid)) == NULL) {
    http_respond_error(req, 401, "authentication failed");
    return;
  }
  struct check *c = check_new(a, req, perm);
  c->stored = core_strdup(stored);
  c->secret = core_strdup(secret);
  int rc = core_job_submit(a->loop, &c->job, crypt_run, crypt_done);
  if (rc < 0)
    crypt_done(&c->job, rc);
}

/* Authentication deferred at headers time, now on a current snapshot. */
static void authenticate_late(struct store_access *a, struct http_request *req,
                              const struct http_perm *perm)
{
  if (store_access_locked(a, req)) {
    http_respond_error(req, 429, "too many failed authentication attempts");
    return;
  }
  char authid[ACCESS_AUTHID_MAX];
  switch (authenticate(a, req, authid, sizeof(authid))) {
  case AUTH_OK:
    http_req_set_authid(req, authid);
    decide(a, req, perm);
    break;
  case AUTH_CRYPT:
    start_crypt(a, req, perm);
    break;
  case AUTH_BAD:
    store_access_failed(a, req);
    http_respond_error(req, 401, "authentication failed");
    break;
  case AUTH_NONE:
    http_respond_error(req, 401, "authentication failed");
    break;
  }
}

static void resume(struct store_access *a, void *arg, int err)
{
  struct check *c = arg;
  struct http_request *req = c->req;
  const struct http_perm *perm = c->perm;
  check_free(c);
  if (err)
    http_respond_error(req, 503, "the user and ACL configuration cannot be read");
  else if (http_req_auth_deferred(req))
    authenticate_late(a, req, perm);
  else
    decide(a, req, perm);
}

void store_access_check(void *ctx, struct http_request *req, const struct http_perm *perm)
{
  struct store_access *a = ctx;
  if (!fresh(a)) {
    /* Edits since the snapshot: decide on the files as they are now. */
    when_fresh(a, resume, check_new(a, req, perm));
    return;
  }
  if (http_req_auth_deferred(req))
    authenticate_late(a, req, perm);
  else
    decide(a, req, perm);
}

/* ---- helpers for handlers ---- */

uint32_t store_access_privs(struct store_access *a, const char *authid, const char *store,
                            const char *ns)
{
  char path[ACCESS_PATH_MAX];
  if (authid == NULL || access_datastore_path(path, sizeof(path), store, ns) < 0)
    return 0;
  return access_privs(a->info, authid, path, NULL);
}

int store_access_visible(struct store_access *a, const char *authid, const char *store,
                         const char *ns)
{
  char path[ACCESS_PATH_MAX];
  if (authid == NULL || access_datastore_path(path, sizeof(path), store, ns) < 0)
    return 0;
  return access_is_root(authid) || access_acl_any_below(&a->info->acl, authid, path);
}

/* ---- audit ---- */

struct audit_job {
  struct core_job job;
  char *path; /* in */
  char *line; /* in */
};

static void audit_run(struct core_job *j)
{
  struct audit_job *job = (struct audit_job *)j;
  int fd = open(job->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0)
    return;
  core_file_write_all(fd, job->line, strlen(job->line));
  close(fd);
}

static void audit_done(struct core_job *j, int status)
{
  struct audit_job *job = (struct audit_job *)j;
  core_free(job->path);
  core_free(job->line);
  core_free(job);
}

void store_access_audit(struct store_access *a, struct http_request *req, const char *fmt, ...)
{
  char what[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof(what), fmt, ap);
  va_end(ap);
  const char *who = req ? http_req_authid(req) : NULL;
  const char *peer = req ? http_req_peer(req) : "";
  core_info("audit: %s from %s: %s", who ? who : "-", peer[0] ? peer : "-", what);
  if (a == NULL || a->audit_path == NULL)
    return;
  char stamp[32];
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
  struct audit_job *job = core_new(struct audit_job);
  job->path = core_strdup(a->audit_path);
  job->line = core_asprintf("%s %s from %s: %s\n", stamp, who ? who : "-",
                            peer[0] ? peer : "-", what);
  if (core_job_submit(a->loop, &job->job, audit_run, audit_done) < 0)
    audit_done(&job->job, 0);
}

void store_access_audit_cb(void *ctx, struct http_request *req, const char *what)
{
  store_access_audit(ctx, req, "%s", what);
}
