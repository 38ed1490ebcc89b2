/* http.h: Cairn's HTTP/1.1 server, as handlers see it.
 *
 * DESIGN. A connection reads bytes (through a transport: plain TCP or TLS, which
 * this layer never tells apart), feeds them to llhttp, and assembles one request
 * at a time: the request line, headers, and the body, buffered up to the route's
 * `max_body` (refused with 413 before it is read when Content-Length says more).
 * The router picks the route and authentication runs when the headers are in
 * (a 401 or 429 is sent before any body is read); once the body is in, the
 * access hook checks the route's declared privilege (struct http_perm) and
 * only then is the handler called, on the loop thread.
 *
 * A handler answers at once or later (after a pool job): either way it calls
 * exactly one http_respond_*() for the request. The request stays valid until
 * then even if the client goes away (http_req_gone() tells); responding to a
 * gone client just frees the request. Pipelined requests wait for the answer
 * of the one before, so responses keep their order.
 *
 * Responses use PBS's envelope: {"data": ...} on success and
 * {"data": null, "message": "..."} (plus "errors" per parameter when given)
 * on failure, always with Content-Type application/json.
 */
#ifndef HTTP_H
#define HTTP_H

#include "core/core_buf.h"
#include "core/core_json.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct http_server;
struct http_request;

enum http_method {
  HTTP_METHOD_GET = 1,
  HTTP_METHOD_POST,
  HTTP_METHOD_PUT,
  HTTP_METHOD_DELETE,
  HTTP_METHOD_HEAD,
};

typedef void (*http_handler_fn)(struct http_request *req, void *ctx);

enum http_route_flags {
  HTTP_ROUTE_NOAUTH = 1 << 0,  /* served without a token (version, health) */
  HTTP_ROUTE_RAW_BODY = 1 << 1, /* body is binary; do not parse it as parameters */
};

/* Who may call a route, declared next to it and enforced by the server's
 * access hook (http_server_set_access) after authentication and before the
 * handler. The server does not interpret the fields: the hook does (Cairn's
 * is store_access_check; the values are access.h's ACCESS_PRIV_* and
 * ACCESS_ON_* / ACCESS_IF_*). A route that declares nothing (all zero) is
 * refused to everyone but an administrator: forgetting fails closed. */
struct http_perm {
  uint32_t privs;        /* any one of these on the path suffices */
  uint32_t owner_privs;  /* any one suffices when the flags' ownership rule holds */
  uint16_t on;           /* how the path is built from the request's parameters */
  uint16_t flags;        /* ownership and self rules */
};

struct http_route {
  enum http_method method;
  /* A path with parameters in braces: "/api2/json/admin/datastore/{store}/status".
   * A parameter matches one non-empty path segment, percent-decoded. */
  const char *pattern;
  http_handler_fn handler;
  void *ctx;          /* handed to the handler; owned by the caller */
  size_t max_body;    /* 0: HTTP_DEFAULT_MAX_BODY */
  unsigned flags;     /* enum http_route_flags */
  struct http_perm perm; /* checked before the handler (not on NOAUTH routes) */
};

#define HTTP_DEFAULT_MAX_BODY (64 * 1024)

/* ---- The request, inside a handler ---- */

enum http_method http_req_method(const struct http_request *req);
/* The path without the query string, percent-decoding not applied. */
const char *http_req_path(const struct http_request *req);
/* A header's value by case-insensitive name, or NULL. */
const char *http_req_header(const struct http_request *req, const char *name);
/* A parameter: a path parameter, else a query-string parameter, else a field of a
 * form (application/x-www-form-urlencoded) or JSON object body. JSON numbers and
 * booleans come back in their JSON text form ("5", "true"). NULL if absent. */
const char *http_req_param(const struct http_request *req, const char *name);
/* Query-string and body parameters in order (path parameters excluded),
 * repeated names included: returns 1 and fills name/value for index i, 0 past
 * the end. */
int http_req_param_at(const struct http_request *req, int i, const char **name,
                      const char **value);
/* Typed parameters for handlers: `def` when absent; on a bad value they answer
 * 400 naming the parameter and return CORE_EINVAL, so a handler just returns.
 * Booleans take PBS's forms (core_parse_bool); integers must lie in [min, max]. */
int http_req_param_bool(struct http_request *req, const char *name, int def, int *out);
int http_req_param_int(struct http_request *req, const char *name, int64_t min, int64_t max,
                       int64_t def, int64_t *out);
/* The parsed JSON body (object), or NULL if the body was not JSON. */
yajl_val http_req_json(const struct http_request *req);
/* The body bytes as received (valid until the response is sent). */
struct core_slice http_req_body(const struct http_request *req);
/* A request body taken out of its request, so that a handler can answer
 * before it is done with the bytes (S3 datastores acknowledge a chunk while
 * its upload to the bucket still runs). The bytes keep their share of the
 * server's body budget until released, so the budget still bounds them. */
struct http_body {
  void *base;                 /* the bytes (NULL if the body was empty) */
  size_t len;
  struct http_server *server; /* private */
  size_t cap;                 /* private: body pool capacity, 0 if malloc'd */
  size_t charged;             /* private: budget bytes */
};
/* Moves the body out of `req`: http_req_body() is empty afterwards and the
 * caller owns `out` until http_body_release(). Taken bodies may hold at most
 * half of the server's body budget together, so that requests still being
 * received (of every datastore) always have the other half: past it nothing
 * is taken and -EBUSY is returned (the caller keeps using the request's
 * body and answers later). Loop thread. */
int http_req_take_body(struct http_request *req, struct http_body *out);
/* Gives the memory and its budget back. Valid after http_server_free() too:
 * the server is destroyed only once every taken body is back. Loop thread;
 * a released (or zeroed) struct is ignored. */
void http_body_release(struct http_body *b);
/* The authenticated identity ("root@pam!name"), or NULL on a NOAUTH route. */
const char *http_req_authid(const struct http_request *req);
/* The client's address as text ("192.0.2.1", "2001:db8::1"), "" if unknown. */
const char *http_req_peer(struct http_request *req);
/* The privileges the access hook found on the route's path (its business;
 * handlers that filter by ownership read them). */
uint32_t http_req_privs(const struct http_request *req);
/* True once the client has disconnected; the handler should still respond. */
int http_req_gone(const struct http_request *req);
/* The `ctx` of the route that matched. */
void *http_req_route_ctx(const struct http_request *req);
/* The loop this request runs on. */
uv_loop_t *http_req_loop(const struct http_request *req);

/* ---- Responding: exactly one call per request ---- */

/* {"data": <value>}: `value` is raw JSON text, or NULL for null. */
void http_respond_data(struct http_request *req, const char *value, size_t len);
/* {"data": <value>, "digest": "<digest>"}: PBS's shape for config reads. */
void http_respond_data_digest(struct http_request *req, const char *value, size_t len,
                              const char *digest);
/* {"data": <the text of j>}, then frees j. */
void http_respond_json(struct http_request *req, struct core_json *j);
/* {"data": null, "message": "..."} with the given status. */
void http_respond_error(struct http_request *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Maps a negative Cairn/libuv error to a status (404 for CORE_ENOTFOUND, ...) and
 * responds with `what: <strerror>`. */
void http_respond_errno(struct http_request *req, int err, const char *what);
/* Any body. `body` is copied. */
void http_respond_raw(struct http_request *req, int status, const char *content_type,
                      const void *body, size_t len);
/* Takes ownership of `body` (freed with core_free after it is sent). */
void http_respond_owned(struct http_request *req, int status, const char *content_type,
                        void *body, size_t len);
/* Large response bodies in recycled memory: a buffer of at least `len` bytes
 * from the server's body pool (http_bodypool.h; any thread; NULL when out of
 * memory), its capacity in *cap. http_respond_pooled sends it and gives it
 * back to the pool (a `cap` of 0: an owned body, freed as by
 * http_respond_owned); http_req_pool_put gives back one that is not sent. */
void *http_req_pool_get(struct http_request *req, size_t len, size_t *cap);
void http_req_pool_put(struct http_request *req, void *buf, size_t cap);
void http_respond_pooled(struct http_request *req, int status, const char *content_type,
                         void *body, size_t len, size_t cap);

/* Streaming: a response of known length produced piece by piece. The server
 * calls `pull` whenever it wants more (once at start, then after each piece is
 * written to the socket: back-pressure is built in). `pull` answers later with
 * http_stream_write(); the last piece has `last` set. */
typedef void (*http_pull_fn)(struct http_request *req, void *ctx);
void http_respond_stream(struct http_request *req, int status, const char *content_type,
                         uint64_t content_length, http_pull_fn pull, void *ctx);
/* Hands a piece (ownership moves to the server). `err` < 0 aborts the connection. */
void http_stream_write(struct http_request *req, void *data, size_t len, int last, int err);

/* Maps error codes to HTTP statuses (404, 409, 400, 413, ...). */
int http_status_for(int err);

/* ---- Authentication and access hooks ---- */

enum http_auth_result {
  HTTP_AUTH_OK = 0,        /* authid is filled in */
  HTTP_AUTH_DEFER = 1,     /* cannot decide now: the access hook authenticates later
                              (http_req_auth_deferred; the body is read meanwhile) */
  HTTP_AUTH_FAIL = 401,    /* missing or wrong credentials */
  HTTP_AUTH_LOCKED = 429,  /* too many failures from this address (set Retry-After) */
};

/* Called on the loop thread once the headers are in (not on NOAUTH routes).
 * Writes the identity into `authid` (at most `len` bytes) and returns one of
 * enum http_auth_result. Must not block. */
typedef int (*http_auth_fn)(void *ctx, struct http_request *req, char *authid, size_t len);

/* Called on the loop thread for every route but NOAUTH ones, after the body
 * and parameters are in, instead of the handler. It checks `perm` (and
 * finishes a deferred authentication) and then either calls
 * http_req_proceed() (the handler runs) or responds itself (403, ...). It
 * may do either later, after pool work. */
typedef void (*http_access_fn)(void *ctx, struct http_request *req,
                               const struct http_perm *perm);

/* For the hooks: */
int http_req_auth_deferred(const struct http_request *req);
void http_req_set_authid(struct http_request *req, const char *authid);
void http_req_set_privs(struct http_request *req, uint32_t privs);
/* Adds "Retry-After: <seconds>" to the response. */
void http_req_set_retry_after(struct http_request *req, unsigned seconds);
/* Runs the route's handler (once the access hook allowed the request). */
void http_req_proceed(struct http_request *req);

/* ---- Server ---- */

struct http_limits {
  size_t max_header_bytes;     /* request line + headers; default 16 KiB */
  unsigned max_connections;    /* default 16384 */
  uint64_t header_timeout_ms;  /* first byte to end of headers; default 15 s */
  uint64_t idle_timeout_ms;    /* keep-alive idle; default 60 s */
  uint64_t body_timeout_ms;    /* longest gap between body reads; default 30 s */
  uint64_t shutdown_grace_ms;  /* SIGTERM: in-flight requests may finish; 10 s */
  size_t body_budget;          /* request body bytes buffered at once, server-wide;
                                  default 64 MiB. A request whose Content-Length
                                  does not fit waits (its socket is not read)
                                  until earlier bodies are released. */
};

struct http_tls; /* a TLS server context (http_tls.h) */

struct http_server *http_server_new(uv_loop_t *loop, const struct http_limits *limits);
/* Adds routes (copied; patterns must be string literals or outlive the server). */
void http_server_add_routes(struct http_server *s, const struct http_route *routes, size_t n);
void http_server_set_auth(struct http_server *s, http_auth_fn fn, void *ctx);
void http_server_set_access(struct http_server *s, http_access_fn fn, void *ctx);
/* Listens on "HOST:PORT" or "[V6]:PORT"; with a TLS context unless NULL.
 * Returns 0 or a negative error (UV_EADDRINUSE, CORE_EINVAL...). */
int http_server_listen(struct http_server *s, const char *addr, struct http_tls *tls);
/* Serves an already-connected stream socket `fd` (plain, no TLS) exactly as
 * an accepted TCP connection: same limits, timers, parser, router, auth and
 * keep-alive. It may be one end of socketpair(AF_UNIX, SOCK_STREAM), which
 * lets tests and fuzz targets drive the real server without the network
 * from a single thread (write into the other end, run the loop with
 * UV_RUN_NOWAIT, read the answer). Over the connection limit it is answered
 * 503 and closed like an accepted one. Returns 0 and the server owns `fd`
 * (closed with the connection), or a negative error (UV_ECANCELED while
 * shutting down, or uv_tcp_open's) and `fd` stays the caller's. */
int http_server_adopt(struct http_server *s, int fd);
/* Serves connections on an already bound and listening TCP socket `fd`
 * (systemd socket activation), with a TLS context unless NULL. The server
 * owns `fd` from then on, also on failure. Returns 0 or a negative error. */
int http_server_listen_fd(struct http_server *s, int fd, struct http_tls *tls);
/* Replaces the TLS context of every TLS listener (certificate reload): new
 * connections use `tls`, open ones keep the context they started with. */
void http_server_set_tls(struct http_server *s, struct http_tls *tls);
/* Stops accepting, closes idle connections, lets in-flight requests finish within
 * the grace period, then calls `done`. */
void http_server_shutdown(struct http_server *s, void (*done)(void *ctx), void *ctx);
void http_server_free(struct http_server *s);
/* Number of open connections (for tests and metrics). */
unsigned http_server_connections(const struct http_server *s);
/* Metrics (http_metrics.c): a core_metrics collector (ctx: the server)
 * writing cairn_http_* and cairn_tls_* families: responses by route pattern,
 * method and status code, bytes in and out, connections. Counting is on by
 * default; http_server_metrics_off() stops it (before serving) for
 * benchmarks of its cost. */
struct core_buf;
int http_server_metrics_collect(void *ctx, struct core_buf *out);
void http_server_metrics_off(struct http_server *s);

/* Percent-decodes `len` bytes of `in` into `out` (at least len+1 bytes), '+' as a
 * space when `plus` is set. Returns the decoded length or CORE_EPARSE. */
int http_url_decode(const char *in, size_t len, char *out, int plus);

#endif
