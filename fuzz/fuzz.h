/* fuzz.h: what the libFuzzer targets share.
 *
 * A target checks properties of the code under test, not just that it does
 * not crash: FUZZ_ASSERT aborts (a libFuzzer crash, saved as an artifact)
 * with the failed condition. Inputs that carry several strings separate them
 * with NUL bytes; fuzz_split copies the input once and cuts it there. */
#ifndef FUZZ_H
#define FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_ASSERT(cond)                                                            \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond);    \
      abort();                                                                       \
    }                                                                                \
  } while (0)

/* Up to FUZZ_MAX_FIELDS NUL-separated strings of the input. */
#define FUZZ_MAX_FIELDS 8

struct fuzz_fields {
  char *buf;                      /* owned: the input plus a final NUL */
  const char *f[FUZZ_MAX_FIELDS]; /* into buf; missing fields are "" */
  size_t len[FUZZ_MAX_FIELDS];
  size_t n;                       /* fields present in the input */
};

static inline void fuzz_split(struct fuzz_fields *ff, const uint8_t *data, size_t size)
{
  ff->buf = malloc(size + 1);
  if (ff->buf == NULL)
    abort();
  memcpy(ff->buf, data, size);
  ff->buf[size] = '\0';
  ff->n = 0;
  char *p = ff->buf, *end = ff->buf + size;
  for (size_t i = 0; i < FUZZ_MAX_FIELDS; i++) {
    ff->f[i] = "";
    ff->len[i] = 0;
  }
  while (ff->n < FUZZ_MAX_FIELDS && p <= end && size > 0) {
    size_t l = strlen(p);
    ff->f[ff->n] = p;
    ff->len[ff->n] = l;
    ff->n++;
    p += l + 1;
  }
}

static inline void fuzz_fields_free(struct fuzz_fields *ff)
{
  free(ff->buf);
  ff->buf = NULL;
}

#endif
