/* http_router.c: method + path pattern matching.
 *
 * Patterns are split into segments once, at registration. Matching walks the
 * request path segment by segment without copying it, so a lookup costs a few
 * string compares per route; Cairn has a few dozen routes, which a linear scan
 * serves faster than any tree would.
 *
 * Matching allocates nothing: parameters are recorded as spans of the path
 * and decoded only for the route that is served, after authentication
 * (http__match_decode). A path is client-chosen, and every route is tried
 * against it, so anything allocated per candidate would be multiplied by the
 * number of routes for every request, answered or not.
 */
#include "http/http_internal.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_utf8.h"

#include <string.h>

void http__router_init(struct http_router *r)
{
  memset(r, 0, sizeof(*r));
}

void http__router_free(struct http_router *r)
{
  for (size_t i = 0; i < r->n; i++) {
    for (int j = 0; j < r->entries[i].nseg; j++) {
      core_free(r->entries[i].seg[j]);
      core_free(r->entries[i].name[j]);
    }
    core_free(r->entries[i].seg);
    core_free(r->entries[i].name);
    core_free(r->entries[i].responses);
    core_free(r->entries[i].latency);
  }
  core_free(r->entries);
  memset(r, 0, sizeof(*r));
}

void http__router_add(struct http_router *r, const struct http_route *route)
{
  if (r->n == r->cap) {
    r->cap = r->cap ? r->cap * 2 : 32;
    r->entries = core_realloc(r->entries, r->cap * sizeof(*r->entries));
  }
  struct http_route_entry *e = &r->entries[r->n++];
  memset(e, 0, sizeof(*e));
  e->route = *route;
  e->responses = core_calloc(HTTP_STATUS_SLOTS, sizeof(*e->responses));
  e->latency = core_new(struct core_hist);
  core_hist_init(e->latency, core_hist_latency_bounds, core_hist_latency_nbounds);
  const char *p = route->pattern;
  while (*p == '/')
    p++;
  while (*p) {
    const char *end = strchr(p, '/');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    e->seg = core_realloc(e->seg, (size_t)(e->nseg + 1) * sizeof(char *));
    e->name = core_realloc(e->name, (size_t)(e->nseg + 1) * sizeof(char *));
    if (len > 2 && p[0] == '{' && p[len - 1] == '}') {
      e->seg[e->nseg] = NULL;
      e->name[e->nseg] = core_strndup(p + 1, len - 2);
    } else {
      e->seg[e->nseg] = core_strndup(p, len);
      e->name[e->nseg] = NULL;
    }
    e->nseg++;
    p += len;
    while (*p == '/')
      p++;
  }
}

/* Matches path segments against one entry. On success fills the entry's
 * parameters as spans of `path`; nothing is allocated either way, so trying
 * every route costs no memory however long the path is. */
static int match_entry(const struct http_route_entry *e, const char *path, size_t len,
                       struct http_match *out)
{
  const char *p = path, *end = path + len;
  int nparams = 0;
  for (int i = 0; i < e->nseg; i++) {
    while (p < end && *p == '/')
      p++;
    if (p == end)
      return 0;
    const char *s = memchr(p, '/', (size_t)(end - p));
    size_t slen = s ? (size_t)(s - p) : (size_t)(end - p);
    const char *seg = e->seg[i];
    if (seg == NULL) {
      if (nparams == HTTP_MAX_PATH_PARAMS)
        return 0;
      out->params[nparams].name = e->name[i];
      out->params[nparams].raw = p;
      out->params[nparams].raw_len = slen;
      out->params[nparams].value = NULL;
      nparams++;
    } else if (strlen(seg) != slen || memcmp(seg, p, slen) != 0) {
      return 0;
    }
    p += slen;
  }
  while (p < end && *p == '/')
    p++;
  if (p != end)
    return 0;
  out->nparams = nparams;
  return 1;
}

void http__router_match(const struct http_router *r, enum http_method m, const char *path,
                       size_t len, struct http_match *out)
{
  memset(out, 0, sizeof(*out));
  out->status = 404;
  for (size_t i = 0; i < r->n; i++) {
    const struct http_route_entry *e = &r->entries[i];
    enum http_method rm = e->route.method;
    int method_ok = rm == m || (m == HTTP_METHOD_HEAD && rm == HTTP_METHOD_GET);
    struct http_match tmp;
    memset(&tmp, 0, sizeof(tmp));
    if (!match_entry(e, path, len, &tmp))
      continue;
    if (!method_ok) {
      out->status = 405;
      continue;
    }
    *out = tmp;
    out->entry = e;
    out->status = 0;
    out->decoded = NULL;
    return;
  }
}

int http__match_decode(struct http_match *m)
{
  if (m->nparams == 0 || m->decoded != NULL)
    return 0;
  size_t total = 0;
  for (int i = 0; i < m->nparams; i++)
    total += m->params[i].raw_len + 1;
  char *out = core_malloc(total);
  m->decoded = out;
  for (int i = 0; i < m->nparams; i++) {
    int n = http_url_decode(m->params[i].raw, m->params[i].raw_len, out, 0);
    /* Text from the network: valid UTF-8 without NUL (a NUL would let
     * "a%00b" pass name checks as "a"). */
    if (n < 0 || !core_utf8_valid(out, (size_t)n))
      return CORE_EPARSE;
    m->params[i].value = out;
    out += n + 1;
  }
  return 0;
}

void http__match_free(struct http_match *m)
{
  core_free(m->decoded);
  m->decoded = NULL;
  for (int i = 0; i < m->nparams; i++)
    m->params[i].value = NULL;
  m->nparams = 0;
}
