/* store_s3_create.c: what creating an S3 datastore checks in the bucket.
 *
 * PBS writes <store>/.in-use with the host name, so that a second server
 * pointed at the same bucket and prefix is refused instead of garbage
 * collecting the first one's chunks (it would see none of its indexes).
 * Runs with a private loop (s3_sync.h): from the config API's pool job or
 * from cairn-admin.
 */
#include "store/store_s3.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_digest.h"
#include "s3/s3_sync.h"
#include "store/store_registry.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

int store_s3_create_check(const char *config_dir, const char *store,
                          const struct store_backend_cfg *cfg, int overwrite_in_use,
                          char *err, size_t errlen)
{
  struct s3_endpoint ep;
  struct s3_client_config cc;
  struct s3_sync s;
  struct s3_sync_result res;
  struct s3_check chk;
  struct core_buf body;
  char key[S3_KEY_MAX + 1], host[256] = "localhost";
  int rc = s3_config_load_endpoint(config_dir, cfg->client, &ep, err, errlen);
  if (rc < 0)
    return rc == CORE_ENOTFOUND ? CORE_ECONFIG : rc;
  s3_endpoint_client_config(&ep, &cc);
  cc.max_attempts = 3;
  cc.connect_timeout_ms = 5000;
  cc.request_timeout_ms = 30000;
  core_buf_init(&body, 64 * 1024);
  rc = s3_sync_open(&s, &cc, cfg->bucket);
  if (rc < 0) {
    snprintf(err, errlen, "cannot set up a client for S3 endpoint '%s': %s", cfg->client,
             core_strerror(rc));
    goto out;
  }
  rc = s3_sync_check(&s, &chk);
  if (rc < 0) {
    snprintf(err, errlen, "bucket '%s' on S3 endpoint '%s': %s: %s", cfg->bucket, cfg->client,
             chk.what, chk.message);
    rc = CORE_ECONFIG;
    goto out;
  }
  snprintf(key, sizeof(key), "%s/.in-use", store);
  rc = s3_sync_get(&s, key, &body, &res);
  if (rc == 0 && !overwrite_in_use) {
    snprintf(err, errlen, "datastore prefix '%s' in bucket '%s' is in use (%.*s); set "
             "overwrite-in-use to take it over", store, cfg->bucket,
             (int)(body.len > 120 ? 120 : body.len), body.base ? body.base : "");
    rc = CORE_EEXISTS;
    goto out;
  }
  if (rc < 0 && rc != CORE_ENOTFOUND) {
    snprintf(err, errlen, "cannot read %s: %s %s", key, core_strerror(rc), res.message);
    goto out;
  }
  gethostname(host, sizeof(host) - 1);
  for (char *p = host; *p; p++)
    if (*p == '"' || *p == '\\' || (unsigned char)*p < ' ')
      *p = '_';
  core_buf_reset(&body);
  core_buf_printf(&body, "{\"hostname\":\"%s\"}", host);
  rc = s3_sync_put(&s, key, body.base, body.len, 0, &res);
  if (rc < 0)
    snprintf(err, errlen, "cannot write %s: %s %s", key, core_strerror(rc), res.message);
out:
  s3_sync_close(&s);
  s3_endpoint_free(&ep);
  core_buf_free(&body);
  return rc;
}

/* ---- blocking fetches for pool jobs (verify) -------------------------------- */

struct store_s3_fetcher {
  struct s3_sync s;
  struct s3_endpoint ep;
  char prefix[S3_KEY_MAX + 1];   /* "<store>" */
};

int store_s3_fetcher_open_cfg(const char *config_dir, const char *store,
                              const struct store_backend_cfg *cfg,
                              struct store_s3_fetcher **out, char *err, size_t errlen)
{
  struct s3_client_config cc;
  *out = NULL;
  if (cfg->type != STORE_BACKEND_S3)
    return CORE_EINVAL;
  struct store_s3_fetcher *f = core_new(struct store_s3_fetcher);
  snprintf(f->prefix, sizeof(f->prefix), "%s", store);
  int rc = s3_config_load_endpoint(config_dir, cfg->client, &f->ep, err, errlen);
  if (rc == 0) {
    s3_endpoint_client_config(&f->ep, &cc);
    rc = s3_sync_open(&f->s, &cc, cfg->bucket);
    if (rc < 0)
      snprintf(err, errlen, "cannot set up a client for S3 endpoint '%s': %s", cfg->client,
               core_strerror(rc));
  }
  if (rc < 0) {
    store_s3_fetcher_close(f);
    return rc;
  }
  *out = f;
  return 0;
}

int store_s3_fetcher_open(struct store_datastore *ds, struct store_s3_fetcher **out,
                          char *err, size_t errlen)
{
  struct store_backend *be = ds->backend;
  *out = NULL;
  if (be == NULL)
    return CORE_EINVAL;
  return store_s3_fetcher_open_cfg(be->config_dir, be->store, &be->cfg, out, err, errlen);
}

int store_s3_fetch(struct store_s3_fetcher *f, const uint8_t digest[32], struct core_buf *out)
{
  char hex[65], key[S3_KEY_MAX + 128];
  struct s3_sync_result res;
  core_hex_encode(digest, 32, hex);
  snprintf(key, sizeof(key), "%.900s/.chunks/%.4s/%s", f->prefix, hex, hex);
  return s3_sync_get(&f->s, key, out, &res);
}

void store_s3_fetcher_close(struct store_s3_fetcher *f)
{
  if (f == NULL)
    return;
  s3_sync_close(&f->s);
  s3_endpoint_free(&f->ep);
  core_free(f);
}

struct s3_sync *store_s3_fetcher_sync(struct store_s3_fetcher *f)
{
  return &f->s;
}

const char *store_s3_fetcher_prefix(const struct store_s3_fetcher *f)
{
  return f->prefix;
}
