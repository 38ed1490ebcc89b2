#!/usr/bin/python3
"""Integration tests for issue #15: moving backup groups and namespaces on a
local datastore, against the real cairnd.

Covered: a group move (restores byte for byte, verifies, old place gone);
merges accepted and refused; every refusal of the API as a 4xx with nothing
changed; a namespace tree of depth 3 moved with max-depth unset, 0 and 1,
with and without delete-source. Races, made deterministic with the server's
test pause points (core_testpoint.h: CAIRN_TEST_PAUSE_POINTS; a job parks at
a named point until <dir>/<point>.go exists): a backup running in the source
group, a reader session open, GC parked between its listing and its marking
while a snapshot moves into a group the listing never saw (GC and a second GC
keep every chunk), prune and verify of the source while a move holds its
locks, and kill -9 of cairnd at several points of a move, then restart:
every snapshot exists in exactly one place and verifies, and
`cairn-admin datastore check` is clean.

Runs standalone (`python3 test_moves.py`, CAIRN_BIN_DIR=build/bin) and from
ctest; exits non-zero on failure.
"""

import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as ch  # noqa: E402
import pbs_proto as pp  # noqa: E402

API = "/api2/json"
TASKS = API + "/nodes/localhost/tasks"
STORE = "moves"
T0 = 1700000000
DAY = 86400
POINTS = ("move-locked", "move-journaled", "move-merge-first", "move-renamed",
          "move-ns-locked", "gc-listed")


def setUpModule():
    ch.require_programs("cairnd", "cairn-admin")


def rbytes(seed, n):
    return random.Random(seed).randbytes(n)


def quote(upid):
    return urllib.parse.quote(upid, safe="")


def age_all(ds, seconds):
    t = time.time() - seconds
    root = os.path.join(ds, ".chunks")
    for prefix in os.listdir(root):
        p = os.path.join(root, prefix)
        if not os.path.isdir(p):
            continue
        for name in os.listdir(p):
            fp = os.path.join(p, name)
            st = os.stat(fp)
            os.utime(fp, (t, st.st_mtime))


def ns_dir(ds, ns):
    p = ds
    for part in ns.split("/") if ns else []:
        p = os.path.join(p, "ns", part)
    return p


class Case(pp.CaseMixin, unittest.TestCase):
    """One server per class, started with every pause point armed; each
    point's .go file exists (so nothing parks) unless a test removes it."""

    @classmethod
    def setUpClass(cls):
        cls.pause_dir = tempfile.mkdtemp(prefix="cairn-pause-")
        cls.addClassCleanup(shutil.rmtree, cls.pause_dir, True)
        for p in POINTS:
            open(os.path.join(cls.pause_dir, p + ".go"), "w").close()
        cls.srv = ch.Cairn(tls=False, log_level="info",
                           env={"TZ": "UTC", "CAIRN_TEST_PAUSE_POINTS": ",".join(POINTS),
                                "CAIRN_TEST_PAUSE_DIR": cls.pause_dir})
        cls.addClassCleanup(cls.finish_server, cls.srv)
        cls.ds = cls.srv.datastore_path(STORE)
        r = cls.srv.post(API + "/config/datastore",
                         params={"name": STORE, "path": cls.ds,
                                 "tuning": "gc-atime-safety-check=false"})
        assert r.status == 200, r

    def setUp(self):
        self.seed = random.randrange(1 << 30)
        for p in POINTS:
            open(os.path.join(self.pause_dir, p + ".go"), "w").close()

    # ---- pause points ----

    def arm(self, point):
        os.unlink(os.path.join(self.pause_dir, point + ".go"))

    def wait_parked(self, point, timeout=30):
        path = os.path.join(self.pause_dir, point + ".parked")
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                self.fail("nothing parked at %s%s" % (point, self.log_tail()))
            time.sleep(0.01)

    def release(self, point):
        open(os.path.join(self.pause_dir, point + ".go"), "w").close()

    # ---- helpers ----

    def ns_create(self, ns):
        parent, _, name = ns.rpartition("/")
        params = {"name": name}
        if parent:
            params["parent"] = parent
        r = self.srv.post("%s/admin/datastore/%s/namespace" % (API, STORE), params=params)
        if r.status != 200:
            self.assertError(r, (400, 409), mentions="exist")

    def backup(self, bid, t, ns=None, seed=None, btype="host"):
        rng = random.Random(seed if seed is not None else hash((bid, t, ns, self.seed)))
        chunks = [pp.Chunk(rng.randbytes(3000 + rng.randrange(20000))) for _ in range(3)]
        b = self.open_session(pp.BackupSession(self.srv, STORE, btype, bid, t, ns=ns))
        b.upload_dynamic("root.pxar.didx", chunks)
        b.upload_manifest()
        b.finish()
        return b"".join(c.data for c in chunks)

    def restore(self, bid, t, ns=None, btype="host"):
        r = self.open_session(pp.ReaderSession(self.srv, STORE, btype, bid, t, ns=ns))
        try:
            _, data = r.restore_index("root.pxar.didx")
        finally:
            r.close()
        return data

    def snapshots(self, ns, bid=None, btype="host"):
        params = {"ns": ns} if ns else {}
        if bid:
            params.update({"backup-type": btype, "backup-id": bid})
        r = self.srv.get("%s/admin/datastore/%s/snapshots" % (API, STORE), params=params)
        if r.status == 404:
            return []
        rows = self.assertOk(r)
        return sorted((s["backup-type"], s["backup-id"], s["backup-time"]) for s in rows)

    def start(self, what, params):
        r = self.srv.post("%s/admin/datastore/%s/%s" % (API, STORE, what), params=params)
        return self.assertOk(r, "POST %s" % what)

    def wait(self, upid, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            st = self.assertOk(self.srv.get("%s/%s/status" % (TASKS, quote(upid))))
            if st["status"] == "stopped":
                return st
            if time.monotonic() > deadline:
                self.fail("task %s still running%s" % (upid, self.log_tail()))
            time.sleep(0.02)

    def log_text(self, upid):
        r = self.srv.get("%s/%s/log" % (TASKS, quote(upid)), params={"limit": 0})
        return "\n".join(e["t"] for e in self.assertOk(r))

    def run_task(self, what, params, want="OK"):
        upid = self.start(what, params)
        st = self.wait(upid)
        if want is not None:
            self.assertEqual(want, st["exitstatus"], self.log_text(upid))
        return upid, st

    def move_group(self, bid, target, ns=None, want="OK", **extra):
        p = {"backup-type": "host", "backup-id": bid, "target-ns": target}
        if ns:
            p["ns"] = ns
        p.update(extra)
        return self.run_task("move-group", p, want)

    def verify_ok(self, ns):
        upid, st = self.run_task("verify", {"ns": ns} if ns else {}, want=None)
        text = self.log_text(upid)
        self.assertEqual("OK", st["exitstatus"], text)
        return text

    def check_clean(self):
        p = self.srv.admin("datastore", "check", STORE)
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)


class MoveTest(Case):

    def test_group_move_restores_and_verifies(self):
        self.ns_create("g1")
        d1 = self.backup("gm", T0)
        d2 = self.backup("gm", T0 + 60)
        upid, st = self.move_group("gm", "g1")
        self.assertEqual("move-group", st["type"])
        self.assertIn("moved group host/gm", self.log_text(upid))
        self.assertEqual([], self.snapshots("", "gm"))
        self.assertEqual([("host", "gm", T0), ("host", "gm", T0 + 60)],
                         self.snapshots("g1", "gm"))
        self.assertFalse(os.path.exists(os.path.join(self.ds, "host", "gm")))
        self.assertEqual(d1, self.restore("gm", T0, ns="g1"))
        self.assertEqual(d2, self.restore("gm", T0 + 60, ns="g1"))
        self.verify_ok("g1")
        # And back again, to the root.
        self.run_task("gc", None)  # empties the journal, makes its gc-marking lock
        self.move_group("gm", "", ns="g1")
        self.move_group("gm", "g1")
        self.move_group("gm", "", ns="g1")
        self.assertEqual(d2, self.restore("gm", T0 + 60))
        # No GC was marking: each move emptied the journal before its line.
        with open(os.path.join(self.ds, ".move-journal")) as f:
            self.assertEqual("host/gm\n", f.read())
        self.check_clean()

    def test_merge_accepted_and_refused(self):
        self.ns_create("m1")
        old = self.backup("mg", T0, ns="m1")
        new = self.backup("mg", T0 + 100)
        # Refused without merging: 409, nothing changed.
        r = self.srv.post("%s/admin/datastore/%s/move-group" % (API, STORE),
                          params={"backup-type": "host", "backup-id": "mg",
                                  "target-ns": "m1", "merge-group": "false"})
        self.assertError(r, 409, mentions="merge")
        # Accepted: the target's snapshots are all older.
        with open(os.path.join(ns_dir(self.ds, "m1"), "host", "mg", "notes"), "w") as f:
            f.write("target notes")
        with open(os.path.join(self.ds, "host", "mg", "notes"), "w") as f:
            f.write("source notes")
        upid, _ = self.move_group("mg", "m1")
        self.assertIn("notes differ", self.log_text(upid))
        self.assertEqual([("host", "mg", T0), ("host", "mg", T0 + 100)],
                         self.snapshots("m1", "mg"))
        self.assertFalse(os.path.exists(os.path.join(self.ds, "host", "mg")))
        with open(os.path.join(ns_dir(self.ds, "m1"), "host", "mg", "notes")) as f:
            self.assertEqual("target notes", f.read())
        self.assertEqual(old, self.restore("mg", T0, ns="m1"))
        self.assertEqual(new, self.restore("mg", T0 + 100, ns="m1"))
        # Refused: a source snapshot older than the target's newest.
        self.backup("mg", T0 + 50)
        before = self.snapshots("", "mg") + self.snapshots("m1", "mg")
        r = self.srv.post("%s/admin/datastore/%s/move-group" % (API, STORE),
                          params={"backup-type": "host", "backup-id": "mg", "target-ns": "m1"})
        self.assertError(r, 400, mentions="older")
        self.assertEqual(before, self.snapshots("", "mg") + self.snapshots("m1", "mg"))
        # Refused: a different owner.
        self.backup("mo", T0 + 500)
        self.backup("mo", T0, ns="m1")
        r = self.srv.post("%s/admin/datastore/%s/change-owner" % (API, STORE),
                          params={"backup-type": "host", "backup-id": "mo", "ns": "m1",
                                  "new-owner": "someone@pbs"})
        self.assertOk(r)
        r = self.srv.post("%s/admin/datastore/%s/move-group" % (API, STORE),
                          params={"backup-type": "host", "backup-id": "mo", "target-ns": "m1"})
        self.assertError(r, 400, mentions="owner")
        self.verify_ok("m1")

    def test_refusals_change_nothing(self):
        self.ns_create("r1")
        self.ns_create("r1/r2")
        self.backup("rf", T0, ns="r1")
        url = "%s/admin/datastore/%s/" % (API, STORE)
        before = sorted(os.walk(self.ds))
        cases = [
            ("move-group", {"backup-type": "host", "backup-id": "rf", "ns": "r1",
                            "target-ns": "r1"}, 400, "same"),
            ("move-group", {"backup-type": "host", "backup-id": "rf", "ns": "r1",
                            "target-ns": "nope"}, 404, "does not exist"),
            ("move-group", {"backup-type": "host", "backup-id": "none", "ns": "r1",
                            "target-ns": ""}, 404, "does not exist"),
            ("move-group", {"backup-type": "host", "backup-id": "../x", "target-ns": ""},
             400, "backup-id"),
            ("move-namespace", {"ns": "", "target-ns": "x"}, 400, "root"),
            ("move-namespace", {"target-ns": "x"}, 400, "ns"),
            ("move-namespace", {"ns": "r1", "target-ns": "r1"}, 400, "same"),
            ("move-namespace", {"ns": "r1", "target-ns": "r1/r2/x"}, 400, "inside"),
            ("move-namespace", {"ns": "r1", "target-ns": "nope/x"}, 404, "parent"),
            ("move-namespace", {"ns": "nope", "target-ns": "x"}, 404, "does not exist"),
            ("move-namespace", {"ns": "r1", "target-ns": "a/b/c/d/e/f/g"}, 400, None),
            ("move-namespace", {"ns": "r1", "target-ns": "x", "max-depth": "8"}, 400, None),
        ]
        for what, params, status, mention in cases:
            r = self.srv.post(url + what, params=params)
            self.assertError(r, status, "%s %r" % (what, params), mentions=mention)
        # Depth: r1 has r1/r2 below it, so a target at depth 7 makes depth 8.
        for i in range(1, 7):
            self.ns_create("/".join("d%d" % k for k in range(1, i + 1)))
        r = self.srv.post(url + "move-namespace",
                          params={"ns": "r1", "target-ns": "d1/d2/d3/d4/d5/d6/d7"})
        self.assertError(r, 400, mentions="deeper")
        r = self.srv.post(url + "move-namespace", params={"ns": "r1", "target-ns": "d1/d2/d3/d4/d5/d6/d7",
                                                          "max-depth": "0"})
        upid = self.assertOk(r)
        self.assertEqual("OK", self.wait(upid)["exitstatus"], self.log_text(upid))
        self.assertEqual([("host", "rf", T0)], self.snapshots("d1/d2/d3/d4/d5/d6/d7", "rf"))
        self.assertTrue(os.path.isdir(ns_dir(self.ds, "r1/r2")), "deeper namespace kept")
        # Maintenance mode read-only: 409 before anything changes.
        before = sorted(os.walk(self.ds))
        self.assertOk(self.srv.put("%s/config/datastore/%s" % (API, STORE),
                                   params={"maintenance-mode": "read-only"}))
        try:
            r = self.srv.post(url + "move-group",
                              params={"backup-type": "host", "backup-id": "rf",
                                      "ns": "d1/d2/d3/d4/d5/d6/d7", "target-ns": ""})
            self.assertError(r, 409, mentions="maintenance")
        finally:
            self.assertOk(self.srv.put("%s/config/datastore/%s" % (API, STORE),
                                       params={"delete": "maintenance-mode"}))
        self.assertEqual(before, sorted(os.walk(self.ds)))

    def tree(self, top):
        """ns top, top/b, top/b/c, each with one group; returns restore data."""
        self.ns_create(top)
        self.ns_create(top + "/b")
        self.ns_create(top + "/b/c")
        return {ns: self.backup("t", T0, ns=ns) for ns in (top, top + "/b", top + "/b/c")}

    def test_namespace_tree_whole(self):
        data = self.tree("ta")
        upid, st = self.run_task("move-namespace", {"ns": "ta", "target-ns": "tx"})
        self.assertEqual("move-namespace", st["type"])
        for src, dst in (("ta", "tx"), ("ta/b", "tx/b"), ("ta/b/c", "tx/b/c")):
            self.assertEqual(data[src], self.restore("t", T0, ns=dst))
        self.assertFalse(os.path.exists(ns_dir(self.ds, "ta")), self.log_text(upid))
        self.verify_ok("tx")
        self.check_clean()

    def test_namespace_tree_depth0_and_depth1(self):
        data = self.tree("tb")
        self.run_task("move-namespace", {"ns": "tb", "target-ns": "ty", "max-depth": "0"})
        self.assertEqual(data["tb"], self.restore("t", T0, ns="ty"))
        self.assertEqual([], self.snapshots("tb", "t"))
        self.assertEqual(data["tb/b"], self.restore("t", T0, ns="tb/b"))
        self.assertFalse(os.path.exists(ns_dir(self.ds, "ty/b")))
        # max-depth 1, keeping the source: b moves, b/c stays.
        self.run_task("move-namespace", {"ns": "tb", "target-ns": "ty", "max-depth": "1",
                                         "delete-source": "false"})
        self.assertEqual(data["tb/b"], self.restore("t", T0, ns="ty/b"))
        self.assertEqual(data["tb/b/c"], self.restore("t", T0, ns="tb/b/c"))
        self.assertTrue(os.path.isdir(ns_dir(self.ds, "tb/b")))
        # The rest, with delete-source: the whole source goes.
        self.run_task("move-namespace", {"ns": "tb", "target-ns": "ty"})
        self.assertEqual(data["tb/b/c"], self.restore("t", T0, ns="ty/b/c"))
        self.assertFalse(os.path.exists(ns_dir(self.ds, "tb")))
        self.verify_ok("ty")

    def test_namespace_move_without_delete_source(self):
        data = self.tree("tc")
        self.run_task("move-namespace", {"ns": "tc", "target-ns": "tz",
                                         "delete-source": "false"})
        for ns in ("tc", "tc/b", "tc/b/c"):
            self.assertTrue(os.path.isdir(ns_dir(self.ds, ns)))
            self.assertEqual([], self.snapshots(ns, "t"))
        self.assertEqual(data["tc/b/c"], self.restore("t", T0, ns="tz/b/c"))


class PrivilegeTest(Case):
    """move-group: Datastore.Modify, or Datastore.Prune and ownership, on the
    source; Datastore.Modify, or Datastore.Backup and ownership, on the
    target. move-namespace: Datastore.Modify on both parents."""

    def test_privileges(self):
        srv = self.srv
        for ns in ("pa", "pb", "pc"):
            self.ns_create(ns)
        self.assertOk(srv.post(API + "/access/users", params={"userid": "mover@pbs"}))
        d = self.assertOk(srv.post(API + "/access/users/mover@pbs/token/t"))
        token = "mover@pbs!t:%s" % d["value"]
        for path, role in (("/datastore/%s/pa" % STORE, "DatastorePowerUser"),
                           ("/datastore/%s/pb" % STORE, "DatastoreBackup")):
            for who in ("mover@pbs", "mover@pbs!t"):  # a token never exceeds its user
                self.assertOk(srv.put(API + "/access/acl", params={
                    "path": path, "auth-id": who, "role": role, "propagate": "1"}))
        api = pp.Endpoint(srv.host, srv.port, token)
        b = self.open_session(pp.BackupSession(api, STORE, "host", "own", T0, ns="pa"))
        b.upload_dynamic("root.pxar.didx", [pp.Chunk(rbytes(3, 5000))])
        b.upload_manifest()
        b.finish()
        self.backup("foreign", T0, ns="pa")  # owned by root

        def move(bid, target):
            return api.request("POST", "%s/admin/datastore/%s/move-group" % (API, STORE),
                               params={"ns": "pa", "backup-type": "host", "backup-id": bid,
                                       "target-ns": target})
        self.assertError(move("foreign", "pb"), 403, mentions="permission")
        self.assertError(move("own", "pc"), 403, mentions="permission")
        self.assertEqual([("host", "own", T0)], self.snapshots("pa", "own"))
        upid = self.assertOk(move("own", "pb"))
        self.assertEqual("OK", self.wait(upid)["exitstatus"], self.log_text(upid))
        self.assertEqual([("host", "own", T0)], self.snapshots("pb", "own"))
        r = api.request("POST", "%s/admin/datastore/%s/move-namespace" % (API, STORE),
                        params={"ns": "pa", "target-ns": "pz"})
        self.assertError(r, 403, mentions="permission")


class RaceTest(Case):

    def test_backup_running_in_source_group(self):
        self.ns_create("b1")
        self.backup("br", T0)
        b = self.open_session(pp.BackupSession(self.srv, STORE, "host", "br", T0 + 60))
        chunks = [pp.Chunk(rbytes(7, 30000))]
        b.upload_dynamic("root.pxar.didx", chunks)
        upid, st = self.move_group("br", "b1", want=None)
        self.assertIn("ERROR", st["exitstatus"])
        self.assertIn("busy", st["exitstatus"])
        self.assertIn("retrying", self.log_text(upid))
        # An abort while it waits for the next attempt ends it at once.
        upid = self.start("move-group", {"backup-type": "host", "backup-id": "br",
                                         "target-ns": "b1"})
        self.assertOk(self.srv.delete("%s/%s" % (TASKS, quote(upid))))
        self.assertIn("abort", self.wait(upid)["exitstatus"])
        b.upload_manifest()
        b.finish()
        self.assertEqual(chunks[0].data, self.restore("br", T0 + 60))
        self.move_group("br", "b1")
        self.assertEqual(chunks[0].data, self.restore("br", T0 + 60, ns="b1"))

    def test_reader_open(self):
        self.ns_create("rd")
        data = self.backup("rr", T0)
        r = self.open_session(pp.ReaderSession(self.srv, STORE, "host", "rr", T0))
        upid, st = self.move_group("rr", "rd", want=None)
        self.assertIn("in use", st["exitstatus"])
        _, got = r.restore_index("root.pxar.didx")  # the reader is undisturbed
        self.assertEqual(data, got)
        r.close()
        self.move_group("rr", "rd")
        self.assertEqual(data, self.restore("rr", T0, ns="rd"))

    def test_gc_between_listing_and_marking(self):
        # GC lists the groups, parks; the group moves into a namespace whose
        # group directory GC never listed; GC marks and sweeps. Without the
        # move journal those chunks would be swept (their atime is old).
        self.ns_create("gz")
        data = self.backup("gcm", T0, ns="gz")
        age_all(self.ds, 2 * DAY)
        self.arm("gc-listed")
        gc = self.start("gc", None)
        self.wait_parked("gc-listed")
        self.move_group("gcm", "", ns="gz")
        self.ns_create("gy")
        self.backup("gcn", T0, ns="gy")
        self.move_group("gcn", "", ns="gy")  # GC is marking: the journal keeps both
        with open(os.path.join(self.ds, ".move-journal")) as f:
            self.assertEqual(["host/gcm", "host/gcn"], f.read().split()[-2:])
        self.release("gc-listed")
        st = self.wait(gc)
        self.assertEqual("OK", st["exitstatus"], self.log_text(gc))
        self.assertIn("moves put elsewhere", self.log_text(gc))
        self.assertEqual(data, self.restore("gcm", T0))
        age_all(self.ds, 2 * DAY)
        upid, st = self.run_task("gc", None)
        self.assertEqual(data, self.restore("gcm", T0))
        self.verify_ok("")
        self.assertEqual(0, os.path.getsize(os.path.join(self.ds, ".move-journal")))

    def test_prune_and_verify_during_move(self):
        self.ns_create("pv")
        self.backup("pr", T0)
        self.backup("pr", T0 + 60)
        self.arm("move-locked")
        mv = self.start("move-group", {"backup-type": "host", "backup-id": "pr",
                                       "target-ns": "pv"})
        self.wait_parked("move-locked")
        # Verify: the snapshots are locked by the move; verify skips them
        # with a clear note and does not fail.
        upid, st = self.run_task("verify", {"backup-type": "host", "backup-id": "pr"},
                                 want=None)
        self.assertNotIn("ERROR", st["exitstatus"], self.log_text(upid))
        # Prune: nothing can be removed while the move holds the snapshots.
        r = self.srv.post("%s/admin/datastore/%s/prune" % (API, STORE),
                          params={"backup-type": "host", "backup-id": "pr", "keep-last": "1"})
        rows = self.assertOk(r)
        self.assertTrue(all(not x.get("removed") for x in rows), rows)
        self.release("move-locked")
        self.assertEqual("OK", self.wait(mv)["exitstatus"], self.log_text(mv))
        self.assertEqual([("host", "pr", T0), ("host", "pr", T0 + 60)],
                         self.snapshots("pv", "pr"))
        self.verify_ok("pv")

    def assertExactlyOnce(self, places, times, bid):
        found = {}
        for ns in places:
            for (_, _, t) in self.snapshots(ns, bid):
                found.setdefault(t, []).append(ns)
        self.assertEqual(sorted(times), sorted(found), found)
        for t, where in found.items():
            self.assertEqual(1, len(where), "snapshot %d in %r" % (t, where))

    def test_kill9_during_moves(self):
        srv = self.srv
        for i, point in enumerate(("move-locked", "move-journaled", "move-merge-first",
                                   "move-renamed")):
            bid = "k%d" % i
            self.ns_create("kn")
            times = [T0 + 10, T0 + 20]
            data = {t: self.backup(bid, t) for t in times}
            if point == "move-merge-first":
                data[T0] = self.backup(bid, T0, ns="kn")
                times.append(T0)
            self.arm(point)
            self.start("move-group", {"backup-type": "host", "backup-id": bid,
                                      "target-ns": "kn"})
            self.wait_parked(point)
            srv.kill9()
            os.unlink(os.path.join(self.pause_dir, point + ".parked"))
            self.release(point)
            srv.restart()
            self.assertExactlyOnce(("", "kn"), times, bid)
            for t in times:
                where = "" if self.snapshots("", bid) and t in [x[2] for x in
                                                                self.snapshots("", bid)] else "kn"
                self.assertEqual(data[t], self.restore(bid, t, ns=where or None))
            self.check_clean()
            # The move can be run again and completes.
            if self.snapshots("", bid):
                self.move_group(bid, "kn")
            self.assertExactlyOnce(("kn",), times, bid)
        self.verify_ok("kn")
        # A namespace move killed while it holds the source namespace.
        self.tree_kill()

    def tree_kill(self):
        self.ns_create("ka")
        self.ns_create("ka/b")
        d = {ns: self.backup("kt", T0, ns=ns) for ns in ("ka", "ka/b")}
        self.arm("move-ns-locked")
        self.start("move-namespace", {"ns": "ka", "target-ns": "kb"})
        self.wait_parked("move-ns-locked")
        self.srv.kill9()
        os.unlink(os.path.join(self.pause_dir, "move-ns-locked.parked"))
        self.release("move-ns-locked")
        self.srv.restart()
        self.assertEqual(d["ka/b"], self.restore("kt", T0, ns="ka/b"))
        self.run_task("move-namespace", {"ns": "ka", "target-ns": "kb"})
        self.assertEqual(d["ka"], self.restore("kt", T0, ns="kb"))
        self.assertEqual(d["ka/b"], self.restore("kt", T0, ns="kb/b"))
        self.check_clean()


class ClientTest(Case):
    """`cairn group|namespace move` (follows the task log, exit status) and
    the same verbs of cairn-admin beside the running server (same locks)."""

    def cairn(self, *args):
        e = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")
             or k == "CAIRN_BIN_DIR"}
        authid, secret = self.srv.token.rsplit(":", 1)
        e["CAIRN_REPOSITORY"] = "%s@%s:%d:%s" % (authid, self.srv.host, self.srv.port, STORE)
        e["CAIRN_SECRET"] = secret
        return subprocess.run([ch.binary("cairn")] + list(args) + ["--plain-http"],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              env=e, timeout=120)

    def test_cairn_client_moves(self):
        self.ns_create("c1")
        data = self.backup("cl", T0)
        p = self.cairn("group", "move", "host/cl", "--target-ns", "c1")
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        self.assertIn("moved group host/cl", p.stdout)
        self.assertIn("TASK OK", p.stdout)
        self.assertEqual(data, self.restore("cl", T0, ns="c1"))
        # Refused at once: exit non-zero with the server's message.
        p = self.cairn("group", "move", "host/cl", "--target-ns", "nope", "--ns", "c1")
        self.assertNotEqual(0, p.returncode)
        self.assertIn("does not exist", p.stderr)
        # A task that fails (a reader holds the snapshot): non-zero.
        r = self.open_session(pp.ReaderSession(self.srv, STORE, "host", "cl", T0, ns="c1"))
        p = self.cairn("group", "move", "host/cl", "--ns", "c1", "--target-ns", "")
        r.close()
        self.assertNotEqual(0, p.returncode, p.stdout)
        self.assertIn("in use", p.stderr)
        p = self.cairn("namespace", "move", "c1", "--target-ns", "c2", "--max-depth", "0")
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        self.assertEqual(data, self.restore("cl", T0, ns="c2"))
        self.assertFalse(os.path.exists(ns_dir(self.ds, "c1")))
        p = self.cairn("group", "move", "host/cl")
        self.assertEqual(2, p.returncode)

    def test_cairn_admin_moves(self):
        self.ns_create("a1")
        data = self.backup("ad", T0, ns="a1")
        r = self.open_session(pp.ReaderSession(self.srv, STORE, "host", "ad", T0, ns="a1"))
        p = self.srv.admin("group", "move", STORE, "host/ad", "--ns", "a1", "--target-ns", "")
        self.assertEqual(1, p.returncode, p.stdout + p.stderr)
        self.assertIn("in use", p.stderr)
        p = self.srv.admin("namespace", "move", STORE, "a1", "--target-ns", "a2")
        self.assertEqual(1, p.returncode, p.stdout + p.stderr)
        self.assertIn("busy", p.stderr)
        r.close()
        p = self.srv.admin("group", "move", STORE, "host/ad", "--ns", "a1", "--target-ns", "")
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        self.assertEqual(data, self.restore("ad", T0))
        p = self.srv.admin("group", "move", STORE, "host/ad", "--target-ns", "a1")
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        p = self.srv.admin("namespace", "move", STORE, "a1", "--target-ns", "a2")
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        self.assertIn("moved group host/ad", p.stdout)
        self.assertEqual(data, self.restore("ad", T0, ns="a2"))
        self.assertFalse(os.path.exists(ns_dir(self.ds, "a1")))
        self.check_clean()


if __name__ == "__main__":
    unittest.main()
