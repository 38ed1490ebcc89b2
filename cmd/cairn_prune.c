/* cairn_prune.c: `cairn prune`. */
#include "cmd/cairn.h"

#include "client/client_api.h"
#include "core/core_buf.h"
#include "core/core_json.h"
#include "format/format_name.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void show_prune(yajl_val data)
{
  if (data == NULL || !YAJL_IS_ARRAY(data))
    return;
  for (size_t i = 0; i < data->u.array.len; i++) {
    yajl_val s = data->u.array.values[i];
    char when[FORMAT_NAME_TIME_LEN + 1];
    int keep = 0;
    core_json_get_bool(s, "keep", &keep);
    fmt_time(int_or(s, "backup-time", 0), when);
    printf("%s/%s/%s %s\n", str_or(s, "backup-type", "?"), str_or(s, "backup-id", "?"), when,
           keep ? "keep" : "remove");
  }
}

int cmd_prune(struct opts *o)
{
  struct core_buf q;
  int any = 0, rc;
  if (o->npos != 1) {
    fprintf(stderr, "cairn prune: needs one GROUP as TYPE/ID\n");
    return EXIT_USAGE;
  }
  core_buf_init(&q, 4096);
  if (parse_group(o->pos[0], &q) < 0) {
    fprintf(stderr, "cairn prune: \"%s\" is not TYPE/ID\n", o->pos[0]);
    core_buf_free(&q);
    return EXIT_USAGE;
  }
  if (*ns_of(o))
    client_query_add(&q, "ns", ns_of(o));
  for (int k = 0; k < 6; k++)
    if (o->keep[k]) {
      client_query_add_u64(&q, keep_names[k], o->keep[k]);
      any = 1;
    }
  if (!any) {
    /* PBS keeps everything without a rule; saying so beats a silent no-op */
    fprintf(stderr, "cairn prune: give at least one --keep-... rule\n");
    core_buf_free(&q);
    return EXIT_USAGE;
  }
  if (o->dry_run)
    client_query_add(&q, "dry-run", "1");
  rc = admin_call(o, "POST", "prune", &q, show_prune);
  core_buf_free(&q);
  return rc;
}
