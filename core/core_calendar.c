#include "core/core_calendar.h"

#include "core/core_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define YEAR_MIN 1970
#define YEAR_MAX 9999
/* The search gives up after this many steps. A real expression needs a few
 * dozen; the worst legal one ("mon *-02-29", every 28 years or so) needs a
 * few thousand; so this only stops expressions with no event at all. */
#define MAX_STEPS 500000

/* Parser state: the expression copied, lowercased and split in place. */
struct parser {
  char buf[CORE_CALENDAR_MAX_LEN + 1];
  char *err;
  size_t errlen;
};

static int fail(struct parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail(struct parser *p, const char *fmt, ...)
{
  if (p->err != NULL && p->errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, p->errlen, fmt, ap);
    va_end(ap);
  }
  return CORE_EPARSE;
}

/* Reads 1..maxdigits decimal digits from s[0..len). */
static int parse_num(const char *s, size_t len, size_t maxdigits, int *out)
{
  int v = 0;
  if (len == 0 || len > maxdigits)
    return -1;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return 0;
}

/* One item of a numeric field: `*`, `N` or `N..M`, each with an optional
 * `/STEP`. Yields lo, hi, step; `N/STEP` and `*` run to `max`. */
static int parse_item(struct parser *p, const char *what, const char *s, size_t len,
                      int min, int max, size_t maxdigits, int *lo, int *hi, int *step)
{
  const char *slash = memchr(s, '/', len);
  size_t head = slash ? (size_t)(slash - s) : len;
  const char *dots = NULL;

  *step = 1;
  if (slash != NULL) {
    if (parse_num(slash + 1, len - head - 1, 4, step) < 0 || *step < 1)
      return fail(p, "bad repetition in %s: '%.*s'", what, (int)len, s);
  }
  if (head == 1 && s[0] == '*') {
    *lo = min;
    *hi = max;
    return 0;
  }
  for (size_t i = 0; i + 1 < head; i++) {
    if (s[i] == '.' && s[i + 1] == '.') {
      dots = s + i;
      break;
    }
  }
  if (dots != NULL) {
    size_t l1 = (size_t)(dots - s);
    if (parse_num(s, l1, maxdigits, lo) < 0 ||
        parse_num(dots + 2, head - l1 - 2, maxdigits, hi) < 0)
      return fail(p, "bad range in %s: '%.*s'", what, (int)len, s);
  } else {
    if (parse_num(s, head, maxdigits, lo) < 0)
      return fail(p, "bad %s: '%.*s'", what, (int)len, s);
    *hi = slash ? max : *lo;
  }
  if (*lo < min || *lo > max || *hi < min || *hi > max)
    return fail(p, "%s out of range %d..%d: '%.*s'", what, min, max, (int)len, s);
  if (*hi < *lo)
    return fail(p, "backward range in %s: '%.*s'", what, (int)len, s);
  return 0;
}

/* A comma list of items for a field of at most 64 values. */
static int parse_field(struct parser *p, const char *what, const char *s, size_t len,
                       int min, int max, uint64_t *mask)
{
  uint64_t m = 0;
  if (len == 0)
    return fail(p, "empty %s", what);
  while (len > 0) {
    const char *comma = memchr(s, ',', len);
    size_t il = comma ? (size_t)(comma - s) : len;
    int lo, hi, step, rc;
    if (il == 0)
      return fail(p, "empty item in %s", what);
    rc = parse_item(p, what, s, il, min, max, 2, &lo, &hi, &step);
    if (rc < 0)
      return rc;
    for (int v = lo; v <= hi; v += step)
      m |= (uint64_t)1 << v;
    if (comma == NULL)
      break;
    s += il + 1;
    len -= il + 1;
    if (len == 0)
      return fail(p, "empty item in %s", what);
  }
  *mask = m;
  return 0;
}

static int parse_years(struct parser *p, const char *s, size_t len,
                       struct core_calendar *c)
{
  c->nyears = 0;
  if (len == 1 && s[0] == '*')
    return 0;
  if (len == 0)
    return fail(p, "empty year");
  while (len > 0) {
    const char *comma = memchr(s, ',', len);
    size_t il = comma ? (size_t)(comma - s) : len;
    int lo, hi, step, rc;
    if (il == 0)
      return fail(p, "empty item in year");
    if (c->nyears == CORE_CALENDAR_MAX_YEARS)
      return fail(p, "more than %d items in year", CORE_CALENDAR_MAX_YEARS);
    rc = parse_item(p, "year", s, il, YEAR_MIN, YEAR_MAX, 4, &lo, &hi, &step);
    if (rc < 0)
      return rc;
    c->years[c->nyears].lo = (uint16_t)lo;
    c->years[c->nyears].hi = (uint16_t)hi;
    c->years[c->nyears].step = (uint16_t)step;
    c->nyears++;
    if (comma == NULL)
      break;
    s += il + 1;
    len -= il + 1;
    if (len == 0)
      return fail(p, "empty item in year");
  }
  return 0;
}

static int weekday_index(const char *s, size_t len)
{
  static const char *const names[7][2] = {
    {"sun", "sunday"},   {"mon", "monday"}, {"tue", "tuesday"}, {"wed", "wednesday"},
    {"thu", "thursday"}, {"fri", "friday"}, {"sat", "saturday"},
  };
  for (int i = 0; i < 7; i++)
    for (int k = 0; k < 2; k++)
      if (strlen(names[i][k]) == len && memcmp(names[i][k], s, len) == 0)
        return i;
  return -1;
}

/* Weekday ranges are written Monday-first (mon..sun) as in systemd, so the
 * range order uses Monday = 0 while the mask uses struct tm's Sunday = 0. */
static int parse_weekdays(struct parser *p, const char *s, struct core_calendar *c)
{
  size_t len = strlen(s);
  uint8_t m = 0;
  while (len > 0) {
    const char *comma = memchr(s, ',', len);
    size_t il = comma ? (size_t)(comma - s) : len;
    const char *dots = NULL;
    int a, b;
    for (size_t i = 0; i + 1 < il; i++) {
      if (s[i] == '.' && s[i + 1] == '.') {
        dots = s + i;
        break;
      }
    }
    if (dots != NULL) {
      size_t l1 = (size_t)(dots - s);
      a = weekday_index(s, l1);
      b = weekday_index(dots + 2, il - l1 - 2);
    } else {
      a = b = weekday_index(s, il);
    }
    if (a < 0 || b < 0)
      return fail(p, "bad weekday: '%.*s'", (int)il, s);
    a = (a + 6) % 7;
    b = (b + 6) % 7;
    if (b < a)
      return fail(p, "backward weekday range: '%.*s'", (int)il, s);
    for (int d = a; d <= b; d++)
      m |= (uint8_t)(1u << ((d + 1) % 7));
    if (comma == NULL)
      break;
    s += il + 1;
    len -= il + 1;
    if (len == 0)
      return fail(p, "empty item in weekdays");
  }
  if (m == 0)
    return fail(p, "empty weekdays");
  c->wday = m;
  return 0;
}

/* Splits `s` at `sep` into at most `max` parts; returns the count, or -1
 * if there are more. */
static int split(char *s, char sep, char **parts, int max)
{
  int n = 0;
  parts[n++] = s;
  for (char *q = s; *q; q++) {
    if (*q == sep) {
      if (n == max)
        return -1;
      *q = '\0';
      parts[n++] = q + 1;
    }
  }
  return n;
}

static int parse_date(struct parser *p, char *s, struct core_calendar *c)
{
  char *parts[3];
  uint64_t m;
  int n = split(s, '-', parts, 3), rc;
  if (n < 2)
    return fail(p, "bad date");
  if (n == 3) {
    rc = parse_years(p, parts[0], strlen(parts[0]), c);
    if (rc < 0)
      return rc;
  }
  rc = parse_field(p, "month", parts[n - 2], strlen(parts[n - 2]), 1, 12, &m);
  if (rc < 0)
    return rc;
  c->mon = (uint16_t)m;
  rc = parse_field(p, "day", parts[n - 1], strlen(parts[n - 1]), 1, 31, &m);
  if (rc < 0)
    return rc;
  c->mday = (uint32_t)m;
  return 0;
}

static int parse_time(struct parser *p, char *s, struct core_calendar *c)
{
  char *parts[3];
  uint64_t m;
  int n = split(s, ':', parts, 3), rc;
  if (n < 2)
    return fail(p, "bad time");
  rc = parse_field(p, "hour", parts[0], strlen(parts[0]), 0, 23, &m);
  if (rc < 0)
    return rc;
  c->hour = (uint32_t)m;
  rc = parse_field(p, "minute", parts[1], strlen(parts[1]), 0, 59, &c->min);
  if (rc < 0)
    return rc;
  if (n == 3)
    return parse_field(p, "second", parts[2], strlen(parts[2]), 0, 59, &c->sec);
  c->sec = 1;
  return 0;
}

static void set_every_day(struct core_calendar *c)
{
  c->wday = 0x7f;
  c->mday = 0xfffffffe; /* days 1..31 */
  c->mon = 0x1ffe;      /* months 1..12 */
  c->nyears = 0;
}

static void set_midnight(struct core_calendar *c)
{
  c->hour = 1;
  c->min = 1;
  c->sec = 1;
}

static int parse_keyword(const char *s, struct core_calendar *c)
{
  set_every_day(c);
  set_midnight(c);
  if (strcmp(s, "minutely") == 0) {
    c->hour = 0xffffff;
    c->min = ((uint64_t)1 << 60) - 1;
  } else if (strcmp(s, "hourly") == 0) {
    c->hour = 0xffffff;
  } else if (strcmp(s, "daily") == 0) {
  } else if (strcmp(s, "weekly") == 0) {
    c->wday = 1 << 1;
  } else if (strcmp(s, "monthly") == 0) {
    c->mday = 1 << 1;
  } else if (strcmp(s, "yearly") == 0 || strcmp(s, "annually") == 0) {
    c->mday = 1 << 1;
    c->mon = 1 << 1;
  } else if (strcmp(s, "quarterly") == 0) {
    c->mday = 1 << 1;
    c->mon = 1 << 1 | 1 << 4 | 1 << 7 | 1 << 10;
  } else if (strcmp(s, "semiannually") == 0) {
    c->mday = 1 << 1;
    c->mon = 1 << 1 | 1 << 7;
  } else {
    return -1;
  }
  return 0;
}

/* Refuses date parts that can never happen, e.g. *-02-30 or *-04,06-31;
 * February counts 29 days here since leap years exist. */
static int check_possible(struct parser *p, const struct core_calendar *c)
{
  static const int mdays[13] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  for (int m = 1; m <= 12; m++) {
    if (!(c->mon & (1u << m)))
      continue;
    uint32_t days = (uint32_t)((((uint64_t)1 << (mdays[m] + 1)) - 1) & ~(uint64_t)1);
    if (c->mday & days)
      return 0;
  }
  return fail(p, "the given days never occur in the given months");
}

int core_calendar_parse(const char *s, struct core_calendar *out, char *err,
                        size_t errlen)
{
  struct parser p = {.err = err, .errlen = errlen};
  struct core_calendar c;
  char *tok[5];
  int ntok = 0, i = 0, rc;
  size_t len;

  if (err != NULL && errlen > 0)
    err[0] = '\0';
  if (s == NULL || out == NULL)
    return fail(&p, "no expression");
  len = strlen(s);
  if (len > CORE_CALENDAR_MAX_LEN)
    return fail(&p, "expression longer than %d bytes", CORE_CALENDAR_MAX_LEN);
  for (size_t k = 0; k <= len; k++) {
    char ch = s[k];
    p.buf[k] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
  }

  for (char *q = p.buf; *q;) {
    while (*q == ' ' || *q == '\t')
      *q++ = '\0';
    if (*q == '\0')
      break;
    if (ntok == 5)
      return fail(&p, "too many fields");
    tok[ntok++] = q;
    while (*q && *q != ' ' && *q != '\t')
      q++;
  }
  if (ntok == 0)
    return fail(&p, "empty expression");

  memset(&c, 0, sizeof(c));
  if (strcmp(tok[ntok - 1], "utc") == 0) {
    c.utc = true;
    ntok--;
    if (ntok == 0)
      return fail(&p, "nothing before 'UTC'");
  }
  if (ntok == 1 && parse_keyword(tok[0], &c) == 0)
    goto done;

  set_every_day(&c);
  set_midnight(&c);
  /* Fields come in a fixed order; each token is recognised by its shape. */
  if (i < ntok && tok[i][0] >= 'a' && tok[i][0] <= 'z') {
    rc = parse_weekdays(&p, tok[i], &c);
    if (rc < 0)
      return rc;
    i++;
  }
  if (i < ntok && strchr(tok[i], '-') != NULL) {
    rc = parse_date(&p, tok[i], &c);
    if (rc < 0)
      return rc;
    i++;
  }
  if (i < ntok && strchr(tok[i], ':') != NULL) {
    rc = parse_time(&p, tok[i], &c);
    if (rc < 0)
      return rc;
    i++;
  }
  if (i < ntok)
    return fail(&p, "unexpected '%s'", tok[i]);
  rc = check_possible(&p, &c);
  if (rc < 0)
    return rc;

done:
  *out = c;
  return 0;
}

/* ---- search ---------------------------------------------------------- */

/* mon: 0..11 as in struct tm. */
static int days_in_month(int year, int mon)
{
  static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return mdays[mon] + (mon == 1 && leap);
}

/* The smallest allowed year >= y, or 0 if there is none. */
static int next_year(const struct core_calendar *c, int y)
{
  int best = 0;
  if (c->nyears == 0)
    return y <= YEAR_MAX ? y : 0;
  for (unsigned i = 0; i < c->nyears; i++) {
    const struct core_calendar_years *r = &c->years[i];
    int cand;
    if (y <= r->lo) {
      cand = r->lo;
    } else {
      int k = (y - r->lo + r->step - 1) / r->step;
      cand = r->lo + k * r->step;
    }
    if (cand <= r->hi && (best == 0 || cand < best))
      best = cand;
  }
  return best;
}

static int to_tm(const struct core_calendar *c, int64_t t, struct tm *tm)
{
  time_t tt = (time_t)t;
  if ((int64_t)tt != t)
    return CORE_EINVAL;
  if ((c->utc ? gmtime_r(&tt, tm) : localtime_r(&tt, tm)) == NULL)
    return CORE_EINVAL;
  return 0;
}

/* Midnight at the start of year/mon/mday (struct tm numbering, overflow
 * normalised). A midnight that DST skips becomes the first time after it. */
static int64_t day_start(const struct core_calendar *c, int year, int mon, int mday)
{
  struct tm tm = {0};
  tm.tm_year = year - 1900;
  tm.tm_mon = mon;
  tm.tm_mday = mday;
  tm.tm_isdst = -1;
  return (int64_t)(c->utc ? timegm(&tm) : mktime(&tm));
}

/* Index of the lowest bit >= from in mask, or -1. */
static int next_bit(uint64_t mask, int from)
{
  if (from >= 64)
    return -1;
  mask &= ~(uint64_t)0 << from;
  return mask ? __builtin_ctzll(mask) : -1;
}

int core_calendar_next(const struct core_calendar *c, int64_t after_epoch,
                       int64_t *next)
{
  struct tm tm;
  int64_t t;
  int rc;

  if (c == NULL || next == NULL || after_epoch == INT64_MAX)
    return CORE_EINVAL;
  t = after_epoch + 1;
  for (int steps = 0; steps < MAX_STEPS; steps++) {
    int64_t nt;
    rc = to_tm(c, t, &tm);
    if (rc < 0)
      return rc;
    int year = tm.tm_year + 1900;
    /* Whole-hour steps in epoch seconds: the next local hour boundary. */
    int64_t next_hour = t - tm.tm_min * 60 - tm.tm_sec + 3600;

    if (year > YEAR_MAX)
      return CORE_ENOTFOUND;
    if (year < YEAR_MIN) {
      nt = day_start(c, YEAR_MIN, 0, 1);
    } else if (next_year(c, year) != year) {
      int ny = next_year(c, year + 1);
      if (ny == 0)
        return CORE_ENOTFOUND;
      nt = day_start(c, ny, 0, 1);
    } else if (!(c->mon & (1u << (tm.tm_mon + 1)))) {
      int m = next_bit(c->mon, tm.tm_mon + 2);
      if (m > 0)
        nt = day_start(c, year, m - 1, 1);
      else
        nt = day_start(c, year + 1, next_bit(c->mon, 1) - 1, 1);
    } else if (!(c->mday & (1u << tm.tm_mday))) {
      /* Jump to the next listed day only inside this month: mktime() would
       * turn Feb 30 into Mar 2 and skip Mar 1. */
      int d = next_bit(c->mday, tm.tm_mday + 1);
      if (d > 0 && d <= days_in_month(year, tm.tm_mon))
        nt = day_start(c, year, tm.tm_mon, d);
      else
        nt = day_start(c, year, tm.tm_mon + 1, 1);
    } else if (!(c->wday & (1u << tm.tm_wday))) {
      nt = day_start(c, year, tm.tm_mon, tm.tm_mday + 1);
    } else if (!(c->hour & (1u << tm.tm_hour))) {
      nt = next_hour;
    } else if (!(c->min & ((uint64_t)1 << tm.tm_min))) {
      int m = next_bit(c->min, tm.tm_min + 1);
      nt = m >= 0 ? t + (m - tm.tm_min) * 60 - tm.tm_sec : next_hour;
    } else if (tm.tm_sec < 60 && !(c->sec & ((uint64_t)1 << tm.tm_sec))) {
      int s = next_bit(c->sec, tm.tm_sec + 1);
      nt = s >= 0 ? t + (s - tm.tm_sec) : t + 60 - tm.tm_sec;
    } else if (tm.tm_sec >= 60) {
      nt = t + 1; /* a leap second (right/ zones): never an event */
    } else {
      *next = t;
      return 0;
    }
    /* mktime() may land on or before t around a DST change; never let the
     * search stand still or go back. */
    if (nt <= t || nt == -1)
      nt = next_hour > t ? next_hour : t + 1;
    t = nt;
  }
  return CORE_ENOTFOUND;
}
