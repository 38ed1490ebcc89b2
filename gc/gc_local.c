/* gc_local.c: garbage collection of a local datastore.
 *
 * The engine is a state machine on the loop thread; its file-system work runs
 * as jobs on the gc workers (gc_api.h: low-priority background threads).
 * Steps:
 *
 *   BEGIN     open the chunk store, take the GC lock (store_chunkstore_gc_begin:
 *             one GC per datastore, and none while another process writes),
 *             insert the zero chunk and stat it (atime safety check, part 1;
 *             on a full file system any chunk already there, see run_begin)
 *   WAIT      a loop timer until the clock has moved past that atime
 *   SAFETY    touch and stat that chunk again: the atime must have grown
 *   WALK      fix the cutoff, then list every group and every index file
 *             outside the regular layout (gc_walk.h)
 *   MARK      touch every referenced chunk once; up to `parallel` jobs at a
 *             time, one group (or 16 stray index files) per job. A group job
 *             lists the group's snapshots itself, newest first, and marks
 *             them right away; if an index vanished meanwhile (pruned), it
 *             lists the group again, because the snapshot that was pruned may
 *             have been the base of a newer one that finished after the
 *             listing and references the same chunks without having
 *             uploaded them (PBS retries such a group too)
 *   REPLAY    take the move journal's lock, mark every group a move put
 *             somewhere since the last GC, empty the journal (store_move.h:
 *             why this closes the race between a move and the mark phase)
 *   SWEEP     remove chunks older than the cutoff; `parallel` sweepers, each
 *             with its own iterator over a disjoint range of prefix
 *             directories, 16 Ki files per job
 *   FINISH    write .gc-status (a failure is a warning: the work is done, the
 *             figures stay in the task log and in memory), release the GC lock
 *   END       (on error or abort, once no job is in flight) release the lock
 *
 * Mark and sweep are mostly waiting on metadata I/O (inode reads, unlink
 * journaling), which overlaps across threads; the workers' low CPU priority
 * keeps the loop responsive when the caches are warm and they are CPU-bound.
 * A job owns its in/out fields; the run's shared state is touched only on
 * the loop (dispatch and done callbacks), except the touched-digest cache
 * (internally locked), the chunk store handle (thread-safe), each sweeper's
 * iterator (one job per sweeper at a time) and the atomic `missing` counter.
 *
 * Cutoff: min_atime = min(phase-1 start - cutoff, oldest writer start - 300 s).
 * The oldest writer is read once, before the walk; a backup that registers
 * later started after phase 1 did, so every chunk it uploads or touches has
 * a newer atime, and a chunk it only references from its previous snapshot
 * is marked through that snapshot, which its shared lock keeps from being
 * pruned until the backup ends. See docs/tasks-gc-prune-verify.md.
 */
#include "gc/gc_api.h"
#include "gc/gc_cache.h"
#include "gc/gc_s3.h"
#include "gc/gc_space.h"
#include "gc/gc_status.h"
#include "gc/gc_walk.h"

#include "core/core_alloc.h"
#include "core/core_config.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_fmt.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "store/store_s3.h"
#include "format/format_blob.h"
#include "store/store_chunk.h"
#include "format/format_index.h"
#include "store/store_path.h"
#include "store/store_move.h"
#include "store/store_lock.h"
#include "core/core_testpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* SHA-256 of 4 MiB of zeros: the chunk the atime safety check inserts, so
 * every datastore holds it (as in PBS). */
static const char zero_chunk_hex[] =
    "bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8";
#define ZERO_CHUNK_SIZE (4u * 1024 * 1024)

#define MARK_FILES_PER_ITEM 16u   /* stray index files handed to one mark job */
#define GROUP_TRIES 10            /* listings of a group whose snapshots keep vanishing */
#define SWEEP_BUDGET 16384u       /* chunk files per sweep job */
#define ABORT_POLL 4096u          /* items between abort checks inside a job */
#define MISSING_WARN_MAX 100u     /* missing-chunk warnings logged per run */
#define MAX_PARALLEL 16
#define RECENT_MAX (4u * 1024 * 1024) /* digests remembered untouched; then touch */

enum gc_step {
  GC_BEGIN,
  GC_WAIT,
  GC_SAFETY,
  GC_WALK,
  GC_MARK,
  GC_REPLAY,
  GC_SWEEP,
  GC_FINISH,
  GC_END,
};

struct zstat {
  ino_t ino;
  int64_t sec;
  long nsec;
};

/* Statistics a job gathers; added into the run's in the done callback. */
struct gc_counts {
  uint64_t index_file_count, index_data_bytes;
  uint64_t touched, recent, items_done, relists;
  uint64_t disk_bytes, disk_chunks, removed_bytes, removed_chunks;
  uint64_t pending_bytes, pending_chunks, removed_bad, still_bad;
  uint64_t swept, dir_errors;
  uint64_t replayed;
  uint64_t known_kept;          /* swept chunks the mark proved kept: no stat */
};

struct gc_sweeper {
  struct store_chunk_iter it;   /* job-owned while `busy` */
  unsigned first, end;          /* prefix range */
  unsigned prefix;              /* progress: prefix reached */
  int open, done, busy;
};

struct mark_item {
  int group;                    /* 1: a group; 0: stray index files */
  size_t first, end;            /* the group index; or [first, end) in run->strays */
};

struct gc_run;

struct gc_job {
  struct core_job job;
  struct gc_run *run;
  enum gc_step kind;
  struct mark_item item;        /* in (MARK) */
  int sweeper;                  /* in (SWEEP) */
  struct gc_counts c;           /* out */
  int rc;                       /* out */
  char msg[600];                /* out */
};

struct gc_run {
  uv_timer_t timer;             /* WAIT; closed when the run ends */
  struct gc_ctx *ctx;
  struct gc_store_state *state;
  struct core_task *task;
  struct store_datastore *ds;   /* reference + STORE_OP_WRITE operation */
  char *store;                  /* owned */
  char *base;                   /* owned copy of ds->path */
  int64_t cutoff_s;             /* gc-atime-cutoff at start */
  int64_t grace_s;              /* oldest writer start minus this */
  int safety;                   /* gc-atime-safety-check at start */
  int parallel;                 /* jobs in flight during mark and sweep */
  enum gc_step step;
  uint64_t t_start, t_mark, t_sweep; /* uv_hrtime() at phase starts */
  unsigned last_pct;
  int inflight;                 /* jobs in flight */
  int stopping;                 /* an error or abort: dispatch nothing new */
  int rc;                       /* first error */
  char msg[600];
  /* Set by single-step jobs (BEGIN .. WALK), read afterwards. */
  struct store_chunkstore *cs;
  int begun;                    /* store_chunkstore_gc_begin succeeded */
  uint8_t check[32];            /* the chunk the atime safety check measures */
  int check_none;               /* full file system and no chunk at all: no check */
  struct zstat z1, z2;
  int safety_retried;
  int64_t phase1_start, oldest_writer, min_atime;
  int mark_fd;                  /* gc-marking lock, WALK .. REPLAY (store_move.h), or -1 */
  int has_writer;
  struct gc_index_list list;
  struct gc_status status;      /* FINISH: what .gc-status gets */
  int status_unsaved;           /* FINISH: it could not be written */
  /* mark (loop) */
  size_t *strays;               /* indexes into list of the files outside the layout */
  size_t n_strays;
  size_t next_group, next_stray;
  size_t n_items;               /* mark jobs in all */
  _Atomic uint64_t missing;     /* referenced chunks that do not exist */
  struct gc_cache cache;
  /* Referenced chunks whose atime was already >= min_atime but older than
   * the oldest writer: not touched (the sweep keeps them anyway), remembered
   * so the sweep counts them as in use, not as pending removals. */
  pthread_mutex_t recent_mutex;
  struct gc_digest_set recent;
  /* sweep */
  struct gc_sweeper sw[MAX_PARALLEL];
  int n_sw;
  struct gc_counts total;
};

static void advance(struct gc_run *run);
static void fail(struct gc_run *run);

static void human_duration(int64_t s, char *out, size_t len)
{
  int64_t d = s / 86400, h = s % 86400 / 3600, m = s % 3600 / 60, sec = s % 60;
  size_t n = 0;
  out[0] = '\0';
  if (d)
    n += (size_t)snprintf(out + n, len - n, "%" PRId64 "d ", d);
  if (h && n < len)
    n += (size_t)snprintf(out + n, len - n, "%" PRId64 "h ", h);
  if (m && n < len)
    n += (size_t)snprintf(out + n, len - n, "%" PRId64 "m ", m);
  if ((sec || n == 0) && n < len)
    n += (size_t)snprintf(out + n, len - n, "%" PRId64 "s ", sec);
  if (n > 0 && n <= len)
    out[n - 1] = '\0';
}
static void iso_time(int64_t t, char out[32])
{
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- pool work ---------------------------------------------------------- */

static int zstat_get(struct gc_run *run, struct zstat *z)
{
  char rel[STORE_CHUNK_REL_LEN + 1];
  struct stat st;
  store_path_chunk_rel(rel, run->check);
  if (fstatat(run->cs->chunks_fd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return -errno;
  z->ino = st.st_ino;
  z->sec = st.st_atim.tv_sec;
  z->nsec = st.st_atim.tv_nsec;
  return 0;
}

/* "the zero chunk" or "chunk <hex>": the chunk the atime check measures. */
static void check_name(const struct gc_run *run, char out[80])
{
  char hex[65];
  core_hex_encode(run->check, 32, hex);
  if (strcmp(hex, zero_chunk_hex) == 0)
    snprintf(out, 80, "the zero chunk");
  else
    snprintf(out, 80, "chunk %s", hex);
}

/* Inserts the zero chunk as PBS does (compressed, unencrypted); an existing
 * one is only touched. 0 or an error. */
static int insert_zero_chunk(struct gc_run *run)
{
  uint8_t *zeros = core_calloc(1, ZERO_CHUNK_SIZE), *blob = NULL;
  size_t blen = 0;
  int rc = format_blob_encode_alloc(NULL, zeros, ZERO_CHUNK_SIZE, FORMAT_BLOB_COMPRESS, NULL,
                                   &blob, &blen);
  core_free(zeros);
  if (rc >= 0) {
    struct store_chunk_insert_result res;
    rc = store_chunk_insert(run->cs, run->check, blob, blen, &res);
  }
  core_free(blob);
  return rc;
}

/* Part 1 of the atime safety check: pick the chunk to measure and stat it.
 * That is the zero chunk, inserted if missing, so every datastore holds it
 * (as in PBS). On a full file system the insert finds no room, while a
 * touch needs none: any chunk already there serves as well (gc_space.h).
 * Touching it keeps it through this run even if nothing references it; the
 * next GC removes it. A store without any chunk has nothing to sweep, so
 * the check is skipped. 0 or an error (job->msg set). */
static int safety_begin(struct gc_job *job)
{
  struct gc_run *run = job->run;
  char what[80];
  core_hex_decode(zero_chunk_hex, 32, run->check);
  int rc = insert_zero_chunk(run);
  if (gc_space_full(rc)) {
    int full = rc;
    rc = gc_space_any_chunk(run->cs, run->check);
    if (rc == CORE_ENOTFOUND) {
      run->check_none = 1;
      core_task_log(run->task, "cannot insert the zero chunk (%s) and the datastore holds no "
                    "chunk: nothing to sweep, atime safety check skipped", core_strerror(full));
      return 0;
    }
    if (rc < 0) {
      snprintf(job->msg, sizeof(job->msg), "atime safety check: cannot insert the zero chunk "
               "(%s) nor find another chunk: %s", core_strerror(full), core_strerror(rc));
      return rc;
    }
    check_name(run, what);
    core_task_log(run->task, "cannot insert the zero chunk (%s): checking access time updates "
                  "on %s instead", core_strerror(full), what);
  } else if (rc < 0) {
    snprintf(job->msg, sizeof(job->msg), "atime safety check: cannot insert the zero chunk: %s",
             core_strerror(rc));
    return rc;
  }
  rc = zstat_get(run, &run->z1);
  if (rc < 0) {
    check_name(run, what);
    snprintf(job->msg, sizeof(job->msg), "atime safety check: cannot stat %s: %s", what,
             core_strerror(rc));
  }
  return rc;
}

static void run_begin(struct gc_job *job)
{
  struct gc_run *run = job->run;
  int rc = store_datastore_chunks(run->ds, &run->cs);
  if (rc < 0) {
    job->rc = rc;
    snprintf(job->msg, sizeof(job->msg), "cannot open the chunk store: %s", core_strerror(rc));
    return;
  }
  rc = store_chunkstore_gc_begin(run->cs);
  if (rc < 0) {
    job->rc = rc;
    snprintf(job->msg, sizeof(job->msg), "%s",
             rc == CORE_ELOCKED ? "Start GC failed - (already running/locked): another "
                                  "garbage collection or another process holds the datastore lock"
                                : core_strerror(rc));
    return;
  }
  run->begun = 1;
  if (run->safety) {
    rc = safety_begin(job);
    if (rc < 0)
      job->rc = rc;
  }
}

static void run_safety(struct gc_job *job)
{
  struct gc_run *run = job->run;
  int rc = store_chunk_touch(run->cs, run->check);
  if (rc >= 0)
    rc = zstat_get(run, &run->z2);
  if (rc < 0) {
    char what[80];
    check_name(run, what);
    job->rc = rc;
    snprintf(job->msg, sizeof(job->msg), "atime safety check: cannot touch %s: %s", what,
             core_strerror(rc));
  }
}

static void run_walk(struct gc_job *job)
{
  struct gc_run *run = job->run;
  char lockdir[STORE_PATH_MAX];
  int lrc = store_lock_dir(lockdir, sizeof(lockdir), run->ctx->run_dir, run->store);
  if (lrc >= 0)
    lrc = store_move_gc_mark_begin(lockdir, &run->mark_fd);
  if (lrc < 0) {
    job->rc = lrc;
    snprintf(job->msg, sizeof(job->msg), "cannot take the gc-marking lock: %s",
             core_strerror(lrc));
    return;
  }
  run->phase1_start = (int64_t)time(NULL);
  int64_t w = 0;
  run->has_writer = store_chunkstore_oldest_writer(run->cs, &w);
  run->oldest_writer = run->has_writer ? w : run->phase1_start;
  run->min_atime = run->phase1_start - run->cutoff_s;
  if (run->has_writer && w - run->grace_s < run->min_atime)
    run->min_atime = w - run->grace_s;
  int rc = gc_walk_indexes(run->base, &run->list, &run->task->abort_requested, job->msg,
                           sizeof(job->msg));
  if (rc < 0)
    job->rc = rc;
  core_testpoint("gc-listed");
}

/* Opens and maps an index file. 0, 1 if it vanished, or an error (msg set). */
static int map_index(struct gc_job *job, const char *path, void **map, size_t *len,
                     struct format_index *idx)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT)
      return 1; /* its snapshot was removed meanwhile */
    int rc = -errno;
    snprintf(job->msg, sizeof(job->msg), "cannot open index %s: %s", path, strerror(errno));
    return rc;
  }
  struct stat st;
  int rc = 0;
  if (fstat(fd, &st) < 0) {
    rc = -errno;
    snprintf(job->msg, sizeof(job->msg), "cannot stat index %s: %s", path, strerror(errno));
    goto out;
  }
  if (st.st_size < FORMAT_INDEX_HDR_LEN) {
    rc = CORE_EFORMAT;
    snprintf(job->msg, sizeof(job->msg),
             "index %s is corrupt (%lld bytes, shorter than its header); refusing to "
             "sweep on an incomplete mark", path, (long long)st.st_size);
    goto out;
  }
  *len = (size_t)st.st_size;
  *map = mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0);
  if (*map == MAP_FAILED) {
    rc = -errno;
    *map = NULL;
    snprintf(job->msg, sizeof(job->msg), "cannot map index %s: %s", path, strerror(errno));
    goto out;
  }
  rc = format_index_parse(*map, *len, FORMAT_INDEX_SKIP_CSUM, idx);
  if (rc < 0) {
    snprintf(job->msg, sizeof(job->msg),
             "index %s is corrupt (%s); refusing to sweep on an incomplete mark", path,
             core_strerror(rc));
    munmap(*map, *len);
    *map = NULL;
  }
out:
  close(fd);
  return rc;
}

/* Marks one index file: 0, 1 if it vanished, or an error (msg set). */
static int mark_file(struct gc_job *job, const char *path)
{
  struct gc_run *run = job->run;
  void *map = NULL;
  size_t len = 0;
  struct format_index idx;
  int rc = map_index(job, path, &map, &len, &idx);
  if (rc != 0)
    return rc;
  job->c.index_file_count++;
  job->c.index_data_bytes += idx.size;
  for (uint64_t e = 0; e < idx.count; e++) {
    if ((e % ABORT_POLL) == ABORT_POLL - 1 && core_task_aborted(run->task)) {
      rc = CORE_EABORTED;
      snprintf(job->msg, sizeof(job->msg), "aborted");
      break;
    }
    const uint8_t *d = format_index_digest(&idx, e);
    if (gc_cache_test_and_add(&run->cache, d))
      continue;
    /* A touch writes the inode (and the journal); a stat only reads it. The
     * sweep keeps any chunk whose atime is >= min_atime, and atimes only
     * move forward, so a chunk touched recently enough (by the previous GC,
     * by an upload) needs no touch now. */
    struct store_chunk_stat cst;
    int have_stat = store_chunk_stat(run->cs, d, &cst) == 0;
    if (have_stat && cst.atime_sec >= run->min_atime) {
      int keep = cst.atime_sec >= run->oldest_writer;
      if (!keep) {
        pthread_mutex_lock(&run->recent_mutex);
        keep = gc_digest_set_add(&run->recent, d) >= 0;
        pthread_mutex_unlock(&run->recent_mutex);
      }
      if (keep) {
        job->c.recent++;
        gc_cache_set_kept(&run->cache, d, cst.size);
        continue;
      }
    }
    job->c.touched++;
    rc = store_chunk_touch(run->cs, d);
    if (rc == 0 && have_stat)
      gc_cache_set_kept(&run->cache, d, cst.size);
    if (rc == CORE_ENOTFOUND) {
      /* Keep its .bad copies too, as PBS does: they are evidence. */
      rc = store_chunk_touch_bad(run->cs, d);
      if (rc == 0) {
        char hex[65];
        core_hex_encode(d, 32, hex);
        if (atomic_fetch_add(&run->missing, 1) < MISSING_WARN_MAX)
          core_task_warn(run->task, "missing chunk %s (referenced by %s)", hex, path);
      }
    }
    if (rc < 0) {
      char hex[65];
      core_hex_encode(d, 32, hex);
      snprintf(job->msg, sizeof(job->msg), "cannot mark chunk %s (referenced by %s): %s", hex,
               path, core_strerror(rc));
      break;
    }
    rc = 0;
  }
  munmap(map, len);
  return rc;
}

static void mark_group(struct gc_job *job, char *dir)
{
  struct gc_run *run = job->run;
  for (int attempt = 0; attempt < GROUP_TRIES; attempt++) {
    struct gc_index_list gl;
    memset(&gl, 0, sizeof(gl));
    int rc = gc_walk_groups(&dir, 1, &gl, &run->task->abort_requested, job->msg,
                            sizeof(job->msg));
    if (rc >= 0 && run->ctx->test_mark_hook)
      run->ctx->test_mark_hook(run->ctx->test_mark_hook_arg, dir, attempt);
    int vanished = 0;
    for (size_t i = 0; rc >= 0 && i < gl.n; i++) {
      rc = mark_file(job, gl.paths[i]);
      if (rc == 1) {
        vanished = 1;
        rc = 0;
      }
    }
    gc_index_list_free(&gl);
    if (rc < 0) {
      job->rc = rc;
      return;
    }
    if (!vanished)
      return;
    job->c.relists++;
  }
  job->rc = CORE_EABORTED;
  snprintf(job->msg, sizeof(job->msg), "the snapshots of %s kept vanishing while they were "
           "marked (pruned meanwhile); stopping without a sweep, run GC again", dir);
}

static void run_mark(struct gc_job *job)
{
  struct gc_run *run = job->run;
  if (job->item.group) {
    mark_group(job, run->list.groups[job->item.first]);
  } else {
    for (size_t i = job->item.first; i < job->item.end && job->rc == 0; i++) {
      int rc = mark_file(job, run->list.paths[run->strays[i]]);
      if (rc < 0)
        job->rc = rc;
    }
  }
  job->c.items_done++;
}

/* The groups moves put somewhere since the last GC (store_move.h). The
 * journal's lock is held while they are marked, so no move renames meanwhile;
 * the journal is emptied only after a complete mark. */
static void run_replay(struct gc_job *job)
{
  struct gc_run *run = job->run;
  int fd = -1;
  char **dirs = NULL;
  size_t n = 0;
  int rc = store_move_journal_take(run->base, &fd, &dirs, &n);
  if (rc < 0) {
    job->rc = rc;
    snprintf(job->msg, sizeof(job->msg), "cannot read the move journal: %s", core_strerror(rc));
    return;
  }
  for (size_t i = 0; i < n && job->rc == 0; i++) {
    mark_group(job, dirs[i]);
    job->c.replayed++;
  }
  store_move_journal_done(fd, job->rc == 0);
  store_move_gc_mark_end(run->mark_fd);
  run->mark_fd = -1;
  for (size_t i = 0; i < n; i++)
    core_free(dirs[i]);
  core_free(dirs);
}

static void count_kept(struct gc_run *run, struct gc_counts *c, int bad, int64_t atime,
                       uint64_t size, const uint8_t digest[32])
{
  /* `recent` is only read here, after marking: no lock needed. */
  if (atime < run->oldest_writer && (bad || !gc_digest_set_has(&run->recent, digest))) {
    if (bad)
      c->still_bad++;
    else
      c->pending_chunks++;
    c->pending_bytes += size;
  } else {
    if (bad)
      c->still_bad++;
    else
      c->disk_chunks++;
    c->disk_bytes += size;
  }
}

static void run_sweep(struct gc_job *job)
{
  struct gc_run *run = job->run;
  struct gc_sweeper *sw = &run->sw[job->sweeper];
  int rc;
  if (!sw->open) {
    /* No stat here: store_chunk_iter_remove_if_older stats every file under
     * the insert lock anyway, which saves one stat per file. */
    rc = store_chunk_iter_open(&sw->it, run->cs, sw->first, sw->end, STORE_CHUNK_ITER_NO_STAT);
    if (rc < 0) {
      job->rc = rc;
      snprintf(job->msg, sizeof(job->msg), "cannot list %s/.chunks: %s", run->base,
               core_strerror(rc));
      return;
    }
    sw->open = 1;
  }
  struct store_chunk_entry e;
  for (unsigned n = 0; n < SWEEP_BUDGET; n++) {
    if ((n % ABORT_POLL) == ABORT_POLL - 1 && core_task_aborted(run->task)) {
      job->rc = CORE_EABORTED;
      snprintf(job->msg, sizeof(job->msg), "aborted");
      break;
    }
    unsigned prefix = store_chunk_iter_prefix(&sw->it);
    rc = store_chunk_iter_next(&sw->it, &e);
    if (rc == 0) {
      sw->done = 1;
      break;
    }
    if (rc < 0) {
      /* Not deleting in a directory we cannot read is always safe. */
      job->c.dir_errors++;
      core_task_warn(run->task, "cannot read chunk directory %s/.chunks/%04x: %s", run->base,
                     prefix, core_strerror(rc));
      continue;
    }
    job->c.swept++;
    if (e.kind == STORE_CHUNK_KIND_USING) {
      /* S3 "chunk expected" markers have no meaning on a local store. */
      store_chunk_iter_remove_if_older(&sw->it, run->cs, &e, INT64_MAX, NULL);
      continue;
    }
    int bad = e.kind == STORE_CHUNK_KIND_BAD;
    uint64_t size;
    if (!bad && gc_cache_kept_size(&run->cache, e.digest, &size)) {
      /* This run's mark touched it, or found its atime recent enough: the
       * stat under the lock could only say "keep" (atimes only grow, and a
       * copy that replaced it is newer still), so count it without either.
       * The size is the mark's; a copy replaced since may differ, which
       * only shifts the statistics. */
      job->c.known_kept++;
      job->c.disk_chunks++;
      job->c.disk_bytes += size;
      continue;
    }
    struct store_chunk_stat s;
    rc = store_chunk_iter_remove_if_older(&sw->it, run->cs, &e, run->min_atime, &s);
    if (rc == 1) {
      if (bad)
        job->c.removed_bad++;
      else
        job->c.removed_chunks++;
      job->c.removed_bytes += s.size;
    } else if (rc == 0) {
      count_kept(run, &job->c, bad, s.atime_sec, s.size, e.digest);
    } else if (rc != CORE_ENOTFOUND) {
      core_task_warn(run->task, "cannot remove chunk file %04x/%s: %s", e.prefix, e.name,
                     core_strerror(rc));
    }
  }
  sw->prefix = store_chunk_iter_prefix(&sw->it);
}

static void run_finish(struct gc_job *job)
{
  struct gc_run *run = job->run;
  for (int i = 0; i < run->n_sw; i++) {
    if (run->sw[i].open) {
      store_chunk_iter_close(&run->sw[i].it);
      run->sw[i].open = 0;
    }
  }
  if (job->kind == GC_FINISH) {
    struct gc_status *st = &run->status;
    const struct gc_counts *t = &run->total;
    memset(st, 0, sizeof(*st));
    snprintf(st->upid, sizeof(st->upid), "%s", run->task->upid);
    st->index_file_count = t->index_file_count;
    st->index_data_bytes = t->index_data_bytes;
    st->disk_bytes = t->disk_bytes;
    st->disk_chunks = t->disk_chunks;
    st->removed_bytes = t->removed_bytes;
    st->removed_chunks = t->removed_chunks;
    st->pending_bytes = t->pending_bytes;
    st->pending_chunks = t->pending_chunks;
    st->removed_bad = t->removed_bad;
    st->still_bad = t->still_bad;
    st->cache_hits = run->cache.hits;
    st->cache_misses = run->cache.misses;
    run->status_unsaved = gc_space_write_status(run->task, run->base, st);
  }
  if (run->begun) {
    store_chunkstore_gc_end(run->cs);
    run->begun = 0;
  }
}

static void job_run(struct core_job *j)
{
  struct gc_job *job = (struct gc_job *)j;
  switch (job->kind) {
  case GC_BEGIN: run_begin(job); break;
  case GC_SAFETY: run_safety(job); break;
  case GC_WALK: run_walk(job); break;
  case GC_MARK: run_mark(job); break;
  case GC_REPLAY: run_replay(job); break;
  case GC_SWEEP: run_sweep(job); break;
  case GC_FINISH:
  case GC_END: run_finish(job); break;
  case GC_WAIT: break;
  }
}

/* ---- loop side ---------------------------------------------------------- */

static void on_timer_closed(uv_handle_t *h)
{
  struct gc_run *run = h->data;
  struct gc_ctx *ctx = run->ctx;
  store_move_gc_mark_end(run->mark_fd); /* a run that failed before its replay */
  gc_index_list_free(&run->list);
  core_free(run->strays);
  gc_cache_free(&run->cache);
  gc_digest_set_free(&run->recent);
  pthread_mutex_destroy(&run->recent_mutex);
  core_free(run->store);
  core_free(run->base);
  core_free(run);
  gc__run_end(ctx);
}

static void add_counts(struct gc_counts *t, const struct gc_counts *c)
{
  t->index_file_count += c->index_file_count;
  t->index_data_bytes += c->index_data_bytes;
  t->touched += c->touched;
  t->recent += c->recent;
  t->items_done += c->items_done;
  t->relists += c->relists;
  t->replayed += c->replayed;
  t->disk_bytes += c->disk_bytes;
  t->disk_chunks += c->disk_chunks;
  t->removed_bytes += c->removed_bytes;
  t->removed_chunks += c->removed_chunks;
  t->pending_bytes += c->pending_bytes;
  t->pending_chunks += c->pending_chunks;
  t->removed_bad += c->removed_bad;
  t->still_bad += c->still_bad;
  t->swept += c->swept;
  t->dir_errors += c->dir_errors;
  t->known_kept += c->known_kept;
}

static void run_end(struct gc_run *run, int err, const char *msg)
{
  if (err == 0) {
    char b[64];
    const struct gc_counts *s = &run->total;
    core_fmt_bytes(s->removed_bytes, b, sizeof(b));
    core_task_log(run->task, "Removed garbage: %s", b);
    core_task_log(run->task, "Removed chunks: %" PRIu64, s->removed_chunks);
    if (s->removed_bad)
      core_task_log(run->task, "Removed bad chunks: %" PRIu64, s->removed_bad);
    if (s->still_bad)
      core_task_log(run->task, "Leftover bad chunks: %" PRIu64, s->still_bad);
    core_fmt_bytes(s->pending_bytes, b, sizeof(b));
    core_task_log(run->task, "Pending removals: %s (in %" PRIu64 " chunks)", b,
                  s->pending_chunks);
    core_fmt_bytes(s->index_data_bytes, b, sizeof(b));
    core_task_log(run->task, "Original data usage: %s", b);
    core_fmt_bytes(s->disk_bytes, b, sizeof(b));
    core_task_log(run->task, "On-Disk usage: %s", b);
    core_task_log(run->task, "On-Disk chunks: %" PRIu64, s->disk_chunks);
    if (s->disk_bytes)
      core_task_log(run->task, "Deduplication factor: %.2f",
                    (double)s->index_data_bytes / (double)s->disk_bytes);
    if (s->disk_chunks) {
      core_fmt_bytes(s->disk_bytes / s->disk_chunks, b, sizeof(b));
      core_task_log(run->task, "Average chunk size: %s", b);
    }
    if (s->known_kept)
      core_task_log(run->task, "%" PRIu64 " chunks kept as marked, without a stat", s->known_kept);
    uint64_t now = uv_hrtime();
    core_task_log(run->task, "Phase 1: %.3f s, phase 2: %.3f s, total %.3f s",
                  (double)(run->t_sweep - run->t_mark) / 1e9,
                  (double)(now - run->t_sweep) / 1e9, (double)(now - run->t_start) / 1e9);
    gc__status_remember(run->state, run->status_unsaved ? &run->status : NULL);
    run->state->removed_bytes += s->removed_bytes;
    run->state->removed_chunks += s->removed_chunks;
  }
  if (run->state->gc == run->task)
    run->state->gc = NULL;
  core_task_finish(run->task, err, msg);
  run->task = NULL;
  store_release(run->ds, STORE_OP_WRITE);
  run->ds = NULL;
  uv_close((uv_handle_t *)&run->timer, on_timer_closed);
}

static void job_done(struct core_job *j, int status);

static void submit(struct gc_run *run, enum gc_step kind, const struct mark_item *item,
                   int sweeper)
{
  struct gc_job *job = core_new(struct gc_job);
  job->run = run;
  job->kind = kind;
  if (item)
    job->item = *item;
  job->sweeper = sweeper;
  run->inflight++;
  gc__submit(run->ctx, &job->job, job_run, job_done);
}

/* Records the first error; no new jobs after it. */
static void set_error(struct gc_run *run, int rc, const char *msg)
{
  run->stopping = 1;
  if (run->rc == 0) {
    run->rc = rc;
    snprintf(run->msg, sizeof(run->msg), "%s", msg && msg[0] ? msg : core_strerror(rc));
  }
}

/* Ends with an error once no job is in flight: releases the GC lock and the
 * iterators in a job first if needed. */
static void fail(struct gc_run *run)
{
  if (run->inflight > 0)
    return; /* the last job's done callback comes back here */
  if (run->rc == 0)
    set_error(run, CORE_EABORTED, "aborted");
  int open = run->begun;
  for (int i = 0; i < run->n_sw; i++)
    open |= run->sw[i].open;
  if (open && run->step != GC_END) {
    run->step = GC_END;
    submit(run, GC_END, NULL, 0);
    return;
  }
  run_end(run, run->rc, run->msg);
}

static void on_wait(uv_timer_t *h)
{
  struct gc_run *run = h->data;
  if (core_task_aborted(run->task)) {
    fail(run);
    return;
  }
  run->step = GC_SAFETY;
  submit(run, GC_SAFETY, NULL, 0);
}

static void start_wait(struct gc_run *run)
{
  /* A file system with sub-second timestamps (nsec != 0) only needs the
   * kernel's coarse clock to tick; one with whole seconds needs the next
   * second. PBS always sleeps one second. */
  uint64_t ms;
  if (run->z1.nsec != 0) {
    ms = 20;
  } else {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    int64_t want = (run->z1.sec + 1) * 1000 + 5;
    ms = want > now_ms ? (uint64_t)(want - now_ms) : 5;
    if (ms > 1100)
      ms = 1100;
  }
  run->step = GC_WAIT;
  uv_timer_start(&run->timer, on_wait, ms, 0);
}

static void log_progress(struct gc_run *run, unsigned pct, const char *what, uint64_t done,
                         uint64_t total, const char *unit)
{
  if (pct <= run->last_pct || pct > 100)
    return;
  run->last_pct = pct;
  if (total)
    core_task_log(run->task, "%s %u%% (%" PRIu64 " of %" PRIu64 " %s)", what, pct, done, total,
                  unit);
  else
    core_task_log(run->task, "%s %u%% (%" PRIu64 " %s)", what, pct, done, unit);
}

/* Keeps up to `parallel` mark jobs busy; moves on when all are done. */
static void mark_dispatch(struct gc_run *run)
{
  while (!run->stopping && run->inflight < run->parallel) {
    struct mark_item item;
    if (run->next_group < run->list.n_groups) {
      item.group = 1;
      item.first = run->next_group++;
      item.end = item.first + 1;
    } else if (run->next_stray < run->n_strays) {
      item.group = 0;
      item.first = run->next_stray;
      item.end = item.first + MARK_FILES_PER_ITEM;
      if (item.end > run->n_strays)
        item.end = run->n_strays;
      run->next_stray = item.end;
    } else {
      break;
    }
    submit(run, GC_MARK, &item, 0);
  }
  if (run->inflight > 0)
    return;
  if (run->stopping) {
    fail(run);
    return;
  }
  advance(run); /* marking complete */
}

static void sweep_dispatch(struct gc_run *run)
{
  for (int i = 0; i < run->n_sw && !run->stopping; i++) {
    if (!run->sw[i].busy && !run->sw[i].done) {
      run->sw[i].busy = 1;
      submit(run, GC_SWEEP, NULL, i);
    }
  }
  if (run->inflight > 0)
    return;
  if (run->stopping) {
    fail(run);
    return;
  }
  advance(run); /* every sweeper is done */
}

static void job_done(struct core_job *j, int status)
{
  struct gc_job *job = (struct gc_job *)j;
  struct gc_run *run = job->run;
  run->inflight--;
  if (status < 0 && job->rc == 0) {
    job->rc = status;
    snprintf(job->msg, sizeof(job->msg), "job failed: %s", core_strerror(status));
  }
  add_counts(&run->total, &job->c);
  if (job->rc < 0)
    set_error(run, job->rc, job->msg);
  enum gc_step kind = job->kind;
  if (kind == GC_SWEEP)
    run->sw[job->sweeper].busy = 0;
  core_free(job);
  if (kind == GC_END) {
    run_end(run, run->rc ? run->rc : CORE_EABORTED, run->msg);
    return;
  }
  if (!run->stopping && core_task_aborted(run->task))
    set_error(run, CORE_EABORTED, "aborted");
  if (run->stopping) {
    fail(run);
    return;
  }
  switch (kind) {
  case GC_MARK:
    if (run->n_items)
      log_progress(run, (unsigned)(run->total.items_done * 100 / run->n_items), "marked",
                   run->total.index_file_count, run->list.n, "index files");
    core_task_set_progress(run->task, 0.5 * (double)run->total.items_done /
                                          (double)(run->n_items ? run->n_items : 1));
    mark_dispatch(run);
    return;
  case GC_SWEEP: {
    unsigned done = 0;
    int all = 1;
    for (int i = 0; i < run->n_sw; i++) {
      done += (run->sw[i].done ? run->sw[i].end : run->sw[i].prefix) - run->sw[i].first;
      all &= run->sw[i].done;
    }
    unsigned pct = done * 100 / STORE_CHUNK_PREFIXES;
    log_progress(run, all ? 100 : pct > 99 ? 99 : pct, "processed", run->total.swept, 0,
                 "chunks");
    core_task_set_progress(run->task, 0.5 + 0.5 * (double)done / STORE_CHUNK_PREFIXES);
    sweep_dispatch(run);
    return;
  }
  case GC_FINISH:
    run_end(run, 0, NULL);
    return;
  default:
    advance(run);
    return;
  }
}

static void start_walk(struct gc_run *run)
{
  core_task_log(run->task, "Start GC phase1 (mark used chunks)");
  run->t_mark = uv_hrtime();
  run->step = GC_WALK;
  submit(run, GC_WALK, NULL, 0);
}

/* Decides what follows the step that just ended (run->step). */
static void advance(struct gc_run *run)
{
  char t1[32], t2[64];
  switch (run->step) {
  case GC_BEGIN:
    if (run->safety && !run->check_none) {
      start_wait(run);
      return;
    }
    if (!run->safety)
      core_task_log(run->task, "atime safety check skipped (gc-atime-safety-check=false)");
    start_walk(run);
    return;
  case GC_SAFETY:
    if (run->z2.ino != run->z1.ino && !run->safety_retried) {
      /* Replaced meanwhile (a concurrent insert won): measure again, once. */
      run->safety_retried = 1;
      run->z1 = run->z2;
      start_wait(run);
      return;
    }
    if (run->z2.sec < run->z1.sec || (run->z2.sec == run->z1.sec && run->z2.nsec <= run->z1.nsec)) {
      set_error(run, CORE_ECONFIG,
                "atime safety check failed: touching a chunk did not update its access time. "
                "Is atime support enabled on the datastore's file system?");
      fail(run);
      return;
    }
    core_task_log(run->task, "Access time update check successful, proceeding with GC.");
    start_walk(run);
    return;
  case GC_WALK:
    human_duration(run->cutoff_s, t2, sizeof(t2));
    iso_time(run->min_atime, t1);
    core_task_log(run->task, "Using access time cutoff %s, minimum access time is %s", t2, t1);
    if (run->has_writer) {
      iso_time(run->oldest_writer, t1);
      core_task_log(run->task, "Oldest active backup writer started at %s", t1);
    }
    core_task_log(run->task, "found %zu index files in %zu snapshots", run->list.n,
                  run->list.n_snapshots);
    if (run->list.n_strange) {
      for (size_t i = 0, shown = 0; i < run->list.n && shown < 10; i++)
        if (run->list.strange[i]) {
          core_task_log(run->task, "index file outside the expected layout: %s",
                        run->list.paths[i]);
          shown++;
        }
      core_task_warn(run->task, "found (and marked) %zu index files outside of the expected "
                     "directory scheme", run->list.n_strange);
    }
    run->last_pct = 0;
    run->step = GC_MARK;
    run->strays = core_calloc(run->list.n_strange ? run->list.n_strange : 1, sizeof(size_t));
    for (size_t i = 0; i < run->list.n; i++)
      if (run->list.group[i] == GC_NO_GROUP)
        run->strays[run->n_strays++] = i;
    run->n_items = run->list.n_groups +
                   (run->n_strays + MARK_FILES_PER_ITEM - 1) / MARK_FILES_PER_ITEM;
    mark_dispatch(run);
    return;
  case GC_MARK:
    run->step = GC_REPLAY;
    submit(run, GC_REPLAY, NULL, 0);
    return;
  case GC_REPLAY: {
    if (run->total.replayed)
      core_task_log(run->task, "marked %" PRIu64 " groups again that moves put elsewhere "
                    "since the last GC", run->total.replayed);
    if (run->total.relists)
      core_task_log(run->task, "listed %" PRIu64 " groups again: snapshots were pruned while "
                    "they were marked", run->total.relists);
    uint64_t missing = atomic_load(&run->missing);
    if (missing > MISSING_WARN_MAX)
      core_task_warn(run->task, "%" PRIu64 " referenced chunks are missing in total", missing);
    core_task_log(run->task, "marked %" PRIu64 " chunks: %" PRIu64 " touched, %" PRIu64
                  " recent enough already; %" PRIu64 " cache hits",
                  run->total.touched + run->total.recent, run->total.touched, run->total.recent,
                  run->cache.hits);
    core_task_log(run->task, "Start GC phase2 (sweep unused chunks)");
    run->t_sweep = uv_hrtime();
    run->last_pct = 0;
    run->step = GC_SWEEP;
    run->n_sw = run->parallel;
    for (int i = 0; i < run->n_sw; i++) {
      run->sw[i].first = (unsigned)(STORE_CHUNK_PREFIXES * (uint64_t)i / (unsigned)run->n_sw);
      run->sw[i].end = (unsigned)(STORE_CHUNK_PREFIXES * (uint64_t)(i + 1) / (unsigned)run->n_sw);
      run->sw[i].prefix = run->sw[i].first;
    }
    sweep_dispatch(run);
    return;
  }
  case GC_SWEEP:
    run->step = GC_FINISH;
    submit(run, GC_FINISH, NULL, 0);
    return;
  default:
    return;
  }
}

static void on_abort(struct core_task *t, void *arg)
{
  struct gc_run *run = arg;
  /* Jobs in flight notice the flag themselves; only the wait needs a nudge. */
  if (run->step == GC_WAIT && uv_is_active((uv_handle_t *)&run->timer)) {
    uv_timer_stop(&run->timer);
    set_error(run, CORE_EABORTED, "aborted");
    fail(run);
  }
}

/* tuning gc-cache-capacity of the datastore (PBS: 0..8 Mi digests, 0 disables
 * the cache), or the context's default. The registry accepts the key and
 * leaves its meaning to us. Loop thread: reads the parsed config. */
static size_t cache_capacity(struct gc_ctx *ctx, const char *store)
{
  size_t cap = ctx->cache_capacity;
  const struct core_config_section *sec = core_config_find(&ctx->reg->cfg, "datastore", store);
  const char *tuning = sec ? core_config_get(sec, "tuning") : NULL;
  struct core_config_props p;
  core_config_props_init(&p);
  if (tuning && core_config_props_parse(&p, tuning, NULL) == 0) {
    const char *v = core_config_props_get(&p, "gc-cache-capacity");
    char *end;
    errno = 0;
    unsigned long long n = v ? strtoull(v, &end, 10) : 0;
    if (v && *v && !*end && !errno && v[0] != '-')
      cap = n > GC_CACHE_MAX_CAPACITY ? GC_CACHE_MAX_CAPACITY : (size_t)n;
  }
  core_config_props_free(&p);
  return cap;
}

static void gc_ready(struct gc_start *s, struct store_datastore *ds)
{
  struct gc_ctx *ctx = s->ctx;
  char msg[CORE_TASK_UPID_MAX + 128];
  struct gc_store_state *state = gc__store_state(ctx, s->store);
  if (state->gc) {
    snprintf(msg, sizeof(msg), "garbage collection already running on datastore '%s' (%s)",
             s->store, state->gc->upid);
    store_release(ds, STORE_OP_WRITE);
    s->cb(s->arg, CORE_ELOCKED, msg, NULL);
    return;
  }
  struct core_task *task = core_task_start(ctx->tasks, GC_TASK_GC, s->store, s->authid, s->store);
  if (task == NULL) {
    store_release(ds, STORE_OP_WRITE);
    s->cb(s->arg, CORE_EINVAL, "authid too long for a UPID", NULL);
    return;
  }
  if (store_datastore_is_s3(ds)) {
    /* gc_s3.c takes over the task and the datastore reference. */
    s->cb(s->arg, 0, NULL, task);
    gc_s3_run(ctx, state, task, ds);
    return;
  }
  struct gc_run *run = core_new(struct gc_run);
  run->ctx = ctx;
  run->state = state;
  run->task = task;
  run->ds = ds;
  run->store = core_strdup(s->store);
  run->base = core_strdup(ds->path);
  run->mark_fd = -1;
  run->cutoff_s = ctx->cutoff_override_s >= 0 ? ctx->cutoff_override_s
                  : ds->gc_atime_cutoff_s >= 0 ? ds->gc_atime_cutoff_s : 86700;
  run->grace_s = ctx->writer_grace_s;
  run->safety = ds->gc_atime_safety_check;
  run->parallel = ctx->workers.n < 1 ? 1 : ctx->workers.n > MAX_PARALLEL ? MAX_PARALLEL
                                                                          : ctx->workers.n;
  gc_cache_init(&run->cache, cache_capacity(ctx, s->store));
  pthread_mutex_init(&run->recent_mutex, NULL);
  gc_digest_set_init(&run->recent, RECENT_MAX);
  uv_timer_init(ctx->loop, &run->timer);
  run->timer.data = run;
  run->t_start = run->t_mark = run->t_sweep = uv_hrtime();
  state->gc = task;
  task->on_abort = on_abort;
  task->on_abort_arg = run;
  gc__run_begin(ctx);
  core_task_log(task, "starting garbage collection on store %s", s->store);
  s->cb(s->arg, 0, NULL, task);
  run->step = GC_BEGIN;
  submit(run, GC_BEGIN, NULL, 0);
}

void gc_start_gc(struct gc_ctx *ctx, const char *store, const char *authid, gc_start_cb cb,
                 void *arg)
{
  gc__start(ctx, store, authid, STORE_OP_WRITE, NULL, 0, gc_ready, cb, arg);
}
