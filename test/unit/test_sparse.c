/* test_sparse.c: the GNU sparse 1.0 map of a pax entry (format_sparse.h):
 * the map libarchive writes, fed whole and byte by byte, and damaged maps. */
#include "unit.h"

#include "core/core_error.h"
#include "format/format_sparse.h"

#include <stdint.h>

/* As libarchive's pax writer makes it: two blocks, then an empty one at the
 * file's size. */
static const char MAP[] = "3\n4096\n10\n8192\n20\n100000\n0\n";

/* Feeds `map` in pieces of `step` bytes then zeros to 512; returns what the
 * last feed returned. */
static int feed(struct format_sparse_map *m, const char *map, size_t step)
{
  uint8_t area[1024];
  size_t len = strlen(map), off = 0;
  int rc = 0;
  memset(area, 0, sizeof(area));
  memcpy(area, map, len);
  format_sparse_init(m);
  while (off < sizeof(area) && rc == 0) {
    size_t k = sizeof(area) - off < step ? sizeof(area) - off : step;
    rc = format_sparse_feed(m, area + off, k);
    off += k;
  }
  return rc;
}

UNIT_TEST(libarchive_map)
{
  struct format_sparse_map m;
  uint64_t map_bytes = 0;
  for (size_t step = 1; step <= 1024; step *= 4) {
    ASSERT_EQ(feed(&m, MAP, step), 1);
    ASSERT_EQ(m.n, 3);
    ASSERT_EQ(m.b[0].off, 4096);
    ASSERT_EQ(m.b[0].len, 10);
    ASSERT_EQ(m.b[1].off, 8192);
    ASSERT_EQ(m.b[1].len, 20);
    ASSERT_EQ(m.b[2].off, 100000);
    ASSERT_EQ(m.b[2].len, 0);
    ASSERT_OK(format_sparse_check(&m, 100000, 512 + 30, &map_bytes));
    ASSERT_EQ(map_bytes, 512);
    /* the data area must hold exactly the map and the blocks */
    ASSERT_EQ(format_sparse_check(&m, 100000, 512 + 31, &map_bytes), CORE_EFORMAT);
    ASSERT_EQ(format_sparse_check(&m, 100000, 512 + 29, &map_bytes), CORE_EFORMAT);
    /* and the blocks lie within the file */
    ASSERT_EQ(format_sparse_check(&m, 99999, 512 + 30, &map_bytes), CORE_EFORMAT);
    format_sparse_free(&m);
  }
  /* all holes */
  ASSERT_EQ(feed(&m, "0\n", 7), 1);
  ASSERT_OK(format_sparse_check(&m, 1 << 20, 512, &map_bytes));
  format_sparse_free(&m);
}

UNIT_TEST(damaged)
{
  struct format_sparse_map m;
  uint64_t map_bytes;
  static const char *const bad_syntax[] = {
      "x\n",                               /* not a number */
      "\n",                                /* empty */
      "1\n-5\n10\n",                       /* a sign */
      "1\n 5\n10\n",                       /* a space */
      "1\n5\n\n",                          /* an empty length */
      "1\n12345678901234567890\n1\n",      /* 20 digits */
      "1048577\n",                         /* too many blocks */
  };
  for (size_t i = 0; i < sizeof(bad_syntax) / sizeof(bad_syntax[0]); i++) {
    ASSERT_EQ(feed(&m, bad_syntax[i], 3), CORE_EFORMAT);
    format_sparse_free(&m);
  }
  /* ends before the count is met: the caller runs out of data area */
  ASSERT_EQ(feed(&m, "2\n0\n10\n", 5), CORE_EFORMAT); /* the zero padding is no digit */
  format_sparse_free(&m);
  static const struct {
    const char *map;
    uint64_t size, data_len;
  } bad_map[] = {
      {"2\n100\n10\n50\n10\n", 1000, 512 + 20},  /* going backwards */
      {"2\n100\n10\n105\n10\n", 1000, 512 + 20}, /* overlapping */
      {"1\n995\n10\n", 1000, 512 + 10},          /* past the size */
      {"1\n9223372036854775807\n10\n", UINT64_MAX, 512 + 10}, /* past 2^63 */
      {"1\n0\n10\n", 1000, 10},                  /* the map outside the data area */
  };
  for (size_t i = 0; i < sizeof(bad_map) / sizeof(bad_map[0]); i++) {
    ASSERT_EQ(feed(&m, bad_map[i].map, 512), 1);
    ASSERT_EQ(format_sparse_check(&m, bad_map[i].size, bad_map[i].data_len, &map_bytes),
              CORE_EFORMAT);
    format_sparse_free(&m);
  }
  /* touching blocks are fine */
  ASSERT_EQ(feed(&m, "2\n100\n10\n110\n10\n", 512), 1);
  ASSERT_OK(format_sparse_check(&m, 120, 512 + 20, &map_bytes));
  format_sparse_free(&m);
}

UNIT_MAIN(UNIT_CASE(libarchive_map), UNIT_CASE(damaged))
