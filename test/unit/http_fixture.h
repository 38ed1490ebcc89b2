/* http_fixture.h: the real HTTP server without the network, for unit tests
 * (test_http_server.c, test_backup_session.c). Header-only: every test
 * program is its own executable.
 *
 * A client is one end of socketpair(AF_UNIX, SOCK_STREAM); the server adopts
 * the other end (http_server_adopt) and serves it exactly as an accepted TCP
 * connection. Everything runs on the test's thread: the helpers write to the
 * client end, run the loop with UV_RUN_NOWAIT and read what came back, until
 * a condition holds or a deadline passes (generous: the machine may be
 * loaded; a passing test never waits for it).
 */
#ifndef HTTP_FIXTURE_H
#define HTTP_FIXTURE_H

#include "unit.h"

#include "core/core_alloc.h"
#include "http/http.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

/* Every program uses a different subset of these helpers. */
#define HFX_FN static __attribute__((unused))

#define HFX_DEADLINE_MS 10000
#define HFX_BUF (1024 * 1024)

/* An auth hook for tests: any "PBSAPIToken=<authid>:<secret>" is <authid>. */
HFX_FN int hfx_token_auth(void *ctx, struct http_request *req, char *authid, size_t len)
{
  static const char prefix[] = "PBSAPIToken=";
  const char *authorization = http_req_header(req, "authorization");
  (void)ctx;
  if (authorization == NULL || strncmp(authorization, prefix, sizeof(prefix) - 1) != 0)
    return HTTP_AUTH_FAIL;
  const char *id = authorization + sizeof(prefix) - 1;
  const char *colon = strchr(id, ':');
  if (colon == NULL || (size_t)(colon - id) >= len)
    return HTTP_AUTH_FAIL;
  snprintf(authid, len, "%.*s", (int)(colon - id), id);
  return HTTP_AUTH_OK;
}

struct hfx_client {
  uv_loop_t *loop;
  int fd;         /* our end; -1 once closed */
  char *buf;      /* owned: received, not yet taken as a response */
  size_t len;
  int eof;        /* the server closed its end */
};

struct hfx_resp {
  int status;
  int close;              /* "Connection: close" */
  char head[2048];        /* status line and headers, NUL-terminated */
  char *body;             /* owned, NUL-terminated */
  size_t body_len;
};

HFX_FN uint64_t hfx_now_ms(void)
{
  return uv_hrtime() / 1000000;
}

/* A connection the server adopted. */
HFX_FN void hfx_connect(struct hfx_client *cl, uv_loop_t *loop, struct http_server *s)
{
  int sv[2];
  ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
  ASSERT_OK(http_server_adopt(s, sv[1]));
  ASSERT_OK(fcntl(sv[0], F_SETFL, O_NONBLOCK));
  memset(cl, 0, sizeof(*cl));
  cl->loop = loop;
  cl->fd = sv[0];
  cl->buf = core_malloc(HFX_BUF);
}

HFX_FN void hfx_disconnect(struct hfx_client *cl)
{
  if (cl->fd >= 0)
    close(cl->fd);
  cl->fd = -1;
  core_free(cl->buf);
  cl->buf = NULL;
}

/* One turn: the loop runs once without waiting, then whatever the server
 * sent is taken in. Returns the bytes received. */
HFX_FN size_t hfx_turn(struct hfx_client *cl)
{
  uv_run(cl->loop, UV_RUN_NOWAIT);
  size_t got = 0;
  while (!cl->eof && cl->len < HFX_BUF - 1) {
    ssize_t r = recv(cl->fd, cl->buf + cl->len, HFX_BUF - 1 - cl->len, 0);
    if (r > 0) {
      cl->len += (size_t)r;
      got += (size_t)r;
      continue;
    }
    if (r == 0 || errno == ECONNRESET)
      cl->eof = 1;
    else
      ASSERT(errno == EAGAIN || errno == EWOULDBLOCK);
    break;
  }
  cl->buf[cl->len] = '\0';
  if (got == 0)
    usleep(200);
  return got;
}

/* Writes all of `data`, running the loop whenever the socket is full (the
 * server reads only while the loop runs). Returns 0, or -1 once the server
 * has closed its end (a refused request's rest is never read). */
HFX_FN int hfx_send(struct hfx_client *cl, const void *data, size_t len)
{
  const char *p = data;
  uint64_t deadline = hfx_now_ms() + HFX_DEADLINE_MS;
  while (len > 0) {
    ssize_t w = send(cl->fd, p, len, MSG_NOSIGNAL);
    if (w > 0) {
      p += w;
      len -= (size_t)w;
      continue;
    }
    if (w < 0 && (errno == EPIPE || errno == ECONNRESET))
      return -1;
    ASSERT(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    ASSERT(hfx_now_ms() < deadline);
    hfx_turn(cl);
  }
  /* Let the server see it. */
  hfx_turn(cl);
  return 0;
}

HFX_FN int hfx_send_str(struct hfx_client *cl, const char *s)
{
  return hfx_send(cl, s, strlen(s));
}

/* The length of one complete response at the start of the buffer, or 0. */
HFX_FN size_t hfx_complete(const struct hfx_client *cl, size_t *head_len, size_t *body_len)
{
  const char *end = strstr(cl->buf, "\r\n\r\n");
  if (end == NULL)
    return 0;
  *head_len = (size_t)(end - cl->buf) + 4;
  *body_len = 0;
  const char *cl_hdr = strcasestr(cl->buf, "\r\nContent-Length:");
  if (cl_hdr && cl_hdr < end)
    *body_len = strtoull(cl_hdr + 17, NULL, 10);
  if (cl->len < *head_len + *body_len)
    return 0;
  return *head_len + *body_len;
}

/* Waits for the next response and takes it from the buffer. Returns 1, or 0
 * when the server closed the connection without one (the test fails on a
 * timeout). */
HFX_FN int hfx_response(struct hfx_client *cl, struct hfx_resp *r)
{
  memset(r, 0, sizeof(*r));
  uint64_t deadline = hfx_now_ms() + HFX_DEADLINE_MS;
  size_t head_len, body_len, total;
  while ((total = hfx_complete(cl, &head_len, &body_len)) == 0) {
    if (cl->eof)
      return 0;
    ASSERT(hfx_now_ms() < deadline);
    hfx_turn(cl);
  }
  ASSERT(head_len < sizeof(r->head));
  memcpy(r->head, cl->buf, head_len);
  r->head[head_len] = '\0';
  ASSERT(strncmp(r->head, "HTTP/1.1 ", 9) == 0);
  r->status = (int)strtol(r->head + 9, NULL, 10);
  r->close = strcasestr(r->head, "\r\nConnection: close\r\n") != NULL;
  r->body = core_malloc(body_len + 1);
  memcpy(r->body, cl->buf + head_len, body_len);
  r->body[body_len] = '\0';
  r->body_len = body_len;
  memmove(cl->buf, cl->buf + total, cl->len - total + 1);
  cl->len -= total;
  return 1;
}

HFX_FN void hfx_resp_free(struct hfx_resp *r)
{
  core_free(r->body);
  r->body = NULL;
}

/* The next response must have `status`; returns it for more checks
 * (free it with hfx_resp_free). */
HFX_FN void hfx_expect(struct hfx_client *cl, int status, struct hfx_resp *r)
{
  if (!hfx_response(cl, r))
    unit_fail(__FILE__, __LINE__, "connection closed, expected a %d", status);
  if (r->status != status)
    unit_fail(__FILE__, __LINE__, "status %d, expected %d: %s", r->status, status, r->body);
}

/* Waits until the server closes the connection; returns how long it took
 * (ms). Bytes received meanwhile stay in the buffer. */
HFX_FN uint64_t hfx_wait_eof(struct hfx_client *cl)
{
  uint64_t start = hfx_now_ms();
  while (!cl->eof) {
    ASSERT(hfx_now_ms() < start + HFX_DEADLINE_MS);
    hfx_turn(cl);
  }
  return hfx_now_ms() - start;
}

/* Runs the loop for `ms` and checks that the server neither sent anything nor
 * closed. */
HFX_FN void hfx_quiet(struct hfx_client *cl, uint64_t ms)
{
  uint64_t end = hfx_now_ms() + ms;
  while (hfx_now_ms() < end)
    hfx_turn(cl);
  ASSERT_EQ(cl->len, 0);
  ASSERT(!cl->eof);
}

/* One request, one response (on a connection of its own). */
HFX_FN void hfx_exchange(uv_loop_t *loop, struct http_server *s, const char *request,
                         struct hfx_resp *r)
{
  struct hfx_client cl;
  hfx_connect(&cl, loop, s);
  ASSERT_OK(hfx_send_str(&cl, request));
  ASSERT(hfx_response(&cl, r));
  hfx_disconnect(&cl);
}

#endif
