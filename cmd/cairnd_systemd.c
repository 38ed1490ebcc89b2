/* cairnd_systemd.c: readiness, stopping and watchdog notifications and
 * socket activation through libsystemd (sd-daemon).
 *
 * Outside systemd every call is a no-op: sd_notify() returns 0 without
 * NOTIFY_SOCKET, sd_listen_fds() returns 0 without LISTEN_FDS or when
 * LISTEN_PID names another process. sd_notify sends one datagram on a
 * unix socket: it does not block in practice, and READY/STOPPING are sent
 * once each, the watchdog ping every half period.
 */
#include "cmd/cairnd_observe.h"

#include "core/core_log.h"

#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

int cairnd_systemd_listen_fds(void)
{
  int n = sd_listen_fds(1);
  if (n < 0) {
    core_warn("systemd: cannot take the passed sockets: %s", strerror(-n));
    return 0;
  }
  return n;
}

static void on_watchdog(uv_timer_t *t)
{
  (void)t;
  sd_notify(0, "WATCHDOG=1");
}

void cairnd_systemd_ready(struct cairnd_observe *o, const char *status)
{
  char msg[512];
  snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
  int rc = sd_notify(0, msg);
  if (rc > 0)
    core_info("systemd: notified READY=1");
  else if (rc < 0)
    core_warn("systemd: notify failed: %s", strerror(-rc));
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0 && !o->watchdog_on) {
    /* Twice per period, as sd_watchdog_enabled(3) recommends. A stalled
     * loop stops the pings, which is the point. */
    uint64_t ms = usec / 2000;
    if (ms == 0)
      ms = 1;
    uv_timer_init(o->loop, &o->watchdog);
    uv_timer_start(&o->watchdog, on_watchdog, ms, ms);
    uv_unref((uv_handle_t *)&o->watchdog);
    o->watchdog_on = 1;
    core_info("systemd: watchdog ping every %llu ms", (unsigned long long)ms);
  }
}

void cairnd_systemd_stopping(void)
{
  sd_notify(0, "STOPPING=1");
}

void cairnd_systemd_close(struct cairnd_observe *o)
{
  if (!o->watchdog_on)
    return;
  uv_timer_stop(&o->watchdog);
  uv_close((uv_handle_t *)&o->watchdog, NULL);
  o->watchdog_on = 0;
}
