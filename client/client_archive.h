/* client_archive.h: file trees to pax streams and back, through libarchive.
 *
 * DESIGN. A dynamic archive (NAME.didx) is one pax (POSIX.1-2001 tar) stream.
 * Writing, client_archive_create() walks a directory or a single file with
 * archive_read_disk (standard uid/gid name lookup, symlinks under the root not
 * followed, no crossing of mount points) and writes every entry with its
 * metadata (mode, owner ids and names, nanosecond times, xattrs and ACLs,
 * sparse maps) and data; hard links are written once with data and then as
 * links. The bytes come out through a callback in blocks, which the backup
 * pipeline feeds to the chunker. Reading, client_archive_extract() pulls the
 * stream through a callback (fed from restored chunks) and writes it below a
 * target with archive_write_disk.
 *
 * Entry names in the stream are relative: a directory archive starts with
 * "." (the root itself, so its mode and times are restored too) followed by
 * "a", "a/b", ...; a single-file archive holds exactly one regular-file entry
 * named after the file. Extraction refuses absolute names, ".." components
 * and writing through symlinks, since the stream comes from the network.
 *
 * THREADING: blocking file I/O; run on a worker thread of the client, never
 * on a loop thread. The callbacks run on the calling thread.
 *
 * Errors are negative codes; `err` (when given) receives a message naming the
 * file involved.
 */
#ifndef CLIENT_ARCHIVE_H
#define CLIENT_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Receives the next `len` bytes of the stream; `data` is valid only during the
 * call. Returns 0, or a negative code that aborts the walk (and is returned
 * by client_archive_create). */
typedef int (*client_archive_write_fn)(void *arg, const void *data, size_t len);

/* Hands out the next bytes of the stream: sets *data (valid until the next
 * call) and returns their count, 0 at the end of the stream, or a negative
 * code. */
typedef ssize_t (*client_archive_read_fn)(void *arg, const void **data);

struct client_archive_stats {
  uint64_t entries;    /* every entry written or extracted */
  uint64_t files;      /* regular files with data */
  uint64_t file_bytes; /* bytes of file data */
  uint64_t warnings;   /* entries with a non-fatal problem (logged) */
};

/* The largest piece of file data create hands on in one callback call. */
#define CLIENT_ARCHIVE_BLOCK (256 * 1024)

/* Writes `path` (a directory, or anything else as a single entry) as a pax
 * stream into `write`. `stats` may be NULL. A file that vanishes during the
 * walk is a warning; one that cannot be read is an error naming it. Returns 0,
 * the callback's error, CORE_ENOTFOUND / -errno for `path`, or -EIO-like codes
 * from libarchive (with the message in `err`). */
int client_archive_create(const char *path, client_archive_write_fn write, void *arg,
                          struct client_archive_stats *stats, char *err, size_t errlen);

struct format_catalog_entry;
struct client_pattern_set;

/* Phases of client_archive_create2's entry callback. */
enum client_archive_phase {
  /* A regular file with data, after its headers (e->hdr_off and data_off
   * set), before its data. Return 1 to not read the file: its e->size bytes
   * then still count in the stream offsets but are not handed to the write
   * callback, whose owner puts what it already has in their place (the
   * metadata-mode backup reuses the previous snapshot's chunks). Only
   * offered for files that are not sparse. */
  CLIENT_ARCHIVE_DATA = 1,
  /* After a regular file's data (before its padding): data_len set. */
  CLIENT_ARCHIVE_DATA_END = 2,
  /* Every entry, once written: all offsets set. */
  CLIENT_ARCHIVE_DONE = 3,
  /* Every entry, before its header is written: the stream so far has been
   * handed to the write callback, hdr_off is set (data_off, data_len and
   * end_off not yet), the rest of `e` as at DONE. The backup cuts groups of
   * small entries here. */
  CLIENT_ARCHIVE_HEADER = 4,
  /* Once, after the last entry and before the end-of-archive blocks: the
   * stream so far has been handed on; only e->hdr_off (the offset of those
   * blocks) is meaningful. The backup ends its last group here, so that a
   * group never holds the trailer, whose length depends on the stream's. */
  CLIENT_ARCHIVE_TRAILER = 5,
};

/* Returns 0 (or 1 at CLIENT_ARCHIVE_DATA, see above) or a negative code
 * that aborts the walk. `e` and its strings are valid during the call. */
typedef int (*client_archive_entry_fn)(void *arg, enum client_archive_phase phase,
                                       const struct format_catalog_entry *e);

struct client_archive_create_opts {
  client_archive_entry_fn entry; /* NULL: none */
  void *entry_arg;
  /* Entries matching are left out, a directory with all it holds
   * (client_pattern.h; matched against the stream names). NULL: none. */
  const struct client_pattern_set *exclude;
  int no_exclude_files; /* ignore .cairnexclude files */
};

/* client_archive_create with options. A directory holding a regular file
 * named .cairnexclude has its lines added as patterns scoped to it (the file
 * itself is backed up) unless `no_exclude_files`. The write callback gets the
 * stream unblocked: each call's bytes follow the last, and the stream offsets
 * the entry callback reports count the bytes handed to it. */
int client_archive_create2(const char *path, client_archive_write_fn write, void *arg,
                           const struct client_archive_create_opts *opts,
                           struct client_archive_stats *stats, char *err, size_t errlen);

/* Extract flags. */
#define CLIENT_EXTRACT_OWNER 1 /* restore owners (meaningful as root) */

/* Extracts the stream below `target`. A directory archive goes into the
 * directory `target` (created if missing). A single-file archive is written to
 * `target` itself, or into it if `target` is an existing directory. Returns 0,
 * the read callback's error, CORE_EFORMAT (not a tar stream), CORE_ENAME (an
 * unsafe entry name), or a negative errno with a message in `err`. */
int client_archive_extract(const char *target, int flags, client_archive_read_fn read,
                           void *arg, struct client_archive_stats *stats, char *err,
                           size_t errlen);

/* Writes the stream to file descriptor `fd` for `restore ... -`: the file's
 * contents for a single-file archive, the pax stream itself for a directory
 * archive. Same errors as extract, plus write errors. */
int client_archive_cat(int fd, client_archive_read_fn read, void *arg, char *err,
                       size_t errlen);

/* For images (NAME.img.fidx): the size of a regular file or block device open
 * as `fd`. Returns 0 or a negative errno. */
int client_image_size(int fd, uint64_t *size);

#endif
