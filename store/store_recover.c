/* store_recover.c: removing the leftovers of backups that a crash interrupted.
 *
 * A backup that never finished leaves a snapshot directory without a manifest.
 * At startup cairnd walks every configured datastore in the pool and removes
 * each such snapshot whose exclusive snapshot lock it can take: a backup that
 * is really running (another process on the same run directory) holds that
 * lock, so only abandoned snapshots go. The walk runs in the background;
 * requests are served meanwhile, and a snapshot found unfinished is listed as
 * such until it is removed.
 */
#include "store/store_recover.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "store/store_backend.h"
#include "store/store_lock.h"
#include "store/store_snapshot.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

struct removed_snapshot {
  char *ns;                     /* owned */
  char type[8];
  char *id;                     /* owned */
  int64_t time;
};

struct recover_job {
  struct core_job job;
  struct store_datastore *ds;   /* reference held */
  const char *run_dir;          /* borrowed, outlives the job */
  struct removed_snapshot *gone; /* out: what was removed, for the bucket copy */
  unsigned removed;             /* out */
  unsigned kept;                /* out: unfinished but locked (in use) */
  int rc;                       /* out */
};

static void recover_group(struct recover_job *r, const char *lockdir, const char *ns,
                          const char *type, const char *id)
{
  struct store_snapshot_list snaps;
  if (store_snapshot_list(r->ds->path, ns, type, id, &snaps) < 0)
    return;
  for (size_t i = 0; i < snaps.n; i++) {
    const struct store_snapshot_info *s = &snaps.items[i];
    if (s->finished)
      continue;
    struct store_lock_guard g = STORE_LOCK_GUARD_INIT;
    if (store_lock_snapshot(lockdir, ns, type, id, s->time, STORE_LOCK_EXCLUSIVE, &g) < 0) {
      r->kept++;
      continue;
    }
    /* Re-check under the lock: a backup may have finished just now. */
    struct store_snapshot_info now;
    if (store_snapshot_info(r->ds->path, ns, type, id, s->time, &now) == 0) {
      int unfinished = !now.finished;
      store_snapshot_info_free(&now);
      if (unfinished && store_snapshot_delete(r->ds->path, ns, type, id, s->time) == 0) {
        core_info("datastore %s: removed unfinished snapshot %s%s%s/%s/%" PRId64,
                  r->ds->name, ns, ns[0] ? "/" : "", type, id, s->time);
        r->gone = core_realloc(r->gone, (r->removed + 1) * sizeof(*r->gone));
        struct removed_snapshot *rs = &r->gone[r->removed++];
        rs->ns = core_strdup(ns);
        snprintf(rs->type, sizeof(rs->type), "%s", type);
        rs->id = core_strdup(id);
        rs->time = s->time;
      }
    }
    store_lock_release(&g);
  }
  store_snapshot_list_free(&snaps);
}

static void recover_run(struct core_job *j)
{
  struct recover_job *r = (struct recover_job *)j;
  char lockdir[1024];
  struct store_ns_list nss;
  r->rc = store_lock_dir(lockdir, sizeof(lockdir), r->run_dir, r->ds->name);
  if (r->rc < 0)
    return;
  r->rc = store_ns_list(r->ds->path, "", -1, &nss);
  if (r->rc < 0)
    return;
  for (size_t n = 0; n < nss.n; n++) {
    struct store_group_list groups;
    if (store_group_list(r->ds->path, nss.items[n], &groups) < 0)
      continue;
    for (size_t g = 0; g < groups.n; g++)
      recover_group(r, lockdir, nss.items[n], groups.items[g].type, groups.items[g].id);
    store_group_list_free(&groups);
  }
  store_ns_list_free(&nss);
  r->rc = 0;
}

static void recover_done(struct core_job *j, int status)
{
  struct recover_job *r = (struct recover_job *)j;
  int rc = status < 0 ? status : r->rc;
  if (rc < 0 && rc != CORE_ENOTFOUND)
    core_warn("datastore %s: recovery walk failed: %s", r->ds->name, core_strerror(rc));
  else if (r->kept)
    core_info("datastore %s: %u unfinished snapshot(s) in use, left alone", r->ds->name,
              r->kept);
  /* S3 datastores: what the interrupted backups mirrored goes from the bucket
   * too, or an S3 refresh would bring the snapshots back. */
  for (unsigned i = 0; i < r->removed; i++) {
    struct removed_snapshot *g = &r->gone[i];
    store_s3_forget_snapshot(r->ds, g->ns, g->type, g->id, g->time);
    core_free(g->ns);
    core_free(g->id);
  }
  core_free(r->gone);
  store_datastore_unref(r->ds);
  core_free(r);
}

void store_recover_start(struct store_registry *reg, const char *run_dir)
{
  size_t it = 0;
  void *v;
  while (core_map_next(&reg->instances, &it, NULL, &v)) {
    struct store_datastore *ds = v;
    if (ds->maint == STORE_MAINT_OFFLINE || ds->maint == STORE_MAINT_READ_ONLY ||
        ds->maint == STORE_MAINT_DELETE)
      continue;
    struct recover_job *r = core_new(struct recover_job);
    r->ds = ds;
    r->run_dir = run_dir;
    store_datastore_ref(ds);
    if (core_job_submit(reg->loop, &r->job, recover_run, recover_done) < 0) {
      store_datastore_unref(ds);
      core_free(r);
    }
  }
}
