/* http_internal.h: structures shared by the server's files. Not for handlers. */
#ifndef HTTP_INTERNAL_H
#define HTTP_INTERNAL_H

#include "http/http_bodypool.h"
#include "http/http.h"
#include "http/http_tls.h"

#include <llhttp.h>

#define HTTP_MAX_HEADERS 64
#define HTTP_MAX_PARAMS 64
#define HTTP_MAX_PATH_PARAMS 8
#define HTTP_READ_BUF (64 * 1024)

struct http_route_entry {
  struct http_route route;
  int nseg;              /* segments in the pattern */
  char **seg;            /* owned: each literal segment, or NULL for a parameter */
  char **name;           /* owned: the parameter's name, or NULL for a literal */
};

struct http_router {
  struct http_route_entry *entries; /* owned array */
  size_t n, cap;
};

/* Result of matching: the route, or why none. */
struct http_match {
  const struct http_route_entry *entry;
  int status;            /* 0 when matched; else 400 (bad parameter), 404 or 405 */
  int bad_param;         /* a path parameter had a bad escape or a NUL */
  int nparams;
  struct { const char *name; char *value; } params[HTTP_MAX_PATH_PARAMS]; /* values owned */
};

void http_router_init(struct http_router *r);
void http_router_free(struct http_router *r);
void http_router_add(struct http_router *r, const struct http_route *route);
/* Matches a path (without query). Parameter values are percent-decoded copies. */
void http_router_match(const struct http_router *r, enum http_method m, const char *path,
                       size_t len, struct http_match *out);
void http_match_free(struct http_match *m);

struct http_param {
  char *name;  /* owned */
  char *value; /* owned */
};

struct http_header {
  uint32_t name_off, name_len;
  uint32_t value_off, value_len;
};

/* Where a request is in its life. */
enum http_req_state {
  HTTP_REQ_HEADERS,   /* reading the request line and headers */
  HTTP_REQ_BODY,      /* reading the body */
  HTTP_REQ_HANDLER,   /* dispatched; waiting for the handler to respond */
  HTTP_REQ_SENDING,   /* response queued or streaming */
  HTTP_REQ_DONE,      /* response fully written */
};

struct http_conn;

struct http_request {
  struct http_conn *conn;     /* NULL once the client is gone */
  struct http_server *server;
  enum http_req_state state;
  enum http_method method;
  struct core_buf head;       /* url, then header names and values, NUL-separated */
  uint32_t url_len;           /* bytes of the url at the start of head */
  char *path;                 /* owned, NUL-terminated, without the query */
  const char *query;          /* inside head, after '?', or "" */
  struct http_header headers[HTTP_MAX_HEADERS];
  int nheaders;
  int last_was_value;
  struct core_buf body;
  size_t max_body;
  size_t body_charged;        /* bytes of body counted against the server budget */
  int body_pooled;            /* body memory comes from server->bodies */
  struct http_match match;
  struct http_param params[HTTP_MAX_PARAMS];
  int nparams;
  yajl_val json;              /* owned */
  char authid[128];
  int auth_deferred;          /* the auth hook said HTTP_AUTH_DEFER */
  uint32_t privs;             /* set by the access hook */
  unsigned retry_after;       /* seconds for a Retry-After header, 0: none */
  char peer[64];              /* client address, filled on first use */
  int keep_alive;
  int reject_status;          /* set at headers time: respond with this and close */
  char reject_msg[160];
  /* Streaming response. */
  http_pull_fn pull;
  void *pull_ctx;
  uint64_t stream_left;       /* bytes still to come */
  int stream_pulling;         /* a pull is outstanding */
};

enum http_conn_flags {
  HTTP_CONN_READING = 1 << 0,   /* uv_read_start is active */
  HTTP_CONN_CLOSING = 1 << 1,   /* uv_close called or scheduled */
  HTTP_CONN_PAUSED = 1 << 2,    /* parser paused after a complete request */
  HTTP_CONN_CLOSE_AFTER = 1 << 3, /* close once the response is written */
  HTTP_CONN_EOF = 1 << 4,       /* peer finished sending */
  HTTP_CONN_BUDGET = 1 << 5,    /* paused until the body budget has room */
};

struct http_conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  struct http_server *server;
  struct http_tls_session *tls;   /* NULL on plain TCP */
  llhttp_t parser;
  unsigned flags;
  struct http_request *req;       /* the request being read or served */
  char *pending;                  /* owned: plaintext not yet parsed (after a pause) */
  size_t pending_len;
  unsigned writes;                /* uv_write requests in flight */
  struct http_conn *prev, *next;  /* server's list */
  struct http_conn *budget_next;  /* server's queue of connections waiting for budget */
  int handles;                    /* handles still open (tcp, timer) */
};

struct http_listener {
  uv_tcp_t tcp;
  struct http_server *server;
  struct http_tls *tls;           /* reference held; NULL for plain */
  struct http_listener *next;
};

struct http_server {
  uv_loop_t *loop;
  struct http_limits limits;
  struct http_router router;
  http_auth_fn auth;
  void *auth_ctx;
  http_access_fn access;
  void *access_ctx;
  struct http_listener *listeners;
  struct http_conn *conns;        /* list of open connections */
  unsigned nconns;
  int shutting_down;
  size_t body_bytes;              /* bodies buffered now (see limits.body_budget) */
  struct http_bodypool bodies;    /* recycled memory for large bodies */
  struct http_conn *budget_head, **budget_tail; /* FIFO of connections waiting */
  uv_timer_t budget_wake;         /* resumes waiters from a clean stack */
  uv_timer_t pool_trim;           /* gives idle body memory back (unref'd) */
  uv_timer_t grace;
  void (*shutdown_done)(void *ctx);
  void *shutdown_ctx;
  llhttp_settings_t settings;
};

/* http_request.c */
struct http_request *http__req_new(struct http_conn *c);
void http__req_free(struct http_request *req);
int http__req_parse_params(struct http_request *req);

/* http_server.c */
void http__body_release(struct http_server *s, size_t bytes);
/* Frees an owned response body, or hands it back to the body pool when
 * `pool_cap` (its capacity there) is not 0. */
void http__release_body(struct http_server *s, void *body, size_t pool_cap);
/* Sends and takes ownership of `head` and `body`; a body with a non-zero
 * `body_pool_cap` goes back to the server's body pool, others are freed. */
void http__conn_send(struct http_conn *c, void *head, size_t head_len, void *body,
                     size_t body_len, size_t body_pool_cap, int last);
void http__conn_response_done(struct http_conn *c);
void http__conn_close(struct http_conn *c);

#endif
