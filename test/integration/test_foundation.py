#!/usr/bin/python3
"""Integration tests for issue #2 (foundation): cairnd's TLS, authentication,
datastore configuration and its generation fast path, maintenance modes, the
status API, signals, and hostile input. Each test class starts its own cairnd
through cairn_harness on a free loopback port with temporary dirs.

Runs standalone (`python3 test_foundation.py`, CAIRN_BIN_DIR=build/bin) and
from ctest; exits non-zero on failure.
"""

import os
import random
import re
import resource
import selectors
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as ch  # noqa: E402

API = "/api2/json"
FPR_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){31}$")


def make_chunk_store_dir(path):
    """What an existing PBS datastore directory minimally looks like."""
    os.makedirs(os.path.join(path, ".chunks"), exist_ok=True)
    open(os.path.join(path, ".lock"), "a").close()


def setUpModule():
    ch.require_programs("cairnd", "cairn-admin")


class CairnCase(unittest.TestCase):
    """Shared assertions. Subclasses start a server in setUpClass (cls.srv)."""

    srv = None

    @classmethod
    def start(cls, **kw):
        """A server for the whole class."""
        srv = ch.Cairn(**kw)
        cls.addClassCleanup(cls._finish, srv)
        return srv

    def server(self, **kw):
        """A server for one test; also made the test's `self.srv`."""
        srv = ch.Cairn(**kw)
        self.addCleanup(self._finish, srv)
        self.srv = srv
        return srv

    _finish = staticmethod(ch.finish_server)

    def log_tail(self, srv=None):
        srv = srv or self.srv
        if srv is None:
            return ""
        return "\n--- cairnd log (tail) ---\n" + "\n".join(srv.log_lines[-40:])

    def assertOk(self, resp, msg=""):
        self.assertEqual(200, resp.status, "%s %r%s" % (msg, resp, self.log_tail()))
        self.assertIsInstance(resp.data, dict, "%s: not a JSON object: %r" % (msg, resp))
        self.assertIn("data", resp.data, "%s: no data envelope: %r" % (msg, resp))
        return resp.data["data"]

    def assertError(self, resp, statuses, msg="", mentions=None):
        """A JSON error envelope {"data": null, "message": "..."} with a status in
        `statuses`; `mentions` (regex) must match the (lowercased) message when
        given."""
        if isinstance(statuses, int):
            statuses = (statuses,)
        self.assertIn(resp.status, statuses, "%s %r%s" % (msg, resp, self.log_tail()))
        ctype = resp.headers.get("Content-Type", "") or ""
        self.assertIn("application/json", ctype, "%s: error content type %r" % (msg, ctype))
        self.assertIsInstance(resp.data, dict, "%s: error body not JSON: %r" % (msg, resp))
        self.assertIn("data", resp.data, "%s: %r" % (msg, resp))
        self.assertIsNone(resp.data["data"], "%s: %r" % (msg, resp))
        message = resp.data.get("message")
        self.assertIsInstance(message, str, "%s: no message: %r" % (msg, resp))
        self.assertTrue(message.strip(), "%s: empty message: %r" % (msg, resp))
        if mentions:
            self.assertRegex(message.lower(), mentions, "%s: %r" % (msg, resp))
        return message

    def assertStaleDigest(self, resp, msg):
        """409, or 400 whose message says it is about the digest."""
        self.assertError(resp, (400, 409), msg,
                         mentions="digest" if resp.status == 400 else None)

    def assertServing(self, srv=None, msg=""):
        srv = srv or self.srv
        self.assertTrue(srv.alive(), "cairnd died %s%s" % (msg, self.log_tail(srv)))
        r = srv.get(API + "/version", token=False)
        self.assertEqual(200, r.status, "cairnd not serving %s: %r%s"
                         % (msg, r, self.log_tail(srv)))

    def poll(self, fn, timeout=5.0, interval=0.1):
        """Calls fn until it returns a true value or the timeout passes; returns
        the last value."""
        deadline = time.monotonic() + timeout
        while True:
            v = fn()
            if v or time.monotonic() >= deadline:
                return v
            time.sleep(interval)

    def create_store(self, name, srv=None, **extra):
        srv = srv or self.srv
        path = srv.datastore_path(name)
        params = {"name": name, "path": path}
        params.update(extra)
        r = srv.post(API + "/config/datastore", params=params)
        self.assertEqual(200, r.status, "create %s: %r%s" % (name, r, self.log_tail(srv)))
        return path

    def digest_of(self, resp):
        """PBS puts the digest beside `data`; accept it inside `data` too."""
        d = resp.data.get("digest")
        if d is None and isinstance(resp.data.get("data"), dict):
            d = resp.data["data"].get("digest")
        self.assertIsInstance(d, str, "no digest in %r" % resp)
        self.assertTrue(d)
        return d

    def raw(self, data, timeout=5.0, srv=None):
        """Sends raw bytes on a fresh connection; returns exchange_one's tuple."""
        srv = srv or self.srv
        s = srv.raw_socket(timeout)
        try:
            return ch.exchange_one(s, data, timeout)
        finally:
            s.close()

    def raw_response(self, data, timeout=5.0, srv=None):
        """Like raw() but returns a harness Response (status 0 if none came)."""
        status, hdrs, body, _, _ = self.raw(data, timeout, srv)
        return ch.Response.from_raw(status or 0, hdrs, body)


# ---------------------------------------------------------------------------


class TlsTest(CairnCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start(tls=True)

    def test_fingerprint_logged_matches_served_certificate(self):
        self.assertEqual("log", self.srv.fingerprint_source)
        self.assertRegex(self.srv.fingerprint, FPR_RE)
        with socket.create_connection((self.srv.host, self.srv.port), timeout=5) as s:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            with ctx.wrap_socket(s) as t:
                der = t.getpeercert(binary_form=True)
        self.assertEqual(self.srv.fingerprint, ch.cert_fingerprint(der))
        with open(os.path.join(self.srv.config_dir, "proxy.pem")) as f:
            pem = f.read()
        self.assertEqual(der, ssl.PEM_cert_to_DER_cert(pem),
                         "served certificate differs from proxy.pem")

    def test_pinned_request_and_keepalive(self):
        conn = self.srv.connection()
        try:
            for _ in range(3):
                data = self.assertOk(self.srv.get(API + "/version", token=False, conn=conn))
                self.assertIn("version", data)
            self.assertOk(self.srv.get(API + "/admin/datastore", conn=conn))
        finally:
            conn.close()

    def test_wrong_pin_is_refused_by_the_harness(self):
        wrong = ":".join(["00"] * 32)
        conn = self.srv.connection(fingerprint=wrong)
        try:
            with self.assertRaises(ch.FingerprintMismatch):
                conn.request("GET", API + "/version")
        finally:
            conn.close()

    def test_modern_aead_cipher(self):
        with self.srv.raw_socket(tls=True) as t:
            name, proto, _ = t.cipher()
        self.assertIn(proto, ("TLSv1.2", "TLSv1.3"))
        if proto == "TLSv1.2":
            self.assertIn("ECDHE", name, "non-ECDHE suite %s" % name)
        self.assertRegex(name, "GCM|CHACHA20|CCM", "non-AEAD suite %s" % name)

    def test_cbc_only_client_is_refused(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:"
                        "ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES256-SHA384:AES128-SHA")
        with socket.create_connection((self.srv.host, self.srv.port), timeout=5) as s:
            with self.assertRaises((ssl.SSLError, ConnectionResetError, OSError)):
                with ctx.wrap_socket(s) as t:
                    t.cipher()
        self.assertServing()

    def test_key_and_token_files(self):
        cfg = self.srv.config_dir
        for name in ("proxy.key", "root.token"):
            mode = stat.S_IMODE(os.stat(os.path.join(cfg, name)).st_mode)
            self.assertEqual(0o600, mode, "%s has mode %o" % (name, mode))
        self.assertRegex(self.srv.token, r"^root@pam![A-Za-z0-9._-]+:\S+$")
        secret = self.srv.token.split(":", 1)[1]
        shadow = os.path.join(cfg, "token.shadow")
        self.assertTrue(os.path.exists(shadow), "no token.shadow")
        with open(shadow, "rb") as f:
            self.assertNotIn(secret.encode(), f.read(), "token secret stored in clear")

    def test_garbage_instead_of_tls_is_closed(self):
        rnd = random.Random(2)
        # The first byte is no TLS content type, so no record length is awaited.
        for payload in (b"\xff" + bytes(rnd.getrandbits(8) for _ in range(4095)),
                        b"GET /api2/json/version HTTP/1.1\r\nHost: x\r\n\r\n",
                        b"\x16\x03\x01\x00\x05hello" + b"\x00" * 64):
            data, closed = self.srv.raw_exchange(payload, timeout=5, tls=False)
            self.assertTrue(closed, "TLS port kept a garbage connection open: %r" % data[:80])
            self.assertServing(msg="after TLS garbage")

    def test_garbage_after_handshake_is_closed(self):
        with socket.create_connection((self.srv.host, self.srv.port), timeout=5) as s:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            t = ctx.wrap_socket(s)
            # A forged record (application data with a bad MAC) written under
            # the TLS layer, on a duplicate of the raw descriptor.
            s2 = socket.socket(fileno=os.dup(t.fileno()))
            try:
                s2.sendall(b"\x17\x03\x03\x00\x40" + os.urandom(64))
                data, closed = ch.read_until_close(s2, 5)
            finally:
                s2.close()
                t.close()
        self.assertTrue(closed, "connection with a forged record stayed open")
        self.assertServing(msg="after a forged TLS record")


# ---------------------------------------------------------------------------


class AuthTest(CairnCase):
    PROTECTED = [
        ("GET", API + "/config/datastore"),
        ("POST", API + "/config/datastore"),
        ("GET", API + "/config/datastore/store1"),
        ("GET", API + "/admin/datastore"),
        ("GET", API + "/admin/datastore/store1/status"),
    ]

    @classmethod
    def setUpClass(cls):
        # These tests send many wrong credentials on purpose: without the
        # lockout (test_access.py covers it) each one must be a plain 401.
        cls.srv = cls.start(tls=False, args=("--auth-fail-limit", "0"))

    def test_version_and_ping_need_no_token(self):
        data = self.assertOk(self.srv.get(API + "/version", token=False))
        self.assertIsInstance(data, dict)
        self.assertIn("version", data)
        r = self.srv.get(API + "/ping", token=False)
        self.assertEqual(200, r.status, repr(r))

    def test_no_token_401(self):
        for method, path in self.PROTECTED:
            r = self.srv.request(method, path, token=False)
            self.assertError(r, 401, "%s %s without token" % (method, path))

    def test_wrong_secret_401(self):
        authid, secret = self.srv.token.split(":", 1)
        flipped = ("b" if secret[0] != "b" else "c") + secret[1:]
        for token in (authid + ":" + flipped,           # same length, one char off
                      authid + ":" + secret[:-1],       # a prefix
                      authid + ":" + secret + "x",      # an extension
                      "root@pam!other:" + secret,       # another token name
                      "nobody@pam!root:" + secret):     # another user
            for method, path in self.PROTECTED:
                r = self.srv.request(method, path, token=token)
                self.assertError(r, 401, "%s %s with token %r" % (method, path, token))

    def test_malformed_header_401(self):
        # ("PBSAPIToken <id>:<secret>" with a space is accepted: PBS takes both.)
        _, secret = self.srv.token.split(":", 1)
        bad = ["", "PBSAPIToken", "PBSAPIToken=", "PBSAPIToken=:", "PBSAPIToken=root@pam",
               "PBSAPIToken=root@pam!root", "PBSAPITokenroot@pam!root:" + secret,
               "Bearer " + secret, "Basic cm9vdDpzZWNyZXQ=",
               "PBSAPIToken=root@pam!root:" + secret + "\x01",
               "PBSAPIToken=" + "x" * 4000]
        for value in bad:
            r = self.srv.get(API + "/admin/datastore", token=False,
                             headers={"Authorization": value})
            self.assertError(r, (400, 401), "Authorization %r" % value[:40])
        self.assertServing()

    def test_valid_token_works(self):
        data = self.assertOk(self.srv.get(API + "/admin/datastore"))
        self.assertIsInstance(data, list)


# ---------------------------------------------------------------------------


class ConfigTest(CairnCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start(tls=False)

    def status(self, name):
        return self.srv.get(API + "/admin/datastore/%s/status" % name)

    def config_names(self):
        data = self.assertOk(self.srv.get(API + "/config/datastore"))
        self.assertIsInstance(data, list)
        return [d.get("name") for d in data]

    def test_crud_with_digest(self):
        path = self.create_store("crud1", comment="first")
        self.assertTrue(os.path.isdir(os.path.join(path, ".chunks")), "no .chunks dir")
        self.assertTrue(os.path.exists(os.path.join(path, ".lock")), "no .lock file")
        # The same name again is refused.
        r = self.srv.post(API + "/config/datastore",
                          params={"name": "crud1", "path": path + "-2"})
        self.assertError(r, (400, 409), "duplicate create")

        self.assertIn("crud1", self.config_names())
        r = self.srv.get(API + "/config/datastore/crud1")
        data = self.assertOk(r)
        self.assertEqual(path, data.get("path"))
        self.assertEqual("first", data.get("comment"))
        d1 = self.digest_of(r)

        r = self.srv.put(API + "/config/datastore/crud1",
                         params={"comment": "second", "digest": d1})
        self.assertEqual(200, r.status, repr(r))
        r = self.srv.get(API + "/config/datastore/crud1")
        self.assertEqual("second", self.assertOk(r).get("comment"))
        d2 = self.digest_of(r)
        self.assertNotEqual(d1, d2, "digest did not change with the config")

        r = self.srv.put(API + "/config/datastore/crud1",
                         params={"comment": "third", "digest": d1})
        self.assertStaleDigest(r, "PUT with a stale digest")
        r = self.srv.get(API + "/config/datastore/crud1")
        self.assertEqual("second", self.assertOk(r).get("comment"), "stale PUT applied")

        # JSON bodies are accepted as well as forms.
        r = self.srv.put(API + "/config/datastore/crud1",
                         json={"comment": "fourth", "digest": d2})
        self.assertEqual(200, r.status, repr(r))
        d3 = self.digest_of(self.srv.get(API + "/config/datastore/crud1"))

        r = self.srv.delete(API + "/config/datastore/crud1", params={"digest": d2})
        self.assertStaleDigest(r, "DELETE with a stale digest")
        r = self.srv.delete(API + "/config/datastore/crud1", params={"digest": d3})
        self.assertEqual(200, r.status, repr(r))
        self.assertError(self.srv.get(API + "/config/datastore/crud1"), 404,
                         "GET after delete")
        self.assertNotIn("crud1", self.config_names())
        self.assertError(self.status("crud1"), 404, "status after delete")

    def test_create_with_json_body_and_status(self):
        path = self.srv.datastore_path("json1")
        r = self.srv.post(API + "/config/datastore", json={"name": "json1", "path": path})
        self.assertEqual(200, r.status, repr(r))
        data = self.assertOk(self.status("json1"))
        for k in ("total", "used", "avail"):
            self.assertIsInstance(data.get(k), int, "status %s: %r" % (k, data))
            self.assertGreaterEqual(data[k], 0)
        self.assertGreater(data["total"], 0)
        self.assertLessEqual(data["used"], data["total"])
        self.assertLessEqual(data["avail"], data["total"])
        stores = self.assertOk(self.srv.get(API + "/admin/datastore"))
        self.assertIn("json1", [s.get("store", s.get("name")) for s in stores])

    def test_unknown_store_404(self):
        self.assertError(self.status("nosuchstore"), 404, "status of unknown store")
        self.assertError(self.srv.get(API + "/config/datastore/nosuchstore"), 404,
                         "config of unknown store")

    def test_admin_create_seen_by_next_request(self):
        path = self.srv.datastore_path("adm1")
        self.srv.admin("datastore", "create", "adm1", path, check=True)
        # The very next request: no polling.
        self.assertOk(self.status("adm1"), "status right after cairn-admin create")
        self.assertOk(self.srv.get(API + "/config/datastore/adm1"))
        self.assertTrue(os.path.isdir(os.path.join(path, ".chunks")))
        out = self.srv.admin("datastore", "list", check=True).stdout
        self.assertIn("adm1", out)
        self.srv.admin("datastore", "update", "adm1", "--comment", "via admin", check=True)
        data = self.assertOk(self.srv.get(API + "/config/datastore/adm1"))
        self.assertEqual("via admin", data.get("comment"))
        self.srv.admin("datastore", "remove", "adm1", check=True)
        self.assertError(self.status("adm1"), 404, "status right after cairn-admin remove")

    def test_admin_refuses_invalid_name(self):
        p = self.srv.admin("datastore", "create", "../evil", self.srv.datastore_path("evil"))
        self.assertNotEqual(0, p.returncode, "cairn-admin accepted '../evil'")

    def _wait_status_ok(self, name):
        r = self.poll(lambda: self.status(name).status == 200, timeout=5.0)
        self.assertTrue(r, "manual edit adding %s not seen within 5 s: %r%s"
                        % (name, self.status(name), self.log_tail()))

    def test_manual_edit_append_seen(self):
        self.create_store("base1")  # the file exists and the server has parsed it
        path = self.srv.datastore_path("manual1")
        make_chunk_store_dir(path)
        self.assertError(self.status("manual1"), 404)
        cfg = os.path.join(self.srv.config_dir, "datastore.cfg")
        with open(cfg, "a") as f:  # in place, as `cat >>` or many editors do
            f.write("\ndatastore: manual1\n\tpath %s\n\tcomment added by hand\n" % path)
        self._wait_status_ok("manual1")
        data = self.assertOk(self.srv.get(API + "/config/datastore/manual1"))
        self.assertEqual("added by hand", data.get("comment"))

    def test_manual_edit_rename_seen(self):
        self.create_store("base2")
        path = self.srv.datastore_path("manual2")
        make_chunk_store_dir(path)
        cfg = os.path.join(self.srv.config_dir, "datastore.cfg")
        with open(cfg) as f:
            text = f.read()
        tmp = cfg + ".edit~"
        with open(tmp, "w") as f:  # write-new-then-rename, as vim and tools do
            f.write(text.rstrip("\n") + "\n\ndatastore: manual2\n\tpath %s\n" % path)
        os.replace(tmp, cfg)
        self._wait_status_ok("manual2")

    def test_maintenance_modes(self):
        self.create_store("maint1")
        self.assertOk(self.status("maint1"))
        self.srv.admin("datastore", "update", "maint1", "--maintenance-mode",
                       "type=read-only", check=True)
        self.assertOk(self.status("maint1"), "status (a read) in read-only mode")
        self.srv.admin("datastore", "update", "maint1", "--maintenance-mode",
                       "type=offline", check=True)
        r = self.status("maint1")
        self.assertError(r, (400, 403, 409, 423, 503), "status while offline",
                         mentions="offline|maintenance|unavailable")
        # Back through the API: the change is seen by the next request too.
        d = self.digest_of(self.srv.get(API + "/config/datastore/maint1"))
        r = self.srv.put(API + "/config/datastore/maint1",
                         params={"maintenance-mode": "type=read-only", "digest": d})
        self.assertEqual(200, r.status, repr(r))
        self.assertOk(self.status("maint1"), "status after leaving offline")

    def test_invalid_names_400(self):
        bad = ["..", "a/b", "a\x00b", "a" * 33, ".hidden", "x", "a b", "ab\n"]
        for name in bad:
            r = self.srv.post(API + "/config/datastore",
                              params={"name": name, "path": self.srv.datastore_path("bad")})
            self.assertError(r, 400, "create with name %r" % name)
            r = self.srv.post(API + "/config/datastore",
                              json={"name": name, "path": self.srv.datastore_path("bad")})
            self.assertError(r, 400, "create (JSON) with name %r" % name)
        self.assertFalse(os.path.exists(self.srv.datastore_path("bad")))
        # In the path: one percent-encoded segment, decoded, then validated: an
        # invalid name is a bad request, not merely an unknown store.
        for seg in ("%2E%2E", "a%2Fb", "a%00b", "a" * 33, "a%20b"):
            for path in (API + "/config/datastore/" + seg,
                         API + "/admin/datastore/%s/status" % seg):
                self.assertError(self.srv.get(path), 400, "GET %s" % path)
        # A literal `..` segment must never escape: not found or refused.
        r = self.srv.get(API + "/admin/datastore/../status")
        self.assertIn(r.status, (400, 404), repr(r))
        # PBS's limit is 32 characters: that still works.
        self.create_store("b" * 32)
        self.assertServing()

    def test_invalid_path_refused(self):
        for path in ("relative/dir", "", "/tmp/\x00x"):
            r = self.srv.post(API + "/config/datastore", params={"name": "badpath", "path": path})
            self.assertError(r, 400, "create with path %r" % path)


# ---------------------------------------------------------------------------


class HostileInputTest(CairnCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start(tls=False, args=["--header-timeout-ms", "1000"])

    def test_malformed_request_line_400(self):
        for line, ok in (
                (b"THIS IS NOT HTTP\r\n\r\n", (400,)),
                (b"GET /api2/json/version HTTP/9.9\r\n\r\n", (400, 505)),
                (b"GET\r\n\r\n", (400,)),
                (b"\x00\x01\x02\xff\r\n\r\n", (400,)),
                (b"GET /api2/json/version HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
                 (400,)),
                (b"GET /api2/json/version HTTP/1.1\r\nBad Header\r\n\r\n", (400,)),
                (b"GET /api2/json/version HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", (400,))):
            status, _, _, _, data = self.raw(line)
            self.assertIn(status, ok, "%r answered %r%s" % (line, data[:200], self.log_tail()))
            self.assertServing(msg="after %r" % line)

    def test_pipelined_requests_answered_in_order(self):
        req = b"GET %s/version HTTP/1.1\r\nHost: x\r\n\r\n" % API.encode()
        bad = b"GET %s/admin/datastore HTTP/1.1\r\nHost: x\r\n\r\n" % API.encode()
        s = self.srv.raw_socket()
        try:
            s.sendall(req + bad + req)
            buf = b""
            got = []
            deadline = time.monotonic() + 5
            while len(got) < 3 and time.monotonic() < deadline:
                one = ch.split_response(buf)
                if one is not None:
                    got.append(one[0])
                    buf = one[3]
                    continue
                b = s.recv(65536)
                if not b:
                    break
                buf += b
        finally:
            s.close()
        self.assertEqual([200, 401, 200], got)

    def test_oversized_headers(self):
        big = (b"GET %s/version HTTP/1.1\r\nHost: x\r\nX-Big: " % API.encode()
               + b"a" * 20000 + b"\r\n\r\n")
        many = (b"GET %s/version HTTP/1.1\r\nHost: x\r\n" % API.encode()
                + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 40) for i in range(600)) + b"\r\n")
        longline = b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        for data in (big, many, longline):
            status, _, _, _, got = self.raw(data)
            self.assertIn(status, (400, 414, 431), "oversized headers answered %r%s"
                          % (got[:200], self.log_tail()))
            self.assertServing(msg="after oversized headers")

    def _post_raw(self, headers, body):
        head = ("POST %s/config/datastore HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
                % (API, self.srv.auth_header())).encode()
        return self.raw_response(head + headers + b"\r\n" + body)

    def test_oversized_json_body_413(self):
        # Raw sockets: the server may answer and close before the body is read.
        body = ('{"name":"big1","path":"%s","comment":"%s"}'
                % (self.srv.datastore_path("big1"), "c" * 70000)).encode()
        r = self._post_raw(b"Content-Type: application/json\r\nContent-Length: %d\r\n"
                           % len(body), body)
        self.assertError(r, 413, "70 KB JSON body")
        # Chunked: no length announced, refused when the limit is crossed.
        chunks = b"".join(b"%x\r\n%s\r\n" % (4096, b"c" * 4096) for _ in range(20)) + b"0\r\n\r\n"
        r = self._post_raw(b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
                           chunks)
        self.assertError(r, 413, "chunked 80 KB body")
        # Expect: 100-continue with a large length is refused before the body is sent.
        s = self.srv.raw_socket()
        try:
            head = ("POST %s/config/datastore HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
                    "Content-Type: application/json\r\nContent-Length: 1000000\r\n"
                    "Expect: 100-continue\r\n\r\n" % (API, self.srv.auth_header())).encode()
            status, _, _, _, got = ch.exchange_one(s, head, 5)
        finally:
            s.close()
        self.assertEqual(413, status, "Expect: 100-continue with 1 MB answered %r" % got[:200])
        self.assertFalse(os.path.exists(self.srv.datastore_path("big1")))
        self.assertServing()

    def test_invalid_json_400(self):
        for body in (b'{"name": "j1",', b"[1,2,3]", b"not json", b'{"name": "\xff\xfe"}',
                     b"{" * 5000 + b"}" * 5000, b'{"name": 5, "path": {}}'):
            r = self.srv.post(API + "/config/datastore", body=body,
                              headers={"Content-Type": "application/json"})
            self.assertError(r, 400, "JSON body %r" % body[:30])
        self.assertServing()

    def test_slowloris_disconnected_by_header_timeout(self):
        s = self.srv.raw_socket(timeout=10)
        start = time.monotonic()
        closed_after = None
        try:
            s.sendall(b"GET %s/version HTTP/1.1\r\nHost: x\r\n" % API.encode())
            header = b"X-Slow: " + b"a" * 100
            sel = selectors.DefaultSelector()
            sel.register(s, selectors.EVENT_READ)
            for i in range(len(header)):
                # Meanwhile others are served.
                if i == 0:
                    self.assertServing(msg="during slowloris")
                if sel.select(timeout=1.0):
                    _, closed = ch.read_until_close(s, 2)
                    if closed:
                        closed_after = time.monotonic() - start
                        break
                try:
                    s.sendall(header[i:i + 1])
                except (BrokenPipeError, ConnectionResetError):
                    closed_after = time.monotonic() - start
                    break
                if time.monotonic() - start > 8:
                    break
            sel.close()
        finally:
            s.close()
        self.assertIsNotNone(closed_after, "slowloris connection still open after 8 s")
        self.assertLess(closed_after, 5.0, "header timeout of 1 s took %.1f s" % closed_after)
        self.assertServing(msg="after slowloris")


# ---------------------------------------------------------------------------


def open_many(addr, n, timeout):
    """Opens n non-blocking connections at once; returns (sockets, connected count)."""
    socks = []
    sel = selectors.DefaultSelector()
    pending = 0
    ok = 0
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            socks.append(s)
            err = s.connect_ex(addr)
            if err == 0:
                ok += 1
            elif err in (115, 11):  # EINPROGRESS, EAGAIN
                sel.register(s, selectors.EVENT_WRITE)
                pending += 1
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.5):
                s = key.fileobj
                sel.unregister(s)
                pending -= 1
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    ok += 1
    finally:
        sel.close()
    return socks, ok


class ManyConnectionsTest(CairnCase):
    N = 10000

    @classmethod
    def setUpClass(cls):
        limit = ch.raise_nofile(cls.N + 2000)
        # As root (tests and CI run as root) the hard limit can always be raised.
        assert limit >= cls.N + 200, "RLIMIT_NOFILE hard limit %d is below %d" % (
            limit, cls.N + 200)
        # The limit is explicit so that every one of the 10,000 must be served.
        cls.srv = cls.start(tls=False, args=["--max-connections", "16384"])

    def test_10000_connections_at_once(self):
        socks, ok = open_many((self.srv.host, self.srv.port), self.N, timeout=30)
        try:
            self.assertTrue(self.srv.alive(), "cairnd died with %d connections%s"
                            % (ok, self.log_tail()))
            r = self.srv.get(API + "/version", token=False, timeout=30)
            self.assertEqual(200, r.status, "request with %d open connections: %r%s"
                             % (ok, r, self.log_tail()))
            self.assertOk(self.srv.get(API + "/admin/datastore", timeout=30))
            sys.stderr.write("\n[10k] connected %d of %d, cairnd VmRSS %s KiB\n"
                             % (ok, self.N, self.srv.rss_kib()))
            self.assertEqual(self.N, ok, "connections refused below the limit")
            # The flood is made of live connections: a sample of them is served.
            req = b"GET %s/version HTTP/1.1\r\nHost: x\r\n\r\n" % API.encode()
            for s in socks[::100]:
                s.setblocking(True)
                status, _, _, _, got = ch.exchange_one(s, req, 10)
                self.assertEqual(200, status, "an early connection answered %r" % got[:100])
        finally:
            for s in socks:
                s.close()
        self.assertServing(msg="after closing 10,000 connections")

    def test_fd_exhaustion_survived(self):
        def low_limit():
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        srv = ch.Cairn(tls=False, preexec=low_limit)
        self.addCleanup(self._finish, srv)
        socks, ok = open_many((srv.host, srv.port), 1000, timeout=5)
        try:
            time.sleep(0.5)
            self.assertTrue(srv.alive(), "cairnd died at its fd limit%s" % self.log_tail(srv))
        finally:
            for s in socks:
                s.close()
        # Once the flood is gone, service is back.
        r = self.poll(lambda: srv.get(API + "/version", token=False).status == 200,
                      timeout=10)
        self.assertTrue(r, "not serving after fd exhaustion%s" % self.log_tail(srv))
        self.assertTrue(srv.alive())


# ---------------------------------------------------------------------------


class LifecycleTest(CairnCase):
    def test_sigterm_exits_zero_and_restart_keeps_identity(self):
        srv = self.server(tls=True)
        fpr, token = srv.fingerprint, srv.token
        self.create_store("life1", srv=srv)
        code = srv.stop()
        self.assertEqual(0, code, "SIGTERM exit code %s%s" % (code, self.log_tail(srv)))
        srv.start()
        self.assertEqual(fpr, srv.fingerprint, "certificate changed across restart")
        self.assertEqual(token, srv.token, "root token changed across restart")
        self.assertOk(srv.get(API + "/admin/datastore/life1/status"))
        code = srv.stop(sig=signal.SIGINT)
        self.assertEqual(0, code, "SIGINT exit code %s%s" % (code, self.log_tail(srv)))

    def test_kill9_then_restart(self):
        srv = self.server(tls=False)
        self.create_store("life2", srv=srv)
        srv.kill9()
        srv.start()
        self.assertOk(srv.get(API + "/admin/datastore/life2/status"))
        self.create_store("life3", srv=srv)

    def test_sighup_keeps_serving(self):
        srv = self.server(tls=False)
        self.create_store("hup1", srv=srv)
        srv.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        self.assertServing(srv, "after SIGHUP")
        self.assertOk(srv.get(API + "/admin/datastore/hup1/status"))

    def test_sighup_reloads_certificate(self):
        srv = self.server(tls=True)
        old = srv.fingerprint
        key = os.path.join(srv.config_dir, "proxy.key")
        pem = os.path.join(srv.config_dir, "proxy.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=new",
                        "-keyout", key + ".new", "-out", pem + ".new"],
                       check=True, capture_output=True)
        os.chmod(key + ".new", 0o600)
        os.replace(key + ".new", key)
        os.replace(pem + ".new", pem)
        with open(pem) as f:
            new = ch.cert_fingerprint(ssl.PEM_cert_to_DER_cert(f.read()))
        conn = srv.connection()  # pinned to the old certificate, kept open
        try:
            self.assertOk(srv.get(API + "/version", token=False, conn=conn))
            srv.proc.send_signal(signal.SIGHUP)

            def served():
                with srv.raw_socket(tls=True) as t:
                    return ch.cert_fingerprint(t.getpeercert(binary_form=True))
            self.assertTrue(self.poll(lambda: served() == new, timeout=5),
                            "SIGHUP did not load the new certificate%s" % self.log_tail())
            self.assertNotEqual(old, new)
            # Connections made before the reload keep working.
            self.assertOk(srv.get(API + "/version", token=False, conn=conn))
        finally:
            conn.close()

    def test_sigterm_lets_inflight_request_finish(self):
        srv = self.server(tls=False)
        body = ('{"name": "inflight1", "path": "%s"}'
                % srv.datastore_path("inflight1")).encode()
        s = srv.raw_socket(timeout=10)
        try:
            s.sendall(("POST %s/config/datastore HTTP/1.1\r\nHost: x\r\n"
                       "Authorization: %s\r\nContent-Type: application/json\r\n"
                       "Content-Length: %d\r\n\r\n" % (API, srv.auth_header(), len(body)))
                      .encode() + body[:10])
            time.sleep(0.3)
            srv.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            # No longer accepting, but the request in flight is finished.
            refused = self.poll(lambda: not srv.port_open(), timeout=3)
            self.assertTrue(refused, "still accepting after SIGTERM")
            status, _, _, _, got = ch.exchange_one(s, body[10:], 10)
            self.assertEqual(200, status, "in-flight request answered %r%s"
                             % (got[:200], self.log_tail()))
        finally:
            s.close()
        try:
            code = srv.proc.wait(12)
        except subprocess.TimeoutExpired:
            self.fail("cairnd did not exit within its grace period%s" % self.log_tail())
        self.assertEqual(0, code, "exit code after SIGTERM%s" % self.log_tail())

    def test_environment_variables(self):
        srv = self.server(tls=False, use_env=True)
        self.assertServing(srv, "configured by CAIRN_* variables")
        self.assertTrue(os.path.exists(os.path.join(srv.config_dir, "root.token")))
        self.assertOk(srv.get(API + "/admin/datastore"))

    def test_ipv6_listener(self):
        try:
            with socket.socket(socket.AF_INET6) as s:
                s.bind(("::1", 0))
                port6 = s.getsockname()[1]
        except OSError:
            ch.skip_for_machine(self, "ipv6", "no IPv6 loopback")
        srv = self.server(tls=False, args=["--listen", "[::1]:%d" % port6])
        # The harness waited for the first listener only.
        self.assertTrue(srv.wait_log(r"listening on \[::1\]:%d" % port6), self.log_tail())
        with socket.create_connection(("::1", port6), timeout=5) as s:
            status, _, _, _, got = ch.exchange_one(
                s, b"GET %s/version HTTP/1.1\r\nHost: x\r\n\r\n" % API.encode())
        self.assertEqual(200, status, repr(got[:200]))

    def test_debug_reread_config_serves(self):
        srv = self.server(tls=False, args=["--debug-reread-config"])
        path = srv.datastore_path("rr1")
        srv.admin("datastore", "create", "rr1", path, check=True)
        self.assertOk(srv.get(API + "/admin/datastore/rr1/status"))
        self.assertError(srv.get(API + "/admin/datastore/rr2/status"), 404)


if __name__ == "__main__":
    unittest.main(verbosity=2)
