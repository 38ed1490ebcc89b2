/* sync_rate.c: token buckets for rate-in/burst-in and rate-out/burst-out.
 *
 * Engine threads take the bytes they moved after moving them; a bucket in
 * debt makes the taker sleep until it is paid off, so over any window
 * longer than one transfer the rate holds, whatever the number of threads.
 * Sleeping is fine here: engine threads are not the loop and not the pool.
 */
#include "sync/sync.h"

#include "core/core_error.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static int64_t mono_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void sync_rate_init(struct sync_rate *r, uint64_t rate, uint64_t burst)
{
  memset(r, 0, sizeof(*r));
  pthread_mutex_init(&r->mutex, NULL);
  r->rate = rate;
  /* Without a burst, a tenth of a second's worth: small enough that the
   * rate holds over short windows, large enough to not sleep per chunk. */
  r->burst = burst ? burst : rate / 10;
  r->tokens = (double)r->burst;
  r->last_ns = mono_ns();
}

void sync_rate_destroy(struct sync_rate *r)
{
  pthread_mutex_destroy(&r->mutex);
}

/* Moves `debit` bytes of tokens out of the bucket (a negative debit puts
 * them back), counts `moved` bytes as transferred, and with `wait` sleeps
 * until the bucket is out of debt. */
static void debit(struct sync_rate *r, int64_t debit_bytes, uint64_t moved, int wait)
{
  atomic_fetch_add(&r->bytes, moved);
  pthread_mutex_lock(&r->mutex);
  int64_t now = mono_ns();
  if (r->first_ns == 0)
    r->first_ns = now;
  if (moved)
    r->last_ns_take = now;
  if (r->rate == 0) {
    pthread_mutex_unlock(&r->mutex);
    return;
  }
  r->tokens += (double)(now - r->last_ns) * (double)r->rate / 1e9;
  if (r->tokens > (double)r->burst)
    r->tokens = (double)r->burst;
  r->last_ns = now;
  r->tokens -= (double)debit_bytes;
  double debt = -r->tokens;
  pthread_mutex_unlock(&r->mutex);
  if (!wait || debt <= 0)
    return;
  /* Sleep for the debt: the bucket refills meanwhile. Later takers see the
   * debt too and sleep for theirs, so threads share the rate. */
  double secs = debt / (double)r->rate;
  struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
  while (nanosleep(&ts, &ts) < 0)
    ;
}

void sync_rate_take(struct sync_rate *r, uint64_t n)
{
  debit(r, (int64_t)n, n, 1);
}

void sync_rate_reserve(struct sync_rate *r, uint64_t n)
{
  debit(r, (int64_t)n, 0, 1);
}

void sync_rate_settle(struct sync_rate *r, uint64_t reserved, uint64_t actual)
{
  debit(r, (int64_t)actual - (int64_t)reserved, actual, 0);
}

double sync_rate_window(struct sync_rate *r)
{
  pthread_mutex_lock(&r->mutex);
  double w = r->first_ns ? (double)(r->last_ns_take - r->first_ns) / 1e9 : 0;
  pthread_mutex_unlock(&r->mutex);
  return w;
}

int sync_rate_parse(const char *s, uint64_t *out)
{
  char *end;
  if (s == NULL || *s == '\0' || *s == '-')
    return CORE_EINVAL;
  double v = strtod(s, &end);
  if (end == s || !(v >= 0) || v > 1e15)
    return CORE_EINVAL;
  double mul = 1;
  /* PBS's byte sizes: K, M, G, T are powers of 1000 with B or none, KiB
   * etc. powers of 1024. */
  static const struct {
    const char *sfx;
    double mul;
  } units[] = {{"", 1},         {"B", 1},         {"K", 1e3},      {"KB", 1e3},
               {"M", 1e6},      {"MB", 1e6},      {"G", 1e9},      {"GB", 1e9},
               {"T", 1e12},     {"TB", 1e12},     {"KiB", 1024.0}, {"MiB", 1048576.0},
               {"GiB", 1073741824.0}, {"TiB", 1099511627776.0}};
  size_t i;
  for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
    if (strcmp(end, units[i].sfx) == 0 ||
        (end[0] && strcasecmp(end, units[i].sfx) == 0 && units[i].sfx[1] != 'i'))
      break;
  if (i == sizeof(units) / sizeof(units[0]))
    return CORE_EINVAL;
  mul = units[i].mul;
  double b = v * mul;
  if (b > 1e15)
    return CORE_EINVAL;
  *out = (uint64_t)b;
  return 0;
}
