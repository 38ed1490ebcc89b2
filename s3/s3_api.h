/* s3_api.h: the S3 endpoint REST handlers, registered when cairnd starts.
 *
 *   GET    /api2/json/config/s3               list (no secrets), with digest
 *   POST   /api2/json/config/s3               create: id, endpoint, access-key,
 *                                             secret-key, [port, region,
 *                                             path-style, use-tls, fingerprint,
 *                                             provider-quirks]
 *   GET    /api2/json/config/s3/{id}          one endpoint, with digest
 *   PUT    /api2/json/config/s3/{id}          update: properties, delete, digest
 *   DELETE /api2/json/config/s3/{id}          remove (refused while a datastore
 *                                             uses it), digest
 *   GET    /api2/json/admin/s3/{id}/check?bucket=NAME
 *                                             HeadBucket; says what is wrong
 *
 * Reads and writes run s3_config in pool jobs; the check runs s3_sync in a
 * pool job (a private loop), at most S3_API_MAX_CHECKS at a time.
 */
#ifndef S3_API_H
#define S3_API_H

#include "core/core_shmem.h"
#include "http/http.h"

#include <stdatomic.h>

#define S3_API_MAX_CHECKS 2

struct s3_api {
  uv_loop_t *loop;
  const char *config_dir;      /* borrowed */
  struct core_shmem *shmem;    /* borrowed */
  /* Audit log of endpoint changes (cairnd: store_access_audit), or NULL. */
  void (*audit)(void *ctx, struct http_request *req, const char *what);
  void *audit_ctx;
  _Atomic int checks;          /* private: checks in flight */
};

/* `api` must outlive the server; zero it, then set the fields. */
void s3_api_register(struct http_server *s, struct s3_api *api);

#endif
