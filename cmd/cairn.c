/* cairn: the backup client (see docs/client.md). */
#include "client/client_api.h"
#include "client/client_archive.h"
#include "client/client_backup.h"
#include "client/client_bench.h"
#include "client/client_load.h"
#include "client/client_progress.h"
#include "client/client_restore.h"
#include "core/core_alloc.h"
#include "core/core_buf.h"
#include "core/core_digest.h"
#include "core/core_error.h"
#include "core/core_json.h"
#include "core/core_log.h"
#include "format/format_crypt.h"
#include "format/format_keyfile.h"
#include "format/format_blob.h"
#include "format/format_name.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define EXIT_USAGE 2

/* ---- Options ---- */

struct opts {
  const char *repository;
  const char *secret_file;
  const char *password_file;
  const char *fingerprint;
  const char *ns;
  const char *backup_type;
  const char *backup_id;
  const char *keyfile;
  const char *kdf;
  const char *output;     /* "text" or "json" */
  const char *ca_file;
  int plain_http;
  int progress;           /* -1 auto (TTY), 0 off, 1 on */
  int help;
  int dry_run;
  unsigned workers;
  unsigned mem_mib;
  double seconds;         /* benchmark */
  int64_t backup_time;
  unsigned keep[6];       /* last hourly daily weekly monthly yearly */
  char *pos[64];          /* positional arguments */
  size_t npos;
};

static const char *const keep_names[6] = {"keep-last",   "keep-hourly",  "keep-daily",
                                          "keep-weekly", "keep-monthly", "keep-yearly"};

static const char *usage_main =
    "usage: cairn COMMAND [OPTIONS] [ARGS]\n"
    "\n"
    "Commands:\n"
    "  backup NAME.didx:PATH|NAME.img.fidx:PATH...  back up into a new snapshot\n"
    "  restore SNAPSHOT NAME TARGET                 restore an archive (TARGET - is stdout)\n"
    "  snapshots [GROUP]                            list snapshots\n"
    "  groups                                       list backup groups\n"
    "  forget SNAPSHOT                              delete a snapshot\n"
    "  prune GROUP --keep-...                       delete old snapshots of a group\n"
    "  status                                       datastore usage\n"
    "  key create [PATH] [--kdf scrypt|none]        create an encryption key file\n"
    "  benchmark                                    measure hashing, compression, crypto, upload\n"
    "\n"
    "Run `cairn COMMAND --help` for the options of a command.\n";

static const char *conn_help =
    "Connection:\n"
    "  --repository [[USER@REALM[!TOKEN]]@]HOST[:PORT]:STORE   (or CAIRN_REPOSITORY)\n"
    "  --secret-file FILE   the token's secret (or CAIRN_SECRET, CAIRN_SECRET_FILE)\n"
    "  --password-file FILE a pbs-realm user's password, for a repository naming a\n"
    "                       user rather than a token (or CAIRN_PASSWORD_FILE)\n"
    "  --fingerprint FP     pin the server certificate's SHA-256 (or CAIRN_FINGERPRINT)\n"
    "  --ns NAMESPACE       namespace, e.g. a/b (or CAIRN_NS); default: the root\n"
    "  --output-format text|json\n";

static void print_help(const char *cmd)
{
  if (cmd == NULL) {
    fputs(usage_main, stdout);
    return;
  }
  if (strcmp(cmd, "backup") == 0) {
    printf("usage: cairn backup SPEC... [OPTIONS]\n\n"
           "SPEC is NAME.didx:PATH (a directory or file, as a pax stream with\n"
           "content-defined chunks) or NAME.img.fidx:PATH (a file or block device in\n"
           "fixed 4 MiB chunks). Several SPECs go into one snapshot. Only chunks the\n"
           "server does not know yet are uploaded.\n\n"
           "  --backup-type host|vm|ct   default host\n"
           "  --backup-id ID             default: this host's name\n"
           "  --backup-time EPOCH        default: now\n"
           "  --keyfile FILE             encrypt with this key (CAIRN_KEYFILE);\n"
           "                             passphrase from CAIRN_ENCRYPTION_PASSWORD or the terminal\n"
           "  --workers N                hashing/upload threads (default 4)\n"
           "  --mem MiB                  chunk data in flight (default 96)\n"
           "  --progress / --no-progress progress line (default: on a terminal)\n\n%s",
           conn_help);
  } else if (strcmp(cmd, "restore") == 0) {
    printf("usage: cairn restore SNAPSHOT NAME TARGET [OPTIONS]\n\n"
           "SNAPSHOT is TYPE/ID/TIME (TIME as 2024-05-01T10:00:00Z or epoch seconds).\n"
           "NAME is an archive of the snapshot, with or without its .didx/.img.fidx suffix.\n"
           "TARGET is a directory (directory archives), a file (files and images) or -\n"
           "for stdout (a file's contents, an image, or a directory archive as pax).\n"
           "Every chunk's digest and the index checksum are verified.\n\n"
           "  --keyfile FILE   key for encrypted snapshots (CAIRN_KEYFILE)\n"
           "  --workers N      parallel chunk fetches (default 4)\n"
           "  --mem MiB        fetched chunk data held ahead (default 96)\n"
           "  --progress / --no-progress\n\n%s",
           conn_help);
  } else if (strcmp(cmd, "snapshots") == 0) {
    printf("usage: cairn snapshots [TYPE/ID] [OPTIONS]\n\nLists the snapshots of the "
           "datastore (or of one group).\n\n%s",
           conn_help);
  } else if (strcmp(cmd, "groups") == 0) {
    printf("usage: cairn groups [OPTIONS]\n\nLists the backup groups.\n\n%s", conn_help);
  } else if (strcmp(cmd, "forget") == 0) {
    printf("usage: cairn forget SNAPSHOT [OPTIONS]\n\nDeletes snapshot TYPE/ID/TIME.\n\n%s",
           conn_help);
  } else if (strcmp(cmd, "prune") == 0) {
    printf("usage: cairn prune TYPE/ID --keep-last N [--keep-hourly N] [--keep-daily N]\n"
           "       [--keep-weekly N] [--keep-monthly N] [--keep-yearly N] [--dry-run]\n\n"
           "Asks the server to delete the group's snapshots that no keep rule selects.\n\n%s",
           conn_help);
  } else if (strcmp(cmd, "status") == 0) {
    printf("usage: cairn status [OPTIONS]\n\nShows the datastore's size, use and free "
           "space.\n\n%s",
           conn_help);
  } else if (strcmp(cmd, "key") == 0) {
    printf("usage: cairn key create [PATH] [--kdf scrypt|none]\n\n"
           "Creates a random AES-256 key in a PBS-compatible key file (mode 0600).\n"
           "PATH defaults to $XDG_CONFIG_HOME/cairn/encryption-key.json. With --kdf scrypt\n"
           "(the default) the key is protected by a passphrase read from\n"
           "CAIRN_ENCRYPTION_PASSWORD or asked on the terminal twice.\n");
  } else if (strcmp(cmd, "benchmark") == 0) {
    printf("usage: cairn benchmark [--seconds S] [OPTIONS]\n"
           "       cairn benchmark load [OPTIONS]   (many clients; see cairn benchmark load --help)\n\n"
           "Measures SHA-256, chunking, zstd, chunk verification and AES-256-GCM on this\n"
           "machine, and with a repository the chunk upload speed to the server.\n\n%s",
           conn_help);
  } else {
    fputs(usage_main, stdout);
  }
}

static int parse_uint(const char *s, unsigned *out)
{
  char *end;
  unsigned long v;
  errno = 0;
  v = strtoul(s, &end, 10);
  if (*s == '\0' || *end != '\0' || errno || v > 1000000)
    return -1;
  *out = (unsigned)v;
  return 0;
}

/* One flat option table for all commands: each command ignores what it does
 * not use, which keeps global options usable before or after the command. */
static int parse_args(int argc, char **argv, int first, struct opts *o)
{
  for (int i = first; i < argc; i++) {
    char *a = argv[i], *val = NULL, name[64];
    if (strcmp(a, "--") == 0) {
      for (i++; i < argc && o->npos < 64; i++)
        o->pos[o->npos++] = argv[i];
      break;
    }
    if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
      if (strcmp(a, "-h") == 0) {
        o->help = 1;
        continue;
      }
      if (o->npos == 64) {
        fprintf(stderr, "cairn: too many arguments\n");
        return -1;
      }
      o->pos[o->npos++] = a;
      continue;
    }
    a += 2;
    {
      const char *eq = strchr(a, '=');
      size_t n = eq ? (size_t)(eq - a) : strlen(a);
      if (n >= sizeof(name)) {
        fprintf(stderr, "cairn: unknown option --%s\n", a);
        return -1;
      }
      memcpy(name, a, n);
      name[n] = '\0';
      if (eq)
        val = (char *)eq + 1;
    }
    /* flags */
    if (strcmp(name, "help") == 0) {
      o->help = 1;
      continue;
    }
    if (strcmp(name, "progress") == 0) {
      o->progress = 1;
      continue;
    }
    if (strcmp(name, "no-progress") == 0) {
      o->progress = 0;
      continue;
    }
    if (strcmp(name, "plain-http") == 0) {
      o->plain_http = 1;
      continue;
    }
    if (strcmp(name, "dry-run") == 0) {
      o->dry_run = 1;
      continue;
    }
    /* options with a value */
    if (val == NULL) {
      if (i + 1 >= argc) {
        fprintf(stderr, "cairn: --%s needs a value\n", name);
        return -1;
      }
      val = argv[++i];
    }
    if (strcmp(name, "repository") == 0)
      o->repository = val;
    else if (strcmp(name, "secret-file") == 0)
      o->secret_file = val;
    else if (strcmp(name, "password-file") == 0)
      o->password_file = val;
    else if (strcmp(name, "fingerprint") == 0)
      o->fingerprint = val;
    else if (strcmp(name, "ns") == 0)
      o->ns = val;
    else if (strcmp(name, "backup-type") == 0)
      o->backup_type = val;
    else if (strcmp(name, "backup-id") == 0)
      o->backup_id = val;
    else if (strcmp(name, "keyfile") == 0)
      o->keyfile = val;
    else if (strcmp(name, "kdf") == 0)
      o->kdf = val;
    else if (strcmp(name, "output-format") == 0)
      o->output = val;
    else if (strcmp(name, "ca-file") == 0)
      o->ca_file = val;
    else if (strcmp(name, "workers") == 0) {
      if (parse_uint(val, &o->workers) < 0 || o->workers == 0 || o->workers > 64) {
        fprintf(stderr, "cairn: --workers takes 1..64\n");
        return -1;
      }
    } else if (strcmp(name, "mem") == 0) {
      if (parse_uint(val, &o->mem_mib) < 0 || o->mem_mib < 16) {
        fprintf(stderr, "cairn: --mem takes MiB, at least 16\n");
        return -1;
      }
    } else if (strcmp(name, "seconds") == 0) {
      char *end;
      o->seconds = strtod(val, &end);
      if (*end != '\0' || o->seconds <= 0 || o->seconds > 60) {
        fprintf(stderr, "cairn: --seconds takes 0..60\n");
        return -1;
      }
    } else if (strcmp(name, "backup-time") == 0) {
      char *end;
      long long t = strtoll(val, &end, 10);
      if (*end != '\0' || t <= 0) {
        fprintf(stderr, "cairn: --backup-time takes epoch seconds\n");
        return -1;
      }
      o->backup_time = t;
    } else {
      int found = 0;
      for (int k = 0; k < 6; k++) {
        if (strcmp(name, keep_names[k]) == 0) {
          if (parse_uint(val, &o->keep[k]) < 0) {
            fprintf(stderr, "cairn: --%s takes a count\n", name);
            return -1;
          }
          found = 1;
        }
      }
      if (!found) {
        fprintf(stderr, "cairn: unknown option --%s\n", name);
        return -1;
      }
    }
  }
  return 0;
}

/* ---- Shared setup ---- */

static char *read_first_line(const char *path, char *err, size_t errlen)
{
  char buf[4096];
  FILE *f = fopen(path, "re");
  size_t n;
  if (f == NULL) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return NULL;
  }
  n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  buf[strcspn(buf, "\r\n")] = '\0';
  if (buf[0] == '\0') {
    snprintf(err, errlen, "%s: empty", path);
    return NULL;
  }
  return core_strdup(buf);
}

static int open_api(const struct opts *o, unsigned conns, struct client_api **api)
{
  struct client_repo repo;
  struct client_api_config cfg;
  char err[1024];
  const char *r = o->repository ? o->repository : getenv("CAIRN_REPOSITORY");
  const char *sfile = o->secret_file ? o->secret_file : getenv("CAIRN_SECRET_FILE");
  const char *pfile = o->password_file ? o->password_file : getenv("CAIRN_PASSWORD_FILE");
  char *secret = NULL, *password = NULL;
  int rc;

  if ((rc = client_repo_parse(r, &repo, err, sizeof(err))) < 0) {
    fprintf(stderr, "cairn: %s\n", err);
    client_repo_free(&repo);
    return rc;
  }
  if (sfile) {
    secret = read_first_line(sfile, err, sizeof(err));
    if (secret == NULL) {
      fprintf(stderr, "cairn: secret: %s\n", err);
      client_repo_free(&repo);
      return CORE_EINVAL;
    }
  } else if (getenv("CAIRN_SECRET")) {
    secret = core_strdup(getenv("CAIRN_SECRET"));
  }
  if (pfile) {
    password = read_first_line(pfile, err, sizeof(err));
    if (password == NULL) {
      fprintf(stderr, "cairn: password: %s\n", err);
      if (secret)
        core_free(secret);
      client_repo_free(&repo);
      return CORE_EINVAL;
    }
  }
  memset(&cfg, 0, sizeof(cfg));
  cfg.repo = &repo;
  cfg.secret = secret;
  cfg.password = password;
  cfg.fingerprint = o->fingerprint ? o->fingerprint : getenv("CAIRN_FINGERPRINT");
  cfg.ca_file = o->ca_file;
  cfg.plain_http = o->plain_http || (getenv("CAIRN_PLAIN_HTTP") && *getenv("CAIRN_PLAIN_HTTP") == '1');
  cfg.max_conns = conns;
  rc = client_api_new(&cfg, api, err, sizeof(err));
  if (rc < 0)
    fprintf(stderr, "cairn: %s\n", err);
  if (secret) {
    memset(secret, 0, strlen(secret));
    core_free(secret);
  }
  if (password) {
    memset(password, 0, strlen(password));
    core_free(password);
  }
  client_repo_free(&repo);
  return rc;
}

static const char *ns_of(const struct opts *o)
{
  const char *ns = o->ns ? o->ns : getenv("CAIRN_NS");
  return ns ? ns : "";
}

static int want_progress(const struct opts *o)
{
  if (o->progress >= 0)
    return o->progress;
  return isatty(STDERR_FILENO);
}

/* Reads a passphrase: CAIRN_ENCRYPTION_PASSWORD, else the terminal (echo
 * off). Returns a new string or NULL. */
static char *read_passphrase(const char *prompt)
{
  const char *env = getenv("CAIRN_ENCRYPTION_PASSWORD");
  struct termios old, quiet;
  char buf[1024];
  FILE *tty;
  if (env)
    return core_strdup(env);
  tty = fopen("/dev/tty", "r+e");
  if (tty == NULL)
    return NULL;
  fputs(prompt, tty);
  fflush(tty);
  tcgetattr(fileno(tty), &old);
  quiet = old;
  quiet.c_lflag &= ~(tcflag_t)ECHO;
  tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
  if (fgets(buf, sizeof(buf), tty) == NULL)
    buf[0] = '\0';
  tcsetattr(fileno(tty), TCSAFLUSH, &old);
  fputc('\n', tty);
  fclose(tty);
  buf[strcspn(buf, "\r\n")] = '\0';
  return core_strdup(buf);
}

/* Loads --keyfile (or CAIRN_KEYFILE) into `crypt`. Returns 1 when a key was
 * loaded, 0 when none is configured, or a negative error (reported). */
static int load_key(const struct opts *o, struct format_crypt *crypt)
{
  const char *path = o->keyfile ? o->keyfile : getenv("CAIRN_KEYFILE");
  struct format_keyfile kf;
  uint8_t key[FORMAT_CRYPT_KEY_LEN];
  char *pass = NULL;
  int rc;

  if (path == NULL || *path == '\0')
    return 0;
  rc = format_keyfile_read(path, &kf);
  if (rc < 0) {
    fprintf(stderr, "cairn: key file %s: %s\n", path, rc < 0 && rc > -4096 ? strerror(-rc) : core_strerror(rc));
    return rc;
  }
  if (kf.kdf != FORMAT_KDF_NONE) {
    pass = read_passphrase("Encryption key passphrase: ");
    if (pass == NULL) {
      fprintf(stderr, "cairn: key file %s needs a passphrase (CAIRN_ENCRYPTION_PASSWORD)\n",
              path);
      return CORE_EINVAL;
    }
  }
  rc = format_keyfile_unlock(&kf, pass, pass ? strlen(pass) : 0, key);
  if (pass) {
    memset(pass, 0, strlen(pass));
    core_free(pass);
  }
  if (rc < 0) {
    fprintf(stderr, "cairn: key file %s: %s\n", path,
            rc == CORE_ECRYPTO ? "wrong passphrase" : core_strerror(rc));
    return rc;
  }
  rc = format_crypt_init(crypt, key);
  memset(key, 0, sizeof(key));
  if (rc < 0) {
    fprintf(stderr, "cairn: key: %s\n", core_strerror(rc));
    return rc;
  }
  return 1;
}

static void fmt_time(int64_t t, char out[FORMAT_NAME_TIME_LEN + 1])
{
  if (format_name_time_format(t, out) < 0)
    snprintf(out, FORMAT_NAME_TIME_LEN + 1, "%lld", (long long)t);
}

static double mono_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- Commands ---- */

/* Set by SIGINT/SIGTERM: the running backup or restore stops at its next
 * chunk and ends its session, so the group is not left locked until the
 * server's idle timeout. A second signal ends the process at once. */
static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
  interrupted = 1;
  signal(sig, SIG_DFL);
}

static void catch_signals(void)
{
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

/* Bytes the backup will read, for the progress line's ETA: a walk of
 * st_size (holes included, a close enough estimate of the pax stream). */
static uint64_t walk_total;

static int walk_add(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
  (void)path;
  (void)ftw;
  if (flag == FTW_F && S_ISREG(sb->st_mode))
    walk_total += (uint64_t)sb->st_size;
  return 0;
}

static uint64_t estimate_total(const struct client_backup_spec *specs, size_t n)
{
  walk_total = 0;
  for (size_t i = 0; i < n; i++) {
    struct stat sb;
    if (stat(specs[i].path, &sb) != 0)
      continue;
    if (S_ISDIR(sb.st_mode)) {
      nftw(specs[i].path, walk_add, 64, FTW_PHYS | FTW_MOUNT);
    } else if (S_ISBLK(sb.st_mode)) {
      int fd = open(specs[i].path, O_RDONLY | O_CLOEXEC);
      uint64_t size = 0;
      if (fd >= 0 && client_image_size(fd, &size) == 0)
        walk_total += size;
      if (fd >= 0)
        close(fd);
    } else {
      walk_total += (uint64_t)sb.st_size;
    }
  }
  return walk_total;
}

static int cmd_backup(struct opts *o)
{
  struct client_backup_spec specs[64];
  struct client_backup_opts bo;
  struct client_backup_stats st;
  struct format_crypt crypt;
  struct client_api *api = NULL;
  char err[1024], host[256], when[FORMAT_NAME_TIME_LEN + 1];
  char total[32], fresh[32], sent[32];
  int have_key, rc;
  double t0, dt;

  if (o->npos == 0) {
    fprintf(stderr, "cairn backup: nothing to back up (see cairn backup --help)\n");
    return EXIT_USAGE;
  }
  for (size_t i = 0; i < o->npos; i++) {
    if (client_backup_parse_spec(o->pos[i], &specs[i], err, sizeof(err)) < 0) {
      fprintf(stderr, "cairn backup: %s\n", err);
      return EXIT_USAGE;
    }
    for (size_t k = 0; k < i; k++)
      if (strcmp(specs[k].archive, specs[i].archive) == 0) {
        fprintf(stderr, "cairn backup: archive %s given twice\n", specs[i].archive);
        return EXIT_USAGE;
      }
  }
  if (gethostname(host, sizeof(host)) != 0)
    snprintf(host, sizeof(host), "localhost");
  host[sizeof(host) - 1] = '\0';
  memset(&bo, 0, sizeof(bo));
  bo.backup_type = o->backup_type ? o->backup_type : "host";
  bo.backup_id = o->backup_id ? o->backup_id : host;
  if (format_name_backup_type(bo.backup_type) < 0 || format_name_backup_id(bo.backup_id) < 0) {
    fprintf(stderr, "cairn backup: invalid backup type or id \"%s/%s\"\n", bo.backup_type,
            bo.backup_id);
    return EXIT_USAGE;
  }
  have_key = load_key(o, &crypt);
  if (have_key < 0)
    return 1;
  bo.workers = o->workers ? o->workers : 4;
  if (open_api(o, bo.workers + 2, &api) < 0) {
    if (have_key)
      format_crypt_clear(&crypt);
    return 1;
  }
  bo.api = api;
  bo.ns = ns_of(o);
  bo.backup_time = o->backup_time;
  bo.crypt = have_key ? &crypt : NULL;
  bo.mem_budget = (size_t)(o->mem_mib ? o->mem_mib : 96) << 20;
  bo.progress = client_progress_new("backup", want_progress(o));
  bo.cancel = &interrupted;
  catch_signals();
  if (want_progress(o))
    client_progress_set_total(bo.progress, estimate_total(specs, o->npos));

  t0 = mono_s();
  rc = client_backup_run(&bo, specs, o->npos, &st, err, sizeof(err));
  dt = mono_s() - t0;
  client_progress_free(bo.progress);
  client_api_free(api);
  if (have_key)
    format_crypt_clear(&crypt);
  if (rc < 0) {
    fprintf(stderr, "cairn backup: %s\n", err);
    return 1;
  }
  fmt_time(st.backup_time, when);
  client_fmt_bytes(st.bytes, total, sizeof(total));
  client_fmt_bytes(st.new_bytes, fresh, sizeof(fresh));
  client_fmt_bytes(st.uploaded_bytes, sent, sizeof(sent));
  if (o->output && strcmp(o->output, "json") == 0) {
    printf("{\"snapshot\":\"%s/%s/%s\",\"bytes\":%llu,\"chunks\":%llu,\"new-chunks\":%llu,"
           "\"new-bytes\":%llu,\"uploaded-bytes\":%llu,\"seconds\":%.3f}\n",
           bo.backup_type, bo.backup_id, when, (unsigned long long)st.bytes,
           (unsigned long long)st.chunks, (unsigned long long)st.new_chunks,
           (unsigned long long)st.new_bytes, (unsigned long long)st.uploaded_bytes, dt);
  } else {
    char ratio[32];
    if (st.new_bytes)
      snprintf(ratio, sizeof(ratio), "%.2f", (double)st.bytes / (double)st.new_bytes);
    else
      snprintf(ratio, sizeof(ratio), "all reused");
    printf("%s/%s/%s: %s in %.1f s (%.1f MB/s), new %s in %llu of %llu chunks, "
           "%s sent, dedup %s\n",
           bo.backup_type, bo.backup_id, when, total, dt,
           dt > 0 ? (double)st.bytes / dt / 1e6 : 0.0, fresh, (unsigned long long)st.new_chunks,
           (unsigned long long)st.chunks, sent, ratio);
  }
  return 0;
}

static int cmd_restore(struct opts *o)
{
  struct client_restore_opts ro;
  struct client_restore_stats st;
  struct format_crypt crypt;
  struct client_api *api = NULL;
  char *type = NULL, *id = NULL, err[1024], total[32];
  int have_key, rc;
  double t0, dt;
  FILE *out;

  if (o->npos != 3) {
    fprintf(stderr, "cairn restore: needs SNAPSHOT NAME TARGET (see cairn restore --help)\n");
    return EXIT_USAGE;
  }
  memset(&ro, 0, sizeof(ro));
  if (client_snapshot_parse(o->pos[0], &type, &id, &ro.backup_time) < 0) {
    fprintf(stderr, "cairn restore: \"%s\" is not TYPE/ID/TIME\n", o->pos[0]);
    return EXIT_USAGE;
  }
  have_key = load_key(o, &crypt);
  if (have_key < 0) {
    core_free(type);
    core_free(id);
    return 1;
  }
  ro.workers = o->workers ? o->workers : 4;
  if (open_api(o, ro.workers + 1, &api) < 0) {
    core_free(type);
    core_free(id);
    if (have_key)
      format_crypt_clear(&crypt);
    return 1;
  }
  ro.api = api;
  ro.ns = ns_of(o);
  ro.backup_type = type;
  ro.backup_id = id;
  ro.crypt = have_key ? &crypt : NULL;
  ro.mem_budget = (size_t)(o->mem_mib ? o->mem_mib : 96) << 20;
  ro.restore_owner = geteuid() == 0;
  ro.progress = client_progress_new("restore", want_progress(o));
  ro.cancel = &interrupted;
  catch_signals();
  t0 = mono_s();
  rc = client_restore_run(&ro, o->pos[1], o->pos[2], &st, err, sizeof(err));
  dt = mono_s() - t0;
  client_progress_free(ro.progress);
  client_api_free(api);
  if (have_key)
    format_crypt_clear(&crypt);
  core_free(type);
  core_free(id);
  if (rc < 0) {
    fprintf(stderr, "cairn restore: %s\n", err);
    return 1;
  }
  client_fmt_bytes(st.bytes, total, sizeof(total));
  out = strcmp(o->pos[2], "-") == 0 ? stderr : stdout; /* stdout may be the data itself */
  fprintf(out, "restored %s %s: %s in %.1f s (%.1f MB/s), %llu chunks verified", o->pos[0],
          o->pos[1], total, dt, dt > 0 ? (double)st.bytes / dt / 1e6 : 0.0,
          (unsigned long long)st.chunks);
  if (st.repeated > 0)
    fprintf(out, " (%llu of them repeated the chunk before: not downloaded again)",
            (unsigned long long)st.repeated);
  fputc('\n', out);
  return 0;
}

static void gen_json(struct core_json *j, yajl_val v)
{
  if (v == NULL || YAJL_IS_NULL(v)) {
    core_json_null(j);
  } else if (YAJL_IS_STRING(v)) {
    core_json_str(j, YAJL_GET_STRING(v));
  } else if (YAJL_IS_INTEGER(v)) {
    core_json_int(j, YAJL_GET_INTEGER(v));
  } else if (YAJL_IS_DOUBLE(v)) {
    core_json_double(j, YAJL_GET_DOUBLE(v));
  } else if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) {
    core_json_bool(j, YAJL_IS_TRUE(v));
  } else if (YAJL_IS_ARRAY(v)) {
    core_json_arr_open(j);
    for (size_t i = 0; i < v->u.array.len; i++)
      gen_json(j, v->u.array.values[i]);
    core_json_arr_close(j);
  } else if (YAJL_IS_OBJECT(v)) {
    core_json_obj_open(j);
    for (size_t i = 0; i < v->u.object.len; i++) {
      core_json_key(j, v->u.object.keys[i]);
      gen_json(j, v->u.object.values[i]);
    }
    core_json_obj_close(j);
  } else if (YAJL_IS_NUMBER(v)) {
    core_json_raw(j, YAJL_GET_NUMBER(v), strlen(YAJL_GET_NUMBER(v)));
  }
}

static void print_json(yajl_val v)
{
  struct core_json j;
  size_t len;
  const char *text;
  core_json_init(&j, 1);
  gen_json(&j, v);
  text = core_json_text(&j, &len);
  fwrite(text, 1, len, stdout);
  if (len == 0 || text[len - 1] != '\n')
    fputc('\n', stdout);
  core_json_free(&j);
}

/* A call on the datastore admin API; prints `data` as JSON with
 * --output-format json, else hands it to `show`. */
static int admin_call(struct opts *o, const char *method, const char *what,
                      const struct core_buf *query, void (*show)(yajl_val data))
{
  struct client_api *api = NULL;
  struct core_buf target;
  yajl_val tree, data;
  char err[1024];
  int rc;

  if (open_api(o, 1, &api) < 0)
    return 1;
  core_buf_init(&target, 8192);
  core_buf_printf(&target, "/api2/json/admin/datastore/%s/%s%s", client_api_store(api), what,
                  query && query->base ? query->base : "");
  rc = client_api_json(api, method, target.base, NULL, 0, NULL, &tree, &data, err, sizeof(err));
  core_buf_free(&target);
  client_api_free(api);
  if (rc < 0) {
    fprintf(stderr, "cairn: %s\n", err);
    return 1;
  }
  if (o->output && strcmp(o->output, "json") == 0)
    print_json(data);
  else if (show)
    show(data);
  yajl_tree_free(tree);
  return 0;
}

static const char *str_or(yajl_val v, const char *key, const char *dflt)
{
  const char *s = core_json_get_str(v, key);
  return s ? s : dflt;
}

static int64_t int_or(yajl_val v, const char *key, int64_t dflt)
{
  int64_t x;
  return core_json_get_int(v, key, &x) == 0 ? x : dflt;
}

static void show_snapshots(yajl_val data)
{
  if (data == NULL || !YAJL_IS_ARRAY(data))
    return;
  printf("%-48s %10s  %s\n", "snapshot", "size", "files");
  for (size_t i = 0; i < data->u.array.len; i++) {
    yajl_val s = data->u.array.values[i], files = core_json_get(s, "files");
    char when[FORMAT_NAME_TIME_LEN + 1], name[300], size[32] = "-";
    struct core_buf fl;
    fmt_time(int_or(s, "backup-time", 0), when);
    snprintf(name, sizeof(name), "%s/%s/%s", str_or(s, "backup-type", "?"),
             str_or(s, "backup-id", "?"), when);
    if (int_or(s, "size", -1) >= 0)
      client_fmt_bytes((uint64_t)int_or(s, "size", 0), size, sizeof(size));
    core_buf_init(&fl, 4096);
    if (files && YAJL_IS_ARRAY(files)) {
      for (size_t k = 0; k < files->u.array.len; k++) {
        yajl_val f = files->u.array.values[k];
        const char *fn = YAJL_IS_STRING(f) ? YAJL_GET_STRING(f) : core_json_get_str(f, "filename");
        if (fn && strcmp(fn, "index.json.blob") != 0)
          core_buf_printf(&fl, "%s%s", fl.len ? " " : "", fn);
      }
    }
    printf("%-48s %10s  %s\n", name, size, fl.base ? fl.base : "(unfinished)");
    core_buf_free(&fl);
  }
}

static void show_groups(yajl_val data)
{
  if (data == NULL || !YAJL_IS_ARRAY(data))
    return;
  printf("%-40s %9s  %-20s  %s\n", "group", "snapshots", "last backup", "owner");
  for (size_t i = 0; i < data->u.array.len; i++) {
    yajl_val g = data->u.array.values[i];
    char when[FORMAT_NAME_TIME_LEN + 1], name[300];
    fmt_time(int_or(g, "last-backup", 0), when);
    snprintf(name, sizeof(name), "%s/%s", str_or(g, "backup-type", "?"),
             str_or(g, "backup-id", "?"));
    printf("%-40s %9lld  %-20s  %s\n", name, (long long)int_or(g, "backup-count", 0), when,
           str_or(g, "owner", "-"));
  }
}

static void show_status(yajl_val data)
{
  char total[32], used[32], avail[32];
  int64_t t = int_or(data, "total", 0), u = int_or(data, "used", 0);
  client_fmt_bytes((uint64_t)t, total, sizeof(total));
  client_fmt_bytes((uint64_t)u, used, sizeof(used));
  client_fmt_bytes((uint64_t)int_or(data, "avail", 0), avail, sizeof(avail));
  printf("total %s, used %s (%.1f%%), available %s\n", total, used,
         t > 0 ? 100.0 * (double)u / (double)t : 0.0, avail);
}

static void show_prune(yajl_val data)
{
  if (data == NULL || !YAJL_IS_ARRAY(data))
    return;
  for (size_t i = 0; i < data->u.array.len; i++) {
    yajl_val s = data->u.array.values[i];
    char when[FORMAT_NAME_TIME_LEN + 1];
    int keep = 0;
    core_json_get_bool(s, "keep", &keep);
    fmt_time(int_or(s, "backup-time", 0), when);
    printf("%s/%s/%s %s\n", str_or(s, "backup-type", "?"), str_or(s, "backup-id", "?"), when,
           keep ? "keep" : "remove");
  }
}

/* "TYPE/ID" */
static int parse_group(const char *s, struct core_buf *q)
{
  const char *slash = strchr(s, '/');
  char type[16];
  if (slash == NULL || (size_t)(slash - s) >= sizeof(type))
    return -1;
  memcpy(type, s, (size_t)(slash - s));
  type[slash - s] = '\0';
  if (format_name_backup_type(type) < 0 || format_name_backup_id(slash + 1) < 0)
    return -1;
  client_query_add(q, "backup-type", type);
  client_query_add(q, "backup-id", slash + 1);
  return 0;
}

static int cmd_list(struct opts *o, int groups)
{
  struct core_buf q;
  int rc;
  core_buf_init(&q, 4096);
  if (*ns_of(o))
    client_query_add(&q, "ns", ns_of(o));
  if (!groups && o->npos == 1 && parse_group(o->pos[0], &q) < 0) {
    fprintf(stderr, "cairn snapshots: \"%s\" is not TYPE/ID\n", o->pos[0]);
    core_buf_free(&q);
    return EXIT_USAGE;
  }
  if (o->npos > (groups ? 0u : 1u)) {
    fprintf(stderr, "cairn: too many arguments\n");
    core_buf_free(&q);
    return EXIT_USAGE;
  }
  rc = admin_call(o, "GET", groups ? "groups" : "snapshots", &q,
                  groups ? show_groups : show_snapshots);
  core_buf_free(&q);
  return rc;
}

static int cmd_forget(struct opts *o)
{
  struct core_buf q;
  char *type, *id;
  int64_t t;
  int rc;
  if (o->npos != 1 || client_snapshot_parse(o->pos[0], &type, &id, &t) < 0) {
    fprintf(stderr, "cairn forget: needs one SNAPSHOT as TYPE/ID/TIME\n");
    return EXIT_USAGE;
  }
  core_buf_init(&q, 4096);
  if (*ns_of(o))
    client_query_add(&q, "ns", ns_of(o));
  client_query_add(&q, "backup-type", type);
  client_query_add(&q, "backup-id", id);
  client_query_add_u64(&q, "backup-time", (uint64_t)t);
  rc = admin_call(o, "DELETE", "snapshots", &q, NULL);
  if (rc == 0 && !(o->output && strcmp(o->output, "json") == 0))
    printf("removed %s\n", o->pos[0]);
  core_buf_free(&q);
  core_free(type);
  core_free(id);
  return rc;
}

static int cmd_prune(struct opts *o)
{
  struct core_buf q;
  int any = 0, rc;
  if (o->npos != 1) {
    fprintf(stderr, "cairn prune: needs one GROUP as TYPE/ID\n");
    return EXIT_USAGE;
  }
  core_buf_init(&q, 4096);
  if (parse_group(o->pos[0], &q) < 0) {
    fprintf(stderr, "cairn prune: \"%s\" is not TYPE/ID\n", o->pos[0]);
    core_buf_free(&q);
    return EXIT_USAGE;
  }
  if (*ns_of(o))
    client_query_add(&q, "ns", ns_of(o));
  for (int k = 0; k < 6; k++)
    if (o->keep[k]) {
      client_query_add_u64(&q, keep_names[k], o->keep[k]);
      any = 1;
    }
  if (!any) {
    /* PBS keeps everything without a rule; saying so beats a silent no-op */
    fprintf(stderr, "cairn prune: give at least one --keep-... rule\n");
    core_buf_free(&q);
    return EXIT_USAGE;
  }
  if (o->dry_run)
    client_query_add(&q, "dry-run", "1");
  rc = admin_call(o, "POST", "prune", &q, show_prune);
  core_buf_free(&q);
  return rc;
}

static int cmd_status(struct opts *o)
{
  if (o->npos) {
    fprintf(stderr, "cairn status: takes no arguments\n");
    return EXIT_USAGE;
  }
  return admin_call(o, "GET", "status", NULL, show_status);
}

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

static int cmd_key(struct opts *o)
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

/* Upload speed: opens a backup session for host/cairn-benchmark, uploads
 * random 4 MiB chunks from `workers` threads for `seconds`, and aborts the
 * session so nothing is kept (the chunks wait for GC). */
struct upl {
  struct client_api *api;
  const char *sid;
  const char *wid;
  double deadline;
  uint64_t bytes;
  int err;
  char errmsg[512];
  uv_thread_t thread;
};

static void upload_thread(void *arg)
{
  struct upl *u = arg;
  size_t len = (size_t)4 << 20;
  uint8_t *data = core_malloc(len), *blob;
  size_t blen;
  while (mono_s() < u->deadline) {
    uint8_t digest[32];
    char hex[65];
    struct core_buf target;
    struct client_resp resp;
    core_random(data, len);
    core_sha256(data, len, digest);
    core_hex_encode(digest, 32, hex);
    /* random data does not compress: the blob is the raw form */
    if (format_blob_encode_alloc(NULL, data, len, 0, NULL, &blob, &blen) < 0)
      break;
    core_buf_init(&target, 1024);
    core_buf_printf(&target, "/api2/json/backup/%s/dynamic_chunk", u->sid);
    client_query_add(&target, "wid", u->wid);
    client_query_add(&target, "digest", hex);
    client_query_add_u64(&target, "size", len);
    client_query_add_u64(&target, "encoded-size", blen);
    int rc = client_api_call(u->api, "POST", target.base, blob, blen, NULL, 0, &resp);
    if (rc == 0 && resp.status != 200)
      rc = client_api_status_error("POST", target.base, &resp, u->errmsg, sizeof(u->errmsg));
    else if (rc < 0)
      snprintf(u->errmsg, sizeof(u->errmsg), "%s", core_strerror(rc));
    client_resp_free(&resp);
    core_buf_free(&target);
    core_free(blob);
    if (rc < 0) {
      u->err = rc;
      break;
    }
    u->bytes += len;
  }
  core_free(data);
}

static double bench_upload(struct opts *o, double seconds, char *err, size_t errlen)
{
  struct client_api *api = NULL;
  struct core_buf target;
  yajl_val tree = NULL, data;
  unsigned n = o->workers ? o->workers : 4;
  struct upl *u = core_calloc(n, sizeof(*u));
  char *sid = NULL, wid[32] = "";
  double result = -1, t0;
  uint64_t total = 0;

  if (open_api(o, n + 1, &api) < 0) {
    snprintf(err, errlen, "no connection");
    core_free(u);
    return -1;
  }
  core_buf_init(&target, 4096);
  core_buf_printf(&target, "/api2/json/backup");
  client_query_add(&target, "store", client_api_store(api));
  if (*ns_of(o))
    client_query_add(&target, "ns", ns_of(o));
  client_query_add(&target, "backup-type", "host");
  client_query_add(&target, "backup-id", "cairn-benchmark");
  client_query_add_u64(&target, "backup-time", (uint64_t)time(NULL));
  if (client_api_json(api, "POST", target.base, NULL, 0, NULL, &tree, &data, err, errlen) < 0)
    goto out;
  {
    const char *s = data && YAJL_IS_STRING(data) ? YAJL_GET_STRING(data)
                                                  : core_json_get_str(data, "id");
    if (s == NULL) {
      snprintf(err, errlen, "no session id");
      goto out;
    }
    sid = core_strdup(s);
  }
  yajl_tree_free(tree);
  tree = NULL;
  core_buf_reset(&target);
  core_buf_printf(&target, "/api2/json/backup/%s/dynamic_index?archive-name=bench.didx", sid);
  if (client_api_json(api, "POST", target.base, NULL, 0, NULL, &tree, &data, err, errlen) < 0)
    goto out;
  if (data && YAJL_IS_OBJECT(data))
    data = core_json_get(data, "wid");
  if (data && YAJL_IS_INTEGER(data))
    snprintf(wid, sizeof(wid), "%lld", (long long)YAJL_GET_INTEGER(data));
  t0 = mono_s();
  for (unsigned i = 0; i < n; i++) {
    u[i].api = api;
    u[i].sid = sid;
    u[i].wid = wid;
    u[i].deadline = t0 + seconds;
    uv_thread_create(&u[i].thread, upload_thread, &u[i]);
  }
  for (unsigned i = 0; i < n; i++) {
    uv_thread_join(&u[i].thread);
    total += u[i].bytes;
    if (u[i].err && result < 0)
      snprintf(err, errlen, "%s", u[i].errmsg);
  }
  result = (double)total / (mono_s() - t0) / 1e6;
  for (unsigned i = 0; i < n; i++)
    if (u[i].err)
      result = -1;
out:
  if (sid) {
    struct client_resp resp;
    core_buf_reset(&target);
    core_buf_printf(&target, "/api2/json/backup/%s", sid);
    if (client_api_call(api, "DELETE", target.base, NULL, 0, NULL, 0, &resp) == 0)
      client_resp_free(&resp);
  }
  if (tree)
    yajl_tree_free(tree);
  core_buf_free(&target);
  core_free(sid);
  core_free(u);
  client_api_free(api);
  return result;
}

static int cmd_benchmark(struct opts *o)
{
  struct client_bench_row rows[16];
  double seconds = o->seconds > 0 ? o->seconds : 1.0;
  size_t n;
  int rc = 0;

  n = client_bench_cpu(seconds, rows, 15);
  if (o->repository || getenv("CAIRN_REPOSITORY")) {
    char err[1024] = "";
    snprintf(rows[n].name, sizeof(rows[n].name), "chunk upload (%u connections)",
             o->workers ? o->workers : 4);
    rows[n].mbps = bench_upload(o, seconds * 3, err, sizeof(err));
    if (rows[n].mbps < 0) {
      fprintf(stderr, "cairn benchmark: upload: %s\n", err);
      rc = 1;
    }
    n++;
  }
  if (o->output && strcmp(o->output, "json") == 0) {
    printf("[");
    for (size_t i = 0; i < n; i++)
      printf("%s{\"name\":\"%s\",\"mbps\":%.1f}", i ? "," : "", rows[i].name, rows[i].mbps);
    printf("]\n");
  } else {
    client_bench_print(stdout, rows, n);
  }
  return rc;
}

int main(int argc, char **argv)
{
  struct opts o;
  const char *cmd;
  int rc;

  memset(&o, 0, sizeof(o));
  o.progress = -1;
  signal(SIGPIPE, SIG_IGN);

  core_log_set_level(CORE_LOG_WARN);
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    print_help(argc > 2 && strcmp(argv[1], "help") == 0 ? argv[2] : NULL);
    return argc < 2 ? EXIT_USAGE : 0;
  }
  cmd = argv[1];
  /* Chunk buffers (up to 16 MiB) come and go on several threads. glibc's
   * default raises its mmap threshold after the first such free and then
   * keeps freed chunks in per-thread arenas, fragmented and with every page
   * they ever touched. Chunk memory is recycled by pools that bound what
   * they keep instead (client_bufpool for a backup's chunk buffers, an
   * http_bodypool for a restore's downloads), so everything else of that
   * size is mmapped (threshold 256 KiB) and given back whole on free. */
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  /* `benchmark load` has options of its own: client/client_load.c */
  if (strcmp(cmd, "benchmark") == 0 && argc > 2 && strcmp(argv[2], "load") == 0)
    return client_load_main(argc - 3, argv + 3);
  if (parse_args(argc, argv, 2, &o) < 0)
    return EXIT_USAGE;
  if (o.help) {
    print_help(cmd);
    return 0;
  }
  if (strcmp(cmd, "backup") == 0)
    rc = cmd_backup(&o);
  else if (strcmp(cmd, "restore") == 0)
    rc = cmd_restore(&o);
  else if (strcmp(cmd, "snapshots") == 0)
    rc = cmd_list(&o, 0);
  else if (strcmp(cmd, "groups") == 0)
    rc = cmd_list(&o, 1);
  else if (strcmp(cmd, "forget") == 0)
    rc = cmd_forget(&o);
  else if (strcmp(cmd, "prune") == 0)
    rc = cmd_prune(&o);
  else if (strcmp(cmd, "status") == 0)
    rc = cmd_status(&o);
  else if (strcmp(cmd, "key") == 0)
    rc = cmd_key(&o);
  else if (strcmp(cmd, "benchmark") == 0)
    rc = cmd_benchmark(&o);
  else {
    fprintf(stderr, "cairn: unknown command \"%s\"\n\n%s", cmd, usage_main);
    rc = EXIT_USAGE;
  }
  return rc;
}
