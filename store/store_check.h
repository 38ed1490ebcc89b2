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
 * bucket holds it, and the bucket is not checked here (a verify task does).
 *
 * THREADS: blocking file-system code: cairn-admin, tests, or a pool job.
 */
#ifndef STORE_CHECK_H
#define STORE_CHECK_H

#include <stdint.h>

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

#endif
