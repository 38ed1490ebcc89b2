/* core_testpoint.c: see core_testpoint.h. */
#include "core/core_testpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int listed(const char *list, const char *name)
{
  size_t n = strlen(name);
  for (const char *p = list; *p;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len == n && memcmp(p, name, n) == 0)
      return 1;
    if (end == NULL)
      break;
    p = end + 1;
  }
  return 0;
}

void core_testpoint(const char *name)
{
  const char *list = getenv("CAIRN_TEST_PAUSE_POINTS");
  const char *dir = getenv("CAIRN_TEST_PAUSE_DIR");
  if (list == NULL || dir == NULL || !listed(list, name))
    return;
  char parked[4096], go[4096];
  if (snprintf(parked, sizeof(parked), "%s/%s.parked", dir, name) >= (int)sizeof(parked) ||
      snprintf(go, sizeof(go), "%s/%s.go", dir, name) >= (int)sizeof(go))
    return;
  if (access(go, F_OK) == 0)
    return;
  int fd = open(parked, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0)
    close(fd);
  /* Polling a file: the waiting side is a test, the cost is irrelevant. */
  struct timespec ts = {0, 5 * 1000 * 1000};
  while (access(go, F_OK) != 0)
    nanosleep(&ts, NULL);
  unlink(parked);
}
