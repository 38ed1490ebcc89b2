#include "store/store_path.h"

#include "core/core_digest.h"
#include "core/core_error.h"
#include "format/format_name.h"

#include <string.h>

/* A tiny bounded string builder: once anything does not fit, `err` sticks and
 * the caller reports CORE_ETOOBIG. */
struct pbuf {
  char *out;
  size_t cap;
  size_t len;
  int err;
};

static void put(struct pbuf *p, const char *s, size_t n)
{
  if (p->err)
    return;
  if (n >= p->cap - p->len) {
    p->err = CORE_ETOOBIG;
    return;
  }
  memcpy(p->out + p->len, s, n);
  p->len += n;
  p->out[p->len] = '\0';
}

static void puts_(struct pbuf *p, const char *s)
{
  put(p, s, strlen(s));
}

/* Appends a path component, inserting a '/' unless the buffer is empty or
 * already ends in one (base "/"). */
static void comp(struct pbuf *p, const char *s, size_t n)
{
  if (p->len > 0 && p->out[p->len - 1] != '/')
    put(p, "/", 1);
  put(p, s, n);
}

static int finish(struct pbuf *p)
{
  if (p->err) {
    if (p->cap)
      p->out[0] = '\0';
    return p->err;
  }
  return (int)p->len;
}

static void start(struct pbuf *p, char *out, size_t cap, const char *base)
{
  p->out = out;
  p->cap = cap;
  p->len = 0;
  p->err = cap == 0 ? CORE_ETOOBIG : 0;
  if (cap)
    out[0] = '\0';
  if (base) {
    size_t n = strlen(base);
    while (n > 1 && base[n - 1] == '/')
      n--;
    put(p, base, n);
  }
}

/* Appends "ns/a/ns/b" for namespace "a/b"; nothing for the root. */
static void ns_components(struct pbuf *p, const char *ns)
{
  const char *s = ns;
  while (*s) {
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    comp(p, "ns", 2);
    comp(p, s, n);
    s += n;
    if (*s == '/')
      s++;
  }
}

int store_path_ns(char *out, size_t cap, const char *base, const char *ns)
{
  struct pbuf p;
  if (format_name_ns(ns))
    return CORE_ENAME;
  start(&p, out, cap, base);
  ns_components(&p, ns);
  if (p.len == 0)
    puts_(&p, ".");
  return finish(&p);
}

static int group(struct pbuf *p, char *out, size_t cap, const char *base, const char *ns,
                 const char *type, const char *id)
{
  if (format_name_ns(ns) || format_name_backup_type(type) || format_name_backup_id(id))
    return CORE_ENAME;
  start(p, out, cap, base);
  ns_components(p, ns);
  comp(p, type, strlen(type));
  comp(p, id, strlen(id));
  return 0;
}

int store_path_group(char *out, size_t cap, const char *base, const char *ns,
                     const char *type, const char *id)
{
  struct pbuf p;
  int rc = group(&p, out, cap, base, ns, type, id);
  return rc ? rc : finish(&p);
}

static int snapshot(struct pbuf *p, char *out, size_t cap, const char *base, const char *ns,
                    const char *type, const char *id, int64_t time)
{
  char ts[FORMAT_NAME_TIME_LEN + 1];
  if (format_name_time_format(time, ts))
    return CORE_ENAME;
  int rc = group(p, out, cap, base, ns, type, id);
  if (rc)
    return rc;
  comp(p, ts, FORMAT_NAME_TIME_LEN);
  return 0;
}

int store_path_snapshot(char *out, size_t cap, const char *base, const char *ns,
                        const char *type, const char *id, int64_t time)
{
  struct pbuf p;
  int rc = snapshot(&p, out, cap, base, ns, type, id, time);
  return rc ? rc : finish(&p);
}

int store_path_file(char *out, size_t cap, const char *base, const char *ns, const char *type,
                    const char *id, int64_t time, const char *file)
{
  struct pbuf p;
  if (file == NULL || (format_name_archive(file) < 0 && strcmp(file, STORE_PROTECTED_FILE) != 0 &&
                       strcmp(file, STORE_NOTES_FILE) != 0))
    return CORE_ENAME;
  int rc = snapshot(&p, out, cap, base, ns, type, id, time);
  if (rc)
    return rc;
  comp(&p, file, strlen(file));
  return finish(&p);
}

void store_path_chunk_rel(char out[STORE_CHUNK_REL_LEN + 1], const uint8_t digest[32])
{
  char hex[CORE_SHA256_HEX_LEN + 1];
  core_hex_encode(digest, 32, hex);
  memcpy(out, hex, 4);
  out[4] = '/';
  memcpy(out + 5, hex, 65);
}

int store_path_chunk(char *out, size_t cap, const char *base, const uint8_t digest[32])
{
  struct pbuf p;
  char rel[STORE_CHUNK_REL_LEN + 1];
  store_path_chunk_rel(rel, digest);
  start(&p, out, cap, base);
  comp(&p, STORE_CHUNK_DIR, strlen(STORE_CHUNK_DIR));
  comp(&p, rel, STORE_CHUNK_REL_LEN);
  return finish(&p);
}
