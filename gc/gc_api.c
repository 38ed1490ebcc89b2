/* gc_api.c: the module context and its registration. */
#include "gc/gc_api.h"
#include "gc/gc_cache.h"
#include "gc/gc_status.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_log.h"

#include <stdio.h>
#include <string.h>

int gc_schedule_check(const char *expr, char *err, size_t len)
{
  struct core_calendar cal;
  char why[160];
  if (expr == NULL || core_calendar_parse(expr, &cal, why, sizeof(why)) < 0) {
    if (err && len)
      snprintf(err, len, "invalid schedule '%s': %s", expr ? expr : "", expr ? why : "empty");
    return CORE_ECONFIG;
  }
  return 0;
}

struct gc_store_state *gc__store_state(struct gc_ctx *ctx, const char *store)
{
  struct gc_store_state *st = core_map_get(&ctx->stores, store);
  if (st == NULL) {
    st = core_new(struct gc_store_state);
    core_map_put(&ctx->stores, store, st);
  }
  return st;
}

void gc__submit(struct gc_ctx *ctx, struct core_job *job, core_job_run_fn run,
                core_job_done_fn done)
{
  core_pool_submit(&ctx->workers, job, run, done);
}

static void start_lookup(void *arg, int err, struct store_datastore *ds)
{
  struct gc_start *s = arg;
  struct gc_ctx *ctx = s->ctx;
  if (err < 0)
    s->cb(s->arg, err, NULL, NULL);
  else
    s->ready(s, ds);
  gc__run_end(ctx);
  core_free(s->store);
  core_free(s->authid);
  core_free((void *)s->opts);
  core_free(s);
}

void gc__start(struct gc_ctx *ctx, const char *store, const char *authid, enum store_op op,
               const void *opts, size_t opts_len,
               void (*ready)(struct gc_start *s, struct store_datastore *ds), gc_start_cb cb,
               void *arg)
{
  if (ctx->closing) {
    cb(arg, CORE_EABORTED, "server is shutting down", NULL);
    return;
  }
  struct gc_start *s = core_new(struct gc_start);
  s->ctx = ctx;
  s->store = core_strdup(store);
  s->authid = core_strdup(authid ? authid : "root@pam");
  if (opts_len) {
    void *copy = core_malloc(opts_len);
    memcpy(copy, opts, opts_len);
    s->opts = copy;
  }
  s->cb = cb;
  s->arg = arg;
  s->ready = ready;
  gc__run_begin(ctx); /* the lookup may wait for a reload */
  store_lookup(ctx->reg, store, op, start_lookup, s);
}

void gc__status_remember(struct gc_store_state *state, const struct gc_status *unsaved)
{
  if (unsaved == NULL) {
    core_free(state->unsaved);
    state->unsaved = NULL;
    return;
  }
  if (state->unsaved == NULL)
    state->unsaved = core_new(struct gc_status);
  *state->unsaved = *unsaved;
}

void gc__run_begin(struct gc_ctx *ctx)
{
  ctx->runs++;
}

void gc__run_end(struct gc_ctx *ctx)
{
  ctx->runs--;
}

int gc_ctx_init(struct gc_ctx *ctx, uv_loop_t *loop, struct store_registry *reg,
                const char *run_dir)
{
  memset(ctx, 0, sizeof(*ctx));
  ctx->loop = loop;
  ctx->reg = reg;
  ctx->run_dir = core_strdup(run_dir);
  ctx->cache_capacity = GC_CACHE_DEFAULT_CAPACITY;
  ctx->sched_max_ms = 2000;
  ctx->cutoff_override_s = -1;
  ctx->writer_grace_s = 300;
  core_map_init(&ctx->stores);
  ctx->n_workers = 16;
  ctx->worker_nice = 19;
  int rc = core_tasks_init(&ctx->tasks, loop, run_dir);
  if (rc < 0) {
    core_error("cannot open the task directory in %s: %s", run_dir, core_strerror(rc));
    core_map_free(&ctx->stores);
    core_free(ctx->run_dir);
    return rc;
  }
  struct core_pool_opts po = {"gc", ctx->n_workers, ctx->worker_nice, 1, 1};
  rc = core_pool_start(&ctx->workers, loop, &po);
  if (rc < 0) {
    core_error("cannot start the gc worker threads: %s", core_strerror(rc));
    core_tasks_close(ctx->tasks);
    core_map_free(&ctx->stores);
    core_free(ctx->run_dir);
    return rc;
  }
  gc__sched_start(ctx);
  return 0;
}

void gc_ctx_close(struct gc_ctx *ctx)
{
  ctx->closing = 1;
  gc__sched_stop(ctx);
  /* Abort whatever still runs and let the engines wind down: each ends
   * within one pool job. */
  for (size_t i = 0;; i++) {
    struct core_task *t = core_tasks_at(ctx->tasks, i);
    if (t == NULL)
      break;
    if (t->running)
      core_task_abort(t);
  }
  while (ctx->runs > 0 || !ctx->sched_closed)
    uv_run(ctx->loop, UV_RUN_ONCE);
  core_pool_stop(&ctx->workers);
  core_tasks_close(ctx->tasks);
  ctx->tasks = NULL;
  const char *k;
  void *v;
  for (size_t i = 0; core_map_next(&ctx->stores, &i, &k, &v);) {
    struct gc_store_state *st = v;
    core_free(st->gc_expr);
    core_free(st->prune_expr);
    core_free(st->unsaved);
    core_free(st);
  }
  core_map_free(&ctx->stores);
  core_free(ctx->run_dir);
  ctx->run_dir = NULL;
}

void gc_api_register(struct http_server *s, struct gc_ctx *ctx)
{
  gc__routes_register(s, ctx);
  gc__tasks_register(s, ctx);
  gc__move_register(s, ctx);
}
