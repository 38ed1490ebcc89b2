/* http_router.c: method + path pattern matching.
 *
 * Patterns are split into segments once, at registration. Matching walks the
 * request path segment by segment without copying it, so a lookup costs a few
 * string compares per route; Cairn has a few dozen routes, which a linear scan
 * serves faster than any tree would.
 */
#include "http/http_internal.h"

#include "core/core_alloc.h"
#include "core/core_error.h"

#include <string.h>

void http_router_init(struct http_router *r)
{
  memset(r, 0, sizeof(*r));
}

void http_router_free(struct http_router *r)
{
  for (size_t i = 0; i < r->n; i++) {
    for (int j = 0; j < r->entries[i].nseg; j++) {
      core_free(r->entries[i].seg[j]);
      core_free(r->entries[i].name[j]);
    }
    core_free(r->entries[i].seg);
    core_free(r->entries[i].name);
  }
  core_free(r->entries);
  memset(r, 0, sizeof(*r));
}

void http_router_add(struct http_router *r, const struct http_route *route)
{
  if (r->n == r->cap) {
    r->cap = r->cap ? r->cap * 2 : 32;
    r->entries = core_realloc(r->entries, r->cap * sizeof(*r->entries));
  }
  struct http_route_entry *e = &r->entries[r->n++];
  memset(e, 0, sizeof(*e));
  e->route = *route;
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

/* Matches path segments against one entry; fills params on success. */
static int match_entry(const struct http_route_entry *e, const char *path, size_t len,
                       struct http_match *out)
{
  const char *p = path, *end = path + len;
  int nparams = 0;
  for (int i = 0; i < e->nseg; i++) {
    while (p < end && *p == '/')
      p++;
    if (p == end)
      goto fail; /* the path is shorter: free the parameters decoded so far */
    const char *s = memchr(p, '/', (size_t)(end - p));
    size_t slen = s ? (size_t)(s - p) : (size_t)(end - p);
    const char *seg = e->seg[i];
    if (seg == NULL) {
      if (nparams == HTTP_MAX_PATH_PARAMS)
        goto fail;
      char *v = core_malloc(slen + 1);
      int n = http_url_decode(p, slen, v, 0);
      /* A decoded NUL would let "a%00b" pass as "a" to name checks. */
      if (n < 0 || memchr(v, '\0', (size_t)n) != NULL) {
        /* Still this route, but the parameter cannot be used as a name. */
        out->bad_param = 1;
        v[0] = '\0';
      }
      out->params[nparams].name = e->name[i];
      out->params[nparams].value = v;
      nparams++;
    } else if (strlen(seg) != slen || memcmp(seg, p, slen) != 0) {
      goto fail;
    }
    p += slen;
  }
  while (p < end && *p == '/')
    p++;
  if (p != end)
    goto fail;
  out->nparams = nparams;
  return 1;
fail:
  for (int i = 0; i < nparams; i++)
    core_free(out->params[i].value);
  return 0;
}

void http_router_match(const struct http_router *r, enum http_method m, const char *path,
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
      http_match_free(&tmp);
      continue;
    }
    *out = tmp;
    out->entry = e;
    out->status = tmp.bad_param ? 400 : 0;
    return;
  }
}

void http_match_free(struct http_match *m)
{
  for (int i = 0; i < m->nparams; i++)
    core_free(m->params[i].value);
  m->nparams = 0;
}
