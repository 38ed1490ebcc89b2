/* fuzz_blob.c: the DataBlob decoder, all four magics, and the server's
 * acceptance of uploaded chunks.
 *
 * Input: a flags byte, then the blob. Flags choose a key, whether the
 * harness fixes the CRC first (so mutations reach zstd and GCM instead of
 * stopping at the checksum), and the plaintext limit. Checked:
 * - decode succeeds only for a known magic, with a good CRC, within the
 *   limit, and for encrypted kinds only with the key;
 * - decode and decode_inplace agree on the verdict and the bytes;
 * - the digest of a decoded plaintext is accepted as expect_digest, and a
 *   different one is refused with CORE_EDIGEST;
 * - an unencrypted blob that decodes (and whose payload is not larger than
 *   its plaintext, as every encoder makes it) is a chunk that verify_chunk
 *   and accept_chunk accept under its digest and size, and accept_chunk
 *   leaves a valid CRC. */
#include "fuzz.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "format/format_blob.h"
#include "format/format_crypt.h"

enum {
  F_KEY = 1 << 0,      /* decode with the key */
  F_FIX_CRC = 1 << 1,  /* rewrite the CRC before decoding */
  F_SMALL = 1 << 2,    /* plaintext limit 4 KiB instead of 256 KiB */
  F_NO_CTX = 1 << 3,   /* temporary contexts instead of a reused one */
};

static struct format_crypt crypt;
static struct format_blob_ctx ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  /* The same key as fuzz/gen_corpus.c uses for the encrypted seeds. */
  uint8_t key[FORMAT_CRYPT_KEY_LEN];
  for (size_t i = 0; i < sizeof(key); i++)
    key[i] = (uint8_t)i;
  if (format_crypt_init(&crypt, key) != 0)
    abort();
  format_blob_ctx_init(&ctx);
  return 0;
}

static uint8_t *dup_bytes(const uint8_t *p, size_t n)
{
  uint8_t *d = malloc(n ? n : 1);
  memcpy(d, p, n);
  return d;
}

static void check_chunk(struct format_blob_ctx *c, const uint8_t *blob, size_t len,
                        const uint8_t digest[32], uint64_t size, int kind)
{
  uint8_t *a = dup_bytes(blob, len);
  FUZZ_ASSERT(format_blob_verify_chunk(c, a, len, digest, size) == kind);
  FUZZ_ASSERT(format_blob_accept_chunk(c, a, len, digest, size) == kind);
  FUZZ_ASSERT(format_blob_verify_crc(a, len) == 0);
  free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  unsigned flags = data[0];
  size_t len = size - 1;
  const struct format_crypt *key = (flags & F_KEY) ? &crypt : NULL;
  struct format_blob_ctx *c = (flags & F_NO_CTX) ? NULL : &ctx;
  size_t max_out = (flags & F_SMALL) ? 4096 : 256 * 1024;

  uint8_t *blob = dup_bytes(data + 1, len);
  int kind = format_blob_magic_kind(blob, len);
  if (flags & F_FIX_CRC)
    FUZZ_ASSERT((format_blob_set_crc(blob, len) == 0) == (kind >= 0));
  int crc = format_blob_verify_crc(blob, len);

  uint8_t *out = NULL;
  size_t out_len = 0;
  int rc = format_blob_decode(c, blob, len, key, max_out, NULL, &out, &out_len);
  if (rc == 0) {
    FUZZ_ASSERT(kind >= 0 && crc == 0 && out_len <= max_out);
    FUZZ_ASSERT(key != NULL || !format_blob_kind_encrypted(kind));
  } else {
    FUZZ_ASSERT(rc < 0);
    out = NULL;
  }

  /* In place, into a destination of exactly the limit. */
  uint8_t *in = dup_bytes(blob, len), *dst = malloc(max_out), *pout = NULL;
  size_t pout_len = 0;
  int prc = format_blob_decode_inplace(c, in, len, key, max_out, NULL, dst, max_out, &pout,
                                      &pout_len);
  /* The error may differ for a broken frame (decode reads the size the
   * frame announces, decode_inplace inflates until the data runs out), the
   * verdict may not. */
  FUZZ_ASSERT((prc == 0) == (rc == 0));
  if (rc == 0)
    FUZZ_ASSERT(pout_len == out_len && memcmp(pout, out, out_len) == 0);
  free(in);
  free(dst);

  if (rc == 0) {
    const struct format_crypt *dkey = format_blob_kind_encrypted(kind) ? key : NULL;
    uint8_t digest[32];
    format_crypt_chunk_digest(dkey, out, out_len, digest);
    uint8_t *again = NULL;
    size_t again_len = 0;
    FUZZ_ASSERT(format_blob_decode(c, blob, len, key, max_out, digest, &again, &again_len) == 0);
    FUZZ_ASSERT(again_len == out_len);
    core_free(again);
    digest[0] ^= 1;
    again = NULL;
    FUZZ_ASSERT(format_blob_decode(c, blob, len, key, max_out, digest, &again, &again_len) ==
                CORE_EDIGEST);
    digest[0] ^= 1;
    /* Upload checks refuse a payload larger than its plaintext, which no
     * encoder writes (format_blob_verify_chunk); decode tolerates it. */
    if (!format_blob_kind_encrypted(kind) && out_len >= 1 &&
        len - format_blob_hdr_len((enum format_blob_kind)kind) <= out_len)
      check_chunk(c, blob, len, digest, out_len, kind);
  }

  /* And as an upload with whatever size and digest the input implies. */
  uint8_t zero[32] = {0};
  uint8_t *up = dup_bytes(blob, len);
  int vrc = format_blob_verify_chunk(c, up, len, zero, len);
  int arc = format_blob_accept_chunk(c, up, len, zero, len);
  FUZZ_ASSERT(vrc == arc);
  free(up);

  core_free(out);
  free(blob);
  return 0;
}
