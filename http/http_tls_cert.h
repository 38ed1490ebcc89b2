/* http_tls_cert.h: the certificate side of http_tls (private to http/).
 *
 * The TLS code is two files:
 *   http_tls.c       the transport: contexts, sessions, the handshake, the
 *                    memory BIOs and the offloaded record layer. Runs on the
 *                    loop thread and never touches a file.
 *   http_tls_cert.c  certificates and keys: making an EC key and a
 *                    self-signed certificate, loading a server's pair or a
 *                    CA bundle, SHA-256 fingerprints. Everything in it that
 *                    touches a file blocks: context construction only
 *                    (startup or a thread-pool job), never a session.
 * The public API of both is http_tls.h; this header is the seam between
 * them, with `http_tls__` names (cross-file internals).
 */
#ifndef HTTP_TLS_CERT_H
#define HTTP_TLS_CERT_H

#include "core/core_digest.h"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#include <stddef.h>
#include <stdint.h>

#define HTTP_TLS_FP_LEN 96 /* 32 * "xx:" less the last ':' plus NUL */

/* "aa:bb:..." (32 lowercase hex pairs, as PBS prints it) of the SHA-256 of
 * a DER certificate. */
void http_tls__fingerprint_format(const uint8_t *der, size_t len, char out[HTTP_TLS_FP_LEN]);

/* "aa:BB:..." or "aabb..." (64 hex digits of either case, colons anywhere)
 * into 32 bytes. Returns 0 or CORE_ECONFIG. */
int http_tls__fingerprint_parse(const char *text, uint8_t out[CORE_SHA256_LEN]);

/* Makes sure a server's key and certificate files exist, as
 * http_tls_server_new documents: with `create`, a missing key is made
 * (EC P-256, mode 0600, never over an existing file) and a missing
 * certificate is made self-signed for `cn` (non-NULL) from the key on disk.
 * `drbg` is seeded; it draws the key and the serial number. Returns 0,
 * -ENOENT (a file is missing and may not be created, or the key is missing
 * beside an existing certificate), CORE_ECONFIG (bad `cn`), CORE_ECERT (the
 * key file cannot be parsed), CORE_ETLS, or a negative errno. */
int http_tls__cert_prepare(const char *cert_path, const char *key_path, int create,
                           const char *cn, mbedtls_ctr_drbg_context *drbg);

/* Loads a server's certificate chain (leaf first) and its key into `certs`
 * and `key` (initialised by the caller, freed by the caller on failure too)
 * and writes the leaf's fingerprint. Returns 0 or CORE_ECERT (unreadable
 * file, or the key does not match the leaf). */
int http_tls__cert_load(const char *cert_path, const char *key_path, mbedtls_x509_crt *certs,
                        mbedtls_pk_context *key, char fingerprint[HTTP_TLS_FP_LEN]);

/* Loads the CA certificates of `ca_file` (NULL: the system bundle
 * /etc/ssl/certs/ca-certificates.crt) into `certs`; certificates mbedTLS
 * cannot parse are skipped. Returns 0, -ENOENT (no such file), CORE_ECERT
 * (no usable certificate), or a negative errno. */
int http_tls__ca_load(const char *ca_file, mbedtls_x509_crt *certs);

#endif
