/* core_digest.h: SHA-256 and hex helpers.
 *
 * Backed by OpenSSL's libcrypto, which uses the SHA-NI instructions: the chunk
 * path hashes every byte, so this is the one place bulk hashing goes through.
 */
#ifndef CORE_DIGEST_H
#define CORE_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define CORE_SHA256_LEN 32
#define CORE_SHA256_HEX_LEN 64

struct core_sha256 {
  void *ctx; /* EVP_MD_CTX, owned */
};

void core_sha256(const void *data, size_t len, uint8_t out[CORE_SHA256_LEN]);
void core_sha256_init(struct core_sha256 *h);
void core_sha256_update(struct core_sha256 *h, const void *data, size_t len);
/* Makes `dst` an independent copy of the running state of `src`. */
void core_sha256_clone(const struct core_sha256 *src, struct core_sha256 *dst);
/* Finishes and frees the context. */
void core_sha256_final(struct core_sha256 *h, uint8_t out[CORE_SHA256_LEN]);

/* CRC-32 as zlib and gzip compute it (reflected 0xEDB88320, PBS's blob CRC):
 * crc = core_crc32(0, data, len), or continue with a previous value. Backed
 * by ISA-L's carry-less-multiply code, about 5 times zlib's speed here. */
uint32_t core_crc32(uint32_t crc, const void *data, size_t len);

/* HMAC-SHA256. */
void core_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                      uint8_t out[CORE_SHA256_LEN]);

/* The value of one hex digit (either case), or -1. */
int core_hex_digit(int c);
/* Writes 2*len lowercase hex characters and a NUL into `out`. */
void core_hex_encode(const uint8_t *in, size_t len, char *out);
/* Decodes exactly 2*len hex characters (either case); 0 or CORE_EPARSE. */
int core_hex_decode(const char *in, size_t len, uint8_t *out);
/* True if `s` is exactly 64 lowercase hex characters. */
int core_is_digest_hex(const char *s);

/* Fills `buf` with cryptographically random bytes; 0 or CORE_ECRYPTO (the
 * generator failed). */
int core_random(void *buf, size_t len);

/* Constant-time comparison; returns 1 if equal. */
int core_ct_equal(const void *a, const void *b, size_t len);

#endif
