/* cairnd: the Cairn backup datastore server.
 *
 * Startup (which may block) prepares the config and run directories, the
 * shared generation page, the TLS key and certificate, the root token, the
 * access control state and the datastore registry; then one event loop serves
 * everything. SIGINT/SIGTERM stop accepting and let requests in flight
 * finish; SIGHUP reloads the certificate and re-reads the user, token and ACL
 * files (which edits reach without it anyway, see store_access.h).
 */
#include "core/core_alloc.h"
#include "access/access.h"
#include "cmd/cairnd_observe.h"
#include "cmd/cairnd_firststart.h"
#include "cmd/cairnd_health.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "core/core_parse.h"
#include "core/core_pool.h"
#include "core/core_sched.h"
#include "core/core_shmem.h"
#include "gc/gc_api.h"
#include "gc/gc_s3.h"
#include "http/http.h"
#include "http/http_tls.h"
#include "s3/s3_api.h"
#include "store/store_access.h"
#include "store/store_api.h"
#include "store/store_recover.h"
#include "store/store_registry.h"
#include "store/store_session.h"
#include "sync/sync.h"

#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define CAIRN_VERSION "0.1.0"
#define MAX_LISTEN 8

struct options {
  const char *config_dir;
  const char *run_dir;
  const char *listen[MAX_LISTEN];
  int nlisten;
  int no_tls;
  int debug_reread;
  const char *metrics_listen; /* --metrics-listen: /metrics without authentication */
  int no_metrics;
  int health_check;          /* --health-check: be the client, see cairnd_health.h */
  uint64_t session_timeout_ms;
  unsigned auth_fail_limit;   /* failed authentications per address per minute */
  enum core_log_level log_level;
  struct http_limits limits;
};

/* Everything the server owns, in one place (no globals). */
struct cairnd {
  struct options opt;
  uv_loop_t *loop;
  struct core_pool pool;     /* every core_job of the loop runs here */
  struct core_shmem shmem;
  struct http_tls *tls;
  struct store_access access;
  struct store_registry reg;
  struct store_api store_api;
  struct store_sessions sessions;
  struct gc_ctx gc;
  struct sync_ctx sync;
  struct s3_api s3_api;
  struct http_server *http;
  struct cairnd_observe obs; /* metrics, readiness, status, systemd */
  uv_signal_t sigint, sigterm, sighup;
  int stopping;
  int reloading;             /* a SIGHUP reload job is in flight */
};

static void usage(FILE *f)
{
  fprintf(f,
          "usage: cairnd [options]\n"
          "  --config-dir DIR        configuration directory (default /etc/cairn;\n"
          "                          env CAIRN_CONFIG_DIR)\n"
          "  --run-dir DIR           runtime directory (default /run/cairn; CAIRN_RUN_DIR)\n"
          "  --listen HOST:PORT      address to listen on, repeatable, [::1]:PORT for IPv6\n"
          "                          (default 0.0.0.0:8007; CAIRN_LISTEN, comma separated)\n"
          "  --no-tls                plain HTTP (CAIRN_NO_TLS=1)\n"
          "  --log-level LEVEL       error, warn, info or debug (default info;\n"
          "                          CAIRN_LOG_LEVEL)\n"
          "  --header-timeout-ms N   time allowed for a request's headers (default 15000)\n"
          "  --idle-timeout-ms N     keep-alive idle time (default 60000)\n"
          "  --max-connections N     open connections at most (default 16384)\n"
          "  --session-timeout-ms N  idle backup/reader sessions are aborted (default 900000)\n"
          "  --shutdown-grace-ms N   SIGTERM: time requests in flight get (default 10000;\n"
          "                          keep it below the orchestrator's stop timeout)\n"
          "  --auth-fail-limit N     failed logins and token checks per client address per\n"
          "                          minute before it gets 429 (default 5; 0: no limit)\n"
          "  --metrics-listen H:P    serve /metrics without authentication there, plain\n"
          "                          HTTP (CAIRN_METRICS_LISTEN; docs/metrics.md)\n"
          "  --no-metrics            count nothing and serve no /metrics (CAIRN_METRICS=0)\n"
          "  --debug-reread-config   re-read datastore.cfg on every lookup (benchmarks only)\n"
          "  --health-check          ping the server these options describe; exit 0 if\n"
          "                          it answers (the image's HEALTHCHECK)\n"
          "  --help                  this text\n");
}

static int env_true(const char *name)
{
  const char *v = getenv(name);
  return v && (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes"));
}

static int parse_options(int argc, char **argv, struct options *o)
{
  static char listen_env[512];
  memset(o, 0, sizeof(*o));
  o->config_dir = getenv("CAIRN_CONFIG_DIR") ? getenv("CAIRN_CONFIG_DIR") : "/etc/cairn";
  o->run_dir = getenv("CAIRN_RUN_DIR") ? getenv("CAIRN_RUN_DIR") : "/run/cairn";
  o->no_tls = env_true("CAIRN_NO_TLS");
  o->log_level = CORE_LOG_INFO;
  o->auth_fail_limit = STORE_ACCESS_MAX_FAILS;
  o->metrics_listen = getenv("CAIRN_METRICS_LISTEN");
  if (o->metrics_listen && !*o->metrics_listen)
    o->metrics_listen = NULL;
  o->no_metrics = getenv("CAIRN_METRICS") && !strcmp(getenv("CAIRN_METRICS"), "0");
  if (getenv("CAIRN_LOG_LEVEL") &&
      core_log_parse_level(getenv("CAIRN_LOG_LEVEL"), &o->log_level) < 0) {
    fprintf(stderr, "cairnd: invalid CAIRN_LOG_LEVEL\n");
    return -1;
  }
  if (getenv("CAIRN_LISTEN")) {
    snprintf(listen_env, sizeof(listen_env), "%s", getenv("CAIRN_LISTEN"));
    char *save = NULL;
    for (char *t = strtok_r(listen_env, ", ", &save); t && o->nlisten < MAX_LISTEN;
         t = strtok_r(NULL, ", ", &save))
      o->listen[o->nlisten++] = t;
  }
  enum { O_CONFIG = 1, O_RUN, O_LISTEN, O_NOTLS, O_LOG, O_HDR, O_IDLE, O_MAXC, O_REREAD,
         O_SESSION, O_FAILS, O_HEALTH, O_GRACE, O_HELP, O_MLISTEN, O_NOMETRICS };
  static const struct option longopts[] = {
    {"config-dir", required_argument, NULL, O_CONFIG},
    {"run-dir", required_argument, NULL, O_RUN},
    {"listen", required_argument, NULL, O_LISTEN},
    {"no-tls", no_argument, NULL, O_NOTLS},
    {"log-level", required_argument, NULL, O_LOG},
    {"header-timeout-ms", required_argument, NULL, O_HDR},
    {"idle-timeout-ms", required_argument, NULL, O_IDLE},
    {"max-connections", required_argument, NULL, O_MAXC},
    {"debug-reread-config", no_argument, NULL, O_REREAD},
    {"session-timeout-ms", required_argument, NULL, O_SESSION},
    {"auth-fail-limit", required_argument, NULL, O_FAILS},
    {"health-check", no_argument, NULL, O_HEALTH},
    {"shutdown-grace-ms", required_argument, NULL, O_GRACE},
    {"help", no_argument, NULL, O_HELP},
    {"metrics-listen", required_argument, NULL, O_MLISTEN},
    {"no-metrics", no_argument, NULL, O_NOMETRICS},
    {NULL, 0, NULL, 0},
  };
  int cli_listen = 0, c;
  uint64_t v;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case O_CONFIG: o->config_dir = optarg; break;
    case O_RUN: o->run_dir = optarg; break;
    case O_LISTEN:
      if (!cli_listen) {
        o->nlisten = 0; /* the command line replaces the environment */
        cli_listen = 1;
      }
      if (o->nlisten == MAX_LISTEN) {
        fprintf(stderr, "cairnd: at most %d --listen addresses\n", MAX_LISTEN);
        return -1;
      }
      o->listen[o->nlisten++] = optarg;
      break;
    case O_NOTLS: o->no_tls = 1; break;
    case O_LOG:
      if (core_log_parse_level(optarg, &o->log_level) < 0) {
        fprintf(stderr, "cairnd: --log-level must be error, warn, info or debug\n");
        return -1;
      }
      break;
    case O_HDR:
    case O_IDLE:
    case O_MAXC:
    case O_SESSION:
    case O_GRACE:
      if (core_parse_u64(optarg, &v) < 0 || v == 0) {
        fprintf(stderr, "cairnd: %s needs a positive number\n", argv[optind - 1]);
        return -1;
      }
      if (c == O_HDR)
        o->limits.header_timeout_ms = v;
      else if (c == O_IDLE)
        o->limits.idle_timeout_ms = v;
      else if (c == O_SESSION)
        o->session_timeout_ms = v;
      else if (c == O_GRACE)
        o->limits.shutdown_grace_ms = v;
      else
        o->limits.max_connections = (unsigned)v;
      break;
    case O_FAILS:
      if (core_parse_u64(optarg, &v) < 0 || v > 1000000) {
        fprintf(stderr, "cairnd: --auth-fail-limit needs a number\n");
        return -1;
      }
      o->auth_fail_limit = (unsigned)v;
      break;
    case O_REREAD: o->debug_reread = 1; break;
    case O_MLISTEN: o->metrics_listen = optarg; break;
    case O_NOMETRICS: o->no_metrics = 1; break;
    case O_HEALTH: o->health_check = 1; break;
    case O_HELP: usage(stdout); exit(0);
    default: usage(stderr); return -1;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "cairnd: unexpected argument '%s'\n", argv[optind]);
    return -1;
  }
  if (o->nlisten == 0)
    o->listen[o->nlisten++] = "0.0.0.0:8007";
  return 0;
}

/* ---- Tiny server-level handlers ---- */

static void h_version(struct http_request *req, void *ctx)
{
  static const char v[] = "{\"version\":\"" CAIRN_VERSION "\",\"release\":\"0\","
                          "\"repoid\":\"cairn\"}";
  http_respond_data(req, v, sizeof(v) - 1);
}

static void h_ping(struct http_request *req, void *ctx)
{
  static const char v[] = "{\"pong\":true}";
  http_respond_data(req, v, sizeof(v) - 1);
}

/* ---- Signals ---- */

static void on_shutdown_done(void *ctx)
{
  struct cairnd *d = ctx;
  core_info("all connections closed; exiting");
  uv_stop(d->loop);
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
  struct cairnd *d = h->data;
  if (d->stopping) {
    core_warn("second signal: exiting now");
    uv_stop(d->loop);
    return;
  }
  d->stopping = 1;
  cairnd_systemd_stopping();
  cairnd_observe_shutdown(&d->obs);
  core_info("%s: no longer accepting connections; finishing requests in flight",
            signum == SIGINT ? "SIGINT" : "SIGTERM");
  http_server_shutdown(d->http, on_shutdown_done, d);
}

static int load_tls(struct cairnd *d, struct http_tls **out)
{
  char *cert = core_asprintf("%s/proxy.pem", d->opt.config_dir);
  char *key = core_asprintf("%s/proxy.key", d->opt.config_dir);
  char host[256] = "localhost";
  gethostname(host, sizeof(host) - 1);
  int rc = http_tls_server_new(cert, key, 1, host, out);
  if (rc < 0)
    core_error("TLS: cannot load or create %s / %s: %s", cert, key, core_strerror(rc));
  core_free(cert);
  core_free(key);
  return rc;
}

/* SIGHUP: the certificate is read in the pool and swapped in on the loop;
 * connections already open keep their context. The access files are re-read
 * by moving their generations (as a save would). */
struct reload_job {
  struct core_job job;
  struct cairnd *d;          /* in: only d->opt is read in the pool */
  struct http_tls *tls;      /* out, or NULL */
};

static void reload_run(struct core_job *j)
{
  struct reload_job *r = (struct reload_job *)j;
  if (!r->d->opt.no_tls && load_tls(r->d, &r->tls) < 0)
    r->tls = NULL;
}

static void reload_done(struct core_job *j, int status)
{
  struct reload_job *r = (struct reload_job *)j;
  struct cairnd *d = r->d;
  d->reloading = 0;
  if (r->tls && !d->stopping) {
    core_info("TLS certificate fingerprint: %s", http_tls_fingerprint(r->tls));
    http_server_set_tls(d->http, r->tls);
    http_tls_unref(d->tls);
    d->tls = r->tls;
  } else if (r->tls) {
    http_tls_unref(r->tls);
  }
  core_free(r);
}

static void on_sighup(uv_signal_t *h, int signum)
{
  struct cairnd *d = h->data;
  if (d->reloading || d->stopping)
    return;
  core_info("SIGHUP: reloading the certificate, users, tokens and ACLs");
  core_shmem_gen_bump(&d->shmem, CORE_GEN_USER);
  core_shmem_gen_bump(&d->shmem, CORE_GEN_TOKEN);
  core_shmem_gen_bump(&d->shmem, CORE_GEN_ACL);
  struct reload_job *r = core_new(struct reload_job);
  r->d = d;
  d->reloading = 1;
  if (core_job_submit(d->loop, &r->job, reload_run, reload_done) < 0) {
    d->reloading = 0;
    core_free(r);
  }
}

/* UV_THREADPOOL_SIZE keeps its meaning: the number of worker threads. */
static int pool_threads(void)
{
  const char *v = getenv("UV_THREADPOOL_SIZE");
  long n = v ? strtol(v, NULL, 10) : 0;
  return n >= 1 && n <= CORE_POOL_MAX ? (int)n : 8;
}

/* An integer from the environment within [lo, hi], else `dflt`. */
static int env_int(const char *name, int lo, int hi, int dflt)
{
  const char *v = getenv(name);
  char *end;
  long n = v ? strtol(v, &end, 10) : 0;
  return v && *v && *end == '\0' && n >= lo && n <= hi ? (int)n : dflt;
}

static void raise_nofile(void)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int main(int argc, char **argv)
{
  struct cairnd d;
  memset(&d, 0, sizeof(d));
  if (parse_options(argc, argv, &d.opt) < 0)
    return 2;
  if (d.opt.health_check)
    return cairnd_health_check(d.opt.config_dir, d.opt.listen[0], d.opt.no_tls);
  core_log_set_level(d.opt.log_level);
  if (env_true("CAIRN_LOG_STDOUT"))
    core_log_to_stdout();
  signal(SIGPIPE, SIG_IGN);
  raise_nofile();
  /* Chunk buffers (up to 16 MiB) are allocated and freed by the loop and the
   * pool threads all the time. glibc would raise its mmap threshold after the
   * first free and keep such buffers in per-thread arenas afterwards, so the
   * resident size would grow with the number of threads, not with what the
   * body budget and the requests in flight allow. A fixed threshold keeps
   * every large buffer an mmap that goes back to the kernel when freed. */
  mallopt(M_MMAP_THRESHOLD, 1024 * 1024);

  int status = 1;
  int rc = core_mkdir_p(d.opt.config_dir, 0700);
  if (rc == 0)
    rc = core_mkdir_p(d.opt.run_dir, 0770);
  if (rc < 0) {
    core_error("cannot create %s or %s: %s", d.opt.config_dir, d.opt.run_dir,
               core_strerror(rc));
    return 1;
  }
  rc = core_shmem_open(&d.shmem, d.opt.run_dir);
  if (rc < 0) {
    core_error("cannot open the generation page in %s: %s", d.opt.run_dir,
               core_strerror(rc));
    return 1;
  }
  rc = cairnd_firststart_token(d.opt.config_dir, &d.shmem);
  if (rc == 0)
    rc = access_ensure_root(d.opt.config_dir, &d.shmem);
  if (rc < 0) {
    core_error("cannot set up the root API token: %s", core_strerror(rc));
    goto fail_auth;
  }
  core_info("root API token: %s/root.token", d.opt.config_dir);
  if (cairnd_firststart_finish(d.opt.config_dir, d.opt.run_dir, &d.shmem) < 0)
    goto fail_auth;
  if (!d.opt.no_tls) {
    if (load_tls(&d, &d.tls) < 0)
      goto fail_auth;
    core_info("TLS certificate fingerprint: %s", http_tls_fingerprint(d.tls));
  }

  d.loop = uv_default_loop();
  /* The loop thread (this one) gets a CPU soon after it wakes, also when
   * the pool's hashing and other programs keep both CPUs busy (core_sched.h).
   * Threads created later start at this value; the pools set their own. */
  /* Relative to the nice value cairnd was started with. */
  int loop_nice = env_int("CAIRN_LOOP_NICE", -20, 0, CORE_SCHED_LOOP_NICE);
  int base_nice = getpriority(PRIO_PROCESS, 0), want = base_nice + loop_nice;
  if (want < -20)
    want = -20;
  if (loop_nice < 0 && (rc = core_sched_nice_self(want)) < 0)
    core_info("the event loop stays at nice %d (nice %d needs CAP_SYS_NICE or "
              "RLIMIT_NICE %d): %s", base_nice, want, 20 - want, core_strerror(rc));
  int rtprio = env_int("CAIRN_LOOP_RTPRIO", 0, 99, CORE_SCHED_LOOP_RTPRIO);
  if (rtprio > 0 && (rc = core_sched_fifo_self(rtprio)) < 0)
    core_info("the event loop stays under the fair scheduler (SCHED_FIFO %d needs "
              "CAP_SYS_NICE or RLIMIT_RTPRIO %d): %s", rtprio, rtprio, core_strerror(rc));
  /* File-system work, hashing and DNS lookups go to Cairn's own pool
   * (core_pool.h says why not libuv's, which cairnd does not use). */
  struct core_pool_opts po = {"pool", pool_threads(), 0, 0, 0};
  rc = core_pool_start(&d.pool, d.loop, &po);
  if (rc < 0) {
    core_error("cannot start the worker threads: %s", core_strerror(rc));
    goto fail_registry;
  }
  core_job_attach_pool(d.loop, &d.pool);
  rc = store_registry_init(&d.reg, d.loop, d.opt.config_dir, &d.shmem, d.opt.debug_reread);
  if (rc < 0)
    goto fail_pool;
  d.store_api.loop = d.loop;
  d.store_api.reg = &d.reg;
  d.store_api.shmem = &d.shmem;
  d.store_api.config_dir = d.opt.config_dir;
  d.store_api.run_dir = d.opt.run_dir;
  d.store_api.sessions = &d.sessions;
  store_sessions_init(&d.sessions, &d.store_api);
  if (d.opt.session_timeout_ms)
    d.sessions.timeout_ms = d.opt.session_timeout_ms;

  rc = store_access_init(&d.access, d.loop, d.opt.config_dir, d.opt.run_dir, &d.shmem, &d.reg);
  if (rc < 0) {
    store_sessions_close(&d.sessions);
    store_access_close(&d.access);
    store_registry_close(&d.reg);
    uv_run(d.loop, UV_RUN_DEFAULT);
    goto fail_pool;
  }
  d.access.fail_limit = d.opt.auth_fail_limit;
  d.store_api.access = &d.access;

  rc = gc_ctx_init(&d.gc, d.loop, &d.reg, d.opt.run_dir);
  if (rc < 0) {
    core_error("cannot set up tasks in %s: %s", d.opt.run_dir, core_strerror(rc));
    store_sessions_close(&d.sessions);
    store_access_close(&d.access);
    store_registry_close(&d.reg);
    uv_run(d.loop, UV_RUN_DEFAULT);
    goto fail_pool;
  }
  d.gc.access = &d.access;
  cairnd_observe_init(&d.obs, d.loop, &d.reg, d.opt.config_dir, !d.opt.no_metrics);
  d.obs.store.sessions = &d.sessions;
  d.obs.store.access = &d.access;
  d.obs.tls = &d.tls;
  d.obs.pools[0] = &d.pool;
  d.obs.pools[1] = &d.gc.workers;

  d.http = http_server_new(d.loop, &d.opt.limits);
  if (d.opt.no_metrics)
    http_server_metrics_off(d.http);
  http_server_set_auth(d.http, store_access_auth, &d.access);
  http_server_set_access(d.http, store_access_check, &d.access);
  static const struct http_route base_routes[] = {
    {HTTP_METHOD_GET, "/api2/json/version", h_version, NULL, 0, HTTP_ROUTE_NOAUTH, ACCESS_AUTHENTICATED},
    {HTTP_METHOD_GET, "/api2/json/ping", h_ping, NULL, 0, HTTP_ROUTE_NOAUTH, ACCESS_AUTHENTICATED},
  };
  http_server_add_routes(d.http, base_routes, sizeof(base_routes) / sizeof(base_routes[0]));
  store_api_register(d.http, &d.store_api);
  gc_api_register(d.http, &d.gc);
  /* S3 endpoints (s3_api.h) and the S3 refresh task (gc_s3.h). */
  d.s3_api.loop = d.loop;
  d.s3_api.config_dir = d.opt.config_dir;
  d.s3_api.shmem = &d.shmem;
  d.s3_api.audit = store_access_audit_cb;
  d.s3_api.audit_ctx = &d.access;
  s3_api_register(d.http, &d.s3_api);
  gc_s3_register(d.http, &d.gc);
  cairnd_observe_routes(&d.obs, d.http);
  cairnd_observe_add(&d.obs, http_server_metrics_collect, d.http);
  cairnd_observe_add(&d.obs, core_pool_metrics_collect, d.obs.pools);
  cairnd_observe_add(&d.obs, core_tasks_metrics_collect, d.gc.tasks);
  cairnd_observe_add(&d.obs, gc_metrics_collect, &d.gc);
  cairnd_observe_add(&d.obs, store_metrics_collect, &d.obs.store);
  /* Remotes and sync jobs (sync.h). */
  sync_ctx_init(&d.sync, d.loop, &d.reg, &d.access, &d.gc, &d.shmem, d.opt.config_dir,
                d.opt.run_dir);
  sync_api_register(d.http, &d.sync);

  /* systemd socket activation: serve the sockets given instead of --listen. */
  int nfds = cairnd_systemd_listen_fds();
  for (int i = 0; i < nfds; i++) {
    rc = http_server_listen_fd(d.http, 3 + i, d.tls);
    if (rc < 0) {
      core_error("cannot serve the passed socket %d: %s", 3 + i, core_strerror(rc));
      goto teardown;
    }
    core_info("listening on passed socket %d (%s)", 3 + i, d.tls ? "https" : "http");
  }
  for (int i = 0; i < d.opt.nlisten && nfds == 0; i++) {
    rc = http_server_listen(d.http, d.opt.listen[i], d.tls);
    if (rc < 0) {
      core_error("cannot listen on %s: %s", d.opt.listen[i], core_strerror(rc));
      goto teardown;
    }
    core_info("listening on %s (%s)", d.opt.listen[i], d.tls ? "https" : "http");
  }

  if (d.opt.metrics_listen && !d.opt.no_metrics) {
    rc = cairnd_observe_listen(&d.obs, d.opt.metrics_listen, &d.opt.limits);
    if (rc < 0) {
      core_error("cannot listen on %s for metrics: %s", d.opt.metrics_listen,
                 core_strerror(rc));
      goto teardown;
    }
    core_info("metrics on http://%s/metrics", d.opt.metrics_listen);
  }

  /* Backups a crash interrupted left unfinished snapshots: remove them in
   * the background while the server already serves. */
  store_recover_start(&d.reg, d.opt.run_dir);

  cairnd_observe_start(&d.obs);

  uv_signal_init(d.loop, &d.sigint);
  uv_signal_init(d.loop, &d.sigterm);
  uv_signal_init(d.loop, &d.sighup);
  d.sigint.data = d.sigterm.data = d.sighup.data = &d;
  uv_signal_start(&d.sigint, on_stop_signal, SIGINT);
  uv_signal_start(&d.sigterm, on_stop_signal, SIGTERM);
  uv_signal_start(&d.sighup, on_sighup, SIGHUP);
  cairnd_systemd_ready(&d.obs, nfds ? "serving passed sockets" : "listening");

  uv_run(d.loop, UV_RUN_DEFAULT);
  status = 0;
  uv_close((uv_handle_t *)&d.sigint, NULL);
  uv_close((uv_handle_t *)&d.sigterm, NULL);
  uv_close((uv_handle_t *)&d.sighup, NULL);

  /* Orderly teardown, also after a failed start, so leak checkers see a
   * clean exit. */
teardown:
  sync_ctx_close(&d.sync);
  store_sessions_close(&d.sessions);
  cairnd_observe_close(&d.obs);
  gc_ctx_close(&d.gc);
  http_server_free(d.http);
  store_access_close(&d.access);
  store_registry_close(&d.reg);
  uv_run(d.loop, UV_RUN_DEFAULT); /* session cleanup jobs and handle closes */
fail_pool:
  core_pool_stop(&d.pool);
  core_job_attach_pool(d.loop, NULL);
  uv_loop_close(d.loop);
fail_registry:
  if (d.tls)
    http_tls_unref(d.tls);
fail_auth:
  core_shmem_close(&d.shmem);
  return status;
}
