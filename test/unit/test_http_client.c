/* test_http_client.c: the HTTP client against a small scripted server that
 * runs on the same loop. The request path picks the server's behaviour. */
#include "unit.h"

#include "core/core_alloc.h"
#include "core/core_buf.h"
#include "core/core_error.h"
#include "http/http_client.h"

#include <uv.h>

/* ---- the scripted server ---- */

struct srv {
  uv_tcp_t listener;
  int port;
  int open, max_open, accepted, requests;
};

struct sconn {
  struct srv *s;
  uv_tcp_t tcp;
  struct core_buf in;
  int closed;
};

static void s_closed(uv_handle_t *h)
{
  struct sconn *sc = h->data;
  sc->s->open--;
  core_buf_free(&sc->in);
  core_free(sc);
}

static void s_close(struct sconn *sc)
{
  if (sc->closed)
    return;
  sc->closed = 1;
  uv_close((uv_handle_t *)&sc->tcp, s_closed);
}

static void s_wrote(uv_write_t *w, int status)
{
  (void)status;
  core_free(w->data);
  core_free(w);
}

static void s_send(struct sconn *sc, const char *data, size_t len)
{
  if (sc->closed)
    return;
  uv_write_t *w = core_new(uv_write_t);
  char *copy = core_malloc(len ? len : 1);
  memcpy(copy, data, len);
  w->data = copy;
  uv_buf_t b = uv_buf_init(copy, (unsigned)len);
  if (uv_write(w, (uv_stream_t *)&sc->tcp, &b, 1, s_wrote) < 0) {
    core_free(copy);
    core_free(w);
  }
}

static void s_sendf(struct sconn *sc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_sendf(struct sconn *sc, const char *fmt, ...)
{
  struct core_buf b;
  core_buf_init(&b, 1 << 20);
  va_list ap;
  va_start(ap, fmt);
  core_buf_vprintf(&b, fmt, ap);
  va_end(ap);
  s_send(sc, b.base, b.len);
  core_buf_free(&b);
}

static void s_shutdown_done(uv_shutdown_t *r, int status)
{
  (void)status;
  struct sconn *sc = r->data;
  core_free(r);
  s_close(sc);
}

/* Closes after pending writes went out. */
static void s_end(struct sconn *sc)
{
  uv_shutdown_t *r = core_new(uv_shutdown_t);
  r->data = sc;
  if (uv_shutdown(r, (uv_stream_t *)&sc->tcp, s_shutdown_done) < 0) {
    core_free(r);
    s_close(sc);
  }
}

static void s_handle(struct sconn *sc, const char *method, const char *path, const char *body,
                     size_t blen)
{
  sc->s->requests++;
  if (strcmp(path, "/hello") == 0) {
    s_sendf(sc, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Test: one\r\nX-Empty:\r\n\r\nhello world");
  } else if (strcmp(path, "/echo") == 0) {
    s_sendf(sc, "HTTP/1.1 201 Created\r\nContent-Length: %zu\r\n\r\n", blen);
    s_send(sc, body, blen);
  } else if (strncmp(path, "/big/", 5) == 0) {
    size_t n = (size_t)strtoull(path + 5, NULL, 10);
    s_sendf(sc, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", n);
    char *p = core_malloc(n);
    for (size_t i = 0; i < n; i++)
      p[i] = (char)('a' + i % 26);
    s_send(sc, p, n);
    core_free(p);
  } else if (strcmp(path, "/chunked") == 0) {
    s_sendf(sc, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                "5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n");
  } else if (strcmp(path, "/eof") == 0) {
    s_sendf(sc, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end");
    s_end(sc);
  } else if (strcmp(path, "/trunc") == 0) {
    s_sendf(sc, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b");
    s_end(sc);
  } else if (strcmp(path, "/hang") == 0) {
    /* never answers */
  } else if (strcmp(path, "/close-after") == 0) {
    s_sendf(sc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    s_end(sc); /* as a server whose idle timeout just ran out */
  } else if (strcmp(path, "/head") == 0 && strcmp(method, "HEAD") == 0) {
    s_sendf(sc, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nETag: \"e\"\r\n\r\n");
  } else if (strcmp(path, "/garbage") == 0) {
    s_sendf(sc, "HTTP/1.1 2x0 What\r\n\r\n");
  } else if (strcmp(path, "/hugeheader") == 0) {
    s_sendf(sc, "HTTP/1.1 200 OK\r\nX-Big: ");
    char *p = core_malloc(100000);
    memset(p, 'h', 100000);
    s_send(sc, p, 100000);
    core_free(p);
    s_sendf(sc, "\r\nContent-Length: 0\r\n\r\n");
  } else {
    s_sendf(sc, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
  }
}

static void s_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
  (void)h;
  b->base = core_malloc(hint);
  b->len = hint;
}

static void s_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
  struct sconn *sc = st->data;
  if (n < 0) {
    core_free(b->base);
    s_close(sc);
    return;
  }
  core_buf_append(&sc->in, b->base, (size_t)n);
  core_free(b->base);
  for (;;) {
    if (sc->in.len == 0)
      return;
    char *end = strstr(sc->in.base, "\r\n\r\n");
    if (end == NULL)
      return;
    size_t hlen = (size_t)(end + 4 - sc->in.base);
    size_t clen = 0;
    char *cl = strcasestr(sc->in.base, "content-length:");
    if (cl && cl < end)
      clen = (size_t)strtoull(cl + 15, NULL, 10);
    if (sc->in.len < hlen + clen)
      return;
    char method[16] = "", path[256] = "";
    sscanf(sc->in.base, "%15s %255s", method, path);
    char *body = core_malloc(clen + 1);
    memcpy(body, sc->in.base + hlen, clen);
    size_t rest = sc->in.len - hlen - clen;
    memmove(sc->in.base, sc->in.base + hlen + clen, rest);
    sc->in.len = rest;
    sc->in.base[rest] = '\0';
    s_handle(sc, method, path, body, clen);
    core_free(body);
    if (sc->closed)
      return;
  }
}

static void s_accept(uv_stream_t *l, int status)
{
  struct srv *s = l->data;
  if (status < 0)
    return;
  struct sconn *sc = core_new(struct sconn);
  sc->s = s;
  core_buf_init(&sc->in, 64 << 20);
  uv_tcp_init(l->loop, &sc->tcp);
  sc->tcp.data = sc;
  if (uv_accept(l, (uv_stream_t *)&sc->tcp) < 0) {
    s_close(sc);
    return;
  }
  s->open++;
  s->accepted++;
  if (s->open > s->max_open)
    s->max_open = s->open;
  uv_read_start((uv_stream_t *)&sc->tcp, s_alloc, s_read);
  uv_unref((uv_handle_t *)&sc->tcp); /* the client side keeps the loop alive */
}

static void srv_start(uv_loop_t *loop, struct srv *s)
{
  memset(s, 0, sizeof(*s));
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  ASSERT_OK(uv_tcp_init(loop, &s->listener));
  s->listener.data = s;
  ASSERT_OK(uv_tcp_bind(&s->listener, (struct sockaddr *)&a, 0));
  ASSERT_OK(uv_listen((uv_stream_t *)&s->listener, 128, s_accept));
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len);
  s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  uv_unref((uv_handle_t *)&s->listener);
}

static void close_walk(uv_handle_t *h, void *arg)
{
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, h->type == UV_TCP && h->data ? NULL : NULL);
}

/* Ends a test: the client is freed, everything closed, nothing leaked. */
static void finish_loop(uv_loop_t *loop, struct http_client *c)
{
  if (c)
    http_client_free(c, NULL, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_walk(loop, close_walk, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  ASSERT_EQ(uv_loop_close(loop), 0);
}

/* ---- client helpers ---- */

struct result {
  int done;
  int status;
  int http;
  char body[256];
  size_t body_len;
  char hdr[64];
};

static void on_done(struct http_client_req *req, int status, void *arg)
{
  struct result *r = arg;
  r->done++;
  r->status = status;
  r->http = http_client_req_status(req);
  struct core_slice b = http_client_req_body(req);
  r->body_len = b.len;
  snprintf(r->body, sizeof(r->body), "%.*s", (int)b.len, b.base);
  const char *h = http_client_req_header(req, "x-test");
  snprintf(r->hdr, sizeof(r->hdr), "%s", h ? h : "");
}

static struct http_client *client(uv_loop_t *loop, struct srv *s, unsigned max_conns)
{
  struct http_client_config cfg = {.host = "127.0.0.1", .port = s->port, .max_conns = max_conns};
  struct http_client *c;
  ASSERT_OK(http_client_new(loop, &cfg, &c));
  return c;
}

static void get(struct http_client *c, const char *method, const char *path, struct result *r)
{
  struct http_client_request rq = {.method = method, .target = path, .on_done = on_done, .arg = r};
  ASSERT_OK(http_client_send(c, &rq, NULL));
}

UNIT_TEST(get_and_keepalive)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct srv s;
  srv_start(&loop, &s);
  struct http_client *c = client(&loop, &s, 4);
  struct result r1 = {0}, r2 = {0}, r3 = {0};
  get(c, "GET", "/hello", &r1);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(r1.done, 1);
  ASSERT_EQ(r1.status, 0);
  ASSERT_EQ(r1.http, 200);
  ASSERT_STR_EQ(r1.body, "hello world");
  ASSERT_STR_EQ(r1.hdr, "one");
  get(c, "GET", "/chunked", &r2);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_STR_EQ(r2.body, "hello world");
  get(c, "GET", "/nothing", &r3);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(r3.http, 404);
  struct http_client_stats st;
  http_client_get_stats(c, &st);
  ASSERT_EQ(st.conns_opened, 1);
  ASSERT_EQ(st.conns_reused, 2);
  ASSERT_EQ(s.accepted, 1);
  unsigned idle;
  ASSERT_EQ(http_client_conns(c, &idle), 1);
  ASSERT_EQ(idle, 1);
  finish_loop(&loop, c);
}

UNIT_TEST(head_put_eof)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct srv s;
  srv_start(&loop, &s);
  struct http_client *c = client(&loop, &s, 2);
  struct result r1 = {0}, r2 = {0}, r3 = {0};
  get(c, "HEAD", "/head", &r1);
  static const char payload[] = "the body to echo";
  struct http_client_header hs[] = {{"Content-Type", "application/octet-stream"}};
  struct http_client_request put = {.method = "PUT", .target = "/echo", .headers = hs,
                                    .n_headers = 1, .body = payload,
                                    .body_len = sizeof(payload) - 1, .on_done = on_done,
                                    .arg = &r2};
  ASSERT_OK(http_client_send(c, &put, NULL));
  get(c, "GET", "/eof", &r3);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(r1.status, 0);
  ASSERT_EQ(r1.http, 200);
  ASSERT_EQ(r1.body_len, 0);
  ASSERT_EQ(r2.http, 201);
  ASSERT_STR_EQ(r2.body, payload);
  ASSERT_EQ(r3.status, 0);
  ASSERT_STR_EQ(r3.body, "until the end");
  finish_loop(&loop, c);
}

UNIT_TEST(connection_limit_and_queue)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct srv s;
  srv_start(&loop, &s);
  struct http_client *c = client(&loop, &s, 3);
  struct result r[40];
  memset(r, 0, sizeof(r));
  for (int i = 0; i < 40; i++)
    get(c, "GET", i % 2 ? "/hello" : "/big/100000", &r[i]);
  uv_run(&loop, UV_RUN_DEFAULT);
  for (int i = 0; i < 40; i++) {
    ASSERT_EQ(r[i].done, 1);
    ASSERT_EQ(r[i].status, 0);
    ASSERT_EQ(r[i].body_len, i % 2 ? 11 : 100000);
  }
  ASSERT(s.max_open <= 3);
  ASSERT_EQ(s.requests, 40);
  finish_loop(&loop, c);
}

UNIT_TEST(errors)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct srv s;
  srv_start(&loop, &s);
  struct http_client *c = client(&loop, &s, 4);
  struct result r1 = {0}, r2 = {0}, r3 = {0};
  get(c, "GET", "/trunc", &r1);
  get(c, "GET", "/garbage", &r2);
  get(c, "GET", "/hugeheader", &r3);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(r1.status, CORE_EPROTO);
  ASSERT_EQ(r2.status, CORE_EPROTO);
  ASSERT_EQ(r3.status, CORE_ETOOBIG);

  struct result r4 = {0};
  struct http_client_request big = {.method = "GET", .target = "/big/300000", .max_body = 1000,
                                    .on_done = on_done, .arg = &r4};
  ASSERT_OK(http_client_send(c, &big, NULL));
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(r4.status, CORE_ETOOBIG);

  /* Refused before anything is queued. */
  struct http_client_request bad = {.method = "GET", .target = "/x\r\nInjected: 1",
                                    .on_done = on_done, .arg = &r4};
  ASSERT_EQ(http_client_send(c, &bad, NULL), CORE_EINVAL);
  struct http_client_header hs[] = {{"X-A", "v\r\nInjected: 1"}};
  struct http_client_request bad2 = {.method = "GET", .target = "/x", .headers = hs,
                                     .n_headers = 1, .on_done = on_done, .arg = &r4};
  ASSERT_EQ(http_client_send(c, &bad2, NULL), CORE_EINVAL);
  finish_loop(&loop, c);
}

UNIT_TEST(refused_and_timeout)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct srv s;
  srv_start(&loop, &s);
  /* A port nobody listens on: bind and close a socket to find one. */
  struct srv dead;
  srv_start(&loop, &dead);
  int dead_port = dead.port;
  uv_close((uv_handle_t *)&dead.listener, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
  struct http_client_config cfg = {.host = "127.0.0.1", .port = dead_port};
  struct http_client *c0;
  ASSERT_OK(http_client_new(&loop, &cfg, &c0));
  struct result r0 = {0};
  get(c0, "GET", "/hello", &r0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(r0.status, UV_ECONNREFUSED);
  http_client_free(c0, NULL, NULL);

  struct http_client *c = client(&loop, &s, 2);
  struct result r1 = {0};
  struct http_client_request rq = {.method = "GET", .target = "/hang", .timeout_ms = 300,
                                   .on_done = on_done, .arg = &r1};
  uint64_t t0 = uv_now(&loop);
  ASSERT_OK(http_client_send(c, &rq, NULL));
  uv_run(&loop, UV_RUN_DEFAULT);
  uint64_t el = uv_now(&loop) - t0;
  ASSERT_EQ(r1.status, CORE_ETIMEOUT);
  ASSERT(el >= 300 && el < 1000);

  /* DNS through uv_getaddrinfo. */
  struct http_client_config lc = {.host = "localhost", .port = s.port};
  struct http_client *c2;
  ASSERT_OK(http_client_new(&loop, &lc, &c2));
  struct result r2 = {0};
  get(c2, "GET", "/hello", &r2);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(r2.http, 200);
  http_client_free(c2, NULL, NULL);
  finish_loop(&loop, c);
}

static struct http_client *chain_client;
static struct result chain_r2;

static void on_done_then_send(struct http_client_req *req, int status, void *arg)
{
  on_done(req, status, arg);
  /* On the connection just returned to the pool, before its FIN is read. */
  get(chain_client, "GET", "/hello", &chain_r2);
}

UNIT_TEST(stale_keepalive_resent)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct srv s;
  srv_start(&loop, &s);
  struct http_client *c = client(&loop, &s, 1);
  chain_client = c;
  struct result r1 = {0};
  struct http_client_request rq = {.method = "GET", .target = "/close-after",
                                   .on_done = on_done_then_send, .arg = &r1};
  ASSERT_OK(http_client_send(c, &rq, NULL));
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(r1.http, 200);
  ASSERT_EQ(chain_r2.status, 0);
  ASSERT_EQ(chain_r2.http, 200);
  struct http_client_stats st;
  http_client_get_stats(c, &st);
  ASSERT_EQ(st.stale_resends, 1);
  ASSERT_EQ(st.conns_opened, 2);
  finish_loop(&loop, c);
}

/* ---- streaming with back-pressure ---- */

struct stream {
  struct http_client_req *req;
  uv_timer_t timer;
  size_t got;
  int paused_calls;
  int pieces;
  int bad_order;
  int done;
  int status;
};

static void resume_and_clear(uv_timer_t *t)
{
  struct stream *st = t->data;
  st->paused_calls = 0;
  http_client_req_resume(st->req);
}

static int on_piece(struct http_client_req *req, const char *data, size_t len, void *arg)
{
  struct stream *st = arg;
  st->req = req;
  if (st->paused_calls)
    st->bad_order = 1; /* a piece arrived while paused */
  for (size_t i = 0; i < len; i++)
    if (data[i] != (char)('a' + (st->got + i) % 26))
      st->bad_order = 1;
  st->got += len;
  st->pieces++;
  http_client_req_pause(req);
  st->paused_calls = 1;
  uv_timer_start(&st->timer, resume_and_clear, 1, 0);
  return 0;
}

static void on_stream_done(struct http_client_req *req, int status, void *arg)
{
  (void)req;
  struct stream *st = arg;
  st->done++;
  st->status = status;
}

UNIT_TEST(streaming_backpressure)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct srv s;
  srv_start(&loop, &s);
  struct http_client *c = client(&loop, &s, 1);
  struct stream st;
  memset(&st, 0, sizeof(st));
  uv_timer_init(&loop, &st.timer);
  st.timer.data = &st;
  struct http_client_request rq = {.method = "GET", .target = "/big/3000000",
                                   .on_body = on_piece, .on_done = on_stream_done, .arg = &st};
  ASSERT_OK(http_client_send(c, &rq, NULL));
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(st.done, 1);
  ASSERT_EQ(st.status, 0);
  ASSERT_EQ(st.got, 3000000);
  ASSERT(!st.bad_order);
  ASSERT(st.pieces > 10);
  uv_close((uv_handle_t *)&st.timer, NULL);
  finish_loop(&loop, c);
}

/* ---- cancel and free with requests in flight ---- */

UNIT_TEST(cancel_and_free)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct srv s;
  srv_start(&loop, &s);
  struct http_client *c = client(&loop, &s, 1);
  struct result r1 = {0}, r2 = {0}, r3 = {0};
  struct http_client_req *h1, *h2;
  struct http_client_request a = {.method = "GET", .target = "/hang", .on_done = on_done, .arg = &r1};
  struct http_client_request b = {.method = "GET", .target = "/hello", .on_done = on_done, .arg = &r2};
  ASSERT_OK(http_client_send(c, &a, &h1));
  ASSERT_OK(http_client_send(c, &b, &h2));
  for (int i = 0; i < 20; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  http_client_req_cancel(h2); /* queued */
  ASSERT_EQ(r2.done, 1);
  ASSERT_EQ(r2.status, CORE_EABORTED);
  http_client_req_cancel(h1); /* on the wire */
  ASSERT_EQ(r1.done, 1);
  ASSERT_EQ(r1.status, CORE_EABORTED);

  get(c, "GET", "/hang", &r3);
  for (int i = 0; i < 20; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  http_client_free(c, NULL, NULL);
  ASSERT_EQ(r3.done, 1);
  ASSERT_EQ(r3.status, CORE_EABORTED);
  finish_loop(&loop, NULL);
}

/* ---- per-iteration send and read budgets ---- */

#define BIG_BODY (1536u * 1024)
#define BIG_N 8

struct big {
  const char *sent;
  size_t want;
  int done, status, http, same;
};

static void on_big_done(struct http_client_req *req, int status, void *arg)
{
  struct big *b = arg;
  b->done++;
  b->status = status;
  b->http = http_client_req_status(req);
  struct core_slice body = http_client_req_body(req);
  b->same = body.len == b->want;
  for (size_t i = 0; b->same && i < body.len; i++)
    b->same = b->sent ? body.base[i] == b->sent[i] : body.base[i] == (char)('a' + i % 26);
}

/* Eight 1.5 MiB uploads and eight 2 MB downloads at once: more than one
 * iteration's budget each way, so connections wait for later iterations;
 * every byte still arrives, in order. */
UNIT_TEST(budgets_many_large_bodies)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct srv s;
  srv_start(&loop, &s);
  struct http_client *c = client(&loop, &s, 2 * BIG_N);
  char *bodies[BIG_N];
  struct big up[BIG_N], down[BIG_N];
  for (int k = 0; k < BIG_N; k++) {
    bodies[k] = core_malloc(BIG_BODY);
    for (size_t i = 0; i < BIG_BODY; i++)
      bodies[k][i] = (char)(k * 31 + i * 7);
    up[k] = (struct big){.sent = bodies[k], .want = BIG_BODY};
    down[k] = (struct big){.want = 2000000};
    struct http_client_request put = {.method = "PUT", .target = "/echo", .body = bodies[k],
                                      .body_len = BIG_BODY, .on_done = on_big_done,
                                      .arg = &up[k]};
    ASSERT_OK(http_client_send(c, &put, NULL));
    struct http_client_request rq = {.method = "GET", .target = "/big/2000000",
                                     .on_done = on_big_done, .arg = &down[k]};
    ASSERT_OK(http_client_send(c, &rq, NULL));
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  for (int k = 0; k < BIG_N; k++) {
    ASSERT_EQ(up[k].done, 1);
    ASSERT_EQ(up[k].status, 0);
    ASSERT_EQ(up[k].http, 201);
    ASSERT(up[k].same);
    ASSERT_EQ(down[k].done, 1);
    ASSERT_EQ(down[k].status, 0);
    ASSERT_EQ(down[k].http, 200);
    ASSERT(down[k].same);
    core_free(bodies[k]);
  }
  finish_loop(&loop, c);
}

/* Freed while uploads wait for budget: each ends aborted, nothing leaks. */
UNIT_TEST(free_while_waiting_for_budget)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct srv s;
  srv_start(&loop, &s);
  struct http_client *c = client(&loop, &s, BIG_N);
  char *body = core_malloc(BIG_BODY);
  memset(body, 'x', BIG_BODY);
  struct result r[BIG_N];
  memset(r, 0, sizeof(r));
  for (int k = 0; k < BIG_N; k++) {
    struct http_client_request put = {.method = "PUT", .target = "/hang", .body = body,
                                      .body_len = BIG_BODY, .on_done = on_done, .arg = &r[k]};
    ASSERT_OK(http_client_send(c, &put, NULL));
  }
  for (int i = 0; i < 10; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  http_client_free(c, NULL, NULL);
  for (int k = 0; k < BIG_N; k++) {
    ASSERT_EQ(r[k].done, 1);
    ASSERT_EQ(r[k].status, CORE_EABORTED);
  }
  /* The server's connections still read what was sent before their EOF
   * (the referenced listener keeps the loop polling meanwhile). */
  uv_ref((uv_handle_t *)&s.listener);
  while (s.open > 0)
    uv_run(&loop, UV_RUN_ONCE);
  uv_unref((uv_handle_t *)&s.listener);
  finish_loop(&loop, NULL);
  core_free(body);
}

UNIT_MAIN(UNIT_CASE(get_and_keepalive), UNIT_CASE(head_put_eof),
          UNIT_CASE(connection_limit_and_queue), UNIT_CASE(errors),
          UNIT_CASE(refused_and_timeout), UNIT_CASE(stale_keepalive_resent),
          UNIT_CASE(streaming_backpressure), UNIT_CASE(cancel_and_free),
          UNIT_CASE(budgets_many_large_bodies), UNIT_CASE(free_while_waiting_for_budget))
