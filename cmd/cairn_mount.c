/* cairn_mount.c: `cairn mount SNAPSHOT ARCHIVE MOUNTPOINT`, a read-only FUSE
 * file system (libfuse3) over a directory archive.
 *
 * The tree comes from the archive's catalog (format_catalog.h): getattr,
 * readdir and readlink never touch archive data. A file's bytes are read at
 * its data offset in the pax stream through client_archive_reader, which
 * fetches and verifies chunks on demand and keeps the last few (a bounded
 * cache). A sparse file's stream holds its map (GNU sparse 1.0, in front)
 * and only its data blocks: at open the entry is parsed once with libarchive
 * to map them, and holes read as zeros.
 *
 * libfuse runs in the foreground and single-threaded (the catalog iterator
 * and the cache are used by one thread); it unmounts on SIGINT, SIGTERM and
 * SIGHUP, and `fusermount3 -u MOUNTPOINT` ends the process too.
 */
#define FUSE_USE_VERSION 35
#include "cmd/cairn.h"

#include "client/client_api.h"
#include "client/client_restore.h"
#include "core/core_alloc.h"
#include "core/core_error.h"
#include "format/format_catalog.h"
#include "format/format_crypt.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CACHE_CHUNKS 8 /* at most 8 x 16 MiB of chunks held */

struct open_file;

struct mount_state {
  struct format_catalog cat;
  struct client_archive_reader *ar;
  struct format_catalog_iter it; /* single-threaded: one iterator */
  /* files open now: a signal can end the loop before the kernel releases
   * them, and they are freed at exit */
  struct open_file *open;
};

struct extent {
  uint64_t off, len; /* logical */
  uint64_t stream;   /* where its bytes start in the stream */
};

struct open_file {
  struct open_file *prev, *next; /* mount_state.open */
  uint64_t size;
  uint64_t data_off;
  struct extent *map; /* sparse files only */
  size_t nmap;
};

static struct mount_state *state(void)
{
  return fuse_get_context()->private_data;
}

/* "/" -> ".", "/a/b" -> "a/b" */
static const char *cat_path(const char *p)
{
  while (*p == '/')
    p++;
  return *p ? p : ".";
}

/* The entry of `path`; a hard link resolves to the file holding its data. */
static int lookup(const char *path, struct format_catalog_entry *e, int follow_hardlink)
{
  struct mount_state *m = state();
  int rc = format_catalog_lookup(&m->cat, &m->it, cat_path(path), e);
  if (rc < 0)
    return -EIO;
  if (rc == 0)
    return -ENOENT;
  if (follow_hardlink && e->type == FORMAT_CATALOG_HARDLINK) {
    char *target = core_strndup(e->link, e->link_len);
    rc = format_catalog_lookup(&m->cat, &m->it, target, e);
    core_free(target);
    if (rc <= 0 || e->type != FORMAT_CATALOG_FILE)
      return -EIO;
  }
  return 0;
}

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
  struct format_catalog_entry e;
  int rc = lookup(path, &e, 1);
  (void)fi;
  if (rc < 0)
    return rc;
  memset(st, 0, sizeof(*st));
  st->st_mode = e.mode;
  st->st_nlink = e.type == FORMAT_CATALOG_DIR ? 2 : 1;
  st->st_uid = e.uid;
  st->st_gid = e.gid;
  st->st_size = e.type == FORMAT_CATALOG_SYMLINK ? (off_t)e.link_len : (off_t)e.size;
  st->st_blocks = (blkcnt_t)((e.data_len + 511) / 512);
  st->st_rdev = (dev_t)e.rdev;
  st->st_mtim.tv_sec = e.mtime;
  st->st_mtim.tv_nsec = e.mtime_ns;
  st->st_ctim.tv_sec = e.ctime;
  st->st_ctim.tv_nsec = e.ctime_ns;
  st->st_atim = st->st_mtim;
  return 0;
}

static int fs_readlink(const char *path, char *buf, size_t size)
{
  struct format_catalog_entry e;
  int rc = lookup(path, &e, 0);
  if (rc < 0)
    return rc;
  if (e.type != FORMAT_CATALOG_SYMLINK || size == 0)
    return -EINVAL;
  size_t n = e.link_len < size - 1 ? e.link_len : size - 1;
  memcpy(buf, e.link, n);
  buf[n] = '\0';
  return 0;
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t offset,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
  struct mount_state *m = state();
  struct format_catalog_entry e;
  const char *dir = cat_path(path);
  char *prefix;
  size_t plen;
  int rc;
  (void)offset;
  (void)fi;
  (void)flags;
  if ((rc = lookup(path, &e, 0)) < 0)
    return rc;
  if (e.type != FORMAT_CATALOG_DIR)
    return -ENOTDIR;
  filler(buf, ".", NULL, 0, 0);
  filler(buf, "..", NULL, 0, 0);
  prefix = strcmp(dir, ".") == 0 ? core_strdup("") : core_asprintf("%s/", dir);
  plen = strlen(prefix);
  rc = format_catalog_children(&m->it, &m->cat, prefix, plen);
  while (rc >= 0 && (rc = format_catalog_next_child(&m->it, prefix, plen, &e)) > 0)
    if (filler(buf, e.path + plen, NULL, 0, 0) != 0)
      break;
  core_free(prefix);
  return rc < 0 ? -EIO : 0;
}

/* ---- sparse files: the map of their data blocks ---- */

struct map_feed {
  struct client_archive_reader *ar;
  uint64_t pos, end;
  int trailer;
  uint8_t buf[1 << 16];
};

static la_ssize_t map_read(struct archive *a, void *arg, const void **data)
{
  struct map_feed *f = arg;
  (void)a;
  if (f->pos >= f->end) {
    if (f->trailer)
      return 0;
    f->trailer = 1;
    memset(f->buf, 0, 1024);
    *data = f->buf;
    return 1024;
  }
  size_t want = f->end - f->pos < sizeof(f->buf) ? (size_t)(f->end - f->pos) : sizeof(f->buf);
  ssize_t n = client_archive_reader_read(f->ar, f->pos, f->buf, want);
  if (n <= 0)
    return -1;
  f->pos += (uint64_t)n;
  *data = f->buf;
  return n;
}

static int map_sparse(struct client_archive_reader *ar, const struct format_catalog_entry *e,
                      struct open_file *of)
{
  struct map_feed *f = core_calloc(1, sizeof(*f));
  struct archive *a = archive_read_new();
  struct archive_entry *ae;
  size_t cap = 0;
  uint64_t stream = e->data_off;
  int rc = -EIO;
  f->ar = ar;
  f->pos = e->hdr_off;
  f->end = e->end_off;
  archive_read_support_format_tar(a);
  if (archive_read_open(a, f, NULL, map_read, NULL) != ARCHIVE_OK ||
      archive_read_next_header(a, &ae) != ARCHIVE_OK)
    goto out;
  for (;;) {
    const void *buf;
    size_t sz;
    la_int64_t off;
    int x = archive_read_data_block(a, &buf, &sz, &off);
    if (x == ARCHIVE_EOF)
      break;
    if (x < ARCHIVE_WARN || off < 0)
      goto out;
    if (sz == 0)
      continue;
    if (of->nmap == cap) {
      cap = cap ? cap * 2 : 16;
      of->map = core_realloc(of->map, cap * sizeof(*of->map));
    }
    /* blocks of one extent may come in pieces: merge them */
    if (of->nmap > 0 && of->map[of->nmap - 1].off + of->map[of->nmap - 1].len == (uint64_t)off &&
        of->map[of->nmap - 1].stream + of->map[of->nmap - 1].len == stream) {
      of->map[of->nmap - 1].len += sz;
    } else {
      of->map[of->nmap].off = (uint64_t)off;
      of->map[of->nmap].len = sz;
      of->map[of->nmap].stream = stream;
      of->nmap++;
    }
    stream += sz;
  }
  /* GNU sparse 1.0 puts the map in front of the data blocks: they end where
   * the data area ends, so shift every extent by the map's size */
  {
    uint64_t stored = stream - e->data_off;
    if (stored > e->data_len)
      goto out;
    for (size_t i = 0; i < of->nmap; i++)
      of->map[i].stream += e->data_len - stored;
    rc = 0;
  }
out:
  archive_read_free(a);
  core_free(f);
  return rc;
}

static int fs_open(const char *path, struct fuse_file_info *fi)
{
  struct format_catalog_entry e;
  struct open_file *of;
  int rc;
  if ((fi->flags & O_ACCMODE) != O_RDONLY)
    return -EROFS;
  if ((rc = lookup(path, &e, 1)) < 0)
    return rc;
  if (e.type != FORMAT_CATALOG_FILE)
    return -EINVAL;
  of = core_calloc(1, sizeof(*of));
  of->size = e.size;
  of->data_off = e.data_off;
  if (e.flags & FORMAT_CATALOG_SPARSE) {
    if ((rc = map_sparse(state()->ar, &e, of)) < 0) {
      core_free(of->map);
      core_free(of);
      return rc;
    }
  } else if (e.data_len != e.size) {
    core_free(of);
    return -EIO;
  }
  of->next = state()->open;
  if (of->next)
    of->next->prev = of;
  state()->open = of;
  fi->fh = (uint64_t)(uintptr_t)of;
  fi->keep_cache = 1; /* the snapshot never changes */
  return 0;
}

static void open_file_free(struct mount_state *m, struct open_file *of)
{
  if (of->prev)
    of->prev->next = of->next;
  else
    m->open = of->next;
  if (of->next)
    of->next->prev = of->prev;
  core_free(of->map);
  core_free(of);
}

static int fs_read(const char *path, char *buf, size_t size, off_t offset,
                   struct fuse_file_info *fi)
{
  struct open_file *of = (struct open_file *)(uintptr_t)fi->fh;
  struct client_archive_reader *ar = state()->ar;
  uint64_t off = (uint64_t)offset;
  (void)path;
  if (offset < 0)
    return -EINVAL;
  if (off >= of->size)
    return 0;
  if (size > of->size - off)
    size = (size_t)(of->size - off);
  if (of->map == NULL) {
    ssize_t n = client_archive_reader_read(ar, of->data_off + off, buf, size);
    return n < 0 ? -EIO : (int)n;
  }
  memset(buf, 0, size);
  for (size_t i = 0; i < of->nmap; i++) {
    const struct extent *x = &of->map[i];
    uint64_t a = x->off > off ? x->off : off;
    uint64_t b = x->off + x->len < off + size ? x->off + x->len : off + size;
    if (a >= b)
      continue;
    ssize_t n = client_archive_reader_read(ar, x->stream + (a - x->off), buf + (a - off),
                                           (size_t)(b - a));
    if (n != (ssize_t)(b - a))
      return -EIO;
  }
  return (int)size;
}

static int fs_release(const char *path, struct fuse_file_info *fi)
{
  struct open_file *of = (struct open_file *)(uintptr_t)fi->fh;
  (void)path;
  if (of)
    open_file_free(state(), of);
  return 0;
}

static void *fs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
  (void)conn;
  cfg->kernel_cache = 1;
  cfg->entry_timeout = cfg->attr_timeout = 3600; /* nothing changes */
  return fuse_get_context()->private_data;
}

static const struct fuse_operations ops = {
  .init = fs_init,
  .getattr = fs_getattr,
  .readlink = fs_readlink,
  .readdir = fs_readdir,
  .open = fs_open,
  .read = fs_read,
  .release = fs_release,
};

int cmd_mount(struct opts *o)
{
  struct client_restore_opts ro;
  struct client_snapshot *snap = NULL;
  struct client_api *api = NULL;
  struct format_crypt crypt;
  struct mount_state *m = core_calloc(1, sizeof(*m));
  uint8_t *catbuf = NULL;
  char *type = NULL, *id = NULL, err[1024];
  int have_key = 0, rc = 1;

  if (o->npos != 3) {
    fprintf(stderr, "cairn mount: needs SNAPSHOT ARCHIVE MOUNTPOINT (see cairn mount --help)\n");
    core_free(m);
    return EXIT_USAGE;
  }
  memset(&ro, 0, sizeof(ro));
  if (client_snapshot_parse(o->pos[0], &type, &id, &ro.backup_time) < 0) {
    fprintf(stderr, "cairn mount: \"%s\" is not TYPE/ID/TIME\n", o->pos[0]);
    core_free(m);
    return EXIT_USAGE;
  }
  if ((have_key = load_key(o, &crypt)) < 0)
    goto out;
  if (open_api(o, 2, &api) < 0)
    goto out;
  ro.api = api;
  ro.ns = ns_of(o);
  ro.backup_type = type;
  ro.backup_id = id;
  ro.crypt = have_key ? &crypt : NULL;
  if (client_snapshot_open(&ro, &snap, err, sizeof(err)) < 0 ||
      client_snapshot_catalog(snap, o->pos[1], &catbuf, &m->cat, err, sizeof(err)) < 0 ||
      client_archive_reader_open(snap, o->pos[1], CACHE_CHUNKS, &m->ar, err, sizeof(err)) < 0) {
    fprintf(stderr, "cairn mount: %s\n", err);
    goto out;
  }
  format_catalog_iter_init(&m->it, &m->cat);
  {
    char *argv[] = {"cairn", "-o", "ro,fsname=cairn,subtype=cairn", NULL};
    struct fuse_args args = FUSE_ARGS_INIT(3, argv);
    struct fuse *f = fuse_new(&args, &ops, sizeof(ops), m);
    struct fuse_session *se;
    int res;
    if (f == NULL || fuse_mount(f, o->pos[2]) != 0) {
      fprintf(stderr, "cairn mount: cannot mount on %s\n", o->pos[2]);
      if (f)
        fuse_destroy(f);
      fuse_opt_free_args(&args);
      goto out;
    }
    se = fuse_get_session(f);
    fuse_set_signal_handlers(se);
    fprintf(stderr, "cairn mount: %s %s on %s (read-only; unmount with Ctrl-C or "
            "fusermount3 -u %s)\n", o->pos[0], o->pos[1], o->pos[2], o->pos[2]);
    /* single-threaded, in the foreground; a signal ends the loop with its number */
    res = fuse_loop(f);
    fuse_remove_signal_handlers(se);
    fuse_unmount(f);
    fuse_destroy(f);
    fuse_opt_free_args(&args);
    rc = res == 0 || res == SIGINT || res == SIGTERM || res == SIGHUP ? 0 : 1;
  }
out:
  while (m->open)
    open_file_free(m, m->open);
  client_archive_reader_free(m->ar);
  format_catalog_close(&m->cat); /* an index form reads through the snapshot */
  client_snapshot_close(snap);
  client_api_free(api);
  if (have_key > 0)
    format_crypt_clear(&crypt);
  core_free(catbuf);
  core_free(m);
  core_free(type);
  core_free(id);
  return rc;
}
