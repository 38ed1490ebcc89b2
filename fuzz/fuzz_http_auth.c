/* fuzz_http_auth.c: the Authorization header against a token table.
 *
 * Input: NUL-separated stored value and Authorization header. The table
 * holds a real root token (secret "s3cret", so seeds can authenticate),
 * plus "fuzz@pbs!t" whose stored "sha256$SALT$HASH" string is the fuzzed
 * one: a hand-edited or corrupted token.shadow line. Checked: success only
 * for a header that starts with the PBSAPIToken prefix and names a token in
 * the table; the identity written fits the buffer and is that token id. */
#include "fuzz.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "http/http_auth.h"

/* "sha256$" salt "$" SHA-256(salt || "s3cret") in hex. */
#define ROOT_STORED                                                                  \
  "sha256$0011223344556677$93dd456cd213402d1c9318259ad9cb64b9cc8f49ff3d1a8c9f9a0db4a3e5151c"
#define FUZZ_TOKEN "fuzz@pbs!t"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct fuzz_fields ff;
  fuzz_split(&ff, data, size);
  struct http_auth a;
  core_map_init(&a.tokens);
  a.shadow_path = NULL;
  core_map_put(&a.tokens, HTTP_AUTH_ROOT_TOKEN, core_strdup(ROOT_STORED));
  core_map_put(&a.tokens, FUZZ_TOKEN, core_strdup(ff.f[0]));

  /* The size http_request gives it, and a small one. */
  size_t lens[2] = {128, 8};
  for (int i = 0; i < 2; i++) {
    char *authid = malloc(lens[i]);
    const char *header = ff.n > 1 ? ff.f[1] : NULL;
    int rc = http_auth_check(&a, header, authid, lens[i]);
    FUZZ_ASSERT(rc == 0 || rc == CORE_EPARSE || rc == CORE_ENOTFOUND || rc == CORE_EFORMAT);
    if (rc == 0) {
      FUZZ_ASSERT(header != NULL && strncmp(header, "PBSAPIToken", 11) == 0);
      FUZZ_ASSERT(strlen(authid) < lens[i]);
      FUZZ_ASSERT(core_map_get(&a.tokens, authid) != NULL);
      FUZZ_ASSERT(strncmp(header + 12, authid, strlen(authid)) == 0);
    }
    free(authid);
  }
  http_auth_free(&a);
  fuzz_fields_free(&ff);
  return 0;
}
