/* cairn_forget.c: `cairn forget`. */
#include "cmd/cairn.h"

#include "client/client_api.h"
#include "client/client_restore.h"
#include "core/core_alloc.h"
#include "core/core_buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_forget(struct opts *o)
{
  struct core_buf q;
  char *type, *id;
  int64_t t;
  int rc;
  if (o->npos != 1 || client_snapshot_parse(o->pos[0], &type, &id, &t) < 0) {
    fprintf(stderr, "cairn forget: needs one SNAPSHOT as TYPE/ID/TIME\n");
    return EXIT_USAGE;
  }
  core_buf_init(&q, 4096);
  if (*ns_of(o))
    client_query_add(&q, "ns", ns_of(o));
  client_query_add(&q, "backup-type", type);
  client_query_add(&q, "backup-id", id);
  client_query_add_u64(&q, "backup-time", (uint64_t)t);
  rc = admin_call(o, "DELETE", "snapshots", &q, NULL);
  if (rc == 0 && !(o->output && strcmp(o->output, "json") == 0))
    printf("removed %s\n", o->pos[0]);
  core_buf_free(&q);
  core_free(type);
  core_free(id);
  return rc;
}
