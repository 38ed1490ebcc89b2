#include "core/core_json.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_utf8.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

void core_json_init(struct core_json *j, int pretty)
{
  j->gen = yajl_gen_alloc(NULL);
  if (j->gen == NULL)
    abort();
  /* core_json_strn repairs text first, so this never fires; it is the
   * generator's own guarantee that no raw byte reaches a client. */
  yajl_gen_config(j->gen, yajl_gen_validate_utf8, 1);
  if (pretty) {
    yajl_gen_config(j->gen, yajl_gen_beautify, 1);
    yajl_gen_config(j->gen, yajl_gen_indent_string, "  ");
  }
}

void core_json_free(struct core_json *j)
{
  if (j->gen)
    yajl_gen_free(j->gen);
  j->gen = NULL;
}

const char *core_json_text(struct core_json *j, size_t *len)
{
  const unsigned char *buf;
  size_t n;
  yajl_gen_get_buf(j->gen, &buf, &n);
  if (len)
    *len = n;
  return (const char *)buf;
}

void core_json_obj_open(struct core_json *j) { yajl_gen_map_open(j->gen); }
void core_json_obj_close(struct core_json *j) { yajl_gen_map_close(j->gen); }
void core_json_arr_open(struct core_json *j) { yajl_gen_array_open(j->gen); }
void core_json_arr_close(struct core_json *j) { yajl_gen_array_close(j->gen); }

void core_json_key(struct core_json *j, const char *key)
{
  core_json_str(j, key);
}

void core_json_str(struct core_json *j, const char *s)
{
  core_json_strn(j, s, strlen(s));
}

void core_json_strn(struct core_json *j, const char *s, size_t len)
{
  /* Stored text may predate validation (a hand-edited config file): show it
   * with U+FFFD rather than emit a document strict parsers reject, or, with
   * yajl_gen_validate_utf8, drop the value and break the document's shape. */
  size_t n = core_utf8_repaired_len(s, len);
  if (n == len) {
    yajl_gen_string(j->gen, (const unsigned char *)s, len);
    return;
  }
  char *fixed = core_malloc(n);
  core_utf8_repair(s, len, fixed);
  yajl_gen_string(j->gen, (const unsigned char *)fixed, n);
  core_free(fixed);
}

void core_json_int(struct core_json *j, int64_t v)
{
  char num[32];
  int n = snprintf(num, sizeof(num), "%" PRId64, v);
  yajl_gen_number(j->gen, num, (size_t)n);
}

void core_json_uint(struct core_json *j, uint64_t v)
{
  char num[32];
  int n = snprintf(num, sizeof(num), "%" PRIu64, v);
  yajl_gen_number(j->gen, num, (size_t)n);
}

void core_json_double(struct core_json *j, double v)
{
  yajl_gen_double(j->gen, v);
}

void core_json_bool(struct core_json *j, int v) { yajl_gen_bool(j->gen, v); }
void core_json_null(struct core_json *j) { yajl_gen_null(j->gen); }

void core_json_raw(struct core_json *j, const char *text, size_t len)
{
  /* yajl_gen_number writes its argument verbatim and keeps the generator's
   * comma and nesting state right, which is what an embedded value needs. */
  yajl_gen_number(j->gen, text, len);
}

void core_json_kv_str(struct core_json *j, const char *key, const char *s)
{
  core_json_key(j, key);
  if (s)
    core_json_str(j, s);
  else
    core_json_null(j);
}

void core_json_kv_int(struct core_json *j, const char *key, int64_t v)
{
  core_json_key(j, key);
  core_json_int(j, v);
}

void core_json_kv_uint(struct core_json *j, const char *key, uint64_t v)
{
  core_json_key(j, key);
  core_json_uint(j, v);
}

void core_json_kv_bool(struct core_json *j, const char *key, int v)
{
  core_json_key(j, key);
  core_json_bool(j, v);
}

/* The string and key callbacks of the checking pass: yajl hands over each
 * string decoded, with its length, so a \u0000 shows as a NUL inside it and
 * an escaped surrogate or overlong as the bytes it decodes to. */
static int check_string(void *ctx, const unsigned char *s, size_t len)
{
  (void)ctx;
  return core_utf8_valid((const char *)s, len);
}

/* yajl's own UTF-8 check only looks at the shape of multi-byte sequences and
 * the tree parser keeps strings as C strings, so "ab\u0000cd" would arrive
 * as "ab". One pass over the raw bytes with string callbacks refuses both,
 * and a raw NUL byte, before the tree is built. */
static int check_strings(const char *text, size_t len, char *err, size_t errlen)
{
  static const yajl_callbacks cb = {
    .yajl_string = check_string,
    .yajl_map_key = check_string,
  };
  yajl_handle h = yajl_alloc(&cb, NULL, NULL);
  if (h == NULL)
    abort();
  yajl_status st = yajl_parse(h, (const unsigned char *)text, len);
  if (st == yajl_status_ok)
    st = yajl_complete_parse(h);
  int rc = 0;
  if (st == yajl_status_client_canceled) {
    snprintf(err, errlen, "a string is not valid UTF-8 or contains NUL");
    rc = CORE_EPARSE;
  } else if (st != yajl_status_ok) {
    unsigned char *msg = yajl_get_error(h, 0, NULL, 0);
    snprintf(err, errlen, "%s", msg ? (const char *)msg : "invalid JSON");
    yajl_free_error(h, msg);
    rc = CORE_EPARSE;
  }
  yajl_free(h);
  return rc;
}

int core_json_parse(const char *text, size_t len, yajl_val *out, char *errbuf,
                    size_t errlen)
{
  char err[256] = "";
  yajl_val v = NULL;
  if (check_strings(text, len, err, sizeof(err)) == 0) {
    /* yajl_tree_parse wants a NUL-terminated string. */
    char *copy = core_strndup(text, len);
    v = yajl_tree_parse(copy, err, sizeof(err));
    core_free(copy);
  }
  if (v == NULL) {
    if (errbuf && errlen) {
      /* yajl's messages span lines; keep the first. */
      char *nl = strchr(err, '\n');
      if (nl)
        *nl = '\0';
      snprintf(errbuf, errlen, "%s", err[0] ? err : "invalid JSON");
    }
    return CORE_EPARSE;
  }
  *out = v;
  return 0;
}

yajl_val core_json_get(yajl_val obj, const char *key)
{
  if (obj == NULL || !YAJL_IS_OBJECT(obj))
    return NULL;
  for (size_t i = 0; i < obj->u.object.len; i++) {
    if (strcmp(obj->u.object.keys[i], key) == 0)
      return obj->u.object.values[i];
  }
  return NULL;
}

const char *core_json_get_str(yajl_val obj, const char *key)
{
  yajl_val v = core_json_get(obj, key);
  return v && YAJL_IS_STRING(v) ? v->u.string : NULL;
}

int core_json_get_int(yajl_val obj, const char *key, int64_t *out)
{
  yajl_val v = core_json_get(obj, key);
  if (v == NULL || !YAJL_IS_INTEGER(v))
    return CORE_ENOTFOUND;
  *out = YAJL_GET_INTEGER(v);
  return 0;
}

int core_json_get_bool(yajl_val obj, const char *key, int *out)
{
  yajl_val v = core_json_get(obj, key);
  if (v == NULL || !(YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)))
    return CORE_ENOTFOUND;
  *out = YAJL_IS_TRUE(v);
  return 0;
}
