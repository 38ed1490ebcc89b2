/* client_restore.c: parallel, verified restore (see client_restore.h). */
#include "client/client_restore.h"

#include "client/client_api.h"
#include "client/client_archive.h"
#include "client/client_dwrite.h"
#include "client/client_pattern.h"
#include "client/client_progress.h"
#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_json.h"
#include "core/core_map.h"
#include "http/http_bodypool.h"
#include "format/format_blob.h"
#include "format/format_catalog.h"
#include "format/format_crypt.h"
#include "format/format_index.h"
#include "format/format_manifest.h"
#include "format/format_name.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#define DEFAULT_WORKERS 4
#define DEFAULT_BUDGET ((size_t)96 << 20)
/* Idle chunk buffers kept for reuse (http_bodypool.h: classes of 1 MiB). */
#define IDLE_BUFFERS ((size_t)64 << 20)

int client_snapshot_parse(const char *s, char **type, char **id, int64_t *time)
{
  const char *a = strchr(s, '/'), *b;
  char *end, *t = NULL, *i = NULL;
  *type = *id = NULL;
  if (a == NULL || (b = strchr(a + 1, '/')) == NULL)
    return CORE_ENAME;
  t = core_strndup(s, (size_t)(a - s));
  i = core_strndup(a + 1, (size_t)(b - a - 1));
  if (format_name_backup_type(t) < 0 || format_name_backup_id(i) < 0)
    goto bad;
  b++;
  if (format_name_time_parse(b, time) < 0) {
    long long v = strtoll(b, &end, 10);
    if (*b == '\0' || *end != '\0' || v <= 0)
      goto bad;
    *time = v;
  }
  *type = t;
  *id = i;
  return 0;
bad:
  core_free(t);
  core_free(i);
  return CORE_ENAME;
}

/* ---- Reader session ---- */

struct reader {
  struct client_api *api;
  char *sid;
};

static int reader_open(const struct client_restore_opts *o, struct reader *r, char *err,
                       size_t errlen)
{
  struct core_buf target;
  yajl_val tree, data;
  const char *s = NULL;
  int rc;

  r->api = o->api;
  r->sid = NULL;
  core_buf_init(&target, 2048);
  core_buf_printf(&target, "/api2/json/reader");
  client_query_add(&target, "store", client_api_store(o->api));
  if (o->ns && *o->ns)
    client_query_add(&target, "ns", o->ns);
  client_query_add(&target, "backup-type", o->backup_type);
  client_query_add(&target, "backup-id", o->backup_id);
  client_query_add_u64(&target, "backup-time", (uint64_t)o->backup_time);
  rc = client_api_json(o->api, "POST", target.base, NULL, 0, NULL, &tree, &data, err, errlen);
  core_buf_free(&target);
  if (rc < 0)
    return rc;
  if (data && YAJL_IS_STRING(data))
    s = YAJL_GET_STRING(data);
  else if (data && YAJL_IS_OBJECT(data))
    s = core_json_get_str(data, "id");
  if (s && *s && strlen(s) < 200 && !strpbrk(s, "/?&#% "))
    r->sid = core_strdup(s);
  yajl_tree_free(tree);
  if (r->sid == NULL) {
    snprintf(err, errlen, "the server returned no usable reader session id");
    return CORE_EPROTO;
  }
  return 0;
}

static void reader_close(struct reader *r)
{
  struct client_resp resp;
  char target[300];
  if (r->sid == NULL)
    return;
  snprintf(target, sizeof(target), "/api2/json/reader/%s", r->sid);
  if (client_api_call(r->api, "DELETE", target, NULL, 0, NULL, 0, &resp) == 0)
    client_resp_free(&resp);
  core_free(r->sid);
  r->sid = NULL;
}

static int reader_download(struct reader *r, const char *file, struct client_resp *resp,
                           char *err, size_t errlen)
{
  struct core_buf target;
  int rc;
  core_buf_init(&target, 1024);
  core_buf_printf(&target, "/api2/json/reader/%s/download", r->sid);
  client_query_add(&target, "file-name", file);
  rc = client_api_call(r->api, "GET", target.base, NULL, 0, NULL, (size_t)1 << 30, resp);
  if (rc < 0) {
    snprintf(err, errlen, "download of %s: %s", file, core_strerror(rc));
  } else if (resp->status != 200) {
    char msg[512];
    rc = client_api_status_error("GET", target.base, resp, msg, sizeof(msg));
    snprintf(err, errlen, "download of %s: %s", file, msg);
    client_resp_free(resp);
  }
  core_buf_free(&target);
  return rc;
}

/* ---- Parallel chunk fetch ---- */

struct fslot {
  void *mem;           /* a buffer of the fetch's pool holding the plaintext; owned */
  size_t cap;          /* its capacity */
  const uint8_t *data; /* the plaintext, inside mem */
  int ready;
  int repeat; /* the same chunk as the one before: takes over its buffer */
};

struct fetch {
  const struct client_restore_opts *o;
  struct reader *r;
  const struct format_index *idx;
  const uint64_t *plan; /* the chunks to fetch, in order; NULL: all of them */
  uint64_t n;           /* chunks to fetch */
  const char *archive;
  struct http_bodypool pool; /* responses and inflated chunks */
  uv_mutex_t mu;
  uv_cond_t cv; /* any state change */
  struct fslot *slots; /* one per chunk */
  uint64_t next_fetch; /* next chunk to hand to a worker */
  uint64_t next_read;  /* next chunk the consumer takes */
  size_t window;       /* bytes of chunks fetched or being fetched, not yet consumed */
  size_t budget;
  int stop;
  int err;
  char errmsg[768];
  uint64_t fetched;
  uint64_t repeated; /* chunks equal to the one before, not downloaded */
  uv_thread_t *threads;
  unsigned nthreads;
};

static uint64_t chunk_len(const struct format_index *idx, uint64_t i)
{
  uint64_t s, e;
  format_index_chunk_range(idx, i, &s, &e);
  return e - s;
}

/* The index position of the k-th chunk fetched. */
static uint64_t plan_at(const struct fetch *f, uint64_t k)
{
  return f->plan ? f->plan[k] : k;
}

static uint64_t plan_len(const struct fetch *f, uint64_t k)
{
  return chunk_len(f->idx, plan_at(f, k));
}

static void fetch_fail(struct fetch *f, int code, const char *msg)
{
  if (f->err == 0) {
    f->err = code;
    snprintf(f->errmsg, sizeof(f->errmsg), "%s", msg);
  }
  uv_cond_broadcast(&f->cv);
}

/* Downloads and verifies chunk `i` (`len` plaintext bytes by the index) into
 * a pool buffer, `slot` filled on success. An uncompressed chunk's plaintext
 * stays in the response buffer, a compressed one inflates into a second one.
 * Returns 0, or an error with the message in `msg`. */
static int fetch_chunk(struct fetch *f, struct format_blob_ctx *bctx, uint64_t i, uint64_t len,
                       struct fslot *slot, char *msg, size_t msglen)
{
  char hex[65], target[400];
  struct client_resp resp;
  uint8_t *spare = NULL, *plain = NULL;
  size_t spare_cap = 0, plen = 0;
  int rc, kind;

  i = plan_at(f, i);
  core_hex_encode(format_index_digest(f->idx, i), 32, hex);
  snprintf(target, sizeof(target), "/api2/json/reader/%s/chunk?digest=%s", f->r->sid, hex);
  rc = client_api_get_pooled(f->o->api, target, FORMAT_CHUNK_MAX_SIZE + FORMAT_BLOB_ENC_HDR_LEN,
                             &f->pool, &resp);
  if (rc < 0) {
    snprintf(msg, msglen, "%s: chunk %s: %s", f->archive, hex, core_strerror(rc));
    return rc;
  }
  if (resp.status != 200) {
    char m[512];
    rc = client_api_status_error("GET", target, &resp, m, sizeof(m));
    snprintf(msg, msglen, "%s: chunk %s: %s", f->archive, hex, m);
    goto out;
  }
  if (resp.pool == NULL) {
    rc = CORE_EPROTO; /* cairnd always announces a chunk's length */
    snprintf(msg, msglen, "%s: chunk %s: response without a length", f->archive, hex);
    goto out;
  }
  kind = format_blob_magic_kind(resp.body, resp.len);
  if (kind >= 0 && format_blob_kind_compressed((enum format_blob_kind)kind) &&
      (spare = http_bodypool_get(&f->pool, len, &spare_cap)) == NULL) {
    rc = -ENOMEM;
    snprintf(msg, msglen, "%s: chunk %s: out of memory", f->archive, hex);
    goto out;
  }
  rc = format_blob_decode_inplace(bctx, (uint8_t *)resp.body, resp.len, f->o->crypt,
                                 FORMAT_CHUNK_MAX_SIZE, format_index_digest(f->idx, i), spare,
                                 spare_cap, &plain, &plen);
  if (rc == CORE_ECRYPTO && f->o->crypt == NULL) {
    snprintf(msg, msglen, "%s: chunk %s is encrypted: a key is needed (--keyfile)", f->archive,
             hex);
  } else if (rc < 0) {
    snprintf(msg, msglen, "%s: chunk %s is damaged: %s", f->archive, hex, core_strerror(rc));
  } else if (plen != len) {
    snprintf(msg, msglen, "%s: chunk %s has %zu bytes, the index says %llu", f->archive, hex,
             plen, (unsigned long long)len);
    rc = CORE_EFORMAT;
  } else if (spare) {
    slot->mem = spare;
    slot->cap = spare_cap;
    slot->data = plain;
    spare = NULL;
  } else {
    slot->mem = resp.body; /* taken over from the response */
    slot->cap = resp.cap;
    slot->data = plain;
    resp.body = NULL;
    resp.pool = NULL;
  }
out:
  if (spare)
    http_bodypool_put(&f->pool, spare, spare_cap);
  client_resp_free(&resp);
  return rc;
}

static void fetch_worker(void *arg)
{
  struct fetch *f = arg;
  struct format_blob_ctx bctx;
  format_blob_ctx_init(&bctx);

  for (;;) {
    struct fslot got = {0};
    char msg[768];
    uint64_t i, len;
    int rc;

    uv_mutex_lock(&f->mu);
    for (;;) {
      if (f->stop || f->err || f->next_fetch == f->n) {
        uv_mutex_unlock(&f->mu);
        goto out;
      }
      len = plan_len(f, f->next_fetch);
      if (f->window == 0 || f->window + len <= f->budget)
        break;
      uv_cond_wait(&f->cv, &f->mu);
    }
    i = f->next_fetch++;
    f->window += len;
    if (i > 0 && plan_len(f, i - 1) == len &&
        memcmp(format_index_digest(f->idx, plan_at(f, i)),
               format_index_digest(f->idx, plan_at(f, i - 1)), 32) == 0) {
      /* A run of one chunk (zeros in a disk image, mostly): the consumer
       * hands the previous buffer on; nothing to download or check again. */
      f->slots[i].repeat = 1;
      f->slots[i].ready = 1;
      f->repeated++;
      uv_cond_broadcast(&f->cv);
      uv_mutex_unlock(&f->mu);
      continue;
    }
    uv_mutex_unlock(&f->mu);

    rc = fetch_chunk(f, &bctx, i, len, &got, msg, sizeof(msg));

    uv_mutex_lock(&f->mu);
    if (rc < 0) {
      fetch_fail(f, rc, msg);
    } else {
      f->slots[i].mem = got.mem;
      f->slots[i].cap = got.cap;
      f->slots[i].data = got.data;
      f->slots[i].ready = 1;
      f->fetched++;
      uv_cond_broadcast(&f->cv);
    }
    uv_mutex_unlock(&f->mu);
  }
out:
  format_blob_ctx_free(&bctx);
}

static int fetch_start(struct fetch *f, const struct client_restore_opts *o, struct reader *r,
                       const struct format_index *idx, const uint64_t *plan, uint64_t n,
                       const char *archive)
{
  memset(f, 0, sizeof(*f));
  f->o = o;
  f->r = r;
  f->idx = idx;
  f->plan = plan;
  f->n = plan ? n : idx->count;
  f->archive = archive;
  f->budget = o->mem_budget ? o->mem_budget : DEFAULT_BUDGET;
  f->slots = core_try_malloc(sizeof(*f->slots) * (f->n ? f->n : 1));
  if (f->slots == NULL)
    return -ENOMEM;
  http_bodypool_init(&f->pool, IDLE_BUFFERS);
  memset(f->slots, 0, sizeof(*f->slots) * (f->n ? f->n : 1));
  uv_mutex_init(&f->mu);
  uv_cond_init(&f->cv);
  f->nthreads = o->workers ? o->workers : DEFAULT_WORKERS;
  f->threads = core_calloc(f->nthreads, sizeof(*f->threads));
  for (unsigned i = 0; i < f->nthreads; i++)
    if (uv_thread_create(&f->threads[i], fetch_worker, f) != 0)
      abort();
  return 0;
}

static void fetch_stop(struct fetch *f)
{
  uv_mutex_lock(&f->mu);
  f->stop = 1;
  uv_cond_broadcast(&f->cv);
  uv_mutex_unlock(&f->mu);
  for (unsigned i = 0; i < f->nthreads; i++)
    uv_thread_join(&f->threads[i]);
  for (uint64_t i = 0; i < f->n; i++)
    if (f->slots[i].mem)
      http_bodypool_put(&f->pool, f->slots[i].mem, f->slots[i].cap);
  http_bodypool_free(&f->pool);
  core_free(f->slots);
  core_free(f->threads);
  uv_cond_destroy(&f->cv);
  uv_mutex_destroy(&f->mu);
}

/* The consumer's read: releases the previous chunk, waits for the next.
 * Returns its length, 0 at the end, or the error. */
static ssize_t fetch_next(void *arg, const void **data)
{
  struct fetch *f = arg;
  ssize_t n;
  uv_mutex_lock(&f->mu);
  if (f->next_read > 0) {
    uint64_t prev = f->next_read - 1;
    if (f->slots[prev].mem) {
      struct fslot *next = f->next_read < f->n ? &f->slots[f->next_read] : NULL;
      client_progress_add(f->o->progress, plan_len(f, prev), 0, 0);
      if (next && next->repeat) {
        next->mem = f->slots[prev].mem;
        next->cap = f->slots[prev].cap;
        next->data = f->slots[prev].data;
      } else {
        http_bodypool_put(&f->pool, f->slots[prev].mem, f->slots[prev].cap);
      }
      f->slots[prev].mem = NULL;
      f->slots[prev].data = NULL;
      f->window -= plan_len(f, prev);
      uv_cond_broadcast(&f->cv);
    }
  }
  if (f->next_read == f->n) {
    uv_mutex_unlock(&f->mu);
    *data = NULL;
    return 0;
  }
  if (f->o->cancel && *f->o->cancel)
    fetch_fail(f, CORE_EABORTED, "interrupted");
  while (!f->err && !f->slots[f->next_read].ready)
    uv_cond_wait(&f->cv, &f->mu);
  if (f->err) {
    n = f->err;
  } else {
    *data = f->slots[f->next_read].data;
    n = (ssize_t)plan_len(f, f->next_read);
    f->next_read++;
  }
  uv_mutex_unlock(&f->mu);
  return n;
}

/* ---- Consumers ---- */

/* An image goes to stdout as a stream, or into a file or block device
 * around the page cache (client_dwrite.h). */
static int restore_image(struct fetch *f, const char *target, char *err, size_t errlen)
{
  int fd, rc = 0, is_stdout = strcmp(target, "-") == 0;
  struct client_dwrite dw = {.fd = -1};
  uint64_t off = 0;
  struct stat sb;

  if (is_stdout) {
    fd = STDOUT_FILENO;
  } else {
    /* a block device is written in place; a file is replaced */
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC;
    if (!(stat(target, &sb) == 0 && S_ISBLK(sb.st_mode)))
      flags |= O_TRUNC;
    if (client_dwrite_init(&dw) < 0) {
      snprintf(err, errlen, "%s: out of memory", target);
      return -ENOMEM;
    }
    fd = open(target, flags, 0600);
    if (fd < 0) {
      rc = -errno;
      snprintf(err, errlen, "%s: %s", target, strerror(errno));
      client_dwrite_free(&dw);
      return rc;
    }
    client_dwrite_begin(&dw, fd);
  }
  for (;;) {
    const void *data;
    ssize_t n = fetch_next(f, &data);
    if (n < 0) {
      rc = (int)n;
      uv_mutex_lock(&f->mu);
      snprintf(err, errlen, "%s", f->errmsg);
      uv_mutex_unlock(&f->mu);
      break;
    }
    if (n == 0)
      break;
    if (is_stdout)
      rc = core_file_write_all(fd, data, (size_t)n);
    else
      rc = client_dwrite_write(&dw, off, data, (size_t)n);
    if (rc < 0) {
      snprintf(err, errlen, "%s: write: %s", is_stdout ? "stdout" : target, strerror(-rc));
      break;
    }
    off += (uint64_t)n;
  }
  if (!is_stdout) {
    int rc2 = client_dwrite_end(&dw);
    if (rc == 0 && rc2 < 0) {
      rc = rc2;
      snprintf(err, errlen, "%s: write: %s", target, strerror(-rc));
    }
    client_dwrite_free(&dw);
    if (rc == 0 && fsync(fd) != 0 && errno != EINVAL) {
      rc = -errno;
      snprintf(err, errlen, "%s: fsync: %s", target, strerror(errno));
    }
    close(fd);
  }
  return rc;
}

static int restore_blob(struct reader *r, const char *file,
                        const struct format_crypt *crypt, const char *target, uint64_t *bytes,
                        char *err, size_t errlen);

/* ---- Snapshots ---- */

struct client_snapshot {
  const struct client_restore_opts *o;
  struct reader r;
  struct client_resp mresp;
  struct format_manifest m;
  int manifest_ok;
};

int client_snapshot_open(const struct client_restore_opts *o, struct client_snapshot **out,
                         char *err, size_t errlen)
{
  struct client_snapshot *s = core_calloc(1, sizeof(*s));
  struct format_blob_ctx bctx;
  int rc;

  *out = NULL;
  s->o = o;
  format_blob_ctx_init(&bctx);
  if ((rc = reader_open(o, &s->r, err, errlen)) < 0)
    goto fail;
  if ((rc = reader_download(&s->r, FORMAT_MANIFEST_NAME, &s->mresp, err, errlen)) < 0)
    goto fail;
  rc = format_manifest_decode_blob(&bctx, s->mresp.body, s->mresp.len, &s->m);
  s->manifest_ok = 1;
  if (rc < 0) {
    snprintf(err, errlen, "%s: %s", FORMAT_MANIFEST_NAME, core_strerror(rc));
    goto fail;
  }
  if ((rc = format_manifest_verify(&s->m, o->crypt)) < 0) {
    snprintf(err, errlen, o->crypt ? "the snapshot was made with another key (or its manifest "
                                     "signature is wrong)"
                                   : "the snapshot is encrypted: a key is needed (--keyfile)");
    goto fail;
  }
  format_blob_ctx_free(&bctx);
  *out = s;
  return 0;
fail:
  format_blob_ctx_free(&bctx);
  client_snapshot_close(s);
  return rc;
}

void client_snapshot_close(struct client_snapshot *s)
{
  if (s == NULL)
    return;
  client_resp_free(&s->mresp);
  if (s->manifest_ok)
    format_manifest_free(&s->m);
  reader_close(&s->r);
  core_free(s);
}

const struct format_manifest *client_snapshot_manifest(const struct client_snapshot *s)
{
  return &s->m;
}

/* Names tried for NAME, in order. */
static const char *const suffixes[] = {"", ".didx", ".img.fidx", ".fidx", ".blob"};

static const struct format_manifest_file *find_archive(const struct client_snapshot *s,
                                                       const char *name)
{
  char file[FORMAT_NAME_ARCHIVE_MAX + 16];
  const struct format_manifest_file *mf = NULL;
  for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]) && mf == NULL; i++) {
    snprintf(file, sizeof(file), "%s%s", name, suffixes[i]);
    mf = format_manifest_find_file(&s->m, file);
  }
  return mf;
}

/* A catalog index read by ranges through an archive reader. */
static int cat_src_read(void *ctx, uint64_t off, void *dst, size_t len)
{
  size_t done = 0;
  while (done < len) {
    ssize_t n = client_archive_reader_read(ctx, off + done, (uint8_t *)dst + done, len - done);
    if (n < 0)
      return (int)n;
    if (n == 0)
      return CORE_EFORMAT;
    done += (size_t)n;
  }
  return 0;
}

static void cat_src_close(void *ctx)
{
  client_archive_reader_free(ctx);
}

static void cat_src_chunks(void *ctx, uint64_t *fetched, uint64_t *total)
{
  client_archive_reader_chunks(ctx, fetched, total);
}

/* Chunks of a catalog index kept by its reader: a lookup touches the
 * restart table's and one window's chunks, an iteration one at a time. */
#define CATALOG_CACHE_CHUNKS 4

static int open_catalog_index(struct client_snapshot *s, const char *cname,
                              struct format_catalog *cat, char *err, size_t errlen)
{
  struct client_archive_reader *ar = NULL;
  struct format_catalog_source src = {0};
  int rc = client_archive_reader_open(s, cname, CATALOG_CACHE_CHUNKS, &ar, err, errlen);
  if (rc < 0)
    return rc;
  src.size = client_archive_reader_size(ar);
  src.read = cat_src_read;
  src.close = cat_src_close;
  src.chunks = cat_src_chunks;
  src.ctx = ar;
  if ((rc = format_catalog_open_source(cat, &src)) < 0)
    snprintf(err, errlen, "%s is damaged: %s", cname, core_strerror(rc));
  return rc;
}

int client_snapshot_catalog(struct client_snapshot *s, const char *name, uint8_t **buf,
                            struct format_catalog *cat, char *err, size_t errlen)
{
  const struct format_manifest_file *mf = find_archive(s, name), *cf;
  char cname[FORMAT_NAME_ARCHIVE_MAX + 16];
  struct client_resp resp;
  struct format_blob_ctx bctx;
  uint8_t sum[32];
  size_t len = 0;
  int rc;

  *buf = NULL;
  memset(cat, 0, sizeof(*cat));
  if (mf == NULL || format_catalog_name(mf->filename, cname, sizeof(cname)) < 0) {
    snprintf(err, errlen, "the snapshot has no directory archive \"%s\"", name);
    return CORE_ENOTFOUND;
  }
  if ((cf = format_manifest_find_file(&s->m, cname)) == NULL) {
    /* a large catalog is an index of its own */
    if (format_catalog_index_name(mf->filename, cname, sizeof(cname)) == 0 &&
        format_manifest_find_file(&s->m, cname) != NULL)
      return open_catalog_index(s, cname, cat, err, errlen);
    snprintf(err, errlen, "%s has no catalog (made by an older cairn)", mf->filename);
    return CORE_ENOTFOUND;
  }
  if (cf->crypt_mode == FORMAT_CRYPT_MODE_ENCRYPT && s->o->crypt == NULL) {
    snprintf(err, errlen, "%s is encrypted: a key is needed (--keyfile)", cname);
    return CORE_ECRYPTO;
  }
  if ((rc = reader_download(&s->r, cname, &resp, err, errlen)) < 0)
    return rc;
  core_sha256(resp.body, resp.len, sum);
  if (resp.len != cf->size || memcmp(sum, cf->csum, 32) != 0) {
    snprintf(err, errlen, "%s: size or checksum differs from the manifest", cname);
    client_resp_free(&resp);
    return CORE_ECSUM;
  }
  format_blob_ctx_init(&bctx);
  rc = format_blob_decode(&bctx, resp.body, resp.len, s->o->crypt, FORMAT_BLOB_MAX_SIZE, NULL,
                          buf, &len);
  format_blob_ctx_free(&bctx);
  client_resp_free(&resp);
  if (rc < 0) {
    snprintf(err, errlen, "%s: %s", cname, core_strerror(rc));
    return rc;
  }
  if ((rc = format_catalog_open(cat, *buf, len)) < 0 || (rc = format_catalog_validate(cat)) < 0) {
    snprintf(err, errlen, "%s is damaged: %s", cname, core_strerror(rc));
    core_free(*buf);
    *buf = NULL;
    return rc;
  }
  return 0;
}

/* ---- Partial restore ---- */

struct range {
  uint64_t a, b; /* stream bytes [a, b) */
  uint64_t pad;  /* then this many zeros: a file's padding, not fetched */
};

struct selection {
  struct range *r;
  size_t n, cap;
  uint64_t entries;
  struct format_catalog_entry last; /* the last entry added (strings not kept) */
  int raw; /* one file's data alone, no headers: copied as it is (stdout) */
  uint64_t *plan; /* chunk positions holding the ranges, ascending */
  uint64_t nplan;
};

/* An entry's bytes: its headers and data from the stream, its padding (the
 * zeros up to the next 512-byte block, which pax puts after the data and the
 * chunk boundary after a large file's data leaves in the next chunk) made
 * here rather than fetched. */
static void sel_add(struct selection *sel, const struct format_catalog_entry *e)
{
  uint64_t data_end = e->data_off + e->data_len;
  if (sel->n == sel->cap) {
    sel->cap = sel->cap ? sel->cap * 2 : 256;
    sel->r = core_realloc(sel->r, sel->cap * sizeof(*sel->r));
  }
  sel->r[sel->n].a = e->hdr_off;
  sel->r[sel->n].b = data_end;
  sel->r[sel->n].pad = e->end_off - data_end;
  sel->n++;
  sel->entries++;
  sel->last = *e;
  sel->last.path = sel->last.link = NULL;
}

static int cmp_range(const void *x, const void *y)
{
  const struct range *a = x, *b = y;
  return a->a < b->a ? -1 : a->a > b->a;
}

static int selected(const struct client_restore_opts *o, const struct format_catalog_entry *e)
{
  int dir = e->type == FORMAT_CATALOG_DIR;
  if (o->include && o->include->n > 0 && !client_pattern_match_tree(o->include, e->path, dir))
    return 0;
  if (o->exclude && client_pattern_match_tree(o->exclude, e->path, dir))
    return 0;
  return 1;
}

/* Adds an entry once: `seen` holds the paths added. */
static void sel_add_once(struct selection *sel, struct core_map *seen,
                         const struct format_catalog_entry *e)
{
  if (core_map_get(seen, e->path) != NULL)
    return;
  core_map_put(seen, e->path, (void *)1);
  sel_add(sel, e);
}

/* Adds the entry `path` (a parent directory or a hard link's first name)
 * unless it is there already. */
static int sel_add_path(const struct format_catalog *cat, struct selection *sel,
                        struct core_map *seen, const char *path, size_t len)
{
  struct format_catalog_iter *it;
  struct format_catalog_entry e;
  char *p = core_strndup(path, len);
  int rc;
  if (core_map_get(seen, p) != NULL) {
    core_free(p);
    return 0;
  }
  it = core_new(struct format_catalog_iter);
  rc = format_catalog_lookup(cat, it, p, &e);
  if (rc == 1) {
    sel_add_once(sel, seen, &e);
    rc = 0;
  } else if (rc == 0) {
    rc = CORE_EFORMAT; /* a parent or link target the catalog lacks */
  }
  core_free(p);
  core_free(it);
  return rc;
}

/* 1 when every include pattern names one path from the archive root
 * (anchored, no wildcard, not negated): the selection then reads only those
 * paths' runs of the catalog (a subtree is contiguous) instead of all of it,
 * which matters for a catalog index read by ranges. */
static int literal_includes(const struct client_restore_opts *o)
{
  if (o->include == NULL || o->include->n == 0)
    return 0;
  for (size_t i = 0; i < o->include->n; i++) {
    const struct client_pattern *p = &o->include->p[i];
    if (p->negate || !p->anchored || (p->scope && *p->scope) || p->glob[0] == '\0' ||
        strpbrk(p->glob, "*?[\\") != NULL || !format_catalog_safe_path(p->glob, strlen(p->glob)) ||
        strcmp(p->glob, ".") == 0)
      return 0;
  }
  return 1;
}

/* Positions `it` at include literal `i`'s run: the path itself, then names
 * that sort between it and its subtree ("a-b", "a.b", filtered by
 * selected()), then the subtree; *bound (core_free) is the first path past
 * it ("a0", as '0' follows '/'). */
static int literal_seek(const struct client_restore_opts *o, struct format_catalog_iter *it,
                        size_t i, char **bound)
{
  const char *g = o->include->p[i].glob;
  *bound = core_asprintf("%s0", g);
  return format_catalog_iter_seek(it, g, strlen(g));
}

/* Picks the entries to restore and the chunks that hold them. `single`
 * (stdout): exactly one regular file, no parents, a hard link replaced by
 * the file it names. */
static int select_entries(const struct client_restore_opts *o, const struct format_catalog *cat,
                          const struct format_index *idx, int single, struct selection *sel,
                          char *err, size_t errlen)
{
  struct format_catalog_iter *it = core_new(struct format_catalog_iter);
  struct format_catalog_entry e;
  struct core_map seen;
  int literal = literal_includes(o), rc;
  size_t lit = 0;
  char *bound = NULL; /* literal: the path after the current subtree */

  core_map_init(&seen);
  format_catalog_iter_init(it, cat);
  if (literal && (rc = literal_seek(o, it, 0, &bound)) < 0)
    goto damaged;
  for (;;) {
    rc = format_catalog_next(it, &e);
    if (rc > 0 && bound != NULL && strcmp(e.path, ".") != 0 &&
        format_catalog_cmp(e.path, e.path_len, bound, strlen(bound)) >= 0)
      rc = 0; /* past this literal's subtree */
    if (rc == 0 && literal && ++lit < o->include->n) {
      core_free(bound);
      bound = NULL;
      if ((rc = literal_seek(o, it, lit, &bound)) < 0)
        break;
      continue;
    }
    if (rc <= 0)
      break;
    if (!selected(o, &e) || (e.type == FORMAT_CATALOG_DIR && single))
      continue;
    if (e.end_off > idx->size || e.end_off - e.data_off - e.data_len >= 512) {
      snprintf(err, errlen, "catalog entry \"%s\" has impossible stream offsets", e.path);
      rc = CORE_EFORMAT;
      goto out;
    }
    if (single && e.type == FORMAT_CATALOG_HARDLINK) {
      if ((rc = sel_add_path(cat, sel, &seen, e.link, e.link_len)) < 0)
        goto bad_ref;
      continue;
    }
    sel_add_once(sel, &seen, &e);
    if (single)
      continue;
    /* the parents (their metadata, restored as in a full restore), and the
     * first name of a hard link (it carries the data) */
    for (size_t i = e.path_len; i-- > 0;)
      if (e.path[i] == '/' && (rc = sel_add_path(cat, sel, &seen, e.path, i)) < 0)
        goto bad_ref;
    if (e.path_len > 0 && strcmp(e.path, ".") != 0 &&
        (rc = sel_add_path(cat, sel, &seen, ".", 1)) < 0)
      goto bad_ref;
    if (e.type == FORMAT_CATALOG_HARDLINK &&
        (rc = sel_add_path(cat, sel, &seen, e.link, e.link_len)) < 0)
      goto bad_ref;
  }
damaged:
  if (rc < 0) {
    snprintf(err, errlen, "the catalog is damaged");
    goto out;
  }
  core_free(bound);
  bound = NULL;
  if (sel->n == 0) {
    snprintf(err, errlen, "no entry of the archive matches");
    rc = CORE_ENOTFOUND;
    goto out;
  }
  if (single && sel->n != 1) {
    snprintf(err, errlen, "%zu entries match: restoring to stdout takes exactly one file",
             sel->n);
    rc = CORE_EINVAL;
    goto out;
  }
  if (single && sel->last.type == FORMAT_CATALOG_FILE &&
      !(sel->last.flags & FORMAT_CATALOG_SPARSE) && sel->last.data_len == sel->last.size) {
    /* the data alone: the chunk holding the headers is not needed */
    sel->r[0].a = sel->last.data_off;
    sel->r[0].pad = 0;
    sel->raw = 1;
  }
  /* stream order; entries never overlap in a true catalog */
  qsort(sel->r, sel->n, sizeof(*sel->r), cmp_range);
  for (size_t i = 1; i < sel->n; i++)
    if (sel->r[i].a < sel->r[i - 1].b + sel->r[i - 1].pad) {
      snprintf(err, errlen, "the catalog's entries overlap in the stream");
      rc = CORE_EFORMAT;
      goto out;
    }
  /* the chunks: binary search for each range's first chunk */
  sel->plan = core_malloc(sizeof(*sel->plan) * (idx->count ? idx->count : 1));
  for (size_t i = 0; i < sel->n; i++) {
    for (uint64_t k = format_index_chunk_at(idx, sel->r[i].a); k < idx->count; k++) {
      uint64_t cs, ce;
      format_index_chunk_range(idx, k, &cs, &ce);
      if (cs >= sel->r[i].b)
        break;
      if (sel->nplan == 0 || sel->plan[sel->nplan - 1] < k)
        sel->plan[sel->nplan++] = k;
    }
  }
  rc = 0;
  goto out;
bad_ref:
  snprintf(err, errlen, "the catalog names a parent or hard link target it does not hold");
out:
  core_free(bound);
  core_map_free(&seen);
  core_free(it);
  return rc;
}

/* Hands out the selected byte ranges from the planned chunks, then the two
 * zero blocks that end a tar stream. */
struct range_reader {
  struct fetch *f;
  const struct selection *sel;
  size_t r;          /* current range */
  uint64_t pos;      /* stream offset handed out so far, within the range */
  int padded;        /* the current range's padding went out */
  uint64_t k;        /* chunks taken from the fetch */
  const uint8_t *chunk;
  uint64_t cs, ce;   /* the current chunk's stream range */
  int have, trailer;
};

static ssize_t range_next(void *arg, const void **data)
{
  static const uint8_t zeros[1024];
  struct range_reader *rr = arg;
  for (;;) {
    if (rr->r == rr->sel->n) {
      if (rr->trailer || rr->sel->raw)
        return 0;
      rr->trailer = 1;
      *data = zeros;
      return (ssize_t)sizeof(zeros);
    }
    const struct range *g = &rr->sel->r[rr->r];
    uint64_t a = rr->pos > g->a ? rr->pos : g->a;
    if (a >= g->b) {
      if (!rr->padded && g->pad > 0) {
        rr->padded = 1;
        *data = zeros; /* pad < 512, checked when selecting */
        return (ssize_t)g->pad;
      }
      rr->padded = 0;
      rr->r++;
      continue;
    }
    while (!rr->have || a < rr->cs || a >= rr->ce) {
      const void *d;
      ssize_t n = fetch_next(rr->f, &d);
      if (n < 0)
        return n;
      if (n == 0 || rr->k >= rr->f->n)
        return CORE_EFORMAT; /* cannot happen: the plan covers every range */
      format_index_chunk_range(rr->f->idx, plan_at(rr->f, rr->k), &rr->cs, &rr->ce);
      rr->k++;
      rr->chunk = d;
      rr->have = 1;
    }
    uint64_t end = g->b < rr->ce ? g->b : rr->ce;
    *data = rr->chunk + (a - rr->cs);
    rr->pos = end;
    return (ssize_t)(end - a);
  }
}

static int restore_blob(struct reader *r, const char *file,
                        const struct format_crypt *crypt, const char *target, uint64_t *bytes,
                        char *err, size_t errlen);

int client_restore_run(const struct client_restore_opts *o, const char *name, const char *target,
                       struct client_restore_stats *stats, char *err, size_t errlen)
{
  struct client_snapshot *snap = NULL;
  struct client_resp iresp = {0};
  const struct format_manifest_file *mf = NULL;
  struct format_index idx;
  struct format_catalog cat;
  struct selection sel = {0};
  uint8_t *catbuf = NULL;
  int have_cat = 0;
  char file[FORMAT_NAME_ARCHIVE_MAX + 16];
  int rc, partial = (o->include && o->include->n > 0) || (o->exclude && o->exclude->n > 0);
  int to_stdout = strcmp(target, "-") == 0;

  memset(stats, 0, sizeof(*stats));
  if ((rc = client_snapshot_open(o, &snap, err, errlen)) < 0)
    goto out;
  if ((mf = find_archive(snap, name)) == NULL) {
    snprintf(err, errlen, "the snapshot has no archive \"%s\"", name);
    rc = CORE_ENOTFOUND;
    goto out;
  }
  snprintf(file, sizeof(file), "%s", mf->filename);
  if (mf->crypt_mode == FORMAT_CRYPT_MODE_ENCRYPT && o->crypt == NULL) {
    snprintf(err, errlen, "%s is encrypted: a key is needed (--keyfile)", file);
    rc = CORE_ECRYPTO;
    goto out;
  }

  if (format_index_kind_from_name(file) < 0) {
    rc = restore_blob(&snap->r, file, o->crypt, target, &stats->bytes, err, errlen);
    goto out;
  }
  if (partial && format_index_kind_from_name(file) != FORMAT_INDEX_DYNAMIC) {
    snprintf(err, errlen, "--include and --exclude select files of a directory archive; %s "
             "is an image", file);
    rc = CORE_EINVAL;
    goto out;
  }
  if ((rc = reader_download(&snap->r, file, &iresp, err, errlen)) < 0)
    goto out;
  rc = format_index_parse(iresp.body, iresp.len, 0, &idx);
  if (rc < 0) {
    snprintf(err, errlen, "%s: index is damaged: %s", file, core_strerror(rc));
    goto out;
  }
  if (memcmp(idx.csum, mf->csum, 32) != 0 || idx.size != mf->size) {
    snprintf(err, errlen, "%s: index checksum or size differs from the manifest", file);
    rc = CORE_ECSUM;
    goto out;
  }
  for (uint64_t i = 0; i < idx.count; i++) {
    /* the index comes from the server: its sizes decide allocations */
    uint64_t n = chunk_len(&idx, i);
    if (n == 0 || n > FORMAT_CHUNK_MAX_SIZE) {
      snprintf(err, errlen, "%s: chunk %llu has %llu bytes (at most %u allowed)", file,
               (unsigned long long)i, (unsigned long long)n, (unsigned)FORMAT_CHUNK_MAX_SIZE);
      rc = CORE_EFORMAT;
      goto out;
    }
  }
  stats->total_chunks = idx.count;
  if (partial) {
    if ((rc = client_snapshot_catalog(snap, file, &catbuf, &cat, err, errlen)) < 0)
      goto out;
    have_cat = 1;
    rc = select_entries(o, &cat, &idx, to_stdout, &sel, err, errlen);
    format_catalog_chunk_stats(&cat, &stats->catalog_chunks, &stats->catalog_total_chunks);
    format_catalog_close(&cat); /* its cached chunks are not needed any more */
    have_cat = 0;
    if (rc < 0)
      goto out;
    stats->entries = sel.entries;
    uint64_t total = 0;
    for (size_t i = 0; i < sel.n; i++)
      total += sel.r[i].b - sel.r[i].a + sel.r[i].pad;
    client_progress_set_total(o->progress, total);
  } else {
    client_progress_set_total(o->progress, idx.size);
  }

  {
    struct fetch f;
    struct range_reader rr = {0};
    client_archive_read_fn readfn = fetch_next;
    void *readarg = &f;
    if ((rc = fetch_start(&f, o, &snap->r, &idx, partial ? sel.plan : NULL, sel.nplan, file)) < 0) {
      snprintf(err, errlen, "%s: out of memory", file);
      goto out;
    }
    if (partial) {
      rr.f = &f;
      rr.sel = &sel;
      readfn = range_next;
      readarg = &rr;
    }
    if (idx.kind == FORMAT_INDEX_FIXED) {
      rc = restore_image(&f, target, err, errlen);
    } else if (partial && sel.raw) {
      const void *d;
      ssize_t n;
      while ((n = range_next(&rr, &d)) > 0)
        if ((rc = core_file_write_all(STDOUT_FILENO, d, (size_t)n)) < 0) {
          snprintf(err, errlen, "stdout: write: %s", strerror(-rc));
          break;
        }
      if (n < 0)
        rc = (int)n;
    } else if (to_stdout) {
      rc = client_archive_cat(STDOUT_FILENO, readfn, readarg, err, errlen);
    } else {
      struct client_archive_stats ast;
      rc = client_archive_extract(target, o->restore_owner ? CLIENT_EXTRACT_OWNER : 0, readfn,
                                  readarg, &ast, err, errlen);
    }
    /* a fetch error is the cause of whatever the consumer reported */
    uv_mutex_lock(&f.mu);
    if (f.err) {
      rc = f.err;
      snprintf(err, errlen, "%s", f.errmsg);
    }
    stats->chunks = f.fetched + f.repeated;
    stats->repeated = f.repeated;
    uv_mutex_unlock(&f.mu);
    fetch_stop(&f);
    if (rc == 0) {
      stats->bytes = idx.size;
      if (partial) {
        stats->bytes = 0;
        for (size_t i = 0; i < sel.n; i++)
          stats->bytes += sel.r[i].b - sel.r[i].a + sel.r[i].pad;
      }
    }
  }

out:
  client_resp_free(&iresp);
  if (have_cat)
    format_catalog_close(&cat);
  core_free(catbuf);
  core_free(sel.r);
  core_free(sel.plan);
  client_snapshot_close(snap);
  return rc;
}

static int restore_blob(struct reader *r, const char *file,
                        const struct format_crypt *crypt, const char *target, uint64_t *bytes,
                        char *err, size_t errlen)
{
  struct client_resp resp;
  struct format_blob_ctx bctx;
  uint8_t *plain = NULL;
  size_t plen = 0;
  int rc, fd;

  if ((rc = reader_download(r, file, &resp, err, errlen)) < 0)
    return rc;
  format_blob_ctx_init(&bctx);
  rc = format_blob_decode(&bctx, resp.body, resp.len, crypt, FORMAT_BLOB_MAX_SIZE, NULL, &plain,
                         &plen);
  format_blob_ctx_free(&bctx);
  client_resp_free(&resp);
  if (rc < 0) {
    snprintf(err, errlen, "%s: %s", file, core_strerror(rc));
    return rc;
  }
  if (strcmp(target, "-") == 0) {
    fd = STDOUT_FILENO;
  } else {
    fd = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
      rc = -errno;
      snprintf(err, errlen, "%s: %s", target, strerror(errno));
      core_free(plain);
      return rc;
    }
  }
  rc = core_file_write_all(fd, plain, plen);
  if (rc < 0)
    snprintf(err, errlen, "%s: write: %s", target, strerror(-rc));
  if (fd != STDOUT_FILENO)
    close(fd);
  core_free(plain);
  *bytes = plen;
  return rc;
}

/* ---- Random access ---- */

struct cached_chunk {
  uint64_t index; /* position in the index */
  uint8_t *data;  /* owned plaintext, NULL when the slot is free */
  size_t len;
  uint64_t used;  /* LRU clock */
};

struct client_archive_reader {
  struct client_snapshot *s;
  struct client_resp iresp; /* the index file; idx points into it */
  struct format_index idx;
  char file[FORMAT_NAME_ARCHIVE_MAX + 16];
  struct cached_chunk *cache;
  unsigned ncache;
  uint64_t clock;
  uint64_t fetched; /* chunks downloaded (cache misses) */
  uv_mutex_t mu;
};

int client_archive_reader_open(struct client_snapshot *s, const char *name, unsigned cache_chunks,
                               struct client_archive_reader **out, char *err, size_t errlen)
{
  const struct format_manifest_file *mf = find_archive(s, name);
  struct client_archive_reader *r;
  int rc;
  *out = NULL;
  if (mf == NULL || format_index_kind_from_name(mf->filename) != FORMAT_INDEX_DYNAMIC) {
    snprintf(err, errlen, "the snapshot has no directory archive \"%s\"", name);
    return CORE_ENOTFOUND;
  }
  if (mf->crypt_mode == FORMAT_CRYPT_MODE_ENCRYPT && s->o->crypt == NULL) {
    snprintf(err, errlen, "%s is encrypted: a key is needed (--keyfile)", mf->filename);
    return CORE_ECRYPTO;
  }
  r = core_calloc(1, sizeof(*r));
  r->s = s;
  snprintf(r->file, sizeof(r->file), "%s", mf->filename);
  if ((rc = reader_download(&s->r, r->file, &r->iresp, err, errlen)) < 0)
    goto fail;
  if ((rc = format_index_parse(r->iresp.body, r->iresp.len, 0, &r->idx)) < 0) {
    snprintf(err, errlen, "%s: index is damaged: %s", r->file, core_strerror(rc));
    goto fail;
  }
  if (memcmp(r->idx.csum, mf->csum, 32) != 0 || r->idx.size != mf->size) {
    snprintf(err, errlen, "%s: index checksum or size differs from the manifest", r->file);
    rc = CORE_ECSUM;
    goto fail;
  }
  for (uint64_t i = 0; i < r->idx.count; i++) {
    uint64_t n = chunk_len(&r->idx, i);
    if (n == 0 || n > FORMAT_CHUNK_MAX_SIZE) {
      snprintf(err, errlen, "%s: chunk %llu has an impossible size", r->file,
               (unsigned long long)i);
      rc = CORE_EFORMAT;
      goto fail;
    }
  }
  r->ncache = cache_chunks ? cache_chunks : 8;
  r->cache = core_calloc(r->ncache, sizeof(*r->cache));
  uv_mutex_init(&r->mu);
  *out = r;
  return 0;
fail:
  client_resp_free(&r->iresp);
  core_free(r);
  return rc;
}

void client_archive_reader_free(struct client_archive_reader *r)
{
  if (r == NULL)
    return;
  for (unsigned i = 0; i < r->ncache; i++)
    core_free(r->cache[i].data);
  core_free(r->cache);
  client_resp_free(&r->iresp);
  uv_mutex_destroy(&r->mu);
  core_free(r);
}

uint64_t client_archive_reader_size(const struct client_archive_reader *r)
{
  return r->idx.size;
}

/* Chunk `i`, from the cache or fetched and verified. Caller holds mu. */
static struct cached_chunk *reader_chunk(struct client_archive_reader *r, uint64_t i)
{
  struct cached_chunk *victim = &r->cache[0];
  struct client_resp resp;
  struct format_blob_ctx bctx;
  char hex[65], target[400];
  uint8_t *plain = NULL;
  size_t plen = 0;
  int rc;

  for (unsigned k = 0; k < r->ncache; k++) {
    if (r->cache[k].data && r->cache[k].index == i) {
      r->cache[k].used = ++r->clock;
      return &r->cache[k];
    }
    if (r->cache[k].data == NULL || (victim->data && r->cache[k].used < victim->used))
      victim = &r->cache[k];
  }
  core_hex_encode(format_index_digest(&r->idx, i), 32, hex);
  snprintf(target, sizeof(target), "/api2/json/reader/%s/chunk?digest=%s", r->s->r.sid, hex);
  rc = client_api_call(r->s->o->api, "GET", target, NULL, 0, NULL,
                       FORMAT_CHUNK_MAX_SIZE + FORMAT_BLOB_ENC_HDR_LEN, &resp);
  if (rc < 0)
    return NULL;
  if (resp.status != 200) {
    client_resp_free(&resp);
    return NULL;
  }
  format_blob_ctx_init(&bctx);
  rc = format_blob_decode(&bctx, resp.body, resp.len, r->s->o->crypt, FORMAT_CHUNK_MAX_SIZE,
                          format_index_digest(&r->idx, i), &plain, &plen);
  format_blob_ctx_free(&bctx);
  client_resp_free(&resp);
  if (rc < 0 || plen != chunk_len(&r->idx, i)) {
    core_free(plain);
    return NULL;
  }
  r->fetched++;
  core_free(victim->data);
  victim->data = plain;
  victim->len = plen;
  victim->index = i;
  victim->used = ++r->clock;
  return victim;
}

void client_archive_reader_chunks(struct client_archive_reader *r, uint64_t *fetched,
                                  uint64_t *total)
{
  uv_mutex_lock(&r->mu);
  *fetched = r->fetched;
  *total = r->idx.count;
  uv_mutex_unlock(&r->mu);
}

ssize_t client_archive_reader_read(struct client_archive_reader *r, uint64_t off, void *buf,
                                   size_t len)
{
  size_t done = 0;
  uv_mutex_lock(&r->mu);
  while (done < len && off < r->idx.size) {
    uint64_t lo = format_index_chunk_at(&r->idx, off), cs, ce;
    if (lo == r->idx.count)
      break;
    format_index_chunk_range(&r->idx, lo, &cs, &ce);
    struct cached_chunk *c = reader_chunk(r, lo);
    if (c == NULL) {
      uv_mutex_unlock(&r->mu);
      return -EIO;
    }
    size_t k = (size_t)(ce - off);
    if (k > len - done)
      k = len - done;
    memcpy((uint8_t *)buf + done, c->data + (off - cs), k);
    done += k;
    off += k;
  }
  uv_mutex_unlock(&r->mu);
  return (ssize_t)done;
}
