/* cairn_browse.c: `cairn ls`, `cairn find` and `cairn diff`, from catalogs
 * alone (format_catalog.h): no archive data is read. */
#include "cmd/cairn.h"

#include "client/client_api.h"
#include "client/client_pattern.h"
#include "client/client_restore.h"
#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_json.h"
#include "core/core_utf8.h"
#include "format/format_catalog.h"
#include "format/format_crypt.h"
#include "format/format_manifest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* What every browsing command opens: the api, the key, one snapshot. */
struct browse {
  struct opts *o;
  struct client_api *api;
  struct format_crypt crypt;
  int have_key;
  int json;
  struct core_json out; /* JSON output, printed at the end */
};

static int browse_open(struct browse *b, struct opts *o)
{
  memset(b, 0, sizeof(*b));
  b->o = o;
  b->json = o->output && strcmp(o->output, "json") == 0;
  b->have_key = load_key(o, &b->crypt);
  if (b->have_key < 0)
    return -1;
  if (open_api(o, 2, &b->api) < 0) {
    if (b->have_key)
      format_crypt_clear(&b->crypt);
    return -1;
  }
  if (b->json) {
    core_json_init(&b->out, 0);
    core_json_arr_open(&b->out);
  }
  return 0;
}

static void browse_close(struct browse *b, int ok)
{
  if (b->json) {
    size_t len;
    core_json_arr_close(&b->out);
    if (ok) {
      const char *t = core_json_text(&b->out, &len);
      fwrite(t, 1, len, stdout);
      fputc('\n', stdout);
    }
    core_json_free(&b->out);
  }
  client_api_free(b->api);
  if (b->have_key)
    format_crypt_clear(&b->crypt);
}

/* Opens snapshot TYPE/ID/TIME; `ro` must outlive it. */
static int snap_open(struct browse *b, const char *name, struct client_restore_opts *ro,
                     char **type, char **id, struct client_snapshot **snap, const char *cmd)
{
  char err[1024];
  memset(ro, 0, sizeof(*ro));
  if (client_snapshot_parse(name, type, id, &ro->backup_time) < 0) {
    fprintf(stderr, "cairn %s: \"%s\" is not TYPE/ID/TIME\n", cmd, name);
    return EXIT_USAGE;
  }
  ro->api = b->api;
  ro->ns = ns_of(b->o);
  ro->backup_type = *type;
  ro->backup_id = *id;
  ro->crypt = b->have_key ? &b->crypt : NULL;
  if (client_snapshot_open(ro, snap, err, sizeof(err)) < 0) {
    fprintf(stderr, "cairn %s: %s: %s\n", cmd, name, err);
    return 1;
  }
  return 0;
}

/* A path or name for a terminal: control bytes and invalid UTF-8 as \xNN. */
static const char *shown(const char *s, char *buf, size_t len)
{
  return core_utf8_quote(s, buf, len);
}

static void mode_string(const struct format_catalog_entry *e, char out[11])
{
  static const char rwx[] = "rwxrwxrwx";
  out[0] = format_catalog_type_char(e->type);
  if (out[0] == 'h')
    out[0] = '-';
  for (int i = 0; i < 9; i++)
    out[1 + i] = (e->mode & (0400u >> i)) ? rwx[i] : '-';
  if (e->mode & S_ISUID)
    out[3] = out[3] == 'x' ? 's' : 'S';
  if (e->mode & S_ISGID)
    out[6] = out[6] == 'x' ? 's' : 'S';
  if (e->mode & S_ISVTX)
    out[9] = out[9] == 'x' ? 't' : 'T';
  out[10] = '\0';
}

static void entry_json(struct core_json *j, const struct format_catalog_entry *e)
{
  const char *slash = strrchr(e->path, '/');
  core_json_key(j, "path");
  core_json_strn(j, e->path, e->path_len);
  core_json_key(j, "name");
  core_json_str(j, slash ? slash + 1 : e->path);
  core_json_kv_str(j, "type", format_catalog_type_name(e->type));
  core_json_kv_uint(j, "mode", e->mode & 07777);
  core_json_kv_uint(j, "uid", e->uid);
  core_json_kv_uint(j, "gid", e->gid);
  core_json_kv_uint(j, "size", e->size);
  core_json_kv_int(j, "mtime", e->mtime);
  core_json_kv_uint(j, "mtime-ns", e->mtime_ns);
  if (e->link_len > 0) {
    core_json_key(j, "link");
    core_json_strn(j, e->link, e->link_len);
  }
  if (!core_utf8_valid(e->path, e->path_len))
    core_json_kv_bool(j, "path-lossy", 1); /* invalid UTF-8 shown with U+FFFD */
}

static void entry_text(const struct format_catalog_entry *e, int long_format, const char *prefix)
{
  char p[2 * FORMAT_CATALOG_PATH_MAX + 16], l[2 * FORMAT_CATALOG_PATH_MAX + 16];
  shown(e->path, p, sizeof(p));
  if (!long_format) {
    printf("%s%s\n", prefix, p);
    return;
  }
  char mode[11], when[32];
  time_t t = (time_t)e->mtime;
  struct tm tm;
  mode_string(e, mode);
  if (gmtime_r(&t, &tm))
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
  else
    snprintf(when, sizeof(when), "%lld", (long long)e->mtime);
  printf("%s%s %6u %6u %12llu %s %s", prefix, mode, e->uid, e->gid, (unsigned long long)e->size,
         when, p);
  if (e->link_len > 0)
    printf(" %s %s", e->type == FORMAT_CATALOG_HARDLINK ? "link to" : "->",
           shown(e->link, l, sizeof(l)));
  putchar('\n');
}

static void emit(struct browse *b, const struct format_catalog_entry *e, const char *snapshot,
                 const char *archive)
{
  if (b->json) {
    core_json_obj_open(&b->out);
    if (snapshot)
      core_json_kv_str(&b->out, "snapshot", snapshot);
    if (archive)
      core_json_kv_str(&b->out, "archive", archive);
    entry_json(&b->out, e);
    core_json_obj_close(&b->out);
    return;
  }
  if (snapshot) {
    char pre[600];
    snprintf(pre, sizeof(pre), "%s %s: ", snapshot, archive);
    entry_text(e, b->o->long_format, pre);
  } else {
    entry_text(e, b->o->long_format, "");
  }
}

/* ---- ls ---- */

/* Lists the children of directory `dir` ("." for the root). */
static int list_dir(struct browse *b, const struct format_catalog *cat, const char *dir)
{
  struct format_catalog_iter *it = core_new(struct format_catalog_iter);
  struct format_catalog_entry e;
  char *prefix = strcmp(dir, ".") == 0 ? core_strdup("") : core_asprintf("%s/", dir);
  size_t plen = strlen(prefix);
  int rc;

  rc = format_catalog_children(it, cat, prefix, plen);
  while (rc >= 0 && (rc = format_catalog_next_child(it, prefix, plen, &e)) > 0)
    emit(b, &e, NULL, NULL);
  core_free(prefix);
  core_free(it);
  return rc < 0 ? rc : 0;
}

int cmd_ls(struct opts *o)
{
  struct browse b;
  struct client_restore_opts ro;
  struct client_snapshot *snap = NULL;
  struct format_catalog cat;
  struct format_catalog_iter *it = NULL;
  struct format_catalog_entry e;
  uint8_t *buf = NULL;
  char *type = NULL, *id = NULL, err[1024];
  const char *path;
  int rc;

  if (o->npos < 2 || o->npos > 3) {
    fprintf(stderr, "cairn ls: needs SNAPSHOT ARCHIVE [PATH] (see cairn ls --help)\n");
    return EXIT_USAGE;
  }
  memset(&cat, 0, sizeof(cat));
  path = o->npos == 3 ? o->pos[2] : ".";
  while (*path == '/')
    path++;
  if (*path == '\0')
    path = ".";
  if (browse_open(&b, o) < 0)
    return 1;
  if ((rc = snap_open(&b, o->pos[0], &ro, &type, &id, &snap, "ls")) != 0)
    goto out;
  if (client_snapshot_catalog(snap, o->pos[1], &buf, &cat, err, sizeof(err)) < 0) {
    fprintf(stderr, "cairn ls: %s\n", err);
    rc = 1;
    goto out;
  }
  {
    /* "a/b/" names the directory a/b */
    char *p = core_strdup(path);
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
      p[--n] = '\0';
    it = core_new(struct format_catalog_iter);
    rc = format_catalog_lookup(&cat, it, p, &e);
    if (rc == 0) {
      char q[600];
      fprintf(stderr, "cairn ls: %s: no such entry\n", core_utf8_quote(p, q, sizeof(q)));
      rc = 1;
    } else if (rc < 0) {
      fprintf(stderr, "cairn ls: the catalog is damaged\n");
      rc = 1;
    } else if (e.type == FORMAT_CATALOG_DIR) {
      rc = list_dir(&b, &cat, p) < 0 ? 1 : 0;
    } else {
      emit(&b, &e, NULL, NULL);
      rc = 0;
    }
    core_free(p);
  }
  {
    /* a debug counter (tests): how much of a catalog index this ls read */
    uint64_t fetched, total;
    format_catalog_chunk_stats(&cat, &fetched, &total);
    if (total > 0 && getenv("CAIRN_CATALOG_STATS") != NULL)
      fprintf(stderr, "catalog index: %llu of %llu chunks fetched\n",
              (unsigned long long)fetched, (unsigned long long)total);
  }
out:
  format_catalog_close(&cat); /* the index form's source (a no-op for a blob) */
  client_snapshot_close(snap); /* its session ends through the api */
  browse_close(&b, rc == 0);
  core_free(it);
  core_free(buf);
  core_free(type);
  core_free(id);
  return rc;
}

/* ---- find ---- */

/* Searches every catalog of one snapshot (or the one of --archive). */
static int find_in(struct browse *b, const char *snapname, const struct client_pattern_set *pat,
                   uint64_t *hits)
{
  struct client_restore_opts ro;
  struct client_snapshot *snap = NULL;
  char *type = NULL, *id = NULL, err[1024];
  int rc;

  if ((rc = snap_open(b, snapname, &ro, &type, &id, &snap, "find")) != 0)
    goto out;
  const struct format_manifest *m = client_snapshot_manifest(snap);
  for (size_t i = 0; i < m->nfiles; i++) {
    const char *fn = m->files[i].filename;
    char cname[FORMAT_NAME_ARCHIVE_MAX + 16];
    size_t n = strlen(fn);
    if (format_catalog_name(fn, cname, sizeof(cname)) < 0)
      continue; /* not a directory archive */
    if (b->o->archive && strcmp(b->o->archive, fn) != 0 &&
        !(strncmp(b->o->archive, fn, n - 5) == 0 && b->o->archive[n - 5] == '\0'))
      continue;
    struct format_catalog cat;
    uint8_t *buf = NULL;
    if (client_snapshot_catalog(snap, fn, &buf, &cat, err, sizeof(err)) < 0) {
      char iname[FORMAT_NAME_ARCHIVE_MAX + 16];
      fprintf(stderr, "cairn find: %s %s: %s\n", snapname, fn, err);
      if (format_manifest_find_file(m, cname) != NULL ||
          (format_catalog_index_name(fn, iname, sizeof(iname)) == 0 &&
           format_manifest_find_file(m, iname) != NULL))
        rc = 1; /* there is a catalog, and it is bad */
      continue;
    }
    struct format_catalog_iter *it = core_new(struct format_catalog_iter);
    struct format_catalog_entry e;
    int nrc;
    format_catalog_iter_init(it, &cat);
    while ((nrc = format_catalog_next(it, &e)) > 0) {
      if (client_pattern_match(pat, e.path, e.type == FORMAT_CATALOG_DIR)) {
        emit(b, &e, snapname, fn);
        (*hits)++;
      }
    }
    if (nrc < 0) {
      /* an index is checked window by window as it is read */
      fprintf(stderr, "cairn find: %s %s: the catalog is damaged: %s\n", snapname, fn,
              core_strerror(nrc));
      rc = 1;
    }
    core_free(it);
    format_catalog_close(&cat);
    core_free(buf);
  }
out:
  client_snapshot_close(snap);
  core_free(type);
  core_free(id);
  return rc;
}

static int64_t *group_times(struct browse *b, const char *group, size_t *n)
{
  struct core_buf q;
  yajl_val tree = NULL, data;
  char err[512];
  int64_t *times = NULL;
  *n = 0;
  core_buf_init(&q, 4096);
  core_buf_printf(&q, "/api2/json/admin/datastore/%s/snapshots", client_api_store(b->api));
  if (parse_group(group, &q) < 0) {
    core_buf_free(&q);
    return NULL;
  }
  if (*ns_of(b->o))
    client_query_add(&q, "ns", ns_of(b->o));
  if (client_api_json(b->api, "GET", q.base, NULL, 0, NULL, &tree, &data, err, sizeof(err)) ==
          0 &&
      data && YAJL_IS_ARRAY(data)) {
    times = core_calloc(data->u.array.len + 1, sizeof(*times));
    for (size_t i = 0; i < data->u.array.len; i++) {
      int64_t t = int_or(data->u.array.values[i], "backup-time", 0);
      if (t > 0)
        times[(*n)++] = t;
    }
  } else {
    fprintf(stderr, "cairn find: %s\n", err);
  }
  if (tree)
    yajl_tree_free(tree);
  core_buf_free(&q);
  return times;
}

static int cmp_i64(const void *a, const void *b)
{
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

int cmd_find(struct opts *o)
{
  struct browse b;
  struct client_pattern_set pat;
  uint64_t hits = 0;
  int rc = 0;

  if (!((o->group && o->npos == 1) || (!o->group && o->npos == 2))) {
    fprintf(stderr, "cairn find: needs SNAPSHOT PATTERN, or --group TYPE/ID PATTERN\n");
    return EXIT_USAGE;
  }
  client_pattern_set_init(&pat);
  if (client_pattern_add(&pat, o->pos[o->npos - 1], NULL) < 0 || pat.n == 0) {
    fprintf(stderr, "cairn find: an empty or too long pattern\n");
    client_pattern_set_free(&pat);
    return EXIT_USAGE;
  }
  if (browse_open(&b, o) < 0) {
    client_pattern_set_free(&pat);
    return 1;
  }
  if (o->group) {
    size_t n;
    int64_t *times = group_times(&b, o->group, &n);
    if (times == NULL) {
      fprintf(stderr, "cairn find: \"%s\" is not a group TYPE/ID with snapshots\n", o->group);
      rc = 1;
    } else {
      qsort(times, n, sizeof(*times), cmp_i64);
      for (size_t i = 0; i < n; i++) {
        char name[400], when[FORMAT_NAME_TIME_LEN + 1];
        fmt_time(times[i], when);
        snprintf(name, sizeof(name), "%s/%s", o->group, when);
        if (find_in(&b, name, &pat, &hits) != 0)
          rc = 1;
      }
    }
    core_free(times);
  } else {
    rc = find_in(&b, o->pos[0], &pat, &hits);
  }
  browse_close(&b, rc == 0);
  client_pattern_set_free(&pat);
  if (rc == 0 && hits == 0 && !b.json)
    fprintf(stderr, "cairn find: nothing matches\n");
  return rc;
}

/* ---- diff ---- */

static int entry_changed(const struct format_catalog_entry *a, const struct format_catalog_entry *b)
{
  return a->type != b->type || a->mode != b->mode || a->uid != b->uid || a->gid != b->gid ||
         a->size != b->size || a->mtime != b->mtime || a->mtime_ns != b->mtime_ns ||
         a->link_len != b->link_len || memcmp(a->link, b->link, a->link_len) != 0 ||
         (a->type != FORMAT_CATALOG_DIR && a->ctime != b->ctime) || a->rdev != b->rdev;
}

static void diff_emit(struct browse *b, char what, const struct format_catalog_entry *e)
{
  if (b->json) {
    core_json_obj_open(&b->out);
    core_json_kv_str(&b->out, "change",
                     what == '+' ? "added" : what == '-' ? "removed" : "changed");
    entry_json(&b->out, e);
    core_json_obj_close(&b->out);
  } else {
    char pre[3] = {what, ' ', '\0'};
    entry_text(e, b->o->long_format, pre);
  }
}

int cmd_diff(struct opts *o)
{
  struct browse b;
  struct client_restore_opts ro[2];
  struct client_snapshot *snap[2] = {NULL, NULL};
  struct format_catalog cat[2];
  struct format_catalog_iter *it[2] = {NULL, NULL};
  struct format_catalog_entry e[2];
  uint8_t *buf[2] = {NULL, NULL};
  char *type[2] = {NULL, NULL}, *id[2] = {NULL, NULL}, err[1024];
  int have[2], rc = 0;

  if (o->npos != 3) {
    fprintf(stderr, "cairn diff: needs SNAPSHOT1 SNAPSHOT2 ARCHIVE (see cairn diff --help)\n");
    return EXIT_USAGE;
  }
  if (browse_open(&b, o) < 0)
    return 1;
  for (int k = 0; k < 2; k++) {
    if ((rc = snap_open(&b, o->pos[k], &ro[k], &type[k], &id[k], &snap[k], "diff")) != 0)
      goto out;
    if (client_snapshot_catalog(snap[k], o->pos[2], &buf[k], &cat[k], err, sizeof(err)) < 0) {
      fprintf(stderr, "cairn diff: %s: %s\n", o->pos[k], err);
      rc = 1;
      goto out;
    }
    it[k] = core_new(struct format_catalog_iter);
    format_catalog_iter_init(it[k], &cat[k]);
  }
  /* a merge of two sorted lists: a blob is validated whole, an index
   * window by window as the merge reads it (a damaged one stops it) */
  have[0] = format_catalog_next(it[0], &e[0]);
  have[1] = format_catalog_next(it[1], &e[1]);
  while ((have[0] > 0 || have[1] > 0) && have[0] >= 0 && have[1] >= 0) {
    int c = have[0] <= 0  ? 1
            : have[1] <= 0 ? -1
                           : format_catalog_cmp(e[0].path, e[0].path_len, e[1].path, e[1].path_len);
    if (c < 0) {
      diff_emit(&b, '-', &e[0]);
      have[0] = format_catalog_next(it[0], &e[0]);
    } else if (c > 0) {
      diff_emit(&b, '+', &e[1]);
      have[1] = format_catalog_next(it[1], &e[1]);
    } else {
      if (entry_changed(&e[0], &e[1]))
        diff_emit(&b, 'M', &e[1]);
      have[0] = format_catalog_next(it[0], &e[0]);
      have[1] = format_catalog_next(it[1], &e[1]);
    }
  }
  if (have[0] < 0 || have[1] < 0) {
    fprintf(stderr, "cairn diff: %s: the catalog is damaged\n", o->pos[have[0] < 0 ? 0 : 1]);
    rc = 1;
  }
out:
  for (int k = 0; k < 2; k++) {
    if (it[k] != NULL)
      format_catalog_close(&cat[k]); /* before its snapshot: an index reads through it */
    core_free(it[k]);
    core_free(buf[k]);
    client_snapshot_close(snap[k]);
    core_free(type[k]);
    core_free(id[k]);
  }
  browse_close(&b, rc == 0);
  return rc;
}
