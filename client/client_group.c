/* client_group.c: groups of small entries (see client_group.h). */
#include "client/client_group.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_log.h"
#include "format/format_catalog.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

/* Held bytes past this stop the hold (the group is then read as usual):
 * a group ends by CLIENT_GROUP_MAX, plus one entry's headers and padding. */
#define HOLD_MAX ((size_t)16 << 20)
#define READ_BLOCK ((size_t)256 << 10)

/* FNV-1a, then a 64-bit finaliser so that the high bits of paths that
 * differ in their last byte differ too. */
static uint64_t path_hash(const char *path, size_t len)
{
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < len; i++) {
    h ^= (uint8_t)path[i];
    h *= 0x100000001b3ULL;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

int client_group_cut_before(const char *path, size_t path_len, uint64_t glen,
                            uint64_t prev_len)
{
  if (glen >= CLIENT_GROUP_MAX)
    return 1;
  if (glen < CLIENT_GROUP_MIN)
    return 0;
  if (prev_len > CLIENT_GROUP_AVG_EXTRA)
    prev_len = CLIENT_GROUP_AVG_EXTRA;
  /* a cut with probability prev_len / AVG_EXTRA: products below 2^53 */
  return (path_hash(path, path_len) >> 32) * CLIENT_GROUP_AVG_EXTRA < (prev_len << 32);
}

int client_group_same_entry(const struct format_catalog_entry *old,
                            const struct format_catalog_entry *cur)
{
  if ((old->flags | cur->flags) & FORMAT_CATALOG_SPARSE)
    return 0;
  if (old->type != cur->type || old->mode != cur->mode || old->uid != cur->uid ||
      old->gid != cur->gid || old->size != cur->size || old->mtime != cur->mtime ||
      old->mtime_ns != cur->mtime_ns || old->ctime != cur->ctime ||
      old->ctime_ns != cur->ctime_ns || old->ino != cur->ino || old->rdev != cur->rdev)
    return 0;
  if (old->type == FORMAT_CATALOG_FILE && old->data_len != old->size)
    return 0;
  return old->link_len == cur->link_len && memcmp(old->link, cur->link, old->link_len) == 0;
}

void client_group_hold_init(struct client_group_hold *h)
{
  memset(h, 0, sizeof(*h));
  core_buf_init(&h->bytes, HOLD_MAX);
}

void client_group_hold_reset(struct client_group_hold *h)
{
  for (size_t i = 0; i < h->n; i++)
    core_free(h->files[i].path);
  h->n = 0;
  h->file_bytes = 0;
  core_buf_reset(&h->bytes);
}

void client_group_hold_free(struct client_group_hold *h)
{
  client_group_hold_reset(h);
  core_free(h->files);
  core_buf_free(&h->bytes);
  memset(h, 0, sizeof(*h));
}

int client_group_hold_bytes(struct client_group_hold *h, const void *data, size_t len)
{
  return core_buf_append(&h->bytes, data, len) < 0 ? -ENOMEM : 0;
}

void client_group_hold_file(struct client_group_hold *h, const char *path, uint64_t size)
{
  if (h->n == h->cap) {
    h->cap = h->cap ? h->cap * 2 : 64;
    h->files = core_realloc(h->files, h->cap * sizeof(*h->files));
  }
  h->files[h->n].pos = h->bytes.len;
  h->files[h->n].path = core_strdup(path);
  h->files[h->n].size = size;
  h->n++;
  h->file_bytes += size;
}

/* One noted file's `size` bytes into `write`, zeros where it fell short. */
static int replay_file(const char *root, const struct client_group_file *gf, uint8_t *buf,
                       client_archive_write_fn write, void *arg)
{
  char *p = core_asprintf("%s/%s", root, gf->path);
  uint64_t left = gf->size;
  int fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
  int rc = 0, warned = 0;
  if (fd < 0) {
    core_warn("%s: %s since the walk: written as zeros", p, strerror(errno));
    warned = 1;
  }
  while (left > 0 && rc == 0) {
    size_t want = left < READ_BLOCK ? (size_t)left : READ_BLOCK;
    ssize_t n = fd < 0 ? 0 : read(fd, buf, want);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      if (!warned)
        core_warn("%s: shrank since the walk: the rest written as zeros", p);
      warned = 1;
      memset(buf, 0, want);
      n = (ssize_t)want;
    }
    rc = write(arg, buf, (size_t)n);
    left -= (uint64_t)n;
  }
  if (fd >= 0)
    close(fd);
  core_free(p);
  return rc;
}

int client_group_hold_replay(struct client_group_hold *h, const char *root,
                             client_archive_write_fn write, void *arg, uint64_t *files,
                             uint64_t *bytes)
{
  uint8_t *buf = h->n ? core_malloc(READ_BLOCK) : NULL;
  size_t at = 0;
  int rc = 0;
  for (size_t i = 0; i <= h->n && rc == 0; i++) {
    size_t upto = i < h->n ? h->files[i].pos : h->bytes.len;
    if (upto > at)
      rc = write(arg, h->bytes.base + at, upto - at);
    at = upto;
    if (rc == 0 && i < h->n) {
      rc = replay_file(root, &h->files[i], buf, write, arg);
      *files += 1;
      *bytes += h->files[i].size;
    }
  }
  core_free(buf);
  client_group_hold_reset(h);
  return rc;
}
