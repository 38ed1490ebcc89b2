/* store_api_download.c: GET admin/datastore/{store}/file-download, one file
 * of an unencrypted directory archive, or a directory of it as a tar stream.
 *
 * The archive's catalog (format_catalog.h) says where the entry's bytes lie in
 * the pax stream; the dynamic index says which chunks hold them. A file's
 * data is one byte range; a directory is the ranges of every entry below it
 * (headers, data, the zeros of their padding), plus the first name of a hard
 * link whose data lies outside it, in stream order, then the two zero blocks
 * that end a tar stream: the pax stream's own entries, so any tar
 * reads it (names are relative to the archive root). Encrypted archives are
 * refused: the server has no key. A sparse file's stream holds its map and
 * its data blocks (format_sparse.h): the plan reads the map and makes one
 * range per block, each followed by the hole after it as zeros, sent in
 * pieces of DL_ZERO_PIECE.
 *
 * Everything that touches the disk runs in the pool: a first job reads the
 * manifest, the catalog and the index and plans the ranges; then the body is
 * streamed with back-pressure, one job per piece, each reading and decoding
 * (CRC, SHA-256 against the index) the chunk it needs, keeping the last one.
 * On an S3 datastore the chunk a piece needs is first read on the loop
 * side (store_s3_chunk_read: the local cache, or a GET from the bucket) and
 * then decoded in the pool like a local one.
 */
#include "store/store_api.h"
#include "access/access.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "format/format_blob.h"
#include "format/format_catalog.h"
#include "format/format_index.h"
#include "format/format_manifest.h"
#include "format/format_name.h"
#include "format/format_sparse.h"
#include "store/store_chunk.h"
#include "store/store_path.h"
#include "store/store_registry.h"
#include "store/store_s3.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MANIFEST_MAX (16u * 1024 * 1024)
#define INDEX_MAX ((size_t)1 << 30)
#define DL_ZERO_PIECE ((uint64_t)256 * 1024) /* zeros of a hole, a piece at a time */

struct dl_range {
  uint64_t a, b, pad; /* stream bytes [a, b), then `pad` zeros */
};

struct dl_job {
  struct core_job job;
  struct http_request *req;
  struct store_api *api;
  struct store_datastore *ds;
  char *ns, *type, *id, *archive, *filepath;
  int64_t time;
  int started; /* the stream began: errors abort the connection */
  int rc;
  int status;
  char err[256];
  /* the plan */
  uint8_t *idx_buf;
  struct format_index idx;
  struct dl_range *r;
  size_t nr, cap;
  int tar;            /* a directory: the trailer after the ranges */
  int sparse;         /* a sparse file: ranges of data blocks, then holes */
  uint64_t total;     /* Content-Length */
  char name[256];     /* for Content-Disposition-less clients: the log */
  /* streaming position */
  size_t cur;         /* current range */
  uint64_t pos;       /* next stream byte of the current range */
  uint64_t pad_sent;  /* zeros of its padding or hole sent */
  int trailer_sent;
  uint64_t sent;
  /* the last decoded chunk */
  int64_t chunk_i;
  uint8_t *chunk;
  size_t chunk_len;
  /* the piece the pool made */
  uint8_t *piece;
  size_t piece_len;
  /* S3: the encoded chunk fetched for the next piece (owned), and its index */
  uint8_t *enc;
  size_t enc_len;
  int64_t enc_i;
  /* S3: a catalog chunk the plan needs first, and the plan's runs so far */
  struct store__api_catalog_miss miss;
  unsigned retries;
};

static void dl_free(struct dl_job *d)
{
  core_free(d->ns);
  core_free(d->type);
  core_free(d->id);
  core_free(d->archive);
  core_free(d->filepath);
  core_free(d->idx_buf);
  core_free(d->r);
  core_free(d->chunk);
  core_free(d->piece);
  core_free(d->enc);
  core_free(d);
}

static void add_range(struct dl_job *d, const struct format_catalog_entry *e, int with_headers)
{
  if (d->nr == d->cap) {
    d->cap = d->cap ? d->cap * 2 : 64;
    d->r = core_realloc(d->r, d->cap * sizeof(*d->r));
  }
  d->r[d->nr].a = with_headers ? e->hdr_off : e->data_off;
  d->r[d->nr].b = e->data_off + e->data_len;
  d->r[d->nr].pad = with_headers ? e->end_off - e->data_off - e->data_len : 0;
  d->nr++;
}

static int cmp_range(const void *x, const void *y)
{
  const struct dl_range *a = x, *b = y;
  return a->a < b->a ? -1 : a->a > b->a;
}

/* ---- planning (pool) ---- */

static int read_blob_file(struct dl_job *d, const char *base, const char *file, size_t max,
                          uint8_t **out, size_t *len)
{
  char path[STORE_PATH_MAX];
  int rc = store_path_file(path, sizeof(path), base, d->ns, d->type, d->id, d->time, file);
  if (rc < 0)
    return rc;
  rc = core_file_read(path, max, out, len);
  if (rc == -ENOENT || rc == CORE_ENOTFOUND) {
    snprintf(d->err, sizeof(d->err), "no such snapshot or file");
    rc = CORE_ENOTFOUND;
  }
  return rc;
}

/* Chunk `i` of the archive decoded into d->chunk (the one held, or read;
 * pool). On S3 a chunk missing from the cache is named in d->miss and
 * -EAGAIN returned: the loop fetches it and the plan runs again. */
static int load_chunk(struct dl_job *d, uint64_t i)
{
  uint8_t *plain;
  size_t plen;
  if (d->chunk && d->chunk_i == (int64_t)i)
    return 0;
  int rc = store__api_index_chunk(d->ds, &d->idx, i, NULL, &d->miss, &plain, &plen);
  if (rc < 0)
    return rc;
  core_free(d->chunk);
  d->chunk = plain;
  d->chunk_len = plen;
  d->chunk_i = (int64_t)i;
  return 0;
}

/* A sparse file: its map (at the start of its data area, read chunk by
 * chunk) into one range per data block, each followed by the hole after
 * it; a hole at the start is the padding of an empty range. The ranges
 * add up to the file's size (checked by plan). */
static int plan_sparse(struct dl_job *d, const struct format_catalog_entry *e)
{
  struct format_sparse_map map;
  uint64_t pos = e->data_off, end = e->data_off + e->data_len, map_bytes = 0, s;
  int rc = 0;
  format_sparse_init(&map);
  if (e->data_len > d->idx.size || e->data_off > d->idx.size - e->data_len) {
    rc = CORE_EFORMAT;
    goto out;
  }
  while (rc == 0) {
    uint64_t cs_off, ce_off;
    if (pos >= end) {
      rc = CORE_EFORMAT; /* the data area ended inside the map */
      break;
    }
    uint64_t lo = format_index_chunk_at(&d->idx, pos);
    if (lo == d->idx.count) {
      rc = CORE_EFORMAT;
      break;
    }
    format_index_chunk_range(&d->idx, lo, &cs_off, &ce_off);
    if ((rc = load_chunk(d, lo)) < 0)
      break;
    uint64_t stop = end < ce_off ? end : ce_off;
    rc = format_sparse_feed(&map, d->chunk + (pos - cs_off), (size_t)(stop - pos));
    pos = stop;
  }
  if (rc < 0)
    goto out;
  if ((rc = format_sparse_check(&map, e->size, e->data_len, &map_bytes)) < 0)
    goto out;
  /* the ranges: a leading hole, then each block and the hole after it */
  s = e->data_off + map_bytes;
  d->cap = map.n + 1;
  d->r = core_calloc(d->cap, sizeof(*d->r));
  d->nr = 0;
  if (map.n == 0 || map.b[0].off > 0) {
    d->r[0].a = d->r[0].b = s;
    d->r[0].pad = map.n == 0 ? e->size : map.b[0].off;
    d->nr = 1;
  }
  for (size_t i = 0; i < map.n; i++) {
    uint64_t next = i + 1 < map.n ? map.b[i + 1].off : e->size;
    d->r[d->nr].a = s;
    d->r[d->nr].b = s + map.b[i].len;
    d->r[d->nr].pad = next - (map.b[i].off + map.b[i].len);
    s += map.b[i].len;
    d->nr++;
  }
  rc = 0;
out:
  format_sparse_free(&map);
  return rc;
}

static int plan(struct dl_job *d, const char *base, const struct format_manifest *m)
{
  const struct format_manifest_file *mf = format_manifest_find_file(m, d->archive), *cf;
  char cname[FORMAT_NAME_ARCHIVE_MAX + 16];
  uint8_t *plain = NULL;
  size_t len = 0;
  struct format_catalog cat;
  struct format_catalog_iter *it = NULL;
  struct format_catalog_entry e;
  int rc;

  if (mf == NULL || format_catalog_name(d->archive, cname, sizeof(cname)) < 0 ||
      ((cf = format_manifest_find_file(m, cname)) == NULL &&
       (format_catalog_index_name(d->archive, cname, sizeof(cname)) < 0 ||
        (cf = format_manifest_find_file(m, cname)) == NULL))) {
    snprintf(d->err, sizeof(d->err), "the snapshot has no catalog for '%s'", d->archive);
    return CORE_ENOTFOUND;
  }
  if (mf->crypt_mode == FORMAT_CRYPT_MODE_ENCRYPT || cf->crypt_mode == FORMAT_CRYPT_MODE_ENCRYPT) {
    d->status = 400;
    snprintf(d->err, sizeof(d->err), "'%s' is encrypted: the server cannot read it; restore "
             "it with the key (cairn restore --include ... -)", d->archive);
    return CORE_ECRYPTO;
  }
  if ((rc = read_blob_file(d, base, d->archive, INDEX_MAX, &d->idx_buf, &len)) < 0)
    return rc;
  if ((rc = format_index_parse(d->idx_buf, len, 0, &d->idx)) < 0 ||
      d->idx.kind != FORMAT_INDEX_DYNAMIC || memcmp(d->idx.csum, mf->csum, 32) != 0) {
    snprintf(d->err, sizeof(d->err), "the index of '%s' is damaged", d->archive);
    return CORE_EFORMAT;
  }
  rc = store__api_catalog_open(d->ds, base, d->ns, d->type, d->id, d->time, m, d->archive, &cat,
                               &plain, &d->miss);
  if (rc == -ENOENT || rc == CORE_ENOTFOUND) {
    snprintf(d->err, sizeof(d->err), "no such snapshot or file");
    return CORE_ENOTFOUND;
  }
  if (rc < 0) {
    snprintf(d->err, sizeof(d->err), "the catalog of '%s' is damaged", d->archive);
    return CORE_EFORMAT;
  }
  it = core_new(struct format_catalog_iter);
  const char *path = d->filepath[0] ? d->filepath : ".";
  rc = format_catalog_lookup(&cat, it, path, &e);
  if (rc == 1 && e.type == FORMAT_CATALOG_HARDLINK) {
    char *target = core_strndup(e.link, e.link_len);
    rc = format_catalog_lookup(&cat, it, target, &e);
    core_free(target);
  }
  if (rc <= 0) {
    snprintf(d->err, sizeof(d->err), rc < 0 ? "the catalog is damaged" : "no such file");
    rc = rc < 0 ? CORE_EFORMAT : CORE_ENOTFOUND;
    goto out;
  }
  const char *slash = strrchr(e.path, '/');
  snprintf(d->name, sizeof(d->name), "%s", slash ? slash + 1 : e.path);
  if (e.type == FORMAT_CATALOG_FILE) {
    if ((e.flags & FORMAT_CATALOG_SPARSE) || e.data_len != e.size) {
      d->sparse = 1;
      rc = plan_sparse(d, &e);
      if (rc < 0) {
        if (rc != -EAGAIN && !d->err[0])
          snprintf(d->err, sizeof(d->err), "the sparse map of '%.200s' is damaged", d->name);
        goto out;
      }
    } else {
      add_range(d, &e, 0);
    }
  } else if (e.type == FORMAT_CATALOG_DIR) {
    /* the directory and everything below it, in stream order */
    char *prefix = strcmp(path, ".") == 0 ? core_strdup("") : core_asprintf("%s/", path);
    size_t plen2 = strlen(prefix);
    d->tar = 1;
    add_range(d, &e, 1);
    format_catalog_iter_init(it, &cat);
    rc = format_catalog_iter_seek(it, prefix, plen2);
    while (rc == 0 && (rc = format_catalog_next(it, &e)) > 0) {
      rc = 0;
      if (strcmp(e.path, ".") == 0)
        continue;
      if (e.path_len <= plen2 || memcmp(e.path, prefix, plen2) != 0)
        break;
      add_range(d, &e, 1);
      if (e.type == FORMAT_CATALOG_HARDLINK &&
          (e.link_len < plen2 || memcmp(e.link, prefix, plen2) != 0)) {
        /* its data is under its first name, outside: that entry comes along */
        struct format_catalog_iter *it2 = core_new(struct format_catalog_iter);
        struct format_catalog_entry t;
        char *target = core_strndup(e.link, e.link_len);
        if (format_catalog_lookup(&cat, it2, target, &t) == 1)
          add_range(d, &t, 1);
        else
          rc = CORE_EFORMAT;
        core_free(target);
        core_free(it2);
      }
    }
    core_free(prefix);
    if (rc < 0) {
      snprintf(d->err, sizeof(d->err), "the catalog is damaged");
      rc = CORE_EFORMAT;
      goto out;
    }
    qsort(d->r, d->nr, sizeof(*d->r), cmp_range);
    /* two links to one file outside: its entry once */
    size_t k = 0;
    for (size_t i = 0; i < d->nr; i++)
      if (k == 0 || d->r[i].a != d->r[k - 1].a || d->r[i].b != d->r[k - 1].b)
        d->r[k++] = d->r[i];
    d->nr = k;
  } else {
    d->status = 400;
    snprintf(d->err, sizeof(d->err), "neither a file nor a directory");
    rc = CORE_EINVAL;
    goto out;
  }
  /* the catalog is data from a client: its ranges must fit the archive */
  d->total = d->tar ? 1024 : 0;
  for (size_t i = 0; i < d->nr; i++) {
    if (d->r[i].b > d->idx.size || d->r[i].a > d->r[i].b || (!d->sparse && d->r[i].pad >= 512) ||
        (i > 0 && d->r[i].a < d->r[i - 1].b)) {
      snprintf(d->err, sizeof(d->err), "the catalog's offsets do not fit the archive");
      rc = CORE_EFORMAT;
      goto out;
    }
    d->total += d->r[i].b - d->r[i].a + d->r[i].pad;
  }
  if (d->sparse && d->total != e.size) {
    snprintf(d->err, sizeof(d->err), "the sparse map of '%.200s' is damaged", d->name);
    rc = CORE_EFORMAT;
    goto out;
  }
  rc = 0;
out:
  core_free(it);
  format_catalog_close(&cat);
  core_free(plain);
  return rc;
}

static void plan_run(struct core_job *job)
{
  struct dl_job *d = (struct dl_job *)job;
  struct format_manifest m;
  uint8_t *raw = NULL;
  size_t len = 0;
  int rc = read_blob_file(d, d->ds->path, FORMAT_MANIFEST_NAME, MANIFEST_MAX, &raw, &len);
  if (rc == 0) {
    memset(&m, 0, sizeof(m));
    rc = format_manifest_decode_blob(NULL, raw, len, &m);
    if (rc == 0)
      rc = plan(d, d->ds->path, &m);
    else
      snprintf(d->err, sizeof(d->err), "the snapshot's manifest is damaged");
    format_manifest_free(&m);
  }
  core_free(raw);
  d->rc = rc;
  if (d->miss.have)
    d->rc = -EAGAIN; /* whatever the planning made of it: fetch and plan again */
}

/* ---- streaming ---- */

/* The next piece into d->piece: the rest of the current range within one
 * chunk, its padding, or the trailer. */
static void piece_run(struct core_job *job)
{
  static const uint8_t zeros[1024];
  struct dl_job *d = (struct dl_job *)job;
  d->piece = NULL;
  d->piece_len = 0;
  d->rc = 0;
  for (;;) {
    if (d->cur == d->nr) {
      if (d->tar && !d->trailer_sent) {
        d->trailer_sent = 1;
        d->piece = core_malloc(sizeof(zeros));
        memcpy(d->piece, zeros, sizeof(zeros));
        d->piece_len = sizeof(zeros);
      }
      return;
    }
    const struct dl_range *g = &d->r[d->cur];
    if (d->pos < g->a)
      d->pos = g->a;
    if (d->pos >= g->b) {
      if (d->pad_sent < g->pad) {
        uint64_t k = g->pad - d->pad_sent < DL_ZERO_PIECE ? g->pad - d->pad_sent : DL_ZERO_PIECE;
        d->piece = core_calloc(1, (size_t)k);
        d->piece_len = (size_t)k;
        d->pad_sent += k;
        return;
      }
      d->pad_sent = 0;
      d->cur++;
      continue;
    }
    /* the chunk holding pos */
    uint64_t lo = format_index_chunk_at(&d->idx, d->pos), cs_off, ce_off;
    format_index_chunk_range(&d->idx, lo, &cs_off, &ce_off);
    if (d->chunk_i != (int64_t)lo) {
      uint8_t *plain;
      size_t plen;
      /* a chunk the loop side fetched from S3 is decoded from there */
      struct core_slice enc = {(const char *)d->enc, d->enc_len};
      int have = d->enc && d->enc_i == (int64_t)lo;
      int rc = store__api_index_chunk(d->ds, &d->idx, lo, have ? &enc : NULL, NULL, &plain,
                                      &plen);
      core_free(d->enc);
      d->enc = NULL;
      if (rc < 0) {
        d->rc = rc;
        return;
      }
      core_free(d->chunk);
      d->chunk = plain;
      d->chunk_len = plen;
      d->chunk_i = (int64_t)lo;
    }
    uint64_t end = g->b < ce_off ? g->b : ce_off;
    d->piece_len = (size_t)(end - d->pos);
    d->piece = core_malloc(d->piece_len);
    memcpy(d->piece, d->chunk + (d->pos - cs_off), d->piece_len);
    d->pos = end;
    return;
  }
}

static void dl_end(struct dl_job *d)
{
  store_release(d->ds, STORE_OP_READ);
  dl_free(d);
}

static void dl_pull(struct http_request *req, void *ctx);

static void piece_done(struct core_job *job, int status)
{
  struct dl_job *d = (struct dl_job *)job;
  int rc = status < 0 ? status : d->rc;
  if (rc == 0 && d->piece_len == 0 && d->sent != d->total)
    rc = CORE_EFORMAT; /* cannot happen: the plan adds up */
  if (rc < 0) {
    core_warn("file-download %s/%s: %s", d->archive, d->filepath, core_strerror(rc));
    core_free(d->piece);
    d->piece = NULL;
    http_stream_write(d->req, NULL, 0, 1, rc);
    dl_end(d);
    return;
  }
  d->sent += d->piece_len;
  int last = d->sent == d->total;
  int done = last || http_req_gone(d->req);
  uint8_t *p = d->piece;
  d->piece = NULL;
  http_stream_write(d->req, p, d->piece_len, last, 0);
  if (done)
    dl_end(d);
}

/* The chunk the next piece needs when it is not the one held: its index,
 * or -1. Pure memory work on the plan (it does not move the position). */
static int64_t next_chunk(const struct dl_job *d)
{
  size_t cur = d->cur;
  uint64_t pos = d->pos;
  uint64_t pad_sent = d->pad_sent;
  for (; cur < d->nr; cur++, pad_sent = 0) {
    const struct dl_range *g = &d->r[cur];
    if (pos < g->a)
      pos = g->a;
    if (pos < g->b)
      break;
    if (pad_sent < g->pad)
      return -1; /* zeros come first */
  }
  if (cur == d->nr)
    return -1;
  uint64_t lo = format_index_chunk_at(&d->idx, pos);
  return d->chunk_i == (int64_t)lo ? -1 : (int64_t)lo;
}

static void *s3_get(void *ctx, size_t len, size_t *cap)
{
  (void)ctx;
  *cap = len;
  return core_try_malloc(len ? len : 1);
}

static void s3_put(void *ctx, void *buf, size_t cap)
{
  (void)ctx;
  (void)cap;
  core_free(buf);
}

static void s3_fetched(void *arg, int err, uint8_t *data, size_t len, size_t cap)
{
  struct dl_job *d = arg;
  (void)cap; /* from s3_get (cap == len) or core_malloc'd: core_free either way */
  if (err < 0 || http_req_gone(d->req)) {
    core_free(data);
    if (err < 0)
      core_warn("file-download %s/%s: chunk: %s", d->archive, d->filepath, core_strerror(err));
    http_stream_write(d->req, NULL, 0, 1, err < 0 ? err : CORE_EABORTED);
    dl_end(d);
    return;
  }
  d->enc = data;
  d->enc_len = len;
  if (core_job_submit(d->api->loop, &d->job, piece_run, piece_done) < 0) {
    http_stream_write(d->req, NULL, 0, 1, CORE_EABORTED);
    dl_end(d);
  }
}

static void dl_pull(struct http_request *req, void *ctx)
{
  struct dl_job *d = ctx;
  if (http_req_gone(req)) {
    http_stream_write(req, NULL, 0, 1, CORE_EABORTED);
    dl_end(d);
    return;
  }
  if (store_datastore_is_s3(d->ds)) {
    int64_t i = next_chunk(d);
    if (i >= 0) {
      static const struct store_chunk_alloc alloc = {s3_get, s3_put, NULL};
      d->enc_i = i;
      store_s3_chunk_read(d->ds, format_index_digest(&d->idx, (uint64_t)i), &alloc,
                          s3_fetched, d);
      return;
    }
  }
  if (core_job_submit_bulk(d->api->loop, &d->job, piece_run, piece_done) < 0) {
    http_stream_write(req, NULL, 0, 1, CORE_EABORTED);
    dl_end(d);
  }
}

static void plan_done(struct core_job *job, int status);

/* A catalog chunk the S3 cache lacked is there now (or not): plan again
 * from the start. */
static void miss_fetched(void *arg, int err, uint8_t *data, size_t len, size_t cap)
{
  struct dl_job *d = arg;
  (void)len;
  (void)cap;
  core_free(data); /* the read put it into the cache, where the plan reads it */
  if (err < 0) {
    snprintf(d->err, sizeof(d->err), "a chunk of the catalog of '%s' cannot be read: %s",
             d->archive, core_strerror(err));
    d->rc = err;
    plan_done(&d->job, err);
    return;
  }
  d->miss.have = 0;
  d->rc = d->status = 0;
  d->err[0] = '\0';
  core_free(d->idx_buf);
  d->idx_buf = NULL;
  core_free(d->r);
  d->r = NULL;
  d->nr = d->cap = 0;
  d->tar = 0;
  d->sparse = 0;
  d->total = 0;
  if (core_job_submit(d->api->loop, &d->job, plan_run, plan_done) < 0) {
    d->rc = CORE_EABORTED;
    plan_done(&d->job, CORE_EABORTED);
  }
}

static void plan_done(struct core_job *job, int status)
{
  struct dl_job *d = (struct dl_job *)job;
  int rc = status < 0 ? status : d->rc;
  if (rc == -EAGAIN && d->miss.have && d->retries++ < STORE_API_CATALOG_RETRIES) {
    static const struct store_chunk_alloc alloc = {s3_get, s3_put, NULL};
    store_s3_chunk_read(d->ds, d->miss.digest, &alloc, miss_fetched, d);
    return;
  }
  if (rc < 0) {
    http_respond_error(d->req, d->status ? d->status : http_status_for(rc), "%s",
                       d->err[0] ? d->err : core_strerror(rc));
    dl_end(d);
    return;
  }
  if (d->total == 0) {
    http_respond_raw(d->req, 200, "application/octet-stream", "", 0);
    dl_end(d);
    return;
  }
  if (d->chunk == NULL)
    d->chunk_i = -1; /* a sparse file's plan may hold the chunk of its map */
  http_respond_stream(d->req, 200, d->tar ? "application/x-tar" : "application/octet-stream",
                      d->total, dl_pull, d);
}

static void dl_lookup(void *arg, int err, struct store_datastore *ds)
{
  struct dl_job *d = arg;
  if (err) {
    store_api_lookup_error(d->req, http_req_param(d->req, "store"), err, ds);
    dl_free(d);
    return;
  }
  d->ds = ds;
  if (core_job_submit(d->api->loop, &d->job, plan_run, plan_done) < 0) {
    d->rc = CORE_EABORTED;
    plan_done(&d->job, CORE_EABORTED);
  }
}

static void h_file_download(struct http_request *req, void *ctx)
{
  struct store_api *api = ctx;
  if (store_api_check_store(req, http_req_param(req, "store")) < 0)
    return;
  const char *ns = http_req_param(req, "ns");
  const char *type = http_req_param(req, "backup-type");
  const char *id = http_req_param(req, "backup-id");
  const char *an = http_req_param(req, "archive-name");
  const char *fp = http_req_param(req, "filepath");
  int64_t t = -1;
  char *path = NULL;
  const char *msg = store__api_snapshot_params(req, &t);

  if (msg == NULL && (an == NULL || format_name_archive(an) != FORMAT_ARCHIVE_DIDX))
    msg = "archive-name must name a .didx archive";
  else if (msg == NULL && (fp == NULL || (path = store__api_filepath(fp)) == NULL))
    msg = "filepath must be the base64 of a safe path in the archive";
  if (msg) {
    http_respond_error(req, 400, "%s", msg);
    return;
  }
  struct dl_job *d = core_new(struct dl_job);
  d->req = req;
  d->api = api;
  d->ns = core_strdup(ns ? ns : "");
  d->type = core_strdup(type);
  d->id = core_strdup(id);
  d->time = t;
  d->archive = core_strdup(an);
  d->filepath = path;
  store_lookup(api->reg, http_req_param(req, "store"), STORE_OP_READ, dl_lookup, d);
}

void store__api_download_register(struct http_server *s, struct store_api *api)
{
  const struct http_route routes[] = {
    {HTTP_METHOD_GET, "/api2/json/admin/datastore/{store}/file-download", h_file_download, api,
     0, 0,
     ACCESS_NEEDS_OR(ACCESS_PRIV_DATASTORE_READ, ACCESS_PRIV_DATASTORE_BACKUP, ACCESS_ON_NS,
                     ACCESS_IF_GROUP_OWNER)},
  };
  http_server_add_routes(s, routes, sizeof(routes) / sizeof(routes[0]));
}
