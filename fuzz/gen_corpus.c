/* gen_corpus.c: writes the seed corpus of every fuzz target into
 * fuzz/corpus/<target>/ (run from the source tree: `make fuzz-corpus`).
 *
 * Seeds are small valid (and a few nearly valid) inputs in each target's
 * input format (see the comment at the top of each fuzz_*.c), made with
 * Cairn's own encoders where the format is binary, so that fuzzing starts
 * from inputs that reach deep into the parsers. The output is deterministic
 * except where the format holds randomness (blob IVs, index uuids), and is
 * committed; rerun this only when a format or an input layout changes. */
#include "client/client_archive.h"
#include "core/core_alloc.h"
#include "core/core_buf.h"
#include "core/core_digest.h"
#include "access/access.h"
#include "format/format_blob.h"
#include "format/format_catalog.h"
#include "format/format_crypt.h"
#include "format/format_index.h"
#include "format/format_manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *root = "fuzz/corpus";

static void die(const char *what)
{
  fprintf(stderr, "gen_corpus: %s: %s\n", what, strerror(errno));
  exit(1);
}

/* Writes fuzz/corpus/<target>/<name>: an optional flags byte (< 0: none),
 * then `len` bytes. */
static void seed(const char *target, const char *name, int flags, const void *data, size_t len)
{
  char path[512];
  snprintf(path, sizeof(path), "%s/%s", root, target);
  if (mkdir(path, 0755) != 0 && errno != EEXIST)
    die(path);
  snprintf(path, sizeof(path), "%s/%s/%s", root, target, name);
  FILE *f = fopen(path, "wb");
  if (f == NULL)
    die(path);
  if (flags >= 0)
    fputc(flags, f);
  if (len && fwrite(data, 1, len, f) != len)
    die(path);
  if (fclose(f) != 0)
    die(path);
}

#define SEED_STR(t, n, s) seed(t, n, -1, s, sizeof(s) - 1)

/* A ticket and a CSRF token that verify under fuzz_access.c's key and time. */
static void access_seeds(void)
{
  static const uint8_t key[ACCESS_KEY_LEN] = {1, 2, 3, 4, 5, 6, 7, 8};
  char ticket[ACCESS_TICKET_MAX], csrf[ACCESS_TICKET_MAX], buf[2 * ACCESS_TICKET_MAX + 8];
  if (access_ticket_sign(key, "root@pam", 1700000000 - 60, ticket, sizeof(ticket)) < 0 ||
      access_csrf_sign(key, "root@pam", 1700000000 - 60, csrf, sizeof(csrf)) < 0)
    die("sign");
  int n = snprintf(buf, sizeof(buf), "%c%c%c%s%c%s", 0, 0, 0, ticket, 0, csrf);
  seed("fuzz_access", "ticket", -1, buf, (size_t)n);
}

static void text_seeds(void)
{
  SEED_STR("fuzz_http_router", "status", "\x00/api2/json/admin/datastore/store1/status");
  SEED_STR("fuzz_http_router", "encoded", "\x01/api2/json/config/datastore/a%2Fb");
  SEED_STR("fuzz_http_router", "head", "\x04//api2//json/version/");
  SEED_STR("fuzz_http_router", "bad-escape", "\x03/api2/json/backup/%zz/finish");
  SEED_STR("fuzz_http_router", "nul", "\x00/api2/json/nodes/localhost/tasks/a%00b/log");

  SEED_STR("fuzz_http_params", "query", "\x00" "store=s1&ns=a%2Fb&keep-last=3&x+y=1+2\0\0");
  SEED_STR("fuzz_http_params", "form",
           "\x00\0application/x-www-form-urlencoded\0gc-schedule=daily&delete=comment,notes"
           "&digest=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  SEED_STR("fuzz_http_params", "json",
           "\x00\0application/json\0{\"comment\":\"c\",\"keep-daily\":7,\"verify-new\":true,"
           "\"path\":\"/srv\",\"tuning\":[1]}");
  SEED_STR("fuzz_http_params", "s3",
           "\x04\0application/json\0{\"endpoint\":\"10.0.0.5\",\"port\":\"7480\","
           "\"path-style\":\"true\",\"fingerprint\":\"aa:bb\"}");
  SEED_STR("fuzz_http_params", "no-ctype", "\x02" "a=1&a=2&=3&b\0\0{\"a\":1}");

  SEED_STR("fuzz_json", "object",
           "{\"backup-type\":\"vm\",\"backup-id\":\"100\",\"backup-time\":1700000000,"
           "\"dry-run\":false,\"a\":[1,2.5e3,-0,null,true,{}],\"u\":\"\\u00e9\\n\"}");
  SEED_STR("fuzz_json", "array", "[[[[\"x\"]]],{\"k\":{\"k\":{\"k\":1}}}]");
  SEED_STR("fuzz_json", "number", "-12345678901234567890123");
  SEED_STR("fuzz_json", "bad", "{\"a\":1,}");

  SEED_STR("fuzz_section_config", "datastore",
           "datastore: store1\n\tpath /srv/store1\n\tcomment main store\n"
           "\tgc-schedule sat 18:15\n\tkeep-daily 7\n"
           "\ttuning sync-level=file,gc-atime-cutoff=1445\n"
           "\tmaintenance-mode type=read-only,message=\"a, b\"\n\n"
           "datastore: s3store\n\tpath /srv/s3\n\tbackend type=s3,client=rgw1,bucket=b1\n"
           "\tmax-cache-size 64GiB\n");
  SEED_STR("fuzz_section_config", "s3",
           "s3-endpoint: rgw1\n\tendpoint 10.0.0.5\n\tport 7480\n\tregion us-east-1\n"
           "\taccess-key AKIA123\n\tpath-style true\n\tuse-tls false\n"
           "\tprovider-quirks skip-if-none-match-header\n\n"
           "# a comment\ns3-secret: rgw1\n\tsecret-key abc\n");
  SEED_STR("fuzz_section_config", "odd", "unknown: x\n  key  spaced value \n\ta\n");

  /* acl.cfg, stored token hash, secret, ticket, CSRF token. */
  SEED_STR("fuzz_access", "acl",
           "acl:1:/:root@pam:Admin\nacl:1:/datastore/s1/a/b:backup@pbs!host1:DatastoreBackup\n"
           "acl:0:/datastore:audit@pbs:DatastoreAudit,RemoteAudit\n\0"
           "sha256$00$0000000000000000000000000000000000000000000000000000000000000000\0x\0\0");
  SEED_STR("fuzz_access", "bad-acl", "acl:2:/x:nobody:Nope\nacl:1:/datastore/a/b/c/d/e/f/g/h/i:"
           "a@pbs:Admin\n\0$y$j9T$salt$hash\0pw\0PBS:root@pam:0000:\0");
  /* 8 bytes of start time, then the expression. */
  SEED_STR("fuzz_calendar", "weekly", "\x00\x5e\x2c\x65\x00\x00\x00\x00sat 18:15");
  SEED_STR("fuzz_calendar", "ranges", "\x10\x20\x30\x40\x00\x00\x00\x00mon..fri *-*-1..7/2 2,4:0/15:30");
  SEED_STR("fuzz_calendar", "years", "\x00\x00\x00\x00\x00\x00\x00\x00" "2025..2030/2-02-29 UTC");
  SEED_STR("fuzz_calendar", "keyword", "\x01\x02\x03\x04\x05\x00\x00\x00quarterly");
  SEED_STR("fuzz_calendar", "dst", "\x00\x8e\x6c\x65\x00\x00\x00\x00*-03-26 02:30");

  /* Options, NUL, then 9-byte records (time LE, flags: 1 finished, 2 protected, 4 UTC). */
  SEED_STR("fuzz_prune", "daily",
           "keep-last=2&keep-daily=3&keep-weekly=1&keep-all=1\0"
           "\x00\x5e\x2c\x65\x00\x00\x00\x00\x01"
           "\x80\x65\x2c\x65\x00\x00\x00\x00\x01"
           "\x00\xb0\x2d\x65\x00\x00\x00\x00\x03"
           "\x00\x00\x30\x65\x00\x00\x00\x00\x00"
           "\x00\x10\x30\x65\x00\x00\x00\x00\x01");
  SEED_STR("fuzz_prune", "bad-values", "keep-last=0&keep-hourly=-1&keep-yearly=99999999999999999999\0");
  /* First byte: 0 error, 1 list, 2 delete result. */
  SEED_STR("fuzz_s3_xml", "error",
           "\x00<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code>"
           "<Message>The resource you requested does not exist</Message>"
           "<RequestId>4442587FB7D0A2F9</RequestId></Error>");
  SEED_STR("fuzz_s3_xml", "list",
           "\x01<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
           "<Name>b</Name><KeyCount>2</KeyCount><IsTruncated>true</IsTruncated>"
           "<NextContinuationToken>tok</NextContinuationToken>"
           "<Contents><Key>s/.chunks/0000/00aa</Key><Size>12</Size>"
           "<LastModified>2025-01-01T00:00:00.000Z</LastModified><ETag>\"e\"</ETag></Contents>"
           "<Contents><Key>a&amp;b</Key><Size>0</Size></Contents></ListBucketResult>");
  SEED_STR("fuzz_s3_xml", "delete",
           "\x02<DeleteResult><Deleted><Key>k1</Key></Deleted><Error><Key>k2</Key>"
           "<Code>AccessDenied</Code><Message>no</Message></Error></DeleteResult>");
  /* NUL-separated method, uri, query, then header name/value pairs. */
  SEED_STR("fuzz_s3_sigv4", "get",
           "GET\0/bucket/s/.chunks/00aa/00aa\0list-type=2&prefix=a%2Fb&continuation-token=x y"
           "\0host\0rgw:7480\0x-amz-date\020250101T000000Z");
  SEED_STR("fuzz_s3_sigv4", "put", "PUT\0/b/k~ey with space\0\0Content-Type\0 a  b \0");

  SEED_STR("fuzz_prune", "keep-all", "\0\x01\x00\x00\x00\x00\x00\x00\x00\x04\x02\x00\x00\x00\x00\x00\x00\x00\x00");
}

static void blob_seeds(void)
{
  static const char text[] = "hello, chunk. hello, chunk. hello, chunk. hello, chunk.";
  uint8_t key[FORMAT_CRYPT_KEY_LEN];
  for (size_t i = 0; i < sizeof(key); i++)
    key[i] = (uint8_t)i; /* the key fuzz_blob.c uses */
  struct format_crypt c;
  if (format_crypt_init(&c, key) != 0)
    die("crypt");
  static const struct {
    const char *name;
    int flags;    /* format_blob_encode flags */
    int with_key;
  } kinds[] = {{"plain", 0, 0}, {"zstd", FORMAT_BLOB_COMPRESS, 0}, {"encrypted", 0, 1},
               {"zstd-encrypted", FORMAT_BLOB_COMPRESS, 1}};
  for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
    uint8_t *out;
    size_t len;
    if (format_blob_encode_alloc(NULL, text, sizeof(text) - 1, kinds[i].flags,
                                kinds[i].with_key ? &c : NULL, &out, &len) < 0)
      die("blob encode");
    /* fuzz_blob flags: bit 0 the key; bit 1 fix the CRC. */
    seed("fuzz_blob", kinds[i].name, kinds[i].with_key ? 1 : 0, out, len);
    core_free(out);
  }
  static const uint8_t empty_zstd_magic[] = {0x31, 0xb9, 0x58, 0x42, 0x6f, 0xb6, 0xa3, 0x7f};
  seed("fuzz_blob", "header-only", 2, empty_zstd_magic, sizeof(empty_zstd_magic));
}

static void index_seeds(void)
{
  uint8_t d[3][CORE_SHA256_LEN];
  for (int i = 0; i < 3; i++)
    core_sha256(&i, sizeof(i), d[i]);

  /* Compact forms (fuzz_index flags: 2 didx, 4 fix the csum; high bits the piece). */
  uint8_t compact[16 + 3 * FORMAT_DIDX_ENTRY_LEN];
  uint64_t size = 2 * 4096 + 100, chunk = 4096;
  for (int i = 0; i < 8; i++) {
    compact[i] = (uint8_t)(size >> (8 * i));
    compact[8 + i] = (uint8_t)(chunk >> (8 * i));
  }
  for (int i = 0; i < 3; i++)
    memcpy(compact + 16 + 32 * i, d[i], 32);
  seed("fuzz_index", "fidx-compact", 0x34, compact, 16 + 3 * 32);
  for (int i = 0; i < 3; i++) {
    uint64_t end = (uint64_t)(i + 1) * 1000;
    uint8_t *e = compact + 16 + i * FORMAT_DIDX_ENTRY_LEN;
    for (int b = 0; b < 8; b++)
      e[b] = (uint8_t)(end >> (8 * b));
    memcpy(e + 8, d[i], 32);
  }
  seed("fuzz_index", "didx-compact", 0x56, compact, sizeof(compact));

  /* Raw images as the writers make them (flag 1). */
  struct format_fidx_writer fw;
  if (format_fidx_writer_init(&fw, size, chunk, 1700000000) < 0)
    die("fidx");
  for (int i = 0; i < 3; i++)
    format_fidx_writer_append(&fw, d[i]);
  if (format_fidx_writer_finish(&fw, NULL, NULL, NULL) < 0)
    die("fidx finish");
  size_t len;
  const uint8_t *img = format_fidx_writer_image(&fw, &len);
  seed("fuzz_index", "fidx-raw", 0xb1, img, len);
  format_fidx_writer_free(&fw);

  struct format_didx_writer dw;
  format_didx_writer_init(&dw, 1700000000, 0);
  for (int i = 0; i < 3; i++)
    format_didx_writer_append(&dw, (uint64_t)(i + 1) * 777, d[i]);
  format_didx_writer_finish(&dw, NULL, NULL, NULL);
  img = format_didx_writer_image(&dw, &len);
  seed("fuzz_index", "didx-raw", 0x51, img, len);
  format_didx_writer_free(&dw);
}

static void manifest_seeds(void)
{
  struct format_manifest m;
  uint8_t csum[CORE_SHA256_LEN];
  core_sha256("x", 1, csum);
  format_manifest_init(&m, "vm", "100", 1700000000);
  format_manifest_add_file(&m, "drive-scsi0.img.fidx", FORMAT_CRYPT_MODE_NONE, 1 << 30, csum);
  format_manifest_add_file(&m, "qemu-server.conf.blob", FORMAT_CRYPT_MODE_SIGN_ONLY, 412, csum);
  format_manifest_set_verify_state(&m, "ok", "UPID:node:0000:0000:0000:verify::root@pam:");
  struct core_buf b;
  core_buf_init(&b, FORMAT_MANIFEST_MAX_LEN);
  format_manifest_to_json(&m, 1, &b);
  seed("fuzz_manifest", "pretty", 0x04, b.base, b.len);
  core_buf_reset(&b);
  format_manifest_to_json(&m, 0, &b);
  seed("fuzz_manifest", "compact", 0x00, b.base, b.len);
  core_buf_free(&b);
  uint8_t *blob;
  size_t len;
  if (format_manifest_encode_blob(&m, NULL, &blob, &len) < 0)
    die("manifest blob");
  seed("fuzz_manifest", "blob", 0x01, blob, len);
  core_free(blob);
  format_manifest_free(&m);
  static const char unknown[] =
      "{\"backup-type\":\"host\",\"backup-id\":\"h\",\"backup-time\":0,\"files\":[],"
      "\"unprotected\":{\"notes\":\"n\",\"x\":[{}]},\"signature\":null,\"extra\":1}";
  seed("fuzz_manifest", "unknown-keys", 0x00, unknown, sizeof(unknown) - 1);
}

static int to_buf(void *arg, const void *data, size_t len)
{
  return core_buf_append(arg, data, len);
}

static void write_file(const char *path, const char *text)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) || close(fd) != 0)
    die(path);
}

static void archive_seed(const char *src, const char *name, int flags)
{
  struct core_buf b;
  char err[256];
  core_buf_init(&b, 1 << 20);
  if (client_archive_create(src, to_buf, &b, NULL, err, sizeof(err)) < 0) {
    fprintf(stderr, "gen_corpus: archive %s: %s\n", src, err);
    exit(1);
  }
  seed("fuzz_client_archive", name, flags, b.base, b.len);
  core_buf_free(&b);
}

static void archive_seeds(void)
{
  char tmp[] = "/tmp/cairn-gen-corpus-XXXXXX", p[256], q[256];
  if (mkdtemp(tmp) == NULL)
    die("mkdtemp");
  snprintf(p, sizeof(p), "%s/tree", tmp);
  mkdir(p, 0755);
  snprintf(p, sizeof(p), "%s/tree/sub", tmp);
  mkdir(p, 0750);
  snprintf(p, sizeof(p), "%s/tree/a.txt", tmp);
  write_file(p, "alpha\n");
  snprintf(p, sizeof(p), "%s/tree/sub/b.txt", tmp);
  write_file(p, "bravo bravo\n");
  snprintf(q, sizeof(q), "%s/tree/hard", tmp);
  if (link(p, q) != 0)
    die("link");
  snprintf(p, sizeof(p), "%s/tree/link", tmp);
  if (symlink("sub/b.txt", p) != 0)
    die("symlink");
  snprintf(p, sizeof(p), "%s/tree", tmp);
  archive_seed(p, "tree", 0x00);
  archive_seed(p, "tree-into-existing", 0x07);
  snprintf(p, sizeof(p), "%s/tree/a.txt", tmp);
  archive_seed(p, "single-file", 0x02);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
  if (system(cmd) != 0)
    die("rm");
}

/* Catalogs as the backup writes them (fuzz_catalog). */
static void catalog_seeds(void)
{
  static const struct {
    const char *path, *link;
    uint8_t type;
    uint64_t size;
  } ents[] = {
    {".", "", FORMAT_CATALOG_DIR, 0},          {"a", "", FORMAT_CATALOG_DIR, 0},
    {"a/file", "", FORMAT_CATALOG_FILE, 1000}, {"a/hard", "a/file", FORMAT_CATALOG_HARDLINK, 0},
    {"a/sym", "../b", FORMAT_CATALOG_SYMLINK, 0}, {"b\n\xff", "", FORMAT_CATALOG_FIFO, 0},
  };
  for (int variant = 0; variant < 2; variant++) {
    struct format_catalog_writer w;
    struct core_buf out;
    uint64_t off = 0;
    format_catalog_writer_init(&w);
    core_buf_init(&out, 1 << 20);
    for (int rep = 0; rep < (variant ? 40 : 1); rep++) {
      for (size_t i = 0; i < sizeof(ents) / sizeof(ents[0]); i++) {
        char path[64];
        struct format_catalog_entry e = {0};
        if (rep == 0)
          snprintf(path, sizeof(path), "%s", ents[i].path);
        else if (strcmp(ents[i].path, ".") == 0)
          continue;
        else
          snprintf(path, sizeof(path), "d%02d/%s", rep, ents[i].path);
        e.path = path;
        e.path_len = strlen(path);
        e.link = ents[i].link;
        e.link_len = strlen(ents[i].link);
        e.type = ents[i].type;
        e.mode = 0644;
        e.size = ents[i].size;
        e.mtime = 1700000000 + (int64_t)i;
        e.mtime_ns = 5;
        e.hdr_off = off;
        e.data_off = off + 512;
        e.data_len = ents[i].size;
        e.end_off = e.data_off + (e.data_len + 511) / 512 * 512;
        off = e.end_off;
        if (format_catalog_writer_add(&w, &e) < 0)
          die("catalog add");
      }
    }
    if (format_catalog_writer_finish(&w, &out) < 0)
      die("catalog finish");
    seed("fuzz_catalog", variant ? "catalog-blocks" : "catalog-small", -1, out.base, out.len);
    core_buf_free(&out);
    format_catalog_writer_free(&w);
  }
}

int main(int argc, char **argv)
{
  if (argc > 1)
    root = argv[1];
  if (mkdir(root, 0755) != 0 && errno != EEXIST)
    die(root);
  text_seeds();
  access_seeds();
  blob_seeds();
  index_seeds();
  manifest_seeds();
  archive_seeds();
  catalog_seeds();
  return 0;
}
