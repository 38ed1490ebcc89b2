/* format_index.h: fixed (.fidx) and dynamic (.didx) chunk indexes.
 *
 * DESIGN
 * Both files are a 4096-byte little-endian header followed by entries,
 * bit-compatible with Proxmox Backup Server:
 *
 *   offset  fidx                          didx
 *   0       magic 2f7f41ed91fd0fcd        magic 1c914ea519bab3cd
 *   8       uuid[16] (random v4)          uuid[16]
 *   24      ctime (i64, epoch s)          ctime
 *   32      index_csum[32]                index_csum[32]
 *   64      size (u64, content bytes)     reserved (zero) .. 4096
 *   72      chunk_size (u64, power of 2)
 *   80      reserved (zero) .. 4096
 *
 * fidx entries are 32-byte digests, ceil(size / chunk_size) of them (only the
 * last chunk may be short); index_csum = SHA-256 over the concatenated
 * digests. didx entries are 40 bytes: u64 LE end offset (exclusive,
 * cumulative) then the digest; index_csum = SHA-256 over the raw entry
 * bytes. The client sends the same csum on *_close and the manifest records
 * it.
 *
 * Readers parse a buffer the caller has read (or mapped) and keep pointers
 * into it: no copy, the buffer must outlive the struct format_index. Writers
 * build the image in memory; the dynamic writer can also hand out its entry
 * bytes as they accumulate, for callers that stream to a file.
 *
 * THREADING: parsing and writing are synchronous CPU/memory work (the csum
 * hashes every entry): call them from thread-pool jobs. format_index_write_file
 * does file I/O: pool only.
 */
#ifndef FORMAT_INDEX_H
#define FORMAT_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "core/core_buf.h"
#include "core/core_digest.h"

#define FORMAT_INDEX_HDR_LEN 4096
#define FORMAT_FIDX_ENTRY_LEN 32
#define FORMAT_DIDX_ENTRY_LEN 40
/* Largest chunk_size a fixed index may declare (and the largest chunk). */
#define FORMAT_FIDX_MAX_CHUNK_SIZE (16u * 1024 * 1024)

enum format_index_kind {
  FORMAT_INDEX_FIXED = 1,
  FORMAT_INDEX_DYNAMIC = 2,
};

/* A parsed index. All fields are read-only to users. */
struct format_index {
  enum format_index_kind kind;
  const uint8_t *entries; /* borrowed: points into the parsed buffer */
  uint64_t count;         /* number of chunks */
  uint64_t size;          /* content bytes (fidx: header; didx: last end offset) */
  uint64_t chunk_size;    /* fidx only; 0 for didx */
  int64_t ctime;          /* creation time, epoch seconds */
  uint8_t uuid[16];
  uint8_t csum[CORE_SHA256_LEN]; /* index_csum as stored (and checked, see flags) */
};

/* Flags for format_index_parse. */
#define FORMAT_INDEX_SKIP_CSUM 1 /* do not recompute index_csum (GC marking) */

/* Parses an index file image of `len` bytes; the kind comes from the magic.
 * Checks: magic, exact file size for the header's counts, fidx chunk_size a
 * power of two <= FORMAT_FIDX_MAX_CHUNK_SIZE, didx end offsets never
 * decreasing, and unless FORMAT_INDEX_SKIP_CSUM the recomputed csum.
 * Returns 0, CORE_EFORMAT or CORE_ECSUM. */
int format_index_parse(const void *buf, size_t len, int flags, struct format_index *idx);

/* ---- Streaming reader ----
 * For sending an index while reading it: feed the file in pieces of any size;
 * each complete entry is checked (didx end offsets never decrease, fidx has no
 * more entries than its header's size implies) and handed to `fn` with the
 * chunk's size; finish compares the entry count and the checksum. Memory is
 * one header and one entry, whatever the index size. */
typedef void (*format_index_entry_fn)(void *arg, const uint8_t digest[CORE_SHA256_LEN],
                                     uint64_t size);

struct format_index_stream {
  struct format_index hdr;                /* from the header; entries unused */
  uint8_t head[FORMAT_INDEX_HDR_LEN];
  size_t head_len;
  uint8_t carry[FORMAT_DIDX_ENTRY_LEN];   /* a partial entry between pieces */
  size_t carry_len;
  struct core_sha256 sha;                /* running index_csum */
  uint64_t n;                            /* entries seen */
  uint64_t end;                          /* didx: the last end offset */
};

void format_index_stream_init(struct format_index_stream *st);
/* Returns 0 or CORE_EFORMAT. */
int format_index_stream_feed(struct format_index_stream *st, const void *data, size_t len,
                            format_index_entry_fn fn, void *arg);
/* After the last piece: 0, CORE_EFORMAT (truncated, wrong count) or CORE_ECSUM. */
int format_index_stream_finish(struct format_index_stream *st);
void format_index_stream_free(struct format_index_stream *st);

/* Kind implied by a file name ending in .fidx or .didx, else CORE_ENAME. */
int format_index_kind_from_name(const char *name);

/* Digest of chunk `i` (< count), pointing into the parsed buffer. */
const uint8_t *format_index_digest(const struct format_index *idx, uint64_t i);
/* Byte range [*start, *end) of chunk `i` in the content. */
void format_index_chunk_range(const struct format_index *idx, uint64_t i, uint64_t *start,
                             uint64_t *end);
/* The chunk holding content offset `off`: the first one ending after it
 * (binary search), or `count` when `off` is at or past the end. */
uint64_t format_index_chunk_at(const struct format_index *idx, uint64_t off);
/* Recomputes index_csum over the entries. */
void format_index_compute_csum(const struct format_index *idx, uint8_t out[CORE_SHA256_LEN]);

/* ---- Fixed index writer ----
 * The entry array is allocated up front from (size, chunk_size), so positions
 * can be filled in any order (PBS's fixed_index append carries offsets, and
 * an incremental backup first clones the previous index, then overwrites
 * changed positions). The caller bounds `size`. */
struct format_fidx_writer {
  uint8_t *image;      /* owned: header + count * 32 bytes */
  uint64_t count;      /* entries */
  uint64_t size;       /* content bytes */
  uint64_t chunk_size; /* bytes per chunk */
  uint64_t filled;     /* positions set at least once */
  uint64_t next;       /* next position for format_fidx_writer_append */
  uint8_t *set;        /* owned: bitmap of set positions */
  int64_t ctime;
};

/* Returns 0, CORE_EINVAL (chunk_size not a power of two or over the maximum),
 * CORE_ETOOBIG (size needs more entries than fit in memory) or UV_ENOMEM. */
int format_fidx_writer_init(struct format_fidx_writer *w, uint64_t size, uint64_t chunk_size,
                           int64_t ctime);
void format_fidx_writer_free(struct format_fidx_writer *w);
/* Sets the digest at position `pos`. 0 or CORE_EINVAL (pos out of range). */
int format_fidx_writer_set(struct format_fidx_writer *w, uint64_t pos,
                          const uint8_t digest[CORE_SHA256_LEN]);
/* Sets the next position in order. 0 or CORE_EINVAL (index already full). */
int format_fidx_writer_append(struct format_fidx_writer *w, const uint8_t digest[CORE_SHA256_LEN]);
/* Sets the chunk that starts at byte `offset` and is `len` bytes long:
 * offset must be chunk-aligned and len must equal chunk_size, except for the
 * last chunk which must end exactly at size. 0 or CORE_EINVAL. */
int format_fidx_writer_add_chunk(struct format_fidx_writer *w, uint64_t offset, uint64_t len,
                                const uint8_t digest[CORE_SHA256_LEN]);
/* Fills in the header (fresh random uuid) and returns csum, count and size
 * (any out pointer may be NULL). CORE_EINVAL if a position was never set. */
int format_fidx_writer_finish(struct format_fidx_writer *w, uint8_t csum[CORE_SHA256_LEN],
                             uint64_t *count, uint64_t *size);
/* The finished file image (header and entries), owned by the writer. */
const uint8_t *format_fidx_writer_image(const struct format_fidx_writer *w, size_t *len);

/* ---- Dynamic index writer ----
 * Entries accumulate in memory behind room for the header. A caller that
 * streams to a file calls format_didx_writer_take_pending from time to time,
 * writes the bytes at the given file offset, and after finish writes the
 * header at offset 0; one that does not just takes the image after finish. */
struct format_didx_writer {
  uint8_t *buf;        /* owned: header room + pending entries */
  size_t len;          /* bytes used in buf, including the header room */
  size_t cap;          /* bytes allocated */
  size_t max_entries;  /* limit on count (bounds memory and file size) */
  uint64_t count;      /* entries appended */
  uint64_t end;        /* end offset of the last entry (content size) */
  uint64_t taken;      /* entry bytes handed out by take_pending */
  struct core_sha256 csum; /* running index_csum */
  int64_t ctime;
  int finished;
};

/* max_entries bounds the index (0: no bound beyond memory). */
void format_didx_writer_init(struct format_didx_writer *w, int64_t ctime, size_t max_entries);
void format_didx_writer_free(struct format_didx_writer *w);
/* Appends the chunk that ends at content offset `end`. The end must be larger
 * than the previous one (no empty chunks). Returns 0, CORE_EINVAL,
 * CORE_ETOOBIG (max_entries reached) or UV_ENOMEM. */
int format_didx_writer_append(struct format_didx_writer *w, uint64_t end,
                             const uint8_t digest[CORE_SHA256_LEN]);
/* Entry bytes appended since the last call, and the file offset they belong
 * at. The pointer is valid until the next append; the bytes are dropped from
 * memory, so the image is no longer available after this has been used. */
void format_didx_writer_take_pending(struct format_didx_writer *w, const uint8_t **data,
                                    size_t *len, uint64_t *file_offset);
/* Fills in the header (fresh random uuid) and returns csum, count and size
 * (content bytes); out pointers may be NULL. Returns 0. Once finished, a
 * writer takes no more entries; finishing again returns the same values. */
int format_didx_writer_finish(struct format_didx_writer *w, uint8_t csum[CORE_SHA256_LEN],
                             uint64_t *count, uint64_t *size);
/* The 4096-byte header, valid after finish. */
const uint8_t *format_didx_writer_header(const struct format_didx_writer *w);
/* The whole file image after finish, or NULL if entries were taken. */
const uint8_t *format_didx_writer_image(const struct format_didx_writer *w, size_t *len);

/* ---- Files (thread pool only) ---- */

/* The temporary name an index is written under before the rename:
 * "x.img.fidx" -> "x.img.tmp_fidx", "a.pxar.didx" -> "a.pxar.tmp_didx" (PBS's
 * names, so a leftover is recognisable). Returns 0, CORE_ENAME (not an index
 * name) or CORE_ETOOBIG (out too small). */
int format_index_tmp_path(const char *path, char *out, size_t out_len);

/* Writes the concatenated `parts` to the temporary name in the same
 * directory, optionally fsyncs it, renames it to `path`, and with `do_fsync`
 * also fsyncs the directory. File mode 0644. Returns 0 or a negative errno
 * (the temporary file is removed on failure). */
int format_index_write_file(const char *path, const struct core_slice *parts, size_t nparts,
                           int do_fsync);

#endif
