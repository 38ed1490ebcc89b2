/* core_job.h: the one way work reaches a thread pool.
 *
 * A job is a struct embedding `struct core_job` as its first member, with an
 * `in` part the worker only reads and an `out` part only the worker writes.
 * `run` executes on a pool thread and must not touch loop-owned state; `done`
 * executes on the loop thread afterwards (status UV_ECANCELED if the job was
 * cancelled before it ran) and owns the job from then on. Modules wrap this
 * in typed submit functions (store_submit_insert(), ...) so call sites never
 * see uv_queue_work.
 *
 * Jobs go to the core_pool attached to the loop with core_job_attach_pool()
 * (cairnd does this: see core_pool.h for why libuv's own pool is avoided),
 * and to libuv's pool otherwise (tests, small tools).
 */
#ifndef CORE_JOB_H
#define CORE_JOB_H

#include <uv.h>

struct core_job;
typedef void (*core_job_run_fn)(struct core_job *job);
typedef void (*core_job_done_fn)(struct core_job *job, int status);

struct core_pool;

struct core_job {
  uv_work_t work;          /* private */
  struct core_job *next;   /* private: core_pool's lists */
  core_job_run_fn run;     /* pool thread */
  core_job_done_fn done;   /* loop thread */
};

/* Queues `job`. Returns 0, or a negative error from uv_queue_work (then
 * neither callback runs). */
int core_job_submit(uv_loop_t *loop, struct core_job *job, core_job_run_fn run,
                    core_job_done_fn done);

/* Sends every later core_job_submit() on `loop` to `pool` (NULL: back to
 * libuv's pool). Call on the loop's thread, before its first job and after
 * its last. Returns 0, or CORE_ETOOBIG beyond 8 loops with pools. */
int core_job_attach_pool(uv_loop_t *loop, struct core_pool *pool);

#endif
