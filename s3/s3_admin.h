/* s3_admin.h: the `cairn-admin s3 ...` commands.
 *
 *   s3 endpoint list
 *   s3 endpoint create ID --endpoint HOST --access-key KEY --secret-key SECRET
 *                         [--port N] [--region R] [--path-style BOOL]
 *                         [--use-tls BOOL] [--fingerprint FP] [--provider-quirks LIST]
 *   s3 endpoint update ID [--KEY VALUE]... [--delete KEY]...
 *   s3 endpoint remove ID
 *   s3 check ID BUCKET
 *
 * `--secret-key -` reads the secret from the first line of standard input,
 * so it need not appear in the process list or the shell history.
 * The code lives in the s3 module so cairn-admin only dispatches to it.
 * Blocking: for cairn-admin only.
 */
#ifndef S3_ADMIN_H
#define S3_ADMIN_H

#include "core/core_shmem.h"

#include <stdio.h>

/* argv[0] is "s3". Returns the process exit status (0, 1 failure, 2 usage). */
int s3_admin_main(const char *config_dir, struct core_shmem *shmem, int argc, char **argv);
void s3_admin_usage(FILE *f);

#endif
