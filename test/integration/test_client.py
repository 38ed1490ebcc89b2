#!/usr/bin/python3
"""Integration tests for issue #4: the `cairn` client end to end against a real
cairnd. A generated tree is backed up and restored and compared in contents and
metadata; unchanged and slightly changed data must upload nothing or only nearby
chunks (counted by the server's finish log line); encrypted backups cannot be
restored without the key and leave no plaintext in the chunk store; a wrong
certificate fingerprint is refused; a backup interrupted by killing the server
fails clearly and the next run succeeds.

Runs standalone (`python3 test_client.py`, CAIRN_BIN_DIR=build/bin) and from
ctest.
"""

import json
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as ch  # noqa: E402

STORE = "store1"
FINISH_RE = re.compile(r"backup (\w+) finished \((\d+) chunks uploaded, (\d+) duplicates\)")
MARKER = b"CAIRN-PLAINTEXT-MARKER-7f3a9c"


def setUpModule():
    ch.require_programs("cairnd", "cairn-admin", "cairn")


def write(path, data, mode=0o644, mtime=None):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    if mtime is not None:
        os.utime(path, ns=(mtime, mtime))


def make_tree(root, rnd):
    """Text and binary files, a 0-byte file, a large sparse-ish file, symlinks,
    hard links, empty directories, unicode names, odd modes and owners."""
    os.makedirs(os.path.join(root, "sub", "deeper"))
    os.mkdir(os.path.join(root, "empty"))
    os.mkdir(os.path.join(root, "ünïcødé ✓"))
    os.mkdir(os.path.join(root, "data"))
    lines = b"".join(b"line %d of some text that compresses %s\n" % (i, MARKER)
                     for i in range(20000))
    write(os.path.join(root, "text.txt"), lines, 0o640, 1_500_000_000_123_456_789)
    write(os.path.join(root, "sub", "zero"), b"", 0o600)
    write(os.path.join(root, "ünïcødé ✓", "日本語.txt"), "こんにちは\n".encode(), 0o755)
    # the bulk: 24 files of 2 MiB random data (about 48 MiB)
    for i in range(24):
        write(os.path.join(root, "data", "blob%02d.bin" % i), rnd.randbytes(2 << 20))
    write(os.path.join(root, "sub", "deeper", "bin.dat"), rnd.randbytes(300_000), 0o604)
    # large enough for the restore's direct writes, read-only, with its own
    # time and an xattr: the metadata must survive the second descriptor
    big = os.path.join(root, "sub", "readonly.bin")
    write(big, rnd.randbytes((3 << 20) + 123), 0o600, 1_600_000_000_987_654_321)
    try:
        os.setxattr(big, "user.cairn.big", b"on a large file")
    except OSError:
        pass
    os.chmod(big, 0o400)
    with open(os.path.join(root, "sparse.img"), "wb") as f:
        f.seek(30 << 20)
        f.write(rnd.randbytes(1 << 20))
        f.truncate(64 << 20)
    os.link(os.path.join(root, "text.txt"), os.path.join(root, "sub", "hardlink.txt"))
    os.symlink("text.txt", os.path.join(root, "link"))
    os.symlink("../nowhere", os.path.join(root, "sub", "dangling"))
    if os.geteuid() == 0:
        os.chown(os.path.join(root, "sub", "zero"), 1234, 4321)
        os.lchown(os.path.join(root, "link"), 2345, 5432)
    try:
        os.setxattr(os.path.join(root, "text.txt"), "user.cairn", b"xattr value")
    except OSError:
        pass
    os.utime(os.path.join(root, "empty"), ns=(1_400_000_000_000_000_000,) * 2)


def tree_listing(root):
    """Everything compare-worthy about a tree, keyed by relative path."""
    out = {}
    inodes = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [""] + dirnames + filenames:
            if name == "" and dirpath != root:
                continue
            p = os.path.join(dirpath, name) if name else dirpath
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            entry = {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid}
            if not stat.S_ISDIR(st.st_mode):
                entry["mtime"] = st.st_mtime_ns
            if stat.S_ISREG(st.st_mode):
                entry["size"] = st.st_size
                with open(p, "rb") as f:
                    entry["data"] = hash(f.read())
                inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                entry["target"] = os.readlink(p)
            if not stat.S_ISLNK(st.st_mode):
                try:
                    entry["xattrs"] = {k: os.getxattr(p, k) for k in os.listxattr(p)}
                except OSError:
                    pass
            out[rel] = entry
    links = sorted(sorted(v) for v in inodes.values() if len(v) > 1)
    return out, links


class ClientCase(unittest.TestCase):
    srv = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cairn-client-it-")
        cls.srv = ch.Cairn()
        cls.srv.admin("datastore", "create", STORE, cls.srv.datastore_path(STORE), check=True)
        cls.src = os.path.join(cls.tmp, "src")
        make_tree(cls.src, random.Random(4))

    @classmethod
    def tearDownClass(cls):
        if cls.srv:
            reports = cls.srv.sanitizer_reports() if hasattr(cls.srv, "sanitizer_reports") else []
            cls.srv.close()
            if reports:
                raise AssertionError("server sanitizer reports:\n%s" % "\n".join(reports))
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def env(self, **extra):
        e = dict(os.environ)
        for k in list(e):
            if k.startswith("CAIRN_") and k != "CAIRN_BIN_DIR":
                del e[k]
        authid, secret = self.srv.token.rsplit(":", 1)
        e["CAIRN_REPOSITORY"] = "%s@%s:%d:%s" % (authid, self.srv.host, self.srv.port, STORE)
        e["CAIRN_SECRET"] = secret
        e["CAIRN_FINGERPRINT"] = self.srv.fingerprint
        e["CAIRN_ENCRYPTION_PASSWORD"] = "correct horse"
        e.update(extra)
        return e

    def cairn(self, *args, check=True, env=None, timeout=300):
        p = subprocess.run([ch.binary("cairn")] + [str(a) for a in args],
                           stdin=subprocess.DEVNULL, capture_output=True, env=env or self.env(),
                           timeout=timeout)
        if check and p.returncode != 0:
            self.fail("cairn %s exited %d:\n%s\nserver log:\n%s" % (
                " ".join(map(str, args)), p.returncode, p.stderr.decode(errors="replace"),
                self.srv.log_text()[-3000:]))
        return p

    def backup(self, *specs, backup_id="it", extra=()):
        """Runs a backup; returns (summary dict, server's uploaded count)."""
        mark = self.srv.log_mark() if hasattr(self.srv, "log_mark") else len(self.srv.log_lines)
        p = self.cairn("backup", *specs, "--backup-id", backup_id, "--output-format", "json",
                       *extra)
        summary = json.loads(p.stdout.decode().strip().splitlines()[-1])
        uploaded = None
        deadline = time.monotonic() + 5
        while uploaded is None and time.monotonic() < deadline:
            for line in self.srv.log_lines[mark:]:
                m = FINISH_RE.search(line)
                if m:
                    uploaded = int(m.group(2))
            if uploaded is None:
                time.sleep(0.05)
        self.assertIsNotNone(uploaded, "no finish line in the server log")
        return summary, uploaded

    def snapshot_name(self, summary):
        return summary["snapshot"]

    # ---- tests ----

    def test_1_round_trip_and_incremental(self):
        s1, up1 = self.backup("root.didx:%s" % self.src)
        self.assertEqual(up1, s1["new-chunks"])
        self.assertGreater(up1, 5)

        dst = os.path.join(self.tmp, "restored")
        self.cairn("restore", self.snapshot_name(s1), "root", dst)
        want, want_links = tree_listing(self.src)
        got, got_links = tree_listing(dst)
        self.assertEqual(sorted(want), sorted(got))
        for k in want:
            if k == ".":
                continue  # the target directory itself: mode and owner differ by design
            self.assertEqual(want[k], got[k], k)
        self.assertEqual(want_links, got_links)
        # the sparse file came back sparse
        self.assertLess(os.stat(os.path.join(dst, "sparse.img")).st_blocks * 512, 16 << 20)

        # unchanged: nothing uploaded, counted by the server
        s2, up2 = self.backup("root.didx:%s" % self.src)
        self.assertEqual(0, up2)
        self.assertEqual(0, s2["new-chunks"])
        self.assertEqual(s1["chunks"], s2["chunks"])

        # 1% changed in one place: only nearby chunks go up
        path = os.path.join(self.src, "data", "blob10.bin")
        with open(path, "r+b") as f:
            f.seek(100_000)
            f.write(random.Random(9).randbytes(550_000))
        s3, up3 = self.backup("root.didx:%s" % self.src)
        self.assertGreaterEqual(up3, 1)
        self.assertLessEqual(up3, 3, "a 1%% change uploaded %d of %d chunks" % (up3, s3["chunks"]))

        # the newest snapshot restores to what the tree is now, also via stdout
        out = self.cairn("restore", self.snapshot_name(s3), "root.didx", "-").stdout
        listing = subprocess.run(["tar", "tf", "-"], input=out, capture_output=True, check=True)
        self.assertIn(b"data/blob10.bin", listing.stdout)

    def test_2_image_and_single_file(self):
        img = os.path.join(self.tmp, "disk.img")
        with open(img, "wb") as f:
            f.write(random.Random(5).randbytes(9 << 20) + b"\0" * (3 << 20) + b"tail")
        # a run of identical chunks (zeros): downloaded once, each verified
        runs = os.path.join(self.tmp, "runs.img")
        with open(runs, "wb") as f:
            f.write(random.Random(6).randbytes(4 << 20) + b"\0" * (20 << 20) + b"end")
        s0, _ = self.backup("runs.img.fidx:%s" % runs, backup_id="runs")
        out0 = os.path.join(self.tmp, "runs.out")
        p0 = self.cairn("restore", s0["snapshot"], "runs.img", out0)
        self.assertIn(b"(4 of them repeated the chunk before", p0.stdout)
        with open(runs, "rb") as a, open(out0, "rb") as b:
            self.assertEqual(a.read(), b.read())
        s, _ = self.backup("disk.img.fidx:%s" % img, "one.didx:%s" % os.path.join(self.src, "text.txt"),
                           backup_id="img")
        out = os.path.join(self.tmp, "disk.out")
        self.cairn("restore", s["snapshot"], "disk.img", out)
        with open(img, "rb") as a, open(out, "rb") as b:
            self.assertEqual(a.read(), b.read())
        p = self.cairn("restore", s["snapshot"], "one", "-")
        with open(os.path.join(self.src, "text.txt"), "rb") as f:
            self.assertEqual(f.read(), p.stdout)
        snaps = json.loads(self.cairn("snapshots", "--output-format", "json").stdout)
        self.assertTrue(any(x.get("backup-id") == "img" for x in snaps))

    def test_3_encrypted(self):
        key = os.path.join(self.tmp, "key.json")
        self.cairn("key", "create", key, "--kdf", "scrypt")
        other = os.path.join(self.tmp, "other.json")
        self.cairn("key", "create", other, "--kdf", "none")
        s, up = self.backup("enc.didx:%s" % os.path.join(self.src, "sub"),
                            "txt.didx:%s" % os.path.join(self.src, "text.txt"),
                            backup_id="enc", extra=("--keyfile", key))
        self.assertGreater(up, 0)
        # no plaintext in the chunk store: every chunk of this group is encrypted
        chunks = os.path.join(self.srv.datastore_path(STORE), ".chunks")
        enc_magics = (bytes.fromhex("7b6785be222d4cf0"), bytes.fromhex("e6591bbf0bbfd80b"))
        seen_enc = 0
        for dirpath, _, files in os.walk(chunks):
            for name in files:
                with open(os.path.join(dirpath, name), "rb") as f:
                    data = f.read()
                if data[:8] in enc_magics:
                    seen_enc += 1
                    self.assertNotIn(MARKER, data)
        self.assertGreaterEqual(seen_enc, 2)

        dst = os.path.join(self.tmp, "enc-none")
        p = self.cairn("restore", s["snapshot"], "txt", dst, check=False)
        self.assertNotEqual(0, p.returncode)
        self.assertIn(b"key", p.stderr)
        p = self.cairn("restore", s["snapshot"], "txt", dst, "--keyfile", other, check=False)
        self.assertNotEqual(0, p.returncode)
        p = self.cairn("restore", s["snapshot"], "txt", dst, "--keyfile", key, check=False,
                       env=self.env(CAIRN_ENCRYPTION_PASSWORD="wrong pass"))
        self.assertNotEqual(0, p.returncode)
        self.assertIn(b"passphrase", p.stderr)
        self.cairn("restore", s["snapshot"], "txt", dst, "--keyfile", key)
        with open(os.path.join(self.src, "text.txt"), "rb") as a, open(dst, "rb") as b:
            self.assertEqual(a.read(), b.read())
        # an unchanged encrypted backup reuses every chunk
        _, up2 = self.backup("enc.didx:%s" % os.path.join(self.src, "sub"),
                             "txt.didx:%s" % os.path.join(self.src, "text.txt"),
                             backup_id="enc", extra=("--keyfile", key))
        self.assertEqual(0, up2)

    def test_4_wrong_fingerprint_refused(self):
        bad = ":".join(["ab"] * 32)
        p = self.cairn("snapshots", check=False, env=self.env(CAIRN_FINGERPRINT=bad))
        self.assertNotEqual(0, p.returncode)
        err = p.stderr.decode()
        self.assertIn("not trusted", err)
        self.assertIn(self.srv.fingerprint.lower(), err.lower())
        p = self.cairn("snapshots", check=False, env=self.env(CAIRN_FINGERPRINT=""))
        self.assertNotEqual(0, p.returncode)

    def test_5_usage_and_help(self):
        for cmd in ("backup", "restore", "snapshots", "groups", "forget", "prune", "status",
                    "key", "benchmark"):
            p = self.cairn(cmd, "--help")
            self.assertIn(b"usage: cairn", p.stdout)
        p = self.cairn("backup", "bad-spec", check=False)
        self.assertEqual(2, p.returncode)
        p = self.cairn("restore", "host/x", check=False)
        self.assertEqual(2, p.returncode)
        p = self.cairn("status")
        self.assertIn(b"total", p.stdout)
        p = self.cairn("benchmark", "--seconds", "0.05")
        self.assertIn(b"SHA-256", p.stdout)
        self.assertIn(b"chunk upload", p.stdout)

    def test_6_forget_and_prune(self):
        names = []
        for i in range(3):
            s, _ = self.backup("t.didx:%s" % os.path.join(self.src, "sub"), backup_id="pr",
                               extra=("--backup-time", str(1_700_000_000 + i)))
            names.append(s["snapshot"])
        self.cairn("forget", names[0])
        snaps = json.loads(self.cairn("snapshots", "host/pr", "--output-format", "json").stdout)
        self.assertEqual(2, len(snaps))
        p = self.cairn("prune", "host/pr", "--keep-last", "1", check=False)
        if p.returncode == 0:
            snaps = json.loads(self.cairn("snapshots", "host/pr", "--output-format", "json").stdout)
            self.assertEqual(1, len(snaps))


class InterruptedCase(unittest.TestCase):
    """A server killed in the middle of a backup: a clear error, and the next
    run (after a restart) succeeds."""

    def test_kill_during_backup(self):
        tmp = tempfile.mkdtemp(prefix="cairn-client-kill-")
        srv = ch.Cairn()
        try:
            srv.admin("datastore", "create", STORE, srv.datastore_path(STORE), check=True)
            src = os.path.join(tmp, "big")
            os.mkdir(src)
            rnd = random.Random(11)
            for i in range(40):
                write(os.path.join(src, "f%02d" % i), rnd.randbytes(4 << 20))
            authid, secret = srv.token.rsplit(":", 1)
            env = dict(os.environ)
            env.update({"CAIRN_REPOSITORY": "%s@%s:%d:%s" % (authid, srv.host, srv.port, STORE),
                        "CAIRN_SECRET": secret, "CAIRN_FINGERPRINT": srv.fingerprint})
            cmd = [ch.binary("cairn"), "backup", "root.didx:%s" % src, "--workers", "1",
                   "--backup-id", "kill"]
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            # wait until the session is open and chunks flow, then kill the server
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any("started by" in l for l in srv.log_lines):
                time.sleep(0.02)
            time.sleep(0.3)
            srv.kill9()
            out, err = proc.communicate(timeout=120)
            self.assertNotEqual(0, proc.returncode, out)
            self.assertTrue(err.strip(), "no error message")
            self.assertRegex(err.decode(), r"cairn backup: .*(chunk|index|connect|reset|refused|closed|EOF|broken|protocol)")
            srv.restart()
            p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=300)
            self.assertEqual(0, p.returncode, p.stderr.decode())
        finally:
            srv.close()
            shutil.rmtree(tmp, ignore_errors=True)


class InterruptedByUserCase(unittest.TestCase):
    """Ctrl-C (SIGINT) stops the backup, deletes its session, and the same
    group can be backed up again at once (no lock left until the idle
    timeout)."""

    def test_sigint_then_rerun(self):
        tmp = tempfile.mkdtemp(prefix="cairn-client-int-")
        srv = ch.Cairn()
        try:
            srv.admin("datastore", "create", STORE, srv.datastore_path(STORE), check=True)
            src = os.path.join(tmp, "big")
            os.mkdir(src)
            rnd = random.Random(12)
            for i in range(40):
                write(os.path.join(src, "f%02d" % i), rnd.randbytes(4 << 20))
            authid, secret = srv.token.rsplit(":", 1)
            env = dict(os.environ)
            env.update({"CAIRN_REPOSITORY": "%s@%s:%d:%s" % (authid, srv.host, srv.port, STORE),
                        "CAIRN_SECRET": secret, "CAIRN_FINGERPRINT": srv.fingerprint})
            cmd = [ch.binary("cairn"), "backup", "root.didx:%s" % src, "--workers", "1",
                   "--backup-id", "int"]
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any("started by" in l for l in srv.log_lines):
                time.sleep(0.005)
            # Stopped as soon as its session is open, the client cannot finish
            # 160 MiB before the SIGINT lands: it is delivered on SIGCONT.
            proc.send_signal(signal.SIGSTOP)
            proc.send_signal(signal.SIGINT)
            proc.send_signal(signal.SIGCONT)
            out, err = proc.communicate(timeout=120)
            self.assertNotEqual(0, proc.returncode, "the backup finished despite the signal")
            self.assertIn(b"interrupted", err)
            p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=300)
            self.assertEqual(0, p.returncode, p.stderr.decode())
        finally:
            srv.close()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
