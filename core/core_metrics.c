/* core_metrics.c: see core_metrics.h. */
#include "core/core_metrics.h"

#include "core/core_error.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const double core_hist_latency_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                           0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                           1,      2.5,     10};
const int core_hist_latency_nbounds =
    (int)(sizeof(core_hist_latency_bounds) / sizeof(core_hist_latency_bounds[0]));

void core_hist_init(struct core_hist *h, const double *bounds_s, int n)
{
  memset(h, 0, sizeof(*h));
  if (n > CORE_HIST_MAX_BUCKETS)
    n = CORE_HIST_MAX_BUCKETS;
  for (int i = 0; i < n; i++)
    h->bound_ns[i] = (uint64_t)(bounds_s[i] * 1e9 + 0.5); /* no libm */
  h->nbounds = n;
}

void core_hist_observe_ns(struct core_hist *h, uint64_t ns)
{
  /* At most 16 bounds: a linear scan is as fast as a search and branchless
   * enough. */
  int i = 0;
  while (i < h->nbounds && ns > h->bound_ns[i])
    i++;
  atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

int core_metrics_family(struct core_buf *b, const char *name, const char *type,
                        const char *help)
{
  return core_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static int sample_head(struct core_buf *b, const char *name, const char *labels)
{
  if (labels && *labels)
    return core_buf_printf(b, "%s{%s} ", name, labels);
  return core_buf_printf(b, "%s ", name);
}

int core_metrics_u64(struct core_buf *b, const char *name, const char *labels, uint64_t v)
{
  int rc = sample_head(b, name, labels);
  return rc < 0 ? rc : core_buf_printf(b, "%" PRIu64 "\n", v);
}

int core_metrics_i64(struct core_buf *b, const char *name, const char *labels, int64_t v)
{
  int rc = sample_head(b, name, labels);
  return rc < 0 ? rc : core_buf_printf(b, "%" PRId64 "\n", v);
}

int core_metrics_double(struct core_buf *b, const char *name, const char *labels, double v)
{
  int rc = sample_head(b, name, labels);
  if (rc < 0)
    return rc;
  if (isnan(v))
    return core_buf_append_str(b, "NaN\n");
  if (isinf(v))
    return core_buf_append_str(b, v > 0 ? "+Inf\n" : "-Inf\n");
  return core_buf_printf(b, "%.17g\n", v);
}

int core_metrics_hist(struct core_buf *b, const char *name, const char *labels,
                      const struct core_hist *h)
{
  const char *sep = labels && *labels ? "," : "";
  if (!labels)
    labels = "";
  /* Buckets are read one by one while others may count: the cumulative sums
   * are made monotonic by construction and the +Inf bucket is taken as the
   * count, so a scrape never shows a bucket above the count. */
  uint64_t cum = 0;
  int rc = 0;
  for (int i = 0; i < h->nbounds && rc == 0; i++) {
    cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
    rc = core_buf_printf(b, "%s_bucket{%s%sle=\"%.6g\"} %" PRIu64 "\n", name, labels, sep,
                         (double)h->bound_ns[i] / 1e9, cum);
  }
  cum += atomic_load_explicit(&h->bucket[h->nbounds], memory_order_relaxed);
  uint64_t sum = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
  if (rc == 0)
    rc = core_buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep, cum);
  if (rc == 0)
    rc = core_buf_printf(b, "%s_sum%s%s%s %.9f\n", name, *labels ? "{" : "", labels,
                         *labels ? "}" : "", (double)sum / 1e9);
  if (rc == 0)
    rc = core_buf_printf(b, "%s_count%s%s%s %" PRIu64 "\n", name, *labels ? "{" : "", labels,
                         *labels ? "}" : "", cum);
  return rc;
}

int core_metrics_labels(char *out, size_t cap, ...)
{
  va_list ap;
  size_t n = 0;
  int rc = 0;
  va_start(ap, cap);
  const char *k;
  while ((k = va_arg(ap, const char *)) != NULL) {
    const char *v = va_arg(ap, const char *);
    if (!v)
      v = "";
    size_t kl = strlen(k);
    /* worst case: separator, name, =", value escaped, " and NUL */
    if (n + kl + 4 >= cap) {
      rc = CORE_ETOOBIG;
      break;
    }
    if (n)
      out[n++] = ',';
    memcpy(out + n, k, kl);
    n += kl;
    out[n++] = '=';
    out[n++] = '"';
    for (; *v; v++) {
      const char *esc = NULL;
      if (*v == '\\')
        esc = "\\\\";
      else if (*v == '"')
        esc = "\\\"";
      else if (*v == '\n')
        esc = "\\n";
      size_t need = esc ? 2 : 1;
      if (n + need + 2 > cap) { /* the closing quote and the NUL */
        rc = CORE_ETOOBIG;
        break;
      }
      if (esc) {
        memcpy(out + n, esc, 2);
      } else {
        out[n] = *v;
      }
      n += need;
    }
    if (rc < 0)
      break;
    out[n++] = '"';
  }
  va_end(ap);
  if (rc < 0) {
    if (cap)
      out[0] = '\0';
    return rc;
  }
  out[n] = '\0';
  return (int)n;
}

void core_metrics_init(struct core_metrics *m)
{
  memset(m, 0, sizeof(*m));
}

int core_metrics_register(struct core_metrics *m, core_metrics_collect_fn fn, void *ctx)
{
  if (m->n == CORE_METRICS_MAX_COLLECTORS)
    return CORE_ETOOBIG;
  m->c[m->n].fn = fn;
  m->c[m->n].ctx = ctx;
  m->n++;
  return 0;
}

int core_metrics_render(const struct core_metrics *m, struct core_buf *out)
{
  for (int i = 0; i < m->n; i++) {
    int rc = m->c[i].fn(m->c[i].ctx, out);
    if (rc < 0)
      return rc;
  }
  return 0;
}
