#!/usr/bin/python3
"""Integration tests for issue #19: catalogs, browsing, partial restore,
metadata-mode incremental backups and exclusions, end to end against a real
cairnd.

A tree with every entry type (hard links, symlinks, a sparse file, xattrs,
a POSIX ACL, names with a newline and with invalid UTF-8, a fifo, empty directories) is
backed up; `ls`, `find` and `diff` must show it from the catalogs alone; a
partial restore must equal the same subset of a full restore and fetch fewer
chunks (from the restore summary); metadata-mode backups after touching,
appending, truncating, replacing (same size and mtime, new inode) and
renaming files (large ones, and small ones that are grouped: only the
changed file's group is read, from the backup summary) must each restore to
exactly the source tree, and a file changed with its mtime put back (only ctime differs) must be read again.

Runs standalone (`python3 test_catalog.py`, CAIRN_BIN_DIR=build/bin) and from
ctest.
"""

import ctypes
import ctypes.util
import hashlib
import io
import json
import os
import struct
import tarfile
import zlib
import random
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as ch  # noqa: E402

STORE = "store1"
MiB = 1 << 20
NL_NAME = "new\nline.txt"
BAD_UTF8 = b"bad-\xff\xfe.bin"


def setUpModule():
    ch.require_programs("cairnd", "cairn-admin", "cairn")


def write(path, data, mtime_ns=None):
    with open(path, "wb") as f:
        f.write(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def make_tree(root, rnd):
    os.makedirs(os.path.join(root, "docs", "deep", "er"))
    os.makedirs(os.path.join(root, "big"))
    os.mkdir(os.path.join(root, "empty"))
    write(os.path.join(root, "docs", "a.txt"), b"alpha\n" * 1000)
    write(os.path.join(root, "docs", "b.conf"), b"key = value\n")
    write(os.path.join(root, "docs", "deep", "er", "c.conf"), b"nested\n")
    write(os.path.join(root, "docs", NL_NAME), b"a newline in the name\n")
    write(os.path.join(root.encode(), b"docs", BAD_UTF8), b"invalid utf-8 name\n")
    for i in range(8):
        write(os.path.join(root, "big", "r%02d.bin" % i), rnd.randbytes(2 * MiB + i * 4099))
    with open(os.path.join(root, "sparse.img"), "wb") as f:
        f.seek(8 * MiB)
        f.write(rnd.randbytes(MiB))
        f.truncate(24 * MiB)
    os.link(os.path.join(root, "docs", "a.txt"), os.path.join(root, "hard.txt"))
    os.symlink("docs/a.txt", os.path.join(root, "sym"))
    os.mkfifo(os.path.join(root, "fifo"))
    os.setxattr(os.path.join(root, "docs", "b.conf"), "user.cairn", b"xattr")
    # An access ACL (user:1234:r-- beside the owner), set as the kernel's
    # xattr so no setfacl is needed; listing() compares it after restores.
    acl = struct.pack("<I", 2) + b"".join(
        struct.pack("<HHI", tag, perm, qual) for tag, perm, qual in (
            (0x01, 6, 0xFFFFFFFF), (0x02, 4, 1234), (0x04, 4, 0xFFFFFFFF),
            (0x10, 4, 0xFFFFFFFF), (0x20, 4, 0xFFFFFFFF)))
    os.setxattr(os.path.join(root, "docs", "deep", "er", "c.conf"), "system.posix_acl_access",
                acl)


def listing(root):
    """Contents and metadata of a tree, by relative path (bytes)."""
    out = {}
    rootb = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(rootb):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, rootb)
            st = os.lstat(p)
            e = {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid}
            if stat.S_ISREG(st.st_mode):
                e["mtime"] = st.st_mtime_ns
                with open(p, "rb") as f:
                    e["data"] = f.read()
            elif stat.S_ISLNK(st.st_mode):
                e["target"] = os.readlink(p)
            if not stat.S_ISLNK(st.st_mode):
                try:
                    e["xattrs"] = {k: os.getxattr(p, k) for k in os.listxattr(p)}
                except OSError:
                    pass
            out[rel] = e
    return out


# ---- blobs and catalogs, for forging hostile ones (docs/on-disk-format.md) ----

BLOB_PLAIN = bytes([0x42, 0xab, 0x38, 0x07, 0xbe, 0x83, 0x70, 0xa1])
BLOB_ZSTD = bytes([0x31, 0xb9, 0x58, 0x42, 0x6f, 0xb6, 0xa3, 0x7f])


def blob_decode(b):
    payload = b[12:]
    if b[:8] == BLOB_PLAIN:
        return payload
    assert b[:8] == BLOB_ZSTD, "an unencrypted blob"
    lib = ctypes.CDLL(ctypes.util.find_library("zstd") or "libzstd.so.1")
    lib.ZSTD_getFrameContentSize.restype = ctypes.c_ulonglong
    lib.ZSTD_decompress.restype = ctypes.c_size_t
    n = lib.ZSTD_getFrameContentSize(payload, ctypes.c_size_t(len(payload)))
    out = ctypes.create_string_buffer(n)
    r = lib.ZSTD_decompress(out, ctypes.c_size_t(n), payload, ctypes.c_size_t(len(payload)))
    return out.raw[:r]


def blob_plain(data):
    return BLOB_PLAIN + struct.pack("<I", zlib.crc32(data)) + data


def _uvar(b, i):
    v = shift = 0
    while True:
        x = b[i]
        i += 1
        v |= (x & 0x7f) << shift
        shift += 7
        if not x & 0x80:
            return v, i


def _put(v):
    out = bytearray()
    while True:
        x = v & 0x7f
        v >>= 7
        out.append(x | (0x80 if v else 0))
        if not v:
            return bytes(out)


FIELDS = ("flags", "mode", "uid", "gid", "size", "mtime", "mtime_ns", "ctime", "ctime_ns",
          "ino", "dev", "rdev", "hdr", "dh", "dlen", "pad")


def catalog_decode(c):
    n, rlen = struct.unpack("<QQ", c[16:32])
    i, prev, out = 40, b"", []
    for _ in range(n):
        shared, i = _uvar(c, i)
        slen, i = _uvar(c, i)
        path = prev[:shared] + c[i:i + slen]
        i += slen
        e = {"path": path, "type": c[i]}
        i += 1
        for f in FIELDS:
            e[f], i = _uvar(c, i)
        llen, i = _uvar(c, i)
        e["link"] = c[i:i + llen]
        i += llen
        out.append(e)
        prev = path
    return out


def catalog_encode(entries):
    key = lambda e: (e["path"] != b".", e["path"])  # noqa: E731
    entries = sorted(entries, key=key)
    recs, restarts, prev = bytearray(), [], b""
    for k, e in enumerate(entries):
        if k % 64 == 0:
            restarts.append(len(recs))
            prev = b""
        shared = 0
        while shared < min(len(prev), len(e["path"])) and prev[shared] == e["path"][shared]:
            shared += 1
        recs += _put(shared) + _put(len(e["path"]) - shared) + e["path"][shared:]
        recs += bytes([e["type"]]) + b"".join(_put(e[f]) for f in FIELDS)
        recs += _put(len(e["link"])) + e["link"]
        prev = e["path"]
    hdr = b"CAIRNCT1" + struct.pack("<IIQQQ", 1, 64, len(entries), len(recs), len(restarts))
    return hdr + bytes(recs) + b"".join(struct.pack("<Q", r) for r in restarts)


SUMMARY_RE = re.compile(r"(\d+) entries selected, (\d+) of (\d+) chunks fetched")


class CatalogCase(unittest.TestCase):
    srv = None
    CATALOG = "root.catalog.blob"  # the form the catalogs take
    INDEX_MIN = None  # CAIRN_CATALOG_INDEX_MIN for every cairn run
    CATALOG_MEM = None  # CAIRN_CATALOG_MEM: where the catalog writer spills runs

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cairn-catalog-it-")
        cls.srv = ch.Cairn()
        cls.srv.admin("datastore", "create", STORE, cls.srv.datastore_path(STORE), check=True)

    @classmethod
    def tearDownClass(cls):
        if cls.srv:
            cls.srv.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def env(self):
        e = {k: v for k, v in os.environ.items()
             if not k.startswith("CAIRN_") or k == "CAIRN_BIN_DIR"}
        authid, secret = self.srv.token.rsplit(":", 1)
        e["CAIRN_REPOSITORY"] = "%s@%s:%d:%s" % (authid, self.srv.host, self.srv.port, STORE)
        e["CAIRN_SECRET"] = secret
        e["CAIRN_FINGERPRINT"] = self.srv.fingerprint
        if self.INDEX_MIN:
            e["CAIRN_CATALOG_INDEX_MIN"] = self.INDEX_MIN
        if self.CATALOG_MEM:
            e["CAIRN_CATALOG_MEM"] = self.CATALOG_MEM
        return e

    def cairn(self, *args, check=True, env=None):
        e = self.env()
        e.update(env or {})
        p = subprocess.run([ch.binary("cairn")] + [str(a) for a in args],
                           stdin=subprocess.DEVNULL, capture_output=True, env=e,
                           timeout=300)
        if check and p.returncode != 0:
            self.fail("cairn %s exited %d:\n%s" % (" ".join(map(str, args)), p.returncode,
                                                   p.stderr.decode(errors="replace")))
        return p

    def backup(self, src, bid, *extra):
        p = self.cairn("backup", "root.didx:%s" % src, "--backup-id", bid, "--output-format",
                       "json", *extra)
        return json.loads(p.stdout.decode().strip().splitlines()[-1])

    def fresh_tree(self, name, seed):
        src = os.path.join(self.tmp, name)
        make_tree(src, random.Random(seed))
        return src

    def replace_keeping_stat(self, p, offset):
        """Replaces file `p` by a copy with the byte at `offset` flipped, with the
        same size and mtime but another inode."""
        st = os.stat(p)
        with open(p, "rb") as f:
            data = bytearray(f.read())
        data[offset] ^= 0xff
        # written while the old file still exists, so its inode cannot be reused
        write(p + ".tmp", bytes(data), st.st_mtime_ns)
        os.rename(p + ".tmp", p)
        self.assertNotEqual(st.st_ino, os.stat(p).st_ino)

    def assert_restores_to(self, snap, src, what=""):
        dst = tempfile.mkdtemp(dir=self.tmp)
        shutil.rmtree(dst)
        self.cairn("restore", snap, "root", dst)
        want, got = listing(src), listing(dst)
        self.assertEqual(sorted(want), sorted(got), what)
        for k in want:
            self.assertEqual(want[k], got[k], "%s: %r" % (what, k))
        shutil.rmtree(dst)

    # ---- browsing ----

    def test_ls_find_diff(self):
        src = self.fresh_tree("browse", 1)
        s1 = self.backup(src, "browse")["snapshot"]
        self.assertGreater(self.backup(src, "browse", "--change-detection-mode", "data")
                           ["catalog-entries"], 15)

        out = json.loads(self.cairn("ls", s1, "root", "--output-format", "json").stdout)
        names = {e["name"]: e for e in out}
        self.assertEqual({"docs", "big", "empty", "sparse.img", "hard.txt", "sym", "fifo"},
                         set(names))
        self.assertEqual("symlink", names["sym"]["type"])
        self.assertEqual("docs/a.txt", names["sym"]["link"])
        self.assertEqual("fifo", names["fifo"]["type"])
        self.assertEqual(24 * MiB, names["sparse.img"]["size"])
        # the hard link's second name points at the first
        self.assertIn(names["hard.txt"]["type"], ("file", "hardlink"))

        docs = json.loads(self.cairn("ls", s1, "root.didx", "docs", "--output-format",
                                     "json").stdout)
        paths = {e["path"] for e in docs}
        self.assertIn("docs/" + NL_NAME, paths)
        self.assertIn("docs/deep", paths)
        self.assertNotIn("docs/deep/er", paths)  # children only
        lossy = [e for e in docs if e.get("path-lossy")]
        self.assertEqual(1, len(lossy))
        # text output quotes what a terminal must not see raw
        text = self.cairn("ls", s1, "root", "docs", "-l").stdout
        self.assertIn(b"new\\x0aline.txt", text.lower())
        self.assertIn(b"bad-\\xff\\xfe.bin", text.lower())
        self.assertRegex(text.decode(), r"-rw-r--r-- +\d+ +\d+ +12 .* docs/b.conf")
        # a single entry
        one = json.loads(self.cairn("ls", s1, "root", "docs/b.conf", "--output-format",
                                    "json").stdout)
        self.assertEqual(["docs/b.conf"], [e["path"] for e in one])
        miss = self.cairn("ls", s1, "root", "nope", check=False)
        self.assertNotEqual(0, miss.returncode)
        self.assertIn(b"no such entry", miss.stderr)

        found = json.loads(self.cairn("find", s1, "*.conf", "--output-format", "json").stdout)
        self.assertEqual({"docs/b.conf", "docs/deep/er/c.conf"}, {e["path"] for e in found})
        anchored = json.loads(self.cairn("find", s1, "docs/*.conf", "--output-format",
                                         "json").stdout)
        self.assertEqual({"docs/b.conf"}, {e["path"] for e in anchored})

        # a second snapshot with an added, a removed and a changed file
        os.remove(os.path.join(src, "docs", "b.conf"))
        write(os.path.join(src, "docs", "new.conf"), b"new\n")
        with open(os.path.join(src, "big", "r03.bin"), "ab") as f:
            f.write(b"more")
        s2 = self.backup(src, "browse")["snapshot"]
        d = json.loads(self.cairn("diff", s1, s2, "root", "--output-format", "json").stdout)
        by = {(e["change"], e["path"]) for e in d}
        self.assertIn(("removed", "docs/b.conf"), by)
        self.assertIn(("added", "docs/new.conf"), by)
        self.assertIn(("changed", "big/r03.bin"), by)
        self.assertNotIn(("changed", "big/r02.bin"), by)
        text = self.cairn("diff", s1, s2, "root").stdout.decode()
        self.assertIn("+ docs/new.conf", text)
        self.assertIn("- docs/b.conf", text)

        # across the group: both snapshots have the file, only the second the new one
        g = json.loads(self.cairn("find", "--group", "host/browse", "new.conf",
                                  "--output-format", "json").stdout)
        self.assertEqual([s2], [e["snapshot"] for e in g])
        g = json.loads(self.cairn("find", "--group", "host/browse", "c.conf",
                                  "--archive", "root", "--output-format", "json").stdout)
        self.assertEqual(3, len(g))

    # ---- partial restore ----

    def test_partial_restore(self):
        src = self.fresh_tree("partial", 2)
        snap = self.backup(src, "partial")["snapshot"]
        full = os.path.join(self.tmp, "partial-full")
        self.cairn("restore", snap, "root", full)
        part = os.path.join(self.tmp, "partial-part")
        p = self.cairn("restore", snap, "root", part, "--include", "docs/deep", "--include",
                       "big/r05.bin", "--include", "hard.txt", "--exclude", "c.conf")
        m = SUMMARY_RE.search(p.stdout.decode())
        self.assertIsNotNone(m, p.stdout)
        fetched, total = int(m.group(2)), int(m.group(3))
        self.assertLessEqual(fetched, total // 2, p.stdout)
        must = {b"docs", b"docs/deep", b"docs/deep/er", b"big", b"big/r05.bin", b"hard.txt"}
        got = listing(part)
        # docs/a.txt comes along when it is the hard link's first name (the
        # one holding the data), which depends on the walk's order
        self.assertTrue(must <= set(got) <= must | {b"docs/a.txt"}, sorted(got))
        want = listing(full)
        for k in got:
            self.assertEqual(want[k], got[k], k)

        # one file to stdout, fetching only its chunks
        p = self.cairn("restore", snap, "root", "-", "--include", "big/r02.bin")
        with open(os.path.join(src, "big", "r02.bin"), "rb") as f:
            self.assertEqual(f.read(), p.stdout)
        m = SUMMARY_RE.search(p.stderr.decode())
        self.assertLessEqual(int(m.group(2)), 3)  # its header's chunk and its data's
        # a hard link's second name to stdout: the data of the first
        p = self.cairn("restore", snap, "root", "-", "--include", "hard.txt")
        self.assertEqual(b"alpha\n" * 1000, p.stdout)
        # more than one match to stdout is refused
        p = self.cairn("restore", snap, "root", "-", "--include", "*.conf", check=False)
        self.assertNotEqual(0, p.returncode)
        self.assertIn(b"exactly one file", p.stderr)
        p = self.cairn("restore", snap, "root", part + "2", "--include", "nothing-here",
                       check=False)
        self.assertNotEqual(0, p.returncode)

    # ---- metadata mode ----

    def test_metadata_mode(self):
        src = self.fresh_tree("meta", 3)
        big = os.path.join(src, "big")
        s = self.backup(src, "meta")
        self.assertEqual(0, s["reused-files"])
        # unchanged: every large file reused, nothing read or uploaded
        s = self.backup(src, "meta")
        self.assertEqual(8, s["reused-files"])
        self.assertEqual(0, s["new-chunks"])
        # and every small file too (the groups between and after large
        # files); only the sparse file, whose data is never skipped, is read
        self.assertEqual(1, s["read-files"])
        self.assertEqual(24 * MiB, s["read-bytes"])
        self.assertGreater(s["grouped-files"], 0)
        self.assert_restores_to(s["snapshot"], src, "unchanged")

        steps = []
        # touch: mtime changes, the file is read again (same data: no upload)
        os.utime(os.path.join(big, "r00.bin"))
        steps.append("touch")
        s = self.backup(src, "meta")
        self.assertEqual(7, s["reused-files"])
        self.assert_restores_to(s["snapshot"], src, "touch")
        # append and truncate
        with open(os.path.join(big, "r01.bin"), "ab") as f:
            f.write(b"appended")
        os.truncate(os.path.join(big, "r02.bin"), MiB + 17)
        s = self.backup(src, "meta")
        self.assertEqual(6, s["reused-files"])
        self.assert_restores_to(s["snapshot"], src, "append/truncate")
        # replace: same size and mtime, another inode
        self.replace_keeping_stat(os.path.join(big, "r03.bin"), 12345)
        s = self.backup(src, "meta")
        self.assertEqual(7, s["reused-files"])
        self.assert_restores_to(s["snapshot"], src, "replace")
        # rename: the new name is read (no previous entry), the rest reused
        os.rename(os.path.join(big, "r04.bin"), os.path.join(big, "renamed.bin"))
        s = self.backup(src, "meta")
        self.assertEqual(7, s["reused-files"])
        # same data, same chunks: only the small chunk with its new header
        # (and a catalog index's one chunk: its records changed)
        self.assertLessEqual(s["new-chunks"], 3 if self.INDEX_MIN else 2)
        self.assert_restores_to(s["snapshot"], src, "rename")
        # contents changed with the mtime put back: only ctime tells
        p = os.path.join(big, "r05.bin")
        st = os.stat(p)
        with open(p, "r+b") as f:
            f.seek(1000)
            f.write(b"CHANGED-BEHIND-MTIME")
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
        self.assertEqual(st.st_mtime_ns, os.stat(p).st_mtime_ns)
        s = self.backup(src, "meta")
        self.assertEqual(7, s["reused-files"])
        self.assertGreaterEqual(s["new-chunks"], 1)
        self.assert_restores_to(s["snapshot"], src, "ctime only")
        # data mode reads everything and gives the same snapshot contents
        d = self.backup(src, "meta", "--change-detection-mode", "data")
        self.assertEqual(0, d["reused-files"])
        self.assertEqual(s["chunks"], d["chunks"])
        self.assertEqual(0, d["new-chunks"])

    def small_tree(self, name, seed):
        """Directories of small files (2-64 KiB, incompressible), a symlink,
        an empty file and a hard link; fixed mtimes so every run writes the
        same headers. Returns (root, number of files with data)."""
        src = os.path.join(self.tmp, name)
        rnd = random.Random(seed)
        n = 0
        for d in range(6):
            dd = os.path.join(src, "d%d" % d)
            os.makedirs(dd)
            for i in range(150):
                write(os.path.join(dd, "f%03d.bin" % i), rnd.randbytes(rnd.randint(2048, 65536)),
                      1_700_000_000_000_000_000 + i * 1_000_000_000)
                n += 1
        os.symlink("d0/f000.bin", os.path.join(src, "link"))
        write(os.path.join(src, "empty"), b"")
        os.link(os.path.join(src, "d1", "f001.bin"), os.path.join(src, "hard"))
        return src, n

    def assert_small_step(self, s, nfiles, groups, what):
        # the changed file's group(s) are read, every other file is not:
        # a group holds at most CLIENT_GROUP_MAX (8 MiB) of stream plus one
        # entry (64 KiB here)
        self.assertGreaterEqual(s["read-files"], 1, what)
        self.assertEqual(nfiles, s["read-files"] + s["grouped-files"], what)
        self.assertLessEqual(s["read-bytes"], groups * (8 * MiB + 64 * 1024), what)
        self.assertEqual(0, s["reused-files"], what)
        self.assertLess(s["read-files"], nfiles // 2, what)

    def test_metadata_mode_small_files(self):
        src, nfiles = self.small_tree("small", 5)
        s = self.backup(src, "small")
        self.assertEqual(nfiles, s["read-files"])
        self.assertEqual(0, s["grouped-files"])
        # unchanged: no file read at all, nothing uploaded
        s = self.backup(src, "small")
        self.assertEqual(0, s["read-files"])
        self.assertEqual(0, s["read-bytes"])
        self.assertEqual(nfiles, s["grouped-files"])
        self.assertEqual(0, s["new-chunks"])
        self.assert_restores_to(s["snapshot"], src, "small: unchanged")
        # touch: a new mtime in the header, the file's group is read
        p = os.path.join(src, "d2", "f010.bin")
        os.utime(p, ns=(0, os.stat(p).st_mtime_ns + 1_000_000_000))
        s = self.backup(src, "small")
        self.assert_small_step(s, nfiles, 2, "small: touch")
        self.assert_restores_to(s["snapshot"], src, "small: touch")
        # append (the size in the header changes, later offsets move)
        with open(os.path.join(src, "d3", "f020.bin"), "ab") as f:
            f.write(b"appended")
        s = self.backup(src, "small")
        self.assert_small_step(s, nfiles, 2, "small: append")
        self.assert_restores_to(s["snapshot"], src, "small: append")
        # replace: same size and mtime, another inode
        self.replace_keeping_stat(os.path.join(src, "d4", "f030.bin"), 100)
        s = self.backup(src, "small")
        self.assert_small_step(s, nfiles, 2, "small: replace")
        self.assert_restores_to(s["snapshot"], src, "small: replace")
        # contents changed with the mtime put back: only ctime tells
        p = os.path.join(src, "d5", "f040.bin")
        st = os.stat(p)
        with open(p, "r+b") as f:
            f.write(b"CHANGED-BEHIND-MTIME")
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
        s = self.backup(src, "small")
        self.assert_small_step(s, nfiles, 2, "small: ctime only")
        self.assertGreaterEqual(s["new-chunks"], 1)
        self.assert_restores_to(s["snapshot"], src, "small: ctime only")
        # rename: the entry leaves its place and takes another one in the
        # directory order, so up to two groups change (and their neighbours
        # where a cut moves)
        os.rename(os.path.join(src, "d1", "f050.bin"), os.path.join(src, "d1", "moved.bin"))
        s = self.backup(src, "small")
        self.assert_small_step(s, nfiles, 3, "small: rename")
        self.assert_restores_to(s["snapshot"], src, "small: rename")
        # data mode reads everything and chunks the same
        d = self.backup(src, "small", "--change-detection-mode", "data")
        self.assertEqual(nfiles, d["read-files"])
        self.assertEqual(0, d["grouped-files"])
        self.assertEqual(s["chunks"], d["chunks"])
        self.assertEqual(0, d["new-chunks"])

    # ---- exclusions ----

    def test_exclusions(self):
        src = self.fresh_tree("excl", 4)
        os.makedirs(os.path.join(src, "cache", "x"))
        write(os.path.join(src, "cache", "x", "junk"), b"junk")
        write(os.path.join(src, "docs", "deep", ".cairnexclude"), b"# comment\n*.conf\n")
        write(os.path.join(src, "docs", "keep.tmp"), b"kept by !")
        write(os.path.join(src, "docs", "drop.tmp"), b"dropped")
        snap = self.backup(src, "excl", "--exclude", "cache/", "--exclude", "/big",
                           "--exclude", "*.tmp", "--exclude", "!keep.tmp")["snapshot"]
        found = {e["path"] for e in json.loads(self.cairn(
            "find", snap, "*", "--output-format", "json").stdout)}
        self.assertNotIn("cache", found)
        self.assertNotIn("big", found)
        self.assertNotIn("docs/drop.tmp", found)
        self.assertIn("docs/keep.tmp", found)
        self.assertNotIn("docs/deep/er/c.conf", found)  # .cairnexclude below docs/deep
        self.assertIn("docs/b.conf", found)             # ... and nowhere else
        self.assertIn("docs/deep/.cairnexclude", found)
        snap = self.backup(src, "excl", "--no-exclude-files")["snapshot"]
        found = {e["path"] for e in json.loads(self.cairn(
            "find", snap, "*.conf", "--output-format", "json").stdout)}
        self.assertIn("docs/deep/er/c.conf", found)

    # ---- server side ----

    def test_server_files_catalog_notes(self):
        import base64
        src = self.fresh_tree("api", 6)
        snap = self.backup(src, "api")["snapshot"]
        t, i, when = snap.split("/")
        # the snapshot time as epoch seconds, from the listing
        lst = json.loads(self.cairn("snapshots", "host/api", "--output-format", "json").stdout)
        epoch = max(x["backup-time"] for x in lst)
        q = {"backup-type": t, "backup-id": i, "backup-time": str(epoch)}
        D = "/api2/json/admin/datastore/%s/" % STORE
        st, _, files = self.srv.get(D + "files", params=q)
        self.assertEqual(200, st, files)
        names = {f["filename"]: f for f in files["data"]}
        self.assertIn("root.didx", names)
        self.assertIn(self.CATALOG, names)
        self.assertEqual({"root.catalog.blob", "root.catalog.didx"} - {self.CATALOG},
                         {"root.catalog.blob", "root.catalog.didx"} - set(names))
        self.assertEqual("none", names["root.didx"]["crypt-mode"])

        def catalog(path):
            return self.srv.get(D + "catalog", params=dict(q, **{
                "archive-name": "root.didx",
                "filepath": base64.b64encode(path.encode()).decode()}))
        st, _, root = catalog("/")
        self.assertEqual(200, st, root)
        by = {e["text"]: e for e in root["data"]}
        self.assertEqual("d", by["docs"]["type"])
        self.assertFalse(by["docs"]["leaf"])
        self.assertEqual("l", by["sym"]["type"])
        self.assertEqual(24 * MiB, by["sparse.img"]["size"])
        self.assertEqual("/docs", base64.b64decode(by["docs"]["filepath"]).decode())
        st, _, docs = catalog("/docs")
        self.assertIn("b.conf", {e["text"] for e in docs["data"]})
        self.assertEqual(404, catalog("/nope").status)
        self.assertEqual(400, catalog("/../etc").status)
        st, _, bad = self.srv.get(D + "catalog", params=dict(q, **{
            "archive-name": "root.didx", "filepath": "%%%"}))
        self.assertEqual(400, st)

        # file-download: one file's bytes, a directory as tar
        def download(path, archive="root.didx"):
            return self.srv.get(D + "file-download", params=dict(q, **{
                "archive-name": archive,
                "filepath": base64.b64encode(path.encode()).decode()}))
        r = download("/big/r03.bin")
        self.assertEqual(200, r.status)
        with open(os.path.join(src, "big", "r03.bin"), "rb") as f:
            self.assertEqual(f.read(), r.raw)
        r = download("/hard.txt")
        self.assertEqual(b"alpha\n" * 1000, r.raw)
        r = download("/docs")
        self.assertEqual(200, r.status)
        self.assertEqual("application/x-tar", r.headers.get("Content-Type"))
        out = os.path.join(self.tmp, "dl-untar")
        os.mkdir(out)
        subprocess.run(["tar", "xf", "-", "-C", out], input=r.raw, check=True)
        self.assertEqual(b"key = value\n",
                         open(os.path.join(out, "docs", "b.conf"), "rb").read())
        self.assertEqual(b"nested\n",
                         open(os.path.join(out, "docs", "deep", "er", "c.conf"), "rb").read())
        self.assertFalse(os.path.exists(os.path.join(out, "big")))
        self.assertEqual(404, download("/missing").status)
        # a sparse file (a hole at the start and at the end): its logical
        # bytes, holes as zeros
        r = download("/sparse.img")
        self.assertEqual(200, r.status)
        self.assertEqual(str(24 * MiB), r.headers.get("Content-Length"))
        with open(os.path.join(src, "sparse.img"), "rb") as f:
            self.assertTrue(f.read() == r.raw, "sparse.img differs")
        self.assertEqual(400, download("/../x").status)

        self.assertEqual("", self.srv.get(D + "notes", params=q).data["data"])
        self.assertEqual(200, self.srv.put(D + "notes", params=dict(q, notes="last Tuesday ✓")).status)
        self.assertEqual("last Tuesday ✓", self.srv.get(D + "notes", params=q).data["data"])
        # the snapshot still restores (the manifest was rewritten)
        self.cairn("restore", snap, "root", "-", "--include", "docs/b.conf")
        g = {"backup-type": t, "backup-id": i}
        self.assertEqual("", self.srv.get(D + "group-notes", params=g).data["data"])
        self.assertEqual(200, self.srv.put(D + "group-notes", params=dict(g, notes="group")).status)
        self.assertEqual("group", self.srv.get(D + "group-notes", params=g).data["data"])
        self.assertEqual(400, self.srv.put(D + "notes", params=q).status)
        self.assertEqual(404, self.srv.get(D + "group-notes", params=dict(g, **{
            "backup-id": "none"})).status)

    # ---- mount ----

    def test_mount(self):
        if not os.path.exists("/dev/fuse"):
            ch.skip_for_machine(self, "fuse", "cairn mount needs /dev/fuse")
        import signal
        import time
        src = self.fresh_tree("mnt", 7)
        snap = self.backup(src, "mnt")["snapshot"]
        for how in ("sigterm", "fusermount"):
            mnt = os.path.join(self.tmp, "mnt-" + how)
            os.mkdir(mnt)
            p = subprocess.Popen([ch.binary("cairn"), "mount", snap, "root", mnt],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=self.env())
            try:
                # the mount appears asynchronously: poll for it (or the process ending)
                deadline = time.monotonic() + 30
                while not os.path.ismount(mnt) and p.poll() is None and \
                        time.monotonic() < deadline:
                    time.sleep(0.05)
                if p.poll() is not None:
                    self.fail("cairn mount exited %d: %s" % (p.returncode,
                                                             p.stderr.read().decode()))
                self.assertTrue(os.path.ismount(mnt))
                # ls, cat (every file, sparse and hard-linked ones too), find
                want, got = listing(src), listing(mnt)
                self.assertEqual(sorted(want), sorted(got))
                for k in want:
                    w, g = dict(want[k]), dict(got[k])
                    w.pop("xattrs", None)  # not served by the mount
                    g.pop("xattrs", None)
                    self.assertEqual(w, g, k)
                found = subprocess.run(["find", mnt, "-name", "*.conf"], capture_output=True,
                                       check=True).stdout.decode().split()
                self.assertEqual(2, len(found))
                copy = os.path.join(self.tmp, "copied-" + how)
                subprocess.run(["cp", os.path.join(mnt, "big", "r01.bin"), copy], check=True)
                with open(copy, "rb") as a, open(os.path.join(src, "big", "r01.bin"), "rb") as b:
                    self.assertEqual(a.read(), b.read())
                with self.assertRaises(OSError):
                    open(os.path.join(mnt, "docs", "a.txt"), "r+b")
            finally:
                if how == "sigterm":
                    p.send_signal(signal.SIGTERM)
                else:
                    subprocess.run(["fusermount3", "-u", mnt])
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    subprocess.run(["fusermount3", "-uz", mnt])
                    p.wait()
                p.stdout.close()
                stderr = p.stderr.read()
                p.stderr.close()
            self.assertEqual(0, p.returncode, "%s: %s" % (how, stderr.decode(errors="replace")))
            self.assertFalse(os.path.ismount(mnt))

    # ---- hostile catalogs ----

    def forge_catalog(self, snap, change):
        """Rewrites the snapshot's catalog with change(entries) and the manifest
        (unsigned) to match, as an attacker with the datastore could."""
        when = snap.split("/")[2]
        d = os.path.join(self.srv.datastore_path(STORE), "host", snap.split("/")[1], when)
        with open(os.path.join(d, "root.catalog.blob"), "rb") as f:
            entries = catalog_decode(blob_decode(f.read()))
        change({e["path"]: e for e in entries})
        blob = blob_plain(catalog_encode(entries))
        with open(os.path.join(d, "root.catalog.blob"), "wb") as f:
            f.write(blob)
        with open(os.path.join(d, "index.json.blob"), "rb") as f:
            m = json.loads(blob_decode(f.read()))
        for fe in m["files"]:
            if fe["filename"] == "root.catalog.blob":
                fe["size"] = len(blob)
                fe["csum"] = hashlib.sha256(blob).hexdigest()
        with open(os.path.join(d, "index.json.blob"), "wb") as f:
            f.write(blob_plain(json.dumps(m).encode()))

    def test_lying_catalog_refused(self):
        # a backed-up file whose data is a tar entry named ../escaped.txt
        src = self.fresh_tree("lying", 8)
        t = io.BytesIO()
        with tarfile.open(fileobj=t, mode="w", format=tarfile.PAX_FORMAT) as tf:
            data = b"escaped!\n"
            ti = tarfile.TarInfo("../escaped.txt")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        write(os.path.join(src, "docs", "evil.tar"), t.getvalue()[:1024])
        snap = self.backup(src, "lying")["snapshot"]
        outside = os.path.join(self.tmp, "escaped.txt")

        def point_at_evil(es):
            evil, victim = es[b"docs/evil.tar"], es[b"docs/b.conf"]
            start = evil["hdr"] + evil["dh"]  # the tar entry inside evil.tar's data
            victim["hdr"], victim["dh"], victim["dlen"], victim["pad"] = start, 512, 9, 503
            victim["size"] = 9
        self.forge_catalog(snap, point_at_evil)
        target = os.path.join(self.tmp, "lying-target")
        p = self.cairn("restore", snap, "root", target, "--include", "docs/b.conf", check=False)
        self.assertNotEqual(0, p.returncode, p.stdout)
        self.assertIn(b"unsafe", p.stderr)
        self.assertFalse(os.path.exists(outside))
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "escaped.txt")))

        # offsets beyond the archive, and overlapping entries: refused before any write
        def beyond(es):
            es[b"docs/b.conf"]["hdr"] = 1 << 40
        self.forge_catalog(snap, beyond)
        p = self.cairn("restore", snap, "root", target + "2", "--include", "docs/b.conf",
                       check=False)
        self.assertNotEqual(0, p.returncode)
        self.assertIn(b"impossible stream offsets", p.stderr)
        self.assertFalse(os.path.exists(os.path.join(target + "2", "docs")))

        def overlap(es):
            es[b"docs/b.conf"]["hdr"] = es[b"docs/a.txt"]["hdr"] if b"docs/a.txt" in es \
                else es[b"hard.txt"]["hdr"]
        self.forge_catalog(snap, overlap)
        p = self.cairn("restore", snap, "root", target + "3", "--include", "docs", check=False)
        self.assertNotEqual(0, p.returncode)
        self.assertFalse(os.path.exists(os.path.join(target + "3", "docs", "b.conf")))

        # a ".." path in the catalog: the catalog is refused as damaged
        def dotdot(es):
            es[b"docs/b.conf"]["path"] = b"../b.conf"
        self.forge_catalog(snap, dotdot)
        for args in (("ls", snap, "root"), ("restore", snap, "root", target + "4", "--include",
                                            "*")):
            p = self.cairn(*args, check=False)
            self.assertNotEqual(0, p.returncode)
            self.assertIn(b"damaged", p.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "b.conf")))

    def test_forged_sparse_map(self):
        """file-download reads a sparse file's map from its data area: files
        whose bytes are a map (a good one, and ones that do not add up),
        flagged sparse in a forged catalog."""
        import base64
        src = self.fresh_tree("sparsemap", 9)
        body = b"0123456789abcdefghij"
        maps = {b"good": b"2\n100\n5\n300\n15\n", b"back": b"2\n300\n5\n100\n15\n",
                b"over": b"2\n100\n5\n102\n15\n", b"past": b"2\n100\n5\n990\n15\n",
                b"sum": b"2\n100\n5\n300\n16\n", b"junk": b"2\n100\n5\n3x0\n15\n",
                b"many": b"99999999\n"}
        for name, m in maps.items():
            write(os.path.join(src, "docs", name.decode() + ".map"), m.ljust(512, b"\0") + body)
        snap = self.backup(src, "sparsemap")["snapshot"]

        def flag(es):
            for name in maps:
                e = es[b"docs/" + name + b".map"]
                e["flags"] |= 1
                e["size"] = 1000
        self.forge_catalog(snap, flag)
        t, i, _ = snap.split("/")
        lst = json.loads(self.cairn("snapshots", "host/sparsemap", "--output-format",
                                    "json").stdout)
        q = {"backup-type": t, "backup-id": i,
             "backup-time": str(max(x["backup-time"] for x in lst)), "archive-name": "root.didx"}

        def download(name):
            return self.srv.get("/api2/json/admin/datastore/%s/file-download" % STORE,
                                params=dict(q, filepath=base64.b64encode(
                                    b"/docs/" + name + b".map").decode()))
        r = download(b"good")
        self.assertEqual(200, r.status, r)
        self.assertEqual(b"\0" * 100 + body[:5] + b"\0" * 195 + body[5:] + b"\0" * 685, r.raw)
        for name in maps:
            if name != b"good":
                r = download(name)
                self.assertEqual(400, r.status, (name, r))
                self.assertIn(b"sparse map", r.raw, name)

    def test_damaged_catalog_refused(self):
        src = self.fresh_tree("hostile", 5)
        snap = self.backup(src, "hostile")["snapshot"]
        when = snap.split("/")[2]
        path = os.path.join(self.srv.datastore_path(STORE), "host", "hostile", when,
                            "root.catalog.blob")
        with open(path, "rb") as f:
            data = bytearray(f.read())
        data[-5] ^= 0x40
        with open(path, "wb") as f:
            f.write(bytes(data))
        for args in (("ls", snap, "root"), ("restore", snap, "root",
                                            os.path.join(self.tmp, "h"), "--include", "docs")):
            p = self.cairn(*args, check=False)
            self.assertNotEqual(0, p.returncode)
            self.assertIn(b"checksum", p.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "h", "docs")))


def didx_chunks(path):
    """The digests of a dynamic index file (a 4096-byte header, then
    (u64 end offset, 32-byte digest) entries)."""
    with open(path, "rb") as f:
        data = f.read()
    return [data[i + 8:i + 40].hex() for i in range(4096, len(data), 40)]


class CatalogIndexCase(CatalogCase):
    """Every test above again with every catalog stored as an index of its
    own (NAME.catalog.didx), plus what only that form has: a catalog of many
    chunks read by ranges, and damaged chunks."""
    CATALOG = "root.catalog.didx"
    INDEX_MIN = "1"
    # and the writer spills sorted runs to a temporary file every 64 KiB
    # (the 30,000-entry tree: dozens of runs merged)
    CATALOG_MEM = "65536"
    # the hostile-blob tests forge NAME.catalog.blob; the index form's own
    # are below
    test_lying_catalog_refused = None
    test_damaged_catalog_refused = None
    test_forged_sparse_map = None

    def many_tree(self, name, seed, n):
        src = self.fresh_tree(name, seed)
        rnd = random.Random(seed)
        many = os.path.join(src, "many")
        os.mkdir(many)
        # long names: a catalog of about 3.5 MB, so that its content-defined
        # chunks (their count moves with every run's times and inodes) are
        # many more than a lookup's probes
        for _ in range(n):
            open(os.path.join(many, "%096x.dat" % rnd.getrandbits(384)), "wb").close()
        return src

    def test_index_form(self):
        src = self.many_tree("idx", 9, 30000)
        blob_env = {"CAIRN_CATALOG_INDEX_MIN": str(1 << 40)}
        s1 = self.backup(src, "idx")
        b1 = json.loads(self.cairn("backup", "root.didx:%s" % src, "--backup-id", "idx-blob",
                                   "--output-format", "json", env=blob_env)
                        .stdout.decode().strip().splitlines()[-1])
        snap, bsnap = s1["snapshot"], b1["snapshot"]
        d = os.path.join(self.srv.datastore_path(STORE), "host", "idx", snap.split("/")[2])
        self.assertTrue(os.path.exists(os.path.join(d, "root.catalog.didx")))
        self.assertFalse(os.path.exists(os.path.join(d, "root.catalog.blob")))
        bd = os.path.join(self.srv.datastore_path(STORE), "host", "idx-blob",
                          bsnap.split("/")[2])
        self.assertTrue(os.path.exists(os.path.join(bd, "root.catalog.blob")))
        nchunks = len(didx_chunks(os.path.join(d, "root.catalog.didx")))
        self.assertGreater(nchunks, 8)

        # ls, find: the same answers from both forms
        def js(*args, env=None):
            return json.loads(self.cairn(*args, "--output-format", "json", env=env).stdout)
        for path in (".", "docs", "many", "docs/deep/er/c.conf"):
            self.assertEqual(js("ls", bsnap, "root", path, env=blob_env),
                             js("ls", snap, "root", path), path)
        for pat in ("*.conf", "many/0*", "*"):
            a = sorted(e["path"] for e in js("find", snap, pat))
            b = sorted(e["path"] for e in js("find", bsnap, pat, env=blob_env))
            self.assertEqual(b, a, pat)
        # a lookup reads a few of the catalog's chunks
        name = sorted(os.listdir(os.path.join(src, "many")))[12345]
        p = self.cairn("ls", snap, "root", "many/" + name, env={"CAIRN_CATALOG_STATS": "1"})
        m = re.search(r"catalog index: (\d+) of (\d+) chunks fetched", p.stderr.decode())
        self.assertIsNotNone(m, p.stderr)
        self.assertEqual(nchunks, int(m.group(2)))
        self.assertLessEqual(int(m.group(1)), nchunks // 2, p.stderr)

        # metadata mode reads the previous catalog index; an unchanged tree
        # uploads nothing (the catalog index's chunks are deduplicated too)
        s2 = self.backup(src, "idx")
        self.assertEqual(8, s2["reused-files"])
        self.assertEqual(0, s2["new-chunks"])
        os.remove(os.path.join(src, "many", name))
        write(os.path.join(src, "docs", "added.txt"), b"added\n")
        s3 = self.backup(src, "idx")
        self.assertEqual(8, s3["reused-files"])
        self.assert_restores_to(s3["snapshot"], src, "metadata mode over a catalog index")
        d = js("diff", snap, s3["snapshot"], "root")
        self.assertEqual({("removed", "many/" + name), ("added", "docs/added.txt")},
                         {(e["change"], e["path"]) for e in d} - {("changed", "docs"),
                                                                  ("changed", "many"),
                                                                  ("changed", ".")})

        # partial restore through the catalog index
        part = os.path.join(self.tmp, "idx-part")
        p = self.cairn("restore", snap, "root", part, "--include", "docs/deep")
        # a path from the root: only its run of the catalog is read
        m = re.search(r"catalog index: (\d+) of (\d+) chunks fetched", p.stdout.decode())
        self.assertIsNotNone(m, p.stdout)
        self.assertLessEqual(int(m.group(1)), nchunks // 2, p.stdout)
        # a pattern: the whole catalog is read, the same selection made
        part2 = os.path.join(self.tmp, "idx-part2")
        p = self.cairn("restore", snap, "root", part2, "--include", "docs/de*")
        m = re.search(r"catalog index: (\d+) of (\d+) chunks fetched", p.stdout.decode())
        self.assertGreaterEqual(int(m.group(1)), nchunks, p.stdout)
        self.assertEqual(listing(part), listing(part2))
        with open(os.path.join(part, "docs", "deep", "er", "c.conf"), "rb") as f:
            self.assertEqual(b"nested\n", f.read())
        self.assertFalse(os.path.exists(os.path.join(part, "many")))

        # the server's catalog and file-download read the index by ranges
        lst = json.loads(self.cairn("snapshots", "host/idx", "--output-format", "json").stdout)
        epoch = min(x["backup-time"] for x in lst)
        q = {"backup-type": "host", "backup-id": "idx", "backup-time": str(epoch),
             "archive-name": "root.didx"}
        D = "/api2/json/admin/datastore/%s/" % STORE
        import base64
        st, _, many = self.srv.get(D + "catalog", params=dict(
            q, filepath=base64.b64encode(b"/many").decode()))
        self.assertEqual(200, st, many)
        self.assertEqual(30000, len(many["data"]))
        r = self.srv.get(D + "file-download", params=dict(
            q, filepath=base64.b64encode(b"/docs/b.conf").decode()))
        self.assertEqual(200, r.status)
        self.assertEqual(b"key = value\n", r.raw)

    def test_encrypted_index(self):
        key = os.path.join(self.tmp, "idx-key.json")
        self.cairn("key", "create", key, "--kdf", "none")
        src = self.fresh_tree("idx-enc", 11)
        s1 = self.backup(src, "idx-enc", "--keyfile", key)
        snap = s1["snapshot"]
        d = os.path.join(self.srv.datastore_path(STORE), "host", "idx-enc", snap.split("/")[2])
        # the catalog index's chunks are encrypted like the archive's
        for h in didx_chunks(os.path.join(d, "root.catalog.didx")):
            with open(os.path.join(self.srv.datastore_path(STORE), ".chunks", h[:4], h),
                      "rb") as f:
                data = f.read()
            self.assertIn(data[:8], (bytes.fromhex("7b6785be222d4cf0"),
                                     bytes.fromhex("e6591bbf0bbfd80b")))
            self.assertNotIn(b"docs/b.conf", data)
        out = json.loads(self.cairn("ls", snap, "root", "docs", "--keyfile", key,
                                    "--output-format", "json").stdout)
        self.assertIn("docs/b.conf", {e["path"] for e in out})
        p = self.cairn("ls", snap, "root", check=False)
        self.assertNotEqual(0, p.returncode)
        # metadata mode with the key reads the previous catalog index
        s2 = self.backup(src, "idx-enc", "--keyfile", key)
        self.assertEqual(8, s2["reused-files"])
        self.assertEqual(0, s2["new-chunks"])
        # without the key the previous one is not used: every file is read
        s3 = self.backup(src, "idx-enc")
        self.assertEqual(0, s3["reused-files"])

    def test_damaged_catalog_index_refused(self):
        src = self.many_tree("idx-bad", 10, 3000)
        snap = self.backup(src, "idx-bad")["snapshot"]
        d = os.path.join(self.srv.datastore_path(STORE), "host", "idx-bad", snap.split("/")[2])
        # every chunk of the catalog index damaged (none is shared: the tree
        # is this test's own)
        for h in set(didx_chunks(os.path.join(d, "root.catalog.didx"))):
            path = os.path.join(self.srv.datastore_path(STORE), ".chunks", h[:4], h)
            with open(path, "rb") as f:
                data = bytearray(f.read())
            data[-3] ^= 0x40
            with open(path, "wb") as f:
                f.write(bytes(data))
        target = os.path.join(self.tmp, "idx-bad-target")
        for args in (("ls", snap, "root"), ("find", snap, "*"),
                     ("restore", snap, "root", target, "--include", "docs")):
            p = self.cairn(*args, check=False)
            self.assertNotEqual(0, p.returncode, args)
        self.assertFalse(os.path.exists(os.path.join(target, "docs")))
        # the server refuses it as damaged, not with a crash or a hang
        lst = json.loads(self.cairn("snapshots", "host/idx-bad", "--output-format",
                                    "json").stdout)
        import base64
        st, _, body = self.srv.get("/api2/json/admin/datastore/%s/catalog" % STORE, params={
            "backup-type": "host", "backup-id": "idx-bad",
            "backup-time": str(lst[0]["backup-time"]), "archive-name": "root.didx",
            "filepath": base64.b64encode(b"/").decode()})
        self.assertGreaterEqual(st, 400, body)


if __name__ == "__main__":
    unittest.main(verbosity=2)
