/* store_snapshot.h: namespaces, backup groups and snapshots on disk.
 *
 * DESIGN
 * The directory tree below a datastore base is the database: a namespace is a
 * directory (<base>/ns/a/ns/b), a group is <ns>/<type>/<id> with an `owner`
 * file, a snapshot is <group>/<RFC 3339 time> holding archive files, the
 * manifest index.json.blob (present = finished) and an optional empty
 * `.protected` marker. Paths come from store_path, so every name is validated
 * before it touches the file system; directory entries that are not valid
 * names (temp files, foreign junk) are skipped by the listings.
 *
 * Listings return plain structs with arrays that the caller owns and frees
 * with the matching *_free function; they hold no pointers into anything
 * else, so a pool job can build them and the loop thread can render JSON from
 * them in the after-work callback.
 *
 * Locking is the caller's job (store_lock): hold the group lock to create
 * snapshots or change the owner, an exclusive snapshot lock to delete a
 * snapshot, an exclusive group lock plus exclusive snapshot locks to delete a
 * group, and an exclusive namespace lock to delete a namespace. The functions
 * here re-check what they rely on (existence, .protected) under that lock.
 *
 * THREADS: all functions are synchronous file-system code for thread-pool
 * jobs (or the offline cairn-admin tool), never for the loop thread.
 *
 * ERRORS common to all: CORE_ENAME (invalid name), CORE_ETOOBIG (path too
 * long), CORE_ENOTFOUND (namespace, group or snapshot missing), negative errno.
 */
#ifndef STORE_SNAPSHOT_H
#define STORE_SNAPSHOT_H

#include "core/core_error.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

/* ---- namespaces -------------------------------------------------------- */

struct store_ns_list {
  char **items; /* owned namespace paths ("" = root), depth-first, sorted per level */
  size_t n;
};

/* Lists `parent` itself and the namespaces below it, at most `max_depth`
 * levels deeper (0 = parent only; negative = as deep as the limit allows),
 * never deeper than 7 levels below the root. Returns 0 or an error. */
int store_ns_list(const char *base, const char *parent, int max_depth,
                  struct store_ns_list *out);
void store_ns_list_free(struct store_ns_list *list);

/* 1 if the namespace directory exists, 0 if not, or an error. */
int store_ns_exists(const char *base, const char *ns);
/* Creates namespace `ns`; its parent must exist. Returns 0, CORE_EEXISTS,
 * CORE_ENOTFOUND (parent missing), CORE_EINVAL (the root). */
int store_ns_create(const char *base, const char *ns);

#define STORE_NS_DELETE_GROUPS 1u /* also delete every group below */

/* Deletes namespace `ns` and all namespaces below it. Without
 * STORE_NS_DELETE_GROUPS it refuses (-ENOTEMPTY) if any group exists anywhere
 * in that subtree; with it, it refuses (CORE_EPROTECTED) if any snapshot
 * there is protected. Both checks run before anything is removed. Also
 * CORE_EINVAL for the root, CORE_ENOTFOUND, and -ENOTEMPTY if foreign files
 * keep a directory from being removed. The caller holds the namespace lock
 * exclusively. */
int store_ns_delete(const char *base, const char *ns, unsigned flags);

/* ---- groups ------------------------------------------------------------ */

struct store_group_info {
  char type[8];        /* "ct", "host" or "vm" */
  char *id;            /* owned */
  char *owner;         /* owned auth id, or NULL if the owner file is missing or invalid */
  size_t n_snapshots;  /* snapshot directories, finished or not */
  int64_t last_backup; /* time of the newest finished snapshot, or -1 */
};

struct store_group_list {
  struct store_group_info *items; /* owned, sorted by type then id */
  size_t n;
};

int store_group_list(const char *base, const char *ns, struct store_group_list *out);
void store_group_list_free(struct store_group_list *list);

/* Creates the group if needed and makes `authid` its owner if it has none.
 * The owner file appears atomically with its full content (written to a temp
 * file, then link()ed into place, which fails if it exists), so of two racing
 * creators exactly one becomes the owner and the other reads a complete
 * file. Returns 1 (created, *owner = copy of authid) or 0 (existed, *owner =
 * the stored owner), *owner owned by the caller (core_free); or CORE_ENOTFOUND
 * (namespace missing), CORE_EFORMAT (existing owner file unreadable), or an
 * error. */
int store_group_create(const char *base, const char *ns, const char *type, const char *id,
                       const char *authid, char **owner);
/* Reads the owner into *owner (core_free). CORE_ENOTFOUND, CORE_EFORMAT. */
int store_group_owner(const char *base, const char *ns, const char *type, const char *id,
                      char **owner);
/* Replaces the owner atomically (temp file + rename). */
int store_group_set_owner(const char *base, const char *ns, const char *type, const char *id,
                          const char *authid);
/* Deletes the group with all its snapshots; refuses with CORE_EPROTECTED
 * (removing nothing) if any snapshot is protected. Each snapshot loses its
 * manifest first, so an interrupted delete leaves unfinished snapshots, never
 * finished ones with missing files. */
int store_group_delete(const char *base, const char *ns, const char *type, const char *id);

/* ---- snapshots --------------------------------------------------------- */

struct store_file_info {
  char *name;    /* owned archive name (*.fidx, *.didx, *.blob) */
  uint64_t size; /* bytes on disk */
};

struct store_snapshot_info {
  int64_t time;                  /* backup time, epoch seconds */
  int finished;                  /* index.json.blob exists */
  int is_protected;              /* .protected exists */
  struct store_file_info *files; /* owned, sorted by name, manifest included */
  size_t n_files;
};

struct store_snapshot_list {
  struct store_snapshot_info *items; /* owned, oldest first */
  size_t n;
};

int store_snapshot_list(const char *base, const char *ns, const char *type, const char *id,
                        struct store_snapshot_list *out);
void store_snapshot_list_free(struct store_snapshot_list *list);
/* One snapshot. Free with store_snapshot_info_free. */
int store_snapshot_info(const char *base, const char *ns, const char *type, const char *id,
                        int64_t time, struct store_snapshot_info *out);
void store_snapshot_info_free(struct store_snapshot_info *info);

/* Creates the snapshot directory, which must be new: 0, CORE_EEXISTS, or
 * CORE_ENOTFOUND (group missing). */
int store_snapshot_create(const char *base, const char *ns, const char *type, const char *id,
                          int64_t time);
/* Deletes a snapshot (manifest first, then the rest, then the directory).
 * CORE_EPROTECTED if it is protected, CORE_ENOTFOUND if missing. */
int store_snapshot_delete(const char *base, const char *ns, const char *type, const char *id,
                          int64_t time);
/* Creates (on != 0) or removes the .protected marker; idempotent. */
int store_snapshot_set_protected(const char *base, const char *ns, const char *type,
                                 const char *id, int64_t time, int on);

#endif
