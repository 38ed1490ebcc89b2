/* store_chunk.h: the chunk store on a local file system (PBS layout).
 *
 * DESIGN
 * Chunks live at <base>/.chunks/<first 4 hex of digest>/<64 hex digest>, one
 * DataBlob per file, 65,536 possible prefix directories. PBS creates all
 * prefix directories when a datastore is created (about 256 MiB of directory
 * blocks on ext4). Cairn creates them lazily: a prefix directory appears on the
 * first insert into it, and every reader (read, stat, touch, the GC iterator)
 * treats a missing prefix directory as "no chunk here". For PBS compatibility
 * store_chunk_fill_layout() creates the full set on demand (cairn-admin
 * datastore fill-layout). See docs/datastore-layout.md.
 *
 * Insert writes <digest>.tmp_XXXXXX in the prefix directory and renames it into
 * place, so readers only ever see complete chunks and a crash leaves at most
 * a temp file, whose name the GC iterator never yields. The decision "is it
 * already there, and which copy wins" runs under a per-handle lock that GC's
 * sweep primitive (store_chunk_remove_if_older) also takes, so a duplicate
 * insert cannot touch a chunk that GC has already decided to delete. The
 * write itself runs outside that lock: a chunk that does not exist yet cannot
 * be swept, and a freshly renamed file has a fresh atime.
 *
 * Writers and GC coordinate across processes with an OFD (open file
 * description) fcntl lock on <base>/.lock: while any backup writer of this
 * process is registered the handle holds it shared; GC converts it to
 * exclusive, which fails while another process (an old daemon, cairn-admin)
 * holds it. Inside the process, GC reads the start time of the oldest
 * registered writer (store_chunkstore_oldest_writer) instead of being
 * excluded. Because OFD locks belong to the open file description, create
 * exactly ONE handle per datastore path per process and keep it across
 * configuration reloads (the sync level can be changed in place): two handles
 * on one path in one process would exclude each other like two processes.
 *
 * THREADS: every function that touches the file system is synchronous and
 * meant to run inside a thread-pool job (or in the offline cairn-admin tool),
 * never on the loop thread. A handle may be used by many pool threads at once.
 * Functions that only read the in-memory writer registry are cheap and take
 * only an uncontended mutex.
 */
#ifndef STORE_CHUNK_H
#define STORE_CHUNK_H

#include "core/core_buf.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>

#define STORE_CHUNK_PREFIXES 65536u
/* Largest DataBlob a chunk file may hold: 16 MiB payload + the 44-byte
 * encrypted header, with 4 bytes to spare. store_chunk_read refuses bigger
 * files. */
#define STORE_CHUNK_MAX_ENCODED (16u * 1024 * 1024 + 48)
/* Smallest valid DataBlob: the 12-byte plain header (payload may be empty). */
#define STORE_CHUNK_MIN_ENCODED 12u
/* Longest file name the iterator yields: "<64 hex>.N.bad". */
#define STORE_CHUNK_NAME_MAX (64 + 6)

enum store_sync_level {
  STORE_SYNC_NONE = 0,       /* no fsync, no syncfs: kernel writeback (~30 s) */
  STORE_SYNC_FILE = 1,       /* fsync each chunk before rename, fsync its dir after */
  STORE_SYNC_FILESYSTEM = 2, /* default: syncfs(2) of the datastore at backup finish */
};

/* Parses "none", "file", "filesystem"; 0 or CORE_ECONFIG. */
int store_sync_level_parse(const char *s, enum store_sync_level *out);
const char *store_sync_level_name(enum store_sync_level level);

#define STORE_CHUNK_DIRECT_ALIGN 4096 /* O_DIRECT buffer, offset and length unit */
/* insert/sweep lock stripes, by digest[2]. GC's sweepers hold one across an
 * unlink, which on a file system mounted with `discard` waits for the
 * device; with 32 stripes and 16 sweepers a third of the lock requests found
 * the stripe taken (issue #20's profile). 256 mutexes are 10 KiB a store. */
#define STORE_CHUNK_STRIPES 256

struct store_writer {
  uint64_t token; /* handed to the writer, used to unregister */
  int64_t start;  /* epoch seconds the writer registered with */
};

/* One per datastore path per process; see DESIGN. Fields marked read-only may
 * be read by any thread; private fields belong to store_chunk.c. */
struct store_chunkstore {
  char *base;              /* read-only: owned absolute base path */
  char *chunk_dir;         /* read-only: owned "<base>/.chunks" */
  int base_fd;             /* read-only: O_RDONLY|O_DIRECTORY on <base> */
  int chunks_fd;           /* read-only: O_RDONLY|O_DIRECTORY on <base>/.chunks */
  _Atomic int sync_level;  /* enum store_sync_level; set with _set_sync_level */
  _Atomic int direct_io;   /* private: 0 once the file system refused O_DIRECT */
  /* private: serialises "exists? keep or replace? touch" against GC's
   * stat-and-unlink for the same digest. Striped so that parallel uploads of
   * different chunks rarely meet. */
  pthread_mutex_t stripes[STORE_CHUNK_STRIPES];
  /* private: everything below is guarded by reg_mutex. */
  pthread_mutex_t reg_mutex;
  int lock_fd;             /* <base>/.lock, O_RDWR */
  int lock_state;          /* 0 unlocked, 1 shared, 2 exclusive (OFD lock on lock_fd) */
  int gc_running;          /* store_chunkstore_gc_begin succeeded and not ended */
  struct store_writer *writers; /* owned array of registered writers */
  size_t n_writers;
  size_t cap_writers;
  uint64_t next_token;
};

/* Creates a new chunk store: <base> (mode 0755, created if missing; its parent
 * must exist), <base>/.chunks (0750) and <base>/.lock (0644). Prefix
 * directories are NOT created (lazy layout). Returns 0, CORE_EEXISTS if
 * <base>/.chunks already exists, CORE_EINVAL if base is not absolute, or a
 * negative errno. */
int store_chunk_create(const char *base);

/* Creates all 65,536 prefix directories (0750) that do not exist yet, for PBS
 * compatibility. Safe to run on a live datastore and to re-run. `progress`
 * (may be NULL) is called every 4096 directories and at the end with the
 * number done so far. Returns 0, CORE_ENOTFOUND if <base>/.chunks is
 * missing, CORE_ETOOBIG if the path is too long, or a negative errno.
 * Pool/offline only. */
int store_chunk_fill_layout(const char *base,
                            void (*progress)(void *arg, unsigned done, unsigned total),
                            void *arg);
/* Internal (tests): the same for prefixes first..end-1 only; CORE_EINVAL if
 * the range is not within 0..65536. */
int store_chunk__fill_layout_range(const char *base, unsigned first, unsigned end,
                                   void (*progress)(void *arg, unsigned done, unsigned total),
                                   void *arg);

/* Opens an existing chunk store. On success *out is a new handle the caller
 * owns (free with store_chunkstore_close). Returns 0, CORE_EINVAL if base is
 * not absolute, CORE_ETOOBIG if base is too long for chunk paths to fit
 * STORE_PATH_MAX, CORE_ENOTFOUND if base, <base>/.chunks or <base>/.lock is
 * missing, or a negative errno. */
int store_chunkstore_open(const char *base, enum store_sync_level level,
                          struct store_chunkstore **out);
/* Releases the handle. No writer may be registered and GC must not be running
 * (asserted). */
void store_chunkstore_close(struct store_chunkstore *cs);
void store_chunkstore_set_sync_level(struct store_chunkstore *cs, enum store_sync_level level);

/* ---- insert, read, touch ---------------------------------------------- */

struct store_chunk_insert_result {
  int duplicate;    /* 1: an existing file was kept (and its atime touched) */
  uint64_t written; /* bytes written by this call (0 for a duplicate) */
  uint64_t size;    /* size of the chunk file now in place */
};

/* Inserts a chunk. `data`/`len` is the complete encoded DataBlob, already
 * verified by the caller (decode, CRC, SHA-256 == digest, size == announced
 * for unencrypted chunks; magic and size for encrypted ones). The blob's magic
 * is only read here to apply PBS's rules when a file with this digest exists:
 *   same size                                -> keep, touch, duplicate
 *   existing is 0 bytes                      -> replace
 *   incoming encrypted, existing unencrypted -> CORE_EEXISTS
 *   both encrypted, both uncompressed        -> CORE_EEXISTS (sizes differ)
 *   incoming encrypted, otherwise            -> keep, touch, duplicate
 *   existing smaller                         -> keep, touch, duplicate
 *   existing larger                          -> replace
 * (PBS does not touch in the "keep" cases other than same size; Cairn does,
 * so a chunk reported as present to a running backup is never the one GC is
 * about to sweep.) With sync level "file" the temp file is fsynced before the
 * rename and the prefix directory after it (and .chunks, when the prefix
 * directory had to be created).
 * Returns 0 and fills *res, or CORE_EINVAL (len outside 12..16 MiB+48),
 * CORE_EFORMAT (unknown blob magic, here or in an existing file the rules need
 * to read), CORE_EEXISTS (conflict above, or a non-regular file in the way), or
 * a negative errno. */
int store_chunk_insert(struct store_chunkstore *cs, const uint8_t digest[32], const void *data,
                       size_t len, struct store_chunk_insert_result *res);

/* Where a chunk read gets its memory: `get` returns a buffer of at least
 * `len` bytes (its capacity in *cap) or NULL; `put` takes back one that is
 * not handed on. */
struct store_chunk_alloc {
  void *(*get)(void *ctx, size_t len, size_t *cap);
  void (*put)(void *ctx, void *buf, size_t cap);
  void *ctx;
};

/* Reads a whole chunk file into `out` (reset first). Returns the size, or
 * CORE_ENOTFOUND, CORE_ETOOBIG (file larger than STORE_CHUNK_MAX_ENCODED or
 * than out->max), UV_ENOMEM, or a negative errno. The bytes are NOT verified:
 * decode with format_blob before trusting them. */
int store_chunk_read_into(struct store_chunkstore *cs, const uint8_t digest[32],
                          const struct store_chunk_alloc *alloc, struct core_buf *out);
/* The same; an empty `out` gets its memory the usual way. */
int store_chunk_read(struct store_chunkstore *cs, const uint8_t digest[32],
                     struct core_buf *out);

struct store_chunk_stat {
  uint64_t size;
  int64_t atime_sec;
  long atime_nsec;
  int64_t mtime_sec;
};

/* 0 and *st, CORE_ENOTFOUND, CORE_EEXISTS (not a regular file), or -errno. */
int store_chunk_stat(struct store_chunkstore *cs, const uint8_t digest[32],
                     struct store_chunk_stat *st);
/* Sets the chunk's atime to now, leaves mtime alone (GC mark). 0,
 * CORE_ENOTFOUND, or -errno. */
int store_chunk_touch(struct store_chunkstore *cs, const uint8_t digest[32]);
/* Touches every existing <digest>.N.bad (GC mark of a referenced chunk whose
 * real file is missing). Returns how many were touched (0..10; a missing one
 * is not an error) or -errno. */
int store_chunk_touch_bad(struct store_chunkstore *cs, const uint8_t digest[32]);
/* Renames the chunk to <digest>.N.bad with N the first free value in 0..9;
 * if all ten exist, .9.bad is overwritten. Returns N, CORE_ENOTFOUND (no
 * chunk), CORE_EEXISTS (.9.bad is a non-empty directory), or -errno. */
int store_chunk_mark_bad(struct store_chunkstore *cs, const uint8_t digest[32]);

/* GC sweep primitive. Under the insert lock of the digest, re-stats
 * <prefix>/<name> (a name the iterator yielded) and unlinks it if its atime
 * is older than `min_atime` (epoch seconds; pass INT64_MAX to remove
 * unconditionally, e.g. .using markers). Fills *st (may be NULL) with what it
 * saw. Returns 1 removed, 0 kept, CORE_ENOTFOUND if already gone, CORE_ENAME
 * if `name` is not a chunk/bad/using name, or -errno. */
int store_chunk_remove_if_older(struct store_chunkstore *cs, unsigned prefix, const char *name,
                                int64_t min_atime, struct store_chunk_stat *st);

/* syncfs(2) on the file system holding `base`. 0 or -errno. */
int store_syncfs(const char *base);
/* End-of-backup durability step: syncfs(2) of the base if the sync level is
 * "filesystem", else nothing. Never called with any lock held. 0 or -errno. */
int store_chunkstore_sync(struct store_chunkstore *cs);

/* ---- writers and GC ---------------------------------------------------- */

/* Registers a backup writer that started at `start` (epoch seconds; pass the
 * session's start time). The first writer takes the shared process lock.
 * Returns 0 and *token, or CORE_ELOCKED if another process holds the
 * exclusive lock (its GC is running), or -errno. Never blocks on the lock. */
int store_chunkstore_writer_begin(struct store_chunkstore *cs, int64_t start, uint64_t *token);
/* Unregisters; the last writer releases the shared lock (unless GC of this
 * process holds it). Unknown tokens are ignored. */
void store_chunkstore_writer_end(struct store_chunkstore *cs, uint64_t token);
/* Marks GC as running and takes the process lock exclusively. Returns 0,
 * CORE_ELOCKED if GC already runs in this process or another process holds
 * the lock (shared or exclusive), or -errno. Never blocks. */
int store_chunkstore_gc_begin(struct store_chunkstore *cs);
/* Ends GC: the lock drops back to shared if writers are registered, else it
 * is released. */
void store_chunkstore_gc_end(struct store_chunkstore *cs);
/* Returns 1 and the start time of the oldest registered writer, or 0 if none
 * is registered. */
int store_chunkstore_oldest_writer(struct store_chunkstore *cs, int64_t *start);

/* ---- iteration (GC sweep, statistics) ---------------------------------- */

enum store_chunk_kind {
  STORE_CHUNK_KIND_CHUNK = 1, /* "<64 hex>" */
  STORE_CHUNK_KIND_BAD = 2,   /* "<64 hex>.N.bad" */
  STORE_CHUNK_KIND_USING = 3, /* "<64 hex>.using" (S3 "upload in flight" marker) */
};

struct store_chunk_entry {
  enum store_chunk_kind kind;
  unsigned prefix;                        /* 0..65535: its prefix directory */
  int bad_index;                          /* N of .N.bad, else -1 */
  uint8_t digest[32];
  char name[STORE_CHUNK_NAME_MAX + 1];    /* file name inside the prefix dir */
  uint64_t size;                          /* unless STORE_CHUNK_ITER_NO_STAT */
  int64_t atime_sec;                      /* unless STORE_CHUNK_ITER_NO_STAT */
  long atime_nsec;
};

/* Skip the per-file fstatat when the directory entry's d_type already says
 * "regular file" (size and atime are then 0): for counting. */
#define STORE_CHUNK_ITER_NO_STAT 1u

/* Caller-allocated (about 8 KiB, plus a 32 KiB buffer that open allocates
 * and close frees); all fields private. */
struct store_chunk_iter {
  int chunks_fd;             /* borrowed from the handle */
  unsigned flags;
  unsigned next;             /* next prefix to open */
  unsigned end;              /* one past the last prefix */
  unsigned cur;              /* prefix of `dir_fd` */
  int dir_fd;                /* open prefix directory, or -1 */
  int noatime;               /* 1 until O_NOATIME is refused (not the owner) */
  char *buf;                 /* owned: getdents64 records of dir_fd */
  size_t buf_len, buf_pos;
  uint64_t present[STORE_CHUNK_PREFIXES / 64]; /* prefix dirs seen at open */
};

/* Starts a walk over prefixes first..end-1 (0, STORE_CHUNK_PREFIXES for
 * all), in order. The set of prefix directories is read once here: a prefix
 * directory created later is not visited, which is safe for GC because it
 * can only hold chunks newer than the walk. Files that are not regular, or
 * whose names are not chunk/bad/using names (temp files, junk), are skipped.
 * Returns 0 or -errno. The handle must outlive the iterator. */
int store_chunk_iter_open(struct store_chunk_iter *it, struct store_chunkstore *cs,
                          unsigned first, unsigned end, unsigned flags);
/* 1 and *e for the next entry, 0 at the end, or -errno (the iterator may be
 * continued after an error in one prefix directory). An entry that vanishes
 * between readdir and stat is skipped. */
int store_chunk_iter_next(struct store_chunk_iter *it, struct store_chunk_entry *e);
/* The GC sweep primitive (store_chunk_remove_if_older) for the entry `e`
 * that store_chunk_iter_next just returned, relative to the prefix directory
 * the iterator holds open: the file name is looked up in that directory
 * alone, not from the store's root. Call it before the next
 * store_chunk_iter_next. Same results as store_chunk_remove_if_older. */
int store_chunk_iter_remove_if_older(struct store_chunk_iter *it, struct store_chunkstore *cs,
                                     const struct store_chunk_entry *e, int64_t min_atime,
                                     struct store_chunk_stat *st);
/* The prefix currently being walked (for progress). */
unsigned store_chunk_iter_prefix(const struct store_chunk_iter *it);
void store_chunk_iter_close(struct store_chunk_iter *it);

/* Classifies a file name inside a prefix directory: the kind (>0) and the
 * digest (and N for .bad), or 0 if GC must ignore it. */
int store_chunk_parse_name(const char *name, uint8_t digest[32], int *bad_index);

#endif
