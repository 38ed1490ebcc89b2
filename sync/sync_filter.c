/* sync_filter.c: PBS's group filters.
 *
 *   [include:|exclude:]type:<vm|ct|host>
 *   [include:|exclude:]group:<type>/<id>
 *   [include:|exclude:]regex:<POSIX extended RE matched against "type/id">
 *
 * A group is included when there is no include filter or any include filter
 * matches, then dropped when any exclude filter matches.
 */
#include "sync/sync.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "format/format_name.h"

#include <regex.h>
#include <stdio.h>
#include <string.h>

#define FILTER_MAX_LEN 512

static int parse(const char *s, int *exclude, enum sync_filter_kind *kind, const char **arg,
                 char *err, size_t errlen)
{
  *exclude = 0;
  if (strlen(s) > FILTER_MAX_LEN) {
    snprintf(err, errlen, "group filter too long");
    return CORE_EINVAL;
  }
  if (!strncmp(s, "include:", 8)) {
    s += 8;
  } else if (!strncmp(s, "exclude:", 8)) {
    *exclude = 1;
    s += 8;
  }
  if (!strncmp(s, "type:", 5)) {
    *kind = SYNC_FILTER_TYPE;
    *arg = s + 5;
    if (format_name_backup_type(*arg) < 0) {
      snprintf(err, errlen, "group filter: unknown backup type");
      return CORE_EINVAL;
    }
    return 0;
  }
  if (!strncmp(s, "group:", 6)) {
    *kind = SYNC_FILTER_GROUP;
    *arg = s + 6;
    const char *slash = strchr(*arg, '/');
    char type[8];
    if (slash == NULL || (size_t)(slash - *arg) >= sizeof(type)) {
      snprintf(err, errlen, "group filter: expected group:<type>/<id>");
      return CORE_EINVAL;
    }
    memcpy(type, *arg, (size_t)(slash - *arg));
    type[slash - *arg] = '\0';
    if (format_name_backup_type(type) < 0 || format_name_backup_id(slash + 1) < 0) {
      snprintf(err, errlen, "group filter: invalid group");
      return CORE_EINVAL;
    }
    return 0;
  }
  if (!strncmp(s, "regex:", 6)) {
    *kind = SYNC_FILTER_REGEX;
    *arg = s + 6;
    regex_t re;
    if (**arg == '\0' || regcomp(&re, *arg, REG_EXTENDED | REG_NOSUB) != 0) {
      snprintf(err, errlen, "group filter: invalid regular expression");
      return CORE_EINVAL;
    }
    regfree(&re);
    return 0;
  }
  snprintf(err, errlen, "group filter: expected type:, group: or regex:");
  return CORE_EINVAL;
}

int sync_filter_check(const char *s, char *err, size_t errlen)
{
  int exclude;
  enum sync_filter_kind kind;
  const char *arg;
  return parse(s, &exclude, &kind, &arg, err, errlen);
}

int sync_filters_add(struct sync_filters *f, const char *s, char *err, size_t errlen)
{
  int exclude;
  enum sync_filter_kind kind;
  const char *arg;
  int rc = parse(s, &exclude, &kind, &arg, err, errlen);
  if (rc < 0)
    return rc;
  if (f->n >= SYNC_MAX_FILTERS) {
    snprintf(err, errlen, "more than %d group filters", SYNC_MAX_FILTERS);
    return CORE_ETOOBIG;
  }
  struct sync_filter *x = &f->items[f->n];
  memset(x, 0, sizeof(*x));
  x->exclude = exclude;
  x->kind = kind;
  x->arg = core_strdup(arg);
  if (kind == SYNC_FILTER_REGEX) {
    regex_t *re = core_new(regex_t);
    if (regcomp(re, arg, REG_EXTENDED | REG_NOSUB) != 0) {
      core_free(re);
      core_free(x->arg);
      snprintf(err, errlen, "group filter: invalid regular expression");
      return CORE_EINVAL;
    }
    x->re = re;
  }
  f->n++;
  return 0;
}

void sync_filters_free(struct sync_filters *f)
{
  for (size_t i = 0; i < f->n; i++) {
    if (f->items[i].re) {
      regfree(f->items[i].re);
      core_free(f->items[i].re);
    }
    core_free(f->items[i].arg);
  }
  f->n = 0;
}

static int matches(const struct sync_filter *x, const char *type, const char *id,
                   const char *both)
{
  switch (x->kind) {
  case SYNC_FILTER_TYPE:
    return strcmp(x->arg, type) == 0;
  case SYNC_FILTER_GROUP:
    return strcmp(x->arg, both) == 0;
  case SYNC_FILTER_REGEX:
    return regexec(x->re, both, 0, NULL, 0) == 0;
  }
  (void)id;
  return 0;
}

int sync_filters_match(const struct sync_filters *f, const char *type, const char *id)
{
  char both[FORMAT_NAME_ID_MAX + 16];
  snprintf(both, sizeof(both), "%s/%s", type, id);
  int have_include = 0, included = 0;
  for (size_t i = 0; i < f->n; i++) {
    if (f->items[i].exclude)
      continue;
    have_include = 1;
    if (matches(&f->items[i], type, id, both))
      included = 1;
  }
  if (have_include && !included)
    return 0;
  for (size_t i = 0; i < f->n; i++)
    if (f->items[i].exclude && matches(&f->items[i], type, id, both))
      return 0;
  return 1;
}
