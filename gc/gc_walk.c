#include "gc/gc_walk.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "store/store_name.h"
#include "store/store_path.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STRANGE_MAX_DEPTH 64

enum ent_type { ENT_OTHER = 0, ENT_DIR, ENT_REG };

struct ent {
  char *name;
  enum ent_type type;
  int64_t time; /* snapshot time, for sorting */
};

struct walk {
  struct gc_index_list *out;
  const _Atomic int *abort_flag;
  char *err;
  size_t errlen;
  uint32_t group;    /* group of the snapshots being walked, or GC_NO_GROUP */
};

void gc_index_list_free(struct gc_index_list *l)
{
  for (size_t i = 0; i < l->n; i++)
    core_free(l->paths[i]);
  for (size_t i = 0; i < l->n_groups; i++)
    core_free(l->groups[i]);
  core_free(l->paths);
  core_free(l->strange);
  core_free(l->group);
  core_free(l->groups);
  memset(l, 0, sizeof(*l));
}

static void add(struct gc_index_list *l, const char *path, int strange, uint32_t group)
{
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 256;
    l->paths = core_realloc(l->paths, l->cap * sizeof(*l->paths));
    l->strange = core_realloc(l->strange, l->cap);
    l->group = core_realloc(l->group, l->cap * sizeof(*l->group));
  }
  l->paths[l->n] = core_strdup(path);
  l->strange[l->n] = (uint8_t)(strange != 0);
  l->group[l->n] = strange ? GC_NO_GROUP : group;
  l->n++;
  if (strange)
    l->n_strange++;
}

static int is_index_name(const char *name)
{
  size_t n = strlen(name);
  return n > 5 && (strcmp(name + n - 5, ".fidx") == 0 || strcmp(name + n - 5, ".didx") == 0);
}

static void free_ents(struct ent *e, size_t n)
{
  for (size_t i = 0; i < n; i++)
    core_free(e[i].name);
  core_free(e);
}

/* Reads a directory's entries (names not starting with '.'). Returns 0, 1 if
 * the directory vanished (or is not one), or a negative error with the
 * message set. */
static int read_dir(struct walk *w, const char *path, struct ent **out, size_t *nout)
{
  *out = NULL;
  *nout = 0;
  if (w->abort_flag && atomic_load(w->abort_flag))
    return CORE_EABORTED;
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR)
      return 1;
    int rc = -errno;
    snprintf(w->err, w->errlen, "cannot open directory %s: %s", path, strerror(errno));
    return rc;
  }
  DIR *d = fdopendir(fd);
  if (d == NULL) {
    int rc = -errno;
    close(fd);
    snprintf(w->err, w->errlen, "cannot read directory %s: %s", path, strerror(-rc));
    return rc;
  }
  struct ent *ents = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  for (;;) {
    errno = 0;
    struct dirent *de = readdir(d);
    if (de == NULL) {
      if (errno) {
        rc = -errno;
        snprintf(w->err, w->errlen, "cannot read directory %s: %s", path, strerror(errno));
      }
      break;
    }
    if (de->d_name[0] == '.')
      continue;
    enum ent_type t = ENT_OTHER;
    if (de->d_type == DT_DIR) {
      t = ENT_DIR;
    } else if (de->d_type == DT_REG) {
      t = ENT_REG;
    } else if (de->d_type == DT_UNKNOWN) {
      struct stat st;
      if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
          continue;
        rc = -errno;
        snprintf(w->err, w->errlen, "cannot stat %s/%s: %s", path, de->d_name, strerror(errno));
        break;
      }
      t = S_ISDIR(st.st_mode) ? ENT_DIR : S_ISREG(st.st_mode) ? ENT_REG : ENT_OTHER;
    }
    if (t == ENT_OTHER)
      continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      ents = core_realloc(ents, cap * sizeof(*ents));
    }
    ents[n].name = core_strdup(de->d_name);
    ents[n].type = t;
    ents[n].time = 0;
    n++;
  }
  closedir(d);
  if (rc < 0) {
    free_ents(ents, n);
    return rc;
  }
  *out = ents;
  *nout = n;
  return 0;
}

static int join(struct walk *w, char *buf, const char *dir, const char *name)
{
  int n = snprintf(buf, STORE_PATH_MAX, "%s/%s", dir, name);
  if (n < 0 || n >= STORE_PATH_MAX) {
    snprintf(w->err, w->errlen, "path too long below %s", dir);
    return CORE_ETOOBIG;
  }
  return 0;
}

/* Anything outside the layout: every index file below, flagged strange. */
static int walk_strange(struct walk *w, const char *path, int depth)
{
  struct ent *e;
  size_t n;
  if (depth > STRANGE_MAX_DEPTH) {
    snprintf(w->err, w->errlen, "directory tree too deep at %s", path);
    return CORE_ETOOBIG;
  }
  int rc = read_dir(w, path, &e, &n);
  if (rc)
    return rc > 0 ? 0 : rc;
  char child[STORE_PATH_MAX];
  for (size_t i = 0; i < n && rc == 0; i++) {
    if ((rc = join(w, child, path, e[i].name)) < 0)
      break;
    if (e[i].type == ENT_DIR)
      rc = walk_strange(w, child, depth + 1);
    else if (is_index_name(e[i].name))
      add(w->out, child, 1, GC_NO_GROUP);
  }
  free_ents(e, n);
  return rc;
}

static int walk_snapshot(struct walk *w, const char *path)
{
  struct ent *e;
  size_t n;
  int rc = read_dir(w, path, &e, &n);
  if (rc)
    return rc > 0 ? 0 : rc;
  w->out->n_snapshots++;
  char child[STORE_PATH_MAX];
  for (size_t i = 0; i < n && rc == 0; i++) {
    if ((rc = join(w, child, path, e[i].name)) < 0)
      break;
    if (e[i].type == ENT_DIR)
      rc = walk_strange(w, child, 0);
    else if (is_index_name(e[i].name))
      add(w->out, child, 0, w->group);
  }
  free_ents(e, n);
  return rc;
}

static int newest_first(const void *a, const void *b)
{
  const struct ent *x = a, *y = b;
  return x->time < y->time ? 1 : x->time > y->time ? -1 : 0;
}

static uint32_t add_group(struct gc_index_list *l, const char *path)
{
  if (l->n_groups == l->cap_groups) {
    l->cap_groups = l->cap_groups ? l->cap_groups * 2 : 64;
    l->groups = core_realloc(l->groups, l->cap_groups * sizeof(*l->groups));
  }
  l->groups[l->n_groups] = core_strdup(path);
  return (uint32_t)l->n_groups++;
}

static int walk_group(struct walk *w, const char *path)
{
  struct ent *e;
  size_t n;
  int rc = read_dir(w, path, &e, &n);
  if (rc)
    return rc > 0 ? 0 : rc;
  w->group = add_group(w->out, path);
  /* Snapshots (valid time names) first, newest first; everything else after. */
  for (size_t i = 0; i < n; i++) {
    int64_t t;
    if (e[i].type == ENT_DIR && store_name_time_parse(e[i].name, &t) == 0)
      e[i].time = t;
    else
      e[i].time = -1;
  }
  if (n > 1) /* an empty group (a backup just created it) has no array at all */
    qsort(e, n, sizeof(*e), newest_first);
  char child[STORE_PATH_MAX];
  for (size_t i = 0; i < n && rc == 0; i++) {
    if ((rc = join(w, child, path, e[i].name)) < 0)
      break;
    if (e[i].time >= 0)
      rc = walk_snapshot(w, child);
    else if (e[i].type == ENT_DIR)
      rc = walk_strange(w, child, 0);
    else if (is_index_name(e[i].name))
      add(w->out, child, 1, GC_NO_GROUP);
  }
  free_ents(e, n);
  return rc;
}

static int walk_type(struct walk *w, const char *path)
{
  struct ent *e;
  size_t n;
  int rc = read_dir(w, path, &e, &n);
  if (rc)
    return rc > 0 ? 0 : rc;
  char child[STORE_PATH_MAX];
  for (size_t i = 0; i < n && rc == 0; i++) {
    if ((rc = join(w, child, path, e[i].name)) < 0)
      break;
    if (e[i].type == ENT_DIR && store_name_backup_id(e[i].name) == 0)
      rc = walk_group(w, child);
    else if (e[i].type == ENT_DIR)
      rc = walk_strange(w, child, 0);
    else if (is_index_name(e[i].name))
      add(w->out, child, 1, GC_NO_GROUP);
  }
  free_ents(e, n);
  return rc;
}

static int walk_ns(struct walk *w, const char *path, int depth);

/* <ns>/ns: the child namespaces. */
static int walk_children(struct walk *w, const char *path, int depth)
{
  struct ent *e;
  size_t n;
  int rc = read_dir(w, path, &e, &n);
  if (rc)
    return rc > 0 ? 0 : rc;
  char child[STORE_PATH_MAX];
  for (size_t i = 0; i < n && rc == 0; i++) {
    if ((rc = join(w, child, path, e[i].name)) < 0)
      break;
    if (e[i].type == ENT_DIR && depth < STORE_NAME_NS_MAX_DEPTH &&
        store_name_ns_component(e[i].name) == 0)
      rc = walk_ns(w, child, depth + 1);
    else if (e[i].type == ENT_DIR)
      rc = walk_strange(w, child, 0);
    else if (is_index_name(e[i].name))
      add(w->out, child, 1, GC_NO_GROUP);
  }
  free_ents(e, n);
  return rc;
}

static int walk_ns(struct walk *w, const char *path, int depth)
{
  struct ent *e;
  size_t n;
  int rc = read_dir(w, path, &e, &n);
  if (rc)
    return rc > 0 ? 0 : rc;
  char child[STORE_PATH_MAX];
  for (size_t i = 0; i < n && rc == 0; i++) {
    if (depth == 0 && strcmp(e[i].name, "lost+found") == 0)
      continue;
    if ((rc = join(w, child, path, e[i].name)) < 0)
      break;
    if (e[i].type == ENT_DIR && store_name_backup_type(e[i].name) == 0)
      rc = walk_type(w, child);
    else if (e[i].type == ENT_DIR && strcmp(e[i].name, "ns") == 0)
      rc = walk_children(w, child, depth);
    else if (e[i].type == ENT_DIR)
      rc = walk_strange(w, child, 0);
    else if (is_index_name(e[i].name))
      add(w->out, child, 1, GC_NO_GROUP);
  }
  free_ents(e, n);
  return rc;
}

int gc_walk_groups(char *const *group_dirs, size_t n, struct gc_index_list *out,
                   const _Atomic int *abort_flag, char *err, size_t errlen)
{
  struct walk w = {out, abort_flag, err, errlen, GC_NO_GROUP};
  if (errlen)
    err[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    int rc = walk_group(&w, group_dirs[i]);
    if (rc < 0) {
      if (rc == CORE_EABORTED)
        snprintf(err, errlen, "aborted");
      return rc;
    }
  }
  return 0;
}

int gc_walk_indexes(const char *base, struct gc_index_list *out, const _Atomic int *abort_flag,
                    char *err, size_t errlen)
{
  struct walk w = {out, abort_flag, err, errlen, GC_NO_GROUP};
  if (errlen)
    err[0] = '\0';
  char root[STORE_PATH_MAX];
  size_t len = strlen(base);
  while (len > 1 && base[len - 1] == '/')
    len--;
  if (len >= sizeof(root)) {
    snprintf(err, errlen, "datastore path too long");
    return CORE_ETOOBIG;
  }
  memcpy(root, base, len);
  root[len] = '\0';
  /* The base itself must exist: a missing datastore directory is an error,
   * not an empty datastore. */
  struct stat st;
  if (stat(root, &st) < 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "datastore directory %s is missing", root);
    return CORE_ENOTFOUND;
  }
  int rc = walk_ns(&w, root, 0);
  if (rc == CORE_EABORTED)
    snprintf(err, errlen, "aborted");
  return rc;
}
