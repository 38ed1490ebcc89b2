#include "unit.h"

#include "access/access.h"
#include "core/core_alloc.h"
#include "core/core_buf.h"
#include "core/core_error.h"
#include "core/core_file.h"

#include <crypt.h>
#include <sys/stat.h>

#define P(x) ACCESS_PRIV_##x

static void parse_ok(struct access_acl *acl, const char *text)
{
  char err[256] = "";
  access_acl_init(acl);
  int rc = access_acl_parse(acl, text, strlen(text), err, sizeof(err));
  if (rc < 0)
    unit_fail(__FILE__, __LINE__, "parse: %s", err);
}

static char *write_acl(const struct access_acl *acl)
{
  struct core_buf b;
  core_buf_init(&b, CORE_CONFIG_MAX_SIZE);
  ASSERT_OK(access_acl_write(acl, &b));
  ASSERT_OK(core_buf_append(&b, "", 1));
  return core_buf_steal(&b, NULL);
}

UNIT_TEST(roles_as_pbs)
{
  ASSERT_EQ(access_role_privs(access_role_lookup("Admin")), ACCESS_PRIV_ALL);
  ASSERT_EQ(access_role_privs(access_role_lookup("NoAccess")), 0);
  ASSERT_EQ(access_role_privs(access_role_lookup("Audit")), P(SYS_AUDIT) | P(DATASTORE_AUDIT));
  ASSERT_EQ(access_role_privs(access_role_lookup("DatastoreBackup")), P(DATASTORE_BACKUP));
  ASSERT_EQ(access_role_privs(access_role_lookup("DatastorePowerUser")),
            P(DATASTORE_BACKUP) | P(DATASTORE_PRUNE));
  ASSERT_EQ(access_role_privs(access_role_lookup("DatastoreReader")),
            P(DATASTORE_AUDIT) | P(DATASTORE_READ) | P(DATASTORE_VERIFY));
  ASSERT_EQ(access_role_privs(access_role_lookup("DatastoreAdmin")),
            P(DATASTORE_AUDIT) | P(DATASTORE_MODIFY) | P(DATASTORE_READ) |
                P(DATASTORE_VERIFY) | P(DATASTORE_BACKUP) | P(DATASTORE_PRUNE));
  ASSERT_EQ(access_role_privs(access_role_lookup("RemoteSyncPushOperator")),
            P(REMOTE_AUDIT) | P(REMOTE_DATASTORE_BACKUP));
  ASSERT_EQ(access_role_lookup("datastoreadmin"), -1);
  ASSERT_STR_EQ(access_priv_name(P(DATASTORE_PRUNE)), "Datastore.Prune");
  char buf[128];
  access_priv_names(P(DATASTORE_MODIFY) | P(DATASTORE_PRUNE), " or ", buf, sizeof(buf));
  ASSERT_STR_EQ(buf, "Datastore.Modify or Datastore.Prune");
}

UNIT_TEST(ids_and_paths)
{
  ASSERT(access_userid_valid("alice@pbs"));
  ASSERT(access_userid_valid("root@pam"));
  ASSERT(!access_userid_valid("alice"));
  ASSERT(!access_userid_valid("al:ice@pbs"));
  ASSERT(!access_userid_valid("alice@pbs!t"));
  ASSERT(access_tokenid_valid("alice@pbs!host1"));
  ASSERT(!access_tokenid_valid("alice@pbs!"));
  ASSERT(!access_tokenid_valid("alice@pbs!-x"));
  ASSERT_EQ(access_path_valid("/"), 0);
  ASSERT_EQ(access_path_valid("/access/acl"), 0);
  ASSERT_EQ(access_path_valid("/datastore/s/a/b/c/d/e/f/g"), 0);
  ASSERT_EQ(access_path_valid("/datastore/s/a/b/c/d/e/f/g/h"), CORE_EINVAL);
  ASSERT_EQ(access_path_valid("/system"), 0);
  ASSERT_EQ(access_path_valid("/nope"), CORE_EINVAL);
  ASSERT_EQ(access_path_valid("datastore"), CORE_EINVAL);
  ASSERT_EQ(access_path_valid("/datastore/../x"), CORE_EINVAL);
  char p[64];
  ASSERT_OK(access_datastore_path(p, sizeof(p), "s", "a/b"));
  ASSERT_STR_EQ(p, "/datastore/s/a/b");
  ASSERT_OK(access_datastore_path(p, sizeof(p), "s", ""));
  ASSERT_STR_EQ(p, "/datastore/s");
}

UNIT_TEST(acl_round_trip)
{
  const char *text = "acl:1:/:root@pam!test:Admin\n"
                     "acl:1:/datastore/store1:user1@pbs:DatastoreAdmin\n"
                     "acl:0:/datastore/store1/ns1:user1@pbs,user2@pbs:DatastoreBackup,"
                     "DatastoreAudit\n";
  struct access_acl acl;
  parse_ok(&acl, text);
  char *out = write_acl(&acl);
  ASSERT_STR_EQ(out, "acl:1:/:root@pam!test:Admin\n"
                     "acl:1:/datastore/store1:user1@pbs:DatastoreAdmin\n"
                     "acl:0:/datastore/store1/ns1:user1@pbs:DatastoreBackup,DatastoreAudit\n"
                     "acl:0:/datastore/store1/ns1:user2@pbs:DatastoreBackup,DatastoreAudit\n");
  /* What was written parses to the same text. */
  struct access_acl again;
  parse_ok(&again, out);
  char *out2 = write_acl(&again);
  ASSERT_STR_EQ(out, out2);
  core_free(out);
  core_free(out2);
  access_acl_free(&acl);
  access_acl_free(&again);
}

UNIT_TEST(acl_parse_errors)
{
  const char *bad[] = {
    "acl:2:/:a@pbs:Admin\n",
    "acl:1:/nope:a@pbs:Admin\n",
    "acl:1:/:a@pbs:Wizard\n",
    "acl:1:/:nobody:Admin\n",
    "acl:1:/\n",
    "user:1:/:a@pbs:Admin\n",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    struct access_acl acl;
    access_acl_init(&acl);
    char err[256] = "";
    ASSERT_EQ(access_acl_parse(&acl, bad[i], strlen(bad[i]), err, sizeof(err)), CORE_EPARSE);
    ASSERT(strncmp(err, "line 1: ", 8) == 0);
    access_acl_free(&acl);
  }
}

UNIT_TEST(resolution_propagation_and_replacement)
{
  struct access_acl acl;
  parse_ok(&acl, "acl:1:/datastore:u@pbs:DatastoreAudit\n"
                 "acl:0:/datastore/s:u@pbs:DatastoreAdmin\n"
                 "acl:1:/datastore/s/a:u@pbs:DatastoreBackup\n");
  uint32_t prop;
  /* Propagating entry reaches the store... but the store's own entry (not
   * propagating) replaces it there. */
  ASSERT_EQ(access_acl_privs(&acl, "u@pbs", "/datastore", NULL), P(DATASTORE_AUDIT));
  ASSERT_EQ(access_acl_privs(&acl, "u@pbs", "/datastore/s", &prop),
            access_role_privs(ACCESS_ROLE_DATASTORE_ADMIN));
  ASSERT_EQ(prop, 0);
  /* Below the store the non-propagating Admin entry does not count: the
   * propagating Audit from /datastore does. */
  ASSERT_EQ(access_acl_privs(&acl, "u@pbs", "/datastore/s/x", NULL), P(DATASTORE_AUDIT));
  /* A deeper entry replaces (not adds to) what was accumulated. */
  ASSERT_EQ(access_acl_privs(&acl, "u@pbs", "/datastore/s/a", &prop), P(DATASTORE_BACKUP));
  ASSERT_EQ(prop, P(DATASTORE_BACKUP));
  ASSERT_EQ(access_acl_privs(&acl, "u@pbs", "/datastore/s/a/b/c", NULL), P(DATASTORE_BACKUP));
  ASSERT_EQ(access_acl_privs(&acl, "u@pbs", "/datastore/other", NULL), P(DATASTORE_AUDIT));
  ASSERT_EQ(access_acl_privs(&acl, "u@pbs", "/system", NULL), 0);
  ASSERT_EQ(access_acl_privs(&acl, "v@pbs", "/datastore/s/a", NULL), 0);
  access_acl_free(&acl);
}

UNIT_TEST(resolution_no_access_wins)
{
  struct access_acl acl;
  parse_ok(&acl, "acl:1:/:u@pbs:Admin\n"
                 "acl:1:/datastore/secret:u@pbs:NoAccess,DatastoreAdmin\n");
  ASSERT_EQ(access_acl_privs(&acl, "u@pbs", "/datastore/open", NULL), ACCESS_PRIV_ALL);
  ASSERT_EQ(access_acl_privs(&acl, "u@pbs", "/datastore/secret", NULL), 0);
  /* A propagating NoAccess also wins below its node. */
  ASSERT_EQ(access_acl_privs(&acl, "u@pbs", "/datastore/secret/ns", NULL), 0);
  access_acl_free(&acl);
}

static struct access_info *info_from(const char *users, const char *acl, const char *tokens)
{
  const char *dir = unit_tmpdir();
  char *p = core_asprintf("%s/user.cfg", dir);
  ASSERT_OK(core_file_replace(p, users, strlen(users), 0640, 0));
  core_free(p);
  p = core_asprintf("%s/acl.cfg", dir);
  ASSERT_OK(core_file_replace(p, acl, strlen(acl), 0640, 0));
  core_free(p);
  p = core_asprintf("%s/token.shadow", dir);
  ASSERT_OK(core_file_replace(p, tokens, strlen(tokens), 0600, 0));
  core_free(p);
  struct access_info *info;
  char err[256] = "";
  int rc = access_info_load(dir, NULL, &info, err, sizeof(err));
  if (rc < 0)
    unit_fail(__FILE__, __LINE__, "load: %s", err);
  return info;
}

UNIT_TEST(token_intersects_user)
{
  struct access_info *info =
      info_from("user: u@pbs\n\tcomment x\n\ntoken: u@pbs!t\n\tenable 1\n\n"
                "user: old@pbs\n\texpire 1000\n\ntoken: old@pbs!t\n\n"
                "user: off@pbs\n\tenable 0\n",
                "acl:1:/datastore/s:u@pbs:DatastoreReader\n"
                "acl:1:/datastore/s:u@pbs!t:DatastoreAdmin\n"
                "acl:1:/datastore/t:u@pbs!t:DatastoreAdmin\n"
                "acl:1:/:root@pam!x:DatastoreAudit\n",
                "{}");
  /* The token's own Admin entry, cut down to what its user has. */
  ASSERT_EQ(access_privs(info, "u@pbs!t", "/datastore/s", NULL),
            access_role_privs(ACCESS_ROLE_DATASTORE_READER));
  ASSERT_EQ(access_privs(info, "u@pbs!t", "/datastore/t", NULL), 0);
  /* A user's entries never reach its tokens on their own. */
  ASSERT_EQ(access_privs(info, "u@pbs", "/datastore/s", NULL),
            access_role_privs(ACCESS_ROLE_DATASTORE_READER));
  ASSERT_EQ(access_privs(info, "root@pam", "/anything", NULL), ACCESS_PRIV_ALL);
  /* root@pam's tokens: their own entries (intersected with everything). */
  ASSERT_EQ(access_privs(info, "root@pam!x", "/datastore/s", NULL), P(DATASTORE_AUDIT));
  ASSERT(access_active(info, "u@pbs", 2000));
  ASSERT(access_active(info, "u@pbs!t", 2000));
  ASSERT(!access_active(info, "u@pbs!nope", 2000));
  ASSERT(!access_active(info, "old@pbs", 2000));
  ASSERT(access_active(info, "old@pbs", 500));
  ASSERT(!access_active(info, "old@pbs!t", 2000));
  ASSERT(!access_active(info, "off@pbs", 2000));
  ASSERT(!access_active(info, "ghost@pbs", 2000));
  ASSERT(access_active(info, "root@pam", 2000));
  ASSERT(access_active(info, "root@pam!root", 2000));
  access_info_unref(info);
}

UNIT_TEST(token_secrets)
{
  char *secret, *stored;
  ASSERT_OK(access_token_new(&secret, &stored));
  ASSERT_EQ(strlen(secret), 36);
  ASSERT(strncmp(stored, "sha256$", 7) == 0);
  ASSERT_EQ(access_token_verify(stored, secret, 0), 1);
  ASSERT_EQ(access_token_verify(stored, "wrong", 0), 0);
  /* A token.shadow from PBS holds crypt hashes: only checked when allowed. */
  char *crypt_hash;
  ASSERT_OK(access_password_hash(secret, &crypt_hash));
  ASSERT_EQ(access_token_verify(crypt_hash, secret, 0), CORE_EFORMAT);
  ASSERT_EQ(access_token_verify(crypt_hash, secret, 1), 1);
  ASSERT_EQ(access_token_verify(crypt_hash, "wrong", 1), 0);
  core_free(crypt_hash);
  core_free(secret);
  core_free(stored);
}

UNIT_TEST(passwords_yescrypt_and_old_prefixes)
{
  char *h;
  ASSERT_OK(access_password_hash("correct horse", &h));
  ASSERT(strncmp(h, "$y$", 3) == 0);
  int rehash = -1;
  ASSERT_EQ(access_password_verify(h, "correct horse", &rehash), 1);
  ASSERT_EQ(rehash, 0);
  ASSERT_EQ(access_password_verify(h, "correct horsE", &rehash), 0);
  core_free(h);
  /* SHA-512 crypt ($6$, what PBS used before yescrypt) and others: accepted,
   * flagged for a rehash. */
  const char *prefixes[] = {"$6$", "$5$", "$2b$"};
  for (size_t i = 0; i < 3; i++) {
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    ASSERT(crypt_gensalt_rn(prefixes[i], 0, NULL, 0, setting, sizeof(setting)) != NULL);
    struct crypt_data *cd = core_calloc(1, sizeof(*cd));
    char *old = core_strdup(crypt_r("pw", setting, cd));
    core_free(cd);
    rehash = 0;
    ASSERT_EQ(access_password_verify(old, "pw", &rehash), 1);
    ASSERT_EQ(rehash, 1);
    ASSERT_EQ(access_password_verify(old, "pW", &rehash), 0);
    core_free(old);
  }
  ASSERT_EQ(access_password_verify("plain", "plain", &rehash), CORE_EFORMAT);
}

UNIT_TEST(tickets)
{
  uint8_t key[ACCESS_KEY_LEN], other[ACCESS_KEY_LEN];
  ASSERT_OK(access_key_load(unit_tmpdir(), key));
  uint8_t again[ACCESS_KEY_LEN];
  ASSERT_OK(access_key_load(unit_tmpdir(), again));
  ASSERT_MEM_EQ(key, again, sizeof(key));
  char *kp = core_asprintf("%s/ticket.key", unit_tmpdir());
  struct stat st;
  ASSERT_OK(stat(kp, &st));
  ASSERT_EQ(st.st_mode & 0777, 0600);
  core_free(kp);
  memset(other, 7, sizeof(other));

  char t[ACCESS_TICKET_MAX], user[ACCESS_AUTHID_MAX];
  int64_t now = 1700000000;
  ASSERT_OK(access_ticket_sign(key, "alice@pbs", now, t, sizeof(t)));
  ASSERT(strncmp(t, "PBS:alice@pbs:6553F100::", 24) == 0);
  ASSERT_OK(access_ticket_verify(key, t, now + 10, user, sizeof(user)));
  ASSERT_STR_EQ(user, "alice@pbs");
  ASSERT_OK(access_ticket_verify(key, t, now + ACCESS_TICKET_LIFETIME - 1, user, sizeof(user)));
  ASSERT_EQ(access_ticket_verify(key, t, now + ACCESS_TICKET_LIFETIME, user, sizeof(user)),
            CORE_ETIMEOUT);
  ASSERT_EQ(access_ticket_verify(key, t, now - ACCESS_TICKET_SKEW - 1, user, sizeof(user)),
            CORE_ETIMEOUT);
  ASSERT_EQ(access_ticket_verify(other, t, now, user, sizeof(user)), CORE_ECRYPTO);
  /* Changing the user (or time) breaks the signature. */
  char forged[ACCESS_TICKET_MAX];
  snprintf(forged, sizeof(forged), "PBS:admin@pbs%s", t + 13);
  ASSERT_EQ(access_ticket_verify(key, forged, now, user, sizeof(user)), CORE_ECRYPTO);
  ASSERT_EQ(access_ticket_verify(key, "PBS:x", now, user, sizeof(user)), CORE_EPARSE);
  ASSERT_EQ(access_ticket_verify(key, "garbage", now, user, sizeof(user)), CORE_EPARSE);
}

UNIT_TEST(csrf_tokens)
{
  uint8_t key[ACCESS_KEY_LEN];
  memset(key, 1, sizeof(key));
  char c[128];
  int64_t now = 1700000000;
  ASSERT_OK(access_csrf_sign(key, "alice@pbs", now, c, sizeof(c)));
  ASSERT_OK(access_csrf_verify(key, "alice@pbs", c, now + 60));
  ASSERT_EQ(access_csrf_verify(key, "bob@pbs", c, now + 60), CORE_ECRYPTO);
  ASSERT_EQ(access_csrf_verify(key, "alice@pbs", c, now + ACCESS_TICKET_LIFETIME),
            CORE_ETIMEOUT);
  ASSERT_EQ(access_csrf_verify(key, "alice@pbs", "1234", now), CORE_EPARSE);
  /* A ticket's signature is no CSRF token and vice versa (separate domains). */
  char t[ACCESS_TICKET_MAX];
  ASSERT_OK(access_ticket_sign(key, "alice@pbs", now, t, sizeof(t)));
  char fake[128];
  snprintf(fake, sizeof(fake), "6553F100:%s", strstr(t, "::") + 2);
  ASSERT_EQ(access_csrf_verify(key, "alice@pbs", fake, now), CORE_ECRYPTO);
}

UNIT_TEST(edits_users_tokens_acl)
{
  struct core_shmem shm;
  char *run = core_asprintf("%s/run", unit_tmpdir());
  ASSERT_OK(core_shmem_open(&shm, run));
  struct access_edit e;
  memset(&e, 0, sizeof(e));
  e.config_dir = unit_tmpdir();
  e.shmem = &shm;
  struct core_kv props[] = {{"comment", "backup host"}, {"email", "a@example.com"}};
  ASSERT_OK(access_user_create(&e, "alice@pbs", props, 2, "secret pw"));
  ASSERT_EQ(access_user_create(&e, "alice@pbs", NULL, 0, NULL), CORE_EEXISTS);
  ASSERT_EQ(access_user_create(&e, "root@pam", NULL, 0, NULL), CORE_EEXISTS);
  ASSERT_EQ(access_user_create(&e, "bob@pam", NULL, 0, "pw"), CORE_EINVAL);
  struct core_kv bad[] = {{"shell", "/bin/sh"}};
  ASSERT_EQ(access_user_create(&e, "carol@pbs", bad, 1, NULL), CORE_ECONFIG);
  ASSERT(core_shmem_gen_load(&shm, CORE_GEN_USER) >= 1);

  char *secret = NULL;
  ASSERT_OK(access_token_create(&e, "alice@pbs!host", NULL, 0, 0, &secret));
  ASSERT_EQ(access_token_create(&e, "alice@pbs!host", NULL, 0, 0, &secret), CORE_EEXISTS);
  ASSERT_EQ(access_token_create(&e, "ghost@pbs!host", NULL, 0, 0, &secret), CORE_ENOTFOUND);
  ASSERT(core_shmem_gen_load(&shm, CORE_GEN_TOKEN) >= 1);

  ASSERT_OK(access_acl_update(&e, "/datastore/s", "alice@pbs", "DatastoreBackup", 1, 0));
  ASSERT_OK(access_acl_update(&e, "/datastore/s", "alice@pbs!host", "DatastoreBackup", 1, 0));
  ASSERT_EQ(access_acl_update(&e, "/datastore/s", "ghost@pbs", "DatastoreBackup", 1, 0),
            CORE_ENOTFOUND);
  ASSERT_EQ(access_acl_update(&e, "/datastore/s", "alice@pbs", "Wizard", 1, 0), CORE_EINVAL);
  ASSERT_EQ(access_acl_update(&e, "/bad", "alice@pbs", "Admin", 1, 0), CORE_EINVAL);
  ASSERT(core_shmem_gen_load(&shm, CORE_GEN_ACL) >= 1);

  struct access_info *info;
  char err[256];
  ASSERT_OK(access_info_load(e.config_dir, &shm, &info, err, sizeof(err)));
  ASSERT_EQ(access_token_verify(core_map_get(&info->tokens, "alice@pbs!host"), secret, 0), 1);
  ASSERT_EQ(access_privs(info, "alice@pbs!host", "/datastore/s/ns", NULL), P(DATASTORE_BACKUP));
  ASSERT(access_active(info, "alice@pbs!host", 1));
  access_info_unref(info);

  char *hash;
  ASSERT_OK(access_password_lookup(e.config_dir, "alice@pbs", &hash));
  ASSERT_EQ(access_password_verify(hash, "secret pw", NULL), 1);
  core_free(hash);
  char *sp = core_asprintf("%s/shadow.json", e.config_dir);
  struct stat st;
  ASSERT_OK(stat(sp, &st));
  ASSERT_EQ(st.st_mode & 0777, 0600);
  core_free(sp);

  /* Removing the user takes its tokens, password and ACL entries along. */
  ASSERT_OK(access_user_remove(&e, "alice@pbs"));
  ASSERT_OK(access_info_load(e.config_dir, NULL, &info, err, sizeof(err)));
  ASSERT(core_map_get(&info->tokens, "alice@pbs!host") == NULL);
  ASSERT(core_config_find(&info->users, NULL, "alice@pbs!host") == NULL);
  ASSERT(access_acl_find(&info->acl, "/datastore/s") == NULL ||
         access_acl_find(&info->acl, "/datastore/s")->grants.count == 0);
  access_info_unref(info);
  ASSERT_EQ(access_password_lookup(e.config_dir, "alice@pbs", &hash), CORE_ENOTFOUND);

  /* A stale digest changes nothing. */
  e.digest = "0000000000000000000000000000000000000000000000000000000000000000";
  ASSERT_EQ(access_acl_update(&e, "/", "root@pam", "Admin", 1, 0), CORE_ESTALE);
  core_free(secret);
  core_shmem_close(&shm);
  core_free(run);
}

/* A deployment's pre-seeded secret (cairnd's CAIRN_ROOT_TOKEN_FILE): set,
 * replaced, and refused when it is no usable secret. */
UNIT_TEST(token_set_secret)
{
  struct access_edit e;
  memset(&e, 0, sizeof(e));
  e.config_dir = unit_tmpdir();
  const char *first = "0123456789abcdef", *second = "fedcba9876543210-rotated";
  ASSERT_OK(access_token_set_secret(&e, "root@pam!root", first));
  struct access_info *info;
  char err[256];
  ASSERT_OK(access_info_load(e.config_dir, NULL, &info, err, sizeof(err)));
  ASSERT_EQ(access_token_verify(core_map_get(&info->tokens, "root@pam!root"), first, 0), 1);
  ASSERT(core_config_find(&info->users, "token", "root@pam!root") != NULL);
  access_info_unref(info);
  ASSERT_OK(access_token_set_secret(&e, "root@pam!root", second));
  ASSERT_OK(access_info_load(e.config_dir, NULL, &info, err, sizeof(err)));
  const char *stored = core_map_get(&info->tokens, "root@pam!root");
  ASSERT_EQ(access_token_verify(stored, first, 0), 0);
  ASSERT_EQ(access_token_verify(stored, second, 0), 1);
  access_info_unref(info);

  char long_secret[258];
  memset(long_secret, 'a', 257);
  long_secret[257] = '\0';
  const char *bad[] = {"", "too-short-15chr", "has a space in it", "has:a-colon-in-it",
                       "tab\tinside-the-secret", long_secret};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    ASSERT_EQ(access_token_set_secret(&e, "root@pam!root", bad[i]), CORE_EINVAL);
  ASSERT_EQ(access_token_set_secret(&e, "ghost@pbs!t", first), CORE_ENOTFOUND);
  ASSERT_EQ(access_token_set_secret(&e, "no-realm", first), CORE_ENAME);
  /* Refused secrets left the stored one alone. */
  ASSERT_OK(access_info_load(e.config_dir, NULL, &info, err, sizeof(err)));
  ASSERT_EQ(access_token_verify(core_map_get(&info->tokens, "root@pam!root"), second, 0), 1);
  access_info_unref(info);
}

/* A user.cfg as PBS writes it survives an edit byte for byte, but for the
 * changed line. */
UNIT_TEST(user_cfg_round_trip)
{
  const char *pbs = "user: root@pam\n\temail root@example.com\n\tenable true\n\texpire 0\n\n"
                    "user: alice@pbs\n\tcomment backups\n\tenable true\n\texpire 0\n"
                    "\tfirstname Alice\n\n"
                    "token: alice@pbs!laptop\n\tcomment old laptop\n\tenable true\n"
                    "\texpire 0\n";
  char *path = core_asprintf("%s/user.cfg", unit_tmpdir());
  ASSERT_OK(core_file_replace(path, pbs, strlen(pbs), 0640, 0));
  struct access_edit e;
  memset(&e, 0, sizeof(e));
  e.config_dir = unit_tmpdir();
  struct core_kv set[] = {{"comment", "new laptop"}};
  ASSERT_OK(access_token_update(&e, "alice@pbs!laptop", set, 1, NULL, 0));
  uint8_t *data;
  size_t len;
  ASSERT_OK(core_file_read(path, 1 << 20, &data, &len));
  char *want = core_strdup(pbs);
  char *at = strstr(want, "old laptop");
  memcpy(at, "new", 3);
  ASSERT_EQ(len, strlen(want));
  ASSERT_MEM_EQ(data, want, len);
  struct access_info *info;
  char err[256];
  ASSERT_OK(access_info_load(e.config_dir, NULL, &info, err, sizeof(err)));
  ASSERT(access_active(info, "alice@pbs!laptop", 1));
  access_info_unref(info);
  core_free(want);
  core_free(data);
  core_free(path);
}

UNIT_MAIN(UNIT_CASE(roles_as_pbs), UNIT_CASE(user_cfg_round_trip), UNIT_CASE(ids_and_paths), UNIT_CASE(acl_round_trip),
          UNIT_CASE(acl_parse_errors), UNIT_CASE(resolution_propagation_and_replacement),
          UNIT_CASE(resolution_no_access_wins), UNIT_CASE(token_intersects_user),
          UNIT_CASE(token_secrets), UNIT_CASE(passwords_yescrypt_and_old_prefixes),
          UNIT_CASE(tickets), UNIT_CASE(csrf_tokens), UNIT_CASE(edits_users_tokens_acl),
          UNIT_CASE(token_set_secret))
