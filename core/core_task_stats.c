/* core_task_stats.c: per task type and datastore, how many runs ended how,
 * how long they took, and when the last one succeeded, for the metrics
 * scrape (core_tasks_metrics_collect in core_task.h).
 *
 * Recorded once per task in core_task_finish (loop thread); seeded at
 * startup from the remembered task history, so "last successful GC" stays
 * right across restarts (run counters start from zero, as counters do).
 * The key set is bounded by task types times datastores.
 */
#include "core/core_task.h"

#include "core/core_alloc.h"
#include "core/core_metrics.h"

#include <stdio.h>
#include <string.h>

struct task_stat {
  char *type;              /* owned */
  char *store;             /* owned, "" for none */
  uint64_t ok, warnings, errors;
  double seconds;          /* total duration of the counted runs */
  double last_seconds;     /* duration of the last run, -1 unknown */
  int64_t last_end;        /* epoch seconds of the last run's end, 0 none */
  int64_t last_ok;         /* end of the last run without error, 0 none */
};

void core__task_stats_record(struct core_map *stats, const struct core_task *t, int live)
{
  if (t->exitstatus == NULL || t->type == NULL)
    return;
  const char *store = t->store ? t->store : "";
  char key[512];
  if ((size_t)snprintf(key, sizeof(key), "%s\t%s", t->type, store) >= sizeof(key))
    return;
  struct task_stat *s = core_map_get(stats, key);
  if (s == NULL) {
    s = core_new(struct task_stat);
    s->type = core_strdup(t->type);
    s->store = core_strdup(store);
    s->last_seconds = -1;
    core_map_put(stats, key, s);
  }
  int is_err = strncmp(t->exitstatus, "OK", 2) != 0 && strncmp(t->exitstatus, "WARNINGS", 8) != 0;
  double secs = t->endtime >= t->starttime ? (double)(t->endtime - t->starttime) : 0;
  if (live) {
    if (is_err)
      s->errors++;
    else if (t->exitstatus[0] == 'W')
      s->warnings++;
    else
      s->ok++;
    s->seconds += secs;
  }
  if (t->endtime >= s->last_end) {
    s->last_end = t->endtime;
    s->last_seconds = secs;
  }
  if (!is_err && t->endtime > s->last_ok)
    s->last_ok = t->endtime;
}

void core__task_stats_free(struct core_map *stats)
{
  const char *k;
  void *v;
  for (size_t i = 0; core_map_next(stats, &i, &k, &v);) {
    struct task_stat *s = v;
    core_free(s->type);
    core_free(s->store);
    core_free(s);
  }
  core_map_free(stats);
}

static int render(const struct core_map *stats, struct core_buf *out, int which)
{
  const char *k;
  void *v;
  int rc = 0;
  for (size_t i = 0; rc == 0 && core_map_next(stats, &i, &k, &v);) {
    const struct task_stat *s = v;
    char l[512];
    if (which == 0) {
      static const char *res[] = {"ok", "warning", "error"};
      uint64_t n[] = {s->ok, s->warnings, s->errors};
      for (int r = 0; r < 3 && rc == 0; r++)
        if (core_metrics_labels(l, sizeof(l), "type", s->type, "store", s->store, "result",
                                res[r], NULL) >= 0)
          rc = core_metrics_u64(out, "cairn_task_runs_total", l, n[r]);
      continue;
    }
    if (core_metrics_labels(l, sizeof(l), "type", s->type, "store", s->store, NULL) < 0)
      continue;
    if (which == 1)
      rc = core_metrics_double(out, "cairn_task_duration_seconds_total", l, s->seconds);
    else if (which == 2 && s->last_seconds >= 0)
      rc = core_metrics_double(out, "cairn_task_last_duration_seconds", l, s->last_seconds);
    else if (which == 3 && s->last_ok > 0)
      rc = core_metrics_i64(out, "cairn_task_last_success_timestamp_seconds", l, s->last_ok);
    else if (which == 4 && s->last_end > 0)
      rc = core_metrics_i64(out, "cairn_task_last_end_timestamp_seconds", l, s->last_end);
  }
  return rc;
}

int core__task_stats_render(const struct core_map *stats, struct core_buf *out)
{
  static const struct {
    const char *name, *type, *help;
  } fam[] = {
    {"cairn_task_runs_total", "counter",
     "Tasks (garbage_collection, prune, verify, ...) ended since start, by result."},
    {"cairn_task_duration_seconds_total", "counter", "Total run time of the tasks counted."},
    {"cairn_task_last_duration_seconds", "gauge", "Run time of the last task of the kind."},
    {"cairn_task_last_success_timestamp_seconds", "gauge",
     "When the last task of the kind ended without error (also from before a restart)."},
    {"cairn_task_last_end_timestamp_seconds", "gauge", "When the last task of the kind ended."},
  };
  int rc = 0;
  for (int f = 0; f < 5 && rc == 0; f++) {
    rc = core_metrics_family(out, fam[f].name, fam[f].type, fam[f].help);
    if (rc == 0)
      rc = render(stats, out, f);
  }
  return rc;
}
