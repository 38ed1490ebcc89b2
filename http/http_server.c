/* http_server.c: listeners, connections, parsing, writing, timeouts.
 *
 * DESIGN. One request at a time per connection: when llhttp completes a
 * message, the callback pauses the parser, the unparsed rest of the input is
 * kept aside, reading stops, and the request goes to its handler. Once the
 * response is written the parser resumes on the kept input. This gives
 * ordered pipelining and back-pressure for free: a client cannot queue work
 * faster than it is answered.
 *
 * Reads land in one server-wide buffer (the loop reads one socket at a time),
 * so an idle connection costs no read buffer; only a request's own header and
 * body buffers are per connection, and both are bounded.
 *
 * TLS is a transport: ciphertext goes into the session, plaintext comes out
 * and takes the same path as plain TCP. Nothing else here knows about TLS.
 *
 * Timers: one per connection, re-armed for the phase it is in: idle between
 * requests, header deadline from the first byte of a request (a slowloris
 * client cannot stretch it by trickling bytes), and a gap limit while the
 * body arrives. No timer runs while a handler works.
 */
#include "http/http_internal.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

struct write_req {
  uv_write_t w;
  struct http_conn *conn;
  void *bufs[2];  /* owned, freed when the write completes */
  size_t cap1;    /* bufs[1] goes back to the body pool with this capacity; 0: freed */
  int last;       /* the final piece of a response */
};

void http__body_free(struct http_server *s, void *body, size_t pool_cap)
{
  if (body != NULL && pool_cap > 0)
    http_bodypool_put(&s->bodies, body, pool_cap);
  else
    core_free(body);
}

/* Responses up to this size go out as one TLS record. */
#define HTTP_TLS_COALESCE 4096
#define HTTP_POOL_TRIM_MS 10000

static char read_buf[HTTP_READ_BUF];   /* see DESIGN: one buffer for the loop */
static char plain_buf[HTTP_READ_BUF];  /* decrypted bytes, likewise */

static void conn_process(struct http_conn *c, const char *data, size_t len);
static void conn_drain_tls(struct http_conn *c);
static void conn_start_reading(struct http_conn *c);
static int admit_body(struct http_conn *c);

static struct http_conn *parser_conn(llhttp_t *p)
{
  return (struct http_conn *)((char *)p - offsetof(struct http_conn, parser));
}

/* ---- Timers ---- */

static void on_timeout(uv_timer_t *t)
{
  struct http_conn *c = (struct http_conn *)((char *)t - offsetof(struct http_conn, timer));
  core_debug("http: connection timed out");
  http__conn_close(c);
}

static void arm_timer(struct http_conn *c, uint64_t ms)
{
  if (!(c->flags & HTTP_CONN_CLOSING))
    uv_timer_start(&c->timer, on_timeout, ms, 0);
}

/* ---- Closing ---- */

static void server_destroy(struct http_server *s);

static void on_handle_closed(uv_handle_t *h)
{
  struct http_conn *c = h->data;
  if (--c->handles > 0)
    return;
  struct http_server *s = c->server;
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  s->nconns--;
  if (c->tls)
    http_tls_session_free(c->tls);
  core_free(c->pending);
  core_free(c);
  if (s->shutting_down && s->nconns == 0 && s->shutdown_done) {
    uv_timer_stop(&s->grace);
    void (*done)(void *) = s->shutdown_done;
    s->shutdown_done = NULL;
    done(s->shutdown_ctx);
  }
  if (s->freed && s->nconns == 0 && s->bodies_out == 0)
    server_destroy(s);
}

/* The last body taken out of a request came back (http_body_release). */
void http__server_body_back(struct http_server *s, size_t charged)
{
  s->bodies_out--;
  s->bodies_out_bytes -= charged;
  if (!s->freed) {
    if (charged)
      http__budget_release(s, charged);
    return;
  }
  if (s->nconns == 0 && s->bodies_out == 0)
    server_destroy(s);
}

void http__conn_close(struct http_conn *c)
{
  if (c->flags & HTTP_CONN_CLOSING)
    return;
  c->flags |= HTTP_CONN_CLOSING;
  if (c->flags & HTTP_CONN_DEFERRED) {
    struct http_server *s = c->server;
    for (struct http_conn **pp = &s->defer_head; *pp; pp = &(*pp)->defer_next) {
      if (*pp == c) {
        *pp = c->defer_next;
        break;
      }
    }
    c->flags &= ~HTTP_CONN_DEFERRED;
  }
  if (c->flags & HTTP_CONN_BUDGET) {
    struct http_server *s = c->server;
    for (struct http_conn **pp = &s->budget_head; *pp; pp = &(*pp)->budget_next) {
      if (*pp == c) {
        *pp = c->budget_next;
        if (*pp == NULL)
          s->budget_tail = pp;
        break;
      }
    }
    c->flags &= ~HTTP_CONN_BUDGET;
  }
  struct http_request *req = c->req;
  c->req = NULL;
  if (req) {
    if (req->state == HTTP_REQ_HANDLER) {
      req->conn = NULL; /* the handler frees it when it responds */
    } else if (req->state == HTTP_REQ_SENDING && req->pull && req->stream_left > 0) {
      req->conn = NULL;
      /* An idle producer learns the client is gone from one last pull. */
      if (!req->stream_pulling) {
        req->stream_pulling = 1;
        req->pull(req, req->pull_ctx);
      }
    } else {
      http__req_free(req);
    }
  }
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
  uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

/* ---- Writing ---- */

static void on_write(uv_write_t *w, int status)
{
  struct write_req *wr = (struct write_req *)w;
  struct http_conn *c = wr->conn;
  core_free(wr->bufs[0]);
  http__body_free(c->server, wr->bufs[1], wr->cap1);
  int last = wr->last;
  core_free(wr);
  c->writes--;
  if (c->flags & HTTP_CONN_CLOSING)
    return;
  if (status < 0) {
    core_debug("http: write failed: %s", uv_strerror(status));
    http__conn_close(c);
    return;
  }
  struct http_request *req = c->req;
  if (last) {
    http__conn_response_done(c);
  } else if (req && req->pull && !req->stream_pulling && req->stream_left > 0) {
    req->stream_pulling = 1;
    req->pull(req, req->pull_ctx);
  }
}

static void write_bufs(struct http_conn *c, uv_buf_t *bufs, unsigned n, void *own0,
                       void *own1, size_t cap1, int last)
{
  struct write_req *wr = core_new(struct write_req);
  wr->conn = c;
  wr->bufs[0] = own0;
  wr->bufs[1] = own1;
  wr->cap1 = cap1;
  wr->last = last;
  c->writes++;
  if (c->server->stats) {
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
      total += bufs[i].len;
    core_counter_add(&c->server->stats->tx_bytes, total);
  }
  int rc = uv_write(&wr->w, (uv_stream_t *)&c->tcp, bufs, n, on_write);
  if (rc < 0) {
    /* The callback will not run: undo and drop the connection. */
    c->writes--;
    core_free(own0);
    http__body_free(c->server, own1, cap1);
    core_free(wr);
    http__conn_close(c);
  }
}

/* Sends whatever ciphertext the TLS session has queued. */
static void flush_tls(struct http_conn *c, int last)
{
  size_t len, pool_cap;
  void *out = http_tls_take_output(c->tls, &len, &pool_cap);
  if (out == NULL) {
    if (last) {
      /* Nothing left to write, yet the response is complete: finish via a
       * zero-length write so completion still runs from a callback. */
      uv_buf_t b = uv_buf_init(NULL, 0);
      write_bufs(c, &b, 1, NULL, NULL, 0, last);
    }
    return;
  }
  uv_buf_t b = uv_buf_init(out, (unsigned)len);
  write_bufs(c, &b, 1, NULL, out, pool_cap, last); /* pooled or not */
}

void http__conn_send(struct http_conn *c, void *head, size_t head_len, void *body,
                     size_t body_len, size_t body_pool_cap, int last)
{
  if (c->flags & HTTP_CONN_CLOSING) {
    core_free(head);
    http__body_free(c->server, body, body_pool_cap);
    return;
  }
  if (c->tls) {
    int rc = 0;
    if (head_len && body_len && head_len + body_len <= HTTP_TLS_COALESCE) {
      /* One record instead of two for small responses: less framing, one
       * MAC, one packet. */
      char joined[HTTP_TLS_COALESCE];
      memcpy(joined, head, head_len);
      memcpy(joined + head_len, body, body_len);
      rc = http_tls_write(c->tls, joined, head_len + body_len);
    } else {
      if (head_len)
        rc = http_tls_write(c->tls, head, head_len);
      if (rc == 0 && body_len)
        rc = http_tls_write(c->tls, body, body_len);
    }
    core_free(head);
    http__body_free(c->server, body, body_pool_cap);
    if (rc < 0) {
      http__conn_close(c);
      return;
    }
    flush_tls(c, last);
    return;
  }
  uv_buf_t bufs[2];
  unsigned n = 0;
  if (head_len)
    bufs[n++] = uv_buf_init(head, (unsigned)head_len);
  if (body_len)
    bufs[n++] = uv_buf_init(body, (unsigned)body_len);
  if (n == 0)
    bufs[n++] = uv_buf_init(NULL, 0);
  write_bufs(c, bufs, n, head_len ? head : NULL, body, body_pool_cap, last);
  if (!head_len)
    core_free(head);
}

/* After a pause: parse what was kept aside, then what TLS still holds, then
 * read the socket again, stopping whenever the parser pauses anew. */
static void conn_continue(struct http_conn *c)
{
  if (c->pending) {
    char *p = c->pending;
    size_t n = c->pending_len;
    c->pending = NULL;
    c->pending_len = 0;
    conn_process(c, p, n);
    core_free(p);
  }
  if (c->tls && !(c->flags & (HTTP_CONN_PAUSED | HTTP_CONN_CLOSING)))
    conn_drain_tls(c);
  if (!(c->flags & (HTTP_CONN_PAUSED | HTTP_CONN_CLOSING)))
    conn_start_reading(c);
}

/* Resumes connections waiting for body budget, oldest first, while it fits. */
/* Every HTTP_POOL_TRIM_MS: body buffers nobody took since the last tick go
 * back to the system, so an idle server shrinks to its base size. */
static void on_pool_trim(uv_timer_t *t)
{
  struct http_server *s = t->data;
  http_bodypool_trim(&s->bodies);
}

static void on_budget_wake(uv_timer_t *t)
{
  struct http_server *s = t->data;
  while (s->budget_head) {
    struct http_conn *c = s->budget_head;
    if (!(c->flags & HTTP_CONN_CLOSING)) {
      size_t need = c->req ? (size_t)c->parser.content_length : 0;
      if (s->body_bytes > 0 && s->body_bytes + need > s->limits.body_budget)
        return;
    }
    s->budget_head = c->budget_next;
    if (s->budget_head == NULL)
      s->budget_tail = &s->budget_head;
    if (c->flags & HTTP_CONN_CLOSING) {
      c->flags &= ~HTTP_CONN_BUDGET;
      continue;
    }
    /* Re-run the headers-complete decision, then parse the waiting body. */
    c->flags &= ~HTTP_CONN_PAUSED;
    llhttp_resume(&c->parser);
    int rc = admit_body(c);
    if (rc == HPE_PAUSED)
      return; /* still does not fit: it stays first in line */
    if (rc != 0) {
      http__conn_close(c);
      continue;
    }
    arm_timer(c, s->limits.body_timeout_ms);
    conn_continue(c);
  }
}

void http__budget_release(struct http_server *s, size_t bytes)
{
  s->body_bytes -= bytes;
  if (s->budget_head && !uv_is_active((uv_handle_t *)&s->budget_wake))
    uv_timer_start(&s->budget_wake, on_budget_wake, 0, 0);
}

/* A response went out completely: next request, or close. */
void http__conn_response_done(struct http_conn *c)
{
  struct http_request *req = c->req;
  int keep = req && req->keep_alive && !(c->flags & HTTP_CONN_CLOSE_AFTER) &&
             !c->server->shutting_down;
  http__req_free(req);
  c->req = NULL;
  if (!keep) {
    http__conn_close(c);
    return;
  }
  c->flags &= ~HTTP_CONN_PAUSED;
  llhttp_resume(&c->parser);
  http__headscan_start(&c->scan, 0);
  arm_timer(c, c->server->limits.idle_timeout_ms);
  conn_continue(c);
}

/* ---- Parsing ---- */

static void reject(struct http_request *req, int status, const char *msg)
{
  if (req->reject_status == 0) {
    req->reject_status = status;
    snprintf(req->reject_msg, sizeof(req->reject_msg), "%s", msg);
  }
}

/* A head or body buffer that could not grow: over its limit (`status`,
 * `msg`), or out of memory, which is no fault of the request's (503). */
static void reject_grow(struct http_request *req, int rc, int status, const char *msg)
{
  if (rc == UV_ENOMEM)
    reject(req, 503, "out of memory for the request");
  else
    reject(req, status, msg);
}

static int on_message_begin(llhttp_t *p)
{
  struct http_conn *c = parser_conn(p);
  if (c->req == NULL)
    c->req = http__req_new(c);
  arm_timer(c, c->server->limits.header_timeout_ms);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
  struct http_request *req = parser_conn(p)->req;
  int rc = core_buf_append(&req->head, at, len);
  if (rc < 0) {
    reject_grow(req, rc, 431, "request line too long");
    return -1;
  }
  req->url_len = (uint32_t)req->head.len;
  return 0;
}

/* Header names and values are appended to one buffer, NUL-separated; llhttp
 * may deliver either in several pieces. */
static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
  struct http_conn *c = parser_conn(p);
  struct http_request *req = c->req;
  int rc;
  if (req->state == HTTP_REQ_BODY) {
    /* A field in a chunked body's trailer. Nothing here uses trailers, and
     * one named like a header could pass for it after the checks ran. */
    reject(req, 400, "trailer fields are not supported");
    c->flags |= HTTP_CONN_CLOSE_AFTER;
    return -1;
  }
  if (req->nheaders == 0 || req->last_was_value) {
    if (req->nheaders == HTTP_MAX_HEADERS) {
      reject(req, 431, "too many header fields");
      return -1;
    }
    if ((rc = core_buf_append(&req->head, "", 1)) < 0)
      goto too_big;
    struct http_header *h = &req->headers[req->nheaders++];
    h->name_off = (uint32_t)req->head.len;
    h->name_len = 0;
    h->value_off = h->value_len = 0;
    req->last_was_value = 0;
  }
  if ((rc = core_buf_append(&req->head, at, len)) < 0)
    goto too_big;
  req->headers[req->nheaders - 1].name_len += (uint32_t)len;
  return 0;
too_big:
  reject_grow(req, rc, 431, "request header fields too large");
  return -1;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
  struct http_request *req = parser_conn(p)->req;
  int rc;
  if (req->nheaders == 0)
    return -1;
  struct http_header *h = &req->headers[req->nheaders - 1];
  if (!req->last_was_value) {
    if ((rc = core_buf_append(&req->head, "", 1)) < 0)
      goto too_big;
    h->value_off = (uint32_t)req->head.len;
    req->last_was_value = 1;
  }
  if ((rc = core_buf_append(&req->head, at, len)) < 0)
    goto too_big;
  h->value_len += (uint32_t)len;
  return 0;
too_big:
  reject_grow(req, rc, 431, "request header fields too large");
  return -1;
}

static enum http_method map_method(uint8_t m)
{
  switch ((llhttp_method_t)m) {
  case HTTP_GET: return HTTP_METHOD_GET;
  case HTTP_POST: return HTTP_METHOD_POST;
  case HTTP_PUT: return HTTP_METHOD_PUT;
  case HTTP_DELETE: return HTTP_METHOD_DELETE;
  case HTTP_HEAD: return HTTP_METHOD_HEAD;
  default: return 0;
  }
}

/* Large bodies come from the server's body pool (http_bodypool.h): recycled,
 * and page-aligned, so chunk uploads are written to disk straight from them
 * with O_DIRECT where the file system allows it (store_chunk.c). */
static int reserve_body(struct http_request *req, size_t len)
{
  size_t cap;
  if (len < HTTP_BODYPOOL_MIN || req->body.base != NULL)
    return core_buf_reserve(&req->body, len);
  if (len > req->body.max)
    return CORE_ETOOBIG;
  char *mem = http_bodypool_get(&req->server->bodies, len + 1, &cap);
  if (mem == NULL)
    return UV_ENOMEM;
  core_buf_adopt(&req->body, mem, cap);
  req->body_pooled = 1;
  return 0;
}

/* The second half of headers-complete: reserve the body (or wait for budget),
 * answer Expect: 100-continue, and start the body timer. Returns 0, or
 * HPE_PAUSED to wait for budget, or -1 to refuse. */
static int admit_body(struct http_conn *c)
{
  struct http_request *req = c->req;
  struct http_server *s = c->server;
  llhttp_t *p = &c->parser;
  int has_body = (p->flags & F_CHUNKED) || p->content_length > 0;
  if (has_body && !(p->flags & F_CHUNKED) && !(c->flags & HTTP_CONN_BUDGET)) {
    /* Admit the body only if it fits the server-wide budget; the first body
     * is always admitted so a budget smaller than one body cannot stall. */
    size_t need = (size_t)p->content_length;
    if (s->body_bytes > 0 && s->body_bytes + need > s->limits.body_budget) {
      c->flags |= HTTP_CONN_BUDGET;
      c->budget_next = NULL;
      *s->budget_tail = c;
      s->budget_tail = &c->budget_next;
      return HPE_PAUSED;
    }
  }
  c->flags &= ~HTTP_CONN_BUDGET;
  if (has_body) {
    req->body.max = req->max_body;
    if (!(p->flags & F_CHUNKED)) {
      req->body_charged = (size_t)p->content_length;
      s->body_bytes += req->body_charged;
    }
    if (!(p->flags & F_CHUNKED) && reserve_body(req, (size_t)p->content_length) < 0) {
      reject(req, 503, "out of memory for the request body");
      c->flags |= HTTP_CONN_CLOSE_AFTER;
      return -1;
    }
    const char *expect = http_req_header(req, "expect");
    if (expect && strcasecmp(expect, "100-continue") == 0) {
      static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
      if (c->tls) {
        http_tls_write(c->tls, cont, sizeof(cont) - 1);
        flush_tls(c, 0);
      } else {
        char *copy = core_strdup(cont);
        uv_buf_t b = uv_buf_init(copy, sizeof(cont) - 1);
        write_bufs(c, &b, 1, copy, NULL, 0, 0);
      }
    }
    arm_timer(c, s->limits.body_timeout_ms);
  }
  req->state = HTTP_REQ_BODY;
  return 0;
}

/* Headers that mean one thing: a second one is refused rather than letting
 * the first win here while a proxy in front may have used the last. */
static const char *const single_headers[] = {
  "authorization", "host", "content-length", "content-type", "transfer-encoding", "expect",
};

/* The framing rules llhttp leaves to its user. Returns 0, or -1 with the
 * refusal (status and message) set in the request. */
static int check_framing(struct http_conn *c)
{
  struct http_request *req = c->req;
  llhttp_t *p = &c->parser;
  if (p->http_major != 1) {
    reject(req, 505, "HTTP version not supported");
    return -1;
  }
  for (int i = 0; i < req->nheaders; i++) {
    const struct http_header *h = &req->headers[i];
    if (h->name_len == 0) {
      reject(req, 400, "empty header field name");
      return -1;
    }
    const char *name = req->head.base + h->name_off;
    for (size_t k = 0; k < sizeof(single_headers) / sizeof(single_headers[0]); k++) {
      if (strcasecmp(name, single_headers[k]) != 0)
        continue;
      for (int j = i + 1; j < req->nheaders; j++) {
        if (strcasecmp(req->head.base + req->headers[j].name_off, name) == 0) {
          char msg[64];
          snprintf(msg, sizeof(msg), "duplicate %s header", single_headers[k]);
          reject(req, 400, msg);
          return -1;
        }
      }
    }
  }
  if (p->flags & F_TRANSFER_ENCODING) {
    /* llhttp takes "gzip, chunked" as chunked and hands over gzip bytes; the
     * only coding Cairn decodes is chunked, alone. HTTP/1.0 has no transfer
     * codings at all (RFC 9112, 6.1: faulty framing). */
    if (p->http_minor == 0) {
      reject(req, 400, "Transfer-Encoding in an HTTP/1.0 request");
      return -1;
    }
    const char *te = http_req_header(req, "transfer-encoding");
    size_t n = te ? strlen(te) : 0;
    while (n > 0 && (te[n - 1] == ' ' || te[n - 1] == '\t'))
      n--;
    if (n != 7 || strncasecmp(te, "chunked", 7) != 0) {
      reject(req, 501, "unsupported transfer coding");
      return -1;
    }
  }
  return 0;
}

/* Routing, then authentication, then the parameters: each step may refuse,
 * and the order makes refusals cheap. Nothing so far has allocated memory
 * sized by the path (the url is cut in place inside the header buffer, and
 * matching keeps spans), so an unknown path or a missing token costs a
 * client no more than its bounded header buffer. Parameters are decoded
 * only for a request that will be served. */
static void route_request(struct http_conn *c)
{
  struct http_request *req = c->req;
  struct http_server *s = c->server;
  char *url = req->head.base;
  char *q = memchr(url, '?', req->url_len);
  size_t plen = q ? (size_t)(q - url) : req->url_len;
  if (q)
    *q = '\0';
  /* A NUL always follows the url in head: the separator on_header_field puts
   * before the first name, or the one appended above when there is none. */
  req->path = url;
  req->query = q ? q + 1 : "";
  http__router_match(&s->router, req->method, req->path, plen, &req->match);
  if (req->match.status == 404) {
    reject(req, 404, "no such path");
    return;
  }
  if (req->match.status == 405) {
    reject(req, 405, "method not allowed");
    return;
  }
  const struct http_route *r = &req->match.entry->route;
  if (!(r->flags & HTTP_ROUTE_NOAUTH)) {
    int ar = s->auth ? s->auth(s->auth_ctx, req, req->authid, sizeof(req->authid))
                     : HTTP_AUTH_FAIL;
    if (ar == HTTP_AUTH_DEFER) {
      /* Credentials that need a pool job (a crypt hash, a reload): the access
       * hook decides before the handler runs. */
      req->authid[0] = '\0';
      req->auth_deferred = 1;
    } else if (ar != HTTP_AUTH_OK) {
      req->authid[0] = '\0';
      if (ar == HTTP_AUTH_LOCKED)
        reject(req, 429, "too many failed authentication attempts");
      else
        reject(req, 401, "authentication failed");
      return;
    }
  }
  if (http__match_decode(&req->match) < 0) {
    reject(req, 400, "invalid characters in a path parameter");
    return;
  }
  req->max_body = r->max_body ? r->max_body : HTTP_DEFAULT_MAX_BODY;
  if (!(c->parser.flags & F_CHUNKED) && c->parser.content_length > req->max_body)
    reject(req, 413, "request body too large");
}

static int on_headers_complete(llhttp_t *p)
{
  struct http_conn *c = parser_conn(p);
  struct http_request *req = c->req;
  int rc = core_buf_append(&req->head, "", 1);
  if (rc < 0) {
    reject_grow(req, rc, 431, "request header fields too large");
    return -1;
  }
  if (check_framing(c) < 0) {
    c->flags |= HTTP_CONN_CLOSE_AFTER;
    return -1;
  }
  req->method = map_method(llhttp_get_method(p));
  req->keep_alive = llhttp_should_keep_alive(p);
  int has_body = (p->flags & F_CHUNKED) || p->content_length > 0;

  if (req->method == 0)
    reject(req, 405, "method not allowed");
  else
    route_request(c);
  if (req->reject_status) {
    /* Refuse before reading a body we will not use; keep the connection only
     * when there is no body to skip. */
    if (has_body) {
      c->flags |= HTTP_CONN_CLOSE_AFTER;
      return -1;
    }
    return 0;
  }
  return admit_body(c);
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
  struct http_conn *c = parser_conn(p);
  struct http_request *req = c->req;
  if (req->body.base != NULL && at == req->body.base + req->body.len &&
      len < req->body.cap - req->body.len) {
    /* Read in place by on_alloc: just take the bytes. */
    req->body.len += len;
    req->body.base[req->body.len] = '\0';
    return 0;
  }
  int rc = core_buf_append(&req->body, at, len);
  if (rc < 0) {
    reject_grow(req, rc, 413, "request body too large");
    c->flags |= HTTP_CONN_CLOSE_AFTER;
    return -1;
  }
  return 0;
}

/* The last chunk: its trailer section comes next and must pass the head
 * scanner like a head, so the parser stops here and conn_process() scans
 * what follows before parsing on. */
static int on_chunk_header(llhttp_t *p)
{
  if (p->content_length != 0)
    return 0;
  parser_conn(p)->flags |= HTTP_CONN_TRAILER;
  return HPE_PAUSED;
}

static int on_message_complete(llhttp_t *p)
{
  struct http_conn *c = parser_conn(p);
  uv_timer_stop(&c->timer);
  c->flags |= HTTP_CONN_PAUSED;
  return HPE_PAUSED;
}

/* Every route but the open ones goes through the access hook, when set. */
static int access_applies(const struct http_request *req)
{
  return req->server->access && !(req->match.entry->route.flags & HTTP_ROUTE_NOAUTH);
}

void http_req_proceed(struct http_request *req)
{
  const struct http_route *r = &req->match.entry->route;
  r->handler(req, r->ctx);
}

static void dispatch(struct http_conn *c)
{
  struct http_request *req = c->req;
  req->state = HTTP_REQ_HANDLER;
  if (req->reject_status) {
    http_respond_error(req, req->reject_status, "%s", req->reject_msg);
    return;
  }
  if (http__req_parse_params(req) < 0) {
    http_respond_error(req, 400, "%s",
                       req->reject_msg[0] ? req->reject_msg : "malformed parameters");
    return;
  }
  const struct http_route *r = &req->match.entry->route;
  if (access_applies(req)) {
    /* Nothing of the handler runs before the access hook allows it. */
    req->server->access(req->server->access_ctx, req, &r->perm);
    return;
  }
  r->handler(req, r->ctx);
}

/* Answers a request that cannot be read further with `status` and closes the
 * connection after it: whatever the client pipelined behind it is never
 * parsed, since after a framing error nobody can say where it starts. */
static void conn_refuse(struct http_conn *c, int status, const char *msg)
{
  c->flags |= HTTP_CONN_CLOSE_AFTER | HTTP_CONN_PAUSED;
  if (c->flags & HTTP_CONN_READING) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->flags &= ~HTTP_CONN_READING;
  }
  uv_timer_stop(&c->timer);
  if (c->req == NULL)
    c->req = http__req_new(c); /* refused before llhttp saw a request begin */
  struct http_request *req = c->req;
  if (req->state > HTTP_REQ_BODY) {
    http__conn_close(c);
    return;
  }
  req->keep_alive = 0;
  req->state = HTTP_REQ_HANDLER;
  if (req->reject_status)
    http_respond_error(req, req->reject_status, "%s", req->reject_msg);
  else
    http_respond_error(req, status, "%s", msg);
}

/* After the parser paused: keeps the unparsed rest aside, stops reading, and
 * dispatches the complete request (unless it waits for body budget). */
static void conn_paused(struct http_conn *c, const char *pos, size_t rest)
{
  if (rest) {
    c->pending = core_realloc(c->pending, c->pending_len + rest);
    memcpy(c->pending + c->pending_len, pos, rest);
    c->pending_len += rest;
  }
  if (c->flags & HTTP_CONN_READING) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->flags &= ~HTTP_CONN_READING;
  }
  if (c->flags & HTTP_CONN_BUDGET) {
    /* Waiting for body budget: the headers are parsed, the body waits. */
    c->flags |= HTTP_CONN_PAUSED;
    uv_timer_stop(&c->timer);
    return;
  }
  dispatch(c);
}

/* Parses plaintext; on a complete request keeps the rest aside and dispatches.
 * The bytes of a header section go through the head scanner first. */
static void conn_process(struct http_conn *c, const char *data, size_t len)
{
  if (c->flags & HTTP_CONN_CLOSING)
    return;
  if (c->flags & HTTP_CONN_PAUSED) {
    /* Input that arrived while a request is being served waits its turn. */
    c->pending = core_realloc(c->pending, c->pending_len + len);
    memcpy(c->pending + c->pending_len, data, len);
    c->pending_len += len;
    return;
  }
  for (;;) {
    const char *why;
    if (c->scan.state != HTTP_HEADSCAN_DONE &&
        http__headscan_feed(&c->scan, data, len, &why) < 0) {
      char msg[96];
      snprintf(msg, sizeof(msg), "malformed HTTP request: %s", why);
      conn_refuse(c, 400, msg);
      return;
    }
    llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
    if (err == HPE_OK)
      return;
    if (err != HPE_PAUSED)
      break;
    const char *pos = llhttp_get_error_pos(&c->parser);
    size_t rest = (size_t)(data + len - pos);
    if (!(c->flags & HTTP_CONN_TRAILER)) {
      conn_paused(c, pos, rest);
      return;
    }
    /* At the last chunk: scan the trailer section, then parse on. */
    c->flags &= ~HTTP_CONN_TRAILER;
    http__headscan_start(&c->scan, 1);
    llhttp_resume(&c->parser);
    data = pos;
    len = rest;
  }
  /* A protocol error, or a refusal from a callback: answer once, then close. */
  llhttp_errno_t err = llhttp_get_errno(&c->parser);
  if (err == HPE_INVALID_TRANSFER_ENCODING) {
    conn_refuse(c, 501, "unsupported transfer coding");
  } else {
    char msg[96];
    snprintf(msg, sizeof(msg), "malformed HTTP request: %s", llhttp_errno_name(err));
    conn_refuse(c, 400, msg);
  }
}

/* A handshake is counted when it completes or fails, once per connection. */
static void count_tls(struct http_conn *c, ssize_t n)
{
  struct http_stats *st = c->server->stats;
  if (http_tls_cipher(c->tls)[0] != '\0') {
    c->flags |= HTTP_CONN_TLS_UP;
    if (st)
      core_counter_add(&st->tls_handshakes, 1);
  } else if (n < 0) {
    c->flags |= HTTP_CONN_TLS_UP; /* decided: not counted again */
    if (st && n != UV_EOF)
      core_counter_add(&st->tls_failures, 1);
  }
}

static void conn_drain_tls(struct http_conn *c)
{
  while (!(c->flags & (HTTP_CONN_PAUSED | HTTP_CONN_CLOSING))) {
    ssize_t n = http_tls_read(c->tls, plain_buf, sizeof(plain_buf));
    if (!(c->flags & HTTP_CONN_TLS_UP))
      count_tls(c, n);
    if (n > 0) {
      conn_process(c, plain_buf, (size_t)n);
      continue;
    }
    if (n < 0) {
      if (n != UV_EOF)
        core_debug("http: TLS error: %s", http_tls_error(c->tls));
      http__conn_close(c);
      return;
    }
    break;
  }
  /* Handshake records or alerts produced while reading. */
  if (!(c->flags & HTTP_CONN_CLOSING))
    flush_tls(c, 0);
}

/* Stops reading a connection over this iteration's read budget; the next
 * iteration's prepare callback resumes it. */
static void conn_defer(struct http_conn *c)
{
  struct http_server *s = c->server;
  if (c->flags & HTTP_CONN_READING) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->flags &= ~HTTP_CONN_READING;
  }
  if (!(c->flags & HTTP_CONN_DEFERRED)) {
    c->flags |= HTTP_CONN_DEFERRED;
    c->defer_next = s->defer_head;
    s->defer_head = c;
  }
}

/* Runs right before the loop polls: a new iteration's budget, and the
 * connections deferred in the last one read again (their bytes are still in
 * the kernel, so the poll returns at once). */
static void on_iter_prepare(uv_prepare_t *p)
{
  struct http_server *s = p->data;
  s->iter_bytes = 0;
  s->iter_head_bytes = 0;
  struct http_conn *c = s->defer_head;
  s->defer_head = NULL;
  while (c) {
    struct http_conn *next = c->defer_next;
    c->flags &= ~HTTP_CONN_DEFERRED;
    if (!(c->flags & (HTTP_CONN_PAUSED | HTTP_CONN_BUDGET)))
      conn_start_reading(c);
    c = next;
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  struct http_conn *c = h->data;
  struct http_request *req = c->req;
  /* Over the budget a connection in the middle of a body waits for the next
   * iteration. One between requests or in a head still reads, from a second,
   * small budget and a head's worth at a time: what waits there is a status
   * poll or a session open, which must not queue behind every upload's body
   * iteration after iteration (that was the status p99 under load). */
  size_t cap = sizeof(read_buf);
  if (c->server->iter_bytes >= HTTP_ITER_READ_BUDGET) {
    if ((req && req->state != HTTP_REQ_HEADERS) ||
        c->server->iter_head_bytes >= HTTP_ITER_HEAD_BUDGET) {
      *buf = uv_buf_init(NULL, 0); /* read nothing: on_read gets UV_ENOBUFS */
      return;
    }
    cap = HTTP_HEAD_READ;
  }
  /* A plain-TCP body of known length is read straight into its buffer, at
   * the place the parser will append it: no copy through read_buf. Only the
   * body's remaining bytes are asked for, so nothing of a pipelined next
   * request can land there. */
  if (req && c->tls == NULL && req->state == HTTP_REQ_BODY && c->pending == NULL &&
      !(c->parser.flags & F_CHUNKED) && c->parser.content_length > 0 &&
      req->body.base && req->body.cap - req->body.len > c->parser.content_length) {
    size_t n = (size_t)c->parser.content_length;
    if (n > HTTP_ITER_READ_BUDGET)
      n = HTTP_ITER_READ_BUDGET;
    *buf = uv_buf_init(req->body.base + req->body.len, (unsigned)n);
    return;
  }
  *buf = uv_buf_init(read_buf, (unsigned)cap);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
  struct http_conn *c = stream->data;
  if (nread == 0)
    return;
  if (nread == UV_ENOBUFS) {
    conn_defer(c);
    return;
  }
  if (nread < 0) {
    /* EOF or error: a half-closed client gets no more answers. */
    http__conn_close(c);
    return;
  }
  if (c->server->iter_bytes >= HTTP_ITER_READ_BUDGET)
    c->server->iter_head_bytes += (size_t)nread;
  c->server->iter_bytes += (size_t)nread;
  if (c->server->stats)
    core_counter_add(&c->server->stats->rx_bytes, (uint64_t)nread);
  if (c->tls) {
    if (http_tls_feed(c->tls, buf->base, (size_t)nread) < 0) {
      http__conn_close(c);
      return;
    }
    conn_drain_tls(c);
    return;
  }
  conn_process(c, buf->base, (size_t)nread);
}

static void conn_start_reading(struct http_conn *c)
{
  if (c->flags & (HTTP_CONN_READING | HTTP_CONN_CLOSING))
    return;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
    c->flags |= HTTP_CONN_READING;
  else
    http__conn_close(c);
}

/* ---- Accepting ---- */

/* A connection the server will not serve gets this and a close, so that the
 * client fails at once instead of waiting in the backlog. */
static const char busy_response[] =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    "Content-Length: 65\r\nConnection: close\r\n\r\n" /* the body's length: */
    "{\"data\":null,\"message\":\"server busy: too many open connections\"}\n";

/* Writes the 503 into a fresh socket: its send buffer is empty, so one
 * non-blocking write takes it all or the client has gone. A TLS client
 * gets only the close: a handshake costs more than the answer is worth
 * when the server is out of room. */
static void send_busy(int fd, int tls)
{
  if (!tls)
    (void)send(fd, busy_response, sizeof(busy_response) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* One log line per burst of refusals, not one per connection. A burst ends
 * only after HTTP_REFUSE_QUIET_MS without a refusal: at the limit, slots free
 * up and fill again all the time, and each would otherwise start a burst. */
#define HTTP_REFUSE_QUIET_MS 10000

static void refusing(struct http_server *s, const char *why, unsigned open)
{
  if (!s->refusing)
    core_warn("http: refusing new connections: %s (%u open)", why, open);
  s->refusing = 1;
  s->refused++;
  s->refused_at = uv_now(s->loop);
  if (s->stats)
    core_counter_add(&s->stats->refused, 1);
}

static void accepting_again(struct http_server *s)
{
  if (!s->refusing || uv_now(s->loop) - s->refused_at < HTTP_REFUSE_QUIET_MS)
    return;
  core_info("http: accepting connections again after refusing %llu", s->refused);
  s->refusing = 0;
  s->refused = 0;
}

/* The reserve lets the server take a connection off the backlog while it has
 * no descriptor left, to answer it (/dev/null is a device node: opening it
 * touches no disk, so the loop can; "/" as libuv does, should it be missing).
 * Returns 0 or a negative errno. */
static int reserve_open(struct http_server *s)
{
  if (s->reserve_fd >= 0)
    return 0;
  s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (s->reserve_fd < 0 && errno != EMFILE && errno != ENFILE)
    s->reserve_fd = open("/", O_RDONLY | O_CLOEXEC);
  return s->reserve_fd < 0 ? -errno : 0;
}

/* accept() failed with EMFILE/ENFILE. libuv first tries its own spare
 * descriptor, closing what is pending without an answer; it calls us only
 * when it has none left, and then accepts again as soon as we return. So:
 * give up the reserve, accept, answer and close every pending connection,
 * and leave the slot free, so that libuv's next accept() finds the backlog
 * empty instead of failing again (the kernel checks for a free descriptor
 * before it looks at the backlog, and libuv would call us in a loop). The
 * next accepted connection gets the reserve back (on_connection). Without a
 * reserve, nothing can be answered until a descriptor frees up. */
static void refuse_backlog(struct http_listener *l)
{
  struct http_server *s = l->server;
  uv_os_fd_t lfd;
  refusing(s, "out of file descriptors", s->nconns);
  if (s->reserve_fd < 0 || uv_fileno((uv_handle_t *)&l->tcp, &lfd) < 0)
    return;
  close(s->reserve_fd);
  s->reserve_fd = -1;
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0 && errno == EINTR)
      continue;
    if (fd < 0)
      break;
    send_busy(fd, l->tls != NULL);
    close(fd);
    s->refused++;
    s->refused_at = uv_now(s->loop);
  }
}

/* A connection's handles, initialised and on the server's list: from here
 * on http__conn_close() is how it goes away. */
static struct http_conn *conn_new(struct http_server *s)
{
  struct http_conn *c = core_new(struct http_conn);
  c->server = s;
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->handles = 2;
  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  return c;
}

/* The connected stream is set up: parser, transport, header deadline, and
 * reading. Every connection, accepted or adopted, starts here. */
static void conn_start(struct http_conn *c, struct http_tls *tls)
{
  struct http_server *s = c->server;
  uv_tcp_nodelay(&c->tcp, 1); /* fails harmlessly on a non-TCP stream */
  llhttp_init(&c->parser, HTTP_REQUEST, &s->settings);
  http__headscan_start(&c->scan, 0);
  if (s->stats)
    core_counter_add(&s->stats->accepted, 1);
  if (tls) {
    c->tls = http_tls_session_new(tls, NULL);
    if (c->tls)
      http_tls_session_set_pool(c->tls, &s->bodies);
  }
  arm_timer(c, s->limits.header_timeout_ms);
  conn_start_reading(c);
}

/* Accepts, then refuses at once when over the connection limit. */
static void on_connection(uv_stream_t *ls, int status)
{
  struct http_listener *l = ls->data;
  struct http_server *s = l->server;
  if (status == UV_EMFILE || status == UV_ENFILE) {
    refuse_backlog(l);
    return;
  }
  if (status < 0) {
    core_warn("http: accept failed: %s", uv_strerror(status));
    return;
  }
  struct http_conn *c = conn_new(s);
  if (uv_accept(ls, (uv_stream_t *)&c->tcp) < 0 || s->shutting_down) {
    http__conn_close(c);
    return;
  }
  /* Without its reserve the server may have just taken the last descriptor:
   * then this connection gives it back (closing a stream frees its
   * descriptor at once) so that the reserve can be had again. */
  int rc = reserve_open(s);
  int last_fd = rc == -EMFILE || rc == -ENFILE;
  if (s->nconns > s->max_conns || last_fd) {
    /* Accept-and-refuse drains the backlog instead of letting it fill. */
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
      send_busy(fd, l->tls != NULL);
    refusing(s, last_fd ? "out of file descriptors" : "connection limit reached",
             s->nconns - 1);
    http__conn_close(c);
    (void)reserve_open(s);
    return;
  }
  accepting_again(s);
  conn_start(c, l->tls);
}

/* libuv's uv_tcp_open() takes any connected stream socket (it only makes it
 * non-blocking and registers it), so one end of an AF_UNIX socketpair() is
 * served by the very code that serves TCP; only TCP_NODELAY does not apply. */
int http_server_adopt(struct http_server *s, int fd)
{
  if (s->shutting_down)
    return UV_ECANCELED;
  struct http_conn *c = conn_new(s);
  int rc = uv_tcp_open(&c->tcp, fd);
  if (rc < 0) {
    http__conn_close(c); /* the handle never held fd: it stays the caller's */
    return rc;
  }
  if (s->nconns > s->max_conns) {
    send_busy(fd, 0);
    refusing(s, "connection limit reached", s->nconns - 1);
    http__conn_close(c);
    return 0;
  }
  conn_start(c, NULL);
  return 0;
}

/* Connections may take the descriptors the process has, less a share kept for
 * everything else (datastore files, S3 connections, task logs): past that a
 * new connection is answered 503 at once instead of starving the file work,
 * and accept() itself rarely meets EMFILE. */
static unsigned conn_limit(unsigned configured)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
    return configured;
  rlim_t keep = rl.rlim_cur / 8;
  if (keep < 32)
    keep = 32;
  if (keep > 1024)
    keep = 1024;
  rlim_t fit = rl.rlim_cur > keep + 16 ? rl.rlim_cur - keep : 16;
  if (fit >= configured)
    return configured;
  core_warn("http: at most %u connections: RLIMIT_NOFILE is %llu (%u configured)",
            (unsigned)fit, (unsigned long long)rl.rlim_cur, configured);
  return (unsigned)fit;
}

/* ---- Server ---- */

struct http_server *http_server_new(uv_loop_t *loop, const struct http_limits *limits)
{
  struct http_server *s = core_new(struct http_server);
  s->loop = loop;
  if (limits)
    s->limits = *limits;
  if (!s->limits.max_header_bytes)
    s->limits.max_header_bytes = 16 * 1024;
  if (!s->limits.max_connections)
    s->limits.max_connections = 16384;
  if (!s->limits.header_timeout_ms)
    s->limits.header_timeout_ms = 15000;
  if (!s->limits.idle_timeout_ms)
    s->limits.idle_timeout_ms = 60000;
  if (!s->limits.body_timeout_ms)
    s->limits.body_timeout_ms = 30000;
  if (!s->limits.shutdown_grace_ms)
    s->limits.shutdown_grace_ms = 10000;
  if (!s->limits.body_budget)
    s->limits.body_budget = 64u * 1024 * 1024;
  s->max_conns = conn_limit(s->limits.max_connections);
  s->reserve_fd = -1;
  s->stats = core_new(struct http_stats);
  (void)reserve_open(s);
  s->budget_tail = &s->budget_head;
  http_bodypool_init(&s->bodies, s->limits.body_budget);
  uv_timer_init(loop, &s->budget_wake);
  s->budget_wake.data = s;
  uv_timer_init(loop, &s->pool_trim);
  s->pool_trim.data = s;
  uv_timer_start(&s->pool_trim, on_pool_trim, HTTP_POOL_TRIM_MS, HTTP_POOL_TRIM_MS);
  uv_unref((uv_handle_t *)&s->pool_trim);
  uv_prepare_init(loop, &s->iter_prepare);
  s->iter_prepare.data = s;
  uv_prepare_start(&s->iter_prepare, on_iter_prepare);
  uv_unref((uv_handle_t *)&s->iter_prepare);
  http__router_init(&s->router);
  llhttp_settings_init(&s->settings);
  s->settings.on_message_begin = on_message_begin;
  s->settings.on_url = on_url;
  s->settings.on_header_field = on_header_field;
  s->settings.on_header_value = on_header_value;
  s->settings.on_headers_complete = on_headers_complete;
  s->settings.on_body = on_body;
  s->settings.on_chunk_header = on_chunk_header;
  s->settings.on_message_complete = on_message_complete;
  uv_timer_init(loop, &s->grace);
  s->grace.data = s;
  return s;
}

void http_server_add_routes(struct http_server *s, const struct http_route *routes, size_t n)
{
  for (size_t i = 0; i < n; i++)
    http__router_add(&s->router, &routes[i]);
}

void http_server_set_access(struct http_server *s, http_access_fn fn, void *ctx)
{
  s->access = fn;
  s->access_ctx = ctx;
}

void http_server_set_auth(struct http_server *s, http_auth_fn fn, void *ctx)
{
  s->auth = fn;
  s->auth_ctx = ctx;
}

unsigned http_server_connections(const struct http_server *s)
{
  return s->nconns;
}

/* "HOST:PORT", "[V6]:PORT" or ":PORT". */
static int parse_addr(const char *addr, struct sockaddr_storage *ss)
{
  char host[128];
  const char *port;
  if (addr[0] == '[') {
    const char *end = strchr(addr, ']');
    if (end == NULL || end[1] != ':' || (size_t)(end - addr - 1) >= sizeof(host))
      return CORE_EINVAL;
    memcpy(host, addr + 1, (size_t)(end - addr - 1));
    host[end - addr - 1] = '\0';
    port = end + 2;
  } else {
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || (size_t)(colon - addr) >= sizeof(host))
      return CORE_EINVAL;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    if (host[0] == '\0')
      snprintf(host, sizeof(host), "0.0.0.0");
    port = colon + 1;
  }
  char *end;
  long p = strtol(port, &end, 10);
  if (*port == '\0' || *end != '\0' || p < 0 || p > 65535)
    return CORE_EINVAL;
  if (uv_ip4_addr(host, (int)p, (struct sockaddr_in *)ss) == 0)
    return 0;
  if (uv_ip6_addr(host, (int)p, (struct sockaddr_in6 *)ss) == 0)
    return 0;
  return CORE_EINVAL;
}

/* Both ways to listen (an address, an inherited socket) share the
 * listener's set-up and its end: closed on failure, else it keeps a
 * reference to `tls` and joins the server's list. */
static struct http_listener *listener_new(struct http_server *s)
{
  struct http_listener *l = core_new(struct http_listener);
  l->server = s;
  uv_tcp_init(s->loop, &l->tcp);
  l->tcp.data = l;
  return l;
}

static int listener_add(struct http_server *s, struct http_listener *l, int rc,
                        struct http_tls *tls)
{
  if (rc < 0) {
    uv_close((uv_handle_t *)&l->tcp, (uv_close_cb)core_free);
    return rc;
  }
  if (tls) {
    http_tls_ref(tls);
    l->tls = tls;
  }
  l->next = s->listeners;
  s->listeners = l;
  return 0;
}

int http_server_listen(struct http_server *s, const char *addr, struct http_tls *tls)
{
  struct sockaddr_storage ss;
  int rc = parse_addr(addr, &ss);
  if (rc)
    return rc;
  struct http_listener *l = listener_new(s);
  unsigned flags = ss.ss_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0;
  rc = uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, flags);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&l->tcp, 4096, on_connection);
  return listener_add(s, l, rc, tls);
}

int http_server_listen_fd(struct http_server *s, int fd, struct http_tls *tls)
{
  struct http_listener *l = listener_new(s);
  int rc = uv_tcp_open(&l->tcp, fd);
  if (rc < 0) {
    close(fd);
  } else {
    /* An inherited socket is already listening: listen() again only sets
     * the backlog. */
    rc = uv_listen((uv_stream_t *)&l->tcp, 4096, on_connection);
  }
  return listener_add(s, l, rc, tls);
}

void http_server_set_tls(struct http_server *s, struct http_tls *tls)
{
  for (struct http_listener *l = s->listeners; l; l = l->next) {
    if (l->tls == NULL)
      continue;
    http_tls_ref(tls);
    http_tls_unref(l->tls);
    l->tls = tls;
  }
}

static void on_listener_closed(uv_handle_t *h)
{
  struct http_listener *l = h->data;
  if (l->tls)
    http_tls_unref(l->tls);
  core_free(l);
}

static void close_listeners(struct http_server *s)
{
  struct http_listener *l = s->listeners;
  s->listeners = NULL;
  while (l) {
    struct http_listener *next = l->next;
    uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
    l = next;
  }
}

static void on_grace_over(uv_timer_t *t)
{
  struct http_server *s = t->data;
  core_warn("http: shutdown grace period over, closing %u connection(s)", s->nconns);
  for (struct http_conn *c = s->conns; c; c = c->next)
    http__conn_close(c);
}

void http_server_shutdown(struct http_server *s, void (*done)(void *ctx), void *ctx)
{
  s->shutting_down = 1;
  s->shutdown_done = done;
  s->shutdown_ctx = ctx;
  close_listeners(s);
  /* Idle connections go now; busy ones close after their response. */
  for (struct http_conn *c = s->conns; c; c = c->next) {
    if (c->req == NULL || c->req->state <= HTTP_REQ_HEADERS)
      http__conn_close(c);
  }
  if (s->nconns == 0) {
    s->shutdown_done = NULL;
    done(ctx);
    return;
  }
  uv_timer_start(&s->grace, on_grace_over, s->limits.shutdown_grace_ms, 0);
}

static void server_destroy(struct http_server *s)
{
  if (s->reserve_fd >= 0)
    close(s->reserve_fd);
  http_bodypool_free(&s->bodies);
  core_free(s->stats);
  core_free(s);
}

/* libuv runs close callbacks last-closed first, so the connections closed
 * by http_server_free() may still be on their way out: the last of them
 * destroys the server then (on_handle_closed). */
static void on_grace_closed(uv_handle_t *h)
{
  struct http_server *s = h->data;
  s->freed = 1;
  if (s->nconns == 0 && s->bodies_out == 0)
    server_destroy(s);
}

void http_server_free(struct http_server *s)
{
  close_listeners(s);
  for (struct http_conn *c = s->conns; c; c = c->next)
    http__conn_close(c);
  http__router_free(&s->router);
  /* The grace timer is embedded: the server is freed once it has closed. */
  uv_close((uv_handle_t *)&s->budget_wake, NULL);
  uv_close((uv_handle_t *)&s->pool_trim, NULL);
  uv_close((uv_handle_t *)&s->iter_prepare, NULL);
  uv_close((uv_handle_t *)&s->grace, on_grace_closed);
}
