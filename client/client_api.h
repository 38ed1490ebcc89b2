/* client_api.h: the client's connection to a Cairn server.
 *
 * DESIGN. The backup and restore pipelines are plain threads (reading files,
 * hashing and compressing block them anyway), so they want blocking calls,
 * while http_client.h lives on a libuv loop. client_api owns one I/O thread
 * that runs a loop and an http_client with a keep-alive pool of
 * `max_conns` connections; client_api_call() may be called from any number
 * of threads at once, hands its request to the loop through a uv_async and
 * sleeps on a semaphore until the response is in. N threads calling at once
 * therefore use up to N connections in parallel.
 *
 * Repository strings are `[[USER@REALM[!TOKEN]]@]HOST[:PORT]:STORE` (an
 * IPv6 host goes in brackets); the default token is root@pam!root and the
 * default port 8007. A token authenticates every request with its secret; a
 * user (a `pbs`-realm one, with a password) logs in once for a ticket, which
 * then goes along as PBS's cookie plus CSRF header. Tickets last two hours:
 * long-running jobs should use a token.
 *
 * TLS: on by default. The server certificate must verify against the system
 * CAs or match the pinned SHA-256 fingerprint. When it does not,
 * client_api_new() fails with CORE_ECERT and puts the server's fingerprint
 * in the error text so the user can decide to pin it.
 */
#ifndef CLIENT_API_H
#define CLIENT_API_H

#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_tree.h>

#include "core/core_buf.h"

#define CLIENT_DEFAULT_PORT 8007
#define CLIENT_DEFAULT_AUTHID "root@pam!root"

struct client_repo {
  char *authid; /* owned: "user@realm!token", or "user@realm" (password login) */
  char *host;   /* owned: without brackets */
  int port;
  char *store;  /* owned */
};

/* Parses a repository string. Returns 0 or CORE_EINVAL (with a reason in
 * `err`). Free with client_repo_free (also after failure). */
int client_repo_parse(const char *s, struct client_repo *r, char *err, size_t errlen);
void client_repo_free(struct client_repo *r);

struct client_api_config {
  const struct client_repo *repo; /* copied */
  const char *secret;       /* the token's secret, copied (token repositories) */
  const char *password;     /* the user's password (user repositories); not kept */
  const char *fingerprint;  /* pinned SHA-256 of the server certificate, or NULL */
  const char *ca_file;      /* NULL: the system CA store */
  int plain_http;           /* tests and benchmarks: no TLS */
  unsigned max_conns;       /* 0: 4 */
};

struct client_api;

/* Starts the I/O thread and checks that the server answers (one GET of the
 * API root, which also settles TLS trust). Returns 0, CORE_ECERT (untrusted
 * certificate: `err` shows its fingerprint), CORE_ETLS, a transport error, or
 * CORE_EINVAL. */
int client_api_new(const struct client_api_config *cfg, struct client_api **out, char *err,
                   size_t errlen);
void client_api_free(struct client_api *api);

/* The store name of the repository (borrowed). */
const char *client_api_store(const struct client_api *api);

struct http_bodypool;

struct client_resp {
  int status;   /* HTTP status */
  char *body;   /* owned, NUL-terminated, may be empty */
  size_t len;
  struct http_bodypool *pool; /* body is a buffer of this pool, or NULL (core_free) */
  size_t cap;                 /* the pool buffer's capacity */
};
/* Frees the body, or gives it back to its pool. */
void client_resp_free(struct client_resp *r);

/* One blocking request; thread-safe. `body` must stay valid during the call.
 * `ctype` defaults to application/octet-stream when a body is given.
 * `max_body` 0 means 64 MiB. Returns 0 (look at resp->status) or a transport
 * error (UV_E*, CORE_ETIMEOUT, CORE_ETLS, CORE_EPROTO, CORE_ETOOBIG). */
int client_api_call(struct client_api *api, const char *method, const char *target,
                    const void *body, size_t len, const char *ctype, size_t max_body,
                    struct client_resp *resp);

/* A GET like client_api_call whose body, when the response announces its
 * length, is received into a buffer of `pool` (resp->pool and resp->cap then
 * say so): chunk downloads reuse memory instead of fragmenting the heap. */
int client_api_get_pooled(struct client_api *api, const char *target, size_t max_body,
                          struct http_bodypool *pool, struct client_resp *resp);

/* A call that expects a 2xx JSON answer {"data": ...}. On success *tree is
 * the whole parsed document (yajl_tree_free it) and *data its "data" member
 * (may be a JSON null). A non-2xx answer returns CORE_EPROTO, CORE_ENOTFOUND
 * (404), CORE_EEXISTS (409), CORE_EINVAL (400) or CORE_ECRYPTO (401/403),
 * with the server's message in `err`. */
int client_api_json(struct client_api *api, const char *method, const char *target,
                    const void *body, size_t len, const char *ctype, yajl_val *tree,
                    yajl_val *data, char *err, size_t errlen);

/* Maps an HTTP status to an error code as client_api_json does, and writes
 * "METHOD TARGET: STATUS MESSAGE" to `err`. */
int client_api_status_error(const char *method, const char *target,
                            const struct client_resp *resp, char *err, size_t errlen);

/* Appends "&key=value" (or "?key=value" when `b` holds no '?' yet) with the
 * value percent-encoded. Returns 0 or a buffer error. */
int client_query_add(struct core_buf *b, const char *key, const char *value);
int client_query_add_u64(struct core_buf *b, const char *key, uint64_t value);

/* Statistics of the connection pool: connections opened and reused. */
void client_api_conn_stats(struct client_api *api, uint64_t *opened, uint64_t *reused);

#endif
