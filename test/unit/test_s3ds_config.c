/* test_s3ds_config.c: s3.cfg endpoints and their separate secrets. */
#include "unit.h"

#include "core/core_alloc.h"
#include "core/core_config.h"
#include "core/core_error.h"
#include "core/core_shmem.h"
#include "s3/s3_config.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRET "Zm9vYmFyLXNlY3JldC0wMTIzNDU2Nzg5"

static char *slurp(const char *path)
{
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return NULL;
  static char buf[65536];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  return buf;
}

static int create_rgw(const char *dir, struct core_shmem *shmem)
{
  struct core_kv kv[] = {
    {"endpoint", "127.0.0.1"}, {"port", "7480"}, {"access-key", "AKIDEXAMPLE"},
    {"secret-key", SECRET},    {"path-style", "true"}, {"use-tls", "false"},
  };
  struct s3_config_req q = {0};
  q.config_dir = dir;
  q.shmem = shmem;
  q.id = "rgw1";
  q.set = kv;
  q.nset = sizeof(kv) / sizeof(kv[0]);
  return s3_config_create(&q);
}

UNIT_TEST(create_keeps_secret_apart)
{
  const char *dir = unit_tmpdir();
  ASSERT_EQ(create_rgw(dir, NULL), 0);
  char path[512];
  snprintf(path, sizeof(path), "%s/s3.cfg", dir);
  const char *cfg = slurp(path);
  ASSERT(cfg != NULL);
  ASSERT(strstr(cfg, "s3-endpoint: rgw1\n") != NULL);
  ASSERT(strstr(cfg, "\tendpoint 127.0.0.1\n") != NULL);
  ASSERT(strstr(cfg, SECRET) == NULL);
  ASSERT(strstr(cfg, "secret") == NULL);
  snprintf(path, sizeof(path), "%s/s3-secrets.cfg", dir);
  struct stat st;
  ASSERT_EQ(stat(path, &st), 0);
  ASSERT_EQ(st.st_mode & 0777, 0600);
  ASSERT(strstr(slurp(path), SECRET) != NULL);

  struct s3_endpoint ep;
  char err[256];
  ASSERT_EQ(s3_config_load_endpoint(dir, "rgw1", &ep, err, sizeof(err)), 0);
  ASSERT_STR_EQ(ep.endpoint, "127.0.0.1");
  ASSERT_EQ(ep.port, 7480);
  ASSERT_EQ(ep.path_style, 1);
  ASSERT_EQ(ep.use_tls, 0);
  ASSERT_STR_EQ(ep.secret_key, SECRET);
  struct s3_client_config cc;
  s3_endpoint_client_config(&ep, &cc);
  ASSERT_STR_EQ(cc.access_key, "AKIDEXAMPLE");
  s3_endpoint_free(&ep);
  ASSERT_EQ(s3_config_load_endpoint(dir, "nope", &ep, err, sizeof(err)), CORE_ENOTFOUND);
}

UNIT_TEST(create_requires_and_validates)
{
  const char *dir = unit_tmpdir();
  struct s3_config_req q = {0};
  q.config_dir = dir;
  q.id = "rgw1";
  struct core_kv no_secret[] = {{"endpoint", "s3.example.com"}, {"access-key", "AK"}};
  q.set = no_secret;
  q.nset = 2;
  ASSERT_EQ(s3_config_create(&q), CORE_ECONFIG);
  ASSERT(strstr(q.err, "secret-key") != NULL);

  struct core_kv bad_port[] = {{"endpoint", "s3.example.com"}, {"access-key", "AK"},
                             {"secret-key", SECRET}, {"port", "70000"}};
  q.set = bad_port;
  q.nset = 4;
  ASSERT_EQ(s3_config_create(&q), CORE_ECONFIG);
  char err[256];
  ASSERT_EQ(s3_config_check_prop("secret-key", "has space", err, sizeof(err)), CORE_ECONFIG);
  ASSERT(strstr(err, "has space") == NULL); /* never quote a secret */
  ASSERT_EQ(s3_config_check_prop("endpoint", "{{bucket}}.s3.{{region}}.amazonaws.com", err,
                                 sizeof(err)), 0);
  ASSERT_EQ(s3_config_check_prop("endpoint", "a/b", err, sizeof(err)), CORE_ECONFIG);
  ASSERT_EQ(s3_config_check_prop("endpoint", "{{evil}}", err, sizeof(err)), CORE_ECONFIG);
  ASSERT_EQ(s3_config_check_prop("fingerprint",
                                 "AB:CD:EF:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:"
                                 "ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89",
                                 err, sizeof(err)), 0);
  ASSERT_EQ(s3_config_check_prop("fingerprint", "abcd", err, sizeof(err)), CORE_ECONFIG);
  ASSERT_EQ(s3_config_check_prop("provider-quirks", "skip-if-none-match-header", err,
                                 sizeof(err)), 0);
  ASSERT_EQ(s3_config_check_prop("provider-quirks", "make-it-fast", err, sizeof(err)),
            CORE_ECONFIG);
  ASSERT_EQ(s3_config_check_prop("use-tls", "maybe", err, sizeof(err)), CORE_ECONFIG);
  ASSERT_EQ(s3_config_check_prop("bucket", "x", err, sizeof(err)), CORE_ECONFIG);
  ASSERT_EQ(s3_config_check_id("ab"), CORE_ENAME);
  ASSERT_EQ(s3_config_check_id("-ab"), CORE_ENAME);
  ASSERT_EQ(s3_config_check_id("a/bc"), CORE_ENAME);
  ASSERT_EQ(s3_config_check_id("rgw_1.x-y"), 0);
  q.id = "../x";
  q.set = no_secret;
  ASSERT_EQ(s3_config_create(&q), CORE_ENAME);
}

UNIT_TEST(update_digest_and_generation)
{
  const char *dir = unit_tmpdir();
  char run[512];
  snprintf(run, sizeof(run), "%s/run", dir);
  struct core_shmem shmem;
  ASSERT_EQ(core_shmem_open(&shmem, run), 0);
  uint64_t g0 = core_shmem_gen_load(&shmem, CORE_GEN_S3);
  ASSERT_EQ(create_rgw(dir, &shmem), 0);
  ASSERT_EQ(core_shmem_gen_load(&shmem, CORE_GEN_S3), g0 + 1);
  ASSERT_EQ(create_rgw(dir, &shmem), CORE_EEXISTS);

  struct core_config cfg;
  char digest[CORE_CONFIG_DIGEST_LEN], err[256];
  ASSERT_EQ(s3_config_load(dir, &cfg, digest, err, sizeof(err)), 0);
  core_config_free(&cfg);

  struct core_kv kv[] = {{"region", "eu-central-1"}, {"secret-key", "new-secret-value"}};
  struct s3_config_req q = {0};
  q.config_dir = dir;
  q.shmem = &shmem;
  q.id = "rgw1";
  q.set = kv;
  q.nset = 2;
  q.digest = "0000000000000000000000000000000000000000000000000000000000000000";
  ASSERT_EQ(s3_config_update(&q), CORE_ESTALE);
  q.digest = digest;
  ASSERT_EQ(s3_config_update(&q), 0);
  ASSERT_EQ(core_shmem_gen_load(&shmem, CORE_GEN_S3), g0 + 2);

  struct s3_endpoint ep;
  ASSERT_EQ(s3_config_load_endpoint(dir, "rgw1", &ep, err, sizeof(err)), 0);
  ASSERT_STR_EQ(ep.region, "eu-central-1");
  ASSERT_STR_EQ(ep.secret_key, "new-secret-value");
  s3_endpoint_free(&ep);

  const char *del[] = {"region"};
  const char *del_bad[] = {"access-key"};
  memset(&q, 0, sizeof(q));
  q.config_dir = dir;
  q.id = "rgw1";
  q.del = del_bad;
  q.ndel = 1;
  ASSERT_EQ(s3_config_update(&q), CORE_ECONFIG);
  q.del = del;
  ASSERT_EQ(s3_config_update(&q), 0);
  ASSERT_EQ(s3_config_load_endpoint(dir, "rgw1", &ep, err, sizeof(err)), 0);
  ASSERT(ep.region == NULL);
  s3_endpoint_free(&ep);
  q.id = "other";
  ASSERT_EQ(s3_config_update(&q), CORE_ENOTFOUND);
  core_shmem_close(&shmem);
}

UNIT_TEST(remove_refused_while_used)
{
  const char *dir = unit_tmpdir();
  ASSERT_EQ(create_rgw(dir, NULL), 0);
  char path[512];
  snprintf(path, sizeof(path), "%s/datastore.cfg", dir);
  FILE *f = fopen(path, "w");
  ASSERT(f != NULL);
  fprintf(f, "datastore: s3store\n\tpath /tmp/x\n\tbackend type=s3,client=rgw1,bucket=b1\n");
  fclose(f);
  struct s3_config_req q = {0};
  q.config_dir = dir;
  q.id = "rgw1";
  ASSERT_EQ(s3_config_remove(&q), CORE_EEXISTS);
  ASSERT(strstr(q.err, "s3store") != NULL);
  unlink(path);
  ASSERT_EQ(s3_config_remove(&q), 0);
  snprintf(path, sizeof(path), "%s/s3-secrets.cfg", dir);
  ASSERT(strstr(slurp(path), SECRET) == NULL);
  struct s3_endpoint ep;
  char err[256];
  ASSERT_EQ(s3_config_load_endpoint(dir, "rgw1", &ep, err, sizeof(err)), CORE_ENOTFOUND);
  ASSERT_EQ(s3_config_remove(&q), CORE_ENOTFOUND);
}

UNIT_TEST(stray_secret_in_cfg_is_ignored)
{
  const char *dir = unit_tmpdir();
  char path[512];
  snprintf(path, sizeof(path), "%s/s3.cfg", dir);
  FILE *f = fopen(path, "w");
  ASSERT(f != NULL);
  fprintf(f, "s3-endpoint: hand\n\tendpoint h.example\n\taccess-key AK\n\tsecret-key oops\n");
  fclose(f);
  struct core_config cfg;
  char err[256];
  ASSERT_EQ(s3_config_load(dir, &cfg, NULL, err, sizeof(err)), 0);
  struct s3_endpoint ep;
  ASSERT_EQ(s3_config_parse_section(cfg.sections[0], NULL, &ep, err, sizeof(err)), 0);
  ASSERT(ep.secret_key == NULL);
  s3_endpoint_free(&ep);
  core_config_free(&cfg);
  /* Without its secrets-file entry the endpoint is not usable. */
  ASSERT_EQ(s3_config_load_endpoint(dir, "hand", &ep, err, sizeof(err)), CORE_ENOTFOUND);
}

UNIT_MAIN(UNIT_CASE(create_keeps_secret_apart), UNIT_CASE(create_requires_and_validates),
          UNIT_CASE(update_digest_and_generation), UNIT_CASE(remove_refused_while_used),
          UNIT_CASE(stray_secret_in_cfg_is_ignored))
