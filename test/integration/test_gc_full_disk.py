#!/usr/bin/python3
"""Integration test for issue #12 item 7: garbage collection on a completely
full file system.

Each test mounts a small tmpfs (8 MiB, 2048 inodes) and puts the server's run
directory and the datastore side by side on it (a datastore may not lie inside
the run directory), so the datastore, the task logs and the task index all
share one file system, as on a server with a single root file system. It backs up data,
fills the file system to the last block and the last inode, and runs GC
through the API:

- with garbage: GC checks atime updates on a chunk that already exists (the
  zero chunk has no room), sweeps, then writes .gc-status into the space it
  freed; the task ends OK and its log holds every line, including those
  logged while nothing could be written;
- with nothing to remove: GC still succeeds; it ends with a warning that says
  .gc-status could not be written, the status API answers with this run's
  figures, and the log is readable (from memory) and lands in its file once
  there is space again. An empty datastore on the full disk skips the atime
  check (nothing to sweep) and ends the same way.

tmpfs sets atimes on utimensat like any local file system (the atime check
needs nothing else: GC touches explicitly, relatime does not matter). Mounting
needs root: the test fails, never skips, when it cannot mount.

Runs standalone (`python3 test_gc_full_disk.py`, CAIRN_BIN_DIR=build/bin) and
from ctest; exits non-zero on failure.
"""

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as ch  # noqa: E402
import pbs_proto as pp  # noqa: E402

API = "/api2/json"
TASKS = API + "/nodes/localhost/tasks"
STORE = "fullds"
T0 = 1700000000
DAY = 86400
CHUNK = 256 * 1024
MOUNT_OPTS = "size=8m,nr_inodes=2048,mode=0755"
NOSPC = "no space left on device"


def setUpModule():
    ch.require_programs("cairnd", "cairn-admin")


def chunks(seed, n):
    return pp.random_chunks(seed, n, CHUNK)


def age_all(ds, seconds):
    """Sets the atime of every chunk file `seconds` into the past (no space needed)."""
    t = time.time() - seconds
    for _prefix, _name, path in pp.chunk_dir_listing(ds):
        os.utime(path, (t, os.stat(path).st_mtime))


def fill(mnt):
    """Fills the file system at `mnt` to the last block, then to the last inode."""
    fd = os.open(os.path.join(mnt, "filler"), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            buf = b"\xa5" * size
            while True:
                try:
                    os.write(fd, buf)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    os.mkdir(os.path.join(mnt, "inodes"))
    for i in range(1 << 20):
        try:
            os.close(os.open(os.path.join(mnt, "inodes", str(i)),
                             os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            return
    raise AssertionError("%s: no end to its inodes" % mnt)


def mount_tmpfs(path, opts=MOUNT_OPTS):
    """Mounts a tmpfs on `path`; AssertionError (never a skip) when that is impossible."""
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", path],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError("cannot mount a tmpfs on %s (this test needs root): %s"
                             % (path, p.stderr.strip()))


def umount(path):
    """Unmounts `path`; lazily if a process (a server still running) holds files there."""
    if subprocess.run(["umount", path], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", path], check=True)


def unfill(mnt):
    os.unlink(os.path.join(mnt, "filler"))
    shutil.rmtree(os.path.join(mnt, "inodes"))


def read_text(path):
    """The file's text, or "" while it does not exist."""
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


class FullDiskGc(pp.CaseMixin, unittest.TestCase):
    """One server per test, its run directory and datastore on a fresh tmpfs."""

    def setUp(self):
        self.srv = ch.Cairn(tls=False, log_level="info", env={"TZ": "UTC"}, start=False)
        self.mnt = os.path.join(self.srv.root, "fs")
        os.mkdir(self.mnt)
        self.mounted = False
        self.addCleanup(self.cleanup)
        mount_tmpfs(self.mnt)
        self.mounted = True
        self.srv.run_dir = os.path.join(self.mnt, "run")
        os.mkdir(self.srv.run_dir)
        self.srv.start()

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

    # ---- helpers ----

    def add_datastore(self, name):
        path = os.path.join(self.mnt, name)
        # The atime safety check stays on (the default): it is what broke.
        self.assertOk(self.srv.post(API + "/config/datastore",
                                    params={"name": name, "path": path}), "add " + name)
        return path

    def backup(self, backup_id, t, data):
        b = self.open_session(pp.BackupSession(self.srv, STORE, "host", backup_id, t))
        b.upload_dynamic("root.pxar.didx", data)
        b.upload_manifest()
        b.finish()

    def gc(self, store=STORE):
        r = self.srv.post("%s/admin/datastore/%s/gc" % (API, store))
        upid = self.assertOk(r, "POST gc")
        q = urllib.parse.quote(upid, safe="")
        deadline = time.monotonic() + 60
        while True:
            st = self.assertOk(self.srv.get("%s/%s/status" % (TASKS, q)), "status")
            if st["status"] == "stopped":
                break
            self.assertLess(time.monotonic(), deadline, "GC still running" + self.log_tail())
            time.sleep(0.05)
        r = self.srv.get("%s/%s/log" % (TASKS, q), params={"limit": 0})
        self.assertEqual(200, r.status, r)
        log = "\n".join(e["t"] for e in r.data["data"])
        return upid, st["exitstatus"], log

    def gc_status(self, store=STORE):
        return self.assertOk(self.srv.get("%s/admin/datastore/%s/gc" % (API, store)), "GET gc")

    def assertFull(self):
        vfs = os.statvfs(self.mnt)
        self.assertEqual((0, 0), (vfs.f_bavail, vfs.f_favail), "file system not full")
        with self.assertRaises(OSError) as cm:
            with open(os.path.join(self.mnt, "probe"), "wb") as f:
                f.write(b"x")
        self.assertEqual(errno.ENOSPC, cm.exception.errno)

    # ---- tests ----

    def test_gc_frees_a_full_disk(self):
        ds = self.add_datastore(STORE)
        old, kept = chunks(1, 12), chunks(2, 4)
        self.backup("old", T0, old)
        self.backup("new", T0 + 60, kept)
        # The old snapshot is gone (as after a prune): its chunks are garbage.
        subprocess.run(["rm", "-rf", pp.snapshot_dir(ds, "host", "old", T0)], check=True)
        age_all(ds, 2 * DAY)
        fill(self.mnt)
        self.assertFull()
        free_before = os.statvfs(self.mnt).f_bfree

        upid, exitstatus, log = self.gc()
        self.assertEqual("OK", exitstatus, log)
        m = re.search(r"cannot insert the zero chunk \(%s\): checking access time updates "
                      r"on chunk ([0-9a-f]{64}) instead" % NOSPC, log)
        self.assertIsNotNone(m, log)
        checked = m.group(1)
        self.assertIn(checked, {c.digest for c in old + kept})
        self.assertIn("Access time update check successful", log)
        # Logged while no task log line could be written, and still there.
        self.assertIn("starting garbage collection on store %s" % STORE, log)
        self.assertIn("TASK OK", log)

        # Space was freed: the garbage went (but the chunk the check touched,
        # which the next run removes if it is garbage), the rest stayed.
        garbage = {c.digest for c in old} - {checked}
        self.assertIn("Removed chunks: %d" % len(garbage), log)
        self.assertGreater(os.statvfs(self.mnt).f_bfree, free_before + 2 * len(garbage))
        on_disk = self.assertChunkStoreClean(ds)
        self.assertEqual(set(), garbage & on_disk)
        self.assertEqual({c.digest for c in kept} | {checked}, on_disk)

        # .gc-status was written into the freed space, and the API reports it.
        with open(os.path.join(ds, ".gc-status")) as f:
            self.assertEqual(upid, json.load(f)["upid"])
        got = self.gc_status()
        self.assertEqual(upid, got["upid"])
        self.assertEqual(len(garbage), got["removed-chunks"])
        self.assertEqual("OK", got["last-run-state"])

        # The task log reached its file too.
        path = os.path.join(self.srv.run_dir, "tasks", "log", upid)
        self.assertTrue(self.poll(lambda: "TASK OK" in read_text(path)), path)

    def test_gc_with_nothing_to_remove_on_a_full_disk(self):
        empty = "emptyds"
        self.add_datastore(empty)
        ds = self.add_datastore(STORE)
        data = chunks(3, 4)
        self.backup("only", T0, data)
        fill(self.mnt)
        self.assertFull()

        # No chunk at all: nothing to sweep, no atime check needed.
        upid, exitstatus, log = self.gc(empty)
        self.assertEqual("WARNINGS: 1", exitstatus, log)
        self.assertIn("cannot insert the zero chunk (%s) and the datastore holds no chunk: "
                      "nothing to sweep, atime safety check skipped" % NOSPC, log)

        upid, exitstatus, log = self.gc()
        self.assertEqual("WARNINGS: 1", exitstatus, log)
        self.assertIn("checking access time updates on chunk", log)
        self.assertIn("Access time update check successful", log)
        self.assertIn("Removed chunks: 0", log)
        self.assertRegex(log, r"WARN: cannot write \S+/%s/\.gc-status: %s; this run is not "
                              r"recorded there" % (STORE, NOSPC))
        # The whole log is readable although none of it is on disk.
        self.assertIn("starting garbage collection on store %s" % STORE, log)
        self.assertIn("TASK WARNINGS: 1", log)
        self.assertFalse(os.path.exists(os.path.join(ds, ".gc-status")))
        self.assertEqual({c.digest for c in data}, self.assertChunkStoreClean(ds))

        # The status API answers with this run, not with an older (or no) file.
        got = self.gc_status()
        self.assertEqual(upid, got["upid"])
        self.assertEqual("WARNINGS: 1", got["last-run-state"])
        self.assertEqual(len(data), got["disk-chunks"])
        self.assertEqual(0, got["removed-chunks"])

        # Once there is space, the log lands in its file, and the next GC
        # records itself in .gc-status again.
        unfill(self.mnt)
        path = os.path.join(self.srv.run_dir, "tasks", "log", upid)
        self.assertTrue(self.poll(lambda: "TASK WARNINGS: 1" in read_text(path)), path)
        self.assertIn("this run is not recorded there", read_text(path))
        upid2, exitstatus, log = self.gc()
        self.assertEqual("OK", exitstatus, log)
        with open(os.path.join(ds, ".gc-status")) as f:
            self.assertEqual(upid2, json.load(f)["upid"])
        self.assertEqual(upid2, self.gc_status()["upid"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
