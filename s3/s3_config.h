/* s3_config.h: S3 endpoints in <config-dir>/s3.cfg, secrets apart.
 *
 * DESIGN
 * s3.cfg is a section-config file (core_config.h) with one section per
 * endpoint, PBS's type name and property names:
 *
 *     s3-endpoint: rgw1
 *     \tendpoint 10.0.0.5
 *     \tport 7480
 *     \tregion us-east-1
 *     \taccess-key AKIA...
 *     \tpath-style true
 *     \tuse-tls false
 *
 * The secret key is never in s3.cfg (mode 0640, may be shown to admins and
 * copied around): it lives in s3-secrets.cfg beside it, mode 0600, as
 * `s3-secret: ID` sections with one `secret-key` line. Nothing in this module
 * puts a secret into a log line, an error message or a rendered section.
 *
 * Both files change only under s3.cfg's lock file (.s3.lck), with a digest
 * check on s3.cfg for optimistic concurrency (CORE_ESTALE), secrets saved
 * before the endpoint that needs them (a crash leaves at most an unused
 * secret), and a bump of CORE_GEN_S3 after the save so every cairnd process
 * re-reads endpoints (and rebuilds S3 clients) on their next use.
 *
 * THREADS: validation and section parsing are pure (any thread). Everything
 * that reads or writes files blocks: pool jobs or cairn-admin only.
 */
#ifndef S3_CONFIG_H
#define S3_CONFIG_H

#include "core/core_config.h"
#include "core/core_shmem.h"
#include "s3/s3_client.h"

#include <stddef.h>

#define S3_CONFIG_FILE "s3.cfg"
#define S3_SECRETS_FILE "s3-secrets.cfg"
#define S3_SECTION_TYPE "s3-endpoint"
#define S3_SECRET_TYPE "s3-secret"
#define S3_ID_MAX 32          /* PBS's SAFE_ID, 3..32 characters */
#define S3_SECRET_MAX 256

/* An endpoint as cairnd uses it. Strings owned (core_free via
 * s3_endpoint_free); optional ones NULL when unset. */
struct s3_endpoint {
  char *id;
  char *endpoint;
  int port;            /* 0: scheme default */
  char *region;        /* NULL: the client's default (us-west-1) */
  char *access_key;
  char *secret_key;    /* never logged */
  int path_style;      /* default 0 */
  int use_tls;         /* default 1 */
  char *fingerprint;   /* NULL: CA verification */
  unsigned quirks;     /* enum s3_quirk */
};

/* 0 if `id` is a valid endpoint id ([A-Za-z0-9_][A-Za-z0-9._-]*, 3..32
 * bytes), else CORE_ENAME. */
int s3_config_check_id(const char *id);

/* Checks one property as the API and cairn-admin accept it: known key
 * (endpoint, port, region, access-key, secret-key, path-style, use-tls,
 * fingerprint, provider-quirks) and a valid value. The message never quotes
 * a secret value. Returns 0 or CORE_ECONFIG. */
int s3_config_check_prop(const char *key, const char *value, char *err, size_t errlen);

/* Interprets an s3-endpoint section plus its secret (may be NULL: then
 * out->secret_key is NULL). Returns 0 or CORE_ECONFIG (err set). */
int s3_config_parse_section(const struct core_config_section *sec, const char *secret,
                            struct s3_endpoint *out, char *err, size_t errlen);
void s3_endpoint_free(struct s3_endpoint *ep);

/* Fills `cfg` (zeroed first) to point into `ep`, which must outlive it. */
void s3_endpoint_client_config(const struct s3_endpoint *ep, struct s3_client_config *cfg);

/* ---- files (blocking) ---------------------------------------------------- */

/* Loads s3.cfg (missing file: empty config). `digest` may be NULL. */
int s3_config_load(const char *config_dir, struct core_config *cfg,
                   char digest[CORE_CONFIG_DIGEST_LEN], char *err, size_t errlen);

/* Loads endpoint `id` with its secret. Returns 0, CORE_ENOTFOUND (no such
 * endpoint, or no secret for it), CORE_ECONFIG, or a load error. */
int s3_config_load_endpoint(const char *config_dir, const char *id, struct s3_endpoint *out,
                            char *err, size_t errlen);

struct s3_config_req {
  const char *config_dir;
  struct core_shmem *shmem;    /* generation to bump; may be NULL */
  const char *id;
  const struct core_kv *set;     /* properties to set ("secret-key" included) */
  size_t nset;
  const char *const *del;      /* properties to delete (update only) */
  size_t ndel;
  const char *digest;          /* expected digest of s3.cfg, or NULL */
  /* out */
  char err[256];
};

/* All three set q->err on failure and may return, besides the codes named
 * at each: CORE_ENAME (invalid id), CORE_EINVAL (digest not 64 lowercase
 * hex), CORE_ELOCKED (lock timeout), CORE_ESTALE (digest mismatch), the
 * errors of core_config_load (CORE_ETOOBIG, CORE_EPARSE, any errno from
 * open/read) for either file, and those of core_config_save (CORE_ETOOBIG,
 * any errno from writing, syncing or renaming). */

/* Adds an endpoint; `endpoint`, `access-key` and `secret-key` are required.
 * Returns 0, CORE_ECONFIG (a property refused or missing), CORE_EEXISTS, or
 * an error above. */
int s3_config_create(struct s3_config_req *q);
/* Sets and deletes properties (endpoint, access-key and secret-key cannot be
 * deleted). Returns 0, CORE_ENOTFOUND, CORE_ECONFIG, or an error above. */
int s3_config_update(struct s3_config_req *q);
/* Removes the endpoint and its secret. Refuses (CORE_EEXISTS) while a
 * datastore in datastore.cfg names it in its `backend`. Returns 0,
 * CORE_ENOTFOUND, CORE_EEXISTS, the errors of reading datastore.cfg, or an
 * error above. */
int s3_config_remove(struct s3_config_req *q);

#endif
