#include "core/core_error.h"

#include <uv.h>

/* The table is indexed by the code itself, so it cannot drift from the enum:
 * a code added before CORE_ELAST without a message fails the static assertion
 * below (the table would end early) or the unit test that walks every code. */
#define MSG(code) (CORE_EPARSE - (code))

static const char *const messages[] = {
  [MSG(CORE_EPARSE)]     = "malformed input",
  [MSG(CORE_ETOOBIG)]    = "input too large",
  [MSG(CORE_EFORMAT)]    = "invalid file format",
  [MSG(CORE_ECRC)]       = "CRC mismatch",
  [MSG(CORE_EDIGEST)]    = "digest mismatch",
  [MSG(CORE_ECSUM)]      = "index checksum mismatch",
  [MSG(CORE_ENAME)]      = "invalid name",
  [MSG(CORE_ESTALE)]     = "digest is stale (configuration changed concurrently)",
  [MSG(CORE_ELOCKED)]    = "resource is locked",
  [MSG(CORE_ECRYPTO)]    = "encryption or authentication failure",
  [MSG(CORE_ENOTFOUND)]  = "not found",
  [MSG(CORE_EEXISTS)]    = "already exists",
  [MSG(CORE_EMAINT)]     = "datastore is in a maintenance mode",
  [MSG(CORE_EPROTO)]     = "protocol error",
  [MSG(CORE_ETLS)]       = "TLS failure",
  [MSG(CORE_ECERT)]      = "certificate verification failed",
  [MSG(CORE_ECONFIG)]    = "invalid configuration",
  [MSG(CORE_EINVAL)]     = "invalid argument",
  [MSG(CORE_ETIMEOUT)]   = "timed out",
  [MSG(CORE_EABORTED)]   = "aborted",
  [MSG(CORE_ES3)]        = "S3 error",
  [MSG(CORE_EPROTECTED)] = "refusing to remove protected snapshots",
};

_Static_assert(sizeof(messages) / sizeof(messages[0]) == MSG(CORE_ELAST) + 1,
               "CORE_ELAST must name the last core_error code");

const char *core_strerror(int err)
{
  if (err <= CORE_EPARSE && err >= CORE_ELAST)
    return messages[MSG(err)] ? messages[MSG(err)] : "unknown Cairn error";
  if (err <= CORE_EPARSE && err > CORE_EPARSE - 1000)
    return "unknown Cairn error";
  if (err < 0)
    return uv_strerror(err);
  return "success";
}
