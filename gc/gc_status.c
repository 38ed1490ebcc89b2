#include "gc/gc_status.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_file.h"
#include "store/store_path.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GC_STATUS_MAX_LEN (64 * 1024)

void gc_status_json_fields(const struct gc_status *s, struct core_json *j)
{
  if (s->upid[0])
    core_json_kv_str(j, "upid", s->upid);
  core_json_kv_uint(j, "index-file-count", s->index_file_count);
  core_json_kv_uint(j, "index-data-bytes", s->index_data_bytes);
  core_json_kv_uint(j, "disk-bytes", s->disk_bytes);
  core_json_kv_uint(j, "disk-chunks", s->disk_chunks);
  core_json_kv_uint(j, "removed-bytes", s->removed_bytes);
  core_json_kv_uint(j, "removed-chunks", s->removed_chunks);
  core_json_kv_uint(j, "pending-bytes", s->pending_bytes);
  core_json_kv_uint(j, "pending-chunks", s->pending_chunks);
  core_json_kv_uint(j, "removed-bad", s->removed_bad);
  core_json_kv_uint(j, "still-bad", s->still_bad);
  core_json_key(j, "cache-stats");
  core_json_obj_open(j);
  core_json_kv_uint(j, "hits", s->cache_hits);
  core_json_kv_uint(j, "misses", s->cache_misses);
  core_json_obj_close(j);
}

static uint64_t get_u64(yajl_val obj, const char *key)
{
  int64_t v;
  if (core_json_get_int(obj, key, &v) == 0 && v > 0)
    return (uint64_t)v;
  return 0;
}

int gc_status_parse(const char *text, size_t len, struct gc_status *out)
{
  yajl_val root;
  memset(out, 0, sizeof(*out));
  if (core_json_parse(text, len, &root, NULL, 0) < 0)
    return CORE_EPARSE;
  if (!YAJL_IS_OBJECT(root)) {
    yajl_tree_free(root);
    return CORE_EPARSE;
  }
  const char *upid = core_json_get_str(root, "upid");
  if (upid)
    snprintf(out->upid, sizeof(out->upid), "%s", upid);
  out->index_file_count = get_u64(root, "index-file-count");
  out->index_data_bytes = get_u64(root, "index-data-bytes");
  out->disk_bytes = get_u64(root, "disk-bytes");
  out->disk_chunks = get_u64(root, "disk-chunks");
  out->removed_bytes = get_u64(root, "removed-bytes");
  out->removed_chunks = get_u64(root, "removed-chunks");
  out->pending_bytes = get_u64(root, "pending-bytes");
  out->pending_chunks = get_u64(root, "pending-chunks");
  out->removed_bad = get_u64(root, "removed-bad");
  out->still_bad = get_u64(root, "still-bad");
  yajl_val cs = core_json_get(root, "cache-stats");
  if (cs && YAJL_IS_OBJECT(cs)) {
    out->cache_hits = get_u64(cs, "hits");
    out->cache_misses = get_u64(cs, "misses");
  }
  yajl_tree_free(root);
  return 0;
}

int gc_status_write(const char *base, const struct gc_status *s)
{
  struct core_json j;
  core_json_init(&j, 0);
  core_json_obj_open(&j);
  gc_status_json_fields(s, &j);
  core_json_obj_close(&j);
  size_t len;
  const char *text = core_json_text(&j, &len);
  char *path = core_asprintf("%s/%s", base, STORE_GC_STATUS_FILE);
  /* 0644 whatever the umask, as PBS */
  int rc = core_file_replace(path, text, len, 0644, 1);
  core_free(path);
  core_json_free(&j);
  return rc;
}

int gc_status_read(const char *base, struct gc_status *out)
{
  char *path = core_asprintf("%s/%s", base, STORE_GC_STATUS_FILE);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  core_free(path);
  memset(out, 0, sizeof(*out));
  if (fd < 0)
    return errno == ENOENT ? CORE_ENOTFOUND : -errno;
  char *buf = core_malloc(GC_STATUS_MAX_LEN);
  size_t len = 0;
  int rc = 0;
  for (;;) {
    ssize_t r = read(fd, buf + len, GC_STATUS_MAX_LEN - len);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      rc = -errno;
      break;
    }
    if (r == 0)
      break;
    len += (size_t)r;
    if (len == GC_STATUS_MAX_LEN) {
      rc = CORE_EPARSE;
      break;
    }
  }
  close(fd);
  if (rc == 0)
    rc = gc_status_parse(buf, len, out);
  core_free(buf);
  return rc;
}
