/* cairnd_observe.c: see cairnd_observe.h.
 *
 * A scrape renders on the loop: every collector reads atomics or loop-owned
 * tables, and the per-group lines of the last-backup cache are preformatted,
 * so even 10,000 groups are a few hundred kilobytes of memcpy. Host
 * figures for nodes/localhost/status come from /proc and statvfs in a pool
 * job.
 */
#include "cmd/cairnd_observe.h"

#include "access/access.h"
#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_job.h"
#include "core/core_json.h"
#include "core/core_log.h"
#include "http/http_tls.h"
#include "store/store_registry.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define CAIRN_VERSION_LABEL "0.1.0"

/* ---- event loop lag ---- */

static const double lag_bounds[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025,
                                    0.05,   0.1,   0.25,  0.5,   1,    5};

static void on_lag_tick(uv_timer_t *t)
{
  struct cairnd_observe *o = t->data;
  uint64_t now = uv_hrtime();
  /* libuv timers have millisecond resolution: lateness below that is the
   * timer's granularity, not the loop's. */
  uint64_t late = now > o->lag_expect_ns ? now - o->lag_expect_ns : 0;
  core_hist_observe_ns(&o->lag, late);
  o->lag_expect_ns = now + (uint64_t)CAIRND_LAG_PERIOD_MS * 1000000u;
}

static uint64_t thread_cpu_ns(void)
{
  struct timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
    return 0;
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Before each poll: this iteration's callbacks ran from the previous poll's
 * start to now, minus the time that poll blocked. Wall clock: a thread
 * preempted mid-callback counts as busy (the lag histogram and
 * /proc/PID/task/PID/schedstat tell the two apart), and the thread's CPU
 * time over the same span beside it. */
static void on_busy_probe(uv_prepare_t *h)
{
  struct cairnd_observe *o = h->data;
  uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(h->loop), cpu = thread_cpu_ns();
  if (o->busy_prev_ns) {
    uint64_t span = now - o->busy_prev_ns, waited = idle - o->busy_prev_idle;
    core_hist_observe_ns(&o->busy, span > waited ? span - waited : 0);
    core_hist_observe_ns(&o->busy_cpu, cpu > o->busy_prev_cpu ? cpu - o->busy_prev_cpu : 0);
  }
  o->busy_prev_ns = now;
  o->busy_prev_idle = idle;
  o->busy_prev_cpu = cpu;
}

static int collect_self(void *ctx, struct core_buf *out)
{
  struct cairnd_observe *o = ctx;
  int rc = core_metrics_family(out, "cairn_build_info", "gauge", "Version of this server.");
  if (rc == 0)
    rc = core_metrics_u64(out, "cairn_build_info", "version=\"" CAIRN_VERSION_LABEL "\"", 1);
  if (rc == 0)
    rc = core_metrics_family(out, "cairn_start_time_seconds", "gauge",
                             "When the server started (epoch seconds).");
  if (rc == 0)
    rc = core_metrics_i64(out, "cairn_start_time_seconds", NULL, o->started);
  if (rc == 0)
    rc = core_metrics_family(out, "cairn_event_loop_lag_seconds", "histogram",
                             "How late a 100 ms timer on the event loop fires.");
  if (rc == 0)
    rc = core_metrics_hist(out, "cairn_event_loop_lag_seconds", NULL, &o->lag);
  if (rc == 0)
    rc = core_metrics_family(out, "cairn_event_loop_busy_seconds", "histogram",
                             "Time one event-loop iteration spent outside its poll.");
  if (rc == 0)
    rc = core_metrics_hist(out, "cairn_event_loop_busy_seconds", NULL, &o->busy);
  if (rc == 0)
    rc = core_metrics_family(out, "cairn_event_loop_busy_cpu_seconds", "histogram",
                             "CPU time the event-loop thread used per iteration (busy "
                             "minus this: preempted or waiting for a CPU).");
  if (rc == 0)
    rc = core_metrics_hist(out, "cairn_event_loop_busy_cpu_seconds", NULL, &o->busy_cpu);
  if (rc == 0)
    rc = core_metrics_family(out, "cairn_metrics_scrape_seconds", "histogram",
                             "Server time spent rendering /metrics (earlier scrapes).");
  if (rc == 0)
    rc = core_metrics_hist(out, "cairn_metrics_scrape_seconds", NULL, &o->scrape);
  return rc;
}

void cairnd_observe_init(struct cairnd_observe *o, uv_loop_t *loop,
                         struct store_registry *reg, const char *config_dir, int enabled)
{
  memset(o, 0, sizeof(*o));
  o->loop = loop;
  o->enabled = enabled;
  o->started = (int64_t)time(NULL);
  core_metrics_init(&o->reg);
  core_hist_init(&o->lag, lag_bounds, (int)(sizeof(lag_bounds) / sizeof(lag_bounds[0])));
  core_hist_init(&o->busy, lag_bounds, (int)(sizeof(lag_bounds) / sizeof(lag_bounds[0])));
  core_hist_init(&o->busy_cpu, lag_bounds, (int)(sizeof(lag_bounds) / sizeof(lag_bounds[0])));
  core_hist_init(&o->scrape, core_hist_latency_bounds, core_hist_latency_nbounds);
  store_metrics_init(&o->store, loop, reg, config_dir);
  cairnd_observe_add(o, collect_self, o);
}

void cairnd_observe_add(struct cairnd_observe *o, core_metrics_collect_fn fn, void *ctx)
{
  if (o->enabled && core_metrics_register(&o->reg, fn, ctx) < 0)
    core_warn("metrics: too many collectors; one is left out");
}

void cairnd_observe_start(struct cairnd_observe *o)
{
  store_metrics_start(&o->store);
  if (!o->enabled)
    return;
  uv_timer_init(o->loop, &o->lag_timer);
  o->lag_timer.data = o;
  o->lag_expect_ns = uv_hrtime() + (uint64_t)CAIRND_LAG_PERIOD_MS * 1000000u;
  uv_timer_start(&o->lag_timer, on_lag_tick, CAIRND_LAG_PERIOD_MS, CAIRND_LAG_PERIOD_MS);
  uv_unref((uv_handle_t *)&o->lag_timer);
  o->lag_on = 1;
  uv_loop_configure(o->loop, UV_METRICS_IDLE_TIME);
  uv_prepare_init(o->loop, &o->busy_probe);
  o->busy_probe.data = o;
  uv_prepare_start(&o->busy_probe, on_busy_probe);
  uv_unref((uv_handle_t *)&o->busy_probe);
}

/* ---- GET /metrics ---- */

static void h_metrics(struct http_request *req, void *ctx)
{
  struct cairnd_observe *o = ctx;
  uint64_t t0 = uv_hrtime();
  struct core_buf b;
  core_buf_init(&b, CAIRND_METRICS_MAX);
  int rc = core_metrics_render(&o->reg, &b);
  if (rc < 0) {
    core_buf_free(&b);
    http_respond_errno(req, rc, "rendering the metrics failed");
    return;
  }
  size_t len;
  char *text = core_buf_steal(&b, &len);
  if (text == NULL)
    text = core_strdup("");
  core_hist_observe_ns(&o->scrape, uv_hrtime() - t0);
  http_respond_owned(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

int cairnd_observe_listen(struct cairnd_observe *o, const char *addr,
                          const struct http_limits *limits)
{
  if (o->metrics_http == NULL) {
    o->metrics_http = http_server_new(o->loop, limits);
    static const struct http_route routes[] = {
      {HTTP_METHOD_GET, "/metrics", h_metrics, NULL, 0, HTTP_ROUTE_NOAUTH,
       ACCESS_AUTHENTICATED},
    };
    struct http_route r = routes[0];
    r.ctx = o;
    http_server_add_routes(o->metrics_http, &r, 1);
  }
  return http_server_listen(o->metrics_http, addr, NULL);
}

void cairnd_observe_shutdown(struct cairnd_observe *o)
{
  if (o->metrics_http) {
    http_server_free(o->metrics_http);
    o->metrics_http = NULL;
  }
  if (o->lag_on) {
    uv_timer_stop(&o->lag_timer);
    uv_close((uv_handle_t *)&o->lag_timer, NULL);
    uv_prepare_stop(&o->busy_probe);
    uv_close((uv_handle_t *)&o->busy_probe, NULL);
    o->lag_on = 0;
  }
  cairnd_systemd_close(o);
}

void cairnd_observe_close(struct cairnd_observe *o)
{
  cairnd_observe_shutdown(o);
  store_metrics_close(&o->store);
}

/* ---- nodes/localhost/status ---- */

struct node_job {
  struct core_job job;
  struct http_request *req;
  struct cairnd_observe *o;
  /* out */
  struct sysinfo si;
  int si_ok;
  struct statvfs root;
  int root_ok;
  struct utsname uts;
  int uts_ok;
  char model[128];
  int cpus;
  int sockets;
  uint64_t cpu_total, cpu_idle, cpu_iowait; /* /proc/stat jiffies, 0 unknown */
  int efi;
};

/* Reads a /proc file (its size shows as 0, so core_file_read does not
 * fit) into a NUL-terminated heap buffer of at most `max` bytes. Pool. */
static char *read_proc(const char *path, size_t max)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return NULL;
  size_t cap = 16384, len = 0;
  char *buf = core_malloc(cap);
  for (;;) {
    if (len + 1 == cap) {
      if (cap >= max)
        break;
      cap *= 2;
      buf = core_realloc(buf, cap);
    }
    ssize_t n = read(fd, buf + len, cap - 1 - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    len += (size_t)n;
  }
  close(fd);
  buf[len] = '\0';
  return buf;
}

static void read_cpuinfo(struct node_job *n)
{
  n->cpus = 0;
  char *text = read_proc("/proc/cpuinfo", 4u << 20);
  if (text == NULL)
    return;
  int phys[64];
  int nphys = 0;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save)) {
    char *colon = strchr(line, ':');
    if (colon == NULL)
      continue;
    const char *val = colon + 1;
    while (*val == ' ')
      val++;
    if (!strncmp(line, "processor", 9)) {
      n->cpus++;
    } else if (!strncmp(line, "model name", 10) && n->model[0] == '\0') {
      snprintf(n->model, sizeof(n->model), "%s", val);
    } else if (!strncmp(line, "physical id", 11)) {
      int id = (int)strtol(val, NULL, 10), seen = 0;
      for (int i = 0; i < nphys; i++)
        seen |= phys[i] == id;
      if (!seen && nphys < 64)
        phys[nphys++] = id;
    }
  }
  n->sockets = nphys ? nphys : 1;
  core_free(text);
}

static void read_stat(struct node_job *n)
{
  char *text = read_proc("/proc/stat", 1u << 20);
  if (text == NULL)
    return;
  unsigned long long v[8] = {0};
  if (sscanf(text, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
             &v[3], &v[4], &v[5], &v[6], &v[7]) >= 5) {
    for (int i = 0; i < 8; i++)
      n->cpu_total += v[i];
    n->cpu_idle = v[3];
    n->cpu_iowait = v[4];
  }
  core_free(text);
}

static void node_run(struct core_job *j)
{
  struct node_job *n = (struct node_job *)j;
  n->si_ok = sysinfo(&n->si) == 0;
  n->root_ok = statvfs("/", &n->root) == 0;
  n->uts_ok = uname(&n->uts) == 0;
  read_cpuinfo(n);
  read_stat(n);
  struct statvfs efi;
  n->efi = statvfs("/sys/firmware/efi", &efi) == 0;
}

static void node_done(struct core_job *j, int status)
{
  struct node_job *n = (struct node_job *)j;
  struct cairnd_observe *o = n->o;
  if (status < 0) {
    http_respond_errno(n->req, status, "node status");
    core_free(n);
    return;
  }
  struct core_json js;
  core_json_init(&js, 0);
  core_json_obj_open(&js);
  if (n->si_ok) {
    uint64_t unit = n->si.mem_unit ? n->si.mem_unit : 1;
    uint64_t total = n->si.totalram * unit, fr = n->si.freeram * unit;
    uint64_t avail = (n->si.freeram + n->si.bufferram) * unit;
    core_json_key(&js, "memory");
    core_json_obj_open(&js);
    core_json_kv_uint(&js, "total", total);
    core_json_kv_uint(&js, "used", total - (avail < total ? avail : total));
    core_json_kv_uint(&js, "free", fr);
    core_json_obj_close(&js);
    core_json_key(&js, "swap");
    core_json_obj_open(&js);
    core_json_kv_uint(&js, "total", n->si.totalswap * unit);
    core_json_kv_uint(&js, "used", (n->si.totalswap - n->si.freeswap) * unit);
    core_json_kv_uint(&js, "free", n->si.freeswap * unit);
    core_json_obj_close(&js);
    core_json_kv_int(&js, "uptime", (int64_t)n->si.uptime);
    core_json_key(&js, "loadavg");
    core_json_arr_open(&js);
    for (int i = 0; i < 3; i++)
      core_json_double(&js, (double)n->si.loads[i] / (double)(1 << SI_LOAD_SHIFT));
    core_json_arr_close(&js);
  }
  if (n->root_ok) {
    uint64_t total = (uint64_t)n->root.f_blocks * n->root.f_frsize;
    core_json_key(&js, "root");
    core_json_obj_open(&js);
    core_json_kv_uint(&js, "total", total);
    core_json_kv_uint(&js, "used", total - (uint64_t)n->root.f_bfree * n->root.f_frsize);
    core_json_kv_uint(&js, "avail", (uint64_t)n->root.f_bavail * n->root.f_frsize);
    core_json_obj_close(&js);
  }
  /* CPU usage since the previous call (since boot on the first). */
  double cpu = 0, wait = 0;
  if (n->cpu_total > o->cpu_prev_total) {
    double dt = (double)(n->cpu_total - o->cpu_prev_total);
    double idle = (double)(n->cpu_idle - o->cpu_prev_idle);
    double io = (double)(n->cpu_iowait - o->cpu_prev_iowait);
    cpu = 1.0 - (idle + io) / dt;
    wait = io / dt;
    if (cpu < 0)
      cpu = 0;
    o->cpu_prev_total = n->cpu_total;
    o->cpu_prev_idle = n->cpu_idle;
    o->cpu_prev_iowait = n->cpu_iowait;
  }
  core_json_key(&js, "cpu");
  core_json_double(&js, cpu);
  core_json_key(&js, "wait");
  core_json_double(&js, wait);
  core_json_key(&js, "cpuinfo");
  core_json_obj_open(&js);
  core_json_kv_str(&js, "model", n->model[0] ? n->model : "unknown");
  core_json_kv_int(&js, "sockets", n->sockets ? n->sockets : 1);
  core_json_kv_int(&js, "cpus", n->cpus);
  core_json_obj_close(&js);
  if (n->uts_ok) {
    char kv[3 * 65 + 8];
    snprintf(kv, sizeof(kv), "%s %s %s", n->uts.sysname, n->uts.release, n->uts.version);
    core_json_kv_str(&js, "kversion", kv);
    core_json_key(&js, "current-kernel");
    core_json_obj_open(&js);
    core_json_kv_str(&js, "sysname", n->uts.sysname);
    core_json_kv_str(&js, "release", n->uts.release);
    core_json_kv_str(&js, "version", n->uts.version);
    core_json_kv_str(&js, "machine", n->uts.machine);
    core_json_obj_close(&js);
  }
  core_json_key(&js, "boot-info");
  core_json_obj_open(&js);
  core_json_kv_str(&js, "mode", n->efi ? "efi" : "legacy-bios");
  core_json_obj_close(&js);
  core_json_key(&js, "info");
  core_json_obj_open(&js);
  const char *fp = o->tls && *o->tls ? http_tls_fingerprint(*o->tls) : NULL;
  if (fp)
    core_json_kv_str(&js, "fingerprint", fp);
  else
    core_json_kv_str(&js, "fingerprint", "");
  core_json_obj_close(&js);
  core_json_obj_close(&js);
  http_respond_json(n->req, &js);
  core_free(n);
}

static void h_node_status(struct http_request *req, void *ctx)
{
  struct node_job *n = core_new(struct node_job);
  n->req = req;
  n->o = ctx;
  int rc = core_job_submit(http_req_loop(req), &n->job, node_run, node_done);
  if (rc < 0)
    node_done(&n->job, rc);
}

/* ---- status/metrics: PBS's pull-metrics shape ---- */

struct pull_ctx {
  struct core_json *j;
  int64_t now;
};

static void point(struct core_json *j, int64_t ts, const char *id, const char *metric,
                  const char *type, double value)
{
  core_json_obj_open(j);
  core_json_kv_int(j, "timestamp", ts);
  core_json_kv_str(j, "id", id);
  core_json_kv_str(j, "metric", metric);
  core_json_kv_str(j, "type", type);
  core_json_key(j, "value");
  core_json_double(j, value);
  core_json_obj_close(j);
}

static void pull_usage(void *arg, const char *store, uint64_t total, uint64_t used,
                       uint64_t avail, int64_t sampled_at)
{
  struct pull_ctx *p = arg;
  char id[160];
  snprintf(id, sizeof(id), "datastore/%s", store);
  point(p->j, sampled_at, id, "disk_total", "gauge", (double)total);
  point(p->j, sampled_at, id, "disk_used", "gauge", (double)used);
  point(p->j, sampled_at, id, "disk_available", "gauge", (double)avail);
}

static void h_pull_metrics(struct http_request *req, void *ctx)
{
  struct cairnd_observe *o = ctx;
  int64_t start_time;
  if (http_req_param_int(req, "start-time", 0, INT64_MAX, 0, &start_time) < 0)
    return;
  int history;
  if (http_req_param_bool(req, "history", 0, &history) < 0)
    return;
  struct core_json j;
  core_json_init(&j, 0);
  core_json_obj_open(&j);
  core_json_key(&j, "data");
  core_json_arr_open(&j);
  struct pull_ctx p = {&j, (int64_t)time(NULL)};
  store_metrics_each_usage(&o->store, pull_usage, &p);
  /* Counters of the datastores, as PBS's "derive" type: ever increasing. */
  const char *k;
  void *v;
  for (size_t i = 0; core_map_next(&o->store.reg->instances, &i, &k, &v);) {
    const struct store_datastore *ds = v;
    if (ds->removed)
      continue;
    char id[160];
    snprintf(id, sizeof(id), "datastore/%s", ds->name);
    point(&j, p.now, id, "chunk_uploads_new", "derive",
          (double)core_counter_get(&ds->stats.chunks_new));
    point(&j, p.now, id, "chunk_uploads_present", "derive",
          (double)core_counter_get(&ds->stats.chunks_present));
    point(&j, p.now, id, "chunk_received_bytes", "derive",
          (double)core_counter_get(&ds->stats.bytes_received));
    point(&j, p.now, id, "backups_finished", "derive",
          (double)core_counter_get(&ds->stats.snapshots));
  }
  point(&j, p.now, "host", "uptime", "gauge", (double)(p.now - o->started));
  uint64_t lag_n = atomic_load(&o->lag.count);
  if (lag_n)
    point(&j, p.now, "host", "event_loop_lag_avg", "gauge",
          (double)atomic_load(&o->lag.sum_ns) / 1e9 / (double)lag_n);
  (void)history; /* samples older than the current ones are in datastore-usage */
  (void)start_time;
  core_json_arr_close(&j);
  core_json_obj_close(&j);
  http_respond_json(req, &j);
}

void cairnd_observe_routes(struct cairnd_observe *o, struct http_server *http)
{
  struct http_route routes[] = {
    {HTTP_METHOD_GET, "/metrics", h_metrics, o, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_SYS_AUDIT, ACCESS_ON_SYSTEM)},
    {HTTP_METHOD_GET, "/api2/json/nodes/localhost/status", h_node_status, o, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_SYS_AUDIT, ACCESS_ON_SYSTEM)},
    {HTTP_METHOD_GET, "/api2/json/status/metrics", h_pull_metrics, o, 0, 0,
     ACCESS_NEEDS(ACCESS_PRIV_SYS_AUDIT, ACCESS_ON_SYSTEM)},
  };
  /* Without metrics, /metrics is not served (404) but the status
   * endpoints stay. */
  size_t first = o->enabled ? 0 : 1;
  http_server_add_routes(http, routes + first, sizeof(routes) / sizeof(routes[0]) - first);
  store_metrics_register(http, &o->store);
}
