/* store_path.h: where things live inside a datastore (PBS's scheme).
 *
 * DESIGN
 *   namespace "a/b"      -> <base>/ns/a/ns/b       (root namespace = <base>)
 *   group                -> <nspath>/<type>/<id>
 *   snapshot             -> <group>/<YYYY-MM-DDTHH:MM:SSZ>
 *   archive file         -> <snapshot>/<name>
 *   chunk                -> <base>/.chunks/<first 4 hex>/<64 hex>
 *
 * Every function validates the names it is given with format_name (so a path
 * can never be built from an unchecked, possibly hostile name) and writes into
 * a caller buffer of `cap` bytes. They return the length written (without the
 * NUL), CORE_ENAME for an invalid name, or CORE_ETOOBIG if the path does not
 * fit (the buffer then holds an empty string).
 *
 * `base` is a trusted string from the configuration and is not validated; a
 * trailing '/' on it is ignored. Passing base == NULL yields the path relative
 * to the datastore base, for use with openat() on a base directory fd; the
 * root namespace is then ".".
 *
 * Pure string functions: no I/O, safe on the loop thread.
 */
#ifndef STORE_PATH_H
#define STORE_PATH_H

#include <stddef.h>
#include <stdint.h>

#define STORE_PATH_MAX 4096                /* PATH_MAX, NUL included */
#define STORE_CHUNK_DIR ".chunks"          /* below <base> */
#define STORE_LOCK_FILE ".lock"            /* chunk store process lock, below <base> */
#define STORE_GC_STATUS_FILE ".gc-status"  /* below <base> */
#define STORE_OWNER_FILE "owner"           /* in a group directory */
#define STORE_NOTES_FILE "notes"           /* in a group or snapshot directory */
#define STORE_PROTECTED_FILE ".protected"  /* in a snapshot directory */
/* "abcd/<64 hex>": the chunk's path below <base>/.chunks. */
#define STORE_CHUNK_REL_LEN (4 + 1 + 64)

int store_path_ns(char *out, size_t cap, const char *base, const char *ns);
int store_path_group(char *out, size_t cap, const char *base, const char *ns,
                     const char *type, const char *id);
int store_path_snapshot(char *out, size_t cap, const char *base, const char *ns,
                        const char *type, const char *id, int64_t time);
/* `file` must pass format_name_archive() or be ".protected" or "notes". */
int store_path_file(char *out, size_t cap, const char *base, const char *ns, const char *type,
                    const char *id, int64_t time, const char *file);
/* <base>/.chunks/<prefix>/<hex>, or with base == NULL ".chunks/<prefix>/<hex>". */
int store_path_chunk(char *out, size_t cap, const char *base, const uint8_t digest[32]);
/* "abcd/<hex>" into a fixed buffer; cannot fail. */
void store_path_chunk_rel(char out[STORE_CHUNK_REL_LEN + 1], const uint8_t digest[32]);

#endif
