/* store_recover.c: removing the leftovers of backups that a crash interrupted.
 *
 * A backup that never finished leaves a snapshot directory without a manifest
 * (only a successful finish creates index.json.blob; an uploaded manifest
 * waits under a dot name until then, see store_backup.h), and a chunk insert
 * that was cut off leaves a `<digest>.tmp_XXXXXX` file in its prefix
 * directory.
 * At startup cairnd walks every configured datastore in the pool and removes
 * each such snapshot whose exclusive snapshot lock it can take: a backup that
 * is really running (another process on the same run directory) holds that
 * lock, so only abandoned snapshots go. Temporary chunk files go when they
 * are older than an hour: an insert renames its file within milliseconds, so
 * an old one belongs to nobody. The walk runs in the background;
 * requests are served meanwhile, and a snapshot found unfinished is listed as
 * such until it is removed.
 */
#include "store/store_recover.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "store/store_s3.h"
#include "store/store_lock.h"
#include "store/store_path.h"
#include "store/store_snapshot.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
  unsigned tmp_removed;         /* out: abandoned temporary chunk files */
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

#define TMP_CHUNK_MAX_AGE_S 3600

/* Removes abandoned `*.tmp_*` files from the chunk prefix directories.
 * Returns how many. */
static unsigned sweep_tmp_chunks(const char *base)
{
  char path[STORE_PATH_MAX];
  unsigned removed = 0;
  snprintf(path, sizeof(path), "%s/.chunks", base);
  int chunks = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (chunks < 0)
    return 0;
  DIR *top = fdopendir(dup(chunks));
  if (top == NULL) {
    close(chunks);
    return 0;
  }
  time_t limit = time(NULL) - TMP_CHUNK_MAX_AGE_S;
  struct dirent *pe;
  while ((pe = readdir(top)) != NULL) {
    if (strlen(pe->d_name) != 4 || pe->d_name[0] == '.')
      continue;
    int pfd = openat(chunks, pe->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0)
      continue;
    DIR *d = fdopendir(pfd);
    if (d == NULL) {
      close(pfd);
      continue;
    }
    struct dirent *e;
    struct stat st;
    while ((e = readdir(d)) != NULL) {
      if (strstr(e->d_name, ".tmp_") == NULL)
        continue;
      if (fstatat(pfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
          st.st_mtime < limit && unlinkat(pfd, e->d_name, 0) == 0)
        removed++;
    }
    closedir(d);
  }
  closedir(top);
  close(chunks);
  return removed;
}

static void recover_run(struct core_job *j)
{
  struct recover_job *r = (struct recover_job *)j;
  char lockdir[1024];
  struct store_ns_list nss;
  r->tmp_removed = sweep_tmp_chunks(r->ds->path);
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
  if (r->tmp_removed)
    core_info("datastore %s: removed %u abandoned temporary chunk file(s)", r->ds->name,
              r->tmp_removed);
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
