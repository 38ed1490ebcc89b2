/* core_shmem.h: the shared configuration-generation page.
 *
 * DESIGN
 * One 4096-byte file, <run-dir>/shmem/config-versions, mapped MAP_SHARED by
 * every Cairn process on the host (cairnd and cairn-admin alike). It holds an
 * 8-byte magic and then one 64-bit atomic counter per configuration file (the
 * "generation"). Whoever saves a config file bumps its slot after the rename;
 * whoever caches a parsed config tags the cache with the generation it loaded
 * *before* reading the file, and on every use compares that tag with one
 * acquire load. Equal means "nothing was saved since", so the cache is
 * reused with no file read, no parse and no lock: this is the per-request hot
 * path (PBS patch "ConfigVersionCache fast path", see docs/configuration-format.md).
 *
 * The file is created race-free: it is prepared under no name (O_TMPFILE, or
 * a temporary name where O_TMPFILE is unsupported), sized and stamped with the
 * magic, and only then linked to its final name. A process that loses the race
 * (EEXIST) opens the winner's file. So any file found under the final name is
 * complete, and an existing file with a wrong size or magic is refused with
 * CORE_EFORMAT rather than "repaired" under the feet of other processes.
 *
 * Counters only ever grow (wrap-around at 2^64 is not a concern), start at 0
 * when the page is created, and reset when the run directory is wiped (a
 * reboot: tmpfs). Nothing may assume a value survives a reboot; only
 * equality with a previously loaded value matters.
 *
 * Threads: the mapping is shared by all threads; load and bump are lock-free
 * atomics and may be called from any thread, including the loop thread.
 * core_shmem_open() does file I/O (mkdir, open, link): call it at startup or
 * from a pool job, not from the loop.
 */
#ifndef CORE_SHMEM_H
#define CORE_SHMEM_H

#include <stdatomic.h>
#include <stdint.h>

#define CORE_SHMEM_SIZE 4096
#define CORE_SHMEM_MAGIC_LEN 8
/* SHA-256("Cairn ConfigVersionCache v1.0")[0..8], checked by a unit test. */
#define CORE_SHMEM_MAGIC "\xe7\x11\x7a\x5f\x08\xbe\xfb\x82"
/* Slots that fit after the magic: (4096 - 8) / 8. */
#define CORE_SHMEM_MAX_SLOTS 511
/* Path of the page below the run directory. */
#define CORE_SHMEM_DIR "shmem"
#define CORE_SHMEM_FILE "config-versions"

/* Slot numbers are part of the page layout shared between processes, possibly
 * of different Cairn versions during an upgrade: never renumber or reuse one,
 * only append. */
enum core_gen_slot {
  CORE_GEN_DATASTORE       = 0,  /* datastore.cfg */
  CORE_GEN_S3              = 1,  /* s3.cfg (S3 endpoints and credentials) */
  CORE_GEN_USER            = 2,  /* user.cfg */
  CORE_GEN_TOKEN           = 3,  /* token.shadow (API token secrets) */
  CORE_GEN_ACL             = 4,  /* acl.cfg */
  CORE_GEN_REMOTE          = 5,  /* remote.cfg */
  CORE_GEN_JOB             = 6,  /* sync/verify/prune job configs */
  CORE_GEN_TRAFFIC_CONTROL = 7,  /* traffic-control.cfg */
  CORE_GEN_NODE            = 8,  /* node.cfg, TLS key and certificate */
  CORE_GEN_SLOT_COUNT            /* slots defined so far; < CORE_SHMEM_MAX_SLOTS */
};

struct core_shmem {
  void *map;                 /* private: the MAP_SHARED mapping, CORE_SHMEM_SIZE bytes */
  _Atomic uint64_t *gen;     /* read-only: CORE_SHMEM_MAX_SLOTS counters after the magic */
};

/* Opens (creating if needed) <run_dir>/shmem/config-versions and maps it.
 * Creates run_dir (0770) and run_dir/shmem (0770) if missing; a new page file
 * is 0660 with all counters 0. `page` is caller-owned storage; on failure it
 * is left unmapped (close is then a no-op).
 * Returns 0, or CORE_EFORMAT (existing file has a wrong size, type or magic),
 * or a negative errno (EACCES when the run directory is not ours, ...).
 * Blocking (file I/O): startup or pool thread. */
int core_shmem_open(struct core_shmem *page, const char *run_dir);

/* Unmaps the page. Safe on a page that failed to open or is already closed.
 * No load or bump may run concurrently or afterwards. */
void core_shmem_close(struct core_shmem *page);

/* The hot path: one acquire load, no call, no lock. Pairs with the release
 * half of core_shmem_gen_bump(), so a reader that sees generation N also sees
 * everything the bumping process did before the bump (the renamed file). */
static inline uint64_t core_shmem_gen_load(const struct core_shmem *page, enum core_gen_slot slot)
{
  return atomic_load_explicit(&page->gen[slot], memory_order_acquire);
}

/* Adds 1 to the slot (acq_rel) and returns the new value. Call it after the
 * new config file is in place (renamed), before dropping the config lock. */
uint64_t core_shmem_gen_bump(struct core_shmem *page, enum core_gen_slot slot);

/* Bumps the slot only if it still holds `seen`, and returns the slot's value
 * afterwards (seen + 1 if this call bumped, otherwise whatever another process
 * stored). For detectors of manual edits (TTL re-check of a file's digest):
 * when several processes notice the same edit under the same generation,
 * exactly one bump happens. */
uint64_t core_shmem_gen_bump_from(struct core_shmem *page, enum core_gen_slot slot,
                                  uint64_t seen);

#endif
