/* gc_status.h: the result of a garbage collection, as PBS's `.gc-status`.
 *
 * DESIGN
 * <base>/.gc-status holds one compact JSON object with PBS's kebab-case
 * GarbageCollectionStatus fields:
 *   upid, index-file-count, index-data-bytes, disk-bytes, disk-chunks,
 *   removed-bytes, removed-chunks, pending-bytes, pending-chunks,
 *   removed-bad, still-bad, cache-stats {hits, misses}
 * It is written at the end of a successful GC (temp file, fsync, rename,
 * mode 0644), so a PBS installation reading the same datastore sees the same
 * numbers. Unknown keys in an existing file are ignored on read.
 *
 * THREADS: gc_status_to_json/parse are pure; the file functions do I/O and
 * belong in pool jobs.
 */
#ifndef GC_STATUS_H
#define GC_STATUS_H

#include "core/core_json.h"

#include <stdint.h>

struct gc_status {
  char upid[512];            /* "" when unknown */
  uint64_t index_file_count; /* index files marked */
  uint64_t index_data_bytes; /* logical bytes those indexes describe */
  uint64_t disk_bytes;       /* bytes of chunks kept (fresh) */
  uint64_t disk_chunks;
  uint64_t removed_bytes;
  uint64_t removed_chunks;
  uint64_t pending_bytes;    /* unreferenced but inside the cutoff window */
  uint64_t pending_chunks;
  uint64_t removed_bad;
  uint64_t still_bad;
  uint64_t cache_hits;       /* touched-digest cache */
  uint64_t cache_misses;
};

/* Writes the fields (not the surrounding braces) into an open JSON object. */
void gc_status_json_fields(const struct gc_status *s, struct core_json *j);
/* Parses a .gc-status document. Returns 0 or CORE_EPARSE. Missing fields are 0. */
int gc_status_parse(const char *text, size_t len, struct gc_status *out);

/* Writes <base>/.gc-status atomically. 0 or -errno. Pool only. */
int gc_status_write(const char *base, const struct gc_status *s);
/* Reads <base>/.gc-status: 0, CORE_ENOTFOUND (no GC ever finished),
 * CORE_EPARSE, or -errno. Pool only. */
int gc_status_read(const char *base, struct gc_status *out);

#endif
