#include "unit.h"

#include "core/core_alloc.h"
#include "core/core_buf.h"
#include "core/core_config.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_parse.h"
#include "core/core_shmem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EMPTY_DIGEST "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static char *path_in_tmp(const char *name)
{
  return core_asprintf("%s/%s", unit_tmpdir(), name);
}

static void write_bytes(const char *path, const void *data, size_t len)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT(fd >= 0);
  ASSERT_EQ(write(fd, data, len), (ssize_t)len);
  close(fd);
}

static char *read_bytes(const char *path, size_t *len)
{
  struct core_buf b;
  core_buf_init(&b, 4 << 20);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ASSERT(fd >= 0);
  char tmp[4096];
  ssize_t n;
  while ((n = read(fd, tmp, sizeof(tmp))) > 0)
    ASSERT_OK(core_buf_append(&b, tmp, (size_t)n));
  close(fd);
  ASSERT_OK(core_buf_append(&b, "", 0));
  return core_buf_steal(&b, len);
}

/* Writes `cfg` to a fresh string. */
static char *to_text(const struct core_config *cfg)
{
  struct core_buf b;
  core_buf_init(&b, CORE_CONFIG_MAX_SIZE);
  ASSERT_OK(core_config_write(cfg, &b));
  ASSERT_OK(core_buf_append(&b, "", 0)); /* an empty config still gets a string */
  return core_buf_steal(&b, NULL);
}

static int parse_str(struct core_config *cfg, const char *text, char *err)
{
  core_config_init(cfg);
  return core_config_parse(cfg, text, strlen(text), err, CORE_CONFIG_ERR_LEN);
}

/* ---- text format -------------------------------------------------------- */

UNIT_TEST(roundtrip_unknown_keys_and_comments)
{
  const char *in =
      "# managed by hand\n"
      "\n\n"
      "datastore: default\n"
      "\tpath /srv/backup\n"
      "    comment  Main store, keep   \n"  /* spaces, inner runs kept, ends trimmed */
      "# a comment inside a section\n"
      "\tx-future-key some value\n"
      "\tnotify-user root@pam\n"
      "\tflag\n"                             /* key without value */
      "\tmailto a@example.com\n"
      "\tmailto b@example.com\n"             /* repeated key (array) */
      "\n"
      "s3-endpoint: minio\r\n"               /* CRLF tolerated */
      "\tendpoint 127.0.0.1\r\n"
      "\ttuning sync-level=file,gc-atime-cutoff=1445\n";
  const char *want =
      "datastore: default\n"
      "\tpath /srv/backup\n"
      "\tcomment Main store, keep\n"
      "\tx-future-key some value\n"
      "\tnotify-user root@pam\n"
      "\tflag \n"
      "\tmailto a@example.com\n"
      "\tmailto b@example.com\n"
      "\n"
      "s3-endpoint: minio\n"
      "\tendpoint 127.0.0.1\n"
      "\ttuning sync-level=file,gc-atime-cutoff=1445\n";
  char err[CORE_CONFIG_ERR_LEN];
  struct core_config cfg;
  ASSERT_OK(parse_str(&cfg, in, err));
  ASSERT_EQ(cfg.nsections, 2);
  struct core_config_section *ds = core_config_find(&cfg, "datastore", "default");
  ASSERT(ds != NULL);
  ASSERT_STR_EQ(core_config_get(ds, "comment"), "Main store, keep");
  ASSERT_STR_EQ(core_config_get(ds, "flag"), "");
  ASSERT_STR_EQ(core_config_get(ds, "mailto"), "a@example.com");
  ASSERT_EQ(ds->nkv, 7);
  ASSERT(core_config_find(&cfg, "datastore", "minio") == NULL); /* wrong type */
  ASSERT(core_config_find(&cfg, NULL, "minio") != NULL);

  char *out = to_text(&cfg);
  ASSERT_STR_EQ(out, want);
  core_config_free(&cfg);

  /* Writer output is a fixed point. */
  ASSERT_OK(parse_str(&cfg, out, err));
  char *out2 = to_text(&cfg);
  ASSERT_STR_EQ(out2, out);
  core_config_free(&cfg);
  core_free(out);
  core_free(out2);

  /* Empty and comment-only files are empty configs; they write as nothing. */
  ASSERT_OK(parse_str(&cfg, "", err));
  ASSERT_EQ(cfg.nsections, 0);
  ASSERT_OK(parse_str(&cfg, "# nothing\n\n  \n", err));
  ASSERT_EQ(cfg.nsections, 0);
  out = to_text(&cfg);
  ASSERT_STR_EQ(out, "");
  core_free(out);
  /* No final newline is fine too. */
  ASSERT_OK(parse_str(&cfg, "user: root@pam\n\tenable true", err));
  ASSERT_STR_EQ(core_config_get(cfg.sections[0], "enable"), "true");
  core_config_free(&cfg);
}

UNIT_TEST(model_edit_api)
{
  struct core_config cfg;
  struct core_config_section *a, *b;
  core_config_init(&cfg);
  ASSERT_OK(core_config_add(&cfg, "datastore", "a", &a));
  ASSERT_OK(core_config_add(&cfg, "datastore", "b", &b));
  ASSERT_EQ(core_config_add(&cfg, "datastore", "a", NULL), CORE_EEXISTS);
  ASSERT_EQ(core_config_add(&cfg, "s3", "a", NULL), CORE_EEXISTS); /* names are file-wide */
  ASSERT_EQ(core_config_add(&cfg, "datastore", "has space", NULL), CORE_ENAME);
  ASSERT_EQ(core_config_add(&cfg, "datastore", "", NULL), CORE_ENAME);
  ASSERT_EQ(core_config_add(&cfg, "data:store", "x", NULL), CORE_ENAME);
  ASSERT_EQ(core_config_add(&cfg, "1type", "x", NULL), CORE_ENAME);
  ASSERT_EQ(core_config_add(&cfg, "datastore", "tab\tname", NULL), CORE_ENAME);

  ASSERT_OK(core_config_set(a, "path", "/srv/a"));
  ASSERT_OK(core_config_set(a, "comment", "first"));
  ASSERT_OK(core_config_append(a, "mailto", "x@y"));
  ASSERT_OK(core_config_append(a, "mailto", "z@y"));
  ASSERT_OK(core_config_set(a, "gc-schedule", "daily"));
  ASSERT_OK(core_config_set(a, "path", "/srv/a2")); /* in place */
  ASSERT_STR_EQ(a->kv[0].key, "path");
  ASSERT_STR_EQ(a->kv[0].value, "/srv/a2");
  ASSERT_OK(core_config_set(a, "mailto", "only@y")); /* drops the repeat */
  ASSERT_EQ(a->nkv, 4);
  ASSERT_STR_EQ(a->kv[2].key, "mailto");
  ASSERT_STR_EQ(a->kv[3].key, "gc-schedule");

  ASSERT_EQ(core_config_set(a, "bad key", "v"), CORE_ENAME);
  ASSERT_EQ(core_config_set(a, "#key", "v"), CORE_ENAME);
  ASSERT_EQ(core_config_set(a, "k", "line\nbreak"), CORE_EINVAL);
  ASSERT_EQ(core_config_set(a, "k", " lead"), CORE_EINVAL);
  ASSERT_EQ(core_config_set(a, "k", "trail "), CORE_EINVAL);
  ASSERT_EQ(core_config_set(a, "k", "bell\a"), CORE_EINVAL);
  ASSERT_OK(core_config_set(a, "k", "inner\ttab ok"));
  char *big = core_malloc(CORE_CONFIG_MAX_LINE + 1);
  memset(big, 'v', CORE_CONFIG_MAX_LINE);
  big[CORE_CONFIG_MAX_LINE] = '\0';
  ASSERT_EQ(core_config_set(a, "k", big), CORE_EINVAL);
  core_free(big);

  ASSERT_EQ(core_config_delete(a, "k"), 1);
  ASSERT_EQ(core_config_delete(a, "k"), 0);
  ASSERT_OK(core_config_set(b, "path", "/srv/b"));

  char *out = to_text(&cfg);
  ASSERT_STR_EQ(out,
                "datastore: a\n\tpath /srv/a2\n\tcomment first\n\tmailto only@y\n"
                "\tgc-schedule daily\n\ndatastore: b\n\tpath /srv/b\n");
  core_free(out);

  /* Section pointers survive removal of others. */
  ASSERT_EQ(core_config_remove(&cfg, "s3", "a"), CORE_ENOTFOUND);
  ASSERT_OK(core_config_remove(&cfg, "datastore", "a"));
  ASSERT_EQ(core_config_remove(&cfg, NULL, "a"), CORE_ENOTFOUND);
  ASSERT_STR_EQ(core_config_get(b, "path"), "/srv/b");
  ASSERT_EQ(cfg.nsections, 1);
  core_config_free(&cfg);
  ASSERT_EQ(cfg.nsections, 0);
}

static void expect_parse_error(const char *text, size_t len, int code, const char *needle)
{
  struct core_config cfg;
  char err[CORE_CONFIG_ERR_LEN];
  core_config_init(&cfg);
  int rc = core_config_parse(&cfg, text, len, err, sizeof(err));
  if (rc != code || strstr(err, needle) == NULL)
    unit_fail(__FILE__, __LINE__, "input %.40s: rc %d err \"%s\", want %d \"%s\"", text, rc, err,
              code, needle);
  ASSERT_EQ(cfg.nsections, 0); /* left empty */
}

/* For text without NUL bytes. */
static void expect_bad(const char *text, const char *needle)
{
  expect_parse_error(text, strlen(text), CORE_EPARSE, needle);
}

UNIT_TEST(malformed_inputs)
{
  expect_bad("datastore default\n", "line 1: missing ':'");
  expect_bad("\tpath /x\n", "line 1: property line outside");
  expect_bad("# c\n\n  path /x\n", "line 3: property line outside");
  /* A blank line ends the section: a property after it is orphaned. */
  const char *orphan = "datastore: a\n\tpath /x\n\n\tgc-schedule daily\n";
  expect_bad(orphan, "line 4: property line outside");
  expect_bad("datastore:\n", "line 1: missing section name");
  expect_bad("datastore: a b\n", "line 1: invalid section name");
  expect_bad("1store: a\n", "line 1: invalid section type");
  expect_bad(": a\n", "line 1: invalid section type");
  expect_bad("datastore: a\n\tpa\x01th /x\n", "line 2: invalid key");
  expect_bad("datastore: a\n\tpath /x\x1b[0m\n", "line 2: control character");

  static const char nul[] = "datastore: a\n\tpath /x\0y\n";
  expect_parse_error(nul, sizeof(nul) - 1, CORE_EPARSE, "line 2: NUL byte");

  /* Exactly the limit passes; one more byte fails, with the line number. */
  size_t n = CORE_CONFIG_MAX_LINE + 64;
  char *text = core_malloc(n);
  memcpy(text, "datastore: a\n\tk ", 16);
  memset(text + 16, 'v', n - 16);
  size_t line2 = CORE_CONFIG_MAX_LINE; /* bytes of line 2 without the newline */
  text[13 + line2] = '\n';
  struct core_config cfg;
  core_config_init(&cfg);
  ASSERT_OK(core_config_parse(&cfg, text, 13 + line2 + 1, NULL, 0));
  core_config_free(&cfg);
  text[13 + line2] = 'v';
  text[13 + line2 + 1] = '\n';
  expect_parse_error(text, 13 + line2 + 2, CORE_EPARSE, "line 2: line longer than 4096");
  core_free(text);

  /* Over 1 MiB: refused before looking at the content. */
  size_t big = CORE_CONFIG_MAX_SIZE + 1;
  text = core_malloc(big);
  memset(text, '\n', big);
  expect_parse_error(text, big, CORE_ETOOBIG, "larger than");
  core_free(text);
}

UNIT_TEST(duplicate_section_refused)
{
  const char *same = "datastore: a\n\tpath /a\n\ndatastore: b\n\ndatastore: a\n\tpath /c\n";
  expect_bad(same, "line 6: duplicate section 'a'");
  /* Names are unique across types, as in PBS. */
  const char *cross = "datastore: a\n\ns3: b\n\ns3: a\n\ns3: b\n";
  expect_bad(cross, "line 5: duplicate section 'a'");
}

/* ---- files, digest, lock, edit ------------------------------------------ */

UNIT_TEST(load_digest)
{
  char *path = path_in_tmp("datastore.cfg");
  char d1[CORE_CONFIG_DIGEST_LEN], d2[CORE_CONFIG_DIGEST_LEN];
  struct core_config cfg;

  core_config_init(&cfg);
  ASSERT_OK(core_config_load(path, &cfg, d1, NULL, 0)); /* missing file */
  ASSERT_EQ(cfg.nsections, 0);
  ASSERT_STR_EQ(d1, EMPTY_DIGEST);

  const char *text = "datastore: a\n\tpath /a\n";
  write_bytes(path, text, strlen(text));
  ASSERT_OK(core_config_load(path, &cfg, d1, NULL, 0));
  ASSERT_EQ(cfg.nsections, 1);
  char want[CORE_CONFIG_DIGEST_LEN];
  core_config_digest(text, strlen(text), want);
  ASSERT_STR_EQ(d1, want);
  ASSERT(core_is_digest_hex(d1));
  core_config_free(&cfg);

  /* Stable across loads; any byte change changes it, comments included. */
  ASSERT_OK(core_config_load(path, &cfg, d2, NULL, 0));
  ASSERT_STR_EQ(d1, d2);
  core_config_free(&cfg);
  const char *text2 = "# c\ndatastore: a\n\tpath /a\n";
  write_bytes(path, text2, strlen(text2));
  ASSERT_OK(core_config_load(path, &cfg, d2, NULL, 0));
  ASSERT(strcmp(d1, d2) != 0);
  core_config_free(&cfg);

  /* Parse errors carry the line; failures leave cfg empty. */
  char err[CORE_CONFIG_ERR_LEN];
  write_bytes(path, "datastore: a\nbroken\n", 20);
  ASSERT_EQ(core_config_load(path, &cfg, d2, err, sizeof(err)), CORE_EPARSE);
  ASSERT(strstr(err, "line 2") != NULL);
  ASSERT_EQ(cfg.nsections, 0);

  /* Too big on disk. */
  char *big = core_malloc(CORE_CONFIG_MAX_SIZE + 10);
  memset(big, '\n', CORE_CONFIG_MAX_SIZE + 10);
  write_bytes(path, big, CORE_CONFIG_MAX_SIZE + 10);
  core_free(big);
  ASSERT_EQ(core_config_load(path, &cfg, d2, err, sizeof(err)), CORE_ETOOBIG);

  /* A directory is not a config. */
  ASSERT_EQ(core_config_load(unit_tmpdir(), &cfg, d2, NULL, 0), -EISDIR);
  core_free(path);
}

static int count_entries(const char *dir)
{
  DIR *d = opendir(dir);
  ASSERT(d != NULL);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
      n++;
  closedir(d);
  return n;
}

UNIT_TEST(atomic_save)
{
  char *path = path_in_tmp("datastore.cfg");
  struct core_config cfg;
  struct core_config_section *s;
  char d[CORE_CONFIG_DIGEST_LEN], d2[CORE_CONFIG_DIGEST_LEN];

  core_config_init(&cfg);
  ASSERT_OK(core_config_add(&cfg, "datastore", "a", &s));
  ASSERT_OK(core_config_set(s, "path", "/a"));
  for (int i = 0; i < 5; i++) {
    char v[16];
    snprintf(v, sizeof(v), "%d", i);
    ASSERT_OK(core_config_set(s, "comment", v));
    ASSERT_OK(core_config_save(path, &cfg, 0640, d));
  }
  /* Only the config itself: no temporary files left behind. */
  ASSERT_EQ(count_entries(unit_tmpdir()), 1);
  struct stat st;
  ASSERT_OK(stat(path, &st));
  ASSERT_EQ(st.st_mode & 07777, 0640);

  size_t len;
  char *bytes = read_bytes(path, &len);
  ASSERT_STR_EQ(bytes, "datastore: a\n\tpath /a\n\tcomment 4\n");
  core_config_digest(bytes, len, d2);
  ASSERT_STR_EQ(d, d2);
  core_free(bytes);

  /* A failed save (no such directory) leaves nothing behind either. */
  char *bad = path_in_tmp("missing/datastore.cfg");
  ASSERT_EQ(core_config_save(bad, &cfg, 0640, NULL), -ENOENT);
  ASSERT_EQ(count_entries(unit_tmpdir()), 1);
  core_free(bad);

  /* An empty config saves as an empty file. */
  core_config_free(&cfg);
  ASSERT_OK(core_config_save(path, &cfg, 0600, d));
  ASSERT_STR_EQ(d, EMPTY_DIGEST);
  ASSERT_OK(stat(path, &st));
  ASSERT_EQ(st.st_size, 0);
  core_free(path);
}

UNIT_TEST(lock_path_and_timeout)
{
  char *p = core_config_lock_path("/etc/cairn/datastore.cfg");
  ASSERT_STR_EQ(p, "/etc/cairn/.datastore.lck");
  core_free(p);
  p = core_config_lock_path("token.shadow");
  ASSERT_STR_EQ(p, ".token.shadow.lck");
  core_free(p);

  char *lock = path_in_tmp(".datastore.lck");
  int fd1, fd2;
  ASSERT_OK(core_config_lock(lock, 0, &fd1));
  /* flock belongs to the open file, so a second open in the same process
   * conflicts just like another process would. */
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  ASSERT_EQ(core_config_lock(lock, 100, &fd2), CORE_ELOCKED);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
  ASSERT(ms >= 95 && ms < 2000);
  ASSERT_EQ(core_config_lock(lock, 0, &fd2), CORE_ELOCKED);
  core_config_unlock(fd1);
  ASSERT_OK(core_config_lock(lock, 0, &fd2));
  core_config_unlock(fd2);

  /* A holder in another process that lets go within the timeout. */
  int pipefd[2];
  ASSERT_OK(pipe(pipefd));
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    int fd;
    if (core_config_lock(lock, 0, &fd) != 0)
      _exit(1);
    (void)!write(pipefd[1], "x", 1);
    struct timespec ts = {0, 150 * 1000000L};
    nanosleep(&ts, NULL);
    _exit(0); /* exit releases the lock */
  }
  char c;
  ASSERT_EQ(read(pipefd[0], &c, 1), 1);
  ASSERT_EQ(core_config_lock(lock, 0, &fd2), CORE_ELOCKED);
  ASSERT_OK(core_config_lock(lock, 5000, &fd2));
  core_config_unlock(fd2);
  int status;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  close(pipefd[0]);
  close(pipefd[1]);
  core_free(lock);
}

struct edit_arg {
  const char *name;
  const char *path;
  int rc;     /* what to return */
  int calls;
};

static int add_store(struct core_config *cfg, void *arg)
{
  struct edit_arg *a = arg;
  struct core_config_section *s;
  a->calls++;
  if (a->rc)
    return a->rc;
  int rc = core_config_add(cfg, "datastore", a->name, &s);
  if (rc)
    return rc;
  return core_config_set(s, "path", a->path);
}

UNIT_TEST(locked_edit_and_stale_digest)
{
  char *path = path_in_tmp("datastore.cfg");
  char *run = path_in_tmp("run");
  struct core_shmem page;
  ASSERT_OK(core_shmem_open(&page, run));
  uint64_t g0 = core_shmem_gen_load(&page, CORE_GEN_DATASTORE);

  struct edit_arg a = {"a", "/srv/a", 0, 0};
  struct core_config_edit e = {0};
  e.path = path;
  e.expect_digest = EMPTY_DIGEST; /* the client saw "no file" */
  e.apply = add_store;
  e.arg = &a;
  e.shmem = &page;
  e.slot = CORE_GEN_DATASTORE;
  ASSERT_EQ(core_config_edit(&e), 0);
  ASSERT_EQ(e.generation, g0 + 1);
  ASSERT_EQ(core_shmem_gen_load(&page, CORE_GEN_DATASTORE), g0 + 1);
  char d1[CORE_CONFIG_DIGEST_LEN];
  memcpy(d1, e.digest, sizeof(d1));
  ASSERT(strcmp(d1, EMPTY_DIGEST) != 0);

  /* A second client still holding the empty digest is refused, and nothing
   * is written or bumped. */
  struct edit_arg b = {"b", "/srv/b", 0, 0};
  e.arg = &b;
  ASSERT_EQ(core_config_edit(&e), CORE_ESTALE);
  ASSERT(strstr(e.err, "modified") != NULL);
  ASSERT_EQ(b.calls, 0);
  ASSERT_EQ(core_shmem_gen_load(&page, CORE_GEN_DATASTORE), g0 + 1);

  /* With the current digest (either case) it goes through. */
  char upper[CORE_CONFIG_DIGEST_LEN];
  for (int i = 0; i < CORE_CONFIG_DIGEST_LEN; i++)
    upper[i] = (char)(d1[i] >= 'a' && d1[i] <= 'f' ? d1[i] - 32 : d1[i]);
  e.expect_digest = upper;
  ASSERT_EQ(core_config_edit(&e), 0);
  ASSERT_EQ(e.generation, g0 + 2);

  /* No digest: no check. Callback errors abort without writing. */
  e.expect_digest = NULL;
  struct edit_arg dup = {"a", "/x", 0, 0};
  e.arg = &dup;
  char before[CORE_CONFIG_DIGEST_LEN];
  memcpy(before, e.digest, sizeof(before));
  ASSERT_EQ(core_config_edit(&e), CORE_EEXISTS);
  struct edit_arg unchanged = {"c", "/c", CORE_CONFIG_UNCHANGED, 0};
  e.arg = &unchanged;
  ASSERT_EQ(core_config_edit(&e), CORE_CONFIG_UNCHANGED);
  ASSERT_STR_EQ(e.digest, before);
  ASSERT_EQ(core_shmem_gen_load(&page, CORE_GEN_DATASTORE), g0 + 2);

  /* Not a digest at all. */
  e.expect_digest = "abc";
  ASSERT_EQ(core_config_edit(&e), CORE_EINVAL);

  /* Lock held elsewhere: CORE_ELOCKED after the (short) timeout. */
  int fd;
  char *lock = core_config_lock_path(path);
  ASSERT_OK(core_config_lock(lock, 0, &fd));
  e.expect_digest = NULL;
  e.lock_timeout_ms = 20;
  ASSERT_EQ(core_config_edit(&e), CORE_ELOCKED);
  core_config_unlock(fd);
  core_free(lock);

  size_t len;
  char *bytes = read_bytes(path, &len);
  ASSERT_STR_EQ(bytes, "datastore: a\n\tpath /srv/a\n\ndatastore: b\n\tpath /srv/b\n");
  core_free(bytes);
  /* config + lock file, no temporaries. */
  ASSERT_EQ(count_entries(unit_tmpdir()), 3);
  core_shmem_close(&page);
  core_free(path);
  core_free(run);
}

/* ---- property strings --------------------------------------------------- */

static char *build(const struct core_config_props *p, const char *default_key)
{
  struct core_buf b;
  core_buf_init(&b, CORE_CONFIG_MAX_LINE);
  ASSERT_OK(core_config_props_build(p, default_key, &b));
  ASSERT_OK(core_buf_append(&b, "", 0));
  return core_buf_steal(&b, NULL);
}

UNIT_TEST(property_strings)
{
  struct core_config_props p;
  core_config_props_init(&p);
  ASSERT_OK(core_config_props_parse(&p, "sync-level=file,gc-atime-cutoff=1445", NULL));
  ASSERT_EQ(p.n, 2);
  ASSERT_STR_EQ(core_config_props_get(&p, "sync-level"), "file");
  ASSERT_STR_EQ(core_config_props_get(&p, "gc-atime-cutoff"), "1445");
  ASSERT(core_config_props_get(&p, "chunk-order") == NULL);
  char *s = build(&p, NULL);
  ASSERT_STR_EQ(s, "sync-level=file,gc-atime-cutoff=1445");
  core_free(s);
  ASSERT_OK(core_config_props_set(&p, "sync-level", "filesystem"));
  ASSERT_OK(core_config_props_set(&p, "chunk-order", "none"));
  ASSERT_EQ(core_config_props_delete(&p, "gc-atime-cutoff"), 1);
  ASSERT_EQ(core_config_props_delete(&p, "gc-atime-cutoff"), 0);
  ASSERT_EQ(core_config_props_set(&p, "bad key", "x"), CORE_EINVAL);
  s = build(&p, NULL);
  ASSERT_STR_EQ(s, "sync-level=filesystem,chunk-order=none");
  core_free(s);
  core_config_props_free(&p);

  /* Quoted values with escapes; a default key written bare. */
  ASSERT_OK(core_config_props_parse(&p, "read-only,message=\"backup, \\\"soon\\\"\\\\\\n\"",
                                    "type"));
  ASSERT_STR_EQ(core_config_props_get(&p, "type"), "read-only");
  ASSERT_STR_EQ(core_config_props_get(&p, "message"), "backup, \"soon\"\\\n");
  s = build(&p, "type");
  ASSERT_STR_EQ(s, "read-only,message=\"backup, \\\"soon\\\"\\\\\\n\"");
  core_free(s);
  s = build(&p, NULL);
  ASSERT_STR_EQ(s, "type=read-only,message=\"backup, \\\"soon\\\"\\\\\\n\"");
  core_free(s);
  core_config_props_free(&p);

  /* Values that would be trimmed or misread get quoted; '=' in a keyed value
   * does not need it. */
  ASSERT_OK(core_config_props_set(&p, "type", "a=b"));
  ASSERT_OK(core_config_props_set(&p, "m", " padded "));
  ASSERT_OK(core_config_props_set(&p, "e", ""));
  ASSERT_OK(core_config_props_set(&p, "k", "x=y"));
  s = build(&p, "type");
  ASSERT_STR_EQ(s, "\"a=b\",m=\" padded \",e=,k=x=y");
  struct core_config_props q;
  core_config_props_init(&q);
  ASSERT_OK(core_config_props_parse(&q, s, "type"));
  ASSERT_EQ(q.n, 4);
  ASSERT_STR_EQ(core_config_props_get(&q, "type"), "a=b");
  ASSERT_STR_EQ(core_config_props_get(&q, "m"), " padded ");
  ASSERT_STR_EQ(core_config_props_get(&q, "e"), "");
  ASSERT_STR_EQ(core_config_props_get(&q, "k"), "x=y");
  core_config_props_free(&q);
  core_free(s);
  core_config_props_free(&p);

  /* Accepted edge cases. */
  ASSERT_OK(core_config_props_parse(&p, "", NULL));
  ASSERT_EQ(p.n, 0);
  ASSERT_OK(core_config_props_parse(&p, "a=1,", NULL));
  ASSERT_EQ(p.n, 1);
  core_config_props_free(&p);

  /* Malformed: each leaves p empty. */
  static const char *bad[] = {
      "a=1,,b=2", ",a=1", "a=\"open", "a=\"x\"y", "a=\"bad \\t escape\"", "a=1,a=2",
      "novalue", "b@d=1", "=1",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (core_config_props_parse(&p, bad[i], NULL) != CORE_EPARSE)
      unit_fail(__FILE__, __LINE__, "accepted \"%s\"", bad[i]);
    ASSERT_EQ(p.n, 0);
  }
  /* Two bare values under one default key is a duplicate. */
  ASSERT_EQ(core_config_props_parse(&p, "x,y", "type"), CORE_EPARSE);

  /* One-shot lookup. */
  char *v = NULL;
  ASSERT_OK(core_config_prop_get("type=offline,message=m", "type", NULL, &v));
  ASSERT_STR_EQ(v, "offline");
  core_free(v);
  ASSERT_EQ(core_config_prop_get("type=offline", "message", NULL, &v), CORE_ENOTFOUND);
  ASSERT_EQ(core_config_prop_get("a=\"x", "a", NULL, &v), CORE_EPARSE);

  /* A built property string is a valid config value. */
  core_config_props_init(&p);
  ASSERT_OK(core_config_props_set(&p, "message", "two\nlines "));
  s = build(&p, NULL);
  ASSERT(core_config_valid_value(s));
  core_free(s);
  core_config_props_free(&p);
}

/* ---- shared generation page --------------------------------------------- */

UNIT_TEST(shmem_magic)
{
  static const char id[] = "Cairn ConfigVersionCache v1.0";
  uint8_t d[CORE_SHA256_LEN];
  core_sha256(id, strlen(id), d);
  ASSERT_MEM_EQ(d, CORE_SHMEM_MAGIC, CORE_SHMEM_MAGIC_LEN);
}

UNIT_TEST(shmem_shared_between_mappings)
{
  char *run = path_in_tmp("run");
  struct core_shmem a, b;
  ASSERT_OK(core_shmem_open(&a, run)); /* creates run/ and run/shmem/ */
  ASSERT_OK(core_shmem_open(&b, run));
  ASSERT(a.map != b.map);

  char *dir = core_asprintf("%s/%s", run, CORE_SHMEM_DIR);
  char *file = core_asprintf("%s/%s", dir, CORE_SHMEM_FILE);
  struct stat st;
  ASSERT_OK(stat(dir, &st));
  ASSERT_EQ(st.st_mode & 07777, 0770);
  ASSERT_OK(stat(file, &st));
  ASSERT_EQ(st.st_mode & 07777, 0660);
  ASSERT_EQ(st.st_size, CORE_SHMEM_SIZE);
  ASSERT_EQ(count_entries(dir), 1); /* no temporaries */

  for (int s = 0; s < CORE_GEN_SLOT_COUNT; s++)
    ASSERT_EQ(core_shmem_gen_load(&a, s), 0);
  ASSERT_EQ(core_shmem_gen_bump(&a, CORE_GEN_DATASTORE), 1);
  ASSERT_EQ(core_shmem_gen_load(&b, CORE_GEN_DATASTORE), 1);
  ASSERT_EQ(core_shmem_gen_bump(&b, CORE_GEN_USER), 1);
  ASSERT_EQ(core_shmem_gen_load(&a, CORE_GEN_USER), 1);
  ASSERT_EQ(core_shmem_gen_load(&a, CORE_GEN_S3), 0);

  /* A child process bumps; the parent sees every bump. */
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    struct core_shmem c;
    if (core_shmem_open(&c, run) != 0)
      _exit(1);
    for (int i = 0; i < 1000; i++)
      core_shmem_gen_bump(&c, CORE_GEN_DATASTORE);
    core_shmem_close(&c);
    _exit(0);
  }
  for (int i = 0; i < 1000; i++)
    core_shmem_gen_bump(&b, CORE_GEN_DATASTORE);
  int status;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_EQ(core_shmem_gen_load(&a, CORE_GEN_DATASTORE), 2001);

  /* Conditional bump: only the first of two racers with the same view wins. */
  ASSERT_EQ(core_shmem_gen_bump_from(&a, CORE_GEN_DATASTORE, 2001), 2002);
  ASSERT_EQ(core_shmem_gen_bump_from(&b, CORE_GEN_DATASTORE, 2001), 2002);
  ASSERT_EQ(core_shmem_gen_load(&b, CORE_GEN_DATASTORE), 2002);

  core_shmem_close(&a);
  core_shmem_close(&a); /* idempotent */
  core_shmem_close(&b);
  core_free(file);
  core_free(dir);
  core_free(run);
}

UNIT_TEST(shmem_creation_race)
{
  char *run = path_in_tmp("run");
  enum { N = 8 };
  pid_t pids[N];
  int go[2];
  ASSERT_OK(pipe(go));
  for (int i = 0; i < N; i++) {
    pids[i] = fork();
    ASSERT(pids[i] >= 0);
    if (pids[i] == 0) {
      char c;
      close(go[1]);
      if (read(go[0], &c, 1) != 0) /* wait for the start: EOF */
        _exit(2);
      struct core_shmem s;
      if (core_shmem_open(&s, run) != 0)
        _exit(1);
      core_shmem_gen_bump(&s, CORE_GEN_TOKEN);
      core_shmem_close(&s);
      _exit(0);
    }
  }
  close(go[0]);
  close(go[1]); /* all children start together */
  for (int i = 0; i < N; i++) {
    int status;
    ASSERT_EQ(waitpid(pids[i], &status, 0), pids[i]);
    ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  /* Every process ended up on the same page. */
  struct core_shmem s;
  ASSERT_OK(core_shmem_open(&s, run));
  ASSERT_EQ(core_shmem_gen_load(&s, CORE_GEN_TOKEN), N);
  core_shmem_close(&s);
  char *dir = core_asprintf("%s/%s", run, CORE_SHMEM_DIR);
  ASSERT_EQ(count_entries(dir), 1);
  core_free(dir);
  core_free(run);
}

UNIT_TEST(shmem_wrong_file_refused)
{
  char *run = path_in_tmp("run");
  char *dir = core_asprintf("%s/%s", run, CORE_SHMEM_DIR);
  char *file = core_asprintf("%s/%s", dir, CORE_SHMEM_FILE);
  ASSERT_OK(mkdir(run, 0770));
  ASSERT_OK(mkdir(dir, 0770));

  char page[CORE_SHMEM_SIZE];
  memset(page, 0, sizeof(page));
  memcpy(page, "\x19\xc6\xa8\xe6\x9a\x84\x8f\x83", 8); /* PBS's magic is not ours */
  write_bytes(file, page, sizeof(page));
  struct core_shmem s;
  ASSERT_EQ(core_shmem_open(&s, run), CORE_EFORMAT);
  ASSERT(s.map == NULL);
  core_shmem_close(&s);

  memcpy(page, CORE_SHMEM_MAGIC, CORE_SHMEM_MAGIC_LEN);
  write_bytes(file, page, 100); /* right magic, wrong size */
  ASSERT_EQ(core_shmem_open(&s, run), CORE_EFORMAT);
  write_bytes(file, page, sizeof(page));
  ASSERT_OK(core_shmem_open(&s, run));
  core_shmem_close(&s);

  ASSERT_OK(unlink(file));
  ASSERT_OK(mkdir(file, 0700)); /* not a regular file */
  ASSERT(core_shmem_open(&s, run) < 0);
  core_free(file);
  core_free(dir);
  core_free(run);
}

/* Booleans in parameters and config values: PBS's forms, any case, nothing
 * else (issue #12: verify-new=maybe was accepted). */
UNIT_TEST(parse_bool_pbs_forms)
{
  static const char *const yes[] = {"1", "true", "yes", "on", "TRUE", "Yes", "ON"};
  static const char *const no[] = {"0", "false", "no", "off", "False", "NO", "oFf"};
  static const char *const bad[] = {"", "maybe", "2", "-1", "y", "n", "true ", " 1",
                                    "10", "enabled"};
  int b;
  for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
    b = 0;
    ASSERT_OK(core_parse_bool(yes[i], &b));
    ASSERT_EQ(b, 1);
  }
  for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
    b = 1;
    ASSERT_OK(core_parse_bool(no[i], &b));
    ASSERT_EQ(b, 0);
  }
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    ASSERT_EQ(core_parse_bool(bad[i], &b), CORE_EINVAL);
  ASSERT_EQ(core_parse_bool(NULL, &b), CORE_EINVAL);
}

UNIT_MAIN(UNIT_CASE(roundtrip_unknown_keys_and_comments), UNIT_CASE(model_edit_api),
          UNIT_CASE(malformed_inputs), UNIT_CASE(duplicate_section_refused),
          UNIT_CASE(load_digest), UNIT_CASE(atomic_save), UNIT_CASE(lock_path_and_timeout),
          UNIT_CASE(locked_edit_and_stale_digest), UNIT_CASE(property_strings),
          UNIT_CASE(shmem_magic), UNIT_CASE(shmem_shared_between_mappings),
          UNIT_CASE(shmem_creation_race), UNIT_CASE(shmem_wrong_file_refused),
          UNIT_CASE(parse_bool_pbs_forms))
