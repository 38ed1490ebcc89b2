/* gc_worker.h: a small thread pool for background tasks (GC, prune, verify).
 *
 * DESIGN
 * Background tasks run their file-system work on their own threads instead
 * of libuv's pool, for two reasons:
 *   - libuv's pool is what backups and restores insert and read chunks with;
 *     a GC keeping several of its threads busy for minutes would slow every
 *     backup down by the same share;
 *   - the threads run at a lower CPU priority (nice, default 10) and the
 *     lowest best-effort I/O priority, so a GC or verify that is CPU-bound
 *     (warm caches, hashing) yields to the loop thread and to backups, while
 *     on an idle machine it still gets every idle cycle. A thread's nice
 *     value can be raised without privileges but never lowered again, which
 *     is why these threads are dedicated rather than borrowed.
 * Several threads (default 4) are worth having even on a small machine
 * because most of GC's time is spent waiting on metadata I/O (inode reads,
 * unlink journaling, discard), which overlaps across threads.
 *
 * The interface mirrors core_job.h: a job embeds struct core_job, `run`
 * executes on a worker thread and `done` on the loop thread (via a
 * uv_async_t). Jobs run in no particular order.
 *
 * THREADS: gc_workers_start/stop/submit are loop-thread only.
 */
#ifndef GC_WORKER_H
#define GC_WORKER_H

#include "core/core_job.h"

#include <pthread.h>
#include <uv.h>

#define GC_WORKERS_MAX 16

struct gc_wnode;

struct gc_workers {
  uv_loop_t *loop;                /* borrowed */
  uv_async_t async;               /* wakes the loop for finished jobs; ref'd while busy */
  pthread_mutex_t mutex;          /* guards the two queues and `stop` */
  pthread_cond_t cond;            /* signalled when work arrives or on stop */
  struct gc_wnode *todo, **todo_tail;
  struct gc_wnode *done, **done_tail;
  int stop;
  pthread_t threads[GC_WORKERS_MAX];
  int n;                          /* threads running */
  int nice;                       /* their nice value */
  unsigned pending;               /* loop: submitted, `done` not yet called */
  int started;
  int closed;                     /* the async handle is closed */
};

/* Starts `n` (1..GC_WORKERS_MAX) threads at nice value `nice` (0..19; errors
 * setting it are ignored). Returns 0 or a negative error. */
int gc_workers_start(struct gc_workers *w, uv_loop_t *loop, int n, int nice);
/* Queues a job (never fails: the node is a fixed-size allocation). */
void gc_workers_submit(struct gc_workers *w, struct core_job *job, core_job_run_fn run,
                       core_job_done_fn done);
/* Stops the threads after the jobs they are running (no job may be queued or
 * pending: callers wait for their engines first) and closes the async handle;
 * runs the loop until it is closed. Blocking: shutdown only. */
void gc_workers_stop(struct gc_workers *w);

#endif
