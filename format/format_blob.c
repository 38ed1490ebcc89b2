#include "format/format_blob.h"

#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "format/format_crypt.h"

#include <openssl/evp.h>
#include <string.h>
#include <uv.h>
#include <zstd.h>

/* First 8 bytes of SHA-256 over "Proxmox Backup <kind> blob v1.0"; indexed
 * by enum format_blob_kind. */
static const uint8_t blob_magic[4][8] = {
  {0x42, 0xab, 0x38, 0x07, 0xbe, 0x83, 0x70, 0xa1}, /* uncompressed */
  {0x31, 0xb9, 0x58, 0x42, 0x6f, 0xb6, 0xa3, 0x7f}, /* zstd compressed */
  {0x7b, 0x67, 0x85, 0xbe, 0x22, 0x2d, 0x4c, 0xf0}, /* encrypted */
  {0xe6, 0x59, 0x1b, 0xbf, 0x0b, 0xbf, 0xd8, 0x0b}, /* zstd compressed encrypted */
};

#define CRC_OFF 8
#define IV_OFF 12
#define TAG_OFF 28
/* zstd level PBS uses; part of the format only in the sense that it decides
 * which chunks end up compressed, and therefore their encoded bytes. */
#define ZSTD_LEVEL 1
/* Scratch size for decompress-and-hash: fits L2 alongside the zstd window. */
#define SCRATCH_LEN (128 * 1024)
/* Largest zstd window a decoder accepts. PBS compresses one-shot at level 1,
 * which never uses a window above 2^19; 2^24 leaves room without letting a
 * hostile frame make the decoder allocate 128 MiB or more. */
#define ZSTD_WINDOW_LOG_MAX 24

void format_blob_ctx_init(struct format_blob_ctx *ctx)
{
  memset(ctx, 0, sizeof(*ctx));
}

void format_blob_ctx_free(struct format_blob_ctx *ctx)
{
  ZSTD_freeCCtx(ctx->cctx);
  ZSTD_freeDCtx(ctx->dctx);
  EVP_CIPHER_CTX_free(ctx->cipher);
  core_free(ctx->scratch);
  memset(ctx, 0, sizeof(*ctx));
}

/* Returns the context's compressor, creating it on first use. With a NULL
 * ctx the caller gets a temporary one and must free it. */
static ZSTD_CCtx *get_cctx(struct format_blob_ctx *ctx)
{
  if (ctx == NULL)
    return ZSTD_createCCtx();
  if (ctx->cctx == NULL)
    ctx->cctx = ZSTD_createCCtx();
  return ctx->cctx;
}

static ZSTD_DCtx *new_dctx(void)
{
  ZSTD_DCtx *d = ZSTD_createDCtx();
  if (d && ZSTD_isError(ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, ZSTD_WINDOW_LOG_MAX))) {
    ZSTD_freeDCtx(d);
    d = NULL;
  }
  return d;
}

static ZSTD_DCtx *get_dctx(struct format_blob_ctx *ctx)
{
  if (ctx == NULL)
    return new_dctx();
  if (ctx->dctx == NULL)
    ctx->dctx = new_dctx();
  else
    ZSTD_DCtx_reset(ctx->dctx, ZSTD_reset_session_only);
  return ctx->dctx;
}

static void *get_cipher(struct format_blob_ctx *ctx)
{
  if (ctx == NULL)
    return NULL; /* format_crypt makes a temporary one */
  if (ctx->cipher == NULL)
    ctx->cipher = EVP_CIPHER_CTX_new();
  return ctx->cipher;
}

static void put_cctx(struct format_blob_ctx *ctx, ZSTD_CCtx *c)
{
  if (ctx == NULL)
    ZSTD_freeCCtx(c);
}

static void put_dctx(struct format_blob_ctx *ctx, ZSTD_DCtx *d)
{
  if (ctx == NULL)
    ZSTD_freeDCtx(d);
}

static uint32_t load_le32(const uint8_t *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void store_le32(uint8_t *p, uint32_t v)
{
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

static uint32_t payload_crc(const uint8_t *p, size_t len)
{
  return core_crc32(0, p, len);
}

int format_blob_magic_kind(const void *data, size_t len)
{
  if (len < 8)
    return CORE_EFORMAT;
  for (int k = 0; k < 4; k++) {
    if (memcmp(data, blob_magic[k], 8) == 0)
      return len >= format_blob_hdr_len((enum format_blob_kind)k) ? k : CORE_EFORMAT;
  }
  return CORE_EFORMAT;
}

int format_blob_encode(struct format_blob_ctx *ctx, const void *data, size_t len, int flags,
                      const struct format_crypt *crypt, void *out, size_t out_cap,
                      size_t *out_len)
{
  uint8_t *hdr = out;
  size_t hlen = crypt ? FORMAT_BLOB_ENC_HDR_LEN : FORMAT_BLOB_HDR_LEN;
  uint8_t *payload = hdr + hlen;
  size_t plen = len;
  int compressed = 0;
  enum format_blob_kind kind;
  int rc;

  if (len > FORMAT_BLOB_MAX_SIZE)
    return CORE_ETOOBIG;
  if (out_cap < hlen + len)
    return CORE_EINVAL;

  if (flags & FORMAT_BLOB_COMPRESS) {
    ZSTD_CCtx *c = get_cctx(ctx);
    if (c == NULL)
      return UV_ENOMEM;
    /* Output capacity = input size: zstd fails with dstSize_tooSmall when the
     * data does not shrink, and then it goes in uncompressed. */
    size_t r = ZSTD_compressCCtx(c, payload, len, data, len, ZSTD_LEVEL);
    put_cctx(ctx, c);
    if (!ZSTD_isError(r)) {
      compressed = 1;
      plen = r;
    }
  }

  if (crypt) {
    uint8_t iv[FORMAT_CRYPT_IV_LEN];
    rc = core_random(iv, sizeof(iv));
    if (rc < 0)
      return rc;
    /* Compressed data already sits in the payload: encrypt it in place. */
    rc = format_crypt_gcm_encrypt(crypt->enc_key, iv, compressed ? payload : data, plen,
                                 payload, hdr + TAG_OFF, get_cipher(ctx));
    if (rc < 0)
      return rc;
    memcpy(hdr + IV_OFF, iv, sizeof(iv));
    kind = compressed ? FORMAT_BLOB_ZSTD_ENCRYPTED : FORMAT_BLOB_ENCRYPTED;
  } else {
    if (!compressed && len > 0)
      memcpy(payload, data, len);
    kind = compressed ? FORMAT_BLOB_ZSTD : FORMAT_BLOB_PLAIN;
  }

  memcpy(hdr, blob_magic[kind], 8);
  store_le32(hdr + CRC_OFF, payload_crc(payload, plen));
  *out_len = hlen + plen;
  return (int)kind;
}

int format_blob_encode_alloc(struct format_blob_ctx *ctx, const void *data, size_t len,
                            int flags, const struct format_crypt *crypt, uint8_t **out,
                            size_t *out_len)
{
  size_t cap;
  uint8_t *buf;
  int rc;

  if (len > FORMAT_BLOB_MAX_SIZE)
    return CORE_ETOOBIG;
  cap = format_blob_encode_bound(len);
  buf = core_try_malloc(cap);
  if (buf == NULL)
    return UV_ENOMEM;
  rc = format_blob_encode(ctx, data, len, flags, crypt, buf, cap, out_len);
  if (rc < 0) {
    core_free(buf);
    return rc;
  }
  *out = buf;
  return rc;
}

int format_blob_verify_crc(const void *blob, size_t len)
{
  const uint8_t *b = blob;
  int kind = format_blob_magic_kind(blob, len);
  size_t hlen;

  if (kind < 0)
    return kind;
  hlen = format_blob_hdr_len((enum format_blob_kind)kind);
  if (payload_crc(b + hlen, len - hlen) != load_le32(b + CRC_OFF))
    return CORE_ECRC;
  return 0;
}

int format_blob_set_crc(void *blob, size_t len)
{
  uint8_t *b = blob;
  int kind = format_blob_magic_kind(blob, len);
  size_t hlen;

  if (kind < 0)
    return kind;
  hlen = format_blob_hdr_len((enum format_blob_kind)kind);
  store_le32(b + CRC_OFF, payload_crc(b + hlen, len - hlen));
  return 0;
}

/* Inflates `src` into a new buffer of at most `max_out` bytes. When a single
 * frame states its content size (PBS writes it), one exactly-sized
 * allocation and a one-shot decode; zstd itself rejects a frame whose data
 * disagrees with its stated size. Otherwise a streaming decode into a buffer
 * that doubles up to max_out + 1, so a bomb stops one byte past the limit. */
static int inflate_alloc(struct format_blob_ctx *ctx, const uint8_t *src, size_t len,
                         size_t max_out, uint8_t **out, size_t *out_len)
{
  unsigned long long hint = ZSTD_getFrameContentSize(src, len);
  ZSTD_DCtx *d;
  uint8_t *buf = NULL;
  size_t cap, pos = 0;
  int rc = CORE_EFORMAT;

  if (hint == ZSTD_CONTENTSIZE_ERROR)
    return CORE_EFORMAT;
  if (hint != ZSTD_CONTENTSIZE_UNKNOWN && hint > max_out)
    return CORE_ETOOBIG; /* even the first frame alone is too big */
  /* The stable API sizes only the first frame; use the hint only when that
   * frame is all there is (always, for PBS-written blobs). */
  if (hint != ZSTD_CONTENTSIZE_UNKNOWN && ZSTD_findFrameCompressedSize(src, len) != len)
    hint = ZSTD_CONTENTSIZE_UNKNOWN;

  d = get_dctx(ctx);
  if (d == NULL)
    return UV_ENOMEM;

  if (hint != ZSTD_CONTENTSIZE_UNKNOWN) {
    buf = core_try_malloc(hint ? (size_t)hint : 1);
    if (buf == NULL) {
      rc = UV_ENOMEM;
      goto out;
    }
    size_t r = ZSTD_decompressDCtx(d, buf, (size_t)hint, src, len);
    if (ZSTD_isError(r) || r != hint)
      goto out;
    pos = r;
    rc = 0;
    goto out;
  }

  cap = len < max_out / 4 ? len * 4 : max_out;
  if (cap < 4096)
    cap = 4096;
  if (cap > max_out + 1)
    cap = max_out + 1;
  buf = core_try_malloc(cap);
  if (buf == NULL) {
    rc = UV_ENOMEM;
    goto out;
  }
  ZSTD_inBuffer in = {src, len, 0};
  for (;;) {
    ZSTD_outBuffer ob = {buf, cap, pos};
    size_t r = ZSTD_decompressStream(d, &ob, &in);
    pos = ob.pos;
    if (ZSTD_isError(r))
      goto out;
    if (pos > max_out) {
      rc = CORE_ETOOBIG;
      goto out;
    }
    if (r == 0 && in.pos == in.size)
      break; /* last frame complete and flushed */
    if (pos < cap && in.pos == in.size)
      goto out; /* wants more input than there is: truncated */
    if (pos == cap) {
      size_t ncap = cap > (max_out + 1) / 2 ? max_out + 1 : cap * 2;
      /* No core_try_realloc: the caller chose this size, so it must be
       * allowed to fail. */
      uint8_t *nbuf = core_try_malloc(ncap);
      if (nbuf == NULL) {
        rc = UV_ENOMEM;
        goto out;
      }
      memcpy(nbuf, buf, pos);
      core_free(buf);
      buf = nbuf;
      cap = ncap;
    }
  }
  rc = 0;
out:
  put_dctx(ctx, d);
  if (rc < 0) {
    core_free(buf);
    return rc;
  }
  *out = buf;
  *out_len = pos;
  return 0;
}

/* What every decode checks first: a known magic, the CRC, a key for an
 * encrypted blob, and a payload within max_out (the encoder keeps compressed
 * data only if it is not larger than the plaintext, so no valid payload
 * exceeds it). */
static int decode_begin(const void *blob, size_t len, const struct format_crypt *crypt,
                        size_t max_out, int *kind, size_t *hlen)
{
  int k = format_blob_magic_kind(blob, len), rc;
  if (k < 0)
    return k;
  if ((rc = format_blob_verify_crc(blob, len)) < 0)
    return rc;
  if (format_blob_kind_encrypted((enum format_blob_kind)k) && crypt == NULL)
    return CORE_ECRYPTO;
  *hlen = format_blob_hdr_len((enum format_blob_kind)k);
  if (len - *hlen > max_out)
    return CORE_ETOOBIG;
  *kind = k;
  return 0;
}

static int check_digest(int kind, const struct format_crypt *crypt, const uint8_t *plain,
                        size_t len, const uint8_t *expect)
{
  uint8_t d[32];
  if (expect == NULL)
    return 0;
  format_crypt_chunk_digest(format_blob_kind_encrypted((enum format_blob_kind)kind) ? crypt : NULL,
                           plain, len, d);
  return memcmp(d, expect, 32) == 0 ? 0 : CORE_EDIGEST;
}

int format_blob_decode(struct format_blob_ctx *ctx, const void *blob, size_t len,
                      const struct format_crypt *crypt, size_t max_out,
                      const uint8_t *expect_digest, uint8_t **out, size_t *out_len)
{
  const uint8_t *b = blob;
  const uint8_t *payload;
  uint8_t *plain = NULL, *tmp = NULL;
  size_t hlen, plen, plain_len = 0;
  int kind, rc;

  if ((rc = decode_begin(blob, len, crypt, max_out, &kind, &hlen)) < 0)
    return rc;
  payload = b + hlen;
  plen = len - hlen;

  switch (kind) {
  case FORMAT_BLOB_PLAIN:
    plain = core_try_malloc(plen ? plen : 1);
    if (plain == NULL)
      return UV_ENOMEM;
    memcpy(plain, payload, plen);
    plain_len = plen;
    break;
  case FORMAT_BLOB_ZSTD:
    rc = inflate_alloc(ctx, payload, plen, max_out, &plain, &plain_len);
    if (rc < 0)
      return rc;
    break;
  case FORMAT_BLOB_ENCRYPTED:
    plain = core_try_malloc(plen ? plen : 1);
    if (plain == NULL)
      return UV_ENOMEM;
    rc = format_crypt_gcm_decrypt(crypt->enc_key, b + IV_OFF, payload, plen, plain,
                                 b + TAG_OFF, get_cipher(ctx));
    if (rc < 0)
      goto fail;
    plain_len = plen;
    break;
  case FORMAT_BLOB_ZSTD_ENCRYPTED:
    tmp = core_try_malloc(plen ? plen : 1);
    if (tmp == NULL)
      return UV_ENOMEM;
    rc = format_crypt_gcm_decrypt(crypt->enc_key, b + IV_OFF, payload, plen, tmp,
                                 b + TAG_OFF, get_cipher(ctx));
    if (rc == 0)
      rc = inflate_alloc(ctx, tmp, plen, max_out, &plain, &plain_len);
    core_free(tmp);
    if (rc < 0)
      return rc;
    break;
  }

  if ((rc = check_digest(kind, crypt, plain, plain_len, expect_digest)) < 0)
    goto fail;
  *out = plain;
  *out_len = plain_len;
  return 0;
fail:
  core_free(plain);
  return rc;
}

/* Inflates into the caller's dst: CORE_ETOOBIG when the plaintext passes
 * max_out or does not fit in cap. */
static int inflate_into(struct format_blob_ctx *ctx, const uint8_t *src, size_t len,
                        size_t max_out, uint8_t *dst, size_t cap, size_t *out_len)
{
  ZSTD_DCtx *d = get_dctx(ctx);
  ZSTD_inBuffer in = {src, len, 0};
  ZSTD_outBuffer ob = {dst, cap < max_out + 1 ? cap : max_out + 1, 0};
  int rc = CORE_EFORMAT;

  if (d == NULL)
    return UV_ENOMEM;
  for (;;) {
    size_t r = ZSTD_decompressStream(d, &ob, &in);
    if (ZSTD_isError(r))
      goto out;
    if (ob.pos > max_out) {
      rc = CORE_ETOOBIG;
      goto out;
    }
    if (r == 0 && in.pos == in.size)
      break; /* last frame complete and flushed */
    if (ob.pos == ob.size) {
      rc = CORE_ETOOBIG; /* more to come and no room */
      goto out;
    }
    if (in.pos == in.size)
      goto out; /* wants more input than there is: truncated */
  }
  *out_len = ob.pos;
  rc = 0;
out:
  put_dctx(ctx, d);
  return rc;
}

int format_blob_decode_inplace(struct format_blob_ctx *ctx, uint8_t *blob, size_t len,
                              const struct format_crypt *crypt, size_t max_out,
                              const uint8_t *expect_digest, uint8_t *dst, size_t dst_cap,
                              uint8_t **out, size_t *out_len)
{
  uint8_t *payload, *plain;
  size_t hlen, plen, plain_len;
  int kind, rc;

  if ((rc = decode_begin(blob, len, crypt, max_out, &kind, &hlen)) < 0)
    return rc;
  payload = blob + hlen;
  plen = len - hlen;
  if (format_blob_kind_compressed((enum format_blob_kind)kind) && dst == NULL)
    return CORE_EINVAL;
  /* GCM decrypts in place (same buffer in and out) */
  if (format_blob_kind_encrypted((enum format_blob_kind)kind) &&
      (rc = format_crypt_gcm_decrypt(crypt->enc_key, blob + IV_OFF, payload, plen, payload,
                                    blob + TAG_OFF, get_cipher(ctx))) < 0)
    return rc;
  if (format_blob_kind_compressed((enum format_blob_kind)kind)) {
    if ((rc = inflate_into(ctx, payload, plen, max_out, dst, dst_cap, &plain_len)) < 0)
      return rc;
    plain = dst;
  } else {
    plain = payload;
    plain_len = plen;
  }
  if ((rc = check_digest(kind, crypt, plain, plain_len, expect_digest)) < 0)
    return rc;
  *out = plain;
  *out_len = plain_len;
  return 0;
}

/* Decompresses into a small scratch buffer and hashes as it goes, so the
 * server verifies a 4 MiB chunk without a 4 MiB allocation. Output past
 * `size` stops the decode at once. */
static int inflate_hash(struct format_blob_ctx *ctx, const uint8_t *src, size_t len,
                        uint64_t size, uint8_t digest[32])
{
  ZSTD_DCtx *d = get_dctx(ctx);
  uint8_t *scratch;
  struct core_sha256 h;
  uint64_t total = 0;
  int rc = CORE_EFORMAT;

  if (d == NULL)
    return UV_ENOMEM;
  if (ctx) {
    if (ctx->scratch == NULL)
      ctx->scratch = core_malloc(SCRATCH_LEN);
    scratch = ctx->scratch;
  } else {
    scratch = core_malloc(SCRATCH_LEN);
  }

  core_sha256_init(&h);
  ZSTD_inBuffer in = {src, len, 0};
  for (;;) {
    ZSTD_outBuffer ob = {scratch, SCRATCH_LEN, 0};
    size_t r = ZSTD_decompressStream(d, &ob, &in);
    if (ZSTD_isError(r))
      goto out;
    total += ob.pos;
    if (total > size)
      goto out;
    core_sha256_update(&h, scratch, ob.pos);
    if (r == 0 && in.pos == in.size)
      break;
    if (ob.pos < ob.size && in.pos == in.size)
      goto out; /* truncated */
  }
  if (total == size)
    rc = 0;
out:
  core_sha256_final(&h, digest);
  put_dctx(ctx, d);
  if (ctx == NULL)
    core_free(scratch);
  return rc;
}

int format_blob_verify_chunk(struct format_blob_ctx *ctx, const void *blob, size_t len,
                            const uint8_t digest[32], uint64_t size)
{
  const uint8_t *b = blob;
  uint8_t d[32];
  int kind, rc;
  size_t hlen, plen;

  if (size > FORMAT_CHUNK_MAX_SIZE)
    return CORE_ETOOBIG;
  if (size == 0)
    return CORE_EFORMAT;
  /* No bound on len of its own: the payload may not exceed `size` (below),
   * so a longer body is a blob that disagrees with its size (CORE_EFORMAT),
   * whatever slack the caller's body limit leaves. */
  kind = format_blob_magic_kind(blob, len);
  if (kind < 0)
    return kind;
  hlen = format_blob_hdr_len((enum format_blob_kind)kind);
  plen = len - hlen;
  /* No valid payload is larger than its plaintext (see format_blob_decode). */
  if (plen > size)
    return CORE_EFORMAT;

  switch (kind) {
  case FORMAT_BLOB_PLAIN:
    if (plen != size)
      return CORE_EFORMAT;
    core_sha256(b + hlen, plen, d);
    break;
  case FORMAT_BLOB_ZSTD:
    rc = inflate_hash(ctx, b + hlen, plen, size, d);
    if (rc < 0)
      return rc;
    break;
  case FORMAT_BLOB_ENCRYPTED:
    return plen == size ? kind : CORE_EFORMAT;
  default:
    return kind;
  }
  return memcmp(d, digest, 32) == 0 ? kind : CORE_EDIGEST;
}

int format_blob_accept_chunk(struct format_blob_ctx *ctx, void *blob, size_t len,
                            const uint8_t digest[32], uint64_t size)
{
  uint8_t *b = blob;
  int kind = format_blob_magic_kind(blob, len);
  if (kind != FORMAT_BLOB_PLAIN || len - FORMAT_BLOB_HDR_LEN != size ||
      size > FORMAT_CHUNK_MAX_SIZE) {
    int rc = format_blob_verify_chunk(ctx, blob, len, digest, size);
    if (rc < 0)
      return rc;
    format_blob_set_crc(blob, len);
    return rc;
  }
  /* Plain chunks: hash and CRC in one pass over cache-sized blocks, so the
   * 4 MiB payload crosses the memory bus once instead of twice. */
  const uint8_t *p = b + FORMAT_BLOB_HDR_LEN;
  size_t left = (size_t)size;
  struct core_sha256 h;
  uint32_t crc = 0;
  uint8_t d[32];
  core_sha256_init(&h);
  while (left > 0) {
    size_t n = left < 256 * 1024 ? left : 256 * 1024;
    core_sha256_update(&h, p, n);
    crc = core_crc32(crc, p, n);
    p += n;
    left -= n;
  }
  core_sha256_final(&h, d);
  if (memcmp(d, digest, 32) != 0)
    return CORE_EDIGEST;
  store_le32(b + CRC_OFF, crc);
  return kind;
}
