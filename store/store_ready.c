/* store_ready.c: GET /api2/json/readyz (see store_metrics.h): every
 * configured datastore is checked afresh, the file-system ones with a stat of
 * their chunk directory in the pool, the S3 ones with a HEAD on the bucket
 * through their S3 client; the answer waits for all of them. */
#include "store/store_metrics_internal.h"

#include "core/core_alloc.h"
#include "core/core_buf.h"
#include "core/core_error.h"
#include "core/core_job.h"
#include "core/core_json.h"
#include "s3/s3_client.h"
#include "store/store_registry.h"
#include "store/store_s3.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

struct ready_req {
  struct http_request *req;
  struct store_metrics *m;
  int pending;               /* checks outstanding (+1 while starting them) */
  struct core_json failing;  /* [{"store":..., "error":...}, ...] */
  int nfailing;
  int nstores;
};

struct ready_check {
  struct core_job job;
  struct ready_req *r;
  char *name;                /* owned */
  char *path;                /* in, owned */
  int rc;                    /* out */
};

static void ready_fail(struct ready_req *r, const char *store, const char *why)
{
  core_json_obj_open(&r->failing);
  core_json_kv_str(&r->failing, "store", store);
  core_json_kv_str(&r->failing, "error", why);
  core_json_obj_close(&r->failing);
  r->nfailing++;
}

static void ready_step(struct ready_req *r)
{
  if (--r->pending > 0)
    return;
  core_json_arr_close(&r->failing);
  size_t len;
  const char *list = core_json_text(&r->failing, &len);
  struct core_buf b;
  core_buf_init(&b, len + 256);
  core_buf_printf(&b, "{\"data\":{\"ready\":%s,\"datastores\":%d,\"failing\":%.*s}}",
                  r->nfailing ? "false" : "true", r->nstores, (int)len, list);
  size_t blen;
  char *body = core_buf_steal(&b, &blen);
  http_respond_owned(r->req, r->nfailing ? 503 : 200, "application/json", body, blen);
  r->m->jobs--;
  core_json_free(&r->failing);
  core_free(r);
}

static void check_run(struct core_job *j)
{
  struct ready_check *c = (struct ready_check *)j;
  char *chunks = core_asprintf("%s/.chunks", c->path);
  struct stat st;
  if (stat(chunks, &st) < 0)
    c->rc = -errno;
  else if (!S_ISDIR(st.st_mode))
    c->rc = -ENOTDIR;
  core_free(chunks);
}

static void check_done(struct core_job *j, int status)
{
  struct ready_check *c = (struct ready_check *)j;
  int rc = status < 0 ? status : c->rc;
  if (rc < 0) {
    char why[160];
    snprintf(why, sizeof(why), "chunk store %s/.chunks: %s", c->path, core_strerror(rc));
    ready_fail(c->r, c->name, why);
  }
  ready_step(c->r);
  core_free(c->name);
  core_free(c->path);
  core_free(c);
}

struct ready_s3 {
  struct ready_req *r;
  char *name;
};

static void s3_checked(const struct s3_result *res, void *arg)
{
  struct ready_s3 *c = arg;
  if (res->status < 0) {
    char why[320];
    snprintf(why, sizeof(why), "S3 bucket not reachable: %s (HTTP %d)",
             res->message[0] ? res->message : core_strerror(res->status), res->http_status);
    ready_fail(c->r, c->name, why);
  }
  ready_step(c->r);
  core_free(c->name);
  core_free(c);
}

static void ready_refreshed(void *arg, int err)
{
  struct ready_req *r = arg;
  if (err) {
    char why[160];
    snprintf(why, sizeof(why), "cannot read datastore.cfg: %s", core_strerror(err));
    ready_fail(r, "", why);
    ready_step(r);
    return;
  }
  const char *k;
  void *v;
  for (size_t i = 0; core_map_next(&r->m->reg->instances, &i, &k, &v);) {
    struct store_datastore *ds = v;
    if (ds->removed)
      continue;
    r->nstores++;
    r->pending++;
    if (store_datastore_is_s3(ds)) {
      struct ready_s3 *c = core_new(struct ready_s3);
      c->r = r;
      c->name = core_strdup(ds->name);
      store_s3_head_bucket(ds->backend, s3_checked, c);
      continue;
    }
    struct ready_check *c = core_new(struct ready_check);
    c->r = r;
    c->name = core_strdup(ds->name);
    c->path = core_strdup(ds->path);
    int rc = core_job_submit(r->m->loop, &c->job, check_run, check_done);
    if (rc < 0)
      check_done(&c->job, rc);
  }
  ready_step(r);
}

void store__metrics_h_ready(struct http_request *req, void *ctx)
{
  struct store_metrics *m = ctx;
  struct ready_req *r = core_new(struct ready_req);
  r->req = req;
  r->m = m;
  r->pending = 1;
  core_json_init(&r->failing, 0);
  core_json_arr_open(&r->failing);
  m->jobs++;
  store_registry_refresh(m->reg, ready_refreshed, r);
}

