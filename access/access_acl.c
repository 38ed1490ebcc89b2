/* access_acl.c: acl.cfg as a tree of path components, and PBS's privilege
 * resolution over it.
 *
 * Each node holds, per subject (user, token, or a PBS "@group" kept only so
 * that it survives a rewrite), the set of roles granted there and the subset
 * that propagates. A lookup walks the request's path from the root, one hash
 * lookup per component, so its cost does not depend on the size of the file.
 */
#include "access/access.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NO_ACCESS_BIT (1u << ACCESS_ROLE_NO_ACCESS)

static void node_init(struct access_node *n, const char *name)
{
  n->name = core_strdup(name);
  core_map_init(&n->children);
  core_map_init(&n->grants);
}

static void node_free(struct access_node *n)
{
  size_t it = 0;
  void *v;
  while (core_map_next(&n->children, &it, NULL, &v)) {
    node_free(v);
    core_free(v);
  }
  it = 0;
  while (core_map_next(&n->grants, &it, NULL, &v))
    core_free(v);
  core_map_free(&n->children);
  core_map_free(&n->grants);
  core_free(n->name);
}

void access_acl_init(struct access_acl *acl)
{
  node_init(&acl->root, "");
}

void access_acl_free(struct access_acl *acl)
{
  node_free(&acl->root);
  memset(acl, 0, sizeof(*acl));
}

/* ---- paths ---- */

/* Splits a path into at most `max` components pointing into `copy` (a
 * writable copy of the path). Returns the count, or -1 when there are more. */
static int split_path(char *copy, const char **comp, int max)
{
  int n = 0;
  char *save = NULL;
  for (char *t = strtok_r(copy, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
    if (n == max)
      return -1;
    comp[n++] = t;
  }
  return n;
}

#define MAX_COMPONENTS (2 + ACCESS_NS_MAX_DEPTH + 2)

static int component_ok(const char *c)
{
  if (strcmp(c, ".") == 0 || strcmp(c, "..") == 0)
    return 0;
  for (const unsigned char *p = (const unsigned char *)c; *p; p++)
    if (*p < 0x20 || *p == 0x7f || *p == ':' || *p == ',')
      return 0;
  return 1;
}

int access_path_valid(const char *path)
{
  if (path[0] != '/' || strlen(path) >= ACCESS_PATH_MAX)
    return CORE_EINVAL;
  char copy[ACCESS_PATH_MAX];
  snprintf(copy, sizeof(copy), "%s", path);
  const char *c[MAX_COMPONENTS];
  int n = split_path(copy, c, MAX_COMPONENTS);
  if (n < 0)
    return CORE_EINVAL;
  for (int i = 0; i < n; i++)
    if (!component_ok(c[i]))
      return CORE_EINVAL;
  if (n == 0)
    return 0;
  if (strcmp(c[0], "access") == 0)
    return n == 1 || (n == 2 && (!strcmp(c[1], "acl") || !strcmp(c[1], "users")))
               ? 0
               : CORE_EINVAL;
  if (strcmp(c[0], "datastore") == 0)
    return n <= 2 + ACCESS_NS_MAX_DEPTH ? 0 : CORE_EINVAL;
  if (strcmp(c[0], "remote") == 0)
    return n <= 3 + ACCESS_NS_MAX_DEPTH ? 0 : CORE_EINVAL;
  if (strcmp(c[0], "system") == 0)
    return n <= 2 ? 0 : CORE_EINVAL;
  return CORE_EINVAL;
}

int access_datastore_path(char *buf, size_t len, const char *store, const char *ns)
{
  int n;
  if (store == NULL)
    n = snprintf(buf, len, "/datastore");
  else if (ns == NULL || ns[0] == '\0')
    n = snprintf(buf, len, "/datastore/%s", store);
  else
    n = snprintf(buf, len, "/datastore/%s/%s", store, ns);
  return n < 0 || (size_t)n >= len ? CORE_ETOOBIG : 0;
}

/* ---- building ---- */

static struct access_node *child_get(struct access_node *n, const char *name, int create)
{
  struct access_node *c = core_map_get(&n->children, name);
  if (c == NULL && create) {
    c = core_new(struct access_node);
    node_init(c, name);
    core_map_put(&n->children, name, c);
  }
  return c;
}

static struct access_node *node_for(struct access_acl *acl, const char *path, int create)
{
  char copy[ACCESS_PATH_MAX];
  snprintf(copy, sizeof(copy), "%s", path);
  const char *c[MAX_COMPONENTS];
  int n = split_path(copy, c, MAX_COMPONENTS);
  struct access_node *node = &acl->root;
  for (int i = 0; i < n && node; i++)
    node = child_get(node, c[i], create);
  return node;
}

const struct access_node *access_acl_find(const struct access_acl *acl, const char *path)
{
  return node_for((struct access_acl *)acl, path, 0);
}

/* PBS's group entries ("@name") are kept, never matched: Cairn has no groups.
 * A group name follows the user-name rules: 1 to 64 bytes of UTF-8 without
 * blanks, control characters or the separators of an acl.cfg line. */
static int group_valid(const char *s)
{
  size_t len = strlen(s);
  if (len < 1 || len > 64 || !core_utf8_valid(s, len))
    return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c <= 0x20 || c == 0x7f || strchr(":/@!,\"\\", c) != NULL)
      return 0;
  }
  return 1;
}

static int subject_valid(const char *s)
{
  return s[0] == '@' ? group_valid(s + 1) : access_authid_valid(s);
}

int access_acl_set(struct access_acl *acl, const char *path, const char *authid, int role,
                   int propagate, int del)
{
  if (access_path_valid(path) < 0 || role < 0 || role >= ACCESS_ROLE_COUNT)
    return CORE_EINVAL;
  if (!subject_valid(authid))
    return CORE_ENAME;
  struct access_node *node = node_for(acl, path, !del);
  if (node == NULL)
    return 0;
  struct access_grant *g = core_map_get(&node->grants, authid);
  uint32_t bit = 1u << role;
  if (del) {
    if (g == NULL)
      return 0;
    g->roles &= ~bit;
    g->propagate &= ~bit;
    if (g->roles == 0)
      core_free(core_map_del(&node->grants, authid));
    return 0;
  }
  if (g == NULL) {
    g = core_new(struct access_grant);
    core_map_put(&node->grants, authid, g);
  }
  g->roles |= bit;
  if (propagate)
    g->propagate |= bit;
  else
    g->propagate &= ~bit;
  return 0;
}

static int subject_matches(const char *key, const char *authid, size_t alen, int with_tokens)
{
  if (strcmp(key, authid) == 0)
    return 1;
  return with_tokens && strncmp(key, authid, alen) == 0 && key[alen] == '!';
}

static void remove_subject(struct access_node *n, const char *authid, int with_tokens)
{
  size_t alen = strlen(authid);
  size_t it = 0;
  const char *k;
  void *v;
  /* Collect first: deleting while iterating would skip slots. */
  char **doomed = NULL;
  size_t nd = 0;
  while (core_map_next(&n->grants, &it, &k, &v)) {
    if (subject_matches(k, authid, alen, with_tokens)) {
      doomed = core_realloc(doomed, (nd + 1) * sizeof(*doomed));
      doomed[nd++] = core_strdup(k);
    }
  }
  for (size_t i = 0; i < nd; i++) {
    core_free(core_map_del(&n->grants, doomed[i]));
    core_free(doomed[i]);
  }
  core_free(doomed);
  it = 0;
  while (core_map_next(&n->children, &it, NULL, &v))
    remove_subject(v, authid, with_tokens);
}

void access_acl_remove_subject(struct access_acl *acl, const char *authid, int with_tokens)
{
  remove_subject(&acl->root, authid, with_tokens);
}

/* ---- parsing ---- */

static int parse_line(struct access_acl *acl, char *line, char *err, size_t errlen)
{
  char *f[5];
  char *p = line;
  for (int i = 0; i < 4; i++) {
    char *colon = strchr(p, ':');
    if (colon == NULL) {
      snprintf(err, errlen, "expected acl:<propagate>:<path>:<auth-ids>:<roles>");
      return CORE_EPARSE;
    }
    *colon = '\0';
    f[i] = p;
    p = colon + 1;
  }
  f[4] = p;
  if (strcmp(f[0], "acl") != 0) {
    snprintf(err, errlen, "unknown line type '%.32s'", f[0]);
    return CORE_EPARSE;
  }
  if (strcmp(f[1], "0") != 0 && strcmp(f[1], "1") != 0) {
    snprintf(err, errlen, "propagate must be 0 or 1");
    return CORE_EPARSE;
  }
  if (access_path_valid(f[2]) < 0) {
    snprintf(err, errlen, "invalid path '%.64s'", f[2]);
    return CORE_EPARSE;
  }
  char *save1 = NULL;
  for (char *who = strtok_r(f[3], ",", &save1); who; who = strtok_r(NULL, ",", &save1)) {
    char roles[CORE_CONFIG_MAX_LINE];
    snprintf(roles, sizeof(roles), "%s", f[4]);
    char *save2 = NULL;
    for (char *r = strtok_r(roles, ",", &save2); r; r = strtok_r(NULL, ",", &save2)) {
      int role = access_role_lookup(r);
      if (role < 0) {
        snprintf(err, errlen, "unknown role '%.32s'", r);
        return CORE_EPARSE;
      }
      if (access_acl_set(acl, f[2], who, role, f[1][0] == '1', 0) < 0) {
        snprintf(err, errlen, "invalid auth id '%.64s'", who);
        return CORE_EPARSE;
      }
    }
  }
  return 0;
}

int access_acl_parse(struct access_acl *acl, const char *text, size_t len, char *err,
                     size_t errlen)
{
  char dummy[1];
  if (err == NULL) {
    err = dummy;
    errlen = sizeof(dummy);
  }
  if (len > CORE_CONFIG_MAX_SIZE)
    return CORE_ETOOBIG;
  int lineno = 0;
  const char *p = text, *end = text + len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
    lineno++;
    while (l > 0 && (p[l - 1] == '\r' || p[l - 1] == ' ' || p[l - 1] == '\t'))
      l--;
    while (l > 0 && (*p == ' ' || *p == '\t')) {
      p++;
      l--;
    }
    if (l >= CORE_CONFIG_MAX_LINE || memchr(p, '\0', l) != NULL) {
      snprintf(err, errlen, "line %d: too long or binary", lineno);
      goto fail;
    }
    if (l > 0 && p[0] != '#') {
      char line[CORE_CONFIG_MAX_LINE];
      memcpy(line, p, l);
      line[l] = '\0';
      char why[200];
      if (parse_line(acl, line, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "line %d: %s", lineno, why);
        goto fail;
      }
    }
    p = nl ? nl + 1 : end;
  }
  return 0;
fail:
  access_acl_free(acl);
  access_acl_init(acl);
  return CORE_EPARSE;
}

/* ---- writing and visiting ---- */

static int cmp_str(const void *a, const void *b)
{
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The keys of a map, sorted (free the array, not the strings). */
static const char **sorted_keys(const struct core_map *m, size_t *n)
{
  const char **keys = core_malloc((m->count + 1) * sizeof(*keys));
  size_t it = 0, i = 0;
  const char *k;
  while (core_map_next(m, &it, &k, NULL))
    keys[i++] = k;
  qsort(keys, i, sizeof(*keys), cmp_str);
  *n = i;
  return keys;
}

static void visit_node(const struct access_node *n, char *path, size_t plen,
                       access_acl_visit_fn fn, void *arg)
{
  const char *shown = plen ? path : "/";
  size_t nk;
  const char **keys = sorted_keys(&n->grants, &nk);
  for (size_t i = 0; i < nk; i++) {
    const struct access_grant *g = core_map_get(&n->grants, keys[i]);
    for (int r = 0; r < ACCESS_ROLE_COUNT; r++)
      if (g->roles & (1u << r))
        fn(arg, shown, keys[i], r, (g->propagate >> r) & 1);
  }
  core_free(keys);
  const char **kids = sorted_keys(&n->children, &nk);
  for (size_t i = 0; i < nk; i++) {
    size_t l = strlen(kids[i]);
    if (plen + 1 + l >= ACCESS_PATH_MAX)
      continue;
    path[plen] = '/';
    memcpy(path + plen + 1, kids[i], l + 1);
    visit_node(core_map_get(&n->children, kids[i]), path, plen + 1 + l, fn, arg);
    path[plen] = '\0';
  }
  core_free(kids);
}

void access_acl_visit(const struct access_acl *acl, access_acl_visit_fn fn, void *arg)
{
  char path[ACCESS_PATH_MAX] = "";
  visit_node(&acl->root, path, 0, fn, arg);
}

/* Writing groups the visit's (path, auth id) runs into one line per
 * propagate flag. */
struct writer {
  struct core_buf *out;
  int rc;
  char path[ACCESS_PATH_MAX];
  char authid[ACCESS_AUTHID_MAX + 64];
  uint32_t roles[2]; /* [propagate] */
};

static void flush_line(struct writer *w)
{
  for (int prop = 1; prop >= 0; prop--) {
    if (w->roles[prop] == 0 || w->rc)
      continue;
    char line[CORE_CONFIG_MAX_LINE];
    int n = snprintf(line, sizeof(line), "acl:%d:%s:%s:", prop, w->path, w->authid);
    int first = 1;
    for (int r = 0; r < ACCESS_ROLE_COUNT && n > 0 && (size_t)n < sizeof(line); r++) {
      if (!(w->roles[prop] & (1u << r)))
        continue;
      n += snprintf(line + n, sizeof(line) - (size_t)n, "%s%s", first ? "" : ",",
                    access_role_name(r));
      first = 0;
    }
    if (n < 0 || (size_t)n >= sizeof(line) - 1) {
      w->rc = CORE_ETOOBIG;
      return;
    }
    line[n++] = '\n';
    w->rc = core_buf_append(w->out, line, (size_t)n);
  }
  w->roles[0] = w->roles[1] = 0;
}

static void write_entry(void *arg, const char *path, const char *authid, int role,
                        int propagate)
{
  struct writer *w = arg;
  if (strcmp(path, w->path) != 0 || strcmp(authid, w->authid) != 0) {
    flush_line(w);
    snprintf(w->path, sizeof(w->path), "%s", path);
    snprintf(w->authid, sizeof(w->authid), "%s", authid);
  }
  w->roles[propagate ? 1 : 0] |= 1u << role;
}

int access_acl_write(const struct access_acl *acl, struct core_buf *out)
{
  struct writer w;
  memset(&w, 0, sizeof(w));
  w.out = out;
  access_acl_visit(acl, write_entry, &w);
  flush_line(&w);
  return w.rc;
}

/* ---- resolution ---- */

struct acc {
  uint32_t roles;
  uint32_t propagate;
};

/* PBS's rule for one node: the subject's entries (at an intermediate node
 * only the propagating ones), if any, replace what was accumulated, and
 * NoAccess among them stands alone. */
static void take(const struct access_node *n, const char *authid, int leaf, struct acc *acc)
{
  const struct access_grant *g = core_map_get(&n->grants, authid);
  if (g == NULL)
    return;
  uint32_t roles = leaf ? g->roles : g->propagate;
  if (roles == 0)
    return;
  if (roles & NO_ACCESS_BIT) {
    acc->roles = NO_ACCESS_BIT;
    acc->propagate = 0;
    return;
  }
  acc->roles = roles;
  acc->propagate = g->propagate & roles;
}

static uint32_t privs_of(uint32_t roles)
{
  if (roles & NO_ACCESS_BIT)
    return 0;
  uint32_t p = 0;
  for (int r = 0; r < ACCESS_ROLE_COUNT; r++)
    if (roles & (1u << r))
      p |= access_role_privs(r);
  return p;
}

uint32_t access_acl_privs(const struct access_acl *acl, const char *authid, const char *path,
                          uint32_t *propagating)
{
  char copy[ACCESS_PATH_MAX];
  struct acc acc = {0, 0};
  const char *c[MAX_COMPONENTS];
  int n = -1;
  if (strlen(path) < sizeof(copy)) {
    memcpy(copy, path, strlen(path) + 1);
    n = split_path(copy, c, MAX_COMPONENTS);
  }
  if (n >= 0) {
    const struct access_node *node = &acl->root;
    for (int i = 0;; i++) {
      take(node, authid, i == n, &acc);
      if (i == n)
        break;
      node = core_map_get(&node->children, c[i]);
      if (node == NULL)
        break;
    }
  }
  if (propagating)
    *propagating = privs_of(acc.propagate);
  return privs_of(acc.roles);
}

static int subtree_has(const struct access_node *n, const char *authid)
{
  const struct access_grant *g = core_map_get(&n->grants, authid);
  if (g && (g->roles & ~NO_ACCESS_BIT))
    return 1;
  size_t it = 0;
  void *v;
  while (core_map_next(&n->children, &it, NULL, &v))
    if (subtree_has(v, authid))
      return 1;
  return 0;
}

int access_acl_any_below(const struct access_acl *acl, const char *authid, const char *path)
{
  if (access_acl_privs(acl, authid, path, NULL))
    return 1;
  const struct access_node *n = access_acl_find(acl, path);
  return n != NULL && subtree_has(n, authid);
}
