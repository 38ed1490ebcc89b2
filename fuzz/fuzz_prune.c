/* fuzz_prune.c: the keep-* options of a prune request and the selection
 * they drive.
 *
 * Input: the options as a form ("keep-last=3&keep-daily=7"), a NUL, then
 * 9-byte snapshot records (8 bytes backup-time, little-endian and folded
 * into 1970..2200; a flags byte: finished, protected, UTC evaluation).
 * Checked: store_prune_keep_set accepts exactly plain decimals >= 1 for the
 * six option names and leaves `keep` alone otherwise; store_prune marks
 * protected snapshots protected, removes nothing under keep-all, keeps at
 * most N snapshots per keep-N rule, and sorts newest first. */
#include "fuzz.h"

#include "core/core_error.h"
#include "store/store_prune.h"

#include <time.h>

#define MAX_ITEMS 512
#define SPAN_S ((int64_t)230 * 365 * 86400)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  setenv("TZ", "CET-1CEST,M3.5.0,M10.5.0/3", 1);
  tzset();
  return 0;
}

static void parse_options(char *form, struct store_prune_keep *keep)
{
  for (char *p = form; p && *p;) {
    char *amp = strchr(p, '&');
    if (amp)
      *amp = '\0';
    char *eq = strchr(p, '=');
    const char *value = "";
    if (eq) {
      *eq = '\0';
      value = eq + 1;
    }
    struct store_prune_keep before = *keep;
    int rc = store_prune_keep_set(keep, p, value);
    FUZZ_ASSERT(rc == 0 || rc == CORE_ENOTFOUND || rc == CORE_EINVAL);
    if (rc != 0) {
      FUZZ_ASSERT(memcmp(&before, keep, sizeof(before)) == 0);
    } else {
      int nonzero = 0;
      FUZZ_ASSERT(value[0] != '\0');
      for (const char *v = value; *v; v++) {
        FUZZ_ASSERT(*v >= '0' && *v <= '9');
        nonzero |= *v != '0';
      }
      FUZZ_ASSERT(nonzero);
    }
    p = amp ? amp + 1 : NULL;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  const uint8_t *nul = memchr(data, 0, size);
  size_t form_len = nul ? (size_t)(nul - data) : size;
  char *form = malloc(form_len + 1);
  memcpy(form, data, form_len);
  form[form_len] = '\0';
  struct store_prune_keep keep;
  memset(&keep, 0, sizeof(keep));
  parse_options(form, &keep);
  free(form);

  const uint8_t *rec = nul ? nul + 1 : data + size;
  size_t n = (size_t)(data + size - rec) / 9;
  if (n > MAX_ITEMS)
    n = MAX_ITEMS;
  struct store_prune_item *items = calloc(n ? n : 1, sizeof(*items));
  unsigned flags = 0;
  for (size_t i = 0; i < n; i++) {
    const uint8_t *r = rec + 9 * i;
    uint64_t t = 0;
    for (int b = 7; b >= 0; b--)
      t = t << 8 | r[b];
    items[i].backup_time = (int64_t)(t % (uint64_t)SPAN_S);
    items[i].finished = (r[8] & 1) != 0;
    items[i].protected = (r[8] & 2) != 0;
    items[i].user = (void *)(uintptr_t)(i + 1);
    if (r[8] & 4)
      flags = STORE_PRUNE_UTC;
  }

  int rc = store_prune(items, n, &keep, flags);
  FUZZ_ASSERT(rc == 0);
  uint64_t per_rule[STORE_PRUNE_R_SUPERSEDED + 1] = {0};
  for (size_t i = 0; i < n; i++) {
    const struct store_prune_item *it = &items[i];
    if (i > 0)
      FUZZ_ASSERT(items[i - 1].backup_time >= it->backup_time);
    FUZZ_ASSERT(it->user != NULL);
    if (it->protected)
      FUZZ_ASSERT(it->mark == STORE_PRUNE_PROTECTED);
    if (store_prune_keep_all(&keep))
      FUZZ_ASSERT(it->mark != STORE_PRUNE_REMOVE);
    FUZZ_ASSERT(store_prune_mark_name(it->mark) != NULL);
    FUZZ_ASSERT(store_prune_reason_name(it->reason) != NULL);
    if (it->mark == STORE_PRUNE_KEEP)
      per_rule[it->reason]++;
  }
  FUZZ_ASSERT(per_rule[STORE_PRUNE_R_LAST] <= keep.last);
  FUZZ_ASSERT(per_rule[STORE_PRUNE_R_HOURLY] <= keep.hourly);
  FUZZ_ASSERT(per_rule[STORE_PRUNE_R_DAILY] <= keep.daily);
  FUZZ_ASSERT(per_rule[STORE_PRUNE_R_WEEKLY] <= keep.weekly);
  FUZZ_ASSERT(per_rule[STORE_PRUNE_R_MONTHLY] <= keep.monthly);
  FUZZ_ASSERT(per_rule[STORE_PRUNE_R_YEARLY] <= keep.yearly);
  /* Every snapshot is still there once. */
  uint8_t *seen = calloc(n + 1, 1);
  for (size_t i = 0; i < n; i++) {
    uintptr_t u = (uintptr_t)items[i].user;
    FUZZ_ASSERT(u >= 1 && u <= n && !seen[u]);
    seen[u] = 1;
  }
  free(seen);
  free(items);
  return 0;
}
