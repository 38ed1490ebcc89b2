#include "format/format_name.h"

#include "core/core_error.h"

#include <string.h>

static int is_alnum(unsigned char c)
{
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* SAFE_ID: [A-Za-z0-9_][A-Za-z0-9._-]* over exactly `len` bytes, plus our own
 * rule that ".." never appears. The regex alone already forbids a leading '.'
 * and therefore the components "." and ".."; banning ".." anywhere keeps the
 * lock-file naming (store_lock) free of collisions and costs nothing real. */
static int safe_id_n(const char *s, size_t len)
{
  if (len == 0)
    return CORE_ENAME;
  unsigned char c = (unsigned char)s[0];
  if (!is_alnum(c) && c != '_')
    return CORE_ENAME;
  for (size_t i = 1; i < len; i++) {
    c = (unsigned char)s[i];
    if (is_alnum(c) || c == '_' || c == '-')
      continue;
    if (c == '.' && s[i - 1] != '.')
      continue;
    return CORE_ENAME;
  }
  return 0;
}

/* strnlen bounded one past the limit, so overlong input is never scanned to
 * its end (it may be an attacker's megabyte). */
static int bounded_len(const char *s, size_t min, size_t max, size_t *len)
{
  if (s == NULL)
    return CORE_ENAME;
  size_t n = strnlen(s, max + 1);
  if (n < min || n > max)
    return CORE_ENAME;
  *len = n;
  return 0;
}

int format_name_datastore(const char *s)
{
  size_t n;
  if (bounded_len(s, FORMAT_NAME_STORE_MIN, FORMAT_NAME_STORE_MAX, &n))
    return CORE_ENAME;
  return safe_id_n(s, n);
}

int format_name_ns_component(const char *s)
{
  size_t n;
  if (bounded_len(s, 1, FORMAT_NAME_NS_COMPONENT_MAX, &n))
    return CORE_ENAME;
  return safe_id_n(s, n);
}

int format_name_ns_depth(const char *s)
{
  size_t n;
  if (bounded_len(s, 0, FORMAT_NAME_NS_MAX_LEN, &n))
    return CORE_ENAME;
  if (n == 0)
    return 0;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && s[i] != '/')
      continue;
    size_t clen = i - start;
    if (clen == 0 || clen > FORMAT_NAME_NS_COMPONENT_MAX)
      return CORE_ENAME; /* empty component: leading, trailing or double '/' */
    if (safe_id_n(s + start, clen))
      return CORE_ENAME;
    if (++depth > FORMAT_NAME_NS_MAX_DEPTH)
      return CORE_ENAME;
    start = i + 1;
  }
  return depth;
}

int format_name_ns(const char *s)
{
  int d = format_name_ns_depth(s);
  return d < 0 ? d : 0;
}

int format_name_backup_type(const char *s)
{
  if (s == NULL)
    return CORE_ENAME;
  if (strcmp(s, "vm") == 0 || strcmp(s, "ct") == 0 || strcmp(s, "host") == 0)
    return 0;
  return CORE_ENAME;
}

int format_name_backup_id(const char *s)
{
  size_t n;
  if (bounded_len(s, 1, FORMAT_NAME_ID_MAX, &n))
    return CORE_ENAME;
  return safe_id_n(s, n);
}

static int ends_with(const char *s, size_t n, const char *suffix)
{
  size_t m = strlen(suffix);
  return n > m && memcmp(s + n - m, suffix, m) == 0;
}

int format_name_archive(const char *s)
{
  size_t n;
  if (bounded_len(s, 1, FORMAT_NAME_ARCHIVE_MAX, &n))
    return CORE_ENAME;
  if (safe_id_n(s, n))
    return CORE_ENAME;
  /* ends_with() demands at least one byte before the suffix; together with
   * the SAFE_ID rule the name can neither be nor start with ".". */
  if (ends_with(s, n, ".fidx"))
    return FORMAT_ARCHIVE_FIDX;
  if (ends_with(s, n, ".didx"))
    return FORMAT_ARCHIVE_DIDX;
  if (ends_with(s, n, ".blob"))
    return FORMAT_ARCHIVE_BLOB;
  return CORE_ENAME;
}

int format_name_authid(const char *s)
{
  size_t n;
  if (bounded_len(s, 3, FORMAT_NAME_AUTHID_MAX, &n))
    return CORE_ENAME;
  const char *at = NULL;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c <= 0x20 || c >= 0x7f || c == ':' || c == '/')
      return CORE_ENAME;
    if (c == '@')
      at = s + i;
  }
  /* The realm follows the last '@' and is a SAFE_ID, optionally followed by
   * "!token" where the token name is a SAFE_ID too. */
  if (at == NULL || at == s || at[1] == '\0')
    return CORE_ENAME;
  const char *realm = at + 1;
  const char *bang = strchr(realm, '!');
  size_t rlen = bang ? (size_t)(bang - realm) : strlen(realm);
  if (safe_id_n(realm, rlen))
    return CORE_ENAME;
  if (bang && safe_id_n(bang + 1, strlen(bang + 1)))
    return CORE_ENAME;
  return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date; the classic
 * era-of-400-years formula, exact for every year we accept. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int is_leap(int64_t y)
{
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int64_t y, unsigned m)
{
  static const unsigned char dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

static int digits(const char *s, int n, unsigned *out)
{
  unsigned v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (unsigned)(s[i] - '0');
  }
  *out = v;
  return 0;
}

int format_name_time_parse(const char *s, int64_t *epoch)
{
  size_t n;
  if (bounded_len(s, FORMAT_NAME_TIME_LEN, FORMAT_NAME_TIME_LEN, &n))
    return CORE_ENAME;
  if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
      s[19] != 'Z')
    return CORE_ENAME;
  unsigned y, mo, d, h, mi, se;
  if (digits(s, 4, &y) || digits(s + 5, 2, &mo) || digits(s + 8, 2, &d) ||
      digits(s + 11, 2, &h) || digits(s + 14, 2, &mi) || digits(s + 17, 2, &se))
    return CORE_ENAME;
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 ||
      mi > 59 || se > 59)
    return CORE_ENAME;
  *epoch = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
  return 0;
}

int format_name_time_format(int64_t epoch, char out[FORMAT_NAME_TIME_LEN + 1])
{
  if (epoch < 0 || epoch > FORMAT_NAME_TIME_MAX)
    return CORE_ENAME;
  int64_t days = epoch / 86400;
  int64_t secs = epoch % 86400;
  int64_t y;
  unsigned m, d;
  civil_from_days(days, &y, &m, &d);
  unsigned h = (unsigned)(secs / 3600), mi = (unsigned)(secs / 60 % 60),
           se = (unsigned)(secs % 60);
  /* Hand-rolled rather than snprintf: fixed width, and no -Wformat-truncation
   * worries for a buffer that is exactly the right size. */
  unsigned yy = (unsigned)y;
  out[0] = (char)('0' + yy / 1000);
  out[1] = (char)('0' + yy / 100 % 10);
  out[2] = (char)('0' + yy / 10 % 10);
  out[3] = (char)('0' + yy % 10);
  out[4] = '-';
  out[5] = (char)('0' + m / 10);
  out[6] = (char)('0' + m % 10);
  out[7] = '-';
  out[8] = (char)('0' + d / 10);
  out[9] = (char)('0' + d % 10);
  out[10] = 'T';
  out[11] = (char)('0' + h / 10);
  out[12] = (char)('0' + h % 10);
  out[13] = ':';
  out[14] = (char)('0' + mi / 10);
  out[15] = (char)('0' + mi % 10);
  out[16] = ':';
  out[17] = (char)('0' + se / 10);
  out[18] = (char)('0' + se % 10);
  out[19] = 'Z';
  out[20] = '\0';
  return 0;
}
