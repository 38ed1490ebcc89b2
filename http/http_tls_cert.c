/* http_tls_cert.c: certificate and key files for http_tls (see
 * http_tls_cert.h for how the TLS code is split).
 *
 * Generation writes every file atomically (a temporary file, fsync, then
 * link or rename, then fsync of the directory), so a crash never leaves a
 * half-written key or certificate that a restart would refuse to load.
 */
#include "http/http_tls_cert.h"

#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_file.h"

#include <mbedtls/asn1write.h>
#include <mbedtls/ecp.h>
#include <mbedtls/oid.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/x509_crt.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TLS_SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"

/* ---- fingerprints ------------------------------------------------------- */

void http_tls__fingerprint_format(const uint8_t *der, size_t len, char out[HTTP_TLS_FP_LEN])
{
  static const char hex[] = "0123456789abcdef";
  uint8_t md[CORE_SHA256_LEN];
  core_sha256(der, len, md);
  for (size_t i = 0; i < CORE_SHA256_LEN; i++) {
    out[i * 3] = hex[md[i] >> 4];
    out[i * 3 + 1] = hex[md[i] & 15];
    out[i * 3 + 2] = ':';
  }
  out[HTTP_TLS_FP_LEN - 1] = '\0';
}

int http_tls__fingerprint_parse(const char *text, uint8_t out[CORE_SHA256_LEN])
{
  char hex[CORE_SHA256_HEX_LEN];
  size_t n = 0;
  for (const char *p = text; *p; p++) {
    if (*p == ':')
      continue;
    if (n == sizeof(hex))
      return CORE_ECONFIG;
    hex[n++] = *p;
  }
  if (n != sizeof(hex) || core_hex_decode(hex, CORE_SHA256_LEN, out) != 0)
    return CORE_ECONFIG;
  return 0;
}

/* ---- files -------------------------------------------------------------- */

static int fsync_parent(const char *path)
{
  const char *slash = strrchr(path, '/');
  char *dir = slash ? core_strndup(path, slash == path ? 1 : (size_t)(slash - path))
                    : core_strdup(".");
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  core_free(dir);
  if (fd < 0)
    return -errno;
  int rc = fsync(fd) ? -errno : 0;
  close(fd);
  return rc;
}

/* Writes `data` to a fresh temporary file beside `path` with `mode`, then
 * puts it in place: `exclusive` links it (fails with -EEXIST rather than
 * replace a key someone else made), otherwise renames over `path`. A crash
 * leaves either the old state or the whole new file, never a partial one. */
static int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                             int exclusive)
{
  uint8_t rnd[6];
  char suffix[sizeof(rnd) * 2 + 1];
  int rc = core_random(rnd, sizeof(rnd));
  if (rc < 0)
    return rc;
  core_hex_encode(rnd, sizeof(rnd), suffix);
  char *tmp = core_asprintf("%s.tmp-%s", path, suffix);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    rc = -errno;
    goto out;
  }
  if ((rc = core_file_write_all(fd, data, len)) < 0)
    goto fail_fd;
  if (fsync(fd) != 0) {
    rc = -errno;
    goto fail_fd;
  }
  if (close(fd) != 0) {
    fd = -1;
    rc = -errno;
    goto fail_tmp;
  }
  fd = -1;
  if (exclusive) {
    if (link(tmp, path) != 0) {
      rc = -errno;
      goto fail_tmp;
    }
    unlink(tmp);
  } else if (rename(tmp, path) != 0) {
    rc = -errno;
    goto fail_tmp;
  }
  rc = fsync_parent(path);
  goto out;

fail_fd:
  close(fd);
fail_tmp:
  unlink(tmp);
out:
  core_free(tmp);
  return rc;
}

static int file_exists(const char *path)
{
  struct stat st;
  if (stat(path, &st) == 0)
    return 1;
  return errno == ENOENT ? 0 : -errno;
}

/* ---- key and certificate generation ------------------------------------- */

/* mbedTLS 2.28's DN parser takes "CN=value" and only knows the escape "\,";
 * a CN is at most 64 characters (RFC 5280 ub-common-name). */
static int cn_to_subject(const char *cn, char *out, size_t size)
{
  size_t n = strlen(cn), o = 0;
  if (n == 0 || n > 64)
    return CORE_ECONFIG;
  o = (size_t)snprintf(out, size, "CN=");
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)cn[i];
    if (c < 0x20 || c == 0x7f || c == '\\')
      return CORE_ECONFIG;
    if (o + 3 >= size)
      return CORE_ECONFIG;
    if (c == ',')
      out[o++] = '\\';
    out[o++] = (char)c;
  }
  out[o] = '\0';
  return 0;
}

static int is_dns_name(const char *s)
{
  size_t n = strlen(s);
  if (n == 0 || n > 253)
    return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '.'))
      return 0;
  }
  return 1;
}

/* Prepends one GeneralName ([tag] IMPLICIT) to the DER being built
 * backwards at *p; returns the bytes added or an mbedTLS error. */
static int san_prepend(unsigned char **p, unsigned char *start, int tag,
                       const void *data, size_t len)
{
  int ret;
  size_t n = 0;
  MBEDTLS_ASN1_CHK_ADD(n, mbedtls_asn1_write_raw_buffer(p, start, data, len));
  MBEDTLS_ASN1_CHK_ADD(n, mbedtls_asn1_write_len(p, start, len));
  MBEDTLS_ASN1_CHK_ADD(n, mbedtls_asn1_write_tag(p, start,
                                                 MBEDTLS_ASN1_CONTEXT_SPECIFIC | tag));
  return (int)n;
}

/* subjectAltName: the CN itself (as a DNS name or an IP), localhost,
 * 127.0.0.1 and ::1, so clients that check names (curl, Python) accept the
 * certificate on loopback once they trust it. mbedTLS 2.28 has no SAN
 * writer, so the extension is built by hand. */
static int cert_add_san(mbedtls_x509write_cert *crt, const char *cn)
{
  unsigned char buf[512];
  unsigned char *p = buf + sizeof(buf);
  static const uint8_t v4_loop[4] = {127, 0, 0, 1};
  static const uint8_t v6_loop[16] = {[15] = 1};
  uint8_t ip[16];
  size_t len = 0;
  int ret;

  MBEDTLS_ASN1_CHK_ADD(len, san_prepend(&p, buf, 7, v6_loop, sizeof(v6_loop)));
  MBEDTLS_ASN1_CHK_ADD(len, san_prepend(&p, buf, 7, v4_loop, sizeof(v4_loop)));
  MBEDTLS_ASN1_CHK_ADD(len, san_prepend(&p, buf, 2, "localhost", 9));
  if (inet_pton(AF_INET, cn, ip) == 1) {
    if (memcmp(ip, v4_loop, 4) != 0)
      MBEDTLS_ASN1_CHK_ADD(len, san_prepend(&p, buf, 7, ip, 4));
  } else if (inet_pton(AF_INET6, cn, ip) == 1) {
    if (memcmp(ip, v6_loop, 16) != 0)
      MBEDTLS_ASN1_CHK_ADD(len, san_prepend(&p, buf, 7, ip, 16));
  } else if (is_dns_name(cn) && strcasecmp(cn, "localhost") != 0) {
    MBEDTLS_ASN1_CHK_ADD(len, san_prepend(&p, buf, 2, cn, strlen(cn)));
  }
  MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, len));
  MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(&p, buf,
                                                   MBEDTLS_ASN1_CONSTRUCTED |
                                                   MBEDTLS_ASN1_SEQUENCE));
  return mbedtls_x509write_crt_set_extension(crt, MBEDTLS_OID_SUBJECT_ALT_NAME,
                                             MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME),
                                             0, p, len);
}

static int cert_add_eku_server(mbedtls_x509write_cert *crt)
{
  unsigned char buf[32];
  unsigned char *p = buf + sizeof(buf);
  size_t len = 0;
  int ret;
  MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_oid(&p, buf, MBEDTLS_OID_SERVER_AUTH,
                                                   MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH)));
  MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, len));
  MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(&p, buf,
                                                   MBEDTLS_ASN1_CONSTRUCTED |
                                                   MBEDTLS_ASN1_SEQUENCE));
  return mbedtls_x509write_crt_set_extension(crt, MBEDTLS_OID_EXTENDED_KEY_USAGE,
                                             MBEDTLS_OID_SIZE(MBEDTLS_OID_EXTENDED_KEY_USAGE),
                                             0, p, len);
}

static void validity_string(time_t when, int add_years, char out[16])
{
  struct tm tm;
  gmtime_r(&when, &tm);
  tm.tm_year += add_years;
  if (add_years && tm.tm_mon == 1 && tm.tm_mday == 29)
    tm.tm_mday = 28;
  strftime(out, 16, "%Y%m%d%H%M%S", &tm);
}

static int make_key(mbedtls_ctr_drbg_context *drbg, const char *key_path)
{
  mbedtls_pk_context key;
  unsigned char pem[1024];
  int rc = CORE_ETLS;
  mbedtls_pk_init(&key);
  if (mbedtls_pk_setup(&key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) != 0 ||
      mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(key),
                          mbedtls_ctr_drbg_random, drbg) != 0 ||
      mbedtls_pk_write_key_pem(&key, pem, sizeof(pem)) != 0)
    goto out;
  rc = write_file_atomic(key_path, pem, strlen((char *)pem), 0600, 1);
out:
  mbedtls_platform_zeroize(pem, sizeof(pem));
  mbedtls_pk_free(&key);
  return rc;
}

/* A self-signed v3 certificate for the key at key_path. */
static int make_cert(mbedtls_ctr_drbg_context *drbg, const char *cert_path,
                     const char *key_path, const char *cn)
{
  mbedtls_x509write_cert crt;
  mbedtls_pk_context key;
  mbedtls_mpi serial;
  unsigned char rnd[16];
  unsigned char pem[4096];
  char subject[256], not_before[16], not_after[16];
  int rc;

  rc = cn_to_subject(cn, subject, sizeof(subject));
  if (rc < 0)
    return rc;
  mbedtls_x509write_crt_init(&crt);
  mbedtls_pk_init(&key);
  mbedtls_mpi_init(&serial);
  rc = CORE_ECERT;
  if (mbedtls_pk_parse_keyfile(&key, key_path, NULL) != 0)
    goto out;
  rc = CORE_ETLS;
  /* 16 random bytes, positive and never zero, as RFC 5280 asks. */
  if (mbedtls_ctr_drbg_random(drbg, rnd, sizeof(rnd)) != 0)
    goto out;
  rnd[0] = (unsigned char)((rnd[0] & 0x7f) | 0x40);
  if (mbedtls_mpi_read_binary(&serial, rnd, sizeof(rnd)) != 0)
    goto out;
  time_t now = time(NULL);
  validity_string(now - 24 * 3600, 0, not_before);
  validity_string(now, 10, not_after);

  mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
  mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
  mbedtls_x509write_crt_set_subject_key(&crt, &key);
  mbedtls_x509write_crt_set_issuer_key(&crt, &key);
  if (mbedtls_x509write_crt_set_subject_name(&crt, subject) != 0 ||
      mbedtls_x509write_crt_set_issuer_name(&crt, subject) != 0 ||
      mbedtls_x509write_crt_set_serial(&crt, &serial) != 0 ||
      mbedtls_x509write_crt_set_validity(&crt, not_before, not_after) != 0 ||
      mbedtls_x509write_crt_set_basic_constraints(&crt, 0, -1) != 0 ||
      mbedtls_x509write_crt_set_subject_key_identifier(&crt) != 0 ||
      mbedtls_x509write_crt_set_authority_key_identifier(&crt) != 0 ||
      mbedtls_x509write_crt_set_key_usage(&crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE) != 0 ||
      cert_add_eku_server(&crt) != 0 || cert_add_san(&crt, cn) != 0)
    goto out;
  if (mbedtls_x509write_crt_pem(&crt, pem, sizeof(pem), mbedtls_ctr_drbg_random, drbg) != 0)
    goto out;
  rc = write_file_atomic(cert_path, pem, strlen((char *)pem), 0644, 0);
out:
  mbedtls_mpi_free(&serial);
  mbedtls_pk_free(&key);
  mbedtls_x509write_crt_free(&crt);
  return rc;
}

/* ---- the files of a context --------------------------------------------- */

int http_tls__cert_prepare(const char *cert_path, const char *key_path, int create,
                           const char *cn, mbedtls_ctr_drbg_context *drbg)
{
  int rc, have_cert, have_key;

  have_cert = file_exists(cert_path);
  have_key = file_exists(key_path);
  if (have_cert < 0 || have_key < 0)
    return have_cert < 0 ? have_cert : have_key;
  if (!have_cert && create) {
    /* Refuse a bad name before a key is made for it. */
    char subject[256];
    rc = cn_to_subject(cn, subject, sizeof(subject));
    if (rc < 0)
      return rc;
  }
  if (!have_key) {
    /* A certificate without its key is useless, and is never replaced. */
    if (!create || have_cert)
      return -ENOENT;
    rc = make_key(drbg, key_path);
    if (rc < 0)
      return rc;
  }
  if (!have_cert) {
    if (!create)
      return -ENOENT;
    rc = make_cert(drbg, cert_path, key_path, cn);
    if (rc < 0)
      return rc;
  }
  return 0;
}

int http_tls__cert_load(const char *cert_path, const char *key_path, mbedtls_x509_crt *certs,
                        mbedtls_pk_context *key, char fingerprint[HTTP_TLS_FP_LEN])
{
  if (mbedtls_x509_crt_parse_file(certs, cert_path) != 0 ||
      mbedtls_pk_parse_keyfile(key, key_path, NULL) != 0 ||
      mbedtls_pk_check_pair(&certs->pk, key) != 0)
    return CORE_ECERT;
  http_tls__fingerprint_format(certs->raw.p, certs->raw.len, fingerprint);
  return 0;
}

int http_tls__ca_load(const char *ca_file, mbedtls_x509_crt *certs)
{
  const char *path = ca_file ? ca_file : TLS_SYSTEM_CA_FILE;
  int rc = file_exists(path);
  if (rc <= 0)
    return rc < 0 ? rc : -ENOENT;
  /* A system bundle may hold a few certificates mbedTLS cannot parse
   * (a positive return counts them); any usable one will do. */
  rc = mbedtls_x509_crt_parse_file(certs, path);
  if (rc < 0 || certs->raw.len == 0)
    return CORE_ECERT;
  return 0;
}
