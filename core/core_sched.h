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
 * Nice -10 still leaves the loop behind the others often: under the
 * 64-client load on Linux 6.18 a sched_switch trace showed it preempted
 * about 400 times a second, by pool threads, softirqs and the generator,
 * waiting up to 12-45 ms for its CPU back, and loop iterations of 5-25 ms
 * wall time that used under 5 ms of CPU. So where it is allowed the loop
 * runs under SCHED_FIFO at the lowest real-time priority: it runs as soon
 * as it wakes and until it sleeps again in epoll_wait. That is safe because
 * its work per iteration is bounded (the read budget, typed jobs for
 * everything slow) and it never waits for another thread (core_pool's
 * lock-free lists); and were it ever to spin, the kernel's real-time
 * throttling leaves the fair threads their share of that CPU, and the other
 * CPUs are untouched. Measured under that load for 60 s: status p99 20.2 ms
 * at nice -10, 9.0-10.1 ms under SCHED_FIFO (docs/performance.md).
 *
 * A nice value below 0 needs CAP_SYS_NICE or an RLIMIT_NICE above 20
 * (systemd: LimitNICE=, AmbientCapabilities=CAP_SYS_NICE, or Nice=), and
 * SCHED_FIFO CAP_SYS_NICE or RLIMIT_RTPRIO (systemd: LimitRTPRIO=1): without
 * them the loop stays at nice 0 under the fair scheduler and cairnd says so
 * once. Linux keeps one policy and nice value per thread; threads the loop
 * creates start under SCHED_OTHER at nice 0 (SCHED_RESET_ON_FORK), and the
 * pools set their own (core_pool).
 *
 * THREADS: affects the calling thread only.
 */
#ifndef CORE_SCHED_H
#define CORE_SCHED_H

/* cairnd's loop thread, unless CAIRN_LOOP_NICE says otherwise (0: off). */
#define CORE_SCHED_LOOP_NICE (-10)
/* ... and its real-time priority where allowed, unless CAIRN_LOOP_RTPRIO
 * says otherwise (0: off). The lowest one: it only has to come before the
 * fair scheduler's threads, never before other real-time ones (corosync's,
 * the kernel's interrupt threads). */
#define CORE_SCHED_LOOP_RTPRIO 1

/* Sets the calling thread's nice value (-20..19); below 0, threads it
 * creates afterwards start at 0. Returns 0 or a negative errno (-EACCES or
 * -EPERM: a lower value than now without the right). */
int core_sched_nice_self(int nice);

/* Puts the calling thread under SCHED_FIFO at `priority` (1..99); threads
 * it creates afterwards start under SCHED_OTHER at nice 0. Returns 0 or a
 * negative errno (-EPERM: no CAP_SYS_NICE and RLIMIT_RTPRIO below
 * `priority`). */
int core_sched_fifo_self(int priority);

#endif
