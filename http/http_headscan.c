/* http_headscan.c: line discipline of a header section, checked on the raw
 * bytes before llhttp sees them.
 *
 * WHY. llhttp 8 (even built strict) accepts a few shapes that RFC 9112 lets
 * a recipient refuse and that another parser in front of Cairn (a proxy) may
 * frame differently, which is what request smuggling is made of: a bare LF
 * ending the request line or the head ("GET / HTTP/1.1\n", "...\r\n\n"), a
 * field continued on the next line (obs-fold: "X: a\r\n b"), and a bare LF
 * ending a chunked body's trailer section ("0\r\n\n"). Those are line
 * questions, invisible in llhttp's callbacks, so this scanner walks the bytes
 * of each header section (the request head, and a chunked body's trailer)
 * and says where it ends or why it is refused. It keeps two bytes of state,
 * so a section may arrive in any number of pieces.
 *
 * It checks lines only; tokens, values and sizes stay llhttp's and the
 * server's business.
 */
#include "http/http_internal.h"

#include "core/core_error.h"

void http__headscan_start(struct http_headscan *s, int trailer)
{
  s->state = HTTP_HEADSCAN_LINE_START;
  /* A trailer section has no start line: its first line is a field or the
   * empty line that ends it. */
  s->started = trailer ? 1 : 0;
}

int http__headscan_feed(struct http_headscan *s, const char *data, size_t len,
                        const char **why)
{
  for (size_t i = 0; i < len && s->state != HTTP_HEADSCAN_DONE; i++) {
    char ch = data[i];
    if (ch == '\0') {
      *why = "NUL byte in the header section";
      return CORE_EPROTO;
    }
    switch (s->state) {
    case HTTP_HEADSCAN_LINE_START:
      if (ch == '\r') {
        s->state = HTTP_HEADSCAN_CR_EMPTY;
      } else if (ch == '\n') {
        *why = "bare LF in the header section";
        return CORE_EPROTO;
      } else if ((ch == ' ' || ch == '\t') && s->started) {
        /* A field line cannot start with whitespace: it would be a
         * continuation (obs-fold) of the line before. */
        *why = "folded header line (obs-fold)";
        return CORE_EPROTO;
      } else {
        s->state = HTTP_HEADSCAN_LINE;
      }
      break;
    case HTTP_HEADSCAN_LINE:
      if (ch == '\r') {
        s->state = HTTP_HEADSCAN_CR;
      } else if (ch == '\n') {
        *why = "bare LF in the header section";
        return CORE_EPROTO;
      }
      break;
    case HTTP_HEADSCAN_CR:
    case HTTP_HEADSCAN_CR_EMPTY:
      if (ch != '\n') {
        *why = "CR not followed by LF in the header section";
        return CORE_EPROTO;
      }
      if (s->state == HTTP_HEADSCAN_CR_EMPTY && s->started) {
        s->state = HTTP_HEADSCAN_DONE;
      } else {
        /* An empty line before the request line is tolerated (RFC 9112,
         * 2.2); any other line moves on to the fields. */
        if (s->state == HTTP_HEADSCAN_CR)
          s->started = 1;
        s->state = HTTP_HEADSCAN_LINE_START;
      }
      break;
    default:
      break;
    }
  }
  return 0;
}
