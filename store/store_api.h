/* store_api.h: the datastore REST handlers (config and admin), registered with
 * the HTTP router when cairnd starts.
 */
#ifndef STORE_API_H
#define STORE_API_H

#include "core/core_shmem.h"
#include "http/http.h"
#include "store/store_registry.h"

struct store_access;

struct store_api {
  uv_loop_t *loop;
  struct store_registry *reg;  /* borrowed */
  struct core_shmem *shmem;    /* borrowed */
  const char *config_dir;      /* borrowed */
  const char *run_dir;         /* borrowed: lock files live below it */
  struct store_sessions *sessions; /* backup and reader sessions (store_session.h) */
  struct store_access *access; /* borrowed: privileges for list filters, audit log */
};

/* Registers /api2/json/config/datastore... and /api2/json/admin/datastore...
 * `api` must outlive the server. */
void store_api_register(struct http_server *s, struct store_api *api);

/* Validates a datastore name from the request: 0, or -1 after a 400. */
int store_api_check_store(struct http_request *req, const char *name);
/* Shared by handlers of other files: responds to a failed lookup. */
void store_api_lookup_error(struct http_request *req, const char *store, int err,
                            struct store_datastore *ds);

/* Per-area registration, called by store_api_register(). */
void store__api_config_register(struct http_server *s, struct store_api *api);
void store__api_admin_register(struct http_server *s, struct store_api *api);
void store__api_content_register(struct http_server *s, struct store_api *api);
void store__api_files_register(struct http_server *s, struct store_api *api);
void store__api_download_register(struct http_server *s, struct store_api *api);
/* The catalog endpoints' `filepath`: base64 of a path in an archive ("/a/b").
 * Returns it without leading and trailing '/' ("" for the root), or NULL when
 * it is not base64 or not a safe relative path. core_free the result. */
char *store__api_filepath(const char *b64path);
/* The snapshot parameters the catalog, notes and file-download endpoints
 * share: ns (optional), backup-type, backup-id and, with `time`, backup-time
 * (into *time). NULL when valid, else the message of a 400. */
const char *store__api_snapshot_params(struct http_request *req, int64_t *time);
void store__api_access_register(struct http_server *s, struct store_api *api);

struct format_catalog;
struct format_index;
struct format_manifest;
/* On an S3 datastore a catalog index's chunk may be missing from the local
 * cache: its reads then fail with -EAGAIN and `miss` names the chunk; the
 * caller fetches it on the loop (store_s3_chunk_read, which puts it into
 * the cache) and runs its job again. */
struct store__api_catalog_miss {
  int have;
  uint8_t digest[32];
};
/* Chunk `i` of index `idx` of datastore `ds`, decoded into *plain
 * (core_free) and checked against the index (digest, length): decoded from
 * `enc` when the loop already fetched it, else read from the chunk store;
 * a chunk an S3 datastore's cache cannot give is named in `miss` (when not
 * NULL) with -EAGAIN (store_api_catalog.c; pool only). */
int store__api_index_chunk(struct store_datastore *ds, const struct format_index *idx,
                           uint64_t i, const struct core_slice *enc,
                           struct store__api_catalog_miss *miss, uint8_t **plain, size_t *plen);
/* Opens the catalog of directory archive `archive` of a snapshot (manifest
 * `m`) in datastore `ds` at `base` (store_api_catalog.c; pool only): the
 * blob decoded into *plain (core_free), or the index read by ranges through
 * the chunk store. format_catalog_close(cat) after use. Returns 0,
 * CORE_ENOTFOUND (no catalog), CORE_ECRYPTO (encrypted), CORE_EFORMAT
 * (damaged) or a read error. */
int store__api_catalog_open(struct store_datastore *ds, const char *base, const char *ns,
                            const char *type, const char *id, int64_t time,
                            const struct format_manifest *m, const char *archive,
                            struct format_catalog *cat, uint8_t **plain,
                            struct store__api_catalog_miss *miss);
/* Runs of a job that fetches missed catalog chunks before giving up. */
#define STORE_API_CATALOG_RETRIES 256

#endif
