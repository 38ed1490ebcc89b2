#include "s3/s3_config.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_parse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRETS_MODE 0600
#define CONFIG_MODE 0640

/* ---- validation (pure) --------------------------------------------------- */

static int is_alnum(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int s3_config_check_id(const char *id)
{
  if (id == NULL)
    return CORE_ENAME;
  size_t n = strlen(id);
  if (n < 3 || n > S3_ID_MAX || !(is_alnum(id[0]) || id[0] == '_'))
    return CORE_ENAME;
  for (size_t i = 1; i < n; i++)
    if (!(is_alnum(id[i]) || id[i] == '_' || id[i] == '.' || id[i] == '-'))
      return CORE_ENAME;
  return 0;
}

/* A host name, an IPv4 or bracketed IPv6 literal, or a template holding
 * {{bucket}} / {{region}}: the bytes a host name may have, plus the braces
 * of the two placeholders. The S3 client checks the expanded result again. */
static int check_endpoint(const char *v)
{
  size_t n = strlen(v);
  if (n == 0 || n > 255)
    return 0;
  for (const char *p = v; *p;) {
    if (*p == '{') {
      if (strncmp(p, "{{bucket}}", 10) == 0)
        p += 10;
      else if (strncmp(p, "{{region}}", 10) == 0)
        p += 10;
      else
        return 0;
      continue;
    }
    if (!(is_alnum(*p) || *p == '.' || *p == '-' || *p == '_' || *p == ':' || *p == '[' ||
          *p == ']'))
      return 0;
    p++;
  }
  return 1;
}

static int check_token(const char *v, size_t max, int allow_slash)
{
  size_t n = strlen(v);
  if (n == 0 || n > max)
    return 0;
  for (const char *p = v; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c <= ' ' || c >= 0x7f || (!allow_slash && c == '/'))
      return 0;
  }
  return 1;
}

/* 32 bytes as 64 hex digits, optionally in pairs separated by ':'. */
static int check_fingerprint(const char *v)
{
  int digits = 0;
  for (const char *p = v; *p; p++) {
    if (*p == ':') {
      if (digits == 0 || digits % 2 || p[1] == '\0')
        return 0;
      continue;
    }
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
      return 0;
    digits++;
  }
  return digits == 64;
}

static int check_port(const char *v, int *out)
{
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (*v == '\0' || *end || errno || n < 1 || n > 65535)
    return CORE_EINVAL;
  if (out)
    *out = (int)n;
  return 0;
}

int s3_config_check_prop(const char *key, const char *value, char *err, size_t errlen)
{
  int b;
  if (!core_config_valid_value(value)) {
    snprintf(err, errlen, "property '%s': invalid characters", key);
    return CORE_ECONFIG;
  }
  if (!strcmp(key, "endpoint")) {
    if (!check_endpoint(value)) {
      snprintf(err, errlen, "endpoint must be a host name, an IP address or a template "
                            "with {{bucket}} and {{region}}");
      return CORE_ECONFIG;
    }
  } else if (!strcmp(key, "port")) {
    if (check_port(value, NULL) < 0) {
      snprintf(err, errlen, "port must be 1..65535");
      return CORE_ECONFIG;
    }
  } else if (!strcmp(key, "region")) {
    size_t n = strlen(value);
    int ok = n >= 1 && n <= 32;
    for (const char *p = value; ok && *p; p++)
      ok = is_alnum(*p) || *p == '-' || *p == '_';
    if (!ok) {
      snprintf(err, errlen, "region must be 1..32 of [A-Za-z0-9_-]");
      return CORE_ECONFIG;
    }
  } else if (!strcmp(key, "access-key")) {
    if (!check_token(value, 256, 0)) {
      snprintf(err, errlen, "access-key must be 1..256 printable characters without blanks "
                            "or '/'");
      return CORE_ECONFIG;
    }
  } else if (!strcmp(key, "secret-key")) {
    if (!check_token(value, S3_SECRET_MAX, 1)) {
      /* Never quote the value: it is a secret even when malformed. */
      snprintf(err, errlen, "secret-key must be 1..%d printable characters without blanks",
               S3_SECRET_MAX);
      return CORE_ECONFIG;
    }
  } else if (!strcmp(key, "path-style") || !strcmp(key, "use-tls")) {
    if (core_parse_bool(value, &b) < 0) {
      snprintf(err, errlen, "%s must be a boolean", key);
      return CORE_ECONFIG;
    }
  } else if (!strcmp(key, "fingerprint")) {
    if (!check_fingerprint(value)) {
      snprintf(err, errlen, "fingerprint must be a SHA-256 digest (64 hex digits, ':' "
                            "between pairs allowed)");
      return CORE_ECONFIG;
    }
  } else if (!strcmp(key, "provider-quirks")) {
    unsigned q;
    if (s3_quirks_parse(value, &q) < 0) {
      snprintf(err, errlen, "provider-quirks: known quirks are skip-if-none-match-header "
                            "and delete-objects-via-delete-object");
      return CORE_ECONFIG;
    }
  } else {
    snprintf(err, errlen, "unknown property '%s'", key);
    return CORE_ECONFIG;
  }
  return 0;
}

void s3_endpoint_free(struct s3_endpoint *ep)
{
  core_free(ep->id);
  core_free(ep->endpoint);
  core_free(ep->region);
  core_free(ep->access_key);
  if (ep->secret_key) {
    /* Do not leave the secret in freed heap memory. */
    volatile char *p = ep->secret_key;
    while (*p)
      *p++ = '\0';
    core_free(ep->secret_key);
  }
  core_free(ep->fingerprint);
  memset(ep, 0, sizeof(*ep));
}

int s3_config_parse_section(const struct core_config_section *sec, const char *secret,
                            struct s3_endpoint *out, char *err, size_t errlen)
{
  memset(out, 0, sizeof(*out));
  out->use_tls = 1;
  if (s3_config_check_id(sec->name) < 0) {
    snprintf(err, errlen, "invalid endpoint id");
    return CORE_ECONFIG;
  }
  for (size_t i = 0; i < sec->nkv; i++) {
    const char *k = sec->kv[i].key, *v = sec->kv[i].value;
    if (!strcmp(k, "secret-key") || !strcmp(k, "comment"))
      continue; /* a secret must never be here; tolerate a stray one by ignoring it */
    int rc = s3_config_check_prop(k, v, err, errlen);
    if (rc < 0)
      goto fail;
    if (!strcmp(k, "endpoint")) {
      core_free(out->endpoint);
      out->endpoint = core_strdup(v);
    } else if (!strcmp(k, "port")) {
      check_port(v, &out->port);
    } else if (!strcmp(k, "region")) {
      core_free(out->region);
      out->region = core_strdup(v);
    } else if (!strcmp(k, "access-key")) {
      core_free(out->access_key);
      out->access_key = core_strdup(v);
    } else if (!strcmp(k, "path-style")) {
      core_parse_bool(v, &out->path_style);
    } else if (!strcmp(k, "use-tls")) {
      core_parse_bool(v, &out->use_tls);
    } else if (!strcmp(k, "fingerprint")) {
      core_free(out->fingerprint);
      out->fingerprint = core_strdup(v);
    } else if (!strcmp(k, "provider-quirks")) {
      s3_quirks_parse(v, &out->quirks);
    }
  }
  if (out->endpoint == NULL || out->access_key == NULL) {
    snprintf(err, errlen, "endpoint '%s' lacks 'endpoint' or 'access-key'", sec->name);
    goto fail;
  }
  out->id = core_strdup(sec->name);
  if (secret)
    out->secret_key = core_strdup(secret);
  return 0;
fail:
  s3_endpoint_free(out);
  return CORE_ECONFIG;
}

void s3_endpoint_client_config(const struct s3_endpoint *ep, struct s3_client_config *cfg)
{
  memset(cfg, 0, sizeof(*cfg));
  cfg->id = ep->id;
  cfg->endpoint = ep->endpoint;
  cfg->port = ep->port;
  cfg->region = ep->region;
  cfg->access_key = ep->access_key;
  cfg->secret_key = ep->secret_key;
  cfg->path_style = ep->path_style;
  cfg->use_tls = ep->use_tls;
  cfg->fingerprint = ep->fingerprint;
  cfg->quirks = ep->quirks;
}

/* ---- files ---------------------------------------------------------------- */

static char *cfg_path(const char *dir, const char *file)
{
  return core_asprintf("%s/%s", dir, file);
}

int s3_config_load(const char *config_dir, struct core_config *cfg,
                   char digest[CORE_CONFIG_DIGEST_LEN], char *err, size_t errlen)
{
  char *path = cfg_path(config_dir, S3_CONFIG_FILE);
  core_config_init(cfg);
  int rc = core_config_load(path, cfg, digest, err, errlen);
  core_free(path);
  return rc;
}

static int load_secrets(const char *config_dir, struct core_config *sec, char *err,
                        size_t errlen)
{
  char *path = cfg_path(config_dir, S3_SECRETS_FILE);
  core_config_init(sec);
  int rc = core_config_load(path, sec, NULL, err, errlen);
  core_free(path);
  return rc;
}

static const char *secret_of(const struct core_config *secrets, const char *id)
{
  const struct core_config_section *s = core_config_find(secrets, S3_SECRET_TYPE, id);
  return s ? core_config_get(s, "secret-key") : NULL;
}

int s3_config_load_endpoint(const char *config_dir, const char *id, struct s3_endpoint *out,
                            char *err, size_t errlen)
{
  struct core_config cfg, secrets;
  memset(out, 0, sizeof(*out));
  int rc = s3_config_load(config_dir, &cfg, NULL, err, errlen);
  if (rc < 0)
    return rc;
  rc = load_secrets(config_dir, &secrets, err, errlen);
  if (rc < 0) {
    core_config_free(&cfg);
    return rc;
  }
  const struct core_config_section *sec = core_config_find(&cfg, S3_SECTION_TYPE, id);
  const char *secret = secret_of(&secrets, id);
  if (sec == NULL) {
    snprintf(err, errlen, "no S3 endpoint '%s' in %s", id, S3_CONFIG_FILE);
    rc = CORE_ENOTFOUND;
  } else if (secret == NULL) {
    snprintf(err, errlen, "S3 endpoint '%s' has no secret key in %s", id, S3_SECRETS_FILE);
    rc = CORE_ENOTFOUND;
  } else {
    rc = s3_config_parse_section(sec, secret, out, err, errlen);
  }
  core_config_free(&cfg);
  core_config_free(&secrets);
  return rc;
}

/* ---- edits ----------------------------------------------------------------- */

enum edit_mode { EDIT_CREATE, EDIT_UPDATE, EDIT_REMOVE };

/* Does any datastore name this endpoint in its backend? Fills `who`. */
static int endpoint_in_use(const char *config_dir, const char *id, char *who, size_t len)
{
  struct core_config ds;
  char *path = cfg_path(config_dir, "datastore.cfg");
  core_config_init(&ds);
  int rc = core_config_load(path, &ds, NULL, NULL, 0);
  core_free(path);
  if (rc < 0)
    return rc;
  int used = 0;
  for (size_t i = 0; i < ds.nsections && !used; i++) {
    const struct core_config_section *sec = ds.sections[i];
    const char *backend = core_config_get(sec, "backend");
    char *client = NULL;
    if (strcmp(sec->type, "datastore") != 0 || backend == NULL)
      continue;
    if (core_config_prop_get(backend, "client", "type", &client) == 0 && !strcmp(client, id)) {
      used = 1;
      snprintf(who, len, "%s", sec->name);
    }
    core_free(client);
  }
  core_config_free(&ds);
  return used;
}

static int apply(struct s3_config_req *q, enum edit_mode mode, struct core_config *cfg,
                 struct core_config *secrets, int *secret_changed)
{
  struct core_config_section *sec = core_config_find(cfg, NULL, q->id);
  struct core_config_section *ssec = core_config_find(secrets, NULL, q->id);
  if (mode == EDIT_CREATE) {
    if (sec) {
      snprintf(q->err, sizeof(q->err), "S3 endpoint '%s' already exists", q->id);
      return CORE_EEXISTS;
    }
    int rc = core_config_add(cfg, S3_SECTION_TYPE, q->id, &sec);
    if (rc < 0)
      return rc;
    if (ssec) { /* left behind by a crash between the two saves */
      core_config_remove(secrets, NULL, q->id);
      ssec = NULL;
    }
  } else {
    if (sec == NULL || strcmp(sec->type, S3_SECTION_TYPE) != 0) {
      snprintf(q->err, sizeof(q->err), "no such S3 endpoint '%s'", q->id);
      return CORE_ENOTFOUND;
    }
    if (mode == EDIT_REMOVE) {
      core_config_remove(cfg, S3_SECTION_TYPE, q->id);
      if (ssec) {
        core_config_remove(secrets, NULL, q->id);
        *secret_changed = 1;
      }
      return 0;
    }
  }
  for (size_t i = 0; i < q->nset; i++) {
    const char *k = q->set[i].key, *v = q->set[i].value;
    int rc = s3_config_check_prop(k, v, q->err, sizeof(q->err));
    if (rc < 0)
      return rc;
    if (!strcmp(k, "secret-key")) {
      if (ssec == NULL && core_config_add(secrets, S3_SECRET_TYPE, q->id, &ssec) < 0)
        return CORE_ECONFIG;
      if (core_config_set(ssec, "secret-key", v) < 0)
        return CORE_ECONFIG;
      *secret_changed = 1;
      continue;
    }
    if (core_config_set(sec, k, v) < 0) {
      snprintf(q->err, sizeof(q->err), "invalid property '%s'", k);
      return CORE_ECONFIG;
    }
  }
  for (size_t i = 0; i < q->ndel; i++) {
    const char *k = q->del[i];
    if (!strcmp(k, "endpoint") || !strcmp(k, "access-key") || !strcmp(k, "secret-key")) {
      snprintf(q->err, sizeof(q->err), "'%s' cannot be deleted", k);
      return CORE_ECONFIG;
    }
    if (strcmp(k, "port") && strcmp(k, "region") && strcmp(k, "path-style") &&
        strcmp(k, "use-tls") && strcmp(k, "fingerprint") && strcmp(k, "provider-quirks")) {
      snprintf(q->err, sizeof(q->err), "unknown property '%s'", k);
      return CORE_ECONFIG;
    }
    core_config_delete(sec, k);
  }
  /* The section as it will be saved must make a usable endpoint. */
  struct s3_endpoint ep;
  const char *secret = ssec ? core_config_get(ssec, "secret-key") : NULL;
  int rc = s3_config_parse_section(sec, secret, &ep, q->err, sizeof(q->err));
  if (rc < 0)
    return rc;
  int no_secret = ep.secret_key == NULL;
  s3_endpoint_free(&ep);
  if (no_secret) {
    snprintf(q->err, sizeof(q->err), "missing property 'secret-key'");
    return CORE_ECONFIG;
  }
  return 0;
}

static int run_edit(struct s3_config_req *q, enum edit_mode mode)
{
  char *path = cfg_path(q->config_dir, S3_CONFIG_FILE);
  char *spath = cfg_path(q->config_dir, S3_SECRETS_FILE);
  char *lock = core_config_lock_path(path);
  char digest[CORE_CONFIG_DIGEST_LEN];
  struct core_config cfg, secrets;
  int fd = -1, secret_changed = 0;
  core_config_init(&cfg);
  core_config_init(&secrets);
  q->err[0] = '\0';
  int rc = s3_config_check_id(q->id);
  if (rc < 0) {
    snprintf(q->err, sizeof(q->err), "invalid S3 endpoint id (3..32 of [A-Za-z0-9_.-])");
    goto out;
  }
  if (q->digest && q->digest[0] && !core_is_digest_hex(q->digest)) {
    rc = CORE_EINVAL;
    snprintf(q->err, sizeof(q->err), "digest must be 64 lowercase hex characters");
    goto out;
  }
  if (mode == EDIT_REMOVE) {
    char who[128];
    rc = endpoint_in_use(q->config_dir, q->id, who, sizeof(who));
    if (rc > 0) {
      rc = CORE_EEXISTS;
      snprintf(q->err, sizeof(q->err), "S3 endpoint '%s' is in use by datastore '%s'", q->id,
               who);
      goto out;
    }
    if (rc < 0) {
      snprintf(q->err, sizeof(q->err), "cannot read datastore.cfg: %s", core_strerror(rc));
      goto out;
    }
  }
  rc = core_config_lock(lock, CORE_CONFIG_LOCK_TIMEOUT_MS, &fd);
  if (rc < 0) {
    snprintf(q->err, sizeof(q->err), "cannot lock %s: %s", S3_CONFIG_FILE, core_strerror(rc));
    goto out;
  }
  rc = core_config_load(path, &cfg, digest, q->err, sizeof(q->err));
  if (rc == 0)
    rc = core_config_load(spath, &secrets, NULL, q->err, sizeof(q->err));
  if (rc < 0)
    goto out;
  if (q->digest && q->digest[0] && strcmp(q->digest, digest) != 0) {
    rc = CORE_ESTALE;
    snprintf(q->err, sizeof(q->err), "detected modified configuration - file changed by other "
                                     "user? Try again (digest mismatch)");
    goto out;
  }
  rc = apply(q, mode, &cfg, &secrets, &secret_changed);
  if (rc < 0)
    goto out;
  if (secret_changed || mode == EDIT_CREATE) {
    rc = core_config_save(spath, &secrets, SECRETS_MODE, NULL);
    if (rc < 0) {
      snprintf(q->err, sizeof(q->err), "cannot save %s: %s", S3_SECRETS_FILE,
               core_strerror(rc));
      goto out;
    }
  }
  rc = core_config_save(path, &cfg, CONFIG_MODE, NULL);
  if (rc < 0) {
    snprintf(q->err, sizeof(q->err), "cannot save %s: %s", S3_CONFIG_FILE, core_strerror(rc));
    goto out;
  }
  if (q->shmem)
    core_shmem_gen_bump(q->shmem, CORE_GEN_S3);
out:
  if (fd >= 0)
    core_config_unlock(fd);
  core_config_free(&cfg);
  core_config_free(&secrets);
  core_free(path);
  core_free(spath);
  core_free(lock);
  if (rc < 0 && q->err[0] == '\0')
    snprintf(q->err, sizeof(q->err), "%s", core_strerror(rc));
  return rc < 0 ? rc : 0;
}

int s3_config_create(struct s3_config_req *q)
{
  return run_edit(q, EDIT_CREATE);
}

int s3_config_update(struct s3_config_req *q)
{
  return run_edit(q, EDIT_UPDATE);
}

int s3_config_remove(struct s3_config_req *q)
{
  return run_edit(q, EDIT_REMOVE);
}
