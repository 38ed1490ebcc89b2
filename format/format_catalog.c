/* format_catalog.c: catalog writer and reader (see format_catalog.h). */
#include "format/format_catalog.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "format/format_blob.h"
#include "format/format_name.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t magic[8] = {'C', 'A', 'I', 'R', 'N', 'C', 'T', '1'};

#define MAX_ENTRIES ((uint64_t)1 << 32)

/* ---- Helpers ---- */

static void put_le32(uint8_t *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static uint64_t get_le64(const uint8_t *p)
{
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static int put_var(struct core_buf *b, uint64_t v)
{
  uint8_t tmp[10];
  size_t n = 0;
  do {
    uint8_t byte = (uint8_t)(v & 0x7f);
    v >>= 7;
    tmp[n++] = (uint8_t)(byte | (v ? 0x80 : 0));
  } while (v);
  return core_buf_append(b, tmp, n);
}

static uint64_t zigzag(int64_t v)
{
  return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t unzigzag(uint64_t v)
{
  return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* A cursor over untrusted bytes: every read is bounded. */
struct rd {
  const uint8_t *p, *end;
  int bad;
};

static uint64_t get_var(struct rd *r)
{
  uint64_t v = 0;
  for (unsigned shift = 0; shift < 64; shift += 7) {
    if (r->p >= r->end) {
      r->bad = 1;
      return 0;
    }
    uint8_t byte = *r->p++;
    if (shift == 63 && byte > 1) {
      r->bad = 1;
      return 0;
    }
    v |= (uint64_t)(byte & 0x7f) << shift;
    if (!(byte & 0x80))
      return v;
  }
  r->bad = 1;
  return 0;
}

static uint32_t get_var32(struct rd *r)
{
  uint64_t v = get_var(r);
  if (v > UINT32_MAX)
    r->bad = 1;
  return (uint32_t)v;
}

int format_catalog_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
  int aroot = alen == 1 && a[0] == '.', broot = blen == 1 && b[0] == '.';
  if (aroot || broot)
    return broot - aroot;
  size_t n = alen < blen ? alen : blen;
  int c = memcmp(a, b, n);
  if (c != 0)
    return c;
  return alen < blen ? -1 : alen > blen;
}

int format_catalog_safe_path(const char *path, size_t len)
{
  if (len == 0 || len > FORMAT_CATALOG_PATH_MAX || memchr(path, '\0', len) != NULL)
    return 0;
  if (len == 1 && path[0] == '.')
    return 1;
  size_t i = 0;
  while (i <= len) {
    size_t j = i;
    while (j < len && path[j] != '/')
      j++;
    size_t n = j - i;
    if (n == 0 || (n == 1 && path[i] == '.') || (n == 2 && path[i] == '.' && path[i + 1] == '.'))
      return 0;
    i = j + 1;
  }
  return 1;
}

char format_catalog_type_char(uint8_t type)
{
  static const char t[] = "?-dlhcbps";
  return type <= FORMAT_CATALOG_SOCK ? t[type] : '?';
}

const char *format_catalog_type_name(uint8_t type)
{
  static const char *const n[] = {"unknown", "file", "directory", "symlink", "hardlink",
                                  "chardev", "blockdev", "fifo", "socket"};
  return type <= FORMAT_CATALOG_SOCK ? n[type] : n[0];
}

int format_catalog_is_index(const char *name)
{
  size_t n = strlen(name);
  return n > 13 && strcmp(name + n - 13, ".catalog.didx") == 0;
}

int format_catalog_name(const char *archive, char *out, size_t outlen)
{
  size_t n = strlen(archive);
  if (n <= 5 || strcmp(archive + n - 5, ".didx") != 0 || format_catalog_is_index(archive))
    return CORE_ENAME;
  int k = snprintf(out, outlen, "%.*s.catalog.blob", (int)(n - 5), archive);
  if (k < 0 || (size_t)k >= outlen || format_name_archive(out) != FORMAT_ARCHIVE_BLOB)
    return CORE_ENAME;
  return 0;
}

int format_catalog_index_name(const char *archive, char *out, size_t outlen)
{
  size_t n = strlen(archive);
  if (n <= 5 || strcmp(archive + n - 5, ".didx") != 0 || format_catalog_is_index(archive))
    return CORE_ENAME;
  int k = snprintf(out, outlen, "%.*s.catalog.didx", (int)(n - 5), archive);
  if (k < 0 || (size_t)k >= outlen || format_name_archive(out) != FORMAT_ARCHIVE_DIDX)
    return CORE_ENAME;
  return 0;
}

/* ---- Writing ---- */

/* The writer's private record: u32 length of the rest, u32 path length, the
 * path, then the rest: the fields after the path exactly as the catalog
 * encodes them (type through link). Sorting moves only the offsets, and
 * encoding a record is writing its front-coded path and copying the rest. */
#define WHDR 8

void format_catalog_writer_init(struct format_catalog_writer *w)
{
  memset(w, 0, sizeof(*w));
  core_buf_init(&w->recs, SIZE_MAX / 2);
}

void format_catalog_writer_free(struct format_catalog_writer *w)
{
  core_buf_free(&w->recs);
  core_free(w->offs);
  core_free(w->runs);
  memset(w, 0, sizeof(*w));
}

size_t format_catalog_writer_mem(const struct format_catalog_writer *w)
{
  return w->recs.cap + (size_t)w->cap * sizeof(*w->offs);
}

static int encode_rest(struct core_buf *b, const struct format_catalog_entry *e)
{
  int rc = 0;
  rc |= core_buf_append(b, &e->type, 1);
  rc |= put_var(b, e->flags);
  rc |= put_var(b, e->mode);
  rc |= put_var(b, e->uid);
  rc |= put_var(b, e->gid);
  rc |= put_var(b, e->size);
  rc |= put_var(b, zigzag(e->mtime));
  rc |= put_var(b, e->mtime_ns);
  rc |= put_var(b, zigzag(e->ctime));
  rc |= put_var(b, e->ctime_ns);
  rc |= put_var(b, e->ino);
  rc |= put_var(b, e->dev);
  rc |= put_var(b, e->rdev);
  rc |= put_var(b, e->hdr_off);
  rc |= put_var(b, e->data_off - e->hdr_off);
  rc |= put_var(b, e->data_len);
  rc |= put_var(b, e->end_off - e->data_off - e->data_len);
  rc |= put_var(b, e->link_len);
  if (e->link_len)
    rc |= core_buf_append(b, e->link, e->link_len);
  return rc ? -ENOMEM : 0;
}

int format_catalog_writer_add(struct format_catalog_writer *w, const struct format_catalog_entry *e)
{
  uint8_t h[WHDR];
  int rc;
  if (!format_catalog_safe_path(e->path, e->path_len) || e->link_len > FORMAT_CATALOG_PATH_MAX ||
      (e->link_len && memchr(e->link, '\0', e->link_len)) || w->n + w->nspilled >= MAX_ENTRIES ||
      w->sorted)
    return CORE_ENAME;
  /* stream offsets must be ordered within an entry (the reader checks) */
  if (e->data_off < e->hdr_off || e->end_off < e->data_off ||
      e->end_off - e->data_off < e->data_len)
    return CORE_EINVAL;
  if (w->n == w->cap) {
    uint64_t ncap = w->cap ? w->cap * 2 : 1024;
    uint64_t *n = core_try_realloc(w->offs, ncap * sizeof(*n));
    if (n == NULL)
      return -ENOMEM;
    w->offs = n;
    w->cap = ncap;
  }
  size_t at = w->recs.len;
  if ((rc = core_buf_append(&w->recs, h, WHDR)) < 0 ||
      (rc = core_buf_append(&w->recs, e->path, e->path_len)) < 0 ||
      (rc = encode_rest(&w->recs, e)) < 0) {
    w->recs.len = at;
    return rc < 0 ? rc : -ENOMEM;
  }
  put_le32((uint8_t *)w->recs.base + at, (uint32_t)(w->recs.len - at - WHDR - e->path_len));
  put_le32((uint8_t *)w->recs.base + at + 4, (uint32_t)e->path_len);
  w->offs[w->n++] = at;
  return 0;
}

/* Record `off`'s path (its length into *plen) and rest (*rest, *rlen). */
static const char *wrec(const struct core_buf *b, uint64_t off, size_t *plen, const uint8_t **rest,
                        size_t *rlen)
{
  const uint8_t *p = (const uint8_t *)b->base + off;
  *rlen = get_le32(p);
  *plen = get_le32(p + 4);
  *rest = p + WHDR + *plen;
  return (const char *)p + WHDR;
}

static int cmp_offs(const void *a, const void *b, void *arg)
{
  const struct core_buf *buf = arg;
  size_t la, lb, ra, rb;
  const uint8_t *xa, *xb;
  const char *pa = wrec(buf, *(const uint64_t *)a, &la, &xa, &ra);
  const char *pb = wrec(buf, *(const uint64_t *)b, &lb, &xb, &rb);
  return format_catalog_cmp(pa, la, pb, lb);
}

static size_t var_len(uint64_t v)
{
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

static size_t shared_prefix(const char *a, size_t alen, const char *b, size_t blen)
{
  size_t n = 0;
  while (n < alen && n < blen && a[n] == b[n])
    n++;
  return n;
}

/* ---- Merging the runs and the entries in memory ---- */

#define RUN_BUF (256u * 1024) /* more than the largest private record */

struct mrun {
  const struct format_catalog_run *run; /* NULL: the entries in memory */
  uint64_t at;                          /* run bytes read into buf so far */
  uint8_t *buf;
  size_t bpos, blen;
  uint64_t next;                        /* memory: the next sorted entry */
  const char *path;                     /* the head record, when `have` */
  size_t plen, rlen;
  const uint8_t *rest;
  int have;
};

struct merge {
  struct format_catalog_writer *w;
  struct mrun *r;
  size_t n;
};

/* Moves run `m` to its next record. 0, or CORE_EFORMAT for a damaged spill,
 * or the reader's error. */
static int mrun_next(struct merge *g, struct mrun *m)
{
  struct format_catalog_writer *w = g->w;
  m->have = 0;
  if (m->run == NULL) {
    if (m->next < w->n) {
      m->path = wrec(&w->recs, w->offs[m->next++], &m->plen, &m->rest, &m->rlen);
      m->have = 1;
    }
    return 0;
  }
  for (int pass = 0; pass < 2; pass++) {
    size_t left = m->blen - m->bpos;
    if (left >= WHDR) {
      const uint8_t *h = m->buf + m->bpos;
      size_t rlen = get_le32(h), plen = get_le32(h + 4);
      if (plen > FORMAT_CATALOG_PATH_MAX || rlen > RUN_BUF - WHDR - plen)
        return CORE_EFORMAT;
      if (left >= WHDR + plen + rlen) {
        m->path = (const char *)h + WHDR;
        m->plen = plen;
        m->rest = h + WHDR + plen;
        m->rlen = rlen;
        m->bpos += WHDR + plen + rlen;
        m->have = 1;
        return 0;
      }
    }
    if (pass == 1 || m->at == m->run->len)
      break;
    /* keep the partial record, fill the rest of the buffer */
    memmove(m->buf, m->buf + m->bpos, left);
    m->bpos = 0;
    m->blen = left;
    uint64_t k = m->run->len - m->at;
    if (k > RUN_BUF - left)
      k = RUN_BUF - left;
    int rc = w->spill_read(w->spill_ctx, m->run->off + m->at, m->buf + left, (size_t)k);
    if (rc < 0)
      return rc;
    m->at += k;
    m->blen += (size_t)k;
  }
  return m->bpos == m->blen && m->at == m->run->len ? 0 : CORE_EFORMAT;
}

static void merge_free(struct merge *g)
{
  for (size_t i = 0; i < g->n; i++)
    core_free(g->r[i].buf);
  core_free(g->r);
  g->r = NULL;
  g->n = 0;
}

static int merge_start(struct merge *g, struct format_catalog_writer *w)
{
  int rc;
  g->w = w;
  g->n = w->nruns + 1;
  g->r = core_try_malloc(g->n * sizeof(*g->r));
  if (g->r == NULL)
    return -ENOMEM;
  memset(g->r, 0, g->n * sizeof(*g->r));
  for (size_t i = 0; i < w->nruns; i++) {
    g->r[i].run = &w->runs[i];
    if ((g->r[i].buf = core_try_malloc(RUN_BUF)) == NULL) {
      merge_free(g);
      return -ENOMEM;
    }
  }
  for (size_t i = 0; i < g->n; i++)
    if ((rc = mrun_next(g, &g->r[i])) < 0) {
      merge_free(g);
      return rc;
    }
  return 0;
}

/* The run holding the smallest head record, or NULL when all are done. */
static struct mrun *merge_min(struct merge *g)
{
  struct mrun *best = NULL;
  for (size_t i = 0; i < g->n; i++)
    if (g->r[i].have &&
        (best == NULL || format_catalog_cmp(g->r[i].path, g->r[i].plen, best->path,
                                            best->plen) < 0))
      best = &g->r[i];
  return best;
}

static int sort_memory(struct format_catalog_writer *w)
{
  if (w->n > 1)
    qsort_r(w->offs, w->n, sizeof(*w->offs), cmp_offs, &w->recs);
  return 0;
}

int format_catalog_writer_spill(struct format_catalog_writer *w, format_catalog_sink write,
                                format_catalog_spill_read read, void *ctx)
{
  uint64_t start = w->spilled;
  int rc;
  if (w->sorted)
    return CORE_EINVAL;
  w->spill_write = write;
  w->spill_read = read;
  w->spill_ctx = ctx;
  if (w->n == 0)
    return 0;
  struct format_catalog_run *nr = core_try_realloc(w->runs, (w->nruns + 1) * sizeof(*nr));
  if (nr == NULL)
    return -ENOMEM;
  w->runs = nr;
  sort_memory(w);
  for (uint64_t i = 0; i < w->n; i++) {
    size_t plen, rlen;
    const uint8_t *rest;
    const char *path = wrec(&w->recs, w->offs[i], &plen, &rest, &rlen);
    if ((rc = write(ctx, path - WHDR, WHDR + plen + rlen)) < 0)
      return rc;
    w->spilled += WHDR + plen + rlen;
  }
  w->runs[w->nruns].off = start;
  w->runs[w->nruns].len = w->spilled - start;
  w->nruns++;
  w->nspilled += w->n;
  /* the memory goes back: the next run starts small */
  core_buf_free(&w->recs);
  core_buf_init(&w->recs, SIZE_MAX / 2);
  core_free(w->offs);
  w->offs = NULL;
  w->n = w->cap = 0;
  return 0;
}

int format_catalog_writer_size(struct format_catalog_writer *w, uint64_t *total)
{
  uint64_t count = w->n + w->nspilled;
  uint64_t nrestart = (count + FORMAT_CATALOG_RESTART - 1) / FORMAT_CATALOG_RESTART;
  if (!w->sorted) {
    struct merge g;
    char *prev = core_try_malloc(FORMAT_CATALOG_PATH_MAX + 1);
    size_t prev_len = 0;
    int rc;
    if (prev == NULL)
      return -ENOMEM;
    sort_memory(w);
    if ((rc = merge_start(&g, w)) < 0) {
      core_free(prev);
      return rc;
    }
    w->recs_len = 0;
    for (uint64_t i = 0;; i++) {
      struct mrun *m = merge_min(&g);
      size_t shared = 0;
      if (m == NULL)
        break;
      if (i > 0 && format_catalog_cmp(prev, prev_len, m->path, m->plen) == 0) {
        rc = CORE_EEXISTS;
        break;
      }
      if (i % FORMAT_CATALOG_RESTART != 0)
        shared = shared_prefix(prev, prev_len, m->path, m->plen);
      w->recs_len += var_len(shared) + var_len(m->plen - shared) + (m->plen - shared) + m->rlen;
      memcpy(prev, m->path, m->plen);
      prev_len = m->plen;
      if ((rc = mrun_next(&g, m)) < 0)
        break;
    }
    merge_free(&g);
    core_free(prev);
    if (rc < 0)
      return rc;
    w->sorted = 1;
  }
  *total = FORMAT_CATALOG_HDR_LEN + w->recs_len + 8 * nrestart;
  return 0;
}

#define EMIT_PIECE (64u * 1024)

int format_catalog_writer_emit(struct format_catalog_writer *w, format_catalog_sink sink,
                               void *ctx)
{
  uint8_t hdr[FORMAT_CATALOG_HDR_LEN];
  uint64_t count = w->n + w->nspilled;
  uint64_t nrestart = (count + FORMAT_CATALOG_RESTART - 1) / FORMAT_CATALOG_RESTART;
  uint64_t total, at = 0, *restarts = NULL, i = 0;
  struct core_buf piece;
  struct merge g = {0};
  char *prev = NULL;
  size_t prev_len = 0;
  int rc;

  if ((rc = format_catalog_writer_size(w, &total)) < 0)
    return rc;
  restarts = core_try_malloc((nrestart ? nrestart : 1) * sizeof(*restarts));
  prev = core_try_malloc(FORMAT_CATALOG_PATH_MAX + 1);
  if (restarts == NULL || prev == NULL) {
    core_free(restarts);
    core_free(prev);
    return -ENOMEM;
  }
  core_buf_init(&piece, 2 * EMIT_PIECE + FORMAT_CATALOG_REC_MAX);
  if ((rc = merge_start(&g, w)) < 0)
    goto out;
  memcpy(hdr, magic, 8);
  put_le32(hdr + 8, 1);
  put_le32(hdr + 12, FORMAT_CATALOG_RESTART);
  put_le64(hdr + 16, count);
  put_le64(hdr + 24, w->recs_len);
  put_le64(hdr + 32, nrestart);
  if ((rc = sink(ctx, hdr, sizeof(hdr))) < 0)
    goto out;
  for (struct mrun *m; (m = merge_min(&g)) != NULL; i++) {
    size_t shared = 0;
    if (i % FORMAT_CATALOG_RESTART == 0)
      restarts[i / FORMAT_CATALOG_RESTART] = at + piece.len;
    else
      shared = shared_prefix(prev, prev_len, m->path, m->plen);
    if ((rc = put_var(&piece, shared)) < 0 || (rc = put_var(&piece, m->plen - shared)) < 0 ||
        (rc = core_buf_append(&piece, m->path + shared, m->plen - shared)) < 0 ||
        (rc = core_buf_append(&piece, m->rest, m->rlen)) < 0)
      goto out;
    memcpy(prev, m->path, m->plen);
    prev_len = m->plen;
    if ((rc = mrun_next(&g, m)) < 0)
      goto out;
    if (piece.len >= EMIT_PIECE) {
      if ((rc = sink(ctx, piece.base, piece.len)) < 0)
        goto out;
      at += piece.len;
      core_buf_reset(&piece);
    }
  }
  at += piece.len;
  if (at != w->recs_len || i != count) {
    rc = CORE_EINVAL; /* cannot happen: the size pass counts the same bytes */
    goto out;
  }
  for (uint64_t k = 0; k < nrestart; k++) {
    uint8_t b8[8];
    put_le64(b8, restarts[k]);
    if ((rc = core_buf_append(&piece, b8, 8)) < 0)
      goto out;
    if (piece.len >= EMIT_PIECE) {
      if ((rc = sink(ctx, piece.base, piece.len)) < 0)
        goto out;
      core_buf_reset(&piece);
    }
  }
  if (piece.len > 0)
    rc = sink(ctx, piece.base, piece.len);
out:
  merge_free(&g);
  core_buf_free(&piece);
  core_free(restarts);
  core_free(prev);
  return rc;
}

static int sink_buf(void *ctx, const void *data, size_t len)
{
  return core_buf_append(ctx, data, len);
}

int format_catalog_writer_finish(struct format_catalog_writer *w, struct core_buf *out)
{
  size_t base = out->len;
  int rc = format_catalog_writer_emit(w, sink_buf, out);
  if (rc < 0)
    out->len = base;
  return rc;
}

/* ---- Reading ---- */

/* The header's numbers, checked against the catalog's total size. */
static int check_header(struct format_catalog *c, const uint8_t *p, uint64_t len)
{
  if (len < FORMAT_CATALOG_HDR_LEN || memcmp(p, magic, 8) != 0 || get_le32(p + 8) != 1)
    return CORE_EFORMAT;
  uint32_t interval = get_le32(p + 12);
  uint64_t count = get_le64(p + 16), rlen = get_le64(p + 24), nr = get_le64(p + 32);
  uint64_t avail = len - FORMAT_CATALOG_HDR_LEN;
  if (interval == 0 || interval > 4096 || count > MAX_ENTRIES || rlen > avail ||
      nr != (count + interval - 1) / interval || nr > (avail - rlen) / 8 ||
      avail - rlen != nr * 8 || (count > 0 && rlen < count * 22) || (count == 0 && rlen != 0))
    return CORE_EFORMAT;
  c->recs_len = rlen;
  c->nrestart = nr;
  c->count = count;
  c->interval = interval;
  return 0;
}

/* Restart offsets: the first at 0, strictly increasing, inside the records. */
static int check_restarts(const struct format_catalog *c)
{
  for (uint64_t i = 0; i < c->nrestart; i++) {
    uint64_t o = get_le64(c->restarts + 8 * i);
    if ((i == 0 && o != 0) || o >= c->recs_len ||
        (i > 0 && o <= get_le64(c->restarts + 8 * (i - 1))))
      return CORE_EFORMAT;
  }
  return 0;
}

int format_catalog_open(struct format_catalog *c, const void *buf, size_t len)
{
  const uint8_t *p = buf;
  int rc;
  memset(c, 0, sizeof(*c));
  if ((rc = check_header(c, p, len)) < 0)
    return rc;
  c->recs = p + FORMAT_CATALOG_HDR_LEN;
  c->restarts = c->recs + c->recs_len;
  return check_restarts(c);
}

static int src_read(struct format_catalog *c, uint64_t off, void *dst, size_t len)
{
  if (off > c->src.size || len > c->src.size - off)
    return CORE_EFORMAT;
  c->reads++;
  c->read_bytes += len;
  return c->src.read(c->src.ctx, off, dst, len);
}

int format_catalog_open_source(struct format_catalog *c, const struct format_catalog_source *src)
{
  uint8_t hdr[FORMAT_CATALOG_HDR_LEN];
  uint64_t tlen;
  int rc;
  memset(c, 0, sizeof(*c));
  c->src = *src;
  if (src->read == NULL || src->size < FORMAT_CATALOG_HDR_LEN) {
    rc = CORE_EFORMAT;
    goto fail;
  }
  if ((rc = src_read(c, 0, hdr, sizeof(hdr))) < 0 || (rc = check_header(c, hdr, src->size)) < 0)
    goto fail;
  tlen = c->nrestart * 8;
  if (tlen > FORMAT_CATALOG_RESTARTS_MAX) {
    rc = CORE_EFORMAT;
    goto fail;
  }
  if ((c->owned = core_try_malloc(tlen ? (size_t)tlen : 1)) == NULL) {
    rc = -ENOMEM;
    goto fail;
  }
  if (tlen && (rc = src_read(c, FORMAT_CATALOG_HDR_LEN + c->recs_len, c->owned, (size_t)tlen)) < 0)
    goto fail;
  c->restarts = c->owned;
  if ((rc = check_restarts(c)) < 0)
    goto fail;
  return 0;
fail:
  format_catalog_close(c);
  return rc;
}

/* Probes cached per catalog: the nodes of the binary search's first
 * PROBE_LEVELS levels (heap numbering: the root 1, children 2i and 2i+1). */
#define PROBE_LEVELS 8
#define PROBE_NODES (1u << PROBE_LEVELS)

struct format_catalog_probe {
  char *path; /* NULL until probed */
  size_t len;
};

void format_catalog_close(struct format_catalog *c)
{
  if (c->src.close)
    c->src.close(c->src.ctx);
  if (c->probes)
    for (unsigned i = 0; i < PROBE_NODES; i++)
      core_free(c->probes[i].path);
  core_free(c->probes);
  core_free(c->owned);
  memset(c, 0, sizeof(*c));
}

void format_catalog_chunk_stats(const struct format_catalog *c, uint64_t *fetched,
                                uint64_t *total)
{
  *fetched = *total = 0;
  if (c->src.chunks)
    c->src.chunks(c->src.ctx, fetched, total);
}

void format_catalog_iter_init(struct format_catalog_iter *it, const struct format_catalog *c)
{
  it->c = c;
  it->idx = 0;
  it->pos = 0;
  it->path_len = 0;
  it->path[0] = '\0';
  it->link[0] = '\0';
  it->win_off = it->win_len = 0;
}

/* Reads the window for record offset `pos`: `want` bytes (or all the
 * records left), at most FORMAT_CATALOG_WINDOW. */
static int fill(struct format_catalog_iter *it, uint64_t pos, uint64_t want)
{
  struct format_catalog *c = (struct format_catalog *)it->c;
  uint64_t n = c->recs_len - pos;
  if (want > FORMAT_CATALOG_WINDOW)
    want = FORMAT_CATALOG_WINDOW;
  if (n > want)
    n = want;
  it->win_len = 0;
  int rc = src_read(c, FORMAT_CATALOG_HDR_LEN + pos, it->win, (size_t)n);
  if (rc < 0)
    return rc;
  it->win_off = pos;
  it->win_len = n;
  return 0;
}

/* Makes the bytes from record offset `pos` readable at *p..*end: the whole
 * buffer, or the iterator's window. A window is refilled when `pos` is
 * outside it; one that ends inside a record is refilled from the record
 * (full) by format_catalog_next before the record counts as damaged. A
 * window after a jump starts small (a lookup decodes part of one block)
 * and doubles with each sequential refill (an iteration reads large
 * pieces). */
static int window(struct format_catalog_iter *it, uint64_t pos, const uint8_t **p,
                  const uint8_t **end)
{
  const struct format_catalog *c = it->c;
  int rc;
  if (c->recs) {
    *p = c->recs + pos;
    *end = c->recs + c->recs_len;
    return 0;
  }
  if (it->win_len == 0 || it->win_len > FORMAT_CATALOG_WINDOW || pos < it->win_off ||
      pos >= it->win_off + it->win_len) {
    uint64_t want = it->win_len > 0 && pos == it->win_off + it->win_len ? 2 * it->win_len : 4096;
    if ((rc = fill(it, pos, want)) < 0)
      return rc;
  }
  *p = it->win + (pos - it->win_off);
  *end = it->win + it->win_len;
  return 0;
}

/* Decodes the record at r->p into it->path (from `shared` bytes of the
 * previous path on), it->link and *e. Returns the bytes it took, or
 * CORE_EFORMAT (also for a record that runs past r->end). */
static int64_t decode(struct format_catalog_iter *it, struct format_catalog_entry *e, struct rd *r,
                      int restart, const char *prev_last, size_t prev_len)
{
  const uint8_t *start = r->p;
  uint64_t shared = get_var(r), slen = get_var(r);
  if (r->bad || (restart && shared != 0) || shared > prev_len || slen > FORMAT_CATALOG_PATH_MAX ||
      shared + slen > FORMAT_CATALOG_PATH_MAX || slen > (uint64_t)(r->end - r->p))
    return CORE_EFORMAT;
  memcpy(it->path, prev_last, (size_t)shared);
  memcpy(it->path + shared, r->p, slen);
  r->p += slen;
  it->path_len = (size_t)(shared + slen);
  it->path[it->path_len] = '\0';
  if (!format_catalog_safe_path(it->path, it->path_len))
    return CORE_EFORMAT;
  /* strictly increasing: within a block always; across a block boundary
   * when the iterator walked there (after a jump the previous path is
   * unknown: validate checks every boundary) */
  if ((!restart || prev_len > 0) &&
      format_catalog_cmp(prev_last, prev_len, it->path, it->path_len) >= 0)
    return CORE_EFORMAT;
  if (r->p >= r->end)
    return CORE_EFORMAT;
  memset(e, 0, sizeof(*e));
  e->type = *r->p++;
  e->flags = get_var32(r);
  e->mode = get_var32(r);
  e->uid = get_var32(r);
  e->gid = get_var32(r);
  e->size = get_var(r);
  e->mtime = unzigzag(get_var(r));
  e->mtime_ns = get_var32(r);
  e->ctime = unzigzag(get_var(r));
  e->ctime_ns = get_var32(r);
  e->ino = get_var(r);
  e->dev = get_var(r);
  e->rdev = get_var(r);
  e->hdr_off = get_var(r);
  uint64_t dh = get_var(r), dl = get_var(r), pad = get_var(r);
  uint64_t llen = get_var(r);
  if (r->bad || e->type < FORMAT_CATALOG_FILE || e->type > FORMAT_CATALOG_SOCK ||
      e->mtime_ns >= 1000000000u || e->ctime_ns >= 1000000000u || dh > UINT64_MAX - e->hdr_off ||
      dl > UINT64_MAX - e->hdr_off - dh || pad > UINT64_MAX - e->hdr_off - dh - dl ||
      llen > FORMAT_CATALOG_PATH_MAX || llen > (uint64_t)(r->end - r->p) ||
      memchr(r->p, '\0', (size_t)llen) != NULL)
    return CORE_EFORMAT;
  e->data_off = e->hdr_off + dh;
  e->data_len = dl;
  e->end_off = e->data_off + dl + pad;
  /* a file's stored data never exceeds its size; others have none */
  if ((e->type == FORMAT_CATALOG_FILE && dl > e->size) ||
      (e->type != FORMAT_CATALOG_FILE && dl != 0))
    return CORE_EFORMAT;
  memcpy(it->link, r->p, (size_t)llen);
  it->link[llen] = '\0';
  r->p += llen;
  if (e->type == FORMAT_CATALOG_HARDLINK &&
      (!format_catalog_safe_path(it->link, (size_t)llen) || (llen == 1 && it->link[0] == '.')))
    return CORE_EFORMAT;
  e->path = it->path;
  e->path_len = it->path_len;
  e->link = it->link;
  e->link_len = (size_t)llen;
  return (int64_t)(r->p - start);
}

int format_catalog_next(struct format_catalog_iter *it, struct format_catalog_entry *e)
{
  const struct format_catalog *c = it->c;
  struct rd r;
  char prev_last[FORMAT_CATALOG_PATH_MAX + 1];
  size_t prev_len = it->path_len;
  int restart, rc;
  int64_t n;

  if (it->idx >= c->count)
    return 0;
  restart = it->idx % c->interval == 0;
  if (restart && get_le64(c->restarts + 8 * (it->idx / c->interval)) != it->pos)
    return CORE_EFORMAT;
  if (it->pos >= c->recs_len)
    return CORE_EFORMAT;
  if ((rc = window(it, it->pos, &r.p, &r.end)) < 0)
    return rc;
  memcpy(prev_last, it->path, prev_len);
  r.bad = 0;
  n = decode(it, e, &r, restart, prev_last, prev_len);
  if (n < 0 && c->recs == NULL && it->win_off + it->win_len < c->recs_len &&
      (it->win_off != it->pos || it->win_len < FORMAT_CATALOG_REC_MAX)) {
    /* the window may have cut the record: again from a full one */
    if ((rc = fill(it, it->pos, FORMAT_CATALOG_REC_MAX)) < 0)
      return rc;
    r.p = it->win;
    r.end = it->win + it->win_len;
    r.bad = 0;
    n = decode(it, e, &r, restart, prev_last, prev_len);
  }
  if (n < 0) {
    it->path_len = 0; /* the path buffer holds no valid previous path */
    return CORE_EFORMAT;
  }
  it->pos += (uint64_t)n;
  it->idx++;
  if (it->idx == c->count && it->pos != c->recs_len)
    return CORE_EFORMAT;
  return 1;
}

/* The first path of restart block `b` (a binary search probe): only its
 * two length varints and the path are read. */
static int block_path(const struct format_catalog *c, uint64_t b, char *out, size_t *len)
{
  uint8_t head[8];
  struct rd r;
  uint64_t off = get_le64(c->restarts + 8 * b), n = c->recs_len - off;
  int rc;
  if (c->recs) {
    r.p = c->recs + off;
    r.end = c->recs + c->recs_len;
  } else {
    if (n > sizeof(head))
      n = sizeof(head);
    if ((rc = src_read((struct format_catalog *)c, FORMAT_CATALOG_HDR_LEN + off, head,
                       (size_t)n)) < 0)
      return rc;
    r.p = head;
    r.end = head + n;
  }
  r.bad = 0;
  uint64_t shared = get_var(&r), slen = get_var(&r);
  uint64_t at = off + (uint64_t)(r.p - (c->recs ? c->recs + off : head));
  if (r.bad || shared != 0 || slen == 0 || slen > FORMAT_CATALOG_PATH_MAX ||
      slen > c->recs_len - at)
    return CORE_EFORMAT;
  if (c->recs)
    memcpy(out, c->recs + at, (size_t)slen);
  else if ((rc = src_read((struct format_catalog *)c, FORMAT_CATALOG_HDR_LEN + at, out,
                          (size_t)slen)) < 0)
    return rc;
  out[slen] = '\0';
  *len = (size_t)slen;
  return format_catalog_safe_path(out, *len) ? 0 : CORE_EFORMAT;
}

/* Positions `it` at restart block `b`. */
static void iter_block(struct format_catalog_iter *it, uint64_t b)
{
  it->idx = b * it->c->interval;
  it->pos = get_le64(it->c->restarts + 8 * b);
  it->path_len = 0;
}

int format_catalog_iter_seek(struct format_catalog_iter *it, const char *path, size_t len)
{
  const struct format_catalog *c = it->c;
  struct format_catalog_entry e;
  uint64_t lo = 0, hi = c->nrestart;
  /* the last block whose first path is < `path`: the probes read only
   * the blocks' first paths (into it->link, free until the decoding) */
  uint64_t node = 1;
  while (hi - lo > 1) {
    uint64_t mid = lo + (hi - lo) / 2;
    struct format_catalog_probe *pr = NULL;
    const char *probe = it->link;
    size_t plen;
    if (c->recs == NULL && node < PROBE_NODES) {
      struct format_catalog *w = (struct format_catalog *)c;
      if (w->probes == NULL)
        w->probes = core_calloc(PROBE_NODES, sizeof(*w->probes));
      pr = &w->probes[node];
    }
    if (pr && pr->path) {
      probe = pr->path;
      plen = pr->len;
    } else {
      int rc = block_path(c, mid, it->link, &plen);
      if (rc < 0)
        return rc;
      if (pr) {
        pr->path = core_strndup(it->link, plen);
        pr->len = plen;
      }
    }
    int less = format_catalog_cmp(probe, plen, path, len) < 0;
    if (less)
      lo = mid;
    else
      hi = mid;
    node = 2 * node + (uint64_t)less;
  }
  /* the window stays: the next seek of a listing often lands in it */
  it->idx = it->pos = 0;
  it->path_len = 0;
  it->path[0] = it->link[0] = '\0';
  if (c->nrestart == 0)
    return 0;
  iter_block(it, lo);
  /* decode until the next entry is >= path; remember where it started */
  for (;;) {
    uint64_t idx = it->idx, pos = it->pos;
    char keep[FORMAT_CATALOG_PATH_MAX + 1];
    size_t keep_len = it->path_len;
    memcpy(keep, it->path, keep_len);
    int rc = format_catalog_next(it, &e);
    if (rc < 0)
      return rc;
    if (rc == 0 || format_catalog_cmp(e.path, e.path_len, path, len) >= 0) {
      it->idx = idx;
      it->pos = pos;
      memcpy(it->path, keep, keep_len);
      it->path_len = keep_len;
      it->path[keep_len] = '\0';
      return 0;
    }
  }
}

int format_catalog_lookup(const struct format_catalog *c, struct format_catalog_iter *it,
                          const char *path, struct format_catalog_entry *e)
{
  size_t len = strlen(path);
  int rc;
  /* an iterator of this catalog keeps its window: lookups of neighbours
   * (a directory's files, one after the other) read no record twice */
  if (it->c != c || it->win_len > FORMAT_CATALOG_WINDOW)
    format_catalog_iter_init(it, c);
  if ((rc = format_catalog_iter_seek(it, path, len)) < 0)
    return rc;
  rc = format_catalog_next(it, e);
  if (rc <= 0)
    return rc;
  return format_catalog_cmp(e->path, e->path_len, path, len) == 0 ? 1 : 0;
}

int format_catalog_from_blob(struct format_catalog *c, const void *blob, size_t len,
                             uint8_t **plain, size_t *plen)
{
  *plain = NULL;
  *plen = 0;
  int rc = format_blob_decode(NULL, blob, len, NULL, FORMAT_BLOB_MAX_SIZE, NULL, plain, plen);
  if (rc == 0 && (rc = format_catalog_open(c, *plain, *plen)) == 0)
    rc = format_catalog_validate(c);
  if (rc < 0) {
    core_free(*plain);
    *plain = NULL;
    *plen = 0;
  }
  return rc;
}

int format_catalog_children(struct format_catalog_iter *it, const struct format_catalog *c,
                            const char *prefix, size_t plen)
{
  format_catalog_iter_init(it, c);
  return format_catalog_iter_seek(it, prefix, plen);
}

int format_catalog_next_child(struct format_catalog_iter *it, const char *prefix, size_t plen,
                              struct format_catalog_entry *e)
{
  int rc;
  while ((rc = format_catalog_next(it, e)) > 0) {
    if (strcmp(e->path, ".") == 0)
      continue;
    if (e->path_len <= plen || memcmp(e->path, prefix, plen) != 0)
      return 0;
    const char *slash = memchr(e->path + plen, '/', e->path_len - plen);
    if (slash == NULL)
      return 1;
    /* a grandchild: jump past this child's subtree ("name/" < "name0") */
    size_t n = (size_t)(slash - e->path);
    char *next = core_malloc(n + 2);
    memcpy(next, e->path, n);
    next[n] = '0';
    next[n + 1] = '\0';
    rc = format_catalog_iter_seek(it, next, n + 1);
    core_free(next);
    if (rc < 0)
      return rc;
  }
  return rc;
}

int format_catalog_validate(const struct format_catalog *c)
{
  struct format_catalog_iter *it = core_try_malloc(sizeof(*it));
  struct format_catalog_entry e;
  char *prev = core_try_malloc(FORMAT_CATALOG_PATH_MAX + 1);
  size_t prev_len = 0;
  int rc = 0, first = 1;
  if (it == NULL || prev == NULL) {
    core_free(it);
    core_free(prev);
    return -ENOMEM;
  }
  format_catalog_iter_init(it, c);
  while ((rc = format_catalog_next(it, &e)) > 0) {
    if (!first && format_catalog_cmp(prev, prev_len, e.path, e.path_len) >= 0) {
      rc = CORE_EFORMAT;
      break;
    }
    memcpy(prev, e.path, e.path_len);
    prev_len = e.path_len;
    first = 0;
  }
  if (rc == 0 && it->idx != c->count)
    rc = CORE_EFORMAT;
  core_free(it);
  core_free(prev);
  return rc;
}
