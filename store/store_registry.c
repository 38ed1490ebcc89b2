#include "store/store_registry.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "core/core_parse.h"
#include "store/store_s3.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The periodic re-check for edits that the directory watch missed (network
 * file systems, bind mounts). PBS re-reads after 60 s; 10 s is cheap here
 * because a re-check is one small read and hash in the pool. */
#define STORE_TTL_MS 10000

/* ---- Settings ---- */

const char *store_maint_name(enum store_maint m)
{
  switch (m) {
  case STORE_MAINT_READ_ONLY: return "read-only";
  case STORE_MAINT_OFFLINE: return "offline";
  case STORE_MAINT_DELETE: return "delete";
  case STORE_MAINT_S3_REFRESH: return "s3-refresh";
  default: return "none";
  }
}

static int parse_maint(const char *s, struct store_datastore *d, char *err, size_t errlen)
{
  struct core_config_props p;
  core_config_props_init(&p);
  int rc = core_config_props_parse(&p, s, "type");
  if (rc) {
    snprintf(err, errlen, "maintenance-mode: malformed property string");
    goto out;
  }
  const char *type = core_config_props_get(&p, "type");
  const char *msg = core_config_props_get(&p, "message");
  for (size_t i = 0; i < p.n; i++) {
    if (strcmp(p.items[i].key, "type") && strcmp(p.items[i].key, "message")) {
      snprintf(err, errlen, "maintenance-mode: unknown key '%s'", p.items[i].key);
      rc = CORE_ECONFIG;
      goto out;
    }
  }
  enum store_maint m = STORE_MAINT_NONE;
  if (type == NULL)
    m = STORE_MAINT_NONE;
  else if (strcmp(type, "read-only") == 0)
    m = STORE_MAINT_READ_ONLY;
  else if (strcmp(type, "offline") == 0)
    m = STORE_MAINT_OFFLINE;
  else if (strcmp(type, "delete") == 0)
    m = STORE_MAINT_DELETE;
  else if (strcmp(type, "s3-refresh") == 0)
    m = STORE_MAINT_S3_REFRESH;
  else {
    snprintf(err, errlen, "maintenance-mode: unknown type '%s'", type);
    rc = CORE_ECONFIG;
    goto out;
  }
  if (d) {
    d->maint = m;
    core_free(d->maint_msg);
    d->maint_msg = msg ? core_strdup(msg) : NULL;
  }
out:
  core_config_props_free(&p);
  return rc ? CORE_ECONFIG : 0;
}

static int parse_tuning(const char *s, struct store_datastore *d, char *err, size_t errlen)
{
  struct core_config_props p;
  core_config_props_init(&p);
  int rc = core_config_props_parse(&p, s, NULL);
  if (rc) {
    snprintf(err, errlen, "tuning: malformed property string");
    goto out;
  }
  int sync = STORE_SYNC_FILESYSTEM, safety = 1;
  int64_t cutoff_min = 1445;
  for (size_t i = 0; i < p.n; i++) {
    const char *k = p.items[i].key, *v = p.items[i].value;
    if (!strcmp(k, "sync-level")) {
      enum store_sync_level level;
      if (store_sync_level_parse(v, &level) == 0)
        sync = (int)level;
      else {
        snprintf(err, errlen, "tuning: sync-level must be none, file or filesystem");
        rc = CORE_ECONFIG;
        goto out;
      }
    } else if (!strcmp(k, "gc-atime-cutoff")) {
      char *end;
      long long n = strtoll(v, &end, 10);
      if (*v == '\0' || *end || n < 1 || n > 2880) {
        snprintf(err, errlen, "tuning: gc-atime-cutoff must be 1..2880 minutes");
        rc = CORE_ECONFIG;
        goto out;
      }
      cutoff_min = n;
    } else if (!strcmp(k, "gc-atime-safety-check")) {
      if (core_parse_bool(v, &safety)) {
        snprintf(err, errlen, "tuning: gc-atime-safety-check must be a boolean");
        rc = CORE_ECONFIG;
        goto out;
      }
    } else if (!strcmp(k, "chunk-order") || !strcmp(k, "gc-cache-capacity") ||
               !strcmp(k, "default-verification-readers") ||
               !strcmp(k, "default-verification-workers")) {
      /* PBS knobs that Cairn accepts and keeps but does not need. */
    } else {
      snprintf(err, errlen, "tuning: unknown key '%s'", k);
      rc = CORE_ECONFIG;
      goto out;
    }
  }
  if (d) {
    atomic_store(&d->sync_level, sync);
    d->gc_atime_cutoff_s = cutoff_min * 60;
    d->gc_atime_safety_check = safety;
  }
out:
  core_config_props_free(&p);
  return rc ? CORE_ECONFIG : 0;
}

int store_registry_parse_settings(const struct core_config_section *sec,
                                  struct store_datastore *into, char *err, size_t errlen)
{
  const char *path = core_config_get(sec, "path");
  if (path == NULL || path[0] != '/') {
    snprintf(err, errlen, "datastore '%s': path must be an absolute path", sec->name);
    return CORE_ECONFIG;
  }
  const char *maint = core_config_get(sec, "maintenance-mode");
  const char *tuning = core_config_get(sec, "tuning");
  if (into) {
    into->maint = STORE_MAINT_NONE;
    core_free(into->maint_msg);
    into->maint_msg = NULL;
    atomic_store(&into->sync_level, STORE_SYNC_FILESYSTEM);
    into->gc_atime_cutoff_s = 1445 * 60;
    into->gc_atime_safety_check = 1;
  }
  int rc = maint ? parse_maint(maint, into, err, errlen) : 0;
  if (rc == 0 && tuning)
    rc = parse_tuning(tuning, into, err, errlen);
  if (rc == 0)
    rc = store_backend_check_section(sec, err, errlen);
  return rc;
}

/* ---- Instances ---- */

void store_datastore_ref(struct store_datastore *ds)
{
  atomic_fetch_add(&ds->refs, 1);
}

void store_datastore_unref(struct store_datastore *ds)
{
  if (atomic_fetch_sub(&ds->refs, 1) != 1)
    return;
  store_backend_release(ds);
  if (ds->chunks)
    store_chunkstore_close(ds->chunks);
  pthread_mutex_destroy(&ds->chunks_mutex);
  core_free(ds->name);
  core_free(ds->path);
  core_free(ds->maint_msg);
  core_free(ds);
}

int store_datastore_chunks(struct store_datastore *ds, struct store_chunkstore **out)
{
  int rc = 0;
  pthread_mutex_lock(&ds->chunks_mutex);
  if (ds->chunks == NULL)
    rc = store_chunkstore_open(ds->path, (enum store_sync_level)atomic_load(&ds->sync_level),
                               &ds->chunks);
  *out = ds->chunks;
  pthread_mutex_unlock(&ds->chunks_mutex);
  return rc;
}

void store_release(struct store_datastore *ds, enum store_op op)
{
  if (op == STORE_OP_READ)
    atomic_fetch_sub(&ds->active_read, 1);
  else if (op == STORE_OP_WRITE)
    atomic_fetch_sub(&ds->active_write, 1);
  store_datastore_unref(ds);
}

/* Brings the instance map in line with the freshly loaded config. */
static void rebuild_instances(struct store_registry *r)
{
  char err[256];
  /* Drop instances whose section is gone or whose path changed. */
  size_t it = 0;
  const char *name;
  void *v;
  while (core_map_next(&r->instances, &it, &name, &v)) {
    struct store_datastore *ds = v;
    struct core_config_section *sec = core_config_find(&r->cfg, "datastore", name);
    const char *path = sec ? core_config_get(sec, "path") : NULL;
    if (path == NULL || strcmp(path, ds->path) != 0) {
      ds->removed = 1;
      core_map_del(&r->instances, ds->name);
      store_datastore_unref(ds);
    }
  }
  for (size_t i = 0; i < r->cfg.nsections; i++) {
    struct core_config_section *sec = r->cfg.sections[i];
    if (strcmp(sec->type, "datastore") != 0)
      continue;
    struct store_datastore *ds = core_map_get(&r->instances, sec->name);
    if (ds == NULL) {
      const char *path = core_config_get(sec, "path");
      if (path == NULL)
        continue;
      ds = core_new(struct store_datastore);
      ds->name = core_strdup(sec->name);
      ds->path = core_strdup(path);
      ds->reg = r;
      atomic_init(&ds->refs, 1);
      pthread_mutex_init(&ds->chunks_mutex, NULL);
      core_map_put(&r->instances, ds->name, ds);
    }
    if (store_registry_parse_settings(sec, ds, err, sizeof(err)) < 0) {
      /* A broken setting must not make a store less protected than its
       * admin wanted: treat it as offline until fixed. */
      core_warn("datastore %s: %s; treating it as offline", sec->name, err);
      ds->maint = STORE_MAINT_OFFLINE;
    }
    ds->gen = r->gen;
    store_backend_configure(ds, sec, r->config_dir, r->shmem);
    /* A sync-level change applies to the open handle in place. */
    pthread_mutex_lock(&ds->chunks_mutex);
    if (ds->chunks)
      store_chunkstore_set_sync_level(ds->chunks,
                                      (enum store_sync_level)atomic_load(&ds->sync_level));
    pthread_mutex_unlock(&ds->chunks_mutex);
  }
}

/* ---- Reloading ---- */

struct reload_job {
  struct core_job job;
  struct store_registry *reg;
  /* in */
  char *path;
  uint64_t gen;          /* generation read before the file */
  /* out */
  struct core_config cfg;
  char digest[CORE_CONFIG_DIGEST_LEN];
  char err[256];
  int rc;
  /* debug re-read mode: the one waiter this job serves */
  struct store_waiter *waiter;
};

static void reload_run(struct core_job *j)
{
  struct reload_job *job = (struct reload_job *)j;
  core_config_init(&job->cfg);
  job->rc = core_config_load(job->path, &job->cfg, job->digest, job->err, sizeof(job->err));
}

static void serve_waiter(struct store_registry *r, struct store_waiter *w, int err);

static void reload_done(struct core_job *j, int status)
{
  struct reload_job *job = (struct reload_job *)j;
  struct store_registry *r = job->reg;
  int rc = status < 0 ? status : job->rc;
  if (rc == 0 && !r->closing) {
    core_config_free(&r->cfg);
    r->cfg = job->cfg;
    memcpy(r->digest, job->digest, sizeof(r->digest));
    r->gen = job->gen;
    r->loaded = 1;
    rebuild_instances(r);
  } else {
    if (rc)
      core_error("datastore.cfg: %s%s%s", core_strerror(rc), job->err[0] ? ": " : "",
                 job->err);
    core_config_free(&job->cfg);
  }
  if (job->waiter) {
    serve_waiter(r, job->waiter, rc);
  } else {
    r->reloading = 0;
    struct store_waiter *w = r->waiters;
    r->waiters = NULL;
    r->waiters_tail = &r->waiters;
    while (w) {
      struct store_waiter *next = w->next;
      serve_waiter(r, w, rc);
      w = next;
    }
  }
  core_free(job->path);
  core_free(job);
}

static void start_reload(struct store_registry *r, struct store_waiter *only)
{
  struct reload_job *job = core_new(struct reload_job);
  job->reg = r;
  job->path = core_strdup(r->cfg_path);
  job->gen = core_shmem_gen_load(r->shmem, CORE_GEN_DATASTORE);
  job->waiter = only;
  if (only == NULL)
    r->reloading = 1;
  int rc = core_job_submit(r->loop, &job->job, reload_run, reload_done);
  if (rc < 0) {
    job->rc = rc;
    reload_done(&job->job, rc);
  }
}

static int check_op(const struct store_datastore *ds, enum store_op op)
{
  switch (ds->maint) {
  case STORE_MAINT_NONE:
    return 0;
  case STORE_MAINT_READ_ONLY:
    return op == STORE_OP_WRITE ? CORE_EMAINT : 0;
  case STORE_MAINT_OFFLINE:
  case STORE_MAINT_S3_REFRESH:
    return op == STORE_OP_LOOKUP ? 0 : CORE_EMAINT;
  case STORE_MAINT_DELETE:
    return CORE_EMAINT;
  }
  return CORE_EMAINT;
}

static void finish_lookup(struct store_registry *r, const char *name, enum store_op op,
                          store_lookup_cb cb, void *arg)
{
  struct store_datastore *ds = core_map_get(&r->instances, name);
  if (ds == NULL) {
    cb(arg, CORE_ENOTFOUND, NULL);
    return;
  }
  int rc = check_op(ds, op);
  if (rc) {
    cb(arg, rc, ds);
    return;
  }
  store_datastore_ref(ds);
  if (op == STORE_OP_READ)
    atomic_fetch_add(&ds->active_read, 1);
  else if (op == STORE_OP_WRITE)
    atomic_fetch_add(&ds->active_write, 1);
  cb(arg, 0, ds);
}

static void serve_waiter(struct store_registry *r, struct store_waiter *w, int err)
{
  if (w->lookup_cb) {
    if (err)
      w->lookup_cb(w->arg, err, NULL);
    else
      finish_lookup(r, w->name, w->op, w->lookup_cb, w->arg);
  } else {
    w->ready_cb(w->arg, err);
  }
  core_free((char *)w->name);
  core_free(w);
}

static void enqueue(struct store_registry *r, struct store_waiter *w)
{
  if (r->debug_reread) {
    /* As PBS did before its fix: every lookup reads and parses the file. */
    start_reload(r, w);
    return;
  }
  w->next = NULL;
  *r->waiters_tail = w;
  r->waiters_tail = &w->next;
  if (!r->reloading)
    start_reload(r, NULL);
}

void store_registry_refresh(struct store_registry *r, store_ready_cb cb, void *arg)
{
  if (r->loaded && !r->debug_reread &&
      core_shmem_gen_load(r->shmem, CORE_GEN_DATASTORE) == r->gen) {
    cb(arg, 0);
    return;
  }
  struct store_waiter *w = core_new(struct store_waiter);
  w->ready_cb = cb;
  w->arg = arg;
  enqueue(r, w);
}

void store_lookup(struct store_registry *r, const char *name, enum store_op op,
                  store_lookup_cb cb, void *arg)
{
  /* The fast path: one atomic load, one hash lookup. */
  if (r->loaded && !r->debug_reread &&
      core_shmem_gen_load(r->shmem, CORE_GEN_DATASTORE) == r->gen) {
    finish_lookup(r, name, op, cb, arg);
    return;
  }
  struct store_waiter *w = core_new(struct store_waiter);
  w->name = core_strdup(name);
  w->op = op;
  w->lookup_cb = cb;
  w->arg = arg;
  enqueue(r, w);
}

/* ---- Manual edits ---- */

struct check_job {
  struct core_job job;
  struct store_registry *reg;
  char *path;                          /* in */
  uint64_t gen;                        /* in: generation the digest belongs to */
  char loaded_digest[CORE_CONFIG_DIGEST_LEN]; /* in */
  struct core_shmem *shmem;            /* in: bumping is an atomic, fine off-loop */
  int bumped;                          /* out */
};

static void check_run(struct core_job *j)
{
  struct check_job *job = (struct check_job *)j;
  struct core_config cfg;
  char digest[CORE_CONFIG_DIGEST_LEN];
  core_config_init(&cfg);
  int rc = core_config_load(job->path, &cfg, digest, NULL, 0);
  core_config_free(&cfg);
  /* A file that does not parse also differs: the reload will report it. */
  if (rc == CORE_EPARSE || (rc == 0 && strcmp(digest, job->loaded_digest) != 0)) {
    core_shmem_gen_bump_from(job->shmem, CORE_GEN_DATASTORE, job->gen);
    job->bumped = 1;
  }
}

static void check_done(struct core_job *j, int status)
{
  struct check_job *job = (struct check_job *)j;
  job->reg->checking = 0;
  if (job->bumped)
    core_debug("datastore.cfg changed on disk; reloading");
  core_free(job->path);
  core_free(job);
}

static void start_check(struct store_registry *r)
{
  if (r->checking || r->closing || !r->loaded)
    return;
  /* A pending generation change will re-read the file anyway. */
  if (core_shmem_gen_load(r->shmem, CORE_GEN_DATASTORE) != r->gen)
    return;
  struct check_job *job = core_new(struct check_job);
  job->reg = r;
  job->path = core_strdup(r->cfg_path);
  job->gen = r->gen;
  job->shmem = r->shmem;
  memcpy(job->loaded_digest, r->digest, sizeof(job->loaded_digest));
  r->checking = 1;
  if (core_job_submit(r->loop, &job->job, check_run, check_done) < 0) {
    r->checking = 0;
    core_free(job->path);
    core_free(job);
  }
}

static void on_watch(uv_fs_event_t *h, const char *filename, int events, int status)
{
  struct store_registry *r = h->data;
  if (status == 0 && filename && strcmp(filename, "datastore.cfg") != 0)
    return;
  start_check(r);
}

static void on_ttl(uv_timer_t *t)
{
  start_check(t->data);
}

int store_registry_init(struct store_registry *r, uv_loop_t *loop, const char *config_dir,
                        struct core_shmem *shmem, int debug_reread)
{
  memset(r, 0, sizeof(*r));
  r->loop = loop;
  r->shmem = shmem;
  r->config_dir = core_strdup(config_dir);
  r->cfg_path = core_asprintf("%s/datastore.cfg", config_dir);
  r->debug_reread = debug_reread;
  r->waiters_tail = &r->waiters;
  core_config_init(&r->cfg);
  core_map_init(&r->instances);

  char err[256] = "";
  r->gen = core_shmem_gen_load(shmem, CORE_GEN_DATASTORE);
  int rc = core_config_load(r->cfg_path, &r->cfg, r->digest, err, sizeof(err));
  if (rc) {
    core_error("%s: %s%s%s", r->cfg_path, core_strerror(rc), err[0] ? ": " : "", err);
    return rc;
  }
  r->loaded = 1;
  rebuild_instances(r);

  uv_fs_event_init(loop, &r->watch);
  r->watch.data = r;
  rc = uv_fs_event_start(&r->watch, on_watch, config_dir, 0);
  if (rc < 0)
    core_warn("cannot watch %s (%s); relying on the periodic re-check", config_dir,
              uv_strerror(rc));
  uv_timer_init(loop, &r->ttl);
  r->ttl.data = r;
  uv_timer_start(&r->ttl, on_ttl, STORE_TTL_MS, STORE_TTL_MS);
  uv_unref((uv_handle_t *)&r->ttl);
  return 0;
}

void store_registry_close(struct store_registry *r)
{
  r->closing = 1;
  if (uv_is_active((uv_handle_t *)&r->watch) || r->watch.type == UV_FS_EVENT) {
    uv_fs_event_stop(&r->watch);
    uv_close((uv_handle_t *)&r->watch, NULL);
    uv_timer_stop(&r->ttl);
    uv_close((uv_handle_t *)&r->ttl, NULL);
  }
  size_t it = 0;
  void *v;
  while (core_map_next(&r->instances, &it, NULL, &v))
    store_datastore_unref(v);
  core_map_free(&r->instances);
  core_config_free(&r->cfg);
  core_free(r->config_dir);
  core_free(r->cfg_path);
}
