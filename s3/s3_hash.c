#include "s3/s3_hash.h"

#include "core/core_alloc.h"
#include "core/core_job.h"
#include "s3/s3_sigv4.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

void s3_hash_compute(const void *data, size_t len, int want_md5, struct s3_hash *out)
{
  s3_sigv4_payload_hash(data, len, out->sha256_hex);
  out->md5_b64[0] = '\0';
  if (want_md5) {
    unsigned char md[16];
    unsigned int n = sizeof(md);
    if (!EVP_Digest(data, len, md, &n, EVP_md5(), NULL))
      abort();
    EVP_EncodeBlock((unsigned char *)out->md5_b64, md, 16);
  }
}

struct hash_job {
  struct core_job job;
  const void *data;
  size_t len;
  int want_md5;
  struct s3_hash h;
  s3_hash_cb cb;
  void *arg;
};

static void hash_work(struct core_job *job)
{
  struct hash_job *j = (struct hash_job *)job;
  s3_hash_compute(j->data, j->len, j->want_md5, &j->h);
}

static void hash_after(struct core_job *job, int status)
{
  struct hash_job *j = (struct hash_job *)job;
  j->cb(&j->h, status, j->arg);
  core_free(j);
}

int s3_hash_submit(uv_loop_t *loop, const void *data, size_t len, int want_md5, s3_hash_cb cb,
                   void *arg)
{
  struct hash_job *j = core_new(struct hash_job);
  j->data = data;
  j->len = len;
  j->want_md5 = want_md5;
  j->cb = cb;
  j->arg = arg;
  int rc = core_job_submit(loop, &j->job, hash_work, hash_after);
  if (rc < 0)
    core_free(j);
  return rc;
}
