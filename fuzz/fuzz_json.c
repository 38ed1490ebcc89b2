/* fuzz_json.c: JSON request bodies (core_json_parse) and the typed getters.
 *
 * Input: the body. A parsed tree is written back with core_json (as
 * responses are) and parsed again: the text must parse, and writing the
 * second tree must give the same bytes (a fixed point), so parser and
 * generator agree on every value they let through. */
#include "fuzz.h"

#include "core/core_json.h"

/* Deeper trees are only parsed and freed (the generator is not the target). */
#define WRITE_DEPTH_MAX 512

static int write_value(struct core_json *j, yajl_val v, int depth)
{
  if (depth > WRITE_DEPTH_MAX)
    return -1;
  if (YAJL_IS_OBJECT(v)) {
    core_json_obj_open(j);
    for (size_t i = 0; i < v->u.object.len; i++) {
      core_json_key(j, v->u.object.keys[i]);
      if (write_value(j, v->u.object.values[i], depth + 1) < 0)
        return -1;
    }
    core_json_obj_close(j);
  } else if (YAJL_IS_ARRAY(v)) {
    core_json_arr_open(j);
    for (size_t i = 0; i < v->u.array.len; i++)
      if (write_value(j, v->u.array.values[i], depth + 1) < 0)
        return -1;
    core_json_arr_close(j);
  } else if (YAJL_IS_STRING(v)) {
    core_json_str(j, v->u.string);
  } else if (YAJL_IS_NUMBER(v)) {
    core_json_raw(j, v->u.number.r, strlen(v->u.number.r));
  } else if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) {
    core_json_bool(j, YAJL_IS_TRUE(v));
  } else {
    FUZZ_ASSERT(YAJL_IS_NULL(v));
    core_json_null(j);
  }
  return 0;
}

static void use_getters(yajl_val root)
{
  static const char *const keys[] = {"backup-type", "backup-id", "backup-time", "store",
                                     "keep-last", "dry-run", ""};
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    int64_t n;
    int b;
    const char *s = core_json_get_str(root, keys[i]);
    yajl_val v = core_json_get(root, keys[i]);
    FUZZ_ASSERT(s == NULL || (v != NULL && YAJL_IS_STRING(v)));
    if (core_json_get_int(root, keys[i], &n) == 0)
      FUZZ_ASSERT(v != NULL && YAJL_IS_INTEGER(v));
    if (core_json_get_bool(root, keys[i], &b) == 0)
      FUZZ_ASSERT(b == 0 || b == 1);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  yajl_val root;
  char err[128];
  if (core_json_parse((const char *)data, size, &root, err, sizeof(err)) != 0) {
    FUZZ_ASSERT(err[0] != '\0');
    return 0;
  }
  FUZZ_ASSERT(root != NULL);
  use_getters(root);

  struct core_json a;
  core_json_init(&a, 0);
  if (write_value(&a, root, 0) == 0) {
    size_t alen;
    const char *atext = core_json_text(&a, &alen);
    yajl_val again;
    FUZZ_ASSERT(core_json_parse(atext, alen, &again, err, sizeof(err)) == 0);
    struct core_json b;
    core_json_init(&b, 0);
    FUZZ_ASSERT(write_value(&b, again, 0) == 0);
    size_t blen;
    const char *btext = core_json_text(&b, &blen);
    FUZZ_ASSERT(alen == blen && memcmp(atext, btext, alen) == 0);
    core_json_free(&b);
    yajl_tree_free(again);
  }
  core_json_free(&a);
  yajl_tree_free(root);
  return 0;
}
