/* gc_verify.c: the verify task.
 *
 * For every selected finished snapshot (newest first per group) under a
 * shared snapshot lock (so prune cannot remove it meanwhile; a snapshot that
 * cannot be locked is skipped, as PBS does):
 *   - decode the manifest;
 *   - each blob file: size and SHA-256 as the manifest says, CRC intact;
 *   - each index: size and index checksum as the manifest says, then every
 *     chunk it references: read, CRC, decompress into SHA-256, digest and
 *     size as the index says (encrypted chunks: CRC and header only, the
 *     server has no key). A chunk is checked once per run: good ones go into
 *     `verified`, bad or missing ones into `corrupt` (a later reference to a
 *     corrupt chunk fails that snapshot too without re-reading). A corrupt
 *     chunk file is renamed to <digest>.N.bad, so a later backup re-uploads
 *     it and GC keeps the evidence until the cutoff;
 *   - record unprotected.verify_state = {state: ok|failed, upid} in the
 *     manifest, under the manifest lock, re-encoded and renamed into place.
 * Each pool job does one step of that, at most CHUNK_BUDGET chunks or
 * BYTES_BUDGET bytes of chunk reads, so an abort lands quickly and the loop
 * is never starved. The task fails, naming every failed snapshot, when any
 * snapshot failed.
 */
#include "gc/gc_api.h"
#include "gc/gc_cache.h"

#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_fmt.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "store/store_s3.h"
#include "format/format_blob.h"
#include "store/store_chunk.h"
#include "format/format_index.h"
#include "store/store_lock.h"
#include "format/format_manifest.h"
#include "format/format_name.h"
#include "store/store_path.h"
#include "store/store_snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK_BUDGET 256u
#define BYTES_BUDGET (64u * 1024 * 1024)
#define VERIFIED_MAX (4u * 1024 * 1024) /* digests remembered per run */
#define FAILED_NAMES_IN_STATUS 10

enum vstep {
  V_LIST,
  V_SNAP_BEGIN,
  V_FILE,
  V_SNAP_END,
  V_RELEASE, /* abort path: drop the snapshot lock */
};

struct snap_ref {
  char *ns;
  char type[8];
  char *id;
  int64_t time;
};

struct vfile {
  char *name;                    /* owned archive name */
  int kind;                      /* enum format_archive_kind */
  enum format_crypt_mode mode;
  uint64_t size;
  uint8_t csum[32];
};

struct verify_run {
  struct core_job job;
  struct gc_ctx *ctx;
  struct core_task *task;
  struct store_datastore *ds;    /* reference + STORE_OP_READ */
  char *base;
  char lockdir[STORE_PATH_MAX];
  struct gc_verify_opts opts;
  enum vstep step;
  /* job-owned */
  struct store_chunkstore *cs;
  struct format_blob_ctx bctx;
  struct core_buf buf;           /* chunk / blob reads */
  struct store_s3_fetcher *fetcher; /* S3 datastores: chunks not in the cache */
  struct snap_ref *snaps;
  size_t n_snaps, cur;
  struct store_lock_guard guard; /* shared lock on snaps[cur] while verifying it */
  int skip;                      /* snaps[cur]: nothing to verify */
  char note[256];                /* why it is skipped */
  struct vfile *files;
  size_t n_files, cur_file;
  uint64_t cur_entry;
  unsigned errors;               /* of snaps[cur] */
  struct gc_digest_set verified, corrupt;
  int rc;
  char msg[512];
  uint64_t chunks, bytes;
  /* loop */
  uint64_t snap_t0;
  size_t ok, failed, skipped;
  char **failed_names;
  size_t n_failed;
};

static void snap_name(const struct snap_ref *s, char *out, size_t len)
{
  char t[FORMAT_NAME_TIME_LEN + 1];
  if (format_name_time_format(s->time, t) < 0)
    snprintf(t, sizeof(t), "%" PRId64, s->time);
  snprintf(out, len, "%s%s%s/%s/%s", s->ns, s->ns[0] ? ":" : "", s->type, s->id, t);
}

static void files_free(struct verify_run *r)
{
  for (size_t i = 0; i < r->n_files; i++)
    core_free(r->files[i].name);
  core_free(r->files);
  r->files = NULL;
  r->n_files = r->cur_file = 0;
  r->cur_entry = 0;
}

/* ---- pool: listing --------------------------------------------------------- */

static void add_snap(struct verify_run *r, size_t *cap, const char *ns, const char *type,
                     const char *id, int64_t time)
{
  if (r->n_snaps == *cap) {
    *cap = *cap ? *cap * 2 : 64;
    r->snaps = core_realloc(r->snaps, *cap * sizeof(*r->snaps));
  }
  struct snap_ref *s = &r->snaps[r->n_snaps++];
  s->ns = core_strdup(ns);
  snprintf(s->type, sizeof(s->type), "%s", type);
  s->id = core_strdup(id);
  s->time = time;
}

/* Finished snapshots of one group, newest first. */
static int list_group(struct verify_run *r, size_t *cap, const char *ns, const char *type,
                      const char *id)
{
  struct store_snapshot_list sl;
  int rc = store_snapshot_list(r->base, ns, type, id, &sl);
  if (rc < 0)
    return rc;
  for (size_t i = sl.n; i-- > 0;) {
    if (!sl.items[i].finished)
      continue;
    if (r->opts.time >= 0 && sl.items[i].time != r->opts.time)
      continue;
    add_snap(r, cap, ns, type, id, sl.items[i].time);
  }
  store_snapshot_list_free(&sl);
  return 0;
}

static void run_list(struct verify_run *r)
{
  size_t cap = 0;
  int rc = store_datastore_chunks(r->ds, &r->cs);
  if (rc < 0) {
    r->rc = rc;
    snprintf(r->msg, sizeof(r->msg), "cannot open the chunk store: %s", core_strerror(rc));
    return;
  }
  if (r->opts.type[0] && r->opts.id[0]) {
    rc = list_group(r, &cap, r->opts.ns, r->opts.type, r->opts.id);
    if (rc < 0) {
      r->rc = rc;
      snprintf(r->msg, sizeof(r->msg), "group %s/%s: %s", r->opts.type, r->opts.id,
               rc == CORE_ENOTFOUND ? "does not exist" : core_strerror(rc));
    } else if (r->opts.time >= 0 && r->n_snaps == 0) {
      r->rc = CORE_ENOTFOUND;
      snprintf(r->msg, sizeof(r->msg), "snapshot does not exist or is not finished");
    }
    return;
  }
  struct store_ns_list nsl;
  rc = store_ns_list(r->base, r->opts.ns, r->opts.max_depth, &nsl);
  if (rc < 0) {
    r->rc = rc;
    snprintf(r->msg, sizeof(r->msg), "namespace '%s': %s", r->opts.ns,
             rc == CORE_ENOTFOUND ? "does not exist" : core_strerror(rc));
    return;
  }
  for (size_t i = 0; i < nsl.n; i++) {
    struct store_group_list gl;
    rc = store_group_list(r->base, nsl.items[i], &gl);
    if (rc == CORE_ENOTFOUND)
      continue;
    if (rc < 0) {
      r->rc = rc;
      snprintf(r->msg, sizeof(r->msg), "cannot list groups in namespace '%s': %s",
               nsl.items[i], core_strerror(rc));
      break;
    }
    for (size_t k = 0; k < gl.n && r->rc == 0; k++) {
      if (r->opts.type[0] && strcmp(r->opts.type, gl.items[k].type) != 0)
        continue;
      rc = list_group(r, &cap, nsl.items[i], gl.items[k].type, gl.items[k].id);
      if (rc < 0 && rc != CORE_ENOTFOUND) {
        r->rc = rc;
        snprintf(r->msg, sizeof(r->msg), "cannot list group %s/%s: %s", gl.items[k].type,
                 gl.items[k].id, core_strerror(rc));
      }
    }
    store_group_list_free(&gl);
    if (r->rc < 0)
      break;
  }
  store_ns_list_free(&nsl);
}

/* ---- pool: one snapshot ------------------------------------------------------ */

/* Reads a whole (immutable) file of at most `max` bytes into `b`. */
static int read_file(const char *path, struct core_buf *b, size_t max)
{
  core_buf_reset(b);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return errno == ENOENT ? CORE_ENOTFOUND : -errno;
  int rc = 0;
  struct stat st;
  if (fstat(fd, &st) < 0) {
    rc = -errno;
    goto out;
  }
  if ((uint64_t)st.st_size > max) {
    rc = CORE_ETOOBIG;
    goto out;
  }
  size_t want = (size_t)st.st_size;
  b->max = want > b->max ? want : b->max;
  if ((rc = core_buf_reserve(b, want)) < 0)
    goto out;
  while (b->len < want) {
    ssize_t n = read(fd, b->base + b->len, want - b->len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      rc = -errno;
      break;
    }
    if (n == 0)
      break; /* shrank meanwhile: verify what is there */
    b->len += (size_t)n;
  }
  b->base[b->len] = '\0';
out:
  close(fd);
  return rc;
}

static int snap_path(struct verify_run *r, const char *file, char *out, size_t cap)
{
  const struct snap_ref *s = &r->snaps[r->cur];
  return store_path_file(out, cap, r->base, s->ns, s->type, s->id, s->time, file);
}

/* Reads and decodes the snapshot's manifest into `m`, which the caller frees
 * whatever this returns: a manifest that is gone (a prune removed the
 * snapshot after the listing) leaves `m` empty, not uninitialised. */
static int load_manifest(struct verify_run *r, struct format_manifest *m)
{
  char path[STORE_PATH_MAX];
  memset(m, 0, sizeof(*m));
  int rc = snap_path(r, FORMAT_MANIFEST_NAME, path, sizeof(path));
  if (rc < 0)
    return rc;
  rc = read_file(path, &r->buf, FORMAT_MANIFEST_MAX_LEN + FORMAT_BLOB_ENC_HDR_LEN);
  if (rc < 0)
    return rc;
  return format_manifest_decode_blob(&r->bctx, r->buf.base, r->buf.len, m);
}

/* Did the last verify succeed recently enough to skip this one? */
static int recently_verified(struct verify_run *r, const struct format_manifest *m)
{
  char *vs = format_manifest_unprotected_get(m, "verify_state");
  if (vs == NULL)
    return 0;
  yajl_val v;
  int ok = 0;
  if (core_json_parse(vs, strlen(vs), &v, NULL, 0) == 0) {
    const char *state = core_json_get_str(v, "state");
    const char *upid = core_json_get_str(v, "upid");
    if (state && strcmp(state, "ok") == 0) {
      ok = 1;
      struct core_upid u;
      if (r->opts.outdated_after_days > 0) {
        int64_t limit = (int64_t)time(NULL) - r->opts.outdated_after_days * 86400;
        if (upid == NULL || core_upid_parse(upid, &u) < 0 || u.starttime < limit)
          ok = 0;
      }
    }
    yajl_tree_free(v);
  }
  core_free(vs);
  return ok;
}

static void run_snap_begin(struct verify_run *r)
{
  const struct snap_ref *s = &r->snaps[r->cur];
  r->skip = 0;
  r->note[0] = '\0';
  r->errors = 0;
  files_free(r);
  int rc = store_lock_snapshot(r->lockdir, s->ns, s->type, s->id, s->time, STORE_LOCK_SHARED,
                               &r->guard);
  if (rc < 0) {
    r->skip = 1;
    snprintf(r->note, sizeof(r->note), "could not acquire snapshot lock: %s",
             rc == CORE_ELOCKED ? "in use" : core_strerror(rc));
    return;
  }
  struct format_manifest m;
  rc = load_manifest(r, &m);
  if (rc == CORE_ENOTFOUND) {
    r->skip = 1;
    snprintf(r->note, sizeof(r->note), "snapshot vanished");
    format_manifest_free(&m);
    store_lock_release(&r->guard);
    return;
  }
  if (rc < 0) {
    r->errors++;
    core_task_log(r->task, "  manifest %s: %s", FORMAT_MANIFEST_NAME, core_strerror(rc));
    format_manifest_free(&m);
    return;
  }
  if (r->opts.ignore_verified && recently_verified(r, &m)) {
    r->skip = 1;
    snprintf(r->note, sizeof(r->note), "already verified");
    format_manifest_free(&m);
    store_lock_release(&r->guard);
    return;
  }
  r->files = core_calloc(m.nfiles ? m.nfiles : 1, sizeof(*r->files));
  for (size_t i = 0; i < m.nfiles; i++) {
    struct vfile *f = &r->files[r->n_files];
    int kind = format_name_archive(m.files[i].filename);
    if (kind < 0) {
      r->errors++;
      core_task_log(r->task, "  manifest lists an invalid file name");
      continue;
    }
    f->name = core_strdup(m.files[i].filename);
    f->kind = kind;
    f->mode = m.files[i].crypt_mode;
    f->size = m.files[i].size;
    memcpy(f->csum, m.files[i].csum, 32);
    r->n_files++;
  }
  format_manifest_free(&m);
}

static void verify_blob(struct verify_run *r, const struct vfile *f, const char *path)
{
  int rc = read_file(path, &r->buf, FORMAT_BLOB_MAX_SIZE + FORMAT_BLOB_ENC_HDR_LEN);
  if (rc < 0) {
    r->errors++;
    core_task_log(r->task, "  %s: %s", f->name,
                  rc == CORE_ENOTFOUND ? "file is missing" : core_strerror(rc));
    return;
  }
  uint8_t sum[32];
  core_sha256(r->buf.base, r->buf.len, sum);
  if (r->buf.len != f->size) {
    r->errors++;
    core_task_log(r->task, "  %s: size %zu differs from the manifest's %" PRIu64, f->name,
                  r->buf.len, f->size);
  } else if (memcmp(sum, f->csum, 32) != 0) {
    r->errors++;
    core_task_log(r->task, "  %s: checksum differs from the manifest", f->name);
  } else if ((rc = format_blob_verify_crc(r->buf.base, r->buf.len)) < 0) {
    r->errors++;
    core_task_log(r->task, "  %s: %s", f->name, core_strerror(rc));
  }
  r->bytes += r->buf.len;
}

/* Reads a chunk from the bucket of an S3 datastore into r->buf, opening the
 * run's fetcher on first use. */
static int verify_fetch(struct verify_run *r, const uint8_t d[32])
{
  if (r->fetcher == NULL) {
    char err[256];
    int rc = store_s3_fetcher_open(r->ds, &r->fetcher, err, sizeof(err));
    if (rc < 0) {
      core_task_log(r->task, "  cannot reach the bucket: %s", err);
      return rc;
    }
  }
  return store_s3_fetch(r->fetcher, d, &r->buf);
}

/* Checks one chunk. 0 good, <0 bad (logged). */
static int verify_chunk(struct verify_run *r, const uint8_t d[32], uint64_t size,
                        enum format_crypt_mode mode)
{
  char hex[65];
  if (gc_digest_set_has(&r->verified, d))
    return 0;
  if (gc_digest_set_has(&r->corrupt, d)) {
    core_hex_encode(d, 32, hex);
    core_task_log(r->task, "  chunk %s was already found bad in this run", hex);
    return CORE_EDIGEST;
  }
  r->chunks++;
  int from_bucket = 0;
  int rc = store_chunk_read(r->cs, d, &r->buf);
  if (store_datastore_is_s3(r->ds) && (rc == CORE_ENOTFOUND || (rc >= 0 && r->buf.len == 0))) {
    /* An evicted chunk (0-byte marker) or one never cached: the bucket has
     * the copy to check. */
    rc = verify_fetch(r, d);
    from_bucket = 1;
  }
  if (rc == CORE_ENOTFOUND) {
    core_hex_encode(d, 32, hex);
    core_task_log(r->task, "  chunk %s is missing", hex);
    gc_digest_set_add(&r->corrupt, d);
    return rc;
  }
  if (rc < 0 && rc != CORE_ETOOBIG) {
    /* An I/O error says nothing about the chunk: fail the snapshot, keep
     * the file. */
    core_hex_encode(d, 32, hex);
    core_task_log(r->task, "  chunk %s cannot be read: %s", hex, core_strerror(rc));
    return rc;
  }
  if (rc >= 0) {
    r->bytes += r->buf.len;
    rc = format_blob_verify_crc(r->buf.base, r->buf.len);
    if (rc == 0) {
      int kind = format_blob_verify_chunk(&r->bctx, r->buf.base, r->buf.len, d, size);
      rc = kind < 0 ? kind : 0;
      if (rc == 0 && mode == FORMAT_CRYPT_MODE_ENCRYPT &&
          !format_blob_kind_encrypted((enum format_blob_kind)kind))
        rc = CORE_EFORMAT; /* an unencrypted chunk in an encrypted archive */
    }
  }
  if (rc == 0) {
    if (gc_digest_set_add(&r->verified, d) < 0) {
      /* Full: later references are verified again, which is only slower. */
    }
    return 0;
  }
  core_hex_encode(d, 32, hex);
  if (from_bucket) {
    /* The local marker is not the bad copy: leave it, report the object. */
    core_task_log(r->task, "  chunk %s is corrupt in the bucket (%s)", hex, core_strerror(rc));
    gc_digest_set_add(&r->corrupt, d);
    return rc;
  }
  int n = store_chunk_mark_bad(r->cs, d);
  if (n >= 0)
    core_task_log(r->task, "  chunk %s is corrupt (%s), renamed to %s.%d.bad", hex,
                  core_strerror(rc), hex, n);
  else
    core_task_log(r->task, "  chunk %s is corrupt (%s); renaming it failed: %s", hex,
                  core_strerror(rc), core_strerror(n));
  gc_digest_set_add(&r->corrupt, d);
  return rc;
}

/* One step of the current file: a blob, or a slice of an index's chunks. */
static void run_file(struct verify_run *r)
{
  const struct vfile *f = &r->files[r->cur_file];
  char path[STORE_PATH_MAX];
  int rc = snap_path(r, f->name, path, sizeof(path));
  if (rc < 0) {
    r->errors++;
    r->cur_file++;
    return;
  }
  if (f->kind == FORMAT_ARCHIVE_BLOB) {
    core_task_log(r->task, "  check %s", f->name);
    verify_blob(r, f, path);
    r->cur_file++;
    return;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  struct stat st;
  void *map = MAP_FAILED;
  struct format_index idx;
  if (fd < 0 || fstat(fd, &st) < 0) {
    rc = errno == ENOENT ? CORE_ENOTFOUND : -errno;
  } else if (st.st_size < FORMAT_INDEX_HDR_LEN) {
    rc = CORE_EFORMAT;
  } else if ((map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED) {
    rc = -errno;
  } else {
    /* The checksum is compared against the manifest once, at the start. */
    rc = format_index_parse(map, (size_t)st.st_size,
                           r->cur_entry ? FORMAT_INDEX_SKIP_CSUM : 0, &idx);
  }
  if (fd >= 0)
    close(fd);
  if (rc == 0 && r->cur_entry == 0) {
    core_task_log(r->task, "  check %s", f->name);
    if (idx.size != f->size) {
      core_task_log(r->task, "  %s: size %" PRIu64 " differs from the manifest's %" PRIu64,
                    f->name, idx.size, f->size);
      rc = CORE_ECSUM;
    } else if (memcmp(idx.csum, f->csum, 32) != 0) {
      core_task_log(r->task, "  %s: index checksum differs from the manifest", f->name);
      rc = CORE_ECSUM;
    }
  } else if (rc < 0) {
    core_task_log(r->task, "  %s: %s", f->name,
                  rc == CORE_ENOTFOUND ? "file is missing" : core_strerror(rc));
  }
  if (rc < 0) {
    r->errors++;
    r->cur_file++;
    r->cur_entry = 0;
    goto out;
  }
  uint64_t e = r->cur_entry;
  uint64_t bytes0 = r->bytes;
  unsigned n = 0;
  for (; e < idx.count && n < CHUNK_BUDGET && r->bytes - bytes0 < BYTES_BUDGET; e++, n++) {
    uint64_t start, end;
    format_index_chunk_range(&idx, e, &start, &end);
    if (verify_chunk(r, format_index_digest(&idx, e), end - start, f->mode) < 0)
      r->errors++;
  }
  if (e >= idx.count) {
    r->cur_file++;
    r->cur_entry = 0;
  } else {
    r->cur_entry = e;
  }
out:
  if (map != MAP_FAILED)
    munmap(map, (size_t)st.st_size);
}

static int write_manifest(const char *path, const uint8_t *data, size_t len)
{
  char tmp[STORE_PATH_MAX];
  char dir[STORE_PATH_MAX];
  const char *slash = strrchr(path, '/');
  if (slash == NULL || (size_t)(slash - path) >= sizeof(dir))
    return CORE_EINVAL;
  memcpy(dir, path, (size_t)(slash - path));
  dir[slash - path] = '\0';
  /* A dot name: listings and GC ignore it; the manifest lock serializes it. */
  if (snprintf(tmp, sizeof(tmp), "%s/.%s.tmp_verify", dir, FORMAT_MANIFEST_NAME) >=
      (int)sizeof(tmp))
    return CORE_ETOOBIG;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return -errno;
  int rc = core_file_write_all(fd, data, len);
  if (rc == 0 && fsync(fd) < 0)
    rc = -errno;
  if (close(fd) < 0 && rc == 0)
    rc = -errno;
  if (rc == 0 && rename(tmp, path) < 0)
    rc = -errno;
  if (rc < 0) {
    unlink(tmp);
    return rc;
  }
  core_file_fsync_parent(path); /* best effort: the manifest is already valid */
  return 0;
}

static void run_snap_end(struct verify_run *r)
{
  const struct snap_ref *s = &r->snaps[r->cur];
  const char *state = r->errors ? "failed" : "ok";
  struct store_lock_guard mg = STORE_LOCK_GUARD_INIT;
  struct format_manifest m;
  char path[STORE_PATH_MAX];
  uint8_t *blob = NULL;
  size_t blen = 0;
  int have_m = 0;
  int rc = store_lock_manifest(r->lockdir, s->ns, s->type, s->id, s->time, &mg);
  if (rc == 0)
    rc = snap_path(r, FORMAT_MANIFEST_NAME, path, sizeof(path));
  if (rc >= 0) {
    rc = load_manifest(r, &m);
    have_m = 1;
  }
  if (rc >= 0)
    rc = format_manifest_set_verify_state(&m, state, r->task->upid);
  if (rc >= 0)
    rc = format_manifest_encode_blob(&m, &r->bctx, &blob, &blen);
  if (rc >= 0)
    rc = write_manifest(path, blob, blen);
  if (rc < 0)
    core_task_warn(r->task, "  cannot record verify_state in the manifest: %s",
                   core_strerror(rc));
  core_free(blob);
  if (have_m)
    format_manifest_free(&m);
  store_lock_release(&mg);
  store_lock_release(&r->guard);
  files_free(r);
}

static void job_run(struct core_job *j)
{
  struct verify_run *r = (struct verify_run *)j;
  switch (r->step) {
  case V_LIST: run_list(r); break;
  case V_SNAP_BEGIN: run_snap_begin(r); break;
  case V_FILE: run_file(r); break;
  case V_SNAP_END: run_snap_end(r); break;
  case V_RELEASE:
    store_lock_release(&r->guard);
    files_free(r);
    break;
  }
}

/* ---- loop side ---------------------------------------------------------------- */

static void run_free(struct verify_run *r)
{
  struct gc_ctx *ctx = r->ctx;
  for (size_t i = 0; i < r->n_snaps; i++) {
    core_free(r->snaps[i].ns);
    core_free(r->snaps[i].id);
  }
  core_free(r->snaps);
  for (size_t i = 0; i < r->n_failed; i++)
    core_free(r->failed_names[i]);
  core_free(r->failed_names);
  files_free(r);
  gc_digest_set_free(&r->verified);
  gc_digest_set_free(&r->corrupt);
  format_blob_ctx_free(&r->bctx);
  core_buf_free(&r->buf);
  if (r->fetcher)
    store_s3_fetcher_close(r->fetcher);
  core_free(r->base);
  core_free(r);
  gc__run_end(ctx);
}

static void run_end(struct verify_run *r, int err, const char *msg)
{
  char status[1024];
  if (err == 0 && r->n_failed > 0) {
    core_task_log(r->task, "Failed to verify the following snapshots:");
    for (size_t i = 0; i < r->n_failed; i++)
      core_task_log(r->task, "\t%s", r->failed_names[i]);
    size_t n = (size_t)snprintf(status, sizeof(status), "verification failed for %zu of %zu "
                                "snapshots:", r->n_failed, r->n_snaps);
    for (size_t i = 0; i < r->n_failed && i < FAILED_NAMES_IN_STATUS && n < sizeof(status); i++)
      n += (size_t)snprintf(status + n, sizeof(status) - n, "%s %s", i ? "," : "",
                            r->failed_names[i]);
    if (r->n_failed > FAILED_NAMES_IN_STATUS && n < sizeof(status))
      snprintf(status + n, sizeof(status) - n, ", ...");
    err = CORE_EDIGEST;
    msg = status;
  }
  if (err == 0 || err == CORE_EDIGEST) {
    char b[64];
    core_fmt_bytes(r->bytes, b, sizeof(b));
    core_task_log(r->task, "verified %zu snapshots (%zu ok, %zu failed, %zu skipped), "
                  "%" PRIu64 " chunks, %s read", r->ok + r->n_failed, r->ok, r->n_failed,
                  r->skipped, r->chunks, b);
  }
  core_task_finish(r->task, err, msg);
  store_release(r->ds, STORE_OP_READ);
  run_free(r);
}

static void job_done(struct core_job *j, int status);

static void submit(struct verify_run *r, enum vstep s)
{
  r->step = s;
  gc__submit(r->ctx, &r->job, job_run, job_done);
}

static void next_snapshot(struct verify_run *r)
{
  if (core_task_aborted(r->task)) {
    run_end(r, CORE_EABORTED, "aborted");
    return;
  }
  if (r->cur >= r->n_snaps) {
    run_end(r, 0, NULL);
    return;
  }
  char name[600];
  snap_name(&r->snaps[r->cur], name, sizeof(name));
  core_task_set_progress(r->task, (double)r->cur / (double)r->n_snaps);
  core_task_log(r->task, "verify %s", name);
  r->snap_t0 = uv_hrtime();
  submit(r, V_SNAP_BEGIN);
}

static void job_done(struct core_job *j, int status)
{
  struct verify_run *r = (struct verify_run *)j;
  char name[600];
  if (status < 0) {
    run_end(r, status, NULL);
    return;
  }
  switch (r->step) {
  case V_LIST:
    if (r->rc < 0) {
      run_end(r, r->rc, r->msg);
      return;
    }
    core_task_log(r->task, "found %zu finished snapshots to check", r->n_snaps);
    r->cur = 0;
    next_snapshot(r);
    return;
  case V_SNAP_BEGIN:
    if (r->skip) {
      snap_name(&r->snaps[r->cur], name, sizeof(name));
      core_task_log(r->task, "SKIPPED: verify %s - %s", name, r->note);
      r->skipped++;
      r->cur++;
      next_snapshot(r);
      return;
    }
    __attribute__((fallthrough)); /* start with the first file */
  case V_FILE:
    if (core_task_aborted(r->task)) {
      submit(r, V_RELEASE);
      return;
    }
    if (r->cur_file < r->n_files) {
      submit(r, V_FILE);
      return;
    }
    submit(r, V_SNAP_END);
    return;
  case V_SNAP_END:
    snap_name(&r->snaps[r->cur], name, sizeof(name));
    if (r->errors) {
      core_task_log(r->task, "verify %s failed: %u errors", name, r->errors);
      r->failed_names = core_realloc(r->failed_names, (r->n_failed + 1) * sizeof(char *));
      r->failed_names[r->n_failed++] = core_strdup(name);
    } else {
      core_task_log(r->task, "  verified %s in %.2f s", name,
                    (double)(uv_hrtime() - r->snap_t0) / 1e9);
      r->ok++;
    }
    r->cur++;
    next_snapshot(r);
    return;
  case V_RELEASE:
    run_end(r, CORE_EABORTED, "aborted");
    return;
  }
}

static void worker_id(const char *store, const struct gc_verify_opts *o, char *out, size_t len)
{
  if (o->type[0] && o->id[0] && o->time >= 0)
    snprintf(out, len, "%s:%s%s%s/%s/%08" PRIX64, store, o->ns, o->ns[0] ? ":" : "", o->type,
             o->id, (uint64_t)o->time);
  else if (o->type[0] && o->id[0])
    snprintf(out, len, "%s:%s%s%s/%s", store, o->ns, o->ns[0] ? ":" : "", o->type, o->id);
  else if (o->ns[0])
    snprintf(out, len, "%s:%s", store, o->ns);
  else
    snprintf(out, len, "%s", store);
}

static void verify_ready(struct gc_start *s, struct store_datastore *ds)
{
  struct gc_ctx *ctx = s->ctx;
  const struct gc_verify_opts *o = s->opts;
  char wid[FORMAT_NAME_STORE_MAX + FORMAT_NAME_NS_MAX_LEN + FORMAT_NAME_ID_MAX + 64];
  worker_id(s->store, o, wid, sizeof(wid));
  struct core_task *task = core_task_start(ctx->tasks, GC_TASK_VERIFY, wid, s->authid, s->store);
  if (task == NULL) {
    store_release(ds, STORE_OP_READ);
    s->cb(s->arg, CORE_EINVAL, "worker id or authid too long for a UPID", NULL);
    return;
  }
  struct verify_run *r = core_new(struct verify_run);
  r->ctx = ctx;
  r->task = task;
  r->ds = ds;
  r->base = core_strdup(ds->path);
  r->opts = *o;
  store_lock_dir(r->lockdir, sizeof(r->lockdir), ctx->run_dir, s->store);
  format_blob_ctx_init(&r->bctx);
  core_buf_init(&r->buf, STORE_CHUNK_MAX_ENCODED);
  gc_digest_set_init(&r->verified, VERIFIED_MAX);
  gc_digest_set_init(&r->corrupt, VERIFIED_MAX);
  r->guard = (struct store_lock_guard)STORE_LOCK_GUARD_INIT;
  gc__run_begin(ctx);
  core_task_log(task, "verify datastore %s%s%s", s->store, o->ns[0] ? ", namespace " : "",
                o->ns);
  s->cb(s->arg, 0, NULL, task);
  submit(r, V_LIST);
}

void gc_start_verify(struct gc_ctx *ctx, const char *store, const char *authid,
                     const struct gc_verify_opts *opts, gc_start_cb cb, void *arg)
{
  gc__start(ctx, store, authid, STORE_OP_READ, opts, sizeof(*opts), verify_ready, cb, arg);
}
