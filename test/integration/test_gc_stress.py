#!/usr/bin/python3
"""GC stress through the real protocol (issue #5 item 6): 8 backup clients
make incremental backups (most chunks known from the previous snapshot and
not uploaded again, some new, some shared between groups), a pruner removes
old snapshots through the prune API, and GC runs again and again meanwhile.
Between rounds, when no backup runs, every chunk is aged two days, so each
round's GCs can remove anything they fail to mark. Every GC must end OK (a
missing-chunk warning would mean a referenced chunk was deleted), and at the
end every finished snapshot must verify and restore.

Runs standalone and from ctest; exits non-zero on failure.
"""

import calendar
import os
import random
import sys
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as ch  # noqa: E402
import pbs_proto as pp  # noqa: E402

API = "/api2/json"
TASKS = API + "/nodes/localhost/tasks"
STORE = "stress"
T0 = 1700000000
CLIENTS = 8
ROUNDS = 3
BACKUPS_PER_ROUND = 4
DAY = 86400


def setUpModule():
    ch.require_programs("cairnd", "cairn-admin")


class Known:
    """A chunk referenced from the previous snapshot: digest and size only."""

    def __init__(self, digest, size):
        self.digest = digest
        self.size = size


def age_all(ds, seconds):
    t = time.time() - seconds
    root = os.path.join(ds, ".chunks")
    for prefix in os.listdir(root):
        p = os.path.join(root, prefix)
        if os.path.isdir(p):
            for name in os.listdir(p):
                fp = os.path.join(p, name)
                os.utime(fp, (t, os.stat(fp).st_mtime))


class GcStress(pp.CaseMixin, unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = ch.Cairn(tls=False, log_level="warn")
        cls.addClassCleanup(cls.finish_server, cls.srv)
        cls.ds = cls.srv.datastore_path(STORE)
        r = cls.srv.post(API + "/config/datastore",
                         params={"name": STORE, "path": cls.ds,
                                 "tuning": "gc-atime-safety-check=false"})
        assert r.status == 200, r

    def setUp(self):
        self.errors = []
        self.lock = threading.Lock()
        self.seed = 1
        self.last = {}        # client -> last backup time
        self.contents = {}    # (client, time) -> bytes of root.pxar
        self.gc_runs = 0
        self.removed = 0

    def next_seed(self):
        with self.lock:
            self.seed += 1
            return self.seed

    def task_wait(self, upid):
        q = urllib.parse.quote(upid, safe="")
        while True:
            st = self.srv.get("%s/%s/status" % (TASKS, q)).data["data"]
            if st["status"] == "stopped":
                return st
            time.sleep(0.02)

    def task_log(self, upid):
        r = self.srv.get("%s/%s/log" % (TASKS, urllib.parse.quote(upid, safe="")),
                         params={"limit": "0"})
        return "\n".join(e["t"] for e in r.data["data"])

    def one_backup(self, client, rnd):
        bid = "c%d" % client
        t = self.last.get(client, T0 - 60) + 60
        b = self.open_session(pp.BackupSession(self.srv, STORE, "host", bid, t))
        chunks, known, data = [], set(), bytearray()
        prev = self.last.get(client)
        if prev is not None and b.previous_backup_time() is not None:
            idx = pp.Index.parse(b.previous("root.pxar.didx"))
            old = self.contents[(client, prev)]
            for start, end, digest in idx.entries:
                if rnd.random() < 0.7:
                    chunks.append(Known(digest, end - start))
                    known.add(digest)
                    data += old[start:end]
        for i in range(6):
            if i % 3 == 0:  # shared between groups: the same seed gives the same chunk
                seed = 1000000 + rnd.randrange(30)
                size = 512 + seed % 4096
            else:
                seed = self.next_seed()
                size = 1000 + rnd.randrange(20000)
            c = pp.Chunk(random.Random(seed).randbytes(size), compress=(seed % 2 == 0))
            chunks.append(c)
            data += c.data
        b.upload_dynamic("root.pxar.didx", chunks, known=known)
        b.upload_manifest()
        b.finish()
        with self.lock:
            self.contents[(client, t)] = bytes(data)
            self.last[client] = t

    def client(self, n, round_no):
        rnd = random.Random(n * 100 + round_no)
        try:
            for _ in range(BACKUPS_PER_ROUND):
                self.one_backup(n, rnd)
        except Exception as e:  # reported by the main thread
            with self.lock:
                self.errors.append("client %d: %r" % (n, e))

    def pruner(self, stop):
        while not stop.is_set():
            for n in range(CLIENTS):
                r = self.srv.post("%s/admin/datastore/%s/prune" % (API, STORE),
                                  params={"backup-type": "host", "backup-id": "c%d" % n,
                                          "keep-last": "2"})
                if r.status not in (200, 404):
                    with self.lock:
                        self.errors.append("prune: %r" % r)
            time.sleep(0.05)

    def gc_loop(self, stop):
        while not stop.is_set():
            r = self.srv.post("%s/admin/datastore/%s/gc" % (API, STORE))
            if r.status == 409:
                time.sleep(0.01)
                continue
            if r.status != 200:
                with self.lock:
                    self.errors.append("gc start: %r" % r)
                return
            upid = r.data["data"]
            st = self.task_wait(upid)
            with self.lock:
                self.gc_runs += 1
            if st["exitstatus"] != "OK":
                with self.lock:
                    self.errors.append("GC %s ended %s:\n%s" % (upid, st["exitstatus"],
                                                                 self.task_log(upid)))
                return
            got = self.srv.get("%s/admin/datastore/%s/gc" % (API, STORE)).data["data"]
            with self.lock:
                self.removed += got.get("removed-chunks", 0)

    def test_backups_prune_and_gc_together(self):
        for round_no in range(ROUNDS):
            if round_no:
                age_all(self.ds, 2 * DAY)
            stop = threading.Event()
            helpers = [threading.Thread(target=self.pruner, args=(stop,)),
                       threading.Thread(target=self.gc_loop, args=(stop,))]
            clients = [threading.Thread(target=self.client, args=(n, round_no))
                       for n in range(CLIENTS)]
            for th in helpers + clients:
                th.start()
            for th in clients:
                th.join()
            stop.set()
            for th in helpers:
                th.join()
            self.assertEqual([], self.errors, self.log_tail())

        age_all(self.ds, 2 * DAY)
        r = self.srv.post("%s/admin/datastore/%s/gc" % (API, STORE))
        st = self.task_wait(r.data["data"])
        self.assertEqual("OK", st["exitstatus"], self.task_log(r.data["data"]))
        got = self.srv.get("%s/admin/datastore/%s/gc" % (API, STORE)).data["data"]
        self.removed += got["removed-chunks"]
        self.assertGreater(self.gc_runs, ROUNDS, "GC did not run during the rounds")
        self.assertGreater(self.removed, 0, "nothing was ever removed: the test tests nothing")

        r = self.srv.post("%s/admin/datastore/%s/verify" % (API, STORE),
                          params={"ignore-verified": "0"})
        upid = r.data["data"]
        st = self.task_wait(upid)
        self.assertEqual("OK", st["exitstatus"], self.task_log(upid))
        # And every remaining snapshot restores to what was backed up.
        restored = 0
        for n in range(CLIENTS):
            gdir = pp.group_dir(self.ds, "host", "c%d" % n)
            for name in sorted(os.listdir(gdir)):
                if name == "owner":
                    continue
                t = calendar.timegm(time.strptime(name, "%Y-%m-%dT%H:%M:%SZ"))
                rd = self.open_session(pp.ReaderSession(self.srv, STORE, "host", "c%d" % n, t))
                _, data = rd.restore_index("root.pxar.didx")
                rd.close()
                self.assertEqual(self.contents[(n, t)], data)
                restored += 1
        self.assertGreaterEqual(restored, CLIENTS)
        sys.stderr.write("\n  %d backups, %d GC runs, %d chunks removed, %d snapshots restored\n"
                         % (len(self.contents), self.gc_runs, self.removed, restored))


if __name__ == "__main__":
    unittest.main(verbosity=2)
