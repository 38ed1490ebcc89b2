#include "core/core_digest.h"

#include "core/core_error.h"

#include <isa-l/crc.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

void core_sha256(const void *data, size_t len, uint8_t out[CORE_SHA256_LEN])
{
  unsigned int n = CORE_SHA256_LEN;
  if (!EVP_Digest(data, len, out, &n, EVP_sha256(), NULL))
    abort();
}

void core_sha256_init(struct core_sha256 *h)
{
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (ctx == NULL || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
    abort();
  h->ctx = ctx;
}

void core_sha256_update(struct core_sha256 *h, const void *data, size_t len)
{
  if (!EVP_DigestUpdate(h->ctx, data, len))
    abort();
}

void core_sha256_clone(const struct core_sha256 *src, struct core_sha256 *dst)
{
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (ctx == NULL || !EVP_MD_CTX_copy_ex(ctx, src->ctx))
    abort();
  dst->ctx = ctx;
}

void core_sha256_final(struct core_sha256 *h, uint8_t out[CORE_SHA256_LEN])
{
  unsigned int n = CORE_SHA256_LEN;
  if (!EVP_DigestFinal_ex(h->ctx, out, &n))
    abort();
  EVP_MD_CTX_free(h->ctx);
  h->ctx = NULL;
}

uint32_t core_crc32(uint32_t crc, const void *data, size_t len)
{
  return crc32_gzip_refl(crc, data, len);
}

void core_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                      uint8_t out[CORE_SHA256_LEN])
{
  unsigned int n = CORE_SHA256_LEN;
  if (!HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &n))
    abort();
}

void core_hex_encode(const uint8_t *in, size_t len, char *out)
{
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < len; i++) {
    out[2 * i] = hex[in[i] >> 4];
    out[2 * i + 1] = hex[in[i] & 15];
  }
  out[2 * len] = '\0';
}

int core_hex_digit(int c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int core_hex_decode(const char *in, size_t len, uint8_t *out)
{
  for (size_t i = 0; i < len; i++) {
    int hi = core_hex_digit((unsigned char)in[2 * i]);
    int lo = hi < 0 ? -1 : core_hex_digit((unsigned char)in[2 * i + 1]);
    if (lo < 0)
      return CORE_EPARSE;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  return 0;
}

int core_is_digest_hex(const char *s)
{
  for (int i = 0; i < CORE_SHA256_HEX_LEN; i++) {
    char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return 0;
  }
  return s[CORE_SHA256_HEX_LEN] == '\0';
}

int core_random(void *buf, size_t len)
{
  return RAND_bytes(buf, (int)len) == 1 ? 0 : CORE_ECRYPTO;
}

int core_ct_equal(const void *a, const void *b, size_t len)
{
  const volatile uint8_t *x = a, *y = b;
  uint8_t d = 0;
  for (size_t i = 0; i < len; i++)
    d |= (uint8_t)(x[i] ^ y[i]);
  return d == 0;
}
