/* test_move.c: store_move on hand-made datastores: group moves (whole and
 * merged), the merge rules, busy locks changing nothing, the namespace checks
 * and runs, the move journal and its clearing. */
#include "gc_fixture.h"

#include "core/core_file.h"
#include "store/store_lock.h"
#include "store/store_move.h"

#define T1 1700000000
#define T2 1700000100
#define T3 1700000200

static const struct fx_ref REFS[] = {{1, 5000}, {2, 7000}};

static void lockdir_of(struct fx *fx, char out[700])
{
  ASSERT(store_lock_dir(out, 700, fx->run, FX_STORE) > 0);
}

static size_t count(struct fx *fx, const char *ns, const char *type, const char *id)
{
  struct store_snapshot_list l;
  if (store_snapshot_list(fx->base, ns, type, id, &l) < 0)
    return 0;
  size_t n = l.n;
  store_snapshot_list_free(&l);
  return n;
}

static char *journal(struct fx *fx)
{
  char path[700];
  uint8_t *data = NULL;
  size_t len = 0;
  snprintf(path, sizeof(path), "%s/%s", fx->base, STORE_MOVE_JOURNAL);
  if (core_file_read(path, 1 << 20, &data, &len) < 0)
    return core_strdup("");
  char *s = core_malloc(len + 1);
  memcpy(s, data, len);
  s[len] = '\0';
  core_free(data);
  return s;
}

UNIT_TEST(move_whole_group)
{
  struct fx fx;
  char ld[700];
  struct store_move_result res;
  fx_init(&fx, "");
  lockdir_of(&fx, ld);
  fx_snapshot(&fx, "", "host", "a", T1, REFS, 2);
  fx_snapshot(&fx, "", "host", "a", T2, REFS, 1);
  ASSERT_OK(store_ns_create(fx.base, "n"));
  ASSERT_OK(store_move_group(fx.base, ld, "", "host", "a", "n", 1, 0, NULL, &res));
  ASSERT_EQ(res.snapshots, 2);
  ASSERT_EQ(res.merged, 0);
  ASSERT_EQ(count(&fx, "n", "host", "a"), 2);
  ASSERT_EQ(count(&fx, "", "host", "a"), 0);
  char *owner = NULL;
  ASSERT_OK(store_group_owner(fx.base, "n", "host", "a", &owner));
  ASSERT_STR_EQ(owner, "root@pam");
  core_free(owner);
  char *j = journal(&fx);
  ASSERT_STR_EQ(j, "ns/n/host/a\n");
  core_free(j);
  /* Refusals, each changing nothing. */
  ASSERT_EQ(store_move_group(fx.base, ld, "n", "host", "a", "n", 1, 0, NULL, &res),
            CORE_EINVAL);
  ASSERT_EQ(store_move_group(fx.base, ld, "n", "host", "a", "nope", 1, 0, NULL, &res),
            CORE_ENOTFOUND);
  ASSERT_EQ(store_move_group(fx.base, ld, "", "host", "zz", "n", 1, 0, NULL, &res),
            CORE_ENOTFOUND);
  ASSERT_EQ(count(&fx, "n", "host", "a"), 2);
  fx_close(&fx);
}

UNIT_TEST(move_merge_rules)
{
  struct fx fx;
  char ld[700], p[800];
  struct store_move_result res;
  fx_init(&fx, "");
  lockdir_of(&fx, ld);
  ASSERT_OK(store_ns_create(fx.base, "n"));
  fx_snapshot(&fx, "n", "host", "a", T1, REFS, 1);
  fx_snapshot(&fx, "", "host", "a", T2, REFS, 2);
  snprintf(p, sizeof(p), "%s/host/a/notes", fx.base);
  fx_write(p, "source notes");
  /* Merge off: refused. */
  ASSERT_EQ(store_move_group(fx.base, ld, "", "host", "a", "n", 0, 0, NULL, &res),
            CORE_EEXISTS);
  /* Accepted: the target's snapshot is older; its missing notes come along. */
  ASSERT_OK(store_move_group(fx.base, ld, "", "host", "a", "n", 1, 0, NULL, &res));
  ASSERT_EQ(res.merged, 1);
  ASSERT_EQ(res.snapshots, 1);
  ASSERT_EQ(count(&fx, "n", "host", "a"), 2);
  snprintf(p, sizeof(p), "%s/host/a", fx.base);
  ASSERT(access(p, F_OK) != 0);
  snprintf(p, sizeof(p), "%s/ns/n/host/a/notes", fx.base);
  ASSERT(access(p, F_OK) == 0);
  /* Refused: a source snapshot not newer than the target's newest. */
  fx_snapshot(&fx, "", "host", "a", T2, REFS, 1);
  ASSERT_EQ(store_move_group(fx.base, ld, "", "host", "a", "n", 1, 0, NULL, &res),
            CORE_EINVAL);
  ASSERT(strstr(res.msg, "not older") != NULL);
  /* Refused: another owner. */
  fx_snapshot(&fx, "", "host", "b", T3, REFS, 1);
  fx_snapshot(&fx, "n", "host", "b", T1, REFS, 1);
  ASSERT_OK(store_group_set_owner(fx.base, "n", "host", "b", "other@pbs"));
  ASSERT_EQ(store_move_group(fx.base, ld, "", "host", "b", "n", 1, 0, NULL, &res),
            CORE_EINVAL);
  ASSERT(strstr(res.msg, "owner") != NULL);
  ASSERT_EQ(count(&fx, "", "host", "b"), 1);
  ASSERT_EQ(count(&fx, "n", "host", "b"), 1);
  fx_close(&fx);
}

UNIT_TEST(move_busy_changes_nothing)
{
  struct fx fx;
  char ld[700];
  struct store_move_result res;
  struct store_lock_guard g = STORE_LOCK_GUARD_INIT;
  fx_init(&fx, "");
  lockdir_of(&fx, ld);
  fx_snapshot(&fx, "", "host", "a", T1, REFS, 1);
  fx_snapshot(&fx, "", "host", "a", T2, REFS, 1);
  ASSERT_OK(store_ns_create(fx.base, "n"));
  /* A reader of the second snapshot. */
  ASSERT_OK(store_lock_snapshot(ld, "", "host", "a", T2, STORE_LOCK_SHARED, &g));
  ASSERT_EQ(store_move_group(fx.base, ld, "", "host", "a", "n", 1, 0, NULL, &res),
            CORE_ELOCKED);
  ASSERT(strstr(res.msg, "in use") != NULL);
  store_lock_release(&g);
  /* A backup in the target group. */
  ASSERT_OK(store_lock_group(ld, "n", "host", "a", STORE_LOCK_EXCLUSIVE, &g));
  ASSERT_EQ(store_move_group(fx.base, ld, "", "host", "a", "n", 1, 0, NULL, &res),
            CORE_ELOCKED);
  store_lock_release(&g);
  /* GC reading the journal. */
  int jfd = -1;
  char **dirs = NULL;
  size_t n = 0;
  ASSERT_OK(store_move_journal_take(fx.base, &jfd, &dirs, &n)); /* no file yet */
  ASSERT_EQ(jfd, -1);
  ASSERT_OK(store_move_group(fx.base, ld, "", "host", "a", "n", 1, 0, NULL, &res));
  ASSERT_OK(store_move_journal_take(fx.base, &jfd, &dirs, &n));
  ASSERT_EQ(n, 1);
  ASSERT(strstr(dirs[0], "/ns/n/host/a") != NULL);
  ASSERT_EQ(store_move_group(fx.base, ld, "n", "host", "a", "", 1, 0, NULL, &res),
            CORE_ELOCKED);
  ASSERT(strstr(res.msg, "journal") != NULL);
  ASSERT_EQ(count(&fx, "n", "host", "a"), 2);
  store_move_journal_done(jfd, 1);
  core_free(dirs[0]);
  core_free(dirs);
  char *j = journal(&fx);
  ASSERT_STR_EQ(j, "");
  core_free(j);
  fx_close(&fx);
}

UNIT_TEST(move_journal_cleared_only_without_gc)
{
  struct fx fx;
  char ld[700];
  struct store_move_result res;
  fx_init(&fx, "");
  lockdir_of(&fx, ld);
  fx_snapshot(&fx, "", "host", "a", T1, REFS, 1);
  ASSERT_OK(store_ns_create(fx.base, "n"));
  /* Before any GC made its lock file, moves only append. */
  ASSERT_OK(store_move_group(fx.base, ld, "", "host", "a", "n", 1, 0, NULL, &res));
  ASSERT_OK(store_move_group(fx.base, ld, "n", "host", "a", "", 1, 0, NULL, &res));
  char *j = journal(&fx);
  ASSERT_STR_EQ(j, "ns/n/host/a\nhost/a\n");
  core_free(j);
  /* A GC marking: lines stay. */
  int mark = -1;
  ASSERT_OK(store_move_gc_mark_begin(ld, &mark));
  ASSERT(mark >= 0);
  ASSERT_OK(store_move_group(fx.base, ld, "", "host", "a", "n", 1, 0, NULL, &res));
  j = journal(&fx);
  ASSERT_STR_EQ(j, "ns/n/host/a\nhost/a\nns/n/host/a\n");
  core_free(j);
  store_move_gc_mark_end(mark);
  /* No GC: the next move empties it first. */
  ASSERT_OK(store_move_group(fx.base, ld, "n", "host", "a", "", 1, 0, NULL, &res));
  j = journal(&fx);
  ASSERT_STR_EQ(j, "host/a\n");
  core_free(j);
  fx_close(&fx);
}

UNIT_TEST(move_namespace_checks)
{
  struct fx fx;
  char msg[512];
  fx_init(&fx, "");
  ASSERT_OK(store_ns_create(fx.base, "a"));
  ASSERT_OK(store_ns_create(fx.base, "a/b"));
  ASSERT_OK(store_ns_create(fx.base, "x"));
  ASSERT_EQ(store_move_ns_check(fx.base, "", "y", -1, NULL, msg, sizeof(msg)), CORE_EINVAL);
  ASSERT_EQ(store_move_ns_check(fx.base, "a", "a", -1, NULL, msg, sizeof(msg)), CORE_EINVAL);
  ASSERT_EQ(store_move_ns_check(fx.base, "a", "a/b/c", -1, NULL, msg, sizeof(msg)),
            CORE_EINVAL);
  ASSERT_EQ(store_move_ns_check(fx.base, "a/b", "a", -1, NULL, msg, sizeof(msg)), CORE_EINVAL);
  ASSERT_EQ(store_move_ns_check(fx.base, "a", "q/r", -1, NULL, msg, sizeof(msg)),
            CORE_ENOTFOUND);
  ASSERT_EQ(store_move_ns_check(fx.base, "zz", "y", -1, NULL, msg, sizeof(msg)),
            CORE_ENOTFOUND);
  /* a/b below a makes depth 8 at x/2/3/4/5/6/7, unless max-depth leaves it. */
  ASSERT_OK(store_ns_create(fx.base, "x/2"));
  ASSERT_OK(store_ns_create(fx.base, "x/2/3"));
  ASSERT_OK(store_ns_create(fx.base, "x/2/3/4"));
  ASSERT_OK(store_ns_create(fx.base, "x/2/3/4/5"));
  ASSERT_OK(store_ns_create(fx.base, "x/2/3/4/5/6"));
  ASSERT_EQ(store_move_ns_check(fx.base, "a", "x/2/3/4/5/6/7", -1, NULL, msg, sizeof(msg)),
            CORE_EINVAL);
  ASSERT(strstr(msg, "deeper") != NULL);
  ASSERT_OK(store_move_ns_check(fx.base, "a", "x/2/3/4/5/6/7", 0, NULL, msg, sizeof(msg)));
  fx_close(&fx);
}

static void note(void *arg, int failed, const char *line)
{
  int *failures = arg;
  (void)line;
  *failures += failed;
}

UNIT_TEST(move_namespace_run)
{
  struct fx fx;
  char ld[700], msg[512], p[800];
  int failures = 0;
  fx_init(&fx, "");
  lockdir_of(&fx, ld);
  ASSERT_OK(store_ns_create(fx.base, "a"));
  ASSERT_OK(store_ns_create(fx.base, "a/b"));
  ASSERT_OK(store_ns_create(fx.base, "a/b/c"));
  fx_snapshot(&fx, "a", "host", "g", T1, REFS, 1);
  fx_snapshot(&fx, "a/b", "vm", "100", T1, REFS, 1);
  fx_snapshot(&fx, "a/b/c", "ct", "7", T1, REFS, 1);
  /* max-depth 1: a and a/b move, a/b/c stays, so a and a/b stay too. */
  ASSERT_EQ(store_move_ns_run(fx.base, ld, "a", "x", 1, 1, 1, NULL, note, &failures, msg,
                              sizeof(msg)), 0);
  ASSERT_EQ(failures, 0);
  ASSERT_EQ(count(&fx, "x", "host", "g"), 1);
  ASSERT_EQ(count(&fx, "x/b", "vm", "100"), 1);
  ASSERT_EQ(count(&fx, "a/b/c", "ct", "7"), 1);
  ASSERT_EQ(store_ns_exists(fx.base, "a/b"), 1);
  /* The rest: the whole source goes. */
  ASSERT_EQ(store_move_ns_run(fx.base, ld, "a", "x", -1, 1, 1, NULL, note, &failures, msg,
                              sizeof(msg)), 0);
  ASSERT_EQ(count(&fx, "x/b/c", "ct", "7"), 1);
  ASSERT_EQ(store_ns_exists(fx.base, "a"), 0);
  snprintf(p, sizeof(p), "%s/ns/a", fx.base);
  ASSERT(access(p, F_OK) != 0);
  /* Busy: a lock below the source refuses the whole move, changing nothing. */
  struct store_lock_guard g = STORE_LOCK_GUARD_INIT;
  ASSERT_OK(store_lock_snapshot(ld, "x/b", "vm", "100", T1, STORE_LOCK_SHARED, &g));
  ASSERT_EQ(store_move_ns_run(fx.base, ld, "x", "y", -1, 1, 1, NULL, note, &failures, msg,
                              sizeof(msg)), CORE_ELOCKED);
  store_lock_release(&g);
  ASSERT_EQ(store_ns_exists(fx.base, "y"), 0);
  fx_close(&fx);
}

UNIT_MAIN(UNIT_CASE(move_whole_group), UNIT_CASE(move_merge_rules),
          UNIT_CASE(move_busy_changes_nothing), UNIT_CASE(move_journal_cleared_only_without_gc),
          UNIT_CASE(move_namespace_checks), UNIT_CASE(move_namespace_run))
