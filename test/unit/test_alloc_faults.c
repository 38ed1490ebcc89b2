/* test_alloc_faults.c: allocation failures injected at every allocation
 * site in turn over the request path of a datastore status request, a chunk
 * upload and a reader download (issue #17, item 3), failmalloc style
 * (nghttp2's failmalloc_test.c, curl's torture mode).
 *
 * Which allocations may fail is a design decision (core_alloc.h): the
 * core_malloc() family aborts on OOM (fixed-size structures), and only
 * client-sized allocations go through core_try_malloc(), which returns NULL
 * and must be survived. The test build can make the n-th core_try_malloc()
 * fail (core_alloc_fault_arm). Each case first counts the calls one request
 * makes, then repeats the request failing call 1, 2, ... n: every time the
 * request must be refused cleanly (500 or 503, a JSON error), the next
 * request must succeed, and at exit LeakSanitizer must find nothing.
 *
 * The server is the real one over an in-memory stream (http_fixture.h), with
 * the backup, reader and admin routes, on a temporary datastore.
 */
#include "unit.h"

#include "gc_fixture.h"
#include "http_fixture.h"

#include "core/core_digest.h"
#include "http/http_internal.h"
#include "store/store_api.h"
#include "store/store_backup.h"
#include "store/store_session.h"

#include <stdarg.h>

#define T1 1700000000
#define TOKEN "PBSAPIToken=root@pam!t:s"
#define CHUNK_SIZE 20000

struct af {
  struct fx fx;                 /* loop, registry, datastore FX_STORE */
  struct store_api api;
  struct store_sessions sessions;
  struct http_server *srv;
  struct hfx_client cl;
  char sid[33];                 /* the open backup or reader session */
  int wid;                      /* the backup session's writer */
  char digest[65];              /* a chunk of the finished snapshot */
  char body[4096];              /* the last response's body */
};

static void af_start(struct af *a)
{
  memset(a, 0, sizeof(*a));
  fx_init(&a->fx, "");
  fx_api_init(&a->fx, &a->api, &a->sessions);
  a->srv = http_server_new(&a->fx.loop, NULL);
  /* No idle body buffers: each request allocates its own, so every request
   * passes the same allocation sites and the count holds from one to the
   * next. */
  a->srv->bodies.idle_max = 0;
  http_server_set_auth(a->srv, hfx_token_auth, NULL);
  store__backup_register(a->srv, &a->sessions);
  store__reader_register(a->srv, &a->sessions);
  store__api_admin_register(a->srv, &a->api);
  hfx_connect(&a->cl, &a->fx.loop, a->srv);
}

static void af_stop(struct af *a)
{
  ASSERT_OK(core_alloc_fault_arm(0));
  hfx_disconnect(&a->cl);
  store_sessions_close(&a->sessions);
  http_server_free(a->srv);
  fx_close(&a->fx);
}

/* A streamed response (its head already sent) that the server cut off: the
 * connection closed before Content-Length bytes, which no client can take
 * for the whole file. The only way a stream can fail once it has begun. */
#define CUT_OFF 0

/* One request; returns its status, its body in a->body, or CUT_OFF. A
 * response that closes the connection is followed by a new connection. */
static int request(struct af *a, const char *method, const void *body, size_t len,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int request(struct af *a, const char *method, const void *body, size_t len,
                   const char *fmt, ...)
{
  char target[1024], head[1400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(target, sizeof(target), fmt, ap);
  va_end(ap);
  const char *ctype = len && ((const char *)body)[0] == '{'
                          ? "application/json"
                          : "application/octet-stream";
  snprintf(head, sizeof(head),
           "%s %s HTTP/1.1\r\nAuthorization: " TOKEN "\r\nContent-Type: %s\r\n"
           "Content-Length: %zu\r\n\r\n",
           method, target, ctype, len);
  /* A refused body is not read: the server answers and closes meanwhile. */
  if (hfx_send_str(&a->cl, head) == 0 && len)
    hfx_send(&a->cl, body, len);
  struct hfx_resp r;
  if (!hfx_response(&a->cl, &r)) {
    if (strncmp(a->cl.buf, "HTTP/1.1 200 ", 13) != 0)
      unit_fail(__FILE__, __LINE__, "%s %s: connection closed without an answer", method,
                target);
    snprintf(a->body, sizeof(a->body), "(cut off after %zu bytes)", a->cl.len);
    hfx_disconnect(&a->cl);
    hfx_connect(&a->cl, &a->fx.loop, a->srv);
    return CUT_OFF;
  }
  int status = r.status;
  snprintf(a->body, sizeof(a->body), "%s", r.body);
  if (r.close) {
    hfx_disconnect(&a->cl);
    hfx_connect(&a->cl, &a->fx.loop, a->srv);
  }
  hfx_resp_free(&r);
  return status;
}

/* The chunk for `seed`, as a blob; its digest (hex) out. */
static void make_chunk(uint32_t seed, uint8_t **blob, size_t *blen, char hex[65])
{
  uint8_t *data = core_malloc(CHUNK_SIZE), digest[32];
  fx_data(seed, CHUNK_SIZE, data);
  core_sha256(data, CHUNK_SIZE, digest);
  core_hex_encode(digest, 32, hex);
  ASSERT(format_blob_encode_alloc(NULL, data, CHUNK_SIZE, FORMAT_BLOB_COMPRESS, NULL, blob,
                                 blen) >= 0);
  core_free(data);
}

/* ---- the three requests ----
 *
 * Each prepares what it sends, then arms the fault (`fail`: the n-th
 * core_try_malloc() of the request fails, 0 none) and sends it: the test's
 * own allocations are not counted. Returns the status. */

typedef int (*af_op)(struct af *a, uint32_t seed, unsigned long fail);

static int op_status(struct af *a, uint32_t seed, unsigned long fail)
{
  (void)seed;
  ASSERT_OK(core_alloc_fault_arm(fail));
  return request(a, "GET", NULL, 0, "/api2/json/admin/datastore/" FX_STORE "/status");
}

/* A new chunk (content from `seed`) to the open writer. */
static int op_chunk_upload(struct af *a, uint32_t seed, unsigned long fail)
{
  uint8_t *blob;
  size_t blen;
  char hex[65];
  make_chunk(seed, &blob, &blen, hex);
  ASSERT_OK(core_alloc_fault_arm(fail));
  int status = request(a, "POST", blob, blen,
                       "/api2/json/backup/%s/dynamic_chunk?wid=%d&digest=%s&size=%d"
                       "&encoded-size=%zu", a->sid, a->wid, hex, CHUNK_SIZE, blen);
  core_free(blob);
  if (status == 200 && strstr(a->body, hex) == NULL)
    unit_fail(__FILE__, __LINE__, "chunk upload answered %s", a->body);
  return status;
}

static int op_download_index(struct af *a, uint32_t seed, unsigned long fail)
{
  (void)seed;
  ASSERT_OK(core_alloc_fault_arm(fail));
  return request(a, "GET", NULL, 0, "/api2/json/reader/%s/download?file-name=data.pxar.didx",
                 a->sid);
}

static int op_download_chunk(struct af *a, uint32_t seed, unsigned long fail)
{
  (void)seed;
  ASSERT_OK(core_alloc_fault_arm(fail));
  return request(a, "GET", NULL, 0, "/api2/json/reader/%s/chunk?digest=%s", a->sid,
                 a->digest);
}

/* Counts the core_try_*() calls of one `op`, then fails each in turn: the
 * answer must be a 500 or 503 with a message (or, for a `streamed` response,
 * may be cut off). Returns the count (the allocation sites the request
 * passes). */
static unsigned long fail_each(struct af *a, af_op op, const char *what, int streamed)
{
  uint32_t seed = 1000;
  unsigned long cut = 0;
  ASSERT_EQ(op(a, seed++, 0), 200);
  unsigned long n = core_alloc_fault_calls();
  for (unsigned long i = 1; i <= n; i++) {
    int status = op(a, seed++, i);
    unsigned long made = core_alloc_fault_calls();
    ASSERT_OK(core_alloc_fault_arm(0));
    if (made < i)
      unit_fail(__FILE__, __LINE__, "%s: allocation %lu of %lu never made", what, i, n);
    if (status == CUT_OFF && streamed)
      cut++;
    else if (status != 500 && status != 503)
      unit_fail(__FILE__, __LINE__, "%s with allocation %lu of %lu failing: %d %s", what, i,
                n, status, a->body);
    else if (strstr(a->body, "\"message\"") == NULL)
      unit_fail(__FILE__, __LINE__, "%s: no error message in %s", what, a->body);
    if (op(a, seed++, 0) != 200)
      unit_fail(__FILE__, __LINE__, "%s after allocation %lu failed: %s", what, i, a->body);
  }
  fprintf(stderr, "  %s: %lu failable allocation%s, each failed in turn (%lu cut off)\n",
          what, n, n == 1 ? "" : "s", cut);
  return n;
}

/* ---- cases ---- */

/* The status request makes no client-sized allocation: every allocation on
 * its path is fixed-size and aborts on OOM by design. The case proves the
 * count, so a new failable allocation there gets its failure tested too. */
UNIT_TEST(status_request)
{
  struct af a;
  af_start(&a);
  fail_each(&a, op_status, "datastore status", 0);
  af_stop(&a);
}

UNIT_TEST(chunk_upload)
{
  struct af a;
  af_start(&a);
  ASSERT_EQ(request(&a, "POST", NULL, 0,
                    "/api2/json/backup?store=" FX_STORE
                    "&backup-type=host&backup-id=h1&backup-time=%d", T1), 200);
  snprintf(a.sid, sizeof(a.sid), "%.32s", a.body + 9);
  ASSERT_EQ(request(&a, "POST", NULL, 0,
                    "/api2/json/backup/%s/dynamic_index?archive-name=data.pxar.didx", a.sid),
            200);
  a.wid = (int)strtol(a.body + 8, NULL, 10);
  ASSERT(fail_each(&a, op_chunk_upload, "chunk upload", 0) > 0);
  af_stop(&a);
}

/* A finished snapshot host/h1 with data.pxar.didx of one chunk. */
static void backup_one(struct af *a)
{
  uint8_t *blob, csum[32];
  size_t blen;
  make_chunk(7, &blob, &blen, a->digest);
  ASSERT_EQ(request(a, "POST", NULL, 0,
                    "/api2/json/backup?store=" FX_STORE
                    "&backup-type=host&backup-id=h1&backup-time=%d", T1), 200);
  snprintf(a->sid, sizeof(a->sid), "%.32s", a->body + 9);
  ASSERT_EQ(request(a, "POST", NULL, 0,
                    "/api2/json/backup/%s/dynamic_index?archive-name=data.pxar.didx", a->sid),
            200);
  int wid = (int)strtol(a->body + 8, NULL, 10);
  ASSERT_EQ(request(a, "POST", blob, blen,
                    "/api2/json/backup/%s/dynamic_chunk?wid=%d&digest=%s&size=%d"
                    "&encoded-size=%zu", a->sid, wid, a->digest, CHUNK_SIZE, blen), 200);
  core_free(blob);
  char json[256];
  int n = snprintf(json, sizeof(json),
                   "{\"wid\":%d,\"digest-list\":[\"%s\"],\"offset-list\":[0]}", wid, a->digest);
  ASSERT_EQ(request(a, "PUT", json, (size_t)n, "/api2/json/backup/%s/dynamic_index", a->sid),
            200);

  struct format_didx_writer w;
  uint8_t digest[32];
  uint64_t count, size;
  ASSERT_OK(core_hex_decode(a->digest, 32, digest));
  format_didx_writer_init(&w, 0, 0);
  ASSERT_OK(format_didx_writer_append(&w, CHUNK_SIZE, digest));
  ASSERT_OK(format_didx_writer_finish(&w, csum, &count, &size));
  format_didx_writer_free(&w);
  char hex[65];
  core_hex_encode(csum, 32, hex);
  ASSERT_EQ(request(a, "POST", NULL, 0,
                    "/api2/json/backup/%s/dynamic_close?wid=%d&chunk-count=1&size=%d&csum=%s",
                    a->sid, wid, CHUNK_SIZE, hex), 200);

  struct format_manifest m;
  format_manifest_init(&m, "host", "h1", T1);
  ASSERT_OK(format_manifest_add_file(&m, "data.pxar.didx", FORMAT_CRYPT_MODE_NONE, CHUNK_SIZE,
                                    csum));
  ASSERT_OK(format_manifest_encode_blob(&m, NULL, &blob, &blen));
  format_manifest_free(&m);
  ASSERT_EQ(request(a, "POST", blob, blen,
                    "/api2/json/backup/%s/blob?file-name=%s&encoded-size=%zu", a->sid,
                    FORMAT_MANIFEST_NAME, blen), 200);
  core_free(blob);
  ASSERT_EQ(request(a, "POST", NULL, 0, "/api2/json/backup/%s/finish", a->sid), 200);
}

UNIT_TEST(reader_download)
{
  struct af a;
  af_start(&a);
  backup_one(&a);
  ASSERT_EQ(request(&a, "POST", NULL, 0,
                    "/api2/json/reader?store=" FX_STORE
                    "&backup-type=host&backup-id=h1&backup-time=%d", T1), 200);
  snprintf(a.sid, sizeof(a.sid), "%.32s", a.body + 9);
  unsigned long n = fail_each(&a, op_download_index, "index download", 1);
  n += fail_each(&a, op_download_chunk, "chunk download", 1);
  ASSERT(n > 0);
  ASSERT_EQ(request(&a, "DELETE", NULL, 0, "/api2/json/reader/%s", a.sid), 200);
  af_stop(&a);
}

UNIT_MAIN(UNIT_CASE(status_request), UNIT_CASE(chunk_upload), UNIT_CASE(reader_download))
