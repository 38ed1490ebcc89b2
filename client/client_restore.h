/* client_restore.h: restoring one archive of a snapshot.
 *
 * DESIGN. A reader session gives the manifest (its signature and key
 * fingerprint checked against the key, if any) and the archive's index
 * (whose checksum must match both its own header and the manifest). Worker
 * threads then fetch chunks in parallel, ahead of the consumer, over several
 * keep-alive connections; every chunk is decoded (CRC, decryption) and its
 * digest recomputed against the index before use, and its length checked
 * against the index's offsets. The chunk bytes held by fetched-but-unused
 * chunks never exceed `mem_budget`. The consumer runs on the calling
 * thread: libarchive extraction for directory archives, positioned writes
 * for images, or a plain copy to a descriptor.
 */
#ifndef CLIENT_RESTORE_H
#define CLIENT_RESTORE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct client_api;
struct format_crypt;
struct client_progress;
struct client_pattern_set;
struct format_catalog;
struct format_manifest;

struct client_restore_opts {
  struct client_api *api;
  const char *ns;            /* NULL or "" for the root */
  const char *backup_type;
  const char *backup_id;
  int64_t backup_time;
  const struct format_crypt *crypt; /* NULL: no key */
  unsigned workers;          /* 0: 4 */
  size_t mem_budget;         /* 0: 96 MiB */
  int restore_owner;         /* restore file owners (root) */
  struct client_progress *progress;
  const volatile sig_atomic_t *cancel; /* set to stop (CORE_EABORTED); may be NULL */
  /* Partial restore of a directory archive (client_pattern.h): only entries
   * matching `include` (all when NULL) and not `exclude`, with their parent
   * directories; the catalog says where they are, and only the chunks
   * holding them are fetched. With TARGET "-" and a selection of one file,
   * that file's contents go to stdout. */
  const struct client_pattern_set *include;
  const struct client_pattern_set *exclude;
};

struct client_restore_stats {
  uint64_t bytes;    /* content bytes restored */
  uint64_t chunks;   /* chunks restored, each verified */
  uint64_t repeated; /* of those, repeats of the chunk before: not downloaded again */
  uint64_t total_chunks; /* chunks in the archive's index */
  uint64_t entries;      /* partial restore: entries selected */
  /* partial restore from a catalog index (NAME.catalog.didx): its chunks
   * fetched, of how many it has (both 0 for a catalog blob) */
  uint64_t catalog_chunks, catalog_total_chunks;
};

/* Restores archive `name` (exactly, or with .didx / .img.fidx / .fidx /
 * .blob appended) to `target`: a directory for directory archives, a file
 * path (or directory to put the file in) for single files, a file or block
 * device for images, or "-" for stdout. Returns 0 or a negative code with a
 * message naming the file or chunk involved. */
int client_restore_run(const struct client_restore_opts *o, const char *name, const char *target,
                       struct client_restore_stats *stats, char *err, size_t errlen);

/* An open reader session on a snapshot with its verified manifest, for
 * browsing (ls, find, diff). */
struct client_snapshot;

/* Opens the snapshot of o->backup_type/id/time. Returns 0 or an error with
 * a message. */
int client_snapshot_open(const struct client_restore_opts *o, struct client_snapshot **out,
                         char *err, size_t errlen);
void client_snapshot_close(struct client_snapshot *s);
const struct format_manifest *client_snapshot_manifest(const struct client_snapshot *s);

/* Opens the catalog of directory archive `name` (with or without .didx).
 * A blob (NAME.catalog.blob): its size and checksum checked against the
 * manifest, decoded (with the key) and validated whole; *buf (core_free)
 * holds the catalog `cat` points into. An index (NAME.catalog.didx): its
 * index is checked against the manifest, then `cat` reads it by ranges
 * (format_catalog_open_source), each chunk verified as it is fetched, *buf
 * NULL. Either way format_catalog_close(cat) after use. Returns 0,
 * CORE_ENOTFOUND (no such archive, or it has no catalog) or another error,
 * with a message. */
int client_snapshot_catalog(struct client_snapshot *s, const char *name, uint8_t **buf,
                            struct format_catalog *cat, char *err, size_t errlen);

/* Random access to a dynamic archive's stream (`cairn mount`): chunks are
 * fetched on demand through the snapshot's reader session, each verified,
 * and the last few kept (at most `cache_chunks`, so at most 16 MiB each). */
struct client_archive_reader;

/* Downloads archive `name`'s index (checked against the manifest). Returns 0
 * or an error with a message. The reader borrows `s`. */
int client_archive_reader_open(struct client_snapshot *s, const char *name, unsigned cache_chunks,
                               struct client_archive_reader **out, char *err, size_t errlen);
void client_archive_reader_free(struct client_archive_reader *r);
/* The stream's size. */
uint64_t client_archive_reader_size(const struct client_archive_reader *r);
/* Chunks fetched so far (cache misses), and the index's chunk count. */
void client_archive_reader_chunks(struct client_archive_reader *r, uint64_t *fetched,
                                  uint64_t *total);
/* Copies up to `len` bytes of the stream at `off` into `buf`. Returns the
 * count (0 at the end) or an error. Thread-safe (one lock). */
ssize_t client_archive_reader_read(struct client_archive_reader *r, uint64_t off, void *buf,
                                   size_t len);

/* "TYPE/ID/TIME" with TIME as RFC 3339 (2024-01-02T03:04:05Z) or epoch
 * seconds. `type` and `id` are set to new strings (core_free). Returns 0 or
 * CORE_ENAME. */
int client_snapshot_parse(const char *s, char **type, char **id, int64_t *time);

#endif
