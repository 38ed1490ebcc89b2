#!/usr/bin/python3
"""Integration tests for issue #3 (item 8): hostile input to the backup and
reader sessions gets the right 4xx and leaves nothing behind.

Wrong digests and sizes, truncated and corrupt bodies, a decompression bomb,
bodies over 16 MiB + 48 bytes (refused from the headers, before any body byte
is sent), path traversal and invalid names in every name parameter, unknown
sessions and writers, non-contiguous or misaligned offsets, closes with wrong
checksums, appends of unknown digests, and the finish rules. After each case
the chunk store holds exactly the chunks it held before (no temp files) and
the snapshot directory only the files that were accepted.

Runs standalone (`python3 test_backup_hostile.py`, CAIRN_BIN_DIR=build/bin) and
from ctest; exits non-zero on failure.
"""

import json
import os
import random
import socket
import subprocess
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as ch  # noqa: E402
import pbs_proto as pp  # noqa: E402

API = pp.API
STORE = "ds1"
T0 = 1700000000
MiB = 1024 * 1024
LIMIT = 16 * MiB + 48  # largest chunk or blob request body


def setUpModule():
    ch.require_programs("cairnd", "cairn-admin")


def rbytes(seed, n):
    return random.Random(seed).randbytes(n)


def tree(root, skip=()):
    """Every path under root (relative), except under the `skip` subdirs."""
    out = set()
    for d, dirs, files in os.walk(root):
        rel = os.path.relpath(d, root)
        if rel.split(os.sep)[0] in skip:
            dirs[:] = []
            continue
        for n in dirs + files:
            out.add(os.path.normpath(os.path.join(rel, n)))
    return out


class HostileCase(pp.CaseMixin, unittest.TestCase):
    tls = False
    _ids = 0

    @classmethod
    def setUpClass(cls):
        cls.srv = ch.Cairn(tls=cls.tls, log_level="info")
        cls.addClassCleanup(cls.finish_server, cls.srv)
        cls.srv.admin("datastore", "create", STORE, cls.srv.datastore_path(STORE), check=True)
        cls.ds = cls.srv.datastore_path(STORE)

    def setUp(self):
        self.before = self.assertChunkStoreClean(self.ds)
        self.sessions = []

    def tearDown(self):
        # An abort answers before its clean-up: let it finish, so the next test
        # starts from a settled datastore.
        for s in self.sessions:
            s.close_connection()
            if s.kind == "backup" and s.id:
                d = pp.snapshot_dir(self.ds, "host", s.backup_id, s.backup_time)
                if not os.path.exists(os.path.join(d, pp.MANIFEST)):
                    self.poll(lambda: not os.path.exists(d))

    def backup(self, backup_id=None, t=T0):
        if backup_id is None:
            HostileCase._ids += 1
            backup_id = "h%d" % HostileCase._ids
        b = self.open_session(pp.BackupSession(self.srv, STORE, "host", backup_id, t))
        self.sessions.append(b)
        return b

    def reader(self, backup_id, t=T0):
        r = self.open_session(pp.ReaderSession(self.srv, STORE, "host", backup_id, t))
        self.sessions.append(r)
        return r

    def open_raw_settled(self, sess):
        """open_raw(), retried while the answer is 409 (see open_session)."""
        deadline = time.monotonic() + self.busy_wait
        while True:
            r = sess.open_raw()
            if r.status != 409 or time.monotonic() >= deadline:
                return r
            time.sleep(0.02)

    def snapfiles(self, b):
        d = pp.snapshot_dir(self.ds, "host", b.backup_id, b.backup_time)
        return set(os.listdir(d)) if os.path.isdir(d) else None

    def assertNothingStored(self, extra=()):
        """The chunk store holds what it held at setUp (plus `extra`)."""
        self.assertChunkStoreClean(self.ds, expect=self.before | set(extra))

    def raw_request(self, method, path, headers=(), body=b"", timeout=5.0):
        """One request on a raw socket: returns (status, body, closed, seconds)."""
        head = "%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: PBSAPIToken=%s\r\n" % (
            method, path, self.srv.token)
        head += "".join("%s: %s\r\n" % kv for kv in headers) + "\r\n"
        s = self.srv.raw_socket(timeout)
        t = time.monotonic()
        try:
            status, _, rbody, closed, _ = ch.exchange_one(s, head.encode() + body, timeout)
            if not closed:
                # The server closes after refusing a body it did not read.
                _, closed = ch.read_until_close(s, 1.0)
            return status, rbody, closed, time.monotonic() - t
        finally:
            s.close()

    def chunk_path(self, b, wid, digest, size, esize):
        q = urllib.parse.urlencode({"wid": wid, "digest": digest, "size": size,
                                    "encoded-size": esize})
        return b.path("dynamic_chunk") + "?" + q


# ---------------------------------------------------------------------------


class ChunkBodyTest(HostileCase):
    def test_wrong_digest(self):
        b = self.backup()
        wid = b.dynamic_index("a.didx")
        c, other = pp.Chunk(rbytes(1, 5000)), pp.Chunk(rbytes(2, 5000))
        self.assertError(b.chunk_raw(wid, other.digest, c.size, c.blob), 400,
                         mentions="digest|rejected")
        for bad in (c.digest.upper(), c.digest[:63], c.digest + "0", "z" * 64, ""):
            self.assertError(b.chunk_raw(wid, bad, c.size, c.blob), 400, repr(bad))
        self.assertNothingStored()
        b.upload_chunk(wid, c)  # the session is still usable
        self.assertNothingStored(extra={c.digest})
        self.assertOk(b.abort())

    def test_wrong_size(self):
        b = self.backup()
        wid = b.dynamic_index("a.didx")
        c = pp.Chunk(rbytes(3, 5000))
        for size in (c.size - 1, c.size + 1, 0, 16 * MiB + 1, -1, "x", ""):
            self.assertError(b.chunk_raw(wid, c.digest, size, c.blob), 400, repr(size))
        self.assertNothingStored()
        self.assertOk(b.abort())

    def test_truncated_and_corrupt_bodies(self):
        b = self.backup()
        wid = b.dynamic_index("a.didx")
        c = pp.Chunk(rbytes(4, 100000))
        z = pp.Chunk(bytes(100000), compress=True)
        self.assertEqual(pp.MAGIC_ZSTD, z.blob[:8])
        cut = c.blob[:-1000]
        zcut = z.blob[12:-3]
        cases = {
            # announced encoded size larger than the body
            "short body": (c.digest, c.size, cut, len(c.blob)),
            # a cut blob with a consistent encoded size: the CRC fails
            "cut blob": (c.digest, c.size, cut, None),
            # a cut zstd stream with a valid CRC
            "cut zstd": (z.digest, z.size, pp.MAGIC_ZSTD + pp.crc32_le(zcut) + zcut, None),
            "no payload": (c.digest, c.size, c.blob[:12], None),
            "half header": (c.digest, c.size, c.blob[:6], None),
            "bad magic": (c.digest, c.size, b"\0" * 8 + c.blob[8:], None),
            "flipped byte": (c.digest, c.size, c.blob[:50] + b"\xff" + c.blob[51:], None),
            "empty": (c.digest, c.size, b"", None),
        }
        for what, (digest, size, body, esize) in cases.items():
            self.assertError(b.chunk_raw(wid, digest, size, body, encoded_size=esize), 400,
                             what)
        self.assertNothingStored()
        self.assertOk(b.abort())

    def test_decompression_bomb(self):
        b = self.backup()
        wid = b.dynamic_index("a.didx")
        big = bytes(17 * MiB)
        blob = pp.blob_encode(big, compress=True)
        self.assertLess(len(blob), 4096)
        self.assertError(b.chunk_raw(wid, pp.sha256_hex(big[:4 * MiB]), 4 * MiB, blob), 400,
                         "bomb with a small announced size")
        self.assertError(b.chunk_raw(wid, pp.sha256_hex(big), 16 * MiB, blob), 400,
                         "bomb over the maximum chunk size")
        self.assertNothingStored()
        self.assertOk(b.abort())

    def test_connection_closed_mid_body(self):
        b = self.backup()
        wid = b.dynamic_index("a.didx")
        c = pp.Chunk(rbytes(5, 2 * MiB))
        path = self.chunk_path(b, wid, c.digest, c.size, len(c.blob))
        head = ("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: PBSAPIToken=%s\r\n"
                "Content-Length: %d\r\n\r\n" % (path, self.srv.token, len(c.blob)))
        s = self.srv.raw_socket()
        s.sendall(head.encode() + c.blob[:MiB])
        time.sleep(0.2)
        s.close()
        time.sleep(0.3)
        self.assertNothingStored()
        self.assertTrue(self.srv.alive())
        b.upload_chunk(wid, c)  # the session did not notice
        b.append(wid, [c.digest], [0])
        self.assertOk(b.abort())

    def test_largest_chunk_is_accepted(self):
        b = self.backup()
        wid = b.dynamic_index("a.didx")
        c = pp.Chunk(rbytes(6, 16 * MiB))
        b.upload_chunk(wid, c)
        # Exactly the limit is read (not 413) but is no valid chunk.
        body = pp.MAGIC_PLAIN + b"\0" * (LIMIT - 8)
        self.assertError(b.chunk_raw(wid, c.digest, 16 * MiB, body), 400, "16 MiB + 48")
        self.assertNothingStored(extra={c.digest})
        self.assertOk(b.abort())


class BodyLimitTest(HostileCase):
    """Over-limit bodies are refused from the headers: the answer arrives while
    not one body byte has been sent, and the connection is closed."""

    def check_refused(self, path, length):
        status, body, closed, secs = self.raw_request(
            "POST", path, [("Content-Length", str(length)),
                           ("Content-Type", "application/octet-stream")], timeout=5.0)
        self.assertEqual(413, status, "%s with Content-Length %d: %r%s"
                         % (path, length, body[:200], self.log_tail()))
        self.assertTrue(closed, "connection kept open after refusing a body")
        self.assertLess(secs, 3.0)
        msg = json.loads(body)
        self.assertIsNone(msg["data"])

    def test_body_over_limit_refused_before_it_is_read(self):
        b = self.backup()
        wid = b.dynamic_index("a.didx")
        digest = "ab" * 32
        for length in (LIMIT + 1, 64 * MiB, 10 ** 12):
            self.check_refused(self.chunk_path(b, wid, digest, 16 * MiB, length), length)
            self.check_refused(b.path("blob") + "?file-name=x.blob&encoded-size=%d" % length,
                               length)
        # The index append has its own (smaller) limit.
        status, _, closed, _ = self.raw_request(
            "PUT", b.path("dynamic_index"), [("Content-Length", str(8 * MiB)),
                                             ("Content-Type", "application/json")])
        self.assertEqual(413, status)
        self.assertNothingStored()
        self.assertEqual(set(), self.snapfiles(b))
        b.upload_chunk(wid, pp.Chunk(b"after"))  # the session is unharmed
        self.assertOk(b.abort())

    def test_chunked_body_over_limit(self):
        b = self.backup()
        wid = b.dynamic_index("a.didx")
        path = self.chunk_path(b, wid, "cd" * 32, 16 * MiB, LIMIT)
        head = ("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: PBSAPIToken=%s\r\n"
                "Transfer-Encoding: chunked\r\n\r\n" % (path, self.srv.token)).encode()
        piece = b"%x\r\n" % MiB + b"\0" * MiB + b"\r\n"
        s = self.srv.raw_socket(10)
        try:
            s.sendall(head)
            sent = 0
            try:
                while sent < LIMIT + MiB:
                    s.sendall(piece)
                    sent += MiB
                s.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # refused and closed while sending
            data, _ = ch.read_until_close(s, 5)
        finally:
            s.close()
        self.assertIn(ch.parse_status_line(data), (413, 400), data[:300])
        self.assertNothingStored()
        self.assertOk(b.abort())


class TlsBodyLimitTest(BodyLimitTest):
    tls = True
    test_chunked_body_over_limit = None


class NameTest(HostileCase):
    BAD_ARCHIVES = ["../x.didx", "a/b.didx", "x\0.didx", "x.didx\0", ".didx", "/x.didx",
                    "..", ".", "", "x.didx/..", "\\x.didx", "x" * 300 + ".didx",
                    "x.didx\n", " .didx"]

    def test_traversal_and_invalid_names(self):
        b = self.backup()
        outside = tree(self.srv.root, skip=("run",))
        for name in self.BAD_ARCHIVES:
            self.assertError(b.call("POST", "dynamic_index", params={"archive-name": name}),
                             400, "dynamic_index %r" % name)
            fname = name.replace("didx", "fidx")
            self.assertError(b.call("POST", "fixed_index", params={"archive-name": fname}),
                             400, "fixed_index %r" % fname)
            bname = name.replace("didx", "blob")
            self.assertError(b.blob_raw(bname, pp.blob_encode(b"x")), 400, "blob %r" % bname)
            self.assertError(b.call("GET", "previous", params={"archive-name": name}),
                             (400, 404), "previous %r" % name)
        # The wrong kind of file for the endpoint.
        for ep, name in (("dynamic_index", "x.fidx"), ("dynamic_index", "x.blob"),
                         ("fixed_index", "x.didx"), ("dynamic_index", "x.txt"),
                         ("dynamic_index", "x.pxar")):
            self.assertError(b.call("POST", ep, params={"archive-name": name}), 400,
                             "%s %r" % (ep, name))
        self.assertError(b.blob_raw("x.didx", pp.blob_encode(b"x")), 400)
        self.assertError(b.blob_raw("index.json", pp.blob_encode(b"{}")), 400)
        self.assertEqual(set(), self.snapfiles(b))
        self.assertEqual(outside, tree(self.srv.root, skip=("run",)))
        self.assertOk(b.abort())

    def test_traversal_in_session_parameters(self):
        before = tree(self.srv.root, skip=("run",))
        base = {"store": STORE, "backup-type": "host", "backup-id": "ok",
                "backup-time": str(T0)}
        bad = [("backup-id", ".."), ("backup-id", "."), ("backup-id", "a/b"),
               ("backup-id", "../../x"), ("backup-id", ""), ("backup-id", "-x"),
               ("backup-id", "x\0y"), ("backup-id", "x" * 300),
               ("backup-type", "xx"), ("backup-type", "../vm"), ("backup-type", ""),
               ("ns", "../../etc"), ("ns", "a/../../b"), ("ns", "/abs"), ("ns", "a//b"),
               ("ns", "a/b/c/d/e/f/g/h"), ("ns", ".."), ("ns", "a\0"),
               ("backup-time", "-1"), ("backup-time", "abc"), ("backup-time", "1e9"),
               ("backup-time", "99999999999999"), ("backup-time", ""),
               ("store", "../x"), ("store", "a/b"), ("store", "")]
        for kind in ("backup", "reader"):
            for key, value in bad:
                p = dict(base, **{key: value})
                r = self.srv.post("%s/%s" % (API, kind), params=p)
                self.assertError(r, 400, "%s %s=%r" % (kind, key, value))
            for key in ("store", "backup-type", "backup-id", "backup-time"):
                p = dict(base)
                del p[key]
                self.assertError(self.srv.post("%s/%s" % (API, kind), params=p), 400,
                                 "%s without %s" % (kind, key))
            r = self.srv.post("%s/%s" % (API, kind), params=dict(base, store="nosuch"))
            self.assertError(r, 404, "%s on an unknown store" % kind)
        self.assertEqual(before, tree(self.srv.root, skip=("run",)))

    def test_reader_names(self):
        b = self.backup()
        c = pp.Chunk(b"reader names")
        b.upload_dynamic("a.didx", [c])
        b.upload_manifest()
        b.finish()
        r = self.reader(b.backup_id)
        for name in ("../owner", "../../../.lock", "a/b.blob", "x\0.blob", "..", "",
                     "../%s/index.json.blob" % pp.snapshot_name(T0), "/etc/passwd"):
            self.assertError(r.download_raw(name), 400, "download %r" % name)
        self.assertError(r.download_raw("nosuch.blob"), 404)
        for digest in ("../../x", c.digest.upper(), c.digest[:10], ""):
            self.assertError(r.chunk_raw(digest), 400, "chunk %r" % digest)
        # Only chunks of downloaded indexes may be read.
        self.assertError(r.chunk_raw(c.digest), (401, 403), "chunk before its index")
        self.assertError(r.chunk_raw("00" * 32), (401, 403, 404))
        r.download("a.didx")
        self.assertEqual(c.data, pp.blob_decode(r.chunk(c.digest)))
        self.assertOk(r.close())


class SessionTest(HostileCase):
    def test_unknown_session(self):
        fake = "0123456789abcdef" * 2
        for kind in ("backup", "reader"):
            for method, ep in (("POST", "finish"), ("POST", "dynamic_index"),
                               ("POST", "dynamic_chunk"), ("GET", "download"),
                               ("GET", "chunk"), ("DELETE", "")):
                path = "%s/%s/%s%s" % (API, kind, fake, "/" + ep if ep else "")
                r = self.srv.request(method, path)
                self.assertIn(r.status, (404, 405), "%s %s: %r" % (method, path, r))
            for sid in (fake[:-1], fake + "0", "..", "%2e%2e", "%00", "x" * 5000):
                r = self.srv.delete("%s/%s/%s" % (API, kind, sid))
                self.assertIn(r.status, (400, 404, 414, 431), "DELETE %s %r: %r"
                              % (kind, sid[:40], r))
        # A session of the other kind is unknown here.
        b = self.backup()
        b.upload_dynamic("a.didx", [pp.Chunk(b"kinds")])
        b.upload_manifest()
        b.finish()
        r = self.reader(b.backup_id)
        self.assertError(self.srv.post("%s/backup/%s/finish" % (API, r.id)), 404)
        self.assertError(self.srv.get("%s/reader/%s/download" % (API, b.id),
                                      params={"file-name": pp.MANIFEST}), 404)
        self.assertError(self.srv.delete("%s/backup/%s" % (API, r.id)), 404)
        self.assertOk(r.close())
        self.assertTrue(self.srv.alive())

    def test_unknown_writer(self):
        b = self.backup()
        wid = b.dynamic_index("a.didx")
        fwid = b.fixed_index("b.fidx")
        c = pp.Chunk(b"writers")
        for w in (0, 999, 257, -1, "x", "", fwid):
            self.assertError(b.chunk_raw(w, c.digest, c.size, c.blob), 400, "wid %r" % w)
        self.assertError(b.chunk_raw(wid, c.digest, c.size, c.blob, fixed=True), 400,
                         "dynamic wid on fixed_chunk")
        self.assertError(b.append_raw(fwid, [], []), 400, "fixed wid on dynamic_index")
        self.assertNothingStored()
        b.upload_chunk(wid, c)
        b.append(wid, [c.digest], [0])
        b.close_index(wid, 1, c.size, pp.didx_csum([c.size], [c.digest]))
        self.assertError(b.chunk_raw(wid, c.digest, c.size, c.blob), 400, "closed writer")
        self.assertError(b.close_raw(wid, 1, c.size, pp.didx_csum([c.size], [c.digest])), 400,
                         "second close")
        self.assertOk(b.abort())

    def test_backup_time_must_be_newer(self):
        b = self.backup("newer")
        b.upload_dynamic("a.didx", [pp.Chunk(b"newer")])
        b.upload_manifest()
        b.finish()
        for t in (T0, T0 - 1, 0):
            r = self.open_raw_settled(pp.BackupSession(self.srv, STORE, "host", "newer", t))
            self.assertError(r, 400, "backup-time %d" % t, mentions="newer")
        self.assertEqual([pp.snapshot_name(T0)],
                         [n for n in os.listdir(os.path.dirname(pp.snapshot_dir(
                             self.ds, "host", "newer", T0))) if n != "owner"])

    def test_reader_of_unfinished_or_missing_snapshot(self):
        b = self.backup()
        for t in (T0, T0 + 1):
            r = pp.ReaderSession(self.srv, STORE, "host", b.backup_id, t).open_raw()
            self.assertError(r, (400, 404), "reader at %d" % t)
        self.assertOk(b.abort())

    def test_reader_of_snapshot_being_written(self):
        """Issue #12, item 3: a reader of a snapshot that a backup is still
        writing (its manifest uploaded, finish not yet called) is told that
        the snapshot is not finished, not that it is being removed."""
        b = self.backup()
        b.upload_dynamic("a.didx", [pp.Chunk(b"being written")])
        b.upload_manifest()
        r = pp.ReaderSession(self.srv, STORE, "host", b.backup_id, T0).open_raw()
        message = self.assertError(r, (400, 404, 409), "reader of a snapshot being written",
                                   mentions="not finished")
        self.assertNotIn("removed", message.lower())
        self.assertOk(b.abort())


class FixedLimitTest(HostileCase):
    """Issue #12, item 2: the image size bounds a fixed index (the size given
    at open, at most 16 TiB), and memory follows the positions appended, not
    the largest position a client names."""

    MAX_SIZE = 16 << 40
    FAR = 281474972516352  # chunk position 64 Mi - 1, the original report

    def setUp(self):
        super().setUp()
        self.b = self.backup()
        self.tail = pp.Chunk(b"fixed tail")

    def test_size_at_open_is_bounded(self):
        b = self.b
        for size in (self.MAX_SIZE + 1, 2 ** 63, 2 ** 64 - 1, 2 ** 64):
            r = b.call("POST", "fixed_index", params={"archive-name": "big.fidx",
                                                       "size": str(size)})
            self.assertError(r, 400, "size %d" % size, mentions="size")
        # The largest size is accepted.
        b.fixed_index("max.fidx", size=self.MAX_SIZE)
        self.assertOk(b.abort())

    def test_positions_beyond_the_size_are_refused(self):
        b = self.b
        fc = pp.FIXED_CHUNK_SIZE
        full = pp.Chunk(rbytes(30, fc))
        size = fc + self.tail.size
        wid = b.fixed_index("d.fidx", size=size)
        b.upload_chunk(wid, full, fixed=True)
        b.upload_chunk(wid, self.tail, fixed=True)
        for off, c, what in ((2 * fc, self.tail, "chunk after the last"),
                             (fc, full, "last chunk longer than the rest of the image"),
                             (self.FAR, self.tail, "the reported position")):
            self.assertError(b.append_raw(wid, [c.digest], [off], fixed=True), 400, what,
                             mentions="beyond")
        # Without a size, the largest image is the bound.
        nwid = b.fixed_index("n.fidx")
        for off in (self.FAR, self.MAX_SIZE):
            self.assertError(b.append_raw(nwid, [self.tail.digest], [off], fixed=True), 400,
                             "offset %d without a size" % off, mentions="beyond")
        b.append(nwid, [self.tail.digest], [self.MAX_SIZE - fc], fixed=True)
        # What was refused left nothing behind: the index closes as it should.
        b.append(wid, [full.digest, self.tail.digest], [0, fc], fixed=True)
        b.close_index(wid, 2, size, pp.fidx_csum([full.digest, self.tail.digest]),
                      fixed=True)
        self.assertOk(b.abort())

    def test_sparse_appends_in_any_order(self):
        """Positions arrive out of order and without a size at open; the
        index holds each digest at its position."""
        b = self.b
        fc = pp.FIXED_CHUNK_SIZE
        full = pp.Chunk(rbytes(31, fc))
        other = pp.Chunk(rbytes(32, fc))
        n = 200  # enough positions to grow the table a few times
        wid = b.fixed_index("s.fidx")
        for c in (full, other, self.tail):
            b.upload_chunk(wid, c, fixed=True)
        digests = [(other if i % 7 == 0 else full).digest for i in range(n)]
        digests.append(self.tail.digest)
        order = list(range(n + 1))
        random.Random(5).shuffle(order)
        # One position first written wrong, then overwritten.
        b.append(wid, [self.tail.digest], [order[0] * fc], fixed=True)
        for k in range(0, len(order), 16):
            part = order[k:k + 16]
            b.append(wid, [digests[i] for i in part], [i * fc for i in part], fixed=True)
        size = n * fc + self.tail.size
        b.close_index(wid, n + 1, size, pp.fidx_csum(digests), fixed=True)
        d = pp.snapshot_dir(self.ds, "host", b.backup_id, b.backup_time)
        with open(os.path.join(d, "s.fidx"), "rb") as f:
            idx = pp.Index.parse(f.read())
        self.assertEqual(digests, idx.digests)
        self.assertEqual(size, idx.size)
        self.assertOk(b.abort())

    def test_far_positions_do_not_reserve_memory(self):
        """The amplification of the report: a few tiny appends at far
        positions in many writers. Before, each writer allocated an array up
        to the largest position (4 MiB of RSS per writer at 16 TiB, 64 MiB at
        the reported position); now each costs a few KiB."""
        b = self.b
        writers = [b.fixed_index("w%d.fidx" % i) for i in range(48)]
        b.upload_chunk(writers[0], self.tail, fixed=True)
        last = self.MAX_SIZE // pp.FIXED_CHUNK_SIZE - 1
        before = self.srv.rss_kib()
        for wid in writers:
            for pos in (last, last - 1, last // 2, last // 3):
                b.append(wid, [self.tail.digest], [pos * pp.FIXED_CHUNK_SIZE], fixed=True)
        after = self.srv.rss_kib()
        self.assertLess(after - before, 32 * 1024, "VmRSS grew from %d to %d KiB"
                        % (before, after))
        self.assertOk(b.abort())


class IndexTest(HostileCase):
    def setUp(self):
        super().setUp()
        self.b = self.backup()
        self.c = [pp.Chunk(rbytes(10 + i, 1000 + i)) for i in range(3)]
        self.wid = self.b.dynamic_index("a.didx")
        for c in self.c:
            self.b.upload_chunk(self.wid, c)
        self.digests = {c.digest for c in self.c}

    def offsets(self, chunks):
        return [sum(c.size for c in chunks[:i]) for i in range(len(chunks))]

    def close_ok(self, chunks):
        ends = [o + c.size for o, c in zip(self.offsets(chunks), chunks)]
        csum = pp.didx_csum(ends, [c.digest for c in chunks])
        self.b.close_index(self.wid, len(chunks), sum(c.size for c in chunks), csum)

    def test_non_contiguous_offsets(self):
        b, wid, (c0, c1, c2) = self.b, self.wid, self.c
        self.assertError(b.append_raw(wid, [c0.digest], [1]), 400, "first offset not 0")
        b.append(wid, [c0.digest], [0])
        for off in (c0.size + 1, c0.size - 1, 0, -1, 2 ** 64):
            self.assertError(b.append_raw(wid, [c1.digest], [off]), 400, "offset %d" % off)
        for bad in ({"wid": wid, "digest-list": [c1.digest], "offset-list": []},
                    {"wid": wid, "digest-list": c1.digest, "offset-list": [c0.size]},
                    {"wid": wid, "digest-list": [c1.digest], "offset-list": ["%d" % c0.size]},
                    {"wid": wid, "digest-list": [None], "offset-list": [c0.size]},
                    {"wid": wid, "offset-list": [c0.size]}, {"wid": wid}, [], None):
            self.assertError(b.call("PUT", "dynamic_index", json=bad), 400, repr(bad))
        self.assertError(b.call("PUT", "dynamic_index", body=b"{not json",
                                headers={"Content-Type": "application/json"}), 400)
        # Nothing of that was appended: the index still holds c0 alone.
        b.append(wid, [c1.digest, c2.digest], [c0.size, c0.size + c1.size])
        self.close_ok(self.c)
        self.assertEqual({"a.didx"}, self.snapfiles(b))
        self.assertNothingStored(extra=self.digests)
        self.assertOk(b.abort())

    def test_fixed_offsets(self):
        b = self.b
        blocks = [pp.Chunk(rbytes(20, pp.FIXED_CHUNK_SIZE)), pp.Chunk(b"tail")]
        fwid = b.fixed_index("d.fidx", size=pp.FIXED_CHUNK_SIZE + 4)
        for c in blocks:
            b.upload_chunk(fwid, c, fixed=True)
        for off in (1, pp.FIXED_CHUNK_SIZE - 1, -4096):
            self.assertError(b.append_raw(fwid, [blocks[1].digest], [off], fixed=True), 400,
                             "fixed offset %d" % off)
        # A short chunk is only allowed last; a gap is refused at close.
        b.append(fwid, [blocks[1].digest], [pp.FIXED_CHUNK_SIZE], fixed=True)
        csum = pp.fidx_csum([c.digest for c in blocks])
        self.assertError(b.close_raw(fwid, 2, pp.FIXED_CHUNK_SIZE + 4, csum, fixed=True), 400,
                         "position 0 missing")
        b.append(fwid, [blocks[0].digest], [0], fixed=True)
        self.assertError(b.close_raw(fwid, 2, pp.FIXED_CHUNK_SIZE + 5, csum, fixed=True), 400,
                         "size differs from the size given at open")
        b.close_index(fwid, 2, pp.FIXED_CHUNK_SIZE + 4, csum, fixed=True)
        self.assertEqual({"d.fidx"}, self.snapfiles(b))
        self.assertOk(b.abort())

    def test_close_with_wrong_checksum(self):
        b, wid, chunks = self.b, self.wid, self.c
        b.append(wid, [c.digest for c in chunks], self.offsets(chunks))
        size = sum(c.size for c in chunks)
        ends = [o + c.size for o, c in zip(self.offsets(chunks), chunks)]
        good = pp.didx_csum(ends, [c.digest for c in chunks])
        wrong = pp.didx_csum(ends[:2], [c.digest for c in chunks[:2]])
        for what, args in (("checksum", (3, size, wrong)), ("count", (2, size, good)),
                           ("size", (3, size + 1, good)), ("csum not hex", (3, size, "x" * 64)),
                           ("fidx-style csum", (3, size, pp.fidx_csum(c.digest for c in chunks))),
                           ("empty csum", (3, size, ""))):
            self.assertError(b.close_raw(wid, *args), 400, what)
            self.assertEqual(set(), self.snapfiles(b), "index written after a bad close")
        self.assertNothingStored(extra=self.digests)
        self.assertOk(b.abort())

    def test_close_retry_after_wrong_checksum(self):
        """A refused close leaves the writer open, so the client may retry with
        the right values."""
        b, wid, chunks = self.b, self.wid, self.c
        b.append(wid, [c.digest for c in chunks], self.offsets(chunks))
        ends = [o + c.size for o, c in zip(self.offsets(chunks), chunks)]
        good = pp.didx_csum(ends, [c.digest for c in chunks])
        self.assertError(b.close_raw(wid, 3, ends[-1], "00" * 32), 400)
        try:
            b.close_index(wid, 3, ends[-1], good)
            self.assertEqual({"a.didx"}, self.snapfiles(b))
        finally:
            self.assertOk(b.abort())

    def test_append_unknown_digest(self):
        b, wid = self.b, self.wid
        never = pp.Chunk(b"never uploaded")
        self.assertError(b.append_raw(wid, [never.digest], [0]), 400, mentions="unknown")
        # On disk from another session, but not known to this one.
        other = self.backup()
        owid = other.dynamic_index("o.didx")
        elsewhere = pp.Chunk(b"uploaded elsewhere")
        other.upload_chunk(owid, elsewhere)
        self.assertIn(elsewhere.digest, pp.chunk_digests(self.ds))
        self.assertError(b.append_raw(wid, [elsewhere.digest], [0]), 400, mentions="unknown")
        self.assertError(b.append_raw(wid, ["00" * 32], [0]), 400)
        self.assertOk(other.abort())
        self.close_ok([])  # nothing was appended
        self.assertNothingStored(extra=self.digests | {elsewhere.digest})
        self.assertOk(b.abort())


class FinishTest(HostileCase):
    def test_finish_rules(self):
        b = self.backup()
        c = pp.Chunk(b"finish rules")
        wid = b.dynamic_index("a.didx")
        b.upload_chunk(wid, c)
        self.assertError(b.call("POST", "finish"), 400, "open writer", mentions="open")
        b.append(wid, [c.digest], [0])
        b.close_index(wid, 1, c.size, pp.didx_csum([c.size], [c.digest]))
        entry = {"filename": "a.didx", "crypt-mode": "none", "size": c.size,
                 "csum": pp.didx_csum([c.size], [c.digest])}
        self.assertError(b.call("POST", "finish"), 400, "no manifest", mentions="manifest")
        # A corrupt manifest blob is refused at upload.
        good = pp.manifest_blob(pp.manifest("host", b.backup_id, T0, [entry]))
        bad = good[:8] + b"\0\0\0\0" + good[12:]
        self.assertError(b.blob_raw(pp.MANIFEST, bad), 400, "manifest CRC")
        self.assertError(b.call("POST", "blob", params={"file-name": pp.MANIFEST,
                                                        "encoded-size": len(good) + 1},
                                body=good), 400, "encoded-size")
        # Manifests that do not describe this snapshot are refused at finish,
        # and leave no manifest behind (the snapshot stays unfinished).
        for what, doc in (
                ("other snapshot", pp.manifest("host", b.backup_id, T0 + 1, [entry])),
                ("other id", pp.manifest("host", "someone", T0, [entry])),
                ("file not uploaded", pp.manifest("host", b.backup_id, T0,
                                                  [entry, dict(entry, filename="b.didx")]))):
            self.assertOk(b.blob_raw(pp.MANIFEST, pp.manifest_blob(doc)), what)
            self.assertError(b.call("POST", "finish"), 400, what)
            self.assertNotIn(pp.MANIFEST, self.snapfiles(b), what)
        self.assertOk(b.blob_raw(pp.MANIFEST, good))
        b.finish()
        self.assertEqual({"a.didx", pp.MANIFEST}, self.snapfiles(b))
        self.assertNothingStored(extra={c.digest})


class ManifestLeakTest(HostileCase):
    def test_unparsable_manifest_leaks_nothing(self):
        """A manifest that does not parse is refused and nothing leaks, even
        though the decoder allocates parts before it fails (the leak check
        needs the sanitizer build, which is what `make test` runs)."""
        b = self.backup()
        b.upload_dynamic("a.didx", [pp.Chunk(b"leak")])
        self.assertOk(b.blob_raw(pp.MANIFEST, pp.blob_encode(b"{ not json")))
        self.assertError(b.call("POST", "finish"), 400)
        self.assertNotIn(pp.MANIFEST, self.snapfiles(b))
        self.assertOk(b.abort())
        b.close_connection()
        self.srv.stop()
        self.assertEqual("", self.srv.sanitizer_reports())

    @classmethod
    def finish_server(cls, srv):
        srv.close()  # the report is the test's own business


if __name__ == "__main__":
    unittest.main(verbosity=2)
