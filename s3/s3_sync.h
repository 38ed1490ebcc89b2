/* s3_sync.h: blocking S3 calls for code that is allowed to block.
 *
 * DESIGN. The S3 client (s3_client.h) runs on an event loop. Some callers
 * have none and may block: cairn-admin, and short administrative pool jobs
 * (the bucket check of the API, the `.in-use` check when a datastore is
 * created). struct s3_sync gives them a private uv loop with one client on
 * it; every call runs that loop until its operation ends. Nothing here ever
 * touches the server's loop.
 *
 * Caveat for pool jobs: the client's DNS lookups (uv_getaddrinfo) and the
 * hashing of bodies without precomputed digests are themselves libuv pool
 * work. A pool job blocked here waits for another pool thread, so callers
 * must bound how many such jobs run at once (s3_api.c allows two); puts made
 * here carry precomputed digests, so only DNS needs the pool.
 *
 * THREADS: one struct s3_sync belongs to one thread at a time.
 */
#ifndef S3_SYNC_H
#define S3_SYNC_H

#include "core/core_buf.h"
#include "s3/s3_client.h"

#include <uv.h>

struct s3_sync {
  uv_loop_t loop;          /* private */
  struct s3_client *cl;    /* private */
  int loop_ok;
};

/* What one call found; strings are copies. */
struct s3_sync_result {
  int status;              /* as struct s3_result */
  int http_status;
  enum s3_error_code s3_code;
  char message[256];
  int not_found;
  int already_exists;
  uint64_t content_length;
};

/* Creates the loop and a client for `bucket` with `cfg` (the tuning fields
 * are used as given: pass small max_attempts for interactive checks).
 * Returns 0 or an s3_client_new error. Close it in any case. */
int s3_sync_open(struct s3_sync *s, const struct s3_client_config *cfg, const char *bucket);
void s3_sync_close(struct s3_sync *s);

/* s3_check_bucket, waited for: 0 when out->status is S3_CHECK_OK, CORE_ES3
 * with the finding in *out otherwise, or s3_check_bucket's own error. */
int s3_sync_check(struct s3_sync *s, struct s3_check *out);
int s3_sync_head(struct s3_sync *s, const char *key, struct s3_sync_result *res);
/* PUT with precomputed digests; `if_none_match` adds If-None-Match: *. */
int s3_sync_put(struct s3_sync *s, const char *key, const void *data, size_t len,
                int if_none_match, struct s3_sync_result *res);
/* GET into `out` (reset first; its max bounds the body). */
int s3_sync_get(struct s3_sync *s, const char *key, struct core_buf *out,
                struct s3_sync_result *res);
/* One ListObjectsV2 page; on success `out` owns the parsed page (free with
 * s3_list_result_free). */
int s3_sync_list(struct s3_sync *s, const char *prefix, const char *token,
                 struct s3_list_result *out, struct s3_sync_result *res);
/* Up to 1000 keys; `failed` (may be NULL) receives how many the server
 * refused. */
int s3_sync_delete(struct s3_sync *s, const char *const *keys, size_t n, size_t *failed,
                   struct s3_sync_result *res);

/* Server-side CopyObject inside the bucket (moves). */
int s3_sync_copy(struct s3_sync *s, const char *src_key, const char *dst_key,
                 struct s3_sync_result *res);
/* All return res->status (0 or a negative code). */

#endif
