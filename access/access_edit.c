/* access_edit.c: changing user.cfg, token.shadow, shadow.json and acl.cfg.
 *
 * The one implementation behind the access API (run in pool jobs) and
 * cairn-admin. user.cfg, token.shadow and shadow.json change together (a
 * token is a section in one and a secret in the other), so they share one
 * lock file, `.user.lck` as PBS names it; acl.cfg has its own. Each file is
 * replaced atomically and its generation bumped after the rename, so a
 * running cairnd sees the change on its next request.
 */
#include "access/access.h"
#include "access/access_internal.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

/* The user files under their lock: loaded, changed by the caller, saved. */
struct user_files {
  struct access_edit *e;
  int lock_fd;
  char *cfg_path, *token_path, *shadow_path;
  struct core_config cfg;
  struct core_map tokens;
  struct core_map shadow;
  int cfg_dirty, tokens_dirty, shadow_dirty;
};

static const char *const user_props[] = {"comment", "enable",   "expire",
                                         "firstname", "lastname", "email"};
static const char *const token_props[] = {"comment", "enable", "expire"};

static int prop_known(const char *key, int token)
{
  size_t n = token ? 3 : 6;
  const char *const *list = token ? token_props : user_props;
  for (size_t i = 0; i < n; i++)
    if (strcmp(list[i], key) == 0)
      return 1;
  return 0;
}

static int check_prop(const char *key, const char *value, int token, char *err,
                      size_t errlen)
{
  if (!prop_known(key, token)) {
    snprintf(err, errlen, "unknown property '%s'", key);
    return CORE_ECONFIG;
  }
  if (!core_config_valid_value(value)) {
    snprintf(err, errlen, "property '%s': invalid characters", key);
    return CORE_ECONFIG;
  }
  if (strcmp(key, "enable") == 0 && strcmp(value, "0") && strcmp(value, "1") &&
      strcmp(value, "true") && strcmp(value, "false")) {
    snprintf(err, errlen, "enable: expected a boolean");
    return CORE_ECONFIG;
  }
  if (strcmp(key, "expire") == 0) {
    char *end;
    long long v = strtoll(value, &end, 10);
    if (value[0] == '\0' || *end != '\0' || v < 0) {
      snprintf(err, errlen, "expire: expected seconds since the epoch (0: never)");
      return CORE_ECONFIG;
    }
  }
  return 0;
}

int access_user_check_prop(const char *key, const char *value, char *err, size_t errlen)
{
  return check_prop(key, value, 0, err, errlen);
}

static int apply_props(struct core_config_section *sec, const struct core_kv *set,
                       size_t nset, const char *const *del, size_t ndel, int token, char *err,
                       size_t errlen)
{
  for (size_t i = 0; i < nset; i++) {
    int rc = check_prop(set[i].key, set[i].value, token, err, errlen);
    if (rc)
      return rc;
  }
  for (size_t i = 0; i < ndel; i++)
    if (!prop_known(del[i], token)) {
      snprintf(err, errlen, "unknown property '%s'", del[i]);
      return CORE_ECONFIG;
    }
  for (size_t i = 0; i < nset; i++)
    core_config_set(sec, set[i].key, set[i].value);
  for (size_t i = 0; i < ndel; i++)
    core_config_delete(sec, del[i]);
  return 0;
}

static int uf_open(struct user_files *u, struct access_edit *e)
{
  memset(u, 0, sizeof(*u));
  u->e = e;
  u->lock_fd = -1;
  e->err[0] = '\0';
  u->cfg_path = core_asprintf("%s/user.cfg", e->config_dir);
  u->token_path = core_asprintf("%s/token.shadow", e->config_dir);
  u->shadow_path = core_asprintf("%s/shadow.json", e->config_dir);
  core_config_init(&u->cfg);
  core_map_init(&u->tokens);
  core_map_init(&u->shadow);
  char *lock = core_asprintf("%s/.user.lck", e->config_dir);
  int rc = core_config_lock(lock, CORE_CONFIG_LOCK_TIMEOUT_MS, &u->lock_fd);
  core_free(lock);
  if (rc < 0) {
    snprintf(e->err, sizeof(e->err), "cannot lock the user files: %s", core_strerror(rc));
    return rc;
  }
  char digest[CORE_CONFIG_DIGEST_LEN];
  rc = core_config_load(u->cfg_path, &u->cfg, digest, e->err, sizeof(e->err));
  if (rc == 0 && e->digest && e->digest[0] && strcmp(e->digest, digest) != 0) {
    snprintf(e->err, sizeof(e->err), "user.cfg changed since it was read (digest mismatch)");
    rc = CORE_ESTALE;
  }
  if (rc == 0)
    rc = access__json_map_load(u->token_path, &u->tokens, NULL, e->err, sizeof(e->err));
  if (rc == 0)
    rc = access__json_map_load(u->shadow_path, &u->shadow, NULL, e->err, sizeof(e->err));
  return rc;
}

/* Saves what changed (token.shadow before user.cfg: a token section never
 * exists without its secret), bumps generations, unlocks, frees. */
static int uf_close(struct user_files *u, int rc)
{
  struct access_edit *e = u->e;
  if (rc == 0 && u->shadow_dirty)
    rc = access__json_map_save(u->shadow_path, &u->shadow);
  if (rc == 0 && u->tokens_dirty) {
    rc = access__json_map_save(u->token_path, &u->tokens);
    if (rc == 0 && e->shmem)
      core_shmem_gen_bump(e->shmem, CORE_GEN_TOKEN);
  }
  if (rc == 0 && u->cfg_dirty)
    rc = core_config_save(u->cfg_path, &u->cfg, CORE_CONFIG_DEFAULT_MODE, NULL);
  if (rc == 0 && (u->cfg_dirty || u->shadow_dirty) && e->shmem)
    core_shmem_gen_bump(e->shmem, CORE_GEN_USER);
  if (rc < 0 && e->err[0] == '\0')
    snprintf(e->err, sizeof(e->err), "%s", core_strerror(rc));
  if (u->lock_fd >= 0)
    core_config_unlock(u->lock_fd);
  core_config_free(&u->cfg);
  access__json_map_free(&u->tokens);
  access__json_map_free(&u->shadow);
  core_free(u->cfg_path);
  core_free(u->token_path);
  core_free(u->shadow_path);
  return rc;
}

static int realm_is_pbs(const char *userid)
{
  const char *at = strrchr(userid, '@');
  return at && strcmp(at + 1, "pbs") == 0;
}

static int set_password(struct user_files *u, const char *userid, const char *password)
{
  if (!realm_is_pbs(userid)) {
    snprintf(u->e->err, sizeof(u->e->err), "only @pbs users have a password in Cairn");
    return CORE_EINVAL;
  }
  if (password[0] == '\0' || strlen(password) > 1024) {
    snprintf(u->e->err, sizeof(u->e->err), "a password is 1 to 1024 bytes");
    return CORE_EINVAL;
  }
  char *hash;
  int rc = access_password_hash(password, &hash);
  if (rc)
    return rc;
  core_free(core_map_put(&u->shadow, userid, hash));
  u->shadow_dirty = 1;
  return 0;
}

int access_user_create(struct access_edit *e, const char *userid, const struct core_kv *set,
                       size_t nset, const char *password)
{
  if (!access_userid_valid(userid)) {
    snprintf(e->err, sizeof(e->err), "invalid user id '%s'", userid);
    return CORE_ENAME;
  }
  struct user_files u;
  int rc = uf_open(&u, e);
  if (rc == 0 && (access_is_root(userid) || core_config_find(&u.cfg, NULL, userid))) {
    snprintf(e->err, sizeof(e->err), "user '%s' already exists", userid);
    rc = CORE_EEXISTS;
  }
  struct core_config_section *sec = NULL;
  if (rc == 0)
    rc = core_config_add(&u.cfg, "user", userid, &sec);
  if (rc == 0)
    rc = apply_props(sec, set, nset, NULL, 0, 0, e->err, sizeof(e->err));
  if (rc == 0 && password)
    rc = set_password(&u, userid, password);
  u.cfg_dirty = 1;
  return uf_close(&u, rc);
}

int access_user_update(struct access_edit *e, const char *userid, const struct core_kv *set,
                       size_t nset, const char *const *del, size_t ndel,
                       const char *password)
{
  struct user_files u;
  int rc = uf_open(&u, e);
  struct core_config_section *sec = NULL;
  if (rc == 0) {
    sec = core_config_find(&u.cfg, "user", userid);
    if (sec == NULL) {
      snprintf(e->err, sizeof(e->err), "no such user '%s'", userid);
      rc = CORE_ENOTFOUND;
    }
  }
  if (rc == 0 && (nset || ndel)) {
    rc = apply_props(sec, set, nset, del, ndel, 0, e->err, sizeof(e->err));
    u.cfg_dirty = 1;
  }
  if (rc == 0 && password)
    rc = set_password(&u, userid, password);
  return uf_close(&u, rc);
}

/* Removes every token section and secret of `userid`. */
static void drop_tokens(struct user_files *u, const char *userid)
{
  size_t ulen = strlen(userid);
  for (size_t i = u->cfg.nsections; i-- > 0;) {
    const struct core_config_section *s = u->cfg.sections[i];
    if (strcmp(s->type, "token") == 0 && strncmp(s->name, userid, ulen) == 0 &&
        s->name[ulen] == '!') {
      core_config_remove(&u->cfg, "token", s->name);
      u->cfg_dirty = 1;
    }
  }
  char **doomed = NULL;
  size_t nd = 0, it = 0;
  const char *k;
  while (core_map_next(&u->tokens, &it, &k, NULL))
    if (strncmp(k, userid, ulen) == 0 && k[ulen] == '!') {
      doomed = core_realloc(doomed, (nd + 1) * sizeof(*doomed));
      doomed[nd++] = core_strdup(k);
    }
  for (size_t i = 0; i < nd; i++) {
    core_free(core_map_del(&u->tokens, doomed[i]));
    core_free(doomed[i]);
    u->tokens_dirty = 1;
  }
  core_free(doomed);
}

static int acl_edit(struct access_edit *e, int (*fn)(struct access_acl *, void *), void *arg);

static int drop_subject(struct access_acl *acl, void *arg)
{
  access_acl_remove_subject(acl, arg, 1);
  return 0;
}

int access_user_remove(struct access_edit *e, const char *userid)
{
  if (access_is_root(userid)) {
    snprintf(e->err, sizeof(e->err), "root@pam cannot be removed");
    return CORE_EINVAL;
  }
  struct user_files u;
  int rc = uf_open(&u, e);
  if (rc == 0 && core_config_remove(&u.cfg, "user", userid) < 0) {
    snprintf(e->err, sizeof(e->err), "no such user '%s'", userid);
    rc = CORE_ENOTFOUND;
  }
  if (rc == 0) {
    u.cfg_dirty = 1;
    drop_tokens(&u, userid);
    void *old = core_map_del(&u.shadow, userid);
    if (old) {
      core_free(old);
      u.shadow_dirty = 1;
    }
  }
  rc = uf_close(&u, rc);
  if (rc == 0) {
    const char *saved = e->digest;
    e->digest = NULL; /* the digest was user.cfg's */
    rc = acl_edit(e, drop_subject, (void *)userid);
    e->digest = saved;
  }
  return rc;
}

/* The user of a token must exist (root@pam always does). */
static int token_user_exists(struct user_files *u, const char *tokenid)
{
  char user[ACCESS_AUTHID_MAX];
  size_t ulen = access_authid_user_len(tokenid);
  memcpy(user, tokenid, ulen);
  user[ulen] = '\0';
  return access_is_root(user) || core_config_find(&u->cfg, "user", user) != NULL;
}

/* Opens the user files for a change to `tokenid`, whose user must exist
 * (creating a token and setting its secret alike). On failure the files are
 * still open: the caller's common exit closes them. */
static int uf_open_for_token(struct user_files *u, struct access_edit *e, const char *tokenid)
{
  int rc = uf_open(u, e);
  if (rc == 0 && !token_user_exists(u, tokenid)) {
    snprintf(e->err, sizeof(e->err), "no such user for token '%s'", tokenid);
    rc = CORE_ENOTFOUND;
  }
  return rc;
}

int access_token_create(struct access_edit *e, const char *tokenid, const struct core_kv *set,
                        size_t nset, int regenerate, char **secret)
{
  if (!access_tokenid_valid(tokenid)) {
    snprintf(e->err, sizeof(e->err), "invalid token id '%s'", tokenid);
    return CORE_ENAME;
  }
  struct user_files u;
  int rc = uf_open_for_token(&u, e, tokenid);
  struct core_config_section *sec = NULL;
  if (rc == 0) {
    sec = core_config_find(&u.cfg, "token", tokenid);
    /* A legacy root token has a secret but no section. */
    int exists = sec != NULL || core_map_get(&u.tokens, tokenid) != NULL;
    if (exists && !regenerate) {
      snprintf(e->err, sizeof(e->err), "token '%s' already exists", tokenid);
      rc = CORE_EEXISTS;
    } else if (!exists && regenerate) {
      snprintf(e->err, sizeof(e->err), "no such token '%s'", tokenid);
      rc = CORE_ENOTFOUND;
    }
  }
  if (rc == 0 && sec == NULL) {
    rc = core_config_add(&u.cfg, "token", tokenid, &sec);
    u.cfg_dirty = 1;
  }
  if (rc == 0 && nset) {
    rc = apply_props(sec, set, nset, NULL, 0, 1, e->err, sizeof(e->err));
    u.cfg_dirty = 1;
  }
  char *sec_text = NULL, *stored = NULL;
  if (rc == 0)
    rc = access_token_new(&sec_text, &stored);
  if (rc == 0) {
    core_free(core_map_put(&u.tokens, tokenid, stored));
    u.tokens_dirty = 1;
  }
  rc = uf_close(&u, rc);
  if (rc == 0)
    *secret = sec_text;
  else if (sec_text)
    core_free(sec_text);
  return rc;
}

int access_token_set_secret(struct access_edit *e, const char *tokenid, const char *secret)
{
  if (!access_tokenid_valid(tokenid)) {
    snprintf(e->err, sizeof(e->err), "invalid token id '%s'", tokenid);
    return CORE_ENAME;
  }
  size_t n = strlen(secret);
  int ok = n >= 16 && n <= 256;
  for (size_t i = 0; ok && i < n; i++)
    ok = secret[i] > ' ' && secret[i] < 0x7f && secret[i] != ':';
  if (!ok) {
    snprintf(e->err, sizeof(e->err),
             "a token secret is 16 to 256 printable ASCII characters without spaces or ':'");
    return CORE_EINVAL;
  }
  struct user_files u;
  int rc = uf_open_for_token(&u, e, tokenid);
  struct core_config_section *sec = NULL;
  if (rc == 0 && core_config_find(&u.cfg, "token", tokenid) == NULL) {
    rc = core_config_add(&u.cfg, "token", tokenid, &sec);
    u.cfg_dirty = 1;
  }
  char *stored = NULL;
  if (rc == 0)
    rc = access_token_hash(secret, &stored);
  if (rc == 0) {
    core_free(core_map_put(&u.tokens, tokenid, stored));
    u.tokens_dirty = 1;
  }
  return uf_close(&u, rc);
}

int access_token_update(struct access_edit *e, const char *tokenid, const struct core_kv *set,
                        size_t nset, const char *const *del, size_t ndel)
{
  struct user_files u;
  int rc = uf_open(&u, e);
  struct core_config_section *sec = NULL;
  if (rc == 0) {
    sec = core_config_find(&u.cfg, "token", tokenid);
    if (sec == NULL) {
      snprintf(e->err, sizeof(e->err), "no such token '%s'", tokenid);
      rc = CORE_ENOTFOUND;
    }
  }
  if (rc == 0) {
    rc = apply_props(sec, set, nset, del, ndel, 1, e->err, sizeof(e->err));
    u.cfg_dirty = 1;
  }
  return uf_close(&u, rc);
}

static int drop_token_entries(struct access_acl *acl, void *arg)
{
  access_acl_remove_subject(acl, arg, 0);
  return 0;
}

int access_token_remove(struct access_edit *e, const char *tokenid)
{
  struct user_files u;
  int rc = uf_open(&u, e);
  int found = 0;
  if (rc == 0) {
    if (core_config_remove(&u.cfg, "token", tokenid) == 0) {
      found = 1;
      u.cfg_dirty = 1;
    }
    void *old = core_map_del(&u.tokens, tokenid);
    if (old) {
      core_free(old);
      found = 1;
      u.tokens_dirty = 1;
    }
    if (!found) {
      snprintf(e->err, sizeof(e->err), "no such token '%s'", tokenid);
      rc = CORE_ENOTFOUND;
    }
  }
  rc = uf_close(&u, rc);
  if (rc == 0) {
    const char *saved = e->digest;
    e->digest = NULL;
    rc = acl_edit(e, drop_token_entries, (void *)tokenid);
    e->digest = saved;
  }
  return rc;
}

int access_password_store(struct access_edit *e, const char *userid, const char *hash)
{
  struct user_files u;
  int rc = uf_open(&u, e);
  if (rc == 0) {
    core_free(core_map_put(&u.shadow, userid, core_strdup(hash)));
    u.shadow_dirty = 1;
  }
  return uf_close(&u, rc);
}

int access_password_lookup(const char *config_dir, const char *userid, char **hash)
{
  char *path = core_asprintf("%s/shadow.json", config_dir);
  struct core_map m;
  core_map_init(&m);
  char err[64];
  int rc = access__json_map_load(path, &m, NULL, err, sizeof(err));
  core_free(path);
  if (rc == 0) {
    const char *h = core_map_get(&m, userid);
    if (h)
      *hash = core_strdup(h);
    else
      rc = CORE_ENOTFOUND;
  }
  access__json_map_free(&m);
  return rc;
}

/* ---- acl.cfg ---- */

static int acl_edit(struct access_edit *e, int (*fn)(struct access_acl *, void *), void *arg)
{
  char *path = core_asprintf("%s/acl.cfg", e->config_dir);
  char *lock = core_config_lock_path(path);
  int fd = -1;
  uint8_t *data = NULL;
  size_t len = 0;
  struct access_acl acl;
  access_acl_init(&acl);
  struct core_buf out;
  core_buf_init(&out, CORE_CONFIG_MAX_SIZE);
  int rc = core_config_lock(lock, CORE_CONFIG_LOCK_TIMEOUT_MS, &fd);
  if (rc < 0) {
    snprintf(e->err, sizeof(e->err), "cannot lock acl.cfg: %s", core_strerror(rc));
    goto out;
  }
  rc = core_file_read(path, CORE_CONFIG_MAX_SIZE, &data, &len);
  if (rc == CORE_ENOTFOUND || rc == UV_ENOENT) {
    data = core_malloc(1);
    len = 0;
    rc = 0;
  }
  if (rc < 0)
    goto out;
  char digest[CORE_CONFIG_DIGEST_LEN];
  core_config_digest(data, len, digest);
  if (e->digest && e->digest[0] && strcmp(e->digest, digest) != 0) {
    snprintf(e->err, sizeof(e->err), "acl.cfg changed since it was read (digest mismatch)");
    rc = CORE_ESTALE;
    goto out;
  }
  rc = access_acl_parse(&acl, (const char *)data, len, e->err, sizeof(e->err));
  if (rc < 0)
    goto out;
  rc = fn(&acl, arg);
  if (rc < 0)
    goto out;
  rc = access_acl_write(&acl, &out);
  if (rc < 0)
    goto out;
  rc = core_file_replace(path, out.base ? out.base : "", out.len, CORE_CONFIG_DEFAULT_MODE, 1);
  if (rc == 0 && e->shmem)
    core_shmem_gen_bump(e->shmem, CORE_GEN_ACL);
out:
  if (rc < 0 && e->err[0] == '\0')
    snprintf(e->err, sizeof(e->err), "acl.cfg: %s", core_strerror(rc));
  if (fd >= 0)
    core_config_unlock(fd);
  core_buf_free(&out);
  access_acl_free(&acl);
  core_free(data);
  core_free(lock);
  core_free(path);
  return rc;
}

struct acl_change {
  const char *path, *authid;
  int role, propagate, del;
};

static int apply_acl_change(struct access_acl *acl, void *arg)
{
  struct acl_change *c = arg;
  return access_acl_set(acl, c->path, c->authid, c->role, c->propagate, c->del);
}

int access_acl_update(struct access_edit *e, const char *path, const char *authid,
                      const char *role, int propagate, int del)
{
  e->err[0] = '\0';
  struct acl_change c = {path, authid, access_role_lookup(role), propagate, del};
  if (c.role < 0) {
    snprintf(e->err, sizeof(e->err), "unknown role '%s'", role);
    return CORE_EINVAL;
  }
  if (access_path_valid(path) < 0) {
    snprintf(e->err, sizeof(e->err), "invalid ACL path '%s'", path);
    return CORE_EINVAL;
  }
  if (!access_authid_valid(authid)) {
    snprintf(e->err, sizeof(e->err), "invalid auth id '%s'", authid);
    return CORE_ENAME;
  }
  if (!del && !access_is_root(authid)) {
    /* Only known subjects get entries (a typo would otherwise grant nothing,
     * silently, or something to a user created later). */
    struct access_info *info;
    int rc = access_info_load(e->config_dir, NULL, &info, e->err, sizeof(e->err));
    if (rc < 0)
      return rc;
    int known = strchr(authid, '!')
                    ? core_config_find(&info->users, "token", authid) != NULL ||
                          core_map_get(&info->tokens, authid) != NULL
                    : core_config_find(&info->users, "user", authid) != NULL;
    access_info_unref(info);
    if (!known) {
      snprintf(e->err, sizeof(e->err), "no such user or token '%s'", authid);
      return CORE_ENOTFOUND;
    }
  }
  return acl_edit(e, apply_acl_change, &c);
}

int access_ensure_root(const char *config_dir, struct core_shmem *shmem)
{
  char *token_file = core_asprintf("%s/root.token", config_dir);
  char *acl_path = core_asprintf("%s/acl.cfg", config_dir);
  struct access_edit e;
  memset(&e, 0, sizeof(e));
  e.config_dir = config_dir;
  e.shmem = shmem;
  struct access_info *info = NULL;
  int rc = access_info_load(config_dir, NULL, &info, e.err, sizeof(e.err));
  if (rc < 0)
    goto out;
  int have_secret = core_map_get(&info->tokens, ACCESS_ROOT_TOKEN) != NULL;
  struct stat st;
  int created = 0;
  if (stat(token_file, &st) != 0 || !have_secret) {
    char *secret = NULL;
    rc = access_token_create(&e, ACCESS_ROOT_TOKEN, NULL, 0, have_secret, &secret);
    if (rc == CORE_EEXISTS) /* a section without a secret: give it one */
      rc = access_token_create(&e, ACCESS_ROOT_TOKEN, NULL, 0, 1, &secret);
    if (rc < 0)
      goto out;
    char *text = core_asprintf("%s:%s\n", ACCESS_ROOT_TOKEN, secret);
    rc = core_file_replace(token_file, text, strlen(text), 0600, 1);
    explicit_bzero(text, strlen(text));
    explicit_bzero(secret, strlen(secret));
    core_free(text);
    core_free(secret);
    if (rc < 0)
      goto out;
    created = 1;
  }
  if (created || stat(acl_path, &st) != 0)
    rc = access_acl_update(&e, "/", ACCESS_ROOT_TOKEN, "Admin", 1, 0);
out:
  if (rc < 0)
    core_error("root token: %s", e.err[0] ? e.err : core_strerror(rc));
  access_info_unref(info);
  core_free(token_file);
  core_free(acl_path);
  return rc;
}
