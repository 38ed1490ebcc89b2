/* store_backup.h: state shared by the backup session's two files,
 * store_backup.c (opening, aborting, finishing) and store_backup_data.c
 * (indexes, chunks, blobs, previous). Not for other modules. */
#ifndef STORE_BACKUP_H
#define STORE_BACKUP_H

#include "store/store_chunk.h"
#include "format/format_index.h"
#include "store/store_session.h"

#include <stdint.h>

#define MAX_WRITERS 256
#define MAX_FILES 1024
#define CHUNK_MAX_BODY (16u * 1024 * 1024 + 48)
#define BLOB_MAX_BODY (16u * 1024 * 1024 + 48)
#define INDEX_APPEND_MAX_BODY (4u * 1024 * 1024)
#define MANIFEST_NAME "index.json.blob"
/* The uploaded manifest waits under this name until finish has checked it
 * and renames it to MANIFEST_NAME: a snapshot is finished exactly when its
 * index.json.blob exists (as in PBS), so nothing but a successful finish may
 * create that file. The leading dot keeps it out of every listing, reader,
 * verify and S3 mirror (no archive name starts with '.'); deleting the
 * unfinished snapshot removes it with the rest. */
#define MANIFEST_UPLOAD_NAME ".index.json.blob.upload"
/* Largest fixed-index image: 16 TiB, 4 Mi chunks of 4 MiB, a 128 MiB index
 * file (PBS sets no limit; this keeps the index within what sessions and the
 * S3 mirror read, 256 MiB, and positions within 32 bits). */
#define FIXED_MAX_SIZE (16ull << 40)
#define FIXED_CHUNK_SIZE (4u * 1024 * 1024) /* PBS's server always uses 4 MiB */

enum writer_kind { WRITER_FIXED = 1, WRITER_DYNAMIC = 2 };

/* One position of a fixed index being written: an open-addressing hash
 * table entry, so memory follows the positions actually appended, not the
 * largest position a client names. */
struct fixed_slot {
  uint32_t key;             /* position + 1; 0: empty */
  uint8_t digest[32];
};

struct writer {
  enum writer_kind kind;    /* 0: slot unused */
  int closing;
  char *name;               /* owned archive name */
  /* dynamic */
  struct format_didx_writer didx;
  /* fixed: digests by position (hash table), size fixed at close */
  struct fixed_slot *slots; /* owned, nslots entries (a power of two) */
  uint64_t nslots, used;    /* table size, distinct positions set */
  uint64_t count;           /* highest position set + 1 */
  uint64_t limit;           /* image bytes: the size given at open, or FIXED_MAX_SIZE */
  int size_given;           /* the close must name `limit` as its size */
  uint64_t last_len;        /* size of the chunk at position count-1 */
  struct format_fidx_writer fidx; /* the file image while it is being written */
};

struct store_backup {
  struct store_session *s;
  int64_t prev_time;            /* -1: no previous snapshot */
  char *prev_dir;               /* owned or NULL */
  uint64_t writer_token;        /* store_chunkstore_writer_begin */
  struct store_chunkstore *cs;  /* borrowed from the datastore */
  struct writer writers[MAX_WRITERS + 1]; /* wid 1..MAX_WRITERS */
  char *files[MAX_FILES];       /* owned names of closed indexes and blobs */
  int nfiles;
  struct http_request *finish_req; /* answered once the locks are released */
  /* chunk_upload_stats, as PBS records them */
  uint64_t up_count, up_size, up_compressed, up_duplicates;
  int no_cache;                 /* S3 datastores: upload without caching */
  /* S3 write-behind (store_backup_data.c): a chunk is answered as soon as it
   * is verified and its PUT starts, while the session has fewer than
   * STORE_S3_WRITE_BEHIND bytes of such uploads running, so the client's
   * next chunks arrive (and are hashed) while earlier ones go to the bucket.
   * Each running upload keeps its request's session operation and body
   * (with its share of the server's body budget) until it ends. Finish
   * waits for all of them, and fails if any failed: the manifest reaches the
   * bucket, and then the cache, only after every chunk did. */
  unsigned s3_pending;          /* detached uploads running */
  size_t s3_pending_bytes;      /* their bodies */
  uint64_t s3_detached, s3_full; /* chunks answered early / late (write-behind full) */
  int s3_failed;                /* the first one's error, 0 if none failed */
  char s3_err[400];             /* its message */
  struct http_request *finish_wait; /* finish waiting for s3_pending to reach 0 */
};

#define STORE_S3_WRITE_BEHIND ((size_t)32 << 20)

/* The last detached upload ended while finish waited: finish goes on, or
 * fails with the upload's error (store_backup.c). */
void store__backup_finish_resume(struct store_session *s);

static inline struct store_backup *store__backup(struct store_session *s)
{
  return s->ext;
}

/* True if the session already stored a file of that name. */
int store__backup_has_file(const struct store_backup *b, const char *name);
void store__backup_writer_free(struct writer *w);
/* Registers the data endpoints (store_backup_data.c). */
void store__backup_data_register(struct http_server *srv, struct store_sessions *t);

#endif
