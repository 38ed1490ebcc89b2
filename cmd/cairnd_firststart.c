/* cairnd_firststart.c: first-start settings from the environment
 * (cairnd_firststart.h). A container starts from empty volumes and cannot
 * run cairn-admin before the server, so what an administrator would do by
 * hand on a new machine is done here, idempotently, on every start. */
#include "cmd/cairnd_firststart.h"

#include "access/access.h"
#include "core/core_alloc.h"
#include "core/core_config.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_log.h"
#include "s3/s3_config.h"
#include "store/store_dsconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRET_FILE_MAX 4096
#define MAX_PROPS 16

static int env_true(const char *name)
{
  const char *v = getenv(name);
  return v && (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes"));
}

/* The first line of a secret file; with `token`, "root@pam!root:SECRET"
 * (as root.token holds it) gives SECRET. */
static char *read_secret(const char *path, int token, int *rc)
{
  uint8_t *data = NULL;
  size_t len = 0;
  *rc = core_file_read(path, SECRET_FILE_MAX, &data, &len);
  if (*rc < 0)
    return NULL;
  char *text = core_malloc(len + 1);
  memcpy(text, data, len);
  text[len] = '\0';
  explicit_bzero(data, len);
  core_free(data);
  text[strcspn(text, "\r\n")] = '\0';
  const char *s = text;
  if (token && !strncmp(s, ACCESS_ROOT_TOKEN ":", strlen(ACCESS_ROOT_TOKEN) + 1))
    s += strlen(ACCESS_ROOT_TOKEN) + 1;
  char *secret = core_strdup(s);
  explicit_bzero(text, len);
  core_free(text);
  return secret;
}

/* 1 when token.shadow's root hash matches `secret` and root.token holds it. */
static int token_in_place(const char *config_dir, const char *token_file, const char *secret)
{
  struct access_info *info = NULL;
  char err[256];
  int same = 0;
  if (access_info_load(config_dir, NULL, &info, err, sizeof(err)) < 0)
    return 0;
  const char *stored = core_map_get(&info->tokens, ACCESS_ROOT_TOKEN);
  if (stored && access_token_verify(stored, secret, 0) == 1) {
    uint8_t *data = NULL;
    size_t len = 0;
    char *want = core_asprintf("%s:%s\n", ACCESS_ROOT_TOKEN, secret);
    if (core_file_read(token_file, SECRET_FILE_MAX, &data, &len) == 0)
      same = len == strlen(want) && memcmp(data, want, len) == 0;
    if (data) {
      explicit_bzero(data, len);
      core_free(data);
    }
    explicit_bzero(want, strlen(want));
    core_free(want);
  }
  access_info_unref(info);
  return same;
}

int cairnd_firststart_token(const char *config_dir, struct core_shmem *shmem)
{
  const char *path = getenv("CAIRN_ROOT_TOKEN_FILE");
  if (path == NULL || *path == '\0')
    return 0;
  int rc;
  char *secret = read_secret(path, 1, &rc);
  if (secret == NULL) {
    core_error("CAIRN_ROOT_TOKEN_FILE %s: %s", path, core_strerror(rc));
    return rc;
  }
  char *token_file = core_asprintf("%s/root.token", config_dir);
  char *text = NULL;
  struct access_edit e;
  memset(&e, 0, sizeof(e));
  e.config_dir = config_dir;
  e.shmem = shmem;
  rc = 0;
  if (token_in_place(config_dir, token_file, secret))
    goto out;
  rc = access_token_set_secret(&e, ACCESS_ROOT_TOKEN, secret);
  if (rc < 0)
    goto out;
  text = core_asprintf("%s:%s\n", ACCESS_ROOT_TOKEN, secret);
  rc = core_file_replace(token_file, text, strlen(text), 0600, 1);
  if (rc < 0)
    goto out;
  /* As for a token access_ensure_root() makes: the administrator's key. */
  rc = access_acl_update(&e, "/", ACCESS_ROOT_TOKEN, "Admin", 1, 0);
  if (rc == 0)
    core_info("root API token: secret taken from %s", path);
out:
  if (rc < 0)
    core_error("CAIRN_ROOT_TOKEN_FILE %s: %s", path, e.err[0] ? e.err : core_strerror(rc));
  if (text) {
    explicit_bzero(text, strlen(text));
    core_free(text);
  }
  explicit_bzero(secret, strlen(secret));
  core_free(secret);
  core_free(token_file);
  return rc;
}

/* Splits "KEY=VALUE,KEY=VALUE" (in place) into kv[]; a piece without '='
 * continues the previous value (a list such as provider-quirks). */
static int split_props(char *text, struct core_kv *kv, size_t max, size_t *n)
{
  char *save = NULL;
  for (char *t = strtok_r(text, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(t, '=');
    if (eq == NULL && *n > 0) {
      t[-1] = ','; /* undo the cut: the value runs on */
      continue;
    }
    if (eq == NULL || eq == t || *n == max)
      return CORE_ECONFIG;
    *eq = '\0';
    kv[*n].key = t;
    kv[(*n)++].value = eq + 1;
  }
  return 0;
}

/* CAIRN_S3_ENDPOINT=ID:KEY=VALUE,... with the keys from
 * CAIRN_S3_ACCESS_KEY_FILE and CAIRN_S3_SECRET_KEY_FILE: created when
 * missing, else updated, so a changed Secret or manifest applies at the
 * next start (the environment owns this endpoint). */
static int s3_endpoint(const char *config_dir, struct core_shmem *shmem)
{
  const char *spec = getenv("CAIRN_S3_ENDPOINT");
  if (spec == NULL || *spec == '\0')
    return 0;
  const char *akf = getenv("CAIRN_S3_ACCESS_KEY_FILE");
  const char *skf = getenv("CAIRN_S3_SECRET_KEY_FILE");
  const char *colon = strchr(spec, ':');
  if (colon == NULL || colon == spec || akf == NULL || skf == NULL) {
    core_error("CAIRN_S3_ENDPOINT must be ID:endpoint=HOST[,KEY=VALUE]..., with "
               "CAIRN_S3_ACCESS_KEY_FILE and CAIRN_S3_SECRET_KEY_FILE set");
    return CORE_ECONFIG;
  }
  char *id = core_strndup(spec, (size_t)(colon - spec));
  char *props = core_strdup(colon + 1);
  char *access = NULL, *secret = NULL;
  struct core_kv kv[MAX_PROPS + 2];
  size_t n = 0;
  struct s3_config_req q;
  memset(&q, 0, sizeof(q));
  int rc = split_props(props, kv, MAX_PROPS, &n);
  if (rc < 0) {
    core_error("CAIRN_S3_ENDPOINT: properties must be KEY=VALUE,KEY=VALUE (at most %d)",
               MAX_PROPS);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    if (!strcmp(kv[i].key, "access-key") || !strcmp(kv[i].key, "secret-key")) {
      core_error("CAIRN_S3_ENDPOINT: the keys come from CAIRN_S3_*_KEY_FILE only");
      rc = CORE_ECONFIG;
      goto out;
    }
  }
  const char *bad = akf;
  access = read_secret(akf, 0, &rc);
  if (access) {
    bad = skf;
    secret = read_secret(skf, 0, &rc);
  }
  if (access == NULL || secret == NULL) {
    core_error("CAIRN_S3_ENDPOINT: %s: %s", bad, core_strerror(rc));
    goto out;
  }
  kv[n].key = "access-key";
  kv[n++].value = access;
  kv[n].key = "secret-key";
  kv[n++].value = secret;
  q.config_dir = config_dir;
  q.shmem = shmem;
  q.id = id;
  q.set = kv;
  q.nset = n;
  rc = s3_config_create(&q);
  int created = rc == 0;
  if (rc == CORE_EEXISTS) {
    memset(q.err, 0, sizeof(q.err));
    rc = s3_config_update(&q);
  }
  if (rc < 0)
    core_error("CAIRN_S3_ENDPOINT: endpoint '%s': %s", id,
               q.err[0] ? q.err : core_strerror(rc));
  else
    core_info("S3 endpoint '%s' %s (CAIRN_S3_ENDPOINT)", id, created ? "created" : "updated");
out:
  if (secret) {
    explicit_bzero(secret, strlen(secret));
    core_free(secret);
  }
  if (access) {
    explicit_bzero(access, strlen(access));
    core_free(access);
  }
  core_free(props);
  core_free(id);
  return rc;
}

static int default_datastore(const char *config_dir, const char *run_dir,
                             struct core_shmem *shmem)
{
  const char *spec = getenv("CAIRN_DEFAULT_DATASTORE");
  if (spec == NULL || *spec == '\0')
    return 0;
  const char *colon = strchr(spec, ':');
  if (colon == NULL || colon == spec || colon[1] != '/') {
    core_error("CAIRN_DEFAULT_DATASTORE must be NAME:/ABSOLUTE/PATH, not '%s'", spec);
    return CORE_ECONFIG;
  }
  char *name = core_strndup(spec, (size_t)(colon - spec));
  const char *path = colon + 1;
  char *cfg_path = core_asprintf("%s/datastore.cfg", config_dir);
  char *chunks = core_asprintf("%s/.chunks", path);
  char err[CORE_CONFIG_ERR_LEN] = "";
  struct core_config cfg;
  core_config_init(&cfg);
  int rc = core_config_load(cfg_path, &cfg, NULL, err, sizeof(err));
  if (rc < 0) {
    core_error("%s: %s %s", cfg_path, core_strerror(rc), err);
    goto out;
  }
  if (core_config_find(&cfg, "datastore", name) != NULL)
    goto out; /* there: whatever its path now is, the administrator's choice wins */
  /* CAIRN_DEFAULT_DATASTORE_BACKEND: e.g. type=s3,client=ID,bucket=NAME */
  const char *backend = getenv("CAIRN_DEFAULT_DATASTORE_BACKEND");
  struct core_kv kv[2] = {{"path", path}, {"backend", backend}};
  struct store_dsconfig_req q;
  memset(&q, 0, sizeof(q));
  q.config_dir = config_dir;
  q.run_dir = run_dir;
  q.shmem = shmem;
  q.name = name;
  q.set = kv;
  q.nset = backend && *backend ? 2 : 1;
  struct stat st;
  q.reuse = stat(chunks, &st) == 0 && S_ISDIR(st.st_mode);
  /* The parent may be a fresh volume's mount point or not exist yet. */
  char *parent = core_strndup(path, (size_t)(strrchr(path, '/') - path));
  rc = parent[0] ? core_mkdir_p(parent, 0750) : 0;
  core_free(parent);
  if (rc == 0)
    rc = store_dsconfig_create(&q);
  if (rc < 0) {
    core_error("CAIRN_DEFAULT_DATASTORE: cannot create '%s' at %s: %s", name, path,
               q.err[0] ? q.err : core_strerror(rc));
  } else {
    core_info("datastore '%s' %s at %s (CAIRN_DEFAULT_DATASTORE)", name,
              q.reuse ? "adopted" : "created", path);
  }
out:
  core_config_free(&cfg);
  core_free(chunks);
  core_free(cfg_path);
  core_free(name);
  return rc;
}

/* Only when asked: stdout is usually a log that others read. */
static int print_root_token(const char *config_dir)
{
  if (!env_true("CAIRN_PRINT_ROOT_TOKEN"))
    return 0;
  char *token_file = core_asprintf("%s/root.token", config_dir);
  uint8_t *data = NULL;
  size_t len = 0;
  int rc = core_file_read(token_file, SECRET_FILE_MAX, &data, &len);
  if (rc < 0) {
    core_error("CAIRN_PRINT_ROOT_TOKEN: %s: %s", token_file, core_strerror(rc));
  } else {
    printf("root API token: %.*s", (int)len, (const char *)data);
    if (len == 0 || data[len - 1] != '\n')
      putchar('\n');
    fflush(stdout);
    explicit_bzero(data, len);
  }
  core_free(data);
  core_free(token_file);
  return rc;
}

int cairnd_firststart_finish(const char *config_dir, const char *run_dir,
                             struct core_shmem *shmem)
{
  int rc = s3_endpoint(config_dir, shmem);
  if (rc == 0)
    rc = default_datastore(config_dir, run_dir, shmem);
  if (rc == 0)
    rc = print_root_token(config_dir);
  return rc;
}
