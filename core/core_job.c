#include "core/core_job.h"

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
  job->run = run;
  job->done = done;
  return uv_queue_work(loop, &job->work, job_work, job_after);
}
