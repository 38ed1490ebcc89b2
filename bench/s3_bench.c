/* s3_bench.c: PUT or GET throughput of Cairn's S3 client.
 *
 *   s3_bench put|get|delete SIZE COUNT CONCURRENCY PREFIX
 *
 * The server comes from S3_ENDPOINT, S3_PORT, S3_ACCESS_KEY, S3_SECRET_KEY,
 * S3_REGION, S3_BUCKET. Objects are PREFIX/00000..; PUT bodies are random.
 * A 1 ms loop timer measures how late the loop runs its callbacks (the
 * responsiveness a status request would see); that includes time the thread
 * waited for a CPU. A prepare handle measures the loop's own busy time per
 * iteration: the time between two polls minus the time the poll waited
 * (uv_metrics_idle_time), i.e. the callbacks of one iteration (wall clock:
 * it grows when the thread is preempted mid-callback), and the loop thread's
 * CPU time over the same span (CLOCK_THREAD_CPUTIME_ID, the poll's own system
 * time included), which other programs on the machine cannot inflate. Prints
 * one key=value line:
 *   ops=.. bytes=.. secs=.. ops_per_s=.. mbps=.. errors=.. lag_p99_ms=.. lag_max_ms=..
 *   loop_busy_pct=.. (share of the run the loop thread spent outside epoll)
 *   busy_p99_ms=.. busy_max_ms=.. busy_cpu_p99_ms=.. busy_cpu_max_ms=.. iterations=..
 * S3_BENCH_POOL_IDLE=1 runs the hashing pool at SCHED_IDLE (an experiment).
 */
#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_pool.h"
#include "s3/s3_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

static uv_loop_t *loop;
static struct s3_client *cl;
static const char *mode, *prefix;
static size_t size, count, conc, next_i, done_n, inflight;
static int errors;
static uint64_t bytes;
static unsigned char *body;
static uv_timer_t tick;
static uint64_t tick_due;
static uint64_t *lags;
static size_t nlags, caplags;
static uv_prepare_t before_poll;
static uint64_t prev_now, prev_idle, prev_cpu;
static uint64_t *busy, *busy_cpu;
static size_t nbusy, capbusy;

static uint64_t thread_cpu_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Runs right before each poll: what the loop did since the previous poll
 * began, minus the time that poll blocked, is this iteration's busy time. */
static void on_prepare(uv_prepare_t *h)
{
  uint64_t now = uv_hrtime();
  uint64_t idle = uv_metrics_idle_time(h->loop);
  uint64_t cpu = thread_cpu_ns();
  if (prev_now) {
    uint64_t span = now - prev_now, waited = idle - prev_idle;
    if (nbusy == capbusy) {
      capbusy = capbusy ? capbusy * 2 : 4096;
      busy = core_realloc(busy, capbusy * sizeof(*busy));
      busy_cpu = core_realloc(busy_cpu, capbusy * sizeof(*busy_cpu));
    }
    busy[nbusy] = span > waited ? span - waited : 0;
    busy_cpu[nbusy++] = cpu - prev_cpu;
  }
  prev_now = now;
  prev_idle = idle;
  prev_cpu = cpu;
}

static void on_tick(uv_timer_t *t)
{
  (void)t;
  uint64_t now = uv_hrtime();
  if (tick_due && now > tick_due) {
    if (nlags == caplags) {
      caplags = caplags ? caplags * 2 : 4096;
      lags = core_realloc(lags, caplags * sizeof(*lags));
    }
    lags[nlags++] = now - tick_due;
  }
  tick_due = now + 1000000;
}

static void pump(void);

static int on_body(const char *data, size_t len, void *arg)
{
  (void)data;
  (void)arg;
  bytes += len;
  return 0;
}

static void on_done(const struct s3_result *r, void *arg)
{
  (void)arg;
  if (r->status != 0) {
    errors++;
    if (errors < 5)
      fprintf(stderr, "s3_bench: %s\n", r->message);
  } else if (strcmp(mode, "put") == 0) {
    bytes += size;
  }
  done_n++;
  inflight--;
  pump();
}

static void pump(void)
{
  while (next_i < count && inflight < conc) {
    char key[512];
    snprintf(key, sizeof(key), "%s/%05zu", prefix, next_i++);
    int rc;
    if (strcmp(mode, "put") == 0)
      rc = s3_put_object(cl, key, body, size, NULL, on_done, NULL);
    else if (strcmp(mode, "get") == 0)
      rc = s3_get_object(cl, key, on_body, 0, on_done, NULL, NULL);
    else
      rc = s3_delete_object(cl, key, on_done, NULL);
    if (rc < 0) {
      errors++;
      done_n++;
      continue;
    }
    inflight++;
  }
}

static int cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static const char *env(const char *n, const char *d)
{
  const char *v = getenv(n);
  return v && *v ? v : d;
}

static void freed(void *arg)
{
  *(int *)arg = 1;
}

int main(int argc, char **argv)
{
  if (argc != 6) {
    fprintf(stderr, "usage: s3_bench put|get|delete SIZE COUNT CONCURRENCY PREFIX\n");
    return 2;
  }
  mode = argv[1];
  size = (size_t)strtoull(argv[2], NULL, 10);
  count = (size_t)strtoull(argv[3], NULL, 10);
  conc = (size_t)strtoull(argv[4], NULL, 10);
  prefix = argv[5];
  s3_xml_init();
  loop = uv_default_loop();
  uv_loop_configure(loop, UV_METRICS_IDLE_TIME);
  /* Payload hashing runs where cairnd runs it: on a core_pool. */
  struct core_pool pool;
  struct core_pool_opts po = {"s3_bench", 4, 0, 0, 0};
  /* S3_BENCH_POOL_IDLE=1: the pool threads at SCHED_IDLE, to tell whether
   * the loop thread's wall time is lost to its own pool (docs/performance.md). */
  if (strcmp(env("S3_BENCH_POOL_IDLE", "0"), "1") == 0)
    po.idle_cpu = 1;
  if (core_pool_start(&pool, loop, &po) < 0)
    return 1;
  core_job_attach_pool(loop, &pool);
  struct s3_client_config cfg = {
      .endpoint = env("S3_ENDPOINT", "127.0.0.1"), .port = (int)strtol(env("S3_PORT", "7480"), NULL, 10),
      .region = env("S3_REGION", "us-east-1"), .access_key = env("S3_ACCESS_KEY", ""),
      .secret_key = env("S3_SECRET_KEY", ""), .path_style = 1, .max_conns = (unsigned)conc,
  };
  int rc = s3_client_new(loop, &cfg, env("S3_BUCKET", "cairn-bench"), &cl);
  if (rc < 0) {
    fprintf(stderr, "s3_bench: %s\n", core_strerror(rc));
    return 1;
  }
  if (strcmp(mode, "put") == 0) {
    body = core_malloc(size ? size : 1);
    core_random(body, size);
  }
  uv_timer_init(loop, &tick);
  uv_timer_start(&tick, on_tick, 1, 1);
  uv_unref((uv_handle_t *)&tick);
  uv_prepare_init(loop, &before_poll);
  uv_prepare_start(&before_poll, on_prepare);
  uv_unref((uv_handle_t *)&before_poll);
  uint64_t t0 = uv_hrtime();
  uint64_t idle0 = uv_metrics_idle_time(loop);
  pump();
  while (done_n < count)
    uv_run(loop, UV_RUN_ONCE);
  double secs = (double)(uv_hrtime() - t0) / 1e9;
  double busy_secs = secs - (double)(uv_metrics_idle_time(loop) - idle0) / 1e9;
  uv_timer_stop(&tick);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_prepare_stop(&before_poll);
  uv_close((uv_handle_t *)&before_poll, NULL);
  int closed = 0;
  s3_client_free(cl, freed, &closed);
  while (!closed)
    uv_run(loop, UV_RUN_ONCE);
  qsort(lags, nlags, sizeof(*lags), cmp_u64);
  double p99 = nlags ? (double)lags[nlags * 99 / 100] / 1e6 : 0;
  double mx = nlags ? (double)lags[nlags - 1] / 1e6 : 0;
  qsort(busy, nbusy, sizeof(*busy), cmp_u64);
  double busy_p99 = nbusy ? (double)busy[nbusy * 99 / 100] / 1e6 : 0;
  double busy_max = nbusy ? (double)busy[nbusy - 1] / 1e6 : 0;
  qsort(busy_cpu, nbusy, sizeof(*busy_cpu), cmp_u64);
  double cpu_p99 = nbusy ? (double)busy_cpu[nbusy * 99 / 100] / 1e6 : 0;
  double cpu_max = nbusy ? (double)busy_cpu[nbusy - 1] / 1e6 : 0;
  printf("ops=%zu bytes=%llu secs=%.3f ops_per_s=%.1f mbps=%.1f errors=%d lag_p99_ms=%.2f "
         "lag_max_ms=%.2f loop_busy_pct=%.1f busy_p99_ms=%.3f busy_max_ms=%.3f "
         "busy_cpu_p99_ms=%.3f busy_cpu_max_ms=%.3f iterations=%zu\n",
         count, (unsigned long long)bytes, secs, (double)count / secs,
         (double)bytes / secs / 1e6, errors, p99, mx, 100.0 * busy_secs / secs, busy_p99,
         busy_max, cpu_p99, cpu_max, nbusy);
  core_free(body);
  core_free(lags);
  core_free(busy);
  core_free(busy_cpu);
  core_pool_stop(&pool);
  core_job_attach_pool(loop, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return errors ? 1 : 0;
}
