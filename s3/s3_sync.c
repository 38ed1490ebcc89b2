#include "s3/s3_sync.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "s3/s3_hash.h"

#include <stdio.h>
#include <string.h>

struct wait {
  int done;
  struct s3_sync_result *res;
  struct core_buf *body;        /* GET */
  struct s3_list_result *list;  /* LIST */
  size_t *failed;               /* DELETE */
  struct s3_check *check;
};

int s3_sync_open(struct s3_sync *s, const struct s3_client_config *cfg, const char *bucket)
{
  memset(s, 0, sizeof(*s));
  int rc = uv_loop_init(&s->loop);
  if (rc < 0)
    return rc;
  s->loop_ok = 1;
  return s3_client_new(&s->loop, cfg, bucket, &s->cl);
}

void s3_sync_close(struct s3_sync *s)
{
  if (s->cl) {
    s3_client_free(s->cl, NULL, NULL);
    s->cl = NULL;
  }
  if (s->loop_ok) {
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    s->loop_ok = 0;
  }
}

static void copy_result(struct s3_sync_result *out, const struct s3_result *r)
{
  out->status = r->status;
  out->http_status = r->http_status;
  out->s3_code = r->s3_code;
  snprintf(out->message, sizeof(out->message), "%s", r->message);
  out->not_found = r->not_found;
  out->already_exists = r->already_exists;
  out->content_length = r->content_length;
}

static void on_done(const struct s3_result *r, void *arg)
{
  struct wait *w = arg;
  copy_result(w->res, r);
  if (r->status == 0 && w->body && r->body.len) {
    if (core_buf_append(w->body, r->body.base, r->body.len) < 0)
      w->res->status = CORE_ETOOBIG;
  }
  if (r->status == 0 && w->list && r->list) {
    *w->list = *r->list;
    memset(r->list, 0, sizeof(*r->list)); /* ownership moves to the caller */
  }
  if (w->failed) {
    *w->failed = 0;
    if (r->deleted)
      for (size_t i = 0; i < r->deleted->n; i++)
        *w->failed += !r->deleted->entries[i].deleted;
  }
  w->done = 1;
}

static int run(struct s3_sync *s, struct wait *w, int rc)
{
  if (rc < 0) {
    w->res->status = rc;
    snprintf(w->res->message, sizeof(w->res->message), "%s", core_strerror(rc));
    return rc;
  }
  while (!w->done)
    uv_run(&s->loop, UV_RUN_ONCE);
  return w->res->status;
}

static void on_check(const struct s3_check *chk, void *arg)
{
  struct wait *w = arg;
  *w->check = *chk;
  w->done = 1;
}

int s3_sync_check(struct s3_sync *s, struct s3_check *out)
{
  struct s3_sync_result res;
  struct wait w = {0, &res, NULL, NULL, NULL, out};
  memset(&res, 0, sizeof(res));
  int rc = s3_check_bucket(s->cl, on_check, &w);
  if (rc < 0)
    return rc;
  while (!w.done)
    uv_run(&s->loop, UV_RUN_ONCE);
  return out->status == S3_CHECK_OK ? 0 : CORE_ES3;
}

int s3_sync_head(struct s3_sync *s, const char *key, struct s3_sync_result *res)
{
  struct wait w = {0, res, NULL, NULL, NULL, NULL};
  memset(res, 0, sizeof(*res));
  return run(s, &w, s3_head_object(s->cl, key, on_done, &w));
}

int s3_sync_put(struct s3_sync *s, const char *key, const void *data, size_t len,
                int if_none_match, struct s3_sync_result *res)
{
  struct wait w = {0, res, NULL, NULL, NULL, NULL};
  struct s3_hash h;
  memset(res, 0, sizeof(*res));
  s3_hash_compute(data, len, 1, &h);
  struct s3_put_opts o = {if_none_match, h.sha256_hex, h.md5_b64, NULL};
  return run(s, &w, s3_put_object(s->cl, key, data, len, &o, on_done, &w));
}

int s3_sync_get(struct s3_sync *s, const char *key, struct core_buf *out,
                struct s3_sync_result *res)
{
  struct wait w = {0, res, out, NULL, NULL, NULL};
  memset(res, 0, sizeof(*res));
  core_buf_reset(out);
  return run(s, &w, s3_get_object(s->cl, key, NULL, out->max, on_done, &w, NULL));
}

int s3_sync_list(struct s3_sync *s, const char *prefix, const char *token,
                 struct s3_list_result *out, struct s3_sync_result *res)
{
  struct wait w = {0, res, NULL, out, NULL, NULL};
  memset(res, 0, sizeof(*res));
  memset(out, 0, sizeof(*out));
  return run(s, &w, s3_list_objects(s->cl, prefix, token, 0, on_done, &w));
}

int s3_sync_delete(struct s3_sync *s, const char *const *keys, size_t n, size_t *failed,
                   struct s3_sync_result *res)
{
  struct wait w = {0, res, NULL, NULL, failed, NULL};
  memset(res, 0, sizeof(*res));
  return run(s, &w, s3_delete_objects(s->cl, keys, n, on_done, &w));
}

int s3_sync_copy(struct s3_sync *s, const char *src_key, const char *dst_key,
                 struct s3_sync_result *res)
{
  struct wait w = {0, res, NULL, NULL, NULL, NULL};
  memset(res, 0, sizeof(*res));
  return run(s, &w, s3_copy_object(s->cl, src_key, dst_key, on_done, &w));
}
