/* test_backup_session.c: the backup session's state machine (open, writers,
 * chunks, close, manifest, finish, abort, idle timeout) on a temporary
 * datastore, in-process.
 *
 * The session's entry points are its HTTP handlers: opening, entering and
 * ending a session all take the request they answer (store_session.h), so
 * the lowest level that needs no refactoring is the handlers themselves.
 * They are driven here through the real server over an in-memory stream
 * (http_fixture.h: no TCP port, no second process), while the test looks
 * below HTTP at what the session leaves behind: its table entry, the
 * snapshot directory, and the group lock.
 */
#include "unit.h"

#include "gc_fixture.h"
#include "http_fixture.h"

#include "core/core_digest.h"
#include "store/store_api.h"
#include "store/store_backup.h"
#include "store/store_lock.h"
#include "store/store_session.h"

#include <stdarg.h>
#include <sys/stat.h>

#define T1 1700000000
#define T2 1700000100
#define ROOT_TOKEN "PBSAPIToken=root@pam!t:s"
#define OTHER_TOKEN "PBSAPIToken=alice@pbs!t:s"

struct bs {
  struct fx fx;                 /* loop, registry, datastore FX_STORE */
  struct store_api api;
  struct store_sessions sessions;
  struct http_server *srv;
  struct hfx_client cl;
  const char *token;            /* Authorization of the next requests */
  char body[4096];              /* the last response's body */
};

static void bs_start(struct bs *b)
{
  memset(b, 0, sizeof(*b));
  fx_init(&b->fx, "");
  fx_api_init(&b->fx, &b->api, &b->sessions);
  b->srv = http_server_new(&b->fx.loop, NULL);
  http_server_set_auth(b->srv, hfx_token_auth, NULL);
  store__backup_register(b->srv, &b->sessions);
  hfx_connect(&b->cl, &b->fx.loop, b->srv);
  b->token = ROOT_TOKEN;
}

/* Open sessions are aborted as at shutdown; ASan sees the rest freed. */
static void bs_stop(struct bs *b)
{
  hfx_disconnect(&b->cl);
  store_sessions_close(&b->sessions);
  http_server_free(b->srv);
  fx_close(&b->fx);
}

/* One request (path and query from a format) with an optional body; the
 * response must have `status`. Returns its body (in b->body). */
static const char *call(struct bs *b, int status, const char *method, const void *body,
                        size_t len, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static const char *call(struct bs *b, int status, const char *method, const void *body,
                        size_t len, const char *fmt, ...)
{
  char target[1024], head[1400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(target, sizeof(target), fmt, ap);
  va_end(ap);
  const char *ctype = len && ((const char *)body)[0] == '{'
                          ? "application/json"
                          : "application/octet-stream";
  snprintf(head, sizeof(head),
           "%s %s HTTP/1.1\r\nAuthorization: %s\r\nContent-Type: %s\r\n"
           "Content-Length: %zu\r\n\r\n",
           method, target, b->token, ctype, len);
  ASSERT_OK(hfx_send_str(&b->cl, head));
  if (len)
    ASSERT_OK(hfx_send(&b->cl, body, len));
  struct hfx_resp r;
  if (!hfx_response(&b->cl, &r))
    unit_fail(__FILE__, __LINE__, "%s %s: connection closed", method, target);
  if (r.status != status)
    unit_fail(__FILE__, __LINE__, "%s %s: %d, expected %d: %s", method, target, r.status,
              status, r.body);
  snprintf(b->body, sizeof(b->body), "%s", r.body);
  hfx_resp_free(&r);
  return b->body;
}

/* The response body must carry `text` (a message, a value). */
#define ASSERT_HAS(body, text)                                                      \
  do {                                                                              \
    if (strstr((body), (text)) == NULL)                                             \
      unit_fail(__FILE__, __LINE__, "'%s' not in %s", (text), (body));              \
  } while (0)

/* Opens a backup session of host/<id> at `time`; the id into `sid`. */
static void open_session(struct bs *b, const char *id, int64_t time, char sid[33])
{
  const char *body = call(b, 200, "POST", NULL, 0,
                          "/api2/json/backup?store=" FX_STORE
                          "&backup-type=host&backup-id=%s&backup-time=%lld",
                          id, (long long)time);
  ASSERT(strncmp(body, "{\"data\":\"", 9) == 0);
  memcpy(sid, body + 9, 32);
  sid[32] = '\0';
  ASSERT(core_map_get(&b->sessions.map, sid) != NULL);
}

static int open_writer(struct bs *b, const char *sid, const char *kind, const char *name,
                       const char *extra)
{
  const char *body = call(b, 200, "POST", NULL, 0,
                          "/api2/json/backup/%s/%s_index?archive-name=%s%s", sid, kind, name,
                          extra);
  return (int)strtol(body + 8, NULL, 10);
}

/* Uploads the chunk for (seed, size) to writer `wid`; its digest out. */
static void upload_chunk(struct bs *b, const char *sid, const char *kind, int wid,
                         uint32_t seed, size_t size, uint8_t digest[32])
{
  uint8_t *data = core_malloc(size), *blob;
  size_t blen;
  fx_data(seed, size, data);
  core_sha256(data, size, digest);
  ASSERT(format_blob_encode_alloc(NULL, data, size, FORMAT_BLOB_COMPRESS, NULL, &blob, &blen) >= 0);
  char hex[65];
  core_hex_encode(digest, 32, hex);
  const char *body = call(b, 200, "POST", blob, blen,
                          "/api2/json/backup/%s/%s_chunk?wid=%d&digest=%s&size=%zu"
                          "&encoded-size=%zu", sid, kind, wid, hex, size, blen);
  ASSERT_HAS(body, hex);
  core_free(blob);
  core_free(data);
}

/* PUT <kind>_index: one entry. */
static void append(struct bs *b, int status, const char *sid, const char *kind, int wid,
                   const uint8_t digest[32], uint64_t offset)
{
  char hex[65], json[256];
  core_hex_encode(digest, 32, hex);
  int n = snprintf(json, sizeof(json),
                   "{\"wid\":%d,\"digest-list\":[\"%s\"],\"offset-list\":[%llu]}", wid, hex,
                   (unsigned long long)offset);
  call(b, status, "PUT", json, (size_t)n, "/api2/json/backup/%s/%s_index", sid, kind);
}

static void close_writer(struct bs *b, int status, const char *sid, const char *kind, int wid,
                         uint64_t count, uint64_t size, const uint8_t csum[32])
{
  char hex[65];
  core_hex_encode(csum, 32, hex);
  call(b, status, "POST", NULL, 0,
       "/api2/json/backup/%s/%s_close?wid=%d&chunk-count=%llu&size=%llu&csum=%s", sid, kind,
       wid, (unsigned long long)count, (unsigned long long)size, hex);
}

/* The csum the client computes for a dynamic index of these chunks. */
static void didx_csum(const uint8_t (*digests)[32], const uint64_t *ends, size_t n,
                      uint8_t csum[32])
{
  struct format_didx_writer w;
  uint64_t count, size;
  format_didx_writer_init(&w, 0, 0);
  for (size_t i = 0; i < n; i++)
    ASSERT_OK(format_didx_writer_append(&w, ends[i], digests[i]));
  ASSERT_OK(format_didx_writer_finish(&w, csum, &count, &size));
  format_didx_writer_free(&w);
}

/* A file the manifest lists. */
struct mfile {
  const char *name;
  uint64_t size;
  uint8_t csum[32];
};

static void upload_manifest(struct bs *b, const char *sid, int64_t time,
                            const struct mfile *files, size_t n)
{
  struct format_manifest m;
  uint8_t *blob;
  size_t blen;
  format_manifest_init(&m, "host", "h1", time);
  for (size_t i = 0; i < n; i++)
    ASSERT_OK(format_manifest_add_file(&m, files[i].name, FORMAT_CRYPT_MODE_NONE,
                                      files[i].size, files[i].csum));
  ASSERT_OK(format_manifest_encode_blob(&m, NULL, &blob, &blen));
  call(b, 200, "POST", blob, blen, "/api2/json/backup/%s/blob?file-name=%s&encoded-size=%zu",
       sid, FORMAT_MANIFEST_NAME, blen);
  core_free(blob);
  format_manifest_free(&m);
}

static void snapshot_path(struct bs *b, const char *id, int64_t time, const char *file,
                          char *out, size_t cap)
{
  if (file)
    ASSERT(store_path_file(out, cap, b->fx.base, "", "host", id, time, file) > 0);
  else
    ASSERT(store_path_snapshot(out, cap, b->fx.base, "", "host", id, time) > 0);
}

static int exists(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0;
}

/* True while someone holds host/<id>'s group lock (a running backup). */
static int group_locked(struct bs *b, const char *id)
{
  char lockdir[1024];
  struct store_lock_guard g = STORE_LOCK_GUARD_INIT;
  ASSERT_OK(store_lock_dir(lockdir, sizeof(lockdir), b->fx.run, FX_STORE));
  int rc = store_lock_group(lockdir, "", "host", id, STORE_LOCK_EXCLUSIVE, &g);
  if (rc == 0) {
    store_lock_release(&g);
    return 0;
  }
  ASSERT_EQ(rc, CORE_ELOCKED);
  return 1;
}

/* Runs the loop until the snapshot directory is gone and the group lock
 * free: what an abort's cleanup job leaves once it has run. */
static void wait_cleaned_up(struct bs *b, const char *id, int64_t time)
{
  char dir[STORE_PATH_MAX];
  snapshot_path(b, id, time, NULL, dir, sizeof(dir));
  uint64_t deadline = hfx_now_ms() + HFX_DEADLINE_MS;
  while (exists(dir) || group_locked(b, id)) {
    ASSERT(hfx_now_ms() < deadline);
    hfx_turn(&b->cl);
  }
}

/* ---- The whole session ---- */

/* Open, a dynamic and a fixed writer, chunks, appends, closes, manifest,
 * finish: a finished snapshot, the session gone, the group free for the
 * next backup, which sees this one as its previous. */
UNIT_TEST(backup_finished)
{
  struct bs b;
  bs_start(&b);
  char sid[33];
  open_session(&b, "h1", T1, sid);
  ASSERT(group_locked(&b, "h1"));
  ASSERT_STR_EQ(call(&b, 200, "GET", NULL, 0, "/api2/json/backup/%s/previous_backup_time", sid),
                "{\"data\":null}\n");

  int dw = open_writer(&b, sid, "dynamic", "data.pxar.didx", "");
  int fw = open_writer(&b, sid, "fixed", "disk.img.fidx", "&size=1000");
  ASSERT(dw >= 1 && fw >= 1 && dw != fw);

  uint8_t d[2][32], f[32];
  uint64_t ends[2] = {3000, 3000 + 5000};
  upload_chunk(&b, sid, "dynamic", dw, 1, 3000, d[0]);
  upload_chunk(&b, sid, "dynamic", dw, 2, 5000, d[1]);
  upload_chunk(&b, sid, "fixed", fw, 3, 1000, f);
  append(&b, 200, sid, "dynamic", dw, d[0], 0);
  append(&b, 200, sid, "dynamic", dw, d[1], 3000);
  append(&b, 200, sid, "fixed", fw, f, 0);

  struct mfile files[2] = {{"data.pxar.didx", ends[1], {0}}, {"disk.img.fidx", 1000, {0}}};
  didx_csum((const uint8_t(*)[32])d, ends, 2, files[0].csum);
  struct format_fidx_writer fx_w;
  uint64_t count, size;
  ASSERT_OK(format_fidx_writer_init(&fx_w, 1000, FIXED_CHUNK_SIZE, 0));
  ASSERT_OK(format_fidx_writer_set(&fx_w, 0, f));
  ASSERT_OK(format_fidx_writer_finish(&fx_w, files[1].csum, &count, &size));
  format_fidx_writer_free(&fx_w);

  close_writer(&b, 200, sid, "dynamic", dw, 2, ends[1], files[0].csum);
  close_writer(&b, 200, sid, "fixed", fw, 1, 1000, files[1].csum);
  ASSERT_HAS(call(&b, 400, "POST", NULL, 0, "/api2/json/backup/%s/finish", sid),
             "the manifest (index.json.blob) must be uploaded before finish");
  upload_manifest(&b, sid, T1, files, 2);

  char path[STORE_PATH_MAX];
  snapshot_path(&b, "h1", T1, FORMAT_MANIFEST_NAME, path, sizeof(path));
  ASSERT(!exists(path)); /* unfinished until finish */
  char upload[STORE_PATH_MAX];
  snapshot_path(&b, "h1", T1, NULL, upload, sizeof(upload) - 64);
  unit_append(upload, sizeof(upload), "/" MANIFEST_UPLOAD_NAME);
  ASSERT(exists(upload));
  call(&b, 200, "POST", NULL, 0, "/api2/json/backup/%s/finish", sid);
  ASSERT(exists(path));
  snapshot_path(&b, "h1", T1, "data.pxar.didx", path, sizeof(path));
  ASSERT(exists(path));
  snapshot_path(&b, "h1", T1, "disk.img.fidx", path, sizeof(path));
  ASSERT(exists(path));
  ASSERT(!exists(upload));
  /* Finish answers once the locks are released. */
  ASSERT(core_map_get(&b.sessions.map, sid) == NULL);
  ASSERT(!group_locked(&b, "h1"));
  call(&b, 404, "POST", NULL, 0, "/api2/json/backup/%s/finish", sid);

  /* The next backup of the group: this one is its previous. */
  open_session(&b, "h1", T2, sid);
  ASSERT_STR_EQ(call(&b, 200, "GET", NULL, 0, "/api2/json/backup/%s/previous_backup_time", sid),
                "{\"data\":1700000000}\n");
  bs_stop(&b);
}

/* ---- Refusals ---- */

UNIT_TEST(writer_refusals)
{
  struct bs b;
  bs_start(&b);
  char sid[33];
  open_session(&b, "h1", T1, sid);
  int w = open_writer(&b, sid, "dynamic", "data.pxar.didx", "");
  ASSERT_HAS(call(&b, 409, "POST", NULL, 0,
                  "/api2/json/backup/%s/dynamic_index?archive-name=data.pxar.didx", sid),
             "already being written");
  ASSERT_HAS(call(&b, 400, "POST", NULL, 0, "/api2/json/backup/%s/finish", sid),
             "writer 1 (data.pxar.didx) is still open");

  /* An unknown writer, a writer of the other kind. */
  uint8_t empty[32];
  didx_csum(NULL, NULL, 0, empty);
  close_writer(&b, 400, sid, "dynamic", w + 7, 0, 0, empty);
  ASSERT_HAS(b.body, "invalid or unknown writer id 'wid'");
  close_writer(&b, 400, sid, "fixed", w, 0, 0, empty);

  /* A close that does not match leaves the writer open for a retry. */
  uint8_t d[32];
  upload_chunk(&b, sid, "dynamic", w, 1, 4000, d);
  append(&b, 200, sid, "dynamic", w, d, 0);
  close_writer(&b, 400, sid, "dynamic", w, 1, 4000, empty);
  ASSERT_HAS(b.body, "index checksum mismatch");
  append(&b, 400, sid, "dynamic", w, d, 0); /* not contiguous */
  ASSERT_HAS(b.body, "is not contiguous");
  uint64_t end = 4000;
  uint8_t csum[32];
  didx_csum((const uint8_t(*)[32])d, &end, 1, csum);
  close_writer(&b, 200, sid, "dynamic", w, 1, 4000, csum);

  /* Closed: no second close, no append, no chunk. */
  close_writer(&b, 400, sid, "dynamic", w, 1, 4000, csum);
  ASSERT_HAS(b.body, "invalid or unknown writer id 'wid'");
  append(&b, 400, sid, "dynamic", w, d, 4000);
  ASSERT_HAS(b.body, "invalid or unknown writer id 'wid'");
  uint8_t *blob;
  size_t blen;
  uint8_t data[100] = {0};
  ASSERT(format_blob_encode_alloc(NULL, data, sizeof(data), 0, NULL, &blob, &blen) >= 0);
  char hex[65];
  core_sha256(data, sizeof(data), d);
  core_hex_encode(d, 32, hex);
  ASSERT_HAS(call(&b, 400, "POST", blob, blen,
                  "/api2/json/backup/%s/dynamic_chunk?wid=%d&digest=%s&size=100"
                  "&encoded-size=%zu", sid, w, hex, blen),
             "invalid or unknown writer id 'wid'");
  core_free(blob);
  /* And its name stays taken. */
  call(&b, 409, "POST", NULL, 0, "/api2/json/backup/%s/dynamic_index?archive-name=data.pxar.didx",
       sid);

  /* A chunk the session does not know cannot be referenced. */
  int w2 = open_writer(&b, sid, "dynamic", "other.pxar.didx", "");
  uint8_t unknown[32];
  memset(unknown, 0xab, sizeof(unknown));
  append(&b, 400, sid, "dynamic", w2, unknown, 0);
  ASSERT_HAS(b.body, "unknown chunk");
  bs_stop(&b);
}

/* One backup of a group at a time; sessions are their owner's only; an
 * unknown session is 404. */
UNIT_TEST(session_refusals)
{
  struct bs b;
  bs_start(&b);
  char sid[33], other[33];
  open_session(&b, "h1", T1, sid);
  ASSERT_HAS(call(&b, 409, "POST", NULL, 0,
                  "/api2/json/backup?store=" FX_STORE
                  "&backup-type=host&backup-id=h1&backup-time=%d", T2),
             "another backup of this group is running");
  open_session(&b, "h2", T1, other); /* another group is free */

  ASSERT_HAS(call(&b, 404, "GET", NULL, 0,
                  "/api2/json/backup/0123456789abcdef0123456789abcdef/previous_backup_time"),
             "no such backup session");
  b.token = OTHER_TOKEN;
  ASSERT_HAS(call(&b, 403, "POST", NULL, 0, "/api2/json/backup/%s/finish", sid),
             "session belongs to another user");
  b.token = ROOT_TOKEN;
  ASSERT_HAS(call(&b, 400, "POST", NULL, 0,
                  "/api2/json/backup?store=" FX_STORE "&backup-type=disk&backup-id=h3"
                  "&backup-time=%d", T1),
             "backup-type must be vm, ct or host");
  ASSERT_HAS(call(&b, 400, "POST", NULL, 0,
                  "/api2/json/backup?store=../x&backup-type=host&backup-id=h3&backup-time=%d",
                  T1),
             "invalid or missing parameter 'store'");
  ASSERT_EQ(b.sessions.map.count, 2);
  bs_stop(&b);
}

/* DELETE: the snapshot and everything written into it go, the locks are
 * released, and the group takes a new backup at once (even of the same
 * time: nothing of the aborted one is left). */
UNIT_TEST(abort_removes_everything)
{
  struct bs b;
  bs_start(&b);
  char sid[33];
  open_session(&b, "h1", T1, sid);
  int w = open_writer(&b, sid, "dynamic", "data.pxar.didx", "");
  uint8_t d[32];
  upload_chunk(&b, sid, "dynamic", w, 1, 2000, d);
  append(&b, 200, sid, "dynamic", w, d, 0);
  uint8_t *blob;
  size_t blen;
  ASSERT(format_blob_encode_alloc(NULL, "log\n", 4, 0, NULL, &blob, &blen) >= 0);
  call(&b, 200, "POST", blob, blen,
       "/api2/json/backup/%s/blob?file-name=client.log.blob&encoded-size=%zu", sid, blen);
  core_free(blob);
  char path[STORE_PATH_MAX];
  snapshot_path(&b, "h1", T1, "client.log.blob", path, sizeof(path));
  ASSERT(exists(path));

  call(&b, 200, "DELETE", NULL, 0, "/api2/json/backup/%s", sid);
  ASSERT(core_map_get(&b.sessions.map, sid) == NULL);
  call(&b, 404, "GET", NULL, 0, "/api2/json/backup/%s/previous_backup_time", sid);
  wait_cleaned_up(&b, "h1", T1);
  /* The chunk stays in the pool (GC decides), but not the snapshot. */
  ASSERT(fx_chunk_exists(&b.fx, d));

  open_session(&b, "h1", T1, sid);
  ASSERT_STR_EQ(call(&b, 200, "GET", NULL, 0, "/api2/json/backup/%s/previous_backup_time", sid),
                "{\"data\":null}\n");
  bs_stop(&b);
}

/* A session nobody uses is aborted by its idle timer, on the loop. */
UNIT_TEST(idle_session_aborted)
{
  struct bs b;
  bs_start(&b);
  b.sessions.timeout_ms = 100;
  char sid[33];
  open_session(&b, "h1", T1, sid);
  uint64_t start = hfx_now_ms();
  wait_cleaned_up(&b, "h1", T1);
  ASSERT(hfx_now_ms() - start >= 90);
  ASSERT(core_map_get(&b.sessions.map, sid) == NULL);
  call(&b, 404, "POST", NULL, 0, "/api2/json/backup/%s/finish", sid);
  bs_stop(&b);
}

UNIT_MAIN(UNIT_CASE(backup_finished), UNIT_CASE(writer_refusals), UNIT_CASE(session_refusals),
          UNIT_CASE(abort_removes_everything), UNIT_CASE(idle_session_aborted))
