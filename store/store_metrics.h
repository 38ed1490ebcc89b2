/* store_metrics.h: what the datastores contribute to /metrics, readiness and
 * the usage history.
 *
 * DESIGN. Three things, all kept on the loop and fed by pool jobs:
 *
 * The last-backup cache: per datastore, per backup group (namespace, type,
 * id), the time of its newest finished snapshot, so the scrape can emit
 * cairn_last_backup_timestamp_seconds{store,ns,type,id} without walking a
 * directory. A pool job builds a datastore's table at startup (and after a
 * prune or a delete, which may remove a group's newest snapshot); a finished
 * backup updates its group at once. Each entry keeps its exposition line
 * ready, so a scrape of 10,000 groups copies lines and formats nothing. A
 * backup finishing while a rescan of its datastore runs marks the datastore
 * for another rescan, so the slower scan can never hide it.
 *
 * Usage samples: every `sample_ms` a pool job takes statvfs of every
 * datastore (the S3 ones: of their local cache) and appends used/total to a
 * per-datastore history, persisted (temp file + rename) under
 * <config-dir>/usage/, which survives restarts (the run directory may
 * not), so the estimated-full-date of status/datastore-usage is meaningful
 * after a few days. At most STORE_USAGE_SAMPLES samples are kept.
 *
 * Readiness: a check (pool job for the chunk directory; a HEAD on the
 * bucket for S3 datastores) of every configured datastore, on demand.
 *
 * Threads: loop thread, except the jobs' in/out parts.
 */
#ifndef STORE_METRICS_H
#define STORE_METRICS_H

#include "core/core_buf.h"
#include "core/core_map.h"
#include "http/http.h"

#include <stdint.h>
#include <uv.h>

#define STORE_USAGE_SAMPLES 1440            /* 30 days at the default period */
#define STORE_USAGE_PERIOD_MS (30 * 60 * 1000) /* default sampling period */

struct store_registry;
struct store_sessions;
struct store_access;

struct store_metrics {
  uv_loop_t *loop;
  struct store_registry *reg;      /* borrowed; reg->metrics points back here */
  struct store_sessions *sessions; /* borrowed, may be NULL */
  struct store_access *access;     /* borrowed, may be NULL: list filtering */
  char *usage_dir;                 /* owned: <config-dir>/usage */
  uint64_t sample_ms;              /* usage history period (default STORE_USAGE_PERIOD_MS) */
  uint64_t stat_ms;                /* statvfs refresh for the gauges (default 60 s) */
  struct core_map stores;          /* name -> struct store_metrics_ds * (owned) */
  uv_timer_t timer;                /* sampling; unref'd */
  int sampling;                    /* a sample job is in flight */
  int jobs;                        /* jobs in flight of any kind */
  int closing;
  int timer_closed;
  int started;                     /* store_metrics_start ran (the timer exists) */
};

/* Sets up (no I/O yet) and links reg->metrics. Call store_metrics_start once
 * the loop runs to scan the datastores and begin sampling. */
void store_metrics_init(struct store_metrics *m, uv_loop_t *loop, struct store_registry *reg,
                        const char *config_dir);
/* Loads the usage histories (blocking: startup), starts the first group
 * scans and the sampling timer. */
void store_metrics_start(struct store_metrics *m);
/* Stops the timer and waits (running the loop) for jobs in flight; frees
 * everything. Before store_registry_close. */
void store_metrics_close(struct store_metrics *m);

/* A backup of the group finished with snapshot time `time`. NULL m: no-op. */
void store_metrics_backup_finished(struct store_metrics *m, const char *store, const char *ns,
                                   const char *type, const char *id, int64_t time);
/* Snapshots or groups of `store` were removed (prune, delete): rescans it.
 * NULL m: no-op. */
void store_metrics_store_changed(struct store_metrics *m, const char *store);

/* 1 once every datastore's first group scan finished (a test hook, also
 * readiness of the metrics themselves). */
int store_metrics_scanned(const struct store_metrics *m);

/* The core_metrics collector (ctx: struct store_metrics *): sessions open,
 * per datastore chunk counters, dedup and usage, S3 client counters, and
 * the last-backup timestamps. */
int store_metrics_collect(void *ctx, struct core_buf *out);

/* Routes:
 *   GET /api2/json/readyz                (no authentication, like ping)
 *   GET /api2/json/status/datastore-usage (Datastore.Audit or .Backup, filtered)
 * `m` must outlive the server. */
void store_metrics_register(struct http_server *s, struct store_metrics *m);

/* For status/metrics (cmd): the last usage sample of each datastore, `fn`
 * called per datastore (loop thread). */
typedef void (*store_metrics_usage_fn)(void *arg, const char *store, uint64_t total,
                                       uint64_t used, uint64_t avail, int64_t sampled_at);
void store_metrics_each_usage(const struct store_metrics *m, store_metrics_usage_fn fn,
                              void *arg);

#endif
