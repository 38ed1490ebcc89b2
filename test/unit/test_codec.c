/* test_codec.c: DataBlob, fidx/didx, manifest, crypt config and key files. */
#include "unit.h"

#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "format/format_blob.h"
#include "format/format_crypt.h"
#include "format/format_index.h"
#include "format/format_keyfile.h"
#include "format/format_manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>
#include <zstd.h>

/* ---- helpers ---- */

static void hex_to(const char *hex, uint8_t *out, size_t n)
{
  ASSERT(strlen(hex) == 2 * n);
  ASSERT_OK(core_hex_decode(hex, n, out));
}

static void assert_hex(const uint8_t *data, size_t n, const char *hex)
{
  char buf[256];
  ASSERT(2 * n < sizeof(buf));
  core_hex_encode(data, n, buf);
  ASSERT_STR_EQ(buf, hex);
}

/* Deterministic, incompressible bytes (xorshift). */
static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
  uint64_t x = seed | 1;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p[i] = (uint8_t)x;
  }
}

/* Compressible text. */
static void fill_text(uint8_t *p, size_t n)
{
  static const char words[] = "the quick brown fox jumps over the lazy dog ";
  for (size_t i = 0; i < n; i++)
    p[i] = (uint8_t)words[(i * 7 + i / 45) % (sizeof(words) - 1)];
}

static void key9(struct format_crypt *c)
{
  uint8_t key[32];
  memset(key, 9, sizeof(key));
  ASSERT_OK(format_crypt_init(c, key));
}

static uint8_t *read_file(const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  uint8_t *buf;
  long n;
  ASSERT(f != NULL);
  ASSERT(fseek(f, 0, SEEK_END) == 0);
  n = ftell(f);
  ASSERT(n >= 0);
  rewind(f);
  buf = core_malloc((size_t)n + 1);
  ASSERT_EQ(fread(buf, 1, (size_t)n, f), n);
  fclose(f);
  *len = (size_t)n;
  return buf;
}

/* ---- DataBlob ---- */

UNIT_TEST(blob_magics_are_sha256_prefixes)
{
  static const char *names[] = {
    "Proxmox Backup uncompressed blob v1.0",
    "Proxmox Backup zstd compressed blob v1.0",
    "Proxmox Backup encrypted blob v1.0",
    "Proxmox Backup zstd compressed encrypted blob v1.0",
  };
  for (int k = 0; k < 4; k++) {
    uint8_t d[32], blob[64];
    core_sha256(names[k], strlen(names[k]), d);
    memset(blob, 0, sizeof(blob));
    memcpy(blob, d, 8);
    ASSERT_EQ(format_blob_magic_kind(blob, sizeof(blob)), k);
  }
}

UNIT_TEST(blob_hello_vector)
{
  uint8_t out[64], digest[32];
  size_t len;
  uint8_t want[17];

  hex_to("42ab3807be8370a186a6103668656c6c6f", want, sizeof(want));
  /* Uncompressed, and "compressed" too: zstd cannot shrink 5 bytes. */
  for (int flags = 0; flags <= FORMAT_BLOB_COMPRESS; flags++) {
    ASSERT_EQ(format_blob_encode(NULL, "hello", 5, flags, NULL, out, sizeof(out), &len),
              FORMAT_BLOB_PLAIN);
    ASSERT_EQ(len, 17);
    ASSERT_MEM_EQ(out, want, 17);
  }
  ASSERT_OK(format_blob_verify_crc(out, len));
  format_crypt_chunk_digest(NULL, "hello", 5, digest);
  assert_hex(digest, 32, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
  ASSERT_EQ(format_blob_verify_chunk(NULL, out, len, digest, 5), FORMAT_BLOB_PLAIN);
}

static void roundtrip(struct format_blob_ctx *ctx, const uint8_t *data, size_t n, int flags,
                      const struct format_crypt *c, int want_kind)
{
  uint8_t *enc, *dec;
  size_t elen, dlen;
  uint8_t digest[32];
  int kind = format_blob_encode_alloc(ctx, data, n, flags, c, &enc, &elen);

  ASSERT_EQ(kind, want_kind);
  ASSERT_EQ(format_blob_magic_kind(enc, elen), want_kind);
  ASSERT_OK(format_blob_verify_crc(enc, elen));
  format_crypt_chunk_digest(c, data, n, digest);
  ASSERT_OK(format_blob_decode(ctx, enc, elen, c, n, digest, &dec, &dlen));
  ASSERT_EQ(dlen, n);
  ASSERT_MEM_EQ(dec, data, n);
  core_free(dec);
  ASSERT_EQ(format_blob_verify_chunk(ctx, enc, elen, digest, n), want_kind);

  /* in place: uncompressed plaintext stays in the blob, the rest inflates
   * into the caller's buffer */
  {
    uint8_t *copy = core_malloc(elen), *dst = core_malloc(n + 1), *plain;
    size_t plen;
    int compressed = format_blob_kind_compressed((enum format_blob_kind)want_kind);
    memcpy(copy, enc, elen);
    if (compressed)
      ASSERT_EQ(format_blob_decode_inplace(ctx, copy, elen, c, n, digest, NULL, 0, &plain, &plen),
                CORE_EINVAL);
    ASSERT_OK(format_blob_decode_inplace(ctx, copy, elen, c, n, digest, dst, n + 1, &plain,
                                        &plen));
    ASSERT_EQ(plen, n);
    ASSERT_MEM_EQ(plain, data, n);
    ASSERT(compressed ? plain == dst : (plain > copy && plain < copy + elen));
    if (compressed && n > 1) {
      /* a destination too small */
      memcpy(copy, enc, elen);
      ASSERT_EQ(format_blob_decode_inplace(ctx, copy, elen, c, n, digest, dst, n / 2, &plain,
                                          &plen),
                CORE_ETOOBIG);
    }
    memcpy(copy, enc, elen);
    digest[0] ^= 1;
    ASSERT_EQ(format_blob_decode_inplace(ctx, copy, elen, c, n, digest, dst, n + 1, &plain,
                                        &plen),
              CORE_EDIGEST);
    core_free(dst);
    core_free(copy);
  }
  core_free(enc);
}

UNIT_TEST(blob_roundtrip_all_kinds)
{
  size_t n = 1 << 20;
  uint8_t *rnd = core_malloc(n), *txt = core_malloc(n);
  struct format_crypt c;
  struct format_blob_ctx ctx;

  fill_random(rnd, n, 42);
  fill_text(txt, n);
  key9(&c);
  format_blob_ctx_init(&ctx);
  /* With and without a reusable context. */
  for (int pass = 0; pass < 2; pass++) {
    struct format_blob_ctx *x = pass ? &ctx : NULL;
    roundtrip(x, rnd, n, 0, NULL, FORMAT_BLOB_PLAIN);
    roundtrip(x, rnd, n, FORMAT_BLOB_COMPRESS, NULL, FORMAT_BLOB_PLAIN); /* does not shrink */
    roundtrip(x, txt, n, FORMAT_BLOB_COMPRESS, NULL, FORMAT_BLOB_ZSTD);
    roundtrip(x, txt, n, 0, &c, FORMAT_BLOB_ENCRYPTED);
    roundtrip(x, rnd, n, FORMAT_BLOB_COMPRESS, &c, FORMAT_BLOB_ENCRYPTED);
    roundtrip(x, txt, n, FORMAT_BLOB_COMPRESS, &c, FORMAT_BLOB_ZSTD_ENCRYPTED);
    roundtrip(x, txt, 1, FORMAT_BLOB_COMPRESS, &c, FORMAT_BLOB_ENCRYPTED);
  }
  format_blob_ctx_free(&ctx);
  core_free(rnd);
  core_free(txt);
}

UNIT_TEST(blob_empty)
{
  uint8_t out[64], *dec;
  size_t len, dlen;
  struct format_crypt c;

  key9(&c);
  ASSERT_EQ(format_blob_encode(NULL, "", 0, FORMAT_BLOB_COMPRESS, NULL, out, sizeof(out), &len),
            FORMAT_BLOB_PLAIN);
  ASSERT_EQ(len, FORMAT_BLOB_HDR_LEN);
  ASSERT_OK(format_blob_decode(NULL, out, len, NULL, 16, NULL, &dec, &dlen));
  ASSERT_EQ(dlen, 0);
  core_free(dec);
  ASSERT_EQ(format_blob_encode(NULL, "", 0, 0, &c, out, sizeof(out), &len),
            FORMAT_BLOB_ENCRYPTED);
  ASSERT_EQ(len, FORMAT_BLOB_ENC_HDR_LEN);
  ASSERT_OK(format_blob_decode(NULL, out, len, &c, 16, NULL, &dec, &dlen));
  ASSERT_EQ(dlen, 0);
  core_free(dec);
}

UNIT_TEST(blob_encrypted_iv_is_random)
{
  uint8_t a[128], b[128];
  size_t la, lb;
  struct format_crypt c;

  key9(&c);
  ASSERT_EQ(format_blob_encode(NULL, "hello", 5, 0, &c, a, sizeof(a), &la), FORMAT_BLOB_ENCRYPTED);
  ASSERT_EQ(format_blob_encode(NULL, "hello", 5, 0, &c, b, sizeof(b), &lb), FORMAT_BLOB_ENCRYPTED);
  ASSERT_EQ(la, 44 + 5);
  ASSERT(memcmp(a + 12, b + 12, 16) != 0);
  /* The CRC covers the ciphertext only: changing the IV keeps it valid. */
  a[12] ^= 1;
  ASSERT_OK(format_blob_verify_crc(a, la));
}

UNIT_TEST(blob_encode_limits)
{
  uint8_t out[16];
  size_t len;
  ASSERT_EQ(format_blob_encode(NULL, "hello", 5, 0, NULL, out, 16, &len), CORE_EINVAL);
  ASSERT_EQ(format_blob_encode(NULL, out, (size_t)FORMAT_BLOB_MAX_SIZE + 1, 0, NULL, out, 16, &len),
            CORE_ETOOBIG);
}

UNIT_TEST(blob_corrupt_crc_truncated_wrong_magic)
{
  uint8_t out[64], *dec = NULL;
  size_t len, dlen;
  struct format_crypt c;

  key9(&c);
  ASSERT_OK(format_blob_encode(NULL, "hello", 5, 0, NULL, out, sizeof(out), &len));
  out[len - 1] ^= 0x20;
  ASSERT_EQ(format_blob_verify_crc(out, len), CORE_ECRC);
  ASSERT_EQ(format_blob_decode(NULL, out, len, NULL, 16, NULL, &dec, &dlen), CORE_ECRC);
  /* The server's path: fix the CRC, and it verifies again. */
  ASSERT_OK(format_blob_set_crc(out, len));
  ASSERT_OK(format_blob_verify_crc(out, len));
  out[len - 1] ^= 0x20;

  ASSERT_EQ(format_blob_magic_kind(out, 11), CORE_EFORMAT);
  ASSERT_EQ(format_blob_decode(NULL, out, 11, NULL, 16, NULL, &dec, &dlen), CORE_EFORMAT);
  ASSERT_EQ(format_blob_magic_kind(out, 3), CORE_EFORMAT);
  ASSERT_EQ(format_blob_set_crc(out, 7), CORE_EFORMAT);

  ASSERT_OK(format_blob_encode(NULL, "hello", 5, 0, &c, out, sizeof(out), &len));
  ASSERT_EQ(format_blob_magic_kind(out, 43), CORE_EFORMAT); /* encrypted header is 44 */
  ASSERT_EQ(format_blob_magic_kind(out, 44), FORMAT_BLOB_ENCRYPTED);

  out[0] ^= 1;
  ASSERT_EQ(format_blob_magic_kind(out, len), CORE_EFORMAT);
  ASSERT_EQ(format_blob_verify_crc(out, len), CORE_EFORMAT);
  ASSERT(dec == NULL);
}

UNIT_TEST(blob_wrong_key)
{
  uint8_t out[128], *dec = NULL, key[32];
  size_t len, dlen;
  struct format_crypt c, other;

  key9(&c);
  memset(key, 10, sizeof(key));
  ASSERT_OK(format_crypt_init(&other, key));
  ASSERT_OK(format_blob_encode(NULL, "hello world hello world", 23, FORMAT_BLOB_COMPRESS, &c, out,
                              sizeof(out), &len));
  ASSERT_EQ(format_blob_decode(NULL, out, len, &other, 64, NULL, &dec, &dlen), CORE_ECRYPTO);
  ASSERT_EQ(format_blob_decode(NULL, out, len, NULL, 64, NULL, &dec, &dlen), CORE_ECRYPTO);
  /* Tampered ciphertext with a fixed-up CRC still fails authentication. */
  out[len - 1] ^= 1;
  ASSERT_OK(format_blob_set_crc(out, len));
  ASSERT_EQ(format_blob_decode(NULL, out, len, &c, 64, NULL, &dec, &dlen), CORE_ECRYPTO);
  /* So does a tampered tag. */
  out[len - 1] ^= 1;
  ASSERT_OK(format_blob_set_crc(out, len));
  out[30] ^= 1;
  ASSERT_EQ(format_blob_decode(NULL, out, len, &c, 64, NULL, &dec, &dlen), CORE_ECRYPTO);
  out[30] ^= 1;
  ASSERT_OK(format_blob_decode(NULL, out, len, &c, 64, NULL, &dec, &dlen));
  ASSERT_EQ(dlen, 23);
  core_free(dec);
}

/* A zstd frame of `n` zero bytes, with or without the content size field,
 * wrapped in a blob header with a valid CRC. */
static uint8_t *zero_bomb(size_t n, int with_size, size_t *len)
{
  uint8_t *zeros = core_calloc(1, n);
  size_t cap = ZSTD_compressBound(n) + FORMAT_BLOB_HDR_LEN;
  uint8_t *blob = core_malloc(cap);
  ZSTD_CCtx *c = ZSTD_createCCtx();
  size_t r;
  static const uint8_t magic[8] = {0x31, 0xb9, 0x58, 0x42, 0x6f, 0xb6, 0xa3, 0x7f};

  ASSERT(!ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, with_size)));
  ASSERT(!ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 1)));
  /* Streaming end-only: the size is not given to zstd up front, so without
   * the flag the frame really has no content size. */
  ZSTD_outBuffer ob = {blob + FORMAT_BLOB_HDR_LEN, cap - FORMAT_BLOB_HDR_LEN, 0};
  ZSTD_inBuffer ib = {zeros, n, 0};
  if (with_size)
    ASSERT(!ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(c, n)));
  do {
    r = ZSTD_compressStream2(c, &ob, &ib, ZSTD_e_end);
    ASSERT(!ZSTD_isError(r));
  } while (r != 0);
  ZSTD_freeCCtx(c);
  core_free(zeros);
  memcpy(blob, magic, 8);
  *len = FORMAT_BLOB_HDR_LEN + ob.pos;
  ASSERT_OK(format_blob_set_crc(blob, *len));
  return blob;
}

UNIT_TEST(blob_decompression_bomb_bounded)
{
  size_t big = 48u << 20, len, dlen;
  uint8_t *dec = NULL, digest[32];
  struct format_blob_ctx ctx;

  format_blob_ctx_init(&ctx);
  for (int with_size = 0; with_size < 2; with_size++) {
    uint8_t *blob = zero_bomb(big, with_size, &len);
    ASSERT(len < 65536); /* tiny input, 48 MiB output */
    ASSERT_EQ(format_blob_decode(&ctx, blob, len, NULL, FORMAT_CHUNK_MAX_SIZE, NULL, &dec, &dlen),
              CORE_ETOOBIG);
    ASSERT_EQ(format_blob_decode(NULL, blob, len, NULL, FORMAT_CHUNK_MAX_SIZE, NULL, &dec, &dlen),
              CORE_ETOOBIG);
    /* The server's verify stops at the announced size. */
    memset(digest, 0, sizeof(digest));
    ASSERT_EQ(format_blob_verify_chunk(&ctx, blob, len, digest, 4u << 20), CORE_EFORMAT);
    /* And within the limit it decodes, with or without the size field. */
    ASSERT_OK(format_blob_decode(&ctx, blob, len, NULL, big, NULL, &dec, &dlen));
    ASSERT_EQ(dlen, big);
    ASSERT(dec[0] == 0 && dec[big - 1] == 0);
    core_free(dec);
    dec = NULL;
    core_free(blob);
  }
  format_blob_ctx_free(&ctx);
}

UNIT_TEST(blob_truncated_zstd)
{
  size_t n = 1 << 16, len, dlen;
  uint8_t *txt = core_malloc(n), *enc, *dec = NULL, digest[32];

  fill_text(txt, n);
  ASSERT_EQ(format_blob_encode_alloc(NULL, txt, n, FORMAT_BLOB_COMPRESS, NULL, &enc, &len),
            FORMAT_BLOB_ZSTD);
  core_sha256(txt, n, digest);
  len -= 3;
  ASSERT_OK(format_blob_set_crc(enc, len));
  ASSERT_EQ(format_blob_decode(NULL, enc, len, NULL, n, NULL, &dec, &dlen), CORE_EFORMAT);
  ASSERT_EQ(format_blob_verify_chunk(NULL, enc, len, digest, n), CORE_EFORMAT);
  core_free(enc);
  core_free(txt);
}

UNIT_TEST(chunk_verify)
{
  size_t n = 100000, len;
  uint8_t *txt = core_malloc(n), *enc, digest[32], bad[32];
  struct format_crypt c;
  struct format_blob_ctx ctx;

  format_blob_ctx_init(&ctx);
  key9(&c);
  fill_text(txt, n);
  core_sha256(txt, n, digest);
  memcpy(bad, digest, 32);
  bad[31] ^= 1;

  ASSERT_EQ(format_blob_encode_alloc(&ctx, txt, n, FORMAT_BLOB_COMPRESS, NULL, &enc, &len),
            FORMAT_BLOB_ZSTD);
  ASSERT_EQ(format_blob_verify_chunk(&ctx, enc, len, digest, n), FORMAT_BLOB_ZSTD);
  ASSERT_EQ(format_blob_verify_chunk(&ctx, enc, len, bad, n), CORE_EDIGEST);
  ASSERT_EQ(format_blob_verify_chunk(&ctx, enc, len, digest, n - 1), CORE_EFORMAT);
  ASSERT_EQ(format_blob_verify_chunk(&ctx, enc, len, digest, n + 1), CORE_EFORMAT);
  ASSERT_EQ(format_blob_verify_chunk(&ctx, enc, len, digest, 0), CORE_EFORMAT);
  ASSERT_EQ(format_blob_verify_chunk(&ctx, enc, len, digest, (16u << 20) + 1), CORE_ETOOBIG);
  /* The CRC is not the verifier's business: the server rewrites it. */
  enc[8] ^= 0xff;
  ASSERT_EQ(format_blob_verify_chunk(&ctx, enc, len, digest, n), FORMAT_BLOB_ZSTD);
  core_free(enc);

  ASSERT_EQ(format_blob_encode_alloc(&ctx, txt, n, 0, NULL, &enc, &len), FORMAT_BLOB_PLAIN);
  ASSERT_EQ(format_blob_verify_chunk(&ctx, enc, len, digest, n), FORMAT_BLOB_PLAIN);
  ASSERT_EQ(format_blob_verify_chunk(&ctx, enc, len, bad, n), CORE_EDIGEST);
  ASSERT_EQ(format_blob_verify_chunk(&ctx, enc, len, digest, n - 1), CORE_EFORMAT);
  ASSERT_EQ(format_blob_verify_chunk(&ctx, enc, len - 1, digest, n), CORE_EFORMAT);
  core_free(enc);

  /* Encrypted: no digest check possible, only sizes. */
  format_crypt_chunk_digest(&c, txt, n, digest);
  ASSERT_EQ(format_blob_encode_alloc(&ctx, txt, n, 0, &c, &enc, &len), FORMAT_BLOB_ENCRYPTED);
  ASSERT_EQ(format_blob_verify_chunk(&ctx, enc, len, bad, n), FORMAT_BLOB_ENCRYPTED);
  ASSERT_EQ(format_blob_verify_chunk(&ctx, enc, len, digest, n + 1), CORE_EFORMAT);
  core_free(enc);
  ASSERT_EQ(format_blob_encode_alloc(&ctx, txt, n, FORMAT_BLOB_COMPRESS, &c, &enc, &len),
            FORMAT_BLOB_ZSTD_ENCRYPTED);
  ASSERT_EQ(format_blob_verify_chunk(&ctx, enc, len, digest, n), FORMAT_BLOB_ZSTD_ENCRYPTED);
  ASSERT_EQ(format_blob_verify_chunk(&ctx, enc, len, digest, 10), CORE_EFORMAT);
  core_free(enc);

  format_blob_ctx_free(&ctx);
  core_free(txt);
}

UNIT_TEST(zero_chunk_digest)
{
  size_t n = 4u << 20, len;
  uint8_t *zeros = core_calloc(1, n), *enc, digest[32];

  core_sha256(zeros, n, digest);
  assert_hex(digest, 32, "bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8");
  ASSERT_EQ(format_blob_encode_alloc(NULL, zeros, n, FORMAT_BLOB_COMPRESS, NULL, &enc, &len),
            FORMAT_BLOB_ZSTD);
  ASSERT(len < 1024);
  ASSERT_EQ(format_blob_verify_chunk(NULL, enc, len, digest, n), FORMAT_BLOB_ZSTD);
  core_free(enc);
  core_free(zeros);
}

/* Hostile input: random byte flips (with the CRC fixed up so the decoder gets
 * past it) must give a clean error or a bounded result, never a crash. */
UNIT_TEST(blob_mutations)
{
  size_t n = 50000, len, dlen;
  uint8_t *txt = core_malloc(n), *enc, *copy, *dec, digest[32], rnd[4];
  struct format_blob_ctx ctx;
  struct format_crypt c;

  format_blob_ctx_init(&ctx);
  key9(&c);
  fill_text(txt, n);
  core_sha256(txt, n, digest);
  for (int variant = 0; variant < 2; variant++) {
    const struct format_crypt *k = variant ? &c : NULL;
    ASSERT_OK(format_blob_encode_alloc(&ctx, txt, n, FORMAT_BLOB_COMPRESS, k, &enc, &len));
    copy = core_malloc(len);
    for (uint64_t i = 0; i < 3000; i++) {
      fill_random(rnd, sizeof(rnd), i * 7919 + 1);
      memcpy(copy, enc, len);
      size_t cut = len - (i % 5 == 0 ? rnd[3] % 64 : 0);
      size_t pos = 12 + ((size_t)rnd[0] << 8 | rnd[1]) % (len - 12);
      copy[pos] ^= (uint8_t)(rnd[2] | 1);
      format_blob_set_crc(copy, cut);
      int rc = format_blob_decode(&ctx, copy, cut, k, n, NULL, &dec, &dlen);
      if (rc == 0) {
        ASSERT(dlen <= n);
        core_free(dec);
      }
      rc = format_blob_verify_chunk(&ctx, copy, cut, digest, n);
      ASSERT(rc < 0 || rc == format_blob_magic_kind(copy, cut));
    }
    core_free(copy);
    core_free(enc);
  }
  format_blob_ctx_free(&ctx);
  core_free(txt);
}

/* ---- crypt config ---- */

UNIT_TEST(crypt_derivations)
{
  struct format_crypt c;
  uint8_t d[32], fp[32];
  char s[FORMAT_CRYPT_FP_STR_LEN];

  key9(&c);
  /* Expected values from an independent PBKDF2/SHA-256 (Python hashlib). */
  assert_hex(c.fingerprint, 32, "1ac82c72fbbb6206ec158977f8f9e8743fbe4f783f314f45c82fa087f9b5cd8a");
  format_crypt_chunk_digest(&c, "hello", 5, d);
  assert_hex(d, 32, "b851432e039cc5e9bf9e739081632202c2c9d4204289ebf0cca6910b851ae5f1");
  format_crypt_fingerprint_str(c.fingerprint, s);
  ASSERT_EQ(strlen(s), 95);
  ASSERT(strncmp(s, "1a:c8:2c:72:", 12) == 0);
  ASSERT_OK(format_crypt_fingerprint_parse(s, fp));
  ASSERT_MEM_EQ(fp, c.fingerprint, 32);
  ASSERT_EQ(format_crypt_fingerprint_parse("1a:c8", fp), CORE_EPARSE);
  s[2] = '-';
  ASSERT_EQ(format_crypt_fingerprint_parse(s, fp), CORE_EPARSE);
  format_crypt_clear(&c);
}

/* ---- indexes ---- */

UNIT_TEST(didx_pbs_vector)
{
  size_t len;
  uint8_t *buf = read_file(unit_data("backup-client-pxar-data.ppxar.didx"), &len);
  struct format_index idx;
  uint8_t csum[32];
  uint64_t start, end;

  ASSERT_EQ(len, 8096);
  ASSERT_OK(format_index_parse(buf, len, 0, &idx));
  ASSERT_EQ(idx.kind, FORMAT_INDEX_DYNAMIC);
  ASSERT_EQ(idx.count, 100);
  ASSERT_EQ(idx.size, 104859232);
  ASSERT_EQ(idx.ctime, 1715091951);
  assert_hex(idx.uuid, 16, "f0ef7665555e417ea6eba00a375ceee0");
  format_index_chunk_range(&idx, 0, &start, &end);
  ASSERT_EQ(start, 0);
  ASSERT_EQ(end, 1048608);
  ASSERT(memcmp(format_index_digest(&idx, 0), "\x5c\x85\xc0\x82", 4) == 0);
  format_index_chunk_range(&idx, 99, &start, &end);
  ASSERT_EQ(end, 104859232);
  ASSERT(start < end);
  /* the chunk holding an offset: first, boundary, last, past the end */
  ASSERT_EQ(format_index_chunk_at(&idx, 0), 0);
  ASSERT_EQ(format_index_chunk_at(&idx, 1048607), 0);
  ASSERT_EQ(format_index_chunk_at(&idx, 1048608), 1);
  ASSERT_EQ(format_index_chunk_at(&idx, start), 99);
  ASSERT_EQ(format_index_chunk_at(&idx, 104859231), 99);
  ASSERT_EQ(format_index_chunk_at(&idx, 104859232), 100);
  format_index_compute_csum(&idx, csum);
  ASSERT_MEM_EQ(csum, idx.csum, 32);
  ASSERT(memcmp(csum, "\xe1\x3b\x71\xc1", 4) == 0);

  /* Corruptions. */
  buf[4096 + 50] ^= 1;
  ASSERT_EQ(format_index_parse(buf, len, 0, &idx), CORE_ECSUM);
  ASSERT_OK(format_index_parse(buf, len, FORMAT_INDEX_SKIP_CSUM, &idx));
  buf[4096 + 50] ^= 1;
  ASSERT_EQ(format_index_parse(buf, len - 1, 0, &idx), CORE_EFORMAT);
  ASSERT_EQ(format_index_parse(buf, len - 40, 0, &idx), CORE_ECSUM);
  ASSERT_EQ(format_index_parse(buf, 4095, 0, &idx), CORE_EFORMAT);
  memset(buf + 4096 + 40, 0, 8); /* second end offset drops below the first */
  buf[4096 + 40] = 5;
  ASSERT_EQ(format_index_parse(buf, len, FORMAT_INDEX_SKIP_CSUM, &idx), CORE_EFORMAT);
  buf[0] ^= 1;
  ASSERT_EQ(format_index_parse(buf, len, 0, &idx), CORE_EFORMAT);
  core_free(buf);
}

static void digest_of(uint64_t i, uint8_t d[32])
{
  core_sha256(&i, sizeof(i), d);
}

UNIT_TEST(fidx_roundtrip)
{
  struct format_fidx_writer w;
  struct format_index idx;
  uint64_t chunk = 4u << 20, size = 10 * chunk + 12345, count, sz;
  uint8_t d[32], csum[32];
  const uint8_t *img;
  size_t len;

  ASSERT_OK(format_fidx_writer_init(&w, size, chunk, 1700000000));
  ASSERT_EQ(w.count, 11);
  /* Out of order, through all three setters. */
  for (uint64_t i = 10; i >= 5 && i <= 10; i--) {
    digest_of(i, d);
    ASSERT_OK(format_fidx_writer_set(&w, i, d));
  }
  ASSERT_EQ(format_fidx_writer_finish(&w, csum, &count, &sz), CORE_EINVAL); /* holes */
  for (uint64_t i = 0; i < 3; i++) {
    digest_of(i, d);
    ASSERT_OK(format_fidx_writer_append(&w, d));
  }
  digest_of(3, d);
  ASSERT_EQ(format_fidx_writer_add_chunk(&w, 3 * chunk + 1, chunk, d), CORE_EINVAL);
  ASSERT_EQ(format_fidx_writer_add_chunk(&w, 3 * chunk, chunk - 1, d), CORE_EINVAL);
  ASSERT_OK(format_fidx_writer_add_chunk(&w, 3 * chunk, chunk, d));
  digest_of(4, d);
  ASSERT_OK(format_fidx_writer_add_chunk(&w, 4 * chunk, chunk, d));
  digest_of(10, d);
  ASSERT_EQ(format_fidx_writer_add_chunk(&w, 10 * chunk, chunk, d), CORE_EINVAL);
  ASSERT_EQ(format_fidx_writer_add_chunk(&w, 10 * chunk, 12344, d), CORE_EINVAL);
  ASSERT_OK(format_fidx_writer_add_chunk(&w, 10 * chunk, 12345, d));
  ASSERT_EQ(format_fidx_writer_add_chunk(&w, 11 * chunk, 1, d), CORE_EINVAL);
  ASSERT_EQ(format_fidx_writer_set(&w, 11, d), CORE_EINVAL);
  ASSERT_OK(format_fidx_writer_finish(&w, csum, &count, &sz));
  ASSERT_EQ(count, 11);
  ASSERT_EQ(sz, size);

  img = format_fidx_writer_image(&w, &len);
  ASSERT_EQ(len, 4096 + 11 * 32);
  ASSERT(memcmp(img, "\x2f\x7f\x41\xed\x91\xfd\x0f\xcd", 8) == 0);
  ASSERT_EQ(img[8 + 6] >> 4, 4); /* uuid v4 */
  for (size_t i = 80; i < 4096; i++)
    ASSERT_EQ(img[i], 0);
  ASSERT_OK(format_index_parse(img, len, 0, &idx));
  ASSERT_EQ(idx.kind, FORMAT_INDEX_FIXED);
  ASSERT_EQ(idx.count, 11);
  ASSERT_EQ(idx.size, size);
  ASSERT_EQ(idx.chunk_size, chunk);
  ASSERT_EQ(idx.ctime, 1700000000);
  ASSERT_MEM_EQ(idx.csum, csum, 32);
  for (uint64_t i = 0; i < 11; i++) {
    uint64_t s, e;
    digest_of(i, d);
    ASSERT_MEM_EQ(format_index_digest(&idx, i), d, 32);
    format_index_chunk_range(&idx, i, &s, &e);
    ASSERT_EQ(s, i * chunk);
    ASSERT_EQ(e, i == 10 ? size : (i + 1) * chunk);
    ASSERT_EQ(format_index_chunk_at(&idx, s), i);
    ASSERT_EQ(format_index_chunk_at(&idx, e - 1), i);
  }
  /* csum = SHA-256 of the concatenated digests. */
  core_sha256(img + 4096, 11 * 32, d);
  ASSERT_MEM_EQ(d, csum, 32);

  /* Wrong sizes are rejected. */
  {
    uint8_t *copy = core_malloc(len + 32);
    memcpy(copy, img, len);
    memset(copy + len, 0, 32);
    ASSERT_EQ(format_index_parse(copy, len + 32, 0, &idx), CORE_EFORMAT);
    ASSERT_EQ(format_index_parse(copy, len - 32, 0, &idx), CORE_EFORMAT);
    ASSERT_EQ(format_index_parse(copy, len - 1, 0, &idx), CORE_EFORMAT);
    copy[72] = 3; /* chunk_size no longer a power of two */
    ASSERT_EQ(format_index_parse(copy, len, 0, &idx), CORE_EFORMAT);
    memcpy(copy, img, len);
    copy[64] ^= 1; /* size changes the expected count? no: one byte more, same count */
    ASSERT_OK(format_index_parse(copy, len, 0, &idx));
    copy[64] ^= 1;
    copy[70] = 1; /* huge size */
    ASSERT_EQ(format_index_parse(copy, len, 0, &idx), CORE_EFORMAT);
    core_free(copy);
  }
  format_fidx_writer_free(&w);

  ASSERT_EQ(format_fidx_writer_init(&w, size, 3000, 0), CORE_EINVAL);
  ASSERT_EQ(format_fidx_writer_init(&w, size, 32u << 20, 0), CORE_EINVAL);
  /* An empty image is a valid index. */
  ASSERT_OK(format_fidx_writer_init(&w, 0, chunk, 0));
  ASSERT_OK(format_fidx_writer_finish(&w, csum, &count, &sz));
  ASSERT_EQ(count, 0);
  img = format_fidx_writer_image(&w, &len);
  ASSERT_OK(format_index_parse(img, len, 0, &idx));
  format_fidx_writer_free(&w);
}

UNIT_TEST(didx_roundtrip_memory_and_streaming)
{
  struct format_didx_writer a, b;
  struct format_index idx;
  uint8_t d[32], ca[32], cb[32];
  uint64_t end = 0, count, size;
  const uint8_t *img, *p;
  size_t len, plen;
  uint64_t off;
  uint8_t *file = core_calloc(1, 4096 + 1000 * 40);

  format_didx_writer_init(&a, 1700000000, 0);
  format_didx_writer_init(&b, 1700000000, 1000);
  for (uint64_t i = 0; i < 1000; i++) {
    end += 1000 + i * 37 % 5000;
    digest_of(i, d);
    ASSERT_OK(format_didx_writer_append(&a, end, d));
    ASSERT_OK(format_didx_writer_append(&b, end, d));
    if (i % 97 == 0) {
      format_didx_writer_take_pending(&b, &p, &plen, &off);
      memcpy(file + off, p, plen);
    }
  }
  digest_of(0, d);
  ASSERT_EQ(format_didx_writer_append(&a, end, d), CORE_EINVAL); /* empty chunk */
  ASSERT_EQ(format_didx_writer_append(&b, end + 1, d), CORE_ETOOBIG);
  format_didx_writer_take_pending(&b, &p, &plen, &off);
  memcpy(file + off, p, plen);
  ASSERT_EQ(off + plen, 4096 + 1000 * 40);

  ASSERT_OK(format_didx_writer_finish(&a, ca, &count, &size));
  ASSERT_EQ(count, 1000);
  ASSERT_EQ(size, end);
  ASSERT_OK(format_didx_writer_finish(&b, cb, NULL, NULL));
  ASSERT_MEM_EQ(ca, cb, 32);
  memcpy(file, format_didx_writer_header(&b), 4096);
  ASSERT(format_didx_writer_image(&b, &len) == NULL);

  img = format_didx_writer_image(&a, &len);
  ASSERT(img != NULL);
  ASSERT_EQ(len, 4096 + 1000 * 40);
  ASSERT_MEM_EQ(img + 4096, file + 4096, 1000 * 40);
  core_sha256(img + 4096, 1000 * 40, d);
  ASSERT_MEM_EQ(d, ca, 32);
  for (size_t pass = 0; pass < 2; pass++) {
    ASSERT_OK(format_index_parse(pass ? file : img, len, 0, &idx));
    ASSERT_EQ(idx.kind, FORMAT_INDEX_DYNAMIC);
    ASSERT_EQ(idx.count, 1000);
    ASSERT_EQ(idx.size, end);
    ASSERT_EQ(idx.chunk_size, 0);
    digest_of(999, d);
    ASSERT_MEM_EQ(format_index_digest(&idx, 999), d, 32);
  }
  format_didx_writer_free(&a);
  format_didx_writer_free(&b);

  /* An empty dynamic index. */
  format_didx_writer_init(&a, 0, 0);
  ASSERT_OK(format_didx_writer_finish(&a, ca, &count, &size));
  ASSERT_EQ(count, 0);
  ASSERT_EQ(size, 0);
  img = format_didx_writer_image(&a, &len);
  ASSERT_EQ(len, 4096);
  ASSERT_OK(format_index_parse(img, len, 0, &idx));
  format_didx_writer_free(&a);
  core_free(file);
}

UNIT_TEST(index_write_file)
{
  char path[512], tmp[512];
  struct format_didx_writer w;
  uint8_t d[32];
  const uint8_t *img;
  size_t len, flen;
  struct core_slice parts[2];
  struct format_index idx;
  uint8_t *back;

  ASSERT_OK(format_index_tmp_path("/x/drive-scsi0.img.fidx", tmp, sizeof(tmp)));
  ASSERT_STR_EQ(tmp, "/x/drive-scsi0.img.tmp_fidx");
  ASSERT_OK(format_index_tmp_path("root.pxar.didx", tmp, sizeof(tmp)));
  ASSERT_STR_EQ(tmp, "root.pxar.tmp_didx");
  ASSERT_EQ(format_index_tmp_path("root.pxar.didx", tmp, 18), CORE_ETOOBIG);
  ASSERT_EQ(format_index_tmp_path("x.blob", tmp, sizeof(tmp)), CORE_ENAME);
  ASSERT_EQ(format_index_kind_from_name("a.fidx"), FORMAT_INDEX_FIXED);
  ASSERT_EQ(format_index_kind_from_name(".didx"), CORE_ENAME);

  format_didx_writer_init(&w, 1, 0);
  digest_of(1, d);
  ASSERT_OK(format_didx_writer_append(&w, 4096, d));
  ASSERT_OK(format_didx_writer_finish(&w, NULL, NULL, NULL));
  img = format_didx_writer_image(&w, &len);
  snprintf(path, sizeof(path), "%s/root.pxar.didx", unit_tmpdir());
  parts[0].base = (const char *)img;
  parts[0].len = 4096;
  parts[1].base = (const char *)img + 4096;
  parts[1].len = len - 4096;
  ASSERT_OK(format_index_write_file(path, parts, 2, 1));
  ASSERT_OK(format_index_write_file(path, parts, 2, 0)); /* replaces */
  snprintf(tmp, sizeof(tmp), "%s/root.pxar.tmp_didx", unit_tmpdir());
  ASSERT(access(tmp, F_OK) != 0);
  back = read_file(path, &flen);
  ASSERT_EQ(flen, len);
  ASSERT_OK(format_index_parse(back, flen, 0, &idx));
  ASSERT_EQ(idx.count, 1);
  core_free(back);
  format_didx_writer_free(&w);

  snprintf(path, sizeof(path), "%s/missing/root.pxar.didx", unit_tmpdir());
  ASSERT_EQ(format_index_write_file(path, parts, 2, 0), -ENOENT);
}

/* ---- manifest ---- */

static const char *sample_manifest =
    "{\n"
    "  \"backup-type\": \"host\",\n"
    "  \"backup-id\": \"elsa\",\n"
    "  \"backup-time\": 1593179765,\n"
    "  \"files\": [\n"
    "    {\"filename\": \"root.pxar.didx\", \"crypt-mode\": \"none\", \"size\": 104859232,\n"
    "     \"csum\": \"E13B71C181693FB7D7B46E2F34AADEE48337C6828674820E0924EF940A2CBD20\"},\n"
    "    {\"filename\": \"catalog.pcat1.didx\", \"size\": 100,\n"
    "     \"csum\": \"0000000000000000000000000000000000000000000000000000000000000001\"}\n"
    "  ],\n"
    "  \"unprotected\": {\"notes\": \"caf\\u00e9 \\\"x\\\"\\n\", \"chunk_upload_stats\": "
    "{\"count\": 3, \"size\": 1.5e3, \"list\": [1, true, null]}, \"verify_state\": {\"state\": \"ok\"}},\n"
    "  \"signature\": null,\n"
    "  \"some-future-key\": 1\n"
    "}\n";

UNIT_TEST(manifest_parse_generate)
{
  struct format_manifest m, m2;
  struct core_buf b;
  const struct format_manifest_file *f;
  char *v;

  ASSERT_OK(format_manifest_parse(sample_manifest, strlen(sample_manifest), &m));
  ASSERT_STR_EQ(m.backup_type, "host");
  ASSERT_STR_EQ(m.backup_id, "elsa");
  ASSERT_EQ(m.backup_time, 1593179765);
  ASSERT_EQ(m.nfiles, 2);
  f = format_manifest_find_file(&m, "root.pxar.didx");
  ASSERT(f != NULL);
  ASSERT_EQ(f->size, 104859232);
  ASSERT_EQ(f->crypt_mode, FORMAT_CRYPT_MODE_NONE);
  ASSERT(memcmp(f->csum, "\xe1\x3b\x71\xc1", 4) == 0);
  f = format_manifest_find_file(&m, "catalog.pcat1.didx");
  ASSERT_EQ(f->crypt_mode, FORMAT_CRYPT_MODE_NONE); /* default */
  ASSERT(format_manifest_find_file(&m, "nope.blob") == NULL);
  ASSERT(m.signature == NULL);

  v = format_manifest_unprotected_get(&m, "chunk_upload_stats");
  ASSERT_STR_EQ(v, "{\"count\":3,\"size\":1.5e3,\"list\":[1,true,null]}");
  core_free(v);
  v = format_manifest_unprotected_get(&m, "notes");
  ASSERT_STR_EQ(v, "\"caf\xc3\xa9 \\\"x\\\"\\n\"");
  core_free(v);

  /* Replace one key in place, add one, remove one; the rest stays. */
  ASSERT_OK(format_manifest_set_verify_state(&m, "failed", "UPID:x:1"));
  ASSERT_OK(format_manifest_unprotected_set(&m, "new", "[1, 2]", 6));
  ASSERT_OK(format_manifest_unprotected_set(&m, "notes", NULL, 0));
  ASSERT_EQ(format_manifest_unprotected_set(&m, "bad", "{", 1), CORE_EPARSE);
  ASSERT_STR_EQ(m.unprotected,
                "{\"chunk_upload_stats\":{\"count\":3,\"size\":1.5e3,\"list\":[1,true,null]},"
                "\"verify_state\":{\"state\":\"failed\",\"upid\":\"UPID:x:1\"},\"new\":[1,2]}");

  /* Generate (pretty and compact) and parse back. */
  for (int pretty = 0; pretty < 2; pretty++) {
    core_buf_init(&b, FORMAT_MANIFEST_MAX_LEN);
    ASSERT_OK(format_manifest_to_json(&m, pretty, &b));
    ASSERT(strstr(b.base, "some-future-key") == NULL);
    ASSERT(strstr(b.base, "\"signature\"") != NULL);
    ASSERT_OK(format_manifest_parse(b.base, b.len, &m2));
    ASSERT_STR_EQ(m2.backup_id, "elsa");
    ASSERT_EQ(m2.nfiles, 2);
    ASSERT_STR_EQ(m2.files[1].filename, "catalog.pcat1.didx");
    ASSERT_MEM_EQ(m2.files[0].csum, m.files[0].csum, 32);
    ASSERT_STR_EQ(m2.unprotected, m.unprotected);
    if (!pretty)
      ASSERT(strncmp(b.base, "{\"backup-type\":\"host\",\"backup-id\":\"elsa\",", 40) == 0);
    format_manifest_free(&m2);
    core_buf_free(&b);
  }
  format_manifest_free(&m);
}

UNIT_TEST(manifest_rejects)
{
  struct format_manifest m;
  static const char *bad[] = {
    "[]",
    "{\"backup-type\":\"foo\",\"backup-id\":\"a\",\"backup-time\":1,\"files\":[]}",
    "{\"backup-type\":\"vm\",\"backup-id\":\"-a\",\"backup-time\":1,\"files\":[]}",
    "{\"backup-type\":\"vm\",\"backup-id\":\"a/b\",\"backup-time\":1,\"files\":[]}",
    "{\"backup-type\":\"vm\",\"backup-id\":\"a\",\"backup-time\":\"1\",\"files\":[]}",
    "{\"backup-type\":\"vm\",\"backup-id\":\"a\",\"backup-time\":1}",
    "{\"backup-type\":\"vm\",\"backup-id\":\"a\",\"backup-time\":1,\"files\":[],\"unprotected\":1}",
    "{\"backup-type\":\"vm\",\"backup-id\":\"a\",\"backup-time\":1,\"files\":[],\"signature\":\"ab\"}",
    "{\"backup-type\":\"vm\",\"backup-id\":\"a\",\"backup-time\":1,\"files\":[{\"filename\":"
    "\"a.fidx\",\"size\":-1,\"csum\":\"" "00000000000000000000000000000000"
    "00000000000000000000000000000000\"}]}",
    "{\"backup-type\":\"vm\",\"backup-id\":\"a\",\"backup-time\":1,\"files\":[{\"filename\":"
    "\"a.fidx\",\"size\":1,\"csum\":\"00\"}]}",
    "{\"backup-type\":\"vm\",\"backup-id\":\"a\",\"backup-time\":1,\"files\":[{\"filename\":"
    "\"a.fidx\",\"size\":1,\"crypt-mode\":\"maybe\",\"csum\":\""
    "0000000000000000000000000000000000000000000000000000000000000000\"}]}",
  };
  static const char *badname =
      "{\"backup-type\":\"vm\",\"backup-id\":\"a\",\"backup-time\":1,\"files\":[{\"filename\":"
      "\"../a.fidx\",\"size\":1,\"csum\":\""
      "0000000000000000000000000000000000000000000000000000000000000000\"}]}";
  static const char *dup =
      "{\"backup-type\":\"vm\",\"backup-id\":\"a\",\"backup-time\":1,\"files\":[{\"filename\":"
      "\"a.fidx\",\"size\":1,\"csum\":\""
      "0000000000000000000000000000000000000000000000000000000000000000\"},{\"filename\":"
      "\"a.fidx\",\"size\":1,\"csum\":\""
      "0000000000000000000000000000000000000000000000000000000000000000\"}]}";
  char deep[300];

  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int rc = format_manifest_parse(bad[i], strlen(bad[i]), &m);
    if (rc != CORE_EFORMAT)
      unit_fail(__FILE__, __LINE__, "case %zu: %d", i, rc);
    format_manifest_free(&m);
  }
  ASSERT_EQ(format_manifest_parse(badname, strlen(badname), &m), CORE_ENAME);
  format_manifest_free(&m);
  ASSERT_EQ(format_manifest_parse(dup, strlen(dup), &m), CORE_ENAME);
  format_manifest_free(&m);
  ASSERT_EQ(format_manifest_parse("{", 1, &m), CORE_EPARSE);
  format_manifest_free(&m);
  memset(deep, '[', sizeof(deep));
  ASSERT_EQ(format_manifest_parse(deep, sizeof(deep), &m), CORE_EPARSE);
  format_manifest_free(&m);
}

UNIT_TEST(manifest_truncations)
{
  struct format_manifest m;
  size_t n = strlen(sample_manifest);
  /* Every prefix: parses or fails cleanly. */
  for (size_t i = 0; i < n; i++) {
    int rc = format_manifest_parse(sample_manifest, i, &m);
    ASSERT(rc < 0 || i >= n - 2);
    format_manifest_free(&m);
  }
}

UNIT_TEST(manifest_filenames)
{
  char longname[200];
  ASSERT_OK(format_manifest_validate_filename("drive-scsi0.img.fidx"));
  ASSERT_OK(format_manifest_validate_filename("root.pxar.didx"));
  ASSERT_OK(format_manifest_validate_filename("client.log.blob"));
  ASSERT_OK(format_manifest_validate_filename("index.json.blob"));
  ASSERT_EQ(format_manifest_validate_filename("a.txt"), CORE_ENAME);
  ASSERT_EQ(format_manifest_validate_filename(".x.blob"), CORE_ENAME);
  ASSERT_EQ(format_manifest_validate_filename("a/b.blob"), CORE_ENAME);
  ASSERT_EQ(format_manifest_validate_filename(".blob"), CORE_ENAME);
  ASSERT_EQ(format_manifest_validate_filename(""), CORE_ENAME);
  ASSERT_EQ(format_manifest_validate_filename("a\nb.blob"), CORE_ENAME);
  memset(longname, 'a', sizeof(longname));
  memcpy(longname + 123, ".blob", 6); /* 128 bytes */
  ASSERT_OK(format_manifest_validate_filename(longname));
  memcpy(longname + 124, ".blob", 6);
  ASSERT_EQ(format_manifest_validate_filename(longname), CORE_ENAME);
  ASSERT_STR_EQ(format_crypt_mode_name(FORMAT_CRYPT_MODE_SIGN_ONLY), "sign-only");
  ASSERT_EQ(format_crypt_mode_parse("encrypt"), FORMAT_CRYPT_MODE_ENCRYPT);
}

/* PBS's manifest.rs test: key = scrypt("test", empty salt, N=65536, r=8, p=1),
 * two files, a note in unprotected; the signature is fixed. */
UNIT_TEST(manifest_signature_pbs_vector)
{
  struct format_manifest m, m2;
  struct format_crypt c, other;
  uint8_t key[32], csum1[32], csum2[32];
  struct core_buf b;
  char fp[FORMAT_CRYPT_FP_STR_LEN], *v, want[128];

  ASSERT_OK(format_crypt_scrypt("test", 4, "", 0, 65536, 8, 1, key));
  ASSERT_OK(format_crypt_init(&c, key));
  memset(csum1, 1, 32);
  memset(csum2, 2, 32);
  format_manifest_init(&m, "host", "elsa", 1593179765); /* 2020-06-26T13:56:05Z */
  ASSERT_OK(format_manifest_add_file(&m, "test1.img.fidx", FORMAT_CRYPT_MODE_ENCRYPT, 200, csum1));
  ASSERT_OK(format_manifest_add_file(&m, "abc.blob", FORMAT_CRYPT_MODE_NONE, 200, csum2));
  ASSERT_EQ(format_manifest_add_file(&m, "abc.blob", FORMAT_CRYPT_MODE_NONE, 1, csum2),
            CORE_EEXISTS);
  ASSERT_EQ(format_manifest_add_file(&m, "abc", FORMAT_CRYPT_MODE_NONE, 1, csum2), CORE_ENAME);
  ASSERT_OK(format_manifest_unprotected_set(&m, "note",
                                           "\"This is not protected by the signature.\"", 41));

  core_buf_init(&b, 4096);
  ASSERT_OK(format_manifest_canonical(&m, &b));
  ASSERT_STR_EQ(b.base,
                "{\"backup-id\":\"elsa\",\"backup-time\":1593179765,\"backup-type\":\"host\","
                "\"files\":[{\"crypt-mode\":\"encrypt\",\"csum\":\"0101010101010101010101010101"
                "010101010101010101010101010101010101\",\"filename\":\"test1.img.fidx\","
                "\"size\":200},{\"crypt-mode\":\"none\",\"csum\":\"02020202020202020202020202020"
                "20202020202020202020202020202020202\",\"filename\":\"abc.blob\",\"size\":200}]}");
  core_buf_free(&b);

  ASSERT_OK(format_manifest_sign(&m, &c));
  ASSERT_STR_EQ(m.signature, "d7b446fb7db081662081d4b40fedd858a1d6307a5aff4ecff7d5bf4fd35679e9");
  v = format_manifest_unprotected_get(&m, "key-fingerprint");
  format_crypt_fingerprint_str(c.fingerprint, fp);
  snprintf(want, sizeof(want), "\"%s\"", fp);
  ASSERT_STR_EQ(v, want);
  core_free(v);
  ASSERT_OK(format_manifest_verify(&m, &c));

  /* Through the blob and back: still verifies, unprotected edits too. */
  {
    uint8_t *blob;
    size_t len;
    ASSERT_OK(format_manifest_encode_blob(&m, NULL, &blob, &len));
    ASSERT_EQ(format_blob_magic_kind(blob, len), FORMAT_BLOB_ZSTD);
    ASSERT_OK(format_manifest_decode_blob(NULL, blob, len, &m2));
    core_free(blob);
  }
  ASSERT_STR_EQ(m2.signature, m.signature);
  ASSERT_OK(format_manifest_set_verify_state(&m2, "ok", "UPID:node:0"));
  ASSERT_OK(format_manifest_verify(&m2, &c));
  ASSERT_EQ(format_manifest_verify(&m2, NULL), CORE_ECRYPTO); /* key required */
  memset(key, 3, sizeof(key));
  ASSERT_OK(format_crypt_init(&other, key));
  ASSERT_EQ(format_manifest_verify(&m2, &other), CORE_ECRYPTO);
  /* A protected change breaks the signature. */
  m2.files[0].size++;
  ASSERT_EQ(format_manifest_verify(&m2, &c), CORE_ECRYPTO);
  m2.files[0].size--;
  ASSERT_OK(format_manifest_unprotected_set(&m2, "key-fingerprint", NULL, 0));
  ASSERT_EQ(format_manifest_verify(&m2, &other), CORE_ECRYPTO);
  format_manifest_free(&m2);
  format_manifest_free(&m);
}

UNIT_TEST(manifest_unsigned_and_blob_errors)
{
  struct format_manifest m, m2;
  uint8_t *blob, csum[32];
  size_t len;

  memset(csum, 7, 32);
  format_manifest_init(&m, "vm", "100", 1700000000);
  ASSERT_OK(format_manifest_add_file(&m, "drive-scsi0.img.fidx", FORMAT_CRYPT_MODE_NONE, 1 << 30,
                                    csum));
  ASSERT_OK(format_manifest_verify(&m, NULL));
  ASSERT_OK(format_manifest_encode_blob(&m, NULL, &blob, &len));
  blob[len - 1] ^= 1;
  ASSERT_EQ(format_manifest_decode_blob(NULL, blob, len, &m2), CORE_ECRC);
  format_manifest_free(&m2);
  core_free(blob);
  format_manifest_free(&m);
}

/* ---- key files ---- */

UNIT_TEST(keyfile_none)
{
  uint8_t key[32], back[32];
  struct core_buf b;
  struct format_keyfile kf;
  struct format_crypt c;
  char fp[FORMAT_CRYPT_FP_STR_LEN];

  memset(key, 9, sizeof(key));
  core_buf_init(&b, FORMAT_KEYFILE_MAX_LEN);
  ASSERT_OK(format_keyfile_encode(key, FORMAT_KDF_NONE, NULL, 0, 0, 1593179765, &b));
  ASSERT(strstr(b.base, "\"kdf\": null") != NULL);
  ASSERT(strstr(b.base, "\"created\": \"2020-06-26T13:56:05Z\"") != NULL);
  ASSERT(strstr(b.base, "\"data\": \"CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\"") != NULL);
  key9(&c);
  format_crypt_fingerprint_str(c.fingerprint, fp);
  ASSERT(strstr(b.base, fp) != NULL);
  ASSERT_OK(format_keyfile_parse(b.base, b.len, &kf));
  ASSERT_EQ(kf.kdf, FORMAT_KDF_NONE);
  ASSERT_EQ(kf.created, 1593179765);
  ASSERT_OK(format_keyfile_unlock(&kf, NULL, 0, back));
  ASSERT_MEM_EQ(back, key, 32);
  /* A stored fingerprint that does not match the key is refused. */
  kf.fingerprint[0] ^= 1;
  ASSERT_EQ(format_keyfile_unlock(&kf, NULL, 0, back), CORE_ECRYPTO);
  core_buf_free(&b);

  /* PBS writes local time with an offset. */
  {
    const char *pbs = "{\"kdf\":null,\"created\":\"2020-06-26T15:56:05+02:00\","
                      "\"modified\":\"2020-06-26T15:56:05.123+02:00\","
                      "\"data\":\"CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\"}";
    ASSERT_OK(format_keyfile_parse(pbs, strlen(pbs), &kf));
    ASSERT_EQ(kf.created, 1593179765);
    ASSERT_EQ(kf.modified, 1593179765);
    ASSERT_EQ(kf.has_fingerprint, 0);
    ASSERT_OK(format_keyfile_unlock(&kf, NULL, 0, back));
    ASSERT_MEM_EQ(back, key, 32);
  }
  ASSERT_EQ(format_keyfile_parse("{\"kdf\":null}", 12, &kf), CORE_EFORMAT);
  ASSERT_EQ(format_keyfile_parse("nope", 4, &kf), CORE_EPARSE);
}

UNIT_TEST(keyfile_scrypt)
{
  uint8_t key[32], back[32];
  struct core_buf b;
  struct format_keyfile kf;

  fill_random(key, sizeof(key), 7);
  core_buf_init(&b, FORMAT_KEYFILE_MAX_LEN);
  ASSERT_EQ(format_keyfile_encode(key, FORMAT_KDF_SCRYPT, "abcd", 4, 1024, 0, &b), CORE_EINVAL);
  ASSERT_EQ(format_keyfile_encode(key, FORMAT_KDF_PBKDF2, "abcdef", 6, 1024, 0, &b), CORE_EINVAL);
  ASSERT_EQ(format_keyfile_encode(key, FORMAT_KDF_SCRYPT, "abcdef", 6, 1000, 0, &b), CORE_EINVAL);
  ASSERT_OK(format_keyfile_encode(key, FORMAT_KDF_SCRYPT, "secret pass", 11, 1024, 0, &b));
  ASSERT(strstr(b.base, "\"Scrypt\"") != NULL);
  ASSERT(strstr(b.base, "\"n\": 1024") != NULL);
  ASSERT_OK(format_keyfile_parse(b.base, b.len, &kf));
  ASSERT_EQ(kf.kdf, FORMAT_KDF_SCRYPT);
  ASSERT_EQ(kf.n, 1024);
  ASSERT_EQ(kf.r, 8);
  ASSERT_EQ(kf.p, 1);
  ASSERT_EQ(kf.salt_len, 32);
  ASSERT_EQ(kf.data_len, 64); /* iv, tag, wrapped key */
  ASSERT_OK(format_keyfile_unlock(&kf, "secret pass", 11, back));
  ASSERT_MEM_EQ(back, key, 32);
  ASSERT_EQ(format_keyfile_unlock(&kf, "wrong pass", 10, back), CORE_ECRYPTO);
  ASSERT_EQ(format_keyfile_unlock(&kf, "abc", 3, back), CORE_EINVAL);
  ASSERT_EQ(format_keyfile_unlock(&kf, NULL, 0, back), CORE_EINVAL);
  core_buf_free(&b);
}

UNIT_TEST(keyfile_default_n_and_files)
{
  uint8_t key[32], back[32];
  struct format_keyfile kf;
  char path[512];
  struct stat st;

  fill_random(key, sizeof(key), 11);
  snprintf(path, sizeof(path), "%s/encryption-key.json", unit_tmpdir());
  /* Default N (65536): one real-cost run. */
  ASSERT_OK(format_keyfile_write(path, key, FORMAT_KDF_SCRYPT, "hunter22", 8, 0, 0));
  ASSERT_OK(stat(path, &st));
  ASSERT_EQ(st.st_mode & 0777, 0600);
  ASSERT_EQ(format_keyfile_write(path, key, FORMAT_KDF_NONE, NULL, 0, 0, 0), -EEXIST);
  ASSERT_OK(format_keyfile_read(path, &kf));
  ASSERT_EQ(kf.n, 65536);
  ASSERT_OK(format_keyfile_unlock(&kf, "hunter22", 8, back));
  ASSERT_MEM_EQ(back, key, 32);

  ASSERT_OK(format_keyfile_write(path, key, FORMAT_KDF_NONE, NULL, 0, 0, 1)); /* replace */
  ASSERT_OK(stat(path, &st));
  ASSERT_EQ(st.st_mode & 0777, 0600);
  ASSERT_OK(format_keyfile_read(path, &kf));
  ASSERT_EQ(kf.kdf, FORMAT_KDF_NONE);
  ASSERT_OK(format_keyfile_unlock(&kf, NULL, 0, back));
  ASSERT_MEM_EQ(back, key, 32);

  snprintf(path, sizeof(path), "%s/none.json", unit_tmpdir());
  ASSERT_EQ(format_keyfile_read(path, &kf), -ENOENT);
}

/* PBS's EncryptedDataBlobHeader is #[repr(C, packed)]: magic[8] crc[4]
 * iv[16] tag[16] = 44 bytes, the payload right after (issue #12: Cairn used
 * 48, so neither side could read the other's encrypted blobs). */
UNIT_TEST(blob_encrypted_pbs_layout)
{
  struct format_crypt c;
  uint8_t out[128], plain[5], *dec;
  size_t len, dlen;
  key9(&c);
  ASSERT_EQ(FORMAT_BLOB_ENC_HDR_LEN, 44);
  ASSERT_EQ(format_blob_encode(NULL, "hello", 5, 0, &c, out, sizeof(out), &len),
            FORMAT_BLOB_ENCRYPTED);
  ASSERT_EQ(len, 44 + 5);
  ASSERT_OK(format_crypt_gcm_decrypt(c.enc_key, out + 12, out + 44, 5, plain, out + 28, NULL));
  ASSERT_MEM_EQ(plain, "hello", 5);

  /* Built by hand the way PBS lays it out, it decodes. */
  uint8_t blob[44 + 7], iv[16];
  memcpy(blob, out, 8); /* the magic */
  memset(iv, 0x5a, sizeof(iv));
  memcpy(blob + 12, iv, 16);
  ASSERT_OK(format_crypt_gcm_encrypt(c.enc_key, iv, "cairn!!", 7, blob + 44, blob + 28, NULL));
  /* The server's upload path: size-checked, and the CRC it writes is PBS's,
   * over the ciphertext from byte 44 on. */
  uint8_t digest[32] = {0};
  ASSERT_EQ(format_blob_verify_chunk(NULL, blob, sizeof(blob), digest, 7), FORMAT_BLOB_ENCRYPTED);
  ASSERT_OK(format_blob_set_crc(blob, sizeof(blob)));
  uint32_t crc = core_crc32(0, blob + 44, 7);
  uint8_t le[4] = {(uint8_t)crc, (uint8_t)(crc >> 8), (uint8_t)(crc >> 16), (uint8_t)(crc >> 24)};
  ASSERT_MEM_EQ(blob + 8, le, 4);
  ASSERT_OK(format_blob_decode(NULL, blob, sizeof(blob), &c, 16, NULL, &dec, &dlen));
  ASSERT_EQ(dlen, 7);
  ASSERT_MEM_EQ(dec, "cairn!!", 7);
  core_free(dec);
}

UNIT_MAIN(UNIT_CASE(blob_magics_are_sha256_prefixes), UNIT_CASE(blob_hello_vector),
          UNIT_CASE(blob_roundtrip_all_kinds), UNIT_CASE(blob_empty),
          UNIT_CASE(blob_encrypted_iv_is_random), UNIT_CASE(blob_encode_limits),
          UNIT_CASE(blob_corrupt_crc_truncated_wrong_magic), UNIT_CASE(blob_wrong_key),
          UNIT_CASE(blob_decompression_bomb_bounded), UNIT_CASE(blob_truncated_zstd), UNIT_CASE(blob_mutations),
          UNIT_CASE(chunk_verify), UNIT_CASE(zero_chunk_digest), UNIT_CASE(crypt_derivations),
          UNIT_CASE(didx_pbs_vector), UNIT_CASE(fidx_roundtrip),
          UNIT_CASE(didx_roundtrip_memory_and_streaming), UNIT_CASE(index_write_file),
          UNIT_CASE(manifest_parse_generate), UNIT_CASE(manifest_rejects), UNIT_CASE(manifest_truncations),
          UNIT_CASE(manifest_filenames), UNIT_CASE(manifest_signature_pbs_vector),
          UNIT_CASE(manifest_unsigned_and_blob_errors), UNIT_CASE(keyfile_none),
          UNIT_CASE(keyfile_scrypt), UNIT_CASE(keyfile_default_n_and_files),
          UNIT_CASE(blob_encrypted_pbs_layout))
