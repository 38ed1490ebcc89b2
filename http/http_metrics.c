/* http_metrics.c: the HTTP server's counters and their Prometheus families.
 *
 * Requests are counted per route (its pattern, never the raw path, so the
 * label set is bounded by the route table) and per status code (100..599);
 * requests that match no route share route="unmatched". Each route also has
 * a latency histogram: from the request's first byte parsed to its response
 * queued (a body upload included, a streamed download's transfer not). A
 * client's latency minus this one is the time spent in the network, in the
 * kernel and in the client. Counting is a few relaxed atomic adds in the
 * response path.
 */
#include "http/http_internal.h"

#include "core/core_alloc.h"

#include <stdatomic.h>
#include <stdio.h>

static const char *method_name(enum http_method m)
{
  switch (m) {
  case HTTP_METHOD_GET: return "GET";
  case HTTP_METHOD_POST: return "POST";
  case HTTP_METHOD_PUT: return "PUT";
  case HTTP_METHOD_DELETE: return "DELETE";
  case HTTP_METHOD_HEAD: return "HEAD";
  }
  return "OTHER";
}

void http__count_response(struct http_request *req, int status)
{
  struct http_stats *st = req->server->stats;
  if (st == NULL || status < HTTP_STATUS_MIN || status >= HTTP_STATUS_MIN + HTTP_STATUS_SLOTS)
    return;
  const struct http_route_entry *e = req->match.entry;
  struct core_counter *slots = e && e->responses ? e->responses : st->unmatched;
  core_counter_add(&slots[status - HTTP_STATUS_MIN], 1);
  if (e && e->latency)
    core_hist_observe_ns(e->latency, uv_hrtime() - req->begin_ns);
}

static int render_latency(struct core_buf *out, const struct http_route_entry *e)
{
  if (e->latency == NULL || atomic_load_explicit(&e->latency->count, memory_order_relaxed) == 0)
    return 0;
  char labels[512];
  if (core_metrics_labels(labels, sizeof(labels), "route", e->route.pattern, "method",
                          method_name(e->route.method), NULL) < 0)
    return 0; /* a pattern longer than any route of ours */
  return core_metrics_hist(out, "cairn_http_request_duration_seconds", labels, e->latency);
}

void http_server_metrics_off(struct http_server *s)
{
  core_free(s->stats);
  s->stats = NULL;
}

static int render_codes(struct core_buf *out, const struct core_counter *slots,
                        const char *route, const char *method)
{
  for (int i = 0; i < HTTP_STATUS_SLOTS; i++) {
    uint64_t v = core_counter_get(&slots[i]);
    if (v == 0)
      continue;
    char code[8], labels[512];
    snprintf(code, sizeof(code), "%d", HTTP_STATUS_MIN + i);
    if (core_metrics_labels(labels, sizeof(labels), "route", route, "method", method, "code",
                            code, NULL) < 0)
      continue; /* a pattern longer than any route of ours */
    int rc = core_metrics_u64(out, "cairn_http_requests_total", labels, v);
    if (rc < 0)
      return rc;
  }
  return 0;
}

int http_server_metrics_collect(void *ctx, struct core_buf *out)
{
  struct http_server *s = ctx;
  struct http_stats *st = s->stats;
  if (st == NULL)
    return 0;
  int rc = core_metrics_family(out, "cairn_http_requests_total", "counter",
                               "HTTP responses by route pattern, method and status code.");
  for (size_t i = 0; i < s->router.n && rc == 0; i++) {
    const struct http_route_entry *e = &s->router.entries[i];
    rc = render_codes(out, e->responses, e->route.pattern, method_name(e->route.method));
  }
  if (rc == 0)
    rc = render_codes(out, st->unmatched, "unmatched", "");
  if (rc == 0)
    rc = core_metrics_family(out, "cairn_http_request_duration_seconds", "histogram",
                             "Time from a request's first byte parsed to its response queued, "
                             "by route pattern and method.");
  for (size_t i = 0; i < s->router.n && rc == 0; i++)
    rc = render_latency(out, &s->router.entries[i]);
  struct {
    const char *name, *type, *help;
    uint64_t v;
  } simple[] = {
    {"cairn_http_received_bytes_total", "counter",
     "Bytes read from client sockets (TLS records included).", core_counter_get(&st->rx_bytes)},
    {"cairn_http_sent_bytes_total", "counter",
     "Bytes written to client sockets (TLS records included).", core_counter_get(&st->tx_bytes)},
    {"cairn_http_connections_total", "counter", "Connections accepted and served.",
     core_counter_get(&st->accepted)},
    {"cairn_http_connections_refused_total", "counter",
     "Connections refused (connection limit or no file descriptors).",
     core_counter_get(&st->refused)},
    {"cairn_http_connections_open", "gauge", "Open client connections.", s->nconns},
    {"cairn_tls_handshakes_total", "counter", "TLS handshakes completed.",
     core_counter_get(&st->tls_handshakes)},
    {"cairn_tls_handshake_failures_total", "counter", "TLS handshakes that failed.",
     core_counter_get(&st->tls_failures)},
  };
  for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]) && rc == 0; i++) {
    rc = core_metrics_family(out, simple[i].name, simple[i].type, simple[i].help);
    if (rc == 0)
      rc = core_metrics_u64(out, simple[i].name, NULL, simple[i].v);
  }
  return rc;
}
