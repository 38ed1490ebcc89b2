/* gc_local.c: garbage collection of a local datastore.
 *
 * The engine is a state machine on the loop thread; every step that touches
 * the file system is one pool job, and only one job of a run is in flight at
 * a time, so the run's work fields below "job-owned" pass between the loop
 * and one pool thread with the happens-before edges of uv_queue_work, and
 * need no lock. Steps:
 *
 *   BEGIN     open the chunk store, take the GC lock (store_chunkstore_gc_begin:
 *             one GC per datastore, and none while another process writes),
 *             insert the zero chunk and stat it (atime safety check, part 1)
 *   WAIT      a loop timer until the clock has moved past that atime
 *   SAFETY    touch and stat the zero chunk again: the atime must have grown
 *   WALK      fix the cutoff, then list every index file (gc_walk.h)
 *   MARK      touch every referenced chunk once, 64 Ki digests per job
 *   SWEEP     remove chunks older than the cutoff, 16 Ki entries per job
 *   FINISH    write .gc-status, release the GC lock
 *   END       (on error or abort) release the GC lock
 *
 * Cutoff: min_atime = min(phase-1 start - cutoff, oldest writer start - 300 s).
 * The oldest writer is read once, before the walk; a backup that registers
 * later started after phase 1 did, so every chunk it uploads or touches has
 * a newer atime, and a chunk it only references from its previous snapshot
 * is marked through that snapshot, which its shared lock keeps from being
 * pruned until the backup ends.
 */
#include "gc/gc_api.h"
#include "gc/gc_cache.h"
#include "gc/gc_s3.h"
#include "gc/gc_status.h"
#include "gc/gc_walk.h"

#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "store/store_backend.h"
#include "store/store_blob.h"
#include "store/store_chunk.h"
#include "store/store_index.h"
#include "store/store_path.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
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

#define MARK_BUDGET 65536u        /* digests per mark job */
#define MARK_FILES_BUDGET 256u    /* index files per mark job */
#define SWEEP_BUDGET 16384u       /* chunk files per sweep job */
#define ABORT_POLL 4096u          /* items between abort checks inside a job */
#define MISSING_WARN_MAX 100u     /* missing-chunk warnings logged per run */

enum gc_step {
  GC_BEGIN,
  GC_WAIT,
  GC_SAFETY,
  GC_WALK,
  GC_MARK,
  GC_SWEEP,
  GC_FINISH,
  GC_END,
};

struct zstat {
  ino_t ino;
  int64_t sec;
  long nsec;
};

struct gc_run {
  struct core_job job;          /* the job in flight; its kind is `step` */
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
  enum gc_step step;
  uint64_t t_start, t_mark, t_sweep; /* uv_hrtime() at phase starts */
  unsigned last_pct;
  /* Job-owned while a job is in flight. */
  struct store_chunkstore *cs;
  int begun;                    /* store_chunkstore_gc_begin succeeded */
  int rc;                       /* error of the last job */
  char msg[600];                /* its message */
  struct zstat z1, z2;
  int safety_retried;
  int64_t phase1_start, oldest_writer, min_atime;
  int has_writer;
  struct gc_index_list list;
  size_t cur_file;              /* mark cursor: file and entry */
  uint64_t cur_entry;
  uint64_t missing;             /* referenced chunks that do not exist */
  uint64_t touched;
  struct gc_cache cache;
  struct gc_status st;
  struct store_chunk_iter it;
  int it_open;
  int sweep_done;
  unsigned sweep_prefix;
  uint64_t swept;               /* chunk files looked at */
  uint64_t dir_errors;
};

static void advance(struct gc_run *run);

void gc__human_bytes(uint64_t v, char *out, size_t len)
{
  static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double d = (double)v;
  unsigned u = 0;
  while (d >= 1024 && u < 5) {
    d /= 1024;
    u++;
  }
  if (u == 0)
    snprintf(out, len, "%" PRIu64 " B", v);
  else
    snprintf(out, len, "%.2f %s", d, units[u]);
}

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

static int zero_rel(char rel[STORE_CHUNK_REL_LEN + 1], uint8_t digest[32])
{
  if (core_hex_decode(zero_chunk_hex, 32, digest) < 0)
    return CORE_EINVAL;
  store_path_chunk_rel(rel, digest);
  return 0;
}

static int zstat_get(struct gc_run *run, struct zstat *z)
{
  char rel[STORE_CHUNK_REL_LEN + 1];
  uint8_t d[32];
  struct stat st;
  zero_rel(rel, d);
  if (fstatat(run->cs->chunks_fd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return -errno;
  z->ino = st.st_ino;
  z->sec = st.st_atim.tv_sec;
  z->nsec = st.st_atim.tv_nsec;
  return 0;
}

static void run_begin(struct gc_run *run)
{
  int rc = store_datastore_chunks(run->ds, &run->cs);
  if (rc < 0) {
    run->rc = rc;
    snprintf(run->msg, sizeof(run->msg), "cannot open the chunk store: %s", core_strerror(rc));
    return;
  }
  rc = store_chunkstore_gc_begin(run->cs);
  if (rc < 0) {
    run->rc = rc;
    snprintf(run->msg, sizeof(run->msg), "%s",
             rc == CORE_ELOCKED ? "Start GC failed - (already running/locked): another "
                                  "garbage collection or another process holds the datastore lock"
                                : core_strerror(rc));
    return;
  }
  run->begun = 1;
  if (!run->safety)
    return;
  /* Part 1 of the atime safety check: the zero chunk exists and has an atime. */
  uint8_t digest[32], *zeros = NULL, *blob = NULL;
  char rel[STORE_CHUNK_REL_LEN + 1];
  size_t blen = 0;
  zero_rel(rel, digest);
  zeros = core_calloc(1, ZERO_CHUNK_SIZE);
  rc = store_blob_encode_alloc(NULL, zeros, ZERO_CHUNK_SIZE, STORE_BLOB_COMPRESS, NULL, &blob,
                               &blen);
  core_free(zeros);
  if (rc >= 0) {
    struct store_chunk_insert_result res;
    rc = store_chunk_insert(run->cs, digest, blob, blen, &res);
  }
  core_free(blob);
  if (rc >= 0)
    rc = zstat_get(run, &run->z1);
  if (rc < 0) {
    run->rc = rc;
    snprintf(run->msg, sizeof(run->msg), "atime safety check: cannot insert the zero chunk: %s",
             core_strerror(rc));
  }
}

static void run_safety(struct gc_run *run)
{
  uint8_t d[32];
  char rel[STORE_CHUNK_REL_LEN + 1];
  zero_rel(rel, d);
  int rc = store_chunk_touch(run->cs, d);
  if (rc >= 0)
    rc = zstat_get(run, &run->z2);
  if (rc < 0) {
    run->rc = rc;
    snprintf(run->msg, sizeof(run->msg), "atime safety check: cannot touch the zero chunk: %s",
             core_strerror(rc));
  }
}

static void run_walk(struct gc_run *run)
{
  run->phase1_start = (int64_t)time(NULL);
  int64_t w = 0;
  run->has_writer = store_chunkstore_oldest_writer(run->cs, &w);
  run->oldest_writer = run->has_writer ? w : run->phase1_start;
  run->min_atime = run->phase1_start - run->cutoff_s;
  if (run->has_writer && w - run->grace_s < run->min_atime)
    run->min_atime = w - run->grace_s;
  int rc = gc_walk_indexes(run->base, &run->list, &run->task->abort_requested, run->msg,
                           sizeof(run->msg));
  if (rc < 0)
    run->rc = rc;
}

/* Opens and maps an index file. 0, 1 if it vanished, or an error (msg set). */
static int map_index(struct gc_run *run, const char *path, void **map, size_t *len,
                     struct store_index *idx)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT)
      return 1; /* its snapshot was removed meanwhile */
    int rc = -errno;
    snprintf(run->msg, sizeof(run->msg), "cannot open index %s: %s", path, strerror(errno));
    return rc;
  }
  struct stat st;
  int rc = 0;
  if (fstat(fd, &st) < 0) {
    rc = -errno;
    snprintf(run->msg, sizeof(run->msg), "cannot stat index %s: %s", path, strerror(errno));
    goto out;
  }
  if (st.st_size < STORE_INDEX_HDR_LEN) {
    rc = CORE_EFORMAT;
    snprintf(run->msg, sizeof(run->msg),
             "index %s is corrupt (%lld bytes, shorter than its header); refusing to "
             "sweep on an incomplete mark", path, (long long)st.st_size);
    goto out;
  }
  *len = (size_t)st.st_size;
  *map = mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0);
  if (*map == MAP_FAILED) {
    rc = -errno;
    *map = NULL;
    snprintf(run->msg, sizeof(run->msg), "cannot map index %s: %s", path, strerror(errno));
    goto out;
  }
  rc = store_index_parse(*map, *len, STORE_INDEX_SKIP_CSUM, idx);
  if (rc < 0) {
    snprintf(run->msg, sizeof(run->msg),
             "index %s is corrupt (%s); refusing to sweep on an incomplete mark", path,
             core_strerror(rc));
    munmap(*map, *len);
    *map = NULL;
  }
out:
  close(fd);
  return rc;
}

static void run_mark(struct gc_run *run)
{
  unsigned budget = MARK_BUDGET, files = 0;
  while (run->cur_file < run->list.n && budget > 0 && files < MARK_FILES_BUDGET) {
    const char *path = run->list.paths[run->cur_file];
    void *map = NULL;
    size_t len = 0;
    struct store_index idx;
    int rc = map_index(run, path, &map, &len, &idx);
    if (rc < 0) {
      run->rc = rc;
      return;
    }
    files++;
    if (rc == 1) {
      run->cur_file++;
      run->cur_entry = 0;
      continue;
    }
    if (run->cur_entry == 0) {
      run->st.index_file_count++;
      run->st.index_data_bytes += idx.size;
    }
    uint64_t e = run->cur_entry;
    for (; e < idx.count && budget > 0; e++, budget--) {
      if ((budget % ABORT_POLL) == 0 && core_task_aborted(run->task)) {
        rc = CORE_EABORTED;
        snprintf(run->msg, sizeof(run->msg), "aborted");
        break;
      }
      const uint8_t *d = store_index_digest(&idx, e);
      if (gc_cache_test_and_add(&run->cache, d))
        continue;
      run->touched++;
      rc = store_chunk_touch(run->cs, d);
      if (rc == CORE_ENOTFOUND) {
        /* Keep its .bad copies too, as PBS does: they are evidence. */
        rc = store_chunk_touch_bad(run->cs, d);
        if (rc == 0) {
          char hex[65];
          core_hex_encode(d, 32, hex);
          if (++run->missing <= MISSING_WARN_MAX)
            core_task_warn(run->task, "missing chunk %s (referenced by %s)", hex, path);
        }
      }
      if (rc < 0) {
        char hex[65];
        core_hex_encode(d, 32, hex);
        snprintf(run->msg, sizeof(run->msg), "cannot mark chunk %s (referenced by %s): %s", hex,
                 path, core_strerror(rc));
        break;
      }
      rc = 0;
    }
    munmap(map, len);
    if (rc < 0) {
      run->rc = rc;
      return;
    }
    if (e >= idx.count) {
      run->cur_file++;
      run->cur_entry = 0;
    } else {
      run->cur_entry = e;
    }
  }
}

static void count_kept(struct gc_run *run, int bad, int64_t atime, uint64_t size)
{
  if (atime < run->oldest_writer) {
    if (bad)
      run->st.still_bad++;
    else
      run->st.pending_chunks++;
    run->st.pending_bytes += size;
  } else {
    if (bad)
      run->st.still_bad++;
    else
      run->st.disk_chunks++;
    run->st.disk_bytes += size;
  }
}

static void run_sweep(struct gc_run *run)
{
  int rc;
  if (!run->it_open) {
    rc = store_chunk_iter_open(&run->it, run->cs, 0, STORE_CHUNK_PREFIXES, 0);
    if (rc < 0) {
      run->rc = rc;
      snprintf(run->msg, sizeof(run->msg), "cannot list %s/.chunks: %s", run->base,
               core_strerror(rc));
      return;
    }
    run->it_open = 1;
  }
  struct store_chunk_entry e;
  for (unsigned n = 0; n < SWEEP_BUDGET; n++) {
    if ((n % ABORT_POLL) == ABORT_POLL - 1 && core_task_aborted(run->task)) {
      run->rc = CORE_EABORTED;
      snprintf(run->msg, sizeof(run->msg), "aborted");
      return;
    }
    unsigned prefix = store_chunk_iter_prefix(&run->it);
    rc = store_chunk_iter_next(&run->it, &e);
    if (rc == 0) {
      run->sweep_done = 1;
      break;
    }
    if (rc < 0) {
      /* Not deleting in a directory we cannot read is always safe. */
      run->dir_errors++;
      core_task_warn(run->task, "cannot read chunk directory %s/.chunks/%04x: %s", run->base,
                     prefix, core_strerror(rc));
      continue;
    }
    run->swept++;
    if (e.kind == STORE_CHUNK_KIND_USING) {
      /* S3 "chunk expected" markers have no meaning on a local store. */
      store_chunk_remove_if_older(run->cs, e.prefix, e.name, INT64_MAX, NULL);
      continue;
    }
    int bad = e.kind == STORE_CHUNK_KIND_BAD;
    int64_t atime = e.atime_sec;
    uint64_t size = e.size;
    if (atime < run->min_atime) {
      struct store_chunk_stat s;
      rc = store_chunk_remove_if_older(run->cs, e.prefix, e.name, run->min_atime, &s);
      if (rc == 1) {
        if (bad)
          run->st.removed_bad++;
        else
          run->st.removed_chunks++;
        run->st.removed_bytes += s.size;
        continue;
      }
      if (rc == CORE_ENOTFOUND)
        continue;
      if (rc < 0) {
        core_task_warn(run->task, "cannot remove chunk file %04x/%s: %s", e.prefix, e.name,
                       core_strerror(rc));
      } else {
        atime = s.atime_sec; /* touched since the iterator's stat: keep */
        size = s.size;
      }
    }
    count_kept(run, bad, atime, size);
  }
  run->sweep_prefix = store_chunk_iter_prefix(&run->it);
}

static void run_finish(struct gc_run *run)
{
  if (run->it_open) {
    store_chunk_iter_close(&run->it);
    run->it_open = 0;
  }
  if (run->step == GC_FINISH) {
    run->st.cache_hits = run->cache.hits;
    run->st.cache_misses = run->cache.misses;
    snprintf(run->st.upid, sizeof(run->st.upid), "%s", run->task->upid);
    int rc = gc_status_write(run->base, &run->st);
    if (rc < 0) {
      run->rc = rc;
      snprintf(run->msg, sizeof(run->msg), "cannot write %s/.gc-status: %s", run->base,
               core_strerror(rc));
    }
  }
  if (run->begun) {
    store_chunkstore_gc_end(run->cs);
    run->begun = 0;
  }
}

static void job_run(struct core_job *j)
{
  struct gc_run *run = (struct gc_run *)j;
  switch (run->step) {
  case GC_BEGIN: run_begin(run); break;
  case GC_SAFETY: run_safety(run); break;
  case GC_WALK: run_walk(run); break;
  case GC_MARK: run_mark(run); break;
  case GC_SWEEP: run_sweep(run); break;
  case GC_FINISH:
  case GC_END: run_finish(run); break;
  case GC_WAIT: break;
  }
}

/* ---- loop side ---------------------------------------------------------- */

static void on_timer_closed(uv_handle_t *h)
{
  struct gc_run *run = h->data;
  struct gc_ctx *ctx = run->ctx;
  gc_index_list_free(&run->list);
  gc_cache_free(&run->cache);
  core_free(run->store);
  core_free(run->base);
  core_free(run);
  gc__run_end(ctx);
}

static void run_end(struct gc_run *run, int err, const char *msg)
{
  if (err == 0) {
    char b[64];
    const struct gc_status *s = &run->st;
    gc__human_bytes(s->removed_bytes, b, sizeof(b));
    core_task_log(run->task, "Removed garbage: %s", b);
    core_task_log(run->task, "Removed chunks: %" PRIu64, s->removed_chunks);
    if (s->removed_bad)
      core_task_log(run->task, "Removed bad chunks: %" PRIu64, s->removed_bad);
    if (s->still_bad)
      core_task_log(run->task, "Leftover bad chunks: %" PRIu64, s->still_bad);
    gc__human_bytes(s->pending_bytes, b, sizeof(b));
    core_task_log(run->task, "Pending removals: %s (in %" PRIu64 " chunks)", b,
                  s->pending_chunks);
    gc__human_bytes(s->index_data_bytes, b, sizeof(b));
    core_task_log(run->task, "Original data usage: %s", b);
    gc__human_bytes(s->disk_bytes, b, sizeof(b));
    core_task_log(run->task, "On-Disk usage: %s", b);
    core_task_log(run->task, "On-Disk chunks: %" PRIu64, s->disk_chunks);
    if (s->disk_bytes)
      core_task_log(run->task, "Deduplication factor: %.2f",
                    (double)s->index_data_bytes / (double)s->disk_bytes);
    if (s->disk_chunks) {
      gc__human_bytes(s->disk_bytes / s->disk_chunks, b, sizeof(b));
      core_task_log(run->task, "Average chunk size: %s", b);
    }
    uint64_t now = uv_hrtime();
    core_task_log(run->task, "Phase 1: %.3f s, phase 2: %.3f s, total %.3f s",
                  (double)(run->t_sweep - run->t_mark) / 1e9,
                  (double)(now - run->t_sweep) / 1e9, (double)(now - run->t_start) / 1e9);
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

static void submit(struct gc_run *run, enum gc_step s)
{
  run->step = s;
  int rc = core_job_submit(run->ctx->loop, &run->job, job_run, job_done);
  if (rc < 0)
    job_done(&run->job, rc);
}

/* Ends with an error: release the GC lock in a job first if we hold it. */
static void fail(struct gc_run *run)
{
  if (run->rc == 0)
    run->rc = CORE_EABORTED;
  if (run->msg[0] == '\0')
    snprintf(run->msg, sizeof(run->msg), "%s", core_strerror(run->rc));
  if (run->begun || run->it_open) {
    submit(run, GC_END);
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
  submit(run, GC_SAFETY);
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

static void job_done(struct core_job *j, int status)
{
  struct gc_run *run = (struct gc_run *)j;
  if (status < 0 && run->rc == 0) {
    run->rc = status;
    snprintf(run->msg, sizeof(run->msg), "job failed: %s", core_strerror(status));
  }
  if (run->step == GC_END) {
    run_end(run, run->rc ? run->rc : CORE_EABORTED, run->msg);
    return;
  }
  if (run->rc < 0) {
    fail(run);
    return;
  }
  if (run->step == GC_FINISH) {
    run_end(run, 0, NULL);
    return;
  }
  if (core_task_aborted(run->task)) {
    fail(run);
    return;
  }
  advance(run);
}

/* Decides what follows the job that just ended (run->step). */
static void advance(struct gc_run *run)
{
  char t1[32], t2[64];
  switch (run->step) {
  case GC_BEGIN:
    if (run->safety) {
      start_wait(run);
      return;
    }
    core_task_log(run->task, "atime safety check skipped (gc-atime-safety-check=false)");
    core_task_log(run->task, "Start GC phase1 (mark used chunks)");
    run->t_mark = uv_hrtime();
    submit(run, GC_WALK);
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
      run->rc = CORE_ECONFIG;
      snprintf(run->msg, sizeof(run->msg),
               "atime safety check failed: touching a chunk did not update its access time. "
               "Is atime support enabled on the datastore's file system?");
      fail(run);
      return;
    }
    core_task_log(run->task, "Access time update check successful, proceeding with GC.");
    core_task_log(run->task, "Start GC phase1 (mark used chunks)");
    run->t_mark = uv_hrtime();
    submit(run, GC_WALK);
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
    if (run->list.n == 0) {
      run->step = GC_MARK;
      advance(run);
      return;
    }
    submit(run, GC_MARK);
    return;
  case GC_MARK:
    if (run->list.n)
      log_progress(run, (unsigned)(run->cur_file * 100 / run->list.n), "marked", run->cur_file,
                   run->list.n, "index files");
    core_task_set_progress(run->task, 0.5 * (double)run->cur_file /
                                          (double)(run->list.n ? run->list.n : 1));
    if (run->cur_file < run->list.n) {
      submit(run, GC_MARK);
      return;
    }
    if (run->missing > MISSING_WARN_MAX)
      core_task_warn(run->task, "%" PRIu64 " referenced chunks are missing in total",
                     run->missing);
    core_task_log(run->task, "marked %" PRIu64 " chunks (%" PRIu64 " cache hits)", run->touched,
                  run->cache.hits);
    core_task_log(run->task, "Start GC phase2 (sweep unused chunks)");
    run->t_sweep = uv_hrtime();
    run->last_pct = 0;
    submit(run, GC_SWEEP);
    return;
  case GC_SWEEP:
    log_progress(run, run->sweep_done ? 100 : run->sweep_prefix * 100 / STORE_CHUNK_PREFIXES,
                 "processed", run->swept, 0, "chunks");
    core_task_set_progress(run->task,
                           0.5 + 0.5 * (double)run->sweep_prefix / STORE_CHUNK_PREFIXES);
    if (!run->sweep_done) {
      submit(run, GC_SWEEP);
      return;
    }
    submit(run, GC_FINISH);
    return;
  default:
    return;
  }
}

static void on_abort(struct core_task *t, void *arg)
{
  struct gc_run *run = arg;
  /* A job in flight notices the flag itself; only the wait needs a nudge. */
  if (run->step == GC_WAIT && uv_is_active((uv_handle_t *)&run->timer)) {
    uv_timer_stop(&run->timer);
    run->rc = CORE_EABORTED;
    snprintf(run->msg, sizeof(run->msg), "aborted");
    fail(run);
  }
}

struct gc_starting {
  struct gc_ctx *ctx;
  char *store;
  char *authid;
  gc_start_cb cb;
  void *arg;
};

static void on_lookup(void *arg, int err, struct store_datastore *ds)
{
  struct gc_starting *s = arg;
  struct gc_ctx *ctx = s->ctx;
  char msg[CORE_TASK_UPID_MAX + 128];
  if (err < 0) {
    s->cb(s->arg, err, NULL, NULL);
    goto out;
  }
  struct gc_store_state *state = gc__store_state(ctx, s->store);
  if (state->gc) {
    snprintf(msg, sizeof(msg), "garbage collection already running on datastore '%s' (%s)",
             s->store, state->gc->upid);
    store_release(ds, STORE_OP_WRITE);
    s->cb(s->arg, CORE_ELOCKED, msg, NULL);
    goto out;
  }
  struct core_task *task = core_task_start(ctx->tasks, GC_TASK_GC, s->store, s->authid, s->store);
  if (task == NULL) {
    store_release(ds, STORE_OP_WRITE);
    s->cb(s->arg, CORE_EINVAL, "authid too long for a UPID", NULL);
    goto out;
  }
  if (store_backend_is_s3(ds)) {
    /* gc_s3.c takes over the task and the datastore reference. */
    s->cb(s->arg, 0, NULL, task);
    gc_s3_run(ctx, state, task, ds);
    goto out;
  }
  struct gc_run *run = core_new(struct gc_run);
  run->ctx = ctx;
  run->state = state;
  run->task = task;
  run->ds = ds;
  run->store = core_strdup(s->store);
  run->base = core_strdup(ds->path);
  run->cutoff_s = ctx->cutoff_override_s >= 0 ? ctx->cutoff_override_s
                  : ds->gc_atime_cutoff_s >= 0 ? ds->gc_atime_cutoff_s : 86700;
  run->grace_s = ctx->writer_grace_s;
  run->safety = ds->gc_atime_safety_check;
  gc_cache_init(&run->cache, ctx->cache_capacity);
  uv_timer_init(ctx->loop, &run->timer);
  run->timer.data = run;
  run->t_start = run->t_mark = run->t_sweep = uv_hrtime();
  state->gc = task;
  task->on_abort = on_abort;
  task->on_abort_arg = run;
  gc__run_begin(ctx);
  core_task_log(task, "starting garbage collection on store %s", s->store);
  s->cb(s->arg, 0, NULL, task);
  submit(run, GC_BEGIN);
out:
  gc__run_end(ctx);
  core_free(s->store);
  core_free(s->authid);
  core_free(s);
}

void gc_start_gc(struct gc_ctx *ctx, const char *store, const char *authid, gc_start_cb cb,
                 void *arg)
{
  if (ctx->closing) {
    cb(arg, CORE_EABORTED, "server is shutting down", NULL);
    return;
  }
  struct gc_starting *s = core_new(struct gc_starting);
  s->ctx = ctx;
  s->store = core_strdup(store);
  s->authid = core_strdup(authid ? authid : "root@pam");
  s->cb = cb;
  s->arg = arg;
  gc__run_begin(ctx); /* the lookup may wait for a reload */
  store_lookup(ctx->reg, store, STORE_OP_WRITE, on_lookup, s);
}
