/* client_chunker.h: content-defined chunking for dynamic (.didx) archives.
 *
 * DESIGN. A chunk boundary is placed after a byte when a rolling hash over the
 * last 64 bytes falls below a threshold, so boundaries follow content: an
 * insertion moves only the boundaries next to it, and the chunks after it are
 * the same as before (the point of deduplication). Sizes: no boundary before
 * `min` bytes, a forced boundary at `max` bytes, and a threshold chosen so the
 * expected size is `avg` (min + the mean of the geometric tail). The defaults
 * are PBS's: 4 MiB average, 1 MiB minimum, 16 MiB maximum.
 *
 * Two rolling hashes are implemented (docs/chunking.md has the measurements):
 * - CLIENT_CHUNKER_GEAR (the default): a 64-bit gear hash, h = (h << 1) +
 *   G[byte]; a byte's contribution leaves the hash after 64 shifts, so the
 *   window is 64 bytes without ever looking at the outgoing byte.
 * - CLIENT_CHUNKER_BUZHASH: PBS-style 32-bit buzhash over a 64-byte window,
 *   h = rotl(h, 1) ^ T[out] ^ T[in] (the outgoing byte's rotation, 64 mod 32,
 *   is zero).
 * Both tables come from splitmix64 seeded with a fixed constant, so chunk
 * boundaries are identical on every machine and every run; changing the
 * algorithm, the seed or the sizes changes every boundary and therefore loses
 * deduplication against older snapshots.
 *
 * Because a boundary depends only on the 64 bytes before it, the first
 * min - 64 bytes of every chunk are skipped without hashing.
 *
 * Streaming: feed buffers of any size in order with client_chunker_scan();
 * the chunker keeps the last 64 bytes it saw so a window may span buffers.
 * A chunker is plain memory (no allocation), used by one thread at a time.
 */
#ifndef CLIENT_CHUNKER_H
#define CLIENT_CHUNKER_H

#include <stddef.h>
#include <stdint.h>

#define CLIENT_CHUNK_MIN ((size_t)1 << 20)
#define CLIENT_CHUNK_AVG ((size_t)4 << 20)
#define CLIENT_CHUNK_MAX ((size_t)16 << 20)
#define CLIENT_CHUNKER_WINDOW 64

enum client_chunker_algo {
  CLIENT_CHUNKER_GEAR = 0,
  CLIENT_CHUNKER_BUZHASH = 1,
};

struct client_chunker {
  enum client_chunker_algo algo;
  size_t min;                 /* no boundary before this many bytes */
  size_t max;                 /* a boundary at this many bytes at the latest */
  uint64_t threshold;         /* boundary when hash < threshold */
  size_t pos;                 /* bytes of the current chunk seen so far */
  uint64_t h;                 /* rolling hash state */
  uint8_t tail[CLIENT_CHUNKER_WINDOW]; /* last 64 bytes seen (buzhash's out bytes) */
  size_t tail_len;            /* valid bytes at the end of `tail` */
  uint64_t table[256];        /* gear (64-bit) or buzhash (low 32 bits) table */
};

/* Sets up a chunker. Sizes must satisfy 64 < min <= avg < max; pass 0 for all
 * three to get the defaults. Returns 0 or CORE_EINVAL. */
int client_chunker_init(struct client_chunker *c, enum client_chunker_algo algo,
                        size_t min, size_t avg, size_t max);

/* Scans `len` bytes that follow everything scanned before. Returns the number
 * of bytes (1..len) up to and including the end of the current chunk when a
 * boundary lies in `data`; the chunker then starts a new chunk, and the caller
 * scans the rest (data + n) again. Returns 0 when all `len` bytes belong to the
 * current chunk. Never fails. */
size_t client_chunker_scan(struct client_chunker *c, const void *data, size_t len);

/* Forgets the current chunk (the caller ends it at end of stream). */
void client_chunker_reset(struct client_chunker *c);

#endif
