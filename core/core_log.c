#include "core/core_log.h"

#include "core/core_error.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static _Atomic int log_level = CORE_LOG_INFO;
static _Atomic int log_stdout;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void core_log_set_level(enum core_log_level level)
{
  atomic_store(&log_level, (int)level);
}

enum core_log_level core_log_get_level(void)
{
  return (enum core_log_level)atomic_load(&log_level);
}

void core_log_to_stdout(void)
{
  setvbuf(stdout, NULL, _IOLBF, 0); /* a pipe would otherwise hold lines back */
  atomic_store(&log_stdout, 1);
}

int core_log_parse_level(const char *s, enum core_log_level *out)
{
  for (int i = 0; i < 4; i++) {
    if (strcmp(s, level_names[i]) == 0) {
      *out = (enum core_log_level)i;
      return 0;
    }
  }
  return CORE_EINVAL;
}

void core_log(enum core_log_level level, const char *fmt, ...)
{
  if ((int)level > atomic_load(&log_level))
    return;
  struct timeval tv;
  struct tm tm;
  char ts[32];
  char msg[2048];
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  fprintf(atomic_load(&log_stdout) ? stdout : stderr, "%s.%03dZ %-5s %s\n", ts,
          (int)(tv.tv_usec / 1000), level_names[level], msg);
}
