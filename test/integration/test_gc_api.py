#!/usr/bin/python3
"""Integration tests for issue #5: tasks, garbage collection and schedules
against the real cairnd.

Backups go through the real backup protocol (pbs_proto.py); garbage is made
by writing chunk files straight into .chunks, and ageing uses os.utime
instead of waiting a day. Covered: GC removes exactly the unreferenced
chunks and writes .gc-status; a chunk only an in-progress backup references
survives; the tasks API (list and its filters, status, log paging, abort);
a task that was running when the server was killed is reported aborted
after the restart; gc-schedule starts GC by itself; a bad schedule is
refused when saved.

Runs standalone (`python3 test_gc_api.py`, CAIRN_BIN_DIR=build/bin) and from
ctest; exits non-zero on failure.
"""

import hashlib
import json
import os
import random
import struct
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as ch  # noqa: E402
import pbs_proto as pp  # noqa: E402

API = "/api2/json"
TASKS = API + "/nodes/localhost/tasks"
STORE = "gcds"
T0 = 1700000000
DAY = 86400


def setUpModule():
    ch.require_programs("cairnd", "cairn-admin")


def rbytes(seed, n):
    return random.Random(seed).randbytes(n)


def quote(upid):
    return urllib.parse.quote(upid, safe="")


def chunk_path(ds, digest):
    return os.path.join(ds, ".chunks", digest[:4], digest)


def put_chunk(ds, data):
    """Writes a chunk file directly (garbage nobody references)."""
    blob = pp.blob_encode(data)
    digest = hashlib.sha256(data).hexdigest()
    d = os.path.join(ds, ".chunks", digest[:4])
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, digest), "wb") as f:
        f.write(blob)
    return digest


def age_all(ds, seconds):
    """Sets the atime of every chunk file `seconds` into the past."""
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


class Case(pp.CaseMixin, unittest.TestCase):
    """One server per class with datastore gcds (atime check off unless a
    test says otherwise)."""

    tuning = "gc-atime-safety-check=false"

    @classmethod
    def setUpClass(cls):
        cls.srv = ch.Cairn(tls=False, log_level="info", env={"TZ": "UTC"})
        cls.addClassCleanup(cls.finish_server, cls.srv)
        cls.ds = cls.srv.datastore_path(STORE)
        params = {"name": STORE, "path": cls.ds}
        if cls.tuning:
            params["tuning"] = cls.tuning
        r = cls.srv.post(API + "/config/datastore", params=params)
        assert r.status == 200, r

    # ---- helpers ----

    def backup(self, backup_id, t, chunks, known=()):
        b = self.open_session(pp.BackupSession(self.srv, STORE, "host", backup_id, t))
        entry, up = b.upload_dynamic("root.pxar.didx", chunks, known=known)
        b.upload_blob("client.log.blob", b"log of %d\n" % t)
        b.upload_manifest()
        b.finish()
        return entry

    def start(self, what, params=None):
        r = self.srv.post("%s/admin/datastore/%s/%s" % (API, STORE, what), params=params)
        upid = self.assertOk(r, "POST %s" % what)
        self.assertRegex(upid, r"^UPID:localhost:[0-9A-F]{8}:[0-9A-F]{8,9}:[0-9A-F]{8,16}:"
                               r"[0-9A-F]{8}:[^:\s]+:[^:\s]*:[^:\s]+:$")
        return upid

    def status(self, upid):
        return self.assertOk(self.srv.get("%s/%s/status" % (TASKS, quote(upid))), "status")

    def wait(self, upid, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            st = self.status(upid)
            if st["status"] == "stopped":
                return st
            if time.monotonic() > deadline:
                self.fail("task %s still running after %d s%s" % (upid, timeout,
                                                                   self.log_tail()))
            time.sleep(0.05)

    def log(self, upid, **params):
        r = self.srv.get("%s/%s/log" % (TASKS, quote(upid)), params=params or None)
        self.assertEqual(200, r.status, r)
        return r.data

    def log_text(self, upid):
        d = self.log(upid, limit=0)
        return "\n".join(e["t"] for e in d["data"])

    def gc(self):
        upid = self.start("gc")
        st = self.wait(upid)
        return upid, st


class GcTest(Case):

    def test_gc_removes_exactly_unreferenced(self):
        shared = pp.Chunk(rbytes(1, 100000))
        a = [shared, pp.Chunk(rbytes(2, 70000)), pp.Chunk(rbytes(3, 5000), compress=True)]
        b = [shared, pp.Chunk(rbytes(4, 123456))]
        self.backup("one", T0, a)
        self.backup("one", T0 + 60, b)
        referenced = {c.digest for c in a + b}
        garbage = {put_chunk(self.ds, rbytes(100 + i, 3000)) for i in range(7)}
        age_all(self.ds, 2 * DAY)

        upid, st = self.gc()
        self.assertEqual("OK", st["exitstatus"], self.log_text(upid))
        self.assertEqual("garbage_collection", st["type"])
        self.assertEqual(STORE, st["id"])
        on_disk = pp.chunk_digests(self.ds)
        self.assertEqual(set(), garbage & on_disk, "garbage left")
        self.assertEqual(referenced, referenced & on_disk, "referenced chunk removed")
        self.assertChunkStoreClean(self.ds, expect=referenced)

        with open(os.path.join(self.ds, ".gc-status")) as f:
            gcs = json.load(f)
        self.assertEqual(upid, gcs["upid"])
        self.assertEqual(7, gcs["removed-chunks"])
        self.assertEqual(len(referenced), gcs["disk-chunks"])
        self.assertEqual(2, gcs["index-file-count"])
        for k in ("index-data-bytes", "disk-bytes", "removed-bytes", "pending-bytes",
                  "pending-chunks", "removed-bad", "still-bad", "cache-stats"):
            self.assertIn(k, gcs)

        got = self.assertOk(self.srv.get("%s/admin/datastore/%s/gc" % (API, STORE)))
        self.assertEqual(STORE, got["store"])
        self.assertEqual(7, got["removed-chunks"])
        self.assertEqual(upid, got["upid"])
        self.assertEqual("OK", got["last-run-state"])

        text = self.log_text(upid)
        for line in ("starting garbage collection on store %s" % STORE,
                     "Start GC phase1 (mark used chunks)", "marked 100% (2 of 2 index files)",
                     "Start GC phase2 (sweep unused chunks)", "processed 100%",
                     "Removed chunks: 7", "TASK OK"):
            self.assertIn(line, text)

        # Restores still work.
        r = self.open_session(pp.ReaderSession(self.srv, STORE, "host", "one", T0))
        _, data = r.restore_index("root.pxar.didx")
        self.assertEqual(b"".join(c.data for c in a), data)
        r.close()

    def test_in_progress_backup_chunk_survives(self):
        # Cutoff 1 minute (the smallest): an aged chunk uploaded by a backup
        # that is still running must survive anyway.
        r = self.srv.put("%s/config/datastore/%s" % (API, STORE),
                         params={"tuning": "gc-atime-safety-check=false,gc-atime-cutoff=1"})
        self.assertOk(r)
        try:
            c = pp.Chunk(rbytes(55, 40000))
            loose = put_chunk(self.ds, rbytes(56, 4000))
            b = self.open_session(pp.BackupSession(self.srv, STORE, "host", "running", T0))
            wid = b.dynamic_index("root.pxar.didx")
            b.upload_chunk(wid, c)
            age_all(self.ds, 120)  # older than the cutoff, newer than writer - 5 min
            upid, st = self.gc()
            self.assertEqual("OK", st["exitstatus"], self.log_text(upid))
            self.assertIn("Oldest active backup writer started at", self.log_text(upid))
            self.assertTrue(os.path.exists(chunk_path(self.ds, c.digest)),
                            "chunk of the running backup removed")
            self.assertTrue(os.path.exists(chunk_path(self.ds, loose)))
            b.append(wid, [c.digest], [0])
            b.close_index(wid, 1, c.size, pp.didx_csum([c.size], [c.digest]))
            b.upload_manifest()
            b.finish()
            age_all(self.ds, 120)
            upid, st = self.gc()  # no writer now: the loose chunk goes, c stays
            self.assertEqual("OK", st["exitstatus"], self.log_text(upid))
            self.assertTrue(os.path.exists(chunk_path(self.ds, c.digest)))
            self.assertFalse(os.path.exists(chunk_path(self.ds, loose)))
        finally:
            self.srv.put("%s/config/datastore/%s" % (API, STORE),
                         params={"tuning": self.tuning})

    def test_unknown_store_and_bad_method(self):
        r = self.srv.post("%s/admin/datastore/nosuch/gc" % API)
        self.assertError(r, 404, mentions="nosuch")
        r = self.srv.get("%s/admin/datastore/nosuch/gc" % API)
        self.assertError(r, 404)


class SafetyCheckTest(Case):
    tuning = ""  # the atime safety check on (the default)

    def test_atime_safety_check(self):
        upid, st = self.gc()
        self.assertEqual("OK", st["exitstatus"], self.log_text(upid))
        self.assertIn("Access time update check successful", self.log_text(upid))
        zero = "bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8"
        self.assertTrue(os.path.exists(chunk_path(self.ds, zero)))
        with open(chunk_path(self.ds, zero), "rb") as f:
            self.assertEqual(bytes(4 * 1024 * 1024), pp.blob_decode(f.read()))


class TasksApiTest(Case):

    def make_slow_store(self):
        """An index referencing 150,000 chunks that do not exist: phase 1
        takes a few seconds (each missing digest is probed), long enough to
        watch a running task."""
        snap = pp.snapshot_dir(self.ds, "vm", "slow", T0)
        os.makedirs(snap, exist_ok=True)
        with open(os.path.join(os.path.dirname(snap), "owner"), "w") as f:
            f.write("root@pam\n")
        rnd = random.Random(9)
        entries = bytearray()
        for i in range(150000):
            entries += struct.pack("<Q", (i + 1) * 4096) + rnd.randbytes(32)
        header = bytearray(4096)
        header[0:8] = pp.MAGIC_DIDX
        header[8:24] = rnd.randbytes(16)
        header[24:32] = struct.pack("<q", T0)
        header[32:64] = hashlib.sha256(entries).digest()
        with open(os.path.join(snap, "disk.pxar.didx"), "wb") as f:
            f.write(header + entries)
        with open(os.path.join(snap, pp.MANIFEST), "wb") as f:
            f.write(pp.manifest_blob(pp.manifest("vm", "slow", T0, [])))

    def remove_slow_store(self):
        import shutil
        shutil.rmtree(os.path.join(self.ds, "vm"), ignore_errors=True)

    def test_list_status_log_abort(self):
        self.make_slow_store()
        try:
            upid = self.start("gc")
            st = self.status(upid)
            self.assertEqual("running", st["status"])
            for k in ("upid", "node", "pid", "pstart", "starttime", "type", "id", "user"):
                self.assertIn(k, st)
            self.assertEqual("localhost", st["node"])
            self.assertEqual(self.srv.proc.pid, st["pid"])
            self.assertTrue(st["user"].startswith("root@pam"))

            lst = self.srv.get(TASKS, params={"running": "1"})
            self.assertEqual(200, lst.status)
            self.assertEqual([upid], [t["upid"] for t in lst.data["data"]])
            self.assertEqual(1, lst.data["total"])
            # A second GC of the same datastore is refused while one runs.
            r = self.srv.post("%s/admin/datastore/%s/gc" % (API, STORE))
            self.assertError(r, 409, mentions="already running")

            r = self.srv.delete("%s/%s" % (TASKS, quote(upid)))
            self.assertOk(r)
            st = self.wait(upid)
            self.assertEqual("ERROR: aborted", st["exitstatus"])
            self.assertIn("received abort request", self.log_text(upid))
            self.assertFalse(os.path.exists(os.path.join(self.ds, ".gc-status")))
        finally:
            self.remove_slow_store()

        # Filters and paging over a few finished tasks.
        done = [self.gc()[0] for _ in range(3)]
        all_ = self.srv.get(TASKS, params={"limit": "100"}).data
        upids = [t["upid"] for t in all_["data"]]
        self.assertEqual(done[::-1], upids[:3], "newest first")
        self.assertEqual(4, all_["total"])
        t0 = all_["data"][0]
        self.assertEqual("OK", t0["status"])
        self.assertIn("endtime", t0)
        page = self.srv.get(TASKS, params={"start": "1", "limit": "2"}).data
        self.assertEqual(upids[1:3], [t["upid"] for t in page["data"]])
        self.assertEqual(4, page["total"])
        self.assertEqual(0, self.srv.get(TASKS, params={"running": "1"}).data["total"])
        self.assertEqual(1, self.srv.get(TASKS, params={"errors": "1"}).data["total"])
        self.assertEqual(4, self.srv.get(TASKS, params={"typefilter": "garbage"}).data["total"])
        self.assertEqual(0, self.srv.get(TASKS, params={"typefilter": "verify"}).data["total"])
        self.assertEqual(4, self.srv.get(TASKS, params={"store": STORE}).data["total"])
        self.assertEqual(0, self.srv.get(TASKS, params={"store": "other"}).data["total"])

        # Log paging: n is 1-based, start 0-based, total counts every line.
        full = self.log(done[0], limit=0)
        n = full["total"]
        self.assertGreater(n, 5)
        self.assertEqual(list(range(1, n + 1)), [e["n"] for e in full["data"]])
        self.assertTrue(full["data"][-1]["t"].endswith("TASK OK"))
        self.assertFalse(full["active"])
        part = self.log(done[0], start=2, limit=3)
        self.assertEqual([3, 4, 5], [e["n"] for e in part["data"]])
        self.assertEqual(n, part["total"])
        self.assertEqual([], self.log(done[0], start=n + 10)["data"])
        self.assertEqual(min(50, n), len(self.log(done[0])["data"]), "default limit 50")

        # Errors: malformed and unknown UPIDs.
        self.assertError(self.srv.get("%s/%s/status" % (TASKS, quote("UPID:bogus"))), 400)
        unknown = "UPID:localhost:00000001:00000001:00000001:00000001:garbage_collection:x:root@pam:"
        self.assertError(self.srv.get("%s/%s/status" % (TASKS, quote(unknown))), 404)
        self.assertError(self.srv.get("%s/%s/log" % (TASKS, quote(unknown))), 404)
        self.assertError(self.srv.delete("%s/%s" % (TASKS, quote(unknown))), 404)
        self.assertError(self.srv.get(TASKS, params={"limit": "-1"}), 400)

    def test_restart_reports_running_task_aborted(self):
        self.make_slow_store()
        try:
            upid = self.start("gc")
            time.sleep(0.3)
            self.assertEqual("running", self.status(upid)["status"])
            self.srv.kill9()
            self.srv.start()
            st = self.status(upid)
            self.assertEqual("stopped", st["status"])
            self.assertRegex(st["exitstatus"], r"^ERROR: aborted")
            self.assertIn("restarted", st["exitstatus"])
            text = self.log_text(upid)
            self.assertIn("starting garbage collection", text)
            self.assertRegex(text.splitlines()[-1], r"TASK ERROR: aborted")
            lst = self.srv.get(TASKS, params={"limit": "100"}).data["data"]
            self.assertIn(upid, [t["upid"] for t in lst])
            # The GC lock was not left behind: a new GC runs.
        finally:
            self.remove_slow_store()
        upid2, st2 = self.gc()
        self.assertEqual("OK", st2["exitstatus"], self.log_text(upid2))


class ScheduleTest(Case):

    def test_gc_schedule_runs(self):
        url = "%s/config/datastore/%s" % (API, STORE)
        r = self.srv.put(url, params={"gc-schedule": "*:*:0/2"})  # every 2 seconds
        self.assertOk(r)
        try:
            deadline = time.monotonic() + 15
            found = []
            while time.monotonic() < deadline and not found:
                lst = self.srv.get(TASKS, params={"typefilter": "garbage_collection"}).data
                found = [t for t in lst["data"] if t["user"] == "root@pam"]
                time.sleep(0.2)
            self.assertTrue(found, "no scheduled GC started" + self.log_tail())
            got = self.assertOk(self.srv.get("%s/admin/datastore/%s/gc" % (API, STORE)))
            self.assertEqual("*:*:0/2", got["schedule"])
            self.assertGreater(got["next-run"], time.time() - 1)
        finally:
            self.assertOk(self.srv.put(url, params={"delete": "gc-schedule"}))

    def scheduled_gcs_since(self, t0, seen=()):
        lst = self.srv.get(TASKS, params={"typefilter": "garbage_collection"}).data["data"]
        return [t for t in lst
                if t["user"] == "root@pam" and t["starttime"] >= t0 and t["upid"] not in seen]

    def restart_with_last_run(self, schedule, last_run):
        """Sets gc-schedule, then restarts cairnd with a recorded last run."""
        url = "%s/config/datastore/%s" % (API, STORE)
        self.assertOk(self.srv.put(url, params={"gc-schedule": schedule}))
        self.srv.stop()
        d = os.path.join(self.srv.run_dir, "jobstates")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "gc-" + STORE), "w") as f:
            f.write("%d\n" % last_run)
        t0 = int(time.time())
        self.srv.start()
        return t0

    def test_missed_gc_event_runs_at_start(self):
        # An event between the recorded last run and now was missed while
        # cairnd was down: it runs once, soon after the start, and the new
        # run is recorded. An event still ahead does not run.
        url = "%s/config/datastore/%s" % (API, STORE)
        now = time.time()
        past = time.strftime("*-*-* %H:%M", time.gmtime(now - 300))
        future = time.strftime("*-*-* %H:%M", time.gmtime(now + 180))
        try:
            t0 = self.restart_with_last_run(past, int(now) - 600)
            deadline = time.monotonic() + 15
            found = []
            while time.monotonic() < deadline and not found:
                found = self.scheduled_gcs_since(t0)
                time.sleep(0.2)
            self.assertTrue(found, "the missed GC did not run" + self.log_tail())
            self.wait(found[0]["upid"])
            state = os.path.join(self.srv.run_dir, "jobstates", "gc-" + STORE)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                with open(state) as f:
                    if int(f.read()) >= t0:
                        break
                time.sleep(0.1)
            with open(state) as f:
                self.assertGreaterEqual(int(f.read()), t0)

            seen = {t["upid"] for t in self.scheduled_gcs_since(t0)}
            t1 = self.restart_with_last_run(future, int(time.time()) - 60)
            time.sleep(3)
            self.assertEqual([], self.scheduled_gcs_since(t1, seen), self.log_tail())
        finally:
            self.assertOk(self.srv.put(url, params={"delete": "gc-schedule"}))

    def test_prune_schedule_runs(self):
        url = "%s/config/datastore/%s" % (API, STORE)
        self.assertOk(self.srv.put(url, params={"prune-schedule": "*:*:0/2", "keep-last": "1"}))
        try:
            deadline = time.monotonic() + 15
            found = []
            while time.monotonic() < deadline and not found:
                found = self.srv.get(TASKS, params={"typefilter": "prune"}).data["data"]
                time.sleep(0.2)
            self.assertTrue(found, "no scheduled prune started" + self.log_tail())
        finally:
            self.assertOk(self.srv.put(url, params={"delete": "prune-schedule"}))

    def test_schedules_validated_on_save(self):
        # store_dsconfig.c must check schedules with core_calendar_parse
        # (the same check as gc_schedule_check).
        url = "%s/config/datastore/%s" % (API, STORE)
        for bad in ("every day", "25:00", "mon..xyz", "*-02-30"):
            r = self.srv.put(url, params={"gc-schedule": bad})
            self.assertError(r, 400, "gc-schedule %r" % bad)
            r = self.srv.put(url, params={"prune-schedule": bad})
            self.assertError(r, 400, "prune-schedule %r" % bad)
        for good in ("daily", "hourly", "weekly", "sat 18:15", "*-*-* 02:00", "mon..fri 22:30"):
            self.assertOk(self.srv.put(url, params={"gc-schedule": good}), good)
        self.assertOk(self.srv.put(url, params={"delete": "gc-schedule"}))

if __name__ == "__main__":
    unittest.main(verbosity=2)
