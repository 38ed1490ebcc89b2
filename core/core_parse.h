/* core_parse.h: strict parsing of numbers and booleans from text (parameters,
 * config values, command lines). Strict means: the whole string, no sign where
 * none is allowed, no leading blanks, no overflow. */
#ifndef CORE_PARSE_H
#define CORE_PARSE_H

#include <stdint.h>

/* Decimal digits only. 0 or CORE_EINVAL. */
int core_parse_u64(const char *s, uint64_t *out);
/* An optional '-' then digits. 0 or CORE_EINVAL. */
int core_parse_i64(const char *s, int64_t *out);
/* 1/true/yes/on and 0/false/no/off, in any case: exactly the forms PBS's
 * schema accepts. 0 or CORE_EINVAL. */
int core_parse_bool(const char *s, int *out);

#endif
