/* client_group.h: groups of small entries in a directory archive's stream.
 *
 * DESIGN. A metadata-mode backup skips a file only when the chunks that held
 * it last time can be copied as they are, so the chunks must depend on the
 * file alone, or on a stable set of entries around it. Large files
 * (CLIENT_REUSE_MIN) are cut before and after their data; the entries between
 * two such cuts are split into groups at entry boundaries, and the chunker
 * is cut (reset) at every group start and end. A group ends before an entry
 * when the group holds at least CLIENT_GROUP_MIN stream bytes and a hash of
 * the entry's path says so, with a probability that grows with the bytes of
 * the entry before it (one cut per CLIENT_GROUP_AVG_EXTRA bytes on average),
 * or unconditionally once it holds CLIENT_GROUP_MAX bytes. Because the rule
 * looks only at paths and at bytes since the group start, an edit moves the
 * cuts of its own group and at most the next ones until a path hash cuts
 * again where it did before, as content-defined chunking does for bytes.
 *
 * A group whose every entry is unchanged is reused without reading its files:
 * while a group may still be reused, its stream bytes (headers, padding) are
 * held here and its files are not read, only noted (a "hold"); at the group's
 * end either the previous snapshot's chunks take its place and the hold is
 * dropped, or the hold is replayed: the held bytes, and each noted file read
 * now, go to the chunker as they would have.
 *
 * Sizes: at least one chunker minimum (CLIENT_CHUNK_MIN, 1 MiB) so groups do
 * not multiply the chunk count; about 3 MiB on average, below the chunker's
 * 4 MiB average, so a changed small file costs at most 8 MiB (plus its large
 * neighbours' nothing) of re-read and re-upload.
 */
#ifndef CLIENT_GROUP_H
#define CLIENT_GROUP_H

#include "client/client_archive.h"
#include "core/core_buf.h"

#include <stddef.h>
#include <stdint.h>

struct format_catalog_entry;

#define CLIENT_GROUP_MIN ((uint64_t)1 << 20)
#define CLIENT_GROUP_AVG_EXTRA ((uint64_t)2 << 20)
#define CLIENT_GROUP_MAX ((uint64_t)8 << 20)

/* 1 when a group that holds `glen` stream bytes ends before the entry `path`
 * (stream name), the entry before it having taken `prev_len` bytes. */
int client_group_cut_before(const char *path, size_t path_len, uint64_t glen,
                            uint64_t prev_len);

/* 1 when `cur` (about to be written) has the metadata the previous
 * snapshot's `old` had, as far as its stream bytes depend on it: type, mode,
 * owner, size, times (ctime moves with xattrs, ACLs, owner and contents),
 * inode, device number and link target. Sparse files never match: their
 * data is not offered for skipping. */
int client_group_same_entry(const struct format_catalog_entry *old,
                            const struct format_catalog_entry *cur);

struct client_group_file {
  size_t pos;   /* where in the held bytes its data belongs */
  char *path;   /* owned: the stream name */
  uint64_t size;
};

/* A group's stream, held while it may still be reused. */
struct client_group_hold {
  struct core_buf bytes;          /* everything but the noted files' data */
  struct client_group_file *files; /* owned */
  size_t n, cap;
  uint64_t file_bytes;            /* the noted files' sizes */
};

void client_group_hold_init(struct client_group_hold *h);
void client_group_hold_reset(struct client_group_hold *h);
void client_group_hold_free(struct client_group_hold *h);
/* Holds stream bytes. Returns 0 or -ENOMEM. */
int client_group_hold_bytes(struct client_group_hold *h, const void *data, size_t len);
/* Notes a file whose `size` data bytes come next in the stream, unread. */
void client_group_hold_file(struct client_group_hold *h, const char *path, uint64_t size);

/* Hands the held stream to `write` in order, reading each noted file from
 * `root`/path now. A file that shrank or vanished since its header was
 * written is padded with zeros (a warning), one that grew is cut at its
 * size: the header already says how many bytes follow. Adds the files and
 * bytes read to *files and *bytes. Returns 0 or write's error. Blocking
 * file I/O: the backup's producer thread. */
int client_group_hold_replay(struct client_group_hold *h, const char *root,
                             client_archive_write_fn write, void *arg, uint64_t *files,
                             uint64_t *bytes);

#endif
