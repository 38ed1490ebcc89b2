/* sync_admin.c: the `remote`, `sync-job`, `pull` and `push` commands of
 * cairn-admin (PBS's proxmox-backup-manager shapes).
 *
 * Config edits work on the files directly, as the other cairn-admin
 * commands do (locked, atomic, generation bump). Running something needs
 * the server: `sync-job run`, `pull` and `push` call the local cairnd's
 * API with the root token (<config-dir>/root.token), pinning the
 * certificate in <config-dir>/proxy.pem, and follow the task log until the
 * task ends (exit 0 for OK or warnings, 1 otherwise). Passwords never come
 * from the command line: --password-file FILE, or - for standard input.
 */
#include "sync/sync.h"

#include "access/access.h"
#include "client/client_api.h"
#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_json.h"

#include <mbedtls/x509_crt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_KV 32
#define SECRET_MAX 1024

void sync_admin_usage(FILE *f)
{
  fprintf(f,
          "  remote list\n"
          "  remote create NAME --host H [--port P] --auth-id ID --password-file FILE|-\n"
          "                     [--fingerprint FP] [--comment C]\n"
          "  remote update NAME [--KEY VALUE]... [--delete KEY]... [--password-file FILE|-]\n"
          "  remote remove NAME\n"
          "  sync-job list\n"
          "  sync-job create ID --store S --remote-store RS [--remote R] [--KEY VALUE]...\n"
          "  sync-job update ID [--KEY VALUE]... [--delete KEY]...\n"
          "  sync-job remove ID\n"
          "  sync-job run ID [--server HOST:PORT]\n"
          "  pull --store S --remote-store RS [--remote R] [--KEY VALUE]... [--server HOST:PORT]\n"
          "  push --store S --remote R --remote-store RS [--KEY VALUE]... [--server HOST:PORT]\n"
          "                     run, pull and push need the running server and follow the\n"
          "                     task log; sync-job keys are those of sync.cfg\n");
}

struct opts {
  struct core_kv kv[MAX_KV];
  size_t nkv;
  const char *del[MAX_KV];
  size_t ndel;
  const char *password_file;
  const char *server;
};

static int parse_opts(int argc, char **argv, struct opts *o)
{
  memset(o, 0, sizeof(*o));
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "--", 2) != 0 || i + 1 >= argc) {
      fprintf(stderr, "cairn-admin: unexpected argument '%s'\n", a);
      return -1;
    }
    const char *v = argv[++i];
    if (!strcmp(a, "--password-file"))
      o->password_file = v;
    else if (!strcmp(a, "--server"))
      o->server = v;
    else if (!strcmp(a, "--delete") && o->ndel < MAX_KV)
      o->del[o->ndel++] = v;
    else if (!strcmp(a, "--password")) {
      fprintf(stderr, "cairn-admin: use --password-file (a command line is readable by "
                      "every user)\n");
      return -1;
    } else if (o->nkv < MAX_KV) {
      o->kv[o->nkv].key = a + 2;
      o->kv[o->nkv++].value = v;
    } else {
      return -1;
    }
  }
  return 0;
}

static const char *prop(const struct core_config_section *s, const char *k, const char *dflt)
{
  const char *v = core_config_get(s, k);
  return v ? v : dflt;
}

static int list(const char *config_dir, int remote)
{
  struct core_config cfg;
  char err[256];
  int rc = sync_cfg_load(config_dir, remote, &cfg, NULL, err, sizeof(err));
  if (rc < 0) {
    fprintf(stderr, "cairn-admin: %s\n", err[0] ? err : core_strerror(rc));
    core_config_free(&cfg);
    return 1;
  }
  if (remote)
    printf("%-20s %-30s %-6s %-30s %s\n", "NAME", "HOST", "PORT", "AUTH-ID", "FINGERPRINT");
  else
    printf("%-20s %-5s %-12s %-12s %-12s %-12s %s\n", "ID", "DIR", "STORE", "NS", "REMOTE",
           "REMOTE-STORE", "SCHEDULE");
  for (size_t i = 0; i < cfg.nsections; i++) {
    const struct core_config_section *s = cfg.sections[i];
    if (remote && !strcmp(s->type, "remote"))
      printf("%-20s %-30s %-6s %-30s %s\n", s->name, prop(s, "host", ""), prop(s, "port", "8007"),
             prop(s, "auth-id", ""), prop(s, "fingerprint", "-"));
    else if (!remote && !strcmp(s->type, "sync"))
      printf("%-20s %-5s %-12s %-12s %-12s %-12s %s\n", s->name,
             prop(s, "sync-direction", "pull"), prop(s, "store", ""), prop(s, "ns", "-"),
             prop(s, "remote", "(local)"), prop(s, "remote-store", ""),
             prop(s, "schedule", "-"));
  }
  core_config_free(&cfg);
  return 0;
}

static int edit(const char *config_dir, struct core_shmem *shmem, int remote,
                enum sync_edit_op op, const char *name, struct opts *o)
{
  char secret[SECRET_MAX];
  if (o->password_file) {
    if (!remote) {
      fprintf(stderr, "cairn-admin: --password-file is for remotes\n");
      return 2;
    }
    if (access_admin_read_password(o->password_file, secret, sizeof(secret)) < 0 ||
        o->nkv >= MAX_KV)
      return 1;
    o->kv[o->nkv].key = "password";
    o->kv[o->nkv++].value = secret;
  }
  struct sync_edit e = {
    .config_dir = config_dir, .shmem = shmem, .remote = remote, .op = op, .name = name,
    .set = o->kv, .nset = o->nkv, .del = o->del, .ndel = o->ndel};
  int rc = sync_edit_apply(&e);
  explicit_bzero(secret, sizeof(secret));
  if (rc < 0) {
    fprintf(stderr, "cairn-admin: %s\n", e.err[0] ? e.err : core_strerror(rc));
    return 1;
  }
  return 0;
}

/* ---- talking to the local server ---- */

static int cert_fingerprint(const char *config_dir, char out[3 * 32])
{
  char *path = core_asprintf("%s/proxy.pem", config_dir);
  mbedtls_x509_crt crt;
  mbedtls_x509_crt_init(&crt);
  int rc = mbedtls_x509_crt_parse_file(&crt, path);
  core_free(path);
  if (rc != 0) {
    mbedtls_x509_crt_free(&crt);
    return CORE_ECERT;
  }
  uint8_t d[32];
  core_sha256(crt.raw.p, crt.raw.len, d);
  mbedtls_x509_crt_free(&crt);
  for (int i = 0; i < 32; i++)
    snprintf(out + 3 * i, 4, "%02x%s", d[i], i < 31 ? ":" : "");
  return 0;
}

static struct client_api *connect_server(const char *config_dir, const char *server)
{
  char *tokpath = core_asprintf("%s/root.token", config_dir);
  uint8_t *tok = NULL;
  size_t toklen = 0;
  int rc = core_file_read(tokpath, 4096, &tok, &toklen);
  core_free(tokpath);
  if (rc < 0) {
    fprintf(stderr, "cairn-admin: cannot read %s/root.token: %s\n", config_dir,
            core_strerror(rc));
    return NULL;
  }
  char text[4097];
  memcpy(text, tok, toklen);
  text[toklen] = '\0';
  core_free(tok);
  text[strcspn(text, "\r\n")] = '\0';
  char *colon = strchr(text, ':');
  if (colon == NULL) {
    fprintf(stderr, "cairn-admin: root.token is malformed\n");
    return NULL;
  }
  *colon = '\0';
  char hostport[300];
  snprintf(hostport, sizeof(hostport), "%s", server ? server : "127.0.0.1:8007");
  char *pc = strrchr(hostport, ':');
  int port = 8007;
  if (pc) {
    *pc = '\0';
    port = (int)strtol(pc + 1, NULL, 10);
  }
  struct client_repo repo = {.authid = text, .host = hostport, .port = port, .store = "-"};
  char fp[3 * 32];
  const char *plain = getenv("CAIRN_SYNC_PLAIN_HTTP");
  int is_plain = plain && !strcmp(plain, "1");
  if (!is_plain && cert_fingerprint(config_dir, fp) < 0) {
    fprintf(stderr, "cairn-admin: cannot read %s/proxy.pem\n", config_dir);
    explicit_bzero(text, sizeof(text));
    return NULL;
  }
  struct client_api_config cfg = {
    .repo = &repo, .secret = colon + 1, .fingerprint = is_plain ? NULL : fp,
    .plain_http = is_plain, .max_conns = 1};
  struct client_api *api = NULL;
  char err[512];
  rc = client_api_new(&cfg, &api, err, sizeof(err));
  explicit_bzero(text, sizeof(text));
  if (rc < 0) {
    fprintf(stderr, "cairn-admin: cannot reach the server at %s:%d: %s\n", hostport, port,
            err[0] ? err : core_strerror(rc));
    return NULL;
  }
  return api;
}

/* Prints the task's log as it grows; returns the exit status. */
static int follow(struct client_api *api, const char *upid)
{
  struct core_buf enc;
  core_buf_init(&enc, 4096);
  client_query_add(&enc, "x", upid);
  const char *q = enc.base + 3; /* "?x=" */
  uint64_t seen = 0;
  int status = 1;
  /* Short syncs (nothing new: manifests only) end in tens of milliseconds;
   * a fixed 300 ms poll would be most of their wall time. Start at 10 ms
   * and back off to 300 ms, so a long sync still costs ~7 requests a second. */
  long wait_ns = 10000000L;
  for (;;) {
    char target[1024], err[512];
    snprintf(target, sizeof(target), "/api2/json/nodes/localhost/tasks/%s/log?start=%llu", q,
             (unsigned long long)seen);
    yajl_val tree, data;
    if (client_api_json(api, "GET", target, NULL, 0, NULL, &tree, &data, err, sizeof(err)) < 0) {
      fprintf(stderr, "cairn-admin: %s\n", err);
      break;
    }
    for (size_t i = 0; YAJL_IS_ARRAY(data) && i < data->u.array.len; i++) {
      const char *t = core_json_get_str(data->u.array.values[i], "t");
      if (t)
        printf("%s\n", t);
      seen++;
    }
    fflush(stdout);
    yajl_tree_free(tree);
    snprintf(target, sizeof(target), "/api2/json/nodes/localhost/tasks/%s/status", q);
    if (client_api_json(api, "GET", target, NULL, 0, NULL, &tree, &data, err, sizeof(err)) < 0) {
      fprintf(stderr, "cairn-admin: %s\n", err);
      break;
    }
    const char *st = core_json_get_str(data, "status");
    const char *ex = core_json_get_str(data, "exitstatus");
    int stopped = st && !strcmp(st, "stopped");
    if (stopped)
      status = ex && (!strcmp(ex, "OK") || !strncmp(ex, "WARNINGS", 8)) ? 0 : 1;
    yajl_tree_free(tree);
    if (stopped) {
      /* The last lines were written before the state changed: one more read. */
      snprintf(target, sizeof(target), "/api2/json/nodes/localhost/tasks/%s/log?start=%llu", q,
               (unsigned long long)seen);
      if (client_api_json(api, "GET", target, NULL, 0, NULL, &tree, &data, err,
                          sizeof(err)) == 0) {
        for (size_t i = 0; YAJL_IS_ARRAY(data) && i < data->u.array.len; i++) {
          const char *t = core_json_get_str(data->u.array.values[i], "t");
          if (t)
            printf("%s\n", t);
        }
        yajl_tree_free(tree);
      }
      break;
    }
    struct timespec ts = {0, wait_ns};
    nanosleep(&ts, NULL);
    wait_ns = wait_ns * 2 > 300000000L ? 300000000L : wait_ns * 2;
  }
  core_buf_free(&enc);
  return status;
}

static int start_and_follow(const char *config_dir, const char *server, const char *target)
{
  struct client_api *api = connect_server(config_dir, server);
  if (api == NULL)
    return 1;
  yajl_val tree, data;
  char err[512];
  int status = 1;
  if (client_api_json(api, "POST", target, NULL, 0, NULL, &tree, &data, err, sizeof(err)) < 0) {
    fprintf(stderr, "cairn-admin: %s\n", err);
  } else {
    if (YAJL_IS_STRING(data)) {
      char *upid = core_strdup(data->u.string);
      printf("task %s\n", upid);
      status = follow(api, upid);
      core_free(upid);
    } else {
      fprintf(stderr, "cairn-admin: the server answered no task id\n");
    }
    yajl_tree_free(tree);
  }
  client_api_free(api);
  return status;
}

static int run_oneoff(const char *config_dir, const char *what, struct opts *o)
{
  struct core_buf t;
  core_buf_init(&t, 16384);
  core_buf_printf(&t, "/api2/json/%s", what);
  for (size_t i = 0; i < o->nkv; i++) {
    char err[256];
    if (strcmp(o->kv[i].key, "remote") &&
        sync_job_check_prop(o->kv[i].key, o->kv[i].value, err, sizeof(err)) < 0) {
      fprintf(stderr, "cairn-admin: %s\n", err);
      core_buf_free(&t);
      return 2;
    }
    client_query_add(&t, o->kv[i].key, o->kv[i].value);
  }
  int st = start_and_follow(config_dir, o->server, t.base);
  core_buf_free(&t);
  return st;
}

int sync_admin_main(const char *config_dir, struct core_shmem *shmem, int argc, char **argv)
{
  if (argc < 1)
    return 2;
  const char *noun = argv[0];
  struct opts o;
  if (!strcmp(noun, "pull") || !strcmp(noun, "push")) {
    if (parse_opts(argc - 1, argv + 1, &o) < 0)
      return 2;
    return run_oneoff(config_dir, noun, &o);
  }
  int remote = !strcmp(noun, "remote");
  if ((!remote && strcmp(noun, "sync-job")) || argc < 2)
    return 2;
  const char *verb = argv[1];
  if (!strcmp(verb, "list"))
    return argc == 2 ? list(config_dir, remote) : 2;
  if (argc < 3 || parse_opts(argc - 3, argv + 3, &o) < 0)
    return 2;
  const char *name = argv[2];
  if (!strcmp(verb, "create"))
    return edit(config_dir, shmem, remote, SYNC_EDIT_CREATE, name, &o);
  if (!strcmp(verb, "update"))
    return edit(config_dir, shmem, remote, SYNC_EDIT_UPDATE, name, &o);
  if (!strcmp(verb, "remove"))
    return o.nkv || o.ndel ? 2 : edit(config_dir, shmem, remote, SYNC_EDIT_REMOVE, name, &o);
  if (!remote && !strcmp(verb, "run")) {
    if (!sync_id_valid(name))
      return 2;
    char target[200];
    snprintf(target, sizeof(target), "/api2/json/admin/sync/%s/run", name);
    return start_and_follow(config_dir, o.server, target);
  }
  return 2;
}
