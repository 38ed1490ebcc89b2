/* fuzz_s3_sigv4.c: libFuzzer target for SigV4 canonicalisation.
 * Input: NUL-separated fields method, uri, query, header names and values.
 * Signing must succeed or fail cleanly; the canonical query must be a fixed
 * point (canonicalising it again gives the same string), and URI encoding
 * must only emit unreserved bytes, '/' and %XX. */
#include "core/core_buf.h"
#include "s3/s3_sigv4.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *buf = malloc(size + 1);
  memcpy(buf, data, size);
  buf[size] = '\0';
  const char *f[12] = {0};
  size_t nf = 0;
  char *p = buf;
  while (nf < 12 && p <= buf + size) {
    f[nf++] = p;
    p += strlen(p) + 1;
  }
  struct core_buf a, b, e;
  core_buf_init(&a, 1 << 20);
  core_buf_init(&b, 1 << 20);
  core_buf_init(&e, 1 << 22);
  if (nf > 2 && s3_sigv4_canonical_query(f[2], &a) == 0) {
    if (s3_sigv4_canonical_query(a.base ? a.base : "", &b) != 0 ||
        strcmp(a.base ? a.base : "", b.base ? b.base : "") != 0)
      abort();
  }
  if (nf > 1 && s3_uri_encode(&e, f[1], strlen(f[1]), 1) == 0) {
    for (size_t i = 0; i < e.len; i++) {
      char c = e.base[i];
      if (c == '%') {
        if (i + 2 >= e.len)
          abort();
        i += 2;
      } else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   strchr("-._~/", c))) {
        abort();
      }
    }
  }
  struct s3_sigv4_header hs[4];
  size_t nh = 0;
  for (size_t i = 3; i + 1 < nf && nh < 4; i += 2)
    hs[nh++] = (struct s3_sigv4_header){f[i], f[i + 1]};
  struct s3_sigv4_input in = {
      .method = nf > 0 ? f[0] : "GET", .uri = nf > 1 && f[1][0] == '/' ? f[1] : "/",
      .query = nf > 2 ? f[2] : NULL, .headers = hs, .n_headers = nh,
      .payload_hash = S3_SIGV4_EMPTY_HASH, .amz_date = "20250101T000000Z",
      .region = "us-east-1", .access_key = "AK", .secret_key = "SK",
  };
  core_buf_reset(&a);
  s3_sigv4_authorization(&in, &a);
  core_buf_free(&a);
  core_buf_free(&b);
  core_buf_free(&e);
  free(buf);
  return 0;
}
