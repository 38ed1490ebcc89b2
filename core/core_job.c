#include "core/core_job.h"

#include "core/core_pool.h"

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

int core_job_submit(uv_loop_t *loop, struct core_job *job, core_job_run_fn run,
                    core_job_done_fn done)
{
  if (loop->data != NULL) {
    core_pool_submit(loop->data, job, run, done);
    return 0;
  }
  job->run = run;
  job->done = done;
  return uv_queue_work(loop, &job->work, job_work, job_after);
}

void core_job_attach_pool(uv_loop_t *loop, struct core_pool *pool)
{
  loop->data = pool;
}
