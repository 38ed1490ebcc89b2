#include "http/http_client.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_job.h"
#include "http/http_tls.h"

#include <llhttp.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TICK_MS 100
#define READ_BUF_SIZE (64 * 1024)
#define MAX_RESP_HEADERS 128
#define DEFAULT_MAX_BODY (16u * 1024 * 1024)
#define DEFAULT_MAX_HEADER_BYTES (64u * 1024)
#define DEFAULT_TIMEOUT_MS (30u * 60 * 1000)
/* Held body bytes while paused: one socket read plus TLS record slack. */
#define MAX_HELD (256u * 1024)
/* A request body goes out in pieces of this size, one per connection per
 * loop iteration: a single 4 MiB write(2) costs the loop milliseconds of
 * copying (more when the kernel has to find fresh pages), and with several
 * connections writable at once timers and other requests would wait for all
 * of them. */
#define BODY_SLICE (256u * 1024)
/* Body bytes handed to sockets per loop iteration over all connections of a
 * client: with 32 connections writable at once, one slice each would be 8 MiB
 * of copying (and, on loopback, the receiver's TCP work) before the loop
 * polls again. Connections over the budget wait for the next iteration in
 * order (an idle handle keeps the poll from blocking meanwhile). */
#define SEND_BUDGET (512u * 1024)
/* Likewise for response bytes read per loop iteration: libuv reads a readable
 * stream up to 32 times in one callback, so 32 connections with full receive
 * buffers could keep the loop reading for many milliseconds. A connection
 * that reads past the budget stops reading until the next iteration. */
#define READ_BUDGET (512u * 1024)

enum conn_state { C_RESOLVE, C_CONNECT, C_HANDSHAKE, C_IDLE, C_BUSY, C_CLOSING };
enum req_state { R_QUEUED, R_ACTIVE, R_DONE };

struct conn {
  struct http_client *c;
  struct conn *prev, *next;
  enum conn_state state;
  uv_tcp_t tcp;
  int tcp_init;
  int gai_pending;              /* a resolve_job holds the connection */
  uv_connect_t creq;
  struct http_tls_session *tls;
  uint64_t deadline;           /* connect or idle deadline */
  struct http_client_req *req;
  llhttp_t parser;
  int abort_code;              /* set by a parser callback that failed */
  int no_reuse;
  size_t body_off;             /* request body bytes handed to the socket */
  int body_inflight;           /* a body slice is queued in libuv */
  int finalize_on_write;       /* the response is complete; the last slice's write is not */
  int reading;
  int refd;
  int send_waiting;            /* on the client's send-wait list */
  int read_waiting;            /* stopped reading until the next iteration */
  struct conn *swait_next;
  unsigned uses;
  char rbuf[READ_BUF_SIZE];
  char pbuf[READ_BUF_SIZE];    /* TLS plaintext */
};

struct http_client_req {
  struct http_client *c;
  struct http_client_req *prev, *next; /* queue links */
  struct http_client_request r; /* method/target/headers cleared: see head */
  char *head;                  /* request line and headers, built at send */
  size_t head_len;
  enum req_state state;
  struct conn *conn;
  uint64_t deadline;
  int status;
  /* Response headers: "name\0value\0..." in hbuf, offsets in hoff. */
  struct core_buf hbuf;
  size_t hoff[MAX_RESP_HEADERS * 2];
  size_t nh;
  int in_name;
  size_t header_bytes;
  struct core_buf body;
  struct core_buf held;
  int paused;
  int message_done;
  size_t resp_bytes;
  int reused;
  int stale_resent;
  int is_head;
};

struct http_client {
  uv_loop_t *loop;
  char *host;
  char *host_header;
  int port;
  struct http_tls *tls;
  unsigned max_conns;
  unsigned connect_timeout_ms;
  unsigned idle_timeout_ms;
  unsigned max_requests_per_conn;
  struct conn *conns;
  unsigned n_conns;            /* not closing */
  struct http_client_req *qhead, *qtail;
  size_t qlen;
  uv_timer_t tick;
  int tick_running;
  uv_idle_t send_idle;         /* runs while connections wait for send budget */
  size_t send_budget;          /* body bytes left for this loop iteration */
  size_t read_budget;          /* response bytes left for this loop iteration */
  unsigned n_read_waiting;
  struct conn *swait_head, *swait_tail;
  int closing;
  unsigned open_handles;
  void (*close_cb)(void *);
  void *close_arg;
  struct http_client_stats stats;
};

struct wreq {
  uv_write_t w;
  struct conn *conn;
  char *own;                   /* header block or TLS ciphertext, freed after */
  int slice_end;               /* the last write of a body slice */
};

static void dispatch(struct http_client *c);
static void conn_close(struct conn *conn, int err);
static void conn_finalize(struct conn *conn);
static void conn_read_start(struct conn *conn);
static void tick_ensure(struct http_client *c);

/* ---- requests ---- */

static void queue_push(struct http_client *c, struct http_client_req *req, int front)
{
  req->state = R_QUEUED;
  req->prev = req->next = NULL;
  if (c->qhead == NULL) {
    c->qhead = c->qtail = req;
  } else if (front) {
    req->next = c->qhead;
    c->qhead->prev = req;
    c->qhead = req;
  } else {
    req->prev = c->qtail;
    c->qtail->next = req;
    c->qtail = req;
  }
  c->qlen++;
}

static void queue_remove(struct http_client *c, struct http_client_req *req)
{
  if (req->prev)
    req->prev->next = req->next;
  else
    c->qhead = req->next;
  if (req->next)
    req->next->prev = req->prev;
  else
    c->qtail = req->prev;
  req->prev = req->next = NULL;
  c->qlen--;
}

static void req_free(struct http_client_req *req)
{
  core_free(req->head);
  core_buf_free(&req->hbuf);
  core_buf_free(&req->body);
  core_buf_free(&req->held);
  core_free(req);
}

/* Ends a request that is on no queue and no connection. */
static void finish(struct http_client_req *req, int status)
{
  req->state = R_DONE;
  req->r.on_done(req, status, req->r.arg);
  req_free(req);
}

static void req_reset_response(struct http_client_req *req)
{
  core_buf_reset(&req->hbuf);
  core_buf_reset(&req->body);
  core_buf_reset(&req->held);
  req->nh = 0;
  req->in_name = 0;
  req->header_bytes = 0;
  req->status = 0;
  req->message_done = 0;
  req->resp_bytes = 0;
}

/* ---- llhttp callbacks ---- */

static struct http_client_req *preq(llhttp_t *p)
{
  return ((struct conn *)p->data)->req;
}

static int hdr_append(llhttp_t *p, const char *at, size_t len)
{
  struct conn *conn = p->data;
  struct http_client_req *req = conn->req;
  size_t max = req->r.max_header_bytes ? req->r.max_header_bytes : DEFAULT_MAX_HEADER_BYTES;
  req->header_bytes += len;
  if (req->header_bytes > max || core_buf_append(&req->hbuf, at, len) < 0) {
    conn->abort_code = CORE_ETOOBIG;
    return -1;
  }
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
  struct conn *conn = p->data;
  struct http_client_req *req = conn->req;
  if (!req->in_name) {
    if (req->nh == MAX_RESP_HEADERS) {
      conn->abort_code = CORE_ETOOBIG;
      return -1;
    }
    req->hoff[2 * req->nh] = req->hbuf.len;
    req->hoff[2 * req->nh + 1] = (size_t)-1;
    req->nh++;
    req->in_name = 1;
  }
  return hdr_append(p, at, len);
}

static int on_header_field_complete(llhttp_t *p)
{
  struct http_client_req *req = preq(p);
  if (hdr_append(p, "", 1) < 0)
    return -1;
  req->hoff[2 * req->nh - 1] = req->hbuf.len;
  req->in_name = 0;
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
  return hdr_append(p, at, len);
}

static int on_header_value_complete(llhttp_t *p)
{
  return hdr_append(p, "", 1);
}

static int on_headers_complete(llhttp_t *p)
{
  struct conn *conn = p->data;
  struct http_client_req *req = conn->req;
  req->status = (int)llhttp_get_status_code(p);
  /* A buffered body of known length gets its memory once, instead of
   * doubling (and copying) its way up from 64 bytes. */
  if (req->r.on_body == NULL && !req->is_head && (p->flags & F_CONTENT_LENGTH) &&
      p->content_length > 0 && req->body.len == 0 &&
      core_buf_reserve(&req->body, (size_t)p->content_length) < 0) {
    conn->abort_code = CORE_ETOOBIG;
    return -1;
  }
  if (req->r.on_headers) {
    int rc = req->r.on_headers(req, req->r.arg);
    if (rc < 0) {
      conn->abort_code = rc;
      return -1;
    }
  }
  return req->is_head ? 1 : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
  struct conn *conn = p->data;
  struct http_client_req *req = conn->req;
  if (req->r.on_body == NULL) {
    if (core_buf_append(&req->body, at, len) < 0) {
      conn->abort_code = CORE_ETOOBIG;
      return -1;
    }
    return 0;
  }
  if (req->paused || req->held.len > 0) {
    if (core_buf_append(&req->held, at, len) < 0) {
      conn->abort_code = CORE_ETOOBIG;
      return -1;
    }
    return 0;
  }
  int rc = req->r.on_body(req, at, len, req->r.arg);
  if (rc < 0) {
    conn->abort_code = rc;
    return -1;
  }
  return 0;
}

static int on_message_complete(llhttp_t *p)
{
  (void)p;
  /* Stop here so completion runs outside the parser and bytes after the
   * message can be noticed (llhttp_get_error_pos). */
  return HPE_PAUSED;
}

static const llhttp_settings_t parser_settings = {
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- connections ---- */

static void conn_ref(struct conn *conn, int ref)
{
  if (!conn->tcp_init || conn->refd == ref)
    return;
  if (ref)
    uv_ref((uv_handle_t *)&conn->tcp);
  else
    uv_unref((uv_handle_t *)&conn->tcp);
  conn->refd = ref;
}

static void conn_list_remove(struct http_client *c, struct conn *conn)
{
  if (conn->prev)
    conn->prev->next = conn->next;
  else
    c->conns = conn->next;
  if (conn->next)
    conn->next->prev = conn->prev;
}

static void maybe_free_client(struct http_client *c)
{
  if (c->closing && c->open_handles == 0) {
    void (*cb)(void *) = c->close_cb;
    void *arg = c->close_arg;
    if (c->tls)
      http_tls_unref(c->tls);
    core_free(c->host);
    core_free(c->host_header);
    core_free(c);
    if (cb)
      cb(arg);
  }
}

static void conn_release(struct conn *conn)
{
  struct http_client *c = conn->c;
  conn_list_remove(c, conn);
  if (conn->tls)
    http_tls_session_free(conn->tls);
  core_free(conn);
  c->open_handles--;
  maybe_free_client(c);
}

static void on_conn_closed(uv_handle_t *h)
{
  struct conn *conn = h->data;
  conn->tcp_init = 0;
  if (!conn->gai_pending)
    conn_release(conn);
}

static int send_body_slice(struct conn *conn);
static int send_next_slice(struct conn *conn);
static void on_send_idle(uv_idle_t *h);
static void swait_remove(struct http_client *c, struct conn *conn);
static void rwait_remove(struct http_client *c, struct conn *conn);

static void on_write(uv_write_t *w, int status)
{
  struct wreq *wr = (struct wreq *)w;
  struct conn *conn = wr->conn;
  int slice_end = wr->slice_end;
  core_free(wr->own);
  core_free(wr);
  if (slice_end)
    conn->body_inflight = 0;
  if (slice_end && conn->finalize_on_write && conn->state == C_BUSY) {
    conn->finalize_on_write = 0;
    if (status < 0)
      conn->no_reuse = 1; /* the response is whole; only the connection is gone */
    conn_finalize(conn);
    return;
  }
  if (status < 0) {
    if (conn->state != C_CLOSING)
      conn_close(conn, status);
    return;
  }
  /* The request is still the one whose body this was: a finished request
   * never leaves a body half sent on an open connection (conn_finalize). */
  if (slice_end && conn->state == C_BUSY && conn->req &&
      conn->body_off < conn->req->r.body_len) {
    int rc = send_next_slice(conn);
    if (rc < 0)
      conn_close(conn, rc);
  }
}

/* Queues `n` buffers; `own` (may be NULL) is freed when the write is done. */
static int conn_write(struct conn *conn, uv_buf_t *bufs, unsigned n, char *own, int slice_end)
{
  struct wreq *wr = core_new(struct wreq);
  wr->conn = conn;
  wr->own = own;
  wr->slice_end = slice_end;
  int rc = uv_write(&wr->w, (uv_stream_t *)&conn->tcp, bufs, n, on_write);
  if (rc < 0) {
    core_free(own);
    core_free(wr);
  }
  return rc;
}

/* Writes what TLS has sealed (take_output hands over all of it at once);
 * with `slice_end`, that write ends a body slice, which always seals
 * something: a slice is never empty. */
static int tls_flush_ex(struct conn *conn, int slice_end)
{
  size_t len, pool_cap; /* the client sets no pool: always 0 */
  void *p = http_tls_take_output(conn->tls, &len, &pool_cap);
  if (p == NULL)
    return 0;
  uv_buf_t b = uv_buf_init(p, (unsigned)len);
  return conn_write(conn, &b, 1, p, slice_end);
}

static int tls_flush(struct conn *conn)
{
  return tls_flush_ex(conn, 0);
}

/* Hands the next slice of the request body to the socket (sealed first over
 * TLS, so encryption is sliced too). */
static int send_body_slice(struct conn *conn)
{
  const struct http_client_req *req = conn->req;
  const char *p = (const char *)req->r.body + conn->body_off;
  size_t n = req->r.body_len - conn->body_off;
  int rc;
  if (n > BODY_SLICE)
    n = BODY_SLICE;
  conn->body_off += n;
  conn->body_inflight = 1;
  if (conn->tls == NULL) {
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    return conn_write(conn, &b, 1, NULL, 1);
  }
  rc = http_tls_write(conn->tls, p, n);
  if (rc == 0)
    rc = tls_flush_ex(conn, 1);
  return rc;
}

/* The next body slice now if this iteration's budget allows, else after the
 * connections already waiting, in a later iteration (on_send_idle). */
static int spend_and_send(struct conn *conn)
{
  struct http_client *c = conn->c;
  size_t n = conn->req->r.body_len - conn->body_off;
  n = n > BODY_SLICE ? BODY_SLICE : n;
  c->send_budget = n >= c->send_budget ? 0 : c->send_budget - n;
  return send_body_slice(conn);
}

static int send_next_slice(struct conn *conn)
{
  struct http_client *c = conn->c;
  if (c->swait_head == NULL && c->send_budget > 0)
    return spend_and_send(conn);
  if (!conn->send_waiting) {
    conn->send_waiting = 1;
    conn->swait_next = NULL;
    if (c->swait_tail)
      c->swait_tail->swait_next = conn;
    else
      c->swait_head = conn;
    c->swait_tail = conn;
    uv_idle_start(&c->send_idle, on_send_idle);
  }
  return 0;
}

/* Once per loop iteration while connections wait: a fresh budget, spent on
 * the waiting connections in order. */
static void on_send_idle(uv_idle_t *h)
{
  struct http_client *c = h->data;
  c->send_budget = SEND_BUDGET;
  c->read_budget = READ_BUDGET;
  for (struct conn *k = c->conns; k && c->n_read_waiting > 0; k = k->next) {
    if (!k->read_waiting)
      continue;
    rwait_remove(c, k);
    /* A request paused meanwhile stays paused: its resume restarts reading. */
    if (!(k->state == C_BUSY && k->req && k->req->paused))
      conn_read_start(k);
  }
  while (c->swait_head && c->send_budget > 0) {
    struct conn *conn = c->swait_head;
    swait_remove(c, conn);
    if (conn->state != C_BUSY || conn->req == NULL || conn->body_inflight ||
        conn->body_off >= conn->req->r.body_len)
      continue;
    int rc = spend_and_send(conn);
    if (rc < 0)
      conn_close(conn, rc);
  }
  if (c->swait_head == NULL && c->n_read_waiting == 0)
    uv_idle_stop(&c->send_idle);
}

/* After a read: past this iteration's read budget, the connection stops
 * reading until on_send_idle starts it again in the next iteration. */
static void conn_spend_read(struct conn *conn, size_t n)
{
  struct http_client *c = conn->c;
  c->read_budget = n >= c->read_budget ? 0 : c->read_budget - n;
  if (c->read_budget > 0 || !conn->reading || conn->state != C_BUSY || c->closing)
    return;
  uv_read_stop((uv_stream_t *)&conn->tcp);
  conn->reading = 0;
  conn->read_waiting = 1;
  c->n_read_waiting++;
  uv_idle_start(&c->send_idle, on_send_idle);
}

/* Closes a connection. Its request, if any, ends with `err`, or is sent again
 * on another connection when a reused connection died before answering. */
static void swait_remove(struct http_client *c, struct conn *conn)
{
  if (!conn->send_waiting)
    return;
  struct conn **pp = &c->swait_head, *prev = NULL;
  while (*pp != conn) {
    prev = *pp;
    pp = &(*pp)->swait_next;
  }
  *pp = conn->swait_next;
  if (c->swait_tail == conn)
    c->swait_tail = prev;
  conn->swait_next = NULL;
  conn->send_waiting = 0;
  if (c->swait_head == NULL && c->n_read_waiting == 0)
    uv_idle_stop(&c->send_idle);
}

static void rwait_remove(struct http_client *c, struct conn *conn)
{
  if (!conn->read_waiting)
    return;
  conn->read_waiting = 0;
  c->n_read_waiting--;
  if (c->swait_head == NULL && c->n_read_waiting == 0)
    uv_idle_stop(&c->send_idle);
}

static void conn_close(struct conn *conn, int err)
{
  struct http_client *c = conn->c;
  if (conn->state == C_CLOSING)
    return;
  swait_remove(c, conn);
  rwait_remove(c, conn);
  int was_connecting = conn->state < C_IDLE;
  conn->state = C_CLOSING;
  c->n_conns--;
  if (conn->tcp_init) {
    conn_ref(conn, 1);
    uv_close((uv_handle_t *)&conn->tcp, on_conn_closed);
  } else if (!conn->gai_pending) {
    conn_release(conn);
    conn = NULL;
  }
  (void)conn;

  struct http_client_req *req = NULL;
  if (conn && conn->req) {
    req = conn->req;
    conn->req = NULL;
    req->conn = NULL;
  }
  if (req) {
    int stale = req->reused && req->resp_bytes == 0 && !req->stale_resent && !c->closing &&
                (err == UV_EOF || err == UV_ECONNRESET || err == UV_EPIPE);
    if (stale) {
      req->stale_resent = 1;
      c->stats.stale_resends++;
      req_reset_response(req);
      queue_push(c, req, 1);
    } else {
      finish(req, err);
    }
  } else if (was_connecting && err != CORE_EABORTED && c->qhead && !c->closing) {
    /* The attempt that was opened for the queue failed: the oldest waiting
     * request learns why, instead of waiting for its own timeout. */
    struct http_client_req *head = c->qhead;
    queue_remove(c, head);
    finish(head, err);
  }
  if (!c->closing)
    dispatch(c);
}

static void conn_ready(struct conn *conn)
{
  conn->state = C_IDLE;
  conn->deadline = uv_now(conn->c->loop) + conn->c->idle_timeout_ms;
  conn_ref(conn, 0);
  dispatch(conn->c);
}

/* Feeds plaintext to the parser. Returns 1 if the response completed (the
 * caller must not use the parser any more), 0 to go on, <0 after closing. */
static int conn_parse(struct conn *conn, const char *data, size_t len)
{
  struct http_client_req *req = conn->req;
  if (req == NULL || req->message_done) {
    /* Bytes nobody asked for. */
    conn_close(conn, CORE_EPROTO);
    return -1;
  }
  req->resp_bytes += len;
  llhttp_errno_t e = llhttp_execute(&conn->parser, data, len);
  if (e == HPE_OK)
    return 0;
  if (e == HPE_PAUSED) {
    const char *pos = llhttp_get_error_pos(&conn->parser);
    if (pos && pos < data + len)
      conn->no_reuse = 1;
    req->message_done = 1;
    if (req->held.len == 0 && !req->paused)
      conn_finalize(conn);
    return 1;
  }
  int err = conn->abort_code ? conn->abort_code : CORE_EPROTO;
  conn_close(conn, err);
  return -1;
}

/* A response is complete and delivered: the connection goes back to the
 * pool (or closes) and the request ends. */
static void conn_finalize(struct conn *conn)
{
  struct http_client *c = conn->c;
  struct http_client_req *req = conn->req;
  if (conn->body_inflight && conn->body_off == req->r.body_len && !conn->no_reuse) {
    /* The whole body is with libuv and the response came before the last
     * write's callback (both in one loop iteration, common under load):
     * finish from that callback and keep the connection. Closing here made
     * every such request cost a new connection and TLS handshake. */
    conn->finalize_on_write = 1;
    return;
  }
  /* A response that came before the whole body went out (an early error):
   * the rest must not be sent, and libuv must let go of the caller's body
   * before the request ends, so the connection closes. */
  int body_pending = conn->body_inflight || conn->body_off < req->r.body_len;
  int keep = llhttp_should_keep_alive(&conn->parser) && !conn->no_reuse && !c->closing &&
             !body_pending &&
             (c->max_requests_per_conn == 0 || conn->uses < c->max_requests_per_conn);
  conn->req = NULL;
  req->conn = NULL;
  if (keep) {
    conn->state = C_IDLE;
    conn->deadline = uv_now(c->loop) + c->idle_timeout_ms;
    conn_ref(conn, 0);
    conn_read_start(conn);
  } else {
    conn_close(conn, 0);
  }
  finish(req, 0);
  if (!c->closing)
    dispatch(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
  struct conn *conn = h->data;
  (void)hint;
  buf->base = conn->rbuf;
  buf->len = sizeof(conn->rbuf);
}

static void conn_eof(struct conn *conn, int err)
{
  if (conn->state == C_BUSY && conn->req && !conn->req->message_done && err == UV_EOF &&
      conn->req->resp_bytes > 0) {
    /* Responses delimited by the end of the connection end here. */
    llhttp_errno_t fe = llhttp_message_needs_eof(&conn->parser) ? llhttp_finish(&conn->parser)
                                                                 : HPE_INVALID_EOF_STATE;
    if (fe == HPE_OK || fe == HPE_PAUSED) {
      conn->no_reuse = 1;
      conn->req->message_done = 1;
      if (conn->req->held.len == 0 && !conn->req->paused)
        conn_finalize(conn);
      return;
    }
    err = CORE_EPROTO; /* truncated */
  }
  if (conn->state < C_IDLE)
    conn->c->stats.conns_failed++;
  conn_close(conn, err);
}

static void conn_stop_if_paused(struct conn *conn)
{
  if (conn->state == C_BUSY && conn->req && conn->req->paused && conn->reading) {
    uv_read_stop((uv_stream_t *)&conn->tcp);
    conn->reading = 0;
  }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
  struct conn *conn = s->data;
  (void)buf;
  if (nread == 0 || conn->state == C_CLOSING)
    return;
  if (nread < 0) {
    conn_eof(conn, (int)nread);
    return;
  }
  if (conn->state == C_IDLE && conn->tls == NULL) {
    conn_close(conn, CORE_EPROTO); /* unsolicited bytes */
    return;
  }
  if (conn->tls == NULL) {
    if (conn_parse(conn, conn->rbuf, (size_t)nread) == 0) {
      conn_stop_if_paused(conn);
      conn_spend_read(conn, (size_t)nread);
    }
    return;
  }

  int rc = http_tls_feed(conn->tls, conn->rbuf, (size_t)nread);
  if (rc < 0) {
    conn_close(conn, rc);
    return;
  }
  if (conn->state == C_HANDSHAKE) {
    rc = http_tls_handshake(conn->tls);
    int frc = tls_flush(conn);
    if (rc < 0 || frc < 0) {
      conn->c->stats.conns_failed++;
      conn_close(conn, rc < 0 ? rc : frc);
      return;
    }
    if (rc == 1)
      conn_ready(conn);
    return;
  }
  for (;;) {
    ssize_t n = http_tls_read(conn->tls, conn->pbuf, sizeof(conn->pbuf));
    if (n == 0)
      break;
    if (n < 0) {
      conn_eof(conn, (int)n);
      return;
    }
    if (conn->state == C_IDLE) {
      conn_close(conn, CORE_EPROTO);
      return;
    }
    int prc = conn_parse(conn, conn->pbuf, (size_t)n);
    if (prc != 0 || conn->state != C_BUSY) {
      conn_stop_if_paused(conn);
      return;
    }
  }
  if (tls_flush(conn) < 0) {
    conn_close(conn, CORE_ETLS);
    return;
  }
  conn_stop_if_paused(conn);
  conn_spend_read(conn, (size_t)nread);
}

static void conn_read_start(struct conn *conn)
{
  if (conn->reading || conn->state == C_CLOSING)
    return;
  if (uv_read_start((uv_stream_t *)&conn->tcp, on_alloc, on_read) == 0)
    conn->reading = 1;
}

static void on_connect(uv_connect_t *cr, int status)
{
  struct conn *conn = cr->data;
  if (conn->state == C_CLOSING)
    return;
  if (status < 0) {
    conn->c->stats.conns_failed++;
    conn_close(conn, status);
    return;
  }
  uv_tcp_nodelay(&conn->tcp, 1);
  uv_tcp_keepalive(&conn->tcp, 1, 120);
  conn_read_start(conn);
  if (conn->c->tls == NULL) {
    conn_ready(conn);
    return;
  }
  conn->state = C_HANDSHAKE;
  conn->tls = http_tls_session_new(conn->c->tls, conn->c->host);
  int rc = conn->tls ? http_tls_handshake(conn->tls) : CORE_ETLS;
  if (rc >= 0)
    rc = tls_flush(conn);
  if (rc < 0) {
    conn->c->stats.conns_failed++;
    conn_close(conn, rc);
  }
}

/* Name resolution runs as a core_job, not through uv_getaddrinfo: in cairnd
 * that is Cairn's pool, which reports back through an eventfd. libuv's pool
 * reports through a uv_async_t, and in libuv 1.44 the loop thread spins while
 * the reporting worker is preempted inside uv_async_send (core_wake.h). */
struct resolve_job {
  struct core_job job;
  struct conn *conn;
  char *host;                   /* owned */
  char port[16];
  struct addrinfo *res;         /* out, owned until on_resolved */
  int status;                   /* out: 0 or a UV_EAI_* error */
};

static int gai_status(int rc)
{
  switch (rc) {
  case 0: return 0;
  case EAI_AGAIN: return UV_EAI_AGAIN;
  case EAI_MEMORY: return UV_EAI_MEMORY;
  case EAI_NONAME: return UV_EAI_NONAME;
  case EAI_SERVICE: return UV_EAI_SERVICE;
  case EAI_FAMILY: return UV_EAI_FAMILY;
  default: return UV_EAI_FAIL;
  }
}

static void resolve_run(struct core_job *j)
{
  struct resolve_job *r = (struct resolve_job *)j;
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  r->status = gai_status(getaddrinfo(r->host, r->port, &hints, &r->res));
}

static void on_resolved(struct core_job *j, int job_status)
{
  struct resolve_job *r = (struct resolve_job *)j;
  struct conn *conn = r->conn;
  struct addrinfo *res = r->status == 0 && job_status == 0 ? r->res : NULL;
  int status = job_status < 0 ? job_status : r->status;
  if (res == NULL && r->res != NULL)
    freeaddrinfo(r->res);
  core_free(r->host);
  core_free(r);
  conn->gai_pending = 0;
  if (conn->state == C_CLOSING) {
    if (res)
      freeaddrinfo(res);
    if (!conn->tcp_init)
      conn_release(conn);
    return;
  }
  if (status < 0 || res == NULL) {
    if (res)
      freeaddrinfo(res);
    conn->c->stats.conns_failed++;
    conn_close(conn, status < 0 ? status : UV_EAI_NONAME);
    return;
  }
  int rc = uv_tcp_init(conn->c->loop, &conn->tcp);
  if (rc == 0) {
    conn->tcp_init = 1;
    conn->refd = 1;
    conn->tcp.data = conn;
    conn->creq.data = conn;
    conn->state = C_CONNECT;
    rc = uv_tcp_connect(&conn->creq, &conn->tcp, res->ai_addr, on_connect);
  }
  freeaddrinfo(res);
  if (rc < 0) {
    conn->c->stats.conns_failed++;
    conn_close(conn, rc);
  }
}

/* Returns 0 when an attempt started or failed at once (a request was then
 * failed), or UV_ENOMEM when nothing happened. */
static int conn_open(struct http_client *c)
{
  struct conn *conn = core_try_malloc(sizeof(*conn));
  if (conn == NULL)
    return UV_ENOMEM;
  memset(conn, 0, offsetof(struct conn, rbuf));
  conn->c = c;
  conn->state = C_RESOLVE;
  conn->deadline = uv_now(c->loop) + c->connect_timeout_ms;
  conn->next = c->conns;
  if (c->conns)
    c->conns->prev = conn;
  c->conns = conn;
  c->n_conns++;
  c->open_handles++;
  c->stats.conns_opened++;
  struct resolve_job *r = core_try_malloc(sizeof(*r));
  char *host = core_strdup(c->host);
  int rc = r ? 0 : UV_ENOMEM;
  if (r) {
    memset(r, 0, sizeof(*r));
    r->conn = conn;
    r->host = host;
    snprintf(r->port, sizeof(r->port), "%d", c->port);
    conn->gai_pending = 1;
    if ((rc = core_job_submit(c->loop, &r->job, resolve_run, on_resolved)) < 0) {
      core_free(r);
      r = NULL;
    }
  }
  if (r == NULL)
    core_free(host);
  if (rc < 0) {
    conn->gai_pending = 0;
    c->stats.conns_failed++;
    conn_close(conn, rc);
  }
  tick_ensure(c);
  return 0;
}

/* ---- sending ---- */

static int build_head(struct http_client *c, struct http_client_req *req, struct core_buf *b)
{
  const struct http_client_request *r = &req->r;
  int has_host = 0, has_len = 0;
  int rc = core_buf_printf(b, "%s %s HTTP/1.1\r\n", r->method, r->target);
  for (size_t i = 0; i < r->n_headers && rc == 0; i++) {
    if (strcasecmp(r->headers[i].name, "host") == 0)
      has_host = 1;
    if (strcasecmp(r->headers[i].name, "content-length") == 0)
      has_len = 1;
    rc = core_buf_printf(b, "%s: %s\r\n", r->headers[i].name, r->headers[i].value);
  }
  if (rc == 0 && !has_host)
    rc = core_buf_printf(b, "Host: %s\r\n", c->host_header);
  if (rc == 0 && !has_len &&
      (r->body_len > 0 || strcmp(r->method, "PUT") == 0 || strcmp(r->method, "POST") == 0))
    rc = core_buf_printf(b, "Content-Length: %zu\r\n", r->body_len);
  if (rc == 0)
    rc = core_buf_append_str(b, "\r\n");
  return rc;
}

static void conn_start(struct conn *conn, struct http_client_req *req)
{
  struct http_client *c = conn->c;
  conn->state = C_BUSY;
  conn->req = req;
  conn->abort_code = 0;
  conn->uses++;
  req->conn = conn;
  req->state = R_ACTIVE;
  req->reused = conn->uses > 1;
  if (req->reused)
    c->stats.conns_reused++;
  llhttp_init(&conn->parser, HTTP_RESPONSE, &parser_settings);
  conn->parser.data = conn;
  conn_ref(conn, 1);

  int rc;
  size_t hlen = req->head_len;
  char *h = core_malloc(hlen);
  memcpy(h, req->head, hlen);
  conn->body_off = 0;
  conn->body_inflight = 0;
  conn->finalize_on_write = 0;
  if (conn->tls == NULL && req->r.body_len > 0 && req->r.body_len <= BODY_SLICE) {
    /* A small body goes out with the head in one writev. */
    uv_buf_t b[2] = {uv_buf_init(h, (unsigned)hlen),
                     uv_buf_init((char *)req->r.body, (unsigned)req->r.body_len)};
    conn->body_off = req->r.body_len;
    conn->body_inflight = 1;
    rc = conn_write(conn, b, 2, h, 1);
  } else if (conn->tls == NULL) {
    uv_buf_t b = uv_buf_init(h, (unsigned)hlen);
    rc = conn_write(conn, &b, 1, h, 0);
  } else {
    rc = http_tls_write(conn->tls, h, hlen);
    core_free(h);
    if (rc == 0)
      rc = tls_flush(conn);
  }
  if (rc == 0 && conn->body_off < req->r.body_len)
    rc = send_next_slice(conn);
  if (rc < 0) {
    conn_close(conn, rc);
    return;
  }
  if (!req->paused)
    conn_read_start(conn);
}

static void dispatch(struct http_client *c)
{
  while (c->qhead && !c->closing) {
    struct conn *idle = NULL;
    unsigned connecting = 0;
    for (struct conn *k = c->conns; k; k = k->next) {
      if (k->state == C_IDLE && idle == NULL)
        idle = k;
      else if (k->state < C_IDLE)
        connecting++;
    }
    if (idle) {
      struct http_client_req *req = c->qhead;
      queue_remove(c, req);
      conn_start(idle, req);
      continue;
    }
    if (connecting < c->qlen && c->n_conns < c->max_conns) {
      if (conn_open(c) < 0)
        break;
      continue;
    }
    break;
  }
  tick_ensure(c);
}

/* ---- timeouts ---- */

static void on_tick(uv_timer_t *t)
{
  struct http_client *c = t->data;
  uint64_t now = uv_now(c->loop);
again:
  if (c->closing)
    return;
  for (struct http_client_req *req = c->qhead; req; req = req->next) {
    if (now >= req->deadline) {
      queue_remove(c, req);
      c->stats.timeouts++;
      finish(req, CORE_ETIMEOUT);
      goto again;
    }
  }
  for (struct conn *k = c->conns; k; k = k->next) {
    if (k->state == C_BUSY && k->req && now >= k->req->deadline) {
      c->stats.timeouts++;
      k->req->stale_resent = 1; /* a timeout is final */
      conn_close(k, CORE_ETIMEOUT);
      goto again;
    }
    if (k->state < C_IDLE && now >= k->deadline) {
      c->stats.timeouts++;
      c->stats.conns_failed++;
      conn_close(k, CORE_ETIMEOUT);
      goto again;
    }
    if (k->state == C_IDLE && now >= k->deadline) {
      conn_close(k, 0);
      goto again;
    }
  }
  if (c->qhead == NULL && c->conns == NULL) {
    uv_timer_stop(&c->tick);
    c->tick_running = 0;
  }
}

static void tick_ensure(struct http_client *c)
{
  if (c->tick_running || c->closing)
    return;
  if (c->qhead == NULL && c->conns == NULL)
    return;
  uv_timer_start(&c->tick, on_tick, TICK_MS, TICK_MS);
  c->tick_running = 1;
}

/* ---- public ---- */

int http_client_new(uv_loop_t *loop, const struct http_client_config *cfg,
                    struct http_client **out)
{
  if (cfg->host == NULL || cfg->host[0] == '\0' || cfg->port <= 0 || cfg->port > 65535)
    return CORE_EINVAL;
  for (const char *p = cfg->host; *p; p++)
    if ((unsigned char)*p <= ' ' || *p == '/' || *p == '[' || *p == ']' || *p == 0x7f)
      return CORE_EINVAL;
  struct http_client *c = core_new(struct http_client);
  c->loop = loop;
  c->host = core_strdup(cfg->host);
  int v6 = strchr(cfg->host, ':') != NULL;
  int dflt = cfg->port == (cfg->tls ? 443 : 80);
  if (dflt)
    c->host_header = v6 ? core_asprintf("[%s]", cfg->host) : core_strdup(cfg->host);
  else
    c->host_header = v6 ? core_asprintf("[%s]:%d", cfg->host, cfg->port)
                        : core_asprintf("%s:%d", cfg->host, cfg->port);
  c->port = cfg->port;
  c->tls = cfg->tls;
  if (c->tls)
    http_tls_ref(c->tls);
  c->max_conns = cfg->max_conns ? cfg->max_conns : 8;
  c->connect_timeout_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 10000;
  c->idle_timeout_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : 30000;
  c->max_requests_per_conn = cfg->max_requests_per_conn;
  uv_timer_init(loop, &c->tick);
  c->tick.data = c;
  uv_unref((uv_handle_t *)&c->tick);
  uv_idle_init(loop, &c->send_idle);
  c->send_idle.data = c;
  c->send_budget = SEND_BUDGET;
  c->read_budget = READ_BUDGET;
  c->open_handles = 2;
  *out = c;
  return 0;
}

/* The tick timer's and the send idle handle's close callback. */
static void on_tick_closed(uv_handle_t *h)
{
  struct http_client *c = h->data;
  c->open_handles--;
  maybe_free_client(c);
}

void http_client_free(struct http_client *c, void (*cb)(void *arg), void *arg)
{
  if (c->closing)
    return;
  c->closing = 1;
  c->close_cb = cb;
  c->close_arg = arg;
  /* Keep the client alive through the callbacks below. */
  c->open_handles++;
  while (c->qhead) {
    struct http_client_req *req = c->qhead;
    queue_remove(c, req);
    finish(req, CORE_EABORTED);
  }
  struct conn *k = c->conns;
  while (k) {
    struct conn *next = k->next;
    if (k->state != C_CLOSING)
      conn_close(k, CORE_EABORTED);
    k = next;
  }
  uv_timer_stop(&c->tick);
  uv_close((uv_handle_t *)&c->tick, on_tick_closed);
  uv_idle_stop(&c->send_idle);
  uv_close((uv_handle_t *)&c->send_idle, on_tick_closed);
  c->open_handles--;
  maybe_free_client(c);
}

static int valid_token(const char *s)
{
  if (s == NULL || *s == '\0')
    return 0;
  for (; *s; s++)
    if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", *s))
      return 0;
  return 1;
}

static int valid_value(const char *s)
{
  for (; s && *s; s++)
    if (*s == '\r' || *s == '\n')
      return 0;
  return s != NULL;
}

int http_client_send(struct http_client *c, const struct http_client_request *r,
                     struct http_client_req **out)
{
  if (c->closing)
    return CORE_EABORTED;
  if (!valid_token(r->method) || r->target == NULL || r->target[0] != '/' || r->on_done == NULL ||
      (r->body_len > 0 && r->body == NULL))
    return CORE_EINVAL;
  for (const char *p = r->target; *p; p++)
    if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
      return CORE_EINVAL;
  for (size_t i = 0; i < r->n_headers; i++)
    if (!valid_token(r->headers[i].name) || !valid_value(r->headers[i].value))
      return CORE_EINVAL;
  struct http_client_req *req = core_new(struct http_client_req);
  req->c = c;
  req->r = *r;
  struct core_buf head;
  core_buf_init(&head, 1024 * 1024);
  int rc = build_head(c, req, &head);
  if (rc < 0) {
    core_buf_free(&head);
    core_free(req);
    return rc == CORE_ETOOBIG ? CORE_EINVAL : rc;
  }
  req->head = core_buf_steal(&head, &req->head_len);
  req->r.method = NULL; /* copied into head; the caller's strings may go now */
  req->r.target = NULL;
  req->r.headers = NULL;
  req->r.n_headers = 0;
  req->is_head = strcmp(r->method, "HEAD") == 0;
  req->deadline = uv_now(c->loop) + (r->timeout_ms ? r->timeout_ms : DEFAULT_TIMEOUT_MS);
  core_buf_init(&req->hbuf, (r->max_header_bytes ? r->max_header_bytes : DEFAULT_MAX_HEADER_BYTES) +
                                2 * MAX_RESP_HEADERS);
  core_buf_init(&req->body, r->max_body ? r->max_body : DEFAULT_MAX_BODY);
  core_buf_init(&req->held, MAX_HELD);
  c->stats.requests++;
  if (out)
    *out = req;
  queue_push(c, req, 0);
  dispatch(c);
  return 0;
}

void http_client_req_cancel(struct http_client_req *req)
{
  struct http_client *c = req->c;
  if (req->state == R_QUEUED) {
    queue_remove(c, req);
    finish(req, CORE_EABORTED);
  } else if (req->state == R_ACTIVE && req->conn) {
    req->stale_resent = 1;
    conn_close(req->conn, CORE_EABORTED);
  }
}

void http_client_req_pause(struct http_client_req *req)
{
  req->paused = 1;
  if (req->conn && req->conn->reading) {
    uv_read_stop((uv_stream_t *)&req->conn->tcp);
    req->conn->reading = 0;
  }
}

void http_client_req_resume(struct http_client_req *req)
{
  if (!req->paused)
    return;
  req->paused = 0;
  struct conn *conn = req->conn;
  while (req->held.len > 0 && !req->paused && req->state == R_ACTIVE) {
    size_t len;
    char *p = core_buf_steal(&req->held, &len);
    req->held.max = MAX_HELD;
    int rc = req->r.on_body(req, p, len, req->r.arg);
    core_free(p);
    if (rc < 0) {
      if (req->conn) {
        req->stale_resent = 1;
        conn_close(req->conn, rc);
      }
      return;
    }
  }
  if (req->paused || conn == NULL || req->conn != conn)
    return;
  if (req->message_done)
    conn_finalize(conn);
  else
    conn_read_start(conn);
}

int http_client_req_status(const struct http_client_req *req)
{
  return req->status;
}

size_t http_client_req_header_count(const struct http_client_req *req)
{
  return req->nh;
}

int http_client_req_header_at(const struct http_client_req *req, size_t i, const char **name,
                              const char **value)
{
  if (i >= req->nh || req->hoff[2 * i + 1] == (size_t)-1)
    return CORE_EINVAL;
  *name = req->hbuf.base + req->hoff[2 * i];
  *value = req->hbuf.base + req->hoff[2 * i + 1];
  return 0;
}

const char *http_client_req_header(const struct http_client_req *req, const char *name)
{
  for (size_t i = 0; i < req->nh; i++) {
    const char *n, *v;
    if (http_client_req_header_at(req, i, &n, &v) == 0 && strcasecmp(n, name) == 0)
      return v;
  }
  return NULL;
}

struct core_slice http_client_req_body(const struct http_client_req *req)
{
  struct core_slice s = {req->body.base ? req->body.base : "", req->body.len};
  return s;
}

int http_client_req_reused(const struct http_client_req *req)
{
  return req->reused;
}

void http_client_get_stats(const struct http_client *c, struct http_client_stats *out)
{
  *out = c->stats;
}

unsigned http_client_conns(const struct http_client *c, unsigned *idle)
{
  unsigned n = 0, i = 0;
  for (struct conn *k = c->conns; k; k = k->next) {
    if (k->state == C_CLOSING)
      continue;
    n++;
    if (k->state == C_IDLE)
      i++;
  }
  if (idle)
    *idle = i;
  return n;
}
