/* fuzz_http_server.c: request heads and body framing through the real server.
 *
 * Input: the bytes a client sends on one connection. The server (its parser,
 * strict framing checks, limits, router, authentication and body handling) gets
 * them on one end of a socketpair through http_server_adopt(), the path of an
 * accepted connection; the client end is then shut for writing, and the loop
 * runs until the server has closed its end. Checked: whatever comes back is a
 * sequence of well-formed responses ("HTTP/1.1 NNN " with a status from 100 to
 * 599 at the start of each), at most one per request the input could hold, and
 * the server ends with no connection open (nothing kept per connection). */
#include "fuzz.h"

#include "http/http.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#define TOKEN "PBSAPIToken=root@pam!fuzz:secret"

int LLVMFuzzerInitialize(int *argc, char ***argv);

static uv_loop_t loop;
static struct http_server *srv;

static void h_version(struct http_request *req, void *ctx)
{
  http_respond_data(req, "{\"version\":\"fuzz\"}", 18);
}

/* Answers the body's length: the body was read and framed completely. */
static void h_echo(struct http_request *req, void *ctx)
{
  char buf[32];
  int n = snprintf(buf, sizeof(buf), "%zu", http_req_body(req).len);
  http_respond_data(req, buf, (size_t)n);
}

static int fuzz_auth(void *ctx, struct http_request *req, char *authid, size_t len)
{
  const char *a = http_req_header(req, "authorization");
  if (a == NULL || strcmp(a, TOKEN) != 0)
    return HTTP_AUTH_FAIL;
  snprintf(authid, len, "root@pam!fuzz");
  return HTTP_AUTH_OK;
}

static const struct http_route routes[] = {
  {HTTP_METHOD_GET, "/api2/json/version", h_version, NULL, 0, HTTP_ROUTE_NOAUTH},
  {HTTP_METHOD_POST, "/api2/json/echo/{name}", h_echo, NULL, 0, HTTP_ROUTE_RAW_BODY},
  {HTTP_METHOD_PUT, "/api2/json/form/{name}", h_echo, NULL, 0, 0},
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  struct http_limits limits = {.max_header_bytes = 4096, .max_connections = 4,
                               .body_budget = 1 << 20};
  uv_loop_init(&loop);
  srv = http_server_new(&loop, &limits);
  http_server_add_routes(srv, routes, sizeof(routes) / sizeof(routes[0]));
  http_server_set_auth(srv, fuzz_auth, NULL);
  return 0;
}

/* The three digits of a status code, or -1. */
static int status_code(const char *p)
{
  int v = 0;
  for (int i = 0; i < 3; i++) {
    if (p[i] < '0' || p[i] > '9')
      return -1;
    v = v * 10 + (p[i] - '0');
  }
  return v;
}

/* Every response in `out` starts with a status line; bodies are skipped by
 * Content-Length (the server never answers with chunked encoding). */
static size_t check_responses(const char *out, size_t len)
{
  size_t n = 0, off = 0;
  while (off < len) {
    FUZZ_ASSERT(len - off >= 13 && memcmp(out + off, "HTTP/1.1 ", 9) == 0);
    int status = status_code(out + off + 9);
    FUZZ_ASSERT(status >= 100 && status <= 599);
    const char *end = memmem(out + off, len - off, "\r\n\r\n", 4);
    FUZZ_ASSERT(end != NULL);
    size_t head = (size_t)(end + 4 - (out + off));
    const char *cl = memmem(out + off, head, "Content-Length: ", 16);
    size_t body = cl ? strtoul(cl + 16, NULL, 10) : 0;
    FUZZ_ASSERT(head + body <= len - off);
    off += head + body;
    n++;
  }
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  int sv[2];
  if (size > 4096 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return 0;
  FUZZ_ASSERT(http_server_adopt(srv, sv[1]) == 0);
  /* 4 KiB fits the socket buffer: one write, then end of input. */
  FUZZ_ASSERT(size == 0 || write(sv[0], data, size) == (ssize_t)size);
  shutdown(sv[0], SHUT_WR);
  fcntl(sv[0], F_SETFL, O_NONBLOCK);

  static char out[1 << 20];
  size_t len = 0;
  int eof = 0;
  /* Bounded by time, not by loop turns: on a loaded machine the server's
   * answer may take many turns. Five seconds is far beyond any input. */
  uint64_t deadline = uv_hrtime() + 5000000000ull;
  while (!eof && uv_hrtime() < deadline) {
    uv_run(&loop, UV_RUN_NOWAIT);
    ssize_t r = read(sv[0], out + len, sizeof(out) - len);
    if (r > 0)
      len += (size_t)r;
    else if (r == 0)
      eof = 1;
    else
      usleep(50);
  }
  FUZZ_ASSERT(eof); /* the server always ends a connection whose input ended */
  close(sv[0]);
  deadline = uv_hrtime() + 5000000000ull;
  while (http_server_connections(srv) > 0 && uv_hrtime() < deadline)
    uv_run(&loop, UV_RUN_NOWAIT);
  FUZZ_ASSERT(http_server_connections(srv) == 0);

  /* A request needs at least "GET / HTTP/1.1\r\n\r\n" (18 bytes) less the
   * version, so no more answers than that allows, plus one refusal. */
  size_t answers = check_responses(out, len);
  FUZZ_ASSERT(answers <= size / 14 + 1);
  return 0;
}
