/* store_metrics.c: the last-backup cache and the datastores' metrics
 * collector (see store_metrics.h for the design). Usage sampling, readiness
 * and status/datastore-usage live in store_usage.c. */
#include "store/store_metrics.h"
#include "store/store_metrics_internal.h"

#include "core/core_alloc.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "core/core_metrics.h"
#include "s3/s3_client.h"
#include "store/store_registry.h"
#include "store/store_s3.h"
#include "store/store_session.h"
#include "store/store_snapshot.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define LAST_BACKUP "cairn_last_backup_timestamp_seconds"
#define GROUPS_TEXT_MAX ((size_t)1 << 30)

/* A group's cached line: "cairn_last_backup_timestamp_seconds{...} <ts>\n". */
struct sm_group {
  int64_t ts;
  size_t len;
  char line[];
};

static struct sm_group *group_line(const char *store, const char *ns, const char *type,
                                   const char *id, int64_t ts)
{
  char labels[1024];
  if (core_metrics_labels(labels, sizeof(labels), "store", store, "ns", ns, "type", type, "id",
                          id, NULL) < 0)
    return NULL; /* names are bounded far below this */
  size_t cap = sizeof(LAST_BACKUP) + strlen(labels) + 32;
  struct sm_group *g = core_malloc(sizeof(*g) + cap);
  g->ts = ts;
  int n = snprintf(g->line, cap, LAST_BACKUP "{%s} %" PRId64 "\n", labels, ts);
  g->len = (size_t)n;
  return g;
}

static void groups_free(struct core_map *groups)
{
  const char *k;
  void *v;
  for (size_t i = 0; core_map_next(groups, &i, &k, &v);)
    core_free(v);
  core_map_free(groups);
}

struct store_metrics_ds *store__metrics_ds(struct store_metrics *m, const char *store)
{
  struct store_metrics_ds *d = core_map_get(&m->stores, store);
  if (d == NULL) {
    d = core_new(struct store_metrics_ds);
    d->name = core_strdup(store);
    core_map_init(&d->groups);
    core_buf_init(&d->text, GROUPS_TEXT_MAX);
    core_map_put(&m->stores, store, d);
  }
  return d;
}

static void ds_free(struct store_metrics_ds *d)
{
  groups_free(&d->groups);
  core_buf_free(&d->text);
  core_free(d->hist);
  core_free(d->gc_status);
  core_free(d->name);
  core_free(d);
}

/* ---- scanning a datastore (pool) ------------------------------------------ */

struct scan_job {
  struct core_job job;
  struct store_metrics *m;
  char *store;              /* in, owned */
  char *base;               /* in, owned */
  struct core_map groups;   /* out */
  size_t n;                 /* out: groups found */
  int rc;                   /* out */
};

static void scan_run(struct core_job *j)
{
  struct scan_job *s = (struct scan_job *)j;
  struct store_ns_list nsl = {0};
  s->rc = store_ns_list(s->base, "", -1, &nsl);
  for (size_t i = 0; s->rc == 0 && i < nsl.n; i++) {
    struct store_group_list gl = {0};
    if (store_group_list(s->base, nsl.items[i], &gl) < 0)
      continue; /* a namespace removed meanwhile */
    for (size_t k = 0; k < gl.n; k++) {
      const struct store_group_info *g = &gl.items[k];
      if (g->last_backup < 0)
        continue;
      struct sm_group *e = group_line(s->store, nsl.items[i], g->type, g->id, g->last_backup);
      if (e == NULL)
        continue;
      char key[600];
      snprintf(key, sizeof(key), "%s\t%s\t%s", nsl.items[i], g->type, g->id);
      core_free(core_map_put(&s->groups, key, e));
      s->n++;
    }
    store_group_list_free(&gl);
  }
  store_ns_list_free(&nsl);
}

static void scan_start(struct store_metrics *m, struct store_metrics_ds *d);

static void scan_done(struct core_job *j, int status)
{
  struct scan_job *s = (struct scan_job *)j;
  struct store_metrics *m = s->m;
  m->jobs--;
  struct store_metrics_ds *d = core_map_get(&m->stores, s->store);
  if (d && status == 0 && s->rc == 0) {
    groups_free(&d->groups);
    d->groups = s->groups; /* moved */
    d->text_dirty = 1;
    core_map_init(&s->groups);
    core_debug("metrics: %s: %zu backup groups", s->store, s->n);
  } else if (d && (status < 0 || s->rc < 0)) {
    core_warn("metrics: cannot list the backup groups of %s: %s", s->store,
              core_strerror(status < 0 ? status : s->rc));
  }
  groups_free(&s->groups);
  if (d) {
    d->scanning = 0;
    d->scanned = 1;
    if (d->rescan && !m->closing)
      scan_start(m, d);
  }
  core_free(s->store);
  core_free(s->base);
  core_free(s);
}

static void scan_start(struct store_metrics *m, struct store_metrics_ds *d)
{
  if (d->scanning) {
    d->rescan = 1;
    return;
  }
  struct store_datastore *ds = core_map_get(&m->reg->instances, d->name);
  if (ds == NULL || ds->removed) {
    d->scanned = 1;
    return;
  }
  struct scan_job *s = core_new(struct scan_job);
  s->m = m;
  s->store = core_strdup(d->name);
  s->base = core_strdup(ds->path);
  core_map_init(&s->groups);
  d->scanning = 1;
  d->rescan = 0;
  m->jobs++;
  int rc = core_job_submit(m->loop, &s->job, scan_run, scan_done);
  if (rc < 0)
    scan_done(&s->job, rc);
}

/* Datastores configured now get an entry (and a first scan); entries of
 * removed ones go. */
void store__metrics_sync_stores(struct store_metrics *m)
{
  const char *k;
  void *v;
  for (size_t i = 0; core_map_next(&m->reg->instances, &i, &k, &v);) {
    struct store_datastore *ds = v;
    if (ds->removed)
      continue;
    struct store_metrics_ds *d = store__metrics_ds(m, k);
    if (!d->scanned && !d->scanning)
      scan_start(m, d);
  }
  for (size_t i = 0; core_map_next(&m->stores, &i, &k, &v);) {
    struct store_metrics_ds *d = v;
    struct store_datastore *ds = core_map_get(&m->reg->instances, k);
    if ((ds == NULL || ds->removed) && !d->scanning) {
      core_map_del(&m->stores, k);
      ds_free(d);
    }
  }
}

void store_metrics_backup_finished(struct store_metrics *m, const char *store, const char *ns,
                                   const char *type, const char *id, int64_t time)
{
  if (m == NULL || m->closing)
    return;
  struct store_metrics_ds *d = store__metrics_ds(m, store);
  if (d->scanning)
    d->rescan = 1; /* the scan may have listed the group before this snapshot */
  char key[600];
  snprintf(key, sizeof(key), "%s\t%s\t%s", ns ? ns : "", type, id);
  struct sm_group *old = core_map_get(&d->groups, key);
  if (old && old->ts >= time)
    return;
  struct sm_group *e = group_line(store, ns ? ns : "", type, id, time);
  if (e) {
    core_free(core_map_put(&d->groups, key, e));
    d->text_dirty = 1;
  }
}

void store_metrics_store_changed(struct store_metrics *m, const char *store)
{
  if (m == NULL || m->closing)
    return;
  scan_start(m, store__metrics_ds(m, store));
}

int store_metrics_scanned(const struct store_metrics *m)
{
  const char *k;
  void *v;
  for (size_t i = 0; core_map_next(&m->stores, &i, &k, &v);) {
    const struct store_metrics_ds *d = v;
    if (!d->scanned)
      return 0;
  }
  return 1;
}

/* ---- lifetime ------------------------------------------------------------- */

void store_metrics_init(struct store_metrics *m, uv_loop_t *loop, struct store_registry *reg,
                        const char *config_dir)
{
  memset(m, 0, sizeof(*m));
  m->loop = loop;
  m->reg = reg;
  m->usage_dir = core_asprintf("%s/usage", config_dir);
  m->sample_ms = STORE_USAGE_PERIOD_MS;
  m->stat_ms = 60 * 1000;
  core_map_init(&m->stores);
  reg->metrics = m;
}

void store_metrics_close(struct store_metrics *m)
{
  if (m->reg == NULL)
    return;
  m->closing = 1;
  store__usage_stop(m);
  while (m->jobs > 0 || !m->timer_closed)
    uv_run(m->loop, UV_RUN_ONCE);
  const char *k;
  void *v;
  for (size_t i = 0; core_map_next(&m->stores, &i, &k, &v);)
    ds_free(v);
  core_map_free(&m->stores);
  core_free(m->usage_dir);
  m->reg->metrics = NULL;
  m->reg = NULL;
}

/* ---- the collector ---------------------------------------------------------- */

static int family(struct core_buf *out, const char *name, const char *type, const char *help)
{
  return core_metrics_family(out, name, type, help);
}

static int ds_label(char *l, size_t cap, const char *store)
{
  return core_metrics_labels(l, cap, "store", store, NULL);
}

/* One counter family over every datastore instance. */
static int ds_counter(struct core_buf *out, struct store_registry *reg, const char *name,
                      const char *help, size_t offset)
{
  int rc = family(out, name, "counter", help);
  const char *k;
  void *v;
  for (size_t i = 0; rc == 0 && core_map_next(&reg->instances, &i, &k, &v);) {
    struct store_datastore *ds = v;
    char l[256];
    if (ds->removed || ds_label(l, sizeof(l), ds->name) < 0)
      continue;
    const struct core_counter *c =
        (const struct core_counter *)((const char *)&ds->stats + offset);
    rc = core_metrics_u64(out, name, l, core_counter_get(c));
  }
  return rc;
}

static int collect_sessions(struct store_metrics *m, struct core_buf *out)
{
  uint64_t backup = 0, reader = 0;
  if (m->sessions) {
    const char *k;
    void *v;
    for (size_t i = 0; core_map_next(&m->sessions->map, &i, &k, &v);) {
      const struct store_session *s = v;
      if (s->kind == STORE_SESSION_BACKUP)
        backup++;
      else
        reader++;
    }
  }
  int rc = family(out, "cairn_sessions_open", "gauge", "Backup and reader sessions open.");
  if (rc == 0)
    rc = core_metrics_u64(out, "cairn_sessions_open", "kind=\"backup\"", backup);
  if (rc == 0)
    rc = core_metrics_u64(out, "cairn_sessions_open", "kind=\"reader\"", reader);
  return rc;
}

static int collect_chunks(struct store_metrics *m, struct core_buf *out)
{
  struct store_registry *reg = m->reg;
  int rc = family(out, "cairn_chunk_uploads_total", "counter",
                  "Chunk uploads by whether the chunk was new or already present.");
  const char *k;
  void *v;
  for (size_t i = 0; rc == 0 && core_map_next(&reg->instances, &i, &k, &v);) {
    struct store_datastore *ds = v;
    char l[256];
    if (ds->removed)
      continue;
    if (core_metrics_labels(l, sizeof(l), "store", ds->name, "result", "new", NULL) >= 0)
      rc = core_metrics_u64(out, "cairn_chunk_uploads_total", l,
                            core_counter_get(&ds->stats.chunks_new));
    if (rc == 0 &&
        core_metrics_labels(l, sizeof(l), "store", ds->name, "result", "present", NULL) >= 0)
      rc = core_metrics_u64(out, "cairn_chunk_uploads_total", l,
                            core_counter_get(&ds->stats.chunks_present));
  }
#define DS_COUNTER(name, field, help)                                                   \
  if (rc == 0)                                                                          \
  rc = ds_counter(out, reg, name, help, offsetof(struct store_ds_stats, field))
  DS_COUNTER("cairn_chunk_received_bytes_total", bytes_received,
             "Encoded (compressed) chunk bytes uploaded.");
  DS_COUNTER("cairn_chunk_stored_bytes_total", bytes_stored,
             "Encoded chunk bytes stored as new chunks.");
  DS_COUNTER("cairn_chunk_received_raw_bytes_total", raw_received,
             "Plain (decoded) size of the chunks uploaded.");
  DS_COUNTER("cairn_chunk_stored_raw_bytes_total", raw_stored,
             "Plain size of the chunks stored as new.");
  DS_COUNTER("cairn_backups_finished_total", snapshots, "Backup snapshots finished.");
#undef DS_COUNTER
  return rc;
}

/* Dedup factor: from the last GC (logical bytes the indexes describe per
 * byte on disk, PBS's definition), read with the usage samples. */
static int collect_usage(struct store_metrics *m, struct core_buf *out)
{
  static const struct {
    const char *name, *help;
  } fam[] = {
    {"cairn_datastore_total_bytes", "Size of the file system holding the datastore."},
    {"cairn_datastore_used_bytes", "Bytes used on that file system."},
    {"cairn_datastore_available_bytes", "Bytes available to the datastore."},
    {"cairn_datastore_dedup_factor",
     "Logical bytes referenced by indexes per byte of chunks on disk (last GC)."},
    {"cairn_datastore_usage_sampled_timestamp_seconds", "When the usage was last sampled."},
  };
  int rc = 0;
  for (int f = 0; f < 5 && rc == 0; f++) {
    rc = family(out, fam[f].name, "gauge", fam[f].help);
    const char *k;
    void *v;
    for (size_t i = 0; rc == 0 && core_map_next(&m->stores, &i, &k, &v);) {
      const struct store_metrics_ds *d = v;
      char l[256];
      if (!d->sampled || ds_label(l, sizeof(l), d->name) < 0)
        continue;
      switch (f) {
      case 0: rc = core_metrics_u64(out, fam[f].name, l, d->total); break;
      case 1: rc = core_metrics_u64(out, fam[f].name, l, d->used); break;
      case 2: rc = core_metrics_u64(out, fam[f].name, l, d->avail); break;
      case 3:
        if (d->dedup > 0)
          rc = core_metrics_double(out, fam[f].name, l, d->dedup);
        break;
      default: rc = core_metrics_i64(out, fam[f].name, l, d->sampled_at); break;
      }
    }
  }
  return rc;
}

static int collect_s3(struct store_metrics *m, struct core_buf *out)
{
  int rc = family(out, "cairn_s3_requests_total", "counter",
                  "S3 operations of S3-backed datastores by operation and result.");
  for (int f = 0; f < 4 && rc == 0; f++) {
    static const char *names[] = {NULL, "cairn_s3_retries_total", "cairn_s3_sent_bytes_total",
                                  "cairn_s3_received_bytes_total"};
    static const char *helps[] = {NULL, "S3 request attempts after the first (retries).",
                                  "Request body bytes sent to S3 (every attempt).",
                                  "Response body bytes received from S3."};
    if (f > 0)
      rc = family(out, names[f], "counter", helps[f]);
    const char *k;
    void *v;
    for (size_t i = 0; rc == 0 && core_map_next(&m->reg->instances, &i, &k, &v);) {
      struct store_datastore *ds = v;
      if (ds->removed || !store_datastore_is_s3(ds))
        continue;
      struct s3_stats st;
      store_s3_stats(ds->backend, &st);
      char l[256];
      if (f == 0) {
        for (int op = 0; op < S3_STATS_OPS && rc == 0; op++)
          for (int r = 0; r < S3_STATS_RESULTS && rc == 0; r++) {
            if (st.by_op[op][r] == 0)
              continue;
            if (core_metrics_labels(l, sizeof(l), "store", ds->name, "op", s3_stats_op_name(op),
                                    "result", s3_stats_result_name(r), NULL) >= 0)
              rc = core_metrics_u64(out, "cairn_s3_requests_total", l, st.by_op[op][r]);
          }
        continue;
      }
      if (ds_label(l, sizeof(l), ds->name) < 0)
        continue;
      uint64_t val = f == 1 ? st.retries : f == 2 ? st.bytes_sent : st.bytes_received;
      rc = core_metrics_u64(out, names[f], l, val);
    }
  }
  return rc;
}

/* Rebuilds a datastore's concatenated lines after a change: a scrape then
 * copies one block per datastore, and the per-line work is paid once per
 * change, not once per scrape. */
static int groups_text(struct store_metrics_ds *d)
{
  if (!d->text_dirty)
    return 0;
  size_t need = 0;
  const char *k;
  void *v;
  for (size_t g = 0; core_map_next(&d->groups, &g, &k, &v);)
    need += ((const struct sm_group *)v)->len;
  core_buf_reset(&d->text);
  int rc = need ? core_buf_reserve(&d->text, need) : 0;
  for (size_t g = 0; rc == 0 && core_map_next(&d->groups, &g, &k, &v);) {
    const struct sm_group *e = v;
    rc = core_buf_append(&d->text, e->line, e->len);
  }
  if (rc == 0)
    d->text_dirty = 0;
  return rc;
}

static int collect_groups(struct store_metrics *m, struct core_buf *out)
{
  int rc = family(out, LAST_BACKUP, "gauge",
                  "Time of the newest finished snapshot of each backup group.");
  const char *k;
  void *v;
  for (size_t i = 0; rc == 0 && core_map_next(&m->stores, &i, &k, &v);) {
    struct store_metrics_ds *d = v;
    rc = groups_text(d);
    if (rc == 0 && d->text.len)
      rc = core_buf_append(out, d->text.base, d->text.len);
  }
  return rc;
}

int store_metrics_collect(void *ctx, struct core_buf *out)
{
  struct store_metrics *m = ctx;
  int rc = collect_sessions(m, out);
  if (rc == 0)
    rc = collect_chunks(m, out);
  if (rc == 0)
    rc = collect_usage(m, out);
  if (rc == 0)
    rc = collect_s3(m, out);
  if (rc == 0)
    rc = collect_groups(m, out);
  return rc;
}
