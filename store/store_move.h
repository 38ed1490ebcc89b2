/* store_move.h: moving backup groups and namespaces inside a local datastore.
 *
 * DESIGN
 * A group move renames directories; nothing is copied. Without a target
 * group, the whole group directory is renamed in one step (renameat2 with
 * RENAME_NOREPLACE), so the group is at every moment whole in exactly one
 * place. Merging into an existing group renames its snapshots one by one and
 * then removes what is left of the source group (owner, notes); a crash in
 * the middle leaves every snapshot in exactly one place and the group split,
 * and running the same move again completes it: snapshots move oldest
 * first, so what remains in the source is still strictly newer than
 * everything in the target and the merge rule still holds.
 *
 * Locks (store_lock.h, all non-blocking; CORE_ELOCKED means nothing changed
 * and the caller retries later):
 *   1. the source group exclusively (which holds its namespace chain shared):
 *      no backup, owner change or delete of the group meanwhile;
 *   2. the target group exclusively (likewise on the target side);
 *   3. every snapshot of the source group exclusively, taken in batches but
 *      all held until the renames are done (one fd each: their chain is
 *      already held by 1.): no reader, verify, prune or protection change
 *      of any of them meanwhile;
 *   4. the move journal (below), exclusively, around the renames.
 * A namespace move holds the source namespace exclusively instead of 1. and
 * 3. (STORE_MOVE_SRC_HELD): nothing below it can be locked meanwhile.
 *
 * GC (the race of PBS bug #6195): GC's mark phase lists group directories and
 * then marks them one by one; a snapshot renamed from a group not yet marked
 * into one already marked (or into a new group the listing did not see)
 * would be marked in neither place and its chunks swept. So every move first
 * appends the target group's directory (relative to the base) to
 * <base>/.move-journal and fsyncs it, then renames, all while holding an
 * exclusive flock on the journal. At the end of its mark phase GC takes the
 * same flock (store_move_journal_take), marks every group listed there, and
 * empties the journal. Why that suffices: a rename that happened before GC
 * took the flock has its line in the journal (written before the rename,
 * emptied only by GC itself), and the line names where the snapshot is now
 * (a later move adds a later line; moves cannot run while GC holds the flock);
 * a snapshot not renamed before that moment stayed in a place that existed
 * through the whole listing and was marked there. The journal is only ever
 * appended to between GCs (one short line per moved group), and GC empties it.
 *
 * S3 datastores (store_s3_move.c): under the same locks, the group's `.cnt/`
 * objects are first copied to the new keys (manifests last), then the cache
 * directories renamed as above, then the old keys deleted (manifests first).
 * The bucket holds a finished snapshot's metadata at every moment; a crash
 * leaves at worst an extra copy at the new keys or orphaned old keys
 * (docs/datastore-layout.md, section 8).
 *
 * THREADS: synchronous file-system code for pool jobs and cairn-admin.
 */
#ifndef STORE_MOVE_H
#define STORE_MOVE_H

#include <stddef.h>
#include <stdint.h>

#define STORE_MOVE_JOURNAL ".move-journal" /* below <base> */

/* The caller holds the source namespace (or an ancestor) exclusively: the
 * source group and its snapshots are not locked again. */
#define STORE_MOVE_SRC_HELD 1u

struct store_move_result {
  size_t snapshots;  /* snapshots moved */
  int merged;        /* the target group existed */
  char msg[512];     /* why it failed, or notes about what was done */
};

/* Checks a group move without locks or changes (the API's refusals):
 * 0 if it would be allowed now; CORE_EINVAL (same namespace), CORE_ENOTFOUND
 * (group or target namespace missing), CORE_EEXISTS (target group exists and
 * merge is off), CORE_EINVAL also for a refused merge (owner differs, or a
 * target snapshot is not older than the oldest source snapshot). The reason
 * is in res->msg. */
int store_move_group_check(const char *base, const char *src_ns, const char *type,
                           const char *id, const char *dst_ns, int merge,
                           struct store_move_result *res);

/* One attempt to move group type/id from src_ns to dst_ns (an existing
 * namespace). On an S3 datastore `s3` is a fetcher of it (store_s3.h; NULL
 * for a local datastore): under the locks, the group's `.cnt/` objects are
 * copied to the new keys first (a failure there changes nothing), then the
 * local directories are renamed, then the old keys deleted (a failure there
 * is reported in res->msg and leaves orphaned old keys, the move stands). Returns 0, CORE_ELOCKED (busy, nothing changed; res->msg says
 * what), the errors of store_move_group_check (re-checked under the locks),
 * or a negative errno of a failed rename (the move stopped there; every
 * snapshot is in exactly one place). */
struct store_s3_fetcher;
int store_move_group(const char *base, const char *lockdir, const char *src_ns,
                     const char *type, const char *id, const char *dst_ns, int merge,
                     unsigned flags, struct store_s3_fetcher *s3,
                     struct store_move_result *res);

/* ---- namespaces -------------------------------------------------------- */

struct store_move_group_ref {
  char *src_ns, *dst_ns; /* owned */
  char type[8];
  char *id;              /* owned */
};

struct store_move_ns_plan {
  char **src, **dst;     /* owned namespaces, parents first */
  size_t n;
  struct store_move_group_ref *groups; /* owned */
  size_t n_groups;
};

/* Checks a namespace move (the API's refusals) and, if `plan` is not NULL,
 * lists what it moves: `src` and the namespaces below it up to `max_depth`
 * levels (-1: all), each mapped to the same relative place below `dst`, and
 * the groups in them. 0, or CORE_EINVAL (root as source, source equals
 * target, target inside the source subtree or an ancestor of it, depth over
 * the limit), CORE_ENOTFOUND (source or the target's parent missing), with
 * the reason in msg. */
int store_move_ns_check(const char *base, const char *src, const char *dst, int max_depth,
                        struct store_move_ns_plan *plan, char *msg, size_t msglen);
void store_move_ns_plan_free(struct store_move_ns_plan *plan);

/* Creates the plan's target namespaces, parents first (existing ones are
 * fine). 0 or an error with the namespace in msg. */
int store_move_ns_create_targets(const char *base, const struct store_move_ns_plan *plan,
                                 char *msg, size_t msglen);

/* Removes the plan's source namespaces that are empty now, deepest first,
 * keeping any that still hold a group, a namespace or a foreign file.
 * Returns the number kept (>= 0) or an error. The caller holds the source
 * namespace exclusively. */
int store_move_ns_remove_sources(const char *base, const struct store_move_ns_plan *plan);

/* The whole namespace move in one call, for cairn-admin (offline, or beside a
 * running server: same locks). Locks `src` exclusively (CORE_ELOCKED at once
 * if busy), creates the targets, moves group by group, retries the busy ones
 * once, removes the emptied sources if `delete_source`. On an S3 datastore
 * (`s3` not NULL) it does what the move-namespace task does: reconciles
 * interrupted moves first, records itself (store_move_s3_ns_pending_add),
 * writes the targets' markers, moves each group's keys, and deletes the
 * removed sources' markers. `report` gets one line per event (failed != 0
 * for a group not moved). Returns 0, the number of groups not moved (> 0,
 * or 1 if only the markers' clean-up failed), or an error before anything
 * moved (msg). */
typedef void (*store_move_report_fn)(void *arg, int failed, const char *line);
int store_move_ns_run(const char *base, const char *lockdir, const char *src, const char *dst,
                      int max_depth, int delete_source, int merge,
                      struct store_s3_fetcher *s3, store_move_report_fn report, void *arg,
                      char *msg, size_t msglen);

/* ---- S3 (store_s3_move.c; pool) ------------------------------------------ */

struct store_move_keys {
  char **v; /* owned keys */
  size_t n, cap;
};
void store_move_keys_free(struct store_move_keys *k);
/* Lists every key below <store>/.cnt/<src_rel>/ into src_keys and copies
 * them to <store>/.cnt/<dst_rel>/..., manifests last; when `merging`, the
 * source group's owner (and its notes unless `copy_notes`) are not copied.
 * On failure the copies made are deleted again (best effort). */
int store_move_s3_copy(struct store_s3_fetcher *f, const char *src_rel, const char *dst_rel,
                       int merging, int copy_notes, struct store_move_keys *src_keys,
                       char *msg, size_t msglen);
/* DeleteObjects of `keys` in batches of 1000, manifests first. */
int store_move_s3_delete(struct store_s3_fetcher *f, const struct store_move_keys *keys,
                         char *msg, size_t msglen);
/* Writes the `.namespace` markers of the plan's targets, or (remove) deletes
 * those of the plan's sources that no longer exist locally. */
int store_move_s3_ns_markers(struct store_s3_fetcher *f, const struct store_move_ns_plan *plan,
                             const char *base, int remove, char *msg, size_t msglen);

/* Interrupted S3 moves. Before its copies, a group move appends
 * "src_ns TAB type TAB id TAB dst_ns" to <base>/.move-s3-pending (fsynced),
 * and removes the line once the old keys are deleted. Reconciling an entry
 * takes both group locks (skipping it if busy) and deletes, on each side,
 * the keys of every snapshot (and the group's own files) that the local cache
 * holds on the other side only: after a crash before the rename that is the
 * copy at the new keys, after it the old keys. With neither side present
 * locally nothing is deleted. Runs at the start of every S3 group move, of
 * S3 GC and of s3-refresh. Returns the entries left (>= 0) or an error. */
int store_move_s3_pending_add(const char *base, const char *src_ns, const char *type,
                              const char *id, const char *dst_ns);
int store_move_s3_pending_remove(const char *base, const char *src_ns, const char *type,
                                 const char *id, const char *dst_ns);
/* A namespace move on S3 records "src TAB dst" the same way once it holds
 * the source namespace, before it creates the targets and their markers,
 * and removes the line once the emptied sources' markers are deleted.
 * Reconciling it takes both namespaces exclusively (skipping it if busy)
 * and, for every `.namespace` marker below the source whose target place
 * exists locally, writes the target's marker and deletes the source's if
 * the source namespace is gone locally: no marker of a vanished namespace
 * survives a crash for a refresh to resurrect. */
int store_move_s3_ns_pending_add(const char *base, const char *src, const char *dst);
int store_move_s3_ns_pending_remove(const char *base, const char *src, const char *dst);
int store_move_s3_reconcile(struct store_s3_fetcher *f, const char *base, const char *lockdir,
                            char *msg, size_t msglen);
/* The same for an S3 datastore, with its own client (none if no pending
 * file exists). */
struct store_datastore;
int store_move_s3_reconcile_ds(struct store_datastore *ds, const char *run_dir, char *msg,
                               size_t msglen);

/* ---- the journal (GC) ---------------------------------------------------- */

/* GC, at the end of its mark phase: takes the journal's flock (waiting: a
 * move holds it for a few renames), reads the group directories in it
 * (absolute paths, deduplicated) into *dirs / *n (core_free each and the
 * array), and leaves the lock held in *fd for store_move_journal_done, which
 * empties the journal and releases it. Returns 0 or an error (*fd = -1). */
int store_move_journal_take(const char *base, int *fd, char ***dirs, size_t *n);
void store_move_journal_done(int fd, int clear);

/* GC holds <lockdir>/gc-marking shared from before its listing until the
 * journal is replayed; a move that, holding the journal's lock, can take it
 * exclusively (never waiting) knows no GC is marking and empties the journal
 * before appending its own line: earlier lines only matter to a mark phase
 * that was running when their rename happened, and a GC that starts now lists
 * the tree as it is. So the journal is cleared when no GC runs and holds at
 * most the lines of the moves made during one GC (before the first GC, which
 * creates the lock file, moves only append). Returns 0 with *fd to pass to
 * store_move_gc_mark_end (-1 when the file does not exist and cannot be
 * created: then no move can see it either), or an error: GC must then not
 * mark (a move could clear lines it needs). */
int store_move_gc_mark_begin(const char *lockdir, int *fd);
void store_move_gc_mark_end(int fd);

#endif
