/* core_error.h: Cairn's error space.
 *
 * Every function that can fail returns 0 (or a non-negative count) on success
 * and a negative code on failure. System and libuv errors pass through as they
 * are (libuv's UV_E* values are -errno on Linux); Cairn's own codes live in
 * -1000..-1999 so the two never collide.
 */
#ifndef CORE_ERROR_H
#define CORE_ERROR_H

enum core_error {
  CORE_EPARSE     = -1000, /* input is not well formed (JSON, config, HTTP) */
  CORE_ETOOBIG    = -1001, /* input or buffer over its configured maximum */
  CORE_EFORMAT    = -1002, /* a file has a wrong magic, size or header */
  CORE_ECRC       = -1003, /* CRC-32 mismatch in a blob */
  CORE_EDIGEST    = -1004, /* SHA-256 of the content differs from its name */
  CORE_ECSUM      = -1005, /* index checksum mismatch */
  CORE_ENAME      = -1006, /* invalid name (store, namespace, id, file) */
  CORE_ESTALE     = -1007, /* optimistic concurrency: the digest is stale */
  CORE_ELOCKED    = -1008, /* a lock is held by someone else */
  CORE_ECRYPTO    = -1009, /* encryption or authentication failure */
  CORE_ENOTFOUND  = -1010, /* a named object does not exist */
  CORE_EEXISTS    = -1011, /* a named object already exists */
  CORE_EMAINT     = -1012, /* a maintenance mode forbids the operation */
  CORE_EPROTO     = -1013, /* the peer broke the protocol */
  CORE_ETLS       = -1014, /* TLS handshake or record failure */
  CORE_ECERT      = -1015, /* certificate verification failure */
  CORE_ECONFIG    = -1016, /* configuration value invalid */
  CORE_EINVAL     = -1017, /* invalid argument from a client */
  CORE_ETIMEOUT   = -1018, /* an operation took too long */
  CORE_EABORTED   = -1019, /* an operation was cancelled */
  CORE_ES3        = -1020, /* S3 answered with an error */
  CORE_EPROTECTED = -1021, /* a protected snapshot (or what holds one) was to be removed */

  CORE_ELAST      = CORE_EPROTECTED /* keep last: the message table's extent */
};

/* Returns a static, human-readable string for any code: Cairn's own, errno
 * values (negated) and libuv's. Never NULL. */
const char *core_strerror(int err);

#endif
