/* sync_job.c: starting and ending sync runs, job state and the schedule.
 *
 * A run: (loop) the configs are loaded in a pool job when it is a
 * configured job, the local datastore (and, for a local sync, the source
 * datastore) is looked up and held, the task started, the engine thread
 * started; (engine thread) sync__pull or sync__push; (loop, through the
 * run's core_wake, not a uv_async_t: core_wake.h) the task is finished and
 * the datastores released. The wake handles are unref'd so a running sync
 * never keeps a stopping server's loop alive; sync_ctx_close aborts and joins
 * what still runs.
 *
 * Job state is the task registry itself (the newest task of type
 * "syncjob" whose worker id is the job id gives last-run-upid, -state and
 * -endtime, and survives restarts with the task index) plus the time of the
 * last scheduled start in <run-dir>/jobstates/sync-<id>, read at startup,
 * so a missed event runs once at the next start, as for GC and prune.
 */
#include "sync/sync.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "core/core_parse.h"
#include "core/core_wake.h"
#include "gc/gc_api.h"
#include "store/store_registry.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct sync_run {
  struct sync_run *next;
  struct sync_ctx *ctx;
  struct sync_params *p;        /* owned */
  char *authid;                 /* owned */
  struct sync_engine eng;
  struct core_task *task;
  struct store_datastore *ds, *src_ds;
  enum store_op ds_op;
  pthread_t thread;
  int thread_started;
  struct core_wake done_wake;   /* the engine ended */
  struct core_wake call_wake;   /* the engine's loop calls (S3) */
  int handles;                  /* wake handles still to close */
  _Atomic int done;
  int rc;
  sync_start_cb cb;
  void *arg;
};

static void run_free(struct sync_run *r)
{
  sync_params_free(r->p);
  core_free(r->authid);
  core_free(r);
}

static void run_closed(uv_handle_t *h)
{
  struct sync_run *r = ((struct core_wake *)h)->data;
  if (--r->handles == 0)
    run_free(r);
}

/* ---- loop calls of the engine (S3 datastores) ---- */

int sync__loop_call(struct sync_engine *e, struct sync_loop_call *c)
{
  c->e = e;
  c->done = 0;
  c->rc = 0;
  c->msg[0] = '\0';
  pthread_mutex_lock(&e->call_mutex);
  if (e->closing) {
    pthread_mutex_unlock(&e->call_mutex);
    snprintf(c->msg, sizeof(c->msg), "server is shutting down");
    return CORE_EABORTED;
  }
  c->next = e->calls;
  e->calls = c;
  pthread_mutex_unlock(&e->call_mutex);
  core_wake_send(e->call_wake);
  pthread_mutex_lock(&e->call_mutex);
  while (!c->done)
    pthread_cond_wait(&e->call_cond, &e->call_mutex);
  pthread_mutex_unlock(&e->call_mutex);
  return c->rc;
}

void sync__loop_done(struct sync_loop_call *c, int rc, const char *msg)
{
  struct sync_engine *e = c->e;
  pthread_mutex_lock(&e->call_mutex);
  c->rc = rc;
  snprintf(c->msg, sizeof(c->msg), "%s", msg ? msg : "");
  c->done = 1;
  pthread_cond_broadcast(&e->call_cond);
  pthread_mutex_unlock(&e->call_mutex);
}

static void on_call_wake(struct core_wake *w)
{
  struct sync_run *r = w->data;
  struct sync_engine *e = &r->eng;
  pthread_mutex_lock(&e->call_mutex);
  struct sync_loop_call *list = e->calls;
  e->calls = NULL;
  int closing = e->closing;
  pthread_mutex_unlock(&e->call_mutex);
  while (list) {
    struct sync_loop_call *c = list;
    list = c->next;
    if (closing || r->ctx->closing) {
      sync__loop_done(c, CORE_EABORTED, "server is shutting down");
      continue;
    }
    c->ds = r->ds;
    c->fn(c);
  }
}

static void unlink_run(struct sync_ctx *ctx, struct sync_run *r)
{
  for (struct sync_run **pp = &ctx->runs; *pp; pp = &(*pp)->next)
    if (*pp == r) {
      *pp = r->next;
      return;
    }
}

/* Loop: the engine thread has ended. */
static void run_end(struct sync_run *r)
{
  struct sync_ctx *ctx = r->ctx;
  if (r->thread_started) {
    pthread_join(r->thread, NULL);
    r->thread_started = 0;
  }
  unlink_run(ctx, r);
  if (r->p->job_id) {
    struct sync_job_state *st = core_map_get(&ctx->jobs, r->p->job_id);
    if (st && st->run == r)
      st->run = NULL;
  }
  core_task_finish(r->task, r->rc, r->rc < 0 ? r->eng.err : NULL);
  r->task = NULL;
  sync_rate_destroy(&r->eng.rate);
  pthread_mutex_destroy(&r->eng.call_mutex);
  pthread_cond_destroy(&r->eng.call_cond);
  if (r->ds)
    store_release(r->ds, r->ds_op);
  if (r->src_ds)
    store_release(r->src_ds, STORE_OP_READ);
  r->handles = 2;
  core_wake_close(&r->done_wake, run_closed);
  core_wake_close(&r->call_wake, run_closed);
}

static void on_done_wake(struct core_wake *w)
{
  struct sync_run *r = w->data;
  if (atomic_load(&r->done))
    run_end(r);
}

static void *engine_main(void *arg)
{
  struct sync_run *r = arg;
  r->rc = r->p->dir == SYNC_PUSH ? sync__push(&r->eng) : sync__pull(&r->eng);
  atomic_store(&r->done, 1);
  core_wake_send(&r->done_wake);
  return NULL;
}

static void clear_starting(struct sync_run *r)
{
  if (r->p->job_id) {
    struct sync_job_state *st = core_map_get(&r->ctx->jobs, r->p->job_id);
    if (st)
      st->starting = 0;
  }
}

static void start_fail(struct sync_run *r, int err, const char *msg)
{
  struct sync_ctx *ctx = r->ctx;
  clear_starting(r);
  if (r->ds)
    store_release(r->ds, r->ds_op);
  if (r->src_ds)
    store_release(r->src_ds, STORE_OP_READ);
  ctx->pending--;
  r->cb(r->arg, err, msg, NULL);
  if (r->handles == 0)
    run_free(r); /* else when its wake has closed (run_closed) */
}

static void start_engine(struct sync_run *r)
{
  struct sync_ctx *ctx = r->ctx;
  const struct sync_params *p = r->p;
  if (ctx->closing) {
    start_fail(r, CORE_EABORTED, "server is shutting down");
    return;
  }
  /* Into an S3 datastore: yes (sync_s3.c). Out of one (a push, or the
   * source of a local sync): its cache may hold markers, not chunks. */
  if ((p->dir == SYNC_PUSH && store_datastore_is_s3(r->ds)) ||
      (r->src_ds && store_datastore_is_s3(r->src_ds))) {
    start_fail(r, CORE_EINVAL, "pushing from or syncing out of an S3-backed datastore is not "
                               "supported yet");
    return;
  }
  /* Descriptors first (an eventfd each): nothing to undo but themselves. */
  int rc = core_wake_init(ctx->loop, &r->call_wake, on_call_wake);
  if (rc < 0) {
    start_fail(r, rc, "cannot set up the sync thread's wake-up");
    return;
  }
  r->call_wake.data = r;
  if ((rc = core_wake_init(ctx->loop, &r->done_wake, on_done_wake)) < 0) {
    r->handles = 1; /* run_closed frees `r`, not start_fail */
    core_wake_close(&r->call_wake, run_closed);
    start_fail(r, rc, "cannot set up the sync thread's wake-up");
    return;
  }
  r->done_wake.data = r;
  clear_starting(r);
  const char *type = p->job_id ? SYNC_TASK_JOB : p->dir == SYNC_PUSH ? SYNC_TASK_PUSH
                                                                     : SYNC_TASK_PULL;
  char worker[512];
  if (p->job_id)
    snprintf(worker, sizeof(worker), "%s:%s:%s:%s:%s", p->remote ? p->remote : "-",
             p->remote_store, p->store, p->ns, p->job_id);
  else
    snprintf(worker, sizeof(worker), "%s:%s:%s:%s", p->remote ? p->remote : "-",
             p->remote_store, p->store, p->ns);
  struct core_task *t = core_task_start(ctx->gc->tasks, type, worker, r->authid, p->store);
  if (t == NULL) {
    r->handles = 2; /* run_closed frees `r`, not start_fail */
    core_wake_close(&r->done_wake, run_closed);
    core_wake_close(&r->call_wake, run_closed);
    start_fail(r, CORE_ETOOBIG, "task id too long");
    return;
  }
  r->task = t;
  memset(&r->eng, 0, sizeof(r->eng));
  r->eng.p = p;
  r->eng.task = t;
  r->eng.ds = r->ds;
  r->eng.src_ds = r->src_ds;
  r->eng.run_dir = ctx->run_dir;
  r->eng.s3 = store_datastore_is_s3(r->ds);
  pthread_mutex_init(&r->eng.call_mutex, NULL);
  pthread_cond_init(&r->eng.call_cond, NULL);
  uv_unref((uv_handle_t *)&r->call_wake.poll);
  r->eng.call_wake = &r->call_wake;
  if (p->dir == SYNC_PUSH)
    sync_rate_init(&r->eng.rate, p->rate_out, p->burst_out);
  else
    sync_rate_init(&r->eng.rate, p->rate_in, p->burst_in);
  uv_unref((uv_handle_t *)&r->done_wake.poll);
  r->next = ctx->runs;
  ctx->runs = r;
  ctx->pending--;
  if (p->job_id) {
    struct sync_job_state *st = core_map_get(&ctx->jobs, p->job_id);
    if (st)
      st->run = r;
  }
  if (pthread_create(&r->thread, NULL, engine_main, r) != 0) {
    r->rc = CORE_EINVAL;
    snprintf(r->eng.err, sizeof(r->eng.err), "cannot start the sync thread");
    atomic_store(&r->done, 1);
    r->cb(r->arg, 0, NULL, t);
    run_end(r);
    return;
  }
  r->thread_started = 1;
  r->cb(r->arg, 0, NULL, t);
}

static void src_looked_up(void *arg, int err, struct store_datastore *ds)
{
  struct sync_run *r = arg;
  if (err < 0) {
    char msg[160];
    snprintf(msg, sizeof(msg), "source datastore '%s': %s", r->p->remote_store,
             core_strerror(err));
    start_fail(r, err, msg);
    return;
  }
  r->src_ds = ds;
  start_engine(r);
}

static void looked_up(void *arg, int err, struct store_datastore *ds)
{
  struct sync_run *r = arg;
  if (err < 0) {
    char msg[160];
    snprintf(msg, sizeof(msg), "datastore '%s': %s", r->p->store, core_strerror(err));
    start_fail(r, err, msg);
    return;
  }
  r->ds = ds;
  if (r->p->remote == NULL && r->p->dir == SYNC_PULL) {
    store_lookup(r->ctx->reg, r->p->remote_store, STORE_OP_READ, src_looked_up, r);
    return;
  }
  start_engine(r);
}

void sync_start(struct sync_ctx *ctx, struct sync_params *p, const char *authid,
                sync_start_cb cb, void *arg)
{
  if (ctx->closing) {
    sync_params_free(p);
    cb(arg, CORE_EABORTED, "server is shutting down", NULL);
    return;
  }
  char err[256];
  if (p->remote == NULL && p->dir == SYNC_PULL &&
      sync_local_overlap(p->store, p->ns, p->remote_store, p->remote_ns, err, sizeof(err)) < 0) {
    sync_params_free(p);
    cb(arg, CORE_ECONFIG, err, NULL);
    return;
  }
  if (p->job_id) {
    struct sync_job_state *st = core_map_get(&ctx->jobs, p->job_id);
    if (st == NULL) {
      /* Not seen by the schedule timer yet: its state starts here. */
      st = core_new(struct sync_job_state);
      st->seen = 1;
      core_map_put(&ctx->jobs, p->job_id, st);
    }
    if (st->run || st->starting) {
      sync_params_free(p);
      cb(arg, CORE_ELOCKED, "this sync job is already running", NULL);
      return;
    }
    st->starting = 1;
  }
  struct sync_run *r = core_new(struct sync_run);
  r->ctx = ctx;
  r->p = p;
  r->authid = core_strdup(authid ? authid : "root@pam");
  r->cb = cb;
  r->arg = arg;
  r->ds_op = p->dir == SYNC_PUSH ? STORE_OP_READ : STORE_OP_WRITE;
  ctx->pending++;
  store_lookup(ctx->reg, p->store, r->ds_op, looked_up, r);
}

/* ---- configured jobs ---- */

struct job_load {
  struct core_job job;
  struct sync_ctx *ctx;
  char *id, *authid;            /* in */
  sync_start_cb cb;
  void *arg;
  struct sync_params *p;        /* out */
  int rc;
  char err[256];
};

static void job_load_run(struct core_job *j)
{
  struct job_load *l = (struct job_load *)j;
  struct core_config jobs, remotes;
  char lerr[128];
  l->rc = sync_cfg_load(l->ctx->config_dir, 0, &jobs, NULL, lerr, sizeof(lerr));
  if (l->rc < 0) {
    snprintf(l->err, sizeof(l->err), "cannot read %s: %s", SYNC_JOB_CFG, lerr);
    core_config_free(&jobs);
    return;
  }
  l->rc = sync_cfg_load(l->ctx->config_dir, 1, &remotes, NULL, lerr, sizeof(lerr));
  if (l->rc < 0) {
    snprintf(l->err, sizeof(l->err), "cannot read %s: %s", SYNC_REMOTE_CFG, lerr);
    goto out;
  }
  const struct core_config_section *sec = core_config_find(&jobs, "sync", l->id);
  if (sec == NULL) {
    snprintf(l->err, sizeof(l->err), "no such sync job '%s'", l->id);
    l->rc = CORE_ENOTFOUND;
    goto out;
  }
  const char *remote = core_config_get(sec, "remote");
  const struct core_config_section *rsec =
      remote ? core_config_find(&remotes, "remote", remote) : NULL;
  l->p = core_new(struct sync_params);
  l->rc = sync_params_from_job(l->p, sec, rsec, l->err, sizeof(l->err));
out:
  core_config_free(&jobs);
  core_config_free(&remotes);
}

static void job_load_done(struct core_job *j, int status)
{
  struct job_load *l = (struct job_load *)j;
  struct sync_ctx *ctx = l->ctx;
  ctx->pending--;
  int rc = status < 0 ? status : l->rc;
  if (rc < 0) {
    sync_params_free(l->p);
    l->cb(l->arg, rc, l->err[0] ? l->err : NULL, NULL);
  } else {
    sync_start(ctx, l->p, l->authid, l->cb, l->arg);
  }
  core_free(l->id);
  core_free(l->authid);
  core_free(l);
}

void sync_start_job(struct sync_ctx *ctx, const char *id, const char *authid, sync_start_cb cb,
                    void *arg)
{
  struct job_load *l = core_new(struct job_load);
  l->ctx = ctx;
  l->id = core_strdup(id);
  l->authid = core_strdup(authid ? authid : "root@pam");
  l->cb = cb;
  l->arg = arg;
  ctx->pending++;
  if (core_job_submit(ctx->loop, &l->job, job_load_run, job_load_done) < 0) {
    l->rc = CORE_EINVAL;
    job_load_done(&l->job, CORE_EINVAL);
  }
}

/* ---- schedule ---- */

#define JOBSTATE_DIR "jobstates"
#define JOBSTATE_PREFIX "sync-"

struct jobstate_save {
  struct core_job job;
  char *path;    /* in */
  int64_t when;  /* in */
};

static void save_run(struct core_job *j)
{
  struct jobstate_save *w = (struct jobstate_save *)j;
  char text[32];
  int n = snprintf(text, sizeof(text), "%" PRId64 "\n", w->when);
  char *dir = core_strndup(w->path, (size_t)(strrchr(w->path, '/') - w->path));
  int rc = core_mkdir_p(dir, 0750);
  if (rc == 0)
    rc = core_file_replace(w->path, text, (size_t)n, 0640, 0);
  if (rc < 0)
    core_warn("cannot record the scheduled run in %s: %s", w->path, core_strerror(rc));
  core_free(dir);
}

static void save_done(struct core_job *j, int status)
{
  struct jobstate_save *w = (struct jobstate_save *)j;
  (void)status;
  core_free(w->path);
  core_free(w);
}

static void jobstate_save(struct sync_ctx *ctx, const char *id, int64_t when)
{
  struct jobstate_save *w = core_new(struct jobstate_save);
  w->path = core_asprintf("%s/%s/%s%s", ctx->run_dir, JOBSTATE_DIR, JOBSTATE_PREFIX, id);
  w->when = when;
  if (core_job_submit(ctx->loop, &w->job, save_run, save_done) < 0)
    save_done(&w->job, CORE_EINVAL);
}

struct sched_entry {
  char id[64];
  char expr[CORE_CALENDAR_MAX_LEN + 1]; /* "" without a schedule */
  int64_t last;                         /* from the job state file, 0 unknown */
};

struct sched_load {
  struct core_job job;
  struct sync_ctx *ctx;
  int first;                    /* in: also read the job state files */
  struct sched_entry *entries;  /* out */
  size_t n;
  int rc;
};

static void sched_load_run(struct core_job *j)
{
  struct sched_load *l = (struct sched_load *)j;
  struct core_config jobs;
  char err[128];
  l->rc = sync_cfg_load(l->ctx->config_dir, 0, &jobs, NULL, err, sizeof(err));
  if (l->rc == 0) {
    l->entries = core_calloc(jobs.nsections ? jobs.nsections : 1, sizeof(*l->entries));
    for (size_t i = 0; i < jobs.nsections; i++) {
      const struct core_config_section *sec = jobs.sections[i];
      if (strcmp(sec->type, "sync") || strlen(sec->name) >= sizeof(l->entries[0].id))
        continue;
      struct sched_entry *e = &l->entries[l->n++];
      snprintf(e->id, sizeof(e->id), "%s", sec->name);
      const char *v = core_config_get(sec, "schedule");
      snprintf(e->expr, sizeof(e->expr), "%s", v && strlen(v) <= CORE_CALENDAR_MAX_LEN ? v : "");
      if (!l->first)
        continue;
      char *path = core_asprintf("%s/%s/%s%s", l->ctx->run_dir, JOBSTATE_DIR, JOBSTATE_PREFIX,
                                 sec->name);
      uint8_t *text = NULL;
      size_t len = 0;
      if (core_file_read(path, 64, &text, &len) == 0) {
        char buf[65];
        memcpy(buf, text, len);
        buf[len] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        int64_t when;
        if (core_parse_i64(buf, &when) == 0 && when > 0)
          e->last = when;
        core_free(text);
      }
      core_free(path);
    }
  } else {
    core_warn("sync schedules: cannot read %s: %s", SYNC_JOB_CFG, err);
  }
  core_config_free(&jobs);
}

static void sched_arm(struct sync_ctx *ctx, int64_t next_event);

static void on_sched_started(void *arg, int err, const char *msg, struct core_task *task)
{
  char *id = arg;
  if (err < 0)
    core_warn("scheduled sync job %s not started: %s", id, msg ? msg : core_strerror(err));
  else
    core_info("scheduled sync job %s started: %s", id, task->upid);
  core_free(id);
}

static void sched_evaluate(struct sync_ctx *ctx)
{
  int64_t now = (int64_t)time(NULL), wake = -1;
  const char *k;
  void *v;
  for (size_t i = 0; core_map_next(&ctx->jobs, &i, &k, &v);) {
    struct sync_job_state *st = v;
    if (!st->cal_ok)
      continue;
    int64_t next;
    int due = core_calendar_next(&st->cal, st->last ? st->last : ctx->sched_last, &next) == 0 &&
              next <= now;
    if (due && st->run == NULL) {
      st->last = now;
      jobstate_save(ctx, k, now);
      sync_start_job(ctx, k, "root@pam", on_sched_started, core_strdup(k));
    }
    if (core_calendar_next(&st->cal, now, &next) == 0 && (wake < 0 || next < wake))
      wake = next;
  }
  ctx->sched_last = now;
  sched_arm(ctx, wake);
}

static void sched_load_done(struct core_job *j, int status)
{
  struct sched_load *l = (struct sched_load *)j;
  struct sync_ctx *ctx = l->ctx;
  ctx->pending--;
  ctx->sched_busy = 0;
  if (status == 0 && l->rc == 0 && !ctx->closing) {
    const char *k;
    void *v;
    for (size_t i = 0; core_map_next(&ctx->jobs, &i, &k, &v);)
      ((struct sync_job_state *)v)->seen = 0;
    for (size_t i = 0; i < l->n; i++) {
      struct sched_entry *e = &l->entries[i];
      struct sync_job_state *st = core_map_get(&ctx->jobs, e->id);
      if (st == NULL) {
        st = core_new(struct sync_job_state);
        core_map_put(&ctx->jobs, e->id, st);
      }
      st->seen = 1;
      if (e->last)
        st->last = e->last;
      if (st->expr == NULL || strcmp(st->expr, e->expr) != 0) {
        core_free(st->expr);
        st->expr = core_strdup(e->expr);
        st->cal_ok = 0;
        char why[128];
        if (e->expr[0] && core_calendar_parse(e->expr, &st->cal, why, sizeof(why)) == 0)
          st->cal_ok = 1;
        else if (e->expr[0])
          core_warn("sync job %s: ignoring invalid schedule '%s': %s", e->id, e->expr, why);
      }
    }
    /* Jobs gone from the file: forget them unless one still runs. */
    for (size_t i = 0; core_map_next(&ctx->jobs, &i, &k, &v);) {
      struct sync_job_state *st = v;
      if (!st->seen && st->run == NULL) {
        core_map_del(&ctx->jobs, k);
        core_free(st->expr);
        core_free(st);
        i = 0;
      }
    }
  }
  core_free(l->entries);
  core_free(l);
  if (!ctx->closing)
    sched_evaluate(ctx);
}

static void on_sched_tick(uv_timer_t *h)
{
  struct sync_ctx *ctx = h->data;
  if (ctx->closing || ctx->sched_busy)
    return;
  uint64_t gen = ctx->shmem ? core_shmem_gen_load(ctx->shmem, CORE_GEN_JOB) : 0;
  int first = ctx->sched_last == 0;
  if (!first && gen == ctx->loaded_gen && ctx->shmem) {
    sched_evaluate(ctx);
    return;
  }
  ctx->loaded_gen = gen;
  struct sched_load *l = core_new(struct sched_load);
  l->ctx = ctx;
  l->first = first;
  ctx->sched_busy = 1;
  ctx->pending++;
  if (first)
    ctx->sched_last = (int64_t)time(NULL);
  if (core_job_submit(ctx->loop, &l->job, sched_load_run, sched_load_done) < 0) {
    l->rc = CORE_EINVAL;
    sched_load_done(&l->job, CORE_EINVAL);
  }
}

static void sched_arm(struct sync_ctx *ctx, int64_t next_event)
{
  uint64_t delay = ctx->sched_max_ms;
  if (next_event >= 0) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t d = next_event * 1000 - ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000) + 10;
    if (d < 10)
      d = 10;
    if ((uint64_t)d < delay)
      delay = (uint64_t)d;
  }
  uv_timer_start(&ctx->sched_timer, on_sched_tick, delay, 0);
}

/* ---- context ---- */

int sync_ctx_init(struct sync_ctx *ctx, uv_loop_t *loop, struct store_registry *reg,
                  struct store_access *access, struct gc_ctx *gc, struct core_shmem *shmem,
                  const char *config_dir, const char *run_dir)
{
  memset(ctx, 0, sizeof(*ctx));
  ctx->loop = loop;
  ctx->reg = reg;
  ctx->access = access;
  ctx->gc = gc;
  ctx->shmem = shmem;
  ctx->config_dir = core_strdup(config_dir);
  ctx->run_dir = core_strdup(run_dir);
  ctx->sched_max_ms = 2000;
  core_map_init(&ctx->jobs);
  uv_timer_init(loop, &ctx->sched_timer);
  ctx->sched_timer.data = ctx;
  uv_unref((uv_handle_t *)&ctx->sched_timer);
  uv_timer_start(&ctx->sched_timer, on_sched_tick, 1000, 0);
  return 0;
}

void sync_ctx_close(struct sync_ctx *ctx)
{
  ctx->closing = 1;
  uv_timer_stop(&ctx->sched_timer);
  for (struct sync_run *r = ctx->runs; r; r = r->next) {
    if (r->task)
      core_task_abort(r->task);
    pthread_mutex_lock(&r->eng.call_mutex);
    r->eng.closing = 1;
    pthread_mutex_unlock(&r->eng.call_mutex);
  }
  /* The engines notice the abort within one request or chunk. Loop calls
   * in flight (S3 uploads) need the loop to finish: keep turning it until
   * every engine has said it is done; then ending a run joins its thread. */
  for (;;) {
    int running = 0;
    for (struct sync_run *r = ctx->runs; r; r = r->next)
      running += !atomic_load(&r->done);
    if (!running)
      break;
    uv_run(ctx->loop, UV_RUN_NOWAIT);
    struct timespec ts = {0, 2000000L};
    nanosleep(&ts, NULL);
  }
  while (ctx->runs)
    run_end(ctx->runs);
  uv_close((uv_handle_t *)&ctx->sched_timer, NULL);
  while (ctx->pending > 0)
    uv_run(ctx->loop, UV_RUN_ONCE);
  uv_run(ctx->loop, UV_RUN_NOWAIT);
  const char *k;
  void *v;
  for (size_t i = 0; core_map_next(&ctx->jobs, &i, &k, &v);) {
    struct sync_job_state *st = v;
    core_free(st->expr);
    core_free(st);
  }
  core_map_free(&ctx->jobs);
  core_free(ctx->config_dir);
  core_free(ctx->run_dir);
}

/* Used by the API: the newest task of a job, or NULL. */
struct core_task *sync__job_last_task(struct sync_ctx *ctx, const char *id);
struct core_task *sync__job_last_task(struct sync_ctx *ctx, const char *id)
{
  size_t idlen = strlen(id);
  for (size_t i = 0;; i++) {
    struct core_task *t = core_tasks_at(ctx->gc->tasks, i);
    if (t == NULL)
      return NULL;
    if (strcmp(t->type, SYNC_TASK_JOB) != 0 || t->worker_id == NULL)
      continue;
    size_t wl = strlen(t->worker_id);
    if (wl > idlen && t->worker_id[wl - idlen - 1] == ':' &&
        strcmp(t->worker_id + wl - idlen, id) == 0)
      return t;
  }
}

