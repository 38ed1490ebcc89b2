#include "core/core_parse.h"

#include "core/core_error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int core_parse_u64(const char *s, uint64_t *out)
{
  if (s == NULL || *s < '0' || *s > '9')
    return CORE_EINVAL;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end || errno)
    return CORE_EINVAL;
  *out = v;
  return 0;
}

int core_parse_i64(const char *s, int64_t *out)
{
  if (s == NULL || !((*s >= '0' && *s <= '9') || (*s == '-' && s[1] >= '0' && s[1] <= '9')))
    return CORE_EINVAL;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (*end || errno)
    return CORE_EINVAL;
  *out = v;
  return 0;
}

int core_parse_bool(const char *s, int *out)
{
  static const char *const yes[] = {"1", "true", "yes", "on"};
  static const char *const no[] = {"0", "false", "no", "off"};
  if (s == NULL)
    return CORE_EINVAL;
  for (int i = 0; i < 4; i++) {
    if (strcasecmp(s, yes[i]) == 0) {
      *out = 1;
      return 0;
    }
    if (strcasecmp(s, no[i]) == 0) {
      *out = 0;
      return 0;
    }
  }
  return CORE_EINVAL;
}
