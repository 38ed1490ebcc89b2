/* client_backup.h: one snapshot, several archives, uploaded incrementally.
 *
 * DESIGN. The calling thread produces chunks: for a dynamic archive
 * (NAME.didx) it writes the pax stream of PATH into the content-defined
 * chunker; for a fixed image (NAME.img.fidx, NAME.fidx) it reads PATH in
 * 4 MiB pieces. Each chunk becomes a job for a pool of worker threads that
 * hash it (PBS's digest rule: SHA-256 of the plaintext, with the key's id_key
 * appended when encrypting), look the digest up in the set of chunks the
 * server already knows, and otherwise compress (and encrypt) it and upload it
 * with a blocking API call, so W workers keep up to W uploads in flight over
 * W keep-alive connections. The producer appends finished chunks to the
 * index in order (PUT *_index batches of 128), then closes the index with its
 * chunk count, size and checksum.
 *
 * Memory is bounded: the chunk bytes held by queued and running jobs never
 * exceed `mem_budget` (the producer waits), plus one chunk being filled.
 *
 * Incremental: before an archive is uploaded, `previous` returns that
 * archive's index from the group's last snapshot and makes the server
 * register its digests for this session; they go into the known set, so
 * unchanged chunks cost a hash and no upload. Digests uploaded earlier in
 * the same session are known too (a chunk is uploaded once per session even
 * when two workers meet it at once).
 *
 * Catalogs: every directory archive NAME.didx gets NAME.catalog.blob
 * (format_catalog.h), built from the walk's entry callback and uploaded
 * after the index. Files of at least CLIENT_REUSE_MIN bytes start and end on
 * a chunk boundary (the chunker is cut before and after their data), so an
 * unchanged file is the same run of chunks in every snapshot. In metadata
 * mode the previous snapshot's catalog and index are downloaded; a file
 * whose path, size, mtime, ctime and inode match its previous entry is not
 * read: the previous chunks holding its data go into the index as they are
 * (the server knows them from the `previous` download). The entries between
 * such cuts are cut into groups of 1-8 MiB of stream (client_group.h); a
 * group whose every entry matches the previous catalog, in the same order,
 * and that was a run of chunks there, is reused the same way, none of its
 * files read.
 *
 * At the end the manifest (signed when encrypting) is uploaded as
 * index.json.blob and the session is finished; on any error the session is
 * deleted, so the server removes the unfinished snapshot.
 */
#ifndef CLIENT_BACKUP_H
#define CLIENT_BACKUP_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

struct client_api;
struct format_crypt;
struct client_progress;
struct client_pattern_set;

/* How a directory archive finds what changed since the group's last
 * snapshot (docs/chunking.md). */
enum client_change_mode {
  CLIENT_CHANGE_AUTO = 0,     /* metadata when the last snapshot has a catalog */
  CLIENT_CHANGE_DATA = 1,     /* read every file */
  CLIENT_CHANGE_METADATA = 2, /* skip files whose size, mtime, ctime and inode are unchanged */
};

/* Files at least this large start and end on a chunk boundary, so their
 * chunks can be reused by a metadata-mode backup without reading them. */
#define CLIENT_REUSE_MIN ((uint64_t)1 << 20)

/* A catalog index's chunks are smaller than an archive's: a lookup fetches
 * the chunks under the restart table and one window, so their size is what
 * a lookup reads; content-defined cuts still let an unchanged part of the
 * catalog dedup against the previous snapshot's. */
#define CLIENT_CATALOG_CHUNK_MIN ((size_t)32 << 10)
#define CLIENT_CATALOG_CHUNK_AVG ((size_t)128 << 10)
#define CLIENT_CATALOG_CHUNK_MAX ((size_t)512 << 10)

struct client_backup_opts {
  struct client_api *api;
  const char *ns;            /* namespace, NULL or "" for the root */
  const char *backup_type;   /* "host", "vm", "ct" */
  const char *backup_id;
  int64_t backup_time;       /* 0: now (or the last snapshot's time + 1) */
  const struct format_crypt *crypt; /* NULL: no encryption */
  unsigned workers;          /* 0: 4 */
  size_t mem_budget;         /* chunk bytes in flight; 0: 96 MiB */
  struct client_progress *progress; /* NULL: quiet */
  /* Set (by a signal handler) to stop: the backup ends with CORE_EABORTED
   * and the session is deleted. May be NULL. */
  const volatile sig_atomic_t *cancel;
  enum client_change_mode change_mode;
  const struct client_pattern_set *exclude; /* --exclude patterns, or NULL */
  int no_exclude_files;                     /* ignore .cairnexclude files */
  /* Pure content-defined chunking: no cuts around large files (and so no
   * metadata-mode reuse); for measuring what the cuts cost. */
  int no_file_boundaries;
  /* A catalog of at least this many encoded bytes is uploaded as an index
   * of its own (NAME.catalog.didx), a smaller one as NAME.catalog.blob;
   * 0: FORMAT_CATALOG_INDEX_MIN (cairn backup reads CAIRN_CATALOG_INDEX_MIN). */
  uint64_t catalog_index_min;
  /* The catalog writer's memory (a ~65 bytes plus the path per entry) past
   * which its entries go to a temporary file in sorted runs, merged when the
   * catalog is encoded; 0: 256 MiB (cairn backup reads CAIRN_CATALOG_MEM). */
  uint64_t catalog_mem;
};

struct client_backup_spec {
  const char *archive; /* "NAME.didx", "NAME.img.fidx" or "NAME.fidx" */
  const char *path;
};

struct client_backup_stats {
  uint64_t bytes;          /* content bytes of all archives */
  uint64_t chunks;         /* chunks in all indexes */
  uint64_t new_chunks;     /* chunks uploaded */
  uint64_t new_bytes;      /* plaintext bytes of uploaded chunks */
  uint64_t uploaded_bytes; /* encoded bytes sent */
  int64_t backup_time;     /* the snapshot's time */
  uint64_t reused_files;   /* large files not read: their chunks came from the last snapshot */
  uint64_t reused_bytes;   /* their bytes */
  uint64_t grouped_files;  /* small files not read: their group's chunks came from it */
  uint64_t grouped_bytes;  /* their bytes */
  uint64_t read_files;     /* files whose data was read */
  uint64_t read_bytes;     /* their bytes */
  uint64_t catalog_entries; /* entries in the catalogs written */
};

/* Validates "NAME.didx:PATH" / "NAME.img.fidx:PATH" and splits it (pointers
 * into `arg`, which is modified). Returns 0 or CORE_ENAME with a message. */
int client_backup_parse_spec(char *arg, struct client_backup_spec *spec, char *err,
                             size_t errlen);

/* Runs the backup. Returns 0, or a negative code with a message naming the
 * file, chunk or call involved in `err`. */
int client_backup_run(const struct client_backup_opts *o, const struct client_backup_spec *specs,
                      size_t n, struct client_backup_stats *stats, char *err, size_t errlen);

#endif
