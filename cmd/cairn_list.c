/* cairn_list.c: `cairn snapshots` and `cairn groups`. */
#include "cmd/cairn.h"

#include "client/client_api.h"
#include "core/core_buf.h"
#include "core/core_fmt.h"
#include "core/core_json.h"
#include "format/format_name.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void show_snapshots(yajl_val data)
{
  if (data == NULL || !YAJL_IS_ARRAY(data))
    return;
  printf("%-48s %10s  %s\n", "snapshot", "size", "files");
  for (size_t i = 0; i < data->u.array.len; i++) {
    yajl_val s = data->u.array.values[i], files = core_json_get(s, "files");
    char when[FORMAT_NAME_TIME_LEN + 1], name[300], size[32] = "-";
    struct core_buf fl;
    fmt_time(int_or(s, "backup-time", 0), when);
    snprintf(name, sizeof(name), "%s/%s/%s", str_or(s, "backup-type", "?"),
             str_or(s, "backup-id", "?"), when);
    if (int_or(s, "size", -1) >= 0)
      core_fmt_bytes((uint64_t)int_or(s, "size", 0), size, sizeof(size));
    core_buf_init(&fl, 4096);
    if (files && YAJL_IS_ARRAY(files)) {
      for (size_t k = 0; k < files->u.array.len; k++) {
        yajl_val f = files->u.array.values[k];
        const char *fn = YAJL_IS_STRING(f) ? YAJL_GET_STRING(f) : core_json_get_str(f, "filename");
        if (fn && strcmp(fn, "index.json.blob") != 0)
          core_buf_printf(&fl, "%s%s", fl.len ? " " : "", fn);
      }
    }
    printf("%-48s %10s  %s\n", name, size, fl.base ? fl.base : "(unfinished)");
    core_buf_free(&fl);
  }
}

static void show_groups(yajl_val data)
{
  if (data == NULL || !YAJL_IS_ARRAY(data))
    return;
  printf("%-40s %9s  %-20s  %s\n", "group", "snapshots", "last backup", "owner");
  for (size_t i = 0; i < data->u.array.len; i++) {
    yajl_val g = data->u.array.values[i];
    char when[FORMAT_NAME_TIME_LEN + 1], name[300];
    fmt_time(int_or(g, "last-backup", 0), when);
    snprintf(name, sizeof(name), "%s/%s", str_or(g, "backup-type", "?"),
             str_or(g, "backup-id", "?"));
    printf("%-40s %9lld  %-20s  %s\n", name, (long long)int_or(g, "backup-count", 0), when,
           str_or(g, "owner", "-"));
  }
}

int cmd_list(struct opts *o, int groups)
{
  struct core_buf q;
  int rc;
  core_buf_init(&q, 4096);
  if (*ns_of(o))
    client_query_add(&q, "ns", ns_of(o));
  if (!groups && o->npos == 1 && parse_group(o->pos[0], &q) < 0) {
    fprintf(stderr, "cairn snapshots: \"%s\" is not TYPE/ID\n", o->pos[0]);
    core_buf_free(&q);
    return EXIT_USAGE;
  }
  if (o->npos > (groups ? 0u : 1u)) {
    fprintf(stderr, "cairn: too many arguments\n");
    core_buf_free(&q);
    return EXIT_USAGE;
  }
  rc = admin_call(o, "GET", groups ? "groups" : "snapshots", &q,
                  groups ? show_groups : show_snapshots);
  core_buf_free(&q);
  return rc;
}
