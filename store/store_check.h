/* store_check.h: the read-only consistency check of a datastore
 * (`cairn-admin datastore check NAME`, the crash-consistency test loop).
 *
 * DESIGN
 * The check walks the tree the way a restore would use it and reports what
 * would break one:
 * - every finished snapshot (index.json.blob present) has a manifest that
 *   decodes, names this snapshot's type, id and time, and lists files that
 *   exist with the size and checksum it records (blobs: encoded size, SHA-256
 *   and CRC; indexes: parsed with their index_csum, content size and csum);
 * - every chunk an index references exists as a regular file under its name
 *   (a `<digest>.tmp_*` file is not a chunk), is not empty, and with
 *   STORE_CHECK_VERIFY_CHUNKS decodes to content that hashes to its name;
 * - chunk files sit in the prefix directory their name belongs to;
 * - a group that holds snapshots has a valid owner;
 * - `.lock`, the run directory and the datastore's lock directory are what
 *   cairnd expects (regular files and directories, no symlinks, the
 *   datastore not inside the run directory).
 * Unfinished snapshots (no manifest: listed `unfinished`, removed by the
 * recovery walk at the next start), temporary files and snapshots that are
 * busy are reported as notes, not problems: a crash legitimately leaves them.
 *
 * The check never writes to the datastore. With a lock directory it takes
 * each finished snapshot's lock shared and without waiting, so a snapshot
 * that a prune deletes meanwhile is skipped rather than reported, and a
 * snapshot held exclusively is noted as busy; a backup is never blocked
 * (backups lock only their own new snapshot exclusively, and shared locks do
 * not conflict with the shared lock a backup takes on its base).
 *
 * For the local cache of an S3 datastore (STORE_CHECK_S3_CACHE) a chunk that
 * is not cached, or is a 0-byte eviction marker, is not a problem: the
 * bucket holds it. With a bucket listing (`bucket`, store_check_bucket.c)
 * the bucket side is checked too: every finished snapshot's manifest and
 * the files it lists exist as <store>/.cnt/<path> keys, and every chunk
 * referenced exists as a <store>/.chunks/ key. Presence only, from one
 * ListObjectsV2 walk of each prefix made before the local walk; a key the
 * listing lacks (it may have been written since) is looked up with HEAD
 * before it is reported. Object contents are not read (a verify task does).
 *
 * THREADS: blocking file-system code: cairn-admin, tests, or a pool job.
 */
#ifndef STORE_CHECK_H
#define STORE_CHECK_H

#include <stddef.h>
#include <stdint.h>

struct s3_sync;
struct store_check_bucket;

#define STORE_CHECK_VERIFY_CHUNKS 1u /* read and hash every referenced chunk */
#define STORE_CHECK_S3_CACHE 2u      /* the base is an S3 datastore's local cache */

/* One finding: `problem` 1 for an inconsistency, 0 for a note. `msg` is one
 * line without a newline, valid during the call. */
typedef void (*store_check_report_fn)(void *arg, int problem, const char *msg);

struct store_check_opts {
  const char *base;     /* the datastore directory */
  const char *run_dir;  /* cairnd's run directory, or NULL: not checked */
  const char *lockdir;  /* from store_lock_dir, or NULL: take no locks */
  unsigned flags;       /* STORE_CHECK_* */
  store_check_report_fn report;
  void *arg;
  struct store_check_bucket *bucket; /* S3: the bucket's listing, or NULL */
};

struct store_check_stats {
  uint64_t snapshots;       /* finished snapshots checked */
  uint64_t unfinished;      /* snapshots without a manifest */
  uint64_t busy;            /* finished snapshots skipped: locked exclusively */
  uint64_t archives;        /* manifest entries checked */
  uint64_t chunks;          /* distinct referenced chunks checked */
  uint64_t chunks_verified; /* of those, read and hashed */
  uint64_t tmp_files;       /* temporary files seen in .chunks */
  uint64_t problems;
};

/* Runs the check and fills *st. Returns 0 when the walk completed (the
 * verdict is st->problems), or a negative error when the datastore cannot be
 * checked at all (base missing or not a directory, no memory). */
int store_check(const struct store_check_opts *o, struct store_check_stats *st);

/* Lists the keys of datastore `store` (the key prefix) in the bucket behind
 * `sync`, which must stay open while *out is used. Returns 0, or a negative
 * error with a message in `err` (S3 errors, a bucket over the check's
 * memory bounds). Blocking. */
int store_check_bucket_list(struct s3_sync *sync, const char *store,
                            struct store_check_bucket **out, char *err, size_t errlen);
void store_check_bucket_free(struct store_check_bucket *b);
/* 1 present, 0 missing, or a negative error (HEAD failed). `rel` is a path
 * below the datastore. */
int store_check_bucket_has_chunk(struct store_check_bucket *b, const uint8_t digest[32]);
int store_check_bucket_has_file(struct store_check_bucket *b, const char *rel);
/* Chunk and .cnt/ keys listed, and misses that HEAD then found. */
void store_check_bucket_stats(const struct store_check_bucket *b, uint64_t *chunks,
                              uint64_t *cnt, uint64_t *late);

#endif
