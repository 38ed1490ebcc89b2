/* core_config.h: section-config files (PBS text format), atomic saves, locks,
 * and property strings.
 *
 * DESIGN
 * A config file is an ordered list of sections:
 *
 *     datastore: default
 *     \tpath /srv/backup
 *     \ttuning sync-level=file,gc-atime-cutoff=1445
 *
 *     datastore: other
 *     \t...
 *
 * A header `TYPE: NAME` starts at column 0; property lines are indented (tab or
 * spaces) `KEY VALUE`, the value being the rest of the line, trimmed (may be
 * empty). A blank line ends a section. Lines whose first non-blank character
 * is '#' are comments; they are accepted and dropped on rewrite. Section names
 * are unique within a file whatever their type (PBS keys sections by name).
 * A key may repeat inside a section (PBS writes array properties that way); order is
 * kept. The data model is deliberately schema-less: unknown types and keys are
 * kept byte for byte, in order, so a file written by a newer Cairn (or by PBS)
 * survives an edit by an older one. Interpreting values is the job of the
 * module that owns the file (store/ for datastore.cfg, ...).
 *
 * The writer emits `TYPE: NAME\n`, then `\tKEY VALUE\n` per key, and one empty
 * line between sections, as PBS does; for any file it wrote, parse + write
 * gives identical bytes.
 *
 * Concurrency: a file is changed only under its lock file (flock, exclusive,
 * bounded wait), by writing a temporary file in the same directory, fsyncing
 * it, renaming it over the target and fsyncing the directory. Readers never
 * lock: rename makes them see either the old or the new file. The SHA-256 of
 * the file bytes is its `digest`, which API clients send back to detect
 * lost updates (CORE_ESTALE). core_config_edit() is the one path that does
 * lock + load + digest check + change + save + generation bump + unlock.
 *
 * Limits: files over CORE_CONFIG_MAX_SIZE are refused (CORE_ETOOBIG), lines
 * over CORE_CONFIG_MAX_LINE, NUL bytes, control characters and malformed
 * lines are CORE_EPARSE with "line N: ..." in the caller's error buffer.
 *
 * Threads: parse/write/find/get/set and the property-string functions are
 * pure memory work, safe on any thread for distinct objects; a struct
 * core_config is not synchronized (share it read-only, e.g. as an immutable
 * snapshot). load/save/lock/edit do blocking file I/O: call them from a pool
 * job or from cairn-admin, never from the loop thread.
 */
#ifndef CORE_CONFIG_H
#define CORE_CONFIG_H

#include "core/core_buf.h"
#include "core/core_digest.h"
#include "core/core_shmem.h"

#include <stddef.h>
#include <stdint.h>

#define CORE_CONFIG_MAX_SIZE (1024 * 1024) /* bytes in one config file */
#define CORE_CONFIG_MAX_LINE 4096          /* bytes in one line, without the newline */
#define CORE_CONFIG_MAX_NAME 255           /* bytes in a type, name or key */
#define CORE_CONFIG_ERR_LEN 256            /* a sufficient error buffer */
#define CORE_CONFIG_DIGEST_LEN (CORE_SHA256_HEX_LEN + 1) /* hex digest + NUL */
#define CORE_CONFIG_DEFAULT_MODE 0640
#define CORE_CONFIG_LOCK_TIMEOUT_MS 10000  /* default bounded wait for a config lock */

/* Returned (positive) by a core_config_edit() callback that decided nothing
 * needs saving. */
#define CORE_CONFIG_UNCHANGED 1

/* A property to set, borrowed from its owner (a request, argv): what config
 * edits take. */
struct core_kv {
  const char *key;
  const char *value;
};

struct core_config_kv {
  char *key;    /* owned; a valid name (see core_config_valid_name) */
  char *value;  /* owned; may be ""; no control characters but tab, no leading/trailing blanks */
};

struct core_config_section {
  char *type;                /* owned, read-only: e.g. "datastore" */
  char *name;                /* owned, read-only: e.g. "default" */
  struct core_config_kv *kv; /* read-only: `nkv` pairs in file order */
  size_t nkv;
  size_t cap;                /* private */
};

/* Sections are individually allocated, so a section pointer stays valid
 * while other sections are added or removed; it dies with core_config_remove()
 * of that section or core_config_free(). */
struct core_config {
  struct core_config_section **sections; /* read-only: `nsections` in file order */
  size_t nsections;
  size_t cap;                            /* private */
};

/* ---- data model --------------------------------------------------------- */

/* Makes `cfg` an empty config. */
void core_config_init(struct core_config *cfg);
/* Frees everything `cfg` holds and leaves it empty (re-usable). */
void core_config_free(struct core_config *cfg);

/* True if `s` may be a section type, section name or key: 1..255 bytes, no
 * whitespace, no control characters, not starting with '#'. Types also must
 * start with a letter and contain no ':' (checked by core_config_add). */
int core_config_valid_name(const char *s);
/* True if `s` may be a value: no control characters except tab, no leading or
 * trailing blanks (they would not survive a round trip), at most
 * CORE_CONFIG_MAX_LINE - 2 bytes. */
int core_config_valid_value(const char *s);

/* The section called `name`; with `type` non-NULL it must also have that
 * type. NULL if there is none. */
struct core_config_section *core_config_find(const struct core_config *cfg, const char *type,
                                             const char *name);
/* Appends an empty section. `*out` (may be NULL) receives it.
 * Returns 0, CORE_ENAME (invalid type or name) or CORE_EEXISTS (the name is
 * taken, by a section of any type). */
int core_config_add(struct core_config *cfg, const char *type, const char *name,
                    struct core_config_section **out);
/* Removes and frees a section. Returns 0 or CORE_ENOTFOUND. */
int core_config_remove(struct core_config *cfg, const char *type, const char *name);

/* The value of the first `key` in the section, or NULL. Valid until the key
 * is set or deleted, or the section freed. */
const char *core_config_get(const struct core_config_section *sec, const char *key);
/* Sets `key`: replaces the value of its first occurrence in place (keeping
 * the key's position) and drops any later repeats; appends it if absent.
 * Returns 0, CORE_ENAME (invalid key) or CORE_EINVAL (invalid value). */
int core_config_set(struct core_config_section *sec, const char *key, const char *value);
/* Appends one more `key value` line even if the key exists (array values).
 * Returns 0, CORE_ENAME or CORE_EINVAL. */
int core_config_append(struct core_config_section *sec, const char *key, const char *value);
/* Removes every occurrence of `key`; returns how many were removed (0 if none). */
int core_config_delete(struct core_config_section *sec, const char *key);

/* ---- text format -------------------------------------------------------- */

/* Parses `len` bytes into `cfg`, which must be empty (freshly initialized).
 * On failure `cfg` is left empty and, if `err` is non-NULL, a message like
 * "line 3: missing ':' in section header" is written to it.
 * Returns 0, CORE_ETOOBIG (len > CORE_CONFIG_MAX_SIZE) or CORE_EPARSE. */
int core_config_parse(struct core_config *cfg, const char *data, size_t len, char *err,
                      size_t err_len);
/* Appends the text form of `cfg` to `out` (an empty config is zero bytes).
 * Returns 0, CORE_ETOOBIG (past out->max; init the buffer with
 * CORE_CONFIG_MAX_SIZE so anything written can be read back) or UV_ENOMEM. */
int core_config_write(const struct core_config *cfg, struct core_buf *out);

/* `hex` receives SHA-256(data) as 64 lowercase hex characters and a NUL. */
void core_config_digest(const void *data, size_t len, char hex[CORE_CONFIG_DIGEST_LEN]);

/* ---- files (blocking: pool thread or cairn-admin) ----------------------- */

/* Reads and parses `path` into the empty `cfg`. A missing file is an empty
 * config whose digest is that of zero bytes. `digest` (may be NULL) receives
 * the digest of the bytes read. `err` as for core_config_parse.
 * Returns 0, CORE_ETOOBIG, CORE_EPARSE, or a negative errno (EACCES, EISDIR, ...). */
int core_config_load(const char *path, struct core_config *cfg,
                     char digest[CORE_CONFIG_DIGEST_LEN], char *err, size_t err_len);

/* Writes `cfg` to `path` with core_file_replace() (durably). `digest` (may be
 * NULL) receives the digest of the bytes written. The caller holds the lock.
 * Returns 0, CORE_ETOOBIG, or a negative errno. */
int core_config_save(const char *path, const struct core_config *cfg, unsigned mode,
                     char digest[CORE_CONFIG_DIGEST_LEN]);

/* The lock file for a config file: "<dir>/.<base>.lck", where <base> is the
 * file name without a ".cfg" suffix (datastore.cfg -> .datastore.lck, as PBS).
 * Returns a string to free with core_free(). */
char *core_config_lock_path(const char *cfg_path);

/* Takes an exclusive flock on `lock_path` (created 0660 if missing), waiting
 * at most `timeout_ms` (0: one attempt) by polling with short sleeps, so it
 * never hangs forever on a stuck holder. `*fd` receives the lock; release it
 * with core_config_unlock(). flock locks belong to the open file, so this
 * also excludes other threads of the same process.
 * Returns 0, CORE_ELOCKED (still held by someone else at the deadline), or a
 * negative errno. */
int core_config_lock(const char *lock_path, int timeout_ms, int *fd);
void core_config_unlock(int fd);

/* The locked read-modify-write of one config file.
 * The callback gets the current parsed config and changes it in memory; it
 * returns 0 to save, CORE_CONFIG_UNCHANGED to skip the save, or a negative
 * code to abort (nothing is written; the code is returned). It runs under the
 * lock: keep it to memory work. */
typedef int (*core_config_edit_fn)(struct core_config *cfg, void *arg);

struct core_config_edit {
  /* in: set by the caller */
  const char *path;          /* the config file */
  const char *lock_path;     /* NULL: core_config_lock_path(path) */
  int lock_timeout_ms;       /* 0: CORE_CONFIG_LOCK_TIMEOUT_MS; < 0: one attempt */
  const char *expect_digest; /* NULL or "": no check; else hex digest the client last saw */
  unsigned mode;             /* mode of the written file; 0: CORE_CONFIG_DEFAULT_MODE */
  core_config_edit_fn apply; /* required */
  void *arg;                 /* passed to apply */
  struct core_shmem *shmem;  /* NULL: no generation bump */
  enum core_gen_slot slot;   /* bumped after a save when shmem is set */
  /* out: filled by core_config_edit */
  char digest[CORE_CONFIG_DIGEST_LEN]; /* digest of the file as left (after save, or unchanged) */
  uint64_t generation;                 /* the slot's value after the bump; 0 without shmem */
  char err[CORE_CONFIG_ERR_LEN];       /* message for parse errors and stale digests */
};

/* Lock, load, check `expect_digest` (mismatch: CORE_ESTALE, nothing is
 * written), apply, save, bump the generation (after the rename, so a reader
 * that sees the new generation reads the new file), unlock.
 * Returns 0 (saved), CORE_CONFIG_UNCHANGED, CORE_ELOCKED, CORE_ESTALE,
 * CORE_EINVAL (expect_digest is not a hex SHA-256), the load errors,
 * the callback's negative code, or the save errors. */
int core_config_edit(struct core_config_edit *e);

/* ---- property strings --------------------------------------------------- */

/* Property strings pack several sub-values in one config value, e.g.
 * `sync-level=file,gc-atime-cutoff=1445` or `type=read-only,message="a, b"`.
 * Items are separated by ','; a value is either plain (up to the next ',') or
 * double-quoted with the escapes \" \\ \n (PBS's syntax). A schema may name a
 * default key that is written without "key=": with default_key "type",
 * `read-only,message=x` has type=read-only. */
struct core_config_prop {
  char *key;    /* owned; [A-Za-z0-9_-]+ (the default key when it was omitted) */
  char *value;  /* owned; unquoted and unescaped */
};

struct core_config_props {
  struct core_config_prop *items; /* read-only: `n` items in string order */
  size_t n;
  size_t cap;                     /* private */
};

void core_config_props_init(struct core_config_props *p);
void core_config_props_free(struct core_config_props *p);
/* Parses `s` into the empty `p`. `default_key` may be NULL (then every item
 * needs "key="). A trailing ',' is tolerated.
 * Returns 0 or CORE_EPARSE (bad quoting, empty item, invalid or duplicate
 * key, an item without key and no default key); `p` is then left empty. */
int core_config_props_parse(struct core_config_props *p, const char *s,
                            const char *default_key);
/* The value of `key`, or NULL. Valid until the key is set or deleted. */
const char *core_config_props_get(const struct core_config_props *p, const char *key);
/* Replaces the value in place, or appends the key. Returns 0 or CORE_EINVAL
 * (invalid key). */
int core_config_props_set(struct core_config_props *p, const char *key, const char *value);
/* Returns 1 if the key was removed, 0 if absent. */
int core_config_props_delete(struct core_config_props *p, const char *key);
/* Appends the string form to `out`, items in order, `default_key` (may be
 * NULL) without "key=", values quoted only when they need it.
 * Returns 0, CORE_ETOOBIG or UV_ENOMEM. */
int core_config_props_build(const struct core_config_props *p, const char *default_key,
                            struct core_buf *out);
/* One-shot lookup: `*value` receives a copy of `key`'s value (free with
 * core_free). Returns 0, CORE_ENOTFOUND or CORE_EPARSE. */
int core_config_prop_get(const char *s, const char *key, const char *default_key, char **value);

#endif
