/* fuzz_index.c: fixed and dynamic index files, parsed whole and streamed.
 *
 * Input: a flags byte, then either the raw file image (F_RAW) or a compact
 * form the harness expands: 16 bytes of fidx size and chunk_size, then the
 * entries; the harness writes the 4096-byte header (magic by F_DIDX) and,
 * with F_FIX_CSUM, the right index_csum, so mutations reach the entry checks
 * instead of stopping at the checksum. The image is parsed with
 * format_index_parse and also fed to the streaming reader in pieces whose
 * size the flags choose. Checked: both readers give the same verdict; on
 * success the entries the stream hands out are the parsed ones with the
 * sizes format_index_chunk_range gives, and those sizes add up to `size`. */
#include "fuzz.h"

#include "core/core_error.h"
#include "format/format_index.h"

enum {
  F_RAW = 1 << 0,
  F_DIDX = 1 << 1,
  F_FIX_CSUM = 1 << 2,
  F_SKIP_CSUM = 1 << 3,
  /* bits 4..7: stream piece size selector */
};

static const uint8_t fidx_magic[8] = {0x2f, 0x7f, 0x41, 0xed, 0x91, 0xfd, 0x0f, 0xcd};
static const uint8_t didx_magic[8] = {0x1c, 0x91, 0x4e, 0xa5, 0x19, 0xba, 0xb3, 0xcd};

struct seen {
  const struct format_index *idx; /* the parsed index, when parse succeeded */
  uint64_t n;
  uint64_t total;
};

static void on_entry(void *arg, const uint8_t digest[CORE_SHA256_LEN], uint64_t size)
{
  struct seen *s = arg;
  if (s->idx != NULL) {
    FUZZ_ASSERT(s->n < s->idx->count);
    FUZZ_ASSERT(memcmp(digest, format_index_digest(s->idx, s->n), CORE_SHA256_LEN) == 0);
    uint64_t start, end;
    format_index_chunk_range(s->idx, s->n, &start, &end);
    FUZZ_ASSERT(start <= end && end - start == size);
  }
  s->n++;
  s->total += size;
}

/* Builds the file image; returns its length (malloc'd into *out). */
static size_t build_image(const uint8_t *in, size_t len, unsigned flags, uint8_t **out)
{
  if (flags & F_RAW) {
    *out = malloc(len ? len : 1);
    memcpy(*out, in, len);
    return len;
  }
  uint8_t sizes[16] = {0};
  size_t take = len < 16 ? len : 16;
  memcpy(sizes, in, take);
  in += take;
  len -= take;
  size_t total = FORMAT_INDEX_HDR_LEN + len;
  uint8_t *img = calloc(1, total);
  memcpy(img, (flags & F_DIDX) ? didx_magic : fidx_magic, 8);
  if (!(flags & F_DIDX))
    memcpy(img + 64, sizes, 16);
  memcpy(img + FORMAT_INDEX_HDR_LEN, in, len);
  if (flags & F_FIX_CSUM) {
    /* Whole entries only: what compute_csum covers for a valid file. */
    size_t esize = (flags & F_DIDX) ? FORMAT_DIDX_ENTRY_LEN : FORMAT_FIDX_ENTRY_LEN;
    core_sha256(img + FORMAT_INDEX_HDR_LEN, len - len % esize, img + 32);
  }
  *out = img;
  return total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  unsigned flags = data[0];
  static const size_t pieces[16] = {1, 7, 31, 32, 39, 40, 41, 64, 100, 512, 4095, 4096,
                                    4097, 8192, 65536, (size_t)-1};
  size_t piece = pieces[flags >> 4];
  uint8_t *img;
  size_t len = build_image(data + 1, size - 1, flags, &img);
  int pflags = (flags & F_SKIP_CSUM) ? FORMAT_INDEX_SKIP_CSUM : 0;

  struct format_index idx;
  int rc = format_index_parse(img, len, pflags, &idx);
  FUZZ_ASSERT(rc == 0 || rc == CORE_EFORMAT || rc == CORE_ECSUM);
  if (rc == 0) {
    FUZZ_ASSERT(idx.kind == FORMAT_INDEX_FIXED || idx.kind == FORMAT_INDEX_DYNAMIC);
    uint64_t esize = idx.kind == FORMAT_INDEX_FIXED ? FORMAT_FIDX_ENTRY_LEN
                                                   : FORMAT_DIDX_ENTRY_LEN;
    FUZZ_ASSERT(FORMAT_INDEX_HDR_LEN + idx.count * esize == len);
    uint64_t sum = 0, prev_end = 0;
    for (uint64_t i = 0; i < idx.count; i++) {
      uint64_t start, end;
      format_index_chunk_range(&idx, i, &start, &end);
      FUZZ_ASSERT(start == prev_end && start <= end);
      sum += end - start;
      prev_end = end;
    }
    FUZZ_ASSERT(sum == idx.size);
    if (!(pflags & FORMAT_INDEX_SKIP_CSUM)) {
      uint8_t csum[CORE_SHA256_LEN];
      format_index_compute_csum(&idx, csum);
      FUZZ_ASSERT(memcmp(csum, idx.csum, CORE_SHA256_LEN) == 0);
    }
  }

  /* The stream always checks the csum. */
  struct seen seen = {rc == 0 ? &idx : NULL, 0, 0};
  struct format_index_stream st;
  format_index_stream_init(&st);
  int src = 0;
  for (size_t off = 0; off < len && src == 0;) {
    size_t n = len - off < piece ? len - off : piece;
    src = format_index_stream_feed(&st, img + off, n, on_entry, &seen);
    off += n;
  }
  if (src == 0)
    src = format_index_stream_finish(&st);
  format_index_stream_free(&st);
  if (!(pflags & FORMAT_INDEX_SKIP_CSUM)) {
    FUZZ_ASSERT(src == rc);
  } else if (rc != 0) {
    FUZZ_ASSERT(src != 0);
  }
  if (src == 0) {
    FUZZ_ASSERT(rc == 0 && seen.n == idx.count && seen.total == idx.size);
  }
  free(img);
  return 0;
}
