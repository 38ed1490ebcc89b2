#include "format/format_keyfile.h"

#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_json.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SALT_LEN 32
#define WRAPPED_LEN (FORMAT_CRYPT_IV_LEN + FORMAT_CRYPT_TAG_LEN + FORMAT_CRYPT_KEY_LEN)

/* ---- base64 (standard alphabet, padded: serde's bytes_as_base64) ---- */

static void b64_encode(const uint8_t *in, size_t len, char *out)
{
  EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

/* Decodes into out (at most cap bytes). Returns the length or CORE_EFORMAT. */
static int b64_decode(const char *in, uint8_t *out, size_t cap)
{
  size_t n = strlen(in), pad = 0;
  uint8_t tmp[128];
  int r;

  if (n % 4 != 0 || n / 4 * 3 > sizeof(tmp))
    return CORE_EFORMAT;
  if (n == 0)
    return 0;
  if (in[n - 1] == '=')
    pad++;
  if (in[n - 2] == '=')
    pad++;
  r = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)n);
  /* EVP_DecodeBlock counts padding as zero bytes; drop them. */
  if (r < 0 || (size_t)r < pad || (size_t)r - pad > cap)
    return CORE_EFORMAT;
  memcpy(out, tmp, (size_t)r - pad);
  OPENSSL_cleanse(tmp, sizeof(tmp));
  return (int)((size_t)r - pad);
}

/* ---- RFC 3339 times ---- */

static void format_time(int64_t t, char out[32])
{
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Accepts YYYY-MM-DDTHH:MM:SS, optional fraction, then Z or +-HH:MM (PBS
 * writes local time with an offset). */
static int parse_time(const char *s, int64_t *out)
{
  struct tm tm;
  const char *p;
  int64_t t, off = 0;

  memset(&tm, 0, sizeof(tm));
  p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
  if (p == NULL)
    return CORE_EFORMAT;
  if (*p == '.') {
    p++;
    while (*p >= '0' && *p <= '9')
      p++;
  }
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    int hh, mm;
    char sign = *p;
    if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2 || strlen(p) != 6 || p[3] != ':')
      return CORE_EFORMAT;
    off = (int64_t)(hh * 3600 + mm * 60) * (sign == '-' ? -1 : 1);
    p += 6;
  } else {
    return CORE_EFORMAT;
  }
  if (*p != '\0')
    return CORE_EFORMAT;
  t = (int64_t)timegm(&tm);
  *out = t - off;
  return 0;
}

/* ---- Encode ---- */

int format_keyfile_encode(const uint8_t key[FORMAT_CRYPT_KEY_LEN], enum format_kdf kdf,
                         const char *pass, size_t pass_len, uint64_t scrypt_n, int64_t now,
                         struct core_buf *out)
{
  struct format_crypt c;
  struct core_json j;
  uint8_t salt[SALT_LEN], derived[32], wrapped[WRAPPED_LEN];
  char b64[4 * ((sizeof(wrapped) + 2) / 3) + 1];
  char fp[FORMAT_CRYPT_FP_STR_LEN], when[32];
  const char *text;
  size_t n;
  int rc;

  if (scrypt_n == 0)
    scrypt_n = FORMAT_KEYFILE_SCRYPT_N;
  if (kdf != FORMAT_KDF_NONE && kdf != FORMAT_KDF_SCRYPT)
    return CORE_EINVAL;
  if (kdf == FORMAT_KDF_SCRYPT && (pass == NULL || pass_len < FORMAT_KEYFILE_MIN_PASS))
    return CORE_EINVAL;
  rc = format_crypt_init(&c, key);
  if (rc < 0)
    return rc;

  core_json_init(&j, 1);
  core_json_obj_open(&j);
  core_json_key(&j, "kdf");
  if (kdf == FORMAT_KDF_NONE) {
    core_json_null(&j);
    b64_encode(key, FORMAT_CRYPT_KEY_LEN, b64);
  } else {
    rc = core_random(salt, sizeof(salt));
    if (rc == 0)
      rc = format_crypt_scrypt(pass, pass_len, salt, sizeof(salt), scrypt_n, 8, 1, derived);
    if (rc == 0)
      rc = core_random(wrapped, FORMAT_CRYPT_IV_LEN);
    if (rc == 0)
      rc = format_crypt_gcm_encrypt(derived, wrapped, key, FORMAT_CRYPT_KEY_LEN,
                                   wrapped + FORMAT_CRYPT_IV_LEN + FORMAT_CRYPT_TAG_LEN,
                                   wrapped + FORMAT_CRYPT_IV_LEN, NULL);
    if (rc < 0)
      goto out;
    core_json_obj_open(&j);
    core_json_key(&j, "Scrypt");
    core_json_obj_open(&j);
    core_json_kv_uint(&j, "n", scrypt_n);
    core_json_kv_uint(&j, "r", 8);
    core_json_kv_uint(&j, "p", 1);
    b64_encode(salt, sizeof(salt), b64);
    core_json_kv_str(&j, "salt", b64);
    core_json_obj_close(&j);
    core_json_obj_close(&j);
    b64_encode(wrapped, sizeof(wrapped), b64);
  }
  format_time(now, when);
  core_json_kv_str(&j, "created", when);
  core_json_kv_str(&j, "modified", when);
  core_json_kv_str(&j, "data", b64);
  format_crypt_fingerprint_str(c.fingerprint, fp);
  core_json_kv_str(&j, "fingerprint", fp);
  core_json_obj_close(&j);
  text = core_json_text(&j, &n);
  rc = core_buf_append(out, text, n);
  if (rc == 0)
    rc = core_buf_append(out, "\n", 1);
out:
  /* The generator's buffer held the raw key for kdf none. */
  text = core_json_text(&j, &n);
  OPENSSL_cleanse((void *)text, n);
  core_json_free(&j);
  OPENSSL_cleanse(derived, sizeof(derived));
  OPENSSL_cleanse(b64, sizeof(b64));
  format_crypt_clear(&c);
  return rc;
}

/* ---- Parse ---- */

static int get_u64(yajl_val obj, const char *key, uint64_t *out)
{
  int64_t v;
  if (core_json_get_int(obj, key, &v) < 0 || v <= 0)
    return CORE_EFORMAT;
  *out = (uint64_t)v;
  return 0;
}

static int parse_kdf(yajl_val kdf, struct format_keyfile *kf)
{
  yajl_val params;
  const char *salt;
  int n;

  if (kdf == NULL || YAJL_IS_NULL(kdf)) {
    kf->kdf = FORMAT_KDF_NONE;
    return 0;
  }
  if ((params = core_json_get(kdf, "Scrypt")) != NULL) {
    kf->kdf = FORMAT_KDF_SCRYPT;
    if (get_u64(params, "n", &kf->n) < 0 || get_u64(params, "r", &kf->r) < 0 ||
        get_u64(params, "p", &kf->p) < 0)
      return CORE_EFORMAT;
  } else if ((params = core_json_get(kdf, "PBKDF2")) != NULL) {
    kf->kdf = FORMAT_KDF_PBKDF2;
    if (get_u64(params, "iter", &kf->iter) < 0)
      return CORE_EFORMAT;
  } else {
    return CORE_EFORMAT;
  }
  salt = core_json_get_str(params, "salt");
  if (salt == NULL || (n = b64_decode(salt, kf->salt, sizeof(kf->salt))) < 0)
    return CORE_EFORMAT;
  kf->salt_len = (size_t)n;
  return 0;
}

int format_keyfile_parse(const char *json, size_t len, struct format_keyfile *kf)
{
  yajl_val root = NULL;
  const char *s;
  int rc, n;

  memset(kf, 0, sizeof(*kf));
  if (len > FORMAT_KEYFILE_MAX_LEN)
    return CORE_ETOOBIG;
  rc = core_json_parse(json, len, &root, NULL, 0);
  if (rc < 0)
    return rc;
  rc = CORE_EFORMAT;
  if (!YAJL_IS_OBJECT(root) || parse_kdf(core_json_get(root, "kdf"), kf) < 0)
    goto out;
  s = core_json_get_str(root, "data");
  if (s == NULL || (n = b64_decode(s, kf->data, sizeof(kf->data))) < 0)
    goto out;
  kf->data_len = (size_t)n;
  if ((s = core_json_get_str(root, "created")) == NULL || parse_time(s, &kf->created) < 0)
    goto out;
  if ((s = core_json_get_str(root, "modified")) == NULL || parse_time(s, &kf->modified) < 0)
    goto out;
  if ((s = core_json_get_str(root, "fingerprint")) != NULL) {
    if (format_crypt_fingerprint_parse(s, kf->fingerprint) < 0)
      goto out;
    kf->has_fingerprint = 1;
  }
  if ((s = core_json_get_str(root, "hint")) != NULL)
    snprintf(kf->hint, sizeof(kf->hint), "%s", s);
  rc = 0;
out:
  yajl_tree_free(root);
  /* The tree held the key (kdf none) in its strings; yajl frees without
   * wiping, which is acceptable for a client process reading its own file. */
  if (rc < 0)
    OPENSSL_cleanse(kf, sizeof(*kf));
  return rc;
}

int format_keyfile_unlock(const struct format_keyfile *kf, const char *pass, size_t pass_len,
                         uint8_t key[FORMAT_CRYPT_KEY_LEN])
{
  struct format_crypt c;
  uint8_t derived[32];
  int rc;

  if (kf->kdf == FORMAT_KDF_NONE) {
    if (kf->data_len != FORMAT_CRYPT_KEY_LEN)
      return CORE_EFORMAT;
    memcpy(key, kf->data, FORMAT_CRYPT_KEY_LEN);
  } else {
    if (pass == NULL || pass_len < FORMAT_KEYFILE_MIN_PASS)
      return CORE_EINVAL;
    if (kf->data_len != WRAPPED_LEN)
      return CORE_EFORMAT;
    if (kf->kdf == FORMAT_KDF_SCRYPT)
      rc = format_crypt_scrypt(pass, pass_len, kf->salt, kf->salt_len, kf->n, kf->r, kf->p,
                              derived);
    else
      rc = format_crypt_pbkdf2(pass, pass_len, kf->salt, kf->salt_len, kf->iter, derived);
    if (rc == 0)
      rc = format_crypt_gcm_decrypt(derived, kf->data, kf->data + 32, FORMAT_CRYPT_KEY_LEN, key,
                                   kf->data + FORMAT_CRYPT_IV_LEN, NULL);
    OPENSSL_cleanse(derived, sizeof(derived));
    if (rc < 0) {
      OPENSSL_cleanse(key, FORMAT_CRYPT_KEY_LEN);
      return rc == CORE_EINVAL ? CORE_EFORMAT : rc; /* bad kdf parameters in the file */
    }
  }
  if (kf->has_fingerprint) {
    rc = format_crypt_init(&c, key);
    if (rc == 0 && !core_ct_equal(c.fingerprint, kf->fingerprint, 32))
      rc = CORE_ECRYPTO;
    format_crypt_clear(&c);
    if (rc < 0) {
      OPENSSL_cleanse(key, FORMAT_CRYPT_KEY_LEN);
      return rc;
    }
  }
  return 0;
}

/* ---- Files ---- */

int format_keyfile_write(const char *path, const uint8_t key[FORMAT_CRYPT_KEY_LEN],
                        enum format_kdf kdf, const char *pass, size_t pass_len,
                        uint64_t scrypt_n, int replace)
{
  struct core_buf b;
  int fd, rc;

  core_buf_init(&b, FORMAT_KEYFILE_MAX_LEN);
  rc = format_keyfile_encode(key, kdf, pass, pass_len, scrypt_n, (int64_t)time(NULL), &b);
  if (rc < 0)
    goto out;
  if (replace) {
    rc = core_file_replace(path, b.base, b.len, 0600, 1);
    goto out;
  }
  fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    rc = -errno;
    goto out;
  }
  rc = core_file_write_all(fd, b.base, b.len);
  if (rc == 0 && fsync(fd) < 0)
    rc = -errno;
  if (close(fd) < 0 && rc == 0)
    rc = -errno;
  if (rc < 0)
    unlink(path);
out:
  if (b.base)
    OPENSSL_cleanse(b.base, b.len);
  core_buf_free(&b);
  return rc;
}

int format_keyfile_read(const char *path, struct format_keyfile *kf)
{
  size_t cap = FORMAT_KEYFILE_MAX_LEN + 1, len = 0;
  char *buf;
  int fd, rc = 0;

  memset(kf, 0, sizeof(*kf));
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  buf = core_malloc(cap);
  while (len < cap) {
    ssize_t n = read(fd, buf + len, cap - len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      rc = -errno;
      break;
    }
    if (n == 0)
      break;
    len += (size_t)n;
  }
  close(fd);
  if (rc == 0)
    rc = len > FORMAT_KEYFILE_MAX_LEN ? CORE_ETOOBIG : format_keyfile_parse(buf, len, kf);
  OPENSSL_cleanse(buf, len);
  core_free(buf);
  return rc;
}
