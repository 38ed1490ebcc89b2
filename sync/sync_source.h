/* sync_source.h (private to sync/): where a pull reads snapshots from. Two
 * kinds: a remote server (its REST listings and reader sessions, through
 * client_api) and a datastore of this server (its files, directly). Every
 * function blocks: engine threads only. Listings fill store/'s list structs,
 * so the engine treats both kinds alike. */
#ifndef SYNC_SOURCE_H
#define SYNC_SOURCE_H

#include "store/store_snapshot.h"
#include "sync/sync.h"

#include <stdint.h>
#include <yajl/yajl_tree.h>

struct sync_source;
struct sync_reader;

/* Opens the source named by `e->p` (remote or e->src_ds). 0, or an error
 * with a message in err. */
int sync_source_open(struct sync_engine *e, struct sync_source **out, char *err, size_t errlen);
void sync_source_close(struct sync_source *s);

/* Connections a remote source opened and requests that reused one (both 0
 * for a local source): for the run's summary. */
void sync_source_conn_stats(struct sync_source *s, uint64_t *opened, uint64_t *reused);

/* Namespaces from `ns` down `max_depth` levels (-1: all), `ns` first. */
int sync_source_list_ns(struct sync_source *s, const char *ns, int max_depth,
                        struct store_ns_list *out, char *err, size_t errlen);
int sync_source_list_groups(struct sync_source *s, const char *ns, struct store_group_list *out,
                            char *err, size_t errlen);
/* Snapshots of a group, oldest first; `finished` and `is_protected` set,
 * no files. */
int sync_source_list_snapshots(struct sync_source *s, const char *ns, const char *type,
                               const char *id, struct store_snapshot_list *out, char *err,
                               size_t errlen);

/* A reader on one finished snapshot. */
int sync_reader_open(struct sync_source *s, const char *ns, const char *type, const char *id,
                     int64_t time, struct sync_reader **out, char *err, size_t errlen);
/* A whole file of the snapshot into *data (core_free). */
int sync_reader_file(struct sync_reader *r, const char *name, uint8_t **data, size_t *len,
                     char *err, size_t errlen);
/* A fetched chunk: the blob as the source stores it (unverified). `data` is
 * page-aligned when it comes from the source's buffer pool (then chunk files
 * are written from it with O_DIRECT, and the memory is recycled instead of
 * being faulted in afresh for every chunk). */
struct sync_chunk {
  uint8_t *data;                /* owned; see sync_chunk_free */
  size_t len;
  struct http_bodypool *pool;   /* data is a buffer of this pool, or NULL (core_free) */
  size_t cap;                   /* the pool buffer's capacity */
};
/* A chunk into *out (release with sync_chunk_free). Thread-safe: many
 * fetchers use one reader. */
int sync_reader_chunk(struct sync_reader *r, const uint8_t digest[32], struct sync_chunk *out,
                      char *err, size_t errlen);
void sync_chunk_free(struct sync_chunk *c);
void sync_reader_close(struct sync_reader *r);

/* Remote sources only (push): one request; transport errors and 5xx are
 * retried with back-off when `retry` is set (idempotent requests only).
 * 0 with a 2xx response the caller frees, or an error with a message. */
struct client_resp;
int sync_remote_request(struct sync_source *s, const char *method, const char *target,
                        const void *body, size_t len, const char *ctype, int retry,
                        size_t max_body, struct client_resp *resp, char *err, size_t errlen);
/* Opens a session on the remote: POST /api2/json/<kind> ("reader" or
 * "backup") for the snapshot store/ns/type/id/time; its hex id into
 * session (cap bytes). 0, or an error with a message and session "". */
int sync_remote_session(struct sync_source *s, const char *kind, const char *store,
                        const char *ns, const char *type, const char *id, int64_t time,
                        int retry, char *session, size_t cap, char *err, size_t errlen);
/* The same for a JSON answer: *tree to yajl_tree_free, *data its "data"
 * (NULL for a JSON null). */
int sync_remote_json(struct sync_source *s, const char *method, const char *target,
                     const void *body, size_t len, const char *ctype, int retry,
                     yajl_val *tree, yajl_val *data, char *err, size_t errlen);

#endif
