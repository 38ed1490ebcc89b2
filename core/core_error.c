#include "core/core_error.h"

#include <uv.h>

static const char *const messages[] = {
  [0]  = "malformed input",
  [1]  = "input too large",
  [2]  = "invalid file format",
  [3]  = "CRC mismatch",
  [4]  = "digest mismatch",
  [5]  = "index checksum mismatch",
  [6]  = "invalid name",
  [7]  = "digest is stale (configuration changed concurrently)",
  [8]  = "resource is locked",
  [9]  = "encryption or authentication failure",
  [10] = "not found",
  [11] = "already exists",
  [12] = "datastore is in a maintenance mode",
  [13] = "protocol error",
  [14] = "TLS failure",
  [15] = "certificate verification failed",
  [16] = "invalid configuration",
  [17] = "invalid argument",
  [18] = "timed out",
  [19] = "aborted",
  [20] = "S3 error",
};

const char *core_strerror(int err)
{
  if (err <= CORE_EPARSE && err > CORE_EPARSE - 1000) {
    unsigned idx = (unsigned)(CORE_EPARSE - err);
    if (idx < sizeof(messages) / sizeof(messages[0]) && messages[idx])
      return messages[idx];
    return "unknown Cairn error";
  }
  if (err < 0)
    return uv_strerror(err);
  return "success";
}
