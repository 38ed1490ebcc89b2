/* format_catalog_read.c: the catalog reader over a whole buffer or a ranged
 * source, validating every window it decodes (see format_catalog.h). */
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

/* The header's numbers, checked against the catalog's total size. */
static int check_header(struct format_catalog *c, const uint8_t *p, uint64_t len)
{
  if (len < FORMAT_CATALOG_HDR_LEN || memcmp(p, FCAT_MAGIC, 8) != 0 || get_le32(p + 8) != 1)
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
