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


if __name__ == "__main__":
    unittest.main(verbosity=2)
