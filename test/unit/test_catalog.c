/* test_catalog.c: the catalog format (format_catalog.h): round trips, lookups
 * across restart blocks, and hostile catalogs. */
#include "unit.h"

#include "core/core_buf.h"
#include "core/core_error.h"
#include "format/format_catalog.h"

#include <stdint.h>

static void add(struct format_catalog_writer *w, const char *path, uint8_t type, uint64_t off,
                uint64_t dlen, const char *link)
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
  e.gid = 100;
  e.size = dlen;
  e.mtime = -5 + (int64_t)off;
  e.mtime_ns = 123456789;
  e.ctime = 1700000000;
  e.ino = off + 7;
  e.dev = 2049;
  e.hdr_off = off;
  e.data_off = off + 512;
  e.data_len = dlen;
  e.end_off = off + 512 + ((dlen + 511) / 512) * 512;
  ASSERT_OK(format_catalog_writer_add(w, &e));
}

/* A tree of `n` files in a few directories, added in an unsorted order. */
static void build(struct core_buf *out, unsigned n)
{
  struct format_catalog_writer w;
  char path[64];
  format_catalog_writer_init(&w);
  for (unsigned i = n; i-- > 0;) {
    snprintf(path, sizeof(path), "d%u/f%05u", i % 3, i);
    add(&w, path, FORMAT_CATALOG_FILE, (uint64_t)i * 4096 + 8192, i, NULL);
  }
  add(&w, "d0", FORMAT_CATALOG_DIR, 0, 0, NULL);
  add(&w, ".", FORMAT_CATALOG_DIR, 512, 0, NULL);
  add(&w, "d1", FORMAT_CATALOG_DIR, 1024, 0, NULL);
  add(&w, "d2", FORMAT_CATALOG_DIR, 1536, 0, NULL);
  add(&w, "-early", FORMAT_CATALOG_SYMLINK, 2048, 0, "d0/f00001");
  add(&w, "d0.x", FORMAT_CATALOG_HARDLINK, 2560, 0, "d0/f00000");
  core_buf_init(out, (size_t)1 << 30);
  ASSERT_OK(format_catalog_writer_finish(&w, out));
  format_catalog_writer_free(&w);
}

UNIT_TEST(round_trip)
{
  struct core_buf b;
  struct format_catalog c;
  struct format_catalog_iter it;
  struct format_catalog_entry e;
  char prev[FORMAT_CATALOG_PATH_MAX + 1] = "";
  size_t prev_len = 0;
  unsigned n = 0;
  build(&b, 1000);
  ASSERT_OK(format_catalog_open(&c, b.base, b.len));
  ASSERT_EQ(c.count, 1006);
  ASSERT_OK(format_catalog_validate(&c));
  format_catalog_iter_init(&it, &c);
  while (format_catalog_next(&it, &e) > 0) {
    if (n == 0)
      ASSERT_STR_EQ(e.path, ".");
    else
      ASSERT(format_catalog_cmp(prev, prev_len, e.path, e.path_len) < 0);
    memcpy(prev, e.path, e.path_len);
    prev_len = e.path_len;
    n++;
  }
  ASSERT_EQ(n, 1006);
  /* lookups in every block, with all fields intact */
  for (unsigned i = 0; i < 1000; i += 37) {
    char path[64];
    snprintf(path, sizeof(path), "d%u/f%05u", i % 3, i);
    ASSERT_EQ(format_catalog_lookup(&c, &it, path, &e), 1);
    ASSERT_STR_EQ(e.path, path);
    ASSERT_EQ(e.type, FORMAT_CATALOG_FILE);
    ASSERT_EQ(e.size, i);
    ASSERT_EQ(e.hdr_off, (uint64_t)i * 4096 + 8192);
    ASSERT_EQ(e.data_off, e.hdr_off + 512);
    ASSERT_EQ(e.mtime, -5 + (int64_t)e.hdr_off);
    ASSERT_EQ(e.mtime_ns, 123456789);
    ASSERT_EQ(e.ino, e.hdr_off + 7);
    ASSERT_EQ(e.uid, 1000);
  }
  ASSERT_EQ(format_catalog_lookup(&c, &it, "d0.x", &e), 1);
  ASSERT_STR_EQ(e.link, "d0/f00000");
  ASSERT_EQ(format_catalog_lookup(&c, &it, "-early", &e), 1);
  ASSERT_EQ(e.type, FORMAT_CATALOG_SYMLINK);
  ASSERT_EQ(format_catalog_lookup(&c, &it, ".", &e), 1);
  ASSERT_EQ(format_catalog_lookup(&c, &it, "d0/f00001", &e), 0);
  ASSERT_EQ(format_catalog_lookup(&c, &it, "zzz", &e), 0);
  /* compact: well under 100 bytes per entry before compression */
  ASSERT(b.len < 1006 * 64);
  core_buf_free(&b);
}

/* format_catalog_children / next_child: direct children only, in order. */
UNIT_TEST(children)
{
  struct core_buf b;
  struct format_catalog c;
  struct format_catalog_iter it;
  struct format_catalog_entry e;
  static const char *const root[] = {"-early", "d0", "d0.x", "d1", "d2"};
  unsigned n = 0;
  int rc;
  build(&b, 100);
  ASSERT_OK(format_catalog_open(&c, b.base, b.len));
  rc = format_catalog_children(&it, &c, "", 0);
  while (rc >= 0 && (rc = format_catalog_next_child(&it, "", 0, &e)) > 0) {
    ASSERT(n < 5);
    ASSERT_STR_EQ(e.path, root[n]);
    n++;
  }
  ASSERT_EQ(rc, 0);
  ASSERT_EQ(n, 5);
  n = 0;
  rc = format_catalog_children(&it, &c, "d1/", 3);
  while (rc >= 0 && (rc = format_catalog_next_child(&it, "d1/", 3, &e)) > 0) {
    ASSERT(strncmp(e.path, "d1/f", 4) == 0);
    n++;
  }
  ASSERT_EQ(rc, 0);
  ASSERT_EQ(n, 33);
  core_buf_free(&b);
}

UNIT_TEST(writer_refuses)
{
  struct format_catalog_writer w;
  struct core_buf b;
  struct format_catalog_entry e;
  static const char *const bad[] = {"", "/abs", "a/../b", "..", "a//b", "a/", "./a", "a/."};
  format_catalog_writer_init(&w);
  memset(&e, 0, sizeof(e));
  e.type = FORMAT_CATALOG_FILE;
  e.link = "";
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    e.path = bad[i];
    e.path_len = strlen(bad[i]);
    ASSERT_EQ(format_catalog_writer_add(&w, &e), CORE_ENAME);
  }
  add(&w, "a", FORMAT_CATALOG_FILE, 0, 0, NULL);
  add(&w, "a", FORMAT_CATALOG_FILE, 1024, 0, NULL);
  core_buf_init(&b, 1 << 20);
  ASSERT_EQ(format_catalog_writer_finish(&w, &b), CORE_EEXISTS);
  core_buf_free(&b);
  format_catalog_writer_free(&w);
}

/* Every truncation and every single-byte change is refused or decodes to
 * safe entries; never a read outside the buffer (ASan watches). */
UNIT_TEST(hostile)
{
  struct core_buf b;
  struct format_catalog c;
  struct format_catalog_iter it;
  struct format_catalog_entry e;
  build(&b, 200);
  for (size_t len = 0; len < b.len; len++) {
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, b.base, len);
    if (format_catalog_open(&c, copy, len) == 0)
      ASSERT(format_catalog_validate(&c) < 0);
    free(copy);
  }
  for (size_t i = 0; i < b.len; i++) {
    uint8_t *copy = malloc(b.len);
    memcpy(copy, b.base, b.len);
    copy[i] ^= (uint8_t)(0x5a + i);
    if (format_catalog_open(&c, copy, b.len) == 0 && format_catalog_validate(&c) == 0) {
      format_catalog_iter_init(&it, &c);
      while (format_catalog_next(&it, &e) > 0) {
        ASSERT(format_catalog_safe_path(e.path, e.path_len));
        ASSERT(e.data_off >= e.hdr_off && e.end_off >= e.data_off + e.data_len);
      }
      (void)format_catalog_lookup(&c, &it, "d1/f00100", &e);
    }
    free(copy);
  }
  core_buf_free(&b);
}

/* A hand-made record with a ".." path is refused. */
UNIT_TEST(dotdot_refused)
{
  struct core_buf b;
  struct format_catalog c;
  struct format_catalog_iter it;
  struct format_catalog_entry e;
  build(&b, 1);
  /* entries: ".", "-early", "d0", ...; "d0" is the third: find "d0" bytes
   * after "-early"'s link and turn them into ".." */
  char *p = memmem(b.base + FORMAT_CATALOG_HDR_LEN, b.len - FORMAT_CATALOG_HDR_LEN, "d0", 2);
  ASSERT(p != NULL);
  p = memmem(p + 2, b.len - (size_t)(p + 2 - b.base), "d0", 2); /* the link was first */
  ASSERT(p != NULL);
  p[0] = '.';
  p[1] = '.';
  ASSERT_OK(format_catalog_open(&c, b.base, b.len));
  ASSERT(format_catalog_validate(&c) < 0);
  ASSERT(format_catalog_lookup(&c, &it, "..", &e) <= 0);
  core_buf_free(&b);
}

UNIT_TEST(names)
{
  char out[160];
  ASSERT_OK(format_catalog_name("root.didx", out, sizeof(out)));
  ASSERT_STR_EQ(out, "root.catalog.blob");
  ASSERT(format_catalog_name("disk.img.fidx", out, sizeof(out)) < 0);
  ASSERT(format_catalog_safe_path(".", 1));
  ASSERT(format_catalog_safe_path("a/b c/\n\xff", 8));
  ASSERT(!format_catalog_safe_path("a/../b", 6));
  ASSERT(format_catalog_cmp(".", 1, "-", 1) < 0);
  ASSERT(format_catalog_cmp("a", 1, "a/b", 3) < 0);
}

/* A million files in a realistic tree: the catalog stays well under 100 MiB
 * (before compression) and a lookup decodes one block. */
UNIT_TEST(million)
{
  struct format_catalog_writer w;
  struct core_buf b;
  struct format_catalog c;
  struct format_catalog_iter it;
  struct format_catalog_entry e;
  char path[128];
  uint64_t off = 0;
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
  core_buf_init(&b, (size_t)1 << 30);
  ASSERT_OK(format_catalog_writer_finish(&w, &b));
  format_catalog_writer_free(&w);
  printf("  1,000,000 entries: %zu bytes (%.1f per entry)\n", b.len, (double)b.len / 1e6);
  ASSERT(b.len < (size_t)100 << 20);
  ASSERT_OK(format_catalog_open(&c, b.base, b.len));
  ASSERT_EQ(format_catalog_lookup(&c, &it, "srv/data/project-0042/module-17/source-file-421742.txt",
                                  &e), 1);
  ASSERT_EQ(e.ino, 5000000 + 421742);
  core_buf_free(&b);
}

UNIT_MAIN(UNIT_CASE(round_trip), UNIT_CASE(million), UNIT_CASE(writer_refuses), UNIT_CASE(hostile),
          UNIT_CASE(dotdot_refused), UNIT_CASE(names), UNIT_CASE(children))
