/* core_calendar.h: PBS/systemd-style calendar events ("sat 18:15").
 *
 * DESIGN
 * A schedule string (gc-schedule, prune-schedule) is parsed once, when the
 * config is saved or loaded, into a set of bitmasks, one per calendar field.
 * core_calendar_next() then finds the next matching second by checking the
 * fields from the largest (year) to the smallest (second) and, at the first
 * one that does not match, jumping straight to the start of the next
 * candidate year/month/day/hour/minute/second. Candidates are re-checked
 * after every jump, which keeps it right across DST changes without special
 * cases: hours, minutes and seconds move in epoch seconds (so a clock going
 * back or forward cannot make the search loop or skip), days and larger move
 * through mktime(). A typical call takes a handful of steps and well under a
 * microsecond; pure computation, no I/O: fine on the loop thread.
 *
 * Supported syntax (case-insensitive, fields separated by spaces):
 *     [WEEKDAYS] [[YEAR-]MONTH-DAY] [HOUR:MINUTE[:SECOND]] [UTC]
 * at least one of the first three present, in that order.
 *   WEEKDAYS  comma list of names or name ranges: mon, monday, mon..fri,
 *             sat,sun. Ranges go forward only (mon..sun, not fri..mon).
 *   numeric fields: comma list of items; an item is `*`, `N`, `N..M`, each
 *             optionally followed by `/STEP` (repeat every STEP from N, or
 *             from the field's minimum for `*`, up to M or the maximum).
 *             YEAR 1970..9999 (4 digits), MONTH 1..12, DAY 1..31,
 *             HOUR 0..23, MINUTE 0..59, SECOND 0..59 (1 or 2 digits).
 *   defaults: omitted weekdays and date match every day; an omitted time is
 *             00:00:00; HOUR:MINUTE means second 0.
 *   UTC       evaluate in UTC instead of the process's local time zone.
 *   keywords  minutely = *:*:00, hourly = *:00, daily = 00:00,
 *             weekly = mon 00:00, monthly = *-*-01 00:00,
 *             yearly = annually = *-01-01 00:00,
 *             quarterly = *-01,04,07,10-01 00:00,
 *             semiannually = *-01,07-01 00:00.
 * Not supported (refused with CORE_EPARSE): `~` (last days of month),
 * fractional seconds, time zone names other than UTC, two-digit years.
 *
 * A day must satisfy both the weekday set and the date ("fri *-*-13" is
 * Friday the 13th). Local time is whatever localtime_r()/mktime() say, i.e.
 * the TZ of the process; a time that a DST change skips (02:30 on the spring
 * day) does not occur that day, and one that occurs twice matches twice.
 */
#ifndef CORE_CALENDAR_H
#define CORE_CALENDAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest accepted expression, in bytes. */
#define CORE_CALENDAR_MAX_LEN 256
/* Most comma-separated items in the year field. */
#define CORE_CALENDAR_MAX_YEARS 8

struct core_calendar_years {
  uint16_t lo, hi, step; /* lo, lo+step, ... <= hi */
};

/* Plain value; copy freely. */
struct core_calendar {
  uint64_t sec;   /* bit s set: second s (0..59) matches */
  uint64_t min;   /* bit m: minute m (0..59) */
  uint32_t hour;  /* bit h: hour h (0..23) */
  uint32_t mday;  /* bit d: day of month d (1..31) */
  uint16_t mon;   /* bit m: month m (1..12) */
  uint8_t wday;   /* bit w: weekday w as in struct tm, 0 = Sunday */
  bool utc;       /* evaluate in UTC rather than local time */
  unsigned nyears; /* 0: every year; else the first nyears of years[] */
  struct core_calendar_years years[CORE_CALENDAR_MAX_YEARS];
};

/* Parses `s` into `*out`. Returns 0, or CORE_EPARSE for anything malformed,
 * out of range, empty, longer than CORE_CALENDAR_MAX_LEN or impossible (a
 * day that no chosen month has, like *-02-30). On error `*out` is unchanged
 * and, if `err` is not NULL, a NUL-terminated one-line reason is written to
 * err[0..errlen). */
int core_calendar_parse(const char *s, struct core_calendar *out, char *err,
                        size_t errlen);

/* Stores in `*next` the first event time strictly after `after_epoch`.
 * Returns 0; CORE_ENOTFOUND if there is none (a year list that is all in
 * the past, or Feb 29 only in non-leap years); CORE_EINVAL if a time cannot
 * be converted (outside what time_t/struct tm can hold). */
int core_calendar_next(const struct core_calendar *c, int64_t after_epoch,
                       int64_t *next);

#endif
