/* s3_xml.h: the XML S3 speaks, read with libxml2 and written by hand.
 *
 * DESIGN. Response bodies are hostile input. A document is refused before
 * libxml2 sees it if it is larger than S3_XML_MAX_DOC or carries a DOCTYPE
 * (S3 never sends one, and without a DTD there are no entity declarations to
 * expand: no billion laughs, no external entities). It is then parsed with
 * XML_PARSE_NONET and without XML_PARSE_NOENT / XML_PARSE_DTDLOAD /
 * XML_PARSE_HUGE, so even a DTD that slipped through is neither loaded nor
 * used for substitution. Every text value copied out is bounded
 * (S3_XML_MAX_TEXT; keys by S3_KEY_MAX). Elements are matched by local name
 * so the S3 namespace may or may not be present.
 *
 * S3 error codes are mapped through one table to enum s3_error_code: callers
 * switch on the enum and never compare strings.
 *
 * Parsing a 1000-key listing page costs about a millisecond; it is done
 * where the response lands (the loop thread). All functions are thread-safe
 * once s3_xml_init() has run.
 */
#ifndef S3_XML_H
#define S3_XML_H

#include "core/core_buf.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define S3_XML_MAX_DOC (8u * 1024 * 1024) /* a 1000-key page is ~300 KiB */
#define S3_XML_MAX_TEXT 4096              /* any one value but keys */

enum s3_error_code {
  S3_ERR_NONE = 0,        /* no error document / no error */
  S3_ERR_UNKNOWN,         /* a code not in the table */
  S3_ERR_ACCESS_DENIED,
  S3_ERR_BAD_DIGEST,
  S3_ERR_BUCKET_ALREADY_EXISTS,
  S3_ERR_BUCKET_ALREADY_OWNED_BY_YOU,
  S3_ERR_BUCKET_NOT_EMPTY,
  S3_ERR_CONDITIONAL_REQUEST_CONFLICT,
  S3_ERR_ENTITY_TOO_LARGE,
  S3_ERR_EXPIRED_TOKEN,
  S3_ERR_INTERNAL_ERROR,
  S3_ERR_INVALID_ACCESS_KEY_ID,
  S3_ERR_INVALID_ARGUMENT,
  S3_ERR_INVALID_BUCKET_NAME,
  S3_ERR_INVALID_DIGEST,
  S3_ERR_INVALID_RANGE,
  S3_ERR_INVALID_REQUEST,
  S3_ERR_INVALID_TOKEN,
  S3_ERR_MALFORMED_XML,
  S3_ERR_METHOD_NOT_ALLOWED,
  S3_ERR_MISSING_CONTENT_LENGTH,
  S3_ERR_NO_SUCH_BUCKET,
  S3_ERR_NO_SUCH_KEY,
  S3_ERR_NOT_IMPLEMENTED,
  S3_ERR_OPERATION_ABORTED,
  S3_ERR_PRECONDITION_FAILED,
  S3_ERR_QUOTA_EXCEEDED,
  S3_ERR_REQUEST_TIME_TOO_SKEWED,
  S3_ERR_REQUEST_TIMEOUT,
  S3_ERR_SERVICE_UNAVAILABLE,
  S3_ERR_SIGNATURE_DOES_NOT_MATCH,
  S3_ERR_SLOW_DOWN,
  S3_ERR_CONTENT_SHA256_MISMATCH,
  S3_ERR__COUNT
};

/* Call once at startup from the main thread (libxml2's global init). */
void s3_xml_init(void);

/* The S3 name of a code ("NoSuchKey"; "Unknown" / "" for those two). */
const char *s3_error_name(enum s3_error_code code);
/* Table look-up; S3_ERR_UNKNOWN for names not in it. */
enum s3_error_code s3_error_from_name(const char *name);
/* 1 for the codes a client retries with backoff (InternalError, SlowDown,
 * ServiceUnavailable, RequestTimeout, OperationAborted). */
int s3_error_retryable(enum s3_error_code code);

struct s3_error {
  enum s3_error_code code;
  char code_text[64];    /* the server's Code, truncated; for messages only */
  char message[256];     /* the server's Message, truncated */
  char request_id[128];
};

/* Parses an <Error> body. Returns 0 (out filled), or CORE_EPARSE /
 * CORE_ETOOBIG for a document that is not a readable <Error>. */
int s3_xml_parse_error(const char *doc, size_t len, struct s3_error *out);

struct s3_object {
  char *key;              /* owned */
  uint64_t size;
  time_t last_modified;   /* 0 if absent or unparsable */
  char etag[72];          /* as sent, quotes removed */
};

struct s3_list_result {
  struct s3_object *objects; /* owned array of `n` */
  size_t n;
  int is_truncated;
  char *next_token;       /* NextContinuationToken, owned, or NULL */
  long key_count;         /* KeyCount, -1 if absent */
};

/* Parses a ListBucketResult (ListObjectsV2). On success `out` owns its
 * contents (free with s3_list_result_free). Returns 0, CORE_EPARSE,
 * CORE_ETOOBIG, or CORE_ENAME for a key over S3_KEY_MAX. */
int s3_xml_parse_list(const char *doc, size_t len, struct s3_list_result *out);
void s3_list_result_free(struct s3_list_result *r);

struct s3_delete_entry {
  char *key;                  /* owned */
  int deleted;                /* 1: <Deleted>; 0: <Error> */
  enum s3_error_code code;    /* for errors */
  char message[128];
};

struct s3_delete_result {
  struct s3_delete_entry *entries; /* owned array of `n` */
  size_t n;
};

/* Parses a DeleteResult. Returns 0, CORE_EPARSE or CORE_ETOOBIG. */
int s3_xml_parse_delete(const char *doc, size_t len, struct s3_delete_result *out);
void s3_delete_result_free(struct s3_delete_result *r);

/* Appends a DeleteObjects request body for `keys`, each XML-escaped.
 * Returns 0, CORE_EINVAL for n == 0 or n > 1000, CORE_ENAME for an empty key,
 * a key over S3_KEY_MAX or one with a byte XML 1.0 cannot carry, or a
 * core_buf error. */
int s3_xml_delete_body(const char *const *keys, size_t n, int quiet, struct core_buf *out);

#endif
