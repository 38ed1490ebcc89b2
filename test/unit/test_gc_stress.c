/* GC stress: 8 backup threads re-use and add chunks, a pruner makes garbage,
 * and GC runs again and again with the most aggressive settings (cutoff 0,
 * no writer grace). Afterwards every finished snapshot must verify.
 *
 * Each backup thread does what a backup session does on disk: register as a
 * chunk-store writer, take a shared lock on its previous snapshot, reference
 * most of the previous index's chunks without uploading them (PBS's known
 * chunks), upload new chunks and re-upload chunks other groups have (dedup:
 * an insert of an existing chunk touches it), write the index and the
 * manifest under an exclusive lock on the new snapshot, then let go.
 */
#include "gc_fixture.h"

#include "store/store_lock.h"

#include <pthread.h>
#include <stdatomic.h>

#define THREADS 8
#define RUN_SECONDS 4
#define T0 INT64_C(1700000000)

struct stress {
  struct fx *fx;
  char lockdir[STORE_PATH_MAX];
  _Atomic int stop;
  _Atomic uint32_t next_seed;
  _Atomic unsigned backups;
  _Atomic unsigned pruned;
  _Atomic unsigned failures;
};

struct worker {
  struct stress *s;
  int n;
  uint32_t rng;
};

static uint32_t rnd(struct worker *w)
{
  w->rng ^= w->rng << 13;
  w->rng ^= w->rng >> 17;
  w->rng ^= w->rng << 5;
  return w->rng;
}

#define FAIL_IF(cond, what)                                                   \
  do {                                                                        \
    if (cond) {                                                               \
      fprintf(stderr, "worker %d: %s failed (%d)\n", w->n, what, __LINE__);   \
      atomic_fetch_add(&s->failures, 1);                                      \
      goto out;                                                               \
    }                                                                         \
  } while (0)

static int read_whole(const char *path, uint8_t **out, size_t *len)
{
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return -1;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  *out = core_malloc((size_t)n + 1);
  *len = fread(*out, 1, (size_t)n, f);
  fclose(f);
  return 0;
}

static void upload(struct fx *fx, uint32_t seed, size_t size, uint8_t d[32])
{
  uint8_t *data = core_malloc(size), *blob;
  size_t blen;
  fx_data(seed, size, data);
  core_sha256(data, size, d);
  format_blob_encode_alloc(NULL, data, size, FORMAT_BLOB_COMPRESS, NULL, &blob, &blen);
  struct store_chunk_insert_result res;
  store_chunk_insert(fx->cs, d, blob, blen, &res);
  core_free(blob);
  core_free(data);
}

static void one_backup(struct worker *w, int64_t btime)
{
  struct stress *s = w->s;
  struct fx *fx = s->fx;
  char id[16];
  snprintf(id, sizeof(id), "b%d", w->n);
  uint64_t token = 0;
  int writer = 0;
  struct store_lock_guard prev_lock = STORE_LOCK_GUARD_INIT, snap_lock = STORE_LOCK_GUARD_INIT;
  uint8_t *prev_img = NULL;
  size_t prev_len = 0;
  struct format_index prev;
  int have_prev = 0;
  struct format_didx_writer dw;
  format_didx_writer_init(&dw, btime, 0);

  FAIL_IF(store_chunkstore_writer_begin(fx->cs, (int64_t)time(NULL), &token) < 0, "writer");
  writer = 1;
  char *owner = NULL;
  FAIL_IF(store_group_create(fx->base, "", "host", id, "root@pam", &owner) < 0, "group");
  core_free(owner);
  /* previous = newest finished snapshot, held with a shared lock */
  struct store_snapshot_list sl;
  FAIL_IF(store_snapshot_list(fx->base, "", "host", id, &sl) < 0, "list");
  for (size_t i = sl.n; i-- > 0;) {
    if (!sl.items[i].finished)
      continue;
    if (store_lock_snapshot(s->lockdir, "", "host", id, sl.items[i].time, STORE_LOCK_SHARED,
                            &prev_lock) < 0)
      break; /* being pruned right now: back up without a base */
    char p[STORE_PATH_MAX];
    store_path_file(p, sizeof(p), fx->base, "", "host", id, sl.items[i].time, "data.pxar.didx");
    /* The pruner may have won between the listing and the lock. */
    if (read_whole(p, &prev_img, &prev_len) == 0 &&
        format_index_parse(prev_img, prev_len, 0, &prev) == 0)
      have_prev = 1;
    else
      store_lock_release(&prev_lock);
    break;
  }
  store_snapshot_list_free(&sl);

  FAIL_IF(store_snapshot_create(fx->base, "", "host", id, btime) < 0, "create");
  FAIL_IF(store_lock_snapshot(s->lockdir, "", "host", id, btime, STORE_LOCK_EXCLUSIVE,
                              &snap_lock) < 0, "snapshot lock");
  uint64_t end = 0;
  uint8_t d[32];
  /* known chunks from the previous snapshot: referenced, not uploaded */
  if (have_prev) {
    for (uint64_t i = 0; i < prev.count; i++) {
      if (rnd(w) % 10 < 3)
        continue;
      uint64_t a, b;
      format_index_chunk_range(&prev, i, &a, &b);
      end += b - a;
      FAIL_IF(format_didx_writer_append(&dw, end, format_index_digest(&prev, i)) < 0, "append");
    }
  }
  /* new chunks, and chunks that other groups may have (dedup) */
  for (int i = 0; i < 12; i++) {
    uint32_t seed = (i % 3 == 0) ? 1000000u + rnd(w) % 64 : atomic_fetch_add(&s->next_seed, 1);
    size_t size = 64 + seed % 512;
    upload(fx, seed, size, d);
    end += size;
    FAIL_IF(format_didx_writer_append(&dw, end, d) < 0, "append");
  }
  uint8_t csum[32];
  uint64_t count, size;
  FAIL_IF(format_didx_writer_finish(&dw, csum, &count, &size) < 0, "finish");
  size_t ilen;
  const uint8_t *img = format_didx_writer_image(&dw, &ilen);
  char p[STORE_PATH_MAX];
  store_path_file(p, sizeof(p), fx->base, "", "host", id, btime, "data.pxar.didx");
  struct core_slice part = {(const char *)img, ilen};
  FAIL_IF(format_index_write_file(p, &part, 1, 0) < 0, "index");
  struct format_manifest m;
  format_manifest_init(&m, "host", id, btime);
  format_manifest_add_file(&m, "data.pxar.didx", FORMAT_CRYPT_MODE_NONE, size, csum);
  uint8_t *blob;
  size_t blen;
  int rc = format_manifest_encode_blob(&m, NULL, &blob, &blen);
  format_manifest_free(&m);
  FAIL_IF(rc < 0, "manifest");
  store_path_file(p, sizeof(p), fx->base, "", "host", id, btime, FORMAT_MANIFEST_NAME);
  fx_write_file(p, blob, blen);
  core_free(blob);
  atomic_fetch_add(&s->backups, 1);
out:
  format_didx_writer_free(&dw);
  core_free(prev_img);
  store_lock_release(&snap_lock);
  store_lock_release(&prev_lock);
  if (writer)
    store_chunkstore_writer_end(fx->cs, token);
}

static void *backup_thread(void *arg)
{
  struct worker *w = arg;
  int64_t btime = T0;
  while (!atomic_load(&w->s->stop)) {
    one_backup(w, btime);
    btime += 60;
  }
  return NULL;
}

/* Keeps the newest 2 snapshots of every group; locked ones stay. */
static void *prune_thread(void *arg)
{
  struct stress *s = arg;
  struct fx *fx = s->fx;
  while (!atomic_load(&s->stop)) {
    for (int g = 0; g < THREADS; g++) {
      char id[16];
      snprintf(id, sizeof(id), "b%d", g);
      struct store_snapshot_list sl;
      if (store_snapshot_list(fx->base, "", "host", id, &sl) < 0)
        continue;
      for (size_t i = 0; i + 2 < sl.n; i++) {
        if (!sl.items[i].finished)
          continue;
        struct store_lock_guard lk = STORE_LOCK_GUARD_INIT;
        if (store_lock_snapshot(s->lockdir, "", "host", id, sl.items[i].time,
                                STORE_LOCK_EXCLUSIVE, &lk) < 0)
          continue;
        if (store_snapshot_delete(fx->base, "", "host", id, sl.items[i].time) == 0)
          atomic_fetch_add(&s->pruned, 1);
        store_lock_release(&lk);
      }
      store_snapshot_list_free(&sl);
    }
    usleep(20000);
  }
  return NULL;
}

UNIT_TEST(gc_under_concurrent_backups)
{
  struct fx fx;
  fx_init(&fx, "gc-atime-safety-check=false");
  fx.gc.cutoff_override_s = 0;
  fx.gc.writer_grace_s = 0;
  struct stress s;
  memset(&s, 0, sizeof(s));
  s.fx = &fx;
  s.next_seed = 1;
  ASSERT(store_lock_dir(s.lockdir, sizeof(s.lockdir), fx.run, FX_STORE) > 0);

  pthread_t th[THREADS], pr;
  struct worker w[THREADS];
  for (int i = 0; i < THREADS; i++) {
    w[i] = (struct worker){&s, i, 2463534242u + (uint32_t)i * 7919u};
    ASSERT_EQ(pthread_create(&th[i], NULL, backup_thread, &w[i]), 0);
  }
  ASSERT_EQ(pthread_create(&pr, NULL, prune_thread, &s), 0);

  /* RUN_SECONDS of overlap, and on a loaded machine (GC runs at idle
   * priority) as long as it takes for two GC runs and a backup per thread
   * to overlap, up to a minute: the assertions below are about work done,
   * not about how fast a shared machine does it. */
  time_t start = time(NULL), until = start + RUN_SECONDS, limit = start + 60;
  unsigned gcs = 0;
  uint64_t removed = 0;
  while (time(NULL) < limit &&
         (time(NULL) < until || gcs < 2 || atomic_load(&s.backups) < THREADS)) {
    struct core_task *t = fx_gc(&fx);
    if (strcmp(t->exitstatus, "OK") != 0)
      unit_fail(__FILE__, __LINE__, "GC %u ended '%s':\n%s", gcs, t->exitstatus,
                fx_task_log(&fx, t->upid));
    struct gc_status st;
    ASSERT_OK(gc_status_read(fx.base, &st));
    removed += st.removed_chunks;
    gcs++;
  }
  atomic_store(&s.stop, 1);
  for (int i = 0; i < THREADS; i++)
    pthread_join(th[i], NULL);
  pthread_join(pr, NULL);
  ASSERT_EQ(atomic_load(&s.failures), 0);
  sleep(1); /* let the last uploads fall below the cutoff too */
  struct core_task *t = fx_gc(&fx);
  ASSERT_STR_EQ(t->exitstatus, "OK");
  struct gc_status st;
  ASSERT_OK(gc_status_read(fx.base, &st));
  removed += st.removed_chunks;

  struct gc_verify_opts o;
  fx_verify_opts(&o);
  t = fx_verify(&fx, &o);
  if (strcmp(t->exitstatus, "OK") != 0)
    unit_fail(__FILE__, __LINE__, "verify ended '%s':\n%s", t->exitstatus,
              fx_task_log(&fx, t->upid));
  printf("  %u backups, %u snapshots pruned, %u GC runs, %llu chunks removed, %llu on disk\n",
         atomic_load(&s.backups), atomic_load(&s.pruned), gcs + 1,
         (unsigned long long)removed, (unsigned long long)st.disk_chunks);
  ASSERT(atomic_load(&s.backups) >= THREADS);
  ASSERT(gcs >= 2); /* GC runs at low priority while 9 threads keep both CPUs busy */
  ASSERT(removed > 0); /* the test did exercise deletion */
  fx_close(&fx);
}

UNIT_MAIN(UNIT_CASE(gc_under_concurrent_backups))
