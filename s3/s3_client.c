#include "s3/s3_client.h"

#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_log.h"
#include "http/http_client.h"
#include "http/http_tls.h"
#include "s3/s3_hash.h"
#include "s3/s3_sigv4.h"
#include "s3/s3_url.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_XH 6
#define DEFAULT_GET_MAX (64u * 1024 * 1024)
#define MULTI_DELETE_PARALLEL 8

enum op_kind { OP_PUT, OP_GET, OP_HEAD, OP_DELETE, OP_DELETE_MULTI, OP_LIST, OP_COPY, OP_HEAD_BUCKET };

struct s3_client {
  uv_loop_t *loop;
  struct http_client *http;
  struct http_tls *tls;
  struct s3_url_target target;
  char *endpoint, *region, *bucket, *access_key, *secret_key, *host_header;
  unsigned quirks, max_attempts, backoff_base_ms, backoff_max_ms, request_timeout_ms;
  uint64_t rng;
  struct s3_op *ops;
  unsigned n_ops;      /* ops not yet freed (includes closing timers) */
  int closing;
  int http_closed;
  void (*close_cb)(void *);
  void *close_arg;
  struct s3_stats stats;
};

struct s3_op {
  struct s3_client *cl;
  struct s3_op *prev, *next;
  int in_list;
  enum op_kind kind;
  const char *method;
  struct core_buf path, query;
  const char *xh_name[MAX_XH];
  char *xh_value[MAX_XH];
  size_t nxh;
  const void *body;
  size_t body_len;
  char *own_body;
  char sha[65];
  char md5[25];
  int want_md5;
  int hashing;
  int cond_put;
  unsigned max_attempts;
  uv_timer_t timer;
  struct http_client_req *hreq;
  unsigned attempts;
  s3_body_cb on_body;
  size_t max_body;
  int delivered;
  int paused;
  int streaming;       /* this attempt's 2xx body goes to on_body */
  struct core_buf resp;
  s3_done_cb cb;
  void *arg;
  struct s3_result res;
  struct s3_list_result list;
  struct s3_delete_result del;
};

static void attempt(struct s3_op *op);

/* ---- helpers ---- */

int s3_quirks_parse(const char *list, unsigned *out)
{
  unsigned q = 0;
  const char *p = list ? list : "";
  while (*p) {
    while (*p == ',' || *p == ' ')
      p++;
    size_t n = strcspn(p, ", ");
    if (n == 0)
      break;
    if (n == 25 && strncmp(p, "skip-if-none-match-header", n) == 0)
      q |= S3_QUIRK_SKIP_IF_NONE_MATCH;
    else if (n == 32 && strncmp(p, "delete-objects-via-delete-object", n) == 0)
      q |= S3_QUIRK_DELETE_VIA_DELETE_OBJECT;
    else
      return CORE_ECONFIG;
    p += n;
  }
  *out = q;
  return 0;
}

static uint64_t rng_next(struct s3_client *cl)
{
  /* xorshift64*: jitter needs spread, not secrecy. */
  uint64_t x = cl->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  cl->rng = x;
  return x * 0x2545F4914F6CDD1DULL;
}

static int key_ok(const char *key)
{
  size_t n = key ? strlen(key) : 0;
  return n > 0 && n <= S3_KEY_MAX;
}

static int transport_retryable(int err)
{
  switch (err) {
  case UV_ECONNRESET:
  case UV_ECONNREFUSED:
  case UV_ECONNABORTED:
  case UV_EPIPE:
  case UV_EOF:
  case UV_ETIMEDOUT:
  case UV_ENETUNREACH:
  case UV_EHOSTUNREACH:
  case UV_EAI_AGAIN:
  case CORE_ETIMEOUT:
  case CORE_ETLS:
  case CORE_EPROTO:
    return 1;
  default:
    return 0;
  }
}

/* ---- op lifecycle ---- */

static void maybe_free_client(struct s3_client *cl)
{
  if (!cl->closing || cl->n_ops > 0 || !cl->http_closed)
    return;
  void (*cb)(void *) = cl->close_cb;
  void *arg = cl->close_arg;
  if (cl->tls)
    http_tls_unref(cl->tls);
  if (cl->secret_key) {
    memset(cl->secret_key, 0, strlen(cl->secret_key));
    core_free(cl->secret_key);
  }
  core_free(cl->endpoint);
  core_free(cl->region);
  core_free(cl->bucket);
  core_free(cl->access_key);
  core_free(cl->host_header);
  core_free(cl);
  if (cb)
    cb(arg);
}

static void op_freed(uv_handle_t *h)
{
  struct s3_op *op = h->data;
  struct s3_client *cl = op->cl;
  core_buf_free(&op->path);
  core_buf_free(&op->query);
  core_buf_free(&op->resp);
  for (size_t i = 0; i < op->nxh; i++)
    core_free(op->xh_value[i]);
  core_free(op->own_body);
  s3_list_result_free(&op->list);
  s3_delete_result_free(&op->del);
  core_free(op);
  cl->n_ops--;
  maybe_free_client(cl);
}

static void op_unlink(struct s3_op *op)
{
  struct s3_client *cl = op->cl;
  if (!op->in_list)
    return;
  if (op->prev)
    op->prev->next = op->next;
  else
    cl->ops = op->next;
  if (op->next)
    op->next->prev = op->prev;
  op->in_list = 0;
}

static void finish(struct s3_op *op, int status)
{
  struct s3_client *cl = op->cl;
  op_unlink(op);
  uv_timer_stop(&op->timer);
  op->res.status = status;
  op->res.attempts = op->attempts;
  if (status == 0)
    cl->stats.ok++;
  else if (status == CORE_ENOTFOUND)
    cl->stats.not_found++;
  else if (status == CORE_ES3 || status == CORE_EPARSE)
    cl->stats.failed_s3++;
  else
    cl->stats.failed_transport++;
  if (op->res.already_exists)
    cl->stats.already_exists++;
  int result = status == 0 ? (op->res.already_exists ? 2 : 0)
               : status == CORE_ENOTFOUND                   ? 1
               : status == CORE_ES3 || status == CORE_EPARSE ? 3
                                                            : 4;
  if ((int)op->kind < S3_STATS_OPS)
    cl->stats.by_op[op->kind][result]++;
  if (op->resp.base && op->kind == OP_GET && op->on_body == NULL && status == 0) {
    op->res.body.base = op->resp.base;
    op->res.body.len = op->resp.len;
  }
  if (op->kind == OP_LIST && status == 0)
    op->res.list = &op->list;
  if (op->kind == OP_DELETE_MULTI && status == 0)
    op->res.deleted = &op->del;
  op->cb(&op->res, op->arg);
  uv_close((uv_handle_t *)&op->timer, op_freed);
}

static struct s3_op *op_new(struct s3_client *cl, enum op_kind kind, const char *method,
                            const char *key, s3_done_cb cb, void *arg)
{
  struct s3_op *op = core_new(struct s3_op);
  op->cl = cl;
  op->kind = kind;
  op->method = method;
  op->cb = cb;
  op->arg = arg;
  op->max_attempts = cl->max_attempts;
  core_buf_init(&op->path, 4 * S3_KEY_MAX + 256);
  core_buf_init(&op->query, 16 * 1024);
  core_buf_init(&op->resp, S3_XML_MAX_DOC);
  op->list.key_count = -1;
  if (s3_url_path(&cl->target, cl->bucket, key, &op->path) < 0) {
    core_buf_free(&op->path);
    core_buf_free(&op->query);
    core_buf_free(&op->resp);
    core_free(op);
    return NULL;
  }
  uv_timer_init(cl->loop, &op->timer);
  op->timer.data = op;
  cl->n_ops++;
  cl->stats.ops++;
  op->next = cl->ops;
  if (cl->ops)
    cl->ops->prev = op;
  cl->ops = op;
  op->in_list = 1;
  return op;
}

static void op_header(struct s3_op *op, const char *name, char *value_owned)
{
  op->xh_name[op->nxh] = name;
  op->xh_value[op->nxh] = value_owned;
  op->nxh++;
}

static void on_hashed(const struct s3_hash *h, int status, void *arg)
{
  struct s3_op *op = arg;
  op->hashing = 0;
  if (status < 0 || op->cl->closing) {
    finish(op, CORE_EABORTED);
    return;
  }
  memcpy(op->sha, h->sha256_hex, sizeof(op->sha));
  if (op->want_md5 && op->md5[0] == '\0')
    memcpy(op->md5, h->md5_b64, sizeof(op->md5));
  attempt(op);
}

/* Starts an op: hashes the body in the pool if needed, then the first
 * attempt. Never calls the callback synchronously: a failure to queue the
 * hash job is reported through the backoff timer's zero delay. */
static void on_start_timer(uv_timer_t *t)
{
  attempt(t->data);
}

static void op_start(struct s3_op *op)
{
  if (op->body_len > 0 && op->sha[0] == '\0') {
    op->hashing = 1;
    if (s3_hash_submit(op->cl->loop, op->body, op->body_len, op->want_md5, on_hashed, op) == 0)
      return;
    op->hashing = 0;
    /* Hash inline as a last resort rather than failing the op. */
    struct s3_hash h;
    s3_hash_compute(op->body, op->body_len, op->want_md5, &h);
    memcpy(op->sha, h.sha256_hex, sizeof(op->sha));
    if (op->want_md5 && op->md5[0] == '\0')
      memcpy(op->md5, h.md5_b64, sizeof(op->md5));
  } else if (op->body_len == 0) {
    memcpy(op->sha, S3_SIGV4_EMPTY_HASH, sizeof(op->sha));
  }
  uv_timer_start(&op->timer, on_start_timer, 0, 0);
}

/* ---- one attempt ---- */

static void schedule_retry(struct s3_op *op);
static void on_http_done(struct http_client_req *req, int status, void *arg);

static int on_http_headers(struct http_client_req *req, void *arg)
{
  struct s3_op *op = arg;
  int st = http_client_req_status(req);
  op->res.http_status = st;
  const char *cl = http_client_req_header(req, "content-length");
  if (cl)
    op->res.content_length = strtoull(cl, NULL, 10);
  const char *etag = http_client_req_header(req, "etag");
  if (etag) {
    size_t l = strlen(etag);
    if (l >= 2 && etag[0] == '"' && etag[l - 1] == '"')
      etag++, l -= 2;
    if (l < sizeof(op->res.etag)) {
      memcpy(op->res.etag, etag, l);
      op->res.etag[l] = '\0';
    }
  }
  op->streaming = op->kind == OP_GET && op->on_body && st >= 200 && st < 300;
  if (op->kind == OP_GET && op->on_body == NULL && st >= 200 && st < 300)
    op->resp.max = op->max_body;
  return 0;
}

static int on_http_body(struct http_client_req *req, const char *data, size_t len, void *arg)
{
  struct s3_op *op = arg;
  (void)req;
  op->cl->stats.bytes_received += len;
  if (op->streaming) {
    op->delivered = 1;
    return op->on_body(data, len, op->arg);
  }
  return core_buf_append(&op->resp, data, len);
}

static void attempt(struct s3_op *op)
{
  struct s3_client *cl = op->cl;
  if (cl->closing) {
    finish(op, CORE_EABORTED);
    return;
  }
  op->attempts++;
  cl->stats.attempts++;
  cl->stats.bytes_sent += op->body_len;
  if (op->attempts > 1)
    cl->stats.retries++;
  core_buf_reset(&op->resp);
  op->resp.max = S3_XML_MAX_DOC;
  op->streaming = 0;
  op->res.http_status = 0;
  op->res.s3_code = S3_ERR_NONE;
  op->res.message[0] = '\0';
  op->res.content_length = 0;
  op->res.etag[0] = '\0';

  char date[S3_SIGV4_DATE_LEN + 1], clen[32];
  s3_sigv4_date(time(NULL), date);
  struct s3_sigv4_header sh[MAX_XH + 6];
  size_t n = 0;
  sh[n++] = (struct s3_sigv4_header){"Host", cl->host_header};
  sh[n++] = (struct s3_sigv4_header){"x-amz-date", date};
  sh[n++] = (struct s3_sigv4_header){"x-amz-content-sha256", op->sha};
  if (op->body_len > 0 || strcmp(op->method, "PUT") == 0 || strcmp(op->method, "POST") == 0) {
    snprintf(clen, sizeof(clen), "%zu", op->body_len);
    sh[n++] = (struct s3_sigv4_header){"Content-Length", clen};
  }
  if (op->md5[0])
    sh[n++] = (struct s3_sigv4_header){"Content-MD5", op->md5};
  for (size_t i = 0; i < op->nxh; i++)
    sh[n++] = (struct s3_sigv4_header){op->xh_name[i], op->xh_value[i]};

  struct core_buf auth, target;
  core_buf_init(&auth, 4096);
  core_buf_init(&target, op->path.max + op->query.max + 2);
  struct s3_sigv4_input in = {
      .method = op->method, .uri = op->path.base, .query = op->query.base, .headers = sh,
      .n_headers = n, .payload_hash = op->sha, .amz_date = date, .region = cl->region,
      .access_key = cl->access_key, .secret_key = cl->secret_key,
  };
  int rc = s3_sigv4_authorization(&in, &auth);
  if (rc == 0)
    rc = core_buf_printf(&target, "%s%s%s", op->path.base, op->query.len ? "?" : "",
                         op->query.len ? op->query.base : "");
  if (rc < 0) {
    core_buf_free(&auth);
    core_buf_free(&target);
    finish(op, rc);
    return;
  }
  struct http_client_header hh[MAX_XH + 7];
  for (size_t i = 0; i < n; i++)
    hh[i] = (struct http_client_header){sh[i].name, sh[i].value};
  hh[n] = (struct http_client_header){"Authorization", auth.base};
  unsigned timeout = cl->request_timeout_ms;
  if (timeout == 0) {
    uint64_t t = (uint64_t)op->body_len; /* 1 KiB/s in ms: len bytes * 1000 / 1024 */
    timeout = 30u * 60 * 1000;
    if (t > timeout)
      timeout = t > UINT32_MAX ? UINT32_MAX : (unsigned)t;
  }
  struct http_client_request r = {
      .method = op->method, .target = target.base, .headers = hh, .n_headers = n + 1,
      .body = op->body, .body_len = op->body_len, .timeout_ms = timeout,
      .on_headers = on_http_headers, .on_body = on_http_body, .on_done = on_http_done,
      .arg = op,
  };
  rc = http_client_send(cl->http, &r, &op->hreq);
  /* http_client copies the header block when it writes: nothing here has to
   * outlive the call except the body, which is the caller's. */
  core_buf_free(&auth);
  core_buf_free(&target);
  if (rc < 0) {
    op->hreq = NULL;
    finish(op, rc);
    return;
  }
  if (op->paused)
    http_client_req_pause(op->hreq);
}

static void fill_error(struct s3_op *op)
{
  struct s3_error e;
  if (op->resp.len > 0 && s3_xml_parse_error(op->resp.base, op->resp.len, &e) == 0) {
    op->res.s3_code = e.code;
    snprintf(op->res.message, sizeof(op->res.message), "%.60s%s%.180s",
             e.code_text[0] ? e.code_text : "error", e.message[0] ? ": " : "", e.message);
  } else {
    op->res.s3_code = S3_ERR_UNKNOWN;
    snprintf(op->res.message, sizeof(op->res.message), "HTTP %d", op->res.http_status);
  }
}

/* Decides a finished attempt: 1 retry, 0 done (finish called). */
static int classify(struct s3_op *op, int *outcome, int *retry_kind)
{
  int st = op->res.http_status;
  *retry_kind = 0;
  if (st >= 200 && st < 300) {
    int rc = 0;
    if (op->kind == OP_LIST) {
      s3_list_result_free(&op->list);
      rc = s3_xml_parse_list(op->resp.base ? op->resp.base : "", op->resp.len, &op->list);
    } else if (op->kind == OP_DELETE_MULTI) {
      s3_delete_result_free(&op->del);
      rc = s3_xml_parse_delete(op->resp.base ? op->resp.base : "", op->resp.len, &op->del);
    } else if (op->kind == OP_COPY && op->resp.len > 0 &&
               memmem(op->resp.base, op->resp.len, "<Error", 6) != NULL) {
      /* CopyObject can fail after a 200 with an <Error> body. */
      fill_error(op);
      if (s3_error_retryable(op->res.s3_code)) {
        *retry_kind = 1;
        return 1;
      }
      *outcome = CORE_ES3;
      return 0;
    }
    if (rc < 0)
      snprintf(op->res.message, sizeof(op->res.message), "unreadable %s response: %s",
               op->kind == OP_LIST ? "ListObjectsV2" : "DeleteObjects", core_strerror(rc));
    *outcome = rc < 0 ? CORE_EPARSE : 0;
    return 0;
  }
  if (st == 412 && op->cond_put) {
    op->res.already_exists = 1;
    *outcome = 0;
    return 0;
  }
  fill_error(op);
  if (st == 404 && (op->kind == OP_HEAD || op->kind == OP_GET || op->kind == OP_HEAD_BUCKET)) {
    op->res.not_found = 1;
    if (op->res.s3_code == S3_ERR_UNKNOWN)
      op->res.s3_code = op->kind == OP_HEAD_BUCKET ? S3_ERR_NO_SUCH_BUCKET : S3_ERR_NO_SUCH_KEY;
    *outcome = CORE_ENOTFOUND;
    return 0;
  }
  if (st == 500 || st == 502 || st == 503 || st == 504 || s3_error_retryable(op->res.s3_code)) {
    if (op->res.s3_code == S3_ERR_UNKNOWN && st == 503)
      op->res.s3_code = S3_ERR_SERVICE_UNAVAILABLE;
    *retry_kind = 1;
    *outcome = CORE_ES3;
    return 1;
  }
  if (st == 409 && op->cond_put) {
    *retry_kind = 3;
    *outcome = CORE_ES3;
    return 1;
  }
  *outcome = CORE_ES3;
  return 0;
}

static void on_http_done(struct http_client_req *req, int status, void *arg)
{
  struct s3_op *op = arg;
  struct s3_client *cl = op->cl;
  (void)req;
  op->hreq = NULL;
  if (cl->closing || status == CORE_EABORTED) {
    finish(op, CORE_EABORTED);
    return;
  }
  int outcome, retry_kind = 0, retry;
  if (status < 0) {
    outcome = status;
    retry = transport_retryable(status);
    retry_kind = 2;
    op->res.s3_code = S3_ERR_NONE;
    snprintf(op->res.message, sizeof(op->res.message), "%s", core_strerror(status));
  } else {
    retry = classify(op, &outcome, &retry_kind);
  }
  if (retry && op->delivered) {
    /* Part of the body already went to the caller: it cannot be taken back. */
    retry = 0;
  }
  if (!retry) {
    finish(op, outcome);
    return;
  }
  if (op->attempts >= op->max_attempts) {
    cl->stats.gave_up++;
    finish(op, outcome);
    return;
  }
  if (retry_kind == 1)
    cl->stats.retry_5xx++;
  else if (retry_kind == 2)
    cl->stats.retry_transport++;
  else
    cl->stats.retry_conflict++;
  core_debug("s3: %s %s: attempt %u failed (%s), retrying", op->method, op->path.base,
             op->attempts, op->res.message);
  schedule_retry(op);
}

static void on_backoff(uv_timer_t *t)
{
  attempt(t->data);
}

static void schedule_retry(struct s3_op *op)
{
  struct s3_client *cl = op->cl;
  uint64_t d = cl->backoff_base_ms;
  for (unsigned i = 1; i < op->attempts && d < cl->backoff_max_ms; i++)
    d *= 2;
  if (d > cl->backoff_max_ms)
    d = cl->backoff_max_ms;
  uint64_t delay = d / 2 + (d ? rng_next(cl) % (d / 2 + 1) : 0);
  uv_timer_start(&op->timer, on_backoff, delay, 0);
}

/* ---- client ---- */

int s3_client_new(uv_loop_t *loop, const struct s3_client_config *cfg, const char *bucket,
                  struct s3_client **out)
{
  if (s3_url_check_bucket(bucket) < 0)
    return CORE_ENAME;
  if (cfg->endpoint == NULL || cfg->access_key == NULL || cfg->secret_key == NULL ||
      cfg->access_key[0] == '\0' || cfg->secret_key[0] == '\0' || cfg->port < 0 ||
      cfg->port > 65535)
    return CORE_ECONFIG;
  const char *region = cfg->region && cfg->region[0] ? cfg->region : "us-west-1";
  for (const char *p = region; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '-' || *p == '_'))
      return CORE_ECONFIG;
  for (const char *p = cfg->access_key; *p; p++)
    if ((unsigned char)*p <= ' ' || *p == '/' || (unsigned char)*p >= 0x7f)
      return CORE_ECONFIG;

  struct s3_client *cl = core_new(struct s3_client);
  cl->loop = loop;
  cl->endpoint = core_strdup(cfg->endpoint);
  cl->region = core_strdup(region);
  cl->bucket = core_strdup(bucket);
  cl->access_key = core_strdup(cfg->access_key);
  cl->secret_key = core_strdup(cfg->secret_key);
  cl->target = (struct s3_url_target){cl->endpoint, cl->region, cfg->port, cfg->use_tls,
                                      cfg->path_style};
  cl->quirks = cfg->quirks;
  cl->max_attempts = cfg->max_attempts ? cfg->max_attempts : 4;
  cl->backoff_base_ms = cfg->backoff_base_ms ? cfg->backoff_base_ms : 250;
  cl->backoff_max_ms = cfg->backoff_max_ms ? cfg->backoff_max_ms : 8000;
  cl->request_timeout_ms = cfg->request_timeout_ms;
  cl->rng = cfg->jitter_seed;
  if (cl->rng == 0 && core_random(&cl->rng, sizeof(cl->rng)) < 0)
    cl->rng = (uint64_t)uv_hrtime();
  if (cl->rng == 0)
    cl->rng = 0x9E3779B97F4A7C15ULL;

  struct core_buf host, hh;
  core_buf_init(&host, 512);
  core_buf_init(&hh, 512);
  int rc = s3_url_host(&cl->target, bucket, &host, &hh);
  if (rc == 0 && cfg->use_tls)
    rc = http_tls_client_new(cfg->ca_file, cfg->fingerprint, 1, &cl->tls);
  if (rc == 0) {
    struct http_client_config hc = {
        .host = host.base, .port = s3_url_port(&cl->target), .tls = cl->tls,
        .max_conns = cfg->max_conns ? cfg->max_conns : 16,
        .connect_timeout_ms = cfg->connect_timeout_ms,
    };
    rc = http_client_new(loop, &hc, &cl->http);
    if (rc == CORE_EINVAL)
      rc = CORE_ECONFIG;
  }
  if (rc == 0)
    cl->host_header = core_buf_steal(&hh, NULL);
  core_buf_free(&host);
  core_buf_free(&hh);
  if (rc < 0) {
    cl->closing = 1;
    cl->http_closed = 1;
    maybe_free_client(cl);
    return rc;
  }
  *out = cl;
  return 0;
}

static void on_http_closed(void *arg)
{
  struct s3_client *cl = arg;
  cl->http_closed = 1;
  maybe_free_client(cl);
}

void s3_client_free(struct s3_client *cl, void (*cb)(void *arg), void *arg)
{
  if (cl->closing)
    return;
  cl->closing = 1;
  cl->close_cb = cb;
  cl->close_arg = arg;
  cl->n_ops++; /* hold the client through the callbacks below */
again:
  for (struct s3_op *op = cl->ops; op; op = op->next) {
    if (op->hashing)
      continue; /* ends when its pool job returns */
    if (op->hreq)
      http_client_req_cancel(op->hreq); /* on_http_done finishes it */
    else
      finish(op, CORE_EABORTED);
    goto again;
  }
  http_client_free(cl->http, on_http_closed, cl);
  cl->n_ops--;
  maybe_free_client(cl);
}

const char *s3_stats_op_name(int op)
{
  static const char *const names[S3_STATS_OPS] = {
    [OP_PUT] = "put",   [OP_GET] = "get",   [OP_HEAD] = "head", [OP_DELETE] = "delete",
    [OP_DELETE_MULTI] = "delete_objects",   [OP_LIST] = "list", [OP_COPY] = "copy",
    [OP_HEAD_BUCKET] = "head_bucket",
  };
  return op >= 0 && op < S3_STATS_OPS ? names[op] : "other";
}

const char *s3_stats_result_name(int result)
{
  static const char *const names[S3_STATS_RESULTS] = {"ok", "not_found", "exists", "s3_error",
                                                      "transport_error"};
  return result >= 0 && result < S3_STATS_RESULTS ? names[result] : "other";
}

void s3_client_get_stats(const struct s3_client *cl, struct s3_stats *out)
{
  *out = cl->stats;
}

const char *s3_client_bucket(const struct s3_client *cl)
{
  return cl->bucket;
}

/* ---- operations ---- */

int s3_put_object(struct s3_client *cl, const char *key, const void *body, size_t len,
                  const struct s3_put_opts *opts, s3_done_cb cb, void *arg)
{
  if (cl->closing)
    return CORE_EABORTED;
  if (!key_ok(key))
    return CORE_ENAME;
  if (cb == NULL || (len > 0 && body == NULL))
    return CORE_EINVAL;
  struct s3_put_opts none = {0};
  if (opts == NULL)
    opts = &none;
  if (opts->payload_sha256 && !core_is_digest_hex(opts->payload_sha256))
    return CORE_EINVAL;
  struct s3_op *op = op_new(cl, OP_PUT, "PUT", key, cb, arg);
  if (op == NULL)
    return CORE_ENAME;
  op->body = body;
  op->body_len = len;
  op_header(op, "Content-Type",
            core_strdup(opts->content_type ? opts->content_type : "application/octet-stream"));
  if (opts->if_none_match && !(cl->quirks & S3_QUIRK_SKIP_IF_NONE_MATCH)) {
    op_header(op, "If-None-Match", core_strdup("*"));
    op->cond_put = 1;
  }
  if (opts->content_md5)
    snprintf(op->md5, sizeof(op->md5), "%s", opts->content_md5);
  if (opts->payload_sha256) {
    memcpy(op->sha, opts->payload_sha256, 65);
  } else {
    op->want_md5 = opts->content_md5 == NULL;
  }
  op_start(op);
  return 0;
}

int s3_get_object(struct s3_client *cl, const char *key, s3_body_cb on_body, size_t max_body,
                  s3_done_cb cb, void *arg, struct s3_op **out)
{
  if (cl->closing)
    return CORE_EABORTED;
  if (!key_ok(key))
    return CORE_ENAME;
  if (cb == NULL)
    return CORE_EINVAL;
  struct s3_op *op = op_new(cl, OP_GET, "GET", key, cb, arg);
  if (op == NULL)
    return CORE_ENAME;
  op->on_body = on_body;
  op->max_body = max_body ? max_body : DEFAULT_GET_MAX;
  if (out)
    *out = op;
  op_start(op);
  return 0;
}

void s3_op_pause(struct s3_op *op)
{
  op->paused = 1;
  if (op->hreq)
    http_client_req_pause(op->hreq);
}

void s3_op_resume(struct s3_op *op)
{
  op->paused = 0;
  if (op->hreq)
    http_client_req_resume(op->hreq);
}

static int simple_op(struct s3_client *cl, enum op_kind kind, const char *method,
                     const char *key, s3_done_cb cb, void *arg)
{
  if (cl->closing)
    return CORE_EABORTED;
  if (kind != OP_HEAD_BUCKET && !key_ok(key))
    return CORE_ENAME;
  if (cb == NULL)
    return CORE_EINVAL;
  struct s3_op *op = op_new(cl, kind, method, key, cb, arg);
  if (op == NULL)
    return CORE_ENAME;
  op_start(op);
  return 0;
}

int s3_head_object(struct s3_client *cl, const char *key, s3_done_cb cb, void *arg)
{
  return simple_op(cl, OP_HEAD, "HEAD", key, cb, arg);
}

int s3_delete_object(struct s3_client *cl, const char *key, s3_done_cb cb, void *arg)
{
  return simple_op(cl, OP_DELETE, "DELETE", key, cb, arg);
}

int s3_head_bucket(struct s3_client *cl, s3_done_cb cb, void *arg)
{
  return simple_op(cl, OP_HEAD_BUCKET, "HEAD", NULL, cb, arg);
}

/* The key part of x-amz-copy-source: URI-encoded with '/' kept, and ':' kept
 * too. ':' is legal in a path segment (RFC 3986 pchar) and every S3 server
 * decodes the header, but some (s3rver) decode it with decodeURI, which leaves
 * "%3A" encoded, so snapshot keys (they hold ':') would not be found. */
static int copy_source_key(struct core_buf *out, const char *key)
{
  for (;;) {
    const char *colon = strchr(key, ':');
    size_t n = colon != NULL ? (size_t)(colon - key) : strlen(key);
    int rc = s3_uri_encode(out, key, n, 1);
    if (rc < 0 || colon == NULL)
      return rc;
    rc = core_buf_append(out, ":", 1);
    if (rc < 0)
      return rc;
    key = colon + 1;
  }
}

int s3_copy_object(struct s3_client *cl, const char *src_key, const char *dst_key,
                   s3_done_cb cb, void *arg)
{
  if (cl->closing)
    return CORE_EABORTED;
  if (!key_ok(src_key) || !key_ok(dst_key))
    return CORE_ENAME;
  if (cb == NULL)
    return CORE_EINVAL;
  struct s3_op *op = op_new(cl, OP_COPY, "PUT", dst_key, cb, arg);
  if (op == NULL)
    return CORE_ENAME;
  struct core_buf src;
  core_buf_init(&src, 8 * S3_KEY_MAX);
  int rc = s3_uri_encode(&src, cl->bucket, strlen(cl->bucket), 0);
  if (rc == 0)
    rc = core_buf_append(&src, "/", 1);
  if (rc == 0)
    rc = copy_source_key(&src, src_key);
  if (rc < 0) {
    /* Cannot happen with checked keys; fail through the loop to keep the
     * "never synchronously" rule. */
    core_buf_free(&src);
    op_header(op, "x-amz-copy-source", core_strdup(""));
  } else {
    op_header(op, "x-amz-copy-source", core_buf_steal(&src, NULL));
  }
  op_header(op, "x-amz-metadata-directive", core_strdup("REPLACE"));
  op_start(op);
  return 0;
}

int s3_list_objects(struct s3_client *cl, const char *prefix, const char *token,
                    unsigned max_keys, s3_done_cb cb, void *arg)
{
  if (cl->closing)
    return CORE_EABORTED;
  if (cb == NULL || (prefix && strlen(prefix) > S3_KEY_MAX) ||
      (token && strlen(token) > S3_XML_MAX_TEXT) || max_keys > 1000)
    return CORE_EINVAL;
  struct s3_op *op = op_new(cl, OP_LIST, "GET", NULL, cb, arg);
  if (op == NULL)
    return CORE_EINVAL;
  int rc = s3_url_query_add(&op->query, "list-type", "2");
  if (rc == 0 && prefix && *prefix)
    rc = s3_url_query_add(&op->query, "prefix", prefix);
  if (rc == 0 && token)
    rc = s3_url_query_add(&op->query, "continuation-token", token);
  if (rc == 0 && max_keys) {
    char mk[16];
    snprintf(mk, sizeof(mk), "%u", max_keys);
    rc = s3_url_query_add(&op->query, "max-keys", mk);
  }
  (void)rc; /* bounded inputs fit the query buffer */
  op_start(op);
  return 0;
}

/* ---- DeleteObjects through single deletes (provider quirk) ---- */

struct multi_del {
  struct s3_client *cl;
  char **keys;
  size_t n, next, pending;
  struct s3_delete_result del;
  struct s3_result res;
  s3_done_cb cb;
  void *arg;
  unsigned attempts;
};

struct multi_slot {
  struct multi_del *m;
  size_t i;
};

static void multi_pump(struct multi_del *m);

static void multi_one(const struct s3_result *res, void *arg)
{
  struct multi_slot *s = arg;
  struct multi_del *m = s->m;
  struct s3_delete_entry *e = &m->del.entries[s->i];
  e->deleted = res->status == 0 || res->http_status == 404;
  e->code = e->deleted ? S3_ERR_NONE : (res->s3_code ? res->s3_code : S3_ERR_UNKNOWN);
  if (!e->deleted)
    snprintf(e->message, sizeof(e->message), "%.120s", res->message);
  m->attempts += res->attempts;
  core_free(s);
  m->pending--;
  multi_pump(m);
}

static void multi_pump(struct multi_del *m)
{
  while (m->next < m->n && m->pending < MULTI_DELETE_PARALLEL) {
    size_t i = m->next++;
    struct multi_slot *s = core_new(struct multi_slot);
    s->m = m;
    s->i = i;
    m->pending++;
    int rc = s3_delete_object(m->cl, m->keys[i], multi_one, s);
    if (rc < 0) {
      struct s3_result r = {.status = rc, .s3_code = S3_ERR_UNKNOWN};
      snprintf(r.message, sizeof(r.message), "%s", core_strerror(rc));
      multi_one(&r, s);
      return; /* multi_one pumped again */
    }
  }
  if (m->pending == 0 && m->next == m->n) {
    m->res.status = 0;
    m->res.attempts = m->attempts;
    m->res.deleted = &m->del;
    m->cb(&m->res, m->arg);
    s3_delete_result_free(&m->del);
    for (size_t i = 0; i < m->n; i++)
      core_free(m->keys[i]);
    core_free(m->keys);
    core_free(m);
  }
}

int s3_delete_objects(struct s3_client *cl, const char *const *keys, size_t n, s3_done_cb cb,
                      void *arg)
{
  if (cl->closing)
    return CORE_EABORTED;
  if (cb == NULL || n == 0 || n > 1000)
    return CORE_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!key_ok(keys[i]))
      return CORE_ENAME;
  if (cl->quirks & S3_QUIRK_DELETE_VIA_DELETE_OBJECT) {
    struct multi_del *m = core_new(struct multi_del);
    m->cl = cl;
    m->n = n;
    m->cb = cb;
    m->arg = arg;
    m->keys = core_calloc(n, sizeof(char *));
    m->del.entries = core_calloc(n, sizeof(struct s3_delete_entry));
    m->del.n = n;
    for (size_t i = 0; i < n; i++) {
      m->keys[i] = core_strdup(keys[i]);
      m->del.entries[i].key = core_strdup(keys[i]);
    }
    multi_pump(m);
    return 0;
  }
  struct core_buf body;
  core_buf_init(&body, 64 * 1024 * 1024);
  int rc = s3_xml_delete_body(keys, n, 0, &body);
  if (rc < 0) {
    core_buf_free(&body);
    return rc;
  }
  struct s3_op *op = op_new(cl, OP_DELETE_MULTI, "POST", NULL, cb, arg);
  if (op == NULL) {
    core_buf_free(&body);
    return CORE_EINVAL;
  }
  s3_url_query_add(&op->query, "delete", NULL);
  op->own_body = core_buf_steal(&body, &op->body_len);
  op->body = op->own_body;
  op->want_md5 = 1;
  op_header(op, "Content-Type", core_strdup("application/xml"));
  op_start(op);
  return 0;
}

/* ---- check ---- */

struct check_ctx {
  struct s3_client *cl;
  s3_check_cb cb;
  void *arg;
  struct s3_check chk;
};

static void check_done(struct check_ctx *cx, enum s3_check_status st, const char *what,
                       const char *msg)
{
  cx->chk.status = st;
  cx->chk.what = what;
  snprintf(cx->chk.message, sizeof(cx->chk.message), "%s", msg);
  cx->cb(&cx->chk, cx->arg);
  core_free(cx);
}

/* libuv maps getaddrinfo's EAI_* codes to -3000..-3014. */
static int is_dns_error(int e)
{
  return e <= UV_EAI_ADDRFAMILY && e >= UV_EAI_PROTOCOL;
}

static void check_classify(struct check_ctx *cx, const struct s3_result *r, int listed)
{
  char msg[300];
  const char *b = cx->cl->bucket;
  if (r->status == 0) {
    snprintf(msg, sizeof(msg), "bucket '%s' is reachable and accessible", b);
    check_done(cx, S3_CHECK_OK, "ok", msg);
    return;
  }
  if (r->http_status == 0) {
    int e = r->status;
    if (is_dns_error(e)) {
      snprintf(msg, sizeof(msg), "cannot resolve the endpoint's host name (%s)", core_strerror(e));
      check_done(cx, S3_CHECK_DNS, "dns", msg);
    } else if (e == CORE_ECERT) {
      snprintf(msg, sizeof(msg), "the server's certificate is not trusted (fingerprint or CA mismatch)");
      check_done(cx, S3_CHECK_CERT, "certificate", msg);
    } else if (e == CORE_ETLS) {
      snprintf(msg, sizeof(msg), "TLS handshake failed (is the endpoint really TLS?)");
      check_done(cx, S3_CHECK_TLS, "tls", msg);
    } else {
      snprintf(msg, sizeof(msg), "cannot connect to the endpoint (%s)", core_strerror(e));
      check_done(cx, S3_CHECK_CONNECT, "connect", msg);
    }
    return;
  }
  switch (r->s3_code) {
  case S3_ERR_NO_SUCH_BUCKET:
    snprintf(msg, sizeof(msg), "bucket '%s' does not exist", b);
    check_done(cx, S3_CHECK_NO_BUCKET, "no-bucket", msg);
    return;
  case S3_ERR_SIGNATURE_DOES_NOT_MATCH:
    check_done(cx, S3_CHECK_CREDENTIALS, "credentials",
               "the secret key is wrong (SignatureDoesNotMatch)");
    return;
  case S3_ERR_INVALID_ACCESS_KEY_ID:
    check_done(cx, S3_CHECK_CREDENTIALS, "credentials",
               "the access key is unknown to the server (InvalidAccessKeyId)");
    return;
  case S3_ERR_ACCESS_DENIED:
    snprintf(msg, sizeof(msg), "access to bucket '%s' denied", b);
    check_done(cx, S3_CHECK_ACCESS_DENIED, "access-denied", msg);
    return;
  case S3_ERR_REQUEST_TIME_TOO_SKEWED:
    check_done(cx, S3_CHECK_OTHER, "clock", "the local clock differs too much from the server's");
    return;
  default:
    break;
  }
  if (r->http_status == 404 && listed == 0) {
    snprintf(msg, sizeof(msg), "bucket '%s' does not exist", b);
    check_done(cx, S3_CHECK_NO_BUCKET, "no-bucket", msg);
    return;
  }
  snprintf(msg, sizeof(msg), "the server answered HTTP %d (%s)", r->http_status,
           r->message[0] ? r->message : "no details");
  check_done(cx, S3_CHECK_OTHER, "other", msg);
}

static void check_after_list(const struct s3_result *r, void *arg)
{
  struct check_ctx *cx = arg;
  cx->chk.http_status = r->http_status;
  check_classify(cx, r, 1);
}

static void check_after_head(const struct s3_result *r, void *arg)
{
  struct check_ctx *cx = arg;
  cx->chk.http_status = r->http_status;
  /* A HEAD answer has no body: ask again with a listing to learn the code. */
  if (r->http_status == 403 || r->http_status == 400 || r->http_status == 401) {
    if (s3_list_objects(cx->cl, NULL, NULL, 1, check_after_list, cx) == 0)
      return;
  }
  check_classify(cx, r, 0);
}

int s3_check_bucket(struct s3_client *cl, s3_check_cb cb, void *arg)
{
  if (cl->closing)
    return CORE_EABORTED;
  if (cb == NULL)
    return CORE_EINVAL;
  struct check_ctx *cx = core_new(struct check_ctx);
  cx->cl = cl;
  cx->cb = cb;
  cx->arg = arg;
  struct s3_op *op = op_new(cl, OP_HEAD_BUCKET, "HEAD", NULL, check_after_head, cx);
  if (op == NULL) {
    core_free(cx);
    return CORE_EINVAL;
  }
  op->max_attempts = 1; /* a check reports, it does not insist */
  op_start(op);
  return 0;
}
