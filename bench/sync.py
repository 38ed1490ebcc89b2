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
encryption either). Before every timed copy the source datastore's files are
written back and dropped from the page cache (posix_fadvise DONTNEED), so the
pull and rsync both read a cold source, whichever runs first. Besides wall
time the bench reports CPU seconds (user+system) of each cairnd during the
pull and of rsync's processes: those do not depend on the load of a shared
machine. Without rsync (scripts/deps.sh bench installs it) the copy is a
clearly labelled stand-in (copy_tool=python-quickcheck).
With --profile DIR, `perf record -g` runs on both cairnd during each pull.
Printed: a table and a final line of key=value pairs.
Targets from issue #18: first sync at least 1.0x rsync's speed, the
incremental sync at least 3x faster than rsync's incremental run.
"""

import argparse
import os
import shutil
import signal
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


def cpu_seconds(pid):
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drop_cache(root):
    """Writes back and evicts `root`'s files from the page cache, so the next
    copy reads them from the disk (no root privileges needed)."""
    os.sync()
    for d, _, names in os.walk(root):
        for n in names:
            try:
                fd = os.open(os.path.join(d, n), os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


BLOB_ZSTD = bytes.fromhex("31b958426fb6a37f")
BLOB_RAW = bytes.fromhex("42ab3807be8370a1")


def verify_floor(store_dir, since):
    """What verifying costs, as a floor for the incremental pull: the CPU
    seconds to decode (libzstd) and SHA-256 (OpenSSL, through hashlib) every
    chunk file of `store_dir` written after `since` (those the pull fetched),
    files read beforehand, on one thread in this process. Returns (chunks,
    stored bytes, plain bytes, CPU seconds)."""
    import ctypes
    import hashlib
    zstd = ctypes.CDLL("libzstd.so.1")
    zstd.ZSTD_decompress.restype = ctypes.c_size_t
    zstd.ZSTD_isError.restype = ctypes.c_uint
    blobs = []
    chunks = os.path.join(store_dir, ".chunks")
    for d in os.scandir(chunks):
        for e in os.scandir(d.path):
            if e.stat().st_mtime >= since:
                with open(e.path, "rb") as f:
                    blobs.append((e.name, f.read()))
    out = ctypes.create_string_buffer(16 << 20)  # the largest chunk
    stored = plain = 0
    t0 = time.thread_time()
    for name, b in blobs:
        stored += len(b)
        if b[:8] == BLOB_ZSTD:
            n = zstd.ZSTD_decompress(out, len(out), b[12:], len(b) - 12)
            if zstd.ZSTD_isError(n):
                raise RuntimeError("chunk %s: not a zstd blob" % name)
            data = out.raw[:n]
        elif b[:8] == BLOB_RAW:
            data = b[12:]
        else:
            continue  # encrypted: no plaintext to hash (none in this bench)
        plain += len(data)
        if hashlib.sha256(data).hexdigest() != name:
            raise RuntimeError("chunk %s: digest mismatch" % name)
    return len(blobs), stored, plain, time.thread_time() - t0


def start_profiles(args, servers, tag):
    if not args.profile:
        return []
    os.makedirs(args.profile, exist_ok=True)
    procs = []
    for name, srv in servers:
        out = os.path.join(args.profile, "perf-%s-%s.data" % (name, tag))
        procs.append(subprocess.Popen(
            ["perf", "record", "-q", "-g", "-F", "499", "-o", out, "-p", str(srv.proc.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(0.5)  # perf attaches asynchronously; not part of any timing
    return procs


def stop_profiles(procs):
    for p in procs:
        p.send_signal(signal.SIGINT)
    for p in procs:
        p.wait()


def timed_pull(args, dst, src, tag):
    drop_cache(src.datastore_path(STORE))
    prof = start_profiles(args, (("src", src), ("dst", dst)), tag)
    cpu0 = (cpu_seconds(src.proc.pid), cpu_seconds(dst.proc.pid))
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
        # A status request is answered from memory: polling this often costs
        # the server little and keeps the measurement's floor at 5 ms.
        time.sleep(0.005)
    dt = time.monotonic() - t0
    cpu = (cpu_seconds(src.proc.pid) - cpu0[0], cpu_seconds(dst.proc.pid) - cpu0[1])
    stop_profiles(prof)
    log = dst.get(API + "/nodes/localhost/tasks/%s/log" % q, params={"limit": "0"}).data["data"]
    text = "\n".join(x["t"] for x in log)
    if st["exitstatus"] != "OK":
        raise RuntimeError("pull failed: %s\n%s" % (st["exitstatus"], text[-3000:]))
    summary = [x for x in text.splitlines() if "summary:" in x][-1]
    if args.show_log:
        print(text)
    return dt, summary, cpu


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
    """Returns wall seconds and rsync's CPU seconds (all its processes; the
    stand-in's are this process's own)."""
    drop_cache(src_dir)
    c0 = os.times()
    t0 = time.monotonic()
    if shutil.which("rsync"):
        subprocess.run(["rsync", "-a", "--delete", src_dir + "/", dst_dir + "/"], check=True)
    else:
        quickcheck_copy(src_dir, dst_dir)
    os.sync()
    dt = time.monotonic() - t0
    c1 = os.times()
    if shutil.which("rsync"):
        cpu = c1.children_user + c1.children_system - c0.children_user - c0.children_system
    else:
        cpu = c1.user + c1.system - c0.user - c0.system
    return dt, cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "bin"))
    ap.add_argument("--size-gib", type=float, default=2.0)
    ap.add_argument("--tmp", default=None, help="work directory (default: a new temp dir)")
    ap.add_argument("--profile", default=None, metavar="DIR",
                    help="perf record -g both cairnd during each pull into DIR")
    ap.add_argument("--show-log", action="store_true", help="print each pull's task log")
    args = ap.parse_args()
    os.environ["CAIRN_BIN_DIR"] = os.path.abspath(args.bin)
    tool = "rsync" if shutil.which("rsync") else "python-quickcheck"
    if tool != "rsync":
        print("bench/sync: WARNING: rsync is not installed (scripts/deps.sh bench); the copy "
              "figures below are a STAND-IN, a Python walk-and-copy with rsync's quick check, "
              "not rsync", flush=True)
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
        load0 = os.getloadavg()[0]
        pull1, sum1, pcpu1 = timed_pull(args, dst, src, "first")
        rsync1, rcpu1 = timed_rsync(src_dir, rsync_dir)
        print("1% change and a second backup ...", flush=True)
        bb.change_one_percent(data, size)
        cairn_backup(args, src, data)
        since = time.time() - 1  # whole seconds on some file systems
        time.sleep(1.1)
        pull2, sum2, pcpu2 = timed_pull(args, dst, src, "incr")
        floor = verify_floor(dst.datastore_path(STORE), since)
        rsync2, rcpu2 = timed_rsync(src_dir, rsync_dir)
        load1 = os.getloadavg()[0]
        same = bb.du(dst.datastore_path(STORE))
        mb = stored / 1e6
        print()
        print("datastore: %.0f MB stored for %.2f GiB of data (%s)" % (mb, size / (1 << 30),
                                                                     src_dir))
        print("%-22s %10s %10s %8s %22s" % ("step", "seconds", "MB/s", "vs rsync",
                                             "CPU s (src+dst)"))
        print("%-22s %10.2f %10.1f %8.2fx %10.2f (%.2f+%.2f)" % (
            "pull, first", pull1, mb / pull1, rsync1 / pull1, sum(pcpu1), pcpu1[0], pcpu1[1]))
        print("%-22s %10.2f %10.1f %8s %10.2f" % ("copy (%s), first" % tool[:6], rsync1,
                                                   mb / rsync1, "", rcpu1))
        print("%-22s %10.2f %10s %8.2fx %10.2f (%.2f+%.2f)" % (
            "pull, after 1%", pull2, "", rsync2 / pull2, sum(pcpu2), pcpu2[0], pcpu2[1]))
        print("%-22s %10.2f %10s %8s %10.2f" % ("copy (%s), after 1%%" % tool[:6], rsync2, "",
                                                 "", rcpu2))
        print("load average: %.2f at the start, %.2f at the end" % (load0, load1))
        print("pull 1: %s" % sum1.split("summary: ", 1)[1])
        print("pull 2: %s" % sum2.split("summary: ", 1)[1])
        print("target datastore: %.0f MB" % (same / 1e6))
        print("verifying what the incremental pull fetched: %d chunks, %.1f MB stored, %.1f MB "
              "plain: %.3f CPU-s to decode and SHA-256 on one thread, so at least %.3f s on "
              "two CPUs; 3x rsync would need %.3f s for all of the pull"
              % (floor[0], floor[1] / 1e6, floor[2] / 1e6, floor[3], floor[3] / 2, rsync2 / 3))
        print("targets: first >= 1.0x rsync (%.2fx), incremental >= 3x rsync (%.2fx)"
              % (rsync1 / pull1, rsync2 / pull2))
        print("bench-sync: size_gib=%.2f stored_mb=%.0f pull_first_s=%.2f rsync_first_s=%.2f "
              "pull_incr_s=%.2f rsync_incr_s=%.2f first_ratio=%.2f incr_ratio=%.2f "
              "copy_tool=%s pull_first_cpu_src_s=%.2f pull_first_cpu_dst_s=%.2f "
              "rsync_first_cpu_s=%.2f pull_incr_cpu_src_s=%.2f pull_incr_cpu_dst_s=%.2f "
              "rsync_incr_cpu_s=%.2f incr_verify_cpu_s=%.3f incr_plain_mb=%.1f "
              "load_start=%.2f load_end=%.2f"
              % (size / (1 << 30), mb, pull1, rsync1, pull2, rsync2, rsync1 / pull1,
                 rsync2 / pull2, tool, pcpu1[0], pcpu1[1], rcpu1, pcpu2[0], pcpu2[1], rcpu2,
                 floor[3], floor[2] / 1e6, load0, load1))
    finally:
        for srv in (src, dst):
            if srv is not None:
                srv.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
