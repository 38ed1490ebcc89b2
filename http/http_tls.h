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
 * once their first session starts; a reload builds a new context (refcounted) so sessions that
 * are open keep the one they started with.
 *
 * Threads. Contexts are built off the loop (file I/O, key generation) and
 * then handed to the loop thread. Sessions, and the ref/unref calls, belong
 * to the loop thread; all sessions of one context must run on one thread,
 * because mbedTLS 2.28 reports exported keys per config, not per session
 * (a context shared across threads stays correct but may lose the record
 * offload). Each context has one CTR-DRBG that all its sessions share;
 * Debian builds mbedTLS with MBEDTLS_THREADING_C so the DRBG carries its
 * own mutex, but nothing here relies on that.
 *
 * Records. mbedTLS does the handshake; after it, records are sealed and
 * opened with libcrypto's AEADs (20x mbedTLS 2.28's AES-GCM speed here)
 * and the mbedTLS session state is freed (see http_tls.c). Cipher suites:
 * ECDHE with AES-GCM or ChaCha20-Poly1305, TLS 1.2 only (mbedTLS 2.28 has
 * no TLS 1.3).
 *
 * Buffers. Fed ciphertext is copied once into a per-session input buffer
 * (grown by doubling up to its bound, compacted only when needed, reused
 * for the session's life). Records are sealed straight from the caller's
 * plaintext into one output buffer, sized once per write, that take_output
 * hands over whole; records are opened straight into the caller's read
 * buffer when the whole record fits.
 *
 * Files. http_tls.c is the transport (contexts, sessions, handshake,
 * records); http_tls_cert.c makes and loads certificates and keys and
 * computes fingerprints (its private header http_tls_cert.h says more).
 */
#ifndef HTTP_TLS_H
#define HTTP_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct http_tls;
struct http_tls_session;

/* A server context from PEM files (the certificate file may hold a chain,
 * leaf first; the key may be EC or RSA). If both files are missing and
 * `create` is set, first makes an EC P-256 key (written mode 0600, never
 * over an existing file) and a self-signed certificate for `cn` valid from
 * yesterday for 10 years (written atomically). If only the certificate is
 * missing, `create` makes one for the existing key. `cn` NULL means
 * "localhost". Blocking: call at startup or from a thread-pool job.
 * Returns 0, or CORE_ECERT (unreadable certificate or key, or the key does
 * not match the certificate), CORE_ECONFIG (bad `cn`), CORE_ETLS (mbedTLS
 * setup failed), or a negative errno (-ENOENT when a file is missing and
 * cannot be created, -EEXIST when another process created the key first). */
int http_tls_server_new(const char *cert_path, const char *key_path, int create,
                        const char *cn, struct http_tls **out);

/* A client context. `ca_file` NULL: the system CA store
 * (/etc/ssl/certs/ca-certificates.crt), with the session's hostname checked
 * against the certificate (DNS names only: mbedTLS 2.28 does not match IP
 * address SANs). `fingerprint` (SHA-256 of the DER leaf certificate, 64 hex
 * digits of either case, with or without colons) pins the peer instead of CA
 * verification when non-NULL: the handshake passes if and only if the leaf
 * matches, whatever its issuer, name or dates. `verify` 0 disables
 * verification entirely (tests only). Blocking (reads the CA file).
 * Returns 0, CORE_ECONFIG (malformed fingerprint), CORE_ECERT (no usable CA
 * certificate in the file), CORE_ETLS, or a negative errno. */
int http_tls_client_new(const char *ca_file, const char *fingerprint, int verify,
                        struct http_tls **out);

/* Restricts the context to some of its cipher suites, in the given order
 * (the server's preference): OpenSSL names separated by ':', ',' or ' ',
 * from ECDHE-{ECDSA,RSA}-AES128-GCM-SHA256, ECDHE-{ECDSA,RSA}-AES256-GCM-SHA384
 * and ECDHE-{ECDSA,RSA}-CHACHA20-POLY1305 (all six, in that order, by
 * default). Call before the first session. Returns 0 or CORE_ECONFIG
 * (an unknown name, or none at all; the context is then unchanged). */
int http_tls_set_ciphers(struct http_tls *tls, const char *list);

/* After the handshake, records are sealed and opened with libcrypto (about
 * 20 times faster than mbedTLS 2.28's AES-GCM) and the mbedTLS session
 * state is freed. On by default; off keeps mbedTLS's record layer, which
 * tests use to check one against the other. Call before the first session. */
void http_tls_set_record_offload(struct http_tls *tls, int on);

/* "aa:bb:..." SHA-256 fingerprint of a server context's certificate: 32
 * lowercase hex pairs joined by ':' (95 characters), as PBS prints it.
 * "" for a client context. Valid as long as the context. */
const char *http_tls_fingerprint(const struct http_tls *tls);

/* The creator holds the first reference; every session holds one more. The
 * last unref frees the context. */
void http_tls_ref(struct http_tls *tls);
void http_tls_unref(struct http_tls *tls);

/* A session for one connection; `hostname` is the SNI/verify name (client only,
 * may be NULL, which skips the name check in CA mode). Holds a reference on
 * `tls`. Returns NULL only if mbedTLS cannot allocate its record buffers or
 * rejects the hostname (over 255 bytes). */
struct http_tls_session *http_tls_session_new(struct http_tls *tls, const char *hostname);
void http_tls_session_free(struct http_tls_session *s);

/* Ciphertext from the network, copied; nothing is processed until the next
 * http_tls_read or http_tls_handshake. Returns 0, or CORE_ETOOBIG if more
 * than the session's input bound (64 KiB + one record) would be pending
 * unread (the data is then not taken): a caller that stops calling
 * http_tls_read must also stop reading the socket, and after a pause must
 * call http_tls_read before waiting for the socket again. */
int http_tls_feed(struct http_tls_session *s, const void *data, size_t len);

/* Plaintext out. Drives the handshake first while it is not done. Returns
 * bytes read (> 0), 0 when more ciphertext is needed (the handshake may have
 * produced output: check http_tls_take_output), or CORE_ETLS / CORE_ECERT on
 * failure (sticky: every later call returns it; a fatal alert may be queued
 * in the output), or UV_EOF once the peer's close_notify arrived (also
 * sticky; plaintext before it is returned first). Call it until it returns
 * <= 0 after every feed: one call may stop at a record boundary before
 * `len` is reached. Reading also queues output now and then (alerts), so
 * check http_tls_take_output after reading too. */
ssize_t http_tls_read(struct http_tls_session *s, void *buf, size_t len);

/* Plaintext in: encrypts all of it into the output queue, in records of at
 * most 16 KiB. Before the handshake is done the data is held (copied) and
 * encrypted when it completes. Returns 0, the session's sticky error, or
 * CORE_ETLS (also after http_tls_close_notify). */
int http_tls_write(struct http_tls_session *s, const void *data, size_t len);

/* Drives the handshake (clients call this once to send ClientHello). Returns 1
 * when done (also on every later call), 0 when more input is needed, or
 * CORE_ETLS / CORE_ECERT. */
int http_tls_handshake(struct http_tls_session *s);

/* Large ciphertext outputs go into buffers of `pool` (http_bodypool.h)
 * instead of fresh memory; NULL (the default) for plain allocations. The
 * pool must outlive the session. */
struct http_bodypool;
void http_tls_session_set_pool(struct http_tls_session *s, struct http_bodypool *pool);

/* Hands pending ciphertext to the caller, who releases it after the write
 * completed: with http_bodypool_put(pool, buf, *pool_cap) when *pool_cap is
 * not 0, else with core_free. Returns NULL (and *len 0) if nothing is
 * pending. */
void *http_tls_take_output(struct http_tls_session *s, size_t *len, size_t *pool_cap);

/* Queues a close_notify alert (take it with http_tls_take_output). Later
 * writes fail. A session that has not finished its handshake has nothing to
 * close and queues nothing. Returns 0 or CORE_ETLS. The peer's close_notify
 * shows as UV_EOF from http_tls_read; answering it is the caller's choice. */
int http_tls_close_notify(struct http_tls_session *s);

/* The peer certificate's fingerprint ("aa:bb:...") once the peer sent it
 * (also after a failed verification), or "". Valid as long as the session. */
const char *http_tls_peer_fingerprint(const struct http_tls_session *s);
/* The negotiated suite's OpenSSL name once the handshake is done, or "". */
const char *http_tls_cipher(const struct http_tls_session *s);
/* 1 if the session's records go through libcrypto (see
 * http_tls_set_record_offload), 0 while they go through mbedTLS. */
int http_tls_record_offload(const struct http_tls_session *s);

/* The session's failure as text, or "" if none. A rejected certificate
 * reads "unknown certificate, fingerprint aa:bb:... (reason)"; other
 * failures "TLS error: ...". Valid as long as the session. */
const char *http_tls_error(const struct http_tls_session *s);

#endif
