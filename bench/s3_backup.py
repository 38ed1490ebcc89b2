#!/usr/bin/python3
"""bench/s3-backup: backup and restore to an S3 datastore beside a local one.

The dataset of the client benchmark (bench/backup.py: about --size-gib GiB of
compressible text, random files and duplicates) is backed up with the `cairn`
client to two datastores of one cairnd (plain HTTP on loopback), in one run:

  local   a file-system datastore;
  s3      a datastore with `backend type=s3` on Ceph RGW (test/s3/rgw-up.sh,
          memstore, loopback), default cache settings.

For each: first backup, then a full restore; for s3 also a restore after the
local cache was wiped (every chunk comes from the bucket). Times are from
process start to exit; MB/s is dataset bytes / time. Prints a table, the S3
request counts, and a final line of key=value pairs including s3_backup_s,
local_backup_s, s3_restore_s, local_restore_s, s3_cold_restore_s and
s3_vs_local (local time / s3 time: the target is >= 0.70).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "test", "integration"))
import cairn_harness as ch  # noqa: E402
import backup as bb  # noqa: E402  (bench/backup.py: dataset, timing helpers)

API = "/api2/json"
S3DIR = os.path.join(HERE, "..", "test", "s3")
BUCKET = "cairn-bench"


def rgw_up(work, store_gib):
    port = None
    import random
    import socket
    rng = random.Random(os.getpid())
    for _ in range(200):
        base = rng.randrange(20000, 60000)
        ok = True
        for i in range(3):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", base + i))
                except OSError:
                    ok = False
        if ok:
            port = base
            break
    env = dict(os.environ, STORE_BYTES=str(int(store_gib * (1 << 30))))
    up = subprocess.run([os.path.join(S3DIR, "rgw-up.sh"), os.path.join(work, "rgw"),
                         str(port)], capture_output=True, text=True, timeout=300, env=env)
    if up.returncode != 0:
        sys.stderr.write(up.stderr[-3000:])
        sys.exit("bench/s3-backup: Ceph RGW did not start (scripts/deps.sh test)")
    cfg = {}
    for line in up.stdout.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            cfg[k] = v
    return cfg


def rgw_down(work):
    subprocess.run([os.path.join(S3DIR, "rgw-down.sh"), os.path.join(work, "rgw")],
                   capture_output=True, timeout=120)


def client_env(srv, store):
    authid, secret = srv.token.rsplit(":", 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env.update({"CAIRN_REPOSITORY": "%s@127.0.0.1:%d:%s" % (authid, srv.port, store),
                "CAIRN_SECRET": secret, "CAIRN_PLAIN_HTTP": "1"})
    return env


def backup_restore(args, srv, store, data, tmp, cold=None):
    cairn = os.path.join(os.path.abspath(args.bin), "cairn")
    env = client_env(srv, store)
    res = {}
    dt, _ = bb.run_rss([cairn, "backup", "root.didx:%s" % data, "--backup-id", "b",
                        "--no-progress", "--workers", str(args.workers)], env)
    res["backup"] = dt
    _, out = bb.run([cairn, "snapshots", "host/b", "--output-format", "json"], env)
    t = max(s["backup-time"] for s in json.loads(out))
    want = bb.tree_digest(data)
    steps = [("restore", None)] + ([("cold", cold)] if cold else [])
    for name, before in steps:
        if before:
            before()
        target = os.path.join(tmp, "restore-%s-%s" % (store, name))
        dt, _ = bb.run_rss([cairn, "restore", "host/b/%d" % t, "root", target, "--no-progress"],
                           env)
        res[name] = dt
        res[name + "_ok"] = bb.tree_digest(target) == want
        shutil.rmtree(target, ignore_errors=True)
    res["stored"] = bb.du(srv.datastore_path(store))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "bin"))
    ap.add_argument("--size-gib", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--tmp", default=None)
    args = ap.parse_args()
    os.environ["CAIRN_BIN_DIR"] = os.path.abspath(args.bin)
    tmp = tempfile.mkdtemp(prefix="cairn-bench-s3b-", dir=args.tmp)
    size = int(args.size_gib * (1 << 30))
    rows = {}
    stats = {}
    try:
        rgw = rgw_up(tmp, max(4.0, args.size_gib * 2.5))
        import boto3
        from botocore.config import Config
        s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:%s" % rgw["S3_PORT"],
                          aws_access_key_id=rgw["S3_ACCESS_KEY"],
                          aws_secret_access_key=rgw["S3_SECRET_KEY"],
                          region_name=rgw["S3_REGION"],
                          config=Config(s3={"addressing_style": "path"}))
        s3.create_bucket(Bucket=BUCKET)
        data = os.path.join(tmp, "data")
        print("generating %.1f GiB in %s ..." % (size / (1 << 30), data), flush=True)
        bb.make_dataset(data, size)
        size = bb.tree_bytes(data)
        srv = ch.Cairn(tls=False, log_level="warn")
        try:
            r = srv.post(API + "/config/s3", params={
                "id": "rgw", "endpoint": "127.0.0.1", "port": rgw["S3_PORT"],
                "region": rgw["S3_REGION"], "access-key": rgw["S3_ACCESS_KEY"],
                "secret-key": rgw["S3_SECRET_KEY"], "path-style": "true", "use-tls": "false"})
            assert r.status == 200, r
            for name, extra in (("local", {}),
                                ("s3store", {"backend": "type=s3,client=rgw,bucket=%s" % BUCKET})):
                p = {"name": name, "path": srv.datastore_path(name)}
                p.update(extra)
                r = srv.post(API + "/config/datastore", params=p)
                assert r.status == 200, r
            print("local datastore ...", flush=True)
            rows["local"] = backup_restore(args, srv, "local", data, tmp)

            def wipe():
                root = os.path.join(srv.datastore_path("s3store"), ".chunks")
                for d in os.listdir(root):
                    shutil.rmtree(os.path.join(root, d))
                os.sync()
            print("s3 datastore ...", flush=True)
            rows["s3"] = backup_restore(args, srv, "s3store", data, tmp, cold=wipe)
            n, b = 0, 0
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET,
                                                                     Prefix="s3store/.chunks/"):
                for o in page.get("Contents", []):
                    n += 1
                    b += o["Size"]
            stats["objects"], stats["object_bytes"] = n, b
        finally:
            srv.close()
    finally:
        rgw_down(tmp)
        shutil.rmtree(tmp, ignore_errors=True)

    mb = size / 1e6
    print()
    print("dataset: %.2f GiB (bench/backup.py: 35%% text, 40%% random, 25%% duplicates); "
          "cairn --workers %d; 2 cores, loopback, plain HTTP; Ceph RGW 16 (memstore) on the "
          "same machine" % (size / (1 << 30), args.workers))
    print("%-8s %9s %8s %10s %8s %12s %8s %11s" % ("store", "backup s", "MB/s", "restore s",
                                                   "MB/s", "cold rest. s", "MB/s", "local MiB"))
    for name in ("local", "s3"):
        r = rows[name]
        cold = r.get("cold")
        print("%-8s %9.2f %8.1f %10.2f %8.1f %12s %8s %11.0f" % (
            name, r["backup"], mb / r["backup"], r["restore"], mb / r["restore"],
            "%.2f" % cold if cold else "-", "%.1f" % (mb / cold) if cold else "-",
            r["stored"] / (1 << 20)))
    ok = all(r.get("restore_ok") for r in rows.values()) and rows["s3"].get("cold_ok")
    print("restores verified: %s; bucket: %d chunk objects, %.0f MiB" %
          ("yes" if ok else "NO", stats.get("objects", 0), stats.get("object_bytes", 0) / (1 << 20)))
    ratio = rows["local"]["backup"] / rows["s3"]["backup"]
    print("s3 backup speed / local backup speed: %.2f (target >= 0.70)" % ratio)
    print("s3_backup_s=%.2f local_backup_s=%.2f s3_restore_s=%.2f local_restore_s=%.2f "
          "s3_cold_restore_s=%.2f s3_vs_local=%.2f restores_ok=%d" % (
              rows["s3"]["backup"], rows["local"]["backup"], rows["s3"]["restore"],
              rows["local"]["restore"], rows["s3"]["cold"], ratio, 1 if ok else 0))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
