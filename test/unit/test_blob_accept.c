#include "unit.h"

#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "format/format_blob.h"

/* accept_chunk must leave exactly what verify_chunk + set_crc leave. */
UNIT_TEST(accept_equals_verify_then_set_crc)
{
  size_t n = 3 * 1024 * 1024 + 77;
  uint8_t *plain = core_malloc(n);
  for (size_t i = 0; i < n; i++)
    plain[i] = (uint8_t)(i * 2654435761u >> 13);
  uint8_t digest[32];
  core_sha256(plain, n, digest);
  for (int flags = 0; flags <= FORMAT_BLOB_COMPRESS; flags += FORMAT_BLOB_COMPRESS) {
    uint8_t *a, *b;
    size_t alen, blen;
    ASSERT(format_blob_encode_alloc(NULL, plain, n, flags, NULL, &a, &alen) >= 0);
    ASSERT(format_blob_encode_alloc(NULL, plain, n, flags, NULL, &b, &blen) >= 0);
    a[8] ^= 0xff; /* a client's wrong CRC is rewritten, as PBS does */
    b[8] ^= 0xff;
    int ka = format_blob_accept_chunk(NULL, a, alen, digest, n);
    int kb = format_blob_verify_chunk(NULL, b, blen, digest, n);
    ASSERT(ka >= 0 && ka == kb);
    ASSERT_OK(format_blob_set_crc(b, blen));
    ASSERT_EQ(alen, blen);
    ASSERT_MEM_EQ(a, b, alen);
    ASSERT_OK(format_blob_verify_crc(a, alen));
    uint8_t wrong[32];
    memcpy(wrong, digest, 32);
    wrong[31] ^= 1;
    ASSERT_EQ(format_blob_accept_chunk(NULL, a, alen, wrong, n), CORE_EDIGEST);
    ASSERT(format_blob_accept_chunk(NULL, a, alen, digest, n - 1) < 0);
    core_free(a);
    core_free(b);
  }
  core_free(plain);
}

UNIT_MAIN(UNIT_CASE(accept_equals_verify_then_set_crc))
