/* store_check.c: the read-only consistency check (see store_check.h). */
#include "store/store_check.h"

#include "core/core_alloc.h"
#include "core/core_buf.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "format/format_blob.h"
#include "store/store_chunk.h"
#include "store/store_digestset.h"
#include "store/store_dspath.h"
#include "format/format_index.h"
#include "store/store_lock.h"
#include "format/format_manifest.h"
#include "format/format_name.h"
#include "store/store_path.h"
#include "store/store_snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Lock files and namespace directories nest at most this deep below the
 * datastore's lock directory (store_lock.h: one level of namespace dirs). */
#define LOCKDIR_MAX_DEPTH 2

struct check {
  const struct store_check_opts *o;
  struct store_check_stats *st;
  struct store_digestset seen;    /* chunks already checked */
  struct format_blob_ctx bctx;
  char label[STORE_PATH_MAX];     /* the snapshot being checked, for messages */
};

static void say(struct check *c, int problem, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(struct check *c, int problem, const char *fmt, ...)
{
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (problem)
    c->st->problems++;
  if (c->o->report != NULL)
    c->o->report(c->o->arg, problem, msg);
}

static const char *errstr(int rc)
{
  return rc == CORE_ENOTFOUND ? "missing" : core_strerror(rc);
}

/* ---- the base, the run directory and the lock directory ------------------ */

static void check_lockdir_tree(struct check *c, int dirfd, const char *path, int depth)
{
  DIR *d = fdopendir(dirfd);
  if (d == NULL) {
    close(dirfd);
    say(c, 1, "lock directory %s cannot be read: %s", path, core_strerror(-errno));
    return;
  }
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    struct stat sb;
    if (fstatat(dirfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
      continue; /* vanished: nothing to judge */
    if (S_ISREG(sb.st_mode))
      continue;
    if (S_ISDIR(sb.st_mode) && depth < LOCKDIR_MAX_DEPTH) {
      int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub >= 0) {
        char subpath[STORE_PATH_MAX];
        snprintf(subpath, sizeof(subpath), "%s/%s", path, e->d_name);
        check_lockdir_tree(c, sub, subpath, depth + 1);
      }
      continue;
    }
    say(c, 1, "lock directory entry %s/%s is not a regular file%s", path, e->d_name,
        S_ISLNK(sb.st_mode) ? " (a symlink)" : "");
  }
  closedir(d);
}

static void check_run_dir(struct check *c)
{
  const struct store_check_opts *o = c->o;
  struct stat sb;
  if (o->run_dir != NULL) {
    if (stat(o->run_dir, &sb) < 0)
      say(c, 0, "run directory %s: %s (cairnd is not running)", o->run_dir,
          core_strerror(-errno));
    else if (!S_ISDIR(sb.st_mode))
      say(c, 1, "run directory %s is not a directory", o->run_dir);
    if (store_dspath_overlap(o->run_dir, o->base))
      say(c, 1, "the datastore %s and the run directory %s overlap (the run directory "
                "is a tmpfs emptied at boot)", o->base, o->run_dir);
  }
  if (o->lockdir == NULL)
    return;
  int fd = open(o->lockdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT) /* created on first use */
      say(c, 1, "lock directory %s: %s", o->lockdir, core_strerror(-errno));
    return;
  }
  check_lockdir_tree(c, fd, o->lockdir, 0);
}

static int check_base(struct check *c)
{
  char path[STORE_PATH_MAX];
  struct stat sb;
  if (stat(c->o->base, &sb) < 0)
    return -errno;
  if (!S_ISDIR(sb.st_mode))
    return -ENOTDIR;
  snprintf(path, sizeof(path), "%s/%s", c->o->base, STORE_CHUNK_DIR);
  if (lstat(path, &sb) < 0 || !S_ISDIR(sb.st_mode))
    say(c, 1, "%s is not a directory", path);
  snprintf(path, sizeof(path), "%s/%s", c->o->base, STORE_LOCK_FILE);
  if (lstat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
    say(c, 1, "%s is not a regular file", path);
  return 0;
}

/* ---- the chunk directory ------------------------------------------------- */

static void check_prefix_dir(struct check *c, int chunks, const char *name)
{
  if (strlen(name) != 4 || strspn(name, "0123456789abcdef") != 4)
    return; /* not a prefix directory; GC ignores it as well */
  unsigned prefix = (unsigned)strtoul(name, NULL, 16);
  int pfd = openat(chunks, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (pfd < 0) {
    say(c, 1, "chunk prefix directory .chunks/%s: %s", name, core_strerror(-errno));
    return;
  }
  DIR *d = fdopendir(pfd);
  if (d == NULL) {
    close(pfd);
    return;
  }
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    uint8_t digest[32];
    int bad;
    if (e->d_name[0] == '.')
      continue;
    if (strstr(e->d_name, ".tmp_") != NULL) {
      c->st->tmp_files++;
      continue;
    }
    int kind = store_chunk_parse_name(e->d_name, digest, &bad);
    if (kind <= 0)
      continue; /* foreign: never taken for a chunk */
    if (((unsigned)digest[0] << 8 | digest[1]) != prefix)
      say(c, 1, "chunk file .chunks/%s/%s is in the wrong prefix directory", name,
          e->d_name);
    struct stat sb;
    if (fstatat(pfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(sb.st_mode))
      say(c, 1, "chunk .chunks/%s/%s is not a regular file", name, e->d_name);
  }
  closedir(d);
}

static void check_chunk_dir(struct check *c)
{
  char path[STORE_PATH_MAX];
  snprintf(path, sizeof(path), "%s/%s", c->o->base, STORE_CHUNK_DIR);
  int chunks = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (chunks < 0)
    return; /* reported by check_base */
  DIR *top = fdopendir(dup(chunks));
  if (top != NULL) {
    struct dirent *e;
    while ((e = readdir(top)) != NULL)
      check_prefix_dir(c, chunks, e->d_name);
    closedir(top);
  }
  close(chunks);
  if (c->st->tmp_files)
    say(c, 0, "%" PRIu64 " temporary chunk file(s) (interrupted inserts; never taken for "
              "chunks, removed at the next start once an hour old)", c->st->tmp_files);
}

/* ---- chunks -------------------------------------------------------------- */

/* Reads and hashes one chunk: 0 or the reason it does not match its name. */
static int verify_chunk(struct check *c, const char *path, const uint8_t digest[32],
                        uint64_t size, enum format_crypt_mode mode)
{
  uint8_t *data = NULL;
  size_t len = 0;
  int rc = core_file_read(path, STORE_CHUNK_MAX_ENCODED, &data, &len);
  if (rc < 0)
    return rc;
  rc = format_blob_verify_crc(data, len);
  if (rc == 0) {
    int kind = format_blob_verify_chunk(&c->bctx, data, len, digest, size);
    rc = kind < 0 ? kind : 0;
    if (rc == 0 && mode == FORMAT_CRYPT_MODE_ENCRYPT &&
        !format_blob_kind_encrypted((enum format_blob_kind)kind))
      rc = CORE_EFORMAT; /* an unencrypted chunk in an encrypted archive */
  }
  core_free(data);
  return rc;
}

static void check_chunk(struct check *c, const char *archive, const uint8_t digest[32],
                        uint64_t size, enum format_crypt_mode mode)
{
  if (store_digestset_get(&c->seen, digest, NULL))
    return;
  (void)store_digestset_add(&c->seen, digest, 0); /* full: only rechecks later */
  c->st->chunks++;
  char path[STORE_PATH_MAX], hex[65];
  core_hex_encode(digest, 32, hex);
  int s3 = (c->o->flags & STORE_CHECK_S3_CACHE) != 0;
  struct stat sb;
  if (c->o->bucket != NULL) {
    int rc = store_check_bucket_has_chunk(c->o->bucket, digest);
    if (rc <= 0)
      say(c, 1, "%s %s: chunk %s is %s", c->label, archive, hex,
          rc == 0 ? "not in the bucket" : core_strerror(rc));
  }
  if (store_path_chunk(path, sizeof(path), c->o->base, digest) < 0)
    return;
  if (lstat(path, &sb) < 0) {
    if (errno == ENOENT && s3)
      return; /* not cached: the bucket has it */
    say(c, 1, "%s %s: chunk %s is %s", c->label, archive, hex,
        errno == ENOENT ? "missing" : core_strerror(-errno));
    return;
  }
  if (!S_ISREG(sb.st_mode)) {
    say(c, 1, "%s %s: chunk %s is not a regular file", c->label, archive, hex);
    return;
  }
  if (sb.st_size == 0) {
    if (!s3) /* in an S3 cache: an evicted chunk's marker */
      say(c, 1, "%s %s: chunk %s is empty", c->label, archive, hex);
    return;
  }
  if (!(c->o->flags & STORE_CHECK_VERIFY_CHUNKS))
    return;
  int rc = verify_chunk(c, path, digest, size, mode);
  c->st->chunks_verified++;
  if (rc < 0)
    say(c, 1, "%s %s: chunk %s does not match its name: %s", c->label, archive, hex,
        core_strerror(rc));
}

/* ---- snapshots ----------------------------------------------------------- */

static void check_blob_file(struct check *c, const char *path,
                            const struct format_manifest_file *f)
{
  uint8_t *data = NULL;
  size_t len = 0;
  uint8_t sum[CORE_SHA256_LEN];
  int rc = core_file_read(path, FORMAT_BLOB_MAX_SIZE + 4096, &data, &len);
  if (rc < 0) {
    say(c, 1, "%s %s: %s", c->label, f->filename, errstr(rc));
    return;
  }
  core_sha256(data, len, sum);
  if (len != f->size)
    say(c, 1, "%s %s: size %zu differs from the manifest's %" PRIu64, c->label, f->filename,
        len, f->size);
  else if (memcmp(sum, f->csum, sizeof(sum)) != 0)
    say(c, 1, "%s %s: checksum differs from the manifest", c->label, f->filename);
  else if ((rc = format_blob_verify_crc(data, len)) < 0)
    say(c, 1, "%s %s: %s", c->label, f->filename, core_strerror(rc));
  core_free(data);
}

static void check_index_file(struct check *c, const char *path,
                             const struct format_manifest_file *f)
{
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  struct stat sb;
  void *map = MAP_FAILED;
  struct format_index idx;
  int rc;
  if (fd < 0 || fstat(fd, &sb) < 0)
    rc = errno == ENOENT ? CORE_ENOTFOUND : -errno;
  else if (!S_ISREG(sb.st_mode) || sb.st_size < FORMAT_INDEX_HDR_LEN)
    rc = CORE_EFORMAT;
  else if ((map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED)
    rc = -errno;
  else
    rc = format_index_parse(map, (size_t)sb.st_size, 0, &idx);
  if (fd >= 0)
    close(fd);
  if (rc < 0) {
    say(c, 1, "%s %s: %s", c->label, f->filename, errstr(rc));
    goto out;
  }
  if (idx.size != f->size) {
    say(c, 1, "%s %s: size %" PRIu64 " differs from the manifest's %" PRIu64, c->label,
        f->filename, idx.size, f->size);
    goto out;
  }
  if (memcmp(idx.csum, f->csum, CORE_SHA256_LEN) != 0) {
    say(c, 1, "%s %s: index checksum differs from the manifest", c->label, f->filename);
    goto out;
  }
  for (uint64_t i = 0; i < idx.count; i++) {
    uint64_t start, end;
    format_index_chunk_range(&idx, i, &start, &end);
    check_chunk(c, f->filename, format_index_digest(&idx, i), end - start, f->crypt_mode);
  }
out:
  if (map != MAP_FAILED)
    munmap(map, (size_t)sb.st_size);
}

/* S3: the file at `path` (below the base) has its .cnt/ key in the bucket. */
static void in_bucket(struct check *c, const char *path, const char *name)
{
  if (c->o->bucket == NULL)
    return;
  size_t n = strlen(c->o->base);
  while (n > 1 && c->o->base[n - 1] == '/')
    n--;
  const char *rel = strncmp(path, c->o->base, n) == 0 ? path + n : path;
  while (*rel == '/')
    rel++;
  int rc = store_check_bucket_has_file(c->o->bucket, rel);
  if (rc <= 0)
    say(c, 1, "%s %s: %s", c->label, name, rc == 0 ? "not in the bucket" : core_strerror(rc));
}

static int read_manifest(struct check *c, const char *path, struct format_manifest *m)
{
  uint8_t *data = NULL;
  size_t len = 0;
  int rc = core_file_read(path, FORMAT_MANIFEST_MAX_LEN + 4096, &data, &len);
  if (rc == 0)
    rc = format_manifest_decode_blob(&c->bctx, data, len, m);
  else
    format_manifest_init(m, "host", "x", 0); /* so the caller frees one shape */
  core_free(data);
  return rc;
}

static void check_finished(struct check *c, const char *ns, const char *type, const char *id,
                           int64_t time)
{
  char dir[STORE_PATH_MAX], path[STORE_PATH_MAX];
  struct format_manifest m;
  if (store_path_snapshot(dir, sizeof(dir), c->o->base, ns, type, id, time) < 0)
    return;
  if (access(dir, F_OK) < 0)
    return; /* deleted (a prune) since the listing */
  if (store_path_file(path, sizeof(path), c->o->base, ns, type, id, time,
                      FORMAT_MANIFEST_NAME) < 0)
    return;
  int rc = read_manifest(c, path, &m);
  if (rc < 0) {
    if (access(dir, F_OK) == 0)
      say(c, 1, "%s: manifest %s: %s", c->label, FORMAT_MANIFEST_NAME, errstr(rc));
    goto out;
  }
  c->st->snapshots++;
  in_bucket(c, path, FORMAT_MANIFEST_NAME);
  if (strcmp(m.backup_type, type) != 0 || strcmp(m.backup_id, id) != 0 ||
      m.backup_time != time) {
    say(c, 1, "%s: the manifest belongs to %s/%s/%" PRId64, c->label, m.backup_type,
        m.backup_id, m.backup_time);
    goto out;
  }
  for (size_t i = 0; i < m.nfiles; i++) {
    const struct format_manifest_file *f = &m.files[i];
    c->st->archives++;
    if (store_path_file(path, sizeof(path), c->o->base, ns, type, id, time, f->filename) < 0) {
      say(c, 1, "%s: the manifest lists an invalid file name", c->label);
      continue;
    }
    in_bucket(c, path, f->filename);
    if (format_name_archive(f->filename) == FORMAT_ARCHIVE_BLOB)
      check_blob_file(c, path, f);
    else
      check_index_file(c, path, f);
  }
out:
  format_manifest_free(&m);
}

static void check_snapshot(struct check *c, const char *ns, const char *type, const char *id,
                           const struct store_snapshot_info *s)
{
  char when[FORMAT_NAME_TIME_LEN + 1];
  format_name_time_format(s->time, when);
  snprintf(c->label, sizeof(c->label), "snapshot %s%s%s/%s/%s", ns, ns[0] ? "/" : "", type, id,
           when);
  if (!s->finished) {
    c->st->unfinished++;
    say(c, 0, "%s is unfinished (no manifest: an interrupted or running backup, removed "
              "at the next start)", c->label);
    return;
  }
  struct store_lock_guard g = STORE_LOCK_GUARD_INIT;
  if (c->o->lockdir != NULL) {
    int rc = store_lock_snapshot(c->o->lockdir, ns, type, id, s->time, STORE_LOCK_SHARED, &g);
    if (rc == CORE_ELOCKED) {
      c->st->busy++;
      say(c, 0, "%s is busy (locked exclusively), not checked", c->label);
      return;
    }
    if (rc < 0)
      say(c, 0, "%s: cannot take its lock (%s), checking it unlocked", c->label,
          core_strerror(rc));
  }
  check_finished(c, ns, type, id, s->time);
  store_lock_release(&g);
}

static void check_group(struct check *c, const char *ns, const struct store_group_info *gi)
{
  struct store_snapshot_list snaps;
  if (gi->owner == NULL && gi->n_snapshots > 0)
    say(c, 1, "group %s%s%s/%s has snapshots but no valid owner file", ns, ns[0] ? "/" : "",
        gi->type, gi->id);
  int rc = store_snapshot_list(c->o->base, ns, gi->type, gi->id, &snaps);
  if (rc == CORE_ENOTFOUND)
    return; /* deleted meanwhile */
  if (rc < 0) {
    say(c, 1, "group %s%s%s/%s cannot be listed: %s", ns, ns[0] ? "/" : "", gi->type, gi->id,
        core_strerror(rc));
    return;
  }
  for (size_t i = 0; i < snaps.n; i++)
    check_snapshot(c, ns, gi->type, gi->id, &snaps.items[i]);
  store_snapshot_list_free(&snaps);
}

static void check_content(struct check *c)
{
  struct store_ns_list nss;
  int rc = store_ns_list(c->o->base, "", -1, &nss);
  if (rc < 0) {
    say(c, 1, "namespaces cannot be listed: %s", core_strerror(rc));
    return;
  }
  for (size_t n = 0; n < nss.n; n++) {
    struct store_group_list groups;
    rc = store_group_list(c->o->base, nss.items[n], &groups);
    if (rc == CORE_ENOTFOUND)
      continue;
    if (rc < 0) {
      say(c, 1, "namespace '%s' cannot be listed: %s", nss.items[n], core_strerror(rc));
      continue;
    }
    for (size_t g = 0; g < groups.n; g++)
      check_group(c, nss.items[n], &groups.items[g]);
    store_group_list_free(&groups);
  }
  store_ns_list_free(&nss);
}

int store_check(const struct store_check_opts *o, struct store_check_stats *st)
{
  struct check c;
  memset(st, 0, sizeof(*st));
  memset(&c, 0, sizeof(c));
  c.o = o;
  c.st = st;
  int rc = check_base(&c);
  if (rc < 0)
    return rc;
  store_digestset_init(&c.seen, 64u * 1024 * 1024);
  format_blob_ctx_init(&c.bctx);
  check_run_dir(&c);
  check_chunk_dir(&c);
  check_content(&c);
  if ((o->flags & STORE_CHECK_S3_CACHE) && o->bucket == NULL)
    say(&c, 0, "S3 datastore: only the local cache was checked; chunks that are not "
               "cached and the bucket's objects were not (run a verify task for those)");
  if (o->bucket != NULL) {
    uint64_t chunks, cnt, late;
    store_check_bucket_stats(o->bucket, &chunks, &cnt, &late);
    say(&c, 0, "S3 datastore: the bucket listed %" PRIu64 " chunk and %" PRIu64
               " metadata key(s), %" PRIu64 " more found by HEAD (written after the "
               "listing); object contents were not read (a verify task does)",
        chunks, cnt, late);
  }
  format_blob_ctx_free(&c.bctx);
  store_digestset_free(&c.seen);
  return 0;
}
