/* cairn_opts.c: the command line: options, help texts, argument parsing. */
#include "cmd/cairn.h"


#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const keep_names[6] = {"keep-last",   "keep-hourly",  "keep-daily",
                                          "keep-weekly", "keep-monthly", "keep-yearly"};

const char *usage_main =
    "usage: cairn COMMAND [OPTIONS] [ARGS]\n"
    "\n"
    "Commands:\n"
    "  backup NAME.didx:PATH|NAME.img.fidx:PATH...  back up into a new snapshot\n"
    "  restore SNAPSHOT NAME TARGET                 restore an archive (TARGET - is stdout)\n"
    "  ls SNAPSHOT ARCHIVE [PATH]                   list a directory of an archive\n"
    "  find SNAPSHOT PATTERN                        find files in a snapshot (or --group)\n"
    "  diff SNAPSHOT1 SNAPSHOT2 ARCHIVE             added, removed and changed files\n"
    "  mount SNAPSHOT ARCHIVE MOUNTPOINT            a directory archive as a read-only FUSE mount\n"
    "  snapshots [GROUP]                            list snapshots\n"
    "  groups                                       list backup groups\n"
    "  forget SNAPSHOT                              delete a snapshot\n"
    "  prune GROUP --keep-...                       delete old snapshots of a group\n"
    "  status                                       datastore usage\n"
    "  group move TYPE/ID --target-ns NS            move a backup group to another namespace\n"
    "  namespace move NS --target-ns NS             move a namespace (tree)\n"
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

void print_help(const char *cmd)
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
           "  --exclude PATTERN          leave out matching paths (repeatable; gitignore-like:\n"
           "                             \"*.o\" at any depth, \"/build\" or \"a/b\" from the root,\n"
           "                             \"cache/\" directories only, \"!keep\" re-includes)\n"
           "  --no-exclude-files         ignore .cairnexclude files (honoured by default: their\n"
           "                             patterns apply below the directory holding them)\n"
           "  --change-detection-mode metadata|data\n"
           "                             metadata (the default when the last snapshot has a\n"
           "                             catalog): files whose size, mtime, ctime and inode are\n"
           "                             unchanged are not read; data: read everything\n"
           "  --no-file-boundaries       pure content-defined chunks: files of 1 MiB and more\n"
           "                             do not start and end on a chunk boundary (no reuse by\n"
           "                             metadata; see docs/chunking.md)\n"
           "  --progress / --no-progress progress line (default: on a terminal)\n\n"
           "Mount points below PATH are not crossed (one file system).\n"
           "A catalog of CAIRN_CATALOG_INDEX_MIN bytes or more (default 4 MiB) is stored as\n"
           "an index of its own (NAME.catalog.didx), read by ranges.\n\n%s",
           conn_help);
  } else if (strcmp(cmd, "restore") == 0) {
    printf("usage: cairn restore SNAPSHOT NAME TARGET [OPTIONS]\n\n"
           "SNAPSHOT is TYPE/ID/TIME (TIME as 2024-05-01T10:00:00Z or epoch seconds).\n"
           "NAME is an archive of the snapshot, with or without its .didx/.img.fidx suffix.\n"
           "TARGET is a directory (directory archives), a file (files and images) or -\n"
           "for stdout (a file's contents, an image, or a directory archive as pax).\n"
           "Every chunk's digest and the index checksum are verified.\n\n"
           "  --include PATTERN  restore only matching entries of a directory archive (with\n"
           "                     their parent directories); repeatable; only the chunks\n"
           "                     holding them are fetched. With TARGET - and one file\n"
           "                     selected, its contents go to stdout.\n"
           "  --exclude PATTERN  leave matching entries out (repeatable)\n"
           "  --keyfile FILE   key for encrypted snapshots (CAIRN_KEYFILE)\n"
           "  --workers N      parallel chunk fetches (default 4)\n"
           "  --mem MiB        fetched chunk data held ahead (default 96)\n"
           "  --progress / --no-progress\n\n%s",
           conn_help);
  } else if (strcmp(cmd, "ls") == 0) {
    printf("usage: cairn ls SNAPSHOT ARCHIVE [PATH] [-l|--long] [OPTIONS]\n\n"
           "Lists directory PATH (default: the root) of a directory archive, or the entry\n"
           "PATH names, from the archive's catalog. -l adds type, mode, owner, size, mtime\n"
           "and link targets; --output-format json prints an array of entries.\n\n%s",
           conn_help);
  } else if (strcmp(cmd, "find") == 0) {
    printf("usage: cairn find SNAPSHOT PATTERN [--archive NAME] [-l] [OPTIONS]\n"
           "       cairn find --group TYPE/ID PATTERN [--archive NAME] [-l] [OPTIONS]\n\n"
           "Prints the entries matching PATTERN (gitignore-like: \"*.conf\" at any depth,\n"
           "\"etc/*.conf\" from the root) in every directory archive of the snapshot, or of\n"
           "every snapshot of the group.\n\n%s",
           conn_help);
  } else if (strcmp(cmd, "mount") == 0) {
    printf("usage: cairn mount SNAPSHOT ARCHIVE MOUNTPOINT [OPTIONS]\n\n"
           "Mounts a directory archive read-only (FUSE) in the foreground: the tree comes\n"
           "from the catalog, file data from chunks fetched on demand (verified, the last 8\n"
           "kept). Ctrl-C, SIGTERM or `fusermount3 -u MOUNTPOINT` unmounts.\n\n"
           "  --keyfile FILE   key for encrypted snapshots (CAIRN_KEYFILE)\n\n%s",
           conn_help);
  } else if (strcmp(cmd, "diff") == 0) {
    printf("usage: cairn diff SNAPSHOT1 SNAPSHOT2 ARCHIVE [-l] [OPTIONS]\n\n"
           "Compares the catalogs of ARCHIVE in two snapshots: \"+\" added, \"-\" removed,\n"
           "\"M\" changed (type, mode, owner, size, mtime, ctime or link target).\n\n%s",
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
  } else if (strcmp(cmd, "group") == 0) {
    printf("usage: cairn group move TYPE/ID --target-ns NS [--ns NS] [--merge-group BOOL]\n\n"
           "Moves the group from --ns (default: the root) into the existing namespace\n"
           "--target-ns. With --merge-group true (the default) an existing group there is\n"
           "merged into if it has the same owner and only older snapshots. Follows the\n"
           "server's task log; exits non-zero if the move failed.\n\n%s",
           conn_help);
  } else if (strcmp(cmd, "namespace") == 0) {
    printf("usage: cairn namespace move NS --target-ns NS [--max-depth N]\n"
           "       [--delete-source BOOL] [--merge-groups BOOL]\n\n"
           "Moves namespace NS (and the namespaces below it, up to --max-depth levels) so\n"
           "that it becomes --target-ns, like mv; the target's parent must exist. Emptied\n"
           "source namespaces are removed unless --delete-source false. Follows the\n"
           "server's task log; exits non-zero if any group was not moved.\n\n%s",
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
int parse_args(int argc, char **argv, int first, struct opts *o)
{
  for (int i = first; i < argc; i++) {
    char *a = argv[i], *val = NULL, name[64];
    if (strcmp(a, "-l") == 0) {
      o->long_format = 1;
      continue;
    }
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
    if (strcmp(name, "long") == 0) {
      o->long_format = 1;
      continue;
    }
    if (strcmp(name, "no-exclude-files") == 0) {
      o->no_exclude_files = 1;
      continue;
    }
    if (strcmp(name, "no-file-boundaries") == 0) {
      o->no_file_boundaries = 1;
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
    else if (strcmp(name, "target-ns") == 0)
      o->target_ns = val;
    else if (strcmp(name, "merge-group") == 0)
      o->merge_group = val;
    else if (strcmp(name, "merge-groups") == 0)
      o->merge_groups = val;
    else if (strcmp(name, "delete-source") == 0)
      o->delete_source = val;
    else if (strcmp(name, "max-depth") == 0)
      o->max_depth = val;
    else if (strcmp(name, "exclude") == 0 || strcmp(name, "include") == 0) {
      int inc = name[0] == 'i';
      size_t *n = inc ? &o->ninclude : &o->nexclude;
      if (*n == 64) {
        fprintf(stderr, "cairn: at most 64 --%s patterns\n", name);
        return -1;
      }
      (inc ? o->include : o->exclude)[(*n)++] = val;
    } else if (strcmp(name, "change-detection-mode") == 0) {
      if (strcmp(val, "data") != 0 && strcmp(val, "metadata") != 0) {
        fprintf(stderr, "cairn: --change-detection-mode takes data or metadata\n");
        return -1;
      }
      o->change_mode = val;
    } else if (strcmp(name, "archive") == 0)
      o->archive = val;
    else if (strcmp(name, "group") == 0)
      o->group = val;
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
