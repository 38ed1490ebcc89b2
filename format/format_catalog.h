/* format_catalog.h: the file catalog of a directory archive (NAME.catalog.blob).
 *
 * DESIGN. A catalog lists every entry of one pax stream (client_archive.h)
 * with its metadata and where its bytes lie in the stream, so a client can
 * list, search and diff snapshots, restore single files by fetching only the
 * chunks that hold them, and skip unchanged files in the next backup, all
 * without reading the archive. It travels as a DataBlob next to the index
 * (compressed, and encrypted with the archive's key) and is listed in the
 * manifest. Layout (little-endian; docs/on-disk-format.md):
 *
 *   0   magic "CAIRNCT1"
 *   8   u32 version (1)
 *   12  u32 restart interval R (1..4096)
 *   16  u64 entry count N
 *   24  u64 records length L
 *   32  u64 restart count ceil(N / R)
 *   40  records (L bytes), then the restart table (u64 offsets into the records)
 *
 * Entries are sorted by path (the root "." first, then bytewise), so a
 * subtree is one contiguous run and a directory's children can be found by
 * binary search. Records are varint-coded and front-coded against the path
 * before them; every R-th record starts a new block (no shared prefix) and
 * its offset is in the restart table: a lookup binary-searches the restart
 * table and decodes at most R records, without decoding the whole catalog.
 *
 * A catalog of FORMAT_CATALOG_INDEX_MIN bytes or more is stored as a dynamic
 * index of its own (NAME.catalog.didx: the same bytes, chunked like an
 * archive) and read by ranges through a format_catalog_source: the header,
 * the restart table, then only the windows of records a lookup, a listing
 * or an iteration needs.
 *
 * Catalogs come from the network: the reader bounds every length, checks the
 * order, refuses unsafe paths ("..", empty or absolute components, NUL) and
 * offsets that do not add up, and never reads outside the buffer.
 *
 * THREADING: pure memory work; call it from a worker (server: the pool).
 */
#ifndef FORMAT_CATALOG_H
#define FORMAT_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "core/core_buf.h"

#define FORMAT_CATALOG_PATH_MAX 4096 /* bytes of a path or link target */
#define FORMAT_CATALOG_RESTART 64    /* the writer's restart interval */
#define FORMAT_CATALOG_HDR_LEN 40

enum format_catalog_type {
  FORMAT_CATALOG_FILE = 1,
  FORMAT_CATALOG_DIR = 2,
  FORMAT_CATALOG_SYMLINK = 3,
  FORMAT_CATALOG_HARDLINK = 4, /* a later name of a file: `link` is the first one */
  FORMAT_CATALOG_CHR = 5,
  FORMAT_CATALOG_BLK = 6,
  FORMAT_CATALOG_FIFO = 7,
  FORMAT_CATALOG_SOCK = 8,
};

#define FORMAT_CATALOG_SPARSE 1 /* the stream holds only the non-hole bytes */

struct format_catalog_entry {
  const char *path; /* relative to the archive root ("." is the root); NUL-terminated */
  size_t path_len;
  const char *link; /* symlink target or hard link's first name, else "" */
  size_t link_len;
  uint8_t type;     /* enum format_catalog_type */
  uint32_t flags;   /* FORMAT_CATALOG_SPARSE */
  uint32_t mode;    /* st_mode (type and permission bits) */
  uint32_t uid, gid;
  uint64_t size;    /* logical file size (0 for all but files) */
  int64_t mtime;
  uint32_t mtime_ns;
  int64_t ctime;
  uint32_t ctime_ns;
  uint64_t ino, dev, rdev;
  uint64_t hdr_off;  /* stream offset of the entry's first header byte */
  uint64_t data_off; /* stream offset of its data (after all its headers) */
  uint64_t data_len; /* data bytes in the stream */
  uint64_t end_off;  /* stream offset after its data and padding */
};

/* ---- Writing ---- */

/* The writer keeps every entry compactly until finish sorts them: per entry
 * an 8-byte offset, an 8-byte private header, the path, and the fields
 * varint-coded as in the catalog (25-50 bytes), so about 65 bytes plus the
 * path (measured: 122 bytes per entry for a million 55-byte paths, the
 * buffers' doubling included, where the old writer held a 160-byte struct
 * and the path). format_catalog_writer_spill moves them to sorted runs the
 * caller stores (a temporary file), merged when encoding, so memory is
 * bounded by where the caller spills. The encoded catalog is never held
 * whole: emit streams it. */
typedef int (*format_catalog_sink)(void *ctx, const void *data, size_t len);
/* Reads back `len` bytes at `off` of what a spill sink wrote. 0 or an error. */
typedef int (*format_catalog_spill_read)(void *ctx, uint64_t off, void *dst, size_t len);

struct format_catalog_run {
  uint64_t off, len; /* bytes of the spill */
};

struct format_catalog_writer {
  struct core_buf recs; /* entries in arrival order (private encoding) */
  uint64_t *offs;       /* their offsets in recs */
  uint64_t n, cap;      /* entries in memory */
  int sorted;           /* format_catalog_writer_size ran */
  uint64_t recs_len;    /* then: the catalog's records length L */
  /* spilled runs (format_catalog_writer_spill): sorted entries in the
   * private encoding, written through `spill_write`, read back through
   * `spill_read` when the catalog is encoded (a merge of the runs and what
   * is in memory) */
  format_catalog_sink spill_write;
  format_catalog_spill_read spill_read;
  void *spill_ctx;
  struct format_catalog_run *runs;
  size_t nruns;
  uint64_t spilled, nspilled; /* bytes and entries in the runs */
};

void format_catalog_writer_init(struct format_catalog_writer *w);
void format_catalog_writer_free(struct format_catalog_writer *w);
/* Bytes the writer holds in memory now (its records and offsets). */
size_t format_catalog_writer_mem(const struct format_catalog_writer *w);
/* Sorts the entries in memory and writes them as one run through `write`
 * (appending: a run starts where the last one ended), then frees their
 * memory: a tree of any size is cataloged with memory bounded by what the
 * caller spills at, plus a 256 KiB buffer per run when encoding. The first
 * call sets the callbacks (later ones must pass the same). Returns 0,
 * -ENOMEM or the sink's error. */
int format_catalog_writer_spill(struct format_catalog_writer *w, format_catalog_sink write,
                                format_catalog_spill_read read, void *ctx);
/* Copies one entry. Returns 0, CORE_ENAME (unsafe path or link), CORE_EINVAL
 * (stream offsets out of order) or -ENOMEM. */
int format_catalog_writer_add(struct format_catalog_writer *w, const struct format_catalog_entry *e);
/* Sorts the entries and computes the encoded catalog's size (header,
 * records, restart table) into *total, without encoding it: the caller picks
 * the form (blob or index) by it. No entry may be added after. Returns 0 or
 * CORE_EEXISTS (a path twice). */
int format_catalog_writer_size(struct format_catalog_writer *w, uint64_t *total);
/* Encodes the catalog piece by piece into `sink` (which returns 0 or an
 * error that stops the encoding), with memory bounded by one piece of at
 * most 64 KiB and the restart table. Returns 0, CORE_EEXISTS or the sink's
 * error. */
int format_catalog_writer_emit(struct format_catalog_writer *w, format_catalog_sink sink,
                               void *ctx);
/* Sorts and encodes the catalog into `out` (appended). Returns 0, CORE_EEXISTS
 * (a path twice) or a buffer error. */
int format_catalog_writer_finish(struct format_catalog_writer *w, struct core_buf *out);

/* ---- Reading ---- */

/* A catalog read by ranges (NAME.catalog.didx, or anything too large to
 * hold): `read` copies `len` bytes at `off` (< size) into `dst`, returning 0
 * or a negative error (a short source is CORE_EFORMAT). `close` (may be NULL)
 * releases `ctx` at format_catalog_close. `chunks` (may be NULL) says how many
 * chunks the source fetched so far of how many it has (for summaries and
 * tests: a lookup reads a few of them). */
struct format_catalog_source {
  uint64_t size;
  int (*read)(void *ctx, uint64_t off, void *dst, size_t len);
  void (*close)(void *ctx);
  void (*chunks)(void *ctx, uint64_t *fetched, uint64_t *total);
  void *ctx;
};

/* The largest record the reader accepts: 19 varints of at most 10 bytes
 * each (the two path lengths, sixteen fields, the link's length; the reader
 * takes non-minimal varints too), a path, the type byte and a link. */
#define FORMAT_CATALOG_REC_MAX (19 * 10 + 2 * FORMAT_CATALOG_PATH_MAX + 1)
/* An iterator's window over a ranged catalog: every record read comes from
 * one window, refilled when the next record could run past its end. */
#define FORMAT_CATALOG_WINDOW (32u * 1024)
/* The restart table a ranged catalog may hold in memory (8 bytes per
 * FORMAT_CATALOG_RESTART entries: 64 MiB is 512 million entries). */
#define FORMAT_CATALOG_RESTARTS_MAX ((uint64_t)64 << 20)

struct format_catalog {
  const uint8_t *recs; /* memory form: borrowed from the buffer given to open */
  uint64_t recs_len;
  const uint8_t *restarts; /* the table: borrowed, or `owned` */
  uint8_t *owned;
  uint64_t nrestart;
  uint64_t count;
  uint32_t interval;
  struct format_catalog_source src; /* ranged form: src.read != NULL */
  uint64_t reads, read_bytes;       /* ranged form: source reads so far */
  /* ranged form: the first paths of the blocks the top levels of every
   * binary search probe (the same blocks each time), kept after the first
   * lookup: later lookups read only the levels below, near their target.
   * A lookup therefore writes to the catalog: one thread at a time. */
  struct format_catalog_probe *probes;
};

/* Checks the header and the restart table of `len` bytes at `buf` (which
 * must outlive `c`). Returns 0 or CORE_EFORMAT. Records are checked as they
 * are decoded; format_catalog_validate checks them all at once. */
int format_catalog_open(struct format_catalog *c, const void *buf, size_t len);
/* The same over a ranged source (taken over by `c`, closed by
 * format_catalog_close, also on failure): reads the header and the restart
 * table (at most FORMAT_CATALOG_RESTARTS_MAX bytes) and nothing else; records
 * are read window by window as iterators need them, each window checked as
 * the whole buffer is. Returns 0, CORE_EFORMAT, -ENOMEM or the source's
 * error. */
int format_catalog_open_source(struct format_catalog *c, const struct format_catalog_source *src);
/* Releases what open_source took (a no-op for the memory form). */
void format_catalog_close(struct format_catalog *c);
/* The source's chunk counts (both 0 for the memory form or a source
 * without them). */
void format_catalog_chunk_stats(const struct format_catalog *c, uint64_t *fetched,
                                uint64_t *total);

struct format_catalog_iter {
  const struct format_catalog *c;
  uint64_t idx;  /* index of the next entry */
  uint64_t pos;  /* its offset in the records */
  char path[FORMAT_CATALOG_PATH_MAX + 1];
  size_t path_len; /* the previous entry's path; 0 after a jump (no order check) */
  char link[FORMAT_CATALOG_PATH_MAX + 1];
  uint64_t win_off, win_len; /* ranged form: records [win_off, +win_len) in win */
  uint8_t win[FORMAT_CATALOG_WINDOW];
};

/* Positions `it` before the first entry. */
void format_catalog_iter_init(struct format_catalog_iter *it, const struct format_catalog *c);
/* Positions `it` before the first entry whose path is >= `path` in catalog
 * order. Returns 0 or CORE_EFORMAT. */
int format_catalog_iter_seek(struct format_catalog_iter *it, const char *path, size_t len);
/* The next entry into *e (its strings point into `it`, valid until the next
 * call). Returns 1, 0 at the end, or CORE_EFORMAT. */
int format_catalog_next(struct format_catalog_iter *it, struct format_catalog_entry *e);
/* The entry of `path` ("." for the root) into *e via `it`. Returns 1, 0 when
 * absent, or CORE_EFORMAT. */
int format_catalog_lookup(const struct format_catalog *c, struct format_catalog_iter *it,
                          const char *path, struct format_catalog_entry *e);
/* The server's way in (catalog API, file download): decodes an unencrypted
 * catalog blob (`len` bytes at `blob`) into a new buffer *plain (*plen
 * bytes, core_free; it backs `c`), then opens and validates the catalog.
 * Returns 0, or the blob's or the catalog's error with *plain NULL. */
int format_catalog_from_blob(struct format_catalog *c, const void *blob, size_t len,
                             uint8_t **plain, size_t *plen);
/* The direct children of one directory, in catalog order: `prefix` is ""
 * for the root, else the directory's path and a '/' (borrowed for the walk).
 * format_catalog_children positions `it` (0 or CORE_EFORMAT); each
 * format_catalog_next_child gives the next child into *e (as
 * format_catalog_next does) and returns 1, 0 at the end, or CORE_EFORMAT.
 * Deeper entries are skipped by seeking past each child's subtree, so a
 * listing costs the children, not the whole tree below (cairn ls, the FUSE
 * mount and the catalog API all list directories this way). */
int format_catalog_children(struct format_catalog_iter *it, const struct format_catalog *c,
                            const char *prefix, size_t plen);
int format_catalog_next_child(struct format_catalog_iter *it, const char *prefix, size_t plen,
                              struct format_catalog_entry *e);
/* Decodes every entry. Returns 0 or CORE_EFORMAT. */
int format_catalog_validate(const struct format_catalog *c);

/* Catalog order: "." first, then bytewise. */
int format_catalog_cmp(const char *a, size_t alen, const char *b, size_t blen);
/* 1 if `path` is a safe relative path ("." or components without "", "." or
 * ".."), else 0. */
int format_catalog_safe_path(const char *path, size_t len);
/* "ls -l" type letter ('-', 'd', 'l', 'h', 'c', 'b', 'p', 's'), and a name. */
char format_catalog_type_char(uint8_t type);
const char *format_catalog_type_name(uint8_t type);

/* The catalog blob's name for a .didx archive name ("root.didx" ->
 * "root.catalog.blob") into `out`. Returns 0 or CORE_ENAME (also for a
 * catalog index's own name: it has no catalog). */
int format_catalog_name(const char *archive, char *out, size_t outlen);
/* The same for the index form ("root.didx" -> "root.catalog.didx"). */
int format_catalog_index_name(const char *archive, char *out, size_t outlen);
/* 1 if `name` is a catalog index's ("*.catalog.didx", not an archive the
 * client may name), else 0. */
int format_catalog_is_index(const char *name);

/* Catalogs of at least this many encoded bytes are stored as an index
 * (NAME.catalog.didx), smaller ones as a blob. */
#define FORMAT_CATALOG_INDEX_MIN ((uint64_t)4 << 20)

#endif
