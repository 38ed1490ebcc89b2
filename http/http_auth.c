#include "http/http_auth.h"

#include "core/core_alloc.h"
#include "core/core_buf.h"
#include "core/core_config.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_json.h"
#include "core/core_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#define SHADOW_MAX (1024 * 1024)
#define SECRET_MAX 256

static void clear_tokens(struct core_map *m)
{
  size_t it = 0;
  void *v;
  while (core_map_next(m, &it, NULL, &v))
    core_free(v);
  core_map_free(m);
  core_map_init(m);
}

static int read_file(const char *path, struct core_buf *out)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  int rc = 0;
  char tmp[4096];
  for (;;) {
    ssize_t n = read(fd, tmp, sizeof(tmp));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      rc = -errno;
      break;
    }
    if (n == 0)
      break;
    rc = core_buf_append(out, tmp, (size_t)n);
    if (rc)
      break;
  }
  close(fd);
  return rc;
}

static int load_shadow(struct http_auth *a)
{
  struct core_buf b;
  core_buf_init(&b, SHADOW_MAX);
  int rc = read_file(a->shadow_path, &b);
  if (rc == UV_ENOENT) {
    clear_tokens(&a->tokens);
    core_buf_free(&b);
    return 0;
  }
  if (rc < 0)
    goto out;
  yajl_val root;
  char err[128];
  rc = core_json_parse(b.base ? b.base : "{}", b.len ? b.len : 2, &root, err, sizeof(err));
  if (rc < 0) {
    core_error("auth: %s: %s", a->shadow_path, err);
    goto out;
  }
  if (!YAJL_IS_OBJECT(root)) {
    yajl_tree_free(root);
    rc = CORE_EFORMAT;
    goto out;
  }
  clear_tokens(&a->tokens);
  for (size_t i = 0; i < root->u.object.len; i++) {
    yajl_val v = root->u.object.values[i];
    if (YAJL_IS_STRING(v))
      core_map_put(&a->tokens, root->u.object.keys[i], core_strdup(v->u.string));
  }
  yajl_tree_free(root);
out:
  core_buf_free(&b);
  return rc;
}

int http_auth_init(struct http_auth *a, const char *config_dir)
{
  core_map_init(&a->tokens);
  a->shadow_path = core_asprintf("%s/token.shadow", config_dir);
  return load_shadow(a);
}

void http_auth_free(struct http_auth *a)
{
  clear_tokens(&a->tokens);
  core_map_free(&a->tokens);
  core_free(a->shadow_path);
  a->shadow_path = NULL;
}

static void hash_secret(const char *salt, const char *secret, char hex[65])
{
  struct core_sha256 h;
  uint8_t d[32];
  core_sha256_init(&h);
  core_sha256_update(&h, salt, strlen(salt));
  core_sha256_update(&h, secret, strlen(secret));
  core_sha256_final(&h, d);
  core_hex_encode(d, 32, hex);
}

static int save_shadow(struct http_auth *a)
{
  struct core_json j;
  core_json_init(&j, 1);
  core_json_obj_open(&j);
  size_t it = 0;
  const char *k;
  void *v;
  while (core_map_next(&a->tokens, &it, &k, &v))
    core_json_kv_str(&j, k, v);
  core_json_obj_close(&j);
  size_t len;
  const char *text = core_json_text(&j, &len);
  int rc = core_file_replace(a->shadow_path, text, len, 0600, 1);
  core_json_free(&j);
  return rc;
}

int http_auth_create_token(struct http_auth *a, const char *tokenid, char **secret)
{
  uint8_t raw[16], salt_raw[8];
  char secret_hex[33], salt[17], hash[65];
  int rc = core_random(raw, sizeof(raw));
  if (rc == 0)
    rc = core_random(salt_raw, sizeof(salt_raw));
  if (rc)
    return rc;
  /* A UUID-shaped secret, as PBS hands out. */
  core_hex_encode(raw, sizeof(raw), secret_hex);
  char *sec = core_asprintf("%.8s-%.4s-%.4s-%.4s-%.12s", secret_hex, secret_hex + 8,
                            secret_hex + 12, secret_hex + 16, secret_hex + 20);
  core_hex_encode(salt_raw, sizeof(salt_raw), salt);
  hash_secret(salt, sec, hash);
  core_free(core_map_put(&a->tokens, tokenid, core_asprintf("sha256$%s$%s", salt, hash)));
  rc = save_shadow(a);
  if (rc) {
    core_free(sec);
    return rc;
  }
  *secret = sec;
  return 0;
}

int http_auth_ensure_root(struct http_auth *a, const char *config_dir)
{
  char *path = core_asprintf("%s/root.token", config_dir);
  int rc = 0;
  struct stat st;
  if (stat(path, &st) == 0 && core_map_get(&a->tokens, HTTP_AUTH_ROOT_TOKEN))
    goto out;
  char *secret;
  rc = http_auth_create_token(a, HTTP_AUTH_ROOT_TOKEN, &secret);
  if (rc)
    goto out;
  char *text = core_asprintf("%s:%s\n", HTTP_AUTH_ROOT_TOKEN, secret);
  rc = core_file_replace(path, text, strlen(text), 0600, 1);
  core_free(text);
  core_free(secret);
out:
  core_free(path);
  return rc;
}

int http_auth_check(void *ctx, const char *authorization, char *authid, size_t len)
{
  struct http_auth *a = ctx;
  if (authorization == NULL)
    return CORE_ENOTFOUND;
  const char *p;
  if (strncmp(authorization, "PBSAPIToken=", 12) == 0 ||
      strncmp(authorization, "PBSAPIToken ", 12) == 0)
    p = authorization + 12;
  else
    return CORE_EPARSE;
  /* The secret follows the last ':' (token ids contain none). */
  const char *colon = strrchr(p, ':');
  if (colon == NULL || colon == p || (size_t)(colon - p) >= len ||
      strlen(colon + 1) > SECRET_MAX)
    return CORE_EPARSE;
  memcpy(authid, p, (size_t)(colon - p));
  authid[colon - p] = '\0';
  const char *stored = core_map_get(&a->tokens, authid);
  if (stored == NULL || strncmp(stored, "sha256$", 7) != 0)
    return CORE_ENOTFOUND;
  const char *salt = stored + 7;
  const char *dollar = strchr(salt, '$');
  if (dollar == NULL || strlen(dollar + 1) != 64 || dollar - salt > 64)
    return CORE_EFORMAT;
  char saltbuf[65], hash[65];
  memcpy(saltbuf, salt, (size_t)(dollar - salt));
  saltbuf[dollar - salt] = '\0';
  hash_secret(saltbuf, colon + 1, hash);
  return core_ct_equal(hash, dollar + 1, 64) ? 0 : CORE_ENOTFOUND;
}
