/* fuzz_http_router.c: route matching and percent-decoding of request paths.
 *
 * Input: one method byte, then the path (as it would reach the router, query
 * already cut off). The router holds Cairn's real route patterns. Checked:
 * - http_url_decode never writes past len+1 bytes, returns at most len, and
 *   the plus and non-plus decodings agree on length;
 * - a match names a route whose pattern really fits: its parameter count,
 *   and literal segments of the path equal the pattern's;
 * - a 0 status has no bad parameter, values carry no NUL, and decoded
 *   parameter values are never longer than the path. */
#include "fuzz.h"

#include "http/http_internal.h"

static const char *const patterns[] = {
  "/api2/json/version",
  "/api2/json/ping",
  "/api2/json/backup",
  "/api2/json/backup/{session}",
  "/api2/json/backup/{session}/previous_backup_time",
  "/api2/json/backup/{session}/finish",
  "/api2/json/backup/{session}/fixed_index",
  "/api2/json/backup/{session}/dynamic_chunk",
  "/api2/json/reader",
  "/api2/json/reader/{session}/download",
  "/api2/json/reader/{session}/chunk",
  "/api2/json/admin/datastore",
  "/api2/json/admin/datastore/{store}/status",
  "/api2/json/admin/datastore/{store}/snapshots",
  "/api2/json/admin/datastore/{store}/gc",
  "/api2/json/admin/datastore/{store}/prune",
  "/api2/json/admin/datastore/{store}/s3-refresh",
  "/api2/json/config/datastore",
  "/api2/json/config/datastore/{name}",
  "/api2/json/config/s3/{id}",
  "/api2/json/admin/s3/{id}/check",
  "/api2/json/nodes/localhost/tasks/{upid}",
  "/api2/json/nodes/localhost/tasks/{upid}/log",
  "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", /* more parameters than a match holds */
};
#define NPATTERNS (sizeof(patterns) / sizeof(patterns[0]))

static const enum http_method methods[] = {HTTP_METHOD_GET, HTTP_METHOD_POST, HTTP_METHOD_PUT,
                                           HTTP_METHOD_DELETE, HTTP_METHOD_HEAD};

static struct http_router router;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  http__router_init(&router);
  for (size_t i = 0; i < NPATTERNS; i++) {
    /* Each pattern under two methods, so 405 and HEAD-as-GET happen. */
    struct http_route r = {methods[i % 4], patterns[i], NULL, NULL, 0, 0};
    http__router_add(&router, &r);
    r.method = methods[(i + 1) % 4];
    http__router_add(&router, &r);
  }
  return 0;
}

static void check_decode(const char *path, size_t len)
{
  /* Exactly len + 1 bytes, so ASan sees any overrun. */
  char *a = malloc(len + 1), *b = malloc(len + 1);
  int na = http_url_decode(path, len, a, 0);
  int nb = http_url_decode(path, len, b, 1);
  FUZZ_ASSERT((na < 0) == (nb < 0));
  if (na >= 0) {
    FUZZ_ASSERT((size_t)na <= len && na == nb);
    FUZZ_ASSERT(a[na] == '\0' && b[nb] == '\0');
  }
  free(a);
  free(b);
}

/* The n-th non-empty segment of the path. */
static int segment(const char *path, size_t len, int n, const char **s, size_t *slen)
{
  const char *p = path, *end = path + len;
  for (int i = 0;; i++) {
    while (p < end && *p == '/')
      p++;
    if (p == end)
      return 0;
    const char *e = memchr(p, '/', (size_t)(end - p));
    size_t l = e ? (size_t)(e - p) : (size_t)(end - p);
    if (i == n) {
      *s = p;
      *slen = l;
      return 1;
    }
    p += l;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  enum http_method m = methods[data[0] % 5];
  /* The server hands the router the path inside its header buffer. */
  size_t len = size - 1;
  char *path = malloc(len + 1);
  memcpy(path, data + 1, len);
  path[len] = '\0';

  check_decode(path, len);

  struct http_match match;
  http__router_match(&router, m, path, len, &match);
  FUZZ_ASSERT(match.status == 0 || match.status == 404 || match.status == 405);
  if (match.status == 0) {
    const struct http_route_entry *e = match.entry;
    FUZZ_ASSERT(e != NULL);
    /* Matching allocates nothing; decoding either succeeds for every
     * parameter (non-empty, UTF-8, no NUL) or refuses the request. */
    FUZZ_ASSERT(match.decoded == NULL);
    int ok = http__match_decode(&match) == 0;
    int nparams = 0;
    for (int i = 0; i < e->nseg; i++) {
      const char *s;
      size_t sl;
      FUZZ_ASSERT(segment(path, len, i, &s, &sl));
      if (e->seg[i] == NULL) {
        FUZZ_ASSERT(strcmp(match.params[nparams].name, e->name[i]) == 0);
        FUZZ_ASSERT(match.params[nparams].raw == s && match.params[nparams].raw_len == sl);
        if (ok) {
          const char *v = match.params[nparams].value;
          FUZZ_ASSERT(v != NULL && strlen(v) <= sl && strlen(v) > 0);
        }
        nparams++;
      } else {
        FUZZ_ASSERT(strlen(e->seg[i]) == sl && memcmp(e->seg[i], s, sl) == 0);
      }
    }
    const char *s;
    size_t sl;
    FUZZ_ASSERT(!segment(path, len, e->nseg, &s, &sl));
    FUZZ_ASSERT(nparams == match.nparams);
    int rm = e->route.method;
    FUZZ_ASSERT(rm == (int)m || (m == HTTP_METHOD_HEAD && rm == HTTP_METHOD_GET));
  } else {
    FUZZ_ASSERT(match.nparams == 0);
  }
  http__match_free(&match);
  free(path);
  return 0;
}
