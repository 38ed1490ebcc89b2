/* s3_client.h: S3 operations on the event loop, with retries.
 *
 * DESIGN. One struct s3_client is one (endpoint, bucket) pair: it owns an
 * http_client (keep-alive pool, connection limit) for the bucket's host and
 * runs every operation as a small state machine on the loop:
 *
 *   [hash in pool job] -> sign -> send -> classify -> done
 *                                  ^                |
 *                                  +-- backoff <----+ (retryable)
 *
 * Bodies are the caller's buffers (except the DeleteObjects XML, built and
 * owned here) and are re-sent untouched on every attempt. Their SHA-256 and
 * MD5 are computed once, in a pool job (s3_hash), unless the caller passes a
 * precomputed SHA-256. Every attempt is signed afresh (a fresh x-amz-date).
 *
 * Retries: 500, 502, 503, 504, an error body saying SlowDown / InternalError
 * / ServiceUnavailable, and transport errors (reset, refused, EOF, truncated
 * response, timeout, TLS failure) are retried with exponential backoff and
 * full jitter (delay in [d/2, d], d = base * 2^(attempt-1) capped at max), up
 * to `max_attempts` attempts. 409 on a conditional PUT (a concurrent
 * conditional write) is retried the same way. Other 4xx are final at once.
 * A streamed GET is retried only while none of its body reached the caller.
 * Every attempt and every outcome is counted in struct s3_stats.
 *
 * Outcomes, in struct s3_result: status 0 on success; CORE_ENOTFOUND for 404
 * on HEAD/GET (not_found set); CORE_ES3 for any other S3 error (s3_code, the
 * enum from s3_xml.h, and http_status tell which); transport codes as
 * http_client.h lists them. A conditional PUT answered 412 succeeds with
 * already_exists set.
 *
 * The secret key is copied into the client and used only for signing; it is
 * never logged, nor put into any result or message.
 */
#ifndef S3_CLIENT_H
#define S3_CLIENT_H

#include "core/core_buf.h"
#include "s3/s3_xml.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct s3_client;
struct s3_op;

enum s3_quirk {
  S3_QUIRK_SKIP_IF_NONE_MATCH = 1 << 0,        /* "skip-if-none-match-header" */
  S3_QUIRK_DELETE_VIA_DELETE_OBJECT = 1 << 1,  /* "delete-objects-via-delete-object" */
};

/* An endpoint, with PBS's property names in the comments. Strings are copied
 * by s3_client_new. */
struct s3_client_config {
  const char *id;             /* id */
  const char *endpoint;       /* endpoint: host name, IP or template with
                               * {{bucket}} / {{region}} */
  int port;                   /* port; 0: 443 with TLS, 80 without */
  const char *region;         /* region; NULL: "us-west-1" */
  const char *access_key;     /* access-key */
  const char *secret_key;     /* secret-key */
  int path_style;             /* path-style */
  int use_tls;                /* use-tls */
  const char *fingerprint;    /* fingerprint: pin the server certificate's
                               * SHA-256 instead of CA verification */
  const char *ca_file;        /* NULL: the system CA store */
  unsigned quirks;            /* provider-quirks, enum s3_quirk */
  /* Tuning; 0 picks the default. */
  unsigned max_conns;         /* 16 */
  unsigned max_attempts;      /* 4 (one try and three retries, as PBS) */
  unsigned backoff_base_ms;   /* 250 */
  unsigned backoff_max_ms;    /* 8000 */
  unsigned connect_timeout_ms;/* 10000 */
  unsigned request_timeout_ms;/* per attempt; 0: max(30 min, size / 1 KiB/s) */
  uint64_t jitter_seed;       /* 0: random */
};

/* Parses a provider-quirks list ("a,b" or "a b"). Returns 0 or CORE_ECONFIG. */
int s3_quirks_parse(const char *list, unsigned *out);

struct s3_stats {
  uint64_t ops;               /* operations started */
  uint64_t attempts;          /* HTTP requests sent */
  uint64_t retries;           /* attempts after the first */
  uint64_t retry_5xx;         /* retries caused by 5xx / SlowDown */
  uint64_t retry_transport;   /* retries caused by transport errors */
  uint64_t retry_conflict;    /* retries caused by 409 on conditional PUT */
  uint64_t ok;                /* operations that succeeded */
  uint64_t failed_s3;         /* ended with an S3 error (incl. exhausted 5xx) */
  uint64_t failed_transport;  /* ended with a transport error */
  uint64_t gave_up;           /* ended because max_attempts ran out */
  uint64_t not_found;         /* ended with CORE_ENOTFOUND */
  uint64_t already_exists;    /* conditional PUT found the key */
  /* Outcomes per operation (metrics): [op][result], names below. */
#define S3_STATS_OPS 8
#define S3_STATS_RESULTS 5
  uint64_t by_op[S3_STATS_OPS][S3_STATS_RESULTS];
  uint64_t bytes_sent;        /* request bodies, every attempt */
  uint64_t bytes_received;    /* response bodies */
};

/* "put", "get", "head", "delete", "delete_objects", "list", "copy",
 * "head_bucket"; and "ok", "not_found", "exists", "s3_error",
 * "transport_error". */
const char *s3_stats_op_name(int op);
const char *s3_stats_result_name(int result);

struct s3_result {
  int status;                 /* 0 or a negative code (see DESIGN) */
  int http_status;            /* last HTTP status, 0 if none arrived */
  enum s3_error_code s3_code; /* S3_ERR_NONE unless an S3 error body said */
  char message[256];          /* the server's message or a transport reason */
  unsigned attempts;
  int not_found;
  int already_exists;         /* conditional PUT: 412 */
  /* HEAD / GET */
  uint64_t content_length;
  char etag[72];
  /* GET without a body callback: the body (valid during the callback). */
  struct core_slice body;
  /* ListObjectsV2 / DeleteObjects: parsed results, valid during the callback;
   * the callback may take ownership by zeroing the struct it points at. */
  struct s3_list_result *list;
  struct s3_delete_result *deleted;
};

typedef void (*s3_done_cb)(const struct s3_result *res, void *arg);
/* Streamed GET body: return a negative code to abort. */
typedef int (*s3_body_cb)(const char *data, size_t len, void *arg);

/* Creates a client for `bucket`. Blocking only if a TLS context must be built
 * (reads the CA store): call at startup or from a pool job. Returns 0,
 * CORE_ECONFIG (bad endpoint, region, credentials, or a host name with bytes
 * that cannot be in one), CORE_ENAME (bucket), CORE_ETOOBIG (host name over
 * 512 bytes), CORE_ETLS / CORE_ECERT, or a uv error. */
int s3_client_new(uv_loop_t *loop, const struct s3_client_config *cfg, const char *bucket,
                  struct s3_client **out);

/* Ends every operation with CORE_EABORTED (ops waiting for a hash job end
 * when it returns), closes connections, and frees the client once all is
 * closed; `cb` (optional) runs then. */
void s3_client_free(struct s3_client *cl, void (*cb)(void *arg), void *arg);

void s3_client_get_stats(const struct s3_client *cl, struct s3_stats *out);
const char *s3_client_bucket(const struct s3_client *cl);

/* Every operation returns 0 (then `cb` runs exactly once, never before the
 * call returns) or a negative code without calling `cb`: CORE_ENAME for an
 * empty key or one over 1024 bytes, CORE_EINVAL for bad arguments,
 * CORE_EABORTED if the client is closing. Keys, prefixes and tokens are
 * copied; bodies are borrowed until `cb`. */

struct s3_put_opts {
  int if_none_match;          /* add If-None-Match: * (unless the quirk) */
  const char *payload_sha256; /* precomputed hex SHA-256 of the body, or NULL */
  const char *content_md5;    /* precomputed base64 MD5, or NULL */
  const char *content_type;   /* NULL: application/octet-stream */
};

int s3_put_object(struct s3_client *cl, const char *key, const void *body, size_t len,
                  const struct s3_put_opts *opts, s3_done_cb cb, void *arg);

/* GET: with `on_body` NULL the body is buffered (up to `max_body`, 0: 64 MiB)
 * and handed over in res->body; otherwise it streams to `on_body`, and
 * s3_op_pause/resume give back-pressure. `out` (optional) gets the op handle,
 * valid until `cb` returns. */
int s3_get_object(struct s3_client *cl, const char *key, s3_body_cb on_body, size_t max_body,
                  s3_done_cb cb, void *arg, struct s3_op **out);
void s3_op_pause(struct s3_op *op);
void s3_op_resume(struct s3_op *op);

int s3_head_object(struct s3_client *cl, const char *key, s3_done_cb cb, void *arg);
int s3_delete_object(struct s3_client *cl, const char *key, s3_done_cb cb, void *arg);
/* Up to 1000 keys in one request (Content-MD5 set); per-key outcomes in
 * res->deleted. With S3_QUIRK_DELETE_VIA_DELETE_OBJECT, one DELETE per key
 * and the outcomes are assembled the same way. */
int s3_delete_objects(struct s3_client *cl, const char *const *keys, size_t n, s3_done_cb cb,
                      void *arg);
/* One ListObjectsV2 page. `token` NULL for the first page; `max_keys` 0 sends
 * none (the server's default, 1000). */
int s3_list_objects(struct s3_client *cl, const char *prefix, const char *token,
                    unsigned max_keys, s3_done_cb cb, void *arg);
/* Server-side copy inside the bucket (x-amz-metadata-directive: REPLACE). */
int s3_copy_object(struct s3_client *cl, const char *src_key, const char *dst_key,
                   s3_done_cb cb, void *arg);
int s3_head_bucket(struct s3_client *cl, s3_done_cb cb, void *arg);

/* What s3_check_bucket found. */
enum s3_check_status {
  S3_CHECK_OK = 0,
  S3_CHECK_DNS,            /* the host name does not resolve */
  S3_CHECK_CONNECT,        /* refused, unreachable, timed out */
  S3_CHECK_TLS,            /* handshake failed */
  S3_CHECK_CERT,           /* certificate or fingerprint not accepted */
  S3_CHECK_CREDENTIALS,    /* unknown access key or wrong secret */
  S3_CHECK_ACCESS_DENIED,  /* credentials fine, no permission on the bucket */
  S3_CHECK_NO_BUCKET,      /* the bucket does not exist */
  S3_CHECK_OTHER,
};

struct s3_check {
  enum s3_check_status status;
  const char *what;        /* static short name: "ok", "dns", "tls", ... */
  char message[320];       /* a sentence for humans; never holds a secret */
  int http_status;
};

typedef void (*s3_check_cb)(const struct s3_check *chk, void *arg);

/* HeadBucket, and when that is refused a one-key listing to learn why.
 * Returns 0 (then `cb` runs once) or an error as the operations do. */
int s3_check_bucket(struct s3_client *cl, s3_check_cb cb, void *arg);

#endif
