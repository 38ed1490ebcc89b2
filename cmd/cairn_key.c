/* cairn_key.c: `cairn key create`. */
#include "cmd/cairn.h"

#include "core/core_alloc.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "format/format_crypt.h"
#include "format/format_keyfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char *default_key_path(void)
{
  const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
  char *dir;
  if (xdg && *xdg)
    dir = core_asprintf("%s/cairn", xdg);
  else
    dir = core_asprintf("%s/.config/cairn", home ? home : ".");
  /* best effort: the write below reports a missing directory */
  {
    char *parent = core_strdup(dir), *slash = strrchr(parent, '/');
    if (slash) {
      *slash = '\0';
      mkdir(parent, 0700);
    }
    core_free(parent);
  }
  mkdir(dir, 0700);
  char *path = core_asprintf("%s/encryption-key.json", dir);
  core_free(dir);
  return path;
}

int cmd_key(struct opts *o)
{
  uint8_t key[FORMAT_CRYPT_KEY_LEN];
  enum format_kdf kdf = FORMAT_KDF_SCRYPT;
  struct format_crypt crypt;
  char *path, *pass = NULL, fp[FORMAT_CRYPT_FP_STR_LEN];
  int rc;

  if (o->npos < 1 || strcmp(o->pos[0], "create") != 0 || o->npos > 2) {
    fprintf(stderr, "cairn key: usage: cairn key create [PATH] [--kdf scrypt|none]\n");
    return EXIT_USAGE;
  }
  if (o->kdf && strcmp(o->kdf, "none") == 0)
    kdf = FORMAT_KDF_NONE;
  else if (o->kdf && strcmp(o->kdf, "scrypt") != 0) {
    fprintf(stderr, "cairn key: --kdf is scrypt or none\n");
    return EXIT_USAGE;
  }
  path = o->npos == 2 ? core_strdup(o->pos[1]) : default_key_path();
  if (kdf == FORMAT_KDF_SCRYPT) {
    pass = read_passphrase("New passphrase: ");
    if (pass && !getenv("CAIRN_ENCRYPTION_PASSWORD")) {
      char *again = read_passphrase("Repeat passphrase: ");
      if (again == NULL || strcmp(again, pass) != 0) {
        fprintf(stderr, "cairn key: the passphrases differ\n");
        core_free(again);
        core_free(pass);
        core_free(path);
        return 1;
      }
      core_free(again);
    }
    if (pass == NULL || strlen(pass) < FORMAT_KEYFILE_MIN_PASS) {
      fprintf(stderr, "cairn key: a passphrase of at least %d characters is needed "
              "(terminal or CAIRN_ENCRYPTION_PASSWORD), or use --kdf none\n",
              FORMAT_KEYFILE_MIN_PASS);
      core_free(pass);
      core_free(path);
      return 1;
    }
  }
  if ((rc = core_random(key, sizeof(key))) < 0) {
    fprintf(stderr, "cairn key: no random bytes: %s\n", core_strerror(rc));
    core_free(pass);
    core_free(path);
    return 1;
  }
  rc = format_keyfile_write(path, key, kdf, pass, pass ? strlen(pass) : 0, 0, 0);
  if (pass) {
    memset(pass, 0, strlen(pass));
    core_free(pass);
  }
  if (rc < 0) {
    fprintf(stderr, "cairn key: %s: %s\n", path,
            rc == -EEXIST ? "exists already (not overwritten)"
                          : (rc > -4096 ? strerror(-rc) : core_strerror(rc)));
    memset(key, 0, sizeof(key));
    core_free(path);
    return 1;
  }
  format_crypt_init(&crypt, key);
  format_crypt_fingerprint_str(crypt.fingerprint, fp);
  format_crypt_clear(&crypt);
  memset(key, 0, sizeof(key));
  printf("created %s (fingerprint %s)\n", path, fp);
  core_free(path);
  return 0;
}
