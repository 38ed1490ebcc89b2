/* access.h: users, API tokens, roles, ACLs, passwords and tickets
 * (PBS-compatible access control).
 *
 * DESIGN
 * Four files in the config directory describe who may do what, in PBS's
 * formats so a PBS administrator (or a PBS config copied over) feels at home:
 *
 *   user.cfg      section config: `user: NAME@REALM` and `token: USER!NAME`
 *                 (comment, enable, expire, firstname, lastname, email)
 *   token.shadow  JSON {"user@realm!name": "sha256$SALT$HASH"} (or a crypt
 *                 hash in a file copied from PBS); mode 0600
 *   shadow.json   JSON {"user@pbs": "<crypt hash>"}; mode 0600
 *   acl.cfg       lines `acl:<propagate>:<path>:<auth-ids>:<roles>`
 *
 * Everything is loaded into one immutable `struct access_info` per
 * generation (core_shmem slots CORE_GEN_USER, CORE_GEN_TOKEN, CORE_GEN_ACL);
 * the server reads it lock-free on the loop and swaps in a new one when a
 * generation moves (access_ctx.c). A privilege lookup walks at most
 * 1 + 1 + 1 + 7 tree nodes, each one hash lookup, so it is cheap enough for
 * every request.
 *
 * Privilege resolution is PBS's: walk the ACL path from the root; at each
 * node take the subject's entries (at intermediate nodes only those that
 * propagate; at the final node all); a node that has entries for the subject
 * replaces what was accumulated; NoAccess among them wins (no privileges).
 * root@pam has every privilege. A token has only its own ACL entries,
 * intersected with its user's privileges on the same path; a disabled or
 * expired user or token has none.
 *
 * Threads: parsing, resolution and the crypto helpers are pure memory work,
 * safe on any thread for distinct objects; an access_info is immutable once
 * loaded and may be shared. Password hashing (yescrypt) is slow on purpose:
 * pool threads and cairn-admin only. The *_load, *_save and access_edit_*
 * functions do blocking file I/O.
 */
#ifndef ACCESS_H
#define ACCESS_H

#include "core/core_config.h"
#include "core/core_map.h"
#include "core/core_shmem.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- privileges and roles ----------------------------------------------- */

enum access_priv {
  ACCESS_PRIV_SYS_AUDIT = 1u << 0,
  ACCESS_PRIV_SYS_MODIFY = 1u << 1,
  ACCESS_PRIV_DATASTORE_AUDIT = 1u << 2,
  ACCESS_PRIV_DATASTORE_ALLOCATE = 1u << 3,
  ACCESS_PRIV_DATASTORE_MODIFY = 1u << 4,
  ACCESS_PRIV_DATASTORE_READ = 1u << 5,
  ACCESS_PRIV_DATASTORE_VERIFY = 1u << 6,
  ACCESS_PRIV_DATASTORE_BACKUP = 1u << 7,
  ACCESS_PRIV_DATASTORE_PRUNE = 1u << 8,
  ACCESS_PRIV_PERMISSIONS_MODIFY = 1u << 9,
  ACCESS_PRIV_REMOTE_AUDIT = 1u << 10,
  ACCESS_PRIV_REMOTE_MODIFY = 1u << 11,
  ACCESS_PRIV_REMOTE_READ = 1u << 12,
  ACCESS_PRIV_REMOTE_DATASTORE_BACKUP = 1u << 13,
  ACCESS_PRIV_REMOTE_DATASTORE_MODIFY = 1u << 14,
  ACCESS_PRIV_REMOTE_DATASTORE_PRUNE = 1u << 15,
};
#define ACCESS_PRIV_COUNT 16
#define ACCESS_PRIV_ALL ((1u << ACCESS_PRIV_COUNT) - 1)

/* "Datastore.Backup" for one bit; NULL for anything else. */
const char *access_priv_name(uint32_t priv);
/* Writes the names of the bits in `privs`, joined by `sep` ("Datastore.Modify
 * or Datastore.Prune"), into buf. */
void access_priv_names(uint32_t privs, const char *sep, char *buf, size_t len);

enum access_role {
  ACCESS_ROLE_ADMIN = 0,
  ACCESS_ROLE_AUDIT,
  ACCESS_ROLE_NO_ACCESS,
  ACCESS_ROLE_DATASTORE_ADMIN,
  ACCESS_ROLE_DATASTORE_READER,
  ACCESS_ROLE_DATASTORE_BACKUP,
  ACCESS_ROLE_DATASTORE_POWERUSER,
  ACCESS_ROLE_DATASTORE_AUDIT,
  ACCESS_ROLE_REMOTE_AUDIT,
  ACCESS_ROLE_REMOTE_ADMIN,
  ACCESS_ROLE_REMOTE_SYNC_OPERATOR,
  ACCESS_ROLE_REMOTE_SYNC_PUSH_OPERATOR,
  ACCESS_ROLE_REMOTE_DATASTORE_POWERUSER,
  ACCESS_ROLE_REMOTE_DATASTORE_ADMIN,
  ACCESS_ROLE_COUNT
};

/* The role called `name` (case-sensitive, PBS's spelling), or -1. */
int access_role_lookup(const char *name);
const char *access_role_name(int role);
const char *access_role_comment(int role);
uint32_t access_role_privs(int role);

/* ---- per-route declarations (struct http_perm's `on` and `flags`) ------- */

/* Where a route's privileges are checked: the ACL path built from the
 * request's parameters ("store", "ns", "parent"). */
enum access_on {
  ACCESS_ON_NONE = 0,       /* no path: authentication (and the flags) only */
  ACCESS_ON_ROOT,           /* "/" */
  ACCESS_ON_SYSTEM,         /* "/system" */
  ACCESS_ON_ACCESS,         /* "/access" */
  ACCESS_ON_ACL,            /* "/access/acl" */
  ACCESS_ON_USERS,          /* "/access/users" */
  ACCESS_ON_DATASTORES,     /* "/datastore" */
  ACCESS_ON_STORE,          /* "/datastore/{store}" */
  ACCESS_ON_NS,             /* "/datastore/{store}/{ns}" */
  ACCESS_ON_NS_PARENT,      /* the parent of {ns} (deleting a namespace) */
  ACCESS_ON_NS_PARAM_PARENT,/* "/datastore/{store}/{parent}" (creating and listing) */
  ACCESS_ON_REMOTES,        /* "/remote" */
  ACCESS_ON_REMOTE,         /* "/remote/{name}" (the remote's config and scans) */
};

/* Rules under which `owner_privs` (or nothing) suffice. */
enum access_if {
  ACCESS_IF_GROUP_OWNER = 1 << 0, /* the caller owns the group {ns}/{backup-type}/{backup-id} */
  ACCESS_IF_FILTERED = 1 << 1,    /* the handler shows only the caller's own groups */
  ACCESS_IF_NEW_GROUP = 1 << 2,   /* backup: the session creates the group or checks its owner */
  ACCESS_IF_TASK_OWNER = 1 << 3,  /* the caller started the task {upid} (or lists its own) */
  ACCESS_IF_SELF = 1 << 4,        /* the caller is the user {userid} (or {auth-id}) itself */
  ACCESS_IF_ANY_BELOW = 1 << 5,   /* any privilege on the path or below it (listings) */
  ACCESS_IF_AUTHENTICATED = 1 << 6, /* any authenticated caller: the handler decides
                                       what it shows (sessions check their creator) */
};

/* Initializers for struct http_perm (http.h), so route tables read as a
 * sentence: ACCESS_NEEDS(ACCESS_PRIV_DATASTORE_AUDIT, ACCESS_ON_STORE). */
#define ACCESS_NEEDS(privs, on) {(privs), 0, (on), 0}
#define ACCESS_NEEDS_OR(privs, owner_privs, on, flags) {(privs), (owner_privs), (on), (flags)}
#define ACCESS_AUTHENTICATED {0, 0, ACCESS_ON_NONE, ACCESS_IF_AUTHENTICATED}
/* The rule of a route that declares none (all zero): Sys.Modify on "/". */
#define ACCESS_UNDECLARED {ACCESS_PRIV_SYS_MODIFY, 0, ACCESS_ON_ROOT, 0}

/* ---- identities --------------------------------------------------------- */

#define ACCESS_AUTHID_MAX 128 /* bytes of "user@realm!token", with the NUL */
#define ACCESS_ROOT "root@pam"

/* True for "name@realm" with PBS's rules (name: no ':' '/' '@' '!' or control
 * characters, 1..64 bytes; realm "pam" or "pbs" or another 2..32 [A-Za-z0-9_-]). */
int access_userid_valid(const char *s);
/* True for "name@realm!tokenname" (token name [A-Za-z0-9_.-], 1..64 bytes,
 * starting with a letter or digit). */
int access_tokenid_valid(const char *s);
/* True for either. */
int access_authid_valid(const char *s);
/* The length of the user part of an auth id (up to '!' or the end). */
size_t access_authid_user_len(const char *authid);
/* True if `authid` is root@pam (not its tokens). */
int access_is_root(const char *authid);

/* ---- ACL tree ----------------------------------------------------------- */

#define ACCESS_NS_MAX_DEPTH 7
#define ACCESS_PATH_MAX 1024

/* One subject's roles on one node: bit r set for role r. */
struct access_grant {
  uint32_t roles;      /* every role granted here */
  uint32_t propagate;  /* the subset that propagates to children */
};

struct access_node {
  char *name;                /* owned: the component ("" for the root) */
  struct core_map children;  /* component -> struct access_node * (owned) */
  struct core_map grants;    /* auth id -> struct access_grant * (owned) */
};

struct access_acl {
  struct access_node root;
};

void access_acl_init(struct access_acl *acl);
/* Frees the tree; init again before reuse. */
void access_acl_free(struct access_acl *acl);

/* Checks an ACL path against the shapes Cairn knows: "/", "/access",
 * "/access/acl", "/access/users", "/datastore", "/datastore/{store}",
 * "/datastore/{store}/{ns...}" (up to 7 namespace levels), "/remote",
 * "/remote/{remote}/...", "/system" (and one level below it).
 * Returns 0 or CORE_EINVAL. */
int access_path_valid(const char *path);

/* Parses acl.cfg text into the empty `acl`. Unknown roles, bad paths or
 * auth ids are CORE_EPARSE with "line N: ..." in err; `acl` is then empty. */
int access_acl_parse(struct access_acl *acl, const char *text, size_t len, char *err,
                     size_t errlen);
/* Appends acl.cfg text (sorted by path, then auth id; one line per path,
 * propagate flag and auth id) to `out`. */
int access_acl_write(const struct access_acl *acl, struct core_buf *out);

/* Grants (or with `del` revokes) `role` to `authid` on `path`.
 * Returns 0, CORE_EINVAL (bad path) or CORE_ENAME (bad auth id). */
int access_acl_set(struct access_acl *acl, const char *path, const char *authid, int role,
                   int propagate, int del);
/* Removes every entry of `authid` (a user also loses its tokens' entries
 * when `with_tokens` is set). */
void access_acl_remove_subject(struct access_acl *acl, const char *authid, int with_tokens);

/* The node for `path`, or NULL. */
const struct access_node *access_acl_find(const struct access_acl *acl, const char *path);

/* Calls fn for every entry in path order: path, auth id, role, propagate. */
typedef void (*access_acl_visit_fn)(void *arg, const char *path, const char *authid,
                                    int role, int propagate);
void access_acl_visit(const struct access_acl *acl, access_acl_visit_fn fn, void *arg);

/* True if `authid` has an entry (other than NoAccess) on `path` or anywhere
 * below it: PBS lets such a caller list what leads there. */
int access_acl_any_below(const struct access_acl *acl, const char *authid, const char *path);

/* Privileges the ACL alone gives `authid` on `path` (no user or token rules).
 * *propagating (may be NULL) receives the subset granted by propagating
 * entries. `path` need not be valid: unknown components just find no node. */
uint32_t access_acl_privs(const struct access_acl *acl, const char *authid, const char *path,
                          uint32_t *propagating);

/* ---- the loaded state: users, tokens, ACL ------------------------------- */

struct access_info {
  _Atomic int refs;
  uint64_t gen_user, gen_token, gen_acl; /* generations read before the files */
  struct core_config users;   /* user.cfg */
  struct core_map user_secs;  /* user id -> its `user` section (borrowed from users) */
  struct core_map token_secs; /* token id -> its `token` section (borrowed from users) */
  char users_digest[CORE_CONFIG_DIGEST_LEN];
  struct access_acl acl;      /* acl.cfg */
  char acl_digest[CORE_CONFIG_DIGEST_LEN];
  struct core_map tokens;     /* token.shadow: id -> owned hash string */
  char token_digest[CORE_CONFIG_DIGEST_LEN];
};

/* Reads user.cfg, acl.cfg and token.shadow from `config_dir` into a new info
 * (refs 1), tagging it with the generations read first when shmem is set.
 * Blocking. Returns 0 or an error with a message in err. */
int access_info_load(const char *config_dir, struct core_shmem *shmem,
                     struct access_info **out, char *err, size_t errlen);
struct access_info *access_info_ref(struct access_info *info);
void access_info_unref(struct access_info *info);

/* True if the user or token exists, is enabled and not expired at `now`
 * (seconds since the epoch); for a token its user must be active too.
 * root@pam always exists and is active. */
int access_active(const struct access_info *info, const char *authid, int64_t now);

/* The privileges `authid` has on `path` (see DESIGN); *propagating as for
 * access_acl_privs. */
uint32_t access_privs(const struct access_info *info, const char *authid, const char *path,
                      uint32_t *propagating);

/* Builds "/datastore/STORE[/NS/COMPONENTS]" into buf (ns "" or NULL: the
 * store itself; store NULL: "/datastore"). Returns 0 or CORE_ETOOBIG. */
int access_datastore_path(char *buf, size_t len, const char *store, const char *ns);

/* ---- secrets ------------------------------------------------------------ */

/* Checks `secret` against a stored token hash: "sha256$SALT$HASH" (cheap,
 * constant-time compare) or, with `allow_crypt`, a crypt hash copied from
 * PBS (slow: pool only). Returns 1 (match), 0 (no match) or CORE_EFORMAT. */
int access_token_verify(const char *stored, const char *secret, int allow_crypt);
/* A fresh secret (a UUID-shaped 128-bit random string, as PBS hands out) and
 * its stored form; both to free with core_free. Returns 0 or an error. */
int access_token_new(char **secret, char **stored);
/* The stored form of a given secret (a fresh salt; free with core_free).
 * Returns 0 or an error. */
int access_token_hash(const char *secret, char **stored);

/* A yescrypt ("$y$") hash of `password` (free with core_free). Slow. */
int access_password_hash(const char *password, char **hash);
/* Checks a password against any crypt hash libxcrypt knows ($y$, $6$, $5$,
 * $2b$, ...). Returns 1 (match; *rehash set when the hash is not yescrypt),
 * 0 (no match) or CORE_EFORMAT. Slow. */
int access_password_verify(const char *stored, const char *password, int *rehash);

/* ---- tickets and CSRF tokens -------------------------------------------- */

#define ACCESS_TICKET_LIFETIME 7200 /* seconds, as PBS */
#define ACCESS_TICKET_SKEW 300      /* a ticket may come from up to 5 min in the future */
#define ACCESS_KEY_LEN 32
#define ACCESS_TICKET_MAX 512

/* Loads `<config_dir>/ticket.key` (32 random bytes, mode 0600), creating it
 * when missing. Blocking. Returns 0 or an error. */
int access_key_load(const char *config_dir, uint8_t key[ACCESS_KEY_LEN]);

/* "PBS:<userid>:<HEXTIME>::<hex HMAC-SHA256>" into buf. Returns 0 or
 * CORE_ETOOBIG. */
int access_ticket_sign(const uint8_t key[ACCESS_KEY_LEN], const char *userid, int64_t now,
                       char *buf, size_t len);
/* Verifies a ticket at time `now`; on success the user id goes to userid.
 * Returns 0, CORE_EPARSE (malformed), CORE_ECRYPTO (bad signature) or
 * CORE_ETIMEOUT (expired or too far in the future). */
int access_ticket_verify(const uint8_t key[ACCESS_KEY_LEN], const char *ticket, int64_t now,
                         char *userid, size_t len);
/* "<HEXTIME>:<hex HMAC>" binding `userid`; verify as for tickets. */
int access_csrf_sign(const uint8_t key[ACCESS_KEY_LEN], const char *userid, int64_t now,
                     char *buf, size_t len);
int access_csrf_verify(const uint8_t key[ACCESS_KEY_LEN], const char *userid,
                       const char *token, int64_t now);

/* ---- editing the files (blocking: pool or cairn-admin) ------------------ */

/* Every edit goes through core_config_edit()-style locking (one lock file
 * for the user, token and shadow files, PBS's .user.lck; one for acl.cfg),
 * writes atomically and bumps the generation when shmem is set. On error a
 * message is left in err. */
struct access_edit {
  const char *config_dir;
  struct core_shmem *shmem;   /* may be NULL */
  const char *digest;         /* expected digest (user.cfg or acl.cfg), or NULL */
  char err[256];              /* out */
};

/* user.cfg: creates `userid` with the given properties (comment, enable,
 * expire, firstname, lastname, email) and, for @pbs users, a password.
 * CORE_EEXISTS, CORE_ENAME, CORE_ECONFIG. */
int access_user_create(struct access_edit *e, const char *userid, const struct core_kv *set,
                       size_t nset, const char *password);
/* Sets and deletes properties; a non-NULL password replaces it. */
int access_user_update(struct access_edit *e, const char *userid, const struct core_kv *set,
                       size_t nset, const char *const *del, size_t ndel,
                       const char *password);
/* Removes the user, its tokens (user.cfg and token.shadow), its password and
 * its ACL entries. */
int access_user_remove(struct access_edit *e, const char *userid);
/* Gives `tokenid` the secret `secret` (creating the token when missing), for
 * a deployment that pre-seeds it from a mounted file (cairnd's
 * CAIRN_ROOT_TOKEN_FILE). The secret must be 16 to 256 printable ASCII
 * characters without spaces or ':'. CORE_ENAME, CORE_EINVAL, CORE_ENOTFOUND
 * (no such user). */
int access_token_set_secret(struct access_edit *e, const char *tokenid, const char *secret);
/* Creates a token (or with `regenerate` gives an existing one a new secret);
 * the secret goes to *secret (core_free) and is shown once. */
int access_token_create(struct access_edit *e, const char *tokenid, const struct core_kv *set,
                        size_t nset, int regenerate, char **secret);
int access_token_update(struct access_edit *e, const char *tokenid, const struct core_kv *set,
                        size_t nset, const char *const *del, size_t ndel);
int access_token_remove(struct access_edit *e, const char *tokenid);
/* acl.cfg: as access_acl_set, checking that the role exists and that the
 * auth id is root@pam or configured in user.cfg. */
int access_acl_update(struct access_edit *e, const char *path, const char *authid,
                      const char *role, int propagate, int del);
/* Replaces the stored password hash of `userid` (a rehash after login). */
int access_password_store(struct access_edit *e, const char *userid, const char *hash);
/* Reads the stored password hash of a @pbs user (core_free), CORE_ENOTFOUND. */
int access_password_lookup(const char *config_dir, const char *userid, char **hash);

#define ACCESS_ROOT_TOKEN "root@pam!root"

/* Makes sure the superuser token exists: when `<config_dir>/root.token` or
 * its secret is missing, creates (or regenerates) root@pam!root and writes
 * "root@pam!root:SECRET" to root.token (mode 0600). When acl.cfg does not
 * exist yet (a new or pre-ACL config directory) or the token was just made,
 * grants it Admin on "/": a token has only its own ACL entries, and this
 * one is the administrator's key. Blocking. */
int access_ensure_root(const char *config_dir, struct core_shmem *shmem);

/* ---- cairn-admin ------------------------------------------------------- */

/* The `user`, `token` and `acl` commands: argv[0] is the noun. Returns the
 * exit status (2: usage, which the caller prints). */
int access_admin_main(const char *config_dir, struct core_shmem *shmem, int argc, char **argv);
void access_admin_usage(FILE *f);
/* A password or token secret for cairn-admin: the first line of `file`
 * ("-": standard input), without its line end. 0, or -1 after a message on
 * stderr. Shared with sync_admin (remote secrets): one place that reads a
 * secret, never from the command line. */
int access_admin_read_password(const char *file, char *buf, size_t len);

/* Checks a user property as user.cfg accepts it. 0 or CORE_ECONFIG. */
int access_user_check_prop(const char *key, const char *value, char *err, size_t errlen);

#endif
