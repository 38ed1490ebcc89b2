/* client_pattern.h: gitignore-like path patterns for --exclude, --include,
 * `find` and .cairnexclude files.
 *
 * DESIGN. Paths are archive paths relative to the root ("a/b/c"; the root
 * itself is "."). A pattern is matched as gitignore does:
 *   - a pattern without a '/' (other than a trailing one) matches the last
 *     component at any depth ("*.o", "cache");
 *   - a pattern with a '/' in it, or a leading '/', is anchored at the root
 *     ("/build", "src/x.c"; a double star matches any number of
 *     components);
 *   - a trailing '/' matches directories only;
 *   - a leading '!' re-includes what an earlier pattern excluded; the last
 *     pattern that matches decides;
 *   - '*' and '?' never match '/', "[...]" is a character class ("[!...]"
 *     negated), '\' quotes the next character.
 * A set can be scoped to a directory (a .cairnexclude file's patterns apply
 * below the directory holding it, relative to it).
 *
 * Pure memory work; a set is used by one thread at a time.
 */
#ifndef CLIENT_PATTERN_H
#define CLIENT_PATTERN_H

#include <stddef.h>

struct client_pattern {
  char *glob;    /* owned: without '!', leading '/' and trailing '/' */
  char *scope;   /* owned: the directory it applies below ("" for the root) */
  int negate;    /* '!' */
  int anchored;  /* matched against the whole path (below scope) */
  int dir_only;  /* trailing '/' */
};

struct client_pattern_set {
  struct client_pattern *p;
  size_t n, cap;
};

void client_pattern_set_init(struct client_pattern_set *s);
void client_pattern_set_free(struct client_pattern_set *s);

/* Adds one pattern, applying below `scope` (NULL or "" for the root). Empty
 * patterns and lines starting with '#' are ignored (returns 0). Returns 0 or
 * CORE_EINVAL (too long). */
int client_pattern_add(struct client_pattern_set *s, const char *pattern, const char *scope);

/* Adds the lines of a .cairnexclude file's contents (`len` bytes). */
int client_pattern_add_lines(struct client_pattern_set *s, const char *text, size_t len,
                             const char *scope);

/* 1 if the last pattern matching `path` (a directory when `is_dir`) is a
 * plain one, 0 if none matches or the last one is negated. */
int client_pattern_match(const struct client_pattern_set *s, const char *path, int is_dir);

/* 1 if `path` or one of its parent directories matches (the whole subtree
 * of a matched directory is selected), else 0. */
int client_pattern_match_tree(const struct client_pattern_set *s, const char *path, int is_dir);

/* The glob matcher alone: 1 if `glob` matches all of `s` ('*' stops at '/',
 * "**" does not). */
int client_glob(const char *glob, const char *s);

#endif
