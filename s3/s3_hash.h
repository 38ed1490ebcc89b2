/* s3_hash.h: payload digests for S3 requests, computed off the loop.
 *
 * DESIGN. Every S3 request body needs its SHA-256 (SigV4's
 * x-amz-content-sha256) and, for DeleteObjects and PUTs, its MD5
 * (Content-MD5). Both are CPU work proportional to the body, which the loop
 * thread must not do. s3_hash_submit() is the typed pool job (uv_queue_work)
 * the S3 client uses; s3_hash_compute() is the same work for code already
 * running in a pool job (a chunk upload path can hash while it compresses and
 * hand the result to s3_put_object, skipping the extra job).
 */
#ifndef S3_HASH_H
#define S3_HASH_H

#include <stddef.h>
#include <uv.h>

struct s3_hash {
  char sha256_hex[65];
  char md5_b64[25];   /* "" when not asked for */
};

/* Blocking, thread-safe: call from a pool job. */
void s3_hash_compute(const void *data, size_t len, int want_md5, struct s3_hash *out);

typedef void (*s3_hash_cb)(const struct s3_hash *h, int status, void *arg);

/* Hashes `data` (which must stay valid until `cb`) in libuv's pool; `cb` runs
 * on the loop thread with status 0, or UV_ECANCELED. Returns 0 or a uv error
 * (then `cb` is not called). */
int s3_hash_submit(uv_loop_t *loop, const void *data, size_t len, int want_md5, s3_hash_cb cb,
                   void *arg);

#endif
