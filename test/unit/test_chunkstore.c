#include "unit.h"

#include "core/core_buf.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "store/store_chunk.h"
#include "store/store_path.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* DataBlob magics, so the tests build blobs without the codec: the chunk
 * store only looks at the magic (the caller has verified everything else). */
static const uint8_t MAGIC_PLAIN[8] = {66, 171, 56, 7, 190, 131, 112, 161};
static const uint8_t MAGIC_ZSTD[8] = {49, 185, 88, 66, 111, 182, 163, 127};
static const uint8_t MAGIC_ENC[8] = {123, 103, 133, 190, 34, 45, 76, 240};
static const uint8_t MAGIC_ZSTD_ENC[8] = {230, 89, 27, 191, 11, 191, 216, 11};

/* Builds a blob of `len` bytes with the given magic; payload bytes = fill. */
static uint8_t *blob(const uint8_t magic[8], size_t len, uint8_t fill)
{
  uint8_t *b = malloc(len);
  memset(b, fill, len);
  memcpy(b, magic, 8);
  return b;
}

static void digest_of(const char *s, uint8_t d[32])
{
  core_sha256(s, strlen(s), d);
}

static char base_dir[512]; /* parent of the store; unit_tmpdir() unless set */

static const char *store_base(void)
{
  static char path[600];
  snprintf(path, sizeof(path), "%s/store", base_dir[0] ? base_dir : unit_tmpdir());
  return path;
}

static struct store_chunkstore *make_store(void)
{
  struct store_chunkstore *cs;
  ASSERT_OK(store_chunk_create(store_base()));
  ASSERT_OK(store_chunkstore_open(store_base(), STORE_SYNC_NONE, &cs));
  return cs;
}

static void chunk_path(const uint8_t d[32], char *out, size_t cap)
{
  ASSERT(store_path_chunk(out, cap, store_base(), d) > 0);
}

static void set_atime(const uint8_t d[32], time_t t)
{
  char p[1024];
  chunk_path(d, p, sizeof(p));
  struct timespec ts[2] = {{t, 0}, {0, UTIME_OMIT}};
  ASSERT_EQ(utimensat(AT_FDCWD, p, ts, 0), 0);
}

static int count_dirs(const char *path)
{
  DIR *d = opendir(path);
  ASSERT(d != NULL);
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL)
    if (de->d_name[0] != '.')
      n++;
  closedir(d);
  return n;
}

UNIT_TEST(create_and_open)
{
  char p[1024];
  struct stat st;
  struct store_chunkstore *cs = make_store();
  ASSERT_EQ(stat(store_base(), &st), 0);
  ASSERT_EQ(st.st_mode & 0777, 0755);
  snprintf(p, sizeof(p), "%s/.chunks", store_base());
  ASSERT_EQ(stat(p, &st), 0);
  ASSERT_EQ(st.st_mode & 0777, 0750);
  ASSERT_EQ(count_dirs(p), 0); /* lazy: no prefix dirs yet */
  snprintf(p, sizeof(p), "%s/.lock", store_base());
  ASSERT_EQ(stat(p, &st), 0);
  ASSERT_EQ(st.st_mode & 0777, 0644);
  ASSERT_EQ(store_chunk_create(store_base()), CORE_EEXISTS);
  store_chunkstore_close(cs);

  struct store_chunkstore *none = NULL;
  ASSERT_EQ(store_chunkstore_open("relative/path", STORE_SYNC_NONE, &none), CORE_EINVAL);
  snprintf(p, sizeof(p), "%s/nope", unit_tmpdir());
  ASSERT_EQ(store_chunkstore_open(p, STORE_SYNC_NONE, &none), CORE_ENOTFOUND);
  ASSERT(none == NULL);
  ASSERT_EQ(store_chunk_create("relative"), CORE_EINVAL);

  enum store_sync_level lvl;
  ASSERT_OK(store_sync_level_parse("file", &lvl));
  ASSERT_EQ(lvl, STORE_SYNC_FILE);
  ASSERT_EQ(store_sync_level_parse("File", &lvl), CORE_ECONFIG);
  ASSERT_STR_EQ(store_sync_level_name(STORE_SYNC_FILESYSTEM), "filesystem");
}

UNIT_TEST(insert_new_and_read)
{
  struct store_chunkstore *cs = make_store();
  uint8_t d[32];
  digest_of("one", d);
  uint8_t *b = blob(MAGIC_PLAIN, 100, 'x');
  struct store_chunk_insert_result r;
  ASSERT_OK(store_chunk_insert(cs, d, b, 100, &r));
  ASSERT_EQ(r.duplicate, 0);
  ASSERT_EQ(r.written, 100);
  ASSERT_EQ(r.size, 100);

  char p[1024];
  struct stat st;
  chunk_path(d, p, sizeof(p));
  ASSERT_EQ(stat(p, &st), 0);
  ASSERT_EQ(st.st_size, 100);
  ASSERT_EQ(st.st_mode & 0777, 0644);
  /* Exactly one prefix dir was created, and no temp file is left behind. */
  snprintf(p, sizeof(p), "%s/.chunks", store_base());
  ASSERT_EQ(count_dirs(p), 1);
  char hex[65];
  core_hex_encode(d, 32, hex);
  snprintf(p, sizeof(p), "%s/.chunks/%.4s", store_base(), hex);
  ASSERT_EQ(count_dirs(p), 1);

  struct core_buf buf;
  core_buf_init(&buf, STORE_CHUNK_MAX_ENCODED);
  ASSERT_EQ(store_chunk_read(cs, d, &buf), 100);
  ASSERT_EQ(buf.len, 100);
  ASSERT_MEM_EQ(buf.base, b, 100);

  struct store_chunk_stat cst;
  ASSERT_OK(store_chunk_stat(cs, d, &cst));
  ASSERT_EQ(cst.size, 100);

  uint8_t missing[32];
  digest_of("missing", missing);
  ASSERT_EQ(store_chunk_read(cs, missing, &buf), CORE_ENOTFOUND);
  ASSERT_EQ(buf.len, 0);
  ASSERT_EQ(store_chunk_stat(cs, missing, &cst), CORE_ENOTFOUND);
  ASSERT_EQ(store_chunk_touch(cs, missing), CORE_ENOTFOUND);

  /* Bounds: a buffer with a small max, a file over the chunk limit. */
  struct core_buf small;
  core_buf_init(&small, 50);
  ASSERT_EQ(store_chunk_read(cs, d, &small), CORE_ETOOBIG);
  core_buf_free(&small);
  chunk_path(d, p, sizeof(p));
  ASSERT_EQ(truncate(p, STORE_CHUNK_MAX_ENCODED + 1), 0);
  ASSERT_EQ(store_chunk_read(cs, d, &buf), CORE_ETOOBIG);

  /* Sizes outside the blob limits and unknown magics are refused. */
  ASSERT_EQ(store_chunk_insert(cs, d, b, 11, &r), CORE_EINVAL);
  ASSERT_EQ(store_chunk_insert(cs, d, b, STORE_CHUNK_MAX_ENCODED + 1, &r), CORE_EINVAL);
  uint8_t junk[64] = {1, 2, 3};
  ASSERT_EQ(store_chunk_insert(cs, missing, junk, sizeof(junk), &r), CORE_EFORMAT);

  core_buf_free(&buf);
  free(b);
  store_chunkstore_close(cs);
}

/* Inserts blobs of awkward lengths from page-aligned memory (the O_DIRECT
 * head plus a buffered tail) and from unaligned memory (buffered), and
 * reads each back byte for byte. */
static void check_direct_roundtrip(struct store_chunkstore *cs)
{
  static const size_t lens[] = {4096, 4097, 3 * 4096 + 17, (size_t)1 << 20, 70001};
  for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
    for (int aligned = 0; aligned <= 1; aligned++) {
      size_t len = lens[i];
      uint8_t *mem, *b;
      ASSERT_EQ(posix_memalign((void **)&mem, 4096, len + 4096), 0);
      b = aligned ? mem : mem + 8;
      for (size_t k = 0; k < len; k++)
        b[k] = (uint8_t)(k * 7 + i);
      memcpy(b, MAGIC_PLAIN, 8);
      char name[32];
      uint8_t d[32];
      snprintf(name, sizeof(name), "direct-%zu-%d", i, aligned);
      digest_of(name, d);
      struct store_chunk_insert_result r;
      ASSERT_OK(store_chunk_insert(cs, d, b, len, &r));
      ASSERT_EQ(r.written, len);
      struct core_buf out;
      core_buf_init(&out, 1 << 26);
      ASSERT_EQ(store_chunk_read(cs, d, &out), (int)len);
      ASSERT(memcmp(out.base, b, len) == 0);
      core_buf_free(&out);
      free(mem);
    }
  }
}

UNIT_TEST(insert_direct_io_roundtrip)
{
  struct store_chunkstore *cs = make_store();
  check_direct_roundtrip(cs);
  ASSERT_EQ(atomic_load(&cs->direct_io), 1); /* ext4/xfs/btrfs take O_DIRECT */
  store_chunkstore_close(cs);
}

static int alloc_calls;

static void *counting_alloc(void *ctx, size_t len, size_t *cap)
{
  (void)ctx;
  alloc_calls++;
  *cap = len + 100;
  return malloc(*cap);
}

/* store_chunk_read_into takes its memory from the caller's allocator, sized
 * by the file, exactly once. */
UNIT_TEST(read_into_uses_allocator)
{
  struct store_chunkstore *cs = make_store();
  uint8_t d[32];
  digest_of("into", d);
  uint8_t *b = blob(MAGIC_PLAIN, 5000, 'q');
  struct store_chunk_insert_result r;
  ASSERT_OK(store_chunk_insert(cs, d, b, 5000, &r));
  struct store_chunk_alloc alloc = {counting_alloc, NULL};
  struct core_buf out;
  core_buf_init(&out, 1 << 20);
  ASSERT_EQ(store_chunk_read_into(cs, d, &alloc, &out), 5000);
  ASSERT_EQ(alloc_calls, 1);
  ASSERT_EQ(out.cap, 5001 + 100);
  ASSERT(memcmp(out.base, b, 5000) == 0);
  core_buf_free(&out);
  free(b);
  store_chunkstore_close(cs);
}

/* tmpfs refuses O_DIRECT on older kernels (then every write is buffered) and
 * takes it on newer ones: either way the bytes must come back. */
UNIT_TEST(insert_direct_io_tmpfs)
{
  if (unit_shmdir() == NULL)
    return; /* no /dev/shm: nothing to check */
  snprintf(base_dir, sizeof(base_dir), "%s", unit_shmdir());
  struct store_chunkstore *cs = make_store();
  check_direct_roundtrip(cs);
  store_chunkstore_close(cs);
}

UNIT_TEST(insert_duplicate_touches)
{
  struct store_chunkstore *cs = make_store();
  uint8_t d[32];
  digest_of("dup", d);
  uint8_t *b = blob(MAGIC_ZSTD, 64, 'z');
  struct store_chunk_insert_result r;
  ASSERT_OK(store_chunk_insert(cs, d, b, 64, &r));
  set_atime(d, 1000);
  struct store_chunk_stat before, after;
  ASSERT_OK(store_chunk_stat(cs, d, &before));
  ASSERT_EQ(before.atime_sec, 1000);

  ASSERT_OK(store_chunk_insert(cs, d, b, 64, &r));
  ASSERT_EQ(r.duplicate, 1);
  ASSERT_EQ(r.written, 0);
  ASSERT_EQ(r.size, 64);
  ASSERT_OK(store_chunk_stat(cs, d, &after));
  ASSERT(after.atime_sec > 1000);
  ASSERT_EQ(after.mtime_sec, before.mtime_sec); /* UTIME_OMIT */

  set_atime(d, 1000);
  ASSERT_OK(store_chunk_touch(cs, d));
  ASSERT_OK(store_chunk_stat(cs, d, &after));
  ASSERT(after.atime_sec > 1000);
  free(b);
  store_chunkstore_close(cs);
}

UNIT_TEST(insert_replaces_empty_file)
{
  struct store_chunkstore *cs = make_store();
  uint8_t d[32];
  digest_of("empty", d);
  uint8_t *b = blob(MAGIC_PLAIN, 40, 'e');
  struct store_chunk_insert_result r;
  /* A 0-byte file (e.g. left by a crash on a file system without ordered
   * data) under the chunk's name. */
  ASSERT_OK(store_chunk_insert(cs, d, b, 40, &r));
  char p[1024];
  chunk_path(d, p, sizeof(p));
  ASSERT_EQ(truncate(p, 0), 0);
  ASSERT_OK(store_chunk_insert(cs, d, b, 40, &r));
  ASSERT_EQ(r.duplicate, 0);
  ASSERT_EQ(r.written, 40);
  struct store_chunk_stat st;
  ASSERT_OK(store_chunk_stat(cs, d, &st));
  ASSERT_EQ(st.size, 40);
  free(b);
  store_chunkstore_close(cs);
}

static void put_file(const uint8_t d[32], const void *data, size_t len)
{
  char p[1024];
  chunk_path(d, p, sizeof(p));
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT(fd >= 0);
  ASSERT_EQ(write(fd, data, len), (ssize_t)len);
  close(fd);
}

UNIT_TEST(insert_mix_rules)
{
  struct store_chunkstore *cs = make_store();
  struct store_chunk_insert_result r;
  struct store_chunk_stat st;
  uint8_t d[32];
  digest_of("rules", d);
  uint8_t *plain100 = blob(MAGIC_PLAIN, 100, 'p');
  uint8_t *zstd60 = blob(MAGIC_ZSTD, 60, 'z');
  uint8_t *enc100 = blob(MAGIC_ENC, 100, 'E');
  uint8_t *enc120 = blob(MAGIC_ENC, 120, 'E');
  uint8_t *zenc80 = blob(MAGIC_ZSTD_ENC, 80, 'Z');

  /* Existing smaller: kept, reported as a duplicate, touched. */
  ASSERT_OK(store_chunk_insert(cs, d, zstd60, 60, &r));
  set_atime(d, 1000);
  ASSERT_OK(store_chunk_insert(cs, d, plain100, 100, &r));
  ASSERT_EQ(r.duplicate, 1);
  ASSERT_EQ(r.size, 60);
  ASSERT_OK(store_chunk_stat(cs, d, &st));
  ASSERT_EQ(st.size, 60);
  ASSERT(st.atime_sec > 1000);

  /* Existing larger: replaced by the smaller upload. */
  put_file(d, plain100, 100);
  ASSERT_OK(store_chunk_insert(cs, d, zstd60, 60, &r));
  ASSERT_EQ(r.duplicate, 0);
  ASSERT_EQ(r.written, 60);
  ASSERT_OK(store_chunk_stat(cs, d, &st));
  ASSERT_EQ(st.size, 60);

  /* Incoming encrypted, existing unencrypted: refused, file untouched. */
  ASSERT_EQ(store_chunk_insert(cs, d, enc100, 100, &r), CORE_EEXISTS);
  ASSERT_OK(store_chunk_stat(cs, d, &st));
  ASSERT_EQ(st.size, 60);

  /* Both encrypted and uncompressed, sizes differ: refused. */
  put_file(d, enc100, 100);
  ASSERT_EQ(store_chunk_insert(cs, d, enc120, 120, &r), CORE_EEXISTS);

  /* Incoming encrypted, one side compressed: existing kept. */
  ASSERT_OK(store_chunk_insert(cs, d, zenc80, 80, &r));
  ASSERT_EQ(r.duplicate, 1);
  ASSERT_EQ(r.size, 100);
  put_file(d, zenc80, 80);
  ASSERT_OK(store_chunk_insert(cs, d, enc120, 120, &r));
  ASSERT_EQ(r.duplicate, 1);
  ASSERT_OK(store_chunk_stat(cs, d, &st));
  ASSERT_EQ(st.size, 80);

  /* Existing file with a corrupt header while the rules need it. */
  uint8_t garbage[100];
  memset(garbage, 7, sizeof(garbage));
  put_file(d, garbage, sizeof(garbage));
  ASSERT_EQ(store_chunk_insert(cs, d, enc120, 120, &r), CORE_EFORMAT);

  free(plain100);
  free(zstd60);
  free(enc100);
  free(enc120);
  free(zenc80);
  store_chunkstore_close(cs);
}

struct race_arg {
  struct store_chunkstore *cs;
  const uint8_t *digest;
  const uint8_t *data;
  size_t len;
  int rc;
};

static void *race_insert(void *p)
{
  struct race_arg *a = p;
  struct store_chunk_insert_result r;
  for (int i = 0; i < 50 && a->rc == 0; i++)
    a->rc = store_chunk_insert(a->cs, a->digest, a->data, a->len, &r);
  return NULL;
}

UNIT_TEST(insert_concurrent_same_digest)
{
  struct store_chunkstore *cs = make_store();
  uint8_t d[32];
  digest_of("race", d);
  uint8_t *b = blob(MAGIC_PLAIN, 4096, 'r');
  pthread_t t[4];
  struct race_arg a[4];
  for (int i = 0; i < 4; i++) {
    a[i] = (struct race_arg){cs, d, b, 4096, 0};
    ASSERT_EQ(pthread_create(&t[i], NULL, race_insert, &a[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    ASSERT_OK(a[i].rc);
  }
  char hex[65], p[1024];
  core_hex_encode(d, 32, hex);
  snprintf(p, sizeof(p), "%s/.chunks/%.4s", store_base(), hex);
  ASSERT_EQ(count_dirs(p), 1); /* the chunk, no temp files */
  free(b);
  store_chunkstore_close(cs);
}

static void touch_file(const char *dir, const char *name)
{
  char p[1024];
  ASSERT((size_t)snprintf(p, sizeof(p), "%s/%s", dir, name) < sizeof(p));
  int fd = open(p, O_WRONLY | O_CREAT, 0644);
  ASSERT(fd >= 0);
  close(fd);
}

UNIT_TEST(iterator_yields_exactly_chunks)
{
  struct store_chunkstore *cs = make_store();
  enum { N = 40 };
  uint8_t digests[N][32];
  uint8_t *b = blob(MAGIC_PLAIN, 20, 'i');
  for (int i = 0; i < N; i++) {
    char s[32];
    snprintf(s, sizeof(s), "chunk%d", i);
    digest_of(s, digests[i]);
    struct store_chunk_insert_result r;
    ASSERT_OK(store_chunk_insert(cs, digests[i], b, 20, &r));
  }
  /* Junk beside the chunks: temp files, wrong case, wrong length, a
   * directory with a chunk name, a symlink, files in .chunks itself, a
   * non-hex prefix dir. */
  char hex[65], dir[1024], p[1200];
  core_hex_encode(digests[0], 32, hex);
  snprintf(dir, sizeof(dir), "%s/.chunks/%.4s", store_base(), hex);
  snprintf(p, sizeof(p), "%s.tmp_AbC123", hex);
  touch_file(dir, p);
  touch_file(dir, "ABCDEF0000000000000000000000000000000000000000000000000000000000");
  touch_file(dir, "abcdef");
  snprintf(p, sizeof(p), "%s.x.bad", hex);
  touch_file(dir, p);
  snprintf(p, sizeof(p), "%s.10.bad", hex);
  touch_file(dir, p);
  snprintf(p, sizeof(p), "%s/%s", dir, "0000000000000000000000000000000000000000000000000000000000000000");
  ASSERT_EQ(mkdir(p, 0755), 0);
  snprintf(p, sizeof(p), "%s/%s", dir, "1111111111111111111111111111111111111111111111111111111111111111");
  ASSERT_EQ(symlink("/etc/passwd", p), 0);
  snprintf(p, sizeof(p), "%s/.chunks", store_base());
  touch_file(p, "abcd");
  snprintf(p, sizeof(p), "%s/.chunks/zzzz", store_base());
  ASSERT_EQ(mkdir(p, 0755), 0);
  touch_file(p, "2222222222222222222222222222222222222222222222222222222222222222");
  /* A bad file and a using marker are yielded with their kinds. */
  snprintf(p, sizeof(p), "%s.3.bad", hex);
  touch_file(dir, p);
  snprintf(p, sizeof(p), "%s.using", hex);
  touch_file(dir, p);

  int seen[N] = {0};
  int chunks = 0, bads = 0, usings = 0;
  unsigned last_prefix = 0;
  struct store_chunk_iter it;
  struct store_chunk_entry e;
  ASSERT_OK(store_chunk_iter_open(&it, cs, 0, STORE_CHUNK_PREFIXES, 0));
  int rc;
  while ((rc = store_chunk_iter_next(&it, &e)) == 1) {
    ASSERT(e.prefix >= last_prefix); /* in prefix order */
    last_prefix = e.prefix;
    ASSERT_EQ(e.prefix, (unsigned)(e.digest[0] << 8 | e.digest[1]));
    if (e.kind == STORE_CHUNK_KIND_BAD) {
      bads++;
      ASSERT_EQ(e.bad_index, 3);
      ASSERT_MEM_EQ(e.digest, digests[0], 32);
      continue;
    }
    if (e.kind == STORE_CHUNK_KIND_USING) {
      usings++;
      continue;
    }
    ASSERT_EQ(e.kind, STORE_CHUNK_KIND_CHUNK);
    ASSERT_EQ(e.size, 20);
    ASSERT(e.atime_sec > 0);
    int found = 0;
    for (int i = 0; i < N; i++)
      if (memcmp(digests[i], e.digest, 32) == 0) {
        seen[i]++;
        found = 1;
      }
    ASSERT(found);
    chunks++;
  }
  ASSERT_EQ(rc, 0);
  store_chunk_iter_close(&it);
  ASSERT_EQ(chunks, N);
  ASSERT_EQ(bads, 1);
  ASSERT_EQ(usings, 1);
  for (int i = 0; i < N; i++)
    ASSERT_EQ(seen[i], 1);

  /* NO_STAT: same entries, no sizes. A sub-range sees only its prefixes. */
  ASSERT_OK(store_chunk_iter_open(&it, cs, 0, STORE_CHUNK_PREFIXES, STORE_CHUNK_ITER_NO_STAT));
  int n = 0;
  while (store_chunk_iter_next(&it, &e) == 1)
    n++;
  store_chunk_iter_close(&it);
  ASSERT_EQ(n, N + 2);
  unsigned p0 = (unsigned)(digests[0][0] << 8 | digests[0][1]);
  ASSERT_OK(store_chunk_iter_open(&it, cs, p0, p0 + 1, 0));
  n = 0;
  while (store_chunk_iter_next(&it, &e) == 1) {
    ASSERT_EQ(e.prefix, p0);
    n++;
  }
  store_chunk_iter_close(&it);
  ASSERT(n >= 3); /* the chunk, its .bad and its .using (plus any neighbour) */

  /* Name parser. */
  uint8_t dd[32];
  int bi;
  ASSERT_EQ(store_chunk_parse_name(hex, dd, &bi), STORE_CHUNK_KIND_CHUNK);
  ASSERT_EQ(bi, -1);
  snprintf(p, sizeof(p), "%s.9.bad", hex);
  ASSERT_EQ(store_chunk_parse_name(p, dd, &bi), STORE_CHUNK_KIND_BAD);
  ASSERT_EQ(bi, 9);
  snprintf(p, sizeof(p), "%s.tmp_123456", hex);
  ASSERT_EQ(store_chunk_parse_name(p, dd, &bi), 0);
  ASSERT_EQ(store_chunk_parse_name("", dd, &bi), 0);
  free(b);
  store_chunkstore_close(cs);
}

UNIT_TEST(mark_bad_numbering)
{
  struct store_chunkstore *cs = make_store();
  uint8_t d[32];
  digest_of("bad", d);
  uint8_t *b = blob(MAGIC_PLAIN, 30, 'b');
  struct store_chunk_insert_result r;
  for (int n = 0; n <= 9; n++) {
    ASSERT_OK(store_chunk_insert(cs, d, b, 30, &r));
    ASSERT_EQ(r.duplicate, 0); /* the previous copy was renamed away */
    ASSERT_EQ(store_chunk_mark_bad(cs, d), n);
  }
  /* All ten taken: .9.bad is overwritten. */
  b[20] = 'X';
  ASSERT_OK(store_chunk_insert(cs, d, b, 30, &r));
  ASSERT_EQ(store_chunk_mark_bad(cs, d), 9);
  ASSERT_EQ(store_chunk_mark_bad(cs, d), CORE_ENOTFOUND);

  char hex[65], p[1024];
  core_hex_encode(d, 32, hex);
  snprintf(p, sizeof(p), "%s/.chunks/%.4s/%s.9.bad", store_base(), hex, hex);
  FILE *f = fopen(p, "rb");
  ASSERT(f != NULL);
  uint8_t back[30];
  ASSERT_EQ(fread(back, 1, 30, f), 30);
  fclose(f);
  ASSERT_EQ(back[20], 'X');

  /* A hole in the numbering is reused first. */
  snprintf(p, sizeof(p), "%s/.chunks/%.4s/%s.4.bad", store_base(), hex, hex);
  ASSERT_EQ(unlink(p), 0);
  ASSERT_OK(store_chunk_insert(cs, d, b, 30, &r));
  ASSERT_EQ(store_chunk_mark_bad(cs, d), 4);

  ASSERT_EQ(store_chunk_touch_bad(cs, d), 10);
  uint8_t other[32];
  digest_of("other", other);
  ASSERT_EQ(store_chunk_touch_bad(cs, other), 0);
  free(b);
  store_chunkstore_close(cs);
}

UNIT_TEST(remove_if_older)
{
  struct store_chunkstore *cs = make_store();
  uint8_t d[32];
  digest_of("sweep", d);
  uint8_t *b = blob(MAGIC_PLAIN, 30, 's');
  struct store_chunk_insert_result r;
  ASSERT_OK(store_chunk_insert(cs, d, b, 30, &r));
  char hex[65];
  core_hex_encode(d, 32, hex);
  unsigned prefix = (unsigned)(d[0] << 8 | d[1]);
  struct store_chunk_stat st;

  set_atime(d, 5000);
  ASSERT_EQ(store_chunk_remove_if_older(cs, prefix, hex, 5000, &st), 0); /* not older */
  ASSERT_EQ(st.atime_sec, 5000);
  ASSERT_EQ(store_chunk_remove_if_older(cs, prefix, hex, 5001, &st), 1);
  ASSERT_EQ(store_chunk_remove_if_older(cs, prefix, hex, 5001, &st), CORE_ENOTFOUND);
  ASSERT_EQ(store_chunk_remove_if_older(cs, prefix, "../../etc/passwd", 5001, &st), CORE_ENAME);
  ASSERT_EQ(store_chunk_remove_if_older(cs, 70000, hex, 5001, &st), CORE_ENAME);

  ASSERT_OK(store_chunk_insert(cs, d, b, 30, &r));
  ASSERT_EQ(store_chunk_remove_if_older(cs, prefix, hex, INT64_MAX, NULL), 1);
  free(b);
  store_chunkstore_close(cs);
}

/* The sweep primitive relative to the iterator's open prefix directory: the
 * same decisions as store_chunk_remove_if_older, only for the entry the
 * iterator stands on, and the walk goes on past removed files. */
UNIT_TEST(iter_remove_if_older)
{
  struct store_chunkstore *cs = make_store();
  enum { N = 40 };
  uint8_t d[N][32];
  uint8_t *b = blob(MAGIC_PLAIN, 30, 'i');
  struct store_chunk_insert_result r;
  for (int i = 0; i < N; i++) {
    char name[32];
    snprintf(name, sizeof(name), "iter-sweep-%d", i);
    digest_of(name, d[i]);
    ASSERT_OK(store_chunk_insert(cs, d[i], b, 30, &r));
    set_atime(d[i], i % 2 ? 9000 : 1000); /* odd: recent, kept */
  }
  struct store_chunk_iter it;
  struct store_chunk_entry e, stale;
  struct store_chunk_stat st;
  int removed = 0, kept = 0, rc;
  ASSERT_OK(store_chunk_iter_open(&it, cs, 0, STORE_CHUNK_PREFIXES, STORE_CHUNK_ITER_NO_STAT));
  while ((rc = store_chunk_iter_next(&it, &e)) == 1) {
    rc = store_chunk_iter_remove_if_older(&it, cs, &e, 5000, &st);
    ASSERT(rc == 0 || rc == 1);
    ASSERT_EQ(st.size, 30);
    if (rc == 1) {
      ASSERT_EQ(st.atime_sec, 1000);
      removed++;
    } else {
      ASSERT_EQ(st.atime_sec, 9000);
      kept++;
    }
    /* Gone already, or a name that is not a chunk's: refused. */
    if (rc == 1)
      ASSERT_EQ(store_chunk_iter_remove_if_older(&it, cs, &e, 5000, &st), CORE_ENOTFOUND);
    struct store_chunk_entry bad = e;
    snprintf(bad.name, sizeof(bad.name), "../%.4s/x", e.name);
    ASSERT_EQ(store_chunk_iter_remove_if_older(&it, cs, &bad, 5000, &st), CORE_ENAME);
    bad = e;
    bad.prefix = (e.prefix + 1) % STORE_CHUNK_PREFIXES; /* not the directory held open */
    ASSERT_EQ(store_chunk_iter_remove_if_older(&it, cs, &bad, INT64_MAX, NULL), CORE_ENAME);
    stale = e;
  }
  ASSERT_EQ(rc, 0);
  ASSERT_EQ(removed, N / 2);
  ASSERT_EQ(kept, N / 2);
  /* At the end no directory is open: nothing to remove relative to. */
  ASSERT_EQ(store_chunk_iter_remove_if_older(&it, cs, &stale, INT64_MAX, NULL), CORE_ENAME);
  store_chunk_iter_close(&it);
  for (int i = 0; i < N; i++) {
    ASSERT_EQ(store_chunk_stat(cs, d[i], &st), i % 2 ? 0 : CORE_ENOTFOUND);
  }
  free(b);
  store_chunkstore_close(cs);
}

static unsigned progress_calls, progress_last;

static void on_progress(void *arg, unsigned done, unsigned total)
{
  (void)arg;
  ASSERT_EQ(total, STORE_CHUNK_PREFIXES);
  ASSERT(done > progress_last);
  progress_last = done;
  progress_calls++;
}

/* 65,536 directories cost seconds to create and remove on ext4 but a fraction
 * of a second on tmpfs: run on /dev/shm when it exists. */
UNIT_TEST(fill_layout_full)
{
  if (unit_shmdir())
    snprintf(base_dir, sizeof(base_dir), "%s", unit_shmdir());
  struct store_chunkstore *cs = make_store();
  uint8_t d[32];
  digest_of("before-fill", d);
  uint8_t *b = blob(MAGIC_PLAIN, 30, 'f');
  struct store_chunk_insert_result r;
  ASSERT_OK(store_chunk_insert(cs, d, b, 30, &r)); /* one lazily created dir already */

  ASSERT_OK(store_chunk_fill_layout(store_base(), on_progress, NULL));
  ASSERT_EQ(progress_last, STORE_CHUNK_PREFIXES);
  ASSERT_EQ(progress_calls, 16);
  char p[1024];
  snprintf(p, sizeof(p), "%s/.chunks", store_base());
  ASSERT_EQ(count_dirs(p), 65536);
  struct stat st;
  snprintf(p, sizeof(p), "%s/.chunks/ffff", store_base());
  ASSERT_EQ(stat(p, &st), 0);
  ASSERT(S_ISDIR(st.st_mode));
  ASSERT_OK(store_chunk_fill_layout(store_base(), NULL, NULL)); /* idempotent */

  /* The walk over a full layout still yields exactly the one chunk. */
  struct store_chunk_iter it;
  struct store_chunk_entry e;
  ASSERT_OK(store_chunk_iter_open(&it, cs, 0, STORE_CHUNK_PREFIXES, 0));
  int n = 0;
  while (store_chunk_iter_next(&it, &e) == 1)
    n++;
  store_chunk_iter_close(&it);
  ASSERT_EQ(n, 1);
  free(b);
  store_chunkstore_close(cs);
}

UNIT_TEST(fill_layout_range)
{
  struct store_chunkstore *cs = make_store();
  ASSERT_OK(store_chunk__fill_layout_range(store_base(), 0x10, 0x20, NULL, NULL));
  char p[1024];
  snprintf(p, sizeof(p), "%s/.chunks", store_base());
  ASSERT_EQ(count_dirs(p), 16);
  snprintf(p, sizeof(p), "%s/.chunks/001f", store_base());
  struct stat st;
  ASSERT_EQ(stat(p, &st), 0);
  ASSERT_EQ(st.st_mode & 0777, 0750);
  ASSERT_EQ(store_chunk__fill_layout_range(store_base(), 5, 70000, NULL, NULL), CORE_EINVAL);
  snprintf(p, sizeof(p), "%s/none", unit_tmpdir());
  ASSERT_EQ(store_chunk_fill_layout(p, NULL, NULL), CORE_ENOTFOUND);
  store_chunkstore_close(cs);
}

UNIT_TEST(sync_level_file)
{
  struct store_chunkstore *cs;
  ASSERT_OK(store_chunk_create(store_base()));
  ASSERT_OK(store_chunkstore_open(store_base(), STORE_SYNC_FILE, &cs));
  uint8_t *b = blob(MAGIC_PLAIN, 1000, 'y');
  for (int i = 0; i < 5; i++) {
    uint8_t d[32];
    char s[32];
    snprintf(s, sizeof(s), "sync%d", i);
    digest_of(s, d);
    struct store_chunk_insert_result r;
    ASSERT_OK(store_chunk_insert(cs, d, b, 1000, &r)); /* new prefix dir: fsync .chunks too */
    ASSERT_OK(store_chunk_insert(cs, d, b, 1000, &r));
    ASSERT_EQ(r.duplicate, 1);
    ASSERT_OK(store_chunk_stat(cs, d, &(struct store_chunk_stat){0}));
  }
  ASSERT_OK(store_chunkstore_sync(cs)); /* level file: no syncfs, returns 0 */
  store_chunkstore_set_sync_level(cs, STORE_SYNC_FILESYSTEM);
  ASSERT_OK(store_chunkstore_sync(cs));
  ASSERT_OK(store_syncfs(store_base()));
  ASSERT(store_syncfs("/nonexistent-cairn-dir") < 0);
  free(b);
  store_chunkstore_close(cs);
}

UNIT_TEST(writers_and_gc_locks)
{
  struct store_chunkstore *a = make_store();
  struct store_chunkstore *b; /* a second open file description: acts like another process */
  ASSERT_OK(store_chunkstore_open(store_base(), STORE_SYNC_NONE, &b));
  int64_t oldest;
  ASSERT_EQ(store_chunkstore_oldest_writer(a, &oldest), 0);

  uint64_t t1, t2, t3;
  ASSERT_OK(store_chunkstore_writer_begin(a, 2000, &t1));
  ASSERT_OK(store_chunkstore_writer_begin(a, 1000, &t2));
  ASSERT_OK(store_chunkstore_writer_begin(a, 3000, &t3));
  ASSERT_EQ(store_chunkstore_oldest_writer(a, &oldest), 1);
  ASSERT_EQ(oldest, 1000);
  store_chunkstore_writer_end(a, t2);
  ASSERT_EQ(store_chunkstore_oldest_writer(a, &oldest), 1);
  ASSERT_EQ(oldest, 2000);

  /* GC in the writers' own handle runs (it reads oldest_writer instead). */
  ASSERT_OK(store_chunkstore_gc_begin(a));
  ASSERT_EQ(store_chunkstore_gc_begin(a), CORE_ELOCKED); /* one GC at a time */
  /* Another holder can neither write nor collect while GC holds it. */
  uint64_t tb;
  ASSERT_EQ(store_chunkstore_writer_begin(b, 5000, &tb), CORE_ELOCKED);
  ASSERT_EQ(store_chunkstore_gc_begin(b), CORE_ELOCKED);
  /* A new writer in the GC's handle is fine. */
  uint64_t t4;
  ASSERT_OK(store_chunkstore_writer_begin(a, 4000, &t4));
  store_chunkstore_gc_end(a);

  /* Back to shared: the other holder may write, not collect. */
  ASSERT_OK(store_chunkstore_writer_begin(b, 5000, &tb));
  ASSERT_EQ(store_chunkstore_gc_begin(b), CORE_ELOCKED);
  store_chunkstore_writer_end(b, tb);
  store_chunkstore_writer_end(a, t1);
  store_chunkstore_writer_end(a, t3);
  store_chunkstore_writer_end(a, t4);
  store_chunkstore_writer_end(a, 12345); /* unknown token: ignored */
  ASSERT_EQ(store_chunkstore_oldest_writer(a, &oldest), 0);

  /* Everything released: b can collect now, and then a cannot. */
  ASSERT_OK(store_chunkstore_gc_begin(b));
  ASSERT_EQ(store_chunkstore_gc_begin(a), CORE_ELOCKED);
  store_chunkstore_gc_end(b);
  store_chunkstore_close(a);
  store_chunkstore_close(b);
}

UNIT_TEST(gc_excludes_other_process)
{
  struct store_chunkstore *a = make_store();
  int ready[2], done[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(done), 0);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    struct store_chunkstore *c;
    uint64_t t;
    char x = 0;
    if (store_chunkstore_open(store_base(), STORE_SYNC_NONE, &c) < 0 ||
        store_chunkstore_writer_begin(c, 1, &t) < 0)
      _exit(2);
    if (write(ready[1], "r", 1) != 1 || read(done[0], &x, 1) != 1)
      _exit(3);
    store_chunkstore_writer_end(c, t);
    store_chunkstore_close(c);
    _exit(0);
  }
  char x;
  ASSERT_EQ(read(ready[0], &x, 1), 1);
  ASSERT_EQ(store_chunkstore_gc_begin(a), CORE_ELOCKED);
  ASSERT_EQ(write(done[1], "d", 1), 1);
  int status;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_OK(store_chunkstore_gc_begin(a));
  store_chunkstore_gc_end(a);
  close(ready[0]);
  close(ready[1]);
  close(done[0]);
  close(done[1]);
  store_chunkstore_close(a);
}

UNIT_MAIN(UNIT_CASE(create_and_open), UNIT_CASE(insert_new_and_read),
          UNIT_CASE(insert_direct_io_roundtrip), UNIT_CASE(insert_direct_io_tmpfs),
          UNIT_CASE(read_into_uses_allocator),
          UNIT_CASE(insert_duplicate_touches), UNIT_CASE(insert_replaces_empty_file),
          UNIT_CASE(insert_mix_rules), UNIT_CASE(insert_concurrent_same_digest),
          UNIT_CASE(iterator_yields_exactly_chunks), UNIT_CASE(mark_bad_numbering),
          UNIT_CASE(remove_if_older), UNIT_CASE(iter_remove_if_older), UNIT_CASE(fill_layout_full), UNIT_CASE(fill_layout_range),
          UNIT_CASE(sync_level_file), UNIT_CASE(writers_and_gc_locks),
          UNIT_CASE(gc_excludes_other_process))
