/* client_backup.c: the backup pipeline (see client_backup.h). */
#include "client/client_backup.h"

#include "client/client_api.h"
#include "client/client_archive.h"
#include "client/client_bufpool.h"
#include "client/client_chunker.h"
#include "client/client_group.h"
#include "client/client_progress.h"
#include "client/client_restore.h"
#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "core/core_json.h"
#include "core/core_log.h"
#include "format/format_blob.h"
#include "format/format_catalog.h"
#include "format/format_crypt.h"
#include "format/format_index.h"
#include "format/format_manifest.h"
#include "format/format_name.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define APPEND_BATCH 128
#define FIXED_CHUNK ((size_t)4 << 20)
#define DEFAULT_WORKERS 4
#define DEFAULT_BUDGET ((size_t)96 << 20)
/* Idle chunk buffers kept for reuse, in bytes of their pages: enough for the
 * few that wait between a worker's return and the producer's next chunk. */
#define IDLE_BUFFERS ((size_t)16 << 20)
#define MAX_INDEX_ENTRIES ((size_t)64 << 20)

/* ---- The set of digests the server knows in this session ---- */

enum { K_EMPTY = 0, K_KNOWN = 1, K_UPLOADING = 2, K_FAILED = 3 };

struct known {
  uint8_t (*keys)[32];
  uint8_t *state;
  size_t cap; /* power of two */
  size_t n;
};

static size_t known_find(const struct known *k, const uint8_t d[32])
{
  uint64_t h;
  size_t i;
  memcpy(&h, d, 8); /* digests are uniformly distributed already */
  for (i = (size_t)h & (k->cap - 1);; i = (i + 1) & (k->cap - 1))
    if (k->state[i] == K_EMPTY || memcmp(k->keys[i], d, 32) == 0)
      return i;
}

static void known_grow(struct known *k)
{
  struct known n = {0};
  n.cap = k->cap ? k->cap * 2 : 1024;
  n.keys = core_malloc(n.cap * 32);
  n.state = core_calloc(n.cap, 1);
  for (size_t i = 0; i < k->cap; i++) {
    if (k->state[i] != K_EMPTY) {
      size_t j = known_find(&n, k->keys[i]);
      memcpy(n.keys[j], k->keys[i], 32);
      n.state[j] = k->state[i];
      n.n++;
    }
  }
  core_free(k->keys);
  core_free(k->state);
  *k = n;
}

/* The slot for `d`, inserted as K_EMPTY-turned-`st` when absent. Returns the
 * state it had (K_EMPTY when new). */
static int known_claim(struct known *k, const uint8_t d[32], int st, size_t *slot)
{
  size_t i;
  if ((k->n + 1) * 4 > k->cap * 3)
    known_grow(k);
  i = known_find(k, d);
  *slot = i;
  if (k->state[i] != K_EMPTY)
    return k->state[i];
  memcpy(k->keys[i], d, 32);
  k->state[i] = (uint8_t)st;
  k->n++;
  return K_EMPTY;
}

static void known_free(struct known *k)
{
  core_free(k->keys);
  core_free(k->state);
  memset(k, 0, sizeof(*k));
}

/* ---- Pipeline state ---- */

struct job {
  struct job *next;
  uint64_t seq;   /* position in the index */
  uint64_t start; /* content offset */
  uint8_t *data;  /* plaintext, owned by the job */
  size_t len;
};

struct slot {
  uint8_t digest[32];
  uint64_t start;
  uint32_t len;
  uint8_t done;
};

struct pipe {
  const struct client_backup_opts *o;
  uv_mutex_t mu;
  uv_cond_t cv_work;  /* workers: a job or stop */
  uv_cond_t cv_space; /* producer: budget freed */
  uv_cond_t cv_done;  /* producer: a slot completed */
  uv_cond_t cv_known; /* workers: an upload by another worker finished */
  struct job *qhead, *qtail;
  size_t inflight; /* chunk bytes in queued and running jobs */
  size_t budget;
  int stop;
  int err;          /* first error, 0 if none */
  char errmsg[768];
  struct known known;

  /* the archive being written (set by the producer between archives) */
  const char *archive;
  int fixed;
  char wid[32];
  const char *sid;
  struct slot *ring; /* ring[seq & (ring_cap - 1)] for seq in [next_append, next_seq) */
  uint64_t ring_cap, next_seq, next_append;

  struct client_bufpool *bufs; /* chunk buffers: producer gets, workers put */

  /* producer-only */
  struct client_chunker chunker;
  uint8_t *cur;
  size_t cur_len;
  size_t cur_resident; /* of cur's pages, before this chunk */
  uint64_t stream_off;
  uint8_t batch_digest[APPEND_BATCH][32]; /* the next PUT *_index */
  uint64_t batch_off[APPEND_BATCH];         /* start offsets */
  unsigned batch_n;
  struct format_didx_writer didx;
  struct format_fidx_writer fidx;
  struct format_catalog_writer cat; /* the archive's catalog, while walking */
  int cat_fd;                       /* its spilled runs (an unlinked file), or -1 */

  /* metadata mode: the previous snapshot's index and catalog of the archive */
  struct client_resp prev_resp; /* the index file */
  struct format_index prev_idx;
  int have_prev_idx;
  uint8_t *prev_cat_buf; /* owned: the catalog's plaintext (blob form) */
  struct format_catalog prev_cat;
  int have_prev_cat;
  /* the index form is read through a reader session on the previous
   * snapshot (a backup session cannot download chunks) */
  struct client_restore_opts prev_ro;
  struct client_snapshot *prev_snap; /* owned */
  struct format_catalog_iter *prev_it; /* owned */
  int metadata; /* reuse unchanged files in this archive */
  uint64_t reused_files, reused_bytes, catalog_entries;

  /* groups of small entries (client_group.h), while a directory archive is
   * walked with file boundaries */
  int groups;
  const char *grp_root;   /* the directory walked, for reading held files */
  uint64_t grp_start;     /* stream offset where the group starts (a cut) */
  uint64_t grp_last_hdr;  /* header offset of its last entry so far */
  int grp_spec;           /* the group may still be reused: bytes are held */
  int grp_have_delta;
  uint64_t grp_delta;     /* previous stream offset - this one (mod 2^64) */
  uint64_t grp_old_end;   /* the previous end_off of the entry being written */
  uint64_t grp_old_data;  /* and its data_off */
  uint64_t grp_first_hdr; /* header offset of the group's first entry */
  uint64_t grp_pad_at;    /* previous stream offset of the padding after the
                           * last large file's data, when that file is
                           * unchanged; else UINT64_MAX */
  int last_skipped;       /* the last file's data was not read */
  struct client_group_hold hold;
  uint64_t grouped_files, grouped_bytes, read_files, read_bytes;

  /* totals (under mu) */
  uint64_t chunks, new_chunks, new_bytes, uploaded;

  uv_thread_t *threads;
  unsigned nthreads;
};

static void fail(struct pipe *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records the first error; later ones are consequences. Caller holds mu. */
static void fail(struct pipe *p, int code, const char *fmt, ...)
{
  va_list ap;
  if (p->err)
    return;
  p->err = code < 0 ? code : CORE_EPROTO;
  va_start(ap, fmt);
  vsnprintf(p->errmsg, sizeof(p->errmsg), fmt, ap);
  va_end(ap);
  uv_cond_broadcast(&p->cv_space);
  uv_cond_broadcast(&p->cv_done);
  uv_cond_broadcast(&p->cv_known);
}

/* Encodes into the worker's `scratch` buffer (format_blob_encode_bound of the
 * largest chunk): one buffer per worker for the whole backup instead of a
 * fresh allocation per chunk, whose page faults cost more CPU than the AES. */
static int upload_chunk(struct pipe *p, struct format_blob_ctx *bctx, uint8_t *scratch,
                        size_t scratch_cap, const struct job *j, const uint8_t digest[32],
                        size_t *encoded, char *err, size_t errlen)
{
  struct core_buf target;
  struct client_resp resp;
  char hex[65];
  uint8_t *blob = scratch;
  size_t blen = 0;
  int rc;

  rc = format_blob_encode(bctx, j->data, j->len, FORMAT_BLOB_COMPRESS, p->o->crypt, scratch,
                         scratch_cap, &blen);
  core_hex_encode(digest, 32, hex);
  if (rc < 0) {
    snprintf(err, errlen, "%s: chunk %s at offset %llu: encode: %s", p->archive, hex,
             (unsigned long long)j->start, core_strerror(rc));
    return rc;
  }
  core_buf_init(&target, 1024);
  core_buf_printf(&target, "/api2/json/backup/%s/%s_chunk", p->sid,
                  p->fixed ? "fixed" : "dynamic");
  client_query_add(&target, "wid", p->wid);
  client_query_add(&target, "digest", hex);
  client_query_add_u64(&target, "size", j->len);
  client_query_add_u64(&target, "encoded-size", blen);
  rc = client_api_call(p->o->api, "POST", target.base, blob, blen, NULL, 0, &resp);
  if (rc < 0) {
    snprintf(err, errlen, "%s: upload of chunk %s: %s", p->archive, hex, core_strerror(rc));
  } else if (resp.status < 200 || resp.status > 299) {
    char msg[512];
    rc = client_api_status_error("POST", target.base, &resp, msg, sizeof(msg));
    snprintf(err, errlen, "%s: upload of chunk %s: %s", p->archive, hex, msg);
  }
  client_resp_free(&resp);
  core_buf_free(&target);
  *encoded = blen;
  return rc;
}

static void worker(void *arg)
{
  struct pipe *p = arg;
  struct format_blob_ctx bctx;
  size_t scratch_cap = format_blob_encode_bound(FORMAT_CHUNK_MAX_SIZE);
  uint8_t *scratch = core_malloc(scratch_cap); /* pages are touched as used */
  format_blob_ctx_init(&bctx);

  for (;;) {
    struct job *j;
    uint8_t digest[32] = {0};
    size_t slot, encoded = 0;
    int st, fresh = 0;

    uv_mutex_lock(&p->mu);
    while (!p->stop && p->qhead == NULL)
      uv_cond_wait(&p->cv_work, &p->mu);
    if (p->qhead == NULL) {
      uv_mutex_unlock(&p->mu);
      break;
    }
    j = p->qhead;
    p->qhead = j->next;
    if (p->qhead == NULL)
      p->qtail = NULL;
    if (p->err) {
      /* drain without work once the backup failed */
      uv_mutex_unlock(&p->mu);
      goto finish;
    }
    uv_mutex_unlock(&p->mu);

    format_crypt_chunk_digest(p->o->crypt, j->data, j->len, digest);

    uv_mutex_lock(&p->mu);
    st = known_claim(&p->known, digest, K_UPLOADING, &slot);
    while (st == K_UPLOADING && !p->err) {
      uv_cond_wait(&p->cv_known, &p->mu);
      slot = known_find(&p->known, digest); /* the table may have grown */
      st = p->known.state[slot];
    }
    if (st == K_FAILED && !p->err)
      fail(p, CORE_EPROTO, "%s: chunk upload failed earlier", p->archive);
    uv_mutex_unlock(&p->mu);

    if (st == K_EMPTY) {
      char err[768];
      int rc = upload_chunk(p, &bctx, scratch, scratch_cap, j, digest, &encoded, err,
                            sizeof(err));
      uv_mutex_lock(&p->mu);
      slot = known_find(&p->known, digest);
      if (rc < 0) {
        p->known.state[slot] = K_FAILED;
        fail(p, rc, "%s", err);
      } else {
        p->known.state[slot] = K_KNOWN;
        p->new_chunks++;
        p->new_bytes += j->len;
        p->uploaded += encoded;
        fresh = 1;
      }
      uv_cond_broadcast(&p->cv_known);
      uv_mutex_unlock(&p->mu);
    }
    client_progress_add(p->o->progress, j->len, fresh ? j->len : 0, fresh ? 0 : j->len);

  finish:
    uv_mutex_lock(&p->mu);
    {
      struct slot *s = &p->ring[j->seq & (p->ring_cap - 1)];
      memcpy(s->digest, digest, 32);
      s->done = 1;
    }
    p->inflight -= j->len;
    uv_cond_signal(&p->cv_space);
    uv_cond_signal(&p->cv_done);
    uv_mutex_unlock(&p->mu);
    client_bufpool_put(p->bufs, j->data, j->len);
    core_free(j);
  }
  core_free(scratch);
  format_blob_ctx_free(&bctx);
}

/* ---- Producer side ---- */

static int put_batch(struct pipe *p, char *err, size_t errlen)
{
  struct core_buf body;
  char target[256];
  yajl_val tree, data;
  int rc;

  if (p->batch_n == 0)
    return 0;
  core_buf_init(&body, (size_t)1 << 20);
  core_buf_printf(&body, "{\"wid\":%s,\"digest-list\":[", p->wid);
  for (unsigned i = 0; i < p->batch_n; i++) {
    char hex[65];
    core_hex_encode(p->batch_digest[i], 32, hex);
    core_buf_printf(&body, "%s\"%s\"", i ? "," : "", hex);
  }
  core_buf_append_str(&body, "],\"offset-list\":[");
  for (unsigned i = 0; i < p->batch_n; i++)
    core_buf_printf(&body, "%s%llu", i ? "," : "", (unsigned long long)p->batch_off[i]);
  core_buf_append_str(&body, "]}");
  snprintf(target, sizeof(target), "/api2/json/backup/%s/%s_index", p->sid,
           p->fixed ? "fixed" : "dynamic");
  rc = client_api_json(p->o->api, "PUT", target, body.base, body.len, "application/json",
                       &tree, &data, err, errlen);
  if (tree)
    yajl_tree_free(tree);
  core_buf_free(&body);
  p->batch_n = 0;
  return rc;
}

/* Appends finished slots in index order and PUTs full batches; with `final`
 * waits for every submitted slot and PUTs the remainder. */
static int append_ready(struct pipe *p, int final, char *err, size_t errlen)
{
  for (;;) {
    struct slot s;
    int have = 0, rc;

    uv_mutex_lock(&p->mu);
    for (;;) {
      if (p->err) {
        rc = p->err;
        snprintf(err, errlen, "%s", p->errmsg);
        uv_mutex_unlock(&p->mu);
        return rc;
      }
      if (p->next_append < p->next_seq && p->ring[p->next_append & (p->ring_cap - 1)].done) {
        s = p->ring[p->next_append & (p->ring_cap - 1)];
        p->next_append++;
        p->chunks++;
        have = 1;
        break;
      }
      if (!final || p->next_append == p->next_seq)
        break;
      uv_cond_wait(&p->cv_done, &p->mu);
    }
    uv_mutex_unlock(&p->mu);
    if (!have)
      break;

    if (p->fixed)
      rc = format_fidx_writer_add_chunk(&p->fidx, s.start, s.len, s.digest);
    else
      rc = format_didx_writer_append(&p->didx, s.start + s.len, s.digest);
    if (rc < 0) {
      snprintf(err, errlen, "%s: index entry at offset %llu: %s", p->archive,
               (unsigned long long)s.start, core_strerror(rc));
      return rc;
    }
    memcpy(p->batch_digest[p->batch_n], s.digest, 32);
    p->batch_off[p->batch_n] = s.start;
    if (++p->batch_n == APPEND_BATCH && (rc = put_batch(p, err, errlen)) < 0)
      return rc;
  }
  if (final)
    return put_batch(p, err, errlen);
  return 0;
}

/* Under p->mu, before a new seq is taken (both submit paths): with more
 * chunks outstanding than slots, doubles the ring, keeping seq positions
 * (ring index = seq mod cap). */
static void ring_make_room(struct pipe *p)
{
  if (p->next_seq - p->next_append != p->ring_cap)
    return;
  uint64_t ncap = p->ring_cap * 2;
  struct slot *n = core_calloc(ncap, sizeof(*n));
  for (uint64_t s = p->next_append; s < p->next_seq; s++)
    n[s & (ncap - 1)] = p->ring[s & (p->ring_cap - 1)];
  core_free(p->ring);
  p->ring = n;
  p->ring_cap = ncap;
}

/* Hands a complete chunk (ownership of `data`, a client_bufpool buffer whose
 * first `resident` bytes may have pages) to the workers, after giving back the
 * pages past it; waits while the budget is used up. */
static int submit(struct pipe *p, uint8_t *data, size_t len, size_t resident, char *err,
                  size_t errlen)
{
  struct job *j;
  int rc;

  client_bufpool_trim(p->bufs, data, resident, len);
  uv_mutex_lock(&p->mu);
  if (p->o->cancel && *p->o->cancel)
    fail(p, CORE_EABORTED, "%s: interrupted", p->archive);
  while (!p->err && p->inflight > 0 && p->inflight + len > p->budget)
    uv_cond_wait(&p->cv_space, &p->mu);
  if (p->err) {
    rc = p->err;
    snprintf(err, errlen, "%s", p->errmsg);
    uv_mutex_unlock(&p->mu);
    client_bufpool_put(p->bufs, data, len);
    return rc;
  }
  ring_make_room(p);
  j = core_new(struct job);
  j->seq = p->next_seq++;
  j->start = p->stream_off;
  j->data = data;
  j->len = len;
  {
    struct slot *s = &p->ring[j->seq & (p->ring_cap - 1)];
    memset(s, 0, sizeof(*s));
    s->start = j->start;
    s->len = (uint32_t)len;
  }
  p->stream_off += len;
  if (p->qtail)
    p->qtail->next = j;
  else
    p->qhead = j;
  p->qtail = j;
  p->inflight += len;
  uv_cond_signal(&p->cv_work);
  uv_mutex_unlock(&p->mu);
  return append_ready(p, 0, err, errlen);
}

/* Puts a chunk of the previous snapshot into the index as it is: known
 * to the server, nothing to hash or upload. */
static int submit_known(struct pipe *p, const uint8_t digest[32], size_t len, char *err,
                        size_t errlen)
{
  uv_mutex_lock(&p->mu);
  if (p->err) {
    int rc = p->err;
    snprintf(err, errlen, "%s", p->errmsg);
    uv_mutex_unlock(&p->mu);
    return rc;
  }
  ring_make_room(p);
  {
    struct slot *s = &p->ring[p->next_seq & (p->ring_cap - 1)];
    memset(s, 0, sizeof(*s));
    memcpy(s->digest, digest, 32);
    s->start = p->stream_off;
    s->len = (uint32_t)len;
    s->done = 1;
  }
  p->next_seq++;
  p->stream_off += len;
  uv_mutex_unlock(&p->mu);
  client_progress_add(p->o->progress, len, 0, len);
  return append_ready(p, 0, err, errlen);
}

struct feed_ctx {
  struct pipe *p;
  char *err;
  size_t errlen;
};

/* The end of a stream: its last, partial chunk is submitted if all went
 * well (rc 0), and the buffer goes back to the pool either way. */
static int submit_last(struct pipe *p, int rc, char *err, size_t errlen)
{
  if (rc == 0 && p->cur_len > 0) {
    rc = submit(p, p->cur, p->cur_len, p->cur_resident, err, errlen);
    p->cur = NULL;
    p->cur_len = 0;
  }
  client_bufpool_put(p->bufs, p->cur, p->cur_len);
  p->cur = NULL;
  p->cur_len = 0;
  return rc;
}

/* Ends the current chunk here, whatever the content says. */
static int cut(struct pipe *p, char *err, size_t errlen)
{
  int rc = 0;
  if (p->cur_len > 0) {
    rc = submit(p, p->cur, p->cur_len, p->cur_resident, err, errlen);
    p->cur = NULL;
    p->cur_len = 0;
  }
  client_chunker_reset(&p->chunker);
  return rc;
}

/* The index of the chunk of `idx` ending at `off`, or -1. */
static int64_t chunk_ending_at(const struct format_index *idx, uint64_t off)
{
  uint64_t lo = 0, hi = idx->count;
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo) / 2, s, e;
    format_index_chunk_range(idx, mid, &s, &e);
    if (e == off)
      return (int64_t)mid;
    if (e < off)
      lo = mid + 1;
    else
      hi = mid;
  }
  return -1;
}

/* Metadata mode: if `e` is unchanged since the previous snapshot and its data
 * was a whole run of chunks there, puts those chunks into the index and
 * returns 1 (the file is then not read); 0 to read it. */
static int try_reuse(struct pipe *p, const struct format_catalog_entry *e, char *err,
                     size_t errlen)
{
  struct format_catalog_entry old;
  int64_t first, last;
  if (!p->metadata || format_catalog_lookup(&p->prev_cat, p->prev_it, e->path, &old) != 1)
    return 0;
  if (old.type != FORMAT_CATALOG_FILE || (old.flags & FORMAT_CATALOG_SPARSE) ||
      old.size != e->size || old.data_len != e->size || old.mtime != e->mtime ||
      old.mtime_ns != e->mtime_ns || old.ctime != e->ctime || old.ctime_ns != e->ctime_ns ||
      old.ino != e->ino)
    return 0;
  if (old.data_off == 0)
    first = 0;
  else if ((first = chunk_ending_at(&p->prev_idx, old.data_off)) < 0)
    return 0;
  else
    first++;
  if ((last = chunk_ending_at(&p->prev_idx, old.data_off + old.data_len)) < first)
    return 0;
  for (int64_t i = first; i <= last; i++) {
    uint64_t s, end;
    format_index_chunk_range(&p->prev_idx, (uint64_t)i, &s, &end);
    int rc = submit_known(p, format_index_digest(&p->prev_idx, (uint64_t)i), (size_t)(end - s),
                          err, errlen);
    if (rc < 0)
      return rc;
  }
  p->reused_files++;
  p->reused_bytes += e->size;
  return 1;
}

#define CATALOG_MEM_DEFAULT ((uint64_t)256 << 20)

static int spill_write(void *ctx, const void *data, size_t len)
{
  struct pipe *p = ctx;
  return core_file_write_all(p->cat_fd, data, len);
}

static int spill_read(void *ctx, uint64_t off, void *dst, size_t len)
{
  struct pipe *p = ctx;
  size_t done = 0;
  while (done < len) {
    ssize_t n = pread(p->cat_fd, (uint8_t *)dst + done, len - done, (off_t)(off + done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return n < 0 ? -errno : CORE_EFORMAT;
    done += (size_t)n;
  }
  return 0;
}

/* Writes the catalog's entries so far to a temporary file as one sorted
 * run (an unlinked file in $TMPDIR or /tmp, gone when closed or when the
 * client dies). */
static int spill_catalog(struct pipe *p)
{
  if (p->cat_fd < 0) {
    const char *dir = getenv("TMPDIR");
    if (dir == NULL || *dir == '\0')
      dir = "/tmp";
    p->cat_fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (p->cat_fd < 0) {
      int rc = -errno;
      core_warn("%s: no temporary file in %s for the catalog: %s", p->archive, dir,
                strerror(errno));
      return rc;
    }
  }
  return format_catalog_writer_spill(&p->cat, spill_write, spill_read, p);
}

/* ---- Groups of small entries (client_group.h) ---- */

static int feed(void *arg, const void *data, size_t len);

static void group_begin(struct pipe *p, uint64_t start)
{
  p->grp_start = start;
  p->grp_last_hdr = start;
  p->grp_spec = p->metadata && p->grp_root != NULL;
  p->grp_have_delta = 0;
  client_group_hold_reset(&p->hold);
}

/* The group cannot be reused after all: what it held goes to the chunker,
 * its noted files read now, and the rest of it follows as usual. */
static int group_replay(struct pipe *p, struct feed_ctx *f)
{
  p->grp_spec = 0;
  return client_group_hold_replay(&p->hold, p->grp_root, feed, f, &p->read_files,
                                  &p->read_bytes);
}

/* While the group may be reused: `e`, about to be written, must be the
 * entry the previous snapshot had at the same place relative to the group,
 * with the same metadata; else the group is read. */
static int group_check(struct pipe *p, struct feed_ctx *f, const struct format_catalog_entry *e)
{
  struct format_catalog_entry old;
  if (format_catalog_lookup(&p->prev_cat, p->prev_it, e->path, &old) != 1 ||
      !client_group_same_entry(&old, e))
    return group_replay(p, f);
  if (!p->grp_have_delta) {
    p->grp_delta = old.hdr_off - e->hdr_off;
    p->grp_first_hdr = e->hdr_off;
    p->grp_have_delta = 1;
  } else if (old.hdr_off != e->hdr_off + p->grp_delta) {
    return group_replay(p, f);
  }
  p->grp_old_end = old.end_off;
  p->grp_old_data = old.data_off;
  return 0;
}

enum group_end_kind { END_ENTRY, END_LARGE };

/* Ends the group at stream offset `end` (a cut). A group still held is
 * reused when the previous index has its bytes as a whole run of chunks:
 * the previous stream has a chunk boundary where the group starts and where
 * it ends. Its entries matched, each at the same offset relative to the
 * first and ending where it ended, so the previous range holds the same
 * entries' bytes; a group that starts with a large file's padding must also
 * start where that file's unchanged data ended last time (the padding is
 * then the same zeros). The trailer is never in a group
 * (CLIENT_ARCHIVE_TRAILER). */
static int group_end(struct pipe *p, struct feed_ctx *f, uint64_t end, enum group_end_kind kind)
{
  if (p->grp_spec) {
    uint64_t ps = p->grp_start + p->grp_delta, pe = end + p->grp_delta, s, e;
    int64_t first = 0, last = -1;
    int ok = p->grp_have_delta && p->prev_idx.count > 0 &&
             p->grp_start + p->hold.bytes.len + p->hold.file_bytes == end;
    if (ok && kind == END_LARGE)
      ok = p->grp_old_data == pe;
    if (ok && p->grp_first_hdr != p->grp_start)
      ok = p->grp_pad_at == ps;
    if (ok && ps != 0)
      ok = (first = chunk_ending_at(&p->prev_idx, ps)) >= 0 && ++first > 0;
    if (ok)
      ok = (last = chunk_ending_at(&p->prev_idx, pe)) >= first;
    if (ok) {
      for (int64_t i = first; i <= last; i++) {
        format_index_chunk_range(&p->prev_idx, (uint64_t)i, &s, &e);
        int rc = submit_known(p, format_index_digest(&p->prev_idx, (uint64_t)i),
                              (size_t)(e - s), f->err, f->errlen);
        if (rc < 0)
          return rc;
      }
      p->grouped_files += p->hold.n;
      p->grouped_bytes += p->hold.file_bytes;
      client_group_hold_reset(&p->hold);
      p->grp_spec = 0;
    } else {
      int rc = group_replay(p, f);
      if (rc < 0)
        return rc;
    }
  }
  return cut(p, f->err, f->errlen);
}

/* The walk's entry callback: chunk boundaries around large files' data and
 * groups of small entries, reuse of unchanged files and groups, and the
 * catalog. */
static int on_entry(void *arg, enum client_archive_phase phase,
                    const struct format_catalog_entry *e)
{
  struct feed_ctx *f = arg;
  struct pipe *p = f->p;
  int large = e->size >= CLIENT_REUSE_MIN && !p->o->no_file_boundaries;
  int rc;
  switch (phase) {
  case CLIENT_ARCHIVE_HEADER:
    if (!p->groups)
      return 0;
    /* a large sparse file is always read (its data is not offered for
     * skipping): it starts a group of its own, so that the entries before
     * it can still be reused */
    if (e->hdr_off > p->grp_start &&
        ((large && (e->flags & FORMAT_CATALOG_SPARSE)) ||
         client_group_cut_before(e->path, e->path_len, e->hdr_off - p->grp_start,
                                 e->hdr_off - p->grp_last_hdr))) {
      if ((rc = group_end(p, f, e->hdr_off, END_ENTRY)) < 0)
        return rc;
      group_begin(p, e->hdr_off);
    }
    p->grp_last_hdr = e->hdr_off;
    return p->grp_spec ? group_check(p, f, e) : 0;
  case CLIENT_ARCHIVE_DATA:
    p->last_skipped = 0;
    if (large) {
      rc = p->groups ? group_end(p, f, e->data_off, END_LARGE) : cut(p, f->err, f->errlen);
      p->grp_spec = 0; /* the file's data is no group's */
      if (rc == 0)
        rc = try_reuse(p, e, f->err, f->errlen);
      p->last_skipped = rc == 1;
      return rc;
    }
    if (p->grp_spec) {
      client_group_hold_file(&p->hold, e->path, e->size);
      p->last_skipped = 1;
      return 1;
    }
    return 0;
  case CLIENT_ARCHIVE_DATA_END:
    if (!p->last_skipped) {
      p->read_files++;
      p->read_bytes += e->size;
    }
    p->last_skipped = 0;
    if (!large)
      return 0;
    /* a sparse file's (its data was not offered): read, not held */
    if (p->grp_spec && (rc = group_replay(p, f)) < 0)
      return rc;
    if ((rc = cut(p, f->err, f->errlen)) < 0)
      return rc;
    if (p->groups) {
      struct format_catalog_entry old;
      p->grp_pad_at = UINT64_MAX;
      if (p->metadata && !(e->flags & FORMAT_CATALOG_SPARSE) &&
          format_catalog_lookup(&p->prev_cat, p->prev_it, e->path, &old) == 1 &&
          old.type == FORMAT_CATALOG_FILE && !(old.flags & FORMAT_CATALOG_SPARSE) &&
          old.size == e->size && old.data_len == e->size)
        p->grp_pad_at = old.data_off + old.data_len;
      group_begin(p, e->data_off + e->data_len);
    }
    return 0;
  case CLIENT_ARCHIVE_TRAILER:
    /* the end-of-archive blocks are no group's: read, never held */
    if (!p->groups)
      return 0;
    rc = group_end(p, f, e->hdr_off, END_ENTRY);
    p->grp_spec = 0;
    return rc;
  case CLIENT_ARCHIVE_DONE:
    /* the entry's bytes end where they ended last time (not checked for a
     * large file, whose data was no group's) */
    if (p->grp_spec && e->hdr_off >= p->grp_start && p->grp_old_end != e->end_off + p->grp_delta &&
        (rc = group_replay(p, f)) < 0)
      return rc;
    rc = format_catalog_writer_add(&p->cat, e);
    if (rc == 0 && format_catalog_writer_mem(&p->cat) >=
                       (p->o->catalog_mem ? p->o->catalog_mem : CATALOG_MEM_DEFAULT))
      rc = spill_catalog(p);
    if (rc < 0) {
      snprintf(f->err, f->errlen, "%s: %s: catalog: %s", p->archive, e->path, core_strerror(rc));
      return rc;
    }
    p->catalog_entries++;
    return 0;
  }
  return 0;
}

/* The pax stream's bytes go through the chunker into chunk buffers. */
static int feed(void *arg, const void *data, size_t len)
{
  struct feed_ctx *f = arg;
  struct pipe *p = f->p;
  const uint8_t *d = data;
  if (p->o->cancel && *p->o->cancel) {
    snprintf(f->err, f->errlen, "%s: interrupted", p->archive);
    return CORE_EABORTED;
  }
  if (p->grp_spec) {
    if (client_group_hold_bytes(&p->hold, data, len) == 0)
      return 0;
    /* a group past what a hold keeps is read as usual */
    int rc = group_replay(p, f);
    if (rc < 0)
      return rc;
  }
  while (len > 0) {
    size_t k = client_chunker_scan(&p->chunker, d, len);
    size_t take = k ? k : len;
    if (p->cur == NULL) {
      /* untouched pages cost no memory, so every buffer can take a
       * maximal chunk */
      p->cur = client_bufpool_get(p->bufs, &p->cur_resident);
      if (p->cur == NULL) {
        snprintf(f->err, f->errlen, "%s: out of memory for a chunk buffer", p->archive);
        return -ENOMEM;
      }
      p->cur_len = 0;
    }
    if (p->cur_len + take > CLIENT_CHUNK_MAX) {
      snprintf(f->err, f->errlen, "%s: chunker exceeded the maximum chunk size", p->archive);
      return CORE_EINVAL;
    }
    memcpy(p->cur + p->cur_len, d, take);
    p->cur_len += take;
    if (k) {
      int rc = submit(p, p->cur, p->cur_len, p->cur_resident, f->err, f->errlen);
      p->cur = NULL;
      p->cur_len = 0;
      if (rc < 0)
        return rc;
    }
    d += take;
    len -= take;
  }
  return 0;
}

static int produce_dynamic(struct pipe *p, const char *path, char *err, size_t errlen)
{
  struct feed_ctx f = {p, err, errlen};
  struct client_archive_stats st;
  struct client_archive_create_opts co = {on_entry, &f, p->o->exclude,
                                          p->o->no_exclude_files};
  struct stat sb;
  int rc;

  client_chunker_init(&p->chunker, CLIENT_CHUNKER_GEAR, 0, 0, 0);
  /* held files are read by their path below a directory; a single file is
   * never held (its one entry would be the whole group anyway) */
  p->groups = !p->o->no_file_boundaries;
  p->grp_root = stat(path, &sb) == 0 && S_ISDIR(sb.st_mode) ? path : NULL;
  p->grp_pad_at = UINT64_MAX;
  group_begin(p, 0);
  rc = client_archive_create2(path, feed, &f, &co, &st, err, errlen);
  /* feed() said why it stopped, but the archive writer words the failure of
   * the write it was in over that ("f27: output aborted"): say it again. */
  if (rc == CORE_EABORTED && p->o->cancel && *p->o->cancel)
    snprintf(err, errlen, "%s: interrupted", p->archive);
  p->groups = p->grp_spec = 0;
  p->grp_root = NULL;
  client_group_hold_reset(&p->hold);
  return submit_last(p, rc, err, errlen);
}

static int produce_fixed(struct pipe *p, int fd, uint64_t size, char *err, size_t errlen)
{
  uint64_t off = 0;
  while (off < size) {
    size_t want = size - off < FIXED_CHUNK ? (size_t)(size - off) : FIXED_CHUNK;
    size_t got = 0;
    size_t resident;
    uint8_t *buf = client_bufpool_get(p->bufs, &resident);
    if (buf == NULL) {
      snprintf(err, errlen, "%s: out of memory", p->archive);
      return -ENOMEM;
    }
    while (got < want) {
      ssize_t n = pread(fd, buf + got, want - got, (off_t)(off + got));
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0) {
        int rc = n < 0 ? -errno : CORE_EFORMAT;
        snprintf(err, errlen, "%s: read at offset %llu: %s", p->archive,
                 (unsigned long long)(off + got), n < 0 ? strerror(errno) : "file shrank");
        client_bufpool_put(p->bufs, buf, got);
        return rc;
      }
      got += (size_t)n;
    }
    int rc = submit(p, buf, want, resident, err, errlen);
    if (rc < 0)
      return rc;
    off += want;
  }
  return 0;
}

/* "wid" from {"data": N} or {"data": {"wid": N}}. */
static int parse_wid(yajl_val data, char *out, size_t outlen)
{
  if (data && YAJL_IS_OBJECT(data))
    data = core_json_get(data, "wid");
  if (data && YAJL_IS_INTEGER(data) && YAJL_GET_INTEGER(data) > 0) {
    snprintf(out, outlen, "%lld", (long long)YAJL_GET_INTEGER(data));
    return 0;
  }
  return CORE_EPROTO;
}

struct archive_result {
  uint64_t size;
  uint8_t csum[32];
  int has_catalog;
  char cat_name[FORMAT_NAME_ARCHIVE_MAX + 16];
  uint64_t cat_size; /* the blob's */
  uint8_t cat_csum[32];
};

/* Registers the previous snapshot's index of this archive as known. A
 * missing previous snapshot or archive is not an error. */
static int load_previous(struct pipe *p, char *err, size_t errlen)
{
  struct core_buf target;
  struct client_resp resp;
  struct format_index idx;
  int rc;

  core_buf_init(&target, 1024);
  core_buf_printf(&target, "/api2/json/backup/%s/previous", p->sid);
  client_query_add(&target, "archive-name", p->archive);
  rc = client_api_call(p->o->api, "GET", target.base, NULL, 0, NULL, (size_t)1 << 30, &resp);
  if (rc < 0) {
    snprintf(err, errlen, "%s: previous index: %s", p->archive, core_strerror(rc));
    goto out;
  }
  if (resp.status != 200) {
    rc = 0; /* no previous snapshot, or it lacks this archive */
    goto out;
  }
  rc = format_index_parse(resp.body, resp.len, 0, &idx);
  if (rc < 0) {
    snprintf(err, errlen, "%s: previous index is damaged: %s", p->archive, core_strerror(rc));
    goto out;
  }
  uv_mutex_lock(&p->mu);
  for (uint64_t i = 0; i < idx.count; i++) {
    size_t slot;
    known_claim(&p->known, format_index_digest(&idx, i), K_KNOWN, &slot);
  }
  uv_mutex_unlock(&p->mu);
  if (idx.kind == FORMAT_INDEX_DYNAMIC) {
    /* kept for metadata mode: the chunks of unchanged files */
    p->prev_resp = resp;
    p->prev_idx = idx;
    p->have_prev_idx = 1;
    memset(&resp, 0, sizeof(resp));
  }
out:
  client_resp_free(&resp);
  core_buf_free(&target);
  return rc;
}

/* The previous snapshot's catalog index of the archive (when it has no
 * catalog blob), read by ranges through a reader session on that snapshot:
 * each lookup fetches the chunks of the restart table (once) and of the
 * window it decodes, and the walk's lookups move forward through the
 * catalog, so it is read about once, a few chunks at a time. Best effort, as
 * the blob. */
static void load_previous_catalog_index(struct pipe *p)
{
  char name[FORMAT_NAME_ARCHIVE_MAX + 16], target[256], err[768];
  const struct format_manifest_file *cf;
  yajl_val tree = NULL, data;
  uint8_t *buf = NULL;

  if (format_catalog_index_name(p->archive, name, sizeof(name)) < 0)
    return;
  snprintf(target, sizeof(target), "/api2/json/backup/%s/previous_backup_time", p->sid);
  if (client_api_json(p->o->api, "GET", target, NULL, 0, NULL, &tree, &data, err,
                      sizeof(err)) < 0 ||
      data == NULL || !YAJL_IS_INTEGER(data))
    goto out;
  memset(&p->prev_ro, 0, sizeof(p->prev_ro));
  p->prev_ro.api = p->o->api;
  p->prev_ro.ns = p->o->ns;
  p->prev_ro.backup_type = p->o->backup_type;
  p->prev_ro.backup_id = p->o->backup_id;
  p->prev_ro.backup_time = YAJL_GET_INTEGER(data);
  p->prev_ro.crypt = p->o->crypt;
  if (client_snapshot_open(&p->prev_ro, &p->prev_snap, err, sizeof(err)) < 0)
    goto fail;
  /* the same protection as the blob's: never reuse plain digests in an
   * encrypted archive or the other way round */
  cf = format_manifest_find_file(client_snapshot_manifest(p->prev_snap), name);
  if (cf == NULL)
    goto out; /* no catalog at all: nothing to warn about */
  if ((cf->crypt_mode == FORMAT_CRYPT_MODE_ENCRYPT) != (p->o->crypt != NULL)) {
    snprintf(err, sizeof(err), "encrypted differently");
    goto fail;
  }
  if (client_snapshot_catalog(p->prev_snap, p->archive, &buf, &p->prev_cat, err, sizeof(err)) <
      0)
    goto fail;
  core_free(buf); /* NULL: the index form */
  p->have_prev_cat = 1;
  p->prev_it = core_new(struct format_catalog_iter);
  format_catalog_iter_init(p->prev_it, &p->prev_cat);
  goto out;
fail:
  core_warn("%s: the previous catalog cannot be read (%s): every file is read", p->archive, err);
out:
  if (!p->have_prev_cat) {
    client_snapshot_close(p->prev_snap);
    p->prev_snap = NULL;
  }
  if (tree)
    yajl_tree_free(tree);
}

/* The previous snapshot's catalog of the archive, for metadata mode. Any
 * problem (none there, another key, damaged) only means reading every file. */
static void load_previous_catalog(struct pipe *p)
{
  struct core_buf target;
  struct client_resp resp = {0};
  struct format_blob_ctx bctx;
  char name[FORMAT_NAME_ARCHIVE_MAX + 16];
  size_t len = 0;
  int kind;

  if (format_catalog_name(p->archive, name, sizeof(name)) < 0)
    return;
  core_buf_init(&target, 1024);
  core_buf_printf(&target, "/api2/json/backup/%s/previous", p->sid);
  client_query_add(&target, "archive-name", name);
  if (client_api_call(p->o->api, "GET", target.base, NULL, 0, NULL, FORMAT_BLOB_MAX_SIZE + 4096,
                      &resp) < 0)
    goto out;
  if (resp.status != 200) {
    load_previous_catalog_index(p);
    goto out;
  }
  /* the same protection as this backup's: never reuse plain digests in an
   * encrypted archive or the other way round */
  kind = format_blob_magic_kind(resp.body, resp.len);
  if (kind < 0 || format_blob_kind_encrypted((enum format_blob_kind)kind) != (p->o->crypt != NULL))
    goto out;
  format_blob_ctx_init(&bctx);
  if (format_blob_decode(&bctx, resp.body, resp.len, p->o->crypt, FORMAT_BLOB_MAX_SIZE, NULL,
                         &p->prev_cat_buf, &len) == 0 &&
      format_catalog_open(&p->prev_cat, p->prev_cat_buf, len) == 0) {
    p->have_prev_cat = 1;
    p->prev_it = core_new(struct format_catalog_iter);
    format_catalog_iter_init(p->prev_it, &p->prev_cat);
  } else {
    core_warn("%s: the previous catalog cannot be read: every file is read", p->archive);
  }
  format_blob_ctx_free(&bctx);
out:
  client_resp_free(&resp);
  core_buf_free(&target);
}

static void drop_previous(struct pipe *p)
{
  client_resp_free(&p->prev_resp);
  memset(&p->prev_resp, 0, sizeof(p->prev_resp));
  if (p->have_prev_cat)
    format_catalog_close(&p->prev_cat); /* before its snapshot: it reads through it */
  client_snapshot_close(p->prev_snap);
  p->prev_snap = NULL;
  core_free(p->prev_cat_buf);
  core_free(p->prev_it);
  p->prev_cat_buf = NULL;
  p->prev_it = NULL;
  p->have_prev_idx = p->have_prev_cat = p->metadata = 0;
}

/* Uploads the encoded catalog as a dynamic index of its own,
 * NAME.catalog.didx: chunked like the archive (the same chunker, key and
 * workers), its chunks deduplicated against the previous snapshot's catalog
 * index (registered as known by `previous`). The encoding streams from the
 * writer into the chunker: only the chunks in flight are held. */
static int upload_catalog_index(struct pipe *p, struct archive_result *res, char *err,
                                size_t errlen)
{
  const char *archive = p->archive;
  struct feed_ctx f = {p, err, errlen};
  struct core_buf target;
  yajl_val tree = NULL, data;
  uint64_t count = 0;
  int rc;

  if ((rc = format_catalog_index_name(archive, res->cat_name, sizeof(res->cat_name))) < 0)
    return rc;
  err[0] = '\0';
  /* the archive is closed: its previous index and catalog are not needed
   * any more, and load_previous below takes the catalog index's place */
  drop_previous(p);
  p->archive = res->cat_name;
  p->next_seq = p->next_append = 0;
  p->stream_off = 0;
  p->batch_n = 0;
  format_didx_writer_free(&p->didx);
  format_didx_writer_init(&p->didx, time(NULL), MAX_INDEX_ENTRIES);
  core_buf_init(&target, 1024);
  core_buf_printf(&target, "/api2/json/backup/%s/dynamic_index", p->sid);
  client_query_add(&target, "archive-name", res->cat_name);
  if ((rc = client_api_json(p->o->api, "POST", target.base, NULL, 0, NULL, &tree, &data, err,
                            errlen)) < 0)
    goto out;
  if ((rc = parse_wid(data, p->wid, sizeof(p->wid))) < 0) {
    snprintf(err, errlen, "%s: the server returned no writer id", res->cat_name);
    goto out;
  }
  if ((rc = load_previous(p, err, errlen)) < 0)
    goto out;
  client_chunker_init(&p->chunker, CLIENT_CHUNKER_GEAR, CLIENT_CATALOG_CHUNK_MIN,
                      CLIENT_CATALOG_CHUNK_AVG, CLIENT_CATALOG_CHUNK_MAX);
  rc = format_catalog_writer_emit(&p->cat, feed, &f);
  rc = submit_last(p, rc, err, errlen);
  if (rc < 0) {
    uv_mutex_lock(&p->mu);
    if (p->err) {
      rc = p->err;
      snprintf(err, errlen, "%s", p->errmsg);
    } else {
      if (err[0] == '\0')
        snprintf(err, errlen, "%s: %s", res->cat_name, core_strerror(rc));
      fail(p, rc, "%s", err);
    }
    uv_mutex_unlock(&p->mu);
    goto out;
  }
  if ((rc = append_ready(p, 1, err, errlen)) < 0)
    goto out;
  if ((rc = format_didx_writer_finish(&p->didx, res->cat_csum, &count, &res->cat_size)) < 0) {
    snprintf(err, errlen, "%s: index: %s", res->cat_name, core_strerror(rc));
    goto out;
  }
  {
    char hex[65];
    core_hex_encode(res->cat_csum, 32, hex);
    core_buf_reset(&target);
    core_buf_printf(&target, "/api2/json/backup/%s/dynamic_close", p->sid);
    client_query_add(&target, "wid", p->wid);
    client_query_add_u64(&target, "chunk-count", count);
    client_query_add_u64(&target, "size", res->cat_size);
    client_query_add(&target, "csum", hex);
    if (tree)
      yajl_tree_free(tree);
    tree = NULL;
    rc = client_api_json(p->o->api, "POST", target.base, NULL, 0, NULL, &tree, &data, err,
                         errlen);
  }
  if (rc == 0)
    res->has_catalog = 1;
out:
  if (tree)
    yajl_tree_free(tree);
  core_buf_free(&target);
  p->archive = archive;
  return rc;
}

/* Encodes the archive's catalog and uploads it: as NAME.catalog.blob, or
 * from the threshold on as NAME.catalog.didx. */
static int upload_catalog(struct pipe *p, struct archive_result *res, char *err, size_t errlen)
{
  struct core_buf cat, target;
  struct format_blob_ctx bctx;
  uint8_t *blob = NULL;
  size_t blen = 0;
  uint64_t total = 0;
  uint64_t min = p->o->catalog_index_min ? p->o->catalog_index_min : FORMAT_CATALOG_INDEX_MIN;
  yajl_val tree = NULL, data;
  int rc;

  if ((rc = format_catalog_name(p->archive, res->cat_name, sizeof(res->cat_name))) < 0)
    return 0; /* not a directory archive name: no catalog */
  if ((rc = format_catalog_writer_size(&p->cat, &total)) < 0) {
    snprintf(err, errlen, "%s: catalog: %s", p->archive, core_strerror(rc));
    return rc;
  }
  /* a blob is one allocation and must stay well inside a blob's limit */
  if (total >= min || total > FORMAT_BLOB_MAX_SIZE / 2)
    return upload_catalog_index(p, res, err, errlen);
  core_buf_init(&cat, FORMAT_BLOB_MAX_SIZE);
  core_buf_init(&target, 1024);
  format_blob_ctx_init(&bctx);
  rc = format_catalog_writer_finish(&p->cat, &cat);
  if (rc < 0) {
    snprintf(err, errlen, "%s: catalog: %s", p->archive, core_strerror(rc));
    goto out;
  }
  if ((rc = format_blob_encode_alloc(&bctx, cat.base, cat.len, FORMAT_BLOB_COMPRESS, p->o->crypt,
                                     &blob, &blen)) < 0) {
    snprintf(err, errlen, "%s: catalog: %s", p->archive, core_strerror(rc));
    goto out;
  }
  core_buf_printf(&target, "/api2/json/backup/%s/blob", p->sid);
  client_query_add(&target, "file-name", res->cat_name);
  client_query_add_u64(&target, "encoded-size", blen);
  rc = client_api_json(p->o->api, "POST", target.base, blob, blen, NULL, &tree, &data, err,
                       errlen);
  if (rc == 0) {
    res->has_catalog = 1;
    res->cat_size = blen;
    core_sha256(blob, blen, res->cat_csum);
  }
out:
  if (tree)
    yajl_tree_free(tree);
  core_free(blob);
  format_blob_ctx_free(&bctx);
  core_buf_free(&target);
  core_buf_free(&cat);
  return rc;
}


static int backup_archive(struct pipe *p, const struct client_backup_spec *spec,
                          struct archive_result *res, char *err, size_t errlen)
{
  struct core_buf target;
  yajl_val tree = NULL, data;
  uint64_t size = 0, count = 0;
  int fd = -1, rc;

  p->archive = spec->archive;
  p->fixed = format_index_kind_from_name(spec->archive) == FORMAT_INDEX_FIXED;
  p->next_seq = p->next_append = 0;
  p->stream_off = 0;
  p->batch_n = 0;
  core_buf_init(&target, 1024);

  if (p->fixed) {
    fd = open(spec->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      rc = -errno;
      snprintf(err, errlen, "%s: %s", spec->path, strerror(errno));
      goto out;
    }
    if ((rc = client_image_size(fd, &size)) < 0) {
      snprintf(err, errlen, "%s: not a file or block device", spec->path);
      goto out;
    }
    if ((rc = format_fidx_writer_init(&p->fidx, size, FIXED_CHUNK, time(NULL))) < 0) {
      snprintf(err, errlen, "%s: %s", spec->archive, core_strerror(rc));
      goto out;
    }
  } else {
    format_didx_writer_init(&p->didx, time(NULL), MAX_INDEX_ENTRIES);
    format_catalog_writer_init(&p->cat);
    p->cat_fd = -1;
  }

  core_buf_printf(&target, "/api2/json/backup/%s/%s_index", p->sid,
                  p->fixed ? "fixed" : "dynamic");
  client_query_add(&target, "archive-name", spec->archive);
  if (p->fixed)
    client_query_add_u64(&target, "size", size);
  rc = client_api_json(p->o->api, "POST", target.base, NULL, 0, NULL, &tree, &data, err, errlen);
  if (rc < 0)
    goto out;
  if ((rc = parse_wid(data, p->wid, sizeof(p->wid))) < 0) {
    snprintf(err, errlen, "%s: the server returned no writer id", spec->archive);
    goto out;
  }
  if ((rc = load_previous(p, err, errlen)) < 0)
    goto out;
  if (!p->fixed && p->have_prev_idx && p->o->change_mode != CLIENT_CHANGE_DATA) {
    load_previous_catalog(p);
    p->metadata = p->have_prev_cat;
  }

  rc = p->fixed ? produce_fixed(p, fd, size, err, errlen)
                : produce_dynamic(p, spec->path, err, errlen);
  if (rc < 0) {
    /* a worker's error explains a producer's abort best */
    uv_mutex_lock(&p->mu);
    if (p->err) {
      rc = p->err;
      snprintf(err, errlen, "%s", p->errmsg);
    } else {
      fail(p, rc, "%s", err);
    }
    uv_mutex_unlock(&p->mu);
    goto out;
  }
  if ((rc = append_ready(p, 1, err, errlen)) < 0)
    goto out;

  if (p->fixed)
    rc = format_fidx_writer_finish(&p->fidx, res->csum, &count, &res->size);
  else
    rc = format_didx_writer_finish(&p->didx, res->csum, &count, &res->size);
  if (rc < 0) {
    snprintf(err, errlen, "%s: index: %s", spec->archive, core_strerror(rc));
    goto out;
  }
  {
    char hex[65];
    core_hex_encode(res->csum, 32, hex);
    core_buf_reset(&target);
    core_buf_printf(&target, "/api2/json/backup/%s/%s_close", p->sid,
                    p->fixed ? "fixed" : "dynamic");
    client_query_add(&target, "wid", p->wid);
    client_query_add_u64(&target, "chunk-count", count);
    client_query_add_u64(&target, "size", res->size);
    client_query_add(&target, "csum", hex);
    if (tree)
      yajl_tree_free(tree);
    rc = client_api_json(p->o->api, "POST", target.base, NULL, 0, NULL, &tree, &data, err,
                         errlen);
  }
  if (rc == 0 && !p->fixed)
    rc = upload_catalog(p, res, err, errlen);

out:
  if (tree)
    yajl_tree_free(tree);
  drop_previous(p);
  if (p->fixed) {
    format_fidx_writer_free(&p->fidx);
  } else {
    format_didx_writer_free(&p->didx);
    format_catalog_writer_free(&p->cat);
    if (p->cat_fd >= 0)
      close(p->cat_fd);
    p->cat_fd = -1;
  }
  memset(&p->fidx, 0, sizeof(p->fidx));
  memset(&p->didx, 0, sizeof(p->didx));
  core_buf_free(&target);
  if (fd >= 0)
    close(fd);
  return rc;
}

int client_backup_parse_spec(char *arg, struct client_backup_spec *spec, char *err,
                             size_t errlen)
{
  char *colon = strchr(arg, ':');
  int kind;
  if (colon == NULL || colon == arg || colon[1] == '\0') {
    snprintf(err, errlen, "\"%s\" is not NAME.didx:PATH or NAME.img.fidx:PATH", arg);
    return CORE_ENAME;
  }
  *colon = '\0';
  kind = format_index_kind_from_name(arg);
  if (format_catalog_is_index(arg)) {
    snprintf(err, errlen, "\"%s\": names ending in .catalog.didx are kept for catalogs", arg);
    *colon = ':';
    return CORE_ENAME;
  }
  if (kind < 0 || format_name_archive(arg) < 0) {
    snprintf(err, errlen, "\"%s\": an archive name is a safe name ending in .didx "
             "(directory or file) or .img.fidx (image)", arg);
    *colon = ':';
    return CORE_ENAME;
  }
  spec->archive = arg;
  spec->path = colon + 1;
  return 0;
}

/* The newest snapshot time of the group, or 0. Best effort. */
static int64_t last_snapshot_time(const struct client_backup_opts *o)
{
  struct core_buf target;
  yajl_val tree = NULL, data;
  char err[256];
  int64_t best = 0;

  core_buf_init(&target, 1024);
  core_buf_printf(&target, "/api2/json/admin/datastore/%s/snapshots", client_api_store(o->api));
  client_query_add(&target, "backup-type", o->backup_type);
  client_query_add(&target, "backup-id", o->backup_id);
  if (o->ns && *o->ns)
    client_query_add(&target, "ns", o->ns);
  if (client_api_json(o->api, "GET", target.base, NULL, 0, NULL, &tree, &data, err,
                      sizeof(err)) == 0 &&
      data && YAJL_IS_ARRAY(data)) {
    for (size_t i = 0; i < data->u.array.len; i++) {
      int64_t t;
      if (core_json_get_int(data->u.array.values[i], "backup-time", &t) == 0 && t > best)
        best = t;
    }
  }
  if (tree)
    yajl_tree_free(tree);
  core_buf_free(&target);
  return best;
}

/* "id" from {"data": "ID"} or {"data": {"id": "ID"}}. */
static char *parse_session(yajl_val data)
{
  const char *s = NULL;
  if (data && YAJL_IS_STRING(data))
    s = YAJL_GET_STRING(data);
  else if (data && YAJL_IS_OBJECT(data))
    s = core_json_get_str(data, "id");
  if (s == NULL || *s == '\0' || strlen(s) > 200 || strpbrk(s, "/?&#% "))
    return NULL;
  return core_strdup(s);
}

static int upload_manifest(struct pipe *p, const struct client_backup_spec *specs, size_t n,
                           const struct archive_result *res, int64_t backup_time, char *err,
                           size_t errlen)
{
  const struct client_backup_opts *o = p->o;
  struct format_manifest m;
  struct format_blob_ctx bctx;
  struct core_buf target;
  uint8_t *blob = NULL;
  size_t blen = 0;
  yajl_val tree = NULL, data;
  int rc = 0;

  format_manifest_init(&m, o->backup_type, o->backup_id, backup_time);
  format_blob_ctx_init(&bctx);
  core_buf_init(&target, 1024);
  for (size_t i = 0; i < n && rc == 0; i++) {
    rc = format_manifest_add_file(&m, specs[i].archive,
                                 o->crypt ? FORMAT_CRYPT_MODE_ENCRYPT : FORMAT_CRYPT_MODE_NONE,
                                 res[i].size, res[i].csum);
    if (rc == 0 && res[i].has_catalog)
      rc = format_manifest_add_file(&m, res[i].cat_name,
                                   o->crypt ? FORMAT_CRYPT_MODE_ENCRYPT : FORMAT_CRYPT_MODE_NONE,
                                   res[i].cat_size, res[i].cat_csum);
  }
  if (rc < 0) {
    snprintf(err, errlen, "manifest: %s", core_strerror(rc));
    goto out;
  }
  if (o->crypt && (rc = format_manifest_sign(&m, o->crypt)) < 0) {
    snprintf(err, errlen, "manifest signature: %s", core_strerror(rc));
    goto out;
  }
  if ((rc = format_manifest_encode_blob(&m, &bctx, &blob, &blen)) < 0) {
    snprintf(err, errlen, "manifest: %s", core_strerror(rc));
    goto out;
  }
  core_buf_printf(&target, "/api2/json/backup/%s/blob", p->sid);
  client_query_add(&target, "file-name", FORMAT_MANIFEST_NAME);
  client_query_add_u64(&target, "encoded-size", blen);
  rc = client_api_json(o->api, "POST", target.base, blob, blen, NULL, &tree, &data, err,
                       errlen);
out:
  if (tree)
    yajl_tree_free(tree);
  core_free(blob);
  core_buf_free(&target);
  format_blob_ctx_free(&bctx);
  format_manifest_free(&m);
  return rc;
}

int client_backup_run(const struct client_backup_opts *o, const struct client_backup_spec *specs,
                      size_t n, struct client_backup_stats *stats, char *err, size_t errlen)
{
  struct pipe p;
  struct core_buf target;
  struct archive_result *res = NULL;
  yajl_val tree = NULL, data;
  char *sid = NULL;
  int64_t backup_time = o->backup_time;
  int rc;

  memset(stats, 0, sizeof(*stats));
  memset(&p, 0, sizeof(p));
  client_group_hold_init(&p.hold);
  core_buf_init(&target, 4096);
  if (n == 0) {
    snprintf(err, errlen, "nothing to back up");
    core_buf_free(&target);
    return CORE_EINVAL;
  }

  /* backup-time must be newer than the group's last snapshot */
  if (backup_time == 0) {
    int64_t last = last_snapshot_time(o);
    backup_time = time(NULL);
    if (backup_time <= last)
      backup_time = last + 1;
  }
  core_buf_printf(&target, "/api2/json/backup");
  client_query_add(&target, "store", client_api_store(o->api));
  if (o->ns && *o->ns)
    client_query_add(&target, "ns", o->ns);
  client_query_add(&target, "backup-type", o->backup_type);
  client_query_add(&target, "backup-id", o->backup_id);
  client_query_add_u64(&target, "backup-time", (uint64_t)backup_time);
  rc = client_api_json(o->api, "POST", target.base, NULL, 0, NULL, &tree, &data, err, errlen);
  if (rc < 0)
    goto out_nosession;
  sid = parse_session(data);
  yajl_tree_free(tree);
  tree = NULL;
  if (sid == NULL) {
    snprintf(err, errlen, "the server returned no usable session id");
    rc = CORE_EPROTO;
    goto out_nosession;
  }

  p.o = o;
  p.sid = sid;
  p.budget = o->mem_budget ? o->mem_budget : DEFAULT_BUDGET;
  p.ring_cap = 64;
  p.ring = core_calloc(p.ring_cap, sizeof(*p.ring));
  p.bufs = client_bufpool_new(CLIENT_CHUNK_MAX, IDLE_BUFFERS);
  if (p.bufs == NULL)
    abort(); /* as for the threads below */
  uv_mutex_init(&p.mu);
  uv_cond_init(&p.cv_work);
  uv_cond_init(&p.cv_space);
  uv_cond_init(&p.cv_done);
  uv_cond_init(&p.cv_known);
  p.nthreads = o->workers ? o->workers : DEFAULT_WORKERS;
  p.threads = core_calloc(p.nthreads, sizeof(*p.threads));
  for (unsigned i = 0; i < p.nthreads; i++)
    if (uv_thread_create(&p.threads[i], worker, &p) != 0)
      abort(); /* a client that cannot start 4 threads has nothing to do */

  res = core_calloc(n, sizeof(*res));
  for (size_t i = 0; i < n; i++) {
    rc = backup_archive(&p, &specs[i], &res[i], err, errlen);
    if (rc < 0)
      break;
    stats->bytes += res[i].size;
  }

  uv_mutex_lock(&p.mu);
  p.stop = 1;
  uv_cond_broadcast(&p.cv_work);
  uv_mutex_unlock(&p.mu);
  for (unsigned i = 0; i < p.nthreads; i++)
    uv_thread_join(&p.threads[i]);
  stats->chunks = p.chunks;
  stats->new_chunks = p.new_chunks;
  stats->new_bytes = p.new_bytes;
  stats->uploaded_bytes = p.uploaded;
  stats->reused_files = p.reused_files;
  stats->reused_bytes = p.reused_bytes;
  stats->grouped_files = p.grouped_files;
  stats->grouped_bytes = p.grouped_bytes;
  stats->read_files = p.read_files;
  stats->read_bytes = p.read_bytes;
  stats->catalog_entries = p.catalog_entries;

  if (rc == 0)
    rc = upload_manifest(&p, specs, n, res, backup_time, err, errlen);
  if (rc == 0) {
    core_buf_reset(&target);
    core_buf_printf(&target, "/api2/json/backup/%s/finish", sid);
    rc = client_api_json(o->api, "POST", target.base, NULL, 0, NULL, &tree, &data, err, errlen);
    if (tree)
      yajl_tree_free(tree);
    tree = NULL;
  }
  if (rc < 0) {
    /* the server drops the unfinished snapshot */
    struct client_resp resp;
    core_buf_reset(&target);
    core_buf_printf(&target, "/api2/json/backup/%s", sid);
    if (client_api_call(o->api, "DELETE", target.base, NULL, 0, NULL, 0, &resp) == 0)
      client_resp_free(&resp);
  }
  stats->backup_time = backup_time;

  uv_cond_destroy(&p.cv_work);
  uv_cond_destroy(&p.cv_space);
  uv_cond_destroy(&p.cv_done);
  uv_cond_destroy(&p.cv_known);
  uv_mutex_destroy(&p.mu);
  core_free(p.threads);
  core_free(p.ring);
  client_bufpool_free(p.bufs);
  known_free(&p.known);
  core_free(res);
  core_free(sid);
out_nosession:
  client_group_hold_free(&p.hold);
  if (tree)
    yajl_tree_free(tree);
  core_buf_free(&target);
  return rc;
}
