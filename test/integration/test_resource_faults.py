#!/usr/bin/python3
"""Integration tests for issue #17 item 3: a full file system hit during each
kind of write.

One datastore lives on a small tmpfs (4 MiB, 1024 inodes), another on the
normal disk. With the tmpfs filled to the last block and the last inode,
each kind of write to the full datastore is refused with 507 Insufficient
Storage and a message saying so: a chunk upload, an index close, a blob
upload, the manifest (so the snapshot cannot finish). Each time:

- nothing half-written is left (no temp chunk, no temp index, no partial
  blob or manifest; the chunk store holds only complete, valid chunks);
- the other datastore still takes and serves a whole backup;
- once space is freed, the same operation succeeds.

The configuration directory on a full tmpfs (a separate server): a
datastore create is refused with a clear error, datastore.cfg is unchanged
and no temp file is left; after freeing space the create succeeds.

Task logs and .gc-status on a full file system are covered by
test_gc_full_disk.py; file-descriptor exhaustion by test_http_hostile.py
(FdExhaustionTest) and test_foundation.py (test_fd_exhaustion_survived).

Mounting needs root: the tests fail, never skip, when they cannot mount.
Runs standalone (`python3 test_resource_faults.py`, CAIRN_BIN_DIR=build/bin)
and from ctest; exits non-zero on failure.
"""

import contextlib
import os
import random
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as ch  # noqa: E402
import pbs_proto as pp  # noqa: E402
from test_gc_full_disk import fill, mount_tmpfs, umount, unfill  # noqa: E402

API = pp.API
FULL = "fullds"
OTHER = "diskds"
T0 = 1700000000
CHUNK = 64 * 1024
MOUNT_OPTS = "size=4m,nr_inodes=1024,mode=0755"
NOSPC = "no space left on device"


def setUpModule():
    ch.require_programs("cairnd", "cairn-admin")


def chunks(seed, n):
    return pp.random_chunks(seed, n, CHUNK)


def files_under(root):
    out = set()
    for d, _dirs, files in os.walk(root):
        for n in files:
            out.add(os.path.relpath(os.path.join(d, n), root))
    return out


class TmpfsCase(pp.CaseMixin, unittest.TestCase):
    """A server with a tmpfs at self.mnt, unmounted at clean-up."""

    def mount(self, srv):
        self.srv = srv
        self.mnt = os.path.join(srv.root, "fs")
        os.mkdir(self.mnt)
        self.mounted = False
        self.addCleanup(self.cleanup)
        mount_tmpfs(self.mnt, MOUNT_OPTS)
        self.mounted = True

    def cleanup(self):
        try:
            self.srv.stop()
        finally:
            if self.mounted:
                umount(self.mnt)
            self.srv.close()
        report = self.srv.sanitizer_reports()
        if report:
            raise AssertionError("cairnd reported a sanitizer error or crash:\n" + report)

    @contextlib.contextmanager
    def full(self):
        fill(self.mnt)
        try:
            yield
        finally:
            unfill(self.mnt)

    def assertNoSpace(self, resp, what):
        self.assertError(resp, 507, what, mentions=NOSPC)


class FullDatastoreTest(TmpfsCase):
    _ids = 0

    def setUp(self):
        self.mount(ch.Cairn(tls=False, log_level="info"))
        self.ds = os.path.join(self.mnt, FULL)
        self.other = self.srv.datastore_path(OTHER)
        for name, path in ((FULL, self.ds), (OTHER, self.other)):
            self.assertOk(self.srv.post(API + "/config/datastore",
                                        params={"name": name, "path": path}), "add " + name)

    def session(self, store=FULL):
        FullDatastoreTest._ids += 1
        b = self.open_session(pp.BackupSession(self.srv, store, "host",
                                               "b%d" % FullDatastoreTest._ids, T0))
        self.addCleanup(b.close_connection)
        return b

    def snapdir(self, b):
        return pp.snapshot_dir(self.ds, "host", b.backup_id, b.backup_time)

    def assertOtherServes(self, seed):
        """A whole backup to the datastore on the normal disk, and its restore."""
        data = chunks(seed, 3)
        b = self.session(OTHER)
        b.upload_dynamic("root.pxar.didx", data)
        b.upload_blob("extra.blob", b"x" * 1000)
        b.upload_manifest()
        b.finish()
        r = self.open_session(pp.ReaderSession(self.srv, OTHER, "host", b.backup_id, T0))
        try:
            _idx, got = r.restore_index("root.pxar.didx")
            self.assertEqual(b"".join(c.data for c in data), got)
        finally:
            r.close()

    def assertClean(self, b, expect_chunks, expect_files):
        self.assertChunkStoreClean(self.ds, expect=expect_chunks)
        self.assertEqual(set(expect_files), files_under(self.snapdir(b)),
                         "snapshot directory")

    def test_chunk_upload(self):
        b = self.session()
        wid = b.dynamic_index("root.pxar.didx")
        before = self.assertChunkStoreClean(self.ds)
        c = chunks(1, 1)[0]
        with self.full():
            self.assertNoSpace(b.chunk_raw(wid, c.digest, c.size, c.blob), "chunk")
            self.assertClean(b, before, ())
            self.assertOtherServes(2)
        # Space again: the same chunk is taken, the backup completes.
        b.upload_chunk(wid, c)
        self.assertChunkStoreClean(self.ds, expect=before | {c.digest})
        b.append(wid, [c.digest], [0])
        b.close_index(wid, 1, c.size, pp.didx_csum([c.size], [c.digest]))
        b.upload_manifest()
        b.finish()

    def test_index_close(self):
        data = chunks(3, 4)
        b = self.session()
        wid = b.dynamic_index("root.pxar.didx")
        ends, pos = [], 0
        for c in data:
            b.upload_chunk(wid, c)
            pos += c.size
            ends.append(pos)
        digests = [c.digest for c in data]
        b.append(wid, digests, [e - c.size for e, c in zip(ends, data)])
        csum = pp.didx_csum(ends, digests)
        with self.full():
            self.assertNoSpace(b.close_raw(wid, len(data), pos, csum), "index close")
            # No index file, complete or temporary.
            self.assertClean(b, set(digests), ())
            self.assertOtherServes(4)
        b.close_index(wid, len(data), pos, csum)
        self.assertClean(b, set(digests), ("root.pxar.didx",))
        b.files.append({"filename": "root.pxar.didx", "crypt-mode": "none", "size": pos,
                        "csum": csum})
        b.upload_manifest()
        b.finish()

    def test_blob_upload(self):
        b = self.session()
        payload = random.Random(5).randbytes(200 * 1024)
        body = pp.blob_encode(payload)
        with self.full():
            self.assertNoSpace(b.blob_raw("catalog.blob", body), "blob")
            self.assertClean(b, set(), ())
            self.assertOtherServes(6)
        b.upload_blob("catalog.blob", payload)
        self.assertClean(b, set(), ("catalog.blob",))
        b.upload_manifest()
        b.finish()

    def test_manifest_and_finish(self):
        b = self.session()
        b.upload_blob("catalog.blob", b"y" * 5000)
        doc = pp.manifest("host", b.backup_id, T0, b.files)
        body = pp.manifest_blob(doc)
        with self.full():
            self.assertNoSpace(b.blob_raw(pp.MANIFEST, body), "manifest")
            self.assertClean(b, set(), ("catalog.blob",))
            # Without its manifest the snapshot cannot finish.
            self.assertError(b.call("POST", "finish"), (400, 500), "finish")
            self.assertOtherServes(7)
        b.upload_manifest()
        b.finish()
        self.assertClean(b, set(), ("catalog.blob", pp.MANIFEST))
        r = self.open_session(pp.ReaderSession(self.srv, FULL, "host", b.backup_id, T0))
        try:
            self.assertEqual(b"y" * 5000, r.restore_blob("catalog.blob"))
        finally:
            r.close()


class FullConfigDirTest(TmpfsCase):
    """The configuration directory on a full file system."""

    def setUp(self):
        srv = ch.Cairn(tls=False, log_level="info", start=False)
        self.mount(srv)
        srv.config_dir = os.path.join(self.mnt, "config")
        os.mkdir(srv.config_dir)
        srv.start()

    def test_config_write(self):
        cfg = os.path.join(self.srv.config_dir, "datastore.cfg")
        self.assertOk(self.srv.post(API + "/config/datastore",
                                    params={"name": "one",
                                            "path": self.srv.datastore_path("one")}))
        with open(cfg, "rb") as f:
            before = f.read()
        listing = set(os.listdir(self.srv.config_dir))
        with self.full():
            r = self.srv.post(API + "/config/datastore",
                              params={"name": "two", "path": self.srv.datastore_path("two")})
            self.assertNoSpace(r, "config write")
            with open(cfg, "rb") as f:
                self.assertEqual(before, f.read(), "datastore.cfg changed")
            self.assertEqual(listing, set(os.listdir(self.srv.config_dir)),
                             "files left in the config directory")
            # Reads keep working.
            names = [d["name"] for d in self.assertOk(self.srv.get(API + "/config/datastore"))]
            self.assertEqual(["one"], names)
        self.assertOk(self.srv.post(API + "/config/datastore",
                                    params={"name": "two",
                                            "path": self.srv.datastore_path("two")}))
        names = [d["name"] for d in self.assertOk(self.srv.get(API + "/config/datastore"))]
        self.assertEqual(["one", "two"], sorted(names))


if __name__ == "__main__":
    unittest.main(verbosity=2)
