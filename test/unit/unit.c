#include "unit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef UNIT_DATA_DIR
#define UNIT_DATA_DIR "test/data"
#endif

/* The current case's directories, made before it starts and removed by the
 * runner after it ended, however it ended. */
static char tmpdir[256];
static char shmdir[256];
static char datapath[1024];

void unit_fail(const char *file, int line, const char *fmt, ...)
{
  va_list ap;
  fprintf(stderr, "  %s:%d: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  _exit(1);
}

const char *unit_tmpdir(void)
{
  return tmpdir;
}

const char *unit_shmdir(void)
{
  return shmdir[0] ? shmdir : NULL;
}

const char *unit_data(const char *name)
{
  snprintf(datapath, sizeof(datapath), "%s/%s", UNIT_DATA_DIR, name);
  return datapath;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)st, (void)flag, (void)ftw;
  chmod(path, 0700);
  return remove(path);
}

static void make_dirs(void)
{
  snprintf(tmpdir, sizeof(tmpdir), "/tmp/cairn-unit-XXXXXX");
  if (mkdtemp(tmpdir) == NULL) {
    perror("mkdtemp");
    exit(1);
  }
  snprintf(shmdir, sizeof(shmdir), "/dev/shm/cairn-unit-XXXXXX");
  if (mkdtemp(shmdir) == NULL)
    shmdir[0] = '\0'; /* no tmpfs here */
}

static void remove_dirs(void)
{
  nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  if (shmdir[0])
    nftw(shmdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  tmpdir[0] = shmdir[0] = '\0';
}

static int selected(int argc, char **argv, const char *name)
{
  if (argc < 2)
    return 1;
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], name) == 0)
      return 1;
  return 0;
}

int unit_run(int argc, char **argv, const struct unit_case *cases, size_t n)
{
  int passed = 0, failed = 0;
  unsigned timeout = 120;
  const char *t = getenv("UNIT_TIMEOUT");
  if (t)
    timeout = (unsigned)strtoul(t, NULL, 10);
  signal(SIGPIPE, SIG_IGN);

  for (size_t i = 0; i < n; i++) {
    if (!selected(argc, argv, cases[i].name))
      continue;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    fflush(stdout);
    make_dirs();
    pid_t pid = fork();
    if (pid == 0) {
      alarm(timeout);
      cases[i].fn();
      fflush(stdout);
      /* exit, not _exit: LeakSanitizer runs from an atexit hook. */
      exit(0);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
      ;
    remove_dirs();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
                (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (ok) {
      passed++;
      printf("ok   %s (%.0f ms)\n", cases[i].name, ms);
    } else {
      failed++;
      if (WIFSIGNALED(status))
        printf("FAIL %s (signal %d%s)\n", cases[i].name, WTERMSIG(status),
               WTERMSIG(status) == SIGALRM ? ", timeout" : "");
      else
        printf("FAIL %s\n", cases[i].name);
    }
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

void unit_append(char *buf, size_t size, const char *s)
{
  size_t len = strlen(buf);
  if (len >= size || (size_t)snprintf(buf + len, size - len, "%s", s) >= size - len)
    unit_fail(__FILE__, __LINE__, "unit_append: \"%s\" does not fit", s);
}
