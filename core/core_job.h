/* core_job.h: the one way work reaches a thread pool.
 *
 * A job is a struct that embeds `struct core_job` as its first member, so
 * `run` and `done` get it back with a plain cast:
 *
 *   struct chunk_job {
 *     struct core_job job;  // first: (struct chunk_job *)j in run and done
 *     ... in: filled before submit; the worker only reads it
 *     ... out: written by the worker; read in done
 *   };
 *
 * `run` executes on a pool thread and must not touch loop-owned state; `done`
 * executes on the loop thread afterwards and owns the job from then on
 * (usually it frees it). `status` is 0, or UV_ECANCELED from libuv's pool
 * for a job cancelled before it ran (nothing cancels jobs today).
 *
 * Call sites. Almost every job type belongs to one file: its struct, `run`
 * and `done` are static there, next to the function that fills it in and
 * calls core_job_submit() directly (a few dozen such calls across store/,
 * gc/, s3/, core/ and cmd/). Typed submit functions per module (a
 * store_submit_insert() and the like) were the plan, but with all the
 * callers of a job type in its own file they would only forward the fields
 * of a struct that would then have to be exported; the static struct keeps
 * the in/out split visible where it is used. Typed entry points exist where a job is shared:
 * s3_hash_submit() (payload hashing for every S3 request),
 * store_session_open() (struct store_open, which backup and reader
 * sessions embed in turn), and gc__submit(), which sends the GC engines'
 * jobs to their own low-priority workers rather than the attached pool.
 * Nothing outside core_job.c calls uv_queue_work.
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
  uint64_t queued_ns;      /* private: core_pool's submit time (uv_hrtime) */
  int bulk;                /* private: in core_pool's bulk lane */
};

/* Queues `job`. Returns 0, or a negative error from uv_queue_work (then
 * neither callback runs). */
int core_job_submit(uv_loop_t *loop, struct core_job *job, core_job_run_fn run,
                    core_job_done_fn done);
/* The same for a job that moves megabytes (a chunk written or read): it goes
 * to the pool's bulk lane, which never takes the last free threads from the
 * quick jobs (core_pool.h). */
int core_job_submit_bulk(uv_loop_t *loop, struct core_job *job, core_job_run_fn run,
                         core_job_done_fn done);

/* Sends every later core_job_submit() on `loop` to `pool` (NULL: back to
 * libuv's pool). Call on the loop's thread, before its first job and after
 * its last. Returns 0, or CORE_ETOOBIG beyond 8 loops with pools. */
int core_job_attach_pool(uv_loop_t *loop, struct core_pool *pool);

#endif
