/* client_load.h: `cairn benchmark load`, many clients against one server.
 *
 * DESIGN. Every simulated actor is a plain thread making blocking calls on
 * a shared client_api: the network side (TLS, HTTP parsing, keep-alive)
 * runs on the api's libuv I/O thread, which multiplexes its connections.
 * `cairn benchmark load` gives each 32 backup clients (at most 4 threads,
 * --io-threads) an api of their own, readers share them, and the status
 * pollers have one to themselves, as a monitoring system would: a poll then
 * never waits behind the TLS encryption of other clients' uploads in the
 * generator, which is not what the benchmark measures. The actor threads
 * only do what a real client would do between requests (generate, hash and
 * encode a chunk) and otherwise sleep on a semaphore. An idle actor costs a
 * parked thread, not CPU, so 256 clients stay cheap on a 2-core machine. Each
 * api has one connection per actor using it, so a latency never includes
 * waiting for a free connection in the client.
 *
 * Actors:
 *  - N backup clients, each in its own namespace <run>/cNNN (created at
 *    start) and group host/load-NNN, each backup one dynamic archive of a
 *    size drawn from the size mix: chunks of up to 4 MiB, each a random
 *    prefix shared by all chunks plus 64 bytes generated from a seed unique
 *    to (client, backup, chunk), so that every chunk is new to the server
 *    while the generator hashes only the 64 bytes (the SHA-256 state after
 *    the prefix is kept per chunk length), DataBlob (uncompressed), dynamic
 *    index appends in batches of 128,
 *    close, manifest, finish;
 *  - readers that open reader sessions on finished snapshots of the run,
 *    download the index and every chunk and check each digest and length;
 *  - pollers that GET the datastore status every 100 ms;
 *  - one maintenance actor that starts a GC once the first backups are in and
 *    then a verify, and waits for both (their exit status must be OK).
 * At the end a verify task over the run's namespace (ignore-verified=false)
 * checks every snapshot made, and each client's listing must show all of its
 * snapshots.
 */
#ifndef CLIENT_LOAD_H
#define CLIENT_LOAD_H

#include <stddef.h>
#include <stdint.h>

struct client_api;

#define CLIENT_LOAD_MAX_MIX 8

struct client_load_size {
  uint64_t bytes;   /* one backup's archive size */
  unsigned weight;  /* relative share of backups */
};

#define CLIENT_LOAD_MAX_IO 16

struct client_load_opts {
  /* All borrowed. `api`: namespaces, GC, verify (2 connections). Backup
   * client and reader i use io[i % nio] (nio 0: `api`), pollers `poll_api`
   * (NULL: `api`); each needs one connection per actor using it. */
  struct client_api *api;
  struct client_api *io[CLIENT_LOAD_MAX_IO];
  unsigned nio;
  struct client_api *poll_api;
  unsigned clients;         /* backup clients */
  unsigned readers;
  unsigned pollers;
  double duration;          /* seconds; used when count is 0 */
  unsigned count;           /* total backups, or 0 */
  struct client_load_size mix[CLIENT_LOAD_MAX_MIX];
  size_t nmix;
  int gc;                   /* run a GC and a verify during the load */
  int server_pid;           /* > 0: sample this local process's RSS and CPU */
  uint64_t seed;
  double client_rate;       /* bytes/s each backup client uploads at most; 0: no limit */
};

/* Operations with latency figures. */
enum client_load_op {
  LOAD_OP_OPEN,     /* backup session open */
  LOAD_OP_UPLOAD,   /* one chunk upload */
  LOAD_OP_APPEND,   /* one index append (PUT of up to 128 entries) */
  LOAD_OP_CLOSE,    /* index close */
  LOAD_OP_FINISH,   /* manifest upload and finish */
  LOAD_OP_STATUS,   /* datastore status */
  LOAD_OP_READ,     /* reader: one chunk download */
  LOAD_OP_COUNT
};

struct client_load_lat {
  uint64_t n;
  double p50_ms, p99_ms, max_ms;
};

struct client_load_result {
  double seconds;           /* wall time of the load phase */
  uint64_t backups;         /* finished snapshots */
  uint64_t bytes;           /* content bytes backed up */
  uint64_t read_bytes;      /* chunk bytes restored by readers */
  uint64_t restores;        /* reader sessions completed */
  uint64_t errors;          /* failed operations of any actor */
  struct client_load_lat lat[LOAD_OP_COUNT];
  char gc_status[128];      /* the GC task's exit status, "" if none ran */
  char verify_status[128];  /* the in-run verify's exit status */
  char final_status[128];   /* the final verify's exit status */
  uint64_t verify_failed;   /* snapshots the final verify did not pass */
  int verified;             /* 1 when the final verify ran and passed */
  double rss_mib;           /* peak server RSS, < 0 when not sampled */
  double cpu_pct;           /* server CPU over the load phase, < 0 when not sampled */
  char first_error[512];
};

/* Parses "1M:60,16M:30,64M:10" (sizes with K/M/G suffixes, weights > 0).
 * Returns 0 or CORE_EINVAL. */
int client_load_parse_mix(const char *s, struct client_load_opts *o);

/* Runs the load and the final verification. Progress and errors go to
 * stderr. Returns 0 when it ran (look at result->errors and ->verified), or a
 * negative code when it could not start (`err` says why). */
int client_load_run(const struct client_load_opts *o, struct client_load_result *result,
                    char *err, size_t errlen);

/* `cairn benchmark load [OPTIONS]`: argv[0] is the first option. Opens the
 * repository from the usual options and environment, runs, prints the table
 * and the key=value line, writes --json. Returns the exit code: 0 only with
 * no errors and every snapshot verified. */
int client_load_main(int argc, char **argv);

#endif
