/* format_name.h: validators for every name that becomes part of a datastore path.
 *
 * DESIGN
 * Datastore, namespace, backup type, backup id, snapshot time and archive
 * names arrive from the network and end up as path components under the
 * datastore base. Every one of them passes through a validator here before
 * store_path builds a path from it, and store_path calls these validators
 * again itself (defence in depth), so no path can be built from an unchecked
 * name. The rules follow PBS's API schemas (SAFE_ID regex, namespace depth 7,
 * total namespace length 256, archive names are SAFE_IDs ending in .fidx,
 * .didx or .blob) and are stricter where that costs nothing: no "..", no
 * control characters, explicit length limits everywhere.
 *
 * All functions are pure (no I/O, no global state) and may be called from the
 * loop thread.
 */
#ifndef FORMAT_NAME_H
#define FORMAT_NAME_H

#include <stddef.h>
#include <stdint.h>

#define FORMAT_NAME_STORE_MIN 3         /* datastore name length limits */
#define FORMAT_NAME_STORE_MAX 32
#define FORMAT_NAME_NS_MAX_DEPTH 7      /* levels below the root namespace */
#define FORMAT_NAME_NS_MAX_LEN 256      /* whole "a/b/c" string */
#define FORMAT_NAME_NS_COMPONENT_MAX 255 /* one component: NAME_MAX */
#define FORMAT_NAME_ID_MAX 128          /* backup id */
#define FORMAT_NAME_ARCHIVE_MAX 128     /* archive file name, suffix included */
#define FORMAT_NAME_AUTHID_MAX 192      /* "user@realm!token" in the owner file */
#define FORMAT_NAME_TIME_LEN 20         /* "YYYY-MM-DDTHH:MM:SSZ" without NUL */
/* Largest epoch that still has a four-digit year: 9999-12-31T23:59:59Z. */
#define FORMAT_NAME_TIME_MAX INT64_C(253402300799)

/* The manifest's file name inside a snapshot directory. */
#define FORMAT_MANIFEST_NAME "index.json.blob"

enum format_archive_kind {
  FORMAT_ARCHIVE_FIDX = 1,
  FORMAT_ARCHIVE_DIDX = 2,
  FORMAT_ARCHIVE_BLOB = 3,
};

/* Each validator returns 0 if `s` is acceptable, else CORE_ENAME. A NULL
 * pointer is CORE_ENAME too. */

/* Datastore name: SAFE_ID, 3..32 characters. */
int format_name_datastore(const char *s);
/* One namespace component: SAFE_ID, 1..255 characters, no '/'. */
int format_name_ns_component(const char *s);
/* Namespace path "a/b/c": components joined by single '/', no leading or
 * trailing '/', at most 7 components, at most 256 characters. The empty
 * string is the root namespace and valid. */
int format_name_ns(const char *s);
/* Number of components of a valid namespace path (0 for the root), or
 * CORE_ENAME. */
int format_name_ns_depth(const char *s);
/* Backup type: exactly "vm", "ct" or "host". */
int format_name_backup_type(const char *s);
/* Backup id: SAFE_ID, 1..128 characters. */
int format_name_backup_id(const char *s);
/* Archive file name: a SAFE_ID of at most 128 characters ending in ".fidx",
 * ".didx" or ".blob" with at least one character before the suffix. Returns
 * the enum format_archive_kind (positive) or CORE_ENAME. */
int format_name_archive(const char *s);
/* Auth id as stored in a group's owner file: "user@realm" or
 * "user@realm!token"; printable ASCII without space, ':' or '/', at most 192
 * characters. Returns 0 or CORE_ENAME. */
int format_name_authid(const char *s);

/* Snapshot times. The text form is the RFC 3339 UTC form PBS uses for
 * snapshot directory names, exactly "YYYY-MM-DDTHH:MM:SSZ". Parsing is
 * strict: exact length, digits where digits belong, real calendar dates
 * (leap years honoured, no second 60), epoch in 0..FORMAT_NAME_TIME_MAX.
 * Returns 0 and sets *epoch, or CORE_ENAME. (PBS's API also requires
 * backup-time >= 1; the session layer checks that.) */
int format_name_time_parse(const char *s, int64_t *epoch);
/* Writes the 20-character form plus NUL into `out`. Returns 0, or CORE_ENAME
 * if `epoch` is outside 0..FORMAT_NAME_TIME_MAX. */
int format_name_time_format(int64_t epoch, char out[FORMAT_NAME_TIME_LEN + 1]);

#endif
