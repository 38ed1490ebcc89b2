/* client_load.c: `cairn benchmark load` (see client_load.h). */
#include "client/client_load.h"

#include "client/client_api.h"
#include "core/core_alloc.h"
#include "core/core_buf.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_json.h"
#include "format/format_blob.h"
#include "format/format_index.h"
#include "format/format_manifest.h"
#include "format/format_name.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define CHUNK_SIZE ((size_t)4 << 20) /* PBS's average dynamic chunk */
#define APPEND_BATCH 128
#define ARCHIVE "data.didx"
#define POLL_INTERVAL_MS 100
#define TASK_POLL_MS 200
#define SAMPLE_MS 250
#define ERRORS_SHOWN 10 /* errors printed as they happen; the rest are counted */
#define TAIL_LEN 64     /* the bytes of a chunk unique to it (see struct load: prefix) */
#define MIDSTATES 8     /* chunk lengths whose prefix hash an actor keeps */

static const char *const op_names[LOAD_OP_COUNT] = {
    "session open", "chunk upload", "index append", "index close",
    "finish",       "status",       "chunk read",
};

/* The same as JSON keys. */
static const char *const op_keys[LOAD_OP_COUNT] = {
    "open", "upload", "append", "close", "finish", "status", "read",
};

/* ---- Small helpers ---- */

static double mono_ms(void)
{
  return (double)uv_hrtime() / 1e6;
}

static void sleep_ms(unsigned ms)
{
  uv_sleep(ms);
}

/* splitmix64: a seeded stream, so every run uploads the same bytes. */
static uint64_t mix64(uint64_t *s)
{
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void fill_chunk(uint8_t *p, size_t len, uint64_t seed)
{
  uint64_t s = seed;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t v = mix64(&s);
    memcpy(p + i, &v, 8);
  }
  if (i < len) {
    uint64_t v = mix64(&s);
    memcpy(p + i, &v, len - i);
  }
}

/* The string a JSON value holds, or NULL. */
static const char *json_string(yajl_val v)
{
  return v && YAJL_IS_STRING(v) ? v->u.string : NULL;
}

/* A session id we can put in a path, or NULL. */
static const char *session_id(yajl_val v, size_t max)
{
  const char *s = json_string(v);
  if (s == NULL || *s == '\0' || strlen(s) >= max || strpbrk(s, "/?&#% "))
    return NULL;
  return s;
}

/* Percent-encodes a UPID for use as a path segment. */
static void append_segment(struct core_buf *b, const char *s)
{
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
        c == '-' || c == '_' || c == '.' || c == '~')
      core_buf_printf(b, "%c", c);
    else
      core_buf_printf(b, "%%%02X", c);
  }
}

/* ---- Latency samples ---- */

struct samples {
  double *v;
  size_t n, cap;
};

static void samples_add(struct samples *s, double ms)
{
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 256;
    s->v = core_realloc(s->v, s->cap * sizeof(*s->v));
  }
  s->v[s->n++] = ms;
}

static void samples_merge(struct samples *into, struct samples *from)
{
  for (size_t i = 0; i < from->n; i++)
    samples_add(into, from->v[i]);
  core_free(from->v);
  memset(from, 0, sizeof(*from));
}

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Nearest-rank percentiles. */
static void samples_summary(struct samples *s, struct client_load_lat *out)
{
  memset(out, 0, sizeof(*out));
  if (s->n == 0)
    return;
  qsort(s->v, s->n, sizeof(*s->v), cmp_double);
  out->n = s->n;
  out->p50_ms = s->v[(s->n * 50 + 99) / 100 - 1];
  out->p99_ms = s->v[(s->n * 99 + 99) / 100 - 1];
  out->max_ms = s->v[s->n - 1];
}

/* ---- Shared state ---- */

struct snap {
  unsigned client;
  int64_t time;
};

struct load {
  const struct client_load_opts *o;
  struct client_api *api;
  const char *store;
  char run_ns[64];          /* the run's parent namespace */
  double deadline_ms;
  uint8_t blob_magic[8];    /* an uncompressed DataBlob's magic */
  /* Chunk contents: the first len - TAIL_LEN bytes of every chunk of length
   * len are this random prefix (generated once), the last TAIL_LEN bytes
   * come from the chunk's seed. Every chunk is still unique (nothing
   * dedups, the server hashes and writes every byte), but the generator
   * hashes only the tail: the SHA-256 state and CRC after the prefix are
   * computed once per chunk length (struct midstate). Generating and
   * hashing 4 MiB per chunk took more CPU than the server spent on it. */
  uint8_t *prefix;          /* CHUNK_SIZE bytes, read-only while actors run */

  uv_mutex_t mu;            /* guards everything below */
  uv_cond_t cv;             /* snapshots added, stop set */
  int stop;                 /* readers, pollers and maintenance end */
  unsigned claimed;         /* backups started (count mode) */
  unsigned clients_done;    /* backup clients that ended */
  struct snap *snaps;
  size_t nsnaps, snaps_cap;
  uint64_t *made;           /* finished snapshots per client */
  uint64_t bytes, read_bytes, restores, errors;
  char first_error[512];
  struct samples lat[LOAD_OP_COUNT];
  char gc_status[128], verify_status[128];
};

struct actor {
  struct load *L;
  struct client_api *api;   /* this actor's connections (client_load_opts) */
  unsigned index;
  uint64_t rng;
  struct samples lat[LOAD_OP_COUNT];
  uv_thread_t thread;
  double pace_ms;           /* --client-rate: the next chunk starts no earlier */
};

/* The hash and CRC of the first `len - TAIL_LEN` bytes of L->prefix. */
struct midstate {
  size_t len;               /* chunk length; 0: unused */
  struct core_sha256 sha;
  uint32_t crc;
};

__attribute__((format(printf, 2, 3)))
static void load_error(struct load *L, const char *fmt, ...)
{
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  uv_mutex_lock(&L->mu);
  if (L->errors++ < ERRORS_SHOWN)
    fprintf(stderr, "cairn benchmark load: %s\n", msg);
  if (L->first_error[0] == '\0')
    snprintf(L->first_error, sizeof(L->first_error), "%s", msg);
  uv_mutex_unlock(&L->mu);
}

static int load_stopped(struct load *L)
{
  int s;
  uv_mutex_lock(&L->mu);
  s = L->stop;
  uv_mutex_unlock(&L->mu);
  return s;
}

static int claim_backup(struct load *L)
{
  int ok;
  uv_mutex_lock(&L->mu);
  if (L->o->count)
    ok = L->claimed < L->o->count;
  else
    ok = mono_ms() < L->deadline_ms;
  if (ok)
    L->claimed++;
  uv_mutex_unlock(&L->mu);
  return ok;
}

static void actor_flush(struct actor *a)
{
  uv_mutex_lock(&a->L->mu);
  for (int i = 0; i < LOAD_OP_COUNT; i++)
    samples_merge(&a->L->lat[i], &a->lat[i]);
  uv_mutex_unlock(&a->L->mu);
}

/* A call expecting 2xx; the latency goes to `op` unless it is negative. */
static int timed_json(struct actor *a, int op, const char *method, const char *target,
                      const void *body, size_t len, const char *ctype, yajl_val *tree,
                      yajl_val *data, char *err, size_t errlen)
{
  double t0 = mono_ms();
  int rc = client_api_json(a->api, method, target, body, len, ctype, tree, data, err, errlen);
  if (rc == 0 && op >= 0)
    samples_add(&a->lat[op], mono_ms() - t0);
  return rc;
}

static void client_ns(const struct load *L, unsigned client, char *out, size_t outlen)
{
  snprintf(out, outlen, "%s/c%03u", L->run_ns, client);
}

static void client_id(unsigned client, char *out, size_t outlen)
{
  snprintf(out, outlen, "load-%03u", client);
}

/* ---- Backup clients ---- */

struct backup {
  struct actor *a;
  char sid[128];
  char wid[32];
  struct format_didx_writer didx;
  uint8_t *blob;            /* header + one chunk; holds L->prefix between chunks */
  struct midstate mid[MIDSTATES];
  char digests[APPEND_BATCH][65];
  uint64_t offsets[APPEND_BATCH];
  unsigned batch_n;
};

static uint64_t pick_size(struct actor *a)
{
  const struct client_load_opts *o = a->L->o;
  unsigned total = 0, r;
  for (size_t i = 0; i < o->nmix; i++)
    total += o->mix[i].weight;
  r = (unsigned)(mix64(&a->rng) % total);
  for (size_t i = 0; i < o->nmix; i++) {
    if (r < o->mix[i].weight)
      return o->mix[i].bytes;
    r -= o->mix[i].weight;
  }
  return o->mix[0].bytes;
}

static int put_batch(struct backup *b, char *err, size_t errlen)
{
  struct core_buf body;
  char target[256];
  yajl_val tree = NULL, data;
  int rc;

  if (b->batch_n == 0)
    return 0;
  core_buf_init(&body, 16384);
  core_buf_printf(&body, "{\"wid\":%s,\"digest-list\":[", b->wid);
  for (unsigned i = 0; i < b->batch_n; i++)
    core_buf_printf(&body, "%s\"%s\"", i ? "," : "", b->digests[i]);
  core_buf_append_str(&body, "],\"offset-list\":[");
  for (unsigned i = 0; i < b->batch_n; i++)
    core_buf_printf(&body, "%s%llu", i ? "," : "", (unsigned long long)b->offsets[i]);
  core_buf_append_str(&body, "]}");
  snprintf(target, sizeof(target), "/api2/json/backup/%s/dynamic_index", b->sid);
  rc = timed_json(b->a, LOAD_OP_APPEND, "PUT", target, body.base, body.len, "application/json",
                  &tree, &data, err, errlen);
  if (tree)
    yajl_tree_free(tree);
  core_buf_free(&body);
  b->batch_n = 0;
  return rc;
}

/* --client-rate: a client that is ahead of its rate waits before its next
 * chunk, like a real client whose disk or chunker is slower than the network.
 * Time lost to a slow upload is not made up later (no bursts after a stall),
 * so the offered load is at most clients x rate. */
static void pace(struct actor *a, size_t len)
{
  double rate = a->L->o->client_rate, now;
  if (rate <= 0)
    return;
  now = mono_ms();
  if (a->pace_ms > now)
    sleep_ms((unsigned)(a->pace_ms - now));
  else
    a->pace_ms = now;
  a->pace_ms += (double)len * 1000.0 / rate;
}

/* The midstate for chunks of `len` bytes (len > TAIL_LEN), or NULL when
 * the actor already keeps MIDSTATES others (the caller then hashes it all). */
static struct midstate *midstate_for(struct backup *b, size_t len)
{
  const uint8_t *prefix = b->a->L->prefix;
  for (int i = 0; i < MIDSTATES; i++) {
    struct midstate *m = &b->mid[i];
    if (m->len == len)
      return m;
    if (m->len == 0) {
      core_sha256_init(&m->sha);
      core_sha256_update(&m->sha, prefix, len - TAIL_LEN);
      m->crc = core_crc32(0, prefix, len - TAIL_LEN);
      m->len = len;
      return m;
    }
  }
  return NULL;
}

static void midstates_free(struct backup *b)
{
  uint8_t scratch[CORE_SHA256_LEN];
  for (int i = 0; i < MIDSTATES; i++)
    if (b->mid[i].len)
      core_sha256_final(&b->mid[i].sha, scratch);
  memset(b->mid, 0, sizeof(b->mid));
}

/* The bytes at the end of a chunk of `len` bytes that are unique to it. */
static size_t tail_len(size_t len)
{
  return len < TAIL_LEN ? len : TAIL_LEN;
}

/* Fills in the blob of a chunk of `len` bytes (prefix, then a tail from
 * `seed`): its header with the CRC, and its digest. The blob buffer holds
 * the prefix already; upload_chunk puts the prefix's bytes back afterwards. */
static void make_chunk(struct backup *b, size_t len, uint64_t seed, uint8_t digest[32])
{
  uint8_t *payload = b->blob + FORMAT_BLOB_HDR_LEN, *tail = payload + len - tail_len(len);
  struct midstate *m = len > TAIL_LEN ? midstate_for(b, len) : NULL;
  struct core_sha256 h;
  uint32_t crc;

  memcpy(b->blob, b->a->L->blob_magic, 8);
  fill_chunk(tail, tail_len(len), seed);
  if (m == NULL) { /* a short chunk, or one length too many: all of it */
    format_blob_set_crc(b->blob, FORMAT_BLOB_HDR_LEN + len);
    core_sha256(payload, len, digest);
    return;
  }
  core_sha256_clone(&m->sha, &h);
  core_sha256_update(&h, tail, TAIL_LEN);
  core_sha256_final(&h, digest);
  crc = core_crc32(m->crc, tail, TAIL_LEN);
  b->blob[8] = (uint8_t)crc; /* magic[8] crc[4], little-endian (format_blob.h) */
  b->blob[9] = (uint8_t)(crc >> 8);
  b->blob[10] = (uint8_t)(crc >> 16);
  b->blob[11] = (uint8_t)(crc >> 24);
}

/* Generates, hashes and uploads chunk `n` of the backup, and queues its
 * index entry. */
static int upload_chunk(struct backup *b, uint64_t seed, uint64_t start, size_t len, char *err,
                        size_t errlen)
{
  struct core_buf target;
  struct client_resp resp;
  uint8_t digest[32];
  double t0;
  int rc;

  pace(b->a, len);
  make_chunk(b, len, seed, digest);
  core_hex_encode(digest, 32, b->digests[b->batch_n]);

  core_buf_init(&target, 512);
  core_buf_printf(&target, "/api2/json/backup/%s/dynamic_chunk", b->sid);
  client_query_add(&target, "wid", b->wid);
  client_query_add(&target, "digest", b->digests[b->batch_n]);
  client_query_add_u64(&target, "size", len);
  client_query_add_u64(&target, "encoded-size", FORMAT_BLOB_HDR_LEN + len);
  t0 = mono_ms();
  rc = client_api_call(b->a->api, "POST", target.base, b->blob, FORMAT_BLOB_HDR_LEN + len,
                       NULL, 0, &resp);
  if (rc < 0) {
    snprintf(err, errlen, "chunk upload: %s", core_strerror(rc));
  } else if (resp.status < 200 || resp.status > 299) {
    rc = client_api_status_error("POST", target.base, &resp, err, errlen);
  } else {
    samples_add(&b->a->lat[LOAD_OP_UPLOAD], mono_ms() - t0);
  }
  client_resp_free(&resp);
  core_buf_free(&target);
  /* the tail goes back to the prefix's bytes, for longer chunks later */
  memcpy(b->blob + FORMAT_BLOB_HDR_LEN + len - tail_len(len),
         b->a->L->prefix + len - tail_len(len), tail_len(len));
  if (rc < 0)
    return rc;

  if ((rc = format_didx_writer_append(&b->didx, start + len, digest)) < 0) {
    snprintf(err, errlen, "index: %s", core_strerror(rc));
    return rc;
  }
  b->offsets[b->batch_n++] = start;
  return b->batch_n == APPEND_BATCH ? put_batch(b, err, errlen) : 0;
}

static int open_session(struct backup *b, const char *ns, const char *id, int64_t t, char *err,
                        size_t errlen)
{
  struct load *L = b->a->L;
  struct core_buf target;
  yajl_val tree = NULL, data;
  const char *s;
  int rc;

  core_buf_init(&target, 512);
  core_buf_printf(&target, "/api2/json/backup");
  client_query_add(&target, "store", L->store);
  client_query_add(&target, "ns", ns);
  client_query_add(&target, "backup-type", "host");
  client_query_add(&target, "backup-id", id);
  client_query_add_u64(&target, "backup-time", (uint64_t)t);
  rc = timed_json(b->a, LOAD_OP_OPEN, "POST", target.base, NULL, 0, NULL, &tree, &data, err,
                  errlen);
  if (rc == 0) {
    if ((s = session_id(data, sizeof(b->sid))) == NULL) {
      snprintf(err, errlen, "backup open: no usable session id");
      rc = CORE_EPROTO;
    } else {
      snprintf(b->sid, sizeof(b->sid), "%s", s);
    }
  }
  if (tree)
    yajl_tree_free(tree);
  tree = NULL;
  if (rc < 0)
    goto out;

  core_buf_reset(&target);
  core_buf_printf(&target, "/api2/json/backup/%s/dynamic_index", b->sid);
  client_query_add(&target, "archive-name", ARCHIVE);
  rc = timed_json(b->a, -1, "POST", target.base, NULL, 0, NULL, &tree, &data, err, errlen);
  if (rc == 0) {
    if (data && YAJL_IS_OBJECT(data))
      data = core_json_get(data, "wid");
    if (data && YAJL_IS_INTEGER(data)) {
      snprintf(b->wid, sizeof(b->wid), "%lld", (long long)YAJL_GET_INTEGER(data));
    } else {
      snprintf(err, errlen, "dynamic_index: no writer id");
      rc = CORE_EPROTO;
    }
  }
out:
  if (tree)
    yajl_tree_free(tree);
  core_buf_free(&target);
  return rc;
}

static int close_and_finish(struct backup *b, const char *id, int64_t t, char *err,
                            size_t errlen)
{
  struct core_buf target;
  struct format_manifest m;
  yajl_val tree = NULL, data;
  uint8_t csum[32], *mblob = NULL;
  uint64_t count = 0, size = 0;
  size_t mlen = 0;
  char hex[65];
  double t0;
  int rc;

  core_buf_init(&target, 512);
  format_manifest_init(&m, "host", id, t);
  format_didx_writer_finish(&b->didx, csum, &count, &size);
  core_hex_encode(csum, 32, hex);
  core_buf_printf(&target, "/api2/json/backup/%s/dynamic_close", b->sid);
  client_query_add(&target, "wid", b->wid);
  client_query_add_u64(&target, "chunk-count", count);
  client_query_add_u64(&target, "size", size);
  client_query_add(&target, "csum", hex);
  rc = timed_json(b->a, LOAD_OP_CLOSE, "POST", target.base, NULL, 0, NULL, &tree, &data, err,
                  errlen);
  if (rc < 0)
    goto out;
  yajl_tree_free(tree);
  tree = NULL;

  /* finish = the manifest upload plus the finish call: the end of a backup */
  if ((rc = format_manifest_add_file(&m, ARCHIVE, FORMAT_CRYPT_MODE_NONE, size, csum)) < 0 ||
      (rc = format_manifest_encode_blob(&m, NULL, &mblob, &mlen)) < 0) {
    snprintf(err, errlen, "manifest: %s", core_strerror(rc));
    goto out;
  }
  t0 = mono_ms();
  core_buf_reset(&target);
  core_buf_printf(&target, "/api2/json/backup/%s/blob", b->sid);
  client_query_add(&target, "file-name", FORMAT_MANIFEST_NAME);
  client_query_add_u64(&target, "encoded-size", mlen);
  rc = timed_json(b->a, -1, "POST", target.base, mblob, mlen, NULL, &tree, &data, err, errlen);
  if (rc < 0)
    goto out;
  yajl_tree_free(tree);
  tree = NULL;
  core_buf_reset(&target);
  core_buf_printf(&target, "/api2/json/backup/%s/finish", b->sid);
  rc = timed_json(b->a, -1, "POST", target.base, NULL, 0, NULL, &tree, &data, err, errlen);
  if (rc == 0)
    samples_add(&b->a->lat[LOAD_OP_FINISH], mono_ms() - t0);
out:
  if (tree)
    yajl_tree_free(tree);
  core_free(mblob);
  format_manifest_free(&m);
  core_buf_free(&target);
  return rc;
}

static void abort_session(struct backup *b)
{
  struct client_resp resp;
  char target[256];
  snprintf(target, sizeof(target), "/api2/json/backup/%s", b->sid);
  if (client_api_call(b->a->api, "DELETE", target, NULL, 0, NULL, 0, &resp) == 0)
    client_resp_free(&resp);
}

/* One backup of `size` bytes. Chunk seeds are unique per (client, backup,
 * chunk): nothing dedups, every chunk is a real write. */
static int run_backup(struct backup *b, unsigned seq, int64_t t, uint64_t size, char *err,
                      size_t errlen)
{
  struct actor *a = b->a;
  char ns[96], id[32];
  uint64_t off = 0, base = a->L->o->seed ^ ((uint64_t)a->index << 40) ^ ((uint64_t)seq << 20);
  unsigned n = 0;
  int rc;

  client_ns(a->L, a->index, ns, sizeof(ns));
  client_id(a->index, id, sizeof(id));
  b->sid[0] = '\0';
  b->batch_n = 0;
  format_didx_writer_init(&b->didx, t, 0);
  if ((rc = open_session(b, ns, id, t, err, errlen)) < 0)
    goto out;
  while (off < size && rc == 0) {
    size_t len = size - off < CHUNK_SIZE ? (size_t)(size - off) : CHUNK_SIZE;
    rc = upload_chunk(b, base + n++, off, len, err, errlen);
    off += len;
  }
  if (rc == 0)
    rc = put_batch(b, err, errlen);
  if (rc == 0)
    rc = close_and_finish(b, id, t, err, errlen);
out:
  if (rc < 0 && b->sid[0])
    abort_session(b);
  format_didx_writer_free(&b->didx);
  return rc;
}

static int create_namespace(struct load *L, const char *parent, const char *name, char *err,
                            size_t errlen)
{
  struct core_buf target;
  yajl_val tree = NULL, data;
  int rc;
  core_buf_init(&target, 256);
  core_buf_printf(&target, "/api2/json/admin/datastore/%s/namespace", L->store);
  client_query_add(&target, "name", name);
  if (parent && *parent)
    client_query_add(&target, "parent", parent);
  rc = client_api_json(L->api, "POST", target.base, NULL, 0, NULL, &tree, &data, err, errlen);
  if (tree)
    yajl_tree_free(tree);
  core_buf_free(&target);
  return rc;
}

static void backup_client(void *arg)
{
  struct actor *a = arg;
  struct load *L = a->L;
  struct backup b;
  char name[16], err[768];
  int64_t last = 0;
  unsigned seq = 0;

  memset(&b, 0, sizeof(b));
  b.a = a;
  snprintf(name, sizeof(name), "c%03u", a->index);
  if (create_namespace(L, L->run_ns, name, err, sizeof(err)) < 0) {
    load_error(L, "client %u: namespace: %s", a->index, err);
    goto out;
  }
  b.blob = core_malloc(FORMAT_BLOB_HDR_LEN + CHUNK_SIZE);
  memcpy(b.blob + FORMAT_BLOB_HDR_LEN, L->prefix, CHUNK_SIZE);
  while (claim_backup(L)) {
    uint64_t size = pick_size(a);
    /* backup-time must grow per group; small backups outrun the clock */
    int64_t t = (int64_t)time(NULL);
    if (t <= last)
      t = last + 1;
    last = t;
    if (run_backup(&b, seq++, t, size, err, sizeof(err)) < 0) {
      load_error(L, "client %u backup %u: %s", a->index, seq - 1, err);
      sleep_ms(100);
      continue;
    }
    uv_mutex_lock(&L->mu);
    if (L->nsnaps == L->snaps_cap) {
      L->snaps_cap = L->snaps_cap ? L->snaps_cap * 2 : 256;
      L->snaps = core_realloc(L->snaps, L->snaps_cap * sizeof(*L->snaps));
    }
    L->snaps[L->nsnaps].client = a->index;
    L->snaps[L->nsnaps].time = t;
    L->nsnaps++;
    L->made[a->index]++;
    L->bytes += size;
    uv_cond_broadcast(&L->cv);
    uv_mutex_unlock(&L->mu);
  }
out:
  midstates_free(&b);
  core_free(b.blob);
  actor_flush(a);
  uv_mutex_lock(&L->mu);
  L->clients_done++;
  uv_mutex_unlock(&L->mu);
}

/* ---- Readers ---- */

struct reader {
  struct actor *a;
  char sid[128];
  struct format_blob_ctx bctx;
};

static int read_chunk(struct reader *r, const uint8_t digest[32], uint64_t len, char *err,
                      size_t errlen)
{
  struct client_resp resp;
  char target[256], hex[65];
  uint8_t *plain = NULL;
  size_t plen = 0;
  double t0 = mono_ms();
  int rc;

  core_hex_encode(digest, 32, hex);
  snprintf(target, sizeof(target), "/api2/json/reader/%s/chunk?digest=%s", r->sid, hex);
  rc = client_api_call(r->a->api, "GET", target, NULL, 0, NULL,
                       FORMAT_CHUNK_MAX_SIZE + FORMAT_BLOB_ENC_HDR_LEN, &resp);
  if (rc < 0) {
    snprintf(err, errlen, "chunk %s: %s", hex, core_strerror(rc));
    return rc;
  }
  if (resp.status != 200) {
    rc = client_api_status_error("GET", target, &resp, err, errlen);
    goto out;
  }
  samples_add(&r->a->lat[LOAD_OP_READ], mono_ms() - t0);
  /* the load uploads uncompressed blobs, so the plaintext stays in place */
  rc = format_blob_decode_inplace(&r->bctx, (uint8_t *)resp.body, resp.len, NULL,
                                 FORMAT_CHUNK_MAX_SIZE, digest, NULL, 0, &plain, &plen);
  if (rc == 0 && plen != len)
    rc = CORE_EFORMAT;
  if (rc < 0)
    snprintf(err, errlen, "chunk %s: %s (%zu bytes, index says %llu)", hex, core_strerror(rc),
             plen, (unsigned long long)len);
out:
  client_resp_free(&resp);
  return rc;
}

static int restore_snapshot(struct reader *r, const struct snap *s, uint64_t *bytes, char *err,
                            size_t errlen)
{
  struct load *L = r->a->L;
  struct core_buf target;
  struct client_resp resp = {0};
  struct format_index idx;
  yajl_val tree = NULL, data;
  char ns[96], id[32];
  int rc, have_resp = 0;

  client_ns(L, s->client, ns, sizeof(ns));
  client_id(s->client, id, sizeof(id));
  r->sid[0] = '\0';
  core_buf_init(&target, 512);
  core_buf_printf(&target, "/api2/json/reader");
  client_query_add(&target, "store", L->store);
  client_query_add(&target, "ns", ns);
  client_query_add(&target, "backup-type", "host");
  client_query_add(&target, "backup-id", id);
  client_query_add_u64(&target, "backup-time", (uint64_t)s->time);
  rc = client_api_json(r->a->api, "POST", target.base, NULL, 0, NULL, &tree, &data, err, errlen);
  if (rc < 0)
    goto out;
  if (session_id(data, sizeof(r->sid)) == NULL) {
    snprintf(err, errlen, "reader open: no usable session id");
    rc = CORE_EPROTO;
    goto out;
  }
  snprintf(r->sid, sizeof(r->sid), "%s", session_id(data, sizeof(r->sid)));

  core_buf_reset(&target);
  core_buf_printf(&target, "/api2/json/reader/%s/download", r->sid);
  client_query_add(&target, "file-name", ARCHIVE);
  rc = client_api_call(r->a->api, "GET", target.base, NULL, 0, NULL, 0, &resp);
  if (rc < 0) {
    snprintf(err, errlen, "index download: %s", core_strerror(rc));
    goto out;
  }
  have_resp = 1;
  if (resp.status != 200) {
    rc = client_api_status_error("GET", target.base, &resp, err, errlen);
    goto out;
  }
  if ((rc = format_index_parse(resp.body, resp.len, 0, &idx)) < 0) {
    snprintf(err, errlen, "index: %s", core_strerror(rc));
    goto out;
  }
  for (uint64_t i = 0; i < idx.count && rc == 0; i++) {
    uint64_t start, end;
    format_index_chunk_range(&idx, i, &start, &end);
    rc = read_chunk(r, format_index_digest(&idx, i), end - start, err, errlen);
    if (rc == 0)
      *bytes += end - start;
  }
out:
  if (have_resp)
    client_resp_free(&resp);
  if (tree)
    yajl_tree_free(tree);
  if (r->sid[0]) {
    struct client_resp dresp;
    core_buf_reset(&target);
    core_buf_printf(&target, "/api2/json/reader/%s", r->sid);
    if (client_api_call(r->a->api, "DELETE", target.base, NULL, 0, NULL, 0, &dresp) == 0)
      client_resp_free(&dresp);
  }
  core_buf_free(&target);
  return rc;
}

static void reader_actor(void *arg)
{
  struct actor *a = arg;
  struct load *L = a->L;
  struct reader r;
  char err[768];

  memset(&r, 0, sizeof(r));
  r.a = a;
  format_blob_ctx_init(&r.bctx);
  for (;;) {
    struct snap s;
    uint64_t bytes = 0;
    uv_mutex_lock(&L->mu);
    while (!L->stop && L->nsnaps == 0)
      uv_cond_wait(&L->cv, &L->mu);
    if (L->stop) {
      uv_mutex_unlock(&L->mu);
      break;
    }
    s = L->snaps[mix64(&a->rng) % L->nsnaps];
    uv_mutex_unlock(&L->mu);
    if (restore_snapshot(&r, &s, &bytes, err, sizeof(err)) < 0) {
      load_error(L, "reader %u: host/load-%03u/%lld: %s", a->index, s.client,
                 (long long)s.time, err);
      sleep_ms(100);
      continue;
    }
    uv_mutex_lock(&L->mu);
    L->read_bytes += bytes;
    L->restores++;
    uv_mutex_unlock(&L->mu);
  }
  format_blob_ctx_free(&r.bctx);
  actor_flush(a);
}

/* ---- Status pollers ---- */

static void poller_actor(void *arg)
{
  struct actor *a = arg;
  struct load *L = a->L;
  char target[256], err[512];

  snprintf(target, sizeof(target), "/api2/json/admin/datastore/%s/status", L->store);
  /* spread the pollers over the interval */
  sleep_ms((unsigned)(mix64(&a->rng) % POLL_INTERVAL_MS));
  while (!load_stopped(L)) {
    yajl_val tree = NULL, data;
    if (timed_json(a, LOAD_OP_STATUS, "GET", target, NULL, 0, NULL, &tree, &data, err,
                   sizeof(err)) < 0)
      load_error(L, "status: %s", err);
    if (tree)
      yajl_tree_free(tree);
    sleep_ms(POLL_INTERVAL_MS);
  }
  actor_flush(a);
}

/* ---- Tasks: GC and verify ---- */

/* Starts a task (POST on `target`) and waits until it stopped; its exit
 * status goes to `status`. Returns 0 when it ended OK. */
static int run_task(struct load *L, const char *target, char *status, size_t statuslen)
{
  struct core_buf path;
  yajl_val tree = NULL, data;
  char err[512], upid[256];
  int rc;

  status[0] = '\0';
  rc = client_api_json(L->api, "POST", target, NULL, 0, NULL, &tree, &data, err, sizeof(err));
  if (rc == 0 && (json_string(data) == NULL || strlen(json_string(data)) >= sizeof(upid))) {
    snprintf(err, sizeof(err), "no UPID in the answer");
    rc = CORE_EPROTO;
  }
  if (rc < 0) {
    snprintf(status, statuslen, "ERROR: %.112s", err);
    if (tree)
      yajl_tree_free(tree);
    return rc;
  }
  snprintf(upid, sizeof(upid), "%s", json_string(data));
  yajl_tree_free(tree);

  core_buf_init(&path, 512);
  core_buf_printf(&path, "/api2/json/nodes/localhost/tasks/");
  append_segment(&path, upid);
  core_buf_append_str(&path, "/status");
  for (;;) {
    const char *st, *exit;
    tree = NULL;
    rc = client_api_json(L->api, "GET", path.base, NULL, 0, NULL, &tree, &data, err,
                         sizeof(err));
    if (rc < 0) {
      snprintf(status, statuslen, "ERROR: task status: %.96s", err);
      break;
    }
    st = core_json_get_str(data, "status");
    exit = core_json_get_str(data, "exitstatus");
    if (st && strcmp(st, "stopped") == 0) {
      snprintf(status, statuslen, "%s", exit ? exit : "?");
      rc = exit && strcmp(exit, "OK") == 0 ? 0 : CORE_EPROTO;
      break;
    }
    yajl_tree_free(tree);
    sleep_ms(TASK_POLL_MS);
  }
  if (tree)
    yajl_tree_free(tree);
  core_buf_free(&path);
  return rc;
}

static int verify_run_ns(struct load *L, char *status, size_t statuslen)
{
  struct core_buf target;
  int rc;
  core_buf_init(&target, 256);
  core_buf_printf(&target, "/api2/json/admin/datastore/%s/verify", L->store);
  client_query_add(&target, "ns", L->run_ns);
  client_query_add(&target, "ignore-verified", "false");
  rc = run_task(L, target.base, status, statuslen);
  core_buf_free(&target);
  return rc;
}

/* Waits for a first round of backups (or the end), then a GC, then a
 * verify, each while the load goes on. */
static void maintenance_actor(void *arg)
{
  struct actor *a = arg;
  struct load *L = a->L;
  char target[256], status[128];

  uv_mutex_lock(&L->mu);
  while (!L->stop && L->nsnaps < L->o->clients)
    uv_cond_wait(&L->cv, &L->mu);
  uv_mutex_unlock(&L->mu);

  snprintf(target, sizeof(target), "/api2/json/admin/datastore/%s/gc", L->store);
  if (run_task(L, target, status, sizeof(status)) < 0)
    load_error(L, "gc: %s", status);
  uv_mutex_lock(&L->mu);
  snprintf(L->gc_status, sizeof(L->gc_status), "%s", status);
  uv_mutex_unlock(&L->mu);

  if (verify_run_ns(L, status, sizeof(status)) < 0)
    load_error(L, "verify during the load: %s", status);
  uv_mutex_lock(&L->mu);
  snprintf(L->verify_status, sizeof(L->verify_status), "%s", status);
  uv_mutex_unlock(&L->mu);
}

/* ---- Server sampling (a local server only) ---- */

struct server_sample {
  int pid;
  double rss_max_kib;
  long long ticks0;
};

static long long proc_ticks(int pid)
{
  char path[64], buf[2048], *p;
  unsigned long long ut, st;
  FILE *f;
  size_t n;
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  if ((f = fopen(path, "re")) == NULL)
    return -1;
  n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* fields after the command name (which may hold spaces): state is 3rd */
  if ((p = strrchr(buf, ')')) == NULL ||
      sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    return -1;
  return (long long)(ut + st);
}

static double proc_rss_kib(int pid)
{
  char path[64], line[256];
  double v = -1;
  FILE *f;
  snprintf(path, sizeof(path), "/proc/%d/status", pid);
  if ((f = fopen(path, "re")) == NULL)
    return -1;
  while (fgets(line, sizeof(line), f))
    if (strncmp(line, "VmRSS:", 6) == 0) {
      v = strtod(line + 6, NULL);
      break;
    }
  fclose(f);
  return v;
}

static void sample_server(struct server_sample *s)
{
  double rss;
  if (s->pid <= 0)
    return;
  rss = proc_rss_kib(s->pid);
  if (rss > s->rss_max_kib)
    s->rss_max_kib = rss;
}

/* ---- The run ---- */

int client_load_parse_mix(const char *s, struct client_load_opts *o)
{
  const char *p = s;
  o->nmix = 0;
  while (*p) {
    char *end;
    unsigned long long v;
    unsigned long w;
    if (o->nmix == CLIENT_LOAD_MAX_MIX)
      return CORE_EINVAL;
    errno = 0;
    v = strtoull(p, &end, 10);
    if (end == p || errno)
      return CORE_EINVAL;
    switch (*end) {
    case 'K': case 'k': v <<= 10; end++; break;
    case 'M': case 'm': v <<= 20; end++; break;
    case 'G': case 'g': v <<= 30; end++; break;
    default: break;
    }
    if (v == 0 || v > ((uint64_t)64 << 30) || *end != ':')
      return CORE_EINVAL;
    p = end + 1;
    w = strtoul(p, &end, 10);
    if (end == p || w == 0 || w > 1000000 || (*end != ',' && *end != '\0'))
      return CORE_EINVAL;
    o->mix[o->nmix].bytes = v;
    o->mix[o->nmix].weight = (unsigned)w;
    o->nmix++;
    p = *end ? end + 1 : end;
  }
  return o->nmix ? 0 : CORE_EINVAL;
}

/* After the load: each client's listing must hold every snapshot it made,
 * and a verify of the run's namespace must pass. */
static void final_verify(struct load *L, struct client_load_result *res)
{
  char err[512];
  for (unsigned c = 0; c < L->o->clients; c++) {
    struct core_buf target;
    yajl_val tree = NULL, data;
    char ns[96];
    uint64_t listed = 0;
    err[0] = '\0';
    client_ns(L, c, ns, sizeof(ns));
    core_buf_init(&target, 256);
    core_buf_printf(&target, "/api2/json/admin/datastore/%s/snapshots", L->store);
    client_query_add(&target, "ns", ns);
    if (client_api_json(L->api, "GET", target.base, NULL, 0, NULL, &tree, &data, err,
                        sizeof(err)) == 0 && data && YAJL_IS_ARRAY(data)) {
      for (size_t i = 0; i < data->u.array.len; i++) {
        yajl_val u = core_json_get(data->u.array.values[i], "unfinished");
        if (!(u && YAJL_IS_TRUE(u)))
          listed++;
      }
    } else {
      load_error(L, "snapshots of %s: %s", ns, err);
    }
    if (listed < L->made[c])
      res->verify_failed += L->made[c] - listed;
    if (tree)
      yajl_tree_free(tree);
    core_buf_free(&target);
  }
  if (verify_run_ns(L, res->final_status, sizeof(res->final_status)) == 0) {
    res->verified = res->verify_failed == 0;
    return;
  }
  /* "ERROR: verification failed for N of M snapshots: ..." */
  {
    const char *p = strstr(res->final_status, "failed for ");
    unsigned long long n;
    if (p && sscanf(p, "failed for %llu of", &n) == 1)
      res->verify_failed += n;
    else
      res->verify_failed += L->nsnaps ? L->nsnaps : 1;
    fprintf(stderr, "cairn benchmark load: final verify: %s\n", res->final_status);
  }
}

static void summarize(struct load *L, struct client_load_result *res)
{
  res->backups = L->nsnaps;
  res->bytes = L->bytes;
  res->read_bytes = L->read_bytes;
  res->restores = L->restores;
  res->errors = L->errors;
  for (int i = 0; i < LOAD_OP_COUNT; i++)
    samples_summary(&L->lat[i], &res->lat[i]);
  snprintf(res->gc_status, sizeof(res->gc_status), "%s", L->gc_status);
  snprintf(res->verify_status, sizeof(res->verify_status), "%s", L->verify_status);
  snprintf(res->first_error, sizeof(res->first_error), "%s", L->first_error);
}

static void start_actors(struct load *L, struct actor *as, unsigned n, unsigned first,
                         uv_thread_cb fn, const char *name)
{
  const struct client_load_opts *o = L->o;
  for (unsigned i = 0; i < n; i++) {
    struct actor *a = &as[first + i];
    a->L = L;
    if (fn == poller_actor)
      a->api = o->poll_api ? o->poll_api : o->api;
    else if (fn == maintenance_actor || o->nio == 0)
      a->api = o->api;
    else
      a->api = o->io[i % o->nio];
    a->index = i;
    a->rng = L->o->seed * 0x100000001b3ull + first + i + 1;
    if (uv_thread_create(&a->thread, fn, a) != 0)
      abort(); /* a load test that cannot start its threads has nothing to measure */
    /* per-role names, so that schedstat and perf tell the roles apart */
    pthread_setname_np(a->thread, name);
  }
}

int client_load_run(const struct client_load_opts *o, struct client_load_result *res,
                    char *err, size_t errlen)
{
  struct load L;
  struct actor *as;
  struct server_sample ss = {0};
  unsigned nact = o->clients + o->readers + o->pollers + (o->gc ? 1 : 0);
  double t0;
  uint8_t empty_hdr[FORMAT_BLOB_HDR_LEN];
  size_t hlen;
  int rc;

  memset(res, 0, sizeof(*res));
  res->rss_mib = res->cpu_pct = -1;
  if (o->clients == 0 || o->nmix == 0 || (o->count == 0 && o->duration <= 0)) {
    snprintf(err, errlen, "nothing to do: no clients, sizes or duration");
    return CORE_EINVAL;
  }
  memset(&L, 0, sizeof(L));
  L.o = o;
  L.api = o->api;
  L.store = client_api_store(o->api);
  /* a fresh parent namespace per run: groups and backup times never collide
   * with an earlier run on the same datastore */
  snprintf(L.run_ns, sizeof(L.run_ns), "load-%lld-%d", (long long)time(NULL), (int)getpid());
  /* the magic of an uncompressed DataBlob, from the encoder itself */
  if ((rc = format_blob_encode(NULL, empty_hdr, 0, 0, NULL, empty_hdr, sizeof(empty_hdr),
                              &hlen)) < 0) {
    snprintf(err, errlen, "blob: %s", core_strerror(rc));
    return rc;
  }
  memcpy(L.blob_magic, empty_hdr, 8);
  if ((rc = create_namespace(&L, NULL, L.run_ns, err, errlen)) < 0)
    return rc;
  uv_mutex_init(&L.mu);
  uv_cond_init(&L.cv);
  L.made = core_calloc(o->clients, sizeof(*L.made));
  L.prefix = core_malloc(CHUNK_SIZE);
  fill_chunk(L.prefix, CHUNK_SIZE, o->seed ^ 0x70726566ull); /* "pref" */
  as = core_calloc(nact, sizeof(*as));

  if (o->server_pid > 0) {
    ss.pid = o->server_pid;
    ss.ticks0 = proc_ticks(ss.pid);
    sample_server(&ss);
  }
  t0 = mono_ms();
  L.deadline_ms = t0 + o->duration * 1000.0;
  start_actors(&L, as, o->clients, 0, backup_client, "load-backup");
  start_actors(&L, as, o->readers, o->clients, reader_actor, "load-reader");
  start_actors(&L, as, o->pollers, o->clients + o->readers, poller_actor, "load-poller");
  if (o->gc)
    start_actors(&L, as, 1, o->clients + o->readers + o->pollers, maintenance_actor,
                 "load-maint");

  /* sample the server while the clients run; they end by themselves */
  for (;;) {
    unsigned done;
    uv_mutex_lock(&L.mu);
    done = L.clients_done;
    uv_mutex_unlock(&L.mu);
    if (done == o->clients)
      break;
    sample_server(&ss);
    sleep_ms(SAMPLE_MS);
  }
  for (unsigned i = 0; i < o->clients; i++)
    uv_thread_join(&as[i].thread);
  res->seconds = (mono_ms() - t0) / 1000.0;
  uv_mutex_lock(&L.mu);
  L.stop = 1;
  uv_cond_broadcast(&L.cv);
  uv_mutex_unlock(&L.mu);
  for (unsigned i = o->clients; i < nact; i++)
    uv_thread_join(&as[i].thread);
  sample_server(&ss);
  if (ss.pid > 0 && ss.ticks0 >= 0) {
    long long t1 = proc_ticks(ss.pid);
    double wall = (mono_ms() - t0) / 1000.0;
    res->rss_mib = ss.rss_max_kib / 1024.0;
    if (t1 >= 0 && wall > 0)
      res->cpu_pct = (double)(t1 - ss.ticks0) / (double)sysconf(_SC_CLK_TCK) / wall * 100.0;
  }

  fprintf(stderr, "cairn benchmark load: %llu backups in %.1f s; verifying them\n",
          (unsigned long long)L.nsnaps, res->seconds);
  summarize(&L, res);
  final_verify(&L, res);
  res->errors = L.errors;

  for (int i = 0; i < LOAD_OP_COUNT; i++)
    core_free(L.lat[i].v);
  core_free(L.snaps);
  core_free(L.made);
  core_free(L.prefix);
  core_free(as);
  uv_cond_destroy(&L.cv);
  uv_mutex_destroy(&L.mu);
  return 0;
}

/* ---- The command ---- */

struct load_cli {
  const char *repository, *secret_file, *fingerprint, *ca_file, *json;
  const char *mix;
  int plain_http, help;
  unsigned io_threads;      /* 0: one per 32 backup clients, 1..4 */
};

static const char *const load_usage =
    "usage: cairn benchmark load [OPTIONS]\n\n"
    "Runs many simulated backup clients at once against the repository's server,\n"
    "with readers restoring, status pollers, and a GC and a verify meanwhile; prints\n"
    "latency percentiles per operation, verifies every snapshot it made, and ends\n"
    "with a key=value line. Exits 0 only with no errors and everything verified.\n\n"
    "  --clients N          backup clients, each in its own namespace (default 64)\n"
    "  --duration S         seconds of load (default 60)\n"
    "  --count N            total backups instead of a duration\n"
    "  --size-mix MIX       backup sizes and weights (default 1M:60,16M:30,64M:10)\n"
    "  --readers N          restoring readers (default 4)\n"
    "  --pollers N          status pollers, one GET per 100 ms each (default 4)\n"
    "  --no-gc              no GC and no verify during the load\n"
    "  --json FILE          write a JSON summary\n"
    "  --server-pid PID     sample this local cairnd's RSS and CPU\n"
    "  --seed N             data seed (default 1)\n"
    "  --client-rate MB/S   each backup client uploads at most this many MB/s, like a\n"
    "                       client limited by its own disk (default 0: no limit, every\n"
    "                       client uploads back to back and the server is saturated)\n"
    "  --io-threads N       network threads for the backup clients and readers\n"
    "                       (default: one per 32 clients, 1 to 4; the pollers have\n"
    "                       one more of their own)\n"
    "  --repository, --secret-file, --fingerprint, --ca-file, --plain-http: as for\n"
    "  every command (and CAIRN_REPOSITORY, CAIRN_SECRET, ... in the environment).\n";

static int parse_count(const char *name, const char *v, unsigned min, unsigned max,
                       unsigned *out)
{
  char *end;
  unsigned long n;
  errno = 0;
  n = strtoul(v, &end, 10);
  if (end == v || *end || errno || n < min || n > max || *v == '-') {
    fprintf(stderr, "cairn benchmark load: --%s takes %u..%u\n", name, min, max);
    return -1;
  }
  *out = (unsigned)n;
  return 0;
}

static int parse_load_args(int argc, char **argv, struct load_cli *c, struct client_load_opts *o)
{
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *v;
    unsigned u;
    if (strncmp(a, "--", 2) != 0) {
      fprintf(stderr, "cairn benchmark load: unexpected argument \"%s\"\n", a);
      return -1;
    }
    a += 2;
    if (strcmp(a, "help") == 0) { c->help = 1; continue; }
    if (strcmp(a, "plain-http") == 0) { c->plain_http = 1; continue; }
    if (strcmp(a, "no-gc") == 0) { o->gc = 0; continue; }
    if (i + 1 >= argc) {
      fprintf(stderr, "cairn benchmark load: --%s needs a value\n", a);
      return -1;
    }
    v = argv[++i];
    if (strcmp(a, "repository") == 0) c->repository = v;
    else if (strcmp(a, "secret-file") == 0) c->secret_file = v;
    else if (strcmp(a, "fingerprint") == 0) c->fingerprint = v;
    else if (strcmp(a, "ca-file") == 0) c->ca_file = v;
    else if (strcmp(a, "json") == 0) c->json = v;
    else if (strcmp(a, "size-mix") == 0) c->mix = v;
    else if (strcmp(a, "clients") == 0) {
      if (parse_count(a, v, 1, 4096, &o->clients) < 0)
        return -1;
    } else if (strcmp(a, "readers") == 0) {
      if (parse_count(a, v, 0, 1024, &o->readers) < 0)
        return -1;
    } else if (strcmp(a, "pollers") == 0) {
      if (parse_count(a, v, 0, 1024, &o->pollers) < 0)
        return -1;
    } else if (strcmp(a, "io-threads") == 0) {
      if (parse_count(a, v, 1, CLIENT_LOAD_MAX_IO, &c->io_threads) < 0)
        return -1;
    } else if (strcmp(a, "count") == 0) {
      if (parse_count(a, v, 1, 100000000, &o->count) < 0)
        return -1;
    } else if (strcmp(a, "server-pid") == 0) {
      if (parse_count(a, v, 1, 1u << 30, &u) < 0)
        return -1;
      o->server_pid = (int)u;
    } else if (strcmp(a, "seed") == 0) {
      if (parse_count(a, v, 0, 0xffffffffu, &u) < 0)
        return -1;
      o->seed = u;
    } else if (strcmp(a, "client-rate") == 0) {
      char *end;
      double mbs = strtod(v, &end);
      if (end == v || *end || !(mbs >= 0 && mbs <= 100000)) {
        fprintf(stderr, "cairn benchmark load: --client-rate takes MB/s, 0 to 100000\n");
        return -1;
      }
      o->client_rate = mbs * 1e6;
    } else if (strcmp(a, "duration") == 0) {
      char *end;
      o->duration = strtod(v, &end);
      if (end == v || *end || !(o->duration > 0 && o->duration <= 86400)) {
        fprintf(stderr, "cairn benchmark load: --duration takes seconds, up to 86400\n");
        return -1;
      }
    } else {
      fprintf(stderr, "cairn benchmark load: unknown option --%s\n", a);
      return -1;
    }
  }
  return 0;
}

static char *read_secret(const char *path)
{
  char buf[4096];
  FILE *f = fopen(path, "re");
  size_t n;
  if (f == NULL)
    return NULL;
  n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  buf[strcspn(buf, "\r\n")] = '\0';
  return buf[0] ? core_strdup(buf) : NULL;
}

static const char *env_or(const char *v, const char *name)
{
  return v ? v : getenv(name);
}

static int open_load_api(const struct load_cli *c, unsigned conns, struct client_api **api)
{
  struct client_repo repo;
  struct client_api_config cfg;
  const char *sfile = env_or(c->secret_file, "CAIRN_SECRET_FILE");
  const char *ph = getenv("CAIRN_PLAIN_HTTP");
  char *secret = NULL, err[1024];
  int rc;

  if ((rc = client_repo_parse(env_or(c->repository, "CAIRN_REPOSITORY"), &repo, err,
                              sizeof(err))) < 0) {
    fprintf(stderr, "cairn benchmark load: %s\n", err);
    client_repo_free(&repo);
    return rc;
  }
  if (sfile) {
    if ((secret = read_secret(sfile)) == NULL) {
      fprintf(stderr, "cairn benchmark load: secret: %s: unreadable or empty\n", sfile);
      client_repo_free(&repo);
      return CORE_EINVAL;
    }
  } else if (getenv("CAIRN_SECRET")) {
    secret = core_strdup(getenv("CAIRN_SECRET"));
  }
  memset(&cfg, 0, sizeof(cfg));
  cfg.repo = &repo;
  cfg.secret = secret;
  cfg.fingerprint = env_or(c->fingerprint, "CAIRN_FINGERPRINT");
  cfg.ca_file = c->ca_file;
  cfg.plain_http = c->plain_http || (ph && strcmp(ph, "1") == 0);
  cfg.max_conns = conns;
  if ((rc = client_api_new(&cfg, api, err, sizeof(err))) < 0)
    fprintf(stderr, "cairn benchmark load: %s\n", err);
  if (secret) {
    memset(secret, 0, strlen(secret));
    core_free(secret);
  }
  client_repo_free(&repo);
  return rc;
}

static void print_table(FILE *f, const struct client_load_opts *o,
                        const struct client_load_result *r)
{
  double mb = (double)r->bytes / 1e6, secs = r->seconds > 0 ? r->seconds : 1;
  fprintf(f, "\n%-14s %9s %10s %10s %10s\n", "operation", "count", "p50 ms", "p99 ms", "max ms");
  for (int i = 0; i < LOAD_OP_COUNT; i++)
    fprintf(f, "%-14s %9llu %10.1f %10.1f %10.1f\n", op_names[i],
            (unsigned long long)r->lat[i].n, r->lat[i].p50_ms, r->lat[i].p99_ms,
            r->lat[i].max_ms);
  fprintf(f, "\nclients %u, readers %u, pollers %u, %.1f s", o->clients, o->readers,
          o->pollers, r->seconds);
  if (o->client_rate > 0)
    fprintf(f, ", each client at most %.1f MB/s (offered %.1f MB/s)", o->client_rate / 1e6,
            o->client_rate * o->clients / 1e6);
  fputc('\n', f);
  fprintf(f, "backups         %llu (%.1f per minute)\n", (unsigned long long)r->backups,
          (double)r->backups * 60.0 / secs);
  fprintf(f, "backed up       %.1f MB (%.1f MB/s)\n", mb, mb / secs);
  fprintf(f, "restored        %llu snapshots, %.1f MB (%.1f MB/s)\n",
          (unsigned long long)r->restores, (double)r->read_bytes / 1e6,
          (double)r->read_bytes / 1e6 / secs);
  fprintf(f, "errors          %llu%s%s\n", (unsigned long long)r->errors,
          r->errors ? ", first: " : "", r->first_error);
  if (o->gc)
    fprintf(f, "gc / verify     %s / %s\n", r->gc_status[0] ? r->gc_status : "-",
            r->verify_status[0] ? r->verify_status : "-");
  if (r->rss_mib >= 0)
    fprintf(f, "server          %.1f MiB peak RSS, %.0f%% CPU\n", r->rss_mib, r->cpu_pct);
  fprintf(f, "final verify    %s\n\n", r->verified ? "ok" : r->final_status);
}

static void print_verified(FILE *f, const struct client_load_result *r)
{
  if (r->verified)
    fputs("ok", f);
  else
    fprintf(f, "%llu", (unsigned long long)(r->verify_failed ? r->verify_failed : 1));
}

static void print_kv(FILE *f, const struct client_load_opts *o,
                     const struct client_load_result *r)
{
  double secs = r->seconds > 0 ? r->seconds : 1;
  fprintf(f, "clients=%u seconds=%.1f backups=%llu backups_per_min=%.1f mb_per_s=%.1f "
          "errors=%llu verified=", o->clients, r->seconds, (unsigned long long)r->backups,
          (double)r->backups * 60.0 / secs, (double)r->bytes / 1e6 / secs,
          (unsigned long long)r->errors);
  print_verified(f, r);
  fprintf(f, " upload_p99_ms=%.1f status_p99_ms=%.1f", r->lat[LOAD_OP_UPLOAD].p99_ms,
          r->lat[LOAD_OP_STATUS].p99_ms);
  fprintf(f, " client_rate_mbs=%.1f io_threads=%u", o->client_rate / 1e6, o->nio);
  if (r->rss_mib >= 0)
    fprintf(f, " rss_mib=%.1f cpu_pct=%.0f\n", r->rss_mib, r->cpu_pct);
  else
    fputs(" rss_mib=- cpu_pct=-\n", f);
}

static void json_str(FILE *f, const char *s)
{
  fputc('"', f);
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      fprintf(f, "\\%c", ch);
    else if (ch < 0x20)
      fprintf(f, "\\u%04x", ch);
    else
      fputc(ch, f);
  }
  fputc('"', f);
}

static int write_json(const char *path, const struct client_load_opts *o,
                      const struct client_load_result *r)
{
  FILE *f = fopen(path, "we");
  double secs = r->seconds > 0 ? r->seconds : 1;
  if (f == NULL)
    return -errno;
  fprintf(f, "{\"clients\":%u,\"client_rate\":%.0f,\"readers\":%u,\"pollers\":%u,\"gc\":%s,"
          "\"seconds\":%.3f,"
          "\"backups\":%llu,\"backups_per_min\":%.2f,\"bytes\":%llu,\"mb_per_s\":%.2f,"
          "\"restores\":%llu,\"read_bytes\":%llu,\"errors\":%llu,\"verified\":",
          o->clients, o->client_rate, o->readers, o->pollers, o->gc ? "true" : "false",
          r->seconds,
          (unsigned long long)r->backups, (double)r->backups * 60.0 / secs,
          (unsigned long long)r->bytes, (double)r->bytes / 1e6 / secs,
          (unsigned long long)r->restores, (unsigned long long)r->read_bytes,
          (unsigned long long)r->errors);
  if (r->verified)
    fputs("\"ok\"", f);
  else
    print_verified(f, r);
  fputs(",\"first_error\":", f);
  json_str(f, r->first_error);
  fputs(",\"gc_status\":", f);
  json_str(f, r->gc_status);
  fputs(",\"verify_status\":", f);
  json_str(f, r->verify_status);
  if (r->rss_mib >= 0)
    fprintf(f, ",\"rss_mib\":%.1f,\"cpu_pct\":%.1f", r->rss_mib, r->cpu_pct);
  fputs(",\"ops\":{", f);
  for (int i = 0; i < LOAD_OP_COUNT; i++)
    fprintf(f, "%s\"%s\":{\"count\":%llu,\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f}",
            i ? "," : "", op_keys[i], (unsigned long long)r->lat[i].n, r->lat[i].p50_ms,
            r->lat[i].p99_ms, r->lat[i].max_ms);
  fputs("}}\n", f);
  return fclose(f) == 0 ? 0 : -errno;
}

static void free_apis(struct client_api *api, struct client_load_opts *o)
{
  for (unsigned i = 0; i < o->nio; i++)
    if (o->io[i])
      client_api_free(o->io[i]);
  if (o->poll_api)
    client_api_free(o->poll_api);
  client_api_free(api);
}

int client_load_main(int argc, char **argv)
{
  struct load_cli c;
  struct client_load_opts o;
  struct client_load_result r;
  struct client_api *api = NULL;
  char err[512];
  int rc;

  memset(&c, 0, sizeof(c));
  memset(&o, 0, sizeof(o));
  o.clients = 64;
  o.readers = 4;
  o.pollers = 4;
  o.duration = 60;
  o.gc = 1;
  o.seed = 1;
  if (parse_load_args(argc, argv, &c, &o) < 0)
    return 2;
  if (c.help) {
    fputs(load_usage, stdout);
    return 0;
  }
  if (client_load_parse_mix(c.mix ? c.mix : "1M:60,16M:30,64M:10", &o) < 0) {
    fprintf(stderr, "cairn benchmark load: --size-mix takes SIZE:WEIGHT,... "
            "(e.g. 1M:60,16M:30,64M:10; at most %d sizes)\n", CLIENT_LOAD_MAX_MIX);
    return 2;
  }
  o.nio = c.io_threads ? c.io_threads : o.clients / 32 < 1 ? 1 : o.clients / 32 > 4 ? 4
                                                                : o.clients / 32;
  if (open_load_api(&c, 2, &api) < 0)
    return 1;
  o.api = api;
  for (unsigned i = 0; i < o.nio; i++) {
    /* actors i, i + nio, ...: backup clients and readers alike */
    unsigned share = (o.clients + o.nio - 1) / o.nio + (o.readers + o.nio - 1) / o.nio;
    if (open_load_api(&c, share, &o.io[i]) < 0)
      goto fail;
  }
  if (o.pollers && open_load_api(&c, o.pollers, &o.poll_api) < 0)
    goto fail;
  rc = client_load_run(&o, &r, err, sizeof(err));
  if (rc < 0) {
    fprintf(stderr, "cairn benchmark load: %s\n", err);
    goto fail;
  }
  print_table(stdout, &o, &r);
  print_kv(stdout, &o, &r);
  fflush(stdout);
  if (c.json && (rc = write_json(c.json, &o, &r)) < 0)
    fprintf(stderr, "cairn benchmark load: %s: %s\n", c.json, strerror(-rc));
  free_apis(api, &o);
  return r.errors == 0 && r.verified && rc >= 0 ? 0 : 1;
fail:
  free_apis(api, &o);
  return 1;
}
