/* gc_fixture.h: a temporary datastore behind a real registry and gc_ctx, for
 * the GC, prune and verify unit tests (test_gc*.c). Header-only: every test
 * program is its own executable.
 *
 * Snapshots are written with the store codecs directly (chunks through
 * store_chunk_insert, a .didx index, a .blob and a manifest), which is what a
 * finished backup leaves on disk. Chunks are aged with utimensat instead of
 * waiting a day.
 */
#ifndef GC_FIXTURE_H
#define GC_FIXTURE_H

#include "unit.h"

#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_shmem.h"
#include "core/core_task.h"
#include "gc/gc_api.h"
#include "gc/gc_status.h"
#include "format/format_blob.h"
#include "store/store_chunk.h"
#include "format/format_index.h"
#include "format/format_manifest.h"
#include "store/store_path.h"
#include "store/store_api.h"
#include "store/store_registry.h"
#include "store/store_session.h"
#include "store/store_snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define FX_STORE "test"
/* Every program uses a different subset of these helpers. */
#define FX_FN static __attribute__((unused))

struct fx {
  uv_loop_t loop;
  char root[512];
  char cfg[600];
  char run[600];
  char base[600];
  struct core_shmem shmem;
  struct store_registry reg;
  struct gc_ctx gc;
  struct store_datastore *ds;   /* reference + READ operation, for the chunk handle */
  struct store_chunkstore *cs;  /* the datastore's one handle */
};

FX_FN void fx_write(const char *path, const char *text)
{
  FILE *f = fopen(path, "w");
  ASSERT(f != NULL);
  fputs(text, f);
  fclose(f);
}

FX_FN void fx_lookup_cb(void *arg, int err, struct store_datastore *ds)
{
  struct fx *fx = arg;
  ASSERT_EQ(err, 0);
  fx->ds = ds;
}

/* `tuning` is the datastore's tuning property ("" for none). */
FX_FN void fx_init(struct fx *fx, const char *tuning)
{
  memset(fx, 0, sizeof(*fx));
  snprintf(fx->root, sizeof(fx->root), "%s", unit_tmpdir());
  snprintf(fx->cfg, sizeof(fx->cfg), "%s/config", fx->root);
  snprintf(fx->run, sizeof(fx->run), "%s/run", fx->root);
  snprintf(fx->base, sizeof(fx->base), "%s/store", fx->root);
  ASSERT_EQ(mkdir(fx->cfg, 0700), 0);
  ASSERT_EQ(mkdir(fx->run, 0700), 0);
  ASSERT_OK(store_chunk_create(fx->base));
  char text[2048], path[700];
  snprintf(text, sizeof(text), "datastore: %s\n\tpath %s\n%s%s%s", FX_STORE, fx->base,
           tuning[0] ? "\ttuning " : "", tuning, tuning[0] ? "\n" : "");
  snprintf(path, sizeof(path), "%s/datastore.cfg", fx->cfg);
  fx_write(path, text);
  ASSERT_EQ(uv_loop_init(&fx->loop), 0);
  ASSERT_OK(core_shmem_open(&fx->shmem, fx->run));
  ASSERT_OK(store_registry_init(&fx->reg, &fx->loop, fx->cfg, &fx->shmem, 0));
  ASSERT_OK(gc_ctx_init(&fx->gc, &fx->loop, &fx->reg, fx->run));
  store_lookup(&fx->reg, FX_STORE, STORE_OP_READ, fx_lookup_cb, fx);
  while (fx->ds == NULL)
    uv_run(&fx->loop, UV_RUN_ONCE);
  ASSERT_OK(store_datastore_chunks(fx->ds, &fx->cs));
}

/* The API context of an in-process server over the fixture's datastore, with
 * its session table (tests that drive the real handlers over http_fixture.h). */
FX_FN void fx_api_init(struct fx *fx, struct store_api *api, struct store_sessions *sessions)
{
  api->loop = &fx->loop;
  api->reg = &fx->reg;
  api->shmem = &fx->shmem;
  api->config_dir = fx->cfg;
  api->run_dir = fx->run;
  api->sessions = sessions;
  store_sessions_init(sessions, api);
}

FX_FN void fx_close(struct fx *fx)
{
  store_release(fx->ds, STORE_OP_READ);
  gc_ctx_close(&fx->gc);
  store_registry_close(&fx->reg);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  core_shmem_close(&fx->shmem);
  ASSERT_EQ(uv_loop_close(&fx->loop), 0);
}

/* ---- chunks ---- */

/* Deterministic content for (seed, size). */
FX_FN void fx_data(uint32_t seed, size_t size, uint8_t *out)
{
  uint32_t x = seed * 2654435761u + 12345u;
  for (size_t i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    out[i] = (uint8_t)(x >> 3);
  }
}

/* Inserts the chunk for (seed, size); returns its digest. */
FX_FN void fx_chunk(struct fx *fx, uint32_t seed, size_t size, uint8_t digest[32])
{
  uint8_t *data = core_malloc(size);
  uint8_t *blob;
  size_t blen;
  fx_data(seed, size, data);
  core_sha256(data, size, digest);
  ASSERT(format_blob_encode_alloc(NULL, data, size, FORMAT_BLOB_COMPRESS, NULL, &blob, &blen) >= 0);
  struct store_chunk_insert_result res;
  ASSERT_OK(store_chunk_insert(fx->cs, digest, blob, blen, &res));
  core_free(blob);
  core_free(data);
}

FX_FN void fx_chunk_path(struct fx *fx, const uint8_t digest[32], char *out, size_t len)
{
  ASSERT(store_path_chunk(out, len, fx->base, digest) > 0);
}

FX_FN int fx_chunk_exists(struct fx *fx, const uint8_t digest[32])
{
  char p[700];
  struct stat st;
  fx_chunk_path(fx, digest, p, sizeof(p));
  return stat(p, &st) == 0;
}

FX_FN void fx_set_atime(const char *path, int64_t atime)
{
  struct timespec ts[2] = {{(time_t)atime, 0}, {0, UTIME_OMIT}};
  ASSERT_EQ(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), 0);
}

FX_FN void fx_age_chunk(struct fx *fx, const uint8_t digest[32], int64_t seconds_ago)
{
  char p[700];
  fx_chunk_path(fx, digest, p, sizeof(p));
  fx_set_atime(p, (int64_t)time(NULL) - seconds_ago);
}

/* Ages every file below .chunks (chunks and .bad files). */
FX_FN void fx_age_all(struct fx *fx, int64_t seconds_ago)
{
  char dir[700], p[1400];
  snprintf(dir, sizeof(dir), "%s/.chunks", fx->base);
  DIR *d = opendir(dir);
  ASSERT(d != NULL);
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.')
      continue;
    char sub[1000];
    snprintf(sub, sizeof(sub), "%s/%s", dir, de->d_name);
    DIR *s = opendir(sub);
    if (s == NULL)
      continue;
    struct dirent *e;
    while ((e = readdir(s)) != NULL) {
      if (e->d_name[0] == '.')
        continue;
      snprintf(p, sizeof(p), "%s/%s", sub, e->d_name);
      fx_set_atime(p, (int64_t)time(NULL) - seconds_ago);
    }
    closedir(s);
  }
  closedir(d);
}

FX_FN size_t fx_count_chunk_files(struct fx *fx)
{
  char dir[700];
  size_t n = 0;
  snprintf(dir, sizeof(dir), "%s/.chunks", fx->base);
  DIR *d = opendir(dir);
  ASSERT(d != NULL);
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.')
      continue;
    char sub[1000];
    snprintf(sub, sizeof(sub), "%s/%s", dir, de->d_name);
    DIR *s = opendir(sub);
    if (s == NULL)
      continue;
    struct dirent *e;
    while ((e = readdir(s)) != NULL)
      if (e->d_name[0] != '.')
        n++;
    closedir(s);
  }
  closedir(d);
  return n;
}

/* ---- snapshots ---- */

struct fx_ref {
  uint32_t seed;
  size_t size;
};

FX_FN void fx_write_file(const char *path, const void *data, size_t len)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT(fd >= 0);
  ASSERT_EQ(write(fd, data, len), (ssize_t)len);
  close(fd);
}

/* Writes a finished snapshot whose "data.pxar.didx" references the chunks
 * (seed, size) in order (inserting them), plus a small "client.log.blob". */
/* Writes a finished snapshot whose "data.pxar.didx" references the given
 * digests (size bytes each) without inserting or touching any chunk, as a
 * backup does with the chunks it knows from its previous snapshot. */
FX_FN void fx_snapshot_digests(struct fx *fx, const char *ns, const char *type, const char *id,
                               int64_t time, const uint8_t (*digests)[32], size_t n,
                               uint64_t size)
{
  char *owner = NULL;
  ASSERT(store_group_create(fx->base, ns, type, id, "root@pam", &owner) >= 0);
  core_free(owner);
  ASSERT_OK(store_snapshot_create(fx->base, ns, type, id, time));
  struct format_didx_writer w;
  format_didx_writer_init(&w, time, 0);
  for (size_t i = 0; i < n; i++)
    ASSERT_OK(format_didx_writer_append(&w, (i + 1) * size, digests[i]));
  uint8_t csum[32];
  uint64_t count, total;
  ASSERT_OK(format_didx_writer_finish(&w, csum, &count, &total));
  size_t ilen;
  const uint8_t *img = format_didx_writer_image(&w, &ilen);
  char path[STORE_PATH_MAX];
  ASSERT(store_path_file(path, sizeof(path), fx->base, ns, type, id, time, "data.pxar.didx") > 0);
  struct core_slice part = {(const char *)img, ilen};
  ASSERT_OK(format_index_write_file(path, &part, 1, 0));
  struct format_manifest m;
  format_manifest_init(&m, type, id, time);
  ASSERT_OK(format_manifest_add_file(&m, "data.pxar.didx", FORMAT_CRYPT_MODE_NONE, total, csum));
  format_didx_writer_free(&w);
  uint8_t *blob;
  size_t blen;
  ASSERT_OK(format_manifest_encode_blob(&m, NULL, &blob, &blen));
  ASSERT(store_path_file(path, sizeof(path), fx->base, ns, type, id, time, FORMAT_MANIFEST_NAME) > 0);
  fx_write_file(path, blob, blen);
  core_free(blob);
  format_manifest_free(&m);
}

FX_FN void fx_snapshot(struct fx *fx, const char *ns, const char *type, const char *id,
                        int64_t time, const struct fx_ref *refs, size_t n)
{
  char *owner = NULL;
  ASSERT(store_group_create(fx->base, ns, type, id, "root@pam", &owner) >= 0);
  core_free(owner);
  ASSERT_OK(store_snapshot_create(fx->base, ns, type, id, time));
  struct format_didx_writer w;
  format_didx_writer_init(&w, time, 0);
  uint64_t end = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t d[32];
    fx_chunk(fx, refs[i].seed, refs[i].size, d);
    end += refs[i].size;
    ASSERT_OK(format_didx_writer_append(&w, end, d));
  }
  uint8_t csum[32];
  uint64_t count, size;
  ASSERT_OK(format_didx_writer_finish(&w, csum, &count, &size));
  size_t ilen;
  const uint8_t *img = format_didx_writer_image(&w, &ilen);
  char path[STORE_PATH_MAX];
  ASSERT(store_path_file(path, sizeof(path), fx->base, ns, type, id, time, "data.pxar.didx") > 0);
  struct core_slice part = {(const char *)img, ilen};
  ASSERT_OK(format_index_write_file(path, &part, 1, 0));

  struct format_manifest m;
  format_manifest_init(&m, type, id, time);
  ASSERT_OK(format_manifest_add_file(&m, "data.pxar.didx", FORMAT_CRYPT_MODE_NONE, size, csum));
  format_didx_writer_free(&w);

  const char log[] = "backup log text\n";
  uint8_t *blob;
  size_t blen;
  ASSERT(format_blob_encode_alloc(NULL, log, sizeof(log) - 1, FORMAT_BLOB_COMPRESS, NULL, &blob,
                                 &blen) >= 0);
  uint8_t bsum[32];
  core_sha256(blob, blen, bsum);
  ASSERT(store_path_file(path, sizeof(path), fx->base, ns, type, id, time, "client.log.blob") > 0);
  fx_write_file(path, blob, blen);
  core_free(blob);
  ASSERT_OK(format_manifest_add_file(&m, "client.log.blob", FORMAT_CRYPT_MODE_NONE, blen, bsum));

  ASSERT_OK(format_manifest_encode_blob(&m, NULL, &blob, &blen));
  ASSERT(store_path_file(path, sizeof(path), fx->base, ns, type, id, time, FORMAT_MANIFEST_NAME) > 0);
  fx_write_file(path, blob, blen);
  core_free(blob);
  format_manifest_free(&m);
}

/* Reads a snapshot's manifest (its unprotected verify_state, ...). */
FX_FN void fx_manifest(struct fx *fx, const char *ns, const char *type, const char *id,
                        int64_t time, struct format_manifest *m)
{
  char path[STORE_PATH_MAX];
  ASSERT(store_path_file(path, sizeof(path), fx->base, ns, type, id, time, FORMAT_MANIFEST_NAME) > 0);
  FILE *f = fopen(path, "rb");
  ASSERT(f != NULL);
  static uint8_t buf[1 << 20];
  size_t len = fread(buf, 1, sizeof(buf), f);
  fclose(f);
  ASSERT_OK(format_manifest_decode_blob(NULL, buf, len, m));
}

/* ---- running tasks ---- */

struct fx_started {
  int called;
  int err;
  char msg[600];
  char upid[CORE_TASK_UPID_MAX];
};

FX_FN void fx_started_cb(void *arg, int err, const char *msg, struct core_task *task)
{
  struct fx_started *s = arg;
  s->called = 1;
  s->err = err;
  snprintf(s->msg, sizeof(s->msg), "%s", msg ? msg : "");
  if (task)
    snprintf(s->upid, sizeof(s->upid), "%s", task->upid);
}

FX_FN void fx_wait_started(struct fx *fx, struct fx_started *s)
{
  while (!s->called)
    uv_run(&fx->loop, UV_RUN_ONCE);
}

/* Runs the loop until the task has stopped and its log is on disk; returns it. */
FX_FN struct core_task *fx_wait_task(struct fx *fx, const char *upid)
{
  struct core_task *t;
  for (;;) {
    t = core_tasks_find(fx->gc.tasks, upid);
    ASSERT(t != NULL);
    if (!t->running && !t->busy && t->pending.len == 0)
      return t;
    uv_run(&fx->loop, UV_RUN_ONCE);
  }
}

/* The whole task log (static buffer). */
FX_FN const char *fx_task_log(struct fx *fx, const char *upid)
{
  static char buf[1 << 20];
  char path[1200];
  snprintf(path, sizeof(path), "%s/tasks/log/%s", fx->run, upid);
  FILE *f = fopen(path, "r");
  ASSERT(f != NULL);
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  buf[n] = '\0';
  fclose(f);
  (void)fx;
  return buf;
}

/* Fails with the whole text when `needle` is not in `log`. */
#define FX_ASSERT_LOG(log, needle)                                                   \
  do {                                                                               \
    const char *l_ = (log), *n_ = (needle);                                          \
    if (strstr(l_, n_) == NULL)                                                      \
      unit_fail(__FILE__, __LINE__, "'%s' not found in:\n%s", n_, l_);              \
  } while (0)

/* Runs a whole GC; returns the stopped task. */
FX_FN struct core_task *fx_gc(struct fx *fx)
{
  struct fx_started s = {0};
  gc_start_gc(&fx->gc, FX_STORE, "root@pam", fx_started_cb, &s);
  fx_wait_started(fx, &s);
  ASSERT_EQ(s.err, 0);
  return fx_wait_task(fx, s.upid);
}

FX_FN struct core_task *fx_verify(struct fx *fx, const struct gc_verify_opts *o)
{
  struct fx_started s = {0};
  gc_start_verify(&fx->gc, FX_STORE, "root@pam", o, fx_started_cb, &s);
  fx_wait_started(fx, &s);
  ASSERT_EQ(s.err, 0);
  return fx_wait_task(fx, s.upid);
}

FX_FN void fx_verify_opts(struct gc_verify_opts *o)
{
  memset(o, 0, sizeof(*o));
  o->max_depth = -1;
  o->time = -1;
  o->ignore_verified = 1; /* the API's default */
}

#endif
