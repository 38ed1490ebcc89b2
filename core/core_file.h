/* core_file.h: whole-file helpers for small files (blocking: pool threads,
 * startup and the offline tools only). */
#ifndef CORE_FILE_H
#define CORE_FILE_H

#include <stddef.h>
#include <stdint.h>

/* Reads a regular file of at most `max` bytes into a new buffer (free with
 * core_free; a valid allocation even for an empty file). Returns 0,
 * CORE_ENOTFOUND, CORE_ETOOBIG (larger than max, or not a regular file),
 * CORE_EFORMAT (the file shrank while read), UV_ENOMEM, or a negative errno. */
int core_file_read(const char *path, size_t max, uint8_t **out, size_t *len);

/* Writes all `len` bytes to `fd`, retrying short writes and EINTR.
 * Returns 0 or a negative errno. */
int core_file_write_all(int fd, const void *data, size_t len);

/* Replaces `path` atomically: writes a fresh `<path>.tmp_XXXXXX` (mode
 * `mode`, whatever the umask) and renames it over `path`. With `sync`, the
 * file is fsynced before the rename and its directory after it, so the new
 * content survives a crash. On error the temp file is removed and `path` is
 * untouched. Returns 0 or a negative errno. */
int core_file_replace(const char *path, const void *data, size_t len, unsigned mode,
                      int sync);

/* fsyncs the directory that holds `path` (after a rename or create in it).
 * Returns 0 or a negative errno. */
int core_file_fsync_parent(const char *path);

/* mkdir -p: creates `path` (mode `mode`) and missing parents (0755).
 * Returns 0 (also when it exists) or a negative errno. */
int core_mkdir_p(const char *path, unsigned mode);

#endif
