#!/usr/bin/python3
"""bench/sync: a pull between two local cairnd against `rsync -a` of the datastore.

A dataset of about --size-gib GiB (default 2; bench/backup's mix of text,
random and duplicated files) is backed up with the `cairn` client into a
source cairnd. A second cairnd pulls that datastore (`POST /api2/json/pull`,
timed from the request to the task's end, every chunk verified on arrival,
the datastore synced at its default sync level), and `rsync -a` copies the
source datastore directory to a local directory (timed to rsync's exit plus
a sync(2), so both copies end durable). Then 1% of the dataset changes, the
client backs it up again, and both run again: the pull fetches the new
snapshot's manifest, indexes and missing chunks; rsync walks every chunk file
of the datastore.

Both servers run on loopback over plain HTTP (rsync copies locally without
encryption either). Printed: a table and a final line of key=value pairs.
Targets from issue #18: first sync at least 1.0x rsync's speed, the
incremental sync at least 3x faster than rsync's incremental run.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "test", "integration"))
import backup as bb  # noqa: E402  (dataset generation and helpers)
import cairn_harness as ch  # noqa: E402

STORE = "bench"
API = "/api2/json"


def cairn_backup(args, srv, data):
    cairn = os.path.join(os.path.abspath(args.bin), "cairn")
    authid, secret = srv.token.rsplit(":", 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env.update({"CAIRN_REPOSITORY": "%s@127.0.0.1:%d:%s" % (authid, srv.port, STORE),
                "CAIRN_SECRET": secret, "CAIRN_PLAIN_HTTP": "1"})
    bb.run([cairn, "backup", "root.didx:%s" % data, "--backup-id", "bench", "--no-progress"],
           env)


def timed_pull(dst, src):
    os.sync()
    t0 = time.monotonic()
    r = dst.post(API + "/pull", params={"store": STORE, "remote": "src", "remote-store": STORE})
    if r.status != 200:
        raise RuntimeError("pull: %r" % r)
    upid = r.data["data"]
    q = urllib.parse.quote(upid, safe="")
    while True:
        st = dst.get(API + "/nodes/localhost/tasks/%s/status" % q).data["data"]
        if st["status"] == "stopped":
            break
        time.sleep(0.05)
    dt = time.monotonic() - t0
    log = dst.get(API + "/nodes/localhost/tasks/%s/log" % q, params={"limit": "0"}).data["data"]
    text = "\n".join(x["t"] for x in log)
    if st["exitstatus"] != "OK":
        raise RuntimeError("pull failed: %s\n%s" % (st["exitstatus"], text[-3000:]))
    summary = [x for x in text.splitlines() if "summary:" in x][-1]
    return dt, summary


def quickcheck_copy(src_dir, dst_dir):
    """What `rsync -a --delete` does between two local directories, for
    machines without rsync: walk the source, copy every file whose size or
    mtime differs (with its mode and times), remove what the source lacks."""
    seen = set()
    for d, dirs, names in os.walk(src_dir):
        rel = os.path.relpath(d, src_dir)
        td = os.path.join(dst_dir, rel)
        os.makedirs(td, exist_ok=True)
        seen.add(os.path.normpath(td))
        for n in names:
            sp, tp = os.path.join(d, n), os.path.join(td, n)
            seen.add(os.path.normpath(tp))
            st = os.lstat(sp)
            try:
                tt = os.lstat(tp)
                if tt.st_size == st.st_size and int(tt.st_mtime) == int(st.st_mtime):
                    continue
            except FileNotFoundError:
                pass
            shutil.copy2(sp, tp)
    for d, dirs, names in os.walk(dst_dir, topdown=False):
        for n in names + dirs:
            p = os.path.normpath(os.path.join(d, n))
            if p not in seen:
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p)
                else:
                    os.unlink(p)


def timed_rsync(src_dir, dst_dir):
    os.sync()
    t0 = time.monotonic()
    if shutil.which("rsync"):
        subprocess.run(["rsync", "-a", "--delete", src_dir + "/", dst_dir + "/"], check=True)
    else:
        quickcheck_copy(src_dir, dst_dir)
    os.sync()
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "bin"))
    ap.add_argument("--size-gib", type=float, default=2.0)
    ap.add_argument("--tmp", default=None, help="work directory (default: a new temp dir)")
    args = ap.parse_args()
    os.environ["CAIRN_BIN_DIR"] = os.path.abspath(args.bin)
    tool = "rsync" if shutil.which("rsync") else "python-quickcheck"
    if tool != "rsync":
        print("bench/sync: rsync is not installed (scripts/deps.sh bench); comparing against "
              "a Python walk-and-copy with rsync's quick check instead", flush=True)
    tmp = tempfile.mkdtemp(prefix="cairn-bench-sync-", dir=args.tmp)
    size = int(args.size_gib * (1 << 30))
    src = dst = None
    try:
        data = os.path.join(tmp, "data")
        print("generating %.1f GiB in %s ..." % (size / (1 << 30), data), flush=True)
        bb.make_dataset(data, size)
        size = bb.tree_bytes(data)
        src = ch.Cairn(tls=False, log_level="warn")
        dst = ch.Cairn(tls=False, log_level="warn", env={"CAIRN_SYNC_PLAIN_HTTP": "1"})
        for srv in (src, dst):
            srv.admin("datastore", "create", STORE, srv.datastore_path(STORE), check=True)
        authid, secret = src.token.rsplit(":", 1)
        r = dst.post(API + "/config/remote", params={
            "name": "src", "host": "127.0.0.1", "port": str(src.port), "auth-id": authid,
            "password": secret})
        if r.status != 200:
            raise RuntimeError("remote: %r" % r)
        print("backing up into the source ...", flush=True)
        cairn_backup(args, src, data)
        src_dir = src.datastore_path(STORE)
        stored = bb.du(src_dir)
        rsync_dir = os.path.join(tmp, "rsync-copy")
        os.mkdir(rsync_dir)
        print("first copies ...", flush=True)
        pull1, sum1 = timed_pull(dst, src)
        rsync1 = timed_rsync(src_dir, rsync_dir)
        print("1% change and a second backup ...", flush=True)
        bb.change_one_percent(data, size)
        cairn_backup(args, src, data)
        pull2, sum2 = timed_pull(dst, src)
        rsync2 = timed_rsync(src_dir, rsync_dir)
        same = bb.du(dst.datastore_path(STORE))
        mb = stored / 1e6
        print()
        print("datastore: %.0f MB stored for %.2f GiB of data (%s)" % (mb, size / (1 << 30),
                                                                     src_dir))
        print("%-22s %10s %10s %8s" % ("step", "seconds", "MB/s", "vs rsync"))
        print("%-22s %10.2f %10.1f %8.2fx" % ("pull, first", pull1, mb / pull1, rsync1 / pull1))
        print("%-22s %10.2f %10.1f" % ("copy (%s), first" % tool[:6], rsync1, mb / rsync1))
        print("%-22s %10.2f %10s %8.2fx" % ("pull, after 1%", pull2, "", rsync2 / pull2))
        print("%-22s %10.2f" % ("copy (%s), after 1%%" % tool[:6], rsync2))
        print("pull 1: %s" % sum1.split("summary: ", 1)[1])
        print("pull 2: %s" % sum2.split("summary: ", 1)[1])
        print("target datastore: %.0f MB" % (same / 1e6))
        print("targets: first >= 1.0x rsync (%.2fx), incremental >= 3x rsync (%.2fx)"
              % (rsync1 / pull1, rsync2 / pull2))
        print("bench-sync: size_gib=%.2f stored_mb=%.0f pull_first_s=%.2f rsync_first_s=%.2f "
              "pull_incr_s=%.2f rsync_incr_s=%.2f first_ratio=%.2f incr_ratio=%.2f "
              "copy_tool=%s"
              % (size / (1 << 30), mb, pull1, rsync1, pull2, rsync2, rsync1 / pull1,
                 rsync2 / pull2, tool))
    finally:
        for srv in (src, dst):
            if srv is not None:
                srv.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
