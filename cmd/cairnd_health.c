/* cairnd_health.c: the health check client (cairnd_health.h). It runs as a
 * separate, short-lived process next to the server (podman and docker exec
 * it in the container), so it may block and uses its own loop. */
#include "cmd/cairnd_health.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_parse.h"
#include "http/http.h"
#include "http/http_client.h"
#include "http/http_tls.h"

#include <stdio.h>
#include <string.h>
#include <uv.h>

#define HEALTH_TIMEOUT_MS 5000

struct health {
  int done;
  int rc;       /* transport status */
  int status;   /* HTTP status */
};

static void on_done(struct http_client_req *req, int status, void *arg)
{
  struct health *h = arg;
  h->done = 1;
  h->rc = status;
  h->status = status == 0 ? http_client_req_status(req) : 0;
}

/* "HOST:PORT" or "[V6]:PORT" into host and port; a wildcard host becomes
 * the loopback address of its family. */
static int split_listen(const char *listen, char *host, size_t len, int *port)
{
  const char *colon = strrchr(listen, ':');
  uint64_t p;
  if (colon == NULL || core_parse_u64(colon + 1, &p) < 0 || p == 0 || p > 65535)
    return CORE_EINVAL;
  const char *h = listen;
  size_t n = (size_t)(colon - listen);
  if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
    h++;
    n -= 2;
  }
  if (n == 0 || n >= len)
    return CORE_EINVAL;
  memcpy(host, h, n);
  host[n] = '\0';
  if (!strcmp(host, "0.0.0.0"))
    snprintf(host, len, "127.0.0.1");
  else if (!strcmp(host, "::"))
    snprintf(host, len, "::1");
  *port = (int)p;
  return 0;
}

static void on_client_freed(void *arg)
{
  (void)arg;
}

int cairnd_health_check(const char *config_dir, const char *listen, int no_tls)
{
  char host[256];
  int port;
  if (split_listen(listen, host, sizeof(host), &port) < 0) {
    fprintf(stderr, "cairnd --health-check: cannot use listen address '%s'\n", listen);
    return 1;
  }
  struct http_tls *server_tls = NULL, *tls = NULL;
  struct health h = {0, 0, 0};
  int rc = 0;
  if (!no_tls) {
    /* The server's own certificate, never created here: its fingerprint is
     * what the check pins, so no CA and no host name matter. */
    char *cert = core_asprintf("%s/proxy.pem", config_dir);
    char *key = core_asprintf("%s/proxy.key", config_dir);
    rc = http_tls_server_new(cert, key, 0, host, &server_tls);
    core_free(cert);
    core_free(key);
    if (rc == 0)
      rc = http_tls_client_new(NULL, http_tls_fingerprint(server_tls), 1, &tls);
    if (rc < 0) {
      fprintf(stderr, "cairnd --health-check: TLS: %s\n", core_strerror(rc));
      goto out;
    }
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct http_client_config cfg = {host, port, tls, 1, HEALTH_TIMEOUT_MS, 0, 0};
  struct http_client *c = NULL;
  rc = http_client_new(&loop, &cfg, &c);
  if (rc == 0) {
    struct http_client_request r;
    memset(&r, 0, sizeof(r));
    r.method = "GET";
    r.target = "/api2/json/ping";
    r.timeout_ms = HEALTH_TIMEOUT_MS;
    r.max_body = 4096;
    r.on_done = on_done;
    r.arg = &h;
    rc = http_client_send(c, &r, NULL);
    while (rc == 0 && !h.done && uv_run(&loop, UV_RUN_ONCE))
      ;
    http_client_free(c, on_client_freed, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  uv_loop_close(&loop);
  if (rc == 0 && h.done && h.rc < 0)
    rc = h.rc;
  if (rc < 0)
    fprintf(stderr, "cairnd --health-check: %s: %s\n", listen, core_strerror(rc));
  else if (h.status != 200)
    fprintf(stderr, "cairnd --health-check: %s: HTTP %d\n", listen, h.status);
out:
  if (tls)
    http_tls_unref(tls);
  if (server_tls)
    http_tls_unref(server_tls);
  return rc == 0 && h.status == 200 ? 0 : 1;
}
