/* s3_check.c: drives Cairn's S3 client against a real S3 server.
 *
 *   s3_check SUITE
 *
 * SUITE is "conformance" (every operation against Ceph RGW), "faults" (1000
 * mixed operations through test/s3/faultproxy.py) or "s3rver" (a smoke run
 * against the npm s3rver). The server comes from the environment, set by
 * test/integration/test_s3_rgw.py: S3_ENDPOINT, S3_PORT, S3_ACCESS_KEY,
 * S3_SECRET_KEY, S3_REGION, S3_BUCKET (existing, empty), S3_TLS_PORT and
 * S3_TLS_FINGERPRINT (optional TLS front), S3_SEED.
 * Prints one line per case and "N passed, N failed"; exits non-zero on any
 * failure.
 */
#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "s3/s3_client.h"
#include "s3/s3_hash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static uv_loop_t *loop;
static char fail_msg[512];

#define CHECK(cond)                                                                     \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      snprintf(fail_msg, sizeof(fail_msg), "%s:%d: %s", __FILE__, __LINE__, #cond);     \
      return -1;                                                                        \
    }                                                                                   \
  } while (0)

#define CHECK_EQ(a, b)                                                                  \
  do {                                                                                  \
    long long a_ = (long long)(a), b_ = (long long)(b);                                 \
    if (a_ != b_) {                                                                     \
      snprintf(fail_msg, sizeof(fail_msg), "%s:%d: %s == %s: %lld != %lld", __FILE__,   \
               __LINE__, #a, #b, a_, b_);                                               \
      return -1;                                                                        \
    }                                                                                   \
  } while (0)

static const char *env(const char *name, const char *dflt)
{
  const char *v = getenv(name);
  return v && *v ? v : dflt;
}

/* ---- waiting for one operation ---- */

struct w {
  int done;
  struct s3_result r;   /* copied; pointers cleared */
  char *body;
  char **keys;
  size_t nkeys;
  char *token;
  int truncated;
  size_t del_ok, del_err;
  enum s3_error_code del_code;
};

static void w_cb(const struct s3_result *r, void *arg)
{
  struct w *w = arg;
  w->done++;
  w->r = *r;
  w->r.body.base = NULL;
  w->r.list = NULL;
  w->r.deleted = NULL;
  if (r->body.base) {
    w->body = core_malloc(r->body.len + 1);
    memcpy(w->body, r->body.base, r->body.len);
    w->body[r->body.len] = '\0';
    w->r.body.len = r->body.len;
  }
  if (r->list) {
    w->nkeys = r->list->n;
    w->keys = core_calloc(r->list->n + 1, sizeof(char *));
    for (size_t i = 0; i < r->list->n; i++)
      w->keys[i] = core_strdup(r->list->objects[i].key);
    w->token = r->list->next_token ? core_strdup(r->list->next_token) : NULL;
    w->truncated = r->list->is_truncated;
  }
  if (r->deleted) {
    for (size_t i = 0; i < r->deleted->n; i++) {
      if (r->deleted->entries[i].deleted) {
        w->del_ok++;
      } else {
        w->del_err++;
        w->del_code = r->deleted->entries[i].code;
      }
    }
  }
}

static void w_free(struct w *w)
{
  core_free(w->body);
  for (size_t i = 0; i < w->nkeys; i++)
    core_free(w->keys[i]);
  core_free(w->keys);
  core_free(w->token);
  memset(w, 0, sizeof(*w));
}

static int w_wait(struct w *w)
{
  while (!w->done)
    uv_run(loop, UV_RUN_ONCE);
  return w->done == 1 ? 0 : -1;
}

/* ---- clients ---- */

static struct s3_client_config base_cfg(void)
{
  struct s3_client_config c = {
      .id = "test",
      .endpoint = env("S3_ENDPOINT", "127.0.0.1"),
      .port = (int)strtol(env("S3_PORT", "7480"), NULL, 10),
      .region = env("S3_REGION", "us-east-1"),
      .access_key = env("S3_ACCESS_KEY", ""),
      .secret_key = env("S3_SECRET_KEY", ""),
      .path_style = 1,
      .use_tls = 0,
      .max_conns = 16,
      .backoff_base_ms = 20,
      .backoff_max_ms = 300,
      .request_timeout_ms = 20000,
      .connect_timeout_ms = 3000,
      .jitter_seed = 42,
  };
  return c;
}

static struct s3_client *client_with(const struct s3_client_config *cfg, const char *bucket)
{
  struct s3_client *cl;
  int rc = s3_client_new(loop, cfg, bucket, &cl);
  if (rc < 0) {
    fprintf(stderr, "s3_client_new: %s\n", core_strerror(rc));
    exit(2);
  }
  return cl;
}

static int freed;
static void on_freed(void *arg)
{
  (void)arg;
  freed++;
}

static void client_free(struct s3_client *cl)
{
  int before = freed;
  s3_client_free(cl, on_freed, NULL);
  while (freed == before)
    uv_run(loop, UV_RUN_ONCE);
}

static const char *bucket(void)
{
  return env("S3_BUCKET", "cairn-test");
}

/* ---- synchronous wrappers ---- */

static int put(struct s3_client *cl, const char *key, const void *data, size_t len, int cond,
               struct w *w)
{
  memset(w, 0, sizeof(*w));
  struct s3_put_opts o = {.if_none_match = cond};
  int rc = s3_put_object(cl, key, data, len, &o, w_cb, w);
  if (rc < 0)
    return rc;
  return w_wait(w);
}

static int get(struct s3_client *cl, const char *key, struct w *w)
{
  memset(w, 0, sizeof(*w));
  int rc = s3_get_object(cl, key, NULL, 0, w_cb, w, NULL);
  return rc < 0 ? rc : w_wait(w);
}

static int head(struct s3_client *cl, const char *key, struct w *w)
{
  memset(w, 0, sizeof(*w));
  int rc = s3_head_object(cl, key, w_cb, w);
  return rc < 0 ? rc : w_wait(w);
}

static int del(struct s3_client *cl, const char *key, struct w *w)
{
  memset(w, 0, sizeof(*w));
  int rc = s3_delete_object(cl, key, w_cb, w);
  return rc < 0 ? rc : w_wait(w);
}

struct chk_w {
  int done;
  struct s3_check c;
};

static void chk_cb(const struct s3_check *c, void *arg)
{
  struct chk_w *w = arg;
  w->done++;
  w->c = *c;
}

static int check(struct s3_client *cl, struct chk_w *w)
{
  memset(w, 0, sizeof(*w));
  int rc = s3_check_bucket(cl, chk_cb, w);
  if (rc < 0)
    return rc;
  while (!w->done)
    uv_run(loop, UV_RUN_ONCE);
  return 0;
}

/* Lists everything under `prefix`; the keys (owned) in *keys. */
static int list_all(struct s3_client *cl, const char *prefix, unsigned max_keys, char ***keys,
                    size_t *n, int *pages)
{
  char *token = NULL;
  size_t cap = 0;
  *keys = NULL;
  *n = 0;
  *pages = 0;
  for (;;) {
    struct w w;
    memset(&w, 0, sizeof(w));
    int rc = s3_list_objects(cl, prefix, token, max_keys, w_cb, &w);
    core_free(token);
    token = NULL;
    if (rc < 0 || w_wait(&w) < 0 || w.r.status != 0) {
      fprintf(stderr, "list: %d %s\n", w.r.status, w.r.message);
      w_free(&w);
      return -1;
    }
    (*pages)++;
    for (size_t i = 0; i < w.nkeys; i++) {
      if (*n == cap) {
        cap = cap ? cap * 2 : 1024;
        *keys = core_realloc(*keys, cap * sizeof(char *));
      }
      (*keys)[(*n)++] = w.keys[i];
      w.keys[i] = NULL;
    }
    int more = w.truncated;
    token = w.token;
    w.token = NULL;
    w_free(&w);
    if (!more)
      break;
  }
  return 0;
}

static void free_keys(char **keys, size_t n)
{
  for (size_t i = 0; i < n; i++)
    core_free(keys[i]);
  core_free(keys);
}

/* Runs many ops of one kind with bounded concurrency. */
struct batch {
  struct s3_client *cl;
  char **keys;
  size_t n, next, done;
  int inflight, max;
  int failures;
  int kind; /* 0 put, 1 delete */
};

static void batch_pump(struct batch *b);

static void batch_cb(const struct s3_result *r, void *arg)
{
  struct batch *b = arg;
  if (r->status != 0) {
    b->failures++;
    fprintf(stderr, "batch op failed: %d %s\n", r->status, r->message);
  }
  b->done++;
  b->inflight--;
  batch_pump(b);
}

static void batch_pump(struct batch *b)
{
  while (b->next < b->n && b->inflight < b->max) {
    const char *k = b->keys[b->next++];
    b->inflight++;
    int rc = b->kind == 0 ? s3_put_object(b->cl, k, k, strlen(k), NULL, batch_cb, b)
                          : s3_delete_object(b->cl, k, batch_cb, b);
    if (rc < 0) {
      b->inflight--;
      b->failures++;
      b->done++;
    }
  }
}

static int batch_run(struct s3_client *cl, char **keys, size_t n, int kind)
{
  struct batch b = {.cl = cl, .keys = keys, .n = n, .max = 32, .kind = kind};
  batch_pump(&b);
  while (b.done < b.n)
    uv_run(loop, UV_RUN_ONCE);
  return b.failures ? -1 : 0;
}

/* ---- conformance cases ---- */

static struct s3_client *main_cl;

static int t_check_ok(void)
{
  struct chk_w w;
  CHECK(check(main_cl, &w) == 0);
  CHECK_EQ(w.c.status, S3_CHECK_OK);
  struct w h;
  memset(&h, 0, sizeof(h));
  CHECK(s3_head_bucket(main_cl, w_cb, &h) == 0);
  CHECK(w_wait(&h) == 0);
  CHECK_EQ(h.r.status, 0);
  return 0;
}

static int t_check_missing_bucket(void)
{
  struct s3_client_config cfg = base_cfg();
  struct s3_client *cl = client_with(&cfg, "cairn-no-such-bucket");
  struct chk_w w;
  CHECK(check(cl, &w) == 0);
  client_free(cl);
  CHECK_EQ(w.c.status, S3_CHECK_NO_BUCKET);
  printf("     check says: %s\n", w.c.message);
  return 0;
}

static int t_wrong_secret(void)
{
  struct s3_client_config cfg = base_cfg();
  cfg.secret_key = "this-is-not-the-secret";
  struct s3_client *cl = client_with(&cfg, bucket());
  struct chk_w cw;
  CHECK(check(cl, &cw) == 0);
  struct w w;
  int rc = put(cl, "wrong-secret", "x", 1, 0, &w);
  client_free(cl);
  CHECK(rc == 0);
  CHECK_EQ(cw.c.status, S3_CHECK_CREDENTIALS);
  printf("     check says: %s\n", cw.c.message);
  CHECK(strstr(cw.c.message, cfg.secret_key) == NULL);
  CHECK_EQ(w.r.status, CORE_ES3);
  CHECK_EQ(w.r.http_status, 403);
  CHECK_EQ(w.r.s3_code, S3_ERR_SIGNATURE_DOES_NOT_MATCH);
  CHECK_EQ(w.r.attempts, 1); /* a 4xx is never retried */
  CHECK(strstr(w.r.message, cfg.secret_key) == NULL);
  return 0;
}

static int t_unknown_access_key(void)
{
  struct s3_client_config cfg = base_cfg();
  cfg.access_key = "NOSUCHACCESSKEY12345";
  struct s3_client *cl = client_with(&cfg, bucket());
  struct chk_w cw;
  CHECK(check(cl, &cw) == 0);
  client_free(cl);
  CHECK_EQ(cw.c.status, S3_CHECK_CREDENTIALS);
  printf("     check says: %s\n", cw.c.message);
  return 0;
}

static int t_connect_refused(void)
{
  struct s3_client_config cfg = base_cfg();
  cfg.port = 1; /* nothing listens on tcp/1 here */
  struct s3_client *cl = client_with(&cfg, bucket());
  struct chk_w cw;
  CHECK(check(cl, &cw) == 0);
  client_free(cl);
  CHECK_EQ(cw.c.status, S3_CHECK_CONNECT);
  cfg = base_cfg();
  cfg.endpoint = "cairn-no-such-host.invalid";
  cl = client_with(&cfg, bucket());
  CHECK(check(cl, &cw) == 0);
  client_free(cl);
  CHECK(cw.c.status == S3_CHECK_DNS || cw.c.status == S3_CHECK_CONNECT);
  printf("     check says: %s\n", cw.c.message);
  return 0;
}

static const char *special_keys[] = {
    "plain",
    "dir/sub dir/with spaces",
    "unicode/\xc3\xbcn\xc3\xaf\xc3\xa7\xc3\xb8\x64\xc3\xa9/\xe6\x97\xa5\xe6\x9c\xac",
    "plus+sign+key",
    "percent%20literal%",
    "tilde~key~",
    "equals=and&ampersand",
    "double//slash///key",
    "quote\"apos'<lt>&amp;",
    "store/.chunks/abcd/abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
};

static int t_roundtrip(void)
{
  for (size_t i = 0; i < sizeof(special_keys) / sizeof(special_keys[0]); i++) {
    const char *k = special_keys[i];
    char body[512];
    int len = snprintf(body, sizeof(body), "content of <%s> #%zu", k, i);
    if (i == 0)
      len = 0; /* an empty object */
    struct w w;
    CHECK(put(main_cl, k, body, (size_t)len, 0, &w) == 0);
    if (w.r.status != 0)
      fprintf(stderr, "put %s: %s\n", k, w.r.message);
    CHECK_EQ(w.r.status, 0);
    CHECK_EQ(w.r.already_exists, 0);
    CHECK(get(main_cl, k, &w) == 0);
    CHECK_EQ(w.r.status, 0);
    CHECK_EQ(w.r.body.len, len);
    CHECK(len == 0 || memcmp(w.body, body, (size_t)len) == 0);
    w_free(&w);
    CHECK(head(main_cl, k, &w) == 0);
    CHECK_EQ(w.r.status, 0);
    CHECK_EQ(w.r.content_length, len);
    struct s3_hash h;
    s3_hash_compute(body, (size_t)len, 1, &h);
    CHECK(strlen(w.r.etag) == 32);
    CHECK(del(main_cl, k, &w) == 0);
    CHECK_EQ(w.r.status, 0);
    CHECK(head(main_cl, k, &w) == 0);
    CHECK_EQ(w.r.status, CORE_ENOTFOUND);
    CHECK(w.r.not_found);
    CHECK(get(main_cl, k, &w) == 0);
    CHECK_EQ(w.r.status, CORE_ENOTFOUND);
    CHECK_EQ(w.r.s3_code, S3_ERR_NO_SUCH_KEY);
    w_free(&w);
  }
  /* Refused before anything is sent. */
  char big[1100];
  memset(big, 'k', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  struct w w;
  CHECK_EQ(s3_put_object(main_cl, big, "x", 1, NULL, w_cb, &w), CORE_ENAME);
  CHECK_EQ(s3_get_object(main_cl, "", NULL, 0, w_cb, &w, NULL), CORE_ENAME);
  return 0;
}

static int t_conditional_put(void)
{
  const char *k = "cond/chunk";
  struct w w;
  CHECK(put(main_cl, k, "first", 5, 1, &w) == 0);
  CHECK_EQ(w.r.status, 0);
  CHECK_EQ(w.r.already_exists, 0);
  CHECK(put(main_cl, k, "second", 6, 1, &w) == 0);
  CHECK_EQ(w.r.status, 0);
  CHECK_EQ(w.r.already_exists, 1);
  CHECK_EQ(w.r.http_status, 412);
  CHECK(get(main_cl, k, &w) == 0);
  CHECK(w.body && strcmp(w.body, "first") == 0);
  w_free(&w);
  /* With the quirk the header is not sent: the object is replaced. */
  struct s3_client_config cfg = base_cfg();
  cfg.quirks = S3_QUIRK_SKIP_IF_NONE_MATCH;
  struct s3_client *cl = client_with(&cfg, bucket());
  CHECK(put(cl, k, "third", 5, 1, &w) == 0);
  CHECK_EQ(w.r.status, 0);
  CHECK_EQ(w.r.already_exists, 0);
  CHECK(get(cl, k, &w) == 0);
  CHECK(w.body && strcmp(w.body, "third") == 0);
  w_free(&w);
  CHECK(del(cl, k, &w) == 0);
  client_free(cl);
  return 0;
}

static int t_precomputed_hash(void)
{
  const char *data = "precomputed payload";
  struct s3_hash h;
  s3_hash_compute(data, strlen(data), 1, &h);
  struct s3_put_opts o = {.payload_sha256 = h.sha256_hex, .content_md5 = h.md5_b64};
  struct w w;
  memset(&w, 0, sizeof(w));
  CHECK(s3_put_object(main_cl, "pre/ok", data, strlen(data), &o, w_cb, &w) == 0);
  CHECK(w_wait(&w) == 0);
  CHECK_EQ(w.r.status, 0);
  /* A wrong payload hash: the server must refuse, and it is not retried. */
  struct s3_hash other;
  s3_hash_compute("something else", 14, 0, &other);
  struct s3_put_opts bad = {.payload_sha256 = other.sha256_hex};
  memset(&w, 0, sizeof(w));
  CHECK(s3_put_object(main_cl, "pre/bad", data, strlen(data), &bad, w_cb, &w) == 0);
  CHECK(w_wait(&w) == 0);
  CHECK_EQ(w.r.status, CORE_ES3);
  CHECK(w.r.http_status == 400 || w.r.http_status == 403);
  CHECK_EQ(w.r.attempts, 1);
  printf("     wrong payload hash: HTTP %d %s\n", w.r.http_status, w.r.message);
  /* A wrong Content-MD5: BadDigest. */
  struct s3_put_opts badmd5 = {.content_md5 = "1B2M2Y8AsgTpgAmYEPiJ9w=="};
  memset(&w, 0, sizeof(w));
  CHECK(s3_put_object(main_cl, "pre/badmd5", data, strlen(data), &badmd5, w_cb, &w) == 0);
  CHECK(w_wait(&w) == 0);
  CHECK_EQ(w.r.status, CORE_ES3);
  CHECK_EQ(w.r.s3_code, S3_ERR_BAD_DIGEST);
  CHECK(del(main_cl, "pre/ok", &w) == 0);
  return 0;
}

/* Streamed GET with back-pressure: pause on every piece, resume 1 ms later.
 * One `arg` serves the body and done callbacks. */
struct stream_ctx {
  struct w w;
  struct s3_op *op;
  uv_timer_t t;
  struct core_sha256 h;
  size_t got;
  int paused;
  int violations;
  int pieces;
};

static void stream_resume(uv_timer_t *t)
{
  struct stream_ctx *s = t->data;
  s->paused = 0;
  s3_op_resume(s->op);
}

static int stream_body(const char *data, size_t len, void *arg)
{
  struct stream_ctx *s = arg;
  if (s->paused)
    s->violations++;
  core_sha256_update(&s->h, data, len);
  s->got += len;
  s->pieces++;
  s->paused = 1;
  s3_op_pause(s->op);
  uv_timer_start(&s->t, stream_resume, 1, 0);
  return 0;
}

static int t_big_streamed(void)
{
  size_t n = 4u << 20;
  unsigned char *data = core_malloc(n);
  core_random(data, n);
  uint8_t want[32], got[32];
  core_sha256(data, n, want);
  struct w w;
  CHECK(put(main_cl, "big/4MiB", data, n, 0, &w) == 0);
  core_free(data);
  CHECK_EQ(w.r.status, 0);
  struct stream_ctx *s = core_new(struct stream_ctx);
  uv_timer_init(loop, &s->t);
  s->t.data = s;
  core_sha256_init(&s->h);
  CHECK(s3_get_object(main_cl, "big/4MiB", stream_body, 0, w_cb, s, &s->op) == 0);
  CHECK(w_wait(&s->w) == 0);
  core_sha256_final(&s->h, got);
  uv_close((uv_handle_t *)&s->t, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  struct stream_ctx c = *s;
  core_free(s);
  CHECK_EQ(c.w.r.status, 0);
  CHECK_EQ(c.got, n);
  CHECK_EQ(c.violations, 0);
  CHECK(c.pieces > 16);
  CHECK(memcmp(want, got, 32) == 0);
  printf("     4 MiB in %d pieces, paused after each\n", c.pieces);
  CHECK(del(main_cl, "big/4MiB", &w) == 0);
  return 0;
}

static int t_list_2500(void)
{
  size_t n = 2500;
  char **keys = core_calloc(n, sizeof(char *));
  for (size_t i = 0; i < n; i++)
    keys[i] = core_asprintf("list/%c/%05zu-k", "abc"[i % 3], i);
  int rc = batch_run(main_cl, keys, n, 0);
  CHECK(rc == 0);
  char **got;
  size_t ng;
  int pages;
  CHECK(list_all(main_cl, "list/", 0, &got, &ng, &pages) == 0);
  CHECK_EQ(ng, n);
  CHECK_EQ(pages, 3);
  for (size_t i = 1; i < ng; i++)
    CHECK(strcmp(got[i - 1], got[i]) < 0); /* strictly increasing: each key once */
  /* Every key we put is there. */
  int *seen = core_calloc(n, sizeof(int));
  for (size_t i = 0; i < ng; i++) {
    size_t idx = (size_t)strtoull(got[i] + 7, NULL, 10);
    CHECK(idx < n && strcmp(got[i], keys[idx]) == 0);
    seen[idx]++;
  }
  for (size_t i = 0; i < n; i++)
    CHECK_EQ(seen[i], 1);
  core_free(seen);
  free_keys(got, ng);
  /* Smaller pages: same keys. */
  CHECK(list_all(main_cl, "list/b/", 300, &got, &ng, &pages) == 0);
  CHECK_EQ(ng, 833);
  CHECK_EQ(pages, 3);
  free_keys(got, ng);

  /* DeleteObjects: 1500 keys in two requests. */
  size_t done = 0;
  int requests = 0;
  while (done < 1500) {
    size_t m = 1500 - done > 1000 ? 1000 : 1500 - done;
    struct w w;
    memset(&w, 0, sizeof(w));
    CHECK(s3_delete_objects(main_cl, (const char *const *)keys + done, m, w_cb, &w) == 0);
    CHECK(w_wait(&w) == 0);
    if (w.r.status != 0)
      fprintf(stderr, "delete objects: %s\n", w.r.message);
    CHECK_EQ(w.r.status, 0);
    CHECK_EQ(w.del_ok, m);
    CHECK_EQ(w.del_err, 0);
    done += m;
    requests++;
  }
  CHECK_EQ(requests, 2);
  CHECK(list_all(main_cl, "list/", 0, &got, &ng, &pages) == 0);
  CHECK_EQ(ng, 1000);
  free_keys(got, ng);

  /* The quirk path: one DELETE per key, same result shape. */
  struct s3_client_config cfg = base_cfg();
  cfg.quirks = S3_QUIRK_DELETE_VIA_DELETE_OBJECT;
  struct s3_client *cl = client_with(&cfg, bucket());
  struct w w;
  memset(&w, 0, sizeof(w));
  CHECK(s3_delete_objects(cl, (const char *const *)keys + 1500, 1000, w_cb, &w) == 0);
  CHECK(w_wait(&w) == 0);
  client_free(cl);
  CHECK_EQ(w.r.status, 0);
  CHECK_EQ(w.del_ok, 1000);
  CHECK(list_all(main_cl, "list/", 0, &got, &ng, &pages) == 0);
  CHECK_EQ(ng, 0);
  CHECK_EQ(pages, 1);
  free_keys(got, ng);
  free_keys(keys, n);
  return 0;
}

static int t_copy(void)
{
  struct w w;
  CHECK(put(main_cl, "copy/src key", "copied bytes", 12, 0, &w) == 0);
  CHECK_EQ(w.r.status, 0);
  memset(&w, 0, sizeof(w));
  CHECK(s3_copy_object(main_cl, "copy/src key", "copy/dst+key", w_cb, &w) == 0);
  CHECK(w_wait(&w) == 0);
  if (w.r.status)
    fprintf(stderr, "copy: %s\n", w.r.message);
  CHECK_EQ(w.r.status, 0);
  CHECK(get(main_cl, "copy/dst+key", &w) == 0);
  CHECK(w.body && strcmp(w.body, "copied bytes") == 0);
  w_free(&w);
  memset(&w, 0, sizeof(w));
  CHECK(s3_copy_object(main_cl, "copy/missing", "copy/x", w_cb, &w) == 0);
  CHECK(w_wait(&w) == 0);
  CHECK_EQ(w.r.status, CORE_ES3);
  CHECK_EQ(w.r.s3_code, S3_ERR_NO_SUCH_KEY);
  CHECK(del(main_cl, "copy/src key", &w) == 0);
  CHECK(del(main_cl, "copy/dst+key", &w) == 0);
  return 0;
}

static int t_tls_fingerprint(void)
{
  const char *port = env("S3_TLS_PORT", NULL);
  const char *fp = env("S3_TLS_FINGERPRINT", NULL);
  if (port == NULL || fp == NULL) {
    snprintf(fail_msg, sizeof(fail_msg), "S3_TLS_PORT / S3_TLS_FINGERPRINT not set");
    return -1;
  }
  struct s3_client_config cfg = base_cfg();
  cfg.use_tls = 1;
  cfg.port = (int)strtol(port, NULL, 10);
  cfg.fingerprint = fp;
  struct s3_client *cl = client_with(&cfg, bucket());
  struct chk_w cw;
  CHECK(check(cl, &cw) == 0);
  struct w w;
  CHECK(put(cl, "tls/object", "over tls", 8, 0, &w) == 0);
  CHECK_EQ(w.r.status, 0);
  CHECK(get(cl, "tls/object", &w) == 0);
  CHECK(w.body && strcmp(w.body, "over tls") == 0);
  w_free(&w);
  CHECK(del(cl, "tls/object", &w) == 0);
  client_free(cl);
  if (cw.c.status != S3_CHECK_OK)
    fprintf(stderr, "tls check: %s\n", cw.c.message);
  CHECK_EQ(cw.c.status, S3_CHECK_OK);

  /* The same server with a wrong pin is refused. */
  char wrong[200];
  snprintf(wrong, sizeof(wrong), "%s", fp);
  wrong[0] = wrong[0] == '0' ? '1' : '0';
  cfg.fingerprint = wrong;
  cl = client_with(&cfg, bucket());
  CHECK(check(cl, &cw) == 0);
  CHECK(put(cl, "tls/refused", "x", 1, 0, &w) == 0);
  client_free(cl);
  CHECK_EQ(cw.c.status, S3_CHECK_CERT);
  printf("     wrong pin: %s\n", cw.c.message);
  CHECK_EQ(w.r.status, CORE_ECERT);
  CHECK_EQ(w.r.attempts, 1); /* a certificate failure is not retried */

  /* And CA verification (the system store) refuses a self-signed one. */
  cfg.fingerprint = NULL;
  cl = client_with(&cfg, bucket());
  CHECK(check(cl, &cw) == 0);
  client_free(cl);
  CHECK_EQ(cw.c.status, S3_CHECK_CERT);
  return 0;
}

/* ---- faults: 1000 mixed operations through the fault proxy ---- */

#define FAULT_OPS 1000
#define FAULT_KEYS 64
#define FAULT_PARALLEL 32
#define FAULT_ATTEMPTS 5

struct fop {
  int id;
  int kind;
  char key[64];
  char key2[64];
  char body[128];
  size_t blen;
  int done;
  struct s3_result r;
  char *got;
  size_t got_len;
};

static struct {
  struct s3_client *cl;
  struct fop ops[FAULT_OPS];
  int next, inflight, completed;
  uint64_t rng;
  uv_timer_t tick;
  uint64_t last_tick, max_gap, ticks;
} F;

static uint64_t frand(void)
{
  F.rng ^= F.rng << 13;
  F.rng ^= F.rng >> 7;
  F.rng ^= F.rng << 17;
  return F.rng;
}

static void f_tick(uv_timer_t *t)
{
  (void)t;
  uint64_t now = uv_hrtime();
  if (F.last_tick && now - F.last_tick > F.max_gap)
    F.max_gap = now - F.last_tick;
  F.last_tick = now;
  F.ticks++;
}

static void f_pump(void);

static void f_done(const struct s3_result *r, void *arg)
{
  struct fop *op = arg;
  op->done++;
  op->r = *r;
  op->r.list = NULL;
  op->r.deleted = NULL;
  op->r.body.base = NULL;
  if (r->body.base && op->got == NULL) {
    op->got = core_malloc(r->body.len + 1);
    memcpy(op->got, r->body.base, r->body.len);
    op->got[r->body.len] = '\0';
    op->got_len = r->body.len;
  }
  F.inflight--;
  F.completed++;
  f_pump();
}

static void f_start(struct fop *op)
{
  int rc;
  struct s3_put_opts o = {.if_none_match = (int)(frand() % 2)};
  switch (op->kind) {
  case 0:
    rc = s3_put_object(F.cl, op->key, op->body, op->blen, &o, f_done, op);
    break;
  case 1:
    rc = s3_get_object(F.cl, op->key, NULL, 0, f_done, op, NULL);
    break;
  case 2:
    rc = s3_head_object(F.cl, op->key, f_done, op);
    break;
  case 3:
    rc = s3_delete_object(F.cl, op->key, f_done, op);
    break;
  case 4:
    rc = s3_list_objects(F.cl, "fault/", NULL, 20, f_done, op);
    break;
  default:
    rc = s3_copy_object(F.cl, op->key, op->key2, f_done, op);
    break;
  }
  if (rc < 0) {
    fprintf(stderr, "op %d refused: %s\n", op->id, core_strerror(rc));
    op->done = -1000;
    F.completed++;
    return;
  }
  F.inflight++;
}

static void f_pump(void)
{
  while (F.next < FAULT_OPS && F.inflight < FAULT_PARALLEL)
    f_start(&F.ops[F.next++]);
}

static int t_faults(void)
{
  struct s3_client_config cfg = base_cfg();
  cfg.max_attempts = FAULT_ATTEMPTS;
  cfg.backoff_base_ms = 10;
  cfg.backoff_max_ms = 200;
  cfg.request_timeout_ms = 1500;
  cfg.connect_timeout_ms = 1000;
  cfg.max_conns = 16;
  F.cl = client_with(&cfg, bucket());
  F.rng = (uint64_t)strtoull(env("S3_SEED", "1"), NULL, 10) * 0x9E3779B97F4A7C15ULL + 1;
  for (int i = 0; i < FAULT_OPS; i++) {
    struct fop *op = &F.ops[i];
    op->id = i;
    uint64_t k = frand() % 100;
    op->kind = k < 35 ? 0 : k < 65 ? 1 : k < 78 ? 2 : k < 88 ? 3 : k < 95 ? 4 : 5;
    snprintf(op->key, sizeof(op->key), "fault/k%02d", (int)(frand() % FAULT_KEYS));
    snprintf(op->key2, sizeof(op->key2), "fault/k%02d", (int)(frand() % FAULT_KEYS));
    char body[sizeof(op->body)];
    op->blen = (size_t)snprintf(body, sizeof(body), "fault body for %s v%d", op->key, i);
    memcpy(op->body, body, sizeof(body));
  }
  uv_timer_init(loop, &F.tick);
  uv_timer_start(&F.tick, f_tick, 5, 5);
  uint64_t t0 = uv_hrtime();
  f_pump();
  while (F.completed < FAULT_OPS)
    uv_run(loop, UV_RUN_ONCE);
  double secs = (double)(uv_hrtime() - t0) / 1e9;
  uv_timer_stop(&F.tick);
  uv_close((uv_handle_t *)&F.tick, NULL);
  struct s3_stats st;
  s3_client_get_stats(F.cl, &st);
  client_free(F.cl);

  int ok = 0, notfound = 0, errors = 0, twice = 0, unclear = 0, over = 0, corrupt = 0;
  uint64_t attempts = 0;
  for (int i = 0; i < FAULT_OPS; i++) {
    struct fop *op = &F.ops[i];
    if (op->done != 1) {
      twice++;
      fprintf(stderr, "op %d answered %d times\n", i, op->done);
      continue;
    }
    attempts += op->r.attempts;
    if (op->r.attempts < 1 || op->r.attempts > FAULT_ATTEMPTS)
      over++;
    if (op->r.status == 0) {
      ok++;
      if (op->kind == 1) {
        /* Copies move bodies between keys, so any whole body is fine;
         * a cut or mixed one is not. */
        int kk = -1, v = -1;
        char again[160];
        if (op->got && sscanf(op->got, "fault body for fault/k%d v%d", &kk, &v) == 2)
          snprintf(again, sizeof(again), "fault body for fault/k%02d v%d", kk, v);
        else
          again[0] = '\0';
        if (op->got == NULL || strcmp(again, op->got) != 0 || v < 0 || v >= FAULT_OPS)
          corrupt++;
      }
    } else if (op->r.status == CORE_ENOTFOUND ||
               (op->kind == 5 && op->r.s3_code == S3_ERR_NO_SUCH_KEY)) {
      notfound++;
    } else {
      errors++;
      int clear = op->r.message[0] != '\0' &&
                  (op->r.status != CORE_ES3 || op->r.s3_code != S3_ERR_NONE);
      if (!clear)
        unclear++;
      fprintf(stderr, "op %d (kind %d) ended with %s after %u attempts: %s\n", i, op->kind,
              core_strerror(op->r.status), op->r.attempts, op->r.message);
    }
    core_free(op->got);
  }
  printf("     %d ops in %.1f s: %d ok, %d not found, %d errors; %llu attempts, %llu retries "
         "(%llu 5xx, %llu transport), %llu gave up; loop max gap %.1f ms over %llu ticks\n",
         FAULT_OPS, secs, ok, notfound, errors, (unsigned long long)st.attempts,
         (unsigned long long)st.retries, (unsigned long long)st.retry_5xx,
         (unsigned long long)st.retry_transport, (unsigned long long)st.gave_up,
         (double)F.max_gap / 1e6, (unsigned long long)F.ticks);
  CHECK_EQ(twice, 0);
  CHECK_EQ(over, 0);
  CHECK_EQ(unclear, 0);
  CHECK_EQ(corrupt, 0);
  CHECK_EQ(attempts, st.attempts);
  CHECK_EQ(st.ops, FAULT_OPS);
  CHECK_EQ(st.ok + st.not_found + st.failed_s3 + st.failed_transport, FAULT_OPS);
  CHECK(st.retries > 50);          /* the faults really happened */
  CHECK(ok + notfound >= FAULT_OPS * 98 / 100);
  CHECK(F.max_gap < 250u * 1000 * 1000); /* the loop never stalled */
  return 0;
}

/* ---- s3rver smoke ---- */

static int t_s3rver_smoke(void)
{
  struct w w;
  CHECK(put(main_cl, "smoke/a b+c", "smoke", 5, 0, &w) == 0);
  CHECK_EQ(w.r.status, 0);
  CHECK(get(main_cl, "smoke/a b+c", &w) == 0);
  CHECK(w.body && strcmp(w.body, "smoke") == 0);
  w_free(&w);
  CHECK(head(main_cl, "smoke/a b+c", &w) == 0);
  CHECK_EQ(w.r.content_length, 5);
  const char *keys[] = {"smoke/a b+c", "smoke/other"};
  CHECK(put(main_cl, keys[1], "x", 1, 0, &w) == 0);
  char **got;
  size_t ng;
  int pages;
  CHECK(list_all(main_cl, "smoke/", 0, &got, &ng, &pages) == 0);
  CHECK_EQ(ng, 2);
  free_keys(got, ng);
  memset(&w, 0, sizeof(w));
  CHECK(s3_delete_objects(main_cl, keys, 2, w_cb, &w) == 0);
  CHECK(w_wait(&w) == 0);
  CHECK_EQ(w.r.status, 0);
  CHECK_EQ(w.del_ok, 2);
  CHECK(head(main_cl, keys[0], &w) == 0);
  CHECK_EQ(w.r.status, CORE_ENOTFOUND);
  return 0;
}

/* ---- runner ---- */

struct tcase {
  const char *name;
  int (*fn)(void);
};

static int run_cases(const struct tcase *cases, size_t n)
{
  int passed = 0, failed = 0;
  for (size_t i = 0; i < n; i++) {
    fail_msg[0] = '\0';
    uint64_t t0 = uv_hrtime();
    int rc = cases[i].fn();
    double ms = (double)(uv_hrtime() - t0) / 1e6;
    if (rc == 0) {
      passed++;
      printf("ok   %s (%.0f ms)\n", cases[i].name, ms);
    } else {
      failed++;
      printf("FAIL %s (%.0f ms): %s\n", cases[i].name, ms, fail_msg);
    }
    fflush(stdout);
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
  if (argc < 2) {
    fprintf(stderr, "usage: s3_check conformance|faults|s3rver\n");
    return 2;
  }
  s3_xml_init();
  loop = uv_default_loop();
  struct s3_client_config cfg = base_cfg();
  main_cl = client_with(&cfg, bucket());
  int rc;
  if (strcmp(argv[1], "conformance") == 0) {
    static const struct tcase cases[] = {
        {"check_ok", t_check_ok},
        {"check_missing_bucket", t_check_missing_bucket},
        {"wrong_secret_is_signature_error", t_wrong_secret},
        {"unknown_access_key", t_unknown_access_key},
        {"connect_refused_and_dns", t_connect_refused},
        {"roundtrip_special_keys", t_roundtrip},
        {"conditional_put", t_conditional_put},
        {"precomputed_and_wrong_hashes", t_precomputed_hash},
        {"big_object_streamed_with_backpressure", t_big_streamed},
        {"list_2500_and_delete_objects_1500", t_list_2500},
        {"copy_object", t_copy},
        {"tls_fingerprint", t_tls_fingerprint},
    };
    rc = run_cases(cases, sizeof(cases) / sizeof(cases[0]));
  } else if (strcmp(argv[1], "faults") == 0) {
    static const struct tcase cases[] = {{"faults_1000_mixed_ops", t_faults}};
    rc = run_cases(cases, 1);
  } else if (strcmp(argv[1], "s3rver") == 0) {
    static const struct tcase cases[] = {{"check_ok", t_check_ok}, {"smoke", t_s3rver_smoke}};
    rc = run_cases(cases, 2);
  } else {
    fprintf(stderr, "unknown suite %s\n", argv[1]);
    rc = 2;
  }
  client_free(main_cl);
  uv_loop_close(loop);
  return rc;
}
