#!/usr/bin/python3
"""Integration tests for issue #5 item 4: POST .../prune (one group) and
POST .../prune-datastore (a task) against the real cairnd.

Hand-written tables cover every rule (keep-last, -hourly, -daily, -weekly
across an ISO year boundary, -monthly, -yearly, combinations, protected and
unfinished snapshots, keep-all); random groups are cross-checked against an
independent Python model of PBS's algorithm (reference section 6). The
server runs with TZ=UTC so periods are UTC. Snapshots are written directly
on disk (a manifest makes one finished), except where a running backup or
reader session must hold a lock.

Runs standalone and from ctest; exits non-zero on failure.
"""

import calendar
import os
import random
import shutil
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as ch  # noqa: E402
import pbs_proto as pp  # noqa: E402

API = "/api2/json"
TASKS = API + "/nodes/localhost/tasks"
STORE = "prds"
KEYS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


def setUpModule():
    ch.require_programs("cairnd", "cairn-admin")


def ts(s):
    """'2021-01-04 10:05' (UTC) -> epoch."""
    return calendar.timegm(time.strptime(s, "%Y-%m-%d %H:%M"))


def model(snaps, keep):
    """PBS's prune selection. snaps: [(time, finished, protected)];
    keep: {rule: n}. Returns {time: (mark, reason)}."""
    order = sorted(snaps, key=lambda s: -s[0])
    mark = {}
    if not any(keep.get(k) for k in KEYS):
        return {t: ("protected" if p else "keep", "protected" if p else "keep-all")
                for t, f, p in order}
    seen_finished = False
    partial = False
    for t, f, p in order:
        if f:
            seen_finished = True
        elif not seen_finished and not partial:
            mark[t] = ("keep-partial", "keep-partial")
            partial = True
        else:
            mark[t] = ("remove", "unfinished")
    fmt = {"hourly": "%Y/%m/%d/%H", "daily": "%Y/%m/%d", "weekly": "%G/%V",
           "monthly": "%Y/%m", "yearly": "%Y"}

    def key(rule, t):
        return t if rule == "last" else time.strftime(fmt[rule], time.gmtime(t))

    for rule in KEYS:
        n = keep.get(rule)
        if not n:
            continue
        already = {key(rule, t) for t, _, _ in order if mark.get(t, ("",))[0] == "keep"}
        chosen = set()
        for t, f, p in order:
            if t in mark:
                continue
            if p:
                mark[t] = ("protected", "protected")
                continue
            k = key(rule, t)
            if k in already:
                continue
            if k not in chosen:
                if len(chosen) >= n:
                    break
                chosen.add(k)
                mark[t] = ("keep", "keep-" + rule)
            else:
                mark[t] = ("remove", "superseded")
    out = {}
    for t, f, p in order:
        m = mark.get(t, ("remove", "not-selected"))
        if p:
            m = ("protected", "protected")
        out[t] = m
    return out


class PruneCase(pp.CaseMixin, unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = ch.Cairn(tls=False, log_level="info", env={"TZ": "UTC"})
        cls.addClassCleanup(cls.finish_server, cls.srv)
        cls.ds = cls.srv.datastore_path(STORE)
        r = cls.srv.post(API + "/config/datastore", params={"name": STORE, "path": cls.ds})
        assert r.status == 200, r

    def make_group(self, backup_id, snaps, ns=None, btype="vm"):
        """snaps: [(time, finished, protected)]; replaces the group."""
        gdir = pp.group_dir(self.ds, btype, backup_id, ns)
        shutil.rmtree(gdir, ignore_errors=True)
        os.makedirs(gdir)
        with open(os.path.join(gdir, "owner"), "w") as f:
            f.write("root@pam\n")
        for t, finished, protected in snaps:
            d = pp.snapshot_dir(self.ds, btype, backup_id, t, ns)
            os.makedirs(d)
            if finished:
                with open(os.path.join(d, pp.MANIFEST), "wb") as f:
                    f.write(pp.manifest_blob(pp.manifest(btype, backup_id, t, [])))
            if protected:
                open(os.path.join(d, ".protected"), "w").close()

    def on_disk(self, backup_id, ns=None, btype="vm"):
        gdir = pp.group_dir(self.ds, btype, backup_id, ns)
        return sorted(calendar.timegm(time.strptime(n, "%Y-%m-%dT%H:%M:%SZ"))
                      for n in os.listdir(gdir) if n != "owner")

    def prune(self, backup_id, keep, dry_run=True, ns=None, btype="vm", status=200):
        params = {"backup-type": btype, "backup-id": backup_id,
                  "dry-run": "1" if dry_run else "0"}
        for k, v in keep.items():
            params["keep-" + k] = str(v)
        if ns:
            params["ns"] = ns
        r = self.srv.post("%s/admin/datastore/%s/prune" % (API, STORE), params=params)
        if status != 200:
            return r
        return self.assertOk(r, "prune %r" % keep)

    def check(self, snaps, keep, expect_kept, name="g"):
        """Dry run must keep exactly `expect_kept` (times) and agree with the
        model; then the real run removes the rest."""
        self.make_group(name, snaps)
        res = self.prune(name, keep, dry_run=True)
        got = {e["backup-time"]: e for e in res}
        self.assertEqual(sorted((t for t, _, _ in snaps), reverse=True),
                         [e["backup-time"] for e in res], "newest first, every snapshot")
        kept = {t for t, e in got.items() if e["keep"]}
        self.assertEqual(set(expect_kept), kept, "keep %r" % keep)
        want = model(snaps, keep)
        for t, e in got.items():
            self.assertEqual(want[t], (e["mark"], e["reason"]), "snapshot %d, keep %r" % (t, keep))
            self.assertEqual(e["protected"], e["mark"] == "protected")
            self.assertEqual("vm", e["backup-type"])
            self.assertEqual(name, e["backup-id"])
        self.assertEqual(sorted(t for t, _, _ in snaps), self.on_disk(name), "dry run removed")
        res = self.prune(name, keep, dry_run=False)
        for e in res:
            if not e["keep"]:
                self.assertTrue(e["removed"], e)
        self.assertEqual(sorted(expect_kept), self.on_disk(name))


def fin(*times):
    return [(t, True, False) for t in times]


class RuleTables(PruneCase):

    def test_keep_last(self):
        s = fin(*(ts("2024-03-01 10:00") + i * 3600 for i in range(5)))
        self.check(s, {"last": 3}, [t for t, _, _ in s[2:]])
        self.check(s, {"last": 10}, [t for t, _, _ in s])

    def test_keep_hourly(self):
        s = fin(ts("2024-03-01 10:05"), ts("2024-03-01 10:30"), ts("2024-03-01 11:10"),
                ts("2024-03-01 11:50"), ts("2024-03-01 12:20"))
        self.check(s, {"hourly": 2}, [ts("2024-03-01 12:20"), ts("2024-03-01 11:50")])
        self.check(s, {"hourly": 5}, [ts("2024-03-01 12:20"), ts("2024-03-01 11:50"),
                                      ts("2024-03-01 10:30")])

    def test_keep_daily(self):
        s = fin(ts("2024-03-01 08:00"), ts("2024-03-01 20:00"), ts("2024-03-02 09:00"),
                ts("2024-03-02 23:59"), ts("2024-03-04 00:00"))
        self.check(s, {"daily": 2}, [ts("2024-03-04 00:00"), ts("2024-03-02 23:59")])
        self.check(s, {"daily": 3}, [ts("2024-03-04 00:00"), ts("2024-03-02 23:59"),
                                     ts("2024-03-01 20:00")])

    def test_keep_weekly_iso_year_boundary(self):
        # 2020-12-31 (Thu) and 2021-01-03 (Sun) are both ISO week 2020-W53;
        # 2021-01-04 (Mon) starts 2021-W01.
        s = fin(ts("2020-12-28 12:00"), ts("2020-12-31 12:00"), ts("2021-01-03 12:00"),
                ts("2021-01-04 12:00"))
        self.check(s, {"weekly": 2}, [ts("2021-01-04 12:00"), ts("2021-01-03 12:00")])
        s2 = fin(ts("2020-12-20 12:00"), ts("2020-12-27 12:00"), ts("2021-01-03 12:00"))
        self.check(s2, {"weekly": 3}, [t for t, _, _ in s2], name="w2")

    def test_keep_monthly_and_yearly(self):
        s = fin(ts("2022-11-15 00:00"), ts("2022-12-01 00:00"), ts("2022-12-31 23:00"),
                ts("2023-01-10 00:00"), ts("2023-06-01 00:00"), ts("2023-06-30 00:00"))
        self.check(s, {"monthly": 3}, [ts("2023-06-30 00:00"), ts("2023-01-10 00:00"),
                                       ts("2022-12-31 23:00")])
        self.check(s, {"yearly": 2}, [ts("2023-06-30 00:00"), ts("2022-12-31 23:00")])

    def test_combined_rules(self):
        # keep-last 2 takes the two newest (same day); keep-daily 2 then skips
        # that day (already kept) and takes the next two days; keep-monthly 2
        # skips months already kept and takes one more month.
        s = fin(ts("2024-01-20 10:00"), ts("2024-02-27 10:00"), ts("2024-02-28 10:00"),
                ts("2024-02-28 18:00"), ts("2024-03-01 09:00"), ts("2024-03-02 08:00"),
                ts("2024-03-02 20:00"))
        self.check(s, {"last": 2, "daily": 2, "monthly": 2},
                   [ts("2024-03-02 20:00"), ts("2024-03-02 08:00"), ts("2024-03-01 09:00"),
                    ts("2024-02-28 18:00"), ts("2024-01-20 10:00")])

    def test_protected_unfinished_and_keep_all(self):
        t = [ts("2024-05-01 00:00") + i * 86400 for i in range(6)]
        s = [(t[0], True, True), (t[1], True, False), (t[2], False, False),
             (t[3], True, False), (t[4], True, True), (t[5], False, False)]
        # newest unfinished: keep-partial; the older unfinished: removed;
        # protected ones: kept, not counted.
        self.check(s, {"last": 1}, [t[0], t[3], t[4], t[5]])
        self.check(s, {}, [x for x, _, _ in s], name="all")
        res = self.prune("all", {}, dry_run=True)
        self.assertTrue(all(e["keep"] for e in res))
        self.assertEqual({"keep-all", "protected"}, {e["reason"] for e in res})

    def test_random_groups_match_model(self):
        rnd = random.Random(2024)
        base = ts("2023-12-20 00:00")
        for i in range(12):
            times = sorted({base + rnd.randrange(0, 40 * 86400) for _ in range(rnd.randrange(1, 25))})
            snaps = [(x, rnd.random() > 0.1, rnd.random() < 0.1) for x in times]
            keep = {k: rnd.randrange(1, 4) for k in KEYS if rnd.random() < 0.4}
            want = model(snaps, keep)
            kept = [x for x, (m, _) in want.items() if m != "remove"]
            self.check(snaps, keep, kept, name="r%d" % i)

    def test_errors(self):
        self.make_group("e", fin(ts("2024-01-01 00:00")))
        r = self.prune("e", {"last": 0}, status=400)
        self.assertError(r, 400, mentions="keep-last")
        r = self.prune("e", {"daily": "x"}, status=400)
        self.assertError(r, 400)
        r = self.prune("nosuch", {"last": 1}, status=404)
        self.assertError(r, 404)
        r = self.prune("../e", {"last": 1}, status=400)
        self.assertError(r, 400)
        r = self.srv.post("%s/admin/datastore/%s/prune" % (API, STORE),
                          params={"backup-type": "vm"})
        self.assertError(r, 400)
        r = self.srv.post("%s/admin/datastore/nosuch/prune" % API,
                          params={"backup-type": "vm", "backup-id": "e"})
        self.assertError(r, 404)


class LockedSnapshots(PruneCase):

    def backup(self, backup_id, t):
        b = self.open_session(pp.BackupSession(self.srv, STORE, "host", backup_id, t))
        b.upload_blob("client.log.blob", b"log %d\n" % t)
        b.upload_manifest()
        b.finish()

    def test_snapshot_in_use_is_not_removed(self):
        t0 = 1700000000
        for i in range(3):
            self.backup("busy", t0 + i * 60)
        # A reader holds a shared lock on the oldest snapshot.
        rd = self.open_session(pp.ReaderSession(self.srv, STORE, "host", "busy", t0))
        try:
            res = self.prune("busy", {"last": 1}, dry_run=False, btype="host")
            by_time = {e["backup-time"]: e for e in res}
            self.assertFalse(by_time[t0 + 60]["keep"])
            self.assertTrue(by_time[t0 + 60]["removed"])
            locked = by_time[t0]
            self.assertEqual("remove", locked["mark"])
            self.assertFalse(locked["removed"])
            self.assertTrue(locked["keep"], "a snapshot that stays is reported as kept")
            self.assertIn("in use", locked["error"])
            self.assertEqual([t0, t0 + 120], self.on_disk("busy", btype="host"))
        finally:
            rd.close()
        res = self.prune("busy", {"last": 1}, dry_run=False, btype="host")
        self.assertEqual([t0 + 120], self.on_disk("busy", btype="host"))


class PruneDatastoreTask(PruneCase):

    def wait(self, upid, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            st = self.assertOk(self.srv.get("%s/%s/status"
                                            % (TASKS, urllib.parse.quote(upid, safe=""))))
            if st["status"] == "stopped":
                return st
            self.assertLess(time.monotonic(), deadline, "task still running")
            time.sleep(0.05)

    def log_text(self, upid):
        r = self.srv.get("%s/%s/log" % (TASKS, urllib.parse.quote(upid, safe="")),
                         params={"limit": "0"})
        return "\n".join(e["t"] for e in r.data["data"])

    def test_namespace_subtree(self):
        for ns in ("a", "a/b"):
            parent, _, name = ns.rpartition("/")
            params = {"name": name}
            if parent:
                params["parent"] = parent
            r = self.srv.post("%s/admin/datastore/%s/namespace" % (API, STORE), params=params)
            if r.status != 200:  # namespace API elsewhere: make the directories
                os.makedirs(os.path.join(self.ds, *sum((["ns", c] for c in ns.split("/")), [])),
                            exist_ok=True)
        t = [ts("2024-05-01 00:00") + i * 3600 for i in range(4)]
        self.make_group("x", fin(*t))
        self.make_group("x", fin(*t), ns="a")
        self.make_group("x", fin(*t), ns="a/b")
        r = self.srv.post("%s/admin/datastore/%s/prune-datastore" % (API, STORE),
                          params={"ns": "a", "max-depth": "0", "keep-last": "2",
                                  "dry-run": "1"})
        upid = self.assertOk(r)
        self.assertIn(":prune:%s:" % STORE, upid)
        st = self.wait(upid)
        self.assertEqual("OK", st["exitstatus"])
        text = self.log_text(upid)
        self.assertIn("retention options: --keep-last 2", text)
        self.assertIn("would remove vm/x/", text)
        self.assertEqual(t, self.on_disk("x", ns="a"))
        upid = self.assertOk(self.srv.post(
            "%s/admin/datastore/%s/prune-datastore" % (API, STORE),
            params={"ns": "a", "keep-last": "2"}))
        st = self.wait(upid)
        self.assertEqual("OK", st["exitstatus"], self.log_text(upid))
        self.assertEqual(t[2:], self.on_disk("x", ns="a"))
        self.assertEqual(t[2:], self.on_disk("x", ns="a/b"))
        self.assertEqual(t, self.on_disk("x"))
        r = self.srv.post("%s/admin/datastore/%s/prune-datastore" % (API, STORE),
                          params={"ns": "../x", "keep-last": "2"})
        self.assertError(r, 400)
        r = self.srv.post("%s/admin/datastore/%s/prune-datastore" % (API, STORE),
                          params={"max-depth": "9", "keep-last": "2"})
        self.assertError(r, 400)


if __name__ == "__main__":
    unittest.main(verbosity=2)
