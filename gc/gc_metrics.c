/* gc_metrics.c: GC's own metrics (the task registry has the run counts). */
#include "gc/gc_api.h"

#include "core/core_metrics.h"

int gc_metrics_collect(void *ctx, struct core_buf *out)
{
  struct gc_ctx *g = ctx;
  static const struct {
    const char *name, *type, *help;
  } fam[] = {
    {"cairn_gc_removed_bytes_total", "counter", "Chunk bytes removed by garbage collection."},
    {"cairn_gc_removed_chunks_total", "counter", "Chunks removed by garbage collection."},
    {"cairn_gc_running", "gauge", "1 while a garbage collection of the datastore runs."},
    {"cairn_prune_running", "gauge", "1 while a prune job of the datastore runs."},
  };
  int rc = 0;
  for (int f = 0; f < 4 && rc == 0; f++) {
    rc = core_metrics_family(out, fam[f].name, fam[f].type, fam[f].help);
    const char *k;
    void *v;
    for (size_t i = 0; rc == 0 && core_map_next(&g->stores, &i, &k, &v);) {
      const struct gc_store_state *s = v;
      char l[256];
      if (core_metrics_labels(l, sizeof(l), "store", k, NULL) < 0)
        continue;
      uint64_t val = f == 0   ? s->removed_bytes
                     : f == 1 ? s->removed_chunks
                     : f == 2 ? s->gc != NULL
                              : s->prune != NULL;
      rc = core_metrics_u64(out, fam[f].name, l, val);
    }
  }
  return rc;
}
