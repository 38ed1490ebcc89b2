#!/usr/bin/python3
"""Integration tests for issue #3 (item 8): the backup and reader protocol.

A full backup (a fixed index, a dynamic index, blobs, the manifest) restored
through a reader session and compared byte for byte; an incremental backup
that re-uses the previous snapshot's chunks without uploading them; eight
connections uploading the same chunks at once (one session, and eight
sessions); abort by DELETE and by idle timeout; kill -9 in the middle of a
backup and a restart. Hostile input is in test_backup_hostile.py.

The client side is built from first principles in pbs_proto.py. Runs
standalone (`python3 test_backup_protocol.py`, CAIRN_BIN_DIR=build/bin) and
from ctest; exits non-zero on failure.

CAIRN_STRICT_TMP_CLEANUP=1 also requires that a restart leaves no chunk temp
file (`<digest>.tmp_XXXXXX`) behind after a crash; cairnd does not remove them
yet (they are never taken for chunks, which is always checked).
"""

import http.client
import os
import random
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as ch  # noqa: E402
import pbs_proto as pp  # noqa: E402

API = pp.API
STORE = "ds1"
T0 = 1700000000  # 2023-11-14T22:13:20Z
MiB = 1024 * 1024


def setUpModule():
    ch.require_programs("cairnd", "cairn-admin")


def rbytes(seed, n):
    return random.Random(seed).randbytes(n)


def text_bytes(seed, n):
    """Compressible bytes (log-like lines)."""
    rnd = random.Random(seed)
    out = bytearray()
    i = 0
    while len(out) < n:
        out += b"%08d cairn test line %d level=%s\n" % (i, rnd.randrange(1000),
                                                         rnd.choice([b"info", b"warn"]))
        i += 1
    return bytes(out[:n])


class Case(pp.CaseMixin, unittest.TestCase):
    """One server per class (cls.srv) with datastore ds1."""

    server_args = ()
    tls = False

    @classmethod
    def setUpClass(cls):
        cls.srv = ch.Cairn(tls=cls.tls, args=list(cls.server_args), log_level="info")
        cls.addClassCleanup(cls.finish_server, cls.srv)
        cls.srv.admin("datastore", "create", STORE, cls.srv.datastore_path(STORE), check=True)
        cls.ds = cls.srv.datastore_path(STORE)

    def backup(self, backup_id, t, ns=None, srv=None):
        return self.open_session(pp.BackupSession(srv or self.srv, STORE, "host", backup_id,
                                                  t, ns=ns))

    def reader(self, backup_id, t, ns=None, srv=None):
        return self.open_session(pp.ReaderSession(srv or self.srv, STORE, "host", backup_id,
                                                  t, ns=ns))

    def snapdir(self, backup_id, t, ns=None):
        return pp.snapshot_dir(self.ds, "host", backup_id, t, ns)


# ---------------------------------------------------------------------------


class FullBackupTest(Case):
    """A complete backup and its byte-for-byte restore (plain HTTP here, TLS in
    the subclass)."""

    def full_backup_and_restore(self, backup_id, ns=None):
        # Fixed index: 4 MiB random, 4 MiB zeros (stored compressed), a short tail.
        disk = rbytes(1, 4 * MiB) + bytes(4 * MiB) + rbytes(2, MiB + 123)
        fixed = [pp.Chunk(c, compress=True) for c in pp.split(disk, pp.FIXED_CHUNK_SIZE)]
        # Dynamic index: odd sizes, compressed and plain, a 3-byte chunk, and the
        # first chunk again (referenced twice, uploaded once).
        pieces = [rbytes(3, 65537), text_bytes(4, 2 * MiB), rbytes(5, 700001), b"end",
                  rbytes(6, MiB)]
        dyn = [pp.Chunk(p, compress=(i % 2 == 1)) for i, p in enumerate(pieces)]
        dyn.append(dyn[0])
        archive = b"".join(c.data for c in dyn)
        conf = b"memory: 2048\ncores: 2\nname: test\n"
        log = text_bytes(7, 5000)
        distinct = {c.digest for c in fixed + dyn}
        before = pp.chunk_digests(self.ds)

        b = self.backup(backup_id, T0, ns)
        self.assertIsNone(b.previous_backup_time(), "first backup has no previous")
        e_fix, up_fix = b.upload_fixed("drive-scsi0.img.fidx", fixed)
        e_dyn, up_dyn = b.upload_dynamic("root.pxar.didx", dyn)
        e_conf = b.upload_blob("qemu-server.conf.blob", conf, compress=True)
        e_log = b.upload_blob("client.log.blob", log, compress=False)
        self.assertEqual(3, up_fix)
        self.assertEqual(5, up_dyn)
        doc = b.upload_manifest()
        b.finish()
        self.assertError(b.call("POST", "finish"), 404, "finished session is gone")
        b.close_connection()

        # On disk: the PBS layout, the files, valid chunks named by digest.
        snap = self.snapdir(backup_id, T0, ns)
        self.assertEqual({"drive-scsi0.img.fidx", "root.pxar.didx", "qemu-server.conf.blob",
                          "client.log.blob", pp.MANIFEST}, set(os.listdir(snap)))
        with open(os.path.join(os.path.dirname(snap), "owner")) as f:
            self.assertRegex(f.read(), r"^root@pam(!\S+)?\n?$")
        self.assertChunkStoreClean(self.ds, expect=before | distinct)
        with open(os.path.join(snap, "drive-scsi0.img.fidx"), "rb") as f:
            fidx = pp.Index.parse(f.read())
        self.assertEqual(("fixed", len(disk), pp.FIXED_CHUNK_SIZE, e_fix["csum"]),
                         (fidx.kind, fidx.size, fidx.chunk_size, fidx.csum))
        self.assertEqual([c.digest for c in fixed], fidx.digests)
        with open(os.path.join(snap, "root.pxar.didx"), "rb") as f:
            didx = pp.Index.parse(f.read())
        self.assertEqual(("dynamic", len(archive), e_dyn["csum"]),
                         (didx.kind, didx.size, didx.csum))
        self.assertEqual([c.digest for c in dyn], didx.digests)
        with open(os.path.join(snap, "client.log.blob"), "rb") as f:
            self.assertEqual(pp.blob_encode(log), f.read())
        with open(os.path.join(snap, pp.MANIFEST), "rb") as f:
            stored = pp.parse_manifest(f.read())
        self.assertEqual(doc["files"], stored["files"])
        self.assertEqual(("host", backup_id, T0), (stored["backup-type"], stored["backup-id"],
                                                   stored["backup-time"]))
        stats = stored["unprotected"]["chunk_upload_stats"]
        uploaded = [c for c in fixed] + dyn[:5]
        self.assertEqual({"count": 8, "size": sum(c.size for c in uploaded),
                          "compressed_size": sum(len(c.blob) for c in uploaded),
                          "duplicates": sum(c.digest in before for c in uploaded)}, stats)

        # Restore through a reader session.
        r = self.reader(backup_id, T0, ns)
        self.assertEqual(stored, r.manifest())
        idx, got = r.restore_index("drive-scsi0.img.fidx")
        self.assertEqual(disk, got, "fixed index restore differs")
        idx, got = r.restore_index("root.pxar.didx")
        self.assertEqual(archive, got, "dynamic index restore differs")
        self.assertEqual(conf, r.restore_blob("qemu-server.conf.blob"))
        self.assertEqual(log, r.restore_blob("client.log.blob"))
        self.assertEqual(e_conf["csum"], pp.sha256_hex(r.download("qemu-server.conf.blob")))
        self.assertEqual(e_log["size"], len(r.download("client.log.blob")))
        # The chunk as stored: same digest, decodes to the original bytes.
        raw = r.chunk(fixed[1].digest)
        self.assertEqual(fixed[1].data, pp.blob_decode(raw))
        self.assertOk(r.close())
        self.assertError(r.call("GET", "download", params={"file-name": pp.MANIFEST}), 404,
                         "closed reader session")
        r.close_connection()

    def test_full_backup_and_restore(self):
        self.full_backup_and_restore("full")

    def test_full_backup_in_namespace(self):
        # No namespace API yet: the PBS layout of namespace "team/a" by hand.
        os.makedirs(os.path.join(self.ds, "ns", "team", "ns", "a"), exist_ok=True)
        self.full_backup_and_restore("nsfull", ns="team/a")
        self.assertTrue(os.path.isdir(os.path.join(self.ds, "ns", "team", "ns", "a", "host",
                                                   "nsfull")))
        self.assertFalse(os.path.exists(os.path.join(self.ds, "host", "nsfull")))

    def test_missing_namespace_is_refused(self):
        r = pp.BackupSession(self.srv, STORE, "host", "nons", T0, ns="nosuch").open_raw()
        self.assertError(r, (400, 404), mentions="namespace")
        self.assertFalse(os.path.exists(os.path.join(self.ds, "ns", "nosuch")))


class TlsFullBackupTest(FullBackupTest):
    tls = True

    # The namespace variants add nothing over TLS.
    test_full_backup_in_namespace = None
    test_missing_namespace_is_refused = None


class IncrementalTest(Case):
    def test_incremental_reuses_previous_chunks(self):
        old = [pp.Chunk(rbytes(100 + i, 256 * 1024 + i)) for i in range(8)]
        disk = rbytes(120, 8 * MiB + 1024)
        fix = [pp.Chunk(c) for c in pp.split(disk, pp.FIXED_CHUNK_SIZE)]
        b = self.backup("incr", T0)
        b.upload_dynamic("root.pxar.didx", old)
        b.upload_fixed("disk.fidx", fix)
        b.upload_manifest()
        b.finish()
        first = pp.chunk_digests(self.ds)

        # Second backup: one chunk of the archive changed, one appended; one
        # block of the disk changed. Only those three are uploaded.
        t1 = T0 + 3600
        b = self.backup("incr", t1)
        self.assertEqual(T0, b.previous_backup_time())
        prev = pp.Index.parse(b.previous("root.pxar.didx"))
        self.assertEqual([c.digest for c in old], prev.digests)
        prev_fix = pp.Index.parse(b.previous("disk.fidx"))
        self.assertEqual([c.digest for c in fix], prev_fix.digests)
        self.assertError(b.call("GET", "previous", params={"archive-name": "nope.didx"}),
                         404)
        known = set(prev.digests) | set(prev_fix.digests)
        new = old[:3] + [pp.Chunk(rbytes(130, 300000))] + old[4:] + [pp.Chunk(b"tail")]
        disk2 = disk[:4 * MiB] + rbytes(131, 4 * MiB) + disk[8 * MiB:]
        fix2 = [pp.Chunk(c) for c in pp.split(disk2, pp.FIXED_CHUNK_SIZE)]
        _, up_dyn = b.upload_dynamic("root.pxar.didx", new, known=known)
        _, up_fix = b.upload_fixed("disk.fidx", fix2, known=known)
        self.assertEqual((2, 1), (up_dyn, up_fix))
        b.upload_manifest()
        b.finish()

        after = pp.chunk_digests(self.ds)
        self.assertEqual(len(first) + 3, len(after), "only the new chunks were stored")
        self.assertEqual({new[3].digest, new[-1].digest, fix2[1].digest}, after - first)
        self.assertChunkStoreClean(self.ds)
        with open(os.path.join(self.snapdir("incr", t1), pp.MANIFEST), "rb") as f:
            stats = pp.parse_manifest(f.read())["unprotected"]["chunk_upload_stats"]
        self.assertEqual(3, stats["count"])
        self.assertEqual(new[3].size + new[-1].size + fix2[1].size, stats["size"])
        self.assertEqual(0, stats["duplicates"])

        r = self.reader("incr", t1)
        self.assertEqual(b"".join(c.data for c in new), r.restore_index("root.pxar.didx")[1])
        self.assertEqual(disk2, r.restore_index("disk.fidx")[1])
        self.assertOk(r.close())
        # The first snapshot is untouched.
        r = self.reader("incr", T0)
        self.assertEqual(disk, r.restore_index("disk.fidx")[1])
        self.assertOk(r.close())

    def test_previous_only_registers_what_it_downloaded(self):
        a, c = pp.Chunk(rbytes(140, 1000)), pp.Chunk(rbytes(141, 1000))
        b = self.backup("incr2", T0)
        b.upload_dynamic("a.didx", [a])
        b.upload_dynamic("c.didx", [c])
        b.upload_manifest()
        b.finish()
        b = self.backup("incr2", T0 + 1)
        b.previous("a.didx")
        wid = b.dynamic_index("x.didx")
        b.append(wid, [a.digest], [0])
        self.assertError(b.append_raw(wid, [c.digest], [a.size]), 400, mentions="unknown")
        self.assertOk(b.abort())


class ConcurrencyTest(Case):
    def race(self, n, fn):
        """Runs fn(k) in n threads released together; returns their results."""
        barrier = threading.Barrier(n)
        results = [None] * n

        def run(k):
            try:
                barrier.wait(10)
                results[k] = fn(k)
            except BaseException as e:  # reported by the test
                results[k] = e
        threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        return results

    def test_eight_connections_same_chunks_one_session(self):
        chunks = [pp.Chunk(rbytes(200 + i, 512 * 1024 - i), compress=False) for i in range(16)]
        before = pp.chunk_digests(self.ds)
        b = self.backup("conc1", T0)
        wid = b.dynamic_index("root.pxar.didx")

        def upload(k):
            conn = self.srv.connection()
            order = list(range(16))
            random.Random(k).shuffle(order)
            try:
                return [b.chunk_raw(wid, chunks[i].digest, chunks[i].size, chunks[i].blob,
                                    conn=conn).status for i in order]
            finally:
                conn.close()
        results = self.race(8, upload)
        for k, res in enumerate(results):
            self.assertEqual([200] * 16, res, "connection %d%s" % (k, self.log_tail()))
        self.assertChunkStoreClean(self.ds, expect=before | {c.digest for c in chunks})
        offs = [sum(c.size for c in chunks[:i]) for i in range(16)]
        b.append(wid, [c.digest for c in chunks], offs)
        size = sum(c.size for c in chunks)
        b.close_index(wid, 16, size, pp.didx_csum([o + c.size for o, c in zip(offs, chunks)],
                                                  [c.digest for c in chunks]))
        b.files.append({"filename": "root.pxar.didx", "crypt-mode": "none", "size": size,
                        "csum": pp.didx_csum([o + c.size for o, c in zip(offs, chunks)],
                                             [c.digest for c in chunks])})
        b.upload_manifest()
        b.finish()
        with open(os.path.join(self.snapdir("conc1", T0), pp.MANIFEST), "rb") as f:
            stats = pp.parse_manifest(f.read())["unprotected"]["chunk_upload_stats"]
        self.assertEqual(8 * 16, stats["count"])
        self.assertEqual(8 * sum(c.size for c in chunks), stats["size"])
        r = self.reader("conc1", T0)
        self.assertEqual(b"".join(c.data for c in chunks), r.restore_index("root.pxar.didx")[1])
        r.close()

    def test_eight_sessions_same_chunks(self):
        chunks = [pp.Chunk(rbytes(300 + i, 300000 + i), compress=(i % 2 == 0))
                  for i in range(12)]
        before = pp.chunk_digests(self.ds)

        def backup(k):
            b = self.backup("conc-s%d" % k, T0)
            b.upload_dynamic("root.pxar.didx", chunks)  # its own connection
            b.upload_manifest()
            b.finish()
            return "ok"
        results = self.race(8, backup)
        self.assertEqual(["ok"] * 8, results, self.log_tail())
        self.assertChunkStoreClean(self.ds, expect=before | {c.digest for c in chunks})
        want = b"".join(c.data for c in chunks)
        for k in range(8):
            r = self.reader("conc-s%d" % k, T0)
            self.assertEqual(want, r.restore_index("root.pxar.didx")[1])
            r.close()

    def test_second_backup_of_a_group_conflicts(self):
        b = self.backup("conc-lock", T0)
        r = pp.BackupSession(self.srv, STORE, "host", "conc-lock", T0 + 10).open_raw()
        self.assertError(r, 409)
        self.assertFalse(os.path.exists(self.snapdir("conc-lock", T0 + 10)))
        self.assertOk(b.abort())
        self.poll(lambda: not os.path.exists(self.snapdir("conc-lock", T0)))
        # The group lock went with the session.
        b = self.backup("conc-lock", T0 + 10)
        self.assertOk(b.abort())


class AbortTest(Case):
    def test_abort_by_delete(self):
        c = pp.Chunk(rbytes(400, 100000))
        b = self.backup("abort1", T0)
        wid = b.dynamic_index("root.pxar.didx")
        b.upload_chunk(wid, c)
        b.append(wid, [c.digest], [0])
        b.upload_blob("x.blob", b"payload")
        snap = self.snapdir("abort1", T0)
        self.assertTrue(os.path.isdir(snap))
        self.assertOk(b.abort())
        self.assertTrue(self.poll(lambda: not os.path.exists(snap)),
                        "aborted snapshot still there")
        for method, ep in (("POST", "finish"), ("GET", "previous_backup_time"),
                           ("DELETE", "")):
            self.assertError(b.call(method, ep), 404, "%s %s after abort" % (method, ep))
        b.close_connection()
        self.assertChunkStoreClean(self.ds)
        # Group and snapshot are free again: the same backup can be redone.
        b = self.backup("abort1", T0)
        b.upload_dynamic("root.pxar.didx", [c])
        b.upload_manifest()
        b.finish()

    def test_abort_while_uploads_run(self):
        base = rbytes(410, 256 * 1024)
        b = self.backup("abort2", T0)
        wid = b.dynamic_index("root.pxar.didx")
        started = threading.Event()
        statuses = [[] for _ in range(4)]

        def upload(k):
            conn = self.srv.connection()
            try:
                for i in range(200):
                    c = pp.Chunk(base + b"%d-%d" % (k, i))
                    try:
                        st = b.chunk_raw(wid, c.digest, c.size, c.blob, conn=conn).status
                    except OSError:
                        st = "conn"
                    statuses[k].append(st)
                    started.set()
                    if st != 200:
                        return
            finally:
                conn.close()
        threads = [threading.Thread(target=upload, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        self.assertTrue(started.wait(10))
        time.sleep(0.1)
        conn = self.srv.connection()
        try:
            self.assertOk(b.abort(conn=conn))
        finally:
            conn.close()
        for t in threads:
            t.join(30)
        for k, st in enumerate(statuses):
            # Ends with the session gone (404) or ended under the upload (409).
            self.assertIn(st[-1], (404, 409), "thread %d: %r" % (k, st[-5:]))
            self.assertTrue(all(s == 200 for s in st[:-1]), st)
        snap = self.snapdir("abort2", T0)
        self.assertTrue(self.poll(lambda: not os.path.exists(snap)))
        self.assertChunkStoreClean(self.ds)
        self.assertTrue(self.srv.alive())


class IdleTimeoutTest(Case):
    server_args = ("--session-timeout-ms", "1000")

    def test_idle_backup_session_is_aborted(self):
        mark = self.srv.log_mark()
        b = self.backup("idle1", T0)
        wid = b.dynamic_index("root.pxar.didx")
        b.upload_chunk(wid, pp.Chunk(b"idle chunk"))
        snap = self.snapdir("idle1", T0)
        self.assertTrue(os.path.isdir(snap))
        self.assertTrue(self.poll(lambda: not os.path.exists(snap), timeout=8),
                        "idle session's snapshot not removed" + self.log_tail())
        self.assertTrue(self.srv.wait_log(r"idle", since=mark), self.log_tail())
        self.assertError(b.call("POST", "finish"), 404)
        b.close_connection()
        b = self.backup("idle1", T0)  # the group lock was released
        self.assertOk(b.abort())

    def test_idle_reader_session_is_closed(self):
        b = self.backup("idle2", T0)
        b.upload_dynamic("root.pxar.didx", [pp.Chunk(b"reader chunk")])
        b.upload_manifest()
        b.finish()
        r = self.reader("idle2", T0)
        r.download("root.pxar.didx")
        time.sleep(2.5)
        self.assertError(r.download_raw(pp.MANIFEST), 404)
        r.close_connection()

    def test_active_session_is_not_aborted(self):
        b = self.backup("idle3", T0)
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            self.assertIsNone(b.previous_backup_time())
            time.sleep(0.3)
        b.upload_dynamic("root.pxar.didx", [pp.Chunk(b"still alive")])
        b.upload_manifest()
        b.finish()
        self.assertTrue(os.path.exists(os.path.join(self.snapdir("idle3", T0), pp.MANIFEST)))


class CrashTest(Case):
    def test_kill9_mid_backup_then_restart(self):
        srv, ds = self.srv, self.ds
        # A finished snapshot that must survive.
        keep = [pp.Chunk(rbytes(500 + i, 200000)) for i in range(4)]
        b = self.backup("crash", T0)
        b.upload_dynamic("root.pxar.didx", keep)
        b.upload_manifest()
        b.finish()

        # The victim: a closed index, a blob, and chunks streaming from four
        # connections (distinct 1 MiB chunks) when cairnd is killed.
        t1 = T0 + 60
        b = self.backup("crash", t1)
        b.upload_dynamic("done.didx", keep[:2])
        b.upload_blob("conf.blob", b"conf")
        wid = b.dynamic_index("root.pxar.didx")
        base = rbytes(510, MiB - 16)
        count = [0]
        lock = threading.Lock()
        stop = threading.Event()

        def upload(k):
            conn = srv.connection()
            i = 0
            try:
                while not stop.is_set():
                    c = pp.Chunk(base + b"%08d%08d" % (k, i))
                    i += 1
                    try:
                        if b.chunk_raw(wid, c.digest, c.size, c.blob, conn=conn).status != 200:
                            return
                    except (OSError, http.client.HTTPException):
                        return
                    with lock:
                        count[0] += 1
            finally:
                conn.close()
        threads = [threading.Thread(target=upload, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        self.assertTrue(self.poll(lambda: count[0] >= 12, timeout=20), "uploads stalled")
        srv.kill9()
        stop.set()
        for t in threads:
            t.join(10)
        b.close_connection()

        snap = self.snapdir("crash", t1)
        for phase in ("after the crash", "after the restart"):
            # No temp file is taken for a chunk: every chunk name holds a
            # complete, valid chunk; anything else is a recognisable temp file.
            self.assertChunkStoreClean(ds, allow_tmp=True)
            # The unfinished snapshot is gone or has no manifest (= unfinished),
            # and holds no half-written file under a final name.
            if os.path.isdir(snap):
                names = os.listdir(snap)
                self.assertNotIn(pp.MANIFEST, names, phase)
                for n in names:
                    if n.endswith((".didx", ".fidx")):
                        with open(os.path.join(snap, n), "rb") as f:
                            pp.Index.parse(f.read())
            if phase == "after the crash":
                srv.start()

        if os.environ.get("CAIRN_STRICT_TMP_CLEANUP") == "1":
            self.assertChunkStoreClean(ds)
        else:
            tmp = [n for _, n, _ in pp.chunk_dir_listing(ds) if pp.TMP_CHUNK.match(n)]
            if tmp:
                sys.stderr.write("note: %d chunk temp file(s) left after the crash and "
                                 "restart (CAIRN_STRICT_TMP_CLEANUP=1 makes this fail)\n"
                                 % len(tmp))

        # The listing shows the snapshot as unfinished or not at all, and the
        # finished one as finished.
        lr = srv.get(API + "/admin/datastore/%s/snapshots" % STORE,
                     params={"backup-type": "host", "backup-id": "crash"})
        listed = {item.get("backup-time"): item for item in self.assertOk(lr)}
        self.assertIn(T0, listed, lr)
        self.assertFalse(listed[T0].get("unfinished", False), listed[T0])
        if t1 in listed:
            self.assertTrue(listed[t1].get("unfinished"), listed[t1])
        # The finished snapshot restores; the unfinished one cannot be read.
        r = self.reader("crash", T0)
        self.assertEqual(b"".join(c.data for c in keep), r.restore_index("root.pxar.didx")[1])
        r.close()
        self.assertError(pp.ReaderSession(srv, STORE, "host", "crash", t1).open_raw(),
                         (400, 404))
        # Locks died with the process: the group takes a new backup, whose base
        # is the last finished snapshot.
        b = self.backup("crash", t1 + 60)
        self.assertEqual(T0, b.previous_backup_time())
        b.previous("root.pxar.didx")
        b.upload_dynamic("root.pxar.didx", keep, known={c.digest for c in keep})
        b.upload_manifest()
        b.finish()


if __name__ == "__main__":
    unittest.main(verbosity=2)
