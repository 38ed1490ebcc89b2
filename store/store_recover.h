/* store_recover.h: startup clean-up of snapshots left unfinished by a crash. */
#ifndef STORE_RECOVER_H
#define STORE_RECOVER_H

#include "store/store_registry.h"

/* Queues one background pool job per configured datastore (skipping those in
 * a maintenance mode that forbids writes) that removes unfinished snapshots
 * nobody holds locked. `run_dir` must outlive the jobs. */
void store_recover_start(struct store_registry *reg, const char *run_dir);

#endif
