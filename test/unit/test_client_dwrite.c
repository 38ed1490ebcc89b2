/* test_client_dwrite.c: restored data written around the page cache must
 * come back byte for byte: any block sizes, unaligned ends, short holes as
 * zeros, long holes left sparse, on a file system with O_DIRECT and on tmpfs
 * (which may refuse it). */
#include "unit.h"

#include "client/client_dwrite.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB ((size_t)1 << 20)

static char dir[256];

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void)
{
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static const char *path_of(const char *name)
{
  static char p[512];
  snprintf(p, sizeof(p), "%s/%s", dir[0] ? dir : unit_tmpdir(), name);
  return p;
}

/* Reads the whole file at path and compares it with want[0, size). */
static void check_file(const char *path, const uint8_t *want, size_t size)
{
  struct stat sb;
  uint8_t *got = malloc(size + 1);
  int fd = open(path, O_RDONLY);
  ssize_t n;
  size_t have = 0;
  ASSERT(fd >= 0 && got);
  ASSERT(fstat(fd, &sb) == 0);
  ASSERT_EQ(sb.st_size, size);
  while ((n = read(fd, got + have, size + 1 - have)) > 0)
    have += (size_t)n;
  ASSERT_EQ(have, size);
  ASSERT(memcmp(got, want, size) == 0);
  close(fd);
  free(got);
}

/* Writes `want` in random pieces of 1 byte to 5 MiB, as a tar stream hands
 * them out, and checks the file and that O_DIRECT is off again. */
static void roundtrip_pieces(const char *name, size_t size)
{
  struct client_dwrite w;
  uint8_t *want = malloc(size);
  const char *path = path_of(name);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  size_t off = 0;

  ASSERT(fd >= 0 && want);
  for (size_t i = 0; i < size; i++)
    want[i] = (uint8_t)next_rand();
  ASSERT_EQ(client_dwrite_init(&w), 0);
  client_dwrite_begin(&w, fd);
  while (off < size) {
    size_t k = next_rand() % 4 == 0 ? 1 + next_rand() % 700 : 1 + next_rand() % (5 * MiB);
    if (k > size - off)
      k = size - off;
    ASSERT_EQ(client_dwrite_write(&w, off, want + off, k), 0);
    off += k;
  }
  ASSERT_EQ(client_dwrite_end(&w), 0);
  ASSERT_EQ(fcntl(fd, F_GETFL) & O_DIRECT, 0);
  close(fd);
  client_dwrite_free(&w);
  check_file(path, want, size);
  free(want);
}

/* data, short hole (zeros), data ending unaligned, long hole (sparse), data,
 * then a trailing hole that the caller sets with ftruncate. */
static void roundtrip_holes(const char *name)
{
  const size_t size = 20 * MiB + 333;
  const struct {
    size_t off, len;
  } parts[] = {{0, 5000}, {9000, 3 * MiB + 17}, {3 * MiB + 9000 + 17 + 8 * MiB, 100},
               {12 * MiB, 4 * MiB + 1}};
  struct client_dwrite w;
  uint8_t *want = calloc(1, size);
  const char *path = path_of(name);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  struct stat sb;

  ASSERT(fd >= 0 && want);
  ASSERT_EQ(client_dwrite_init(&w), 0);
  client_dwrite_begin(&w, fd);
  for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
    for (size_t j = 0; j < parts[i].len; j++)
      want[parts[i].off + j] = (uint8_t)(next_rand() | 1);
    ASSERT_EQ(client_dwrite_write(&w, parts[i].off, want + parts[i].off, parts[i].len), 0);
  }
  /* going back is refused */
  ASSERT_EQ(client_dwrite_write(&w, 100, want, 1), -EINVAL);
  ASSERT_EQ(client_dwrite_end(&w), 0);
  ASSERT_EQ(ftruncate(fd, (off_t)size), 0);
  close(fd);
  client_dwrite_free(&w);
  check_file(path, want, size);
  /* the 8 MiB hole and the trailing 4 MiB stay unallocated */
  ASSERT_EQ(stat(path, &sb), 0);
  ASSERT((uint64_t)sb.st_blocks * 512 < size - 10 * MiB);
  free(want);
}

UNIT_TEST(pieces_roundtrip)
{
  roundtrip_pieces("a", 13 * MiB + 4097);
  roundtrip_pieces("b", 4 * MiB); /* exactly one buffer */
  roundtrip_pieces("c", 3);
}

UNIT_TEST(holes_roundtrip)
{
  roundtrip_holes("h");
}

/* A pipe is written plainly (O_DIRECT would put it in packet mode). */
UNIT_TEST(pipe_stays_a_stream)
{
  struct client_dwrite w;
  int p[2];
  char buf[16] = {0};
  ASSERT_EQ(pipe(p), 0);
  ASSERT_EQ(client_dwrite_init(&w), 0);
  client_dwrite_begin(&w, p[1]);
  ASSERT_EQ(fcntl(p[1], F_GETFL) & O_DIRECT, 0);
  ASSERT_EQ(client_dwrite_write(&w, 0, "hello ", 6), 0);
  ASSERT_EQ(client_dwrite_write(&w, 6, "world", 5), 0);
  ASSERT_EQ(client_dwrite_end(&w), 0);
  close(p[1]);
  ASSERT_EQ(read(p[0], buf, sizeof(buf)), 11);
  ASSERT_STR_EQ(buf, "hello world");
  close(p[0]);
  client_dwrite_free(&w);
}

/* A failed write is reported, by end too, and the next file starts clean. */
UNIT_TEST(errors_reach_the_caller)
{
  struct client_dwrite w;
  uint8_t *data = calloc(1, 9 * MiB);
  int fd, rc = 0;
  ASSERT(data != NULL);
  fd = open(path_of("ro"), O_WRONLY | O_CREAT, 0600);
  ASSERT(fd >= 0);
  close(fd);
  fd = open(path_of("ro"), O_RDONLY);
  ASSERT(fd >= 0);
  ASSERT_EQ(client_dwrite_init(&w), 0);
  client_dwrite_begin(&w, fd);
  for (size_t off = 0; off < 9 * MiB && rc == 0; off += MiB)
    rc = client_dwrite_write(&w, off, data + off, MiB);
  ASSERT(rc == 0 || rc == -EBADF);
  ASSERT_EQ(client_dwrite_end(&w), -EBADF);
  close(fd);
  fd = open(path_of("ok"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  client_dwrite_begin(&w, fd);
  ASSERT_EQ(client_dwrite_write(&w, 0, "x", 1), 0);
  ASSERT_EQ(client_dwrite_end(&w), 0);
  close(fd);
  client_dwrite_free(&w);
  free(data);
}

/* The same on tmpfs. */
UNIT_TEST(tmpfs_roundtrip)
{
  if (unit_shmdir() == NULL)
    return; /* no /dev/shm: nothing to check */
  snprintf(dir, sizeof(dir), "%s", unit_shmdir());
  roundtrip_pieces("a", 9 * MiB + 5);
  roundtrip_holes("h");
}

UNIT_MAIN(UNIT_CASE(pieces_roundtrip), UNIT_CASE(holes_roundtrip),
          UNIT_CASE(pipe_stays_a_stream), UNIT_CASE(errors_reach_the_caller),
          UNIT_CASE(tmpfs_roundtrip))
