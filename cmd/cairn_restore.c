/* cairn_restore.c: `cairn restore`. */
#include "cmd/cairn.h"

#include "client/client_api.h"
#include "client/client_pattern.h"
#include "client/client_progress.h"
#include "client/client_restore.h"
#include "core/core_alloc.h"
#include "core/core_fmt.h"
#include "format/format_crypt.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_restore(struct opts *o)
{
  struct client_restore_opts ro;
  struct client_restore_stats st;
  struct format_crypt crypt;
  struct client_api *api = NULL;
  struct client_pattern_set inc, exc;
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
  client_pattern_set_init(&inc);
  client_pattern_set_init(&exc);
  for (size_t i = 0; i < o->ninclude; i++)
    client_pattern_add(&inc, o->include[i], NULL);
  for (size_t i = 0; i < o->nexclude; i++)
    client_pattern_add(&exc, o->exclude[i], NULL);
  ro.include = &inc;
  ro.exclude = &exc;
  catch_signals();
  t0 = mono_s();
  rc = client_restore_run(&ro, o->pos[1], o->pos[2], &st, err, sizeof(err));
  dt = mono_s() - t0;
  client_pattern_set_free(&inc);
  client_pattern_set_free(&exc);
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
  core_fmt_bytes(st.bytes, total, sizeof(total));
  out = strcmp(o->pos[2], "-") == 0 ? stderr : stdout; /* stdout may be the data itself */
  fprintf(out, "restored %s %s: %s in %.1f s (%.1f MB/s), %llu chunks verified", o->pos[0],
          o->pos[1], total, dt, dt > 0 ? (double)st.bytes / dt / 1e6 : 0.0,
          (unsigned long long)st.chunks);
  if (o->ninclude || o->nexclude)
    fprintf(out, ", %llu entries selected, %llu of %llu chunks fetched",
            (unsigned long long)st.entries, (unsigned long long)st.chunks,
            (unsigned long long)st.total_chunks);
  if (st.catalog_total_chunks > 0)
    fprintf(out, ", catalog index: %llu of %llu chunks fetched",
            (unsigned long long)st.catalog_chunks, (unsigned long long)st.catalog_total_chunks);
  if (st.repeated > 0)
    fprintf(out, " (%llu of them repeated the chunk before: not downloaded again)",
            (unsigned long long)st.repeated);
  fputc('\n', out);
  return 0;
}
