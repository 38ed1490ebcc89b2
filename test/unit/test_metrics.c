/* test_metrics.c: core_metrics (counters, histograms, label escaping and the
 * text exposition format). */
#include "unit.h"

#include "core/core_error.h"
#include "core/core_metrics.h"

static int collect_a(void *ctx, struct core_buf *out)
{
  struct core_counter *c = ctx;
  int rc = core_metrics_family(out, "t_requests_total", "counter", "Requests.");
  if (rc == 0)
    rc = core_metrics_u64(out, "t_requests_total", "route=\"/x\"", core_counter_get(c));
  return rc;
}

static int collect_b(void *ctx, struct core_buf *out)
{
  (void)ctx;
  int rc = core_metrics_family(out, "t_temp", "gauge", "A gauge.");
  if (rc == 0)
    rc = core_metrics_i64(out, "t_temp", NULL, -3);
  if (rc == 0)
    rc = core_metrics_double(out, "t_ratio", "", 0.5);
  return rc;
}

UNIT_TEST(counters_and_registry)
{
  struct core_counter c = {0};
  core_counter_add(&c, 2);
  core_counter_add(&c, 40);
  ASSERT_EQ(core_counter_get(&c), 42);
  struct core_gauge g = {0};
  core_gauge_add(&g, 5);
  core_gauge_add(&g, -7);
  ASSERT_EQ(core_gauge_get(&g), -2);

  struct core_metrics m;
  core_metrics_init(&m);
  ASSERT_EQ(core_metrics_register(&m, collect_a, &c), 0);
  ASSERT_EQ(core_metrics_register(&m, collect_b, NULL), 0);
  struct core_buf b;
  core_buf_init(&b, 1 << 20);
  ASSERT_EQ(core_metrics_render(&m, &b), 0);
  const char *want = "# HELP t_requests_total Requests.\n"
                     "# TYPE t_requests_total counter\n"
                     "t_requests_total{route=\"/x\"} 42\n"
                     "# HELP t_temp A gauge.\n"
                     "# TYPE t_temp gauge\n"
                     "t_temp -3\n"
                     "t_ratio 0.5\n";
  if (strcmp(b.base, want) != 0)
    unit_fail(__FILE__, __LINE__, "rendered:\n%s", b.base);
  core_buf_free(&b);

  for (int i = m.n; i < CORE_METRICS_MAX_COLLECTORS; i++)
    ASSERT_EQ(core_metrics_register(&m, collect_b, NULL), 0);
  ASSERT_EQ(core_metrics_register(&m, collect_b, NULL), CORE_ETOOBIG);
}

UNIT_TEST(histogram_is_cumulative)
{
  static const double bounds[] = {0.001, 0.01, 0.1};
  struct core_hist h;
  core_hist_init(&h, bounds, 3);
  core_hist_observe_ns(&h, 500000);     /* 0.5 ms: first bucket */
  core_hist_observe_ns(&h, 1000000);    /* exactly 1 ms: le is inclusive */
  core_hist_observe_ns(&h, 50000000);   /* 50 ms */
  core_hist_observe_ns(&h, 2000000000); /* 2 s: only +Inf */
  struct core_buf b;
  core_buf_init(&b, 1 << 20);
  ASSERT_EQ(core_metrics_hist(&b, "t_lag_seconds", "loop=\"main\"", &h), 0);
  const char *want = "t_lag_seconds_bucket{loop=\"main\",le=\"0.001\"} 2\n"
                     "t_lag_seconds_bucket{loop=\"main\",le=\"0.01\"} 2\n"
                     "t_lag_seconds_bucket{loop=\"main\",le=\"0.1\"} 3\n"
                     "t_lag_seconds_bucket{loop=\"main\",le=\"+Inf\"} 4\n"
                     "t_lag_seconds_sum{loop=\"main\"} 2.051500000\n"
                     "t_lag_seconds_count{loop=\"main\"} 4\n";
  if (strcmp(b.base, want) != 0)
    unit_fail(__FILE__, __LINE__, "rendered:\n%s", b.base);
  core_buf_reset(&b);
  ASSERT_EQ(core_metrics_hist(&b, "t_x", NULL, &h), 0);
  ASSERT(strstr(b.base, "t_x_bucket{le=\"+Inf\"} 4\n"));
  ASSERT(strstr(b.base, "t_x_count 4\n"));
  core_buf_free(&b);

  /* More bounds than fit are cut, never overflow. */
  double many[CORE_HIST_MAX_BUCKETS + 4];
  for (int i = 0; i < CORE_HIST_MAX_BUCKETS + 4; i++)
    many[i] = i + 1;
  core_hist_init(&h, many, CORE_HIST_MAX_BUCKETS + 4);
  ASSERT_EQ(h.nbounds, CORE_HIST_MAX_BUCKETS);
  core_hist_observe_ns(&h, UINT64_MAX / 2);
  ASSERT_EQ(atomic_load(&h.bucket[CORE_HIST_MAX_BUCKETS]), 1);
}

UNIT_TEST(labels_are_escaped_and_bounded)
{
  char out[128];
  int n = core_metrics_labels(out, sizeof(out), "store", "a", "id", "x\"y\\z\nw", NULL);
  ASSERT(n > 0);
  ASSERT(strcmp(out, "store=\"a\",id=\"x\\\"y\\\\z\\nw\"") == 0);
  ASSERT_EQ(n, (int)strlen(out));
  ASSERT_EQ(core_metrics_labels(out, sizeof(out), NULL), 0);
  ASSERT(strcmp(out, "") == 0);
  ASSERT_EQ(core_metrics_labels(out, sizeof(out), "ns", NULL, NULL), 5);
  ASSERT(strcmp(out, "ns=\"\"") == 0);
  /* Too long: an error and an empty string, never a cut label. */
  char small[12];
  ASSERT_EQ(core_metrics_labels(small, sizeof(small), "store", "abcdefgh", NULL), CORE_ETOOBIG);
  ASSERT(strcmp(small, "") == 0);
  ASSERT_EQ(core_metrics_labels(small, sizeof(small), "id", "\"\"\"\"", NULL), CORE_ETOOBIG);
  /* Exactly fitting: id="abcd" is 9 bytes plus the NUL. */
  ASSERT_EQ(core_metrics_labels(small, 9, "id", "abcd", NULL), CORE_ETOOBIG);
  ASSERT_EQ(core_metrics_labels(small, 10, "id", "abcd", NULL), 9);
}

UNIT_TEST(values_and_buffer_limits)
{
  struct core_buf b;
  core_buf_init(&b, 64);
  ASSERT_EQ(core_metrics_u64(&b, "a", NULL, UINT64_MAX), 0);
  ASSERT(strcmp(b.base, "a 18446744073709551615\n") == 0);
  core_buf_reset(&b);
  ASSERT_EQ(core_metrics_double(&b, "a", NULL, 1.0 / 0.0), 0);
  ASSERT(strcmp(b.base, "a +Inf\n") == 0);
  core_buf_reset(&b);
  ASSERT_EQ(core_metrics_double(&b, "a", NULL, 0.0 / 0.0), 0);
  ASSERT(strcmp(b.base, "a NaN\n") == 0);
  core_buf_reset(&b);
  ASSERT_EQ(core_metrics_family(&b, "a_very_long_metric_name_here", "counter",
                                "and a help text long enough to pass the limit"),
            CORE_ETOOBIG);
  core_buf_free(&b);
}

UNIT_MAIN(UNIT_CASE(counters_and_registry), UNIT_CASE(histogram_is_cumulative),
          UNIT_CASE(labels_are_escaped_and_bounded), UNIT_CASE(values_and_buffer_limits))
