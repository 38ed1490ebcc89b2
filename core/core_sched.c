/* core_sched.c: the calling thread's nice value (core_sched.h). */
#include "core/core_sched.h"

#include <errno.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

int core_sched_nice_self(int nice)
{
  /* PRIO_PROCESS with a thread id: that thread only (Linux) */
  pid_t tid = (pid_t)syscall(SYS_gettid);
  if (setpriority(PRIO_PROCESS, (id_t)tid, nice) < 0)
    return -errno;
  if (nice < 0) {
    /* threads this one creates later (libuv's, sync's) start at nice 0,
     * not at the loop's priority: the reset-on-fork flag (for
     * SCHED_OTHER it keeps the nice value set above) */
    struct sched_param sp = {0};
    if (sched_setscheduler(0, SCHED_OTHER | SCHED_RESET_ON_FORK, &sp) < 0)
      return -errno;
  }
  return 0;
}

int core_sched_fifo_self(int priority)
{
  /* threads this one creates later start as SCHED_OTHER at nice 0 */
  struct sched_param sp = {0};
  sp.sched_priority = priority;
  if (sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) < 0)
    return -errno;
  return 0;
}
