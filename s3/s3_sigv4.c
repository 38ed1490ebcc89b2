#include "s3/s3_sigv4.h"

#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* More pairs than any S3 request has; keeps a hostile query from costing much. */
#define SIGV4_MAX_QUERY_PAIRS 256
#define SIGV4_MAX_HEADERS 64

static const char hexdig[] = "0123456789ABCDEF";

void s3_sigv4_payload_hash(const void *data, size_t len, char out[S3_SIGV4_HASH_HEX_LEN + 1])
{
  uint8_t d[CORE_SHA256_LEN];
  core_sha256(data, len, d);
  core_hex_encode(d, sizeof(d), out);
}

void s3_sigv4_date(time_t t, char out[S3_SIGV4_DATE_LEN + 1])
{
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, S3_SIGV4_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm);
}

static int is_unreserved(unsigned char c)
{
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '.' || c == '_' || c == '~';
}

int s3_uri_encode(struct core_buf *out, const char *s, size_t len, int keep_slash)
{
  /* Worst case triples the input; reserving once keeps this linear. */
  if (len > (SIZE_MAX - 1) / 3)
    return CORE_ETOOBIG;
  int rc = core_buf_reserve(out, len * 3);
  if (rc < 0)
    return rc;
  char *p = out->base + out->len;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (is_unreserved(c) || (keep_slash && c == '/')) {
      *p++ = (char)c;
    } else {
      *p++ = '%';
      *p++ = hexdig[c >> 4];
      *p++ = hexdig[c & 15];
    }
  }
  out->len = (size_t)(p - out->base);
  out->base[out->len] = '\0';
  return 0;
}

/* Percent-decodes s[0..len) and re-encodes it into `out`. */
static int reencode(struct core_buf *out, const char *s, size_t len)
{
  char *tmp = core_try_malloc(len + 1);
  if (tmp == NULL)
    return UV_ENOMEM;
  size_t n = 0;
  int rc = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] == '%') {
      int hi, lo;
      if (i + 2 >= len) {
        rc = CORE_EPARSE;
        goto out;
      }
      hi = core_hex_digit((unsigned char)s[i + 1]);
      lo = core_hex_digit((unsigned char)s[i + 2]);
      if (hi < 0 || lo < 0) {
        rc = CORE_EPARSE;
        goto out;
      }
      tmp[n++] = (char)(hi << 4 | lo);
      i += 2;
    } else {
      tmp[n++] = s[i];
    }
  }
  rc = s3_uri_encode(out, tmp, n, 0);
out:
  core_free(tmp);
  return rc;
}

struct qpair {
  char *name;
  char *value;
};

static int qpair_cmp(const void *a, const void *b)
{
  const struct qpair *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  return c ? c : strcmp(x->value, y->value);
}

int s3_sigv4_canonical_query(const char *query, struct core_buf *out)
{
  if (query == NULL || *query == '\0')
    return 0;
  struct qpair pairs[SIGV4_MAX_QUERY_PAIRS];
  size_t n = 0;
  int rc = 0;
  const char *p = query;
  for (;;) {
    const char *end = strchr(p, '&');
    size_t plen = end ? (size_t)(end - p) : strlen(p);
    if (plen > 0) {
      if (n == SIGV4_MAX_QUERY_PAIRS) {
        rc = CORE_ETOOBIG;
        goto out;
      }
      const char *eq = memchr(p, '=', plen);
      size_t nlen = eq ? (size_t)(eq - p) : plen;
      struct core_buf nb, vb;
      core_buf_init(&nb, out->max);
      core_buf_init(&vb, out->max);
      rc = reencode(&nb, p, nlen);
      if (rc == 0 && eq)
        rc = reencode(&vb, eq + 1, plen - nlen - 1);
      if (rc == 0 && nb.base == NULL)
        rc = core_buf_append(&nb, "", 0);
      if (rc == 0 && vb.base == NULL)
        rc = core_buf_append(&vb, "", 0);
      if (rc < 0) {
        core_buf_free(&nb);
        core_buf_free(&vb);
        goto out;
      }
      pairs[n].name = core_buf_steal(&nb, NULL);
      pairs[n].value = core_buf_steal(&vb, NULL);
      n++;
    }
    if (end == NULL)
      break;
    p = end + 1;
  }
  qsort(pairs, n, sizeof(pairs[0]), qpair_cmp);
  for (size_t i = 0; i < n && rc == 0; i++)
    rc = core_buf_printf(out, "%s%s=%s", i ? "&" : "", pairs[i].name, pairs[i].value);
out:
  for (size_t i = 0; i < n; i++) {
    core_free(pairs[i].name);
    core_free(pairs[i].value);
  }
  return rc;
}

struct chdr {
  char *name;    /* lower-cased, owned */
  char *value;   /* trimmed, owned */
  size_t order;  /* position in the input, so repeated names keep their order */
};

static int chdr_cmp(const void *a, const void *b)
{
  const struct chdr *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  if (c)
    return c;
  return x->order < y->order ? -1 : x->order > y->order;
}

static int is_token_char(unsigned char c)
{
  return c > 0x20 && c < 0x7f && !strchr("()<>@,;:\\\"/[]?={}", c);
}

/* Lower-cases and validates a name, trims and collapses a value. */
static int chdr_make(struct chdr *h, const struct s3_sigv4_header *in, size_t order)
{
  size_t nl = strlen(in->name);
  if (nl == 0)
    return CORE_EINVAL;
  for (size_t i = 0; i < nl; i++)
    if (!is_token_char((unsigned char)in->name[i]))
      return CORE_EINVAL;
  const char *v = in->value ? in->value : "";
  for (const char *q = v; *q; q++)
    if (*q == '\r' || *q == '\n' || *q == '\0')
      return CORE_EINVAL;
  h->name = core_strdup(in->name);
  for (size_t i = 0; i < nl; i++)
    if (h->name[i] >= 'A' && h->name[i] <= 'Z')
      h->name[i] = (char)(h->name[i] - 'A' + 'a');
  h->value = core_malloc(strlen(v) + 1);
  size_t o = 0;
  int space = 0;
  for (const char *q = v; *q; q++) {
    if (*q == ' ' || *q == '\t') {
      space = 1;
      continue;
    }
    if (space && o > 0)
      h->value[o++] = ' ';
    space = 0;
    h->value[o++] = *q;
  }
  h->value[o] = '\0';
  h->order = order;
  return 0;
}

static int valid_input(const struct s3_sigv4_input *in)
{
  if (!in->method || !in->uri || in->uri[0] != '/' || !in->payload_hash || !in->amz_date ||
      !in->region || !in->access_key || !in->secret_key)
    return 0;
  if (strlen(in->amz_date) != S3_SIGV4_DATE_LEN || in->amz_date[8] != 'T' ||
      in->amz_date[15] != 'Z')
    return 0;
  if (strcmp(in->payload_hash, "UNSIGNED-PAYLOAD") != 0 && !core_is_digest_hex(in->payload_hash))
    return 0;
  if (in->n_headers > SIGV4_MAX_HEADERS)
    return 0;
  return 1;
}

/* Builds the canonical request and the signed-headers list. */
static int canonical(const struct s3_sigv4_input *in, struct core_buf *creq,
                     struct core_buf *signed_headers)
{
  if (!valid_input(in))
    return CORE_EINVAL;
  struct chdr hs[SIGV4_MAX_HEADERS];
  size_t n = 0;
  int rc;
  for (; n < in->n_headers; n++) {
    rc = chdr_make(&hs[n], &in->headers[n], n);
    if (rc < 0)
      goto out;
  }
  qsort(hs, n, sizeof(hs[0]), chdr_cmp);

  rc = core_buf_printf(creq, "%s\n%s\n", in->method, in->uri);
  if (rc == 0)
    rc = s3_sigv4_canonical_query(in->query, creq);
  if (rc == 0)
    rc = core_buf_append(creq, "\n", 1);
  for (size_t i = 0; i < n && rc == 0; i++) {
    if (i > 0 && strcmp(hs[i].name, hs[i - 1].name) == 0) {
      rc = core_buf_printf(creq, ",%s", hs[i].value);
      continue;
    }
    rc = core_buf_printf(creq, "%s%s:%s", i ? "\n" : "", hs[i].name, hs[i].value);
    if (rc == 0)
      rc = core_buf_printf(signed_headers, "%s%s", signed_headers->len ? ";" : "", hs[i].name);
  }
  if (rc == 0)
    rc = core_buf_printf(creq, "\n\n%s\n%s", signed_headers->base ? signed_headers->base : "",
                         in->payload_hash);
out:
  for (size_t i = 0; i < n; i++) {
    core_free(hs[i].name);
    core_free(hs[i].value);
  }
  return rc;
}

int s3_sigv4_canonical_request(const struct s3_sigv4_input *in, struct core_buf *out)
{
  struct core_buf sh;
  core_buf_init(&sh, 64 * 1024);
  int rc = canonical(in, out, &sh);
  core_buf_free(&sh);
  return rc;
}

int s3_sigv4_authorization(const struct s3_sigv4_input *in, struct core_buf *out)
{
  struct core_buf creq, sh, sts;
  core_buf_init(&creq, 1024 * 1024);
  core_buf_init(&sh, 64 * 1024);
  core_buf_init(&sts, 4096);
  uint8_t h[CORE_SHA256_LEN], k[CORE_SHA256_LEN], k2[CORE_SHA256_LEN];
  char hex[CORE_SHA256_HEX_LEN + 1], date[9];
  char *kinit = NULL;

  int rc = canonical(in, &creq, &sh);
  if (rc < 0)
    goto out;
  memcpy(date, in->amz_date, 8);
  date[8] = '\0';
  core_sha256(creq.base, creq.len, h);
  core_hex_encode(h, sizeof(h), hex);
  rc = core_buf_printf(&sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/s3/aws4_request\n%s", in->amz_date,
                       date, in->region, hex);
  if (rc < 0)
    goto out;

  kinit = core_asprintf("AWS4%s", in->secret_key);
  /* Separate buffers: HMAC's key and output must not alias. */
  core_hmac_sha256(kinit, strlen(kinit), date, 8, k);
  core_hmac_sha256(k, sizeof(k), in->region, strlen(in->region), k2);
  core_hmac_sha256(k2, sizeof(k2), "s3", 2, k);
  core_hmac_sha256(k, sizeof(k), "aws4_request", 12, k2);
  core_hmac_sha256(k2, sizeof(k2), sts.base, sts.len, h);
  core_hex_encode(h, sizeof(h), hex);

  rc = core_buf_printf(out,
                       "AWS4-HMAC-SHA256 Credential=%s/%s/%s/s3/aws4_request, "
                       "SignedHeaders=%s, Signature=%s",
                       in->access_key, date, in->region, sh.base ? sh.base : "", hex);
out:
  if (kinit) {
    /* The derived key material is as sensitive as the secret itself. */
    memset(kinit, 0, strlen(kinit));
    core_free(kinit);
  }
  memset(k, 0, sizeof(k));
  memset(k2, 0, sizeof(k2));
  core_buf_free(&creq);
  core_buf_free(&sh);
  core_buf_free(&sts);
  return rc;
}
