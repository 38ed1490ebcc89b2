/* cairnd_observe.h: cairnd's observability glue: the metrics registry and
 * GET /metrics (on the main listener with Sys.Audit on /system, or without
 * authentication on a separate --metrics-listen address), the event-loop
 * lag histogram, PBS's nodes/localhost/status and status/metrics, and
 * systemd integration (cairnd_systemd.c). Loop thread only.
 */
#ifndef CAIRND_OBSERVE_H
#define CAIRND_OBSERVE_H

#include "core/core_metrics.h"
#include "core/core_pool.h"
#include "http/http.h"
#include "store/store_metrics.h"

#include <stdint.h>
#include <uv.h>

#define CAIRND_LAG_PERIOD_MS 100   /* the lag probe's period */
#define CAIRND_METRICS_MAX (256u * 1024 * 1024) /* bound of one scrape's text */

struct cairnd_observe {
  uv_loop_t *loop;
  int enabled;                     /* 0: --no-metrics (no counting, no /metrics) */
  struct core_metrics reg;         /* collectors, in scrape order */
  struct core_pool *pools[3];      /* NULL-terminated, borrowed */
  struct store_metrics store;      /* last-backup cache, usage, readiness */
  struct http_tls **tls;           /* borrowed: the current server context (SIGHUP swaps it) */
  struct http_server *metrics_http;/* --metrics-listen server, or NULL */
  int64_t started;                 /* epoch seconds */
  /* event loop lag: a timer that should fire every CAIRND_LAG_PERIOD_MS */
  uv_timer_t lag_timer;
  uint64_t lag_expect_ns;          /* uv_hrtime() the next tick is due */
  struct core_hist lag;
  int lag_on;
  /* the loop's busy time per iteration: from one poll to the next, minus
   * the time the poll blocked (uv_metrics_idle_time) */
  uv_prepare_t busy_probe;
  uint64_t busy_prev_ns, busy_prev_idle, busy_prev_cpu;
  struct core_hist busy;
  struct core_hist busy_cpu; /* the loop thread's CPU time per iteration */
  /* scrapes */
  struct core_hist scrape;         /* server time to render /metrics */
  /* CPU usage for nodes/localhost/status: the previous /proc/stat reading */
  uint64_t cpu_prev_total, cpu_prev_idle, cpu_prev_iowait;
  /* systemd watchdog (cairnd_systemd.c) */
  uv_timer_t watchdog;
  int watchdog_on;
};

/* Sets up the registry (collectors are added by cairnd_observe_add_*) and the
 * store part (store_metrics_init). */
void cairnd_observe_init(struct cairnd_observe *o, uv_loop_t *loop,
                         struct store_registry *reg, const char *config_dir, int enabled);
/* Registers a collector (ignored when disabled). */
void cairnd_observe_add(struct cairnd_observe *o, core_metrics_collect_fn fn, void *ctx);
/* Adds the routes to the main server: /metrics, readyz, the status endpoints. */
void cairnd_observe_routes(struct cairnd_observe *o, struct http_server *http);
/* Starts the lag probe and the store part's scans and sampling. */
void cairnd_observe_start(struct cairnd_observe *o);
/* Serves /metrics without authentication on `addr` (plain HTTP). Returns 0
 * or a listen error. */
int cairnd_observe_listen(struct cairnd_observe *o, const char *addr,
                          const struct http_limits *limits);
/* Stops the metrics listener (with the main server's shutdown). */
void cairnd_observe_shutdown(struct cairnd_observe *o);
/* Frees everything; blocking (runs the loop for the store part's jobs). */
void cairnd_observe_close(struct cairnd_observe *o);

/* ---- systemd (cairnd_systemd.c) ---- */

/* Sockets passed by systemd socket activation (LISTEN_FDS/LISTEN_PID for
 * this process): their count (fds 3..3+n-1), 0 when none. The variables
 * are unset so children do not inherit them. */
int cairnd_systemd_listen_fds(void);
/* READY=1 (with a STATUS= line) once the listeners are up; starts the
 * watchdog timer when WATCHDOG_USEC asks for it. */
void cairnd_systemd_ready(struct cairnd_observe *o, const char *status);
/* STOPPING=1 when shutdown begins. */
void cairnd_systemd_stopping(void);
/* Closes the watchdog timer (shutdown). */
void cairnd_systemd_close(struct cairnd_observe *o);

#endif
