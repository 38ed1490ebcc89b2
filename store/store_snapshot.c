#include "store/store_snapshot.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "format/format_name.h"
#include "store/store_path.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIR_MODE 0755
#define FILE_MODE 0644
#define OWNER_READ_MAX 256 /* more than any valid auth id plus newline */

static const char *const backup_types[] = {"ct", "host", "vm"}; /* sorted */
#define N_TYPES (sizeof(backup_types) / sizeof(backup_types[0]))

/* ---- small helpers ----------------------------------------------------- */

struct strv {
  char **v;
  size_t n;
  size_t cap;
};

static void strv_push(struct strv *s, char *owned)
{
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 16;
    s->v = core_realloc(s->v, s->cap * sizeof(*s->v));
  }
  s->v[s->n++] = owned;
}

static void strv_free(struct strv *s)
{
  for (size_t i = 0; i < s->n; i++)
    core_free(s->v[i]);
  core_free(s->v);
  s->v = NULL;
  s->n = s->cap = 0;
}

static int cmp_strp(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int err_nf(void)
{
  return errno == ENOENT || errno == ENOTDIR ? CORE_ENOTFOUND : -errno;
}

static int open_dir(const char *path)
{
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  return fd < 0 ? err_nf() : fd;
}

static int open_dir_at(int dirfd, const char *name)
{
  int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  return fd < 0 ? err_nf() : fd;
}

static int is_dir_entry(int dirfd, const struct dirent *de)
{
  if (de->d_type == DT_DIR)
    return 1;
  if (de->d_type != DT_UNKNOWN)
    return 0;
  struct stat st;
  return fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

static int exists_at(int dirfd, const char *rel)
{
  return faccessat(dirfd, rel, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Collects the names of subdirectories of `dirfd` that `valid` accepts,
 * sorted. Takes ownership of nothing; `dirfd` stays open. */
static int list_subdirs(int dirfd, int (*valid)(const char *), struct strv *out)
{
  int fd = dup(dirfd);
  if (fd < 0)
    return -errno;
  DIR *d = fdopendir(fd);
  if (d == NULL) {
    close(fd);
    return -errno;
  }
  /* fdopendir shares the file offset with dirfd's duplicate: start over. */
  rewinddir(d);
  struct dirent *de;
  errno = 0;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.' || valid(de->d_name) < 0 || !is_dir_entry(dirfd, de)) {
      errno = 0;
      continue;
    }
    strv_push(out, core_strdup(de->d_name));
    errno = 0;
  }
  int rc = errno ? -errno : 0;
  closedir(d);
  if (out->n > 1)
    qsort(out->v, out->n, sizeof(*out->v), cmp_strp);
  return rc;
}

static int valid_time_name(const char *s)
{
  int64_t t;
  return format_name_time_parse(s, &t);
}

/* Removes `name` below `parentfd` and everything inside it, never following
 * symlinks (a symlink is unlinked, not its target). */
static int remove_tree_at(int parentfd, const char *name)
{
  int fd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT)
      return 0;
    if (errno == ENOTDIR || errno == ELOOP)
      return unlinkat(parentfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
    return -errno;
  }
  DIR *d = fdopendir(fd);
  if (d == NULL) {
    close(fd);
    return -errno;
  }
  int rc = 0;
  struct dirent *de;
  while (rc == 0 && (de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (is_dir_entry(dirfd(d), de))
      rc = remove_tree_at(dirfd(d), de->d_name);
    else if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT)
      rc = -errno;
  }
  closedir(d);
  if (rc == 0 && unlinkat(parentfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
    rc = -errno;
  return rc;
}

/* ---- namespaces -------------------------------------------------------- */

static int ns_walk(const char *base, const char *ns, int levels, struct strv *out)
{
  char path[STORE_PATH_MAX];
  int rc, fd;
  strv_push(out, core_strdup(ns));
  if (levels <= 0)
    return 0;
  if ((rc = store_path_ns(path, sizeof(path), base, ns)) < 0)
    return rc;
  if ((fd = open_dir(path)) < 0)
    return fd;
  int nsfd = open_dir_at(fd, "ns");
  close(fd);
  if (nsfd == CORE_ENOTFOUND)
    return 0;
  if (nsfd < 0)
    return nsfd;
  struct strv children = {0};
  rc = list_subdirs(nsfd, format_name_ns_component, &children);
  close(nsfd);
  for (size_t i = 0; rc == 0 && i < children.n; i++) {
    char *child = ns[0] ? core_asprintf("%s/%s", ns, children.v[i]) : core_strdup(children.v[i]);
    if (format_name_ns(child) == 0) /* skips what would pass the total length */
      rc = ns_walk(base, child, levels - 1, out);
    core_free(child);
  }
  strv_free(&children);
  return rc;
}

int store_ns_list(const char *base, const char *parent, int max_depth,
                  struct store_ns_list *out)
{
  struct strv v = {0};
  out->items = NULL;
  out->n = 0;
  int depth = format_name_ns_depth(parent);
  if (depth < 0)
    return depth;
  int room = FORMAT_NAME_NS_MAX_DEPTH - depth;
  int levels = max_depth < 0 || max_depth > room ? room : max_depth;
  int rc = store_ns_exists(base, parent);
  if (rc <= 0)
    return rc == 0 ? CORE_ENOTFOUND : rc;
  rc = ns_walk(base, parent, levels, &v);
  if (rc < 0) {
    strv_free(&v);
    return rc;
  }
  out->items = v.v;
  out->n = v.n;
  return 0;
}

void store_ns_list_free(struct store_ns_list *list)
{
  struct strv v = {list->items, list->n, list->n};
  strv_free(&v);
  list->items = NULL;
  list->n = 0;
}

int store_ns_exists(const char *base, const char *ns)
{
  char path[STORE_PATH_MAX];
  struct stat st;
  int rc = store_path_ns(path, sizeof(path), base, ns);
  if (rc < 0)
    return rc;
  if (stat(path, &st) < 0)
    return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
  return S_ISDIR(st.st_mode) ? 1 : 0;
}

int store_ns_create(const char *base, const char *ns)
{
  char path[STORE_PATH_MAX];
  int rc, depth = format_name_ns_depth(ns);
  if (depth < 0)
    return depth;
  if (depth == 0)
    return CORE_EINVAL;
  const char *slash = strrchr(ns, '/');
  char *parent = slash ? core_strndup(ns, (size_t)(slash - ns)) : core_strdup("");
  rc = store_ns_exists(base, parent);
  if (rc <= 0) {
    rc = rc == 0 ? CORE_ENOTFOUND : rc;
    goto out;
  }
  /* <parent>/ns is shared by all children of the parent: EEXIST is fine. */
  if ((rc = store_path_ns(path, sizeof(path), base, parent)) < 0)
    goto out;
  if (snprintf(path + rc, sizeof(path) - (size_t)rc, "/ns") >= (int)(sizeof(path) - (size_t)rc)) {
    rc = CORE_ETOOBIG;
    goto out;
  }
  if (mkdir(path, DIR_MODE) < 0 && errno != EEXIST) {
    rc = -errno;
    goto out;
  }
  if ((rc = store_path_ns(path, sizeof(path), base, ns)) < 0)
    goto out;
  rc = mkdir(path, DIR_MODE) < 0 ? (errno == EEXIST ? CORE_EEXISTS : -errno) : 0;
out:
  core_free(parent);
  return rc;
}

static int any_protected(const char *base, const char *ns, const char *type, const char *id)
{
  struct store_snapshot_list snaps;
  int rc = store_snapshot_list(base, ns, type, id, &snaps);
  if (rc < 0)
    return rc == CORE_ENOTFOUND ? 0 : rc;
  for (size_t i = 0; i < snaps.n; i++)
    if (snaps.items[i].is_protected)
      rc = 1;
  store_snapshot_list_free(&snaps);
  return rc;
}

/* Removes one namespace directory whose child namespaces are already gone. */
static int remove_ns_dir(const char *base, const char *ns, unsigned flags)
{
  char path[STORE_PATH_MAX];
  int rc = store_path_ns(path, sizeof(path), base, ns);
  if (rc < 0)
    return rc;
  int fd = open_dir(path);
  if (fd == CORE_ENOTFOUND)
    return 0;
  if (fd < 0)
    return fd;
  rc = 0;
  for (size_t t = 0; rc == 0 && t < N_TYPES; t++) {
    if (flags & STORE_NS_DELETE_GROUPS)
      rc = remove_tree_at(fd, backup_types[t]);
    else if (unlinkat(fd, backup_types[t], AT_REMOVEDIR) < 0 && errno != ENOENT)
      rc = -errno; /* a group appeared after the check: ENOTEMPTY */
  }
  if (rc == 0 && unlinkat(fd, "ns", AT_REMOVEDIR) < 0 && errno != ENOENT)
    rc = -errno;
  close(fd);
  if (rc == 0 && rmdir(path) < 0 && errno != ENOENT)
    rc = -errno;
  return rc;
}

int store_ns_delete(const char *base, const char *ns, unsigned flags)
{
  struct store_ns_list all;
  int rc, depth = format_name_ns_depth(ns);
  if (depth < 0)
    return depth;
  if (depth == 0)
    return CORE_EINVAL;
  if ((rc = store_ns_list(base, ns, -1, &all)) < 0)
    return rc;
  /* Check the whole subtree first, so a refusal removes nothing. */
  for (size_t i = 0; rc == 0 && i < all.n; i++) {
    struct store_group_list groups;
    if ((rc = store_group_list(base, all.items[i], &groups)) < 0)
      break;
    if (!(flags & STORE_NS_DELETE_GROUPS) && groups.n > 0)
      rc = -ENOTEMPTY;
    for (size_t g = 0; rc == 0 && (flags & STORE_NS_DELETE_GROUPS) && g < groups.n; g++) {
      int p = any_protected(base, all.items[i], groups.items[g].type, groups.items[g].id);
      rc = p < 0 ? p : p ? CORE_EPROTECTED : 0;
    }
    store_group_list_free(&groups);
  }
  /* The list is depth-first pre-order, so walking it backwards removes every
   * child before its parent. */
  for (size_t i = all.n; rc == 0 && i-- > 0;)
    rc = remove_ns_dir(base, all.items[i], flags);
  store_ns_list_free(&all);
  return rc;
}

/* ---- owner ------------------------------------------------------------- */

static int read_owner_at(int groupfd, char **owner)
{
  char buf[OWNER_READ_MAX + 1];
  size_t len = 0;
  int fd = openat(groupfd, STORE_OWNER_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return err_nf();
  while (len < OWNER_READ_MAX) {
    ssize_t n = read(fd, buf + len, OWNER_READ_MAX - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    len += (size_t)n;
  }
  close(fd);
  buf[len] = '\0';
  if (memchr(buf, '\0', len) != NULL)
    return CORE_EFORMAT;
  if (len > 0 && buf[len - 1] == '\n')
    buf[--len] = '\0';
  if (format_name_authid(buf) < 0)
    return CORE_EFORMAT;
  *owner = core_strdup(buf);
  return 0;
}

/* Writes "authid\n" to a fresh temp file in `dir` and returns its path in
 * `tmp` (STORE_PATH_MAX bytes). */
static int write_owner_tmp(const char *dir, const char *authid, char *tmp)
{
  if (snprintf(tmp, STORE_PATH_MAX, "%s/%s.tmp_XXXXXX", dir, STORE_OWNER_FILE) >=
      STORE_PATH_MAX)
    return CORE_ETOOBIG;
  int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0)
    return -errno;
  char line[FORMAT_NAME_AUTHID_MAX + 2];
  int n = snprintf(line, sizeof(line), "%s\n", authid);
  int rc = fchmod(fd, FILE_MODE) < 0 ? -errno : core_file_write_all(fd, line, (size_t)n);
  if (close(fd) < 0 && rc == 0)
    rc = -errno;
  if (rc < 0)
    unlink(tmp);
  return rc;
}

int store_group_create(const char *base, const char *ns, const char *type, const char *id,
                       const char *authid, char **owner)
{
  char path[STORE_PATH_MAX], tmp[STORE_PATH_MAX], file[STORE_PATH_MAX];
  int rc;
  *owner = NULL;
  if (format_name_authid(authid) < 0)
    return CORE_ENAME;
  if ((rc = store_path_group(path, sizeof(path), base, ns, type, id)) < 0)
    return rc;
  rc = store_ns_exists(base, ns);
  if (rc <= 0)
    return rc == 0 ? CORE_ENOTFOUND : rc;
  /* mkdir -p of <ns>/<type>/<id>: the type directory is shared. */
  char *slash = strrchr(path, '/');
  *slash = '\0';
  if (mkdir(path, DIR_MODE) < 0 && errno != EEXIST)
    return -errno;
  *slash = '/';
  if (mkdir(path, DIR_MODE) < 0 && errno != EEXIST)
    return -errno;
  if (snprintf(file, sizeof(file), "%s/%s", path, STORE_OWNER_FILE) >= (int)sizeof(file))
    return CORE_ETOOBIG;

  /* link() is the O_EXCL of complete files: the owner file either does not
   * exist or exists with its whole content, so a losing creator never reads
   * a half-written owner. */
  if ((rc = write_owner_tmp(path, authid, tmp)) < 0)
    return rc;
  if (link(tmp, file) == 0) {
    unlink(tmp);
    *owner = core_strdup(authid);
    return 1;
  }
  int e = errno;
  unlink(tmp);
  if (e != EEXIST)
    return -e;
  int gfd = open_dir(path);
  if (gfd < 0)
    return gfd;
  rc = read_owner_at(gfd, owner);
  close(gfd);
  return rc < 0 ? (rc == CORE_ENOTFOUND ? CORE_EFORMAT : rc) : 0;
}

int store_group_owner(const char *base, const char *ns, const char *type, const char *id,
                      char **owner)
{
  char path[STORE_PATH_MAX];
  int rc = store_path_group(path, sizeof(path), base, ns, type, id);
  *owner = NULL;
  if (rc < 0)
    return rc;
  int gfd = open_dir(path);
  if (gfd < 0)
    return gfd;
  rc = read_owner_at(gfd, owner);
  close(gfd);
  return rc;
}

int store_group_set_owner(const char *base, const char *ns, const char *type, const char *id,
                          const char *authid)
{
  char path[STORE_PATH_MAX], tmp[STORE_PATH_MAX], file[STORE_PATH_MAX];
  struct stat st;
  int rc;
  if (format_name_authid(authid) < 0)
    return CORE_ENAME;
  if ((rc = store_path_group(path, sizeof(path), base, ns, type, id)) < 0)
    return rc;
  if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
    return CORE_ENOTFOUND;
  if (snprintf(file, sizeof(file), "%s/%s", path, STORE_OWNER_FILE) >= (int)sizeof(file))
    return CORE_ETOOBIG;
  if ((rc = write_owner_tmp(path, authid, tmp)) < 0)
    return rc;
  if (rename(tmp, file) < 0) {
    rc = -errno;
    unlink(tmp);
  }
  return rc;
}

/* ---- snapshots --------------------------------------------------------- */

static int cmp_file(const void *a, const void *b)
{
  return strcmp(((const struct store_file_info *)a)->name,
                ((const struct store_file_info *)b)->name);
}

static int cmp_snap(const void *a, const void *b)
{
  int64_t x = ((const struct store_snapshot_info *)a)->time;
  int64_t y = ((const struct store_snapshot_info *)b)->time;
  return x < y ? -1 : x > y;
}

void store_snapshot_info_free(struct store_snapshot_info *info)
{
  for (size_t i = 0; i < info->n_files; i++)
    core_free(info->files[i].name);
  core_free(info->files);
  info->files = NULL;
  info->n_files = 0;
}

/* Fills *info from the snapshot directory `name` below `groupfd`. */
static int snapshot_info_at(int groupfd, const char *name, int64_t time,
                            struct store_snapshot_info *info)
{
  size_t cap = 0;
  memset(info, 0, sizeof(*info));
  info->time = time;
  int fd = open_dir_at(groupfd, name);
  if (fd < 0)
    return fd;
  DIR *d = fdopendir(fd);
  if (d == NULL) {
    close(fd);
    return -errno;
  }
  int rc = 0;
  struct dirent *de;
  errno = 0;
  while ((de = readdir(d)) != NULL) {
    struct stat st;
    if (strcmp(de->d_name, STORE_PROTECTED_FILE) == 0) {
      info->is_protected = 1;
    } else if (format_name_archive(de->d_name) > 0 &&
               fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
               S_ISREG(st.st_mode)) {
      if (strcmp(de->d_name, FORMAT_MANIFEST_NAME) == 0)
        info->finished = 1;
      if (info->n_files == cap) {
        cap = cap ? cap * 2 : 8;
        info->files = core_realloc(info->files, cap * sizeof(*info->files));
      }
      info->files[info->n_files].name = core_strdup(de->d_name);
      info->files[info->n_files].size = (uint64_t)st.st_size;
      info->n_files++;
    }
    errno = 0;
  }
  if (errno)
    rc = -errno;
  closedir(d);
  if (rc < 0) {
    store_snapshot_info_free(info);
    return rc;
  }
  if (info->n_files > 1)
    qsort(info->files, info->n_files, sizeof(*info->files), cmp_file);
  return 0;
}

static int open_group(const char *base, const char *ns, const char *type, const char *id)
{
  char path[STORE_PATH_MAX];
  int rc = store_path_group(path, sizeof(path), base, ns, type, id);
  return rc < 0 ? rc : open_dir(path);
}

int store_snapshot_list(const char *base, const char *ns, const char *type, const char *id,
                        struct store_snapshot_list *out)
{
  struct strv names = {0};
  out->items = NULL;
  out->n = 0;
  int gfd = open_group(base, ns, type, id);
  if (gfd < 0)
    return gfd;
  int rc = list_subdirs(gfd, valid_time_name, &names);
  if (rc == 0 && names.n > 0)
    out->items = core_calloc(names.n, sizeof(*out->items));
  for (size_t i = 0; rc == 0 && i < names.n; i++) {
    int64_t t;
    format_name_time_parse(names.v[i], &t);
    rc = snapshot_info_at(gfd, names.v[i], t, &out->items[out->n]);
    if (rc == CORE_ENOTFOUND) { /* deleted while we listed */
      rc = 0;
      continue;
    }
    if (rc == 0)
      out->n++;
  }
  close(gfd);
  strv_free(&names);
  if (rc < 0) {
    store_snapshot_list_free(out);
    return rc;
  }
  if (out->n > 1)
    qsort(out->items, out->n, sizeof(*out->items), cmp_snap);
  return 0;
}

void store_snapshot_list_free(struct store_snapshot_list *list)
{
  for (size_t i = 0; i < list->n; i++)
    store_snapshot_info_free(&list->items[i]);
  core_free(list->items);
  list->items = NULL;
  list->n = 0;
}

int store_snapshot_info(const char *base, const char *ns, const char *type, const char *id,
                        int64_t time, struct store_snapshot_info *out)
{
  char ts[FORMAT_NAME_TIME_LEN + 1];
  memset(out, 0, sizeof(*out));
  if (format_name_time_format(time, ts) < 0)
    return CORE_ENAME;
  int gfd = open_group(base, ns, type, id);
  if (gfd < 0)
    return gfd;
  int rc = snapshot_info_at(gfd, ts, time, out);
  close(gfd);
  return rc;
}

int store_snapshot_create(const char *base, const char *ns, const char *type, const char *id,
                          int64_t time)
{
  char ts[FORMAT_NAME_TIME_LEN + 1];
  if (format_name_time_format(time, ts) < 0)
    return CORE_ENAME;
  int gfd = open_group(base, ns, type, id);
  if (gfd < 0)
    return gfd;
  int rc = 0;
  if (mkdirat(gfd, ts, DIR_MODE) < 0)
    rc = errno == EEXIST ? CORE_EEXISTS : -errno;
  close(gfd);
  return rc;
}

/* Deletes snapshot `ts` below `gfd` unless it is protected. */
static int delete_snapshot_at(int gfd, const char *ts)
{
  char rel[FORMAT_NAME_TIME_LEN + 1 + 32];
  struct stat st;
  if (fstatat(gfd, ts, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
    return CORE_ENOTFOUND;
  snprintf(rel, sizeof(rel), "%s/%s", ts, STORE_PROTECTED_FILE);
  if (exists_at(gfd, rel))
    return CORE_EPROTECTED;
  /* Manifest first: from here on the snapshot reads as unfinished, so a
   * crash halfway never leaves a "finished" snapshot with missing files. */
  snprintf(rel, sizeof(rel), "%s/%s", ts, FORMAT_MANIFEST_NAME);
  if (unlinkat(gfd, rel, 0) < 0 && errno != ENOENT)
    return -errno;
  return remove_tree_at(gfd, ts);
}

int store_snapshot_delete(const char *base, const char *ns, const char *type, const char *id,
                          int64_t time)
{
  char ts[FORMAT_NAME_TIME_LEN + 1];
  if (format_name_time_format(time, ts) < 0)
    return CORE_ENAME;
  int gfd = open_group(base, ns, type, id);
  if (gfd < 0)
    return gfd;
  int rc = delete_snapshot_at(gfd, ts);
  close(gfd);
  return rc;
}

int store_snapshot_set_protected(const char *base, const char *ns, const char *type,
                                 const char *id, int64_t time, int on)
{
  char ts[FORMAT_NAME_TIME_LEN + 1], rel[FORMAT_NAME_TIME_LEN + 1 + 32];
  struct stat st;
  if (format_name_time_format(time, ts) < 0)
    return CORE_ENAME;
  int gfd = open_group(base, ns, type, id);
  if (gfd < 0)
    return gfd;
  int rc = 0;
  if (fstatat(gfd, ts, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)) {
    rc = CORE_ENOTFOUND;
    goto out;
  }
  snprintf(rel, sizeof(rel), "%s/%s", ts, STORE_PROTECTED_FILE);
  if (on) {
    int fd = openat(gfd, rel, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, FILE_MODE);
    if (fd < 0)
      rc = -errno;
    else
      close(fd);
  } else if (unlinkat(gfd, rel, 0) < 0 && errno != ENOENT) {
    rc = -errno;
  }
out:
  close(gfd);
  return rc;
}

/* ---- groups ------------------------------------------------------------ */

/* Counts snapshot dirs below `gfd` and finds the newest finished one. */
static int group_summary(int gfd, struct store_group_info *g)
{
  struct strv names = {0};
  int rc = list_subdirs(gfd, valid_time_name, &names);
  g->n_snapshots = names.n;
  g->last_backup = -1;
  /* Names sort like times (fixed width), so walk from the newest. */
  for (size_t i = names.n; rc == 0 && i-- > 0;) {
    char rel[FORMAT_NAME_TIME_LEN + 1 + 32];
    snprintf(rel, sizeof(rel), "%s/%s", names.v[i], FORMAT_MANIFEST_NAME);
    if (exists_at(gfd, rel)) {
      format_name_time_parse(names.v[i], &g->last_backup);
      break;
    }
  }
  strv_free(&names);
  return rc;
}

static void group_info_free(struct store_group_info *g)
{
  core_free(g->id);
  core_free(g->owner);
}

int store_group_list(const char *base, const char *ns, struct store_group_list *out)
{
  char path[STORE_PATH_MAX];
  size_t cap = 0;
  out->items = NULL;
  out->n = 0;
  int rc = store_path_ns(path, sizeof(path), base, ns);
  if (rc < 0)
    return rc;
  int nsfd = open_dir(path);
  if (nsfd < 0)
    return nsfd;
  rc = 0;
  for (size_t t = 0; rc == 0 && t < N_TYPES; t++) {
    int tfd = open_dir_at(nsfd, backup_types[t]);
    if (tfd == CORE_ENOTFOUND)
      continue;
    if (tfd < 0) {
      rc = tfd;
      break;
    }
    struct strv ids = {0};
    rc = list_subdirs(tfd, format_name_backup_id, &ids);
    for (size_t i = 0; rc == 0 && i < ids.n; i++) {
      int gfd = open_dir_at(tfd, ids.v[i]);
      if (gfd == CORE_ENOTFOUND)
        continue;
      if (gfd < 0) {
        rc = gfd;
        break;
      }
      if (out->n == cap) {
        cap = cap ? cap * 2 : 16;
        out->items = core_realloc(out->items, cap * sizeof(*out->items));
      }
      struct store_group_info *g = &out->items[out->n++];
      memset(g, 0, sizeof(*g));
      snprintf(g->type, sizeof(g->type), "%s", backup_types[t]);
      g->id = ids.v[i];
      ids.v[i] = NULL;
      if (read_owner_at(gfd, &g->owner) < 0)
        g->owner = NULL;
      rc = group_summary(gfd, g);
      close(gfd);
    }
    strv_free(&ids);
    close(tfd);
  }
  close(nsfd);
  if (rc < 0)
    store_group_list_free(out);
  return rc;
}

void store_group_list_free(struct store_group_list *list)
{
  for (size_t i = 0; i < list->n; i++)
    group_info_free(&list->items[i]);
  core_free(list->items);
  list->items = NULL;
  list->n = 0;
}

int store_group_delete(const char *base, const char *ns, const char *type, const char *id)
{
  char path[STORE_PATH_MAX];
  int rc = store_path_group(path, sizeof(path), base, ns, type, id);
  if (rc < 0)
    return rc;
  int p = any_protected(base, ns, type, id);
  if (p < 0)
    return p;
  if (p)
    return CORE_EPROTECTED;
  int gfd = open_dir(path);
  if (gfd < 0)
    return gfd;
  struct strv names = {0};
  rc = list_subdirs(gfd, valid_time_name, &names);
  for (size_t i = 0; rc == 0 && i < names.n; i++) {
    rc = delete_snapshot_at(gfd, names.v[i]);
    if (rc == CORE_ENOTFOUND)
      rc = 0;
  }
  strv_free(&names);
  close(gfd);
  if (rc < 0)
    return rc;
  /* What remains is the owner, notes and leftovers such as temp files. */
  char *slash = strrchr(path, '/');
  *slash = '\0';
  int tfd = open_dir(path);
  if (tfd < 0)
    return tfd;
  rc = remove_tree_at(tfd, slash + 1);
  close(tfd);
  return rc;
}
