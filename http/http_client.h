/* http_client.h: HTTP/1.1 client connections on the libuv loop.
 *
 * DESIGN. One struct http_client talks to one endpoint (host, port, plain or
 * TLS) and keeps a keep-alive pool of at most `max_conns` connections to it;
 * requests beyond that wait in a FIFO queue. A new connection resolves the
 * host with uv_getaddrinfo (DNS runs in libuv's pool, never on the loop),
 * connects, and for TLS runs the handshake through the I/O-less session of
 * http_tls.h, all under one connect timeout. The TLS context decides
 * verification: the system CA store, a pinned SHA-256 fingerprint, or none.
 *
 * A request's body is the caller's buffer, sent without copying (plain) and
 * left untouched, so a caller that retries simply sends it again. Responses
 * are parsed with llhttp. The body is either buffered (up to `max_body`) or
 * handed to on_body piece by piece; on_body may call http_client_req_pause()
 * to stop reading from the socket (back-pressure): pieces already read are
 * held (at most one socket read, 64 KiB) and delivered after
 * http_client_req_resume().
 *
 * Every request ends with exactly one on_done call, never from inside
 * http_client_send(): status 0 means a complete HTTP response arrived (any
 * HTTP status code; look at http_client_req_status), a negative status is a
 * transport error: UV_E* (reset, refused, DNS), CORE_ETIMEOUT (connect or
 * request timeout), CORE_ETLS / CORE_ECERT, CORE_EPROTO (malformed or
 * truncated response), CORE_ETOOBIG (headers or buffered body too large),
 * CORE_EABORTED (cancelled or client closed).
 *
 * A request that fails on a reused keep-alive connection before any response
 * byte arrived (the server closed an idle connection as we sent) is sent
 * again once on a fresh connection: that is not a retry of the request's
 * outcome, the first copy never reached an answer.
 *
 * Timeouts are checked by one repeating timer per client (100 ms granularity)
 * instead of a timer per request. Idle pooled connections are unref'd so an
 * otherwise idle loop can exit.
 *
 * Not S3-specific: the backup client reuses this.
 */
#ifndef HTTP_CLIENT_H
#define HTTP_CLIENT_H

#include "core/core_buf.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct http_tls;
struct http_client;
struct http_client_req;

struct http_client_config {
  const char *host;           /* DNS name or IP literal (no brackets); TLS name */
  int port;
  struct http_tls *tls;       /* NULL: plain HTTP. A reference is taken. */
  unsigned max_conns;         /* 0: 8 */
  unsigned connect_timeout_ms;/* 0: 10 s; covers DNS, TCP and TLS handshake */
  unsigned idle_timeout_ms;   /* 0: 30 s; idle pooled connections close after */
  unsigned max_requests_per_conn; /* 0: unlimited */
};

struct http_client_stats {
  uint64_t conns_opened;      /* connection attempts started */
  uint64_t conns_failed;      /* attempts that never became usable */
  uint64_t conns_reused;      /* requests that went out on a pooled connection */
  uint64_t requests;          /* requests submitted */
  uint64_t stale_resends;     /* re-sent after a reused connection closed first */
  uint64_t timeouts;
};

struct http_client_header {
  const char *name;
  const char *value;
};

typedef int (*http_client_headers_cb)(struct http_client_req *req, void *arg);
typedef int (*http_client_body_cb)(struct http_client_req *req, const char *data, size_t len,
                                   void *arg);
typedef void (*http_client_done_cb)(struct http_client_req *req, int status, void *arg);

/* What to send. The method, target and headers are copied by
 * http_client_send; the body must stay valid until on_done. */
struct http_client_request {
  const char *method;         /* "GET", "PUT", "HEAD", ... */
  const char *target;         /* "/path?query", already encoded */
  const struct http_client_header *headers; /* Host and Content-Length are added
                                             * unless present */
  size_t n_headers;
  const void *body;           /* caller's buffer; may be NULL with body_len 0 */
  size_t body_len;
  unsigned timeout_ms;        /* whole request from submission; 0: 30 min */
  size_t max_body;            /* buffered body bound; 0: 16 MiB */
  size_t max_header_bytes;    /* 0: 64 KiB */
  /* Optional: called once the status line and headers are in. Return a
   * negative code to abort the request with it. */
  http_client_headers_cb on_headers;
  /* Optional: body pieces as they arrive; NULL buffers the body instead.
   * Return a negative code to abort the request with it. */
  http_client_body_cb on_body;
  http_client_done_cb on_done; /* required */
  void *arg;
};

/* Creates a client for one endpoint. Returns 0, CORE_EINVAL, or UV_ENOMEM.
 * Copies what it needs from `cfg`. */
int http_client_new(uv_loop_t *loop, const struct http_client_config *cfg,
                    struct http_client **out);

/* Fails every queued and running request with CORE_EABORTED (their on_done
 * runs before this returns), closes all connections and frees the client
 * once its handles are closed; `cb` (optional) runs then. */
void http_client_free(struct http_client *c, void (*cb)(void *arg), void *arg);

/* Queues a request. Returns 0 (on_done will run exactly once) or an error
 * without calling anything: CORE_EINVAL for a bad request (no method, target
 * not starting with '/', header names/values with CR/LF), CORE_EABORTED if
 * the client is closing. `out` (optional) receives the request handle, valid
 * until on_done returns. */
int http_client_send(struct http_client *c, const struct http_client_request *r,
                     struct http_client_req **out);

/* Cancels a request: on_done(CORE_EABORTED) runs before this returns. Its
 * connection, if any, is closed (it cannot be reused mid-response). */
void http_client_req_cancel(struct http_client_req *req);

/* Back-pressure for streamed bodies: while paused no on_body call happens
 * and the socket is not read. Resume delivers held pieces (possibly before it
 * returns) and reading restarts. The request timeout keeps running. */
void http_client_req_pause(struct http_client_req *req);
void http_client_req_resume(struct http_client_req *req);

/* The response, valid from on_headers until on_done returns. */
int http_client_req_status(const struct http_client_req *req);     /* 0 before headers */
/* First header value by case-insensitive name, or NULL. */
const char *http_client_req_header(const struct http_client_req *req, const char *name);
size_t http_client_req_header_count(const struct http_client_req *req);
/* The i-th header; returns 0 or CORE_EINVAL. */
int http_client_req_header_at(const struct http_client_req *req, size_t i, const char **name,
                              const char **value);
/* The buffered body (empty when on_body was set). */
struct core_slice http_client_req_body(const struct http_client_req *req);
/* 1 if it went out on a reused keep-alive connection. */
int http_client_req_reused(const struct http_client_req *req);

void http_client_get_stats(const struct http_client *c, struct http_client_stats *out);
/* Connections open now (any state), and of those idle in the pool. */
unsigned http_client_conns(const struct http_client *c, unsigned *idle);

#endif
