/* cairn_benchmark.c: `cairn benchmark` (the CPU rows and the upload row). */
#include "cmd/cairn.h"

#include "client/client_api.h"
#include "client/client_bench.h"
#include "core/core_alloc.h"
#include "core/core_buf.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_json.h"
#include "format/format_blob.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

/* Upload speed: opens a backup session for host/cairn-benchmark, uploads
 * random 4 MiB chunks from `workers` threads for `seconds`, and aborts the
 * session so nothing is kept (the chunks wait for GC). */
struct upl {
  struct client_api *api;
  const char *sid;
  const char *wid;
  double deadline;
  uint64_t bytes;
  int err;
  char errmsg[512];
  uv_thread_t thread;
};

static void upload_thread(void *arg)
{
  struct upl *u = arg;
  size_t len = (size_t)4 << 20;
  uint8_t *data = core_malloc(len), *blob;
  size_t blen;
  while (mono_s() < u->deadline) {
    uint8_t digest[32];
    char hex[65];
    struct core_buf target;
    struct client_resp resp;
    core_random(data, len);
    core_sha256(data, len, digest);
    core_hex_encode(digest, 32, hex);
    /* random data does not compress: the blob is the raw form */
    if (format_blob_encode_alloc(NULL, data, len, 0, NULL, &blob, &blen) < 0)
      break;
    core_buf_init(&target, 1024);
    core_buf_printf(&target, "/api2/json/backup/%s/dynamic_chunk", u->sid);
    client_query_add(&target, "wid", u->wid);
    client_query_add(&target, "digest", hex);
    client_query_add_u64(&target, "size", len);
    client_query_add_u64(&target, "encoded-size", blen);
    int rc = client_api_call(u->api, "POST", target.base, blob, blen, NULL, 0, &resp);
    if (rc == 0 && resp.status != 200)
      rc = client_api_status_error("POST", target.base, &resp, u->errmsg, sizeof(u->errmsg));
    else if (rc < 0)
      snprintf(u->errmsg, sizeof(u->errmsg), "%s", core_strerror(rc));
    client_resp_free(&resp);
    core_buf_free(&target);
    core_free(blob);
    if (rc < 0) {
      u->err = rc;
      break;
    }
    u->bytes += len;
  }
  core_free(data);
}

static double bench_upload(struct opts *o, double seconds, char *err, size_t errlen)
{
  struct client_api *api = NULL;
  struct core_buf target;
  yajl_val tree = NULL, data;
  unsigned n = o->workers ? o->workers : 4;
  struct upl *u = core_calloc(n, sizeof(*u));
  char *sid = NULL, wid[32] = "";
  double result = -1, t0;
  uint64_t total = 0;

  if (open_api(o, n + 1, &api) < 0) {
    snprintf(err, errlen, "no connection");
    core_free(u);
    return -1;
  }
  core_buf_init(&target, 4096);
  core_buf_printf(&target, "/api2/json/backup");
  client_query_add(&target, "store", client_api_store(api));
  if (*ns_of(o))
    client_query_add(&target, "ns", ns_of(o));
  client_query_add(&target, "backup-type", "host");
  client_query_add(&target, "backup-id", "cairn-benchmark");
  client_query_add_u64(&target, "backup-time", (uint64_t)time(NULL));
  if (client_api_json(api, "POST", target.base, NULL, 0, NULL, &tree, &data, err, errlen) < 0)
    goto out;
  {
    const char *s = data && YAJL_IS_STRING(data) ? YAJL_GET_STRING(data)
                                                  : core_json_get_str(data, "id");
    if (s == NULL) {
      snprintf(err, errlen, "no session id");
      goto out;
    }
    sid = core_strdup(s);
  }
  yajl_tree_free(tree);
  tree = NULL;
  core_buf_reset(&target);
  core_buf_printf(&target, "/api2/json/backup/%s/dynamic_index?archive-name=bench.didx", sid);
  if (client_api_json(api, "POST", target.base, NULL, 0, NULL, &tree, &data, err, errlen) < 0)
    goto out;
  if (data && YAJL_IS_OBJECT(data))
    data = core_json_get(data, "wid");
  if (data && YAJL_IS_INTEGER(data))
    snprintf(wid, sizeof(wid), "%lld", (long long)YAJL_GET_INTEGER(data));
  t0 = mono_s();
  for (unsigned i = 0; i < n; i++) {
    u[i].api = api;
    u[i].sid = sid;
    u[i].wid = wid;
    u[i].deadline = t0 + seconds;
    uv_thread_create(&u[i].thread, upload_thread, &u[i]);
  }
  for (unsigned i = 0; i < n; i++) {
    uv_thread_join(&u[i].thread);
    total += u[i].bytes;
    if (u[i].err && result < 0)
      snprintf(err, errlen, "%s", u[i].errmsg);
  }
  result = (double)total / (mono_s() - t0) / 1e6;
  for (unsigned i = 0; i < n; i++)
    if (u[i].err)
      result = -1;
out:
  if (sid) {
    struct client_resp resp;
    core_buf_reset(&target);
    core_buf_printf(&target, "/api2/json/backup/%s", sid);
    if (client_api_call(api, "DELETE", target.base, NULL, 0, NULL, 0, &resp) == 0)
      client_resp_free(&resp);
  }
  if (tree)
    yajl_tree_free(tree);
  core_buf_free(&target);
  core_free(sid);
  core_free(u);
  client_api_free(api);
  return result;
}

int cmd_benchmark(struct opts *o)
{
  struct client_bench_row rows[16];
  double seconds = o->seconds > 0 ? o->seconds : 1.0;
  size_t n;
  int rc = 0;

  n = client_bench_cpu(seconds, rows, 15);
  if (o->repository || getenv("CAIRN_REPOSITORY")) {
    char err[1024] = "";
    snprintf(rows[n].name, sizeof(rows[n].name), "chunk upload (%u connections)",
             o->workers ? o->workers : 4);
    rows[n].mbps = bench_upload(o, seconds * 3, err, sizeof(err));
    if (rows[n].mbps < 0) {
      fprintf(stderr, "cairn benchmark: upload: %s\n", err);
      rc = 1;
    }
    n++;
  }
  if (o->output && strcmp(o->output, "json") == 0) {
    printf("[");
    for (size_t i = 0; i < n; i++)
      printf("%s{\"name\":\"%s\",\"mbps\":%.1f}", i ? "," : "", rows[i].name, rows[i].mbps);
    printf("]\n");
  } else {
    client_bench_print(stdout, rows, n);
  }
  return rc;
}
