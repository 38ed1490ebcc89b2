#include "store/store_lock.h"

#include "core/core_digest.h"
#include "core/core_error.h"
#include "store/store_path.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define NS_LOCK_FILE ".ns-lock"
#define MANIFEST_SUFFIX ".index.json.lck"
#define LOCK_FILE_MODE 0660
#define LOCK_DIR_MODE 0770
#define NAME_LIMIT 255 /* NAME_MAX: longer names get hashed */
#define HASH_KEEP 80   /* characters kept from each end of a hashed name */
/* Room for an escaped "type/id/time" plus suffix: every id byte may become
 * "\xNN" (4 bytes). */
#define ESC_MAX (8 + 4 * FORMAT_NAME_ID_MAX + 4 * FORMAT_NAME_TIME_LEN + 32)

/* ---- names ------------------------------------------------------------- */

/* systemd unit-name escaping: injective, so distinct objects never share a
 * lock file, and readable for the usual names. */
static size_t escape(const char *in, char *out)
{
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  for (size_t i = 0; in[i]; i++) {
    unsigned char c = (unsigned char)in[i];
    if (c == '/') {
      out[o++] = '-';
    } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == ':' || c == '_' || (c == '.' && i > 0)) {
      out[o++] = (char)c;
    } else {
      out[o++] = '\\';
      out[o++] = 'x';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
    }
  }
  out[o] = '\0';
  return o;
}

/* Makes `name` (len bytes) fit in a directory entry. The hashed form contains
 * "...", which no unhashed name can: names are built from SAFE_IDs that never
 * contain "..", and escaping adds no dots. */
static void fit_name(const char *name, size_t len, char out[NAME_LIMIT + 1])
{
  if (len < NAME_LIMIT) {
    memcpy(out, name, len + 1);
    return;
  }
  uint8_t d[CORE_SHA256_LEN];
  char dhex[CORE_SHA256_HEX_LEN + 1];
  core_sha256(name, len, d);
  core_hex_encode(d, CORE_SHA256_LEN, dhex);
  snprintf(out, NAME_LIMIT + 1, "%.*s...%.*s-%s", HASH_KEEP, name, HASH_KEEP,
           name + len - HASH_KEEP, dhex);
}

/* Directory name for the first `depth` components of namespace `ns`:
 * "ns" + ":comp" per component. */
static void ns_dir_name(const char *ns, int depth, char out[NAME_LIMIT + 1])
{
  char tmp[8 + FORMAT_NAME_NS_MAX_LEN];
  size_t n = 0;
  memcpy(tmp, "ns", 2);
  n = 2;
  const char *s = ns;
  for (int d = 0; d < depth; d++) {
    const char *slash = strchr(s, '/');
    size_t clen = slash ? (size_t)(slash - s) : strlen(s);
    tmp[n++] = ':';
    memcpy(tmp + n, s, clen);
    n += clen;
    s += clen + (slash ? 1 : 0);
  }
  tmp[n] = '\0';
  fit_name(tmp, n, out);
}

/* The object file name inside its namespace directory. */
static int object_name(const char *type, const char *id, int64_t time, int manifest,
                       char out[NAME_LIMIT + 1])
{
  char rel[8 + FORMAT_NAME_ID_MAX + FORMAT_NAME_TIME_LEN + 8];
  char esc[ESC_MAX + sizeof(MANIFEST_SUFFIX)];
  if (format_name_backup_type(type) < 0 || format_name_backup_id(id) < 0)
    return CORE_ENAME;
  if (time >= 0) {
    char ts[FORMAT_NAME_TIME_LEN + 1];
    if (format_name_time_format(time, ts) < 0)
      return CORE_ENAME;
    snprintf(rel, sizeof(rel), "%s/%s/%s", type, id, ts);
  } else {
    if (manifest)
      return CORE_EINVAL;
    snprintf(rel, sizeof(rel), "%s/%s", type, id);
  }
  size_t n = escape(rel, esc);
  if (manifest) {
    memcpy(esc + n, MANIFEST_SUFFIX, sizeof(MANIFEST_SUFFIX));
    n += sizeof(MANIFEST_SUFFIX) - 1;
  }
  fit_name(esc, n, out);
  return 0;
}

static int join(char *out, size_t cap, const char *lockdir, const char *dir, const char *file)
{
  int n = snprintf(out, cap, "%s/%s/%s", lockdir, dir, file);
  if (n < 0 || (size_t)n >= cap)
    return CORE_ETOOBIG;
  return n;
}

int store_lock_dir(char *out, size_t cap, const char *run_dir, const char *store)
{
  if (format_name_datastore(store) < 0)
    return CORE_ENAME;
  int n = snprintf(out, cap, "%s/locks/%s", run_dir, store);
  if (n < 0 || (size_t)n >= cap) {
    if (cap)
      out[0] = '\0';
    return CORE_ETOOBIG;
  }
  return n;
}

int store_lock_file_path(char *out, size_t cap, const char *lockdir, const char *ns,
                         const char *type, const char *id, int64_t time, int manifest)
{
  char dir[NAME_LIMIT + 1], file[NAME_LIMIT + 1];
  int depth = format_name_ns_depth(ns);
  if (depth < 0)
    return depth;
  ns_dir_name(ns, depth, dir);
  if (type == NULL) {
    snprintf(file, sizeof(file), "%s", NS_LOCK_FILE);
  } else {
    int rc = object_name(type, id, time, manifest, file);
    if (rc < 0)
      return rc;
  }
  return join(out, cap, lockdir, dir, file);
}

/* ---- acquisition ------------------------------------------------------- */

/* mkdir -p of the directory part of `path`. */
static int mkdir_parents(const char *path)
{
  char buf[STORE_PATH_MAX];
  size_t len = strlen(path);
  if (len >= sizeof(buf))
    return CORE_ETOOBIG;
  memcpy(buf, path, len + 1);
  char *last = strrchr(buf, '/');
  if (last == NULL || last == buf)
    return 0;
  *last = '\0';
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(buf, LOCK_DIR_MODE) < 0 && errno != EEXIST)
      return -errno;
    *p = '/';
  }
  if (mkdir(buf, LOCK_DIR_MODE) < 0 && errno != EEXIST)
    return -errno;
  return 0;
}

static int acquire(struct store_lock_guard *g, const char *path, enum store_lock_mode mode)
{
  int fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, LOCK_FILE_MODE);
  if (fd < 0 && errno == ENOENT) {
    int rc = mkdir_parents(path);
    if (rc < 0)
      return rc;
    fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, LOCK_FILE_MODE);
  }
  if (fd < 0)
    return -errno;
  int op = (mode == STORE_LOCK_EXCLUSIVE ? LOCK_EX : LOCK_SH) | LOCK_NB;
  int r;
  do
    r = flock(fd, op);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    int rc = errno == EWOULDBLOCK ? CORE_ELOCKED : -errno;
    close(fd);
    return rc;
  }
  g->fds[g->n++] = fd;
  return 0;
}

void store_lock_release(struct store_lock_guard *g)
{
  while (g->n > 0) {
    int fd = g->fds[--g->n];
    flock(fd, LOCK_UN);
    close(fd);
  }
}

/* Takes the namespace chain root..ns: shared on every ancestor, `mode` on ns
 * itself. */
static int lock_chain(const char *lockdir, const char *ns, int depth,
                      enum store_lock_mode mode, struct store_lock_guard *g)
{
  char dir[NAME_LIMIT + 1], path[STORE_PATH_MAX];
  for (int d = 0; d <= depth; d++) {
    ns_dir_name(ns, d, dir);
    int rc = join(path, sizeof(path), lockdir, dir, NS_LOCK_FILE);
    if (rc >= 0)
      rc = acquire(g, path, d == depth ? mode : STORE_LOCK_SHARED);
    if (rc < 0)
      return rc;
  }
  return 0;
}

int store_lock_namespace(const char *lockdir, const char *ns, enum store_lock_mode mode,
                         struct store_lock_guard *g)
{
  g->n = 0;
  int depth = format_name_ns_depth(ns);
  if (depth < 0)
    return depth;
  int rc = lock_chain(lockdir, ns, depth, mode, g);
  if (rc < 0)
    store_lock_release(g);
  return rc;
}

static int lock_object(const char *lockdir, const char *ns, const char *type, const char *id,
                       int64_t time, int manifest, enum store_lock_mode mode,
                       struct store_lock_guard *g)
{
  char dir[NAME_LIMIT + 1], file[NAME_LIMIT + 1], path[STORE_PATH_MAX];
  g->n = 0;
  int depth = format_name_ns_depth(ns);
  if (depth < 0)
    return depth;
  int rc = object_name(type, id, time, manifest, file);
  if (rc < 0)
    return rc;
  ns_dir_name(ns, depth, dir);
  if ((rc = join(path, sizeof(path), lockdir, dir, file)) < 0)
    return rc;
  rc = lock_chain(lockdir, ns, depth, STORE_LOCK_SHARED, g);
  if (rc == 0)
    rc = acquire(g, path, mode);
  if (rc < 0)
    store_lock_release(g);
  return rc;
}

int store_lock_group(const char *lockdir, const char *ns, const char *type, const char *id,
                     enum store_lock_mode mode, struct store_lock_guard *g)
{
  return lock_object(lockdir, ns, type, id, -1, 0, mode, g);
}

int store_lock_snapshot(const char *lockdir, const char *ns, const char *type, const char *id,
                        int64_t time, enum store_lock_mode mode, struct store_lock_guard *g)
{
  if (time < 0) {
    g->n = 0;
    return CORE_ENAME;
  }
  return lock_object(lockdir, ns, type, id, time, 0, mode, g);
}

int store_lock_snapshot_in_group(const char *lockdir, const char *ns, const char *type,
                                 const char *id, int64_t time, enum store_lock_mode mode,
                                 struct store_lock_guard *g)
{
  char dir[NAME_LIMIT + 1], file[NAME_LIMIT + 1], path[STORE_PATH_MAX];
  g->n = 0;
  if (time < 0)
    return CORE_ENAME;
  int depth = format_name_ns_depth(ns);
  if (depth < 0)
    return depth;
  int rc = object_name(type, id, time, 0, file);
  if (rc < 0)
    return rc;
  ns_dir_name(ns, depth, dir);
  if ((rc = join(path, sizeof(path), lockdir, dir, file)) < 0)
    return rc;
  rc = acquire(g, path, mode);
  if (rc < 0)
    store_lock_release(g);
  return rc;
}

int store_lock_manifest(const char *lockdir, const char *ns, const char *type, const char *id,
                        int64_t time, struct store_lock_guard *g)
{
  if (time < 0) {
    g->n = 0;
    return CORE_ENAME;
  }
  return lock_object(lockdir, ns, type, id, time, 1, STORE_LOCK_EXCLUSIVE, g);
}
