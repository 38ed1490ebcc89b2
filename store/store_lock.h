/* store_lock.h: group, snapshot, manifest and namespace locks.
 *
 * DESIGN
 * One mechanism for every lock on datastore content: flock(2) on small files
 * under <run-dir>/locks/<store>/, always with LOCK_NB. A lock attempt never
 * waits: if someone else holds a conflicting lock the call returns
 * CORE_ELOCKED at once and the caller retries later (the server from a timer,
 * cairn-admin by reporting "busy"). Because the locks are on files, cairnd
 * and cairn-admin respect each other; because flock locks belong to the open
 * file description and every acquisition opens the file anew, two guards in
 * one process conflict exactly like two processes.
 *
 * Namespace locks are hierarchical (ARCHITECTURE.md section 9). Every lock on
 * a group, a snapshot or a manifest first takes SHARED locks on every
 * namespace from the root down to the object's own namespace; a namespace
 * lock takes shared locks on the ancestors and the requested mode on the
 * namespace itself. Moving or deleting namespace N needs N exclusively, which
 * therefore fails while anything below N is locked, and nothing below N can
 * be locked while N is held exclusively. The ancestor locks are taken inside
 * these functions, so no code path can forget them. An exclusive lock on the
 * root namespace ("") quiesces the whole datastore.
 *
 * Lock order and why it cannot deadlock: within one guard, locks are taken
 * root namespace -> ... -> own namespace -> object, and released in reverse.
 * Across guards (group then snapshots; source group then target group during
 * a move) there is no fixed order, but no acquisition ever blocks, so no
 * thread or process ever waits while holding a lock: there are no wait-for
 * edges, hence no cycle, hence no deadlock. The price is possible retries;
 * callers retry from timers with jitter, never in a tight loop.
 *
 * File names (see docs/datastore-layout.md):
 *   <lockdir>                     = <run-dir>/locks/<store>
 *   namespace "a/b" directory     = <lockdir>/ns:a:b      (root: <lockdir>/ns)
 *   namespace lock                = <nsdir>/.ns-lock
 *   group lock                    = <nsdir>/<esc("type/id")>
 *   snapshot lock                 = <nsdir>/<esc("type/id/YYYY-MM-DDTHH:MM:SSZ")>
 *   manifest lock                 = <nsdir>/<esc(snapshot path)>.index.json.lck
 * esc() is systemd's unit-name escaping ('/' -> '-', bytes outside
 * [A-Za-z0-9:_.] and a leading '.' -> \xNN). A name of 255 characters or more
 * becomes <first 80>...<last 80>-<sha256 hex of the whole name>. Lock files
 * (0660) and directories are never deleted: unlinking a lock file races with
 * someone opening it; the run directory is a tmpfs that starts empty at boot.
 *
 * THREADS: synchronous (open + flock on a tmpfs, microseconds, never waits
 * for a holder). Intended for pool jobs and cairn-admin; the loop may call it
 * only if the run directory is known to be a tmpfs. A guard may be released
 * from any thread.
 */
#ifndef STORE_LOCK_H
#define STORE_LOCK_H

#include "format/format_name.h"

#include <stddef.h>
#include <stdint.h>

enum store_lock_mode {
  STORE_LOCK_SHARED = 1,
  STORE_LOCK_EXCLUSIVE = 2,
};

/* root + up to 7 namespace levels + the object */
#define STORE_LOCK_MAX_FDS (FORMAT_NAME_NS_MAX_DEPTH + 2)

/* Holds every fd of one acquisition. Initialise with STORE_LOCK_GUARD_INIT
 * (or let a lock function fill it); on failure a lock function leaves it
 * empty. Releasing an empty guard is a no-op. */
struct store_lock_guard {
  int fds[STORE_LOCK_MAX_FDS]; /* owned, in acquisition order: root ns first */
  int n;                       /* fds in use */
};

#define STORE_LOCK_GUARD_INIT {{0}, 0}

/* Writes <run_dir>/locks/<store> into `out`. Returns the length, CORE_ENAME
 * (invalid store name) or CORE_ETOOBIG. */
int store_lock_dir(char *out, size_t cap, const char *run_dir, const char *store);

/* All lock functions: `lockdir` from store_lock_dir (created on demand, with
 * its parents). Return 0 with *g holding the locks, CORE_ELOCKED if any lock
 * in the chain is held in a conflicting mode (everything taken so far is
 * released again), CORE_ENAME, CORE_ETOOBIG, or a negative errno. */

/* Namespace `ns` in `mode`, its ancestors shared. */
int store_lock_namespace(const char *lockdir, const char *ns, enum store_lock_mode mode,
                         struct store_lock_guard *g);
/* Group: exclusive for a running backup, delete and owner changes. */
int store_lock_group(const char *lockdir, const char *ns, const char *type, const char *id,
                     enum store_lock_mode mode, struct store_lock_guard *g);
/* Snapshot: shared for readers and for the base of a running backup,
 * exclusive for deletion and moves. */
int store_lock_snapshot(const char *lockdir, const char *ns, const char *type, const char *id,
                        int64_t time, enum store_lock_mode mode, struct store_lock_guard *g);
/* The manifest of a snapshot, always exclusive (update_manifest). */
int store_lock_manifest(const char *lockdir, const char *ns, const char *type, const char *id,
                        int64_t time, struct store_lock_guard *g);

/* A snapshot's own lock file only, without the namespace chain: for a caller
 * that already holds the snapshot's group lock (hence the chain, shared) and
 * needs many snapshots at once (moves), one fd per snapshot instead of up to
 * nine. Same results as store_lock_snapshot. */
int store_lock_snapshot_in_group(const char *lockdir, const char *ns, const char *type,
                                 const char *id, int64_t time, enum store_lock_mode mode,
                                 struct store_lock_guard *g);

/* Releases in reverse acquisition order and empties the guard. */
void store_lock_release(struct store_lock_guard *g);

/* The lock file path for an object, for diagnostics and tests: type == NULL
 * means the namespace lock; time < 0 means the group lock; `manifest` != 0
 * the manifest lock of the snapshot. Returns the length or an error. */
int store_lock_file_path(char *out, size_t cap, const char *lockdir, const char *ns,
                         const char *type, const char *id, int64_t time, int manifest);

#endif
