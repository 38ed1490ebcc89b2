/* client_bench.h: `cairn benchmark`, the local CPU part.
 *
 * DESIGN. Each row runs one operation of the backup path on a 4 MiB buffer
 * for about `seconds` and reports MB/s (10^6 bytes): SHA-256, the chunker,
 * zstd level 1 compression and decompression of text-like data, chunk
 * verification (decode plus digest, what the server and a restore do), and
 * AES-256-GCM encryption. The data is generated from a fixed seed, so runs
 * are comparable. The upload row needs a server and lives with the command.
 */
#ifndef CLIENT_BENCH_H
#define CLIENT_BENCH_H

#include <stddef.h>

struct client_bench_row {
  char name[64];
  double mbps; /* 10^6 bytes per second; < 0 when the row failed */
};

/* Fills up to `max` rows; returns how many. */
size_t client_bench_cpu(double seconds, struct client_bench_row *rows, size_t max);

/* Prints rows as a two-column table to `f`. */
void client_bench_print(void *f, const struct client_bench_row *rows, size_t n);

#endif
