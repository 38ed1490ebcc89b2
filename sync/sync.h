/* sync.h: remotes and sync jobs, pull and push replication between Cairn
 * (and PBS-shaped) servers.
 *
 * DESIGN
 * Two config files in PBS's section format:
 *   remote.cfg  `remote: NAME`: host, port (8007), auth-id, password (the
 *               token secret, stored base64 as PBS does; file mode 0600;
 *               never returned by the API), fingerprint, comment.
 *   sync.cfg    `sync: ID`: store, ns, remote (absent: a local sync between
 *               two datastores of this server), remote-store, remote-ns,
 *               owner, remove-vanished, max-depth, group-filter (repeated
 *               key), schedule, rate-in/burst-in, rate-out/burst-out,
 *               transfer-last, encrypted-only, verified-only,
 *               resync-corrupt, sync-direction (pull|push), worker-threads,
 *               comment.
 * Edits run in the pool under the file's lock (core_config_edit) and bump
 * CORE_GEN_REMOTE / CORE_GEN_JOB; reads load the (small) file in a pool job.
 *
 * A sync is a task (core_task.h) whose work runs on threads of its own, not
 * on the loop and not on the request pool: a sync mostly waits on the
 * network, and the remote side is reached through client_api (client/),
 * which gives blocking calls from any number of threads over a keep-alive
 * pool of TLS connections with the remote's fingerprint pinned. The loop
 * only starts the task (datastore lookup, task start, thread start) and ends
 * it (a core_wake from the engine thread). Everything the engine threads do
 * to the local datastore goes through store/'s pool-side functions (chunk
 * insert, snapshot and group files, locks), as a pool job would.
 *
 *   sync_cfg.c     remote.cfg / sync.cfg: property checks, edits, loads
 *   sync_api.c     REST handlers (config/remote, config/sync, admin/sync,
 *                  pull, push)
 *   sync_job.c     starting and ending runs, job state, the schedule timer
 *   sync_source.c  where snapshots come from: a remote (reader sessions) or
 *                  a local datastore
 *   sync_pull.c    the pull engine
 *   sync_push.c    the push engine (backup sessions on the remote)
 *   sync_engine.c  what both engines share: error counting, namespace
 *                  mapping, opening the local datastore, the run's end
 *   sync_filter.c  group filters (PBS syntax)
 *   sync_rate.c    token buckets
 *   sync_admin.c   cairn-admin remote / sync-job / pull / push
 *
 * THREADS: sync_ctx and the API are loop-thread only; the engines run on
 * their own threads and touch the loop only through the run's core_wake.
 */
#ifndef SYNC_H
#define SYNC_H

#include "core/core_calendar.h"
#include "core/core_config.h"
#include "core/core_map.h"
#include "core/core_shmem.h"
#include "core/core_task.h"
#include "core/core_wake.h"
#include "format/format_name.h"
#include "http/http.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

struct store_registry;
struct store_access;
struct gc_ctx;

#define SYNC_REMOTE_CFG "remote.cfg"
#define SYNC_JOB_CFG "sync.cfg"
#define SYNC_DEFAULT_PORT 8007
#define SYNC_MAX_FILTERS 32
#define SYNC_MAX_WORKERS 32
#define SYNC_TASK_JOB "syncjob"   /* PBS's task type of a configured job's run */
#define SYNC_TASK_PULL "sync"     /* a one-off pull */
#define SYNC_TASK_PUSH "sync-push"/* a one-off push */

/* ---- group filters (sync_filter.c) ------------------------------------- */

enum sync_filter_kind { SYNC_FILTER_TYPE = 1, SYNC_FILTER_GROUP, SYNC_FILTER_REGEX };

struct sync_filter {
  int exclude;                  /* "exclude:" prefix */
  enum sync_filter_kind kind;
  char *arg;                    /* owned: the type, "type/id" or the regex text */
  void *re;                     /* owned regex_t for SYNC_FILTER_REGEX */
};

struct sync_filters {
  struct sync_filter items[SYNC_MAX_FILTERS];
  size_t n;
};

/* Checks one filter string: 0, or CORE_EINVAL with a reason in err. Pure. */
int sync_filter_check(const char *s, char *err, size_t errlen);
/* Adds one filter (compiled); 0 or CORE_EINVAL / CORE_ETOOBIG. */
int sync_filters_add(struct sync_filters *f, const char *s, char *err, size_t errlen);
void sync_filters_free(struct sync_filters *f);
/* PBS's rule: included if no include filter exists or any matches, then
 * dropped if any exclude filter matches. */
int sync_filters_match(const struct sync_filters *f, const char *type, const char *id);

/* ---- token buckets (sync_rate.c) ---------------------------------------- */

struct sync_rate {
  pthread_mutex_t mutex;
  uint64_t rate;                /* bytes per second; 0: unlimited */
  uint64_t burst;               /* bucket size in bytes */
  double tokens;                /* may go negative: debt paid by waiting */
  int64_t last_ns;              /* monotonic time of the last refill */
  _Atomic uint64_t bytes;       /* everything that went through */
  int64_t first_ns, last_ns_take; /* monotonic times of the first and last take */
};

void sync_rate_init(struct sync_rate *r, uint64_t rate, uint64_t burst);
void sync_rate_destroy(struct sync_rate *r);
/* Takes `n` bytes that just moved from the bucket and sleeps (engine
 * threads only) until the bucket is no longer in debt. */
void sync_rate_take(struct sync_rate *r, uint64_t n);
/* For transfers of known (or estimated) size: reserve before sending the
 * request, sleeping while the bucket is in debt, so the wait of one thread
 * overlaps the transfers of the others; settle with the bytes that really
 * moved once it is done (the difference goes back into the bucket). */
void sync_rate_reserve(struct sync_rate *r, uint64_t n);
void sync_rate_settle(struct sync_rate *r, uint64_t reserved, uint64_t actual);
/* Parses "10M", "1.5MiB", "512k", "1000" (bytes/s). 0 or CORE_EINVAL. */
int sync_rate_parse(const char *s, uint64_t *out);
/* Seconds between the first and the last take (the transfer window). */
double sync_rate_window(struct sync_rate *r);

/* ---- config (sync_cfg.c) ------------------------------------------------ */

/* Property checks for the API and cairn-admin. 0, or CORE_ECONFIG with a
 * message. */
int sync_remote_check_prop(const char *key, const char *value, char *err, size_t errlen);
int sync_job_check_prop(const char *key, const char *value, char *err, size_t errlen);
/* A local sync within one datastore needs namespaces that do not contain
 * each other. 0, or CORE_ECONFIG with a message. */
int sync_local_overlap(const char *store, const char *ns, const char *src_store,
                       const char *src_ns, char *err, size_t errlen);
/* Remote and job ids: PBS's SAFE_ID, 3..32 characters. */
int sync_id_valid(const char *s);

enum sync_edit_op { SYNC_EDIT_CREATE, SYNC_EDIT_UPDATE, SYNC_EDIT_REMOVE };

/* One edit of remote.cfg or sync.cfg (blocking: pool or cairn-admin). */
struct sync_edit {
  const char *config_dir;
  struct core_shmem *shmem;     /* may be NULL */
  int remote;                   /* 1: remote.cfg, 0: sync.cfg */
  enum sync_edit_op op;
  const char *name;
  const struct core_kv *set;
  size_t nset;
  const char *const *del;
  size_t ndel;
  const char *digest;           /* expected digest or NULL */
  char err[256];                /* out */
};
int sync_edit_apply(struct sync_edit *e);

/* Loads remote.cfg or sync.cfg (blocking). A missing file is empty. */
int sync_cfg_load(const char *config_dir, int remote, struct core_config *cfg,
                  char digest[CORE_CONFIG_DIGEST_LEN], char *err, size_t errlen);
/* base64 of the password as stored (PBS) <-> the secret; core_free. */
char *sync_password_encode(const char *secret);
char *sync_password_decode(const char *stored);

/* ---- what a run does ---------------------------------------------------- */

enum sync_dir { SYNC_PULL = 0, SYNC_PUSH = 1 };

/* Everything a run needs, copied (no pointers into configs or requests). */
struct sync_params {
  enum sync_dir dir;
  char *job_id;                 /* NULL for a one-off */
  char *store;                  /* the local datastore */
  char *ns;                     /* local namespace ("" root) */
  char *remote;                 /* NULL: local sync */
  char *remote_store;           /* the other datastore (remote or local) */
  char *remote_ns;              /* "" root */
  char *owner;                  /* owner of groups created locally (pull) */
  int remove_vanished;
  int max_depth;                /* -1: as deep as possible */
  struct sync_filters filters;
  uint64_t rate_in, burst_in, rate_out, burst_out; /* 0: unlimited */
  uint64_t transfer_last;       /* 0: all */
  int encrypted_only, verified_only, resync_corrupt;
  int worker_threads;           /* 1..32 */
  /* the remote's connection, from remote.cfg */
  char *host;
  int port;
  char *auth_id;
  char *secret;                 /* wiped on free */
  char *fingerprint;
  int plain_http;               /* tests only: CAIRN_SYNC_PLAIN_HTTP=1 */
};

void sync_params_free(struct sync_params *p);
/* Fills `p` from a job section (and `remote_sec` when the job has a
 * remote). 0 or CORE_ECONFIG with a message. */
int sync_params_from_job(struct sync_params *p, const struct core_config_section *job,
                         const struct core_config_section *remote_sec, char *err,
                         size_t errlen);
/* Adds a remote's connection to `p`. */
int sync_params_set_remote(struct sync_params *p, const struct core_config_section *remote_sec,
                           char *err, size_t errlen);

/* ---- the context (sync_job.c) ------------------------------------------- */

struct sync_run;

/* Per configured job, loop thread. */
struct sync_job_state {
  struct sync_run *run;         /* running, or NULL */
  int starting;                 /* a start is between lookup and thread */
  char *expr;                   /* schedule as last seen, owned */
  struct core_calendar cal;
  int cal_ok;
  int64_t last;                 /* epoch second of the last scheduled run; 0 unknown */
  int seen;
};

struct sync_ctx {
  uv_loop_t *loop;
  struct store_registry *reg;   /* borrowed */
  struct store_access *access;  /* borrowed: privileges, audit */
  struct gc_ctx *gc;            /* borrowed: the task registry */
  struct core_shmem *shmem;     /* borrowed */
  char *config_dir, *run_dir;   /* owned */
  struct core_map jobs;         /* job id -> struct sync_job_state * */
  struct sync_run *runs;        /* running, linked */
  uv_timer_t sched_timer;
  int64_t sched_last;
  uint64_t sched_max_ms;        /* default 2 s */
  int sched_busy;
  uint64_t loaded_gen;          /* CORE_GEN_JOB the schedules were read at */
  int pending;                  /* pool jobs in flight */
  int closing;
};

/* Sets up the context and starts the schedule timer. 0 or an error. */
int sync_ctx_init(struct sync_ctx *ctx, uv_loop_t *loop, struct store_registry *reg,
                  struct store_access *access, struct gc_ctx *gc, struct core_shmem *shmem,
                  const char *config_dir, const char *run_dir);
/* Aborts running syncs, waits for their threads, ends their tasks. Call
 * after uv_run returned and before gc_ctx_close. Blocking. */
void sync_ctx_close(struct sync_ctx *ctx);
/* Registers the routes of sync_api.c. */
void sync_api_register(struct http_server *s, struct sync_ctx *ctx);

/* Starts a run (loop thread). Takes `p` (freed by the run, also on error).
 * `cb` gets 0 and the task, or an error with a message. */
typedef void (*sync_start_cb)(void *arg, int err, const char *msg, struct core_task *task);
void sync_start(struct sync_ctx *ctx, struct sync_params *p, const char *authid,
                sync_start_cb cb, void *arg);
/* Loads the two files and starts job `id` (loop thread). */
void sync_start_job(struct sync_ctx *ctx, const char *id, const char *authid, sync_start_cb cb,
                    void *arg);

/* ---- engines (engine threads) ------------------------------------------- */

struct store_datastore;
struct sync_source;

/* A call an engine thread hands to the loop (S3 datastores, whose upload
 * and mirror functions are loop-side): `fn` runs on the loop and must end
 * with sync__loop_done, possibly later from a callback. */
struct sync_loop_call {
  struct sync_loop_call *next;
  void (*fn)(struct sync_loop_call *c);
  struct store_datastore *ds;
  int rc;
  char msg[256];
  int done;                     /* guarded by the engine's call_mutex */
  struct sync_engine *e;
};

/* What an engine gets; the run owns it. */
struct sync_engine {
  const struct sync_params *p;
  struct core_task *task;       /* log, warn, aborted: any thread */
  struct store_datastore *ds;   /* the local datastore, held for write (pull) or read (push) */
  struct store_datastore *src_ds; /* local sync: the other datastore, held for read */
  const char *run_dir;
  struct sync_rate rate;
  _Atomic uint64_t chunks_fetched, chunks_known, bytes_fetched, snapshots_synced;
  _Atomic uint64_t errors;
  char err[600];                /* the first fatal error */
  int s3;                       /* the local datastore keeps its data in S3 */
  /* loop calls (sync_job.c): queued under call_mutex, run by call_wake */
  pthread_mutex_t call_mutex;
  pthread_cond_t call_cond;
  struct sync_loop_call *calls;
  struct core_wake *call_wake;
  int closing;                  /* guarded by call_mutex: calls fail at once */
};

/* Engine thread: runs c->fn on the loop and waits for sync__loop_done.
 * Returns c->rc. */
int sync__loop_call(struct sync_engine *e, struct sync_loop_call *c);
/* Loop thread: ends a call. */
void sync__loop_done(struct sync_loop_call *c, int rc, const char *msg);

/* S3 datastores, engine threads (sync_s3.c): the backup path's chunk upload
 * (bucket first, then the cache), the metadata mirror of files (paths
 * below the base), of a finished snapshot (the manifest last), and its
 * removal. 0 or an error with a message. */
int sync__s3_chunk(struct sync_engine *e, const uint8_t digest[32], uint64_t size, void *data,
                   size_t len, char *err, size_t errlen);
int sync__s3_mirror(struct sync_engine *e, const char *const *abs_paths, size_t n, char *err,
                    size_t errlen);
int sync__s3_mirror_snapshot(struct sync_engine *e, const char *ns, const char *type,
                             const char *id, int64_t time, const char *manifest_src, char *err,
                             size_t errlen);
int sync__s3_unmirror(struct sync_engine *e, const char *abs_path, char *err, size_t errlen);

int sync__pull(struct sync_engine *e);
int sync__push(struct sync_engine *e);

/* Shared by both engines (sync_engine.c), engine threads. */
struct store_chunkstore;
/* Counts an error of the run and logs it as "ERROR: ...". */
void sync__fail(struct sync_engine *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* from_root/sub -> to_root/sub. Returns 0, CORE_ENAME (`ns` is not
 * `from_root` or below it: a listing must not lead anywhere else) or
 * CORE_ETOOBIG (too deep, too long). */
int sync__map_ns(const char *from_root, const char *to_root, const char *ns, char *out,
                 size_t cap);
/* The lock dir and the chunk store of e->ds; on failure e->err says why. */
int sync__open_local(struct sync_engine *e, char *lockdir, size_t cap,
                     struct store_chunkstore **cs);
/* The end of a run: rc, or CORE_EPROTO with e->err set if any error was
 * counted ("N error(s) during the <what>"). */
int sync__finish(struct sync_engine *e, int rc, const char *what);

/* ---- cairn-admin (sync_admin.c) ----------------------------------------- */

/* `remote ...`, `sync-job ...`, `pull ...`, `push ...`: argv[0] is the noun.
 * Returns the exit status (2: usage). */
int sync_admin_main(const char *config_dir, struct core_shmem *shmem, int argc, char **argv);
void sync_admin_usage(FILE *f);

#endif
