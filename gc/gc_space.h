/* gc_space.h: what both GC engines do when the datastore's file system is full.
 *
 * DESIGN
 * A full disk is exactly when GC is needed, so GC must not need new blocks
 * before its sweep has freed some:
 *   - The atime safety check inserts the zero chunk (as PBS does). That
 *     needs a new file and maybe a prefix directory; touching a chunk that
 *     already exists needs neither. When the insert fails for lack of space,
 *     the check measures any chunk already in the store instead
 *     (gc_space_any_chunk); with no chunk at all there is nothing to sweep.
 *   - .gc-status is written after the sweep, which usually freed space. If
 *     the write still fails, the run is not undone by that: the engine logs a
 *     warning, keeps the figures in the task log and in memory for the status
 *     API (gc_store_state.unsaved), and ends with WARNINGS, not ERROR.
 * Task logs live in the run directory; core_task.c keeps lines it could not
 * write and retries them (see core_task.h).
 *
 * THREADS: gc_space_any_chunk and gc_space_write_status are file-system code
 * for a pool job; gc_space_full is pure.
 */
#ifndef GC_SPACE_H
#define GC_SPACE_H

#include <stdint.h>

struct core_task;
struct gc_status;
struct store_chunkstore;

/* 1 if `err` says the file system (or the quota) has no room left. */
int gc_space_full(int err);

/* Finds a chunk file (not a .bad copy, not a .using marker) in the store:
 * 0 and its digest, CORE_ENOTFOUND if there is none, or -errno if .chunks
 * cannot be listed. Prefix directories that cannot be read are passed over.
 * Stops at the first one, so it is cheap on any store that has chunks. */
int gc_space_any_chunk(struct store_chunkstore *cs, uint8_t digest[32]);

/* Writes <base>/.gc-status at the end of a run. On failure it logs a warning
 * on `task` that says what was not recorded and where the figures are, and
 * returns 1 (the caller keeps `st` for the status API); 0 if written. Pool
 * only. */
int gc_space_write_status(struct core_task *task, const char *base, const struct gc_status *st);

#endif
