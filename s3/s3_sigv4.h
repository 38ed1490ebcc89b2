/* s3_sigv4.h: AWS Signature Version 4 for S3 requests.
 *
 * DESIGN. Signing is split in two so the loop thread never hashes a body:
 * the payload SHA-256 (s3_sigv4_payload_hash, CPU work proportional to the
 * body) is computed by the caller, normally in a pool job, and handed in as
 * hex; everything else (canonical request, string to sign, four HMACs of the
 * key chain, one more for the signature) is a few microseconds of work on
 * small strings and runs where the request is built.
 *
 * Canonical form, per AWS's rules for S3:
 *  - URI: the path exactly as sent. S3 paths are encoded once (every byte but
 *    A-Za-z0-9-._~ becomes %XX, '/' kept) and never normalised or encoded a
 *    second time; s3_uri_encode() produces that form.
 *  - Query: every pair is percent-decoded then re-encoded (so "a+b", "a%2Bb"
 *    and any mixed-case escapes give one form), a bare name gets "=", and the
 *    pairs are sorted by name then value, bytewise.
 *  - Headers: every header the request sends is signed (PBS does the same),
 *    names lower-cased and sorted, values trimmed with inner runs of spaces
 *    collapsed; repeated names are joined with ','.
 *  - Scope: <yyyymmdd>/<region>/s3/aws4_request.
 *
 * Secrets: the secret key is only read here and never copied into output
 * other than through the HMAC chain.
 */
#ifndef S3_SIGV4_H
#define S3_SIGV4_H

#include "core/core_buf.h"

#include <stddef.h>
#include <time.h>

#define S3_SIGV4_DATE_LEN 16 /* "20250714T142002Z" */
#define S3_SIGV4_HASH_HEX_LEN 64
/* SHA-256 of the empty string, the payload hash of every bodyless request. */
#define S3_SIGV4_EMPTY_HASH "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct s3_sigv4_header {
  const char *name;
  const char *value;
};

struct s3_sigv4_input {
  const char *method;          /* "GET", "PUT", ... */
  const char *uri;             /* encoded path as sent, starting with '/' */
  const char *query;           /* query as sent without '?', or NULL/"" */
  /* Every header that will be sent and signed, including host, x-amz-date and
   * x-amz-content-sha256. Names in any case. */
  const struct s3_sigv4_header *headers;
  size_t n_headers;
  const char *payload_hash;    /* 64 lowercase hex chars */
  const char *amz_date;        /* S3_SIGV4_DATE_LEN chars, s3_sigv4_date() */
  const char *region;
  const char *access_key;
  const char *secret_key;
};

/* The SHA-256 of a body as lowercase hex, for x-amz-content-sha256. CPU work
 * proportional to `len`: call it from a pool job for anything but tiny bodies.
 * Thread-safe. */
void s3_sigv4_payload_hash(const void *data, size_t len, char out[S3_SIGV4_HASH_HEX_LEN + 1]);

/* Formats `t` (UTC) as "%Y%m%dT%H%M%SZ". */
void s3_sigv4_date(time_t t, char out[S3_SIGV4_DATE_LEN + 1]);

/* Appends the S3 URI encoding of `s[0..len)`: every byte except A-Za-z0-9-._~
 * (and '/' when `keep_slash`) as uppercase %XX. Returns 0 or a core_buf error
 * (CORE_ETOOBIG past out->max, UV_ENOMEM). */
int s3_uri_encode(struct core_buf *out, const char *s, size_t len, int keep_slash);

/* Appends the canonical form of a query string (see DESIGN). Returns 0,
 * CORE_EPARSE for a bad %-escape, CORE_ETOOBIG past 256 pairs, or a core_buf
 * error. */
int s3_sigv4_canonical_query(const char *query, struct core_buf *out);

/* Appends the canonical request (for tests and debugging). */
int s3_sigv4_canonical_request(const struct s3_sigv4_input *in, struct core_buf *out);

/* Appends the value of the Authorization header:
 * "AWS4-HMAC-SHA256 Credential=<ak>/<scope>, SignedHeaders=<h;...>, Signature=<hex>".
 * Returns 0, CORE_EINVAL for a malformed input (bad date or hash, header names
 * with bytes outside token characters, values with CR/LF), or a core_buf error. */
int s3_sigv4_authorization(const struct s3_sigv4_input *in, struct core_buf *out);

#endif
