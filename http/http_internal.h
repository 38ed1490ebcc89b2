/* http_internal.h: structures shared by the server's files. Not for handlers. */
#ifndef HTTP_INTERNAL_H
#define HTTP_INTERNAL_H

#include "http/http_bodypool.h"
#include "http/http.h"
#include "http/http_tls.h"
#include "core/core_metrics.h"

#include <llhttp.h>

#define HTTP_MAX_HEADERS 64
#define HTTP_MAX_PARAMS 64
#define HTTP_MAX_PATH_PARAMS 8
#define HTTP_READ_BUF (64 * 1024)
/* Response counters per status code 100..599 (http_metrics.c). */
#define HTTP_STATUS_MIN 100
#define HTTP_STATUS_SLOTS 500

struct http_route_entry {
  struct http_route route;
  int nseg;              /* segments in the pattern */
  char **seg;            /* owned: each literal segment, or NULL for a parameter */
  char **name;           /* owned: the parameter's name, or NULL for a literal */
  struct core_counter *responses; /* owned: [HTTP_STATUS_SLOTS], by status code */
  struct core_hist *latency;      /* owned: first byte parsed to response queued */
};

struct http_router {
  struct http_route_entry *entries; /* owned array */
  size_t n, cap;
};

/* Result of matching: the route, or why none. Matching allocates nothing:
 * a path parameter is first only a span of the request path, and gets its
 * decoded value from http__match_decode() once the request is known to be
 * served (after authentication), so a refused request costs no memory that
 * grows with its path. */
struct http_match {
  const struct http_route_entry *entry;
  int status;            /* 0 when matched; else 404 or 405 */
  int nparams;
  struct {
    const char *name;    /* the pattern's (owned by the router) */
    const char *raw;     /* the segment inside the matched path, still encoded */
    size_t raw_len;
    const char *value;   /* decoded, inside `decoded`; NULL until decoded */
  } params[HTTP_MAX_PATH_PARAMS];
  char *decoded;         /* owned: every decoded value, NUL-terminated, back to back */
};

void http__router_init(struct http_router *r);
void http__router_free(struct http_router *r);
void http__router_add(struct http_router *r, const struct http_route *route);
/* Matches a path (without query). Parameters are spans of `path`, which must
 * outlive the match. Allocates nothing. */
void http__router_match(const struct http_router *r, enum http_method m, const char *path,
                       size_t len, struct http_match *out);
/* Percent-decodes the matched parameters (one allocation, at most the path's
 * length). Returns 0, or CORE_EPARSE for a bad escape or a decoded NUL (which
 * would let "a%00b" pass name checks as "a"). */
int http__match_decode(struct http_match *m);
void http__match_free(struct http_match *m);

/* The line discipline of a header section (http_headscan.c). */
enum http_headscan_state {
  HTTP_HEADSCAN_LINE_START, /* at the start of a line */
  HTTP_HEADSCAN_LINE,       /* inside a non-empty line */
  HTTP_HEADSCAN_CR,         /* CR ending a non-empty line */
  HTTP_HEADSCAN_CR_EMPTY,   /* CR at the start of a line */
  HTTP_HEADSCAN_DONE,       /* the section has ended: later bytes are not its */
};

struct http_headscan {
  unsigned char state;      /* enum http_headscan_state */
  unsigned char started;    /* past the start line (from the outset in a trailer) */
};

/* Starts scanning a request head, or (trailer set) a chunked body's trailer. */
void http__headscan_start(struct http_headscan *s, int trailer);
/* Scans the next bytes of the section (bytes past its end are ignored; the
 * state is then HTTP_HEADSCAN_DONE). Returns 0, or CORE_EPROTO with *why set
 * to a static description of the refused shape. */
int http__headscan_feed(struct http_headscan *s, const char *data, size_t len,
                        const char **why);

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
  uint64_t begin_ns;          /* uv_hrtime() when its first byte was parsed */
  enum http_req_state state;
  enum http_method method;
  struct core_buf head;       /* url, then header names and values, NUL-separated */
  uint32_t url_len;           /* bytes of the url at the start of head */
  const char *path;           /* inside head: the url, cut at '?' */
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
  HTTP_CONN_TRAILER = 1 << 6,   /* parser paused at the last chunk: trailer next */
  HTTP_CONN_TLS_UP = 1 << 7,    /* TLS handshake done (counted once) */
  HTTP_CONN_DEFERRED = 1 << 8,  /* over the loop iteration's read budget */
};

/* Bytes all connections together may read in one loop iteration. Past it a
 * connection's next read is left in the kernel until the next iteration, so
 * one iteration's work (TLS decryption, copies, parsing) stays around a
 * millisecond however many uploads stream at once, and a small request on
 * another connection waits for at most that, not for every upload's socket
 * buffer to be drained. */
#define HTTP_ITER_READ_BUDGET (1024 * 1024)
/* Past it, connections between requests or in a request head still read, up
 * to this much more per iteration and this much per read: heads, not bodies. */
#define HTTP_ITER_HEAD_BUDGET (256 * 1024)
#define HTTP_HEAD_READ (16 * 1024)

struct http_conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  struct http_server *server;
  struct http_tls_session *tls;   /* NULL on plain TCP */
  llhttp_t parser;
  struct http_headscan scan;      /* checks each header section before llhttp */
  unsigned flags;
  struct http_request *req;       /* the request being read or served */
  char *pending;                  /* owned: plaintext not yet parsed (after a pause) */
  size_t pending_len;
  unsigned writes;                /* uv_write requests in flight */
  struct http_conn *prev, *next;  /* server's list */
  struct http_conn *budget_next;  /* server's queue of connections waiting for budget */
  struct http_conn *defer_next;   /* server's list of connections deferred to the
                                     next iteration (HTTP_CONN_DEFERRED) */
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
  unsigned max_conns;             /* limits.max_connections, lowered to fit RLIMIT_NOFILE */
  int reserve_fd;                 /* spare descriptor for refusing at EMFILE; -1 if none */
  int refusing;                   /* in a burst of refused connections (logged once) */
  unsigned long long refused;     /* connections refused in this burst */
  uint64_t refused_at;            /* loop time of the last refusal */
  size_t body_bytes;              /* bodies buffered now (see limits.body_budget) */
  unsigned bodies_out;            /* bodies taken out of requests, not yet released */
  size_t bodies_out_bytes;        /* their budget bytes (at most half the budget) */
  struct http_bodypool bodies;    /* recycled memory for large bodies */
  struct http_conn *budget_head, **budget_tail; /* FIFO of connections waiting */
  uv_timer_t budget_wake;         /* resumes waiters from a clean stack */
  uv_timer_t pool_trim;           /* gives idle body memory back (unref'd) */
  size_t iter_bytes;              /* read in this loop iteration (HTTP_ITER_READ_BUDGET) */
  size_t iter_head_bytes;         /* of which past it, into heads (HTTP_ITER_HEAD_BUDGET) */
  struct http_conn *defer_head;   /* connections waiting for the next iteration */
  uv_prepare_t iter_prepare;      /* starts each iteration's budget (unref'd) */
  uv_timer_t grace;
  int freed;                      /* http_server_free() is done with it: the
                                     last connection to close destroys it */
  void (*shutdown_done)(void *ctx);
  void *shutdown_ctx;
  llhttp_settings_t settings;
  struct http_stats *stats;       /* owned; NULL: metrics off (no counting) */
};

/* Counters of one server (http_metrics.c). Loop thread writes, atomics so
 * a scrape may read them from anywhere. */
struct http_stats {
  struct core_counter rx_bytes;       /* read from sockets (TLS included) */
  struct core_counter tx_bytes;       /* written to sockets */
  struct core_counter accepted;       /* connections served */
  struct core_counter refused;        /* connections refused (limit, fds) */
  struct core_counter tls_handshakes; /* completed */
  struct core_counter tls_failures;   /* failed before completing */
  struct core_counter unmatched[HTTP_STATUS_SLOTS]; /* no route (404, 405, early errors) */
};

/* Counts a response's status for its route (or as unmatched). */
void http__count_response(struct http_request *req, int status);

/* http_request.c */
struct http_request *http__req_new(struct http_conn *c);
void http__req_free(struct http_request *req);
int http__req_parse_params(struct http_request *req);

/* http_server.c */
/* Gives `bytes` of request-body budget back (limits.body_budget) and wakes
 * connections waiting for it. */
void http__budget_release(struct http_server *s, size_t bytes);
/* A taken body (http_req_take_body) was released with `charged` budget bytes. */
void http__server_body_back(struct http_server *s, size_t charged);
/* Frees an owned response body, or hands it back to the body pool when
 * `pool_cap` (its capacity there) is not 0. */
void http__body_free(struct http_server *s, void *body, size_t pool_cap);
/* Sends and takes ownership of `head` and `body`; a body with a non-zero
 * `body_pool_cap` goes back to the server's body pool, others are freed. */
void http__conn_send(struct http_conn *c, void *head, size_t head_len, void *body,
                     size_t body_len, size_t body_pool_cap, int last);
void http__conn_response_done(struct http_conn *c);
void http__conn_close(struct http_conn *c);

#endif
