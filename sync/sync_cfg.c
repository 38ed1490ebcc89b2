/* sync_cfg.c: remote.cfg and sync.cfg: property checks, edits, loads, and
 * the run parameters built from them. Blocking parts run in the pool or in
 * cairn-admin. */
#include "sync/sync.h"

#include "access/access.h"
#include "core/core_alloc.h"
#include "core/core_error.h"
#include "core/core_parse.h"
#include "core/core_utf8.h"
#include "format/format_name.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const remote_props[] = {"host", "port", "auth-id", "password",
                                           "fingerprint", "comment", NULL};
static const char *const job_props[] = {
  "store", "ns", "remote", "remote-store", "remote-ns", "owner", "remove-vanished",
  "max-depth", "group-filter", "schedule", "rate-in", "burst-in", "rate-out", "burst-out",
  "transfer-last", "encrypted-only", "verified-only", "resync-corrupt", "sync-direction",
  "worker-threads", "comment", NULL};

static int known(const char *const *list, const char *key)
{
  for (size_t i = 0; list[i]; i++)
    if (!strcmp(list[i], key))
      return 1;
  return 0;
}

int sync_id_valid(const char *s)
{
  return s && format_name_datastore(s) == 0;
}

/* What every property of both files must pass: a key of `list` and a value
 * that fits the section format. */
static int common_value(const char *const *list, const char *key, const char *value, char *err,
                        size_t errlen)
{
  char q[80];
  if (!known(list, key)) {
    snprintf(err, errlen, "unknown property '%s'", core_utf8_quote(key, q, sizeof(q)));
    return CORE_ECONFIG;
  }
  if (!core_utf8_valid(value, strlen(value)) || !core_config_valid_value(value)) {
    snprintf(err, errlen, "property '%s': invalid characters", key);
    return CORE_ECONFIG;
  }
  if (strlen(value) > 1024) {
    snprintf(err, errlen, "property '%s' too long", key);
    return CORE_ECONFIG;
  }
  return 0;
}

static int is_fingerprint(const char *v)
{
  /* 32 hex bytes, with or without ':' between them. */
  int n = 0;
  for (const char *p = v; *p; p++) {
    if (*p == ':')
      continue;
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
      return 0;
    n++;
  }
  return n == 64;
}

static int host_valid(const char *v)
{
  size_t n = strlen(v);
  if (n == 0 || n > 253)
    return 0;
  for (const char *p = v; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          *p == '.' || *p == '-' || *p == ':' || *p == '_'))
      return 0;
  return 1;
}

int sync_remote_check_prop(const char *key, const char *value, char *err, size_t errlen)
{
  int rc = common_value(remote_props, key, value, err, errlen);
  if (rc)
    return rc;
  uint64_t n;
  if (!strcmp(key, "host") && !host_valid(value)) {
    snprintf(err, errlen, "host must be a DNS name or an IP address");
    return CORE_ECONFIG;
  }
  if (!strcmp(key, "port") && (core_parse_u64(value, &n) < 0 || n < 1 || n > 65535)) {
    snprintf(err, errlen, "port must be 1..65535");
    return CORE_ECONFIG;
  }
  if (!strcmp(key, "auth-id") && !access_authid_valid(value)) {
    snprintf(err, errlen, "auth-id must be user@realm or user@realm!token");
    return CORE_ECONFIG;
  }
  if (!strcmp(key, "fingerprint") && !is_fingerprint(value)) {
    snprintf(err, errlen, "fingerprint must be a SHA-256 fingerprint (64 hex digits)");
    return CORE_ECONFIG;
  }
  if (!strcmp(key, "password") && value[0] == '\0') {
    snprintf(err, errlen, "password must not be empty");
    return CORE_ECONFIG;
  }
  return 0;
}

static const char *const bool_props[] = {"remove-vanished", "encrypted-only", "verified-only",
                                         "resync-corrupt", NULL};

int sync_job_check_prop(const char *key, const char *value, char *err, size_t errlen)
{
  int rc = common_value(job_props, key, value, err, errlen);
  if (rc)
    return rc;
  uint64_t n;
  int b;
  if ((!strcmp(key, "store") || !strcmp(key, "remote-store")) &&
      format_name_datastore(value) < 0) {
    snprintf(err, errlen, "%s: invalid datastore name", key);
    return CORE_ECONFIG;
  }
  if (!strcmp(key, "remote") && !sync_id_valid(value)) {
    snprintf(err, errlen, "remote: invalid remote name");
    return CORE_ECONFIG;
  }
  if ((!strcmp(key, "ns") || !strcmp(key, "remote-ns")) && value[0] &&
      format_name_ns(value) < 0) {
    snprintf(err, errlen, "%s: invalid namespace", key);
    return CORE_ECONFIG;
  }
  if (!strcmp(key, "owner") && !access_authid_valid(value)) {
    snprintf(err, errlen, "owner must be user@realm or user@realm!token");
    return CORE_ECONFIG;
  }
  if (known(bool_props, key) && core_parse_bool(value, &b) < 0) {
    snprintf(err, errlen, "property '%s' must be a boolean (1/0, true/false, yes/no, on/off)",
             key);
    return CORE_ECONFIG;
  }
  if (!strcmp(key, "max-depth") &&
      (core_parse_u64(value, &n) < 0 || n > FORMAT_NAME_NS_MAX_DEPTH)) {
    snprintf(err, errlen, "max-depth must be 0..%d", FORMAT_NAME_NS_MAX_DEPTH);
    return CORE_ECONFIG;
  }
  if (!strcmp(key, "transfer-last") && (core_parse_u64(value, &n) < 0 || n < 1)) {
    snprintf(err, errlen, "transfer-last must be a positive integer");
    return CORE_ECONFIG;
  }
  if (!strcmp(key, "worker-threads") &&
      (core_parse_u64(value, &n) < 0 || n < 1 || n > SYNC_MAX_WORKERS)) {
    snprintf(err, errlen, "worker-threads must be 1..%d", SYNC_MAX_WORKERS);
    return CORE_ECONFIG;
  }
  if (!strcmp(key, "sync-direction") && strcmp(value, "pull") && strcmp(value, "push")) {
    snprintf(err, errlen, "sync-direction must be pull or push");
    return CORE_ECONFIG;
  }
  if ((!strncmp(key, "rate-", 5) || !strncmp(key, "burst-", 6)) &&
      sync_rate_parse(value, &n) < 0) {
    snprintf(err, errlen, "%s must be a byte rate (e.g. 10M, 512KiB)", key);
    return CORE_ECONFIG;
  }
  if (!strcmp(key, "schedule")) {
    struct core_calendar cal;
    char why[128];
    if (core_calendar_parse(value, &cal, why, sizeof(why)) < 0) {
      snprintf(err, errlen, "schedule: %s", why);
      return CORE_ECONFIG;
    }
  }
  if (!strcmp(key, "group-filter")) {
    /* One or more filters, separated by commas. */
    char *copy = core_strdup(value), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
      rc = sync_filter_check(t, err, errlen);
      if (rc < 0)
        break;
    }
    core_free(copy);
    if (rc < 0)
      return CORE_ECONFIG;
  }
  return 0;
}

static int ns_within(const char *outer, const char *inner)
{
  size_t n = strlen(outer);
  return n == 0 || (!strncmp(inner, outer, n) && (inner[n] == '\0' || inner[n] == '/'));
}

int sync_local_overlap(const char *store, const char *ns, const char *src_store,
                       const char *src_ns, char *err, size_t errlen)
{
  if (strcmp(store, src_store) != 0)
    return 0;
  if (ns_within(ns, src_ns) || ns_within(src_ns, ns)) {
    snprintf(err, errlen, "a local sync within one datastore needs two namespaces that do "
                          "not contain each other");
    return CORE_ECONFIG;
  }
  return 0;
}

/* ---- passwords: base64 as PBS stores them ---- */

char *sync_password_encode(const char *secret)
{
  size_t n = strlen(secret);
  char *out = core_malloc(4 * ((n + 2) / 3) + 1);
  EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)secret, (int)n);
  return out;
}

char *sync_password_decode(const char *stored)
{
  size_t n = strlen(stored);
  if (n == 0 || n % 4 != 0 || n > 4096)
    return NULL;
  unsigned char *out = core_malloc(n / 4 * 3 + 1);
  int len = EVP_DecodeBlock(out, (const unsigned char *)stored, (int)n);
  if (len < 0) {
    core_free(out);
    return NULL;
  }
  /* EVP_DecodeBlock keeps the padding's zero bytes. */
  if (n >= 1 && stored[n - 1] == '=')
    len--;
  if (n >= 2 && stored[n - 2] == '=')
    len--;
  out[len] = '\0';
  if (strlen((char *)out) != (size_t)len) {
    core_free(out);
    return NULL;
  }
  return (char *)out;
}

/* ---- files ---- */

static char *cfg_path(const char *config_dir, int remote)
{
  return core_asprintf("%s/%s", config_dir, remote ? SYNC_REMOTE_CFG : SYNC_JOB_CFG);
}

int sync_cfg_load(const char *config_dir, int remote, struct core_config *cfg,
                  char digest[CORE_CONFIG_DIGEST_LEN], char *err, size_t errlen)
{
  char *path = cfg_path(config_dir, remote);
  core_config_init(cfg);
  int rc = core_config_load(path, cfg, digest, err, errlen);
  core_free(path);
  return rc;
}

static int set_prop(struct core_config_section *sec, const char *key, const char *value)
{
  if (!strcmp(key, "password")) {
    char *enc = sync_password_encode(value);
    int rc = core_config_set(sec, key, enc);
    explicit_bzero(enc, strlen(enc));
    core_free(enc);
    return rc;
  }
  if (!strcmp(key, "group-filter")) {
    core_config_delete(sec, key);
    char *copy = core_strdup(value), *save = NULL;
    int rc = 0;
    for (char *t = strtok_r(copy, ",", &save); t && rc == 0; t = strtok_r(NULL, ",", &save))
      rc = core_config_append(sec, key, t);
    core_free(copy);
    return rc;
  }
  return core_config_set(sec, key, value);
}

/* A remote still named by a job cannot go. */
static int remote_in_use(struct sync_edit *e, const char *name)
{
  struct core_config jobs;
  char lerr[128];
  int rc = sync_cfg_load(e->config_dir, 0, &jobs, NULL, lerr, sizeof(lerr));
  if (rc < 0) {
    snprintf(e->err, sizeof(e->err), "cannot read %s: %s", SYNC_JOB_CFG, lerr);
    core_config_free(&jobs);
    return rc;
  }
  for (size_t i = 0; i < jobs.nsections; i++) {
    const char *r = core_config_get(jobs.sections[i], "remote");
    if (r && !strcmp(r, name)) {
      snprintf(e->err, sizeof(e->err), "remote '%s' is used by sync job '%s'", name,
               jobs.sections[i]->name);
      core_config_free(&jobs);
      return CORE_ELOCKED;
    }
  }
  core_config_free(&jobs);
  return 0;
}

static int remote_exists(struct sync_edit *e, const char *name)
{
  struct core_config remotes;
  char lerr[128];
  int rc = sync_cfg_load(e->config_dir, 1, &remotes, NULL, lerr, sizeof(lerr));
  if (rc == 0 && core_config_find(&remotes, "remote", name) == NULL) {
    snprintf(e->err, sizeof(e->err), "no such remote '%s'", name);
    rc = CORE_ECONFIG;
  } else if (rc < 0) {
    snprintf(e->err, sizeof(e->err), "cannot read %s: %s", SYNC_REMOTE_CFG, lerr);
  }
  core_config_free(&remotes);
  return rc;
}

static int check_section(struct sync_edit *e, const struct core_config_section *sec)
{
  if (e->remote) {
    static const char *const need[] = {"host", "auth-id", "password"};
    for (size_t i = 0; i < 3; i++)
      if (core_config_get(sec, need[i]) == NULL) {
        snprintf(e->err, sizeof(e->err), "missing property '%s'", need[i]);
        return CORE_ECONFIG;
      }
    return 0;
  }
  static const char *const need[] = {"store", "remote-store"};
  for (size_t i = 0; i < 2; i++)
    if (core_config_get(sec, need[i]) == NULL) {
      snprintf(e->err, sizeof(e->err), "missing property '%s'", need[i]);
      return CORE_ECONFIG;
    }
  const char *dir = core_config_get(sec, "sync-direction");
  const char *remote = core_config_get(sec, "remote");
  if (dir && !strcmp(dir, "push") && remote == NULL) {
    snprintf(e->err, sizeof(e->err), "a push job needs a remote");
    return CORE_ECONFIG;
  }
  if (remote == NULL) {
    const char *ns = core_config_get(sec, "ns"), *rns = core_config_get(sec, "remote-ns");
    int rc = sync_local_overlap(core_config_get(sec, "store"), ns ? ns : "",
                                core_config_get(sec, "remote-store"), rns ? rns : "", e->err,
                                sizeof(e->err));
    if (rc < 0)
      return rc;
  }
  if (remote)
    return remote_exists(e, remote);
  return 0;
}

static int apply_edit(struct core_config *cfg, void *arg)
{
  struct sync_edit *e = arg;
  const char *type = e->remote ? "remote" : "sync";
  struct core_config_section *sec = core_config_find(cfg, NULL, e->name);
  if (e->op == SYNC_EDIT_CREATE) {
    if (sec) {
      snprintf(e->err, sizeof(e->err), "%s '%s' already exists", type, e->name);
      return CORE_EEXISTS;
    }
    int rc = core_config_add(cfg, type, e->name, &sec);
    if (rc)
      return rc;
  } else if (sec == NULL || strcmp(sec->type, type) != 0) {
    snprintf(e->err, sizeof(e->err), "no such %s '%s'", e->remote ? "remote" : "sync job",
             e->name);
    return CORE_ENOTFOUND;
  }
  if (e->op == SYNC_EDIT_REMOVE) {
    if (e->remote) {
      int rc = remote_in_use(e, e->name);
      if (rc < 0)
        return rc;
    }
    return core_config_remove(cfg, type, e->name);
  }
  for (size_t i = 0; i < e->nset; i++) {
    int rc = (e->remote ? sync_remote_check_prop : sync_job_check_prop)(
        e->set[i].key, e->set[i].value, e->err, sizeof(e->err));
    if (rc)
      return rc;
    if (set_prop(sec, e->set[i].key, e->set[i].value) < 0) {
      snprintf(e->err, sizeof(e->err), "invalid property '%s'", e->set[i].key);
      return CORE_ECONFIG;
    }
  }
  for (size_t i = 0; i < e->ndel; i++) {
    char q[80];
    if (!known(e->remote ? remote_props : job_props, e->del[i])) {
      snprintf(e->err, sizeof(e->err), "cannot delete unknown property '%s'",
               core_utf8_quote(e->del[i], q, sizeof(q)));
      return CORE_ECONFIG;
    }
    core_config_delete(sec, e->del[i]);
  }
  return check_section(e, sec);
}

int sync_edit_apply(struct sync_edit *e)
{
  e->err[0] = '\0';
  if (!sync_id_valid(e->name)) {
    snprintf(e->err, sizeof(e->err), "invalid %s name", e->remote ? "remote" : "sync job");
    return CORE_ENAME;
  }
  char *path = cfg_path(e->config_dir, e->remote);
  struct core_config_edit ce;
  memset(&ce, 0, sizeof(ce));
  ce.path = path;
  ce.expect_digest = e->digest;
  ce.apply = apply_edit;
  ce.arg = e;
  ce.mode = e->remote ? 0600 : CORE_CONFIG_DEFAULT_MODE;
  ce.shmem = e->shmem;
  ce.slot = e->remote ? CORE_GEN_REMOTE : CORE_GEN_JOB;
  int rc = core_config_edit(&ce);
  if (rc < 0 && e->err[0] == '\0')
    snprintf(e->err, sizeof(e->err), "%s", ce.err[0] ? ce.err : core_strerror(rc));
  core_free(path);
  return rc < 0 ? rc : 0;
}

/* ---- run parameters ---- */

void sync_params_free(struct sync_params *p)
{
  if (p == NULL)
    return;
  core_free(p->job_id);
  core_free(p->store);
  core_free(p->ns);
  core_free(p->remote);
  core_free(p->remote_store);
  core_free(p->remote_ns);
  core_free(p->owner);
  sync_filters_free(&p->filters);
  core_free(p->host);
  core_free(p->auth_id);
  if (p->secret) {
    explicit_bzero(p->secret, strlen(p->secret));
    core_free(p->secret);
  }
  core_free(p->fingerprint);
  core_free(p);
}

int sync_params_set_remote(struct sync_params *p, const struct core_config_section *r, char *err,
                           size_t errlen)
{
  const char *host = core_config_get(r, "host"), *auth = core_config_get(r, "auth-id");
  const char *pw = core_config_get(r, "password"), *port = core_config_get(r, "port");
  const char *fp = core_config_get(r, "fingerprint");
  uint64_t n = SYNC_DEFAULT_PORT;
  if (host == NULL || auth == NULL || pw == NULL ||
      (port && (core_parse_u64(port, &n) < 0 || n < 1 || n > 65535))) {
    snprintf(err, errlen, "remote '%s' is incomplete (host, auth-id, password)", r->name);
    return CORE_ECONFIG;
  }
  char *secret = sync_password_decode(pw);
  if (secret == NULL) {
    snprintf(err, errlen, "remote '%s': password is not valid base64", r->name);
    return CORE_ECONFIG;
  }
  core_free(p->remote);
  p->remote = core_strdup(r->name);
  p->host = core_strdup(host);
  p->port = (int)n;
  p->auth_id = core_strdup(auth);
  p->secret = secret;
  p->fingerprint = fp ? core_strdup(fp) : NULL;
  const char *plain = getenv("CAIRN_SYNC_PLAIN_HTTP");
  p->plain_http = plain && !strcmp(plain, "1");
  return 0;
}

static int get_bool(const struct core_config_section *s, const char *key)
{
  const char *v = core_config_get(s, key);
  int b = 0;
  if (v)
    core_parse_bool(v, &b);
  return b;
}

static uint64_t get_u64(const struct core_config_section *s, const char *key, uint64_t def)
{
  const char *v = core_config_get(s, key);
  uint64_t n;
  if (v == NULL)
    return def;
  if (!strncmp(key, "rate-", 5) || !strncmp(key, "burst-", 6))
    return sync_rate_parse(v, &n) == 0 ? n : def;
  return core_parse_u64(v, &n) == 0 ? n : def;
}

int sync_params_from_job(struct sync_params *p, const struct core_config_section *job,
                         const struct core_config_section *remote_sec, char *err,
                         size_t errlen)
{
  for (size_t i = 0; i < job->nkv; i++) {
    int rc = sync_job_check_prop(job->kv[i].key, job->kv[i].value, err, errlen);
    if (rc)
      return rc;
  }
  const char *store = core_config_get(job, "store"), *rstore = core_config_get(job, "remote-store");
  if (store == NULL || rstore == NULL) {
    snprintf(err, errlen, "sync job '%s' needs store and remote-store", job->name);
    return CORE_ECONFIG;
  }
  const char *v;
  p->job_id = core_strdup(job->name);
  p->store = core_strdup(store);
  p->remote_store = core_strdup(rstore);
  p->ns = core_strdup((v = core_config_get(job, "ns")) ? v : "");
  p->remote_ns = core_strdup((v = core_config_get(job, "remote-ns")) ? v : "");
  p->owner = core_strdup((v = core_config_get(job, "owner")) ? v : ACCESS_ROOT);
  v = core_config_get(job, "sync-direction");
  p->dir = v && !strcmp(v, "push") ? SYNC_PUSH : SYNC_PULL;
  p->remove_vanished = get_bool(job, "remove-vanished");
  p->encrypted_only = get_bool(job, "encrypted-only");
  p->verified_only = get_bool(job, "verified-only");
  p->resync_corrupt = get_bool(job, "resync-corrupt");
  p->max_depth = core_config_get(job, "max-depth") ? (int)get_u64(job, "max-depth", 0) : -1;
  p->transfer_last = get_u64(job, "transfer-last", 0);
  p->worker_threads = (int)get_u64(job, "worker-threads", 1);
  p->rate_in = get_u64(job, "rate-in", 0);
  p->burst_in = get_u64(job, "burst-in", 0);
  p->rate_out = get_u64(job, "rate-out", 0);
  p->burst_out = get_u64(job, "burst-out", 0);
  for (size_t i = 0; i < job->nkv; i++)
    if (!strcmp(job->kv[i].key, "group-filter")) {
      char *copy = core_strdup(job->kv[i].value), *save = NULL;
      int rc = 0;
      for (char *t = strtok_r(copy, ",", &save); t && rc == 0; t = strtok_r(NULL, ",", &save))
        rc = sync_filters_add(&p->filters, t, err, errlen);
      core_free(copy);
      if (rc < 0)
        return CORE_ECONFIG;
    }
  const char *remote = core_config_get(job, "remote");
  if (remote) {
    if (remote_sec == NULL) {
      snprintf(err, errlen, "sync job '%s': no such remote '%s'", job->name, remote);
      return CORE_ECONFIG;
    }
    return sync_params_set_remote(p, remote_sec, err, errlen);
  }
  return 0;
}
