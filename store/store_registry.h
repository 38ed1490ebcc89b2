/* store_registry.h: datastore configuration and instances, with the lock-free
 * generation check (PBS patch 1, done on the loop thread without any lock).
 *
 * DESIGN. The registry holds the parsed datastore.cfg and one instance per
 * configured datastore, all tagged with the generation (core_shmem slot
 * CORE_GEN_DATASTORE) read *before* the file was read. A lookup loads the
 * generation once (one acquire load): when it equals the tag, the instance is
 * found by name in a hash map and used: no file read, no parse, no lock.
 * When it differs, the file is re-read and parsed once, in the thread pool,
 * and every lookup that arrives meanwhile waits for that one reload.
 *
 * Saves through the API or cairn-admin bump the generation (core_config_edit),
 * so the very next request sees them. Manual edits are caught by a watch on
 * the config directory and, where events get lost, a periodic re-check: both
 * compare the file's digest with the loaded one and bump the generation on a
 * difference (core_shmem_gen_bump_from, so several processes bump once).
 *
 * An instance survives reloads when its path is unchanged: settings (maintenance
 * mode, tuning) are updated in place, and anything holding it (a running
 * backup) keeps a valid pointer. Instances are refcounted; a lookup takes a
 * reference and counts an active operation, store_release() gives both back.
 *
 * Threads: everything here runs on the loop thread, except the fields marked
 * atomic, which pool jobs may read through a held reference.
 */
#ifndef STORE_REGISTRY_H
#define STORE_REGISTRY_H

#include "core/core_config.h"
#include "core/core_map.h"
#include "core/core_metrics.h"
#include "core/core_shmem.h"
#include "store/store_chunk.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

enum store_op {
  STORE_OP_LOOKUP = 0, /* configuration only: allowed in every maintenance mode */
  STORE_OP_READ = 1,
  STORE_OP_WRITE = 2,
};

enum store_maint {
  STORE_MAINT_NONE = 0,
  STORE_MAINT_READ_ONLY,
  STORE_MAINT_OFFLINE,
  STORE_MAINT_DELETE,
  STORE_MAINT_S3_REFRESH,
};

struct store_registry;
struct store_metrics;

/* Per-datastore counters for the metrics scrape (store_metrics.h): any
 * thread, relaxed atomics. They live as long as the instance (a reload that
 * keeps the path keeps them). */
struct store_ds_stats {
  struct core_counter chunks_new;       /* chunk uploads that stored a new chunk */
  struct core_counter chunks_present;   /* chunk uploads of chunks already stored */
  struct core_counter bytes_received;   /* encoded chunk bytes uploaded */
  struct core_counter bytes_stored;     /* encoded bytes of the new chunks */
  struct core_counter raw_received;     /* plain (decoded) size of uploaded chunks */
  struct core_counter raw_stored;       /* plain size of the new chunks */
  struct core_counter snapshots;        /* backups finished */
};

struct store_datastore {
  char *name;                  /* owned, immutable */
  char *path;                  /* owned, immutable */
  struct store_registry *reg;  /* the owning registry */
  _Atomic int refs;
  _Atomic int active_read;     /* operations in progress, by kind */
  _Atomic int active_write;
  /* Settings: loop thread only; updated in place on reload. */
  uint64_t gen;                /* generation these settings come from */
  int removed;                 /* no longer configured */
  enum store_maint maint;
  char *maint_msg;             /* owned or NULL */
  _Atomic int sync_level;      /* enum store_sync_level; read by pool jobs */
  int64_t gc_atime_cutoff_s;   /* GC cutoff in seconds; default 86700 */
  int gc_atime_safety_check;   /* default 1 */
  /* statfs cache (status API): loop only. */
  uint64_t st_total, st_used, st_avail;
  uint64_t st_stamp_ms;        /* uv_now() of the last statfs; 0 = never */
  int st_err;
  struct store_status_wait *st_waiters; /* status requests waiting on a statfs job */
  int st_busy;                 /* a statfs job is running */
  void *ext;                   /* per-datastore state of other modules (sessions, GC) */
  /* The chunk store handle: one per path per process (OFD lock semantics),
   * opened lazily by the first pool job that needs it. */
  pthread_mutex_t chunks_mutex;
  struct store_chunkstore *chunks;
  /* S3 backend (store_s3.h), or NULL for a file-system datastore:
   * created and kept by the registry, loop thread; pool jobs of the
   * datastore's operations may use its thread-safe parts. */
  struct store_backend *backend;
  struct store_ds_stats stats;  /* metrics */
};

typedef void (*store_ready_cb)(void *arg, int err);
typedef void (*store_lookup_cb)(void *arg, int err, struct store_datastore *ds);

/* 1 if the datastore keeps its data in an S3 bucket (store_s3.h). */
static inline int store_datastore_is_s3(const struct store_datastore *ds)
{
  return ds->backend != NULL;
}

struct store_waiter {
  struct store_waiter *next;
  const char *name;            /* for lookups; owned copy */
  enum store_op op;
  store_lookup_cb lookup_cb;
  store_ready_cb ready_cb;
  void *arg;
};

struct store_registry {
  uv_loop_t *loop;
  struct core_shmem *shmem;            /* borrowed */
  char *config_dir;                    /* owned */
  char *cfg_path;                      /* owned: <config_dir>/datastore.cfg */
  int debug_reread;                    /* re-read the file on every lookup */
  uint64_t gen;                        /* tag of cfg and instances */
  int loaded;                          /* cfg holds a successful load */
  struct core_config cfg;              /* the parsed datastore.cfg */
  char digest[CORE_CONFIG_DIGEST_LEN];
  struct core_map instances;           /* name -> struct store_datastore * */
  int reloading;                       /* a reload job is in flight */
  struct store_waiter *waiters, **waiters_tail;
  uv_fs_event_t watch;
  uv_timer_t ttl;
  int checking;                        /* a digest check job is in flight */
  int closing;
  struct store_metrics *metrics;       /* borrowed or NULL: the last-backup cache and
                                          usage samples (store_metrics.h) */
};

/* Loads datastore.cfg (blocking: startup only), starts the watch and the TTL
 * re-check. Returns 0 or a load error. */
int store_registry_init(struct store_registry *r, uv_loop_t *loop, const char *config_dir,
                        struct core_shmem *shmem, int debug_reread);
/* Stops the watch and timers; instances are released. */
void store_registry_close(struct store_registry *r);

/* Calls `cb` once the registry reflects the current generation: at once (from
 * inside this call) when it already does, else after a reload. */
void store_registry_refresh(struct store_registry *r, store_ready_cb cb, void *arg);

/* Resolves a datastore for an operation. On success `ds` carries a reference
 * and an active-operation count: give both back with store_release().
 * Errors: CORE_ENOTFOUND (not configured), CORE_EMAINT (maintenance mode
 * forbids `op`), or a config load error. `cb` may run inside this call. */
void store_lookup(struct store_registry *r, const char *name, enum store_op op,
                  store_lookup_cb cb, void *arg);
void store_release(struct store_datastore *ds, enum store_op op);
void store_datastore_ref(struct store_datastore *ds);
void store_datastore_unref(struct store_datastore *ds);

/* The datastore's chunk store handle, opened on first use. Pool threads only
 * (it may open files); the handle lives as long as the instance. Returns 0,
 * or an error from store_chunkstore_open. */
int store_datastore_chunks(struct store_datastore *ds, struct store_chunkstore **out);

/* The maintenance-mode message for an error response ("datastore is offline"). */
const char *store_maint_name(enum store_maint m);

/* Parses a datastore section's settings; for validation before a save too.
 * Returns 0 or CORE_ECONFIG with a message in err. */
int store_registry_parse_settings(const struct core_config_section *sec,
                                  struct store_datastore *into, char *err, size_t errlen);

#endif
