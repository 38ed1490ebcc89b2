/* store_dspath.h: where a new datastore may live.
 *
 * A datastore create makes `.chunks` and `.lock` in its directory and later
 * fills and prunes it, so the directory must belong to nobody else. The rules
 * (docs/configuration.md, "Datastore paths"):
 *
 *   - paths are compared in normal form: absolute, no "." or ".." or
 *     duplicate slashes, and the symlinks of every existing part resolved
 *     (realpath), so a link cannot smuggle /etc in under another name;
 *   - the file system root and system directories are refused, together with
 *     everything below them (STORE_DSPATH_DENY_TREE: /etc, /usr, /dev, ...),
 *     and a few directories are refused themselves while their subdirectories
 *     are fine (STORE_DSPATH_DENY_SELF: /var/lib, /tmp, /srv, /mnt, ...);
 *   - the config and run directories, and any other datastore, may be neither
 *     the path, nor inside it, nor above it (store_dspath_overlap);
 *   - an existing directory must be empty (a `lost+found` alone counts as
 *     empty: a fresh file system's mount point), unless the caller reuses it.
 *
 * store_dspath_normalize and store_dspath_state touch the file system and
 * block: call them from a pool job or from cairn-admin. The others are pure.
 */
#ifndef STORE_DSPATH_H
#define STORE_DSPATH_H

#include <stddef.h>

/* Writes the normal form of the absolute `path` to `out` (`outlen` bytes,
 * STORE_PATH_MAX is enough): "." and empty components dropped, ".." taken
 * lexically, then the longest existing prefix resolved with realpath() and the
 * missing rest appended. Returns 0, CORE_EINVAL (not absolute), CORE_ETOOBIG,
 * or a negative errno from realpath other than ENOENT (ENOTDIR, EACCES, ...). */
int store_dspath_normalize(const char *path, char *out, size_t outlen);

/* 1 if the normalised `path` is on the deny list (see above), else 0. */
int store_dspath_denied(const char *path);

/* 1 if the normalised paths `a` and `b` are the same directory or one is
 * inside the other (component-wise: /a/bc is not inside /a/b), else 0. */
int store_dspath_overlap(const char *a, const char *b);

enum store_dspath_state {
  STORE_DSPATH_MISSING = 0,   /* nothing there yet */
  STORE_DSPATH_EMPTY = 1,     /* an empty directory (lost+found allowed) */
  STORE_DSPATH_CHUNKSTORE = 2, /* a directory holding `.chunks` */
  STORE_DSPATH_OTHER = 3,     /* a directory holding something else */
};

/* What is at `path` now: a store_dspath_state, or CORE_EFORMAT when it is not
 * a directory, or a negative errno. */
int store_dspath_state(const char *path);

#endif
