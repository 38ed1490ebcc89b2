/* core_fmt.c: numbers as text for people. */
#include "core/core_fmt.h"

#include <inttypes.h>
#include <stdio.h>

void core_fmt_bytes(uint64_t n, char *out, size_t size)
{
  static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  const unsigned last = sizeof(units) / sizeof(units[0]) - 1;
  double v = (double)n;
  unsigned u = 0;
  /* The thresholds are where the printed value rounds up, so 1023.7 KiB
   * reads "1.00 MiB" rather than "1024 KiB", and 9.999 KiB "10.0 KiB"
   * rather than "10.00 KiB". */
  while (v >= 1023.5 && u < last) {
    v /= 1024;
    u++;
  }
  /* Whole bytes are exact; scaled values keep three significant digits,
   * which is what a reader compares at a glance ("1.50 GiB", "200 GiB"). */
  if (u == 0)
    snprintf(out, size, "%" PRIu64 " B", n);
  else
    snprintf(out, size, "%.*f %s", v < 9.995 ? 2 : v < 99.95 ? 1 : 0, v, units[u]);
}
