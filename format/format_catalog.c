/* format_catalog.c: catalog path order, path and name rules (see format_catalog.h). */
#include "format/format_catalog.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "format/format_blob.h"
#include "format/format_catalog_int.h"
#include "format/format_name.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int format_catalog_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
  int aroot = alen == 1 && a[0] == '.', broot = blen == 1 && b[0] == '.';
  if (aroot || broot)
    return broot - aroot;
  size_t n = alen < blen ? alen : blen;
  int c = memcmp(a, b, n);
  if (c != 0)
    return c;
  return alen < blen ? -1 : alen > blen;
}

int format_catalog_safe_path(const char *path, size_t len)
{
  if (len == 0 || len > FORMAT_CATALOG_PATH_MAX || memchr(path, '\0', len) != NULL)
    return 0;
  if (len == 1 && path[0] == '.')
    return 1;
  size_t i = 0;
  while (i <= len) {
    size_t j = i;
    while (j < len && path[j] != '/')
      j++;
    size_t n = j - i;
    if (n == 0 || (n == 1 && path[i] == '.') || (n == 2 && path[i] == '.' && path[i + 1] == '.'))
      return 0;
    i = j + 1;
  }
  return 1;
}

char format_catalog_type_char(uint8_t type)
{
  static const char t[] = "?-dlhcbps";
  return type <= FORMAT_CATALOG_SOCK ? t[type] : '?';
}

const char *format_catalog_type_name(uint8_t type)
{
  static const char *const n[] = {"unknown", "file", "directory", "symlink", "hardlink",
                                  "chardev", "blockdev", "fifo", "socket"};
  return type <= FORMAT_CATALOG_SOCK ? n[type] : n[0];
}

int format_catalog_is_index(const char *name)
{
  size_t n = strlen(name);
  return n > 13 && strcmp(name + n - 13, ".catalog.didx") == 0;
}

int format_catalog_name(const char *archive, char *out, size_t outlen)
{
  size_t n = strlen(archive);
  if (n <= 5 || strcmp(archive + n - 5, ".didx") != 0 || format_catalog_is_index(archive))
    return CORE_ENAME;
  int k = snprintf(out, outlen, "%.*s.catalog.blob", (int)(n - 5), archive);
  if (k < 0 || (size_t)k >= outlen || format_name_archive(out) != FORMAT_ARCHIVE_BLOB)
    return CORE_ENAME;
  return 0;
}

int format_catalog_index_name(const char *archive, char *out, size_t outlen)
{
  size_t n = strlen(archive);
  if (n <= 5 || strcmp(archive + n - 5, ".didx") != 0 || format_catalog_is_index(archive))
    return CORE_ENAME;
  int k = snprintf(out, outlen, "%.*s.catalog.didx", (int)(n - 5), archive);
  if (k < 0 || (size_t)k >= outlen || format_name_archive(out) != FORMAT_ARCHIVE_DIDX)
    return CORE_ENAME;
  return 0;
}

