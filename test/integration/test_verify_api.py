#!/usr/bin/python3
"""Integration tests for issue #5 item 5: POST .../verify against the real
cairnd, on snapshots made through the real backup protocol.

A clean datastore verifies; a flipped byte in a chunk and a missing chunk
fail exactly the snapshots that reference them, by name, in the task log
and the task's status; the corrupt chunk is renamed <digest>.0.bad; the
manifest's unprotected verify_state records ok/failed with the UPID; a
following backup that uploads the chunk again heals it; selection by group
and by snapshot; ignore-verified.

Runs standalone and from ctest; exits non-zero on failure.
"""

import hashlib
import os
import random
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as ch  # noqa: E402
import pbs_proto as pp  # noqa: E402

API = "/api2/json"
TASKS = API + "/nodes/localhost/tasks"
STORE = "vfds"
T0 = 1700000000


def setUpModule():
    ch.require_programs("cairnd", "cairn-admin")


def rbytes(seed, n):
    return random.Random(seed).randbytes(n)


class VerifyTest(pp.CaseMixin, unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = ch.Cairn(tls=False, log_level="info")
        cls.addClassCleanup(cls.finish_server, cls.srv)
        cls.ds = cls.srv.datastore_path(STORE)
        r = cls.srv.post(API + "/config/datastore", params={"name": STORE, "path": cls.ds})
        assert r.status == 200, r

    def backup(self, backup_id, t, chunks, fixed=None):
        b = self.open_session(pp.BackupSession(self.srv, STORE, "vm", backup_id, t))
        b.upload_dynamic("root.pxar.didx", chunks)
        if fixed:
            b.upload_fixed("drive-scsi0.img.fidx", fixed)
        b.upload_blob("qemu-server.conf.blob", b"cores: 2\n", compress=True)
        b.upload_manifest()
        b.finish()

    def verify(self, **params):
        r = self.srv.post("%s/admin/datastore/%s/verify" % (API, STORE),
                          params={k.replace("_", "-"): str(v) for k, v in params.items()})
        upid = self.assertOk(r, "verify")
        deadline = time.monotonic() + 120
        while True:
            st = self.assertOk(self.srv.get("%s/%s/status"
                                            % (TASKS, urllib.parse.quote(upid, safe=""))))
            if st["status"] == "stopped":
                break
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        r = self.srv.get("%s/%s/log" % (TASKS, urllib.parse.quote(upid, safe="")),
                         params={"limit": "0"})
        return upid, st, "\n".join(e["t"] for e in r.data["data"])

    def verify_state(self, backup_id, t):
        with open(os.path.join(pp.snapshot_dir(self.ds, "vm", backup_id, t), pp.MANIFEST),
                  "rb") as f:
            doc = pp.parse_manifest(f.read())
        return doc.get("unprotected", {}).get("verify_state")

    def chunk_file(self, digest):
        return os.path.join(self.ds, ".chunks", digest[:4], digest)

    def test_verify_end_to_end(self):
        shared = pp.Chunk(rbytes(1, 200000))
        a = [shared, pp.Chunk(rbytes(2, 100000), compress=True), pp.Chunk(rbytes(3, 5000))]
        b = [shared, pp.Chunk(rbytes(4, 64000))]
        c = [pp.Chunk(rbytes(5, 90000))]
        disk = [pp.Chunk(rbytes(6, pp.FIXED_CHUNK_SIZE), compress=True),
                pp.Chunk(bytes(1000), compress=True)]
        self.backup("100", T0, a, fixed=disk)
        self.backup("100", T0 + 60, b)
        self.backup("200", T0, c)

        upid, st, log = self.verify()
        self.assertEqual("OK", st["exitstatus"], log)
        self.assertEqual("verify", st["type"])
        self.assertIn("found 3 finished snapshots to check", log)
        self.assertIn("(3 ok, 0 failed, 0 skipped), 7 chunks", log)
        vs = self.verify_state("100", T0)
        self.assertEqual({"state": "ok", "upid": upid}, vs)
        # The manifest kept everything else and is still what a reader gets.
        rd = self.open_session(pp.ReaderSession(self.srv, STORE, "vm", "100", T0))
        m = rd.manifest()
        self.assertEqual({"state": "ok", "upid": upid}, m["unprotected"]["verify_state"])
        self.assertEqual(3, len(m["files"]))
        _, data = rd.restore_index("root.pxar.didx")
        self.assertEqual(b"".join(x.data for x in a), data)
        rd.close()

        # Second run: already verified, skipped (ignore-verified defaults on).
        upid2, st, log = self.verify()
        self.assertIn("(0 ok, 0 failed, 3 skipped)", log)
        self.assertEqual(upid, self.verify_state("100", T0)["upid"])

        # Flip one byte of the shared chunk, delete c's chunk.
        p = self.chunk_file(shared.digest)
        with open(p, "r+b") as f:
            f.seek(100)
            byte = f.read(1)
            f.seek(100)
            f.write(bytes([byte[0] ^ 0x20]))
        os.unlink(self.chunk_file(c[0].digest))
        upid3, st, log = self.verify(ignore_verified=0)
        self.assertRegex(st["exitstatus"], r"^ERROR: verification failed for 3 of 3 snapshots")
        for name in ("vm/100/2023-11-14T22:13:20Z", "vm/100/2023-11-14T22:14:20Z",
                     "vm/200/2023-11-14T22:13:20Z"):
            self.assertIn(name, st["exitstatus"])
            self.assertIn("verify %s failed" % name, log)
        self.assertIn("chunk %s is corrupt" % shared.digest, log)
        self.assertIn("renamed to %s.0.bad" % shared.digest, log)
        self.assertIn("chunk %s is missing" % c[0].digest, log)
        self.assertIn("Failed to verify the following snapshots:", log)
        self.assertFalse(os.path.exists(p))
        self.assertTrue(os.path.exists(p + ".0.bad"))
        self.assertEqual({"state": "failed", "upid": upid3}, self.verify_state("100", T0))
        self.assertEqual("failed", self.verify_state("200", T0)["state"])

        # The task list shows it among the errors.
        errs = self.srv.get(TASKS, params={"errors": "1", "typefilter": "verify"}).data["data"]
        self.assertIn(upid3, [t["upid"] for t in errs])

        # A new backup uploads the chunks again (the previous snapshot failed
        # verification, so nothing is taken from it); everything verifies.
        self.backup("100", T0 + 120, a)
        self.backup("200", T0 + 60, c)
        upid4, st, log = self.verify()  # the failed ones are not "verified": re-checked
        self.assertEqual("OK", st["exitstatus"], log)
        self.assertIn("(5 ok, 0 failed, 0 skipped)", log)

        # Selection: one group, one snapshot.
        _, st, log = self.verify(backup_type="vm", backup_id="200", ignore_verified=0)
        self.assertIn("found 2 finished snapshots", log)
        upid6, st, log = self.verify(backup_type="vm", backup_id="100", backup_time=T0,
                                     ignore_verified=0)
        self.assertIn("found 1 finished snapshots", log)
        self.assertIn(":verify:%s\\x3avm-100-%08X:" % (STORE, T0), upid6)

    def test_errors(self):
        r = self.srv.post("%s/admin/datastore/%s/verify" % (API, STORE),
                          params={"backup-id": "x"})
        self.assertError(r, 400)
        r = self.srv.post("%s/admin/datastore/%s/verify" % (API, STORE),
                          params={"backup-type": "vm", "backup-time": "5"})
        self.assertError(r, 400)
        r = self.srv.post("%s/admin/datastore/%s/verify" % (API, STORE),
                          params={"ignore-verified": "maybe"})
        self.assertError(r, 400)
        r = self.srv.post("%s/admin/datastore/nosuch/verify" % API)
        self.assertError(r, 404)
        upid, st, log = self.verify(backup_type="ct", backup_id="nope")
        self.assertRegex(st["exitstatus"], r"^ERROR: group ct/nope: does not exist")


if __name__ == "__main__":
    unittest.main(verbosity=2)
