#include "unit.h"

#include "client/client_group.h"
#include "core/core_alloc.h"
#include "core/core_buf.h"
#include "core/core_error.h"
#include "format/format_catalog.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The cut rule: never below the minimum, always at the maximum, in between
 * a function of the path and the previous entry's size alone, about one
 * cut per CLIENT_GROUP_AVG_EXTRA bytes. */
UNIT_TEST(cut_rule)
{
  char path[64];
  uint64_t glen = 0, cuts = 0, groups = 0, bytes = 0;
  ASSERT(!client_group_cut_before("a", 1, CLIENT_GROUP_MIN - 1, CLIENT_GROUP_AVG_EXTRA));
  ASSERT(client_group_cut_before("a", 1, CLIENT_GROUP_MAX, 0));
  ASSERT(client_group_cut_before("a", 1, CLIENT_GROUP_MIN, CLIENT_GROUP_AVG_EXTRA * 4));
  ASSERT(!client_group_cut_before("a", 1, CLIENT_GROUP_MIN, 0));
  for (int i = 0; i < 20000; i++) {
    int n = snprintf(path, sizeof(path), "dir/file-%05d", i);
    uint64_t len = 32 << 10; /* 32 KiB entries */
    int a = client_group_cut_before(path, (size_t)n, glen, len);
    ASSERT_EQ(a, client_group_cut_before(path, (size_t)n, glen, len)); /* stable */
    if (glen > 0 && a) {
      cuts++;
      bytes += glen;
      glen = 0;
    }
    glen += len;
  }
  groups = cuts;
  ASSERT(groups > 0);
  /* 1 MiB + about 2 MiB: between 2 and 4.5 MiB on average */
  ASSERT(bytes / groups > ((uint64_t)2 << 20));
  ASSERT(bytes / groups < ((uint64_t)9 << 19));
}

UNIT_TEST(same_entry)
{
  struct format_catalog_entry a = {0}, b;
  a.path = "x";
  a.path_len = 1;
  a.link = "";
  a.type = FORMAT_CATALOG_FILE;
  a.size = a.data_len = 10;
  a.mtime = 5;
  a.ctime = 6;
  a.ino = 7;
  b = a;
  ASSERT(client_group_same_entry(&a, &b));
  b.ctime_ns = 1;
  ASSERT(!client_group_same_entry(&a, &b));
  b = a;
  b.ino = 8;
  ASSERT(!client_group_same_entry(&a, &b));
  b = a;
  b.flags = FORMAT_CATALOG_SPARSE;
  ASSERT(!client_group_same_entry(&a, &b));
  b = a;
  b.type = FORMAT_CATALOG_SYMLINK;
  a.type = FORMAT_CATALOG_SYMLINK;
  a.link = "t1";
  a.link_len = 2;
  b.link = "t2";
  b.link_len = 2;
  ASSERT(!client_group_same_entry(&a, &b));
}

static int collect(void *arg, const void *data, size_t len)
{
  return core_buf_append(arg, data, len);
}

static void put_file(const char *dir, const char *name, const char *text)
{
  char p[4096];
  snprintf(p, sizeof(p), "%s/%s", dir, name);
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT(fd >= 0);
  ASSERT_EQ((ssize_t)strlen(text), write(fd, text, strlen(text)));
  close(fd);
}

/* Replay puts the held bytes and the noted files' data back in stream
 * order; a file that shrank is padded with zeros, one that grew is cut. */
UNIT_TEST(hold_replay)
{
  const char *tmp = unit_tmpdir();
  struct client_group_hold h;
  struct core_buf out;
  uint64_t files = 0, bytes = 0;
  put_file(tmp, "a", "AAAA");
  put_file(tmp, "b", "BB");      /* noted with 4 bytes: shrank */
  put_file(tmp, "c", "CCCCCCCC"); /* noted with 3: grew */
  client_group_hold_init(&h);
  core_buf_init(&out, 1 << 20);
  ASSERT_OK(client_group_hold_bytes(&h, "h1", 2));
  client_group_hold_file(&h, "a", 4);
  ASSERT_OK(client_group_hold_bytes(&h, "h2", 2));
  client_group_hold_file(&h, "b", 4);
  client_group_hold_file(&h, "c", 3);
  ASSERT_OK(client_group_hold_bytes(&h, "end", 3));
  ASSERT_EQ(h.file_bytes, 11);
  ASSERT_OK(client_group_hold_replay(&h, tmp, collect, &out, &files, &bytes));
  ASSERT_EQ(files, 3);
  ASSERT_EQ(bytes, 11);
  ASSERT_EQ(out.len, 18);
  ASSERT_MEM_EQ(out.base, "h1AAAAh2BB\0\0CCCend", 18);
  ASSERT_EQ(h.n, 0); /* replay empties the hold */
  ASSERT_EQ(h.bytes.len, 0);
  core_buf_free(&out);
  client_group_hold_free(&h);
}

UNIT_MAIN(UNIT_CASE(cut_rule), UNIT_CASE(same_entry), UNIT_CASE(hold_replay))
