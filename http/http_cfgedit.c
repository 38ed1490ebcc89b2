/* http_cfgedit.c: the config-write skeleton (http_cfgedit.h). */
#include "http/http_cfgedit.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_job.h"
#include "core/core_log.h"

#include <stdio.h>

struct cfgedit_job {
  struct core_job job;
  struct http_request *req;
  const struct http_cfgedit_ops *ops;
  struct http_cfgedit e;
  int rc;                       /* out of apply */
};

static const char *const op_done[] = {
  [HTTP_CFGEDIT_CREATE] = "created",
  [HTTP_CFGEDIT_UPDATE] = "updated",
  [HTTP_CFGEDIT_REMOVE] = "removed",
};

const char *http_cfgedit_verb(enum http_cfgedit_op op)
{
  return op_done[op];
}

static void cfgedit_free(struct cfgedit_job *w)
{
  http_props_free(&w->e.props);
  core_free(w);
}

static void cfgedit_run(struct core_job *j)
{
  struct cfgedit_job *w = (struct cfgedit_job *)j;
  w->e.err[0] = '\0';
  w->rc = w->ops->apply(&w->e);
}

static void cfgedit_done(struct core_job *j, int status)
{
  struct cfgedit_job *w = (struct cfgedit_job *)j;
  int rc = status < 0 ? status : w->rc;
  if (rc == 0) {
    if (w->ops->log_noun)
      core_info("%s %s %s", w->ops->log_noun, w->e.name, op_done[w->e.op]);
    if (w->ops->done)
      w->ops->done(w->req, &w->e);
    http_respond_data(w->req, NULL, 0);
  } else if (rc == CORE_ESTALE) {
    http_respond_error(w->req, http_status_for(rc), "detected modified configuration - file "
                       "changed by other user? Try again (digest mismatch)");
  } else {
    http_respond_error(w->req, http_status_for(rc), "%s",
                       w->e.err[0] ? w->e.err : core_strerror(rc));
  }
  cfgedit_free(w);
}

/* Everything that can be refused before the pool: answered 400 with `err`. */
static int cfgedit_parse(struct http_request *req, struct cfgedit_job *w, char *err,
                         size_t errlen)
{
  const struct http_cfgedit_ops *ops = w->ops;
  w->e.name = http_req_param(req, ops->name_param);
  if (w->e.name == NULL) {
    snprintf(err, errlen, "parameter '%s' is required", ops->name_param);
    return CORE_EINVAL;
  }
  int rc = ops->check_name(w->e.name, err, errlen);
  if (rc == 0 && ops->parse)
    rc = ops->parse(req, &w->e, err, errlen);
  if (rc == 0)
    rc = http_props_collect(req, ops->control,
                            w->e.op == HTTP_CFGEDIT_REMOVE ? NULL : ops->check_prop,
                            &w->e.props, err, errlen);
  if (rc < 0 && err[0] == '\0')
    snprintf(err, errlen, "invalid parameters");
  return rc;
}

void http_cfgedit_submit(struct http_request *req, const struct http_cfgedit_ops *ops,
                         enum http_cfgedit_op op)
{
  struct cfgedit_job *w = core_new(struct cfgedit_job);
  char err[HTTP_CFGEDIT_ERR_LEN] = "";
  w->req = req;
  w->ops = ops;
  w->e.op = op;
  w->e.ctx = http_req_route_ctx(req);
  if (cfgedit_parse(req, w, err, sizeof(err)) < 0) {
    http_respond_error(req, 400, "%s", err);
    goto fail;
  }
  int rc = core_job_submit(http_req_loop(req), &w->job, cfgedit_run, cfgedit_done);
  if (rc < 0) {
    http_respond_errno(req, rc, "cannot queue the change");
    goto fail;
  }
  return;
fail:
  cfgedit_free(w);
}
