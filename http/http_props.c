/* http_props.c: the property edits of a config-write request (http_props.h). */
#include "http/http_props.h"

#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_json.h"
#include "core/core_utf8.h"

#include <stdio.h>
#include <string.h>

static int skipped(const char *name, const char *const *skip)
{
  if (!strcmp(name, "digest") || !strcmp(name, "delete"))
    return 1;
  for (; skip && *skip; skip++)
    if (!strcmp(name, *skip))
      return 1;
  return 0;
}

static int already_set(const struct http_props *p, const char *name)
{
  for (size_t i = 0; i < p->nset; i++)
    if (!strcmp(p->set[i].key, name))
      return 1;
  return 0;
}

static int collect_set(struct http_request *req, const char *const *skip,
                       http_prop_check_fn check, struct http_props *p, char *err,
                       size_t errlen)
{
  const char *name, *value;
  char q[80];
  for (int i = 0; http_req_param_at(req, i, &name, &value); i++) {
    if (skipped(name, skip))
      continue;
    /* A property is a single value; two of them would leave it to chance
     * which one is saved. */
    if (already_set(p, name)) {
      snprintf(err, errlen, "parameter '%s' given more than once",
               core_utf8_quote(name, q, sizeof(q)));
      return CORE_EINVAL;
    }
    if (p->nset == HTTP_PROPS_MAX) {
      snprintf(err, errlen, "too many properties");
      return CORE_EINVAL;
    }
    int rc = check(name, value, err, errlen);
    if (rc < 0)
      return rc;
    p->set[p->nset].key = name;
    p->set[p->nset].value = value;
    p->nset++;
  }
  return 0;
}

/* Appends `list` (names separated by commas, semicolons or blanks) to the
 * names to delete, copying it into del_buf. del[] points into del_buf, so
 * the caller sizes it once for every list before the first call. */
static int add_deletes(struct http_props *p, const char *list, char *err, size_t errlen)
{
  size_t used = p->del_len, n = strlen(list);
  memcpy(p->del_buf + used, list, n + 1);
  p->del_len = used + n + 1;
  for (char *save = NULL, *t = strtok_r(p->del_buf + used, ",; ", &save); t;
       t = strtok_r(NULL, ",; ", &save)) {
    if (p->ndel == HTTP_PROPS_MAX) {
      snprintf(err, errlen, "too many properties to delete");
      return CORE_EINVAL;
    }
    p->del[p->ndel++] = t;
  }
  return 0;
}

/* Every `delete`: repeated form or query parameters (delete=a&delete=b, as
 * PBS's GUI sends them), lists inside one, and a JSON body's array. */
static int collect_deletes(struct http_request *req, struct http_props *p, char *err,
                           size_t errlen)
{
  const char *name, *value;
  yajl_val arr = core_json_get(http_req_json(req), "delete");
  size_t total = 0;
  for (int i = 0; http_req_param_at(req, i, &name, &value); i++)
    if (!strcmp(name, "delete"))
      total += strlen(value) + 1;
  if (arr && YAJL_IS_ARRAY(arr)) {
    for (size_t i = 0; i < arr->u.array.len; i++) {
      yajl_val v = arr->u.array.values[i];
      if (!YAJL_IS_STRING(v)) {
        snprintf(err, errlen, "parameter 'delete' must be a list of property names");
        return CORE_EINVAL;
      }
      total += strlen(v->u.string) + 1;
    }
  }
  if (total == 0)
    return 0;
  p->del_buf = core_malloc(total);
  int rc = 0;
  for (int i = 0; rc == 0 && http_req_param_at(req, i, &name, &value); i++)
    if (!strcmp(name, "delete"))
      rc = add_deletes(p, value, err, errlen);
  for (size_t i = 0; rc == 0 && arr && YAJL_IS_ARRAY(arr) && i < arr->u.array.len; i++)
    rc = add_deletes(p, arr->u.array.values[i]->u.string, err, errlen);
  return rc;
}

int http_props_collect(struct http_request *req, const char *const *skip,
                       http_prop_check_fn check, struct http_props *p, char *err,
                       size_t errlen)
{
  memset(p, 0, sizeof(*p));
  int rc = check ? collect_set(req, skip, check, p, err, errlen) : 0;
  if (rc < 0)
    return rc;
  rc = collect_deletes(req, p, err, errlen);
  if (rc < 0)
    return rc;
  p->digest = http_req_param(req, "digest");
  if (p->digest && !core_is_digest_hex(p->digest)) {
    snprintf(err, errlen, "digest must be 64 lowercase hex characters");
    return CORE_EINVAL;
  }
  return 0;
}

void http_props_free(struct http_props *p)
{
  core_free(p->del_buf);
  p->del_buf = NULL;
}
