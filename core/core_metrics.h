/* core_metrics.h: counters, gauges and histograms for Prometheus, and the
 * text exposition format (0.0.4) they are rendered in.
 *
 * DESIGN. Collection must cost nothing on the hot path: a counter is one
 * relaxed atomic add on a field that lives next to the state it counts (the
 * HTTP server, the thread pool, a datastore), so any thread may count and no
 * lock is ever taken. A histogram is a fixed array of buckets (bounds chosen
 * at build time), one relaxed add per observation plus the sum and count.
 *
 * Nothing here knows which metrics exist. A scrape calls the collectors that
 * modules registered (struct core_metrics), in order; each writes its
 * families with the helpers below into one bounded buffer. Labels are built
 * by the caller from values with bounded cardinality (route patterns, status
 * codes, datastore names); core_metrics_labels() escapes them.
 *
 * THREADS: counters, gauges and histograms: any thread. The registry and the
 * writers: the caller's thread (cairnd: the loop).
 */
#ifndef CORE_METRICS_H
#define CORE_METRICS_H

#include "core/core_buf.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct core_counter {
  _Atomic uint64_t v;
};

static inline void core_counter_add(struct core_counter *c, uint64_t n)
{
  atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}

static inline uint64_t core_counter_get(const struct core_counter *c)
{
  return atomic_load_explicit(&c->v, memory_order_relaxed);
}

struct core_gauge {
  _Atomic int64_t v;
};

static inline void core_gauge_set(struct core_gauge *g, int64_t v)
{
  atomic_store_explicit(&g->v, v, memory_order_relaxed);
}

static inline void core_gauge_add(struct core_gauge *g, int64_t d)
{
  atomic_fetch_add_explicit(&g->v, d, memory_order_relaxed);
}

static inline int64_t core_gauge_get(const struct core_gauge *g)
{
  return atomic_load_explicit(&g->v, memory_order_relaxed);
}

#define CORE_HIST_MAX_BUCKETS 16

/* Observations are durations in nanoseconds (or any unit: see `scale`);
 * they are rendered in seconds. */
struct core_hist {
  uint64_t bound_ns[CORE_HIST_MAX_BUCKETS]; /* upper bounds, ascending; immutable */
  int nbounds;
  _Atomic uint64_t bucket[CORE_HIST_MAX_BUCKETS + 1]; /* per bucket, last is +Inf */
  _Atomic uint64_t sum_ns;
  _Atomic uint64_t count;
};

/* Bounds in seconds, ascending, at most CORE_HIST_MAX_BUCKETS. */
void core_hist_init(struct core_hist *h, const double *bounds_s, int n);
void core_hist_observe_ns(struct core_hist *h, uint64_t ns);

/* Standard bounds: latencies from 100 us to 10 s. */
extern const double core_hist_latency_bounds[];
extern const int core_hist_latency_nbounds;

/* ---- Writing the exposition format ---- */

/* "# HELP name help\n# TYPE name type\n". type: "counter", "gauge",
 * "histogram". Returns 0 or the buffer's error. */
int core_metrics_family(struct core_buf *b, const char *name, const char *type,
                        const char *help);
/* "name{labels} value\n"; labels is the inside of the braces ("" or NULL:
 * none). Integers are written exactly. */
int core_metrics_u64(struct core_buf *b, const char *name, const char *labels, uint64_t v);
int core_metrics_i64(struct core_buf *b, const char *name, const char *labels, int64_t v);
int core_metrics_double(struct core_buf *b, const char *name, const char *labels, double v);
/* The _bucket, _sum and _count series of a histogram (family header not
 * included). */
int core_metrics_hist(struct core_buf *b, const char *name, const char *labels,
                      const struct core_hist *h);

/* Builds `k1="v1",k2="v2"` from NULL-terminated name/value pairs, escaping
 * backslash, double quote and newline in values. Returns the length, or
 * CORE_ETOOBIG when it does not fit `cap` (out is then ""). */
int core_metrics_labels(char *out, size_t cap, ...) __attribute__((sentinel));

/* ---- The registry of collectors ---- */

typedef int (*core_metrics_collect_fn)(void *ctx, struct core_buf *out);

#define CORE_METRICS_MAX_COLLECTORS 16

struct core_metrics {
  struct {
    core_metrics_collect_fn fn;
    void *ctx;
  } c[CORE_METRICS_MAX_COLLECTORS];
  int n;
};

void core_metrics_init(struct core_metrics *m);
/* Returns 0, or CORE_ETOOBIG when the table is full. */
int core_metrics_register(struct core_metrics *m, core_metrics_collect_fn fn, void *ctx);
/* Appends every collector's output to `out`. Returns 0 or the first error. */
int core_metrics_render(const struct core_metrics *m, struct core_buf *out);

#endif
