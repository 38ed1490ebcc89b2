#include "core/core_config.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- small helpers ------------------------------------------------------ */

static int is_blank(char c)
{
  return c == ' ' || c == '\t';
}

static int is_ctl(unsigned char c)
{
  return c < 0x20 || c == 0x7f;
}

static void set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t err_len, const char *fmt, ...)
{
  if (err == NULL || err_len == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, err_len, fmt, ap);
  va_end(ap);
}

/* Validates a type, name or key given as a (possibly unterminated) span. */
static int valid_name_n(const char *s, size_t n)
{
  if (n == 0 || n > CORE_CONFIG_MAX_NAME || s[0] == '#')
    return 0;
  for (size_t i = 0; i < n; i++)
    if (is_ctl((unsigned char)s[i]) || s[i] == ' ')
      return 0;
  return 1;
}

static int valid_type_n(const char *s, size_t n)
{
  if (!valid_name_n(s, n) || memchr(s, ':', n) != NULL)
    return 0;
  /* PBS only recognizes a header whose first character is alphabetic. */
  return (s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z');
}

static int valid_value_n(const char *s, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (is_ctl((unsigned char)s[i]) && s[i] != '\t')
      return 0;
  return 1;
}

int core_config_valid_name(const char *s)
{
  return valid_name_n(s, strlen(s));
}

int core_config_valid_value(const char *s)
{
  size_t n = strlen(s);
  if (n > CORE_CONFIG_MAX_LINE - 2)
    return 0;
  if (n > 0 && (is_blank(s[0]) || is_blank(s[n - 1])))
    return 0;
  return valid_value_n(s, n);
}

/* ---- data model --------------------------------------------------------- */

void core_config_init(struct core_config *cfg)
{
  cfg->sections = NULL;
  cfg->nsections = 0;
  cfg->cap = 0;
}

static void section_free(struct core_config_section *sec)
{
  for (size_t i = 0; i < sec->nkv; i++) {
    core_free(sec->kv[i].key);
    core_free(sec->kv[i].value);
  }
  core_free(sec->kv);
  core_free(sec->type);
  core_free(sec->name);
  core_free(sec);
}

void core_config_free(struct core_config *cfg)
{
  for (size_t i = 0; i < cfg->nsections; i++)
    section_free(cfg->sections[i]);
  core_free(cfg->sections);
  core_config_init(cfg);
}

static struct core_config_section *find_name(const struct core_config *cfg, const char *name,
                                             size_t *index)
{
  for (size_t i = 0; i < cfg->nsections; i++) {
    if (strcmp(cfg->sections[i]->name, name) == 0) {
      if (index)
        *index = i;
      return cfg->sections[i];
    }
  }
  return NULL;
}

struct core_config_section *core_config_find(const struct core_config *cfg, const char *type,
                                             const char *name)
{
  struct core_config_section *sec = find_name(cfg, name, NULL);
  if (sec && type && strcmp(sec->type, type) != 0)
    return NULL;
  return sec;
}

/* Appends without the uniqueness check (the parser checks all names at once). */
static struct core_config_section *section_append(struct core_config *cfg, const char *type,
                                                  size_t type_len, const char *name,
                                                  size_t name_len)
{
  if (cfg->nsections == cfg->cap) {
    cfg->cap = cfg->cap ? cfg->cap * 2 : 8;
    cfg->sections = core_realloc(cfg->sections, cfg->cap * sizeof(*cfg->sections));
  }
  struct core_config_section *sec = core_new(struct core_config_section);
  sec->type = core_strndup(type, type_len);
  sec->name = core_strndup(name, name_len);
  cfg->sections[cfg->nsections++] = sec;
  return sec;
}

int core_config_add(struct core_config *cfg, const char *type, const char *name,
                    struct core_config_section **out)
{
  if (!valid_type_n(type, strlen(type)) || !core_config_valid_name(name))
    return CORE_ENAME;
  if (find_name(cfg, name, NULL))
    return CORE_EEXISTS;
  struct core_config_section *sec =
      section_append(cfg, type, strlen(type), name, strlen(name));
  if (out)
    *out = sec;
  return 0;
}

int core_config_remove(struct core_config *cfg, const char *type, const char *name)
{
  size_t i;
  struct core_config_section *sec = find_name(cfg, name, &i);
  if (sec == NULL || (type && strcmp(sec->type, type) != 0))
    return CORE_ENOTFOUND;
  section_free(sec);
  memmove(&cfg->sections[i], &cfg->sections[i + 1],
          (cfg->nsections - i - 1) * sizeof(*cfg->sections));
  cfg->nsections--;
  return 0;
}

const char *core_config_get(const struct core_config_section *sec, const char *key)
{
  for (size_t i = 0; i < sec->nkv; i++)
    if (strcmp(sec->kv[i].key, key) == 0)
      return sec->kv[i].value;
  return NULL;
}

static void kv_append(struct core_config_section *sec, const char *key, size_t key_len,
                      const char *value, size_t value_len)
{
  if (sec->nkv == sec->cap) {
    sec->cap = sec->cap ? sec->cap * 2 : 8;
    sec->kv = core_realloc(sec->kv, sec->cap * sizeof(*sec->kv));
  }
  sec->kv[sec->nkv].key = core_strndup(key, key_len);
  sec->kv[sec->nkv].value = core_strndup(value, value_len);
  sec->nkv++;
}

static void kv_remove_at(struct core_config_section *sec, size_t i)
{
  core_free(sec->kv[i].key);
  core_free(sec->kv[i].value);
  memmove(&sec->kv[i], &sec->kv[i + 1], (sec->nkv - i - 1) * sizeof(*sec->kv));
  sec->nkv--;
}

static int check_kv(const char *key, const char *value)
{
  if (!core_config_valid_name(key))
    return CORE_ENAME;
  /* The whole "\tKEY VALUE" line must stay readable by our own parser. */
  if (!core_config_valid_value(value) || 2 + strlen(key) + strlen(value) > CORE_CONFIG_MAX_LINE)
    return CORE_EINVAL;
  return 0;
}

int core_config_set(struct core_config_section *sec, const char *key, const char *value)
{
  int rc = check_kv(key, value);
  if (rc)
    return rc;
  size_t i = 0;
  while (i < sec->nkv && strcmp(sec->kv[i].key, key) != 0)
    i++;
  if (i == sec->nkv) {
    kv_append(sec, key, strlen(key), value, strlen(value));
    return 0;
  }
  char *copy = core_strdup(value);
  core_free(sec->kv[i].value);
  sec->kv[i].value = copy;
  for (size_t j = sec->nkv; j-- > i + 1;)
    if (strcmp(sec->kv[j].key, key) == 0)
      kv_remove_at(sec, j);
  return 0;
}

int core_config_append(struct core_config_section *sec, const char *key, const char *value)
{
  int rc = check_kv(key, value);
  if (rc)
    return rc;
  kv_append(sec, key, strlen(key), value, strlen(value));
  return 0;
}

int core_config_delete(struct core_config_section *sec, const char *key)
{
  int removed = 0;
  for (size_t j = sec->nkv; j-- > 0;) {
    if (strcmp(sec->kv[j].key, key) == 0) {
      kv_remove_at(sec, j);
      removed++;
    }
  }
  return removed;
}

/* ---- parser ------------------------------------------------------------- */

struct name_line {
  const char *name;
  unsigned line;
};

static int cmp_name_line(const void *a, const void *b)
{
  const struct name_line *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  if (c)
    return c;
  return x->line < y->line ? -1 : x->line > y->line;
}

/* Section names must be unique across types. Checking all of them at the end
 * with a sort keeps a hostile 1 MiB file of tiny sections at n log n instead
 * of the n^2 of checking each new header against all previous ones. */
static int check_unique(const struct core_config *cfg, const unsigned *lines, char *err,
                        size_t err_len)
{
  if (cfg->nsections < 2)
    return 0;
  struct name_line *v = core_malloc(cfg->nsections * sizeof(*v));
  for (size_t i = 0; i < cfg->nsections; i++) {
    v[i].name = cfg->sections[i]->name;
    v[i].line = lines[i];
  }
  qsort(v, cfg->nsections, sizeof(*v), cmp_name_line);
  /* Report the first duplicate in file order, as a reader would expect. */
  unsigned bad_line = 0;
  const char *bad_name = NULL;
  for (size_t i = 1; i < cfg->nsections; i++) {
    if (strcmp(v[i].name, v[i - 1].name) == 0 && (bad_name == NULL || v[i].line < bad_line)) {
      bad_line = v[i].line;
      bad_name = v[i].name;
    }
  }
  int rc = 0;
  if (bad_name) {
    set_err(err, err_len, "line %u: duplicate section '%s'", bad_line, bad_name);
    rc = CORE_EPARSE;
  }
  core_free(v);
  return rc;
}

int core_config_parse(struct core_config *cfg, const char *data, size_t len, char *err,
                      size_t err_len)
{
  struct core_config_section *cur = NULL;
  unsigned *lines = NULL; /* header line of each section, for duplicate reports */
  size_t lines_cap = 0;
  unsigned lineno = 0;
  size_t pos = 0;
  int rc = 0;

  if (err && err_len)
    err[0] = '\0';
  if (len > CORE_CONFIG_MAX_SIZE) {
    set_err(err, err_len, "file is larger than %d bytes", CORE_CONFIG_MAX_SIZE);
    return CORE_ETOOBIG;
  }

  /* FAIL("fmt", lineno, args...): the "line N: " prefix takes the line number
   * as the first argument after the format. */
#define FAIL(...)                                              \
  do {                                                         \
    set_err(err, err_len, "line %u: " __VA_ARGS__);            \
    rc = CORE_EPARSE;                                          \
    goto out;                                                  \
  } while (0)

  while (pos < len) {
    const char *line = data + pos;
    const char *nl = memchr(line, '\n', len - pos);
    size_t n = nl ? (size_t)(nl - line) : len - pos;
    pos += n + (nl != NULL);
    lineno++;

    if (n > CORE_CONFIG_MAX_LINE)
      FAIL("line longer than %d bytes", lineno, CORE_CONFIG_MAX_LINE);
    if (memchr(line, '\0', n))
      FAIL("NUL byte", lineno);
    if (n > 0 && line[n - 1] == '\r') /* tolerate a file saved with CRLF */
      n--;

    size_t i = 0;
    while (i < n && is_blank(line[i]))
      i++;
    if (i == n) { /* blank line: ends the section */
      cur = NULL;
      continue;
    }
    if (line[i] == '#')
      continue;

    if (i > 0) { /* indented: KEY [VALUE] */
      if (cur == NULL)
        FAIL("property line outside of a section", lineno);
      size_t k = i;
      while (k < n && !is_blank(line[k]))
        k++;
      if (!valid_name_n(line + i, k - i))
        FAIL("invalid key", lineno);
      size_t v = k, e = n;
      while (v < e && is_blank(line[v]))
        v++;
      while (e > v && is_blank(line[e - 1]))
        e--;
      if (!valid_value_n(line + v, e - v))
        FAIL("control character in the value of '%.*s'", lineno, (int)(k - i), line + i);
      kv_append(cur, line + i, k - i, line + v, e - v);
      continue;
    }

    /* Column 0: TYPE: NAME. A header directly after a property line (no
     * blank line) is accepted: PBS never writes that, but a hand edit might. */
    const char *colon = memchr(line, ':', n);
    if (colon == NULL)
      FAIL("missing ':' in section header (expected 'TYPE: NAME')", lineno);
    size_t t = (size_t)(colon - line);
    while (t > 0 && is_blank(line[t - 1]))
      t--;
    if (!valid_type_n(line, t))
      FAIL("invalid section type '%.*s'", lineno, (int)t, line);
    size_t b = (size_t)(colon - line) + 1, e = n;
    while (b < e && is_blank(line[b]))
      b++;
    while (e > b && is_blank(line[e - 1]))
      e--;
    if (b == e)
      FAIL("missing section name", lineno);
    if (!valid_name_n(line + b, e - b))
      FAIL("invalid section name '%.*s'", lineno, (int)(e - b), line + b);
    if (cfg->nsections == lines_cap) {
      lines_cap = lines_cap ? lines_cap * 2 : 16;
      lines = core_realloc(lines, lines_cap * sizeof(*lines));
    }
    lines[cfg->nsections] = lineno;
    cur = section_append(cfg, line, t, line + b, e - b);
  }
#undef FAIL

  rc = check_unique(cfg, lines, err, err_len);

out:
  core_free(lines);
  if (rc)
    core_config_free(cfg);
  return rc;
}

/* ---- writer ------------------------------------------------------------- */

int core_config_write(const struct core_config *cfg, struct core_buf *out)
{
  int rc = 0;
  for (size_t i = 0; i < cfg->nsections && rc == 0; i++) {
    const struct core_config_section *sec = cfg->sections[i];
    if (i > 0)
      rc = core_buf_append(out, "\n", 1);
    if (rc == 0)
      rc = core_buf_printf(out, "%s: %s\n", sec->type, sec->name);
    /* "\tKEY VALUE\n" even for an empty value: PBS's reader needs the blank. */
    for (size_t j = 0; j < sec->nkv && rc == 0; j++)
      rc = core_buf_printf(out, "\t%s %s\n", sec->kv[j].key, sec->kv[j].value);
  }
  return rc;
}

void core_config_digest(const void *data, size_t len, char hex[CORE_CONFIG_DIGEST_LEN])
{
  uint8_t d[CORE_SHA256_LEN];
  core_sha256(data, len, d);
  core_hex_encode(d, sizeof(d), hex);
}

/* ---- files -------------------------------------------------------------- */

/* Reads a whole file of at most CORE_CONFIG_MAX_SIZE bytes. *data is owned by
 * the caller (core_free) and NUL-terminated for convenience. */
static int read_file(const char *path, char **data, size_t *len)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  struct stat st;
  char *buf = NULL;
  size_t n = 0, cap;
  int rc = 0;

  if (fstat(fd, &st) != 0) {
    rc = -errno;
    goto out;
  }
  if (S_ISDIR(st.st_mode)) {
    rc = -EISDIR;
    goto out;
  }
  if (st.st_size > CORE_CONFIG_MAX_SIZE) {
    rc = CORE_ETOOBIG;
    goto out;
  }
  /* The size is a hint only: the file may be replaced or grow while we read
   * (a hand edit in place), so read until EOF, still bounded. */
  cap = (size_t)st.st_size + 1;
  buf = core_malloc(cap + 1);
  for (;;) {
    if (n == cap) {
      if (cap > CORE_CONFIG_MAX_SIZE) {
        rc = CORE_ETOOBIG;
        goto out;
      }
      cap = cap * 2 > CORE_CONFIG_MAX_SIZE + 1 ? CORE_CONFIG_MAX_SIZE + 1 : cap * 2;
      buf = core_realloc(buf, cap + 1);
    }
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      rc = -errno;
      goto out;
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  if (n > CORE_CONFIG_MAX_SIZE) {
    rc = CORE_ETOOBIG;
    goto out;
  }
  buf[n] = '\0';
  *data = buf;
  *len = n;
  buf = NULL;

out:
  core_free(buf);
  close(fd);
  return rc;
}

int core_config_load(const char *path, struct core_config *cfg,
                     char digest[CORE_CONFIG_DIGEST_LEN], char *err, size_t err_len)
{
  char *data = NULL;
  size_t len = 0;

  if (err && err_len)
    err[0] = '\0';
  int rc = read_file(path, &data, &len);
  if (rc == -ENOENT) {
    if (digest)
      core_config_digest("", 0, digest);
    return 0;
  }
  if (rc < 0) {
    if (rc == CORE_ETOOBIG)
      set_err(err, err_len, "file is larger than %d bytes", CORE_CONFIG_MAX_SIZE);
    return rc;
  }
  rc = core_config_parse(cfg, data, len, err, err_len);
  if (rc == 0 && digest)
    core_config_digest(data, len, digest);
  core_free(data);
  return rc;
}

int core_config_save(const char *path, const struct core_config *cfg, unsigned mode,
                     char digest[CORE_CONFIG_DIGEST_LEN])
{
  struct core_buf b;
  core_buf_init(&b, CORE_CONFIG_MAX_SIZE);
  int rc = core_config_write(cfg, &b);
  if (rc == 0)
    rc = core_file_replace(path, b.base ? b.base : "", b.len, mode, 1);
  if (rc == 0 && digest)
    core_config_digest(b.base ? b.base : "", b.len, digest);
  core_buf_free(&b);
  return rc;
}

char *core_config_lock_path(const char *cfg_path)
{
  const char *slash = strrchr(cfg_path, '/');
  const char *base = slash ? slash + 1 : cfg_path;
  size_t dir_len = (size_t)(base - cfg_path);
  size_t base_len = strlen(base);
  if (base_len > 4 && strcmp(base + base_len - 4, ".cfg") == 0)
    base_len -= 4;
  return core_asprintf("%.*s.%.*s.lck", (int)dir_len, cfg_path, (int)base_len, base);
}

static int64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int core_config_lock(const char *lock_path, int timeout_ms, int *fd_out)
{
  int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0660);
  if (fd < 0)
    return -errno;
  int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
  long sleep_ms = 1;
  for (;;) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
      *fd_out = fd;
      return 0;
    }
    if (errno == EINTR)
      continue;
    if (errno != EWOULDBLOCK) {
      int rc = -errno;
      close(fd);
      return rc;
    }
    int64_t left = deadline - now_ms();
    if (left <= 0) {
      close(fd);
      return CORE_ELOCKED;
    }
    /* Back off from 1 ms to 50 ms: config edits are short, so most waits end
     * in a few milliseconds, while a long holder costs us few wake-ups. */
    long ms = sleep_ms < left ? sleep_ms : (long)left;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    if (sleep_ms < 50)
      sleep_ms *= 2;
  }
}

void core_config_unlock(int fd)
{
  if (fd >= 0)
    close(fd); /* closing the last descriptor releases the flock */
}

int core_config_edit(struct core_config_edit *e)
{
  struct core_config cfg;
  uint8_t want[CORE_SHA256_LEN], have[CORE_SHA256_LEN];
  int check = e->expect_digest && e->expect_digest[0];
  char *lock_path = NULL;
  int fd = -1, rc;

  core_config_init(&cfg);
  e->digest[0] = '\0';
  e->err[0] = '\0';
  e->generation = 0;
  if (check && (strlen(e->expect_digest) != CORE_SHA256_HEX_LEN ||
                core_hex_decode(e->expect_digest, CORE_SHA256_LEN, want) != 0)) {
    set_err(e->err, sizeof(e->err), "digest is not a SHA-256 hex string");
    return CORE_EINVAL;
  }

  if (e->lock_path == NULL)
    lock_path = core_config_lock_path(e->path);
  int timeout = e->lock_timeout_ms == 0 ? CORE_CONFIG_LOCK_TIMEOUT_MS
                : e->lock_timeout_ms < 0 ? 0
                                         : e->lock_timeout_ms;
  rc = core_config_lock(e->lock_path ? e->lock_path : lock_path, timeout, &fd);
  if (rc < 0) {
    if (rc == CORE_ELOCKED)
      set_err(e->err, sizeof(e->err), "timeout waiting for the config lock");
    goto out;
  }

  rc = core_config_load(e->path, &cfg, e->digest, e->err, sizeof(e->err));
  if (rc < 0)
    goto out;
  if (check) {
    /* The digest was just computed by us, so it is valid hex. */
    core_hex_decode(e->digest, CORE_SHA256_LEN, have);
    if (memcmp(want, have, sizeof(want)) != 0) {
      set_err(e->err, sizeof(e->err),
              "detected modified configuration - file changed by other user? "
              "Try again.");
      rc = CORE_ESTALE;
      goto out;
    }
  }

  rc = e->apply(&cfg, e->arg);
  if (rc < 0)
    goto out;
  if (rc > 0) {
    rc = CORE_CONFIG_UNCHANGED;
    goto out;
  }
  rc = core_config_save(e->path, &cfg, e->mode ? e->mode : CORE_CONFIG_DEFAULT_MODE, e->digest);
  if (rc < 0)
    goto out;
  /* Bump after the rename and before unlocking: a reader that sees the new
   * generation is sure to read the new file, and the next writer (who needs
   * our lock) cannot interleave its own save between our rename and bump. */
  if (e->shmem)
    e->generation = core_shmem_gen_bump(e->shmem, e->slot);

out:
  core_config_unlock(fd);
  core_free(lock_path);
  core_config_free(&cfg);
  return rc;
}

/* ---- property strings --------------------------------------------------- */

static int valid_prop_key_n(const char *s, size_t n)
{
  if (n == 0 || n > CORE_CONFIG_MAX_NAME)
    return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '_'))
      return 0;
  }
  return 1;
}

void core_config_props_init(struct core_config_props *p)
{
  p->items = NULL;
  p->n = 0;
  p->cap = 0;
}

void core_config_props_free(struct core_config_props *p)
{
  for (size_t i = 0; i < p->n; i++) {
    core_free(p->items[i].key);
    core_free(p->items[i].value);
  }
  core_free(p->items);
  core_config_props_init(p);
}

static void prop_append(struct core_config_props *p, char *key, char *value)
{
  if (p->n == p->cap) {
    p->cap = p->cap ? p->cap * 2 : 4;
    p->items = core_realloc(p->items, p->cap * sizeof(*p->items));
  }
  p->items[p->n].key = key;
  p->items[p->n].value = value;
  p->n++;
}

/* Parses a quoted value at *sp (which points at the opening quote) and
 * advances *sp past the closing quote. Returns a new string or NULL. */
static char *parse_quoted(const char **sp)
{
  const char *s = *sp + 1;
  char *out = core_malloc(strlen(s) + 1);
  size_t n = 0;
  for (;;) {
    char c = *s++;
    if (c == '\0')
      goto fail;
    if (c == '"')
      break;
    if (c == '\\') {
      c = *s++;
      if (c == '"' || c == '\\')
        out[n++] = c;
      else if (c == 'n')
        out[n++] = '\n';
      else
        goto fail;
      continue;
    }
    out[n++] = c;
  }
  out[n] = '\0';
  *sp = s;
  return out;
fail:
  core_free(out);
  return NULL;
}

int core_config_props_parse(struct core_config_props *p, const char *s,
                            const char *default_key)
{
  while (*s) {
    const char *key = NULL;
    size_t key_len = 0;
    char *value;

    if (*s != '"') {
      size_t span = strcspn(s, ",=");
      if (s[span] == '=') {
        key = s;
        key_len = span;
        s += span + 1;
      }
    }
    if (*s == '"') {
      value = parse_quoted(&s);
      if (value == NULL || (*s != ',' && *s != '\0')) {
        core_free(value);
        goto fail;
      }
    } else {
      size_t span = strcspn(s, ",");
      if (key == NULL && span == 0)
        goto fail; /* empty item: ",," or a leading ',' */
      value = core_strndup(s, span);
      s += span;
    }
    if (key == NULL) {
      if (default_key == NULL) {
        core_free(value);
        goto fail;
      }
      key = default_key;
      key_len = strlen(default_key);
    }
    char *k = core_strndup(key, key_len);
    if (!valid_prop_key_n(key, key_len) || core_config_props_get(p, k) != NULL) {
      core_free(k);
      core_free(value);
      goto fail;
    }
    prop_append(p, k, value);
    if (*s == ',')
      s++;
  }
  return 0;

fail:
  core_config_props_free(p);
  return CORE_EPARSE;
}

const char *core_config_props_get(const struct core_config_props *p, const char *key)
{
  for (size_t i = 0; i < p->n; i++)
    if (strcmp(p->items[i].key, key) == 0)
      return p->items[i].value;
  return NULL;
}

int core_config_props_set(struct core_config_props *p, const char *key, const char *value)
{
  if (!valid_prop_key_n(key, strlen(key)))
    return CORE_EINVAL;
  for (size_t i = 0; i < p->n; i++) {
    if (strcmp(p->items[i].key, key) == 0) {
      char *copy = core_strdup(value);
      core_free(p->items[i].value);
      p->items[i].value = copy;
      return 0;
    }
  }
  prop_append(p, core_strdup(key), core_strdup(value));
  return 0;
}

int core_config_props_delete(struct core_config_props *p, const char *key)
{
  for (size_t i = 0; i < p->n; i++) {
    if (strcmp(p->items[i].key, key) == 0) {
      core_free(p->items[i].key);
      core_free(p->items[i].value);
      memmove(&p->items[i], &p->items[i + 1], (p->n - i - 1) * sizeof(*p->items));
      p->n--;
      return 1;
    }
  }
  return 0;
}

/* Quoting is needed for anything the plain syntax cannot carry, and for
 * leading/trailing blanks, which the config line format would trim away. */
static int needs_quotes(const char *v, int bare)
{
  size_t n = strlen(v);
  if (strpbrk(v, ",\"\\\n"))
    return 1;
  if (n > 0 && (is_blank(v[0]) || is_blank(v[n - 1])))
    return 1;
  /* A bare (default-key) value must not look like "key=..." or be empty. */
  return bare && (n == 0 || strchr(v, '='));
}

int core_config_props_build(const struct core_config_props *p, const char *default_key,
                            struct core_buf *out)
{
  int rc = 0;
  for (size_t i = 0; i < p->n && rc == 0; i++) {
    const char *v = p->items[i].value;
    int bare = default_key && strcmp(p->items[i].key, default_key) == 0;
    if (i > 0)
      rc = core_buf_append(out, ",", 1);
    if (rc == 0 && !bare)
      rc = core_buf_printf(out, "%s=", p->items[i].key);
    if (rc || !needs_quotes(v, bare)) {
      if (rc == 0)
        rc = core_buf_append_str(out, v);
      continue;
    }
    rc = core_buf_append(out, "\"", 1);
    for (; *v && rc == 0; v++) {
      if (*v == '"' || *v == '\\')
        rc = core_buf_printf(out, "\\%c", *v);
      else if (*v == '\n')
        rc = core_buf_append(out, "\\n", 2);
      else
        rc = core_buf_append(out, v, 1);
    }
    if (rc == 0)
      rc = core_buf_append(out, "\"", 1);
  }
  return rc;
}

int core_config_prop_get(const char *s, const char *key, const char *default_key, char **value)
{
  struct core_config_props p;
  core_config_props_init(&p);
  int rc = core_config_props_parse(&p, s, default_key);
  if (rc < 0)
    return rc;
  const char *v = core_config_props_get(&p, key);
  if (v)
    *value = core_strdup(v);
  else
    rc = CORE_ENOTFOUND;
  core_config_props_free(&p);
  return rc;
}
