/* store_blob.h: the DataBlob codec (chunks, *.blob files, index.json.blob).
 *
 * DESIGN
 * A blob is a header followed by the payload up to the end of the data; there
 * is no length field. The header's first 8 bytes (a magic) say what the
 * payload is:
 *
 *   kind                     magic              header
 *   uncompressed             42ab3807be8370a1   magic[8] crc[4]                    12 bytes
 *   zstd                     31b958426fb6a37f   magic[8] crc[4]                    12 bytes
 *   encrypted                7b6785be222d4cf0   magic[8] crc[4] iv[16] tag[16]     44 bytes
 *   zstd, then encrypted     e6591bbf0bbfd80b   magic[8] crc[4] iv[16] tag[16]     44 bytes
 *
 * crc is the zlib CRC-32 of the payload only (not of IV and tag), stored
 * little-endian. Compression is zstd level 1 into a buffer as large as the
 * input: the compressed form is kept only if it fits (<= input size).
 * Encryption is AES-256-GCM with a random IV and empty AAD, applied after
 * compression. All of this is bit-compatible with Proxmox Backup Server.
 *
 * Decoding never trusts sizes in the data: the caller passes the most
 * plaintext it accepts (STORE_CHUNK_MAX_SIZE for chunks, STORE_BLOB_MAX_SIZE
 * for other blobs) and a zstd frame that would inflate past it fails with
 * CORE_ETOOBIG before the memory is spent.
 *
 * THREADING: every function is synchronous, pure CPU and memory work (no file
 * I/O). The chunk path runs them on every byte, so call them from thread-pool
 * jobs, never from the loop thread. A struct store_blob_ctx caches zstd and
 * cipher contexts; it belongs to one thread at a time (keep one per worker).
 *
 * Errors: CORE_EFORMAT (unknown magic, short data, malformed zstd, size that
 * disagrees with the announcement), CORE_ECRC, CORE_EDIGEST, CORE_ETOOBIG,
 * CORE_ECRYPTO (encrypted blob without key, wrong key, tampered data),
 * UV_ENOMEM (a client-sized allocation failed).
 */
#ifndef STORE_BLOB_H
#define STORE_BLOB_H

#include <stddef.h>
#include <stdint.h>

struct store_crypt;

enum store_blob_kind {
  STORE_BLOB_PLAIN = 0,        /* uncompressed, unencrypted */
  STORE_BLOB_ZSTD = 1,         /* compressed */
  STORE_BLOB_ENCRYPTED = 2,    /* encrypted */
  STORE_BLOB_ZSTD_ENCRYPTED = 3 /* compressed, then encrypted */
};

#define STORE_BLOB_HDR_LEN 12
#define STORE_BLOB_ENC_HDR_LEN 44 /* PBS's EncryptedDataBlobHeader is packed: no padding */
#define STORE_BLOB_MAX_SIZE (128u * 1024 * 1024) /* PBS MAX_BLOB_SIZE: plaintext cap */
#define STORE_CHUNK_MAX_SIZE (16u * 1024 * 1024) /* largest chunk the protocol allows */

/* Flags for store_blob_encode. */
#define STORE_BLOB_COMPRESS 1

static inline int store_blob_kind_encrypted(enum store_blob_kind k)
{
  return k == STORE_BLOB_ENCRYPTED || k == STORE_BLOB_ZSTD_ENCRYPTED;
}
static inline int store_blob_kind_compressed(enum store_blob_kind k)
{
  return k == STORE_BLOB_ZSTD || k == STORE_BLOB_ZSTD_ENCRYPTED;
}
static inline size_t store_blob_hdr_len(enum store_blob_kind k)
{
  return store_blob_kind_encrypted(k) ? STORE_BLOB_ENC_HDR_LEN : STORE_BLOB_HDR_LEN;
}

/* Reusable per-thread state. Zero-initialise (or store_blob_ctx_init), use,
 * then store_blob_ctx_free. Every function below also accepts NULL and then
 * makes temporary contexts, which costs an allocation per call. */
struct store_blob_ctx {
  void *cctx;   /* ZSTD_CCtx, owned, created on first use */
  void *dctx;   /* ZSTD_DCtx, owned, created on first use */
  void *cipher; /* EVP_CIPHER_CTX, owned, created on first use */
  uint8_t *scratch; /* decompress-and-hash buffer, owned, created on first use */
};

void store_blob_ctx_init(struct store_blob_ctx *ctx);
void store_blob_ctx_free(struct store_blob_ctx *ctx);

/* The kind of blob `data` starts with. Returns an enum store_blob_kind, or
 * CORE_EFORMAT when the magic is unknown or `len` is shorter than that kind's
 * header. */
int store_blob_magic_kind(const void *data, size_t len);

/* The buffer size store_blob_encode needs for `len` input bytes: the largest
 * header plus `len`. */
static inline size_t store_blob_encode_bound(size_t len)
{
  return STORE_BLOB_ENC_HDR_LEN + len;
}

/* Encodes `len` bytes into `out` (at least store_blob_encode_bound(len)
 * bytes, not overlapping `data`). With STORE_BLOB_COMPRESS in `flags` tries
 * zstd level 1 and keeps it if not larger; with `crypt` != NULL encrypts
 * (random IV). On success stores the encoded length in *out_len and returns
 * the enum store_blob_kind written. Errors: CORE_ETOOBIG (len over
 * STORE_BLOB_MAX_SIZE), CORE_EINVAL (out_cap too small), CORE_ECRYPTO. */
int store_blob_encode(struct store_blob_ctx *ctx, const void *data, size_t len, int flags,
                      const struct store_crypt *crypt, void *out, size_t out_cap,
                      size_t *out_len);
/* The same into a new buffer (free with core_free). Also UV_ENOMEM. */
int store_blob_encode_alloc(struct store_blob_ctx *ctx, const void *data, size_t len,
                            int flags, const struct store_crypt *crypt, uint8_t **out,
                            size_t *out_len);

/* Checks the stored CRC against the payload. 0, CORE_EFORMAT or CORE_ECRC. */
int store_blob_verify_crc(const void *blob, size_t len);
/* Recomputes the payload CRC and writes it into the header (the server does
 * this for every uploaded chunk, as PBS does). 0 or CORE_EFORMAT. */
int store_blob_set_crc(void *blob, size_t len);

/* Decodes a blob: checks magic and CRC, decrypts with `crypt` when the blob
 * is encrypted, decompresses. The plaintext goes into a new buffer (*out, free
 * with core_free; for an empty plaintext still a valid 1-byte allocation) of
 * *out_len <= max_out bytes. With `expect_digest` != NULL the chunk digest of
 * the plaintext (store_crypt_chunk_digest with the blob's key, if encrypted)
 * must equal it. Errors: CORE_EFORMAT, CORE_ECRC, CORE_ECRYPTO, CORE_ETOOBIG
 * (plaintext over max_out), CORE_EDIGEST, UV_ENOMEM. */
int store_blob_decode(struct store_blob_ctx *ctx, const void *blob, size_t len,
                      const struct store_crypt *crypt, size_t max_out,
                      const uint8_t *expect_digest, uint8_t **out, size_t *out_len);

/* store_blob_decode without a copy or an allocation: the plaintext of an
 * uncompressed blob is left where it is (decrypted in place when encrypted)
 * and *out points into `blob`, which is modified and must outlive the
 * plaintext's use; a compressed blob inflates into the caller's `dst`
 * (`dst_cap` bytes; required for compressed kinds, see
 * store_blob_kind_compressed, else CORE_EINVAL) and *out is dst. Same errors
 * as store_blob_decode, plus CORE_ETOOBIG when the plaintext does not fit in
 * dst; `blob` may be left half decrypted. */
int store_blob_decode_inplace(struct store_blob_ctx *ctx, uint8_t *blob, size_t len,
                              const struct store_crypt *crypt, size_t max_out,
                              const uint8_t *expect_digest, uint8_t *dst, size_t dst_cap,
                              uint8_t **out, size_t *out_len);

/* The server's check of an uploaded chunk (raw DataBlob bytes as received),
 * before it is stored under `digest`. The CRC is not checked: the server
 * rewrites it afterwards with store_blob_set_crc.
 * - `size` (the announced plaintext size) must be 1..STORE_CHUNK_MAX_SIZE
 *   (else CORE_ETOOBIG / CORE_EFORMAT) and `len` at most that plus the
 *   encrypted header.
 * - Unencrypted blobs are decompressed in bounded steps straight into
 *   SHA-256 (no plaintext buffer): the length must equal `size`
 *   (CORE_EFORMAT) and the digest `digest` (CORE_EDIGEST).
 * - Encrypted blobs cannot be checked without the key: only magic and header
 *   length, and for uncompressed ones payload length == size (GCM keeps
 *   lengths).
 * Returns the enum store_blob_kind, or an error above. */
int store_blob_verify_chunk(struct store_blob_ctx *ctx, const void *blob, size_t len,
                            const uint8_t digest[32], uint64_t size);

/* The server's whole acceptance of an uploaded chunk: store_blob_verify_chunk
 * and then store_blob_set_crc, fused into one pass over the payload for
 * uncompressed chunks. Returns the blob kind or an error of verify_chunk. */
int store_blob_accept_chunk(struct store_blob_ctx *ctx, void *blob, size_t len,
                            const uint8_t digest[32], uint64_t size);

#endif
