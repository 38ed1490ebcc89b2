#include "core/core_job.h"

#include "core/core_error.h"
#include "core/core_pool.h"

#include <stdatomic.h>
#include <stddef.h>

static void job_work(uv_work_t *w)
{
  struct core_job *job = (struct core_job *)((char *)w - offsetof(struct core_job, work));
  job->run(job);
}

static void job_after(uv_work_t *w, int status)
{
  struct core_job *job = (struct core_job *)((char *)w - offsetof(struct core_job, work));
  job->done(job, status);
}

/* Which loop sends its jobs to which pool. Not loop->data: uv_loop_init()
 * keeps whatever that field held, so it is garbage in a loop on the stack.
 * A process has a loop or two; the table is written at start and stop. */
#define MAX_ATTACHED 8
static struct {
  uv_loop_t *_Atomic loop;
  struct core_pool *_Atomic pool;
} attached[MAX_ATTACHED];

static struct core_pool *pool_of(uv_loop_t *loop)
{
  for (int i = 0; i < MAX_ATTACHED; i++)
    if (atomic_load(&attached[i].loop) == loop)
      return atomic_load(&attached[i].pool);
  return NULL;
}

static int submit(uv_loop_t *loop, struct core_job *job, core_job_run_fn run,
                  core_job_done_fn done, int bulk)
{
  struct core_pool *pool = pool_of(loop);
  if (pool != NULL) {
    if (bulk)
      core_pool_submit_bulk(pool, job, run, done);
    else
      core_pool_submit(pool, job, run, done);
    return 0;
  }
  job->run = run;
  job->done = done;
  return uv_queue_work(loop, &job->work, job_work, job_after);
}

int core_job_submit(uv_loop_t *loop, struct core_job *job, core_job_run_fn run,
                    core_job_done_fn done)
{
  return submit(loop, job, run, done, 0);
}

int core_job_submit_bulk(uv_loop_t *loop, struct core_job *job, core_job_run_fn run,
                         core_job_done_fn done)
{
  return submit(loop, job, run, done, 1);
}

int core_job_attach_pool(uv_loop_t *loop, struct core_pool *pool)
{
  int free_slot = -1;
  for (int i = 0; i < MAX_ATTACHED; i++) {
    uv_loop_t *l = atomic_load(&attached[i].loop);
    if (l == loop) {
      atomic_store(&attached[i].pool, pool);
      if (pool == NULL)
        atomic_store(&attached[i].loop, NULL);
      return 0;
    }
    if (l == NULL && free_slot < 0)
      free_slot = i;
  }
  if (pool == NULL)
    return 0;
  if (free_slot < 0)
    return CORE_ETOOBIG;
  atomic_store(&attached[free_slot].pool, pool);
  atomic_store(&attached[free_slot].loop, loop);
  return 0;
}
