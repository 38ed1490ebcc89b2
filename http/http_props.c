/* http_props.c: the property edits of a config-write request (http_props.h). */
#include "http/http_props.h"

#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"

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

int http_props_collect(struct http_request *req, const char *const *skip,
                       http_prop_check_fn check, struct http_props *p, char *err,
                       size_t errlen)
{
  const char *name, *value;
  memset(p, 0, sizeof(*p));
  for (int i = 0; check && http_req_param_at(req, i, &name, &value); i++) {
    if (skipped(name, skip))
      continue;
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
  const char *del = http_req_param(req, "delete");
  if (del) {
    p->del_buf = core_strdup(del);
    for (char *save = NULL, *t = strtok_r(p->del_buf, ",; ", &save); t;
         t = strtok_r(NULL, ",; ", &save)) {
      if (p->ndel == HTTP_PROPS_MAX) {
        snprintf(err, errlen, "too many properties to delete");
        return CORE_EINVAL;
      }
      p->del[p->ndel++] = t;
    }
  }
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
