/* access_info.c: loading user.cfg, token.shadow and acl.cfg into one
 * immutable snapshot, and the questions the server asks it per request. */
#include "access/access.h"
#include "access/access_internal.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define SHADOW_MAX (1024 * 1024)

void access__json_map_free(struct core_map *m)
{
  size_t it = 0;
  void *v;
  while (core_map_next(m, &it, NULL, &v))
    core_free(v);
  core_map_free(m);
}

/* Reads a whole file; a missing one is empty. */
static int read_text(const char *path, uint8_t **data, size_t *len)
{
  int rc = core_file_read(path, CORE_CONFIG_MAX_SIZE, data, len);
  if (rc == CORE_ENOTFOUND || rc == UV_ENOENT) {
    *data = core_malloc(1);
    *len = 0;
    return 0;
  }
  return rc;
}

int access__json_map_load(const char *path, struct core_map *tokens, char *digest, char *err,
                          size_t errlen)
{
  uint8_t *data;
  size_t len;
  int rc = read_text(path, &data, &len);
  if (rc < 0) {
    snprintf(err, errlen, "%s: %s", path, core_strerror(rc));
    return rc;
  }
  if (digest)
    core_config_digest(data, len, digest);
  if (len == 0) {
    core_free(data);
    return 0;
  }
  yajl_val root;
  char why[128];
  rc = core_json_parse((const char *)data, len, &root, why, sizeof(why));
  core_free(data);
  if (rc < 0) {
    snprintf(err, errlen, "%s: %s", path, why);
    return rc;
  }
  if (!YAJL_IS_OBJECT(root)) {
    yajl_tree_free(root);
    snprintf(err, errlen, "%s: not a JSON object", path);
    return CORE_EFORMAT;
  }
  for (size_t i = 0; i < root->u.object.len; i++) {
    yajl_val v = root->u.object.values[i];
    if (YAJL_IS_STRING(v))
      core_free(core_map_put(tokens, root->u.object.keys[i], core_strdup(v->u.string)));
  }
  yajl_tree_free(root);
  return 0;
}

static int load_acl(const char *path, struct access_acl *acl, char *digest, char *err,
                    size_t errlen)
{
  uint8_t *data;
  size_t len;
  int rc = read_text(path, &data, &len);
  if (rc < 0) {
    snprintf(err, errlen, "%s: %s", path, core_strerror(rc));
    return rc;
  }
  core_config_digest(data, len, digest);
  char why[256];
  rc = access_acl_parse(acl, (const char *)data, len, why, sizeof(why));
  core_free(data);
  if (rc < 0)
    snprintf(err, errlen, "%s: %s", path, why);
  return rc;
}

int access_info_load(const char *config_dir, struct core_shmem *shmem,
                     struct access_info **out, char *err, size_t errlen)
{
  struct access_info *info = core_new(struct access_info);
  atomic_init(&info->refs, 1);
  core_config_init(&info->users);
  core_map_init(&info->user_secs);
  core_map_init(&info->token_secs);
  access_acl_init(&info->acl);
  core_map_init(&info->tokens);
  if (shmem) {
    /* Read before the files: a save that lands meanwhile moves the
     * generation past this tag, so the next check reloads. */
    info->gen_user = core_shmem_gen_load(shmem, CORE_GEN_USER);
    info->gen_token = core_shmem_gen_load(shmem, CORE_GEN_TOKEN);
    info->gen_acl = core_shmem_gen_load(shmem, CORE_GEN_ACL);
  }
  char *path = core_asprintf("%s/user.cfg", config_dir);
  char why[CORE_CONFIG_ERR_LEN] = "";
  int rc = core_config_load(path, &info->users, info->users_digest, why, sizeof(why));
  if (rc < 0)
    snprintf(err, errlen, "%s: %s", path, why[0] ? why : core_strerror(rc));
  core_free(path);
  /* Indexed once here, so the per-request checks are hash lookups however
   * many users the file holds. */
  for (size_t i = 0; rc == 0 && i < info->users.nsections; i++) {
    struct core_config_section *sec = info->users.sections[i];
    if (strcmp(sec->type, "user") == 0)
      core_map_put(&info->user_secs, sec->name, sec);
    else if (strcmp(sec->type, "token") == 0)
      core_map_put(&info->token_secs, sec->name, sec);
  }
  if (rc == 0) {
    path = core_asprintf("%s/token.shadow", config_dir);
    rc = access__json_map_load(path, &info->tokens, info->token_digest, err, errlen);
    core_free(path);
  }
  if (rc == 0) {
    path = core_asprintf("%s/acl.cfg", config_dir);
    rc = load_acl(path, &info->acl, info->acl_digest, err, errlen);
    core_free(path);
  }
  if (rc < 0) {
    access_info_unref(info);
    return rc;
  }
  *out = info;
  return 0;
}

struct access_info *access_info_ref(struct access_info *info)
{
  atomic_fetch_add(&info->refs, 1);
  return info;
}

void access_info_unref(struct access_info *info)
{
  if (info == NULL || atomic_fetch_sub(&info->refs, 1) != 1)
    return;
  core_map_free(&info->user_secs);
  core_map_free(&info->token_secs);
  core_config_free(&info->users);
  access_acl_free(&info->acl);
  access__json_map_free(&info->tokens);
  core_free(info);
}

/* enable (default true) and expire (0: never). */
static int section_active(const struct core_config_section *sec, int64_t now)
{
  const char *en = core_config_get(sec, "enable");
  if (en && (strcmp(en, "0") == 0 || strcmp(en, "false") == 0))
    return 0;
  const char *ex = core_config_get(sec, "expire");
  if (ex && ex[0]) {
    char *end;
    long long v = strtoll(ex, &end, 10);
    if (*end != '\0' || (v > 0 && v <= now))
      return 0;
  }
  return 1;
}

int access_active(const struct access_info *info, const char *authid, int64_t now)
{
  size_t ulen = access_authid_user_len(authid);
  char user[ACCESS_AUTHID_MAX];
  if (ulen >= sizeof(user))
    return 0;
  memcpy(user, authid, ulen);
  user[ulen] = '\0';
  int root = access_is_root(user);
  if (!root) {
    const struct core_config_section *u = core_map_get(&info->user_secs, user);
    if (u == NULL || !section_active(u, now))
      return 0;
  }
  if (authid[ulen] == '\0')
    return 1;
  const struct core_config_section *t = core_map_get(&info->token_secs, authid);
  if (t == NULL)
    /* Tokens made by cairnd for root@pam before user.cfg existed have no section. */
    return root;
  return section_active(t, now);
}

uint32_t access_privs(const struct access_info *info, const char *authid, const char *path,
                      uint32_t *propagating)
{
  if (access_is_root(authid)) {
    if (propagating)
      *propagating = ACCESS_PRIV_ALL;
    return ACCESS_PRIV_ALL;
  }
  uint32_t prop = 0;
  uint32_t privs = access_acl_privs(&info->acl, authid, path, &prop);
  size_t ulen = access_authid_user_len(authid);
  if (authid[ulen] == '!' && privs) {
    /* A token never exceeds its user on the same path. */
    char user[ACCESS_AUTHID_MAX];
    uint32_t uprop = ACCESS_PRIV_ALL, uprivs = ACCESS_PRIV_ALL;
    if (ulen < sizeof(user)) {
      memcpy(user, authid, ulen);
      user[ulen] = '\0';
      if (!access_is_root(user))
        uprivs = access_acl_privs(&info->acl, user, path, &uprop);
    } else {
      uprivs = uprop = 0;
    }
    privs &= uprivs;
    prop &= uprop;
  }
  if (propagating)
    *propagating = prop & privs;
  return privs;
}

static int cmp_key(const void *a, const void *b)
{
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int access__json_map_save(const char *path, const struct core_map *m)
{
  const char **keys = core_malloc((m->count + 1) * sizeof(*keys));
  size_t it = 0, n = 0;
  const char *k;
  while (core_map_next(m, &it, &k, NULL))
    keys[n++] = k;
  qsort(keys, n, sizeof(*keys), cmp_key);
  struct core_json j;
  core_json_init(&j, 1);
  core_json_obj_open(&j);
  for (size_t i = 0; i < n; i++)
    core_json_kv_str(&j, keys[i], core_map_get(m, keys[i]));
  core_json_obj_close(&j);
  size_t len;
  const char *text = core_json_text(&j, &len);
  int rc = core_file_replace(path, text, len, 0600, 1);
  core_json_free(&j);
  core_free(keys);
  return rc;
}
