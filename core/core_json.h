/* core_json.h: JSON in and out, on yajl.
 *
 * Output: a thin layer over yajl_gen writing into a bounded core_buf.
 * Input: yajl's tree parser with a size bound, plus typed getters that treat
 * absent and mistyped values alike (NULL / default), so handlers validate with
 * one check.
 */
#ifndef CORE_JSON_H
#define CORE_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

/* ---- Generating ---- */

struct core_json {
  yajl_gen gen; /* owned */
};

void core_json_init(struct core_json *j, int pretty);
void core_json_free(struct core_json *j);
/* Returns the generated text (valid until core_json_free). */
const char *core_json_text(struct core_json *j, size_t *len);

void core_json_obj_open(struct core_json *j);
void core_json_obj_close(struct core_json *j);
void core_json_arr_open(struct core_json *j);
void core_json_arr_close(struct core_json *j);
void core_json_key(struct core_json *j, const char *key);
void core_json_str(struct core_json *j, const char *s);
void core_json_strn(struct core_json *j, const char *s, size_t len);
void core_json_int(struct core_json *j, int64_t v);
void core_json_uint(struct core_json *j, uint64_t v);
void core_json_double(struct core_json *j, double v);
void core_json_bool(struct core_json *j, int v);
void core_json_null(struct core_json *j);
/* Appends an already-encoded JSON value verbatim. */
void core_json_raw(struct core_json *j, const char *text, size_t len);

/* Shorthands for "key": value inside an object. */
void core_json_kv_str(struct core_json *j, const char *key, const char *s);
void core_json_kv_int(struct core_json *j, const char *key, int64_t v);
void core_json_kv_uint(struct core_json *j, const char *key, uint64_t v);
void core_json_kv_bool(struct core_json *j, const char *key, int v);

/* ---- Parsing ---- */

/* Parses `len` bytes of JSON. Returns 0 and a tree to free with yajl_tree_free,
 * or CORE_EPARSE (with a message in errbuf when given). */
int core_json_parse(const char *text, size_t len, yajl_val *out, char *errbuf,
                    size_t errlen);

/* Object member by key, or NULL. */
yajl_val core_json_get(yajl_val obj, const char *key);
/* Typed access: the string form gives NULL when absent or of another type;
 * the int and bool forms return 0 with *out set, or CORE_ENOTFOUND (absent
 * or of another type; *out untouched). */
const char *core_json_get_str(yajl_val obj, const char *key);
int core_json_get_int(yajl_val obj, const char *key, int64_t *out);
int core_json_get_bool(yajl_val obj, const char *key, int *out);

#endif
