/* client_api.c: blocking API calls over an http_client on an I/O thread. */
#include "client/client_api.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_json.h"
#include "http/http_bodypool.h"
#include "http/http_client.h"
#include "http/http_tls.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

/* ---- Repository strings ---- */

void client_repo_free(struct client_repo *r)
{
  core_free(r->authid);
  core_free(r->host);
  core_free(r->store);
  memset(r, 0, sizeof(*r));
}

int client_repo_parse(const char *s, struct client_repo *r, char *err, size_t errlen)
{
  const char *hostpart, *at, *colon;
  memset(r, 0, sizeof(*r));
  r->port = CLIENT_DEFAULT_PORT;
  if (s == NULL || *s == '\0') {
    snprintf(err, errlen, "no repository given (--repository or CAIRN_REPOSITORY)");
    return CORE_EINVAL;
  }
  /* The token id contains one '@' (user@realm) and the separator is the
   * last '@' before the host. */
  at = strrchr(s, '@');
  if (at && strchr(s, '!') && at > strchr(s, '!')) {
    r->authid = core_strndup(s, (size_t)(at - s));
    hostpart = at + 1;
  } else if (at && !strchr(s, '!') && strchr(s, '@') != at) {
    /* user@realm@host:store: a user who logs in with a password */
    r->authid = core_strndup(s, (size_t)(at - s));
    hostpart = at + 1;
  } else if (at && !strchr(s, '!')) {
    snprintf(err, errlen, "repository \"%s\": the user part must be USER@REALM or a token "
             "id USER@REALM!TOKEN", s);
    return CORE_EINVAL;
  } else {
    r->authid = core_strdup(CLIENT_DEFAULT_AUTHID);
    hostpart = s;
  }
  if (*hostpart == '[') {
    const char *close = strchr(hostpart, ']');
    if (close == NULL || close == hostpart + 1)
      goto bad;
    r->host = core_strndup(hostpart + 1, (size_t)(close - hostpart - 1));
    colon = close + 1;
    if (*colon != ':')
      goto bad;
  } else {
    colon = strchr(hostpart, ':');
    if (colon == NULL || colon == hostpart)
      goto bad;
    r->host = core_strndup(hostpart, (size_t)(colon - hostpart));
  }
  /* colon points at ':' before port or store */
  {
    const char *rest = colon + 1;
    const char *next = strchr(rest, ':');
    if (next) {
      char *end;
      long port = strtol(rest, &end, 10);
      if (end != next || port <= 0 || port > 65535)
        goto bad;
      r->port = (int)port;
      rest = next + 1;
    }
    if (*rest == '\0' || strchr(rest, ':') || strchr(rest, '/'))
      goto bad;
    r->store = core_strdup(rest);
  }
  return 0;
bad:
  snprintf(err, errlen, "repository \"%s\" is not [[USER@REALM[!TOKEN]]@]HOST[:PORT]:STORE",
           s);
  return CORE_EINVAL;
}

/* ---- The I/O thread ---- */

struct call {
  struct call *next;
  struct http_client_request req;
  struct http_client_header hdrs[4];
  uv_sem_t done;
  int status;              /* transport result */
  struct client_resp *resp;
  struct core_buf body;    /* the response body, sized from Content-Length */
  struct http_bodypool *pool; /* where bodies of known length go, or NULL */
  size_t pooled;              /* capacity of body's pool buffer, 0 if not one */
};

struct client_api {
  uv_loop_t loop;
  uv_thread_t thread;
  uv_async_t wake;
  uv_mutex_t mu;            /* guards queue and closing */
  struct call *head, *tail; /* calls not yet handed to the http client */
  int closing;
  struct http_client *http; /* loop thread only */
  struct http_tls *tls;
  const char *auth_name;    /* "Authorization" (token) or "Cookie" (ticket) */
  char *auth;               /* "PBSAPIToken=id:secret" or "PBSAuthCookie=ticket" */
  char *csrf;               /* the ticket's CSRFPreventionToken, or NULL */
  char *store;
  char *host;
  int port;
};

/* Bodies are received straight into one buffer of the announced size:
 * chunks are megabytes, and the client's own buffering would grow by
 * doubling and then be copied once more. */
static int call_headers(struct http_client_req *req, void *arg)
{
  struct call *c = arg;
  const char *cl = http_client_req_header(req, "Content-Length");
  if (cl) {
    char *end;
    unsigned long long n = strtoull(cl, &end, 10);
    if (*end != '\0' || n > c->body.max)
      return CORE_ETOOBIG;
    if (c->pool && n > 0) {
      char *mem = http_bodypool_get(c->pool, (size_t)n + 1, &c->pooled);
      if (mem == NULL)
        return UV_ENOMEM;
      core_buf_adopt(&c->body, mem, c->pooled);
      c->body.max = (size_t)n; /* never grows out of the pool's buffer */
    } else if (n > 0 && core_buf_reserve(&c->body, (size_t)n) < 0) {
      return CORE_ETOOBIG;
    }
  }
  return 0;
}

static int call_body(struct http_client_req *req, const char *data, size_t len, void *arg)
{
  struct call *c = arg;
  (void)req;
  return core_buf_append(&c->body, data, len) < 0 ? CORE_ETOOBIG : 0;
}

static void call_done(struct http_client_req *req, int status, void *arg)
{
  struct call *c = arg;
  c->status = status;
  if (status == 0) {
    size_t len = 0;
    char *body = core_buf_steal(&c->body, &len);
    c->resp->status = http_client_req_status(req);
    if (body == NULL)
      body = core_strdup("");
    c->resp->body = body;
    c->resp->len = len;
    c->resp->pool = c->pooled ? c->pool : NULL;
    c->resp->cap = c->pooled;
    c->pooled = 0;
  }
  uv_sem_post(&c->done);
}

static void http_freed(void *arg)
{
  struct client_api *api = arg;
  uv_close((uv_handle_t *)&api->wake, NULL);
}

static void on_wake(uv_async_t *a)
{
  struct client_api *api = a->data;
  struct call *list;
  int closing;

  uv_mutex_lock(&api->mu);
  list = api->head;
  api->head = api->tail = NULL;
  closing = api->closing;
  uv_mutex_unlock(&api->mu);

  while (list) {
    struct call *c = list;
    int rc;
    list = c->next;
    rc = closing ? CORE_EABORTED : http_client_send(api->http, &c->req, NULL);
    if (rc < 0) {
      c->status = rc;
      uv_sem_post(&c->done);
    }
  }
  if (closing && api->http) {
    struct http_client *h = api->http;
    api->http = NULL;
    http_client_free(h, http_freed, api);
  }
}

static void io_thread(void *arg)
{
  struct client_api *api = arg;
  pthread_setname_np(pthread_self(), "cairn-io");
  uv_run(&api->loop, UV_RUN_DEFAULT);
}

const char *client_api_store(const struct client_api *api)
{
  return api->store;
}

void client_resp_free(struct client_resp *r)
{
  if (r->pool)
    http_bodypool_put(r->pool, r->body, r->cap);
  else
    core_free(r->body);
  r->body = NULL;
  r->len = 0;
  r->pool = NULL;
  r->cap = 0;
}

/* A body still in the call (the call failed): freed, or back to its pool. */
static void call_body_free(struct call *c)
{
  if (c->pooled) {
    http_bodypool_put(c->pool, core_buf_steal(&c->body, NULL), c->pooled);
    c->pooled = 0;
  }
  core_buf_free(&c->body);
}

static int call_run(struct client_api *api, const char *method, const char *target,
                    const void *body, size_t len, const char *ctype, size_t max_body,
                    struct http_bodypool *pool, struct client_resp *resp)
{
  struct call c;
  size_t nh = 0;

  memset(&c, 0, sizeof(c));
  memset(resp, 0, sizeof(*resp));
  c.resp = resp;
  c.pool = pool;
  if (api->auth) {
    c.hdrs[nh].name = api->auth_name;
    c.hdrs[nh++].value = api->auth;
  }
  if (api->csrf) {
    c.hdrs[nh].name = "CSRFPreventionToken";
    c.hdrs[nh++].value = api->csrf;
  }
  if (body || len) {
    c.hdrs[nh].name = "Content-Type";
    c.hdrs[nh++].value = ctype ? ctype : "application/octet-stream";
  }
  c.req.method = method;
  c.req.target = target;
  c.req.headers = c.hdrs;
  c.req.n_headers = nh;
  c.req.body = body;
  c.req.body_len = len;
  core_buf_init(&c.body, max_body ? max_body : ((size_t)64 << 20));
  c.req.max_body = c.body.max;
  c.req.on_headers = call_headers;
  c.req.on_body = call_body;
  c.req.on_done = call_done;
  c.req.arg = &c;
  if (uv_sem_init(&c.done, 0) != 0) {
    core_buf_free(&c.body);
    return -ENOMEM;
  }

  uv_mutex_lock(&api->mu);
  if (api->closing) {
    uv_mutex_unlock(&api->mu);
    uv_sem_destroy(&c.done);
    core_buf_free(&c.body);
    return CORE_EABORTED;
  }
  if (api->tail)
    api->tail->next = &c;
  else
    api->head = &c;
  api->tail = &c;
  uv_mutex_unlock(&api->mu);
  uv_async_send(&api->wake);

  uv_sem_wait(&c.done);
  uv_sem_destroy(&c.done);
  call_body_free(&c);
  if (c.status < 0)
    client_resp_free(resp);
  return c.status;
}

int client_api_call(struct client_api *api, const char *method, const char *target,
                    const void *body, size_t len, const char *ctype, size_t max_body,
                    struct client_resp *resp)
{
  return call_run(api, method, target, body, len, ctype, max_body, NULL, resp);
}

int client_api_get_pooled(struct client_api *api, const char *target, size_t max_body,
                          struct http_bodypool *pool, struct client_resp *resp)
{
  return call_run(api, "GET", target, NULL, 0, NULL, max_body, pool, resp);
}

/* The server's "message" when the body is JSON, else the body's start. */
static void server_message(const struct client_resp *resp, char *out, size_t outlen)
{
  yajl_val tree = NULL;
  const char *msg = NULL;
  if (resp->len > 0 && core_json_parse(resp->body, resp->len, &tree, NULL, 0) == 0)
    msg = core_json_get_str(tree, "message");
  if (msg)
    snprintf(out, outlen, "%s", msg);
  else
    snprintf(out, outlen, "%.200s", resp->body ? resp->body : "");
  if (tree)
    yajl_tree_free(tree);
  /* one line */
  for (char *p = out; *p; p++)
    if (*p == '\n' || *p == '\r')
      *p = ' ';
}

int client_api_status_error(const char *method, const char *target,
                            const struct client_resp *resp, char *err, size_t errlen)
{
  char msg[300];
  const char *path_end;
  server_message(resp, msg, sizeof(msg));
  /* The query string can hold long digests; the path is enough to tell the
   * call apart. */
  path_end = strchr(target, '?');
  snprintf(err, errlen, "%s %.*s: HTTP %d %s", method,
           (int)(path_end ? (size_t)(path_end - target) : strlen(target)), target,
           resp->status, msg);
  switch (resp->status) {
  case 400:
    return CORE_EINVAL;
  case 401:
  case 403:
    return CORE_ECRYPTO;
  case 404:
    return CORE_ENOTFOUND;
  case 409:
    return CORE_EEXISTS;
  default:
    return CORE_EPROTO;
  }
}

int client_api_json(struct client_api *api, const char *method, const char *target,
                    const void *body, size_t len, const char *ctype, yajl_val *tree,
                    yajl_val *data, char *err, size_t errlen)
{
  struct client_resp resp;
  char perr[128];
  int rc = client_api_call(api, method, target, body, len, ctype, 0, &resp);
  *tree = NULL;
  *data = NULL;
  if (rc < 0) {
    snprintf(err, errlen, "%s %s: %s", method, target, core_strerror(rc));
    return rc;
  }
  if (resp.status < 200 || resp.status > 299) {
    rc = client_api_status_error(method, target, &resp, err, errlen);
    client_resp_free(&resp);
    return rc;
  }
  if (core_json_parse(resp.body, resp.len, tree, perr, sizeof(perr)) != 0) {
    snprintf(err, errlen, "%s %s: answer is not JSON: %s", method, target, perr);
    client_resp_free(&resp);
    return CORE_EPROTO;
  }
  client_resp_free(&resp);
  *data = core_json_get(*tree, "data");
  return 0;
}

/* ---- Query strings ---- */

int client_query_add(struct core_buf *b, const char *key, const char *value)
{
  static const char hex[] = "0123456789ABCDEF";
  int rc = core_buf_printf(b, "%c%s=", b->base && strchr(b->base, '?') ? '&' : '?', key);
  for (const unsigned char *p = (const unsigned char *)value; rc == 0 && *p; p++) {
    if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
        *p == '-' || *p == '_' || *p == '.' || *p == '~') {
      rc = core_buf_append(b, p, 1);
    } else {
      char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
      rc = core_buf_append(b, e, 3);
    }
  }
  return rc;
}

int client_query_add_u64(struct core_buf *b, const char *key, uint64_t value)
{
  char num[32];
  snprintf(num, sizeof(num), "%llu", (unsigned long long)value);
  return client_query_add(b, key, num);
}

/* ---- Setup ---- */

/* Connects with verification off to learn the certificate's fingerprint,
 * only to show it in the refusal message. Blocking, bounded by 5 s. */
static void probe_fingerprint(const char *host, int port, char *out, size_t outlen)
{
  struct addrinfo hints = {0}, *ai = NULL;
  struct http_tls *tls = NULL;
  struct http_tls_session *s = NULL;
  char portstr[16];
  int fd = -1;

  snprintf(out, outlen, "unknown");
  snprintf(portstr, sizeof(portstr), "%d", port);
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host, portstr, &hints, &ai) != 0)
    return;
  fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0)
    goto out;
  if (http_tls_client_new(NULL, NULL, 0, &tls) != 0)
    goto out;
  s = http_tls_session_new(tls, host);
  for (int round = 0; round < 50; round++) {
    int hs = http_tls_handshake(s);
    size_t len, pool_cap; /* no pool: always 0 */
    void *o = http_tls_take_output(s, &len, &pool_cap);
    if (o) {
      ssize_t w = send(fd, o, len, MSG_NOSIGNAL);
      core_free(o);
      if (w != (ssize_t)len)
        break;
    }
    if (hs == 1) {
      snprintf(out, outlen, "%s", http_tls_peer_fingerprint(s));
      break;
    }
    if (hs < 0)
      break;
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0)
      break;
    char buf[16384];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0 || http_tls_feed(s, buf, (size_t)n) != 0)
      break;
  }
out:
  if (s)
    http_tls_session_free(s);
  if (tls)
    http_tls_unref(tls);
  if (fd >= 0)
    close(fd);
  if (ai)
    freeaddrinfo(ai);
}

void client_api_conn_stats(struct client_api *api, uint64_t *opened, uint64_t *reused)
{
  struct http_client_stats st;
  memset(&st, 0, sizeof(st));
  uv_mutex_lock(&api->mu);
  if (api->http)
    http_client_get_stats(api->http, &st);
  uv_mutex_unlock(&api->mu);
  *opened = st.conns_opened;
  *reused = st.conns_reused;
}

static void api_teardown(struct client_api *api, int thread_started)
{
  if (thread_started) {
    uv_mutex_lock(&api->mu);
    api->closing = 1;
    uv_mutex_unlock(&api->mu);
    uv_async_send(&api->wake);
    uv_thread_join(&api->thread);
  }
  uv_loop_close(&api->loop);
  uv_mutex_destroy(&api->mu);
  if (api->tls)
    http_tls_unref(api->tls);
  if (api->auth)
    explicit_bzero(api->auth, strlen(api->auth));
  core_free(api->auth);
  core_free(api->csrf);
  core_free(api->store);
  core_free(api->host);
  core_free(api);
}

void client_api_free(struct client_api *api)
{
  if (api)
    api_teardown(api, 1);
}

/* POST access/ticket with the password; keeps the ticket as the cookie
 * and its CSRF token for every later call. */
static int login(struct client_api *api, const char *user, const char *password, char *err,
                 size_t errlen)
{
  struct core_buf form;
  core_buf_init(&form, 4096);
  int rc = client_query_add(&form, "username", user);
  if (rc == 0)
    rc = client_query_add(&form, "password", password);
  if (rc < 0) {
    core_buf_free(&form);
    snprintf(err, errlen, "user name or password too long");
    return CORE_EINVAL;
  }
  yajl_val tree = NULL, data = NULL;
  /* The form starts with the '?' client_query_add puts first. */
  rc = client_api_json(api, "POST", "/api2/json/access/ticket", form.base + 1, form.len - 1,
                       "application/x-www-form-urlencoded", &tree, &data, err, errlen);
  explicit_bzero(form.base, form.len);
  core_buf_free(&form);
  if (rc < 0)
    return rc;
  const char *ticket = core_json_get_str(data, "ticket");
  const char *csrf = core_json_get_str(data, "CSRFPreventionToken");
  if (ticket == NULL || csrf == NULL) {
    snprintf(err, errlen, "login: the server's answer has no ticket");
    yajl_tree_free(tree);
    return CORE_EPROTO;
  }
  struct core_buf cookie;
  core_buf_init(&cookie, 4096);
  rc = client_query_add(&cookie, "PBSAuthCookie", ticket);
  if (rc == 0) {
    /* "?PBSAuthCookie=<percent-encoded ticket>" without its '?' */
    api->auth = core_strdup(cookie.base + 1);
    api->auth_name = "Cookie";
    api->csrf = core_strdup(csrf);
  }
  core_buf_free(&cookie);
  yajl_tree_free(tree);
  return rc;
}

int client_api_new(const struct client_api_config *cfg, struct client_api **out, char *err,
                   size_t errlen)
{
  struct client_api *api;
  struct http_client_config hc;
  struct client_resp resp;
  int rc;

  *out = NULL;
  int user_login = cfg->repo && cfg->repo->authid && !strchr(cfg->repo->authid, '!');
  if (cfg->repo == NULL || cfg->repo->host == NULL ||
      (user_login ? cfg->password == NULL : cfg->secret == NULL)) {
    snprintf(err, errlen, user_login ? "no password given for %s (--password-file)"
                                     : "no secret given (CAIRN_SECRET or --secret-file)",
             cfg->repo && cfg->repo->authid ? cfg->repo->authid : "");
    return CORE_EINVAL;
  }
  api = core_new(struct client_api);
  api->auth_name = "Authorization";
  if (!user_login)
    api->auth = core_asprintf("PBSAPIToken=%s:%s", cfg->repo->authid, cfg->secret);
  api->store = core_strdup(cfg->repo->store);
  api->host = core_strdup(cfg->repo->host);
  api->port = cfg->repo->port;
  uv_mutex_init(&api->mu);
  uv_loop_init(&api->loop);
  if (!cfg->plain_http) {
    rc = http_tls_client_new(cfg->ca_file, cfg->fingerprint, 1, &api->tls);
    if (rc < 0) {
      snprintf(err, errlen, "TLS setup: %s", core_strerror(rc));
      api_teardown(api, 0);
      return rc;
    }
  }
  memset(&hc, 0, sizeof(hc));
  hc.host = api->host;
  hc.port = api->port;
  hc.tls = api->tls;
  hc.max_conns = cfg->max_conns ? cfg->max_conns : 4;
  rc = http_client_new(&api->loop, &hc, &api->http);
  if (rc < 0) {
    snprintf(err, errlen, "HTTP client: %s", core_strerror(rc));
    api_teardown(api, 0);
    return rc;
  }
  uv_async_init(&api->loop, &api->wake, on_wake);
  api->wake.data = api;
  if (uv_thread_create(&api->thread, io_thread, api) != 0) {
    snprintf(err, errlen, "cannot start the I/O thread");
    http_client_free(api->http, NULL, NULL);
    uv_close((uv_handle_t *)&api->wake, NULL);
    uv_run(&api->loop, UV_RUN_DEFAULT);
    api_teardown(api, 0);
    return -EAGAIN;
  }

  rc = client_api_call(api, "GET", "/api2/json/version", NULL, 0, NULL, 0, &resp);
  if (rc == CORE_ECERT) {
    char fp[128];
    probe_fingerprint(api->host, api->port, fp, sizeof(fp));
    snprintf(err, errlen,
             "%s:%d: the server certificate is not trusted%s; its fingerprint is %s "
             "(pin it with --fingerprint or CAIRN_FINGERPRINT if that is right)",
             api->host, api->port, cfg->fingerprint ? " and does not match the pinned fingerprint" : "",
             fp);
    client_api_free(api);
    return rc;
  }
  if (rc < 0) {
    snprintf(err, errlen, "%s:%d: %s", api->host, api->port, core_strerror(rc));
    client_api_free(api);
    return rc;
  }
  client_resp_free(&resp);
  if (user_login && (rc = login(api, cfg->repo->authid, cfg->password, err, errlen)) < 0) {
    client_api_free(api);
    return rc;
  }
  *out = api;
  return 0;
}
