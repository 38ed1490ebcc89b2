/* core_utf8.h: UTF-8 checks for text that crosses a trust boundary.
 *
 * Every text a client sends (parameters, JSON strings) must be valid UTF-8
 * without NUL: JSON output can carry nothing else, and a NUL would make C
 * string checks see a shorter value than the one sent. Valid means RFC 3629:
 * shortest form only (no overlongs such as C0 AF), no UTF-16 surrogates
 * (U+D800..U+DFFF), nothing above U+10FFFF.
 *
 * Text that is already stored (a hand-edited config file) is not refused but
 * repaired where it is shown: core_utf8_repair() for JSON output and
 * core_utf8_quote() for error messages that quote input. All functions are
 * pure memory work, safe on any thread.
 */
#ifndef CORE_UTF8_H
#define CORE_UTF8_H

#include <stddef.h>

/* 1 if the `len` bytes at `s` are valid UTF-8 and hold no NUL, else 0. */
int core_utf8_valid(const char *s, size_t len);

/* The number of bytes core_utf8_repair() writes for the `len` bytes at `s`:
 * `len` exactly when they are valid UTF-8 (NUL counts as valid here). */
size_t core_utf8_repaired_len(const char *s, size_t len);
/* Copies `len` bytes from `s` to `out`, replacing each byte that does not
 * start a valid sequence with U+FFFD (EF BF BD); NUL is copied. `out` must
 * hold core_utf8_repaired_len(s, len) bytes; no terminator is added. */
void core_utf8_repair(const char *s, size_t len, char *out);

/* Writes a printable form of the C string `s` to `out` (always
 * NUL-terminated when outlen > 0) for quoting input in a message: valid
 * UTF-8 is kept, control characters and invalid bytes become \xNN, a
 * backslash becomes \\, and text that does not fit ends in "...". Returns
 * `out`, so it can be an argument of printf. */
const char *core_utf8_quote(const char *s, char *out, size_t outlen);

#endif
