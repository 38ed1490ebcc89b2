/* core_sched.h: CPU scheduling hints for the threads of a server.
 *
 * DESIGN
 * The loop thread serves every request but uses little CPU (an eighth of a
 * core under the 64-client load benchmark); the pool threads and any other
 * process on the machine burn whole time slices hashing and copying. Linux's
 * fair scheduler (EEVDF since 6.6) lets a waking thread preempt the running
 * one only when its virtual deadline is earlier, and the deadline is one time
 * slice (0.75-3 ms by default) after its eligible time: with a dozen
 * runnable threads per CPU the loop thread waited 1.3 ms on average, and
 * hundreds of milliseconds at p99, each time it woke (measured with
 * /proc/PID/task/TID/schedstat, docs/performance.md).
 *
 * Two hints, both without privileges:
 * - core_sched_short_slice: the calling thread asks for a short slice
 *   (sched_setattr's sched_runtime for SCHED_OTHER, Linux 6.12+). Its
 *   deadline comes early, so it runs soon after it wakes, and gives the CPU
 *   back soon too; its share of the CPU stays that of nice 0. Older kernels
 *   accept and ignore the value.
 * - core_sched_nice_self: lowers the calling thread's own nice value (Linux
 *   keeps one per thread), for pool workers that should yield to the loop.
 *
 * THREADS: each call affects the calling thread only.
 */
#ifndef CORE_SCHED_H
#define CORE_SCHED_H

/* Asks for a time slice of `us` microseconds (the kernel clamps it to
 * 100-100,000). A thread in SCHED_IDLE or a real-time class is left as it
 * is. Returns 0 or a negative errno (-ENOSYS from kernels before 3.14). */
int core_sched_short_slice(unsigned us);

/* Sets the calling thread's nice value to `nice` (0..19; only lowering the
 * priority is allowed without privileges). Returns 0 or a negative errno. */
int core_sched_nice_self(int nice);

#endif
