/* store_session.h: backup and reader sessions over HTTP/1.1.
 *
 * DESIGN. PBS runs a session on one HTTP/2 connection; Cairn gives it an id
 * instead, so any number of HTTP/1.1 keep-alive connections can work on the
 * same session at once (parallel chunk uploads). A session lives in the
 * server's table from the POST that opens it until finish, DELETE, or its
 * idle timeout. Every request that uses it takes an operation count while it
 * runs; an abort waits for the count to reach zero before cleaning up, so a
 * pool job never sees a session disappear under it.
 *
 * Locks (group, snapshot) are flock()ed files taken without waiting, in pool
 * jobs, and held by the session until it ends. Loop thread only, except the
 * `in`/`out` parts of the pool jobs.
 */
#ifndef STORE_SESSION_H
#define STORE_SESSION_H

#include "core/core_job.h"
#include "core/core_map.h"
#include "http/http.h"
#include "store/store_api.h"
#include "store/store_digestset.h"
#include "store/store_lock.h"
#include "store/store_registry.h"

#include <stdint.h>

#define STORE_SESSION_ID_LEN 32
#define STORE_SESSION_TIMEOUT_MS (15 * 60 * 1000) /* idle sessions are aborted */
#define STORE_MAX_KNOWN_CHUNKS (16u * 1024 * 1024) /* per session */

enum store_session_kind {
  STORE_SESSION_BACKUP = 1,
  STORE_SESSION_READER = 2,
};

enum store_session_state {
  STORE_SESSION_OPEN,      /* serving requests */
  STORE_SESSION_FINISHING, /* finish in progress: no new work */
  STORE_SESSION_ENDING,    /* finished or aborted: waiting for ops to drain */
};


struct store_session {
  char id[STORE_SESSION_ID_LEN + 1];
  enum store_session_kind kind;
  enum store_session_state state;
  struct store_sessions *table;
  struct store_datastore *ds;  /* reference + active operation of `op` */
  enum store_op op;
  char *authid;                /* owned */
  char *ns;                    /* owned, "" for the root */
  char type[8];
  char *backup_id;             /* owned */
  int64_t time;                /* backup time, epoch seconds */
  char *dir;                   /* owned: absolute snapshot directory */
  struct store_digestset known;/* chunks this session may reference / read */
  int ops;                     /* requests in flight */
  uint64_t chunks_served;      /* reader: chunk requests answered 200 (logged at close) */
  uv_timer_t idle;
  void (*on_drained)(struct store_session *s); /* run when ops reaches 0 while ENDING */
  struct store_lock_guard locks[3]; /* held until the end: group, base snapshot, snapshot */
  int nlocks;
  void *ext;                   /* kind-specific state (struct store_backup) */
};

struct store_sessions {
  uv_loop_t *loop;
  struct core_map map;         /* id -> struct store_session */
  uint64_t timeout_ms;
  struct store_api *api;
};

void store_sessions_init(struct store_sessions *t, struct store_api *api);
void store_sessions_close(struct store_sessions *t);

/* Creates a session with a fresh random id (not yet in the table). */
struct store_session *store_session_new(struct store_sessions *t, enum store_session_kind kind);
/* Reads and checks the snapshot parameters shared by backup and reader
 * sessions (ns, backup-type, backup-id, backup-time) and the requester into
 * the session. Returns 0, or -1 after responding 400. */
int store_session_params(struct http_request *req, struct store_session *s);
/* Opening a session, the part backup and reader share. A kind embeds this as
 * the FIRST member of its own job struct, allocated with core_malloc. */
struct store_open {
  struct core_job job;
  struct http_request *req;
  struct store_session *s;     /* not yet published */
  int rc;                      /* out of `run` */
  char err[256];               /* out of `run`: the message for the client */
};

/* Checks `store` and the snapshot parameters, creates the session, looks the
 * datastore up for `op` (the session keeps that reference), then runs `run`
 * in the pool and `done` on the loop with the job; `done` owns it from then
 * on. On an early error the request is answered, the session and the job are
 * freed, and -1 is returned; else 0. */
int store_session_open(struct store_sessions *t, struct http_request *req,
                       enum store_session_kind kind, enum store_op op, struct store_open *o,
                       core_job_run_fn run, core_job_done_fn done);
/* Makes it reachable by id and starts its idle timer. */
void store_session_publish(struct store_session *s);
/* Finds an open session of `kind` for a request and counts an operation;
 * responds with the error itself (404, 409) and returns NULL otherwise. The
 * requester must own the session. */
struct store_session *store_session_enter(struct store_sessions *t, struct http_request *req,
                                          enum store_session_kind kind);
/* Ends an operation. */
void store_session_leave(struct store_session *s);
/* Removes the session from the table and runs `on_drained` once no
 * operation is in flight. */
void store_session_end(struct store_session *s, void (*on_drained)(struct store_session *s));
/* Answers `req` with the file at `path` (owned by the call), streamed in
 * pieces; the entries of an index file are registered as known to the
 * session as they pass. The request's session operation ends with the
 * transfer (store_session_leave). */
void store_session_send_file(struct store_session *s, struct http_request *req, char *path);
/* Releases the session's locks (pool thread or loop; tmpfs). */
void store_session_unlock(struct store_session *s);
/* Frees everything (after on_drained did its cleanup). */
void store_session_free(struct store_session *s);

/* The handlers of the two kinds (store_backup.c, store_reader.c). */
void store__backup_register(struct http_server *srv, struct store_sessions *t);
void store__reader_register(struct http_server *srv, struct store_sessions *t);
/* Idle timeout and shutdown: abort the session (kind-specific). */
void store__backup_abort(struct store_session *s, const char *why);
void store__reader_close(struct store_session *s);

#endif
