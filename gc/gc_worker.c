#include "gc/gc_worker.h"

#include "core/core_alloc.h"
#include "core/core_log.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ioprio_set(2) has no glibc wrapper; these are its ABI constants. */
#define IOPRIO_WHO_PROCESS 1
#define IOPRIO_CLASS_BE 2
#define IOPRIO_CLASS_SHIFT 13

struct gc_wnode {
  struct gc_wnode *next;
  struct core_job *job;
};

static void *worker_main(void *arg)
{
  struct gc_workers *w = arg;
  pid_t tid = (pid_t)syscall(SYS_gettid);
  /* Per thread on Linux: PRIO_PROCESS with a thread id. */
  setpriority(PRIO_PROCESS, (id_t)tid, w->nice);
  syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, tid, (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | 7);
  pthread_mutex_lock(&w->mutex);
  for (;;) {
    while (w->todo == NULL && !w->stop)
      pthread_cond_wait(&w->cond, &w->mutex);
    if (w->todo == NULL && w->stop)
      break;
    struct gc_wnode *n = w->todo;
    w->todo = n->next;
    if (w->todo == NULL)
      w->todo_tail = &w->todo;
    pthread_mutex_unlock(&w->mutex);
    n->job->run(n->job);
    pthread_mutex_lock(&w->mutex);
    n->next = NULL;
    *w->done_tail = n;
    w->done_tail = &n->next;
    pthread_mutex_unlock(&w->mutex);
    uv_async_send(&w->async);
    pthread_mutex_lock(&w->mutex);
  }
  pthread_mutex_unlock(&w->mutex);
  return NULL;
}

static void on_async(uv_async_t *h)
{
  struct gc_workers *w = h->data;
  pthread_mutex_lock(&w->mutex);
  struct gc_wnode *list = w->done;
  w->done = NULL;
  w->done_tail = &w->done;
  pthread_mutex_unlock(&w->mutex);
  while (list) {
    struct gc_wnode *next = list->next;
    struct core_job *job = list->job;
    core_free(list);
    if (--w->pending == 0)
      uv_unref((uv_handle_t *)&w->async);
    job->done(job, 0);
    list = next;
  }
}

int gc_workers_start(struct gc_workers *w, uv_loop_t *loop, int n, int nice)
{
  memset(w, 0, sizeof(*w));
  w->loop = loop;
  w->nice = nice < 0 ? 0 : nice > 19 ? 19 : nice;
  w->todo_tail = &w->todo;
  w->done_tail = &w->done;
  if (n < 1)
    n = 1;
  if (n > GC_WORKERS_MAX)
    n = GC_WORKERS_MAX;
  int rc = uv_async_init(loop, &w->async, on_async);
  if (rc < 0)
    return rc;
  w->async.data = w;
  uv_unref((uv_handle_t *)&w->async);
  pthread_mutex_init(&w->mutex, NULL);
  pthread_cond_init(&w->cond, NULL);
  w->started = 1;
  for (int i = 0; i < n; i++) {
    rc = pthread_create(&w->threads[i], NULL, worker_main, w);
    if (rc != 0) {
      core_warn("gc: could only start %d of %d worker threads: %s", i, n, strerror(rc));
      if (i == 0) {
        gc_workers_stop(w);
        return -rc;
      }
      break;
    }
    w->n++;
  }
  return 0;
}

void gc_workers_submit(struct gc_workers *w, struct core_job *job, core_job_run_fn run,
                       core_job_done_fn done)
{
  struct gc_wnode *n = core_new(struct gc_wnode);
  job->run = run;
  job->done = done;
  n->job = job;
  if (w->pending++ == 0)
    uv_ref((uv_handle_t *)&w->async);
  pthread_mutex_lock(&w->mutex);
  *w->todo_tail = n;
  w->todo_tail = &n->next;
  pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->mutex);
}

static void on_closed(uv_handle_t *h)
{
  struct gc_workers *w = h->data;
  w->closed = 1;
}

void gc_workers_stop(struct gc_workers *w)
{
  if (!w->started)
    return;
  /* Jobs still pending finish first, so their callbacks run. */
  while (w->pending > 0)
    uv_run(w->loop, UV_RUN_ONCE);
  pthread_mutex_lock(&w->mutex);
  w->stop = 1;
  pthread_cond_broadcast(&w->cond);
  pthread_mutex_unlock(&w->mutex);
  for (int i = 0; i < w->n; i++)
    pthread_join(w->threads[i], NULL);
  w->n = 0;
  uv_close((uv_handle_t *)&w->async, on_closed);
  while (!w->closed)
    uv_run(w->loop, UV_RUN_ONCE);
  pthread_mutex_destroy(&w->mutex);
  pthread_cond_destroy(&w->cond);
  w->started = 0;
}
