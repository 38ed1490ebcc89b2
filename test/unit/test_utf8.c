/* test_utf8.c: core_utf8 (validation, repair, quoting) and the UTF-8 rules
 * of core_json's parser and generator. */
#include "unit.h"

#include "core/core_error.h"
#include "core/core_json.h"
#include "core/core_utf8.h"

static int valid(const char *s)
{
  return core_utf8_valid(s, strlen(s));
}

UNIT_TEST(valid_text)
{
  ASSERT(valid(""));
  ASSERT(valid("plain ascii ~"));
  ASSERT(valid("caf\xC3\xA9"));                 /* U+00E9 */
  ASSERT(valid("\xE2\x82\xAC"));                /* U+20AC */
  ASSERT(valid("\xED\x9F\xBF"));                /* U+D7FF, below the surrogates */
  ASSERT(valid("\xEE\x80\x80"));                /* U+E000, above them */
  ASSERT(valid("\xEF\xBF\xBD"));                /* U+FFFD */
  ASSERT(valid("\xF0\x90\x80\x80"));            /* U+10000 */
  ASSERT(valid("\xF4\x8F\xBF\xBF"));            /* U+10FFFF, the last */
  ASSERT(valid("\x7F"));
}

UNIT_TEST(invalid_text)
{
  ASSERT(!valid("a\xFF" "b"));
  ASSERT(!valid("\x80"));                       /* lone continuation */
  ASSERT(!valid("\xC3"));                       /* truncated */
  ASSERT(!valid("\xE2\x82"));
  ASSERT(!valid("\xC3(")); /* bad continuation */
  ASSERT(!valid("\xC0\xAF"));                   /* overlong '/' */
  ASSERT(!valid("\xC1\xBF"));
  ASSERT(!valid("\xE0\x80\xAF"));               /* overlong, 3 bytes */
  ASSERT(!valid("\xE0\x9F\xBF"));
  ASSERT(!valid("\xF0\x80\x80\xAF"));           /* overlong, 4 bytes */
  ASSERT(!valid("\xF0\x8F\xBF\xBF"));
  ASSERT(!valid("\xED\xA0\x80"));               /* U+D800 */
  ASSERT(!valid("\xED\xBF\xBF"));               /* U+DFFF */
  ASSERT(!valid("\xF4\x90\x80\x80"));           /* U+110000 */
  ASSERT(!valid("\xF5\x80\x80\x80"));
  ASSERT(!valid("\xF8\x88\x80\x80\x80"));       /* 5-byte form */
  ASSERT(!core_utf8_valid("ab\0cd", 5));        /* NUL */
  ASSERT(!core_utf8_valid("\0", 1));
  /* The length bounds the check: a sequence cut by it is invalid. */
  ASSERT(!core_utf8_valid("\xC3\xA9", 1));
  ASSERT(core_utf8_valid("\xC3\xA9", 2));
}

UNIT_TEST(repair)
{
  char out[64];
  const char *bad = "a\xFF" "b\xC3";
  size_t n = core_utf8_repaired_len(bad, strlen(bad));
  ASSERT_EQ(n, 8);
  core_utf8_repair(bad, strlen(bad), out);
  ASSERT_MEM_EQ(out, "a\xEF\xBF\xBD" "b\xEF\xBF\xBD", 8);
  ASSERT(core_utf8_valid(out, n));
  /* Valid text, NUL included, is copied as it is. */
  ASSERT_EQ(core_utf8_repaired_len("x\0\xC3\xA9", 4), 4);
  /* An overlong is three bad bytes, each replaced. */
  ASSERT_EQ(core_utf8_repaired_len("\xE0\x80\xAF", 3), 9);
}

UNIT_TEST(quote)
{
  char out[32];
  ASSERT_STR_EQ(core_utf8_quote("ab\xFF" "cd", out, sizeof(out)), "ab\\xFFcd");
  ASSERT_STR_EQ(core_utf8_quote("a\nb\\", out, sizeof(out)), "a\\x0Ab\\\\");
  ASSERT_STR_EQ(core_utf8_quote("caf\xC3\xA9", out, sizeof(out)), "caf\xC3\xA9");
  /* Too long: cut at a whole piece, marked. */
  char small[8];
  ASSERT_STR_EQ(core_utf8_quote("abcdefghij", small, sizeof(small)), "abcd...");
  ASSERT_STR_EQ(core_utf8_quote("abcdefg", small, sizeof(small)), "abcdefg");
  ASSERT_STR_EQ(core_utf8_quote("\xFF\xFF", small, sizeof(small)), "\\xFF...");
  ASSERT(core_utf8_valid(small, strlen(small)));
}

static int parses(const char *text)
{
  yajl_val v = NULL;
  char err[128] = "";
  int rc = core_json_parse(text, strlen(text), &v, err, sizeof(err));
  if (v)
    yajl_tree_free(v);
  return rc == 0;
}

UNIT_TEST(json_parse_refuses_bad_strings)
{
  ASSERT(parses("{\"name\":\"caf\xC3\xA9\",\"e\":\"\\u00e9\\ud83d\\ude00\"}"));
  ASSERT(!parses("{\"name\":\"ab\\u0000cd\"}"));        /* decoded NUL */
  ASSERT(!parses("{\"ab\\u0000cd\":1}"));               /* in a key */
  ASSERT(!parses("{\"name\":\"a\xFF" "b\"}"));          /* raw invalid byte */
  ASSERT(!parses("{\"name\":\"\xC0\xAF\"}"));           /* raw overlong */
  ASSERT(!parses("{\"name\":\"\xED\xA0\x80\"}"));       /* raw surrogate */
  ASSERT(!parses("{\"name\":\"\\udc00\"}"));            /* escaped lone low surrogate */
  /* A raw NUL ends the text for C, not for us. */
  ASSERT_EQ(core_json_parse("{\"a\":1}\0junk", 12, &(yajl_val){NULL}, NULL, 0), CORE_EPARSE);
  char err[128] = "";
  yajl_val v = NULL;
  ASSERT_EQ(core_json_parse("[\"\\u0000\"]", 10, &v, err, sizeof(err)), CORE_EPARSE);
  ASSERT(strstr(err, "UTF-8") != NULL);
}

UNIT_TEST(json_output_is_valid_utf8)
{
  struct core_json j;
  core_json_init(&j, 0);
  core_json_obj_open(&j);
  core_json_kv_str(&j, "comment", "a\xFF" "b");
  core_json_kv_str(&j, "ok", "caf\xC3\xA9");
  core_json_key(&j, "nul");
  core_json_strn(&j, "x\0y", 3);
  core_json_obj_close(&j);
  size_t len;
  const char *text = core_json_text(&j, &len);
  const char *want = "{\"comment\":\"a\xEF\xBF\xBD" "b\",\"ok\":\"caf\xC3\xA9\","
                     "\"nul\":\"x\\u0000y\"}";
  ASSERT_EQ(len, strlen(want));
  ASSERT_MEM_EQ(text, want, len);
  ASSERT(core_utf8_valid(text, len));
  core_json_free(&j);
}

UNIT_MAIN(UNIT_CASE(valid_text), UNIT_CASE(invalid_text), UNIT_CASE(repair), UNIT_CASE(quote),
          UNIT_CASE(json_parse_refuses_bad_strings), UNIT_CASE(json_output_is_valid_utf8))
