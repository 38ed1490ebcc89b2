/* core_utf8.c: UTF-8 validation and repair (core_utf8.h). */
#include "core/core_utf8.h"

#include <stdio.h>
#include <string.h>

/* The length of the valid UTF-8 sequence at p (n bytes available), or 0.
 * The ranges of the second byte are those of RFC 3629's table, which is what
 * excludes overlongs (E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and
 * code points above U+10FFFF (F4 90..BF, F5..FF); C0 and C1 can only start
 * overlongs. NUL is a valid one-byte sequence here; callers decide. */
static size_t seq_len(const unsigned char *p, size_t n)
{
  unsigned char c = p[0];
  unsigned char lo = 0x80, hi = 0xBF;
  size_t len;
  if (c < 0x80)
    return 1;
  if (c < 0xC2)
    return 0;
  if (c < 0xE0) {
    len = 2;
  } else if (c < 0xF0) {
    len = 3;
    if (c == 0xE0)
      lo = 0xA0;
    else if (c == 0xED)
      hi = 0x9F;
  } else if (c < 0xF5) {
    len = 4;
    if (c == 0xF0)
      lo = 0x90;
    else if (c == 0xF4)
      hi = 0x8F;
  } else {
    return 0;
  }
  if (n < len || p[1] < lo || p[1] > hi)
    return 0;
  for (size_t i = 2; i < len; i++)
    if (p[i] < 0x80 || p[i] > 0xBF)
      return 0;
  return len;
}

int core_utf8_valid(const char *s, size_t len)
{
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < len) {
    if (p[i] == 0)
      return 0;
    size_t n = seq_len(p + i, len - i);
    if (n == 0)
      return 0;
    i += n;
  }
  return 1;
}

size_t core_utf8_repaired_len(const char *s, size_t len)
{
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0, out = 0;
  while (i < len) {
    size_t n = seq_len(p + i, len - i);
    if (n == 0) {
      out += 3; /* U+FFFD for one byte */
      i++;
    } else {
      out += n;
      i += n;
    }
  }
  return out;
}

void core_utf8_repair(const char *s, size_t len, char *out)
{
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < len) {
    size_t n = seq_len(p + i, len - i);
    if (n == 0) {
      memcpy(out, "\xEF\xBF\xBD", 3);
      out += 3;
      i++;
    } else {
      memcpy(out, s + i, n);
      out += n;
      i += n;
    }
  }
}

const char *core_utf8_quote(const char *s, char *out, size_t outlen)
{
  static const char ellipsis[] = "...";
  const size_t elen = sizeof(ellipsis) - 1;
  if (outlen == 0)
    return out;
  const unsigned char *p = (const unsigned char *)s;
  size_t len = strlen(s), i = 0, o = 0;
  size_t mark = 0; /* the last end of a piece that leaves room for "..." */
  while (i < len) {
    char piece[5];
    size_t n = seq_len(p + i, len - i), plen;
    if (n == 0 || (n == 1 && (p[i] < 0x20 || p[i] == 0x7F))) {
      plen = (size_t)snprintf(piece, sizeof(piece), "\\x%02X", p[i]);
      n = 1;
    } else if (n == 1 && p[i] == '\\') {
      memcpy(piece, "\\\\", 2);
      plen = 2;
    } else {
      memcpy(piece, s + i, n);
      plen = n;
    }
    if (o + plen + 1 > outlen) {
      /* Cut after whole pieces only, so no sequence is split. */
      o = mark;
      if (o + elen + 1 <= outlen) {
        memcpy(out + o, ellipsis, elen);
        o += elen;
      }
      break;
    }
    memcpy(out + o, piece, plen);
    o += plen;
    i += n;
    if (o + elen + 1 <= outlen)
      mark = o;
  }
  out[o] = '\0';
  return out;
}
