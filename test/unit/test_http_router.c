/* test_http_router.c: the router matches without allocating, and decodes the
 * parameters of the one route that is served. LeakSanitizer (at the exit of
 * each case) catches anything a path leaves behind; under ASan the cases also
 * check that matching allocates nothing at all. */
#include "unit.h"

#include "core/core_error.h"
#include "http/http_internal.h"

#ifdef __SANITIZE_ADDRESS__
/* From the ASan runtime (sanitizer/allocator_interface.h, not installed). */
size_t __sanitizer_get_current_allocated_bytes(void);
#define ALLOCATED() __sanitizer_get_current_allocated_bytes()
#else
#include <malloc.h>
#define ALLOCATED() mallinfo2().uordblks
#endif

static void h_dummy(struct http_request *req, void *ctx) {}

static int ctx_status, ctx_gc, ctx_list;

static const struct http_route routes[] = {
  {HTTP_METHOD_GET, "/api2/json/admin/datastore", h_dummy, &ctx_list, 0, 0},
  {HTTP_METHOD_GET, "/api2/json/admin/datastore/{store}/status", h_dummy, &ctx_status, 0, 0},
  {HTTP_METHOD_GET, "/api2/json/admin/datastore/{store}/gc", h_dummy, &ctx_gc, 0, 0},
  {HTTP_METHOD_POST, "/api2/json/admin/datastore/{store}/gc", h_dummy, &ctx_gc, 0, 0},
  {HTTP_METHOD_GET, "/api2/json/admin/datastore/{store}/snapshots/{type}/{id}", h_dummy,
   &ctx_status, 0, 0},
};

static void router_setup(struct http_router *r)
{
  http__router_init(r);
  for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
    http__router_add(r, &routes[i]);
}

/* Matches and checks the status; under ASan also that nothing was allocated. */
static void match(const struct http_router *r, enum http_method m, const char *path,
                  struct http_match *out, int want_status)
{
  size_t before = ALLOCATED();
  http__router_match(r, m, path, strlen(path), out);
  ASSERT_EQ(before, ALLOCATED());
  ASSERT_EQ(want_status, out->status);
}

UNIT_TEST(router_matches_literal_and_parameters)
{
  struct http_router r;
  router_setup(&r);
  struct http_match m;
  match(&r, HTTP_METHOD_GET, "/api2/json/admin/datastore", &m, 0);
  ASSERT(m.entry->route.ctx == &ctx_list);
  ASSERT_EQ(0, m.nparams);
  ASSERT_OK(http__match_decode(&m));
  http__match_free(&m);

  /* Repeated and trailing slashes are one separator. */
  match(&r, HTTP_METHOD_POST, "//api2/json/admin/datastore/st%2D1/gc/", &m, 0);
  ASSERT(m.entry->route.ctx == &ctx_gc);
  ASSERT_EQ(1, m.nparams);
  ASSERT_STR_EQ("store", m.params[0].name);
  ASSERT(m.params[0].value == NULL); /* spans only, until decoded */
  ASSERT_EQ(6, m.params[0].raw_len);
  ASSERT_OK(http__match_decode(&m));
  ASSERT_STR_EQ("st-1", m.params[0].value);
  http__match_free(&m);

  match(&r, HTTP_METHOD_GET, "/api2/json/admin/datastore/s/snapshots/vm/100%2B1", &m, 0);
  ASSERT_EQ(3, m.nparams);
  ASSERT_OK(http__match_decode(&m));
  ASSERT_STR_EQ("s", m.params[0].value);
  ASSERT_STR_EQ("vm", m.params[1].value);
  ASSERT_STR_EQ("100+1", m.params[2].value);
  http__match_free(&m);

  /* HEAD is served by the GET route. */
  match(&r, HTTP_METHOD_HEAD, "/api2/json/admin/datastore/s/status", &m, 0);
  ASSERT(m.entry->route.ctx == &ctx_status);
  http__match_free(&m);
  http__router_free(&r);
}

UNIT_TEST(router_no_match_and_wrong_method)
{
  struct http_router r;
  router_setup(&r);
  struct http_match m;
  match(&r, HTTP_METHOD_GET, "/api2/json/admin/datastore/s", &m, 404);
  ASSERT(m.entry == NULL);
  http__match_free(&m);
  match(&r, HTTP_METHOD_GET, "/api2/json/admin/datastore/s/status/more", &m, 404);
  http__match_free(&m);
  match(&r, HTTP_METHOD_GET, "/", &m, 404);
  http__match_free(&m);
  match(&r, HTTP_METHOD_GET, "", &m, 404);
  http__match_free(&m);
  /* The path exists for another method: 405, nothing matched. */
  match(&r, HTTP_METHOD_DELETE, "/api2/json/admin/datastore/s/gc", &m, 405);
  ASSERT(m.entry == NULL);
  ASSERT_EQ(0, m.nparams);
  http__match_free(&m);
  http__router_free(&r);
}

UNIT_TEST(router_bad_parameter_refused_at_decoding)
{
  struct http_router r;
  router_setup(&r);
  struct http_match m;
  static const char *bad[] = {
    "/api2/json/admin/datastore/a%00b/status", /* a NUL would cut the name short */
    "/api2/json/admin/datastore/a%zz/status",
    "/api2/json/admin/datastore/a%4/status",
    "/api2/json/admin/datastore/s/snapshots/vm/%",
    "/api2/json/admin/datastore/ab%FFcd/status",   /* not UTF-8 */
    "/api2/json/admin/datastore/a%C0%AFb/status",  /* an overlong "/" */
    "/api2/json/admin/datastore/a%ED%A0%80/status", /* a UTF-16 surrogate */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    /* Still the route (the client may learn 401 first), but no value. */
    match(&r, HTTP_METHOD_GET, bad[i], &m, 0);
    ASSERT_EQ(CORE_EPARSE, http__match_decode(&m));
    http__match_free(&m);
  }
  http__router_free(&r);
}

/* Issue #12: every candidate route decoded the long segment into memory that
 * an early return then leaked. */
UNIT_TEST(router_long_paths_allocate_nothing)
{
  struct http_router r;
  router_setup(&r);
  size_t n = 15000;
  char *path = malloc(n + 64);
  ASSERT(path != NULL);
  snprintf(path, n + 64, "/api2/json/admin/datastore/");
  memset(path + strlen(path), 'a', n);
  path[27 + n] = '\0';
  struct http_match m;
  for (int i = 0; i < 100; i++) {
    match(&r, HTTP_METHOD_GET, path, &m, 404);
    http__match_free(&m);
  }
  unit_append(path, n + 64, "/status");
  match(&r, HTTP_METHOD_GET, path, &m, 0);
  ASSERT_OK(http__match_decode(&m));
  ASSERT_EQ(n, strlen(m.params[0].value));
  http__match_free(&m);
  free(path);
  http__router_free(&r);
}

UNIT_MAIN(UNIT_CASE(router_matches_literal_and_parameters),
          UNIT_CASE(router_no_match_and_wrong_method),
          UNIT_CASE(router_bad_parameter_refused_at_decoding),
          UNIT_CASE(router_long_paths_allocate_nothing))
