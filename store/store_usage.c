/* store_usage.c: usage samples and their history, and
 * GET /api2/json/status/datastore-usage (see store_metrics.h).
 *
 * The history file <config-dir>/usage/<store> holds one "t used total" line
 * per sample, oldest first; it is rewritten whole (temp file and rename) when
 * a sample is added, at most once per sampling period, and bounded by
 * STORE_USAGE_SAMPLES lines.
 */
#include "store/store_metrics_internal.h"

#include "access/access.h"
#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_job.h"
#include "core/core_json.h"
#include "core/core_log.h"
#include "s3/s3_client.h"
#include "store/store_access.h"
#include "store/store_api.h"
#include "store/store_registry.h"
#include "store/store_s3.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#define GC_STATUS_MAX (64 * 1024)

/* ---- history ---------------------------------------------------------------- */

static void hist_add(struct store_metrics_ds *d, int64_t t, uint64_t used, uint64_t total)
{
  /* Grown as samples come (a thousand datastores must not cost 34 KiB each
   * from the first sample on). */
  if (d->nhist == d->hist_cap && d->hist_cap < STORE_USAGE_SAMPLES) {
    size_t cap = d->hist_cap ? d->hist_cap * 4 : 8;
    if (cap > STORE_USAGE_SAMPLES)
      cap = STORE_USAGE_SAMPLES;
    d->hist = core_realloc(d->hist, cap * sizeof(*d->hist));
    d->hist_cap = cap;
  }
  if (d->nhist == STORE_USAGE_SAMPLES) {
    memmove(d->hist, d->hist + 1, (STORE_USAGE_SAMPLES - 1) * sizeof(*d->hist));
    d->nhist--;
  }
  d->hist[d->nhist].t = t;
  d->hist[d->nhist].used = used;
  d->hist[d->nhist].total = total;
  d->nhist++;
}

/* Blocking: startup only. A missing or damaged file is an empty history. */
static void hist_load(struct store_metrics *m, struct store_metrics_ds *d)
{
  char *path = core_asprintf("%s/%s", m->usage_dir, d->name);
  uint8_t *text = NULL;
  size_t len = 0;
  if (core_file_read(path, STORE_USAGE_SAMPLES * 64, &text, &len) == 0) {
    char *copy = core_strndup((const char *)text, len); /* NUL-terminated */
    core_free(text);
    text = (uint8_t *)copy;
    char *save = NULL;
    for (char *line = strtok_r((char *)text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
      int64_t t;
      uint64_t used, total;
      if (sscanf(line, "%" SCNd64 " %" SCNu64 " %" SCNu64, &t, &used, &total) == 3 &&
          total > 0 && (d->nhist == 0 || t > d->hist[d->nhist - 1].t))
        hist_add(d, t, used, total);
    }
  }
  core_free(text);
  core_free(path);
}

struct save_job {
  struct core_job job;
  struct store_metrics *m;
  char *path;                /* in, owned */
  char *text;                /* in, owned */
  size_t len;
  int rc;                    /* out */
};

static void save_run(struct core_job *j)
{
  struct save_job *s = (struct save_job *)j;
  char *dir = core_strdup(s->path);
  char *slash = strrchr(dir, '/');
  if (slash)
    *slash = '\0';
  s->rc = core_mkdir_p(dir, 0750);
  if (s->rc == 0)
    s->rc = core_file_replace(s->path, s->text, s->len, 0640, 0);
  core_free(dir);
}

static void save_done(struct core_job *j, int status)
{
  struct save_job *s = (struct save_job *)j;
  s->m->jobs--;
  int rc = status < 0 ? status : s->rc;
  if (rc < 0)
    core_warn("usage history %s: %s", s->path, core_strerror(rc));
  core_free(s->path);
  core_free(s->text);
  core_free(s);
}

static void hist_save(struct store_metrics *m, const struct store_metrics_ds *d)
{
  struct core_buf b;
  core_buf_init(&b, STORE_USAGE_SAMPLES * 64);
  for (size_t i = 0; i < d->nhist; i++)
    if (core_buf_printf(&b, "%" PRId64 " %" PRIu64 " %" PRIu64 "\n", d->hist[i].t,
                        d->hist[i].used, d->hist[i].total) < 0)
      break;
  struct save_job *s = core_new(struct save_job);
  s->m = m;
  s->path = core_asprintf("%s/%s", m->usage_dir, d->name);
  s->text = core_buf_steal(&b, &s->len);
  if (s->text == NULL)
    s->text = core_strdup("");
  m->jobs++;
  int rc = core_job_submit(m->loop, &s->job, save_run, save_done);
  if (rc < 0)
    save_done(&s->job, rc);
}

/* ---- sampling (pool) -------------------------------------------------------- */

struct usage_item {
  char *name;                /* in, owned */
  char *path;                /* in, owned */
  int rc;                    /* out: statvfs */
  uint64_t total, used, avail;
  char *gc_status;           /* out, owned: .gc-status text, or NULL */
  double dedup;              /* out: from .gc-status, 0 unknown */
};

struct usage_job {
  struct core_job job;
  struct store_metrics *m;
  struct usage_item *items;  /* owned */
  size_t n;
  int64_t now;
  /* A status/datastore-usage request waiting for this sample, or NULL. */
  struct http_request *req;
};

static void usage_item_run(struct usage_item *it)
{
  struct statvfs st;
  if (statvfs(it->path, &st) < 0) {
    it->rc = -errno;
  } else {
    it->total = (uint64_t)st.f_blocks * st.f_frsize;
    it->avail = (uint64_t)st.f_bavail * st.f_frsize;
    it->used = it->total - (uint64_t)st.f_bfree * st.f_frsize;
  }
  char *gcs = core_asprintf("%s/.gc-status", it->path);
  uint8_t *text = NULL;
  size_t len = 0;
  if (core_file_read(gcs, GC_STATUS_MAX, &text, &len) == 0) {
    yajl_val v = NULL;
    if (core_json_parse((const char *)text, len, &v, NULL, 0) == 0 && YAJL_IS_OBJECT(v)) {
      int64_t index_bytes = 0, disk_bytes = 0;
      if (core_json_get_int(v, "index-data-bytes", &index_bytes) == 0 &&
          core_json_get_int(v, "disk-bytes", &disk_bytes) == 0 && disk_bytes > 0)
        it->dedup = (double)index_bytes / (double)disk_bytes;
      it->gc_status = core_strndup((const char *)text, len); /* NUL-terminated */
    }
    if (v)
      yajl_tree_free(v);
  }
  core_free(text);
  core_free(gcs);
}

static void usage_run(struct core_job *j)
{
  struct usage_job *u = (struct usage_job *)j;
  for (size_t i = 0; i < u->n; i++)
    usage_item_run(&u->items[i]);
}

static void respond_usage(struct store_metrics *m, struct http_request *req);

static void usage_done(struct core_job *j, int status)
{
  struct usage_job *u = (struct usage_job *)j;
  struct store_metrics *m = u->m;
  m->jobs--;
  if (u->req == NULL)
    m->sampling = 0;
  for (size_t i = 0; i < u->n; i++) {
    struct usage_item *it = &u->items[i];
    struct store_metrics_ds *d = core_map_get(&m->stores, it->name);
    if (d && status == 0 && it->rc == 0) {
      d->sampled = 1;
      d->total = it->total;
      d->used = it->used;
      d->avail = it->avail;
      d->sampled_at = u->now;
      if (it->dedup > 0)
        d->dedup = it->dedup;
      if (it->gc_status) {
        core_free(d->gc_status);
        d->gc_status = it->gc_status;
        it->gc_status = NULL;
      }
      int64_t last = d->nhist ? d->hist[d->nhist - 1].t : 0;
      /* Only the timer's samples go into the history: a request's does not
       * change what is on disk. */
      if (it->total > 0 && !m->closing && u->req == NULL &&
          (d->nhist == 0 || (uint64_t)(u->now - last) * 1000 >= m->sample_ms)) {
        hist_add(d, u->now, it->used, it->total);
        hist_save(m, d);
      }
    }
    core_free(it->name);
    core_free(it->path);
    core_free(it->gc_status);
  }
  if (u->req)
    respond_usage(m, u->req);
  core_free(u->items);
  core_free(u);
}

/* Samples every configured datastore; answers `req` afterwards if given. */
static void usage_sample(struct store_metrics *m, struct http_request *req)
{
  store__metrics_sync_stores(m);
  struct usage_job *u = core_new(struct usage_job);
  u->m = m;
  u->req = req;
  u->now = (int64_t)time(NULL);
  u->items = core_calloc(m->reg->instances.count + 1, sizeof(*u->items));
  const char *k;
  void *v;
  for (size_t i = 0; core_map_next(&m->reg->instances, &i, &k, &v);) {
    struct store_datastore *ds = v;
    if (ds->removed)
      continue;
    u->items[u->n].name = core_strdup(ds->name);
    u->items[u->n].path = core_strdup(ds->path);
    u->n++;
  }
  if (req == NULL)
    m->sampling = 1;
  m->jobs++;
  int rc = core_job_submit(m->loop, &u->job, usage_run, usage_done);
  if (rc < 0)
    usage_done(&u->job, rc);
}

static void on_sample_ready(void *arg, int err)
{
  struct store_metrics *m = arg;
  m->jobs--;
  if (m->closing || m->sampling)
    return;
  if (err)
    return; /* datastore.cfg unreadable: next tick */
  usage_sample(m, NULL);
}

static void on_tick(uv_timer_t *t)
{
  struct store_metrics *m = t->data;
  if (m->closing || m->sampling)
    return;
  m->jobs++;
  store_registry_refresh(m->reg, on_sample_ready, m);
}

void store_metrics_start(struct store_metrics *m)
{
  store__metrics_sync_stores(m);
  const char *k;
  void *v;
  for (size_t i = 0; core_map_next(&m->stores, &i, &k, &v);)
    hist_load(m, v);
  uv_timer_init(m->loop, &m->timer);
  m->timer.data = m;
  uint64_t period = m->stat_ms < m->sample_ms ? m->stat_ms : m->sample_ms;
  uv_timer_start(&m->timer, on_tick, 0, period ? period : 60000);
  uv_unref((uv_handle_t *)&m->timer);
  m->started = 1;
}

static void on_timer_closed(uv_handle_t *h)
{
  struct store_metrics *m = h->data;
  m->timer_closed = 1;
}

void store__usage_stop(struct store_metrics *m)
{
  if (!m->started) {
    m->timer_closed = 1;
    return;
  }
  uv_timer_stop(&m->timer);
  uv_close((uv_handle_t *)&m->timer, on_timer_closed);
}

void store_metrics_each_usage(const struct store_metrics *m, store_metrics_usage_fn fn,
                              void *arg)
{
  const char *k;
  void *v;
  for (size_t i = 0; core_map_next(&m->stores, &i, &k, &v);) {
    const struct store_metrics_ds *d = v;
    if (d->sampled)
      fn(arg, d->name, d->total, d->used, d->avail, d->sampled_at);
  }
}

/* ---- status/datastore-usage ------------------------------------------------- */

/* Least squares fit of usage = a + b * t over the history; PBS's estimate
 * of the day the datastore is full is where the line reaches 1. Returns 0
 * and the date, or -1 with fewer than two samples. */
static int estimate_full(const struct store_metrics_ds *d, int64_t *out)
{
  if (d->nhist < 2)
    return -1;
  double n = (double)d->nhist, t0 = (double)d->hist[0].t;
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (size_t i = 0; i < d->nhist; i++) {
    double x = (double)d->hist[i].t - t0; /* centered: keeps the squares exact */
    double y = (double)d->hist[i].used / (double)d->hist[i].total;
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
  }
  double den = n * sxx - sx * sx;
  if (den == 0)
    return -1;
  double b = (n * sxy - sx * sy) / den;
  double a = (sy - b * sx) / n;
  if (b == 0) {
    *out = 0; /* not growing: never full */
    return 0;
  }
  double est = t0 + (1.0 - a) / b;
  if (est > 9e15 || est < -9e15)
    est = 0;
  *out = (int64_t)est;
  return 0;
}

static void history_json(struct store_metrics *m, const struct store_metrics_ds *d,
                         struct core_json *j)
{
  int64_t delta = (int64_t)(m->sample_ms / 1000);
  if (delta <= 0)
    delta = 1;
  if (d->nhist == 0) { /* no sample kept yet (a new datastore) */
    int64_t now = (int64_t)time(NULL);
    core_json_kv_int(j, "history-start", now - now % delta);
    core_json_kv_int(j, "history-delta", delta);
    core_json_key(j, "history");
    core_json_arr_open(j);
    core_json_arr_close(j);
    return;
  }
  int64_t start = d->hist[0].t - d->hist[0].t % delta;
  int64_t slots = (d->hist[d->nhist - 1].t - start) / delta + 1;
  if (slots > STORE_USAGE_SAMPLES) {
    start += (slots - STORE_USAGE_SAMPLES) * delta;
    slots = STORE_USAGE_SAMPLES;
  }
  core_json_kv_int(j, "history-start", start);
  core_json_kv_int(j, "history-delta", delta);
  core_json_key(j, "history");
  core_json_arr_open(j);
  size_t h = 0;
  for (int64_t s = 0; s < slots; s++) {
    int64_t end = start + (s + 1) * delta;
    double val = -1;
    while (h < d->nhist && d->hist[h].t < end) {
      if (d->hist[h].t >= start + s * delta)
        val = (double)d->hist[h].used / (double)d->hist[h].total;
      h++;
    }
    if (val < 0)
      core_json_null(j);
    else
      core_json_double(j, val);
  }
  core_json_arr_close(j);
}

static void respond_usage(struct store_metrics *m, struct http_request *req)
{
  struct core_json j;
  core_json_init(&j, 0);
  core_json_arr_open(&j);
  const char *authid = http_req_authid(req);
  for (size_t i = 0; i < m->reg->cfg.nsections; i++) {
    const struct core_config_section *sec = m->reg->cfg.sections[i];
    if (strcmp(sec->type, "datastore") != 0)
      continue;
    if (m->access && authid &&
        !(store_access_privs(m->access, authid, sec->name, NULL) &
          (ACCESS_PRIV_DATASTORE_AUDIT | ACCESS_PRIV_DATASTORE_BACKUP)))
      continue;
    struct store_datastore *ds = core_map_get(&m->reg->instances, sec->name);
    struct store_metrics_ds *d = core_map_get(&m->stores, sec->name);
    core_json_obj_open(&j);
    core_json_kv_str(&j, "store", sec->name);
    core_json_kv_str(&j, "backend-type", ds && store_datastore_is_s3(ds) ? "s3" : "filesystem");
    if (ds && ds->maint != STORE_MAINT_NONE)
      core_json_kv_str(&j, "maintenance", store_maint_name(ds->maint));
    if (d == NULL || !d->sampled) {
      core_json_kv_str(&j, "error", "usage not available");
    } else {
      core_json_kv_uint(&j, "total", d->total);
      core_json_kv_uint(&j, "used", d->used);
      core_json_kv_uint(&j, "avail", d->avail);
      if (d->gc_status) {
        core_json_key(&j, "gc-status");
        core_json_raw(&j, d->gc_status, strlen(d->gc_status));
      }
      history_json(m, d, &j);
      int64_t est;
      if (estimate_full(d, &est) == 0)
        core_json_kv_int(&j, "estimated-full-date", est);
    }
    core_json_obj_close(&j);
  }
  core_json_arr_close(&j);
  http_respond_json(req, &j);
}

static void usage_ready(void *arg, int err)
{
  struct http_request *req = arg;
  struct store_metrics *m = http_req_route_ctx(req);
  if (err) {
    http_respond_errno(req, err, "cannot read datastore.cfg");
    return;
  }
  usage_sample(m, req);
}

static void h_usage(struct http_request *req, void *ctx)
{
  struct store_metrics *m = ctx;
  store_registry_refresh(m->reg, usage_ready, req);
}

void store_metrics_register(struct http_server *s, struct store_metrics *m)
{
  const struct http_route routes[] = {
    {HTTP_METHOD_GET, "/api2/json/readyz", store__metrics_h_ready, m, 0, HTTP_ROUTE_NOAUTH,
     ACCESS_AUTHENTICATED},
    {HTTP_METHOD_GET, "/api2/json/status/datastore-usage", h_usage, m, 0, 0,
     ACCESS_AUTHENTICATED},
  };
  http_server_add_routes(s, routes, sizeof(routes) / sizeof(routes[0]));
}
