#!/usr/bin/python3
"""Integration tests for issue #14: users, tokens, ACLs and the privilege
check on every route, against the real cairnd.

RouteTable is the key one: every route the server registers (read from the
sources, so a new route without an entry here fails the test) gets one
request without credentials (401), one with a token that has no privilege
(403, and nothing in the config or data directories changes), and one with
the privilege (2xx). The other classes play the issue's scenarios: an
append-only backup token, a user's token that cannot exceed its user,
ticket login with CSRF, the 429 lockout and its expiry, a hand edit of
acl.cfg, and the logs checked for secrets.

Runs standalone and from ctest; exits non-zero on failure.
"""

import glob
import hashlib
import os
import re
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as ch  # noqa: E402
import pbs_proto as pp  # noqa: E402

API = "/api2/json"
SRC = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def setUpModule():
    ch.require_programs("cairnd", "cairn-admin")


def registered_routes():
    """(METHOD, pattern) of every route table entry in the server's sources."""
    routes = set()
    for path in glob.glob(os.path.join(SRC, "*", "*.c")):
        if any(d in path for d in ("/test/", "/client/", "/bench/", "/fuzz/")):
            continue
        with open(path, encoding="utf-8") as f:
            text = f.read()
        macros = dict(re.findall(r'#define (\w+) ((?:\w+ )?"[^"]*")', text))

        def expand(expr):
            out = ""
            for part in re.findall(r'\w+|"[^"]*"', expr):
                if part.startswith('"'):
                    out += part[1:-1]
                else:
                    out += expand(macros[part])
            return out

        for m, expr in re.findall(r'\{HTTP_METHOD_(\w+),\s*((?:\w+ )*"[^"]*")', text):
            routes.add((m, expand(expr)))
    return routes


def tree_state(*dirs):
    """Names, sizes and contents' digests of every file below the dirs
    (atimes and the run directory's lock files aside)."""
    state = {}
    for d in dirs:
        for root, _, files in os.walk(d):
            for f in files:
                p = os.path.join(root, f)
                if "/.chunks/" in p:
                    state[p] = os.path.getsize(p)
                    continue
                if "/config/usage/" in p:
                    continue  # usage samples of the periodic timer, not of a request
                try:
                    with open(p, "rb") as fh:
                        state[p] = hashlib.sha256(fh.read()).hexdigest()
                except OSError:
                    pass
    return state


class AccessCase(unittest.TestCase):
    def ok(self, r, what=""):
        self.assertTrue(200 <= r.status < 300, "%s: %r" % (what, r))
        return r.data.get("data") if isinstance(r.data, dict) else r.data

    def api(self, token):
        return pp.Endpoint(self.srv.host, self.srv.port, token)

    def make_user(self, user, password=None):
        p = {"userid": user}
        if password:
            p["password"] = password
        self.ok(self.srv.post(API + "/access/users", params=p), "create " + user)

    def make_token(self, tokenid):
        user, name = tokenid.split("!")
        d = self.ok(self.srv.post(API + "/access/users/%s/token/%s" % (user, name)),
                    "create token " + tokenid)
        self.assertEqual(tokenid, d["tokenid"])
        return "%s:%s" % (tokenid, d["value"])

    def grant(self, path, authid, role, propagate=True, delete=False):
        p = {"path": path, "auth-id": authid, "role": role,
             "propagate": "1" if propagate else "0"}
        if delete:
            p["delete"] = "1"
        self.ok(self.srv.put(API + "/access/acl", params=p), "acl %s" % p)

    def make_store(self, name):
        self.ok(self.srv.post(API + "/config/datastore",
                              params={"name": name, "path": self.srv.datastore_path(name)}),
                "create store " + name)

    def backup(self, token, store, bid, t, ns=None, payload=b"payload"):
        s = pp.BackupSession(self.api(token), store, "host", bid, t, ns).open()
        s.upload_blob("data.blob", payload)
        s.upload_manifest()
        s.finish()


class RouteTable(AccessCase):
    """Every route: 401 without credentials, 403 without the privilege
    (nothing changes), 2xx with it."""

    @classmethod
    def setUpClass(cls):
        cls.srv = ch.Cairn(tls=False, args=("--auth-fail-limit", "0"))
        cls.addClassCleanup(cls.srv.close)

    def setUp(self):
        self.srv = type(self).srv

    def test_every_route(self):
        srv = self.srv
        now = int(time.time()) - 3600
        self.make_store("st1")
        self.ok(srv.post(API + "/admin/datastore/st1/namespace", params={"name": "n1"}))
        self.make_user("alice@pbs", "alice-password")
        self.make_user("zed@pbs")
        nopriv = self.make_token("alice@pbs!none")
        self.make_token("alice@pbs!spare")
        self.backup(srv.token, "st1", "a", now)
        self.backup(srv.token, "st1", "a", now + 10)
        self.backup(srv.token, "st1", "g", now)
        gc = self.ok(srv.post(API + "/admin/datastore/st1/gc"))
        upid = gc if isinstance(gc, str) else gc.get("upid")
        deadline = time.time() + 30
        while time.time() < deadline:
            st = self.ok(srv.get(API + "/nodes/localhost/tasks/%s/status"
                                 % urllib.parse.quote(upid, safe="")))
            if st.get("status") == "stopped":
                break
            time.sleep(0.1)
        q = urllib.parse.quote(upid, safe="")
        # Open sessions (root) for the session routes.
        bs = pp.BackupSession(self.api(srv.token), "st1", "host", "b", now + 20).open()
        rs = pp.ReaderSession(self.api(srv.token), "st1", "host", "a", now).open()
        snap = {"store": "st1", "backup-type": "host", "backup-id": "a",
                "backup-time": str(now)}
        grp = {"store": "st1", "backup-type": "host", "backup-id": "a"}
        B = "/backup/" + bs.id
        R = "/reader/" + rs.id

        # (method, pattern, concrete path, params, expectation with privilege:
        #  "2xx", or "passed" (past the check, the handler's own answer), or
        #  "filtered": a no-privilege caller gets 200 and sees nothing foreign)
        table = [
            ("GET", "/api2/json/version", "/version", None, "noauth"),
            ("GET", "/api2/json/ping", "/ping", None, "noauth"),
            ("GET", "/api2/json/readyz", "/readyz", None, "noauth"),
            ("GET", "/metrics", "//metrics", None, "2xx"),
            ("GET", "/api2/json/nodes/localhost/status", "/nodes/localhost/status", None,
             "2xx"),
            ("GET", "/api2/json/status/metrics", "/status/metrics", None, "2xx"),
            ("GET", "/api2/json/status/datastore-usage", "/status/datastore-usage", None,
             "filtered"),
            ("POST", "/api2/json/access/ticket", "/access/ticket",
             {"username": "alice@pbs", "password": "alice-password"}, "noauth"),
            ("GET", "/api2/json/config/datastore", "/config/datastore", None, "2xx"),
            ("GET", "/api2/json/config/datastore/{name}", "/config/datastore/st1", None, "2xx"),
            ("PUT", "/api2/json/config/datastore/{name}", "/config/datastore/st1",
             {"comment": "x"}, "2xx"),
            ("POST", "/api2/json/config/datastore", "/config/datastore",
             {"name": "st2", "path": srv.datastore_path("st2")}, "2xx"),
            ("DELETE", "/api2/json/config/datastore/{name}", "/config/datastore/st2", None,
             "2xx"),
            ("GET", "/api2/json/admin/datastore", "/admin/datastore", None, "filtered"),
            ("GET", "/api2/json/admin/datastore/{store}/status", "/admin/datastore/st1/status",
             None, "2xx"),
            ("GET", "/api2/json/admin/datastore/{store}/namespace",
             "/admin/datastore/st1/namespace", None, "2xx"),
            ("POST", "/api2/json/admin/datastore/{store}/namespace",
             "/admin/datastore/st1/namespace", {"name": "n2"}, "2xx"),
            ("DELETE", "/api2/json/admin/datastore/{store}/namespace",
             "/admin/datastore/st1/namespace", {"ns": "n2"}, "2xx"),
            ("GET", "/api2/json/admin/datastore/{store}/groups", "/admin/datastore/st1/groups",
             None, "2xx"),
            ("GET", "/api2/json/admin/datastore/{store}/snapshots",
             "/admin/datastore/st1/snapshots", None, "2xx"),
            ("GET", "/api2/json/admin/datastore/{store}/protected",
             "/admin/datastore/st1/protected", snap, "2xx"),
            ("PUT", "/api2/json/admin/datastore/{store}/protected",
             "/admin/datastore/st1/protected", dict(snap, protected="false"), "2xx"),
            ("GET", "/api2/json/admin/datastore/{store}/files",
             "/admin/datastore/st1/files", snap, "2xx"),
            ("GET", "/api2/json/admin/datastore/{store}/catalog",
             "/admin/datastore/st1/catalog",
             dict(snap, **{"archive-name": "root.didx", "filepath": "Lw=="}), "passed"),
            ("GET", "/api2/json/admin/datastore/{store}/file-download",
             "/admin/datastore/st1/file-download",
             dict(snap, **{"archive-name": "root.didx", "filepath": "L2E="}), "passed"),
            ("GET", "/api2/json/admin/datastore/{store}/notes",
             "/admin/datastore/st1/notes", snap, "2xx"),
            ("PUT", "/api2/json/admin/datastore/{store}/notes",
             "/admin/datastore/st1/notes", dict(snap, notes="n"), "2xx"),
            ("GET", "/api2/json/admin/datastore/{store}/group-notes",
             "/admin/datastore/st1/group-notes", grp, "2xx"),
            ("PUT", "/api2/json/admin/datastore/{store}/group-notes",
             "/admin/datastore/st1/group-notes", dict(grp, notes="g"), "2xx"),
            ("POST", "/api2/json/admin/datastore/{store}/change-owner",
             "/admin/datastore/st1/change-owner", dict(grp, **{"new-owner": "root@pam!root"}),
             "2xx"),
            ("POST", "/api2/json/admin/datastore/{store}/verify",
             "/admin/datastore/st1/verify", grp, "2xx"),
            ("GET", "/api2/json/admin/datastore/{store}/gc", "/admin/datastore/st1/gc", None,
             "2xx"),
            ("POST", "/api2/json/admin/datastore/{store}/gc", "/admin/datastore/st1/gc", None,
             "passed"),
            ("POST", "/api2/json/admin/datastore/{store}/prune", "/admin/datastore/st1/prune",
             dict(grp, **{"keep-last": "5"}), "2xx"),
            ("POST", "/api2/json/admin/datastore/{store}/prune-datastore",
             "/admin/datastore/st1/prune-datastore", {"keep-last": "5"}, "2xx"),
            ("POST", "/api2/json/admin/datastore/{store}/move-group",
             "/admin/datastore/st1/move-group", dict(grp, **{"target-ns": "nope"}), "passed"),
            ("POST", "/api2/json/admin/datastore/{store}/move-namespace",
             "/admin/datastore/st1/move-namespace", {"ns": "n1", "target-ns": "nope/x"},
             "passed"),
            ("PUT", "/api2/json/admin/datastore/{store}/s3-refresh",
             "/admin/datastore/st1/s3-refresh", None, "passed"),
            ("POST", "/api2/json/admin/datastore/{store}/s3-refresh",
             "/admin/datastore/st1/s3-refresh", None, "passed"),
            ("GET", "/api2/json/config/s3", "/config/s3", None, "2xx"),
            ("POST", "/api2/json/config/s3", "/config/s3",
             {"id": "ep1", "endpoint": "127.0.0.1", "port": "9", "region": "us-east-1",
              "access-key": "AK", "secret-key": "SK", "path-style": "true",
              "use-tls": "false"}, "2xx"),
            ("GET", "/api2/json/config/s3/{id}", "/config/s3/ep1", None, "2xx"),
            ("PUT", "/api2/json/config/s3/{id}", "/config/s3/ep1", {"region": "eu"}, "2xx"),
            ("GET", "/api2/json/admin/s3/{id}/check", "/admin/s3/ep1/check", None, "passed"),
            ("DELETE", "/api2/json/config/s3/{id}", "/config/s3/ep1", None, "2xx"),
            ("POST", "/api2/json/config/remote", "/config/remote",
             {"name": "rem1", "host": "127.0.0.1", "port": "9", "auth-id": "root@pam!root",
              "password": "secret"}, "2xx"),
            ("GET", "/api2/json/config/remote", "/config/remote", None, "2xx"),
            ("GET", "/api2/json/config/remote/{name}", "/config/remote/rem1", None, "2xx"),
            ("PUT", "/api2/json/config/remote/{name}", "/config/remote/rem1",
             {"comment": "c"}, "2xx"),
            ("GET", "/api2/json/config/remote/{name}/scan/{store}/namespaces",
             "/config/remote/rem1/scan/st1/namespaces", None, "passed"),
            ("GET", "/api2/json/config/remote/{name}/scan/{store}/groups",
             "/config/remote/rem1/scan/st1/groups", None, "passed"),
            ("POST", "/api2/json/config/sync", "/config/sync",
             {"id": "job1", "store": "st1", "remote": "rem1", "remote-store": "st1"}, "2xx"),
            ("GET", "/api2/json/config/sync", "/config/sync", None, "2xx"),
            ("GET", "/api2/json/config/sync/{id}", "/config/sync/job1", None, "2xx"),
            ("PUT", "/api2/json/config/sync/{id}", "/config/sync/job1", {"comment": "c"}, "2xx"),
            ("GET", "/api2/json/admin/sync", "/admin/sync", None, "2xx"),
            ("POST", "/api2/json/admin/sync/{id}/run", "/admin/sync/job1/run", None, "2xx"),
            ("POST", "/api2/json/pull", "/pull",
             {"store": "st1", "remote": "rem1", "remote-store": "st1"}, "2xx"),
            ("POST", "/api2/json/push", "/push",
             {"store": "st1", "remote": "rem1", "remote-store": "st1"}, "2xx"),
            ("DELETE", "/api2/json/config/sync/{id}", "/config/sync/job1", None, "2xx"),
            ("DELETE", "/api2/json/config/remote/{name}", "/config/remote/rem1", None, "2xx"),
            ("GET", "/api2/json/nodes/localhost/tasks", "/nodes/localhost/tasks", None,
             "filtered"),
            ("GET", "/api2/json/nodes/localhost/tasks/{upid}", "/nodes/localhost/tasks/" + q,
             None, "2xx"),
            ("GET", "/api2/json/nodes/localhost/tasks/{upid}/status",
             "/nodes/localhost/tasks/%s/status" % q, None, "2xx"),
            ("GET", "/api2/json/nodes/localhost/tasks/{upid}/log",
             "/nodes/localhost/tasks/%s/log" % q, None, "2xx"),
            ("DELETE", "/api2/json/nodes/localhost/tasks/{upid}", "/nodes/localhost/tasks/" + q,
             None, "passed"),
            ("GET", "/api2/json/access/users", "/access/users", None, "filtered"),
            ("POST", "/api2/json/access/users", "/access/users", {"userid": "bob@pbs"}, "2xx"),
            ("GET", "/api2/json/access/users/{userid}", "/access/users/zed@pbs", None, "2xx"),
            ("PUT", "/api2/json/access/users/{userid}", "/access/users/zed@pbs",
             {"comment": "changed"}, "2xx"),
            ("GET", "/api2/json/access/users/{userid}/token", "/access/users/zed@pbs/token",
             None, "2xx"),
            ("POST", "/api2/json/access/users/{userid}/token/{name}",
             "/access/users/zed@pbs/token/t1", None, "2xx"),
            ("GET", "/api2/json/access/users/{userid}/token/{name}",
             "/access/users/zed@pbs/token/t1", None, "2xx"),
            ("PUT", "/api2/json/access/users/{userid}/token/{name}",
             "/access/users/zed@pbs/token/t1", {"comment": "c"}, "2xx"),
            ("DELETE", "/api2/json/access/users/{userid}/token/{name}",
             "/access/users/zed@pbs/token/t1", None, "2xx"),
            ("DELETE", "/api2/json/access/users/{userid}", "/access/users/bob@pbs", None,
             "2xx"),
            ("GET", "/api2/json/access/acl", "/access/acl", None, "2xx"),
            ("PUT", "/api2/json/access/acl", "/access/acl",
             {"path": "/datastore/st1", "auth-id": "zed@pbs", "role": "DatastoreAudit"}, "2xx"),
            ("GET", "/api2/json/access/permissions", "/access/permissions",
             {"auth-id": "zed@pbs"}, "2xx"),
            ("POST", "/api2/json/reader", "/reader", snap, "2xx"),
            ("GET", "/api2/json/reader/{session}/download", R + "/download",
             {"file-name": "index.json.blob"}, "2xx"),
            ("GET", "/api2/json/reader/{session}/chunk", R + "/chunk",
             {"digest": "0" * 64}, "passed"),
            ("DELETE", "/api2/json/reader/{session}", R, None, "2xx"),
            ("POST", "/api2/json/backup", "/backup",
             {"store": "st1", "backup-type": "host", "backup-id": "c",
              "backup-time": str(now)}, "2xx"),
            ("GET", "/api2/json/backup/{session}/previous_backup_time",
             B + "/previous_backup_time", None, "2xx"),
            ("POST", "/api2/json/backup/{session}/dynamic_index", B + "/dynamic_index",
             {"archive-name": "d.didx"}, "2xx"),
            ("POST", "/api2/json/backup/{session}/fixed_index", B + "/fixed_index",
             {"archive-name": "f.fidx", "size": "4096"}, "2xx"),
            ("POST", "/api2/json/backup/{session}/dynamic_chunk", B + "/dynamic_chunk",
             None, "passed"),
            ("POST", "/api2/json/backup/{session}/fixed_chunk", B + "/fixed_chunk", None,
             "passed"),
            ("PUT", "/api2/json/backup/{session}/dynamic_index", B + "/dynamic_index", None,
             "passed"),
            ("PUT", "/api2/json/backup/{session}/fixed_index", B + "/fixed_index", None,
             "passed"),
            ("POST", "/api2/json/backup/{session}/dynamic_close", B + "/dynamic_close", None,
             "passed"),
            ("POST", "/api2/json/backup/{session}/fixed_close", B + "/fixed_close", None,
             "passed"),
            ("GET", "/api2/json/backup/{session}/previous", B + "/previous",
             {"archive-name": "x.didx"}, "passed"),
            ("POST", "/api2/json/backup/{session}/blob", B + "/blob", None, "passed"),
            ("POST", "/api2/json/backup/{session}/finish", B + "/finish", None, "passed"),
            ("DELETE", "/api2/json/backup/{session}", B, None, "2xx"),
            # (readers opened above hold snapshot a@now: delete others)
            ("DELETE", "/api2/json/admin/datastore/{store}/snapshots",
             "/admin/datastore/st1/snapshots", dict(snap, **{"backup-time": str(now + 10)}),
             "2xx"),
            ("DELETE", "/api2/json/admin/datastore/{store}/groups",
             "/admin/datastore/st1/groups", dict(grp, **{"backup-id": "g"}), "2xx"),
        ]
        covered = {(m, p) for m, p, _, _, _ in table}
        missing = registered_routes() - covered
        self.assertEqual(set(), missing, "routes without an entry in this table")

        def send(method, path, params, token):
            # "//x": a path outside the API (/metrics)
            full = path[1:] if path.startswith("//") else API + path
            return srv.request(method, full, params=params, token=token)

        # 1. Without credentials: 401 everywhere but the open routes.
        for m, pat, path, params, want in table:
            if want == "noauth":
                continue
            r = send(m, path, params, False)
            self.assertEqual(401, r.status, "%s %s without credentials: %r" % (m, pat, r))

        # 2. With a token that holds nothing: 403 (or a filtered 200), and
        # nothing on disk changes.
        before = tree_state(srv.config_dir, srv.data_dir)
        for m, pat, path, params, want in table:
            if want == "noauth":
                continue
            r = send(m, path, params, nopriv)
            if want == "filtered":
                self.assertEqual(200, r.status, "%s %s filtered: %r" % (m, pat, r))
                rows = r.data["data"]
                text = repr(rows)
                self.assertNotIn("root@pam", text, "%s %s shows foreign rows" % (m, pat))
                self.assertNotIn("'st1'", text, "%s %s shows foreign rows" % (m, pat))
                continue
            self.assertEqual(403, r.status, "%s %s without privilege: %r" % (m, pat, r))
            msg = r.data.get("message", "")
            if "/backup/" not in path and "/reader/" not in path:
                self.assertIn("permission check failed", msg)
                self.assertRegex(msg, r"(Sys|Datastore|Permissions|Remote)\.\w+ .*on /", msg)
        self.assertEqual(before, tree_state(srv.config_dir, srv.data_dir),
                         "a refused request changed something")

        # 3. With the privilege (root's token): past the check.
        for m, pat, path, params, want in table:
            if want == "noauth":
                r = send(m, path, params, False)
                self.assertEqual(200, r.status, "%s %s: %r" % (m, pat, r))
                continue
            r = send(m, path, params, True)
            self.assertNotEqual(401, r.status, "%s %s as root: %r" % (m, pat, r))
            if r.status == 403:  # the handler's own refusal, not the check's
                self.assertNotIn("permission check failed", r.data.get("message", ""),
                                 "%s %s as root" % (m, pat))
            if want in ("2xx", "filtered"):
                self.assertTrue(200 <= r.status < 300, "%s %s as root: %r" % (m, pat, r))
        bs.close_connection()
        rs.close_connection()


class Scenarios(AccessCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = ch.Cairn(tls=False, args=("--auth-fail-limit", "0"))
        cls.addClassCleanup(cls.srv.close)
        cls.now = int(time.time()) - 7200

    def setUp(self):
        self.srv = type(self).srv

    def test_append_only_backup_token(self):
        srv = self.srv
        self.make_store("aostore")
        for ns in ("hostA", "hostB"):
            self.ok(srv.post(API + "/admin/datastore/aostore/namespace", params={"name": ns}))
        self.make_user("backup@pbs")
        tok = self.make_token("backup@pbs!hostA")
        self.grant("/datastore/aostore/hostA", "backup@pbs", "DatastoreBackup")
        self.grant("/datastore/aostore/hostA", "backup@pbs!hostA", "DatastoreBackup")
        # Someone else's group in the same namespace and one elsewhere.
        self.backup(srv.token, "aostore", "other", self.now, ns="hostA")
        self.backup(srv.token, "aostore", "b", self.now, ns="hostB")
        # The token backs up into its namespace, twice.
        self.backup(tok, "aostore", "mine", self.now, ns="hostA")
        self.backup(tok, "aostore", "mine", self.now + 60, ns="hostA")
        groups = self.ok(srv.get(API + "/admin/datastore/aostore/groups", params={"ns": "hostA"},
                                 token=tok))
        self.assertEqual(["mine"], [g["backup-id"] for g in groups])
        snaps = self.ok(srv.get(API + "/admin/datastore/aostore/snapshots",
                                params={"ns": "hostA"}, token=tok))
        self.assertEqual({"mine"}, {s["backup-id"] for s in snaps})
        nss = self.ok(srv.get(API + "/admin/datastore/aostore/namespace", token=tok))
        self.assertIn("hostA", [n["ns"] for n in nss])
        self.assertNotIn("hostB", [n["ns"] for n in nss])
        # Another group: no backup into it, no reading it.
        r = pp.BackupSession(self.api(tok), "aostore", "host", "other", self.now + 60,
                             "hostA").open_raw()
        self.assertEqual(403, r.status, r)
        r = pp.ReaderSession(self.api(tok), "aostore", "host", "other", self.now, "hostA").open_raw()
        self.assertEqual(403, r.status, r)
        # Another namespace: nothing at all.
        for m, path, p in [
            ("POST", "/backup", {"store": "aostore", "ns": "hostB", "backup-type": "host",
                                 "backup-id": "x", "backup-time": str(self.now)}),
            ("GET", "/admin/datastore/aostore/groups", {"ns": "hostB"}),
            ("POST", "/reader", {"store": "aostore", "ns": "hostB", "backup-type": "host",
                                 "backup-id": "b", "backup-time": str(self.now)}),
        ]:
            self.assertEqual(403, srv.request(m, API + path, params=p, token=tok).status, path)
        # Its own group: read back yes; delete, prune, unprotect, GC no.
        rs = pp.ReaderSession(self.api(tok), "aostore", "host", "mine", self.now, "hostA").open()
        rs.close()
        own = {"store": "aostore", "ns": "hostA", "backup-type": "host", "backup-id": "mine"}
        for m, path, p in [
            ("DELETE", "/admin/datastore/aostore/snapshots", dict(own, **{"backup-time": str(self.now)})),
            ("DELETE", "/admin/datastore/aostore/groups", own),
            ("POST", "/admin/datastore/aostore/prune", dict(own, **{"keep-last": "1"})),
            ("POST", "/admin/datastore/aostore/prune-datastore", {"keep-last": "1"}),
            ("PUT", "/admin/datastore/aostore/protected",
             dict(own, **{"backup-time": str(self.now), "protected": "false"})),
            ("POST", "/admin/datastore/aostore/gc", None),
            ("DELETE", "/admin/datastore/aostore/namespace", {"ns": "hostA"}),
            ("POST", "/admin/datastore/aostore/change-owner", dict(own, **{"new-owner": "backup@pbs"})),
        ]:
            r = srv.request(m, API + path, params=p, token=tok)
            self.assertEqual(403, r.status, "%s %s: %r" % (m, path, r))
        # Overwriting an existing snapshot is refused too.
        r = pp.BackupSession(self.api(tok), "aostore", "host", "mine", self.now, "hostA").open_raw()
        self.assertNotEqual(200, r.status, r)
        snaps = self.ok(srv.get(API + "/admin/datastore/aostore/snapshots",
                                params={"ns": "hostA", "backup-id": "mine",
                                        "backup-type": "host"}))
        self.assertEqual(2, len(snaps))

    def test_future_backup_time_refused(self):
        srv = self.srv
        self.make_store("fut")
        r = pp.BackupSession(self.api(srv.token), "fut", "host", "h",
                             int(time.time()) + 3600).open_raw()
        self.assertEqual(400, r.status, r)
        self.assertIn("future", r.data["message"])
        # Within the 5 minutes of tolerated skew: fine.
        s = pp.BackupSession(self.api(srv.token), "fut", "host", "h",
                             int(time.time()) + 120).open()
        s.abort()

    def test_token_cannot_exceed_its_user(self):
        srv = self.srv
        self.make_store("txstore")
        self.make_user("carol@pbs")
        tok = self.make_token("carol@pbs!t")
        self.grant("/datastore/txstore", "carol@pbs", "DatastoreAudit")
        self.grant("/datastore/txstore", "carol@pbs!t", "DatastoreAdmin")
        self.assertEqual(200, srv.get(API + "/admin/datastore/txstore/groups", token=tok).status)
        r = srv.post(API + "/admin/datastore/txstore/gc", token=tok)
        self.assertEqual(403, r.status, r)
        self.assertIn("Datastore.Modify", r.data["message"])
        self.assertIn("/datastore/txstore", r.data["message"])
        perms = self.ok(srv.get(API + "/access/permissions",
                                params={"path": "/datastore/txstore"}, token=tok))
        self.assertEqual({"Datastore.Audit"}, set(perms["/datastore/txstore"]))

    def test_ticket_login_and_csrf(self):
        srv = self.srv
        self.make_user("dave@pbs", "dave's password")
        self.grant("/datastore", "dave@pbs", "DatastoreAdmin")
        r = srv.post(API + "/access/ticket", token=False,
                     params={"username": "dave@pbs", "password": "wrong"})
        self.assertEqual(401, r.status, r)
        d = self.ok(srv.post(API + "/access/ticket", token=False,
                             params={"username": "dave@pbs", "password": "dave's password"}))
        self.assertEqual("dave@pbs", d["username"])
        self.assertTrue(d["ticket"].startswith("PBS:dave@pbs:"))
        cookie = {"Cookie": "PBSAuthCookie=" + urllib.parse.quote(d["ticket"], safe="")}
        self.assertEqual(200, srv.get(API + "/config/datastore", token=False,
                                      headers=cookie).status)
        # A change without the CSRF token is refused; with it, done.
        p = {"name": "dvstore", "path": srv.datastore_path("dvstore")}
        self.assertEqual(401, srv.post(API + "/config/datastore", params=p, token=False,
                                       headers=cookie).status)
        self.grant("/datastore", "dave@pbs", "Admin")
        h = dict(cookie, CSRFPreventionToken=d["CSRFPreventionToken"])
        self.assertEqual(200, srv.post(API + "/config/datastore", params=p, token=False,
                                       headers=h).status)
        # A forged or foreign CSRF token does not pass.
        good = d["CSRFPreventionToken"]
        h = dict(cookie, CSRFPreventionToken=good[:-1] + ("1" if good[-1] == "0" else "0"))
        self.assertEqual(401, srv.put(API + "/config/datastore/dvstore", params={"comment": "x"},
                                      token=False, headers=h).status)
        # A tampered ticket is no ticket.
        bad = d["ticket"].replace("dave@pbs", "root@pam")
        self.assertEqual(401, srv.get(API + "/config/datastore", token=False, headers={
            "Cookie": "PBSAuthCookie=" + urllib.parse.quote(bad, safe="")}).status)
        # Renewal: the ticket as the password.
        d2 = self.ok(srv.post(API + "/access/ticket", token=False,
                              params={"username": "dave@pbs", "password": d["ticket"]}))
        self.assertTrue(d2["ticket"].startswith("PBS:dave@pbs:"))
        # Users change their own password, not their comment.
        r = srv.put(API + "/access/users/dave@pbs", params={"password": "new one"},
                    token=False, headers=dict(cookie, CSRFPreventionToken=d["CSRFPreventionToken"]))
        self.assertEqual(200, r.status, r)
        self.assertEqual(200, srv.post(API + "/access/ticket", token=False, params={
            "username": "dave@pbs", "password": "new one"}).status)

    def test_hand_edit_of_acl_cfg_takes_effect(self):
        srv = self.srv
        self.make_store("hestore")
        self.make_user("erin@pbs")
        tok = self.make_token("erin@pbs!t")
        self.assertEqual(403, srv.get(API + "/admin/datastore/hestore/status", token=tok).status)
        path = os.path.join(srv.config_dir, "acl.cfg")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text + "acl:1:/datastore/hestore:erin@pbs:DatastoreAudit\n"
                    "acl:1:/datastore/hestore:erin@pbs!t:DatastoreAudit\n")
        deadline = time.time() + 15
        while time.time() < deadline:
            if srv.get(API + "/admin/datastore/hestore/status", token=tok).status == 200:
                break
            time.sleep(0.1)
        self.assertEqual(200, srv.get(API + "/admin/datastore/hestore/status", token=tok).status)
        with open(path, "w") as f:
            f.write(text)
        deadline = time.time() + 15
        while time.time() < deadline:
            if srv.get(API + "/admin/datastore/hestore/status", token=tok).status == 403:
                break
            time.sleep(0.1)
        self.assertEqual(403, srv.get(API + "/admin/datastore/hestore/status", token=tok).status)

    def test_token_shadow_copied_from_pbs(self):
        """A crypt hash (as PBS stores token secrets) is accepted: checked once
        in the pool, then remembered; a wrong secret still fails."""
        import json
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        srv = self.srv
        secret = "0d6c3cd1-7a3e-4b8f-9d1e-2f4a5b6c7d8e"
        path = os.path.join(srv.config_dir, "token.shadow")
        with open(path) as f:
            table = json.load(f)
        table["root@pam!frompbs"] = crypt.crypt(secret, crypt.mksalt(crypt.METHOD_SHA256))
        with open(path + ".new", "w") as f:
            json.dump(table, f)
        os.rename(path + ".new", path)
        with open(os.path.join(srv.config_dir, "acl.cfg"), "a") as f:
            f.write("acl:1:/:root@pam!frompbs:Audit\n")
        tok = "root@pam!frompbs:" + secret
        deadline = time.time() + 15
        while time.time() < deadline:
            if srv.get(API + "/config/datastore", token=tok).status == 200:
                break
            time.sleep(0.1)
        for _ in range(3):
            self.assertEqual(200, srv.get(API + "/config/datastore", token=tok).status)
        self.assertEqual(401, srv.get(API + "/config/datastore",
                                      token="root@pam!frompbs:" + secret[:-1] + "0").status)
        # Audit only: no changes.
        self.assertEqual(403, srv.post(API + "/config/datastore", token=tok,
                                       params={"name": "nope", "path": "/tmp/x"}).status)

    def test_old_password_hash_rehashed_at_login(self):
        """shadow.json from PBS ($5$/$6$ crypt): accepted, replaced by yescrypt."""
        import json
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        srv = self.srv
        self.make_user("ivan@pbs", "placeholder")
        path = os.path.join(srv.config_dir, "shadow.json")
        with open(path) as f:
            table = json.load(f)
        table["ivan@pbs"] = crypt.crypt("ivans-old-pw", crypt.mksalt(crypt.METHOD_SHA512))
        with open(path, "w") as f:
            json.dump(table, f)
        self.assertEqual(401, srv.post(API + "/access/ticket", token=False, params={
            "username": "ivan@pbs", "password": "placeholder"}).status)
        self.ok(srv.post(API + "/access/ticket", token=False, params={
            "username": "ivan@pbs", "password": "ivans-old-pw"}))
        with open(path) as f:
            self.assertTrue(json.load(f)["ivan@pbs"].startswith("$y$"))
        self.assertEqual(0o600, os.stat(path).st_mode & 0o777)
        self.ok(srv.post(API + "/access/ticket", token=False, params={
            "username": "ivan@pbs", "password": "ivans-old-pw"}))

    def test_cairn_admin_token_seen_at_once(self):
        srv = self.srv
        out = srv.admin("user", "create", "frank@pbs", check=True)
        out = srv.admin("token", "create", "frank@pbs!cli", check=True)
        secret = out.stdout.strip().splitlines()[-1].split()[-1]
        srv.admin("acl", "update", "/", "Audit", "--auth-id", "frank@pbs", check=True)
        srv.admin("acl", "update", "/", "Audit", "--auth-id", "frank@pbs!cli", check=True)
        tok = "frank@pbs!cli:" + secret
        self.assertEqual(200, srv.get(API + "/config/datastore", token=tok).status)
        listed = srv.admin("acl", "list", check=True).stdout
        self.assertIn("frank@pbs!cli", listed)
        srv.admin("token", "remove", "frank@pbs!cli", check=True)
        self.assertEqual(401, srv.get(API + "/config/datastore", token=tok).status)


class ClientLogin(AccessCase):
    """The cairn client with a user's token, and with a password (ticket)."""

    def test_backup_with_user_token_and_with_password(self):
        import subprocess
        import tempfile
        self.srv = ch.Cairn(tls=False)
        self.addCleanup(self.srv.close)
        srv = self.srv
        self.make_store("clistore")
        self.make_user("henry@pbs", "henry-password")
        tok = self.make_token("henry@pbs!laptop")
        self.grant("/datastore/clistore", "henry@pbs", "DatastoreBackup")
        self.grant("/datastore/clistore", "henry@pbs!laptop", "DatastoreBackup")
        tmp = tempfile.mkdtemp(prefix="cairn-access-client-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", tmp]))
        src = os.path.join(tmp, "src")
        os.mkdir(src)
        with open(os.path.join(src, "f"), "wb") as f:
            f.write(os.urandom(100000))
        pwfile = os.path.join(tmp, "pw")
        with open(pwfile, "w") as f:
            f.write("henry-password\n")

        def run(repo, *extra, **env_extra):
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith("CAIRN_") or k == "CAIRN_BIN_DIR"}
            env.update({"CAIRN_REPOSITORY": repo, "CAIRN_PLAIN_HTTP": "1"}, **env_extra)
            return subprocess.run([ch.binary("cairn"), "backup", "root.didx:" + src,
                                   "--backup-id", "laptop"] + list(extra),
                                  stdin=subprocess.DEVNULL, capture_output=True, env=env,
                                  timeout=120)

        hostpart = "%s:%d:clistore" % (srv.host, srv.port)
        p = run("henry@pbs!laptop@" + hostpart, CAIRN_SECRET=tok.split(":", 1)[1])
        self.assertEqual(0, p.returncode, p.stderr)
        p = run("henry@pbs@" + hostpart, "--password-file", pwfile)
        self.assertEqual(0, p.returncode, p.stderr)
        # Wrong password: refused, and the password is not echoed anywhere.
        with open(pwfile, "w") as f:
            f.write("not-henrys-password\n")
        p = run("henry@pbs@" + hostpart, "--password-file", pwfile)
        self.assertNotEqual(0, p.returncode)
        self.assertNotIn(b"not-henrys-password", p.stderr + p.stdout)
        self.assertNotIn("not-henrys-password", srv.log_text())
        snaps = self.ok(srv.get(API + "/admin/datastore/clistore/snapshots"))
        self.assertEqual(2, len(snaps))
        self.assertEqual({"henry@pbs!laptop"}, {s.get("owner") for s in snaps})


class Lockout(AccessCase):
    def test_429_after_five_failures_then_expiry(self):
        self.srv = ch.Cairn(tls=False)
        self.addCleanup(self.srv.close)
        srv = self.srv
        authid = srv.token.split(":")[0]
        bad = authid + ":not-the-secret"
        for i in range(5):
            self.assertEqual(401, srv.get(API + "/config/datastore", token=bad).status, i)
        r = srv.get(API + "/config/datastore", token=bad)
        self.assertEqual(429, r.status, r)
        retry = int(r.headers["Retry-After"])
        self.assertTrue(0 < retry <= 60, retry)
        # Even right credentials from that address wait ...
        self.assertEqual(429, srv.get(API + "/config/datastore").status)
        # ... and login attempts too.
        self.assertEqual(429, srv.post(API + "/access/ticket", token=False, params={
            "username": "x@pbs", "password": "y"}).status)
        time.sleep(retry + 1)
        self.assertEqual(200, srv.get(API + "/config/datastore").status)


class NoSecretsInLogs(AccessCase):
    def test_logs_hold_no_secret(self):
        self.srv = ch.Cairn(tls=False, args=("--auth-fail-limit", "0"))
        self.addCleanup(self.srv.close)
        srv = self.srv
        self.make_user("gina@pbs", "gina-secret-password")
        tok = self.make_token("gina@pbs!t")
        secret = tok.split(":", 1)[1]
        d = self.ok(srv.post(API + "/access/ticket", token=False, params={
            "username": "gina@pbs", "password": "gina-secret-password"}))
        srv.post(API + "/access/ticket", token=False, params={
            "username": "gina@pbs", "password": "wrong-password-xyz"})
        srv.get(API + "/config/datastore",
                token="gina@pbs!t:" + secret[:-1] + ("1" if secret[-1] == "0" else "0"))
        srv.put(API + "/access/users/gina@pbs", params={"password": "second-password"})
        root_secret = srv.token.split(":", 1)[1]
        logs = srv.log_text()
        audit = open(os.path.join(srv.run_dir, "audit.log")).read() \
            if os.path.exists(os.path.join(srv.run_dir, "audit.log")) else ""
        task_logs = ""
        for p in glob.glob(os.path.join(srv.run_dir, "tasks", "log", "*")):
            task_logs += open(p, errors="replace").read()
        for text in (logs, audit, task_logs):
            for s in (secret, root_secret, "gina-secret-password", "wrong-password-xyz",
                      "second-password", d["ticket"].split("::")[1],
                      d["CSRFPreventionToken"].split(":")[1]):
                self.assertNotIn(s, text)
        self.assertIn("created token gina@pbs!t", audit)
        self.assertIn("created user gina@pbs", audit)


if __name__ == "__main__":
    unittest.main(verbosity=2)
