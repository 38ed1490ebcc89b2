#include "unit.h"

#include "client/client_chunker.h"
#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"

#include <stdint.h>
#include <time.h>

#define DATA_LEN ((size_t)48 << 20)

static uint64_t rng_next(uint64_t *s)
{
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

/* Pseudo-random bytes, with some long runs of text-like data to resemble
 * real files. */
static uint8_t *make_data(size_t len, uint64_t seed)
{
  uint8_t *d = core_malloc(len);
  uint64_t s = seed;
  size_t i;
  for (i = 0; i + 8 <= len; i += 8) {
    uint64_t v = rng_next(&s);
    memcpy(d + i, &v, 8);
  }
  for (; i < len; i++)
    d[i] = (uint8_t)rng_next(&s);
  return d;
}

struct cuts {
  size_t n;
  size_t *end; /* end offsets, the last one == data length */
};

/* Chunks `d` feeding pieces of at most `piece` bytes (0: all at once); a
 * piece size of 1 (or a small one) exercises the window spanning buffers. */
static struct cuts chunk_all(enum client_chunker_algo algo, size_t min, size_t avg,
                             size_t max, const uint8_t *d, size_t len, size_t piece,
                             uint64_t seed)
{
  struct client_chunker c;
  struct cuts r = {0, core_malloc(sizeof(size_t) * (len / (min ? min : CLIENT_CHUNK_MIN) + 2))};
  size_t off = 0;
  uint64_t s = seed;

  ASSERT_OK(client_chunker_init(&c, algo, min, avg, max));
  while (off < len) {
    size_t n = len - off, k;
    if (piece) {
      size_t p = 1 + (size_t)(rng_next(&s) % piece);
      if (n > p)
        n = p;
    }
    k = client_chunker_scan(&c, d + off, n);
    if (k) {
      ASSERT(k <= n);
      off += k;
      r.end[r.n++] = off;
    } else {
      off += n;
    }
  }
  if (r.n == 0 || r.end[r.n - 1] != len)
    r.end[r.n++] = len;
  return r;
}

static void check_bounds(const struct cuts *r, size_t min, size_t max)
{
  size_t prev = 0;
  for (size_t i = 0; i < r->n; i++) {
    size_t sz = r->end[i] - prev;
    ASSERT(sz <= max);
    if (i + 1 < r->n)
      ASSERT(sz >= min);
    prev = r->end[i];
  }
}

UNIT_TEST(init_rejects_bad_sizes)
{
  struct client_chunker c;
  ASSERT_EQ(client_chunker_init(&c, CLIENT_CHUNKER_GEAR, 64, 128, 256), CORE_EINVAL);
  ASSERT_EQ(client_chunker_init(&c, CLIENT_CHUNKER_GEAR, 4096, 4096, 8192), CORE_EINVAL);
  ASSERT_EQ(client_chunker_init(&c, CLIENT_CHUNKER_GEAR, 4096, 8192, 8192), CORE_EINVAL);
  ASSERT_EQ(client_chunker_init(&c, (enum client_chunker_algo)7, 0, 0, 0), CORE_EINVAL);
  ASSERT_OK(client_chunker_init(&c, CLIENT_CHUNKER_BUZHASH, 0, 0, 0));
  ASSERT_EQ(c.min, CLIENT_CHUNK_MIN);
  ASSERT_EQ(c.max, CLIENT_CHUNK_MAX);
}

static void determinism(enum client_chunker_algo algo)
{
  const size_t min = 16 << 10, avg = 64 << 10, max = 256 << 10, len = 8 << 20;
  uint8_t *d = make_data(len, 42);
  struct cuts a = chunk_all(algo, min, avg, max, d, len, 0, 0);
  struct cuts b = chunk_all(algo, min, avg, max, d, len, 100, 1);
  struct cuts e = chunk_all(algo, min, avg, max, d, len, 70000, 2);
  ASSERT(a.n > 50);
  ASSERT_EQ(a.n, b.n);
  ASSERT_EQ(a.n, e.n);
  ASSERT_MEM_EQ(a.end, b.end, a.n * sizeof(size_t));
  ASSERT_MEM_EQ(a.end, e.end, a.n * sizeof(size_t));
  check_bounds(&a, min, max);
  /* Mean within 20% of the target (the max cut lowers it a little). */
  ASSERT(len / a.n > avg * 8 / 10 && len / a.n < avg * 12 / 10);
  core_free(a.end);
  core_free(b.end);
  core_free(e.end);
  core_free(d);
}

UNIT_TEST(gear_deterministic_across_feeds) { determinism(CLIENT_CHUNKER_GEAR); }
UNIT_TEST(buzhash_deterministic_across_feeds) { determinism(CLIENT_CHUNKER_BUZHASH); }

/* The same first boundaries on every machine: a change here means every
 * existing snapshot stops deduplicating against new ones. */
UNIT_TEST(boundaries_are_fixed)
{
  uint8_t *d = make_data(DATA_LEN, 7);
  struct cuts g = chunk_all(CLIENT_CHUNKER_GEAR, 0, 0, 0, d, DATA_LEN, 0, 0);
  struct cuts b = chunk_all(CLIENT_CHUNKER_BUZHASH, 0, 0, 0, d, DATA_LEN, 0, 0);
  printf("  gear: %zu chunks, first ends %zu %zu %zu\n", g.n, g.end[0], g.end[1], g.end[2]);
  printf("  buzhash: %zu chunks, first ends %zu %zu %zu\n", b.n, b.end[0], b.end[1], b.end[2]);
  check_bounds(&g, CLIENT_CHUNK_MIN, CLIENT_CHUNK_MAX);
  check_bounds(&b, CLIENT_CHUNK_MIN, CLIENT_CHUNK_MAX);
  ASSERT(g.n >= 6 && g.n <= 24);
  ASSERT(b.n >= 6 && b.n <= 24);
  ASSERT_EQ(g.n, 16);
  ASSERT_EQ(g.end[0], 5192538);
  ASSERT_EQ(g.end[2], 15441272);
  ASSERT_EQ(b.n, 15);
  ASSERT_EQ(b.end[0], 5061482);
  ASSERT_EQ(b.end[2], 8250328);
  core_free(g.end);
  core_free(b.end);
  core_free(d);
}

/* The definition, one byte at a time: the hash of the 64 bytes before each
 * position from min on, a boundary at the first one under the threshold or
 * at max. The scanner (which skips, and hashes four bytes a step) must cut
 * at exactly the same places, however the stream is split. */
UNIT_TEST(gear_matches_the_definition)
{
  const size_t min = 300, avg = 1500, max = 6000, len = 4 << 20;
  uint8_t *d = make_data(len, 11);
  struct client_chunker c;
  struct cuts want = {0, core_malloc(sizeof(size_t) * (len / min + 2))};
  size_t start = 0;

  ASSERT_OK(client_chunker_init(&c, CLIENT_CHUNKER_GEAR, min, avg, max));
  while (start < len) {
    size_t end = start + max < len ? start + max : len;
    for (size_t e = start + min; e < end; e++) {
      uint64_t h = 0;
      for (size_t j = e - CLIENT_CHUNKER_WINDOW; j < e; j++)
        h = (h << 1) + c.table[d[j]];
      if (h < c.threshold) {
        end = e;
        break;
      }
    }
    want.end[want.n++] = end;
    start = end;
  }
  for (size_t piece = 0; piece < 3; piece++) {
    struct cuts got = chunk_all(CLIENT_CHUNKER_GEAR, min, avg, max, d, len,
                                piece == 0 ? 0 : piece == 1 ? 7 : 100000, 3);
    ASSERT_EQ(got.n, want.n);
    for (size_t i = 0; i < want.n; i++)
      ASSERT_EQ(got.end[i], want.end[i]);
    core_free(got.end);
  }
  core_free(want.end);
  core_free(d);
}

static void bounds_on_constant(enum client_chunker_algo algo, uint8_t byte)
{
  const size_t min = 4096, avg = 16384, max = 65536, len = 1 << 20;
  uint8_t *d = core_malloc(len);
  memset(d, byte, len);
  struct cuts r = chunk_all(algo, min, avg, max, d, len, 5000, 3);
  check_bounds(&r, min, max);
  /* A constant window has a constant hash: every chunk is min or max. */
  size_t prev = 0;
  for (size_t i = 0; i + 1 < r.n; i++) {
    size_t sz = r.end[i] - prev;
    if (sz != min && sz != max)
      unit_fail(__FILE__, __LINE__, "algo %d byte %d: chunk %zu has %zu bytes", algo, byte, i, sz);
    prev = r.end[i];
  }
  core_free(r.end);
  core_free(d);
}

UNIT_TEST(bounds_on_constant_data)
{
  for (int b = 0; b < 256; b += 51) {
    bounds_on_constant(CLIENT_CHUNKER_GEAR, (uint8_t)b);
    bounds_on_constant(CLIENT_CHUNKER_BUZHASH, (uint8_t)b);
  }
}

/* Digests of the chunks, to count what a changed stream would upload. */
static uint8_t (*digests(const uint8_t *d, const struct cuts *r))[32]
{
  uint8_t (*out)[32] = core_malloc(32 * r->n);
  size_t prev = 0;
  for (size_t i = 0; i < r->n; i++) {
    core_sha256(d + prev, r->end[i] - prev, out[i]);
    prev = r->end[i];
  }
  return out;
}

static size_t count_new(uint8_t (*a)[32], size_t na, uint8_t (*b)[32], size_t nb)
{
  size_t fresh = 0;
  for (size_t i = 0; i < nb; i++) {
    size_t j;
    for (j = 0; j < na; j++)
      if (memcmp(a[j], b[i], 32) == 0)
        break;
    if (j == na)
      fresh++;
  }
  return fresh;
}

static void insertion(enum client_chunker_algo algo)
{
  const size_t min = 16 << 10, avg = 64 << 10, max = 256 << 10, len = 8 << 20;
  uint8_t *d = make_data(len, 99);
  uint8_t *e = core_malloc(len + 100);
  /* 100 bytes inserted 100 KiB in, and 10 bytes overwritten at 6 MiB. */
  memcpy(e, d, 100 << 10);
  memset(e + (100 << 10), 'x', 100);
  memcpy(e + (100 << 10) + 100, d + (100 << 10), len - (100 << 10));
  memset(e + (6 << 20), 'y', 10);
  struct cuts a = chunk_all(algo, min, avg, max, d, len, 0, 0);
  struct cuts b = chunk_all(algo, min, avg, max, e, len + 100, 0, 0);
  uint8_t (*da)[32] = digests(d, &a);
  uint8_t (*db)[32] = digests(e, &b);
  size_t fresh = count_new(da, a.n, db, b.n);
  printf("  %zu of %zu chunks changed\n", fresh, b.n);
  ASSERT(fresh >= 2 && fresh <= 6);
  core_free(da);
  core_free(db);
  core_free(a.end);
  core_free(b.end);
  core_free(d);
  core_free(e);
}

UNIT_TEST(gear_insertion_changes_nearby_chunks_only) { insertion(CLIENT_CHUNKER_GEAR); }
UNIT_TEST(buzhash_insertion_changes_nearby_chunks_only) { insertion(CLIENT_CHUNKER_BUZHASH); }

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

UNIT_TEST(throughput)
{
  uint8_t *d = make_data(DATA_LEN, 5);
  for (int algo = 0; algo < 2; algo++) {
    struct client_chunker c;
    size_t chunks = 0;
    double t0 = now_s();
    for (int rep = 0; rep < 2; rep++) {
      size_t off = 0, k;
      ASSERT_OK(client_chunker_init(&c, (enum client_chunker_algo)algo, 0, 0, 0));
      while (off < DATA_LEN) {
        size_t n = DATA_LEN - off < (1 << 20) ? DATA_LEN - off : (1 << 20);
        k = client_chunker_scan(&c, d + off, n);
        off += k ? k : n;
        chunks += k != 0;
      }
    }
    double dt = now_s() - t0;
    printf("  %s: %.0f MB/s (%zu chunks)\n", algo ? "buzhash" : "gear",
           2.0 * DATA_LEN / dt / 1e6, chunks);
  }
  core_free(d);
}

UNIT_MAIN(UNIT_CASE(init_rejects_bad_sizes), UNIT_CASE(gear_deterministic_across_feeds),
          UNIT_CASE(gear_matches_the_definition),
          UNIT_CASE(buzhash_deterministic_across_feeds), UNIT_CASE(boundaries_are_fixed),
          UNIT_CASE(bounds_on_constant_data), UNIT_CASE(gear_insertion_changes_nearby_chunks_only),
          UNIT_CASE(buzhash_insertion_changes_nearby_chunks_only), UNIT_CASE(throughput))
