/* client_archive.c: pax streams with libarchive (see client_archive.h). */
#include "client/client_archive.h"

#include "client/client_dwrite.h"
#include "client/client_pattern.h"
#include "core/core_alloc.h"
#include "core/core_buf.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_log.h"
#include "format/format_catalog.h"

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

/* libarchive's writer runs unblocked and the bytes are gathered here into
 * blocks of CLIENT_ARCHIVE_BLOCK, so the stream offset of every entry is
 * known (`off`) and the block can be handed on early (create_flush) where the
 * entry callback needs the consumer to have seen everything before it. */
struct create_ctx {
  client_archive_write_fn write;
  void *arg;
  int cb_err;   /* the callback's error, which libarchive cannot carry */
  uint64_t off; /* stream bytes accepted so far */
  uint8_t *buf; /* owned: CLIENT_ARCHIVE_BLOCK bytes */
  size_t used;
  uint64_t discard; /* stand-in bytes of a reused file still to come: counted, not passed on */
};

static int create_flush(struct create_ctx *cc)
{
  int rc;
  if (cc->cb_err)
    return cc->cb_err;
  if (cc->used == 0)
    return 0;
  rc = cc->write(cc->arg, cc->buf, cc->used);
  cc->used = 0;
  if (rc < 0)
    cc->cb_err = rc;
  return rc < 0 ? rc : 0;
}

static la_ssize_t create_write_cb(struct archive *a, void *data, const void *buf, size_t len)
{
  struct create_ctx *cc = data;
  const uint8_t *p = buf;
  size_t left = len;
  if (cc->discard > 0) {
    /* the pax writer hands file data straight through, so these are the
     * zeros create_regular wrote, in order */
    size_t k = cc->discard < left ? (size_t)cc->discard : left;
    cc->discard -= k;
    p += k;
    left -= k;
  }
  while (left > 0 && cc->cb_err == 0) {
    size_t k = CLIENT_ARCHIVE_BLOCK - cc->used;
    if (k > left)
      k = left;
    memcpy(cc->buf + cc->used, p, k);
    cc->used += k;
    p += k;
    left -= k;
    if (cc->used == CLIENT_ARCHIVE_BLOCK)
      create_flush(cc);
  }
  if (cc->cb_err) {
    archive_set_error(a, EIO, "output aborted: %s", core_strerror(cc->cb_err));
    return -1;
  }
  cc->off += len;
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
    for (size_t done = 0; done < sz;) {
      size_t k = sz - done > CLIENT_ARCHIVE_BLOCK ? CLIENT_ARCHIVE_BLOCK : sz - done;
      if (archive_write_data(w, (const char *)buf + done, k) < 0)
        goto wfail;
      done += k;
    }
    progress = off + (la_int64_t)sz;
    *bytes += sz;
  }
  return 0;
wfail:
  set_err(err, errlen, "%s: %s", archive_entry_pathname(e), archive_msg(w));
  return archive_code(w);
}

/* One create run: the disk walk, the pax writer and what they share. */
struct creator {
  struct create_ctx cc;
  struct client_archive_stats st;
  struct archive *disk;                    /* owned: walks the tree */
  struct archive *w;                       /* owned: the pax writer */
  struct archive_entry_linkresolver *links; /* owned: pairs up hard links */
  char *root;                              /* owned: the path, without trailing '/' */
  size_t root_len;
  char *single; /* owned: the entry's name for a single-file archive, else NULL */
  const struct client_archive_create_opts *opts;
  struct client_pattern_set files; /* patterns of the .cairnexclude files met */
  struct format_catalog_entry info; /* the entry being written, for opts->entry */
  char *info_path, *info_link;      /* owned: its strings */
  char *err;
  size_t errlen;
};

/* The pax writer's failure for entry `e`: the output callback's error,
 * which libarchive cannot carry, or libarchive's own. */
static int writer_fail(struct creator *c, struct archive_entry *e)
{
  set_err(c->err, c->errlen, "%s: %s", archive_entry_sourcepath(e), archive_msg(c->w));
  return c->cc.cb_err ? c->cc.cb_err : archive_code(c->w);
}

/* Sets up the walk of c->root and the writer. Returns 0 or an error. */
static int creator_open(struct creator *c)
{
  c->disk = archive_read_disk_new();
  c->w = archive_write_new();
  c->links = archive_entry_linkresolver_new();
  if (c->disk == NULL || c->w == NULL || c->links == NULL)
    return -ENOMEM;
  archive_read_disk_set_standard_lookup(c->disk);
  /* Follow a symlink given as PATH, never one met inside the tree. */
  archive_read_disk_set_symlink_hybrid(c->disk);
  archive_read_disk_set_behavior(c->disk, ARCHIVE_READDISK_NO_TRAVERSE_MOUNTS);
  if (archive_write_set_format_pax(c->w) != ARCHIVE_OK ||
      /* unblocked: the callback's byte count is the stream offset */
      archive_write_set_bytes_per_block(c->w, 0) != ARCHIVE_OK ||
      archive_write_set_bytes_in_last_block(c->w, 1) != ARCHIVE_OK ||
      archive_write_open(c->w, &c->cc, NULL, create_write_cb, NULL) != ARCHIVE_OK) {
    set_err(c->err, c->errlen, "pax writer: %s", archive_msg(c->w));
    return c->cc.cb_err ? c->cc.cb_err : archive_code(c->w);
  }
  archive_entry_linkresolver_set_strategy(c->links, archive_format(c->w));
  if (archive_read_disk_open(c->disk, c->root) != ARCHIVE_OK) {
    set_err(c->err, c->errlen, "%s: %s", c->root, archive_msg(c->disk));
    return archive_code(c->disk);
  }
  return 0;
}

/* The walk's next entry into *out (the caller's to free). Returns 1, 0 at
 * the end of the walk, or an error. A file that vanished between readdir
 * and stat is skipped with a warning: that is what a live file system does. */
static int creator_next(struct creator *c, struct archive_entry **out)
{
  for (;;) {
    struct archive_entry *e = archive_entry_new();
    int r = archive_read_next_header2(c->disk, e);
    if (r == ARCHIVE_EOF) {
      archive_entry_free(e);
      return 0;
    }
    if (r == ARCHIVE_WARN) {
      core_warn("%s: %s", archive_entry_pathname(e), archive_msg(c->disk));
      c->st.warnings++;
    } else if (r == ARCHIVE_FAILED && archive_errno(c->disk) == ENOENT) {
      core_warn("%s: vanished during backup", archive_entry_pathname(e));
      c->st.warnings++;
      archive_entry_free(e);
      continue;
    } else if (r < ARCHIVE_WARN) {
      const char *p = archive_entry_pathname(e);
      set_err(c->err, c->errlen, "%s: %s", p ? p : c->root, archive_msg(c->disk));
      archive_entry_free(e);
      return archive_code(c->disk);
    }
    *out = e;
    return 1;
  }
}

/* Names the entry relative to the root; its data is still read from the
 * real path, which the rename hides. */
static int entry_name(struct creator *c, struct archive_entry *e)
{
  if (archive_entry_sourcepath(e) == NULL)
    archive_entry_copy_sourcepath(e, archive_entry_pathname(e));
  int rc = rel_name(e, c->root, c->root_len, c->single);
  if (rc < 0)
    set_err(c->err, c->errlen, "%s: unexpected path in walk", archive_entry_pathname(e));
  return rc;
}

/* Metadata: the walk collected owner, mode, mtime, xattrs, ACLs, file flags
 * and the sparse map, and the header carries them all but these. atime
 * moves whenever a file is read and ctime with every metadata touch;
 * neither is restored, and keeping them would make the headers of an
 * unchanged tree differ on every backup, costing deduplication. */
static void entry_drop_volatile_times(struct archive_entry *e)
{
  archive_entry_unset_atime(e);
  archive_entry_unset_ctime(e);
  archive_entry_unset_birthtime(e);
}

/* A regular file: its data follows the header. An empty file, or a hard
 * link to one written earlier (the resolver zeroed its size), has none. */
static int create_regular(struct creator *c, struct archive_entry *e)
{
  int rc, reuse = 0;
  if (archive_entry_size(e) <= 0)
    return 0;
  c->st.files++;
  c->info.data_off = c->cc.off;
  if (c->opts->entry && (rc = create_flush(&c->cc)) < 0)
    return rc;
  if (c->opts->entry && !(c->info.flags & FORMAT_CATALOG_SPARSE)) {
    reuse = c->opts->entry(c->opts->entry_arg, CLIENT_ARCHIVE_DATA, &c->info);
    if (reuse < 0)
      return reuse;
  }
  if (reuse) {
    /* the callback's owner stands in for the data: zeros keep libarchive's
     * count and are dropped on their way out (create_write_cb) */
    static const char zeros[CLIENT_ARCHIVE_BLOCK];
    int64_t n = archive_entry_size(e);
    c->cc.discard = (uint64_t)n;
    while (n > 0) {
      size_t k = n > (int64_t)sizeof(zeros) ? sizeof(zeros) : (size_t)n;
      if (archive_write_data(c->w, zeros, k) < 0)
        return writer_fail(c, e);
      n -= (int64_t)k;
    }
    if (c->cc.discard != 0) {
      set_err(c->err, c->errlen, "%s: the pax writer held back file data",
              archive_entry_pathname(e));
      return CORE_EPROTO;
    }
    rc = 0;
  } else {
    rc = copy_file_data(c->disk, c->w, e, &c->st.file_bytes, c->err, c->errlen);
    if (rc < 0 && c->cc.cb_err)
      rc = c->cc.cb_err;
    if (rc < 0)
      return rc;
  }
  c->info.data_len = c->cc.off - c->info.data_off;
  if (c->opts->entry && (rc = create_flush(&c->cc)) == 0)
    rc = c->opts->entry(c->opts->entry_arg, CLIENT_ARCHIVE_DATA_END, &c->info);
  return rc < 0 ? rc : 0;
}

/* Writes one entry: its header, then what its type adds. */
static int create_write(struct creator *c, struct archive_entry *e)
{
  c->info.hdr_off = c->cc.off;
  c->info.data_off = c->info.end_off = c->cc.off;
  c->info.data_len = 0;
  if (c->opts->entry) {
    int rc = create_flush(&c->cc);
    if (rc == 0)
      rc = c->opts->entry(c->opts->entry_arg, CLIENT_ARCHIVE_HEADER, &c->info);
    if (rc < 0)
      return rc;
  }
  if (archive_write_header(c->w, e) < ARCHIVE_WARN)
    return writer_fail(c, e);
  c->st.entries++;
  c->info.data_off = c->cc.off;
  c->info.data_len = 0;
  if (archive_entry_filetype(e) == AE_IFREG && archive_entry_hardlink(e) == NULL) {
    int rc = create_regular(c, e);
    if (rc < 0)
      return rc;
  }
  /* Directories, symlinks (the target is in the header), devices and fifos
   * are their header alone. */
  if (archive_write_finish_entry(c->w) < ARCHIVE_WARN)
    return writer_fail(c, e);
  c->info.end_off = c->cc.off;
  if (c->opts->entry)
    return c->opts->entry(c->opts->entry_arg, CLIENT_ARCHIVE_DONE, &c->info);
  return 0;
}

static uint8_t catalog_type(struct archive_entry *e)
{
  if (archive_entry_hardlink(e) != NULL)
    return FORMAT_CATALOG_HARDLINK;
  switch (archive_entry_filetype(e)) {
  case AE_IFREG: return FORMAT_CATALOG_FILE;
  case AE_IFDIR: return FORMAT_CATALOG_DIR;
  case AE_IFLNK: return FORMAT_CATALOG_SYMLINK;
  case AE_IFCHR: return FORMAT_CATALOG_CHR;
  case AE_IFBLK: return FORMAT_CATALOG_BLK;
  case AE_IFIFO: return FORMAT_CATALOG_FIFO;
  case AE_IFSOCK: return FORMAT_CATALOG_SOCK;
  default: return FORMAT_CATALOG_FILE;
  }
}

/* What the entry callback is told, taken before the volatile times go. */
static void info_capture(struct creator *c, struct archive_entry *e)
{
  struct format_catalog_entry *i = &c->info;
  memset(i, 0, sizeof(*i));
  core_free(c->info_path);
  c->info_path = core_strdup(archive_entry_pathname(e));
  i->path = c->info_path;
  i->path_len = strlen(c->info_path);
  i->mode = archive_entry_mode(e);
  i->uid = (uint32_t)archive_entry_uid(e);
  i->gid = (uint32_t)archive_entry_gid(e);
  i->size = archive_entry_size(e) > 0 ? (uint64_t)archive_entry_size(e) : 0;
  i->mtime = archive_entry_mtime(e);
  i->mtime_ns = (uint32_t)archive_entry_mtime_nsec(e);
  i->ctime = archive_entry_ctime(e);
  i->ctime_ns = (uint32_t)archive_entry_ctime_nsec(e);
  i->ino = (uint64_t)archive_entry_ino64(e);
  i->dev = (uint64_t)archive_entry_dev(e);
  i->rdev = (uint64_t)archive_entry_rdev(e);
  i->link = "";
}

/* After linkify: the entry's kind and link target as written. */
static void info_finish(struct creator *c, struct archive_entry *e)
{
  struct format_catalog_entry *i = &c->info;
  const char *l = archive_entry_hardlink(e);
  i->type = catalog_type(e);
  if (l == NULL && i->type == FORMAT_CATALOG_SYMLINK)
    l = archive_entry_symlink(e);
  core_free(c->info_link);
  c->info_link = core_strdup(l ? l : "");
  i->link = c->info_link;
  i->link_len = strlen(c->info_link);
  if (i->type != FORMAT_CATALOG_FILE)
    i->size = 0;
  if (i->type == FORMAT_CATALOG_FILE && archive_entry_sparse_count(e) > 0)
    i->flags |= FORMAT_CATALOG_SPARSE;
}

/* 1 when the entry is to be left out (--exclude, .cairnexclude). */
static int excluded(struct creator *c, const char *name, int is_dir)
{
  if (c->single || strcmp(name, ".") == 0)
    return 0;
  if (c->opts->exclude && client_pattern_match(c->opts->exclude, name, is_dir))
    return 1;
  return client_pattern_match(&c->files, name, is_dir);
}

/* A directory's .cairnexclude: its patterns apply below it. */
static void load_exclude_file(struct creator *c, struct archive_entry *e)
{
  char *p = core_asprintf("%s/.cairnexclude", archive_entry_sourcepath(e));
  uint8_t *text = NULL;
  size_t len = 0;
  struct stat sb;
  if (lstat(p, &sb) == 0 && S_ISREG(sb.st_mode)) {
    int rc = core_file_read(p, (size_t)1 << 20, &text, &len);
    if (rc < 0) {
      core_warn("%s: %s", p, core_strerror(rc));
      c->st.warnings++;
    } else if (client_pattern_add_lines(&c->files, (const char *)text, len,
                                        archive_entry_pathname(e)) < 0) {
      core_warn("%s: a pattern is too long", p);
      c->st.warnings++;
    }
  }
  core_free(text);
  core_free(p);
}

/* Adds the entry the walk just returned; takes `e`. */
static int create_entry(struct creator *c, struct archive_entry *e)
{
  struct archive_entry *spare = NULL;
  int rc;

  rc = entry_name(c, e);
  if (rc < 0)
    goto out;
  if (excluded(c, archive_entry_pathname(e), archive_entry_filetype(e) == AE_IFDIR))
    goto out; /* and, for a directory, all it holds: no descend */
  /* A directory: the walk goes into it next (a no-op for anything else). */
  archive_read_disk_descend(c->disk);
  if (archive_entry_filetype(e) == AE_IFDIR && !c->opts->no_exclude_files)
    load_exclude_file(c, e);
  info_capture(c, e);
  entry_drop_volatile_times(e);
  /* Hard links: the first name of a file is written with its data, every
   * later one as a link to it. The pax strategy never defers an entry, so
   * `e` comes back at once and nothing is left in `spare`. */
  archive_entry_linkify(c->links, &e, &spare);
  if (e != NULL) {
    info_finish(c, e);
    rc = create_write(c, e);
  }
out:
  if (spare)
    archive_entry_free(spare);
  if (e)
    archive_entry_free(e);
  return rc;
}

int client_archive_create(const char *path, client_archive_write_fn write, void *arg,
                          struct client_archive_stats *stats, char *err, size_t errlen)
{
  return client_archive_create2(path, write, arg, NULL, stats, err, errlen);
}

int client_archive_create2(const char *path, client_archive_write_fn write, void *arg,
                           const struct client_archive_create_opts *opts,
                           struct client_archive_stats *stats, char *err, size_t errlen)
{
  static const struct client_archive_create_opts none = {0};
  struct creator c = {.cc = {write, arg, 0, 0, NULL, 0, 0}, .opts = opts ? opts : &none,
                      .err = err, .errlen = errlen};
  struct archive_entry *e;
  struct stat sb;
  int rc;

  if (stat(path, &sb) != 0) {
    rc = -errno;
    set_err(err, errlen, "%s: %s", path, strerror(errno));
    return rc;
  }
  c.root = core_strdup(path);
  c.root_len = strlen(c.root);
  while (c.root_len > 1 && c.root[c.root_len - 1] == '/')
    c.root[--c.root_len] = '\0';
  if (!S_ISDIR(sb.st_mode)) {
    const char *slash = strrchr(c.root, '/');
    c.single = core_strdup(slash ? slash + 1 : c.root);
  }

  c.cc.buf = core_malloc(CLIENT_ARCHIVE_BLOCK);
  rc = creator_open(&c);
  while (rc == 0 && (rc = creator_next(&c, &e)) > 0)
    rc = create_entry(&c, e);
  if (rc == 0 && c.opts->entry) {
    memset(&c.info, 0, sizeof(c.info));
    c.info.path = ".";
    c.info.path_len = 1;
    c.info.link = "";
    c.info.hdr_off = c.info.data_off = c.info.end_off = c.cc.off;
    if ((rc = create_flush(&c.cc)) == 0)
      rc = c.opts->entry(c.opts->entry_arg, CLIENT_ARCHIVE_TRAILER, &c.info);
  }
  if (rc == 0 && archive_write_close(c.w) != ARCHIVE_OK) {
    set_err(err, errlen, "pax writer: %s", archive_msg(c.w));
    rc = c.cc.cb_err ? c.cc.cb_err : archive_code(c.w);
  }
  if (rc == 0 && (rc = create_flush(&c.cc)) < 0)
    set_err(err, errlen, "output aborted: %s", core_strerror(rc));
  if (rc < 0 && c.cc.cb_err == 0)
    c.cc.cb_err = rc; /* what the writer's free still writes goes nowhere */

  if (c.links)
    archive_entry_linkresolver_free(c.links);
  if (c.w)
    archive_write_free(c.w);
  if (c.disk)
    archive_read_free(c.disk);
  core_free(c.cc.buf);
  core_free(c.root);
  core_free(c.single);
  core_free(c.info_path);
  core_free(c.info_link);
  client_pattern_set_free(&c.files);
  if (stats)
    *stats = c.st;
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

/* One extraction: the tar reader, the disk writer and where entries go. */
struct extractor {
  struct read_ctx ctx;
  struct client_archive_stats st;
  struct archive *r;          /* owned: reads the stream */
  struct archive *d;          /* owned: writes to disk */
  struct client_dwrite dw;    /* direct writes of large files, set up at the first */
  const char *target;
  int flags;                  /* CLIENT_EXTRACT_* */
  int first;                  /* no entry read yet */
  char *base;                 /* directory archive: the target, resolved (from realpath) */
  char *single_dest;          /* owned: single-file archive: the file's path */
  char *name, *link;          /* owned: the entry's name and hard link target in the stream */
  struct archive_entry *root; /* owned: the "." entry, applied last */
  char *err;
  size_t errlen;
};

static int extractor_open(struct extractor *x)
{
  int opts = ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_XATTR |
             ARCHIVE_EXTRACT_ACL | ARCHIVE_EXTRACT_FFLAGS | ARCHIVE_EXTRACT_SPARSE |
             ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
             ARCHIVE_EXTRACT_UNLINK;
  x->d = archive_write_disk_new();
  if (x->d == NULL)
    return -ENOMEM;
  if (x->flags & CLIENT_EXTRACT_OWNER)
    opts |= ARCHIVE_EXTRACT_OWNER;
  archive_write_disk_set_options(x->d, opts);
  archive_write_disk_set_standard_lookup(x->d);
  return 0;
}

/* The next entry into *e, with copies of its name and hard link target
 * (placing the entry frees the strings libarchive holds), both checked:
 * they come from the network. Returns 1, 0 at the end, or an error. */
static int extract_next(struct extractor *x, struct archive_entry **e)
{
  int r;
  if (x->first) {
    r = first_header(x->r, &x->ctx, e, x->err, x->errlen);
    if (r != 0)
      return r < 0 ? r : 0;
  } else {
    r = archive_read_next_header(x->r, e);
    if (r == ARCHIVE_EOF)
      return 0;
    if (r < ARCHIVE_WARN) {
      set_err(x->err, x->errlen, "archive: %s", archive_msg(x->r));
      return x->ctx.cb_err ? x->ctx.cb_err : archive_code(x->r);
    }
  }
  const char *name = archive_entry_pathname(*e), *link = archive_entry_hardlink(*e);
  core_free(x->name);
  core_free(x->link);
  x->name = name ? core_strdup(name) : NULL;
  x->link = link ? core_strdup(link) : NULL;
  if (!safe_name(x->name) || (x->link && !safe_name(x->link))) {
    set_err(x->err, x->errlen, "refusing unsafe entry name \"%s\"", x->name ? x->name : "");
    return CORE_ENAME;
  }
  return 1;
}

/* The first entry decides the kind: a regular file makes a single-file
 * archive, written to TARGET or into it if it is a directory; anything else
 * a directory archive, extracted into TARGET (created if missing). */
static int extract_begin(struct extractor *x, struct archive_entry *e)
{
  struct stat sb;
  x->first = 0;
  if (archive_entry_filetype(e) == AE_IFREG) {
    if (stat(x->target, &sb) == 0 && S_ISDIR(sb.st_mode))
      x->single_dest = join(x->target, x->name);
    else
      x->single_dest = core_strdup(x->target);
    return 0;
  }
  /* SECURE_SYMLINKS checks every component; resolve the target so a
   * symlink in it (say /tmp -> /private/tmp) is allowed. */
  if ((mkdir(x->target, 0700) != 0 && errno != EEXIST) ||
      (x->base = realpath(x->target, NULL)) == NULL) {
    int rc = -errno;
    set_err(x->err, x->errlen, "%s: %s", x->target, strerror(-rc));
    return rc;
  }
  return 0;
}

/* Points the entry at its place on disk, and a hard link at its target's. */
static int extract_place(struct extractor *x, struct archive_entry *e)
{
  if (x->single_dest) {
    if (archive_entry_filetype(e) != AE_IFREG || x->st.entries > 0) {
      set_err(x->err, x->errlen, "single-file archive holds more than one entry");
      return CORE_EFORMAT;
    }
    archive_entry_copy_pathname(e, x->single_dest);
    return 0;
  }
  char *p = join(x->base, x->name);
  archive_entry_copy_pathname(e, p);
  core_free(p);
  if (x->link) {
    p = join(x->base, x->link);
    archive_entry_copy_hardlink(e, p);
    core_free(p);
  }
  return 0;
}

/* A disk writer result: a warning is logged and counted, a failure ends
 * the extraction. */
static int disk_check(struct extractor *x, int r)
{
  if (r >= ARCHIVE_OK)
    return 0;
  if (r < ARCHIVE_WARN) {
    set_err(x->err, x->errlen, "%s: %s", x->name, archive_msg(x->d));
    return archive_code(x->d);
  }
  core_warn("%s: %s", x->name, archive_msg(x->d));
  x->st.warnings++;
  return 0;
}

/* A regular file's data, if it has any (a hard link usually has none).
 * Large files go around the page cache (data_direct); the data of a hard
 * link, and of a file data_direct cannot open again, goes through
 * libarchive. */
static int extract_regular(struct extractor *x, struct archive_entry *e)
{
  int rc = 0;
  if (archive_entry_size(e) <= 0)
    return 0;
  x->st.files++;
  if (archive_entry_size(e) >= DIRECT_MIN && x->link == NULL) {
    if (x->dw.buf == NULL && client_dwrite_init(&x->dw) < 0) {
      set_err(x->err, x->errlen, "%s: out of memory", x->name);
      return -ENOMEM;
    }
    rc = data_direct(x->r, &x->ctx, &x->dw, archive_entry_pathname(e), x->name,
                     &x->st.file_bytes, x->err, x->errlen);
  }
  if (rc == 0)
    rc = data_archive(x->r, &x->ctx, x->d, x->name, &x->st.file_bytes, x->err, x->errlen);
  return rc < 0 ? rc : 0;
}

/* Extracts one entry. The header makes libarchive create the file,
 * directory, symlink, device, fifo or hard link; a regular file's data
 * follows; finish_entry applies owner, mode, times, xattrs and ACLs
 * (deferred to close for directories, so their contents come first). */
static int extract_entry(struct extractor *x, struct archive_entry *e)
{
  int rc;
  /* The root directory exists already, where libarchive leaves an existing
   * directory's metadata alone: keep its entry for apply_root. */
  if (x->root == NULL && (strcmp(x->name, ".") == 0 || strcmp(x->name, "./") == 0) &&
      archive_entry_filetype(e) == AE_IFDIR)
    x->root = archive_entry_clone(e);
  if ((rc = extract_place(x, e)) < 0)
    return rc;
  if ((rc = disk_check(x, archive_write_header(x->d, e))) < 0)
    return rc;
  x->st.entries++;
  if (archive_entry_filetype(e) == AE_IFREG && (rc = extract_regular(x, e)) < 0)
    return rc;
  return disk_check(x, archive_write_finish_entry(x->d));
}

/* After the last entry: directory modes and times (libarchive applies them
 * at close, after their contents), then the root's. */
static int extract_finish(struct extractor *x)
{
  if (x->first) {
    set_err(x->err, x->errlen, "empty archive");
    return CORE_EFORMAT;
  }
  if (archive_write_close(x->d) < ARCHIVE_WARN) {
    set_err(x->err, x->errlen, "%s: %s", x->target, archive_msg(x->d));
    return archive_code(x->d);
  }
  if (x->root)
    return apply_root(x->base, x->root, x->flags, x->err, x->errlen);
  return 0;
}

int client_archive_extract(const char *target, int flags, client_archive_read_fn readfn,
                           void *arg, struct client_archive_stats *stats, char *err,
                           size_t errlen)
{
  struct extractor x = {.ctx = {readfn, arg, 0, NULL}, .dw = {.fd = -1}, .target = target,
                        .flags = flags, .first = 1, .err = err, .errlen = errlen};
  struct archive_entry *e;
  int rc;

  if ((rc = open_reader(&x.ctx, &x.r, err, errlen)) < 0)
    return rc;
  rc = extractor_open(&x);
  while (rc == 0 && (rc = extract_next(&x, &e)) > 0) {
    if (x.first && (rc = extract_begin(&x, e)) < 0)
      break;
    rc = extract_entry(&x, e);
  }
  if (rc == 0)
    rc = extract_finish(&x);

  client_dwrite_free(&x.dw);
  if (x.root)
    archive_entry_free(x.root);
  core_free(x.name);
  core_free(x.link);
  if (x.d)
    archive_write_free(x.d);
  archive_read_free(x.r);
  free(x.base); /* from realpath */
  core_free(x.single_dest);
  if (stats)
    *stats = x.st;
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
