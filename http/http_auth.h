/* http_auth.h: API tokens in PBS's form.
 *
 * A client sends `Authorization: PBSAPIToken=USER@REALM!NAME:SECRET` (PBS's
 * space-separated `PBSAPIToken USER@REALM!NAME:SECRET` is accepted too). The
 * token table lives in `<config-dir>/token.shadow`, a JSON object mapping
 * token ids to `sha256$SALT$HASH` where HASH = SHA-256(SALT || SECRET): a
 * stolen shadow file does not reveal secrets. Verification runs on the loop
 * thread (one SHA-256 of a short string, a constant-time compare) against an
 * in-memory copy of the table; the table is loaded at startup and on SIGHUP.
 */
#ifndef HTTP_AUTH_H
#define HTTP_AUTH_H

#include "core/core_map.h"

#include <stddef.h>

struct http_auth {
  struct core_map tokens; /* token id -> owned "sha256$salt$hash" string */
  char *shadow_path;      /* owned */
};

#define HTTP_AUTH_ROOT_TOKEN "root@pam!root"

/* Loads token.shadow into a fresh table. Blocking (file I/O): startup, a
 * pool job (SIGHUP builds a new table there and swaps it in on the loop), or
 * cairn-admin. `a` is usable (and must be freed) even when this fails. */
int http_auth_init(struct http_auth *a, const char *config_dir);
void http_auth_free(struct http_auth *a);

/* Creates token `tokenid` with a fresh random secret, stores its hash in
 * token.shadow (atomically, mode 0600) and returns the secret (free with
 * core_free) in *secret. Blocking. Returns 0 or a negative error. */
int http_auth_create_token(struct http_auth *a, const char *tokenid, char **secret);

/* Makes sure the root token exists: if `<config-dir>/root.token` is missing,
 * creates the token and writes that file (mode 0600) with the text after
 * "PBSAPIToken=". Blocking. */
int http_auth_ensure_root(struct http_auth *a, const char *config_dir);

/* The http_auth_fn for http_server_set_auth(). Returns 0, CORE_ENOTFOUND (no
 * header, unknown token or wrong secret), CORE_EPARSE (malformed header) or
 * CORE_EFORMAT (the token's stored hash in token.shadow is malformed); the
 * server answers 401 to all of them. */
int http_auth_check(void *ctx, const char *authorization, char *authid, size_t len);

#endif
