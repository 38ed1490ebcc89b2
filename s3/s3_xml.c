#include "s3/s3_xml.h"

#include "core/core_alloc.h"
#include "core/core_error.h"
#include "s3/s3_url.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdlib.h>
#include <string.h>

static const struct {
  enum s3_error_code code;
  const char *name;
} error_table[] = {
    {S3_ERR_ACCESS_DENIED, "AccessDenied"},
    {S3_ERR_BAD_DIGEST, "BadDigest"},
    {S3_ERR_BUCKET_ALREADY_EXISTS, "BucketAlreadyExists"},
    {S3_ERR_BUCKET_ALREADY_OWNED_BY_YOU, "BucketAlreadyOwnedByYou"},
    {S3_ERR_BUCKET_NOT_EMPTY, "BucketNotEmpty"},
    {S3_ERR_CONDITIONAL_REQUEST_CONFLICT, "ConditionalRequestConflict"},
    {S3_ERR_ENTITY_TOO_LARGE, "EntityTooLarge"},
    {S3_ERR_EXPIRED_TOKEN, "ExpiredToken"},
    {S3_ERR_INTERNAL_ERROR, "InternalError"},
    {S3_ERR_INVALID_ACCESS_KEY_ID, "InvalidAccessKeyId"},
    {S3_ERR_INVALID_ARGUMENT, "InvalidArgument"},
    {S3_ERR_INVALID_BUCKET_NAME, "InvalidBucketName"},
    {S3_ERR_INVALID_DIGEST, "InvalidDigest"},
    {S3_ERR_INVALID_RANGE, "InvalidRange"},
    {S3_ERR_INVALID_REQUEST, "InvalidRequest"},
    {S3_ERR_INVALID_TOKEN, "InvalidToken"},
    {S3_ERR_MALFORMED_XML, "MalformedXML"},
    {S3_ERR_METHOD_NOT_ALLOWED, "MethodNotAllowed"},
    {S3_ERR_MISSING_CONTENT_LENGTH, "MissingContentLength"},
    {S3_ERR_NO_SUCH_BUCKET, "NoSuchBucket"},
    {S3_ERR_NO_SUCH_KEY, "NoSuchKey"},
    {S3_ERR_NOT_IMPLEMENTED, "NotImplemented"},
    {S3_ERR_OPERATION_ABORTED, "OperationAborted"},
    {S3_ERR_PRECONDITION_FAILED, "PreconditionFailed"},
    {S3_ERR_QUOTA_EXCEEDED, "QuotaExceeded"},
    {S3_ERR_REQUEST_TIME_TOO_SKEWED, "RequestTimeTooSkewed"},
    {S3_ERR_REQUEST_TIMEOUT, "RequestTimeout"},
    {S3_ERR_SERVICE_UNAVAILABLE, "ServiceUnavailable"},
    {S3_ERR_SIGNATURE_DOES_NOT_MATCH, "SignatureDoesNotMatch"},
    {S3_ERR_SLOW_DOWN, "SlowDown"},
    {S3_ERR_CONTENT_SHA256_MISMATCH, "XAmzContentSHA256Mismatch"},
};

void s3_xml_init(void)
{
  xmlInitParser();
}

const char *s3_error_name(enum s3_error_code code)
{
  if (code == S3_ERR_NONE)
    return "";
  for (size_t i = 0; i < sizeof(error_table) / sizeof(error_table[0]); i++)
    if (error_table[i].code == code)
      return error_table[i].name;
  return "Unknown";
}

enum s3_error_code s3_error_from_name(const char *name)
{
  if (name == NULL)
    return S3_ERR_UNKNOWN;
  for (size_t i = 0; i < sizeof(error_table) / sizeof(error_table[0]); i++)
    if (strcmp(error_table[i].name, name) == 0)
      return error_table[i].code;
  return S3_ERR_UNKNOWN;
}

int s3_error_retryable(enum s3_error_code code)
{
  switch (code) {
  case S3_ERR_INTERNAL_ERROR:
  case S3_ERR_SLOW_DOWN:
  case S3_ERR_SERVICE_UNAVAILABLE:
  case S3_ERR_REQUEST_TIMEOUT:
  case S3_ERR_OPERATION_ABORTED:
    return 1;
  default:
    return 0;
  }
}

/* ---- parsing ---- */

/* Any markup declaration but a comment or CDATA section ("<!DOCTYPE",
 * "<!ENTITY", also inside a comment: S3 sends none) makes a document hostile. */
static int has_doctype(const char *doc, size_t len)
{
  for (size_t i = 0; i + 1 < len; i++) {
    if (doc[i] != '<' || doc[i + 1] != '!')
      continue;
    if (i + 3 < len && doc[i + 2] == '-' && doc[i + 3] == '-')
      continue;
    if (i + 2 < len && doc[i + 2] == '[')
      continue;
    return 1;
  }
  return 0;
}

static int open_doc(const char *doc, size_t len, const char *root_name, xmlDocPtr *out,
                    xmlNodePtr *root)
{
  if (len > S3_XML_MAX_DOC)
    return CORE_ETOOBIG;
  if (len == 0 || has_doctype(doc, len))
    return CORE_EPARSE;
  xmlDocPtr d = xmlReadMemory(doc, (int)len, NULL, NULL,
                              XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                                  XML_PARSE_NOCDATA);
  if (d == NULL)
    return CORE_EPARSE;
  xmlNodePtr r = xmlDocGetRootElement(d);
  if (d->intSubset != NULL || d->extSubset != NULL || r == NULL ||
      strcmp((const char *)r->name, root_name) != 0) {
    xmlFreeDoc(d);
    return CORE_EPARSE;
  }
  *out = d;
  *root = r;
  return 0;
}

static int is_elem(xmlNodePtr n, const char *name)
{
  return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

/* The concatenated text children of `n` (no entity expansion: entity
 * references cannot occur without a DTD). Returns the length, or -1 if it
 * is longer than `max` or has element children. *out is owned by the caller. */
static long node_text(xmlNodePtr n, size_t max, char **out)
{
  size_t total = 0;
  for (xmlNodePtr c = n->children; c; c = c->next) {
    if (c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) {
      size_t l = c->content ? strlen((const char *)c->content) : 0;
      if (l > max || total + l > max)
        return -1;
      total += l;
    } else if (c->type != XML_COMMENT_NODE) {
      return -1;
    }
  }
  char *s = core_malloc(total + 1);
  size_t o = 0;
  for (xmlNodePtr c = n->children; c; c = c->next) {
    if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content) {
      size_t l = strlen((const char *)c->content);
      memcpy(s + o, c->content, l);
      o += l;
    }
  }
  s[o] = '\0';
  *out = s;
  return (long)o;
}

/* Copies the text into a fixed buffer, truncated; 0 or CORE_EPARSE. */
static int text_into(xmlNodePtr n, char *buf, size_t size)
{
  char *s;
  if (node_text(n, S3_XML_MAX_TEXT, &s) < 0)
    return CORE_EPARSE;
  snprintf(buf, size, "%s", s);
  core_free(s);
  return 0;
}

int s3_xml_parse_error(const char *doc, size_t len, struct s3_error *out)
{
  memset(out, 0, sizeof(*out));
  xmlDocPtr d;
  xmlNodePtr root;
  int rc = open_doc(doc, len, "Error", &d, &root);
  if (rc < 0)
    return rc;
  out->code = S3_ERR_UNKNOWN;
  for (xmlNodePtr c = root->children; c && rc == 0; c = c->next) {
    if (is_elem(c, "Code")) {
      rc = text_into(c, out->code_text, sizeof(out->code_text));
      if (rc == 0)
        out->code = s3_error_from_name(out->code_text);
    } else if (is_elem(c, "Message")) {
      rc = text_into(c, out->message, sizeof(out->message));
    } else if (is_elem(c, "RequestId")) {
      rc = text_into(c, out->request_id, sizeof(out->request_id));
    }
  }
  xmlFreeDoc(d);
  return rc;
}

static int parse_u64(const char *s, uint64_t *out)
{
  if (*s < '0' || *s > '9')
    return CORE_EPARSE;
  uint64_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
      return CORE_EPARSE;
    v = v * 10 + (uint64_t)(*s - '0');
  }
  *out = v;
  return 0;
}

/* "2009-10-12T17:50:30.000Z" */
static time_t parse_iso8601(const char *s)
{
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
  if (end == NULL)
    return 0;
  return timegm(&tm);
}

static int parse_contents(xmlNodePtr n, struct s3_object *o)
{
  memset(o, 0, sizeof(*o));
  int rc = 0;
  for (xmlNodePtr c = n->children; c && rc == 0; c = c->next) {
    char *t = NULL;
    if (is_elem(c, "Key")) {
      if (o->key != NULL)
        rc = CORE_EPARSE;
      else if (node_text(c, S3_KEY_MAX, &o->key) < 0)
        rc = CORE_ENAME;
    } else if (is_elem(c, "Size")) {
      if (node_text(c, 32, &t) < 0 || parse_u64(t, &o->size) < 0)
        rc = CORE_EPARSE;
    } else if (is_elem(c, "LastModified")) {
      if (node_text(c, 64, &t) < 0)
        rc = CORE_EPARSE;
      else
        o->last_modified = parse_iso8601(t);
    } else if (is_elem(c, "ETag")) {
      if (node_text(c, sizeof(o->etag) + 8, &t) < 0) {
        rc = CORE_EPARSE;
      } else {
        const char *e = t;
        size_t l = strlen(e);
        if (l >= 2 && e[0] == '"' && e[l - 1] == '"') {
          e++;
          l -= 2;
        }
        if (l >= sizeof(o->etag))
          rc = CORE_EPARSE;
        else
          memcpy(o->etag, e, l), o->etag[l] = '\0';
      }
    }
    core_free(t);
  }
  if (rc == 0 && (o->key == NULL || o->key[0] == '\0'))
    rc = CORE_EPARSE;
  if (rc < 0) {
    core_free(o->key);
    o->key = NULL;
  }
  return rc;
}

int s3_xml_parse_list(const char *doc, size_t len, struct s3_list_result *out)
{
  memset(out, 0, sizeof(*out));
  out->key_count = -1;
  xmlDocPtr d;
  xmlNodePtr root;
  int rc = open_doc(doc, len, "ListBucketResult", &d, &root);
  if (rc < 0)
    return rc;
  size_t cap = 0;
  for (xmlNodePtr c = root->children; c && rc == 0; c = c->next) {
    char *t = NULL;
    if (is_elem(c, "Contents")) {
      if (out->n == cap) {
        /* A page holds at most 1000 keys; more is a hostile server. */
        if (cap >= 100000) {
          rc = CORE_ETOOBIG;
          break;
        }
        cap = cap ? cap * 2 : 64;
        out->objects = core_realloc(out->objects, cap * sizeof(*out->objects));
      }
      rc = parse_contents(c, &out->objects[out->n]);
      if (rc == 0)
        out->n++;
    } else if (is_elem(c, "IsTruncated")) {
      if (node_text(c, 16, &t) < 0)
        rc = CORE_EPARSE;
      else if (strcmp(t, "true") == 0)
        out->is_truncated = 1;
      else if (strcmp(t, "false") == 0)
        out->is_truncated = 0;
      else
        rc = CORE_EPARSE;
    } else if (is_elem(c, "NextContinuationToken")) {
      if (out->next_token != NULL || node_text(c, S3_XML_MAX_TEXT, &out->next_token) < 0)
        rc = CORE_EPARSE;
    } else if (is_elem(c, "KeyCount")) {
      uint64_t v;
      if (node_text(c, 16, &t) < 0 || parse_u64(t, &v) < 0 || v > 1000000)
        rc = CORE_EPARSE;
      else
        out->key_count = (long)v;
    }
    core_free(t);
  }
  if (rc == 0 && out->is_truncated && (out->next_token == NULL || out->next_token[0] == '\0'))
    rc = CORE_EPARSE; /* a truncated page without a token would loop forever */
  xmlFreeDoc(d);
  if (rc < 0)
    s3_list_result_free(out);
  return rc;
}

void s3_list_result_free(struct s3_list_result *r)
{
  for (size_t i = 0; i < r->n; i++)
    core_free(r->objects[i].key);
  core_free(r->objects);
  core_free(r->next_token);
  memset(r, 0, sizeof(*r));
  r->key_count = -1;
}

static int parse_delete_entry(xmlNodePtr n, int deleted, struct s3_delete_entry *e)
{
  memset(e, 0, sizeof(*e));
  e->deleted = deleted;
  e->code = deleted ? S3_ERR_NONE : S3_ERR_UNKNOWN;
  int rc = 0;
  for (xmlNodePtr c = n->children; c && rc == 0; c = c->next) {
    if (is_elem(c, "Key")) {
      if (e->key != NULL || node_text(c, S3_KEY_MAX, &e->key) < 0)
        rc = CORE_EPARSE;
    } else if (!deleted && is_elem(c, "Code")) {
      char code[64];
      rc = text_into(c, code, sizeof(code));
      if (rc == 0)
        e->code = s3_error_from_name(code);
    } else if (!deleted && is_elem(c, "Message")) {
      rc = text_into(c, e->message, sizeof(e->message));
    }
  }
  if (rc == 0 && e->key == NULL)
    rc = CORE_EPARSE;
  if (rc < 0) {
    core_free(e->key);
    e->key = NULL;
  }
  return rc;
}

int s3_xml_parse_delete(const char *doc, size_t len, struct s3_delete_result *out)
{
  memset(out, 0, sizeof(*out));
  xmlDocPtr d;
  xmlNodePtr root;
  int rc = open_doc(doc, len, "DeleteResult", &d, &root);
  if (rc < 0)
    return rc;
  size_t cap = 0;
  for (xmlNodePtr c = root->children; c && rc == 0; c = c->next) {
    int deleted = is_elem(c, "Deleted");
    if (!deleted && !is_elem(c, "Error"))
      continue;
    if (out->n == cap) {
      if (cap >= 100000) {
        rc = CORE_ETOOBIG;
        break;
      }
      cap = cap ? cap * 2 : 64;
      out->entries = core_realloc(out->entries, cap * sizeof(*out->entries));
    }
    rc = parse_delete_entry(c, deleted, &out->entries[out->n]);
    if (rc == 0)
      out->n++;
  }
  xmlFreeDoc(d);
  if (rc < 0)
    s3_delete_result_free(out);
  return rc;
}

void s3_delete_result_free(struct s3_delete_result *r)
{
  for (size_t i = 0; i < r->n; i++)
    core_free(r->entries[i].key);
  core_free(r->entries);
  memset(r, 0, sizeof(*r));
}

/* ---- writing ---- */

/* Checks that `s` is valid UTF-8 without bytes XML 1.0 cannot carry. */
static int xml_key_ok(const char *s)
{
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    unsigned c = *p;
    if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
      return 0;
    if (c < 0x80) {
      p++;
      continue;
    }
    int n = (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : -1;
    if (n < 0 || (n == 1 && c < 0xC2) || c > 0xF4)
      return 0;
    unsigned cp = c & (0x3F >> n);
    for (int i = 1; i <= n; i++) {
      if ((p[i] & 0xC0) != 0x80)
        return 0;
      cp = cp << 6 | (p[i] & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE || cp == 0xFFFF)
      return 0;
    p += n + 1;
  }
  return 1;
}

static int xml_escape(struct core_buf *out, const char *s)
{
  int rc = 0;
  for (; *s && rc == 0; s++) {
    switch (*s) {
    case '&': rc = core_buf_append_str(out, "&amp;"); break;
    case '<': rc = core_buf_append_str(out, "&lt;"); break;
    case '>': rc = core_buf_append_str(out, "&gt;"); break;
    case '"': rc = core_buf_append_str(out, "&quot;"); break;
    case '\'': rc = core_buf_append_str(out, "&apos;"); break;
    /* Character references survive the parser's line-end and attribute
     * normalisation, so keys with CR/LF/TAB arrive unchanged. */
    case '\r': rc = core_buf_append_str(out, "&#13;"); break;
    case '\n': rc = core_buf_append_str(out, "&#10;"); break;
    case '\t': rc = core_buf_append_str(out, "&#9;"); break;
    default: rc = core_buf_append(out, s, 1); break;
    }
  }
  return rc;
}

int s3_xml_delete_body(const char *const *keys, size_t n, int quiet, struct core_buf *out)
{
  if (n == 0 || n > 1000)
    return CORE_EINVAL;
  for (size_t i = 0; i < n; i++) {
    size_t l = strlen(keys[i]);
    if (l == 0 || l > S3_KEY_MAX || !xml_key_ok(keys[i]))
      return CORE_ENAME;
  }
  int rc = core_buf_append_str(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                                    "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
  if (rc == 0 && quiet)
    rc = core_buf_append_str(out, "<Quiet>true</Quiet>");
  for (size_t i = 0; i < n && rc == 0; i++) {
    rc = core_buf_append_str(out, "<Object><Key>");
    if (rc == 0)
      rc = xml_escape(out, keys[i]);
    if (rc == 0)
      rc = core_buf_append_str(out, "</Key></Object>");
  }
  if (rc == 0)
    rc = core_buf_append_str(out, "</Delete>");
  return rc;
}
