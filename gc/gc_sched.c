/* gc_sched.c: gc-schedule and prune-schedule, run from one loop timer.
 *
 * The timer sleeps until the earliest next event of any datastore, but never
 * longer than sched_max_ms, so a changed datastore.cfg is seen within that
 * time even when no event is near. Each wake-up refreshes the registry (one
 * atomic load when nothing changed), re-parses schedule strings that changed,
 * and starts every job whose next event after its last scheduled run (or,
 * without one, after the previous wake-up) is due.
 *
 * Each scheduled start is recorded in <run_dir>/jobstates/<kind>-<store>
 * (the epoch second, written in the pool), and read back at startup, so an
 * event missed while the server was down runs once at the next start, as in
 * PBS. A schedule that never ran starts counting at startup.
 *
 * Invalid expressions are refused when the config is saved; one that still
 * reaches us (a manual edit) is logged once and ignored.
 */
#include "gc/gc_api.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "core/core_parse.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SCHED_FIRST_MS 1000

int64_t gc__sched_next(const struct core_calendar *cal, int64_t after)
{
  int64_t next;
  if (core_calendar_next(cal, after, &next) < 0)
    return -1;
  return next;
}

static int64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Keeps the parsed schedule in step with the config value. */
static void update_expr(const char *store, const char *what, const char *value, char **expr,
                        struct core_calendar *cal, int *ok)
{
  if ((value == NULL && *expr == NULL) || (value && *expr && strcmp(value, *expr) == 0))
    return;
  core_free(*expr);
  *expr = value ? core_strdup(value) : NULL;
  *ok = 0;
  if (value == NULL)
    return;
  char err[160];
  if (core_calendar_parse(value, cal, err, sizeof(err)) < 0) {
    core_warn("datastore %s: ignoring invalid %s '%s': %s", store, what, value, err);
    return;
  }
  *ok = 1;
}

static void on_sched_started(void *arg, int err, const char *msg, struct core_task *task)
{
  char *what = arg;
  if (err < 0)
    core_warn("scheduled %s not started: %s", what, msg ? msg : core_strerror(err));
  else
    core_info("scheduled %s started: %s", what, task->upid);
  core_free(what);
}

static void arm(struct gc_ctx *ctx, int64_t next_event);
static void on_tick(uv_timer_t *h);

/* ---- job states ---- */

#define JOBSTATE_DIR "jobstates"
#define JOBSTATE_GC "gc-"
#define JOBSTATE_PRUNE "prune-"

struct jobstate_save {
  struct core_job job;
  char *path;    /* in */
  int64_t when;  /* in */
  int rc;        /* out */
};

static void save_run(struct core_job *j)
{
  struct jobstate_save *w = (struct jobstate_save *)j;
  char text[32];
  int n = snprintf(text, sizeof(text), "%" PRId64 "\n", w->when);
  char *dir = core_strndup(w->path, (size_t)(strrchr(w->path, '/') - w->path));
  w->rc = core_mkdir_p(dir, 0750);
  core_free(dir);
  if (w->rc == 0)
    w->rc = core_file_replace(w->path, text, (size_t)n, 0640, 0);
}

static void save_done(struct core_job *j, int status)
{
  struct jobstate_save *w = (struct jobstate_save *)j;
  int rc = status < 0 ? status : w->rc;
  if (rc < 0)
    core_warn("cannot record the scheduled run in %s: %s", w->path, core_strerror(rc));
  core_free(w->path);
  core_free(w);
}

/* Records a scheduled start of `kind` for `store` at `when`. */
static void jobstate_save(struct gc_ctx *ctx, const char *kind, const char *store, int64_t when)
{
  struct jobstate_save *w = core_new(struct jobstate_save);
  w->path = core_asprintf("%s/%s/%s%s", ctx->run_dir, JOBSTATE_DIR, kind, store);
  w->when = when;
  if (core_job_submit(ctx->loop, &w->job, save_run, save_done) < 0)
    save_done(&w->job, CORE_EINVAL);
}

struct jobstate_entry {
  struct jobstate_entry *next;
  int prune;
  int64_t when;
  char store[];
};

struct jobstate_load {
  struct core_job job;
  struct gc_ctx *ctx;             /* in: only passed back */
  char *dir;                      /* in */
  struct jobstate_entry *entries; /* out */
};

static void load_run(struct core_job *j)
{
  struct jobstate_load *l = (struct jobstate_load *)j;
  DIR *d = opendir(l->dir);
  struct dirent *de;
  if (d == NULL)
    return; /* nothing recorded yet */
  while ((de = readdir(d)) != NULL) {
    const char *store;
    int prune;
    if (strncmp(de->d_name, JOBSTATE_GC, strlen(JOBSTATE_GC)) == 0) {
      prune = 0;
      store = de->d_name + strlen(JOBSTATE_GC);
    } else if (strncmp(de->d_name, JOBSTATE_PRUNE, strlen(JOBSTATE_PRUNE)) == 0) {
      prune = 1;
      store = de->d_name + strlen(JOBSTATE_PRUNE);
    } else {
      continue;
    }
    if (*store == '\0' || strchr(store, '.') != NULL)
      continue; /* temp files */
    char *path = core_asprintf("%s/%s", l->dir, de->d_name);
    uint8_t *text = NULL;
    size_t len = 0;
    int64_t when;
    int rc = core_file_read(path, 64, &text, &len);
    core_free(path);
    if (rc < 0)
      continue;
    char buf[65];
    memcpy(buf, text, len);
    buf[len] = '\0';
    core_free(text);
    buf[strcspn(buf, "\n")] = '\0';
    if (core_parse_i64(buf, &when) < 0 || when <= 0)
      continue;
    size_t slen = strlen(store);
    struct jobstate_entry *e = core_malloc(sizeof(*e) + slen + 1);
    memcpy(e->store, store, slen + 1);
    e->prune = prune;
    e->when = when;
    e->next = l->entries;
    l->entries = e;
  }
  closedir(d);
}

static void load_done(struct core_job *j, int status)
{
  struct jobstate_load *l = (struct jobstate_load *)j;
  struct gc_ctx *ctx = l->ctx;
  (void)status;
  while (l->entries) {
    struct jobstate_entry *e = l->entries;
    l->entries = e->next;
    struct gc_store_state *st = gc__store_state(ctx, e->store);
    if (e->prune)
      st->prune_last = e->when;
    else
      st->gc_last = e->when;
    core_free(e);
  }
  core_free(l->dir);
  core_free(l);
  gc__run_end(ctx);
  if (!ctx->closing)
    uv_timer_start(&ctx->sched_timer, on_tick, SCHED_FIRST_MS, 0);
}

static void start_prune(struct gc_ctx *ctx, const struct core_config_section *sec)
{
  struct gc_prune_opts o;
  memset(&o, 0, sizeof(o));
  o.max_depth = -1;
  static const char *const keys[] = {"keep-last", "keep-hourly", "keep-daily",
                                     "keep-weekly", "keep-monthly", "keep-yearly"};
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    const char *v = core_config_get(sec, keys[i]);
    if (v && store_prune_keep_set(&o.keep, keys[i], v) < 0)
      core_warn("datastore %s: ignoring invalid %s '%s'", sec->name, keys[i], v);
  }
  if (store_prune_keep_all(&o.keep)) {
    core_info("datastore %s: prune-schedule is due but no keep-* option is set; "
              "nothing to prune", sec->name);
    return;
  }
  gc_start_prune(ctx, sec->name, "root@pam", &o, on_sched_started,
                 core_asprintf("prune of datastore %s", sec->name));
}

/* Whether a schedule's next event after its last run (or, without one, after
 * the previous wake-up) has come; lowers *wake to its next event to come. A
 * due job that is still running stays due and starts when it has ended. */
static int sched_due(const struct gc_ctx *ctx, const struct core_calendar *cal, int64_t last,
                     int64_t now, int64_t *wake)
{
  int64_t next = gc__sched_next(cal, last ? last : ctx->sched_last);
  int due = next >= 0 && next <= now;
  if (due)
    next = gc__sched_next(cal, now);
  if (next >= 0 && (*wake < 0 || next < *wake))
    *wake = next;
  return due;
}

static void on_refreshed(void *arg, int err)
{
  struct gc_ctx *ctx = arg;
  ctx->sched_busy = 0;
  gc__run_end(ctx);
  if (ctx->closing)
    return;
  int64_t now = (int64_t)time(NULL);
  int64_t wake = -1;
  if (err < 0) {
    core_warn("schedules: cannot read datastore.cfg: %s", core_strerror(err));
  } else {
    const struct core_config *cfg = &ctx->reg->cfg;
    for (size_t i = 0; i < cfg->nsections; i++) {
      const struct core_config_section *sec = cfg->sections[i];
      if (strcmp(sec->type, "datastore") != 0)
        continue;
      struct gc_store_state *st = gc__store_state(ctx, sec->name);
      update_expr(sec->name, "gc-schedule", core_config_get(sec, "gc-schedule"), &st->gc_expr,
                  &st->gc_cal, &st->gc_cal_ok);
      update_expr(sec->name, "prune-schedule", core_config_get(sec, "prune-schedule"),
                  &st->prune_expr, &st->prune_cal, &st->prune_cal_ok);
      if (st->gc_cal_ok && sched_due(ctx, &st->gc_cal, st->gc_last, now, &wake) &&
          st->gc == NULL) {
        gc_start_gc(ctx, sec->name, "root@pam", on_sched_started,
                    core_asprintf("garbage collection of datastore %s", sec->name));
        st->gc_last = now;
        jobstate_save(ctx, JOBSTATE_GC, sec->name, now);
      }
      if (st->prune_cal_ok && sched_due(ctx, &st->prune_cal, st->prune_last, now, &wake) &&
          st->prune == NULL) {
        start_prune(ctx, sec);
        st->prune_last = now;
        jobstate_save(ctx, JOBSTATE_PRUNE, sec->name, now);
      }
    }
  }
  ctx->sched_last = now;
  arm(ctx, wake);
}

static void arm(struct gc_ctx *ctx, int64_t next_event)
{
  uint64_t delay = ctx->sched_max_ms;
  if (next_event >= 0) {
    /* Wake just after the event's second has begun on the wall clock. */
    int64_t d = next_event * 1000 - now_ms() + 10;
    if (d < 10)
      d = 10;
    if ((uint64_t)d < delay)
      delay = (uint64_t)d;
  }
  uv_timer_start(&ctx->sched_timer, on_tick, delay, 0);
}

static void on_tick(uv_timer_t *h)
{
  struct gc_ctx *ctx = h->data;
  if (ctx->closing || ctx->sched_busy)
    return;
  ctx->sched_busy = 1;
  gc__run_begin(ctx);
  store_registry_refresh(ctx->reg, on_refreshed, ctx);
}

void gc__sched_start(struct gc_ctx *ctx)
{
  ctx->sched_last = (int64_t)time(NULL);
  uv_timer_init(ctx->loop, &ctx->sched_timer);
  ctx->sched_timer.data = ctx;
  uv_unref((uv_handle_t *)&ctx->sched_timer);
  /* The recorded runs first (in the pool), then the first tick. */
  struct jobstate_load *l = core_new(struct jobstate_load);
  l->ctx = ctx;
  l->dir = core_asprintf("%s/%s", ctx->run_dir, JOBSTATE_DIR);
  gc__run_begin(ctx);
  if (core_job_submit(ctx->loop, &l->job, load_run, load_done) < 0)
    load_done(&l->job, CORE_EINVAL);
}

static void on_sched_closed(uv_handle_t *h)
{
  struct gc_ctx *ctx = h->data;
  ctx->sched_closed = 1;
}

void gc__sched_stop(struct gc_ctx *ctx)
{
  uv_timer_stop(&ctx->sched_timer);
  uv_close((uv_handle_t *)&ctx->sched_timer, on_sched_closed);
}
