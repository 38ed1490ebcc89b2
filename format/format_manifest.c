#include "format/format_manifest.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_json.h"
#include "format/format_blob.h"
#include "format/format_crypt.h"
#include "format/format_name.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* Deeper JSON than this is refused before yajl builds (and later recursively
 * frees) a tree: manifests are two levels deep, unprotected a few more. */
#define MAX_DEPTH 64

/* ---- Names ---- */

int format_manifest_validate_filename(const char *name)
{
  return format_name_archive(name) > 0 ? 0 : CORE_ENAME;
}

const char *format_crypt_mode_name(enum format_crypt_mode mode)
{
  switch (mode) {
  case FORMAT_CRYPT_MODE_ENCRYPT:
    return "encrypt";
  case FORMAT_CRYPT_MODE_SIGN_ONLY:
    return "sign-only";
  default:
    return "none";
  }
}

int format_crypt_mode_parse(const char *s)
{
  if (strcmp(s, "none") == 0)
    return FORMAT_CRYPT_MODE_NONE;
  if (strcmp(s, "encrypt") == 0)
    return FORMAT_CRYPT_MODE_ENCRYPT;
  if (strcmp(s, "sign-only") == 0)
    return FORMAT_CRYPT_MODE_SIGN_ONLY;
  return CORE_EFORMAT;
}

/* ---- JSON helpers ---- */

static int depth_ok(const char *s, size_t len)
{
  int depth = 0, in_str = 0;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (in_str) {
      if (c == '\\')
        i++;
      else if (c == '"')
        in_str = 0;
    } else if (c == '"') {
      in_str = 1;
    } else if (c == '[' || c == '{') {
      if (++depth > MAX_DEPTH)
        return 0;
    } else if (c == ']' || c == '}') {
      depth--;
    }
  }
  return 1;
}

/* A JSON string as serde_json writes it: the canonical form feeds an HMAC,
 * so escapes must match byte for byte (short escapes for \b \f \n \r \t,
 * \u00xx in lowercase for other control characters, everything else raw). */
static int put_str(struct core_buf *b, const char *s, size_t n)
{
  static const char hex[] = "0123456789abcdef";
  size_t run = 0;
  int rc = core_buf_append(b, "\"", 1);

  for (size_t i = 0; rc == 0 && i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[7];
    size_t elen = 2;
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    rc = core_buf_append(b, s + run, i - run);
    run = i + 1;
    esc[0] = '\\';
    switch (c) {
    case '"': esc[1] = '"'; break;
    case '\\': esc[1] = '\\'; break;
    case '\b': esc[1] = 'b'; break;
    case '\f': esc[1] = 'f'; break;
    case '\n': esc[1] = 'n'; break;
    case '\r': esc[1] = 'r'; break;
    case '\t': esc[1] = 't'; break;
    default:
      memcpy(esc + 1, "u00", 3);
      esc[4] = hex[c >> 4];
      esc[5] = hex[c & 15];
      elen = 6;
    }
    if (rc == 0)
      rc = core_buf_append(b, esc, elen);
  }
  if (rc == 0)
    rc = core_buf_append(b, s + run, n - run);
  if (rc == 0)
    rc = core_buf_append(b, "\"", 1);
  return rc;
}

static int put_cstr(struct core_buf *b, const char *s)
{
  return put_str(b, s, strlen(s));
}

/* Compact JSON of a yajl tree, members in their original order. Numbers are
 * written as they were read. */
static int emit_compact(struct core_buf *b, yajl_val v)
{
  int rc = 0;

  if (v == NULL || YAJL_IS_NULL(v))
    return core_buf_append_str(b, "null");
  if (YAJL_IS_TRUE(v))
    return core_buf_append_str(b, "true");
  if (YAJL_IS_FALSE(v))
    return core_buf_append_str(b, "false");
  if (YAJL_IS_STRING(v))
    return put_cstr(b, v->u.string);
  if (YAJL_IS_NUMBER(v))
    return core_buf_append_str(b, v->u.number.r);
  if (YAJL_IS_ARRAY(v)) {
    rc = core_buf_append(b, "[", 1);
    for (size_t i = 0; rc == 0 && i < v->u.array.len; i++) {
      if (i > 0)
        rc = core_buf_append(b, ",", 1);
      if (rc == 0)
        rc = emit_compact(b, v->u.array.values[i]);
    }
    return rc ? rc : core_buf_append(b, "]", 1);
  }
  rc = core_buf_append(b, "{", 1);
  for (size_t i = 0; rc == 0 && i < v->u.object.len; i++) {
    if (i > 0)
      rc = core_buf_append(b, ",", 1);
    if (rc == 0)
      rc = put_cstr(b, v->u.object.keys[i]);
    if (rc == 0)
      rc = core_buf_append(b, ":", 1);
    if (rc == 0)
      rc = emit_compact(b, v->u.object.values[i]);
  }
  return rc ? rc : core_buf_append(b, "}", 1);
}

/* The same tree through a yajl generator (for pretty output). */
static void emit_gen(struct core_json *j, yajl_val v)
{
  if (v == NULL || YAJL_IS_NULL(v)) {
    core_json_null(j);
  } else if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) {
    core_json_bool(j, YAJL_IS_TRUE(v));
  } else if (YAJL_IS_STRING(v)) {
    core_json_str(j, v->u.string);
  } else if (YAJL_IS_NUMBER(v)) {
    core_json_raw(j, v->u.number.r, strlen(v->u.number.r));
  } else if (YAJL_IS_ARRAY(v)) {
    core_json_arr_open(j);
    for (size_t i = 0; i < v->u.array.len; i++)
      emit_gen(j, v->u.array.values[i]);
    core_json_arr_close(j);
  } else {
    core_json_obj_open(j);
    for (size_t i = 0; i < v->u.object.len; i++) {
      core_json_key(j, v->u.object.keys[i]);
      emit_gen(j, v->u.object.values[i]);
    }
    core_json_obj_close(j);
  }
}

/* Parses JSON text known to be valid and shallow (it came from us). */
static yajl_val parse_trusted(const char *text)
{
  yajl_val v = NULL;
  if (core_json_parse(text, strlen(text), &v, NULL, 0) < 0)
    abort(); /* we wrote it: invalid means memory corruption */
  return v;
}

/* ---- Manifest ---- */

void format_manifest_init(struct format_manifest *m, const char *backup_type,
                         const char *backup_id, int64_t backup_time)
{
  memset(m, 0, sizeof(*m));
  m->backup_type = core_strdup(backup_type);
  m->backup_id = core_strdup(backup_id);
  m->backup_time = backup_time;
  m->unprotected = core_strdup("{}");
}

void format_manifest_free(struct format_manifest *m)
{
  for (size_t i = 0; i < m->nfiles; i++)
    core_free(m->files[i].filename);
  core_free(m->files);
  core_free(m->backup_type);
  core_free(m->backup_id);
  core_free(m->unprotected);
  core_free(m->signature);
  memset(m, 0, sizeof(*m));
}

const struct format_manifest_file *format_manifest_find_file(const struct format_manifest *m,
                                                           const char *filename)
{
  for (size_t i = 0; i < m->nfiles; i++) {
    if (strcmp(m->files[i].filename, filename) == 0)
      return &m->files[i];
  }
  return NULL;
}

int format_manifest_add_file(struct format_manifest *m, const char *filename,
                            enum format_crypt_mode mode, uint64_t size,
                            const uint8_t csum[CORE_SHA256_LEN])
{
  struct format_manifest_file *f;

  if (format_manifest_validate_filename(filename) < 0)
    return CORE_ENAME;
  if (format_manifest_find_file(m, filename))
    return CORE_EEXISTS;
  if (m->nfiles == m->files_cap) {
    /* The count comes from client JSON: allowed to fail, not to abort. */
    size_t ncap = m->files_cap ? m->files_cap * 2 : 8;
    struct format_manifest_file *nf = core_try_malloc(ncap * sizeof(*nf));
    if (nf == NULL)
      return UV_ENOMEM;
    if (m->nfiles)
      memcpy(nf, m->files, m->nfiles * sizeof(*nf));
    core_free(m->files);
    m->files = nf;
    m->files_cap = ncap;
  }
  f = &m->files[m->nfiles++];
  f->filename = core_strdup(filename);
  f->crypt_mode = mode;
  f->size = size;
  memcpy(f->csum, csum, CORE_SHA256_LEN);
  return 0;
}

static int parse_file(struct format_manifest *m, yajl_val f)
{
  const char *name = core_json_get_str(f, "filename");
  const char *csum_hex = core_json_get_str(f, "csum");
  yajl_val mode_v = core_json_get(f, "crypt-mode");
  int64_t size;
  uint8_t csum[CORE_SHA256_LEN];
  int mode = FORMAT_CRYPT_MODE_NONE; /* absent in manifests before PBS 0.8 */

  if (name == NULL || csum_hex == NULL || core_json_get_int(f, "size", &size) < 0 || size < 0)
    return CORE_EFORMAT;
  if (strlen(csum_hex) != CORE_SHA256_HEX_LEN || core_hex_decode(csum_hex, 32, csum) < 0)
    return CORE_EFORMAT;
  if (mode_v) {
    if (!YAJL_IS_STRING(mode_v))
      return CORE_EFORMAT;
    mode = format_crypt_mode_parse(mode_v->u.string);
    if (mode < 0)
      return mode;
  }
  return format_manifest_add_file(m, name, (enum format_crypt_mode)mode, (uint64_t)size, csum);
}

int format_manifest_parse(const char *json, size_t len, struct format_manifest *m)
{
  yajl_val root = NULL, files, unprot, sig;
  const char *type, *id;
  int64_t time;
  struct core_buf b;
  int rc;

  memset(m, 0, sizeof(*m));
  m->unprotected = core_strdup("{}");
  if (len > FORMAT_MANIFEST_MAX_LEN)
    return CORE_ETOOBIG;
  if (!depth_ok(json, len))
    return CORE_EPARSE;
  rc = core_json_parse(json, len, &root, NULL, 0);
  if (rc < 0)
    return rc;

  rc = CORE_EFORMAT;
  type = core_json_get_str(root, "backup-type");
  id = core_json_get_str(root, "backup-id");
  files = core_json_get(root, "files");
  if (!YAJL_IS_OBJECT(root) || type == NULL || id == NULL || format_name_backup_type(type) < 0 ||
      format_name_backup_id(id) < 0 || core_json_get_int(root, "backup-time", &time) < 0 ||
      files == NULL || !YAJL_IS_ARRAY(files))
    goto out;
  m->backup_type = core_strdup(type);
  m->backup_id = core_strdup(id);
  m->backup_time = time;

  for (size_t i = 0; i < files->u.array.len; i++) {
    yajl_val f = files->u.array.values[i];
    if (!YAJL_IS_OBJECT(f))
      goto out;
    rc = parse_file(m, f);
    if (rc == CORE_EEXISTS)
      rc = CORE_ENAME; /* a name listed twice is a bad name, to the caller */
    if (rc < 0)
      goto out;
  }

  rc = CORE_EFORMAT;
  /* Absent or null both mean an empty object, as in PBS. */
  unprot = core_json_get(root, "unprotected");
  if (unprot && !YAJL_IS_NULL(unprot)) {
    if (!YAJL_IS_OBJECT(unprot))
      goto out;
    core_buf_init(&b, FORMAT_MANIFEST_MAX_LEN);
    rc = emit_compact(&b, unprot);
    if (rc < 0) {
      core_buf_free(&b);
      goto out;
    }
    core_free(m->unprotected);
    m->unprotected = core_buf_steal(&b, NULL);
    rc = CORE_EFORMAT;
  }

  sig = core_json_get(root, "signature");
  if (sig && !YAJL_IS_NULL(sig)) {
    uint8_t raw[CORE_SHA256_LEN];
    if (!YAJL_IS_STRING(sig) || strlen(sig->u.string) != CORE_SHA256_HEX_LEN ||
        core_hex_decode(sig->u.string, sizeof(raw), raw) < 0)
      goto out;
    m->signature = core_malloc(CORE_SHA256_HEX_LEN + 1);
    core_hex_encode(raw, sizeof(raw), m->signature);
  }
  rc = 0;
out:
  yajl_tree_free(root);
  return rc;
}

int format_manifest_to_json(const struct format_manifest *m, int pretty, struct core_buf *out)
{
  struct core_json j;
  yajl_val unprot = parse_trusted(m->unprotected);
  const char *text;
  size_t n;
  int rc;

  core_json_init(&j, pretty);
  core_json_obj_open(&j);
  core_json_kv_str(&j, "backup-type", m->backup_type);
  core_json_kv_str(&j, "backup-id", m->backup_id);
  core_json_kv_int(&j, "backup-time", m->backup_time);
  core_json_key(&j, "files");
  core_json_arr_open(&j);
  for (size_t i = 0; i < m->nfiles; i++) {
    const struct format_manifest_file *f = &m->files[i];
    char hex[CORE_SHA256_HEX_LEN + 1];
    core_hex_encode(f->csum, sizeof(f->csum), hex);
    core_json_obj_open(&j);
    core_json_kv_str(&j, "filename", f->filename);
    core_json_kv_str(&j, "crypt-mode", format_crypt_mode_name(f->crypt_mode));
    core_json_kv_uint(&j, "size", f->size);
    core_json_kv_str(&j, "csum", hex);
    core_json_obj_close(&j);
  }
  core_json_arr_close(&j);
  core_json_key(&j, "unprotected");
  emit_gen(&j, unprot);
  core_json_kv_str(&j, "signature", m->signature); /* NULL -> null */
  core_json_obj_close(&j);
  text = core_json_text(&j, &n);
  rc = core_buf_append(out, text, n);
  core_json_free(&j);
  yajl_tree_free(unprot);
  return rc;
}

int format_manifest_canonical(const struct format_manifest *m, struct core_buf *out)
{
  char num[32];
  int rc;

  /* Keys in bytewise order: backup-id < backup-time < backup-type < files,
   * and crypt-mode < csum < filename < size inside each file. */
  rc = core_buf_append_str(out, "{\"backup-id\":");
  if (rc == 0)
    rc = put_cstr(out, m->backup_id);
  snprintf(num, sizeof(num), "%lld", (long long)m->backup_time);
  if (rc == 0)
    rc = core_buf_printf(out, ",\"backup-time\":%s,\"backup-type\":", num);
  if (rc == 0)
    rc = put_cstr(out, m->backup_type);
  if (rc == 0)
    rc = core_buf_append_str(out, ",\"files\":[");
  for (size_t i = 0; rc == 0 && i < m->nfiles; i++) {
    const struct format_manifest_file *f = &m->files[i];
    char hex[CORE_SHA256_HEX_LEN + 1];
    core_hex_encode(f->csum, sizeof(f->csum), hex);
    rc = core_buf_printf(out, "%s{\"crypt-mode\":\"%s\",\"csum\":\"%s\",\"filename\":",
                         i ? "," : "", format_crypt_mode_name(f->crypt_mode), hex);
    if (rc == 0)
      rc = put_cstr(out, f->filename);
    if (rc == 0)
      rc = core_buf_printf(out, ",\"size\":%llu}", (unsigned long long)f->size);
  }
  if (rc == 0)
    rc = core_buf_append_str(out, "]}");
  return rc;
}

static int signature_of(const struct format_manifest *m, const struct format_crypt *crypt,
                        char hex[CORE_SHA256_HEX_LEN + 1])
{
  struct core_buf b;
  uint8_t tag[CORE_SHA256_LEN];
  int rc;

  core_buf_init(&b, FORMAT_MANIFEST_MAX_LEN);
  rc = format_manifest_canonical(m, &b);
  if (rc == 0) {
    format_crypt_auth_tag(crypt, b.base, b.len, tag);
    core_hex_encode(tag, sizeof(tag), hex);
  }
  core_buf_free(&b);
  return rc;
}

int format_manifest_sign(struct format_manifest *m, const struct format_crypt *crypt)
{
  char hex[CORE_SHA256_HEX_LEN + 1];
  char fp[FORMAT_CRYPT_FP_STR_LEN];
  char quoted[FORMAT_CRYPT_FP_STR_LEN + 2];
  int rc = signature_of(m, crypt, hex);

  if (rc < 0)
    return rc;
  core_free(m->signature);
  m->signature = core_strdup(hex);
  format_crypt_fingerprint_str(crypt->fingerprint, fp);
  snprintf(quoted, sizeof(quoted), "\"%s\"", fp);
  return format_manifest_unprotected_set(m, "key-fingerprint", quoted, strlen(quoted));
}

int format_manifest_verify(const struct format_manifest *m, const struct format_crypt *crypt)
{
  char *fp_json = format_manifest_unprotected_get(m, "key-fingerprint");
  char hex[CORE_SHA256_HEX_LEN + 1];
  int rc = 0;

  if (fp_json && strcmp(fp_json, "null") != 0) {
    char want[FORMAT_CRYPT_FP_STR_LEN + 2];
    if (crypt == NULL) {
      rc = CORE_ECRYPTO; /* made with a key we do not have */
      goto out;
    }
    char fp[FORMAT_CRYPT_FP_STR_LEN];
    format_crypt_fingerprint_str(crypt->fingerprint, fp);
    snprintf(want, sizeof(want), "\"%s\"", fp);
    if (strcmp(fp_json, want) != 0) {
      rc = CORE_ECRYPTO;
      goto out;
    }
  }
  if (m->signature && crypt) {
    rc = signature_of(m, crypt, hex);
    if (rc == 0 && !core_ct_equal(hex, m->signature, CORE_SHA256_HEX_LEN))
      rc = CORE_ECRYPTO;
  }
out:
  core_free(fp_json);
  return rc;
}

int format_manifest_unprotected_set(struct format_manifest *m, const char *key,
                                   const char *value, size_t len)
{
  yajl_val obj = parse_trusted(m->unprotected), val = NULL;
  struct core_buf b;
  int rc, done = 0, n = 0;

  if (value) {
    if (!depth_ok(value, len) || core_json_parse(value, len, &val, NULL, 0) < 0) {
      yajl_tree_free(obj);
      return CORE_EPARSE;
    }
  }
  core_buf_init(&b, FORMAT_MANIFEST_MAX_LEN);
  rc = core_buf_append(&b, "{", 1);
  for (size_t i = 0; rc == 0 && i < obj->u.object.len; i++) {
    int match = strcmp(obj->u.object.keys[i], key) == 0;
    yajl_val v = obj->u.object.values[i];
    if (match && (val == NULL || done))
      continue; /* removed, or a duplicate key after the one replaced */
    if (match) {
      v = val;
      done = 1;
    }
    if (n++ > 0)
      rc = core_buf_append(&b, ",", 1);
    if (rc == 0)
      rc = put_cstr(&b, obj->u.object.keys[i]);
    if (rc == 0)
      rc = core_buf_append(&b, ":", 1);
    if (rc == 0)
      rc = emit_compact(&b, v);
  }
  if (rc == 0 && val && !done) {
    if (n > 0)
      rc = core_buf_append(&b, ",", 1);
    if (rc == 0)
      rc = put_cstr(&b, key);
    if (rc == 0)
      rc = core_buf_append(&b, ":", 1);
    if (rc == 0)
      rc = emit_compact(&b, val);
  }
  if (rc == 0)
    rc = core_buf_append(&b, "}", 1);
  if (rc == 0) {
    core_free(m->unprotected);
    m->unprotected = core_buf_steal(&b, NULL);
  }
  core_buf_free(&b);
  yajl_tree_free(obj);
  yajl_tree_free(val);
  return rc;
}

char *format_manifest_unprotected_get(const struct format_manifest *m, const char *key)
{
  yajl_val obj = parse_trusted(m->unprotected);
  yajl_val v = core_json_get(obj, key);
  char *text = NULL;

  if (v) {
    struct core_buf b;
    core_buf_init(&b, FORMAT_MANIFEST_MAX_LEN);
    if (emit_compact(&b, v) == 0)
      text = core_buf_steal(&b, NULL);
    core_buf_free(&b);
  }
  yajl_tree_free(obj);
  return text;
}

int format_manifest_set_verify_state(struct format_manifest *m, const char *state,
                                    const char *upid)
{
  struct core_buf b;
  int rc;

  core_buf_init(&b, FORMAT_MANIFEST_MAX_LEN);
  rc = core_buf_append_str(&b, "{\"state\":");
  if (rc == 0)
    rc = put_cstr(&b, state);
  if (rc == 0)
    rc = core_buf_append_str(&b, ",\"upid\":");
  if (rc == 0)
    rc = put_cstr(&b, upid);
  if (rc == 0)
    rc = core_buf_append_str(&b, "}");
  if (rc == 0)
    rc = format_manifest_unprotected_set(m, "verify_state", b.base, b.len);
  core_buf_free(&b);
  return rc;
}

int format_manifest_encode_blob(const struct format_manifest *m, struct format_blob_ctx *ctx,
                               uint8_t **out, size_t *out_len)
{
  struct core_buf b;
  int rc;

  core_buf_init(&b, FORMAT_MANIFEST_MAX_LEN);
  rc = format_manifest_to_json(m, 1, &b);
  if (rc == 0)
    rc = format_blob_encode_alloc(ctx, b.base, b.len, FORMAT_BLOB_COMPRESS, NULL, out, out_len);
  core_buf_free(&b);
  return rc < 0 ? rc : 0;
}

int format_manifest_decode_blob(struct format_blob_ctx *ctx, const void *blob, size_t len,
                               struct format_manifest *m)
{
  uint8_t *json = NULL;
  size_t n = 0;
  int rc = format_blob_decode(ctx, blob, len, NULL, FORMAT_MANIFEST_MAX_LEN, NULL, &json, &n);

  if (rc < 0) {
    memset(m, 0, sizeof(*m));
    m->unprotected = core_strdup("{}");
    return rc;
  }
  rc = format_manifest_parse((const char *)json, n, m);
  core_free(json);
  return rc;
}
