/* core_wake.c: an eventfd and a uv_poll_t in place of uv_async_t (core_wake.h). */
#include "core/core_wake.h"

#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void on_poll(uv_poll_t *h, int status, int events)
{
  struct core_wake *w = (struct core_wake *)h;
  uint64_t count;
  (void)status;
  (void)events;
  /* Reset before the callback: a send during it wakes the loop again. */
  while (read(w->efd, &count, sizeof(count)) < 0 && errno == EINTR)
    ;
  w->cb(w);
}

int core_wake_init(uv_loop_t *loop, struct core_wake *w, core_wake_cb cb)
{
  int rc;
  w->cb = cb;
  w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (w->efd < 0)
    return -errno;
  if ((rc = uv_poll_init(loop, &w->poll, w->efd)) < 0) {
    close(w->efd);
    w->efd = -1;
    return rc;
  }
  /* Cannot fail for an open descriptor: libuv only queues the watcher. */
  (void)uv_poll_start(&w->poll, UV_READABLE, on_poll);
  return 0;
}

void core_wake_send(struct core_wake *w)
{
  uint64_t one = 1;
  /* EAGAIN only when the counter is near 2^64: a wake-up is pending anyway */
  while (write(w->efd, &one, sizeof(one)) < 0 && errno == EINTR)
    ;
}

void core_wake_close(struct core_wake *w, uv_close_cb close_cb)
{
  /* uv_close stops the poll at once, so the descriptor may go now */
  uv_close((uv_handle_t *)&w->poll, close_cb);
  close(w->efd);
  w->efd = -1;
}
