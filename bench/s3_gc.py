#!/usr/bin/python3
"""bench/s3-gc: garbage collection of an S3 datastore over --objects chunk
objects (default 100,000), half of them unreferenced.

Ceph RGW (test/s3/rgw-up.sh, memstore, loopback) holds <store>/.chunks/...
objects; the local datastore holds one snapshot whose dynamic index
references half of them, with their 0-byte cache markers (the steady state
of an S3 datastore whose cache evicted everything). The other half has no
marker: unreferenced, to be deleted. cairnd's GC (POST .../gc) runs once;
its task log gives the phase times and the request counts.

Printed: a table of wall time per phase, objects listed / deleted / kept,
list and delete requests against the minimum (one list per 1000 listed keys,
one delete per 1000 deleted keys) and against what PBS's batches of 100 would
need, then a final line of key=value pairs including gc_list_requests,
gc_delete_requests, gc_min_requests, gc_wall_s and pbs_delete_requests.
"""

import argparse
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "test", "integration"))
import cairn_harness as ch  # noqa: E402
import pbs_proto as pp  # noqa: E402
import s3_backup as sb  # noqa: E402  (RGW start/stop)

API = "/api2/json"
BUCKET = "cairn-bench-gc"
STORE = "gcbench"
T0 = 1700000000


def didx(digests, chunk=65536):
    body = bytearray()
    for i, d in enumerate(digests):
        body += struct.pack("<Q", (i + 1) * chunk) + bytes.fromhex(d)
    csum = hashlib.sha256(body).digest()
    head = pp.MAGIC_DIDX + os.urandom(16) + struct.pack("<q", T0) + csum
    return head + b"\0" * (pp.INDEX_HEADER - len(head)) + bytes(body)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "bin"))
    ap.add_argument("--objects", type=int, default=100000)
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--tmp", default=None)
    args = ap.parse_args()
    os.environ["CAIRN_BIN_DIR"] = os.path.abspath(args.bin)
    tmp = tempfile.mkdtemp(prefix="cairn-bench-s3gc-", dir=args.tmp)
    n = args.objects
    res = {}
    try:
        rgw = sb.rgw_up(tmp, 4.0)
        import boto3
        from botocore.config import Config
        s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:%s" % rgw["S3_PORT"],
                          aws_access_key_id=rgw["S3_ACCESS_KEY"],
                          aws_secret_access_key=rgw["S3_SECRET_KEY"],
                          region_name=rgw["S3_REGION"],
                          config=Config(s3={"addressing_style": "path"},
                                        max_pool_connections=args.threads + 4,
                                        retries={"max_attempts": 10}))
        s3.create_bucket(Bucket=BUCKET)
        digests = [hashlib.sha256(b"bench-%d" % i).hexdigest() for i in range(n)]
        referenced = digests[: n // 2]
        body = pp.blob_encode(b"x" * 64)
        print("uploading %d objects to RGW ..." % n, flush=True)
        t0 = time.monotonic()
        errs = []

        def put(part):
            try:
                for d in part:
                    s3.put_object(Bucket=BUCKET, Key="%s/.chunks/%s/%s" % (STORE, d[:4], d),
                                  Body=body)
            except Exception as e:  # noqa: BLE001
                errs.append(e)
        ts = [threading.Thread(target=put, args=(digests[i::args.threads],))
              for i in range(args.threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if errs:
            raise errs[0]
        print("  %.1f s" % (time.monotonic() - t0), flush=True)

        srv = ch.Cairn(tls=False, log_level="warn")
        try:
            r = srv.post(API + "/config/s3", params={
                "id": "rgw", "endpoint": "127.0.0.1", "port": rgw["S3_PORT"],
                "region": rgw["S3_REGION"], "access-key": rgw["S3_ACCESS_KEY"],
                "secret-key": rgw["S3_SECRET_KEY"], "path-style": "true", "use-tls": "false"})
            assert r.status == 200, r
            base = srv.datastore_path(STORE)
            r = srv.post(API + "/config/datastore", params={
                "name": STORE, "path": base,
                "backend": "type=s3,client=rgw,bucket=%s" % BUCKET})
            assert r.status == 200, r
            # One snapshot referencing half the objects, with their markers.
            snap = os.path.join(base, "host", "bench", "2023-11-14T22:13:20Z")
            os.makedirs(snap)
            with open(os.path.join(base, "host", "bench", "owner"), "w") as f:
                f.write("root@pam\n")
            with open(os.path.join(snap, "root.pxar.didx"), "wb") as f:
                f.write(didx(referenced))
            with open(os.path.join(snap, pp.MANIFEST), "wb") as f:
                f.write(pp.manifest_blob(pp.manifest("host", "bench", T0, [])))
            for d in referenced:
                p = os.path.join(base, ".chunks", d[:4])
                os.makedirs(p, exist_ok=True)
                open(os.path.join(p, d), "wb").close()
            os.sync()
            print("running GC ...", flush=True)
            t0 = time.monotonic()
            r = srv.post("%s/admin/datastore/%s/gc" % (API, STORE))
            assert r.status == 200, r
            upid = r.data["data"]
            q = urllib.parse.quote(upid, safe="")
            while True:
                st = srv.get("%s/nodes/localhost/tasks/%s/status" % (API, q)).data["data"]
                if st["status"] == "stopped":
                    break
                time.sleep(0.02)
            res["wall"] = time.monotonic() - t0
            log = "\n".join(x["t"] for x in srv.get(
                "%s/nodes/localhost/tasks/%s/log" % (API, q), params={"limit": "0"}).data["data"])
            if st.get("exitstatus") != "OK":
                print(log)
                sys.exit("bench/s3-gc: GC failed: %s" % st.get("exitstatus"))
        finally:
            srv.close()
        # Baseline on the same server: boto3 lists what is left and deletes it
        # in DeleteObjects batches of 1000, one request at a time.
        t0 = time.monotonic()
        keys = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET,
                                                                 Prefix=STORE + "/.chunks/"):
            keys += [o["Key"] for o in page.get("Contents", [])]
        res["left"] = len(keys)
        res["base_list"] = time.monotonic() - t0
        t0 = time.monotonic()
        for i in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in
                                                                 keys[i:i + 1000]]})
        res["base_delete"] = time.monotonic() - t0
    finally:
        sb.rgw_down(tmp)
        shutil.rmtree(tmp, ignore_errors=True)

    def grab(pat, cast=int):
        m = re.search(pat, log)
        return cast(m.group(1)) if m else -1
    listed = grab(r"objects listed (\d+)")
    deleted = grab(r"deleted (\d+)")
    kept = grab(r"kept (\d+)")
    lists = grab(r"list requests (\d+)")
    dels = grab(r"delete requests (\d+)")
    retried = grab(r"retried attempts (\d+)")
    p1 = grab(r"Phase 1: ([0-9.]+) s", float)
    p2 = grab(r"phase 2: ([0-9.]+) s", float)
    p3 = grab(r"phase 3: ([0-9.]+) s", float)
    total = grab(r"total ([0-9.]+) s", float)
    min_lists = listed // 1000 + (1 if listed % 1000 else 0)
    min_dels = -(-deleted // 1000)
    pbs_dels = -(-deleted // 100)
    print()
    print("GC of an S3 datastore: %d chunk objects, %d referenced (0-byte markers), %d "
          "unreferenced; Ceph RGW 16 (memstore) on loopback, 2 cores" % (n, n // 2, n - n // 2))
    print("%-28s %12s" % ("", "value"))
    for k, v in (("wall time (API to stopped) s", "%.2f" % res["wall"]),
                 ("phase 1 (mark) s", "%.2f" % p1), ("phase 2 (list+delete) s", "%.2f" % p2),
                 ("phase 3 (local sweep) s", "%.2f" % p3), ("task total s", "%.2f" % total),
                 ("objects listed", listed), ("objects deleted", deleted),
                 ("objects kept", kept), ("objects left in bucket", res["left"]),
                 ("list requests", "%d (minimum %d)" % (lists, min_lists)),
                 ("delete requests", "%d (minimum %d; PBS batches of 100: %d)" %
                  (dels, min_dels, pbs_dels)),
                 ("retried attempts", retried)):
        print("%-28s %12s" % (k, v))
    print("baseline, boto3 on the same RGW afterwards: listing the %d keys left %.2f s, "
          "deleting them in batches of 1000 %.2f s" % (res["left"], res["base_list"],
                                                      res["base_delete"]))
    ok = (deleted == n - n // 2 and res["left"] == n // 2 + 1 and dels == min_dels and
          lists <= min_lists + 1)
    print("gc_list_requests=%d gc_delete_requests=%d gc_min_requests=%d gc_min_list=%d "
          "gc_min_delete=%d pbs_delete_requests=%d gc_wall_s=%.2f gc_phase2_s=%.2f "
          "gc_deleted=%d gc_ok=%d boto3_list_left_s=%.2f boto3_delete_left_s=%.2f" % (
              lists, dels, min_lists + min_dels, min_lists, min_dels, pbs_dels, res["wall"], p2,
              deleted, 1 if ok else 0, res["base_list"], res["base_delete"]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
