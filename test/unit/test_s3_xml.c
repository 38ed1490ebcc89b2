#include "unit.h"

#include "core/core_alloc.h"
#include "core/core_buf.h"
#include "core/core_error.h"
#include "s3/s3_xml.h"

#define NS "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\""

static int perr(const char *doc, struct s3_error *e)
{
  return s3_xml_parse_error(doc, strlen(doc), e);
}

UNIT_TEST(error_bodies)
{
  struct s3_error e;
  ASSERT_OK(perr("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code>"
                 "<Message>The specified key does not exist.</Message><RequestId>tx1</RequestId>"
                 "</Error>", &e));
  ASSERT_EQ(e.code, S3_ERR_NO_SUCH_KEY);
  ASSERT_STR_EQ(e.message, "The specified key does not exist.");
  ASSERT_STR_EQ(e.request_id, "tx1");
  ASSERT_OK(perr("<Error><Code>SlowDown</Code></Error>", &e));
  ASSERT_EQ(e.code, S3_ERR_SLOW_DOWN);
  ASSERT(s3_error_retryable(e.code));
  ASSERT_OK(perr("<Error><Code>SignatureDoesNotMatch</Code></Error>", &e));
  ASSERT_EQ(e.code, S3_ERR_SIGNATURE_DOES_NOT_MATCH);
  ASSERT(!s3_error_retryable(e.code));
  ASSERT_OK(perr("<Error><Code>SomethingNew</Code></Error>", &e));
  ASSERT_EQ(e.code, S3_ERR_UNKNOWN);
  ASSERT_STR_EQ(e.code_text, "SomethingNew");
  /* Escaped text comes back decoded. */
  ASSERT_OK(perr("<Error><Code>AccessDenied</Code><Message>a &lt;b&gt; &amp; c</Message></Error>", &e));
  ASSERT_STR_EQ(e.message, "a <b> & c");
  ASSERT_EQ(e.code, S3_ERR_ACCESS_DENIED);

  for (int c = S3_ERR_ACCESS_DENIED; c < S3_ERR__COUNT; c++)
    ASSERT_EQ(s3_error_from_name(s3_error_name((enum s3_error_code)c)), c);
}

UNIT_TEST(malformed)
{
  struct s3_error e;
  ASSERT_EQ(perr("", &e), CORE_EPARSE);
  ASSERT_EQ(perr("<Error><Code>NoSuchKey</Code>", &e), CORE_EPARSE);
  ASSERT_EQ(perr("<html><body>502 Bad Gateway</body></html>", &e), CORE_EPARSE);
  ASSERT_EQ(perr("not xml at all", &e), CORE_EPARSE);
  ASSERT_EQ(perr("<Error><Code><X/>NoSuchKey</Code></Error>", &e), CORE_EPARSE);
  ASSERT_EQ(perr("<Error><Code>\xff\xfe</Code></Error>", &e), CORE_EPARSE);
  struct s3_list_result l;
  ASSERT_EQ(s3_xml_parse_list("<ListBucketResult><Contents><Size>x</Size><Key>a</Key></Contents>"
                              "</ListBucketResult>", 80, &l), CORE_EPARSE);
  const char *trunc_no_token = "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>";
  ASSERT_EQ(s3_xml_parse_list(trunc_no_token, strlen(trunc_no_token), &l), CORE_EPARSE);
  const char *no_key = "<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>";
  ASSERT_EQ(s3_xml_parse_list(no_key, strlen(no_key), &l), CORE_EPARSE);
  const char *neg = "<ListBucketResult><Contents><Key>a</Key><Size>-1</Size></Contents></ListBucketResult>";
  ASSERT_EQ(s3_xml_parse_list(neg, strlen(neg), &l), CORE_EPARSE);
  const char *ovf = "<ListBucketResult><Contents><Key>a</Key><Size>99999999999999999999999</Size>"
                    "</Contents></ListBucketResult>";
  ASSERT_EQ(s3_xml_parse_list(ovf, strlen(ovf), &l), CORE_EPARSE);
}

UNIT_TEST(hostile)
{
  struct s3_error e;
  const char *laughs =
      "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">"
      "<!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">"
      "<!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">"
      "<!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">]>"
      "<Error><Code>&lol4;</Code></Error>";
  ASSERT_EQ(perr(laughs, &e), CORE_EPARSE);
  const char *xxe = "<?xml version=\"1.0\"?><!DOCTYPE e [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
                    "<Error><Code>&x;</Code></Error>";
  ASSERT_EQ(perr(xxe, &e), CORE_EPARSE);
  const char *ext = "<!DOCTYPE Error SYSTEM \"http://127.0.0.1:1/x.dtd\"><Error><Code>A</Code></Error>";
  ASSERT_EQ(perr(ext, &e), CORE_EPARSE);
  const char *lower = "<!doctype Error><Error><Code>A</Code></Error>";
  ASSERT_EQ(perr(lower, &e), CORE_EPARSE);
  /* An undeclared entity is an error, never a lookup. */
  ASSERT_EQ(perr("<Error><Code>&x;</Code></Error>", &e), CORE_EPARSE);

  /* A huge text node: refused by the per-value bound, not copied. */
  size_t big = 1024 * 1024;
  struct core_buf b;
  core_buf_init(&b, 4 * big);
  ASSERT_OK(core_buf_append_str(&b, "<Error><Code>"));
  for (size_t i = 0; i < big; i++)
    ASSERT_OK(core_buf_append(&b, "A", 1));
  ASSERT_OK(core_buf_append_str(&b, "</Code></Error>"));
  ASSERT_EQ(s3_xml_parse_error(b.base, b.len, &e), CORE_EPARSE);
  core_buf_free(&b);

  /* A huge document: refused before parsing. */
  char *huge = core_malloc(S3_XML_MAX_DOC + 1);
  memset(huge, ' ', S3_XML_MAX_DOC + 1);
  ASSERT_EQ(s3_xml_parse_error(huge, S3_XML_MAX_DOC + 1, &e), CORE_ETOOBIG);
  core_free(huge);

  /* A key over 1024 bytes in a listing. */
  core_buf_init(&b, 1 << 20);
  ASSERT_OK(core_buf_append_str(&b, "<ListBucketResult><Contents><Key>"));
  for (int i = 0; i < 1025; i++)
    ASSERT_OK(core_buf_append(&b, "k", 1));
  ASSERT_OK(core_buf_append_str(&b, "</Key></Contents></ListBucketResult>"));
  struct s3_list_result l;
  ASSERT_EQ(s3_xml_parse_list(b.base, b.len, &l), CORE_ENAME);
  core_buf_free(&b);

  /* Deep nesting is refused by libxml2's own depth limit or our shape checks. */
  core_buf_init(&b, 8 << 20);
  ASSERT_OK(core_buf_append_str(&b, "<Error>"));
  for (int i = 0; i < 100000; i++)
    ASSERT_OK(core_buf_append_str(&b, "<a>"));
  ASSERT_EQ(s3_xml_parse_error(b.base, b.len, &e), CORE_EPARSE);
  core_buf_free(&b);
}

UNIT_TEST(list_result)
{
  const char *doc =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
      "<ListBucketResult " NS "><Name>bucket</Name><Prefix>s/</Prefix>"
      "<KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>"
      "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>"
      "<Contents><Key>s/a &amp; b</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified>"
      "<ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag><Size>434234</Size>"
      "<StorageClass>STANDARD</StorageClass></Contents>"
      "<Contents><Key>s/\xc3\xa9</Key><Size>0</Size><ETag>\"x\"</ETag></Contents>"
      "</ListBucketResult>";
  struct s3_list_result l;
  ASSERT_OK(s3_xml_parse_list(doc, strlen(doc), &l));
  ASSERT_EQ(l.n, 2);
  ASSERT_EQ(l.key_count, 2);
  ASSERT(l.is_truncated);
  ASSERT_STR_EQ(l.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
  ASSERT_STR_EQ(l.objects[0].key, "s/a & b");
  ASSERT_EQ(l.objects[0].size, 434234);
  ASSERT_EQ(l.objects[0].last_modified, 1255369830);
  ASSERT_STR_EQ(l.objects[0].etag, "fba9dede5f27731c9771645a39863328");
  ASSERT_STR_EQ(l.objects[1].key, "s/\xc3\xa9");
  ASSERT_STR_EQ(l.objects[1].etag, "x");
  s3_list_result_free(&l);

  const char *empty = "<ListBucketResult " NS "><KeyCount>0</KeyCount>"
                      "<IsTruncated>false</IsTruncated></ListBucketResult>";
  ASSERT_OK(s3_xml_parse_list(empty, strlen(empty), &l));
  ASSERT_EQ(l.n, 0);
  ASSERT(!l.is_truncated);
  ASSERT(l.next_token == NULL);
  s3_list_result_free(&l);
}

UNIT_TEST(delete_result)
{
  const char *doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><DeleteResult " NS ">"
                    "<Deleted><Key>a</Key></Deleted>"
                    "<Error><Key>b&lt;</Key><Code>AccessDenied</Code><Message>no</Message></Error>"
                    "<Deleted><Key>c</Key><VersionId>1</VersionId></Deleted></DeleteResult>";
  struct s3_delete_result r;
  ASSERT_OK(s3_xml_parse_delete(doc, strlen(doc), &r));
  ASSERT_EQ(r.n, 3);
  ASSERT(r.entries[0].deleted);
  ASSERT_STR_EQ(r.entries[0].key, "a");
  ASSERT(!r.entries[1].deleted);
  ASSERT_STR_EQ(r.entries[1].key, "b<");
  ASSERT_EQ(r.entries[1].code, S3_ERR_ACCESS_DENIED);
  ASSERT_STR_EQ(r.entries[1].message, "no");
  ASSERT_STR_EQ(r.entries[2].key, "c");
  s3_delete_result_free(&r);
  ASSERT_EQ(s3_xml_parse_delete("<DeleteResult><Deleted/></DeleteResult>", 39, &r), CORE_EPARSE);
}

UNIT_TEST(delete_body)
{
  const char *keys[] = {"plain", "a&b<c>\"d'e", "line\nbreak\ttab\rcr", "\xc3\xa9t\xc3\xa9"};
  struct core_buf b;
  core_buf_init(&b, 1 << 20);
  ASSERT_OK(s3_xml_delete_body(keys, 4, 0, &b));
  ASSERT(strstr(b.base, "<Key>a&amp;b&lt;c&gt;&quot;d&apos;e</Key>") != NULL);
  ASSERT(strstr(b.base, "<Key>line&#10;break&#9;tab&#13;cr</Key>") != NULL);
  ASSERT(strstr(b.base, "<Quiet>") == NULL);
  ASSERT(strncmp(b.base, "<?xml", 5) == 0);

  /* Round trip through libxml2: keys come back byte-identical. */
  struct core_buf r;
  core_buf_init(&r, 1 << 20);
  ASSERT_OK(core_buf_append_str(&r, "<DeleteResult>"));
  const char *p = b.base;
  while ((p = strstr(p, "<Key>")) != NULL) {
    const char *e = strstr(p, "</Key>");
    ASSERT_OK(core_buf_append_str(&r, "<Deleted>"));
    ASSERT_OK(core_buf_append(&r, p, (size_t)(e + 6 - p)));
    ASSERT_OK(core_buf_append_str(&r, "</Deleted>"));
    p = e;
  }
  ASSERT_OK(core_buf_append_str(&r, "</DeleteResult>"));
  struct s3_delete_result dr;
  ASSERT_OK(s3_xml_parse_delete(r.base, r.len, &dr));
  ASSERT_EQ(dr.n, 4);
  for (size_t i = 0; i < 4; i++)
    ASSERT_STR_EQ(dr.entries[i].key, keys[i]);
  s3_delete_result_free(&dr);
  core_buf_free(&r);

  core_buf_reset(&b);
  ASSERT_OK(s3_xml_delete_body(keys, 1, 1, &b));
  ASSERT(strstr(b.base, "<Quiet>true</Quiet>") != NULL);
  const char *bad1[] = {"ctl\x01"};
  ASSERT_EQ(s3_xml_delete_body(bad1, 1, 0, &b), CORE_ENAME);
  const char *bad2[] = {"\xff"};
  ASSERT_EQ(s3_xml_delete_body(bad2, 1, 0, &b), CORE_ENAME);
  const char *bad3[] = {""};
  ASSERT_EQ(s3_xml_delete_body(bad3, 1, 0, &b), CORE_ENAME);
  const char *bad4[] = {"\xed\xa0\x80"}; /* a UTF-16 surrogate */
  ASSERT_EQ(s3_xml_delete_body(bad4, 1, 0, &b), CORE_ENAME);
  ASSERT_EQ(s3_xml_delete_body(keys, 0, 0, &b), CORE_EINVAL);
  ASSERT_EQ(s3_xml_delete_body(keys, 1001, 0, &b), CORE_EINVAL);
  core_buf_free(&b);
}

static const struct unit_case cases[] = {
    UNIT_CASE(error_bodies), UNIT_CASE(malformed),     UNIT_CASE(hostile),
    UNIT_CASE(list_result),  UNIT_CASE(delete_result), UNIT_CASE(delete_body),
};

int main(int argc, char **argv)
{
  s3_xml_init();
  return unit_run(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
