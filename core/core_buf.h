/* core_buf.h: byte slices and bounded growable buffers.
 *
 * struct core_slice borrows memory it does not own (laid out like uv_buf_t).
 * struct core_buf owns its memory and never grows past `max`, which the
 * caller must choose: every buffer that network input can fill is bounded.
 */
#ifndef CORE_BUF_H
#define CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct core_slice {
  const char *base;
  size_t len;
};

struct core_buf {
  char *base;   /* owned; NULL until the first append; always NUL-terminated after */
  size_t len;   /* bytes used, excluding the terminating NUL */
  size_t cap;   /* bytes allocated */
  size_t max;   /* the most `len` may ever be */
};

void core_buf_init(struct core_buf *b, size_t max);
void core_buf_free(struct core_buf *b);
void core_buf_reset(struct core_buf *b);

/* All appenders return 0, or CORE_ETOOBIG if the result would pass `max`
 * (the buffer is then unchanged), or UV_ENOMEM; the printf pair also
 * CORE_EPARSE when vsnprintf rejects the format or an argument. */
int core_buf_append(struct core_buf *b, const void *data, size_t len);
int core_buf_append_str(struct core_buf *b, const char *s);
int core_buf_printf(struct core_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int core_buf_vprintf(struct core_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* Makes room for `len` more bytes without using them. Returns 0, CORE_ETOOBIG
 * (past `max`) or UV_ENOMEM. */
int core_buf_reserve(struct core_buf *b, size_t len);

/* Gives an empty buffer `mem` (`cap` bytes, at least 1) as its memory, e.g.
 * recycled memory (http_bodypool.h). The caller decides how it is freed: take
 * it back with core_buf_steal, or let core_buf_free free() it. */
void core_buf_adopt(struct core_buf *b, char *mem, size_t cap);

/* Hands the memory to the caller (free with core_free) and resets `b`. */
char *core_buf_steal(struct core_buf *b, size_t *len);

#endif
