/* core_sched.h: the CPU priority of the event-loop thread.
 *
 * DESIGN
 * The loop thread serves every request but needs little CPU (a tenth to a
 * quarter of a core under the 64-client load benchmark: TLS records and
 * socket copies); the pool threads, the load generator and any other program
 * on the machine burn whole time slices hashing and copying. Linux's fair
 * scheduler (EEVDF) lets a waking thread run before the others only while it
 * has not used more than its share, and a nice-0 thread's share on two CPUs
 * with a dozen runnable threads is about what the loop uses: it was runnable
 * but waiting for a CPU 1.5 to 5 times as long as it ran, 0.7-2.4 ms per
 * wake-up on average and hundreds of milliseconds at the loop-lag p99
 * (/proc/PID/task/TID/schedstat, docs/performance.md). At nice -10 (nine
 * times the weight) it waited 0.2-0.3 ms per wake-up and the lag p99 fell
 * into the 25-50 ms bucket on a machine loaded by other builds.
 *
 * A nice value below 0 needs CAP_SYS_NICE or an RLIMIT_NICE above 20
 * (systemd: LimitNICE=, AmbientCapabilities=CAP_SYS_NICE, or Nice=): without
 * either the loop stays at nice 0 and cairnd says so once. Linux keeps one
 * nice value per thread; threads the loop creates start at nice 0
 * (SCHED_RESET_ON_FORK), and the pools set their own (core_pool).
 *
 * THREADS: affects the calling thread only.
 */
#ifndef CORE_SCHED_H
#define CORE_SCHED_H

/* cairnd's loop thread, unless CAIRN_LOOP_NICE says otherwise (0: off). */
#define CORE_SCHED_LOOP_NICE (-10)

/* Sets the calling thread's nice value (-20..19); below 0, threads it
 * creates afterwards start at 0. Returns 0 or a negative errno (-EACCES or
 * -EPERM: a lower value than now without the right). */
int core_sched_nice_self(int nice);

#endif
