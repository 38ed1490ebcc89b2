#!/usr/bin/env python3
"""bench/s3.py: Cairn's S3 client beside rclone against the same Ceph RGW.

    bench/s3.py --bin build/bin [--quick]

Starts RGW (test/s3/rgw-up.sh) on free loopback ports, then for 4 MiB and
4 KiB objects at concurrency 1, 8 and 32 runs PUT and GET with Cairn's client
(`s3_bench`) and with `rclone copy` (same objects, same concurrency), and
prints objects/s, MB/s and the ratios, then one final line of key=value pairs.
The loop-lag columns are how late a 1 ms timer on Cairn's client loop fired
(p99), i.e. what a status request on the same loop would wait.

The loop figures of issue #20 come from extra runs of 4 MiB PUT and GET at
concurrency 8 and 32 with every thread of the S3 server (RGW, its OSD and
monitor) at the lowest CPU priority (SCHED_IDLE, nice 19), so the figures show
Cairn's loop rather than the scheduler choosing between two busy programs:
`s3_loop_busy_p99_ms` / `s3_loop_busy_max_ms` are the loop's own busy time per
iteration (the callbacks between two polls, wall clock),
`s3_loop_busy_cpu_p99_ms` / `s3_loop_busy_cpu_max_ms` the loop thread's CPU
time over the same spans (which other programs cannot inflate by preempting
it), `s3_loop_lag_p99_ms` the 1 ms timer's wall-clock lag (worst of those
runs). Targets: busy p99 <= 1 ms, busy
max <= 5 ms, lag p99 <= 5 ms.
"""
import argparse
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
S3DIR = os.path.join(ROOT, "test", "s3")


def free_base(n):
    rng = random.Random(os.getpid())
    for _ in range(200):
        base = rng.randrange(20000, 60000)
        ok = True
        for i in range(n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", base + i))
                except OSError:
                    ok = False
        if ok:
            return base
    raise RuntimeError("no free ports")


def kv(line):
    return dict(p.split("=", 1) for p in line.split())


def cairn(binary, env, mode, size, count, conc, prefix):
    r = subprocess.run([binary, mode, str(size), str(count), str(conc), prefix], env=env,
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"s3_bench {mode} failed: {r.stderr[-2000:]}")
    return kv(r.stdout.strip().splitlines()[-1])


def rclone(env, args):
    t0 = time.perf_counter()
    r = subprocess.run(["rclone"] + args, env=env, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"rclone {' '.join(args)} failed: {r.stderr[-2000:]}")
    return time.perf_counter() - t0


def server_pids(rgw):
    pids = []
    d = os.path.join(rgw, "pids")
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name)) as f:
            pids.append(int(f.read().strip()))
    return pids


def deprioritize(pids, idle):
    """Every thread of the server processes to SCHED_IDLE and nice 19 (idle),
    or back to SCHED_OTHER and nice 0."""
    for pid in pids:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in tids:
            try:
                if idle:
                    os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
                    os.setpriority(os.PRIO_PROCESS, tid, 19)
                else:
                    os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
                    os.setpriority(os.PRIO_PROCESS, tid, 0)
            except OSError:
                pass  # a thread that ended meanwhile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    ap.add_argument("--quick", action="store_true", help="fewer objects")
    ap.add_argument("--loop-only", action="store_true",
                    help="only the loop runs with the server deprioritised (no rclone)")
    a = ap.parse_args()
    binary = os.path.join(a.bin, "s3_bench")
    if not os.path.exists(binary):
        sys.exit(f"{binary} missing: build first")
    if shutil.which("rclone") is None and not a.loop_only:
        sys.exit("rclone missing: scripts/deps.sh bench")

    work = tempfile.mkdtemp(prefix="cairn-bench-s3-")
    rgw = os.path.join(work, "rgw")
    try:
        base = free_base(3)
        up = subprocess.run([os.path.join(S3DIR, "rgw-up.sh"), rgw, str(base)],
                            capture_output=True, text=True, timeout=180,
                            env=dict(os.environ, STORE_BYTES=str(6 << 30)))
        if up.returncode != 0:
            sys.exit("RGW did not start:\n" + up.stderr[-3000:])
        env = dict(os.environ)
        for line in up.stdout.splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                env[k] = v
        env["S3_BUCKET"] = "cairn-bench"
        import boto3
        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{env['S3_PORT']}",
                     aws_access_key_id=env["S3_ACCESS_KEY"],
                     aws_secret_access_key=env["S3_SECRET_KEY"],
                     region_name=env["S3_REGION"]).create_bucket(Bucket="cairn-bench")
        rconf = os.path.join(work, "rclone.conf")
        open(rconf, "w").close()
        renv = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # plain HTTP here
        renv.update(RCLONE_CONFIG=rconf, RCLONE_CONFIG_RGW_TYPE="s3",
                    RCLONE_CONFIG_RGW_PROVIDER="Ceph",
                    RCLONE_CONFIG_RGW_ACCESS_KEY_ID=env["S3_ACCESS_KEY"],
                    RCLONE_CONFIG_RGW_SECRET_ACCESS_KEY=env["S3_SECRET_KEY"],
                    RCLONE_CONFIG_RGW_REGION=env["S3_REGION"],
                    RCLONE_CONFIG_RGW_ENDPOINT=f"http://127.0.0.1:{env['S3_PORT']}")

        # The loop's own busy time with the server at the lowest priority.
        pids = server_pids(rgw)
        loop_rows = []
        lcount = 16 if a.quick else 64
        for conc in (8, 32):
            for mode in ("put", "get"):
                deprioritize(pids, True)
                try:
                    r = cairn(binary, env, mode, 4 << 20, lcount, conc, f"loop/c{conc}")
                finally:
                    deprioritize(pids, False)
                loop_rows.append(dict(conc=conc, mode=mode, busy_p99=float(r["busy_p99_ms"]),
                                      busy_max=float(r["busy_max_ms"]),
                                      cpu_p99=float(r["busy_cpu_p99_ms"]),
                                      cpu_max=float(r["busy_cpu_max_ms"]),
                                      lag_p99=float(r["lag_p99_ms"]), mbps=float(r["mbps"]),
                                      iterations=int(r["iterations"])))
                lr = loop_rows[-1]
                print(f"loop, server at SCHED_IDLE: 4MiB {mode.upper():3} c={conc:<2} "
                      f"{lr['mbps']:7.1f} MB/s  busy per iteration p99 {lr['busy_p99']:.3f} ms "
                      f"max {lr['busy_max']:.3f} ms (loop thread CPU p99 {lr['cpu_p99']:.3f} "
                      f"max {lr['cpu_max']:.3f} ms; {lr['iterations']} iterations)  "
                      f"lag p99 {lr['lag_p99']:.2f} ms", flush=True)
            cairn(binary, env, "delete", 0, lcount, 32, f"loop/c{conc}")
        loop_final = {
            "s3_loop_busy_p99_ms": max(r["busy_p99"] for r in loop_rows),
            "s3_loop_busy_max_ms": max(r["busy_max"] for r in loop_rows),
            "s3_loop_lag_p99_ms": max(r["lag_p99"] for r in loop_rows),
            "s3_loop_busy_cpu_p99_ms": max(r["cpu_p99"] for r in loop_rows),
            "s3_loop_busy_cpu_max_ms": max(r["cpu_max"] for r in loop_rows),
        }
        print("targets: loop busy per iteration p99 <= 1 ms: %s, max <= 5 ms: %s; "
              "lag p99 <= 5 ms: %s (server deprioritised)" % (
                  "met" if loop_final["s3_loop_busy_p99_ms"] <= 1 else "MISSED",
                  "met" if loop_final["s3_loop_busy_max_ms"] <= 5 else "MISSED",
                  "met" if loop_final["s3_loop_lag_p99_ms"] <= 5 else "MISSED"))
        if a.loop_only:
            print(" ".join(f"{k}={v:.2f}" for k, v in loop_final.items()))
            return

        shapes = [("4MiB", 4 << 20, 16 if a.quick else 64), ("4KiB", 4096, 200 if a.quick else 1000)]
        rows, final = [], {}
        for name, size, count in shapes:
            src = os.path.join(work, f"src-{name}")
            os.makedirs(src)
            for i in range(count):
                with open(os.path.join(src, f"{i:05d}"), "wb") as f:
                    f.write(os.urandom(size))
            for conc in (1, 8, 32):
                tag = f"{name}/c{conc}"
                cp = cairn(binary, env, "put", size, count, conc, f"cairn/{tag}")
                cg = cairn(binary, env, "get", size, count, conc, f"cairn/{tag}")
                rflags = ["--transfers", str(conc), "--checkers", str(conc), "-q"]
                tp = rclone(renv, ["copy", src, f"rgw:cairn-bench/rclone/{tag}",
                                   "--no-check-dest", "--no-traverse"] + rflags)
                dst = os.path.join(work, "dst")
                tg = rclone(renv, ["copy", f"rgw:cairn-bench/rclone/{tag}", dst] + rflags)
                shutil.rmtree(dst, ignore_errors=True)
                total = size * count
                row = dict(shape=name, conc=conc,
                           c_put_ops=float(cp["ops_per_s"]), c_put_mbps=float(cp["mbps"]),
                           c_get_ops=float(cg["ops_per_s"]), c_get_mbps=float(cg["mbps"]),
                           r_put_ops=count / tp, r_put_mbps=total / tp / 1e6,
                           r_get_ops=count / tg, r_get_mbps=total / tg / 1e6,
                           lag=max(float(cp["lag_p99_ms"]), float(cg["lag_p99_ms"])))
                rows.append(row)
                # Free RGW's memory (memstore) before the next round.
                cairn(binary, env, "delete", 0, count, 32, f"cairn/{tag}")
                cairn(binary, env, "delete", 0, count, 32, f"rclone/{tag}")
                print(f"{name:5} c={conc:<2}  PUT cairn {row['c_put_ops']:8.1f} obj/s "
                      f"{row['c_put_mbps']:7.1f} MB/s | rclone {row['r_put_ops']:8.1f} obj/s "
                      f"{row['r_put_mbps']:7.1f} MB/s | x{row['c_put_mbps'] / row['r_put_mbps']:.2f}"
                      f"   GET cairn {row['c_get_mbps']:7.1f} MB/s | rclone "
                      f"{row['r_get_mbps']:7.1f} MB/s | x{row['c_get_mbps'] / row['r_get_mbps']:.2f}"
                      f"   loop lag p99 {row['lag']:.2f} ms", flush=True)
        big = [r for r in rows if r["shape"] == "4MiB"]
        small = [r for r in rows if r["shape"] == "4KiB"]
        top = lambda rs, k: max(r[k] for r in rs)  # noqa: E731
        final = {
            "cairn_put_mbps": top(big, "c_put_mbps"), "rclone_put_mbps": top(big, "r_put_mbps"),
            "cairn_get_mbps": top(big, "c_get_mbps"), "rclone_get_mbps": top(big, "r_get_mbps"),
            "cairn_small_put_ops": top(small, "c_put_ops"),
            "rclone_small_put_ops": top(small, "r_put_ops"),
            "cairn_small_get_ops": top(small, "c_get_ops"),
            "rclone_small_get_ops": top(small, "r_get_ops"),
            "cairn_loop_lag_p99_ms": max(r["lag"] for r in rows),
        }
        final.update(loop_final)
        print(" ".join(f"{k}={v:.2f}" for k, v in final.items()))
    finally:
        subprocess.run([os.path.join(S3DIR, "rgw-down.sh"), rgw], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
