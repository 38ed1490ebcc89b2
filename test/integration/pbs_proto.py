"""A small client for Cairn's (PBS-compatible) backup and reader protocol.

DESIGN. Tests and benchmarks build everything a backup client sends from first
principles here, independently of the server's C code: DataBlobs (plain and
zstd), chunk digests, fixed and dynamic index checksums, the manifest; and they
parse what the server hands back (blobs, .fidx/.didx files). Only the standard
library is used; zstd goes through libzstd with ctypes when it loads, else the
`zstd` command-line tool.

Transport is duck-typed: anything with `request(method, path, params=, json=,
body=, headers=, conn=)` returning an object with `.status`, `.data` and `.raw`,
and `connection()` returning a keep-alive connection, works as `api`. The
integration harness's `Cairn` is one; `Endpoint` below is a stand-alone one
for scripts that start servers themselves. Session helpers never share one
connection between threads: pass `conn=` per thread (`session.connection()`).

Formats (see ../shared/reference/pbs-datastore.md sections 2-3):
  blob   = magic (8) + CRC-32 of the payload, u32 LE (4) + payload
  digest = SHA-256 of the chunk plaintext
  .didx  = 4096-byte header (magic, uuid, ctime, csum) + entries of
           u64 LE end offset + digest; csum = SHA-256 of the entry area
  .fidx  = header (magic, uuid, ctime, csum, size, chunk_size) + digests;
           csum = SHA-256 of the concatenated digests
"""

import ctypes
import ctypes.util
import hashlib
import http.client
import json as jsonlib
import os
import random
import re
import ssl
import struct
import subprocess
import sys
import time
import urllib.parse
import zlib

API = "/api2/json"

MAGIC_PLAIN = bytes.fromhex("42ab3807be8370a1")
MAGIC_ZSTD = bytes.fromhex("31b958426fb6a37f")
MAGIC_ENCRYPTED = bytes.fromhex("7b6785be222d4cf0")
MAGIC_ZSTD_ENCRYPTED = bytes.fromhex("e6591bbf0bbfd80b")
MAGIC_FIDX = bytes.fromhex("2f7f41ed91fd0fcd")
MAGIC_DIDX = bytes.fromhex("1c914ea519bab3cd")

INDEX_HEADER = 4096
FIXED_CHUNK_SIZE = 4 * 1024 * 1024   # what the server uses for every .fidx
MAX_CHUNK = 16 * 1024 * 1024         # largest chunk plaintext
MAX_ENCODED = MAX_CHUNK + 48         # largest request body for a chunk or blob
MANIFEST = "index.json.blob"


class ProtoError(Exception):
    """A request that did not answer 200; carries the response."""

    def __init__(self, what, resp):
        self.resp = resp
        self.status = getattr(resp, "status", None)
        super().__init__("%s: %s %r" % (what, self.status, getattr(resp, "raw", b"")[:300]))


class FormatError(ValueError):
    pass


# ---- zstd -------------------------------------------------------------------

class _Zstd:
    """libzstd through ctypes (one-shot API), or the zstd CLI as a fallback."""

    def __init__(self):
        self.lib = None
        name = ctypes.util.find_library("zstd") or "libzstd.so.1"
        try:
            lib = ctypes.CDLL(name)
            lib.ZSTD_compressBound.restype = ctypes.c_size_t
            lib.ZSTD_compressBound.argtypes = [ctypes.c_size_t]
            lib.ZSTD_compress.restype = ctypes.c_size_t
            lib.ZSTD_compress.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p,
                                          ctypes.c_size_t, ctypes.c_int]
            lib.ZSTD_decompress.restype = ctypes.c_size_t
            lib.ZSTD_decompress.argtypes = [ctypes.c_void_p, ctypes.c_size_t,
                                            ctypes.c_char_p, ctypes.c_size_t]
            lib.ZSTD_isError.restype = ctypes.c_uint
            lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
            lib.ZSTD_getFrameContentSize.restype = ctypes.c_ulonglong
            lib.ZSTD_getFrameContentSize.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
            lib.ZSTD_findFrameCompressedSize.restype = ctypes.c_size_t
            lib.ZSTD_findFrameCompressedSize.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
            self.lib = lib
        except OSError:
            self.lib = None

    def compress(self, data, level=1):
        data = bytes(data)
        if self.lib is None:
            return subprocess.run(["zstd", "-q", "-c", "-%d" % level], input=data,
                                  stdout=subprocess.PIPE, check=True).stdout
        cap = self.lib.ZSTD_compressBound(len(data))
        out = ctypes.create_string_buffer(cap)
        n = self.lib.ZSTD_compress(out, cap, data, len(data), level)
        if self.lib.ZSTD_isError(n):
            raise FormatError("zstd compression failed")
        return out.raw[:n]

    def _frames(self, data, max_out):
        """Decodes frame by frame when every frame states its size; None when
        one does not (streamed frames: the CLI handles those)."""
        lib, out, pos = self.lib, bytearray(), 0
        while pos < len(data):
            rest = data[pos:]
            flen = lib.ZSTD_findFrameCompressedSize(rest, len(rest))
            if lib.ZSTD_isError(flen):
                raise FormatError("zstd: corrupt frame")
            size = lib.ZSTD_getFrameContentSize(rest, flen)
            if size >= (1 << 63):
                return None
            if len(out) + size > max_out:
                raise FormatError("zstd: output too large")
            buf = ctypes.create_string_buffer(size or 1)
            n = lib.ZSTD_decompress(buf, size, rest, flen)
            if lib.ZSTD_isError(n) or n != size:
                raise FormatError("zstd: cannot decompress")
            out += buf.raw[:n]
            pos += flen
        return bytes(out)

    def decompress(self, data, max_out=MAX_CHUNK * 8):
        data = bytes(data)
        if self.lib is not None:
            got = self._frames(data, max_out)
            if got is not None:
                return got
        p = subprocess.run(["zstd", "-q", "-d", "-c"], input=data, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise FormatError("zstd: cannot decompress: %s" % p.stderr.decode()[:200])
        if len(p.stdout) > max_out:
            raise FormatError("zstd: output too large")
        return p.stdout


ZSTD = _Zstd()


# ---- blobs and chunks ------------------------------------------------------

def crc32_le(payload):
    return struct.pack("<I", zlib.crc32(payload) & 0xFFFFFFFF)


def blob_encode(payload, compress=False):
    """A DataBlob of `payload`. compress=True keeps zstd level 1 only when it is
    not larger than the payload, as PBS does."""
    payload = bytes(payload)
    if compress:
        z = ZSTD.compress(payload, 1)
        if len(z) <= len(payload):
            return MAGIC_ZSTD + crc32_le(z) + z
    return MAGIC_PLAIN + crc32_le(payload) + payload


def blob_decode(blob):
    """The payload of an unencrypted DataBlob; checks magic and CRC."""
    blob = bytes(blob)
    if len(blob) < 12:
        raise FormatError("blob shorter than its header")
    magic, crc, payload = blob[:8], blob[8:12], blob[12:]
    if magic in (MAGIC_ENCRYPTED, MAGIC_ZSTD_ENCRYPTED):
        raise FormatError("encrypted blob")
    if magic not in (MAGIC_PLAIN, MAGIC_ZSTD):
        raise FormatError("bad blob magic %s" % magic.hex())
    if crc32_le(payload) != crc:
        raise FormatError("blob CRC mismatch")
    return ZSTD.decompress(payload) if magic == MAGIC_ZSTD else payload


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


class Chunk:
    """One chunk: plaintext, digest (hex), encoded blob."""

    __slots__ = ("data", "digest", "blob")

    def __init__(self, data, compress=False, blob=None):
        self.data = bytes(data)
        self.digest = sha256_hex(self.data)
        self.blob = blob if blob is not None else blob_encode(self.data, compress)

    @property
    def size(self):
        return len(self.data)

    def __repr__(self):
        return "<Chunk %s… %d bytes, %d encoded>" % (self.digest[:12], self.size,
                                                       len(self.blob))


def random_chunks(seed, n, size):
    """n incompressible chunks of `size` bytes, the same for the same seed."""
    rnd = random.Random(seed)
    return [Chunk(rnd.randbytes(size)) for _ in range(n)]


def split(data, size):
    """Cuts bytes into pieces of `size` (the last may be shorter)."""
    return [data[i:i + size] for i in range(0, len(data), size)]


# ---- indexes ---------------------------------------------------------------

def didx_csum(ends, digests):
    """Checksum of a dynamic index: SHA-256 over (u64 LE end + digest)..."""
    h = hashlib.sha256()
    for end, d in zip(ends, digests):
        h.update(struct.pack("<Q", end))
        h.update(bytes.fromhex(d) if isinstance(d, str) else d)
    return h.hexdigest()


def fidx_csum(digests):
    """Checksum of a fixed index: SHA-256 over the digests."""
    h = hashlib.sha256()
    for d in digests:
        h.update(bytes.fromhex(d) if isinstance(d, str) else d)
    return h.hexdigest()


class Index:
    """A parsed .fidx or .didx file. entries: [(start, end, digest hex)]."""

    def __init__(self, kind, uuid, ctime, csum, size, chunk_size, entries):
        self.kind = kind            # "fixed" or "dynamic"
        self.uuid = uuid
        self.ctime = ctime
        self.csum = csum            # hex, as stored (verified by parse)
        self.size = size
        self.chunk_size = chunk_size  # fixed only
        self.entries = entries

    @property
    def digests(self):
        return [e[2] for e in self.entries]

    @classmethod
    def parse(cls, raw):
        raw = bytes(raw)
        if len(raw) < INDEX_HEADER:
            raise FormatError("index shorter than its header")
        magic = raw[:8]
        uuid = raw[8:24]
        (ctime,) = struct.unpack_from("<q", raw, 24)
        csum = raw[32:64].hex()
        body = raw[INDEX_HEADER:]
        entries = []
        if magic == MAGIC_FIDX:
            size, chunk_size = struct.unpack_from("<QQ", raw, 64)
            if chunk_size == 0 or chunk_size & (chunk_size - 1):
                raise FormatError("fixed index chunk size %d" % chunk_size)
            count = (size + chunk_size - 1) // chunk_size
            if len(body) != 32 * count:
                raise FormatError("fixed index has %d entry bytes for %d chunks"
                                  % (len(body), count))
            for i in range(count):
                start = i * chunk_size
                entries.append((start, min(size, start + chunk_size),
                                body[32 * i:32 * i + 32].hex()))
            if fidx_csum(e[2] for e in entries) != csum:
                raise FormatError("fixed index checksum mismatch")
            return cls("fixed", uuid, ctime, csum, size, chunk_size, entries)
        if magic == MAGIC_DIDX:
            if len(body) % 40:
                raise FormatError("dynamic index entry area of %d bytes" % len(body))
            start = 0
            for i in range(len(body) // 40):
                (end,) = struct.unpack_from("<Q", body, 40 * i)
                if end < start:
                    raise FormatError("dynamic index offsets go backwards")
                entries.append((start, end, body[40 * i + 8:40 * i + 40].hex()))
                start = end
            if hashlib.sha256(body).hexdigest() != csum:
                raise FormatError("dynamic index checksum mismatch")
            return cls("dynamic", uuid, ctime, csum, start, 0, entries)
        raise FormatError("not an index (magic %s)" % magic.hex())


# ---- manifest --------------------------------------------------------------

def manifest(backup_type, backup_id, backup_time, files, unprotected=None):
    """The manifest document (files: entries as upload_* return them)."""
    return {"backup-type": backup_type, "backup-id": backup_id,
            "backup-time": int(backup_time), "files": list(files),
            "unprotected": dict(unprotected or {}), "signature": None}


def manifest_blob(doc, compress=True):
    """index.json.blob as PBS's client writes it (zstd-compressed)."""
    return blob_encode(jsonlib.dumps(doc, indent=2).encode(), compress)


def parse_manifest(raw):
    return jsonlib.loads(blob_decode(raw))


# ---- the datastore on disk (PBS layout) --------------------------------------

HEX64 = re.compile(r"^[0-9a-f]{64}$")
TMP_CHUNK = re.compile(r"^[0-9a-f]{64}\.tmp_[A-Za-z0-9]{6}$")


def snapshot_name(backup_time):
    """The RFC 3339 directory name of a backup time."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(backup_time)))


def group_dir(datastore, backup_type, backup_id, ns=None):
    parts = [datastore]
    for comp in (ns or "").split("/"):
        if comp:
            parts += ["ns", comp]
    return os.path.join(*parts, backup_type, backup_id)


def snapshot_dir(datastore, backup_type, backup_id, backup_time, ns=None):
    return os.path.join(group_dir(datastore, backup_type, backup_id, ns),
                        snapshot_name(backup_time))


def chunk_dir_listing(datastore):
    """Every file under <datastore>/.chunks as (prefix dir, name, path); the
    prefix directories themselves are not listed."""
    out = []
    base = os.path.join(datastore, ".chunks")
    if not os.path.isdir(base):
        return out
    for prefix in sorted(os.listdir(base)):
        pdir = os.path.join(base, prefix)
        if not os.path.isdir(pdir):
            out.append(("", prefix, pdir))
            continue
        for name in sorted(os.listdir(pdir)):
            out.append((prefix, name, os.path.join(pdir, name)))
    return out


def chunk_digests(datastore):
    """The digests stored as chunks (64-hex names in the right prefix dir)."""
    return {name for prefix, name, _ in chunk_dir_listing(datastore)
            if HEX64.match(name) and name[:4] == prefix}


def check_chunk(path, digest):
    """None if the file at `path` is a valid chunk with that digest, else why not."""
    try:
        with open(path, "rb") as f:
            data = blob_decode(f.read())
    except (OSError, FormatError) as e:
        return str(e)
    if sha256_hex(data) != digest:
        return "content does not hash to its name"
    return None


# ---- a stand-alone transport ---------------------------------------------

class Response:
    def __init__(self, status, headers, data, raw):
        self.status, self.headers, self.data, self.raw = status, headers, data, raw

    def __iter__(self):
        return iter((self.status, self.headers, self.data))

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.raw[:300])


class Endpoint:
    """host:port with a token; HTTPS without CA checks when tls (benchmarks)."""

    def __init__(self, host, port, token, tls=False, timeout=60.0):
        self.host, self.port, self.token, self.tls, self.timeout = host, port, token, tls, timeout

    def connection(self, timeout=None):
        t = timeout or self.timeout
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection(self.host, self.port, timeout=t, context=ctx)
        return http.client.HTTPConnection(self.host, self.port, timeout=t)

    def request(self, method, path, params=None, json=None, body=None, headers=None,
                token=True, conn=None, timeout=None):
        hdrs = {}
        if token:
            hdrs["Authorization"] = "PBSAPIToken=" + (self.token if token is True else token)
        data = None
        if params:
            enc = urllib.parse.urlencode(params)
            if method in ("GET", "DELETE", "HEAD") or json is not None or body is not None:
                path += ("&" if "?" in path else "?") + enc
            else:
                data = enc.encode()
                hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        if json is not None:
            data = jsonlib.dumps(json).encode()
            hdrs["Content-Type"] = "application/json"
        if body is not None:
            data = body
        hdrs.update(headers or {})
        own = conn is None
        c = self.connection(timeout) if own else conn
        try:
            c.request(method, path, body=data, headers=hdrs)
            r = c.getresponse()
            raw = r.read()
        finally:
            if own:
                c.close()
        parsed = raw
        if raw[:1] in (b"{", b"["):
            try:
                parsed = jsonlib.loads(raw)
            except ValueError:
                pass
        return Response(r.status, r.headers, parsed, raw)


# ---- sessions --------------------------------------------------------------

def _data(resp, what):
    if resp.status != 200 or not isinstance(resp.data, dict) or "data" not in resp.data:
        raise ProtoError(what, resp)
    return resp.data["data"]


class _Session:
    kind = None

    def __init__(self, api, store, backup_type, backup_id, backup_time, ns=None):
        self.api = api
        self.store = store
        self.backup_type = backup_type
        self.backup_id = backup_id
        self.backup_time = int(backup_time)
        self.ns = ns
        self.id = None
        self.busy_retries = 0
        self.conn = None  # the session's own keep-alive connection (one thread)

    def params(self):
        p = {"store": self.store, "backup-type": self.backup_type,
             "backup-id": self.backup_id, "backup-time": str(self.backup_time)}
        if self.ns:
            p["ns"] = self.ns
        return p

    def open_raw(self):
        """POST that opens the session; returns the response (no raise)."""
        r = self.api.request("POST", "%s/%s" % (API, self.kind), params=self.params())
        if r.status == 200 and isinstance(r.data, dict):
            self.id = r.data.get("data")
        return r

    def open(self, wait_busy=0.0):
        """Opens the session or raises ProtoError. wait_busy: seconds to retry
        while the server answers 409 (a lock still held); `busy_retries`
        counts the retries."""
        deadline = time.monotonic() + wait_busy
        self.busy_retries = 0
        while True:
            r = self.open_raw()
            if r.status != 409 or time.monotonic() >= deadline:
                break
            self.busy_retries += 1
            time.sleep(0.02)
        self.id = _data(r, "open %s session" % self.kind)
        return self

    def connection(self):
        return self.api.connection()

    def path(self, endpoint=""):
        return "%s/%s/%s%s" % (API, self.kind, self.id, "/" + endpoint if endpoint else "")

    def call(self, method, endpoint, params=None, json=None, body=None, headers=None,
             conn=None):
        """One request in the session; returns the response (no raise). Without
        `conn` the session's own keep-alive connection is used (one thread)."""
        if conn is None:
            if self.conn is None:
                self.conn = self.api.connection()
            conn = self.conn
        try:
            return self.api.request(method, self.path(endpoint), params=params, json=json,
                                    body=body, headers=headers, conn=conn)
        except (http.client.HTTPException, OSError):
            if conn is self.conn:  # a dropped keep-alive connection is not sticky
                self.conn.close()
                self.conn = None
            raise

    def ok(self, method, endpoint, what=None, **kw):
        return _data(self.call(method, endpoint, **kw), what or endpoint)

    def close_connection(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class BackupSession(_Session):
    """A backup: open(), writers, chunks, blobs, finish() (or abort())."""

    kind = "backup"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.files = []  # manifest entries of what was uploaded

    # -- the endpoints, one call each --

    def dynamic_index(self, name, conn=None):
        return self.ok("POST", "dynamic_index", params={"archive-name": name}, conn=conn)

    def fixed_index(self, name, size=None, conn=None):
        p = {"archive-name": name}
        if size is not None:
            p["size"] = str(size)
        return self.ok("POST", "fixed_index", params=p, conn=conn)

    def chunk_raw(self, wid, digest, size, body, fixed=False, conn=None, encoded_size=None):
        """POST *_chunk; returns the response."""
        p = {"wid": str(wid), "digest": digest, "size": str(size),
             "encoded-size": str(len(body) if encoded_size is None else encoded_size)}
        return self.call("POST", "fixed_chunk" if fixed else "dynamic_chunk", params=p,
                         body=body, headers={"Content-Type": "application/octet-stream"},
                         conn=conn)

    def upload_chunk(self, wid, chunk, fixed=False, conn=None):
        got = _data(self.chunk_raw(wid, chunk.digest, chunk.size, chunk.blob, fixed, conn),
                    "upload chunk %s" % chunk.digest)
        if got != chunk.digest:
            raise ProtoError("server answered digest %r" % got, None)
        return got

    def append_raw(self, wid, digests, offsets, fixed=False, conn=None):
        return self.call("PUT", "fixed_index" if fixed else "dynamic_index",
                         json={"wid": wid, "digest-list": list(digests),
                               "offset-list": list(offsets)}, conn=conn)

    def append(self, wid, digests, offsets, fixed=False, conn=None):
        return _data(self.append_raw(wid, digests, offsets, fixed, conn), "append")

    def close_raw(self, wid, count, size, csum, fixed=False, conn=None):
        return self.call("POST", "fixed_close" if fixed else "dynamic_close",
                         params={"wid": str(wid), "chunk-count": str(count),
                                 "size": str(size), "csum": csum}, conn=conn)

    def close_index(self, wid, count, size, csum, fixed=False, conn=None):
        return _data(self.close_raw(wid, count, size, csum, fixed, conn), "close")

    def blob_raw(self, name, body, conn=None):
        return self.call("POST", "blob", params={"file-name": name,
                                                 "encoded-size": str(len(body))},
                         body=body, headers={"Content-Type": "application/octet-stream"},
                         conn=conn)

    def previous(self, name, conn=None):
        """The previous snapshot's file (raw bytes); registers its chunks."""
        r = self.call("GET", "previous", params={"archive-name": name}, conn=conn)
        if r.status != 200:
            raise ProtoError("previous %s" % name, r)
        return r.raw

    def previous_backup_time(self, conn=None):
        return self.ok("GET", "previous_backup_time", conn=conn)

    def finish(self, conn=None):
        r = self.call("POST", "finish", conn=conn)
        _data(r, "finish")
        self.close_connection()
        return r

    def abort(self, conn=None):
        r = self.call("DELETE", "", conn=conn)
        self.close_connection()
        return r

    # -- whole files --

    def upload_dynamic(self, name, chunks, known=(), batch=64, conn=None):
        """Uploads a .didx from Chunk objects; digests in `known` are not sent
        (registered through `previous`). Returns (manifest entry, uploaded)."""
        known = set(known)
        wid = self.dynamic_index(name, conn=conn)
        ends, digests, offsets = [], [], []
        pos, uploaded = 0, 0
        pending_d, pending_o = [], []
        for c in chunks:
            if c.digest not in known:
                self.upload_chunk(wid, c, conn=conn)
                known.add(c.digest)
                uploaded += 1
            pending_d.append(c.digest)
            pending_o.append(pos)
            offsets.append(pos)
            pos += c.size
            ends.append(pos)
            digests.append(c.digest)
            if len(pending_d) >= batch:
                self.append(wid, pending_d, pending_o, conn=conn)
                pending_d, pending_o = [], []
        if pending_d:
            self.append(wid, pending_d, pending_o, conn=conn)
        csum = didx_csum(ends, digests)
        self.close_index(wid, len(digests), pos, csum, conn=conn)
        entry = {"filename": name, "crypt-mode": "none", "size": pos, "csum": csum}
        self.files.append(entry)
        return entry, uploaded

    def upload_fixed(self, name, chunks, known=(), size_hint=True, conn=None):
        """Uploads a .fidx from Chunk objects of FIXED_CHUNK_SIZE (the last may
        be shorter). Returns (manifest entry, uploaded)."""
        known = set(known)
        size = sum(c.size for c in chunks)
        wid = self.fixed_index(name, size if size_hint else None, conn=conn)
        uploaded = 0
        for i, c in enumerate(chunks):
            if c.digest not in known:
                self.upload_chunk(wid, c, fixed=True, conn=conn)
                known.add(c.digest)
                uploaded += 1
        digests = [c.digest for c in chunks]
        offsets = [i * FIXED_CHUNK_SIZE for i in range(len(chunks))]
        if digests:
            self.append(wid, digests, offsets, fixed=True, conn=conn)
        csum = fidx_csum(digests)
        self.close_index(wid, len(digests), size, csum, fixed=True, conn=conn)
        entry = {"filename": name, "crypt-mode": "none", "size": size, "csum": csum}
        self.files.append(entry)
        return entry, uploaded

    def upload_blob(self, name, payload, compress=False, conn=None):
        """Uploads a blob file; returns its manifest entry (size and csum of
        the encoded bytes, as PBS's client records them)."""
        body = blob_encode(payload, compress)
        _data(self.blob_raw(name, body, conn), "blob %s" % name)
        entry = {"filename": name, "crypt-mode": "none", "size": len(body),
                 "csum": sha256_hex(body)}
        self.files.append(entry)
        return entry

    def upload_manifest(self, unprotected=None, conn=None):
        doc = manifest(self.backup_type, self.backup_id, self.backup_time, self.files,
                       unprotected)
        body = manifest_blob(doc)
        _data(self.blob_raw(MANIFEST, body, conn), "manifest")
        return doc


class ReaderSession(_Session):
    """A restore: open(), download(), chunk(), restore_*(), close()."""

    kind = "reader"

    def download_raw(self, name, conn=None):
        return self.call("GET", "download", params={"file-name": name}, conn=conn)

    def download(self, name, conn=None):
        r = self.download_raw(name, conn)
        if r.status != 200:
            raise ProtoError("download %s" % name, r)
        return r.raw

    def chunk_raw(self, digest, conn=None):
        return self.call("GET", "chunk", params={"digest": digest}, conn=conn)

    def chunk(self, digest, conn=None):
        r = self.chunk_raw(digest, conn)
        if r.status != 200:
            raise ProtoError("chunk %s" % digest, r)
        return r.raw

    def manifest(self, conn=None):
        return parse_manifest(self.download(MANIFEST, conn))

    def restore_index(self, name, conn=None):
        """Downloads an index and all its chunks; checks every chunk's digest and
        length; returns (Index, the restored bytes)."""
        idx = Index.parse(self.download(name, conn))
        out = bytearray()
        cache = {}
        for start, end, digest in idx.entries:
            data = cache.get(digest)
            if data is None:
                data = blob_decode(self.chunk(digest, conn))
                if sha256_hex(data) != digest:
                    raise FormatError("chunk %s: content does not match its digest" % digest)
                cache[digest] = data
            if len(data) != end - start:
                raise FormatError("chunk %s: %d bytes, index says %d"
                                  % (digest, len(data), end - start))
            out += data
        return idx, bytes(out)

    def restore_blob(self, name, conn=None):
        return blob_decode(self.download(name, conn))

    def close(self, conn=None):
        r = self.call("DELETE", "", conn=conn)
        self.close_connection()
        return r


# ---- unittest helpers --------------------------------------------------------

class CaseMixin:
    """Assertions shared by the backup protocol tests (mix into a TestCase that
    sets `self.srv`, a harness Cairn)."""

    srv = None

    @staticmethod
    def finish_server(srv):
        import cairn_harness
        cairn_harness.finish_server(srv)

    def log_tail(self, srv=None):
        srv = srv or self.srv
        if srv is None:
            return ""
        return "\n--- cairnd log (tail) ---\n" + "\n".join(srv.log_lines[-30:])

    # cairnd answers DELETE of a backup session before its clean-up job has
    # released the locks (finish answers only after), so a session opened right
    # after an abort can get a 409; open_session() retries that for a while and
    # says so on stderr.
    busy_wait = 3.0

    def open_session(self, sess):
        sess.open(wait_busy=self.busy_wait)
        if sess.busy_retries:
            sys.stderr.write("note: %s session for %s/%s/%d opened after %d retr%s on 409\n"
                             % (sess.kind, sess.backup_type, sess.backup_id,
                                sess.backup_time, sess.busy_retries,
                                "y" if sess.busy_retries == 1 else "ies"))
        return sess

    def assertOk(self, resp, msg=""):
        self.assertEqual(200, resp.status, "%s %r%s" % (msg, resp, self.log_tail()))
        self.assertIsInstance(resp.data, dict, "%s: not a JSON object: %r" % (msg, resp))
        self.assertIn("data", resp.data, "%s: no data envelope: %r" % (msg, resp))
        return resp.data["data"]

    def assertError(self, resp, statuses, msg="", mentions=None):
        """A JSON error envelope {"data": null, "message": "..."} with a status in
        `statuses`; `mentions` (regex) must match the lowercased message."""
        if isinstance(statuses, int):
            statuses = (statuses,)
        self.assertIn(resp.status, statuses, "%s %r%s" % (msg, resp, self.log_tail()))
        self.assertIsInstance(resp.data, dict, "%s: error body not JSON: %r" % (msg, resp))
        self.assertIsNone(resp.data.get("data"), "%s: %r" % (msg, resp))
        message = resp.data.get("message")
        self.assertIsInstance(message, str, "%s: no message: %r" % (msg, resp))
        self.assertTrue(message.strip(), "%s: empty message: %r" % (msg, resp))
        if mentions:
            self.assertRegex(message.lower(), mentions, "%s: %r" % (msg, resp))
        return message

    def assertChunkStoreClean(self, datastore, expect=None, allow_tmp=False):
        """Every file under .chunks is a valid chunk named by its digest in the
        right prefix directory (temp files only if allow_tmp); with `expect`, the
        set of digests equals it. Returns the digests."""
        digests, bad, tmp = set(), [], []
        for prefix, name, path in chunk_dir_listing(datastore):
            if HEX64.match(name) and name[:4] == prefix:
                why = check_chunk(path, name)
                if why:
                    bad.append("%s: %s" % (name, why))
                digests.add(name)
            elif TMP_CHUNK.match(name) and name[:4] == prefix:
                tmp.append(name)
            else:
                bad.append("unexpected file %s/%s" % (prefix, name))
        self.assertEqual([], bad, "chunk store of %s" % datastore)
        if not allow_tmp:
            self.assertEqual([], tmp, "temp files left in the chunk store")
        if expect is not None:
            self.assertEqual(set(expect), digests, "chunks on disk")
        return digests

    def poll(self, fn, timeout=5.0, interval=0.05):
        deadline = time.monotonic() + timeout
        while True:
            v = fn()
            if v or time.monotonic() >= deadline:
                return v
            time.sleep(interval)
