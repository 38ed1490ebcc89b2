/* core_log.h: leveled logging to stderr (or stdout) with timestamps.
 *
 * The level and the stream are process-wide state set once at startup (like
 * syslog's mask); writing a line is thread-safe because each line is one
 * fprintf call.
 */
#ifndef CORE_LOG_H
#define CORE_LOG_H

enum core_log_level {
  CORE_LOG_ERROR = 0,
  CORE_LOG_WARN  = 1,
  CORE_LOG_INFO  = 2,
  CORE_LOG_DEBUG = 3,
};

void core_log_set_level(enum core_log_level level);
enum core_log_level core_log_get_level(void);
/* Log lines go to stdout (line-buffered) instead of stderr: what container
 * runtimes that treat the two differently expect. Call before any thread
 * logs. */
void core_log_to_stdout(void);
/* Parses "error", "warn", "info", "debug"; returns 0 or CORE_EINVAL. */
int core_log_parse_level(const char *s, enum core_log_level *out);
void core_log(enum core_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define core_error(...) core_log(CORE_LOG_ERROR, __VA_ARGS__)
#define core_warn(...)  core_log(CORE_LOG_WARN, __VA_ARGS__)
#define core_info(...)  core_log(CORE_LOG_INFO, __VA_ARGS__)
#define core_debug(...) core_log(CORE_LOG_DEBUG, __VA_ARGS__)

#endif
