/* sync_pull.c: the pull engine (engine threads; see sync.h).
 *
 * A pull walks the source's namespaces below remote-ns (to max-depth),
 * creates the missing local ones below ns, lists each namespace's groups,
 * applies the group filters, and hands the groups to worker-threads
 * threads. Per group (under the local group lock, so no backup or other
 * sync writes it meanwhile): the group is created with the job's owner (a
 * group owned by someone else is skipped with an error), then the source's
 * finished snapshots newer than the newest local one, plus that one again,
 * are synced, oldest first (transfer-last keeps only the newest N).
 *
 * Per snapshot: the manifest first; identical bytes locally mean nothing
 * else is fetched. Otherwise each file whose checksum differs from the
 * local manifest's is fetched to a temporary name and checked against the
 * source manifest (index: parsed, its checksum and size; blob: SHA-256 and
 * size); each chunk its indexes name is looked up in the LOCAL chunk store
 * (a touch: present chunks are kept fresh for GC, which sees this run as a
 * registered writer) and only missing ones are fetched, by up to
 * FETCHERS threads at once, each checked (CRC, size, and for unencrypted
 * chunks SHA-256 against the digest) and inserted through the normal chunk
 * path. Then the files are renamed into place, the store synced at its sync
 * level, and the manifest written last: a snapshot is complete or absent
 * (an interrupted one is unfinished, which startup recovery removes), and a
 * rerun fetches only what is still missing.
 */
#include "sync/sync_source.h"

#include "access/access.h"
#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "format/format_blob.h"
#include "format/format_index.h"
#include "format/format_manifest.h"
#include "store/store_access.h"
#include "store/store_backup.h"
#include "store/store_chunk.h"
#include "store/store_digestset.h"
#include "store/store_lock.h"
#include "store/store_path.h"
#include "store/store_registry.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FETCHERS 8
#define TMP_SUFFIX ".sync-tmp"
#define MAX_INDEX_FILE (256u * 1024 * 1024) /* an index of a 16 TiB image is 128 MiB */

struct group_item {
  char rns[FORMAT_NAME_NS_MAX_LEN + 1];
  char lns[FORMAT_NAME_NS_MAX_LEN + 1];
  char type[8];
  char id[FORMAT_NAME_ID_MAX + 1];
};

struct pull {
  struct sync_engine *e;
  const struct sync_params *p;
  struct sync_source *src;
  struct store_chunkstore *cs;
  const char *base;
  char lockdir[STORE_PATH_MAX];
  struct group_item *groups;
  size_t ngroups;
  _Atomic size_t next_group;
};

/* ---- chunks ---- */

struct want {
  uint8_t digest[32];
  uint32_t size;
};

struct fetch {
  struct pull *pl;
  struct sync_reader *r;
  struct want *list;
  size_t n;
  _Atomic size_t next;
  _Atomic int failed;
  pthread_mutex_t mutex;
  char err[256];
};

static void fetch_fail(struct fetch *f, const char *msg)
{
  pthread_mutex_lock(&f->mutex);
  if (!atomic_load(&f->failed))
    snprintf(f->err, sizeof(f->err), "%s", msg);
  atomic_store(&f->failed, 1);
  pthread_mutex_unlock(&f->mutex);
}

static void *fetch_main(void *arg)
{
  struct fetch *f = arg;
  struct sync_engine *e = f->pl->e;
  struct format_blob_ctx bctx;
  format_blob_ctx_init(&bctx);
  for (;;) {
    size_t i = atomic_fetch_add(&f->next, 1);
    if (i >= f->n || atomic_load(&f->failed))
      break;
    if (core_task_aborted(e->task)) {
      fetch_fail(f, "aborted");
      break;
    }
    const struct want *w = &f->list[i];
    struct sync_chunk c;
    char err[512], hex[65];
    core_hex_encode(w->digest, 32, hex);
    /* The plaintext size is what an incompressible chunk costs on the wire
     * (plus a header): reserved before the request, settled after it. */
    uint64_t reserved = w->size;
    sync_rate_reserve(&e->rate, reserved);
    int rc = sync_reader_chunk(f->r, w->digest, &c, err, sizeof(err));
    sync_rate_settle(&e->rate, reserved, rc < 0 ? 0 : c.len);
    if (rc < 0) {
      fetch_fail(f, err);
      break;
    }
    atomic_fetch_add(&e->bytes_fetched, c.len);
    rc = format_blob_verify_crc(c.data, c.len);
    if (rc == 0)
      rc = format_blob_verify_chunk(&bctx, c.data, c.len, w->digest, w->size);
    if (rc < 0) {
      snprintf(err, sizeof(err), "chunk %s from the source is corrupt: %s", hex,
               core_strerror(rc));
      sync_chunk_free(&c);
      fetch_fail(f, err);
      break;
    }
    if (e->s3) {
      /* S3: the backup path's upload (bucket first, then the cache). */
      char serr[256];
      rc = sync__s3_chunk(e, w->digest, w->size, c.data, c.len, serr, sizeof(serr));
      if (rc < 0)
        snprintf(err, sizeof(err), "chunk %s: %s", hex, serr);
    } else {
      struct store_chunk_insert_result res;
      /* The blob as received: verified above, written as it is (a pooled,
       * page-aligned buffer goes to the disk with O_DIRECT). */
      rc = store_chunk_insert(f->pl->cs, w->digest, c.data, c.len, &res);
      if (rc < 0)
        snprintf(err, sizeof(err), "cannot store chunk %s: %s", hex, core_strerror(rc));
    }
    sync_chunk_free(&c);
    if (rc < 0) {
      fetch_fail(f, err);
      break;
    }
    atomic_fetch_add(&e->chunks_fetched, 1);
  }
  format_blob_ctx_free(&bctx);
  return NULL;
}

/* Is the local copy of a chunk sound? (resync-corrupt) */
static int local_chunk_ok(struct pull *pl, const struct want *w)
{
  struct core_buf b;
  core_buf_init(&b, STORE_CHUNK_MAX_ENCODED);
  int rc = store_chunk_read(pl->cs, w->digest, &b);
  if (rc >= 0) {
    struct format_blob_ctx bctx;
    format_blob_ctx_init(&bctx);
    rc = format_blob_verify_crc(b.base, b.len);
    if (rc == 0)
      rc = format_blob_verify_chunk(&bctx, b.base, b.len, w->digest, w->size);
    format_blob_ctx_free(&bctx);
  }
  core_buf_free(&b);
  return rc >= 0;
}

/* Fetches what the local chunk store lacks of `set`. Digests in `known`
 * (the previous local snapshot's chunks, with the same size) are present
 * without asking the file system. */
static int fetch_chunks(struct pull *pl, struct sync_reader *r, struct store_digestset *set,
                        const struct store_digestset *known, int check_local, char *err,
                        size_t errlen)
{
  struct fetch f;
  memset(&f, 0, sizeof(f));
  f.pl = pl;
  f.r = r;
  pthread_mutex_init(&f.mutex, NULL);
  f.list = core_calloc(set->count ? set->count : 1, sizeof(*f.list));
  for (size_t i = 0; i < set->cap; i++) {
    const struct store_digest_entry *d = &set->slots[i];
    if (!d->used)
      continue;
    struct want w;
    memcpy(w.digest, d->digest, 32);
    w.size = d->size;
    uint32_t ksize;
    if (!check_local && store_digestset_get(known, w.digest, &ksize) && ksize == w.size) {
      atomic_fetch_add(&pl->e->chunks_known, 1);
      continue;
    }
    /* A touch is the existence check: one syscall, and a present chunk gets
     * a fresh atime, so GC keeps it until the manifest references it. */
    int rc = store_chunk_touch(pl->cs, w.digest);
    if (rc == 0 && check_local && !local_chunk_ok(pl, &w)) {
      store_chunk_mark_bad(pl->cs, w.digest);
      rc = CORE_ENOTFOUND;
    }
    if (rc == 0) {
      atomic_fetch_add(&pl->e->chunks_known, 1);
      continue;
    }
    if (rc != CORE_ENOTFOUND) {
      snprintf(err, errlen, "chunk store: %s", core_strerror(rc));
      core_free(f.list);
      pthread_mutex_destroy(&f.mutex);
      return rc;
    }
    f.list[f.n++] = w;
  }
  int rc = 0;
  if (f.n) {
    size_t nt = f.n < FETCHERS ? f.n : FETCHERS;
    pthread_t th[FETCHERS];
    size_t started = 0;
    for (; started < nt; started++)
      if (pthread_create(&th[started], NULL, fetch_main, &f) != 0)
        break;
    if (started == 0)
      fetch_main(&f);
    for (size_t i = 0; i < started; i++)
      pthread_join(th[i], NULL);
    if (atomic_load(&f.failed)) {
      snprintf(err, errlen, "%s", f.err);
      rc = CORE_EPROTO;
    }
  }
  core_free(f.list);
  pthread_mutex_destroy(&f.mutex);
  return rc;
}

/* ---- snapshots ---- */

struct staged {
  char *name;     /* file name in the snapshot */
  int tmp;        /* written under name + TMP_SUFFIX */
};

static int file_matches(const struct format_manifest_file *mf, const uint8_t *data, size_t len,
                        struct store_digestset *chunks, char *err, size_t errlen)
{
  int kind = format_index_kind_from_name(mf->filename);
  if (kind < 0) {
    uint8_t csum[32];
    core_sha256(data, len, csum);
    if (len != mf->size || memcmp(csum, mf->csum, 32) != 0) {
      snprintf(err, errlen, "%s does not match the manifest", mf->filename);
      return CORE_ECSUM;
    }
    return 0;
  }
  struct format_index idx;
  int rc = format_index_parse(data, len, 0, &idx);
  if (rc < 0 || (int)idx.kind != kind || idx.size != mf->size ||
      memcmp(idx.csum, mf->csum, 32) != 0) {
    snprintf(err, errlen, "%s does not match the manifest%s%s", mf->filename,
             rc < 0 ? ": " : "", rc < 0 ? core_strerror(rc) : "");
    return rc < 0 ? rc : CORE_ECSUM;
  }
  if (chunks == NULL)
    return 0;
  for (uint64_t i = 0; i < idx.count; i++) {
    uint64_t start, end;
    format_index_chunk_range(&idx, i, &start, &end);
    if (end - start > FORMAT_FIDX_MAX_CHUNK_SIZE || end == start) {
      snprintf(err, errlen, "%s: chunk %" PRIu64 " has an invalid size", mf->filename, i);
      return CORE_EFORMAT;
    }
    rc = store_digestset_add(chunks, format_index_digest(&idx, i), (uint32_t)(end - start));
    if (rc < 0) {
      snprintf(err, errlen, "too many chunks in one snapshot");
      return rc;
    }
  }
  return 0;
}

static int manifest_verify_state(const struct format_manifest *m, const char *state)
{
  char *vs = format_manifest_unprotected_get(m, "verify_state");
  int ok = 0;
  if (vs) {
    char want[64];
    snprintf(want, sizeof(want), "\"state\":\"%s\"", state);
    ok = strstr(vs, want) != NULL;
    core_free(vs);
  }
  return ok;
}

static int all_encrypted(const struct format_manifest *m)
{
  for (size_t i = 0; i < m->nfiles; i++)
    if (m->files[i].crypt_mode != FORMAT_CRYPT_MODE_ENCRYPT)
      return 0;
  return m->nfiles > 0;
}

/* Returns 1 if the local snapshot's manifest says its last verify failed. */
static int local_verify_failed(struct pull *pl, const char *ns, const char *type,
                               const char *id, int64_t t)
{
  char path[STORE_PATH_MAX];
  if (store_path_file(path, sizeof(path), pl->base, ns, type, id, t, FORMAT_MANIFEST_NAME) < 0)
    return 0;
  uint8_t *data;
  size_t len;
  if (core_file_read(path, FORMAT_MANIFEST_MAX_LEN, &data, &len) < 0)
    return 0;
  struct format_blob_ctx bctx;
  format_blob_ctx_init(&bctx);
  struct format_manifest m;
  int failed = 0;
  if (format_manifest_decode_blob(&bctx, data, len, &m) == 0)
    failed = manifest_verify_state(&m, "failed");
  format_manifest_free(&m);
  format_blob_ctx_free(&bctx);
  core_free(data);
  return failed;
}

/* The chunks of the previous local snapshot (`prev`, finished, older than
 * the one being pulled) into `known`, as a backup session registers its
 * base's chunks: a finished snapshot's chunks are in the store, so they need
 * no stat, and an incremental pull of a large datastore reads one index
 * instead of touching every chunk it names. Its shared lock, held in `lock`
 * until the new snapshot is finished, keeps prune away from it meanwhile
 * (GC marks what it references). A snapshot whose last verify failed is no
 * such base. Best effort: whatever cannot be read is simply not known, and
 * those chunks are looked up in the chunk store as before. */
static void load_previous(struct pull *pl, const struct group_item *g, int64_t prev,
                          struct store_digestset *known, struct store_lock_guard *lock)
{
  char dir[STORE_PATH_MAX], path[STORE_PATH_MAX + 200];
  uint8_t *mdata = NULL;
  size_t mlen = 0;
  struct format_blob_ctx bctx;
  struct format_manifest pm;
  int have_pm = 0;
  format_blob_ctx_init(&bctx);
  if (store_lock_snapshot_in_group(pl->lockdir, g->lns, g->type, g->id, prev,
                                   STORE_LOCK_SHARED, lock) < 0 ||
      store_path_snapshot(dir, sizeof(dir), pl->base, g->lns, g->type, g->id, prev) < 0)
    goto out;
  snprintf(path, sizeof(path), "%s/%s", dir, FORMAT_MANIFEST_NAME);
  if (core_file_read(path, FORMAT_MANIFEST_MAX_LEN, &mdata, &mlen) < 0)
    goto out;
  if (format_manifest_decode_blob(&bctx, mdata, mlen, &pm) < 0) {
    format_manifest_free(&pm);
    goto out;
  }
  have_pm = 1;
  if (manifest_verify_state(&pm, "failed"))
    goto out;
  for (size_t i = 0; i < pm.nfiles; i++) {
    const char *name = pm.files[i].filename;
    if (format_index_kind_from_name(name) < 0)
      continue;
    uint8_t *data = NULL;
    size_t len = 0;
    struct format_index idx;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (core_file_read(path, MAX_INDEX_FILE, &data, &len) < 0)
      continue;
    if (format_index_parse(data, len, FORMAT_INDEX_SKIP_CSUM, &idx) == 0) {
      for (uint64_t k = 0; k < idx.count; k++) {
        uint64_t start, end;
        format_index_chunk_range(&idx, k, &start, &end);
        if (end > start && end - start <= FORMAT_FIDX_MAX_CHUNK_SIZE &&
            store_digestset_add(known, format_index_digest(&idx, k), (uint32_t)(end - start)) < 0)
          break;
      }
    }
    core_free(data);
  }
out:
  if (have_pm)
    format_manifest_free(&pm);
  format_blob_ctx_free(&bctx);
  core_free(mdata);
}

/* Syncs one snapshot. Returns 0 (synced, up to date or skipped by a
 * filter) or an error (logged by the caller). `prev` is the newest finished
 * local snapshot older than `t`, or -1. */
static int pull_snapshot(struct pull *pl, const struct group_item *g, int64_t t, int64_t prev,
                         int corrupt, char *err, size_t errlen)
{
  struct sync_engine *e = pl->e;
  const struct sync_params *p = pl->p;
  char snapdir[STORE_PATH_MAX], path[STORE_PATH_MAX + 200], tname[FORMAT_NAME_TIME_LEN + 1];
  format_name_time_format(t, tname);
  int rc = store_path_snapshot(snapdir, sizeof(snapdir), pl->base, g->lns, g->type, g->id, t);
  if (rc < 0) {
    snprintf(err, errlen, "path: %s", core_strerror(rc));
    return rc;
  }
  struct sync_reader *r = NULL;
  uint8_t *mdata = NULL, *ldata = NULL;
  size_t mlen = 0, llen = 0;
  struct format_blob_ctx bctx;
  format_blob_ctx_init(&bctx);
  struct format_manifest m, lm;
  int have_m = 0, have_lm = 0, created = 0;
  struct staged *staged = NULL;
  size_t nstaged = 0;
  struct store_digestset chunks, known;
  store_digestset_init(&chunks, 16u * 1024 * 1024);
  store_digestset_init(&known, 16u * 1024 * 1024);
  struct store_lock_guard slock = STORE_LOCK_GUARD_INIT, plock = STORE_LOCK_GUARD_INIT;

  rc = sync_reader_open(pl->src, g->rns, g->type, g->id, t, &r, err, errlen);
  if (rc < 0)
    goto cleanup;
  rc = sync_reader_file(r, FORMAT_MANIFEST_NAME, &mdata, &mlen, err, errlen);
  if (rc < 0)
    goto cleanup;
  snprintf(path, sizeof(path), "%s/%s", snapdir, FORMAT_MANIFEST_NAME);
  int lrc = core_file_read(path, FORMAT_MANIFEST_MAX_LEN, &ldata, &llen);
  if (lrc == 0 && llen == mlen && memcmp(ldata, mdata, mlen) == 0 && !corrupt) {
    core_task_log(e->task, "%s/%s/%s: up to date", g->type, g->id, tname);
    goto cleanup;
  }
  rc = format_manifest_decode_blob(&bctx, mdata, mlen, &m);
  have_m = 1;
  if (rc < 0 || strcmp(m.backup_type, g->type) || strcmp(m.backup_id, g->id) ||
      m.backup_time != t) {
    snprintf(err, errlen, "%s/%s/%s: the source manifest is invalid%s%s", g->type, g->id,
             tname, rc < 0 ? ": " : "", rc < 0 ? core_strerror(rc) : "");
    rc = rc < 0 ? rc : CORE_EFORMAT;
    goto cleanup;
  }
  if (p->encrypted_only && !all_encrypted(&m)) {
    core_task_log(e->task, "%s/%s/%s: skipped, not encrypted", g->type, g->id, tname);
    goto cleanup;
  }
  if (p->verified_only && !manifest_verify_state(&m, "ok")) {
    core_task_log(e->task, "%s/%s/%s: skipped, not verified", g->type, g->id, tname);
    goto cleanup;
  }
  if (lrc == 0 && format_manifest_decode_blob(&bctx, ldata, llen, &lm) == 0)
    have_lm = 1;
  else if (lrc == 0)
    format_manifest_free(&lm);

  rc = store_lock_snapshot(pl->lockdir, g->lns, g->type, g->id, t, STORE_LOCK_EXCLUSIVE,
                           &slock);
  if (rc < 0) {
    snprintf(err, errlen, "%s/%s/%s: snapshot is busy: %s", g->type, g->id, tname,
             core_strerror(rc));
    goto cleanup;
  }
  if (lrc == CORE_ENOTFOUND || lrc == -ENOENT) {
    /* New here, or left unfinished by an interrupted run: start afresh. */
    struct stat st;
    if (stat(snapdir, &st) == 0)
      store_snapshot_delete(pl->base, g->lns, g->type, g->id, t);
    rc = store_snapshot_create(pl->base, g->lns, g->type, g->id, t);
    if (rc < 0) {
      snprintf(err, errlen, "cannot create snapshot %s: %s", tname, core_strerror(rc));
      goto cleanup;
    }
    created = 1;
  }
  staged = core_calloc(m.nfiles ? m.nfiles : 1, sizeof(*staged));
  for (size_t i = 0; i < m.nfiles; i++) {
    const struct format_manifest_file *mf = &m.files[i];
    const struct format_manifest_file *lf = have_lm ? format_manifest_find_file(&lm, mf->filename) : NULL;
    if (lf && !corrupt && lf->size == mf->size && memcmp(lf->csum, mf->csum, 32) == 0)
      continue; /* unchanged */
    uint8_t *data = NULL;
    size_t len = 0;
    rc = sync_reader_file(r, mf->filename, &data, &len, err, errlen);
    if (rc == 0) {
      sync_rate_take(&e->rate, len);
      atomic_fetch_add(&e->bytes_fetched, len);
      rc = file_matches(mf, data, len, &chunks, err, errlen);
    }
    if (rc == 0) {
      snprintf(path, sizeof(path), "%s/%s%s", snapdir, mf->filename, TMP_SUFFIX);
      rc = core_file_replace(path, data, len, 0644, 0);
      if (rc < 0)
        snprintf(err, errlen, "cannot write %s: %s", mf->filename, core_strerror(rc));
      else
        staged[nstaged++].name = core_strdup(mf->filename);
    }
    core_free(data);
    if (rc < 0)
      goto cleanup;
    if (core_task_aborted(e->task)) {
      rc = CORE_EABORTED;
      snprintf(err, errlen, "aborted");
      goto cleanup;
    }
  }
  if (!corrupt && prev >= 0 && prev < t && chunks.count > 0)
    load_previous(pl, g, prev, &known, &plock);
  rc = fetch_chunks(pl, r, &chunks, &known, corrupt, err, errlen);
  if (rc < 0)
    goto cleanup;
  char **placed = core_calloc(nstaged ? nstaged : 1, sizeof(char *));
  size_t nplaced = 0;
  for (size_t i = 0; i < nstaged; i++) {
    char from[STORE_PATH_MAX + 200];
    snprintf(from, sizeof(from), "%s/%s%s", snapdir, staged[i].name, TMP_SUFFIX);
    snprintf(path, sizeof(path), "%s/%s", snapdir, staged[i].name);
    if (rename(from, path) < 0) {
      rc = -errno;
      snprintf(err, errlen, "cannot rename %s: %s", staged[i].name, core_strerror(rc));
      break;
    }
    placed[nplaced++] = core_strdup(path);
    core_free(staged[i].name);
    staged[i].name = NULL;
  }
  if (rc == 0)
    nstaged = 0;
  /* S3: the files go to the bucket's metadata copy before the manifest. */
  if (rc == 0 && e->s3 && nplaced)
    rc = sync__s3_mirror(e, (const char *const *)placed, nplaced, err, errlen);
  for (size_t i = 0; i < nplaced; i++)
    core_free(placed[i]);
  core_free(placed);
  if (rc < 0)
    goto cleanup;
  rc = e->s3 ? 0 : store_chunkstore_sync(pl->cs);
  /* S3: the manifest waits under its upload name until the bucket has it
   * (the manifest last), as a backup's finish does, so a crash between the
   * two never leaves a snapshot finished in the cache but not in the bucket. */
  if (rc == 0) {
    snprintf(path, sizeof(path), "%s/%s", snapdir,
             e->s3 ? MANIFEST_UPLOAD_NAME : FORMAT_MANIFEST_NAME);
    rc = core_file_replace(path, mdata, mlen, 0644, 1);
  }
  if (rc < 0) {
    snprintf(err, errlen, "cannot finish snapshot %s: %s", tname, core_strerror(rc));
    goto cleanup;
  }
  if (e->s3) {
    char final[STORE_PATH_MAX + 200];
    rc = sync__s3_mirror_snapshot(e, g->lns, g->type, g->id, t, MANIFEST_UPLOAD_NAME, err,
                                  errlen);
    snprintf(final, sizeof(final), "%s/%s", snapdir, FORMAT_MANIFEST_NAME);
    if (rc == 0 && (rc = rename(path, final) < 0 ? -errno : core_file_fsync_parent(final)) < 0)
      snprintf(err, errlen, "cannot finish snapshot %s: %s", tname, core_strerror(rc));
    if (rc < 0) {
      unlink(path);
      goto cleanup;
    }
  }
  created = 0;
  atomic_fetch_add(&e->snapshots_synced, 1);
  core_task_log(e->task, "%s/%s/%s: synced (%zu files, %zu chunks referenced)", g->type,
                g->id, tname, m.nfiles, chunks.count);

cleanup:
  for (size_t i = 0; i < nstaged; i++) {
    if (staged[i].name) {
      snprintf(path, sizeof(path), "%s/%s%s", snapdir, staged[i].name, TMP_SUFFIX);
      unlink(path);
      core_free(staged[i].name);
    }
  }
  core_free(staged);
  if (created && rc < 0) {
    store_snapshot_delete(pl->base, g->lns, g->type, g->id, t);
    char uerr[256];
    if (e->s3)
      sync__s3_unmirror(e, snapdir, uerr, sizeof(uerr));
  }
  store_lock_release(&slock);
  store_lock_release(&plock);
  store_digestset_free(&chunks);
  store_digestset_free(&known);
  if (have_m)
    format_manifest_free(&m);
  if (have_lm)
    format_manifest_free(&lm);
  format_blob_ctx_free(&bctx);
  core_free(mdata);
  core_free(ldata);
  sync_reader_close(r);
  return rc;
}

/* Deletes local snapshots the source no longer has (never protected ones). */
static void remove_vanished_snapshots(struct pull *pl, const struct group_item *g,
                                      const struct store_snapshot_list *remote)
{
  struct store_snapshot_list local;
  if (store_snapshot_list(pl->base, g->lns, g->type, g->id, &local) < 0)
    return;
  for (size_t i = 0; i < local.n; i++) {
    const struct store_snapshot_info *s = &local.items[i];
    int found = 0;
    for (size_t j = 0; j < remote->n && !found; j++)
      found = remote->items[j].time == s->time;
    if (found || !s->finished)
      continue;
    char tname[FORMAT_NAME_TIME_LEN + 1];
    format_name_time_format(s->time, tname);
    if (s->is_protected) {
      core_task_log(pl->e->task, "%s/%s/%s: vanished on the source, kept: protected", g->type,
                    g->id, tname);
      continue;
    }
    struct store_lock_guard lk = STORE_LOCK_GUARD_INIT;
    int rc = store_lock_snapshot(pl->lockdir, g->lns, g->type, g->id, s->time,
                                 STORE_LOCK_EXCLUSIVE, &lk);
    if (rc == 0)
      rc = store_snapshot_delete(pl->base, g->lns, g->type, g->id, s->time);
    store_lock_release(&lk);
    if (rc == 0 && pl->e->s3) {
      char dir[STORE_PATH_MAX], uerr[256];
      if (store_path_snapshot(dir, sizeof(dir), pl->base, g->lns, g->type, g->id, s->time) >= 0 &&
          sync__s3_unmirror(pl->e, dir, uerr, sizeof(uerr)) < 0)
        core_task_warn(pl->e->task, "%s/%s/%s: %s", g->type, g->id, tname, uerr);
    }
    if (rc < 0 && rc != CORE_ENOTFOUND)
      core_task_warn(pl->e->task, "%s/%s/%s: cannot remove vanished snapshot: %s", g->type,
                     g->id, tname, core_strerror(rc));
    else
      core_task_log(pl->e->task, "%s/%s/%s: removed, vanished on the source", g->type, g->id,
                    tname);
  }
  store_snapshot_list_free(&local);
}

static void pull_group(struct pull *pl, const struct group_item *g)
{
  struct sync_engine *e = pl->e;
  const struct sync_params *p = pl->p;
  char err[512];
  struct store_lock_guard glock = STORE_LOCK_GUARD_INIT;
  int rc = store_lock_group(pl->lockdir, g->lns, g->type, g->id, STORE_LOCK_EXCLUSIVE, &glock);
  if (rc < 0) {
    sync__fail(e, "group %s/%s in '%s': busy (%s)", g->type, g->id, g->lns, core_strerror(rc));
    return;
  }
  char *owner = NULL;
  rc = store_group_create(pl->base, g->lns, g->type, g->id, p->owner, &owner);
  if (rc < 0) {
    sync__fail(e, "group %s/%s: cannot create: %s", g->type, g->id, core_strerror(rc));
    goto out;
  }
  if (!store_access_owns(p->owner, owner)) {
    sync__fail(e, "group %s/%s in '%s' is owned by %s, not %s: skipped", g->type, g->id,
               g->lns, owner, p->owner);
    goto out;
  }
  struct store_snapshot_list remote, local;
  rc = sync_source_list_snapshots(pl->src, g->rns, g->type, g->id, &remote, err, sizeof(err));
  if (rc < 0) {
    sync__fail(e, "group %s/%s: %s", g->type, g->id, err);
    goto out;
  }
  rc = store_snapshot_list(pl->base, g->lns, g->type, g->id, &local);
  if (rc < 0) {
    sync__fail(e, "group %s/%s: cannot list local snapshots: %s", g->type, g->id,
               core_strerror(rc));
    store_snapshot_list_free(&remote);
    goto out;
  }
  int64_t newest = -1;
  for (size_t i = 0; i < local.n; i++)
    if (local.items[i].finished && local.items[i].time > newest)
      newest = local.items[i].time;
  /* The finished source snapshots; transfer-last keeps the newest N. */
  size_t nfin = 0;
  for (size_t i = 0; i < remote.n; i++)
    nfin += remote.items[i].finished != 0;
  size_t skip_before = p->transfer_last && nfin > p->transfer_last ? nfin - p->transfer_last : 0;
  size_t k = 0;
  int64_t synced = -1; /* the newest snapshot this run finished here */
  for (size_t i = 0; i < remote.n && !core_task_aborted(e->task); i++) {
    const struct store_snapshot_info *s = &remote.items[i];
    if (!s->finished)
      continue;
    size_t pos = k++;
    int corrupt = 0;
    if (p->resync_corrupt && s->time <= newest)
      corrupt = local_verify_failed(pl, g->lns, g->type, g->id, s->time);
    if (!corrupt && (s->time < newest || pos < skip_before))
      continue;
    /* The base whose chunks need no lookup: the newest finished local
     * snapshot older than this one (listed before the run, or pulled by it). */
    int64_t prev = synced < s->time ? synced : -1;
    for (size_t j = 0; j < local.n; j++)
      if (local.items[j].finished && local.items[j].time < s->time && local.items[j].time > prev)
        prev = local.items[j].time;
    rc = pull_snapshot(pl, g, s->time, prev, corrupt, err, sizeof(err));
    if (rc < 0)
      sync__fail(e, "group %s/%s: %s", g->type, g->id, err);
    else if (s->time > synced)
      synced = s->time;
  }
  if (p->remove_vanished && !core_task_aborted(e->task))
    remove_vanished_snapshots(pl, g, &remote);
  store_snapshot_list_free(&remote);
  store_snapshot_list_free(&local);
out:
  core_free(owner);
  store_lock_release(&glock);
}

static void *group_main(void *arg)
{
  struct pull *pl = arg;
  for (;;) {
    size_t i = atomic_fetch_add(&pl->next_group, 1);
    if (i >= pl->ngroups || core_task_aborted(pl->e->task))
      break;
    pull_group(pl, &pl->groups[i]);
  }
  return NULL;
}

/* remove-vanished, after the groups: local groups of the job's owner that
 * the source does not have (any more), then empty namespaces. */
static void remove_vanished_groups(struct pull *pl, const struct store_ns_list *rns)
{
  struct sync_engine *e = pl->e;
  const struct sync_params *p = pl->p;
  struct store_ns_list lns;
  int depth = p->max_depth;
  if (store_ns_list(pl->base, p->ns, depth, &lns) < 0)
    return;
  for (size_t i = 0; i < lns.n; i++) {
    struct store_group_list gl;
    if (store_group_list(pl->base, lns.items[i], &gl) < 0)
      continue;
    for (size_t j = 0; j < gl.n; j++) {
      struct store_group_info *gi = &gl.items[j];
      int found = 0;
      for (size_t k = 0; k < pl->ngroups && !found; k++)
        found = !strcmp(pl->groups[k].lns, lns.items[i]) &&
                !strcmp(pl->groups[k].type, gi->type) && !strcmp(pl->groups[k].id, gi->id);
      if (found || !sync_filters_match(&p->filters, gi->type, gi->id))
        continue;
      if (gi->owner == NULL || !store_access_owns(p->owner, gi->owner))
        continue;
      struct group_item g;
      memset(&g, 0, sizeof(g));
      snprintf(g.lns, sizeof(g.lns), "%s", lns.items[i]);
      snprintf(g.type, sizeof(g.type), "%s", gi->type);
      snprintf(g.id, sizeof(g.id), "%s", gi->id);
      struct store_snapshot_list none = {NULL, 0};
      struct store_lock_guard lk = STORE_LOCK_GUARD_INIT;
      if (store_lock_group(pl->lockdir, g.lns, g.type, g.id, STORE_LOCK_EXCLUSIVE, &lk) < 0) {
        core_task_warn(e->task, "group %s/%s: busy, not removed", g.type, g.id);
        continue;
      }
      remove_vanished_snapshots(pl, &g, &none);
      struct store_snapshot_list left;
      if (store_snapshot_list(pl->base, g.lns, g.type, g.id, &left) == 0) {
        if (left.n == 0 && store_group_delete(pl->base, g.lns, g.type, g.id) == 0) {
          core_task_log(e->task, "group %s/%s in '%s': removed, vanished on the source",
                        g.type, g.id, g.lns);
          char dir[STORE_PATH_MAX], uerr[256];
          if (e->s3 && store_path_group(dir, sizeof(dir), pl->base, g.lns, g.type, g.id) >= 0)
            sync__s3_unmirror(e, dir, uerr, sizeof(uerr));
        }
        store_snapshot_list_free(&left);
      }
      store_lock_release(&lk);
    }
    store_group_list_free(&gl);
  }
  /* Namespaces below ns the source does not have, deepest first. */
  for (size_t i = lns.n; i-- > 0;) {
    const char *ln = lns.items[i];
    if (!strcmp(ln, p->ns))
      continue;
    int found = 0;
    char mapped[FORMAT_NAME_NS_MAX_LEN + 1];
    for (size_t k = 0; k < rns->n && !found; k++)
      found = sync__map_ns(p->remote_ns, p->ns, rns->items[k], mapped, sizeof(mapped)) == 0 &&
              !strcmp(mapped, ln);
    if (found)
      continue;
    struct store_lock_guard lk = STORE_LOCK_GUARD_INIT;
    if (store_lock_namespace(pl->lockdir, ln, STORE_LOCK_EXCLUSIVE, &lk) == 0) {
      if (store_ns_delete(pl->base, ln, 0) == 0) {
        core_task_log(e->task, "namespace '%s': removed, vanished on the source", ln);
        char dir[STORE_PATH_MAX], uerr[256];
        if (e->s3 && store_path_ns(dir, sizeof(dir), pl->base, ln) >= 0)
          sync__s3_unmirror(e, dir, uerr, sizeof(uerr));
      }
      store_lock_release(&lk);
    }
  }
  store_ns_list_free(&lns);
}

int sync__pull(struct sync_engine *e)
{
  const struct sync_params *p = e->p;
  struct pull pl;
  memset(&pl, 0, sizeof(pl));
  pl.e = e;
  pl.p = p;
  pl.base = e->ds->path;
  char err[512];
  uint64_t token = 0;
  int writer = 0;
  struct store_ns_list rns = {NULL, 0};
  int rc = sync__open_local(e, pl.lockdir, sizeof(pl.lockdir), &pl.cs);
  if (rc < 0)
    return rc;
  /* A registered writer: GC keeps chunks touched since this run began. */
  rc = store_chunkstore_writer_begin(pl.cs, (int64_t)time(NULL), &token);
  if (rc < 0) {
    snprintf(e->err, sizeof(e->err), "cannot register as a writer: %s", core_strerror(rc));
    return rc;
  }
  writer = 1;
  rc = sync_source_open(e, &pl.src, err, sizeof(err));
  if (rc < 0) {
    snprintf(e->err, sizeof(e->err), "cannot reach the source: %s", err);
    goto out;
  }
  core_task_log(e->task, "pulling %s%s%s:%s namespace '%s' into %s namespace '%s'",
                p->remote ? "remote " : "local datastore", p->remote ? p->remote : "",
                p->remote ? " store" : "", p->remote_store, p->remote_ns, p->store, p->ns);
  rc = sync_source_list_ns(pl.src, p->remote_ns, p->max_depth, &rns, err, sizeof(err));
  if (rc < 0) {
    snprintf(e->err, sizeof(e->err), "%s", err);
    goto out;
  }
  if (rns.n == 0) {
    snprintf(e->err, sizeof(e->err), "source namespace '%s' not found", p->remote_ns);
    rc = CORE_ENOTFOUND;
    goto out;
  }
  size_t cap = 64;
  pl.groups = core_calloc(cap, sizeof(*pl.groups));
  for (size_t i = 0; i < rns.n && !core_task_aborted(e->task); i++) {
    char lns[FORMAT_NAME_NS_MAX_LEN + 1];
    int mrc = sync__map_ns(p->remote_ns, p->ns, rns.items[i], lns, sizeof(lns));
    if (mrc == CORE_ENAME) {
      sync__fail(e, "the source listed namespace '%s', which is not below '%s'", rns.items[i],
                 p->remote_ns);
      continue;
    }
    if (mrc < 0) {
      sync__fail(e, "namespace '%s' is too deep to map below '%s'", rns.items[i], p->ns);
      continue;
    }
    if (lns[0]) {
      int ex = store_ns_exists(pl.base, lns);
      if (ex == 0) {
        rc = store_ns_create(pl.base, lns);
        if (rc < 0 && rc != CORE_EEXISTS) {
          sync__fail(e, "cannot create namespace '%s': %s", lns, core_strerror(rc));
          continue;
        }
        core_task_log(e->task, "created namespace '%s'", lns);
      } else if (ex < 0) {
        sync__fail(e, "namespace '%s': %s", lns, core_strerror(ex));
        continue;
      }
    }
    struct store_group_list gl;
    rc = sync_source_list_groups(pl.src, rns.items[i], &gl, err, sizeof(err));
    if (rc < 0) {
      sync__fail(e, "namespace '%s': %s", rns.items[i], err);
      continue;
    }
    for (size_t j = 0; j < gl.n; j++) {
      if (!sync_filters_match(&p->filters, gl.items[j].type, gl.items[j].id))
        continue;
      if (pl.ngroups == cap) {
        cap *= 2;
        pl.groups = core_realloc(pl.groups, cap * sizeof(*pl.groups));
      }
      struct group_item *g = &pl.groups[pl.ngroups++];
      memset(g, 0, sizeof(*g));
      snprintf(g->rns, sizeof(g->rns), "%s", rns.items[i]);
      snprintf(g->lns, sizeof(g->lns), "%s", lns);
      snprintf(g->type, sizeof(g->type), "%s", gl.items[j].type);
      snprintf(g->id, sizeof(g->id), "%s", gl.items[j].id);
    }
    store_group_list_free(&gl);
  }
  core_task_log(e->task, "%zu namespaces, %zu groups to sync with %d worker thread(s)", rns.n,
                pl.ngroups, p->worker_threads);
  int nt = p->worker_threads < 1 ? 1 : p->worker_threads;
  if ((size_t)nt > pl.ngroups)
    nt = (int)pl.ngroups;
  pthread_t th[SYNC_MAX_WORKERS];
  int started = 0;
  for (; started < nt; started++)
    if (pthread_create(&th[started], NULL, group_main, &pl) != 0)
      break;
  if (started == 0)
    group_main(&pl);
  for (int i = 0; i < started; i++)
    pthread_join(th[i], NULL);
  if (p->remove_vanished && !core_task_aborted(e->task))
    remove_vanished_groups(&pl, &rns);
  rc = 0;
  if (core_task_aborted(e->task)) {
    rc = CORE_EABORTED;
    snprintf(e->err, sizeof(e->err), "aborted");
  }
out:
  core_task_log(e->task,
                "summary: %" PRIu64 " snapshots synced, %" PRIu64 " chunks fetched (%" PRIu64
                " bytes with files), %" PRIu64 " chunks already present",
                atomic_load(&e->snapshots_synced), atomic_load(&e->chunks_fetched),
                atomic_load(&e->bytes_fetched), atomic_load(&e->chunks_known));
  core_task_log(e->task, "transfer: %" PRIu64 " bytes in %.3f s", atomic_load(&e->rate.bytes),
                sync_rate_window(&e->rate));
  if (p->remote && pl.src) {
    uint64_t opened, reused;
    sync_source_conn_stats(pl.src, &opened, &reused);
    core_task_log(e->task, "connections: %" PRIu64 " opened, %" PRIu64 " requests reused one",
                  opened, reused);
  }
  store_ns_list_free(&rns);
  core_free(pl.groups);
  sync_source_close(pl.src);
  if (writer)
    store_chunkstore_writer_end(pl.cs, token);
  return sync__finish(e, rc, "sync");
}
