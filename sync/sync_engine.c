/* sync_engine.c: the pieces the pull and the push engine share (engine
 * threads). Both engines open the local datastore the same way, map a
 * namespace below one root to the same place below the other and count and
 * log their errors the same way; one
 * copy here keeps the two directions from drifting apart. */
#include "sync/sync.h"

#include "core/core_error.h"
#include "format/format_name.h"
#include "store/store_lock.h"
#include "store/store_registry.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void sync__fail(struct sync_engine *e, const char *fmt, ...)
{
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  atomic_fetch_add(&e->errors, 1);
  core_task_log(e->task, "ERROR: %s", msg);
}

int sync__map_ns(const char *from_root, const char *to_root, const char *ns, char *out,
                 size_t cap)
{
  size_t rl = strlen(from_root);
  if (rl && (strncmp(ns, from_root, rl) != 0 || (ns[rl] != '\0' && ns[rl] != '/')))
    return CORE_ENAME;
  const char *sub = ns + rl;
  if (*sub == '/')
    sub++;
  int n;
  if (to_root[0] && sub[0])
    n = snprintf(out, cap, "%s/%s", to_root, sub);
  else
    n = snprintf(out, cap, "%s", to_root[0] ? to_root : sub);
  if (n < 0 || (size_t)n >= cap || (out[0] && format_name_ns(out) < 0))
    return CORE_ETOOBIG;
  return 0;
}

int sync__open_local(struct sync_engine *e, char *lockdir, size_t cap,
                     struct store_chunkstore **cs)
{
  int rc = store_lock_dir(lockdir, cap, e->run_dir, e->p->store);
  if (rc < 0) {
    snprintf(e->err, sizeof(e->err), "invalid datastore name");
    return rc;
  }
  rc = store_datastore_chunks(e->ds, cs);
  if (rc < 0) {
    snprintf(e->err, sizeof(e->err), "cannot open the chunk store: %s", core_strerror(rc));
    return rc;
  }
  return 0;
}

int sync__finish(struct sync_engine *e, int rc, const char *what)
{
  if (rc == 0 && atomic_load(&e->errors)) {
    snprintf(e->err, sizeof(e->err), "%" PRIu64 " error(s) during the %s",
             atomic_load(&e->errors), what);
    rc = CORE_EPROTO;
  }
  return rc;
}
