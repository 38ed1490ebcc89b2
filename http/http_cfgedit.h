/* http_cfgedit.h: create, update and remove of one section-config section,
 * as the config APIs (config/datastore, config/s3) answer them.
 *
 * Every such write has the same skeleton: check the name of the section,
 * read the owner's own control parameters, collect the property edits
 * (http_props.h), run the edit in the pool (it locks, loads, checks the
 * digest, saves and bumps the generation), then answer: data null on
 * success, else the code's HTTP status with the edit's message. The owner
 * describes what differs in a static ops table; this module does the rest.
 *
 * A stale digest is always answered with PBS's message (409), whatever the
 * edit said, because PBS clients match on it.
 */
#ifndef HTTP_CFGEDIT_H
#define HTTP_CFGEDIT_H

#include "http/http.h"
#include "http/http_props.h"

#include <stddef.h>

enum http_cfgedit_op { HTTP_CFGEDIT_CREATE, HTTP_CFGEDIT_UPDATE, HTTP_CFGEDIT_REMOVE };

#define HTTP_CFGEDIT_ERR_LEN 256

/* One edit as the owner's apply() sees it; the helper owns it. */
struct http_cfgedit {
  enum http_cfgedit_op op;
  void *ctx;                  /* the route's context (http_req_route_ctx) */
  const char *name;           /* the section, checked by ops->check_name; borrowed */
  struct http_props props;    /* collected edits; empty for a removal */
  unsigned opts;              /* the owner's, set by ops->parse */
  char err[HTTP_CFGEDIT_ERR_LEN]; /* apply(): message for a failure */
};

struct http_cfgedit_ops {
  const char *name_param;            /* the parameter naming the section ("name", "id") */
  const char *const *control;        /* every control parameter, name_param included;
                                        NULL-terminated; never a property */
  /* Checks the section name; returns 0, or < 0 with a message in err. */
  int (*check_name)(const char *name, char *err, size_t errlen);
  http_prop_check_fn check_prop;     /* each property to set (create, update) */
  /* Optional: reads the owner's control parameters into e->opts; returns 0,
   * or < 0 with a message in err. */
  int (*parse)(struct http_request *req, struct http_cfgedit *e, char *err, size_t errlen);
  /* Pool thread, blocking: the edit e->op asks for. Returns 0 or a negative
   * Cairn code, with a message in e->err (empty: core_strerror's). */
  int (*apply)(struct http_cfgedit *e);
  const char *log_noun;              /* NULL, or logs "<noun> <name> created" etc. */
  /* Optional, loop thread: called once the edit succeeded, before the
   * answer (the audit log of who changed what). */
  void (*done)(struct http_request *req, const struct http_cfgedit *e);
};

/* "created", "updated" or "removed". */
const char *http_cfgedit_verb(enum http_cfgedit_op op);

/* Answers `req` with the edit `op` of the section the request names.
 * A missing or invalid name, a refused control parameter or property is
 * answered 400 before anything is queued; a failed queueing with its errno;
 * the edit's own failure with http_status_for() of its code. */
void http_cfgedit_submit(struct http_request *req, const struct http_cfgedit_ops *ops,
                         enum http_cfgedit_op op);

#endif
