/* cairn: the backup client (see docs/client.md). One file per command
 * (cairn_<command>.c); the options and what they share are in cmd/cairn.h. */
#include "cmd/cairn.h"

#include "client/client_load.h"
#include "core/core_log.h"

#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

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
  else if (strcmp(cmd, "group") == 0)
    rc = cmd_move(&o, 0);
  else if (strcmp(cmd, "namespace") == 0)
    rc = cmd_move(&o, 1);
  else if (strcmp(cmd, "key") == 0)
    rc = cmd_key(&o);
  else if (strcmp(cmd, "benchmark") == 0)
    rc = cmd_benchmark(&o);
  else if (strcmp(cmd, "ls") == 0)
    rc = cmd_ls(&o);
  else if (strcmp(cmd, "find") == 0)
    rc = cmd_find(&o);
  else if (strcmp(cmd, "diff") == 0)
    rc = cmd_diff(&o);
  else if (strcmp(cmd, "mount") == 0)
    rc = cmd_mount(&o);
  else {
    fprintf(stderr, "cairn: unknown command \"%s\"\n\n%s", cmd, usage_main);
    rc = EXIT_USAGE;
  }
  return rc;
}
