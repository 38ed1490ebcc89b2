/* gc_cache.h: digest sets for GC marking and verify.
 *
 * DESIGN
 * GC phase 1 touches each referenced chunk once per run; consecutive
 * snapshots of a group share almost all their chunks, so remembering the
 * digests already touched saves most utimensat calls. Memory must stay
 * bounded whatever the datastore holds, so struct gc_cache is a fixed-size,
 * 8-way set-associative table (32 bytes per entry, no per-entry allocation):
 * a digest maps to one set by its bits (SHA-256 output is uniform), and when
 * a set is full the entry inserted longest ago in that set is replaced, which
 * approximates LRU at a fraction of its cost. A miss only costs a redundant
 * touch, so forgetting is always safe.
 *
 * The local GC's mark also records, per entry, the size of a chunk it kept
 * (touched, or found recent enough): after the mark, an entry with a size is
 * a chunk this run has proven to be kept, and the sweep counts it without
 * taking its lock or stat-ing it (gc_cache_kept_size). An entry evicted
 * meanwhile only means a stat: the set is bounded by the same capacity, 4
 * more bytes per entry.
 *
 * Verify must check each chunk once per run and must remember every corrupt
 * chunk: struct gc_digest_set is a growing open-addressing set with a hard
 * maximum (beyond it adds are refused and the caller re-verifies instead).
 *
 * THREADS: gc_cache has internal mutexes (one per group of sets, so that 16
 * mark jobs rarely meet), so parallel mark jobs may share one;
 * gc_cache_kept_size takes none and is for after the last add.
 * gc_digest_set is not synchronized: one job at a time.
 */
#ifndef GC_CACHE_H
#define GC_CACHE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define GC_CACHE_WAYS 8
#define GC_CACHE_DEFAULT_CAPACITY (1024u * 1024)  /* PBS's gc-cache-capacity default */
#define GC_CACHE_MAX_CAPACITY (8u * 1024 * 1024)  /* PBS's maximum */
#define GC_CACHE_LOCKS 64                         /* set i is under locks[i % 64] */

struct gc_cache {
  uint8_t (*digests)[32]; /* owned: nsets * GC_CACHE_WAYS entries */
  uint32_t *kept;         /* owned: per entry, 1 + the size of a kept chunk, or 0 */
  uint8_t *fill;          /* owned: per set, entries in use (0..WAYS) */
  uint8_t *victim;        /* owned: per set, next way to replace when full */
  size_t nsets;           /* power of two; 0 when disabled */
  _Atomic uint64_t hits, misses; /* statistics */
  pthread_mutex_t locks[GC_CACHE_LOCKS];
};

/* Capacity in digests, rounded down to a power of two times the ways; 0
 * disables the cache (every lookup misses). Memory comes from calloc lazily
 * touched by the kernel, so a large empty cache costs little. */
void gc_cache_init(struct gc_cache *c, size_t capacity);
void gc_cache_free(struct gc_cache *c);
/* Returns 1 if `digest` was present (a hit), else inserts it and returns 0. */
int gc_cache_test_and_add(struct gc_cache *c, const uint8_t digest[32]);
/* Records that the chunk `digest` (inserted by test_and_add) is kept by this
 * run and has `size` bytes; nothing if it was evicted meanwhile. */
void gc_cache_set_kept(struct gc_cache *c, const uint8_t digest[32], uint64_t size);
/* 1 and *size if `digest` is in the cache with a size recorded, else 0.
 * Takes no lock: only once no thread adds any more (the sweep, after every
 * mark job's completion was seen on the loop). */
int gc_cache_kept_size(const struct gc_cache *c, const uint8_t digest[32], uint64_t *size);

struct gc_digest_set {
  uint8_t (*slots)[32]; /* owned */
  uint8_t *used;        /* owned: per slot, 1 if occupied */
  size_t cap;           /* power of two or 0 */
  size_t count;
  size_t max;           /* most entries ever held */
};

void gc_digest_set_init(struct gc_digest_set *s, size_t max);
void gc_digest_set_free(struct gc_digest_set *s);
/* 1 if present, else 0. */
int gc_digest_set_has(const struct gc_digest_set *s, const uint8_t digest[32]);
/* Adds; returns 1 if added, 0 if it was present, CORE_ETOOBIG when full. */
int gc_digest_set_add(struct gc_digest_set *s, const uint8_t digest[32]);

#endif
