/* fuzz_catalog.c: file catalogs (format_catalog.h), the client's and the
 * server's view of a directory archive, read from the network or the disk.
 *
 * Input: the raw catalog (what NAME.catalog.blob decodes to). Checked: open
 * and validate never read outside the buffer (ASan); a catalog that
 * validates yields entries with safe paths in strictly increasing order and
 * consistent stream offsets; every entry is found again by lookup; seeking
 * to an entry's path lands on it; the catalog re-encoded by the writer
 * decodes to the same entries (the writer accepts all the reader accepts);
 * and read by ranges (the NAME.catalog.didx form, through a source that
 * copies from the input) a full iteration gives the same verdict and the
 * same entries as the whole buffer. */
#include "fuzz.h"

#include "core/core_buf.h"
#include "format/format_catalog.h"

static int same(const struct format_catalog_entry *a, const struct format_catalog_entry *b)
{
  return a->path_len == b->path_len && memcmp(a->path, b->path, a->path_len) == 0 &&
         a->link_len == b->link_len && memcmp(a->link, b->link, a->link_len) == 0 &&
         a->type == b->type && a->flags == b->flags && a->mode == b->mode &&
         a->uid == b->uid && a->gid == b->gid && a->size == b->size &&
         a->mtime == b->mtime && a->mtime_ns == b->mtime_ns && a->ctime == b->ctime &&
         a->ctime_ns == b->ctime_ns && a->ino == b->ino && a->dev == b->dev &&
         a->rdev == b->rdev && a->hdr_off == b->hdr_off && a->data_off == b->data_off &&
         a->data_len == b->data_len && a->end_off == b->end_off;
}

static int mem_read(void *ctx, uint64_t off, void *dst, size_t len)
{
  memcpy(dst, (const uint8_t *)ctx + off, len); /* the reader bounds off + len */
  return 0;
}

/* The verdict read by ranges: 1 when open and a full iteration succeed. */
static int ranged_ok(const uint8_t *data, size_t size, struct format_catalog_iter *it)
{
  struct format_catalog c;
  struct format_catalog_source src = {0};
  struct format_catalog_entry e;
  int rc;
  src.size = size;
  src.read = mem_read;
  src.ctx = (void *)data;
  if (format_catalog_open_source(&c, &src) < 0)
    return 0;
  format_catalog_iter_init(it, &c);
  while ((rc = format_catalog_next(it, &e)) > 0)
    FUZZ_ASSERT(format_catalog_safe_path(e.path, e.path_len));
  (void)format_catalog_lookup(&c, it, "a/b", &e);
  format_catalog_close(&c);
  return rc == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct format_catalog c, c2;
  struct format_catalog_iter *it = malloc(sizeof(*it)), *it2 = malloc(sizeof(*it2));
  struct format_catalog_iter *look = malloc(sizeof(*look));
  struct format_catalog_entry e, f;
  struct format_catalog_writer w;
  struct core_buf out;
  uint8_t *copy = malloc(size ? size : 1);
  char prev[FORMAT_CATALOG_PATH_MAX + 1];
  size_t prev_len = 0;
  uint64_t n = 0;

  memcpy(copy, data, size); /* exactly `size` bytes: ASan sees any overread */
  format_catalog_writer_init(&w);
  core_buf_init(&out, (size_t)1 << 30);
  {
    int whole = format_catalog_open(&c, copy, size) == 0 && format_catalog_validate(&c) == 0;
    FUZZ_ASSERT(whole == ranged_ok(copy, size, it));
    if (!whole)
      goto out;
  }
  format_catalog_iter_init(it, &c);
  while (format_catalog_next(it, &e) > 0) {
    FUZZ_ASSERT(format_catalog_safe_path(e.path, e.path_len));
    FUZZ_ASSERT(n == 0 || format_catalog_cmp(prev, prev_len, e.path, e.path_len) < 0);
    FUZZ_ASSERT(e.hdr_off <= e.data_off && e.data_off + e.data_len <= e.end_off);
    FUZZ_ASSERT(e.type != FORMAT_CATALOG_FILE || e.data_len <= e.size);
    memcpy(prev, e.path, e.path_len);
    prev[e.path_len] = '\0';
    prev_len = e.path_len;
    if (n < 64) {
      FUZZ_ASSERT(format_catalog_lookup(&c, look, prev, &f) == 1);
      FUZZ_ASSERT(same(&e, &f));
    }
    FUZZ_ASSERT(format_catalog_writer_add(&w, &e) == 0);
    n++;
  }
  FUZZ_ASSERT(n == c.count);
  /* the writer's encoding of the same entries reads back the same */
  FUZZ_ASSERT(format_catalog_writer_finish(&w, &out) == 0);
  FUZZ_ASSERT(format_catalog_open(&c2, out.base, out.len) == 0);
  FUZZ_ASSERT(format_catalog_validate(&c2) == 0);
  FUZZ_ASSERT(c2.count == c.count);
  format_catalog_iter_init(it, &c);
  format_catalog_iter_init(it2, &c2);
  while (format_catalog_next(it, &e) > 0) {
    FUZZ_ASSERT(format_catalog_next(it2, &f) == 1);
    FUZZ_ASSERT(same(&e, &f));
  }
out:
  core_buf_free(&out);
  format_catalog_writer_free(&w);
  free(copy);
  free(it);
  free(it2);
  free(look);
  return 0;
}
