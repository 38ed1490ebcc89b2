/* client_bench.c: CPU throughput of the backup path's building blocks. */
#include "client/client_bench.h"

#include "client/client_chunker.h"
#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "format/format_blob.h"
#include "format/format_crypt.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define BENCH_LEN ((size_t)4 << 20)

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Words from a small vocabulary: compresses about 3:1 with zstd level 1,
 * like source code or logs. */
static void text_data(uint8_t *d, size_t len)
{
  static const char *words[] = {"backup", "chunk", "index", "store", "the", "of",
                                "snapshot", "datastore", "verify", "garbage",
                                "collection", "namespace", "0x1f2e", "42", "\n",
                                "error:", "ok", "size", "digest", "sha256"};
  uint64_t s = 0x2545f4914f6cdd1dull;
  size_t i = 0;
  while (i < len) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    const char *w = words[s % (sizeof(words) / sizeof(words[0]))];
    size_t n = strlen(w);
    for (size_t k = 0; k < n && i < len; k++)
      d[i++] = (uint8_t)w[k];
    if (i < len)
      d[i++] = (uint8_t)((s >> 20) % 7 == 0 ? '\n' : ' ');
  }
}

struct bench_env {
  uint8_t *data;
  uint8_t *out;
  size_t out_cap;
  uint8_t *zblob;
  size_t zlen;
  uint8_t digest[32];
  struct format_blob_ctx ctx;
  struct format_crypt crypt;
  struct client_chunker chunker;
};

typedef int (*bench_fn)(struct bench_env *e);

static int b_sha(struct bench_env *e)
{
  core_sha256(e->data, BENCH_LEN, e->digest);
  return 0;
}

static int b_chunker(struct bench_env *e)
{
  size_t off = 0;
  while (off < BENCH_LEN) {
    size_t k = client_chunker_scan(&e->chunker, e->data + off, BENCH_LEN - off);
    off += k ? k : BENCH_LEN - off;
  }
  return 0;
}

static int b_zstd(struct bench_env *e)
{
  size_t n;
  return format_blob_encode(&e->ctx, e->data, BENCH_LEN, FORMAT_BLOB_COMPRESS, NULL, e->out,
                           e->out_cap, &n);
}

static int b_unzstd(struct bench_env *e)
{
  uint8_t *p;
  size_t n;
  int rc = format_blob_decode(&e->ctx, e->zblob, e->zlen, NULL, FORMAT_CHUNK_MAX_SIZE, NULL, &p, &n);
  core_free(p);
  return rc;
}

static int b_verify(struct bench_env *e)
{
  uint8_t *p;
  size_t n;
  int rc = format_blob_decode(&e->ctx, e->zblob, e->zlen, NULL, FORMAT_CHUNK_MAX_SIZE, e->digest,
                             &p, &n);
  core_free(p);
  return rc;
}

static int b_aes(struct bench_env *e)
{
  uint8_t iv[16] = {1}, tag[16];
  return format_crypt_gcm_encrypt(e->crypt.enc_key, iv, e->data, BENCH_LEN, e->out, tag,
                                 NULL);
}

static double run(struct bench_env *e, bench_fn fn, double seconds)
{
  double t0 = now_s(), t;
  uint64_t rounds = 0;
  do {
    if (fn(e) < 0)
      return -1;
    rounds++;
    t = now_s() - t0;
  } while (t < seconds);
  return (double)rounds * (double)BENCH_LEN / t / 1e6;
}

size_t client_bench_cpu(double seconds, struct client_bench_row *rows, size_t max)
{
  static const struct {
    const char *name;
    bench_fn fn;
  } tests[] = {
      {"SHA-256 checksum", b_sha},
      {"content-defined chunking", b_chunker},
      {"zstd level 1 compression", b_zstd},
      {"zstd level 1 decompression", b_unzstd},
      {"chunk verification", b_verify},
      {"AES-256-GCM encryption", b_aes},
  };
  struct bench_env e;
  uint8_t key[32];
  size_t n = 0;

  memset(&e, 0, sizeof(e));
  e.data = core_malloc(BENCH_LEN);
  e.out_cap = format_blob_encode_bound(BENCH_LEN);
  e.out = core_malloc(e.out_cap);
  text_data(e.data, BENCH_LEN);
  core_sha256(e.data, BENCH_LEN, e.digest);
  format_blob_ctx_init(&e.ctx);
  memset(key, 0x5a, sizeof(key));
  format_crypt_init(&e.crypt, key);
  client_chunker_init(&e.chunker, CLIENT_CHUNKER_GEAR, 0, 0, 0);
  if (format_blob_encode_alloc(&e.ctx, e.data, BENCH_LEN, FORMAT_BLOB_COMPRESS, NULL, &e.zblob,
                              &e.zlen) < 0)
    e.zblob = NULL;

  for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]) && n < max; i++) {
    snprintf(rows[n].name, sizeof(rows[n].name), "%s", tests[i].name);
    if (e.zblob == NULL && (tests[i].fn == b_unzstd || tests[i].fn == b_verify))
      rows[n].mbps = -1;
    else
      rows[n].mbps = run(&e, tests[i].fn, seconds);
    n++;
  }
  format_crypt_clear(&e.crypt);
  format_blob_ctx_free(&e.ctx);
  core_free(e.zblob);
  core_free(e.out);
  core_free(e.data);
  return n;
}

void client_bench_print(void *fp, const struct client_bench_row *rows, size_t n)
{
  FILE *f = fp;
  fprintf(f, "%-34s %14s\n", "Name", "Value");
  fprintf(f, "%-34s %14s\n", "----------------------------------", "--------------");
  for (size_t i = 0; i < n; i++) {
    if (rows[i].mbps < 0)
      fprintf(f, "%-34s %14s\n", rows[i].name, "failed");
    else
      fprintf(f, "%-34s %9.1f MB/s\n", rows[i].name, rows[i].mbps);
  }
}
