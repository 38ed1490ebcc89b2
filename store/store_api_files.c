/* store_api_files.c: a snapshot's files, its catalog and its notes, under
 * /api2/json/admin/datastore/{store}/ with PBS's paths and JSON shapes:
 *
 *   GET files       the snapshot's files with size and crypt mode
 *   GET catalog     the children of `filepath` (base64) in a directory
 *                   archive's catalog: [{filepath, text, type, leaf, size, mtime}]
 *   GET/PUT notes        snapshot notes, in the manifest's unprotected part
 *   GET/PUT group-notes  group notes, in the group's `notes` file
 *
 * Privileges are those of reading a snapshot (PBS's): Datastore.Read, or
 * Datastore.Backup on a group the caller owns; notes are listed with
 * Datastore.Audit and changed with Datastore.Modify, or with
 * Datastore.Backup as the owner. Every request is one pool job (manifest and
 * catalog reads, blob decoding and the JSON rendering), never loop work.
 */
#include "store/store_api.h"
#include "store/store_access.h"
#include "access/access.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_job.h"
#include "core/core_json.h"
#include "core/core_utf8.h"
#include "format/format_blob.h"
#include "format/format_catalog.h"
#include "format/format_manifest.h"
#include "format/format_name.h"
#include "store/store_lock.h"
#include "store/store_path.h"
#include "store/store_chunk.h"
#include "store/store_s3.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NOTES_MAX (64u * 1024)          /* bytes of notes text */
#define MANIFEST_MAX (16u * 1024 * 1024) /* as the backup finish reads it */
#define GROUP_NOTES_FILE "notes"         /* PBS's name, in the group directory */
#define CATALOG_ANSWER_MAX (64u * 1024 * 1024)

enum files_op { OP_FILES, OP_CATALOG, OP_NOTES_GET, OP_NOTES_SET, OP_GNOTES_GET, OP_GNOTES_SET };

struct files_job {
  struct core_job job;
  struct http_request *req;
  struct store_api *api;
  struct store_datastore *ds;
  enum files_op op;
  char *ns, *type, *id, *archive, *notes;
  char *filepath; /* decoded, within the archive; "" for its root */
  int64_t time;
  int rc;
  int status;     /* an HTTP status for a refusal, else 0 */
  char err[256];
  struct core_buf out;
  char rel[4096]; /* a file changed, relative to the datastore (S3 mirroring) */
  struct store__api_catalog_miss miss; /* S3: a catalog chunk to fetch first */
  unsigned retries;
};

static int is_write(enum files_op op)
{
  return op == OP_NOTES_SET || op == OP_GNOTES_SET;
}

/* ---- base64 (the catalog API's filepath) ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64_encode(const char *in, size_t len, struct core_buf *out)
{
  for (size_t i = 0; i < len; i += 3) {
    uint32_t v = (uint32_t)(uint8_t)in[i] << 16;
    if (i + 1 < len)
      v |= (uint32_t)(uint8_t)in[i + 1] << 8;
    if (i + 2 < len)
      v |= (uint8_t)in[i + 2];
    char q[4] = {b64[(v >> 18) & 63], b64[(v >> 12) & 63],
                 i + 1 < len ? b64[(v >> 6) & 63] : '=', i + 2 < len ? b64[v & 63] : '='};
    core_buf_append(out, q, 4);
  }
}

/* Decodes standard base64 (padding optional). Returns the new string
 * (core_free) or NULL when malformed or holding a NUL. */
static char *b64_decode(const char *s)
{
  size_t n = strlen(s), o = 0;
  char *out;
  uint32_t acc = 0;
  int bits = 0;
  while (n > 0 && s[n - 1] == '=')
    n--;
  if (n % 4 == 1 || n > 4 * FORMAT_CATALOG_PATH_MAX)
    return NULL;
  out = core_malloc(n * 3 / 4 + 1);
  for (size_t i = 0; i < n; i++) {
    const char *p = strchr(b64, s[i]);
    if (p == NULL || s[i] == '\0') {
      core_free(out);
      return NULL;
    }
    acc = (acc << 6) | (uint32_t)(p - b64);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (char)((acc >> bits) & 0xff);
    }
  }
  out[o] = '\0';
  if (memchr(out, '\0', o) != NULL) {
    core_free(out);
    return NULL;
  }
  return out;
}

const char *store__api_snapshot_params(struct http_request *req, int64_t *time)
{
  const char *ns = http_req_param(req, "ns");
  const char *type = http_req_param(req, "backup-type");
  const char *id = http_req_param(req, "backup-id");
  if (ns && format_name_ns(ns) < 0)
    return "invalid namespace";
  if (type == NULL || format_name_backup_type(type) < 0)
    return "backup-type must be vm, ct or host";
  if (id == NULL || format_name_backup_id(id) < 0)
    return "invalid or missing backup-id";
  if (time == NULL)
    return NULL;
  const char *time_s = http_req_param(req, "backup-time");
  char *end = NULL;
  long long t = time_s ? strtoll(time_s, &end, 10) : -1;
  *time = t;
  if (time_s == NULL || *time_s == '\0' || *end || t < 0 || t > FORMAT_NAME_TIME_MAX)
    return "invalid or missing backup-time";
  return NULL;
}

char *store__api_filepath(const char *b64path)
{
  char *p = b64_decode(b64path), *q;
  size_t n;
  if (p == NULL)
    return NULL;
  for (q = p; *q == '/'; q++)
    ;
  memmove(p, q, strlen(q) + 1);
  n = strlen(p);
  while (n > 0 && p[n - 1] == '/')
    p[--n] = '\0';
  if (n > 0 && !format_catalog_safe_path(p, n)) {
    core_free(p);
    return NULL;
  }
  return p;
}

/* ---- pool side ---- */

static int load_manifest(struct files_job *f, const char *base, struct format_manifest *m,
                         char *path, size_t pathlen)
{
  uint8_t *raw = NULL;
  size_t len = 0;
  int rc = store_path_file(path, pathlen, base, f->ns, f->type, f->id, f->time,
                           FORMAT_MANIFEST_NAME);
  if (rc < 0)
    return rc;
  memset(m, 0, sizeof(*m));
  if ((rc = core_file_read(path, MANIFEST_MAX, &raw, &len)) < 0) {
    if (rc == -ENOENT || rc == CORE_ENOTFOUND) {
      snprintf(f->err, sizeof(f->err), "no such snapshot (or it is unfinished)");
      rc = CORE_ENOTFOUND;
    }
    return rc;
  }
  rc = format_manifest_decode_blob(NULL, raw, len, m);
  core_free(raw);
  if (rc < 0) {
    format_manifest_free(m);
    snprintf(f->err, sizeof(f->err), "the snapshot's manifest is damaged");
  }
  return rc;
}

static void run_files(struct files_job *f, const struct format_manifest *m, struct core_json *j)
{
  core_json_arr_open(j);
  for (size_t i = 0; i < m->nfiles; i++) {
    core_json_obj_open(j);
    core_json_kv_str(j, "filename", m->files[i].filename);
    core_json_kv_uint(j, "size", m->files[i].size);
    core_json_kv_str(j, "crypt-mode", format_crypt_mode_name(m->files[i].crypt_mode));
    core_json_obj_close(j);
  }
  /* the manifest itself, as PBS lists it */
  core_json_obj_open(j);
  core_json_kv_str(j, "filename", FORMAT_MANIFEST_NAME);
  core_json_kv_str(j, "crypt-mode", m->signature ? "sign-only" : "none");
  core_json_obj_close(j);
  core_json_arr_close(j);
  (void)f;
}

static const char *pbs_type(uint8_t t)
{
  switch (t) {
  case FORMAT_CATALOG_DIR: return "d";
  case FORMAT_CATALOG_SYMLINK: return "l";
  case FORMAT_CATALOG_HARDLINK: return "h";
  case FORMAT_CATALOG_CHR: return "c";
  case FORMAT_CATALOG_BLK: return "b";
  case FORMAT_CATALOG_FIFO: return "p";
  case FORMAT_CATALOG_SOCK: return "s";
  default: return "f";
  }
}

/* The children of f->filepath in the archive's catalog. */
static int run_catalog(struct files_job *f, const char *base, const struct format_manifest *m,
                       struct core_json *j)
{
  const struct format_manifest_file *mf = format_manifest_find_file(m, f->archive);
  uint8_t *plain = NULL;
  struct format_catalog cat;
  struct format_catalog_iter *it = NULL;
  struct format_catalog_entry e;
  struct core_buf fp;
  int rc;

  if (mf == NULL)
    rc = CORE_ENOTFOUND;
  else
    rc = store__api_catalog_open(f->ds, base, f->ns, f->type, f->id, f->time, m, f->archive,
                                 &cat, &plain, &f->miss);
  if (rc == CORE_ENOTFOUND) {
    snprintf(f->err, sizeof(f->err), "the snapshot has no catalog for '%s'", f->archive);
    return CORE_ENOTFOUND;
  }
  if (rc == CORE_ECRYPTO) {
    f->status = 400;
    snprintf(f->err, sizeof(f->err), "'%s' is encrypted: its catalog can only be read by a "
             "client with the key", f->archive);
    return CORE_ECRYPTO;
  }
  if (rc == CORE_EFORMAT) {
    snprintf(f->err, sizeof(f->err), "the catalog of '%s' is damaged", f->archive);
    return CORE_EFORMAT;
  }
  if (rc < 0)
    return rc;

  it = core_new(struct format_catalog_iter);
  const char *dir = f->filepath[0] ? f->filepath : ".";
  rc = format_catalog_lookup(&cat, it, dir, &e);
  if (rc <= 0 || e.type != FORMAT_CATALOG_DIR) {
    f->status = rc < 0 ? 500 : 404;
    snprintf(f->err, sizeof(f->err), rc == 0 ? "no such directory in the archive"
                                     : rc < 0 ? "the catalog is damaged"
                                              : "not a directory");
    if (rc == 1)
      f->status = 400;
    rc = rc < 0 ? rc : CORE_ENOTFOUND;
    goto out;
  }
  char *prefix = f->filepath[0] ? core_asprintf("%s/", f->filepath) : core_strdup("");
  size_t plen2 = strlen(prefix);
  core_buf_init(&fp, 4 * FORMAT_CATALOG_PATH_MAX);
  core_json_arr_open(j);
  rc = format_catalog_children(it, &cat, prefix, plen2);
  while (rc >= 0 && (rc = format_catalog_next_child(it, prefix, plen2, &e)) > 0) {
    char *full = core_asprintf("/%s", e.path);
    core_buf_reset(&fp);
    b64_encode(full, strlen(full), &fp);
    core_free(full);
    core_json_obj_open(j);
    core_json_kv_str(j, "filepath", fp.base ? fp.base : "");
    core_json_key(j, "text");
    core_json_strn(j, e.path + plen2, e.path_len - plen2);
    core_json_kv_str(j, "type", pbs_type(e.type));
    core_json_kv_bool(j, "leaf", e.type != FORMAT_CATALOG_DIR);
    if (e.type == FORMAT_CATALOG_FILE)
      core_json_kv_uint(j, "size", e.size);
    core_json_kv_int(j, "mtime", e.mtime);
    core_json_obj_close(j);
  }
  core_json_arr_close(j);
  core_buf_free(&fp);
  core_free(prefix);
  if (rc < 0) {
    snprintf(f->err, sizeof(f->err), "the catalog is damaged");
    rc = CORE_EFORMAT;
  }
out:
  core_free(it);
  format_catalog_close(&cat);
  core_free(plain);
  return rc;
}

/* notes as a JSON string value from the manifest ("" when none). */
static void notes_json(const struct format_manifest *m, struct core_json *j)
{
  char *v = format_manifest_unprotected_get(m, "notes");
  yajl_val tree = NULL;
  char perr[64];
  if (v && core_json_parse(v, strlen(v), &tree, perr, sizeof(perr)) == 0 && YAJL_IS_STRING(tree))
    core_json_str(j, YAJL_GET_STRING(tree));
  else
    core_json_str(j, "");
  if (tree)
    yajl_tree_free(tree);
  core_free(v);
}

static int set_notes(struct files_job *f, const char *base, const char *lockdir)
{
  struct store_lock_guard g = STORE_LOCK_GUARD_INIT;
  struct format_manifest m;
  struct core_json v;
  char path[STORE_PATH_MAX];
  uint8_t *blob = NULL;
  size_t blen = 0, vlen;
  int rc = store_lock_manifest(lockdir, f->ns, f->type, f->id, f->time, &g);
  if (rc < 0)
    return rc;
  if ((rc = load_manifest(f, base, &m, path, sizeof(path))) < 0)
    goto out_unlock;
  core_json_init(&v, 0);
  core_json_str(&v, f->notes);
  const char *text = core_json_text(&v, &vlen);
  rc = format_manifest_unprotected_set(&m, "notes", text, vlen);
  core_json_free(&v);
  if (rc == 0)
    rc = format_manifest_encode_blob(&m, NULL, &blob, &blen);
  if (rc == 0)
    rc = core_file_replace(path, blob, blen, 0644, 1);
  if (rc == 0)
    store_path_file(f->rel, sizeof(f->rel), NULL, f->ns, f->type, f->id, f->time,
                    FORMAT_MANIFEST_NAME);
  core_free(blob);
  format_manifest_free(&m);
out_unlock:
  store_lock_release(&g);
  return rc;
}

static int group_notes(struct files_job *f, const char *base, const char *lockdir,
                       struct core_json *j)
{
  char dir[STORE_PATH_MAX], path[STORE_PATH_MAX + 16];
  struct store_lock_guard g = STORE_LOCK_GUARD_INIT;
  struct stat sb;
  uint8_t *text = NULL;
  size_t len = 0;
  int rc = store_path_group(dir, sizeof(dir), base, f->ns, f->type, f->id);
  if (rc < 0)
    return rc;
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    snprintf(f->err, sizeof(f->err), "no such group");
    return CORE_ENOTFOUND;
  }
  snprintf(path, sizeof(path), "%s/%s", dir, GROUP_NOTES_FILE);
  if (f->op == OP_GNOTES_GET) {
    rc = core_file_read(path, NOTES_MAX * 4, &text, &len);
    if (rc == -ENOENT || rc == CORE_ENOTFOUND) {
      core_json_str(j, "");
      return 0;
    }
    if (rc < 0)
      return rc;
    core_json_strn(j, (const char *)text, len);
    core_free(text);
    return 0;
  }
  if ((rc = store_lock_group(lockdir, f->ns, f->type, f->id, STORE_LOCK_SHARED, &g)) < 0)
    return rc;
  rc = core_file_replace(path, f->notes, strlen(f->notes), 0644, 1);
  store_lock_release(&g);
  if (rc == 0) {
    char rel[STORE_PATH_MAX];
    if (store_path_group(rel, sizeof(rel), NULL, f->ns, f->type, f->id) >= 0 &&
        strlen(rel) + sizeof(GROUP_NOTES_FILE) + 1 < sizeof(f->rel))
      snprintf(f->rel, sizeof(f->rel), "%.4000s/%s", rel, GROUP_NOTES_FILE);
    core_json_null(j);
  }
  return rc;
}

static void files_run(struct core_job *job)
{
  struct files_job *f = (struct files_job *)job;
  const char *base = f->ds->path;
  struct format_manifest m;
  char lockdir[1024], path[STORE_PATH_MAX];
  struct core_json j;
  int rc, have_m = 0;

  core_json_init(&j, 0);
  rc = store_lock_dir(lockdir, sizeof(lockdir), f->api->run_dir, f->ds->name);
  if (rc < 0)
    goto out;
  rc = 0;
  switch (f->op) {
  case OP_FILES:
  case OP_CATALOG:
  case OP_NOTES_GET:
    if ((rc = load_manifest(f, base, &m, path, sizeof(path))) < 0)
      break;
    have_m = 1;
    if (f->op == OP_FILES)
      run_files(f, &m, &j);
    else if (f->op == OP_CATALOG)
      rc = run_catalog(f, base, &m, &j);
    else
      notes_json(&m, &j);
    break;
  case OP_NOTES_SET:
    rc = set_notes(f, base, lockdir);
    if (rc == 0)
      core_json_null(&j);
    break;
  case OP_GNOTES_GET:
  case OP_GNOTES_SET:
    rc = group_notes(f, base, lockdir, &j);
    break;
  }
  if (have_m)
    format_manifest_free(&m);
out:
  if (rc == CORE_ELOCKED && f->err[0] == '\0')
    snprintf(f->err, sizeof(f->err), "busy: another operation holds the lock");
  if (rc >= 0) {
    size_t len;
    const char *text = core_json_text(&j, &len);
    if (core_buf_append(&f->out, text, len) < 0) {
      rc = CORE_ETOOBIG;
      snprintf(f->err, sizeof(f->err), "the answer is too large");
    }
  }
  core_json_free(&j);
  f->rc = rc < 0 ? rc : 0;
  if (f->miss.have)
    f->rc = -EAGAIN; /* whatever the reading made of it: fetch and run again */
}

/* ---- loop side ---- */

static void files_free(struct files_job *f)
{
  core_buf_free(&f->out);
  core_free(f->ns);
  core_free(f->type);
  core_free(f->id);
  core_free(f->archive);
  core_free(f->notes);
  core_free(f->filepath);
  core_free(f);
}

static void files_finish(struct files_job *f, int rc)
{
  if (rc == 0 && is_write(f->op) && f->api->access)
    store_access_audit(f->api->access, f->req, "changed the %s of store=%s ns=%s group=%s/%s",
                       f->op == OP_NOTES_SET ? "notes" : "group notes", f->ds->name,
                       f->ns[0] ? f->ns : "/", f->type, f->id);
  if (rc < 0)
    http_respond_error(f->req, f->status ? f->status : http_status_for(rc), "%s",
                       f->err[0] ? f->err : core_strerror(rc));
  else
    http_respond_data(f->req, f->out.base, f->out.len);
  store_release(f->ds, is_write(f->op) ? STORE_OP_WRITE : STORE_OP_READ);
  files_free(f);
}

static void mirror_done(void *arg, int err, const char *msg)
{
  struct files_job *f = arg;
  if (err < 0) {
    http_respond_error(f->req, 502, "changed locally, but the bucket copy was not updated: %s",
                       msg ? msg : core_strerror(err));
    store_release(f->ds, STORE_OP_WRITE);
    files_free(f);
    return;
  }
  files_finish(f, 0);
}

static void files_done(struct core_job *job, int status);

static void *miss_get(void *ctx, size_t len, size_t *cap)
{
  (void)ctx;
  *cap = len;
  return core_try_malloc(len ? len : 1);
}

static void miss_put(void *ctx, void *buf, size_t cap)
{
  (void)ctx;
  (void)cap;
  core_free(buf);
}

/* A catalog chunk the S3 cache lacked is there now (or not): run again. */
static void miss_fetched(void *arg, int err, uint8_t *data, size_t len, size_t cap)
{
  struct files_job *f = arg;
  (void)len;
  (void)cap;
  core_free(data); /* the read put it into the cache, where the job reads it */
  if (err < 0) {
    snprintf(f->err, sizeof(f->err), "a chunk of the catalog of '%s' cannot be read: %s",
             f->archive, core_strerror(err));
    files_finish(f, err);
    return;
  }
  f->miss.have = 0;
  f->rc = 0;
  f->status = 0;
  f->err[0] = '\0';
  core_buf_reset(&f->out);
  int rc = core_job_submit(f->api->loop, &f->job, files_run, files_done);
  if (rc < 0)
    files_finish(f, rc);
}

static void files_done(struct core_job *job, int status)
{
  struct files_job *f = (struct files_job *)job;
  int rc = status < 0 ? status : f->rc;
  if (rc == -EAGAIN && f->miss.have && f->retries++ < STORE_API_CATALOG_RETRIES) {
    static const struct store_chunk_alloc alloc = {miss_get, miss_put, NULL};
    store_s3_chunk_read(f->ds, f->miss.digest, &alloc, miss_fetched, f);
    return;
  }
  if (rc == 0 && is_write(f->op) && f->rel[0] && store_datastore_is_s3(f->ds)) {
    const char *rels[1] = {f->rel};
    store_s3_mirror(f->ds, rels, 1, 0, mirror_done, f);
    return;
  }
  files_finish(f, rc);
}

static void files_lookup(void *arg, int err, struct store_datastore *ds)
{
  struct files_job *f = arg;
  if (err) {
    store_api_lookup_error(f->req, http_req_param(f->req, "store"), err, ds);
    files_free(f);
    return;
  }
  f->ds = ds;
  int rc = core_job_submit(f->api->loop, &f->job, files_run, files_done);
  if (rc < 0) {
    f->rc = rc;
    files_done(&f->job, rc);
  }
}

/* The notes text from the body ({"notes": "..."}) or the `notes` parameter. */
static const char *notes_param(struct http_request *req, yajl_val *tree)
{
  const char *v = http_req_param(req, "notes");
  *tree = NULL;
  if (v == NULL) {
    struct core_slice body = http_req_body(req);
    char perr[64];
    if (body.base && body.len > 0 &&
        core_json_parse(body.base, body.len, tree, perr, sizeof(perr)) == 0)
      v = core_json_get_str(*tree, "notes");
  }
  return v;
}

static void start(struct http_request *req, struct store_api *api, enum files_op op)
{
  if (store_api_check_store(req, http_req_param(req, "store")) < 0)
    return;
  struct files_job *f = core_new(struct files_job);
  const char *ns = http_req_param(req, "ns");
  const char *type = http_req_param(req, "backup-type");
  const char *id = http_req_param(req, "backup-id");
  const char *msg = NULL;
  yajl_val tree = NULL;

  f->req = req;
  f->api = api;
  f->op = op;
  core_buf_init(&f->out, CATALOG_ANSWER_MAX);
  msg = store__api_snapshot_params(
      req, op != OP_GNOTES_GET && op != OP_GNOTES_SET ? &f->time : NULL);
  if (msg == NULL && op == OP_CATALOG) {
    const char *an = http_req_param(req, "archive-name");
    const char *fp = http_req_param(req, "filepath");
    if (an == NULL || format_name_archive(an) != FORMAT_ARCHIVE_DIDX) {
      msg = "archive-name must name a .didx archive";
    } else if (fp == NULL) {
      msg = "filepath (base64) is required";
    } else {
      if ((f->filepath = store__api_filepath(fp)) == NULL)
        msg = "filepath must be the base64 of a safe path in the archive";
      f->archive = core_strdup(an);
    }
  }
  if (msg == NULL && is_write(op)) {
    const char *notes = notes_param(req, &tree);
    if (notes == NULL)
      msg = "parameter 'notes' is required";
    else if (strlen(notes) > NOTES_MAX || !core_utf8_valid(notes, strlen(notes)))
      msg = "notes must be UTF-8 text of at most 64 KiB";
    else
      f->notes = core_strdup(notes);
  }
  if (tree)
    yajl_tree_free(tree);
  if (msg) {
    http_respond_error(req, 400, "%s", msg);
    files_free(f);
    return;
  }
  f->ns = core_strdup(ns ? ns : "");
  f->type = core_strdup(type);
  f->id = core_strdup(id);
  store_lookup(api->reg, http_req_param(req, "store"),
               is_write(op) ? STORE_OP_WRITE : STORE_OP_READ, files_lookup, f);
}

#define HANDLER(fn, op)                                                            \
  static void fn(struct http_request *req, void *ctx) { start(req, ctx, op); }

HANDLER(h_files, OP_FILES)
HANDLER(h_catalog, OP_CATALOG)
HANDLER(h_notes_get, OP_NOTES_GET)
HANDLER(h_notes_set, OP_NOTES_SET)
HANDLER(h_gnotes_get, OP_GNOTES_GET)
HANDLER(h_gnotes_set, OP_GNOTES_SET)

void store__api_files_register(struct http_server *s, struct store_api *api)
{
#define D "/api2/json/admin/datastore/{store}/"
#define READ_SNAP                                                                 \
  ACCESS_NEEDS_OR(ACCESS_PRIV_DATASTORE_READ, ACCESS_PRIV_DATASTORE_BACKUP, ACCESS_ON_NS, \
                  ACCESS_IF_GROUP_OWNER)
#define AUDIT_SNAP                                                                \
  ACCESS_NEEDS_OR(ACCESS_PRIV_DATASTORE_AUDIT, ACCESS_PRIV_DATASTORE_BACKUP, ACCESS_ON_NS, \
                  ACCESS_IF_GROUP_OWNER)
#define MODIFY_SNAP                                                               \
  ACCESS_NEEDS_OR(ACCESS_PRIV_DATASTORE_MODIFY, ACCESS_PRIV_DATASTORE_BACKUP, ACCESS_ON_NS, \
                  ACCESS_IF_GROUP_OWNER)
  const struct http_route routes[] = {
    {HTTP_METHOD_GET, D "files", h_files, api, 0, 0, READ_SNAP},
    {HTTP_METHOD_GET, D "catalog", h_catalog, api, 0, 0, READ_SNAP},
    {HTTP_METHOD_GET, D "notes", h_notes_get, api, 0, 0, AUDIT_SNAP},
    {HTTP_METHOD_PUT, D "notes", h_notes_set, api, 256 * 1024, 0, MODIFY_SNAP},
    {HTTP_METHOD_GET, D "group-notes", h_gnotes_get, api, 0, 0, AUDIT_SNAP},
    {HTTP_METHOD_PUT, D "group-notes", h_gnotes_set, api, 256 * 1024, 0, MODIFY_SNAP},
  };
#undef READ_SNAP
#undef AUDIT_SNAP
#undef MODIFY_SNAP
#undef D
  http_server_add_routes(s, routes, sizeof(routes) / sizeof(routes[0]));
}
