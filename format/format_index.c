#include "format/format_index.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

/* First 8 bytes of SHA-256("Proxmox Backup fixed sized chunk index v1.0")
 * and of "... dynamic sized chunk index v1.0". */
static const uint8_t fidx_magic[8] = {0x2f, 0x7f, 0x41, 0xed, 0x91, 0xfd, 0x0f, 0xcd};
static const uint8_t didx_magic[8] = {0x1c, 0x91, 0x4e, 0xa5, 0x19, 0xba, 0xb3, 0xcd};

#define OFF_UUID 8
#define OFF_CTIME 24
#define OFF_CSUM 32
#define OFF_SIZE 64
#define OFF_CHUNK_SIZE 72

static uint64_t load_le64(const uint8_t *p)
{
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

static void store_le64(uint8_t *p, uint64_t v)
{
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static int is_pow2(uint64_t v)
{
  return v != 0 && (v & (v - 1)) == 0;
}

/* ceil(size / chunk_size) without overflowing near 2^64. */
static uint64_t fidx_count(uint64_t size, uint64_t chunk_size)
{
  return size / chunk_size + (size % chunk_size != 0);
}

/* Writes magic, a random v4 uuid, ctime and csum; the rest stays as the
 * caller zeroed it. */
static void fill_header(uint8_t *hdr, const uint8_t magic[8], int64_t ctime,
                        const uint8_t csum[CORE_SHA256_LEN])
{
  uint8_t *uuid = hdr + OFF_UUID;

  memcpy(hdr, magic, 8);
  if (core_random(uuid, 16) < 0) {
    /* The uuid only tells index files apart; it is never trusted, so a
     * failing RNG must not lose a backup. Fall back to time-derived bytes. */
    store_le64(uuid, (uint64_t)ctime);
    store_le64(uuid + 8, (uint64_t)(uintptr_t)hdr);
  }
  uuid[6] = (uint8_t)((uuid[6] & 0x0f) | 0x40); /* version 4 */
  uuid[8] = (uint8_t)((uuid[8] & 0x3f) | 0x80); /* RFC 4122 variant */
  store_le64(hdr + OFF_CTIME, (uint64_t)ctime);
  memcpy(hdr + OFF_CSUM, csum, CORE_SHA256_LEN);
}

int format_index_kind_from_name(const char *name)
{
  size_t n = strlen(name);
  if (n > 5 && strcmp(name + n - 5, ".fidx") == 0)
    return FORMAT_INDEX_FIXED;
  if (n > 5 && strcmp(name + n - 5, ".didx") == 0)
    return FORMAT_INDEX_DYNAMIC;
  return CORE_ENAME;
}

void format_index_compute_csum(const struct format_index *idx, uint8_t out[CORE_SHA256_LEN])
{
  size_t esize = idx->kind == FORMAT_INDEX_FIXED ? FORMAT_FIDX_ENTRY_LEN : FORMAT_DIDX_ENTRY_LEN;
  /* For both kinds the csum covers the entry area exactly: for fidx that is
   * the concatenated digests, for didx the raw (end, digest) records. */
  core_sha256(idx->entries, (size_t)idx->count * esize, out);
}

/* Reads the 4096-byte header into `idx` (kind, uuid, ctime, csum; fidx: size,
 * chunk_size and the entry count they imply). 0 or CORE_EFORMAT. */
static int parse_header(const uint8_t *b, struct format_index *idx)
{
  memcpy(idx->uuid, b + OFF_UUID, 16);
  idx->ctime = (int64_t)load_le64(b + OFF_CTIME);
  memcpy(idx->csum, b + OFF_CSUM, CORE_SHA256_LEN);
  if (memcmp(b, fidx_magic, 8) == 0) {
    idx->kind = FORMAT_INDEX_FIXED;
    idx->size = load_le64(b + OFF_SIZE);
    idx->chunk_size = load_le64(b + OFF_CHUNK_SIZE);
    if (!is_pow2(idx->chunk_size) || idx->chunk_size > FORMAT_FIDX_MAX_CHUNK_SIZE)
      return CORE_EFORMAT;
    idx->count = fidx_count(idx->size, idx->chunk_size);
    return 0;
  }
  if (memcmp(b, didx_magic, 8) == 0) {
    idx->kind = FORMAT_INDEX_DYNAMIC;
    return 0;
  }
  return CORE_EFORMAT;
}

int format_index_parse(const void *buf, size_t len, int flags, struct format_index *idx)
{
  const uint8_t *b = buf;
  uint64_t avail;

  memset(idx, 0, sizeof(*idx));
  if (len < FORMAT_INDEX_HDR_LEN || parse_header(b, idx) < 0)
    return CORE_EFORMAT;
  avail = len - FORMAT_INDEX_HDR_LEN;
  idx->entries = b + FORMAT_INDEX_HDR_LEN;

  if (idx->kind == FORMAT_INDEX_FIXED) {
    /* Compare counts, not byte sizes: count * 32 could overflow. */
    if (avail % FORMAT_FIDX_ENTRY_LEN != 0 || avail / FORMAT_FIDX_ENTRY_LEN != idx->count)
      return CORE_EFORMAT;
  } else {
    uint64_t prev = 0;
    if (avail % FORMAT_DIDX_ENTRY_LEN != 0)
      return CORE_EFORMAT;
    idx->count = avail / FORMAT_DIDX_ENTRY_LEN;
    for (uint64_t i = 0; i < idx->count; i++) {
      uint64_t end = load_le64(idx->entries + i * FORMAT_DIDX_ENTRY_LEN);
      if (end < prev)
        return CORE_EFORMAT;
      prev = end;
    }
    idx->size = prev;
  }

  if (!(flags & FORMAT_INDEX_SKIP_CSUM)) {
    uint8_t csum[CORE_SHA256_LEN];
    format_index_compute_csum(idx, csum);
    if (memcmp(csum, idx->csum, CORE_SHA256_LEN) != 0)
      return CORE_ECSUM;
  }
  return 0;
}

/* ---- Streaming reader ---- */

void format_index_stream_init(struct format_index_stream *st)
{
  memset(st, 0, sizeof(*st));
}

void format_index_stream_free(struct format_index_stream *st)
{
  if (st->sha.ctx) {
    uint8_t unused[CORE_SHA256_LEN];
    core_sha256_final(&st->sha, unused);
  }
}

/* One complete entry: checks it, hashes it, hands out digest and size. */
static int stream_entry(struct format_index_stream *st, const uint8_t *e,
                        format_index_entry_fn fn, void *arg)
{
  const struct format_index *h = &st->hdr;
  uint64_t size;
  if (h->kind == FORMAT_INDEX_FIXED) {
    if (st->n >= h->count)
      return CORE_EFORMAT;
    uint64_t start = st->n * h->chunk_size;
    size = h->size - start < h->chunk_size ? h->size - start : h->chunk_size;
    core_sha256_update(&st->sha, e, FORMAT_FIDX_ENTRY_LEN);
    fn(arg, e, size);
  } else {
    uint64_t end = load_le64(e);
    if (end < st->end)
      return CORE_EFORMAT;
    size = end - st->end;
    st->end = end;
    core_sha256_update(&st->sha, e, FORMAT_DIDX_ENTRY_LEN);
    fn(arg, e + 8, size);
  }
  st->n++;
  return 0;
}

int format_index_stream_feed(struct format_index_stream *st, const void *data, size_t len,
                            format_index_entry_fn fn, void *arg)
{
  const uint8_t *p = data, *end = p + len;
  if (st->head_len < FORMAT_INDEX_HDR_LEN) {
    size_t take = FORMAT_INDEX_HDR_LEN - st->head_len;
    if (take > len)
      take = len;
    memcpy(st->head + st->head_len, p, take);
    st->head_len += take;
    p += take;
    if (st->head_len < FORMAT_INDEX_HDR_LEN)
      return 0;
    if (parse_header(st->head, &st->hdr) < 0)
      return CORE_EFORMAT;
    core_sha256_init(&st->sha);
  }
  size_t esize = st->hdr.kind == FORMAT_INDEX_FIXED ? FORMAT_FIDX_ENTRY_LEN
                                                   : FORMAT_DIDX_ENTRY_LEN;
  if (st->carry_len) {
    size_t take = esize - st->carry_len;
    if (take > (size_t)(end - p))
      take = (size_t)(end - p);
    memcpy(st->carry + st->carry_len, p, take);
    st->carry_len += take;
    p += take;
    if (st->carry_len < esize)
      return 0;
    st->carry_len = 0;
    int rc = stream_entry(st, st->carry, fn, arg);
    if (rc < 0)
      return rc;
  }
  for (; (size_t)(end - p) >= esize; p += esize) {
    int rc = stream_entry(st, p, fn, arg);
    if (rc < 0)
      return rc;
  }
  memcpy(st->carry, p, (size_t)(end - p));
  st->carry_len = (size_t)(end - p);
  return 0;
}

int format_index_stream_finish(struct format_index_stream *st)
{
  if (st->head_len < FORMAT_INDEX_HDR_LEN || st->carry_len ||
      (st->hdr.kind == FORMAT_INDEX_FIXED && st->n != st->hdr.count))
    return CORE_EFORMAT;
  uint8_t csum[CORE_SHA256_LEN];
  core_sha256_final(&st->sha, csum);
  return memcmp(csum, st->hdr.csum, CORE_SHA256_LEN) == 0 ? 0 : CORE_ECSUM;
}

const uint8_t *format_index_digest(const struct format_index *idx, uint64_t i)
{
  if (idx->kind == FORMAT_INDEX_FIXED)
    return idx->entries + i * FORMAT_FIDX_ENTRY_LEN;
  return idx->entries + i * FORMAT_DIDX_ENTRY_LEN + 8;
}

void format_index_chunk_range(const struct format_index *idx, uint64_t i, uint64_t *start,
                             uint64_t *end)
{
  if (idx->kind == FORMAT_INDEX_FIXED) {
    *start = i * idx->chunk_size;
    *end = *start + idx->chunk_size;
    if (*end > idx->size)
      *end = idx->size;
    return;
  }
  *start = i == 0 ? 0 : load_le64(idx->entries + (i - 1) * FORMAT_DIDX_ENTRY_LEN);
  *end = load_le64(idx->entries + i * FORMAT_DIDX_ENTRY_LEN);
}

uint64_t format_index_chunk_at(const struct format_index *idx, uint64_t off)
{
  uint64_t lo = 0, hi = idx->count, start, end;
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo) / 2;
    format_index_chunk_range(idx, mid, &start, &end);
    if (end > off)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

/* ---- Fixed index writer ---- */

int format_fidx_writer_init(struct format_fidx_writer *w, uint64_t size, uint64_t chunk_size,
                           int64_t ctime)
{
  uint64_t count;

  memset(w, 0, sizeof(*w));
  if (!is_pow2(chunk_size) || chunk_size > FORMAT_FIDX_MAX_CHUNK_SIZE)
    return CORE_EINVAL;
  count = fidx_count(size, chunk_size);
  if (count > (SIZE_MAX - FORMAT_INDEX_HDR_LEN) / FORMAT_FIDX_ENTRY_LEN / 2)
    return CORE_ETOOBIG;
  /* Zeroed: the header's reserved area must be zero on disk. */
  w->image = core_try_malloc(FORMAT_INDEX_HDR_LEN + (size_t)count * FORMAT_FIDX_ENTRY_LEN);
  w->set = core_try_malloc((size_t)(count / 8 + 1));
  if (w->image == NULL || w->set == NULL) {
    format_fidx_writer_free(w);
    return UV_ENOMEM;
  }
  memset(w->image, 0, FORMAT_INDEX_HDR_LEN + (size_t)count * FORMAT_FIDX_ENTRY_LEN);
  memset(w->set, 0, (size_t)(count / 8 + 1));
  w->count = count;
  w->size = size;
  w->chunk_size = chunk_size;
  w->ctime = ctime;
  return 0;
}

void format_fidx_writer_free(struct format_fidx_writer *w)
{
  core_free(w->image);
  core_free(w->set);
  memset(w, 0, sizeof(*w));
}

int format_fidx_writer_set(struct format_fidx_writer *w, uint64_t pos,
                          const uint8_t digest[CORE_SHA256_LEN])
{
  uint8_t bit;

  if (pos >= w->count)
    return CORE_EINVAL;
  memcpy(w->image + FORMAT_INDEX_HDR_LEN + pos * FORMAT_FIDX_ENTRY_LEN, digest,
         FORMAT_FIDX_ENTRY_LEN);
  bit = (uint8_t)(1u << (pos % 8));
  if (!(w->set[pos / 8] & bit)) {
    w->set[pos / 8] |= bit;
    w->filled++;
  }
  return 0;
}

int format_fidx_writer_append(struct format_fidx_writer *w, const uint8_t digest[CORE_SHA256_LEN])
{
  int rc = format_fidx_writer_set(w, w->next, digest);
  if (rc == 0)
    w->next++;
  return rc;
}

int format_fidx_writer_add_chunk(struct format_fidx_writer *w, uint64_t offset, uint64_t len,
                                const uint8_t digest[CORE_SHA256_LEN])
{
  uint64_t pos;

  if (offset % w->chunk_size != 0 || offset >= w->size)
    return CORE_EINVAL;
  pos = offset / w->chunk_size;
  /* Only the last chunk may be short, and it must end exactly at size. */
  if (len != w->chunk_size && !(pos == w->count - 1 && len == w->size - offset))
    return CORE_EINVAL;
  if (len > w->size - offset)
    return CORE_EINVAL;
  return format_fidx_writer_set(w, pos, digest);
}

int format_fidx_writer_finish(struct format_fidx_writer *w, uint8_t csum[CORE_SHA256_LEN],
                             uint64_t *count, uint64_t *size)
{
  uint8_t sum[CORE_SHA256_LEN];

  if (w->filled != w->count)
    return CORE_EINVAL;
  core_sha256(w->image + FORMAT_INDEX_HDR_LEN, (size_t)w->count * FORMAT_FIDX_ENTRY_LEN, sum);
  fill_header(w->image, fidx_magic, w->ctime, sum);
  store_le64(w->image + OFF_SIZE, w->size);
  store_le64(w->image + OFF_CHUNK_SIZE, w->chunk_size);
  if (csum)
    memcpy(csum, sum, sizeof(sum));
  if (count)
    *count = w->count;
  if (size)
    *size = w->size;
  return 0;
}

const uint8_t *format_fidx_writer_image(const struct format_fidx_writer *w, size_t *len)
{
  *len = FORMAT_INDEX_HDR_LEN + (size_t)w->count * FORMAT_FIDX_ENTRY_LEN;
  return w->image;
}

/* ---- Dynamic index writer ---- */

void format_didx_writer_init(struct format_didx_writer *w, int64_t ctime, size_t max_entries)
{
  memset(w, 0, sizeof(*w));
  w->max_entries = max_entries;
  w->ctime = ctime;
  w->cap = FORMAT_INDEX_HDR_LEN + 64 * FORMAT_DIDX_ENTRY_LEN;
  w->buf = core_calloc(1, w->cap);
  w->len = FORMAT_INDEX_HDR_LEN;
  core_sha256_init(&w->csum);
}

void format_didx_writer_free(struct format_didx_writer *w)
{
  if (w->csum.ctx) {
    uint8_t discard[CORE_SHA256_LEN];
    core_sha256_final(&w->csum, discard);
  }
  core_free(w->buf);
  memset(w, 0, sizeof(*w));
}

int format_didx_writer_append(struct format_didx_writer *w, uint64_t end,
                             const uint8_t digest[CORE_SHA256_LEN])
{
  uint8_t *e;

  if (w->finished || end <= w->end)
    return CORE_EINVAL;
  if (w->max_entries && w->count >= w->max_entries)
    return CORE_ETOOBIG;
  if (w->len + FORMAT_DIDX_ENTRY_LEN > w->cap) {
    size_t ncap = w->cap * 2;
    uint8_t *nbuf = core_try_malloc(ncap);
    if (nbuf == NULL)
      return UV_ENOMEM;
    memcpy(nbuf, w->buf, w->len);
    core_free(w->buf);
    w->buf = nbuf;
    w->cap = ncap;
  }
  e = w->buf + w->len;
  store_le64(e, end);
  memcpy(e + 8, digest, CORE_SHA256_LEN);
  core_sha256_update(&w->csum, e, FORMAT_DIDX_ENTRY_LEN);
  w->len += FORMAT_DIDX_ENTRY_LEN;
  w->count++;
  w->end = end;
  return 0;
}

void format_didx_writer_take_pending(struct format_didx_writer *w, const uint8_t **data,
                                    size_t *len, uint64_t *file_offset)
{
  *data = w->buf + FORMAT_INDEX_HDR_LEN;
  *len = w->len - FORMAT_INDEX_HDR_LEN;
  *file_offset = FORMAT_INDEX_HDR_LEN + w->taken;
  w->taken += *len;
  /* Rewind: the next append overwrites what the caller now holds, which is
   * why the pointer is valid only until then. */
  w->len = FORMAT_INDEX_HDR_LEN;
}

int format_didx_writer_finish(struct format_didx_writer *w, uint8_t csum[CORE_SHA256_LEN],
                             uint64_t *count, uint64_t *size)
{
  uint8_t sum[CORE_SHA256_LEN];

  if (w->finished) {
    /* Again (a close whose file could not be written, retried): the
     * running checksum is spent, the header holds it. */
    memcpy(sum, w->buf + OFF_CSUM, sizeof(sum));
  } else {
    core_sha256_final(&w->csum, sum);
    memset(w->buf, 0, FORMAT_INDEX_HDR_LEN);
    fill_header(w->buf, didx_magic, w->ctime, sum);
    w->finished = 1;
  }
  if (csum)
    memcpy(csum, sum, sizeof(sum));
  if (count)
    *count = w->count;
  if (size)
    *size = w->end;
  return 0;
}

const uint8_t *format_didx_writer_header(const struct format_didx_writer *w)
{
  return w->buf;
}

const uint8_t *format_didx_writer_image(const struct format_didx_writer *w, size_t *len)
{
  if (!w->finished || w->taken != 0)
    return NULL;
  *len = w->len;
  return w->buf;
}

/* ---- Files ---- */

int format_index_tmp_path(const char *path, char *out, size_t out_len)
{
  size_t n = strlen(path);
  int kind = format_index_kind_from_name(path);

  if (kind < 0)
    return kind;
  /* "name.fidx" -> "name.tmp_fidx": four more bytes and the NUL. */
  if (n + 5 > out_len)
    return CORE_ETOOBIG;
  memcpy(out, path, n - 4);
  memcpy(out + n - 4, kind == FORMAT_INDEX_FIXED ? "tmp_fidx" : "tmp_didx", 9);
  return 0;
}

int format_index_write_file(const char *path, const struct core_slice *parts, size_t nparts,
                           int do_fsync)
{
  size_t tlen = strlen(path) + 8;
  char *tmp = core_malloc(tlen);
  int fd = -1, rc;

  rc = format_index_tmp_path(path, tmp, tlen);
  if (rc < 0)
    goto out;
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    rc = -errno;
    goto out;
  }
  for (size_t i = 0; i < nparts; i++) {
    rc = core_file_write_all(fd, parts[i].base, parts[i].len);
    if (rc < 0)
      goto out_unlink;
  }
  if (do_fsync && fsync(fd) < 0) {
    rc = -errno;
    goto out_unlink;
  }
  if (close(fd) < 0) {
    fd = -1;
    rc = -errno;
    goto out_unlink;
  }
  fd = -1;
  if (rename(tmp, path) < 0) {
    rc = -errno;
    goto out_unlink;
  }
  if (do_fsync)
    rc = core_file_fsync_parent(path);
  goto out;
out_unlink:
  unlink(tmp);
out:
  if (fd >= 0)
    close(fd);
  core_free(tmp);
  return rc;
}
