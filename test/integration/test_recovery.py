"""What a crash leaves behind is cleaned up at the next start: unfinished
snapshots nobody holds locked, and temporary chunk files old enough to be
abandoned (a fresh one may belong to an insert in progress and stays)."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as H  # noqa: E402
import pbs_proto as pp  # noqa: E402

STORE = "recover"


class RecoveryTest(unittest.TestCase, pp.CaseMixin):
    def setUp(self):
        self.srv = H.Cairn(tls=False, log_level="info")
        self.srv.admin("datastore", "create", STORE, self.srv.datastore_path(STORE),
                       check=True)
        self.ds = self.srv.datastore_path(STORE)

    def tearDown(self):
        self.srv.stop()
        report = self.srv.sanitizer_reports()
        self.srv.close()
        self.assertEqual("", report)

    def test_restart_cleans_up(self):
        b = pp.BackupSession(self.srv, STORE, "host", "crashed", 1000)
        self.open_session(b)
        b.upload_dynamic("a.didx", [pp.Chunk(b"partial work")])
        snap = pp.snapshot_dir(self.ds, "host", "crashed", 1000)
        self.assertTrue(os.path.isdir(snap))
        prefix = os.path.join(self.ds, ".chunks", "abcd")
        os.makedirs(prefix, exist_ok=True)
        old = os.path.join(prefix, "ab" * 32 + ".tmp_OLD123")
        new = os.path.join(prefix, "ab" * 32 + ".tmp_NEW123")
        for p in (old, new):
            with open(p, "wb") as f:
                f.write(b"half a chunk")
        past = time.time() - 2 * 3600
        os.utime(old, (past, past))

        self.srv.kill9()
        self.srv.start()
        deadline = time.monotonic() + 10
        while (os.path.exists(old) or os.path.isdir(snap)) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(os.path.isdir(snap), self.log_tail())
        self.assertFalse(os.path.exists(old), self.log_tail())
        self.assertTrue(os.path.exists(new))
        # The group is usable again at once.
        b2 = pp.BackupSession(self.srv, STORE, "host", "crashed", 2000)
        self.open_session(b2)
        b2.upload_dynamic("a.didx", [pp.Chunk(b"second try")])
        b2.upload_manifest()
        b2.finish()

    # ---- issue #12, item 1: only `finish` makes a snapshot complete ----

    def crash_after_manifest(self, variant):
        """Backs up host/m at 1000 (finished), then at 2000 uploads a manifest
        that finish would not accept (`variant`), crashes and restarts."""
        base = pp.BackupSession(self.srv, STORE, "host", "m", 1000)
        self.open_session(base)
        base.upload_dynamic("data.didx", [pp.Chunk(b"the base")])
        base.upload_manifest()
        base.finish()

        b = pp.BackupSession(self.srv, STORE, "host", "m", 2000)
        self.open_session(b)
        c = pp.Chunk(b"crashed backup")
        if variant == "writer left open":
            wid = b.dynamic_index("data.didx")
            b.upload_chunk(wid, c)
            b.append(wid, [c.digest], [0])
            csum = pp.didx_csum([c.size], [c.digest])
            doc = pp.manifest("host", "m", 2000, [{"filename": "data.didx", "crypt-mode": "none",
                                                   "size": c.size, "csum": csum}])
            self.assertOk(b.blob_raw(pp.MANIFEST, pp.manifest_blob(doc)))
            self.assertError(b.call("POST", "finish"), 400, "finish with an open writer",
                             mentions="open")
        else:
            entry, _ = b.upload_dynamic("data.didx", [c])
            doc = pp.manifest("host", "someone-else", 2000, [entry])
            self.assertOk(b.blob_raw(pp.MANIFEST, pp.manifest_blob(doc)))
        b.close_connection()
        self.srv.kill9()
        self.srv.start()

    def check_not_complete(self):
        snap = pp.snapshot_dir(self.ds, "host", "m", 2000)
        # Listed unfinished (until the recovery walk removes it) or not at all.
        lr = self.srv.get(pp.API + "/admin/datastore/%s/snapshots" % STORE,
                          params={"backup-type": "host", "backup-id": "m"})
        listed = {item.get("backup-time"): item for item in self.assertOk(lr)}
        self.assertFalse(listed[1000].get("unfinished", False), listed)
        if 2000 in listed:
            self.assertTrue(listed[2000].get("unfinished"), listed[2000])
        # A reader is refused.
        r = pp.ReaderSession(self.srv, STORE, "host", "m", 2000).open_raw()
        self.assertError(r, (400, 404, 409), "reader of the crashed snapshot")
        # Recovery removes it, as docs/operations.md promises.
        self.assertTrue(self.poll(lambda: not os.path.isdir(snap), timeout=10),
                        "crashed snapshot not removed" + self.log_tail())
        # The next backup builds on the last finished snapshot.
        nxt = pp.BackupSession(self.srv, STORE, "host", "m", 3000)
        self.open_session(nxt)
        self.assertEqual(1000, nxt.previous_backup_time())
        self.assertOk(nxt.abort())
        self.assertTrue(self.poll(lambda: not os.path.isdir(
            pp.snapshot_dir(self.ds, "host", "m", 3000))))

    def test_crash_after_manifest_with_open_writer(self):
        self.crash_after_manifest("writer left open")
        self.check_not_complete()

    def test_crash_after_manifest_of_another_backup_id(self):
        self.crash_after_manifest("manifest of another backup-id")
        self.check_not_complete()


if __name__ == "__main__":
    unittest.main(verbosity=2)
