/* fuzz_section_config.c: section-config files as datastore.cfg and s3.cfg
 * are read, and the property strings inside their values.
 *
 * Input: the file. A parsed config is written and parsed again: the text
 * must be a fixed point (core_config.h promises parse + write gives the
 * same bytes for anything it wrote). Then each section goes to its owner's
 * interpretation: datastore sections through store_dsconfig_check_prop and
 * store_registry_parse_settings, s3-endpoint sections through
 * s3_config_parse_section; and every value through the property-string
 * parser, whose build must again be a fixed point. */
#include "fuzz.h"

#include "core/core_alloc.h"
#include "core/core_config.h"
#include "s3/s3_config.h"
#include "store/store_dsconfig.h"
#include "store/store_registry.h"

static void write_cfg(const struct core_config *cfg, struct core_buf *out)
{
  core_buf_init(out, CORE_CONFIG_MAX_SIZE);
  FUZZ_ASSERT(core_config_write(cfg, out) == 0);
}

static void check_props(const char *value, const char *default_key)
{
  struct core_config_props p, q;
  core_config_props_init(&p);
  if (core_config_props_parse(&p, value, default_key) == 0) {
    struct core_buf a, b;
    core_buf_init(&a, CORE_CONFIG_MAX_SIZE);
    core_buf_init(&b, CORE_CONFIG_MAX_SIZE);
    FUZZ_ASSERT(core_config_props_build(&p, default_key, &a) == 0);
    core_config_props_init(&q);
    FUZZ_ASSERT(core_config_props_parse(&q, a.base ? a.base : "", default_key) == 0);
    FUZZ_ASSERT(q.n == p.n);
    for (size_t i = 0; i < p.n; i++) {
      FUZZ_ASSERT(strcmp(p.items[i].key, q.items[i].key) == 0);
      FUZZ_ASSERT(strcmp(p.items[i].value, q.items[i].value) == 0);
      FUZZ_ASSERT(core_config_props_get(&q, p.items[i].key) != NULL);
    }
    FUZZ_ASSERT(core_config_props_build(&q, default_key, &b) == 0);
    FUZZ_ASSERT(a.len == b.len && (a.len == 0 || memcmp(a.base, b.base, a.len) == 0));
    core_config_props_free(&q);
    core_buf_free(&a);
    core_buf_free(&b);
  }
  core_config_props_free(&p);
}

static void check_section(const struct core_config_section *sec)
{
  char err[256];
  for (size_t i = 0; i < sec->nkv; i++) {
    FUZZ_ASSERT(core_config_valid_name(sec->kv[i].key));
    FUZZ_ASSERT(core_config_valid_value(sec->kv[i].value));
    check_props(sec->kv[i].value, NULL);
    check_props(sec->kv[i].value, "type");
  }
  if (strcmp(sec->type, "datastore") == 0) {
    for (size_t i = 0; i < sec->nkv; i++)
      (void)store_dsconfig_check_prop(sec->kv[i].key, sec->kv[i].value, err, sizeof(err));
    struct store_datastore ds;
    memset(&ds, 0, sizeof(ds));
    (void)store_registry_parse_settings(sec, &ds, err, sizeof(err));
    core_free(ds.maint_msg);
  } else if (strcmp(sec->type, S3_SECTION_TYPE) == 0) {
    struct s3_endpoint ep;
    memset(&ep, 0, sizeof(ep));
    if (s3_config_parse_section(sec, "secret", &ep, err, sizeof(err)) == 0) {
      FUZZ_ASSERT(ep.id != NULL && s3_config_check_id(ep.id) == 0);
      FUZZ_ASSERT(ep.port >= 0 && ep.port <= 65535);
      struct s3_client_config cc;
      s3_endpoint_client_config(&ep, &cc);
    }
    s3_endpoint_free(&ep);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct core_config cfg;
  char err[CORE_CONFIG_ERR_LEN] = "";
  core_config_init(&cfg);
  int rc = core_config_parse(&cfg, (const char *)data, size, err, sizeof(err));
  if (rc != 0) {
    FUZZ_ASSERT(rc < 0 && cfg.nsections == 0 && err[0] != '\0');
    core_config_free(&cfg);
    return 0;
  }
  for (size_t i = 0; i < cfg.nsections; i++) {
    const struct core_config_section *sec = cfg.sections[i];
    FUZZ_ASSERT(core_config_find(&cfg, NULL, sec->name) == sec);
    check_section(sec);
  }

  struct core_buf a, b;
  write_cfg(&cfg, &a);
  struct core_config again;
  core_config_init(&again);
  FUZZ_ASSERT(core_config_parse(&again, a.base ? a.base : "", a.len, err, sizeof(err)) == 0);
  FUZZ_ASSERT(again.nsections == cfg.nsections);
  write_cfg(&again, &b);
  FUZZ_ASSERT(a.len == b.len && (a.len == 0 || memcmp(a.base, b.base, a.len) == 0));
  core_config_free(&again);
  core_buf_free(&a);
  core_buf_free(&b);
  core_config_free(&cfg);
  return 0;
}
