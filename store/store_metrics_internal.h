/* store_metrics_internal.h: shared by store_metrics.c and store_usage.c. */
#ifndef STORE_METRICS_INTERNAL_H
#define STORE_METRICS_INTERNAL_H

#include "core/core_buf.h"
#include "store/store_metrics.h"

struct store_usage_sample {
  int64_t t;                 /* epoch seconds */
  uint64_t used, total;
};

/* Per datastore (loop thread). */
struct store_metrics_ds {
  char *name;                /* owned */
  /* last-backup cache */
  struct core_map groups;    /* "ns\ttype\tid" -> struct sm_group * (owned) */
  int scanning;              /* a scan job is in flight */
  int rescan;                /* scan again when it lands */
  int scanned;               /* a first scan ended */
  struct core_buf text;      /* every group's line, concatenated: what a scrape copies */
  int text_dirty;            /* `groups` changed since `text` was built */
  /* usage, from the last sample */
  int sampled;
  uint64_t total, used, avail;
  int64_t sampled_at;
  double dedup;              /* from .gc-status, 0 unknown */
  char *gc_status;           /* owned JSON text of .gc-status, or NULL */
  struct store_usage_sample *hist; /* owned, oldest first, at most STORE_USAGE_SAMPLES */
  size_t nhist, hist_cap;
};

struct store_metrics_ds *store__metrics_ds(struct store_metrics *m, const char *store);
void store__metrics_sync_stores(struct store_metrics *m);
void store__usage_stop(struct store_metrics *m);
/* GET readyz (store_ready.c). */
void store__metrics_h_ready(struct http_request *req, void *ctx);

#endif
