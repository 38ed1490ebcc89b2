#include "unit.h"

#include "core/core_alloc.h"
#include "core/core_buf.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_fmt.h"
#include "core/core_json.h"
#include "core/core_pool.h"
#include "core/core_sched.h"
#include "core/core_wake.h"
#include "http/http_bodypool.h"

#include <errno.h>
#include <stdatomic.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <uv.h>

UNIT_TEST(buf_bounded)
{
  struct core_buf b;
  core_buf_init(&b, 8);
  ASSERT_OK(core_buf_append_str(&b, "abcd"));
  ASSERT_OK(core_buf_printf(&b, "%d", 123));
  ASSERT_STR_EQ(b.base, "abcd123");
  ASSERT_EQ(core_buf_append_str(&b, "xy"), CORE_ETOOBIG);
  ASSERT_STR_EQ(b.base, "abcd123");
  ASSERT_OK(core_buf_append_str(&b, "x"));
  ASSERT_EQ(b.len, 8);
  core_buf_free(&b);
}

UNIT_TEST(sha256_hex)
{
  uint8_t d[32];
  char hex[65];
  core_sha256("hello", 5, d);
  core_hex_encode(d, 32, hex);
  ASSERT_STR_EQ(hex, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
  ASSERT(core_is_digest_hex(hex));
  uint8_t back[32];
  ASSERT_OK(core_hex_decode(hex, 32, back));
  ASSERT_MEM_EQ(back, d, 32);
  ASSERT(!core_is_digest_hex("2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824"));
  ASSERT_EQ(core_hex_decode("zz", 1, back), CORE_EPARSE);

  struct core_sha256 h;
  core_sha256_init(&h);
  core_sha256_update(&h, "hel", 3);
  core_sha256_update(&h, "lo", 2);
  uint8_t d2[32];
  core_sha256_final(&h, d2);
  ASSERT_MEM_EQ(d, d2, 32);
}

UNIT_TEST(crc32_matches_zlib)
{
  static const uint8_t hello[] = "hello";
  /* The CRC of PBS's "hello" blob vector, stored little-endian as 86a61036. */
  ASSERT_EQ(core_crc32(0, hello, 5), 0x3610a686u);
  uint8_t buf[100000];
  for (size_t i = 0; i < sizeof(buf); i++)
    buf[i] = (uint8_t)(i * 131 + 7);
  uint32_t whole = core_crc32(0, buf, sizeof(buf));
  uint32_t parts = core_crc32(core_crc32(0, buf, 33333), buf + 33333, sizeof(buf) - 33333);
  ASSERT_EQ(whole, parts);
  ASSERT_EQ(core_crc32(0, buf, 0), 0);
}

UNIT_TEST(strerror_covers_all)
{
  for (int e = CORE_EPARSE; e >= CORE_ELAST; e--)
    ASSERT(strcmp(core_strerror(e), "unknown Cairn error") != 0);
  ASSERT_STR_EQ(core_strerror(UV_ENOENT), "no such file or directory");
}

UNIT_TEST(json_roundtrip)
{
  struct core_json j;
  core_json_init(&j, 0);
  core_json_obj_open(&j);
  core_json_kv_str(&j, "name", "a\"b");
  core_json_kv_int(&j, "n", -5);
  core_json_key(&j, "raw");
  core_json_raw(&j, "[1,2]", 5);
  core_json_obj_close(&j);
  size_t len;
  const char *text = core_json_text(&j, &len);
  ASSERT_STR_EQ(text, "{\"name\":\"a\\\"b\",\"n\":-5,\"raw\":[1,2]}");

  yajl_val v;
  ASSERT_OK(core_json_parse(text, len, &v, NULL, 0));
  ASSERT_STR_EQ(core_json_get_str(v, "name"), "a\"b");
  int64_t n = 0;
  ASSERT_OK(core_json_get_int(v, "n", &n));
  ASSERT_EQ(n, -5);
  ASSERT(core_json_get_str(v, "n") == NULL);
  yajl_tree_free(v);
  core_json_free(&j);

  char err[128];
  ASSERT_EQ(core_json_parse("{\"a\":", 5, &v, err, sizeof(err)), CORE_EPARSE);
  ASSERT(err[0] != '\0');
}

UNIT_TEST(bodypool_recycles)
{
  struct http_bodypool p;
  size_t cap, cap2;
  http_bodypool_init(&p, 8u << 20);
  char *a = http_bodypool_get(&p, (4u << 20) + 13, &cap);
  ASSERT(a != NULL && ((uintptr_t)a & 4095) == 0);
  ASSERT_EQ(cap, 5u << 20);
  a[cap - 1] = 'x';
  http_bodypool_put(&p, a, cap);
  ASSERT_EQ(p.idle, 5u << 20);
  char *b = http_bodypool_get(&p, (4u << 20) + 100, &cap2); /* same class: reused */
  ASSERT(b == a && cap2 == cap);
  ASSERT_EQ(p.idle, 0);
  char *c = http_bodypool_get(&p, 5u << 20, &cap2);         /* another buffer */
  ASSERT(c != b);
  http_bodypool_put(&p, b, cap);
  http_bodypool_put(&p, c, cap2); /* over idle_max: freed */
  ASSERT_EQ(p.idle, 5u << 20);
  char *big = http_bodypool_get(&p, 40u << 20, &cap2);      /* beyond the classes */
  ASSERT_EQ(cap2, 40u << 20);
  http_bodypool_put(&p, big, cap2);
  ASSERT_EQ(p.idle, 5u << 20);
  struct core_buf buf;
  core_buf_init(&buf, 1 << 20);
  char *mem = http_bodypool_get(&p, 100000, &cap);
  ASSERT_EQ(cap, 1u << 20);
  core_buf_adopt(&buf, mem, cap);
  ASSERT_OK(core_buf_append(&buf, "abc", 3));
  ASSERT_STR_EQ(buf.base, "abc");
  http_bodypool_put(&p, buf.base, buf.cap);
  ASSERT_EQ(http_bodypool_trim(&p), 0); /* buffers were taken since init */
  ASSERT(p.idle > 0);
  ASSERT_EQ(http_bodypool_trim(&p), 6u << 20); /* idle for a whole period */
  ASSERT_EQ(p.idle, 0);
  http_bodypool_free(&p);
  ASSERT_EQ(p.idle, 0);
}

/* Jobs of a core_pool run off the loop thread and complete on it, all of
 * them, also when submitted from a done callback; stop waits for them. */
struct pool_job {
  struct core_job job;
  pthread_t ran_on;
  int *done_count;
  struct core_pool *pool;
  int resubmit;
};

static pthread_t loop_thread;

static void pool_run(struct core_job *j)
{
  ((struct pool_job *)j)->ran_on = pthread_self();
}

static void pool_done(struct core_job *j, int status)
{
  struct pool_job *p = (struct pool_job *)j;
  ASSERT_EQ(status, 0);
  ASSERT(pthread_equal(pthread_self(), loop_thread));
  ASSERT(!pthread_equal(p->ran_on, loop_thread));
  (*p->done_count)++;
  if (p->resubmit-- > 0) {
    core_job_submit(p->pool->loop, &p->job, pool_run, pool_done);
    return;
  }
  core_free(p);
}

/* core_wake: sends from another thread reach the loop (coalesced: at least
 * one callback after the last send), and the close callback gets the wake. */
struct wake_probe {
  struct core_wake w;
  _Atomic int sent;
  int calls, seen_all, closed;
};

static void *wake_sender(void *arg)
{
  struct wake_probe *p = arg;
  for (int i = 0; i < 100; i++) {
    atomic_fetch_add(&p->sent, 1);
    core_wake_send(&p->w);
  }
  return NULL;
}

static void wake_closed(uv_handle_t *h)
{
  struct wake_probe *p = ((struct core_wake *)h)->data;
  p->closed = 1;
}

static void wake_cb(struct core_wake *w)
{
  struct wake_probe *p = w->data;
  p->calls++;
  if (atomic_load(&p->sent) == 100) {
    p->seen_all = 1;
    core_wake_close(w, wake_closed);
  }
}

UNIT_TEST(wake_from_thread)
{
  uv_loop_t loop;
  struct wake_probe p;
  pthread_t t;
  memset(&p, 0, sizeof(p));
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_OK(core_wake_init(&loop, &p.w, wake_cb));
  p.w.data = &p;
  ASSERT_EQ(pthread_create(&t, NULL, wake_sender, &p), 0);
  uv_run(&loop, UV_RUN_DEFAULT); /* the referenced wake keeps it running until closed */
  ASSERT_EQ(pthread_join(t, NULL), 0);
  ASSERT_EQ(p.seen_all, 1);
  ASSERT_EQ(p.closed, 1);
  ASSERT(p.calls >= 1 && p.calls <= 100);
  ASSERT_OK(uv_loop_close(&loop));
}

UNIT_TEST(pool_completes_on_loop)
{
  uv_loop_t loop;
  struct core_pool pool;
  struct core_pool_opts o = {"test", 3, 5, 1, 1};
  int done = 0;
  loop_thread = pthread_self();
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_OK(core_pool_start(&pool, &loop, &o));
  ASSERT_EQ(pool.n, 3);
  core_job_attach_pool(&loop, &pool);
  for (int i = 0; i < 1000; i++) {
    struct pool_job *p = core_new(struct pool_job);
    p->done_count = &done;
    p->pool = &pool;
    p->resubmit = i % 3;
    ASSERT_OK(core_job_submit(&loop, &p->job, pool_run, pool_done));
  }
  ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0); /* returns once all are done */
  ASSERT_EQ(done, 1000 + 333 * 1 + 333 * 2); /* i % 3 resubmits each */
  core_pool_stop(&pool);
  core_job_attach_pool(&loop, NULL);
  ASSERT_OK(uv_loop_close(&loop));
}

/* The bulk lane never takes the last free thread: with every bulk slot busy
 * (blocked until a quick job has run) a quick job still starts, and no more
 * than threads - threads/4 bulk jobs ever run at once. */
struct lane_state {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int quick_ran, bulk_now, bulk_peak, bulk_timed_out, done;
};

struct lane_job {
  struct core_job job;
  struct lane_state *st;
};

static void lane_bulk_run(struct core_job *j)
{
  struct lane_state *st = ((struct lane_job *)j)->st;
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 10; /* a deadlock would hang here: fail instead */
  pthread_mutex_lock(&st->mu);
  if (++st->bulk_now > st->bulk_peak)
    st->bulk_peak = st->bulk_now;
  while (!st->quick_ran)
    if (pthread_cond_timedwait(&st->cv, &st->mu, &until) != 0) {
      st->bulk_timed_out++;
      break;
    }
  st->bulk_now--;
  pthread_mutex_unlock(&st->mu);
}

static void lane_quick_run(struct core_job *j)
{
  struct lane_state *st = ((struct lane_job *)j)->st;
  pthread_mutex_lock(&st->mu);
  st->quick_ran = 1;
  pthread_cond_broadcast(&st->cv);
  pthread_mutex_unlock(&st->mu);
}

static void lane_done(struct core_job *j, int status)
{
  ASSERT_EQ(status, 0);
  ((struct lane_job *)j)->st->done++;
  core_free(j);
}

UNIT_TEST(pool_bulk_lane_keeps_a_thread)
{
  uv_loop_t loop;
  struct core_pool pool;
  struct core_pool_opts o = {"lanes", 4, 0, 0, 0};
  struct lane_state st;
  memset(&st, 0, sizeof(st));
  pthread_mutex_init(&st.mu, NULL);
  pthread_cond_init(&st.cv, NULL);
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_OK(core_pool_start(&pool, &loop, &o));
  core_job_attach_pool(&loop, &pool);
  for (int i = 0; i < 10; i++) {
    struct lane_job *b = core_new(struct lane_job);
    b->st = &st;
    ASSERT_OK(core_job_submit_bulk(&loop, &b->job, lane_bulk_run, lane_done));
  }
  struct lane_job *q = core_new(struct lane_job);
  q->st = &st;
  ASSERT_OK(core_job_submit(&loop, &q->job, lane_quick_run, lane_done));
  ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ASSERT_EQ(st.done, 11);
  ASSERT_EQ(st.bulk_timed_out, 0);
  ASSERT(st.bulk_peak <= 3);
  core_pool_stop(&pool);
  core_job_attach_pool(&loop, NULL);
  ASSERT_OK(uv_loop_close(&loop));
  pthread_cond_destroy(&st.cv);
  pthread_mutex_destroy(&st.mu);
}

/* core_sched_nice_self changes the calling thread only; below 0 (when the
 * test may: root, CAP_SYS_NICE or RLIMIT_NICE) threads created afterwards,
 * plain or a pool's, start at 0 or their pool's value, not at the raised
 * priority; without the right it fails with EACCES/EPERM and changes
 * nothing. Pool threads carry their pool's name. Results are collected in
 * the threads and checked here. */
struct sched_probe {
  int before;                       /* the test's own nice value */
  int lowered_rc, lowered_nice;     /* 3 more in a thread */
  int raised_rc, raised_nice;       /* nice -5 in a thread */
  int child_nice;                   /* a thread created after that */
  int worker_nice;                  /* a pool (nice 2) worker created after that */
  int worker_policy;                /* and its scheduling policy */
  char worker_name[16];
};

static int thread_nice(void)
{
  return getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
}

static void *probe_child(void *arg)
{
  ((struct sched_probe *)arg)->child_nice = thread_nice();
  return NULL;
}

struct probe_job {
  struct core_job job;
  struct sched_probe *pr;
};

static void probe_job_run(struct core_job *j)
{
  struct sched_probe *pr = ((struct probe_job *)j)->pr;
  pr->worker_nice = thread_nice();
  /* the kernel's value: glibc's pthread_getschedparam answers from what it
   * copied from the creating thread */
  pr->worker_policy = sched_getscheduler(0) & ~SCHED_RESET_ON_FORK;
  pthread_getname_np(pthread_self(), pr->worker_name, sizeof(pr->worker_name));
}

static void probe_job_done(struct core_job *j, int status)
{
  (void)status;
  core_free(j);
}

static void *probe_lowered(void *arg)
{
  struct sched_probe *pr = arg;
  pr->lowered_rc = core_sched_nice_self(pr->before + 3 > 19 ? 19 : pr->before + 3);
  pr->lowered_nice = thread_nice();
  return NULL;
}

static void *probe_raised(void *arg)
{
  struct sched_probe *pr = arg;
  pthread_t t;
  uv_loop_t loop;
  struct core_pool pool;
  struct core_pool_opts o = {"probe", 1, 2, 0, 0};
  pr->raised_rc = core_sched_nice_self(-5);
  pr->raised_nice = thread_nice();
  if (pthread_create(&t, NULL, probe_child, pr) == 0)
    pthread_join(t, NULL);
  if (uv_loop_init(&loop) == 0) {
    if (core_pool_start(&pool, &loop, &o) == 0) {
      struct probe_job *j = core_new(struct probe_job);
      j->pr = pr;
      core_pool_submit(&pool, &j->job, probe_job_run, probe_job_done);
      uv_run(&loop, UV_RUN_DEFAULT);
      core_pool_stop(&pool);
    }
    uv_loop_close(&loop);
  }
  return NULL;
}

UNIT_TEST(sched_nice_per_thread)
{
  struct sched_probe pr;
  pthread_t t;
  int before = thread_nice();
  memset(&pr, 0, sizeof(pr));
  pr.before = before;
  pr.child_nice = pr.worker_nice = 99;
  ASSERT_EQ(pthread_create(&t, NULL, probe_lowered, &pr), 0);
  ASSERT_EQ(pthread_join(t, NULL), 0);
  ASSERT_EQ(pr.lowered_rc, 0);
  ASSERT_EQ(pr.lowered_nice, before + 3 > 19 ? 19 : before + 3);
  ASSERT_EQ(thread_nice(), before); /* this thread is untouched */

  ASSERT_EQ(pthread_create(&t, NULL, probe_raised, &pr), 0);
  ASSERT_EQ(pthread_join(t, NULL), 0);
  if (pr.raised_rc == 0) {
    ASSERT_EQ(pr.raised_nice, -5);
    ASSERT_EQ(pr.child_nice, 0);
  } else {
    ASSERT(pr.raised_rc == -EACCES || pr.raised_rc == -EPERM);
    ASSERT_EQ(pr.raised_nice, before);
  }
  /* the pool sets 2; without the right to go below `before`, it stays there */
  ASSERT_EQ(pr.worker_nice, pr.raised_rc == 0 || before <= 2 ? 2 : before);
  ASSERT_EQ(strcmp(pr.worker_name, "probe-0"), 0);
}

/* core_sched_fifo_self: the calling thread only, and a thread it creates
 * afterwards (a pool's worker) is back under SCHED_OTHER at its pool's nice
 * value; without the right it fails with EPERM and changes nothing. */
struct fifo_probe {
  int rc, policy, prio;
  int worker_policy, worker_nice;
};

static void *probe_fifo(void *arg)
{
  struct fifo_probe *fp = arg;
  struct sched_param sp = {0};
  fp->rc = core_sched_fifo_self(1);
  fp->policy = sched_getscheduler(0) & ~SCHED_RESET_ON_FORK;
  sched_getparam(0, &sp);
  fp->prio = sp.sched_priority;
  uv_loop_t loop;
  struct core_pool pool;
  struct core_pool_opts o = {"fifo", 1, 3, 0, 0};
  struct sched_probe pr;
  memset(&pr, 0, sizeof(pr));
  if (uv_loop_init(&loop) == 0) {
    if (core_pool_start(&pool, &loop, &o) == 0) {
      struct probe_job *j = core_new(struct probe_job);
      j->pr = &pr;
      core_pool_submit(&pool, &j->job, probe_job_run, probe_job_done);
      uv_run(&loop, UV_RUN_DEFAULT);
      core_pool_stop(&pool);
    }
    uv_loop_close(&loop);
  }
  fp->worker_nice = pr.worker_nice;
  fp->worker_policy = pr.worker_policy;
  return NULL;
}

UNIT_TEST(sched_fifo_per_thread)
{
  struct fifo_probe fp;
  pthread_t t;
  memset(&fp, 0, sizeof(fp));
  ASSERT_EQ(pthread_create(&t, NULL, probe_fifo, &fp), 0);
  ASSERT_EQ(pthread_join(t, NULL), 0);
  ASSERT_EQ(sched_getscheduler(0), SCHED_OTHER); /* this thread is untouched */
  if (fp.rc == 0) {
    ASSERT_EQ(fp.policy, SCHED_FIFO);
    ASSERT_EQ(fp.prio, 1);
  } else {
    ASSERT(fp.rc == -EPERM);
    ASSERT_EQ(fp.policy, SCHED_OTHER);
  }
  ASSERT_EQ(fp.worker_policy, SCHED_OTHER);
  ASSERT_EQ(fp.worker_nice, 3);
}

/* Three significant digits in binary units; whole bytes below 1 KiB. */
UNIT_TEST(fmt_bytes)
{
  static const struct {
    uint64_t n;
    const char *text;
  } cases[] = {
      {0, "0 B"},
      {1, "1 B"},
      {1023, "1023 B"},
      {1024, "1.00 KiB"},
      {1536, "1.50 KiB"},
      {10 * 1024 - 1, "10.0 KiB"},  /* 9.999 KiB: rounds up to 3 digits */
      {10 * 1024, "10.0 KiB"},
      {100 * 1024 - 1, "100 KiB"},  /* 99.999 KiB */
      {100 * 1024, "100 KiB"},
      {1048063, "1023 KiB"},        /* 1023.499 KiB */
      {1048064, "1.00 MiB"},        /* 1023.5 KiB would print "1024 KiB" */
      {(uint64_t)200 << 20, "200 MiB"},
      {(uint64_t)25 << 30, "25.0 GiB"},
      {(uint64_t)3 << 40, "3.00 TiB"},
      {(uint64_t)5 << 50, "5.00 PiB"},
      {(uint64_t)2048 << 50, "2048 PiB"}, /* PiB is the largest unit */
      {UINT64_MAX, "16384 PiB"},
  };
  char s[32];
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    core_fmt_bytes(cases[i].n, s, sizeof(s));
    ASSERT_STR_EQ(s, cases[i].text);
  }
  /* 16 bytes hold the longest text; a shorter buffer truncates. */
  char small[5];
  core_fmt_bytes(1536, small, sizeof(small));
  ASSERT_STR_EQ(small, "1.50");
}

UNIT_MAIN(UNIT_CASE(buf_bounded), UNIT_CASE(bodypool_recycles), UNIT_CASE(wake_from_thread), UNIT_CASE(pool_completes_on_loop), UNIT_CASE(pool_bulk_lane_keeps_a_thread), UNIT_CASE(sched_nice_per_thread), UNIT_CASE(sched_fifo_per_thread),
          UNIT_CASE(sha256_hex), UNIT_CASE(crc32_matches_zlib),
          UNIT_CASE(strerror_covers_all),
          UNIT_CASE(json_roundtrip), UNIT_CASE(fmt_bytes))
