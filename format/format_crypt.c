#include "format/format_crypt.h"

#include "core/core_digest.h"
#include "core/core_error.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>

#define FP_STRING "Proxmox Backup Encryption Key Fingerprint"
/* PBS derives id_key with exactly this salt and round count; chunk names of
 * encrypted backups depend on both, so they are format constants. */
#define ID_KEY_SALT "_id_key"
#define ID_KEY_ROUNDS 10
/* Memory cap for scrypt: PBS allows 1025 MiB, enough for N=2^20, r=8. */
#define SCRYPT_MAXMEM (1025ull * 1024 * 1024)

int format_crypt_init(struct format_crypt *c, const uint8_t key[FORMAT_CRYPT_KEY_LEN])
{
  uint8_t fp_input[CORE_SHA256_LEN];

  memcpy(c->enc_key, key, FORMAT_CRYPT_KEY_LEN);
  if (PKCS5_PBKDF2_HMAC((const char *)key, FORMAT_CRYPT_KEY_LEN,
                        (const unsigned char *)ID_KEY_SALT, sizeof(ID_KEY_SALT) - 1,
                        ID_KEY_ROUNDS, EVP_sha256(), FORMAT_CRYPT_KEY_LEN, c->id_key) != 1) {
    format_crypt_clear(c);
    return CORE_ECRYPTO;
  }
  core_sha256(FP_STRING, sizeof(FP_STRING) - 1, fp_input);
  format_crypt_chunk_digest(c, fp_input, sizeof(fp_input), c->fingerprint);
  return 0;
}

void format_crypt_clear(struct format_crypt *c)
{
  OPENSSL_cleanse(c, sizeof(*c));
}

void format_crypt_chunk_digest(const struct format_crypt *c, const void *data, size_t len,
                              uint8_t out[32])
{
  struct core_sha256 h;

  if (c == NULL) {
    core_sha256(data, len, out);
    return;
  }
  /* The key goes last: appending a secret defeats length extension, which a
   * prefix would not. */
  core_sha256_init(&h);
  core_sha256_update(&h, data, len);
  core_sha256_update(&h, c->id_key, sizeof(c->id_key));
  core_sha256_final(&h, out);
}

void format_crypt_auth_tag(const struct format_crypt *c, const void *data, size_t len,
                          uint8_t out[32])
{
  core_hmac_sha256(c->id_key, sizeof(c->id_key), data, len, out);
}

void format_crypt_fingerprint_str(const uint8_t fp[32], char out[FORMAT_CRYPT_FP_STR_LEN])
{
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    out[3 * i] = hex[fp[i] >> 4];
    out[3 * i + 1] = hex[fp[i] & 15];
    out[3 * i + 2] = i == 31 ? '\0' : ':';
  }
}

int format_crypt_fingerprint_parse(const char *s, uint8_t fp[32])
{
  if (strlen(s) != FORMAT_CRYPT_FP_STR_LEN - 1)
    return CORE_EPARSE;
  for (int i = 0; i < 32; i++) {
    if (i < 31 && s[3 * i + 2] != ':')
      return CORE_EPARSE;
    if (core_hex_decode(s + 3 * i, 1, fp + i) < 0)
      return CORE_EPARSE;
  }
  return 0;
}

/* EVP works in int-sized steps; blobs stay far below INT_MAX, but loop anyway
 * so a future bigger caller cannot truncate silently. */
static int gcm_update(EVP_CIPHER_CTX *ctx, int enc, const uint8_t *in, size_t len,
                      uint8_t *out)
{
  while (len > 0) {
    int step = len > (size_t)INT_MAX / 2 ? INT_MAX / 2 : (int)len;
    int n = 0;
    int ok = enc ? EVP_EncryptUpdate(ctx, out, &n, in, step)
                 : EVP_DecryptUpdate(ctx, out, &n, in, step);
    if (!ok || n != step)
      return CORE_ECRYPTO;
    in += step;
    out += step;
    len -= (size_t)step;
  }
  return 0;
}

static int gcm_run(int enc, const uint8_t key[32], const uint8_t iv[16], const void *in,
                   size_t len, void *out, uint8_t tag[16], void *cipher_ctx)
{
  EVP_CIPHER_CTX *ctx = cipher_ctx;
  uint8_t final[16];
  int n = 0;
  int rc = CORE_ECRYPTO;

  if (ctx == NULL) {
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL)
      return CORE_ECRYPTO;
  }
  /* Set the cipher first, then the 16-byte IV length, then key and IV. */
  if (!EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc))
    goto out;
  if (!EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, FORMAT_CRYPT_IV_LEN, NULL))
    goto out;
  if (!EVP_CipherInit_ex(ctx, NULL, NULL, key, iv, enc))
    goto out;
  if (gcm_update(ctx, enc, in, len, out) < 0)
    goto out;
  if (enc) {
    if (!EVP_EncryptFinal_ex(ctx, final, &n))
      goto out;
    if (!EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, FORMAT_CRYPT_TAG_LEN, tag))
      goto out;
  } else {
    if (!EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, FORMAT_CRYPT_TAG_LEN, tag))
      goto out;
    if (EVP_DecryptFinal_ex(ctx, final, &n) != 1)
      goto out;
  }
  rc = 0;
out:
  if (ctx != cipher_ctx)
    EVP_CIPHER_CTX_free(ctx);
  return rc;
}

int format_crypt_gcm_encrypt(const uint8_t key[32], const uint8_t iv[16], const void *in,
                            size_t len, void *out, uint8_t tag[16], void *cipher_ctx)
{
  return gcm_run(1, key, iv, in, len, out, tag, cipher_ctx);
}

int format_crypt_gcm_decrypt(const uint8_t key[32], const uint8_t iv[16], const void *in,
                            size_t len, void *out, const uint8_t tag[16], void *cipher_ctx)
{
  uint8_t t[16];
  memcpy(t, tag, sizeof(t)); /* EVP's ctrl takes a non-const pointer */
  return gcm_run(0, key, iv, in, len, out, t, cipher_ctx);
}

int format_crypt_scrypt(const void *pass, size_t pass_len, const void *salt, size_t salt_len,
                       uint64_t n, uint64_t r, uint64_t p, uint8_t out[32])
{
  if (n < 2 || (n & (n - 1)) != 0 || r == 0 || p == 0)
    return CORE_EINVAL;
  /* scrypt needs about 128 * r * (N + p) bytes; refuse early what the cap
   * would refuse anyway, without overflowing. */
  if (r > 1024 || p > 1024 || n > SCRYPT_MAXMEM / 128 / r)
    return CORE_EINVAL;
  if (EVP_PBE_scrypt(pass, pass_len, salt, salt_len, n, r, p, SCRYPT_MAXMEM, out, 32) != 1)
    return CORE_ECRYPTO;
  return 0;
}

int format_crypt_pbkdf2(const void *pass, size_t pass_len, const void *salt, size_t salt_len,
                       uint64_t iter, uint8_t out[32])
{
  if (iter == 0 || iter > INT_MAX || pass_len > INT_MAX || salt_len > INT_MAX)
    return CORE_EINVAL;
  if (PKCS5_PBKDF2_HMAC(pass, (int)pass_len, salt, (int)salt_len, (int)iter, EVP_sha256(),
                        32, out) != 1)
    return CORE_ECRYPTO;
  return 0;
}
