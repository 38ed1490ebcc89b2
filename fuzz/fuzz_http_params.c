/* fuzz_http_params.c: query-string, form and JSON-body parameters, and the
 * property edits of config-write requests built on them.
 *
 * Input: a flags byte, then NUL-separated query string, Content-Type value
 * and body (the body is the rest of the input, NULs included). The request
 * is assembled the way http_server.c leaves it before dispatch, then
 * http__req_parse_params runs, and on success http_props_collect with the
 * real property checks of datastore.cfg and s3.cfg. Checked:
 * - every parameter is found again by name (the first occurrence wins, so
 *   the value may differ only if the name repeats), with no NUL inside;
 * - props: no more than HTTP_PROPS_MAX entries, no control names among the
 *   properties, every property passed the check, digest is 64 hex. */
#include "fuzz.h"

#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "http/http_internal.h"
#include "http/http_props.h"
#include "s3/s3_config.h"
#include "store/store_dsconfig.h"

enum {
  F_RAW_BODY = 1 << 0,   /* the route takes a raw body */
  F_NO_CTYPE = 1 << 1,   /* no Content-Type header */
  F_S3_CHECK = 1 << 2,   /* s3.cfg properties instead of datastore.cfg */
  F_REMOVAL = 1 << 3,    /* no check function: a removal, only digest counts */
};

static void add_header(struct http_request *req, const char *name, const char *value,
                       size_t vlen)
{
  struct http_header *h = &req->headers[req->nheaders++];
  h->name_off = (uint32_t)req->head.len;
  h->name_len = (uint32_t)strlen(name);
  core_buf_append(&req->head, name, strlen(name) + 1);
  h->value_off = (uint32_t)req->head.len;
  h->value_len = (uint32_t)vlen;
  core_buf_append(&req->head, value, vlen);
  core_buf_append(&req->head, "", 1);
}

static void check_params(const struct http_request *req)
{
  const char *name, *value;
  int i;
  for (i = 0; http_req_param_at(req, i, &name, &value); i++) {
    const char *first = http_req_param(req, name);
    FUZZ_ASSERT(first != NULL);
    /* Repeated names are kept in order (every delete=... applies); a plain
     * lookup answers the first of them. */
    int j;
    const char *n2, *v2;
    for (j = 0; j <= i; j++) {
      FUZZ_ASSERT(http_req_param_at(req, j, &n2, &v2));
      if (strcmp(n2, name) == 0)
        break;
    }
    FUZZ_ASSERT(first == v2);
  }
  FUZZ_ASSERT(i <= HTTP_MAX_PARAMS);
}

static void check_props(struct http_request *req, unsigned flags)
{
  static const char *const skip[] = {"name", "reuse", NULL};
  http_prop_check_fn check = (flags & F_S3_CHECK) ? s3_config_check_prop
                                                  : store_dsconfig_check_prop;
  if (flags & F_REMOVAL)
    check = NULL;
  struct http_props p;
  char err[256] = "";
  int rc = http_props_collect(req, skip, check, &p, err, sizeof(err));
  FUZZ_ASSERT(p.nset <= HTTP_PROPS_MAX && p.ndel <= HTTP_PROPS_MAX);
  if (rc == 0) {
    for (size_t i = 0; i < p.nset; i++) {
      FUZZ_ASSERT(check != NULL);
      FUZZ_ASSERT(strcmp(p.set[i].key, "digest") && strcmp(p.set[i].key, "delete") &&
                  strcmp(p.set[i].key, "name") && strcmp(p.set[i].key, "reuse"));
      char e2[256];
      FUZZ_ASSERT(check(p.set[i].key, p.set[i].value, e2, sizeof(e2)) == 0);
    }
    for (size_t i = 0; i < p.ndel; i++)
      FUZZ_ASSERT(p.del[i][0] != '\0' && strpbrk(p.del[i], ",; ") == NULL);
    FUZZ_ASSERT(p.digest == NULL || core_is_digest_hex(p.digest));
  } else {
    FUZZ_ASSERT(rc < 0 && err[0] != '\0');
  }
  http_props_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  unsigned flags = data[0];
  struct fuzz_fields ff;
  fuzz_split(&ff, data + 1, size - 1);
  const char *query = ff.f[0], *ctype = ff.f[1];
  /* The body is everything after the second NUL, NULs included. */
  size_t used = ff.len[0] + 1 + ff.len[1] + 1;
  const uint8_t *body = data + 1 + used;
  size_t body_len = size - 1 > used ? size - 1 - used : 0;
  if (ff.n < 3)
    body_len = 0;

  struct http_route_entry entry;
  memset(&entry, 0, sizeof(entry));
  entry.route.method = HTTP_METHOD_PUT;
  entry.route.flags = (flags & F_RAW_BODY) ? HTTP_ROUTE_RAW_BODY : 0;

  struct http_request *req = core_calloc(1, sizeof(*req));
  core_buf_init(&req->head, 1 << 20);
  core_buf_init(&req->body, 1 << 20);
  /* As in http_server.c: the query lives inside head (set once head is
   * complete, since appending may move it). */
  core_buf_append(&req->head, query, ff.len[0] + 1);
  if (!(flags & F_NO_CTYPE))
    add_header(req, "content-type", ctype, ff.len[1]);
  req->query = req->head.base;
  if (body_len)
    core_buf_append(&req->body, body, body_len);
  req->match.entry = &entry;

  int rc = http__req_parse_params(req);
  if (rc == 0) {
    check_params(req);
    check_props(req, flags);
  }
  req->match.entry = NULL;
  http__req_free(req);
  fuzz_fields_free(&ff);
  return 0;
}
