/* unit.h: Cairn's unit-test harness.
 *
 * A test file defines its cases with UNIT_TEST(name) and lists them in a
 * UNIT_MAIN(...) at the bottom. The runner forks one child per case with a
 * timeout (so a crash or a hang fails that case alone), prints one line per
 * case and a closing "N passed, N failed" line, and exits non-zero on failure.
 * `./test_x NAME...` runs only the named cases.
 */
#ifndef UNIT_H
#define UNIT_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct unit_case {
  const char *name;
  void (*fn)(void);
};

int unit_run(int argc, char **argv, const struct unit_case *cases, size_t n);
/* Reports a failure and ends the current case (the child exits). */
void unit_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
/* A fresh temporary directory for the current case, removed when it ends
 * (also when it fails or crashes). */
const char *unit_tmpdir(void);
/* The same on tmpfs (/dev/shm), or NULL where there is none. */
const char *unit_shmdir(void);
/* The path of a file under test/data. */
const char *unit_data(const char *name);
/* Appends `s` to the string in `buf` (`size` bytes in all); fails the test
 * if it does not fit. The bounded replacement of strcat in tests. */
void unit_append(char *buf, size_t size, const char *s);

#define UNIT_TEST(name) static void name(void)

#define UNIT_MAIN(...)                                                      \
  int main(int argc, char **argv)                                           \
  {                                                                         \
    static const struct unit_case cases[] = {__VA_ARGS__};                  \
    return unit_run(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));   \
  }
#define UNIT_CASE(fn) {#fn, fn}

#define ASSERT(cond)                                                        \
  do {                                                                      \
    if (!(cond))                                                            \
      unit_fail(__FILE__, __LINE__, "assertion failed: %s", #cond);         \
  } while (0)

#define ASSERT_EQ(a, b)                                                     \
  do {                                                                      \
    long long a_ = (long long)(a), b_ = (long long)(b);                     \
    if (a_ != b_)                                                           \
      unit_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, a_,   \
                b_);                                                        \
  } while (0)

#define ASSERT_STR_EQ(a, b)                                                 \
  do {                                                                      \
    const char *a_ = (a), *b_ = (b);                                        \
    if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)                    \
      unit_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b,   \
                a_ ? a_ : "(null)", b_ ? b_ : "(null)");                    \
  } while (0)

#define ASSERT_MEM_EQ(a, b, n)                                              \
  do {                                                                      \
    if (memcmp((a), (b), (n)) != 0)                                         \
      unit_fail(__FILE__, __LINE__, "memory %s != %s", #a, #b);             \
  } while (0)

#define ASSERT_OK(expr)                                                     \
  do {                                                                      \
    int rc_ = (expr);                                                       \
    if (rc_ < 0)                                                            \
      unit_fail(__FILE__, __LINE__, "%s failed: %d", #expr, rc_);           \
  } while (0)

#endif
