#include "gc/gc_walk.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "format/format_name.h"
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

/* ---- the levels ---------------------------------------------------------
 *
 * The tree is <ns>/<type>/<id>/<time>/ with child namespaces under
 * <ns>/ns/<name>/. Each level below is one row of `levels`: the same loop
 * (walk_dir) reads a directory, visits its entries in order, descends into
 * subdirectories at the level the row's `subdir` picks, and lists index
 * files as in the layout (a snapshot's) or strange (anywhere else).
 * Anything a level does not expect is walked as LVL_STRANGE, so no index
 * file is ever missed. */

enum level {
  LVL_NS,       /* a namespace: backup types, "ns" */
  LVL_NS_DIR,   /* <ns>/ns: child namespaces */
  LVL_TYPE,     /* <ns>/<type>: backup ids */
  LVL_GROUP,    /* <ns>/<type>/<id>: snapshots, newest first */
  LVL_SNAPSHOT, /* <ns>/<type>/<id>/<time>: the index files of the layout */
  LVL_STRANGE,  /* anything outside the layout, all the way down */
};

struct level_desc {
  /* The level of a subdirectory `e` of a directory at `*depth`; sets
   * `*depth` to the subdirectory's (namespace nesting for LVL_NS and
   * LVL_NS_DIR, nesting below the layout for LVL_STRANGE). */
  enum level (*subdir)(const struct ent *e, int *depth);
  /* Runs once the entries are read, before any is visited; may reorder them. */
  void (*enter)(struct walk *w, const char *path, struct ent *e, size_t n);
  const char *skip_at_top; /* an entry ignored at depth 0, or NULL */
  int max_depth;           /* a deeper directory fails the walk; 0: no limit */
  int in_layout;           /* 1: index files here are a snapshot's, not strange */
};

static enum level subdir_ns(const struct ent *e, int *depth)
{
  if (format_name_backup_type(e->name) == 0) {
    *depth = 0;
    return LVL_TYPE;
  }
  if (strcmp(e->name, "ns") == 0)
    return LVL_NS_DIR; /* same namespace depth: ns/ is not a namespace */
  *depth = 0;
  return LVL_STRANGE;
}

static enum level subdir_ns_dir(const struct ent *e, int *depth)
{
  if (*depth < FORMAT_NAME_NS_MAX_DEPTH && format_name_ns_component(e->name) == 0) {
    ++*depth;
    return LVL_NS;
  }
  *depth = 0;
  return LVL_STRANGE;
}

static enum level subdir_type(const struct ent *e, int *depth)
{
  *depth = 0;
  return format_name_backup_id(e->name) == 0 ? LVL_GROUP : LVL_STRANGE;
}

static enum level subdir_group(const struct ent *e, int *depth)
{
  *depth = 0;
  return e->time >= 0 ? LVL_SNAPSHOT : LVL_STRANGE; /* set by enter_group */
}

static enum level subdir_snapshot(const struct ent *e, int *depth)
{
  *depth = 0;
  return LVL_STRANGE;
}

static enum level subdir_strange(const struct ent *e, int *depth)
{
  ++*depth;
  return LVL_STRANGE;
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

/* Registers the group, then puts its snapshots (directories with a valid
 * time name) first, newest first, and everything else after. */
static void enter_group(struct walk *w, const char *path, struct ent *e, size_t n)
{
  w->group = add_group(w->out, path);
  for (size_t i = 0; i < n; i++) {
    int64_t t;
    if (e[i].type == ENT_DIR && format_name_time_parse(e[i].name, &t) == 0)
      e[i].time = t;
    else
      e[i].time = -1;
  }
  if (n > 1) /* an empty group (a backup just created it) has no array at all */
    qsort(e, n, sizeof(*e), newest_first);
}

static void enter_snapshot(struct walk *w, const char *path, struct ent *e, size_t n)
{
  w->out->n_snapshots++;
}

static const struct level_desc levels[] = {
    /* File systems create lost+found root-only below the base. */
    [LVL_NS] = {.subdir = subdir_ns, .skip_at_top = "lost+found"},
    [LVL_NS_DIR] = {.subdir = subdir_ns_dir},
    [LVL_TYPE] = {.subdir = subdir_type},
    [LVL_GROUP] = {.subdir = subdir_group, .enter = enter_group},
    [LVL_SNAPSHOT] = {.subdir = subdir_snapshot, .enter = enter_snapshot, .in_layout = 1},
    [LVL_STRANGE] = {.subdir = subdir_strange, .max_depth = STRANGE_MAX_DEPTH},
};

/* Walks the directory `path` at level `lvl` and `depth` (see struct level_desc).
 * A directory that vanished is empty. Returns 0 or a negative error with
 * the message set. */
static int walk_dir(struct walk *w, enum level lvl, const char *path, int depth)
{
  const struct level_desc *l = &levels[lvl];
  struct ent *e;
  size_t n;
  if (l->max_depth && depth > l->max_depth) {
    snprintf(w->err, w->errlen, "directory tree too deep at %s", path);
    return CORE_ETOOBIG;
  }
  int rc = read_dir(w, path, &e, &n);
  if (rc)
    return rc > 0 ? 0 : rc;
  if (l->enter)
    l->enter(w, path, e, n);
  char child[STORE_PATH_MAX];
  for (size_t i = 0; i < n && rc == 0; i++) {
    if (depth == 0 && l->skip_at_top && strcmp(e[i].name, l->skip_at_top) == 0)
      continue;
    if ((rc = join(w, child, path, e[i].name)) < 0)
      break;
    if (e[i].type == ENT_DIR) {
      int d = depth;
      enum level next = l->subdir(&e[i], &d);
      rc = walk_dir(w, next, child, d);
    } else if (is_index_name(e[i].name)) {
      add(w->out, child, !l->in_layout, w->group);
    }
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
    int rc = walk_dir(&w, LVL_GROUP, group_dirs[i], 0);
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
  int rc = walk_dir(&w, LVL_NS, root, 0);
  if (rc == CORE_EABORTED)
    snprintf(err, errlen, "aborted");
  return rc;
}
