#!/usr/bin/python3
"""bench/s3-backup: backup and restore to an S3 datastore beside a local one.

The dataset of the client benchmark (bench/backup.py: about --size-gib GiB of
compressible text, random files and duplicates) is backed up with the `cairn`
client to two datastores of one cairnd (plain HTTP on loopback), in one run:

  local   a file-system datastore;
  s3      a datastore with `backend type=s3` on Ceph RGW (test/s3/rgw-up.sh,
          memstore, loopback), default cache settings.

For each: first backup, then a full restore; for s3 also a restore after the
local cache was wiped (every chunk comes from the bucket). --rounds rounds
(default 3) alternate which store goes first, each with fresh datastores;
medians are reported, since the machine's two cores are shared by cairnd,
the client and RGW. Times are from process start to exit; MB/s is dataset
bytes / time; CPU seconds of cairnd and of RGW (radosgw, OSD, monitor)
during the backup tell where the time goes. Prints a table and a final line
of key=value pairs including s3_backup_s,
local_backup_s, s3_restore_s, local_restore_s, s3_cold_restore_s and
s3_vs_local (local time / s3 time).

The floor (issue #20): in each round, right after the S3 backup, `rclone copy`
uploads the same chunk objects (same keys and bytes, fetched from the bucket
beforehand, untimed) from a local directory into a fresh bucket on the same
RGW; `s3_backup_vs_floor` = s3_backup_s / max(local_backup_s, rclone_copy_s),
medians (target <= 1.15: the S3 backup costs barely more than the slower of
its two halves, the local backup and the upload).

CPU, to tell overlap from contention: the CPU seconds (utime + stime) of every
process in each step, the client and rclone from the reaped children's
rusage, cairnd and RGW (radosgw, OSD, monitor) from /proc. Printed as
s3_backup_cpu_s, local_backup_cpu_s, rclone_copy_cpu_s and
s3_halves_cpu_floor_s = (local_backup_cpu_s + rclone_copy_cpu_s) / cores:
when both halves are CPU-bound, the machine cannot run them side by side
faster than that, however well they overlap. s3_finish_wait_s is how long the
S3 backup's finish waited for its last chunk uploads (write-behind,
docs/s3-datastores.md), from cairnd's log.
"""

import argparse
import calendar
import json
import os
import resource
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


def cpu_seconds(pids):
    """utime + stime of processes, in seconds."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return total


def rgw_pids(work):
    out = []
    d = os.path.join(work, "rgw", "pids")
    for n in ("rgw", "osd", "mon"):
        try:
            with open(os.path.join(d, n + ".pid")) as f:
                out.append(int(f.read()))
        except OSError:
            pass
    return out


def children_cpu():
    """utime + stime of the reaped children (the client, rclone), seconds."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd, env, pids):
    """(seconds, [CPU seconds of each of pids], the command's own CPU seconds)."""
    c0 = [cpu_seconds([p]) for p in pids]
    k0 = children_cpu()
    dt, _ = bb.run_rss(cmd, env)
    return dt, [cpu_seconds([p]) - c for p, c in zip(pids, c0)], children_cpu() - k0


def log_time(line):
    """Seconds of a cairnd log line's UTC timestamp (2026-12-07T14:31:09.410Z)."""
    ts = line.split(" ", 1)[0]
    return calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) + float(ts[19:-1] or 0)


def finish_wait(log):
    """How long the S3 backup's finish waited for the last chunk uploads (the
    upload tail after the client had sent everything), from cairnd's log."""
    t0 = t1 = None
    for line in log.splitlines():
        if "while their upload ran" in line or "finish waits for" in line:
            print("  cairnd: " + line.split(": ", 1)[1], flush=True)
        if "finish waits for" in line:
            t0 = log_time(line)
        elif "chunk uploads done, finish goes on" in line and t0 is not None:
            t1 = log_time(line)
    return (t1 - t0) if t0 is not None and t1 is not None else 0.0


def one_round(args, srv, store, data, tmp, pids, cold=None):
    """First backup of `data` to `store`, a restore, and with `cold` one
    more restore after cold() (the cache wiped)."""
    cairn = os.path.join(os.path.abspath(args.bin), "cairn")
    env = client_env(srv, store)
    res = {}
    mark = srv.log_mark()
    dt, cpu, client = timed([cairn, "backup", "root.didx:%s" % data, "--backup-id", "b",
                             "--no-progress", "--workers", str(args.workers)], env, pids)
    res["backup"], res["backup_cpu"], res["backup_client_cpu"] = dt, cpu, client
    if cold:  # the S3 store: its write-behind line follows the finish
        srv.wait_log(r"chunks answered while their upload ran", timeout=10, since=mark)
    res["finish_wait"] = finish_wait(srv.log_text(mark))
    _, out = bb.run([cairn, "snapshots", "host/b", "--output-format", "json"], env)
    t = max(s["backup-time"] for s in json.loads(out))
    steps = [("restore", None)] + ([("cold", cold)] if cold else [])
    for name, before in steps:
        if before:
            before()
        target = os.path.join(tmp, "restore-%s-%s" % (store, name))
        dt, cpu, _ = timed([cairn, "restore", "host/b/%d" % t, "root", target,
                            "--no-progress"], env, pids)
        res[name] = dt
        res[name + "_cpu"] = cpu
        res[name + "_ok"] = bb.tree_digest(target) == args.want
        shutil.rmtree(target, ignore_errors=True)
    res["stored"] = bb.du(srv.datastore_path(store))
    return res


def rclone_env(rgw, work):
    conf = os.path.join(work, "rclone.conf")
    open(conf, "w").close()
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # plain HTTP
    env.update(RCLONE_CONFIG=conf, RCLONE_CONFIG_RGW_TYPE="s3",
               RCLONE_CONFIG_RGW_PROVIDER="Ceph",
               RCLONE_CONFIG_RGW_ACCESS_KEY_ID=rgw["S3_ACCESS_KEY"],
               RCLONE_CONFIG_RGW_SECRET_ACCESS_KEY=rgw["S3_SECRET_KEY"],
               RCLONE_CONFIG_RGW_REGION=rgw["S3_REGION"],
               RCLONE_CONFIG_RGW_ENDPOINT="http://127.0.0.1:%s" % rgw["S3_PORT"])
    return env


def rclone_floor(args, renv, s3, store, tmp, rnd, pids):
    """Fetches the chunk objects of `store` (untimed), then times `rclone copy`
    of them, same keys, into a fresh bucket; empties that bucket again."""
    src = os.path.join(tmp, "floor-objects")
    prefix = "%s/.chunks" % store
    flags = ["--transfers", str(args.rclone_transfers), "--checkers",
             str(args.rclone_transfers), "-q"]
    subprocess.run(["rclone", "copy", "rgw:%s/%s" % (BUCKET, prefix), src] + flags,
                   env=renv, check=True, capture_output=True, timeout=1800)
    bucket = "cairn-floor-%d" % rnd
    s3.create_bucket(Bucket=bucket)
    c0 = [cpu_seconds([p]) for p in pids]
    k0 = children_cpu()
    t = time.monotonic()
    subprocess.run(["rclone", "copy", src, "rgw:%s/%s" % (bucket, prefix),
                    "--no-check-dest", "--no-traverse"] + flags,
                   env=renv, check=True, capture_output=True, timeout=1800)
    dt = time.monotonic() - t
    cpu = [cpu_seconds([p]) - c for p, c in zip(pids, c0)] + [children_cpu() - k0]
    n = sum(len(fs) for _, _, fs in os.walk(src))
    subprocess.run(["rclone", "purge", "rgw:%s" % bucket, "-q"], env=renv,
                   capture_output=True, timeout=1800)
    shutil.rmtree(src, ignore_errors=True)
    return dt, n, cpu


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "bin"))
    ap.add_argument("--size-gib", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved local/s3 rounds; medians are reported")
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--rclone-transfers", type=int, default=8,
                    help="rclone copy's --transfers for the upload floor")
    args = ap.parse_args()
    os.environ["CAIRN_BIN_DIR"] = os.path.abspath(args.bin)
    tmp = tempfile.mkdtemp(prefix="cairn-bench-s3b-", dir=args.tmp)
    size = int(args.size_gib * (1 << 30))
    rows = {"local": [], "s3": []}
    stats = {}
    try:
        # room for the backup's objects and the floor's copy of them
        rgw = rgw_up(tmp, max(5.0, args.size_gib * 3.5))
        renv = rclone_env(rgw, tmp)
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
        args.want = bb.tree_digest(data)
        srv = ch.Cairn(tls=False, log_level="info")  # finish's wait is read from the log
        try:
            r = srv.post(API + "/config/s3", params={
                "id": "rgw", "endpoint": "127.0.0.1", "port": rgw["S3_PORT"],
                "region": rgw["S3_REGION"], "access-key": rgw["S3_ACCESS_KEY"],
                "secret-key": rgw["S3_SECRET_KEY"], "path-style": "true", "use-tls": "false"})
            assert r.status == 200, r
            pids = [srv.proc.pid] + rgw_pids(tmp)
            for rnd in range(args.rounds):
                local, s3store = "local%d" % rnd, "s3store%d" % rnd
                for name, extra in ((local, {}),
                                    (s3store, {"backend": "type=s3,client=rgw,bucket=%s" %
                                               BUCKET})):
                    p = {"name": name, "path": srv.datastore_path(name)}
                    p.update(extra)
                    r = srv.post(API + "/config/datastore", params=p)
                    assert r.status == 200, r

                def wipe(store=s3store):
                    root = os.path.join(srv.datastore_path(store), ".chunks")
                    for d in os.listdir(root):
                        shutil.rmtree(os.path.join(root, d))
                    os.sync()
                order = [("local", local, None), ("s3", s3store, wipe)]
                if rnd % 2:
                    order.reverse()
                for kind, store, cold in order:
                    print("round %d: %s ..." % (rnd + 1, kind), flush=True)
                    rows[kind].append(one_round(args, srv, store, data, tmp, pids, cold))
                    if kind == "s3":
                        print("round %d: rclone copy of the chunk objects ..." % (rnd + 1),
                              flush=True)
                        dt, n, cpu = rclone_floor(args, renv, s3, store, tmp, rnd, pids[1:])
                        rows["s3"][-1].update(rclone=dt, rclone_objects=n, rclone_rgw_cpu=cpu)
                # free the bucket and the disk for the next round
                n, b = 0, 0
                keys = []
                for page in s3.get_paginator("list_objects_v2").paginate(
                        Bucket=BUCKET, Prefix=s3store + "/"):
                    for o in page.get("Contents", []):
                        keys.append(o["Key"])
                        if "/.chunks/" in o["Key"]:
                            n += 1
                            b += o["Size"]
                stats["objects"], stats["object_bytes"] = n, b
                for i in range(0, len(keys), 1000):
                    s3.delete_objects(Bucket=BUCKET, Delete={
                        "Objects": [{"Key": k} for k in keys[i:i + 1000]]})
                for store in (local, s3store):
                    srv.delete(API + "/config/datastore/" + store)
                    shutil.rmtree(srv.datastore_path(store), ignore_errors=True)
        finally:
            srv.close()
    finally:
        rgw_down(tmp)
        shutil.rmtree(tmp, ignore_errors=True)

    mb = size / 1e6
    med = {k: {f: median([r[f] for r in v]) for f in ("backup", "restore")}
           for k, v in rows.items()}
    med["s3"]["cold"] = median([r["cold"] for r in rows["s3"]])
    med["s3"]["rclone"] = median([r["rclone"] for r in rows["s3"]])
    cpu = {k: [median([r["backup_cpu"][i] for r in v]) for i in range(len(v[0]["backup_cpu"]))]
           for k, v in rows.items()}
    print()
    print("dataset: %.2f GiB (bench/backup.py: 35%% text, 40%% random, 25%% duplicates); "
          "cairn --workers %d; 2 cores shared with Ceph RGW 16 (memstore) and the client; "
          "loopback, plain HTTP; medians of %d interleaved rounds"
          % (size / (1 << 30), args.workers, args.rounds))
    print("%-6s %9s %7s %10s %7s %12s %7s %10s %10s" % (
        "store", "backup s", "MB/s", "restore s", "MB/s", "cold rest. s", "MB/s",
        "cairnd cpu", "RGW cpu"))
    for name in ("local", "s3"):
        m = med[name]
        cold = m.get("cold")
        print("%-6s %9.2f %7.1f %10.2f %7.1f %12s %7s %9.1fs %9.1fs" % (
            name, m["backup"], mb / m["backup"], m["restore"], mb / m["restore"],
            "%.2f" % cold if cold else "-", "%.1f" % (mb / cold) if cold else "-",
            cpu[name][0], sum(cpu[name][1:])))
    for name in ("local", "s3"):
        print("  %-5s backups s: %s" % (name, " ".join("%.2f" % r["backup"] for r in rows[name])))
    for name, step in (("local", "restore"), ("s3", "restore"), ("s3", "cold")):
        c = rows[name][0][step + "_cpu"]
        print("  %-5s %-7s cpu: cairnd %.1f s, RGW %.1f s" % (name, step, c[0], sum(c[1:])))
    ok = all(r.get("restore_ok") for v in rows.values() for r in v) and \
        all(r.get("cold_ok") for r in rows["s3"])
    print("restores verified: %s; bucket per round: %d chunk objects, %.0f MiB; local store "
          "after a backup: %.0f MiB" % ("yes" if ok else "NO", stats.get("objects", 0),
                                        stats.get("object_bytes", 0) / (1 << 20),
                                        rows["local"][0]["stored"] / (1 << 20)))
    ratio = med["local"]["backup"] / med["s3"]["backup"]
    print("s3 backup speed / local backup speed: %.2f" % ratio)
    floor = max(med["local"]["backup"], med["s3"]["rclone"])
    vs_floor = med["s3"]["backup"] / floor
    print("floor: rclone copy of the same %d chunk objects (--transfers %d) to a fresh bucket "
          "%s s (median %.2f s, RGW cpu %.1f s); max(local backup %.2f s, rclone %.2f s) = "
          "%.2f s; s3 backup %.2f s = %.2fx the floor (target <= 1.15)" % (
              rows["s3"][0]["rclone_objects"], args.rclone_transfers,
              " ".join("%.2f" % r["rclone"] for r in rows["s3"]), med["s3"]["rclone"],
              sum(rows["s3"][0]["rclone_rgw_cpu"][:-1]), med["local"]["backup"],
              med["s3"]["rclone"], floor, med["s3"]["backup"], vs_floor))
    # CPU seconds of every process involved (client, cairnd, RGW+OSD+monitor,
    # rclone), medians: with both halves CPU-bound, two cores cannot run them
    # side by side faster than their CPU sum / 2.
    def mcpu(kind, f):
        return median([f(r) for r in rows[kind]])
    s3_cpu = mcpu("s3", lambda r: r["backup_client_cpu"] + sum(r["backup_cpu"]))
    local_cpu = mcpu("local", lambda r: r["backup_client_cpu"] + sum(r["backup_cpu"]))
    rclone_cpu = mcpu("s3", lambda r: sum(r["rclone_rgw_cpu"]))
    ncpu = os.cpu_count() or 1
    halves = (local_cpu + rclone_cpu) / ncpu
    wait = mcpu("s3", lambda r: r["finish_wait"])
    print("cpu seconds (all processes): s3 backup %.1f (client %.1f, cairnd %.1f, RGW %.1f); "
          "local backup %.1f; rclone upload %.1f (rclone %.1f, RGW %.1f); both halves on %d "
          "cores need at least %.2f s" % (
              s3_cpu, mcpu("s3", lambda r: r["backup_client_cpu"]),
              mcpu("s3", lambda r: r["backup_cpu"][0]),
              mcpu("s3", lambda r: sum(r["backup_cpu"][1:])), local_cpu, rclone_cpu,
              mcpu("s3", lambda r: r["rclone_rgw_cpu"][-1]),
              mcpu("s3", lambda r: sum(r["rclone_rgw_cpu"][:-1])), ncpu, halves))
    print("s3 finish waited %.2f s for the last chunk uploads (write-behind tail)" % wait)
    print("s3_backup_s=%.2f local_backup_s=%.2f s3_restore_s=%.2f local_restore_s=%.2f "
          "s3_cold_restore_s=%.2f s3_vs_local=%.2f restores_ok=%d rclone_copy_s=%.2f "
          "s3_backup_vs_floor=%.2f s3_backup_cpu_s=%.1f local_backup_cpu_s=%.1f "
          "rclone_copy_cpu_s=%.1f s3_halves_cpu_floor_s=%.2f s3_finish_wait_s=%.2f" % (
              med["s3"]["backup"], med["local"]["backup"], med["s3"]["restore"],
              med["local"]["restore"], med["s3"]["cold"], ratio, 1 if ok else 0,
              med["s3"]["rclone"], vs_floor, s3_cpu, local_cpu, rclone_cpu, halves, wait))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
