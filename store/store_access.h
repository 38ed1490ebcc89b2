/* store_access.h: access control in the running server: authentication of
 * every request, the per-route privilege check, the failed-login lockout
 * and the audit log.
 *
 * DESIGN. The parsed user.cfg, token.shadow and acl.cfg live in one
 * immutable access_info (access.h) tagged with the generations it was read
 * at. Every request compares those tags with the shared generation page
 * (three atomic loads); equal means the snapshot is current and the checks
 * run on the loop at once: a token check is one SHA-256 of a short string,
 * a privilege check one hash lookup per path component. When a generation
 * moved (a save by the API or cairn-admin, or a hand edit noticed by the
 * directory watch or the periodic re-check, as for datastore.cfg), the file
 * set is re-read once in the pool and every request that arrives meanwhile
 * waits for that one reload.
 *
 * Authentication runs when the headers are in (http_auth_fn): a token
 * (`Authorization: PBSAPIToken=ID:SECRET`) or a ticket (cookie
 * `PBSAuthCookie`, plus a `CSRFPreventionToken` header on anything but
 * GET/HEAD). If the snapshot is being reloaded, or a token secret copied from
 * PBS needs a crypt check (slow: pool), the decision is deferred to the
 * access check. Failures are counted per client address: past `fail_limit`
 * (default STORE_ACCESS_MAX_FAILS) in a minute the address gets 429 with
 * Retry-After until the minute is over.
 *
 * The access check (http_access_fn) runs before every handler. It builds
 * the ACL path the route declares (struct http_perm), resolves the caller's
 * privileges there and lets the request through if one of `privs` is held;
 * else, if one of `owner_privs` is held, the route's ownership rule decides
 * (for a group: the owner file is read in the pool and compared). A refusal
 * is 403 naming the privilege and the path; nothing of the handler ran.
 *
 * Threads: loop thread only, except where a pool job is said to run.
 */
#ifndef STORE_ACCESS_H
#define STORE_ACCESS_H

#include "access/access.h"
#include "core/core_map.h"
#include "core/core_shmem.h"
#include "http/http.h"
#include "store/store_registry.h"

#include <uv.h>

#define STORE_ACCESS_MAX_FAILS 5      /* default failures per address per window */
#define STORE_ACCESS_WINDOW_S 60      /* the window, seconds */
#define STORE_ACCESS_MAX_ADDRS 65536  /* addresses tracked at most */

struct store_access_wait;

struct store_access {
  uv_loop_t *loop;
  char *config_dir;                 /* owned */
  char *audit_path;                 /* owned: <run-dir>/audit.log */
  struct core_shmem *shmem;         /* borrowed */
  struct store_registry *reg;       /* borrowed: datastores, for group owners */
  struct access_info *info;         /* current snapshot (a reference) */
  int reloading;                    /* a reload job is in flight */
  int checking;                     /* a digest re-check job is in flight */
  int closing;
  struct store_access_wait *waiters, **waiters_tail; /* requests waiting for a reload */
  uv_fs_event_t watch;              /* the config directory */
  uv_timer_t ttl;                   /* periodic re-check for missed events */
  uint8_t key[ACCESS_KEY_LEN];      /* tickets and CSRF tokens */
  unsigned fail_limit;              /* failures per window before 429; 0: no limit */
  struct core_map fails;            /* address -> struct store_access_fail (owned) */
  struct core_map crypt_ok;         /* token id -> hex SHA-256 of a secret verified by crypt */
  uint64_t crypt_ok_gen;            /* token generation crypt_ok belongs to */
};

/* Loads the snapshot and the ticket key (blocking: startup), starts the
 * directory watch. Returns 0 or an error (logged). */
int store_access_init(struct store_access *a, uv_loop_t *loop, const char *config_dir,
                      const char *run_dir, struct core_shmem *shmem,
                      struct store_registry *reg);
/* Closes the handles (run the loop afterwards) and frees the rest. */
void store_access_close(struct store_access *a);

/* The hooks for http_server_set_auth / http_server_set_access. */
int store_access_auth(void *ctx, struct http_request *req, char *authid, size_t len);
void store_access_check(void *ctx, struct http_request *req, const struct http_perm *perm);

/* Calls cb (err 0, or the reload's error) once the snapshot reflects the
 * files as they are now: at once when nothing changed. For handlers of
 * routes the access check does not run on (the login). */
typedef void (*store_access_ready_cb)(struct store_access *a, void *arg, int err);
void store_access_refresh(struct store_access *a, store_access_ready_cb cb, void *arg);

/* Counts a failed login from the request's address (the ticket endpoint). */
void store_access_failed(struct store_access *a, struct http_request *req);
/* True (and Retry-After set) if the request's address is locked out. */
int store_access_locked(struct store_access *a, struct http_request *req);

/* For handlers that filter lists (the snapshot is current: the access check
 * ran just before). Privileges of `authid` on store/ns. */
uint32_t store_access_privs(struct store_access *a, const char *authid, const char *store,
                            const char *ns);
/* True if `authid` has some privilege on store/ns or below it. */
int store_access_visible(struct store_access *a, const char *authid, const char *store,
                         const char *ns);
/* PBS's ownership rule: the owner itself, or a user for its own tokens. */
int store_access_owns(const char *authid, const char *owner);
/* A reference to the current snapshot, for pool jobs (access_info_unref). */
struct access_info *store_access_info_ref(struct store_access *a);

/* One audit line, "who from where: what", to the log (stderr/journal) and
 * appended to <run-dir>/audit.log (in the pool). Never pass secrets. */
void store_access_audit(struct store_access *a, struct http_request *req, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same as a plain callback (s3_api's audit hook; ctx: the store_access). */
void store_access_audit_cb(void *ctx, struct http_request *req, const char *what);

#endif
