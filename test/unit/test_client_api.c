#include "unit.h"

#include "client/client_api.h"
#include "client/client_backup.h"
#include "client/client_progress.h"
#include "client/client_restore.h"
#include "core/core_alloc.h"
#include "core/core_buf.h"
#include "core/core_error.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

UNIT_TEST(repo_strings)
{
  struct client_repo r;
  char err[256];

  ASSERT_OK(client_repo_parse("backup.example.com:store1", &r, err, sizeof(err)));
  ASSERT_STR_EQ(r.authid, "root@pam!root");
  ASSERT_STR_EQ(r.host, "backup.example.com");
  ASSERT_EQ(r.port, 8007);
  ASSERT_STR_EQ(r.store, "store1");
  client_repo_free(&r);

  ASSERT_OK(client_repo_parse("alice@pbs!laptop@10.0.0.5:8443:data", &r, err, sizeof(err)));
  ASSERT_STR_EQ(r.authid, "alice@pbs!laptop");
  ASSERT_STR_EQ(r.host, "10.0.0.5");
  ASSERT_EQ(r.port, 8443);
  ASSERT_STR_EQ(r.store, "data");
  client_repo_free(&r);

  ASSERT_OK(client_repo_parse("[::1]:9000:st", &r, err, sizeof(err)));
  ASSERT_STR_EQ(r.host, "::1");
  ASSERT_EQ(r.port, 9000);
  client_repo_free(&r);

  ASSERT_OK(client_repo_parse("u@r!t@[fe80::1]:s", &r, err, sizeof(err)));
  ASSERT_STR_EQ(r.host, "fe80::1");
  ASSERT_EQ(r.port, 8007);
  ASSERT_STR_EQ(r.store, "s");
  client_repo_free(&r);

  /* A user (no token name) logs in with a password. */
  ASSERT_OK(client_repo_parse("alice@pbs@10.0.0.5:data", &r, err, sizeof(err)));
  ASSERT_STR_EQ(r.authid, "alice@pbs");
  ASSERT_STR_EQ(r.host, "10.0.0.5");
  ASSERT_STR_EQ(r.store, "data");
  client_repo_free(&r);

  const char *bad[] = {"", "hostonly", ":store", "host:", "host:99999:s", "host:12x:s",
                       "user@host:s", "@host:s", "host:1:s:extra", "[::1:s", "host:a/b"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (client_repo_parse(bad[i], &r, err, sizeof(err)) != CORE_EINVAL)
      unit_fail(__FILE__, __LINE__, "accepted \"%s\"", bad[i]);
    ASSERT(err[0] != '\0');
    client_repo_free(&r);
  }
  ASSERT_EQ(client_repo_parse(NULL, &r, err, sizeof(err)), CORE_EINVAL);
  client_repo_free(&r);
}

UNIT_TEST(query_encoding)
{
  struct core_buf b;
  core_buf_init(&b, 4096);
  core_buf_append_str(&b, "/api2/json/backup");
  ASSERT_OK(client_query_add(&b, "ns", "a/b c"));
  ASSERT_OK(client_query_add(&b, "archive-name", "root.didx"));
  ASSERT_OK(client_query_add_u64(&b, "backup-time", 1700000000));
  ASSERT_OK(client_query_add(&b, "x", "&=?%é"));
  ASSERT_STR_EQ(b.base, "/api2/json/backup?ns=a%2Fb%20c&archive-name=root.didx"
                        "&backup-time=1700000000&x=%26%3D%3F%25%C3%A9");
  core_buf_free(&b);
}

UNIT_TEST(backup_specs)
{
  struct client_backup_spec s;
  char err[256];
  char a[] = "root.didx:/home/user";
  ASSERT_OK(client_backup_parse_spec(a, &s, err, sizeof(err)));
  ASSERT_STR_EQ(s.archive, "root.didx");
  ASSERT_STR_EQ(s.path, "/home/user");
  char b[] = "disk.img.fidx:/dev/sda:weird";
  ASSERT_OK(client_backup_parse_spec(b, &s, err, sizeof(err)));
  ASSERT_STR_EQ(s.archive, "disk.img.fidx");
  ASSERT_STR_EQ(s.path, "/dev/sda:weird");

  const char *bad[] = {"root.pxar:/x", "root.didx", "root.didx:", ":/x", "../x.didx:/x",
                       ".hidden.didx:/x", "a b.didx:/x", "root.blob:/x"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char *copy = core_strdup(bad[i]);
    if (client_backup_parse_spec(copy, &s, err, sizeof(err)) != CORE_ENAME)
      unit_fail(__FILE__, __LINE__, "accepted \"%s\"", bad[i]);
    /* the argument is left as it was for the message */
    ASSERT_STR_EQ(copy, bad[i]);
    core_free(copy);
  }
}

UNIT_TEST(snapshot_names)
{
  char *type, *id;
  int64_t t;
  ASSERT_OK(client_snapshot_parse("host/web1/2023-11-14T22:13:20Z", &type, &id, &t));
  ASSERT_STR_EQ(type, "host");
  ASSERT_STR_EQ(id, "web1");
  ASSERT_EQ(t, 1700000000);
  core_free(type);
  core_free(id);
  ASSERT_OK(client_snapshot_parse("vm/100/1700000001", &type, &id, &t));
  ASSERT_EQ(t, 1700000001);
  core_free(type);
  core_free(id);
  const char *bad[] = {"host/web1", "disk/web1/1", "host/../1", "host/a/b/c", "host/a/",
                       "host/a/-5", "host/a/12abc", "host//1"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (client_snapshot_parse(bad[i], &type, &id, &t) != CORE_ENAME)
      unit_fail(__FILE__, __LINE__, "accepted \"%s\"", bad[i]);
}

UNIT_TEST(unreachable_server_fails_cleanly)
{
  struct client_repo r;
  struct client_api_config cfg = {0};
  struct client_api *api = NULL;
  char err[512];
  /* a port bound but not listening refuses connections, and nobody else
   * can take it while we hold it */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sin = {0};
  socklen_t slen = sizeof(sin);
  char repo[64], where[32];
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT(fd >= 0);
  ASSERT_EQ(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
  ASSERT_EQ(getsockname(fd, (struct sockaddr *)&sin, &slen), 0);
  snprintf(repo, sizeof(repo), "127.0.0.1:%d:store", ntohs(sin.sin_port));
  snprintf(where, sizeof(where), "127.0.0.1:%d", ntohs(sin.sin_port));
  ASSERT_OK(client_repo_parse(repo, &r, err, sizeof(err)));
  cfg.repo = &r;
  cfg.secret = "x";
  cfg.plain_http = 1;
  ASSERT(client_api_new(&cfg, &api, err, sizeof(err)) < 0);
  ASSERT(api == NULL);
  ASSERT(strstr(err, where) != NULL);
  cfg.secret = NULL;
  ASSERT_EQ(client_api_new(&cfg, &api, err, sizeof(err)), CORE_EINVAL);
  client_repo_free(&r);
  close(fd);
}

UNIT_MAIN(UNIT_CASE(repo_strings), UNIT_CASE(query_encoding), UNIT_CASE(backup_specs),
          UNIT_CASE(snapshot_names),
          UNIT_CASE(unreachable_server_fails_cleanly))
