#include "store/store_session.h"

#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_log.h"
#include "core/core_parse.h"
#include "format/format_name.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int store_session_params(struct http_request *req, struct store_session *s)
{
  const char *ns = http_req_param(req, "ns");
  const char *type = http_req_param(req, "backup-type");
  const char *id = http_req_param(req, "backup-id");
  const char *time_s = http_req_param(req, "backup-time");
  int64_t t;
  if (ns && format_name_ns(ns) < 0) {
    http_respond_error(req, 400, "invalid namespace");
    return -1;
  }
  if (type == NULL || format_name_backup_type(type) < 0) {
    http_respond_error(req, 400, "backup-type must be vm, ct or host");
    return -1;
  }
  if (id == NULL || format_name_backup_id(id) < 0) {
    http_respond_error(req, 400, "invalid or missing backup-id");
    return -1;
  }
  if (core_parse_i64(time_s, &t) < 0 || t < 0 || t > 253402300799LL) {
    http_respond_error(req, 400, "invalid or missing backup-time (epoch seconds)");
    return -1;
  }
  core_free(s->ns);
  s->ns = core_strdup(ns ? ns : "");
  snprintf(s->type, sizeof(s->type), "%s", type);
  s->backup_id = core_strdup(id);
  s->time = t;
  s->authid = core_strdup(http_req_authid(req));
  return 0;
}


struct open_ctx {
  struct store_open *o;
  enum store_op op;
  core_job_run_fn run;
  core_job_done_fn done;
};

static void open_lookup(void *arg, int err, struct store_datastore *ds)
{
  struct store_open *o = arg;
  /* The run/done pair travels in the job until it is submitted. */
  core_job_run_fn run = o->job.run;
  core_job_done_fn done = o->job.done;
  if (err) {
    store_api_lookup_error(o->req, http_req_param(o->req, "store"), err, ds);
    store_session_free(o->s);
    core_free(o);
    return;
  }
  o->s->ds = ds;
  int rc = core_job_submit(o->s->table->loop, &o->job, run, done);
  if (rc < 0) {
    o->rc = rc;
    done(&o->job, rc);
  }
}

int store_session_open(struct store_sessions *t, struct http_request *req,
                       enum store_session_kind kind, enum store_op op, struct store_open *o,
                       core_job_run_fn run, core_job_done_fn done)
{
  const char *store = http_req_param(req, "store");
  if (store == NULL || format_name_datastore(store) < 0) {
    http_respond_error(req, 400, "invalid or missing parameter 'store'");
    core_free(o);
    return -1;
  }
  struct store_session *s = store_session_new(t, kind);
  if (store_session_params(req, s) < 0) {
    store_session_free(s);
    core_free(o);
    return -1;
  }
  s->op = op;
  o->req = req;
  o->s = s;
  o->job.run = run;
  o->job.done = done;
  store_lookup(t->api->reg, store, op, open_lookup, o);
  return 0;
}

void store_sessions_init(struct store_sessions *t, struct store_api *api)
{
  memset(t, 0, sizeof(*t));
  t->loop = api->loop;
  t->api = api;
  t->timeout_ms = STORE_SESSION_TIMEOUT_MS;
  core_map_init(&t->map);
}

static void abort_session(struct store_session *s, const char *why)
{
  if (s->kind == STORE_SESSION_BACKUP)
    store__backup_abort(s, why);
  else
    store__reader_close(s);
}

void store_sessions_close(struct store_sessions *t)
{
  size_t it = 0;
  void *v;
  /* Aborting removes entries; collect first. */
  struct store_session **list = core_calloc(t->map.count + 1, sizeof(*list));
  size_t n = 0;
  while (core_map_next(&t->map, &it, NULL, &v))
    list[n++] = v;
  for (size_t i = 0; i < n; i++)
    abort_session(list[i], "server shutting down");
  core_free(list);
  core_map_free(&t->map);
}

static void on_idle(uv_timer_t *timer)
{
  struct store_session *s = timer->data;
  if (s->ops > 0) {
    uv_timer_again(timer);
    return;
  }
  core_info("session %s idle for %llu ms: aborting", s->id,
            (unsigned long long)s->table->timeout_ms);
  abort_session(s, "idle timeout");
}

struct store_session *store_session_new(struct store_sessions *t, enum store_session_kind kind)
{
  struct store_session *s = core_new(struct store_session);
  uint8_t raw[STORE_SESSION_ID_LEN / 2];
  if (core_random(raw, sizeof(raw)) < 0)
    abort();
  core_hex_encode(raw, sizeof(raw), s->id);
  s->kind = kind;
  s->state = STORE_SESSION_OPEN;
  s->table = t;
  s->ns = core_strdup("");
  store_digestset_init(&s->known, STORE_MAX_KNOWN_CHUNKS);
  uv_timer_init(t->loop, &s->idle);
  s->idle.data = s;
  return s;
}

void store_session_publish(struct store_session *s)
{
  core_map_put(&s->table->map, s->id, s);
  uv_timer_start(&s->idle, on_idle, s->table->timeout_ms, s->table->timeout_ms);
}

struct store_session *store_session_enter(struct store_sessions *t, struct http_request *req,
                                          enum store_session_kind kind)
{
  const char *id = http_req_param(req, "session");
  struct store_session *s = id ? core_map_get(&t->map, id) : NULL;
  if (s == NULL || s->kind != kind) {
    http_respond_error(req, 404, "no such %s session", kind == STORE_SESSION_BACKUP ?
                       "backup" : "reader");
    return NULL;
  }
  const char *who = http_req_authid(req);
  if (who == NULL || strcmp(who, s->authid) != 0) {
    http_respond_error(req, 403, "session belongs to another user");
    return NULL;
  }
  if (s->state != STORE_SESSION_OPEN) {
    http_respond_error(req, 409, "session is finishing");
    return NULL;
  }
  s->ops++;
  uv_timer_again(&s->idle);
  return s;
}

void store_session_leave(struct store_session *s)
{
  if (--s->ops == 0 && s->state == STORE_SESSION_ENDING && s->on_drained) {
    void (*fn)(struct store_session *) = s->on_drained;
    s->on_drained = NULL;
    fn(s);
  }
}

void store_session_end(struct store_session *s, void (*on_drained)(struct store_session *s))
{
  if (core_map_get(&s->table->map, s->id) == s)
    core_map_del(&s->table->map, s->id);
  s->state = STORE_SESSION_ENDING;
  uv_timer_stop(&s->idle);
  if (s->ops == 0) {
    on_drained(s);
    return;
  }
  s->on_drained = on_drained;
}

void store_session_unlock(struct store_session *s)
{
  while (s->nlocks > 0)
    store_lock_release(&s->locks[--s->nlocks]);
}

static void on_timer_closed(uv_handle_t *h)
{
  struct store_session *s = h->data;
  core_free(s);
}

void store_session_free(struct store_session *s)
{
  store_session_unlock(s);
  if (s->ds)
    store_release(s->ds, s->op);
  store_digestset_free(&s->known);
  core_free(s->authid);
  core_free(s->ns);
  core_free(s->backup_id);
  core_free(s->dir);
  uv_close((uv_handle_t *)&s->idle, on_timer_closed);
}
