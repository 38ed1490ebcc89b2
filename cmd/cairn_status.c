/* cairn_status.c: `cairn status`. */
#include "cmd/cairn.h"

#include "core/core_fmt.h"
#include "core/core_json.h"

#include <stdio.h>

static void show_status(yajl_val data)
{
  char total[32], used[32], avail[32];
  int64_t t = int_or(data, "total", 0), u = int_or(data, "used", 0);
  core_fmt_bytes((uint64_t)t, total, sizeof(total));
  core_fmt_bytes((uint64_t)u, used, sizeof(used));
  core_fmt_bytes((uint64_t)int_or(data, "avail", 0), avail, sizeof(avail));
  printf("total %s, used %s (%.1f%%), available %s\n", total, used,
         t > 0 ? 100.0 * (double)u / (double)t : 0.0, avail);
}

int cmd_status(struct opts *o)
{
  if (o->npos) {
    fprintf(stderr, "cairn status: takes no arguments\n");
    return EXIT_USAGE;
  }
  return admin_call(o, "GET", "status", NULL, show_status);
}
