/* core_sched.c: scheduling hints for the calling thread (core_sched.h). */
#include "core/core_sched.h"

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* sched_setattr(2) has no wrapper in glibc 2.36; this is its ABI (the first
 * version of struct sched_attr, which every kernel since 3.14 accepts). */
struct sched_attr_v0 {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;
  uint64_t sched_deadline;
  uint64_t sched_period;
};

int core_sched_short_slice(unsigned us)
{
#ifdef SYS_sched_setattr
  struct sched_attr_v0 a;
  pid_t tid = (pid_t)syscall(SYS_gettid);
  int nice, policy = sched_getscheduler(0);
  /* fair-class threads only; the policy stays (leaving SCHED_IDLE would
   * need privileges, and a real-time thread has no slice to shorten) */
  if (policy < 0)
    return -errno;
  if (policy != SCHED_OTHER && policy != SCHED_BATCH)
    return 0;
  errno = 0;
  nice = getpriority(PRIO_PROCESS, (id_t)tid);
  if (nice == -1 && errno != 0)
    return -errno;
  memset(&a, 0, sizeof(a));
  a.size = sizeof(a);
  a.sched_policy = (uint32_t)policy;
  a.sched_nice = nice; /* unchanged */
  a.sched_runtime = (uint64_t)us * 1000u;
  if (syscall(SYS_sched_setattr, 0, &a, 0) < 0)
    return -errno;
  return 0;
#else
  (void)us;
  return -ENOSYS;
#endif
}

int core_sched_nice_self(int nice)
{
  pid_t tid = (pid_t)syscall(SYS_gettid);
  if (setpriority(PRIO_PROCESS, (id_t)tid, nice) < 0)
    return -errno;
  return 0;
}
