/* test_http_server.c: the server out of file descriptors. Client and server
 * share this process, so the client's socket is made first and the rest of
 * the descriptor table is then filled: the server's accept() meets EMFILE. */
#include "unit.h"

#include "http/http_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

static void h_ok(struct http_request *req, void *ctx)
{
  http_respond_data(req, "1", 1);
}

static int server_port(struct http_server *s)
{
  struct sockaddr_in sa;
  int len = sizeof(sa);
  ASSERT_OK(uv_tcp_getsockname(&s->listeners->tcp, (struct sockaddr *)&sa, &len));
  return ntohs(sa.sin_port);
}

static int client_connect(int port)
{
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT(fd >= 0);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_OK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)));
  return fd;
}

/* Reads what the server sends until it closes (or 2 s pass), running the
 * loop in between. */
static size_t client_read(uv_loop_t *loop, int fd, char *buf, size_t cap)
{
  size_t n = 0;
  fcntl(fd, F_SETFL, O_NONBLOCK);
  for (int i = 0; i < 200 && n < cap - 1; i++) {
    uv_run(loop, UV_RUN_NOWAIT);
    ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
    if (r == 0)
      break;
    if (r > 0) {
      n += (size_t)r;
      continue;
    }
    ASSERT(errno == EAGAIN || errno == EWOULDBLOCK);
    usleep(10000);
  }
  buf[n] = '\0';
  return n;
}

/* libuv answers EMFILE with a spare descriptor of its own and calls the
 * server only once that is gone (another thread took its slot); then the
 * server's own spare must take the connection off the backlog and answer it,
 * or libuv would call again and again while the client hangs. */
UNIT_TEST(emfile_answered_with_503)
{
  struct rlimit rl = {64, 64};
  ASSERT_OK(setrlimit(RLIMIT_NOFILE, &rl));
  uv_loop_t loop;
  ASSERT_OK(uv_loop_init(&loop));
  struct http_server *s = http_server_new(&loop, NULL);
  static const struct http_route routes[] = {
    {HTTP_METHOD_GET, "/ok", h_ok, NULL, 0, HTTP_ROUTE_NOAUTH},
  };
  http_server_add_routes(s, routes, 1);
  ASSERT_OK(http_server_listen(s, "127.0.0.1:0", NULL));
  ASSERT(s->reserve_fd >= 0);
  int port = server_port(s);
  int early = client_connect(port);
  /* A socket for later, made while there is room (connect needs none). */
  int later = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT(later >= 0);

  /* Lose libuv's spare, as a race with another thread would, and fill the
   * table. */
  ASSERT(loop.emfile_fd >= 0);
  close(loop.emfile_fd);
  loop.emfile_fd = -1;
  int fill[64];
  int nfill = 0;
  int fd;
  while (nfill < 64 && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
    fill[nfill++] = fd;
  ASSERT(nfill < 64);
  ASSERT_EQ(EMFILE, errno);

  /* `early` is connected already; it waits in the backlog for an accept
   * that cannot get a descriptor. */
  char buf[512];
  size_t n = client_read(&loop, early, buf, sizeof(buf));
  ASSERT(n > 0);
  ASSERT(strncmp(buf, "HTTP/1.1 503 ", 13) == 0);
  ASSERT(strstr(buf, "\"message\"") != NULL);
  ASSERT(s->refusing);
  ASSERT(s->reserve_fd < 0); /* its slot left free: libuv accepts again at once */
  close(early);

  /* The table is still full: the next connection takes the free slot, and
   * is refused so that the reserve can be had back. */
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_OK(connect(later, (struct sockaddr *)&sa, sizeof(sa)));
  n = client_read(&loop, later, buf, sizeof(buf));
  ASSERT(strncmp(buf, "HTTP/1.1 503 ", 13) == 0);
  ASSERT(s->reserve_fd >= 0);
  close(later);

  /* With descriptors free again, the server serves. */
  for (int i = 0; i < nfill; i++)
    close(fill[i]);
  int c = client_connect(port);
  static const char req[] = "GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(sizeof(req) - 1, send(c, req, sizeof(req) - 1, 0));
  n = client_read(&loop, c, buf, sizeof(buf));
  ASSERT(strncmp(buf, "HTTP/1.1 200 ", 13) == 0);
  close(c);

  http_server_free(s);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_OK(uv_loop_close(&loop));
}

UNIT_MAIN(UNIT_CASE(emfile_answered_with_503))
