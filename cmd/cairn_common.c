/* cairn_common.c: what the commands share: connecting, keys, time, signals, admin API calls. */
#include "cmd/cairn.h"

#include "client/client_api.h"
#include "core/core_alloc.h"
#include "core/core_buf.h"
#include "core/core_error.h"
#include "core/core_json.h"
#include "format/format_crypt.h"
#include "format/format_keyfile.h"
#include "format/format_name.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

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

int open_api(const struct opts *o, unsigned conns, struct client_api **api)
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

const char *ns_of(const struct opts *o)
{
  const char *ns = o->ns ? o->ns : getenv("CAIRN_NS");
  return ns ? ns : "";
}

int want_progress(const struct opts *o)
{
  if (o->progress >= 0)
    return o->progress;
  return isatty(STDERR_FILENO);
}

/* Reads a passphrase: CAIRN_ENCRYPTION_PASSWORD, else the terminal (echo
 * off). Returns a new string or NULL. */
char *read_passphrase(const char *prompt)
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
int load_key(const struct opts *o, struct format_crypt *crypt)
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

void fmt_time(int64_t t, char out[FORMAT_NAME_TIME_LEN + 1])
{
  if (format_name_time_format(t, out) < 0)
    snprintf(out, FORMAT_NAME_TIME_LEN + 1, "%lld", (long long)t);
}

double mono_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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
int admin_call(struct opts *o, const char *method, const char *what,
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

const char *str_or(yajl_val v, const char *key, const char *dflt)
{
  const char *s = core_json_get_str(v, key);
  return s ? s : dflt;
}

int64_t int_or(yajl_val v, const char *key, int64_t dflt)
{
  int64_t x;
  return core_json_get_int(v, key, &x) == 0 ? x : dflt;
}

/* "TYPE/ID" */
int parse_group(const char *s, struct core_buf *q)
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
/* Set by SIGINT/SIGTERM: the running backup or restore stops at its next
 * chunk and ends its session, so the group is not left locked until the
 * server's idle timeout. A second signal ends the process at once. */
volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
  interrupted = 1;
  signal(sig, SIG_DFL);
}

void catch_signals(void)
{
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}
