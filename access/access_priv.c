/* access_priv.c: the privilege and role tables (PBS's names and sets) and
 * the syntax of user and token ids. */
#include "access/access.h"

#include <stdio.h>
#include <string.h>

static const char *const priv_names[ACCESS_PRIV_COUNT] = {
  "Sys.Audit",          "Sys.Modify",         "Datastore.Audit",
  "Datastore.Allocate", "Datastore.Modify",   "Datastore.Read",
  "Datastore.Verify",   "Datastore.Backup",   "Datastore.Prune",
  "Permissions.Modify", "Remote.Audit",       "Remote.Modify",
  "Remote.Read",        "Remote.DatastoreBackup", "Remote.DatastoreModify",
  "Remote.DatastorePrune",
};

#define P(x) ACCESS_PRIV_##x

static const struct {
  const char *name;
  const char *comment;
  uint32_t privs;
} roles[ACCESS_ROLE_COUNT] = {
  [ACCESS_ROLE_ADMIN] = {"Admin", "Administrator", ACCESS_PRIV_ALL},
  [ACCESS_ROLE_AUDIT] = {"Audit", "Auditor", P(SYS_AUDIT) | P(DATASTORE_AUDIT)},
  [ACCESS_ROLE_NO_ACCESS] = {"NoAccess", "Disable Access", 0},
  [ACCESS_ROLE_DATASTORE_ADMIN] = {"DatastoreAdmin", "Datastore Administrator",
                                   P(DATASTORE_AUDIT) | P(DATASTORE_MODIFY) |
                                       P(DATASTORE_READ) | P(DATASTORE_VERIFY) |
                                       P(DATASTORE_BACKUP) | P(DATASTORE_PRUNE)},
  [ACCESS_ROLE_DATASTORE_READER] = {"DatastoreReader",
                                    "Datastore Reader (inspect datastore content and do "
                                    "restores)",
                                    P(DATASTORE_AUDIT) | P(DATASTORE_VERIFY) |
                                        P(DATASTORE_READ)},
  [ACCESS_ROLE_DATASTORE_BACKUP] = {"DatastoreBackup",
                                    "Datastore Backup (backup and restore owned backups)",
                                    P(DATASTORE_BACKUP)},
  [ACCESS_ROLE_DATASTORE_POWERUSER] = {"DatastorePowerUser",
                                       "Datastore PowerUser (backup, restore and prune owned "
                                       "backup)",
                                       P(DATASTORE_PRUNE) | P(DATASTORE_BACKUP)},
  [ACCESS_ROLE_DATASTORE_AUDIT] = {"DatastoreAudit", "Datastore Auditor", P(DATASTORE_AUDIT)},
  [ACCESS_ROLE_REMOTE_AUDIT] = {"RemoteAudit", "Remote Auditor", P(REMOTE_AUDIT)},
  [ACCESS_ROLE_REMOTE_ADMIN] = {"RemoteAdmin", "Remote Administrator",
                                P(REMOTE_AUDIT) | P(REMOTE_MODIFY) | P(REMOTE_READ)},
  [ACCESS_ROLE_REMOTE_SYNC_OPERATOR] = {"RemoteSyncOperator", "Synchronization Operator",
                                        P(REMOTE_AUDIT) | P(REMOTE_READ)},
  [ACCESS_ROLE_REMOTE_SYNC_PUSH_OPERATOR] = {"RemoteSyncPushOperator",
                                             "Synchronisation Operator (push direction)",
                                             P(REMOTE_AUDIT) | P(REMOTE_DATASTORE_BACKUP)},
  [ACCESS_ROLE_REMOTE_DATASTORE_POWERUSER] = {"RemoteDatastorePowerUser",
                                              "Remote Datastore Prune",
                                              P(REMOTE_AUDIT) | P(REMOTE_DATASTORE_BACKUP) |
                                                  P(REMOTE_DATASTORE_PRUNE)},
  [ACCESS_ROLE_REMOTE_DATASTORE_ADMIN] = {"RemoteDatastoreAdmin", "Remote Datastore Admin",
                                          P(REMOTE_AUDIT) | P(REMOTE_DATASTORE_BACKUP) |
                                              P(REMOTE_DATASTORE_MODIFY) |
                                              P(REMOTE_DATASTORE_PRUNE)},
};

#undef P

const char *access_priv_name(uint32_t priv)
{
  for (int i = 0; i < ACCESS_PRIV_COUNT; i++)
    if (priv == (1u << i))
      return priv_names[i];
  return NULL;
}

void access_priv_names(uint32_t privs, const char *sep, char *buf, size_t len)
{
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; i < ACCESS_PRIV_COUNT && used < len; i++) {
    if (!(privs & (1u << i)))
      continue;
    int n = snprintf(buf + used, len - used, "%s%s", used ? sep : "", priv_names[i]);
    if (n < 0)
      break;
    used += (size_t)n;
  }
}

int access_role_lookup(const char *name)
{
  for (int i = 0; i < ACCESS_ROLE_COUNT; i++)
    if (strcmp(roles[i].name, name) == 0)
      return i;
  return -1;
}

const char *access_role_name(int role)
{
  return role >= 0 && role < ACCESS_ROLE_COUNT ? roles[role].name : NULL;
}

const char *access_role_comment(int role)
{
  return role >= 0 && role < ACCESS_ROLE_COUNT ? roles[role].comment : NULL;
}

uint32_t access_role_privs(int role)
{
  return role >= 0 && role < ACCESS_ROLE_COUNT ? roles[role].privs : 0;
}

/* ---- identities ---- */

static int name_char_ok(unsigned char c)
{
  return c > 0x20 && c != 0x7f && c != ':' && c != '/' && c != '@' && c != '!' &&
         c != ',' && c != '"' && c != '\\';
}

static int realm_valid(const char *r, size_t len)
{
  if (len < 2 || len > 32)
    return 0;
  for (size_t i = 0; i < len; i++) {
    char c = r[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '_' || c == '-'))
      return 0;
  }
  return 1;
}

/* Checks "name@realm" in the first `len` bytes of s. */
static int userid_valid_n(const char *s, size_t len)
{
  const char *at = memchr(s, '@', len);
  if (at == NULL || at == s || at - s > 64)
    return 0;
  for (const char *p = s; p < at; p++)
    if (!name_char_ok((unsigned char)*p))
      return 0;
  return realm_valid(at + 1, len - (size_t)(at + 1 - s));
}

int access_userid_valid(const char *s)
{
  size_t len = strlen(s);
  return len < ACCESS_AUTHID_MAX && memchr(s, '!', len) == NULL && userid_valid_n(s, len);
}

int access_tokenid_valid(const char *s)
{
  size_t len = strlen(s);
  const char *bang = memchr(s, '!', len);
  if (len >= ACCESS_AUTHID_MAX || bang == NULL || !userid_valid_n(s, (size_t)(bang - s)))
    return 0;
  const char *t = bang + 1;
  size_t tlen = len - (size_t)(t - s);
  if (tlen < 1 || tlen > 64)
    return 0;
  for (size_t i = 0; i < tlen; i++) {
    char c = t[i];
    int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-')))
      return 0;
  }
  return 1;
}

int access_authid_valid(const char *s)
{
  return strchr(s, '!') ? access_tokenid_valid(s) : access_userid_valid(s);
}

size_t access_authid_user_len(const char *authid)
{
  const char *bang = strchr(authid, '!');
  return bang ? (size_t)(bang - authid) : strlen(authid);
}

int access_is_root(const char *authid)
{
  return strcmp(authid, ACCESS_ROOT) == 0;
}
