/* store_dsconfig.h: changing datastore.cfg: create, update, remove.
 *
 * The one implementation behind both the config API (run in a pool job) and
 * cairn-admin (run directly): validate, then core_config_edit() under the
 * config lock, which also bumps the shared generation so every running
 * cairnd sees the change on its next request. All functions block.
 */
#ifndef STORE_DSCONFIG_H
#define STORE_DSCONFIG_H

#include "core/core_config.h"
#include "core/core_shmem.h"

#include <stddef.h>

struct store_dsconfig_req {
  const char *config_dir;
  const char *run_dir;         /* create: no datastore may overlap it; may be NULL */
  struct core_shmem *shmem;    /* generation to bump; may be NULL */
  const char *name;
  const struct core_kv *set;  /* properties to set */
  size_t nset;
  const char *const *del;      /* properties to delete (update only) */
  size_t ndel;
  const char *digest;          /* expected digest, or NULL */
  int reuse;                   /* create: adopt an existing chunk store at path
                                  (an existing PBS or Cairn datastore) */
  /* out */
  char err[256];
};

/* Creates the chunk store at `path` (set[] must hold "path"), or with
 * `reuse` adopts the one there, and adds the section with the path in its
 * normal form. The path must pass store_dspath.h's rules: not a system
 * directory, no overlap with config_dir, run_dir or another datastore, and
 * an empty or new directory unless `reuse`. Nothing is created before every
 * check passed, all under the config lock. Returns 0, CORE_ENAME,
 * CORE_ECONFIG, CORE_EEXISTS, CORE_ESTALE, CORE_ELOCKED, for an S3 backend
 * the errors of store_s3_create_check, or a file-system error; on failure
 * nothing is left behind that this call made. */
int store_dsconfig_create(struct store_dsconfig_req *q);
/* Sets and deletes properties ("path" and "name" cannot change; deleting an
 * unknown property is CORE_ECONFIG). Returns 0, CORE_ENOTFOUND, CORE_ECONFIG,
 * CORE_ESTALE, CORE_ELOCKED, or a file error (as core_config_edit). */
int store_dsconfig_update(struct store_dsconfig_req *q);
/* Removes the section (the data stays on disk). Returns 0, CORE_ENOTFOUND,
 * CORE_ESTALE, CORE_ELOCKED, or a file error (as core_config_edit). */
int store_dsconfig_remove(struct store_dsconfig_req *q);

/* Checks one property as the API would accept it. Returns 0 or CORE_ECONFIG. */
int store_dsconfig_check_prop(const char *key, const char *value, char *err, size_t errlen);

#endif
