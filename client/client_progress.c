/* client_progress.c: a throttled progress line on stderr. */
#include "client/client_progress.h"

#include "core/core_alloc.h"
#include "core/core_fmt.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <uv.h>

struct client_progress {
  char *label;
  int enabled;
  _Atomic uint64_t total, done, fresh, reused;
  uv_thread_t thread;
  uv_mutex_t mu;
  uv_cond_t cv;
  int stop;       /* guarded by mu */
  double started; /* monotonic seconds */
};

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void draw(struct client_progress *p)
{
  char done[32], fresh[32], reused[32], eta[32] = "";
  double dt = now_s() - p->started;
  uint64_t d = atomic_load(&p->done), t = atomic_load(&p->total);
  double rate = dt > 0 ? (double)d / dt : 0;
  core_fmt_bytes(d, done, sizeof(done));
  core_fmt_bytes(atomic_load(&p->fresh), fresh, sizeof(fresh));
  core_fmt_bytes(atomic_load(&p->reused), reused, sizeof(reused));
  if (t > d && rate > 0) {
    unsigned s = (unsigned)((double)(t - d) / rate);
    snprintf(eta, sizeof(eta), "  ETA %u:%02u:%02u", s / 3600, s / 60 % 60, s % 60);
  }
  fprintf(stderr, "\r%s: %s  %.1f MB/s  new %s  reused %s%s\033[K", p->label, done,
          rate / 1e6, fresh, reused, eta);
  fflush(stderr);
}

static void progress_thread(void *arg)
{
  struct client_progress *p = arg;
  uv_mutex_lock(&p->mu);
  while (!p->stop) {
    /* 500 ms between redraws */
    uv_cond_timedwait(&p->cv, &p->mu, 500u * 1000 * 1000);
    if (!p->stop)
      draw(p);
  }
  uv_mutex_unlock(&p->mu);
}

struct client_progress *client_progress_new(const char *label, int enabled)
{
  struct client_progress *p = core_new(struct client_progress);
  p->label = core_strdup(label);
  p->enabled = enabled;
  p->started = now_s();
  uv_mutex_init(&p->mu);
  uv_cond_init(&p->cv);
  if (enabled && uv_thread_create(&p->thread, progress_thread, p) != 0)
    p->enabled = 0;
  return p;
}

void client_progress_free(struct client_progress *p)
{
  if (p == NULL)
    return;
  if (p->enabled) {
    uv_mutex_lock(&p->mu);
    p->stop = 1;
    uv_cond_signal(&p->cv);
    uv_mutex_unlock(&p->mu);
    uv_thread_join(&p->thread);
    fprintf(stderr, "\r\033[K");
    fflush(stderr);
  }
  uv_cond_destroy(&p->cv);
  uv_mutex_destroy(&p->mu);
  core_free(p->label);
  core_free(p);
}

void client_progress_set_total(struct client_progress *p, uint64_t total)
{
  if (p)
    atomic_store(&p->total, total);
}

void client_progress_add(struct client_progress *p, uint64_t done, uint64_t fresh,
                         uint64_t reused)
{
  if (p == NULL)
    return;
  atomic_fetch_add(&p->done, done);
  atomic_fetch_add(&p->fresh, fresh);
  atomic_fetch_add(&p->reused, reused);
}
