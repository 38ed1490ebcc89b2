/* store_move.c: group and namespace moves on a local datastore (see
 * store_move.h for the design, the lock order and the GC argument).
 */
#include "store/store_move.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_testpoint.h"
#include "format/format_name.h"
#include "store/store_lock.h"
#include "store/store_path.h"
#include "store/store_snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOCK_BATCH 64 /* snapshot locks per batch (a test pause point between batches) */
#define JOURNAL_MAX (64u * 1024 * 1024)

static int dir_exists(const char *path)
{
  struct stat st;
  if (stat(path, &st) < 0)
    return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
  return S_ISDIR(st.st_mode) ? 1 : 0;
}

static const char *ns_show(const char *ns)
{
  return ns[0] ? ns : "/";
}

/* Reads a small file into a NUL-terminated string (NULL if missing). */
static int read_text(const char *path, char **out)
{
  uint8_t *data = NULL;
  size_t len = 0;
  *out = NULL;
  int rc = core_file_read(path, 1024 * 1024, &data, &len);
  if (rc == CORE_ENOTFOUND || rc == -ENOENT)
    return 0;
  if (rc < 0)
    return rc;
  char *s = core_malloc(len + 1);
  memcpy(s, data, len);
  s[len] = '\0';
  core_free(data);
  *out = s;
  return 1;
}

/* The merge rule: same owner, every target snapshot strictly older than the
 * oldest source snapshot. 0 or CORE_EINVAL with the reason. */
static int merge_allowed(const char *base, const char *src_ns, const char *type, const char *id,
                         const char *dst_ns, struct store_move_result *res)
{
  char *so = NULL, *to = NULL;
  struct store_snapshot_list sl = {0}, tl = {0};
  int rc = store_group_owner(base, src_ns, type, id, &so);
  if (rc == 0)
    rc = store_group_owner(base, dst_ns, type, id, &to);
  if (rc < 0) {
    snprintf(res->msg, sizeof(res->msg), "cannot read the owners of %s/%s: %s", type, id,
             core_strerror(rc));
    goto out;
  }
  if (strcmp(so, to) != 0) {
    snprintf(res->msg, sizeof(res->msg),
             "cannot merge %s/%s: owner differs (source '%s', target '%s')", type, id, so, to);
    rc = CORE_EINVAL;
    goto out;
  }
  if ((rc = store_snapshot_list(base, src_ns, type, id, &sl)) < 0 ||
      (rc = store_snapshot_list(base, dst_ns, type, id, &tl)) < 0) {
    snprintf(res->msg, sizeof(res->msg), "cannot list %s/%s: %s", type, id, core_strerror(rc));
    goto out;
  }
  if (sl.n > 0 && tl.n > 0 && tl.items[tl.n - 1].time >= sl.items[0].time) {
    char a[FORMAT_NAME_TIME_LEN + 1], b[FORMAT_NAME_TIME_LEN + 1];
    format_name_time_format(tl.items[tl.n - 1].time, a);
    format_name_time_format(sl.items[0].time, b);
    snprintf(res->msg, sizeof(res->msg),
             "cannot merge %s/%s: the target's newest snapshot %s is not older than the "
             "source's oldest %s", type, id, a, b);
    rc = CORE_EINVAL;
  }
out:
  store_snapshot_list_free(&sl);
  store_snapshot_list_free(&tl);
  core_free(so);
  core_free(to);
  return rc;
}

int store_move_group_check(const char *base, const char *src_ns, const char *type,
                           const char *id, const char *dst_ns, int merge,
                           struct store_move_result *res)
{
  char sp[STORE_PATH_MAX], dp[STORE_PATH_MAX], tns[STORE_PATH_MAX];
  memset(res, 0, sizeof(*res));
  int rc;
  if (strcmp(src_ns, dst_ns) == 0) {
    snprintf(res->msg, sizeof(res->msg), "source and target namespace are the same");
    return CORE_EINVAL;
  }
  if ((rc = store_path_group(sp, sizeof(sp), base, src_ns, type, id)) < 0 ||
      (rc = store_path_group(dp, sizeof(dp), base, dst_ns, type, id)) < 0 ||
      (rc = store_path_ns(tns, sizeof(tns), base, dst_ns)) < 0) {
    snprintf(res->msg, sizeof(res->msg), "invalid name or path too long");
    return rc;
  }
  if ((rc = dir_exists(sp)) <= 0) {
    snprintf(res->msg, sizeof(res->msg), "group %s/%s does not exist in namespace '%s'", type,
             id, ns_show(src_ns));
    return rc < 0 ? rc : CORE_ENOTFOUND;
  }
  if ((rc = dir_exists(tns)) <= 0) {
    snprintf(res->msg, sizeof(res->msg), "target namespace '%s' does not exist",
             ns_show(dst_ns));
    return rc < 0 ? rc : CORE_ENOTFOUND;
  }
  if ((rc = dir_exists(dp)) < 0)
    return rc;
  if (rc == 0)
    return 0;
  res->merged = 1;
  if (!merge) {
    snprintf(res->msg, sizeof(res->msg),
             "group %s/%s already exists in namespace '%s' and merge-group is off", type, id,
             ns_show(dst_ns));
    return CORE_EEXISTS;
  }
  return merge_allowed(base, src_ns, type, id, dst_ns, res);
}

/* ---- journal ----------------------------------------------------------- */

static int journal_open(const char *base, int *fd)
{
  char path[STORE_PATH_MAX];
  if (snprintf(path, sizeof(path), "%s/%s", base, STORE_MOVE_JOURNAL) >= (int)sizeof(path))
    return CORE_ETOOBIG;
  *fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0640);
  return *fd < 0 ? -errno : 0;
}

#define GC_MARK_LOCK "gc-marking"

static int gc_mark_path(char *out, size_t cap, const char *lockdir)
{
  int n = snprintf(out, cap, "%s/%s", lockdir, GC_MARK_LOCK);
  return n < 0 || n >= (int)cap ? CORE_ETOOBIG : 0;
}

int store_move_gc_mark_begin(const char *lockdir, int *fd)
{
  char path[STORE_PATH_MAX];
  *fd = -1;
  int rc = gc_mark_path(path, sizeof(path), lockdir);
  if (rc < 0)
    return rc;
  core_mkdir_p(lockdir, 0750);
  int f = open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0660);
  if (f < 0) {
    /* It does not exist and cannot be made (a full run directory): no move
     * can open it either (they never create it), so none clears the
     * journal; GC goes on without it. */
    if (errno == ENOENT || errno == ENOSPC || errno == EDQUOT || errno == EROFS)
      return 0;
    return -errno;
  }
  int r;
  do
    r = flock(f, LOCK_SH); /* only moves take it, exclusively and never waiting */
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    rc = -errno;
    close(f);
    return rc;
  }
  *fd = f;
  return 0;
}

void store_move_gc_mark_end(int fd)
{
  if (fd >= 0) {
    flock(fd, LOCK_UN);
    close(fd);
  }
}

/* 1 if no GC is marking right now (see store_move_gc_mark_begin). */
static int no_gc_marking(const char *lockdir)
{
  char path[STORE_PATH_MAX];
  if (lockdir == NULL || gc_mark_path(path, sizeof(path), lockdir) < 0)
    return 0;
  /* Never created here: only GC creates it, so a GC that could not create
   * it (a full run directory) is never mistaken for no GC. */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return 0;
  int ok = flock(fd, LOCK_EX | LOCK_NB) == 0;
  if (ok)
    flock(fd, LOCK_UN);
  close(fd);
  return ok;
}

/* Takes the journal lock without waiting and appends `rel` (fsynced); when
 * no GC is marking, the lines of earlier moves go first. */
static int journal_append(const char *base, const char *lockdir, const char *rel, int *fd,
                          struct store_move_result *res)
{
  int rc = journal_open(base, fd);
  if (rc < 0) {
    snprintf(res->msg, sizeof(res->msg), "cannot open the move journal: %s", core_strerror(rc));
    return rc;
  }
  int r;
  do
    r = flock(*fd, LOCK_EX | LOCK_NB);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    rc = errno == EWOULDBLOCK ? CORE_ELOCKED : -errno;
    snprintf(res->msg, sizeof(res->msg), "the move journal is busy (garbage collection is "
             "reading it)");
    goto fail;
  }
  if (no_gc_marking(lockdir) && ftruncate(*fd, 0) < 0) {
    rc = -errno;
    snprintf(res->msg, sizeof(res->msg), "cannot clear the move journal: %s", strerror(errno));
    goto fail;
  }
  char line[STORE_PATH_MAX + 2];
  int n = snprintf(line, sizeof(line), "%s\n", rel);
  if (n >= (int)sizeof(line)) {
    rc = CORE_ETOOBIG;
    goto fail;
  }
  if ((rc = core_file_write_all(*fd, line, (size_t)n)) < 0 || fsync(*fd) < 0) {
    rc = rc < 0 ? rc : -errno;
    snprintf(res->msg, sizeof(res->msg), "cannot write the move journal: %s",
             core_strerror(rc));
    goto fail;
  }
  return 0;
fail:
  close(*fd);
  *fd = -1;
  return rc;
}

static void journal_release(int fd)
{
  if (fd >= 0) {
    flock(fd, LOCK_UN);
    close(fd);
  }
}

int store_move_journal_take(const char *base, int *fd, char ***dirs, size_t *n)
{
  char path[STORE_PATH_MAX];
  *dirs = NULL;
  *n = 0;
  *fd = -1;
  if (snprintf(path, sizeof(path), "%s/%s", base, STORE_MOVE_JOURNAL) >= (int)sizeof(path))
    return CORE_ETOOBIG;
  /* Not created here (GC runs on full disks too): without the file no move
   * has renamed anything yet (a move creates it before its first rename, and
   * nobody deletes it), so a rename can only come after this moment, when
   * marking is complete, and moves a snapshot that was marked in its old
   * place. */
  *fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (*fd < 0) {
    *fd = -1;
    return errno == ENOENT ? 0 : -errno;
  }
  int rc;
  int r;
  do
    r = flock(*fd, LOCK_EX); /* a gc worker: waits at most for one move's renames */
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    rc = -errno;
    goto fail;
  }
  struct stat st;
  if (fstat(*fd, &st) < 0) {
    rc = -errno;
    goto fail;
  }
  if (st.st_size == 0)
    return 0;
  if ((uint64_t)st.st_size > JOURNAL_MAX) {
    rc = CORE_ETOOBIG;
    goto fail;
  }
  char *text = core_malloc((size_t)st.st_size + 1);
  ssize_t got = pread(*fd, text, (size_t)st.st_size, 0);
  if (got < 0) {
    rc = -errno;
    core_free(text);
    goto fail;
  }
  text[got] = '\0';
  size_t cap = 0;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    /* Relative paths written by moves; anything else is ignored, never
     * followed outside the base. */
    if (line[0] == '/' || line[0] == '.' || strstr(line, "/.") != NULL)
      continue;
    int dup = 0;
    for (size_t i = 0; i < *n && !dup; i++)
      dup = strcmp((*dirs)[i] + strlen(base) + 1, line) == 0;
    if (dup)
      continue;
    if (*n == cap) {
      cap = cap ? cap * 2 : 16;
      *dirs = core_realloc(*dirs, cap * sizeof(**dirs));
    }
    size_t len = strlen(base) + 1 + strlen(line) + 1;
    char *p = core_malloc(len);
    snprintf(p, len, "%s/%s", base, line);
    (*dirs)[(*n)++] = p;
  }
  core_free(text);
  return 0;
fail:
  close(*fd);
  *fd = -1;
  return rc;
}

void store_move_journal_done(int fd, int clear)
{
  if (fd < 0)
    return;
  if (clear && ftruncate(fd, 0) == 0)
    fsync(fd);
  journal_release(fd);
}

/* ---- group move -------------------------------------------------------- */

struct snap_locks {
  struct store_lock_guard *g;
  size_t n;
};

static void snap_locks_release(struct snap_locks *l)
{
  for (size_t i = 0; i < l->n; i++)
    store_lock_release(&l->g[i]);
  core_free(l->g);
  l->g = NULL;
  l->n = 0;
}

/* Renames one snapshot directory of the source group into the target. */
static int move_snapshot(const char *src_group, const char *dst_group, int64_t time)
{
  char name[FORMAT_NAME_TIME_LEN + 1], a[STORE_PATH_MAX], b[STORE_PATH_MAX];
  int rc = format_name_time_format(time, name);
  if (rc < 0)
    return rc;
  if (snprintf(a, sizeof(a), "%s/%s", src_group, name) >= (int)sizeof(a) ||
      snprintf(b, sizeof(b), "%s/%s", dst_group, name) >= (int)sizeof(b))
    return CORE_ETOOBIG;
  if (renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_NOREPLACE) < 0)
    return -errno;
  return 0;
}

/* Notes: the source's move when the target has none; otherwise the target's
 * stay and a difference is reported in res->msg. */
static int merge_notes(const char *src_group, const char *dst_group,
                       struct store_move_result *res)
{
  char a[STORE_PATH_MAX], b[STORE_PATH_MAX];
  char *sn = NULL, *tn = NULL;
  if (snprintf(a, sizeof(a), "%s/%s", src_group, STORE_NOTES_FILE) >= (int)sizeof(a) ||
      snprintf(b, sizeof(b), "%s/%s", dst_group, STORE_NOTES_FILE) >= (int)sizeof(b))
    return CORE_ETOOBIG;
  int rc = read_text(a, &sn);
  if (rc <= 0)
    return rc;
  rc = read_text(b, &tn);
  if (rc == 0) {
    rc = rename(a, b) < 0 ? -errno : 0;
  } else if (rc > 0) {
    rc = 0;
    if (strcmp(sn, tn) != 0)
      snprintf(res->msg, sizeof(res->msg),
               "the group notes differ; kept the target's, dropped the source's (%zu bytes)",
               strlen(sn));
  }
  core_free(sn);
  core_free(tn);
  return rc;
}

static void fsync_dir(const char *path)
{
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

/* What is left of a merged source group: owner, notes, leftovers. */
static int remove_group_dir(const char *path)
{
  char p[STORE_PATH_MAX];
  static const char *const files[] = {STORE_OWNER_FILE, STORE_NOTES_FILE};
  for (size_t i = 0; i < 2; i++) {
    if (snprintf(p, sizeof(p), "%s/%s", path, files[i]) >= (int)sizeof(p))
      return CORE_ETOOBIG;
    if (unlink(p) < 0 && errno != ENOENT)
      return -errno;
  }
  if (rmdir(path) < 0 && errno != ENOENT)
    return -errno;
  return 0;
}

int store_move_group(const char *base, const char *lockdir, const char *src_ns,
                     const char *type, const char *id, const char *dst_ns, int merge,
                     unsigned flags, struct store_s3_fetcher *s3,
                     struct store_move_result *res)
{
  struct store_move_keys old_keys = {0};
  char srel[STORE_PATH_MAX];
  struct store_lock_guard sg = STORE_LOCK_GUARD_INIT, tg = STORE_LOCK_GUARD_INIT;
  struct snap_locks locks = {0};
  struct store_snapshot_list sl = {0};
  char sp[STORE_PATH_MAX], dp[STORE_PATH_MAX], rel[STORE_PATH_MAX];
  int jfd = -1;
  int rc;
  memset(res, 0, sizeof(*res));
  if (strcmp(src_ns, dst_ns) == 0) { /* before the locks: both would be the same */
    snprintf(res->msg, sizeof(res->msg), "source and target namespace are the same");
    return CORE_EINVAL;
  }
  if (!(flags & STORE_MOVE_SRC_HELD)) {
    rc = store_lock_group(lockdir, src_ns, type, id, STORE_LOCK_EXCLUSIVE, &sg);
    if (rc < 0) {
      snprintf(res->msg, sizeof(res->msg), "source group %s/%s is %s", type, id,
               rc == CORE_ELOCKED ? "busy (a backup or another operation holds its lock)"
                                  : core_strerror(rc));
      return rc;
    }
  }
  rc = store_lock_group(lockdir, dst_ns, type, id, STORE_LOCK_EXCLUSIVE, &tg);
  if (rc < 0) {
    snprintf(res->msg, sizeof(res->msg), "target group %s/%s in '%s' is %s", type, id,
             ns_show(dst_ns),
             rc == CORE_ELOCKED ? "busy (a backup or another operation holds its lock)"
                                : core_strerror(rc));
    goto out;
  }
  rc = store_move_group_check(base, src_ns, type, id, dst_ns, merge, res);
  if (rc < 0)
    goto out;
  int merging = res->merged;
  res->msg[0] = '\0';
  if ((rc = store_snapshot_list(base, src_ns, type, id, &sl)) < 0) {
    snprintf(res->msg, sizeof(res->msg), "cannot list %s/%s: %s", type, id, core_strerror(rc));
    goto out;
  }
  if (!(flags & STORE_MOVE_SRC_HELD) && sl.n > 0) {
    /* Every snapshot, in batches, all held until the renames are done. */
    locks.g = core_calloc(sl.n, sizeof(*locks.g));
    for (size_t i = 0; i < sl.n; i++) {
      rc = store_lock_snapshot_in_group(lockdir, src_ns, type, id, sl.items[i].time,
                                        STORE_LOCK_EXCLUSIVE, &locks.g[i]);
      if (rc < 0) {
        char t[FORMAT_NAME_TIME_LEN + 1];
        format_name_time_format(sl.items[i].time, t);
        snprintf(res->msg, sizeof(res->msg), "snapshot %s/%s/%s is %s", type, id, t,
                 rc == CORE_ELOCKED ? "in use (being read, verified, or the base of a backup)"
                                    : core_strerror(rc));
        goto out;
      }
      locks.n = i + 1;
      if ((i + 1) % LOCK_BATCH == 0)
        core_testpoint("move-lock-batch");
    }
  }
  core_testpoint("move-locked");
  if ((rc = store_path_group(sp, sizeof(sp), base, src_ns, type, id)) < 0 ||
      (rc = store_path_group(dp, sizeof(dp), base, dst_ns, type, id)) < 0 ||
      (rc = store_path_group(rel, sizeof(rel), NULL, dst_ns, type, id)) < 0)
    goto out;
  if (s3) {
    char notes[STORE_PATH_MAX + 8];
    struct stat st;
    snprintf(notes, sizeof(notes), "%s/%s", dp, STORE_NOTES_FILE);
    int copy_notes = !merging || stat(notes, &st) < 0;
    if ((rc = store_path_group(srel, sizeof(srel), NULL, src_ns, type, id)) < 0)
      goto out;
    if ((rc = store_move_s3_pending_add(base, src_ns, type, id, dst_ns)) < 0) {
      snprintf(res->msg, sizeof(res->msg), "cannot record the move: %s", core_strerror(rc));
      goto out;
    }
    if ((rc = store_move_s3_copy(s3, srel, rel, merging, copy_notes, &old_keys, res->msg,
                                 sizeof(res->msg))) < 0)
      goto out; /* the entry stays: a failed clean-up of the copies is redone later */
    core_testpoint("move-s3-copied");
  }
  if ((rc = journal_append(base, lockdir, rel, &jfd, res)) < 0)
    goto out;
  core_testpoint("move-journaled");
  if (!merging) {
    char tdir[STORE_PATH_MAX];
    snprintf(tdir, sizeof(tdir), "%s", dp);
    *strrchr(tdir, '/') = '\0';
    if (mkdir(tdir, 0755) < 0 && errno != EEXIST) {
      rc = -errno;
      snprintf(res->msg, sizeof(res->msg), "cannot create the type directory of %s in '%s': %s",
               type, ns_show(dst_ns), core_strerror(rc));
      goto out;
    }
    if (renameat2(AT_FDCWD, sp, AT_FDCWD, dp, RENAME_NOREPLACE) < 0) {
      rc = -errno;
      snprintf(res->msg, sizeof(res->msg), "cannot rename group %s/%s from '%s' to '%s': %s",
               type, id, ns_show(src_ns), ns_show(dst_ns), core_strerror(rc));
      goto out;
    }
    res->snapshots = sl.n;
  } else {
    res->merged = 1;
    for (size_t i = 0; i < sl.n; i++) { /* oldest first: see store_move.h */
      rc = move_snapshot(sp, dp, sl.items[i].time);
      if (rc < 0) {
        snprintf(res->msg, sizeof(res->msg), "moved %zu of %zu snapshots, then: %s", i, sl.n,
                 core_strerror(rc));
        goto out;
      }
      res->snapshots++;
      if (i == 0)
        core_testpoint("move-merge-first");
    }
    if ((rc = merge_notes(sp, dp, res)) < 0 || (rc = remove_group_dir(sp)) < 0) {
      snprintf(res->msg, sizeof(res->msg), "snapshots moved, but the source group's "
               "leftovers stay: %s", core_strerror(rc));
      goto out;
    }
  }
  core_testpoint("move-renamed");
  /* Durable before the locks go: the directories whose entries changed (the
   * type directories; when merging also both group directories; the target
   * namespace if its type directory is new). */
  core_file_fsync_parent(sp);
  core_file_fsync_parent(dp);
  if (merging) {
    fsync_dir(dp);
  } else {
    char tdir[STORE_PATH_MAX];
    snprintf(tdir, sizeof(tdir), "%s", dp);
    *strrchr(tdir, '/') = '\0';
    core_file_fsync_parent(tdir);
  }
  rc = 0;
  if (s3) {
    char why[400];
    if (store_move_s3_delete(s3, &old_keys, why, sizeof(why)) < 0)
      snprintf(res->msg, sizeof(res->msg), "moved, but old keys stay in the bucket until "
               "the next move, GC or refresh: %s", why);
    else
      store_move_s3_pending_remove(base, src_ns, type, id, dst_ns);
  }
out:
  store_move_keys_free(&old_keys);
  journal_release(jfd);
  snap_locks_release(&locks);
  store_snapshot_list_free(&sl);
  store_lock_release(&tg);
  store_lock_release(&sg);
  return rc;
}

/* ---- namespace move ------------------------------------------------------ */

static int is_within(const char *ns, const char *root)
{
  size_t n = strlen(root);
  return strncmp(ns, root, n) == 0 && (ns[n] == '\0' || ns[n] == '/');
}

void store_move_ns_plan_free(struct store_move_ns_plan *plan)
{
  for (size_t i = 0; i < plan->n; i++) {
    core_free(plan->src[i]);
    core_free(plan->dst[i]);
  }
  for (size_t i = 0; i < plan->n_groups; i++) {
    core_free(plan->groups[i].src_ns);
    core_free(plan->groups[i].dst_ns);
    core_free(plan->groups[i].id);
  }
  core_free(plan->src);
  core_free(plan->dst);
  core_free(plan->groups);
  memset(plan, 0, sizeof(*plan));
}

/* 0 if the parent of namespace `dst` exists, else CORE_ENOTFOUND (msg). */
static int parent_exists(const char *base, const char *dst, char *msg, size_t msglen)
{
  char path[STORE_PATH_MAX];
  int rc;
  char parent[FORMAT_NAME_NS_MAX_LEN + 1];
  snprintf(parent, sizeof(parent), "%s", dst);
  char *slash = strrchr(parent, '/');
  if (slash)
    *slash = '\0';
  else
    parent[0] = '\0';
  if ((rc = store_path_ns(path, sizeof(path), base, parent)) < 0)
    return rc;
  if ((rc = dir_exists(path)) <= 0) {
    snprintf(msg, msglen, "the parent '%s' of the target namespace does not exist",
             ns_show(parent));
    return rc < 0 ? rc : CORE_ENOTFOUND;
  }
  return 0;
}

int store_move_ns_check(const char *base, const char *src, const char *dst, int max_depth,
                        struct store_move_ns_plan *plan, char *msg, size_t msglen)
{
  int sd = format_name_ns_depth(src), dd = format_name_ns_depth(dst);
  struct store_ns_list list = {0};
  char path[STORE_PATH_MAX];
  int rc;
  if (plan)
    memset(plan, 0, sizeof(*plan));
  if (sd < 0 || dd < 0) {
    snprintf(msg, msglen, "invalid namespace");
    return CORE_ENAME;
  }
  if (sd == 0) {
    snprintf(msg, msglen, "the root namespace cannot be moved");
    return CORE_EINVAL;
  }
  if (strcmp(src, dst) == 0) {
    snprintf(msg, msglen, "source and target namespace are the same");
    return CORE_EINVAL;
  }
  if (dd == 0 || is_within(dst, src) || is_within(src, dst)) {
    snprintf(msg, msglen, "target namespace '%s' is %s the source '%s'", ns_show(dst),
             is_within(dst, src) ? "inside" : "an ancestor of", src);
    return CORE_EINVAL;
  }
  if ((rc = store_path_ns(path, sizeof(path), base, src)) < 0)
    return rc;
  if ((rc = dir_exists(path)) <= 0) {
    snprintf(msg, msglen, "namespace '%s' does not exist", src);
    return rc < 0 ? rc : CORE_ENOTFOUND;
  }
  if ((rc = store_ns_list(base, src, max_depth, &list)) < 0) {
    snprintf(msg, msglen, "cannot list namespace '%s': %s", src, core_strerror(rc));
    return rc;
  }
  size_t slen = strlen(src), cap = 0;
  for (size_t i = 0; i < list.n; i++) {
    const char *ns = list.items[i];
    char mapped[FORMAT_NAME_NS_MAX_LEN + 2];
    int n = snprintf(mapped, sizeof(mapped), "%s%s", dst, ns + slen);
    if (n >= (int)sizeof(mapped) || format_name_ns(mapped) < 0) {
      snprintf(msg, msglen, "namespace '%s' would become '%s%s': deeper than %d levels or "
               "too long", ns, dst, ns + slen, FORMAT_NAME_NS_MAX_DEPTH);
      rc = CORE_EINVAL;
      break;
    }
    if (plan == NULL)
      continue;
    plan->src = core_realloc(plan->src, (plan->n + 1) * sizeof(char *));
    plan->dst = core_realloc(plan->dst, (plan->n + 1) * sizeof(char *));
    plan->src[plan->n] = core_strdup(ns);
    plan->dst[plan->n] = core_strdup(mapped);
    plan->n++;
    struct store_group_list gl;
    rc = store_group_list(base, ns, &gl);
    if (rc < 0) {
      snprintf(msg, msglen, "cannot list groups of '%s': %s", ns, core_strerror(rc));
      break;
    }
    for (size_t k = 0; k < gl.n; k++) {
      if (plan->n_groups == cap) {
        cap = cap ? cap * 2 : 16;
        plan->groups = core_realloc(plan->groups, cap * sizeof(*plan->groups));
      }
      struct store_move_group_ref *g = &plan->groups[plan->n_groups++];
      g->src_ns = core_strdup(ns);
      g->dst_ns = core_strdup(mapped);
      snprintf(g->type, sizeof(g->type), "%s", gl.items[k].type);
      g->id = core_strdup(gl.items[k].id);
    }
    store_group_list_free(&gl);
  }
  /* A subtree deeper than max-depth stays behind: its depth does not count. */
  store_ns_list_free(&list);
  if (rc == 0)
    rc = parent_exists(base, dst, msg, msglen);
  if (rc < 0 && plan)
    store_move_ns_plan_free(plan);
  return rc;
}

int store_move_ns_create_targets(const char *base, const struct store_move_ns_plan *plan,
                                 char *msg, size_t msglen)
{
  for (size_t i = 0; i < plan->n; i++) {
    int rc = store_ns_create(base, plan->dst[i]);
    if (rc < 0 && rc != CORE_EEXISTS) {
      snprintf(msg, msglen, "cannot create namespace '%s': %s", plan->dst[i],
               core_strerror(rc));
      return rc;
    }
  }
  return 0;
}

/* rmdir of an empty namespace directory: its type directories and its "ns"
 * directory must be empty. 1 removed, 0 kept, or an error. */
static int remove_if_empty(const char *base, const char *ns)
{
  static const char *const sub[] = {"vm", "ct", "host", "ns"};
  char path[STORE_PATH_MAX], p[STORE_PATH_MAX];
  int rc = store_path_ns(path, sizeof(path), base, ns);
  if (rc < 0)
    return rc;
  for (size_t i = 0; i < sizeof(sub) / sizeof(sub[0]); i++) {
    if (snprintf(p, sizeof(p), "%s/%s", path, sub[i]) >= (int)sizeof(p))
      return CORE_ETOOBIG;
    if (rmdir(p) < 0 && errno != ENOENT)
      return errno == ENOTEMPTY || errno == EEXIST ? 0 : -errno;
  }
  if (rmdir(path) < 0) {
    if (errno == ENOENT)
      return 1;
    return errno == ENOTEMPTY || errno == EEXIST ? 0 : -errno;
  }
  core_file_fsync_parent(path);
  return 1;
}

int store_move_ns_remove_sources(const char *base, const struct store_move_ns_plan *plan)
{
  int kept = 0;
  /* Parents first in the plan: backwards is deepest first. */
  for (size_t i = plan->n; i-- > 0;) {
    int rc = remove_if_empty(base, plan->src[i]);
    if (rc < 0)
      return rc;
    if (rc == 0)
      kept++;
  }
  return kept;
}

int store_move_ns_run(const char *base, const char *lockdir, const char *src, const char *dst,
                      int max_depth, int delete_source, int merge,
                      struct store_s3_fetcher *s3, store_move_report_fn report, void *arg,
                      char *msg, size_t msglen)
{
  struct store_lock_guard g = STORE_LOCK_GUARD_INIT;
  struct store_move_ns_plan plan = {0};
  struct store_move_result res;
  char line[1024];
  int *state = NULL;
  int failed = 0;
  int rc = store_move_ns_check(base, src, dst, max_depth, NULL, msg, msglen);
  if (rc < 0)
    return rc;
  if (s3) {
    /* Leftovers of interrupted moves first, before the namespace lock
     * (reconciling takes the group and namespace locks itself). */
    char why[256];
    int left = store_move_s3_reconcile(s3, base, lockdir, why, sizeof(why));
    if (left != 0) {
      snprintf(line, sizeof(line), "%d interrupted move(s) not cleaned up yet%s%s", left,
               left < 0 ? ": " : "", left < 0 ? core_strerror(left) : "");
      report(arg, 0, line);
    }
  }
  rc = store_lock_namespace(lockdir, src, STORE_LOCK_EXCLUSIVE, &g);
  if (rc < 0) {
    snprintf(msg, msglen, "namespace '%s' is %s", src,
             rc == CORE_ELOCKED ? "busy (something below it holds a lock)" : core_strerror(rc));
    return rc;
  }
  if ((rc = store_move_ns_check(base, src, dst, max_depth, &plan, msg, msglen)) < 0)
    goto out;
  if (s3) {
    if ((rc = store_move_s3_ns_pending_add(base, src, dst)) < 0) {
      snprintf(msg, msglen, "cannot record the move: %s", core_strerror(rc));
      goto out;
    }
  }
  if ((rc = store_move_ns_create_targets(base, &plan, msg, msglen)) < 0 ||
      (s3 && (rc = store_move_s3_ns_markers(s3, &plan, base, 0, msg, msglen)) < 0))
    goto out; /* the record stays: the next reconcile tidies the markers */
  state = core_calloc(plan.n_groups ? plan.n_groups : 1, sizeof(int));
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < plan.n_groups; i++) {
      const struct store_move_group_ref *gr = &plan.groups[i];
      if (state[i] != (pass ? CORE_ELOCKED : 0))
        continue;
      int r = store_move_group(base, lockdir, gr->src_ns, gr->type, gr->id, gr->dst_ns, merge,
                               STORE_MOVE_SRC_HELD, s3, &res);
      if (r == 0) {
        state[i] = 1;
        snprintf(line, sizeof(line), "moved group %s/%s from '%s' to '%s' (%zu snapshots%s)",
                 gr->type, gr->id, ns_show(gr->src_ns), ns_show(gr->dst_ns), res.snapshots,
                 res.merged ? ", merged" : "");
        report(arg, 0, line);
        continue;
      }
      state[i] = r;
      if (r == CORE_ELOCKED && pass == 0)
        continue;
      failed++;
      snprintf(line, sizeof(line), "group %s/%s in '%s' not moved: %s", gr->type, gr->id,
               ns_show(gr->src_ns), res.msg[0] ? res.msg : core_strerror(r));
      report(arg, 1, line);
    }
  }
  if (delete_source) {
    int kept = store_move_ns_remove_sources(base, &plan);
    if (kept < 0) {
      snprintf(line, sizeof(line), "cannot remove the emptied source namespaces: %s",
               core_strerror(kept));
      report(arg, 1, line);
    } else if (kept > 0) {
      snprintf(line, sizeof(line), "kept %d source namespace(s) that still hold something",
               kept);
      report(arg, 0, line);
    }
  }
  core_testpoint("move-ns-removed");
  if (s3) {
    char why[400];
    int r = delete_source ? store_move_s3_ns_markers(s3, &plan, base, 1, why, sizeof(why)) : 0;
    if (r < 0) {
      snprintf(line, sizeof(line), "the removed namespaces' markers stay in the bucket until "
               "the next move, GC or refresh: %s", why);
      report(arg, 1, line);
      failed += failed ? 0 : 1;
    } else {
      store_move_s3_ns_pending_remove(base, src, dst);
    }
  }
  rc = failed;
out:
  core_free(state);
  store_move_ns_plan_free(&plan);
  store_lock_release(&g);
  return rc;
}
