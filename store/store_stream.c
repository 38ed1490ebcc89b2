/* store_stream.c: sending a snapshot file to a session's client.
 *
 * A file streams in pieces: each piece is read in the pool only after the
 * previous one went out (the HTTP layer pulls), so memory is one piece per
 * transfer whatever the file size. Index entries are checked and registered
 * with the session as they pass, which is what lets a reader fetch the chunks
 * of an index it downloaded and a backup reference the chunks of the previous
 * snapshot's index; a bad checksum at the end aborts the connection, so a
 * client never takes a corrupt index for a complete one.
 */
#include "store/store_session.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_job.h"
#include "core/core_log.h"
#include "format/format_index.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DOWNLOAD_PIECE (1024u * 1024)

struct download {
  struct core_job job;
  struct http_request *req;
  struct store_session *s;
  char *path;                     /* owned */
  int fd;                         /* pool-owned while a job runs */
  int is_index;
  struct format_index_stream idx;  /* pool-owned while a job runs */
  uint64_t size, off;
  /* out of each piece job */
  int rc;
  uint8_t *data;
  size_t len;
  struct store_digest_entry *found; /* digests met in this piece */
  size_t nfound, capfound;
};

static void found_entry(void *arg, const uint8_t digest[32], uint64_t size)
{
  struct download *d = arg;
  if (d->nfound == d->capfound) {
    d->capfound = d->capfound ? d->capfound * 2 : 1024;
    d->found = core_realloc(d->found, d->capfound * sizeof(*d->found));
  }
  memcpy(d->found[d->nfound].digest, digest, 32);
  d->found[d->nfound].size = (uint32_t)size;
  d->nfound++;
}

static void download_free(struct download *d)
{
  if (d->is_index)
    format_index_stream_free(&d->idx);
  core_free(d->found);
  core_free(d->path);
  core_free(d);
}

static void close_run(struct core_job *j)
{
  struct download *d = (struct download *)j;
  if (d->fd >= 0)
    close(d->fd);
  d->fd = -1;
}

static void close_done(struct core_job *j, int status)
{
  download_free((struct download *)j);
}

/* Ends a download: the fd is closed in the pool, the session released. */
static void download_end(struct download *d)
{
  store_session_leave(d->s);
  if (d->fd < 0 || core_job_submit(d->s->table->loop, &d->job, close_run, close_done) < 0) {
    if (d->fd >= 0)
      close(d->fd); /* the pool refused: a close cannot wait on anything here */
    download_free(d);
  }
}

static void piece_run(struct core_job *j)
{
  struct download *d = (struct download *)j;
  uint64_t left = d->size - d->off;
  size_t want = left < DOWNLOAD_PIECE ? (size_t)left : DOWNLOAD_PIECE;
  d->nfound = 0;
  d->data = core_try_malloc(want);
  if (d->data == NULL) {
    d->rc = UV_ENOMEM;
    return;
  }
  size_t got = 0;
  while (got < want) {
    ssize_t n = pread(d->fd, d->data + got, want - got, (off_t)(d->off + got));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      d->rc = n < 0 ? -errno : CORE_EFORMAT; /* the file shrank */
      goto fail;
    }
    got += (size_t)n;
  }
  d->len = got;
  d->rc = 0;
  if (d->is_index) {
    d->rc = format_index_stream_feed(&d->idx, d->data, got, found_entry, d);
    if (d->rc == 0 && d->off + got == d->size)
      d->rc = format_index_stream_finish(&d->idx);
    if (d->rc < 0)
      goto fail;
  }
  return;
fail:
  core_free(d->data);
  d->data = NULL;
}

static void download_pull(struct http_request *req, void *ctx);

static void piece_done(struct core_job *j, int status)
{
  struct download *d = (struct download *)j;
  int rc = status < 0 ? status : d->rc;
  for (size_t i = 0; rc == 0 && i < d->nfound; i++)
    rc = store_digestset_add(&d->s->known, d->found[i].digest, d->found[i].size);
  if (rc < 0) {
    core_warn("session %s: %s: %s", d->s->id, strrchr(d->path, '/') + 1, core_strerror(rc));
    core_free(d->data);
    http_stream_write(d->req, NULL, 0, 1, rc);
    download_end(d);
    return;
  }
  d->off += d->len;
  /* A client gone while the piece was read ends the stream as well; ask
   * before writing, which frees the request in that case. */
  int done = d->off == d->size || http_req_gone(d->req);
  http_stream_write(d->req, d->data, d->len, d->off == d->size, 0);
  if (done)
    download_end(d);
}

static void download_pull(struct http_request *req, void *ctx)
{
  struct download *d = ctx;
  if (http_req_gone(req)) {
    http_stream_write(req, NULL, 0, 1, CORE_EABORTED);
    download_end(d);
    return;
  }
  if (core_job_submit_bulk(d->s->table->loop, &d->job, piece_run, piece_done) < 0) {
    http_stream_write(req, NULL, 0, 1, CORE_EABORTED);
    download_end(d);
  }
}

static void open_file_run(struct core_job *j)
{
  struct download *d = (struct download *)j;
  struct stat st;
  d->fd = open(d->path, O_RDONLY | O_CLOEXEC);
  if (d->fd < 0) {
    d->rc = errno == ENOENT ? CORE_ENOTFOUND : -errno;
    return;
  }
  if (fstat(d->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    d->rc = CORE_ENOTFOUND;
    close(d->fd);
    d->fd = -1;
    return;
  }
  d->size = (uint64_t)st.st_size;
  d->rc = 0;
}

static void open_file_done(struct core_job *j, int status)
{
  struct download *d = (struct download *)j;
  int rc = status < 0 ? status : d->rc;
  if (rc < 0) {
    http_respond_error(d->req, http_status_for(rc), "cannot read %s: %s",
                       strrchr(d->path, '/') + 1, core_strerror(rc));
    download_end(d);
    return;
  }
  if (d->size == 0) {
    /* Nothing to stream (and an empty index is not an index). */
    http_respond_raw(d->req, d->is_index ? 500 : 200, "application/octet-stream", "", 0);
    download_end(d);
    return;
  }
  http_respond_stream(d->req, 200, "application/octet-stream", d->size, download_pull, d);
}

void store_session_send_file(struct store_session *s, struct http_request *req, char *path)
{
  struct download *d = core_new(struct download);
  d->req = req;
  d->s = s;
  d->fd = -1;
  d->path = path;
  d->is_index = format_index_kind_from_name(path) > 0;
  if (d->is_index)
    format_index_stream_init(&d->idx);
  int rc = core_job_submit(s->table->loop, &d->job, open_file_run, open_file_done);
  if (rc < 0) {
    d->rc = rc;
    open_file_done(&d->job, rc);
  }
}
