/* store_move_s3.c: the bucket's half of a move on an S3 datastore (see
 * store_move.h): CopyObject of the group's `.cnt/` objects to the new keys
 * (manifests last, so the new place holds a finished snapshot only once all
 * its files are there), and after the local rename DeleteObjects of the old
 * keys in batches (manifests first, so an interrupted delete never leaves a
 * finished snapshot with files missing). Blocking: pool jobs and cairn-admin,
 * through the store_s3_fetcher's private client.
 */
#include "store/store_move.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "s3/s3_sync.h"
#include "store/store_path.h"
#include "store/store_s3.h"

#include <sys/stat.h>

#include <stdio.h>
#include <string.h>

#define DELETE_BATCH 1000
#define MANIFEST "/index.json.blob"

static int ends_with(const char *s, const char *suffix)
{
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static const char *strip_dot(const char *rel)
{
  while (rel[0] == '.' && rel[1] == '/')
    rel += 2;
  return rel;
}

void store_move_keys_free(struct store_move_keys *k)
{
  for (size_t i = 0; i < k->n; i++)
    core_free(k->v[i]);
  core_free(k->v);
  memset(k, 0, sizeof(*k));
}

static void keys_push(struct store_move_keys *k, const char *key)
{
  if (k->n == k->cap) {
    k->cap = k->cap ? k->cap * 2 : 64;
    k->v = core_realloc(k->v, k->cap * sizeof(*k->v));
  }
  k->v[k->n++] = core_strdup(key);
}

/* Every key below <store>/.cnt/<rel>/ into `out`. */
static int list_all(struct s3_sync *s, const char *prefix, struct store_move_keys *out,
                    char *msg, size_t msglen)
{
  char *token = NULL;
  int rc = 0;
  do {
    struct s3_list_result page;
    struct s3_sync_result res;
    rc = s3_sync_list(s, prefix, token, &page, &res);
    core_free(token);
    token = NULL;
    if (rc < 0) {
      snprintf(msg, msglen, "cannot list %s in the bucket: %s %s", prefix, core_strerror(rc),
               res.message);
      return rc;
    }
    for (size_t i = 0; i < page.n; i++)
      keys_push(out, page.objects[i].key);
    if (page.is_truncated && page.next_token)
      token = core_strdup(page.next_token);
    s3_list_result_free(&page);
  } while (token);
  return rc;
}

/* Deletes `keys` (those ending in MANIFEST first), in batches. */
static int delete_keys(struct s3_sync *s, char *const *keys, size_t n, char *msg, size_t msglen)
{
  const char **batch = core_calloc(DELETE_BATCH, sizeof(*batch));
  int rc = 0;
  for (int pass = 0; pass < 2 && rc == 0; pass++) {
    size_t m = 0;
    for (size_t i = 0; i <= n && rc == 0; i++) {
      if (i < n && ends_with(keys[i], MANIFEST) == (pass == 0))
        batch[m++] = keys[i];
      if (m > 0 && (m == DELETE_BATCH || i == n)) {
        struct s3_sync_result res;
        size_t failed = 0;
        rc = s3_sync_delete(s, batch, m, &failed, &res);
        if (rc == 0 && failed)
          rc = CORE_ES3;
        if (rc < 0)
          snprintf(msg, msglen, "DeleteObjects failed for %zu of %zu keys: %s %s",
                   failed ? failed : m, m, core_strerror(rc), res.message);
        m = 0;
      }
    }
  }
  core_free(batch);
  return rc;
}

int store_move_s3_copy(struct store_s3_fetcher *f, const char *src_rel, const char *dst_rel,
                       int merging, int copy_notes, struct store_move_keys *src_keys,
                       char *msg, size_t msglen)
{
  struct s3_sync *s = store_s3_fetcher_sync(f);
  const char *store = store_s3_fetcher_prefix(f);
  char sp[S3_KEY_MAX + 1], dp[S3_KEY_MAX + 1], owner[S3_KEY_MAX + 8], notes[S3_KEY_MAX + 8];
  struct store_move_keys copied = {0};
  int n1 = snprintf(sp, sizeof(sp), "%s/.cnt/%s/", store, strip_dot(src_rel));
  int n2 = snprintf(dp, sizeof(dp), "%s/.cnt/%s/", store, strip_dot(dst_rel));
  if (n1 < 0 || n2 < 0 || n1 >= (int)sizeof(sp) || n2 >= (int)sizeof(dp))
    return CORE_ETOOBIG;
  snprintf(owner, sizeof(owner), "%sowner", sp);
  snprintf(notes, sizeof(notes), "%snotes", sp);
  int rc = list_all(s, sp, src_keys, msg, msglen);
  for (int pass = 0; pass < 2 && rc == 0; pass++) {
    for (size_t i = 0; i < src_keys->n && rc == 0; i++) {
      const char *k = src_keys->v[i];
      if (ends_with(k, MANIFEST) != (pass == 1))
        continue;
      if (merging && (strcmp(k, owner) == 0 || (!copy_notes && strcmp(k, notes) == 0)))
        continue; /* the target group's own stay */
      char to[S3_KEY_MAX + 1];
      if (snprintf(to, sizeof(to), "%s%s", dp, k + n1) >= (int)sizeof(to)) {
        rc = CORE_ETOOBIG;
        snprintf(msg, msglen, "key too long at the target: %s", k);
        break;
      }
      struct s3_sync_result res;
      rc = s3_sync_copy(s, k, to, &res);
      if (rc < 0)
        snprintf(msg, msglen, "CopyObject %s -> %s failed: %s %s", k, to, core_strerror(rc),
                 res.message);
      else
        keys_push(&copied, to);
    }
  }
  if (rc < 0 && copied.n) {
    /* Nothing moved: the copies go again (best effort; left-overs are keys
     * the next move of this group overwrites). */
    char ignored[256];
    delete_keys(s, copied.v, copied.n, ignored, sizeof(ignored));
  }
  store_move_keys_free(&copied);
  return rc;
}

int store_move_s3_delete(struct store_s3_fetcher *f, const struct store_move_keys *keys,
                         char *msg, size_t msglen)
{
  if (keys->n == 0)
    return 0;
  return delete_keys(store_s3_fetcher_sync(f), keys->v, keys->n, msg, msglen);
}

int store_move_s3_ns_markers(struct store_s3_fetcher *f, const struct store_move_ns_plan *plan,
                             const char *base, int remove, char *msg, size_t msglen)
{
  struct s3_sync *s = store_s3_fetcher_sync(f);
  const char *store = store_s3_fetcher_prefix(f);
  for (size_t i = 0; i < plan->n; i++) {
    char rel[4096], key[S3_KEY_MAX + 1];
    const char *ns = remove ? plan->src[i] : plan->dst[i];
    int rc = store_path_ns(rel, sizeof(rel), NULL, ns);
    if (rc < 0)
      return rc;
    if (remove) {
      /* Only the namespaces that are gone locally lose their marker. */
      struct stat st;
      char path[STORE_PATH_MAX];
      if (store_path_ns(path, sizeof(path), base, ns) < 0 || stat(path, &st) == 0)
        continue;
    }
    if (snprintf(key, sizeof(key), "%s/.cnt/%s/.namespace", store, rel) >= (int)sizeof(key))
      return CORE_ETOOBIG;
    struct s3_sync_result res;
    if (remove) {
      const char *one[1] = {key};
      size_t failed = 0;
      rc = s3_sync_delete(s, one, 1, &failed, &res);
    } else {
      rc = s3_sync_put(s, key, "", 0, 0, &res);
    }
    if (rc < 0) {
      snprintf(msg, msglen, "cannot %s the namespace marker %s: %s %s",
               remove ? "delete" : "write", key, core_strerror(rc), res.message);
      return rc;
    }
  }
  return 0;
}
