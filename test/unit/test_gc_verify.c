/* Unit tests for the verify task: good snapshots, a flipped byte (with and
 * without a valid CRC), a missing chunk, a damaged blob, verify_state in the
 * manifest, each chunk once per run, ignore-verified, locked snapshots. */
#include "gc_fixture.h"

#include "store/store_lock.h"

#define T0 INT64_C(1700000000)

static char *verify_state(struct fx *fx, const char *type, const char *id, int64_t t)
{
  struct format_manifest m;
  fx_manifest(fx, "", type, id, t, &m);
  char *v = format_manifest_unprotected_get(&m, "verify_state");
  format_manifest_free(&m);
  return v;
}

static void rewrite_chunk(struct fx *fx, const uint8_t d[32], int keep_crc_valid)
{
  char p[800];
  fx_chunk_path(fx, d, p, sizeof(p));
  FILE *f = fopen(p, "rb");
  ASSERT(f != NULL);
  static uint8_t buf[1 << 20];
  size_t n = fread(buf, 1, sizeof(buf), f);
  fclose(f);
  ASSERT(n > 20);
  buf[n - 3] ^= 0x01;
  if (keep_crc_valid)
    ASSERT_OK(format_blob_set_crc(buf, n));
  fx_write_file(p, buf, n);
}

UNIT_TEST(verify_good_snapshots)
{
  struct fx fx;
  fx_init(&fx, "gc-atime-safety-check=false");
  struct fx_ref a[] = {{1, 1000}, {2, 2000}, {3, 3000}};
  struct fx_ref b[] = {{1, 1000}, {2, 2000}, {4, 4000}};
  fx_snapshot(&fx, "", "vm", "100", T0, a, 3);
  fx_snapshot(&fx, "", "vm", "100", T0 + 60, b, 3);
  struct gc_verify_opts o;
  fx_verify_opts(&o);
  struct core_task *t = fx_verify(&fx, &o);
  const char *log = fx_task_log(&fx, t->upid);
  ASSERT_STR_EQ(t->exitstatus, "OK");
  FX_ASSERT_LOG(log, "found 2 finished snapshots to check");
  /* chunks 1 and 2 are shared: 4 distinct chunks read once each */
  FX_ASSERT_LOG(log, "(2 ok, 0 failed, 0 skipped), 4 chunks");
  char *v = verify_state(&fx, "vm", "100", T0);
  ASSERT(v != NULL);
  ASSERT(strstr(v, "\"state\":\"ok\"") != NULL);
  ASSERT(strstr(v, t->upid) != NULL);
  core_free(v);

  /* Again: both already verified, skipped by default ... */
  t = fx_verify(&fx, &o);
  log = fx_task_log(&fx, t->upid);
  ASSERT_STR_EQ(t->exitstatus, "OK");
  FX_ASSERT_LOG(log, "(0 ok, 0 failed, 2 skipped)");
  FX_ASSERT_LOG(log, "SKIPPED: verify vm/100/2023-11-14T22:13:20Z - already verified");
  /* ... unless asked, or outdated */
  o.ignore_verified = 0;
  t = fx_verify(&fx, &o);
  FX_ASSERT_LOG(fx_task_log(&fx, t->upid), "(2 ok, 0 failed, 0 skipped)");
  o.ignore_verified = 1;
  o.outdated_after_days = 1;
  t = fx_verify(&fx, &o);
  FX_ASSERT_LOG(fx_task_log(&fx, t->upid), "(0 ok, 0 failed, 2 skipped)");

  /* One snapshot by name; a missing one is an error. */
  fx_verify_opts(&o);
  snprintf(o.type, sizeof(o.type), "vm");
  snprintf(o.id, sizeof(o.id), "100");
  o.time = T0 + 60;
  t = fx_verify(&fx, &o);
  ASSERT_STR_EQ(t->exitstatus, "OK");
  ASSERT(strstr(t->upid, ":verify:test\\x3avm-100-6553F13C:") != NULL);
  FX_ASSERT_LOG(fx_task_log(&fx, t->upid), "found 1 finished snapshots");
  o.time = T0 + 1;
  t = fx_verify(&fx, &o);
  ASSERT(strstr(t->exitstatus, "ERROR: snapshot does not exist") != NULL);
  fx_close(&fx);
}

UNIT_TEST(verify_finds_flipped_byte_and_missing_chunk)
{
  struct fx fx;
  fx_init(&fx, "gc-atime-safety-check=false");
  struct fx_ref a[] = {{1, 1000}, {2, 2000}};
  struct fx_ref b[] = {{3, 3000}, {2, 2000}};
  struct fx_ref c[] = {{5, 5000}, {6, 6000}};
  struct fx_ref d[] = {{7, 700}};
  fx_snapshot(&fx, "", "vm", "1", T0, a, 2);
  fx_snapshot(&fx, "", "vm", "2", T0, b, 2);
  fx_snapshot(&fx, "", "ct", "3", T0, c, 2);
  fx_snapshot(&fx, "", "host", "4", T0, d, 1);
  uint8_t d2[32], d6[32], d7[32];
  fx_chunk(&fx, 2, 2000, d2);
  fx_chunk(&fx, 6, 6000, d6);
  fx_chunk(&fx, 7, 700, d7);
  rewrite_chunk(&fx, d2, 1); /* CRC fine, content wrong: only the digest shows it */
  rewrite_chunk(&fx, d7, 0); /* CRC wrong */
  char p[800];
  fx_chunk_path(&fx, d6, p, sizeof(p));
  ASSERT_EQ(unlink(p), 0);

  struct gc_verify_opts o;
  fx_verify_opts(&o);
  struct core_task *t = fx_verify(&fx, &o);
  const char *log = fx_task_log(&fx, t->upid);
  FX_ASSERT_LOG(t->exitstatus, "ERROR: verification failed for 4 of 4 snapshots:");
  ASSERT(strstr(t->exitstatus, "vm/1/2023-11-14T22:13:20Z") != NULL);
  ASSERT(strstr(t->exitstatus, "vm/2/2023-11-14T22:13:20Z") != NULL);
  ASSERT(strstr(t->exitstatus, "ct/3/2023-11-14T22:13:20Z") != NULL);
  ASSERT(strstr(t->exitstatus, "host/4/2023-11-14T22:13:20Z") != NULL);
  char hex[65];
  core_hex_encode(d2, 32, hex);
  char want[200];
  snprintf(want, sizeof(want), "chunk %s is corrupt (", hex);
  FX_ASSERT_LOG(log, want);
  snprintf(want, sizeof(want), "renamed to %s.0.bad", hex);
  FX_ASSERT_LOG(log, want);
  snprintf(want, sizeof(want), "chunk %s was already found bad in this run", hex);
  FX_ASSERT_LOG(log, want); /* the second reference did not re-read it */
  core_hex_encode(d6, 32, hex);
  snprintf(want, sizeof(want), "chunk %s is missing", hex);
  FX_ASSERT_LOG(log, want);
  FX_ASSERT_LOG(log, "Failed to verify the following snapshots:");
  ASSERT(!fx_chunk_exists(&fx, d2));
  fx_chunk_path(&fx, d2, p, sizeof(p));
  unit_append(p, sizeof(p), ".0.bad");
  struct stat st;
  ASSERT_EQ(stat(p, &st), 0);
  fx_chunk_path(&fx, d7, p, sizeof(p));
  unit_append(p, sizeof(p), ".0.bad");
  ASSERT_EQ(stat(p, &st), 0);
  char *v = verify_state(&fx, "vm", "1", T0);
  ASSERT(v && strstr(v, "\"state\":\"failed\""));
  core_free(v);
  v = verify_state(&fx, "ct", "3", T0);
  ASSERT(v && strstr(v, "\"state\":\"failed\""));
  core_free(v);

  /* A failed snapshot is verified again even with ignore-verified; a fresh
   * upload of the chunk (as the next backup would do) heals it. */
  uint8_t again[32];
  fx_chunk(&fx, 2, 2000, again);
  fx_chunk(&fx, 6, 6000, again);
  fx_chunk(&fx, 7, 700, again);
  t = fx_verify(&fx, &o);
  ASSERT_STR_EQ(t->exitstatus, "OK");
  FX_ASSERT_LOG(fx_task_log(&fx, t->upid), "(4 ok, 0 failed, 0 skipped)");
  fx_close(&fx);
}

UNIT_TEST(verify_damaged_blob_and_index)
{
  struct fx fx;
  fx_init(&fx, "gc-atime-safety-check=false");
  struct fx_ref a[] = {{1, 1000}};
  fx_snapshot(&fx, "", "vm", "1", T0, a, 1);
  fx_snapshot(&fx, "", "vm", "2", T0, a, 1);
  char p[STORE_PATH_MAX];
  ASSERT(store_path_file(p, sizeof(p), fx.base, "", "vm", "1", T0, "client.log.blob") > 0);
  FILE *f = fopen(p, "r+b");
  fseek(f, 14, SEEK_SET);
  fputc('X', f);
  fclose(f);
  ASSERT(store_path_file(p, sizeof(p), fx.base, "", "vm", "2", T0, "data.pxar.didx") > 0);
  f = fopen(p, "r+b");
  fseek(f, 4096 + 8 + 5, SEEK_SET); /* inside the first digest */
  fputc(0x55, f);
  fclose(f);
  struct gc_verify_opts o;
  fx_verify_opts(&o);
  struct core_task *t = fx_verify(&fx, &o);
  const char *log = fx_task_log(&fx, t->upid);
  ASSERT(strstr(t->exitstatus, "failed for 2 of 2") != NULL);
  FX_ASSERT_LOG(log, "client.log.blob: checksum differs from the manifest");
  FX_ASSERT_LOG(log, "data.pxar.didx");
  fx_close(&fx);
}

/* A manifest that cannot be read (here: larger than any manifest may be; in
 * the crash loop: removed by a prune after the listing) fails the snapshot
 * and leaves the task intact: the manifest struct was once freed without
 * ever having been initialised. */
UNIT_TEST(verify_unreadable_manifest)
{
  struct fx fx;
  fx_init(&fx, "gc-atime-safety-check=false");
  struct fx_ref a[] = {{1, 1000}};
  fx_snapshot(&fx, "", "vm", "1", T0, a, 1);
  fx_snapshot(&fx, "", "vm", "2", T0, a, 1);
  char p[STORE_PATH_MAX];
  ASSERT(store_path_file(p, sizeof(p), fx.base, "", "vm", "1", T0, FORMAT_MANIFEST_NAME) > 0);
  ASSERT_EQ(truncate(p, FORMAT_MANIFEST_MAX_LEN + 1024 * 1024), 0);
  struct gc_verify_opts o;
  fx_verify_opts(&o);
  for (int i = 0; i < 2; i++) {
    struct core_task *t = fx_verify(&fx, &o);
    const char *log = fx_task_log(&fx, t->upid);
    ASSERT(strstr(t->exitstatus, "failed for 1 of 2") != NULL);
    FX_ASSERT_LOG(log, "manifest index.json.blob: ");
  }
  fx_close(&fx);
}

UNIT_TEST(verify_skips_locked_and_aborts)
{
  struct fx fx;
  fx_init(&fx, "gc-atime-safety-check=false");
  struct fx_ref a[] = {{1, 1000}};
  fx_snapshot(&fx, "", "vm", "1", T0, a, 1);
  fx_snapshot(&fx, "", "vm", "1", T0 + 1, a, 1);
  char lockdir[STORE_PATH_MAX];
  ASSERT(store_lock_dir(lockdir, sizeof(lockdir), fx.run, FX_STORE) > 0);
  struct store_lock_guard g = STORE_LOCK_GUARD_INIT;
  ASSERT_OK(store_lock_snapshot(lockdir, "", "vm", "1", T0, STORE_LOCK_EXCLUSIVE, &g));
  struct gc_verify_opts o;
  fx_verify_opts(&o);
  struct core_task *t = fx_verify(&fx, &o);
  ASSERT_STR_EQ(t->exitstatus, "OK");
  FX_ASSERT_LOG(fx_task_log(&fx, t->upid), "SKIPPED: verify vm/1/2023-11-14T22:13:20Z - could not acquire snapshot lock");
  store_lock_release(&g);

  /* abort right after the start */
  struct fx_started s = {0};
  o.ignore_verified = 0;
  gc_start_verify(&fx.gc, FX_STORE, "root@pam", &o, fx_started_cb, &s);
  fx_wait_started(&fx, &s);
  ASSERT_OK(core_task_abort(core_tasks_find(fx.gc.tasks, s.upid)));
  t = fx_wait_task(&fx, s.upid);
  ASSERT_STR_EQ(t->exitstatus, "ERROR: aborted");
  /* no lock left behind */
  ASSERT_OK(store_lock_snapshot(lockdir, "", "vm", "1", T0 + 1, STORE_LOCK_EXCLUSIVE, &g));
  store_lock_release(&g);
  fx_close(&fx);
}

UNIT_MAIN(UNIT_CASE(verify_good_snapshots), UNIT_CASE(verify_finds_flipped_byte_and_missing_chunk),
          UNIT_CASE(verify_damaged_blob_and_index), UNIT_CASE(verify_unreadable_manifest),
          UNIT_CASE(verify_skips_locked_and_aborts))
