/* gc_s3.h: garbage collection of an S3 datastore (PBS patch 4).
 *
 * DESIGN
 * The engine is a loop-side state machine like the local one (gc_local.c):
 * at most one pool job in flight at a time, so the run's fields pass between
 * the loop and one pool thread without a lock; in phase 2 a list request and
 * a delete request may run beside that job (see DELETE).
 *
 *   BEGIN   chunk store GC lock, HeadBucket
 *   SAFETY  atime check on the zero chunk, which is uploaded through the
 *           backend (never only inserted locally: invariant I); when its
 *           local copy finds no room, on any local file (gc_space.h)
 *   WALK    cutoff, every index file (gc_walk.h)
 *   MARK    phase 1: touch each referenced chunk's cache file or marker;
 *           one that is missing locally gets a `<digest>.using` marker
 *   LIST    phase 2: ListObjectsV2 over <store>/.chunks/, one page (1000
 *           keys) per request, continuation tokens
 *   DECIDE  per key, in the pool: a key with an upload claim is kept; else
 *           take its delete claim and look at the local file: a `.using`
 *           marker becomes a 0-byte marker (fresh); then the local cutoff
 *           rules on its atime. A key to delete loses its local file first
 *           (so invariant I holds at every instant) and keeps its claim
 *   DELETE  DeleteObjects of exactly 1000 keys whenever 1000 are pending,
 *           the rest after the last page; the claims drop when it returns.
 *           LIST, DECIDE and DELETE overlap: while a batch is deleted the
 *           next pages are listed and decided (one of each in flight)
 *   SWEEP   phase 3: the local sweep over markers and cached chunks older
 *           than the cutoff, and every `.using` marker (a referenced chunk
 *           whose object is missing: warned about)
 *   FINISH  .gc-status, GC lock released
 *
 * Request count: ceil(objects / 1000) list requests (one more when the
 * server ends a full page with IsTruncated) and ceil(deleted / 1000)
 * delete requests: the minimum. The task log reports objects listed,
 * deleted, kept and bytes, and both request counts.
 *
 * A restart in any phase leaves the bucket and the cache consistent: the
 * local file of a deleted key goes before its object, so at worst an object
 * outlives its marker and the next GC deletes it; `.using` markers are
 * removed by the next sweep.
 *
 * THREADS: loop thread only.
 */
#ifndef GC_S3_H
#define GC_S3_H

#include "gc/gc_api.h"

/* Runs a GC of the S3 datastore `ds` in `task`. Takes over the reference
 * and the STORE_OP_WRITE operation on `ds` (released when the run ends),
 * counts itself with gc__run_begin, and clears state->gc when it ends.
 * gc_start_gc (gc_local.c) calls this instead of its local engine when
 * store_datastore_is_s3(ds). */
void gc_s3_run(struct gc_ctx *ctx, struct gc_store_state *state, struct core_task *task,
               struct store_datastore *ds);

/* Registers PUT (and POST) /api2/json/admin/datastore/{store}/s3-refresh,
 * the S3 refresh task (gc_s3_refresh.c). `ctx` must outlive the server. */
void gc_s3_register(struct http_server *s, struct gc_ctx *ctx);

#endif
