/* gc_walk.h: find every index file of a datastore (GC phase 1 input).
 *
 * DESIGN
 * GC must mark every chunk that any index references, including indexes in
 * places the normal listings would not show (a snapshot directory with a
 * foreign name, a namespace deeper than the limit, files an old tool left
 * behind): skipping one of those would delete chunks a restore still needs.
 * So the walk visits the whole tree below the base, except names starting
 * with '.' (.chunks, .lock, .gc-status, temp files), without following
 * symlinks, and collects every regular file named *.fidx or *.didx. Files in
 * the regular layout <ns>/<type>/<id>/<time>/ are listed group by group with
 * the newest snapshot first (consecutive snapshots share most chunks, which
 * is what the touched-digest cache feeds on); any other index file is also
 * listed and flagged `strange`, so the caller can warn about it.
 *
 * Errors are strict because a directory GC cannot read may hold the only
 * reference to a chunk: a directory that cannot be opened or read for any
 * reason but ENOENT/ENOTDIR (it vanished: a snapshot pruned meanwhile) fails
 * the walk with a message naming it. `lost+found` directly below the base is
 * skipped (file systems create it root-only).
 *
 * THREADS: synchronous file-system code for a pool job.
 */
#ifndef GC_WALK_H
#define GC_WALK_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define GC_NO_GROUP UINT32_MAX

struct gc_index_list {
  char **paths;      /* owned absolute paths */
  uint8_t *strange;  /* owned: per path, 1 if outside the regular layout */
  uint32_t *group;   /* owned: per path, index into groups[], or GC_NO_GROUP if strange */
  size_t n, cap;
  size_t n_strange;
  size_t n_snapshots; /* regular snapshot directories seen */
  char **groups;     /* owned: group directories (<ns>/<type>/<id>) in walk order */
  size_t n_groups, cap_groups;
};

void gc_index_list_free(struct gc_index_list *l);

/* Walks `base` into `out` (initialise it to zeros). `abort_flag` (may be
 * NULL) is polled; when set the walk stops with CORE_EABORTED. Returns 0, or
 * a negative error with a message in err[0..errlen): CORE_ENOTFOUND (`base`
 * missing or not a directory), CORE_ETOOBIG (a path past STORE_PATH_MAX, or
 * a tree deeper than the layout allows), CORE_EABORTED, or any errno from
 * opening or reading a directory (one that vanished during the walk is
 * empty, not an error). */
int gc_walk_indexes(const char *base, struct gc_index_list *out, const _Atomic int *abort_flag,
                    char *err, size_t errlen);

/* Lists the snapshots of the given group directories again, newest first,
 * into `out` (zeros). GC does this when an index it was about to mark had
 * vanished: the snapshot was pruned after the walk, possibly right after a
 * newer snapshot that inherited its chunks finished, and that newer one must
 * be marked instead. A group that no longer exists is skipped. Errors as
 * gc_walk_indexes except CORE_ENOTFOUND. */
int gc_walk_groups(char *const *group_dirs, size_t n, struct gc_index_list *out,
                   const _Atomic int *abort_flag, char *err, size_t errlen);

#endif
