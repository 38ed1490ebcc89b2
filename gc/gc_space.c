/* gc_space.c: GC on a full file system; see gc_space.h. */
#include "gc/gc_space.h"
#include "gc/gc_status.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_task.h"
#include "store/store_chunk.h"

#include <errno.h>
#include <string.h>

int gc_space_full(int err)
{
  return err == -ENOSPC || err == -EDQUOT;
}

int gc_space_any_chunk(struct store_chunkstore *cs, uint8_t digest[32])
{
  /* About 8 KiB: on the heap, pool threads may have small stacks. */
  struct store_chunk_iter *it = core_new(struct store_chunk_iter);
  struct store_chunk_entry e;
  int rc = store_chunk_iter_open(it, cs, 0, STORE_CHUNK_PREFIXES, STORE_CHUNK_ITER_NO_STAT);
  if (rc < 0)
    goto out;
  for (;;) {
    rc = store_chunk_iter_next(it, &e);
    if (rc == 0) {
      rc = CORE_ENOTFOUND;
      break;
    }
    if (rc > 0 && e.kind == STORE_CHUNK_KIND_CHUNK) {
      memcpy(digest, e.digest, 32);
      rc = 0;
      break;
    }
    /* rc < 0: an unreadable prefix directory; the iterator goes on. */
  }
  store_chunk_iter_close(it);
out:
  core_free(it);
  return rc;
}

int gc_space_write_status(struct core_task *task, const char *base, const struct gc_status *st)
{
  int rc = gc_status_write(base, st);
  if (rc == 0)
    return 0;
  /* The sweep is done and cannot be undone; failing the task would say it
   * was not. What is lost is only the record, so say exactly that. */
  core_task_warn(task, "cannot write %s/.gc-status: %s; this run is not recorded there, its "
                 "figures are only in this log and (until cairnd restarts) in the gc status "
                 "API", base, core_strerror(rc));
  return 1;
}
