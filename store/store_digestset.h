/* store_digestset.h: a set of chunk digests with their sizes.
 *
 * A backup session remembers every chunk it may reference (uploaded in the
 * session, or registered from the previous snapshot's index), and a reader
 * session every chunk it may hand out. Sessions can know millions of them,
 * so entries are the raw 32-byte digest plus a 32-bit size in one flat
 * open-addressing table: 40 bytes an entry, no per-entry allocation, and the
 * digest itself is the hash (SHA-256 output is uniformly distributed).
 * Loop thread only.
 */
#ifndef STORE_DIGESTSET_H
#define STORE_DIGESTSET_H

#include <stddef.h>
#include <stdint.h>

struct store_digest_entry {
  uint8_t digest[32];
  uint32_t size;     /* chunk's plaintext size */
  uint32_t used;     /* 0: empty slot */
};

struct store_digestset {
  struct store_digest_entry *slots; /* owned */
  size_t cap;                       /* power of two or 0 */
  size_t count;
  size_t max;                       /* refuse growth past this many entries */
};

void store_digestset_init(struct store_digestset *s, size_t max);
void store_digestset_free(struct store_digestset *s);
/* Adds or updates. Returns 0, or CORE_ETOOBIG past `max` entries. */
int store_digestset_add(struct store_digestset *s, const uint8_t digest[32], uint32_t size);
/* Returns 1 and the size if present, else 0. */
int store_digestset_get(const struct store_digestset *s, const uint8_t digest[32],
                        uint32_t *size);

#endif
