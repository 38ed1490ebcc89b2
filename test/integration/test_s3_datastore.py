#!/usr/bin/env python3
"""S3-backed datastores against Ceph RGW (issues 6 item 5 and 7).

Starts one Ceph RGW (test/s3/rgw-up.sh) on free loopback ports for the
module, and cairnd servers from the harness. Covers:
  - the S3 endpoint config API (secrets never returned, digests, the bucket
    check saying what is wrong) and `cairn-admin s3`;
  - datastore create with `backend type=s3,...`: the .in-use marker, refusal
    of a second server on the same prefix, overwrite-in-use;
  - backup and restore through S3 with the local cache wiped in between, and
    key layout: chunks under <store>/.chunks/, metadata under <store>/.cnt/;
  - max-cache-size: evicted chunks are 0-byte markers and still restore;
  - file-download (issue 19) after a cache wipe reads the chunks from the bucket;
  - S3 refresh onto an empty directory restores the snapshot list;
  - PBS patch 2's race, deterministically (an upload paused between the S3
    answer and the cache insert while GC runs phase 2): with the claims
    disabled (test hook) GC deletes the object and the backup "succeeds"
    over a missing chunk; with them, the object is kept;
  - GC: request counts equal the minimum for the listing size;
  - moves (issue #15): group and namespace moves copy the .cnt/ objects to
    the new keys and delete the old ones; GC, verify and an S3 refresh agree;
    kill -9 after the copies and after the rename leaves leftovers that the
    next GC or move removes, and kill -9 of a namespace move after its local
    source removal leaves stray `.namespace` markers that the next GC removes;
    `cairn-admin group|namespace move` on S3 beside the running server;
  - GC with the local cache on a full tmpfs: the atime check falls back to a
    cached chunk, GC deletes the garbage and writes .gc-status;
  - write-behind: a chunk is answered while its upload runs, and finish
    waits for the upload before anything is published; an upload that fails
    after its chunk was answered fails later chunks and finish;
  - failures: S3 unreachable mid-backup fails the backup clearly and leaves
    no finished snapshot; a stress run of 8 concurrent backups and repeated
    GC through the fault proxy at 5% faults, after which every finished
    snapshot restores and verifies.
No skip: if RGW cannot start the test fails and says why.
"""
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cairn_harness as ch  # noqa: E402
import pbs_proto as pp  # noqa: E402

S3DIR = os.path.join(os.path.dirname(HERE), "s3")
API = "/api2/json"
TASKS = API + "/nodes/localhost/tasks"
BUCKET = "cairn-ds"
RGW = {}          # S3_* of the running RGW
_WORK = None


def free_ports(n):
    rng = random.Random(os.getpid() ^ int(time.time()))
    import socket
    for _ in range(200):
        base = rng.randrange(20000, 60000)
        ok = True
        for i in range(n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", base + i))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free ports")


def setUpModule():
    global _WORK
    for name in ("cairnd", "cairn-admin"):
        if not os.access(ch.binary(name), os.X_OK):
            raise RuntimeError("%s not built" % ch.binary(name))
    _WORK = tempfile.mkdtemp(prefix="cairn-s3ds-")
    port = free_ports(3)
    up = subprocess.run([os.path.join(S3DIR, "rgw-up.sh"), os.path.join(_WORK, "rgw"),
                         str(port)], capture_output=True, text=True, timeout=180)
    if up.returncode != 0:
        sys.stderr.write(up.stderr[-4000:])
        raise RuntimeError("Ceph RGW did not start (is scripts/deps.sh test done?)")
    for line in up.stdout.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            RGW[k] = v
    s3().create_bucket(Bucket=BUCKET)


def tearDownModule():
    if _WORK:
        subprocess.run([os.path.join(S3DIR, "rgw-down.sh"), os.path.join(_WORK, "rgw")],
                       capture_output=True, timeout=60)
        shutil.rmtree(_WORK, ignore_errors=True)


_CLIENT = []


def s3():
    """One boto3 client for the module (boto3 clients are thread-safe)."""
    if _CLIENT:
        return _CLIENT[0]
    import boto3  # python3-boto3
    from botocore.config import Config
    _CLIENT.append(boto3.client("s3", endpoint_url="http://127.0.0.1:%s" % RGW["S3_PORT"],
                        aws_access_key_id=RGW["S3_ACCESS_KEY"],
                        aws_secret_access_key=RGW["S3_SECRET_KEY"],
                        region_name=RGW["S3_REGION"],
                        config=Config(s3={"addressing_style": "path"},
                                      max_pool_connections=20)))
    return _CLIENT[0]


def list_keys(prefix):
    out = {}
    pg = s3().get_paginator("list_objects_v2")
    for page in pg.paginate(Bucket=BUCKET, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"]] = o["Size"]
    return out


def rbytes(seed, n):
    return random.Random(seed).randbytes(n)


def quote(s):
    return urllib.parse.quote(s, safe="")


class S3Case(pp.CaseMixin, unittest.TestCase):
    """A server with endpoint `rgw` configured; helpers for datastores."""

    env = {}
    endpoint_port = None   # None: RGW itself

    @classmethod
    def setUpClass(cls):
        cls.srv = ch.Cairn(tls=False, log_level="info", env=dict(cls.env, TZ="UTC"))
        cls.addClassCleanup(cls.finish_server, cls.srv)
        cls.make_endpoint(cls.srv, "rgw", cls.endpoint_port or RGW["S3_PORT"])

    @staticmethod
    def make_endpoint(srv, name, port, secret=None):
        r = srv.post(API + "/config/s3", params={
            "id": name, "endpoint": "127.0.0.1", "port": str(port),
            "region": RGW["S3_REGION"], "access-key": RGW["S3_ACCESS_KEY"],
            "secret-key": secret or RGW["S3_SECRET_KEY"], "path-style": "true",
            "use-tls": "false"})
        assert r.status == 200, r

    def make_store(self, name, endpoint="rgw", extra=None, srv=None, path=None):
        srv = srv or self.srv
        params = {"name": name, "path": path or srv.datastore_path(name),
                  "backend": "type=s3,client=%s,bucket=%s" % (endpoint, BUCKET),
                  "tuning": "gc-atime-safety-check=false,gc-atime-cutoff=1"}
        params.update(extra or {})
        return srv.post(API + "/config/datastore", params=params)

    def backup(self, store, backup_id, t, chunks, known=(), blob=b"log", params=None, srv=None):
        srv = srv or self.srv
        b = pp.BackupSession(srv, store, "host", backup_id, t)
        if params:
            orig = b.params
            b.params = lambda: dict(orig(), **params)
        self.open_session(b)
        entry, up = b.upload_dynamic("root.pxar.didx", chunks, known=known)
        b.upload_blob("client.log.blob", blob)
        b.upload_manifest()
        b.finish()
        return entry, up

    def restore(self, store, backup_id, t, srv=None):
        srv = srv or self.srv
        r = self.open_session(pp.ReaderSession(srv, store, "host", backup_id, t))
        _, data = r.restore_index("root.pxar.didx")
        r.close()
        return data

    def start_task(self, store, what, method="POST", srv=None):
        srv = srv or self.srv
        r = srv.request(method, "%s/admin/datastore/%s/%s" % (API, store, what))
        return self.assertOk(r, what)

    def wait_task(self, upid, timeout=120, srv=None):
        srv = srv or self.srv
        deadline = time.monotonic() + timeout
        while True:
            st = self.assertOk(srv.get("%s/%s/status" % (TASKS, quote(upid))), "status")
            if st["status"] == "stopped":
                return st
            if time.monotonic() > deadline:
                self.fail("task %s still running%s" % (upid, self.log_tail(srv)))
            time.sleep(0.05)

    def task_log(self, upid, srv=None):
        srv = srv or self.srv
        r = srv.get("%s/%s/log" % (TASKS, quote(upid)), params={"limit": "0"})
        return "\n".join(x["t"] for x in r.data["data"])

    def gc(self, store, srv=None, ok=True):
        upid = self.start_task(store, "gc", srv=srv)
        st = self.wait_task(upid, srv=srv)
        log = self.task_log(upid, srv=srv)
        if ok:
            self.assertEqual("OK", st.get("exitstatus"), log)
        return st, log

    def chunks(self, seed, n, size=20000):
        return [pp.Chunk(rbytes(seed * 100003 + i, size)) for i in range(n)]


def age_cache(ds, seconds):
    t = time.time() - seconds
    root = os.path.join(ds, ".chunks")
    for prefix in os.listdir(root):
        p = os.path.join(root, prefix)
        if os.path.isdir(p):
            for name in os.listdir(p):
                fp = os.path.join(p, name)
                os.utime(fp, (t, os.stat(fp).st_mtime))


def wipe_cache(ds):
    root = os.path.join(ds, ".chunks")
    n = 0
    for prefix in os.listdir(root):
        p = os.path.join(root, prefix)
        if os.path.isdir(p):
            shutil.rmtree(p)
            n += 1
    return n


class ConfigApi(S3Case):
    def test_endpoint_crud_without_secrets(self):
        srv = self.srv
        r = srv.get(API + "/config/s3")
        lst = self.assertOk(r, "list")
        self.assertEqual(["rgw"], [e["id"] for e in lst])
        self.assertNotIn("secret-key", lst[0])
        self.assertNotIn(RGW["S3_SECRET_KEY"], r.raw.decode())
        self.assertEqual(int(RGW["S3_PORT"]), lst[0]["port"])
        self.assertIs(True, lst[0]["path-style"])
        digest = r.data["digest"]
        with open(os.path.join(srv.config_dir, "s3.cfg")) as f:
            self.assertNotIn(RGW["S3_SECRET_KEY"], f.read())
        st = os.stat(os.path.join(srv.config_dir, "s3-secrets.cfg"))
        self.assertEqual(0o600, st.st_mode & 0o777)
        # create a second one, update with a stale digest, then right
        self.make_endpoint(srv, "other", 1)
        r = srv.put(API + "/config/s3/other", params={"region": "eu-1", "digest": digest})
        self.assertError(r, 409, "stale digest", mentions="digest")
        r = srv.get(API + "/config/s3/other")
        got = self.assertOk(r, "get")
        r = srv.put(API + "/config/s3/other", params={"region": "eu-1",
                                                      "digest": r.data["digest"]})
        self.assertOk(r, "update")
        self.assertEqual("eu-1", self.assertOk(srv.get(API + "/config/s3/other"))["region"])
        self.assertEqual("127.0.0.1", got["endpoint"])
        self.assertError(srv.put(API + "/config/s3/other", params={"delete": "access-key"}),
                         400, mentions="cannot be deleted")
        self.assertError(srv.post(API + "/config/s3", params={"id": "bad", "endpoint": "a/b",
                                                              "access-key": "x",
                                                              "secret-key": "y"}), 400)
        self.assertOk(srv.delete(API + "/config/s3/other"), "delete")
        self.assertError(srv.get(API + "/config/s3/other"), 404)
        # the secret never shows in the log either
        self.assertNotIn(RGW["S3_SECRET_KEY"], "\n".join(srv.log_lines))

    def test_check_says_what_is_wrong(self):
        srv = self.srv
        r = srv.get(API + "/admin/s3/rgw/check", params={"bucket": BUCKET})
        self.assertEqual("ok", self.assertOk(r, "check")["status"])
        r = srv.get(API + "/admin/s3/rgw/check", params={"bucket": "no-such-bucket-x"})
        self.assertError(r, 400, mentions="bucket")
        self.make_endpoint(srv, "wrongkey", RGW["S3_PORT"], secret="not-the-secret-0123")
        r = srv.get(API + "/admin/s3/wrongkey/check", params={"bucket": BUCKET})
        self.assertError(r, 400, mentions="credentials|signature|secret")
        self.make_endpoint(srv, "closed", free_ports(1))
        r = srv.get(API + "/admin/s3/closed/check", params={"bucket": BUCKET})
        self.assertError(r, 400, mentions="connect|refused")
        r = srv.post(API + "/config/s3", params={
            "id": "nodns", "endpoint": "no-such-host.invalid", "access-key": "a",
            "secret-key": "b", "use-tls": "false"})
        self.assertOk(r)
        r = srv.get(API + "/admin/s3/nodns/check", params={"bucket": BUCKET})
        self.assertError(r, 400, mentions="dns|resolve")
        self.assertError(srv.get(API + "/admin/s3/rgw/check", params={"bucket": "A_B"}), 400)
        self.assertError(srv.get(API + "/admin/s3/nope/check", params={"bucket": BUCKET}), 404)
        for e in ("wrongkey", "closed", "nodns"):
            self.assertOk(srv.delete(API + "/config/s3/" + e))

    def test_admin_cli(self):
        srv = self.srv
        env = dict(os.environ, CAIRN_CONFIG_DIR=srv.config_dir, CAIRN_RUN_DIR=srv.run_dir)
        adm = ch.binary("cairn-admin")
        p = subprocess.run([adm, "s3", "endpoint", "create", "cli1", "--endpoint", "127.0.0.1",
                            "--port", RGW["S3_PORT"], "--access-key", RGW["S3_ACCESS_KEY"],
                            "--secret-key", "-", "--path-style", "true", "--use-tls", "false",
                            "--region", RGW["S3_REGION"]],
                           input=RGW["S3_SECRET_KEY"] + "\n", env=env, capture_output=True,
                           text=True)
        self.assertEqual(0, p.returncode, p.stderr)
        # the server sees it at once (generation bump)
        ids = [e["id"] for e in self.assertOk(srv.get(API + "/config/s3"))]
        self.assertIn("cli1", ids)
        p = subprocess.run([adm, "s3", "check", "cli1", BUCKET], env=env, capture_output=True,
                           text=True)
        self.assertEqual(0, p.returncode, p.stderr)
        p = subprocess.run([adm, "s3", "endpoint", "list"], env=env, capture_output=True,
                           text=True)
        self.assertIn("cli1", p.stdout)
        self.assertNotIn(RGW["S3_SECRET_KEY"], p.stdout + p.stderr)
        p = subprocess.run([adm, "s3", "endpoint", "remove", "cli1"], env=env,
                           capture_output=True, text=True)
        self.assertEqual(0, p.returncode, p.stderr)


class Datastore(S3Case):
    def test_a_create_in_use_and_layout(self):
        srv = self.srv
        self.assertOk(self.make_store("s3a"), "create")
        inuse = json.loads(s3().get_object(Bucket=BUCKET, Key="s3a/.in-use")["Body"].read())
        self.assertIn("hostname", inuse)
        # the endpoint cannot go while the datastore uses it
        self.assertError(srv.delete(API + "/config/s3/rgw"), 409, mentions="in use")
        # the backend cannot change
        self.assertError(srv.put(API + "/config/datastore/s3a",
                                 params={"backend": "type=s3,client=rgw,bucket=other-b"}), 400,
                         mentions="backend")
        # a second server on the same prefix is refused, unless on purpose
        other = ch.Cairn(tls=False, log_level="warn")
        try:
            self.make_endpoint(other, "rgw", RGW["S3_PORT"])
            r = self.make_store("s3a", srv=other)
            self.assertError(r, 409, mentions="in use")
            self.assertFalse(os.path.exists(os.path.join(other.data_dir, "s3a", ".chunks")))
            r = self.make_store("s3a", srv=other, extra={"overwrite-in-use": "1"})
            self.assertOk(r, "create with overwrite-in-use")
            with open(os.path.join(other.config_dir, "datastore.cfg")) as f:
                self.assertNotIn("overwrite-in-use", f.read())
        finally:
            other.close()
        # the manifest reaches the bucket only with finish, and last
        chunks = self.chunks(1, 12)
        b = self.open_session(pp.BackupSession(srv, "s3a", "host", "h0", 1699999000))
        b.upload_dynamic("root.pxar.didx", chunks[:2])
        b.upload_manifest()
        snap0 = "s3a/.cnt/host/h0/2023-11-14T21:56:40Z/"
        keys = list_keys(snap0)
        self.assertIn(snap0 + "root.pxar.didx", keys)
        self.assertNotIn(snap0 + "index.json.blob", keys)
        b.finish()
        keys = list_keys(snap0)
        self.assertIn(snap0 + "index.json.blob", keys)
        # (the name the manifest waits under until finish stays local)
        self.assertEqual([], [k for k in keys if k[len(snap0):].startswith(".")])
        # a backup: chunks and metadata where PBS puts them
        self.backup("s3a", "h1", 1700000000, chunks)
        keys = list_keys("s3a/")
        for c in chunks:
            self.assertEqual(len(c.blob), keys.get("s3a/.chunks/%s/%s" % (c.digest[:4],
                                                                         c.digest)), c.digest)
        snap = "s3a/.cnt/host/h1/2023-11-14T22:13:20Z/"
        for f in ("index.json.blob", "root.pxar.didx", "client.log.blob"):
            self.assertIn(snap + f, keys)
        self.assertIn("s3a/.cnt/host/h1/owner", keys)
        # the manifest in the bucket is the final one (with upload statistics)
        m = s3().get_object(Bucket=BUCKET, Key=snap + "index.json.blob")["Body"].read()
        self.assertIn("chunk_upload_stats", json.dumps(pp.parse_manifest(m)))

    def test_b_restore_after_cache_wipe_and_eviction(self):
        srv = self.srv
        self.assertOk(self.make_store("s3b", extra={"max-cache-size": "100KiB"}), "create")
        chunks = self.chunks(2, 30)
        data = b"".join(c.data for c in chunks)
        self.backup("s3b", "h1", 1700000000, chunks)
        ds = srv.datastore_path("s3b")
        sizes = [os.path.getsize(os.path.join(ds, ".chunks", c.digest[:4], c.digest))
                 for c in chunks]
        full = [s for s in sizes if s > 0]
        self.assertLessEqual(sum(full), 100 * 1024, "cache bound")
        self.assertGreater(len(sizes) - len(full), 0, "evicted chunks are 0-byte markers")
        self.assertEqual(data, self.restore("s3b", "h1", 1700000000))
        # lose the cache completely
        wipe_cache(ds)
        self.assertEqual(data, self.restore("s3b", "h1", 1700000000))
        # an incremental backup after the wipe: uploads find the objects (412)
        more = self.chunks(3, 5)
        _, up = self.backup("s3b", "h1", 1700000100, chunks + more)
        self.assertEqual(35, up)
        self.assertEqual(data + b"".join(c.data for c in more),
                         self.restore("s3b", "h1", 1700000100))

    def test_c0_file_download_after_cache_wipe(self):
        """admin/datastore/{store}/file-download (issue 19) reads chunks the
        cache lost from the bucket."""
        import base64
        srv = self.srv
        self.assertOk(self.make_store("s3dl"), "create")
        src = tempfile.mkdtemp(prefix="cairn-s3dl-")
        self.addCleanup(shutil.rmtree, src, True)
        os.makedirs(os.path.join(src, "d"))
        data = random.Random(19).randbytes(3 << 20)
        with open(os.path.join(src, "d", "big.bin"), "wb") as f:
            f.write(data)
        with open(os.path.join(src, "d", "small.txt"), "wb") as f:
            f.write(b"small\n")
        # sparse: data first, holes between blocks, data unaligned at the end
        holes = random.Random(20).randbytes((64 << 10) + (100 << 10) + 5000)
        with open(os.path.join(src, "d", "holes.img"), "wb") as f:
            f.write(holes[:64 << 10])
            f.seek(1 << 20)
            f.write(holes[64 << 10:164 << 10])
            f.seek((3 << 20) + 8192)
            f.write(holes[164 << 10:])
        with open(os.path.join(src, "d", "holes.img"), "rb") as f:
            holes = f.read()
        authid, secret = srv.token.rsplit(":", 1)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("CAIRN_") or k == "CAIRN_BIN_DIR"}
        env.update({"CAIRN_REPOSITORY": "%s@127.0.0.1:%d:s3dl" % (authid, srv.port),
                    "CAIRN_SECRET": secret, "CAIRN_PLAIN_HTTP": "1"})
        subprocess.run([ch.binary("cairn"), "backup", "root.didx:" + src, "--backup-id", "dl",
                        "--backup-time", "1700000000"], env=env, check=True,
                       capture_output=True)
        wipe_cache(srv.datastore_path("s3dl"))
        q = {"backup-type": "host", "backup-id": "dl", "backup-time": "1700000000",
             "archive-name": "root.didx"}
        r = srv.get(API + "/admin/datastore/s3dl/file-download", params=dict(
            q, filepath=base64.b64encode(b"/d/big.bin").decode()))
        self.assertEqual(200, r.status, r)
        self.assertEqual(data, r.raw)
        # a sparse file's map is read from the bucket too; holes come as zeros
        wipe_cache(srv.datastore_path("s3dl"))
        r = srv.get(API + "/admin/datastore/s3dl/file-download", params=dict(
            q, filepath=base64.b64encode(b"/d/holes.img").decode()))
        self.assertEqual(200, r.status, r)
        self.assertTrue(holes == r.raw, "holes.img differs")
        r = srv.get(API + "/admin/datastore/s3dl/file-download", params=dict(
            q, filepath=base64.b64encode(b"/d").decode()))
        self.assertEqual(200, r.status, r)
        names = subprocess.run(["tar", "tf", "-"], input=r.raw, capture_output=True,
                               check=True).stdout.decode().split()
        self.assertEqual({"d/", "d/big.bin", "d/small.txt", "d/holes.img"}, set(names))

    def test_c1_catalog_index_after_cache_wipe(self):
        """The catalog and file-download endpoints read a catalog index
        (NAME.catalog.didx) whose chunks the cache lost: fetched from the
        bucket on the loop, then read again in the pool."""
        import base64
        srv = self.srv
        self.assertOk(self.make_store("s3ci"), "create")
        src = tempfile.mkdtemp(prefix="cairn-s3ci-")
        self.addCleanup(shutil.rmtree, src, True)
        os.makedirs(os.path.join(src, "d"))
        for i in range(2000):
            open(os.path.join(src, "d", "f%05d.txt" % i), "wb").close()
        with open(os.path.join(src, "d", "small.txt"), "wb") as f:
            f.write(b"small\n")
        authid, secret = srv.token.rsplit(":", 1)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("CAIRN_") or k == "CAIRN_BIN_DIR"}
        env.update({"CAIRN_REPOSITORY": "%s@127.0.0.1:%d:s3ci" % (authid, srv.port),
                    "CAIRN_SECRET": secret, "CAIRN_PLAIN_HTTP": "1",
                    "CAIRN_CATALOG_INDEX_MIN": "1"})
        subprocess.run([ch.binary("cairn"), "backup", "root.didx:" + src, "--backup-id", "ci",
                        "--backup-time", "1700000000"], env=env, check=True,
                       capture_output=True)
        wipe_cache(srv.datastore_path("s3ci"))
        q = {"backup-type": "host", "backup-id": "ci", "backup-time": "1700000000",
             "archive-name": "root.didx"}
        st, _, body = srv.get(API + "/admin/datastore/s3ci/catalog", params=dict(
            q, filepath=base64.b64encode(b"/d").decode()))
        self.assertEqual(200, st, body)
        self.assertEqual(2001, len(body["data"]))
        wipe_cache(srv.datastore_path("s3ci"))
        r = srv.get(API + "/admin/datastore/s3ci/file-download", params=dict(
            q, filepath=base64.b64encode(b"/d/small.txt").decode()))
        self.assertEqual(200, r.status, r)
        self.assertEqual(b"small\n", r.raw)

    def test_c_no_cache(self):
        srv = self.srv
        self.assertOk(self.make_store("s3c"), "create")
        chunks = self.chunks(4, 6)
        self.backup("s3c", "h1", 1700000000, chunks, params={"no-cache": "1"})
        ds = srv.datastore_path("s3c")
        for c in chunks:
            self.assertEqual(0, os.path.getsize(os.path.join(ds, ".chunks", c.digest[:4],
                                                             c.digest)))
        self.assertEqual(b"".join(c.data for c in chunks),
                         self.restore("s3c", "h1", 1700000000))

    def test_c2_deletes_follow_in_bucket(self):
        """Protecting, unprotecting and deleting a snapshot and a group through
        the API change the bucket's .cnt/ copy too, so a refresh cannot bring
        back what was deleted."""
        srv = self.srv
        self.assertOk(self.make_store("s3del"), "create")
        self.backup("s3del", "h1", 1700000000, self.chunks(5, 2))
        self.backup("s3del", "h2", 1700000000, self.chunks(6, 2))
        snap = "s3del/.cnt/host/h1/2023-11-14T22:13:20Z/"
        sel = {"backup-type": "host", "backup-id": "h1", "backup-time": 1700000000}
        self.assertOk(srv.put(API + "/admin/datastore/s3del/protected",
                              params=dict(sel, protected="true")))
        self.assertIn(snap + ".protected", list_keys(snap))
        self.assertOk(srv.put(API + "/admin/datastore/s3del/protected",
                              params=dict(sel, protected="false")))
        self.assertNotIn(snap + ".protected", list_keys(snap))
        self.assertIn(snap + "index.json.blob", list_keys(snap))
        self.assertOk(srv.delete(API + "/admin/datastore/s3del/snapshots", params=sel))
        self.assertEqual({}, list_keys(snap))
        self.assertOk(srv.delete(API + "/admin/datastore/s3del/groups",
                                 params={"backup-type": "host", "backup-id": "h2"}))
        self.assertEqual({}, list_keys("s3del/.cnt/host/h2/"))
        # Prune: the older of two snapshots goes from the bucket as well.
        self.backup("s3del", "h3", 1700000000, self.chunks(7, 2))
        self.backup("s3del", "h3", 1700000100, self.chunks(8, 2))
        self.assertOk(srv.post(API + "/admin/datastore/s3del/prune",
                               params={"backup-type": "host", "backup-id": "h3",
                                       "keep-last": "1"}))
        deadline = time.monotonic() + 10
        old = "s3del/.cnt/host/h3/2023-11-14T22:13:20Z/"
        while list_keys(old) and time.monotonic() < deadline:
            time.sleep(0.1)  # the bucket copy is removed in the background
        self.assertEqual({}, list_keys(old))
        self.assertIn("s3del/.cnt/host/h3/2023-11-14T22:15:00Z/index.json.blob",
                      list_keys("s3del/.cnt/host/h3/"))

    def test_c3_verify_reads_evicted_chunks_from_the_bucket(self):
        """Verify checks chunks that are only markers (or absent) locally from
        the bucket, and never takes a marker for a corrupt chunk."""
        srv = self.srv
        self.assertOk(self.make_store("s3ver"), "create")
        chunks = self.chunks(9, 4)
        self.backup("s3ver", "h1", 1700000000, chunks)
        ds = srv.datastore_path("s3ver")
        # Half the cache becomes 0-byte markers, the other half goes entirely.
        for i, c in enumerate(chunks):
            path = os.path.join(ds, ".chunks", c.digest[:4], c.digest)
            if i % 2:
                os.truncate(path, 0)
            else:
                os.unlink(path)
        upid = self.start_task("s3ver", "verify")
        st = self.wait_task(upid)
        log = self.task_log(upid)
        self.assertEqual("OK", st.get("exitstatus"), log)
        bad = [n for _, _, files in os.walk(os.path.join(ds, ".chunks")) for n in files
               if n.endswith(".bad")]
        self.assertEqual([], bad, log)

    def test_d_refresh_onto_empty_directory(self):
        srv = self.srv
        self.assertOk(self.make_store("s3d"), "create")
        c1, c2 = self.chunks(5, 8), self.chunks(6, 8)
        self.backup("s3d", "h1", 1700000000, c1)
        r = srv.post(API + "/admin/datastore/s3d/namespace", params={"name": "team"})
        ns_ok = r.status == 200
        b = pp.BackupSession(srv, "s3d", "vm", "100", 1700000500, ns="team" if ns_ok else None)
        self.open_session(b)
        b.upload_dynamic("root.pxar.didx", c2)
        b.upload_manifest()
        b.finish()
        # a new server directory: config gone, local disk gone
        self.assertOk(srv.delete(API + "/config/datastore/s3d"), "remove config")
        fresh = os.path.join(srv.data_dir, "s3d-new")
        r = self.make_store("s3d", path=fresh)
        self.assertError(r, 409, mentions="in use")
        self.assertOk(self.make_store("s3d", path=fresh, extra={"overwrite-in-use": "1"}))
        groups = self.assertOk(srv.get(API + "/admin/datastore/s3d/groups"))
        self.assertEqual([], groups)
        upid = self.start_task("s3d", "s3-refresh", method="PUT")
        st = self.wait_task(upid)
        log = self.task_log(upid)
        self.assertEqual("OK", st.get("exitstatus"), log)
        snaps = self.assertOk(srv.get(API + "/admin/datastore/s3d/snapshots"))
        self.assertEqual([1700000000], [s["backup-time"] for s in snaps])
        self.assertEqual(b"".join(c.data for c in c1), self.restore("s3d", "h1", 1700000000))
        if ns_ok:
            snaps = self.assertOk(srv.get(API + "/admin/datastore/s3d/snapshots",
                                          params={"ns": "team"}))
            self.assertEqual(1, len(snaps))
        # the maintenance mode is gone again
        with open(os.path.join(srv.config_dir, "datastore.cfg")) as f:
            self.assertNotIn("s3-refresh", f.read())

    def test_e_gc_minimum_requests(self):
        srv = self.srv
        self.assertOk(self.make_store("s3e"), "create")
        keep = self.chunks(7, 20)
        self.backup("s3e", "h1", 1700000000, keep)
        # 2,500 unreferenced objects nobody has a marker for
        cl = s3()
        blob = pp.blob_encode(b"x")
        junk = ["s3e/.chunks/%s/%s" % (h[:4], h) for h in
                (hashlib.sha256(b"junk%d" % i).hexdigest() for i in range(2500))]
        with_threads(lambda k: cl.put_object(Bucket=BUCKET, Key=k, Body=blob), junk, 16)
        before = len(list_keys("s3e/.chunks/"))
        st, log = self.gc("s3e")
        self.assertRegex(log, r"objects listed %d\b" % before)
        self.assertRegex(log, r"deleted 2500\b")
        lists = -(-before // 1000)
        self.assertRegex(log, r"list requests (%d|%d), delete requests 3 " % (lists, lists + 1))
        left = list_keys("s3e/.chunks/")
        self.assertEqual(before - 2500, len(left))
        for c in keep:
            self.assertIn("s3e/.chunks/%s/%s" % (c.digest[:4], c.digest), left)
        self.assertEqual(b"".join(c.data for c in keep), self.restore("s3e", "h1", 1700000000))
        # unreferenced after a forget: old markers go, objects go
        self.assertOk(srv.delete(API + "/admin/datastore/s3e/snapshots",
                                 params={"backup-type": "host", "backup-id": "h1",
                                         "backup-time": "1700000000"}))
        age_cache(srv.datastore_path("s3e"), 3600)
        st, log = self.gc("s3e")
        left = list_keys("s3e/.chunks/")
        for c in keep:
            self.assertNotIn("s3e/.chunks/%s/%s" % (c.digest[:4], c.digest), left)


    def test_f_gc_on_a_full_cache_disk(self):
        """GC of an S3 datastore whose local cache file system is full: the
        zero chunk reaches the bucket but has no room in the cache, so the
        atime check measures a cached chunk instead, and GC frees space."""
        import test_gc_full_disk as fd
        srv = self.srv
        mnt = os.path.join(srv.root, "s3full-mnt")
        os.mkdir(mnt)
        fd.mount_tmpfs(mnt, "size=4m,nr_inodes=1024,mode=0755")
        try:
            ds = os.path.join(mnt, "ds")
            # the atime safety check on (the default), cutoff 1 minute
            self.assertOk(self.make_store("s3full", path=ds,
                                          extra={"tuning": "gc-atime-cutoff=1"}), "create")
            old, kept = self.chunks(11, 10), self.chunks(12, 4)
            self.backup("s3full", "h1", 1700000000, old)
            self.backup("s3full", "h2", 1700000060, kept)
            self.assertOk(srv.delete(API + "/admin/datastore/s3full/snapshots",
                                     params={"backup-type": "host", "backup-id": "h1",
                                             "backup-time": "1700000000"}))
            age_cache(ds, 3600)
            fd.fill(mnt)
            self.assertEqual(0, os.statvfs(mnt).f_bavail)
            st, log = self.gc("s3full")
            m = re.search(r"cannot cache the zero chunk locally \(no space left on device\): "
                          r"checking access time updates on chunk ([0-9a-f]{64}) instead", log)
            self.assertIsNotNone(m, log)
            self.assertIn("Access time update check successful", log)
            left = list_keys("s3full/.chunks/")
            for c in kept:
                self.assertIn("s3full/.chunks/%s/%s" % (c.digest[:4], c.digest), left)
            for c in old:
                if c.digest != m.group(1):
                    self.assertNotIn("s3full/.chunks/%s/%s" % (c.digest[:4], c.digest), left)
            self.assertGreater(os.statvfs(mnt).f_bavail, 0)
            with open(os.path.join(ds, ".gc-status")) as f:
                self.assertEqual(st["upid"], json.load(f)["upid"])
            self.assertEqual(b"".join(c.data for c in kept),
                             self.restore("s3full", "h2", 1700000060))
        finally:
            fd.umount(mnt)  # lazily: the server keeps the datastore open


class Moves(S3Case):
    """Issue #15 on an S3 datastore: a group move and a namespace move copy
    the .cnt/ objects to the new keys and delete the old ones; restores,
    verify, GC and an S3 refresh onto an empty directory agree afterwards."""

    def move(self, store, what, params):
        r = self.srv.post("%s/admin/datastore/%s/%s" % (API, store, what), params=params)
        upid = self.assertOk(r, what)
        st = self.wait_task(upid)
        self.assertEqual("OK", st.get("exitstatus"), self.task_log(upid))
        return self.task_log(upid)

    def test_moves_in_the_bucket(self):
        srv = self.srv
        self.assertOk(self.make_store("s3mv"), "create")
        c1, c2 = self.chunks(21, 3), self.chunks(22, 3)
        self.backup("s3mv", "m1", 1700000000, c1)
        self.backup("s3mv", "m1", 1700000100, c2)
        self.assertOk(srv.post(API + "/admin/datastore/s3mv/namespace",
                               params={"name": "team"}))
        self.move("s3mv", "move-group", {"backup-type": "host", "backup-id": "m1",
                                         "target-ns": "team"})
        self.assertEqual({}, list_keys("s3mv/.cnt/host/m1/"))
        new = list_keys("s3mv/.cnt/ns/team/host/m1/")
        for t in ("2023-11-14T22:13:20Z", "2023-11-14T22:15:00Z"):
            self.assertIn("s3mv/.cnt/ns/team/host/m1/%s/index.json.blob" % t, new)
            self.assertIn("s3mv/.cnt/ns/team/host/m1/%s/root.pxar.didx" % t, new)
        self.assertIn("s3mv/.cnt/ns/team/host/m1/owner", new)
        r = self.open_session(pp.ReaderSession(srv, "s3mv", "host", "m1", 1700000100,
                                               ns="team"))
        _, data = r.restore_index("root.pxar.didx")
        r.close()
        self.assertEqual(b"".join(c.data for c in c2), data)
        # A merge: the target's owner stays, the source's keys go.
        self.backup("s3mv", "m1", 1700000200, self.chunks(23, 2))
        self.move("s3mv", "move-group", {"backup-type": "host", "backup-id": "m1",
                                         "target-ns": "team"})
        self.assertEqual({}, list_keys("s3mv/.cnt/host/m1/"))
        self.assertIn("s3mv/.cnt/ns/team/host/m1/2023-11-14T22:16:40Z/index.json.blob",
                      list_keys("s3mv/.cnt/ns/team/host/m1/"))
        # A refused merge (not newer than the target's newest) changes nothing.
        self.backup("s3mv", "m1", 1700000050, self.chunks(24, 1))
        r = srv.post(API + "/admin/datastore/s3mv/move-group",
                     params={"backup-type": "host", "backup-id": "m1", "target-ns": "team"})
        self.assertError(r, 400, mentions="older")
        self.assertIn("s3mv/.cnt/host/m1/2023-11-14T22:14:10Z/index.json.blob",
                      list_keys("s3mv/.cnt/host/m1/"))
        self.assertOk(srv.delete(API + "/admin/datastore/s3mv/groups",
                                 params={"backup-type": "host", "backup-id": "m1"}))
        # The namespace moves: its marker and its groups' keys follow.
        self.move("s3mv", "move-namespace", {"ns": "team", "target-ns": "crew"})
        self.assertEqual({}, list_keys("s3mv/.cnt/ns/team/"))
        self.assertIn("s3mv/.cnt/ns/crew/.namespace", list_keys("s3mv/.cnt/ns/crew/"))
        self.assertIn("s3mv/.cnt/ns/crew/host/m1/2023-11-14T22:13:20Z/index.json.blob",
                      list_keys("s3mv/.cnt/ns/crew/host/m1/"))
        self.gc("s3mv")
        upid = self.start_task("s3mv", "verify")
        st = self.wait_task(upid)
        self.assertEqual("OK", st.get("exitstatus"), self.task_log(upid))
        # A refresh onto an empty directory finds the group in its new place only.
        self.assertOk(srv.delete(API + "/config/datastore/s3mv"), "remove config")
        fresh = os.path.join(srv.data_dir, "s3mv-new")
        self.assertOk(self.make_store("s3mv", path=fresh, extra={"overwrite-in-use": "1"}))
        upid = self.start_task("s3mv", "s3-refresh", method="PUT")
        st = self.wait_task(upid)
        self.assertEqual("OK", st.get("exitstatus"), self.task_log(upid))
        self.assertEqual([], self.assertOk(srv.get(API + "/admin/datastore/s3mv/snapshots")))
        snaps = self.assertOk(srv.get(API + "/admin/datastore/s3mv/snapshots",
                                      params={"ns": "crew"}))
        self.assertEqual([1700000000, 1700000100, 1700000200],
                         sorted(s["backup-time"] for s in snaps))
        r = self.open_session(pp.ReaderSession(srv, "s3mv", "host", "m1", 1700000000,
                                               ns="crew"))
        _, data = r.restore_index("root.pxar.didx")
        r.close()
        self.assertEqual(b"".join(c.data for c in c1), data)


    def test_admin_moves_in_the_bucket(self):
        """`cairn-admin group move` / `namespace move` beside the running
        server: the same keys move as with the tasks, and the server's
        locks are respected."""
        srv = self.srv
        self.assertOk(self.make_store("s3ad"), "create")
        c1 = self.chunks(25, 2)
        self.backup("s3ad", "a1", 1700000000, c1)
        self.assertOk(srv.post(API + "/admin/datastore/s3ad/namespace", params={"name": "ta"}))
        # A reader holds the snapshot: the move is refused, nothing changes.
        r = self.open_session(pp.ReaderSession(srv, "s3ad", "host", "a1", 1700000000))
        p = self.srv.admin("group", "move", "s3ad", "host/a1", "--target-ns", "ta")
        r.close()
        self.assertEqual(1, p.returncode, p.stdout + p.stderr)
        self.assertIn("in use", p.stderr)
        self.assertIn("s3ad/.cnt/host/a1/2023-11-14T22:13:20Z/index.json.blob",
                      list_keys("s3ad/.cnt/host/a1/"))
        p = self.srv.admin("group", "move", "s3ad", "host/a1", "--target-ns", "ta")
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        self.assertEqual({}, list_keys("s3ad/.cnt/host/a1/"))
        self.assertIn("s3ad/.cnt/ns/ta/host/a1/2023-11-14T22:13:20Z/index.json.blob",
                      list_keys("s3ad/.cnt/ns/ta/host/a1/"))
        p = self.srv.admin("namespace", "move", "s3ad", "ta", "--target-ns", "tb")
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        self.assertEqual({}, list_keys("s3ad/.cnt/ns/ta/"))
        new = list_keys("s3ad/.cnt/ns/tb/")
        self.assertIn("s3ad/.cnt/ns/tb/.namespace", new)
        self.assertIn("s3ad/.cnt/ns/tb/host/a1/owner", new)
        with open(os.path.join(srv.datastore_path("s3ad"), ".move-s3-pending")) as f:
            self.assertEqual("", f.read())  # every record of the moves is gone
        wipe_cache(srv.datastore_path("s3ad"))
        r = self.open_session(pp.ReaderSession(srv, "s3ad", "host", "a1", 1700000000, ns="tb"))
        _, data = r.restore_index("root.pxar.didx")
        r.close()
        self.assertEqual(b"".join(c.data for c in c1), data)


class MovesCrash(S3Case):
    """kill -9 of cairnd in the middle of an S3 move (test pause points,
    core_testpoint.h): after the copies (before the local rename) and after
    the rename (before the old keys are deleted). The leftovers are cleaned
    up by the next GC or move, and a refresh finds every snapshot in exactly
    one place."""

    POINTS = ("move-s3-copied", "move-renamed", "gc-listed", "move-ns-removed")

    @classmethod
    def setUpClass(cls):
        cls.pause_dir = tempfile.mkdtemp(prefix="cairn-pause-")
        cls.addClassCleanup(shutil.rmtree, cls.pause_dir, True)
        for p in cls.POINTS:
            open(os.path.join(cls.pause_dir, p + ".go"), "w").close()
        cls.env = {"CAIRN_TEST_PAUSE_POINTS": ",".join(cls.POINTS),
                   "CAIRN_TEST_PAUSE_DIR": cls.pause_dir}
        super().setUpClass()

    def kill_at(self, point, params, what="s3k/move-group"):
        os.unlink(os.path.join(self.pause_dir, point + ".go"))
        r = self.srv.post(API + "/admin/datastore/" + what, params=params)
        self.assertOk(r, what)
        parked = os.path.join(self.pause_dir, point + ".parked")
        deadline = time.monotonic() + 60
        while not os.path.exists(parked):
            self.assertLess(time.monotonic(), deadline, "nothing parked at " + point)
            time.sleep(0.01)
        self.srv.kill9()
        os.unlink(parked)
        open(os.path.join(self.pause_dir, point + ".go"), "w").close()
        self.srv.restart()

    def test_gc_between_listing_and_marking(self):
        """S3 GC parked after its listing while a group moves into a place
        the listing never saw: the move journal's replay keeps its chunks in
        the bucket (restored with the cache wiped), and so does a second GC."""
        srv = self.srv
        self.assertOk(self.make_store("s3mg"), "create")
        ds = srv.datastore_path("s3mg")
        self.assertOk(srv.post(API + "/admin/datastore/s3mg/namespace", params={"name": "gz"}))
        c = self.chunks(41, 3)
        b = self.open_session(pp.BackupSession(srv, "s3mg", "host", "g1", 1700000000, ns="gz"))
        b.upload_dynamic("root.pxar.didx", c)
        b.upload_manifest()
        b.finish()
        age_cache(ds, 2 * 86400)
        go = os.path.join(self.pause_dir, "gc-listed.go")
        os.unlink(go)
        upid = self.start_task("s3mg", "gc")
        parked = os.path.join(self.pause_dir, "gc-listed.parked")
        deadline = time.monotonic() + 60
        while not os.path.exists(parked):
            self.assertLess(time.monotonic(), deadline, "GC did not park")
            time.sleep(0.01)
        r = srv.post(API + "/admin/datastore/s3mg/move-group",
                     params={"ns": "gz", "backup-type": "host", "backup-id": "g1",
                             "target-ns": ""})
        self.assertEqual("OK", self.wait_task(self.assertOk(r)).get("exitstatus"))
        open(go, "w").close()
        st = self.wait_task(upid)
        log = self.task_log(upid)
        self.assertEqual("OK", st.get("exitstatus"), log)
        self.assertIn("moves put elsewhere", log)
        wipe_cache(ds)
        self.assertEqual(b"".join(x.data for x in c), self.restore("s3mg", "g1", 1700000000))
        age_cache(ds, 2 * 86400)
        self.gc("s3mg")
        wipe_cache(ds)
        self.assertEqual(b"".join(x.data for x in c), self.restore("s3mg", "g1", 1700000000))

    def snaps(self, ns):
        r = self.srv.get(API + "/admin/datastore/s3k/snapshots", params={"ns": ns} if ns else None)
        return sorted((x["backup-id"], x["backup-time"]) for x in self.assertOk(r))

    def test_kill_mid_move_and_clean_up(self):
        srv = self.srv
        self.assertOk(self.make_store("s3k"), "create")
        c1, c2 = self.chunks(31, 2), self.chunks(32, 2)
        self.backup("s3k", "k1", 1700000000, c1)
        self.backup("s3k", "k2", 1700000000, c2)
        self.assertOk(srv.post(API + "/admin/datastore/s3k/namespace", params={"name": "kt"}))
        old1, new1 = "s3k/.cnt/host/k1/", "s3k/.cnt/ns/kt/host/k1/"
        old2, new2 = "s3k/.cnt/host/k2/", "s3k/.cnt/ns/kt/host/k2/"
        # 1. Killed after the copies: a complete copy at the new keys, the
        # group still in its old place; GC removes the copy.
        self.kill_at("move-s3-copied", {"backup-type": "host", "backup-id": "k1",
                                        "target-ns": "kt"})
        self.assertIn(new1 + "2023-11-14T22:13:20Z/index.json.blob", list_keys(new1))
        self.assertEqual([("k1", 1700000000), ("k2", 1700000000)], self.snaps(""))
        self.gc("s3k")
        self.assertEqual({}, list_keys(new1))
        self.assertIn(old1 + "2023-11-14T22:13:20Z/index.json.blob", list_keys(old1))
        self.assertEqual(b"".join(c.data for c in c1), self.restore("s3k", "k1", 1700000000))
        # 2. Killed after the rename: the old keys stay; the next move (of
        # another group) removes them.
        self.kill_at("move-renamed", {"backup-type": "host", "backup-id": "k2",
                                      "target-ns": "kt"})
        self.assertEqual([("k2", 1700000000)], self.snaps("kt"))
        self.assertIn(old2 + "2023-11-14T22:13:20Z/index.json.blob", list_keys(old2))
        r = srv.post(API + "/admin/datastore/s3k/move-group",
                     params={"backup-type": "host", "backup-id": "k1", "target-ns": "kt"})
        st = self.wait_task(self.assertOk(r))
        self.assertEqual("OK", st.get("exitstatus"))
        self.assertEqual({}, list_keys(old2))
        self.assertEqual({}, list_keys(old1))
        self.assertIn(new2 + "2023-11-14T22:13:20Z/index.json.blob", list_keys(new2))
        # 3. A refresh onto an empty directory: each snapshot once, in kt.
        self.assertOk(srv.delete(API + "/config/datastore/s3k"), "remove config")
        fresh = os.path.join(srv.data_dir, "s3k-new")
        self.assertOk(self.make_store("s3k", path=fresh, extra={"overwrite-in-use": "1"}))
        upid = self.start_task("s3k", "s3-refresh", method="PUT")
        self.assertEqual("OK", self.wait_task(upid).get("exitstatus"), self.task_log(upid))
        self.assertEqual([], self.snaps(""))
        self.assertEqual([("k1", 1700000000), ("k2", 1700000000)], self.snaps("kt"))
        r = self.open_session(pp.ReaderSession(srv, "s3k", "host", "k2", 1700000000, ns="kt"))
        _, data = r.restore_index("root.pxar.didx")
        r.close()
        self.assertEqual(b"".join(c.data for c in c2), data)


    def test_kill_mid_namespace_move(self):
        """Killed after the emptied source namespace went locally, before its
        `.namespace` marker was deleted: the next GC removes the stray
        marker (a refresh would otherwise bring the namespace back)."""
        srv = self.srv
        self.assertOk(self.make_store("s3n"), "create")
        self.assertOk(srv.post(API + "/admin/datastore/s3n/namespace", params={"name": "na"}))
        self.assertOk(srv.post(API + "/admin/datastore/s3n/namespace",
                               params={"name": "sub", "parent": "na"}))
        b = self.open_session(pp.BackupSession(srv, "s3n", "host", "n1", 1700000000,
                                               ns="na/sub"))
        b.upload_dynamic("root.pxar.didx", self.chunks(51, 1))
        b.upload_manifest()
        b.finish()
        self.kill_at("move-ns-removed", {"ns": "na", "target-ns": "nb"},
                     what="s3n/move-namespace")
        self.assertEqual(["s3n/.cnt/ns/na/.namespace", "s3n/.cnt/ns/na/ns/sub/.namespace"],
                         sorted(list_keys("s3n/.cnt/ns/na/")))
        self.assertIn("s3n/.cnt/ns/nb/ns/sub/.namespace", list_keys("s3n/.cnt/ns/nb/"))
        self.gc("s3n")
        self.assertEqual({}, list_keys("s3n/.cnt/ns/na/"))
        new = list_keys("s3n/.cnt/ns/nb/")
        self.assertIn("s3n/.cnt/ns/nb/.namespace", new)
        self.assertIn("s3n/.cnt/ns/nb/ns/sub/host/n1/2023-11-14T22:13:20Z/index.json.blob", new)
        names = [x["ns"] for x in self.assertOk(srv.get(API + "/admin/datastore/s3n/namespace"))]
        self.assertIn("nb/sub", names)
        self.assertNotIn("na", names)


class CacheRestart(S3Case):
    def test_bound_holds_across_restart(self):
        """A restart learns what the cache holds and evicts down to a bound
        that shrank meanwhile."""
        srv = self.srv
        self.assertOk(self.make_store("s3h"), "create")
        chunks = self.chunks(11, 30)
        self.backup("s3h", "h1", 1700000000, chunks)
        ds = srv.datastore_path("s3h")

        def full_bytes():
            n = 0
            for c in chunks:
                n += os.path.getsize(os.path.join(ds, ".chunks", c.digest[:4], c.digest))
            return n
        self.assertGreater(full_bytes(), 500 * 1024)
        self.assertOk(srv.put(API + "/config/datastore/s3h",
                              params={"max-cache-size": "100KiB"}))
        srv.restart()
        self.assertTrue(self.poll(lambda: full_bytes() <= 100 * 1024, timeout=10),
                        "cache not evicted to its bound after a restart: %d" % full_bytes())
        self.assertEqual(b"".join(c.data for c in chunks), self.restore("s3h", "h1", 1700000000))


class Restarts(S3Case):
    """kill -9 in the middle of an upload (after S3's answer, before the cache
    insert) and in the middle of GC phase 2: the bucket and the cache stay
    consistent, referenced chunks survive, strays go with a later GC."""

    @classmethod
    def setUpClass(cls):
        cls.pause = tempfile.mktemp(prefix="cairn-s3-pause-")
        cls.env = {"CAIRN_TEST_S3_PAUSE": cls.pause}
        super().setUpClass()

    def test_kill_mid_upload_and_mid_gc(self):
        srv = self.srv
        self.assertOk(self.make_store("s3r"), "create")
        keep = self.chunks(12, 10)
        self.backup("s3r", "h1", 1700000000, keep)
        stray = self.chunks(13, 1)[0]
        stray_key = "s3r/.chunks/%s/%s" % (stray.digest[:4], stray.digest)
        open(self.pause, "w").close()
        b = self.open_session(pp.BackupSession(srv, "s3r", "host", "h2", 1700000100))
        wid = b.dynamic_index("root.pxar.didx")
        t = threading.Thread(target=lambda: self._swallow(
            lambda: b.chunk_raw(wid, stray.digest, stray.size, stray.blob, conn=b.connection())))
        t.start()
        self.assertTrue(self.poll(lambda: os.path.exists(self.pause + ".reached"), timeout=20),
                        "upload did not pause" + self.log_tail())
        srv.kill9()
        t.join(10)
        os.unlink(self.pause)
        os.unlink(self.pause + ".reached")
        srv.restart()
        self.assertIn(stray_key, list_keys("s3r/"))
        ds = srv.datastore_path("s3r")
        self.assertFalse(os.path.exists(os.path.join(ds, ".chunks", stray.digest[:4],
                                                     stray.digest)))
        # GC killed in phase 2, with enough garbage to be caught there
        cl = s3()
        blob = pp.blob_encode(b"y")
        junk = ["s3r/.chunks/%s/%s" % (h[:4], h) for h in
                (hashlib.sha256(b"junk-r%d" % i).hexdigest() for i in range(2500))]
        with_threads(lambda k: cl.put_object(Bucket=BUCKET, Key=k, Body=blob), junk, 16)
        upid = self.start_task("s3r", "gc")
        self.assertTrue(self.poll(lambda: "phase2" in self.task_log(upid), timeout=30),
                        "GC did not reach phase 2")
        time.sleep(0.2)
        srv.kill9()
        srv.restart()
        st, log = self.gc("s3r")
        left = list_keys("s3r/.chunks/")
        self.assertNotIn(stray_key, left)
        self.assertEqual([], [k for k in junk if k in left])
        for c in keep:
            self.assertIn("s3r/.chunks/%s/%s" % (c.digest[:4], c.digest), left)
        wipe_cache(ds)
        self.assertEqual(b"".join(c.data for c in keep), self.restore("s3r", "h1", 1700000000))
        snaps = self.assertOk(srv.get(API + "/admin/datastore/s3r/snapshots"))
        self.assertEqual([1700000000], [s["backup-time"] for s in snaps])

    @staticmethod
    def _swallow(fn):
        try:
            fn()
        except Exception:  # noqa: BLE001  the server dies under it
            pass


def with_threads(fn, items, n):
    items = list(items)
    errs = []

    def work(part):
        try:
            for x in part:
                fn(x)
        except Exception as e:  # noqa: BLE001
            errs.append(e)
    ts = [threading.Thread(target=work, args=(items[i::n],)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errs:
        raise errs[0]


class Race(S3Case):
    """PBS patch 2: an upload that S3 accepted but the cache has not yet got
    must be visible to GC. The pause hook holds uploads between the S3 answer
    and the cache insert while the file exists."""

    claims = True

    @classmethod
    def setUpClass(cls):
        cls.pause = tempfile.mktemp(prefix="cairn-s3-pause-")
        cls.env = {"CAIRN_TEST_S3_PAUSE": cls.pause}
        if not cls.claims:
            cls.env["CAIRN_TEST_S3_NO_CLAIMS"] = "1"
        super().setUpClass()

    def run_race(self, store):
        srv = self.srv
        self.assertOk(self.make_store(store), "create")
        chunk = self.chunks(8, 1)[0]
        reached = self.pause + ".reached"
        for p in (self.pause, reached):
            if os.path.exists(p):
                os.unlink(p)
        open(self.pause, "w").close()
        b = self.open_session(pp.BackupSession(srv, store, "host", "race", 1700000000))
        wid = b.dynamic_index("root.pxar.didx")
        result = {}

        def upload():
            try:
                result["r"] = b.chunk_raw(wid, chunk.digest, chunk.size, chunk.blob,
                                          conn=b.connection())
            except Exception as e:  # noqa: BLE001
                result["e"] = e
        t = threading.Thread(target=upload)
        t.start()
        self.assertTrue(self.poll(lambda: os.path.exists(reached), timeout=20),
                        "upload did not reach the pause point" + self.log_tail())
        key = "%s/.chunks/%s/%s" % (store, chunk.digest[:4], chunk.digest)
        self.assertIn(key, list_keys(store + "/"))  # in S3, not in the cache
        self.assertFalse(os.path.exists(os.path.join(srv.datastore_path(store), ".chunks",
                                                     chunk.digest[:4], chunk.digest)))
        st, log = self.gc(store)             # phase 2 runs while the upload is paused
        os.unlink(self.pause)
        t.join(30)
        os.unlink(reached)
        self.assertEqual(200, result["r"].status, result)
        b.append(wid, [chunk.digest], [0])
        b.close_index(wid, 1, chunk.size, pp.didx_csum([chunk.size], [chunk.digest]))
        b.upload_manifest()
        b.finish()
        return key, log, chunk

    def test_race(self):
        store = "race1" if self.claims else "race0"
        key, log, chunk = self.run_race(store)
        if self.claims:
            self.assertRegex(log, r"1 with an upload in flight")
            self.assertIn(key, list_keys(store + "/"))
            self.assertEqual(chunk.data, self.restore(store, "race", 1700000000))
        else:
            # The race of patch 2, reproduced: the backup finished, its chunk is gone.
            self.assertNotIn(key, list_keys(store + "/"))
            wipe_cache(self.srv.datastore_path(store))
            r = self.open_session(pp.ReaderSession(self.srv, store, "host", "race",
                                                   1700000000))
            r.download("root.pxar.didx")
            self.assertEqual(404, r.chunk_raw(chunk.digest).status)
            r.close()


class RaceWithoutClaims(Race):
    claims = False


class WriteBehind(S3Case):
    """A chunk is answered as soon as its PUT starts, while the upload runs
    (the pause hook holds it after S3's answer, before the cache insert);
    finish waits for it, so nothing is published, in the bucket or locally,
    before every chunk is in the bucket."""

    @classmethod
    def setUpClass(cls):
        cls.pause = tempfile.mktemp(prefix="cairn-s3-pause-")
        cls.env = {"CAIRN_TEST_S3_PAUSE": cls.pause}
        super().setUpClass()

    def test_chunk_answered_before_upload_ends_and_finish_waits(self):
        srv = self.srv
        self.assertOk(self.make_store("s3wb"), "create")
        chunk = self.chunks(21, 1)[0]
        reached = self.pause + ".reached"
        open(self.pause, "w").close()
        self.addCleanup(lambda: [os.unlink(p) for p in (self.pause, reached)
                                 if os.path.exists(p)])
        t0 = 1700000000
        b = self.open_session(pp.BackupSession(srv, "s3wb", "host", "wb", t0))
        wid = b.dynamic_index("root.pxar.didx")
        # Answered while the upload is held (before this change it waited).
        r = b.chunk_raw(wid, chunk.digest, chunk.size, chunk.blob)
        self.assertEqual(200, r.status, r)
        self.assertTrue(self.poll(lambda: os.path.exists(reached), timeout=20),
                        "upload did not reach the pause point" + self.log_tail())
        b.append(wid, [chunk.digest], [0])
        b.close_index(wid, 1, chunk.size, pp.didx_csum([chunk.size], [chunk.digest]))
        b.upload_manifest()
        result = {}

        def finish():
            result["r"] = b.call("POST", "finish")
        t = threading.Thread(target=finish)
        t.start()
        # A bounded wait for something that must not happen: finish cannot
        # answer while the upload is held (never flaky; it can only miss).
        t.join(1.0)
        self.assertTrue(t.is_alive(), "finish answered while a chunk upload ran: %r" % result)
        snap = os.path.join(srv.datastore_path("s3wb"), "host", "wb", "2023-11-14T22:13:20Z")
        self.assertFalse(os.path.exists(os.path.join(snap, pp.MANIFEST)))
        self.assertEqual([], [k for k in list_keys("s3wb/.cnt/") if k.endswith(pp.MANIFEST)])
        os.unlink(self.pause)
        t.join(30)
        self.assertFalse(t.is_alive())
        self.assertEqual(200, result["r"].status, result)
        self.assertIsNotNone(srv.wait_log(r"finish waits for 1 chunk uploads"), self.log_tail())
        self.assertIsNotNone(srv.wait_log(r": 1 chunks answered while their upload ran, 0 after"),
                             self.log_tail())
        self.assertTrue(os.path.exists(os.path.join(snap, pp.MANIFEST)))
        self.assertIn("s3wb/.chunks/%s/%s" % (chunk.digest[:4], chunk.digest),
                      list_keys("s3wb/"))
        wipe_cache(srv.datastore_path("s3wb"))
        self.assertEqual(chunk.data, self.restore("s3wb", "wb", t0))

    def test_abort_while_uploads_run(self):
        """DELETE of a session whose answered uploads still run: answered at
        once; the session is cleaned up when they end, nothing is published,
        and the uploaded chunk is a stray for GC like any aborted one."""
        srv = self.srv
        self.assertOk(self.make_store("s3wa"), "create")
        chunk = self.chunks(23, 1)[0]
        reached = self.pause + ".reached"
        open(self.pause, "w").close()
        self.addCleanup(lambda: [os.unlink(p) for p in (self.pause, reached)
                                 if os.path.exists(p)])
        b = self.open_session(pp.BackupSession(srv, "s3wa", "host", "wa", 1700000000))
        wid = b.dynamic_index("root.pxar.didx")
        r = b.chunk_raw(wid, chunk.digest, chunk.size, chunk.blob)
        self.assertEqual(200, r.status, r)
        self.assertTrue(self.poll(lambda: os.path.exists(reached), timeout=20),
                        "upload did not reach the pause point" + self.log_tail())
        mark = srv.log_mark()
        self.assertEqual(200, b.abort().status)
        os.unlink(self.pause)
        self.assertIsNotNone(srv.wait_log(r"aborting: aborted by the client", since=mark),
                             self.log_tail())
        # The same group is free again once the aborted session is cleaned up.
        self.backup("s3wa", "wa", 1700000100, [chunk])
        snaps = self.assertOk(srv.get(API + "/admin/datastore/s3wa/snapshots"))
        self.assertEqual([1700000100], [x["backup-time"] for x in snaps])
        self.assertEqual(chunk.data, self.restore("s3wa", "wa", 1700000100))

    def test_failed_upload_after_answer_fails_finish(self):
        """A chunk answered early whose PUT then fails (S3 refuses the
        signature: 403, final): later chunks are refused with its message,
        and finish fails with it, publishing nothing."""
        srv = self.srv
        self.assertOk(self.make_store("s3wf"), "create")
        good = {"secret-key": RGW["S3_SECRET_KEY"]}
        self.addCleanup(lambda: srv.put(API + "/config/s3/rgw", params=good))
        chunks = self.chunks(22, 400, size=2000)
        t0 = 1700000000
        b = self.open_session(pp.BackupSession(srv, "s3wf", "host", "wf", t0))
        wid = b.dynamic_index("root.pxar.didx")
        self.assertOk(srv.put(API + "/config/s3/rgw", params={"secret-key": "wrong-secret"}))
        first = chunks[0]
        r = b.chunk_raw(wid, first.digest, first.size, first.blob)
        self.assertEqual(200, r.status, r)  # answered when its PUT started
        # Each later chunk starts a PUT that fails too; one of them is refused
        # once the first failure is recorded (403 is final: no retries).
        refused = None
        deadline = time.monotonic() + 20
        for c in chunks[1:]:
            r = b.chunk_raw(wid, c.digest, c.size, c.blob)
            if r.status != 200:
                refused = r
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)  # polling for the failure; each PUT fails within ms
        self.assertIsNotNone(refused, "no chunk refused after a failed upload" + self.log_tail())
        self.assertError(refused, (500, 502, 503), "chunk after a failed upload",
                         mentions="earlier failure: s3 upload of chunk")
        # S3 is fine again: the index reaches the bucket, the manifest is in,
        # and still finish refuses, with the failed chunk's message.
        self.assertOk(srv.put(API + "/config/s3/rgw", params=good))
        b.append(wid, [first.digest], [0])
        b.close_index(wid, 1, first.size, pp.didx_csum([first.size], [first.digest]))
        b.upload_manifest()
        r = b.call("POST", "finish")
        self.assertError(r, (500, 502, 503), "finish after a failed chunk upload",
                         mentions="cannot finish: s3 upload of chunk")
        snap = os.path.join(srv.datastore_path("s3wf"), "host", "wf", "2023-11-14T22:13:20Z")
        self.assertFalse(os.path.exists(os.path.join(snap, pp.MANIFEST)))
        self.assertEqual([], [k for k in list_keys("s3wf/.cnt/") if k.endswith(pp.MANIFEST)])
        b.abort()


class Failures(S3Case):
    """The endpoint goes through the fault proxy, which the tests can stop."""

    rate = "0.05"

    @classmethod
    def setUpClass(cls):
        cls.proxy = None
        cls.start_proxy()
        cls.endpoint_port = cls.proxy_port
        super().setUpClass()
        cls.addClassCleanup(cls.stop_proxy)

    @classmethod
    def start_proxy(cls, rate=None, port="0"):
        cls.proxy = subprocess.Popen(
            [sys.executable, os.path.join(S3DIR, "faultproxy.py"), "--listen", str(port),
             "--upstream", "127.0.0.1:%s" % RGW["S3_PORT"], "--seed", "7",
             "--rate", rate or cls.rate, "--stall", "2"],
            stdout=subprocess.PIPE, text=True)
        first = cls.proxy.stdout.readline().split()
        assert first[:1] == ["LISTENING"], first
        cls.proxy_port = int(first[1])

    @classmethod
    def stop_proxy(cls):
        if cls.proxy and cls.proxy.poll() is None:
            cls.proxy.send_signal(signal.SIGTERM)
            try:
                cls.proxy.wait(10)
            except subprocess.TimeoutExpired:
                cls.proxy.kill()
        cls.proxy = None

    def test_a_stress_8_backups_and_gc(self):
        srv = self.srv
        self.assertOk(self.make_store("s3f"), "create")
        shared = self.chunks(9, 10)
        done, errors = {}, []

        def one(i):
            try:
                own = self.chunks(100 + i, 12)
                t = 1700000000 + i
                self.backup("s3f", "h%d" % i, t, shared + own, blob=b"log %d" % i)
                done[i] = b"".join(c.data for c in shared + own)
            except Exception as e:  # noqa: BLE001
                errors.append((i, e))

        ts = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in ts:
            t.start()
        gcs = []
        while any(t.is_alive() for t in ts):
            upid = self.start_task("s3f", "gc")
            gcs.append(self.wait_task(upid).get("exitstatus"))
        for t in ts:
            t.join()
        gcs.append(self.gc("s3f", ok=False)[0].get("exitstatus"))
        # Every backup that reported success restores and verifies.
        self.assertGreaterEqual(len(done), 6, "too many backups failed: %r" % errors)
        for i, data in done.items():
            self.assertEqual(data, self.restore("s3f", "h%d" % i, 1700000000 + i))
        wipe_cache(srv.datastore_path("s3f"))
        for i, data in done.items():
            self.assertEqual(data, self.restore("s3f", "h%d" % i, 1700000000 + i))
        sys.stderr.write("stress: %d backups finished, %d failed; GC runs: %r\n"
                         % (len(done), len(errors), gcs))

    def test_b_s3_unreachable_mid_backup(self):
        srv = self.srv
        type(self).stop_proxy()
        type(self).start_proxy(rate="0")
        # the endpoint now points at the new, fault-free proxy
        r = srv.put(API + "/config/s3/rgw", params={"port": str(self.proxy_port)})
        self.assertOk(r)
        self.assertOk(self.make_store("s3g"), "create")
        chunks = self.chunks(10, 6)
        b = self.open_session(pp.BackupSession(srv, "s3g", "host", "h1", 1700000000))
        wid = b.dynamic_index("root.pxar.didx")
        b.upload_chunk(wid, chunks[0])
        b.append(wid, [chunks[0].digest], [0])
        type(self).stop_proxy()             # S3 goes away
        r = b.chunk_raw(wid, chunks[1].digest, chunks[1].size, chunks[1].blob)
        # Write-behind: the chunk is answered when its PUT starts, so the
        # failure shows on a later request (finish at the latest); refused
        # here only if an earlier upload of the session had failed already.
        if r.status != 200:
            msg = self.assertError(r, (500, 502, 503), "upload with S3 gone")
            self.assertRegex(msg.lower(), "s3|upload")
        r = b.close_raw(wid, 1, chunks[0].size, pp.didx_csum([chunks[0].size],
                                                             [chunks[0].digest]))
        self.assertError(r, (500, 502, 503), "index close with S3 gone", mentions="s3|upload")
        # the manifest itself is kept locally; finish cannot succeed
        r = b.blob_raw(pp.MANIFEST, pp.manifest_blob(pp.manifest("host", "h1", 1700000000, [])))
        self.assertEqual(200, r.status, r)
        r = b.call("POST", "finish")
        self.assertNotEqual(200, r.status, r)
        b.abort()
        # S3 lost between the last file and finish: finish fails, and the
        # snapshot is not left finished locally either
        port = self.proxy_port
        type(self).start_proxy(rate="0", port=port)
        b = self.open_session(pp.BackupSession(srv, "s3g", "host", "h2", 1700000000))
        b.upload_dynamic("root.pxar.didx", chunks[:3])
        b.upload_manifest()
        type(self).stop_proxy()
        r = b.call("POST", "finish")
        self.assertError(r, (500, 502, 503), "finish with S3 gone", mentions="bucket")
        self.assertFalse(os.path.exists(os.path.join(
            srv.datastore_path("s3g"), "host", "h2", "2023-11-14T22:13:20Z", pp.MANIFEST)))
        b.abort()
        snaps = self.assertOk(srv.get(API + "/admin/datastore/s3g/snapshots"))
        self.assertEqual([], [s for s in snaps if s.get("backup-time") == 1700000000 and
                              "size" in s and not s.get("unfinished", False)])


if __name__ == "__main__":
    unittest.main(verbosity=2)
