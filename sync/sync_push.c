/* sync_push.c: the push engine (placeholder until the backup-session
 * client lands). */
#include "sync/sync.h"

#include "core/core_error.h"

#include <stdio.h>

int sync__push(struct sync_engine *e)
{
  snprintf(e->err, sizeof(e->err), "push is not implemented yet");
  return CORE_EINVAL;
}
