/* fuzz_calendar.c: calendar events (gc-schedule, prune-schedule) and the
 * search for the next event.
 *
 * Input: 8 bytes of start time (little-endian, folded into years 1970..2200),
 * then the expression. The process runs in a time zone with DST (a POSIX TZ
 * string: no tzdata needed, the same on every machine). For a parsed event,
 * the next few events are computed; each must be strictly later than the
 * one before, and searching again from one second before an event must find
 * that same event (it really matches, and nothing was skipped before it). */
#include "fuzz.h"

#include "core/core_calendar.h"
#include "core/core_error.h"

#include <time.h>

#define SPAN_S ((int64_t)230 * 365 * 86400) /* 1970 .. about 2200 */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  setenv("TZ", "CET-1CEST,M3.5.0,M10.5.0/3", 1);
  tzset();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 8)
    return 0;
  uint64_t raw = 0;
  for (int i = 7; i >= 0; i--)
    raw = raw << 8 | data[i];
  int64_t after = (int64_t)(raw % (uint64_t)SPAN_S);
  struct fuzz_fields ff;
  fuzz_split(&ff, data + 8, size - 8);

  struct core_calendar c;
  char err[128] = "";
  int rc = core_calendar_parse(ff.f[0], &c, err, sizeof(err));
  if (rc != 0) {
    FUZZ_ASSERT(rc == CORE_EPARSE && err[0] != '\0');
    goto out;
  }
  int64_t t = after;
  for (int i = 0; i < 4; i++) {
    int64_t next;
    rc = core_calendar_next(&c, t, &next);
    FUZZ_ASSERT(rc == 0 || rc == CORE_ENOTFOUND || rc == CORE_EINVAL);
    if (rc != 0)
      break;
    FUZZ_ASSERT(next > t);
    int64_t again;
    FUZZ_ASSERT(core_calendar_next(&c, next - 1, &again) == 0 && again == next);
    t = next;
  }
out:
  fuzz_fields_free(&ff);
  return 0;
}
