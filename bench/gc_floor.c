/* gc_floor.c: the unlink floor of a GC sweep, for bench/gc.py (issue #20).
 *
 *   gc_floor CHUNKS_DIR THREADS LIST [idle]
 *
 * LIST holds one "<prefix>/<name>" per line (files under CHUNKS_DIR, in the
 * chunk store's 65536-prefix layout). THREADS threads unlink them, each over
 * a contiguous range of prefix directories as GC's sweepers divide them
 * (gc_local.c), through a descriptor of the prefix directory. With `idle`,
 * every thread runs as GC's workers do (core_pool.c): SCHED_IDLE, nice 19,
 * the lowest best-effort I/O priority. Only the unlinks are timed: the list is
 * read and sorted before the clock starts. Prints one key=value line:
 *   files=.. unlinked=.. errors=.. threads=.. unlink_s=.. cpu_s=..
 * (cpu_s: user + system time of the process over the unlinks)
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PREFIXES 65536u
#define MAX_THREADS 64

struct entry {
  unsigned prefix;
  char *name;
};

struct worker {
  pthread_t th;
  int root;
  int idle;
  struct entry *e; /* this worker's entries, sorted by prefix */
  size_t n;
  size_t unlinked;
  size_t errors;
  pthread_barrier_t *start;
};

static int cmp_entry(const void *a, const void *b)
{
  const struct entry *x = a, *y = b;
  if (x->prefix != y->prefix)
    return x->prefix < y->prefix ? -1 : 1;
  return strcmp(x->name, y->name);
}

/* The scheduling of GC's workers (core_pool.c), applied to this thread. */
static void make_idle(void)
{
  struct sched_param sp = {0};
  pid_t tid = (pid_t)syscall(SYS_gettid);
  setpriority(PRIO_PROCESS, (id_t)tid, 19);
  pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
  /* IOPRIO_WHO_PROCESS, class best-effort (2) level 7 */
  syscall(SYS_ioprio_set, 1, tid, (2 << 13) | 7);
}

static void *run(void *arg)
{
  struct worker *w = arg;
  if (w->idle)
    make_idle();
  pthread_barrier_wait(w->start);
  int dfd = -1;
  unsigned cur = PREFIXES;
  for (size_t i = 0; i < w->n; i++) {
    if (w->e[i].prefix != cur) {
      char pfx[8];
      if (dfd >= 0)
        close(dfd);
      cur = w->e[i].prefix;
      snprintf(pfx, sizeof(pfx), "%04x", cur);
      dfd = openat(w->root, pfx, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (dfd < 0 || unlinkat(dfd, w->e[i].name, 0) < 0)
      w->errors++;
    else
      w->unlinked++;
  }
  if (dfd >= 0)
    close(dfd);
  return NULL;
}

static int read_list(const char *path, struct entry **out, size_t *count)
{
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -errno;
  size_t n = 0, cap = 0;
  struct entry *e = NULL;
  char line[512];
  while (fgets(line, sizeof(line), f)) {
    line[strcspn(line, "\r\n")] = '\0';
    char *slash = strchr(line, '/');
    char *end;
    if (slash == NULL)
      continue;
    *slash = '\0';
    unsigned long p = strtoul(line, &end, 16);
    if (*end != '\0' || p >= PREFIXES)
      continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 65536;
      struct entry *ne = realloc(e, cap * sizeof(*e));
      if (ne == NULL)
        abort();
      e = ne;
    }
    e[n].prefix = (unsigned)p;
    e[n].name = strdup(slash + 1);
    if (e[n].name == NULL)
      abort();
    n++;
  }
  fclose(f);
  *out = e;
  *count = n;
  return 0;
}

int main(int argc, char **argv)
{
  if (argc < 4 || argc > 5 || (argc == 5 && strcmp(argv[4], "idle") != 0)) {
    fprintf(stderr, "usage: gc_floor CHUNKS_DIR THREADS LIST [idle]\n");
    return 2;
  }
  char *end;
  long nt = strtol(argv[2], &end, 10);
  if (*end != '\0' || nt < 1 || nt > MAX_THREADS) {
    fprintf(stderr, "gc_floor: THREADS must be 1..%d\n", MAX_THREADS);
    return 2;
  }
  int root = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) {
    fprintf(stderr, "gc_floor: %s: %s\n", argv[1], strerror(errno));
    return 1;
  }
  struct entry *e = NULL;
  size_t n = 0;
  int rc = read_list(argv[3], &e, &n);
  if (rc < 0) {
    fprintf(stderr, "gc_floor: %s: %s\n", argv[3], strerror(-rc));
    return 1;
  }
  qsort(e, n, sizeof(*e), cmp_entry);

  /* Thread i takes prefixes [65536 i / T, 65536 (i + 1) / T), as GC's sweepers. */
  struct worker w[MAX_THREADS];
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, (unsigned)nt + 1);
  size_t pos = 0;
  for (long i = 0; i < nt; i++) {
    unsigned last = (unsigned)(PREFIXES * (unsigned long long)(i + 1) / (unsigned long long)nt);
    size_t from = pos;
    while (pos < n && e[pos].prefix < last)
      pos++;
    w[i] = (struct worker){.root = root, .idle = argc == 5, .e = e + from, .n = pos - from,
                           .start = &start};
    if (pthread_create(&w[i].th, NULL, run, &w[i]) != 0) {
      fprintf(stderr, "gc_floor: cannot start a thread\n");
      return 1;
    }
  }
  struct timespec t0, t1;
  struct rusage ru0, ru1;
  getrusage(RUSAGE_SELF, &ru0);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  pthread_barrier_wait(&start);
  size_t unlinked = 0, errors = 0;
  for (long i = 0; i < nt; i++) {
    pthread_join(w[i].th, NULL);
    unlinked += w[i].unlinked;
    errors += w[i].errors;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  getrusage(RUSAGE_SELF, &ru1);
  double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec -
                        ru0.ru_stime.tv_sec) +
               (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec -
                        ru0.ru_stime.tv_usec) / 1e6;
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("files=%zu unlinked=%zu errors=%zu threads=%ld unlink_s=%.3f cpu_s=%.3f\n", n,
         unlinked, errors, nt, secs, cpu);
  for (size_t i = 0; i < n; i++)
    free(e[i].name);
  free(e);
  pthread_barrier_destroy(&start);
  close(root);
  return errors ? 1 : 0;
}
