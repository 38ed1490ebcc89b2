#include "core/core_shmem.h"

#include "core/core_digest.h"
#include "core/core_error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(sizeof(_Atomic uint64_t) == 8, "counters must be 8 bytes wide");
_Static_assert(CORE_SHMEM_MAGIC_LEN + 8 * CORE_SHMEM_MAX_SLOTS <= CORE_SHMEM_SIZE,
               "slots must fit in the page");
_Static_assert(CORE_GEN_SLOT_COUNT <= CORE_SHMEM_MAX_SLOTS, "too many slots");

/* Creates `path` with `mode` if missing. The explicit chmod is needed because
 * mkdir honours the umask, and the group bit is what lets cairn-admin (run by
 * an operator in the cairn group) bump counters of a root-started cairnd. An
 * existing directory keeps the permissions the administrator gave it. */
static int mkdir_mode(const char *path, mode_t mode)
{
  if (mkdir(path, mode) == 0)
    return chmod(path, mode) == 0 ? 0 : -errno;
  return errno == EEXIST ? 0 : -errno;
}

/* Opens the existing page; -ENOENT if there is none yet. */
static int open_existing(int dfd)
{
  int fd = openat(dfd, CORE_SHMEM_FILE, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  return fd >= 0 ? fd : -errno;
}

/* Fills a fresh, unnamed (or temporarily named) file with the initial page. */
static int init_page(int fd)
{
  char page[CORE_SHMEM_SIZE];
  memset(page, 0, sizeof(page));
  memcpy(page, CORE_SHMEM_MAGIC, CORE_SHMEM_MAGIC_LEN);
  if (fchmod(fd, 0660) != 0)
    return -errno;
  size_t off = 0;
  while (off < sizeof(page)) {
    ssize_t n = pwrite(fd, page + off, sizeof(page) - off, (off_t)off);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    off += (size_t)n;
  }
  return 0;
}

/* Prepares a complete page file and links it under the final name. Returns
 * the open fd of the file that now carries the name: ours, or on EEXIST the
 * one another process linked first. */
static int create_page(int dfd)
{
  char tmpname[64] = "";
  int rc;
  int fd = openat(dfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0660);
  if (fd < 0) {
    if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
      return -errno;
    /* No O_TMPFILE on this file system: a private temporary name instead. */
    uint32_t r;
    if ((rc = core_random(&r, sizeof(r))) < 0)
      return rc;
    snprintf(tmpname, sizeof(tmpname), ".%s.tmp_%ld_%08x", CORE_SHMEM_FILE, (long)getpid(),
             (unsigned)r);
    fd = openat(dfd, tmpname, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0660);
    if (fd < 0)
      return -errno;
  }

  if ((rc = init_page(fd)) < 0)
    goto fail;

  if (tmpname[0]) {
    rc = linkat(dfd, tmpname, dfd, CORE_SHMEM_FILE, 0) == 0 ? 0 : -errno;
  } else {
    /* linkat(fd, "", AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; going through
     * /proc/self/fd works for any user that may write the directory. */
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    rc = linkat(AT_FDCWD, proc, dfd, CORE_SHMEM_FILE, AT_SYMLINK_FOLLOW) == 0 ? 0 : -errno;
    if (rc == -ENOENT)
      rc = linkat(fd, "", dfd, CORE_SHMEM_FILE, AT_EMPTY_PATH) == 0 ? 0 : -errno;
  }
  if (tmpname[0])
    unlinkat(dfd, tmpname, 0);

  if (rc == -EEXIST) {
    /* Lost the race: the winner's file is complete, since it was linked only
     * after its own init_page(). */
    close(fd);
    return open_existing(dfd);
  }
  if (rc < 0)
    goto fail;
  return fd;

fail:
  if (tmpname[0])
    unlinkat(dfd, tmpname, 0);
  close(fd);
  return rc;
}

static int map_page(struct core_shmem *page, int fd)
{
  struct stat st;
  if (fstat(fd, &st) != 0)
    return -errno;
  if (!S_ISREG(st.st_mode) || st.st_size != CORE_SHMEM_SIZE)
    return CORE_EFORMAT;
  void *map = mmap(NULL, CORE_SHMEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED)
    return -errno;
  if (memcmp(map, CORE_SHMEM_MAGIC, CORE_SHMEM_MAGIC_LEN) != 0) {
    munmap(map, CORE_SHMEM_SIZE);
    return CORE_EFORMAT;
  }
  page->map = map;
  page->gen = (_Atomic uint64_t *)((char *)map + CORE_SHMEM_MAGIC_LEN);
  /* Cross-process atomics are only sound when they are lock-free (a lock
   * inside libatomic would be private to each process). */
  if (!atomic_is_lock_free(page->gen)) {
    core_shmem_close(page);
    return CORE_EFORMAT;
  }
  return 0;
}

int core_shmem_open(struct core_shmem *page, const char *run_dir)
{
  char dir[4096];
  int dfd = -1, fd = -1, rc;

  page->map = NULL;
  page->gen = NULL;
  if (snprintf(dir, sizeof(dir), "%s/%s", run_dir, CORE_SHMEM_DIR) >= (int)sizeof(dir))
    return -ENAMETOOLONG;
  if ((rc = mkdir_mode(run_dir, 0770)) < 0 || (rc = mkdir_mode(dir, 0770)) < 0)
    return rc;
  dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return -errno;

  fd = open_existing(dfd);
  if (fd == -ENOENT)
    fd = create_page(dfd);
  if (fd < 0) {
    rc = fd;
    goto out;
  }
  rc = map_page(page, fd);

out:
  if (fd >= 0)
    close(fd); /* the mapping keeps the file alive */
  close(dfd);
  return rc;
}

void core_shmem_close(struct core_shmem *page)
{
  if (page->map)
    munmap(page->map, CORE_SHMEM_SIZE);
  page->map = NULL;
  page->gen = NULL;
}

uint64_t core_shmem_gen_bump(struct core_shmem *page, enum core_gen_slot slot)
{
  return atomic_fetch_add_explicit(&page->gen[slot], 1, memory_order_acq_rel) + 1;
}

uint64_t core_shmem_gen_bump_from(struct core_shmem *page, enum core_gen_slot slot,
                                  uint64_t seen)
{
  uint64_t expected = seen;
  if (atomic_compare_exchange_strong_explicit(&page->gen[slot], &expected, seen + 1,
                                              memory_order_acq_rel, memory_order_acquire))
    return seen + 1;
  return expected;
}
