/* format_catalog_write.c: the catalog writer: entries kept compactly, sorted,
 * spilled in runs past a memory bound and merged while encoding
 * (see format_catalog.h). */
#include "format/format_catalog.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "format/format_blob.h"
#include "format/format_catalog_int.h"
#include "format/format_name.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


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
  memcpy(hdr, FCAT_MAGIC, 8);
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

