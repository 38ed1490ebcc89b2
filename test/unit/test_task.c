/* Unit tests for core_task: UPIDs, logs, exit states, persistence across a
 * restart, abort requests, eviction. */
#include "unit.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_task.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

static char *slurp(const char *path)
{
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return NULL;
  static char buf[1 << 20];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

UNIT_TEST(upid_format_and_parse)
{
  char esc[128];
  ASSERT_EQ(core_task_escape_id("store1:vm/100", esc, sizeof(esc)), 16);
  ASSERT_STR_EQ(esc, "store1\\x3avm-100");
  ASSERT(core_task_escape_id("a-b", esc, sizeof(esc)) > 0);
  ASSERT_STR_EQ(esc, "a\\x2db");
  ASSERT_EQ(core_task_escape_id("abcdef", esc, 4), CORE_ETOOBIG);

  struct core_upid u;
  ASSERT_OK(core_upid_parse("UPID:localhost:000004D2:0000ABCD:00000007:65A1B2C3:"
                            "garbage_collection:store1:root@pam!tok:", &u));
  ASSERT_STR_EQ(u.node, "localhost");
  ASSERT_EQ(u.pid, 1234);
  ASSERT_EQ(u.pstart, 0xabcd);
  ASSERT_EQ(u.task_id, 7);
  ASSERT_EQ(u.starttime, 0x65a1b2c3);
  ASSERT_STR_EQ(u.type, "garbage_collection");
  ASSERT_STR_EQ(u.worker_id, "store1");
  ASSERT_STR_EQ(u.authid, "root@pam!tok");
  /* empty worker id is allowed */
  ASSERT_OK(core_upid_parse("UPID:n:00000001:00000001:00000001:00000001:t::u@pam:", &u));
  const char *bad[] = {
    "", "UPID:", "UPID:localhost:1:2:3:4:t:w:u:",
    "UPID:localhost:000004D2:0000ABCD:00000007:65A1B2C3:gc:store1:root@pam",  /* no ':' */
    "UPID:localhost:000004D2:0000ABCD:00000007:65A1B2C3:gc:st ore:root@pam:", /* blank */
    "UPID:-bad:000004D2:0000ABCD:00000007:65A1B2C3:gc:s:root@pam:",
    "UPID:localhost:000004DZ:0000ABCD:00000007:65A1B2C3:gc:s:root@pam:",
    "UPID:localhost:000004D2:0000ABCD:00000007:65A1B2C3:gc:s:root@pam:extra:",
    "UPID:localhost:000004D2:0000ABCD:00000007:65A1B2C3::s:root@pam:",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    ASSERT_EQ(core_upid_parse(bad[i], &u), CORE_EPARSE);
}

struct read_result {
  int called;
  int err;
  char json[65536];
  uint64_t total;
};

static void on_read(void *arg, int err, const char *json, size_t len, uint64_t total)
{
  struct read_result *r = arg;
  r->called++;
  r->err = err;
  r->total = total;
  if (json) {
    ASSERT(len < sizeof(r->json));
    memcpy(r->json, json, len);
    r->json[len] = '\0';
  }
}

static void *log_thread(void *arg)
{
  struct core_task *t = arg;
  for (int i = 0; i < 500; i++)
    core_task_log(t, "thread line %d", i);
  return NULL;
}

UNIT_TEST(task_lifecycle_and_log)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct core_tasks *r;
  ASSERT_OK(core_tasks_init(&r, &loop, unit_tmpdir()));
  struct core_task *t = core_task_start(r, "garbage_collection", "store1", "root@pam!t", "store1");
  ASSERT(t != NULL);
  ASSERT(strncmp(t->upid, "UPID:localhost:", 15) == 0);
  ASSERT(strstr(t->upid, ":garbage_collection:store1:root@pam!t:") != NULL);
  ASSERT(core_tasks_find(r, t->upid) == t);
  ASSERT_EQ(core_tasks_count(r), 1);
  struct core_upid u;
  ASSERT_OK(core_upid_parse(t->upid, &u));
  ASSERT_EQ(u.pid, (uint32_t)getpid());

  core_task_log(t, "first line");
  core_task_log(t, "with\tcontrol\ncharacters");
  pthread_t th;
  pthread_create(&th, NULL, log_thread, t);
  pthread_join(th, NULL);
  core_task_warn(t, "careful");
  char upid[CORE_TASK_UPID_MAX];
  snprintf(upid, sizeof(upid), "%s", t->upid);

  /* A read sees everything logged before it, even before any flush. */
  struct read_result rr = {0};
  core_task_read_log(t, 0, 2, on_read, &rr);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(rr.called, 1);
  ASSERT_EQ(rr.err, 0);
  ASSERT_EQ(rr.total, 503);
  ASSERT(strstr(rr.json, "\"n\":1,\"t\":\"") != NULL);
  ASSERT(strstr(rr.json, ": first line\"") != NULL);
  ASSERT(strstr(rr.json, ": with control characters\"") != NULL);
  ASSERT(strstr(rr.json, "\"n\":3") == NULL);

  core_task_finish(t, 0, NULL);
  t = core_tasks_find(r, upid);
  ASSERT(t != NULL && !t->running);
  ASSERT_STR_EQ(t->exitstatus, "WARNINGS: 1");
  ASSERT(t->endtime >= t->starttime);

  struct read_result r2 = {0};
  core_task_read_log(t, 502, 10, on_read, &r2);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(r2.total, 504);
  ASSERT(strstr(r2.json, "WARN: careful") != NULL);
  ASSERT(strstr(r2.json, "\"n\":504,\"t\":\"") != NULL);
  ASSERT(strstr(r2.json, "TASK WARNINGS: 1") != NULL);

  struct core_task *t2 = core_task_start(r, "verify", "store1:vm/100", "root@pam", "store1");
  ASSERT(strstr(t2->upid, ":verify:store1\\x3avm-100:root@pam:") != NULL);
  ASSERT_STR_EQ(t2->worker_id, "store1:vm/100");
  ASSERT(core_tasks_at(r, 0) == t2); /* newest first */
  ASSERT(core_tasks_at(r, 1) == t);
  ASSERT(core_tasks_at(r, 2) == NULL);
  core_task_finish(t2, CORE_EDIGEST, "verification failed for 1 snapshot");
  ASSERT_STR_EQ(t2->exitstatus, "ERROR: verification failed for 1 snapshot");
  ASSERT(core_task_failed(t2));
  ASSERT(!core_task_failed(t));
  uv_run(&loop, UV_RUN_DEFAULT);

  char path[4096];
  snprintf(path, sizeof(path), "%s/tasks/index", unit_tmpdir());
  char *index = slurp(path);
  ASSERT(index != NULL);
  ASSERT(strstr(index, upid) != NULL);
  ASSERT(strstr(index, "\tstore1\t") != NULL);
  ASSERT(strstr(index, "ERROR: verification failed for 1 snapshot\n") != NULL);
  snprintf(path, sizeof(path), "%s/tasks/log/%s", unit_tmpdir(), upid);
  char *log = slurp(path);
  ASSERT(log != NULL);
  ASSERT(strstr(log, "TASK WARNINGS: 1\n") != NULL);

  core_tasks_close(r);
  ASSERT_EQ(uv_loop_close(&loop), 0);
}

static int aborted_calls;
static void on_abort(struct core_task *t, void *arg)
{
  ASSERT(arg == &aborted_calls);
  ASSERT(core_task_aborted(t));
  aborted_calls++;
}

UNIT_TEST(abort_and_restart)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct core_tasks *r;
  ASSERT_OK(core_tasks_init(&r, &loop, unit_tmpdir()));
  struct core_task *t = core_task_start(r, "verify", "s", "root@pam", "s");
  t->on_abort = on_abort;
  t->on_abort_arg = &aborted_calls;
  ASSERT(!core_task_aborted(t));
  ASSERT_OK(core_task_abort(t));
  ASSERT_OK(core_task_abort(t)); /* once only */
  ASSERT_EQ(aborted_calls, 1);
  char done_upid[CORE_TASK_UPID_MAX];
  snprintf(done_upid, sizeof(done_upid), "%s", t->upid);
  core_task_finish(t, CORE_EABORTED, "aborted");
  ASSERT_EQ(core_task_abort(core_tasks_find(r, done_upid)), CORE_EINVAL);

  /* Leave one running, then "crash": write the index as a dying process
   * would have left it, by starting another registry on the same run dir
   * without closing this one cleanly. */
  struct core_task *run = core_task_start(r, "garbage_collection", "s", "root@pam", "s");
  core_task_log(run, "working");
  char run_upid[CORE_TASK_UPID_MAX];
  snprintf(run_upid, sizeof(run_upid), "%s", run->upid);
  uv_run(&loop, UV_RUN_NOWAIT);
  /* let the index job land */
  for (int i = 0; i < 100 && r != NULL; i++) {
    uv_run(&loop, UV_RUN_ONCE);
    char path[4096];
    snprintf(path, sizeof(path), "%s/tasks/index", unit_tmpdir());
    char *index = slurp(path);
    if (index && strstr(index, run_upid) && strstr(index, "\t-\t-\n"))
      break;
  }
  char path[4096];
  snprintf(path, sizeof(path), "%s/tasks/index", unit_tmpdir());
  char saved[65536];
  const char *now = slurp(path);
  ASSERT(now != NULL && strlen(now) < sizeof(saved));
  memcpy(saved, now, strlen(now) + 1);
  ASSERT(strstr(saved, run_upid) != NULL);
  core_tasks_close(r); /* marks it aborted (shutdown) */
  /* Put back the crash-time index: the task still "running". */
  FILE *f = fopen(path, "w");
  fputs(saved, f);
  fclose(f);

  ASSERT_OK(core_tasks_init(&r, &loop, unit_tmpdir()));
  struct core_task *old = core_tasks_find(r, run_upid);
  ASSERT(old != NULL);
  ASSERT(!old->running);
  ASSERT(strstr(old->exitstatus, "ERROR: aborted") != NULL);
  ASSERT(strstr(old->exitstatus, "restarted") != NULL);
  ASSERT_STR_EQ(old->type, "garbage_collection");
  ASSERT_STR_EQ(old->store, "s");
  struct core_task *prev = core_tasks_find(r, done_upid);
  ASSERT(prev != NULL);
  ASSERT_STR_EQ(prev->exitstatus, "ERROR: aborted");
  struct read_result rr = {0};
  core_task_read_log(old, 0, 0, on_read, &rr);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(rr.err, 0);
  ASSERT(strstr(rr.json, "working") != NULL);
  ASSERT(strstr(rr.json, "TASK ERROR: aborted: server restarted") != NULL);
  core_tasks_close(r);

  /* And a clean shutdown with a running task records "shut down". */
  ASSERT_OK(core_tasks_init(&r, &loop, unit_tmpdir()));
  t = core_task_start(r, "prune", "s", "root@pam", NULL);
  snprintf(run_upid, sizeof(run_upid), "%s", t->upid);
  core_tasks_close(r);
  ASSERT_OK(core_tasks_init(&r, &loop, unit_tmpdir()));
  old = core_tasks_find(r, run_upid);
  ASSERT(old != NULL && !old->running);
  ASSERT(strstr(old->exitstatus, "shut down") != NULL);
  ASSERT(old->store == NULL);
  core_tasks_close(r);
  ASSERT_EQ(uv_loop_close(&loop), 0);
}

static void stop_loop(uv_timer_t *h)
{
  uv_stop(h->loop);
}

/* Runs the loop for `ms`, whatever keeps it alive (the flush timer is unref'd). */
static void run_for(uv_loop_t *loop, uint64_t ms)
{
  uv_timer_t tm;
  uv_timer_init(loop, &tm);
  uv_timer_start(&tm, stop_loop, ms, 0);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&tm, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
}

static int count(const char *hay, const char *needle)
{
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
    n++;
  return n;
}

/* A log file that cannot be written (a full disk: /dev/full answers ENOSPC)
 * keeps its lines in memory and gets all of them, once each and in order,
 * when it can be written again. */
UNIT_TEST(log_lines_survive_a_full_disk)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct core_tasks *r;
  ASSERT_OK(core_tasks_init(&r, &loop, unit_tmpdir()));
  struct core_task *t = core_task_start(r, "garbage_collection", "full", "root@pam", "full");
  char path[4096];
  snprintf(path, sizeof(path), "%s/tasks/log/%s", unit_tmpdir(), t->upid);
  ASSERT_OK(symlink("/dev/full", path));
  core_task_log(t, "line one");
  core_task_log(t, "line two");
  run_for(&loop, 3 * CORE_TASK_FLUSH_MS); /* a few ticks, every one fails */
  ASSERT(t->write_failed);
  ASSERT_EQ(t->dropped, 0);

  core_task_log(t, "line three");
  ASSERT_OK(unlink(path)); /* space again */
  run_for(&loop, 3 * CORE_TASK_FLUSH_MS);
  ASSERT(!t->write_failed);
  char *log = slurp(path);
  ASSERT(log != NULL);
  ASSERT_EQ(count(log, ": line one\n"), 1);
  ASSERT_EQ(count(log, ": line two\n"), 1);
  ASSERT_EQ(count(log, ": line three\n"), 1);
  ASSERT(strstr(log, "line one") < strstr(log, "line two"));
  ASSERT(strstr(log, "line two") < strstr(log, "line three"));

  core_task_finish(t, 0, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  log = slurp(path);
  ASSERT_EQ(count(log, ": line one\n"), 1);
  ASSERT(strstr(log, "TASK OK\n") != NULL);
  core_tasks_close(r);
  ASSERT_EQ(uv_loop_close(&loop), 0);
}

UNIT_TEST(eviction_keeps_recent)
{
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct core_tasks *r;
  ASSERT_OK(core_tasks_init(&r, &loop, unit_tmpdir()));
  char first[CORE_TASK_UPID_MAX];
  for (int i = 0; i < CORE_TASKS_KEEP + 20; i++) {
    struct core_task *t = core_task_start(r, "verify", "s", "root@pam", "s");
    if (i == 0)
      snprintf(first, sizeof(first), "%s", t->upid);
    core_task_log(t, "task %d", i);
    core_task_finish(t, 0, NULL);
    if (i % 50 == 0)
      uv_run(&loop, UV_RUN_DEFAULT);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(core_tasks_count(r), CORE_TASKS_KEEP);
  ASSERT(core_tasks_find(r, first) == NULL);
  char path[4096];
  snprintf(path, sizeof(path), "%s/tasks/log/%s", unit_tmpdir(), first);
  struct stat st;
  ASSERT(stat(path, &st) < 0); /* its log went with it */
  core_tasks_close(r);
  ASSERT_OK(core_tasks_init(&r, &loop, unit_tmpdir()));
  ASSERT_EQ(core_tasks_count(r), CORE_TASKS_KEEP);
  core_tasks_close(r);
  ASSERT_EQ(uv_loop_close(&loop), 0);
}

UNIT_MAIN(UNIT_CASE(upid_format_and_parse), UNIT_CASE(task_lifecycle_and_log),
          UNIT_CASE(abort_and_restart), UNIT_CASE(log_lines_survive_a_full_disk),
          UNIT_CASE(eviction_keeps_recent))
