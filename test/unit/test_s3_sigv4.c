/* test_s3_sigv4.c: SigV4 and S3 addressing.
 *
 * Besides the unit cases, `test_s3_sigv4 --sign` is a filter used by
 * test/integration/test_s3_sigv4.py to cross-check against botocore: each input
 * line is space-separated hex fields (a lone "-" is an empty field)
 *   method endpoint bucket key path_style port use_tls region date body headers
 *   [qname qvalue]...
 * where headers is "name:value\n"... and a qvalue "*" means a bare name. Each
 * output line is tab-separated: host_header, path?query, payload hash,
 * Authorization.
 */
#include "unit.h"

#include "core/core_alloc.h"
#include "core/core_buf.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "s3/s3_sigv4.h"
#include "s3/s3_url.h"

#define AK "AKIAIOSFODNN7EXAMPLE"
#define SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

static char *enc(const char *s, int keep_slash)
{
  struct core_buf b;
  core_buf_init(&b, 1 << 20);
  if (s3_uri_encode(&b, s, strlen(s), keep_slash) < 0)
    abort();
  if (b.base == NULL)
    return core_strdup("");
  return core_buf_steal(&b, NULL);
}

UNIT_TEST(uri_encoding)
{
  char *e = enc("a b/c+d%e~f=g&h//é", 1);
  ASSERT_STR_EQ(e, "a%20b/c%2Bd%25e~f%3Dg%26h//%C3%A9");
  core_free(e);
  e = enc("a/b", 0);
  ASSERT_STR_EQ(e, "a%2Fb");
  core_free(e);
  e = enc("AZaz09-._~", 0);
  ASSERT_STR_EQ(e, "AZaz09-._~");
  core_free(e);
}

static char *cq(const char *q)
{
  struct core_buf b;
  core_buf_init(&b, 1 << 20);
  int rc = s3_sigv4_canonical_query(q, &b);
  if (rc < 0) {
    core_buf_free(&b);
    return NULL;
  }
  if (b.base == NULL)
    return core_strdup("");
  return core_buf_steal(&b, NULL);
}

UNIT_TEST(canonical_query)
{
  char *s = cq("delete");
  ASSERT_STR_EQ(s, "delete=");
  core_free(s);
  s = cq("prefix=a%2fb&list-type=2&continuation-token=x+y%3D");
  ASSERT_STR_EQ(s, "continuation-token=x%2By%3D&list-type=2&prefix=a%2Fb");
  core_free(s);
  s = cq("b=2&a=2&a=1&&");
  ASSERT_STR_EQ(s, "a=1&a=2&b=2");
  core_free(s);
  s = cq("");
  ASSERT_STR_EQ(s, "");
  core_free(s);
  ASSERT(cq("a=%zz") == NULL);
  ASSERT(cq("a=%4") == NULL);
  ASSERT(cq("a=%") == NULL);
}

/* The GET Object example of AWS's S3 SigV4 documentation. */
UNIT_TEST(aws_doc_example)
{
  struct s3_sigv4_header hs[] = {
      {"Host", "examplebucket.s3.amazonaws.com"},
      {"Range", "bytes=0-9"},
      {"x-amz-content-sha256", S3_SIGV4_EMPTY_HASH},
      {"x-amz-date", "20130524T000000Z"},
  };
  struct s3_sigv4_input in = {
      .method = "GET", .uri = "/test.txt", .query = NULL, .headers = hs, .n_headers = 4,
      .payload_hash = S3_SIGV4_EMPTY_HASH, .amz_date = "20130524T000000Z",
      .region = "us-east-1", .access_key = AK, .secret_key = SK,
  };
  struct core_buf out;
  core_buf_init(&out, 4096);
  ASSERT_OK(s3_sigv4_authorization(&in, &out));
  ASSERT_STR_EQ(out.base,
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
                "aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  core_buf_free(&out);
}

UNIT_TEST(header_canonical_form)
{
  struct s3_sigv4_header hs[] = {
      {"X-Amz-Meta-B", "  two   words  "},
      {"host", "h"},
      {"x-amz-meta-b", "second"},
      {"x-amz-date", "20130524T000000Z"},
  };
  struct s3_sigv4_input in = {
      .method = "PUT", .uri = "/b/k", .query = "", .headers = hs, .n_headers = 4,
      .payload_hash = S3_SIGV4_EMPTY_HASH, .amz_date = "20130524T000000Z",
      .region = "r", .access_key = AK, .secret_key = SK,
  };
  struct core_buf out;
  core_buf_init(&out, 4096);
  ASSERT_OK(s3_sigv4_canonical_request(&in, &out));
  ASSERT_STR_EQ(out.base, "PUT\n/b/k\n\nhost:h\nx-amz-date:20130524T000000Z\n"
                          "x-amz-meta-b:two words,second\n\n"
                          "host;x-amz-date;x-amz-meta-b\n" S3_SIGV4_EMPTY_HASH);
  core_buf_free(&out);

  struct s3_sigv4_header bad[] = {{"x-a", "v\r\nInjected: 1"}};
  in.headers = bad;
  in.n_headers = 1;
  core_buf_init(&out, 4096);
  ASSERT_EQ(s3_sigv4_authorization(&in, &out), CORE_EINVAL);
  struct s3_sigv4_header badname[] = {{"x a", "v"}};
  in.headers = badname;
  ASSERT_EQ(s3_sigv4_authorization(&in, &out), CORE_EINVAL);
  in.headers = hs;
  in.amz_date = "2013-05-24";
  ASSERT_EQ(s3_sigv4_authorization(&in, &out), CORE_EINVAL);
  core_buf_free(&out);
}

static void host_of(const struct s3_url_target *t, const char *bucket, const char *want_host,
                    const char *want_header)
{
  struct core_buf h, hh;
  core_buf_init(&h, 512);
  core_buf_init(&hh, 512);
  ASSERT_OK(s3_url_host(t, bucket, &h, &hh));
  ASSERT_STR_EQ(h.base, want_host);
  ASSERT_STR_EQ(hh.base, want_header);
  core_buf_free(&h);
  core_buf_free(&hh);
}

UNIT_TEST(addressing)
{
  struct s3_url_target vh = {"{{bucket}}.s3.{{region}}.amazonaws.com", "eu-central-1", 0, 1, 0};
  host_of(&vh, "bkt", "bkt.s3.eu-central-1.amazonaws.com", "bkt.s3.eu-central-1.amazonaws.com");
  struct s3_url_target ps = {"127.0.0.1", "us-east-1", 7480, 0, 1};
  host_of(&ps, "bkt", "127.0.0.1", "127.0.0.1:7480");
  ps.port = 80;
  host_of(&ps, "bkt", "127.0.0.1", "127.0.0.1");
  struct s3_url_target v6 = {"[::1]", "us-east-1", 9000, 0, 1};
  host_of(&v6, "bkt", "::1", "[::1]:9000");
  struct s3_url_target pst = {"{{bucket}}.s3.{{region}}.example.com", "r1", 443, 1, 1};
  host_of(&pst, "bkt", "s3.r1.example.com", "s3.r1.example.com");

  struct core_buf h, hh;
  core_buf_init(&h, 512);
  core_buf_init(&hh, 512);
  struct s3_url_target novh = {"s3.example.com", "r", 0, 1, 0};
  ASSERT_EQ(s3_url_host(&novh, "bkt", &h, &hh), CORE_ECONFIG);
  struct s3_url_target badhost = {"evil.com/x", "r", 0, 1, 1};
  ASSERT_EQ(s3_url_host(&badhost, "bkt", &h, &hh), CORE_ECONFIG);
  core_buf_free(&h);
  core_buf_free(&hh);

  struct core_buf p;
  core_buf_init(&p, 4096);
  ASSERT_OK(s3_url_path(&ps, "bkt", "a b/c", &p));
  ASSERT_STR_EQ(p.base, "/bkt/a%20b/c");
  core_buf_reset(&p);
  ASSERT_OK(s3_url_path(&ps, "bkt", NULL, &p));
  ASSERT_STR_EQ(p.base, "/bkt");
  core_buf_reset(&p);
  ASSERT_OK(s3_url_path(&vh, "bkt", "x", &p));
  ASSERT_STR_EQ(p.base, "/x");
  char big[S3_KEY_MAX + 2];
  memset(big, 'k', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  ASSERT_EQ(s3_url_path(&vh, "bkt", big, &p), CORE_ENAME);
  core_buf_free(&p);

  ASSERT_OK(s3_url_check_bucket("my-bucket.1"));
  ASSERT_EQ(s3_url_check_bucket("My"), CORE_ENAME);
  ASSERT_EQ(s3_url_check_bucket("-abc"), CORE_ENAME);
  ASSERT_EQ(s3_url_check_bucket("a/b"), CORE_ENAME);
}

/* ---- --sign mode ---- */

static char *unhex(const char *f, size_t *len)
{
  if (strcmp(f, "-") == 0) {
    *len = 0;
    return core_strdup("");
  }
  size_t n = strlen(f) / 2;
  char *out = core_malloc(n + 1);
  if (core_hex_decode(f, n, (uint8_t *)out) < 0) {
    fprintf(stderr, "bad hex field\n");
    exit(2);
  }
  out[n] = '\0';
  *len = n;
  return out;
}

static int sign_line(char *line)
{
  char *fields[64];
  size_t lens[64];
  int nf = 0;
  char *save = NULL;
  for (char *tok = strtok_r(line, " \n", &save); tok && nf < 64; tok = strtok_r(NULL, " \n", &save))
    fields[nf] = strcmp(tok, "*") == 0 ? NULL : unhex(tok, &lens[nf]), nf++;
  if (nf < 11 || (nf - 11) % 2) {
    fprintf(stderr, "bad line (%d fields)\n", nf);
    return -1;
  }
  struct s3_url_target t = {fields[1], fields[7], (int)strtol(fields[5], NULL, 10),
                            (int)strtol(fields[6], NULL, 10), (int)strtol(fields[4], NULL, 10)};
  const char *bucket = fields[2], *key = fields[3];
  struct core_buf host, hh, path, query, auth;
  core_buf_init(&host, 1024);
  core_buf_init(&hh, 1024);
  core_buf_init(&path, 16384);
  core_buf_init(&query, 16384);
  core_buf_init(&auth, 4096);
  if (s3_url_host(&t, bucket, &host, &hh) < 0 || s3_url_path(&t, bucket, key, &path) < 0)
    return -1;
  for (int i = 11; i < nf; i += 2)
    if (fields[i] == NULL || s3_url_query_add(&query, fields[i], fields[i + 1]) < 0)
      return -1;
  char hash[65];
  s3_sigv4_payload_hash(fields[9], lens[9], hash);

  struct s3_sigv4_header hs[40];
  size_t nh = 0;
  hs[nh++] = (struct s3_sigv4_header){"Host", hh.base};
  hs[nh++] = (struct s3_sigv4_header){"x-amz-date", fields[8]};
  hs[nh++] = (struct s3_sigv4_header){"x-amz-content-sha256", hash};
  char *h = fields[10];
  while (*h && nh < 40) {
    char *nl = strchr(h, '\n');
    if (nl)
      *nl = '\0';
    char *colon = strchr(h, ':');
    if (colon) {
      *colon = '\0';
      hs[nh++] = (struct s3_sigv4_header){h, colon + 1};
    }
    if (!nl)
      break;
    h = nl + 1;
  }
  struct s3_sigv4_input in = {
      .method = fields[0], .uri = path.base, .query = query.base, .headers = hs,
      .n_headers = nh, .payload_hash = hash, .amz_date = fields[8], .region = fields[7],
      .access_key = AK, .secret_key = SK,
  };
  int rc = s3_sigv4_authorization(&in, &auth);
  if (rc < 0)
    return rc;
  printf("%s\t%s%s%s\t%s\t%s\n", hh.base, path.base, query.len ? "?" : "",
         query.len ? query.base : "", hash, auth.base);
  fflush(stdout);
  core_buf_free(&host);
  core_buf_free(&hh);
  core_buf_free(&path);
  core_buf_free(&query);
  core_buf_free(&auth);
  for (int i = 0; i < nf; i++)
    core_free(fields[i]);
  return 0;
}

static int sign_mode(void)
{
  size_t cap = 64 << 20;
  char *line = core_malloc(cap);
  while (fgets(line, (int)cap, stdin)) {
    if (sign_line(line) < 0) {
      printf("ERROR\n");
      fflush(stdout);
    }
  }
  core_free(line);
  return 0;
}

static const struct unit_case cases[] = {
    UNIT_CASE(uri_encoding),   UNIT_CASE(canonical_query), UNIT_CASE(aws_doc_example),
    UNIT_CASE(header_canonical_form), UNIT_CASE(addressing),
};

int main(int argc, char **argv)
{
  if (argc > 1 && strcmp(argv[1], "--sign") == 0)
    return sign_mode();
  return unit_run(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
