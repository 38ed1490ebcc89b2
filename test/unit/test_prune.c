/* test_prune.c: PBS prune selection, table driven.
 *
 * Every table lists one group's snapshots NEWEST FIRST, the order prune
 * reports them in, with the verdict expected for each. run_table() feeds
 * them to store_prune() in a scrambled order, then checks that the result
 * comes back sorted and that every snapshot got its verdict.
 *
 * Verdict strings: a keep rule name ("keep-last" ... "keep-yearly",
 * "keep-all") means mark `keep` for that reason; "keep-partial" and
 * "protected" are those marks; "remove" is any removal, and
 * "remove:superseded" / "remove:unfinished" / "remove:not-selected" also
 * pin the reason.
 *
 * Times without a suffix are local time of the zone the case sets (most use
 * UTC); times ending in "Z" are UTC whatever the zone.
 */
#include "unit.h"

#include "core/core_error.h"
#include "store/store_prune.h"

#include <stdint.h>
#include <time.h>

struct snap {
  const char *time;   /* "YYYY-MM-DD HH:MM[:SS]" local, or "...Z" UTC */
  const char *flags;  /* "" or letters: u = unfinished, p = protected */
  const char *expect; /* the verdict, see the file comment */
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void use_tz(const char *tz)
{
  setenv("TZ", tz, 1);
  tzset();
}

static int64_t parse_time(const char *s)
{
  struct tm tm = {0};
  int sec = 0, n = 0;
  size_t len = strlen(s);
  if (sscanf(s, "%d-%d-%d %d:%d:%d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
             &tm.tm_hour, &tm.tm_min, &sec, &n) < 5) {
    unit_fail(__FILE__, __LINE__, "bad time in table: %s", s);
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  tm.tm_sec = sec;
  if (s[len - 1] == 'Z')
    return (int64_t)timegm(&tm);
  tm.tm_isdst = -1;
  return (int64_t)mktime(&tm);
}

static void verdict(const struct store_prune_item *it, char *out, size_t len)
{
  if (it->mark == STORE_PRUNE_KEEP)
    snprintf(out, len, "%s", store_prune_reason_name(it->reason));
  else if (it->mark == STORE_PRUNE_REMOVE)
    snprintf(out, len, "remove:%s", store_prune_reason_name(it->reason));
  else
    snprintf(out, len, "%s", store_prune_mark_name(it->mark));
}

static void run_table_at(const char *file, int line, const struct snap *tab,
                         size_t n, const struct store_prune_keep *keep,
                         unsigned flags)
{
  struct store_prune_item items[64];
  if (n > N(items))
    unit_fail(file, line, "table too big");

  /* Feed them oldest first with neighbours swapped, so the sort is
   * exercised on every table. */
  for (size_t i = 0; i < n; i++) {
    size_t src = n - 1 - (i ^ 1);
    if (src >= n)
      src = n - 1 - i;
    struct store_prune_item *it = &items[i];
    memset(it, 0xa5, sizeof(*it)); /* outputs must all be written */
    it->backup_time = parse_time(tab[src].time);
    it->finished = strchr(tab[src].flags, 'u') == NULL;
    it->protected = strchr(tab[src].flags, 'p') != NULL;
    it->user = (void *)&tab[src];
  }
  int rc = store_prune(items, n, keep, flags);
  if (rc != 0)
    unit_fail(file, line, "store_prune: %d", rc);

  for (size_t i = 0; i < n; i++) {
    char got[64];
    const struct snap *s = items[i].user;
    if (s != &tab[i])
      unit_fail(file, line, "position %zu holds %s, expected %s", i, s->time,
                tab[i].time);
    verdict(&items[i], got, sizeof(got));
    int ok = strchr(s->expect, ':') ? strcmp(got, s->expect) == 0
                                    : strncmp(got, s->expect, strlen(s->expect)) == 0 &&
                                          (got[strlen(s->expect)] == '\0' ||
                                           got[strlen(s->expect)] == ':');
    if (!ok)
      unit_fail(file, line, "%s: got %s, expected %s", s->time, got, s->expect);
    if (store_prune_mark_keeps(items[i].mark) != (strncmp(got, "remove", 6) != 0))
      unit_fail(file, line, "%s: keeps() disagrees with %s", s->time, got);
  }
}

#define RUN(tab, keep, flags) run_table_at(__FILE__, __LINE__, tab, N(tab), keep, flags)

/* ---- single rules ---------------------------------------------------- */

UNIT_TEST(keep_last)
{
  /* keep-last counts snapshots, not periods: the three newest stay even
   * though two share an hour and a day. */
  static const struct snap tab[] = {
    {"2024-03-05 12:30", "", "keep-last"},
    {"2024-03-05 12:00", "", "keep-last"},
    {"2024-03-04 08:00", "", "keep-last"},
    {"2024-03-03 08:00", "", "remove:not-selected"},
    {"2024-03-01 08:00", "", "remove:not-selected"},
  };
  struct store_prune_keep keep = {.last = 3};
  use_tz("UTC");
  RUN(tab, &keep, 0);
}

UNIT_TEST(keep_last_more_than_present)
{
  /* Asking for more than there is keeps everything. */
  static const struct snap tab[] = {
    {"2024-03-05 12:30", "", "keep-last"},
    {"2024-03-04 12:30", "", "keep-last"},
  };
  struct store_prune_keep keep = {.last = 10};
  use_tz("UTC");
  RUN(tab, &keep, 0);
}

UNIT_TEST(keep_hourly)
{
  /* In the style of PBS's hourly test: several backups an hour. The newest
   * of each hour is kept; older ones in an already chosen hour are
   * superseded; once 3 hours are chosen the next new hour (09:xx) ends the
   * pass and everything older stays unselected. */
  static const struct snap tab[] = {
    {"2019-11-15 11:59:15", "", "keep-hourly"},
    {"2019-11-15 11:49:15", "", "remove:superseded"},
    {"2019-11-15 11:39:15", "", "remove:superseded"},
    {"2019-11-15 10:59:15", "", "keep-hourly"},
    {"2019-11-15 10:49:15", "", "remove:superseded"},
    {"2019-11-15 08:39:15", "", "keep-hourly"},
    {"2019-11-15 07:39:15", "", "remove:not-selected"},
    {"2019-11-14 23:39:15", "", "remove:not-selected"},
  };
  struct store_prune_keep keep = {.hourly = 3};
  use_tz("UTC");
  RUN(tab, &keep, 0);
}

UNIT_TEST(keep_daily)
{
  /* Gaps do not matter: "3 days" means the 3 newest days that have a
   * backup, here the 10th, 8th and 5th. */
  static const struct snap tab[] = {
    {"2024-03-10 23:59:59", "", "keep-daily"},
    {"2024-03-10 00:00:00", "", "remove:superseded"},
    {"2024-03-08 12:00", "", "keep-daily"},
    {"2024-03-05 18:00", "", "keep-daily"},
    {"2024-03-05 06:00", "", "remove:superseded"},
    {"2024-03-04 18:00", "", "remove:not-selected"},
    {"2024-02-04 18:00", "", "remove:not-selected"},
  };
  struct store_prune_keep keep = {.daily = 3};
  use_tz("UTC");
  RUN(tab, &keep, 0);
}

UNIT_TEST(keep_weekly_iso_year_boundary)
{
  /* ISO weeks: 2020-12-28 (Mon) .. 2021-01-03 (Sun) is ONE week, 2020-W53,
   * although it spans two calendar years; 2021-01-04 opens 2021-W01 and
   * 2020-12-27 (Sun) is the last day of 2020-W52. With keep-weekly=2 the
   * Jan 4 snapshot takes W01, Jan 3 takes W53, and Jan 1, Dec 31 and Dec 28
   * are superseded within W53 (a %Y-based key would have kept Dec 31 as a
   * separate "2020" week). Dec 27 starts a third week: end of the pass. */
  static const struct snap tab[] = {
    {"2021-01-04 10:00", "", "keep-weekly"},
    {"2021-01-03 10:00", "", "keep-weekly"},
    {"2021-01-01 10:00", "", "remove:superseded"},
    {"2020-12-31 10:00", "", "remove:superseded"},
    {"2020-12-28 00:00", "", "remove:superseded"},
    {"2020-12-27 23:59", "", "remove:not-selected"},
  };
  struct store_prune_keep keep = {.weekly = 2};
  use_tz("UTC");
  RUN(tab, &keep, 0);
}

UNIT_TEST(keep_weekly_iso_next_year)
{
  /* The other direction: 2019-12-30 (Mon) already belongs to 2020-W01, the
   * week of 2020-01-02; 2019-12-29 (Sun) is 2019-W52. */
  static const struct snap tab[] = {
    {"2020-01-02 10:00", "", "keep-weekly"},
    {"2019-12-30 10:00", "", "remove:superseded"},
    {"2019-12-29 10:00", "", "keep-weekly"},
    {"2019-12-23 10:00", "", "remove:superseded"},
  };
  struct store_prune_keep keep = {.weekly = 5};
  use_tz("UTC");
  RUN(tab, &keep, 0);
}

UNIT_TEST(keep_weekly_matches_strftime)
{
  /* For every pair of consecutive days 1998..2032, two snapshots are in the
   * same prune week exactly when strftime's %G-%V agrees: with keep-weekly=1
   * the older one is superseded then, and not selected otherwise. */
  use_tz("UTC");
  struct store_prune_keep keep = {.weekly = 1};
  int64_t start = parse_time("1998-01-01 12:00Z");
  int64_t end = parse_time("2032-12-31 12:00Z");
  int same_weeks = 0;
  for (int64_t t = start; t < end; t += 86400) {
    struct store_prune_item it[2] = {{.backup_time = t, .finished = true},
                                     {.backup_time = t + 86400, .finished = true}};
    char a[16], b[16];
    time_t ta = (time_t)t, tb = (time_t)(t + 86400);
    struct tm tma, tmb;
    gmtime_r(&ta, &tma);
    gmtime_r(&tb, &tmb);
    strftime(a, sizeof(a), "%G-%V", &tma);
    strftime(b, sizeof(b), "%G-%V", &tmb);
    ASSERT_OK(store_prune(it, 2, &keep, 0));
    ASSERT_EQ(it[0].backup_time, t + 86400);
    ASSERT_EQ(it[0].reason, STORE_PRUNE_R_WEEKLY);
    if (strcmp(a, b) == 0) {
      same_weeks++;
      ASSERT_EQ(it[1].reason, STORE_PRUNE_R_SUPERSEDED);
    } else {
      ASSERT_EQ(it[1].reason, STORE_PRUNE_R_NONE);
    }
    ASSERT_EQ(it[1].mark, STORE_PRUNE_REMOVE);
  }
  ASSERT(same_weeks > 10000);
}

UNIT_TEST(keep_monthly)
{
  /* Calendar months, not 30-day windows: Jan 31 and Feb 1 are different
   * months, Mar 1 and Mar 31 the same one. */
  static const struct snap tab[] = {
    {"2024-03-31 12:00", "", "keep-monthly"},
    {"2024-03-01 00:00", "", "remove:superseded"},
    {"2024-02-01 00:00", "", "keep-monthly"},
    {"2024-01-31 23:59", "", "keep-monthly"},
    {"2023-12-31 23:59", "", "remove:not-selected"},
  };
  struct store_prune_keep keep = {.monthly = 3};
  use_tz("UTC");
  RUN(tab, &keep, 0);
}

UNIT_TEST(keep_yearly)
{
  static const struct snap tab[] = {
    {"2024-01-01 00:00", "", "keep-yearly"},
    {"2023-12-31 23:59", "", "keep-yearly"},
    {"2023-01-01 00:00", "", "remove:superseded"},
    {"2020-06-15 00:00", "", "keep-yearly"},
    {"2019-06-15 00:00", "", "remove:not-selected"},
  };
  struct store_prune_keep keep = {.yearly = 3};
  use_tz("UTC");
  RUN(tab, &keep, 0);
}

/* ---- mixes of rules -------------------------------------------------- */

UNIT_TEST(last_then_daily)
{
  /* keep-last=1 takes the newest. The daily pass then sees day 3 as already
   * covered: 03 12:00 is skipped (not counted, not kept) and the two daily
   * slots go to day 2 and day 1. So the result spans 3 days, not 2: the
   * rules add up rather than overlap. */
  static const struct snap tab[] = {
    {"2024-05-03 18:00", "", "keep-last"},
    {"2024-05-03 12:00", "", "remove:not-selected"},
    {"2024-05-02 18:00", "", "keep-daily"},
    {"2024-05-02 12:00", "", "remove:superseded"},
    {"2024-05-01 18:00", "", "keep-daily"},
    {"2024-04-30 18:00", "", "remove:not-selected"},
  };
  struct store_prune_keep keep = {.last = 1, .daily = 2};
  use_tz("UTC");
  RUN(tab, &keep, 0);
}

UNIT_TEST(daily_then_weekly)
{
  /* One backup a day at noon, 2024-01-01 (Mon) .. 2024-01-21 (Sun): ISO
   * weeks W01 = 1..7, W02 = 8..14, W03 = 15..21. keep-daily=3 keeps 21, 20,
   * 19 and stops at 18. The weekly pass sees W03 covered by those, so 18..15
   * are skipped; 14 opens W02 (kept), 13..8 are superseded; 7 opens W01
   * (kept, 2nd week), 6..1 superseded. Days 15..18 end up unselected. */
  struct snap tab[21];
  static char times[21][20];
  for (int d = 21; d >= 1; d--) {
    int i = 21 - d;
    snprintf(times[i], sizeof(times[i]), "2024-01-%02d 12:00", d);
    tab[i].time = times[i];
    tab[i].flags = "";
    if (d >= 19)
      tab[i].expect = "keep-daily";
    else if (d >= 15)
      tab[i].expect = "remove:not-selected";
    else if (d == 14 || d == 7)
      tab[i].expect = "keep-weekly";
    else
      tab[i].expect = "remove:superseded";
  }
  struct store_prune_keep keep = {.daily = 3, .weekly = 2};
  use_tz("UTC");
  RUN(tab, &keep, 0);
}

UNIT_TEST(pbs_style_full_mix)
{
  /* A year of history thinned as an administrator would: keep-last=2,
   * keep-daily=2, keep-weekly=2, keep-monthly=2, keep-yearly=2.
   *   last:    06-14 22:00, 06-14 10:00
   *   daily:   covered {06-14}; 06-13 20:00 kept, 06-13 08:00 superseded,
   *            06-12 kept; 06-11 is a 3rd new day: stop.
   *   weekly:  covered = weeks of the kept ones: 06-14 (Fri) and 06-12 (Wed)
   *            are 2024-W24 (06-10..06-16); 06-11 is covered -> skip;
   *            06-09 (Sun) opens W23, kept; 06-03 (Mon, W23) superseded;
   *            06-02 (Sun) opens W22, kept; 05-20 is a 3rd week: stop.
   *   monthly: covered {2024-06} and {2024-06} again -> 05-20 opens 2024-05,
   *            kept; 05-01 superseded; 04-15 opens 2024-04, kept; 03-01 is a
   *            3rd month: stop.
   *   yearly:  covered {2024}: 03-01 and 2024-01-01 skipped; 2023-12-31
   *            opens 2023, kept; 2023-01-01 superseded; 2022-07-01 opens
   *            2022, kept.
   *   2021-07-01 is a 3rd year: remove, as are the skipped ones. */
  static const struct snap tab[] = {
    {"2024-06-14 22:00", "", "keep-last"},
    {"2024-06-14 10:00", "", "keep-last"},
    {"2024-06-13 20:00", "", "keep-daily"},
    {"2024-06-13 08:00", "", "remove:superseded"},
    {"2024-06-12 20:00", "", "keep-daily"},
    {"2024-06-11 20:00", "", "remove:not-selected"},
    {"2024-06-09 20:00", "", "keep-weekly"},
    {"2024-06-03 20:00", "", "remove:superseded"},
    {"2024-06-02 20:00", "", "keep-weekly"},
    {"2024-05-20 20:00", "", "keep-monthly"},
    {"2024-05-01 20:00", "", "remove:superseded"},
    {"2024-04-15 20:00", "", "keep-monthly"},
    {"2024-03-01 20:00", "", "remove:not-selected"},
    {"2024-01-01 20:00", "", "remove:not-selected"},
    {"2023-12-31 20:00", "", "keep-yearly"},
    {"2023-01-01 20:00", "", "remove:superseded"},
    {"2022-07-01 20:00", "", "keep-yearly"},
    {"2021-07-01 20:00", "", "remove:not-selected"},
  };
  struct store_prune_keep keep = {.last = 2, .daily = 2, .weekly = 2, .monthly = 2,
                                  .yearly = 2};
  use_tz("UTC");
  RUN(tab, &keep, 0);
}

UNIT_TEST(superseded_not_reconsidered)
{
  /* A snapshot superseded in one pass is marked and never looked at again:
   * with keep-hourly=1 + keep-daily=5, 10:00 is superseded by 10:30 in the
   * hourly pass, so the daily pass cannot pick it, and the day is covered
   * anyway. 09:00 was past the hourly stop, but its day is covered by
   * 10:30's keep: skipped. Day 2 gets its own daily keep. */
  static const struct snap tab[] = {
    {"2024-05-03 10:30", "", "keep-hourly"},
    {"2024-05-03 10:00", "", "remove:superseded"},
    {"2024-05-03 09:00", "", "remove:not-selected"},
    {"2024-05-02 09:00", "", "keep-daily"},
  };
  struct store_prune_keep keep = {.hourly = 1, .daily = 5};
  use_tz("UTC");
  RUN(tab, &keep, 0);
}

UNIT_TEST(rule_order_is_fixed)
{
  /* Rules run last, hourly, daily, ... regardless of which are given, so a
   * keep-yearly=1 next to keep-last=1 does not take the newest snapshot: the
   * year is already covered by keep-last and the yearly slot goes to the
   * previous year. */
  static const struct snap tab[] = {
    {"2024-05-03 10:30", "", "keep-last"},
    {"2024-01-03 10:30", "", "remove:not-selected"},
    {"2023-05-03 10:30", "", "keep-yearly"},
    {"2022-05-03 10:30", "", "remove:not-selected"},
  };
  struct store_prune_keep keep = {.last = 1, .yearly = 1};
  use_tz("UTC");
  RUN(tab, &keep, 0);
}

/* ---- protected ------------------------------------------------------- */

UNIT_TEST(protected_not_counted)
{
  /* keep-last=2 still keeps two unprotected snapshots; the protected one in
   * between is kept on top of them. */
  static const struct snap tab[] = {
    {"2024-05-04 10:00", "", "keep-last"},
    {"2024-05-03 10:00", "p", "protected"},
    {"2024-05-02 10:00", "", "keep-last"},
    {"2024-05-01 10:00", "", "remove:not-selected"},
  };
  struct store_prune_keep keep = {.last = 2};
  use_tz("UTC");
  RUN(tab, &keep, 0);
}

UNIT_TEST(protected_does_not_cover_period)
{
  /* A protected snapshot neither uses up a daily slot nor marks its day as
   * taken: the unprotected 08:00 of the same day is still kept daily, and
   * day 2 is the second new day for keep-daily=1: end of pass. */
  static const struct snap tab[] = {
    {"2024-05-03 18:00", "p", "protected"},
    {"2024-05-03 08:00", "", "keep-daily"},
    {"2024-05-02 08:00", "", "remove:not-selected"},
  };
  struct store_prune_keep keep = {.daily = 1};
  use_tz("UTC");
  RUN(tab, &keep, 0);
}

UNIT_TEST(protected_beyond_the_pass)
{
  /* 09:00 is protected where it would otherwise have been superseded (it
   * is marked when the pass meets it). The pass stops at 05-02, before the
   * old protected snapshots; they are unmarked, and the old one is even
   * unfinished (marked remove up front), but protection wins at the end. */
  static const struct snap tab[] = {
    {"2024-05-03 10:00", "", "keep-daily"},
    {"2024-05-03 09:00", "p", "protected"},
    {"2024-05-02 10:00", "", "remove:not-selected"},
    {"2020-01-01 10:00", "p", "protected"},
    {"2019-01-01 10:00", "pu", "protected"},
  };
  struct store_prune_keep keep = {.daily = 1};
  use_tz("UTC");
  RUN(tab, &keep, 0);
}

UNIT_TEST(all_protected)
{
  static const struct snap tab[] = {
    {"2024-05-03 10:00", "p", "protected"},
    {"2024-05-02 10:00", "p", "protected"},
  };
  struct store_prune_keep keep = {.last = 1};
  use_tz("UTC");
  RUN(tab, &keep, 0);
}

/* ---- unfinished ------------------------------------------------------ */

UNIT_TEST(unfinished_newest_is_partial)
{
  /* The newest snapshot has no manifest yet (a running backup): kept as
   * keep-partial and not counted, so keep-last=1 still keeps the newest
   * finished one. */
  static const struct snap tab[] = {
    {"2024-05-03 10:00", "u", "keep-partial"},
    {"2024-05-02 10:00", "", "keep-last"},
    {"2024-05-01 10:00", "", "remove:not-selected"},
  };
  struct store_prune_keep keep = {.last = 1};
  use_tz("UTC");
  RUN(tab, &keep, 0);
}

UNIT_TEST(unfinished_only_newest)
{
  /* Two unfinished at the top: only the newest is partial. An unfinished
   * one older than a finished one is a failed backup: removed, and not
   * counted by keep-last=3 either. */
  static const struct snap tab[] = {
    {"2024-05-05 10:00", "u", "keep-partial"},
    {"2024-05-04 10:00", "u", "remove:unfinished"},
    {"2024-05-03 10:00", "", "keep-last"},
    {"2024-05-02 10:00", "u", "remove:unfinished"},
    {"2024-05-01 10:00", "", "keep-last"},
  };
  struct store_prune_keep keep = {.last = 3};
  use_tz("UTC");
  RUN(tab, &keep, 0);
}

UNIT_TEST(unfinished_does_not_cover_period)
{
  /* A keep-partial snapshot is not `keep`, so it does not cover its day: the
   * finished 08:00 of the same day gets the daily slot. */
  static const struct snap tab[] = {
    {"2024-05-03 18:00", "u", "keep-partial"},
    {"2024-05-03 08:00", "", "keep-daily"},
    {"2024-05-02 08:00", "", "remove:not-selected"},
  };
  struct store_prune_keep keep = {.daily = 1};
  use_tz("UTC");
  RUN(tab, &keep, 0);
}

UNIT_TEST(unfinished_all)
{
  static const struct snap tab[] = {
    {"2024-05-03 18:00", "u", "keep-partial"},
    {"2024-05-02 18:00", "u", "remove:unfinished"},
  };
  struct store_prune_keep keep = {.daily = 7};
  use_tz("UTC");
  RUN(tab, &keep, 0);
}

/* ---- keep-all -------------------------------------------------------- */

UNIT_TEST(keep_all)
{
  /* No option given: nothing is removed, unfinished ones included. */
  static const struct snap tab[] = {
    {"2024-05-03 18:00", "u", "keep-all"},
    {"2024-05-03 08:00", "", "keep-all"},
    {"2024-05-02 08:00", "p", "protected"},
    {"2024-05-01 08:00", "u", "keep-all"},
  };
  struct store_prune_keep keep = {0};
  use_tz("UTC");
  ASSERT(store_prune_keep_all(&keep));
  RUN(tab, &keep, 0);
}

/* ---- local time ------------------------------------------------------ */

UNIT_TEST(local_time_fixed_zone)
{
  /* UTC+10 (POSIX "XST-10"): 2024-01-01 15:00Z is 01:00 local on Jan 2,
   * 13:00Z is 23:00 local on Jan 1, and 2023-12-31 15:00Z is 01:00 local on
   * Jan 1. So the first two are different local days (both kept by
   * keep-daily=2) and the third shares Jan 1 with the second. */
  static const struct snap tab[] = {
    {"2024-01-01 15:00Z", "", "keep-daily"},
    {"2024-01-01 13:00Z", "", "keep-daily"},
    {"2023-12-31 15:00Z", "", "remove:superseded"},
  };
  /* With STORE_PRUNE_UTC the same snapshots are one UTC day. */
  static const struct snap tab_utc[] = {
    {"2024-01-01 15:00Z", "", "keep-daily"},
    {"2024-01-01 13:00Z", "", "remove:superseded"},
    {"2023-12-31 15:00Z", "", "keep-daily"},
  };
  struct store_prune_keep keep = {.daily = 2};
  use_tz("XST-10");
  RUN(tab, &keep, 0);
  RUN(tab_utc, &keep, STORE_PRUNE_UTC);
}

UNIT_TEST(local_time_week_boundary)
{
  /* UTC-5: 2021-01-04 03:00Z is still Sunday 2021-01-03 22:00 local, i.e.
   * ISO 2020-W53 like the Jan 2 one; in UTC it would be a new week. */
  static const struct snap tab[] = {
    {"2021-01-04 03:00Z", "", "keep-weekly"},
    {"2021-01-02 12:00Z", "", "remove:superseded"},
  };
  struct store_prune_keep keep = {.weekly = 2};
  use_tz("EST5");
  RUN(tab, &keep, 0);
}

UNIT_TEST(local_time_dst_fall_back)
{
  /* Central Europe, 2023-10-29: clocks go 03:00 CEST -> 02:00 CET, so the
   * local hour 02 happens twice: 00:30Z = 02:30 CEST and 01:30Z = 02:30 CET.
   * PBS keys hours on the local %H, so both land in the same hourly period
   * and the older is superseded. 01:59Z = 02:59 CET is the same hour too;
   * 02:00Z = 03:00 CET is the next one. */
  static const struct snap tab[] = {
    {"2023-10-29 02:00Z", "", "keep-hourly"},
    {"2023-10-29 01:59Z", "", "keep-hourly"},
    {"2023-10-29 01:30Z", "", "remove:superseded"},
    {"2023-10-29 00:30Z", "", "remove:superseded"},
    {"2023-10-28 23:30Z", "", "keep-hourly"},
  };
  struct store_prune_keep keep = {.hourly = 24};
  use_tz("CET-1CEST,M3.5.0,M10.5.0/3");
  RUN(tab, &keep, 0);
}

UNIT_TEST(local_time_keys_go_back)
{
  /* The pass ENDS at the first new period once N are chosen; it does not
   * merely skip it. That is only visible when a period key reappears later
   * in the walk, i.e. when the local clock steps back across a period
   * boundary. Zone UTC+1 with DST (UTC+2) ending at 02:30 local: on
   * 2023-10-29 the clock goes 02:30 DST -> 01:30 std, so 01:30..02:30 runs
   * twice and the 02:00 hour boundary lies inside it. Newest first:
   *   01:15Z = 02:15 std (hour 02)   keep-hourly
   *   00:45Z = 01:45 std (hour 01)   new hour, 1 chosen: the pass ends here
   *   00:15Z = 02:15 DST (hour 02)   never visited: not-selected (were the
   *                                  pass to go on, it would be superseded)
   *   23:45Z = 01:45 DST (hour 01)   not-selected */
  static const struct snap tab[] = {
    {"2023-10-29 01:15Z", "", "keep-hourly"},
    {"2023-10-29 00:45Z", "", "remove:not-selected"},
    {"2023-10-29 00:15Z", "", "remove:not-selected"},
    {"2023-10-28 23:45Z", "", "remove:not-selected"},
  };
  /* With two hours both repeated ones are superseded. */
  static const struct snap tab2[] = {
    {"2023-10-29 01:15Z", "", "keep-hourly"},
    {"2023-10-29 00:45Z", "", "keep-hourly"},
    {"2023-10-29 00:15Z", "", "remove:superseded"},
    {"2023-10-28 23:45Z", "", "remove:superseded"},
  };
  struct store_prune_keep keep = {.hourly = 1};
  use_tz("AAA-1BBB,M3.5.0/2:30,M10.5.0/2:30");
  RUN(tab, &keep, 0);
  keep.hourly = 2;
  RUN(tab2, &keep, 0);
}

/* ---- API edges ------------------------------------------------------- */

UNIT_TEST(api_edges)
{
  struct store_prune_keep keep = {.last = 1};
  struct store_prune_item it = {.backup_time = INT64_MAX, .finished = true};
  use_tz("UTC");
  ASSERT_OK(store_prune(NULL, 0, &keep, 0));
  ASSERT_EQ(store_prune(&it, 1, NULL, 0), CORE_EINVAL);
  ASSERT_EQ(store_prune(NULL, 1, &keep, 0), CORE_EINVAL);
  /* Not representable as a calendar time. */
  ASSERT_EQ(store_prune(&it, 1, &keep, 0), CORE_EINVAL);
  ASSERT_EQ(store_prune(&it, 1, &keep, STORE_PRUNE_UTC), CORE_EINVAL);

  /* keep-last counting is exact for a big N and many snapshots. */
  enum { COUNT = 20000 };
  struct store_prune_item *many = calloc(COUNT, sizeof(*many));
  ASSERT(many != NULL);
  for (int i = 0; i < COUNT; i++) {
    many[i].backup_time = 1600000000 + (int64_t)((i * 7919) % COUNT) * 600;
    many[i].finished = true;
  }
  struct store_prune_keep k2 = {.last = 100, .hourly = 48, .daily = 30, .weekly = 8,
                                .monthly = 12, .yearly = 5};
  ASSERT_OK(store_prune(many, COUNT, &k2, 0));
  int kept[STORE_PRUNE_R_SUPERSEDED + 1] = {0};
  for (int i = 0; i < COUNT; i++) {
    if (i > 0)
      ASSERT(many[i - 1].backup_time > many[i].backup_time);
    if (many[i].mark == STORE_PRUNE_KEEP)
      kept[many[i].reason]++;
  }
  /* 20000 snapshots 10 minutes apart span ~139 days from 2020-09-13. */
  ASSERT_EQ(kept[STORE_PRUNE_R_LAST], 100);
  ASSERT_EQ(kept[STORE_PRUNE_R_HOURLY], 48);
  ASSERT_EQ(kept[STORE_PRUNE_R_DAILY], 30);
  ASSERT_EQ(kept[STORE_PRUNE_R_WEEKLY], 8);
  ASSERT(kept[STORE_PRUNE_R_MONTHLY] >= 1 && kept[STORE_PRUNE_R_MONTHLY] <= 4);
  /* Both years, 2020 and 2021, already hold a kept snapshot. */
  ASSERT_EQ(kept[STORE_PRUNE_R_YEARLY], 0);
  free(many);
}

UNIT_TEST(keep_set_parsing)
{
  static const struct {
    const char *key, *value;
    int rc;
  } tab[] = {
    {"keep-last", "1", 0},
    {"keep-hourly", "24", 0},
    {"keep-daily", "7", 0},
    {"keep-weekly", "4", 0},
    {"keep-monthly", "12", 0},
    {"keep-yearly", "9007199254740992", 0}, /* 2^53, the largest allowed */
    {"keep-yearly", "9007199254740993", CORE_EINVAL},
    {"keep-last", "99999999999999999999999", CORE_EINVAL},
    {"keep-last", "0", CORE_EINVAL},
    {"keep-last", "00", CORE_EINVAL},
    {"keep-last", "-1", CORE_EINVAL},
    {"keep-last", "+1", CORE_EINVAL},
    {"keep-last", " 1", CORE_EINVAL},
    {"keep-last", "1 ", CORE_EINVAL},
    {"keep-last", "1x", CORE_EINVAL},
    {"keep-last", "abc", CORE_EINVAL},
    {"keep-last", "1.5", CORE_EINVAL},
    {"keep-last", "", CORE_EINVAL},
    {"keep-last", NULL, CORE_EINVAL},
    {"keep-minutely", "1", CORE_ENOTFOUND},
    {"dry-run", "1", CORE_ENOTFOUND},
    {"Keep-Last", "1", CORE_ENOTFOUND},
  };
  for (size_t i = 0; i < N(tab); i++) {
    struct store_prune_keep keep = {.last = 5, .hourly = 5, .daily = 5, .weekly = 5,
                                    .monthly = 5, .yearly = 5};
    struct store_prune_keep before = keep;
    int rc = store_prune_keep_set(&keep, tab[i].key, tab[i].value);
    if (rc != tab[i].rc)
      unit_fail(__FILE__, __LINE__, "%s=%s: rc %d, expected %d", tab[i].key,
                tab[i].value ? tab[i].value : "(null)", rc, tab[i].rc);
    if (rc != 0)
      ASSERT_MEM_EQ(&keep, &before, sizeof(keep));
  }
  struct store_prune_keep keep = {0};
  ASSERT_OK(store_prune_keep_set(&keep, "keep-last", "3"));
  ASSERT_OK(store_prune_keep_set(&keep, "keep-hourly", "4"));
  ASSERT_OK(store_prune_keep_set(&keep, "keep-daily", "5"));
  ASSERT_OK(store_prune_keep_set(&keep, "keep-weekly", "6"));
  ASSERT_OK(store_prune_keep_set(&keep, "keep-monthly", "7"));
  ASSERT_OK(store_prune_keep_set(&keep, "keep-yearly", "8"));
  ASSERT_EQ(keep.last, 3);
  ASSERT_EQ(keep.hourly, 4);
  ASSERT_EQ(keep.daily, 5);
  ASSERT_EQ(keep.weekly, 6);
  ASSERT_EQ(keep.monthly, 7);
  ASSERT_EQ(keep.yearly, 8);
  ASSERT(!store_prune_keep_all(&keep));
  ASSERT_EQ(store_prune_keep_set(NULL, "keep-last", "1"), CORE_EINVAL);
  ASSERT_EQ(store_prune_keep_set(&keep, NULL, "1"), CORE_EINVAL);
}

UNIT_TEST(names)
{
  ASSERT_STR_EQ(store_prune_mark_name(STORE_PRUNE_KEEP), "keep");
  ASSERT_STR_EQ(store_prune_mark_name(STORE_PRUNE_REMOVE), "remove");
  ASSERT_STR_EQ(store_prune_mark_name(STORE_PRUNE_PROTECTED), "protected");
  ASSERT_STR_EQ(store_prune_mark_name(STORE_PRUNE_KEEP_PARTIAL), "keep-partial");
  ASSERT_STR_EQ(store_prune_mark_name((enum store_prune_mark)99), "unknown");
  ASSERT(store_prune_mark_keeps(STORE_PRUNE_KEEP));
  ASSERT(store_prune_mark_keeps(STORE_PRUNE_PROTECTED));
  ASSERT(store_prune_mark_keeps(STORE_PRUNE_KEEP_PARTIAL));
  ASSERT(!store_prune_mark_keeps(STORE_PRUNE_REMOVE));
  static const char *const reasons[] = {
    "not-selected", "keep-last", "keep-hourly", "keep-daily", "keep-weekly",
    "keep-monthly", "keep-yearly", "keep-all", "keep-partial", "protected",
    "unfinished", "superseded",
  };
  for (size_t i = 0; i < N(reasons); i++)
    ASSERT_STR_EQ(store_prune_reason_name((enum store_prune_reason)i), reasons[i]);
}

UNIT_MAIN(UNIT_CASE(keep_last), UNIT_CASE(keep_last_more_than_present),
          UNIT_CASE(keep_hourly), UNIT_CASE(keep_daily),
          UNIT_CASE(keep_weekly_iso_year_boundary), UNIT_CASE(keep_weekly_iso_next_year),
          UNIT_CASE(keep_weekly_matches_strftime), UNIT_CASE(keep_monthly),
          UNIT_CASE(keep_yearly), UNIT_CASE(last_then_daily), UNIT_CASE(daily_then_weekly),
          UNIT_CASE(pbs_style_full_mix), UNIT_CASE(superseded_not_reconsidered),
          UNIT_CASE(rule_order_is_fixed), UNIT_CASE(protected_not_counted),
          UNIT_CASE(protected_does_not_cover_period), UNIT_CASE(protected_beyond_the_pass),
          UNIT_CASE(all_protected), UNIT_CASE(unfinished_newest_is_partial),
          UNIT_CASE(unfinished_only_newest), UNIT_CASE(unfinished_does_not_cover_period),
          UNIT_CASE(unfinished_all), UNIT_CASE(keep_all), UNIT_CASE(local_time_fixed_zone),
          UNIT_CASE(local_time_week_boundary), UNIT_CASE(local_time_dst_fall_back),
          UNIT_CASE(local_time_keys_go_back),
          UNIT_CASE(api_edges), UNIT_CASE(keep_set_parsing), UNIT_CASE(names))
