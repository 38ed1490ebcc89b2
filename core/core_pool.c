/* core_pool.c: worker threads with a core_wake back to the loop (core_pool.h). */
#include "core/core_pool.h"

#include "core/core_log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sched.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ioprio_set(2) has no glibc wrapper; these are its ABI constants. */
#define IOPRIO_WHO_PROCESS 1
#define IOPRIO_CLASS_BE 2
#define IOPRIO_CLASS_SHIFT 13

/* Moves what the loop submitted since the last call into the two lanes, in
 * submission order (under the mutex; workers only). */
static void admit(struct core_pool *p)
{
  struct core_job *list = atomic_exchange_explicit(&p->incoming, NULL, memory_order_acquire);
  struct core_job *fifo = NULL;
  while (list) { /* the stack holds the newest first */
    struct core_job *next = list->next;
    list->next = fifo;
    fifo = list;
    list = next;
  }
  while (fifo) {
    struct core_job *job = fifo;
    fifo = job->next;
    job->next = NULL;
    if (job->bulk) {
      *p->bulk_tail = job;
      p->bulk_tail = &job->next;
    } else {
      *p->todo_tail = job;
      p->todo_tail = &job->next;
    }
  }
}

/* The next job for a free thread (under the mutex): the quick lane first, then
 * the bulk lane while it has threads left. */
static struct core_job *take(struct core_pool *p)
{
  struct core_job *job = p->todo;
  if (job != NULL) {
    if ((p->todo = job->next) == NULL)
      p->todo_tail = &p->todo;
    return job;
  }
  job = p->bulk;
  if (job == NULL || p->bulk_running >= p->bulk_max)
    return NULL;
  if ((p->bulk = job->next) == NULL)
    p->bulk_tail = &p->bulk;
  p->bulk_running++;
  return job;
}

/* Pushes a finished job for the loop; the push onto an empty list wakes it
 * (a non-empty one has a wake-up coming). */
static void complete(struct core_pool *p, struct core_job *job)
{
  struct core_job *head = atomic_load_explicit(&p->done, memory_order_relaxed);
  do
    job->next = head;
  while (!atomic_compare_exchange_weak_explicit(&p->done, &head, job, memory_order_release,
                                                memory_order_relaxed));
  if (head == NULL)
    core_wake_send(&p->wake);
}

static void *worker_main(void *arg)
{
  struct core_pool *p = arg;
  pid_t tid = (pid_t)syscall(SYS_gettid);
  char tname[16];
  /* "pool-3": perf, top -H and /proc/PID/task/TID/comm tell the pools apart */
  pthread_mutex_lock(&p->mutex);
  int index = p->named++;
  pthread_mutex_unlock(&p->mutex);
  snprintf(tname, sizeof(tname), "%.10s-%d", p->name, index);
  pthread_setname_np(pthread_self(), tname);
  /* Per thread on Linux: PRIO_PROCESS with a thread id. Always set: a new
   * thread inherits its creator's value, which may be the loop thread's
   * raised priority (cairnd's CAIRN_LOOP_NICE), and raising a nice value
   * needs no privilege. */
  setpriority(PRIO_PROCESS, (id_t)tid, p->nice);
  if (p->idle_cpu) {
    struct sched_param sp = {0};
    pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
  }
  if (p->idle_io)
    syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, tid,
            (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | 7);
  int bulk_done = 0; /* a bulk job finished since the last lock */
  int posted = 0;    /* woken by a post, not yet matched with a job */
  for (;;) {
    pthread_mutex_lock(&p->mutex);
    p->bulk_running -= bulk_done;
    admit(p);
    struct core_job *job = take(p);
    int stop = p->stop;
    pthread_mutex_unlock(&p->mutex);
    bulk_done = 0;
    if (job == NULL) {
      if (stop)
        break; /* core_pool_stop waited for every job first */
      /* One post per job submitted: a worker that finds nothing (another
       * took it, or the bulk lane is full: its job goes to the next thread
       * that finishes one) just waits again. */
      while (sem_wait(&p->sem) < 0 && errno == EINTR)
        ;
      posted = 1;
      continue;
    }
    /* Each job takes one post: a thread that found it without waiting takes
     * the post now, so idle threads are not woken for jobs already running
     * and the count stays near the queue's length. */
    if (!posted)
      (void)sem_trywait(&p->sem);
    posted = 0;
    bulk_done = job->bulk;
    uint64_t t0 = uv_hrtime();
    core_gauge_add(&p->queued, -1);
    core_gauge_add(&p->running, 1);
    core_hist_observe_ns(&p->wait, t0 - job->queued_ns);

    job->run(job);

    core_hist_observe_ns(&p->run, uv_hrtime() - t0);
    core_gauge_add(&p->running, -1);
    complete(p, job);
  }
  return NULL;
}

static void on_wake(struct core_wake *w)
{
  struct core_pool *p = w->data;
  /* core_wake reset its counter before this call: a worker that pushes onto
   * the emptied list wakes the loop again, so nothing is left behind. */
  struct core_job *list = atomic_exchange_explicit(&p->done, NULL, memory_order_acquire);
  struct core_job *fifo = NULL;
  while (list) { /* newest first: reversed, callbacks run in completion order */
    struct core_job *next = list->next;
    list->next = fifo;
    fifo = list;
    list = next;
  }
  while (fifo) {
    struct core_job *next = fifo->next;
    if (--p->pending == 0)
      uv_unref((uv_handle_t *)&p->wake.poll);
    fifo->done(fifo, 0);
    fifo = next;
  }
}

/* One thread in four (at least one) stays free of bulk work; a pool of one
 * thread runs bulk jobs too, one at a time. */
static int bulk_share(int threads)
{
  int reserve = threads / 4 > 1 ? threads / 4 : 1;
  return threads > 1 ? threads - reserve : 1;
}

int core_pool_start(struct core_pool *p, uv_loop_t *loop, const struct core_pool_opts *o)
{
  int n = o->threads < 1 ? 1 : o->threads > CORE_POOL_MAX ? CORE_POOL_MAX : o->threads;
  int rc;
  memset(p, 0, sizeof(*p));
  p->loop = loop;
  p->nice = o->nice < 0 ? 0 : o->nice > 19 ? 19 : o->nice;
  p->idle_cpu = o->idle_cpu;
  p->idle_io = o->idle_io;
  p->todo_tail = &p->todo;
  p->bulk_tail = &p->bulk;
  atomic_init(&p->incoming, NULL);
  atomic_init(&p->done, NULL);
  snprintf(p->name, sizeof(p->name), "%s", o->name ? o->name : "pool");
  core_hist_init(&p->wait, core_hist_latency_bounds, core_hist_latency_nbounds);
  core_hist_init(&p->run, core_hist_latency_bounds, core_hist_latency_nbounds);
  if ((rc = core_wake_init(loop, &p->wake, on_wake)) < 0)
    return rc;
  p->wake.data = p;
  uv_unref((uv_handle_t *)&p->wake.poll);
  pthread_mutex_init(&p->mutex, NULL);
  sem_init(&p->sem, 0, 0);
  p->started = 1;
  p->bulk_max = bulk_share(n);
  for (int i = 0; i < n; i++) {
    rc = pthread_create(&p->threads[i], NULL, worker_main, p);
    if (rc != 0) {
      core_warn("%s: could only start %d of %d worker threads: %s", o->name, i, n,
                strerror(rc));
      if (i == 0) {
        core_pool_stop(p);
        return -rc;
      }
      break;
    }
    p->n++;
  }
  if (p->n < n) {
    pthread_mutex_lock(&p->mutex);
    p->bulk_max = bulk_share(p->n);
    pthread_mutex_unlock(&p->mutex);
  }
  return 0;
}

static void submit(struct core_pool *p, struct core_job *job, core_job_run_fn run,
                   core_job_done_fn done, int bulk)
{
  job->run = run;
  job->done = done;
  job->next = NULL;
  job->bulk = bulk;
  job->queued_ns = uv_hrtime();
  core_gauge_add(&p->queued, 1);
  if (p->pending++ == 0)
    uv_ref((uv_handle_t *)&p->wake.poll);
  /* Lock-free: a worker holding the mutex may have been preempted (at nice
   * 19 or SCHED_IDLE, for long), and the loop must not wait for it. */
  struct core_job *head = atomic_load_explicit(&p->incoming, memory_order_relaxed);
  do
    job->next = head;
  while (!atomic_compare_exchange_weak_explicit(&p->incoming, &head, job, memory_order_release,
                                                memory_order_relaxed));
  sem_post(&p->sem);
}

void core_pool_submit(struct core_pool *p, struct core_job *job, core_job_run_fn run,
                      core_job_done_fn done)
{
  submit(p, job, run, done, 0);
}

void core_pool_submit_bulk(struct core_pool *p, struct core_job *job, core_job_run_fn run,
                           core_job_done_fn done)
{
  submit(p, job, run, done, 1);
}

static void on_closed(uv_handle_t *h)
{
  struct core_pool *p = ((struct core_wake *)h)->data;
  p->closed = 1;
}

void core_pool_stop(struct core_pool *p)
{
  if (!p->started)
    return;
  /* Jobs still pending finish first, so their callbacks run. */
  while (p->pending > 0)
    uv_run(p->loop, UV_RUN_ONCE);
  pthread_mutex_lock(&p->mutex);
  p->stop = 1;
  pthread_mutex_unlock(&p->mutex);
  for (int i = 0; i < p->n; i++)
    sem_post(&p->sem);
  for (int i = 0; i < p->n; i++)
    pthread_join(p->threads[i], NULL);
  p->n = 0;
  core_wake_close(&p->wake, on_closed);
  while (!p->closed)
    uv_run(p->loop, UV_RUN_ONCE);
  pthread_mutex_destroy(&p->mutex);
  sem_destroy(&p->sem);
  p->started = 0;
}

int core_pool_metrics_collect(void *ctx, struct core_buf *out)
{
  struct core_pool *const *pools = ctx;
  static const struct {
    const char *name, *type, *help;
  } fam[] = {
    {"cairn_pool_queue_depth", "gauge", "Jobs waiting for a worker thread."},
    {"cairn_pool_jobs_running", "gauge", "Jobs running on a worker thread."},
    {"cairn_pool_threads", "gauge", "Worker threads."},
    {"cairn_pool_job_wait_seconds", "histogram",
     "Time from a job's submission until a thread starts it."},
    {"cairn_pool_job_run_seconds", "histogram", "Time a job runs on a worker thread."},
  };
  int rc = 0;
  for (int f = 0; f < 5 && rc == 0; f++) {
    rc = core_metrics_family(out, fam[f].name, fam[f].type, fam[f].help);
    for (int i = 0; pools[i] && rc == 0; i++) {
      const struct core_pool *p = pools[i];
      char l[64];
      if (core_metrics_labels(l, sizeof(l), "pool", p->name, NULL) < 0)
        continue;
      switch (f) {
      case 0: rc = core_metrics_i64(out, fam[f].name, l, core_gauge_get(&p->queued)); break;
      case 1: rc = core_metrics_i64(out, fam[f].name, l, core_gauge_get(&p->running)); break;
      case 2: rc = core_metrics_i64(out, fam[f].name, l, p->n); break;
      case 3: rc = core_metrics_hist(out, fam[f].name, l, &p->wait); break;
      default: rc = core_metrics_hist(out, fam[f].name, l, &p->run); break;
      }
    }
  }
  return rc;
}
