/* Unit tests for the prune-datastore task: removal under the snapshot lock,
 * protected and locked snapshots, unfinished ones, namespace subtrees, dry
 * runs. (The selection rules themselves are store_prune's, tested in
 * test_prune.c; the per-group API is covered by test_prune_api.py.) */
#include "gc_fixture.h"

#include "store/store_lock.h"

#define T0 INT64_C(1700000000)
#define HOUR 3600

static struct core_task *prune(struct fx *fx, const char *ns, int depth, uint64_t keep_last,
                               int dry_run)
{
  struct gc_prune_opts o;
  memset(&o, 0, sizeof(o));
  snprintf(o.ns, sizeof(o.ns), "%s", ns);
  o.max_depth = depth;
  o.keep.last = keep_last;
  o.dry_run = dry_run;
  struct fx_started s = {0};
  gc_start_prune(&fx->gc, FX_STORE, "root@pam", &o, fx_started_cb, &s);
  fx_wait_started(fx, &s);
  ASSERT_EQ(s.err, 0);
  return fx_wait_task(fx, s.upid);
}

static size_t count_snapshots(struct fx *fx, const char *ns, const char *type, const char *id)
{
  struct store_snapshot_list l;
  ASSERT_OK(store_snapshot_list(fx->base, ns, type, id, &l));
  size_t n = l.n;
  store_snapshot_list_free(&l);
  return n;
}

UNIT_TEST(prune_keep_last_dry_run_protected_locked)
{
  struct fx fx;
  fx_init(&fx, "gc-atime-safety-check=false");
  struct fx_ref r[] = {{1, 100}};
  for (int i = 0; i < 6; i++)
    fx_snapshot(&fx, "", "vm", "100", T0 + i * HOUR, r, 1);

  struct core_task *t = prune(&fx, "", -1, 2, 1);
  const char *log = fx_task_log(&fx, t->upid);
  ASSERT_STR_EQ(t->exitstatus, "OK");
  FX_ASSERT_LOG(log, "retention options: --keep-last 2");
  FX_ASSERT_LOG(log, "(dry-run)");
  FX_ASSERT_LOG(log, "would remove vm/100/2023-11-14T22:13:20Z (not-selected)");
  FX_ASSERT_LOG(log, "keep vm/100/2023-11-15T03:13:20Z (keep-last)");
  FX_ASSERT_LOG(log, "2 kept, 4 would be removed");
  ASSERT_EQ(count_snapshots(&fx, "", "vm", "100"), 6);

  /* Protect the oldest, lock the second oldest as a running backup's base. */
  ASSERT_OK(store_snapshot_set_protected(fx.base, "", "vm", "100", T0, 1));
  char lockdir[STORE_PATH_MAX];
  ASSERT(store_lock_dir(lockdir, sizeof(lockdir), fx.run, FX_STORE) > 0);
  struct store_lock_guard g = STORE_LOCK_GUARD_INIT;
  ASSERT_OK(store_lock_snapshot(lockdir, "", "vm", "100", T0 + HOUR, STORE_LOCK_SHARED, &g));
  t = prune(&fx, "", -1, 2, 0);
  log = fx_task_log(&fx, t->upid);
  ASSERT_STR_EQ(t->exitstatus, "WARNINGS: 1");
  FX_ASSERT_LOG(log, "protected vm/100/2023-11-14T22:13:20Z");
  FX_ASSERT_LOG(log, "not removed vm/100/2023-11-14T23:13:20Z: snapshot is in use");
  FX_ASSERT_LOG(log, "removed vm/100/2023-11-15T00:13:20Z");
  FX_ASSERT_LOG(log, "3 kept, 2 removed, 1 could not be removed");
  ASSERT_EQ(count_snapshots(&fx, "", "vm", "100"), 4);
  store_lock_release(&g);
  t = prune(&fx, "", -1, 2, 0);
  ASSERT_STR_EQ(t->exitstatus, "OK");
  ASSERT_EQ(count_snapshots(&fx, "", "vm", "100"), 3); /* 2 kept + protected */
  fx_close(&fx);
}

UNIT_TEST(prune_namespaces_and_depth)
{
  struct fx fx;
  fx_init(&fx, "gc-atime-safety-check=false");
  struct fx_ref r[] = {{1, 100}};
  ASSERT_OK(store_ns_create(fx.base, "a"));
  ASSERT_OK(store_ns_create(fx.base, "a/b"));
  for (int i = 0; i < 3; i++) {
    fx_snapshot(&fx, "", "ct", "1", T0 + i * HOUR, r, 1);
    fx_snapshot(&fx, "a", "ct", "1", T0 + i * HOUR, r, 1);
    fx_snapshot(&fx, "a/b", "ct", "1", T0 + i * HOUR, r, 1);
  }
  struct core_task *t = prune(&fx, "a", 0, 1, 0);
  ASSERT_STR_EQ(t->exitstatus, "OK");
  FX_ASSERT_LOG(fx_task_log(&fx, t->upid), "found 1 groups");
  ASSERT_EQ(count_snapshots(&fx, "", "ct", "1"), 3);
  ASSERT_EQ(count_snapshots(&fx, "a", "ct", "1"), 1);
  ASSERT_EQ(count_snapshots(&fx, "a/b", "ct", "1"), 3);
  t = prune(&fx, "a", -1, 1, 0);
  ASSERT_EQ(count_snapshots(&fx, "a/b", "ct", "1"), 1);
  ASSERT_EQ(count_snapshots(&fx, "", "ct", "1"), 3);
  t = prune(&fx, "missing", -1, 1, 0);
  ASSERT(strncmp(t->exitstatus, "ERROR: cannot list namespace 'missing'", 38) == 0);
  fx_close(&fx);
}

UNIT_TEST(prune_unfinished_and_one_at_a_time)
{
  struct fx fx;
  fx_init(&fx, "gc-atime-safety-check=false");
  struct fx_ref r[] = {{1, 100}};
  fx_snapshot(&fx, "", "host", "h", T0, r, 1);
  ASSERT_OK(store_snapshot_create(fx.base, "", "host", "h", T0 + HOUR)); /* unfinished, older */
  fx_snapshot(&fx, "", "host", "h", T0 + 2 * HOUR, r, 1);
  ASSERT_OK(store_snapshot_create(fx.base, "", "host", "h", T0 + 3 * HOUR)); /* newest, partial */
  struct core_task *t = prune(&fx, "", -1, 1, 0);
  const char *log = fx_task_log(&fx, t->upid);
  ASSERT_STR_EQ(t->exitstatus, "OK");
  FX_ASSERT_LOG(log, "keep-partial host/h/2023-11-15T01:13:20Z");
  FX_ASSERT_LOG(log, "removed host/h/2023-11-14T23:13:20Z (unfinished)");
  ASSERT_EQ(count_snapshots(&fx, "", "host", "h"), 2);

  struct gc_prune_opts o;
  memset(&o, 0, sizeof(o));
  o.max_depth = -1;
  o.keep.last = 1;
  struct fx_started s1 = {0}, s2 = {0};
  gc_start_prune(&fx.gc, FX_STORE, "root@pam", &o, fx_started_cb, &s1);
  gc_start_prune(&fx.gc, FX_STORE, "root@pam", &o, fx_started_cb, &s2);
  fx_wait_started(&fx, &s1);
  fx_wait_started(&fx, &s2);
  ASSERT_EQ(s1.err, 0);
  ASSERT_EQ(s2.err, CORE_ELOCKED);
  fx_wait_task(&fx, s1.upid);
  fx_close(&fx);
}

UNIT_MAIN(UNIT_CASE(prune_keep_last_dry_run_protected_locked),
          UNIT_CASE(prune_namespaces_and_depth), UNIT_CASE(prune_unfinished_and_one_at_a_time))
