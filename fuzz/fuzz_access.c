/* fuzz_access.c: what a client or a hand edit can put in front of access
 * control: acl.cfg text, a stored token hash against a presented secret, a
 * PBS ticket (the PBSAuthCookie) and a CSRF token.
 *
 * Input: NUL-separated acl.cfg text, stored token hash, secret, ticket, CSRF
 * token. Checked: acl.cfg either fails with a message or round-trips (write,
 * parse again, write again: the same text); token checks answer match, no
 * match or bad format and never match a stored value that is not
 * "sha256$..." (crypt hashes are off here, as on the loop); a ticket or CSRF
 * token verifies only if it is exactly what signing gives for its user and
 * time, and a verified ticket names a valid user id. */
#include "fuzz.h"

#include "access/access.h"
#include "core/core_buf.h"
#include "core/core_error.h"

#include <stdio.h>

#define NOW 1700000000

static const uint8_t key[ACCESS_KEY_LEN] = {1, 2, 3, 4, 5, 6, 7, 8};

static void check_acl(const char *text, size_t len)
{
  struct access_acl acl, again;
  char err[256];
  access_acl_init(&acl);
  int rc = access_acl_parse(&acl, text, len, err, sizeof(err));
  FUZZ_ASSERT(rc == 0 || (rc == CORE_EPARSE && err[0] != '\0'));
  if (rc == 0) {
    struct core_buf a, b;
    core_buf_init(&a, (size_t)64 << 20);
    core_buf_init(&b, (size_t)64 << 20);
    FUZZ_ASSERT(access_acl_write(&acl, &a) == 0);
    access_acl_init(&again);
    FUZZ_ASSERT(access_acl_parse(&again, a.base ? a.base : "", a.len, err, sizeof(err)) == 0);
    FUZZ_ASSERT(access_acl_write(&again, &b) == 0);
    FUZZ_ASSERT(a.len == b.len && (a.len == 0 || memcmp(a.base, b.base, a.len) == 0));
    access_acl_free(&again);
    core_buf_free(&a);
    core_buf_free(&b);
  }
  access_acl_free(&acl);
}

static void check_token(const char *stored, const char *secret)
{
  int rc = access_token_verify(stored, secret, 0);
  FUZZ_ASSERT(rc == 0 || rc == 1 || rc == CORE_EFORMAT);
  if (rc == 1)
    FUZZ_ASSERT(strncmp(stored, "sha256$", 7) == 0);
}

static void check_ticket(const char *ticket, const char *csrf)
{
  char user[256], again[ACCESS_TICKET_MAX];
  int rc = access_ticket_verify(key, ticket, NOW, user, sizeof(user));
  FUZZ_ASSERT(rc == 0 || rc == CORE_EPARSE || rc == CORE_ECRYPTO || rc == CORE_ETIMEOUT);
  if (rc == 0) {
    FUZZ_ASSERT(access_userid_valid(user));
    /* Forging needs the key: only a ticket the server signed verifies. */
    unsigned long long t;
    const char *time_hex = ticket + 4 + strlen(user) + 1;
    FUZZ_ASSERT(sscanf(time_hex, "%llx", &t) == 1);
    FUZZ_ASSERT(access_ticket_sign(key, user, (int64_t)t, again, sizeof(again)) == 0);
    FUZZ_ASSERT(strcmp(again, ticket) == 0);
  }
  rc = access_csrf_verify(key, "root@pam", csrf, NOW);
  FUZZ_ASSERT(rc == 0 || rc == CORE_EPARSE || rc == CORE_ECRYPTO || rc == CORE_ETIMEOUT);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct fuzz_fields ff;
  fuzz_split(&ff, data, size);
  check_acl(ff.f[0], ff.len[0]);
  check_token(ff.f[1], ff.f[2]);
  check_ticket(ff.f[3], ff.f[4]);
  fuzz_fields_free(&ff);
  return 0;
}
