/* cairn_move.c: `cairn group move` and `cairn namespace move`: start the
 * move task on the server, follow its log to the end, exit non-zero unless
 * it ended OK (or with warnings only). */
#include "cmd/cairn.h"

#include "client/client_api.h"
#include "core/core_alloc.h"
#include "core/core_buf.h"
#include "core/core_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POLL_MS 200

static void sleep_ms(long ms)
{
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Prints the task's log from line `*next` on (0-based) and advances it.
 * Returns 1 while the task is active, 0 once it stopped, -1 on error. */
static int print_log(struct client_api *api, const char *qupid, uint64_t *next, int quiet)
{
  char target[2048], err[1024];
  yajl_val tree, data;
  snprintf(target, sizeof(target), "/api2/json/nodes/localhost/tasks/%s/log?start=%llu&limit=0",
           qupid, (unsigned long long)*next);
  if (client_api_json(api, "GET", target, NULL, 0, NULL, &tree, &data, err, sizeof(err)) < 0) {
    fprintf(stderr, "cairn: %s\n", err);
    return -1;
  }
  for (size_t i = 0; YAJL_IS_ARRAY(data) && i < data->u.array.len; i++) {
    const char *t = core_json_get_str(data->u.array.values[i], "t");
    if (t && !quiet)
      printf("%s\n", t);
    (*next)++;
  }
  yajl_val active = core_json_get(tree, "active");
  int running = active && YAJL_IS_TRUE(active);
  yajl_tree_free(tree);
  fflush(stdout);
  return running;
}

/* The task's exit status into out ("OK", "WARNINGS: n", "ERROR: ..."). */
static int exit_status(struct client_api *api, const char *qupid, char *out, size_t len)
{
  char target[2048], err[1024];
  yajl_val tree, data;
  snprintf(target, sizeof(target), "/api2/json/nodes/localhost/tasks/%s/status", qupid);
  if (client_api_json(api, "GET", target, NULL, 0, NULL, &tree, &data, err, sizeof(err)) < 0) {
    fprintf(stderr, "cairn: %s\n", err);
    return -1;
  }
  const char *st = core_json_get_str(data, "status");
  const char *ex = core_json_get_str(data, "exitstatus");
  int stopped = st && strcmp(st, "stopped") == 0;
  snprintf(out, len, "%s", ex ? ex : "");
  yajl_tree_free(tree);
  return stopped;
}

static int run_task(struct opts *o, const char *what, const struct core_buf *q)
{
  struct client_api *api = NULL;
  char target[4096], err[1024], status[1024];
  yajl_val tree, data;
  int json = o->output && strcmp(o->output, "json") == 0;
  if (open_api(o, 1, &api) < 0)
    return 1;
  snprintf(target, sizeof(target), "/api2/json/admin/datastore/%s/%s%s", client_api_store(api),
           what, q->base ? q->base : "");
  if (client_api_json(api, "POST", target, NULL, 0, NULL, &tree, &data, err, sizeof(err)) < 0) {
    fprintf(stderr, "cairn: %s\n", err);
    client_api_free(api);
    return 1;
  }
  struct core_buf qu;
  core_buf_init(&qu, 1024);
  const char *upid = YAJL_IS_STRING(data) ? YAJL_GET_STRING(data) : "";
  client_query_add(&qu, "x", upid); /* percent-encodes: "?x=<encoded>" */
  char *qupid = core_strdup(qu.base + 3);
  if (json)
    printf("{\"upid\": \"%s\"}\n", upid);
  else
    fprintf(stderr, "task %s\n", upid);
  yajl_tree_free(tree);
  core_buf_free(&qu);
  uint64_t next = 0;
  int rc = 1;
  for (;;) {
    int active = print_log(api, qupid, &next, json);
    if (active < 0)
      goto out;
    if (!active)
      break;
    if (interrupted) {
      fprintf(stderr, "cairn: interrupted; the task keeps running on the server\n");
      goto out;
    }
    sleep_ms(POLL_MS);
  }
  for (;;) { /* the log says inactive just before the status does */
    int stopped = exit_status(api, qupid, status, sizeof(status));
    if (stopped < 0)
      goto out;
    if (stopped)
      break;
    sleep_ms(POLL_MS / 4);
  }
  print_log(api, qupid, &next, json);
  rc = strcmp(status, "OK") == 0 || strncmp(status, "WARNINGS", 8) == 0 ? 0 : 1;
  if (rc)
    fprintf(stderr, "cairn: %s failed: %s\n", what, status);
out:
  core_free(qupid);
  client_api_free(api);
  return rc;
}

int cmd_move(struct opts *o, int ns_move)
{
  struct core_buf q;
  int rc;
  const char *noun = ns_move ? "namespace" : "group";
  if (o->npos != 2 || strcmp(o->pos[0], "move") != 0 || o->target_ns == NULL) {
    fprintf(stderr, "cairn %s: usage: cairn %s move %s --target-ns NS (see --help)\n", noun,
            noun, ns_move ? "NS" : "TYPE/ID");
    return EXIT_USAGE;
  }
  core_buf_init(&q, 4096);
  if (ns_move) {
    client_query_add(&q, "ns", o->pos[1]);
    if (o->max_depth)
      client_query_add(&q, "max-depth", o->max_depth);
    if (o->delete_source)
      client_query_add(&q, "delete-source", o->delete_source);
    if (o->merge_groups)
      client_query_add(&q, "merge-groups", o->merge_groups);
  } else {
    if (parse_group(o->pos[1], &q) < 0) {
      fprintf(stderr, "cairn group move: needs a group as TYPE/ID\n");
      core_buf_free(&q);
      return EXIT_USAGE;
    }
    if (*ns_of(o))
      client_query_add(&q, "ns", ns_of(o));
    if (o->merge_group)
      client_query_add(&q, "merge-group", o->merge_group);
  }
  client_query_add(&q, "target-ns", o->target_ns);
  catch_signals();
  rc = run_task(o, ns_move ? "move-namespace" : "move-group", &q);
  core_buf_free(&q);
  return rc;
}
