/* test_dspath.c: store_dspath, the rules for where a datastore may live, and
 * their use by store_dsconfig_create (what cairn-admin runs). */
#include "unit.h"

#include "core/core_alloc.h"
#include "core/core_config.h"
#include "core/core_error.h"
#include "store/store_dsconfig.h"
#include "store/store_dspath.h"
#include "store/store_path.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *norm(const char *in)
{
  static char out[STORE_PATH_MAX];
  int rc = store_dspath_normalize(in, out, sizeof(out));
  if (rc < 0)
    unit_fail(__FILE__, __LINE__, "normalize(%s): %d", in, rc);
  return out;
}

UNIT_TEST(normalize_lexical)
{
  /* Below a directory that does not exist, only the lexical rules apply. */
  ASSERT_STR_EQ(norm("/nonexistent-cairn/a"), "/nonexistent-cairn/a");
  ASSERT_STR_EQ(norm("/nonexistent-cairn//a/./b/"), "/nonexistent-cairn/a/b");
  ASSERT_STR_EQ(norm("/nonexistent-cairn/a/../b"), "/nonexistent-cairn/b");
  ASSERT_STR_EQ(norm("/nonexistent-cairn/../../.."), "/");
  ASSERT_STR_EQ(norm("/"), "/");
  ASSERT_STR_EQ(norm("//"), "/");
  ASSERT_STR_EQ(norm("/tmp/../etc"), "/etc");
  char out[16];
  ASSERT_EQ(store_dspath_normalize("relative", out, sizeof(out)), CORE_EINVAL);
  ASSERT_EQ(store_dspath_normalize("", out, sizeof(out)), CORE_EINVAL);
  ASSERT_EQ(store_dspath_normalize("/nonexistent-cairn/long", out, sizeof(out)),
            CORE_ETOOBIG);
}

UNIT_TEST(normalize_resolves_symlinks)
{
  const char *tmp = unit_tmpdir();
  char *dir = core_asprintf("%s/real", tmp);
  char *link = core_asprintf("%s/link", tmp);
  char *etc = core_asprintf("%s/etc", tmp);
  char real_tmp[STORE_PATH_MAX];
  ASSERT(realpath(tmp, real_tmp) != NULL);
  ASSERT_OK(mkdir(dir, 0755));
  ASSERT_OK(symlink(dir, link));
  ASSERT_OK(symlink("/etc", etc));

  char *in = core_asprintf("%s/link/new/x", tmp);
  char *want = core_asprintf("%s/real/new/x", real_tmp);
  ASSERT_STR_EQ(norm(in), want);
  core_free(in);
  in = core_asprintf("%s/etc/cairn", tmp);
  ASSERT_STR_EQ(norm(in), "/etc/cairn");
  ASSERT(store_dspath_denied(norm(in)));
  core_free(in);
  /* A file in the way is an error, not a path to walk around. */
  char *file = core_asprintf("%s/file", tmp);
  int fd = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  ASSERT(fd >= 0);
  close(fd);
  in = core_asprintf("%s/file/x", tmp);
  char out[STORE_PATH_MAX];
  ASSERT(store_dspath_normalize(in, out, sizeof(out)) < 0);
  core_free(in);
  core_free(file);
  core_free(want);
  core_free(etc);
  core_free(link);
  core_free(dir);
}

UNIT_TEST(deny_list)
{
  static const char *const denied[] = {
    "/", "/etc", "/etc/cairn", "/usr", "/usr/local/backup", "/bin", "/sbin", "/lib64",
    "/boot", "/dev", "/dev/shm/x", "/proc", "/proc/1", "/sys", "/run", "/run/cairn",
    "/var/run/x", "/var/log/x", "/var/lib", "/var", "/tmp", "/home", "/mnt", "/srv", "/root",
  };
  static const char *const allowed[] = {
    "/tmp/cairn-test/store1", "/var/lib/cairn", "/mnt/backup", "/srv/pbs/ds1",
    "/home/backup/store", "/etcetera", "/usrdata", "/devices/x", "/data",
  };
  for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++)
    if (!store_dspath_denied(denied[i]))
      unit_fail(__FILE__, __LINE__, "%s allowed", denied[i]);
  for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
    if (store_dspath_denied(allowed[i]))
      unit_fail(__FILE__, __LINE__, "%s denied", allowed[i]);
}

UNIT_TEST(overlap)
{
  ASSERT(store_dspath_overlap("/a/b", "/a/b"));
  ASSERT(store_dspath_overlap("/a/b/c", "/a/b"));
  ASSERT(store_dspath_overlap("/a", "/a/b"));
  ASSERT(store_dspath_overlap("/", "/a"));
  ASSERT(!store_dspath_overlap("/a/bc", "/a/b"));
  ASSERT(!store_dspath_overlap("/a/b", "/a/bc"));
  ASSERT(!store_dspath_overlap("/a/c", "/a/b"));
}

UNIT_TEST(state)
{
  const char *tmp = unit_tmpdir();
  char *p = core_asprintf("%s/ds", tmp);
  char *sub = core_asprintf("%s/ds/lost+found", tmp);
  char *chunks = core_asprintf("%s/ds/.chunks", tmp);
  char *other = core_asprintf("%s/ds/file", tmp);
  ASSERT_EQ(store_dspath_state(p), STORE_DSPATH_MISSING);
  ASSERT_OK(mkdir(p, 0755));
  ASSERT_EQ(store_dspath_state(p), STORE_DSPATH_EMPTY);
  ASSERT_OK(mkdir(sub, 0755));
  ASSERT_EQ(store_dspath_state(p), STORE_DSPATH_EMPTY);
  int fd = open(other, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  ASSERT(fd >= 0);
  close(fd);
  ASSERT_EQ(store_dspath_state(p), STORE_DSPATH_OTHER);
  ASSERT_OK(mkdir(chunks, 0755));
  ASSERT_EQ(store_dspath_state(p), STORE_DSPATH_CHUNKSTORE);
  ASSERT_EQ(store_dspath_state(other), CORE_EFORMAT);
  core_free(other);
  core_free(chunks);
  core_free(sub);
  core_free(p);
}

static int create(const char *cfgdir, const char *run, const char *name, const char *path,
                  int reuse, char *err)
{
  struct store_dsconfig_req q;
  struct core_kv kv = {"path", path};
  memset(&q, 0, sizeof(q));
  q.config_dir = cfgdir;
  q.run_dir = run;
  q.name = name;
  q.set = &kv;
  q.nset = 1;
  q.reuse = reuse;
  int rc = store_dsconfig_create(&q);
  snprintf(err, 256, "%s", q.err);
  return rc;
}

static int exists(const char *dir, const char *name)
{
  char *p = core_asprintf("%s/%s", dir, name);
  struct stat st;
  int rc = lstat(p, &st) == 0;
  core_free(p);
  return rc;
}

/* What cairn-admin and the API share: refusals leave nothing behind. */
UNIT_TEST(dsconfig_create_checks)
{
  const char *tmp = unit_tmpdir();
  char *cfg = core_asprintf("%s/config", tmp);
  char *run = core_asprintf("%s/run", tmp);
  char *ds1 = core_asprintf("%s/data/ds1", tmp);
  char *data = core_asprintf("%s/data", tmp);
  char *inside = core_asprintf("%s/data/ds1/host", tmp);
  char *in_cfg = core_asprintf("%s/config/x", tmp);
  char *in_run = core_asprintf("%s/run/x", tmp);
  char *full = core_asprintf("%s/data/full", tmp);
  char *full_file = core_asprintf("%s/data/full/f", tmp);
  char err[256];
  ASSERT_OK(mkdir(cfg, 0755));
  ASSERT_OK(mkdir(run, 0755));
  ASSERT_OK(mkdir(data, 0755));
  ASSERT_OK(create(cfg, run, "ds1", ds1, 0, err));
  ASSERT(exists(ds1, ".chunks"));

  ASSERT_EQ(create(cfg, run, "bad", inside, 0, err), CORE_ECONFIG);
  ASSERT(strstr(err, "overlaps datastore 'ds1'") != NULL);
  ASSERT(!exists(ds1, "host"));
  ASSERT_EQ(create(cfg, run, "bad", data, 0, err), CORE_ECONFIG);
  ASSERT(!exists(data, ".chunks"));
  ASSERT_EQ(create(cfg, run, "bad", in_cfg, 0, err), CORE_ECONFIG);
  ASSERT(strstr(err, "config directory") != NULL);
  ASSERT(!exists(cfg, "x"));
  ASSERT_EQ(create(cfg, run, "bad", in_run, 0, err), CORE_ECONFIG);
  ASSERT(strstr(err, "run directory") != NULL);
  ASSERT(!exists(run, "x"));
  ASSERT_EQ(create(cfg, run, "bad", tmp, 0, err), CORE_ECONFIG);
  ASSERT(!exists(tmp, ".chunks"));
  ASSERT_EQ(create(cfg, run, "bad", "/dev/shm/cairn-unit-x", 0, err), CORE_ECONFIG);
  ASSERT(strstr(err, "system directory") != NULL);

  ASSERT_OK(mkdir(full, 0755));
  int fd = open(full_file, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  ASSERT(fd >= 0);
  close(fd);
  ASSERT_EQ(create(cfg, run, "full", full, 0, err), CORE_ECONFIG);
  ASSERT(strstr(err, "not empty") != NULL);
  ASSERT(!exists(full, ".chunks"));
  ASSERT_OK(create(cfg, run, "full", full, 1, err));
  ASSERT(exists(full, ".chunks"));

  /* An existing name: refused under the lock, before anything is made. */
  char *fresh = core_asprintf("%s/data/fresh", tmp);
  ASSERT_EQ(create(cfg, run, "ds1", fresh, 0, err), CORE_EEXISTS);
  ASSERT(!exists(data, "fresh"));
  core_free(fresh);

  core_free(full_file);
  core_free(full);
  core_free(in_run);
  core_free(in_cfg);
  core_free(inside);
  core_free(data);
  core_free(ds1);
  core_free(run);
  core_free(cfg);
}

UNIT_MAIN(UNIT_CASE(normalize_lexical), UNIT_CASE(normalize_resolves_symlinks),
          UNIT_CASE(deny_list), UNIT_CASE(overlap), UNIT_CASE(state),
          UNIT_CASE(dsconfig_create_checks))
