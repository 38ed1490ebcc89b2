/* test_check.c: store_check on hand-made datastores, good and broken. */
#include "gc_fixture.h"

#include "core/core_file.h"
#include "store/store_check.h"
#include "store/store_lock.h"

#define T1 1700000000
#define T2 1700000100

struct findings {
  unsigned problems, notes;
  char text[8192]; /* every line, for the failure message and the asserts */
};

static void collect(void *arg, int problem, const char *msg)
{
  struct findings *f = arg;
  if (problem)
    f->problems++;
  else
    f->notes++;
  size_t used = strlen(f->text);
  snprintf(f->text + used, sizeof(f->text) - used, "%s: %s\n", problem ? "problem" : "note",
           msg);
}

static struct store_check_stats run_check(struct fx *fx, unsigned flags, struct findings *f)
{
  char lockdir[700];
  ASSERT(store_lock_dir(lockdir, sizeof(lockdir), fx->run, FX_STORE) > 0);
  struct store_check_opts o = {.base = fx->base, .run_dir = fx->run, .lockdir = lockdir,
                               .flags = flags, .report = collect, .arg = f};
  struct store_check_stats st;
  memset(f, 0, sizeof(*f));
  ASSERT_OK(store_check(&o, &st));
  ASSERT_EQ(st.problems, f->problems);
  return st;
}

static void expect_problem(struct fx *fx, unsigned flags, const char *needle)
{
  struct findings f;
  run_check(fx, flags, &f);
  if (f.problems == 0 || strstr(f.text, needle) == NULL)
    unit_fail(__FILE__, __LINE__, "expected a problem mentioning '%s', got:\n%s", needle,
              f.text);
}

static const struct fx_ref REFS[] = {{1, 5000}, {2, 70000}, {3, 123}};

/* One finished snapshot with three chunks and a blob, and the digests. */
static void two_snapshots(struct fx *fx, uint8_t d[3][32])
{
  fx_snapshot(fx, "", "host", "a", T1, REFS, 3);
  fx_snapshot(fx, "", "host", "a", T2, REFS, 1);
  uint8_t data[70000];
  for (size_t i = 0; i < 3; i++) {
    fx_data(REFS[i].seed, REFS[i].size, data);
    core_sha256(data, REFS[i].size, d[i]);
  }
}

static void snap_file(struct fx *fx, int64_t t, const char *name, char *out, size_t len)
{
  ASSERT(store_path_file(out, len, fx->base, "", "host", "a", t, name) > 0);
}

UNIT_TEST(check_clean_store)
{
  struct fx fx;
  uint8_t d[3][32];
  fx_init(&fx, "");
  two_snapshots(&fx, d);
  struct findings f;
  struct store_check_stats st = run_check(&fx, STORE_CHECK_VERIFY_CHUNKS, &f);
  if (st.problems)
    unit_fail(__FILE__, __LINE__, "%s", f.text);
  ASSERT_EQ(st.snapshots, 2);
  ASSERT_EQ(st.archives, 4);
  ASSERT_EQ(st.chunks, 3);
  ASSERT_EQ(st.chunks_verified, 3);
  fx_close(&fx);
}

UNIT_TEST(check_missing_chunk)
{
  struct fx fx;
  uint8_t d[3][32];
  char p[700];
  fx_init(&fx, "");
  two_snapshots(&fx, d);
  fx_chunk_path(&fx, d[1], p, sizeof(p));
  ASSERT_EQ(unlink(p), 0);
  expect_problem(&fx, 0, "is missing");
  fx_close(&fx);
}

UNIT_TEST(check_chunk_with_wrong_content)
{
  struct fx fx;
  uint8_t d[3][32], other[32];
  char p[700], q[700];
  fx_init(&fx, "");
  two_snapshots(&fx, d);
  /* A valid blob, but of another chunk's content: only hashing finds it. */
  fx_chunk(&fx, 99, 5000, other);
  fx_chunk_path(&fx, other, q, sizeof(q));
  fx_chunk_path(&fx, d[0], p, sizeof(p));
  ASSERT_EQ(rename(q, p), 0);
  struct findings f;
  run_check(&fx, 0, &f);
  if (f.problems)
    unit_fail(__FILE__, __LINE__, "found without --verify-chunks:\n%s", f.text);
  expect_problem(&fx, STORE_CHECK_VERIFY_CHUNKS, "does not match its name");
  fx_close(&fx);
}

UNIT_TEST(check_empty_chunk)
{
  struct fx fx;
  uint8_t d[3][32];
  char p[700];
  fx_init(&fx, "");
  two_snapshots(&fx, d);
  fx_chunk_path(&fx, d[2], p, sizeof(p));
  ASSERT_EQ(truncate(p, 0), 0);
  expect_problem(&fx, 0, "is empty");
  /* In an S3 datastore's cache a 0-byte file is an evicted chunk. */
  struct findings f;
  run_check(&fx, STORE_CHECK_S3_CACHE | STORE_CHECK_VERIFY_CHUNKS, &f);
  if (f.problems || strstr(f.text, "only the local cache") == NULL)
    unit_fail(__FILE__, __LINE__, "%s", f.text);
  fx_close(&fx);
}

UNIT_TEST(check_tmp_file_is_not_a_chunk)
{
  struct fx fx;
  uint8_t d[3][32];
  char p[700], tmp[720];
  fx_init(&fx, "");
  two_snapshots(&fx, d);
  /* The chunk exists only as an interrupted insert's temporary file. */
  fx_chunk_path(&fx, d[0], p, sizeof(p));
  snprintf(tmp, sizeof(tmp), "%s.tmp_AbC123", p);
  ASSERT_EQ(rename(p, tmp), 0);
  struct findings f;
  struct store_check_stats st = run_check(&fx, 0, &f);
  ASSERT_EQ(st.tmp_files, 1);
  if (strstr(f.text, "is missing") == NULL || strstr(f.text, "temporary chunk file") == NULL)
    unit_fail(__FILE__, __LINE__, "%s", f.text);
  /* Alone (its chunk back in place) a temporary file is only a note. */
  fx_chunk(&fx, REFS[0].seed, REFS[0].size, d[0]);
  st = run_check(&fx, STORE_CHECK_VERIFY_CHUNKS, &f);
  if (st.problems || f.notes == 0)
    unit_fail(__FILE__, __LINE__, "%s", f.text);
  fx_close(&fx);
}

UNIT_TEST(check_chunk_in_wrong_prefix)
{
  struct fx fx;
  uint8_t d[3][32];
  char p[700], q[800], hex[65];
  fx_init(&fx, "");
  two_snapshots(&fx, d);
  fx_chunk_path(&fx, d[0], p, sizeof(p));
  core_hex_encode(d[0], 32, hex);
  snprintf(q, sizeof(q), "%s/.chunks/%s", fx.base, hex[0] == '0' ? "ffff" : "0000");
  mkdir(q, 0750);
  unit_append(q, sizeof(q), "/");
  unit_append(q, sizeof(q), hex);
  ASSERT_EQ(link(p, q), 0);
  expect_problem(&fx, 0, "wrong prefix directory");
  fx_close(&fx);
}

UNIT_TEST(check_manifest_lists_missing_file)
{
  struct fx fx;
  uint8_t d[3][32];
  char p[700];
  fx_init(&fx, "");
  two_snapshots(&fx, d);
  snap_file(&fx, T2, "client.log.blob", p, sizeof(p));
  ASSERT_EQ(unlink(p), 0);
  expect_problem(&fx, 0, "client.log.blob: missing");
  fx_close(&fx);
}

UNIT_TEST(check_index_changed)
{
  struct fx fx;
  uint8_t d[3][32];
  char p[700];
  fx_init(&fx, "");
  two_snapshots(&fx, d);
  /* A half-written index in place of the finished one. */
  snap_file(&fx, T1, "data.pxar.didx", p, sizeof(p));
  ASSERT_EQ(truncate(p, FORMAT_INDEX_HDR_LEN + 40), 0);
  expect_problem(&fx, 0, "data.pxar.didx");
  fx_close(&fx);
}

UNIT_TEST(check_bad_manifest)
{
  struct fx fx;
  uint8_t d[3][32];
  char p[700];
  fx_init(&fx, "");
  two_snapshots(&fx, d);
  snap_file(&fx, T1, FORMAT_MANIFEST_NAME, p, sizeof(p));
  fx_write_file(p, "garbage", 7);
  expect_problem(&fx, 0, "manifest");
  fx_close(&fx);
}

UNIT_TEST(check_manifest_of_another_snapshot)
{
  struct fx fx;
  uint8_t d[3][32];
  char p[700], q[700];
  fx_init(&fx, "");
  two_snapshots(&fx, d);
  snap_file(&fx, T1, FORMAT_MANIFEST_NAME, p, sizeof(p));
  snap_file(&fx, T2, FORMAT_MANIFEST_NAME, q, sizeof(q));
  ASSERT_EQ(rename(p, q), 0); /* T1's manifest now says T2 is T1; T1 is unfinished */
  struct findings f;
  struct store_check_stats st = run_check(&fx, 0, &f);
  ASSERT_EQ(st.unfinished, 1);
  if (strstr(f.text, "the manifest belongs to host/a/1700000000") == NULL)
    unit_fail(__FILE__, __LINE__, "%s", f.text);
  fx_close(&fx);
}

UNIT_TEST(check_manifest_empty)
{
  struct fx fx;
  uint8_t d[3][32];
  char p[700];
  fx_init(&fx, "");
  two_snapshots(&fx, d);
  /* Listed as finished (the file exists), but empty: what a crash leaves on
   * a file system without ordered data writes if the manifest was not
   * synced. */
  snap_file(&fx, T2, FORMAT_MANIFEST_NAME, p, sizeof(p));
  ASSERT_EQ(truncate(p, 0), 0);
  expect_problem(&fx, 0, "manifest");
  fx_close(&fx);
}

UNIT_TEST(check_unfinished_snapshot_is_a_note)
{
  struct fx fx;
  uint8_t d[3][32];
  char p[700];
  fx_init(&fx, "");
  two_snapshots(&fx, d);
  snap_file(&fx, T2, FORMAT_MANIFEST_NAME, p, sizeof(p));
  ASSERT_EQ(unlink(p), 0);
  struct findings f;
  struct store_check_stats st = run_check(&fx, STORE_CHECK_VERIFY_CHUNKS, &f);
  ASSERT_EQ(st.problems, 0);
  ASSERT_EQ(st.unfinished, 1);
  ASSERT_EQ(st.snapshots, 1);
  if (strstr(f.text, "host/a/2023-11-14T22:15:00Z is unfinished") == NULL)
    unit_fail(__FILE__, __LINE__, "%s", f.text);
  fx_close(&fx);
}

UNIT_TEST(check_group_without_owner)
{
  struct fx fx;
  uint8_t d[3][32];
  char p[700];
  fx_init(&fx, "");
  two_snapshots(&fx, d);
  ASSERT(store_path_group(p, sizeof(p), fx.base, "", "host", "a") > 0);
  unit_append(p, sizeof(p), "/owner");
  ASSERT_EQ(unlink(p), 0);
  expect_problem(&fx, 0, "no valid owner");
  fx_close(&fx);
}

UNIT_TEST(check_busy_snapshot_is_skipped)
{
  struct fx fx;
  uint8_t d[3][32];
  char lockdir[700], p[700];
  fx_init(&fx, "");
  two_snapshots(&fx, d);
  snap_file(&fx, T1, "client.log.blob", p, sizeof(p));
  ASSERT_EQ(unlink(p), 0);
  /* Held exclusively (a delete or a move in progress): skipped, not judged. */
  ASSERT(store_lock_dir(lockdir, sizeof(lockdir), fx.run, FX_STORE) > 0);
  struct store_lock_guard g = STORE_LOCK_GUARD_INIT;
  ASSERT_OK(store_lock_snapshot(lockdir, "", "host", "a", T1, STORE_LOCK_EXCLUSIVE, &g));
  struct findings f;
  struct store_check_stats st = run_check(&fx, 0, &f);
  ASSERT_EQ(st.busy, 1);
  ASSERT_EQ(st.problems, 0);
  store_lock_release(&g);
  expect_problem(&fx, 0, "client.log.blob: missing");
  fx_close(&fx);
}

UNIT_TEST(check_lockdir_and_run_dir)
{
  struct fx fx;
  uint8_t d[3][32];
  char lockdir[700], p[800];
  fx_init(&fx, "");
  two_snapshots(&fx, d);
  ASSERT(store_lock_dir(lockdir, sizeof(lockdir), fx.run, FX_STORE) > 0);
  ASSERT_OK(core_mkdir_p(lockdir, 0770));
  snprintf(p, sizeof(p), "%s/vm-100", lockdir);
  ASSERT_EQ(symlink("/etc/passwd", p), 0);
  expect_problem(&fx, 0, "a symlink");
  ASSERT_EQ(unlink(p), 0);
  /* A datastore inside the run directory would vanish at reboot. */
  struct findings f;
  struct store_check_opts o = {.base = fx.base, .run_dir = fx.root, .report = collect,
                               .arg = &f};
  struct store_check_stats st;
  memset(&f, 0, sizeof(f));
  ASSERT_OK(store_check(&o, &st));
  if (st.problems != 1 || strstr(f.text, "overlap") == NULL)
    unit_fail(__FILE__, __LINE__, "%s", f.text);
  fx_close(&fx);
}

UNIT_TEST(check_not_a_datastore)
{
  struct store_check_opts o = {.base = "/nonexistent/cairn-check"};
  struct store_check_stats st;
  ASSERT_EQ(store_check(&o, &st), -ENOENT);
}

UNIT_MAIN(UNIT_CASE(check_clean_store), UNIT_CASE(check_missing_chunk),
          UNIT_CASE(check_chunk_with_wrong_content), UNIT_CASE(check_empty_chunk),
          UNIT_CASE(check_tmp_file_is_not_a_chunk), UNIT_CASE(check_chunk_in_wrong_prefix),
          UNIT_CASE(check_manifest_lists_missing_file), UNIT_CASE(check_index_changed),
          UNIT_CASE(check_bad_manifest), UNIT_CASE(check_manifest_of_another_snapshot),
          UNIT_CASE(check_manifest_empty), UNIT_CASE(check_unfinished_snapshot_is_a_note),
          UNIT_CASE(check_group_without_owner), UNIT_CASE(check_busy_snapshot_is_skipped),
          UNIT_CASE(check_lockdir_and_run_dir), UNIT_CASE(check_not_a_datastore))
