/* core_task.c: the task registry (see core_task.h).
 *
 * Every file operation happens in one of two kinds of pool jobs: a per-task
 * job (append buffered log text, then serve the log reads that were waiting)
 * and a registry job (rewrite the index, unlink the logs of dropped tasks).
 * Each kind has at most one job in flight per object, so writes to one file
 * never race and always land in order; requests that arrive meanwhile are
 * collected and served by the next job.
 */
#include "core/core_task.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_job.h"
#include "core/core_json.h"
#include "core/core_log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ABORTED_RESTART "ERROR: aborted: server restarted while the task was running"
#define ABORTED_SHUTDOWN "ERROR: aborted: server shut down while the task was running"

struct core_tasks {
  uv_loop_t *loop;
  char *dir;                 /* <run>/tasks */
  char *log_dir;             /* <run>/tasks/log */
  char *index_path;          /* <run>/tasks/index */
  uint32_t pid;
  uint64_t pstart;
  uint64_t next_id;
  struct core_task **tasks;  /* oldest first */
  size_t n, cap;
  size_t n_stopped;
  struct core_map by_upid;   /* upid -> struct core_task * */
  uv_timer_t flush_timer;    /* unref'd: never keeps the loop alive by itself */
  int timer_on;
  int saving;                /* an index job is in flight */
  int save_dirty;            /* state changed since that job's snapshot */
  char **doomed;             /* log files to unlink with the next index job */
  size_t n_doomed, cap_doomed;
  int jobs;                  /* jobs of this registry in flight */
  int timer_closed;
  struct core_map stats;     /* "type\tstore" -> run statistics (core_task_stats.c) */
};

struct core_task_read {
  struct core_task_read *next;
  uint64_t start, limit;
  core_task_read_cb cb;
  void *arg;
  /* out (pool job) */
  struct core_json json;
  uint64_t total;
  int rc;
};

/* ---- small helpers ------------------------------------------------------ */

static void format_time(int64_t epoch, char out[32])
{
  time_t tt = (time_t)epoch;
  struct tm tm;
  char z[8];
  localtime_r(&tt, &tm);
  size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  strftime(z, sizeof(z), "%z", &tm); /* +0200 -> +02:00 as RFC 3339 wants */
  if (strlen(z) == 5)
    snprintf(out + n, 32 - n, "%.3s:%.2s", z, z + 3);
  else
    snprintf(out + n, 32 - n, "Z");
}

static void sanitize(char *s)
{
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f)
      *s = ' ';
}

int core_task_escape_id(const char *in, char *out, size_t cap)
{
  size_t o = 0;
  for (size_t i = 0; in[i]; i++) {
    unsigned char c = (unsigned char)in[i];
    char tmp[5];
    size_t n;
    if (c == '/') {
      tmp[0] = '-';
      n = 1;
    } else if (isalnum(c) || c == '_' || (c == '.' && i > 0)) {
      tmp[0] = (char)c;
      n = 1;
    } else {
      snprintf(tmp, sizeof(tmp), "\\x%02x", c);
      n = 4;
    }
    if (o + n + 1 > cap)
      return CORE_ETOOBIG;
    memcpy(out + o, tmp, n);
    o += n;
  }
  if (o + 1 > cap)
    return CORE_ETOOBIG;
  out[o] = '\0';
  return (int)o;
}

static int parse_hex(const char *s, size_t len, size_t min, size_t max, uint64_t *out)
{
  if (len < min || len > max)
    return CORE_EPARSE;
  uint64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    int c = (unsigned char)s[i];
    int d = isdigit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                                   : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
    if (d < 0)
      return CORE_EPARSE;
    v = v << 4 | (uint64_t)d;
  }
  *out = v;
  return 0;
}

static int field_ok(const char *s, int allow_empty)
{
  if (!allow_empty && *s == '\0')
    return 0;
  for (; *s; s++)
    if (isspace((unsigned char)*s) || (unsigned char)*s < 0x20 || *s == 0x7f)
      return 0;
  return 1;
}

int core_upid_parse(const char *s, struct core_upid *out)
{
  size_t len = s ? strlen(s) : 0;
  if (len < 6 || len >= sizeof(out->buf) || strncmp(s, "UPID:", 5) != 0 || s[len - 1] != ':')
    return CORE_EPARSE;
  memcpy(out->buf, s + 5, len - 5);
  out->buf[len - 6] = '\0'; /* drop the trailing ':' */
  char *f[8];
  int nf = 0;
  char *p = out->buf;
  f[nf++] = p;
  for (; *p; p++) {
    if (*p == ':') {
      if (nf == 8)
        return CORE_EPARSE;
      *p = '\0';
      f[nf++] = p + 1;
    }
  }
  if (nf != 8)
    return CORE_EPARSE;
  /* node: a host name label */
  const char *node = f[0];
  size_t nl = strlen(node);
  if (nl == 0 || nl > 63 || !isalnum((unsigned char)node[0]) ||
      !isalnum((unsigned char)node[nl - 1]))
    return CORE_EPARSE;
  for (size_t i = 0; i < nl; i++)
    if (!isalnum((unsigned char)node[i]) && node[i] != '-')
      return CORE_EPARSE;
  uint64_t v;
  if (parse_hex(f[1], strlen(f[1]), 8, 8, &v) < 0)
    return CORE_EPARSE;
  out->pid = (uint32_t)v;
  if (parse_hex(f[2], strlen(f[2]), 8, 9, &out->pstart) < 0 ||
      parse_hex(f[3], strlen(f[3]), 8, 16, &out->task_id) < 0 ||
      parse_hex(f[4], strlen(f[4]), 8, 16, &v) < 0 || v > INT64_MAX)
    return CORE_EPARSE;
  out->starttime = (int64_t)v;
  if (!field_ok(f[5], 0) || !field_ok(f[6], 1) || !field_ok(f[7], 0))
    return CORE_EPARSE;
  out->node = f[0];
  out->type = f[5];
  out->worker_id = f[6];
  out->authid = f[7];
  return 0;
}

/* The unescaped worker id of a UPID (best effort: \xNN decoded, '-' -> '/').
 * Used only for tasks loaded from the index. */
static char *unescape_id(const char *s)
{
  size_t n = strlen(s);
  char *out = core_malloc(n + 1);
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    uint64_t v;
    if (s[i] == '\\' && i + 3 < n + 0 && s[i + 1] == 'x' && parse_hex(s + i + 2, 2, 2, 2, &v) == 0) {
      out[o++] = (char)v;
      i += 3;
    } else if (s[i] == '-') {
      out[o++] = '/';
    } else {
      out[o++] = s[i];
    }
  }
  out[o] = '\0';
  return out;
}

static uint64_t process_start_ticks(void)
{
  char buf[1024];
  int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  char *p = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
  if (p == NULL)
    return 0;
  /* After ')': state is field 3; starttime is field 22. */
  int field = 2;
  for (char *q = p + 1; *q; q++) {
    if (*q == ' ') {
      field++;
      if (field == 22)
        return strtoull(q + 1, NULL, 10);
    }
  }
  return 0;
}

/* ---- task objects ------------------------------------------------------- */

static struct core_task *task_alloc(struct core_tasks *r)
{
  struct core_task *t = core_new(struct core_task);
  t->reg = r;
  pthread_mutex_init(&t->log_mutex, NULL);
  core_buf_init(&t->pending, CORE_TASK_LOG_PENDING_MAX);
  return t;
}

static void task_free(struct core_task *t)
{
  core_free(t->upid);
  core_free(t->type);
  core_free(t->worker_id);
  core_free(t->authid);
  core_free(t->store);
  core_free(t->exitstatus);
  core_free(t->log_path);
  core_buf_free(&t->pending);
  pthread_mutex_destroy(&t->log_mutex);
  core_free(t);
}

static void reg_append(struct core_tasks *r, struct core_task *t)
{
  if (r->n == r->cap) {
    r->cap = r->cap ? r->cap * 2 : 64;
    r->tasks = core_realloc(r->tasks, r->cap * sizeof(*r->tasks));
  }
  r->tasks[r->n++] = t;
  core_map_put(&r->by_upid, t->upid, t);
}

static void append_line_locked(struct core_task *t, const char *text)
{
  char ts[32];
  format_time((int64_t)time(NULL), ts);
  if (t->dropped)
    return;
  if (core_buf_printf(&t->pending, "%s: %s\n", ts, text) < 0) {
    /* The writer cannot keep up (or the disk is gone): say so once and drop
     * lines rather than grow without bound. */
    t->dropped = 1;
    core_buf_printf(&t->pending, "%s: (log lines dropped: buffer full)\n", ts);
  }
  t->lines++;
}

static void vlog(struct core_task *t, const char *prefix, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void vlog(struct core_task *t, const char *prefix, const char *fmt, va_list ap)
{
  char line[CORE_TASK_LOG_LINE_MAX];
  size_t n = strlen(prefix);
  memcpy(line, prefix, n + 1);
  vsnprintf(line + n, sizeof(line) - n, fmt, ap);
  sanitize(line);
  pthread_mutex_lock(&t->log_mutex);
  append_line_locked(t, line);
  pthread_mutex_unlock(&t->log_mutex);
}

void core_task_log(struct core_task *t, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vlog(t, "", fmt, ap);
  va_end(ap);
}

void core_task_warn(struct core_task *t, const char *fmt, ...)
{
  va_list ap;
  atomic_fetch_add(&t->warnings, 1);
  va_start(ap, fmt);
  vlog(t, "WARN: ", fmt, ap);
  va_end(ap);
}

int core_task_aborted(const struct core_task *t)
{
  return atomic_load(&t->abort_requested);
}

void core_task_set_progress(struct core_task *t, double fraction)
{
  t->progress = fraction < 0 ? 0 : fraction > 1 ? 1 : fraction;
}

int core_task_failed(const struct core_task *t)
{
  return !t->running && t->exitstatus && strncmp(t->exitstatus, "ERROR", 5) == 0;
}

/* ---- per-task jobs: append, then read ------------------------------------ */

struct task_job {
  struct core_job job;
  struct core_task *t;
  char *path;                    /* in: log file, owned copy */
  char *data;                    /* in: text to append (owned), may be NULL */
  size_t len;
  struct core_task_read *readers; /* in/out: reads to serve after the append */
  int rc;                        /* out: append result */
};

/* Appends all of `data` to the log file or nothing: a write that fails
 * halfway (a full disk) is cut off again, which never needs space, so the
 * file only ever holds whole lines and a retry cannot duplicate any. */
static int append_file(const char *path, const char *data, size_t len)
{
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0)
    return -errno;
  struct stat st;
  int rc = 0;
  if (fstat(fd, &st) < 0) {
    rc = -errno;
  } else {
    rc = core_file_write_all(fd, data, len);
    if (rc < 0 && ftruncate(fd, st.st_size) < 0)
      core_warn("task log %s: cannot cut off a torn line: %s", path, strerror(errno));
  }
  if (close(fd) < 0 && rc == 0)
    rc = -errno;
  return rc;
}

/* Counts line number n (0-based) into every reader whose window holds it. */
static void serve_line(struct core_task_read *readers, uint64_t n, const char *line, size_t len)
{
  for (struct core_task_read *q = readers; q; q = q->next) {
    if (n >= q->start && n - q->start < q->limit) {
      core_json_obj_open(&q->json);
      core_json_kv_uint(&q->json, "n", n + 1);
      core_json_key(&q->json, "t");
      core_json_strn(&q->json, line, len);
      core_json_obj_close(&q->json);
    }
  }
}

/* Serves the readers from the log file, followed by `unwritten` (whole lines
 * the file could not take yet: they are part of the log all the same). */
static void read_windows(const char *path, struct core_task_read *readers,
                         const char *unwritten, size_t unwritten_len)
{
  for (struct core_task_read *q = readers; q; q = q->next) {
    core_json_init(&q->json, 0);
    core_json_arr_open(&q->json);
  }
  FILE *f = fopen(path, "re");
  uint64_t n = 0;
  int rc = 0;
  if (f == NULL) {
    rc = errno == ENOENT ? 0 : -errno; /* no line logged yet */
  } else {
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
      if (len > 0 && line[len - 1] == '\n')
        line[--len] = '\0';
      serve_line(readers, n++, line, (size_t)len);
    }
    if (ferror(f))
      rc = -EIO;
    free(line);
    fclose(f);
  }
  for (size_t i = 0; rc == 0 && i < unwritten_len;) {
    const char *nl = memchr(unwritten + i, '\n', unwritten_len - i);
    size_t len = nl ? (size_t)(nl - unwritten) - i : unwritten_len - i;
    serve_line(readers, n++, unwritten + i, len);
    i += len + 1;
  }
  for (struct core_task_read *q = readers; q; q = q->next) {
    core_json_arr_close(&q->json);
    q->total = n;
    q->rc = rc;
  }
}

static void task_job_run(struct core_job *j)
{
  struct task_job *job = (struct task_job *)j;
  if (job->data)
    job->rc = append_file(job->path, job->data, job->len);
  if (job->readers) {
    int failed = job->data && job->rc < 0;
    read_windows(job->path, job->readers, failed ? job->data : NULL, failed ? job->len : 0);
  }
}

/* Puts text a job could not write back in front of the lines logged since,
 * for the next flush to retry: a full disk is transient (GC frees space). */
static void task_unwrite(struct core_task *t, const char *text, size_t len)
{
  struct core_buf b;
  core_buf_init(&b, CORE_TASK_LOG_PENDING_MAX);
  pthread_mutex_lock(&t->log_mutex);
  int rc = core_buf_append(&b, text, len);
  if (rc == 0 && t->pending.len)
    rc = core_buf_append(&b, t->pending.base, t->pending.len);
  if (rc < 0)
    t->dropped = 1; /* older lines first: newer ones that no longer fit are dropped */
  core_buf_free(&t->pending);
  t->pending = b;
  pthread_mutex_unlock(&t->log_mutex);
}

static void task_kick(struct core_task *t);
static void reg_maybe_evict(struct core_tasks *r);

static void task_job_done(struct core_job *j, int status)
{
  struct task_job *job = (struct task_job *)j;
  struct core_task *t = job->t;
  struct core_tasks *r = t->reg;
  r->jobs--;
  t->busy = 0;
  int rc = status < 0 ? status : job->rc;
  if (job->data && (rc == -ENOSPC || rc == -EDQUOT)) {
    /* Keep the lines and retry at each flush tick; say so once. */
    if (!t->write_failed)
      core_warn("task log %s: %s; keeping its lines in memory until they can be written",
                job->path, core_strerror(rc));
    t->write_failed = 1;
    task_unwrite(t, job->data, job->len);
  } else if (job->data && rc < 0) {
    core_warn("task log %s: %s", job->path, core_strerror(rc)); /* lines dropped */
    t->write_failed = 0; /* nothing left to retry */
  } else if (job->data && t->write_failed) {
    t->write_failed = 0;
    core_info("task log %s: written again", job->path);
  }
  struct core_task_read *q = job->readers;
  while (q) {
    struct core_task_read *next = q->next;
    if (status < 0) {
      q->cb(q->arg, status, NULL, 0, 0);
    } else if (q->rc < 0) {
      q->cb(q->arg, q->rc, NULL, 0, 0);
    } else {
      size_t len;
      const char *text = core_json_text(&q->json, &len);
      q->cb(q->arg, 0, text, len, q->total);
    }
    if (status >= 0)
      core_json_free(&q->json);
    core_free(q);
    q = next;
  }
  core_free(job->data);
  core_free(job->path);
  core_free(job);
  if (!t->write_failed || t->readers)
    task_kick(t); /* after a failure, the next tick retries */
  reg_maybe_evict(r);
}

/* Starts the task's next job if it has work and none is in flight. */
static void task_kick(struct core_task *t)
{
  if (t->busy)
    return;
  struct core_tasks *r = t->reg;
  pthread_mutex_lock(&t->log_mutex);
  size_t len = 0;
  char *data = t->pending.len ? core_buf_steal(&t->pending, &len) : NULL;
  pthread_mutex_unlock(&t->log_mutex);
  if (data == NULL && t->readers == NULL)
    return;
  struct task_job *job = core_new(struct task_job);
  job->t = t;
  job->path = core_strdup(t->log_path);
  job->data = data;
  job->len = len;
  /* Readers were queued newest first; order does not matter to them. */
  job->readers = t->readers;
  t->readers = NULL;
  t->busy = 1;
  r->jobs++;
  int rc = core_job_submit(r->loop, &job->job, task_job_run, task_job_done);
  if (rc < 0) {
    /* Cannot happen with a live loop; report like a cancelled job. */
    task_job_done(&job->job, rc);
  }
}

void core_task_read_log(struct core_task *t, uint64_t start, uint64_t limit,
                        core_task_read_cb cb, void *arg)
{
  struct core_task_read *q = core_new(struct core_task_read);
  q->start = start;
  q->limit = (limit == 0 || limit > CORE_TASK_READ_MAX) ? CORE_TASK_READ_MAX : limit;
  q->cb = cb;
  q->arg = arg;
  q->next = t->readers;
  t->readers = q;
  task_kick(t);
}

/* ---- the index ---------------------------------------------------------- */

static void index_line(struct core_buf *b, const struct core_task *t)
{
  if (t->running)
    core_buf_printf(b, "%s\t%s\t-\t-\n", t->upid, t->store ? t->store : "-");
  else
    core_buf_printf(b, "%s\t%s\t%08" PRIX64 "\t%s\n", t->upid, t->store ? t->store : "-",
                    (uint64_t)t->endtime, t->exitstatus ? t->exitstatus : "unknown");
}

static char *index_text(struct core_tasks *r, size_t *len)
{
  struct core_buf b;
  core_buf_init(&b, SIZE_MAX / 2);
  for (size_t i = 0; i < r->n; i++)
    index_line(&b, r->tasks[i]);
  if (b.base == NULL)
    core_buf_append(&b, "", 0);
  return core_buf_steal(&b, len);
}

struct save_job {
  struct core_job job;
  struct core_tasks *r;
  char *path;      /* in (borrowed from the registry, which outlives the job) */
  char *text;      /* in, owned */
  size_t len;
  char **doomed;   /* in, owned: log files to unlink */
  size_t n_doomed;
  int rc;          /* out */
};

static void save_run(struct core_job *j)
{
  struct save_job *job = (struct save_job *)j;
  job->rc = core_file_replace(job->path, job->text, job->len, 0640, 0);
  for (size_t i = 0; i < job->n_doomed; i++)
    unlink(job->doomed[i]);
}

static void reg_save(struct core_tasks *r);

static void save_done(struct core_job *j, int status)
{
  struct save_job *job = (struct save_job *)j;
  struct core_tasks *r = job->r;
  r->jobs--;
  r->saving = 0;
  if (status < 0 || job->rc < 0)
    core_warn("task index %s: %s", job->path, core_strerror(status < 0 ? status : job->rc));
  for (size_t i = 0; i < job->n_doomed; i++)
    core_free(job->doomed[i]);
  core_free(job->doomed);
  core_free(job->text);
  core_free(job);
  if (r->save_dirty)
    reg_save(r);
}

/* Persists the current state; bursts coalesce into one write. */
static void reg_save(struct core_tasks *r)
{
  if (r->saving) {
    r->save_dirty = 1;
    return;
  }
  r->save_dirty = 0;
  struct save_job *job = core_new(struct save_job);
  job->r = r;
  job->path = r->index_path;
  job->text = index_text(r, &job->len);
  job->doomed = r->doomed;
  job->n_doomed = r->n_doomed;
  r->doomed = NULL;
  r->n_doomed = r->cap_doomed = 0;
  r->saving = 1;
  r->jobs++;
  int rc = core_job_submit(r->loop, &job->job, save_run, save_done);
  if (rc < 0)
    save_done(&job->job, rc);
}

/* Drops the oldest stopped tasks beyond CORE_TASKS_KEEP (those without a job
 * or a waiting reader). */
static void reg_maybe_evict(struct core_tasks *r)
{
  if (r->n_stopped <= CORE_TASKS_KEEP)
    return;
  size_t w = 0;
  int changed = 0;
  for (size_t i = 0; i < r->n; i++) {
    struct core_task *t = r->tasks[i];
    if (r->n_stopped > CORE_TASKS_KEEP && !t->running && !t->busy && !t->readers &&
        t->pending.len == 0) {
      core_map_del(&r->by_upid, t->upid);
      if (r->n_doomed == r->cap_doomed) {
        r->cap_doomed = r->cap_doomed ? r->cap_doomed * 2 : 16;
        r->doomed = core_realloc(r->doomed, r->cap_doomed * sizeof(*r->doomed));
      }
      r->doomed[r->n_doomed++] = t->log_path;
      t->log_path = NULL;
      task_free(t);
      r->n_stopped--;
      changed = 1;
      continue;
    }
    r->tasks[w++] = t;
  }
  r->n = w;
  if (changed)
    reg_save(r);
}

/* ---- flush timer -------------------------------------------------------- */

static void on_flush_tick(uv_timer_t *h)
{
  struct core_tasks *r = h->data;
  int active = 0;
  for (size_t i = 0; i < r->n; i++) {
    struct core_task *t = r->tasks[i];
    if (t->running || t->busy || t->write_failed)
      active = 1;
    pthread_mutex_lock(&t->log_mutex);
    size_t pending = t->pending.len;
    pthread_mutex_unlock(&t->log_mutex);
    if (pending)
      task_kick(t);
  }
  if (!active) {
    uv_timer_stop(&r->flush_timer);
    r->timer_on = 0;
  }
}

static void timer_on(struct core_tasks *r)
{
  if (r->timer_on)
    return;
  r->timer_on = 1;
  uv_timer_start(&r->flush_timer, on_flush_tick, CORE_TASK_FLUSH_MS, CORE_TASK_FLUSH_MS);
}

/* ---- start / finish / abort --------------------------------------------- */

struct core_task *core_task_start(struct core_tasks *r, const char *type,
                                  const char *worker_id, const char *authid,
                                  const char *store)
{
  char wid[CORE_TASK_UPID_MAX];
  char upid[CORE_TASK_UPID_MAX];
  if (core_task_escape_id(worker_id ? worker_id : "", wid, sizeof(wid)) < 0)
    return NULL;
  int64_t now = (int64_t)time(NULL);
  uint64_t id = r->next_id;
  int n = snprintf(upid, sizeof(upid), "UPID:localhost:%08" PRIX32 ":%08" PRIX64 ":%08" PRIX64
                   ":%08" PRIX64 ":%s:%s:%s:", r->pid, r->pstart, id, (uint64_t)now, type,
                   wid, authid ? authid : "root@pam");
  if (n < 0 || (size_t)n >= sizeof(upid))
    return NULL;
  r->next_id++;
  struct core_task *t = task_alloc(r);
  t->upid = core_strdup(upid);
  t->type = core_strdup(type);
  t->worker_id = core_strdup(worker_id ? worker_id : "");
  t->authid = core_strdup(authid ? authid : "root@pam");
  t->store = store ? core_strdup(store) : NULL;
  t->pid = r->pid;
  t->pstart = r->pstart;
  t->task_id = id;
  t->starttime = now;
  t->running = 1;
  t->log_path = core_asprintf("%s/%s", r->log_dir, upid);
  reg_append(r, t);
  timer_on(r);
  reg_save(r);
  return t;
}

static char *exit_status(struct core_task *t, int err, const char *msg)
{
  char *s;
  if (err == 0) {
    unsigned w = atomic_load(&t->warnings);
    s = w ? core_asprintf("WARNINGS: %u", w) : core_strdup("OK");
  } else {
    s = core_asprintf("ERROR: %s", msg ? msg : core_strerror(err));
  }
  sanitize(s);
  for (char *p = s; *p; p++)
    if (*p == '\t')
      *p = ' ';
  return s;
}

void core_task_finish(struct core_task *t, int err, const char *msg)
{
  struct core_tasks *r = t->reg;
  if (!t->running)
    return;
  t->exitstatus = exit_status(t, err, msg);
  core_task_log(t, "TASK %s", t->exitstatus);
  t->running = 0;
  t->endtime = (int64_t)time(NULL);
  if (t->endtime < t->starttime)
    t->endtime = t->starttime;
  t->on_abort = NULL;
  if (err == 0)
    t->progress = 1;
  r->n_stopped++;
  core__task_stats_record(&r->stats, t, 1);
  task_kick(t);
  reg_save(r);
  reg_maybe_evict(r);
}

int core_task_abort(struct core_task *t)
{
  if (!t->running)
    return CORE_EINVAL;
  if (atomic_exchange(&t->abort_requested, 1) == 0) {
    core_task_log(t, "received abort request");
    if (t->on_abort)
      t->on_abort(t, t->on_abort_arg);
  }
  return 0;
}

struct core_task *core_tasks_find(struct core_tasks *r, const char *upid)
{
  return upid ? core_map_get(&r->by_upid, upid) : NULL;
}

struct core_task *core_tasks_at(struct core_tasks *r, size_t i)
{
  return i < r->n ? r->tasks[r->n - 1 - i] : NULL;
}

size_t core_tasks_count(const struct core_tasks *r)
{
  return r->n;
}

/* ---- init / close (blocking) --------------------------------------------- */

static int mkdir_p(const char *path, mode_t mode)
{
  if (mkdir(path, mode) == 0 || errno == EEXIST)
    return 0;
  return -errno;
}

static void load_index(struct core_tasks *r)
{
  FILE *f = fopen(r->index_path, "re");
  if (f == NULL)
    return;
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int64_t now = (int64_t)time(NULL);
  int changed = 0;
  while ((len = getline(&line, &cap, f)) >= 0) {
    if (len > 0 && line[len - 1] == '\n')
      line[--len] = '\0';
    char *fields[4];
    int nf = 0;
    char *save = NULL;
    for (char *tok = strtok_r(line, "\t", &save); tok && nf < 4; tok = strtok_r(NULL, "\t", &save))
      fields[nf++] = tok;
    struct core_upid u;
    if (nf != 4 || core_upid_parse(fields[0], &u) < 0 ||
        core_map_get(&r->by_upid, fields[0]) != NULL)
      continue; /* a damaged line loses that task, not the index */
    struct core_task *t = task_alloc(r);
    t->upid = core_strdup(fields[0]);
    t->type = core_strdup(u.type);
    t->worker_id = unescape_id(u.worker_id);
    t->authid = core_strdup(u.authid);
    t->store = strcmp(fields[1], "-") ? core_strdup(fields[1]) : NULL;
    t->pid = u.pid;
    t->pstart = u.pstart;
    t->task_id = u.task_id;
    t->starttime = u.starttime;
    t->log_path = core_asprintf("%s/%s", r->log_dir, t->upid);
    t->progress = 1;
    uint64_t end;
    if (strcmp(fields[2], "-") == 0) {
      /* Running when its process died: aborted. */
      char ts[32];
      t->endtime = now;
      t->exitstatus = core_strdup(ABORTED_RESTART);
      format_time(now, ts);
      char *msg = core_asprintf("%s: TASK %s\n", ts, ABORTED_RESTART);
      append_file(t->log_path, msg, strlen(msg));
      core_free(msg);
      changed = 1;
    } else {
      t->endtime = parse_hex(fields[2], strlen(fields[2]), 1, 16, &end) == 0 ? (int64_t)end : now;
      t->exitstatus = core_strdup(strcmp(fields[3], "-") ? fields[3] : "unknown");
    }
    reg_append(r, t);
    r->n_stopped++;
  }
  free(line);
  fclose(f);
  if (changed) {
    size_t tlen;
    char *text = index_text(r, &tlen);
    int rc = core_file_replace(r->index_path, text, tlen, 0640, 0);
    if (rc < 0)
      core_warn("task index %s: %s", r->index_path, core_strerror(rc));
    core_free(text);
  }
}

int core_tasks_init(struct core_tasks **out, uv_loop_t *loop, const char *run_dir)
{
  struct core_tasks *r = core_new(struct core_tasks);
  r->loop = loop;
  r->dir = core_asprintf("%s/tasks", run_dir);
  r->log_dir = core_asprintf("%s/log", r->dir);
  r->index_path = core_asprintf("%s/index", r->dir);
  r->pid = (uint32_t)getpid();
  r->pstart = process_start_ticks();
  core_map_init(&r->by_upid);
  int rc = mkdir_p(r->dir, 0750);
  if (rc == 0)
    rc = mkdir_p(r->log_dir, 0750);
  if (rc < 0) {
    core_map_free(&r->by_upid);
    core_free(r->dir);
    core_free(r->log_dir);
    core_free(r->index_path);
    core_free(r);
    return rc;
  }
  load_index(r);
  core_map_init(&r->stats);
  for (size_t i = 0; i < r->n; i++)
    core__task_stats_record(&r->stats, r->tasks[i], 0);
  uv_timer_init(loop, &r->flush_timer);
  r->flush_timer.data = r;
  uv_unref((uv_handle_t *)&r->flush_timer);
  *out = r;
  return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
  struct core_tasks *r = h->data;
  r->timer_closed = 1;
}

void core_tasks_close(struct core_tasks *r)
{
  if (r == NULL)
    return;
  uv_timer_stop(&r->flush_timer);
  uv_close((uv_handle_t *)&r->flush_timer, on_timer_closed);
  /* Let our own jobs land (their callbacks touch tasks). */
  while (!r->timer_closed || r->jobs > 0)
    uv_run(r->loop, UV_RUN_ONCE);
  for (size_t i = 0; i < r->n; i++) {
    struct core_task *t = r->tasks[i];
    if (t->running) {
      t->exitstatus = core_strdup(ABORTED_SHUTDOWN);
      core_task_log(t, "TASK %s", ABORTED_SHUTDOWN);
      t->running = 0;
      t->endtime = (int64_t)time(NULL);
    }
    if (t->pending.len) {
      int rc = append_file(t->log_path, t->pending.base, t->pending.len);
      if (rc < 0)
        core_warn("task log %s: %s", t->log_path, core_strerror(rc));
    }
    for (struct core_task_read *q = t->readers, *next; q; q = next) {
      next = q->next;
      q->cb(q->arg, CORE_EABORTED, NULL, 0, 0);
      core_free(q);
    }
  }
  size_t len;
  char *text = index_text(r, &len);
  int rc = core_file_replace(r->index_path, text, len, 0640, 0);
  if (rc < 0)
    core_warn("task index %s: %s", r->index_path, core_strerror(rc));
  core_free(text);
  for (size_t i = 0; i < r->n_doomed; i++) {
    unlink(r->doomed[i]);
    core_free(r->doomed[i]);
  }
  core_free(r->doomed);
  for (size_t i = 0; i < r->n; i++)
    task_free(r->tasks[i]);
  core_free(r->tasks);
  core__task_stats_free(&r->stats);
  core_map_free(&r->by_upid);
  core_free(r->dir);
  core_free(r->log_dir);
  core_free(r->index_path);
  core_free(r);
}

int core_tasks_metrics_collect(void *ctx, struct core_buf *out)
{
  struct core_tasks *r = ctx;
  return core__task_stats_render(&r->stats, out);
}
