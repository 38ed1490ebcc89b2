/* format_crypt.h: the encryption key of a PBS-style client and what derives from it.
 *
 * DESIGN
 * A 32-byte AES-256 key ("enc_key") is all a client holds. From it come:
 * - id_key = PBKDF2-HMAC-SHA256(enc_key, "_id_key", 10 rounds, 32 bytes). It
 *   salts the digests of encrypted chunks, SHA-256(plaintext || id_key), so
 *   two keys never produce the same chunk names, and it is the HMAC key that
 *   signs manifests.
 * - the key fingerprint, SHA-256(FP_INPUT || id_key) with FP_INPUT =
 *   SHA-256("Proxmox Backup Encryption Key Fingerprint"): it identifies a key
 *   without revealing it, and is printed as 32 colon-separated hex bytes.
 * All of this is PBS's scheme, so PBS clients and Cairn agree on chunk names.
 *
 * Everything here is synchronous, pure CPU work on caller memory: call it from
 * a thread-pool job (or the client's own threads), never from the loop thread
 * for bulk data. A struct format_crypt is read-only after format_crypt_init and
 * may be shared between threads.
 */
#ifndef FORMAT_CRYPT_H
#define FORMAT_CRYPT_H

#include <stddef.h>
#include <stdint.h>

#define FORMAT_CRYPT_KEY_LEN 32
#define FORMAT_CRYPT_IV_LEN 16
#define FORMAT_CRYPT_TAG_LEN 16
/* "aa:bb:...": 32 bytes as hex pairs joined by ':' plus the NUL. */
#define FORMAT_CRYPT_FP_STR_LEN (32 * 3)

struct format_crypt {
  uint8_t enc_key[FORMAT_CRYPT_KEY_LEN];     /* the AES-256-GCM key */
  uint8_t id_key[FORMAT_CRYPT_KEY_LEN];      /* digest salt and HMAC key */
  uint8_t fingerprint[FORMAT_CRYPT_KEY_LEN]; /* identifies the key */
};

/* Derives id_key and the fingerprint. Returns 0 or CORE_ECRYPTO (libcrypto
 * failure, not expected). */
int format_crypt_init(struct format_crypt *c, const uint8_t key[FORMAT_CRYPT_KEY_LEN]);
/* Wipes the key material. */
void format_crypt_clear(struct format_crypt *c);

/* The digest that names a chunk: SHA-256(data) without a key (c == NULL),
 * SHA-256(data || id_key) with one. */
void format_crypt_chunk_digest(const struct format_crypt *c, const void *data, size_t len,
                              uint8_t out[32]);
/* HMAC-SHA256 keyed with id_key (manifest signatures). */
void format_crypt_auth_tag(const struct format_crypt *c, const void *data, size_t len,
                          uint8_t out[32]);

/* Formats 32 bytes as "aa:bb:..:ff" into `out` (FORMAT_CRYPT_FP_STR_LEN bytes). */
void format_crypt_fingerprint_str(const uint8_t fp[32], char out[FORMAT_CRYPT_FP_STR_LEN]);
/* Parses that form (either case). Returns 0 or CORE_EPARSE. */
int format_crypt_fingerprint_parse(const char *s, uint8_t fp[32]);

/* ---- AES-256-GCM as the blob format uses it: 16-byte IV, empty AAD, 16-byte tag ---- */

/* Encrypts `len` bytes from `in` to `out` (they may be the same buffer, not
 * otherwise overlapping). `cipher_ctx` is an optional EVP_CIPHER_CTX to reuse
 * (NULL: a temporary one). Returns 0 or CORE_ECRYPTO. */
int format_crypt_gcm_encrypt(const uint8_t key[32], const uint8_t iv[16], const void *in,
                            size_t len, void *out, uint8_t tag[16], void *cipher_ctx);
/* Decrypts and authenticates. Returns 0, or CORE_ECRYPTO when the tag does
 * not match (wrong key or tampered data); `out` is then garbage. */
int format_crypt_gcm_decrypt(const uint8_t key[32], const uint8_t iv[16], const void *in,
                            size_t len, void *out, const uint8_t tag[16], void *cipher_ctx);

/* ---- Key derivation from passphrases (key files) ---- */

/* scrypt(pass, salt, N, r, p) -> 32 bytes, through OpenSSL's EVP_PBE_scrypt with
 * a memory cap of about 1 GiB. Returns 0, CORE_EINVAL (N not a power of two
 * or parameters over the cap) or CORE_ECRYPTO. Slow on purpose: ~0.1-0.3 s
 * and 64 MiB at N=65536, r=8. */
int format_crypt_scrypt(const void *pass, size_t pass_len, const void *salt, size_t salt_len,
                       uint64_t n, uint64_t r, uint64_t p, uint8_t out[32]);
/* PBKDF2-HMAC-SHA256(pass, salt, iter) -> 32 bytes. 0 or CORE_EINVAL/CORE_ECRYPTO. */
int format_crypt_pbkdf2(const void *pass, size_t pass_len, const void *salt, size_t salt_len,
                       uint64_t iter, uint8_t out[32]);

#endif
