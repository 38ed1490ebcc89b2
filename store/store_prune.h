/* store_prune.h: which snapshots of a group a prune keeps (PBS's rules).
 *
 * DESIGN
 * Prune selection is a pure function over an array of snapshot descriptions:
 * no file I/O, no locks, no clock. The caller lists one group's snapshots,
 * store_prune() marks each one, and the caller then removes the `remove` ones
 * under their snapshot locks (a locked snapshot, e.g. the base of a running
 * backup, is simply skipped there). Because it does no I/O it may run on the
 * loop thread for a dry run of a small group, or inside a pool job.
 *
 * The algorithm is PBS's, step for step, so administrators get exactly the
 * retention they know:
 *   1. sort newest first;
 *   2. unfinished snapshots: the newest one is kept as `keep-partial` if no
 *      finished snapshot is newer than it; every other one is `remove`;
 *   3. the rules run in the fixed order last, hourly, daily, weekly, monthly,
 *      yearly. Each one maps a snapshot to a period key in LOCAL time (last:
 *      the snapshot itself; hourly %Y/%m/%d/%H; daily %Y/%m/%d; weekly ISO
 *      %G/%V; monthly %Y/%m; yearly %Y). A pass walks newest to oldest:
 *        - already marked (by any earlier step)  -> skip
 *        - protected                             -> `protected`, not counted
 *        - period kept by an earlier rule        -> skip (stays unmarked)
 *        - new period, N periods already chosen  -> end of this pass
 *        - new period otherwise                  -> `keep`, period chosen
 *        - period already chosen in this pass    -> `remove`
 *      Only snapshots marked `keep` make a period "kept by an earlier rule";
 *      protected and partial ones do not;
 *   4. whatever is still unmarked is `remove`; a protected snapshot is always
 *      reported `protected`, whatever the steps above said.
 * With every keep option unset ("keep-all") nothing is removed: each snapshot
 * is `keep` (or `protected`), the unfinished ones included.
 */
#ifndef STORE_PRUNE_H
#define STORE_PRUNE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum store_prune_mark {
  STORE_PRUNE_REMOVE = 0,     /* delete it */
  STORE_PRUNE_KEEP,           /* a rule (or keep-all) keeps it */
  STORE_PRUNE_PROTECTED,      /* has the .protected marker: never removed */
  STORE_PRUNE_KEEP_PARTIAL,   /* newest unfinished snapshot, maybe still being written */
};

/* Why a snapshot got its mark; for dry-run output and the task log. */
enum store_prune_reason {
  STORE_PRUNE_R_NONE = 0,     /* remove: no rule selected it */
  STORE_PRUNE_R_LAST,         /* keep: keep-last */
  STORE_PRUNE_R_HOURLY,       /* keep: keep-hourly */
  STORE_PRUNE_R_DAILY,        /* keep: keep-daily */
  STORE_PRUNE_R_WEEKLY,       /* keep: keep-weekly */
  STORE_PRUNE_R_MONTHLY,      /* keep: keep-monthly */
  STORE_PRUNE_R_YEARLY,       /* keep: keep-yearly */
  STORE_PRUNE_R_ALL,          /* keep: no keep option set */
  STORE_PRUNE_R_PARTIAL,      /* keep-partial: newest unfinished snapshot */
  STORE_PRUNE_R_PROTECTED,    /* protected */
  STORE_PRUNE_R_UNFINISHED,   /* remove: unfinished and not the newest one */
  STORE_PRUNE_R_SUPERSEDED,   /* remove: a newer snapshot holds its period
                                 in the rule named by `rule` */
};

/* Keep options; 0 means "not given". Given values are >= 1. */
struct store_prune_keep {
  uint64_t last;
  uint64_t hourly;
  uint64_t daily;
  uint64_t weekly;
  uint64_t monthly;
  uint64_t yearly;
};

/* One snapshot of the group. The caller fills the "in" fields; store_prune()
 * fills the "out" fields and never touches `user`. */
struct store_prune_item {
  int64_t backup_time;             /* in: backup-time, epoch seconds */
  bool finished;                   /* in: has a manifest (index.json.blob) */
  bool protected;                  /* in: has the .protected marker */
  void *user;                      /* in: opaque to prune (e.g. the snapshot record) */
  enum store_prune_mark mark;      /* out */
  enum store_prune_reason reason;  /* out */
  /* out: for STORE_PRUNE_R_SUPERSEDED, the rule whose period was already
   * taken (one of STORE_PRUNE_R_LAST..YEARLY); otherwise equal to `reason`. */
  enum store_prune_reason rule;
};

enum store_prune_flags {
  /* Compute period keys in UTC instead of the process's local time zone.
   * PBS uses local time; this exists for callers and tests that want a
   * result independent of TZ. */
  STORE_PRUNE_UTC = 1 << 0,
};

/* Marks every item. `items` is SORTED IN PLACE, newest first (equal times keep
 * their relative order), so the caller reads the result in PBS's order; use
 * `user` to find your own record again. `n` may be 0. Local time comes from
 * localtime_r() (so from TZ) unless STORE_PRUNE_UTC is given.
 * Returns 0, or CORE_EINVAL if `keep` is NULL or a backup time cannot be
 * converted to a calendar time (marks are then unspecified). */
int store_prune(struct store_prune_item *items, size_t n,
                const struct store_prune_keep *keep, unsigned flags);

/* True when no keep option is set (PBS's "keep-all": prune removes nothing). */
bool store_prune_keep_all(const struct store_prune_keep *keep);

/* Sets one keep option from its API name ("keep-last", "keep-hourly",
 * "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly") and decimal
 * text. The value must be a plain decimal integer >= 1 without sign or
 * spaces. Returns 0; CORE_ENOTFOUND if `key` is not a keep option (so a
 * caller walking a whole form can pass the key on); CORE_EINVAL if the value
 * is 0, negative, not a number or too large. `keep` is unchanged on error. */
int store_prune_keep_set(struct store_prune_keep *keep, const char *key,
                         const char *value);

/* "keep", "remove", "protected", "keep-partial". Never NULL. */
const char *store_prune_mark_name(enum store_prune_mark mark);
/* True for every mark but STORE_PRUNE_REMOVE. */
bool store_prune_mark_keeps(enum store_prune_mark mark);
/* "keep-last" ... "keep-yearly", "keep-all", "keep-partial", "protected",
 * "unfinished", "superseded", "not-selected". Never NULL. */
const char *store_prune_reason_name(enum store_prune_reason reason);

#endif
