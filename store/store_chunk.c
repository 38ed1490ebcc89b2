#include "store/store_chunk.h"

#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_log.h"
#include "format/format_blob.h"
#include "store/store_path.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PREFIX_DIR_MODE 0750
#define CHUNK_FILE_MODE 0644

/* ---- sync levels ------------------------------------------------------- */

int store_sync_level_parse(const char *s, enum store_sync_level *out)
{
  if (s == NULL)
    return CORE_ECONFIG;
  if (strcmp(s, "none") == 0)
    *out = STORE_SYNC_NONE;
  else if (strcmp(s, "file") == 0)
    *out = STORE_SYNC_FILE;
  else if (strcmp(s, "filesystem") == 0)
    *out = STORE_SYNC_FILESYSTEM;
  else
    return CORE_ECONFIG;
  return 0;
}

const char *store_sync_level_name(enum store_sync_level level)
{
  switch (level) {
  case STORE_SYNC_NONE:
    return "none";
  case STORE_SYNC_FILE:
    return "file";
  case STORE_SYNC_FILESYSTEM:
    return "filesystem";
  }
  return "unknown";
}

/* ---- DataBlob magic ---------------------------------------------------- */

/* Only two properties of a blob matter for the duplicate rules; decoding
 * proper is format_blob's job. */
#define BLOB_COMPRESSED 1
#define BLOB_ENCRYPTED 2

static int blob_flags(const void *data, size_t len)
{
  int kind = format_blob_magic_kind(data, len);
  if (kind < 0)
    return kind;
  return (format_blob_kind_compressed(kind) ? BLOB_COMPRESSED : 0) |
         (format_blob_kind_encrypted(kind) ? BLOB_ENCRYPTED : 0);
}

/* ---- small helpers ----------------------------------------------------- */

static int fsync_dirat(int dirfd, const char *rel)
{
  int fd = openat(dirfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  int rc = fsync(fd) < 0 ? -errno : 0;
  close(fd);
  return rc;
}

static void prefix_name(char out[5], unsigned prefix)
{
  static const char hex[] = "0123456789abcdef";
  out[0] = hex[(prefix >> 12) & 15];
  out[1] = hex[(prefix >> 8) & 15];
  out[2] = hex[(prefix >> 4) & 15];
  out[3] = hex[prefix & 15];
  out[4] = '\0';
}

/* The stripe comes from the third digest byte, the first one that the prefix
 * directory does not fix: GC sweepers walk disjoint ranges of prefix
 * directories in step, and striping by digest[0] made them queue on the same
 * few mutexes while each held one across an unlink. */
static pthread_mutex_t *stripe(struct store_chunkstore *cs, const uint8_t *digest)
{
  return &cs->stripes[digest[2] % STORE_CHUNK_STRIPES]; /* 256: all of digest[2] */
}

static void fill_stat(struct store_chunk_stat *st, const struct stat *s)
{
  st->size = (uint64_t)s->st_size;
  st->atime_sec = s->st_atim.tv_sec;
  st->atime_nsec = s->st_atim.tv_nsec;
  st->mtime_sec = s->st_mtim.tv_sec;
}

/* ---- create, fill, open, close ----------------------------------------- */

int store_chunk_create(const char *base)
{
  int rc = 0, base_fd = -1, fd = -1;
  if (base == NULL || base[0] != '/')
    return CORE_EINVAL;
  if (mkdir(base, 0755) < 0 && errno != EEXIST)
    return -errno;
  base_fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (base_fd < 0)
    return -errno;
  if (mkdirat(base_fd, STORE_CHUNK_DIR, 0750) < 0) {
    rc = errno == EEXIST ? CORE_EEXISTS : -errno;
    goto out;
  }
  /* Explicit modes: the process umask must not decide who can read a
   * datastore that PBS tools may also open. */
  if (fchmodat(base_fd, STORE_CHUNK_DIR, 0750, 0) < 0) {
    rc = -errno;
    goto out;
  }
  fd = openat(base_fd, STORE_LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0 || fchmod(fd, 0644) < 0) {
    rc = -errno;
    goto out;
  }
out:
  if (fd >= 0)
    close(fd);
  close(base_fd);
  return rc;
}

int store_chunk__fill_layout_range(const char *base, unsigned first, unsigned end,
                                   void (*progress)(void *arg, unsigned done, unsigned total),
                                   void *arg)
{
  char path[STORE_PATH_MAX];
  int rc = 0;
  if (end > STORE_CHUNK_PREFIXES || first > end)
    return CORE_EINVAL;
  if (snprintf(path, sizeof(path), "%s/%s", base, STORE_CHUNK_DIR) >= (int)sizeof(path))
    return CORE_ETOOBIG;
  int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return errno == ENOENT ? CORE_ENOTFOUND : -errno;
  unsigned total = end - first;
  for (unsigned p = first; p < end; p++) {
    char name[5];
    prefix_name(name, p);
    if (mkdirat(dfd, name, PREFIX_DIR_MODE) < 0 && errno != EEXIST) {
      rc = -errno;
      break;
    }
    unsigned done = p - first + 1;
    if (progress && (done % 4096 == 0 || done == total))
      progress(arg, done, total);
  }
  close(dfd);
  return rc;
}

int store_chunk_fill_layout(const char *base,
                            void (*progress)(void *arg, unsigned done, unsigned total),
                            void *arg)
{
  return store_chunk__fill_layout_range(base, 0, STORE_CHUNK_PREFIXES, progress, arg);
}

int store_chunkstore_open(const char *base, enum store_sync_level level,
                          struct store_chunkstore **out)
{
  int rc;
  *out = NULL;
  if (base == NULL || base[0] != '/')
    return CORE_EINVAL;
  struct store_chunkstore *cs = core_new(struct store_chunkstore);
  cs->base_fd = cs->chunks_fd = cs->lock_fd = -1;
  size_t n = strlen(base);
  while (n > 1 && base[n - 1] == '/')
    n--;
  cs->base = core_strndup(base, n);
  cs->chunk_dir = core_asprintf("%s/%s", cs->base, STORE_CHUNK_DIR);
  if (strlen(cs->chunk_dir) + 1 + STORE_CHUNK_REL_LEN + 16 >= STORE_PATH_MAX) {
    rc = CORE_ETOOBIG;
    goto fail;
  }
  cs->base_fd = open(cs->base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cs->base_fd < 0) {
    rc = errno == ENOENT ? CORE_ENOTFOUND : -errno;
    goto fail;
  }
  cs->chunks_fd = openat(cs->base_fd, STORE_CHUNK_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cs->chunks_fd < 0) {
    rc = errno == ENOENT ? CORE_ENOTFOUND : -errno;
    goto fail;
  }
  /* O_RDWR because an exclusive (write) fcntl lock needs a writable fd. */
  cs->lock_fd = openat(cs->base_fd, STORE_LOCK_FILE, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (cs->lock_fd < 0) {
    rc = errno == ENOENT ? CORE_ENOTFOUND : -errno;
    goto fail;
  }
  atomic_init(&cs->sync_level, (int)level);
  atomic_init(&cs->direct_io, 1);
  for (int i = 0; i < STORE_CHUNK_STRIPES; i++)
    pthread_mutex_init(&cs->stripes[i], NULL);
  pthread_mutex_init(&cs->reg_mutex, NULL);
  cs->next_token = 1;
  *out = cs;
  return 0;

fail:
  if (cs->lock_fd >= 0)
    close(cs->lock_fd);
  if (cs->chunks_fd >= 0)
    close(cs->chunks_fd);
  if (cs->base_fd >= 0)
    close(cs->base_fd);
  core_free(cs->chunk_dir);
  core_free(cs->base);
  core_free(cs);
  return rc;
}

void store_chunkstore_close(struct store_chunkstore *cs)
{
  if (cs == NULL)
    return;
  assert(cs->n_writers == 0 && !cs->gc_running);
  for (int i = 0; i < STORE_CHUNK_STRIPES; i++)
    pthread_mutex_destroy(&cs->stripes[i]);
  pthread_mutex_destroy(&cs->reg_mutex);
  close(cs->lock_fd); /* drops the OFD lock, if any */
  close(cs->chunks_fd);
  close(cs->base_fd);
  core_free(cs->writers);
  core_free(cs->chunk_dir);
  core_free(cs->base);
  core_free(cs);
}

void store_chunkstore_set_sync_level(struct store_chunkstore *cs, enum store_sync_level level)
{
  atomic_store(&cs->sync_level, (int)level);
}

/* ---- insert ------------------------------------------------------------ */

enum insert_action { ACT_WRITE, ACT_KEEP };

/* Reads the blob header of an existing chunk file and returns its flags. */
static int file_blob_flags(int dirfd, const char *rel)
{
  uint8_t hdr[FORMAT_BLOB_ENC_HDR_LEN];
  int fd = openat(dirfd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return -errno;
  ssize_t n = pread(fd, hdr, sizeof(hdr), 0);
  int rc = n < 0 ? -errno : blob_flags(hdr, (size_t)n);
  close(fd);
  return rc;
}

static int touch_at(int dirfd, const char *rel)
{
  const struct timespec times[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
  if (utimensat(dirfd, rel, times, AT_SYMLINK_NOFOLLOW) < 0)
    return errno == ENOENT ? CORE_ENOTFOUND : -errno;
  return 0;
}

/* Decides what to do with an incoming chunk given what is on disk. Called
 * with the digest's stripe held. */
static int decide(struct store_chunkstore *cs, const char *rel, const char *hex, int in_flags,
                  size_t len, enum insert_action *act, uint64_t *kept_size)
{
  struct stat st;
  if (fstatat(cs->chunks_fd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno == ENOENT) { /* no file, or no prefix dir yet */
      *act = ACT_WRITE;
      return 0;
    }
    return -errno;
  }
  if (!S_ISREG(st.st_mode))
    return CORE_EEXISTS;
  uint64_t old = (uint64_t)st.st_size;
  *kept_size = old;
  if (old == len) {
    *act = ACT_KEEP;
  } else if (old == 0) {
    core_debug("chunk %s: replacing empty file", hex);
    *act = ACT_WRITE;
  } else if (in_flags & BLOB_ENCRYPTED) {
    /* Only magic and size of an encrypted chunk can be checked, so a second,
     * different encrypted upload under the same digest is either a hash
     * collision or an attack: never let it replace what is there. */
    int old_flags = file_blob_flags(cs->chunks_fd, rel);
    if (old_flags == -ENOENT) { /* removed from outside since the stat */
      *act = ACT_WRITE;
      return 0;
    }
    if (old_flags < 0)
      return old_flags;
    if (!(old_flags & BLOB_ENCRYPTED)) {
      core_warn("chunk %s: exists unencrypted, refusing encrypted upload", hex);
      return CORE_EEXISTS;
    }
    if (!(old_flags & BLOB_COMPRESSED) && !(in_flags & BLOB_COMPRESSED)) {
      core_warn("chunk %s: exists encrypted with a different size", hex);
      return CORE_EEXISTS;
    }
    *act = ACT_KEEP;
  } else if (old < len) {
    *act = ACT_KEEP; /* the smaller (compressed) copy stays */
  } else {
    *act = ACT_WRITE; /* the new copy is smaller: take it */
  }
  if (*act == ACT_KEEP) {
    int rc = touch_at(cs->chunks_fd, rel);
    if (rc == CORE_ENOTFOUND) /* renamed away (verify) since the stat */
      *act = ACT_WRITE;
    else if (rc < 0)
      return rc;
  }
  return 0;
}

/* Chunk files are written once and rarely read soon after, so their data
 * goes around the page cache when it can: the page-aligned head of the blob
 * with O_DIRECT (DMA from the request body, no copy, no cache pages to
 * allocate and later evict), the tail of under 4 KiB buffered. A body that is
 * not page-aligned, or a file system without O_DIRECT (EINVAL), takes the
 * buffered path; the latter is remembered for the store. Reads are
 * unaffected: buffered reads of such a file come from the disk. */
static int write_data(struct store_chunkstore *cs, int fd, const uint8_t *data, size_t len)
{
  size_t head = len & ~(size_t)(STORE_CHUNK_DIRECT_ALIGN - 1);
  int fl;
  if (head == 0 || ((uintptr_t)data & (STORE_CHUNK_DIRECT_ALIGN - 1)) != 0 ||
      !atomic_load_explicit(&cs->direct_io, memory_order_relaxed))
    return core_file_write_all(fd, data, len);
  if ((fl = fcntl(fd, F_GETFL)) < 0)
    return -errno;
  if (fcntl(fd, F_SETFL, fl | O_DIRECT) < 0) {
    if (errno != EINVAL)
      return -errno;
    atomic_store(&cs->direct_io, 0);
    return core_file_write_all(fd, data, len);
  }
  ssize_t n;
  do
    n = write(fd, data, head);
  while (n < 0 && errno == EINTR);
  if (n < 0 && errno == EINVAL) {
    /* refused before anything was written (alignment the device wants
     * larger than ours): buffered from now on */
    atomic_store(&cs->direct_io, 0);
    n = 0;
  } else if (n < 0) {
    return -errno;
  }
  if (fcntl(fd, F_SETFL, fl) < 0)
    return -errno;
  return core_file_write_all(fd, data + n, len - (size_t)n);
}

/* Writes `data` to a temp file in the prefix directory and renames it over
 * <prefix>/<hex>. Creates the prefix directory on demand. */
static int write_chunk(struct store_chunkstore *cs, const char *rel, const void *data,
                       size_t len)
{
  int sync_file = atomic_load(&cs->sync_level) == STORE_SYNC_FILE;
  size_t dirlen = strlen(cs->chunk_dir);
  char tmp[STORE_PATH_MAX];
  int rc, fd;
  char prefix[5];
  memcpy(prefix, rel, 4);
  prefix[4] = '\0';

  /* store_chunkstore_open checked that this always fits. */
  snprintf(tmp, sizeof(tmp), "%s/%s.tmp_XXXXXX", cs->chunk_dir, rel);
  fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    /* Lazy layout: first chunk in this prefix. Another thread may race us
     * to it, hence EEXIST is fine. */
    if (mkdirat(cs->chunks_fd, prefix, PREFIX_DIR_MODE) < 0 && errno != EEXIST)
      return -errno;
    /* With per-file durability the new directory entry in .chunks must be
     * durable too, or a crash could lose the whole prefix directory. */
    if (sync_file && fsync(cs->chunks_fd) < 0)
      return -errno;
    snprintf(tmp, sizeof(tmp), "%s/%s.tmp_XXXXXX", cs->chunk_dir, rel);
    fd = mkostemp(tmp, O_CLOEXEC);
  }
  if (fd < 0)
    return -errno;
  const char *tmp_rel = tmp + dirlen + 1;

  /* mkostemp creates 0600; chunks are world-readable like PBS's. */
  if (fchmod(fd, CHUNK_FILE_MODE) < 0) {
    rc = -errno;
    close(fd);
    goto fail;
  }
  if ((rc = write_data(cs, fd, data, len)) < 0) {
    close(fd);
    goto fail;
  }
  if (sync_file && fsync(fd) < 0) {
    rc = -errno;
    close(fd);
    goto fail;
  }
  if (close(fd) < 0) {
    rc = -errno;
    goto fail;
  }
  if (renameat(cs->chunks_fd, tmp_rel, cs->chunks_fd, rel) < 0) {
    rc = -errno;
    goto fail;
  }
  if (sync_file)
    return fsync_dirat(cs->chunks_fd, prefix);
  return 0;

fail:
  unlinkat(cs->chunks_fd, tmp_rel, 0);
  return rc;
}

int store_chunk_insert(struct store_chunkstore *cs, const uint8_t digest[32], const void *data,
                       size_t len, struct store_chunk_insert_result *res)
{
  char rel[STORE_CHUNK_REL_LEN + 1];
  enum insert_action act = ACT_WRITE;
  uint64_t kept = 0;
  int rc;

  memset(res, 0, sizeof(*res));
  if (len < STORE_CHUNK_MIN_ENCODED || len > STORE_CHUNK_MAX_ENCODED)
    return CORE_EINVAL;
  int in_flags = blob_flags(data, len);
  if (in_flags < 0)
    return in_flags;
  store_path_chunk_rel(rel, digest);

  pthread_mutex_t *m = stripe(cs, digest);
  pthread_mutex_lock(m);
  rc = decide(cs, rel, rel + 5, in_flags, len, &act, &kept);
  pthread_mutex_unlock(m);
  if (rc < 0)
    return rc;
  if (act == ACT_KEEP) {
    res->duplicate = 1;
    res->size = kept;
    return 0;
  }
  rc = write_chunk(cs, rel, data, len);
  if (rc < 0)
    return rc;
  res->written = len;
  res->size = len;
  return 0;
}

/* ---- read, stat, touch, bad -------------------------------------------- */

int store_chunk_read(struct store_chunkstore *cs, const uint8_t digest[32],
                     struct core_buf *out)
{
  return store_chunk_read_into(cs, digest, NULL, out);
}

int store_chunk_read_into(struct store_chunkstore *cs, const uint8_t digest[32],
                          const struct store_chunk_alloc *alloc, struct core_buf *out)
{
  char rel[STORE_CHUNK_REL_LEN + 1];
  struct stat st;
  int rc;
  store_path_chunk_rel(rel, digest);
  core_buf_reset(out);
  int fd = openat(cs->chunks_fd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return errno == ENOENT ? CORE_ENOTFOUND : -errno;
  if (fstat(fd, &st) < 0) {
    rc = -errno;
    goto out;
  }
  if (!S_ISREG(st.st_mode)) {
    rc = CORE_ENOTFOUND;
    goto out;
  }
  if ((uint64_t)st.st_size > STORE_CHUNK_MAX_ENCODED) {
    rc = CORE_ETOOBIG;
    goto out;
  }
  size_t size = (size_t)st.st_size;
  if (alloc && out->base == NULL && size <= out->max) {
    size_t cap;
    char *mem = alloc->get(alloc->ctx, size + 1, &cap);
    if (mem == NULL) {
      rc = -ENOMEM;
      goto out;
    }
    core_buf_adopt(out, mem, cap);
  }
  if ((rc = core_buf_reserve(out, size)) < 0)
    goto out;
  /* Chunk files are never modified in place (only replaced by rename), so
   * the size of the inode behind `fd` is stable. */
  while (out->len < size) {
    ssize_t n = read(fd, out->base + out->len, size - out->len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      rc = -errno;
      goto out;
    }
    if (n == 0)
      break;
    out->len += (size_t)n;
  }
  out->base[out->len] = '\0';
  rc = (int)out->len;
out:
  close(fd);
  if (rc < 0)
    core_buf_reset(out);
  return rc;
}

int store_chunk_stat(struct store_chunkstore *cs, const uint8_t digest[32],
                     struct store_chunk_stat *st)
{
  char rel[STORE_CHUNK_REL_LEN + 1];
  struct stat s;
  store_path_chunk_rel(rel, digest);
  if (fstatat(cs->chunks_fd, rel, &s, AT_SYMLINK_NOFOLLOW) < 0)
    return errno == ENOENT ? CORE_ENOTFOUND : -errno;
  if (!S_ISREG(s.st_mode))
    return CORE_EEXISTS;
  fill_stat(st, &s);
  return 0;
}

int store_chunk_touch(struct store_chunkstore *cs, const uint8_t digest[32])
{
  char rel[STORE_CHUNK_REL_LEN + 1];
  store_path_chunk_rel(rel, digest);
  return touch_at(cs->chunks_fd, rel);
}

/* "<prefix>/<hex>.N.bad" for N in 0..9. */
static void bad_name(char out[STORE_CHUNK_REL_LEN + 7], const char *rel, int n)
{
  memcpy(out, rel, STORE_CHUNK_REL_LEN);
  memcpy(out + STORE_CHUNK_REL_LEN, ".0.bad", 7);
  out[STORE_CHUNK_REL_LEN + 1] = (char)('0' + n);
}

int store_chunk_touch_bad(struct store_chunkstore *cs, const uint8_t digest[32])
{
  char rel[STORE_CHUNK_REL_LEN + 1];
  char bad[STORE_CHUNK_REL_LEN + 7];
  int count = 0;
  store_path_chunk_rel(rel, digest);
  for (int n = 0; n <= 9; n++) {
    bad_name(bad, rel, n);
    int rc = touch_at(cs->chunks_fd, bad);
    if (rc == 0)
      count++;
    else if (rc != CORE_ENOTFOUND)
      return rc;
  }
  return count;
}

int store_chunk_mark_bad(struct store_chunkstore *cs, const uint8_t digest[32])
{
  char rel[STORE_CHUNK_REL_LEN + 1];
  char bad[STORE_CHUNK_REL_LEN + 7];
  int rc = CORE_EEXISTS; /* not kept: N = 9 always overwrites */
  store_path_chunk_rel(rel, digest);
  /* Under the stripe so a concurrent insert's keep-or-replace decision sees
   * either the chunk or its absence, not a half-done rename. */
  pthread_mutex_t *m = stripe(cs, digest);
  pthread_mutex_lock(m);
  for (int n = 0; n <= 9; n++) {
    bad_name(bad, rel, n);
    int r;
    if (n == 9) {
      r = renameat(cs->chunks_fd, rel, cs->chunks_fd, bad);
    } else {
      /* RENAME_NOREPLACE makes "first free N" atomic against a concurrent
       * verify of the same digest; fall back to a check where the file
       * system lacks it. */
      r = renameat2(cs->chunks_fd, rel, cs->chunks_fd, bad, RENAME_NOREPLACE);
      if (r < 0 && (errno == EINVAL || errno == ENOSYS)) {
        if (faccessat(cs->chunks_fd, bad, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
          continue;
        r = renameat(cs->chunks_fd, rel, cs->chunks_fd, bad);
      }
    }
    if (r == 0) {
      rc = n;
      break;
    }
    if (errno == EEXIST)
      continue;
    rc = errno == ENOENT ? CORE_ENOTFOUND : -errno;
    break;
  }
  pthread_mutex_unlock(m);
  return rc;
}

/* Under the digest's stripe: stats `rel` (relative to `dirfd`) and unlinks
 * it if its atime is older than `min_atime`. See store_chunk_remove_if_older. */
static int remove_at(struct store_chunkstore *cs, int dirfd, const char *rel,
                     const uint8_t digest[32], int64_t min_atime, struct store_chunk_stat *st)
{
  struct stat s;
  int rc;
  pthread_mutex_t *m = stripe(cs, digest);
  pthread_mutex_lock(m);
  if (fstatat(dirfd, rel, &s, AT_SYMLINK_NOFOLLOW) < 0) {
    rc = errno == ENOENT ? CORE_ENOTFOUND : -errno;
    goto out;
  }
  if (!S_ISREG(s.st_mode)) {
    rc = CORE_ENAME;
    goto out;
  }
  if (st)
    fill_stat(st, &s);
  rc = 0;
  if (min_atime == INT64_MAX || s.st_atim.tv_sec < min_atime) {
    if (unlinkat(dirfd, rel, 0) < 0)
      rc = errno == ENOENT ? CORE_ENOTFOUND : -errno;
    else
      rc = 1;
  }
out:
  pthread_mutex_unlock(m);
  return rc;
}

int store_chunk_remove_if_older(struct store_chunkstore *cs, unsigned prefix, const char *name,
                                int64_t min_atime, struct store_chunk_stat *st)
{
  uint8_t digest[32];
  int bad;
  char rel[5 + STORE_CHUNK_NAME_MAX + 1];
  if (prefix >= STORE_CHUNK_PREFIXES || name == NULL || store_chunk_parse_name(name, digest, &bad) <= 0)
    return CORE_ENAME;
  prefix_name(rel, prefix);
  /* parse_name bounded the name to STORE_CHUNK_NAME_MAX */
  snprintf(rel + 4, sizeof(rel) - 4, "/%s", name);
  return remove_at(cs, cs->chunks_fd, rel, digest, min_atime, st);
}

/* ---- sync -------------------------------------------------------------- */

int store_syncfs(const char *base)
{
  int fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  int rc = syncfs(fd) < 0 ? -errno : 0;
  close(fd);
  return rc;
}

int store_chunkstore_sync(struct store_chunkstore *cs)
{
  if (atomic_load(&cs->sync_level) != STORE_SYNC_FILESYSTEM)
    return 0;
  return syncfs(cs->base_fd) < 0 ? -errno : 0;
}

/* ---- writers and GC ---------------------------------------------------- */

/* Sets the OFD lock on the whole .lock file: 0 unlock, 1 shared, 2
 * exclusive. Never waits. Converting an existing lock of the same open file
 * description is atomic: a failed upgrade keeps the shared lock. */
static int set_lock(struct store_chunkstore *cs, int state)
{
  struct flock fl;
  memset(&fl, 0, sizeof(fl));
  fl.l_type = state == 0 ? F_UNLCK : state == 1 ? F_RDLCK : F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 0;
  if (fcntl(cs->lock_fd, F_OFD_SETLK, &fl) < 0) {
    if (errno == EAGAIN || errno == EACCES)
      return CORE_ELOCKED;
    return -errno;
  }
  cs->lock_state = state;
  return 0;
}

int store_chunkstore_writer_begin(struct store_chunkstore *cs, int64_t start, uint64_t *token)
{
  int rc = 0;
  pthread_mutex_lock(&cs->reg_mutex);
  if (cs->lock_state == 0 && (rc = set_lock(cs, 1)) < 0)
    goto out;
  if (cs->n_writers == cs->cap_writers) {
    cs->cap_writers = cs->cap_writers ? cs->cap_writers * 2 : 8;
    cs->writers = core_realloc(cs->writers, cs->cap_writers * sizeof(*cs->writers));
  }
  *token = cs->next_token++;
  cs->writers[cs->n_writers].token = *token;
  cs->writers[cs->n_writers].start = start;
  cs->n_writers++;
out:
  pthread_mutex_unlock(&cs->reg_mutex);
  return rc;
}

void store_chunkstore_writer_end(struct store_chunkstore *cs, uint64_t token)
{
  pthread_mutex_lock(&cs->reg_mutex);
  for (size_t i = 0; i < cs->n_writers; i++) {
    if (cs->writers[i].token != token)
      continue;
    cs->writers[i] = cs->writers[--cs->n_writers];
    if (cs->n_writers == 0 && !cs->gc_running && cs->lock_state != 0)
      set_lock(cs, 0); /* unlocking cannot conflict */
    break;
  }
  pthread_mutex_unlock(&cs->reg_mutex);
}

int store_chunkstore_gc_begin(struct store_chunkstore *cs)
{
  int rc;
  pthread_mutex_lock(&cs->reg_mutex);
  if (cs->gc_running) {
    rc = CORE_ELOCKED;
    goto out;
  }
  rc = set_lock(cs, 2);
  if (rc == 0)
    cs->gc_running = 1;
out:
  pthread_mutex_unlock(&cs->reg_mutex);
  return rc;
}

void store_chunkstore_gc_end(struct store_chunkstore *cs)
{
  pthread_mutex_lock(&cs->reg_mutex);
  if (cs->gc_running) {
    cs->gc_running = 0;
    /* Downgrading exclusive -> shared and unlocking never conflict. */
    set_lock(cs, cs->n_writers ? 1 : 0);
  }
  pthread_mutex_unlock(&cs->reg_mutex);
}

int store_chunkstore_oldest_writer(struct store_chunkstore *cs, int64_t *start)
{
  int found = 0;
  pthread_mutex_lock(&cs->reg_mutex);
  for (size_t i = 0; i < cs->n_writers; i++) {
    if (!found || cs->writers[i].start < *start)
      *start = cs->writers[i].start;
    found = 1;
  }
  pthread_mutex_unlock(&cs->reg_mutex);
  return found;
}

/* ---- iteration --------------------------------------------------------- */

#define ITER_BUF (32u * 1024) /* getdents64 buffer, as glibc's readdir uses */

/* core_hex_digit, but lowercase only: what Cairn and PBS write. */
static int lower_hex_digit(char c)
{
  return c >= 'A' && c <= 'F' ? -1 : core_hex_digit((unsigned char)c);
}

int store_chunk_parse_name(const char *name, uint8_t digest[32], int *bad_index)
{
  /* Lowercase hex only: that is what Cairn and PBS write, and GC must never
   * delete a file it does not fully understand. */
  for (int i = 0; i < 32; i++) {
    int hi = lower_hex_digit(name[2 * i]);
    int lo = hi < 0 ? -1 : lower_hex_digit(name[2 * i + 1]);
    if (lo < 0)
      return 0;
    digest[i] = (uint8_t)(hi << 4 | lo);
  }
  const char *rest = name + 64;
  *bad_index = -1;
  if (rest[0] == '\0')
    return STORE_CHUNK_KIND_CHUNK;
  if (strcmp(rest, ".using") == 0)
    return STORE_CHUNK_KIND_USING;
  if (rest[0] == '.' && rest[1] >= '0' && rest[1] <= '9' && strcmp(rest + 2, ".bad") == 0) {
    *bad_index = rest[1] - '0';
    return STORE_CHUNK_KIND_BAD;
  }
  return 0;
}

int store_chunk_iter_open(struct store_chunk_iter *it, struct store_chunkstore *cs,
                          unsigned first, unsigned end, unsigned flags)
{
  memset(it, 0, sizeof(*it));
  it->chunks_fd = cs->chunks_fd;
  it->dir_fd = -1;
  it->noatime = 1;
  it->flags = flags;
  it->next = first;
  it->end = end > STORE_CHUNK_PREFIXES ? STORE_CHUNK_PREFIXES : end;
  /* One readdir of .chunks tells which prefix dirs exist, so a sparse (lazy)
   * store costs one pass here instead of 65,536 failing openat() calls. */
  int fd = openat(cs->chunks_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  DIR *d = fdopendir(fd);
  if (d == NULL) {
    int rc = -errno;
    close(fd);
    return rc;
  }
  struct dirent *de;
  errno = 0;
  while ((de = readdir(d)) != NULL) {
    if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
      continue;
    const char *n = de->d_name;
    int a, b, c, e;
    if (n[0] == '\0' || n[1] == '\0' || n[2] == '\0' || n[3] == '\0' || n[4] != '\0')
      continue;
    if ((a = lower_hex_digit(n[0])) < 0 || (b = lower_hex_digit(n[1])) < 0 || (c = lower_hex_digit(n[2])) < 0 ||
        (e = lower_hex_digit(n[3])) < 0)
      continue;
    unsigned p = (unsigned)(a << 12 | b << 8 | c << 4 | e);
    it->present[p / 64] |= UINT64_C(1) << (p % 64);
  }
  int rc = errno ? -errno : 0;
  closedir(d);
  if (rc == 0)
    it->buf = core_malloc(ITER_BUF);
  return rc;
}

unsigned store_chunk_iter_prefix(const struct store_chunk_iter *it)
{
  return it->dir_fd >= 0 ? it->cur : it->next;
}

static void close_dir(struct store_chunk_iter *it)
{
  if (it->dir_fd >= 0)
    close(it->dir_fd);
  it->dir_fd = -1;
  it->buf_len = it->buf_pos = 0;
}

void store_chunk_iter_close(struct store_chunk_iter *it)
{
  close_dir(it);
  core_free(it->buf);
  it->buf = NULL;
  it->next = it->end;
}

/* Opens the next present prefix directory. 1 opened, 0 done, <0 error (that
 * prefix is skipped on the next call).
 *
 * Why not opendir/readdir: per directory, fdopendir adds an fstat and two
 * fcntl calls to the openat, three syscalls beside the one or two getdents64
 * that return a prefix directory's few dozen names. And O_NOATIME: a sweep
 * that removed chunks changed the directory, so under relatime the next
 * GC's read would write every prefix directory's inode (65,536 journaled
 * inode updates per run) for an atime nobody reads. The kernel allows
 * O_NOATIME only to the owner; elsewhere it is dropped after the first EPERM. */
static int open_next_dir(struct store_chunk_iter *it)
{
  while (it->next < it->end) {
    unsigned p = it->next++;
    if (!(it->present[p / 64] & (UINT64_C(1) << (p % 64))))
      continue;
    char name[5];
    prefix_name(name, p);
    int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW;
    int fd = openat(it->chunks_fd, name, flags | (it->noatime ? O_NOATIME : 0));
    if (fd < 0 && errno == EPERM && it->noatime) {
      it->noatime = 0;
      fd = openat(it->chunks_fd, name, flags);
    }
    if (fd < 0) {
      if (errno == ENOENT || errno == ENOTDIR)
        continue;
      return -errno;
    }
    it->dir_fd = fd;
    it->buf_len = it->buf_pos = 0;
    it->cur = p;
    return 1;
  }
  return 0;
}

/* The next record of the open directory: 1 and *out, 0 at its end, or -errno. */
static int next_dirent(struct store_chunk_iter *it, struct dirent64 **out)
{
  if (it->buf_pos >= it->buf_len) {
    ssize_t n = getdents64(it->dir_fd, it->buf, ITER_BUF);
    if (n < 0)
      return -errno;
    if (n == 0)
      return 0;
    it->buf_len = (size_t)n;
    it->buf_pos = 0;
  }
  struct dirent64 *de = (struct dirent64 *)(void *)(it->buf + it->buf_pos);
  it->buf_pos += de->d_reclen;
  *out = de;
  return 1;
}

int store_chunk_iter_next(struct store_chunk_iter *it, struct store_chunk_entry *e)
{
  if (it->buf == NULL)
    return 0; /* closed */
  for (;;) {
    if (it->dir_fd < 0) {
      int rc = open_next_dir(it);
      if (rc <= 0)
        return rc;
    }
    struct dirent64 *de = NULL;
    int rc = next_dirent(it, &de);
    if (rc <= 0) {
      close_dir(it);
      if (rc < 0)
        return rc;
      continue;
    }
    if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
      continue;
    /* Name check first: junk and temp files never cost a stat. */
    size_t len = strnlen(de->d_name, STORE_CHUNK_NAME_MAX + 1);
    if (len < 64 || len > STORE_CHUNK_NAME_MAX)
      continue;
    int kind = store_chunk_parse_name(de->d_name, e->digest, &e->bad_index);
    if (kind <= 0)
      continue;
    e->size = 0;
    e->atime_sec = 0;
    e->atime_nsec = 0;
    if (!(it->flags & STORE_CHUNK_ITER_NO_STAT) || de->d_type == DT_UNKNOWN) {
      struct stat st;
      if (fstatat(it->dir_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
          continue; /* removed since readdir */
        return -errno;
      }
      if (!S_ISREG(st.st_mode))
        continue;
      if (!(it->flags & STORE_CHUNK_ITER_NO_STAT)) {
        e->size = (uint64_t)st.st_size;
        e->atime_sec = st.st_atim.tv_sec;
        e->atime_nsec = st.st_atim.tv_nsec;
      }
    }
    e->kind = (enum store_chunk_kind)kind;
    e->prefix = it->cur;
    memcpy(e->name, de->d_name, len + 1);
    return 1;
  }
}

int store_chunk_iter_remove_if_older(struct store_chunk_iter *it, struct store_chunkstore *cs,
                                     const struct store_chunk_entry *e, int64_t min_atime,
                                     struct store_chunk_stat *st)
{
  uint8_t digest[32];
  int bad;
  /* The entry must be the one the iterator stands on, and its name a chunk
   * name: the same checks as store_chunk_remove_if_older's. */
  if (it->dir_fd < 0 || e->prefix != it->cur ||
      strnlen(e->name, STORE_CHUNK_NAME_MAX + 1) > STORE_CHUNK_NAME_MAX ||
      store_chunk_parse_name(e->name, digest, &bad) <= 0)
    return CORE_ENAME;
  return remove_at(cs, it->dir_fd, e->name, digest, min_atime, st);
}
