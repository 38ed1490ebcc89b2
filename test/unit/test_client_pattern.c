/* test_client_pattern.c: gitignore-like patterns (client_pattern.h). */
#include "unit.h"

#include "client/client_pattern.h"

UNIT_TEST(globs)
{
  ASSERT(client_glob("*.o", "a.o"));
  ASSERT(!client_glob("*.o", "d/a.o"));
  ASSERT(client_glob("a/**/b", "a/b"));
  ASSERT(client_glob("a/**/b", "a/x/y/b"));
  ASSERT(client_glob("**/b", "x/b"));
  ASSERT(client_glob("a/**", "a/x/y"));
  ASSERT(client_glob("?.c", "x.c"));
  ASSERT(!client_glob("?.c", "/.c"));
  ASSERT(client_glob("[abc]x", "bx"));
  ASSERT(!client_glob("[!abc]x", "bx"));
  ASSERT(client_glob("[a-c]x", "cx"));
  ASSERT(client_glob("\\*x", "*x"));
  ASSERT(!client_glob("\\*x", "ax"));
  ASSERT(client_glob("[x", "[x")); /* unterminated class: literal */
  ASSERT(!client_glob("a*", "ab/c"));
}

UNIT_TEST(sets)
{
  struct client_pattern_set s;
  client_pattern_set_init(&s);
  ASSERT_OK(client_pattern_add(&s, "*.tmp", NULL));
  ASSERT_OK(client_pattern_add(&s, "!keep.tmp", NULL));
  ASSERT_OK(client_pattern_add(&s, "/build", NULL));
  ASSERT_OK(client_pattern_add(&s, "cache/", NULL));
  ASSERT_OK(client_pattern_add(&s, "src/*.gen", NULL));
  ASSERT_OK(client_pattern_add(&s, "# a comment", NULL));
  ASSERT_OK(client_pattern_add(&s, "", NULL));
  ASSERT(client_pattern_match(&s, "x.tmp", 0));
  ASSERT(client_pattern_match(&s, "a/b/x.tmp", 0));
  ASSERT(!client_pattern_match(&s, "a/keep.tmp", 0));
  ASSERT(client_pattern_match(&s, "build", 1));
  ASSERT(!client_pattern_match(&s, "a/build", 1));
  ASSERT(client_pattern_match(&s, "a/cache", 1));
  ASSERT(!client_pattern_match(&s, "a/cache", 0)); /* directories only */
  ASSERT(client_pattern_match(&s, "src/x.gen", 0));
  ASSERT(!client_pattern_match(&s, "a/src/x.gen", 0));
  ASSERT(!client_pattern_match(&s, ".", 1));
  ASSERT(client_pattern_match_tree(&s, "build/deep/file", 0));
  ASSERT(!client_pattern_match_tree(&s, "builds/file", 0));
  client_pattern_set_free(&s);
}

UNIT_TEST(scoped_lines)
{
  struct client_pattern_set s;
  static const char text[] = "# excludes\r\n*.log\n/only-here  \n\n!keep.log\n";
  client_pattern_set_init(&s);
  ASSERT_OK(client_pattern_add_lines(&s, text, sizeof(text) - 1, "var"));
  ASSERT_EQ(s.n, 3);
  ASSERT(client_pattern_match(&s, "var/x.log", 0));
  ASSERT(client_pattern_match(&s, "var/a/x.log", 0));
  ASSERT(!client_pattern_match(&s, "x.log", 0));     /* outside the scope */
  ASSERT(!client_pattern_match(&s, "varx/x.log", 0));
  ASSERT(client_pattern_match(&s, "var/only-here", 0));
  ASSERT(!client_pattern_match(&s, "var/a/only-here", 0));
  ASSERT(!client_pattern_match(&s, "var/keep.log", 0));
  client_pattern_set_free(&s);
}

UNIT_MAIN(UNIT_CASE(globs), UNIT_CASE(sets), UNIT_CASE(scoped_lines))
