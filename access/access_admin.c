/* access_admin.c: the `user`, `token` and `acl` commands of cairn-admin
 * (PBS's proxmox-backup-manager shapes). Passwords never come from the
 * command line, where every user of the machine could read them: they are
 * read from a file or from standard input. */
#include "access/access.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_KV 16
#define PASSWORD_MAX 1024

void access_admin_usage(FILE *f)
{
  fprintf(f,
          "  user list\n"
          "  user create USERID [--password-file FILE|-] [--comment C] [--email E]\n"
          "                     [--firstname F] [--lastname L] [--enable BOOL] [--expire EPOCH]\n"
          "  user update USERID [--KEY VALUE]... [--delete KEY]...\n"
          "  user passwd USERID [--password-file FILE|-]   (default: standard input)\n"
          "  user remove USERID\n"
          "  token list [USERID]\n"
          "  token create USER@REALM!NAME [--comment C] [--enable BOOL] [--expire EPOCH]\n"
          "                               prints the secret, once\n"
          "  token remove USER@REALM!NAME\n"
          "  acl list [PATH]\n"
          "  acl update PATH ROLE --auth-id ID [--propagate BOOL] [--delete]\n");
}

int access_admin_read_password(const char *file, char *buf, size_t len)
{
  FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
  if (f == NULL) {
    fprintf(stderr, "cairn-admin: cannot open %s\n", file);
    return -1;
  }
  int ok = fgets(buf, (int)len, f) != NULL;
  if (f != stdin)
    fclose(f);
  if (!ok) {
    fprintf(stderr, "cairn-admin: no password in %s\n", file);
    return -1;
  }
  buf[strcspn(buf, "\r\n")] = '\0';
  return 0;
}

struct opts {
  struct core_kv kv[MAX_KV];
  size_t nkv;
  const char *del[MAX_KV];
  size_t ndel;
  const char *password_file;
  const char *auth_id;
  const char *propagate;
  int delete_flag;
};

static int parse_opts(int argc, char **argv, struct opts *o)
{
  memset(o, 0, sizeof(*o));
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "--", 2) != 0) {
      fprintf(stderr, "cairn-admin: unexpected argument '%s'\n", a);
      return -1;
    }
    if (!strcmp(a, "--delete") && (i + 1 >= argc || !strncmp(argv[i + 1], "--", 2))) {
      o->delete_flag = 1;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "cairn-admin: %s needs a value\n", a);
      return -1;
    }
    const char *v = argv[++i];
    if (!strcmp(a, "--password-file"))
      o->password_file = v;
    else if (!strcmp(a, "--auth-id"))
      o->auth_id = v;
    else if (!strcmp(a, "--propagate"))
      o->propagate = v;
    else if (!strcmp(a, "--delete") && o->ndel < MAX_KV)
      o->del[o->ndel++] = v;
    else if (o->nkv < MAX_KV) {
      o->kv[o->nkv].key = a + 2;
      o->kv[o->nkv++].value = v;
    } else {
      return -1;
    }
  }
  return 0;
}

static int fail(struct access_edit *e, int rc)
{
  fprintf(stderr, "cairn-admin: %s\n", e->err[0] ? e->err : core_strerror(rc));
  return 1;
}

static struct access_info *load(const char *config_dir)
{
  struct access_info *info = NULL;
  char err[256] = "";
  int rc = access_info_load(config_dir, NULL, &info, err, sizeof(err));
  if (rc < 0)
    fprintf(stderr, "cairn-admin: %s\n", err[0] ? err : core_strerror(rc));
  return info;
}

static const char *prop(const struct core_config_section *s, const char *k, const char *dflt)
{
  const char *v = s ? core_config_get(s, k) : NULL;
  return v ? v : dflt;
}

static int user_list(const char *config_dir)
{
  struct access_info *info = load(config_dir);
  if (info == NULL)
    return 1;
  printf("%-32s %-6s %-10s %s\n", "USERID", "ENABLE", "EXPIRE", "COMMENT");
  printf("%-32s %-6s %-10s %s\n", ACCESS_ROOT, "1", "0", "Superuser");
  for (size_t i = 0; i < info->users.nsections; i++) {
    const struct core_config_section *s = info->users.sections[i];
    if (strcmp(s->type, "user") == 0)
      printf("%-32s %-6s %-10s %s\n", s->name, prop(s, "enable", "1"), prop(s, "expire", "0"),
             prop(s, "comment", ""));
  }
  access_info_unref(info);
  return 0;
}

static int token_list(const char *config_dir, const char *user)
{
  struct access_info *info = load(config_dir);
  if (info == NULL)
    return 1;
  size_t ulen = user ? strlen(user) : 0;
  printf("%-40s %-6s %-10s %s\n", "TOKENID", "ENABLE", "EXPIRE", "COMMENT");
  for (size_t i = 0; i < info->users.nsections; i++) {
    const struct core_config_section *s = info->users.sections[i];
    if (strcmp(s->type, "token") == 0 &&
        (user == NULL || (!strncmp(s->name, user, ulen) && s->name[ulen] == '!')))
      printf("%-40s %-6s %-10s %s\n", s->name, prop(s, "enable", "1"),
             prop(s, "expire", "0"), prop(s, "comment", ""));
  }
  access_info_unref(info);
  return 0;
}

static void print_acl(void *arg, const char *path, const char *authid, int role, int propagate)
{
  const char *want = arg;
  if (want && strcmp(want, path) != 0)
    return;
  printf("%-40s %-40s %-24s %d\n", path, authid, access_role_name(role), propagate);
}

static int acl_list(const char *config_dir, const char *path)
{
  struct access_info *info = load(config_dir);
  if (info == NULL)
    return 1;
  printf("%-40s %-40s %-24s %s\n", "PATH", "AUTH-ID", "ROLE", "PROPAGATE");
  access_acl_visit(&info->acl, print_acl, (void *)path);
  access_info_unref(info);
  return 0;
}

static int parse_bool(const char *s, int *out)
{
  if (!strcmp(s, "1") || !strcmp(s, "true") || !strcmp(s, "yes"))
    *out = 1;
  else if (!strcmp(s, "0") || !strcmp(s, "false") || !strcmp(s, "no"))
    *out = 0;
  else
    return -1;
  return 0;
}

static int user_cmd(struct access_edit *e, const char *cmd, int argc, char **argv)
{
  if (!strcmp(cmd, "list"))
    return user_list(e->config_dir);
  if (argc < 1)
    return 2;
  const char *userid = argv[0];
  struct opts o;
  if (parse_opts(argc - 1, argv + 1, &o) < 0)
    return 2;
  char pw[PASSWORD_MAX + 2];
  const char *password = NULL;
  if (o.password_file || !strcmp(cmd, "passwd")) {
    if (access_admin_read_password(o.password_file ? o.password_file : "-", pw, sizeof(pw)) < 0)
      return 1;
    password = pw;
  }
  int rc;
  if (!strcmp(cmd, "create"))
    rc = access_user_create(e, userid, o.kv, o.nkv, password);
  else if (!strcmp(cmd, "update"))
    rc = access_user_update(e, userid, o.kv, o.nkv, o.del, o.ndel, password);
  else if (!strcmp(cmd, "passwd"))
    rc = access_user_update(e, userid, NULL, 0, NULL, 0, password);
  else if (!strcmp(cmd, "remove"))
    rc = access_user_remove(e, userid);
  else
    return 2;
  explicit_bzero(pw, sizeof(pw));
  return rc < 0 ? fail(e, rc) : 0;
}

static int token_cmd(struct access_edit *e, const char *cmd, int argc, char **argv)
{
  if (!strcmp(cmd, "list"))
    return token_list(e->config_dir, argc > 0 ? argv[0] : NULL);
  if (argc < 1)
    return 2;
  struct opts o;
  if (parse_opts(argc - 1, argv + 1, &o) < 0)
    return 2;
  int rc;
  if (!strcmp(cmd, "create")) {
    char *secret = NULL;
    rc = access_token_create(e, argv[0], o.kv, o.nkv, 0, &secret);
    if (rc == 0) {
      printf("token: %s\nsecret (shown once, keep it): %s\n", argv[0], secret);
      explicit_bzero(secret, strlen(secret));
      core_free(secret);
    }
  } else if (!strcmp(cmd, "remove")) {
    rc = access_token_remove(e, argv[0]);
  } else {
    return 2;
  }
  return rc < 0 ? fail(e, rc) : 0;
}

static int acl_cmd(struct access_edit *e, const char *cmd, int argc, char **argv)
{
  if (!strcmp(cmd, "list"))
    return acl_list(e->config_dir, argc > 0 ? argv[0] : NULL);
  if (strcmp(cmd, "update") != 0 || argc < 2)
    return 2;
  struct opts o;
  if (parse_opts(argc - 2, argv + 2, &o) < 0 || o.auth_id == NULL || o.nkv || o.ndel) {
    fprintf(stderr, "cairn-admin: acl update PATH ROLE --auth-id ID [--propagate BOOL] "
                    "[--delete]\n");
    return 2;
  }
  int propagate = 1;
  if (o.propagate && parse_bool(o.propagate, &propagate) < 0) {
    fprintf(stderr, "cairn-admin: --propagate takes a boolean\n");
    return 2;
  }
  int rc = access_acl_update(e, argv[0], o.auth_id, argv[1], propagate, o.delete_flag);
  return rc < 0 ? fail(e, rc) : 0;
}

int access_admin_main(const char *config_dir, struct core_shmem *shmem, int argc, char **argv)
{
  if (argc < 2)
    return 2;
  struct access_edit e;
  memset(&e, 0, sizeof(e));
  e.config_dir = config_dir;
  e.shmem = shmem;
  const char *what = argv[0], *cmd = argv[1];
  if (!strcmp(what, "user"))
    return user_cmd(&e, cmd, argc - 2, argv + 2);
  if (!strcmp(what, "token"))
    return token_cmd(&e, cmd, argc - 2, argv + 2);
  if (!strcmp(what, "acl"))
    return acl_cmd(&e, cmd, argc - 2, argv + 2);
  return 2;
}
