/* store_dspath.c: where a new datastore may live (store_dspath.h). */
#include "store/store_dspath.h"

#include "core/core_error.h"
#include "store/store_path.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* System directories: refused with everything below them. On merged-/usr
 * systems /bin, /lib and /sbin resolve into /usr, which is here too. */
static const char *const deny_tree[] = {
  "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
  "/run", "/sbin", "/sys", "/usr", "/var/cache", "/var/lock", "/var/log", "/var/run",
  "/var/spool",
};

/* Directories that hold other things beside a datastore: refused themselves,
 * while a subdirectory (/var/lib/cairn, /mnt/backup, /tmp/test) is fine. */
static const char *const deny_self[] = {
  "/", "/home", "/media", "/mnt", "/opt", "/root", "/srv", "/tmp", "/var", "/var/lib",
  "/var/tmp",
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* 1 if `path` is `dir` or below it (component-wise). */
static int is_within(const char *path, const char *dir)
{
  size_t n = strlen(dir);
  if (n == 1) /* "/" holds every absolute path */
    return path[0] == '/';
  return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

int store_dspath_overlap(const char *a, const char *b)
{
  return is_within(a, b) || is_within(b, a);
}

int store_dspath_denied(const char *path)
{
  for (size_t i = 0; i < NELEM(deny_self); i++)
    if (strcmp(path, deny_self[i]) == 0)
      return 1;
  for (size_t i = 0; i < NELEM(deny_tree); i++)
    if (is_within(path, deny_tree[i]))
      return 1;
  return 0;
}

/* Rewrites the absolute `path` into `out` without ".", ".." or empty
 * components ("/" for the root). */
static int lexical(const char *path, char *out, size_t outlen)
{
  size_t o = 0;
  const char *p = path;
  while (*p) {
    while (*p == '/')
      p++;
    const char *end = strchrnul(p, '/');
    size_t n = (size_t)(end - p);
    if (n == 0 || (n == 1 && p[0] == '.')) {
      /* nothing */
    } else if (n == 2 && p[0] == '.' && p[1] == '.') {
      while (o > 0 && out[o - 1] != '/')
        o--;
      if (o > 0)
        o--; /* the slash before the dropped component */
    } else {
      if (o + 1 + n + 1 > outlen)
        return CORE_ETOOBIG;
      out[o++] = '/';
      memcpy(out + o, p, n);
      o += n;
    }
    p = end;
  }
  if (o == 0)
    out[o++] = '/';
  out[o] = '\0';
  return 0;
}

int store_dspath_normalize(const char *path, char *out, size_t outlen)
{
  char lex[STORE_PATH_MAX], real[PATH_MAX];
  if (path == NULL || path[0] != '/')
    return CORE_EINVAL;
  int rc = lexical(path, lex, sizeof(lex));
  if (rc < 0)
    return rc;
  /* Walk up to the longest prefix that exists; `cut` is where the part that
   * does not exist yet starts (always at a slash, or the end). */
  size_t cut = strlen(lex);
  for (;;) {
    char save = lex[cut];
    lex[cut] = '\0';
    const char *probe = cut == 0 ? "/" : lex;
    char *r = realpath(probe, real);
    int err = errno;
    lex[cut] = save;
    if (r != NULL)
      break;
    if (err != ENOENT || cut == 0)
      return -err;
    while (cut > 0 && lex[cut - 1] != '/')
      cut--;
    cut--; /* onto the slash; 0 when the root's child is missing */
  }
  const char *rest = lex + cut;
  size_t rn = strlen(real), tn = strlen(rest);
  if (rn == 1 && tn > 0)
    rn = 0; /* "/" + "/x" must not become "//x" */
  if (rn + tn + 1 > outlen)
    return CORE_ETOOBIG;
  memcpy(out, real, rn);
  memcpy(out + rn, rest, tn + 1);
  return 0;
}

int store_dspath_state(const char *path)
{
  struct stat st;
  if (stat(path, &st) < 0)
    return errno == ENOENT ? STORE_DSPATH_MISSING : -errno;
  if (!S_ISDIR(st.st_mode))
    return CORE_EFORMAT;
  DIR *d = opendir(path);
  if (d == NULL)
    return -errno;
  int state = STORE_DSPATH_EMPTY;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    const char *n = e->d_name;
    if (!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, "lost+found"))
      continue;
    if (!strcmp(n, STORE_CHUNK_DIR)) {
      state = STORE_DSPATH_CHUNKSTORE;
      break;
    }
    state = STORE_DSPATH_OTHER;
  }
  closedir(d);
  return state;
}
