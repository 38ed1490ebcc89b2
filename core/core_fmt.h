/* core_fmt.h: numbers as text for people (task logs, the command line). */
#ifndef CORE_FMT_H
#define CORE_FMT_H

#include <stddef.h>
#include <stdint.h>

/* `n` bytes in binary units with three significant digits: "0 B",
 * "1023 B", "1.50 KiB", "10.0 MiB", "200 GiB", up to PiB ("16384 PiB" for
 * UINT64_MAX). Writes at most `size` bytes including the NUL (truncated if
 * needed; 16 bytes always suffice). */
void core_fmt_bytes(uint64_t n, char *out, size_t size);

#endif
