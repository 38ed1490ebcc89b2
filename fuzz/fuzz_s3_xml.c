/* fuzz_s3_xml.c: libFuzzer target for the S3 XML readers.
 * The first byte picks the reader; the rest is the document. Every reader
 * must return an error or a result it can free, never crash or leak. */
#include "s3/s3_xml.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static int init;
  if (!init) {
    s3_xml_init();
    init = 1;
  }
  if (size < 1)
    return 0;
  const char *doc = (const char *)data + 1;
  size_t len = size - 1;
  switch (data[0] % 3) {
  case 0: {
    struct s3_error e;
    s3_xml_parse_error(doc, len, &e);
    break;
  }
  case 1: {
    struct s3_list_result l;
    if (s3_xml_parse_list(doc, len, &l) == 0) {
      for (size_t i = 0; i < l.n; i++)
        if (l.objects[i].key == NULL)
          abort();
      s3_list_result_free(&l);
    }
    break;
  }
  default: {
    struct s3_delete_result d;
    if (s3_xml_parse_delete(doc, len, &d) == 0)
      s3_delete_result_free(&d);
    break;
  }
  }
  return 0;
}
