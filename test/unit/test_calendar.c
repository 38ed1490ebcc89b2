/* test_calendar.c: calendar-event parsing and next-time search.
 *
 * Times in tables are "YYYY-MM-DD HH:MM:SS" in the zone the case sets
 * (UTC unless said otherwise); a trailing "Z" forces UTC. Weekdays used:
 * 2024-01-01 is a Monday, 2024-02-29 a Thursday, 2024-03-02 a Saturday.
 */
#include "unit.h"

#include "core/core_calendar.h"
#include "core/core_error.h"

#include <stdint.h>
#include <time.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void use_tz(const char *tz)
{
  setenv("TZ", tz, 1);
  tzset();
}

static int64_t parse_time(const char *s)
{
  struct tm tm = {0};
  if (sscanf(s, "%d-%d-%d %d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
             &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
    unit_fail(__FILE__, __LINE__, "bad time in table: %s", s);
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  if (s[strlen(s) - 1] == 'Z')
    return (int64_t)timegm(&tm);
  tm.tm_isdst = -1;
  return (int64_t)mktime(&tm);
}

static void format_time(int64_t t, int utc, char *out, size_t len)
{
  time_t tt = (time_t)t;
  struct tm tm;
  if (utc)
    gmtime_r(&tt, &tm);
  else
    localtime_r(&tt, &tm);
  strftime(out, len, utc ? "%Y-%m-%d %H:%M:%SZ" : "%Y-%m-%d %H:%M:%S", &tm);
}

struct next_case {
  const char *expr;
  const char *after;
  const char *expect; /* NULL: CORE_ENOTFOUND */
};

static void run_next_at(const char *file, int line, const struct next_case *tab,
                        size_t n)
{
  for (size_t i = 0; i < n; i++) {
    struct core_calendar c;
    char err[128], got[40];
    int64_t next = 0;
    int rc = core_calendar_parse(tab[i].expr, &c, err, sizeof(err));
    if (rc != 0)
      unit_fail(file, line, "'%s': parse failed: %s", tab[i].expr, err);
    rc = core_calendar_next(&c, parse_time(tab[i].after), &next);
    if (tab[i].expect == NULL) {
      if (rc != CORE_ENOTFOUND)
        unit_fail(file, line, "'%s' after %s: rc %d, expected ENOTFOUND", tab[i].expr,
                  tab[i].after, rc);
      continue;
    }
    if (rc != 0)
      unit_fail(file, line, "'%s' after %s: rc %d", tab[i].expr, tab[i].after, rc);
    int utc = tab[i].expect[strlen(tab[i].expect) - 1] == 'Z';
    format_time(next, utc, got, sizeof(got));
    if (strcmp(got, tab[i].expect) != 0)
      unit_fail(file, line, "'%s' after %s: got %s, expected %s", tab[i].expr,
                tab[i].after, got, tab[i].expect);
  }
}

#define RUN_NEXT(tab) run_next_at(__FILE__, __LINE__, tab, N(tab))

UNIT_TEST(keywords)
{
  static const struct next_case tab[] = {
    {"minutely", "2024-01-01 10:00:00", "2024-01-01 10:01:00"},
    {"minutely", "2024-01-01 10:00:30", "2024-01-01 10:01:00"},
    {"minutely", "2023-12-31 23:59:59", "2024-01-01 00:00:00"},
    {"hourly", "2024-01-01 10:00:00", "2024-01-01 11:00:00"},
    {"hourly", "2024-01-01 10:59:59", "2024-01-01 11:00:00"},
    {"hourly", "2023-12-31 23:30:00", "2024-01-01 00:00:00"},
    {"daily", "2024-01-01 00:00:00", "2024-01-02 00:00:00"},
    {"daily", "2024-02-28 12:00:00", "2024-02-29 00:00:00"}, /* leap day */
    {"daily", "2024-02-29 00:00:00", "2024-03-01 00:00:00"},
    {"daily", "2023-02-28 01:00:00", "2023-03-01 00:00:00"},
    {"weekly", "2024-01-01 00:00:00", "2024-01-08 00:00:00"}, /* strictly after */
    {"weekly", "2024-01-03 09:00:00", "2024-01-08 00:00:00"},
    {"weekly", "2023-12-31 23:59:59", "2024-01-01 00:00:00"},
    {"monthly", "2024-01-31 12:00:00", "2024-02-01 00:00:00"},
    {"monthly", "2024-12-15 00:00:00", "2025-01-01 00:00:00"},
    {"monthly", "2024-02-01 00:00:00", "2024-03-01 00:00:00"},
    {"yearly", "2024-06-01 00:00:00", "2025-01-01 00:00:00"},
    {"yearly", "2024-01-01 00:00:00", "2025-01-01 00:00:00"},
    {"annually", "2023-12-31 23:59:59", "2024-01-01 00:00:00"},
    {"quarterly", "2024-01-01 00:00:00", "2024-04-01 00:00:00"},
    {"quarterly", "2024-11-11 00:00:00", "2025-01-01 00:00:00"},
    {"semiannually", "2024-03-01 00:00:00", "2024-07-01 00:00:00"},
  };
  use_tz("UTC");
  RUN_NEXT(tab);
}

UNIT_TEST(keyword_equivalents)
{
  /* Each keyword is exactly its documented long form. */
  static const char *const pairs[][2] = {
    {"minutely", "*-*-* *:*:00"},
    {"hourly", "*:00"},
    {"hourly", "*-*-* *:00:00"},
    {"daily", "00:00"},
    {"daily", "*-*-* 00:00:00"},
    {"weekly", "mon 00:00"},
    {"weekly", "mon *-*-* 00:00:00"},
    {"monthly", "*-*-01 00:00"},
    {"yearly", "*-01-01 00:00"},
    {"annually", "*-01-01 00:00"},
    {"quarterly", "*-01,04,07,10-01 00:00"},
    {"semiannually", "*-01,07-01 00:00"},
    {"*-*-* 02:00", "2:00"},
    {"*-*-* 02:00", "02:00:00"},
    {"mon..fri 22:30", "mon,tue,wed,thu,fri 22:30"},
    {"mon..fri 22:30", "Monday..Friday 22:30:00"},
    {"mon..sun 10:00", "10:00"},
    {"*:0/15", "*:00,15,30,45"},
    {"*:0/15", "*:*/15:0"},
    {"*:0/15", "0..23:0..59/15"},
    {"8..17/3:00", "8,11,14,17:00"},
    {"sat", "sat *-*-* 00:00:00"},
    {"*-*-01", "*-01..12-01 0:0"},
    {"*-*-01", "*-*-01..31/31"},
    {"SAT 18:15", "sat 18:15"},
    {"Daily", "daily"},
    {"  daily\t", "daily"},
  };
  use_tz("UTC");
  for (size_t i = 0; i < N(pairs); i++) {
    struct core_calendar a, b;
    char err[128];
    if (core_calendar_parse(pairs[i][0], &a, err, sizeof(err)) != 0)
      unit_fail(__FILE__, __LINE__, "'%s': %s", pairs[i][0], err);
    if (core_calendar_parse(pairs[i][1], &b, err, sizeof(err)) != 0)
      unit_fail(__FILE__, __LINE__, "'%s': %s", pairs[i][1], err);
    if (memcmp(&a, &b, sizeof(a)) != 0)
      unit_fail(__FILE__, __LINE__, "'%s' differs from '%s'", pairs[i][0], pairs[i][1]);
  }
}

UNIT_TEST(weekdays_and_times)
{
  static const struct next_case tab[] = {
    {"sat 18:15", "2024-01-01 00:00:00", "2024-01-06 18:15:00"},
    {"sat 18:15", "2024-01-06 18:14:59", "2024-01-06 18:15:00"},
    {"sat 18:15", "2024-01-06 18:15:00", "2024-01-13 18:15:00"},
    {"sat 18:15", "2024-02-29 23:00:00", "2024-03-02 18:15:00"}, /* over leap day */
    {"Saturday 18:15", "2024-02-29 23:00:00", "2024-03-02 18:15:00"},
    {"sat", "2024-01-01 00:00:00", "2024-01-06 00:00:00"},
    {"sat,sun", "2024-01-06 00:00:00", "2024-01-07 00:00:00"},
    {"mon..fri 22:30", "2024-01-02 10:00:00", "2024-01-02 22:30:00"},
    {"mon..fri 22:30", "2024-01-05 22:30:00", "2024-01-08 22:30:00"}, /* Fri -> Mon */
    {"mon..fri 22:30", "2024-01-06 12:00:00", "2024-01-08 22:30:00"},
    {"fri..sun 22:30", "2024-01-01 12:00:00", "2024-01-05 22:30:00"},
    {"mon,wed,fri 03:00", "2024-01-01 03:00:00", "2024-01-03 03:00:00"},
    {"mon,wed,fri 03:00", "2024-01-05 03:00:00", "2024-01-08 03:00:00"},
    {"*-*-* 02:00", "2024-01-01 02:00:00", "2024-01-02 02:00:00"},
    {"*-*-* 02:00", "2024-01-01 01:59:59", "2024-01-01 02:00:00"},
    {"2:00", "2023-12-31 02:00:01", "2024-01-01 02:00:00"},
    {"*:0/15", "2024-01-01 10:00:00", "2024-01-01 10:15:00"},
    {"*:0/15", "2024-01-01 10:14:59", "2024-01-01 10:15:00"},
    {"*:0/15", "2024-01-01 10:45:00", "2024-01-01 11:00:00"},
    {"*:0/15", "2024-12-31 23:45:00", "2025-01-01 00:00:00"},
    {"*:5/20", "2024-01-01 10:45:00", "2024-01-01 11:05:00"},
    {"12:30:15", "2024-01-01 12:30:15", "2024-01-02 12:30:15"},
    {"12:30:15", "2024-01-01 12:30:14", "2024-01-01 12:30:15"},
    {"*:*:0/20", "2024-01-01 10:00:00", "2024-01-01 10:00:20"},
    {"*:*:0/20", "2024-01-01 10:00:40", "2024-01-01 10:01:00"},
    {"*:*:*", "2024-01-01 10:00:40", "2024-01-01 10:00:41"},
    {"8..17/3:00", "2024-01-01 08:00:00", "2024-01-01 11:00:00"},
    {"8..17/3:00", "2024-01-01 17:00:00", "2024-01-02 08:00:00"},
    {"9,12,18:30", "2024-01-01 12:30:00", "2024-01-01 18:30:00"},
    {"0/6:00", "2024-01-01 12:00:00", "2024-01-01 18:00:00"},
    {"0/6:00", "2024-01-01 18:00:00", "2024-01-02 00:00:00"},
    {"10..12:15..16", "2024-01-01 10:16:00", "2024-01-01 11:15:00"},
  };
  use_tz("UTC");
  RUN_NEXT(tab);
}

UNIT_TEST(dates)
{
  static const struct next_case tab[] = {
    {"2024-02-29 12:00", "2024-01-01 00:00:00", "2024-02-29 12:00:00"},
    {"2024-02-29 12:00", "2024-02-29 12:00:00", NULL}, /* only once, and past */
    {"*-02-29", "2024-02-29 00:00:00", "2028-02-29 00:00:00"},
    {"*-02-29", "2096-03-01 00:00:00", "2104-02-29 00:00:00"}, /* 2100 is no leap year */
    {"*-*-31", "2024-04-01 00:00:00", "2024-05-31 00:00:00"},  /* April has 30 */
    {"*-*-30", "2024-01-30 00:00:00", "2024-03-30 00:00:00"},  /* skips February */
    {"*-*-29", "2023-01-29 00:00:00", "2023-03-29 00:00:00"},  /* no Feb 29 in 2023 */
    {"*-*-29", "2024-01-29 00:00:00", "2024-02-29 00:00:00"},
    {"*-*-1,30", "2023-02-15 00:00:00", "2023-03-01 00:00:00"}, /* not via "Feb 30" */
    {"*-*-1,29..31", "2023-02-15 00:00:00", "2023-03-01 00:00:00"},
    {"fri *-*-13", "2024-01-01 00:00:00", "2024-09-13 00:00:00"},
    {"mon *-02-29", "2024-01-01 00:00:00", "2044-02-29 00:00:00"},
    {"*-01-01", "2024-01-01 00:00:00", "2025-01-01 00:00:00"},
    {"2025,2027-06-01", "2025-06-01 00:00:00", "2027-06-01 00:00:00"},
    {"2025,2027-06-01", "2027-06-01 00:00:00", NULL},
    {"2024..2030/3-01-01", "2024-01-01 00:00:00", "2027-01-01 00:00:00"},
    {"2024/3-01-01", "2030-01-01 00:00:00", "2033-01-01 00:00:00"},
    {"2150-01-01 00:00", "2024-01-01 00:00:00", "2150-01-01 00:00:00"},
    /* A century between events: found by jumping years, not by crawling. */
    {"2000/100-06-01", "2001-01-01 00:00:00", "2100-06-01 00:00:00"},
    {"1970..2500/100-06-01", "2270-06-01 00:00:00", "2370-06-01 00:00:00"},
    {"01-15 08:00", "2024-02-01 00:00:00", "2025-01-15 08:00:00"}, /* MONTH-DAY */
    {"*-12-31 23:59:59", "2024-12-31 23:59:58", "2024-12-31 23:59:59"},
    {"*-12-31 23:59:59", "2024-12-31 23:59:59", "2025-12-31 23:59:59"},
    {"2020-*-*", "2024-01-01 00:00:00", NULL},
    {"2100-02-29", "2024-01-01 00:00:00", NULL}, /* 2100: no Feb 29 */
    {"9999-12-31 23:59:59", "2024-01-01 00:00:00", "9999-12-31 23:59:59"},
    {"daily", "9999-12-31 00:00:00", NULL}, /* beyond the last year */
    {"daily", "1960-06-01 00:00:00", "1970-01-01 00:00:00"},
  };
  use_tz("UTC");
  RUN_NEXT(tab);
}

UNIT_TEST(local_time)
{
  /* UTC+10: local 02:00 is 16:00Z the day before; "UTC" pins the zone. */
  static const struct next_case tab[] = {
    {"02:00", "2024-01-01 00:00:00Z", "2024-01-01 16:00:00Z"},
    {"02:00 UTC", "2024-01-01 00:00:00Z", "2024-01-01 02:00:00Z"},
    {"daily utc", "2024-01-01 00:00:00Z", "2024-01-02 00:00:00Z"},
    {"daily", "2024-01-01 00:00:00Z", "2024-01-01 14:00:00Z"},
    {"mon 00:00", "2024-01-01 00:00:00Z", "2024-01-07 14:00:00Z"},
  };
  use_tz("XST-10");
  RUN_NEXT(tab);
}

UNIT_TEST(dst_changes)
{
  /* Central Europe 2024: 03-31 02:00 CET -> 03:00 CEST (02:xx does not
   * exist), 10-27 03:00 CEST -> 02:00 CET (02:xx happens twice). */
  static const struct next_case tab[] = {
    /* The skipped 02:30 does not happen on Mar 31. */
    {"02:30", "2024-03-30 03:00:00Z", "2024-04-01 00:30:00Z"},
    {"02:30", "2024-03-30 00:00:00Z", "2024-03-30 01:30:00Z"},
    /* hourly jumps from 01:00 CET to 03:00 CEST, one real hour. */
    {"hourly", "2024-03-31 00:00:00Z", "2024-03-31 01:00:00Z"},
    {"hourly", "2024-03-31 00:30:00Z", "2024-03-31 01:00:00Z"},
    /* The doubled 02:30 matches on both passes. */
    {"02:30", "2024-10-26 12:00:00Z", "2024-10-27 00:30:00Z"},
    {"02:30", "2024-10-27 00:30:00Z", "2024-10-27 01:30:00Z"},
    {"02:30", "2024-10-27 01:30:00Z", "2024-10-28 01:30:00Z"},
    {"hourly", "2024-10-27 00:00:00Z", "2024-10-27 01:00:00Z"},
    {"hourly", "2024-10-27 01:00:00Z", "2024-10-27 02:00:00Z"},
    {"daily", "2024-10-26 12:00:00Z", "2024-10-26 22:00:00Z"},
    {"daily", "2024-10-26 22:00:00Z", "2024-10-27 23:00:00Z"}, /* a 25-hour day */
    {"daily", "2024-03-30 23:00:00Z", "2024-03-31 22:00:00Z"}, /* a 23-hour day */
    {"*:0/15", "2024-03-31 00:45:00Z", "2024-03-31 01:00:00Z"},
  };
  use_tz("CET-1CEST,M3.5.0,M10.5.0/3");
  RUN_NEXT(tab);
}

UNIT_TEST(invalid)
{
  static char overlong[CORE_CALENDAR_MAX_LEN + 2];
  memset(overlong, ' ', sizeof(overlong) - 1);
  memcpy(overlong, "daily", 5);
  static const char *const bad[] = {
    "",
    "   ",
    "\t",
    "25:00",
    "24:00",
    "10:60",
    "10:00:60",
    "-1:00",
    "10:",
    ":10",
    "10",
    "1:2:3:4",
    "100:00",
    "mon..",
    "..fri",
    "mon...fri",
    "fri..mon",
    "mon,,fri",
    "mon,",
    "mon, fri 10:00",
    "mon-fri 10:00",
    "funday",
    "garbage",
    "daily 10:00",
    "sat sun",
    "10:00 sat",
    "*-13-01",
    "*-00-01",
    "*-*-32",
    "*-*-0",
    "*-02-30",
    "*-04,06,09,11-31",
    "2024-01",
    "24-01-01",
    "1969-01-01",
    "10000-01-01",
    "1-2-3-4",
    "*-*-*-*",
    "2024,2025,2026,2027,2028,2029,2030,2031,2032-01-01",
    "*/0:00",
    "*:*/",
    "*:/5",
    "1..:00",
    "5..1:00",
    "**:00",
    "*-*-* 10:00 11:00",
    "10:00 utc utc",
    "utc",
    "10:00 CET",
    "10:00.5",
    "10:00:00.5",
    "*-*-~1",
    "d\xc3\xa4ily",
    "daily\n",
    overlong,
  };
  use_tz("UTC");
  for (size_t i = 0; i < N(bad); i++) {
    struct core_calendar c, before;
    char err[128];
    memset(&c, 0x5a, sizeof(c));
    before = c;
    int rc = core_calendar_parse(bad[i], &c, err, sizeof(err));
    if (rc != CORE_EPARSE)
      unit_fail(__FILE__, __LINE__, "'%s': rc %d, expected CORE_EPARSE", bad[i], rc);
    if (err[0] == '\0')
      unit_fail(__FILE__, __LINE__, "'%s': no message", bad[i]);
    ASSERT_MEM_EQ(&c, &before, sizeof(c));
    /* No message buffer, or a tiny one, is fine too. */
    ASSERT_EQ(core_calendar_parse(bad[i], &c, NULL, 0), CORE_EPARSE);
    char tiny[4];
    ASSERT_EQ(core_calendar_parse(bad[i], &c, tiny, sizeof(tiny)), CORE_EPARSE);
    ASSERT(strlen(tiny) < sizeof(tiny));
  }
  /* The limit itself is accepted. */
  overlong[CORE_CALENDAR_MAX_LEN] = '\0';
  struct core_calendar c;
  ASSERT_OK(core_calendar_parse(overlong, &c, NULL, 0));
  ASSERT_EQ(core_calendar_parse(NULL, &c, NULL, 0), CORE_EPARSE);
  ASSERT_EQ(core_calendar_parse("daily", NULL, NULL, 0), CORE_EPARSE);

  char err[128];
  ASSERT_EQ(core_calendar_parse("25:00", &c, err, sizeof(err)), CORE_EPARSE);
  ASSERT(strstr(err, "hour") != NULL);
  ASSERT_EQ(core_calendar_parse("*-13-01", &c, err, sizeof(err)), CORE_EPARSE);
  ASSERT(strstr(err, "month") != NULL);
  /* A good parse clears the message. */
  ASSERT_OK(core_calendar_parse("daily", &c, err, sizeof(err)));
  ASSERT_STR_EQ(err, "");
}

UNIT_TEST(next_edges)
{
  struct core_calendar c;
  int64_t next;
  use_tz("UTC");
  ASSERT_OK(core_calendar_parse("daily", &c, NULL, 0));
  ASSERT_EQ(core_calendar_next(NULL, 0, &next), CORE_EINVAL);
  ASSERT_EQ(core_calendar_next(&c, 0, NULL), CORE_EINVAL);
  ASSERT_EQ(core_calendar_next(&c, INT64_MAX, &next), CORE_EINVAL);
  ASSERT_EQ(core_calendar_next(&c, INT64_MAX - 1, &next), CORE_EINVAL);
  ASSERT_OK(core_calendar_next(&c, 0, &next));
  ASSERT_EQ(next, 86400);
  ASSERT_OK(core_calendar_next(&c, -1, &next));
  ASSERT_EQ(next, 0);
}

/* Every matching second is found: compare with a naive scan, minute by
 * minute, for random start times over 30 years. */
static int naive_match(const struct core_calendar *c, int64_t t)
{
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  int y = tm.tm_year + 1900;
  int year_ok = c->nyears == 0;
  for (unsigned i = 0; i < c->nyears; i++)
    if (y >= c->years[i].lo && y <= c->years[i].hi && (y - c->years[i].lo) % c->years[i].step == 0)
      year_ok = 1;
  return year_ok && (c->mon >> (tm.tm_mon + 1) & 1) && (c->mday >> tm.tm_mday & 1) &&
         (c->wday >> tm.tm_wday & 1) && (c->hour >> tm.tm_hour & 1) &&
         (c->min >> tm.tm_min & 1) && (c->sec >> tm.tm_sec & 1);
}

UNIT_TEST(matches_naive_scan)
{
  static const char *const exprs[] = {
    "hourly", "daily", "weekly", "sat 18:15", "mon..fri 22:30", "mon,wed,fri 03:00",
    "*:0/15", "8..17/3:5,50", "sun *-*-1..7 04:00", "*-*-28..31 23:00",
  };
  uint64_t seed = 12345;
  use_tz("UTC");
  for (size_t e = 0; e < N(exprs); e++) {
    struct core_calendar c;
    ASSERT_OK(core_calendar_parse(exprs[e], &c, NULL, 0));
    for (int trial = 0; trial < 15; trial++) {
      seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
      int64_t after = 946684800 + (int64_t)(seed >> 33) % (30LL * 365 * 86400);
      int64_t next, t;
      ASSERT_OK(core_calendar_next(&c, after, &next));
      /* Seconds are always 0 here, so minute boundaries suffice. */
      for (t = after - after % 60 + 60; !naive_match(&c, t); t += 60)
        ;
      if (t != next)
        unit_fail(__FILE__, __LINE__, "'%s' after %lld: got %lld, naive %lld", exprs[e],
                  (long long)after, (long long)next, (long long)t);
    }
  }
}

UNIT_TEST(speed)
{
  /* Well under 1 ms a call, even for sparse expressions (checked loosely,
   * since sanitizers and a shared machine slow everything down). */
  static const char *const exprs[] = {
    "minutely", "hourly", "daily", "weekly", "monthly", "yearly", "sat 18:15",
    "mon..fri 22:30", "*:0/15", "fri *-*-13", "*-02-29", "mon *-02-29",
  };
  enum { CALLS = 200 };
  struct timespec t0, t1;
  use_tz("CET-1CEST,M3.5.0,M10.5.0/3");
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (size_t e = 0; e < N(exprs); e++) {
    struct core_calendar c;
    ASSERT_OK(core_calendar_parse(exprs[e], &c, NULL, 0));
    int64_t t = 1700000000;
    for (int i = 0; i < CALLS; i++) {
      int64_t next;
      ASSERT_OK(core_calendar_next(&c, t, &next));
      ASSERT(next > t);
      /* Sparse ones would leave year 9999 behind: start over. */
      t = next > 4102444800 ? 1700000000 + i * 86400 : next + (i * 7919) % 86400;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
  double per_call = ms / (double)(CALLS * N(exprs));
  printf("  %.4f ms per call\n", per_call);
  ASSERT(per_call < 1.0);
}

UNIT_MAIN(UNIT_CASE(keywords), UNIT_CASE(keyword_equivalents), UNIT_CASE(weekdays_and_times),
          UNIT_CASE(dates), UNIT_CASE(local_time), UNIT_CASE(dst_changes),
          UNIT_CASE(invalid), UNIT_CASE(next_edges), UNIT_CASE(matches_naive_scan),
          UNIT_CASE(speed))
