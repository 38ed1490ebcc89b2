/* access_secret.c: token secrets, password hashes, tickets and CSRF tokens.
 *
 * Token secrets are 128 random bits, so a salted SHA-256 is as good as a
 * slow hash and keeps the per-request check cheap enough for the loop.
 * Passwords are human-chosen, so they get yescrypt through libxcrypt
 * (crypt_r); that costs tens of milliseconds on purpose and runs in the
 * pool. Tickets and CSRF tokens are HMAC-SHA256 over PBS's text formats
 * with a key kept in the config directory, so they survive restarts and
 * any number of cairnd processes sharing the directory accept each other's.
 * Every comparison of secret material is constant-time.
 */
#include "access/access.h"

#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_file.h"

#include <crypt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define SALT_BYTES 8
#define SECRET_MAX 256

/* ---- API token secrets ---- */

static void token_hash(const char *salt, const char *secret, char hex[65])
{
  struct core_sha256 h;
  uint8_t d[CORE_SHA256_LEN];
  core_sha256_init(&h);
  core_sha256_update(&h, salt, strlen(salt));
  core_sha256_update(&h, secret, strlen(secret));
  core_sha256_final(&h, d);
  core_hex_encode(d, sizeof(d), hex);
}

static int crypt_check(const char *stored, const char *secret)
{
  struct crypt_data *cd = core_calloc(1, sizeof(*cd));
  const char *out = crypt_r(secret, stored, cd);
  int rc;
  if (out == NULL || out[0] == '*')
    rc = CORE_EFORMAT;
  else
    rc = strlen(out) == strlen(stored) && core_ct_equal(out, stored, strlen(out));
  explicit_bzero(cd, sizeof(*cd));
  core_free(cd);
  return rc;
}

int access_token_verify(const char *stored, const char *secret, int allow_crypt)
{
  if (strlen(secret) > SECRET_MAX)
    return 0;
  if (strncmp(stored, "sha256$", 7) != 0)
    return allow_crypt && stored[0] == '$' ? crypt_check(stored, secret) : CORE_EFORMAT;
  const char *salt = stored + 7;
  const char *dollar = strchr(salt, '$');
  if (dollar == NULL || strlen(dollar + 1) != 64 || dollar - salt > 64)
    return CORE_EFORMAT;
  char saltbuf[65], hash[65];
  memcpy(saltbuf, salt, (size_t)(dollar - salt));
  saltbuf[dollar - salt] = '\0';
  token_hash(saltbuf, secret, hash);
  return core_ct_equal(hash, dollar + 1, 64);
}

int access_token_new(char **secret, char **stored)
{
  uint8_t raw[16], salt_raw[SALT_BYTES];
  char hex[33], salt[2 * SALT_BYTES + 1], hash[65];
  int rc = core_random(raw, sizeof(raw));
  if (rc == 0)
    rc = core_random(salt_raw, sizeof(salt_raw));
  if (rc)
    return rc;
  core_hex_encode(raw, sizeof(raw), hex);
  char *sec = core_asprintf("%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16,
                            hex + 20);
  core_hex_encode(salt_raw, sizeof(salt_raw), salt);
  token_hash(salt, sec, hash);
  *stored = core_asprintf("sha256$%s$%s", salt, hash);
  *secret = sec;
  explicit_bzero(raw, sizeof(raw));
  explicit_bzero(hex, sizeof(hex));
  return 0;
}

int access_token_hash(const char *secret, char **stored)
{
  uint8_t salt_raw[SALT_BYTES];
  char salt[2 * SALT_BYTES + 1], hash[65];
  int rc = core_random(salt_raw, sizeof(salt_raw));
  if (rc)
    return rc;
  core_hex_encode(salt_raw, sizeof(salt_raw), salt);
  token_hash(salt, secret, hash);
  *stored = core_asprintf("sha256$%s$%s", salt, hash);
  return 0;
}

/* ---- passwords ---- */

int access_password_hash(const char *password, char **hash)
{
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  if (crypt_gensalt_rn("$y$", 0, NULL, 0, setting, sizeof(setting)) == NULL)
    return CORE_ECRYPTO;
  struct crypt_data *cd = core_calloc(1, sizeof(*cd));
  const char *out = crypt_r(password, setting, cd);
  int rc = 0;
  if (out == NULL || out[0] == '*')
    rc = CORE_ECRYPTO;
  else
    *hash = core_strdup(out);
  explicit_bzero(cd, sizeof(*cd));
  core_free(cd);
  return rc;
}

int access_password_verify(const char *stored, const char *password, int *rehash)
{
  if (stored[0] != '$')
    return CORE_EFORMAT;
  int rc = crypt_check(stored, password);
  if (rc == 1 && rehash)
    *rehash = strncmp(stored, "$y$", 3) != 0;
  return rc;
}

/* ---- the ticket key ---- */

int access_key_load(const char *config_dir, uint8_t key[ACCESS_KEY_LEN])
{
  char *path = core_asprintf("%s/ticket.key", config_dir);
  uint8_t *data = NULL;
  size_t len = 0;
  int rc = core_file_read(path, 4096, &data, &len);
  if (rc == 0 && len == 2 * ACCESS_KEY_LEN + 1 && data[len - 1] == '\n') {
    rc = core_hex_decode((const char *)data, ACCESS_KEY_LEN, key);
  } else if (rc == CORE_ENOTFOUND || rc == UV_ENOENT) {
    char hex[2 * ACCESS_KEY_LEN + 2];
    rc = core_random(key, ACCESS_KEY_LEN);
    if (rc == 0) {
      core_hex_encode(key, ACCESS_KEY_LEN, hex);
      hex[2 * ACCESS_KEY_LEN] = '\n';
      rc = core_file_replace(path, hex, 2 * ACCESS_KEY_LEN + 1, 0600, 1);
      explicit_bzero(hex, sizeof(hex));
    }
  } else if (rc == 0) {
    rc = CORE_EFORMAT;
  }
  if (data) {
    explicit_bzero(data, len);
    core_free(data);
  }
  core_free(path);
  return rc;
}

/* ---- tickets and CSRF tokens ---- */

static void mac_hex(const uint8_t key[ACCESS_KEY_LEN], const char *domain, const char *msg,
                    char hex[65])
{
  /* The domain keeps a CSRF token from ever passing as a ticket signature. */
  char buf[ACCESS_TICKET_MAX + 16];
  int n = snprintf(buf, sizeof(buf), "%s\n%s", domain, msg);
  uint8_t mac[CORE_SHA256_LEN];
  core_hmac_sha256(key, ACCESS_KEY_LEN, buf, n > 0 ? (size_t)n : 0, mac);
  core_hex_encode(mac, sizeof(mac), hex);
}

static int time_ok(int64_t t, int64_t now)
{
  return t <= now + ACCESS_TICKET_SKEW && now - t < ACCESS_TICKET_LIFETIME;
}

int access_ticket_sign(const uint8_t key[ACCESS_KEY_LEN], const char *userid, int64_t now,
                       char *buf, size_t len)
{
  char msg[ACCESS_TICKET_MAX];
  int n = snprintf(msg, sizeof(msg), "PBS:%s:%08" PRIX64, userid, (uint64_t)now);
  if (n < 0 || (size_t)n >= sizeof(msg) - 70)
    return CORE_ETOOBIG;
  char hex[65];
  mac_hex(key, "ticket", msg, hex);
  n = snprintf(buf, len, "%s::%s", msg, hex);
  return n < 0 || (size_t)n >= len ? CORE_ETOOBIG : 0;
}

/* Parses 8..16 hex digits. */
static int parse_hex_time(const char *s, size_t len, int64_t *out)
{
  if (len < 8 || len > 16)
    return CORE_EPARSE;
  uint64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0)
      return CORE_EPARSE;
    v = v << 4 | (uint64_t)d;
  }
  if (v > INT64_MAX)
    return CORE_EPARSE;
  *out = (int64_t)v;
  return 0;
}

int access_ticket_verify(const uint8_t key[ACCESS_KEY_LEN], const char *ticket, int64_t now,
                         char *userid, size_t len)
{
  size_t tlen = strlen(ticket);
  if (tlen >= ACCESS_TICKET_MAX || strncmp(ticket, "PBS:", 4) != 0)
    return CORE_EPARSE;
  const char *sep = strstr(ticket, "::");
  if (sep == NULL || strlen(sep + 2) != 64)
    return CORE_EPARSE;
  /* PBS:<userid>:<HEXTIME> */
  const char *user = ticket + 4;
  const char *colon = NULL;
  for (const char *p = sep - 1; p > user; p--)
    if (*p == ':') {
      colon = p;
      break;
    }
  if (colon == NULL)
    return CORE_EPARSE;
  int64_t t;
  if (parse_hex_time(colon + 1, (size_t)(sep - colon - 1), &t) < 0)
    return CORE_EPARSE;
  size_t ulen = (size_t)(colon - user);
  if (ulen == 0 || ulen >= len || ulen >= ACCESS_AUTHID_MAX)
    return CORE_EPARSE;
  char msg[ACCESS_TICKET_MAX];
  memcpy(msg, ticket, (size_t)(sep - ticket));
  msg[sep - ticket] = '\0';
  char hex[65];
  mac_hex(key, "ticket", msg, hex);
  if (!core_ct_equal(hex, sep + 2, 64))
    return CORE_ECRYPTO;
  if (!time_ok(t, now))
    return CORE_ETIMEOUT;
  memcpy(userid, user, ulen);
  userid[ulen] = '\0';
  if (!access_userid_valid(userid))
    return CORE_EPARSE;
  return 0;
}

int access_csrf_sign(const uint8_t key[ACCESS_KEY_LEN], const char *userid, int64_t now,
                     char *buf, size_t len)
{
  char msg[ACCESS_TICKET_MAX];
  int n = snprintf(msg, sizeof(msg), "%08" PRIX64 ":%s", (uint64_t)now, userid);
  if (n < 0 || (size_t)n >= sizeof(msg))
    return CORE_ETOOBIG;
  char hex[65];
  mac_hex(key, "csrf", msg, hex);
  n = snprintf(buf, len, "%08" PRIX64 ":%s", (uint64_t)now, hex);
  return n < 0 || (size_t)n >= len ? CORE_ETOOBIG : 0;
}

int access_csrf_verify(const uint8_t key[ACCESS_KEY_LEN], const char *userid,
                       const char *token, int64_t now)
{
  const char *colon = strchr(token, ':');
  if (colon == NULL || strlen(colon + 1) != 64)
    return CORE_EPARSE;
  int64_t t;
  if (parse_hex_time(token, (size_t)(colon - token), &t) < 0)
    return CORE_EPARSE;
  char msg[ACCESS_TICKET_MAX];
  int n = snprintf(msg, sizeof(msg), "%.*s:%s", (int)(colon - token), token, userid);
  if (n < 0 || (size_t)n >= sizeof(msg))
    return CORE_EPARSE;
  char hex[65];
  mac_hex(key, "csrf", msg, hex);
  if (!core_ct_equal(hex, colon + 1, 64))
    return CORE_ECRYPTO;
  return time_ok(t, now) ? 0 : CORE_ETIMEOUT;
}
