/* store_s3_mirror.c: metadata files to and from <store>/.cnt/ in the bucket.
 *
 * The local datastore directory is the working copy; the bucket holds the
 * copy that outlives the local disk (S3 refresh rebuilds from it). A mirror
 * reads the local files in one pool job and PUTs them one after the other,
 * in the order given, so a caller can make "the manifest last" hold: a
 * snapshot is finished in the bucket only once everything it names is
 * there.
 */
#include "store/store_s3.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "s3/s3_hash.h"
#include "store/store_path.h"
#include "store/store_registry.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIRROR_MAX_FILE (256u * 1024 * 1024)   /* as the largest index a session reads */
#define NS_MARKER ".namespace"
#define UNMIRROR_MAX_PAGES 100000

/* ---- mirror ------------------------------------------------------------ */

struct mfile {
  char *rel;          /* owned: the key below .cnt/ */
  char *src;          /* owned: the local file to read, or NULL: `rel` */
  uint8_t *data;      /* owned */
  size_t len;
  int skip;           /* optional and absent */
  struct s3_hash h;
};

struct mirror {
  struct core_job job;
  struct store_datastore *ds;
  struct store_backend *be;
  struct mfile *files;
  size_t n, next;
  unsigned flags;
  store_s3_done_cb cb;
  void *arg;
  int rc;
  char msg[512];
};

static int is_ns_marker(const char *rel)
{
  size_t n = strlen(rel), m = strlen(NS_MARKER);
  return n >= m && strcmp(rel + n - m, NS_MARKER) == 0 && (n == m || rel[n - m - 1] == '/');
}

static void mirror_run(struct core_job *j)
{
  struct mirror *m = (struct mirror *)j;
  for (size_t i = 0; i < m->n; i++) {
    struct mfile *f = &m->files[i];
    if (!is_ns_marker(f->rel)) {
      char *path = core_asprintf("%s/%s", m->ds->path, f->src ? f->src : f->rel);
      int rc = core_file_read(path, MIRROR_MAX_FILE, &f->data, &f->len);
      core_free(path);
      if (rc == CORE_ENOTFOUND && (m->flags & STORE_S3_OPTIONAL)) {
        f->skip = 1;
        continue;
      }
      if (rc < 0) {
        m->rc = rc;
        snprintf(m->msg, sizeof(m->msg), "cannot read %s for the S3 mirror: %s", f->rel,
                 core_strerror(rc));
        return;
      }
    }
    s3_hash_compute(f->data ? f->data : (const uint8_t *)"", f->len, 1, &f->h);
  }
}

static void mirror_end(struct mirror *m)
{
  m->cb(m->arg, m->rc, m->rc < 0 ? m->msg : NULL);
  for (size_t i = 0; i < m->n; i++) {
    core_free(m->files[i].rel);
    core_free(m->files[i].src);
    core_free(m->files[i].data);
  }
  core_free(m->files);
  core_free(m);
}

static void mirror_pump(struct mirror *m);

static void on_mirror_put(const struct s3_result *res, void *arg)
{
  struct mirror *m = arg;
  if (res->status < 0) {
    m->rc = res->status;
    snprintf(m->msg, sizeof(m->msg), "S3 upload of %s failed: %s%s%s",
             m->files[m->next].rel, core_strerror(res->status), res->message[0] ? ": " : "",
             res->message);
    mirror_end(m);
    return;
  }
  m->next++;
  mirror_pump(m);
}

static void mirror_pump(struct mirror *m)
{
  while (m->next < m->n && m->files[m->next].skip)
    m->next++;
  if (m->next == m->n) {
    mirror_end(m);
    return;
  }
  struct mfile *f = &m->files[m->next];
  char key[S3_KEY_MAX + 1];
  if (store_s3_cnt_key(m->be, f->rel, key) < 0) {
    m->rc = CORE_ENAME;
    snprintf(m->msg, sizeof(m->msg), "S3 key for %s is too long", f->rel);
    mirror_end(m);
    return;
  }
  store_s3_put(m->be, key, f->data, f->len, 0, f->h.sha256_hex, f->h.md5_b64, on_mirror_put, m);
}

static void mirror_done(struct core_job *j, int status)
{
  struct mirror *m = (struct mirror *)j;
  if (status < 0 && m->rc == 0) {
    m->rc = status;
    snprintf(m->msg, sizeof(m->msg), "%s", core_strerror(status));
  }
  if (m->rc < 0) {
    mirror_end(m);
    return;
  }
  mirror_pump(m);
}

/* `srcs` (may be NULL, or hold NULLs): where to read each file locally. */
static void mirror_start(struct store_datastore *ds, const char *const *rels,
                         const char *const *srcs, size_t n, unsigned flags, store_s3_done_cb cb,
                         void *arg)
{
  struct mirror *m = core_new(struct mirror);
  m->ds = ds;
  m->be = ds->backend;
  m->flags = flags;
  m->cb = cb;
  m->arg = arg;
  m->n = n;
  m->files = core_calloc(n ? n : 1, sizeof(*m->files));
  for (size_t i = 0; i < n; i++) {
    m->files[i].rel = core_strdup(rels[i]);
    if (srcs != NULL && srcs[i] != NULL)
      m->files[i].src = core_strdup(srcs[i]);
  }
  int rc = core_job_submit(m->be->loop, &m->job, mirror_run, mirror_done);
  if (rc < 0)
    mirror_done(&m->job, rc);
}

void store_s3_mirror(struct store_datastore *ds, const char *const *rels, size_t n,
                     unsigned flags, store_s3_done_cb cb, void *arg)
{
  mirror_start(ds, rels, NULL, n, flags, cb, arg);
}

void store_s3_mirror_snapshot(struct store_datastore *ds, const char *ns, const char *type,
                              const char *id, int64_t time, const char *manifest_src,
                              store_s3_done_cb cb, void *arg)
{
  char path[STORE_PATH_MAX], group[STORE_PATH_MAX], snap[STORE_PATH_MAX];
  char *rels[24], *src = NULL;
  const char *srcs[24] = {NULL};
  size_t n = 0;
  /* Namespace markers, outermost first. */
  for (const char *p = ns; *p && n < 8;) {
    const char *slash = strchr(p, '/');
    size_t len = slash ? (size_t)(slash - ns) : strlen(ns);
    char sub[STORE_PATH_MAX];
    snprintf(sub, sizeof(sub), "%.*s", (int)len, ns);
    if (store_path_ns(path, sizeof(path), NULL, sub) > 0)
      rels[n++] = core_asprintf("%s/%s", path, NS_MARKER);
    p = slash ? slash + 1 : p + strlen(p);
  }
  if (store_path_group(group, sizeof(group), NULL, ns, type, id) < 0 ||
      store_path_snapshot(snap, sizeof(snap), NULL, ns, type, id, time) < 0) {
    for (size_t i = 0; i < n; i++)
      core_free(rels[i]);
    cb(arg, CORE_ENAME, "invalid snapshot name");
    return;
  }
  rels[n++] = core_asprintf("%s/%s", group, STORE_OWNER_FILE);
  rels[n++] = core_asprintf("%s/%s", group, STORE_NOTES_FILE);
  rels[n++] = core_asprintf("%s/%s", snap, STORE_PROTECTED_FILE);
  if (manifest_src != NULL)
    srcs[n] = src = core_asprintf("%s/%s", snap, manifest_src);
  rels[n++] = core_asprintf("%s/index.json.blob", snap);
  mirror_start(ds, (const char *const *)rels, srcs, n, STORE_S3_OPTIONAL, cb, arg);
  for (size_t i = 0; i < n; i++)
    core_free(rels[i]);
  core_free(src);
}

/* ---- unmirror ---------------------------------------------------------- */

struct unmirror {
  struct store_backend *be;
  char key[S3_KEY_MAX + 1];      /* <store>/.cnt/<rel> */
  char prefix[S3_KEY_MAX + 2];   /* ... plus '/' */
  int recursive;
  unsigned pages;
  char **keys;                   /* the page being deleted */
  size_t nkeys;
  store_s3_done_cb cb;
  void *arg;
};

static void um_end(struct unmirror *u, int rc, const char *msg)
{
  for (size_t i = 0; i < u->nkeys; i++)
    core_free(u->keys[i]);
  core_free(u->keys);
  u->cb(u->arg, rc, msg);
  core_free(u);
}

static void um_list(struct unmirror *u);

static void on_um_key(const struct s3_result *res, void *arg)
{
  struct unmirror *u = arg;
  if (res->status < 0 && res->status != CORE_ENOTFOUND)
    um_end(u, res->status, res->message[0] ? res->message : core_strerror(res->status));
  else
    um_end(u, 0, NULL);
}

static void um_key(struct unmirror *u)
{
  const char *k = u->key;
  for (size_t i = 0; i < u->nkeys; i++)
    core_free(u->keys[i]);
  u->nkeys = 0;
  store_s3_delete(u->be, &k, 1, on_um_key, u);
}

static void on_um_delete(const struct s3_result *res, void *arg)
{
  struct unmirror *u = arg;
  if (res->status < 0) {
    um_end(u, res->status, res->message[0] ? res->message : core_strerror(res->status));
    return;
  }
  for (size_t i = 0; i < u->nkeys; i++)
    core_free(u->keys[i]);
  u->nkeys = 0;
  um_list(u);
}

static void on_um_list(const struct s3_result *res, void *arg)
{
  struct unmirror *u = arg;
  if (res->status < 0) {
    um_end(u, res->status, res->message[0] ? res->message : core_strerror(res->status));
    return;
  }
  const struct s3_list_result *l = res->list;
  if (l == NULL || l->n == 0 || ++u->pages > UNMIRROR_MAX_PAGES) {
    um_key(u);
    return;
  }
  u->keys = core_realloc(u->keys, l->n * sizeof(char *));
  for (size_t i = 0; i < l->n; i++)
    u->keys[i] = core_strdup(l->objects[i].key);
  u->nkeys = l->n;
  store_s3_delete(u->be, (const char *const *)u->keys, u->nkeys, on_um_delete, u);
}

/* Deleted keys vanish from listings, so every round lists from the start. */
static void um_list(struct unmirror *u)
{
  store_s3_list(u->be, u->prefix, NULL, on_um_list, u);
}

void store_s3_unmirror(struct store_datastore *ds, const char *rel, int recursive,
                       store_s3_done_cb cb, void *arg)
{
  struct unmirror *u = core_new(struct unmirror);
  u->be = ds->backend;
  u->recursive = recursive;
  u->cb = cb;
  u->arg = arg;
  if (store_s3_cnt_key(u->be, rel, u->key) < 0 || strlen(u->key) + 1 > S3_KEY_MAX) {
    core_free(u);
    cb(arg, CORE_ENAME, "S3 key too long");
    return;
  }
  snprintf(u->prefix, sizeof(u->prefix), "%s/", u->key);
  if (recursive)
    um_list(u);
  else
    um_key(u);
}

static void forgot(void *arg, int err, const char *msg)
{
  struct store_datastore *ds = arg;
  if (err < 0)
    core_warn("datastore %s: a removed snapshot is still in the bucket: %s (an S3 refresh "
              "would list it again until it is removed)", ds->name, msg ? msg : "");
  store_datastore_unref(ds);
}

void store_s3_forget_snapshot(struct store_datastore *ds, const char *ns, const char *type,
                              const char *id, int64_t time)
{
  char rel[STORE_PATH_MAX];
  if (!store_datastore_is_s3(ds) ||
      store_path_snapshot(rel, sizeof(rel), NULL, ns, type, id, time) < 0)
    return;
  store_datastore_ref(ds);
  store_s3_unmirror(ds, rel, 1, forgot, ds);
}
