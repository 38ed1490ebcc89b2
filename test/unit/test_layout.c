#include "unit.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "store/store_lock.h"
#include "format/format_name.h"
#include "store/store_path.h"
#include "store/store_snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char *repeat(char c, size_t n)
{
  char *s = malloc(n + 1);
  memset(s, c, n);
  s[n] = '\0';
  return s;
}

/* ---- names ------------------------------------------------------------- */

UNIT_TEST(names_datastore)
{
  ASSERT_OK(format_name_datastore("abc"));
  ASSERT_OK(format_name_datastore("store_1"));
  ASSERT_OK(format_name_datastore("_a.b-c"));
  char *s32 = repeat('a', 32), *s33 = repeat('a', 33);
  ASSERT_OK(format_name_datastore(s32));
  ASSERT_EQ(format_name_datastore(s33), CORE_ENAME);
  const char *bad[] = {"ab", "", "-abc", ".abc", "a/bc", "a..b", "ab\x01" "c", "ab c",
                       "abc\x7f", "\xc3\xa4" "bc", "abc\n"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (format_name_datastore(bad[i]) != CORE_ENAME)
      unit_fail(__FILE__, __LINE__, "accepted datastore name #%zu", i);
  ASSERT_EQ(format_name_datastore(NULL), CORE_ENAME);
  free(s32);
  free(s33);
}

UNIT_TEST(names_namespace)
{
  ASSERT_EQ(format_name_ns_depth(""), 0);
  ASSERT_EQ(format_name_ns_depth("a"), 1);
  ASSERT_EQ(format_name_ns_depth("a/b-c/d.e"), 3);
  ASSERT_EQ(format_name_ns_depth("a/b/c/d/e/f/g"), 7);
  ASSERT_EQ(format_name_ns("a/b/c/d/e/f/g/h"), CORE_ENAME); /* depth 8 */
  const char *bad[] = {"a//b", "/a", "a/", "/", "..", "a/../b", "a/..", ".", "a/./b",
                       "a/.hidden", "a/b\tc", "a\nb", "a/b c", "a\\b", "a/-x"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (format_name_ns(bad[i]) != CORE_ENAME)
      unit_fail(__FILE__, __LINE__, "accepted namespace \"%s\"", bad[i]);
  /* Total length: 256 is the limit. */
  char *c = repeat('x', 127);
  char *ok = core_asprintf("%s/%s/a", c, c);    /* 127+1+127+1+1 = 257 */
  ASSERT_EQ(format_name_ns(ok), CORE_ENAME);
  char *fits = core_asprintf("%s/%s", c, c);    /* 255 */
  ASSERT_OK(format_name_ns(fits));
  char *huge = repeat('a', 100000);
  ASSERT_EQ(format_name_ns(huge), CORE_ENAME);
  ASSERT_EQ(format_name_ns_component(huge), CORE_ENAME);
  ASSERT_OK(format_name_ns_component("abc"));
  ASSERT_EQ(format_name_ns_component("a/b"), CORE_ENAME);
  ASSERT_EQ(format_name_ns_component(""), CORE_ENAME);
  ASSERT_EQ(format_name_ns(NULL), CORE_ENAME);
  free(c);
  free(huge);
  core_free(ok);
  core_free(fits);
}

UNIT_TEST(names_type_id)
{
  ASSERT_OK(format_name_backup_type("vm"));
  ASSERT_OK(format_name_backup_type("ct"));
  ASSERT_OK(format_name_backup_type("host"));
  ASSERT_EQ(format_name_backup_type("VM"), CORE_ENAME);
  ASSERT_EQ(format_name_backup_type("vmx"), CORE_ENAME);
  ASSERT_EQ(format_name_backup_type(""), CORE_ENAME);
  ASSERT_OK(format_name_backup_id("100"));
  ASSERT_OK(format_name_backup_id("my-host.example_1"));
  char *i128 = repeat('i', 128), *i129 = repeat('i', 129);
  ASSERT_OK(format_name_backup_id(i128));
  ASSERT_EQ(format_name_backup_id(i129), CORE_ENAME);
  const char *bad[] = {"", "..", ".", "a..b", "a/b", ".x", "-x", "a\tb", "a b", "a\x1b[0m",
                       "a:b", "a\\b", "a*"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (format_name_backup_id(bad[i]) != CORE_ENAME)
      unit_fail(__FILE__, __LINE__, "accepted id \"%s\"", bad[i]);
  free(i128);
  free(i129);
}

UNIT_TEST(names_archive)
{
  ASSERT_EQ(format_name_archive("root.pxar.didx"), FORMAT_ARCHIVE_DIDX);
  ASSERT_EQ(format_name_archive("drive-scsi0.img.fidx"), FORMAT_ARCHIVE_FIDX);
  ASSERT_EQ(format_name_archive("index.json.blob"), FORMAT_ARCHIVE_BLOB);
  ASSERT_EQ(format_name_archive("catalog.pcat1.didx"), FORMAT_ARCHIVE_DIDX);
  ASSERT_EQ(format_name_archive("a.blob"), FORMAT_ARCHIVE_BLOB);
  const char *bad[] = {".fidx", ".x.blob", "a.txt", "a/b.blob", "../x.blob", "x.blob\n",
                       "fidx", "", "x.fidx ", "x..fidx", "x.FIDX", "a\x01.blob", "x.blob/"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (format_name_archive(bad[i]) != CORE_ENAME)
      unit_fail(__FILE__, __LINE__, "accepted archive \"%s\"", bad[i]);
  char *a = repeat('a', 123);
  char *n128 = core_asprintf("%s.blob", a); /* 128 */
  char *n129 = core_asprintf("%s.fidx", a);
  n129 = core_realloc(n129, 200);
  unit_append(n129, 200, "x.fidx"); /* 134 */
  ASSERT_EQ(format_name_archive(n128), FORMAT_ARCHIVE_BLOB);
  ASSERT_EQ(format_name_archive(n129), CORE_ENAME);
  free(a);
  core_free(n128);
  core_free(n129);
}

UNIT_TEST(names_authid)
{
  ASSERT_OK(format_name_authid("root@pam"));
  ASSERT_OK(format_name_authid("backup@pbs!token1"));
  ASSERT_OK(format_name_authid("first.last@example-realm"));
  const char *bad[] = {"root", "@pam", "root@", "ro ot@pam", "root@pam!", "a:b@pam",
                       "root@pam\n", "root@pa/m", "root@pam!to ken", "r@", "root@p!a!b"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (format_name_authid(bad[i]) != CORE_ENAME)
      unit_fail(__FILE__, __LINE__, "accepted authid \"%s\"", bad[i]);
}

UNIT_TEST(names_time)
{
  char ts[FORMAT_NAME_TIME_LEN + 1];
  int64_t t;
  ASSERT_OK(format_name_time_format(0, ts));
  ASSERT_STR_EQ(ts, "1970-01-01T00:00:00Z");
  ASSERT_OK(format_name_time_format(1715091951, ts));
  ASSERT_STR_EQ(ts, "2024-05-07T14:25:51Z");
  ASSERT_OK(format_name_time_parse("2024-05-07T14:25:51Z", &t));
  ASSERT_EQ(t, 1715091951);
  ASSERT_OK(format_name_time_parse("2024-02-29T12:00:00Z", &t));
  ASSERT_EQ(t, 1709208000);
  ASSERT_OK(format_name_time_parse("2000-03-01T00:00:00Z", &t));
  ASSERT_EQ(t, 951868800);
  ASSERT_OK(format_name_time_parse("9999-12-31T23:59:59Z", &t));
  ASSERT_EQ(t, FORMAT_NAME_TIME_MAX);
  ASSERT_OK(format_name_time_format(FORMAT_NAME_TIME_MAX, ts));
  ASSERT_STR_EQ(ts, "9999-12-31T23:59:59Z");
  ASSERT_EQ(format_name_time_format(-1, ts), CORE_ENAME);
  ASSERT_EQ(format_name_time_format(FORMAT_NAME_TIME_MAX + 1, ts), CORE_ENAME);

  const char *bad[] = {"2023-02-29T12:00:00Z", "1900-02-29T00:00:00Z", "2024-13-01T00:00:00Z",
                       "2024-00-10T00:00:00Z", "2024-01-00T00:00:00Z", "2024-04-31T00:00:00Z",
                       "2024-01-01T24:00:00Z", "2024-01-01T23:60:00Z", "2024-01-01T23:59:60Z",
                       "2024-01-01t00:00:00Z", "2024-01-01T00:00:00z", "2024-01-01 00:00:00Z",
                       "2024-01-01T00:00:00Z ", "2024-01-01T00:00:00+01:00", "2024-1-01T00:00:00Z",
                       "1969-12-31T23:59:59Z", "2024-01-01T00:00:00", "", "+024-01-01T00:00:00Z",
                       "2024-01-01T0a:00:00Z", "2024/01/01T00:00:00Z"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (format_name_time_parse(bad[i], &t) != CORE_ENAME)
      unit_fail(__FILE__, __LINE__, "accepted time \"%s\"", bad[i]);
  ASSERT_EQ(format_name_time_parse(NULL, &t), CORE_ENAME);

  /* Against libc's gmtime over a spread of values, both directions. */
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < 20000; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    int64_t e = (int64_t)(x % (uint64_t)(FORMAT_NAME_TIME_MAX + 1));
    time_t tt = (time_t)e;
    struct tm tm;
    char want[64];
    gmtime_r(&tt, &tm);
    strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%SZ", &tm);
    ASSERT_OK(format_name_time_format(e, ts));
    ASSERT_STR_EQ(ts, want);
    ASSERT_OK(format_name_time_parse(ts, &t));
    ASSERT_EQ(t, e);
  }
}

/* ---- paths ------------------------------------------------------------- */

UNIT_TEST(paths)
{
  char p[STORE_PATH_MAX];
  ASSERT_EQ(store_path_ns(p, sizeof(p), "/data/store", "a/b"), 21);
  ASSERT_STR_EQ(p, "/data/store/ns/a/ns/b");
  ASSERT_OK(store_path_ns(p, sizeof(p), "/data/store/", ""));
  ASSERT_STR_EQ(p, "/data/store");
  ASSERT_OK(store_path_ns(p, sizeof(p), NULL, ""));
  ASSERT_STR_EQ(p, ".");
  ASSERT_OK(store_path_ns(p, sizeof(p), NULL, "a"));
  ASSERT_STR_EQ(p, "ns/a");
  ASSERT_OK(store_path_group(p, sizeof(p), "/s", "", "vm", "100"));
  ASSERT_STR_EQ(p, "/s/vm/100");
  ASSERT_OK(store_path_group(p, sizeof(p), "/", "x", "ct", "101"));
  ASSERT_STR_EQ(p, "/ns/x/ct/101");
  ASSERT_OK(store_path_group(p, sizeof(p), NULL, "", "host", "h1"));
  ASSERT_STR_EQ(p, "host/h1");
  ASSERT_OK(store_path_snapshot(p, sizeof(p), "/s", "a/b/c", "host", "h1", 1715091951));
  ASSERT_STR_EQ(p, "/s/ns/a/ns/b/ns/c/host/h1/2024-05-07T14:25:51Z");
  ASSERT_OK(store_path_file(p, sizeof(p), "/s", "", "vm", "1", 0, "index.json.blob"));
  ASSERT_STR_EQ(p, "/s/vm/1/1970-01-01T00:00:00Z/index.json.blob");
  ASSERT_OK(store_path_file(p, sizeof(p), "/s", "", "vm", "1", 0, ".protected"));

  uint8_t d[32];
  for (int i = 0; i < 32; i++)
    d[i] = (uint8_t)(i * 7 + 0xa0);
  ASSERT_OK(store_path_chunk(p, sizeof(p), "/s", d));
  ASSERT_STR_EQ(p, "/s/.chunks/a0a7/a0a7aeb5bcc3cad1d8dfe6edf4fb020910171e252c333a41484f565d646b7279");
  char rel[STORE_CHUNK_REL_LEN + 1];
  store_path_chunk_rel(rel, d);
  ASSERT_STR_EQ(rel, "a0a7/a0a7aeb5bcc3cad1d8dfe6edf4fb020910171e252c333a41484f565d646b7279");

  /* Hostile names never become paths. */
  ASSERT_EQ(store_path_ns(p, sizeof(p), "/s", "../etc"), CORE_ENAME);
  ASSERT_EQ(store_path_group(p, sizeof(p), "/s", "", "vm", "../../etc"), CORE_ENAME);
  ASSERT_EQ(store_path_group(p, sizeof(p), "/s", "", "../x", "1"), CORE_ENAME);
  ASSERT_EQ(store_path_snapshot(p, sizeof(p), "/s", "", "vm", "1", -5), CORE_ENAME);
  ASSERT_EQ(store_path_file(p, sizeof(p), "/s", "", "vm", "1", 0, "../../owner"), CORE_ENAME);
  ASSERT_EQ(store_path_file(p, sizeof(p), "/s", "", "vm", "1", 0, "owner"), CORE_ENAME);
  ASSERT_EQ(store_path_file(p, sizeof(p), "/s", "", "vm", "1", 0, NULL), CORE_ENAME);

  /* Bounded output. */
  char small[10];
  ASSERT_EQ(store_path_group(small, sizeof(small), "/s", "", "vm", "100"), 9);
  ASSERT_EQ(store_path_group(small, sizeof(small), "/s", "", "vm", "1000"), CORE_ETOOBIG);
  ASSERT_STR_EQ(small, "");
  ASSERT_EQ(store_path_chunk(small, sizeof(small), "/s", d), CORE_ETOOBIG);
  ASSERT_EQ(store_path_ns(small, 0, "/s", ""), CORE_ETOOBIG);
}

/* ---- snapshots --------------------------------------------------------- */

static const char *base(void)
{
  static char b[512];
  snprintf(b, sizeof(b), "%s/ds", unit_tmpdir());
  mkdir(b, 0755);
  return b;
}

static void write_file(const char *path, size_t size)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT(fd >= 0);
  for (size_t i = 0; i < size; i++)
    ASSERT_EQ(write(fd, "x", 1), 1);
  close(fd);
}

static void snap_file(const char *ns, const char *type, const char *id, int64_t t,
                      const char *name, size_t size)
{
  char p[STORE_PATH_MAX];
  ASSERT(store_path_file(p, sizeof(p), base(), ns, type, id, t, name) > 0);
  write_file(p, size);
}

UNIT_TEST(snapshot_listing)
{
  char *owner;
  const char *b = base();
  ASSERT_EQ(store_group_create(b, "", "vm", "100", "root@pam", &owner), 1);
  ASSERT_STR_EQ(owner, "root@pam");
  core_free(owner);
  /* t=1000: finished; t=2000: finished + protected; t=3000: unfinished. */
  ASSERT_OK(store_snapshot_create(b, "", "vm", "100", 1000));
  ASSERT_OK(store_snapshot_create(b, "", "vm", "100", 3000));
  ASSERT_OK(store_snapshot_create(b, "", "vm", "100", 2000));
  snap_file("", "vm", "100", 1000, "index.json.blob", 10);
  snap_file("", "vm", "100", 1000, "drive-scsi0.img.fidx", 4096);
  snap_file("", "vm", "100", 1000, "client.log.blob", 5);
  snap_file("", "vm", "100", 2000, "index.json.blob", 11);
  ASSERT_OK(store_snapshot_set_protected(b, "", "vm", "100", 2000, 1));
  ASSERT_OK(store_snapshot_set_protected(b, "", "vm", "100", 2000, 1)); /* idempotent */
  snap_file("", "vm", "100", 3000, "drive-scsi0.img.fidx", 7);

  /* Junk the listing must skip. */
  char p[STORE_PATH_MAX];
  store_path_snapshot(p, sizeof(p), b, "", "vm", "100", 1000);
  unit_append(p, sizeof(p), "/drive-scsi0.img.tmp_fidx");
  write_file(p, 3);
  store_path_group(p, sizeof(p), b, "", "vm", "100");
  unit_append(p, sizeof(p), "/2024-99-99T00:00:00Z");
  ASSERT_EQ(mkdir(p, 0755), 0);
  store_path_group(p, sizeof(p), b, "", "vm", "100");
  unit_append(p, sizeof(p), "/2024-01-01T00:00:00Z"); /* a file, not a dir */
  write_file(p, 1);
  snprintf(p, sizeof(p), "%s/vm/..bad", b);
  ASSERT_EQ(mkdir(p, 0755), 0);
  snprintf(p, sizeof(p), "%s/lxc", b);
  ASSERT_EQ(mkdir(p, 0755), 0);

  struct store_snapshot_list l;
  ASSERT_OK(store_snapshot_list(b, "", "vm", "100", &l));
  ASSERT_EQ(l.n, 3);
  ASSERT_EQ(l.items[0].time, 1000);
  ASSERT_EQ(l.items[0].finished, 1);
  ASSERT_EQ(l.items[0].is_protected, 0);
  ASSERT_EQ(l.items[0].n_files, 3);
  ASSERT_STR_EQ(l.items[0].files[0].name, "client.log.blob");
  ASSERT_EQ(l.items[0].files[0].size, 5);
  ASSERT_STR_EQ(l.items[0].files[1].name, "drive-scsi0.img.fidx");
  ASSERT_EQ(l.items[0].files[1].size, 4096);
  ASSERT_STR_EQ(l.items[0].files[2].name, "index.json.blob");
  ASSERT_EQ(l.items[1].time, 2000);
  ASSERT_EQ(l.items[1].finished, 1);
  ASSERT_EQ(l.items[1].is_protected, 1);
  ASSERT_EQ(l.items[2].time, 3000);
  ASSERT_EQ(l.items[2].finished, 0);
  ASSERT_EQ(l.items[2].n_files, 1);
  store_snapshot_list_free(&l);

  struct store_snapshot_info info;
  ASSERT_OK(store_snapshot_info(b, "", "vm", "100", 2000, &info));
  ASSERT_EQ(info.is_protected, 1);
  ASSERT_EQ(info.n_files, 1);
  store_snapshot_info_free(&info);
  ASSERT_EQ(store_snapshot_info(b, "", "vm", "100", 4000, &info), CORE_ENOTFOUND);

  ASSERT_EQ(store_group_create(b, "", "ct", "200", "user@pbs!tok", &owner), 1);
  core_free(owner);
  ASSERT_EQ(store_group_create(b, "", "host", "h", "root@pam", &owner), 1);
  core_free(owner);
  store_path_group(p, sizeof(p), b, "", "host", "h");
  unit_append(p, sizeof(p), "/owner");
  write_file(p, 0); /* broken owner file */

  struct store_group_list g;
  ASSERT_OK(store_group_list(b, "", &g));
  ASSERT_EQ(g.n, 3);
  ASSERT_STR_EQ(g.items[0].type, "ct");
  ASSERT_STR_EQ(g.items[0].id, "200");
  ASSERT_STR_EQ(g.items[0].owner, "user@pbs!tok");
  ASSERT_EQ(g.items[0].n_snapshots, 0);
  ASSERT_EQ(g.items[0].last_backup, -1);
  ASSERT_STR_EQ(g.items[1].type, "host");
  ASSERT(g.items[1].owner == NULL);
  ASSERT_STR_EQ(g.items[2].type, "vm");
  ASSERT_STR_EQ(g.items[2].id, "100");
  ASSERT_STR_EQ(g.items[2].owner, "root@pam");
  ASSERT_EQ(g.items[2].n_snapshots, 3);
  ASSERT_EQ(g.items[2].last_backup, 2000); /* 3000 is unfinished */
  store_group_list_free(&g);

  ASSERT_EQ(store_group_owner(b, "", "host", "h", &owner), CORE_EFORMAT);
  ASSERT_OK(store_group_set_owner(b, "", "host", "h", "new@pam"));
  ASSERT_OK(store_group_owner(b, "", "host", "h", &owner));
  ASSERT_STR_EQ(owner, "new@pam");
  core_free(owner);
  ASSERT_EQ(store_group_set_owner(b, "", "host", "h", "bad owner"), CORE_ENAME);
  ASSERT_EQ(store_group_owner(b, "", "host", "nope", &owner), CORE_ENOTFOUND);
  ASSERT_EQ(store_snapshot_list(b, "", "vm", "nope", &l), CORE_ENOTFOUND);
  ASSERT_EQ(store_group_list(b, "nope", &g), CORE_ENOTFOUND);
}

UNIT_TEST(snapshot_create_delete)
{
  char *owner;
  const char *b = base();
  ASSERT_EQ(store_snapshot_create(b, "", "vm", "1", 100), CORE_ENOTFOUND); /* no group */
  ASSERT_EQ(store_group_create(b, "", "vm", "1", "root@pam", &owner), 1);
  core_free(owner);
  ASSERT_EQ(store_group_create(b, "", "vm", "1", "other@pam", &owner), 0);
  ASSERT_STR_EQ(owner, "root@pam"); /* the existing owner is reported */
  core_free(owner);
  ASSERT_EQ(store_group_create(b, "", "vm", "1", "bad", &owner), CORE_ENAME);
  ASSERT_EQ(store_group_create(b, "missing", "vm", "1", "root@pam", &owner), CORE_ENOTFOUND);

  ASSERT_OK(store_snapshot_create(b, "", "vm", "1", 100));
  ASSERT_EQ(store_snapshot_create(b, "", "vm", "1", 100), CORE_EEXISTS);
  ASSERT_EQ(store_snapshot_create(b, "", "vm", "1", -1), CORE_ENAME);
  snap_file("", "vm", "1", 100, "index.json.blob", 3);
  snap_file("", "vm", "1", 100, "root.pxar.didx", 3);
  ASSERT_OK(store_snapshot_set_protected(b, "", "vm", "1", 100, 1));
  ASSERT_EQ(store_snapshot_delete(b, "", "vm", "1", 100), CORE_EPROTECTED);
  ASSERT_EQ(store_group_delete(b, "", "vm", "1"), CORE_EPROTECTED);
  struct store_snapshot_info info;
  ASSERT_OK(store_snapshot_info(b, "", "vm", "1", 100, &info)); /* untouched */
  ASSERT_EQ(info.n_files, 2);
  ASSERT_EQ(info.finished, 1);
  store_snapshot_info_free(&info);

  ASSERT_OK(store_snapshot_set_protected(b, "", "vm", "1", 100, 0));
  ASSERT_OK(store_snapshot_set_protected(b, "", "vm", "1", 100, 0));
  ASSERT_OK(store_snapshot_delete(b, "", "vm", "1", 100));
  ASSERT_EQ(store_snapshot_delete(b, "", "vm", "1", 100), CORE_ENOTFOUND);
  ASSERT_EQ(store_snapshot_set_protected(b, "", "vm", "1", 100, 1), CORE_ENOTFOUND);

  ASSERT_OK(store_snapshot_create(b, "", "vm", "1", 200));
  ASSERT_OK(store_snapshot_create(b, "", "vm", "1", 300));
  snap_file("", "vm", "1", 300, "index.json.blob", 3);
  ASSERT_OK(store_group_delete(b, "", "vm", "1"));
  char p[STORE_PATH_MAX];
  struct stat st;
  store_path_group(p, sizeof(p), b, "", "vm", "1");
  ASSERT_EQ(stat(p, &st), -1);
  ASSERT_EQ(store_group_delete(b, "", "vm", "1"), CORE_ENOTFOUND);
}

struct race {
  pthread_barrier_t *barrier;
  const char *base;
  const char *authid;
  int created[50];
  char *owners[50];
};

static void *race_create(void *arg)
{
  struct race *r = arg;
  for (int i = 0; i < 50; i++) {
    char id[16];
    snprintf(id, sizeof(id), "g%d", i);
    pthread_barrier_wait(r->barrier);
    r->created[i] = store_group_create(r->base, "", "host", id, r->authid, &r->owners[i]);
  }
  return NULL;
}

UNIT_TEST(owner_race)
{
  pthread_barrier_t barrier;
  pthread_barrier_init(&barrier, NULL, 2);
  struct race a = {.barrier = &barrier, .base = base(), .authid = "alice@pbs"};
  struct race b = {.barrier = &barrier, .base = base(), .authid = "bob@pbs"};
  pthread_t ta, tb;
  ASSERT_EQ(pthread_create(&ta, NULL, race_create, &a), 0);
  ASSERT_EQ(pthread_create(&tb, NULL, race_create, &b), 0);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  for (int i = 0; i < 50; i++) {
    ASSERT(a.created[i] >= 0 && b.created[i] >= 0);
    ASSERT_EQ(a.created[i] + b.created[i], 1); /* exactly one creator */
    ASSERT_STR_EQ(a.owners[i], b.owners[i]);   /* both see the same, complete owner */
    char *stored;
    char id[16];
    snprintf(id, sizeof(id), "g%d", i);
    ASSERT_OK(store_group_owner(base(), "", "host", id, &stored));
    ASSERT_STR_EQ(stored, a.owners[i]);
    core_free(stored);
    core_free(a.owners[i]);
    core_free(b.owners[i]);
  }
  pthread_barrier_destroy(&barrier);
}

UNIT_TEST(namespace_rules)
{
  const char *b = base();
  ASSERT_EQ(store_ns_create(b, ""), CORE_EINVAL);
  ASSERT_OK(store_ns_create(b, "a"));
  ASSERT_EQ(store_ns_create(b, "a"), CORE_EEXISTS);
  ASSERT_OK(store_ns_create(b, "a/b"));
  ASSERT_OK(store_ns_create(b, "a/c"));
  ASSERT_OK(store_ns_create(b, "a/b/d"));
  ASSERT_OK(store_ns_create(b, "z"));
  ASSERT_EQ(store_ns_create(b, "x/y"), CORE_ENOTFOUND); /* parent missing */
  ASSERT_EQ(store_ns_create(b, "a/../e"), CORE_ENAME);
  ASSERT_EQ(store_ns_exists(b, "a/b/d"), 1);
  ASSERT_EQ(store_ns_exists(b, "a/b/q"), 0);

  char p[STORE_PATH_MAX];
  struct stat st;
  snprintf(p, sizeof(p), "%s/ns/a/ns/b/ns/d", b);
  ASSERT_EQ(stat(p, &st), 0);

  /* Depth limit: 7 levels below the root can exist, an 8th cannot. */
  const char *chain[] = {"l1", "l1/l2", "l1/l2/l3", "l1/l2/l3/l4", "l1/l2/l3/l4/l5",
                         "l1/l2/l3/l4/l5/l6", "l1/l2/l3/l4/l5/l6/l7"};
  for (size_t i = 0; i < 7; i++)
    ASSERT_OK(store_ns_create(b, chain[i]));
  ASSERT_EQ(store_ns_create(b, "l1/l2/l3/l4/l5/l6/l7/l8"), CORE_ENAME);

  struct store_ns_list l;
  ASSERT_OK(store_ns_list(b, "", -1, &l));
  const char *want[] = {"", "a", "a/b", "a/b/d", "a/c", "l1", "l1/l2", "l1/l2/l3",
                        "l1/l2/l3/l4", "l1/l2/l3/l4/l5", "l1/l2/l3/l4/l5/l6",
                        "l1/l2/l3/l4/l5/l6/l7", "z"};
  ASSERT_EQ(l.n, sizeof(want) / sizeof(want[0]));
  for (size_t i = 0; i < l.n; i++)
    ASSERT_STR_EQ(l.items[i], want[i]);
  store_ns_list_free(&l);
  ASSERT_OK(store_ns_list(b, "a", 1, &l));
  ASSERT_EQ(l.n, 3); /* a, a/b, a/c */
  store_ns_list_free(&l);
  ASSERT_OK(store_ns_list(b, "a", 0, &l));
  ASSERT_EQ(l.n, 1);
  store_ns_list_free(&l);
  ASSERT_EQ(store_ns_list(b, "nope", -1, &l), CORE_ENOTFOUND);

  /* Delete rules. */
  char *owner;
  ASSERT_EQ(store_group_create(b, "a/b/d", "vm", "5", "root@pam", &owner), 1);
  core_free(owner);
  ASSERT_OK(store_snapshot_create(b, "a/b/d", "vm", "5", 10));
  ASSERT_OK(store_snapshot_set_protected(b, "a/b/d", "vm", "5", 10, 1));
  ASSERT_EQ(store_ns_delete(b, "", 0), CORE_EINVAL);
  ASSERT_EQ(store_ns_delete(b, "q", 0), CORE_ENOTFOUND);
  ASSERT_EQ(store_ns_delete(b, "a", 0), -ENOTEMPTY);
  ASSERT_EQ(store_ns_delete(b, "a", STORE_NS_DELETE_GROUPS), CORE_EPROTECTED);
  ASSERT_EQ(store_ns_exists(b, "a/c"), 1); /* refusals removed nothing */
  ASSERT_EQ(store_ns_exists(b, "a/b/d"), 1);
  ASSERT_OK(store_ns_delete(b, "a/c", 0)); /* empty: fine */
  ASSERT_EQ(store_ns_exists(b, "a/c"), 0);
  ASSERT_OK(store_snapshot_set_protected(b, "a/b/d", "vm", "5", 10, 0));
  ASSERT_OK(store_ns_delete(b, "a", STORE_NS_DELETE_GROUPS));
  ASSERT_EQ(store_ns_exists(b, "a"), 0);
  ASSERT_EQ(store_ns_exists(b, "z"), 1);
  ASSERT_OK(store_ns_delete(b, "l1", 0)); /* a whole empty chain */
  ASSERT_OK(store_ns_list(b, "", -1, &l));
  ASSERT_EQ(l.n, 2); /* "", "z" */
  store_ns_list_free(&l);
  /* The parent's "ns" directory is left for the remaining sibling. */
  snprintf(p, sizeof(p), "%s/ns/z", b);
  ASSERT_EQ(stat(p, &st), 0);
}

/* ---- locks ------------------------------------------------------------- */

static const char *lockdir(void)
{
  static char d[600];
  ASSERT(store_lock_dir(d, sizeof(d), unit_tmpdir(), "store1") > 0);
  return d;
}

static double now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

UNIT_TEST(lock_names)
{
  char p[STORE_PATH_MAX], want[STORE_PATH_MAX];
  const char *d = lockdir();
  snprintf(want, sizeof(want), "%s/locks/store1", unit_tmpdir());
  ASSERT_STR_EQ(d, want);
  ASSERT_EQ(store_lock_dir(p, sizeof(p), "/run", "a/b"), CORE_ENAME);

  ASSERT_OK(store_lock_file_path(p, sizeof(p), d, "", NULL, NULL, -1, 0));
  snprintf(want, sizeof(want), "%s/ns/.ns-lock", d);
  ASSERT_STR_EQ(p, want);
  ASSERT_OK(store_lock_file_path(p, sizeof(p), d, "a/b", NULL, NULL, -1, 0));
  snprintf(want, sizeof(want), "%s/ns:a:b/.ns-lock", d);
  ASSERT_STR_EQ(p, want);
  ASSERT_OK(store_lock_file_path(p, sizeof(p), d, "a/b", "vm", "100", -1, 0));
  snprintf(want, sizeof(want), "%s/ns:a:b/vm-100", d);
  ASSERT_STR_EQ(p, want);
  ASSERT_OK(store_lock_file_path(p, sizeof(p), d, "", "host", "my-host.x", 0, 0));
  snprintf(want, sizeof(want), "%s/ns/host-my\\x2dhost.x-1970\\x2d01\\x2d01T00:00:00Z", d);
  ASSERT_STR_EQ(p, want);
  ASSERT_OK(store_lock_file_path(p, sizeof(p), d, "", "ct", "1", 0, 1));
  snprintf(want, sizeof(want), "%s/ns/ct-1-1970\\x2d01\\x2d01T00:00:00Z.index.json.lck", d);
  ASSERT_STR_EQ(p, want);
  /* A namespace called like a group's lock file cannot collide with it. */
  ASSERT_OK(store_lock_file_path(p, sizeof(p), d, "vm-100", NULL, NULL, -1, 0));
  snprintf(want, sizeof(want), "%s/ns:vm-100/.ns-lock", d);
  ASSERT_STR_EQ(p, want);

  /* Long names are hashed below NAME_MAX, distinctly. */
  char *id1 = repeat('-', 128), *id2 = repeat('-', 128);
  id1[0] = 'a';
  id2[0] = 'b';
  char p2[STORE_PATH_MAX];
  ASSERT_OK(store_lock_file_path(p, sizeof(p), d, "", "vm", id1, 1, 0));
  ASSERT_OK(store_lock_file_path(p2, sizeof(p2), d, "", "vm", id2, 1, 0));
  ASSERT(strcmp(p, p2) != 0);
  const char *last = strrchr(p, '/') + 1;
  ASSERT(strlen(last) < 255);
  ASSERT(strstr(last, "...") != NULL);
  char *c = repeat('n', 124); /* "ns:" + 253 characters: hashed */
  char *longns = core_asprintf("%s/%s/abc", c, c);
  ASSERT_OK(store_lock_file_path(p, sizeof(p), d, longns, NULL, NULL, -1, 0));
  ASSERT(strstr(p, "/ns:nnn") != NULL && strstr(p, "...") != NULL);

  /* And they lock like any other. */
  struct store_lock_guard g = STORE_LOCK_GUARD_INIT, h = STORE_LOCK_GUARD_INIT;
  ASSERT_OK(store_lock_group(d, "", "vm", id1, STORE_LOCK_EXCLUSIVE, &g));
  ASSERT_OK(store_lock_group(d, "", "vm", id2, STORE_LOCK_EXCLUSIVE, &h));
  store_lock_release(&h);
  ASSERT_EQ(store_lock_group(d, "", "vm", id1, STORE_LOCK_EXCLUSIVE, &h), CORE_ELOCKED);
  store_lock_release(&g);
  free(id1);
  free(id2);
  free(c);
  core_free(longns);
}

UNIT_TEST(lock_conflicts)
{
  const char *d = lockdir();
  struct store_lock_guard g1 = STORE_LOCK_GUARD_INIT, g2 = STORE_LOCK_GUARD_INIT;
  ASSERT_OK(store_lock_group(d, "", "vm", "100", STORE_LOCK_EXCLUSIVE, &g1));
  ASSERT_EQ(g1.n, 2); /* root ns + group */
  double t0 = now_ms();
  ASSERT_EQ(store_lock_group(d, "", "vm", "100", STORE_LOCK_EXCLUSIVE, &g2), CORE_ELOCKED);
  ASSERT_EQ(store_lock_group(d, "", "vm", "100", STORE_LOCK_SHARED, &g2), CORE_ELOCKED);
  ASSERT(now_ms() - t0 < 500); /* never waits */
  ASSERT_EQ(g2.n, 0);          /* failure leaves nothing held */
  ASSERT_OK(store_lock_group(d, "", "vm", "101", STORE_LOCK_EXCLUSIVE, &g2));
  store_lock_release(&g2);
  store_lock_release(&g1);
  store_lock_release(&g1); /* double release is harmless */
  ASSERT_OK(store_lock_group(d, "", "vm", "100", STORE_LOCK_EXCLUSIVE, &g2));
  store_lock_release(&g2);

  /* Snapshots: readers share, deletion excludes. */
  struct store_lock_guard r1 = STORE_LOCK_GUARD_INIT, r2 = STORE_LOCK_GUARD_INIT,
                          x = STORE_LOCK_GUARD_INIT;
  ASSERT_OK(store_lock_snapshot(d, "a", "ct", "7", 1000, STORE_LOCK_SHARED, &r1));
  ASSERT_OK(store_lock_snapshot(d, "a", "ct", "7", 1000, STORE_LOCK_SHARED, &r2));
  ASSERT_EQ(store_lock_snapshot(d, "a", "ct", "7", 1000, STORE_LOCK_EXCLUSIVE, &x), CORE_ELOCKED);
  ASSERT_OK(store_lock_snapshot(d, "a", "ct", "7", 2000, STORE_LOCK_EXCLUSIVE, &x));
  store_lock_release(&x);
  store_lock_release(&r1);
  ASSERT_EQ(store_lock_snapshot(d, "a", "ct", "7", 1000, STORE_LOCK_EXCLUSIVE, &x), CORE_ELOCKED);
  store_lock_release(&r2);
  ASSERT_OK(store_lock_snapshot(d, "a", "ct", "7", 1000, STORE_LOCK_EXCLUSIVE, &x));
  /* The manifest lock is separate from the snapshot lock. */
  struct store_lock_guard m = STORE_LOCK_GUARD_INIT, m2 = STORE_LOCK_GUARD_INIT;
  ASSERT_OK(store_lock_manifest(d, "a", "ct", "7", 1000, &m));
  ASSERT_EQ(store_lock_manifest(d, "a", "ct", "7", 1000, &m2), CORE_ELOCKED);
  store_lock_release(&m);
  store_lock_release(&x);

  ASSERT_EQ(store_lock_group(d, "../x", "vm", "1", STORE_LOCK_SHARED, &x), CORE_ENAME);
  ASSERT_EQ(store_lock_group(d, "", "vm", "../1", STORE_LOCK_SHARED, &x), CORE_ENAME);
  ASSERT_EQ(store_lock_snapshot(d, "", "vm", "1", -1, STORE_LOCK_SHARED, &x), CORE_ENAME);
  ASSERT_EQ(x.n, 0);
}

UNIT_TEST(lock_namespace_hierarchy)
{
  const char *d = lockdir();
  struct store_lock_guard grp = STORE_LOCK_GUARD_INIT, ns = STORE_LOCK_GUARD_INIT,
                          other = STORE_LOCK_GUARD_INIT;
  /* A group lock in a/b holds root, a and a/b shared. */
  ASSERT_OK(store_lock_group(d, "a/b", "vm", "1", STORE_LOCK_EXCLUSIVE, &grp));
  ASSERT_EQ(grp.n, 4);
  double t0 = now_ms();
  ASSERT_EQ(store_lock_namespace(d, "a", STORE_LOCK_EXCLUSIVE, &ns), CORE_ELOCKED);
  ASSERT_EQ(store_lock_namespace(d, "a/b", STORE_LOCK_EXCLUSIVE, &ns), CORE_ELOCKED);
  ASSERT_EQ(store_lock_namespace(d, "", STORE_LOCK_EXCLUSIVE, &ns), CORE_ELOCKED);
  ASSERT(now_ms() - t0 < 500);
  ASSERT_EQ(ns.n, 0);
  ASSERT_OK(store_lock_namespace(d, "a/c", STORE_LOCK_EXCLUSIVE, &ns)); /* sibling: free */
  store_lock_release(&ns);
  ASSERT_OK(store_lock_namespace(d, "a", STORE_LOCK_SHARED, &ns));
  store_lock_release(&ns);
  store_lock_release(&grp);

  /* An exclusive namespace lock blocks everything below it, nothing beside. */
  ASSERT_OK(store_lock_namespace(d, "a", STORE_LOCK_EXCLUSIVE, &ns));
  ASSERT_EQ(store_lock_group(d, "a", "vm", "1", STORE_LOCK_SHARED, &other), CORE_ELOCKED);
  ASSERT_EQ(store_lock_group(d, "a/b/c", "vm", "1", STORE_LOCK_EXCLUSIVE, &other), CORE_ELOCKED);
  ASSERT_EQ(store_lock_snapshot(d, "a/b", "vm", "1", 5, STORE_LOCK_SHARED, &other), CORE_ELOCKED);
  ASSERT_EQ(store_lock_namespace(d, "a/b", STORE_LOCK_SHARED, &other), CORE_ELOCKED);
  ASSERT_EQ(other.n, 0);
  ASSERT_OK(store_lock_group(d, "", "vm", "1", STORE_LOCK_EXCLUSIVE, &other));
  store_lock_release(&other);
  ASSERT_OK(store_lock_group(d, "ab", "vm", "1", STORE_LOCK_EXCLUSIVE, &other));
  store_lock_release(&other);
  ASSERT_EQ(store_lock_namespace(d, "", STORE_LOCK_EXCLUSIVE, &other), CORE_ELOCKED);
  store_lock_release(&ns);

  /* Deepest chain: root + 7 levels + object. */
  ASSERT_OK(store_lock_snapshot(d, "1/2/3/4/5/6/7", "host", "h", 9, STORE_LOCK_SHARED, &grp));
  ASSERT_EQ(grp.n, STORE_LOCK_MAX_FDS);
  ASSERT_EQ(store_lock_namespace(d, "1/2/3", STORE_LOCK_EXCLUSIVE, &ns), CORE_ELOCKED);
  store_lock_release(&grp);
  ASSERT_OK(store_lock_namespace(d, "1/2/3", STORE_LOCK_EXCLUSIVE, &ns));
  store_lock_release(&ns);
}

UNIT_TEST(lock_other_process)
{
  const char *d = lockdir();
  int ready[2], done[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(done), 0);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    struct store_lock_guard g = STORE_LOCK_GUARD_INIT;
    char x;
    if (store_lock_group(d, "n", "vm", "9", STORE_LOCK_EXCLUSIVE, &g) < 0)
      _exit(2);
    if (write(ready[1], "r", 1) != 1 || read(done[0], &x, 1) != 1)
      _exit(3);
    store_lock_release(&g);
    _exit(0);
  }
  char x;
  ASSERT_EQ(read(ready[0], &x, 1), 1);
  struct store_lock_guard g = STORE_LOCK_GUARD_INIT;
  double t0 = now_ms();
  ASSERT_EQ(store_lock_group(d, "n", "vm", "9", STORE_LOCK_SHARED, &g), CORE_ELOCKED);
  ASSERT_EQ(store_lock_namespace(d, "n", STORE_LOCK_EXCLUSIVE, &g), CORE_ELOCKED);
  ASSERT(now_ms() - t0 < 500);
  ASSERT_EQ(write(done[1], "d", 1), 1);
  int status;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_OK(store_lock_namespace(d, "n", STORE_LOCK_EXCLUSIVE, &g));
  store_lock_release(&g);
  close(ready[0]);
  close(ready[1]);
  close(done[0]);
  close(done[1]);
}

UNIT_MAIN(UNIT_CASE(names_datastore), UNIT_CASE(names_namespace), UNIT_CASE(names_type_id),
          UNIT_CASE(names_archive), UNIT_CASE(names_authid), UNIT_CASE(names_time),
          UNIT_CASE(paths), UNIT_CASE(snapshot_listing), UNIT_CASE(snapshot_create_delete),
          UNIT_CASE(owner_race), UNIT_CASE(namespace_rules), UNIT_CASE(lock_names),
          UNIT_CASE(lock_conflicts), UNIT_CASE(lock_namespace_hierarchy),
          UNIT_CASE(lock_other_process))
