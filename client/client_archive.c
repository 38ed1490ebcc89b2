/* client_archive.c: pax streams with libarchive (see client_archive.h). */
#include "client/client_archive.h"

#include "client/client_dwrite.h"
#include "core/core_alloc.h"
#include "core/core_buf.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_log.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
  va_list ap;
  if (err == NULL || errlen == 0)
    return;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* libarchive reports errno for system failures, EILSEQ for malformed
 * input (its private ARCHIVE_ERRNO_FILE_FORMAT on Linux) and -1 for
 * anything else. */
static int archive_code(struct archive *a)
{
  int e = archive_errno(a);
  if (e == EILSEQ)
    return CORE_EFORMAT;
  if (e > 0 && e < 4096)
    return -e;
  return -EIO;
}

static const char *archive_msg(struct archive *a)
{
  const char *s = archive_error_string(a);
  return s ? s : "unknown error";
}

/* ---- Writing ---- */

struct create_ctx {
  client_archive_write_fn write;
  void *arg;
  int cb_err; /* the callback's error, which libarchive cannot carry */
};

static la_ssize_t create_write_cb(struct archive *a, void *data, const void *buf, size_t len)
{
  struct create_ctx *cc = data;
  int rc = cc->write(cc->arg, buf, len);
  if (rc < 0) {
    cc->cb_err = rc;
    archive_set_error(a, EIO, "output aborted: %s", core_strerror(rc));
    return -1;
  }
  return (la_ssize_t)len;
}

/* The name an entry gets in the stream, relative to the root. */
static int rel_name(struct archive_entry *e, const char *root, size_t root_len,
                    const char *single_name)
{
  const char *p = archive_entry_pathname(e);
  if (single_name) {
    archive_entry_copy_pathname(e, single_name);
    return 0;
  }
  if (p == NULL || strncmp(p, root, root_len) != 0)
    return CORE_ENAME;
  p += root_len;
  if (*p == '\0') {
    archive_entry_copy_pathname(e, ".");
    return 0;
  }
  while (*p == '/')
    p++;
  if (*p == '\0')
    return CORE_ENAME;
  /* copy first: p points into the entry's own pathname storage */
  char *dup = core_strdup(p);
  archive_entry_copy_pathname(e, dup);
  core_free(dup);
  return 0;
}

static int write_zeros(struct archive *w, int64_t n)
{
  static const char zeros[16384];
  while (n > 0) {
    size_t k = n > (int64_t)sizeof(zeros) ? sizeof(zeros) : (size_t)n;
    if (archive_write_data(w, zeros, k) < 0)
      return -1;
    n -= (int64_t)k;
  }
  return 0;
}

/* Copies the current entry's data from disk to the writer. The pax writer
 * takes the whole logical file and drops the holes of the entry's sparse map
 * itself, so holes are fed as zeros here. A file that shrank is padded with
 * zeros by libarchive at finish_entry. */
static int copy_file_data(struct archive *disk, struct archive *w, struct archive_entry *e,
                          uint64_t *bytes, char *err, size_t errlen)
{
  const void *buf;
  size_t sz;
  la_int64_t off, progress = 0;

  for (;;) {
    int r = archive_read_data_block(disk, &buf, &sz, &off);
    if (r == ARCHIVE_EOF)
      break;
    if (r < ARCHIVE_WARN) {
      set_err(err, errlen, "%s: read: %s", archive_entry_sourcepath(e) ? archive_entry_sourcepath(e) : archive_entry_pathname(e),
              archive_msg(disk));
      return archive_code(disk);
    }
    if (off > progress && write_zeros(w, off - progress) < 0)
      goto wfail;
    if (sz > 0 && archive_write_data(w, buf, sz) < 0)
      goto wfail;
    progress = off + (la_int64_t)sz;
    *bytes += sz;
  }
  return 0;
wfail:
  set_err(err, errlen, "%s: %s", archive_entry_pathname(e), archive_msg(w));
  return archive_code(w);
}

int client_archive_create(const char *path, client_archive_write_fn write, void *arg,
                          struct client_archive_stats *stats, char *err, size_t errlen)
{
  struct create_ctx cc = {write, arg, 0};
  struct client_archive_stats st = {0};
  struct archive *disk = NULL, *w = NULL;
  struct archive_entry_linkresolver *links = NULL;
  struct archive_entry *e = NULL, *spare = NULL;
  char *root = NULL, *single = NULL;
  size_t root_len;
  struct stat sb;
  int rc = 0;

  if (stat(path, &sb) != 0) {
    rc = -errno;
    set_err(err, errlen, "%s: %s", path, strerror(errno));
    return rc;
  }
  root = core_strdup(path);
  root_len = strlen(root);
  while (root_len > 1 && root[root_len - 1] == '/')
    root[--root_len] = '\0';
  if (!S_ISDIR(sb.st_mode)) {
    const char *slash = strrchr(root, '/');
    single = core_strdup(slash ? slash + 1 : root);
  }

  disk = archive_read_disk_new();
  w = archive_write_new();
  links = archive_entry_linkresolver_new();
  if (disk == NULL || w == NULL || links == NULL) {
    rc = -ENOMEM;
    goto out;
  }
  archive_read_disk_set_standard_lookup(disk);
  /* Follow a symlink given as PATH, never one met inside the tree. */
  archive_read_disk_set_symlink_hybrid(disk);
  archive_read_disk_set_behavior(disk, ARCHIVE_READDISK_NO_TRAVERSE_MOUNTS);
  if (archive_write_set_format_pax(w) != ARCHIVE_OK ||
      archive_write_set_bytes_per_block(w, CLIENT_ARCHIVE_BLOCK) != ARCHIVE_OK ||
      archive_write_set_bytes_in_last_block(w, 1) != ARCHIVE_OK ||
      archive_write_open(w, &cc, NULL, create_write_cb, NULL) != ARCHIVE_OK) {
    set_err(err, errlen, "pax writer: %s", archive_msg(w));
    rc = cc.cb_err ? cc.cb_err : archive_code(w);
    goto out;
  }
  archive_entry_linkresolver_set_strategy(links, archive_format(w));
  if (archive_read_disk_open(disk, root) != ARCHIVE_OK) {
    set_err(err, errlen, "%s: %s", root, archive_msg(disk));
    rc = archive_code(disk);
    goto out;
  }

  for (;;) {
    int r;
    e = archive_entry_new();
    r = archive_read_next_header2(disk, e);
    if (r == ARCHIVE_EOF)
      break;
    if (r == ARCHIVE_WARN) {
      core_warn("%s: %s", archive_entry_pathname(e), archive_msg(disk));
      st.warnings++;
    } else if (r == ARCHIVE_FAILED && archive_errno(disk) == ENOENT) {
      /* Vanished between readdir and stat: what a live file system does. */
      core_warn("%s: vanished during backup", archive_entry_pathname(e));
      st.warnings++;
      archive_entry_free(e);
      e = NULL;
      continue;
    } else if (r < ARCHIVE_WARN) {
      const char *p = archive_entry_pathname(e);
      set_err(err, errlen, "%s: %s", p ? p : root, archive_msg(disk));
      rc = archive_code(disk);
      goto out;
    }
    archive_read_disk_descend(disk);

    /* Data is read from the file's real path, which the rename hides. */
    if (archive_entry_sourcepath(e) == NULL)
      archive_entry_copy_sourcepath(e, archive_entry_pathname(e));
    if ((rc = rel_name(e, root, root_len, single)) < 0) {
      set_err(err, errlen, "%s: unexpected path in walk", archive_entry_pathname(e));
      goto out;
    }
    /* atime moves whenever a file is read and ctime with every metadata
     * touch; neither is restored, and keeping them would make the headers of
     * an unchanged tree differ on every backup, costing deduplication. */
    archive_entry_unset_atime(e);
    archive_entry_unset_ctime(e);
    archive_entry_unset_birthtime(e);
    archive_entry_linkify(links, &e, &spare);
    if (e != NULL) {
      r = archive_write_header(w, e);
      if (r < ARCHIVE_WARN) {
        set_err(err, errlen, "%s: %s", archive_entry_sourcepath(e), archive_msg(w));
        rc = cc.cb_err ? cc.cb_err : archive_code(w);
        goto out;
      }
      st.entries++;
      if (archive_entry_filetype(e) == AE_IFREG && archive_entry_size(e) > 0) {
        st.files++;
        rc = copy_file_data(disk, w, e, &st.file_bytes, err, errlen);
        if (rc < 0) {
          if (cc.cb_err)
            rc = cc.cb_err;
          goto out;
        }
      }
      if (archive_write_finish_entry(w) < ARCHIVE_WARN) {
        set_err(err, errlen, "%s: %s", archive_entry_sourcepath(e), archive_msg(w));
        rc = cc.cb_err ? cc.cb_err : archive_code(w);
        goto out;
      }
    }
    /* The pax strategy never defers entries, so nothing is left in spare. */
    if (spare) {
      archive_entry_free(spare);
      spare = NULL;
    }
    if (e) {
      archive_entry_free(e);
      e = NULL;
    }
  }
  if (archive_write_close(w) != ARCHIVE_OK) {
    set_err(err, errlen, "pax writer: %s", archive_msg(w));
    rc = cc.cb_err ? cc.cb_err : archive_code(w);
    goto out;
  }

out:
  if (e)
    archive_entry_free(e);
  if (links)
    archive_entry_linkresolver_free(links);
  if (w)
    archive_write_free(w);
  if (disk)
    archive_read_free(disk);
  core_free(root);
  core_free(single);
  if (stats)
    *stats = st;
  return rc;
}

/* ---- Reading ---- */

/* Files at least this large are written around the page cache
 * (client_dwrite.h); smaller ones through libarchive. */
#define DIRECT_MIN ((int64_t)1 << 20)

struct read_ctx {
  client_archive_read_fn read;
  void *arg;
  int cb_err;
  struct core_buf *probe; /* copies of what was handed out, while deciding (cat) */
};

static la_ssize_t extract_read_cb(struct archive *a, void *data, const void **buf)
{
  struct read_ctx *rc = data;
  ssize_t n = rc->read(rc->arg, buf);
  if (n < 0) {
    rc->cb_err = (int)n;
    archive_set_error(a, EIO, "input aborted: %s", core_strerror((int)n));
    return -1;
  }
  if (rc->probe && n > 0 && core_buf_append(rc->probe, *buf, (size_t)n) < 0) {
    rc->cb_err = CORE_ETOOBIG;
    archive_set_error(a, EIO, "first entry header too large");
    return -1;
  }
  return n;
}

/* Names from the network: relative, without "..", without empty parts. */
static int safe_name(const char *p)
{
  const char *s;
  if (p == NULL || *p == '\0' || *p == '/')
    return 0;
  if (strcmp(p, ".") == 0)
    return 1;
  for (s = p; *s;) {
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 2 && s[0] == '.' && s[1] == '.')
      return 0;
    if (n == 0 && slash && slash[1] != '\0')
      return 0;
    if (!slash)
      break;
    s = slash + 1;
  }
  return 1;
}

static char *join(const char *dir, const char *name)
{
  if (strcmp(name, ".") == 0 || strcmp(name, "./") == 0)
    return core_strdup(dir);
  if (strncmp(name, "./", 2) == 0)
    name += 2;
  return core_asprintf("%s/%s", dir, name);
}

static int open_reader(struct read_ctx *ctx, struct archive **out, char *err, size_t errlen)
{
  struct archive *r = archive_read_new();
  if (r == NULL)
    return -ENOMEM;
  archive_read_support_format_tar(r);
  if (archive_read_open(r, ctx, NULL, extract_read_cb, NULL) != ARCHIVE_OK) {
    set_err(err, errlen, "archive: %s", archive_msg(r));
    int rc = ctx->cb_err ? ctx->cb_err : archive_code(r);
    archive_read_free(r);
    return rc;
  }
  *out = r;
  return 0;
}

/* The first header decides the kind: a stream starting with a regular file is
 * a single-file archive. Returns ARCHIVE_OK/EOF or an error code (< 0 ours). */
static int first_header(struct archive *r, struct read_ctx *ctx, struct archive_entry **e,
                        char *err, size_t errlen)
{
  int x = archive_read_next_header(r, e);
  if (x == ARCHIVE_EOF)
    return 1;
  if (x < ARCHIVE_WARN) {
    set_err(err, errlen, "archive: %s", archive_msg(r));
    if (ctx->cb_err)
      return ctx->cb_err;
    return archive_errno(r) > 0 ? archive_code(r) : CORE_EFORMAT;
  }
  return 0;
}

/* libarchive leaves an existing directory's metadata alone, and the target
 * usually exists (we make it): give it the root entry's owner, xattrs, mode
 * and times ourselves, times last. */
static int apply_root(const char *dir, struct archive_entry *e, int flags, char *err,
                      size_t errlen)
{
  const char *xname;
  const void *xval;
  size_t xlen;
  struct timespec ts[2];

  if ((flags & CLIENT_EXTRACT_OWNER) &&
      chown(dir, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e)) != 0)
    core_warn("%s: chown: %s", dir, strerror(errno));
  archive_entry_xattr_reset(e);
  while (archive_entry_xattr_next(e, &xname, &xval, &xlen) == ARCHIVE_OK)
    if (setxattr(dir, xname, xval, xlen, 0) != 0)
      core_warn("%s: xattr %s: %s", dir, xname, strerror(errno));
  if (chmod(dir, archive_entry_perm(e)) != 0) {
    set_err(err, errlen, "%s: chmod: %s", dir, strerror(errno));
    return -errno;
  }
  ts[0].tv_sec = 0;
  ts[0].tv_nsec = UTIME_OMIT;
  ts[1].tv_sec = archive_entry_mtime(e);
  ts[1].tv_nsec = archive_entry_mtime_nsec(e);
  if (archive_entry_mtime_is_set(e) && utimensat(AT_FDCWD, dir, ts, 0) != 0) {
    set_err(err, errlen, "%s: utimensat: %s", dir, strerror(errno));
    return -errno;
  }
  return 0;
}

/* Copies the entry's data through libarchive's disk writer. */
static int data_archive(struct archive *r, struct read_ctx *ctx, struct archive *d,
                        const char *name, uint64_t *bytes, char *err, size_t errlen)
{
  const void *buf;
  size_t sz;
  la_int64_t off;

  for (;;) {
    int x = archive_read_data_block(r, &buf, &sz, &off);
    if (x == ARCHIVE_EOF)
      return 0;
    if (x < ARCHIVE_WARN) {
      set_err(err, errlen, "%s: %s", name, archive_msg(r));
      return ctx->cb_err ? ctx->cb_err : archive_code(r);
    }
    if (archive_write_data_block(d, buf, sz, off) < ARCHIVE_WARN) {
      set_err(err, errlen, "%s: %s", name, archive_msg(d));
      return archive_code(d);
    }
    *bytes += sz;
  }
}

/* Copies the entry's data with `dw` into `path`, the regular file
 * archive_write_header just created (libarchive still sets its size, times
 * and mode at finish_entry, on its own descriptor). Returns 1 when done, 0
 * when the file cannot be opened again (say, read-only to a user who is not
 * root): the caller lets libarchive write it. */
static int data_direct(struct archive *r, struct read_ctx *ctx, struct client_dwrite *dw,
                       const char *path, const char *name, uint64_t *bytes, char *err,
                       size_t errlen)
{
  const void *buf;
  size_t sz;
  la_int64_t off;
  struct stat sb;
  int fd, rc;

  fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return 0;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return 0;
  }
  client_dwrite_begin(dw, fd);
  for (;;) {
    int x = archive_read_data_block(r, &buf, &sz, &off);
    if (x == ARCHIVE_EOF)
      break;
    if (x < ARCHIVE_WARN) {
      set_err(err, errlen, "%s: %s", name, archive_msg(r));
      rc = ctx->cb_err ? ctx->cb_err : archive_code(r);
      goto fail;
    }
    if ((rc = client_dwrite_write(dw, (uint64_t)off, buf, sz)) < 0) {
      set_err(err, errlen, "%s: write: %s", name, strerror(-rc));
      goto fail;
    }
    *bytes += sz;
  }
  rc = client_dwrite_end(dw);
  if (rc < 0)
    set_err(err, errlen, "%s: write: %s", name, strerror(-rc));
  close(fd);
  return rc < 0 ? rc : 1;
fail:
  client_dwrite_end(dw);
  close(fd);
  return rc;
}

int client_archive_extract(const char *target, int flags, client_archive_read_fn readfn,
                           void *arg, struct client_archive_stats *stats, char *err,
                           size_t errlen)
{
  struct client_dwrite dw = {.fd = -1};
  struct read_ctx ctx = {readfn, arg, 0, NULL};
  struct client_archive_stats st = {0};
  struct archive *r = NULL, *d = NULL;
  struct archive_entry *e;
  char *base = NULL, *single_dest = NULL, *name = NULL, *link = NULL;
  struct archive_entry *root = NULL; /* the "." entry, applied last */
  int rc, first = 1, opts;
  struct stat sb;

  if ((rc = open_reader(&ctx, &r, err, errlen)) < 0)
    return rc;
  d = archive_write_disk_new();
  if (d == NULL) {
    rc = -ENOMEM;
    goto out;
  }
  opts = ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_XATTR |
         ARCHIVE_EXTRACT_ACL | ARCHIVE_EXTRACT_FFLAGS | ARCHIVE_EXTRACT_SPARSE |
         ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
         ARCHIVE_EXTRACT_UNLINK;
  if (flags & CLIENT_EXTRACT_OWNER)
    opts |= ARCHIVE_EXTRACT_OWNER;
  archive_write_disk_set_options(d, opts);
  archive_write_disk_set_standard_lookup(d);

  for (;;) {
    int x;
    if (first) {
      x = first_header(r, &ctx, &e, err, errlen);
      if (x < 0) {
        rc = x;
        goto out;
      }
      if (x == 1)
        break;
    } else {
      x = archive_read_next_header(r, &e);
      if (x == ARCHIVE_EOF)
        break;
      if (x < ARCHIVE_WARN) {
        set_err(err, errlen, "archive: %s", archive_msg(r));
        rc = ctx.cb_err ? ctx.cb_err : archive_code(r);
        goto out;
      }
    }
    /* copies: renaming the entry below frees the strings libarchive holds */
    core_free(name);
    core_free(link);
    name = archive_entry_pathname(e) ? core_strdup(archive_entry_pathname(e)) : NULL;
    link = archive_entry_hardlink(e) ? core_strdup(archive_entry_hardlink(e)) : NULL;
    if (!safe_name(name) || (link && !safe_name(link))) {
      set_err(err, errlen, "refusing unsafe entry name \"%s\"", name ? name : "");
      rc = CORE_ENAME;
      goto out;
    }
    if (root == NULL && (strcmp(name, ".") == 0 || strcmp(name, "./") == 0) &&
        archive_entry_filetype(e) == AE_IFDIR)
      root = archive_entry_clone(e);
    if (first) {
      first = 0;
      if (archive_entry_filetype(e) == AE_IFREG) {
        /* single file: TARGET is the file, or the directory to put it in */
        if (stat(target, &sb) == 0 && S_ISDIR(sb.st_mode))
          single_dest = join(target, name);
        else
          single_dest = core_strdup(target);
      } else {
        if (mkdir(target, 0700) != 0 && errno != EEXIST) {
          rc = -errno;
          set_err(err, errlen, "%s: %s", target, strerror(errno));
          goto out;
        }
        /* SECURE_SYMLINKS checks every component; resolve the target so a
         * symlink in it (say /tmp -> /private/tmp) is allowed. */
        base = realpath(target, NULL);
        if (base == NULL) {
          rc = -errno;
          set_err(err, errlen, "%s: %s", target, strerror(errno));
          goto out;
        }
      }
    }
    if (single_dest) {
      if (archive_entry_filetype(e) != AE_IFREG || st.entries > 0) {
        set_err(err, errlen, "single-file archive holds more than one entry");
        rc = CORE_EFORMAT;
        goto out;
      }
      archive_entry_copy_pathname(e, single_dest);
    } else {
      char *p = join(base, name);
      archive_entry_copy_pathname(e, p);
      core_free(p);
      if (link) {
        p = join(base, link);
        archive_entry_copy_hardlink(e, p);
        core_free(p);
      }
    }

    x = archive_write_header(d, e);
    if (x < ARCHIVE_OK) {
      if (x < ARCHIVE_WARN) {
        set_err(err, errlen, "%s: %s", name, archive_msg(d));
        rc = archive_code(d);
        goto out;
      }
      core_warn("%s: %s", name, archive_msg(d));
      st.warnings++;
    }
    st.entries++;
    if (archive_entry_size(e) > 0 && archive_entry_filetype(e) == AE_IFREG) {
      st.files++;
      rc = 0;
      if (archive_entry_size(e) >= DIRECT_MIN && link == NULL) {
        if (dw.buf == NULL && client_dwrite_init(&dw) < 0) {
          rc = -ENOMEM;
          set_err(err, errlen, "%s: out of memory", name);
          goto out;
        }
        rc = data_direct(r, &ctx, &dw, archive_entry_pathname(e), name, &st.file_bytes, err,
                         errlen);
      }
      if (rc == 0)
        rc = data_archive(r, &ctx, d, name, &st.file_bytes, err, errlen);
      if (rc < 0)
        goto out;
    }
    x = archive_write_finish_entry(d);
    if (x < ARCHIVE_OK) {
      if (x < ARCHIVE_WARN) {
        set_err(err, errlen, "%s: %s", name, archive_msg(d));
        rc = archive_code(d);
        goto out;
      }
      core_warn("%s: %s", name, archive_msg(d));
      st.warnings++;
    }
  }
  if (first) {
    set_err(err, errlen, "empty archive");
    rc = CORE_EFORMAT;
    goto out;
  }
  /* Directory modes and times are applied here, after their contents. */
  if (archive_write_close(d) < ARCHIVE_WARN) {
    set_err(err, errlen, "%s: %s", target, archive_msg(d));
    rc = archive_code(d);
    goto out;
  }
  if (root && (rc = apply_root(base, root, flags, err, errlen)) < 0)
    goto out;
  rc = 0;

out:
  client_dwrite_free(&dw);
  if (root)
    archive_entry_free(root);
  core_free(name);
  core_free(link);
  if (d)
    archive_write_free(d);
  if (r)
    archive_read_free(r);
  free(base); /* from realpath */
  core_free(single_dest);
  if (stats)
    *stats = st;
  return rc;
}

static int write_zero_fd(int fd, int64_t n)
{
  static const char zeros[16384];
  while (n > 0) {
    size_t k = n > (int64_t)sizeof(zeros) ? sizeof(zeros) : (size_t)n;
    int rc = core_file_write_all(fd, zeros, k);
    if (rc < 0)
      return rc;
    n -= (int64_t)k;
  }
  return 0;
}

int client_archive_cat(int fd, client_archive_read_fn readfn, void *arg, char *err,
                       size_t errlen)
{
  struct core_buf probe;
  struct read_ctx ctx = {readfn, arg, 0, &probe};
  struct archive *r = NULL;
  struct archive_entry *e;
  int rc, x;

  /* Headers are small, but the callback may hand out a whole chunk. */
  core_buf_init(&probe, (size_t)64 << 20);
  if ((rc = open_reader(&ctx, &r, err, errlen)) < 0)
    goto out;
  x = first_header(r, &ctx, &e, err, errlen);
  if (x < 0) {
    rc = x;
    goto out;
  }
  if (x == 1 || archive_entry_filetype(e) != AE_IFREG) {
    /* a directory archive: the pax stream itself, starting with what the
     * probe already consumed */
    const void *buf;
    ssize_t n;
    archive_read_free(r);
    r = NULL;
    if ((rc = core_file_write_all(fd, probe.base, probe.len)) < 0)
      goto werr;
    while ((n = readfn(arg, &buf)) > 0)
      if ((rc = core_file_write_all(fd, buf, (size_t)n)) < 0)
        goto werr;
    rc = (int)n;
    goto out;
  }
  ctx.probe = NULL;
  core_buf_free(&probe);
  {
    const void *buf;
    size_t sz;
    la_int64_t off, progress = 0;
    for (;;) {
      x = archive_read_data_block(r, &buf, &sz, &off);
      if (x == ARCHIVE_EOF)
        break;
      if (x < ARCHIVE_WARN) {
        set_err(err, errlen, "%s: %s", archive_entry_pathname(e), archive_msg(r));
        rc = ctx.cb_err ? ctx.cb_err : archive_code(r);
        goto out;
      }
      if (off > progress && (rc = write_zero_fd(fd, off - progress)) < 0)
        goto werr;
      if ((rc = core_file_write_all(fd, buf, sz)) < 0)
        goto werr;
      progress = off + (la_int64_t)sz;
    }
    if (progress < archive_entry_size(e) &&
        (rc = write_zero_fd(fd, archive_entry_size(e) - progress)) < 0)
      goto werr;
  }
  rc = 0;
  goto out;
werr:
  set_err(err, errlen, "output: %s", strerror(-rc));
out:
  if (r)
    archive_read_free(r);
  core_buf_free(&probe);
  return rc;
}

int client_image_size(int fd, uint64_t *size)
{
  struct stat sb;
  if (fstat(fd, &sb) != 0)
    return -errno;
  if (S_ISREG(sb.st_mode)) {
    *size = (uint64_t)sb.st_size;
    return 0;
  }
  if (S_ISBLK(sb.st_mode)) {
    uint64_t n;
    if (ioctl(fd, BLKGETSIZE64, &n) != 0)
      return -errno;
    *size = n;
    return 0;
  }
  return -EINVAL;
}
