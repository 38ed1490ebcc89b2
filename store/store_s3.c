/* store_s3.c: the S3 backend of a datastore: configuration, lifetime, keys,
 * and S3 requests through a client that follows s3.cfg.
 *
 * The client of a datastore is built on the loop from an endpoint loaded in
 * the pool (s3.cfg and its secret); it is rebuilt when the CORE_GEN_S3
 * generation moved. Requests count themselves on the client they use
 * (struct store_s3_conn), so a replaced client is freed only after its last
 * request ended: an endpoint edit never aborts a running backup.
 */
#include "store/store_s3.h"

#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "store/store_registry.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#define S3_MAX_CONNS 32

/* ---- configuration (pure) ---------------------------------------------- */

int store_backend_parse(const char *value, struct store_backend_cfg *out, char *err,
                        size_t errlen)
{
  struct core_config_props p;
  memset(out, 0, sizeof(*out));
  core_config_props_init(&p);
  int rc = core_config_props_parse(&p, value, "type");
  if (rc < 0) {
    snprintf(err, errlen, "backend: malformed property string");
    return CORE_ECONFIG;
  }
  rc = CORE_ECONFIG;
  const char *type = core_config_props_get(&p, "type");
  const char *client = core_config_props_get(&p, "client");
  const char *bucket = core_config_props_get(&p, "bucket");
  for (size_t i = 0; i < p.n; i++) {
    const char *k = p.items[i].key;
    if (strcmp(k, "type") && strcmp(k, "client") && strcmp(k, "bucket")) {
      snprintf(err, errlen, "backend: unknown key '%s'", k);
      goto out;
    }
  }
  if (type == NULL || !strcmp(type, "filesystem")) {
    if (client || bucket) {
      snprintf(err, errlen, "backend: client and bucket belong to type=s3");
      goto out;
    }
    out->type = STORE_BACKEND_FS;
    rc = 0;
    goto out;
  }
  if (strcmp(type, "s3") != 0) {
    snprintf(err, errlen, "backend: type must be filesystem or s3");
    goto out;
  }
  if (client == NULL || s3_config_check_id(client) < 0) {
    snprintf(err, errlen, "backend: type=s3 needs client=ID (an S3 endpoint id)");
    goto out;
  }
  if (bucket == NULL || s3_url_check_bucket(bucket) < 0) {
    snprintf(err, errlen, "backend: type=s3 needs bucket=NAME (3..63 of a-z, 0-9, '.', '-')");
    goto out;
  }
  out->type = STORE_BACKEND_S3;
  snprintf(out->client, sizeof(out->client), "%s", client);
  snprintf(out->bucket, sizeof(out->bucket), "%s", bucket);
  rc = 0;
out:
  core_config_props_free(&p);
  return rc;
}

int store_backend_parse_size(const char *value, uint64_t *out)
{
  char *end;
  errno = 0;
  if (value == NULL || value[0] < '0' || value[0] > '9')
    return CORE_ECONFIG;
  double v = strtod(value, &end);
  if (errno || v < 0)
    return CORE_ECONFIG;
  while (*end == ' ')
    end++;
  static const struct {
    const char *unit;
    double mult;
  } units[] = {
    {"", 1}, {"B", 1},
    {"K", 1024.0}, {"KB", 1024.0}, {"KiB", 1024.0},
    {"M", 1048576.0}, {"MB", 1048576.0}, {"MiB", 1048576.0},
    {"G", 1073741824.0}, {"GB", 1073741824.0}, {"GiB", 1073741824.0},
    {"T", 1099511627776.0}, {"TB", 1099511627776.0}, {"TiB", 1099511627776.0},
  };
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
    if (strcmp(end, units[i].unit) == 0) {
      double bytes = v * units[i].mult;
      if (bytes > 1.8e19)
        return CORE_ECONFIG;
      *out = (uint64_t)bytes;
      return 0;
    }
  }
  return CORE_ECONFIG;
}

int store_backend_check_section(const struct core_config_section *sec, char *err,
                                size_t errlen)
{
  const char *backend = core_config_get(sec, "backend");
  const char *size = core_config_get(sec, "max-cache-size");
  struct store_backend_cfg cfg;
  uint64_t n;
  if (backend && store_backend_parse(backend, &cfg, err, errlen) < 0)
    return CORE_ECONFIG;
  if (size && store_backend_parse_size(size, &n) < 0) {
    snprintf(err, errlen, "max-cache-size must be a size such as 64GiB");
    return CORE_ECONFIG;
  }
  return 0;
}

/* ---- keys -------------------------------------------------------------- */

int store_s3_chunk_key(const struct store_backend *be, const uint8_t digest[32],
                       char out[S3_KEY_MAX + 1])
{
  char hex[65];
  core_hex_encode(digest, 32, hex);
  int n = snprintf(out, S3_KEY_MAX + 1, "%s/.chunks/%.4s/%s", be->store, hex, hex);
  return n < 0 || n > S3_KEY_MAX ? CORE_ETOOBIG : n;
}

int store_s3_cnt_key(const struct store_backend *be, const char *rel, char out[S3_KEY_MAX + 1])
{
  while (rel[0] == '.' && rel[1] == '/')
    rel += 2;
  int n = snprintf(out, S3_KEY_MAX + 1, "%s/.cnt/%s", be->store, rel);
  return n < 0 || n > S3_KEY_MAX ? CORE_ETOOBIG : n;
}

const char *store_s3_rel(const struct store_datastore *ds, const char *abs)
{
  size_t n = strlen(ds->path);
  while (n > 1 && ds->path[n - 1] == '/')
    n--;
  if (strncmp(abs, ds->path, n) == 0)
    abs += n;
  while (*abs == '/')
    abs++;
  return abs;
}

/* ---- clients ----------------------------------------------------------- */

struct store_s3_conn {
  struct store_backend *be;
  struct s3_client *cl;
  uint64_t gen;            /* CORE_GEN_S3 it was built for */
  int ops;                 /* requests in flight on it */
  int retired;             /* replaced or closing: free when ops == 0 */
};

enum req_kind { R_PUT, R_GET, R_HEAD, R_LIST, R_DELETE, R_HEAD_BUCKET };

struct store_s3_req {
  struct store_s3_req *next;
  struct store_backend *be;
  struct store_s3_conn *conn;
  enum req_kind kind;
  char *key;               /* owned: key or prefix */
  char *token;             /* owned: continuation token */
  const void *body;
  size_t len;
  int if_none_match;
  char sha[65];
  char md5[25];
  size_t max_body;
  const char *const *keys;
  size_t nkeys;
  store_s3_result_cb cb;
  void *arg;
  uv_timer_t fail_timer;   /* reports a failure without calling back inside the call */
  struct s3_result fail;
};

static void conn_free_cb(void *arg)
{
  core_free(arg);
}

static void conn_maybe_free(struct store_s3_conn *c)
{
  if (c->retired && c->ops == 0) {
    s3_client_free(c->cl, conn_free_cb, c);
  }
}

static void be_maybe_free(struct store_backend *be);

static void req_free(struct store_s3_req *r)
{
  struct store_backend *be = r->be;
  core_free(r->key);
  core_free(r->token);
  core_free(r);
  be->reqs--;
  be_maybe_free(be);
}

static void on_fail_closed(uv_handle_t *h)
{
  req_free(h->data);
}

static void on_fail_timer(uv_timer_t *t)
{
  struct store_s3_req *r = t->data;
  r->cb(&r->fail, r->arg);
  uv_close((uv_handle_t *)&r->fail_timer, on_fail_closed);
}

/* Ends a request with an error, from the next loop iteration. */
static void req_fail(struct store_s3_req *r, int err, const char *msg)
{
  memset(&r->fail, 0, sizeof(r->fail));
  r->fail.status = err;
  snprintf(r->fail.message, sizeof(r->fail.message), "%s", msg ? msg : core_strerror(err));
  uv_timer_init(r->be->loop, &r->fail_timer);
  r->fail_timer.data = r;
  uv_timer_start(&r->fail_timer, on_fail_timer, 0, 0);
}

static void on_op_done(const struct s3_result *res, void *arg)
{
  struct store_s3_req *r = arg;
  struct store_s3_conn *c = r->conn;
  r->cb(res, r->arg);
  c->ops--;
  conn_maybe_free(c);
  req_free(r);
}

static void req_start(struct store_s3_req *r, struct store_s3_conn *c)
{
  struct s3_client *cl = c->cl;
  struct s3_put_opts po = {r->if_none_match, r->sha[0] ? r->sha : NULL,
                           r->md5[0] ? r->md5 : NULL, NULL};
  int rc = CORE_EINVAL;
  r->conn = c;
  c->ops++;
  switch (r->kind) {
  case R_PUT: rc = s3_put_object(cl, r->key, r->body, r->len, &po, on_op_done, r); break;
  case R_GET: rc = s3_get_object(cl, r->key, NULL, r->max_body, on_op_done, r, NULL); break;
  case R_HEAD: rc = s3_head_object(cl, r->key, on_op_done, r); break;
  case R_LIST: rc = s3_list_objects(cl, r->key, r->token, 0, on_op_done, r); break;
  case R_DELETE: rc = s3_delete_objects(cl, r->keys, r->nkeys, on_op_done, r); break;
  case R_HEAD_BUCKET: rc = s3_head_bucket(cl, on_op_done, r); break;
  }
  if (rc < 0) {
    c->ops--;
    r->conn = NULL;
    req_fail(r, rc, NULL);
  }
}

struct load_job {
  struct core_job job;
  struct store_backend *be;
  char *config_dir;            /* in */
  char client[S3_ID_MAX + 1];  /* in */
  uint64_t gen;                /* in: generation read before the file */
  struct s3_endpoint ep;       /* out */
  int rc;                      /* out */
  char err[256];               /* out */
};

static void load_run(struct core_job *j)
{
  struct load_job *l = (struct load_job *)j;
  l->rc = s3_config_load_endpoint(l->config_dir, l->client, &l->ep, l->err, sizeof(l->err));
}

static void load_done(struct core_job *j, int status)
{
  struct load_job *l = (struct load_job *)j;
  struct store_backend *be = l->be;
  int rc = status < 0 ? status : l->rc;
  char msg[320] = "";
  be->loading = 0;
  if (rc == 0 && !be->closing) {
    struct s3_client_config cfg;
    struct s3_client *cl = NULL;
    s3_endpoint_client_config(&l->ep, &cfg);
    cfg.max_conns = S3_MAX_CONNS;
    /* Builds a TLS context: with CA verification this reads the CA store on
     * the loop, once per endpoint change (see docs/s3-datastores.md). */
    rc = s3_client_new(be->loop, &cfg, be->cfg.bucket, &cl);
    if (rc == 0) {
      if (be->conn) {
        be->conn->retired = 1;
        conn_maybe_free(be->conn);
      }
      be->conn = core_new(struct store_s3_conn);
      be->conn->be = be;
      be->conn->cl = cl;
      be->conn->gen = l->gen;
    } else {
      snprintf(msg, sizeof(msg), "datastore %s: cannot set up S3 client '%s': %s", be->store,
               be->cfg.client, core_strerror(rc));
    }
  } else if (rc < 0) {
    snprintf(msg, sizeof(msg), "datastore %s: %s", be->store,
             l->err[0] ? l->err : core_strerror(rc));
  } else {
    rc = CORE_EABORTED;
  }
  if (rc < 0 && msg[0])
    core_warn("%s", msg);
  struct store_s3_req *w = be->waiting;
  be->waiting = NULL;
  while (w) {
    struct store_s3_req *next = w->next;
    if (rc == 0)
      req_start(w, be->conn);
    else
      req_fail(w, rc, msg[0] ? msg : NULL);
    w = next;
  }
  s3_endpoint_free(&l->ep);
  core_free(l->config_dir);
  core_free(l);
  be_maybe_free(be);
}

static void req_submit(struct store_s3_req *r)
{
  struct store_backend *be = r->be;
  if (be->closing) {
    req_fail(r, CORE_EABORTED, "datastore is being removed");
    return;
  }
  uint64_t gen = core_shmem_gen_load(be->shmem, CORE_GEN_S3);
  if (be->conn && be->conn->gen == gen) {
    req_start(r, be->conn);
    return;
  }
  r->next = be->waiting;
  be->waiting = r;
  if (be->loading)
    return;
  struct load_job *l = core_new(struct load_job);
  l->be = be;
  l->config_dir = core_strdup(be->config_dir);
  snprintf(l->client, sizeof(l->client), "%s", be->cfg.client);
  l->gen = gen;
  be->loading = 1;
  int rc = core_job_submit(be->loop, &l->job, load_run, load_done);
  if (rc < 0) {
    l->rc = rc;
    load_done(&l->job, rc);
  }
}

static struct store_s3_req *req_new(struct store_backend *be, enum req_kind kind,
                                    const char *key, store_s3_result_cb cb, void *arg)
{
  struct store_s3_req *r = core_new(struct store_s3_req);
  be->reqs++;
  r->be = be;
  r->kind = kind;
  r->key = key ? core_strdup(key) : NULL;
  r->cb = cb;
  r->arg = arg;
  return r;
}

void store_s3_put(struct store_backend *be, const char *key, const void *body, size_t len,
                  int if_none_match, const char *sha256_hex, const char *md5_b64,
                  store_s3_result_cb cb, void *arg)
{
  struct store_s3_req *r = req_new(be, R_PUT, key, cb, arg);
  r->body = body;
  r->len = len;
  r->if_none_match = if_none_match;
  if (sha256_hex)
    snprintf(r->sha, sizeof(r->sha), "%s", sha256_hex);
  if (md5_b64)
    snprintf(r->md5, sizeof(r->md5), "%s", md5_b64);
  req_submit(r);
}

void store_s3_get(struct store_backend *be, const char *key, size_t max_body,
                  store_s3_result_cb cb, void *arg)
{
  struct store_s3_req *r = req_new(be, R_GET, key, cb, arg);
  r->max_body = max_body;
  req_submit(r);
}

void store_s3_head(struct store_backend *be, const char *key, store_s3_result_cb cb, void *arg)
{
  req_submit(req_new(be, R_HEAD, key, cb, arg));
}

void store_s3_list(struct store_backend *be, const char *prefix, const char *token,
                   store_s3_result_cb cb, void *arg)
{
  struct store_s3_req *r = req_new(be, R_LIST, prefix, cb, arg);
  r->token = token ? core_strdup(token) : NULL;
  req_submit(r);
}

void store_s3_delete(struct store_backend *be, const char *const *keys, size_t n,
                     store_s3_result_cb cb, void *arg)
{
  struct store_s3_req *r = req_new(be, R_DELETE, NULL, cb, arg);
  r->keys = keys;
  r->nkeys = n;
  req_submit(r);
}

void store_s3_head_bucket(struct store_backend *be, store_s3_result_cb cb, void *arg)
{
  req_submit(req_new(be, R_HEAD_BUCKET, NULL, cb, arg));
}

void store_s3_stats(const struct store_backend *be, struct s3_stats *out)
{
  memset(out, 0, sizeof(*out));
  if (be->conn)
    s3_client_get_stats(be->conn->cl, out);
}

/* ---- lifetime ---------------------------------------------------------- */

/* Bytes the cache may hold when max-cache-size is not set: what the file
 * system had free when the backend started (PBS derives its LRU capacity
 * from free space too). */
static uint64_t default_cache_max(const char *path)
{
  struct statvfs sv;
  if (statvfs(path, &sv) < 0)
    return 64ull << 30;
  return (uint64_t)sv.f_bavail * sv.f_frsize;
}

static void be_maybe_free(struct store_backend *be)
{
  if (!be->closing || be->loading || be->waiting || be->reqs)
    return;
  if (be->conn) {
    struct store_s3_conn *c = be->conn;
    be->conn = NULL;
    c->retired = 1;
    conn_maybe_free(c);
  }
  /* Requests still in flight hold no pointer to `be` once their callback
   * ran; the session or GC that started them holds the datastore, so none
   * can be left when the datastore is freed. */
  store_s3_claims_free(&be->claims);
  store_s3_cache_free(&be->cache);
  core_free(be->store);
  core_free(be->config_dir);
  core_free(be->hook_pause);
  core_free(be);
}

void store_backend_configure(struct store_datastore *ds, const struct core_config_section *sec,
                             const char *config_dir, struct core_shmem *shmem)
{
  char err[256];
  struct store_backend_cfg cfg;
  const char *backend = core_config_get(sec, "backend");
  const char *size = core_config_get(sec, "max-cache-size");
  if (backend == NULL || store_backend_parse(backend, &cfg, err, sizeof(err)) < 0)
    cfg.type = STORE_BACKEND_FS;
  struct store_backend *be = ds->backend;
  if (be) {
    if (cfg.type != STORE_BACKEND_S3 || strcmp(cfg.client, be->cfg.client) ||
        strcmp(cfg.bucket, be->cfg.bucket))
      core_warn("datastore %s: the backend cannot change while the server runs; still "
                "using bucket %s of S3 endpoint %s", ds->name, be->cfg.bucket, be->cfg.client);
  } else if (cfg.type == STORE_BACKEND_S3) {
    be = core_new(struct store_backend);
    be->loop = ds->reg->loop;
    be->ds = ds;
    be->store = core_strdup(ds->name);
    be->config_dir = core_strdup(config_dir);
    be->shmem = shmem;
    be->cfg = cfg;
    store_s3_claims_init(&be->claims);
    store_s3_cache_init(&be->cache, 0);
    const char *pause = getenv("CAIRN_TEST_S3_PAUSE");
    if (pause && pause[0])
      be->hook_pause = core_strdup(pause);
    const char *noclaims = getenv("CAIRN_TEST_S3_NO_CLAIMS");
    if (noclaims && !strcmp(noclaims, "1")) {
      core_warn("datastore %s: CAIRN_TEST_S3_NO_CLAIMS=1: upload/GC claims disabled "
                "(test hook; unsafe)", ds->name);
      be->claims.disabled = 1;
    }
    ds->backend = be;
    core_info("datastore %s: S3 backend, bucket %s on endpoint %s", ds->name, cfg.bucket,
              cfg.client);
  } else {
    return;
  }
  uint64_t max = 0;
  be->max_cache_set = size && store_backend_parse_size(size, &max) == 0;
  if (!be->max_cache_set)
    max = default_cache_max(ds->path);
  store_s3_cache_set_max(&be->cache, max);
  store_s3_cache_scan(ds);
}

void store_backend_release(struct store_datastore *ds)
{
  struct store_backend *be = ds->backend;
  if (be == NULL)
    return;
  ds->backend = NULL;
  be->closing = 1;
  be->ds = NULL;
  be_maybe_free(be);
}
