/* format_manifest.h: the snapshot manifest, index.json.blob.
 *
 * DESIGN
 * The manifest is PBS's JSON, kebab-case:
 *
 *   { "backup-type": "vm|ct|host", "backup-id": "...", "backup-time": <epoch>,
 *     "files": [ { "filename": "x.img.fidx", "crypt-mode": "none|encrypt|sign-only",
 *                  "size": <u64>, "csum": "<64 hex>" }, ... ],
 *     "unprotected": { free-form },
 *     "signature": "<64 hex>" | null }
 *
 * For index files `size` is the content size and `csum` the index_csum; for
 * blobs they are the encoded size and SHA-256 of the encoded bytes.
 * `unprotected` belongs to nobody's signature: the server keeps
 * verify_state, chunk_upload_stats and notes there, the client
 * key-fingerprint. It is kept as compact JSON text and written back as it
 * came, whatever keys it holds. The signature is HMAC-SHA256 with the key's
 * id_key over the canonical JSON (compact, object keys sorted bytewise, no
 * nulls) of the manifest without `unprotected` and `signature`; since only
 * the known fields take part, unknown top-level keys are dropped on parse,
 * as PBS does.
 *
 * On disk the manifest is a zstd-compressed, unencrypted DataBlob of the
 * pretty-printed JSON.
 *
 * THREADING: synchronous CPU/memory work, no file I/O; manifests are small
 * but parsing is still client input of up to FORMAT_MANIFEST_MAX_LEN bytes and
 * blob encoding compresses, so run it in a pool job. A struct format_manifest
 * belongs to one thread at a time.
 */
#ifndef FORMAT_MANIFEST_H
#define FORMAT_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "core/core_buf.h"
#include "core/core_digest.h"
#include "format/format_name.h"

struct format_crypt;
struct format_blob_ctx;

/* Largest manifest JSON accepted or produced. (FORMAT_MANIFEST_NAME, the
 * file name, is in format_name.h.) */
#define FORMAT_MANIFEST_MAX_LEN (16u * 1024 * 1024)

enum format_crypt_mode {
  FORMAT_CRYPT_MODE_NONE = 0,
  FORMAT_CRYPT_MODE_ENCRYPT = 1,
  FORMAT_CRYPT_MODE_SIGN_ONLY = 2,
};

struct format_manifest_file {
  char *filename;                  /* owned, validated */
  enum format_crypt_mode crypt_mode;
  uint64_t size;
  uint8_t csum[CORE_SHA256_LEN];
};

struct format_manifest {
  char *backup_type;                 /* owned: "vm", "ct" or "host" */
  char *backup_id;                   /* owned */
  int64_t backup_time;               /* epoch seconds */
  struct format_manifest_file *files; /* owned array of nfiles */
  size_t nfiles;
  size_t files_cap;
  char *unprotected;                 /* owned: compact JSON object text, never NULL */
  char *signature;                   /* owned: 64 lowercase hex, or NULL when unsigned */
};

/* A new, empty manifest (no files, unprotected {}, unsigned). Strings are
 * copied. */
void format_manifest_init(struct format_manifest *m, const char *backup_type,
                         const char *backup_id, int64_t backup_time);
void format_manifest_free(struct format_manifest *m);

/* 0 if `name` may appear in a manifest, else CORE_ENAME: the archive-name
 * rule of format_name_archive (a SAFE_ID of at most 128 bytes ending in .fidx,
 * .didx or .blob; so no '/', no leading '.', no control characters). */
int format_manifest_validate_filename(const char *name);

/* crypt-mode strings <-> enum. The parser returns CORE_EFORMAT for others. */
const char *format_crypt_mode_name(enum format_crypt_mode mode);
int format_crypt_mode_parse(const char *s);

/* Adds a file entry. 0, CORE_ENAME (bad name), CORE_EEXISTS (already
 * listed) or UV_ENOMEM. */
int format_manifest_add_file(struct format_manifest *m, const char *filename,
                            enum format_crypt_mode mode, uint64_t size,
                            const uint8_t csum[CORE_SHA256_LEN]);
/* The entry for `filename`, or NULL. Valid until the manifest changes. */
const struct format_manifest_file *format_manifest_find_file(const struct format_manifest *m,
                                                           const char *filename);

/* Parses manifest JSON into `m` (which this initialises; free it even on
 * failure). Returns 0, CORE_ETOOBIG (over FORMAT_MANIFEST_MAX_LEN), CORE_EPARSE
 * (not JSON, or nested deeper than 64 levels), CORE_EFORMAT (missing or
 * mistyped field, backup-type/id failing format_name.h, bad csum or
 * signature hex), CORE_ENAME (bad or duplicate file name) or UV_ENOMEM. */
int format_manifest_parse(const char *json, size_t len, struct format_manifest *m);

/* Appends the manifest JSON to `out`, pretty-printed (as PBS writes it) or
 * compact. 0, CORE_ETOOBIG or UV_ENOMEM (from `out`). */
int format_manifest_to_json(const struct format_manifest *m, int pretty, struct core_buf *out);

/* Appends the canonical JSON of the signed part to `out`. */
int format_manifest_canonical(const struct format_manifest *m, struct core_buf *out);

/* Signs with `crypt`: sets `signature` and unprotected "key-fingerprint".
 * 0 or an error from the buffer. */
int format_manifest_sign(struct format_manifest *m, const struct format_crypt *crypt);
/* Checks key and signature the way a restoring client does:
 * - a manifest that names a key-fingerprint needs `crypt`, and its
 *   fingerprint must match (CORE_ECRYPTO otherwise);
 * - a signed manifest's signature must match (CORE_ECRYPTO);
 * - an unsigned manifest without a fingerprint passes with or without key. */
int format_manifest_verify(const struct format_manifest *m, const struct format_crypt *crypt);

/* Sets unprotected[key] to the JSON value `value` (`len` bytes; re-encoded
 * compact), or removes the key when value is NULL, keeping every other key
 * and its order. 0, CORE_EPARSE (value is not JSON) or CORE_ETOOBIG. */
int format_manifest_unprotected_set(struct format_manifest *m, const char *key,
                                   const char *value, size_t len);
/* unprotected[key] as compact JSON text (free with core_free), or NULL when
 * absent. */
char *format_manifest_unprotected_get(const struct format_manifest *m, const char *key);
/* Shorthand for unprotected.verify_state = {"state": state, "upid": upid}. */
int format_manifest_set_verify_state(struct format_manifest *m, const char *state,
                                    const char *upid);

/* Encodes the pretty JSON as a zstd-compressed, unencrypted blob (new
 * buffer, free with core_free). Errors as format_blob_encode_alloc. */
int format_manifest_encode_blob(const struct format_manifest *m, struct format_blob_ctx *ctx,
                               uint8_t **out, size_t *out_len);
/* Decodes index.json.blob bytes (CRC checked; an encrypted blob is
 * CORE_ECRYPTO) and parses them into `m`. Errors from both steps. */
int format_manifest_decode_blob(struct format_blob_ctx *ctx, const void *blob, size_t len,
                               struct format_manifest *m);

#endif
