#include "store/store_dsconfig.h"

#include "core/core_alloc.h"
#include "core/core_calendar.h"
#include "core/core_config.h"
#include "core/core_error.h"
#include "core/core_parse.h"
#include "store/store_backend.h"
#include "store/store_chunk.h"
#include "store/store_name.h"
#include "store/store_registry.h"

#include <errno.h>
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

/* Undoes store_chunk_create() on a base directory that this call made. */
static void remove_layout(const char *path)
{
  char *chunks = core_asprintf("%s/.chunks", path);
  char *lock = core_asprintf("%s/.lock", path);
  unlink(lock);
  rmdir(chunks);
  rmdir(path);
  core_free(chunks);
  core_free(lock);
}

static int is_known(const char *key)
{
  for (size_t i = 0; i < sizeof(known_props) / sizeof(known_props[0]); i++)
    if (strcmp(key, known_props[i]) == 0)
      return 1;
  return 0;
}

int store_dsconfig_check_prop(const char *key, const char *value, char *err, size_t errlen)
{
  if (!is_known(key)) {
    snprintf(err, errlen, "unknown property '%s'", key);
    return CORE_ECONFIG;
  }
  if (!core_config_valid_value(value)) {
    snprintf(err, errlen, "property '%s': invalid characters", key);
    return CORE_ECONFIG;
  }
  uint64_t n;
  if (!strncmp(key, "keep-", 5) && (core_parse_u64(value, &n) < 0 || n < 1 || n > 1000000)) {
    snprintf(err, errlen, "property '%s' must be a positive integer", key);
    return CORE_ECONFIG;
  }
  if (!strcmp(key, "path") && (value[0] != '/' || strstr(value, "/../") ||
                               strlen(value) > 4000)) {
    snprintf(err, errlen, "path must be an absolute path without '..'");
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
};

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
    if (!strcmp(q->del[i], "path") ||
        (!strcmp(q->del[i], "backend") && core_config_get(sec, "backend"))) {
      snprintf(q->err, sizeof(q->err), "the %s of a datastore cannot be deleted", q->del[i]);
      return CORE_ECONFIG;
    }
    core_config_delete(sec, q->del[i]);
  }
  return check_section(sec, q->err, sizeof(q->err));
}

static int run_edit(struct store_dsconfig_req *q, int mode)
{
  char *path = core_asprintf("%s/datastore.cfg", q->config_dir);
  struct edit_arg a = {q, mode};
  struct core_config_edit e;
  memset(&e, 0, sizeof(e));
  e.path = path;
  e.expect_digest = q->digest;
  e.apply = apply_edit;
  e.arg = &a;
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
  if (store_name_datastore(q->name) < 0) {
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
    int ow = overwrite && (!strcmp(overwrite, "1") || !strcmp(overwrite, "true"));
    int rc = store_s3_create_check(q->config_dir, q->name, &bcfg, ow, q->err, sizeof(q->err));
    if (rc < 0)
      return rc;
  }
  /* Make the chunk store first: a config entry must never point at nothing. */
  struct stat st;
  int created = stat(path, &st) < 0;
  int rc = store_chunk_create(path);
  if (rc == CORE_EEXISTS && q->reuse) {
    /* An existing datastore: keep everything, only check it is one. */
    struct store_chunkstore *cs;
    rc = store_chunkstore_open(path, STORE_SYNC_NONE, &cs);
    if (rc == 0)
      store_chunkstore_close(cs);
  } else if (rc == CORE_EEXISTS) {
    snprintf(q->err, sizeof(q->err), "%s already holds a chunk store (set reuse-datastore "
             "to adopt it)", path);
    return rc;
  }
  if (rc < 0) {
    snprintf(q->err, sizeof(q->err), "cannot create chunk store at %s: %s", path,
             core_strerror(rc));
    return rc;
  }
  rc = run_edit(q, 0);
  if (rc < 0 && created)
    remove_layout(path);
  return rc;
}

int store_dsconfig_update(struct store_dsconfig_req *q)
{
  q->err[0] = '\0';
  return run_edit(q, 1);
}

int store_dsconfig_remove(struct store_dsconfig_req *q)
{
  q->err[0] = '\0';
  return run_edit(q, 2);
}
