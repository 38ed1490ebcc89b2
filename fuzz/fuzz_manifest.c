/* fuzz_manifest.c: the snapshot manifest, as JSON and as index.json.blob.
 *
 * Input: a flags byte, then manifest JSON (or, with F_BLOB, the blob bytes;
 * with F_FIX_CRC too the harness rewrites the blob CRC so mutations reach
 * zstd and the JSON). A parsed manifest is written out (pretty and compact),
 * parsed again and written again: the text must be a fixed point, and the
 * canonical (signed) form must not change either. The unprotected part is
 * read back key by key, verification runs without a key, and the manifest
 * survives an encode_blob + decode_blob round trip. */
#include "fuzz.h"

#include "core/core_alloc.h"
#include "core/core_buf.h"
#include "format/format_blob.h"
#include "format/format_manifest.h"

enum {
  F_BLOB = 1 << 0,
  F_FIX_CRC = 1 << 1,
  F_PRETTY = 1 << 2,
};

static struct format_blob_ctx ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  format_blob_ctx_init(&ctx);
  return 0;
}

static void to_text(const struct format_manifest *m, int pretty, struct core_buf *out)
{
  core_buf_init(out, FORMAT_MANIFEST_MAX_LEN);
  FUZZ_ASSERT(format_manifest_to_json(m, pretty, out) == 0);
}

static void canonical(const struct format_manifest *m, struct core_buf *out)
{
  core_buf_init(out, FORMAT_MANIFEST_MAX_LEN);
  FUZZ_ASSERT(format_manifest_canonical(m, out) == 0);
}

static int buf_eq(const struct core_buf *a, const struct core_buf *b)
{
  return a->len == b->len && (a->len == 0 || memcmp(a->base, b->base, a->len) == 0);
}

static void check_manifest(struct format_manifest *m, int pretty)
{
  for (size_t i = 0; i < m->nfiles; i++) {
    FUZZ_ASSERT(format_manifest_validate_filename(m->files[i].filename) == 0);
    FUZZ_ASSERT(format_manifest_find_file(m, m->files[i].filename) == &m->files[i]);
  }
  FUZZ_ASSERT(m->unprotected != NULL);
  static const char *const keys[] = {"verify_state", "key-fingerprint", "notes",
                                     "chunk_upload_stats"};
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
    core_free(format_manifest_unprotected_get(m, keys[i]));
  (void)format_manifest_verify(m, NULL);

  struct core_buf t1, t2, c1, c2;
  to_text(m, pretty, &t1);
  canonical(m, &c1);
  struct format_manifest again;
  FUZZ_ASSERT(format_manifest_parse(t1.base, t1.len, &again) == 0);
  to_text(&again, pretty, &t2);
  canonical(&again, &c2);
  FUZZ_ASSERT(buf_eq(&t1, &t2));
  FUZZ_ASSERT(buf_eq(&c1, &c2));
  format_manifest_free(&again);
  core_buf_free(&t2);
  core_buf_free(&c2);

  /* Through the on-disk form. */
  uint8_t *blob;
  size_t blob_len;
  FUZZ_ASSERT(format_manifest_encode_blob(m, &ctx, &blob, &blob_len) == 0);
  FUZZ_ASSERT(format_manifest_decode_blob(&ctx, blob, blob_len, &again) == 0);
  to_text(&again, pretty, &t2);
  FUZZ_ASSERT(buf_eq(&t1, &t2));
  format_manifest_free(&again);
  core_buf_free(&t2);
  core_free(blob);

  core_buf_free(&t1);
  core_buf_free(&c1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  unsigned flags = data[0];
  struct format_manifest m;
  int rc;
  if (flags & F_BLOB) {
    uint8_t *blob = malloc(size);
    memcpy(blob, data + 1, size - 1);
    if (flags & F_FIX_CRC)
      format_blob_set_crc(blob, size - 1);
    rc = format_manifest_decode_blob(&ctx, blob, size - 1, &m);
    free(blob);
  } else {
    rc = format_manifest_parse((const char *)data + 1, size - 1, &m);
  }
  if (rc == 0)
    check_manifest(&m, (flags & F_PRETTY) != 0);
  else
    FUZZ_ASSERT(rc < 0);
  format_manifest_free(&m);
  return 0;
}
