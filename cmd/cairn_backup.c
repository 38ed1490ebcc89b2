/* cairn_backup.c: `cairn backup`. */
#include "cmd/cairn.h"

#include "client/client_api.h"
#include "client/client_archive.h"
#include "client/client_backup.h"
#include "client/client_pattern.h"
#include "client/client_progress.h"
#include "core/core_fmt.h"
#include "format/format_crypt.h"
#include "format/format_name.h"

#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Bytes the backup will read, for the progress line's ETA: a walk of
 * st_size (holes included, a close enough estimate of the pax stream). */
static uint64_t walk_total;

static int walk_add(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
  (void)path;
  (void)ftw;
  if (flag == FTW_F && S_ISREG(sb->st_mode))
    walk_total += (uint64_t)sb->st_size;
  return 0;
}

static uint64_t estimate_total(const struct client_backup_spec *specs, size_t n)
{
  walk_total = 0;
  for (size_t i = 0; i < n; i++) {
    struct stat sb;
    if (stat(specs[i].path, &sb) != 0)
      continue;
    if (S_ISDIR(sb.st_mode)) {
      nftw(specs[i].path, walk_add, 64, FTW_PHYS | FTW_MOUNT);
    } else if (S_ISBLK(sb.st_mode)) {
      int fd = open(specs[i].path, O_RDONLY | O_CLOEXEC);
      uint64_t size = 0;
      if (fd >= 0 && client_image_size(fd, &size) == 0)
        walk_total += size;
      if (fd >= 0)
        close(fd);
    } else {
      walk_total += (uint64_t)sb.st_size;
    }
  }
  return walk_total;
}

int cmd_backup(struct opts *o)
{
  struct client_backup_spec specs[64];
  struct client_backup_opts bo;
  struct client_backup_stats st;
  struct format_crypt crypt;
  struct client_api *api = NULL;
  struct client_pattern_set excl;
  char err[1024], host[256], when[FORMAT_NAME_TIME_LEN + 1];
  char total[32], fresh[32], sent[32];
  int have_key, rc;
  double t0, dt;

  if (o->npos == 0) {
    fprintf(stderr, "cairn backup: nothing to back up (see cairn backup --help)\n");
    return EXIT_USAGE;
  }
  for (size_t i = 0; i < o->npos; i++) {
    if (client_backup_parse_spec(o->pos[i], &specs[i], err, sizeof(err)) < 0) {
      fprintf(stderr, "cairn backup: %s\n", err);
      return EXIT_USAGE;
    }
    for (size_t k = 0; k < i; k++)
      if (strcmp(specs[k].archive, specs[i].archive) == 0) {
        fprintf(stderr, "cairn backup: archive %s given twice\n", specs[i].archive);
        return EXIT_USAGE;
      }
  }
  if (gethostname(host, sizeof(host)) != 0)
    snprintf(host, sizeof(host), "localhost");
  host[sizeof(host) - 1] = '\0';
  memset(&bo, 0, sizeof(bo));
  {
    /* catalogs from this size on become an index of their own (tests set
     * it small to exercise that form on a small tree) */
    const char *v = getenv("CAIRN_CATALOG_INDEX_MIN");
    char *end = NULL;
    if (v && *v) {
      unsigned long long n = strtoull(v, &end, 10);
      if (*end != '\0' || n == 0) {
        fprintf(stderr, "cairn backup: CAIRN_CATALOG_INDEX_MIN=%s is not a positive byte count\n",
                v);
        return EXIT_USAGE;
      }
      bo.catalog_index_min = n;
    }
    /* the catalog writer's memory before it spills sorted runs to a
     * temporary file (tests set it small) */
    v = getenv("CAIRN_CATALOG_MEM");
    if (v && *v) {
      unsigned long long n = strtoull(v, &end, 10);
      if (*end != '\0' || n == 0) {
        fprintf(stderr, "cairn backup: CAIRN_CATALOG_MEM=%s is not a positive byte count\n", v);
        return EXIT_USAGE;
      }
      bo.catalog_mem = n;
    }
  }
  bo.backup_type = o->backup_type ? o->backup_type : "host";
  bo.backup_id = o->backup_id ? o->backup_id : host;
  if (format_name_backup_type(bo.backup_type) < 0 || format_name_backup_id(bo.backup_id) < 0) {
    fprintf(stderr, "cairn backup: invalid backup type or id \"%s/%s\"\n", bo.backup_type,
            bo.backup_id);
    return EXIT_USAGE;
  }
  have_key = load_key(o, &crypt);
  if (have_key < 0)
    return 1;
  bo.workers = o->workers ? o->workers : 4;
  if (open_api(o, bo.workers + 2, &api) < 0) {
    if (have_key)
      format_crypt_clear(&crypt);
    return 1;
  }
  bo.api = api;
  bo.ns = ns_of(o);
  bo.backup_time = o->backup_time;
  bo.crypt = have_key ? &crypt : NULL;
  bo.mem_budget = (size_t)(o->mem_mib ? o->mem_mib : 96) << 20;
  bo.progress = client_progress_new("backup", want_progress(o));
  bo.cancel = &interrupted;
  bo.change_mode = o->change_mode == NULL                ? CLIENT_CHANGE_AUTO
                   : strcmp(o->change_mode, "data") == 0 ? CLIENT_CHANGE_DATA
                                                         : CLIENT_CHANGE_METADATA;
  client_pattern_set_init(&excl);
  for (size_t i = 0; i < o->nexclude; i++)
    client_pattern_add(&excl, o->exclude[i], NULL);
  bo.exclude = &excl;
  bo.no_exclude_files = o->no_exclude_files;
  bo.no_file_boundaries = o->no_file_boundaries;
  catch_signals();
  if (want_progress(o))
    client_progress_set_total(bo.progress, estimate_total(specs, o->npos));

  t0 = mono_s();
  rc = client_backup_run(&bo, specs, o->npos, &st, err, sizeof(err));
  dt = mono_s() - t0;
  client_progress_free(bo.progress);
  client_api_free(api);
  client_pattern_set_free(&excl);
  if (have_key)
    format_crypt_clear(&crypt);
  if (rc < 0) {
    fprintf(stderr, "cairn backup: %s\n", err);
    return 1;
  }
  fmt_time(st.backup_time, when);
  core_fmt_bytes(st.bytes, total, sizeof(total));
  core_fmt_bytes(st.new_bytes, fresh, sizeof(fresh));
  core_fmt_bytes(st.uploaded_bytes, sent, sizeof(sent));
  if (o->output && strcmp(o->output, "json") == 0) {
    printf("{\"snapshot\":\"%s/%s/%s\",\"bytes\":%llu,\"chunks\":%llu,\"new-chunks\":%llu,"
           "\"new-bytes\":%llu,\"uploaded-bytes\":%llu,\"reused-files\":%llu,"
           "\"reused-bytes\":%llu,\"grouped-files\":%llu,\"grouped-bytes\":%llu,"
           "\"read-files\":%llu,\"read-bytes\":%llu,\"catalog-entries\":%llu,"
           "\"seconds\":%.3f}\n",
           bo.backup_type, bo.backup_id, when, (unsigned long long)st.bytes,
           (unsigned long long)st.chunks, (unsigned long long)st.new_chunks,
           (unsigned long long)st.new_bytes, (unsigned long long)st.uploaded_bytes,
           (unsigned long long)st.reused_files, (unsigned long long)st.reused_bytes,
           (unsigned long long)st.grouped_files, (unsigned long long)st.grouped_bytes,
           (unsigned long long)st.read_files, (unsigned long long)st.read_bytes,
           (unsigned long long)st.catalog_entries, dt);
  } else {
    char ratio[32];
    if (st.new_bytes)
      snprintf(ratio, sizeof(ratio), "%.2f", (double)st.bytes / (double)st.new_bytes);
    else
      snprintf(ratio, sizeof(ratio), "all reused");
    printf("%s/%s/%s: %s in %.1f s (%.1f MB/s), new %s in %llu of %llu chunks, "
           "%s sent, dedup %s\n",
           bo.backup_type, bo.backup_id, when, total, dt,
           dt > 0 ? (double)st.bytes / dt / 1e6 : 0.0, fresh, (unsigned long long)st.new_chunks,
           (unsigned long long)st.chunks, sent, ratio);
    if (st.reused_files + st.grouped_files > 0) {
      char reused[32];
      core_fmt_bytes(st.reused_bytes + st.grouped_bytes, reused, sizeof(reused));
      printf("metadata mode: %llu unchanged files (%s) not read, %llu of them small files "
             "in unchanged groups\n",
             (unsigned long long)(st.reused_files + st.grouped_files), reused,
             (unsigned long long)st.grouped_files);
    }
  }
  return 0;
}
