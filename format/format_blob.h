/* format_blob.h: the DataBlob codec (chunks, *.blob files, index.json.blob).
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
 * plaintext it accepts (FORMAT_CHUNK_MAX_SIZE for chunks, FORMAT_BLOB_MAX_SIZE
 * for other blobs) and a zstd frame that would inflate past it fails with
 * CORE_ETOOBIG before the memory is spent.
 *
 * THREADING: every function is synchronous, pure CPU and memory work (no file
 * I/O). The chunk path runs them on every byte, so call them from thread-pool
 * jobs, never from the loop thread. A struct format_blob_ctx caches zstd and
 * cipher contexts; it belongs to one thread at a time (keep one per worker).
 *
 * Errors: CORE_EFORMAT (unknown magic, short data, malformed zstd, size that
 * disagrees with the announcement), CORE_ECRC, CORE_EDIGEST, CORE_ETOOBIG,
 * CORE_ECRYPTO (encrypted blob without key, wrong key, tampered data),
 * UV_ENOMEM (a client-sized allocation failed).
 */
#ifndef FORMAT_BLOB_H
#define FORMAT_BLOB_H

#include <stddef.h>
#include <stdint.h>

struct format_crypt;

enum format_blob_kind {
  FORMAT_BLOB_PLAIN = 0,        /* uncompressed, unencrypted */
  FORMAT_BLOB_ZSTD = 1,         /* compressed */
  FORMAT_BLOB_ENCRYPTED = 2,    /* encrypted */
  FORMAT_BLOB_ZSTD_ENCRYPTED = 3 /* compressed, then encrypted */
};

#define FORMAT_BLOB_HDR_LEN 12
#define FORMAT_BLOB_ENC_HDR_LEN 44 /* PBS's EncryptedDataBlobHeader is packed: no padding */
#define FORMAT_BLOB_MAX_SIZE (128u * 1024 * 1024) /* PBS MAX_BLOB_SIZE: plaintext cap */
#define FORMAT_CHUNK_MAX_SIZE (16u * 1024 * 1024) /* largest chunk the protocol allows */

/* Flags for format_blob_encode. */
#define FORMAT_BLOB_COMPRESS 1

static inline int format_blob_kind_encrypted(enum format_blob_kind k)
{
  return k == FORMAT_BLOB_ENCRYPTED || k == FORMAT_BLOB_ZSTD_ENCRYPTED;
}
static inline int format_blob_kind_compressed(enum format_blob_kind k)
{
  return k == FORMAT_BLOB_ZSTD || k == FORMAT_BLOB_ZSTD_ENCRYPTED;
}
static inline size_t format_blob_hdr_len(enum format_blob_kind k)
{
  return format_blob_kind_encrypted(k) ? FORMAT_BLOB_ENC_HDR_LEN : FORMAT_BLOB_HDR_LEN;
}

/* Reusable per-thread state. Zero-initialise (or format_blob_ctx_init), use,
 * then format_blob_ctx_free. Every function below also accepts NULL and then
 * makes temporary contexts, which costs an allocation per call. */
struct format_blob_ctx {
  void *cctx;   /* ZSTD_CCtx, owned, created on first use */
  void *dctx;   /* ZSTD_DCtx, owned, created on first use */
  void *cipher; /* EVP_CIPHER_CTX, owned, created on first use */
  uint8_t *scratch; /* decompress-and-hash buffer, owned, created on first use */
};

void format_blob_ctx_init(struct format_blob_ctx *ctx);
void format_blob_ctx_free(struct format_blob_ctx *ctx);

/* The kind of blob `data` starts with. Returns an enum format_blob_kind, or
 * CORE_EFORMAT when the magic is unknown or `len` is shorter than that kind's
 * header. */
int format_blob_magic_kind(const void *data, size_t len);

/* The buffer size format_blob_encode needs for `len` input bytes: the largest
 * header plus `len`. */
static inline size_t format_blob_encode_bound(size_t len)
{
  return FORMAT_BLOB_ENC_HDR_LEN + len;
}

/* Encodes `len` bytes into `out` (at least format_blob_encode_bound(len)
 * bytes, not overlapping `data`). With FORMAT_BLOB_COMPRESS in `flags` tries
 * zstd level 1 and keeps it if not larger; with `crypt` != NULL encrypts
 * (random IV). On success stores the encoded length in *out_len and returns
 * the enum format_blob_kind written. Errors: CORE_ETOOBIG (len over
 * FORMAT_BLOB_MAX_SIZE), CORE_EINVAL (out_cap too small), CORE_ECRYPTO. */
int format_blob_encode(struct format_blob_ctx *ctx, const void *data, size_t len, int flags,
                      const struct format_crypt *crypt, void *out, size_t out_cap,
                      size_t *out_len);
/* The same into a new buffer (free with core_free). Also UV_ENOMEM. */
int format_blob_encode_alloc(struct format_blob_ctx *ctx, const void *data, size_t len,
                            int flags, const struct format_crypt *crypt, uint8_t **out,
                            size_t *out_len);

/* Checks the stored CRC against the payload. 0, CORE_EFORMAT or CORE_ECRC. */
int format_blob_verify_crc(const void *blob, size_t len);
/* Recomputes the payload CRC and writes it into the header (the server does
 * this for every uploaded chunk, as PBS does). 0 or CORE_EFORMAT. */
int format_blob_set_crc(void *blob, size_t len);

/* Decodes a blob: checks magic and CRC, decrypts with `crypt` when the blob
 * is encrypted, decompresses. The plaintext goes into a new buffer (*out, free
 * with core_free; for an empty plaintext still a valid 1-byte allocation) of
 * *out_len <= max_out bytes. With `expect_digest` != NULL the chunk digest of
 * the plaintext (format_crypt_chunk_digest with the blob's key, if encrypted)
 * must equal it. Errors: CORE_EFORMAT, CORE_ECRC, CORE_ECRYPTO, CORE_ETOOBIG
 * (plaintext over max_out), CORE_EDIGEST, UV_ENOMEM. */
int format_blob_decode(struct format_blob_ctx *ctx, const void *blob, size_t len,
                      const struct format_crypt *crypt, size_t max_out,
                      const uint8_t *expect_digest, uint8_t **out, size_t *out_len);

/* format_blob_decode without a copy or an allocation: the plaintext of an
 * uncompressed blob is left where it is (decrypted in place when encrypted)
 * and *out points into `blob`, which is modified and must outlive the
 * plaintext's use; a compressed blob inflates into the caller's `dst`
 * (`dst_cap` bytes; required for compressed kinds, see
 * format_blob_kind_compressed, else CORE_EINVAL) and *out is dst. Same errors
 * as format_blob_decode, plus CORE_ETOOBIG when the plaintext does not fit in
 * dst; `blob` may be left half decrypted. */
int format_blob_decode_inplace(struct format_blob_ctx *ctx, uint8_t *blob, size_t len,
                              const struct format_crypt *crypt, size_t max_out,
                              const uint8_t *expect_digest, uint8_t *dst, size_t dst_cap,
                              uint8_t **out, size_t *out_len);

/* The server's check of an uploaded chunk (raw DataBlob bytes as received),
 * before it is stored under `digest`. The CRC is not checked: the server
 * rewrites it afterwards with format_blob_set_crc.
 * - `size` (the announced plaintext size) must be 1..FORMAT_CHUNK_MAX_SIZE
 *   (else CORE_ETOOBIG / CORE_EFORMAT) and `len` at most that plus the
 *   encrypted header.
 * - Unencrypted blobs are decompressed in bounded steps straight into
 *   SHA-256 (no plaintext buffer): the length must equal `size`
 *   (CORE_EFORMAT) and the digest `digest` (CORE_EDIGEST).
 * - Encrypted blobs cannot be checked without the key: only magic and header
 *   length, and for uncompressed ones payload length == size (GCM keeps
 *   lengths).
 * Returns the enum format_blob_kind, or an error above. */
int format_blob_verify_chunk(struct format_blob_ctx *ctx, const void *blob, size_t len,
                            const uint8_t digest[32], uint64_t size);

/* The server's whole acceptance of an uploaded chunk: format_blob_verify_chunk
 * and then format_blob_set_crc, fused into one pass over the payload for
 * uncompressed chunks. Returns the blob kind or an error of verify_chunk. */
int format_blob_accept_chunk(struct format_blob_ctx *ctx, void *blob, size_t len,
                            const uint8_t digest[32], uint64_t size);

#endif
