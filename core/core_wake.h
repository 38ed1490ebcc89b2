/* core_wake.h: wakes an event loop from another thread.
 *
 * DESIGN
 * libuv's uv_async_t does this, but in libuv 1.44 (Debian 12) the loop
 * thread spins, calling sched_yield(), while a sender is between marking the
 * handle and waking the loop (uv__async_spin). The wake-up itself makes the
 * loop preempt the sender when both share a CPU, so the loop then spins until
 * the sender runs again; under SCHED_FIFO (cairnd's loop, core_sched.h)
 * sched_yield() never lets a fair-scheduled sender run on that CPU, and the
 * spin lasts until the scheduler moves the sender away or throttles the loop.
 * A core_wake is an eventfd watched by a uv_poll_t: a send is one write(2),
 * and the loop never waits for the sender. Sends before the callback runs
 * coalesce into one call, as with uv_async_t. (libuv 1.45 removed the spin.)
 *
 * THREADS: core_wake_send from any thread, while the wake is open; the rest
 * on the loop thread.
 */
#ifndef CORE_WAKE_H
#define CORE_WAKE_H

#include <uv.h>

struct core_wake;
typedef void (*core_wake_cb)(struct core_wake *w);

struct core_wake {
  uv_poll_t poll;   /* first: a close callback's handle is the wake */
  int efd;          /* eventfd, non-blocking */
  core_wake_cb cb;
  void *data;       /* the owner's */
};

/* Returns 0 or a negative error. The handle is referenced, as a uv_async_t
 * is; uv_unref((uv_handle_t *)&w->poll) to let the loop end without it. */
int core_wake_init(uv_loop_t *loop, struct core_wake *w, core_wake_cb cb);
/* Any thread: `cb` runs on the loop soon after. Never blocks. */
void core_wake_send(struct core_wake *w);
/* Closes the handle; `close_cb` is called with (uv_handle_t *)w. No send may
 * follow. */
void core_wake_close(struct core_wake *w, uv_close_cb close_cb);

#endif
