/* format_keyfile.h: the client's encryption key file (cairn key create / --keyfile).
 *
 * DESIGN
 * Same JSON as a PBS client key file, so keys move between the two tools:
 *
 *   { "kdf": null | {"Scrypt": {"n": 65536, "r": 8, "p": 1, "salt": "<b64>"}}
 *                 | {"PBKDF2": {"iter": N, "salt": "<b64>"}},
 *     "created": "<RFC 3339>", "modified": "<RFC 3339>",
 *     "data": "<b64>", "fingerprint": "aa:bb:...:ff", "hint": "..." (optional) }
 *
 * With kdf null, data is the raw 32-byte key. With a kdf, a 32-byte key is
 * derived from the passphrase (scrypt N=65536, r=8, p=1 with a random 32-byte
 * salt when we create it), and data = iv[16] || tag[16] || AES-256-GCM(key),
 * empty AAD. A wrong passphrase fails the GCM tag. The fingerprint
 * (format_crypt.h) of the unwrapped key must match the stored one. We write
 * scrypt or none; we read PBKDF2 files too.
 *
 * THREADING: client-side only. Encoding and decoding are CPU work (scrypt
 * takes ~0.2 s and 64 MiB by design); format_keyfile_write/read do file I/O.
 * None of it belongs on a server loop thread.
 */
#ifndef FORMAT_KEYFILE_H
#define FORMAT_KEYFILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/core_buf.h"
#include "format/format_crypt.h"

enum format_kdf {
  FORMAT_KDF_NONE = 0,
  FORMAT_KDF_SCRYPT = 1,
  FORMAT_KDF_PBKDF2 = 2, /* read only */
};

#define FORMAT_KEYFILE_SCRYPT_N 65536
#define FORMAT_KEYFILE_MAX_LEN (64 * 1024)
/* PBS refuses shorter passphrases when unlocking; we refuse them on create. */
#define FORMAT_KEYFILE_MIN_PASS 5

/* A parsed key file, still locked. */
struct format_keyfile {
  enum format_kdf kdf;
  uint64_t n, r, p;      /* scrypt parameters */
  uint64_t iter;         /* PBKDF2 rounds */
  uint8_t salt[64];
  size_t salt_len;
  uint8_t data[96];      /* raw key, or iv || tag || encrypted key */
  size_t data_len;
  int64_t created;       /* epoch seconds */
  int64_t modified;
  int has_fingerprint;
  uint8_t fingerprint[32];
  char hint[128];        /* "" when absent */
};

/* Creates the JSON of a key file for `key` and appends it to `out`.
 * kdf FORMAT_KDF_NONE ignores the passphrase; FORMAT_KDF_SCRYPT needs one of
 * at least FORMAT_KEYFILE_MIN_PASS bytes. `scrypt_n` 0 means the default
 * (FORMAT_KEYFILE_SCRYPT_N); tests pass a small power of two to stay fast.
 * Returns 0, CORE_EINVAL (kdf, passphrase or N), CORE_ECRYPTO, or a buffer
 * error. */
int format_keyfile_encode(const uint8_t key[FORMAT_CRYPT_KEY_LEN], enum format_kdf kdf,
                         const char *pass, size_t pass_len, uint64_t scrypt_n, int64_t now,
                         struct core_buf *out);

/* Parses key file JSON. 0, CORE_ETOOBIG, CORE_EPARSE or CORE_EFORMAT. */
int format_keyfile_parse(const char *json, size_t len, struct format_keyfile *kf);

/* Recovers the key; `pass` is ignored for kdf none. Returns 0, CORE_EINVAL
 * (passphrase missing or too short), CORE_ECRYPTO (wrong passphrase, or a
 * fingerprint that does not match the key) or CORE_EFORMAT. */
int format_keyfile_unlock(const struct format_keyfile *kf, const char *pass, size_t pass_len,
                         uint8_t key[FORMAT_CRYPT_KEY_LEN]);

/* Writes a key file with mode 0600: with `replace` atomically over an
 * existing one (temporary file + rename), else failing with -EEXIST.
 * Returns 0, a negative errno or an error from format_keyfile_encode. */
int format_keyfile_write(const char *path, const uint8_t key[FORMAT_CRYPT_KEY_LEN],
                        enum format_kdf kdf, const char *pass, size_t pass_len,
                        uint64_t scrypt_n, int replace);
/* Reads and parses a key file (at most FORMAT_KEYFILE_MAX_LEN bytes).
 * Returns 0, CORE_ETOOBIG (file over FORMAT_KEYFILE_MAX_LEN), any errno from
 * open/read, or an error from format_keyfile_parse. */
int format_keyfile_read(const char *path, struct format_keyfile *kf);

#endif
