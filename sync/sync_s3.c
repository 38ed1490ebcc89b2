/* sync_s3.c: a pull into an S3-backed datastore. The chunk upload and the
 * metadata mirror of store_s3.h are loop-side state machines; an engine
 * thread reaches them through sync__loop_call and waits for their answer,
 * so chunks take exactly the backup path (claims against GC, If-None-Match,
 * the cache insert after the bucket's 200) and a snapshot is finished in the
 * bucket only once its manifest is there, last. */
#include "sync/sync.h"

#include "core/core_error.h"
#include "store/store_registry.h"
#include "store/store_s3.h"

#include <stdio.h>
#include <string.h>

static void call_cb(void *arg, int err, const char *msg)
{
  sync__loop_done(arg, err, msg);
}

/* Every call below: run `c` on the loop and wait; a failure is described in
 * err as "<what>: <the loop side's message or the code's text>". */
static int call(struct sync_engine *e, struct sync_loop_call *c, const char *what, char *err,
                size_t errlen)
{
  int rc = sync__loop_call(e, c);
  if (rc < 0)
    snprintf(err, errlen, "%s: %s", what, c->msg[0] ? c->msg : core_strerror(rc));
  return rc;
}

/* ---- chunk ---- */

struct chunk_call {
  struct sync_loop_call c;      /* first */
  const uint8_t *digest;
  uint64_t size;
  void *data;
  size_t len;
};

static void chunk_cb(void *arg, int err, int duplicate, const char *msg)
{
  (void)duplicate;
  sync__loop_done(arg, err, msg);
}

static void chunk_fn(struct sync_loop_call *c)
{
  struct chunk_call *k = (struct chunk_call *)c;
  /* no_cache: a bulk copy would only push a restore's chunks out of the
   * cache; the 0-byte marker still tells later uploads the bucket has it. */
  store_s3_chunk_upload(c->ds, k->digest, k->size, k->data, k->len, 1, chunk_cb, c);
}

int sync__s3_chunk(struct sync_engine *e, const uint8_t digest[32], uint64_t size, void *data,
                   size_t len, char *err, size_t errlen)
{
  struct chunk_call k;
  memset(&k, 0, sizeof(k));
  k.c.fn = chunk_fn;
  k.digest = digest;
  k.size = size;
  k.data = data;
  k.len = len;
  return call(e, &k.c, "S3 upload", err, errlen);
}

/* ---- mirror ---- */

struct mirror_call {
  struct sync_loop_call c;
  const char *const *abs;
  size_t n;
  const char *rels[64];
  const char *ns, *type, *id;
  int64_t time;
  const char *manifest_src;     /* the snapshot's manifest file (NULL: index.json.blob) */
  const char *one;              /* unmirror */
};

static void mirror_fn(struct sync_loop_call *c)
{
  struct mirror_call *m = (struct mirror_call *)c;
  for (size_t i = 0; i < m->n; i++)
    m->rels[i] = store_s3_rel(c->ds, m->abs[i]);
  store_s3_mirror(c->ds, m->rels, m->n, 0, call_cb, c);
}

int sync__s3_mirror(struct sync_engine *e, const char *const *abs_paths, size_t n, char *err,
                    size_t errlen)
{
  for (size_t done = 0; done < n;) {
    struct mirror_call m;
    memset(&m, 0, sizeof(m));
    m.c.fn = mirror_fn;
    m.abs = abs_paths + done;
    m.n = n - done < 64 ? n - done : 64;
    int rc = call(e, &m.c, "S3 mirror", err, errlen);
    if (rc < 0)
      return rc;
    done += m.n;
  }
  return 0;
}

static void snapshot_fn(struct sync_loop_call *c)
{
  struct mirror_call *m = (struct mirror_call *)c;
  store_s3_mirror_snapshot(c->ds, m->ns, m->type, m->id, m->time, m->manifest_src, call_cb, c);
}

int sync__s3_mirror_snapshot(struct sync_engine *e, const char *ns, const char *type,
                             const char *id, int64_t time, const char *manifest_src, char *err,
                             size_t errlen)
{
  struct mirror_call m;
  memset(&m, 0, sizeof(m));
  m.c.fn = snapshot_fn;
  m.ns = ns;
  m.type = type;
  m.id = id;
  m.time = time;
  m.manifest_src = manifest_src;
  return call(e, &m.c, "S3 mirror", err, errlen);
}

static void unmirror_fn(struct sync_loop_call *c)
{
  struct mirror_call *m = (struct mirror_call *)c;
  store_s3_unmirror(c->ds, store_s3_rel(c->ds, m->one), 1, call_cb, c);
}

int sync__s3_unmirror(struct sync_engine *e, const char *abs_path, char *err, size_t errlen)
{
  struct mirror_call m;
  memset(&m, 0, sizeof(m));
  m.c.fn = unmirror_fn;
  m.one = abs_path;
  return call(e, &m.c, "S3 unmirror", err, errlen);
}
