#!/usr/bin/python3
"""Integration tests for issue #18: remotes, sync jobs, pull (and push)
between two cairnd processes on loopback, TLS on, fingerprints pinned.

The source server's log line "reader session ... closed: N chunks served"
counts the chunk requests it answered; the tests sum it to prove that a
second sync fetches no chunk and an incremental one only the new ones.

Runs standalone and from ctest; exits non-zero on failure.
"""

import json
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as ch  # noqa: E402
import pbs_proto as pp  # noqa: E402

API = "/api2/json"
T0 = 1700000000
SERVED = re.compile(r"reader session \S+ closed: (\d+) chunks served")


def setUpModule():
    ch.require_programs("cairnd", "cairn-admin")


def data(r, what=""):
    assert 200 <= r.status < 300, "%s: %r" % (what, r)
    return r.data.get("data") if isinstance(r.data, dict) else r.data


class SyncCase(unittest.TestCase):
    """A source and a target server; the target has the source as remote."""

    @classmethod
    def setUpClass(cls):
        cls.src = ch.Cairn(tls=True)
        cls.addClassCleanup(cls.src.close)
        cls.dst = ch.Cairn(tls=True)
        cls.addClassCleanup(cls.dst.close)
        for srv in (cls.src, cls.dst):
            data(srv.post(API + "/config/datastore",
                          params={"name": "store1", "path": srv.datastore_path("store1")}))
        tokenid, secret = cls.src.token.split(":", 1)
        data(cls.dst.post(API + "/config/remote", params={
            "name": "src", "host": "127.0.0.1", "port": str(cls.src.port),
            "auth-id": tokenid, "password": secret, "fingerprint": cls.src.fingerprint}))
        # The fence of served(): a snapshot no test pulls.
        data(cls.src.post(API + "/admin/datastore/store1/namespace", params={"name": "zfence"}))
        backup(cls.src, "zfence", "host", "fence", T0, [])

    # -- helpers --

    def endpoint(self, srv):
        return endpoint(srv)

    def backup(self, ns, btype, bid, t, chunks, blob=b"config", crypt="none", srv=None):
        backup(srv or self.src, ns, btype, bid, t, chunks, blob, crypt)

    def mkns(self, srv, name, parent=""):
        p = {"name": name}
        if parent:
            p["parent"] = parent
        r = srv.post(API + "/admin/datastore/store1/namespace", params=p)
        self.assertIn(r.status, (200, 409, 400), r)

    def wait_task(self, srv, upid, timeout=120):
        q = urllib_quote(upid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = data(srv.get(API + "/nodes/localhost/tasks/%s/status" % q))
            if st["status"] == "stopped":
                return st["exitstatus"]
            time.sleep(0.05)
        self.fail("task %s did not end" % upid)

    def task_log(self, srv, upid):
        rows = data(srv.get(API + "/nodes/localhost/tasks/%s/log" % urllib_quote(upid),
                            params={"limit": "0"}))
        return "\n".join(r["t"] for r in rows)

    def pull(self, expect="OK", **params):
        p = {"store": "store1", "remote": "src", "remote-store": "store1"}
        p.update(params)
        upid = data(self.dst.post(API + "/pull", params=p), "pull %r" % p)
        status = self.wait_task(self.dst, upid)
        log = self.task_log(self.dst, upid)
        if expect is not None:
            self.assertEqual(expect, status, log)
        return status, log

    def served(self, since):
        """Chunk requests the source answered in reader sessions since a mark.
        A reader session of our own, opened and closed after the sync, is the
        fence: its log line comes after every line of the sync's sessions."""
        src = self.src
        r = pp.ReaderSession(endpoint(src), "store1", "host", "fence", T0, "zfence").open()
        r.call("DELETE", "")
        r.close_connection()
        self.assertIsNotNone(src.wait_log(r"reader session host/fence closed", 10, since))
        text = src.log_text(since)
        text = text[:text.index("reader session host/fence closed")]
        return sum(int(m.group(1)) for m in SERVED.finditer(text))

    def snapshots(self, srv, btype, bid, ns=""):
        p = {"backup-type": btype, "backup-id": bid}
        if ns:
            p["ns"] = ns
        r = srv.get(API + "/admin/datastore/store1/snapshots", params=p)
        if r.status == 404:
            return []
        return sorted(s["backup-time"] for s in data(r) if not s.get("unfinished"))

    def read_all(self, srv, ns, btype, bid, t):
        """Every file and every chunk of a snapshot through a reader session."""
        r = pp.ReaderSession(self.endpoint(srv), "store1", btype, bid, t, ns or None).open()
        try:
            m = r.manifest()
            out = {}
            for f in m["files"]:
                if f["filename"].endswith(".didx"):
                    _, content = r.restore_index(f["filename"])
                    out[f["filename"]] = content
                else:
                    out[f["filename"]] = r.download(f["filename"])
            return out
        finally:
            r.call("DELETE", "")
            r.close_connection()


def endpoint(srv):
    return pp.Endpoint(srv.host, srv.port, srv.token, tls=True)


def backup(srv, ns, btype, bid, t, chunks, blob=b"config", crypt="none"):
    s = pp.BackupSession(endpoint(srv), "store1", btype, bid, t, ns or None).open(wait_busy=5)
    if chunks:
        s.upload_dynamic("root.pxar.didx", chunks)
    e = s.upload_blob("conf.blob", blob)
    e["crypt-mode"] = crypt
    s.upload_manifest()
    s.finish()


def urllib_quote(s):
    import urllib.parse
    return urllib.parse.quote(s, safe="")


class PullTree(SyncCase):
    """Namespaces, filters, max-depth, transfer-last, second and incremental
    syncs, remove-vanished, encrypted-only, a corrupt source chunk."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        src = cls.src
        for name, parent in (("a", ""), ("b", "a"), ("c", "a/b")):
            p = {"name": name}
            if parent:
                p["parent"] = parent
            data(src.post(API + "/admin/datastore/store1/namespace", params=p))
        cls.chunks = pp.random_chunks(1, 100, 4096)
        for i in range(3):
            backup(src, "", "host", "h1", T0 + i, cls.chunks[: 50 + i])
            backup(src, "a", "vm", "100", T0 + i, cls.chunks[20:70])
            backup(src, "a/b", "ct", "200", T0 + i, cls.chunks[40:60])
            backup(src, "a/b/c", "host", "deep", T0 + i, cls.chunks[:5])
        backup(src, "a", "vm", "skipme", T0, cls.chunks[:3])

    def test_1_pull_tree_filters_depth(self):
        mark = self.src.log_mark()
        status, log = self.pull(**{"remote-ns": "a", "ns": "", "max-depth": "1",
                                   "group-filter": "exclude:group:vm/skipme"})
        # a -> root, a/b -> b; a/b/c is below max-depth
        self.assertEqual([T0, T0 + 1, T0 + 2], self.snapshots(self.dst, "vm", "100"))
        self.assertEqual([T0, T0 + 1, T0 + 2], self.snapshots(self.dst, "ct", "200", "b"))
        self.assertEqual([], self.snapshots(self.dst, "vm", "skipme"))
        self.assertEqual([], self.snapshots(self.dst, "host", "deep", "b/c"))
        first = self.served(mark)
        self.assertEqual(50, first, log)  # chunks 20..69, each fetched once
        for t in (T0, T0 + 2):
            self.assertEqual(self.read_all(self.src, "a", "vm", "100", t),
                             self.read_all(self.dst, "", "vm", "100", t))

        # Again: manifests only, no chunk.
        mark = self.src.log_mark()
        status, log = self.pull(**{"remote-ns": "a", "ns": "", "max-depth": "1",
                                   "group-filter": "exclude:group:vm/skipme"})
        self.assertIn("up to date", log)
        self.assertEqual(0, self.served(mark), log)

    def test_1b_worker_threads(self):
        self.mkns(self.dst, "par")
        self.pull(**{"ns": "par", "remote-ns": "a", "worker-threads": "4"})
        for ns, btype, bid in (("par", "vm", "100"), ("par", "vm", "skipme"),
                               ("par/b", "ct", "200"), ("par/b/c", "host", "deep")):
            src_ns = "a" + ns[3:]
            self.assertEqual(self.snapshots(self.src, btype, bid, src_ns),
                             self.snapshots(self.dst, btype, bid, ns), ns)
        upid = data(self.dst.post(API + "/admin/datastore/store1/verify", params={"ns": "par"}))
        self.assertEqual("OK", self.wait_task(self.dst, upid))

    def test_2_transfer_last_and_incremental(self):
        self.mkns(self.dst, "tl")
        mark = self.src.log_mark()
        self.pull(**{"ns": "tl", "transfer-last": "2", "max-depth": "0",
                     "group-filter": "type:host"})
        self.assertEqual([T0 + 1, T0 + 2], self.snapshots(self.dst, "host", "h1", "tl"))
        # The target holds chunks 0..4 and 20..69 (tests 1 and 1b): 5..19 come.
        self.assertEqual(15, self.served(mark))
        # 1% change: one new chunk in a new snapshot of 100.
        new = pp.random_chunks(99, 1, 4096)
        self.backup("", "host", "h1", T0 + 10, self.chunks[:99] + new)
        mark = self.src.log_mark()
        status, log = self.pull(**{"ns": "tl", "transfer-last": "2", "max-depth": "0",
                                   "group-filter": "type:host"})
        # The target holds chunks 0..69 (tests 1, 1b and the first pull): only
        # 70..98 and the new one are fetched.
        self.assertEqual(29 + 1, self.served(mark), log)
        self.assertEqual([T0 + 1, T0 + 2, T0 + 10], self.snapshots(self.dst, "host", "h1", "tl"))
        mark = self.src.log_mark()
        self.backup("", "host", "h1", T0 + 11, self.chunks[:99] + pp.random_chunks(98, 1, 4096))
        self.pull(**{"ns": "tl", "max-depth": "0", "group-filter": "type:host"})
        self.assertEqual(1, self.served(mark))

    def test_3_remove_vanished_keeps_protected(self):
        self.mkns(self.dst, "rv")
        self.pull(**{"ns": "rv", "remote-ns": "a/b", "max-depth": "0"})
        self.assertEqual([T0, T0 + 1, T0 + 2], self.snapshots(self.dst, "ct", "200", "rv"))
        data(self.dst.put(API + "/admin/datastore/store1/protected", params={
            "ns": "rv", "backup-type": "ct", "backup-id": "200", "backup-time": str(T0),
            "protected": "1"}))
        for t in (T0, T0 + 1):
            data(self.src.delete(API + "/admin/datastore/store1/snapshots", params={
                "ns": "a/b", "backup-type": "ct", "backup-id": "200", "backup-time": str(t)}))
        status, log = self.pull(**{"ns": "rv", "remote-ns": "a/b", "max-depth": "0",
                                   "remove-vanished": "1"})
        self.assertEqual([T0, T0 + 2], self.snapshots(self.dst, "ct", "200", "rv"), log)
        self.assertIn("protected", log)

    def test_4_encrypted_only(self):
        self.mkns(self.src, "enc")
        self.mkns(self.dst, "enc")
        self.backup("enc", "host", "e", T0, [], crypt="encrypt")
        self.backup("enc", "host", "e", T0 + 1, [])
        status, log = self.pull(**{"ns": "enc", "remote-ns": "enc", "encrypted-only": "1"})
        self.assertEqual([T0], self.snapshots(self.dst, "host", "e", "enc"), log)

    def test_5_corrupt_source_chunk(self):
        self.mkns(self.src, "bad")
        self.mkns(self.dst, "bad")
        chunks = pp.random_chunks(7, 4, 4096)
        self.backup("bad", "host", "x", T0, chunks)
        path = os.path.join(self.src.datastore_path("store1"), ".chunks",
                            chunks[2].digest[:4], chunks[2].digest)
        with open(path, "r+b") as f:
            f.seek(20)
            b = f.read(1)
            f.seek(20)
            f.write(bytes([b[0] ^ 0xFF]))
        status, log = self.pull(expect=None, **{"ns": "bad", "remote-ns": "bad"})
        self.assertTrue(status.startswith("ERROR"), status)
        self.assertIn("corrupt", log)
        self.assertEqual([], self.snapshots(self.dst, "host", "x", "bad"))
        snapdir = pp.snapshot_dir(self.dst.datastore_path("store1"), "host", "x", T0, "bad")
        self.assertFalse(os.path.exists(snapdir))
        # A chunk with a valid CRC but other content: the SHA-256 check catches it.
        chunks = pp.random_chunks(8, 3, 4096)
        backup(self.src, "bad", "host", "y", T0, chunks)
        path = os.path.join(self.src.datastore_path("store1"), ".chunks",
                            chunks[1].digest[:4], chunks[1].digest)
        with open(path, "wb") as f:
            f.write(pp.blob_encode(b"not what the digest says".ljust(4096, b"!")))
        status, log = self.pull(expect=None, **{"ns": "bad", "remote-ns": "bad",
                                                "group-filter": "group:host/y"})
        self.assertTrue(status.startswith("ERROR"), status)
        self.assertIn("corrupt", log)
        self.assertEqual([], self.snapshots(self.dst, "host", "y", "bad"))

    def test_6_previous_snapshot_chunks_need_no_lookup(self):
        """An incremental pull takes the previous local snapshot's chunks as
        present, as a backup session takes its base's: they are neither
        fetched nor looked up (touched) in the chunk store. A chunk the new
        snapshot shares only with another group is still looked up (and
        touched, for GC), and a new one is fetched."""
        self.mkns(self.src, "kn")
        self.mkns(self.dst, "kn")
        base = pp.random_chunks(61, 6, 4096)
        other = pp.random_chunks(62, 1, 4096)
        new = pp.random_chunks(63, 1, 4096)
        self.backup("kn", "host", "k", T0, base)
        self.backup("kn", "host", "other", T0, other)
        self.pull(**{"ns": "kn", "remote-ns": "kn"})
        store = self.dst.datastore_path("store1")

        def chunk_path(c):
            return os.path.join(store, ".chunks", c.digest[:4], c.digest)

        old = 1000000000  # 2001: older than anything a touch sets
        for c in base + other:
            st = os.stat(chunk_path(c))
            os.utime(chunk_path(c), ns=(old * 10**9, st.st_mtime_ns))
        self.backup("kn", "host", "k", T0 + 1, base + other + new)
        mark = self.src.log_mark()
        status, log = self.pull(**{"ns": "kn", "remote-ns": "kn",
                                   "group-filter": "group:host/k"})
        self.assertEqual(1, self.served(mark), log)
        self.assertIn("1 chunks fetched", log)
        self.assertIn("7 chunks already present", log)
        for c in base:
            self.assertEqual(old, int(os.stat(chunk_path(c)).st_atime), c)
        self.assertGreater(os.stat(chunk_path(other[0])).st_atime, old)
        self.assertEqual(self.read_all(self.src, "kn", "host", "k", T0 + 1),
                         self.read_all(self.dst, "kn", "host", "k", T0 + 1))


class Ownership(SyncCase):
    def test_group_owned_by_someone_else_is_skipped(self):
        self.mkns(self.dst, "own")
        backup(self.src, "", "host", "o1", T0, pp.random_chunks(91, 2, 4096))
        backup(self.src, "", "host", "o2", T0, pp.random_chunks(92, 2, 4096))
        p = {"ns": "own", "max-depth": "0", "group-filter": "group:host/o1"}
        self.pull(owner="root@pam", **p)
        backup(self.src, "", "host", "o1", T0 + 1, pp.random_chunks(93, 2, 4096))
        # The caller's token does not own root@pam's group: skipped, the task fails,
        # other groups are still synced.
        status, log = self.pull(expect=None, **dict(p, **{"group-filter": "type:host"}))
        self.assertTrue(status.startswith("ERROR"), status)
        self.assertIn("owned by root@pam", log)
        self.assertEqual([T0], self.snapshots(self.dst, "host", "o1", "own"))
        self.assertEqual([T0], self.snapshots(self.dst, "host", "o2", "own"))
        r = self.dst.post(API + "/pull", params={"store": "store1", "remote-store": "store1",
                                                 "ns": "own"})
        self.assertEqual(400, r.status, r)  # a local sync of a tree into itself


class VerifyStates(SyncCase):
    """verified-only and resync-corrupt, and a missed schedule."""

    def verify(self, srv, ns, btype, bid, t=None):
        p = {"backup-type": btype, "backup-id": bid, "ignore-verified": "0"}
        if ns:
            p["ns"] = ns
        if t is not None:
            p["backup-time"] = str(t)
        upid = data(srv.post(API + "/admin/datastore/store1/verify", params=p))
        return self.wait_task(srv, upid)

    def test_1_verified_only(self):
        self.mkns(self.src, "ver")
        self.mkns(self.dst, "ver")
        backup(self.src, "ver", "vm", "v", T0, pp.random_chunks(61, 3, 4096))
        backup(self.src, "ver", "vm", "v", T0 + 1, pp.random_chunks(62, 3, 4096))
        self.assertEqual("OK", self.verify(self.src, "ver", "vm", "v", T0))
        status, log = self.pull(**{"ns": "ver", "remote-ns": "ver", "verified-only": "1"})
        self.assertEqual([T0], self.snapshots(self.dst, "vm", "v", "ver"), log)

    def test_2_resync_corrupt(self):
        self.mkns(self.src, "rc")
        self.mkns(self.dst, "rc")
        chunks = pp.random_chunks(71, 4, 4096)
        backup(self.src, "rc", "vm", "c", T0, chunks)
        self.pull(**{"ns": "rc", "remote-ns": "rc"})
        path = os.path.join(self.dst.datastore_path("store1"), ".chunks",
                            chunks[1].digest[:4], chunks[1].digest)
        with open(path, "r+b") as f:
            f.seek(30)
            b = f.read(1)
            f.seek(30)
            f.write(bytes([b[0] ^ 0x55]))
        self.assertTrue(self.verify(self.dst, "rc", "vm", "c").startswith("ERROR"))
        # Without resync-corrupt the failed snapshot stays as it is.
        mark = self.src.log_mark()
        status, log = self.pull(**{"ns": "rc", "remote-ns": "rc", "resync-corrupt": "1"})
        self.assertIn("synced", log)
        self.assertEqual(1, self.served(mark), log)
        self.assertEqual("OK", self.verify(self.dst, "rc", "vm", "c"))

    def test_3_missed_schedule_runs_once_at_start(self):
        dst = self.dst
        self.mkns(self.src, "sch")
        self.mkns(dst, "sch")
        backup(self.src, "sch", "host", "s", T0, pp.random_chunks(81, 2, 4096))
        data(dst.post(API + "/config/sync", params={
            "id": "hourly1", "store": "store1", "ns": "sch", "remote": "src",
            "remote-store": "store1", "remote-ns": "sch", "schedule": "hourly"}))
        dst.stop()
        jobstates = os.path.join(dst.run_dir, "jobstates")
        os.makedirs(jobstates, exist_ok=True)
        with open(os.path.join(jobstates, "sync-hourly1"), "w") as f:
            f.write("%d\n" % (int(time.time()) - 2 * 3600))
        dst.start()
        deadline = time.monotonic() + 30
        rows = []
        while time.monotonic() < deadline:
            rows = data(dst.get(API + "/admin/sync"))
            if rows and rows[0].get("last-run-state"):
                break
            time.sleep(0.1)
        self.assertEqual("OK", rows[0].get("last-run-state"), rows)
        self.assertEqual([T0], self.snapshots(dst, "host", "s", "sch"))
        tasks = data(dst.get(API + "/nodes/localhost/tasks", params={"typefilter": "syncjob"}))
        self.assertEqual(1, len([t for t in tasks if "hourly1" in t["upid"]]), tasks)
        with open(os.path.join(jobstates, "sync-hourly1")) as f:
            self.assertGreater(int(f.read()), int(time.time()) - 60)
        data(dst.delete(API + "/config/sync/hourly1"))


class PushAndMore(SyncCase):
    """Push through a token that may only add, its 403, a local sync, a
    rate limit, and kill -9 of the target in the middle of a pull."""

    def summary(self, log, what):
        m = re.search(r"summary: \d+ snapshots \w+, (\d+) chunks %s" % what, log)
        self.assertIsNotNone(m, log)
        return int(m.group(1))

    def test_1_push_append_only_token(self):
        src, dst = self.src, self.dst
        # On the target: a user and token that may only back up into store1.
        data(dst.post(API + "/access/users", params={"userid": "pusher@pbs"}))
        tok = data(dst.post(API + "/access/users/pusher@pbs/token/push"))
        for who in ("pusher@pbs", "pusher@pbs!push"):
            data(dst.put(API + "/access/acl", params={
                "path": "/datastore/store1", "auth-id": who, "role": "DatastoreBackup"}))
        data(dst.post(API + "/admin/datastore/store1/namespace", params={"name": "pushed"}))
        data(src.post(API + "/config/remote", params={
            "name": "dst", "host": "127.0.0.1", "port": str(dst.port),
            "auth-id": "pusher@pbs!push", "password": tok["value"],
            "fingerprint": dst.fingerprint}))
        data(src.post(API + "/admin/datastore/store1/namespace", params={"name": "p"}))
        for name, parent in (("q", "p"), ("r", "p/q")):
            data(src.post(API + "/admin/datastore/store1/namespace",
                          params={"name": name, "parent": parent}))
        # The add-only token may not create namespaces there: the admin does.
        data(dst.post(API + "/admin/datastore/store1/namespace",
                      params={"name": "q", "parent": "pushed"}))
        chunks = pp.random_chunks(11, 40, 4096)
        for i in range(3):
            backup(src, "p", "vm", "300", T0 + i, chunks[: 30 + i])
        backup(src, "p", "ct", "301", T0, chunks[:2])
        backup(src, "p/q", "vm", "302", T0, chunks[:4])
        backup(src, "p/q/r", "vm", "303", T0, chunks[:4])  # below max-depth
        params = {"store": "store1", "ns": "p", "remote": "dst", "remote-store": "store1",
                  "remote-ns": "pushed", "group-filter": "type:vm", "max-depth": "1"}
        upid = data(src.post(API + "/push", params=params))
        status = self.wait_task(src, upid)
        log = self.task_log(src, upid)
        self.assertEqual("OK", status, log)
        # 32 for vm/300; vm/302's 4 again: a backup session knows only its own
        # group's previous snapshot (the remote stores them once).
        self.assertEqual(32 + 4, self.summary(log, "uploaded"))
        self.assertEqual([T0, T0 + 1, T0 + 2], self.snapshots(dst, "vm", "300", "pushed"))
        self.assertEqual([], self.snapshots(dst, "ct", "301", "pushed"))
        self.assertEqual([T0], self.snapshots(dst, "vm", "302", "pushed/q"))
        self.assertEqual([], self.snapshots(dst, "vm", "303", "pushed/q/r"))
        self.assertEqual(self.read_all(src, "p", "vm", "300", T0 + 2)["root.pxar.didx"],
                         self.read_all(dst, "pushed", "vm", "300", T0 + 2)["root.pxar.didx"])
        # Again: nothing to send. After one new chunk: one chunk.
        upid = data(src.post(API + "/push", params=params))
        self.assertEqual("OK", self.wait_task(src, upid))
        self.assertEqual(0, self.summary(self.task_log(src, upid), "uploaded"))
        backup(src, "p", "vm", "300", T0 + 3, chunks[:32] + pp.random_chunks(12, 1, 4096))
        upid = data(src.post(API + "/push", params=params))
        self.assertEqual("OK", self.wait_task(src, upid))
        self.assertEqual(1, self.summary(self.task_log(src, upid), "uploaded"))
        # Where the token may not write, the remote's 403 fails the push cleanly.
        data(dst.post(API + "/config/datastore",
                      params={"name": "other", "path": dst.datastore_path("other")}))
        upid = data(src.post(API + "/push", params=dict(params, **{"remote-store": "other",
                                                                  "remote-ns": ""})))
        status = self.wait_task(src, upid)
        log = self.task_log(src, upid)
        self.assertTrue(status.startswith("ERROR"), status)
        self.assertIn("403", log)
        self.assertEqual([], self.snapshots_in(dst, "other", "vm", "300"))

    def snapshots_in(self, srv, store, btype, bid):
        r = srv.get(API + "/admin/datastore/%s/snapshots" % store,
                    params={"backup-type": btype, "backup-id": bid})
        return [] if r.status != 200 else [x["backup-time"] for x in data(r)]

    def test_2_local_sync(self):
        src = self.src
        data(src.post(API + "/config/datastore",
                      params={"name": "copy", "path": src.datastore_path("copy")}))
        data(src.post(API + "/admin/datastore/store1/namespace", params={"name": "loc"}))
        backup(src, "loc", "host", "l1", T0, pp.random_chunks(21, 5, 4096))
        upid = data(src.post(API + "/pull", params={
            "store": "copy", "remote-store": "store1", "remote-ns": "loc"}))
        status = self.wait_task(src, upid)
        self.assertEqual("OK", status, self.task_log(src, upid))
        self.assertEqual([T0], self.snapshots_in(src, "copy", "host", "l1"))

    def test_3_rate_limit(self):
        src, dst = self.src, self.dst
        data(src.post(API + "/admin/datastore/store1/namespace", params={"name": "rate"}))
        data(dst.post(API + "/admin/datastore/store1/namespace", params={"name": "rate"}))
        backup(src, "rate", "host", "r", T0, pp.random_chunks(31, 82, 65536))
        rate = 1000000
        t0 = time.monotonic()
        status, log = self.pull(**{"ns": "rate", "remote-ns": "rate", "rate-in": "1M"})
        elapsed = time.monotonic() - t0
        # The engine's transfer window: first to last byte taken from the wire.
        m = re.search(r"transfer: (\d+) bytes in ([\d.]+) s", log)
        moved, window = int(m.group(1)), float(m.group(2))
        self.assertGreater(moved / rate, 5.0)
        measured = moved / window
        self.assertLess(abs(measured - rate) / rate, 0.10,
                        "%d bytes in %.2f s: %.0f B/s" % (moved, window, measured))
        # And from outside: never faster than the limit (plus the burst).
        self.assertGreaterEqual(elapsed, (moved - rate / 10) / rate)

    def test_4_kill_target_mid_sync(self):
        src, dst = self.src, self.dst
        data(src.post(API + "/admin/datastore/store1/namespace", params={"name": "kill"}))
        data(dst.post(API + "/admin/datastore/store1/namespace", params={"name": "kill"}))
        chunks = pp.random_chunks(41, 240, 16384)
        for i in range(4):
            backup(src, "kill", "vm", "k", T0 + i, chunks[: 60 * (i + 1)])
        p = {"store": "store1", "remote": "src", "remote-store": "store1", "ns": "kill",
             "remote-ns": "kill", "rate-in": "1M"}
        upid = data(dst.post(API + "/pull", params=p))
        # Wait until a snapshot has arrived, then kill -9 the target.
        deadline = time.monotonic() + 60
        while "synced" not in self.task_log(dst, upid):
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        dst.kill9()
        dst.restart()
        mark = src.log_mark()
        del p["rate-in"]
        status, log = self.pull(**{k: v for k, v in p.items() if k != "store"})
        self.assertEqual([T0, T0 + 1, T0 + 2, T0 + 3], self.snapshots(dst, "vm", "k", "kill"))
        # What arrived before the kill is not fetched again.
        self.assertLess(self.served(mark), 240)
        upid = data(dst.post(API + "/admin/datastore/store1/verify", params={"ns": "kill"}))
        self.assertEqual("OK", self.wait_task(dst, upid), self.task_log(dst, upid))

    def test_5_sigterm_during_a_pull(self):
        """A stopping server aborts the running sync, ends its task and exits cleanly."""
        src, dst = self.src, self.dst
        data(src.post(API + "/admin/datastore/store1/namespace", params={"name": "term"}))
        data(dst.post(API + "/admin/datastore/store1/namespace", params={"name": "term"}))
        chunks = pp.random_chunks(42, 120, 16384)
        for i in range(2):
            backup(src, "term", "vm", "t", T0 + i, chunks[: 60 * (i + 1)])
        upid = data(dst.post(API + "/pull", params={
            "store": "store1", "remote": "src", "remote-store": "store1", "ns": "term",
            "remote-ns": "term", "rate-in": "500K"}))
        deadline = time.monotonic() + 60
        while "synced" not in self.task_log(dst, upid):
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        self.assertEqual(0, dst.stop())
        self.assertEqual("", dst.sanitizer_reports())
        dst.start()
        st = data(dst.get(API + "/nodes/localhost/tasks/%s/status" % urllib_quote(upid)))
        self.assertEqual("stopped", st["status"])
        self.assertTrue(st["exitstatus"].startswith("ERROR"), st)
        self.assertEqual([T0], self.snapshots(dst, "vm", "t", "term"))


class RemoteConfig(SyncCase):
    def test_remote_api(self):
        dst = self.dst
        rows = data(dst.get(API + "/config/remote"))
        self.assertEqual(["src"], [r["name"] for r in rows])
        self.assertNotIn("password", rows[0])
        one = data(dst.get(API + "/config/remote/src"))
        self.assertNotIn("password", one)
        path = os.path.join(dst.config_dir, "remote.cfg")
        self.assertEqual(0o600, os.stat(path).st_mode & 0o777)
        with open(path) as f:
            text = f.read()
        secret = self.src.token.split(":", 1)[1]
        self.assertNotIn(secret, text)
        # scans see what the remote offers
        ns = data(dst.get(API + "/config/remote/src/scan/store1/namespaces"))
        self.assertIn({"ns": ""}, ns)
        self.assertEqual([], data(dst.get(API + "/config/remote/src/scan/store1/groups")))
        # a job that uses the remote keeps it
        data(dst.post(API + "/config/sync", params={
            "id": "job1", "store": "store1", "remote": "src", "remote-store": "store1",
            "schedule": "daily", "group-filter": "type:vm,exclude:regex:^vm/9"}))
        r = dst.delete(API + "/config/remote/src")
        self.assertEqual(409, r.status, r)
        job = data(dst.get(API + "/config/sync/job1"))
        self.assertEqual(["type:vm", "exclude:regex:^vm/9"], job["group-filter"])
        rows = data(dst.get(API + "/admin/sync"))
        self.assertEqual("job1", rows[0]["id"])
        self.assertIn("next-run", rows[0])
        upid = data(dst.post(API + "/admin/sync/job1/run"))
        self.assertEqual("OK", self.wait_task(dst, upid))
        rows = data(dst.get(API + "/admin/sync"))
        self.assertEqual(upid, rows[0]["last-run-upid"])
        self.assertEqual("OK", rows[0]["last-run-state"])
        self.assertEqual([], data(dst.get(API + "/config/sync",
                                          params={"sync-direction": "push"})))
        # bad input
        for bad in ({"id": "j2", "store": "store1", "remote-store": "store1",
                     "group-filter": "type:xx"},
                    {"id": "j2", "store": "store1", "remote-store": "x", "remote": "nope"},
                    {"id": "j2", "store": "store1", "remote-store": "store1",
                     "worker-threads": "99"},
                    {"id": "j2", "store": "store1", "remote-store": "store1",
                     "schedule": "never"}):
            r = dst.post(API + "/config/sync", params=bad)
            self.assertEqual(400, r.status, "%r: %r" % (bad, r))
        data(dst.delete(API + "/config/sync/job1"))
        r = dst.post(API + "/config/remote", params={"name": "r2", "host": "h",
                                                     "auth-id": "bad", "password": "x"})
        self.assertEqual(400, r.status, r)


class AdminCli(SyncCase):
    def test_cli(self):
        src, dst = self.src, self.dst
        out = dst.admin("remote", "list", check=True).stdout
        self.assertIn("src", out)
        self.assertNotIn(src.token.split(":", 1)[1], out)
        secret_file = os.path.join(dst.root, "secret")
        with open(secret_file, "w") as f:
            f.write(src.token.split(":", 1)[1] + "\n")
        dst.admin("remote", "create", "src2", "--host", "127.0.0.1", "--port", src.port,
                  "--auth-id", src.token.split(":", 1)[0], "--password-file", secret_file,
                  "--fingerprint", src.fingerprint, check=True)
        self.assertEqual(2, dst.admin("remote", "create", "x", "--password", "p").returncode)
        dst.admin("remote", "update", "src2", "--comment", "second", check=True)
        self.assertEqual("second", data(dst.get(API + "/config/remote/src2"))["comment"])
        backup(src, "", "vm", "cli", T0, pp.random_chunks(51, 3, 4096))
        dst.admin("sync-job", "create", "clijob", "--store", "store1", "--remote", "src2",
                  "--remote-store", "store1", "--group-filter", "group:vm/cli",
                  "--max-depth", "0", check=True)
        self.assertIn("clijob", dst.admin("sync-job", "list", check=True).stdout)
        p = dst.admin("sync-job", "run", "clijob", "--server", "127.0.0.1:%d" % dst.port)
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        self.assertIn("vm/cli", p.stdout)
        self.assertIn("TASK OK", p.stdout)
        self.assertEqual([T0], self.snapshots(dst, "vm", "cli"))
        p = dst.admin("pull", "--store", "store1", "--remote", "src2", "--remote-store",
                      "store1", "--group-filter", "group:vm/cli", "--max-depth", "0",
                      "--owner", "root@pam",
                      "--server", "127.0.0.1:%d" % dst.port)
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        self.assertIn("up to date", p.stdout)
        self.assertEqual(1, dst.admin("remote", "remove", "src2").returncode)  # in use
        dst.admin("sync-job", "remove", "clijob", check=True)
        dst.admin("remote", "remove", "src2", check=True)
        self.assertNotIn("src2", dst.admin("remote", "list", check=True).stdout)


class HostileRemote(unittest.TestCase):
    """A "remote" that lies: namespaces outside remote-ns, names that try to
    leave the datastore, a manifest for another snapshot, garbage JSON. The
    pull must fail cleanly, write nothing outside its datastore, and crash
    nothing."""

    @classmethod
    def setUpClass(cls):
        import http.server
        import threading

        blob = pp.manifest_blob(pp.manifest("vm", "other", T0, []))

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def answer(self, status, body, ctype="application/json"):
                if isinstance(body, (dict, list, str)) or body is None:
                    body = json.dumps({"data": body}).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                path = self.path.split("?")[0]
                if path.endswith("/version"):
                    return self.answer(200, {"version": "4.0"})
                if path.endswith("/namespace"):
                    return self.answer(200, [{"ns": ""}, {"ns": "../up"}, {"ns": "a/../../x"},
                                             {"ns": "ok"}, {"nope": 1}, "x"])
                if path.endswith("/groups"):
                    return self.answer(200, [{"backup-type": "vm", "backup-id": "../../etc"},
                                             {"backup-type": "../x", "backup-id": "a"},
                                             {"backup-type": "vm", "backup-id": "good"},
                                             {"backup-type": "vm", "backup-id": "junk"}])
                if path.endswith("/snapshots"):
                    if "junk" in self.path:
                        return self.answer(200, b"{not json", "application/json")
                    return self.answer(200, [{"backup-time": T0}, {"backup-time": -5},
                                             {"backup-time": "x"}])
                if path.endswith("/download"):
                    return self.answer(200, blob, "application/octet-stream")
                return self.answer(404, None)

            def do_POST(self):
                if self.path.split("?")[0].endswith("/reader"):
                    return self.answer(200, "0123456789abcdef0123456789abcdef")
                return self.answer(404, None)

            def do_DELETE(self):
                return self.answer(200, None)

        cls.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        cls.thread = threading.Thread(target=cls.httpd.serve_forever, daemon=True)
        cls.thread.start()
        cls.addClassCleanup(cls.httpd.shutdown)
        cls.dst = ch.Cairn(tls=True, env={"CAIRN_SYNC_PLAIN_HTTP": "1"})
        cls.addClassCleanup(cls.dst.close)
        data(cls.dst.post(API + "/config/datastore", params={
            "name": "store1", "path": cls.dst.datastore_path("store1")}))
        data(cls.dst.post(API + "/config/remote", params={
            "name": "liar", "host": "127.0.0.1", "port": str(cls.httpd.server_address[1]),
            "auth-id": "root@pam!root", "password": "x"}))

    def test_lies_are_refused(self):
        dst = self.dst
        before = set(os.listdir(dst.data_dir))
        upid = data(dst.post(API + "/pull", params={
            "store": "store1", "remote": "liar", "remote-store": "store1"}))
        deadline = time.monotonic() + 120
        while True:
            st = data(dst.get(API + "/nodes/localhost/tasks/%s/status" % urllib_quote(upid)))
            if st["status"] == "stopped":
                break
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        self.assertTrue(st["exitstatus"].startswith("ERROR"), st)
        rows = data(dst.get(API + "/nodes/localhost/tasks/%s/log" % urllib_quote(upid),
                            params={"limit": "0"}))
        log = "\n".join(r["t"] for r in rows)
        self.assertIn("manifest is invalid", log)  # vm/good's manifest names vm/other
        self.assertIn("junk", log)
        self.assertEqual(before, set(os.listdir(dst.data_dir)))
        base = dst.datastore_path("store1")
        for d, dirs, names in os.walk(base):
            for n in dirs + names:
                self.assertNotIn("..", n)
                self.assertFalse(n.endswith(".sync-tmp"), n)
        # Only the valid namespace and group were made; no snapshot.
        self.assertTrue(os.path.isdir(os.path.join(base, "ns", "ok")))
        self.assertFalse(os.path.exists(os.path.join(base, "ns", "up")))
        r = dst.get(API + "/admin/datastore/store1/snapshots",
                    params={"backup-type": "vm", "backup-id": "good"})
        self.assertEqual([], data(r) if r.status == 200 else [])
        self.assertEqual("", dst.sanitizer_reports())


class S3Target(SyncCase):
    """A pull into an S3-backed datastore (Ceph RGW, test/s3/rgw-up.sh): chunks
    take the backup path to the bucket, the metadata copy ends with the
    manifest, a second pull fetches nothing, and the result verifies."""

    BUCKET = "cairn-sync"

    @classmethod
    def setUpClass(cls):
        import random
        import socket
        import subprocess
        import tempfile
        super().setUpClass()
        cls.work = tempfile.mkdtemp(prefix="cairn-sync-rgw-")
        cls.addClassCleanup(shutil_rmtree, cls.work)
        rng = random.Random(os.getpid() ^ int(time.time()))
        port = None
        for _ in range(200):
            base = rng.randrange(20000, 60000)
            try:
                for i in range(3):
                    with socket.socket() as sk:
                        sk.bind(("127.0.0.1", base + i))
                port = base
                break
            except OSError:
                continue
        s3dir = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "s3")
        rgw = os.path.join(cls.work, "rgw")
        up = subprocess.run([os.path.join(s3dir, "rgw-up.sh"), rgw, str(port)],
                            capture_output=True, text=True, timeout=180)
        cls.addClassCleanup(subprocess.run, [os.path.join(s3dir, "rgw-down.sh"), rgw],
                            capture_output=True, timeout=60)
        if up.returncode != 0:
            raise RuntimeError("Ceph RGW did not start: " + up.stderr[-2000:])
        env = dict(line.split("=", 1) for line in up.stdout.splitlines() if "=" in line)
        cls.rgw = env
        import boto3
        from botocore.config import Config
        cls.s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:%s" % env["S3_PORT"],
                              aws_access_key_id=env["S3_ACCESS_KEY"],
                              aws_secret_access_key=env["S3_SECRET_KEY"],
                              region_name=env["S3_REGION"],
                              config=Config(s3={"addressing_style": "path"}))
        cls.s3.create_bucket(Bucket=cls.BUCKET)
        dst = cls.dst
        data(dst.post(API + "/config/s3", params={
            "id": "rgw", "endpoint": "127.0.0.1", "port": env["S3_PORT"],
            "region": env["S3_REGION"], "access-key": env["S3_ACCESS_KEY"],
            "secret-key": env["S3_SECRET_KEY"], "path-style": "true", "use-tls": "false"}))
        data(dst.post(API + "/config/datastore", params={
            "name": "s3store", "path": dst.datastore_path("s3store"),
            "backend": "type=s3,client=rgw,bucket=%s" % cls.BUCKET}))

    def keys(self, prefix):
        out, token = [], None
        while True:
            kw = {"Bucket": self.BUCKET, "Prefix": prefix}
            if token:
                kw["ContinuationToken"] = token
            r = self.s3.list_objects_v2(**kw)
            out += [o["Key"] for o in r.get("Contents", [])]
            if not r.get("IsTruncated"):
                return out
            token = r["NextContinuationToken"]

    def test_pull_into_s3(self):
        src, dst = self.src, self.dst
        self.mkns(src, "s3")
        chunks = pp.random_chunks(101, 12, 4096)
        backup(src, "s3", "vm", "s", T0, chunks[:10])
        backup(src, "s3", "vm", "s", T0 + 1, chunks)
        p = {"store": "s3store", "remote": "src", "remote-store": "store1", "remote-ns": "s3"}
        upid = data(dst.post(API + "/pull", params=p))
        self.assertEqual("OK", self.wait_task(dst, upid), self.task_log(dst, upid))
        r = dst.get(API + "/admin/datastore/s3store/snapshots",
                    params={"backup-type": "vm", "backup-id": "s"})
        self.assertEqual([T0, T0 + 1], sorted(x["backup-time"] for x in data(r)))
        objs = set(self.keys("s3store/.chunks/"))
        for c in chunks:
            self.assertIn("s3store/.chunks/%s/%s" % (c.digest[:4], c.digest), objs)
        cnt = self.keys("s3store/.cnt/")
        for t in (T0, T0 + 1):
            name = pp.snapshot_name(t)
            self.assertTrue(any(k.endswith("vm/s/%s/index.json.blob" % name) for k in cnt), cnt)
            self.assertTrue(any(k.endswith("vm/s/%s/root.pxar.didx" % name) for k in cnt), cnt)
        # Again: nothing to fetch.
        mark = src.log_mark()
        upid = data(dst.post(API + "/pull", params=p))
        self.assertEqual("OK", self.wait_task(dst, upid))
        self.assertEqual(0, self.served(mark))
        # The cache holds markers only (no_cache); verify reads from the bucket.
        upid = data(dst.post(API + "/admin/datastore/s3store/verify"))
        self.assertEqual("OK", self.wait_task(dst, upid), self.task_log(dst, upid))


def shutil_rmtree(path):
    import shutil
    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
