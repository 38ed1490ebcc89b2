/* gc_s3.c: garbage collection of an S3 datastore; see gc_s3.h. */
#include "gc/gc_s3.h"

#include "gc/gc_cache.h"
#include "gc/gc_space.h"
#include "gc/gc_status.h"
#include "gc/gc_walk.h"
#include "store/store_move.h"
#include "store/store_lock.h"
#include "core/core_testpoint.h"

#include "core/core_alloc.h"
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

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char zero_chunk_hex[] =
    "bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8";
#define ZERO_CHUNK_SIZE (4u * 1024 * 1024)

#define MARK_BUDGET 65536u
#define MARK_FILES_BUDGET 256u
#define SWEEP_BUDGET 16384u
#define ABORT_POLL 4096u
#define MISSING_WARN_MAX 100u
#define DELETE_BATCH 1000u           /* DeleteObjects' maximum */
#define PREFIX_DIR_MODE 0750

enum step {
  S_BEGIN,     /* pool */
  S_HEAD,      /* loop: HeadBucket */
  S_ZERO,      /* loop: zero chunk upload */
  S_ZSTAT,     /* pool */
  S_WAIT,      /* loop timer */
  S_SAFETY,    /* pool */
  S_WALK,      /* pool */
  S_MARK,      /* pool */
  S_REPLAY,    /* pool: the groups moves put elsewhere meanwhile (store_move.h) */
  S_DECIDE,    /* pool: one listed page (phase 2 overlaps lists, jobs and deletes) */
  S_SWEEP,     /* pool */
  S_FINISH,    /* pool */
  S_END,       /* pool: unlock after an error */
};

struct zstat {
  ino_t ino;
  int64_t sec;
  long nsec;
};

struct pending {
  char *key;                    /* owned */
  uint8_t digest[32];
  int claimed;                  /* holds the delete claim */
};

struct run {
  struct core_job job;
  uv_timer_t timer;
  struct gc_ctx *ctx;
  struct gc_store_state *state;
  struct core_task *task;
  struct store_datastore *ds;   /* reference + STORE_OP_WRITE operation */
  struct store_backend *be;
  char *base;                   /* owned */
  char *prefix;                 /* owned: "<store>/.chunks/" */
  int64_t cutoff_s, grace_s;
  size_t replayed_groups;       /* S_REPLAY: groups named in the move journal */
  int mark_fd;                  /* gc-marking lock, S_WALK .. S_REPLAY, or -1 */
  int safety;
  enum step step;
  uint64_t t_start, t_mark, t_list, t_sweep;
  unsigned last_pct;
  /* job-owned while a job is in flight */
  struct store_chunkstore *cs;
  int begun;
  int rc;
  char msg[600];
  uint8_t zdigest[32];          /* the chunk the atime check measures */
  uint8_t *zblob;
  size_t zlen;
  int zero_full;                /* the zero chunk found no room locally: its error */
  int check_none;               /* ... and no local file to check instead */
  int status_unsaved;           /* FINISH: .gc-status could not be written */
  struct zstat z1, z2;
  int safety_retried;
  int64_t phase1_start, oldest_writer, min_atime;
  int has_writer;
  struct gc_index_list list;
  size_t cur_file;
  uint64_t cur_entry;
  uint64_t touched, using_made, bad_touched;
  struct gc_cache cache;
  struct gc_status st;
  /* phase 2 */
  struct s3_list_result page;   /* owned: the page being decided (by the job) */
  struct s3_list_result next_page; /* owned: listed, waiting for the job */
  int page_ready;               /* next_page holds a page */
  char *token;                  /* owned: next continuation token */
  int more;                     /* another page follows */
  int list_inflight, decide_inflight, del_inflight;
  int del_finished;             /* a DeleteObjects returned; not yet settled */
  size_t del_failed_n;          /* its keys the server refused */
  struct pending *batch;        /* owned: keys decided for deletion */
  size_t nbatch, cap_batch;
  size_t nsending;              /* the first nsending entries are being deleted */
  const char **keys;            /* owned array for DeleteObjects */
  uint64_t listed, listed_bytes, kept_inflight, using_converted, foreign;
  uint64_t deleted, delete_failed;
  uint64_t list_requests, delete_requests;
  struct s3_stats s3_before;
  /* phase 3 */
  struct store_chunk_iter it;
  int it_open;
  int sweep_done;
  unsigned sweep_prefix;
  uint64_t swept, markers_removed, using_left;
};

static void advance(struct run *r);
static void submit(struct run *r, enum step s);
static void p2_pump(struct run *r);

static void iso_time(int64_t t, char out[32])
{
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- pool work -------------------------------------------------------- */

static int zstat_get(struct run *r, struct zstat *z)
{
  char rel[STORE_CHUNK_REL_LEN + 1];
  struct stat st;
  store_path_chunk_rel(rel, r->zdigest);
  if (fstatat(r->cs->chunks_fd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return -errno;
  z->ino = st.st_ino;
  z->sec = st.st_atim.tv_sec;
  z->nsec = st.st_atim.tv_nsec;
  return 0;
}

static void run_begin(struct run *r)
{
  int rc = store_datastore_chunks(r->ds, &r->cs);
  if (rc < 0) {
    r->rc = rc;
    snprintf(r->msg, sizeof(r->msg), "cannot open the chunk store: %s", core_strerror(rc));
    return;
  }
  rc = store_chunkstore_gc_begin(r->cs);
  if (rc < 0) {
    r->rc = rc;
    snprintf(r->msg, sizeof(r->msg), "%s",
             rc == CORE_ELOCKED ? "Start GC failed - (already running/locked): another "
                                  "garbage collection or another process holds the datastore lock"
                                : core_strerror(rc));
    return;
  }
  r->begun = 1;
  /* Keys left by interrupted moves (store_move.h); a failure only waits for
   * the next run. */
  char why[256];
  if (store_move_s3_reconcile_ds(r->ds, r->ctx->run_dir, why, sizeof(why)) < 0)
    core_task_warn(r->task, "leftovers of interrupted moves not cleaned up: %s", why);
  if (!r->safety)
    return;
  uint8_t *zeros = core_calloc(1, ZERO_CHUNK_SIZE);
  core_hex_decode(zero_chunk_hex, 32, r->zdigest);
  rc = format_blob_encode_alloc(NULL, zeros, ZERO_CHUNK_SIZE, FORMAT_BLOB_COMPRESS, NULL,
                               &r->zblob, &r->zlen);
  core_free(zeros);
  if (rc < 0) {
    r->rc = rc;
    snprintf(r->msg, sizeof(r->msg), "atime safety check: %s", core_strerror(rc));
  }
}

/* Part 1 of the atime safety check, after the zero chunk's upload. When its
 * local copy found no room (a full cache file system), any local file serves
 * as well: a touch needs no new blocks (gc_space.h). With no local file at
 * all, every file phase 2 looks at is created during this run (markers of
 * phase 1, uploads), fresh whatever touches do: the check is skipped. */
static void run_zstat(struct run *r)
{
  char hex[65];
  int rc;
  if (r->zero_full) {
    rc = gc_space_any_chunk(r->cs, r->zdigest);
    if (rc == CORE_ENOTFOUND) {
      r->check_none = 1;
      core_task_log(r->task, "cannot cache the zero chunk locally (%s) and the local cache "
                    "holds no chunk: atime safety check skipped",
                    core_strerror(r->zero_full));
      return;
    }
    if (rc < 0) {
      r->rc = rc;
      snprintf(r->msg, sizeof(r->msg), "atime safety check: cannot cache the zero chunk (%s) "
               "nor find another chunk: %s", core_strerror(r->zero_full), core_strerror(rc));
      return;
    }
    core_hex_encode(r->zdigest, 32, hex);
    core_task_log(r->task, "cannot cache the zero chunk locally (%s): checking access time "
                  "updates on chunk %s instead", core_strerror(r->zero_full), hex);
  }
  rc = zstat_get(r, &r->z1);
  if (rc < 0) {
    r->rc = rc;
    snprintf(r->msg, sizeof(r->msg), "atime safety check: %s", core_strerror(rc));
  }
}

static void run_walk(struct run *r)
{
  char lockdir[STORE_PATH_MAX];
  int lrc = store_lock_dir(lockdir, sizeof(lockdir), r->ctx->run_dir, r->ds->name);
  if (lrc >= 0)
    lrc = store_move_gc_mark_begin(lockdir, &r->mark_fd);
  if (lrc < 0) {
    r->rc = lrc;
    snprintf(r->msg, sizeof(r->msg), "cannot take the gc-marking lock: %s",
             core_strerror(lrc));
    return;
  }
  r->phase1_start = (int64_t)time(NULL);
  int64_t w = 0;
  r->has_writer = store_chunkstore_oldest_writer(r->cs, &w);
  r->oldest_writer = r->has_writer ? w : r->phase1_start;
  r->min_atime = r->phase1_start - r->cutoff_s;
  if (r->has_writer && w - r->grace_s < r->min_atime)
    r->min_atime = w - r->grace_s;
  int rc = gc_walk_indexes(r->base, &r->list, &r->task->abort_requested, r->msg,
                           sizeof(r->msg));
  if (rc < 0)
    r->rc = rc;
  core_testpoint("gc-listed");
}

static int map_index(struct run *r, const char *path, void **map, size_t *len,
                     struct format_index *idx)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT)
      return 1;
    int rc = -errno;
    snprintf(r->msg, sizeof(r->msg), "cannot open index %s: %s", path, strerror(errno));
    return rc;
  }
  struct stat st;
  int rc = 0;
  if (fstat(fd, &st) < 0) {
    rc = -errno;
    snprintf(r->msg, sizeof(r->msg), "cannot stat index %s: %s", path, strerror(errno));
    goto out;
  }
  if (st.st_size < FORMAT_INDEX_HDR_LEN) {
    rc = CORE_EFORMAT;
    snprintf(r->msg, sizeof(r->msg), "index %s is corrupt; refusing to sweep on an "
             "incomplete mark", path);
    goto out;
  }
  *len = (size_t)st.st_size;
  *map = mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0);
  if (*map == MAP_FAILED) {
    rc = -errno;
    *map = NULL;
    snprintf(r->msg, sizeof(r->msg), "cannot map index %s: %s", path, strerror(errno));
    goto out;
  }
  rc = format_index_parse(*map, *len, FORMAT_INDEX_SKIP_CSUM, idx);
  if (rc < 0) {
    snprintf(r->msg, sizeof(r->msg), "index %s is corrupt (%s); refusing to sweep on an "
             "incomplete mark", path, core_strerror(rc));
    munmap(*map, *len);
    *map = NULL;
  }
out:
  close(fd);
  return rc;
}

/* A referenced chunk without a local file: `<digest>.using`, so that phase 2
 * keeps its object and turns the marker into a 0-byte chunk marker. Not a
 * chunk marker right away: the object may be missing, and a marker would
 * then make the next upload of that chunk skip the upload (invariant I). */
static int make_using(struct store_chunkstore *cs, const uint8_t digest[32])
{
  char rel[STORE_CHUNK_REL_LEN + 8];
  store_path_chunk_rel(rel, digest);
  rel[4] = '\0';
  if (mkdirat(cs->chunks_fd, rel, PREFIX_DIR_MODE) < 0 && errno != EEXIST)
    return -errno;
  rel[4] = '/';
  size_t len = strlen(rel);
  snprintf(rel + len, sizeof(rel) - len, ".using");
  int fd = openat(cs->chunks_fd, rel, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0)
    return -errno;
  struct timespec ts[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
  futimens(fd, ts);
  close(fd);
  return 0;
}

static void run_mark(struct run *r)
{
  unsigned budget = MARK_BUDGET, files = 0;
  while (r->cur_file < r->list.n && budget > 0 && files < MARK_FILES_BUDGET) {
    const char *path = r->list.paths[r->cur_file];
    void *map = NULL;
    size_t len = 0;
    struct format_index idx;
    int rc = map_index(r, path, &map, &len, &idx);
    if (rc < 0) {
      r->rc = rc;
      return;
    }
    files++;
    if (rc == 1) {
      r->cur_file++;
      r->cur_entry = 0;
      continue;
    }
    if (r->cur_entry == 0) {
      r->st.index_file_count++;
      r->st.index_data_bytes += idx.size;
    }
    uint64_t e = r->cur_entry;
    for (; e < idx.count && budget > 0; e++, budget--) {
      if ((budget % ABORT_POLL) == 0 && core_task_aborted(r->task)) {
        rc = CORE_EABORTED;
        snprintf(r->msg, sizeof(r->msg), "aborted");
        break;
      }
      const uint8_t *d = format_index_digest(&idx, e);
      if (gc_cache_test_and_add(&r->cache, d))
        continue;
      r->touched++;
      rc = store_chunk_touch(r->cs, d);
      if (rc == CORE_ENOTFOUND) {
        rc = store_chunk_touch_bad(r->cs, d);
        if (rc > 0)
          r->bad_touched += (uint64_t)rc;
        if (rc >= 0) {
          rc = make_using(r->cs, d);
          r->using_made++;
        }
      }
      if (rc < 0) {
        char hex[65];
        core_hex_encode(d, 32, hex);
        snprintf(r->msg, sizeof(r->msg), "cannot mark chunk %s (referenced by %s): %s", hex,
                 path, core_strerror(rc));
        break;
      }
      rc = 0;
    }
    munmap(map, len);
    if (rc < 0) {
      r->rc = rc;
      return;
    }
    if (e >= idx.count) {
      r->cur_file++;
      r->cur_entry = 0;
    } else {
      r->cur_entry = e;
    }
  }
}

/* Marks every group named in the move journal while holding its lock, then
 * empties it (see store_move.h for why this closes the race between a move
 * and the mark phase). */
static void run_replay(struct run *r)
{
  int fd = -1;
  char **dirs = NULL;
  size_t n = 0;
  int rc = store_move_journal_take(r->base, &fd, &dirs, &n);
  if (rc < 0) {
    r->rc = rc;
    snprintf(r->msg, sizeof(r->msg), "cannot read the move journal: %s", core_strerror(rc));
    return;
  }
  struct gc_index_list moved, saved = r->list;
  memset(&moved, 0, sizeof(moved));
  size_t saved_file = r->cur_file;
  if (n > 0)
    rc = gc_walk_groups(dirs, n, &moved, &r->task->abort_requested, r->msg, sizeof(r->msg));
  if (rc < 0) {
    r->rc = rc;
  } else if (moved.n > 0) {
    r->list = moved;
    r->cur_file = 0;
    r->cur_entry = 0;
    while (r->rc == 0 && r->cur_file < r->list.n)
      run_mark(r);
    moved = r->list;
    r->list = saved;
    r->cur_file = saved_file;
  }
  r->replayed_groups = n;
  store_move_journal_done(fd, r->rc == 0);
  store_move_gc_mark_end(r->mark_fd);
  r->mark_fd = -1;
  gc_index_list_free(&moved);
  for (size_t i = 0; i < n; i++)
    core_free(dirs[i]);
  core_free(dirs);
}

static void count_kept(struct run *r, int bad, int64_t atime, uint64_t size)
{
  if (bad)
    r->st.still_bad++;
  else if (atime < r->oldest_writer)
    r->st.pending_chunks++;
  else
    r->st.disk_chunks++;
  if (atime < r->oldest_writer)
    r->st.pending_bytes += size;
  else
    r->st.disk_bytes += size;
}

static void batch_push(struct run *r, const char *key, const uint8_t digest[32], int claimed)
{
  if (r->nbatch == r->cap_batch) {
    r->cap_batch = r->cap_batch ? r->cap_batch * 2 : 2 * DELETE_BATCH;
    r->batch = core_realloc(r->batch, r->cap_batch * sizeof(*r->batch));
  }
  struct pending *p = &r->batch[r->nbatch++];
  p->key = core_strdup(key);
  memcpy(p->digest, digest, 32);
  p->claimed = claimed;
}

/* Phase 2 for one listed key. */
static void decide(struct run *r, const struct s3_object *o)
{
  size_t plen = strlen(r->prefix);
  const char *k = o->key;
  uint8_t digest[32];
  int bad_index;
  r->listed++;
  r->listed_bytes += o->size;
  /* <prefix>XXXX/<name>, XXXX the first 4 hex of the name */
  if (strncmp(k, r->prefix, plen) != 0 || strlen(k) < plen + 5 + 64 || k[plen + 4] != '/' ||
      strncmp(k + plen, k + plen + 5, 4) != 0) {
    r->foreign++;
    return;
  }
  const char *name = k + plen + 5;
  int kind = strlen(name) <= STORE_CHUNK_NAME_MAX ? store_chunk_parse_name(name, digest,
                                                                            &bad_index) : 0;
  if (kind != STORE_CHUNK_KIND_CHUNK && kind != STORE_CHUNK_KIND_BAD) {
    r->foreign++; /* never delete what we do not understand */
    return;
  }
  int bad = kind == STORE_CHUNK_KIND_BAD;
  int claimed = 0;
  if (!bad) {
    if (store_s3_claim_delete(&r->be->claims, digest) < 0) {
      /* An upload or cache fill is in flight: the object is in use. */
      r->kept_inflight++;
      count_kept(r, 0, INT64_MAX, o->size);
      return;
    }
    claimed = 1;
  }
  char rel[5 + STORE_CHUNK_NAME_MAX + 8];
  snprintf(rel, sizeof(rel), "%.4s/%s", name, name);
  unsigned prefix = (unsigned)digest[0] << 8 | digest[1];
  struct stat st;
  int64_t atime;
  int present = fstatat(r->cs->chunks_fd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                S_ISREG(st.st_mode);
  if (present) {
    atime = st.st_atim.tv_sec;
  } else {
    char using[sizeof(rel) + 8];
    snprintf(using, sizeof(using), "%s.using", rel);
    if (!bad && renameat(r->cs->chunks_fd, using, r->cs->chunks_fd, rel) == 0) {
      /* Referenced (phase 1) and the object exists: now a plain marker. */
      r->using_converted++;
      atime = INT64_MAX;
    } else {
      atime = 0;
    }
  }
  if (atime >= r->min_atime) {
    if (claimed)
      store_s3_release_delete(&r->be->claims, digest);
    count_kept(r, bad, atime == INT64_MAX ? r->oldest_writer : atime, o->size);
    return;
  }
  if (present) {
    /* Local file first: an object must never be gone while its marker
     * still says it is there. */
    struct store_chunk_stat s;
    int rc = store_chunk_remove_if_older(r->cs, prefix, name, r->min_atime, &s);
    if (rc == 0 || (rc < 0 && rc != CORE_ENOTFOUND)) {
      if (rc < 0)
        core_task_warn(r->task, "cannot remove cache file %s: %s; keeping the object", rel,
                       core_strerror(rc));
      if (claimed)
        store_s3_release_delete(&r->be->claims, digest);
      count_kept(r, bad, rc == 0 ? s.atime_sec : r->oldest_writer, o->size);
      return;
    }
    if (!bad)
      store_s3_cache_remove(&r->be->cache, digest);
  }
  if (bad)
    r->st.removed_bad++;
  else
    r->st.removed_chunks++;
  r->st.removed_bytes += o->size;
  batch_push(r, k, digest, claimed);
}

static void run_decide(struct run *r)
{
  for (size_t i = 0; i < r->page.n; i++) {
    if ((i % 256) == 255 && core_task_aborted(r->task)) {
      /* Decided keys stay in the batch with their claims; fail() drops them. */
      r->rc = CORE_EABORTED;
      snprintf(r->msg, sizeof(r->msg), "aborted");
      break;
    }
    decide(r, &r->page.objects[i]);
  }
  s3_list_result_free(&r->page);
}

static void run_sweep(struct run *r)
{
  int rc;
  if (!r->it_open) {
    rc = store_chunk_iter_open(&r->it, r->cs, 0, STORE_CHUNK_PREFIXES, 0);
    if (rc < 0) {
      r->rc = rc;
      snprintf(r->msg, sizeof(r->msg), "cannot list %s/.chunks: %s", r->base,
               core_strerror(rc));
      return;
    }
    r->it_open = 1;
  }
  struct store_chunk_entry e;
  for (unsigned n = 0; n < SWEEP_BUDGET; n++) {
    if ((n % ABORT_POLL) == ABORT_POLL - 1 && core_task_aborted(r->task)) {
      r->rc = CORE_EABORTED;
      snprintf(r->msg, sizeof(r->msg), "aborted");
      return;
    }
    unsigned prefix = store_chunk_iter_prefix(&r->it);
    rc = store_chunk_iter_next(&r->it, &e);
    if (rc == 0) {
      r->sweep_done = 1;
      break;
    }
    if (rc < 0) {
      core_task_warn(r->task, "cannot read chunk directory %s/.chunks/%04x: %s", r->base,
                     prefix, core_strerror(rc));
      continue;
    }
    r->swept++;
    if (e.kind == STORE_CHUNK_KIND_USING) {
      /* Phase 2 converted every .using whose object it listed: the rest
       * are referenced chunks that the bucket does not have. */
      if (++r->using_left <= MISSING_WARN_MAX) {
        char hex[65];
        core_hex_encode(e.digest, 32, hex);
        core_task_warn(r->task, "referenced chunk %s is missing in the bucket", hex);
      }
      store_chunk_remove_if_older(r->cs, e.prefix, e.name, INT64_MAX, NULL);
      continue;
    }
    if (e.atime_sec >= r->min_atime)
      continue;
    rc = store_chunk_remove_if_older(r->cs, e.prefix, e.name, r->min_atime, NULL);
    if (rc == 1) {
      r->markers_removed++;
      if (e.kind == STORE_CHUNK_KIND_CHUNK && e.size > 0)
        store_s3_cache_remove(&r->be->cache, e.digest);
    }
  }
  r->sweep_prefix = store_chunk_iter_prefix(&r->it);
}

static void run_finish(struct run *r)
{
  if (r->it_open) {
    store_chunk_iter_close(&r->it);
    r->it_open = 0;
  }
  if (r->step == S_FINISH) {
    r->st.cache_hits = r->cache.hits;
    r->st.cache_misses = r->cache.misses;
    snprintf(r->st.upid, sizeof(r->st.upid), "%s", r->task->upid);
    r->status_unsaved = gc_space_write_status(r->task, r->base, &r->st);
  }
  if (r->begun) {
    store_chunkstore_gc_end(r->cs);
    r->begun = 0;
  }
}

static void job_run(struct core_job *j)
{
  struct run *r = (struct run *)j;
  switch (r->step) {
  case S_BEGIN: run_begin(r); break;
  case S_ZSTAT: run_zstat(r); break;
  case S_SAFETY: {
    int rc = store_chunk_touch(r->cs, r->zdigest);
    if (rc >= 0)
      rc = zstat_get(r, &r->z2);
    if (rc < 0) {
      r->rc = rc;
      snprintf(r->msg, sizeof(r->msg), "atime safety check: cannot touch %s: %s",
               r->zero_full ? "the chunk it measures" : "the zero chunk", core_strerror(rc));
    }
    break;
  }
  case S_WALK: run_walk(r); break;
  case S_MARK: run_mark(r); break;
  case S_REPLAY: run_replay(r); break;
  case S_DECIDE: run_decide(r); break;
  case S_SWEEP: run_sweep(r); break;
  case S_FINISH:
  case S_END: run_finish(r); break;
  default: break;
  }
}

/* ---- loop side ---------------------------------------------------------- */

static void release_batch(struct run *r, size_t n)
{
  if (n == 0)
    return;
  for (size_t i = 0; i < n; i++) {
    if (r->batch[i].claimed)
      store_s3_release_delete(&r->be->claims, r->batch[i].digest);
    core_free(r->batch[i].key);
  }
  memmove(r->batch, r->batch + n, (r->nbatch - n) * sizeof(*r->batch));
  r->nbatch -= n;
}

static void on_timer_closed(uv_handle_t *h)
{
  struct run *r = h->data;
  struct gc_ctx *ctx = r->ctx;
  store_move_gc_mark_end(r->mark_fd); /* a run that failed before its replay */
  release_batch(r, r->nbatch);
  core_free(r->batch);
  core_free(r->keys);
  core_free(r->token);
  s3_list_result_free(&r->page);
  s3_list_result_free(&r->next_page);
  gc_index_list_free(&r->list);
  gc_cache_free(&r->cache);
  core_free(r->zblob);
  core_free(r->base);
  core_free(r->prefix);
  core_free(r);
  gc__run_end(ctx);
}

static void log_summary(struct run *r)
{
  char b[64];
  const struct gc_status *s = &r->st;
  struct core_task *t = r->task;
  core_fmt_bytes(s->removed_bytes, b, sizeof(b));
  core_task_log(t, "Removed garbage: %s", b);
  core_task_log(t, "Removed chunks: %" PRIu64, s->removed_chunks);
  if (s->removed_bad)
    core_task_log(t, "Removed bad chunks: %" PRIu64, s->removed_bad);
  if (s->still_bad)
    core_task_log(t, "Leftover bad chunks: %" PRIu64, s->still_bad);
  core_fmt_bytes(s->pending_bytes, b, sizeof(b));
  core_task_log(t, "Pending removals: %s (in %" PRIu64 " chunks)", b, s->pending_chunks);
  core_fmt_bytes(s->index_data_bytes, b, sizeof(b));
  core_task_log(t, "Original data usage: %s", b);
  core_fmt_bytes(s->disk_bytes, b, sizeof(b));
  core_task_log(t, "On-Disk usage: %s", b);
  core_task_log(t, "On-Disk chunks: %" PRIu64, s->disk_chunks);
  if (s->disk_bytes)
    core_task_log(t, "Deduplication factor: %.2f",
                  (double)s->index_data_bytes / (double)s->disk_bytes);
  struct s3_stats now;
  store_s3_stats(r->be, &now);
  uint64_t min_list = r->listed ? (r->listed + DELETE_BATCH - 1) / DELETE_BATCH : 1;
  uint64_t min_del = (r->deleted + r->delete_failed + DELETE_BATCH - 1) / DELETE_BATCH;
  core_fmt_bytes(r->listed_bytes, b, sizeof(b));
  core_task_log(t, "S3: objects listed %" PRIu64 " (%s), deleted %" PRIu64 ", kept %" PRIu64
                " (%" PRIu64 " with an upload in flight), not chunks %" PRIu64,
                r->listed, b, r->deleted, r->listed - r->deleted - r->delete_failed - r->foreign,
                r->kept_inflight, r->foreign);
  core_task_log(t, "S3: list requests %" PRIu64 ", delete requests %" PRIu64
                " (minimum %" PRIu64 " and %" PRIu64 "), retried attempts %" PRIu64,
                r->list_requests, r->delete_requests, min_list, min_del,
                now.retries - r->s3_before.retries);
  core_task_log(t, "local: %" PRIu64 " .using markers made, %" PRIu64 " turned into markers, "
                "%" PRIu64 " stale cache files removed", r->using_made, r->using_converted,
                r->markers_removed);
  if (r->using_left > MISSING_WARN_MAX)
    core_task_warn(t, "%" PRIu64 " referenced chunks are missing in the bucket in total",
                   r->using_left);
  uint64_t end = uv_hrtime();
  core_task_log(t, "Phase 1: %.3f s, phase 2: %.3f s, phase 3: %.3f s, total %.3f s",
                (double)(r->t_list - r->t_mark) / 1e9, (double)(r->t_sweep - r->t_list) / 1e9,
                (double)(end - r->t_sweep) / 1e9, (double)(end - r->t_start) / 1e9);
}

static void run_end(struct run *r, int err, const char *msg)
{
  if (err == 0) {
    log_summary(r);
    gc__status_remember(r->state, r->status_unsaved ? &r->st : NULL);
    r->state->removed_bytes += r->st.removed_bytes;
    r->state->removed_chunks += r->st.removed_chunks;
  }
  if (r->state->gc == r->task)
    r->state->gc = NULL;
  core_task_finish(r->task, err, msg);
  r->task = NULL;
  store_release(r->ds, STORE_OP_WRITE);
  r->ds = NULL;
  uv_close((uv_handle_t *)&r->timer, on_timer_closed);
}

static void fail(struct run *r)
{
  if (r->rc == 0)
    r->rc = CORE_EABORTED;
  if (r->msg[0] == '\0')
    snprintf(r->msg, sizeof(r->msg), "%s", core_strerror(r->rc));
  /* Keys decided but not deleted keep their objects: drop their claims. */
  release_batch(r, r->nbatch);
  if (r->begun || r->it_open) {
    submit(r, S_END);
    return;
  }
  run_end(r, r->rc, r->msg);
}

static void job_done(struct core_job *j, int status)
{
  struct run *r = (struct run *)j;
  if (status < 0 && r->rc == 0) {
    r->rc = status;
    snprintf(r->msg, sizeof(r->msg), "job failed: %s", core_strerror(status));
  }
  if (r->step == S_DECIDE) {
    r->decide_inflight = 0;
    p2_pump(r);
    return;
  }
  if (r->step == S_END) {
    run_end(r, r->rc ? r->rc : CORE_EABORTED, r->msg);
    return;
  }
  if (r->rc < 0) {
    fail(r);
    return;
  }
  if (r->step == S_FINISH) {
    run_end(r, r->delete_failed ? CORE_ES3 : 0,
            r->delete_failed ? "some objects could not be deleted (see the log)" : NULL);
    return;
  }
  if (core_task_aborted(r->task)) {
    fail(r);
    return;
  }
  advance(r);
}

static void submit(struct run *r, enum step s)
{
  r->step = s;
  int rc = core_job_submit(r->ctx->loop, &r->job, job_run, job_done);
  if (rc < 0)
    job_done(&r->job, rc);
}

static void s3_failed(struct run *r, const char *what, const struct s3_result *res)
{
  r->rc = res->status < 0 ? res->status : CORE_ES3;
  snprintf(r->msg, sizeof(r->msg), "%s failed: %s%s%s", what, core_strerror(r->rc),
           res->message[0] ? ": " : "", res->message);
  fail(r);
}

/* ---- phase 2: listing, deciding and deleting, overlapped -----------------
 *
 * One ListObjectsV2, one decide job and one DeleteObjects may be in flight
 * at once: while a batch of 1000 keys is being deleted the next pages are
 * listed and decided. The batch array is only touched on the loop while no
 * decide job runs (that job appends to it), so a finished delete is settled
 * (its claims released) when the loop next sees no job in flight. */

static void p2_pump(struct run *r);

static int p2_busy(const struct run *r)
{
  return r->del_inflight || r->list_inflight || r->decide_inflight;
}

static void p2_error(struct run *r, int rc, const char *what, const struct s3_result *res)
{
  if (r->rc == 0) {
    r->rc = rc < 0 ? rc : CORE_ES3;
    snprintf(r->msg, sizeof(r->msg), "%s failed: %s%s%s", what, core_strerror(r->rc),
             res && res->message[0] ? ": " : "", res ? res->message : "");
  }
}

/* Counts and releases the batch whose DeleteObjects returned. */
static void p2_settle(struct run *r)
{
  if (!r->del_finished || r->decide_inflight)
    return;
  r->del_finished = 0;
  r->delete_failed += r->del_failed_n;
  r->deleted += r->nsending - r->del_failed_n;
  release_batch(r, r->nsending);
  r->nsending = 0;
}

static void on_delete(const struct s3_result *res, void *arg)
{
  struct run *r = arg;
  r->del_inflight = 0;
  if (res->status < 0) {
    /* Not deleted: release_batch() in fail() drops the claims. */
    r->nsending = 0;
    p2_error(r, res->status, "DeleteObjects", res);
    p2_pump(r);
    return;
  }
  size_t failed = 0;
  if (res->deleted) {
    for (size_t i = 0; i < res->deleted->n; i++) {
      const struct s3_delete_entry *e = &res->deleted->entries[i];
      if (!e->deleted) {
        if (++failed <= 10)
          core_task_warn(r->task, "cannot delete %s: %s %s", e->key, s3_error_name(e->code),
                         e->message);
      }
    }
  }
  r->del_failed_n = failed;
  r->del_finished = 1;
  p2_pump(r);
}

static void send_batch(struct run *r, size_t n)
{
  r->nsending = n;
  r->keys = core_realloc(r->keys, n * sizeof(char *));
  for (size_t i = 0; i < n; i++)
    r->keys[i] = r->batch[i].key;
  r->delete_requests++;
  r->del_inflight = 1;
  store_s3_delete(r->be, r->keys, n, on_delete, r);
}

static void on_list(const struct s3_result *res, void *arg)
{
  struct run *r = arg;
  r->list_inflight = 0;
  if (res->status < 0 || res->list == NULL) {
    p2_error(r, res->status, "ListObjectsV2", res);
    p2_pump(r);
    return;
  }
  r->next_page = *res->list;
  memset(res->list, 0, sizeof(*res->list)); /* the page is ours now */
  r->page_ready = 1;
  core_free(r->token);
  r->token = NULL;
  r->more = r->next_page.is_truncated && r->next_page.next_token &&
            r->next_page.next_token[0];
  if (r->more)
    r->token = core_strdup(r->next_page.next_token);
  if (r->list_requests % 20 == 0)
    core_task_log(r->task, "listed %" PRIu64 " objects so far", r->listed + r->next_page.n);
  p2_pump(r);
}

static void start_list(struct run *r)
{
  r->list_requests++;
  r->list_inflight = 1;
  store_s3_list(r->be, r->prefix, r->token, on_list, r);
}

static void p2_pump(struct run *r)
{
  p2_settle(r);
  if (r->rc == 0 && core_task_aborted(r->task)) {
    r->rc = CORE_EABORTED;
    snprintf(r->msg, sizeof(r->msg), "aborted");
  }
  if (r->rc < 0) {
    if (!p2_busy(r)) {
      s3_list_result_free(&r->next_page);
      r->page_ready = 0;
      fail(r);
    }
    return;
  }
  size_t unsent = r->nbatch - r->nsending;
  int listing_done = !r->more && !r->list_inflight && !r->page_ready;
  if (!r->decide_inflight && !r->del_inflight && !r->del_finished) {
    if (unsent >= DELETE_BATCH)
      send_batch(r, DELETE_BATCH);
    else if (listing_done && unsent > 0)
      send_batch(r, unsent);
  }
  if (r->page_ready && !r->decide_inflight) {
    s3_list_result_free(&r->page);
    r->page = r->next_page;
    memset(&r->next_page, 0, sizeof(r->next_page));
    r->page_ready = 0;
    r->decide_inflight = 1;
    core_task_set_progress(r->task, 0.6);
    submit(r, S_DECIDE);
  }
  /* Keep the queue of decided keys bounded: list ahead only while it is. */
  if (r->more && !r->list_inflight && !r->page_ready &&
      r->nbatch - r->nsending < 2 * DELETE_BATCH)
    start_list(r);
  if (listing_done && !p2_busy(r) && !r->del_finished && r->nbatch == 0) {
    core_task_log(r->task, "processed %" PRIu64 " objects in the bucket", r->listed);
    core_task_log(r->task, "Start GC phase3 (sweep unused chunk markers)");
    r->t_sweep = uv_hrtime();
    r->last_pct = 0;
    core_task_set_progress(r->task, 0.9);
    submit(r, S_SWEEP);
  }
}

static void on_zero(void *arg, int err, int duplicate, const char *msg)
{
  struct run *r = arg;
  if (gc_space_full(err)) {
    r->zero_full = err; /* run_zstat measures another chunk */
    err = 0;
  }
  if (err < 0) {
    r->rc = err;
    snprintf(r->msg, sizeof(r->msg), "atime safety check: cannot store the zero chunk: %s",
             msg ? msg : core_strerror(err));
    fail(r);
    return;
  }
  submit(r, S_ZSTAT);
}

static void on_head(const struct s3_result *res, void *arg)
{
  struct run *r = arg;
  if (res->status < 0) {
    s3_failed(r, "HeadBucket", res);
    return;
  }
  store_s3_stats(r->be, &r->s3_before);
  if (r->safety) {
    r->step = S_ZERO;
    store_s3_chunk_upload(r->ds, r->zdigest, ZERO_CHUNK_SIZE, r->zblob, r->zlen, 0, on_zero, r);
    return;
  }
  core_task_log(r->task, "atime safety check skipped (gc-atime-safety-check=false)");
  core_task_log(r->task, "Start GC phase1 (mark used chunks)");
  r->t_mark = uv_hrtime();
  submit(r, S_WALK);
}

static void on_wait(uv_timer_t *h)
{
  struct run *r = h->data;
  if (core_task_aborted(r->task)) {
    fail(r);
    return;
  }
  submit(r, S_SAFETY);
}

static void start_wait(struct run *r)
{
  uint64_t ms;
  if (r->z1.nsec != 0) {
    ms = 20;
  } else {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    int64_t want = (r->z1.sec + 1) * 1000 + 5;
    ms = want > now_ms ? (uint64_t)(want - now_ms) : 5;
    if (ms > 1100)
      ms = 1100;
  }
  r->step = S_WAIT;
  uv_timer_start(&r->timer, on_wait, ms, 0);
}

static void advance(struct run *r)
{
  char t1[32];
  switch (r->step) {
  case S_BEGIN:
    r->step = S_HEAD;
    store_s3_head_bucket(r->be, on_head, r);
    return;
  case S_ZSTAT:
    if (!r->check_none) {
      start_wait(r);
      return;
    }
    core_task_log(r->task, "Start GC phase1 (mark used chunks)");
    r->t_mark = uv_hrtime();
    submit(r, S_WALK);
    return;
  case S_SAFETY:
    if (r->z2.ino != r->z1.ino && !r->safety_retried) {
      r->safety_retried = 1;
      r->z1 = r->z2;
      start_wait(r);
      return;
    }
    if (r->z2.sec < r->z1.sec || (r->z2.sec == r->z1.sec && r->z2.nsec <= r->z1.nsec)) {
      r->rc = CORE_ECONFIG;
      snprintf(r->msg, sizeof(r->msg), "atime safety check failed: touching a chunk did not "
               "update its access time. Is atime support enabled on the datastore's file "
               "system?");
      fail(r);
      return;
    }
    core_task_log(r->task, "Access time update check successful, proceeding with GC.");
    core_task_log(r->task, "Start GC phase1 (mark used chunks)");
    r->t_mark = uv_hrtime();
    submit(r, S_WALK);
    return;
  case S_WALK:
    iso_time(r->min_atime, t1);
    core_task_log(r->task, "Using access time cutoff %" PRId64 " s, minimum access time is %s",
                  r->cutoff_s, t1);
    if (r->has_writer) {
      iso_time(r->oldest_writer, t1);
      core_task_log(r->task, "Oldest active backup writer started at %s", t1);
    }
    core_task_log(r->task, "found %zu index files in %zu snapshots", r->list.n,
                  r->list.n_snapshots);
    if (r->list.n_strange)
      core_task_warn(r->task, "found (and marked) %zu index files outside of the expected "
                     "directory scheme", r->list.n_strange);
    if (r->list.n == 0) {
      r->step = S_MARK;
      advance(r);
      return;
    }
    submit(r, S_MARK);
    return;
  case S_MARK:
    core_task_set_progress(r->task, 0.4 * (double)r->cur_file /
                                        (double)(r->list.n ? r->list.n : 1));
    if (r->cur_file < r->list.n) {
      submit(r, S_MARK);
      return;
    }
    submit(r, S_REPLAY);
    return;
  case S_REPLAY:
    if (r->replayed_groups)
      core_task_log(r->task, "marked %zu groups again that moves put elsewhere since the last "
                    "GC", r->replayed_groups);
    core_task_log(r->task, "marked %" PRIu64 " chunks (%" PRIu64 " cache hits), %" PRIu64
                  " not in the local cache", r->touched, r->cache.hits, r->using_made);
    core_task_log(r->task, "Start GC phase2 (sweep unused chunks in the bucket)");
    r->t_list = uv_hrtime();
    r->more = 1;
    p2_pump(r);
    return;
  case S_SWEEP:
    core_task_set_progress(r->task, 0.9 + 0.1 * (double)r->sweep_prefix / STORE_CHUNK_PREFIXES);
    if (!r->sweep_done) {
      submit(r, S_SWEEP);
      return;
    }
    submit(r, S_FINISH);
    return;
  default:
    return;
  }
}

static void on_abort(struct core_task *t, void *arg)
{
  struct run *r = arg;
  if (r->step == S_WAIT && uv_is_active((uv_handle_t *)&r->timer)) {
    uv_timer_stop(&r->timer);
    r->rc = CORE_EABORTED;
    snprintf(r->msg, sizeof(r->msg), "aborted");
    fail(r);
  }
}

void gc_s3_run(struct gc_ctx *ctx, struct gc_store_state *state, struct core_task *task,
               struct store_datastore *ds)
{
  struct run *r = core_new(struct run);
  r->ctx = ctx;
  r->state = state;
  r->task = task;
  r->ds = ds;
  r->be = ds->backend;
  r->base = core_strdup(ds->path);
  r->mark_fd = -1;
  r->prefix = core_asprintf("%s/.chunks/", ds->name);
  r->cutoff_s = ctx->cutoff_override_s >= 0 ? ctx->cutoff_override_s
                : ds->gc_atime_cutoff_s > 0 ? ds->gc_atime_cutoff_s : 86700;
  r->grace_s = ctx->writer_grace_s;
  r->safety = ds->gc_atime_safety_check;
  gc_cache_init(&r->cache, ctx->cache_capacity);
  uv_timer_init(ctx->loop, &r->timer);
  r->timer.data = r;
  r->t_start = r->t_mark = r->t_list = r->t_sweep = uv_hrtime();
  state->gc = task;
  task->on_abort = on_abort;
  task->on_abort_arg = r;
  gc__run_begin(ctx);
  core_task_log(task, "starting garbage collection on store %s (S3 bucket %s, endpoint %s)",
                ds->name, r->be->cfg.bucket, r->be->cfg.client);
  submit(r, S_BEGIN);
}
