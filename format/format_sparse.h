/* format_sparse.h: the map of a sparse file in a directory archive's pax
 * stream (GNU sparse format 1.0, as libarchive's pax writer makes it).
 *
 * The extended header of such an entry carries GNU.sparse.major=1,
 * GNU.sparse.minor=0, GNU.sparse.name and GNU.sparse.realsize; the map is
 * at the start of the entry's data area (the catalog's data_off): decimal
 * numbers, each ended by '\n': the entry count, then an offset and a length
 * per data block, zero-padded to a multiple of 512 bytes. The data blocks
 * follow, back to back; the rest of the file is holes. libarchive ends the
 * map with an empty block at the file's size.
 *
 * The map comes from the network: the parser takes it in pieces (it may
 * straddle chunks), bounds the count and every number, and
 * format_sparse_check refuses blocks that go backwards, overlap, run past
 * the file's size or do not add up to the data area.
 *
 * THREADING: pure memory work.
 */
#ifndef FORMAT_SPARSE_H
#define FORMAT_SPARSE_H

#include <stddef.h>
#include <stdint.h>

/* More blocks than this are refused: a map costs 16 bytes a block here,
 * and a download 24 more in its plan. */
#define FORMAT_SPARSE_MAX_BLOCKS ((uint64_t)1 << 20)

struct format_sparse_block {
  uint64_t off, len; /* in the file */
};

struct format_sparse_map {
  struct format_sparse_block *b; /* owned; `n` of them once complete */
  size_t n;
  uint64_t count;    /* the announced count */
  uint64_t numbers;  /* numbers read so far (1 + 2 per block when complete) */
  uint64_t cur;      /* the number being read */
  unsigned digits;
  uint64_t used;     /* map bytes consumed (through the last '\n') */
  int done;
};

void format_sparse_init(struct format_sparse_map *m);
void format_sparse_free(struct format_sparse_map *m);
/* Feeds the next `len` bytes of the data area. Returns 1 once the map is
 * complete (bytes after it are ignored), 0 if it needs more, CORE_EFORMAT
 * if it is damaged (a non-digit, an empty or too long number, too many
 * blocks). */
int format_sparse_feed(struct format_sparse_map *m, const uint8_t *p, size_t len);
/* A complete map against the entry: the blocks increase, do not overlap,
 * lie within `size`, and the map (padded to 512) plus the blocks' lengths
 * make `data_len`. Sets *map_bytes (where the first block's bytes start,
 * from data_off). 0 or CORE_EFORMAT. */
int format_sparse_check(const struct format_sparse_map *m, uint64_t size, uint64_t data_len,
                        uint64_t *map_bytes);

#endif
