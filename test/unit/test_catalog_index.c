/* test_catalog_index.c: the catalog read by ranges (format_catalog.h,
 * format_catalog_open_source), as NAME.catalog.didx is: the same results as
 * the whole buffer, windows across chunk boundaries, records larger than a
 * first window, hostile catalogs refused window by window exactly as the
 * whole-buffer validation refuses them, source errors passed on, and the
 * chunks a lookup reads in a million-entry catalog. */
#include "unit.h"

#include "client/client_backup.h"
#include "client/client_chunker.h"
#include "core/core_alloc.h"
#include "core/core_buf.h"
#include "core/core_error.h"
#include "format/format_catalog.h"

#include <errno.h>
#include <stdint.h>

/* ---- a chunked in-memory source, as a dynamic index is ---- */

#define CACHE 4

struct chunked {
  const uint8_t *data;
  uint64_t size;
  uint64_t *ends; /* chunk end offsets, ascending */
  uint64_t n;
  int64_t cache[CACHE]; /* chunk indexes held (LRU by position) */
  uint64_t fetched, reads;
  int fail_after; /* > 0: the read after this many fetches fails */
};

/* Cuts with the client's chunker at `avg` (32-bit seed-free gear), or at
 * fixed `avg` bytes when `fixed`. */
static void chunk_up(struct chunked *s, const void *data, uint64_t size, size_t avg, int fixed)
{
  struct client_chunker ch;
  uint64_t off = 0, cap = 16;
  memset(s, 0, sizeof(*s));
  s->data = data;
  s->size = size;
  s->ends = core_malloc(cap * sizeof(*s->ends));
  if (!fixed)
    ASSERT_OK(client_chunker_init(&ch, CLIENT_CHUNKER_GEAR, avg / 4, avg, avg * 4));
  while (off < size) {
    uint64_t left = size - off, k;
    if (fixed) {
      k = left < avg ? left : avg;
    } else {
      k = client_chunker_scan(&ch, (const uint8_t *)data + off, (size_t)left);
      if (k == 0)
        k = left;
    }
    off += k;
    if (s->n == cap) {
      cap *= 2;
      s->ends = core_realloc(s->ends, cap * sizeof(*s->ends));
    }
    s->ends[s->n++] = off;
  }
  for (int i = 0; i < CACHE; i++)
    s->cache[i] = -1;
}

static int chunked_read(void *ctx, uint64_t off, void *dst, size_t len)
{
  struct chunked *s = ctx;
  size_t done = 0;
  s->reads++;
  while (done < len) {
    uint64_t lo = 0, hi = s->n;
    while (lo < hi) {
      uint64_t mid = lo + (hi - lo) / 2;
      if (s->ends[mid] > off)
        hi = mid;
      else
        lo = mid + 1;
    }
    if (lo == s->n)
      return CORE_EFORMAT;
    int hit = -1;
    for (int i = 0; i < CACHE; i++)
      if (s->cache[i] == (int64_t)lo)
        hit = i;
    if (hit < 0) {
      if (s->fail_after > 0 && s->fetched >= (uint64_t)s->fail_after)
        return -EIO;
      s->fetched++;
      hit = CACHE - 1; /* the least recently used goes */
    }
    int64_t keep = (int64_t)lo;
    for (int i = hit; i > 0; i--)
      s->cache[i] = s->cache[i - 1];
    s->cache[0] = keep;
    uint64_t start = lo ? s->ends[lo - 1] : 0, end = s->ends[lo];
    size_t k = (size_t)(end - off);
    if (k > len - done)
      k = len - done;
    memcpy((uint8_t *)dst + done, s->data + off, k);
    done += k;
    off += k;
    (void)start;
  }
  return 0;
}

static void chunked_stats(void *ctx, uint64_t *fetched, uint64_t *total)
{
  struct chunked *s = ctx;
  *fetched = s->fetched;
  *total = s->n;
}

static int open_chunked(struct format_catalog *c, struct chunked *s)
{
  struct format_catalog_source src = {0};
  src.size = s->size;
  src.read = chunked_read;
  src.chunks = chunked_stats;
  src.ctx = s;
  return format_catalog_open_source(c, &src);
}

/* ---- catalogs ---- */

static void add(struct format_catalog_writer *w, const char *path, uint8_t type, uint64_t off,
                const char *link)
{
  struct format_catalog_entry e;
  memset(&e, 0, sizeof(e));
  e.path = path;
  e.path_len = strlen(path);
  e.link = link ? link : "";
  e.link_len = link ? strlen(link) : 0;
  e.type = type;
  e.mode = type == FORMAT_CATALOG_DIR ? 040755 : 0100644;
  e.uid = 1000;
  e.size = type == FORMAT_CATALOG_FILE ? off % 5000 : 0;
  e.mtime = 1700000000 + (int64_t)off;
  e.ino = off + 3;
  e.hdr_off = off * 8192;
  e.data_off = e.hdr_off + 512;
  e.data_len = e.size;
  e.end_off = e.data_off + (e.size + 511) / 512 * 512;
  ASSERT_OK(format_catalog_writer_add(w, &e));
}

/* `n` files in 7 directories, and a few records larger than a first window
 * (4 KiB paths and link targets). */
static void build(struct core_buf *out, unsigned n, int long_names)
{
  struct format_catalog_writer w;
  char path[FORMAT_CATALOG_PATH_MAX + 1];
  format_catalog_writer_init(&w);
  add(&w, ".", FORMAT_CATALOG_DIR, 0, NULL);
  for (unsigned d = 0; d < 7; d++) {
    snprintf(path, sizeof(path), "dir%u", d);
    add(&w, path, FORMAT_CATALOG_DIR, 1 + d, NULL);
  }
  for (unsigned i = 0; i < n; i++) {
    snprintf(path, sizeof(path), "dir%u/file-%06u.dat", i % 7, i);
    add(&w, path, FORMAT_CATALOG_FILE, 100 + i, NULL);
  }
  if (long_names) {
    char link[FORMAT_CATALOG_PATH_MAX + 1];
    for (unsigned k = 0; k < 5; k++) {
      size_t len = FORMAT_CATALOG_PATH_MAX - k;
      memset(path, 'a' + (int)k, len);
      memcpy(path, "dir3/", 5);
      path[len] = '\0';
      memset(link, 'z', FORMAT_CATALOG_PATH_MAX);
      link[FORMAT_CATALOG_PATH_MAX] = '\0';
      add(&w, path, FORMAT_CATALOG_SYMLINK, 10 + k, link);
    }
  }
  core_buf_init(out, (size_t)1 << 30);
  ASSERT_OK(format_catalog_writer_finish(&w, out));
  format_catalog_writer_free(&w);
}

static int same(const struct format_catalog_entry *a, const struct format_catalog_entry *b)
{
  return a->path_len == b->path_len && memcmp(a->path, b->path, a->path_len) == 0 &&
         a->link_len == b->link_len && memcmp(a->link, b->link, a->link_len) == 0 &&
         a->type == b->type && a->size == b->size && a->mtime == b->mtime && a->ino == b->ino &&
         a->hdr_off == b->hdr_off && a->data_off == b->data_off && a->end_off == b->end_off;
}

/* Iteration, every lookup and listings agree with the whole buffer, for
 * chunks small enough that records and windows straddle many boundaries. */
static void check_same(const struct core_buf *b, size_t avg, int fixed)
{
  struct format_catalog mem, ran;
  struct format_catalog_iter *i1 = core_new(struct format_catalog_iter);
  struct format_catalog_iter *i2 = core_new(struct format_catalog_iter);
  struct format_catalog_iter *look = core_new(struct format_catalog_iter);
  struct format_catalog_entry e1, e2, f;
  struct chunked s;
  int r1, r2;
  uint64_t n = 0;

  chunk_up(&s, b->base, b->len, avg, fixed);
  ASSERT(s.n > 8);
  ASSERT_OK(format_catalog_open(&mem, b->base, b->len));
  ASSERT_OK(open_chunked(&ran, &s));
  ASSERT_EQ(ran.count, mem.count);
  format_catalog_iter_init(i1, &mem);
  format_catalog_iter_init(i2, &ran);
  for (;;) {
    r1 = format_catalog_next(i1, &e1);
    r2 = format_catalog_next(i2, &e2);
    ASSERT_EQ(r1, r2);
    if (r1 <= 0)
      break;
    ASSERT(same(&e1, &e2));
    /* every entry found again by a lookup over the ranged form */
    char *p = core_strndup(e1.path, e1.path_len);
    ASSERT_EQ(format_catalog_lookup(&ran, look, p, &f), 1);
    ASSERT(same(&e1, &f));
    core_free(p);
    n++;
  }
  ASSERT_EQ(r1, 0);
  ASSERT_EQ(n, mem.count);
  ASSERT_EQ(format_catalog_lookup(&ran, look, "dir3/file-999999.dat", &f), 0);
  ASSERT_EQ(format_catalog_lookup(&ran, look, "zzz", &f), 0);
  /* a listing skips the subtrees below */
  for (unsigned d = 0; d < 7; d++) {
    char prefix[16];
    unsigned k1 = 0, k2 = 0;
    snprintf(prefix, sizeof(prefix), "dir%u/", d);
    size_t pl = strlen(prefix);
    ASSERT_OK(format_catalog_children(i1, &mem, prefix, pl));
    while ((r1 = format_catalog_next_child(i1, prefix, pl, &e1)) > 0)
      k1++;
    ASSERT_OK(format_catalog_children(i2, &ran, prefix, pl));
    while ((r2 = format_catalog_next_child(i2, prefix, pl, &e2)) > 0)
      k2++;
    ASSERT_EQ(r1, 0);
    ASSERT_EQ(r2, 0);
    ASSERT_EQ(k1, k2);
  }
  ASSERT_OK(format_catalog_validate(&ran));
  format_catalog_close(&ran);
  core_free(s.ends);
  core_free(i1);
  core_free(i2);
  core_free(look);
}

UNIT_TEST(ranged_same_as_whole)
{
  struct core_buf b;
  build(&b, 3000, 1);
  check_same(&b, 1024, 1);  /* fixed 1 KiB chunks: every window spans several */
  check_same(&b, 777, 1);   /* boundaries in the middle of records */
  check_same(&b, 4096, 0);  /* content-defined, as the client cuts */
  core_buf_free(&b);
}

/* A lookup reads the header, the restart table and a few windows: far
 * fewer chunks than the catalog has. */
UNIT_TEST(lookup_reads_few_chunks)
{
  struct core_buf b;
  struct format_catalog c;
  struct format_catalog_iter *it = core_new(struct format_catalog_iter);
  struct format_catalog_entry e;
  struct chunked s;
  uint64_t fetched, total;
  build(&b, 20000, 0);
  chunk_up(&s, b.base, b.len, 4096, 0);
  ASSERT_OK(open_chunked(&c, &s));
  ASSERT_EQ(format_catalog_lookup(&c, it, "dir4/file-012345.dat", &e), 1);
  format_catalog_chunk_stats(&c, &fetched, &total);
  printf("  %zu bytes in %llu chunks: a lookup fetched %llu chunks\n", b.len,
         (unsigned long long)total, (unsigned long long)fetched);
  ASSERT(total > 100);
  ASSERT(fetched < total / 4);
  format_catalog_close(&c);
  core_free(s.ends);
  core_free(it);
  core_buf_free(&b);
}

/* Hostile catalogs: every truncation and many single-byte changes give the
 * same verdict read by ranges (open, then a full iteration) as the whole
 * buffer's open and validate; lookups never read outside a window (ASan). */
UNIT_TEST(hostile_windows)
{
  struct core_buf b;
  struct format_catalog_iter *it = core_new(struct format_catalog_iter);
  struct format_catalog_entry e;
  build(&b, 300, 1);
  for (size_t i = 0; i < b.len; i += (i < 200 || i > b.len - 400) ? 1 : 7) {
    for (int mode = 0; mode < 2; mode++) {
      size_t len = mode == 0 ? i : b.len;
      uint8_t *copy = malloc(len ? len : 1);
      struct format_catalog mem, ran;
      struct chunked s;
      int whole, ranged, rc;
      memcpy(copy, b.base, len);
      if (mode == 1)
        copy[i] ^= (uint8_t)(0x5a + i);
      whole = format_catalog_open(&mem, copy, len) == 0 && format_catalog_validate(&mem) == 0;
      chunk_up(&s, copy, len, 1000, 1);
      ranged = 0;
      if (open_chunked(&ran, &s) == 0) {
        format_catalog_iter_init(it, &ran);
        while ((rc = format_catalog_next(it, &e)) > 0) {
          ASSERT(format_catalog_safe_path(e.path, e.path_len));
          ASSERT(e.data_off >= e.hdr_off && e.end_off >= e.data_off + e.data_len);
        }
        ranged = rc == 0;
        (void)format_catalog_lookup(&ran, it, "dir1/file-000100.dat", &e);
        format_catalog_close(&ran);
      }
      ASSERT_EQ(whole, ranged);
      core_free(s.ends);
      free(copy);
    }
  }
  core_free(it);
  core_buf_free(&b);
}

/* Lying headers: a restart table past the limit is refused before any
 * allocation; offsets outside the records are refused. */
UNIT_TEST(lying_header)
{
  struct core_buf b;
  struct format_catalog c;
  struct chunked s;
  build(&b, 100, 0);
  /* count and restart count claiming 2^32 entries at interval 1 */
  uint8_t *p = (uint8_t *)b.base;
  uint8_t save[32];
  memcpy(save, p + 8, 32);
  p[12] = 1; p[13] = p[14] = p[15] = 0;
  memset(p + 16, 0, 8);
  p[20] = 1; /* 2^32 */
  memset(p + 32, 0, 8);
  p[36] = 1;
  chunk_up(&s, b.base, b.len, 512, 1);
  ASSERT_EQ(open_chunked(&c, &s), CORE_EFORMAT);
  ASSERT_EQ(s.fetched, 1); /* the header only */
  core_free(s.ends);
  memcpy(p + 8, save, 32);
  /* the second restart offset pointing past the records */
  uint64_t rlen = 0;
  for (int i = 7; i >= 0; i--)
    rlen = (rlen << 8) | p[24 + i];
  uint8_t *r1 = p + FORMAT_CATALOG_HDR_LEN + rlen + 8;
  for (int i = 0; i < 8; i++)
    r1[i] = (uint8_t)((rlen + 5) >> (8 * i));
  chunk_up(&s, b.base, b.len, 512, 1);
  ASSERT_EQ(open_chunked(&c, &s), CORE_EFORMAT);
  core_free(s.ends);
  core_buf_free(&b);
}

/* A source error stops the iteration with that error. */
UNIT_TEST(source_error)
{
  struct core_buf b;
  struct format_catalog c;
  struct format_catalog_iter *it = core_new(struct format_catalog_iter);
  struct format_catalog_entry e;
  struct chunked s;
  int rc;
  build(&b, 2000, 0);
  chunk_up(&s, b.base, b.len, 2048, 1);
  s.fail_after = 5;
  ASSERT_OK(open_chunked(&c, &s));
  format_catalog_iter_init(it, &c);
  while ((rc = format_catalog_next(it, &e)) > 0)
    ;
  ASSERT_EQ(rc, -EIO);
  format_catalog_close(&c);
  core_free(s.ends);
  core_free(it);
  core_buf_free(&b);
}

static int sink_count(void *ctx, const void *data, size_t len)
{
  (void)data;
  *(uint64_t *)ctx += len;
  return 0;
}

/* The writer's size pass and its pieces agree; a sink error stops it. */
UNIT_TEST(writer_emit)
{
  struct format_catalog_writer w;
  struct core_buf b;
  uint64_t total = 0, got = 0;
  format_catalog_writer_init(&w);
  for (unsigned i = 0; i < 5000; i++) {
    char path[64];
    snprintf(path, sizeof(path), "d/f%05u", (i * 7919u) % 5000);
    add(&w, path, FORMAT_CATALOG_FILE, i, NULL);
  }
  ASSERT_OK(format_catalog_writer_size(&w, &total));
  ASSERT_OK(format_catalog_writer_emit(&w, sink_count, &got));
  ASSERT_EQ(got, total);
  core_buf_init(&b, (size_t)1 << 30);
  ASSERT_OK(format_catalog_writer_finish(&w, &b));
  ASSERT_EQ(b.len, total);
  core_buf_free(&b);
  format_catalog_writer_free(&w);
  char out[160];
  ASSERT_OK(format_catalog_index_name("root.didx", out, sizeof(out)));
  ASSERT_STR_EQ(out, "root.catalog.didx");
  ASSERT(format_catalog_name("root.catalog.didx", out, sizeof(out)) < 0);
  ASSERT(format_catalog_is_index("root.catalog.didx"));
  ASSERT(!format_catalog_is_index("root.didx"));
}

static int spill_write(void *ctx, const void *data, size_t len)
{
  return core_buf_append(ctx, data, len);
}

static int spill_read(void *ctx, uint64_t off, void *dst, size_t len)
{
  struct core_buf *b = ctx;
  if (off > b->len || len > b->len - off)
    return CORE_EFORMAT;
  memcpy(dst, b->base + off, len);
  return 0;
}

/* Entries spilled in sorted runs and merged encode to exactly the bytes of
 * a writer that held them all; a path twice across runs is refused. */
UNIT_TEST(writer_spill)
{
  struct format_catalog_writer w1, w2;
  struct core_buf a, b, spill;
  char path[64];
  format_catalog_writer_init(&w1);
  format_catalog_writer_init(&w2);
  core_buf_init(&spill, (size_t)1 << 30);
  for (unsigned i = 0; i < 20000; i++) {
    unsigned k = (i * 7919u) % 20000;
    snprintf(path, sizeof(path), "d%u/f%05u", k % 13, k);
    add(&w1, path, FORMAT_CATALOG_FILE, k, NULL);
    add(&w2, path, FORMAT_CATALOG_FILE, k, NULL);
    if (i % 1500 == 1499)
      ASSERT_OK(format_catalog_writer_spill(&w2, spill_write, spill_read, &spill));
  }
  ASSERT_EQ(w2.nruns, 13);
  ASSERT(format_catalog_writer_mem(&w2) < format_catalog_writer_mem(&w1) / 4);
  core_buf_init(&a, (size_t)1 << 30);
  core_buf_init(&b, (size_t)1 << 30);
  ASSERT_OK(format_catalog_writer_finish(&w1, &a));
  ASSERT_OK(format_catalog_writer_finish(&w2, &b));
  ASSERT_EQ(a.len, b.len);
  ASSERT(memcmp(a.base, b.base, a.len) == 0);
  format_catalog_writer_free(&w1);
  format_catalog_writer_free(&w2);
  core_buf_free(&a);
  core_buf_free(&b);
  /* the same path in two runs */
  core_buf_reset(&spill);
  format_catalog_writer_init(&w2);
  add(&w2, "x/y", FORMAT_CATALOG_FILE, 1, NULL);
  ASSERT_OK(format_catalog_writer_spill(&w2, spill_write, spill_read, &spill));
  add(&w2, "x/z", FORMAT_CATALOG_FILE, 2, NULL);
  ASSERT_OK(format_catalog_writer_spill(&w2, spill_write, spill_read, &spill));
  add(&w2, "x/y", FORMAT_CATALOG_FILE, 3, NULL);
  core_buf_init(&b, (size_t)1 << 30);
  ASSERT_EQ(format_catalog_writer_finish(&w2, &b), CORE_EEXISTS);
  format_catalog_writer_free(&w2);
  /* a damaged spill is refused, not read past */
  core_buf_reset(&spill);
  format_catalog_writer_init(&w2);
  add(&w2, "x/y", FORMAT_CATALOG_FILE, 1, NULL);
  ASSERT_OK(format_catalog_writer_spill(&w2, spill_write, spill_read, &spill));
  spill.base[4] = (char)0xff; /* the path length */
  ASSERT_EQ(format_catalog_writer_finish(&w2, &b), CORE_EFORMAT);
  format_catalog_writer_free(&w2);
  core_buf_free(&b);
  core_buf_free(&spill);
}

/* The note's measurement: a synthetic catalog of a million entries cut as
 * the client cuts a catalog index; what one lookup reads. */
UNIT_TEST(million_lookup)
{
  struct format_catalog_writer w;
  struct core_buf b;
  struct format_catalog c;
  struct format_catalog_iter *it = core_new(struct format_catalog_iter);
  struct format_catalog_entry e;
  struct chunked s;
  char path[128];
  uint64_t off = 0, fetched, total, before;
  format_catalog_writer_init(&w);
  for (unsigned i = 0; i < 1000000; i++) {
    memset(&e, 0, sizeof(e));
    if (i % 100 == 0)
      snprintf(path, sizeof(path), "srv/data/project-%04u/module-%02u", i / 10000,
               (i / 100) % 100);
    else
      snprintf(path, sizeof(path), "srv/data/project-%04u/module-%02u/source-file-%06u.txt",
               i / 10000, (i / 100) % 100, i);
    e.path = path;
    e.path_len = strlen(path);
    e.link = "";
    e.type = i % 100 == 0 ? FORMAT_CATALOG_DIR : FORMAT_CATALOG_FILE;
    e.mode = e.type == FORMAT_CATALOG_DIR ? 040755 : 0100644;
    e.uid = e.gid = 1000;
    e.size = e.type == FORMAT_CATALOG_FILE ? 1000 + (i * 7919u) % 200000 : 0;
    e.mtime = 1700000000 + i;
    e.mtime_ns = (i * 104729u) % 1000000000u;
    e.ctime = e.mtime;
    e.ctime_ns = e.mtime_ns;
    e.ino = 5000000 + i;
    e.dev = 2049;
    e.hdr_off = off;
    e.data_off = off + 1024;
    e.data_len = e.size;
    e.end_off = e.data_off + (e.size + 511) / 512 * 512;
    off = e.end_off;
    ASSERT_OK(format_catalog_writer_add(&w, &e));
  }
  printf("  writer: %zu bytes held for 1,000,000 entries (%.1f per entry)\n",
         w.recs.len + (size_t)w.cap * 8, (double)(w.recs.len + w.cap * 8) / 1e6);
  core_buf_init(&b, (size_t)1 << 30);
  ASSERT_OK(format_catalog_writer_finish(&w, &b));
  format_catalog_writer_free(&w);
  chunk_up(&s, b.base, b.len, CLIENT_CATALOG_CHUNK_AVG, 0);
  ASSERT_OK(open_chunked(&c, &s));
  before = c.read_bytes;
  format_catalog_chunk_stats(&c, &fetched, &total);
  printf("  catalog: %zu bytes, %llu chunks; open read %llu bytes (%llu chunks)\n", b.len,
         (unsigned long long)total, (unsigned long long)before, (unsigned long long)fetched);
  ASSERT_EQ(format_catalog_lookup(&c, it, "srv/data/project-0042/module-17/source-file-421742.txt",
                                  &e), 1);
  ASSERT_EQ(e.ino, 5000000 + 421742);
  uint64_t f2;
  format_catalog_chunk_stats(&c, &f2, &total);
  printf("  one lookup: %llu source reads, %llu record bytes, %llu more chunks "
         "(%llu of %llu in all, %.1f MiB of %.1f MiB)\n",
         (unsigned long long)c.reads, (unsigned long long)(c.read_bytes - before),
         (unsigned long long)(f2 - fetched), (unsigned long long)f2, (unsigned long long)total,
         (double)f2 * (double)b.len / (double)total / 1048576.0, (double)b.len / 1048576.0);
  ASSERT(f2 < total / 10);
  /* a neighbour (the next file of a walk): the probes of the top levels
   * are cached, the chunks below are the ones just read */
  uint64_t r0 = c.reads, b0 = c.read_bytes, fn;
  ASSERT_EQ(format_catalog_lookup(&c, it, "srv/data/project-0042/module-17/source-file-421743.txt",
                                  &e), 1);
  format_catalog_chunk_stats(&c, &fn, &total);
  printf("  a neighbour's lookup: %llu source reads, %llu bytes, %llu more chunks\n",
         (unsigned long long)(c.reads - r0), (unsigned long long)(c.read_bytes - b0),
         (unsigned long long)(fn - f2));
  ASSERT(fn == f2);
  f2 = fn;
  /* a lookup elsewhere shares only the first probe */
  r0 = c.reads;
  b0 = c.read_bytes;
  ASSERT_EQ(format_catalog_lookup(&c, it, "srv/data/project-0077/module-03/source-file-770342.txt",
                                  &e), 1);
  ASSERT_EQ(e.ino, 5000000 + 770342);
  uint64_t f3;
  format_catalog_chunk_stats(&c, &f3, &total);
  printf("  a lookup elsewhere: %llu source reads, %llu bytes, %llu more chunks\n",
         (unsigned long long)(c.reads - r0), (unsigned long long)(c.read_bytes - b0),
         (unsigned long long)(f3 - f2));
  ASSERT(f3 - f2 <= 16);
  format_catalog_close(&c);
  core_free(s.ends);
  core_free(it);
  core_buf_free(&b);
}

UNIT_MAIN(UNIT_CASE(ranged_same_as_whole), UNIT_CASE(lookup_reads_few_chunks),
          UNIT_CASE(hostile_windows), UNIT_CASE(lying_header), UNIT_CASE(source_error),
          UNIT_CASE(writer_emit), UNIT_CASE(writer_spill), UNIT_CASE(million_lookup))
