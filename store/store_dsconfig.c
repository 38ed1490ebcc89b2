#include "store/store_dsconfig.h"

#include "core/core_alloc.h"
#include "core/core_calendar.h"
#include "core/core_config.h"
#include "core/core_error.h"
#include "core/core_parse.h"
#include "core/core_utf8.h"
#include "store/store_s3.h"
#include "store/store_chunk.h"
#include "store/store_dspath.h"
#include "format/format_name.h"
#include "store/store_path.h"
#include "store/store_registry.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Properties a datastore section may carry (PBS's names). */
static const char *const known_props[] = {
  "path", "comment", "gc-schedule", "prune-schedule", "keep-last", "keep-hourly",
  "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly", "verify-new", "notify",
  "notify-user", "notification-mode", "tuning", "maintenance-mode", "backing-device",
  "backend", "max-cache-size",
  "overwrite-in-use", /* create only: take over an S3 prefix another server used; not saved */
};

static int is_known(const char *key)
{
  for (size_t i = 0; i < sizeof(known_props) / sizeof(known_props[0]); i++)
    if (strcmp(key, known_props[i]) == 0)
      return 1;
  return 0;
}

int store_dsconfig_check_prop(const char *key, const char *value, char *err, size_t errlen)
{
  char q[80];
  int b;
  if (!is_known(key)) {
    snprintf(err, errlen, "unknown property '%s'", core_utf8_quote(key, q, sizeof(q)));
    return CORE_ECONFIG;
  }
  if (!core_utf8_valid(value, strlen(value)) || !core_config_valid_value(value)) {
    snprintf(err, errlen, "property '%s': invalid characters", key);
    return CORE_ECONFIG;
  }
  uint64_t n;
  if (!strncmp(key, "keep-", 5) && (core_parse_u64(value, &n) < 0 || n < 1 || n > 1000000)) {
    snprintf(err, errlen, "property '%s' must be a positive integer", key);
    return CORE_ECONFIG;
  }
  if ((!strcmp(key, "verify-new") || !strcmp(key, "overwrite-in-use")) &&
      core_parse_bool(value, &b) < 0) {
    snprintf(err, errlen, "property '%s' must be a boolean (1/0, true/false, yes/no, on/off)",
             key);
    return CORE_ECONFIG;
  }
  /* The full checks need the file system: see check_new_path. */
  if (!strcmp(key, "path") && (value[0] != '/' || strlen(value) > 4000)) {
    snprintf(err, errlen, "path must be an absolute path");
    return CORE_ECONFIG;
  }
  if (!strcmp(key, "gc-schedule") || !strcmp(key, "prune-schedule")) {
    struct core_calendar cal;
    char why[128];
    if (core_calendar_parse(value, &cal, why, sizeof(why)) < 0) {
      snprintf(err, errlen, "%s: %s", key, why);
      return CORE_ECONFIG;
    }
  }
  if (!strcmp(key, "comment") && strlen(value) > 1024) {
    snprintf(err, errlen, "comment too long");
    return CORE_ECONFIG;
  }
  return 0;
}

/* Validates a section as it would be after the change. */
static int check_section(const struct core_config_section *sec, char *err, size_t errlen)
{
  for (size_t i = 0; i < sec->nkv; i++) {
    int rc = store_dsconfig_check_prop(sec->kv[i].key, sec->kv[i].value, err, errlen);
    if (rc)
      return rc;
  }
  struct store_datastore tmp;
  memset(&tmp, 0, sizeof(tmp));
  int rc = store_registry_parse_settings(sec, &tmp, err, errlen);
  core_free(tmp.maint_msg);
  return rc;
}

struct edit_arg {
  struct store_dsconfig_req *q;
  int mode; /* 0 create, 1 update, 2 remove */
  /* create: what make_store made, so a failed save can take it back */
  char base[STORE_PATH_MAX]; /* the normalised path */
  int made_base;             /* the directory itself */
  int made_layout;           /* .chunks and .lock in it */
};

/* A message in q->err; paths are long (PATH_MAX) and q->err is not, and a
 * cut path is still a useful message. */
static void set_err(struct store_dsconfig_req *q, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_err(struct store_dsconfig_req *q, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(q->err, sizeof(q->err), fmt, ap);
  va_end(ap);
}

/* Refuses `base` (normalised) when it is a system directory or shares a tree
 * with the config or run directory or another datastore of `cfg`. */
static int check_placement(struct store_dsconfig_req *q, const struct core_config *cfg,
                           const struct core_config_section *self, const char *base)
{
  char other[STORE_PATH_MAX];
  if (store_dspath_denied(base)) {
    set_err(q, "path %s is the root or a system directory", base);
    return CORE_ECONFIG;
  }
  const char *dirs[] = {q->config_dir, q->run_dir};
  const char *what[] = {"config", "run"};
  for (size_t i = 0; i < 2; i++) {
    if (dirs[i] == NULL || store_dspath_normalize(dirs[i], other, sizeof(other)) < 0)
      continue;
    if (store_dspath_overlap(base, other)) {
      set_err(q, "path %s overlaps the %s directory %s", base, what[i], other);
      return CORE_ECONFIG;
    }
  }
  for (size_t i = 0; i < cfg->nsections; i++) {
    const struct core_config_section *sec = cfg->sections[i];
    const char *p = core_config_get(sec, "path");
    if (sec == self || strcmp(sec->type, "datastore") != 0 || p == NULL)
      continue;
    /* A path that cannot be resolved (gone, unreadable) is compared as
     * written: refusing too much is the safe side. */
    const char *cmp = store_dspath_normalize(p, other, sizeof(other)) == 0 ? other : p;
    if (store_dspath_overlap(base, cmp)) {
      set_err(q, "path %s overlaps datastore '%s' at %s", base, sec->name, cmp);
      return CORE_ECONFIG;
    }
  }
  return 0;
}

/* Makes or adopts the chunk store of the new section, the last step of a
 * create, so nothing is made before every check passed; saves the path in
 * its normal form, the one that was checked. */
static int make_store(struct edit_arg *a, const struct core_config *cfg,
                      struct core_config_section *sec)
{
  struct store_dsconfig_req *q = a->q;
  const char *path = core_config_get(sec, "path");
  int rc = store_dspath_normalize(path, a->base, sizeof(a->base));
  if (rc < 0) {
    set_err(q, "invalid path %s: %s", path, core_strerror(rc));
    return rc == CORE_ETOOBIG || rc == CORE_EINVAL ? CORE_ECONFIG : rc;
  }
  rc = check_placement(q, cfg, sec, a->base);
  if (rc < 0)
    return rc;
  int state = store_dspath_state(a->base);
  if (state == CORE_EFORMAT) {
    set_err(q, "path %s is not a directory", a->base);
    return CORE_ECONFIG;
  }
  if (state < 0) {
    set_err(q, "cannot read %s: %s", a->base, core_strerror(state));
    return state;
  }
  if (state == STORE_DSPATH_CHUNKSTORE && !q->reuse) {
    set_err(q, "%s already holds a chunk store (set reuse-datastore to adopt it)", a->base);
    return CORE_EEXISTS;
  }
  if (state == STORE_DSPATH_OTHER && !q->reuse) {
    set_err(q, "%s is not empty (set reuse-datastore to use it anyway)", a->base);
    return CORE_ECONFIG;
  }
  if (state == STORE_DSPATH_CHUNKSTORE) {
    /* An existing datastore: keep everything, only check it is one. */
    struct store_chunkstore *cs;
    rc = store_chunkstore_open(a->base, STORE_SYNC_NONE, &cs);
    if (rc == 0)
      store_chunkstore_close(cs);
  } else {
    rc = store_chunk_create(a->base);
    /* Also after a failure: store_chunk_create may have made the directory
     * before failing inside it (rmdir leaves a non-empty one alone). */
    a->made_base = state == STORE_DSPATH_MISSING;
    a->made_layout = rc == 0;
  }
  if (rc < 0) {
    set_err(q, "cannot create chunk store at %s: %s", a->base, core_strerror(rc));
    return rc;
  }
  if (core_config_set(sec, "path", a->base) < 0) {
    set_err(q, "invalid path %s", a->base);
    return CORE_ECONFIG;
  }
  return 0;
}

/* Takes back what make_store made when the section could not be saved. */
static void unmake_store(const struct edit_arg *a)
{
  char p[STORE_PATH_MAX + 16];
  if (a->made_layout) {
    snprintf(p, sizeof(p), "%s/%s", a->base, STORE_LOCK_FILE);
    unlink(p);
    snprintf(p, sizeof(p), "%s/%s", a->base, STORE_CHUNK_DIR);
    rmdir(p);
  }
  if (a->made_base)
    rmdir(a->base);
}

static int apply_edit(struct core_config *cfg, void *argp)
{
  struct edit_arg *a = argp;
  struct store_dsconfig_req *q = a->q;
  struct core_config_section *sec = core_config_find(cfg, NULL, q->name);
  if (a->mode == 0) {
    if (sec) {
      snprintf(q->err, sizeof(q->err), "datastore '%s' already exists", q->name);
      return CORE_EEXISTS;
    }
    int rc = core_config_add(cfg, "datastore", q->name, &sec);
    if (rc)
      return rc;
  } else {
    if (sec == NULL || strcmp(sec->type, "datastore") != 0) {
      snprintf(q->err, sizeof(q->err), "no such datastore '%s'", q->name);
      return CORE_ENOTFOUND;
    }
    if (a->mode == 2)
      return core_config_remove(cfg, "datastore", q->name);
  }
  for (size_t i = 0; i < q->nset; i++) {
    if (a->mode == 1 && !strcmp(q->set[i].key, "path")) {
      snprintf(q->err, sizeof(q->err), "the path of a datastore cannot change");
      return CORE_ECONFIG;
    }
    if (!strcmp(q->set[i].key, "overwrite-in-use")) {
      if (a->mode == 1) {
        snprintf(q->err, sizeof(q->err), "overwrite-in-use only applies when creating");
        return CORE_ECONFIG;
      }
      continue;
    }
    /* Where the data lives is fixed at creation (as in PBS). */
    if (a->mode == 1 && !strcmp(q->set[i].key, "backend")) {
      const char *cur = core_config_get(sec, "backend");
      if (cur == NULL || strcmp(cur, q->set[i].value) != 0) {
        snprintf(q->err, sizeof(q->err), "the backend of a datastore cannot change");
        return CORE_ECONFIG;
      }
    }
    int rc = core_config_set(sec, q->set[i].key, q->set[i].value);
    if (rc) {
      snprintf(q->err, sizeof(q->err), "invalid property '%s'", q->set[i].key);
      return CORE_ECONFIG;
    }
  }
  for (size_t i = 0; i < q->ndel; i++) {
    char qn[80];
    if (!is_known(q->del[i]) || !strcmp(q->del[i], "overwrite-in-use")) {
      snprintf(q->err, sizeof(q->err), "cannot delete unknown property '%s'",
               core_utf8_quote(q->del[i], qn, sizeof(qn)));
      return CORE_ECONFIG;
    }
    if (!strcmp(q->del[i], "path") ||
        (!strcmp(q->del[i], "backend") && core_config_get(sec, "backend"))) {
      snprintf(q->err, sizeof(q->err), "the %s of a datastore cannot be deleted", q->del[i]);
      return CORE_ECONFIG;
    }
    core_config_delete(sec, q->del[i]);
  }
  int rc = check_section(sec, q->err, sizeof(q->err));
  if (rc == 0 && a->mode == 0)
    rc = make_store(a, cfg, sec);
  return rc;
}

static int run_edit(struct edit_arg *a)
{
  struct store_dsconfig_req *q = a->q;
  char *path = core_asprintf("%s/datastore.cfg", q->config_dir);
  struct core_config_edit e;
  memset(&e, 0, sizeof(e));
  e.path = path;
  e.expect_digest = q->digest;
  e.apply = apply_edit;
  e.arg = a;
  e.shmem = q->shmem;
  e.slot = CORE_GEN_DATASTORE;
  int rc = core_config_edit(&e);
  if (rc < 0 && q->err[0] == '\0')
    snprintf(q->err, sizeof(q->err), "%s", e.err[0] ? e.err : core_strerror(rc));
  core_free(path);
  return rc < 0 ? rc : 0;
}

int store_dsconfig_create(struct store_dsconfig_req *q)
{
  q->err[0] = '\0';
  if (format_name_datastore(q->name) < 0) {
    snprintf(q->err, sizeof(q->err), "invalid datastore name");
    return CORE_ENAME;
  }
  const char *path = NULL, *backend = NULL, *overwrite = NULL;
  for (size_t i = 0; i < q->nset; i++) {
    int rc = store_dsconfig_check_prop(q->set[i].key, q->set[i].value, q->err,
                                       sizeof(q->err));
    if (rc)
      return rc;
    if (!strcmp(q->set[i].key, "path"))
      path = q->set[i].value;
    else if (!strcmp(q->set[i].key, "backend"))
      backend = q->set[i].value;
    else if (!strcmp(q->set[i].key, "overwrite-in-use"))
      overwrite = q->set[i].value;
  }
  if (path == NULL) {
    snprintf(q->err, sizeof(q->err), "missing property 'path'");
    return CORE_ECONFIG;
  }
  /* S3: the bucket must answer, and no other server may use the prefix. */
  struct store_backend_cfg bcfg = {0};
  if (backend && store_backend_parse(backend, &bcfg, q->err, sizeof(q->err)) < 0)
    return CORE_ECONFIG;
  if (bcfg.type == STORE_BACKEND_S3) {
    int ow = 0;
    if (overwrite)
      core_parse_bool(overwrite, &ow); /* checked above */
    int rc = store_s3_create_check(q->config_dir, q->name, &bcfg, ow, q->err, sizeof(q->err));
    if (rc < 0)
      return rc;
  }
  /* The chunk store is made under the config lock, after every check
   * (make_store): a config entry must never point at nothing, and a refused
   * create must leave nothing behind. */
  struct edit_arg a = {.q = q, .mode = 0};
  int rc = run_edit(&a);
  if (rc < 0)
    unmake_store(&a);
  return rc;
}

int store_dsconfig_update(struct store_dsconfig_req *q)
{
  struct edit_arg a = {.q = q, .mode = 1};
  q->err[0] = '\0';
  return run_edit(&a);
}

int store_dsconfig_remove(struct store_dsconfig_req *q)
{
  struct edit_arg a = {.q = q, .mode = 2};
  q->err[0] = '\0';
  return run_edit(&a);
}
