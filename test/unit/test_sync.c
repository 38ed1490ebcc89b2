/* test_sync.c: the pure parts of sync/: group filters (PBS's rules), byte
 * rates, the base64 password form, job and remote property checks. */
#include "unit.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "sync/sync.h"

#include <string.h>

static int match(const char *const *filters, const char *type, const char *id)
{
  struct sync_filters f;
  memset(&f, 0, sizeof(f));
  char err[256];
  for (size_t i = 0; filters[i]; i++)
    ASSERT_EQ(0, sync_filters_add(&f, filters[i], err, sizeof(err)));
  int m = sync_filters_match(&f, type, id);
  sync_filters_free(&f);
  return m;
}

UNIT_TEST(filters_pbs_rules)
{
  const char *none[] = {NULL};
  ASSERT(match(none, "vm", "100"));
  const char *type_vm[] = {"type:vm", NULL};
  ASSERT(match(type_vm, "vm", "100"));
  ASSERT(!match(type_vm, "ct", "100"));
  /* Include filters are alternatives; excludes win over them. */
  const char *two[] = {"type:vm", "include:group:ct/7", "exclude:regex:^vm/9", NULL};
  ASSERT(match(two, "vm", "100"));
  ASSERT(match(two, "ct", "7"));
  ASSERT(!match(two, "ct", "8"));
  ASSERT(!match(two, "vm", "900"));
  /* Only excludes: everything else is in. */
  const char *ex[] = {"exclude:type:host", NULL};
  ASSERT(match(ex, "vm", "1"));
  ASSERT(!match(ex, "host", "a"));
  /* A regex sees "type/id". */
  const char *re[] = {"regex:^host/web-[0-9]+$", NULL};
  ASSERT(match(re, "host", "web-12"));
  ASSERT(!match(re, "host", "web-x"));
}

UNIT_TEST(filters_refused)
{
  const char *bad[] = {"", "type:xx", "group:vm", "group:vm/", "group:zz/1", "regex:(",
                       "regex:", "include:", "exclude:foo:bar", "vm/100", NULL};
  char err[256];
  for (size_t i = 0; bad[i]; i++) {
    err[0] = '\0';
    ASSERT(sync_filter_check(bad[i], err, sizeof(err)) < 0);
    ASSERT(err[0] != '\0');
  }
}

UNIT_TEST(rates)
{
  uint64_t v;
  ASSERT_EQ(0, sync_rate_parse("1000", &v));
  ASSERT_EQ(1000, v);
  ASSERT_EQ(0, sync_rate_parse("10M", &v));
  ASSERT_EQ(10000000, v);
  ASSERT_EQ(0, sync_rate_parse("1.5MiB", &v));
  ASSERT_EQ(1572864, v);
  ASSERT_EQ(0, sync_rate_parse("512k", &v));
  ASSERT_EQ(512000, v);
  const char *bad[] = {"", "-1", "x", "10Q", "1e30", "5 M", NULL};
  for (size_t i = 0; bad[i]; i++)
    ASSERT(sync_rate_parse(bad[i], &v) < 0);
}

UNIT_TEST(rate_bucket_unlimited_counts)
{
  struct sync_rate r;
  sync_rate_init(&r, 0, 0);
  sync_rate_take(&r, 100);
  sync_rate_take(&r, 50);
  ASSERT_EQ(150, atomic_load(&r.bytes));
  ASSERT(sync_rate_window(&r) >= 0);
  sync_rate_destroy(&r);
}

UNIT_TEST(passwords_base64)
{
  const char *secrets[] = {"a", "ab", "abc", "abcd", "3f9c0d8e-1234-4d2b-9a55-0123456789ab", NULL};
  for (size_t i = 0; secrets[i]; i++) {
    char *enc = sync_password_encode(secrets[i]);
    ASSERT(strcmp(enc, secrets[i]) != 0);
    char *dec = sync_password_decode(enc);
    ASSERT(dec != NULL);
    ASSERT(strcmp(dec, secrets[i]) == 0);
    core_free(enc);
    core_free(dec);
  }
  ASSERT(sync_password_decode("") == NULL);
  ASSERT(sync_password_decode("abc") == NULL);
  ASSERT(sync_password_decode("!!!!") == NULL);
  ASSERT(sync_password_decode("AA==") == NULL); /* a NUL byte inside */
}

UNIT_TEST(props)
{
  char err[256];
  ASSERT_EQ(0, sync_job_check_prop("worker-threads", "32", err, sizeof(err)));
  ASSERT(sync_job_check_prop("worker-threads", "33", err, sizeof(err)) < 0);
  ASSERT(sync_job_check_prop("worker-threads", "0", err, sizeof(err)) < 0);
  ASSERT_EQ(0, sync_job_check_prop("max-depth", "7", err, sizeof(err)));
  ASSERT(sync_job_check_prop("max-depth", "8", err, sizeof(err)) < 0);
  ASSERT(sync_job_check_prop("sync-direction", "sideways", err, sizeof(err)) < 0);
  ASSERT(sync_job_check_prop("ns", "a/../b", err, sizeof(err)) < 0);
  ASSERT(sync_job_check_prop("owner", "nobody", err, sizeof(err)) < 0);
  ASSERT(sync_job_check_prop("schedule", "mon..fri 25:00", err, sizeof(err)) < 0);
  ASSERT_EQ(0, sync_job_check_prop("group-filter", "type:vm,exclude:group:vm/1", err,
                                   sizeof(err)));
  ASSERT(sync_job_check_prop("password", "x", err, sizeof(err)) < 0);
  ASSERT_EQ(0, sync_remote_check_prop("fingerprint",
                                      "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:"
                                      "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89",
                                      err, sizeof(err)));
  ASSERT(sync_remote_check_prop("fingerprint", "abcd", err, sizeof(err)) < 0);
  ASSERT(sync_remote_check_prop("port", "65536", err, sizeof(err)) < 0);
  ASSERT(sync_remote_check_prop("host", "a b", err, sizeof(err)) < 0);
  ASSERT(sync_remote_check_prop("store", "x", err, sizeof(err)) < 0);
  ASSERT(!sync_id_valid("ab"));
  ASSERT(sync_id_valid("job-1"));
}

UNIT_TEST(local_overlap)
{
  char err[256];
  ASSERT_EQ(0, sync_local_overlap("a", "x", "b", "x", err, sizeof(err)));
  ASSERT_EQ(0, sync_local_overlap("a", "x", "a", "y", err, sizeof(err)));
  ASSERT_EQ(0, sync_local_overlap("a", "x", "a", "xy", err, sizeof(err)));
  ASSERT(sync_local_overlap("a", "", "a", "y", err, sizeof(err)) < 0);
  ASSERT(sync_local_overlap("a", "x/y", "a", "x", err, sizeof(err)) < 0);
  ASSERT(sync_local_overlap("a", "x", "a", "x", err, sizeof(err)) < 0);
}

UNIT_MAIN(UNIT_CASE(local_overlap), UNIT_CASE(filters_pbs_rules), UNIT_CASE(filters_refused), UNIT_CASE(rates),
          UNIT_CASE(rate_bucket_unlimited_counts), UNIT_CASE(passwords_base64), UNIT_CASE(props))
