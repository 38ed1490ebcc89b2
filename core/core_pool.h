/* core_pool.h: worker threads that report back to the loop without spinning.
 *
 * DESIGN
 * libuv's own pool (uv_queue_work) tells the loop about finished work with a
 * uv_async_t. In libuv 1.44 (Debian 12) the loop thread busy-waits, with
 * sched_yield(), while a worker is inside uv_async_send(); the eventfd write
 * in there wakes the loop thread, which on a busy machine often preempts that
 * very worker, and the loop then waits out the worker's time slice. Measured
 * on 2 vCPUs with an S3 server beside us: loop stalls of 6-9 ms per
 * completion, and a p99 loop lag of tens of milliseconds. (libuv 1.45 removed
 * the busy wait.)
 *
 * A core_pool keeps finished jobs on a lock-free list and wakes the loop
 * through a core_wake (core_wake.h: an eventfd). Jobs reach the workers the
 * same way: a lock-free list and a semaphore post, and only the workers
 * take the mutex that orders the two lanes. Nothing on the loop ever waits
 * for a worker: with a shared mutex and condition variable, the loop thread
 * blocked in pthread_mutex_lock and pthread_cond_signal about 25 times a
 * second under the 64-client load, for up to 12 ms each time, whenever the
 * worker holding the lock had been preempted (sched_switch traces).
 *
 * Jobs embed struct core_job (core_job.h): `run` executes on a worker, `done`
 * on the loop thread, in no particular order. Threads may run at a lower CPU
 * priority (nice, or SCHED_IDLE: never preempting other threads, only
 * cycles nobody else wants) and at the lowest best-effort I/O priority, for
 * background work such as GC (a thread's priority can be lowered without
 * privileges but never raised again, so such threads are dedicated).
 *
 * Two lanes. Bulk jobs (chunk writes and reads: megabytes each, and a write
 * may sit in the kernel's dirty-page throttling for hundreds of milliseconds
 * when the disk is the bottleneck) may occupy at most `threads - reserve`
 * threads; other jobs (status, listings, config, session bookkeeping: small
 * and quick) go first and always find a thread, so a datastore saturated with
 * uploads still answers its status requests at once. Without the lanes,
 * measured with 64 clients uploading over TLS: status p99 693 ms, every
 * thread being inside a chunk write.
 *
 * THREADS: core_pool_start/submit/stop are loop-thread only.
 */
#ifndef CORE_POOL_H
#define CORE_POOL_H

#include "core/core_job.h"
#include "core/core_metrics.h"
#include "core/core_wake.h"

#include <pthread.h>
#include <semaphore.h>
#include <uv.h>

#define CORE_POOL_MAX 64

struct core_pool_opts {
  const char *name;    /* for log messages, e.g. "gc" */
  int threads;         /* 1..CORE_POOL_MAX */
  int nice;            /* 0..19 */
  int idle_cpu;        /* SCHED_IDLE */
  int idle_io;         /* lowest best-effort I/O priority */
};

struct core_pool {
  uv_loop_t *loop;                /* borrowed */
  struct core_wake wake;          /* finished jobs; ref'd while jobs are pending */
  pthread_mutex_t mutex;          /* workers only: the lanes, bulk_running, stop */
  sem_t sem;                      /* one post per job submitted, n more to stop */
  _Atomic(struct core_job *) incoming; /* submitted, newest first (loop pushes) */
  struct core_job *todo, **todo_tail;           /* the quick lane */
  struct core_job *bulk, **bulk_tail;           /* the bulk lane */
  int bulk_running;               /* bulk jobs on a thread (under `mutex`) */
  int bulk_max;                   /* at most this many of them: n - reserve */
  _Atomic(struct core_job *) done; /* finished, newest first (workers push) */
  int stop;
  pthread_t threads[CORE_POOL_MAX];
  int n;                          /* threads running */
  int named;                      /* threads that took an index for their name */
  int nice;
  int idle_cpu;
  int idle_io;
  unsigned pending;               /* loop: submitted, `done` not yet called */
  int started;
  char name[16];                  /* opts.name, for the metrics label */
  int closed;                     /* the wake handle is closed */
  /* Metrics: any thread (atomics). */
  struct core_gauge queued;       /* jobs waiting for a thread */
  struct core_gauge running;      /* jobs on a thread now */
  struct core_hist wait;          /* submit to start on a thread */
  struct core_hist run;           /* time on a thread */
};

/* Starts the threads (errors setting priorities are ignored). Returns 0 or a
 * negative error. */
int core_pool_start(struct core_pool *p, uv_loop_t *loop, const struct core_pool_opts *o);
/* Queues a job; never fails. `core_pool_submit_bulk` queues it in the bulk
 * lane (see DESIGN). */
void core_pool_submit(struct core_pool *p, struct core_job *job, core_job_run_fn run,
                      core_job_done_fn done);
void core_pool_submit_bulk(struct core_pool *p, struct core_job *job, core_job_run_fn run,
                           core_job_done_fn done);
/* Runs the loop until every submitted job's `done` has run, stops the threads
 * and closes the handle. Blocking: shutdown only. */
void core_pool_stop(struct core_pool *p);
/* A core_metrics collector (ctx: a NULL-terminated array of pools; loop
 * thread): queue depth, jobs running, threads, and histograms of the queue
 * wait and run time, as cairn_pool_* with a pool="<name>" label. */
int core_pool_metrics_collect(void *ctx, struct core_buf *out);

#endif
