#include "core/core_file.h"

#include "core/core_alloc.h"
#include "core/core_error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

int core_file_read(const char *path, size_t max, uint8_t **out, size_t *len)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT ? CORE_ENOTFOUND : -errno;
  struct stat st;
  uint8_t *buf = NULL;
  int rc = 0;
  if (fstat(fd, &st) < 0) {
    rc = -errno;
    goto out;
  }
  if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
    rc = CORE_ETOOBIG;
    goto out;
  }
  buf = core_try_malloc((size_t)st.st_size);
  if (buf == NULL) {
    rc = UV_ENOMEM;
    goto out;
  }
  size_t got = 0;
  while (got < (size_t)st.st_size) {
    ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      rc = n < 0 ? -errno : CORE_EFORMAT;
      goto out;
    }
    got += (size_t)n;
  }
  *out = buf;
  *len = got;
  buf = NULL;
out:
  core_free(buf);
  close(fd);
  return rc;
}

int core_file_write_all(int fd, const void *data, size_t len)
{
  const char *p = data;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

int core_file_fsync_parent(const char *path)
{
  const char *slash = strrchr(path, '/');
  char *dir = slash == NULL ? core_strdup(".")
              : slash == path ? core_strdup("/")
                              : core_strndup(path, (size_t)(slash - path));
  int rc = 0;
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || fsync(fd) != 0)
    rc = -errno;
  if (fd >= 0)
    close(fd);
  core_free(dir);
  return rc;
}

int core_file_replace(const char *path, const void *data, size_t len, unsigned mode,
                      int sync)
{
  /* Same directory as the target, so rename() stays atomic (one file
   * system); a unique name, so concurrent writers never share a temp file. */
  char *tmp = core_asprintf("%s.tmp_XXXXXX", path);
  int rc = 0;
  int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) {
    rc = -errno;
    core_free(tmp);
    return rc;
  }
  if (fchmod(fd, (mode_t)mode) != 0)
    rc = -errno;
  if (rc == 0)
    rc = core_file_write_all(fd, data, len);
  if (rc == 0 && sync && fsync(fd) != 0)
    rc = -errno;
  if (close(fd) != 0 && rc == 0)
    rc = -errno;
  if (rc == 0 && rename(tmp, path) != 0)
    rc = -errno;
  if (rc < 0)
    unlink(tmp);
  else if (sync)
    rc = core_file_fsync_parent(path); /* the rename itself must survive a crash */
  core_free(tmp);
  return rc;
}

int core_mkdir_p(const char *path, unsigned mode)
{
  char buf[4096];
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof(buf))
    return n ? -ENAMETOOLONG : -ENOENT;
  memcpy(buf, path, n + 1);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(buf, 0755) < 0 && errno != EEXIST)
      return -errno;
    *p = '/';
  }
  if (mkdir(buf, (mode_t)mode) < 0 && errno != EEXIST)
    return -errno;
  return 0;
}
