/* cairnd_firststart.h: what a container or a fresh machine needs at first
 * start, from the environment (docs/deployment.md):
 *
 *   CAIRN_ROOT_TOKEN_FILE=PATH    the root token's secret, from a mounted
 *                                 file (a Kubernetes or podman Secret)
 *   CAIRN_DEFAULT_DATASTORE=NAME:PATH   a datastore created when absent
 *   CAIRN_PRINT_ROOT_TOKEN=1      the root token also goes to stdout
 *   CAIRN_S3_ENDPOINT=ID:endpoint=HOST[,KEY=VALUE]...   an S3 endpoint,
 *   CAIRN_S3_ACCESS_KEY_FILE, CAIRN_S3_SECRET_KEY_FILE  its keys (Secret)
 *   CAIRN_DEFAULT_DATASTORE_BACKEND=type=s3,client=ID,bucket=B   the
 *                                 default datastore's backend
 *
 * All of it runs at startup, before the loop, and may block.
 */
#ifndef CAIRND_FIRSTSTART_H
#define CAIRND_FIRSTSTART_H

#include "core/core_shmem.h"

/* Before access_ensure_root(): when CAIRN_ROOT_TOKEN_FILE names a file,
 * makes its secret the root token's (root@pam!root) and writes root.token,
 * unless both already agree. Returns 0 or an error (logged). */
int cairnd_firststart_token(const char *config_dir, struct core_shmem *shmem);

/* After access_ensure_root(): creates or updates CAIRN_S3_ENDPOINT, then
 * creates CAIRN_DEFAULT_DATASTORE (with CAIRN_DEFAULT_DATASTORE_BACKEND) when no
 * datastore of that name is configured (adopting a chunk store already at
 * the path, e.g. a datastore volume kept while the config volume was
 * lost), and prints root.token when CAIRN_PRINT_ROOT_TOKEN is set. Returns
 * 0 or an error (logged). */
int cairnd_firststart_finish(const char *config_dir, const char *run_dir,
                             struct core_shmem *shmem);

#endif
