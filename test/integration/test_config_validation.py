#!/usr/bin/python3
"""Integration tests for issue #12 (config and validation): where a datastore
may be created, UTF-8 in every text input and output, booleans, and repeated
`delete` parameters. Each class starts its own cairnd through cairn_harness.

Runs standalone (`python3 test_config_validation.py`, CAIRN_BIN_DIR=build/bin)
and from ctest; exits non-zero on failure.
"""

import json
import os
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as ch  # noqa: E402

API = "/api2/json"


def setUpModule():
    ch.require_programs("cairnd", "cairn-admin")


def strict_json(raw):
    """Parses like a strict client: the bytes must be UTF-8 and the text JSON."""
    return json.loads(raw.decode("utf-8"))


class Case(unittest.TestCase):
    srv = None

    @classmethod
    def setUpClass(cls):
        cls.srv = ch.Cairn()
        cls.addClassCleanup(cls._finish, cls.srv)

    @staticmethod
    def _finish(srv):
        srv.close()
        report = srv.sanitizer_reports()
        if report:
            raise AssertionError("cairnd reported a sanitizer error or crash:\n" + report)

    def log_tail(self):
        return "\n--- cairnd log (tail) ---\n" + "\n".join(self.srv.log_lines[-30:])

    def assertStatus(self, resp, status, msg=""):
        self.assertEqual(status, resp.status, "%s %r%s" % (msg, resp, self.log_tail()))
        return strict_json(resp.raw)

    def assertRefused(self, resp, msg="", mentions=None):
        """A 400 whose body is strict JSON with a message (matching `mentions`)."""
        body = self.assertStatus(resp, 400, msg)
        self.assertIsNone(body["data"], msg)
        if mentions:
            self.assertRegex(body["message"].lower(), mentions, "%s: %r" % (msg, body))
        return body["message"]

    def create(self, name, path=None, **extra):
        params = {"name": name, "path": path or self.srv.datastore_path(name)}
        params.update(extra)
        return self.srv.post(API + "/config/datastore", params=params)

    def section(self, name):
        r = self.srv.get(API + "/config/datastore/" + name)
        return self.assertStatus(r, 200, "get " + name)["data"]

    def names(self):
        r = self.srv.get(API + "/config/datastore")
        return sorted(s["name"] for s in self.assertStatus(r, 200, "list")["data"])

    def form(self, method, path, body):
        """A request with a raw form body (bytes that urlencode cannot make)."""
        return self.srv.request(method, API + path, body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded"})


class DatastorePathTest(Case):
    """Item 1: refused paths answer 400 and create nothing."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.store1 = cls.srv.datastore_path("store1")
        r = cls.srv.post(API + "/config/datastore",
                         params={"name": "store1", "path": cls.store1})
        assert r.status == 200, r
        os.makedirs(os.path.join(cls.store1, "host"), exist_ok=True)

    def refuse_without_trace(self, path, mentions=None):
        """POSTs `path`; it must be refused and leave no .chunks or .lock
        behind (the old code made both, also in /etc: take them back then)."""
        made = [os.path.join(path, n) for n in (".chunks", ".lock")]
        before = {m: os.path.lexists(m) for m in made}
        existed = os.path.lexists(path)
        before_names = self.names()
        try:
            r = self.create("bad", path)
            self.assertRefused(r, "create at %r" % path, mentions)
            self.assertEqual(before_names, self.names(), path)
            for m in made:
                self.assertEqual(before[m], os.path.lexists(m), "%s appeared" % m)
            self.assertEqual(existed, os.path.lexists(path), "%s appeared" % path)
        finally:
            for m in made:
                if not before[m] and os.path.isdir(m) and not os.path.islink(m):
                    os.rmdir(m)
                elif not before[m] and os.path.lexists(m):
                    os.unlink(m)
            if not existed and os.path.isdir(path):
                os.rmdir(path)
            if "bad" in self.names():
                self.srv.delete(API + "/config/datastore/bad")

    def test_system_directories(self):
        for path in ("/", "/etc", "/etc/cairn-test", "/usr", "/usr/local/x", "/bin", "/boot",
                     "/dev", "/dev/shm/x", "/proc", "/sys", "/run", "/run/cairn-x", "/var/lib",
                     "/var", "/tmp", "//etc", "/tmp/../etc", "/./etc/."):
            with self.subTest(path=path):
                self.refuse_without_trace(path, mentions="system directory")

    def test_config_and_run_directories(self):
        srv = self.srv
        for path in (srv.config_dir, os.path.join(srv.config_dir, "sub"), srv.run_dir,
                     os.path.join(srv.run_dir, "x"), srv.root,
                     srv.config_dir + "/../config/./sub"):
            with self.subTest(path=path):
                self.refuse_without_trace(path, mentions="overlaps the (config|run) directory")

    def test_inside_or_above_another_datastore(self):
        data = self.srv.data_dir
        for path in (self.store1, os.path.join(self.store1, ".chunks"),
                     os.path.join(self.store1, "host"), os.path.join(self.store1, "new"),
                     self.store1 + "//host/", os.path.join(data, "x", "..", "store1", "host")):
            with self.subTest(path=path):
                self.refuse_without_trace(path, mentions="overlaps datastore 'store1'")
        # data/ itself is above store1 (and not empty).
        self.refuse_without_trace(data, mentions="overlaps datastore 'store1'")

    def test_symlinks_are_resolved(self):
        link = self.srv.datastore_path("etc-link")
        os.symlink("/etc", link)
        self.addCleanup(os.unlink, link)
        self.refuse_without_trace(os.path.join(link, "x"), mentions="system directory")
        link2 = self.srv.datastore_path("store1-link")
        os.symlink(self.store1, link2)
        self.addCleanup(os.unlink, link2)
        self.refuse_without_trace(os.path.join(link2, "y"), mentions="overlaps datastore")

    def test_non_empty_directory(self):
        path = self.srv.datastore_path("full")
        os.makedirs(path)
        self.addCleanup(shutil.rmtree, path, True)
        with open(os.path.join(path, "file"), "w") as f:
            f.write("data")
        self.refuse_without_trace(path, mentions="not empty")
        # reuse-datastore takes it as it is.
        r = self.create("full", path, **{"reuse-datastore": "1"})
        self.assertStatus(r, 200, "reuse a non-empty directory")
        self.assertTrue(os.path.isdir(os.path.join(path, ".chunks")))
        self.srv.delete(API + "/config/datastore/full")

    def test_empty_directory_and_normal_form(self):
        empty = self.srv.datastore_path("empty")
        os.makedirs(os.path.join(empty, "lost+found"))
        self.addCleanup(shutil.rmtree, empty, True)
        self.assertStatus(self.create("empty", empty), 200, "empty directory")
        self.srv.delete(API + "/config/datastore/empty")
        messy = self.srv.data_dir + "//./sub/../fresh/"
        self.assertStatus(self.create("fresh", messy), 200, "path with . and ..")
        self.addCleanup(shutil.rmtree, self.srv.datastore_path("fresh"), True)
        self.assertEqual(self.srv.datastore_path("fresh"), self.section("fresh")["path"])
        self.srv.delete(API + "/config/datastore/fresh")

    def test_admin_applies_the_same_checks(self):
        for path, why in (("/etc", "system directory"),
                          (os.path.join(self.store1, "host"), "overlaps datastore"),
                          (self.srv.config_dir, "overlaps the config directory")):
            with self.subTest(path=path):
                had = os.path.lexists(os.path.join(path, ".chunks"))
                p = self.srv.admin("datastore", "create", "adm-bad", path)
                try:
                    self.assertNotEqual(0, p.returncode, p.stdout + p.stderr)
                    self.assertIn(why, p.stderr)
                    self.assertEqual(had, os.path.lexists(os.path.join(path, ".chunks")))
                finally:
                    if not had and os.path.isdir(os.path.join(path, ".chunks")):
                        os.rmdir(os.path.join(path, ".chunks"))
                        os.unlink(os.path.join(path, ".lock"))
        self.assertNotIn("adm-bad", self.names())


class Utf8Test(Case):
    """Item 2: text is UTF-8 without NUL on the way in, and always on the way out."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        r = cls.srv.post(API + "/config/datastore",
                         params={"name": "utf1", "path": cls.srv.datastore_path("utf1")})
        assert r.status == 200, r

    def assertListingsParse(self):
        for path in ("/config/datastore", "/admin/datastore", "/config/datastore/utf1"):
            r = self.srv.get(API + path)
            self.assertStatus(r, 200, path)

    def test_invalid_comment_refused(self):
        for body in (b"comment=a%FFb", b"comment=a%C0%AFb", b"comment=%ED%A0%80",
                     b"comment=a%00b", b"comm%FFent=x"):
            with self.subTest(body=body):
                self.assertRefused(self.form("PUT", "/config/datastore/utf1", body), repr(body))
        self.assertNotIn("comment", self.section("utf1"))
        self.assertListingsParse()
        # Valid UTF-8 is kept as sent.
        r = self.form("PUT", "/config/datastore/utf1", "comment=caf%C3%A9".encode())
        self.assertStatus(r, 200, "valid comment")
        self.assertEqual("caf\u00e9", self.section("utf1")["comment"])

    def test_invalid_name_not_echoed_raw(self):
        r = self.form("POST", "/config/datastore",
                      b"name=ab%FFcd&path=" + self.srv.datastore_path("x").encode())
        self.assertRefused(r, "name in the body")
        self.assertNotIn(b"\xff", r.raw)
        r = self.srv.put(API + "/config/datastore/ab%FFcd", params={"comment": "x"})
        # Refused by the router, before any handler sees the name.
        self.assertRefused(r, "name in the path", mentions="invalid characters")
        self.assertNotIn(b"\xff", r.raw)
        self.assertListingsParse()

    def test_json_strings(self):
        # "abc" alone is a valid name: the tail must not be dropped silently.
        path = self.srv.datastore_path("abc")
        for raw in (b'{"name":"abc\\u0000de","path":"' + path.encode() + b'"}',
                    b'{"name":"abc\xffde","path":"' + path.encode() + b'"}',
                    b'{"name":"abc","path":"' + path.encode() + b'","comment":"\\udc00"}'):
            with self.subTest(raw=raw):
                r = self.srv.request("POST", API + "/config/datastore", body=raw,
                                     headers={"Content-Type": "application/json"})
                self.assertRefused(r, repr(raw))
                self.assertNotIn(b"\xff", r.raw)
        self.assertNotIn("abc", self.names())
        self.assertFalse(os.path.exists(path))
        # The namespace API reads the same parser: no namespace "ab".
        r = self.srv.request("POST", API + "/admin/datastore/utf1/namespace",
                             body=b'{"name":"ab\\u0000cd"}',
                             headers={"Content-Type": "application/json"})
        self.assertRefused(r, "namespace name with NUL")
        r = self.srv.get(API + "/admin/datastore/utf1/namespace")
        listed = [n.get("ns") for n in self.assertStatus(r, 200, "namespaces")["data"]]
        self.assertNotIn("ab", listed)

    def test_hand_edited_config_still_parses(self):
        cfg = os.path.join(self.srv.config_dir, "datastore.cfg")
        path = self.srv.datastore_path("hand")
        os.makedirs(os.path.join(path, ".chunks"))
        open(os.path.join(path, ".lock"), "w").close()
        self.addCleanup(shutil.rmtree, path, True)
        with open(cfg, "ab") as f:
            f.write(b"\ndatastore: hand\n\tpath " + path.encode() +
                    b"\n\tcomment bad \xff\xc0\xaf byte\n")
        self.addCleanup(lambda: self.srv.delete(API + "/config/datastore/hand"))
        for api in ("/config/datastore", "/admin/datastore", "/config/datastore/hand"):
            r = self.srv.get(API + api)
            data = self.assertStatus(r, 200, api)["data"]
            if isinstance(data, dict):
                data = [data]
            hand = [d for d in data if d.get("name", d.get("store")) == "hand"]
            self.assertEqual(1, len(hand), "%s: %r" % (api, data))
            self.assertEqual("bad \ufffd\ufffd\ufffd byte", hand[0]["comment"], api)


class ValidationGapsTest(Case):
    """Item 3: booleans in PBS's forms only; every `delete` applies."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        r = cls.srv.post(API + "/config/datastore",
                         params={"name": "val1", "path": cls.srv.datastore_path("val1")})
        assert r.status == 200, r

    def put(self, params):
        return self.srv.put(API + "/config/datastore/val1", params=params)

    def test_booleans(self):
        for value in ("maybe", "2", "", "truee", "-1"):
            with self.subTest(value=value):
                self.assertRefused(self.put({"verify-new": value}), value,
                                   mentions="verify-new")
        self.assertNotIn("verify-new", self.section("val1"))
        for value in ("1", "TRUE", "Yes", "on", "0", "false", "NO", "Off"):
            with self.subTest(value=value):
                self.assertStatus(self.put({"verify-new": value}), 200, value)
        r = self.create("reuse-bad", **{"reuse-datastore": "maybe"})
        self.assertRefused(r, "reuse-datastore=maybe", mentions="reuse-datastore")
        self.assertFalse(os.path.exists(self.srv.datastore_path("reuse-bad")))

    def test_booleans_elsewhere(self):
        snap = {"backup-type": "host", "backup-id": "b1", "backup-time": "1700000000"}
        r = self.srv.post(API + "/backup", params=dict(snap, store="val1", **{"no-cache": "2"}))
        self.assertRefused(r, "no-cache=2", mentions="no-cache")
        r = self.srv.put(API + "/admin/datastore/val1/protected",
                         params=dict(snap, protected="maybe"))
        self.assertRefused(r, "protected=maybe", mentions="'protected'")
        r = self.srv.delete(API + "/admin/datastore/val1/namespace",
                            params={"ns": "a", "delete-groups": "maybe"})
        self.assertRefused(r, "delete-groups=maybe", mentions="delete-groups")

    def set_all(self):
        self.assertStatus(self.put({"comment": "c", "gc-schedule": "daily",
                                    "verify-new": "true", "keep-last": "3"}), 200, "set")

    def test_repeated_delete(self):
        self.set_all()
        r = self.form("PUT", "/config/datastore/val1", b"delete=comment&delete=gc-schedule")
        self.assertStatus(r, 200, "delete twice")
        sec = self.section("val1")
        self.assertNotIn("comment", sec)
        self.assertNotIn("gc-schedule", sec)
        self.assertIn("verify-new", sec)
        # A list in one parameter, and a JSON array.
        self.set_all()
        self.assertStatus(self.put({"delete": "comment, verify-new;keep-last"}), 200, "list")
        sec = self.section("val1")
        for k in ("comment", "verify-new", "keep-last"):
            self.assertNotIn(k, sec)
        self.set_all()
        r = self.srv.put(API + "/config/datastore/val1",
                         json={"delete": ["comment", "gc-schedule", "keep-last"]})
        self.assertStatus(r, 200, "JSON array")
        sec = self.section("val1")
        for k in ("comment", "gc-schedule", "keep-last"):
            self.assertNotIn(k, sec)

    def test_unknown_delete_refused(self):
        self.set_all()
        r = self.form("PUT", "/config/datastore/val1", b"delete=comment&delete=bogus")
        self.assertRefused(r, "unknown property", mentions="bogus")
        self.assertIn("comment", self.section("val1"), "nothing applied")

    def test_property_given_twice_refused(self):
        r = self.form("PUT", "/config/datastore/val1", b"comment=a&comment=b")
        self.assertRefused(r, "comment twice", mentions="comment")

    def test_s3_endpoint_repeated_delete(self):
        r = self.srv.post(API + "/config/s3", params={
            "id": "ep1", "endpoint": "s3.example.com", "access-key": "ak",
            "secret-key": "sk", "region": "eu-1", "port": "9000", "path-style": "TRUE"})
        self.assertStatus(r, 200, "create endpoint")
        r = self.form("PUT", "/config/s3/ep1", b"delete=region&delete=port")
        self.assertStatus(r, 200, "delete twice")
        r = self.srv.get(API + "/config/s3/ep1")
        data = self.assertStatus(r, 200, "get endpoint")["data"]
        self.assertNotIn("region", data)
        self.assertNotIn("port", data)
        self.assertIn("path-style", data)
        r = self.form("PUT", "/config/s3/ep1", b"delete=path-style&delete=nope")
        self.assertRefused(r, "unknown property", mentions="nope")
        self.assertRefused(self.srv.put(API + "/config/s3/ep1", params={"use-tls": "maybe"}),
                           "use-tls=maybe", mentions="use-tls")


if __name__ == "__main__":
    unittest.main(verbosity=2)
