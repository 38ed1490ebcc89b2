/* http_request.c: the request as handlers see it, and building responses.
 *
 * Parameters are gathered once, when the request is complete: path
 * parameters, then the query string, then a form or JSON body, in that order
 * of precedence (the first occurrence of a name wins; repeats are kept for
 * http_req_param_at). Handlers then look them up by name; a request has
 * few, so a linear scan is the right tool. Names and values must be UTF-8
 * without NUL (form and query here, JSON in core_json_parse).
 */
#include "http/http_internal.h"

#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_log.h"
#include "core/core_utf8.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

struct http_request *http__req_new(struct http_conn *c)
{
  struct http_request *req = core_new(struct http_request);
  req->conn = c;
  req->server = c->server;
  req->state = HTTP_REQ_HEADERS;
  req->begin_ns = uv_hrtime();
  core_buf_init(&req->head, c->server->limits.max_header_bytes);
  core_buf_init(&req->body, 0);
  req->query = "";
  return req;
}

void http__req_free(struct http_request *req)
{
  if (req == NULL)
    return;
  if (req->body_charged)
    http__budget_release(req->server, req->body_charged);
  core_buf_free(&req->head);
  if (req->body_pooled) {
    http_bodypool_put(&req->server->bodies, req->body.base, req->body.cap);
    req->body.base = NULL;
  }
  core_buf_free(&req->body);
  http__match_free(&req->match);
  for (int i = 0; i < req->nparams; i++) {
    core_free(req->params[i].name);
    core_free(req->params[i].value);
  }
  if (req->json)
    yajl_tree_free(req->json);
  core_free(req);
}

enum http_method http_req_method(const struct http_request *req) { return req->method; }
const char *http_req_path(const struct http_request *req) { return req->path; }
yajl_val http_req_json(const struct http_request *req) { return req->json; }
int http_req_gone(const struct http_request *req) { return req->conn == NULL; }
void *http_req_route_ctx(const struct http_request *req)
{
  return req->match.entry ? req->match.entry->route.ctx : NULL;
}

uv_loop_t *http_req_loop(const struct http_request *req) { return req->server->loop; }

const char *http_req_authid(const struct http_request *req)
{
  return req->authid[0] ? req->authid : NULL;
}

const char *http_req_peer(struct http_request *req)
{
  if (req->peer[0] || req->conn == NULL)
    return req->peer;
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  if (uv_tcp_getpeername(&req->conn->tcp, (struct sockaddr *)&ss, &len) < 0)
    return req->peer;
  if (ss.ss_family == AF_INET)
    uv_ip4_name((const struct sockaddr_in *)&ss, req->peer, sizeof(req->peer));
  else if (ss.ss_family == AF_INET6)
    uv_ip6_name((const struct sockaddr_in6 *)&ss, req->peer, sizeof(req->peer));
  return req->peer;
}

uint32_t http_req_privs(const struct http_request *req)
{
  return req->privs;
}

int http_req_auth_deferred(const struct http_request *req)
{
  return req->auth_deferred;
}

void http_req_set_authid(struct http_request *req, const char *authid)
{
  snprintf(req->authid, sizeof(req->authid), "%s", authid);
  req->auth_deferred = 0;
}

void http_req_set_privs(struct http_request *req, uint32_t privs)
{
  req->privs = privs;
}

void http_req_set_retry_after(struct http_request *req, unsigned seconds)
{
  req->retry_after = seconds;
}

struct core_slice http_req_body(const struct http_request *req)
{
  struct core_slice s = {req->body.base ? req->body.base : "", req->body.len};
  return s;
}

int http_req_take_body(struct http_request *req, struct http_body *out)
{
  struct http_server *s = req->server;
  if (s->bodies_out_bytes + req->body_charged > s->limits.body_budget / 2)
    return -EBUSY;
  s->bodies_out_bytes += req->body_charged;
  out->base = req->body.base;
  out->len = req->body.len;
  out->server = req->server;
  out->cap = req->body_pooled ? req->body.cap : 0;
  out->charged = req->body_charged;
  req->server->bodies_out++;
  req->body_charged = 0;
  req->body_pooled = 0;
  core_buf_init(&req->body, 0);
  return 0;
}

void http_body_release(struct http_body *b)
{
  if (b->server == NULL)
    return;
  if (b->cap)
    http_bodypool_put(&b->server->bodies, b->base, b->cap);
  else
    core_free(b->base);
  http__server_body_back(b->server, b->charged);
  memset(b, 0, sizeof(*b));
}

const char *http_req_header(const struct http_request *req, const char *name)
{
  for (int i = 0; i < req->nheaders; i++) {
    const struct http_header *h = &req->headers[i];
    if (strcasecmp(req->head.base + h->name_off, name) == 0)
      return req->head.base + h->value_off;
  }
  return NULL;
}

const char *http_req_param(const struct http_request *req, const char *name)
{
  /* Path parameters count once decoded (the server does it before any
   * handler runs). */
  for (int i = 0; i < req->match.nparams; i++) {
    if (req->match.params[i].value && strcmp(req->match.params[i].name, name) == 0)
      return req->match.params[i].value;
  }
  for (int i = 0; i < req->nparams; i++) {
    if (strcmp(req->params[i].name, name) == 0)
      return req->params[i].value;
  }
  return NULL;
}

int http_req_param_at(const struct http_request *req, int i, const char **name,
                      const char **value)
{
  if (i < 0 || i >= req->nparams)
    return 0;
  *name = req->params[i].name;
  *value = req->params[i].value;
  return 1;
}

int http_url_decode(const char *in, size_t len, char *out, int plus)
{
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= len)
        return CORE_EPARSE;
      int hi = core_hex_digit((unsigned char)in[i + 1]);
      int lo = core_hex_digit((unsigned char)in[i + 2]);
      if (hi < 0 || lo < 0)
        return CORE_EPARSE;
      out[o++] = (char)(hi << 4 | lo);
      i += 2;
    } else if (c == '+' && plus) {
      out[o++] = ' ';
    } else {
      out[o++] = c;
    }
  }
  out[o] = '\0';
  return (int)o;
}

/* Keeps repeats: http_req_param() still sees the first, and http_props needs
 * them all (delete=a&delete=b). */
static int add_param(struct http_request *req, char *name, char *value)
{
  if (req->nparams == HTTP_MAX_PARAMS) {
    core_free(name);
    core_free(value);
    return CORE_ETOOBIG;
  }
  req->params[req->nparams].name = name;
  req->params[req->nparams].value = value;
  req->nparams++;
  return 0;
}

/* Parses "a=1&b=2" (query string or form body). */
static int parse_urlencoded(struct http_request *req, const char *s, size_t len)
{
  const char *p = s, *end = s + len;
  while (p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *stop = amp ? amp : end;
    const char *eq = memchr(p, '=', (size_t)(stop - p));
    const char *kend = eq ? eq : stop;
    if (kend > p) {
      char *k = core_malloc((size_t)(kend - p) + 1);
      const char *vs = eq ? eq + 1 : stop;
      char *v = core_malloc((size_t)(stop - vs) + 1);
      int kl = http_url_decode(p, (size_t)(kend - p), k, 1);
      int vl = http_url_decode(vs, (size_t)(stop - vs), v, 1);
      /* Text only: JSON output cannot carry other bytes, and an embedded NUL
       * would make C string checks see a different value. */
      if (kl < 0 || vl < 0 || !core_utf8_valid(k, (size_t)kl) ||
          !core_utf8_valid(v, (size_t)vl)) {
        if (kl >= 0 && vl >= 0)
          snprintf(req->reject_msg, sizeof(req->reject_msg),
                   "parameters must be UTF-8 text without NUL");
        core_free(k);
        core_free(v);
        return CORE_EPARSE;
      }
      int rc = add_param(req, k, v);
      if (rc)
        return rc;
    }
    p = stop + 1;
  }
  return 0;
}

/* JSON object members become parameters; scalars in their JSON text form. */
static int params_from_json(struct http_request *req, yajl_val obj)
{
  for (size_t i = 0; i < obj->u.object.len; i++) {
    yajl_val v = obj->u.object.values[i];
    char *value;
    if (YAJL_IS_STRING(v))
      value = core_strdup(v->u.string);
    else if (YAJL_IS_NUMBER(v))
      value = core_strdup(v->u.number.r);
    else if (YAJL_IS_TRUE(v))
      value = core_strdup("true");
    else if (YAJL_IS_FALSE(v))
      value = core_strdup("false");
    else
      continue; /* arrays and objects: handlers read them from http_req_json() */
    int rc = add_param(req, core_strdup(obj->u.object.keys[i]), value);
    if (rc)
      return rc;
  }
  return 0;
}

int http__req_parse_params(struct http_request *req)
{
  int rc = parse_urlencoded(req, req->query, strlen(req->query));
  if (rc)
    return rc;
  const struct http_route_entry *e = req->match.entry;
  if (e == NULL || (e->route.flags & HTTP_ROUTE_RAW_BODY) || req->body.len == 0)
    return 0;
  const char *ct = http_req_header(req, "content-type");
  if (ct && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0)
    return parse_urlencoded(req, req->body.base, req->body.len);
  if (ct == NULL || strncasecmp(ct, "application/json", 16) == 0) {
    char err[128];
    rc = core_json_parse(req->body.base, req->body.len, &req->json, err, sizeof(err));
    if (rc) {
      snprintf(req->reject_msg, sizeof(req->reject_msg), "invalid JSON body: %s", err);
      return rc;
    }
    if (!YAJL_IS_OBJECT(req->json)) {
      snprintf(req->reject_msg, sizeof(req->reject_msg), "JSON body must be an object");
      return CORE_EPARSE;
    }
    return params_from_json(req, req->json);
  }
  return 0;
}

/* ---- Responses ---- */

static const char *reason(int status)
{
  switch (status) {
  case 100: return "Continue";
  case 200: return "OK";
  case 201: return "Created";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 411: return "Length Required";
  case 412: return "Precondition Failed";
  case 413: return "Payload Too Large";
  case 415: return "Unsupported Media Type";
  case 423: return "Locked";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 503: return "Service Unavailable";
  case 505: return "HTTP Version Not Supported";
  case 507: return "Insufficient Storage";
  default: return "Unknown";
  }
}

int http_status_for(int err)
{
  switch (err) {
  case CORE_ENOTFOUND:
  case UV_ENOENT:
    return 404;
  case CORE_EEXISTS:
  case UV_EEXIST:
  case CORE_ELOCKED:
  case CORE_ESTALE:
    return 409;
  case CORE_ETOOBIG:
    return 413;
  case CORE_EMAINT:
    return 503;
  case UV_ENOSPC:
    return 507;
  case UV_EACCES:
  case UV_EPERM:
    return 403;
  case CORE_EPARSE:
  case CORE_EFORMAT:
  case CORE_ECRC:
  case CORE_EDIGEST:
  case CORE_ECSUM:
  case CORE_ENAME:
  case CORE_EINVAL:
  case CORE_ECONFIG:
  case CORE_EPROTO:
  case CORE_ECRYPTO:
  case CORE_EPROTECTED:
    return 400;
  default:
    return 500;
  }
}

/* Builds the status line and headers into a fresh buffer. */
static char *build_head(struct http_request *req, int status, const char *ctype,
                        uint64_t len, size_t *out_len)
{
  int close = !req->keep_alive ||
              (req->conn && (req->conn->flags & HTTP_CONN_CLOSE_AFTER)) ||
              req->server->shutting_down;
  if (close)
    req->keep_alive = 0;
  char retry[40] = "";
  if (req->retry_after)
    snprintf(retry, sizeof(retry), "Retry-After: %u\r\n", req->retry_after);
  char *head = core_malloc(256);
  int n = snprintf(head, 256,
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %llu\r\n%s%s\r\n",
                   status, reason(status), ctype, (unsigned long long)len,
                   close ? "Connection: close\r\n" : "", retry);
  *out_len = (size_t)n;
  return head;
}

/* Every response funnels through here. A gone client just frees the request. */
static void respond(struct http_request *req, int status, const char *ctype, void *body,
                    size_t len, int owned, size_t pool_cap)
{
  if (req->state != HTTP_REQ_HANDLER && req->state != HTTP_REQ_HEADERS &&
      req->state != HTTP_REQ_BODY) {
    core_error("http: second response for one request (status %d) ignored", status);
    if (owned)
      http__body_free(req->server, body, pool_cap);
    return;
  }
  req->state = HTTP_REQ_SENDING;
  http__count_response(req, status);
  struct http_conn *c = req->conn;
  if (c == NULL) {
    if (owned)
      http__body_free(req->server, body, pool_cap);
    http__req_free(req);
    return;
  }
  size_t head_len;
  char *head = build_head(req, status, ctype, len, &head_len);
  if (req->method == HTTP_METHOD_HEAD) {
    if (owned)
      http__body_free(req->server, body, pool_cap);
    body = NULL;
    len = 0;
    owned = 0;
    pool_cap = 0;
  }
  if (body && !owned) {
    void *copy = core_malloc(len);
    memcpy(copy, body, len);
    body = copy;
  }
  http__conn_send(c, head, head_len, body, len, pool_cap, 1);
}

void *http_req_pool_get(struct http_request *req, size_t len, size_t *cap)
{
  return http_bodypool_get(&req->server->bodies, len, cap);
}

void http_req_pool_put(struct http_request *req, void *buf, size_t cap)
{
  http_bodypool_put(&req->server->bodies, buf, cap);
}

void http_respond_pooled(struct http_request *req, int status, const char *content_type,
                         void *body, size_t len, size_t cap)
{
  respond(req, status, content_type, body, len, 1, cap);
}

void http_respond_raw(struct http_request *req, int status, const char *content_type,
                      const void *body, size_t len)
{
  respond(req, status, content_type, (void *)body, len, 0, 0);
}

void http_respond_owned(struct http_request *req, int status, const char *content_type,
                        void *body, size_t len)
{
  respond(req, status, content_type, body, len, 1, 0);
}

void http_respond_data(struct http_request *req, const char *value, size_t len)
{
  if (value == NULL) {
    value = "null";
    len = 4;
  }
  size_t total = len + 10;
  char *body = core_malloc(total + 1);
  memcpy(body, "{\"data\":", 8);
  memcpy(body + 8, value, len);
  memcpy(body + 8 + len, "}\n", 2);
  respond(req, 200, "application/json", body, total, 1, 0);
}

void http_respond_data_digest(struct http_request *req, const char *value, size_t len,
                              const char *digest)
{
  if (value == NULL) {
    value = "null";
    len = 4;
  }
  struct core_buf b;
  core_buf_init(&b, SIZE_MAX / 2);
  core_buf_append_str(&b, "{\"data\":");
  core_buf_append(&b, value, len);
  core_buf_printf(&b, ",\"digest\":\"%s\"}\n", digest);
  size_t n;
  char *body = core_buf_steal(&b, &n);
  respond(req, 200, "application/json", body, n, 1, 0);
}

void http_respond_json(struct http_request *req, struct core_json *j)
{
  size_t len;
  const char *text = core_json_text(j, &len);
  http_respond_data(req, text, len);
  core_json_free(j);
}

void http_respond_error(struct http_request *req, int status, const char *fmt, ...)
{
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  struct core_json j;
  core_json_init(&j, 0);
  core_json_obj_open(&j);
  core_json_key(&j, "data");
  core_json_null(&j);
  core_json_kv_str(&j, "message", msg);
  core_json_obj_close(&j);
  size_t len;
  const char *text = core_json_text(&j, &len);
  char *body = core_malloc(len + 1);
  memcpy(body, text, len);
  body[len] = '\n';
  core_json_free(&j);
  respond(req, status, "application/json", body, len + 1, 1, 0);
}

void http_respond_errno(struct http_request *req, int err, const char *what)
{
  http_respond_error(req, http_status_for(err), "%s: %s", what, core_strerror(err));
}

void http_respond_stream(struct http_request *req, int status, const char *content_type,
                         uint64_t content_length, http_pull_fn pull, void *ctx)
{
  if (req->state != HTTP_REQ_HANDLER) {
    core_error("http: stream response in a wrong state ignored");
    return;
  }
  req->state = HTTP_REQ_SENDING;
  http__count_response(req, status);
  struct http_conn *c = req->conn;
  req->pull = pull;
  req->pull_ctx = ctx;
  req->stream_left = req->method == HTTP_METHOD_HEAD ? 0 : content_length;
  if (c == NULL) {
    /* Let the producer see the client is gone on its first pull. */
    req->stream_pulling = 1;
    pull(req, ctx);
    return;
  }
  size_t head_len;
  char *head = build_head(req, status, content_type, content_length, &head_len);
  int last = req->stream_left == 0;
  http__conn_send(c, head, head_len, NULL, 0, 0, last);
}

/* Ends a stream that cannot complete: the client must not take a short body
 * for a whole one, so the connection goes. The request is detached from the
 * connection first, so closing it does not pull from the producer again. */
static void stream_abort(struct http_request *req)
{
  struct http_conn *c = req->conn;
  if (c) {
    c->req = NULL;
    c->flags |= HTTP_CONN_CLOSE_AFTER;
    http__conn_close(c);
  }
  http__req_free(req);
}

void http_stream_write(struct http_request *req, void *data, size_t len, int last, int err)
{
  req->stream_pulling = 0;
  if (req->conn && err >= 0 && len > req->stream_left)
    core_error("http: stream produced more than its Content-Length");
  else if (req->conn && err >= 0 && last && len < req->stream_left)
    core_error("http: stream ended short of its Content-Length");
  if (req->conn == NULL || err < 0 || len > req->stream_left ||
      (last && len < req->stream_left)) {
    core_free(data);
    stream_abort(req);
    return;
  }
  req->stream_left -= len;
  http__conn_send(req->conn, NULL, 0, data, len, 0, req->stream_left == 0);
}
