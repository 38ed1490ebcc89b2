/* core_task.h: long-running work as tasks with a PBS-style UPID, a state and
 * a log (the task registry).
 *
 * DESIGN
 * A task is identified by a UPID, the same string PBS uses:
 *
 *   UPID:localhost:PPPPPPPP:SSSSSSSS:TTTTTTTT:EEEEEEEE:TYPE:WORKER_ID:AUTHID:
 *
 * with the process id, the process start time (clock ticks since boot, from
 * /proc/self/stat), a per-process task counter and the start time (epoch
 * seconds) in upper-case hex of at least 8 digits. WORKER_ID is escaped
 * like a systemd unit name ('/' -> '-', bytes outside [A-Za-z0-9_.] -> \xNN)
 * so it never holds ':' or blanks.
 *
 * The task's owner (GC, prune, verify) is a loop-side state machine that
 * submits pool jobs; the registry only records what happens: started,
 * log lines, warnings, abort requests, and the end with an exit status
 * ("OK", "WARNINGS: N" or "ERROR: message"). It never runs work itself.
 *
 * Log lines may be written from any thread (core_task_log takes a small
 * per-task mutex around an in-memory buffer); the loop moves buffered lines
 * to the task's log file in pool jobs, one job per task at a time, so the
 * loop never writes a file. Reading a log is a pool job that runs in the same
 * per-task queue behind the pending writes, so a reader always sees every
 * line logged before its request.
 *
 * A full disk (ENOSPC, EDQUOT) does not lose lines: an append is all or
 * nothing (a torn write is truncated away), the lines go back to the buffer
 * and every flush tick retries them, while reads serve them from memory
 * after the file's lines. The buffer's cap (CORE_TASK_LOG_PENDING_MAX) still
 * holds. This matters for GC, which runs when the disk is full and frees it.
 *
 * Persistence, under <run-dir>/tasks/:
 *   log/<UPID>  one file per task: "<ISO 8601 time>: <text>" lines, the last
 *               one "TASK OK" / "TASK WARNINGS: N" / "TASK ERROR: ..."
 *   index       one line per known task: UPID, store, end time (hex, or "-"
 *               while running) and exit status, tab separated; rewritten
 *               atomically (temp file + rename) from a pool job whenever a
 *               task starts or ends, coalescing bursts.
 * At startup (core_tasks_init) every task the index still lists as running
 * belonged to a process that is gone: it is recorded as stopped with
 * "ERROR: aborted: server restarted while the task was running", and that
 * line is appended to its log. The most recent CORE_TASKS_KEEP stopped tasks
 * are kept; older ones are dropped with their log files.
 *
 * THREADS: everything is loop-thread only, except the functions marked "any
 * thread", which pool jobs of the task's owner may call while the task runs.
 * core_tasks_init and core_tasks_close block (startup and shutdown only).
 */
#ifndef CORE_TASK_H
#define CORE_TASK_H

#include "core/core_buf.h"
#include "core/core_map.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#define CORE_TASKS_KEEP 1000        /* stopped tasks remembered (and their logs) */
#define CORE_TASK_UPID_MAX 512      /* longest UPID, NUL included */
#define CORE_TASK_LOG_PENDING_MAX (4u * 1024 * 1024) /* unflushed log bytes per task */
#define CORE_TASK_LOG_LINE_MAX 4096 /* longer messages are cut */
#define CORE_TASK_FLUSH_MS 200      /* how often buffered log lines reach the file */

/* The parts of a UPID. Strings point into `buf`. */
struct core_upid {
  char buf[CORE_TASK_UPID_MAX];
  const char *node;
  const char *type;
  const char *worker_id; /* escaped form, as in the UPID */
  const char *authid;
  uint32_t pid;
  uint64_t pstart;
  uint64_t task_id;
  int64_t starttime;
};

/* Parses and validates a UPID. Returns 0 or CORE_EPARSE. Pure; any thread. */
int core_upid_parse(const char *s, struct core_upid *out);

/* systemd-style escaping of a worker id into `out` (cap bytes). Returns the
 * length, or CORE_ETOOBIG. Pure; any thread. */
int core_task_escape_id(const char *in, char *out, size_t cap);

struct core_tasks;
struct core_task;
struct core_task_read;

typedef void (*core_task_abort_fn)(struct core_task *t, void *arg);

struct core_task {
  /* Identity: immutable from start on; any thread may read. */
  char *upid;                  /* owned */
  char *type;                  /* owned: "garbage_collection", "verify", ... */
  char *worker_id;             /* owned, unescaped: "store1", "store1:vm/100" */
  char *authid;                /* owned */
  char *store;                 /* owned datastore name, or NULL */
  uint32_t pid;
  uint64_t pstart;
  uint64_t task_id;
  int64_t starttime;           /* epoch seconds */
  /* State: loop thread only. */
  int running;                 /* 1 until core_task_finish */
  int64_t endtime;             /* epoch seconds; 0 while running */
  char *exitstatus;            /* owned once stopped: "OK", "WARNINGS: N", "ERROR: ..." */
  double progress;             /* 0..1, set by the owner (core_task_set_progress) */
  core_task_abort_fn on_abort; /* called (loop) on an abort request; may be NULL */
  void *on_abort_arg;
  /* Shared with pool jobs. */
  _Atomic int abort_requested; /* any thread reads (core_task_aborted) */
  _Atomic unsigned warnings;   /* lines logged with core_task_warn */
  pthread_mutex_t log_mutex;   /* guards `pending` and `lines` */
  struct core_buf pending;     /* log text not yet handed to a write job */
  uint64_t lines;              /* lines logged so far */
  /* Private to core_task.c (loop thread). */
  struct core_tasks *reg;
  char *log_path;              /* owned: <run-dir>/tasks/log/<UPID> */
  int busy;                    /* a write/read job of this task is in flight */
  int write_failed;            /* the last append found no space: its lines went
                                  back to `pending`, retried at each flush tick */
  int dropped;                 /* pending overflowed: lines were dropped */
  struct core_task_read *readers; /* log reads waiting for the next job */
};

/* Opens (creating) <run_dir>/tasks, loads the index, and records tasks that
 * were running when the previous process died as aborted. Blocking: call at
 * startup. On success *out is a registry the caller frees with
 * core_tasks_close. Returns 0 or a negative errno. */
int core_tasks_init(struct core_tasks **out, uv_loop_t *loop, const char *run_dir);
/* Writes every buffered log line and the index (blocking: shutdown only) and
 * frees the registry. Tasks still running are recorded as aborted ("server
 * shutdown"); their owners must be gone (no job of theirs in flight, and they
 * will not touch their task again). Jobs of the registry itself still in flight
 * are waited for by running the loop. */
void core_tasks_close(struct core_tasks *r);

/* Starts a task. `worker_id` is unescaped (it is escaped into the UPID);
 * `store` may be NULL. Returns the task (owned by the registry; the caller
 * may use it until core_task_finish) or NULL if the UPID would be too long
 * (over CORE_TASK_UPID_MAX). Logs nothing: the caller writes its first line. */
struct core_task *core_task_start(struct core_tasks *r, const char *type,
                                  const char *worker_id, const char *authid,
                                  const char *store);

/* Appends a log line (any thread). Control characters become spaces; text
 * over CORE_TASK_LOG_LINE_MAX is cut. */
void core_task_log(struct core_task *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The same, prefixed "WARN: ", and counted: a task that ends without error
 * but with warnings ends "WARNINGS: N" (any thread). */
void core_task_warn(struct core_task *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* True once an abort was requested (any thread). Owners check it between
 * jobs and, in long jobs, every few thousand items. */
int core_task_aborted(const struct core_task *t);
/* Progress 0..1 for the status API (loop thread). */
void core_task_set_progress(struct core_task *t, double fraction);

/* Ends the task: err == 0 gives "OK" (or "WARNINGS: N"), else
 * "ERROR: <msg>" (msg may be NULL: core_strerror(err) is used). Logs the
 * closing "TASK ..." line and persists the state. The caller must not touch
 * `t` afterwards. Loop thread. */
void core_task_finish(struct core_task *t, int err, const char *msg);

/* Requests an abort: sets the flag and calls on_abort. Returns 0, or
 * CORE_EINVAL if the task is no longer running. Loop thread. */
int core_task_abort(struct core_task *t);

/* Lookup by UPID (exact string). NULL if unknown. Loop thread. */
struct core_task *core_tasks_find(struct core_tasks *r, const char *upid);
/* Iteration, newest first: for (size_t i = 0; (t = core_tasks_at(r, i)); i++).
 * The set must not change during an iteration (no start/finish in between;
 * that holds inside one loop callback). Loop thread. */
struct core_task *core_tasks_at(struct core_tasks *r, size_t i);
/* A core_metrics collector (ctx: the registry; loop thread): runs per task
 * type, datastore and result, durations, and the time of the last success
 * (cairn_task_*). */
int core_tasks_metrics_collect(void *ctx, struct core_buf *out);
/* core_task_stats.c, for core_task.c only. */
void core__task_stats_record(struct core_map *stats, const struct core_task *t, int live);
void core__task_stats_free(struct core_map *stats);
int core__task_stats_render(const struct core_map *stats, struct core_buf *out);
size_t core_tasks_count(const struct core_tasks *r);

/* Reading a log: lines [start, start + limit) (0-based; limit 0 = up to
 * CORE_TASK_READ_MAX lines). `cb` gets a JSON array text
 * [{"n": <1-based number>, "t": "<line>"}, ...] (valid only during the
 * callback) and the total number of lines, or err < 0 (no JSON). `cb` runs on
 * the loop thread, possibly inside this call (never for a successful read).
 * The task may stop meanwhile; it stays valid until `cb` has run. */
#define CORE_TASK_READ_MAX 50000
typedef void (*core_task_read_cb)(void *arg, int err, const char *json, size_t len,
                                  uint64_t total);
void core_task_read_log(struct core_task *t, uint64_t start, uint64_t limit,
                        core_task_read_cb cb, void *arg);

/* Exit-status helpers for the API: 1 if the stopped task ended in error. */
int core_task_failed(const struct core_task *t);

#endif
