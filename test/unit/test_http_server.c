/* test_http_server.c: the real HTTP server in-process, without the network.
 *
 * Most cases talk to it through http_server_adopt() on a socketpair (see
 * http_fixture.h): framing limits, bodies, chunked encoding, keep-alive and
 * pipelining, early refusals, the loop's timers, routing and URL decoding,
 * and the error envelope. The last case runs a TCP listener out of file
 * descriptors: client and server share this process, so the client's socket
 * is made first and the rest of the descriptor table is then filled, and the
 * server's accept() meets EMFILE. */
#include "unit.h"

#include "http_fixture.h"

#include "core/core_error.h"
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

/* ---- The test server ---- */

#define TOKEN "PBSAPIToken=root@pam!t:secret"
#define UPLOAD_MAX (1024 * 1024)

/* A request body back as it came. */
static void h_echo(struct http_request *req, void *ctx)
{
  struct core_slice b = http_req_body(req);
  http_respond_raw(req, 200, "application/octet-stream", b.base, b.len);
}

/* {"data":<body length>} */
static void h_length(struct http_request *req, void *ctx)
{
  char n[32];
  int len = snprintf(n, sizeof(n), "%zu", http_req_body(req).len);
  http_respond_data(req, n, (size_t)len);
}

static void h_whoami(struct http_request *req, void *ctx)
{
  char v[160];
  int len = snprintf(v, sizeof(v), "\"%s\"", http_req_authid(req));
  http_respond_data(req, v, (size_t)len);
}

/* The decoded path parameter, as text. */
static void h_item(struct http_request *req, void *ctx)
{
  const char *name = http_req_param(req, "name");
  http_respond_raw(req, 200, "text/plain", name, strlen(name));
}

/* Answers later, from a timer, as a handler waiting for a pool job does. */
struct later {
  uv_timer_t timer;
  struct http_request *req;
};

static void later_fire(uv_timer_t *t)
{
  struct later *l = t->data;
  http_respond_data(l->req, "\"later\"", 7);
  uv_close((uv_handle_t *)t, (uv_close_cb)core_free);
}

static void h_later(struct http_request *req, void *ctx)
{
  struct later *l = core_new(struct later);
  l->req = req;
  uv_timer_init(http_req_loop(req), &l->timer);
  l->timer.data = l;
  uv_timer_start(&l->timer, later_fire, 30, 0);
}

/* Takes the body out of the request and answers at once, as an S3 chunk
 * upload with write-behind does; the test releases it later. */
static struct http_body taken;

static void h_take(struct http_request *req, void *ctx)
{
  if (taken.server != NULL) {
    /* A second body while the first is out: refused past half the budget,
     * and the request keeps its body. */
    ASSERT_EQ(http_req_take_body(req, &taken), -EBUSY);
    ASSERT(http_req_body(req).len > 0);
    http_respond_data(req, "\"kept\"", 6);
    return;
  }
  ASSERT_EQ(http_req_take_body(req, &taken), 0);
  ASSERT_EQ(http_req_body(req).len, 0);
  http_respond_data(req, "\"taken\"", 7);
}

static int fake_auth(void *ctx, struct http_request *req, char *authid, size_t len)
{
  const char *authorization = http_req_header(req, "authorization");
  if (authorization == NULL || strcmp(authorization, TOKEN) != 0)
    return HTTP_AUTH_FAIL;
  snprintf(authid, len, "root@pam!t");
  return HTTP_AUTH_OK;
}

static const struct http_route test_routes[] = {
  {HTTP_METHOD_GET, "/ok", h_ok, NULL, 0, HTTP_ROUTE_NOAUTH},
  {HTTP_METHOD_POST, "/echo", h_echo, NULL, 0, HTTP_ROUTE_NOAUTH | HTTP_ROUTE_RAW_BODY},
  {HTTP_METHOD_POST, "/upload", h_length, NULL, UPLOAD_MAX,
   HTTP_ROUTE_NOAUTH | HTTP_ROUTE_RAW_BODY},
  {HTTP_METHOD_GET, "/secure", h_whoami, NULL, 0, 0},
  {HTTP_METHOD_POST, "/secure", h_length, NULL, 0, HTTP_ROUTE_RAW_BODY},
  {HTTP_METHOD_GET, "/later", h_later, NULL, 0, HTTP_ROUTE_NOAUTH},
  {HTTP_METHOD_GET, "/item/{name}", h_item, NULL, 0, HTTP_ROUTE_NOAUTH},
  {HTTP_METHOD_POST, "/take", h_take, NULL, UPLOAD_MAX, HTTP_ROUTE_NOAUTH | HTTP_ROUTE_RAW_BODY},
  {HTTP_METHOD_POST, "/big", h_length, NULL, 4 * HTTP_ITER_READ_BUDGET,
   HTTP_ROUTE_NOAUTH | HTTP_ROUTE_RAW_BODY},
};

struct ts {
  uv_loop_t loop;
  struct http_server *srv;
  struct hfx_client cl;   /* the case's first connection */
};

/* Long timeouts unless a case shortens one: a passing case never waits. */
static void ts_start_limits(struct ts *t, struct http_limits *lim)
{
  if (!lim->max_header_bytes)
    lim->max_header_bytes = 1024;
  if (!lim->header_timeout_ms)
    lim->header_timeout_ms = 60000;
  if (!lim->idle_timeout_ms)
    lim->idle_timeout_ms = 60000;
  if (!lim->body_timeout_ms)
    lim->body_timeout_ms = 60000;
  ASSERT_OK(uv_loop_init(&t->loop));
  t->srv = http_server_new(&t->loop, lim);
  http_server_add_routes(t->srv, test_routes, sizeof(test_routes) / sizeof(test_routes[0]));
  http_server_set_auth(t->srv, fake_auth, NULL);
  hfx_connect(&t->cl, &t->loop, t->srv);
}

static void ts_start(struct ts *t)
{
  struct http_limits lim = {0};
  ts_start_limits(t, &lim);
}

/* Every handle closed, every byte freed (ASan checks the rest). */
static void ts_stop(struct ts *t)
{
  hfx_disconnect(&t->cl);
  http_server_free(t->srv);
  uv_run(&t->loop, UV_RUN_DEFAULT);
  ASSERT_OK(uv_loop_close(&t->loop));
}

/* The next response is `status` with exactly `body`. */
static void expect_body(struct hfx_client *cl, int status, const char *body)
{
  struct hfx_resp r;
  hfx_expect(cl, status, &r);
  if (strcmp(r.body, body) != 0)
    unit_fail(__FILE__, __LINE__, "body \"%s\", expected \"%s\"", r.body, body);
  hfx_resp_free(&r);
}

/* POSTs `n` bytes to `path`; the answer is a 200 with body `want`. */
static void post_expect(struct hfx_client *cl, const char *path, const char *body, size_t n,
                        const char *want)
{
  char head[128];
  snprintf(head, sizeof(head), "POST %s HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", path, n);
  ASSERT_OK(hfx_send_str(cl, head));
  ASSERT_OK(hfx_send(cl, body, n));
  expect_body(cl, 200, want);
}

/* The connection still answers a plain GET. */
static void expect_serves_on(struct hfx_client *cl)
{
  ASSERT_OK(hfx_send_str(cl, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"));
  expect_body(cl, 200, "{\"data\":1}\n");
}

/* The next response is an error in PBS's envelope, and the connection is
 * closed after it when `closes`. */
static void expect_error(struct hfx_client *cl, int status, const char *message, int closes)
{
  struct hfx_resp r;
  hfx_expect(cl, status, &r);
  ASSERT(strcasestr(r.head, "\r\nContent-Type: application/json\r\n") != NULL);
  char want[256];
  snprintf(want, sizeof(want), "{\"data\":null,\"message\":\"%s\"}\n", message);
  if (strcmp(r.body, want) != 0)
    unit_fail(__FILE__, __LINE__, "body %s, expected %s", r.body, want);
  ASSERT_EQ(r.close, closes);
  hfx_resp_free(&r);
  if (closes) {
    hfx_wait_eof(cl);
    ASSERT_EQ(cl->len, 0); /* nothing after it: the rest was never parsed */
  }
}

/* ---- Bodies taken out of their request ---- */

/* The bytes outlive the response and keep their budget share until
 * released; the server waits for them after http_server_free. */
UNIT_TEST(taken_body_outlives_response_and_server_free)
{
  struct ts t;
  ts_start(&t);
  size_t n = 200 * 1024; /* pooled (>= HTTP_BODYPOOL_MIN) */
  char *body = core_malloc(n);
  for (size_t i = 0; i < n; i++)
    body[i] = (char)('a' + i % 26);
  memset(&taken, 0, sizeof(taken));
  post_expect(&t.cl, "/take", body, n, "{\"data\":\"taken\"}\n");
  ASSERT_EQ(taken.len, n);
  ASSERT(memcmp(taken.base, body, n) == 0);
  ASSERT(t.srv->body_bytes >= n); /* still counted against the budget */
  ASSERT_EQ(t.srv->bodies_out, 1);
  /* The server goes away first: its memory stays until the body is back. */
  hfx_disconnect(&t.cl);
  http_server_free(t.srv);
  uv_run(&t.loop, UV_RUN_DEFAULT);
  ASSERT(memcmp(taken.base, body, n) == 0);
  http_body_release(&taken);
  ASSERT(taken.server == NULL);
  http_body_release(&taken); /* a released one is ignored */
  uv_run(&t.loop, UV_RUN_DEFAULT);
  ASSERT_OK(uv_loop_close(&t.loop));
  core_free(body);
}

/* Released while the server runs: the budget is free again. */
UNIT_TEST(taken_body_released_gives_budget_back)
{
  struct ts t;
  ts_start(&t);
  size_t n = 100 * 1024;
  char *body = core_calloc(1, n);
  memset(&taken, 0, sizeof(taken));
  post_expect(&t.cl, "/take", body, n, "{\"data\":\"taken\"}\n");
  ASSERT(t.srv->body_bytes >= n);
  /* Taken bodies may hold half of the budget at most: with a budget of
   * three such bodies, a second one stays in its request. */
  size_t budget = t.srv->limits.body_budget;
  t.srv->limits.body_budget = 3 * t.srv->body_bytes;
  post_expect(&t.cl, "/take", body, n, "{\"data\":\"kept\"}\n");
  t.srv->limits.body_budget = budget;
  http_body_release(&taken);
  ASSERT_EQ(t.srv->body_bytes, 0);
  ASSERT_EQ(t.srv->bodies_out, 0);
  ASSERT_EQ(t.srv->bodies_out_bytes, 0);
  /* The connection serves on. */
  expect_serves_on(&t.cl);
  ts_stop(&t);
  core_free(body);
}

/* A body larger than one loop iteration's read budget arrives over several
 * iterations (the connection deferred and resumed in between), whole, and
 * the connection serves on. */
UNIT_TEST(body_over_iteration_read_budget)
{
  struct ts t;
  ts_start(&t);
  size_t n = 3 * HTTP_ITER_READ_BUDGET + 12345;
  char *body = core_calloc(1, n);
  char want[64];
  snprintf(want, sizeof(want), "{\"data\":%zu}\n", n);
  for (int i = 0; i < 2; i++)
    post_expect(&t.cl, "/big", body, n, want);
  expect_serves_on(&t.cl);
  ts_stop(&t);
  core_free(body);
}

/* ---- Keep-alive and pipelining ---- */

UNIT_TEST(keep_alive_requests_in_a_row)
{
  struct ts t;
  ts_start(&t);
  for (int i = 0; i < 3; i++) {
    ASSERT_OK(hfx_send_str(&t.cl, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"));
    struct hfx_resp r;
    hfx_expect(&t.cl, 200, &r);
    ASSERT_STR_EQ(r.body, "{\"data\":1}\n");
    ASSERT(!r.close);
    hfx_resp_free(&r);
    ASSERT_EQ(http_server_connections(t.srv), 1);
  }
  /* HTTP/1.0 closes unless asked, and "Connection: close" is honoured. */
  ASSERT_OK(hfx_send_str(&t.cl, "POST /echo HTTP/1.1\r\nContent-Length: 2\r\n"
                                "Connection: close\r\n\r\nhi"));
  struct hfx_resp r;
  hfx_expect(&t.cl, 200, &r);
  ASSERT(r.close);
  ASSERT_STR_EQ(r.body, "hi");
  hfx_resp_free(&r);
  hfx_wait_eof(&t.cl);
  hfx_disconnect(&t.cl);
  hfx_connect(&t.cl, &t.loop, t.srv);
  ASSERT_OK(hfx_send_str(&t.cl, "GET /ok HTTP/1.0\r\n\r\n"));
  hfx_expect(&t.cl, 200, &r);
  ASSERT(r.close);
  hfx_resp_free(&r);
  hfx_wait_eof(&t.cl);
  /* A client that goes away leaves nothing behind. */
  hfx_disconnect(&t.cl);
  for (int i = 0; i < 100 && http_server_connections(t.srv) > 0; i++)
    uv_run(&t.loop, UV_RUN_NOWAIT);
  ASSERT_EQ(http_server_connections(t.srv), 0);
  ts_stop(&t);
}

/* Three requests in one write: three responses in order, the first one
 * answered later than the others could have been. */
UNIT_TEST(pipelined_requests_answered_in_order)
{
  struct ts t;
  ts_start(&t);
  ASSERT_OK(hfx_send_str(&t.cl, "GET /later HTTP/1.1\r\nHost: x\r\n\r\n"
                                "POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nfirst"
                                "GET /item/third HTTP/1.1\r\n\r\n"));
  expect_body(&t.cl, 200, "{\"data\":\"later\"}\n");
  expect_body(&t.cl, 200, "first");
  expect_body(&t.cl, 200, "third");
  hfx_quiet(&t.cl, 20);
  /* And again with the slow one in the middle. */
  ASSERT_OK(hfx_send_str(&t.cl, "GET /ok HTTP/1.1\r\n\r\nGET /later HTTP/1.1\r\n\r\n"
                                "GET /item/x HTTP/1.1\r\n\r\n"));
  expect_body(&t.cl, 200, "{\"data\":1}\n");
  expect_body(&t.cl, 200, "{\"data\":\"later\"}\n");
  expect_body(&t.cl, 200, "x");
  ts_stop(&t);
}

/* ---- Head limits ---- */

UNIT_TEST(request_line_too_long_431)
{
  struct ts t;
  ts_start(&t); /* max_header_bytes 1024 */
  char req[4096];
  int n = snprintf(req, sizeof(req), "GET /item/");
  memset(req + n, 'a', 2000);
  snprintf(req + n + 2000, sizeof(req) - (size_t)n - 2000, " HTTP/1.1\r\nHost: x\r\n\r\n");
  hfx_send_str(&t.cl, req);
  expect_error(&t.cl, 431, "request line too long", 1);
  ts_stop(&t);
}

UNIT_TEST(too_many_headers_431)
{
  struct ts t;
  struct http_limits lim = {.max_header_bytes = 8192};
  ts_start_limits(&t, &lim);
  char req[8192] = "GET /ok HTTP/1.1\r\n";
  for (int i = 0; i <= HTTP_MAX_HEADERS; i++) {
    char h[32];
    snprintf(h, sizeof(h), "X-%d: 1\r\n", i);
    unit_append(req, sizeof(req), h);
  }
  unit_append(req, sizeof(req), "\r\n");
  hfx_send_str(&t.cl, req);
  expect_error(&t.cl, 431, "too many header fields", 1);
  ts_stop(&t);
}

UNIT_TEST(header_fields_too_large_431)
{
  struct ts t;
  ts_start(&t);
  char req[4096] = "GET /ok HTTP/1.1\r\nX-Big: ";
  size_t n = strlen(req);
  memset(req + n, 'b', 1500);
  req[n + 1500] = '\0';
  unit_append(req, sizeof(req), "\r\n\r\n");
  hfx_send_str(&t.cl, req);
  expect_error(&t.cl, 431, "request header fields too large", 1);
  /* Just under the limit is fine. */
  hfx_disconnect(&t.cl);
  hfx_connect(&t.cl, &t.loop, t.srv);
  char ok[1024] = "GET /ok HTTP/1.1\r\nX-Big: ";
  n = strlen(ok);
  memset(ok + n, 'b', 900);
  ok[n + 900] = '\0';
  unit_append(ok, sizeof(ok), "\r\n\r\n");
  ASSERT_OK(hfx_send_str(&t.cl, ok));
  expect_body(&t.cl, 200, "{\"data\":1}\n");
  ts_stop(&t);
}

/* ---- Bodies ---- */

/* Content-Length over the route's max_body: refused at the headers, before
 * a byte of the body is sent; a route with a larger max_body takes it. */
UNIT_TEST(body_over_max_content_length_413)
{
  struct ts t;
  ts_start(&t);
  char head[128];
  snprintf(head, sizeof(head), "POST /echo HTTP/1.1\r\nContent-Length: %d\r\n\r\n",
           HTTP_DEFAULT_MAX_BODY + 1);
  ASSERT_OK(hfx_send_str(&t.cl, head));
  expect_error(&t.cl, 413, "request body too large", 1);

  hfx_disconnect(&t.cl);
  hfx_connect(&t.cl, &t.loop, t.srv);
  size_t len = HTTP_DEFAULT_MAX_BODY * 4;
  char *body = core_malloc(len);
  memset(body, 'u', len);
  snprintf(head, sizeof(head), "POST /upload HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", len);
  ASSERT_OK(hfx_send_str(&t.cl, head));
  ASSERT_OK(hfx_send(&t.cl, body, len));
  char want[64];
  snprintf(want, sizeof(want), "{\"data\":%zu}\n", len);
  expect_body(&t.cl, 200, want);
  core_free(body);
  ts_stop(&t);
}

/* A chunked body has no length up front: refused once it grows past
 * max_body, while it is read. */
UNIT_TEST(body_over_max_chunked_413)
{
  struct ts t;
  ts_start(&t);
  ASSERT_OK(hfx_send_str(&t.cl, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"));
  char chunk[8192 + 16];
  int n = snprintf(chunk, sizeof(chunk), "2000\r\n");
  memset(chunk + n, 'c', 8192);
  memcpy(chunk + n + 8192, "\r\n", 2);
  size_t clen = (size_t)n + 8192 + 2;
  int sent = 0;
  for (; sent < 8 && hfx_send(&t.cl, chunk, clen) == 0; sent++)
    ASSERT(t.cl.len == 0); /* 64 KiB is still allowed */
  ASSERT_EQ(sent, 8);
  hfx_send(&t.cl, chunk, clen); /* one more: 72 KiB */
  expect_error(&t.cl, 413, "request body too large", 1);
  ts_stop(&t);
}

/* The chunked decoder does not care where the reads end. */
UNIT_TEST(chunked_body_split_at_every_byte)
{
  static const char req[] = "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
  struct ts t;
  ts_start(&t);
  for (size_t cut = 1; cut < sizeof(req) - 1; cut++) {
    ASSERT_OK(hfx_send(&t.cl, req, cut));
    ASSERT_EQ(t.cl.len, 0);
    ASSERT_OK(hfx_send(&t.cl, req + cut, sizeof(req) - 1 - cut));
    expect_body(&t.cl, 200, "hello world");
  }
  /* And one byte per read, the loop running in between. */
  for (size_t i = 0; i < sizeof(req) - 1; i++)
    ASSERT_OK(hfx_send(&t.cl, req + i, 1));
  expect_body(&t.cl, 200, "hello world");
  ASSERT_EQ(http_server_connections(t.srv), 1); /* all on one connection */
  ts_stop(&t);
}

/* A request refused at its headers while its body is still coming gets its
 * answer at once and the connection closes: the body, whatever it holds, is
 * never parsed as a next request. */
UNIT_TEST(early_response_closes_and_skips_body)
{
  static const char smuggled[] = "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n";
  struct ts t;
  ts_start(&t);
  char req[256];
  snprintf(req, sizeof(req), "POST /secure HTTP/1.1\r\nContent-Length: %zu\r\n\r\n",
           2 * (sizeof(smuggled) - 1));
  ASSERT_OK(hfx_send_str(&t.cl, req));
  struct hfx_resp r;
  hfx_expect(&t.cl, 401, &r);
  ASSERT(r.close);
  hfx_resp_free(&r);
  hfx_send_str(&t.cl, smuggled); /* the body, late; the server may be gone */
  hfx_send_str(&t.cl, smuggled);
  hfx_wait_eof(&t.cl);
  ASSERT_EQ(t.cl.len, 0);

  /* The same for an unknown path, with the body in the same write. */
  hfx_disconnect(&t.cl);
  hfx_connect(&t.cl, &t.loop, t.srv);
  snprintf(req, sizeof(req), "POST /nowhere HTTP/1.1\r\nContent-Length: %zu\r\n\r\n%s",
           sizeof(smuggled) - 1, smuggled);
  hfx_send_str(&t.cl, req);
  expect_error(&t.cl, 404, "no such path", 1);

  /* Without a body there is nothing to skip: the connection stays. */
  hfx_disconnect(&t.cl);
  hfx_connect(&t.cl, &t.loop, t.srv);
  ASSERT_OK(hfx_send_str(&t.cl, "GET /nowhere HTTP/1.1\r\n\r\n"));
  expect_error(&t.cl, 404, "no such path", 0);
  ASSERT_OK(hfx_send_str(&t.cl, smuggled));
  expect_body(&t.cl, 200, "{\"data\":1}\n");
  ts_stop(&t);
}

/* ---- Timers, driven by the loop ---- */

/* The header deadline runs from the first byte: a client trickling bytes
 * does not stretch it. The connection closes without an answer. */
UNIT_TEST(header_timeout_closes)
{
  struct ts t;
  struct http_limits lim = {.header_timeout_ms = 100};
  ts_start_limits(&t, &lim);
  uint64_t start = hfx_now_ms();
  static const char part[] = "GET /ok HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
  for (size_t i = 0; i < sizeof(part) - 1 && !t.cl.eof; i++) {
    if (hfx_send(&t.cl, part + i, 1) < 0)
      break;
    uint64_t next = hfx_now_ms() + 20;
    while (hfx_now_ms() < next && !t.cl.eof)
      hfx_turn(&t.cl);
  }
  hfx_wait_eof(&t.cl);
  uint64_t took = hfx_now_ms() - start;
  ASSERT(took >= 95);
  ASSERT(took < 20 * (sizeof(part) - 1)); /* long before the trickle ended */
  ASSERT_EQ(t.cl.len, 0);
  ts_stop(&t);
}

/* Between requests the idle timer runs instead: longer than the header
 * deadline would allow is fine before a first request, and after an answer
 * the connection closes once idle_timeout_ms passes. */
UNIT_TEST(idle_keep_alive_timeout_closes)
{
  struct ts t;
  struct http_limits lim = {.header_timeout_ms = 1000, .idle_timeout_ms = 100};
  ts_start_limits(&t, &lim);
  hfx_quiet(&t.cl, 300); /* a new connection gets the header deadline */
  ASSERT_OK(hfx_send_str(&t.cl, "GET /ok HTTP/1.1\r\n\r\n"));
  expect_body(&t.cl, 200, "{\"data\":1}\n");
  uint64_t took = hfx_wait_eof(&t.cl);
  ASSERT(took >= 95);
  ASSERT(took < 900); /* not the header deadline */
  ts_stop(&t);
}

/* ---- Routing, authentication, errors ---- */

UNIT_TEST(error_responses_in_pbs_envelope)
{
  struct ts t;
  ts_start(&t);
  ASSERT_OK(hfx_send_str(&t.cl, "GET /nowhere HTTP/1.1\r\n\r\n"));
  expect_error(&t.cl, 404, "no such path", 0);
  ASSERT_OK(hfx_send_str(&t.cl, "DELETE /ok HTTP/1.1\r\n\r\n"));
  expect_error(&t.cl, 405, "method not allowed", 0);
  ASSERT_OK(hfx_send_str(&t.cl, "GET /secure HTTP/1.1\r\n\r\n"));
  expect_error(&t.cl, 401, "authentication failed", 0);
  ASSERT_OK(hfx_send_str(&t.cl, "GET /secure HTTP/1.1\r\nAuthorization: PBSAPIToken=x\r\n\r\n"));
  expect_error(&t.cl, 401, "authentication failed", 0);
  ASSERT_OK(hfx_send_str(&t.cl, "GET /secure HTTP/1.1\r\nAuthorization: " TOKEN "\r\n\r\n"));
  expect_body(&t.cl, 200, "{\"data\":\"root@pam!t\"}\n");
  /* A method the server does not know at all. */
  ASSERT_OK(hfx_send_str(&t.cl, "PATCH /ok HTTP/1.1\r\n\r\n"));
  expect_error(&t.cl, 405, "method not allowed", 0);
  ts_stop(&t);
}

/* Path parameters are percent-decoded per segment, and must decode to UTF-8
 * without NUL. */
UNIT_TEST(path_parameters_url_decoded)
{
  static const struct {
    const char *path;
    int status;
    const char *body;
  } cases[] = {
    {"/item/plain", 200, "plain"},
    {"/item/a%20b", 200, "a b"},
    {"/item/a%2Fb", 200, "a/b"},
    {"/item/caf%C3%A9", 200, "caf\xc3\xa9"},
    {"/item/a+b", 200, "a+b"},          /* '+' is a space only in queries */
    {"/item/x?name=y", 200, "x"},       /* the path parameter wins */
    {"/item/a%00b", 400, NULL},
    {"/item/%zz", 400, NULL},
    {"/item/abc%4", 400, NULL},
    {"/item/%C0%AF", 400, NULL},        /* overlong '/' */
    {"/item/", 404, NULL},
    {"/item/a/b", 404, NULL},
  };
  struct ts t;
  ts_start(&t);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\n\r\n", cases[i].path);
    ASSERT_OK(hfx_send_str(&t.cl, req));
    struct hfx_resp r;
    hfx_expect(&t.cl, cases[i].status, &r);
    if (cases[i].body && strcmp(r.body, cases[i].body) != 0)
      unit_fail(__FILE__, __LINE__, "%s: \"%s\"", cases[i].path, r.body);
    if (cases[i].status == 400)
      ASSERT(strstr(r.body, "invalid characters in a path parameter") != NULL);
    hfx_resp_free(&r);
  }
  ts_stop(&t);
}

/* A few of the framing refusals (integration test_http_hostile.py has them
 * all): each is answered, then the connection closes, since nobody can say
 * where the next request would start. */
UNIT_TEST(strict_framing_refused)
{
  static const struct {
    const char *req;
    int status;
    const char *message;
  } cases[] = {
    {"GET /ok HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "duplicate host header"},
    {"POST /echo HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400,
     "malformed HTTP request: HPE_UNEXPECTED_CONTENT_LENGTH"},
    {"POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501,
     "unsupported transfer coding"},
    {"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
     "Transfer-Encoding in an HTTP/1.0 request"},
    {"GET /ok HTTP/1.1\nHost: x\n\n", 400,
     "malformed HTTP request: bare LF in the header section"},
    {"GET /ok HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 400,
     "malformed HTTP request: folded header line (obs-fold)"},
    {"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Auth: y\r\n\r\n", 400,
     "trailer fields are not supported"},
  };
  struct ts t;
  ts_start(&t);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char req[256];
    snprintf(req, sizeof(req), "%sGET /ok HTTP/1.1\r\n\r\n", cases[i].req);
    hfx_send_str(&t.cl, req);
    expect_error(&t.cl, cases[i].status, cases[i].message, 1);
    hfx_disconnect(&t.cl);
    hfx_connect(&t.cl, &t.loop, t.srv);
  }
  ts_stop(&t);
}

/* An adopted stream counts against the connection limit like an accepted
 * one. */
UNIT_TEST(adopted_over_connection_limit_503)
{
  struct ts t;
  struct http_limits lim = {.max_connections = 1};
  ts_start_limits(&t, &lim);
  struct hfx_client second;
  hfx_connect(&second, &t.loop, t.srv);
  struct hfx_resp r;
  hfx_expect(&second, 503, &r);
  hfx_resp_free(&r);
  hfx_wait_eof(&second);
  hfx_disconnect(&second);
  ASSERT_OK(hfx_send_str(&t.cl, "GET /ok HTTP/1.1\r\n\r\n"));
  expect_body(&t.cl, 200, "{\"data\":1}\n");
  ts_stop(&t);
}

/* ---- Out of file descriptors (a real TCP listener) ---- */

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

UNIT_MAIN(UNIT_CASE(keep_alive_requests_in_a_row),
          UNIT_CASE(taken_body_outlives_response_and_server_free),
          UNIT_CASE(taken_body_released_gives_budget_back),
          UNIT_CASE(body_over_iteration_read_budget),
          UNIT_CASE(pipelined_requests_answered_in_order),
          UNIT_CASE(request_line_too_long_431),
          UNIT_CASE(too_many_headers_431),
          UNIT_CASE(header_fields_too_large_431),
          UNIT_CASE(body_over_max_content_length_413),
          UNIT_CASE(body_over_max_chunked_413),
          UNIT_CASE(chunked_body_split_at_every_byte),
          UNIT_CASE(early_response_closes_and_skips_body),
          UNIT_CASE(header_timeout_closes),
          UNIT_CASE(idle_keep_alive_timeout_closes),
          UNIT_CASE(error_responses_in_pbs_envelope),
          UNIT_CASE(path_parameters_url_decoded),
          UNIT_CASE(strict_framing_refused),
          UNIT_CASE(adopted_over_connection_limit_503),
          UNIT_CASE(emfile_answered_with_503))
