#include "unit.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "format/format_index.h"

#include <stdio.h>

struct collected {
  uint8_t digests[200][32];
  uint64_t sizes[200];
  size_t n;
};

static void collect(void *arg, const uint8_t digest[32], uint64_t size)
{
  struct collected *c = arg;
  ASSERT(c->n < 200);
  memcpy(c->digests[c->n], digest, 32);
  c->sizes[c->n] = size;
  c->n++;
}

static uint8_t *load_vector(size_t *len)
{
  FILE *f = fopen(unit_data("backup-client-pxar-data.ppxar.didx"), "rb");
  ASSERT(f != NULL);
  uint8_t *buf = core_malloc(16384);
  *len = fread(buf, 1, 16384, f);
  fclose(f);
  return buf;
}

/* Streaming in pieces of any size gives what parsing the whole file gives. */
UNIT_TEST(stream_matches_parse)
{
  size_t len;
  uint8_t *buf = load_vector(&len);
  struct format_index idx;
  ASSERT_OK(format_index_parse(buf, len, 0, &idx));
  static const size_t pieces[] = {1, 7, 39, 40, 41, 4096, 4097, 100000};
  for (size_t p = 0; p < sizeof(pieces) / sizeof(pieces[0]); p++) {
    struct format_index_stream st;
    struct collected c = {0};
    format_index_stream_init(&st);
    for (size_t off = 0; off < len; off += pieces[p]) {
      size_t n = len - off < pieces[p] ? len - off : pieces[p];
      ASSERT_OK(format_index_stream_feed(&st, buf + off, n, collect, &c));
    }
    ASSERT_OK(format_index_stream_finish(&st));
    format_index_stream_free(&st);
    ASSERT_EQ(c.n, idx.count);
    for (uint64_t i = 0; i < idx.count; i++) {
      uint64_t start, end;
      format_index_chunk_range(&idx, i, &start, &end);
      ASSERT_MEM_EQ(c.digests[i], format_index_digest(&idx, i), 32);
      ASSERT_EQ(c.sizes[i], end - start);
    }
  }
  core_free(buf);
}

UNIT_TEST(stream_detects_corruption)
{
  size_t len;
  uint8_t *buf = load_vector(&len);
  struct format_index_stream st;
  struct collected c = {0};

  buf[len - 1] ^= 1; /* a flipped digest bit: only the checksum can tell */
  format_index_stream_init(&st);
  ASSERT_OK(format_index_stream_feed(&st, buf, len, collect, &c));
  ASSERT_EQ(format_index_stream_finish(&st), CORE_ECSUM);
  format_index_stream_free(&st);
  buf[len - 1] ^= 1;

  c.n = 0;
  format_index_stream_init(&st);
  ASSERT_OK(format_index_stream_feed(&st, buf, len - 3, collect, &c));
  ASSERT_EQ(format_index_stream_finish(&st), CORE_EFORMAT); /* truncated entry */
  format_index_stream_free(&st);

  c.n = 0;
  buf[0] ^= 0xff; /* wrong magic */
  format_index_stream_init(&st);
  ASSERT_EQ(format_index_stream_feed(&st, buf, len, collect, &c), CORE_EFORMAT);
  format_index_stream_free(&st);
  core_free(buf);
}

UNIT_MAIN(UNIT_CASE(stream_matches_parse), UNIT_CASE(stream_detects_corruption))
