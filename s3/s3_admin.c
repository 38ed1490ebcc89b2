#include "s3/s3_admin.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "s3/s3_config.h"
#include "s3/s3_sync.h"
#include "s3/s3_url.h"

#include <string.h>

#define MAX_KV 16

void s3_admin_usage(FILE *f)
{
  fprintf(f,
          "  s3 endpoint list\n"
          "  s3 endpoint create ID --endpoint HOST --access-key KEY --secret-key SECRET|-\n"
          "                     [--port N] [--region R] [--path-style BOOL] [--use-tls BOOL]\n"
          "                     [--fingerprint SHA256] [--provider-quirks LIST]\n"
          "  s3 endpoint update ID [--KEY VALUE]... [--delete KEY]...\n"
          "  s3 endpoint remove ID\n"
          "  s3 check ID BUCKET             can this endpoint reach the bucket? says why not\n");
}

static int list(const char *config_dir)
{
  struct core_config cfg;
  char err[CORE_CONFIG_ERR_LEN] = "";
  int rc = s3_config_load(config_dir, &cfg, NULL, err, sizeof(err));
  if (rc < 0) {
    fprintf(stderr, "cairn-admin: %s: %s %s\n", S3_CONFIG_FILE, core_strerror(rc), err);
    core_config_free(&cfg);
    return 1;
  }
  printf("%-24s %-32s %-6s %-12s %s\n", "ID", "ENDPOINT", "PORT", "REGION", "OPTIONS");
  for (size_t i = 0; i < cfg.nsections; i++) {
    const struct core_config_section *sec = cfg.sections[i];
    if (strcmp(sec->type, S3_SECTION_TYPE) != 0)
      continue;
    const char *ep = core_config_get(sec, "endpoint"), *port = core_config_get(sec, "port");
    const char *region = core_config_get(sec, "region");
    const char *ps = core_config_get(sec, "path-style"), *tls = core_config_get(sec, "use-tls");
    printf("%-24s %-32s %-6s %-12s%s%s%s%s\n", sec->name, ep ? ep : "-", port ? port : "-",
           region ? region : "-", ps ? " path-style=" : "", ps ? ps : "",
           tls ? " use-tls=" : "", tls ? tls : "");
  }
  core_config_free(&cfg);
  return 0;
}

/* Reads one line from stdin into `buf` (the secret, for `--secret-key -`). */
static int read_secret(char *buf, size_t len)
{
  if (fgets(buf, (int)len, stdin) == NULL)
    return -1;
  buf[strcspn(buf, "\r\n")] = '\0';
  return 0;
}

static int change(const char *config_dir, struct core_shmem *shmem, const char *cmd, int argc,
                  char **argv)
{
  struct core_kv kv[MAX_KV];
  const char *del[MAX_KV];
  size_t nkv = 0, ndel = 0;
  char secret[S3_SECRET_MAX + 2];
  struct s3_config_req q;
  memset(&q, 0, sizeof(q));
  q.config_dir = config_dir;
  q.shmem = shmem;
  if (argc < 1) {
    s3_admin_usage(stderr);
    return 2;
  }
  q.id = argv[0];
  for (int i = 1; i < argc; i++) {
    if (strncmp(argv[i], "--", 2) != 0 || i + 1 >= argc || nkv == MAX_KV || ndel == MAX_KV) {
      fprintf(stderr, "cairn-admin: expected --KEY VALUE, got '%s'\n", argv[i]);
      return 2;
    }
    const char *key = argv[i] + 2, *value = argv[++i];
    if (!strcmp(key, "delete")) {
      del[ndel++] = value;
      continue;
    }
    if (!strcmp(key, "secret-key") && !strcmp(value, "-")) {
      if (read_secret(secret, sizeof(secret)) < 0) {
        fprintf(stderr, "cairn-admin: no secret key on standard input\n");
        return 1;
      }
      value = secret;
    }
    kv[nkv].key = key;
    kv[nkv].value = value;
    nkv++;
  }
  q.set = kv;
  q.nset = nkv;
  q.del = del;
  q.ndel = ndel;
  int rc;
  if (!strcmp(cmd, "create") && ndel == 0) {
    rc = s3_config_create(&q);
  } else if (!strcmp(cmd, "update")) {
    rc = s3_config_update(&q);
  } else if (!strcmp(cmd, "remove") && argc == 1) {
    rc = s3_config_remove(&q);
  } else {
    s3_admin_usage(stderr);
    return 2;
  }
  memset(secret, 0, sizeof(secret));
  if (rc < 0) {
    fprintf(stderr, "cairn-admin: %s\n", q.err[0] ? q.err : core_strerror(rc));
    return 1;
  }
  return 0;
}

static int check(const char *config_dir, const char *id, const char *bucket)
{
  struct s3_endpoint ep;
  struct s3_client_config cfg;
  struct s3_sync s;
  struct s3_check chk;
  char err[256] = "";
  if (s3_url_check_bucket(bucket) < 0) {
    fprintf(stderr, "cairn-admin: invalid bucket name '%s'\n", bucket);
    return 2;
  }
  int rc = s3_config_load_endpoint(config_dir, id, &ep, err, sizeof(err));
  if (rc < 0) {
    fprintf(stderr, "cairn-admin: %s\n", err[0] ? err : core_strerror(rc));
    return 1;
  }
  s3_endpoint_client_config(&ep, &cfg);
  cfg.max_attempts = 2;
  cfg.connect_timeout_ms = 5000;
  cfg.request_timeout_ms = 5000;
  rc = s3_sync_open(&s, &cfg, bucket);
  if (rc == 0) {
    s3_sync_check(&s, &chk);
    if (chk.status == S3_CHECK_OK)
      printf("ok: %s\n", chk.message);
    else
      fprintf(stderr, "cairn-admin: %s: %s\n", chk.what, chk.message);
  } else {
    fprintf(stderr, "cairn-admin: cannot set up a client: %s\n", core_strerror(rc));
  }
  s3_sync_close(&s);
  s3_endpoint_free(&ep);
  return rc == 0 && chk.status == S3_CHECK_OK ? 0 : 1;
}

int s3_admin_main(const char *config_dir, struct core_shmem *shmem, int argc, char **argv)
{
  if (argc >= 3 && !strcmp(argv[1], "endpoint") && !strcmp(argv[2], "list"))
    return list(config_dir);
  if (argc >= 3 && !strcmp(argv[1], "endpoint"))
    return change(config_dir, shmem, argv[2], argc - 3, argv + 3);
  if (argc == 4 && !strcmp(argv[1], "check"))
    return check(config_dir, argv[2], argv[3]);
  s3_admin_usage(stderr);
  return 2;
}
