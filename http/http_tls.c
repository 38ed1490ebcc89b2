/* http_tls.c: the I/O-less TLS transport on mbedTLS 2.28.
 *
 * mbedTLS reads and writes through two BIO callbacks. Ours work on memory:
 * bio_recv copies from the session's input buffer (what http_tls_feed put
 * there) and says WANT_READ when it is drained; bio_send appends to the
 * output buffer that http_tls_take_output hands over. The send side never
 * refuses, so mbedTLS never sees WANT_WRITE and a write always completes.
 *
 * Record offload. mbedTLS 2.28's AES-GCM runs at about 0.3 GB/s on this
 * hardware, libcrypto's at over 6 GB/s, and backups are bulk data. So
 * mbedTLS does the handshake only: it exports the TLS 1.2 key block (RFC
 * 5246 6.3) through its export-keys callback, and once the handshake is
 * over the session seals and opens AEAD records itself with libcrypto
 * (RFC 5288 for AES-GCM, RFC 7905 for ChaCha20-Poly1305) and frees the
 * mbedTLS context with its two record buffers. Records are sealed straight
 * from the caller's plaintext into the output and opened straight into the
 * caller's buffer when it has room. Whenever anything is unexpected (no
 * keys, a suite not in the table, bytes left inside mbedTLS) the session
 * keeps mbedTLS's record layer instead, which is always correct.
 *
 * Certificate and key files (generation, loading, fingerprints) are in
 * http_tls_cert.c; this file only builds contexts from what it loads.
 */
#include "http/http_tls.h"
#include "http/http_tls_cert.h"

#include "core/core_alloc.h"
#include "core/core_buf.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "http/http_bodypool.h"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_internal.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>
#include <openssl/evp.h>

#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

/* Fed-but-unread ciphertext may reach 64 KiB plus one whole record: a
 * caller that reads the socket 64 KiB at a time and drains the session
 * after each feed never keeps more than a partial record between feeds. */
#define TLS_RECORD_MAX (5 + 16384 + 2048) /* TLS 1.2 TLSCiphertext, RFC 5246 6.2.3 */
#define TLS_IN_MAX (64 * 1024 + TLS_RECORD_MAX)
#define TLS_IN_MIN_CAP (16 * 1024)
#define TLS_ERR_LEN 512
#define TLS_TICKET_LIFETIME (12 * 3600)

#define TLS_MAX_PLAIN 16384
#define TLS_TAG_LEN 16

/* TLS alert descriptions (RFC 5246 7.2) this file sends. */
#define ALERT_CLOSE_NOTIFY 0
#define ALERT_UNEXPECTED_MESSAGE 10
#define ALERT_BAD_RECORD_MAC 20
#define ALERT_RECORD_OVERFLOW 22
#define ALERT_DECODE_ERROR 50
#define ALERT_PROTOCOL_VERSION 70
#define ALERT_NO_RENEGOTIATION 100

enum tls_aead { AEAD_AES128_GCM, AEAD_AES256_GCM, AEAD_CHACHA20_POLY1305 };

/* ECDHE with AEAD only, fastest first on this class of hardware (AES-NI):
 * the server picks in this order. Names are OpenSSL's, as PBS's
 * `ciphers-tls-1.2` setting and nginx's `ssl_ciphers` spell them. */
static const struct tls_suite {
  int id;
  const char *name;
  enum tls_aead aead;
} tls_suites[] = {
  {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, "ECDHE-ECDSA-AES128-GCM-SHA256", AEAD_AES128_GCM},
  {MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, "ECDHE-RSA-AES128-GCM-SHA256", AEAD_AES128_GCM},
  {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, "ECDHE-ECDSA-AES256-GCM-SHA384", AEAD_AES256_GCM},
  {MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, "ECDHE-RSA-AES256-GCM-SHA384", AEAD_AES256_GCM},
  {MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, "ECDHE-ECDSA-CHACHA20-POLY1305",
   AEAD_CHACHA20_POLY1305},
  {MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, "ECDHE-RSA-CHACHA20-POLY1305",
   AEAD_CHACHA20_POLY1305},
};
#define TLS_NSUITES (sizeof(tls_suites) / sizeof(tls_suites[0]))

struct http_tls {
  atomic_int refs;
  int is_server;
  int verify;                     /* client: 0 = no verification at all */
  int pinned;                     /* client: `pin` replaces CA verification */
  uint8_t pin[CORE_SHA256_LEN];
  char fingerprint[HTTP_TLS_FP_LEN]; /* server: own leaf; client: "" */
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;  /* shared by all sessions (loop thread) */
  mbedtls_ssl_config conf;
  mbedtls_x509_crt certs;         /* server: own chain; client: CA chain (empty when pinned) */
  mbedtls_pk_context key;         /* server only */
  mbedtls_ssl_ticket_context ticket; /* server only */
  int suites[TLS_NSUITES + 1];    /* zero-terminated; mbedTLS keeps the pointer */
  int offload;                    /* 1: records go through libcrypto after the handshake */
  /* The one field that changes after the context is built: the session
   * whose handshake step is running, so the export-keys callback (which
   * mbedTLS 2.28 only offers per config) knows where the keys belong. */
  _Atomic(struct http_tls_session *) exporting;
};

/* One direction of the offloaded record layer. */
struct tls_dir {
  EVP_CIPHER_CTX *ctx; /* owned; keyed once, re-IV'd per record */
  uint8_t iv[12];      /* GCM: the 4-byte salt; ChaCha20: the 12-byte IV */
  uint64_t seq;        /* the next record's sequence number */
};

enum tls_state {
  TLS_HANDSHAKE, /* handshake in progress; writes are held in `early` */
  TLS_OPEN,      /* application data flows */
  TLS_EOF,       /* the peer's close_notify arrived; reads return UV_EOF */
  TLS_FAILED,    /* `err` is returned by every call */
};

struct http_tls_session {
  struct http_tls *tls;      /* referenced */
  mbedtls_ssl_context ssl;
  enum tls_state state;
  int err;                   /* TLS_FAILED: CORE_ETLS or CORE_ECERT */
  int closed;                /* our close_notify is queued; writes fail */
  /* Input: bytes [in_off, in_off + in_len) of `in` are fed and unread. */
  uint8_t *in;
  size_t in_off, in_len, in_cap;
  /* Output: ciphertext not yet taken; owned until take_output. */
  uint8_t *out;
  size_t out_len, out_cap;
  int out_pooled;              /* `out` is a buffer of `pool` */
  struct http_bodypool *pool;  /* for large outputs, or NULL */
  struct core_buf early;     /* plaintext written before the handshake ended */
  /* Record offload (see the top of the file). */
  int ssl_live;              /* `ssl` is initialised and in use */
  int offload;               /* records are ours; `ssl` has been freed */
  int explicit_nonce;        /* AES-GCM: 8 bytes of nonce ride in each record */
  struct tls_dir wr, rd;
  size_t pt_len;             /* opened in place: plaintext at in + in_off */
  size_t pt_tail;            /* and the tag after it, skipped once it is read */
  int have_keys;
  size_t keylen, ivlen;
  uint8_t kb[2 * 32 + 2 * 12]; /* the key block until the handshake ends */
  const struct tls_suite *suite;
  char peer_fp[HTTP_TLS_FP_LEN];
  char errmsg[TLS_ERR_LEN];
};

/* ---- helpers ------------------------------------------------------------ */

static int context_seed(struct http_tls *t, const char *pers)
{
  mbedtls_entropy_init(&t->entropy);
  mbedtls_ctr_drbg_init(&t->drbg);
  mbedtls_ssl_config_init(&t->conf);
  mbedtls_x509_crt_init(&t->certs);
  mbedtls_pk_init(&t->key);
  mbedtls_ssl_ticket_init(&t->ticket);
  atomic_init(&t->refs, 1);
  if (mbedtls_ctr_drbg_seed(&t->drbg, mbedtls_entropy_func, &t->entropy,
                            (const unsigned char *)pers, strlen(pers)) != 0)
    return CORE_ETLS;
  return 0;
}

static void context_free(struct http_tls *t)
{
  mbedtls_ssl_ticket_free(&t->ticket);
  mbedtls_ssl_config_free(&t->conf);
  mbedtls_pk_free(&t->key);
  mbedtls_x509_crt_free(&t->certs);
  mbedtls_ctr_drbg_free(&t->drbg);
  mbedtls_entropy_free(&t->entropy);
  core_free(t);
}

/* mbedTLS calls this from inside the handshake step that derives keys. The
 * randoms are checked too, so a context misused from two threads at once
 * loses the offload rather than handing keys to the wrong session. */
static int export_keys_cb(void *ctx, const unsigned char *ms, const unsigned char *kb,
                          size_t maclen, size_t keylen, size_t ivlen,
                          const unsigned char client_random[32],
                          const unsigned char server_random[32],
                          mbedtls_tls_prf_types prf)
{
  struct http_tls *t = ctx;
  struct http_tls_session *s = atomic_load_explicit(&t->exporting, memory_order_relaxed);
  if (s == NULL || maclen != 0 || keylen > 32 || ivlen > 12 || s->ssl.handshake == NULL)
    return 0;
  /* By the time keys are derived mbedTLS holds the randoms as
   * server || client (the key-expansion order); accept either order. */
  const unsigned char *r = s->ssl.handshake->randbytes;
  if (!(memcmp(r, server_random, 32) == 0 && memcmp(r + 32, client_random, 32) == 0) &&
      !(memcmp(r, client_random, 32) == 0 && memcmp(r + 32, server_random, 32) == 0))
    return 0;
  memcpy(s->kb, kb, 2 * keylen + 2 * ivlen);
  s->keylen = keylen;
  s->ivlen = ivlen;
  s->have_keys = 1;
  return 0;
}

static int conf_common(struct http_tls *t, int endpoint)
{
  if (mbedtls_ssl_config_defaults(&t->conf, endpoint, MBEDTLS_SSL_TRANSPORT_STREAM,
                                  MBEDTLS_SSL_PRESET_DEFAULT) != 0)
    return CORE_ETLS;
  mbedtls_ssl_conf_rng(&t->conf, mbedtls_ctr_drbg_random, &t->drbg);
  mbedtls_ssl_conf_min_version(&t->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                               MBEDTLS_SSL_MINOR_VERSION_3);
  for (size_t i = 0; i < TLS_NSUITES; i++)
    t->suites[i] = tls_suites[i].id;
  t->suites[TLS_NSUITES] = 0;
  mbedtls_ssl_conf_ciphersuites(&t->conf, t->suites);
  mbedtls_ssl_conf_renegotiation(&t->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
  mbedtls_ssl_conf_export_keys_ext_cb(&t->conf, export_keys_cb, t);
  t->offload = 1;
  return 0;
}

/* ---- contexts ----------------------------------------------------------- */

int http_tls_server_new(const char *cert_path, const char *key_path, int create,
                        const char *cn, struct http_tls **out)
{
  struct http_tls *t = core_new(struct http_tls);
  int rc;

  *out = NULL;
  t->is_server = 1;
  rc = context_seed(t, "cairn tls server");
  if (rc < 0)
    goto fail;
  if (cn == NULL)
    cn = "localhost";

  rc = http_tls__cert_prepare(cert_path, key_path, create, cn, &t->drbg);
  if (rc < 0)
    goto fail;
  rc = http_tls__cert_load(cert_path, key_path, &t->certs, &t->key, t->fingerprint);
  if (rc < 0)
    goto fail;

  rc = conf_common(t, MBEDTLS_SSL_IS_SERVER);
  if (rc < 0)
    goto fail;
  rc = CORE_ETLS;
  if (mbedtls_ssl_conf_own_cert(&t->conf, &t->certs, &t->key) != 0)
    goto fail;
  /* Tickets let reconnecting clients skip the ECDHE and signature work; the
   * keys live in this context, so a reload simply starts new tickets. */
  if (mbedtls_ssl_ticket_setup(&t->ticket, mbedtls_ctr_drbg_random, &t->drbg,
                               MBEDTLS_CIPHER_AES_256_GCM, TLS_TICKET_LIFETIME) != 0)
    goto fail;
  mbedtls_ssl_conf_session_tickets_cb(&t->conf, mbedtls_ssl_ticket_write,
                                      mbedtls_ssl_ticket_parse, &t->ticket);
  *out = t;
  return 0;

fail:
  context_free(t);
  return rc;
}

int http_tls_client_new(const char *ca_file, const char *fingerprint, int verify,
                        struct http_tls **out)
{
  struct http_tls *t = core_new(struct http_tls);
  int rc;

  *out = NULL;
  t->verify = verify;
  rc = context_seed(t, "cairn tls client");
  if (rc < 0)
    goto fail;
  rc = conf_common(t, MBEDTLS_SSL_IS_CLIENT);
  if (rc < 0)
    goto fail;

  if (!verify) {
    mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_NONE);
  } else if (fingerprint != NULL) {
    rc = http_tls__fingerprint_parse(fingerprint, t->pin);
    if (rc < 0)
      goto fail;
    t->pinned = 1;
    /* mbedTLS refuses REQUIRED without a CA chain object; an empty one trusts
     * nothing, and the verify callback decides by the pin alone. */
    mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&t->conf, &t->certs, NULL);
  } else {
    rc = http_tls__ca_load(ca_file, &t->certs);
    if (rc < 0)
      goto fail;
    mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&t->conf, &t->certs, NULL);
  }
  *out = t;
  return 0;

fail:
  context_free(t);
  return rc;
}

int http_tls_set_ciphers(struct http_tls *tls, const char *list)
{
  int ids[TLS_NSUITES + 1];
  size_t n = 0;
  const char *p = list;
  while (*p) {
    size_t len = strcspn(p, ":, ");
    if (len > 0) {
      size_t i;
      for (i = 0; i < TLS_NSUITES; i++)
        if (strlen(tls_suites[i].name) == len && strncasecmp(tls_suites[i].name, p, len) == 0)
          break;
      if (i == TLS_NSUITES)
        return CORE_ECONFIG;
      size_t j;
      for (j = 0; j < n && ids[j] != tls_suites[i].id; j++)
        ;
      if (j == n)
        ids[n++] = tls_suites[i].id;
    }
    p += len;
    if (*p)
      p++;
  }
  if (n == 0)
    return CORE_ECONFIG;
  memcpy(tls->suites, ids, n * sizeof(int));
  tls->suites[n] = 0;
  return 0;
}

void http_tls_set_record_offload(struct http_tls *tls, int on)
{
  tls->offload = on != 0;
}

const char *http_tls_fingerprint(const struct http_tls *tls)
{
  return tls->fingerprint;
}

void http_tls_ref(struct http_tls *tls)
{
  atomic_fetch_add_explicit(&tls->refs, 1, memory_order_relaxed);
}

void http_tls_unref(struct http_tls *tls)
{
  if (tls == NULL)
    return;
  if (atomic_fetch_sub_explicit(&tls->refs, 1, memory_order_acq_rel) == 1)
    context_free(tls);
}

/* ---- sessions ----------------------------------------------------------- */

static void in_consume(struct http_tls_session *s, size_t n)
{
  s->in_off += n;
  s->in_len -= n;
  if (s->in_len == 0)
    s->in_off = 0; /* drained: the next feed starts at the front, no move */
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
  struct http_tls_session *s = ctx;
  if (s->in_len == 0)
    return MBEDTLS_ERR_SSL_WANT_READ;
  size_t n = len < s->in_len ? len : s->in_len;
  memcpy(buf, s->in + s->in_off, n);
  in_consume(s, n);
  return (int)n;
}

static void out_free(struct http_tls_session *s)
{
  if (s->out_pooled)
    http_bodypool_put(s->pool, s->out, s->out_cap);
  else
    core_free(s->out);
  s->out = NULL;
  s->out_len = s->out_cap = 0;
  s->out_pooled = 0;
}

/* Moves the pending output into `p` (cap bytes; pooled or from the heap). */
static void out_move(struct http_tls_session *s, uint8_t *p, size_t cap, int pooled)
{
  size_t len = s->out_len;
  if (len > 0)
    memcpy(p, s->out, len);
  out_free(s);
  s->out = p;
  s->out_len = len;
  s->out_cap = cap;
  s->out_pooled = pooled;
}

/* Large outputs (a chunk download is megabytes of ciphertext at once) take
 * recycled memory from the pool: a fresh buffer per response cost a page
 * fault per 4 KiB, about a sixth of cairnd's CPU in a TLS restore. */
static void out_reserve(struct http_tls_session *s, size_t more)
{
  if (s->out_cap - s->out_len >= more)
    return;
  size_t need = s->out_len + more;
  size_t cap = s->out_cap ? s->out_cap * 2 : 4096;
  if (cap < need)
    cap = need;
  if (s->pool && cap >= HTTP_BODYPOOL_MIN) {
    size_t pcap;
    uint8_t *p = http_bodypool_get(s->pool, cap, &pcap);
    if (p != NULL) {
      out_move(s, p, pcap, 1);
      return;
    }
  }
  if (s->out_pooled) {
    out_move(s, core_malloc(cap), cap, 0); /* no pool memory left: to the heap */
  } else {
    s->out = core_realloc(s->out, cap);
    s->out_cap = cap;
  }
}

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
  struct http_tls_session *s = ctx;
  /* mbedTLS hands over at most one record (< 20 KiB) at a time. */
  out_reserve(s, len);
  memcpy(s->out + s->out_len, buf, len);
  s->out_len += len;
  return (int)len;
}

static void verify_info(uint32_t flags, char *out, size_t size)
{
  char info[512];
  int n = mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags);
  size_t o = 0;
  if (n <= 0) {
    snprintf(out, size, "verification failed");
    return;
  }
  /* One line per flag; join them with "; ". */
  for (int i = 0; i < n && o + 3 < size; i++) {
    if (info[i] == '\n') {
      if (i + 1 < n) {
        out[o++] = ';';
        out[o++] = ' ';
      }
    } else {
      out[o++] = info[i];
    }
  }
  out[o] = '\0';
}

/* Called for every certificate of the chain, root first, leaf (depth 0)
 * last. Records the leaf's fingerprint for messages; when pinned, the pin
 * alone decides, so flags on the rest of the chain are cleared. */
static int verify_cb(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
  struct http_tls_session *s = ctx;
  if (depth == 0)
    http_tls__fingerprint_format(crt->raw.p, crt->raw.len, s->peer_fp);
  if (!s->tls->pinned)
    return 0;
  if (depth > 0) {
    *flags = 0;
    return 0;
  }
  uint8_t md[CORE_SHA256_LEN];
  core_sha256(crt->raw.p, crt->raw.len, md);
  if (core_ct_equal(md, s->tls->pin, sizeof(md)))
    *flags = 0;
  else
    *flags |= MBEDTLS_X509_BADCERT_NOT_TRUSTED;
  return 0;
}

/* A failure reported by mbedTLS (handshake, or records without offload). */
static int session_fail(struct http_tls_session *s, int mbed_rc)
{
  /* Verification flags mean something only where verification ran. */
  uint32_t flags = s->tls->is_server || !s->tls->verify || !s->ssl_live
                       ? 0
                       : mbedtls_ssl_get_verify_result(&s->ssl);
  int cert_failure = mbed_rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED ||
                     mbed_rc == MBEDTLS_ERR_SSL_CA_CHAIN_REQUIRED ||
                     (flags != 0 && flags != (uint32_t)-1);
  if (cert_failure) {
    char why[256];
    if (s->tls->pinned && flags != (uint32_t)-1 && (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED))
      snprintf(why, sizeof(why), "does not match the pinned fingerprint");
    else if (flags != 0 && flags != (uint32_t)-1)
      verify_info(flags, why, sizeof(why));
    else
      snprintf(why, sizeof(why), "verification failed");
    snprintf(s->errmsg, sizeof(s->errmsg), "unknown certificate, fingerprint %s (%s)",
             s->peer_fp[0] ? s->peer_fp : "unknown", why);
    s->err = CORE_ECERT;
  } else {
    char text[160];
    mbedtls_strerror(mbed_rc, text, sizeof(text));
    snprintf(s->errmsg, sizeof(s->errmsg), "TLS error: %s (-0x%04x)", text,
             (unsigned)-mbed_rc);
    s->err = CORE_ETLS;
  }
  s->state = TLS_FAILED;
  return s->err;
}

struct http_tls_session *http_tls_session_new(struct http_tls *tls, const char *hostname)
{
  struct http_tls_session *s = core_new(struct http_tls_session);
  s->tls = tls;
  http_tls_ref(tls);
  s->state = TLS_HANDSHAKE;
  core_buf_init(&s->early, SIZE_MAX / 2);
  mbedtls_ssl_init(&s->ssl);
  s->ssl_live = 1;
  if (mbedtls_ssl_setup(&s->ssl, &tls->conf) != 0)
    goto fail;
  mbedtls_ssl_set_bio(&s->ssl, s, bio_send, bio_recv, NULL);
  if (!tls->is_server) {
    if (hostname != NULL && mbedtls_ssl_set_hostname(&s->ssl, hostname) != 0)
      goto fail;
    if (tls->verify)
      mbedtls_ssl_set_verify(&s->ssl, verify_cb, s);
  }
  return s;

fail:
  http_tls_session_free(s);
  return NULL;
}

void http_tls_session_free(struct http_tls_session *s)
{
  if (s == NULL)
    return;
  if (s->ssl_live)
    mbedtls_ssl_free(&s->ssl);
  EVP_CIPHER_CTX_free(s->wr.ctx);
  EVP_CIPHER_CTX_free(s->rd.ctx);
  mbedtls_platform_zeroize(s->kb, sizeof(s->kb));
  core_free(s->in);
  out_free(s);
  core_buf_free(&s->early);
  http_tls_unref(s->tls);
  core_free(s);
}

int http_tls_feed(struct http_tls_session *s, const void *data, size_t len)
{
  if (len == 0)
    return 0;
  if (len > TLS_IN_MAX - s->in_len)
    return CORE_ETOOBIG;
  if (s->in_off + s->in_len + len > s->in_cap) {
    if (s->in_len + len <= s->in_cap) {
      /* Room enough once the unread tail (usually under a record) moves
       * to the front. */
      memmove(s->in, s->in + s->in_off, s->in_len);
    } else {
      size_t cap = s->in_cap ? s->in_cap * 2 : TLS_IN_MIN_CAP;
      while (cap < s->in_len + len)
        cap *= 2;
      if (cap > TLS_IN_MAX)
        cap = TLS_IN_MAX;
      uint8_t *in = core_malloc(cap);
      if (s->in_len)
        memcpy(in, s->in + s->in_off, s->in_len);
      core_free(s->in);
      s->in = in;
      s->in_cap = cap;
    }
    s->in_off = 0;
  }
  memcpy(s->in + s->in_off + s->in_len, data, len);
  s->in_len += len;
  return 0;
}

/* ---- the offloaded record layer ----------------------------------------- */

static uint64_t load_be64(const unsigned char *p)
{
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

static void store_be64(uint8_t *p, uint64_t v)
{
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}

/* The per-record nonce: AES-GCM is salt || explicit part (we send the
 * sequence number, as everyone does); ChaCha20 is IV XOR sequence. */
static void record_nonce(const struct http_tls_session *s, const struct tls_dir *d,
                         const uint8_t *explicit_part, uint8_t nonce[12])
{
  if (s->explicit_nonce) {
    memcpy(nonce, d->iv, 4);
    memcpy(nonce + 4, explicit_part, 8);
  } else {
    uint8_t seq[8];
    store_be64(seq, d->seq);
    memcpy(nonce, d->iv, 12);
    for (int i = 0; i < 8; i++)
      nonce[4 + i] ^= seq[i];
  }
}

static void record_aad(uint64_t seq, uint8_t type, size_t len, uint8_t aad[13])
{
  store_be64(aad, seq);
  aad[8] = type;
  aad[9] = 3;
  aad[10] = 3;
  aad[11] = (uint8_t)(len >> 8);
  aad[12] = (uint8_t)len;
}

/* Seals one record of `n` <= 16384 bytes at `out`, which has room for
 * 5 + 8 + n + 16 bytes. Returns the record's length or CORE_ETLS. */
static int record_seal(struct http_tls_session *s, uint8_t type, const uint8_t *pt, size_t n,
                       uint8_t *out)
{
  struct tls_dir *d = &s->wr;
  size_t ex = s->explicit_nonce ? 8 : 0;
  size_t clen = ex + n + TLS_TAG_LEN;
  uint8_t nonce[12], aad[13], seq[8];
  int l;

  if (d->seq == UINT64_MAX)
    return CORE_ETLS;
  store_be64(seq, d->seq);
  record_nonce(s, d, seq, nonce);
  record_aad(d->seq, type, n, aad);
  out[0] = type;
  out[1] = 3;
  out[2] = 3;
  out[3] = (uint8_t)(clen >> 8);
  out[4] = (uint8_t)clen;
  if (ex)
    memcpy(out + 5, seq, 8);
  uint8_t *ct = out + 5 + ex;
  if (EVP_EncryptInit_ex(d->ctx, NULL, NULL, NULL, nonce) != 1 ||
      EVP_EncryptUpdate(d->ctx, NULL, &l, aad, sizeof(aad)) != 1 ||
      (n > 0 && EVP_EncryptUpdate(d->ctx, ct, &l, pt, (int)n) != 1) ||
      EVP_EncryptFinal_ex(d->ctx, ct + n, &l) != 1 ||
      EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_AEAD_GET_TAG, TLS_TAG_LEN, ct + n) != 1)
    return CORE_ETLS;
  d->seq++;
  return (int)(5 + clen);
}

/* Opens the record whose body (after the 5-byte header) is `body`, `blen`
 * bytes, writing the plaintext to `out` (which may be the ciphertext's own
 * place). Returns the plaintext length, or -1 if it does not authenticate;
 * `out` must then not be used. */
static int record_open(struct http_tls_session *s, uint8_t type, const uint8_t *body,
                       size_t blen, uint8_t *out)
{
  struct tls_dir *d = &s->rd;
  size_t ex = s->explicit_nonce ? 8 : 0;
  size_t n = blen - ex - TLS_TAG_LEN;
  const uint8_t *ct = body + ex;
  uint8_t nonce[12], aad[13], tag[TLS_TAG_LEN];
  int l;

  if (d->seq == UINT64_MAX)
    return -1;
  memcpy(tag, ct + n, TLS_TAG_LEN);
  record_nonce(s, d, body, nonce);
  record_aad(d->seq, type, n, aad);
  if (EVP_DecryptInit_ex(d->ctx, NULL, NULL, NULL, nonce) != 1 ||
      EVP_DecryptUpdate(d->ctx, NULL, &l, aad, sizeof(aad)) != 1 ||
      (n > 0 && EVP_DecryptUpdate(d->ctx, out, &l, ct, (int)n) != 1) ||
      EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_AEAD_SET_TAG, TLS_TAG_LEN, tag) != 1 ||
      EVP_DecryptFinal_ex(d->ctx, out + n, &l) != 1)
    return -1;
  d->seq++;
  return (int)n;
}

static int offload_alert(struct http_tls_session *s, uint8_t level, uint8_t desc)
{
  uint8_t body[2] = {level, desc};
  out_reserve(s, 5 + 8 + sizeof(body) + TLS_TAG_LEN);
  int n = record_seal(s, 21, body, sizeof(body), s->out + s->out_len);
  if (n < 0)
    return n;
  s->out_len += (size_t)n;
  return 0;
}

/* A failure of the offloaded record layer: queue a fatal alert (desc >= 0),
 * make the error sticky, and still return plaintext already read. */
static ssize_t offload_fail(struct http_tls_session *s, size_t got, int desc, const char *why)
{
  if (desc >= 0)
    offload_alert(s, 2, (uint8_t)desc);
  snprintf(s->errmsg, sizeof(s->errmsg), "TLS error: %s", why);
  s->err = CORE_ETLS;
  s->state = TLS_FAILED;
  return got > 0 ? (ssize_t)got : CORE_ETLS;
}

static int offload_write(struct http_tls_session *s, const uint8_t *data, size_t len)
{
  size_t per = 5 + (s->explicit_nonce ? 8 : 0) + TLS_TAG_LEN;
  out_reserve(s, len + (len / TLS_MAX_PLAIN + 1) * per);
  while (len > 0) {
    size_t n = len < TLS_MAX_PLAIN ? len : TLS_MAX_PLAIN;
    int w = record_seal(s, 23, data, n, s->out + s->out_len);
    if (w < 0)
      return (int)offload_fail(s, 0, -1, "cannot seal a record");
    s->out_len += (size_t)w;
    data += n;
    len -= n;
  }
  return 0;
}

/* Fills `buf` with as many whole records' plaintext as fit, opening each
 * straight into `buf`; a record larger than the room left is opened in
 * place in the input buffer and handed out from there over several calls. */
static ssize_t offload_read(struct http_tls_session *s, uint8_t *buf, size_t len)
{
  size_t ex = s->explicit_nonce ? 8 : 0;
  size_t overhead = ex + TLS_TAG_LEN;
  size_t got = 0;

  while (got < len) {
    if (s->pt_len > 0) {
      size_t k = s->pt_len < len - got ? s->pt_len : len - got;
      memcpy(buf + got, s->in + s->in_off, k);
      in_consume(s, k);
      s->pt_len -= k;
      got += k;
      if (s->pt_len == 0)
        in_consume(s, s->pt_tail);
      continue;
    }
    if (s->in_len < 5)
      break;
    uint8_t *h = s->in + s->in_off;
    uint8_t type = h[0];
    size_t blen = (size_t)h[3] << 8 | h[4];
    if (h[1] != 3 || h[2] != 3)
      return offload_fail(s, got, ALERT_PROTOCOL_VERSION, "bad record version");
    if (blen < overhead)
      return offload_fail(s, got, ALERT_DECODE_ERROR, "short record");
    if (blen > TLS_MAX_PLAIN + overhead)
      return offload_fail(s, got, ALERT_RECORD_OVERFLOW, "record too long");
    if (s->in_len < 5 + blen)
      break;
    size_t n = blen - overhead;
    if (type == 23 && n <= len - got) {
      if (record_open(s, type, h + 5, blen, buf + got) < 0)
        return offload_fail(s, got, ALERT_BAD_RECORD_MAC, "bad record MAC");
      in_consume(s, 5 + blen);
      got += n;
      continue;
    }
    if (type == 23 && got > 0)
      break; /* hand over what we have; open this one on the next call */
    uint8_t *p = h + 5 + ex;
    if (record_open(s, type, h + 5, blen, p) < 0)
      return offload_fail(s, got, ALERT_BAD_RECORD_MAC, "bad record MAC");
    if (type == 23) {
      in_consume(s, 5 + ex);
      s->pt_len = n;
      s->pt_tail = TLS_TAG_LEN;
      continue;
    }
    /* `p` stays readable: nothing is fed while this runs. */
    in_consume(s, 5 + blen);
    if (type == 21) {
      if (n != 2)
        return offload_fail(s, got, ALERT_DECODE_ERROR, "bad alert");
      if (p[1] == ALERT_CLOSE_NOTIFY) {
        s->state = TLS_EOF;
        return got > 0 ? (ssize_t)got : UV_EOF;
      }
      if (p[0] != 1) {
        char why[64];
        snprintf(why, sizeof(why), "peer sent fatal alert %u", p[1]);
        return offload_fail(s, got, -1, why);
      }
      continue; /* warnings carry nothing we act on */
    }
    if (type == 22) {
      /* Renegotiation is off. A client ignores HelloRequest (RFC 5246
       * 7.4.1.1); a server refuses a new ClientHello with a warning. */
      if (s->tls->is_server && offload_alert(s, 1, ALERT_NO_RENEGOTIATION) < 0)
        return offload_fail(s, got, -1, "cannot seal a record");
      continue;
    }
    return offload_fail(s, got, ALERT_UNEXPECTED_MESSAGE, "unexpected record type");
  }
  return (ssize_t)got;
}

/* At the end of the handshake: take the records over from mbedTLS if the
 * keys arrived, the suite is ours and mbedTLS holds no bytes of its own. */
static void offload_start(struct http_tls_session *s)
{
  const EVP_CIPHER *cipher = NULL;
  size_t keylen = 0, ivlen = 0;

  if (!s->tls->offload || !s->have_keys || s->suite == NULL)
    goto out;
  switch (s->suite->aead) {
  case AEAD_AES128_GCM:
    cipher = EVP_aes_128_gcm(), keylen = 16, ivlen = 4;
    break;
  case AEAD_AES256_GCM:
    cipher = EVP_aes_256_gcm(), keylen = 32, ivlen = 4;
    break;
  case AEAD_CHACHA20_POLY1305:
    cipher = EVP_chacha20_poly1305(), keylen = 32, ivlen = 12;
    break;
  }
  if (cipher == NULL || keylen != s->keylen || ivlen != s->ivlen)
    goto out;
  if (s->ssl.in_left != 0 || s->ssl.out_left != 0 || mbedtls_ssl_check_pending(&s->ssl) ||
      mbedtls_ssl_get_bytes_avail(&s->ssl) != 0)
    goto out;

  /* Key block: client key, server key, client IV, server IV. */
  const uint8_t *ckey = s->kb, *skey = s->kb + keylen;
  const uint8_t *civ = s->kb + 2 * keylen, *siv = civ + ivlen;
  const uint8_t *wkey = s->tls->is_server ? skey : ckey;
  const uint8_t *rkey = s->tls->is_server ? ckey : skey;
  s->wr.ctx = EVP_CIPHER_CTX_new();
  s->rd.ctx = EVP_CIPHER_CTX_new();
  if (s->wr.ctx == NULL || s->rd.ctx == NULL ||
      EVP_EncryptInit_ex(s->wr.ctx, cipher, NULL, wkey, NULL) != 1 ||
      EVP_DecryptInit_ex(s->rd.ctx, cipher, NULL, rkey, NULL) != 1) {
    EVP_CIPHER_CTX_free(s->wr.ctx);
    EVP_CIPHER_CTX_free(s->rd.ctx);
    s->wr.ctx = s->rd.ctx = NULL;
    goto out;
  }
  memcpy(s->wr.iv, s->tls->is_server ? siv : civ, ivlen);
  memcpy(s->rd.iv, s->tls->is_server ? civ : siv, ivlen);
  /* Each side's Finished used sequence number 0 of the new keys; take the
   * counters from mbedTLS rather than assume it. */
  s->wr.seq = load_be64(s->ssl.cur_out_ctr);
  s->rd.seq = load_be64(s->ssl.in_ctr);
  s->explicit_nonce = s->suite->aead != AEAD_CHACHA20_POLY1305;
  s->offload = 1;
  mbedtls_ssl_free(&s->ssl);
  s->ssl_live = 0;
out:
  mbedtls_platform_zeroize(s->kb, sizeof(s->kb));
  s->have_keys = 0;
}

/* ---- the session API ---------------------------------------------------- */

/* Encrypts `len` bytes in max-size records straight into the output. The
 * output is sized once for the whole write, so 4 MiB costs one allocation. */
static int write_records(struct http_tls_session *s, const uint8_t *data, size_t len)
{
  if (s->offload)
    return offload_write(s, data, len);
  int payload = mbedtls_ssl_get_max_out_record_payload(&s->ssl);
  int expansion = mbedtls_ssl_get_record_expansion(&s->ssl);
  if (payload <= 0)
    payload = MBEDTLS_SSL_OUT_CONTENT_LEN;
  if (expansion < 0)
    expansion = 256;
  out_reserve(s, len + (len / (size_t)payload + 1) * (size_t)expansion);
  while (len > 0) {
    int n = mbedtls_ssl_write(&s->ssl, data, len);
    if (n < 0)
      return session_fail(s, n);
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

static void handshake_done(struct http_tls_session *s)
{
#if defined(MBEDTLS_SSL_KEEP_PEER_CERTIFICATE)
  if (s->peer_fp[0] == '\0') {
    const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&s->ssl);
    if (peer != NULL && peer->raw.len > 0)
      http_tls__fingerprint_format(peer->raw.p, peer->raw.len, s->peer_fp);
  }
#endif
  int id = mbedtls_ssl_get_ciphersuite_id(mbedtls_ssl_get_ciphersuite(&s->ssl));
  for (size_t i = 0; i < TLS_NSUITES; i++)
    if (tls_suites[i].id == id)
      s->suite = &tls_suites[i];
  offload_start(s);
}

int http_tls_handshake(struct http_tls_session *s)
{
  if (s->state == TLS_FAILED)
    return s->err;
  if (s->state != TLS_HANDSHAKE)
    return 1;
  atomic_store_explicit(&s->tls->exporting, s, memory_order_relaxed);
  int rc = mbedtls_ssl_handshake(&s->ssl);
  atomic_store_explicit(&s->tls->exporting, NULL, memory_order_relaxed);
  if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
    return 0;
  if (rc != 0)
    return session_fail(s, rc);
  s->state = TLS_OPEN;
  handshake_done(s);
  if (s->early.len > 0) {
    rc = write_records(s, (const uint8_t *)s->early.base, s->early.len);
    core_buf_free(&s->early);
    if (rc < 0)
      return rc;
  }
  return 1;
}

ssize_t http_tls_read(struct http_tls_session *s, void *buf, size_t len)
{
  if (s->state == TLS_FAILED)
    return s->err;
  if (s->state == TLS_EOF)
    return UV_EOF;
  if (s->state == TLS_HANDSHAKE) {
    int rc = http_tls_handshake(s);
    if (rc <= 0)
      return rc;
  }
  if (len == 0)
    return 0;
  if (len > INT_MAX)
    len = INT_MAX;
  if (s->offload)
    return offload_read(s, buf, len);
  for (;;) {
    size_t before = s->in_len;
    int n = mbedtls_ssl_read(&s->ssl, buf, len);
    if (n > 0)
      return n;
    if (n == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
      s->state = TLS_EOF;
      return UV_EOF;
    }
    if (n == 0 || n == MBEDTLS_ERR_SSL_WANT_READ || n == MBEDTLS_ERR_SSL_WANT_WRITE) {
      /* mbedTLS also says WANT_READ after a record that carried no data
       * (a refused renegotiation); go on while whole records are waiting,
       * which always consumes input, so this ends. */
      if (s->in_len > 0 && s->in_len < before)
        continue;
      return 0;
    }
    return session_fail(s, n);
  }
}

int http_tls_write(struct http_tls_session *s, const void *data, size_t len)
{
  if (s->state == TLS_FAILED)
    return s->err;
  if (s->closed)
    return CORE_ETLS;
  if (len == 0)
    return 0;
  if (s->state == TLS_HANDSHAKE)
    return core_buf_append(&s->early, data, len) == 0 ? 0 : CORE_ETLS;
  return write_records(s, data, len);
}

void http_tls_session_set_pool(struct http_tls_session *s, struct http_bodypool *pool)
{
  s->pool = pool;
}

void *http_tls_take_output(struct http_tls_session *s, size_t *len, size_t *pool_cap)
{
  void *p = s->out_len ? s->out : NULL;
  *len = s->out_len;
  *pool_cap = 0;
  if (p == NULL)
    return NULL;
  if (s->out_pooled)
    *pool_cap = s->out_cap;
  s->out = NULL;
  s->out_len = s->out_cap = 0;
  s->out_pooled = 0;
  return p;
}

int http_tls_close_notify(struct http_tls_session *s)
{
  if (s->closed)
    return 0;
  s->closed = 1;
  if (s->state != TLS_OPEN && s->state != TLS_EOF)
    return 0;
  if (s->offload)
    return offload_alert(s, 1, ALERT_CLOSE_NOTIFY) == 0 ? 0 : CORE_ETLS;
  return mbedtls_ssl_close_notify(&s->ssl) == 0 ? 0 : CORE_ETLS;
}

const char *http_tls_peer_fingerprint(const struct http_tls_session *s)
{
  return s->peer_fp;
}

const char *http_tls_error(const struct http_tls_session *s)
{
  return s->errmsg;
}

const char *http_tls_cipher(const struct http_tls_session *s)
{
  return s->suite ? s->suite->name : "";
}

int http_tls_record_offload(const struct http_tls_session *s)
{
  return s->offload;
}
