/* http_props.h: the property edits of a config-write request, as PBS sends
 * them.
 *
 * Every parameter that is not a control name becomes a property to set
 * (checked by the owner's `check`; a property given twice is refused);
 * `delete` lists properties to remove, separated by commas, semicolons or
 * spaces, and may repeat (delete=a&delete=b) or be a JSON array: all of them
 * apply. Whether a name may be deleted is the owner's decision, taken when it
 * applies the change. `digest`, when present, must be the 64-hex digest of
 * the config the client read. The datastore and the S3 endpoint config APIs
 * share this.
 */
#ifndef HTTP_PROPS_H
#define HTTP_PROPS_H

#include "core/core_config.h"
#include "http/http.h"

#include <stddef.h>

#define HTTP_PROPS_MAX 32

struct http_props {
  struct core_kv set[HTTP_PROPS_MAX];  /* borrowed from the request */
  size_t nset;
  const char *del[HTTP_PROPS_MAX];     /* point into del_buf */
  size_t ndel;
  const char *digest;                  /* NULL when absent */
  char *del_buf;                       /* owned */
  size_t del_len;                      /* bytes of del_buf in use */
};

/* Validates one property; returns 0, or < 0 with a message in err. */
typedef int (*http_prop_check_fn)(const char *name, const char *value, char *err,
                                  size_t errlen);

/* Fills `p` from the request. `skip` (NULL-terminated) names the control
 * parameters besides `digest` and `delete`; with `check` NULL no property is
 * collected (a removal: only `digest` counts). Returns 0, or < 0 with a message
 * in `err` (the request is not answered): CORE_EINVAL (a property given twice,
 * more than HTTP_PROPS_MAX, a `delete` that is not a list of names, a digest
 * that is not 64 lowercase hex) or `check`'s code. Free `p` either way. */
int http_props_collect(struct http_request *req, const char *const *skip,
                       http_prop_check_fn check, struct http_props *p, char *err,
                       size_t errlen);
void http_props_free(struct http_props *p);

#endif
