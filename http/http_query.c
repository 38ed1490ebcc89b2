/* http_query.c: typed parameters for handlers (http.h). */
#include "http/http.h"

#include "core/core_error.h"
#include "core/core_parse.h"

#include <inttypes.h>

int http_req_param_bool(struct http_request *req, const char *name, int def, int *out)
{
  const char *v = http_req_param(req, name);
  *out = def;
  if (v == NULL || core_parse_bool(v, out) == 0)
    return 0;
  *out = def;
  http_respond_error(req, 400, "parameter %s: must be a boolean (1/0, true/false, yes/no, on/off)",
                     name);
  return CORE_EINVAL;
}

int http_req_param_int(struct http_request *req, const char *name, int64_t min, int64_t max,
                       int64_t def, int64_t *out)
{
  const char *v = http_req_param(req, name);
  int64_t n;
  *out = def;
  if (v == NULL)
    return 0;
  if (core_parse_i64(v, &n) < 0 || n < min || n > max) {
    http_respond_error(req, 400, "parameter %s: must be an integer in %" PRId64 "..%" PRId64,
                       name, min, max);
    return CORE_EINVAL;
  }
  *out = n;
  return 0;
}
