/* test_tls.c: the I/O-less TLS transport, with a client and a server session
 * wired back to back in memory. */
#include "unit.h"

#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "http/http_bodypool.h"
#include "http/http_tls.h"
#include "http/http_tls_cert.h"

#include <ctype.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/ssl.h>
#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <uv.h>

#define MIB (1024 * 1024)
#define FEED_CHUNK (64 * 1024)

/* Plaintext a session received, and how its reads ended. */
struct sink {
  uint8_t *buf;
  size_t len, cap;
  int err;      /* last negative read result: UV_EOF, CORE_ETLS, CORE_ECERT */
  size_t chunk; /* read size; 0 means 16 KiB */
};

static void sink_free(struct sink *k)
{
  core_free(k->buf);
}

static void drain(struct http_tls_session *s, struct sink *k)
{
  uint8_t buf[16384];
  size_t chunk = k->chunk && k->chunk < sizeof(buf) ? k->chunk : sizeof(buf);
  for (;;) {
    ssize_t n = http_tls_read(s, buf, chunk);
    if (n <= 0) {
      if (n < 0)
        k->err = (int)n;
      return;
    }
    if (k->len + (size_t)n > k->cap) {
      k->cap = k->cap ? k->cap * 2 : 65536;
      while (k->cap < k->len + (size_t)n)
        k->cap *= 2;
      k->buf = core_realloc(k->buf, k->cap);
    }
    memcpy(k->buf + k->len, buf, (size_t)n);
    k->len += (size_t)n;
  }
}

/* Moves all ciphertext `from` has queued into `to`, at most one socket read
 * (64 KiB) at a time, draining `to` after each feed as the connection code
 * does. Returns the bytes moved. */
static size_t pump(struct http_tls_session *from, struct http_tls_session *to, struct sink *k)
{
  size_t len, pool_cap;
  uint8_t *out = http_tls_take_output(from, &len, &pool_cap);
  for (size_t off = 0; off < len; off += FEED_CHUNK) {
    size_t n = len - off < FEED_CHUNK ? len - off : FEED_CHUNK;
    ASSERT_OK(http_tls_feed(to, out + off, n));
    drain(to, k);
  }
  core_free(out);
  return len;
}

/* Pumps both ways until neither side has anything left to say. */
static void run(struct http_tls_session *c, struct sink *ck, struct http_tls_session *s,
                struct sink *sk)
{
  for (int i = 0; i < 10000; i++) {
    size_t moved = pump(c, s, sk);
    moved += pump(s, c, ck);
    if (moved == 0)
      return;
  }
  ASSERT(!"pump did not settle");
}

static char *tmp_path(const char *name)
{
  return core_asprintf("%s/%s", unit_tmpdir(), name);
}

static void pattern(uint8_t *p, size_t len, unsigned seed)
{
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < len; i++) {
    x = x * 1103515245u + 12345u;
    p[i] = (uint8_t)(x >> 16);
  }
}

static struct http_tls *make_server(char **cert_out, char **key_out)
{
  char *cert = tmp_path("cert.pem"), *key = tmp_path("key.pem");
  struct http_tls *tls;
  ASSERT_OK(http_tls_server_new(cert, key, 1, "localhost", &tls));
  if (cert_out)
    *cert_out = cert;
  else
    core_free(cert);
  if (key_out)
    *key_out = key;
  else
    core_free(key);
  return tls;
}

static void check_fingerprint_format(const char *fp)
{
  ASSERT_EQ(strlen(fp), 95);
  for (size_t i = 0; i < 95; i++) {
    if (i % 3 == 2)
      ASSERT(fp[i] == ':');
    else
      ASSERT(isxdigit((unsigned char)fp[i]) && !isupper((unsigned char)fp[i]));
  }
}

/* A connected pair; `ctls` decides how the client verifies. */
static void connect_pair(struct http_tls *stls, struct http_tls *ctls, const char *host,
                         struct http_tls_session **c, struct sink *ck,
                         struct http_tls_session **s, struct sink *sk)
{
  *c = http_tls_session_new(ctls, host);
  *s = http_tls_session_new(stls, NULL);
  ASSERT(*c != NULL && *s != NULL);
  ASSERT_EQ(http_tls_handshake(*c), 0);
  run(*c, ck, *s, sk);
}

UNIT_TEST(create_and_reload)
{
  char *cert, *key;
  struct http_tls *tls = make_server(&cert, &key);
  char fp[96];
  snprintf(fp, sizeof(fp), "%s", http_tls_fingerprint(tls));
  check_fingerprint_format(fp);

  struct stat st;
  ASSERT_OK(stat(key, &st));
  ASSERT_EQ(st.st_mode & 0777, 0600);
  ASSERT_OK(stat(cert, &st));
  ASSERT(S_ISREG(st.st_mode) && st.st_size > 0);

  /* Only the two files: no temporary left behind. */
  DIR *d = opendir(unit_tmpdir());
  int files = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    files += e->d_name[0] != '.';
  closedir(d);
  ASSERT_EQ(files, 2);

  /* Reload: same files, same fingerprint, with or without create. */
  struct http_tls *again;
  ASSERT_OK(http_tls_server_new(cert, key, 0, NULL, &again));
  ASSERT_STR_EQ(http_tls_fingerprint(again), fp);
  http_tls_unref(again);
  ASSERT_OK(http_tls_server_new(cert, key, 1, "localhost", &again));
  ASSERT_STR_EQ(http_tls_fingerprint(again), fp);
  http_tls_unref(again);

  /* A lost certificate is remade for the key that is there. */
  ASSERT_OK(unlink(cert));
  ASSERT_EQ(http_tls_server_new(cert, key, 0, NULL, &again), -ENOENT);
  ASSERT_OK(http_tls_server_new(cert, key, 1, "backup.example.com", &again));
  ASSERT(strcmp(http_tls_fingerprint(again), fp) != 0);
  http_tls_unref(again);

  http_tls_unref(tls);
  core_free(cert);
  core_free(key);
}

UNIT_TEST(missing_files)
{
  char *cert = tmp_path("c.pem"), *key = tmp_path("k.pem");
  struct http_tls *tls = (struct http_tls *)1;
  ASSERT_EQ(http_tls_server_new(cert, key, 0, NULL, &tls), -ENOENT);
  ASSERT(tls == NULL);
  /* A bad common name makes nothing. */
  ASSERT_EQ(http_tls_server_new(cert, key, 1, "", &tls), CORE_ECONFIG);
  ASSERT_EQ(http_tls_server_new(cert, key, 1, "a\nb", &tls), CORE_ECONFIG);
  struct stat st;
  ASSERT(stat(key, &st) != 0 && stat(cert, &st) != 0);

  /* A certificate whose key is gone is never paired with a new key. */
  char *cert2 = tmp_path("c2.pem"), *key2 = tmp_path("k2.pem");
  ASSERT_OK(http_tls_server_new(cert2, key2, 1, "x", &tls));
  http_tls_unref(tls);
  ASSERT_OK(unlink(key2));
  ASSERT_EQ(http_tls_server_new(cert2, key2, 1, "x", &tls), -ENOENT);

  /* A key that does not belong to the certificate. */
  ASSERT_OK(http_tls_server_new(cert, key, 1, "y", &tls));
  http_tls_unref(tls);
  ASSERT_EQ(http_tls_server_new(cert2, key, 0, NULL, &tls), CORE_ECERT);

  /* Garbage in the files. */
  FILE *f = fopen(cert2, "w");
  fputs("not a certificate\n", f);
  fclose(f);
  ASSERT_EQ(http_tls_server_new(cert2, key, 0, NULL, &tls), CORE_ECERT);
  core_free(cert);
  core_free(key);
  core_free(cert2);
  core_free(key2);
}

/* The certificate side on its own (http_tls_cert.h): files made with any
 * DRBG load into what a server context holds, fingerprints round-trip. */
UNIT_TEST(cert_files_and_fingerprints)
{
  char *cert = tmp_path("c.pem"), *key = tmp_path("k.pem"), *junk = tmp_path("junk.pem");
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
  mbedtls_entropy_init(&entropy);
  mbedtls_ctr_drbg_init(&drbg);
  ASSERT_EQ(mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, NULL, 0), 0);

  ASSERT_EQ(http_tls__cert_prepare(cert, key, 0, "localhost", &drbg), -ENOENT);
  ASSERT_EQ(http_tls__cert_prepare(cert, key, 1, "", &drbg), CORE_ECONFIG);
  ASSERT_OK(http_tls__cert_prepare(cert, key, 1, "localhost", &drbg));
  ASSERT_OK(http_tls__cert_prepare(cert, key, 0, "localhost", &drbg)); /* both there now */

  mbedtls_x509_crt crt;
  mbedtls_pk_context pk;
  char fp[HTTP_TLS_FP_LEN];
  mbedtls_x509_crt_init(&crt);
  mbedtls_pk_init(&pk);
  ASSERT_OK(http_tls__cert_load(cert, key, &crt, &pk, fp));
  struct http_tls *tls;
  ASSERT_OK(http_tls_server_new(cert, key, 0, NULL, &tls));
  ASSERT_STR_EQ(fp, http_tls_fingerprint(tls));
  http_tls_unref(tls);

  /* The same fingerprint, parsed back in every accepted spelling. */
  uint8_t md[CORE_SHA256_LEN], parsed[CORE_SHA256_LEN];
  core_sha256(crt.raw.p, crt.raw.len, md);
  char upper[HTTP_TLS_FP_LEN], plain[CORE_SHA256_HEX_LEN + 1];
  size_t n = 0;
  for (size_t i = 0; fp[i]; i++) {
    upper[i] = (char)toupper((unsigned char)fp[i]);
    upper[i + 1] = '\0';
    if (fp[i] != ':')
      plain[n++] = fp[i];
  }
  plain[n] = '\0';
  const char *good[] = {fp, upper, plain};
  for (size_t i = 0; i < 3; i++) {
    memset(parsed, 0, sizeof(parsed));
    ASSERT_OK(http_tls__fingerprint_parse(good[i], parsed));
    ASSERT_MEM_EQ(parsed, md, sizeof(md));
  }
  ASSERT_EQ(http_tls__fingerprint_parse("aa:bb", parsed), CORE_ECONFIG);
  plain[0] = 'g';
  ASSERT_EQ(http_tls__fingerprint_parse(plain, parsed), CORE_ECONFIG);

  /* CA bundles: a missing file, and one without a certificate. */
  FILE *f = fopen(junk, "w");
  fputs("not a certificate\n", f);
  fclose(f);
  mbedtls_x509_crt ca;
  mbedtls_x509_crt_init(&ca);
  char *none = tmp_path("none.pem");
  ASSERT_EQ(http_tls__ca_load(none, &ca), -ENOENT);
  core_free(none);
  ASSERT_EQ(http_tls__ca_load(junk, &ca), CORE_ECERT);
  ASSERT_OK(http_tls__ca_load(cert, &ca));

  mbedtls_x509_crt_free(&ca);
  mbedtls_x509_crt_free(&crt);
  mbedtls_pk_free(&pk);
  mbedtls_ctr_drbg_free(&drbg);
  mbedtls_entropy_free(&entropy);
  core_free(cert);
  core_free(key);
  core_free(junk);
}

UNIT_TEST(pinned_exchange)
{
  struct http_tls *stls = make_server(NULL, NULL), *ctls;
  ASSERT_OK(http_tls_client_new(NULL, http_tls_fingerprint(stls), 1, &ctls));
  ASSERT_STR_EQ(http_tls_fingerprint(ctls), "");

  struct http_tls_session *c = http_tls_session_new(ctls, "localhost");
  struct http_tls_session *s = http_tls_session_new(stls, NULL);
  struct sink ck = {0}, sk = {0};
  uint8_t *up = core_malloc(MIB), *down = core_malloc(MIB);
  pattern(up, MIB, 1);
  pattern(down, MIB, 2);

  /* The client writes before the handshake: held, then sent. */
  ASSERT_EQ(http_tls_handshake(c), 0);
  ASSERT_OK(http_tls_write(c, up, MIB / 2));
  ASSERT_OK(http_tls_write(c, up + MIB / 2, MIB / 2));
  run(c, &ck, s, &sk);
  ASSERT_EQ(http_tls_handshake(c), 1);
  ASSERT_EQ(http_tls_handshake(s), 1);
  ASSERT_EQ(sk.len, MIB);
  ASSERT_MEM_EQ(sk.buf, up, MIB);
  ASSERT_STR_EQ(http_tls_peer_fingerprint(c), http_tls_fingerprint(stls));
  ASSERT_STR_EQ(http_tls_error(c), "");
  ASSERT_STR_EQ(http_tls_peer_fingerprint(s), "");
  ASSERT_STR_EQ(http_tls_cipher(c), "ECDHE-ECDSA-AES128-GCM-SHA256");
  ASSERT_STR_EQ(http_tls_cipher(s), "ECDHE-ECDSA-AES128-GCM-SHA256");
  ASSERT(http_tls_record_offload(c) && http_tls_record_offload(s));

  /* The server answers with one big write after the handshake. */
  ASSERT_OK(http_tls_write(s, down, MIB));
  run(c, &ck, s, &sk);
  ASSERT_EQ(ck.len, MIB);
  ASSERT_MEM_EQ(ck.buf, down, MIB);
  ASSERT_EQ(ck.err, 0);
  ASSERT_EQ(sk.err, 0);

  /* The context outlives its creator's reference while sessions hold it. */
  http_tls_unref(ctls);
  http_tls_unref(stls);
  ASSERT_OK(http_tls_write(c, "ping", 4));
  run(c, &ck, s, &sk);
  ASSERT_EQ(sk.len, MIB + 4);
  http_tls_session_free(c);
  http_tls_session_free(s);
  core_free(up);
  core_free(down);
  sink_free(&ck);
  sink_free(&sk);
}

/* With a pool, the ciphertext comes in one of its buffers, which goes back
 * to it and serves the next large write. */
static void large_write(int pooled)
{
  struct http_bodypool pool;
  http_bodypool_init(&pool, 64 * MIB);
  struct http_tls *stls = make_server(NULL, NULL), *ctls;
  ASSERT_OK(http_tls_client_new(NULL, NULL, 0, &ctls));
  struct http_tls_session *c, *s;
  struct sink ck = {0}, sk = {0};
  connect_pair(stls, ctls, NULL, &c, &ck, &s, &sk);
  if (pooled)
    http_tls_session_set_pool(s, &pool);
  ASSERT_EQ(http_tls_handshake(c), 1);
  /* verify 0 still learns who it talked to. */
  ASSERT_STR_EQ(http_tls_peer_fingerprint(c), http_tls_fingerprint(stls));

  size_t big = 4 * MIB;
  uint8_t *data = core_malloc(big);
  pattern(data, big, 3);
  uint64_t t0 = uv_hrtime();
  ASSERT_OK(http_tls_write(s, data, big));
  uint64_t t1 = uv_hrtime();
  size_t len, pool_cap;
  void *out = http_tls_take_output(s, &len, &pool_cap);
  /* 256 full records, each adding a header, nonce and tag (< 64 bytes). */
  ASSERT(len > big && len < big + (big / 16384 + 1) * 64);
  ASSERT(pooled ? pool_cap >= len : pool_cap == 0);
  size_t out_cap = pool_cap;
  ASSERT_OK(http_tls_feed(c, out, FEED_CHUNK));
  /* A sanity bound only: sanitizers make this slow, quadratic far slower. */
  ASSERT((t1 - t0) / 1000000 < 5000);
  for (size_t off = FEED_CHUNK;; off += FEED_CHUNK) {
    drain(c, &ck);
    if (off >= len)
      break;
    ASSERT_OK(http_tls_feed(c, (uint8_t *)out + off, len - off < FEED_CHUNK ? len - off : FEED_CHUNK));
  }
  ASSERT_EQ(ck.len, big);
  ASSERT_MEM_EQ(ck.buf, data, big);
  ASSERT(http_tls_take_output(s, &len, &pool_cap) == NULL && len == 0);
  if (pooled) {
    http_bodypool_put(&pool, out, out_cap);
    size_t idle = pool.idle;
    ASSERT(idle >= pool_cap);
    ASSERT_OK(http_tls_write(s, data, big));
    out = http_tls_take_output(s, &len, &pool_cap);
    ASSERT(out != NULL && pool_cap >= len);
    ASSERT(pool.idle < idle); /* taken from the pool, not allocated */
    http_bodypool_put(&pool, out, pool_cap);
  } else {
    core_free(out);
  }
  core_free(data);
  http_tls_session_free(c);
  http_tls_session_free(s);
  http_tls_unref(ctls);
  http_tls_unref(stls);
  http_bodypool_free(&pool);
  sink_free(&ck);
  sink_free(&sk);
}

UNIT_TEST(large_write_is_linear) { large_write(0); }
UNIT_TEST(large_write_into_pool) { large_write(1); }

UNIT_TEST(pin_formats)
{
  struct http_tls *stls = make_server(NULL, NULL), *ctls;
  /* Upper case without colons pins the same certificate. */
  char plain[65];
  const char *fp = http_tls_fingerprint(stls);
  size_t n = 0;
  for (const char *p = fp; *p; p++)
    if (*p != ':')
      plain[n++] = (char)toupper((unsigned char)*p);
  plain[n] = '\0';
  ASSERT_OK(http_tls_client_new(NULL, plain, 1, &ctls));
  struct http_tls_session *c, *s;
  struct sink ck = {0}, sk = {0};
  connect_pair(stls, ctls, "whatever.invalid", &c, &ck, &s, &sk);
  ASSERT_EQ(http_tls_handshake(c), 1);
  ASSERT_EQ(ck.err, 0);
  http_tls_session_free(c);
  http_tls_session_free(s);
  http_tls_unref(ctls);

  ASSERT_EQ(http_tls_client_new(NULL, "aa:bb", 1, &ctls), CORE_ECONFIG);
  plain[10] = 'g';
  ASSERT_EQ(http_tls_client_new(NULL, plain, 1, &ctls), CORE_ECONFIG);
  ASSERT_EQ(http_tls_client_new(NULL, "", 1, &ctls), CORE_ECONFIG);
  http_tls_unref(stls);
}

UNIT_TEST(pin_mismatch)
{
  struct http_tls *stls = make_server(NULL, NULL), *ctls;
  ASSERT_OK(http_tls_client_new(NULL, "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:"
                                      "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff",
                                1, &ctls));
  struct http_tls_session *c, *s;
  struct sink ck = {0}, sk = {0};
  connect_pair(stls, ctls, "localhost", &c, &ck, &s, &sk);
  ASSERT_EQ(ck.err, CORE_ECERT);
  ASSERT_EQ(http_tls_handshake(c), CORE_ECERT);
  ASSERT_EQ(http_tls_write(c, "x", 1), CORE_ECERT);
  const char *fp = http_tls_fingerprint(stls);
  ASSERT_STR_EQ(http_tls_peer_fingerprint(c), fp);
  const char *msg = http_tls_error(c);
  ASSERT(strncmp(msg, "unknown certificate, fingerprint ", 33) == 0);
  ASSERT(strstr(msg, fp) != NULL);
  /* The client's fatal alert reached the server. */
  ASSERT_EQ(sk.err, CORE_ETLS);
  ASSERT(strncmp(http_tls_error(s), "TLS error: ", 11) == 0);
  http_tls_session_free(c);
  http_tls_session_free(s);
  http_tls_unref(ctls);
  http_tls_unref(stls);
}

UNIT_TEST(ca_verification)
{
  char *cert;
  struct http_tls *stls = make_server(&cert, NULL), *ctls;
  struct http_tls_session *c, *s;

  /* The self-signed certificate as its own CA, with its SAN names. */
  ASSERT_OK(http_tls_client_new(cert, NULL, 1, &ctls));
  const char *good[] = {"localhost", "127.0.0.1"};
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    struct sink ck = {0}, sk = {0};
    connect_pair(stls, ctls, good[i], &c, &ck, &s, &sk);
    /* mbedTLS 2.28 matches names against dNSName only: the IP fails. */
    if (i == 0) {
      ASSERT_EQ(ck.err, 0);
      ASSERT_EQ(http_tls_handshake(c), 1);
    } else {
      ASSERT_EQ(ck.err, CORE_ECERT);
    }
    http_tls_session_free(c);
    http_tls_session_free(s);
  }
  {
    struct sink ck = {0}, sk = {0};
    connect_pair(stls, ctls, "other.example", &c, &ck, &s, &sk);
    ASSERT_EQ(ck.err, CORE_ECERT);
    ASSERT(strstr(http_tls_error(c), http_tls_fingerprint(stls)) != NULL);
    ASSERT(strstr(http_tls_error(c), "CN") != NULL);
    http_tls_session_free(c);
    http_tls_session_free(s);
  }
  http_tls_unref(ctls);

  /* The system store does not know a fresh self-signed certificate. */
  ASSERT_OK(http_tls_client_new(NULL, NULL, 1, &ctls));
  struct sink ck = {0}, sk = {0};
  connect_pair(stls, ctls, "localhost", &c, &ck, &s, &sk);
  ASSERT_EQ(ck.err, CORE_ECERT);
  ASSERT(strstr(http_tls_error(c), http_tls_fingerprint(stls)) != NULL);
  http_tls_session_free(c);
  http_tls_session_free(s);
  http_tls_unref(ctls);

  char *missing = tmp_path("nope.pem");
  ASSERT_EQ(http_tls_client_new(missing, NULL, 1, &ctls), -ENOENT);
  core_free(missing);
  core_free(cert);
  http_tls_unref(stls);
}

UNIT_TEST(garbage_input)
{
  struct http_tls *stls = make_server(NULL, NULL);
  struct http_tls_session *s = http_tls_session_new(stls, NULL);
  uint8_t junk[4096];
  pattern(junk, sizeof(junk), 9);
  uint8_t buf[256];
  ASSERT_OK(http_tls_feed(s, junk, sizeof(junk)));
  ASSERT_EQ(http_tls_read(s, buf, sizeof(buf)), CORE_ETLS);
  ASSERT_EQ(http_tls_read(s, buf, sizeof(buf)), CORE_ETLS);
  ASSERT(strncmp(http_tls_error(s), "TLS error: ", 11) == 0);
  http_tls_session_free(s);

  /* Plain HTTP to a TLS port. */
  s = http_tls_session_new(stls, NULL);
  const char *get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_OK(http_tls_feed(s, get, strlen(get)));
  ASSERT_EQ(http_tls_read(s, buf, sizeof(buf)), CORE_ETLS);
  http_tls_session_free(s);

  /* Garbage after a good handshake. */
  struct http_tls *ctls;
  ASSERT_OK(http_tls_client_new(NULL, NULL, 0, &ctls));
  struct http_tls_session *c;
  struct sink ck = {0}, sk = {0};
  connect_pair(stls, ctls, NULL, &c, &ck, &s, &sk);
  ASSERT_EQ(http_tls_handshake(s), 1);
  /* A well-formed application-data header with a forged body. */
  junk[0] = 23, junk[1] = 3, junk[2] = 3, junk[3] = 0, junk[4] = 100;
  ASSERT_OK(http_tls_feed(s, junk, 105));
  ASSERT_EQ(http_tls_read(s, buf, sizeof(buf)), CORE_ETLS);
  http_tls_session_free(c);
  http_tls_session_free(s);
  http_tls_unref(ctls);
  http_tls_unref(stls);
}

UNIT_TEST(feed_bound)
{
  struct http_tls *stls = make_server(NULL, NULL);
  struct http_tls_session *s = http_tls_session_new(stls, NULL);
  size_t bound = 64 * 1024 + 5 + 16384 + 2048;
  uint8_t *junk = core_calloc(1, bound + 1);
  ASSERT_EQ(http_tls_feed(s, junk, bound + 1), CORE_ETOOBIG);
  ASSERT_OK(http_tls_feed(s, junk, 64 * 1024));
  ASSERT_EQ(http_tls_feed(s, junk, 64 * 1024), CORE_ETOOBIG);
  ASSERT_OK(http_tls_feed(s, junk, bound - 64 * 1024));
  ASSERT_EQ(http_tls_feed(s, junk, 1), CORE_ETOOBIG);
  http_tls_session_free(s);
  http_tls_unref(stls);
  core_free(junk);
}

UNIT_TEST(close_notify)
{
  struct http_tls *stls = make_server(NULL, NULL), *ctls;
  ASSERT_OK(http_tls_client_new(NULL, http_tls_fingerprint(stls), 1, &ctls));
  struct http_tls_session *c, *s;
  struct sink ck = {0}, sk = {0};
  connect_pair(stls, ctls, "localhost", &c, &ck, &s, &sk);
  ASSERT_OK(http_tls_write(c, "last words", 10));
  ASSERT_OK(http_tls_close_notify(c));
  ASSERT_EQ(http_tls_write(c, "more", 4), CORE_ETLS);
  run(c, &ck, s, &sk);
  ASSERT_EQ(sk.len, 10);
  ASSERT_MEM_EQ(sk.buf, "last words", 10);
  ASSERT_EQ(sk.err, UV_EOF);
  uint8_t buf[16];
  ASSERT_EQ(http_tls_read(s, buf, sizeof(buf)), UV_EOF);
  /* The server answers in kind. */
  ASSERT_OK(http_tls_close_notify(s));
  run(c, &ck, s, &sk);
  ASSERT_EQ(ck.err, UV_EOF);
  http_tls_session_free(c);
  http_tls_session_free(s);
  sink_free(&sk);

  /* Closing before the handshake queues nothing. */
  c = http_tls_session_new(ctls, "localhost");
  ASSERT_OK(http_tls_close_notify(c));
  size_t len, pool_cap;
  ASSERT(http_tls_take_output(c, &len, &pool_cap) == NULL);
  http_tls_session_free(c);
  http_tls_unref(ctls);
  http_tls_unref(stls);
}


/* Sends `len` bytes from `from` and checks they arrive whole at `to`. */
static void exchange(struct http_tls_session *from, struct sink *fk,
                     struct http_tls_session *to, struct sink *tk, size_t len, unsigned seed)
{
  uint8_t *data = core_malloc(len);
  pattern(data, len, seed);
  size_t before = tk->len;
  ASSERT_OK(http_tls_write(from, data, len));
  run(from, fk, to, tk);
  ASSERT_EQ(tk->len - before, len);
  ASSERT_MEM_EQ(tk->buf + before, data, len);
  ASSERT_EQ(tk->err, 0);
  core_free(data);
}

/* libcrypto's records against mbedTLS's, for every AEAD and both
 * directions, with reads that fit whole records and reads that do not. */
UNIT_TEST(record_interop)
{
  static const char *ciphers[] = {"ECDHE-ECDSA-AES128-GCM-SHA256",
                                  "ECDHE-ECDSA-AES256-GCM-SHA384",
                                  "ECDHE-ECDSA-CHACHA20-POLY1305"};
  static const size_t sizes[] = {1, 16383, 16384, 16385, 300001};
  struct http_tls *stls = make_server(NULL, NULL);
  for (size_t ci = 0; ci < 3; ci++) {
    for (int mode = 0; mode < 4; mode++) {
      int soff = mode & 1, coff = (mode >> 1) & 1;
      struct http_tls *ctls, *sctx;
      char *cert = tmp_path("cert.pem"), *key = tmp_path("key.pem");
      ASSERT_OK(http_tls_server_new(cert, key, 0, NULL, &sctx));
      core_free(cert);
      core_free(key);
      http_tls_set_record_offload(sctx, soff);
      ASSERT_OK(http_tls_client_new(NULL, http_tls_fingerprint(stls), 1, &ctls));
      ASSERT_OK(http_tls_set_ciphers(ctls, ciphers[ci]));
      http_tls_set_record_offload(ctls, coff);

      struct http_tls_session *c, *s;
      struct sink ck = {0}, sk = {0};
      ck.chunk = mode == 1 ? 1000 : 0;
      sk.chunk = mode == 2 ? 1000 : 0;
      connect_pair(sctx, ctls, "localhost", &c, &ck, &s, &sk);
      ASSERT_EQ(http_tls_handshake(c), 1);
      ASSERT_STR_EQ(http_tls_cipher(c), ciphers[ci]);
      ASSERT_STR_EQ(http_tls_cipher(s), ciphers[ci]);
      ASSERT_EQ(http_tls_record_offload(c), coff);
      ASSERT_EQ(http_tls_record_offload(s), soff);
      for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        exchange(c, &ck, s, &sk, sizes[i], (unsigned)i);
        exchange(s, &sk, c, &ck, sizes[i], (unsigned)i + 100);
      }
      ASSERT_OK(http_tls_close_notify(s));
      run(c, &ck, s, &sk);
      ASSERT_EQ(ck.err, UV_EOF);
      ASSERT_OK(http_tls_close_notify(c));
      run(c, &ck, s, &sk);
      ASSERT_EQ(sk.err, UV_EOF);
      http_tls_session_free(c);
      http_tls_session_free(s);
      http_tls_unref(ctls);
      http_tls_unref(sctx);
      sink_free(&ck);
      sink_free(&sk);
    }
  }
  http_tls_unref(stls);
}

UNIT_TEST(cipher_names)
{
  struct http_tls *ctls;
  ASSERT_OK(http_tls_client_new(NULL, NULL, 0, &ctls));
  ASSERT_EQ(http_tls_set_ciphers(ctls, "AES128-SHA"), CORE_ECONFIG);
  ASSERT_EQ(http_tls_set_ciphers(ctls, ""), CORE_ECONFIG);
  ASSERT_EQ(http_tls_set_ciphers(ctls, "ECDHE-ECDSA-AES128-GCM-SHA256:RC4"), CORE_ECONFIG);
  ASSERT_OK(http_tls_set_ciphers(ctls, "ecdhe-rsa-chacha20-poly1305, ECDHE-ECDSA-CHACHA20-POLY1305"));
  http_tls_unref(ctls);

  /* A client and a server with nothing in common. */
  struct http_tls *stls = make_server(NULL, NULL);
  ASSERT_OK(http_tls_set_ciphers(stls, "ECDHE-ECDSA-AES256-GCM-SHA384"));
  ASSERT_OK(http_tls_client_new(NULL, NULL, 0, &ctls));
  ASSERT_OK(http_tls_set_ciphers(ctls, "ECDHE-ECDSA-AES128-GCM-SHA256"));
  struct http_tls_session *c, *s;
  struct sink ck = {0}, sk = {0};
  connect_pair(stls, ctls, NULL, &c, &ck, &s, &sk);
  ASSERT_EQ(sk.err, CORE_ETLS);
  ASSERT_EQ(ck.err, CORE_ETLS);
  http_tls_session_free(c);
  http_tls_session_free(s);
  http_tls_unref(ctls);
  http_tls_unref(stls);
}

/* A flipped bit in a record: the reader refuses it, tells the peer with a
 * fatal alert, and the peer reports that alert. Both record layers. */
UNIT_TEST(tampered_record)
{
  for (int off = 0; off < 2; off++) {
    struct http_tls *stls = make_server(NULL, NULL), *ctls;
    http_tls_set_record_offload(stls, !off);
    ASSERT_OK(http_tls_client_new(NULL, NULL, 0, &ctls));
    struct http_tls_session *c, *s;
    struct sink ck = {0}, sk = {0};
    connect_pair(stls, ctls, NULL, &c, &ck, &s, &sk);
    ASSERT_OK(http_tls_write(c, "hello world", 11));
    size_t len, pool_cap;
    uint8_t *rec = http_tls_take_output(c, &len, &pool_cap);
    rec[len - 20] ^= 1;
    ASSERT_OK(http_tls_feed(s, rec, len));
    core_free(rec);
    uint8_t buf[64];
    ASSERT_EQ(http_tls_read(s, buf, sizeof(buf)), CORE_ETLS);
    ASSERT(strstr(http_tls_error(s), "MAC") != NULL);
    run(c, &ck, s, &sk);
    ASSERT_EQ(ck.err, CORE_ETLS);
    http_tls_session_free(c);
    http_tls_session_free(s);
    http_tls_unref(ctls);
    http_tls_unref(stls);
  }
}

/* A plain mbedTLS client on memory buffers, independent of http_tls.c, to
 * resume a session by ticket: then the server sends its Finished first. */
struct raw_client {
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
  mbedtls_ssl_config conf;
  mbedtls_ssl_context ssl;
  uint8_t *in;
  size_t in_len, in_off;
  uint8_t *out;
  size_t out_len;
};

static int raw_send(void *ctx, const unsigned char *buf, size_t len)
{
  struct raw_client *r = ctx;
  r->out = core_realloc(r->out, r->out_len + len);
  memcpy(r->out + r->out_len, buf, len);
  r->out_len += len;
  return (int)len;
}

static int raw_recv(void *ctx, unsigned char *buf, size_t len)
{
  struct raw_client *r = ctx;
  if (r->in_off == r->in_len)
    return MBEDTLS_ERR_SSL_WANT_READ;
  size_t n = r->in_len - r->in_off < len ? r->in_len - r->in_off : len;
  memcpy(buf, r->in + r->in_off, n);
  r->in_off += n;
  return (int)n;
}

static void raw_init(struct raw_client *r)
{
  memset(r, 0, sizeof(*r));
  mbedtls_entropy_init(&r->entropy);
  mbedtls_ctr_drbg_init(&r->drbg);
  mbedtls_ssl_config_init(&r->conf);
  mbedtls_ssl_init(&r->ssl);
  ASSERT_OK(mbedtls_ctr_drbg_seed(&r->drbg, mbedtls_entropy_func, &r->entropy, NULL, 0));
  ASSERT_OK(mbedtls_ssl_config_defaults(&r->conf, MBEDTLS_SSL_IS_CLIENT,
                                        MBEDTLS_SSL_TRANSPORT_STREAM,
                                        MBEDTLS_SSL_PRESET_DEFAULT));
  mbedtls_ssl_conf_authmode(&r->conf, MBEDTLS_SSL_VERIFY_NONE);
  mbedtls_ssl_conf_rng(&r->conf, mbedtls_ctr_drbg_random, &r->drbg);
  ASSERT_OK(mbedtls_ssl_setup(&r->ssl, &r->conf));
  mbedtls_ssl_set_bio(&r->ssl, r, raw_send, raw_recv, NULL);
}

static void raw_free(struct raw_client *r)
{
  mbedtls_ssl_free(&r->ssl);
  mbedtls_ssl_config_free(&r->conf);
  mbedtls_ctr_drbg_free(&r->drbg);
  mbedtls_entropy_free(&r->entropy);
  core_free(r->in);
  core_free(r->out);
}

/* One round: the raw client steps its handshake (or reads), then the bytes
 * go across both ways. Returns the bytes the server sent. */
static size_t raw_round(struct raw_client *r, struct http_tls_session *s, struct sink *sk)
{
  if (r->out_len) {
    for (size_t off = 0; off < r->out_len; off += FEED_CHUNK) {
      size_t n = r->out_len - off < FEED_CHUNK ? r->out_len - off : FEED_CHUNK;
      ASSERT_OK(http_tls_feed(s, r->out + off, n));
      drain(s, sk);
    }
    r->out_len = 0;
  }
  size_t len, pool_cap;
  uint8_t *o = http_tls_take_output(s, &len, &pool_cap);
  if (len) {
    r->in = core_realloc(r->in, r->in_len - r->in_off + len);
    memmove(r->in, r->in + r->in_off, r->in_len - r->in_off);
    r->in_len -= r->in_off;
    r->in_off = 0;
    memcpy(r->in + r->in_len, o, len);
    r->in_len += len;
  }
  core_free(o);
  return len;
}

static void raw_handshake(struct raw_client *r, struct http_tls_session *s, struct sink *sk,
                          size_t *server_bytes)
{
  *server_bytes = 0;
  for (int i = 0; i < 20; i++) {
    int rc = mbedtls_ssl_handshake(&r->ssl);
    *server_bytes += raw_round(r, s, sk);
    if (rc == 0 && r->out_len == 0) {
      raw_round(r, s, sk);
      return;
    }
    ASSERT(rc == 0 || rc == MBEDTLS_ERR_SSL_WANT_READ);
  }
  ASSERT(!"raw handshake did not finish");
}

static void raw_talk(struct raw_client *r, struct http_tls_session *s, struct sink *sk)
{
  /* Client to server, then server to client, each through the other
   * implementation's record layer. */
  uint8_t up[40000], down[40000], got[40000];
  pattern(up, sizeof(up), 7);
  pattern(down, sizeof(down), 8);
  size_t sent = 0;
  while (sent < sizeof(up)) {
    int n = mbedtls_ssl_write(&r->ssl, up + sent, sizeof(up) - sent);
    ASSERT(n > 0);
    sent += (size_t)n;
  }
  size_t before = sk->len;
  raw_round(r, s, sk);
  ASSERT_EQ(sk->len - before, sizeof(up));
  ASSERT_MEM_EQ(sk->buf + before, up, sizeof(up));
  ASSERT_OK(http_tls_write(s, down, sizeof(down)));
  raw_round(r, s, sk);
  size_t have = 0;
  while (have < sizeof(got)) {
    int n = mbedtls_ssl_read(&r->ssl, got + have, sizeof(got) - have);
    ASSERT(n > 0);
    have += (size_t)n;
  }
  ASSERT_MEM_EQ(got, down, sizeof(down));
}

UNIT_TEST(ticket_resumption)
{
  struct http_tls *stls = make_server(NULL, NULL);
  mbedtls_ssl_session saved;
  mbedtls_ssl_session_init(&saved);
  size_t full_bytes, resumed_bytes;

  struct raw_client r;
  raw_init(&r);
  struct http_tls_session *s = http_tls_session_new(stls, NULL);
  struct sink sk = {0};
  raw_handshake(&r, s, &sk, &full_bytes);
  ASSERT_EQ(http_tls_handshake(s), 1);
  ASSERT(http_tls_record_offload(s));
  raw_talk(&r, s, &sk);
  ASSERT_OK(mbedtls_ssl_get_session(&r.ssl, &saved));
  http_tls_session_free(s);
  raw_free(&r);
  sink_free(&sk);

  raw_init(&r);
  ASSERT_OK(mbedtls_ssl_set_session(&r.ssl, &saved));
  s = http_tls_session_new(stls, NULL);
  memset(&sk, 0, sizeof(sk));
  raw_handshake(&r, s, &sk, &resumed_bytes);
  ASSERT_EQ(http_tls_handshake(s), 1);
  /* Resumed: no certificate, no key exchange from the server. */
  ASSERT(resumed_bytes < full_bytes / 2);
  ASSERT(http_tls_record_offload(s));
  raw_talk(&r, s, &sk);
  http_tls_session_free(s);
  raw_free(&r);
  sink_free(&sk);
  mbedtls_ssl_session_free(&saved);
  http_tls_unref(stls);
}

UNIT_MAIN(UNIT_CASE(create_and_reload), UNIT_CASE(missing_files),
          UNIT_CASE(cert_files_and_fingerprints), UNIT_CASE(pinned_exchange),
          UNIT_CASE(large_write_is_linear), UNIT_CASE(large_write_into_pool),
          UNIT_CASE(pin_formats), UNIT_CASE(pin_mismatch),
          UNIT_CASE(ca_verification), UNIT_CASE(garbage_input), UNIT_CASE(feed_bound),
          UNIT_CASE(close_notify), UNIT_CASE(record_interop), UNIT_CASE(cipher_names),
          UNIT_CASE(tampered_record), UNIT_CASE(ticket_resumption))
