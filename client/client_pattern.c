/* client_pattern.c: gitignore-like patterns (see client_pattern.h). */
#include "client/client_pattern.h"

#include "core/core_alloc.h"
#include "core/core_error.h"

#include <string.h>

#define PATTERN_MAX 4096

void client_pattern_set_init(struct client_pattern_set *s)
{
  memset(s, 0, sizeof(*s));
}

void client_pattern_set_free(struct client_pattern_set *s)
{
  for (size_t i = 0; i < s->n; i++) {
    core_free(s->p[i].glob);
    core_free(s->p[i].scope);
  }
  core_free(s->p);
  memset(s, 0, sizeof(*s));
}

int client_pattern_add(struct client_pattern_set *s, const char *pattern, const char *scope)
{
  struct client_pattern p = {0};
  size_t len = strlen(pattern);
  if (len > PATTERN_MAX)
    return CORE_EINVAL;
  if (len == 0 || pattern[0] == '#')
    return 0;
  if (pattern[0] == '!') {
    p.negate = 1;
    pattern++;
    len--;
  }
  while (len > 0 && pattern[len - 1] == '/') {
    p.dir_only = 1;
    len--;
  }
  if (len > 0 && pattern[0] == '/') {
    p.anchored = 1;
    pattern++;
    len--;
  }
  if (len == 0)
    return 0;
  if (memchr(pattern, '/', len) != NULL)
    p.anchored = 1;
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 16;
    s->p = core_realloc(s->p, s->cap * sizeof(*s->p));
  }
  p.glob = core_strndup(pattern, len);
  p.scope = core_strdup(scope && strcmp(scope, ".") != 0 ? scope : "");
  s->p[s->n++] = p;
  return 0;
}

int client_pattern_add_lines(struct client_pattern_set *s, const char *text, size_t len,
                             const char *scope)
{
  size_t i = 0;
  while (i < len) {
    size_t j = i;
    while (j < len && text[j] != '\n')
      j++;
    size_t n = j - i;
    if (n > 0 && text[i + n - 1] == '\r')
      n--;
    /* trailing unescaped blanks are not part of a pattern (as in git) */
    while (n > 0 && text[i + n - 1] == ' ' && !(n > 1 && text[i + n - 2] == '\\'))
      n--;
    if (n > 0 && n <= PATTERN_MAX && memchr(text + i, '\0', n) == NULL) {
      char *line = core_strndup(text + i, n);
      int rc = client_pattern_add(s, line, scope);
      core_free(line);
      if (rc < 0)
        return rc;
    }
    i = j + 1;
  }
  return 0;
}

/* A "[...]" class at g (after '['): sets *end past ']' and returns whether
 * `c` is in it; returns -1 for an unterminated class ('[' is then literal). */
static int match_class(const char *g, char c, const char **end)
{
  int neg = 0, hit = 0;
  const char *p = g;
  if (*p == '!' || *p == '^') {
    neg = 1;
    p++;
  }
  if (*p == ']') { /* a leading ']' is literal */
    hit |= c == ']';
    p++;
  }
  while (*p && *p != ']') {
    char lo = *p;
    if (lo == '\\' && p[1])
      lo = *++p;
    if (p[1] == '-' && p[2] && p[2] != ']') {
      char hi = p[2];
      hit |= (unsigned char)c >= (unsigned char)lo && (unsigned char)c <= (unsigned char)hi;
      p += 3;
    } else {
      hit |= c == lo;
      p++;
    }
  }
  if (*p != ']')
    return -1;
  *end = p + 1;
  return (hit ^ neg) && c != '/';
}

int client_glob(const char *g, const char *s)
{
  while (*g) {
    if (g[0] == '*' && g[1] == '*') {
      /* "**" (and "**" followed by '/': zero or more whole components) */
      const char *rest = g + 2;
      while (*rest == '*')
        rest++;
      if (*rest == '/' && client_glob(rest + 1, s))
        return 1;
      for (const char *t = s;; t++) {
        if (client_glob(rest, t))
          return 1;
        if (*t == '\0')
          return 0;
      }
    }
    if (*g == '*') {
      for (const char *t = s;; t++) {
        if (client_glob(g + 1, t))
          return 1;
        if (*t == '\0' || *t == '/')
          return 0;
      }
    }
    if (*s == '\0')
      return 0;
    if (*g == '?') {
      if (*s == '/')
        return 0;
      g++;
      s++;
      continue;
    }
    if (*g == '[') {
      const char *end;
      int m = match_class(g + 1, *s, &end);
      if (m >= 0) {
        if (!m)
          return 0;
        g = end;
        s++;
        continue;
      }
    }
    if (*g == '\\' && g[1])
      g++;
    if (*g != *s)
      return 0;
    g++;
    s++;
  }
  return *s == '\0';
}

/* `path` relative to the pattern's scope, or NULL when outside it. */
static const char *in_scope(const struct client_pattern *p, const char *path)
{
  size_t n = strlen(p->scope);
  if (n == 0)
    return path;
  if (strncmp(path, p->scope, n) != 0 || path[n] != '/' || path[n + 1] == '\0')
    return NULL;
  return path + n + 1;
}

static int match_one(const struct client_pattern *p, const char *path, int is_dir)
{
  const char *rel;
  if (p->dir_only && !is_dir)
    return 0;
  if ((rel = in_scope(p, path)) == NULL)
    return 0;
  if (p->anchored)
    return client_glob(p->glob, rel);
  const char *slash = strrchr(rel, '/');
  return client_glob(p->glob, slash ? slash + 1 : rel);
}

int client_pattern_match(const struct client_pattern_set *s, const char *path, int is_dir)
{
  if (strcmp(path, ".") == 0)
    return 0;
  for (size_t i = s->n; i-- > 0;)
    if (match_one(&s->p[i], path, is_dir))
      return !s->p[i].negate;
  return 0;
}

int client_pattern_match_tree(const struct client_pattern_set *s, const char *path, int is_dir)
{
  size_t len = strlen(path);
  char *buf;
  int hit = 0;
  if (client_pattern_match(s, path, is_dir))
    return 1;
  buf = core_strndup(path, len);
  for (size_t i = len; i-- > 0 && !hit;) {
    if (buf[i] == '/') {
      buf[i] = '\0';
      hit = client_pattern_match(s, buf, 1);
    }
  }
  core_free(buf);
  return hit;
}
