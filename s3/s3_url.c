#include "s3/s3_url.h"

#include "core/core_error.h"
#include "s3/s3_sigv4.h"

#include <string.h>

int s3_url_check_bucket(const char *bucket)
{
  size_t n = bucket ? strlen(bucket) : 0;
  if (n < 3 || n > S3_BUCKET_MAX)
    return CORE_ENAME;
  for (size_t i = 0; i < n; i++) {
    char c = bucket[i];
    int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && c != '.' && c != '-')
      return CORE_ENAME;
    if ((i == 0 || i == n - 1) && !alnum)
      return CORE_ENAME;
  }
  return 0;
}

int s3_url_port(const struct s3_url_target *t)
{
  if (t->port > 0)
    return t->port;
  return t->use_tls ? 443 : 80;
}

static int host_byte_ok(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '-' || c == '_' || c == ':' || c == '[' || c == ']';
}

int s3_url_host(const struct s3_url_target *t, const char *bucket, struct core_buf *host,
                struct core_buf *host_header)
{
  const char *e = t->endpoint;
  int rc = 0, had_bucket = 0;
  if (e == NULL || *e == '\0')
    return CORE_ECONFIG;
  struct core_buf name;
  core_buf_init(&name, 512);
  while (*e && rc == 0) {
    if (strncmp(e, "{{bucket}}", 10) == 0) {
      had_bucket = 1;
      if (!t->path_style)
        rc = core_buf_append_str(&name, bucket ? bucket : "");
      e += 10;
    } else if (strncmp(e, "{{region}}", 10) == 0) {
      rc = core_buf_append_str(&name, t->region ? t->region : "");
      e += 10;
    } else if (host_byte_ok(*e)) {
      rc = core_buf_append(&name, e, 1);
      e++;
    } else {
      rc = CORE_ECONFIG;
    }
  }
  if (rc < 0)
    goto out;
  if (!t->path_style && !had_bucket) {
    rc = CORE_ECONFIG;
    goto out;
  }
  /* A path-style template may still carry "{{bucket}}."; drop the dot it leaves. */
  const char *n = name.base;
  while (*n == '.')
    n++;
  if (*n == '\0') {
    rc = CORE_ECONFIG;
    goto out;
  }
  int port = s3_url_port(t);
  int dflt = port == (t->use_tls ? 443 : 80);
  if (n[0] == '[') {
    const char *close = strchr(n, ']');
    if (close == NULL || close[1] != '\0') {
      rc = CORE_ECONFIG;
      goto out;
    }
    rc = core_buf_append(host, n + 1, (size_t)(close - n - 1));
  } else {
    if (strchr(n, ':') || strchr(n, '[') || strchr(n, ']')) {
      rc = CORE_ECONFIG;
      goto out;
    }
    rc = core_buf_append_str(host, n);
  }
  if (rc == 0)
    rc = dflt ? core_buf_append_str(host_header, n) : core_buf_printf(host_header, "%s:%d", n, port);
out:
  core_buf_free(&name);
  return rc;
}

int s3_url_path(const struct s3_url_target *t, const char *bucket, const char *key,
                struct core_buf *path)
{
  size_t klen = key ? strlen(key) : 0;
  if (klen > S3_KEY_MAX)
    return CORE_ENAME;
  int rc = core_buf_append(path, "/", 1);
  if (rc == 0 && t->path_style) {
    rc = s3_uri_encode(path, bucket, strlen(bucket), 0);
    if (rc == 0 && klen > 0)
      rc = core_buf_append(path, "/", 1);
  }
  if (rc == 0 && klen > 0)
    rc = s3_uri_encode(path, key, klen, 1);
  return rc;
}

int s3_url_query_add(struct core_buf *query, const char *name, const char *value)
{
  int rc = 0;
  if (query->len > 0)
    rc = core_buf_append(query, "&", 1);
  if (rc == 0)
    rc = s3_uri_encode(query, name, strlen(name), 0);
  if (rc == 0 && value) {
    rc = core_buf_append(query, "=", 1);
    if (rc == 0)
      rc = s3_uri_encode(query, value, strlen(value), 0);
  }
  return rc;
}
