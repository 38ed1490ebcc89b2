/* store_s3_move.c: the bucket's half of a move on an S3 datastore (see
 * store_move.h): CopyObject of the group's `.cnt/` objects to the new keys
 * (manifests last, so the new place holds a finished snapshot only once all
 * its files are there), and after the local rename DeleteObjects of the old
 * keys in batches (manifests first, so an interrupted delete never leaves a
 * finished snapshot with files missing). Blocking: pool jobs and cairn-admin,
 * through the store_s3_fetcher's private client.
 */
#include "store/store_move.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "s3/s3_sync.h"
#include "core/core_buf.h"
#include "core/core_file.h"
#include "format/format_name.h"
#include "store/store_lock.h"
#include "store/store_path.h"
#include "store/store_registry.h"
#include "store/store_s3.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdio.h>
#include <string.h>

#define DELETE_BATCH 1000
#define MANIFEST "/index.json.blob"

static int ends_with(const char *s, const char *suffix)
{
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static const char *strip_dot(const char *rel)
{
  while (rel[0] == '.' && rel[1] == '/')
    rel += 2;
  return rel;
}

void store_move_keys_free(struct store_move_keys *k)
{
  for (size_t i = 0; i < k->n; i++)
    core_free(k->v[i]);
  core_free(k->v);
  memset(k, 0, sizeof(*k));
}

static void keys_push(struct store_move_keys *k, const char *key)
{
  if (k->n == k->cap) {
    k->cap = k->cap ? k->cap * 2 : 64;
    k->v = core_realloc(k->v, k->cap * sizeof(*k->v));
  }
  k->v[k->n++] = core_strdup(key);
}

/* Every key below <store>/.cnt/<rel>/ into `out`. */
static int list_all(struct s3_sync *s, const char *prefix, struct store_move_keys *out,
                    char *msg, size_t msglen)
{
  char *token = NULL;
  int rc = 0;
  do {
    struct s3_list_result page;
    struct s3_sync_result res;
    rc = s3_sync_list(s, prefix, token, &page, &res);
    core_free(token);
    token = NULL;
    if (rc < 0) {
      snprintf(msg, msglen, "cannot list %s in the bucket: %s %s", prefix, core_strerror(rc),
               res.message);
      return rc;
    }
    for (size_t i = 0; i < page.n; i++)
      keys_push(out, page.objects[i].key);
    if (page.is_truncated && page.next_token)
      token = core_strdup(page.next_token);
    s3_list_result_free(&page);
  } while (token);
  return rc;
}

/* Deletes `keys` (those ending in MANIFEST first), in batches. */
static int delete_keys(struct s3_sync *s, char *const *keys, size_t n, char *msg, size_t msglen)
{
  const char **batch = core_calloc(DELETE_BATCH, sizeof(*batch));
  int rc = 0;
  for (int pass = 0; pass < 2 && rc == 0; pass++) {
    size_t m = 0;
    for (size_t i = 0; i <= n && rc == 0; i++) {
      if (i < n && ends_with(keys[i], MANIFEST) == (pass == 0))
        batch[m++] = keys[i];
      if (m > 0 && (m == DELETE_BATCH || i == n)) {
        struct s3_sync_result res;
        size_t failed = 0;
        rc = s3_sync_delete(s, batch, m, &failed, &res);
        if (rc == 0 && failed)
          rc = CORE_ES3;
        if (rc < 0)
          snprintf(msg, msglen, "DeleteObjects failed for %zu of %zu keys: %s %s",
                   failed ? failed : m, m, core_strerror(rc), res.message);
        m = 0;
      }
    }
  }
  core_free(batch);
  return rc;
}

int store_move_s3_copy(struct store_s3_fetcher *f, const char *src_rel, const char *dst_rel,
                       int merging, int copy_notes, struct store_move_keys *src_keys,
                       char *msg, size_t msglen)
{
  struct s3_sync *s = store_s3_fetcher_sync(f);
  const char *store = store_s3_fetcher_prefix(f);
  char sp[S3_KEY_MAX + 1], dp[S3_KEY_MAX + 1], owner[S3_KEY_MAX + 8], notes[S3_KEY_MAX + 8];
  struct store_move_keys copied = {0};
  int n1 = snprintf(sp, sizeof(sp), "%s/.cnt/%s/", store, strip_dot(src_rel));
  int n2 = snprintf(dp, sizeof(dp), "%s/.cnt/%s/", store, strip_dot(dst_rel));
  if (n1 < 0 || n2 < 0 || n1 >= (int)sizeof(sp) || n2 >= (int)sizeof(dp))
    return CORE_ETOOBIG;
  snprintf(owner, sizeof(owner), "%sowner", sp);
  snprintf(notes, sizeof(notes), "%snotes", sp);
  int rc = list_all(s, sp, src_keys, msg, msglen);
  for (int pass = 0; pass < 2 && rc == 0; pass++) {
    for (size_t i = 0; i < src_keys->n && rc == 0; i++) {
      const char *k = src_keys->v[i];
      if (ends_with(k, MANIFEST) != (pass == 1))
        continue;
      if (merging && (strcmp(k, owner) == 0 || (!copy_notes && strcmp(k, notes) == 0)))
        continue; /* the target group's own stay */
      char to[S3_KEY_MAX + 1];
      if (snprintf(to, sizeof(to), "%s%s", dp, k + n1) >= (int)sizeof(to)) {
        rc = CORE_ETOOBIG;
        snprintf(msg, msglen, "key too long at the target: %s", k);
        break;
      }
      struct s3_sync_result res;
      rc = s3_sync_copy(s, k, to, &res);
      if (rc < 0)
        snprintf(msg, msglen, "CopyObject %s -> %s failed: %s %s", k, to, core_strerror(rc),
                 res.message);
      else
        keys_push(&copied, to);
    }
  }
  if (rc < 0 && copied.n) {
    /* Nothing moved: the copies go again (best effort; left-overs are keys
     * the next move of this group overwrites). */
    char ignored[256];
    delete_keys(s, copied.v, copied.n, ignored, sizeof(ignored));
  }
  store_move_keys_free(&copied);
  return rc;
}

int store_move_s3_delete(struct store_s3_fetcher *f, const struct store_move_keys *keys,
                         char *msg, size_t msglen)
{
  if (keys->n == 0)
    return 0;
  return delete_keys(store_s3_fetcher_sync(f), keys->v, keys->n, msg, msglen);
}

int store_move_s3_ns_markers(struct store_s3_fetcher *f, const struct store_move_ns_plan *plan,
                             const char *base, int remove, char *msg, size_t msglen)
{
  struct s3_sync *s = store_s3_fetcher_sync(f);
  const char *store = store_s3_fetcher_prefix(f);
  for (size_t i = 0; i < plan->n; i++) {
    char rel[4096], key[S3_KEY_MAX + 1];
    const char *ns = remove ? plan->src[i] : plan->dst[i];
    int rc = store_path_ns(rel, sizeof(rel), NULL, ns);
    if (rc < 0)
      return rc;
    if (remove) {
      /* Only the namespaces that are gone locally lose their marker. */
      struct stat st;
      char path[STORE_PATH_MAX];
      if (store_path_ns(path, sizeof(path), base, ns) < 0 || stat(path, &st) == 0)
        continue;
    }
    if (snprintf(key, sizeof(key), "%s/.cnt/%s/.namespace", store, rel) >= (int)sizeof(key))
      return CORE_ETOOBIG;
    struct s3_sync_result res;
    if (remove) {
      const char *one[1] = {key};
      size_t failed = 0;
      rc = s3_sync_delete(s, one, 1, &failed, &res);
    } else {
      rc = s3_sync_put(s, key, "", 0, 0, &res);
    }
    if (rc < 0) {
      snprintf(msg, msglen, "cannot %s the namespace marker %s: %s %s",
               remove ? "delete" : "write", key, core_strerror(rc), res.message);
      return rc;
    }
  }
  return 0;
}

/* ---- leftovers of interrupted moves ---------------------------------------- */

#define PENDING_FILE ".move-s3-pending"
#define PENDING_MAX (16u * 1024 * 1024)

static int pending_open(const char *base, int *fd)
{
  char path[STORE_PATH_MAX];
  if (snprintf(path, sizeof(path), "%s/%s", base, PENDING_FILE) >= (int)sizeof(path))
    return CORE_ETOOBIG;
  *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
  if (*fd < 0)
    return -errno;
  int r;
  do
    r = flock(*fd, LOCK_EX); /* held for a read or a short rewrite only */
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    int rc = -errno;
    close(*fd);
    return rc;
  }
  return 0;
}

static void pending_close(int fd)
{
  flock(fd, LOCK_UN);
  close(fd);
}

static int pending_read(int fd, char **text)
{
  struct stat st;
  *text = NULL;
  if (fstat(fd, &st) < 0)
    return -errno;
  if ((uint64_t)st.st_size > PENDING_MAX)
    return CORE_ETOOBIG;
  *text = core_malloc((size_t)st.st_size + 1);
  ssize_t got = pread(fd, *text, (size_t)st.st_size, 0);
  if (got < 0) {
    core_free(*text);
    *text = NULL;
    return -errno;
  }
  (*text)[got] = '\0';
  return 0;
}

static int pending_line(char *out, size_t cap, const char *src_ns, const char *type,
                        const char *id, const char *dst_ns)
{
  int n = snprintf(out, cap, "%s\t%s\t%s\t%s\n", src_ns, type, id, dst_ns);
  return n < 0 || n >= (int)cap ? CORE_ETOOBIG : n;
}

static int pending_add_line(const char *base, const char *line, size_t n)
{
  int fd, rc = pending_open(base, &fd);
  if (rc < 0)
    return rc;
  if (lseek(fd, 0, SEEK_END) < 0 || (rc = core_file_write_all(fd, line, n)) < 0 ||
      fsync(fd) < 0)
    rc = rc < 0 ? rc : -errno;
  pending_close(fd);
  return rc;
}

int store_move_s3_pending_add(const char *base, const char *src_ns, const char *type,
                              const char *id, const char *dst_ns)
{
  char line[2 * FORMAT_NAME_NS_MAX_LEN + FORMAT_NAME_ID_MAX + 32];
  int n = pending_line(line, sizeof(line), src_ns, type, id, dst_ns);
  if (n < 0)
    return n;
  return pending_add_line(base, line, (size_t)n);
}

static int pending_remove_line(const char *base, const char *line, size_t n)
{
  char *text = NULL;
  int fd, rc = pending_open(base, &fd);
  if (rc < 0)
    return rc;
  if ((rc = pending_read(fd, &text)) == 0) {
    /* Drops every copy of the line; rewritten in place under the lock. */
    struct core_buf keep;
    core_buf_init(&keep, 4096);
    for (char *p = text; *p;) {
      char *nl = strchr(p, '\n');
      size_t len = nl ? (size_t)(nl - p) + 1 : strlen(p);
      if (!(len == n && memcmp(p, line, len) == 0))
        core_buf_append(&keep, p, len);
      p += len;
    }
    if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0)
      rc = -errno;
    else if ((rc = core_file_write_all(fd, keep.base, keep.len)) == 0 && fsync(fd) < 0)
      rc = -errno;
    core_buf_free(&keep);
  }
  core_free(text);
  pending_close(fd);
  return rc;
}

int store_move_s3_pending_remove(const char *base, const char *src_ns, const char *type,
                                 const char *id, const char *dst_ns)
{
  char line[2 * FORMAT_NAME_NS_MAX_LEN + FORMAT_NAME_ID_MAX + 32];
  int n = pending_line(line, sizeof(line), src_ns, type, id, dst_ns);
  if (n < 0)
    return n;
  return pending_remove_line(base, line, (size_t)n);
}

/* A namespace move's line has two fields, a group move's four. */
static int ns_pending_line(char *out, size_t cap, const char *src, const char *dst)
{
  int n = snprintf(out, cap, "%s\t%s\n", src, dst);
  return n < 0 || n >= (int)cap ? CORE_ETOOBIG : n;
}

int store_move_s3_ns_pending_add(const char *base, const char *src, const char *dst)
{
  char line[2 * FORMAT_NAME_NS_MAX_LEN + 8];
  int n = ns_pending_line(line, sizeof(line), src, dst);
  if (n < 0)
    return n;
  return pending_add_line(base, line, (size_t)n);
}

int store_move_s3_ns_pending_remove(const char *base, const char *src, const char *dst)
{
  char line[2 * FORMAT_NAME_NS_MAX_LEN + 8];
  int n = ns_pending_line(line, sizeof(line), src, dst);
  if (n < 0)
    return n;
  return pending_remove_line(base, line, (size_t)n);
}

static int exists(const char *path)
{
  struct stat st;
  return lstat(path, &st) == 0;
}

/* For a key below one side's group prefix: the local path of the same file
 * on this side and on the other side, and of the snapshot directory (or the
 * group directory, for the group's own files) on both sides. */
static int orphaned(const char *base, const char *this_rel, const char *other_rel,
                    const char *tail)
{
  char here[STORE_PATH_MAX], there[STORE_PATH_MAX];
  const char *slash = strchr(tail, '/');
  size_t unit = slash ? (size_t)(slash - tail) : 0; /* snapshot dir name, or group file */
  if (unit) {
    if (snprintf(here, sizeof(here), "%s/%s/%.*s", base, this_rel, (int)unit, tail) >=
            (int)sizeof(here) ||
        snprintf(there, sizeof(there), "%s/%s/%.*s", base, other_rel, (int)unit, tail) >=
            (int)sizeof(there))
      return 0;
  } else {
    if (snprintf(here, sizeof(here), "%s/%s", base, this_rel) >= (int)sizeof(here) ||
        snprintf(there, sizeof(there), "%s/%s", base, other_rel) >= (int)sizeof(there))
      return 0;
  }
  /* Only when the other side holds it locally and this side does not: with
   * neither (a wiped cache), nothing is deleted. */
  return !exists(here) && exists(there);
}

/* One interrupted move, under both group locks: deletes the keys on either
 * side whose snapshot (or group) the local cache has on the other side only. */
static int reconcile_one(struct store_s3_fetcher *f, const char *base, const char *src_rel,
                         const char *dst_rel, char *msg, size_t msglen)
{
  struct s3_sync *s = store_s3_fetcher_sync(f);
  const char *store = store_s3_fetcher_prefix(f);
  int rc = 0;
  for (int side = 0; side < 2 && rc == 0; side++) {
    const char *this_rel = side ? dst_rel : src_rel, *other_rel = side ? src_rel : dst_rel;
    char prefix[S3_KEY_MAX + 1];
    int n = snprintf(prefix, sizeof(prefix), "%s/.cnt/%s/", store, this_rel);
    if (n < 0 || n >= (int)sizeof(prefix))
      return CORE_ETOOBIG;
    struct store_move_keys all = {0}, doomed = {0};
    rc = list_all(s, prefix, &all, msg, msglen);
    for (size_t i = 0; rc == 0 && i < all.n; i++)
      if (orphaned(base, this_rel, other_rel, all.v[i] + n))
        keys_push(&doomed, all.v[i]);
    if (rc == 0 && doomed.n)
      rc = delete_keys(s, doomed.v, doomed.n, msg, msglen);
    store_move_keys_free(&all);
    store_move_keys_free(&doomed);
  }
  return rc;
}

static int put_marker(struct s3_sync *s, const char *store, const char *ns, char *msg,
                      size_t msglen)
{
  char rel[STORE_PATH_MAX], key[S3_KEY_MAX + 1];
  struct s3_sync_result res;
  int rc = store_path_ns(rel, sizeof(rel), NULL, ns);
  if (rc < 0)
    return rc;
  if (snprintf(key, sizeof(key), "%s/.cnt/%s/.namespace", store, strip_dot(rel)) >=
      (int)sizeof(key))
    return CORE_ETOOBIG;
  rc = s3_sync_put(s, key, "", 0, 0, &res);
  if (rc < 0)
    snprintf(msg, msglen, "cannot write the namespace marker %s: %s %s", key,
             core_strerror(rc), res.message);
  return rc;
}

/* "ns/b/ns/c/" (below a namespace's key prefix, before ".namespace") to
 * "b/c". 0, or -1 if it is not a namespace path. */
static int marker_sub(const char *tail, char *out, size_t cap)
{
  char buf[STORE_PATH_MAX], *save = NULL;
  size_t n = 0;
  if (snprintf(buf, sizeof(buf), "%s", tail) >= (int)sizeof(buf))
    return -1;
  out[0] = '\0';
  for (char *c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
    char *name = strtok_r(NULL, "/", &save);
    if (strcmp(c, "ns") != 0 || name == NULL)
      return -1;
    int w = snprintf(out + n, cap - n, "%s%s", n ? "/" : "", name);
    if (w < 0 || (size_t)w >= cap - n)
      return -1;
    n += (size_t)w;
  }
  return 0;
}

/* One interrupted namespace move, under both namespaces' locks: for every
 * `.namespace` marker in the source subtree whose namespace exists locally
 * at its target place, the target's marker is written (it may be missing
 * after a crash between the local mkdir and the PUT), and the source's
 * marker deleted if the source namespace is gone locally. With neither side
 * local (a wiped cache) nothing changes. Group keys are the group entries'
 * business. */
static int reconcile_ns(struct store_s3_fetcher *f, const char *base, const char *src,
                        const char *dst, char *msg, size_t msglen)
{
  struct s3_sync *s = store_s3_fetcher_sync(f);
  const char *store = store_s3_fetcher_prefix(f);
  char rel[STORE_PATH_MAX], prefix[S3_KEY_MAX + 1];
  struct store_move_keys all = {0}, doomed = {0};
  int rc = store_path_ns(rel, sizeof(rel), NULL, src);
  if (rc < 0)
    return rc;
  int n = snprintf(prefix, sizeof(prefix), "%s/.cnt/%s/", store, strip_dot(rel));
  if (n < 0 || n >= (int)sizeof(prefix))
    return CORE_ETOOBIG;
  rc = list_all(s, prefix, &all, msg, msglen);
  for (size_t i = 0; rc == 0 && i < all.n; i++) {
    const char *tail = all.v[i] + n;
    char dir[STORE_PATH_MAX], sub[FORMAT_NAME_NS_MAX_LEN + 1];
    char sns[FORMAT_NAME_NS_MAX_LEN + 1], dns[FORMAT_NAME_NS_MAX_LEN + 1];
    char sp[STORE_PATH_MAX], dp[STORE_PATH_MAX];
    size_t tl = strlen(tail);
    if (!(strcmp(tail, ".namespace") == 0 || ends_with(tail, "/.namespace")))
      continue;
    snprintf(dir, sizeof(dir), "%.*s", (int)(tl - strlen(".namespace")), tail);
    if (marker_sub(dir, sub, sizeof(sub)) < 0)
      continue;
    if (snprintf(sns, sizeof(sns), "%s%s%s", src, sub[0] ? "/" : "", sub) >= (int)sizeof(sns) ||
        snprintf(dns, sizeof(dns), "%s%s%s", dst, sub[0] ? "/" : "", sub) >= (int)sizeof(dns) ||
        format_name_ns(sns) < 0 || format_name_ns(dns) < 0 ||
        store_path_ns(sp, sizeof(sp), base, sns) < 0 ||
        store_path_ns(dp, sizeof(dp), base, dns) < 0 || !exists(dp))
      continue;
    rc = put_marker(s, store, dns, msg, msglen);
    if (rc == 0 && !exists(sp))
      keys_push(&doomed, all.v[i]);
  }
  if (rc == 0 && doomed.n)
    rc = delete_keys(s, doomed.v, doomed.n, msg, msglen);
  store_move_keys_free(&all);
  store_move_keys_free(&doomed);
  return rc;
}

int store_move_s3_reconcile(struct store_s3_fetcher *f, const char *base, const char *lockdir,
                            char *msg, size_t msglen)
{
  int fd, left = 0;
  char *text = NULL;
  int rc = pending_open(base, &fd);
  if (rc < 0)
    return rc;
  rc = pending_read(fd, &text);
  pending_close(fd); /* entries are removed one by one below */
  if (rc < 0)
    return rc;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char *f1 = line, *f2 = strchr(f1, '\t'), *f3 = f2 ? strchr(f2 + 1, '\t') : NULL;
    char *f4 = f3 ? strchr(f3 + 1, '\t') : NULL;
    if (f2 && !f3) { /* a namespace move: "src TAB dst" */
      *f2++ = '\0';
      if (format_name_ns(f1) < 0 || format_name_ns(f2) < 0 || !f1[0] || !f2[0])
        continue; /* not a line of ours: never acted upon */
      struct store_lock_guard a = STORE_LOCK_GUARD_INIT, b = STORE_LOCK_GUARD_INIT;
      int r = store_lock_namespace(lockdir, f1, STORE_LOCK_EXCLUSIVE, &a);
      if (r == 0)
        r = store_lock_namespace(lockdir, f2, STORE_LOCK_EXCLUSIVE, &b);
      if (r == 0)
        r = reconcile_ns(f, base, f1, f2, msg, msglen);
      if (r == 0)
        r = store_move_s3_ns_pending_remove(base, f1, f2);
      store_lock_release(&b);
      store_lock_release(&a);
      if (r < 0)
        left++;
      continue;
    }
    if (!f4)
      continue;
    *f2++ = '\0';
    *f3++ = '\0';
    *f4++ = '\0';
    char srel[STORE_PATH_MAX], drel[STORE_PATH_MAX];
    if (store_path_group(srel, sizeof(srel), NULL, f1, f2, f3) < 0 ||
        store_path_group(drel, sizeof(drel), NULL, f4, f2, f3) < 0)
      continue; /* not a line of ours: never acted upon */
    struct store_lock_guard a = STORE_LOCK_GUARD_INIT, b = STORE_LOCK_GUARD_INIT;
    int r = store_lock_group(lockdir, f1, f2, f3, STORE_LOCK_EXCLUSIVE, &a);
    if (r == 0)
      r = store_lock_group(lockdir, f4, f2, f3, STORE_LOCK_EXCLUSIVE, &b);
    if (r == 0)
      r = reconcile_one(f, base, strip_dot(srel), strip_dot(drel), msg, msglen);
    if (r == 0)
      r = store_move_s3_pending_remove(base, f1, f2, f3, f4);
    store_lock_release(&b);
    store_lock_release(&a);
    if (r < 0)
      left++; /* busy or failed: the next move, GC or refresh tries again */
  }
  core_free(text);
  return left;
}

int store_move_s3_reconcile_ds(struct store_datastore *ds, const char *run_dir, char *msg,
                               size_t msglen)
{
  char lockdir[STORE_PATH_MAX], pending[STORE_PATH_MAX];
  struct store_s3_fetcher *f = NULL;
  if (snprintf(pending, sizeof(pending), "%s/%s", ds->path, PENDING_FILE) >=
          (int)sizeof(pending) ||
      !exists(pending))
    return 0; /* no move ever ran here: no client needed */
  int rc = store_lock_dir(lockdir, sizeof(lockdir), run_dir, ds->name);
  if (rc >= 0)
    rc = store_s3_fetcher_open(ds, &f, msg, msglen);
  if (rc >= 0)
    rc = store_move_s3_reconcile(f, ds->path, lockdir, msg, msglen);
  store_s3_fetcher_close(f);
  return rc;
}
