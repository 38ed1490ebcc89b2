/* fuzz_client_archive.c: the client's extraction of a hostile archive
 * stream (what a malicious or broken server could send on restore).
 *
 * Input: a flags byte, then the pax stream. The stream is extracted to
 * BASE/jail/out (flags: whether out exists first, the read piece size, and
 * whether client_archive_cat reads it too, into /dev/null). Checked: after
 * every input the jail holds nothing but `out` and BASE nothing but the
 * jail, i.e. no entry name, hard link or symlink made the client write
 * beside its target; then the jail is removed.
 *
 * Safety when run as root (CI containers): the extraction runs with the
 * file-system uid and gid of nobody (setfsuid, this thread only, so
 * libFuzzer's own corpus and artifact writes are unaffected): an escape
 * could then only reach world-writable places, not /etc; and CAP_SYS_ADMIN
 * and CAP_SETFCAP are dropped for good (trusted.* and security.capability
 * xattrs). Without CAP_MKNOD (cleared with the fs uid) no device nodes. */
#include "fuzz.h"

#include "client/client_archive.h"
#include "core/core_error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/capability.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NOBODY 65534

static char base[4096];
static char jail[4200];
static char target[4300];
static int as_root;

static void drop_caps(void)
{
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  if (syscall(SYS_capget, &h, d) != 0)
    return;
  static const int drop[] = {CAP_SYS_ADMIN, CAP_SETFCAP};
  for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++) {
    uint32_t bit = 1u << (drop[i] % 32);
    d[drop[i] / 32].effective &= ~bit;
    d[drop[i] / 32].permitted &= ~bit;
    d[drop[i] / 32].inheritable &= ~bit;
  }
  if (syscall(SYS_capset, &h, d) != 0)
    abort();
}

static int make_writable(const char *path, const struct stat *sb, int type, struct FTW *f)
{
  (void)f;
  if (type == FTW_D || type == FTW_DNR)
    chmod(path, (sb->st_mode & 07777) | S_IRWXU);
  return 0;
}

static int remove_one(const char *path, const struct stat *sb, int type, struct FTW *f)
{
  (void)sb;
  (void)f;
  if (type == FTW_DP ? rmdir(path) : unlink(path)) {
    fprintf(stderr, "fuzz_client_archive: cannot remove %s: %s\n", path, strerror(errno));
    abort();
  }
  return 0;
}

static void remove_tree(const char *path)
{
  struct stat sb;
  if (lstat(path, &sb) != 0)
    return;
  nftw(path, make_writable, 16, FTW_PHYS);
  nftw(path, remove_one, 16, FTW_PHYS | FTW_DEPTH);
}

static void cleanup(void)
{
  remove_tree(base);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  const char *tmp = getenv("TMPDIR");
  snprintf(base, sizeof(base), "%s/cairn-fuzz-archive-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (mkdtemp(base) == NULL) {
    perror("mkdtemp");
    abort();
  }
  snprintf(jail, sizeof(jail), "%s/jail", base);
  snprintf(target, sizeof(target), "%s/out", jail);
  as_root = geteuid() == 0;
  if (as_root) {
    drop_caps();
    if (chown(base, NOBODY, NOBODY) != 0)
      abort();
  }
  atexit(cleanup);
  return 0;
}

/* The names in `dir` other than `allowed` (which may be absent). */
static int only_entry(const char *dir, const char *allowed)
{
  DIR *d = opendir(dir);
  FUZZ_ASSERT(d != NULL);
  struct dirent *e;
  int ok = 1;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, allowed)) {
      fprintf(stderr, "fuzz_client_archive: stray %s/%s\n", dir, e->d_name);
      ok = 0;
    }
  }
  closedir(d);
  return ok;
}

struct feed {
  const uint8_t *data;
  size_t len, off, piece;
};

static ssize_t feed_read(void *arg, const void **data)
{
  struct feed *f = arg;
  size_t n = f->len - f->off;
  if (n > f->piece)
    n = f->piece;
  *data = f->data + f->off;
  f->off += n;
  return (ssize_t)n;
}

static void as_nobody(int on)
{
  if (!as_root)
    return;
  setfsgid(on ? NOBODY : 0);
  setfsuid(on ? NOBODY : 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  unsigned flags = data[0];
  static const size_t pieces[4] = {512, 4096, 65537, (size_t)1 << 30};
  struct feed f = {data + 1, size - 1, 0, pieces[(flags >> 2) & 3]};
  char err[512] = "";

  as_nobody(1);
  FUZZ_ASSERT(mkdir(jail, 0700) == 0);
  if (flags & 1)
    FUZZ_ASSERT(mkdir(target, 0700) == 0);
  struct client_archive_stats st;
  int rc = client_archive_extract(target, 0, feed_read, &f, &st, err, sizeof(err));
  FUZZ_ASSERT(rc <= 0);
  FUZZ_ASSERT(rc == 0 || err[0] != '\0');
  if (flags & 2) {
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    FUZZ_ASSERT(fd >= 0);
    f.off = 0;
    client_archive_cat(fd, feed_read, &f, err, sizeof(err));
    close(fd);
  }
  as_nobody(0);

  FUZZ_ASSERT(only_entry(base, "jail"));
  FUZZ_ASSERT(only_entry(jail, "out"));
  remove_tree(jail);
  return 0;
}
