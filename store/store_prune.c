#include "store/store_prune.h"

#include "core/core_alloc.h"
#include "core/core_error.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Period keys are integers built from calendar fields instead of PBS's
 * strftime strings: two snapshots share a key exactly when they share the
 * string, and integers need no allocation. */
typedef int64_t (*period_fn)(const struct tm *tm, int64_t t);

/* A small open-addressing set of period keys, sized once for a pass. */
struct keyset {
  int64_t *keys;
  unsigned char *used;
  size_t mask;
  size_t count;
};

static void keyset_init(struct keyset *s, size_t n)
{
  size_t cap = 16;
  while (cap < 2 * n)
    cap <<= 1;
  s->keys = core_malloc(cap * sizeof(*s->keys));
  s->used = core_calloc(cap, 1);
  s->mask = cap - 1;
  s->count = 0;
}

static void keyset_clear(struct keyset *s)
{
  memset(s->used, 0, s->mask + 1);
  s->count = 0;
}

static void keyset_free(struct keyset *s)
{
  core_free(s->keys);
  core_free(s->used);
}

static size_t keyset_slot(const struct keyset *s, int64_t key)
{
  uint64_t h = (uint64_t)key * 0x9e3779b97f4a7c15ULL;
  size_t i = (size_t)(h >> 32) & s->mask;
  while (s->used[i] && s->keys[i] != key)
    i = (i + 1) & s->mask;
  return i;
}

static int keyset_has(const struct keyset *s, int64_t key)
{
  return s->used[keyset_slot(s, key)];
}

/* The set never holds more than n keys and has room for 2n, so it never
 * fills up. */
static void keyset_add(struct keyset *s, int64_t key)
{
  size_t i = keyset_slot(s, key);
  if (!s->used[i]) {
    s->used[i] = 1;
    s->keys[i] = key;
    s->count++;
  }
}

static int64_t ymd(const struct tm *tm)
{
  return ((int64_t)(tm->tm_year + 1900) * 100 + tm->tm_mon + 1) * 100 + tm->tm_mday;
}

static int64_t key_last(const struct tm *tm, int64_t t)
{
  /* PBS keys on the RFC 3339 time string, a one-to-one image of the epoch. */
  (void)tm;
  return t;
}

static int64_t key_hourly(const struct tm *tm, int64_t t)
{
  (void)t;
  return ymd(tm) * 100 + tm->tm_hour;
}

static int64_t key_daily(const struct tm *tm, int64_t t)
{
  (void)t;
  return ymd(tm);
}

static int is_leap(int64_t y)
{
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* ISO 8601 week-year and week (strftime's %G and %V): a week belongs to the
 * year that holds its Thursday. */
static int64_t key_weekly(const struct tm *tm, int64_t t)
{
  (void)t;
  int64_t year = (int64_t)tm->tm_year + 1900;
  int wday = (tm->tm_wday + 6) % 7; /* Monday = 0 */
  int thu = tm->tm_yday - wday + 3; /* day of year of this week's Thursday */
  if (thu < 0) {
    year--;
    thu += is_leap(year) ? 366 : 365;
  } else if (thu >= (is_leap(year) ? 366 : 365)) {
    thu -= is_leap(year) ? 366 : 365;
    year++;
  }
  return year * 100 + thu / 7 + 1;
}

static int64_t key_monthly(const struct tm *tm, int64_t t)
{
  (void)t;
  return (int64_t)(tm->tm_year + 1900) * 100 + tm->tm_mon + 1;
}

static int64_t key_yearly(const struct tm *tm, int64_t t)
{
  (void)t;
  return (int64_t)tm->tm_year + 1900;
}

static int cmp_newest_first(const void *a, const void *b)
{
  const struct store_prune_item *x = a, *y = b;
  if (x->backup_time != y->backup_time)
    return x->backup_time > y->backup_time ? -1 : 1;
  return 0;
}

/* The newest unfinished snapshot may be a backup still being written, so it
 * survives as long as nothing finished is newer; older unfinished ones are
 * leftovers of failed backups. */
static void mark_unfinished(struct store_prune_item *items, size_t n)
{
  int keep_one = 1;
  for (size_t i = 0; i < n; i++) {
    if (items[i].finished) {
      keep_one = 0;
    } else if (keep_one) {
      items[i].mark = STORE_PRUNE_KEEP_PARTIAL;
      items[i].reason = items[i].rule = STORE_PRUNE_R_PARTIAL;
      keep_one = 0;
    } else {
      items[i].mark = STORE_PRUNE_REMOVE;
      items[i].reason = items[i].rule = STORE_PRUNE_R_UNFINISHED;
    }
  }
}

/* One rule pass; see the header for the decision list. `marked[i]` records
 * whether any earlier step has marked item i, because REMOVE is also the
 * zero value of `mark`. */
static void mark_pass(struct store_prune_item *items, const int64_t *keys,
                      unsigned char *marked, size_t n, uint64_t keep,
                      enum store_prune_reason rule, struct keyset *covered,
                      struct keyset *chosen)
{
  keyset_clear(covered);
  keyset_clear(chosen);
  for (size_t i = 0; i < n; i++)
    if (marked[i] && items[i].mark == STORE_PRUNE_KEEP)
      keyset_add(covered, keys[i]);

  for (size_t i = 0; i < n; i++) {
    struct store_prune_item *it = &items[i];
    if (marked[i])
      continue;
    if (it->protected) {
      it->mark = STORE_PRUNE_PROTECTED;
      it->reason = it->rule = STORE_PRUNE_R_PROTECTED;
      marked[i] = 1;
      continue;
    }
    if (keyset_has(covered, keys[i]))
      continue;
    if (!keyset_has(chosen, keys[i])) {
      if (chosen->count >= keep)
        break;
      keyset_add(chosen, keys[i]);
      it->mark = STORE_PRUNE_KEEP;
      it->reason = it->rule = rule;
    } else {
      it->mark = STORE_PRUNE_REMOVE;
      it->reason = STORE_PRUNE_R_SUPERSEDED;
      it->rule = rule;
    }
    marked[i] = 1;
  }
}

bool store_prune_keep_all(const struct store_prune_keep *keep)
{
  return keep->last == 0 && keep->hourly == 0 && keep->daily == 0 &&
         keep->weekly == 0 && keep->monthly == 0 && keep->yearly == 0;
}

int store_prune(struct store_prune_item *items, size_t n,
                const struct store_prune_keep *keep, unsigned flags)
{
  static const struct {
    size_t off;
    period_fn fn;
    enum store_prune_reason reason;
  } rules[] = {
    {offsetof(struct store_prune_keep, last), key_last, STORE_PRUNE_R_LAST},
    {offsetof(struct store_prune_keep, hourly), key_hourly, STORE_PRUNE_R_HOURLY},
    {offsetof(struct store_prune_keep, daily), key_daily, STORE_PRUNE_R_DAILY},
    {offsetof(struct store_prune_keep, weekly), key_weekly, STORE_PRUNE_R_WEEKLY},
    {offsetof(struct store_prune_keep, monthly), key_monthly, STORE_PRUNE_R_MONTHLY},
    {offsetof(struct store_prune_keep, yearly), key_yearly, STORE_PRUNE_R_YEARLY},
  };
  struct tm *tms = NULL;
  int64_t *keys = NULL;
  unsigned char *marked = NULL;
  struct keyset covered, chosen;
  int result = 0;

  if (keep == NULL || (items == NULL && n > 0))
    return CORE_EINVAL;
  if (n == 0)
    return 0;

  qsort(items, n, sizeof(*items), cmp_newest_first);
  for (size_t i = 0; i < n; i++) {
    items[i].mark = STORE_PRUNE_REMOVE;
    items[i].reason = items[i].rule = STORE_PRUNE_R_NONE;
  }

  if (store_prune_keep_all(keep)) {
    for (size_t i = 0; i < n; i++) {
      items[i].mark = items[i].protected ? STORE_PRUNE_PROTECTED : STORE_PRUNE_KEEP;
      items[i].reason = items[i].rule =
          items[i].protected ? STORE_PRUNE_R_PROTECTED : STORE_PRUNE_R_ALL;
    }
    return 0;
  }

  /* Convert every time once up front, so a bad time fails before any pass. */
  tms = core_malloc(n * sizeof(*tms));
  for (size_t i = 0; i < n; i++) {
    time_t t = (time_t)items[i].backup_time;
    struct tm *ok = (flags & STORE_PRUNE_UTC) ? gmtime_r(&t, &tms[i])
                                              : localtime_r(&t, &tms[i]);
    if (ok == NULL || (int64_t)t != items[i].backup_time) {
      result = CORE_EINVAL;
      goto out;
    }
  }

  keys = core_malloc(n * sizeof(*keys));
  marked = core_calloc(n, 1);
  keyset_init(&covered, n);
  keyset_init(&chosen, n);

  mark_unfinished(items, n);
  for (size_t i = 0; i < n; i++)
    marked[i] = !items[i].finished;

  for (size_t r = 0; r < sizeof(rules) / sizeof(rules[0]); r++) {
    uint64_t count;
    memcpy(&count, (const char *)keep + rules[r].off, sizeof(count));
    if (count == 0)
      continue;
    for (size_t i = 0; i < n; i++)
      keys[i] = rules[r].fn(&tms[i], items[i].backup_time);
    mark_pass(items, keys, marked, n, count, rules[r].reason, &covered, &chosen);
  }

  /* Unmarked items keep the REMOVE/NONE set above; protection beats every
   * other verdict, the unfinished-snapshot one included. */
  for (size_t i = 0; i < n; i++) {
    if (items[i].protected) {
      items[i].mark = STORE_PRUNE_PROTECTED;
      items[i].reason = items[i].rule = STORE_PRUNE_R_PROTECTED;
    }
  }

  keyset_free(&covered);
  keyset_free(&chosen);
out:
  core_free(marked);
  core_free(keys);
  core_free(tms);
  return result;
}

int store_prune_keep_set(struct store_prune_keep *keep, const char *key,
                         const char *value)
{
  static const struct {
    const char *name;
    size_t off;
  } opts[] = {
    {"keep-last", offsetof(struct store_prune_keep, last)},
    {"keep-hourly", offsetof(struct store_prune_keep, hourly)},
    {"keep-daily", offsetof(struct store_prune_keep, daily)},
    {"keep-weekly", offsetof(struct store_prune_keep, weekly)},
    {"keep-monthly", offsetof(struct store_prune_keep, monthly)},
    {"keep-yearly", offsetof(struct store_prune_keep, yearly)},
  };
  /* Far more periods than any group can have snapshots, and small enough
   * that the value survives any JSON number or counter it passes through. */
  const uint64_t max = (uint64_t)1 << 53;
  uint64_t v = 0;
  size_t i;

  if (keep == NULL || key == NULL)
    return CORE_EINVAL;
  for (i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
    if (strcmp(key, opts[i].name) == 0)
      break;
  if (i == sizeof(opts) / sizeof(opts[0]))
    return CORE_ENOTFOUND;
  if (value == NULL || *value == '\0')
    return CORE_EINVAL;
  for (const char *p = value; *p; p++) {
    if (*p < '0' || *p > '9')
      return CORE_EINVAL;
    v = v * 10 + (uint64_t)(*p - '0');
    if (v > max)
      return CORE_EINVAL;
  }
  if (v == 0)
    return CORE_EINVAL;
  memcpy((char *)keep + opts[i].off, &v, sizeof(v));
  return 0;
}

const char *store_prune_mark_name(enum store_prune_mark mark)
{
  switch (mark) {
  case STORE_PRUNE_REMOVE: return "remove";
  case STORE_PRUNE_KEEP: return "keep";
  case STORE_PRUNE_PROTECTED: return "protected";
  case STORE_PRUNE_KEEP_PARTIAL: return "keep-partial";
  }
  return "unknown";
}

bool store_prune_mark_keeps(enum store_prune_mark mark)
{
  return mark != STORE_PRUNE_REMOVE;
}

const char *store_prune_reason_name(enum store_prune_reason reason)
{
  switch (reason) {
  case STORE_PRUNE_R_NONE: return "not-selected";
  case STORE_PRUNE_R_LAST: return "keep-last";
  case STORE_PRUNE_R_HOURLY: return "keep-hourly";
  case STORE_PRUNE_R_DAILY: return "keep-daily";
  case STORE_PRUNE_R_WEEKLY: return "keep-weekly";
  case STORE_PRUNE_R_MONTHLY: return "keep-monthly";
  case STORE_PRUNE_R_YEARLY: return "keep-yearly";
  case STORE_PRUNE_R_ALL: return "keep-all";
  case STORE_PRUNE_R_PARTIAL: return "keep-partial";
  case STORE_PRUNE_R_PROTECTED: return "protected";
  case STORE_PRUNE_R_UNFINISHED: return "unfinished";
  case STORE_PRUNE_R_SUPERSEDED: return "superseded";
  }
  return "unknown";
}
