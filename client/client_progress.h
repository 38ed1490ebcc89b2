/* client_progress.h: the progress line on a terminal, and human sizes.
 *
 * DESIGN. Pipelines count bytes with atomic adds from any thread; a small
 * thread redraws one line on stderr twice a second (bytes done, rate, new vs
 * reused, ETA when the total is known). Nothing is drawn unless the caller
 * enabled it, which the commands do only when stderr is a terminal (or when
 * asked), so scripts and logs never see carriage returns.
 */
#ifndef CLIENT_PROGRESS_H
#define CLIENT_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

struct client_progress;

/* A progress line labelled `label` (copied). With `enabled` 0 the object only
 * counts. */
struct client_progress *client_progress_new(const char *label, int enabled);
/* Stops drawing, clears the line, frees. NULL is fine. */
void client_progress_free(struct client_progress *p);

/* Expected total bytes (0: unknown, no ETA). */
void client_progress_set_total(struct client_progress *p, uint64_t total);
/* Thread-safe counters. NULL `p` is fine. */
void client_progress_add(struct client_progress *p, uint64_t done, uint64_t fresh,
                         uint64_t reused);

#endif
