/* gc_api.h: garbage collection, prune, verify, schedules and the tasks API.
 *
 * DESIGN
 * One struct gc_ctx per server holds the task registry (core_task.h), the
 * per-datastore state of this module (which GC or prune task is running,
 * parsed schedules) in a map keyed by datastore name, and the schedule
 * timer. Every long operation is an engine: a loop-side state machine that
 * owns a task and runs its file-system work as a sequence of small pool jobs
 * (a few thousand chunks or index entries each), so the loop stays free,
 * other requests keep flowing, and an abort takes effect within one job.
 *
 *   gc_local.c   GC of a local datastore (atime check, mark, sweep, .gc-status)
 *   gc_prune.c   prune of one group (HTTP request) and prune-datastore (task)
 *   gc_verify.c  verify of snapshots (task)
 *   gc_sched.c   gc-schedule / prune-schedule timer
 *   gc_routes.c  REST handlers for gc, prune, prune-datastore, verify
 *   gc_tasks.c   REST handlers for /api2/json/nodes/localhost/tasks
 *   gc_move.c    move-group and move-namespace (tasks; the moves are store_move.h)
 *
 * Wiring in cairnd (after store_registry_init, before listening):
 *   gc_ctx_init(&gc, loop, &reg, run_dir);  gc_api_register(http, &gc);
 * and at shutdown, after the loop returned and before store_registry_close:
 *   gc_ctx_close(&gc);
 *
 * THREADS: everything here is loop-thread only.
 */
#ifndef GC_API_H
#define GC_API_H

#include "core/core_calendar.h"
#include "core/core_map.h"
#include "core/core_pool.h"
#include "core/core_task.h"
#include "http/http.h"
#include "format/format_name.h"
#include "store/store_prune.h"
#include "store/store_registry.h"

#include <stdint.h>
#include <uv.h>

/* Task types (PBS's names). */
#define GC_TASK_GC "garbage_collection"
#define GC_TASK_PRUNE "prune"
#define GC_TASK_VERIFY "verify"

struct gc_status;

/* Per datastore, this module's state (loop thread). */
struct gc_store_state {
  struct core_task *gc;      /* running GC task, or NULL */
  struct gc_status *unsaved; /* owned: the last GC's result when it could not be
                                written to .gc-status (full disk), else NULL;
                                GET .../gc answers with it instead of the file */
  struct core_task *prune;   /* running prune-datastore task, or NULL */
  /* Schedules as last seen in datastore.cfg (gc_sched.c). */
  char *gc_expr;             /* owned, or NULL when unset */
  struct core_calendar gc_cal;
  int gc_cal_ok;
  char *prune_expr;          /* owned, or NULL */
  struct core_calendar prune_cal;
  int prune_cal_ok;
  int64_t gc_last;           /* epoch second of the last scheduled GC, 0 unknown */
  int64_t prune_last;        /* likewise for prune-schedule */
  int seen;                  /* mark for dropping removed datastores */
  /* Metrics: what the GCs since start removed (gc_metrics_collect). */
  uint64_t removed_bytes, removed_chunks;
};

struct gc_ctx {
  uv_loop_t *loop;             /* borrowed */
  struct store_registry *reg;  /* borrowed; outlives the context */
  struct store_access *access; /* borrowed, may be NULL: audit log of prunes */
  char *run_dir;               /* owned: locks live in <run_dir>/locks */
  struct core_tasks *tasks;    /* owned task registry (other modules may use it) */
  struct core_map stores;      /* name -> struct gc_store_state * (owned) */
  /* The engines' jobs run on dedicated background threads, not the pool that
   * backups and restores insert and read chunks with (a GC keeping threads
   * busy for minutes would slow every backup by the same share). They run under
   * SCHED_IDLE at nice 19 with the lowest best-effort I/O priority, so CPU-bound
   * GC or verify (warm caches, hashing) yields to the loop and to backups
   * while an idle machine still gives it every cycle; there are many because
   * GC mostly waits on metadata I/O (inode reads, unlink), which overlaps. */
  struct core_pool workers;
  int n_workers;               /* default 16; read by gc_ctx_init */
  int worker_nice;             /* default 19 */
  size_t cache_capacity;       /* GC touched-digest cache, in digests */
  int64_t cutoff_override_s;   /* >= 0 replaces gc-atime-cutoff (tests); default -1 */
  int64_t writer_grace_s;      /* oldest writer start minus this; default 300 (PBS) */
  /* Tests only: called on a gc worker after GC listed a group and before it
   * marks it (attempt 0, 1, ...), to change the group at the worst moment. */
  void (*test_mark_hook)(void *arg, const char *group_dir, int attempt);
  void *test_mark_hook_arg;
  /* schedules */
  uv_timer_t sched_timer;      /* unref'd: never keeps the loop alive by itself */
  int64_t sched_last;          /* events at or before this epoch second are handled */
  uint64_t sched_max_ms;       /* longest sleep between checks (default 2 s: a tick is
                                  one atomic load when datastore.cfg is unchanged) */
  int sched_busy;              /* a registry refresh for the timer is pending */
  int sched_closed;
  /* lifetime */
  int runs;                    /* engines and per-request jobs in flight */
  int closing;
};

/* Sets up the context and the task registry (<run_dir>/tasks; blocking:
 * startup only) and starts the schedule timer. Returns 0 or a negative errno. */
int gc_ctx_init(struct gc_ctx *ctx, uv_loop_t *loop, struct store_registry *reg,
                const char *run_dir);
/* Aborts running tasks, waits (running the loop) until every engine has
 * ended, persists the task state, frees everything. Blocking: call after
 * uv_run returned, before store_registry_close. */
void gc_ctx_close(struct gc_ctx *ctx);

/* Registers:
 *   GET/POST /api2/json/admin/datastore/{store}/gc
 *   POST     /api2/json/admin/datastore/{store}/prune
 *   POST     /api2/json/admin/datastore/{store}/prune-datastore
 *   POST     /api2/json/admin/datastore/{store}/verify
 *   POST     /api2/json/admin/datastore/{store}/move-group, move-namespace
 *   GET      /api2/json/nodes/localhost/tasks
 *   GET      /api2/json/nodes/localhost/tasks/{upid}[/status|/log]
 *   DELETE   /api2/json/nodes/localhost/tasks/{upid}
 * `ctx` must outlive the server. */
void gc_api_register(struct http_server *s, struct gc_ctx *ctx);

/* A core_metrics collector (ctx: the gc_ctx; loop thread): bytes and chunks
 * removed by GC per datastore, and GC/prune tasks running. Run counts,
 * durations and last successes are the task registry's (core_task.h). */
struct core_buf;
int gc_metrics_collect(void *ctx, struct core_buf *out);

/* Validates a gc-schedule / prune-schedule value (PBS calendar events).
 * Returns 0, or CORE_ECONFIG with a one-line reason in err. Pure: any thread.
 * (store/ cannot call into gc/; it may call core_calendar_parse directly,
 * which is what this wraps.) */
int gc_schedule_check(const char *expr, char *err, size_t len);

/* ---- engines (also used by the schedule timer and by tests) ---- */

/* Reports how a start went: err == 0 and the running task, or err < 0 with
 * a message (msg may be NULL) and no task. Runs on the loop thread, possibly
 * inside the start call. */
typedef void (*gc_start_cb)(void *arg, int err, const char *msg, struct core_task *task);

/* Starts a GC of `store` on behalf of `authid`. Errors: CORE_ENOTFOUND,
 * CORE_EMAINT (lookup), CORE_ELOCKED (a GC of that datastore is running),
 * CORE_EABORTED (shutting down). */
void gc_start_gc(struct gc_ctx *ctx, const char *store, const char *authid, gc_start_cb cb,
                 void *arg);

struct gc_prune_opts {
  char ns[FORMAT_NAME_NS_MAX_LEN + 1]; /* "" = root */
  int max_depth;                      /* -1: all levels below ns */
  struct store_prune_keep keep;
  int dry_run;
};

/* Starts prune-datastore over the namespace subtree. Errors as gc_start_gc
 * (CORE_ELOCKED: a prune-datastore of that datastore is running). */
void gc_start_prune(struct gc_ctx *ctx, const char *store, const char *authid,
                    const struct gc_prune_opts *opts, gc_start_cb cb, void *arg);

struct gc_verify_opts {
  char ns[FORMAT_NAME_NS_MAX_LEN + 1]; /* "" = root */
  int max_depth;                      /* -1: all levels below ns */
  char type[8];                       /* "" = every group */
  char id[FORMAT_NAME_ID_MAX + 1];     /* "" = every id (needs type) */
  int64_t time;                       /* -1 = every snapshot of the group */
  int ignore_verified;                /* skip snapshots whose last verify was ok */
  int64_t outdated_after_days;        /* with ignore_verified: re-verify older; 0 = never */
};

/* Starts a verify task. Errors as gc_start_gc (never CORE_ELOCKED). */
void gc_start_verify(struct gc_ctx *ctx, const char *store, const char *authid,
                     const struct gc_verify_opts *opts, gc_start_cb cb, void *arg);

/* ---- module internals (gc__*) ---- */

/* The state of `store`, created on first use. */
struct gc_store_state *gc__store_state(struct gc_ctx *ctx, const char *store);
/* Runs a job of a background engine on the gc workers (see `workers`). */
void gc__submit(struct gc_ctx *ctx, struct core_job *job, core_job_run_fn run,
                core_job_done_fn done);
/* How every engine starts: unless the server is closing, looks `store` up
 * for `op` (which may wait for a config reload, counted as a run) and calls
 * `ready` with the datastore, held for `op`; a failed lookup goes to `cb`
 * instead. `ready` owns the datastore reference and must answer `cb`; the
 * gc_start and everything in it are freed when it returns. */
struct gc_start {
  struct gc_ctx *ctx;
  char *store;
  char *authid;                /* the caller's, or root@pam */
  const void *opts;            /* the engine's options, copied */
  gc_start_cb cb;
  void *arg;
  void (*ready)(struct gc_start *s, struct store_datastore *ds);
};
void gc__start(struct gc_ctx *ctx, const char *store, const char *authid, enum store_op op,
               const void *opts, size_t opts_len,
               void (*ready)(struct gc_start *s, struct store_datastore *ds), gc_start_cb cb,
               void *arg);
/* After a successful GC: `unsaved` is its result if .gc-status could not be
 * written (copied into state->unsaved), NULL if it was (which drops an older
 * unsaved result: the file is newer now). */
void gc__status_remember(struct gc_store_state *state, const struct gc_status *unsaved);
/* Engines count themselves here so gc_ctx_close can wait for them. */
void gc__run_begin(struct gc_ctx *ctx);
void gc__run_end(struct gc_ctx *ctx);
void gc__routes_register(struct http_server *s, struct gc_ctx *ctx);
void gc__tasks_register(struct http_server *s, struct gc_ctx *ctx);
void gc__prune_register(struct http_server *s, struct gc_ctx *ctx);
void gc__move_register(struct http_server *s, struct gc_ctx *ctx); /* gc_move.c */
/* The keep-* options of a prune request (booleans and integers go through
 * http_req_param_bool/_int). Returns 0, or responds 400 and returns <0. */
int gc__parse_keep(struct http_request *req, struct store_prune_keep *keep);
/* A namespace parameter (absent: the root) into out; 0, or responds 400
 * ("parameter NAME: invalid namespace") and returns <0. gc_routes.c; the
 * move routes use it for ns and target-ns. */
int gc__param_ns(struct http_request *req, const char *name, char *out, size_t len);
void gc__sched_start(struct gc_ctx *ctx);
void gc__sched_stop(struct gc_ctx *ctx);
/* Next event of a parsed schedule after `after`, or -1. */
int64_t gc__sched_next(const struct core_calendar *cal, int64_t after);

#endif
