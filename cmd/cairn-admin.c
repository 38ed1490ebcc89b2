/* cairn-admin: offline administration, in the form of PBS's
 * proxmox-backup-manager. It edits the config directory directly (under the
 * same lock files as cairnd) and bumps the shared generation, so a running
 * cairnd sees every change on its next request.
 */
#include "access/access.h"
#include "core/core_alloc.h"
#include "core/core_config.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_parse.h"
#include "core/core_shmem.h"
#include "s3/s3_admin.h"
#include "s3/s3_config.h"
#include "s3/s3_sync.h"
#include "store/store_check.h"
#include "store/store_chunk.h"
#include "store/store_dsconfig.h"
#include "store/store_lock.h"
#include "store/store_move.h"
#include "store/store_s3.h"
#include "sync/sync.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_KV 32

struct admin {
  const char *config_dir;
  const char *run_dir;
  struct core_shmem shmem;
  int have_shmem;
};

static void usage(FILE *f)
{
  fprintf(f,
          "usage: cairn-admin [--config-dir DIR] [--run-dir DIR] COMMAND\n"
          "\n"
          "commands:\n"
          "  datastore list\n"
          "  datastore create NAME PATH [--KEY VALUE]... [--reuse-datastore true]\n"
          "  datastore update NAME [--KEY VALUE]... [--delete KEY]...\n"
          "  datastore remove NAME\n"
          "  datastore fill-layout NAME   create all 65,536 chunk prefix directories\n"
          "                               (PBS's layout; Cairn creates them on first use)\n"
          "  datastore check NAME [--verify-chunks] [--cache-only]\n"
          "                               read-only consistency check (also while cairnd\n"
          "                               runs; S3: the bucket too, unless --cache-only);\n"
          "                               exit 0 clean, 1 problems, 2 cannot check\n"
          "  group move STORE TYPE/ID --target-ns NS [--ns NS] [--merge-group BOOL]\n"
          "  namespace move STORE NS --target-ns NS [--max-depth N] [--delete-source BOOL]\n"
          "                 [--merge-groups BOOL]\n"
          "                               move a group or a namespace tree (local and S3\n"
          "                               datastores; the same locks as a running cairnd:\n"
          "                               exit 1 if something is busy or was not moved)\n");
  s3_admin_usage(f);
  access_admin_usage(f);
  sync_admin_usage(f);
  fprintf(f,
          "\n"
          "KEY is a datastore property: comment, gc-schedule, prune-schedule,\n"
          "keep-last .. keep-yearly, tuning, maintenance-mode, verify-new, ...\n"
          "Defaults: --config-dir /etc/cairn (CAIRN_CONFIG_DIR),\n"
          "          --run-dir /run/cairn (CAIRN_RUN_DIR).\n");
}

static int ds_list(struct admin *a)
{
  char *path = core_asprintf("%s/datastore.cfg", a->config_dir);
  struct core_config cfg;
  char err[CORE_CONFIG_ERR_LEN] = "";
  core_config_init(&cfg);
  int rc = core_config_load(path, &cfg, NULL, err, sizeof(err));
  if (rc < 0) {
    fprintf(stderr, "cairn-admin: %s: %s %s\n", path, core_strerror(rc), err);
    goto out;
  }
  printf("%-32s %s\n", "NAME", "PATH");
  for (size_t i = 0; i < cfg.nsections; i++) {
    const struct core_config_section *sec = cfg.sections[i];
    if (strcmp(sec->type, "datastore") != 0)
      continue;
    const char *p = core_config_get(sec, "path");
    const char *m = core_config_get(sec, "maintenance-mode");
    printf("%-32s %s%s%s\n", sec->name, p ? p : "-", m ? "  maintenance: " : "", m ? m : "");
  }
out:
  core_config_free(&cfg);
  core_free(path);
  return rc < 0 ? 1 : 0;
}

/* Collects --KEY VALUE and --delete KEY pairs. */
static int collect(int argc, char **argv, struct core_kv *kv, size_t *nkv,
                   const char **del, size_t *ndel)
{
  for (int i = 0; i < argc; i++) {
    if (strncmp(argv[i], "--", 2) != 0 || i + 1 >= argc) {
      fprintf(stderr, "cairn-admin: expected --KEY VALUE, got '%s'\n", argv[i]);
      return -1;
    }
    const char *key = argv[i] + 2, *value = argv[++i];
    if (!strcmp(key, "delete")) {
      if (*ndel == MAX_KV)
        return -1;
      del[(*ndel)++] = value;
      continue;
    }
    if (*nkv == MAX_KV)
      return -1;
    kv[*nkv].key = key;
    kv[*nkv].value = value;
    (*nkv)++;
  }
  return 0;
}

static void fill_progress(void *arg, unsigned done, unsigned total)
{
  fprintf(stderr, "\rcairn-admin: %u/%u prefix directories", done, total);
  if (done == total)
    fputc('\n', stderr);
}

static int ds_fill_layout(struct admin *a, const char *name)
{
  char *path = core_asprintf("%s/datastore.cfg", a->config_dir);
  struct core_config cfg;
  char err[CORE_CONFIG_ERR_LEN] = "";
  core_config_init(&cfg);
  int rc = core_config_load(path, &cfg, NULL, err, sizeof(err));
  const struct core_config_section *sec =
      rc == 0 ? core_config_find(&cfg, "datastore", name) : NULL;
  const char *base = sec ? core_config_get(sec, "path") : NULL;
  if (base == NULL) {
    fprintf(stderr, "cairn-admin: no datastore '%s' %s\n", name, err);
    rc = 1;
  } else {
    rc = store_chunk_fill_layout(base, fill_progress, NULL);
    if (rc < 0)
      fprintf(stderr, "cairn-admin: %s: %s\n", base, core_strerror(rc));
  }
  core_config_free(&cfg);
  core_free(path);
  return rc ? 1 : 0;
}

static void check_report(void *arg, int problem, const char *msg)
{
  (void)arg;
  printf("%s: %s\n", problem ? "problem" : "note", msg);
}

/* S3 datastores: a blocking client for the datastore's bucket and the
 * listing of its keys. 0, or -1 after saying why on stderr. */
static int open_bucket(struct admin *a, const char *name, const char *backend,
                       struct s3_sync *sync, int *sync_open, struct store_check_bucket **out)
{
  struct store_backend_cfg bc;
  struct s3_endpoint ep;
  struct s3_client_config cfg;
  char err[256] = "";
  int rc = store_backend_parse(backend, &bc, err, sizeof(err));
  if (rc < 0) {
    fprintf(stderr, "cairn-admin: datastore '%s': %s\n", name, err);
    return -1;
  }
  if (bc.type != STORE_BACKEND_S3)
    return 0;
  rc = s3_config_load_endpoint(a->config_dir, bc.client, &ep, err, sizeof(err));
  if (rc < 0) {
    fprintf(stderr, "cairn-admin: datastore '%s': S3 endpoint '%s': %s\n", name, bc.client,
            err[0] ? err : core_strerror(rc));
    return -1;
  }
  s3_endpoint_client_config(&ep, &cfg);
  cfg.max_attempts = 3;
  cfg.connect_timeout_ms = 10000;
  cfg.request_timeout_ms = 30000;
  rc = s3_sync_open(sync, &cfg, bc.bucket);
  *sync_open = 1; /* closed by the caller in any case */
  s3_endpoint_free(&ep);
  if (rc < 0) {
    fprintf(stderr, "cairn-admin: cannot set up an S3 client: %s\n", core_strerror(rc));
    return -1;
  }
  rc = store_check_bucket_list(sync, name, out, err, sizeof(err));
  if (rc < 0) {
    fprintf(stderr, "cairn-admin: bucket %s: %s (--cache-only checks the local cache "
                    "alone)\n", bc.bucket, err[0] ? err : core_strerror(rc));
    return -1;
  }
  return 0;
}

/* `datastore check NAME [--verify-chunks] [--cache-only]`: exit 0
 * consistent, 1 problems found, 2 usage or the datastore cannot be checked. */
static int ds_check(struct admin *a, int argc, char **argv)
{
  struct store_check_opts o;
  struct s3_sync sync;
  int sync_open = 0, cache_only = 0;
  memset(&o, 0, sizeof(o));
  if (argc < 1 || argc > 3) {
    usage(stderr);
    return 2;
  }
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--verify-chunks")) {
      o.flags |= STORE_CHECK_VERIFY_CHUNKS;
    } else if (!strcmp(argv[i], "--cache-only")) {
      cache_only = 1;
    } else {
      usage(stderr);
      return 2;
    }
  }
  const char *name = argv[0];
  char *path = core_asprintf("%s/datastore.cfg", a->config_dir);
  struct core_config cfg;
  char err[CORE_CONFIG_ERR_LEN] = "";
  char lockdir[1024];
  struct stat sb;
  int status = 2;
  core_config_init(&cfg);
  int rc = core_config_load(path, &cfg, NULL, err, sizeof(err));
  const struct core_config_section *sec =
      rc == 0 ? core_config_find(&cfg, "datastore", name) : NULL;
  o.base = sec ? core_config_get(sec, "path") : NULL;
  if (o.base == NULL) {
    fprintf(stderr, "cairn-admin: no datastore '%s' %s\n", name, err);
    goto out;
  }
  const char *backend = core_config_get(sec, "backend");
  if (backend != NULL) {
    o.flags |= STORE_CHECK_S3_CACHE;
    if (!cache_only && open_bucket(a, name, backend, &sync, &sync_open, &o.bucket) < 0)
      goto out;
  }
  o.run_dir = a->run_dir;
  /* Locks only where a server may run: never create a run directory. */
  if (stat(a->run_dir, &sb) == 0 && S_ISDIR(sb.st_mode) &&
      store_lock_dir(lockdir, sizeof(lockdir), a->run_dir, name) >= 0)
    o.lockdir = lockdir;
  o.report = check_report;
  struct store_check_stats st;
  rc = store_check(&o, &st);
  if (rc < 0) {
    fprintf(stderr, "cairn-admin: %s: %s\n", o.base, core_strerror(rc));
    goto out;
  }
  printf("datastore %s: %" PRIu64 " finished snapshot(s) checked, %" PRIu64
         " unfinished, %" PRIu64 " busy; %" PRIu64 " archive(s); %" PRIu64
         " chunk(s) referenced, %" PRIu64 " verified; %" PRIu64 " problem(s)\n",
         name, st.snapshots, st.unfinished, st.busy, st.archives, st.chunks,
         st.chunks_verified, st.problems);
  status = st.problems ? 1 : 0;
out:
  store_check_bucket_free(o.bucket);
  if (sync_open)
    s3_sync_close(&sync);
  core_config_free(&cfg);
  core_free(path);
  return status;
}

static int ds_change(struct admin *a, const char *cmd, int argc, char **argv)
{
  struct core_kv kv[MAX_KV + 1];
  const char *del[MAX_KV];
  size_t nkv = 0, ndel = 0;
  struct store_dsconfig_req q;
  memset(&q, 0, sizeof(q));
  q.config_dir = a->config_dir;
  q.run_dir = a->run_dir;
  q.shmem = a->have_shmem ? &a->shmem : NULL;
  int rc;
  if (!strcmp(cmd, "create")) {
    if (argc < 2) {
      usage(stderr);
      return 2;
    }
    q.name = argv[0];
    kv[nkv].key = "path";
    kv[nkv++].value = argv[1];
    if (collect(argc - 2, argv + 2, kv, &nkv, del, &ndel) < 0)
      return 2;
    /* --reuse-datastore is an instruction, not a stored property. */
    for (size_t i = 0; i < nkv; i++) {
      if (!strcmp(kv[i].key, "reuse-datastore")) {
        if (core_parse_bool(kv[i].value, &q.reuse) < 0) {
          fprintf(stderr, "cairn-admin: --reuse-datastore must be a boolean (1/0, "
                          "true/false, yes/no, on/off)\n");
          return 2;
        }
        kv[i] = kv[--nkv];
        break;
      }
    }
    q.set = kv;
    q.nset = nkv;
    rc = store_dsconfig_create(&q);
  } else if (!strcmp(cmd, "update")) {
    if (argc < 1) {
      usage(stderr);
      return 2;
    }
    q.name = argv[0];
    if (collect(argc - 1, argv + 1, kv, &nkv, del, &ndel) < 0)
      return 2;
    q.set = kv;
    q.nset = nkv;
    q.del = del;
    q.ndel = ndel;
    rc = store_dsconfig_update(&q);
  } else if (!strcmp(cmd, "remove")) {
    if (argc != 1) {
      usage(stderr);
      return 2;
    }
    q.name = argv[0];
    rc = store_dsconfig_remove(&q);
  } else {
    usage(stderr);
    return 2;
  }
  if (rc < 0) {
    fprintf(stderr, "cairn-admin: %s\n", q.err[0] ? q.err : core_strerror(rc));
    return 1;
  }
  return 0;
}

static void move_report(void *arg, int failed, const char *line)
{
  (void)arg;
  fprintf(failed ? stderr : stdout, "%s%s\n", failed ? "cairn-admin: " : "", line);
}

/* `group move` / `namespace move`: exit 0 done, 1 refused, busy or partly
 * failed, 2 usage. */
static int mv_main(struct admin *a, int ns_move, int argc, char **argv)
{
  const char *target = NULL, *ns = "", *merge = "true", *del = "true", *depth = NULL;
  if (argc < 3 || strcmp(argv[0], "move") != 0) {
    usage(stderr);
    return 2;
  }
  const char *store = argv[1], *what = argv[2];
  for (int i = 3; i < argc; i++) {
    if (i + 1 >= argc) {
      usage(stderr);
      return 2;
    }
    const char *k = argv[i], *v = argv[++i];
    if (!strcmp(k, "--target-ns"))
      target = v;
    else if (!strcmp(k, "--ns") && !ns_move)
      ns = v;
    else if ((!strcmp(k, "--merge-group") && !ns_move) || (!strcmp(k, "--merge-groups") && ns_move))
      merge = v;
    else if (!strcmp(k, "--delete-source") && ns_move)
      del = v;
    else if (!strcmp(k, "--max-depth") && ns_move)
      depth = v;
    else {
      usage(stderr);
      return 2;
    }
  }
  int merge_b, del_b, max_depth = -1;
  char type[16] = "";
  const char *id = NULL;
  if (target == NULL || core_parse_bool(merge, &merge_b) < 0 || core_parse_bool(del, &del_b) < 0 ||
      format_name_ns(target) < 0 || format_name_ns(ns) < 0) {
    fprintf(stderr, "cairn-admin: needs --target-ns NS; namespaces and booleans must be valid\n");
    return 2;
  }
  if (depth) {
    char *end;
    long d = strtol(depth, &end, 10);
    if (*depth == '\0' || *end || d < 0 || d > FORMAT_NAME_NS_MAX_DEPTH) {
      fprintf(stderr, "cairn-admin: --max-depth takes 0..%d\n", FORMAT_NAME_NS_MAX_DEPTH);
      return 2;
    }
    max_depth = (int)d;
  }
  if (!ns_move) {
    const char *slash = strchr(what, '/');
    if (slash == NULL || (size_t)(slash - what) >= sizeof(type)) {
      fprintf(stderr, "cairn-admin: the group is TYPE/ID\n");
      return 2;
    }
    memcpy(type, what, (size_t)(slash - what));
    type[slash - what] = '\0';
    id = slash + 1;
    if (format_name_backup_type(type) < 0 || format_name_backup_id(id) < 0) {
      fprintf(stderr, "cairn-admin: invalid group '%s'\n", what);
      return 2;
    }
  }
  char *path = core_asprintf("%s/datastore.cfg", a->config_dir);
  struct core_config cfg;
  char err[CORE_CONFIG_ERR_LEN] = "", lockdir[1024], msg[1024] = "";
  struct store_s3_fetcher *s3 = NULL;
  int status = 1;
  core_config_init(&cfg);
  int rc = core_config_load(path, &cfg, NULL, err, sizeof(err));
  const struct core_config_section *sec =
      rc == 0 ? core_config_find(&cfg, "datastore", store) : NULL;
  const char *base = sec ? core_config_get(sec, "path") : NULL;
  const char *maint = sec ? core_config_get(sec, "maintenance-mode") : NULL;
  if (base == NULL) {
    fprintf(stderr, "cairn-admin: no datastore '%s' %s\n", store, err);
    goto out;
  }
  const char *backend = core_config_get(sec, "backend");
  struct store_backend_cfg bcfg;
  if (backend && store_backend_parse(backend, &bcfg, msg, sizeof(msg)) < 0) {
    fprintf(stderr, "cairn-admin: datastore '%s': %s\n", store, msg);
    goto out;
  }
  if (maint && strncmp(maint, "type=", 5) == 0)
    maint += 5;
  if (maint && (!strncmp(maint, "read-only", 9) || !strncmp(maint, "offline", 7) ||
                !strncmp(maint, "delete", 6))) {
    fprintf(stderr, "cairn-admin: datastore '%s' is in maintenance mode '%s'\n", store, maint);
    goto out;
  }
  if (store_lock_dir(lockdir, sizeof(lockdir), a->run_dir, store) < 0) {
    fprintf(stderr, "cairn-admin: invalid datastore name '%s'\n", store);
    goto out;
  }
  /* S3: the same bucket work as the server's tasks, through a private
   * blocking client (a loop of its own, s3_sync.h). */
  if (backend && bcfg.type == STORE_BACKEND_S3 &&
      (rc = store_s3_fetcher_open_cfg(a->config_dir, store, &bcfg, &s3, msg, sizeof(msg))) < 0) {
    fprintf(stderr, "cairn-admin: %s\n", msg[0] ? msg : core_strerror(rc));
    goto out;
  }
  if (ns_move) {
    rc = store_move_ns_run(base, lockdir, what, target, max_depth, del_b, merge_b, s3,
                           move_report, NULL, msg, sizeof(msg));
    if (rc < 0)
      fprintf(stderr, "cairn-admin: %s\n", msg[0] ? msg : core_strerror(rc));
    else if (rc > 0)
      fprintf(stderr, "cairn-admin: %d group(s) not moved\n", rc);
    status = rc == 0 ? 0 : 1;
  } else {
    struct store_move_result res;
    if (s3) {
      /* Leftovers of interrupted moves first, as the move-group task does. */
      char why[256];
      store_move_s3_reconcile(s3, base, lockdir, why, sizeof(why));
    }
    rc = store_move_group(base, lockdir, ns, type, id, target, merge_b, 0, s3, &res);
    if (rc < 0) {
      fprintf(stderr, "cairn-admin: %s\n", res.msg[0] ? res.msg : core_strerror(rc));
    } else {
      printf("moved group %s from '%s' to '%s' (%zu snapshots%s)\n", what, ns[0] ? ns : "/",
             target[0] ? target : "/", res.snapshots, res.merged ? ", merged" : "");
      if (res.msg[0])
        printf("%s\n", res.msg);
      status = 0;
    }
  }
out:
  store_s3_fetcher_close(s3);
  core_config_free(&cfg);
  core_free(path);
  return status;
}

int main(int argc, char **argv)
{
  struct admin a;
  memset(&a, 0, sizeof(a));
  a.config_dir = getenv("CAIRN_CONFIG_DIR") ? getenv("CAIRN_CONFIG_DIR") : "/etc/cairn";
  a.run_dir = getenv("CAIRN_RUN_DIR") ? getenv("CAIRN_RUN_DIR") : "/run/cairn";
  int i = 1;
  for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
    if (!strcmp(argv[i], "--help")) {
      usage(stdout);
      return 0;
    }
    if (i + 1 >= argc) {
      usage(stderr);
      return 2;
    }
    if (!strcmp(argv[i], "--config-dir"))
      a.config_dir = argv[++i];
    else if (!strcmp(argv[i], "--run-dir"))
      a.run_dir = argv[++i];
    else {
      usage(stderr);
      return 2;
    }
  }
  if (argc - i >= 2 && (!strcmp(argv[i], "group") || !strcmp(argv[i], "namespace")))
    return mv_main(&a, !strcmp(argv[i], "namespace"), argc - i - 1, argv + i + 1);
  int is_s3 = argc - i >= 2 && !strcmp(argv[i], "s3"); /* s3_admin.h */
  int is_sync = argc - i >= 2 && (!strcmp(argv[i], "remote") || !strcmp(argv[i], "sync-job") ||
                                  !strcmp(argv[i], "pull") || !strcmp(argv[i], "push"));
  if (is_sync) { /* sync.h */
    struct core_shmem page;
    int have = core_mkdir_p(a.config_dir, 0700) == 0 && core_shmem_open(&page, a.run_dir) == 0;
    int st = sync_admin_main(a.config_dir, have ? &page : NULL, argc - i, argv + i);
    if (have)
      core_shmem_close(&page);
    if (st == 2)
      usage(stderr);
    return st;
  }
  int is_access = argc - i >= 2 && (!strcmp(argv[i], "user") || !strcmp(argv[i], "token") ||
                                    !strcmp(argv[i], "acl")); /* access.h */
  if (argc - i < 2 || (strcmp(argv[i], "datastore") != 0 && !is_s3 && !is_access)) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[i + 1];
  if (is_access && !strcmp(cmd, "list")) {
    int st = access_admin_main(a.config_dir, NULL, argc - i, argv + i);
    if (st == 2)
      usage(stderr);
    return st;
  }
  if (!is_s3 && !is_access && !strcmp(cmd, "list"))
    return ds_list(&a);
  if (!is_s3 && !is_access && !strcmp(cmd, "fill-layout")) {
    if (argc - i != 3) {
      usage(stderr);
      return 2;
    }
    return ds_fill_layout(&a, argv[i + 2]);
  }
  if (!is_s3 && !strcmp(cmd, "check"))
    return ds_check(&a, argc - i - 2, argv + i + 2);
  int mk = core_mkdir_p(a.config_dir, 0700);
  if (mk < 0) {
    fprintf(stderr, "cairn-admin: cannot create %s: %s\n", a.config_dir, core_strerror(mk));
    return 1;
  }
  /* Without the page a running server would only see the change through its
   * directory watch; say so rather than fail. */
  int rc = core_shmem_open(&a.shmem, a.run_dir);
  if (rc == 0)
    a.have_shmem = 1;
  else
    fprintf(stderr, "cairn-admin: warning: no generation page in %s (%s)\n", a.run_dir,
            core_strerror(rc));
  int status;
  if (is_s3) {
    status = s3_admin_main(a.config_dir, a.have_shmem ? &a.shmem : NULL, argc - i, argv + i);
  } else if (is_access) {
    status = access_admin_main(a.config_dir, a.have_shmem ? &a.shmem : NULL, argc - i,
                               argv + i);
    if (status == 2)
      usage(stderr);
  } else {
    status = ds_change(&a, cmd, argc - i - 2, argv + i + 2);
  }
  if (a.have_shmem)
    core_shmem_close(&a.shmem);
  return status;
}
