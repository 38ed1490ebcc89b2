/* http_tls.h: TLS as an I/O-less transport layer (mbedTLS 2.28).
 *
 * DESIGN. The connection code owns the socket. It feeds ciphertext it read
 * into a session with http_tls_feed(), pulls plaintext out with
 * http_tls_read(), pushes plaintext in with http_tls_write(), and sends
 * whatever ciphertext http_tls_take_output() hands it. The session never
 * touches a socket or the loop, so HTTP code is the same with or without TLS
 * and the session can be tested with two sessions wired back to back.
 *
 * Contexts (struct http_tls) are shared by many sessions and are immutable
 * once built; a reload builds a new context (refcounted) so sessions that
 * are open keep the one they started with.
 */
#ifndef HTTP_TLS_H
#define HTTP_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct http_tls;
struct http_tls_session;

/* A server context from PEM files. If both files are missing and `create` is
 * set, makes an EC P-256 key (mode 0600) and a self-signed certificate for
 * `cn` valid 10 years, first. Blocking: call at startup or off the loop.
 * Returns 0 or CORE_ETLS / CORE_ECERT / a negative errno. */
int http_tls_server_new(const char *cert_path, const char *key_path, int create,
                        const char *cn, struct http_tls **out);

/* A client context. `ca_file` NULL: the system CA store. `fingerprint` (SHA-256
 * of the DER certificate, hex with or without colons) pins the peer instead of
 * CA verification when non-NULL. `verify` 0 disables verification entirely
 * (tests only). */
int http_tls_client_new(const char *ca_file, const char *fingerprint, int verify,
                        struct http_tls **out);

/* "aa:bb:..." SHA-256 fingerprint of a server context's certificate. */
const char *http_tls_fingerprint(const struct http_tls *tls);

void http_tls_ref(struct http_tls *tls);
void http_tls_unref(struct http_tls *tls);

/* A session for one connection; `hostname` is the SNI/verify name (client only,
 * may be NULL). Holds a reference on `tls`. */
struct http_tls_session *http_tls_session_new(struct http_tls *tls, const char *hostname);
void http_tls_session_free(struct http_tls_session *s);

/* Ciphertext from the network. Returns 0, or CORE_ETOOBIG if more than the
 * session's input bound (64 KiB + one record) is pending unread. */
int http_tls_feed(struct http_tls_session *s, const void *data, size_t len);

/* Plaintext out. Returns bytes read (> 0), 0 when more ciphertext is needed
 * (the handshake may have produced output: check http_tls_take_output), or
 * CORE_ETLS / CORE_ECERT on failure, or UV_EOF on close_notify. */
ssize_t http_tls_read(struct http_tls_session *s, void *buf, size_t len);

/* Plaintext in: encrypts all of it into the output queue. Before the
 * handshake is done the data is held and sent when it completes. Returns 0 or
 * CORE_ETLS. */
int http_tls_write(struct http_tls_session *s, const void *data, size_t len);

/* Drives the handshake (clients call this once to send ClientHello). Returns 1
 * when done, 0 when more input is needed, or an error. */
int http_tls_handshake(struct http_tls_session *s);

/* Hands pending ciphertext to the caller, who frees it with core_free after
 * the write completed. Returns NULL (and *len 0) if nothing is pending. */
void *http_tls_take_output(struct http_tls_session *s, size_t *len);

/* The peer certificate's fingerprint after the handshake ("aa:bb:..."), or "". */
const char *http_tls_peer_fingerprint(const struct http_tls_session *s);
/* Last verification failure as text, for "unknown certificate" messages. */
const char *http_tls_error(const struct http_tls_session *s);

#endif
