/* cairn.h: what the files of the `cairn` program share (cmd/cairn*.c): the
 * parsed options and the helpers every command uses. Not a library header. */
#ifndef CMD_CAIRN_H
#define CMD_CAIRN_H

#include "core/core_buf.h"
#include "format/format_name.h"

#include <signal.h>
#include <stdint.h>
#include <yajl/yajl_tree.h>

#define EXIT_USAGE 2

struct client_api;
struct format_crypt;

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
  const char *target_ns;     /* moves */
  const char *merge_group;   /* "true"/"false", passed through */
  const char *merge_groups;
  const char *delete_source;
  const char *max_depth;
  unsigned keep[6];       /* last hourly daily weekly monthly yearly */
  const char *exclude[64]; /* --exclude PATTERN (repeatable) */
  size_t nexclude;
  const char *include[64]; /* --include PATTERN (repeatable) */
  size_t ninclude;
  const char *change_mode; /* --change-detection-mode */
  const char *archive;     /* find --archive */
  const char *group;       /* find --group */
  int long_format;         /* ls -l / --long */
  int no_exclude_files;    /* --no-exclude-files */
  int no_file_boundaries;  /* --no-file-boundaries */
  char *pos[64];          /* positional arguments */
  size_t npos;
};

/* cairn_opts.c */
extern const char *const keep_names[6];
extern const char *usage_main;
void print_help(const char *cmd);
int parse_args(int argc, char **argv, int first, struct opts *o);

/* cairn_common.c */
/* Set by SIGINT/SIGTERM once catch_signals() ran (see cairn_common.c). */
extern volatile sig_atomic_t interrupted;
void catch_signals(void);
int open_api(const struct opts *o, unsigned conns, struct client_api **api);
const char *ns_of(const struct opts *o);
int want_progress(const struct opts *o);
char *read_passphrase(const char *prompt);
int load_key(const struct opts *o, struct format_crypt *crypt);
void fmt_time(int64_t t, char out[FORMAT_NAME_TIME_LEN + 1]);
double mono_s(void);
int admin_call(struct opts *o, const char *method, const char *what,
               const struct core_buf *query, void (*show)(yajl_val data));
const char *str_or(yajl_val v, const char *key, const char *dflt);
int64_t int_or(yajl_val v, const char *key, int64_t dflt);
int parse_group(const char *s, struct core_buf *q);

/* One function per command, in cairn_<command>.c. */
int cmd_backup(struct opts *o);
int cmd_restore(struct opts *o);
int cmd_list(struct opts *o, int groups);
int cmd_forget(struct opts *o);
int cmd_prune(struct opts *o);
int cmd_status(struct opts *o);
int cmd_key(struct opts *o);
int cmd_benchmark(struct opts *o);
int cmd_move(struct opts *o, int ns_move); /* cairn_move.c */
int cmd_ls(struct opts *o);
int cmd_find(struct opts *o);
int cmd_diff(struct opts *o);
int cmd_mount(struct opts *o);

#endif
