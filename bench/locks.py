#!/usr/bin/python3
"""bench/locks: what Cairn's hierarchical namespace locks cost on the hot
path (issue #15; the fear of PBS's reviewers in patch 5).

1. Backup session open, and a whole 1-chunk backup (open, one dynamic index
   with one chunk, manifest, finish), in the root namespace (depth 0) and in
   a namespace 7 levels deep: every group and snapshot lock there takes 8
   namespace locks first. Runs alternate between the two in blocks, so a
   change in the machine's load hits both alike; the medians are compared.
   Target: depth 7 costs at most 5% more than depth 0 (ratio <= 1.05).
2. GET .../status requests (wrk, one thread, 8 connections) without and with
   a namespace move running in another namespace (a namespace of many
   groups, moved back and forth for the whole measurement), in alternating
   slices. Target: status keeps >= 90% of its rate (ratio >= 0.90).

Prints a table and ends with one line of key=value pairs. Uses the test
harness of test/integration for the server and the backup protocol.

    /usr/bin/python3 bench/locks.py --bin build/bin [--runs 200] [--slices 6]
"""

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "integration"))
sys.path.insert(0, HERE)

API = "/api2/json"
STORE = "locks"
DEEP = "/".join("l%d" % i for i in range(1, 8))


def log(msg):
    sys.stderr.write("bench: %s\n" % msg)
    sys.stderr.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/bin")
    ap.add_argument("--runs", type=int, default=200, help="1-chunk backups per depth")
    ap.add_argument("--block", type=int, default=10, help="runs per block before switching")
    ap.add_argument("--groups", type=int, default=3000, help="groups in the moved namespace")
    ap.add_argument("--slices", type=int, default=6, help="status slices per condition")
    ap.add_argument("--slice-s", type=float, default=2.0)
    a = ap.parse_args()
    os.environ["CAIRN_BIN_DIR"] = os.path.abspath(a.bin)
    import cairn_harness as ch
    import pbs_proto as pp

    srv = ch.Cairn(tls=False, log_level="warn")
    try:
        ds = srv.datastore_path(STORE)
        r = srv.post(API + "/config/datastore", params={"name": STORE, "path": ds,
                                                         "tuning": "sync-level=none"})
        assert r.status == 200, r
        parts = DEEP.split("/")
        for i in range(len(parts)):
            p = {"name": parts[i]}
            if i:
                p["parent"] = "/".join(parts[:i])
            assert srv.post("%s/admin/datastore/%s/namespace" % (API, STORE),
                            params=p).status == 200
        rng = random.Random(1)

        # ---- 1. backups at depth 0 and 7 ----
        opens = {0: [], 7: []}
        totals = {0: [], 7: []}
        t = 1700000000
        chunk = pp.Chunk(rng.randbytes(4096))

        def one(depth, t):
            ns = DEEP if depth else None
            t0 = time.perf_counter()
            b = pp.BackupSession(srv, STORE, "host", "bench", t, ns=ns).open()
            t1 = time.perf_counter()
            b.upload_dynamic("root.pxar.didx", [chunk])
            b.upload_manifest()
            b.finish()
            b.close_connection()
            t2 = time.perf_counter()
            return t1 - t0, t2 - t0

        for d in (0, 7):  # warm-up
            for _ in range(5):
                t += 1
                one(d, t)
        done = 0
        while done < a.runs:
            for d in (0, 7):
                for _ in range(a.block):
                    t += 1
                    o, tot = one(d, t)
                    opens[d].append(o)
                    totals[d].append(tot)
            done += a.block
        med = {k: (statistics.median(opens[k]) * 1e3, statistics.median(totals[k]) * 1e3)
               for k in (0, 7)}
        open_ratio = med[7][0] / med[0][0]
        backup_ratio = med[7][1] / med[0][1]

        # ---- 2. status with and without a namespace move ----
        # The moved namespace: many groups made directly on disk.
        for name in ("mvA", "other"):
            assert srv.post("%s/admin/datastore/%s/namespace" % (API, STORE),
                            params={"name": name}).status == 200
        base = os.path.join(ds, "ns", "mvA", "host")
        os.makedirs(base, exist_ok=True)
        for i in range(a.groups):
            g = os.path.join(base, "g%05d" % i)
            os.makedirs(os.path.join(g, "2023-11-14T22:13:20Z"))
            with open(os.path.join(g, "owner"), "w") as f:
                f.write("root@pam\n")
        stop = threading.Event()
        moves = [0]
        move_err = []

        where = {"src": "mvA", "dst": "mvB"}  # where the moved namespace is now

        def mover():
            src, dst = where["src"], where["dst"]
            while not stop.is_set():
                r = srv.post("%s/admin/datastore/%s/move-namespace" % (API, STORE),
                             params={"ns": src, "target-ns": dst})
                if r.status != 200:
                    move_err.append(repr(r))
                    return
                upid = r.data["data"]
                q = urllib_quote(upid)
                while True:
                    st = srv.get("%s/nodes/localhost/tasks/%s/status" % (API, q)).data["data"]
                    if st["status"] == "stopped":
                        break
                    time.sleep(0.05)
                if st.get("exitstatus") != "OK":
                    move_err.append(st.get("exitstatus"))
                    return
                moves[0] += 1
                src, dst = dst, src
                where["src"], where["dst"] = src, dst

        lua = os.path.join(tempfile.mkdtemp(prefix="cairn-bench-locks-"), "s.lua")
        with open(lua, "w") as f:
            f.write('wrk.headers["Authorization"] = "PBSAPIToken=%s"\n' % srv.token)
        url = "http://%s:%d%s/admin/datastore/%s/status" % (srv.host, srv.port, API, STORE)

        def wrk_rate(sec):
            p = subprocess.run(["wrk", "-t1", "-c8", "-d%ds" % max(1, round(sec)), "-s", lua, url],
                               capture_output=True, text=True, timeout=sec + 30)
            m = re.search(r"Requests/sec:\s*([\d.]+)", p.stdout)
            bad = re.search(r"Non-2xx or 3xx responses: (\d+)", p.stdout)
            if not m or bad:
                raise RuntimeError("wrk: %s %s" % (p.stdout, p.stderr))
            return float(m.group(1))

        wrk_rate(1)  # warm-up: connections, caches

        def busy_slice():
            stop.clear()
            th = threading.Thread(target=mover, daemon=True)
            th.start()
            time.sleep(0.2)  # the move is under way (its lock and first groups)
            rate = wrk_rate(a.slice_s)
            stop.set()
            th.join(timeout=300)
            if move_err:
                raise RuntimeError("move failed: %s" % move_err)
            return rate

        idle, busy = [], []
        for s in range(a.slices):  # the order alternates, so drifts in load hit both
            if s % 2:
                busy.append(busy_slice())
                idle.append(wrk_rate(a.slice_s))
            else:
                idle.append(wrk_rate(a.slice_s))
                busy.append(busy_slice())
        idle_rate = statistics.mean(idle)
        busy_rate = statistics.mean(busy)
        status_ratio = busy_rate / idle_rate

        load = os.getloadavg()[0]
        print("%-34s %12s %12s %8s" % ("measure", "depth 0", "depth 7", "ratio"))
        print("%-34s %12.3f %12.3f %8.3f" % ("backup session open, median ms", med[0][0],
                                             med[7][0], open_ratio))
        print("%-34s %12.3f %12.3f %8.3f" % ("1-chunk backup, median ms", med[0][1],
                                             med[7][1], backup_ratio))
        print("%-34s %12s %12s %8s" % ("", "idle", "during move", "ratio"))
        print("%-34s %12.0f %12.0f %8.3f" % ("status requests/s (wrk -c8)", idle_rate,
                                             busy_rate, status_ratio))
        print("(%d backups per depth; %d status slices of %.1f s per condition; %d namespace "
              "moves of %d groups ran; load average %.1f)" % (len(totals[0]), a.slices,
                                                              a.slice_s, moves[0], a.groups,
                                                              load))
        print("status slices idle: %s" % " ".join("%.0f" % x for x in idle))
        print("status slices move: %s" % " ".join("%.0f" % x for x in busy))
        print("depth7_vs_depth0=%.3f open_depth7_vs_depth0=%.3f status_during_move_ratio=%.3f "
              "backup_ms_depth0=%.3f backup_ms_depth7=%.3f status_rps_idle=%.0f "
              "status_rps_move=%.0f moves=%d load=%.1f"
              % (backup_ratio, open_ratio, status_ratio, med[0][1], med[7][1], idle_rate,
                 busy_rate, moves[0], load))
    finally:
        srv.close()


def urllib_quote(s):
    import urllib.parse
    return urllib.parse.quote(s, safe="")


if __name__ == "__main__":
    main()
