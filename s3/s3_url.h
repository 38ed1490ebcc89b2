/* s3_url.h: where an S3 request goes: host, Host header, path and query.
 *
 * DESIGN. Two addressing styles, as PBS has them:
 *  - path-style: the host is the endpoint (with "{{region}}" substituted) and
 *    the path is "/<bucket>/<key>";
 *  - virtual-host style: the endpoint is a template in which "{{bucket}}" and
 *    "{{region}}" are substituted ("{{bucket}}.s3.{{region}}.amazonaws.com")
 *    and the path is "/<key>".
 * Keys are encoded once with s3_uri_encode ('/' kept), which is also their
 * canonical SigV4 form, so what is sent is what is signed. The Host header
 * carries ":port" only when the port is not the scheme's default.
 */
#ifndef S3_URL_H
#define S3_URL_H

#include "core/core_buf.h"

/* S3 keys are at most 1024 bytes; bucket names 3..63. */
#define S3_KEY_MAX 1024
#define S3_BUCKET_MAX 63

struct s3_url_target {
  const char *endpoint;   /* host name or template; IPv6 literals in brackets */
  const char *region;
  int port;               /* 0: 443 with TLS, 80 without */
  int use_tls;
  int path_style;
};

/* Checks a bucket name (3..63 of a-z0-9.-, starting and ending with a letter
 * or digit). Returns 0 or CORE_ENAME. */
int s3_url_check_bucket(const char *bucket);

/* Fills `host` (the name to resolve and to verify in TLS, brackets removed)
 * and `host_header` (the Host header value, with ":port" when not default).
 * Returns 0, CORE_ECONFIG for an endpoint without {{bucket}} in vhost style
 * or with bytes that cannot be in a host name, or a core_buf error. */
int s3_url_host(const struct s3_url_target *t, const char *bucket, struct core_buf *host,
                struct core_buf *host_header);

/* Appends the encoded path for `key` (NULL or "" for the bucket itself).
 * Returns 0, CORE_ENAME for a key over S3_KEY_MAX, or a core_buf error. */
int s3_url_path(const struct s3_url_target *t, const char *bucket, const char *key,
                struct core_buf *path);

/* Appends "name=value" (both encoded) to a query, with '&' if it is not the
 * first pair; `value` NULL appends the bare name ("delete"). */
int s3_url_query_add(struct core_buf *query, const char *name, const char *value);

/* The port a target connects to. */
int s3_url_port(const struct s3_url_target *t);

#endif
